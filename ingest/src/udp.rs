//! The UDP receiver: datagrams of JSON lines (`{"dataset": "...", "data": {...}, "time"?: …,
//! "samplerate"?: N}`, one object per line) into the log.
//!
//! # How
//! A dedicated thread reads the socket: a large receive buffer (`SO_RCVBUF`, 32 MB asked; the
//! kernel may cap it at `net.core.rmem_max`) and, on Linux, `recvmmsg` with up to 64
//! datagrams per system call. Datagrams are gathered into chunks of about 1 MB or 20 ms,
//! whichever comes first, and handed to the async side through a bounded queue. Each chunk is
//! parsed and admitted on a blocking thread and appended to the log like an HTTP batch; a few
//! chunks are in flight at once so parsing overlaps the log's fsync.
//!
//! # Loss
//! UDP has no reply, so nothing is acknowledged and a drop is counted, never fatal:
//! - a line that is not a JSON object with a valid `dataset` or whose event breaks the type
//!   rules or limits is *rejected* (counted, and logged at most every 10 s);
//! - when the log stays saturated, an append is retried for up to 5 s, then its lines are
//!   *dropped*; when the chunk queue is full, the datagrams of a chunk are *dropped*;
//! - what the kernel drops before we read it (receive buffer overrun) is visible in
//!   `/proc/net/snmp` (`RcvbufErrors`), not here; nor is what is still queued when the
//!   process stops.
//!
//! The counters are in [`UdpStats`] and on `GET /metrics`.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventide_eventlog::LogError;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::IngestState;
use crate::decode::udp_lines;

/// Receive buffer asked of the kernel.
const RECV_BUFFER_BYTES: usize = 32 * 1024 * 1024;
/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;
/// Datagrams per `recvmmsg` call.
const DATAGRAMS_PER_CALL: usize = 64;
/// A chunk is handed on at this size…
const CHUNK_BYTES: usize = 1024 * 1024;
/// …or when its first datagram is this old.
const CHUNK_AGE: Duration = Duration::from_millis(20);
/// Chunks queued between the socket thread and the appenders.
const QUEUE_CHUNKS: usize = 64;
/// Chunks parsed and appended at once.
const IN_FLIGHT_CHUNKS: usize = 4;
/// How long a chunk waits for a saturated log before its lines are dropped.
const SATURATED_RETRY_FOR: Duration = Duration::from_secs(5);

/// Counters of the UDP receiver.
#[derive(Debug, Default)]
pub struct UdpStats {
    pub datagrams: Counter,
    pub bytes: Counter,
    /// Lines stored as events.
    pub accepted: Counter,
    /// Lines refused: malformed, no dataset, or breaking the type rules or limits.
    pub rejected: Counter,
    /// Lines lost to a log that stayed saturated or failed.
    pub dropped_lines: Counter,
    /// Datagrams lost to a full chunk queue.
    pub dropped_datagrams: Counter,
}

impl UdpStats {
    /// Registers the counters (`eventide_udp_*_total`).
    pub fn register(&self, registry: &mut Registry) {
        for (name, help, c) in [
            (
                "eventide_udp_datagrams",
                "UDP datagrams read",
                &self.datagrams,
            ),
            ("eventide_udp_bytes", "UDP bytes read", &self.bytes),
            (
                "eventide_udp_lines_accepted",
                "UDP lines stored as events",
                &self.accepted,
            ),
            (
                "eventide_udp_lines_rejected",
                "UDP lines refused (malformed, no dataset, type rules, limits)",
                &self.rejected,
            ),
            (
                "eventide_udp_lines_dropped",
                "UDP lines lost to a saturated or failing log",
                &self.dropped_lines,
            ),
            (
                "eventide_udp_datagrams_dropped",
                "UDP datagrams lost to a full chunk queue",
                &self.dropped_datagrams,
            ),
        ] {
            registry.register(name, help, c.clone());
        }
    }
}

