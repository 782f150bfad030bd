"""Fixed cases the checker runs in every state, before the random ones.

SQL cases are (name, DataFusion SQL, DuckDB SQL) templates over:
  {t}      the main dataset (quoted table name)
  {one}    a small dataset whose events were flushed as one segment file (hot in the hot state)
  {fixed}  FIXED below: six hand-made events
  {static} a condition that excludes the live events of the ingesting state ("TRUE" elsewhere)
Spec cases are (name, dataset key "t", "one" or "fixed", spec); a spec's time window is
filled in from the data ("start_time"/"end_time" covering every static event) unless it has one.
KNOWN_UPSTREAM are raw-SQL cases where DataFusion 55 itself answers differently from the
reference, and Eventide passes the SQL through (its own spec path avoids each): (name, DataFusion
SQL, DuckDB SQL, the answer DataFusion 55 gives today, explanation). The checker wants Eventide
to give exactly that answer; one that changes (an upgrade, a fix) is a difference, so the case
is reviewed. The random generator does not produce these shapes (README.md).
See FINDINGS.md for the bugs behind the cases marked there.
"""

SQL = [
    # ROLLUP/CUBE over a key the input holds constant (a WHERE equality, a folded CASE):
    # DataFusion 55 left it out of the sort, so the subtotal rows, where it is NULL, came in
    # any order and LIMIT cut the wrong ones (query/src/grouping_sets_order.rs; seed 20261204
    # mixed #667, seed 20261202 flushed #3520).
    ("rollup-where-constant-key-order",
     'SELECT "k8s.namespace", ("status" / 100), count(*) FROM {t} WHERE "k8s.namespace" = \'default\' '
     'AND {static} GROUP BY ROLLUP ("k8s.namespace", ("status" / 100)) '
     'ORDER BY 1 DESC NULLS FIRST, 2 ASC NULLS FIRST LIMIT 1',
     'SELECT "k8s.namespace", ("status" // 100), count(*) FROM {t} WHERE "k8s.namespace" = \'default\' '
     'AND {static} GROUP BY ROLLUP ("k8s.namespace", ("status" // 100)) '
     'ORDER BY 1 DESC NULLS FIRST, 2 ASC NULLS FIRST LIMIT 1'),
    ("cube-folded-constant-key-order",
     'SELECT CASE WHEN "timestamp" IS NULL THEN \'yes\' ELSE \'no\' END, "tier", count(*) FROM {t} '
     'WHERE {static} GROUP BY CUBE (CASE WHEN "timestamp" IS NULL THEN \'yes\' ELSE \'no\' END, "tier") '
     'ORDER BY 1 ASC NULLS FIRST, 2 ASC NULLS FIRST LIMIT 3',
     'SELECT CASE WHEN "timestamp" IS NULL THEN \'yes\' ELSE \'no\' END, "tier", count(*) FROM {t} '
     'WHERE {static} GROUP BY CUBE (CASE WHEN "timestamp" IS NULL THEN \'yes\' ELSE \'no\' END, "tier") '
     'ORDER BY 1 ASC NULLS FIRST, 2 ASC NULLS FIRST LIMIT 3'),
    # #17: COUNT(*) beside COUNT(DISTINCT …) failed once a flushed file left one partition empty
    # (query/src/grouping.rs, fixed in 43d5713). The shape of the report, on the one-file dataset.
    ("tier-count-sum-distinct-one-file",
     'SELECT "tier", count(*), sum("bytes"), count(DISTINCT "buyer") FROM {one} WHERE {static} '
     'GROUP BY "tier"',
     'SELECT "tier", count(*), sum("bytes"), count(DISTINCT "buyer") FROM {one} WHERE {static} '
     'GROUP BY "tier"'),
    ("tier-count-sum-distinct",
     'SELECT "tier", count(*), sum("bytes"), count(DISTINCT "buyer") FROM {t} WHERE {static} '
     'GROUP BY "tier"',
     'SELECT "tier", count(*), sum("bytes"), count(DISTINCT "buyer") FROM {t} WHERE {static} '
     'GROUP BY "tier"'),
    ("tier-count-distinct-no-where-one-file",
     'SELECT "tier", count(*), count(DISTINCT "buyer") FROM {one} GROUP BY "tier"',
     'SELECT "tier", count(*), count(DISTINCT "buyer") FROM {one} GROUP BY "tier"'),
    ("count-star", 'SELECT count(*) FROM {t} WHERE {static}', 'SELECT count(*) FROM {t} WHERE {static}'),
    ("count-star-one-file", 'SELECT count(*), count("tier") FROM {one}',
     'SELECT count(*), count("tier") FROM {one}'),
    ("four-keys-distinct",
     'SELECT "service.name", "http.method", "cache_hit", "status", count(*), count(DISTINCT "user_id"), '
     'min("duration_ms") FROM {t} WHERE {static} GROUP BY 1, 2, 3, 4',
     'SELECT "service.name", "http.method", "cache_hit", "status", count(*), count(DISTINCT "user_id"), '
     'min("duration_ms") FROM {t} WHERE {static} GROUP BY 1, 2, 3, 4'),
    ("percentile-by-key",
     'SELECT "endpoint", percentile_cont(0.99) WITHIN GROUP (ORDER BY "duration_ms"), median("bytes") '
     'FROM {t} WHERE {static} GROUP BY 1',
     # DataFusion's percentile_cont arithmetic (FINDINGS.md 3) spelled out, as in sqlast.py.
     'SELECT "endpoint", df_pct(list_sort(list(CAST("duration_ms" AS DOUBLE)) FILTER (WHERE '
     '"duration_ms" IS NOT NULL)), CAST(\'0.99\' AS DOUBLE)), median("bytes") FROM {t} WHERE {static} '
     'GROUP BY 1'),
    ("high-cardinality-key",
     'SELECT "user_id", count(*), sum("_samplerate") FROM {t} WHERE {static} GROUP BY 1',
     'SELECT "user_id", count(*), sum("_samplerate") FROM {t} WHERE {static} GROUP BY 1'),
    # A column projected twice under two names, ordered by the second, with a LIMIT, beside a
    # CASE over two columns: once segments and a hot tail are unioned (mixed, ingesting),
    # DataFusion 55's plan sanity check refuses the plan it built itself.
    ("duplicate-column-order-limit-union",
     'SELECT CASE WHEN "status" < "temp" THEN "endpoint" END AS a, "seq" AS b, "seq" AS c FROM {t} '
     'WHERE {static} ORDER BY c LIMIT 10',
     'SELECT CASE WHEN "status" < "temp" THEN "endpoint" END AS a, "seq" AS b, "seq" AS c FROM {t} '
     'WHERE {static} ORDER BY c LIMIT 10'),
    # The same family, through a join: the left side projects "user_id" twice, joins on one copy
    # and groups by the other; over segments + a live hot tail the aggregate's required hash
    # partitioning no longer matches the join's (seed 11 ingesting #3355, FINDINGS.md 6).
    ("duplicate-column-join-group-union",
     'SELECT a.c1 AS c0, count(*) AS c1, count(DISTINCT b.c1) AS c2, max(b.c2) AS c3, count(*) FILTER (WHERE (a.c2 < b.c3)) AS c4 FROM (SELECT "user_id" AS c0, "user_id" AS c1, "seq" AS c2 FROM {t} WHERE ({static} AND ((NOT ("trace.trace_id" IS NOT DISTINCT FROM \'fc59a900e7ebdd60946f7804e11e7d93\')) AND ("_samplerate" >= 8) AND contains("tier", \'silv\')))) AS a JOIN (SELECT "user_id" AS c0, "endpoint" AS c1, "late_int" AS c2, "seq" AS c3 FROM {t} WHERE ({static} AND ("seq" BETWEEN 601 AND 3862))) AS b ON a.c0 = b.c0 GROUP BY a.c1',
     'SELECT a.c1 AS c0, count(*) AS c1, count(DISTINCT b.c1) AS c2, max(b.c2) AS c3, count(*) FILTER (WHERE (a.c2 < b.c3)) AS c4 FROM (SELECT "user_id" AS c0, "user_id" AS c1, "seq" AS c2 FROM {t} WHERE ({static} AND ((NOT ("trace.trace_id" IS NOT DISTINCT FROM \'fc59a900e7ebdd60946f7804e11e7d93\')) AND ("_samplerate" >= 8) AND contains("tier", \'silv\')))) AS a JOIN (SELECT "user_id" AS c0, "endpoint" AS c1, "late_int" AS c2, "seq" AS c3 FROM {t} WHERE ({static} AND ("seq" BETWEEN 601 AND 3862))) AS b ON a.c0 = b.c0 GROUP BY a.c1'),
    # A contradiction DataFusion 55 does not fold (`>` and `<` apart; it folds two `=`, see
    # KNOWN_UPSTREAM) is answered right without GROUP BY: no row. The random SQL does not put
    # contradictory conjunctions on global aggregates at all, so this keeps the shape asked.
    ("having-range-contradiction-global",
     'SELECT count(*), sum("n") FROM {fixed} WHERE {static} HAVING count(*) > 5 AND count(*) < 3',
     'SELECT count(*), sum("n") FROM {fixed} WHERE {static} HAVING count(*) > 5 AND count(*) < 3'),
    # DataFusion 55's simplifier folds `e NOT IN (A) OR e NOT IN (B)` with disjoint lists into
    # `true` (and `e IN (A) AND e IN (B)` into `false`), wrong where e is NULL: every event was
    # counted, those without the column too (seed 20261202, flushed #2989; fixed by
    # query/src/inlist_nulls.rs).
    ("not-in-or-not-in-disjoint",
     'SELECT count(*) FROM {t} WHERE {static} AND ("k8s.namespace" NOT IN (\'defaultx\', \'prod\') '
     'OR "k8s.namespace" NOT IN (\'staging\', \'u0\'))',
     'SELECT count(*) FROM {t} WHERE {static} AND ("k8s.namespace" NOT IN (\'defaultx\', \'prod\') '
     'OR "k8s.namespace" NOT IN (\'staging\', \'u0\'))'),
    ("not-of-in-and-in-disjoint",
     'SELECT count(*) FROM {t} WHERE {static} AND NOT ("k8s.namespace" IN (\'prod\') '
     'AND "k8s.namespace" IN (\'staging\'))',
     'SELECT count(*) FROM {t} WHERE {static} AND NOT ("k8s.namespace" IN (\'prod\') '
     'AND "k8s.namespace" IN (\'staging\'))'),
    # DataFusion 55's MIN/MAX dynamic filter left out an aggregate without a bound (FINDINGS.md
    # 11): with a hot tail read first, max("db.rows") lost the row where "delta" is NULL.
    ("max-max-dynamic-filter",
     'SELECT max("delta"), max("db.rows") FROM {t} WHERE {static} AND contains("buyer", \'b77\')',
     'SELECT max("delta"), max("db.rows") FROM {t} WHERE {static} AND contains("buyer", \'b77\')'),
    ("bloom-needle",
     'SELECT count(*) FROM {t} WHERE {static} AND "user_id" = (SELECT min("user_id") FROM {t} WHERE {static})',
     'SELECT count(*) FROM {t} WHERE {static} AND "user_id" = (SELECT min("user_id") FROM {t} WHERE {static})'),
]

