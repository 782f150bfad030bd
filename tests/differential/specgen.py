"""Random query specs for POST /api/v1/query/{dataset}, and their answers computed in DuckDB
from the semantics docs/API.md documents (not from Eventide's code): the reference."""

import math

from compare import Approx, group_key, norm_duck, parse_rfc3339
from events import HOUR_US, fmt_ts
from sqlast import qident

PCTS = {"P001": 0.001, "P01": 0.01, "P05": 0.05, "P10": 0.1, "P25": 0.25, "P50": 0.5, "P75": 0.75,
        "P90": 0.9, "P95": 0.95, "P99": 0.99, "P999": 0.999}
FILTER_OPS = ["=", "!=", ">", ">=", "<", "<=", "starts-with", "does-not-start-with", "contains",
              "does-not-contain", "exists", "does-not-exist", "in", "not-in"]
HAVING_OPS = ["=", "!=", ">", ">=", "<", "<="]

# How far an interpolated percentile may be from the reference: 16 ulps (2^-52 relative) of the
# larger of its two neighbouring values (compare.Approx). Both engines interpolate in double
# arithmetic and each can be off the exact value by about one such ulp; an error like
# DataFusion's truncated weight (FINDINGS.md 3: up to 1e-6 of the gap) is far beyond it.
PCT_SLACK_MACRO = """CREATE OR REPLACE MACRO pct_slack(l, q) AS CASE WHEN len(l) = 0 THEN 0.0
  ELSE 16 * 2.220446049250313e-16 * greatest(abs(l[CAST(floor(q * (len(l) - 1)) AS BIGINT) + 1]),
                                             abs(l[CAST(ceil(q * (len(l) - 1)) AS BIGINT) + 1])) END"""
NEVER_SEEN = "never_seen_column"


def calc_key(c):
    op = c["op"].upper()
    return "COUNT" if op == "COUNT" else f"{op}({c['column']})"


def _sq(s):
    return "'" + s.replace("'", "''") + "'"


