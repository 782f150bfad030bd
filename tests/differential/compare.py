"""Normalizing both engines' answers and comparing them: multisets of rows, orders, and
LIMIT windows whose boundary rows tie on the sort keys."""

import datetime as dt
import decimal
import functools
import math
from collections import Counter

from events import EPOCH

REL, ABS = 1e-6, 1e-9
US = dt.timedelta(microseconds=1)
I64_MAX = 2**63 - 1


class ExactInt(int):
    """An integer that must be answered as exactly that integer: a float matches it only when
    the integer is beyond int64 (where Eventide's spec SUM answers a float). Both sides of a
    spec comparison mark their integers so (`exact_ints`); plain ints keep the float
    tolerance (SQL answers)."""

    def __repr__(self):
        return int.__repr__(self)


class Approx(float):
    """A reference float that is right only up to `slack` (absolute) beyond the usual tolerance:
    an interpolated percentile. `lo + d × (hi − lo)` (Eventide's `exact_percentile`) and
    `lo × (1 − d) + hi × d` (DuckDB's `quantile_cont`) are both double arithmetic, and each can
    be off the exact interpolation by about an ulp of its neighbours `lo`, `hi`: with
    neighbours of opposite sign near ±2^53 the answer is small and its error is not (P25 of
    [-9007199254739992, 9007199254739995] at weight 0.5: exactly 1.5; Eventide 2.0)."""

    def __new__(cls, value, slack):
        obj = float.__new__(cls, value)
        obj.slack = slack
        return obj

    def __repr__(self):
        return float.__repr__(self)


def group_key(values):
    """A hashable key of breakdown values (booleans kept apart from 0 and 1)."""
    return tuple(("bool", v) if isinstance(v, bool) else v for v in values)


