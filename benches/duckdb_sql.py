#!/usr/bin/env python3
"""SQL views computed by DuckDB from a JSON Lines file: the comparison point for lambdaflow's
`examples/sql.rs` running the same statements over the same file (docs/BENCHMARKS.md).

    python3 benches/duckdb_sql.py /tmp/hist10m.jsonl examples/sql/reference.sql [--threads 2]

It reads the file into the table `events` (the columns of docs/REFERENCE.md, BIGINT, nothing
sampled or guessed), creates the views, materializes each one's rows into a table, and prints
the elapsed seconds (reading included) and each view's row count on stderr.
"""

import argparse
import sys
import time

import duckdb


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("events")
    parser.add_argument("sql")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads={args.threads}")
    con.execute(
        "CREATE TABLE events AS SELECT * FROM read_json(?, format='newline_delimited', "
        "columns={'ts': 'BIGINT', 'kind': 'VARCHAR', 'customer': 'BIGINT', "
        "'product': 'BIGINT', 'amount_cents': 'BIGINT'})",
        [args.events],
    )
    before = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    with open(args.sql) as f:
        for statement in duckdb.extract_statements(f.read()):
            con.execute(statement)
    views = [
        row[0]
        for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        if row[0] not in before
    ]
    counts = {}
    for name in views:
        con.execute(f'CREATE TABLE "result_{name}" AS SELECT * FROM "{name}"')
        counts[name] = con.execute(f'SELECT COUNT(*) FROM "result_{name}"').fetchone()[0]
    elapsed = time.perf_counter() - started
    print(f"duckdb {elapsed:.2f} s {counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
