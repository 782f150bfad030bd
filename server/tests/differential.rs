//! Differential query checker: the same questions asked of Eventide and of DuckDB over the same
//! seeded events, in every data state (hot tail, flushed segments, merged segments, all three
//! at once, and while events keep arriving and flushes and merges run). The checker is
//! `tests/differential/differential.py`; it starts and stops `eventide serve` processes of
//! this build itself and runs in the virtualenv of `scripts/compat-venv.sh` (DuckDB is pinned
//! there). Its last line of stdout is a JSON summary; this test wants no error and no
//! difference, and prints every failure (seed, state, the exact SQL or spec, both answers).
//! It also prints the summary's `known_upstream` list: raw-SQL cases of known DataFusion 55
//! behaviour (`tests/differential/regressions.py`, `KNOWN_UPSTREAM`) that Eventide passes
//! through. They do not fail the test while Eventide gives their known answer; the checker
//! counts a changed answer as a difference, so that case is reviewed.
//!
//! `EVENTIDE_DIFF_SEED` picks the seed (default below, printed), `EVENTIDE_DIFF_QUERIES` the
//! number of random queries over all states (default 2000), `EVENTIDE_DIFF_EVENTS` the number
//! of events (default 2500). A failure reproduces with the `--only STATE:INDEX` line it prints.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value as Json;

const DEFAULT_SEED: u64 = 20261201;
const DEFAULT_QUERIES: u64 = 2000;
const DEFAULT_EVENTS: u64 = 2500;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The virtualenv's python, created once per test binary (the script is idempotent and locks).
fn python() -> &'static PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/compat-venv.sh"))
            .output()
            .expect("run scripts/compat-venv.sh");
        assert!(
            out.status.success(),
            "scripts/compat-venv.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(stdout.lines().last().expect("python path").trim())
    })
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// The known DataFusion 55 behaviours the checker confirmed (or saw change) in each state.
fn print_known_upstream(summary: &Json) {
    let known = summary["known_upstream"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    println!(
        "differential: {} known DataFusion 55 behaviours (not failures while unchanged):",
        known.len()
    );
    for k in &known {
        println!(
            "  {}: eventide {} (known {}), reference {}; states {}\n    {}",
            k["name"].as_str().unwrap_or("?"),
            k["eventide"],
            k["known"],
            k["reference"],
            k["states"],
            k["explanation"].as_str().unwrap_or("")
        );
    }
}

#[test]
fn eventide_answers_like_duckdb_in_every_data_state() {
    let seed = env_number("EVENTIDE_DIFF_SEED", DEFAULT_SEED);
    let queries = env_number("EVENTIDE_DIFF_QUERIES", DEFAULT_QUERIES);
    let events = env_number("EVENTIDE_DIFF_EVENTS", DEFAULT_EVENTS);
    println!(
        "differential: seed {seed}, {queries} queries, {events} events \
         (EVENTIDE_DIFF_SEED, EVENTIDE_DIFF_QUERIES, EVENTIDE_DIFF_EVENTS)"
    );
    let workdir = tempfile::tempdir().expect("temporary directory");
    let out = Command::new(python())
        .arg(repo_root().join("tests/differential/differential.py"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_eventide"))
        .args(["--seed", &seed.to_string()])
        .args(["--queries", &queries.to_string()])
        .args(["--events", &events.to_string()])
        .args(["--states", "hot,flushed,merged,mixed,ingesting"])
        .arg("--workdir")
        .arg(workdir.path())
        .output()
        .expect("run tests/differential/differential.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Json = match stdout.lines().last().map(serde_json::from_str::<Json>) {
        Some(Ok(summary)) => summary,
        _ => panic!(
            "the checker printed no summary (exit {:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status.code()
        ),
    };
    print_known_upstream(&summary);
    let errors = summary["errors"].as_u64().unwrap_or(u64::MAX);
    let differences = summary["differences"].as_u64().unwrap_or(u64::MAX);
    let asked = summary["queries"].as_u64().unwrap_or(0);
    println!(
        "differential: seed {seed}: {asked} queries {}, {errors} errors, {differences} differences, \
         {} s",
        summary["per_state"], summary["elapsed_s"]
    );
    if errors != 0 || differences != 0 || !out.status.success() {
        let mut report = String::new();
        if let Some(failures) = summary["failures"].as_array() {
            for (i, f) in failures.iter().enumerate() {
                report.push_str(&format!(
                    "\n--- failure {} ---\n{}\n",
                    i + 1,
                    serde_json::to_string_pretty(f).unwrap_or_default()
                ));
            }
        }
        panic!(
            "seed {seed}: {errors} errors and {differences} differences between Eventide and \
             DuckDB (rerun with EVENTIDE_DIFF_SEED={seed}; the log below names each failing \
             query and its --only STATE:INDEX)\n{report}\nchecker log:\n{stderr}"
        );
    }
    // Every state was exercised, with at least the queries asked of it.
    for state in ["hot", "flushed", "merged", "mixed", "ingesting"] {
        let n = summary["per_state"][state].as_u64().unwrap_or(0);
        assert!(
            n >= queries / 5,
            "state {state} ran {n} queries, fewer than {}: {}",
            queries / 5,
            summary["per_state"]
        );
    }
}
