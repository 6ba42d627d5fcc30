#!/usr/bin/env python3
"""NEXMark q0-q8 on lambdaflow: events/s per core and peak RSS, for docs/BENCHMARKS.md.

Runs `examples/nexmark` (build it first: `cargo build --release --example nexmark`, and
`cargo build --release` for the generator) once per query, source and worker count, `--runs`
times, with the rows written to /dev/null. A run's time is the example's own "took" line: from
the start of the engine to its first page of the final answer (reading or generating every event
included). Peak RSS is the process's, from wait4.

    cargo build --release && cargo build --release --example nexmark
    python3 benches/nexmark.py --events 10000000 --file /tmp/nx10m.jsonl --workers 1,2 --runs 3

Sources: `generate` (the in-process generator, as Feldera and Flink measure) and `file` (the
same events from the JSON Lines file `lambdaflow gen --nexmark` writes; made if missing). Prints
one line per run and a Markdown table of medians at the end.
"""

import argparse
import os
import pathlib
import re
import statistics
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
TOOK = re.compile(r"took (\d+) events in ([\d.]+) s")


def run(query, source, workers, events, path):
    command = [str(RELEASE / "examples" / "nexmark"), "--query", query, "-w", str(workers)]
    command += ["--generate", str(events)] if source == "generate" else ["--input", str(path)]
    with open(os.devnull, "wb") as sink:
        child = subprocess.Popen(command, stdout=sink, stderr=subprocess.PIPE)
        stderr = child.stderr.read().decode()
        _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr}")
    found = TOOK.search(stderr)
    if not found or int(found.group(1)) != events:
        raise SystemExit(f"{' '.join(command)}: no 'took {events} events' line:\n{stderr}")
    return float(found.group(2)), usage.ru_maxrss * 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--file", default="/tmp/nx10m.jsonl", help="JSONL of the same events")
    parser.add_argument("--queries", default="q0,q1,q2,q3,q4,q5,q6,q7,q8")
    parser.add_argument("--sources", default="generate,file")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    path = pathlib.Path(args.file)
    sources = args.sources.split(",")
    if "file" in sources and not path.exists():
        subprocess.run([str(RELEASE / "lambdaflow"), "gen", "--nexmark", "--events",
                        str(args.events), "--out", str(path)], check=True)
    table = []
    for query in args.queries.split(","):
        for source in sources:
            for workers in map(int, args.workers.split(",")):
                seconds, peaks = [], []
                for _ in range(args.runs):
                    took, rss = run(query, source, workers, args.events, path)
                    seconds.append(took)
                    peaks.append(rss)
                    print(f"{query} {source} -w {workers}: {took:.2f} s, "
                          f"{args.events / took / workers:,.0f} ev/s/core, "
                          f"peak RSS {rss / 2**20:.0f} MiB", flush=True)
                median = statistics.median(seconds)
                table.append((query, source, workers, median,
                              args.events / median / workers, max(peaks) / 2**20))
    print(f"\n{args.events:,} events, median of {args.runs}\n")
    print("| query | source | workers | seconds | events/s/core | peak RSS (MiB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for query, source, workers, median, rate, rss in table:
        print(f"| {query} | {source} | {workers} | {median:.2f} | {rate / 1000:,.0f}K | {rss:.0f} |")


if __name__ == "__main__":
    main()
