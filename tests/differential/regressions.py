"""Fixed cases the checker runs in every state, before the random ones.

SQL cases are (name, DataFusion SQL, DuckDB SQL) templates over:
  {t}      the main dataset (quoted table name)
  {one}    a small dataset whose events were flushed as one segment file (hot in the hot state)
  {fixed}  FIXED below: six hand-made events
  {static} a condition that excludes the live events of the ingesting state ("TRUE" elsewhere)
Spec cases are (name, dataset key "t", "one" or "fixed", spec, reference options); a spec's
time window is filled in from the data ("start_time"/"end_time" covering every static event)
unless it has one.
See FINDINGS.md for the bugs behind the cases marked there.
"""

SQL = [
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
    # Integer SUM must not wrap around: 2^62 + 2^62 is 2^63, past int64.
    ("sum-int64-overflow",
     'SELECT sum("huge") FROM {fixed} WHERE {static}',
     'SELECT sum("huge") FROM {fixed} WHERE {static}'),
    # Two HAVING conditions that cannot both hold leave no group, also without GROUP BY
    # (DataFusion 55 answers one row of count 0).
    ("having-contradiction-global",
     'SELECT count(*) FROM {fixed} WHERE {static} HAVING count(*) = 2 AND count(*) = 3',
     'SELECT count(*) FROM {fixed} WHERE {static} HAVING count(*) = 2 AND count(*) = 3'),
    # `a IS DISTINCT FROM b AND c` is `(a IS DISTINCT FROM b) AND c` in SQL (DuckDB, PostgreSQL);
    # DataFusion 55's parser reads `a IS DISTINCT FROM (b AND c)`: the root of the spec `!=` bug.
    ("is-distinct-from-precedence",
     'SELECT count(*) FROM {fixed} WHERE "flag" IS DISTINCT FROM TRUE AND "n" > 1 AND {static}',
     'SELECT count(*) FROM {fixed} WHERE "flag" IS DISTINCT FROM TRUE AND "n" > 1 AND {static}'),
    ("bloom-needle",
     'SELECT count(*) FROM {t} WHERE {static} AND "user_id" = (SELECT min("user_id") FROM {t} WHERE {static})',
     'SELECT count(*) FROM {t} WHERE {static} AND "user_id" = (SELECT min("user_id") FROM {t} WHERE {static})'),
]

SPECS = [
    ("spec-count-distinct-one-file", "one",
     {"calculations": [{"op": "COUNT"}, {"op": "SUM", "column": "bytes"},
                       {"op": "COUNT_DISTINCT", "column": "buyer"}], "breakdowns": ["tier"]}, {}),
    ("spec-weighted", "t",
     {"calculations": [{"op": "COUNT"}, {"op": "AVG", "column": "duration_ms"},
                       {"op": "P99", "column": "duration_ms"}, {"op": "SUM", "column": "bytes"}],
      "breakdowns": ["service.name"], "granularity": 3600}, {}),
    ("spec-negative-ops", "t",
     {"calculations": [{"op": "COUNT"}],
      "filters": [{"column": "region", "op": "!=", "value": "us-east-1"},
                  {"column": "error", "op": "does-not-contain", "value": "o"},
                  {"column": "tier", "op": "not-in", "value": ["gold"]}]}, {}),
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

# Spec cases on the fixed dataset: (name, "fixed", spec, reference options).
SPECS += [
    # API.md: percentiles are "exact percentile_cont with linear interpolation". Over
    # v = [-900000, -900000, 100000], P95 sits at index 1.9: -900000 + 1000000 * 0.9 = 0.
    # DataFusion truncates the weight 0.8999999999999999 to 0.899999 and answers -1.
    ("spec-p95-exact", "fixed",
     {"calculations": [{"op": "P95", "column": "v"}], "filters": [{"column": "k", "op": "=", "value": "a"}]},
     {"exact_percentiles": True}),
    # A float filter value must match the stored float: 9.540999999999999 is in the data.
    ("spec-float-value-roundtrip", "fixed",
     {"calculations": [{"op": "COUNT"}], "filters": [{"column": "v", "op": "=", "value": 9.540999999999999}]}, {}),
    # `!=` is IS DISTINCT FROM; with a second filter the translation must keep it apart.
    ("spec-not-equal-bool-and", "fixed",
     {"calculations": [{"op": "COUNT"}], "filters": [{"column": "flag", "op": "!=", "value": True},
                                                     {"column": "n", "op": ">", "value": 1}]}, {}),
    # All havings must hold: COUNT = 2 and COUNT = 3 leave no result row.
    ("spec-having-contradiction", "fixed",
     {"calculations": [{"op": "COUNT"}], "havings": [{"calculate_op": "COUNT", "op": "=", "value": 2},
                                                     {"calculate_op": "COUNT", "op": "=", "value": 3}]}, {}),
    # An AVG = v having beside a having on a calculation that is not listed: DataFusion 55's
    # plan sanity check refuses the sort (found as seed 11 hot #1883, any state).
    ("spec-having-avg-equal-and-unlisted", "fixed",
     {"calculations": [{"op": "AVG", "column": "n"}], "breakdowns": ["k"],
      "havings": [{"calculate_op": "AVG", "column": "n", "op": "=", "value": 2},
                  {"calculate_op": "COUNT", "op": ">=", "value": 1}]}, {}),
    # SUM is Σ value × samplerate: 2^62 × 1 + 2^62 × 2 = 3 × 2^62, past int64.
    ("spec-sum-int64-overflow", "fixed", {"calculations": [{"op": "SUM", "column": "huge"}]}, {}),
    ("spec-not-equal-string-and", "fixed",
     {"calculations": [{"op": "COUNT"}], "filters": [{"column": "k", "op": "!=", "value": "a"},
                                                     {"column": "n", "op": ">", "value": 1}]}, {}),
]
