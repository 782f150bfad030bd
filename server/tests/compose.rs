//! `docker-compose.yml` stays in sync with the CLI: every `serve` flag and `EVENTIDE_*`
//! variable it uses exists (`docker compose config` is not available on every machine).

use std::process::Command;

#[test]
fn compose_file_uses_only_real_flags_and_variables() {
    let compose = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docker-compose.yml"
    ))
    .unwrap();
    let help = Command::new(env!("CARGO_BIN_EXE_eventide"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let mut checked = 0;
    for line in compose.lines() {
        let line = line.trim();
        if let Some(cmd) = line.strip_prefix("command:") {
            let args: Vec<String> =
                serde_json::from_str(cmd.trim()).expect("command is a JSON-style list");
            assert_eq!(args[0], "serve");
            for a in args.iter().filter(|a| a.starts_with("--")) {
                assert!(
                    help.contains(a.as_str()),
                    "docker-compose.yml uses {a}, which `eventide serve` lacks"
                );
                checked += 1;
            }
            for pair in args.windows(2).filter(|w| w[0] == "--role") {
                assert!(
                    ["all", "ingest", "store", "query"].contains(&pair[1].as_str()),
                    "role {}",
                    pair[1]
                );
            }
        }
        if let Some(var) = line
            .split(':')
            .next()
            .filter(|k| k.starts_with("EVENTIDE_"))
        {
            if var != "EVENTIDE_DATA_DIR" && var != "EVENTIDE_HTTP" {
                assert!(
                    help.contains(&format!("env: {var}")),
                    "docker-compose.yml sets {var}, which `eventide serve` does not read"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "the compose file was read ({checked} checks)");
}