SPECS = [
    ("spec-count-distinct-one-file", "one",
     {"calculations": [{"op": "COUNT"}, {"op": "SUM", "column": "bytes"},
                       {"op": "COUNT_DISTINCT", "column": "buyer"}], "breakdowns": ["tier"]}),
    ("spec-weighted", "t",
     {"calculations": [{"op": "COUNT"}, {"op": "AVG", "column": "duration_ms"},
                       {"op": "P99", "column": "duration_ms"}, {"op": "SUM", "column": "bytes"}],
      "breakdowns": ["service.name"], "granularity": 3600}),
    ("spec-negative-ops", "t",
     {"calculations": [{"op": "COUNT"}],
      "filters": [{"column": "region", "op": "!=", "value": "us-east-1"},
                  {"column": "error", "op": "does-not-contain", "value": "o"},
                  {"column": "tier", "op": "not-in", "value": ["gold"]}]}),
    # The ±2^53 / int64-edge column: weighted sums beyond int64 are exact (DECIMAL(38, 0)),
    # answered as a float once past int64; AVG of the same sums.
    ("spec-sum-big", "t",
     {"calculations": [{"op": "SUM", "column": "big"}, {"op": "AVG", "column": "big"},
                       {"op": "COUNT"}], "breakdowns": ["tier"]}),
]