/// A running UDP receiver. Dropping it stops the socket thread.
#[derive(Debug)]
pub struct UdpReceiver {
    local_addr: SocketAddr,
    stats: Arc<UdpStats>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpReceiver {
    /// Binds `addr` and starts receiving into `state`'s log. Must be called inside a tokio
    /// runtime (the appenders run on it).
    pub fn start(addr: SocketAddr, state: IngestState) -> std::io::Result<Self> {
        let socket = bind(addr)?;
        let local_addr = socket.local_addr()?;
        let stats = Arc::new(UdpStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Chunk>(QUEUE_CHUNKS);
        tokio::spawn(append_loop(rx, state, stats.clone()));
        let thread = {
            let stats = stats.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("eventide-udp".into())
                .spawn(move || read_loop(&socket, &tx, &stats, &stop))?
        };
        Ok(Self {
            local_addr,
            stats,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> Arc<UdpStats> {
        self.stats.clone()
    }
}

impl Drop for UdpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER_BYTES) {
        tracing::warn!(error = %e, "could not enlarge the UDP receive buffer");
    }
    let got = socket.recv_buffer_size().unwrap_or(0);
    if got < RECV_BUFFER_BYTES {
        tracing::info!(
            asked = RECV_BUFFER_BYTES,
            got,
            "UDP receive buffer capped by the kernel (raise net.core.rmem_max for bursts)"
        );
    }
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    // Lets the thread notice `stop` and flush an aging chunk while the socket is idle.
    socket.set_read_timeout(Some(CHUNK_AGE))?;
    Ok(socket)
}

/// Datagrams gathered for one append.
struct Chunk {
    bytes: Bytes,
    datagrams: u64,
}

struct Gather {
    buf: Vec<u8>,
    datagrams: u64,
    since: Option<Instant>,
}

impl Gather {
    fn push(&mut self, datagram: &[u8]) {
        if self.since.is_none() {
            self.since = Some(Instant::now());
        }
        self.buf.extend_from_slice(datagram);
        if datagram.last() != Some(&b'\n') {
            self.buf.push(b'\n');
        }
        self.datagrams += 1;
    }

    fn due(&self) -> bool {
        self.buf.len() >= CHUNK_BYTES || self.since.is_some_and(|t| t.elapsed() >= CHUNK_AGE)
    }

    fn hand_on(&mut self, tx: &mpsc::Sender<Chunk>, stats: &UdpStats) {
        if self.datagrams == 0 {
            return;
        }
        let chunk = Chunk {
            bytes: Bytes::from(std::mem::replace(
                &mut self.buf,
                Vec::with_capacity(CHUNK_BYTES + MAX_DATAGRAM),
            )),
            datagrams: std::mem::take(&mut self.datagrams),
        };
        self.since = None;
        if let Err(e) = tx.try_send(chunk) {
            let lost = match e {
                mpsc::error::TrySendError::Full(c) | mpsc::error::TrySendError::Closed(c) => {
                    c.datagrams
                }
            };
            stats.dropped_datagrams.inc_by(lost);
            warn_every_10s(&LAST_QUEUE_WARN, || {
                tracing::warn!(
                    dropped_datagrams = stats.dropped_datagrams.get(),
                    "UDP chunk queue full: datagrams dropped"
                );
            });
        }
    }
}

static LAST_QUEUE_WARN: AtomicU64 = AtomicU64::new(0);
static LAST_REJECT_WARN: AtomicU64 = AtomicU64::new(0);
static LAST_DROP_WARN: AtomicU64 = AtomicU64::new(0);

/// Runs `f` if it has not run in the last 10 s (per `last`).
fn warn_every_10s(last: &AtomicU64, f: impl FnOnce()) {
    let now = eventide_model::time::now_micros() as u64;
    let prev = last.load(Ordering::Relaxed);
    if now.saturating_sub(prev) >= 10_000_000
        && last
            .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        f();
    }
}

fn read_loop(socket: &UdpSocket, tx: &mpsc::Sender<Chunk>, stats: &UdpStats, stop: &AtomicBool) {
    let mut gather = Gather {
        buf: Vec::with_capacity(CHUNK_BYTES + MAX_DATAGRAM),
        datagrams: 0,
        since: None,
    };
    let mut reader = Reader::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.recv(socket, |d| {
            stats.datagrams.inc_by(1);
            stats.bytes.inc_by(d.len() as u64);
            gather.push(d);
        }) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                tracing::error!(error = %e, "UDP receive failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if gather.due() {
            gather.hand_on(tx, stats);
        }
    }
    gather.hand_on(tx, stats);
}

/// Reads one or more datagrams per call.
struct Reader {
    bufs: Vec<Vec<u8>>,
}

impl Reader {
    fn new() -> Self {
        let n = if cfg!(target_os = "linux") {
            DATAGRAMS_PER_CALL
        } else {
            1
        };
        Self {
            bufs: (0..n).map(|_| vec![0u8; MAX_DATAGRAM]).collect(),
        }
    }

