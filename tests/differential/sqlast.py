"""A small SQL expression AST rendered twice: in DataFusion's dialect and in DuckDB's.

A node is a type plus one template per dialect. Dialect differences live here and only here:
integer division (`/` vs `//`), float literals (DuckDB reads `1.5` as DECIMAL, so it gets an
explicit DOUBLE), timestamp literals, percentiles (`percentile_cont(q) WITHIN GROUP (ORDER BY x)`
vs `quantile_cont(x, q)`), time buckets (`date_bin` vs `time_bucket` with the epoch as origin),
string length, epoch micros, the default null order of `DESC` (DataFusion: nulls first,
DuckDB: nulls last; DuckDB always gets it spelled out), and DataFusion's percentile_cont
arithmetic (below).
"""

import datetime as dt

from events import EPOCH, I64_MIN

DF, DUCK = "df", "duck"

# DataFusion's percentile_cont (datafusion-functions-aggregate 55, calculate_percentile): the
# interpolation weight is truncated to 1e-6 (INTERPOLATION_PRECISION), q = 0 and 1 are min and
# max. DuckDB's quantile_cont is exact, so the reference spells DataFusion's arithmetic out.
# API.md promises an exact percentile; FINDINGS.md has the difference and regressions.py a case.
PCT_MACRO = """CREATE OR REPLACE MACRO df_pct(l, q) AS CASE
  WHEN len(l) = 0 THEN NULL WHEN len(l) = 1 OR q = 0 THEN l[1] WHEN q = 1 THEN l[len(l)]
  ELSE l[CAST(floor(q * (len(l) - 1)) AS BIGINT) + 1]
     + (l[CAST(ceil(q * (len(l) - 1)) AS BIGINT) + 1] - l[CAST(floor(q * (len(l) - 1)) AS BIGINT) + 1])
     * (floor((q * (len(l) - 1) - floor(q * (len(l) - 1))) * 1000000) / 1000000) END"""


def pct_sql(x, q, flt=None):
    cond = f"({x}) IS NOT NULL" + (f" AND ({flt})" if flt else "")
    return f"df_pct(list_sort(list({x}) FILTER (WHERE {cond})), CAST('{float(q)!r}' AS DOUBLE))"


class Ctx:
    def __init__(self, dialect, table, static_only=False):
        self.dialect, self.table, self.static_only = dialect, table, static_only


class X:
    """typ: int float bool str ts date time. df/duck: a format string over the rendered args,
    or a callable (ctx, *args) -> str. agg: the node is (or holds) an aggregate."""

    def __init__(self, typ, df, duck=None, args=(), agg=False, tags=()):
        self.typ, self.df, self.duck, self.args = typ, df, duck, list(args)
        self.agg = agg or any(getattr(a, "agg", False) for a in self.args)
        self.tags = set(tags)
        # Its value may be near the int64 range (it reads the "big" column): a raw SQL sum() of
        # it could wrap around (DataFusion 55, regressions.KNOWN_UPSTREAM sum-int64-overflow).
        self.big = any(getattr(a, "big", False) for a in self.args)

    def r(self, ctx):
        tmpl = self.df if ctx.dialect == DF or self.duck is None else self.duck
        if callable(tmpl):
            return tmpl(ctx, *self.args)
        if not self.args:
            return tmpl  # a constant (literals may hold braces)
        return tmpl.format(*[a.r(ctx) for a in self.args])


def qident(name):
    return '"' + name.replace('"', '""') + '"'


def col(c):
    """A column reference; carries the Column for value lookups."""
    node = X(c.kind, qident(c.name))
    node.column = c
    node.big = "big" in c.tags
    return node


def raw(typ, text):
    return X(typ, text)


def _sq(s):
    return "'" + s.replace("'", "''") + "'"


def ts_text(us, sep="T", z="Z"):
    t = EPOCH + dt.timedelta(microseconds=us)
    return t.strftime(f"%Y-%m-%d{sep}%H:%M:%S.%f") + z


