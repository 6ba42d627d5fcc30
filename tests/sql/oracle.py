#!/usr/bin/env python3
"""DuckDB oracle for lambdaflow's SQL views.

Usage: python oracle.py [--tables TABLES.json] EVENTS.jsonl VIEWS.sql

Loads EVENTS.jsonl (JSON Lines) into the table
    events(ts BIGINT, kind VARCHAR, customer BIGINT, product BIGINT, amount_cents BIGINT)
(missing fields are NULL, unknown fields are ignored), or, with --tables, into the tables that
TABLES.json lists: [{"name": "bid", "columns": [["auction", "BIGINT"], ...], "envelope": true}, ...]
(with "envelope", a row of table t is the object under the field "t" of a line, and lines without
it are not rows of t; without it, every line is a row), runs every statement of VIEWS.sql in order
(each is normally `CREATE VIEW name AS SELECT ...;`, so a view may read earlier views), then prints ONE
JSON object on stdout mapping every created view, in file order, to its rows:

    {"view_name": [{"col": value, ...}, ...], ...}

Rows are in the order DuckDB returns them (only meaningful for views with a top-level ORDER BY ...
LIMIT; the oracle runs single-threaded so that the output is reproducible from run to run).

Values: NULL -> null; BOOLEAN -> true/false; integers of any width (HUGEINT included) -> exact JSON
integers; DOUBLE/FLOAT/DECIMAL -> JSON floats; NaN/inf -> "NaN", "Infinity", "-Infinity"; VARCHAR ->
string; DATE, TIMESTAMP and every other type -> DuckDB's own CAST(x AS VARCHAR) text (done in SQL).

On any error the message goes to stderr, naming the statement, and the exit status is 1.
Standard library + duckdb only.
"""

import json
import math
import re
import sys
from decimal import Decimal

import duckdb

EVENT_COLUMNS = {
    "ts": "BIGINT",
    "kind": "VARCHAR",
    "customer": "BIGINT",
    "product": "BIGINT",
    "amount_cents": "BIGINT",
}

INTEGER_TYPES = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
}
FLOAT_TYPES = {"FLOAT", "REAL", "DOUBLE"}


class OracleError(Exception):
    pass


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def sql_literal(text):
    return "'" + text.replace("'", "''") + "'"


def closing_quote(sql, i):
    """The index of the quote that closes the one at `i` (a doubled quote is part of the text)."""
    ch, j, n = sql[i], i + 1, len(sql)
    while j < n:
        if sql[j] == ch:
            if j + 1 < n and sql[j + 1] == ch:
                j += 2
                continue
            break
        j += 1
    return j


def strip_comments(sql):
    """Remove -- and /* */ comments outside quotes (used only to show a statement in an error)."""
    out = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            j = closing_quote(sql, i)
            out.append(sql[i:j + 1])
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def split_statements(sql):
    """Split on ';' outside quotes and comments (used only to locate a parse error)."""
    pieces, start = [], 0
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            j = closing_quote(sql, i)
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif ch == ";":
            pieces.append(sql[start:i + 1])
            start = i = i + 1
        else:
            i += 1
    pieces.append(sql[start:])
    return [p for p in pieces if strip_comments(p).strip().strip(";").strip()]


def describe_statement(text):
    body = " ".join(strip_comments(text).split())
    return body if len(body) <= 300 else body[:297] + "..."


def load_events(con, path):
    columns = "{" + ", ".join(f"{sql_literal(k)}: {sql_literal(v)}" for k, v in EVENT_COLUMNS.items()) + "}"
    con.execute(
        "CREATE TABLE events AS SELECT "
        + ", ".join(quote_ident(k) for k in EVENT_COLUMNS)
        + f" FROM read_json(?, format='newline_delimited', columns={columns})",
        [path],
    )


def load_tables(con, path, tables):
    for table in tables:
        name, columns = table["name"], table["columns"]
        if table.get("envelope"):
            struct = "STRUCT(" + ", ".join(f"{quote_ident(c)} {t}" for c, t in columns) + ")"
            spec = "{" + sql_literal(name) + ": " + sql_literal(struct) + "}"
            select = ", ".join(f"s.{quote_ident(c)} AS {quote_ident(c)}" for c, _ in columns)
            con.execute(
                f"CREATE TABLE {quote_ident(name)} AS SELECT {select} FROM "
                f"(SELECT {quote_ident(name)} AS s FROM read_json(?, format='newline_delimited', columns={spec})) "
                "WHERE s IS NOT NULL",
                [path],
            )
        else:
            spec = "{" + ", ".join(f"{sql_literal(c)}: {sql_literal(t)}" for c, t in columns) + "}"
            con.execute(
                f"CREATE TABLE {quote_ident(name)} AS SELECT "
                + ", ".join(quote_ident(c) for c, _ in columns)
                + f" FROM read_json(?, format='newline_delimited', columns={spec})",
                [path],
            )