class SpecGen:
    def __init__(self, ds, rng, static_only):
        self.ds, self.r, self.static_only = ds, rng, static_only
        self.cols = [c for c in ds.columns.values() if c.name != "phase"]

    def column(self, kinds=None, exclude=()):
        cands = [c for c in self.cols if (kinds is None or c.kind in kinds) and not (c.tags & set(exclude))]
        common = [c for c in cands if "sparse" not in c.tags and "filler" not in c.tags]
        return self.r.choice(common if common and self.r.random() < 0.8 else cands)

    def calc(self):
        r = self.r
        op = r.choices(["COUNT", "SUM", "AVG", "MIN", "MAX", "COUNT_DISTINCT", "P", "HEATMAP"],
                       [16, 14, 12, 10, 10, 10, 20, 5])[0]
        if op == "COUNT":
            c = {"op": "COUNT"}
            if r.random() < 0.1:
                c["column"] = self.column().name  # COUNT ignores any column
            return c
        if op == "P":
            op = r.choice(list(PCTS))
        if op in ("SUM", "AVG"):
            # The ±2^53 / int64-edge column too: spec sums of integers are exact (DECIMAL(38, 0)).
            col = self.column(["int", "float"])
        elif op in ("MIN", "MAX", "COUNT_DISTINCT"):
            col = self.column()
        elif op == "HEATMAP":
            col = self.column(["int", "float"], ["big"])
        else:
            col = self.column(["int", "float"])
        return {"op": op.lower() if r.random() < 0.15 else op, "column": col.name}

    def numeric_calc(self, c):
        op = c["op"].upper()
        if op == "HEATMAP":
            return False
        if op in ("MIN", "MAX"):
            return self.ds.columns[c["column"]].kind in ("int", "float")
        return True

    def value(self, c):
        r = self.r
        if c.values and r.random() < 0.85:
            return r.choice(c.values)
        if c.kind == "int":
            return r.randint(-5, 600)
        if c.kind == "float":
            return r.choice([0.0, 10.5, -3.25])
        if c.kind == "bool":
            return r.random() < 0.5
        if c.kind == "ts":
            return r.randrange(self.ds.static_start_us, self.ds.static_end_us)
        return r.choice(["", "zzz", "é", "API", "gold"])

    def filter_value(self, c, op):
        """A JSON value for a filter on c, in one of the forms API.md accepts for its type."""
        r = self.r
        v = self.value(c)
        if c.kind == "str":
            if op in ("starts-with", "does-not-start-with", "contains", "does-not-contain") and v:
                v = v[: r.randint(0, len(v))] if op.endswith("start-with") else v[r.randrange(len(v)):]
            x = r.random()
            if x < 0.05:
                return r.choice([404, 0, -1])  # a number is compared as text
            if x < 0.08:
                return r.random() < 0.5  # so is a boolean
            return v
        if c.kind == "int":
            if op in ("starts-with", "does-not-start-with", "contains", "does-not-contain"):
                s = str(v)[: r.randint(1, len(str(v)))]
                return int(s) if s.lstrip("-").isdigit() and r.random() < 0.3 else s
            x = r.random()
            if x < 0.1:
                return v + 0.5  # a fractional number: compared as a double
            if x < 0.15:
                return str(v)  # a numeric string
            if x < 0.18:
                return f"{v}.25"
            return v
        if c.kind == "float":
            return repr(float(v)) if r.random() < 0.15 else v
        if c.kind == "bool":
            return str(v).lower() if r.random() < 0.3 else v
        x = r.random()  # timestamp
        if x < 0.5:
            return fmt_ts(v, r.choice(["z6", "z6", "offset", "z0"]))
        if x < 0.75:
            return v // 1_000_000
        return v // 1000

    def filt(self):
        r = self.r
        if r.random() < 0.04:
            return {"column": NEVER_SEEN, "op": r.choice(["exists", "does-not-exist"])}
        c = self.column()
        ops = list(FILTER_OPS)
        if c.kind == "float" or c.kind == "ts":
            ops = [o for o in ops if "start" not in o and "contain" not in o]
        if c.kind == "bool":
            ops = [o for o in ops if o in ("=", "!=", "exists", "does-not-exist", "in", "not-in")]
        op = r.choice(ops)
        f = {"column": c.name, "op": op}
        if op in ("exists", "does-not-exist"):
            return f
        if op in ("in", "not-in"):
            vals = [self.filter_value(c, "=") for _ in range(r.choice([0, 1, 2, 3, 5]))]
            if c.kind == "int":
                vals = [v for v in vals if isinstance(v, int)]
            f["value"] = vals
            return f
        f["value"] = self.filter_value(c, op)
        return f

    def window(self):
        """The time window: mostly absolute; relative forms (to now) outside the ingesting state."""
        r = self.r
        ds = self.ds
        lo, hi = ds.static_start_us, ds.static_end_us
        x = r.random()
        if x < 0.45:
            a, b = lo - r.randint(0, 2 * HOUR_US), hi + r.randint(0, HOUR_US) if not self.static_only else hi
        else:
            a, b = sorted([r.randrange(lo, hi), r.randrange(lo, hi)])
            b = min(b + 1_000_000, hi)
        a_s, b_s = a // 250_000 / 4, b // 250_000 / 4  # quarter seconds: exact in µs
        spec = {}
        y = r.random()
        if y < 0.55:
            spec["start_time"], spec["end_time"] = a_s, b_s
        elif y < 0.65:
            spec["start_time"], spec["end_time"] = int(a_s * 1000), int(b_s * 1000)  # ms
        elif y < 0.75:
            spec["start_time"], spec["time_range"] = int(a_s), max(1, int(b_s - int(a_s)))
        elif y < 0.85:
            spec["end_time"], spec["time_range"] = int(b_s), max(1, int(b_s) - int(a_s))
        elif not self.static_only and y < 0.93:
            spec["time_range"] = 40 * 86400
        elif not self.static_only and y < 0.97:
            spec["start_time"] = int(a_s)
        elif not self.static_only:
            pass  # the last 2 hours: no static event there
        else:
            spec["start_time"], spec["end_time"] = a_s, b_s
        return spec

    def spec(self, now_us):
        r = self.r
        s = self.window()
        calcs, keys = [], set()
        for _ in range(r.choices([0, 1, 2, 3, 4, 5], [8, 30, 25, 20, 10, 7])[0]):
            c = self.calc()
            if calc_key(c) not in keys:
                keys.add(calc_key(c))
                calcs.append(c)
        if calcs or r.random() < 0.5:
            s["calculations"] = calcs or [{"op": "COUNT"}]
        calcs = s.get("calculations", [{"op": "COUNT"}])
        nb = r.choices([0, 1, 2, 3], [25, 40, 25, 10])[0]
        bds = []
        for _ in range(nb):
            c = self.column()
            if c.name not in bds:
                bds.append(c.name)
        if bds:
            s["breakdowns"] = bds
        if r.random() < 0.75:
            s["filters"] = [self.filt() for _ in range(r.randint(1, 4))]
            if r.random() < 0.6:
                s["filter_combination"] = r.choice(["AND", "OR", "or", "and"])
        plain = [c for c in calcs if c["op"].upper() != "HEATMAP"]
        if r.random() < 0.3:
            s["havings"] = []
            for _ in range(r.randint(1, 2)):
                c = r.choice(plain) if plain and r.random() < 0.7 else self.calc()
                if not self.numeric_calc(c):
                    c = {"op": "COUNT"}
                h = {"calculate_op": c["op"], "op": r.choice(HAVING_OPS),
                     "value": r.choice([0, 1, 2, 5, 10, 100, 0.5, -1])}
                if "column" in c:
                    h["column"] = c["column"]
                s["havings"].append(h)
        if r.random() < 0.4 and (plain or bds):
            s["orders"] = []
            for _ in range(r.randint(1, 2)):
                if bds and (not plain or r.random() < 0.3):
                    o = {"column": r.choice(bds)}
                else:
                    c = r.choice(plain)
                    o = {"op": c["op"]}
                    if "column" in c and c["op"].upper() != "COUNT":
                        o["column"] = c["column"]
                if r.random() < 0.8:
                    o["order"] = r.choice(["ascending", "descending", "asc", "desc"])
                s["orders"].append(o)
        if r.random() < 0.5:
            s["limit"] = r.choice([1, 2, 5, 10, 100, 100000])
        if r.random() < 0.3:
            g = r.choice([60, 300, 900, 3600, 7200, 86400, 37, 1234])
            a, b = Reference(None, self.ds, None).window_us(s, now_us)
            s["granularity"] = max(g, math.ceil((b - a) / 1e6 / 5000))  # at most ~5000 buckets
        return s


