"""The seeded event generator and the DuckDB copy of the accepted events.

Every event is built twice: as the batch item Eventide receives (nested objects, several time
forms, sample rates as numbers, strings or absent, NaN tokens, values of the wrong type that
Eventide must refuse) and as the flat row Eventide's documented rules make of it (API.md "How
events are built", ARCHITECTURE.md "Type rules"). The flat rows go to DuckDB.
"""

import datetime as dt
import json
import os
import random

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
HOUR_US = 3600 * 1_000_000
I64_MAX, I64_MIN = 2**63 - 1, -(2**63)

SERVICES = ["api", "web", "checkout", "paiement-ß", "o'brien", 'svc "quoted"', "",
            "ünïcødé-日本", "api ", "API", "back\\slash"]
ENDPOINTS = ["/", "/api/v1/users", "/api/v1/users/{id}", "/api/v1/orders", "/100%_off",
             "/search?q=a_b", "/o'reilly", "/ünï/cødé", "/health", "", '/a"b', "/emoji/🎉",
             "/UPPER/Case", "/api/v1/orders/refund"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]
STATUSES = [200, 200, 200, 200, 201, 204, 301, 304, 400, 401, 404, 404, 429, 500, 502, 503]
REGIONS = ["us-east-1", "eu-west-1", "ap-south-1", "sa-east-1"]
TIERS = ["gold", "silver", "bronze"]
ERRORS = ["timeout", 'said "no"', "it's broken", "ошибка сети", "💥 boom", "", "line1\nline2",
          "tab\there", "x" * 300, "%_wild_%", "NULL", "null"]
NAMESPACES = ["default", "prod", "staging", "kube-system"]
CODES = ["E100", "E200", "W1", "ok", ""]


def fmt_ts(us, form="z6"):
    """An RFC3339 text of the µs time `us` in one of the accepted forms."""
    t = EPOCH + dt.timedelta(microseconds=us)
    if form == "offset":
        local = t.astimezone(dt.timezone(dt.timedelta(hours=1)))
        return local.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+01:00"
    if form == "space":
        return t.strftime("%Y-%m-%d %H:%M:%S.%f")
    if form == "z3":
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    if form == "z0":
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duck_ts(us):
    t = EPOCH + dt.timedelta(microseconds=us)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


class Column:
    def __init__(self, name, kind, presence, make, tags=()):
        self.name, self.kind, self.presence, self.make = name, kind, presence, make
        self.tags = set(tags)
        self.values = []  # sorted distinct non-null values among the accepted static events
        self.count = 0

    def quoted(self):
        return '"' + self.name.replace('"', '""') + '"'

    def __repr__(self):
        return f"Column({self.name!r}, {self.kind})"