# The fixed dataset "diff-fixed": (data, seconds after the static window's start, samplerate).
FIXED = [
    ({"k": "a", "v": -900000.0, "n": 1, "flag": True, "phase": "static"}, 0, 1),
    ({"k": "a", "v": -900000.0, "n": 2, "flag": False, "phase": "static"}, 1, 1),
    ({"k": "a", "v": 100000.0, "n": 3, "flag": True, "phase": "static"}, 2, 1),
    ({"k": "b", "v": 9.540999999999999, "n": 4, "flag": False, "phase": "static"}, 3, 9),
    ({"k": "b", "v": 1.5, "n": 5, "phase": "static", "huge": 2**62}, 4, 1),
    ({"k": "b", "n": 6, "phase": "static", "huge": 2**62}, 5, 2),
]
FIXED_TYPES = {"k": "VARCHAR", "v": "DOUBLE", "n": "BIGINT", "flag": "BOOLEAN", "phase": "VARCHAR",
               "huge": "BIGINT"}

# Spec cases on the fixed dataset: (name, "fixed", spec).
SPECS += [
    # API.md: percentiles are "exact percentile_cont with linear interpolation". Over
    # v = [-900000, -900000, 100000], P95 sits at index 1.9: -900000 + 1000000 * 0.9 = 0.
    # DataFusion's percentile_cont truncates the weight 0.8999999999999999 to 0.899999 and
    # answers -1 (FINDINGS.md 3; fixed in 53c18af, exact_percentile).
    ("spec-p95-exact", "fixed",
     {"calculations": [{"op": "P95", "column": "v"}], "filters": [{"column": "k", "op": "=", "value": "a"}]}),
    # A float filter value must match the stored float: 9.540999999999999 is in the data.
    ("spec-float-value-roundtrip", "fixed",
     {"calculations": [{"op": "COUNT"}], "filters": [{"column": "v", "op": "=", "value": 9.540999999999999}]}),
    # `!=` is IS DISTINCT FROM; with a second filter the translation must keep it apart.
    ("spec-not-equal-bool-and", "fixed",
     {"calculations": [{"op": "COUNT"}], "filters": [{"column": "flag", "op": "!=", "value": True},
                                                     {"column": "n", "op": ">", "value": 1}]}),
    # All havings must hold: COUNT = 2 and COUNT = 3 leave no result row.
    ("spec-having-contradiction", "fixed",
     {"calculations": [{"op": "COUNT"}], "havings": [{"calculate_op": "COUNT", "op": "=", "value": 2},
                                                     {"calculate_op": "COUNT", "op": "=", "value": 3}]}),
    # An AVG = v having beside a having on a calculation that is not listed: DataFusion 55's
    # plan sanity check refuses the sort (found as seed 11 hot #1883, any state).
    ("spec-having-avg-equal-and-unlisted", "fixed",
     {"calculations": [{"op": "AVG", "column": "n"}], "breakdowns": ["k"],
      "havings": [{"calculate_op": "AVG", "column": "n", "op": "=", "value": 2},
                  {"calculate_op": "COUNT", "op": ">=", "value": 1}]}),
    # SUM is Σ value × samplerate: 2^62 × 1 + 2^62 × 2 = 3 × 2^62, past int64.
    ("spec-sum-int64-overflow", "fixed", {"calculations": [{"op": "SUM", "column": "huge"}]}),
    ("spec-not-equal-string-and", "fixed",
     {"calculations": [{"op": "COUNT"}], "filters": [{"column": "k", "op": "!=", "value": "a"},
                                                     {"column": "n", "op": ">", "value": 1}]}),
]