def user_views(con):
    rows = con.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal AND NOT temporary "
        "AND database_name = current_database() AND schema_name = current_schema()"
    ).fetchall()
    return {r[0] for r in rows}


CREATE_VIEW_RE = re.compile(
    r'^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP(?:ORARY)?\s+)?VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?'
    r'("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)',
    re.IGNORECASE,
)


def view_name_of(text):
    m = CREATE_VIEW_RE.match(strip_comments(text))
    if not m:
        return None
    name = m.group(1)
    if name.startswith('"'):
        return name[1:-1].replace('""', '"')
    return name


def column_expr(name, ctype):
    base = ctype.upper()
    q = quote_ident(name)
    if base in INTEGER_TYPES or base in FLOAT_TYPES or base == "BOOLEAN" or base == "VARCHAR":
        return q
    if base.startswith("DECIMAL") or base.startswith("NUMERIC"):
        return q
    # DATE, TIMESTAMP (any precision / time zone), TIME, INTERVAL, lists, structs...: DuckDB's own text.
    return f"CAST({q} AS VARCHAR) AS {q}"


def convert(value):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    raise OracleError(f"unexpected Python value {value!r} of type {type(value).__name__}")


def dump_view(con, name):
    described = con.execute(f"DESCRIBE SELECT * FROM {quote_ident(name)}").fetchall()
    names = [r[0] for r in described]
    if len(set(names)) != len(names):
        raise OracleError(f"duplicate output column names in view {name}: {names}")
    select = ", ".join(column_expr(r[0], r[1]) for r in described)
    rows = con.execute(f"SELECT {select} FROM {quote_ident(name)}").fetchall()
    return [{col: convert(v) for col, v in zip(names, row)} for row in rows]


def main(argv):
    tables = None
    if len(argv) == 5 and argv[1] == "--tables":
        with open(argv[2], encoding="utf-8") as f:
            tables = json.load(f)
        argv = [argv[0]] + argv[3:]
    if len(argv) != 3:
        print("usage: python oracle.py [--tables TABLES.json] EVENTS.jsonl VIEWS.sql", file=sys.stderr)
        return 2
    events_path, views_path = argv[1], argv[2]
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET error_on_division_by_zero=false")
        con.execute("SET threads=1")
    except duckdb.Error as e:
        print(f"error: configuring DuckDB: {e}", file=sys.stderr)
        return 1
    try:
        if tables is None:
            load_events(con, events_path)
        else:
            load_tables(con, events_path, tables)
    except duckdb.Error as e:
        print(f"error: loading events from {events_path}: {e}", file=sys.stderr)
        return 1

    try:
        with open(views_path, encoding="utf-8") as f:
            sql = f.read()
    except OSError as e:
        print(f"error: reading {views_path}: {e}", file=sys.stderr)
        return 1
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        for index, piece in enumerate(split_statements(sql), 1):
            try:
                con.extract_statements(piece)
            except duckdb.Error as piece_error:
                print(f"error: statement {index} ({describe_statement(piece)}): {piece_error}", file=sys.stderr)
                return 1
        print(f"error: parsing {views_path}: {e}", file=sys.stderr)
        return 1

    created = []  # view names in file order
    for index, stmt in enumerate(statements, 1):
        text = stmt.query
        label = f"statement {index} ({describe_statement(text)})"
        before = user_views(con)
        try:
            con.execute(text)
        except duckdb.Error as e:
            print(f"error: {label}: {e}", file=sys.stderr)
            return 1
        new = user_views(con) - before
        if len(new) > 1:
            print(f"error: {label}: created several views {sorted(new)}", file=sys.stderr)
            return 1
        name = next(iter(new)) if new else view_name_of(text)
        if name is not None:
            if name in created:
                created.remove(name)  # CREATE OR REPLACE: keep the latest position
            created.append(name)

    result = {}
    for name in created:
        try:
            result[name] = dump_view(con, name)
        except (duckdb.Error, OracleError) as e:
            print(f"error: reading view {name}: {e}", file=sys.stderr)
            return 1
    json.dump(result, sys.stdout, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
