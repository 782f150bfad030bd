//! One data directory, one writer: a second server on a directory another one uses exits at
//! once, naming the directory and the other process; a damaged log stops the server until
//! `eventide log repair` ran, and the repair keeps every record still whole.

mod common;

use std::path::Path;
use std::process::Command;

use common::Server;
use serde_json::{Value as Json, json};

fn eventide(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eventide"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("EVENTIDE_KEYS", "admin:a")
        .env("EVENTIDE_LOG", "error")
        .output()
        .expect("run eventide")
}

fn batch(from: u64, n: u64) -> Vec<Json> {
    (from..from + n)
        .map(|seq| json!({"data": {"seq": seq, "pad": format!("{seq:0>40}")}}))
        .collect()
}

#[tokio::test]
async fn a_second_server_on_one_data_directory_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path(), &[]).await;
    first.send_batch("d", &batch(0, 100)).await;
    let files_before = walk(dir.path());

    // The second one: same directory, its own port. It must not start.
    let out = Command::new(env!("CARGO_BIN_EXE_eventide"))
        .args(["serve", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("EVENTIDE_KEYS", "admin:a")
        .output()
        .expect("run a second server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second server ran: {stderr}");
    assert!(
        stderr.contains(&dir.path().join("log").display().to_string()),
        "names the directory: {stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", first.child.id())),
        "names the other process: {stderr}"
    );
    // The first one is untouched: still serving, no file of it removed.
    first.send_batch("d", &batch(100, 100)).await;
    assert_eq!(first.wait_count("d", 200).await, 200);
    for f in files_before.iter().filter(|f| f.contains("segments")) {
        assert!(dir.path().join(f).exists(), "{f} was removed");
    }
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.display().to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn a_damaged_log_stops_the_server_until_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--log-segment-bytes", "20000", "--flush-seconds", "3600"];
    let mut server = Server::start_with(dir.path(), &args, &[]).await;
    for i in 0..40 {
        server.send_batch("d", &batch(i * 50, 50)).await;
    }
    assert_eq!(server.wait_count("d", 2000).await, 2000);
    server.kill9();
    let log = dir.path().join("log");
    let mut segments: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "{segments:?}");
    // Bit rot in a sealed segment, well before the end of the log.
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&segments[0], &bytes).unwrap();
    let sizes = |s: &[std::path::PathBuf]| -> Vec<u64> {
        s.iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .collect()
    };
    let before = sizes(&segments);

    let out = eventide(&["serve", "--http", "127.0.0.1:0"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a damaged log: {stderr}");
    assert!(stderr.contains("eventide log repair"), "{stderr}");
    assert!(
        stderr.contains(
            &segments[0]
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string()
        ),
        "{stderr}"
    );
    assert_eq!(sizes(&segments), before, "nothing was cut");

    let verify = eventide(&["log", "verify"], dir.path());
    assert_eq!(verify.status.code(), Some(1), "{verify:?}");
    assert!(String::from_utf8_lossy(&verify.stdout).contains("damaged:"));
    let repair = eventide(&["log", "repair"], dir.path());
    let said = String::from_utf8_lossy(&repair.stdout).into_owned();
    assert!(repair.status.success(), "{repair:?}");
    assert!(said.contains("1 records lost"), "{said}");

    // Every other record is back: one batch of 50 is lost, the rest (later segments
    // included) are there exactly once.
    let server = Server::start_with(dir.path(), &args, &[]).await;
    assert_eq!(server.wait_count("d", 1950).await, 1950);
    let rows = server
        .rows("SELECT count(DISTINCT seq), min(seq), max(seq) FROM d")
        .await;
    assert_eq!(rows[0][0], json!(1950));
    assert_eq!(rows[0][2], json!(1999));
    // And it takes new events after the repaired ones.
    server.send_batch("d", &batch(2000, 10)).await;
    assert_eq!(server.wait_count("d", 1960).await, 1960);
}