def lit(v, typ, form=0):
    """A literal of type typ. form picks one of DataFusion's spellings of a timestamp."""
    if v is None:
        return X(typ, "NULL")
    if typ == "bool":
        return X("bool", "TRUE" if v else "FALSE")
    if typ == "int":
        if v == I64_MIN:
            return X("int", "(-9223372036854775807 - 1)")
        return X("int", f"({v})" if v < 0 else str(v))
    if typ == "float":
        text = repr(float(v))
        if "e" not in text and "." not in text:
            text += ".0"
        df = f"({text})" if text.startswith("-") else text
        return X("float", df, f"CAST('{text}' AS DOUBLE)")
    if typ == "str":
        return X("str", _sq(v))
    if typ == "ts":
        duck = f"TIMESTAMP '{ts_text(v, ' ', '')}'"
        forms = [_sq(ts_text(v)), f"TIMESTAMP '{ts_text(v, ' ', '')}'", f"to_timestamp_micros({v})",
                 f"CAST({_sq(ts_text(v))} AS TIMESTAMP)"]
        return X("ts", forms[form % len(forms)], duck)
    if typ == "date":
        return X("date", f"DATE '{v}'")
    raise ValueError(typ)


# -- scalar functions -------------------------------------------------------------------------
def binop(typ, a, op, b):
    return X(typ, "({} " + op + " {})", None, [a, b])


def int_div(a, b):
    return X("int", "({} / {})", "({} // {})", [a, b])


def char_length(a):
    return X("int", "character_length({})", "length({})", [a])


def epoch_us(a):
    return X("int", "CAST({} AS BIGINT)", "epoch_us({})", [a])


def date_trunc(unit, a):
    return X("ts", f"date_trunc('{unit}', {{}})", None, [a])


def date_bin(minutes, a, origin_minutes=0):
    o = f"1970-01-01 {origin_minutes // 60:02d}:{origin_minutes % 60:02d}:00"
    df_origin = [f", TIMESTAMP '{o}'", f", '{o.replace(' ', 'T')}Z'"][origin_minutes % 2]
    df_origin = df_origin if origin_minutes else ""
    return X("ts", f"date_bin(INTERVAL '{minutes} minutes', {{}}{df_origin})",
             f"time_bucket(INTERVAL '{minutes} minutes', {{}}, TIMESTAMP '{o}')", [a])


def func(typ, name, *args):
    return X(typ, name + "(" + ", ".join(["{}"] * len(args)) + ")", None, args)


def case(pred, a, b):
    node = X(a.typ, "(CASE WHEN {} THEN {} ELSE {} END)", None, [pred, a, b])
    node.big = a.big or b.big  # the value is a or b, whatever the condition reads
    return node


def cast(a, sqltype, typ):
    return X(typ, "CAST({} AS " + sqltype + ")", None, [a])


# -- predicates -------------------------------------------------------------------------------
def cmp(a, op, b):
    return X("bool", "({} " + op + " {})", None, [a, b])


def distinct_from(a, b, negated=False):
    # Both operands parenthesized as well as the whole: DataFusion 55's parser gives the right
    # operand of IS [NOT] DISTINCT FROM the lowest precedence (`a IS DISTINCT FROM b AND c` is
    # `a IS DISTINCT FROM (b AND c)`, regressions.KNOWN_UPSTREAM is-distinct-from-precedence),
    # so the random SQL never leaves it anything to swallow.
    op = "IS NOT DISTINCT FROM" if negated else "IS DISTINCT FROM"
    return X("bool", "(({}) " + op + " ({}))", None, [a, b])


def between(a, lo, hi, negated=False):
    kw = "NOT BETWEEN" if negated else "BETWEEN"
    return X("bool", "({} " + kw + " {} AND {})", None, [a, lo, hi])


