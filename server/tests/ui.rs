//! The query page in a real browser: starts `eventide serve`, seeds a dataset, and runs the
//! Playwright script `ui/tests/browser/ui.test.mjs` (playwright-core from npm, driving Debian's
//! `/usr/bin/chromium` headless; `.ci/run` installs both). Screenshots of each view go to a
//! temporary folder (kept and printed with `EVENTIDE_UI_SCREENSHOTS=DIR`).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{ADMIN_KEY, INGEST_KEY, QUERY_KEY, Server};
use serde_json::{Value as Json, json};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ui/tests/browser")
}

/// `npm ci` once (pinned by the committed package-lock.json).
fn ensure_playwright() {
    let dir = browser_dir();
    if dir.join("node_modules/playwright-core").exists() {
        return;
    }
    let st = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("run npm (Node 20 is needed for the browser tests)");
    assert!(st.success(), "npm ci in {} failed", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_page_in_chromium() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser tests need Debian's chromium: apt-get install chromium (.ci/run does)"
    );
    ensure_playwright();
    let dir = tempfile::tempdir().unwrap();
    // The time of day never decides an outcome: the server's clock is the test's.
    let clock = common::TestClock::new();
    let s = Server::start_with(dir.path(), &["--clock-start", &clock.start_value()], &[]).await;
    // 600 events over the last 20 minutes from 3 services with different latencies.
    let now = clock.now_us() / 1_000_000;
    let items: Vec<Json> = (0..600)
        .map(|i: i64| {
            let svc = ["api", "checkout", "search"][(i % 3) as usize];
            let base = [20.0, 80.0, 45.0][(i % 3) as usize];
            // Every tenth event is slow, and all of those come from build-2.
            let slow = i % 10 == 0;
            json!({"time": now - 1200 + i * 2, "data": {
                "service.name": svc,
                "duration_ms": if slow { 800.0 + (i % 60) as f64 } else { base + (i % 50) as f64 },
                "http.status_code": if i % 17 == 0 { 500 } else { 200 },
                "build_id": if slow { "build-2" } else { "build-1" },
            }})
        })
        .collect();
    s.send_batch("shop", &items).await;
    assert_eq!(s.wait_count("shop", 600).await, 600);
    // 100,000 distinct user ids, in batches under the body limit.
    for chunk in 0..10 {
        let items: Vec<Json> = (chunk * 10_000..(chunk + 1) * 10_000)
            .map(|i: i64| json!({"time": now - 600 + i % 500, "data": {"user_id": format!("user-{i:06}")}}))
            .collect();
        s.send_batch("wide", &items).await;
    }
    assert_eq!(s.wait_count("wide", 100_000).await, 100_000);

    let shots = match std::env::var("EVENTIDE_UI_SCREENSHOTS") {
        Ok(d) => PathBuf::from(d),
        Err(_) => dir.path().join("screenshots"),
    };
    std::fs::create_dir_all(&shots).unwrap();
    let clock_now_ms = (clock.now_us() / 1000).to_string();
    let out = tokio::task::spawn_blocking({
        let (url, shots) = (s.url.clone(), shots.clone());
        move || {
            Command::new("node")
                .arg("ui.test.mjs")
                .current_dir(browser_dir())
                .env("EVENTIDE_URL", url)
                .env("EVENTIDE_CLOCK_NOW_MS", clock_now_ms)
                .env("EVENTIDE_QUERY_KEY", QUERY_KEY)
                .env("EVENTIDE_INGEST_KEY", INGEST_KEY)
                .env("EVENTIDE_ADMIN_KEY", ADMIN_KEY)
                .env("EVENTIDE_DATASET", "shop")
                .env("EVENTIDE_WIDE_DATASET", "wide")
                .env("EVENTIDE_SCREENSHOTS", shots)
                .output()
                .expect("run node")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ui browser test: ok"), "{stdout}");
    print!("{stdout}");
    for view in [
        "query",
        "markers",
        "error",
        "sql",
        "heatmap",
        "bubbleup",
        "wide",
        "deploys",
        "deploy-chart",
        "tail",
        "triggers",
    ] {
        let f = shots.join(format!("{view}.png"));
        assert!(
            std::fs::metadata(&f)
                .map(|m| m.len() > 10_000)
                .unwrap_or(false),
            "screenshot {}",
            f.display()
        );
    }
    println!("screenshots in {}", shots.display());
}
