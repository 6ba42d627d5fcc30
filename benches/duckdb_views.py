#!/usr/bin/env python3
"""The five reference views (shared/REFERENCE.md) computed by DuckDB from a JSON Lines file.

The comparison point for lambdaflow's ecommerce example over the same file (docs/BENCHMARKS.md):

    python3 benches/duckdb_views.py /tmp/hist10m.jsonl [--threads 2] [--print]

It reads the file once into a table (read_json with explicit columns, so nothing is sampled or
guessed), computes every view as lambdaflow defines it, and prints the elapsed seconds (reading
included) on stderr. With --print it also prints the views as one JSON document on stdout, shaped
like the example's output, so the two can be compared.
"""

import argparse
import json
import sys
import time

import duckdb

COLUMNS = (
    "{'ts': 'UBIGINT', 'kind': 'VARCHAR', 'customer': 'UBIGINT', "
    "'product': 'UBIGINT', 'amount_cents': 'UBIGINT'}"
)

NET = (
    "SUM(CASE kind WHEN 'purchase' THEN amount_cents::BIGINT "
    "WHEN 'refund' THEN -amount_cents::BIGINT ELSE 0 END)"
)

VIEWS = {
    "revenue_by_day": f"""
        SELECT strftime(make_timestamp((ts // 86400000 * 86400000 * 1000)::BIGINT), '%Y-%m-%d') AS k,
               {NET} AS net
        FROM events WHERE kind <> 'view' GROUP BY ALL ORDER BY k""",
    "product_stats": f"""
        SELECT product AS k,
               COUNT(*) FILTER (WHERE kind = 'purchase') AS purchases,
               COUNT(*) FILTER (WHERE kind = 'refund') AS refunds,
               {NET} AS net
        FROM events WHERE kind <> 'view' GROUP BY ALL ORDER BY k""",
    "customer_spend": f"""
        SELECT customer AS k, {NET} AS net
        FROM events WHERE kind <> 'view' GROUP BY ALL ORDER BY k""",
    "events_per_minute": """
        SELECT ts - ts % 60000 AS k,
               COUNT(*) FILTER (WHERE kind = 'purchase') AS purchase,
               COUNT(*) FILTER (WHERE kind = 'refund') AS refund,
               COUNT(*) FILTER (WHERE kind = 'view') AS view
        FROM events GROUP BY ALL ORDER BY k""",
    "top_products": f"""
        SELECT product AS k, {NET} AS net
        FROM events WHERE kind <> 'view' GROUP BY ALL ORDER BY net DESC, k ASC LIMIT 10""",
}


def shape(name, rows):
    """The view as lambdaflow's example prints it."""
    if name == "top_products":
        return [{"product": k, "revenue_cents": int(net)} for k, net in rows]
    if name == "product_stats":
        return {
            str(k): {"purchases": p, "refunds": r, "revenue_cents": int(net)}
            for k, p, r, net in rows
        }
    if name == "events_per_minute":
        return {str(k): {"purchase": p, "refund": r, "view": v} for k, p, r, v in rows}
    return {str(k): int(net) for k, net in rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jsonl", help="the events, one JSON object per line")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--print", action="store_true", help="print the views as JSON")
    args = parser.parse_args()

    started = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    con.execute(
        f"CREATE TABLE events AS SELECT * FROM read_json(?, format = 'newline_delimited', "
        f"columns = {COLUMNS})",
        [args.jsonl],
    )
    loaded = time.perf_counter()
    views = {name: con.execute(sql).fetchall() for name, sql in VIEWS.items()}
    done = time.perf_counter()
    print(
        f"duckdb {duckdb.__version__}, {args.threads} threads: {done - started:.3f} s "
        f"(read {loaded - started:.3f} s, views {done - loaded:.3f} s)",
        file=sys.stderr,
    )
    if args.print:
        json.dump({name: shape(name, rows) for name, rows in views.items()}, sys.stdout)
        print()


if __name__ == "__main__":
    main()
