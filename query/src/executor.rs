//! Query execution on its own threads.
//!
//! DataFusion's operators are CPU-bound and run as tokio tasks. On the server's runtime a
//! long scan would occupy the same worker threads that accept connections, answer
//! `/healthz` and read ingest bodies, so every request would queue behind query batches.
//! Plans therefore execute on a dedicated multi-threaded runtime (threads named
//! `eventide-query`, one per core); the operating system shares the cores between it and the
//! server's runtime, and a short request never waits for a query's batches.
//!
//! The caller awaits a [`QueryTask`]: dropping it (the client went away, the query ran past
//! its time limit) aborts the execution, which drops DataFusion's streams and their spawned
//! partition tasks.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use crate::{QueryError, Result};

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// The query runtime, built on first use.
pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("eventide-query")
        .enable_all()
        .build()
        .map_err(|e| QueryError::Internal(format!("starting the query runtime: {e}")))?;
    if let Err(lost) = RUNTIME.set(rt) {
        // Another caller built one first; this one has run nothing.
        lost.shutdown_background();
    }
    RUNTIME
        .get()
        .ok_or_else(|| QueryError::Internal("query runtime missing".into()))
}

/// Starts `work` on the query runtime.
pub(crate) fn spawn<T, F>(work: F) -> Result<QueryTask<T>>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    Ok(QueryTask(runtime()?.spawn(work)))
}

/// A query running on the query runtime; aborted when dropped.
pub(crate) struct QueryTask<T>(tokio::task::JoinHandle<T>);

impl<T> Future for QueryTask<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.map_err(|e| QueryError::Internal(format!("query execution stopped: {e}"))))
    }
}

impl<T> Drop for QueryTask<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn work_runs_on_the_query_threads() {
        let name = spawn(async { std::thread::current().name().map(str::to_owned) })
            .unwrap()
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("eventide-query"));
    }

    #[tokio::test]
    async fn dropping_the_task_aborts_the_work() {
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let guard = SetOnDrop(dropped.clone());
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let task = spawn(async move {
            let _guard = guard;
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
        })
        .unwrap();
        started_rx.await.unwrap();
        drop(task);
        for _ in 0..200 {
            if dropped.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the aborted work was never dropped");
    }
}
