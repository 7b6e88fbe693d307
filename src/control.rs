//! What a service (the admin listener) may ask of the running process: the
//! live snapshot, the reload counters, a reload, the stop signal. The runtime
//! fills it in; services sit below the runtime and see only this.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::watch;

use crate::snapshot::Live;

type Reload = Box<dyn Fn() -> Result<usize, String> + Send + Sync>;

pub struct Control {
    pub snapshot: Arc<Live>,
    /// `true` once the process drains (SIGTERM): listeners stop accepting.
    pub stop: watch::Sender<bool>,
    pub reloads: Arc<AtomicU64>,
    pub reload_failures: Arc<AtomicU64>,
    reload: Reload,
}

impl Control {
    pub fn new(
        snapshot: Arc<Live>,
        stop: watch::Sender<bool>,
        (reloads, reload_failures): (Arc<AtomicU64>, Arc<AtomicU64>),
        reload: impl Fn() -> Result<usize, String> + Send + Sync + 'static,
    ) -> Control {
        Control {
            snapshot,
            stop,
            reloads,
            reload_failures,
            reload: Box::new(reload),
        }
    }

    /// Re-reads the conf file, as SIGHUP does: the number of changes, or why
    /// the running configuration was kept.
    pub fn reload(&self) -> Result<usize, String> {
        (self.reload)()
    }
}