# -- the reference ------------------------------------------------------------------------------
class Reference:
    """Computes a spec's expected `results` and `series` in DuckDB.

    Percentiles are DuckDB's exact `quantile_cont` (API.md: "exact `percentile_cont` with linear
    interpolation"); SUM over an integer column is exact (HUGEINT), so the answer is that
    integer (Eventide answers it as a JSON integer while it fits, a float beyond int64; see
    compare.ExactInt)."""

    def __init__(self, con, ds, table):
        self.con, self.ds, self.table = con, ds, table

    def window_us(self, s, now_us):
        def us(v):
            return int(round(v * 1000)) if v > 1e11 else int(round(v * 1_000_000))

        rng = s.get("time_range", 7200) * 1_000_000
        if "start_time" in s and "end_time" in s:
            return us(s["start_time"]), us(s["end_time"])
        if "start_time" in s:
            a = us(s["start_time"])
            return a, (a + rng if "time_range" in s else now_us)
        if "end_time" in s:
            b = us(s["end_time"])
            return b - rng, b
        return now_us - rng, now_us

    @staticmethod
    def value_sql(c, v):
        """(SQL literal, compare the column as a double) for the JSON value v on column c,
        by API.md "How `value` is read depends on the column type"."""
        if c.kind == "str":
            text = ("true" if v else "false") if isinstance(v, bool) else (v if isinstance(v, str) else str(v))
            return _sq(text), False
        if c.kind == "bool":
            return ("TRUE" if v in (True, "true") else "FALSE"), False
        if c.kind == "ts":
            if isinstance(v, str):
                return f"make_timestamp({parse_rfc3339(v)})", False
            return f"make_timestamp({int(v * 1000) if v > 1e11 else int(v * 1_000_000)})", False
        if c.kind == "int":
            if isinstance(v, int):
                return str(v), False
            if isinstance(v, str):
                try:
                    return str(int(v.strip())), False  # an integral numeric string: an integer
                except ValueError:
                    return f"CAST('{float(v)!r}' AS DOUBLE)", True
            return f"CAST('{float(v)!r}' AS DOUBLE)", True
        return f"CAST('{float(v)!r}' AS DOUBLE)", False

    def filter_sql(self, f):
        name, op = f["column"], f["op"]
        if name == NEVER_SEEN:
            return "FALSE" if op == "exists" else "TRUE"
        c = self.ds.columns[name]
        q = qident(name)
        text = f"CAST({q} AS VARCHAR)"
        if op == "exists":
            return f"({q} IS NOT NULL)"
        if op == "does-not-exist":
            return f"({q} IS NULL)"
        v = f.get("value")
        if op in ("in", "not-in"):
            if not v:
                return "FALSE" if op == "in" else "TRUE"
            items = ", ".join(self.value_sql(c, x)[0] for x in v)
            return f"({q} IN ({items}))" if op == "in" else f"({q} IS NULL OR {q} NOT IN ({items}))"
        if op in ("starts-with", "does-not-start-with", "contains", "does-not-contain"):
            s = _sq(("true" if v else "false") if isinstance(v, bool) else str(v))
            if op == "starts-with":
                return f"starts_with({text}, {s})"
            if op == "does-not-start-with":
                return f"({q} IS NULL OR NOT starts_with({text}, {s}))"
            if op == "contains":
                return f"(strpos({text}, {s}) > 0)"
            return f"({q} IS NULL OR strpos({text}, {s}) = 0)"
        lit, as_double = self.value_sql(c, v)
        lhs = f"CAST({q} AS DOUBLE)" if as_double else q
        if op == "=":
            return f"({lhs} = {lit})"
        if op == "!=":
            return f"({lhs} IS DISTINCT FROM {lit})"
        return f"({lhs} {op} {lit})"

    def calc_sql(self, c):
        op = c["op"].upper()
        if op == "COUNT":
            return 'COALESCE(SUM("_samplerate"), 0)'
        q = qident(c["column"])
        if op in ("SUM", "AVG") and self.ds.columns[c["column"]].kind == "int":
            q = f"CAST({q} AS HUGEINT)"  # the exact sum: no int64 overflow in the reference
        if op == "SUM":
            return f'SUM({q} * "_samplerate")'
        if op == "AVG":
            return (f'CAST(SUM({q} * "_samplerate") AS DOUBLE) / '
                    f'CAST(SUM(CASE WHEN {q} IS NOT NULL THEN "_samplerate" END) AS DOUBLE)')
        if op in ("MIN", "MAX"):
            return f"{op}({q})"
        if op == "COUNT_DISTINCT":
            return f"COUNT(DISTINCT {q})"
        return f"quantile_cont(CAST({q} AS DOUBLE), {PCTS[op]!r})"

    @staticmethod
    def is_pct(c):
        return c["op"].upper() in PCTS

    def slack_sql(self, c):
        """The percentile's slack (PCT_SLACK_MACRO) over the group's sorted values."""
        q = f"CAST({qident(c['column'])} AS DOUBLE)"
        return (f"pct_slack(list_sort(list({q}) FILTER (WHERE {q} IS NOT NULL)), "
                f"CAST({PCTS[c['op'].upper()]!r} AS DOUBLE))")

    def having_sql(self, h):
        """(the condition a group may pass, the condition it surely passes). They differ only
        for a percentile, whose value is known up to its slack: a group whose percentile is
        that close to the having's value may be answered either way (`uncertain` below)."""
        c = {"op": h["calculate_op"], "column": h.get("column")}
        x, v, op = f"({self.calc_sql(c)})", f"CAST({float(h['value'])!r} AS DOUBLE)", h["op"]
        if not self.is_pct(c):
            cond = f"{x} {'<>' if op == '!=' else op} {v}"
            return cond, cond
        e = f"({self.slack_sql(c)})"
        loose, strict = {
            ">": (f"{x} + {e} > {v}", f"{x} - {e} > {v}"),
            ">=": (f"{x} + {e} >= {v}", f"{x} - {e} >= {v}"),
            "<": (f"{x} - {e} < {v}", f"{x} + {e} < {v}"),
            "<=": (f"{x} - {e} <= {v}", f"{x} + {e} <= {v}"),
            "=": (f"abs({x} - {v}) <= {e}", f"{e} = 0 AND {x} = {v}"),
            "!=": (f"NOT ({e} = 0 AND {x} = {v})", f"abs({x} - {v}) > {e}"),
        }[op]
        return f"COALESCE({loose}, FALSE)", f"COALESCE({strict}, FALSE)"

    def where(self, s, now_us):
        a, b = self.window_us(s, now_us)
        conds = [f'"timestamp" >= make_timestamp({a})', f'"timestamp" < make_timestamp({b})']
        fs = [self.filter_sql(f) for f in s.get("filters", [])]
        if fs:
            joiner = " OR " if s.get("filter_combination", "AND").upper() == "OR" else " AND "
            conds.append("(" + joiner.join(fs) + ")")
        return " AND ".join(conds)

    def rows(self, sql):
        return self.con.execute(sql).fetchall()

    def answer(self, s, now_us, with_limit=True, include=()):
        """(results, series or None, result order keys [(key, desc)], SQL, uncertain): the
        groups a percentile having may keep or drop (see having_sql) are left out, unless their
        breakdown values are in `include`; `uncertain` lists all of them."""
        calcs = s.get("calculations") or [{"op": "COUNT"}]
        bds = s.get("breakdowns", [])
        where = self.where(s, now_us)
        plain = [c for c in calcs if c["op"].upper() != "HEATMAP"]
        keys_sql = [qident(b) for b in bds]
        sel = keys_sql + [self.calc_sql(c) for c in plain]
        if not plain:
            sel = sel + ["count(*)"]  # a placeholder: HEATMAP only
        pcts = [j for j, c in enumerate(plain) if self.is_pct(c)]
        extra = [self.slack_sql(plain[j]) for j in pcts]
        group = f" GROUP BY {', '.join(keys_sql)}" if bds else ""
        having = ""
        sure = None
        if s.get("havings"):
            conds = [self.having_sql(h) for h in s["havings"]]
            having = " HAVING " + " AND ".join(f"({loose})" for loose, _ in conds)
            if any(loose != strict for loose, strict in conds):
                sure = len(sel) + len(extra)
                extra.append(" AND ".join(f"({strict})" for _, strict in conds))
        order, okeys = [], []
        for o in s.get("orders", []):
            desc = o.get("order", "ascending").lower() in ("descending", "desc")
            if "op" in o:
                i = [calc_key(c) for c in plain].index(calc_key({"op": o["op"], "column": o.get("column")}))
                order.append(f"{len(bds) + i + 1} {'DESC' if desc else 'ASC'} NULLS LAST")
                okeys.append((calc_key(plain[i]), desc))
            else:
                order.append(f"{bds.index(o['column']) + 1} {'DESC' if desc else 'ASC'} NULLS LAST")
                okeys.append((o["column"], desc))
        if not s.get("orders") and plain:
            order.append(f"{len(bds) + 1} DESC NULLS LAST")
            okeys.append((calc_key(plain[0]), True))
        for i, b in enumerate(bds):
            order.append(f"{i + 1} ASC NULLS LAST")
            okeys.append((b, False))
        n = s.get("limit", 1000)
        limit = f" LIMIT {n}" if with_limit and sure is None else ""
        sql = (f"SELECT {', '.join(sel + extra)} FROM {qident(self.table)} WHERE {where}{group}{having}"
               f" ORDER BY {', '.join(order) if order else '1'}{limit}")
        results, uncertain = [], []
        for row in self.rows(sql):
            key = group_key(norm_duck(v) for v in row[:len(bds)])
            if sure is not None and not row[sure]:
                uncertain.append(key)
                if key not in include:
                    continue
            d = {b: row[i] for i, b in enumerate(bds)}
            for j, c in enumerate(plain):
                d[calc_key(c)] = row[len(bds) + j]
            for k, j in enumerate(pcts):
                v = row[len(bds) + j]
                if v is not None:
                    d[calc_key(plain[j])] = Approx(v, row[len(sel) + k])
            results.append(d)
        if with_limit:
            results = results[:n]
        heat = [c for c in calcs if c["op"].upper() == "HEATMAP"]
        for c in heat:
            self.heatmap(c, bds, where, results, None)
        series = None
        if s.get("granularity"):
            series = self.series(s, calcs, plain, heat, bds, where, results)
        return results, series, okeys, sql, uncertain

    def bounds(self, column, where):
        q = qident(column)
        lo, hi = self.rows(f"SELECT MIN(CAST({q} AS DOUBLE)), MAX(CAST({q} AS DOUBLE)) "
                           f"FROM {qident(self.table)} WHERE {where}")[0]
        return lo, hi

    def heatmap(self, c, bds, where, rows, bucket_us):
        """Adds HEATMAP(col) to each row (keyed by breakdowns, and time when bucket_us)."""
        key = calc_key(c)
        lo, hi = self.bounds(c["column"], where)
        if lo is None:
            for d in rows:
                d[key] = None
            return
        width = (hi - lo) / 40 if hi != lo else 1.0
        q = qident(c["column"])
        keys = [qident(b) for b in bds]
        if bucket_us:
            keys.insert(0, f'(epoch_us("timestamp") // {bucket_us}) * {bucket_us}')
        idx = f"LEAST(CAST(floor((CAST({q} AS DOUBLE) - {lo!r}) / {width!r}) AS BIGINT), 39)"
        sql = (f"SELECT {', '.join(keys + [idx])}, SUM(\"_samplerate\") FROM {qident(self.table)} "
               f"WHERE {where} AND {q} IS NOT NULL GROUP BY ALL")
        found = {}
        for row in self.rows(sql):
            found.setdefault(tuple(row[:-2]), []).append((row[-2], row[-1]))
        for d in rows:
            k = tuple(([d["__bucket"]] if bucket_us else []) + [d[b] for b in bds])
            buckets = []
            for i, n in sorted(found.get(k, [])):
                lower = lo + i * width
                buckets.append({"lower": lower, "upper": lower + width, "count": n})
            d[key] = {"min": lo, "max": hi, "bucket_width": width, "buckets": buckets}

    def series(self, s, calcs, plain, heat, bds, where, results):
        g = s["granularity"] * 1_000_000
        keys_sql = [qident(b) for b in bds]
        bucket = f'(epoch_us("timestamp") // {g}) * {g}'
        sel = [bucket] + keys_sql + [self.calc_sql(c) for c in plain]
        pcts = [j for j, c in enumerate(plain) if self.is_pct(c)]
        extra = [self.slack_sql(plain[j]) for j in pcts]
        sql = (f"SELECT {', '.join(sel + extra)} FROM {qident(self.table)} WHERE {where} "
               f"GROUP BY {', '.join(['1'] + [str(i + 2) for i in range(len(bds))])}")
        groups = {tuple(d[b] for b in bds) for d in results}
        out = []
        for row in self.rows(sql):
            k = tuple(row[1:1 + len(bds)])
            if k not in groups:
                continue
            d = {"__bucket": row[0], "time": row[0]}
            for i, b in enumerate(bds):
                d[b] = row[1 + i]
            for j, c in enumerate(plain):
                d[calc_key(c)] = row[1 + len(bds) + j]
            for m, j in enumerate(pcts):
                v = row[1 + len(bds) + j]
                if v is not None:
                    d[calc_key(plain[j])] = Approx(v, row[len(sel) + m])
            out.append(d)
        for c in heat:
            self.heatmap(c, bds, where, out, g)
        for d in out:
            del d["__bucket"]
        return out


def wire_spec(s):
    """The spec as sent: without the reference's private annotations."""
    out = dict(s)
    if "filters" in out:
        out["filters"] = [{k: v for k, v in f.items() if not k.startswith("_")} for f in out["filters"]]
    return out
