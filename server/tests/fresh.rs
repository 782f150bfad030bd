//! With the embedded log, an acknowledged event is in the very next query: a query waits
//! until the store has applied everything the log had made durable when it arrived (at most
//! a second), instead of racing the store's consumer.

mod common;

use common::{INGEST_KEY, Server};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_query_sees_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]).await;
    for round in 0..60u64 {
        // A new dataset each time: before, the first query often said "table not found".
        let dataset = format!("fresh-{round}");
        let items: Vec<_> = (0..7)
            .map(|i| json!({"data": {"i": i, "round": round}}))
            .collect();
        let r = s
            .post(&format!("/1/batch/{dataset}"), INGEST_KEY)
            .json(&items)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (status, body) = s
            .try_sql(&format!("SELECT count(*), sum(i) FROM \"{dataset}\""))
            .await;
        assert_eq!(status, 200, "round {round}: {body}");
        assert_eq!(body["rows"][0], json!([7, 21]), "round {round}");
        // And in a spec query on the same dataset.
        let spec = s
            .spec(
                &dataset,
                json!({"calculations": [{"op": "COUNT"}], "time_range": 3600}),
            )
            .await;
        assert_eq!(
            spec["results"][0]["COUNT"],
            json!(7),
            "round {round}: {spec}"
        );
    }
}
