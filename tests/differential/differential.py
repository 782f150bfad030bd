#!/usr/bin/env python3
"""Differential query checker: the same questions asked of Eventide and of DuckDB over the same
seeded events, in every data state (hot, flushed, merged, mixed, ingesting).

    python differential.py --binary target/debug/eventide --seed 7 --queries 2000
        [--states hot,flushed,merged,mixed,ingesting] [--events N] [--workdir DIR]
        [--base-time UNIX_SECONDS] [--only STATE:INDEX | STATE:regression:NAME | STATE:known:NAME]

A human-readable log goes to stderr; the last line of stdout is one JSON summary. Exit status 0
only when there was no error and no difference. Every failure names the seed, the base time and
the exact query (both renderings, or the JSON spec), so `--only STATE:INDEX` reruns it. Each
state runs the fixed cases of regressions.py first (they count as queries of that state),
among them the known DataFusion 55 behaviours of raw SQL (regressions.KNOWN_UPSTREAM): those
must give exactly their known answer, are listed under "known_upstream" in the summary, and
count as a difference only when Eventide's answer changes.
"""

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import traceback

import duckdb

from compare import (exact_ints, group_key, multiset_diff, norm_duck, norm_eventide, order_diff, parse_rfc3339,
                     window_diff)
from events import HOUR_US, Column, Dataset, duck_ts, fmt_ts
import regressions
from server import HarnessError, stop_all
from specgen import PCT_SLACK_MACRO, Reference, SpecGen, calc_key, wire_spec
from sqlast import DF, DUCK, PCT_MACRO, Ctx, qident
from sqlgen import SqlGen
from states import LiveIngest, States, wait_started

ALL_STATES = ["hot", "flushed", "merged", "mixed", "ingesting"]
# The random SQL parenthesizes both operands of IS [NOT] DISTINCT FROM (sqlast.distinct_from).
BARE_DISTINCT_FROM = re.compile(r"IS (NOT )?DISTINCT FROM (?!\()")
MAX_FAILURES = 20


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cut(text, n=4000):
    text = text if isinstance(text, str) else json.dumps(text, default=str)
    return text if len(text) <= n else text[:n] + " …"


