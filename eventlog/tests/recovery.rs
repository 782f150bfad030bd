//! Recovery of the embedded log at open. Only a torn tail of the last segment (the bytes a
//! crash left of a group whose fsync never completed) may be cut by itself. Damage anywhere
//! else (a sealed segment, a record followed by good ones, a missing segment) stops the open
//! with an error naming the segment and offset, and changes no file; `repair` is the
//! deliberate way past it, keeping every record that is still whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use eventide_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog, LogError, verify_log};

fn cfg(dir: &Path, segment_bytes: u64) -> EmbeddedLogConfig {
    let mut c = EmbeddedLogConfig::new(dir);
    c.segment_bytes = segment_bytes;
    c
}

/// Appends `n` records `r0`, `r1`, … of about 60 bytes each.
async fn fill(dir: &Path, segment_bytes: u64, n: u64) {
    let log = EmbeddedLog::open(cfg(dir, segment_bytes)).expect("open");
    for i in 0..n {
        let p = format!("r{i}-{}", "x".repeat(50));
        assert_eq!(
            log.append("ds", Bytes::from(p))
                .await
                .expect("append")
                .offset,
            i
        );
    }
}

fn segments(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut v: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| (e.path(), e.metadata().expect("meta").len()))
        .collect();
    v.sort();
    v
}

async fn offsets(log: &EmbeddedLog) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let recs = log
            .read(next, 1 << 20, Duration::from_millis(10))
            .await
            .expect("read");
        let Some(last) = recs.last() else { return out };
        next = last.offset + 1;
        out.extend(recs.iter().map(|r| {
            (
                r.offset,
                String::from_utf8_lossy(&r.payload[..3]).into_owned(),
            )
        }));
    }
}

fn flip(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at as usize] ^= 0x5a;
    std::fs::write(path, bytes).expect("write");
}

#[tokio::test]
async fn damage_in_a_sealed_segment_stops_the_open_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), 200, 20).await;
    let before = segments(dir.path());
    assert!(before.len() >= 4, "{before:?}");
    // A byte inside the second segment's first record body.
    flip(&before[1].0, 20);
    let e = EmbeddedLog::open(cfg(dir.path(), 200)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, LogError::Corrupt { .. }), "{msg}");
    let name = before[1]
        .0
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(msg.contains(&name), "names the segment: {msg}");
    assert!(
        msg.contains("eventide log repair"),
        "says the way out: {msg}"
    );
    assert_eq!(segments(dir.path()), before, "no file was cut or removed");
    // The report names it too.
    let report = verify_log(dir.path()).expect("verify");
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(report.problems[0].to_string().contains(&name));
}

#[tokio::test]
async fn a_missing_segment_stops_the_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), 200, 20).await;
    let before = segments(dir.path());
    std::fs::remove_file(&before[2].0).expect("rm");
    let e = EmbeddedLog::open(cfg(dir.path(), 200)).unwrap_err();
    assert!(matches!(e, LogError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("missing"), "{e}");
    assert_eq!(segments(dir.path()).len(), before.len() - 1);
}

#[tokio::test]
async fn a_damaged_record_followed_by_good_ones_is_not_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One big segment: the damage is in the last (active) segment, before good records.
    fill(dir.path(), 1 << 30, 10).await;
    let before = segments(dir.path());
    assert_eq!(before.len(), 1);
    flip(&before[0].0, 3 * 71 + 20);
    let e = EmbeddedLog::open(cfg(dir.path(), 1 << 30)).unwrap_err();
    assert!(matches!(e, LogError::Corrupt { .. }), "{e}");
    assert_eq!(segments(dir.path()), before);
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_the_log_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), 200, 20).await;
    let before = segments(dir.path());
    let (last, len) = before.last().cloned().expect("last");
    // Half a record at the end, as a crash during its write leaves it.
    let mut bytes = std::fs::read(&last).expect("read");
    let mut torn = eventide_eventlog::frame_record(20, "ds", b"never acknowledged");
    torn.truncate(torn.len() / 2);
    bytes.extend_from_slice(&torn);
    std::fs::write(&last, &bytes).expect("write");
    let log = EmbeddedLog::open(cfg(dir.path(), 200)).expect("a torn tail is cut");
    assert_eq!(segments(dir.path()).last().expect("last").1, len);
    assert_eq!(offsets(&log).await.len(), 20);
    assert_eq!(
        log.append("ds", Bytes::from_static(b"r20"))
            .await
            .expect("append")
            .offset,
        20
    );
}

#[tokio::test]
async fn repair_keeps_every_whole_record_and_marks_the_lost_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), 200, 20).await;
    let before = segments(dir.path());
    // Damage one record in a sealed segment, and lose a whole segment further on.
    flip(&before[1].0, 20);
    std::fs::remove_file(&before[3].0).expect("rm");
    let report = verify_log(dir.path()).expect("verify");
    assert_eq!(report.problems.len(), 2, "{report:?}");
    let repaired = eventide_eventlog::repair_log(dir.path()).expect("repair");
    assert!(repaired.lost_records >= 2, "{repaired:?}");
    assert!(verify_log(dir.path()).expect("verify").problems.is_empty());
    // The damaged bytes are kept for inspection.
    assert!(
        dir.path()
            .join("damaged")
            .read_dir()
            .expect("damaged dir")
            .count()
            >= 1
    );
    let log = EmbeddedLog::open(cfg(dir.path(), 200)).expect("opens after repair");
    let got = offsets(&log).await;
    // Every record not damaged is back, at its own offset; the lost ones are absent.
    let kept: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
    assert_eq!(kept.len() as u64 + repaired.lost_records, 20, "{kept:?}");
    for (o, p) in &got {
        assert_eq!(p, &format!("r{o}-")[..3], "offset {o} holds its own record");
    }
    assert!(kept.contains(&0) && kept.contains(&19));
    assert_eq!(
        log.append("ds", Bytes::from_static(b"r20"))
            .await
            .expect("append")
            .offset,
        20
    );
}