# Known DataFusion 55 behaviour of raw SQL (FINDINGS.md "Known upstream"): (name, DataFusion SQL,
# DuckDB SQL, DataFusion 55's answer as rows or as a refusal {status, contains}, why). Eventide
# must answer exactly the known rows (or refusal); the DuckDB answer is reported beside them.
# The spec path avoids them (spec SUM over
# integers is DECIMAL(38, 0), spec filters are parenthesized, spec havings without breakdowns
# are compared outside the aggregation), and the random SQL never has these shapes.
KNOWN_UPSTREAM = [
    # 2^62 + 2^62 = 2^63, one past int64: DataFusion sums Int64 with wrapping arithmetic.
    ("sum-int64-overflow",
     'SELECT sum("huge") FROM {fixed} WHERE {static}',
     'SELECT sum("huge") FROM {fixed} WHERE {static}',
     [[-9223372036854775808]],
     "DataFusion 55 sums Int64 with wrapping arithmetic: 2^62 + 2^62 answers -2^63 with no error "
     "(DuckDB widens to HUGEINT: 2^63)"),
    # `a IS DISTINCT FROM b AND c` is `(a IS DISTINCT FROM b) AND c` in SQL (DuckDB, PostgreSQL);
    # DataFusion 55's parser (sqlparser, also with the PostgreSQL dialect) reads
    # `a IS DISTINCT FROM (b AND c)`: flag IS DISTINCT FROM (n > 1) holds for 5 of the 6 events.
    ("is-distinct-from-precedence",
     'SELECT count(*) FROM {fixed} WHERE "flag" IS DISTINCT FROM TRUE AND "n" > 1 AND {static}',
     'SELECT count(*) FROM {fixed} WHERE "flag" IS DISTINCT FROM TRUE AND "n" > 1 AND {static}',
     [[5]],
     "sqlparser (DataFusion 55) parses `a IS DISTINCT FROM b AND c` as `a IS DISTINCT FROM (b AND c)`: "
     "5 rows instead of 4"),
    # Two HAVING conditions that cannot both hold leave no group, also without GROUP BY; DataFusion
    # 55 folds them to `false` and push_down_filter moves it below the global aggregate, which then
    # aggregates nothing and answers its one row.
    ("having-contradiction-global",
     'SELECT count(*) FROM {fixed} WHERE {static} HAVING count(*) = 2 AND count(*) = 3',
     'SELECT count(*) FROM {fixed} WHERE {static} HAVING count(*) = 2 AND count(*) = 3',
     [[0]],
     "DataFusion 55 pushes a contradictory HAVING (folded to false) below an aggregation without "
     "GROUP BY: one row [0] instead of none"),
    # The same through ROLLUP (and CUBE): the grouping sets include the empty one, whose group
    # exists even over no rows, so the pushed-down `false` leaves the grand total [NULL, 0].
    ("having-contradiction-rollup",
     'SELECT "k", count(*) FROM {fixed} WHERE {static} GROUP BY ROLLUP ("k") '
     'HAVING count(*) = 2 AND count(*) = 3',
     'SELECT "k", count(*) FROM {fixed} WHERE {static} GROUP BY ROLLUP ("k") '
     'HAVING count(*) = 2 AND count(*) = 3',
     [[None, 0]],
     "as having-contradiction-global, through ROLLUP's grand-total grouping set: one row "
     "[NULL, 0] instead of none"),
    # DataFusion names CAST(x AS …) after x, so the two grouping keys collide
    # (apache/datafusion#4478, open since 2022). The known answer is the refusal.
    ("group-by-column-and-its-cast",
     'SELECT "n" AS a, CAST("n" AS DOUBLE) AS b, count(*) FROM {fixed} WHERE {static} '
     'GROUP BY "n", CAST("n" AS DOUBLE)',
     'SELECT "n" AS a, CAST("n" AS DOUBLE) AS b, count(*) FROM {fixed} WHERE {static} '
     'GROUP BY "n", CAST("n" AS DOUBLE)',
     {"status": 400, "contains": "Projections require unique expression names"},
     "DataFusion 55 names a cast after its operand: GROUP BY x, CAST(x AS DOUBLE) is refused "
     "with 400 instead of answered"),
]
