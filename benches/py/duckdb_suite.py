"""DuckDB side of the Eventide benchmark suite (run by `eventide-bench suite`).

Reads one JSON request on stdin and writes one JSON reply on stdout.

  {"mode": "query", "files": [...parquet...], "queries": [{"name", "sql"}], "runs": 5}
      -> {"duckdb": version, "queries": [{"name", "times_ms": [...], "columns": [...], "rows": [...]}]}
     The files are Eventide's own segments, read through a view `bench`
     (read_parquet(..., union_by_name = true)). Each query runs once to warm up, then `runs`
     times; the rows of the last run are returned, timestamps as RFC3339 UTC with 6 digits.

  {"mode": "storage", "ndjson": path, "out": path}
      -> {"duckdb": version, "load_seconds", "rows", "parquet_bytes", "copy_seconds"}
     Loads the NDJSON with read_json into a table (the load a DuckDB user would run), then
     writes it as ZSTD Parquet with DuckDB's defaults.
"""

import datetime
import decimal
import json
import math
import os
import sys
import time

import duckdb


def cell(v):
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return v.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def queries(req):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    files = ", ".join("'" + f.replace("'", "''") + "'" for f in req["files"])
    con.execute(f"CREATE VIEW bench AS SELECT * FROM read_parquet([{files}], union_by_name = true)")
    out = []
    for q in req["queries"]:
        con.execute(q["sql"]).fetchall()
        times = []
        rows = None
        cols = None
        for _ in range(req["runs"]):
            t = time.perf_counter()
            cur = con.execute(q["sql"])
            rows = cur.fetchall()
            times.append((time.perf_counter() - t) * 1000.0)
            cols = [d[0] for d in cur.description]
        out.append({
            "name": q["name"],
            "times_ms": times,
            "columns": cols,
            "rows": [[cell(v) for v in r] for r in rows],
        })
    return {"duckdb": duckdb.__version__, "queries": out}


def storage(req):
    con = duckdb.connect()
    path = req["ndjson"].replace("'", "''")
    t = time.perf_counter()
    con.execute(f"CREATE TABLE events AS SELECT * FROM read_json('{path}', format = 'newline_delimited')")
    load = time.perf_counter() - t
    rows = con.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    out = req["out"].replace("'", "''")
    t = time.perf_counter()
    con.execute(f"COPY events TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
    copy = time.perf_counter() - t
    return {
        "duckdb": duckdb.__version__,
        "load_seconds": load,
        "rows": rows,
        "parquet_bytes": os.path.getsize(req["out"]),
        "copy_seconds": copy,
    }


def main():
    req = json.load(sys.stdin)
    mode = req["mode"]
    reply = queries(req) if mode == "query" else storage(req)
    json.dump(reply, sys.stdout)


if __name__ == "__main__":
    main()
