//! Disk faults under the embedded log, injected at its fault points (`fail` crate): a write
//! that stops halfway on a full disk, a failing fsync, and a failure to undo either.
//!
//! What must hold: the appender of a refused record gets an error that says why, nothing
//! refused is ever read back (before or after a restart), every acknowledged record is, and
//! the log takes writes again as soon as the disk does.

use std::time::Duration;

use bytes::Bytes;
use eventide_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog, LogError};

async fn payloads(log: &EmbeddedLog) -> Vec<(u64, String)> {
    let records = log
        .read(0, 1 << 20, Duration::from_millis(100))
        .await
        .expect("read the log");
    records
        .into_iter()
        .map(|r| (r.offset, String::from_utf8_lossy(&r.payload).into_owned()))
        .collect()
}

async fn append(log: &EmbeddedLog, text: &'static str) -> Result<u64, LogError> {
    log.append("faults", Bytes::from_static(text.as_bytes()))
        .await
        .map(|p| p.offset)
}

// One test: fault points are process-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writes_are_rolled_back_and_the_log_goes_on() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(EmbeddedLogConfig::new(dir.path())).expect("open");
    assert_eq!(append(&log, "one").await.expect("append"), 0);

    // A full disk: the write stops halfway. The appender is told the disk is full.
    fail::cfg("eventlog-write", "1*return(enospc)").expect("cfg");
    let e = append(&log, "refused: disk full").await.unwrap_err();
    assert!(matches!(e, LogError::DiskFull(_)), "{e}");
    assert!(e.to_string().contains("disk is full"), "{e}");
    // Space again: the next append takes the refused record's offset; no torn bytes between.
    assert_eq!(append(&log, "two").await.expect("append after ENOSPC"), 1);

    // fsync fails (EIO): refused, rolled back, and the log goes on.
    fail::cfg("eventlog-fsync", "1*return(eio)").expect("cfg");
    let e = append(&log, "refused: fsync").await.unwrap_err();
    assert!(matches!(e, LogError::Unavailable(_)), "{e}");
    assert!(e.to_string().contains("Input/output error"), "{e}");
    assert_eq!(append(&log, "three").await.expect("append after EIO"), 2);
    assert_eq!(
        payloads(&log).await,
        vec![(0, "one".into()), (1, "two".into()), (2, "three".into())]
    );

    // A failed write that cannot be undone either: the log refuses every write from then on
    // (until a restart re-reads and verifies the file) rather than risk a torn record.
    fail::cfg("eventlog-write", "1*return(eio)").expect("cfg");
    fail::cfg("eventlog-rollback", "1*return(eio)").expect("cfg");
    let e = append(&log, "refused: torn").await.unwrap_err();
    assert!(matches!(e, LogError::Failed(_)), "{e}");
    let e = append(&log, "refused: after").await.unwrap_err();
    assert!(matches!(e, LogError::Failed(_)), "{e}");
    scenario.teardown();
    drop(log);

    // The restart cuts the torn half-record: exactly the acknowledged records, and new
    // appends continue after them.
    let log = EmbeddedLog::open(EmbeddedLogConfig::new(dir.path())).expect("reopen");
    assert_eq!(append(&log, "four").await.expect("append after restart"), 3);
    assert_eq!(
        payloads(&log).await,
        vec![
            (0, "one".into()),
            (1, "two".into()),
            (2, "three".into()),
            (3, "four".into())
        ]
    );
}