class Dataset:
    """The static events of one seed: items to send, flat rows, columns and their values."""

    def __init__(self, seed, n_events, base_hour_us, name="diff"):
        self.seed, self.name = seed, name
        self.rng = random.Random(f"{seed}:events")
        rng = self.rng
        self.base_hour_us = base_hour_us  # the start of the hour the run began in (UTC)
        hours = rng.randint(6, 27)
        self.static_end_us = base_hour_us - 3 * HOUR_US
        self.static_start_us = self.static_end_us - hours * HOUR_US
        self.live_start_us, self.live_end_us = self.static_end_us, base_hour_us - HOUR_US
        self.n = n_events
        self.users = [f"u{rng.getrandbits(40):010x}" for _ in range(max(10, n_events // 3))]
        self.traces = [f"{rng.getrandbits(128):032x}" for _ in range(max(10, n_events // 2))]
        self.buyers = [f"b{i}" for i in range(200)]
        self.pods = [f"pod-{rng.getrandbits(20):05x}" for _ in range(40)]
        self.columns = {}
        self._define_columns()
        self.items, self.expect_ok, self.rows = [], [], []
        prev = []
        for seq in range(n_events):
            item, row, ok = self.make_event(rng, seq, "static", prev)
            self.items.append(item)
            self.expect_ok.append(ok)
            if ok:
                self.rows.append(row)
        self._collect_values()

    # -- columns ---------------------------------------------------------------------------
    def _col(self, name, kind, presence, make, *tags):
        self.columns[name] = Column(name, kind, presence, make, tags)

    def _define_columns(self):
        rng = self.rng
        pick = lambda xs: (lambda r, s: r.choice(xs))
        self._col("seq", "int", 1.0, lambda r, s: s, "unique", "small")
        self._col("phase", "str", 1.0, lambda r, s: "static", "lowcard")
        self._col("service.name", "str", 0.99, pick(SERVICES), "lowcard", "nested", "pattern")
        self._col("service.version", "str", 0.8, lambda r, s: f"1.{r.randint(0, 4)}.{r.randint(0, 2)}",
                  "lowcard", "nested", "pattern")
        self._col("endpoint", "str", 0.95, pick(ENDPOINTS), "lowcard", "pattern")
        self._col("http.method", "str", 0.97, pick(METHODS), "lowcard", "nested", "pattern")
        self._col("http.status", "int", 0.97, pick(STATUSES), "lowcard", "nested", "small")
        self._col("status", "int", 1.0, pick(STATUSES), "lowcard", "small")
        self._col("duration_ms", "float", 0.98, self._duration, "positive")
        self._col("bytes", "int", 0.95, lambda r, s: 0 if r.random() < 0.05 else r.randint(1, 5_000_000),
                  "small")
        self._col("delta", "float", 0.8, lambda r, s: r.randint(-64000, 64000) / 64, "exact")
        self._col("temp", "int", 0.7, lambda r, s: r.randint(-50, 50), "small", "lowcard")
        self._col("big", "int", 0.4, self._big, "big")
        self._col("user_id", "str", 0.97, lambda r, s: r.choice(self.users), "highcard")
        self._col("trace.trace_id", "str", 0.99, lambda r, s: r.choice(self.traces), "highcard", "nested")
        self._col("trace.span_id", "str", 0.99, lambda r, s: f"{r.getrandbits(64):016x}", "highcard",
                  "nested", "unique_ish")
        self._col("trace.parent_id", "str", 0.6, lambda r, s: f"{r.getrandbits(64):016x}", "highcard",
                  "nested")
        self._col("cache_hit", "bool", 0.9, lambda r, s: r.random() < 0.3)
        self._col("region", "str", 0.7, pick(REGIONS), "lowcard", "pattern")
        self._col("tier", "str", 0.85, pick(TIERS), "lowcard", "pattern")
        self._col("buyer", "str", 0.9, lambda r, s: r.choice(self.buyers), "pattern")
        self._col("error", "str", 0.03, pick(ERRORS), "sparse", "pattern")
        self._col("sparse_int", "int", 0.02, lambda r, s: r.randint(-1000, 1000), "sparse", "small")
        self._col("sparse_float", "float", 0.04, lambda r, s: round(r.uniform(-5, 5), 4), "sparse")
        self._col("sparse_flag", "bool", 0.01, lambda r, s: r.random() < 0.5, "sparse")
        self._col("k8s.pod.name", "str", 0.5, lambda r, s: r.choice(self.pods), "nested", "pattern")
        self._col("k8s.namespace", "str", 0.5, pick(NAMESPACES), "nested", "lowcard", "pattern")
        self._col("db.rows", "int", 0.2, lambda r, s: r.randint(0, 10_000), "nested", "small")
        self._col("db.statement", "str", 0.2, lambda r, s: r.choice(["SELECT 1", "UPDATE t SET a='x'",
                                                                      "DELETE FROM \"t\""]), "nested")
        self._col("app.build", "str", 0.6, lambda r, s: f"b{r.randint(100, 110)}", "literal_dot", "lowcard")
        self._col("Mixed Case", "str", 0.5, pick(["Alpha", "alpha", "BETA", "gamma δ"]), "lowcard", "pattern")
        self._col("user-agent", "str", 0.6, pick(["curl/8.5", "Mozilla/5.0 (X11)", "python-requests/2.31"]),
                  "lowcard", "pattern")
        self._col('we"ird', "int", 0.3, lambda r, s: r.randint(0, 3), "small", "lowcard")
        self._col("code", "str", 0.5, self._code, "mixed", "lowcard", "pattern")
        self._col("tags", "str", 0.05, self._tags, "json", "sparse")
        self._col("deep.l1.l2.l3.l4", "str", 0.02, None, "deep", "sparse")
        self._col("late_str", "str", 0.8, pick(["new", "newer", "newest"]), "late", "lowcard", "pattern")
        self._col("late_int", "int", 0.7, lambda r, s: r.randint(0, 100), "late", "small")
        self._col("feature.enabled", "bool", 0.5, lambda r, s: r.random() < 0.5, "late", "nested")
        # Filler attributes: a seeded number of extra columns, so a seed has 20-60 columns.
        for i in range(rng.randint(0, 20)):
            kind = rng.choice(["int", "float", "bool", "str"])
            presence = rng.choice([1.0, 0.9, 0.5, 0.1, 0.03])
            if kind == "int":
                lo = rng.randint(-100, 0)
                make = (lambda lo: lambda r, s: r.randint(lo, lo + 300))(lo)
            elif kind == "float":
                make = lambda r, s: r.randint(-4000, 40000) / 8
            elif kind == "bool":
                make = lambda r, s: r.random() < 0.5
            else:
                vals = [f"v{j}" for j in range(rng.choice([2, 5, 30, 500]))]
                make = (lambda vals: lambda r, s: r.choice(vals))(vals)
            tags = ["small", "exact"] if kind in ("int", "float") else ["pattern"]
            self._col(f"attr.a{i:02d}", kind, presence, make, "nested", "filler", *tags)

    def _duration(self, r, s):
        if s > 0 and r.random() < 0.05:
            return r.randint(0, 50)  # an int into a float column: widened
        return round(r.lognormvariate(3, 1.2), 3) + 0.001

    def _big(self, r, s):
        x = r.random()
        if x < 0.05:
            return r.choice([I64_MAX, I64_MIN, I64_MIN + 1])
        base = r.choice([2**53, -(2**53), 2**53 + 1, -(2**53) - 1, 2**53 - 1])
        return base + r.randint(-1000, 1000)

    def _code(self, r, s):
        x = r.random()
        if s == 0 or x < 0.7:
            return r.choice(CODES)
        if x < 0.93:
            return r.choice([404, 500, -1, 0, 2**40])  # ints into a string column: text
        return r.random() < 0.5  # bools into a string column: "true" / "false"

    def _tags(self, r, s):
        return [r.choice(["a", "b", "c_d"]) for _ in range(r.randint(0, 3))] + [r.randint(0, 9)]

    # -- events ----------------------------------------------------------------------------
    def _timestamp(self, r, start, end, prev):
        x = r.random()
        if prev and x < 0.08:
            return r.choice(prev)  # ties
        if x < 0.12:
            hours = (end - start) // HOUR_US
            return start + r.randint(0, hours - 1) * HOUR_US + r.choice([0, 0, 1, HOUR_US - 1])
        us = r.randrange(start, end)
        if x < 0.25:
            us -= us % 1_000_000
        elif x < 0.35:
            us -= us % 1000
        return us

    def make_event(self, r, seq, phase, prev_times):
        """(batch item, flat row for DuckDB, expected to be accepted)."""
        start, end = ((self.static_start_us, self.static_end_us) if phase == "static"
                      else (self.live_start_us, self.live_end_us))
        ts = self._timestamp(r, start, end, prev_times)
        if len(prev_times) < 500:
            prev_times.append(ts)
        else:
            prev_times[r.randrange(500)] = ts
        data, row = {}, {}
        late = seq >= int(self.n * 0.6) if phase == "static" else True
        for col in self.columns.values():
            if col.make is None and "deep" not in col.tags:
                continue  # timestamp, _samplerate
            if "late" in col.tags and not late:
                continue
            if seq > 0 and r.random() >= col.presence:
                continue
            if "deep" in col.tags:
                k = r.randint(0, 9)
                data.setdefault("deep", {})["l1"] = {"l2": {"l3": {"l4": {"l5": {"x": k}}}}}
                row[col.name] = json.dumps({"l5": {"x": k}}, separators=(",", ":"))
                continue
            v = col.make(r, seq)
            if col.name == "phase":
                v = phase
            if "literal_dot" in col.tags or "nested" not in col.tags:
                data[col.name] = v
            else:
                parts = col.name.split(".")
                node = data
                for p in parts[:-1]:
                    node = node.setdefault(p, {})
                node[parts[-1]] = v
            row[col.name] = self._stored(col, v)
        ok = True
        if phase == "static" and seq >= 10:
            x = r.random()
            if x < 0.004:
                # A value of the wrong type: Eventide refuses this one event.
                name, bad = r.choice([("bytes", "lots"), ("status", 1.5), ("cache_hit", 1),
                                      ("duration_ms", "slow"), ("temp", True)])
                data[name] = bad
                ok = False
            elif x < 0.01:
                # A NaN token (Python's json writes it): the field is dropped, the event kept.
                data["delta"] = float("nan")
                row.pop("delta", None)
            elif x < 0.015:
                data["_samplerate"] = 99  # a _samplerate field inside data is dropped
        # The event time, in one of the accepted places and forms.
        item = {"data": data}
        x = r.random()
        if x < 0.55:
            item["time"] = fmt_ts(ts)
        elif x < 0.65:
            item["time"] = fmt_ts(ts, "offset")
        elif x < 0.7:
            item["time"] = fmt_ts(ts, "space")
        elif x < 0.85:
            data["timestamp"] = fmt_ts(ts)
            if r.random() < 0.3:
                item["time"] = None  # null counts as absent
        elif x < 0.92 and ts % 1_000_000 == 0:
            item["time"] = ts // 1_000_000  # Unix seconds
        elif ts % 1000 == 0:
            item["time"] = ts // 1000  # milliseconds (above 10^11)
        else:
            item["time"] = fmt_ts(ts)
        # The sample rate.
        x = r.random()
        if x < 0.7:
            sr = 1
        elif x < 0.8:
            sr = item["samplerate"] = 1
        elif x < 0.93:
            sr = item["samplerate"] = r.randint(2, 20)
        elif x < 0.95:
            item["samplerate"], sr = 0, 1  # 0 is taken as 1
        elif x < 0.97:
            sr = r.randint(2, 9)
            item["samplerate"] = str(sr)  # a numeric string
        elif x < 0.98:
            sr = r.randint(2, 9)
            item["samplerate"] = float(sr)  # an integral float
        else:
            sr = 1
            item["samplerate"] = None  # null counts as 1
        row["timestamp"] = ts
        row["_samplerate"] = sr
        return item, row, ok

    def _stored(self, col, v):
        if col.kind == "str":
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, int):
                return str(v)
            if isinstance(v, list):
                return json.dumps(v, separators=(",", ":"))
            return v
        if col.kind == "float":
            return float(v)
        return v

    def live_items(self, seed):
        """An endless stream of live events (phase "live", stamped after the static ones)."""
        r = random.Random(f"{seed}:live")
        prev = []
        seq = self.n
        while True:
            item, _, _ = self.make_event(r, seq, "live", prev)
            seq += 1
            yield item

    def _collect_values(self):
        for col in self.columns.values():
            vals = {row[col.name] for row in self.rows if row.get(col.name) is not None}
            col.count = sum(1 for row in self.rows if row.get(col.name) is not None)
            col.values = sorted(vals, key=lambda v: (str(type(v)), v))
        # The column list as Eventide has it: only columns some accepted event carries.
        self.columns = {k: c for k, c in self.columns.items() if c.count > 0}
        self.columns["timestamp"] = Column("timestamp", "ts", 1.0, None, ["time"])
        self.columns["timestamp"].values = sorted({row["timestamp"] for row in self.rows})
        self.columns["timestamp"].count = len(self.rows)
        self.columns["_samplerate"] = Column("_samplerate", "int", 1.0, None, ["small"])
        self.columns["_samplerate"].values = sorted({row["_samplerate"] for row in self.rows})
        self.columns["_samplerate"].count = len(self.rows)

    # -- DuckDB ----------------------------------------------------------------------------
    DUCK_TYPES = {"int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "str": "VARCHAR",
                  "ts": "TIMESTAMP"}

    def load_duckdb(self, con, workdir, table="diff"):
        path = os.path.join(workdir, "duckdb-events.ndjson")
        with open(path, "w", encoding="utf-8") as f:
            for row in self.rows:
                out = dict(row)
                out["timestamp"] = duck_ts(row["timestamp"])
                f.write(json.dumps(out, ensure_ascii=False) + "\n")
        cols = ", ".join(f"'{c.name.replace(chr(39), chr(39) * 2)}': '{self.DUCK_TYPES[c.kind]}'"
                         for c in self.columns.values())
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f'CREATE TABLE "{table}" AS SELECT * FROM read_json(\'{path}\', '
                    f"format = 'newline_delimited', columns = {{{cols}}})")
        # The copy must hold exactly the model's values.
        n, s = con.execute(f'SELECT count(*), sum(seq) FROM "{table}"').fetchone()
        assert n == len(self.rows) and s == sum(r["seq"] for r in self.rows), (n, s)
        for c in self.columns.values():
            got = con.execute(f'SELECT count({c.quoted()}) FROM "{table}"').fetchone()[0]
            assert got == c.count, (c.name, got, c.count)
        bigs = [r["big"] for r in self.rows if r.get("big") is not None]
        if bigs:
            got = con.execute(f'SELECT min(big), max(big) FROM "{table}"').fetchone()
            assert got == (min(bigs), max(bigs)), got
