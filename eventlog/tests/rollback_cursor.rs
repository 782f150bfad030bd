//! A refused group's bytes are never served, even to a reader that buffered them before the
//! rollback (its own process: fault points are process-wide).
//!
//! The writer writes a group, then fsyncs it; when the fsync fails it cuts the file back and
//! hands the offsets out again. A reader whose read buffer was filled between the write and
//! the cut holds the refused records, framed and checksummed like good ones, at the offsets
//! the next group gets. It must read the file again instead of serving them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use eventide_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog, LogError};

fn segment_len(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("log dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_group_is_not_served_from_a_read_buffer() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let log =
        std::sync::Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(dir.path())).expect("open"));
    let one = log
        .append("ds", Bytes::from_static(b"one"))
        .await
        .expect("append");
    assert_eq!(one.offset, 0);
    let before = segment_len(dir.path());

    // The next group is written, its fsync fails, and the writer stops before cutting it off.
    fail::cfg("eventlog-fsync", "1*return(eio)").expect("cfg");
    fail::cfg("eventlog-before-rollback", "pause").expect("cfg");
    let refused = {
        let log = log.clone();
        tokio::spawn(async move { log.append("ds", Bytes::from_static(b"refused")).await })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while segment_len(dir.path()) <= before {
        assert!(
            Instant::now() < deadline,
            "the refused group was never written"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A reader reads record 0 now: its buffer takes the refused bytes after it too.
    let first = log.read(0, 1 << 20, Duration::ZERO).await.expect("read");
    assert_eq!(first.len(), 1);
    assert_eq!(&first[0].payload[..], b"one");

    // The rollback happens; the appender is refused.
    fail::remove("eventlog-before-rollback");
    let e = refused.await.expect("join").unwrap_err();
    assert!(matches!(e, LogError::Unavailable(_)), "{e}");

    // The offset is handed out again, to an acknowledged record: that is what must be read.
    let two = log
        .append("ds", Bytes::from_static(b"two"))
        .await
        .expect("append");
    assert_eq!(two.offset, 1);
    let next = log
        .read(1, 1 << 20, Duration::from_secs(5))
        .await
        .expect("read");
    let got: Vec<(u64, String)> = next
        .iter()
        .map(|r| (r.offset, String::from_utf8_lossy(&r.payload).into_owned()))
        .collect();
    assert_eq!(got, vec![(1, "two".to_string())]);
    // And the reader goes on reading what follows.
    let three = log
        .append("ds", Bytes::from_static(b"three"))
        .await
        .expect("append");
    let next = log
        .read(2, 1 << 20, Duration::from_secs(5))
        .await
        .expect("read");
    assert_eq!(
        (next[0].offset, &next[0].payload[..]),
        (three.offset, &b"three"[..])
    );
    scenario.teardown();
}
