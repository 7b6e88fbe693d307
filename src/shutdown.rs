//! The drain signal: stop accepting, count open connections, wait for them to end.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Set once, when SIGTERM or SIGINT starts the drain: the process is stopping.
static DRAINING: AtomicBool = AtomicBool::new(false);
/// Wakes whoever waits in [`drain_started`] when the drain starts.
static DRAIN: Notify = Notify::const_new();

/// Starts the drain, process-wide: idle keep-alive connections (clients of
/// frontends, web and app services, pooled server connections) close now
/// instead of at their timeouts, so the process can exit as soon as the work in
/// progress is done.
pub fn start_drain() {
    DRAINING.store(true, Ordering::SeqCst);
    DRAIN.notify_waiters();
}

/// True once the drain has started: answers in progress are their connection's last.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

/// Resolves once the drain has started (at once if it already has).
pub async fn drain_started() {
    loop {
        let notified = DRAIN.notified();
        if DRAINING.load(Ordering::SeqCst) {
            return;
        }
        notified.await;
    }
}

/// Counts open connections so shutdown can wait for them.
#[derive(Debug, Default)]
pub struct Tracker {
    open: AtomicUsize,
    idle: Notify,
}

/// One open connection; dropping it may wake the drain.
#[derive(Debug)]
pub struct Tracked(Arc<Tracker>);

impl Tracker {
    pub fn track(self: &Arc<Self>) -> Tracked {
        self.open.fetch_add(1, Ordering::SeqCst);
        Tracked(self.clone())
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits until no connection is open or `limit` passes; true if all ended.
    pub async fn drained(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.open() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drains_when_last_connection_ends() {
        let t = Arc::new(Tracker::default());
        let a = t.track();
        let b = t.track();
        assert!(!t.drained(Duration::from_millis(10)).await);
        drop(a);
        let t2 = t.clone();
        let h = tokio::spawn(async move { t2.drained(Duration::from_secs(5)).await });
        tokio::task::yield_now().await;
        drop(b);
        assert!(h.await.unwrap());
    }
}
