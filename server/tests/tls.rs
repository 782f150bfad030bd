//! `--tls-cert`/`--tls-key`: the listener speaks HTTPS (rustls). The certificate is made by
//! `openssl` and the client is `curl`, checking the certificate against it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn serves_https_with_the_given_certificate_and_only_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=eventide-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(made.success(), "openssl could not make a certificate");

    let mut child = Command::new(env!("CARGO_BIN_EXE_eventide"))
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--keys",
            "query:tls-query-key",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("EVENTIDE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start eventide");
    let stdout = child.stdout.take().expect("stdout");
    let mut url = String::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("eventide listening on ") {
            url = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            break;
        }
    }
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let cacert = cert.to_string_lossy().into_owned();
    let mut healthy = false;
    for _ in 0..100 {
        let (ok, out) = curl(&["--cacert", &cacert, &format!("{url}/healthz")]);
        if ok && out.contains("\"ok\"") {
            healthy = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(healthy, "no answer over https");
    // A query with a key, over TLS.
    let (ok, out) = curl(&[
        "--cacert",
        &cacert,
        "-H",
        "X-Honeycomb-Team: tls-query-key",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"sql": "SELECT 41 + 1 AS answer"}"#,
        &format!("{url}/api/v1/sql"),
    ]);
    assert!(ok && out.contains("42"), "{out}");
    // Without the certificate's authority, curl refuses it: the server really presents it.
    let (ok, out) = curl(&[&format!("{url}/healthz")]);
    assert!(!ok, "an unknown certificate was accepted: {out}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let (ok, out) = curl(&[&format!("{}/healthz", url.replacen("https", "http", 1))]);
    assert!(!ok || !out.contains("\"ok\""), "{out}");
    // And the server is still fine after those.
    let (ok, out) = curl(&["--cacert", &cacert, &format!("{url}/healthz")]);
    assert!(ok && out.contains("\"ok\""), "{out}");

    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "graceful shutdown: {status}");
}

#[test]
fn a_bad_certificate_stops_startup_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "not a certificate").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eventide"))
        .args(["serve", "--http", "127.0.0.1:0", "--keys", "query:k"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&cert)
        .env("EVENTIDE_LOG", "warn")
        .output()
        .expect("run eventide");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{err}");
}
