//! `eventide serve --config FILE`: the file's settings apply, the environment and the command
//! line override them, and a bad file stops the server with a message naming the setting.

mod common;

use common::{INGEST_KEY, Server};
use serde_json::json;

/// The status of a 3,000-byte batch (a valid one) sent to `server`.
async fn status_of_a_3000_byte_batch(server: &Server) -> u16 {
    let item = json!({"data": {"padding": "x".repeat(2900)}});
    let body = serde_json::to_vec(&vec![item]).unwrap();
    assert!(body.len() > 2900 && body.len() < 3100);
    server
        .post("/1/batch/cfg", INGEST_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_sets_flags_under_the_environment_and_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eventide.toml");
    std::fs::write(
        &file,
        "# Eventide settings\nmax-body-bytes = 2000\nflush_seconds = 1\nsort-key = [\"service.name\", \"status\"]\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();

    // From the file (named by --config): a 3,000-byte body is over the limit.
    let data = dir.path().join("a");
    let mut server = Server::start_with(&data, &["--config", file], &[]).await;
    assert_eq!(status_of_a_3000_byte_batch(&server).await, 413);
    server.stop();

    // From the file (named by EVENTIDE_CONFIG).
    let mut server = Server::start(&data, &[("EVENTIDE_CONFIG", file)]).await;
    assert_eq!(status_of_a_3000_byte_batch(&server).await, 413);
    server.stop();

    // An EVENTIDE_* variable overrides the file.
    let mut server = Server::start_with(
        &data,
        &["--config", file],
        &[("EVENTIDE_MAX_BODY_BYTES", "100000")],
    )
    .await;
    assert_eq!(status_of_a_3000_byte_batch(&server).await, 200);
    server.stop();

    // So does the command line, over both.
    let server = Server::start_with(
        &data,
        &["--config", file, "--max-body-bytes", "100000"],
        &[("EVENTIDE_MAX_BODY_BYTES", "1000")],
    )
    .await;
    assert_eq!(status_of_a_3000_byte_batch(&server).await, 200);
    assert_eq!(server.wait_count("cfg", 2).await, 2);
}

#[test]
fn a_bad_config_file_stops_the_server_with_a_message_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, says) in [
        (
            "max_memroy_mb = 1536\n",
            "unknown setting \"max_memroy_mb\"",
        ),
        ("flush-rows = \"lots\"\n", "--flush-rows"),
        ("flush-rows = \n", "is not valid TOML"),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, toml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_eventide"))
            .args(["serve", "--http", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml}: {stderr}");
        assert!(stderr.contains(says), "{toml}: {stderr}");
        assert!(
            stderr.contains(file.to_str().unwrap()),
            "names the file: {stderr}"
        );
        assert!(!dir.path().join("data").exists(), "nothing started: {toml}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eventide"))
        .args(["serve", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("reading config file"), "{stderr}");
}