class Run:
    def __init__(self, args):
        self.args, self.seed, self.binary = args, args.seed, os.path.abspath(args.binary)
        self.log = log
        self.workdir = args.workdir or tempfile.mkdtemp(prefix="eventide-diff-")
        self.own_workdir = args.workdir is None
        os.makedirs(self.workdir, exist_ok=True)
        now = int(time.time())
        self.base_time = args.base_time or now - now % 3600
        self.main, self.one, self.fixed = "diff-events", "diff-one", "diff-fixed"
        self.ds = Dataset(self.seed, args.events, self.base_time * 1_000_000)
        self.failures, self.errors, self.differences = [], 0, 0
        self.known = {}  # name -> the known_upstream entry of the summary
        self.per_state, self.shapes = {}, {}
        self.t_eventide = self.t_duck = 0.0
        self.current_state = None
        self.duck = duckdb.connect()
        self.duck.execute(PCT_MACRO)
        self.duck.execute(PCT_SLACK_MACRO)
        self.ds.load_duckdb(self.duck, self.workdir, self.main)
        self.load_fixed()
        self.states = States(self)
        self.one_items = min(800, int(self.states.flush_rows) - 1, len(self.ds.items))
        self.duck.execute(f'CREATE TABLE "{self.one}" AS SELECT * FROM "{self.main}" '
                          f"WHERE seq < {self.one_items}")
        self.ref = Reference(self.duck, self.ds, self.main)

    def load_fixed(self):
        """The hand-made events of regressions.FIXED, as items and as a DuckDB table."""
        t0 = self.ds.static_start_us
        self.fixed_items = [{"data": d, "time": fmt_ts(t0 + off * 1_000_000), "samplerate": sr}
                            for d, off, sr in regressions.FIXED]
        cols = ", ".join(f'"{k}" {t}' for k, t in regressions.FIXED_TYPES.items())
        self.duck.execute(f'CREATE TABLE "{self.fixed}" ("timestamp" TIMESTAMP, "_samplerate" BIGINT, {cols})')
        for d, off, sr in regressions.FIXED:
            vals = [duck_ts(t0 + off * 1_000_000), sr] + [d.get(k) for k in regressions.FIXED_TYPES]
            self.duck.execute(f'INSERT INTO "{self.fixed}" VALUES ({", ".join("?" * len(vals))})', vals)
        kinds = {"VARCHAR": "str", "DOUBLE": "float", "BIGINT": "int", "BOOLEAN": "bool"}

        class Fixed:
            columns = {k: Column(k, kinds[t], 1.0, None) for k, t in regressions.FIXED_TYPES.items()}
        self.fixed_ds = Fixed()

    # -- recording -------------------------------------------------------------------------
    def fail(self, state, kind, query, eventide, duckdb_answer, detail, index):
        if kind == "error":
            self.errors += 1
        else:
            self.differences += 1
        entry = {"state": state, "seed": self.seed, "base_time": self.base_time, "index": index,
                 "kind": kind, **query, "eventide": cut(eventide), "duckdb": cut(duckdb_answer),
                 "detail": cut(detail, 2000)}
        if len(self.failures) < MAX_FAILURES:
            self.failures.append(entry)
        log(f"FAIL [{state} #{index}] {kind}: {detail}\n  seed {self.seed} base-time {self.base_time}"
            f" (rerun: --seed {self.seed} --base-time {self.base_time} --events {self.args.events}"
            f" --only {state}:{index})")
        for k, v in query.items():
            log(f"  {k}: {v if isinstance(v, str) else json.dumps(v)}")
        log(f"  eventide: {cut(eventide, 1500)}\n  duckdb:   {cut(duckdb_answer, 1500)}")

    # -- one SQL query ---------------------------------------------------------------------
    def check_sql(self, srv, state, index, q, shape, static_only, tables=None):
        tables = tables or (self.main, self.main)
        if isinstance(q, tuple):  # a regression case: (name, df template, duck template)
            name, tdf, tduck = q
            fill = {"t": qident(self.main), "one": qident(self.one), "fixed": qident(self.fixed),
                    "static": "\"phase\" = 'static'" if static_only else "TRUE"}
            df_sql, duck_sql, order, limit, offset, full_sql = (tdf.format(**fill), tduck.format(**fill),
                                                               [], None, None, None)
            shape = name
        else:
            df_sql = q.render(Ctx(DF, tables[0], static_only))
            duck_sql = q.render(Ctx(DUCK, tables[1], static_only))
            if BARE_DISTINCT_FROM.search(df_sql):
                self.fail(state, "error", {"shape": shape, "sql": df_sql, "duckdb_sql": duck_sql}, None, None,
                          "the generator left the right operand of IS DISTINCT FROM bare (a harness "
                          "defect: DataFusion 55 would read it with the lowest precedence)", index)
                return
            order, limit, offset = q.order_keys(), q.limit, q.offset
            full_sql = q.render(Ctx(DUCK, tables[1], static_only), with_limit=False)
        query = {"shape": shape, "sql": df_sql, "duckdb_sql": duck_sql}
        t0 = time.monotonic()
        status, resp, raw = srv.sql(df_sql)
        t1 = time.monotonic()
        self.t_eventide += t1 - t0
        try:
            want = [[norm_duck(v) for v in row] for row in self.duck.execute(duck_sql).fetchall()]
            self.t_duck += time.monotonic() - t1
        except duckdb.Error as e:
            self.fail(state, "error", query, raw[:2000], f"duckdb error: {e}",
                      "DuckDB could not run the reference query (a harness defect)", index)
            return
        if status != 200 or not isinstance(resp, dict) or "rows" not in resp:
            self.fail(state, "error", query, f"HTTP {status}: {raw[:2000]}", want[:20],
                      f"eventide answered {status}", index)
            return
        types = [c["type"] for c in resp["columns"]]
        got = [[norm_eventide(v, t) for v, t in zip(row, types)] for row in resp["rows"]]
        if got and len(got[0]) != (len(want[0]) if want else len(got[0])):
            self.fail(state, "difference", query, got[:20], want[:20], "column counts differ", index)
            return
        diff = None
        if limit is not None and order:
            if multiset_diff(got, want) is not None or order_diff(got, order):
                full = [[norm_duck(v) for v in row] for row in self.duck.execute(full_sql).fetchall()]
                diff = window_diff(got, full, order, offset, limit)
        else:
            diff = multiset_diff(got, want) or (order_diff(got, order) if order else None)
        if diff:
            self.fail(state, "difference", query, got[:30], want[:30], diff, index)

    # -- one known upstream case ------------------------------------------------------------
    def check_known(self, srv, state, case, static_only):
        """A raw-SQL case of known DataFusion 55 behaviour: Eventide must give exactly the known
        answer (not the reference's); any other answer is a difference, to be reviewed."""
        name, tdf, tduck, known, why = case
        index = f"known:{name}"
        fill = {"t": qident(self.main), "one": qident(self.one), "fixed": qident(self.fixed),
                "static": "\"phase\" = 'static'" if static_only else "TRUE"}
        df_sql, duck_sql = tdf.format(**fill), tduck.format(**fill)
        query = {"shape": f"known:{name}", "sql": df_sql, "duckdb_sql": duck_sql}
        entry = self.known.setdefault(name, {"name": name, "explanation": why, "sql": df_sql,
                                             "known": known, "reference": None, "eventide": None,
                                             "states": {}})
        status, resp, raw = srv.sql(df_sql)
        try:
            want = [[norm_duck(v) for v in row] for row in self.duck.execute(duck_sql).fetchall()]
        except duckdb.Error as e:
            entry["states"][state] = "error"
            self.fail(state, "error", query, raw[:2000], f"duckdb error: {e}",
                      "DuckDB could not run the reference query (a harness defect)", index)
            return
        entry["reference"] = want
        if isinstance(known, dict):
            # A known refusal: the status and a part of the message (DuckDB answers rows).
            if status == known["status"] and known["contains"] in raw:
                entry["states"][state] = "as known"
                if entry["eventide"] is None:
                    entry["eventide"] = f"HTTP {status}: {raw[:500]}"
                return
            entry["states"][state] = "changed"
            entry["eventide"] = f"HTTP {status}: {raw[:500]}"
            self.fail(state, "difference", query, raw[:2000], {"known": known, "reference": want},
                      f"known DataFusion 55 refusal changed ({why}): review the case in "
                      "regressions.KNOWN_UPSTREAM", index)
            return
        if status != 200 or not isinstance(resp, dict) or "rows" not in resp:
            entry["states"][state] = "error"
            entry["eventide"] = f"HTTP {status}: {raw[:500]}"
            self.fail(state, "error", query, f"HTTP {status}: {raw[:2000]}", known,
                      f"eventide answered {status} to a known DataFusion 55 case ({why})", index)
            return
        types = [c["type"] for c in resp["columns"]]
        got = [[norm_eventide(v, t) for v, t in zip(row, types)] for row in resp["rows"]]
        if entry["eventide"] is None:
            entry["eventide"] = got
        if multiset_diff(want, known) is None:
            entry["states"][state] = "reference agrees"
            self.fail(state, "error", query, got, want,
                      "the reference answers the known DataFusion answer itself: the case no "
                      "longer shows the behaviour (a harness defect)", index)
            return
        diff = multiset_diff(got, known)
        if diff is None:
            entry["states"][state] = "as known"
            return
        entry["states"][state] = "changed"
        entry["eventide"] = got
        fixed = multiset_diff(got, want) is None
        self.fail(state, "difference", query, got, {"known": known, "reference": want},
                  f"known DataFusion 55 behaviour changed ({why}): Eventide's answer is no longer the "
                  f"known one{' and now matches the reference: fixed upstream?' if fixed else ''}; "
                  f"review the case in regressions.KNOWN_UPSTREAM ({diff})", index)

    # -- one spec --------------------------------------------------------------------------
    def check_spec(self, srv, state, index, spec, dataset, table, ds=None):
        wire = wire_spec(spec)
        query = {"shape": "spec", "dataset": dataset, "spec": wire}
        now_us = int(time.time() * 1_000_000)
        t0 = time.monotonic()
        status, resp, raw = srv.spec(dataset, wire)
        t1 = time.monotonic()
        self.t_eventide += t1 - t0
        ref = Reference(self.duck, ds or self.ds, table)
        try:
            want, want_series, okeys, sql, uncertain = ref.answer(spec, now_us)
            self.t_duck += time.monotonic() - t1
        except duckdb.Error as e:
            self.fail(state, "error", query, raw[:2000], f"duckdb error: {e}",
                      "DuckDB could not run the reference query (a harness defect)", index)
            return
        query["duckdb_sql"] = sql
        if status != 200 or not isinstance(resp, dict) or "results" not in resp:
            self.fail(state, "error", query, f"HTTP {status}: {raw[:2000]}", want[:20],
                      f"eventide answered {status}", index)
            return
        ts_keys = {"time"} | {k for k in (calc_key(c) for c in spec.get("calculations", []))
                              if k.endswith("(timestamp)") and k.split("(")[0] in ("MIN", "MAX")}
        if "timestamp" in spec.get("breakdowns", []):
            ts_keys.add("timestamp")

        def rows_of(items, expected):
            # Integers on both sides are exact (compare.ExactInt): a spec answers COUNT, SUM of
            # an integer column, MIN/MAX of one, COUNT_DISTINCT and heatmap counts as integers.
            out = []
            for d in items:
                d = {k: exact_ints((parse_rfc3339(v) if k in ts_keys and isinstance(v, str) else v)
                                   if not expected else norm_duck(v)) for k, v in d.items()}
                out.append(d)
            return out

        got = rows_of(resp["results"], False)
        include = ()
        if uncertain:
            # Groups whose percentile is within its slack of a having's value may be kept or
            # dropped (specgen.Reference.having_sql): the reference keeps those Eventide kept.
            bds = spec.get("breakdowns", [])
            kept = {group_key(d.get(b) for b in bds) for d in got}
            include = {k for k in uncertain if k in kept}
            want, want_series, okeys, sql, _ = ref.answer(spec, now_us, include=include)
            query["duckdb_sql"] = sql
        want = rows_of(want, True)
        names = sorted(want[0]) if want else (sorted(got[0]) if got else [])
        for d in got:
            if sorted(d) != names:
                self.fail(state, "difference", query, got[:10], want[:10],
                          f"result keys {sorted(d)}, expected {names}", index)
                return
        pos = {k: i for i, k in enumerate(names)}

        def as_rows(dicts):
            return [[d[k] for k in names] for d in dicts]

        keys = [(pos[k], desc, False) for k, desc in okeys if k in pos]
        g_rows, w_rows = as_rows(got), as_rows(want)
        limit = spec.get("limit", 1000)
        diff = None
        if multiset_diff(g_rows, w_rows) is not None or order_diff(g_rows, keys):
            full, _, _, _, _ = ref.answer(spec, now_us, with_limit=False, include=include)
            diff = window_diff(g_rows, as_rows(rows_of(full, True)), keys, 0, limit)
        if diff is None and spec.get("granularity"):
            if "series" not in resp:
                diff = "no series in the answer"
            else:
                gs, ws = rows_of(resp["series"], False), rows_of(want_series, True)
                snames = sorted(ws[0]) if ws else (sorted(gs[0]) if gs else [])
                bad = [d for d in gs if sorted(d) != snames]
                sp = {k: i for i, k in enumerate(snames)}
                if bad:
                    diff = f"series keys {sorted(bad[0])}, expected {snames}"
                else:
                    srows = [[d[k] for k in snames] for d in gs]
                    skeys = [(sp[k], False, False) for k in ["time"] + spec.get("breakdowns", []) if k in sp]
                    diff = multiset_diff(srows, [[d[k] for k in snames] for d in ws])
                    diff = "series: " + diff if diff else order_diff(srows, skeys)
                got = {"results": got, "series": gs}
                want = {"results": want, "series": ws}
        if diff:
            self.fail(state, "difference", query, got, want, diff, index)

    # -- one state -------------------------------------------------------------------------
    def run_state(self, state, count, only=None):
        log(f"== state {state}: preparing")
        self.current_state = state
        t0 = time.monotonic()
        static_only = state == "ingesting"
        srv = getattr(self.states, state)()
        live = None
        try:
            if static_only:
                live = LiveIngest(srv, self.ds, self.main, self.seed)
                live.start()
                wait_started(live)
            t1 = time.monotonic()
            log(f"   ready in {t1 - t0:.1f} s; running {count} queries")
            done = 0
            wanted = None if only is None or not isinstance(only, str) else only.split(":", 1)[1]
            if only is None or wanted is not None:
                for case in regressions.SQL:
                    if wanted not in (None, case[0]):
                        continue
                    self.check_sql(srv, state, f"regression:{case[0]}", case, case[0], static_only)
                    done += 1
                for case in regressions.KNOWN_UPSTREAM:
                    if wanted not in (None, case[0]):
                        continue
                    self.check_known(srv, state, case, static_only)
                    done += 1
                for name, which, spec in regressions.SPECS:
                    if wanted not in (None, name):
                        continue
                    spec = dict(spec)
                    if "start_time" not in spec and "time_range" not in spec:
                        spec["start_time"] = self.ds.static_start_us // 1_000_000
                        spec["end_time"] = self.ds.static_end_us // 1_000_000
                    dataset = {"one": self.one, "fixed": self.fixed}.get(which, self.main)
                    self.check_spec(srv, state, f"regression:{name}", spec, dataset, dataset,
                                    self.fixed_ds if which == "fixed" else self.ds)
                    done += 1
            indices = range(count) if only is None else ([] if wanted is not None else [only])
            for i in indices:
                self.one_query(srv, state, i, static_only)
                done += 1
                if live is not None and live.error:
                    raise HarnessError(f"live ingest failed: {live.error}")
                if done % 250 == 0:
                    log(f"   {state}: {done} queries, {self.errors} errors, {self.differences} differences"
                        f" ({time.monotonic() - t1:.0f} s)")
            self.per_state[state] = self.per_state.get(state, 0) + done
            log(f"   {state}: {done} queries in {time.monotonic() - t1:.1f} s (so far: eventide"
                f" {self.t_eventide:.1f} s, duckdb {self.t_duck:.1f} s)")
            if live is not None:
                live.halt()
                if live.error:
                    raise HarnessError(f"live ingest failed: {live.error}")
                log(f"   live ingest: {live.sent} events in {live.batches} batches while the queries ran;"
                    f" catalog changes seen: {live.flushes} with new flushes, {live.merges} with merges")
        finally:
            if live is not None:
                live.stop_flag.set()
            if srv.alive():
                srv.stop()

    def one_query(self, srv, state, i, static_only):
        r = random.Random(f"{self.seed}:{state}:{i}")
        if r.random() < 0.65:
            shape, q = SqlGen(self.ds, r).query()
            self.shapes[shape] = self.shapes.get(shape, 0) + 1
            self.check_sql(srv, state, i, q, shape, static_only)
        else:
            spec = SpecGen(self.ds, r, static_only).spec(int(time.time() * 1_000_000))
            self.shapes["spec"] = self.shapes.get("spec", 0) + 1
            self.check_spec(srv, state, i, spec, self.main, self.main)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True, help="the eventide binary")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--queries", type=int, required=True, help="random queries in all (split over states)")
    p.add_argument("--states", default=",".join(ALL_STATES))
    p.add_argument("--events", type=int, default=6000, help="static events")
    p.add_argument("--workdir", help="data directories and logs (default: a new temporary folder, "
                                     "removed at the end when everything passed)")
    p.add_argument("--base-time", type=int, help="the hour the data is placed before (Unix seconds, "
                                                 "default: the start of the current hour)")
    p.add_argument("--only", help="STATE:INDEX, STATE:regression:NAME or STATE:known:NAME: run just this query "
                                  "(after preparing STATE)")
    args = p.parse_args(argv)
    states = [s for s in args.states.split(",") if s]
    for s in states:
        if s not in ALL_STATES:
            p.error(f"unknown state {s!r} (use {','.join(ALL_STATES)})")
    only = None
    if args.only:
        st, _, idx = args.only.partition(":")
        states, only = [st], (idx if idx.startswith(("regression:", "known:")) else int(idx))
    log(f"differential: seed {args.seed}, {args.events} events, {args.queries} queries over {states}")
    started = time.monotonic()
    run = None
    fatal = None
    try:
        run = Run(args)
        ds = run.ds
        log(f"   base time {run.base_time}, static events {len(ds.rows)} accepted of {len(ds.items)}"
            f" over {(ds.static_end_us - ds.static_start_us) // HOUR_US} h, {len(ds.columns)} columns;"
            f" workdir {run.workdir}")
        per = [args.queries // len(states) + (1 if k < args.queries % len(states) else 0)
               for k in range(len(states))]
        for state, count in zip(states, per):
            try:
                run.run_state(state, count, only)
            except HarnessError as e:
                run.fail(state, "error", {"shape": "setup"}, str(e), None, f"state setup or run failed: {e}",
                         "setup")
    except Exception as e:  # noqa: BLE001 - reported in the summary
        fatal = f"{type(e).__name__}: {e}"
        log(traceback.format_exc())
    finally:
        stop_all()
    elapsed = time.monotonic() - started
    summary = {"seed": args.seed, "queries": sum(run.per_state.values()) if run else 0,
               "per_state": run.per_state if run else {}, "errors": (run.errors if run else 0) + bool(fatal),
               "differences": run.differences if run else 0,
               "failures": run.failures if run else [], "events": args.events,
               "base_time": run.base_time if run else None, "elapsed_s": round(elapsed, 1),
               "shapes": run.shapes if run else {},
               "known_upstream": list(run.known.values()) if run else []}
    if fatal:
        summary["failures"].append({"state": None, "seed": args.seed, "kind": "error", "detail": fatal})
    ok = summary["errors"] == 0 and summary["differences"] == 0
    for k in summary["known_upstream"]:
        states = ", ".join(f"{st}: {v}" for st, v in k["states"].items())
        log(f"   known DataFusion 55 behaviour {k['name']}: eventide {cut(k['eventide'], 200)}, "
            f"reference {cut(k['reference'], 200)} ({states}): {k['explanation']}")
    log(f"differential: seed {args.seed}: {summary['queries']} queries {summary['per_state']}, "
        f"{summary['errors']} errors, {summary['differences']} differences, "
        f"{len(summary['known_upstream'])} known upstream cases, {elapsed:.1f} s")
    if run and ok and run.own_workdir:
        shutil.rmtree(run.workdir, ignore_errors=True)
    elif run:
        log(f"   data directories and server logs kept in {run.workdir}")
    print(json.dumps(summary, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
