//! The drain signal: stop accepting, count open connections, wait for them to end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

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
