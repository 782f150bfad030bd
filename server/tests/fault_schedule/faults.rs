//! The faults a schedule injects, and how: signals to the server or the broker, fault points
//! read by the server from a file (`EVENTIDE_FAILPOINTS_FILE`, server/src/faultpoints.rs), and
//! a real full disk (a tmpfs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;

/// One fault of a schedule.
#[derive(Debug, Clone)]
pub enum Fault {
    /// `kill -9`, then a restart on the same data directory.
    Kill9,
    /// SIGSTOP for this long, then SIGCONT.
    Pause(Duration),
    /// These fault points for this long (the `fail` crate's syntax).
    Points(&'static str, Duration),
    /// Every write of the embedded log and its rollback fail once: the log refuses writes
    /// until the server restarts (503), then a kill -9 and a restart.
    FailedLog,
    /// The data directory's file system is full for this long.
    DiskFull(Duration),
    /// The Kafka broker is stopped (SIGSTOP) for this long.
    BrokerPause(Duration),
    /// The Kafka broker is shut down and started again.
    BrokerRestart,
}

impl Fault {
    /// A random fault for a server on the embedded log (`disk`: a tmpfs is there to fill) or
    /// on Kafka.
    pub fn draw(rng: &mut StdRng, kafka: bool, disk: bool) -> Fault {
        let ms =
            |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_millis(rng.random_range(lo..hi));
        loop {
            let f = match rng.random_range(0..10) {
                0 | 1 => Fault::Kill9,
                2 => Fault::Pause(ms(rng, 200, 2500)),
                3 if !kafka => Fault::Points("eventlog-fsync=return(eio)", ms(rng, 100, 1500)),
                4 if !kafka => Fault::Points("eventlog-write=return(enospc)", ms(rng, 100, 1000)),
                4 | 5 => Fault::Points("store-segment-fsync=return", ms(rng, 300, 2500)),
                6 => Fault::Points("durable-replace-fsync=return", ms(rng, 300, 2500)),
                7 if !kafka => Fault::FailedLog,
                8 if disk => Fault::DiskFull(ms(rng, 300, 2000)),
                3 | 7 | 9 if kafka => {
                    if rng.random_ratio(1, 4) {
                        Fault::BrokerRestart
                    } else {
                        Fault::BrokerPause(ms(rng, 500, 4000))
                    }
                }
                _ => continue,
            };
            return f;
        }
    }

    pub fn name(&self) -> String {
        match self {
            Fault::Kill9 => "kill-9".into(),
            Fault::Pause(d) => format!("sigstop-{}ms", d.as_millis()),
            Fault::Points(p, d) => format!(
                "{}-{}ms",
                p.split('=').next().unwrap_or("point"),
                d.as_millis()
            ),
            Fault::FailedLog => "failed-log+kill-9".into(),
            Fault::DiskFull(d) => format!("disk-full-{}ms", d.as_millis()),
            Fault::BrokerPause(d) => format!("broker-sigstop-{}ms", d.as_millis()),
            Fault::BrokerRestart => "broker-restart".into(),
        }
    }
}

/// The fault point file a server reads, and the confirmation it writes back.
pub struct Points {
    pub file: PathBuf,
}

impl Points {
    pub fn new(dir: &Path) -> Self {
        let file = dir.join("failpoints");
        std::fs::write(&file, "").expect("write the fault point file");
        Self { file }
    }

    /// Sets the fault points and waits (at most 10 s) until the running server `pid` has
    /// applied them; returns whether it did (a stopped or dead server does not).
    pub fn set(&self, points: &str, pid: u32) -> bool {
        std::fs::write(&self.file, points).expect("write the fault point file");
        let mut applied = self.file.clone().into_os_string();
        applied.push(".applied");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::fs::read_to_string(&applied).is_ok_and(|a| a == points) {
                return true;
            }
            if !alive(pid) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

/// Whether process `pid` still exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Sends `signal` (`STOP`, `CONT`, …) to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// The pid of the broker `scripts/kafka.sh` started.
pub fn broker_pid() -> Option<u32> {
    let home = std::env::var("HOME").ok()?;
    let port = std::env::var("KAFKA_PORT").unwrap_or_else(|_| "9092".into());
    let default_home = format!("{home}/.cache/eventide/kafka");
    let kafka_home = std::env::var("KAFKA_HOME").unwrap_or(default_home);
    let data = std::env::var("KAFKA_DATA").unwrap_or(format!("{kafka_home}/data-{port}"));
    std::fs::read_to_string(format!("{data}/kafka.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Runs `scripts/kafka.sh CMD`.
pub fn kafka(cmd: &str) {
    crate::common::kafka_script(cmd);
}
