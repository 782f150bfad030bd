"""Fixed cases the checker runs in every state, before the random ones.

SQL cases are (name, DataFusion SQL, DuckDB SQL) templates over:
  {t}      the main dataset (quoted table name)
  {one}    a small dataset whose events were flushed as one segment file (hot in the hot state)
  {static} a condition that excludes the live events of the ingesting state ("TRUE" elsewhere)
Spec cases are (name, dataset key "t" or "one", spec); a spec's time window is filled in from
the data ("start_time"/"end_time" covering every static event) unless it has one.
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
     'SELECT "endpoint", quantile_cont("duration_ms", 0.99), median("bytes") FROM {t} WHERE {static} '
     'GROUP BY 1'),
    ("high-cardinality-key",
     'SELECT "user_id", count(*), sum("_samplerate") FROM {t} WHERE {static} GROUP BY 1',
     'SELECT "user_id", count(*), sum("_samplerate") FROM {t} WHERE {static} GROUP BY 1'),
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
]
