//! The interned grouping against DataFusion's own hash aggregation: the same answers for every
//! kind of key and aggregate, the probe's hand-over, the partial state emitted at
//! [`MAX_GROUPS`](super::MAX_GROUPS), empty partitions and the memory pool.

use std::sync::Arc;

use arrow::array::{
    AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, StringViewArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::{InternedAggregateExec, InternedGroupingRule};

const SERVICES: [Option<&str>; 8] = [
    Some("checkout"),
    Some("cart"),
    Some("a-service-name-longer-than-twelve-bytes"),
    Some("search"),
    None,
    Some("payments-api-with-a-long-name"),
    Some("auth"),
    Some("cart"),
];

fn batch(schema: &SchemaRef, from: usize, n: usize) -> RecordBatch {
    let rows = from..from + n;
    let svc: Vec<Option<&str>> = rows
        .clone()
        .map(|i| SERVICES[(i * 7 + i / 3) % 8])
        .collect();
    let region: Vec<Option<&str>> = rows
        .clone()
        .map(|i| [Some("eu"), Some("us"), None][i % 3])
        .collect();
    RecordBatch::try_new(
        Arc::clone(schema),
        vec![
            Arc::new(StringArray::from(svc.clone())),
            Arc::new(StringViewArray::from(svc)),
            Arc::new(StringArray::from(region)),
            Arc::new(Int64Array::from(
                rows.clone()
                    .map(|i| (i % 11 != 0).then_some([200, 200, 404, 500][i % 4]))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from(
                rows.clone()
                    .map(|i| (i % 13 != 0).then_some(i % 5 == 0))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(
                TimestampMicrosecondArray::from(
                    rows.clone()
                        .map(|i| 1_700_000_000_000_000 + i as i64 * 1_000_003)
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from(
                rows.clone()
                    .map(|i| ((i * 37) % 1000) as f64 / 8.0)
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.clone()
                    .map(|i| format!("user-{i}"))
                    .collect::<Vec<_>>(),
            )),
            // Few values for the first rows of each partition, then distinct.
            Arc::new(Int64Array::from(
                rows.map(|i| {
                    if i % 400_000 < 70_000 {
                        i as i64 % 10
                    } else {
                        i as i64
                    }
                })
                .collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

fn context(interned: bool) -> SessionContext {
    context_with_pool(interned, None)
}

/// [`context`] whose queries share a memory pool of `pool` bytes, if given.
fn context_with_pool(interned: bool, pool: Option<usize>) -> SessionContext {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("svc", DataType::Utf8, true),
        Field::new("svc_view", DataType::Utf8View, true),
        Field::new("region", DataType::Utf8, true),
        Field::new("status", DataType::Int64, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("dur", DataType::Float64, false),
        Field::new("uid", DataType::Utf8, false),
        Field::new("mid", DataType::Int64, false),
    ]));
    // Two partitions: one of 400k rows in 8 Ki batches (crosses MAX_GROUPS on `mid`),
    // one small.
    let big: Vec<RecordBatch> = (0..400_000)
        .step_by(8192)
        .map(|from| batch(&schema, from, 8192.min(400_000 - from)))
        .collect();
    let small = vec![batch(&schema, 400_000, 5000), batch(&schema, 405_000, 3)];
    let table = MemTable::try_new(Arc::clone(&schema), vec![big, small]).unwrap();
    let mut runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new();
    if let Some(bytes) = pool {
        runtime = runtime.with_memory_limit(bytes, 1.0);
    }
    let mut state = SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(2))
        .with_runtime_env(runtime.build_arc().unwrap())
        .with_default_features();
    if interned {
        state = state.with_physical_optimizer_rule(Arc::new(InternedGroupingRule));
    }
    let ctx = SessionContext::new_with_state(state.build());
    ctx.register_table("t", Arc::new(table)).unwrap();
    ctx
}

/// The answer and the plan, shown with its metrics after the run.
async fn run(ctx: &SessionContext, sql: &str) -> (RecordBatch, String) {
    let df = ctx.sql(sql).await.unwrap();
    let schema = Arc::new(df.schema().as_arrow().clone());
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await.unwrap();
    let batches = datafusion::physical_plan::collect(Arc::clone(&plan), task)
        .await
        .unwrap();
    let shown = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(false)
        .to_string()
        + &metrics_of(&plan);
    (
        arrow::compute::concat_batches(&schema, &batches).unwrap(),
        shown,
    )
}

/// `handed_to_hash_aggregation` and `partial_state_emits` of the plan's interned grouping.
fn metrics_of(plan: &Arc<dyn ExecutionPlan>) -> String {
    let mut out = String::new();
    if plan.is::<InternedAggregateExec>()
        && let Some(m) = plan.metrics()
    {
        for name in ["handed_to_hash_aggregation", "partial_state_emits"] {
            out += &format!(
                " {name}={}",
                m.sum_by_name(name).map_or(0, |v| v.as_usize())
            );
        }
    }
    plan.children()
        .into_iter()
        .map(metrics_of)
        .fold(out, |a, b| a + &b)
}

/// A partition with no rows (one Parquet row group split over two partitions leaves the
/// other empty) emits an empty partial state of the right width, whatever the
/// accumulators: `COUNT(DISTINCT …)` goes through DataFusion's adapter, which cannot tell
/// its state's width without a group.
#[tokio::test]
async fn an_empty_partition_emits_an_empty_state_of_every_aggregate() {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("tier", DataType::Utf8, true),
        Field::new("latency", DataType::Int64, true),
        Field::new("buyer", DataType::Utf8, true),
    ]));
    let rows = |from: i64, n: i64| {
        RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(
                    (from..from + n)
                        .map(|i| ["gold", "silver", "bronze"][(i % 3) as usize])
                        .collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from((from..from + n).collect::<Vec<_>>())),
                Arc::new(StringArray::from(
                    (from..from + n)
                        .map(|i| format!("u{}", i % 97))
                        .collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    };
    let sql = "SELECT tier, COUNT(*) AS n, SUM(latency) AS s, COUNT(DISTINCT buyer) AS b \
               FROM m GROUP BY tier ORDER BY tier";
    let mut answers = Vec::new();
    for interned in [true, false] {
        let mut state = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(2))
            .with_default_features();
        if interned {
            state = state.with_physical_optimizer_rule(Arc::new(InternedGroupingRule));
        }
        let ctx = SessionContext::new_with_state(state.build());
        // Two partitions, the second without rows.
        let table = MemTable::try_new(
            Arc::clone(&schema),
            vec![vec![rows(0, 5000), rows(5000, 5000)], vec![]],
        )
        .unwrap();
        ctx.register_table("m", Arc::new(table)).unwrap();
        let (got, plan) = run(&ctx, sql).await;
        assert_eq!(plan.contains("InternedAggregateExec"), interned, "{plan}");
        answers.push(got);
    }
    assert_eq!(answers[0], answers[1]);
    let n = answers[0]
        .column(1)
        .as_primitive::<arrow::datatypes::Int64Type>();
    assert_eq!(n.iter().flatten().sum::<i64>(), 10_000);
}

/// The interned grouping reserves what it holds from the query memory pool: a small pool
/// refuses a grouping of 400k groups (naming the operator), a large one answers it.
#[tokio::test]
async fn interned_grouping_reserves_from_the_memory_pool() {
    let sql = "SELECT mid, svc, COUNT(*) AS n FROM t GROUP BY mid, svc";
    let small = context_with_pool(true, Some(1 << 20));
    let err = small.sql(sql).await.unwrap().collect().await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err.find_root(),
            datafusion::error::DataFusionError::ResourcesExhausted(_)
        ),
        "{msg}"
    );
    assert!(msg.contains("InternedAggregateExec"), "{msg}");
    let large = context_with_pool(true, Some(1 << 30));
    let (answer, plan) = run(&large, sql).await;
    assert!(plan.contains("InternedAggregateExec"), "{plan}");
    let (want, _) = run(&context(false), sql).await;
    assert_eq!(answer.num_rows(), want.num_rows());
}

#[tokio::test]
async fn answers_equal_datafusions_own_for_every_kind_of_key_and_aggregate() {
    let (with, without) = (context(true), context(false));
    // (query, whether interned grouping applies to it)
    let queries = [
        (
            "SELECT svc, COUNT(*) AS n, SUM(dur), AVG(dur), MIN(ts), MAX(status) FROM t \
             GROUP BY svc ORDER BY svc",
            true,
        ),
        (
            "SELECT svc_view, COUNT(*) AS n, COUNT(status), AVG(dur) FROM t \
             GROUP BY svc_view ORDER BY svc_view",
            true,
        ),
        (
            "SELECT region, svc_view, status, ok, COUNT(*) AS n, AVG(dur) FROM t \
             GROUP BY 1, 2, 3, 4 HAVING COUNT(*) > 5 ORDER BY 1, 2, 3, 4",
            true,
        ),
        (
            "SELECT svc, percentile_cont(dur, 0.9) AS p90, COUNT(DISTINCT status) AS s \
             FROM t GROUP BY svc ORDER BY svc",
            true,
        ),
        (
            "SELECT svc, COUNT(*) FILTER (WHERE status >= 500) AS errors, \
             SUM(CASE WHEN ok THEN 1 ELSE 0 END) AS oks FROM t GROUP BY svc ORDER BY svc",
            true,
        ),
        (
            "SELECT date_trunc('minute', ts) AS m, COUNT(*) AS n FROM t GROUP BY 1 ORDER BY 1",
            true,
        ),
        // Mostly distinct keys: handed to DataFusion after the probe.
        ("SELECT COUNT(DISTINCT uid) AS users FROM t", true),
        (
            "SELECT COUNT(*) AS groups, SUM(n) AS rows FROM \
             (SELECT uid, COUNT(*) AS n FROM t GROUP BY uid)",
            true,
        ),
        // Few values first, then distinct: the partial state is emitted at MAX_GROUPS.
        (
            "SELECT COUNT(*) AS groups, SUM(n) AS rows, MAX(n) AS most FROM \
             (SELECT mid, COUNT(*) AS n FROM t GROUP BY mid)",
            true,
        ),
        // No rows at all.
        (
            "SELECT svc, COUNT(*) AS n FROM t WHERE status = 999 GROUP BY svc",
            true,
        ),
        // Float keys stay with DataFusion.
        (
            "SELECT dur, COUNT(*) AS n FROM t GROUP BY dur ORDER BY n DESC, dur LIMIT 3",
            false,
        ),
    ];
    let mut plans = Vec::new();
    for (sql, applies) in queries {
        let (got, plan) = run(&with, sql).await;
        plans.push(plan.clone());
        let (want, reference) = run(&without, sql).await;
        assert!(!reference.contains("InternedAggregateExec"), "{reference}");
        assert_eq!(
            plan.contains("InternedAggregateExec"),
            applies,
            "{sql}\n{plan}"
        );
        assert_eq!(got, want, "{sql}");
        assert!(got.num_rows() > 0 || sql.contains("999"), "{sql}");
    }
    // Each path ran: the distinct user ids were handed over (in the big partition at
    // least), `mid` emitted its state at MAX_GROUPS, and low-cardinality keys did neither.
    assert!(
        plans[6].contains("handed_to_hash_aggregation=1")
            || plans[6].contains("handed_to_hash_aggregation=2"),
        "{}",
        plans[6]
    );
    assert!(plans[8].contains("partial_state_emits=1"), "{}", plans[8]);
    assert!(
        plans[8].contains("handed_to_hash_aggregation=0"),
        "{}",
        plans[8]
    );
    assert!(
        plans[0].contains("handed_to_hash_aggregation=0 partial_state_emits=0"),
        "{}",
        plans[0]
    );
    // The figures themselves, not only their agreement.
    let (b, _) = run(
        &with,
        "SELECT COUNT(*) AS g, SUM(n) AS r FROM (SELECT mid, COUNT(*) AS n FROM t GROUP BY mid)",
    )
    .await;
    let g = b
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    let r = b
        .column(1)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    assert_eq!(r, 405_003);
    // 10 values in the first 70k rows of each partition, then one per row.
    assert_eq!(g, 10 + (400_000 - 70_000));
}