def in_list(a, items, negated=False):
    kw = "NOT IN" if negated else "IN"
    return X("bool", "({} " + kw + " (" + ", ".join(["{}"] * len(items)) + "))", None, [a] + items)


def in_subquery(a, sub, negated=False):
    kw = "NOT IN" if negated else "IN"
    return X("bool", lambda ctx, a: f"({a.r(ctx)} {kw} ({sub.render(ctx)}))", None, [a])


def like(a, pattern, negated=False, ilike=False):
    kw = ("NOT " if negated else "") + ("ILIKE" if ilike else "LIKE")
    return X("bool", "({} " + kw + " {})", None, [a, lit(pattern, "str")])


def is_null(a, negated=False):
    return X("bool", "({} IS NOT NULL)" if negated else "({} IS NULL)", None, [a])


def is_bool(a, what):  # what: TRUE, NOT TRUE, FALSE, NOT FALSE
    return X("bool", "({} IS " + what + ")", None, [a])


def and_(*ps):
    return X("bool", "(" + " AND ".join(["{}"] * len(ps)) + ")", None, ps)


def or_(*ps):
    return X("bool", "(" + " OR ".join(["{}"] * len(ps)) + ")", None, ps)


def not_(p):
    return X("bool", "(NOT {})", None, [p])


# -- aggregates -------------------------------------------------------------------------------
def _with_filter(text, flt, ctx):
    return text if flt is None else f"{text} FILTER (WHERE {flt.r(ctx)})"


def agg(typ, name, arg=None, distinct=False, flt=None):
    """count(*) when arg is None."""

    def render(ctx, *args):
        inner = "*" if arg is None else ("DISTINCT " if distinct else "") + arg.r(ctx)
        return _with_filter(f"{name}({inner})", flt, ctx)

    node = X(typ, render, None, [], agg=True)
    node.parts = (name, arg, distinct, flt)
    node.big = name in ("sum", "min", "max") and getattr(arg, "big", False)
    return node


def percentile(arg, q, form=0, desc=False, flt=None):
    """Exact percentile_cont. form 0: WITHIN GROUP, 1: function-call form, 2: median."""
    desc = desc and form == 0

    def df(ctx):
        x = arg.r(ctx)
        if form == 2:
            text = f"median({x})"
        elif form == 1:
            text = f"percentile_cont({x}, {q!r})"
        else:
            text = f"percentile_cont({q!r}) WITHIN GROUP (ORDER BY {x}{' DESC' if desc else ''})"
        return _with_filter(text, flt, ctx)

    def duck(ctx):
        x = f"CAST({arg.r(ctx)} AS DOUBLE)"
        if form == 2:
            return _with_filter(f"median({x})", flt, ctx)
        fl = None if flt is None else flt.r(ctx)
        return pct_sql(x, 1 - q if desc else q, fl)

    node = X("float", df, duck, [], agg=True)
    # The forms of one percentile are one aggregate to an optimizer (for SqlGen.satisfiable).
    node.identity = lambda ctx: _with_filter(
        f"percentile_cont({arg.r(ctx)}, {(0.5 if form == 2 else 1 - q if desc else q)!r})", flt, ctx)
    return node


def window(typ, fn, arg, partition, order_seq, frame=None):
    """fn(arg) OVER (PARTITION BY … ORDER BY …); order_seq is the unique key expression."""

    def render(ctx):
        inner = "" if arg is None else arg.r(ctx)
        parts = []
        if partition:
            parts.append("PARTITION BY " + ", ".join(p.r(ctx) for p in partition))
        if order_seq is not None:
            parts.append("ORDER BY " + order_seq.r(ctx))
        if frame:
            parts.append(frame)
        return f"{fn}({inner}) OVER ({' '.join(parts)})"

    return X(typ, render, None, [])


