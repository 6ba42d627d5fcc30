#!/usr/bin/env python3
"""NEXMark on Apache Flink over a lambdaflow JSONL file: the comparison column of docs/BENCHMARKS.md.

Runs the nexmark/nexmark suite's SQL (the SELECTs of tests/nexmark/flink.sql, so the very text the
lambdaflow SQL views run) on PyFlink's local mini-cluster, reading the same JSON Lines file that
`lambdaflow gen --nexmark` writes through a filesystem JSON source (instead of the suite's datagen),
with the suite's 4 s watermark, into a blackhole sink, as the suite measures.

    python3 -m venv /tmp/flinkvenv && /tmp/flinkvenv/bin/pip install apache-flink   # needs java 11+
    /tmp/flinkvenv/bin/python benches/flink_nexmark.py --input /tmp/nx10m.jsonl --events 10000000 \
        --queries q0,q1,q2 --parallelism 1 --runs 3

Prints one line per run (query, parallelism, seconds, events/s, events/s/core) and one JSON summary
line per query with the median. Wall time is the job's, from submission to the end of the bounded
input (the mini-cluster is started once, before the first job, and not counted).
"""

import argparse
import json
import pathlib
import re
import statistics
import time

from pyflink.table import EnvironmentSettings, Schema, TableDescriptor, TableEnvironment

SUITE = pathlib.Path(__file__).resolve().parent.parent / "tests" / "nexmark" / "flink.sql"

# The suite's ddl: one table of events, the three kinds as views. Times in the file are epoch
# milliseconds, made TIMESTAMP(3) here (the suite's datagen yields TIMESTAMP(3) directly).
SOURCE = """
CREATE TABLE datagen (
    event_type INT,
    person ROW<id BIGINT, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR, city VARCHAR,
               state VARCHAR, `dateTime` BIGINT, extra VARCHAR>,
    auction ROW<id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT,
                reserve BIGINT, `dateTime` BIGINT, expires BIGINT, seller BIGINT,
                category BIGINT, extra VARCHAR>,
    bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
            `dateTime` BIGINT, extra VARCHAR>,
    `dateTime` AS TO_TIMESTAMP_LTZ(CASE
        WHEN event_type = 0 THEN person.`dateTime`
        WHEN event_type = 1 THEN auction.`dateTime`
        ELSE bid.`dateTime` END, 3),
    WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json')
"""

VIEWS = [
    """CREATE VIEW person AS SELECT person.id, person.name, person.emailAddress,
        person.creditCard, person.city, person.state, `dateTime`, person.extra
        FROM datagen WHERE event_type = 0""",
    """CREATE VIEW auction AS SELECT auction.id, auction.itemName, auction.description,
        auction.initialBid, auction.reserve, `dateTime`,
        TO_TIMESTAMP_LTZ(auction.expires, 3) AS expires, auction.seller, auction.category,
        auction.extra FROM datagen WHERE event_type = 1""",
    """CREATE VIEW bid AS SELECT bid.auction, bid.bidder, bid.price, bid.channel, bid.url,
        `dateTime`, bid.extra FROM datagen WHERE event_type = 2""",
]


def suite_queries():
    """The SELECT of each `CREATE VIEW qN AS SELECT ...` in the suite file, by name."""
    text = "\n".join(
        line.split("--", 1)[0] if "--" in line else line for line in SUITE.read_text().splitlines()
    )
    queries = {}
    for statement in text.split(";"):
        found = re.match(r"\s*CREATE VIEW (\w+) AS(.*)", statement, re.S | re.I)
        if found:
            queries[found.group(1)] = found.group(2)
    return queries


def run(query, select, path, parallelism):
    settings = EnvironmentSettings.in_streaming_mode()
    env = TableEnvironment.create(settings)
    env.get_config().set("parallelism.default", str(parallelism))
    env.get_config().set("table.local-time-zone", "UTC")
    env.execute_sql(SOURCE.format(path=path))
    for view in VIEWS:
        env.execute_sql(view)
    table = env.sql_query(select)
    schema = table.get_schema()
    sink = Schema.new_builder().from_fields(schema.get_field_names(), schema.get_field_data_types())
    env.create_temporary_table(
        f"sink_{query}", TableDescriptor.for_connector("blackhole").schema(sink.build()).build()
    )
    start = time.monotonic()
    table.execute_insert(f"sink_{query}").wait()
    return time.monotonic() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="JSONL file from `lambdaflow gen --nexmark`")
    parser.add_argument("--events", type=int, required=True, help="events in the file")
    parser.add_argument("--queries", default="q0,q1,q2,q3,q4,q5,q7,q8")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    queries = suite_queries()
    path = pathlib.Path(args.input).resolve()
    for query in args.queries.split(","):
        seconds = []
        for _ in range(args.runs):
            took = run(query, queries[query], path, args.parallelism)
            seconds.append(took)
            rate = args.events / took
            print(f"flink {query} p={args.parallelism} {took:.2f} s {rate:,.0f} ev/s "
                  f"{rate / args.parallelism:,.0f} ev/s/core", flush=True)
        median = statistics.median(seconds)
        print(json.dumps({
            "engine": "flink", "query": query, "parallelism": args.parallelism,
            "events": args.events, "median_s": round(median, 3),
            "events_per_s_per_core": round(args.events / median / args.parallelism),
        }), flush=True)


if __name__ == "__main__":
    main()
