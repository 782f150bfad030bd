//! `eventide log verify` and `eventide log repair`: the offline tools for a damaged embedded
//! log (the server refuses to open one; see docs/OPERATIONS.md, "A damaged log").

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use eventide_eventlog::{DirLock, LogReport, repair_log, verify_log};

/// What `eventide log` does.
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Read every segment of the embedded log and report what is damaged; exit status 1 when
    /// the server would refuse to open it. Changes nothing.
    Verify {
        /// Data directory of the server (its log is `DATA/log`).
        #[arg(long, env = "EVENTIDE_DATA_DIR", default_value = "./eventide-data")]
        data_dir: PathBuf,
    },
    /// Make a damaged embedded log open again, keeping every record that is still whole at
    /// its offset: damaged records and missing segments become tombstones (their events are
    /// lost), the damaged bytes are kept in `DATA/log/damaged/`. Back the directory up first;
    /// the server must be stopped.
    Repair {
        /// Data directory of the server (its log is `DATA/log`).
        #[arg(long, env = "EVENTIDE_DATA_DIR", default_value = "./eventide-data")]
        data_dir: PathBuf,
    },
}

fn print_report(dir: &Path, report: &LogReport) {
    let records: u64 = report.segments.iter().map(|s| s.records).sum();
    let bytes: u64 = report.segments.iter().map(|s| s.bytes).sum();
    println!(
        "{}: {} segments, {records} records, {bytes} bytes{}",
        dir.display(),
        report.segments.len(),
        if report.tombstones > 0 {
            format!(" ({} tombstones of an earlier repair)", report.tombstones)
        } else {
            String::new()
        }
    );
    if let Some((path, at, dropped)) = &report.torn_tail {
        println!(
            "torn tail: {} from byte {at} ({dropped} bytes of a write a crash interrupted; \
             never acknowledged, cut at the next start)",
            path.display()
        );
    }
    for p in &report.problems {
        println!("damaged: {p}");
    }
}

/// Runs `eventide log …`.
pub fn run(command: LogCommand) -> anyhow::Result<()> {
    match command {
        LogCommand::Verify { data_dir } => {
            let dir = data_dir.join("log");
            let report = verify_log(&dir)
                .with_context(|| format!("reading the log in {}", dir.display()))?;
            print_report(&dir, &report);
            if report.problems.is_empty() {
                println!("ok: the log opens as it is");
                Ok(())
            } else {
                println!(
                    "the server will not open this log; `eventide log repair --data-dir {}` keeps \
                     every record that is still whole",
                    data_dir.display()
                );
                std::process::exit(1)
            }
        }
        LogCommand::Repair { data_dir } => {
            let dir = data_dir.join("log");
            // Never beside a running server.
            let _lock = DirLock::acquire(&dir)?;
            let before = verify_log(&dir)?;
            print_report(&dir, &before);
            if before.problems.is_empty() && before.torn_tail.is_none() {
                println!("nothing to repair");
                return Ok(());
            }
            let done = repair_log(&dir).context("repairing the log")?;
            println!(
                "repaired: {} records lost (now tombstones), {} damaged bytes kept in {}, {} \
                 bytes of torn tail cut",
                done.lost_records,
                done.damaged_bytes,
                dir.join("damaged").display(),
                done.cut_tail_bytes
            );
            let after = verify_log(&dir)?;
            anyhow::ensure!(
                after.problems.is_empty(),
                "the log is still damaged after the repair: {:?}",
                after.problems
            );
            println!("ok: the log opens");
            Ok(())
        }
    }
}