    #[cfg(target_os = "linux")]
    fn recv(&mut self, socket: &UdpSocket, mut each: impl FnMut(&[u8])) -> std::io::Result<()> {
        use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;
        let lens: Vec<usize> = {
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(self.bufs.len(), None);
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
                .bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            // MSG_WAITFORONE: block (up to the socket's read timeout) for the first datagram
            // only, then take whatever else is already queued.
            recvmmsg(
                socket.as_raw_fd(),
                &mut headers,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            )
            .map_err(std::io::Error::from)?
            .map(|m| m.bytes)
            .collect()
        };
        for (buf, len) in self.bufs.iter().zip(lens) {
            each(&buf[..len]);
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn recv(&mut self, socket: &UdpSocket, mut each: impl FnMut(&[u8])) -> std::io::Result<()> {
        let (len, _) = socket.recv_from(&mut self.bufs[0])?;
        each(&self.bufs[0][..len]);
        Ok(())
    }
}

async fn append_loop(mut rx: mpsc::Receiver<Chunk>, state: IngestState, stats: Arc<UdpStats>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_CHUNKS));
    while let Some(chunk) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let state = state.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            append_chunk(&state, chunk.bytes, &stats).await;
            drop(permit);
        });
    }
}

async fn append_chunk(state: &IngestState, bytes: Bytes, stats: &UdpStats) {
    let receive_us = state.clock.now_micros();
    let limits = state.limits.clone();
    let this = state.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        let (groups, bad) = udp_lines(&bytes, receive_us, &limits);
        let mut out = Vec::new();
        let mut errors = bad;
        for (name, group) in groups {
            let Ok(dataset) = eventide_model::DatasetName::new(&name) else {
                continue; // udp_lines validated the name
            };
            let lines = group.items.len();
            match this.prepare(&dataset, group.items) {
                Ok(p) => {
                    let accepted = p.outcomes.iter().filter(|o| o.is_none()).count() as u64;
                    errors.extend(p.outcomes.into_iter().flatten());
                    out.push((dataset, accepted, p.records));
                }
                Err(e) => errors.extend(std::iter::repeat_n(e.to_string(), lines)),
            }
        }
        (out, errors)
    })
    .await;
    let Ok((groups, errors)) = prepared else {
        tracing::error!("UDP decoder task failed");
        return;
    };
    if !errors.is_empty() {
        stats.rejected.inc_by(errors.len() as u64);
        warn_every_10s(&LAST_REJECT_WARN, || {
            tracing::warn!(
                rejected = stats.rejected.get(),
                example = %errors[0],
                "UDP lines rejected"
            );
        });
    }
    for (dataset, accepted, records) in groups {
        if records.is_empty() {
            continue;
        }
        match append_retrying(state, dataset.as_str(), records).await {
            Ok(()) => {
                stats.accepted.inc_by(accepted);
            }
            Err(e) => {
                stats.dropped_lines.inc_by(accepted);
                warn_every_10s(&LAST_DROP_WARN, || {
                    tracing::warn!(
                        error = %e,
                        dropped = stats.dropped_lines.get(),
                        "UDP lines dropped: the log did not take them"
                    );
                });
            }
        }
    }
}

async fn append_retrying(
    state: &IngestState,
    dataset: &str,
    records: Vec<Bytes>,
) -> Result<(), LogError> {
    let deadline = Instant::now() + SATURATED_RETRY_FOR;
    loop {
        let batch = records
            .iter()
            .map(|payload| eventide_eventlog::NewRecord::new(dataset, payload.clone()))
            .collect();
        match state.log.append_all(batch).await {
            Ok(_) => return Ok(()),
            Err(LogError::Saturated(_) | LogError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