def exact_ints(v):
    """v with every integer (not bool) inside it, also in dicts and lists, made an ExactInt."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return ExactInt(v)
    if isinstance(v, dict):
        return {k: exact_ints(x) for k, x in v.items()}
    if isinstance(v, list):
        return [exact_ints(x) for x in v]
    return v


def parse_rfc3339(s):
    return (dt.datetime.fromisoformat(s.replace("Z", "+00:00")) - EPOCH) // US


def parse_time(s):
    h, m, rest = s.split(":")
    sec, _, frac = rest.partition(".")
    return ((int(h) * 60 + int(m)) * 60 + int(sec)) * 1_000_000 + int((frac + "000000")[:6])


def norm_eventide(v, typ):
    if v is None:
        return None
    if typ == "timestamp":
        return parse_rfc3339(v)
    if typ.startswith("time64") or typ.startswith("time32"):
        return parse_time(v)
    return v


def norm_duck(v):
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        return (v - EPOCH) // US
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, dt.time):
        return ((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, dict):
        return {k: norm_duck(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [norm_duck(x) for x in v]
    return v


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def veq(a, b):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _num(a) and _num(b):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        exact = a if isinstance(a, ExactInt) else b if isinstance(b, ExactInt) else None
        if exact is not None and abs(exact) <= I64_MAX:
            return False  # an integer within int64 must be answered as that integer
        slack = max(getattr(a, "slack", 0.0), getattr(b, "slack", 0.0))
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        d = abs(a - b)
        return d <= ABS or d <= slack or d <= REL * max(abs(a), abs(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(veq(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(veq(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _canon(v):
    """A sort key that treats near-equal numbers alike (most of the time)."""
    if v is None:
        return (0,)
    if isinstance(v, bool):
        return (1, v)
    if _num(v):
        return (2, float(f"{float(v):.8g}"))
    if isinstance(v, str):
        return (3, v)
    if isinstance(v, dict):
        return (4, tuple((k, _canon(x)) for k, x in sorted(v.items())))
    if isinstance(v, (list, tuple)):
        return (5, tuple(_canon(x) for x in v))
    return (6, repr(v))


def _exact(v):
    """The parts of a value that must match exactly (numbers are compared with a tolerance)."""
    if _num(v):
        return "#"
    if isinstance(v, dict):
        return tuple((k, _exact(x)) for k, x in sorted(v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_exact(x) for x in v)
    return (type(v).__name__, v)


def row_eq(a, b):
    return len(a) == len(b) and all(veq(x, y) for x, y in zip(a, b))


def _hashable(v):
    if isinstance(v, bool):
        return ("bool", v)  # True == 1 in Python: keep booleans apart from numbers
    if isinstance(v, ExactInt):
        return ("int", int(v))  # 5 == 5.0 in Python: an exact integer is not a float
    if isinstance(v, (dict, list)):
        return repr(v)
    return v


def match(rows_a, rows_b):
    """Pairs rows of a with equal rows of b: (unmatched of a, unmatched of b)."""
    # Fast path: rows equal exactly (ints and floats of equal value compare equal).
    ka = Counter(tuple(_hashable(v) for v in r) for r in rows_a)
    kb = Counter(tuple(_hashable(v) for v in r) for r in rows_b)
    if ka == kb:
        return [], []
    common = ka & kb
    if common:
        left_a, left_b = ka - common, kb - common
        keep = lambda rows, left: [r for r in rows if _take(left, tuple(_hashable(v) for v in r))]
        rows_a, rows_b = keep(rows_a, left_a), keep(rows_b, left_b)
    sa = sorted(rows_a, key=lambda r: tuple(_canon(v) for v in r))
    sb = sorted(rows_b, key=lambda r: tuple(_canon(v) for v in r))
    if len(sa) == len(sb) and all(row_eq(x, y) for x, y in zip(sa, sb)):
        return [], []
    buckets = {}
    for r in rows_b:
        buckets.setdefault(tuple(_exact(v) for v in r), []).append(r)
    left = []
    for r in rows_a:
        cands = buckets.get(tuple(_exact(v) for v in r), [])
        for i, c in enumerate(cands):
            if row_eq(r, c):
                cands.pop(i)
                break
        else:
            left.append(r)
    return left, [r for rs in buckets.values() for r in rs]


def _take(counter, key):
    if counter.get(key, 0) > 0:
        counter[key] -= 1
        return True
    return False


def multiset_diff(got, want):
    """None when equal as multisets, else a description."""
    if len(got) != len(want) and (len(got) > 20000 or len(want) > 20000):
        return f"{len(got)} rows, expected {len(want)}"
    extra, missing = match(got, want)
    if not extra and not missing:
        return None
    return (f"{len(got)} rows, expected {len(want)}; unexpected {len(extra)}: {_short(extra)};"
            f" missing {len(missing)}: {_short(missing)}")


def _short(rows, n=5):
    out = [list(r) for r in rows[:n]]
    return repr(out)[:1500] + (" …" if len(rows) > n else "")


def cmp_vals(a, b, nulls_first):
    """-1, 0 or 1; None for numbers that are equal only within the tolerance (their order is
    the engines' rounding, so nothing after them can be judged either)."""
    if a is None and b is None:
        return 0
    if a is None:
        return -1 if nulls_first else 1
    if b is None:
        return 1 if nulls_first else -1
    if _num(a) and _num(b) and a != b and veq(a, b):
        return None
    # Equal numbers beyond 2^53 of which one is a float may stand for different exact values
    # (a spec SUM past int64 is answered as a float, rounded from the exact DECIMAL the order
    # used; -2^63 itself is still an integer, and the float just below it rounds to -2^63):
    # no tie to judge (seed 20261204, hot #2470 and #9517).
    if (isinstance(a, float) or isinstance(b, float)) and a == b and abs(a) >= 2.0**53:
        return None
    return (a > b) - (a < b)


def row_cmp(a, b, keys):
    for i, desc, nulls_first in keys:
        x, y = a[i], b[i]
        c = cmp_vals(x, y, nulls_first)
        if c is None:
            return None
        if c and desc and x is not None and y is not None:
            c = -c
        if c:
            return c
    return 0


def order_diff(rows, keys):
    for i in range(1, len(rows)):
        c = row_cmp(rows[i - 1], rows[i], keys)
        if c is not None and c > 0:
            return f"rows {i - 1} and {i} are out of order: {_short([rows[i - 1], rows[i]])}"
    return None


def snapped(full, keys):
    """The reference rows in the order they would have if sort-key floats equal within the
    tolerance were equal: such values are snapped to one per cluster and the rows sorted again
    (stable) on the snapped keys. An engine's exact 200.0 and the reference's
    199.99999999999997 for one percentile then tie, and the later keys decide, as they did for
    the engine (seed 20261204, merged #9104). Returns (rows, snapped rows), in that order."""
    canon = [list(r) for r in full]
    for i, _, _ in keys:
        vals = sorted({r[i] for r in canon if isinstance(r[i], float) and math.isfinite(r[i])})
        rep, start = {}, None
        for v in vals:
            if start is None or not veq(start, v):
                start = v
            rep[v] = start
        for r in canon:
            if isinstance(r[i], float) and r[i] in rep:
                r[i] = rep[r[i]]

    def order(a, b):
        return row_cmp(a[1], b[1], keys) or 0

    pairs = sorted(zip(full, canon), key=functools.cmp_to_key(order))
    return [p[0] for p in pairs], [p[1] for p in pairs]


def window_diff(got, full, keys, offset, limit):
    """got must be rows [offset, offset+limit) of the sorted `full`, where rows whose sort keys
    tie (within the float tolerance) may come in any order and either side of the window's
    ends."""
    offset = offset or 0
    n = max(0, min(limit, len(full) - offset))
    if len(got) != n:
        return f"{len(got)} rows, expected {n} (of {len(full)} before LIMIT/OFFSET)"
    d = order_diff(got, keys)
    if d:
        return d
    if n == 0:
        return None
    full, canon = snapped(full, keys)
    run, ids = 0, []
    for i in range(len(full)):
        if i and row_cmp(canon[i - 1], canon[i], keys) not in (0, None):
            run += 1
        ids.append(run)
    first, last = ids[offset], ids[offset + n - 1]
    cands = [r for r, k in zip(full, ids) if first <= k <= last]
    required = [r for r, k in zip(full, ids) if first < k < last]
    extra, _ = match(got, cands)
    if extra:
        return f"unexpected rows {_short(extra)} (expected rows {offset}..{offset + n} of the order)"
    missing, _ = match(required, got)
    if missing:
        return f"missing rows {_short(missing)}"
    return None