# -- queries ----------------------------------------------------------------------------------
class Select:
    """SELECT … FROM table-or-subquery … . order: [(position 1-based, desc, nulls_first|None)];
    nulls None means the dialect's default (DataFusion: nulls first only for DESC)."""

    def __init__(self, items, where=None, group=None, group_style="expr", having=None, order=(),
                 limit=None, offset=None, distinct=False, source=None):
        self.items, self.where, self.group, self.group_style = items, where, group, group_style
        self.having, self.order, self.limit, self.offset = having, list(order), limit, offset
        self.distinct, self.source = distinct, source

    def render(self, ctx, with_limit=True):
        sel = ", ".join(f"{e.r(ctx)} AS c{i}" for i, e in enumerate(self.items))
        out = ["SELECT " + ("DISTINCT " if self.distinct else "") + sel]
        where = self.where
        if self.source is None:
            out.append("FROM " + qident(ctx.table))
            if ctx.static_only:
                static = cmp(raw("str", '"phase"'), "=", lit("static", "str"))
                where = static if where is None else and_(static, where)
        else:
            out.append(f"FROM ({self.source.render(ctx)}) AS s")
        if where is not None:
            out.append("WHERE " + where.r(ctx))
        if self.group:
            if self.group_style == "pos":
                keys = [str(self.items.index(g) + 1) for g in self.group]
            elif self.group_style == "alias":
                keys = [f"c{self.items.index(g)}" for g in self.group]
            else:
                keys = [g.r(ctx) for g in self.group]
            if self.group_style in ("ROLLUP", "CUBE"):
                out.append(f"GROUP BY {self.group_style} (" + ", ".join(keys) + ")")
            else:
                out.append("GROUP BY " + ", ".join(keys))
        if self.having is not None:
            out.append("HAVING " + self.having.r(ctx))
        if self.order:
            terms = []
            for pos, desc, nulls_first in self.order:
                t = f"c{pos - 1}" if pos % 2 else str(pos)  # aliases and positions both
                t += " DESC" if desc else " ASC"
                if nulls_first is None and ctx.dialect == DUCK:
                    nulls_first = desc  # DataFusion's default, spelled out for DuckDB
                if nulls_first is not None:
                    t += " NULLS FIRST" if nulls_first else " NULLS LAST"
                terms.append(t)
            out.append("ORDER BY " + ", ".join(terms))
        if with_limit and self.limit is not None:
            out.append(f"LIMIT {self.limit}")
            if self.offset:
                out.append(f"OFFSET {self.offset}")
        return " ".join(out)

    def order_keys(self):
        """[(column index, desc, nulls_first)] with the default null order made explicit."""
        return [(p - 1, d, d if n is None else n) for p, d, n in self.order]


class Join:
    """SELECT … FROM (left) AS a JOIN (right) AS b ON a.c0 = b.c0 GROUP BY …: both sides are
    Selects whose first item is the join key; items are (text, typ) over a.cN / b.cN."""

    def __init__(self, left, right, items, group, kind="JOIN"):
        self.left, self.right, self.items, self.group, self.kind = left, right, items, group, kind
        self.order, self.limit, self.offset = [], None, None

    def render(self, ctx, with_limit=True):
        sel = ", ".join(f"{e.r(ctx)} AS c{i}" for i, e in enumerate(self.items))
        out = (f"SELECT {sel} FROM ({self.left.render(ctx)}) AS a {self.kind} ({self.right.render(ctx)}) AS b"
               f" ON a.c0 = b.c0")
        if self.group:
            out += " GROUP BY " + ", ".join(g.r(ctx) for g in self.group)
        return out

    def order_keys(self):
        return []


class Union:
    """SELECT … UNION ALL SELECT …: compared as a multiset."""

    def __init__(self, parts):
        self.parts, self.order, self.limit, self.offset = parts, [], None, None

    def render(self, ctx, with_limit=True):
        return " UNION ALL ".join(f"({p.render(ctx)})" for p in self.parts)

    def order_keys(self):
        return []
