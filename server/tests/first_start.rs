//! A first start makes what it creates durable before it answers: the generated keys file is
//! written to a temporary file, fsync'd, renamed into place and its directory fsync'd, and
//! each directory it creates (the data directory, `catalog/`, `log/`, `segments/`) is
//! followed by an fsync of its parent, so a power cut right after the first `/healthz` cannot
//! leave a server whose keys or log directory vanish. Watched with `strace` (installed by
//! `.ci/run`); `EVENTIDE_SKIP_STRACE=1` skips the test explicitly.
//! `EVENTIDE_TEST_BINARY` runs another build instead (to show what an older one did).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One system call of interest, with the path it acted on.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Fsync(String),
    Rename(String, String),
    Mkdir(String),
}

/// The first quoted string of `s` from `from` on, and where it ends.
fn quoted(s: &str, from: usize) -> Option<(String, usize)> {
    let start = s[from..].find('"')? + from + 1;
    let end = s[start..].find('"')? + start;
    Some((s[start..end].to_owned(), end + 1))
}

/// Reads strace's `-f` output (unfinished and resumed calls joined) into the calls above,
/// following file descriptors to their paths.
fn parse(trace: &str) -> Vec<Call> {
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut fds: HashMap<i64, String> = HashMap::new();
    let mut calls = Vec::new();
    for line in trace.lines() {
        let Some((tid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let full = if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(tid.to_owned(), head.to_owned());
            continue;
        } else if rest.starts_with("<...") {
            let tail = rest.split_once("resumed>").map_or("", |(_, t)| t);
            format!("{}{tail}", pending.remove(tid).unwrap_or_default())
        } else {
            rest.to_owned()
        };
        let ret: Option<i64> = full
            .rsplit_once(" = ")
            .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok());
        let name = full.split('(').next().unwrap_or_default();
        match name {
            "openat" | "open" => {
                if let (Some((path, _)), Some(fd)) = (quoted(&full, 0), ret)
                    && fd >= 0
                {
                    fds.insert(fd, path);
                }
            }
            "close" => {
                if let Some(fd) = full
                    .strip_prefix("close(")
                    .and_then(|r| r.split(')').next()?.parse().ok())
                {
                    fds.remove(&fd);
                }
            }
            "fsync" | "fdatasync" => {
                let fd = full.split(['(', ')']).nth(1).and_then(|f| f.parse().ok());
                if let (Some(fd), Some(0)) = (fd, ret)
                    && let Some(p) = fds.get(&fd)
                {
                    calls.push(Call::Fsync(p.clone()));
                }
            }
            "rename" | "renameat" | "renameat2" if ret == Some(0) => {
                if let Some((from, end)) = quoted(&full, 0)
                    && let Some((to, _)) = quoted(&full, end)
                {
                    calls.push(Call::Rename(from, to));
                }
            }
            "mkdir" | "mkdirat" if ret == Some(0) => {
                if let Some((p, _)) = quoted(&full, 0) {
                    calls.push(Call::Mkdir(p));
                }
            }
            _ => {}
        }
    }
    calls
}

fn position(calls: &[Call], from: usize, want: impl Fn(&Call) -> bool) -> Option<usize> {
    calls[from..].iter().position(want).map(|i| i + from)
}

#[test]
fn a_first_start_syncs_its_keys_file_and_every_directory_it_creates() {
    if std::env::var("EVENTIDE_SKIP_STRACE").as_deref() == Ok("1") {
        eprintln!("EVENTIDE_SKIP_STRACE=1: skipped");
        return;
    }
    assert!(
        Command::new("strace")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
        "strace is needed (apt-get install strace; .ci/run installs it), or EVENTIDE_SKIP_STRACE=1"
    );
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let trace_file = root.path().join("trace.txt");
    let binary = std::env::var("EVENTIDE_TEST_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_eventide").to_owned());
    let mut child = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=openat,open,close,fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat",
            "-o",
        ])
        .arg(&trace_file)
        .arg(&binary)
        .args(["serve", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("EVENTIDE_KEYS")
        .env("EVENTIDE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start strace");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("eventide listening on ") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the server started under strace");
    // The server is strace's child: stop it cleanly, and strace ends with it.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
        .unwrap_or_default();
    for pid in children.split_whitespace() {
        let _ = Command::new("kill").args(["-TERM", pid]).status();
    }
    let _ = child.wait();
    let calls = parse(&std::fs::read_to_string(&trace_file).expect("the trace"));
    let d = data.display().to_string();
    let parent = root.path().display().to_string();
    let keys = format!("{d}/keys.json");
    let tmp = format!("{keys}.tmp");

    let mut problems = Vec::new();
    // The keys file: temporary file fsync'd, renamed, its directory fsync'd.
    match position(&calls, 0, |c| *c == Call::Rename(tmp.clone(), keys.clone())) {
        None => problems.push(format!(
            "keys.json was not written by renaming {tmp} into place"
        )),
        Some(r) => {
            if !calls[..r].contains(&Call::Fsync(tmp.clone())) {
                problems.push("keys.json.tmp was renamed into place without an fsync".to_owned());
            }
            if position(&calls, r, |c| *c == Call::Fsync(d.clone())).is_none() {
                problems.push(
                    "the data directory was not fsync'd after keys.json was renamed into it"
                        .to_owned(),
                );
            }
        }
    }
    // Every directory made: its parent fsync'd afterwards.
    for (dir, parent) in [
        (d.clone(), parent.clone()),
        (format!("{d}/catalog"), d.clone()),
        (format!("{d}/log"), d.clone()),
        (format!("{d}/segments"), d.clone()),
    ] {
        match position(&calls, 0, |c| *c == Call::Mkdir(dir.clone())) {
            None => problems.push(format!("{dir} was not created")),
            Some(m) => {
                if position(&calls, m, |c| *c == Call::Fsync(parent.clone())).is_none() {
                    problems.push(format!(
                        "{parent} was not fsync'd after {dir} was created in it"
                    ));
                }
            }
        }
    }
    eprintln!("{} calls traced; {} problems", calls.len(), problems.len());
    assert!(
        problems.is_empty(),
        "{binary}:\n  {}",
        problems.join("\n  ")
    );
    assert!(Path::new(&keys).exists());
}
