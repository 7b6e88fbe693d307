//! VRRPv3 (RFC 5798) over IPv4, keepalived-compatible: each `vrrp` section is a
//! virtual router whose master holds the virtual addresses.
//!
//! - `packet`    advert parsing and encoding, checksum over the pseudo-header (fuzzed)
//! - `machine`   the INIT/BACKUP/MASTER state machine, no I/O, time passed in
//! - `net`       interface lookup, raw sockets, gratuitous ARP
//! - `netlink`   adding and removing the addresses
//! - `caps`      CAP_NET_RAW and CAP_NET_ADMIN
//! - `instance`  one virtual router's task: sockets + machine + addresses + counters
//! - `view`      the routers as JSON for the stats JSON and the runtime API
//!
//! The instances run on a thread of their own, so that a slow reload or a busy
//! control thread never delays an advert (a backup waits only 3 x 100 ms).

pub mod caps;
pub mod fuzz_check;
pub mod instance;
pub mod machine;
pub mod net;
pub mod netlink;
pub mod packet;
pub mod view;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::conf::vrrp::VrrpConf;
use machine::State;
use packet::Reject;

/// Why VRRP could not start; `Display` is `FILE:LINE: message`.
#[derive(Debug, thiserror::Error)]
pub enum VrrpError {
    #[error("{file}:{line}: {msg}")]
    Start {
        file: String,
        line: usize,
        msg: String,
    },
}

/// Whether the named backend has a server able to take traffic (for `track`).
pub type BackendUp = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// One virtual router's live figures, read by /metrics and the stats JSON.
pub struct Status {
    pub name: String,
    pub vrid: u8,
    pub interface: String,
    state: AtomicU8,
    /// Priority advertised now (after tracks).
    priority: AtomicU8,
    /// The current master's address as far as this node knows (0: none seen).
    master: AtomicU32,
    pub transitions: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    dropped: [AtomicU64; Reject::ALL.len()],
    /// Accepted adverts whose interval differs from ours (a backup follows the master's).
    pub interval_mismatch: AtomicU64,
    /// Accepted adverts whose address list differs from ours.
    pub address_mismatch: AtomicU64,
}

impl Status {
    fn new(c: &VrrpConf) -> Status {
        Status {
            name: c.name.clone(),
            vrid: c.vrid,
            interface: c.interface.clone(),
            state: AtomicU8::new(State::Init.code()),
            priority: AtomicU8::new(c.priority),
            master: AtomicU32::new(0),
            transitions: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: Default::default(),
            interval_mismatch: AtomicU64::new(0),
            address_mismatch: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> State {
        State::from_code(self.state.load(Ordering::Relaxed))
    }

    pub fn priority(&self) -> u8 {
        self.priority.load(Ordering::Relaxed)
    }

    pub fn master(&self) -> Option<Ipv4Addr> {
        match self.master.load(Ordering::Relaxed) {
            0 => None,
            m => Some(Ipv4Addr::from(m)),
        }
    }

    pub fn dropped(&self, d: Reject) -> u64 {
        self.dropped[d.index()].load(Ordering::Relaxed)
    }

    fn drop_one(&self, d: Reject) {
        self.dropped[d.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// Every running instance's status, for scrapes (instances of a removed section leave).
static REGISTRY: Mutex<Vec<Arc<Status>>> = Mutex::new(Vec::new());

/// The statuses of the running virtual routers, in conf order.
pub fn statuses() -> Vec<Arc<Status>> {
    REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn publish(list: Vec<Arc<Status>>) {
    *REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = list;
}

/// What the runtime sends an instance.
pub enum Cmd {
    /// A reload: new settings (same interface and vrid) and the vrids of the
    /// other instances on its interface.
    Conf(Box<VrrpConf>, Vec<u8>),
    /// Leave: a master sends priority 0 and removes the addresses; then the ack.
    Stop(std::sync::mpsc::Sender<()>),
}

struct Running {
    conf: VrrpConf,
    cmds: mpsc::UnboundedSender<Cmd>,
    status: Arc<Status>,
}

/// The VRRP thread and its instances.
pub struct Vrrp {
    file: String,
    handle: tokio::runtime::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    running: HashMap<String, Running>,
    order: Vec<String>,
    backend_up: BackendUp,
}

/// The error for a conf whose process lacks the capabilities, or `None`.
pub fn check_caps(file: &str, confs: &[VrrpConf]) -> Option<VrrpError> {
    let first = confs.first()?;
    if caps::has_net_caps() {
        return None;
    }
    Some(VrrpError::Start {
        file: file.to_string(),
        line: first.line,
        msg: "vrrp needs CAP_NET_RAW and CAP_NET_ADMIN".into(),
    })
}

/// Vrids of the sections other than `c` on `c`'s interface.
fn neighbours(c: &VrrpConf, all: &[VrrpConf]) -> Vec<u8> {
    all.iter()
        .filter(|o| o.interface == c.interface && o.name != c.name)
        .map(|o| o.vrid)
        .collect()
}

impl Vrrp {
    /// Opens every instance's sockets (a missing interface fails the start with
    /// its line) and starts them on the VRRP thread.
    pub fn start(file: &str, confs: &[VrrpConf], backend_up: BackendUp) -> Result<Vrrp, VrrpError> {
        if let Some(e) = check_caps(file, confs) {
            return Err(e);
        }
        let start_err = |line, msg| VrrpError::Start {
            file: file.to_string(),
            line,
            msg,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                start_err(
                    confs.first().map_or(0, |c| c.line),
                    format!("vrrp: cannot start its runtime: {e}"),
                )
            })?;
        let handle = rt.handle().clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("lb-vrrp".into())
            .spawn(move || {
                let _ = rt.block_on(stop_rx);
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(|e| start_err(0, format!("vrrp: cannot start its thread: {e}")))?;
        let mut v = Vrrp {
            file: file.to_string(),
            handle,
            thread: Some(thread),
            stop: Some(stop_tx),
            running: HashMap::new(),
            order: Vec::new(),
            backend_up,
        };
        for c in confs {
            if let Err(e) = v.spawn(c, neighbours(c, confs), None) {
                v.stop();
                return Err(e);
            }
        }
        v.publish();
        Ok(v)
    }

    fn spawn(
        &mut self,
        c: &VrrpConf,
        others: Vec<u8>,
        status: Option<Arc<Status>>,
    ) -> Result<(), VrrpError> {
        let status = status.unwrap_or_else(|| Arc::new(Status::new(c)));
        let inst = instance::Instance::open(c, others, status.clone(), self.backend_up.clone())
            .map_err(|msg| VrrpError::Start {
                file: self.file.clone(),
                line: c.line,
                msg: format!("vrrp {}: {msg}", c.name),
            })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let _guard = self.handle.enter();
        self.handle.spawn(inst.run(rx));
        self.running.insert(
            c.name.clone(),
            Running {
                conf: c.clone(),
                cmds: tx,
                status,
            },
        );
        self.order.push(c.name.clone());
        Ok(())
    }

    fn publish(&self) {
        publish(
            self.order
                .iter()
                .filter_map(|n| self.running.get(n).map(|r| r.status.clone()))
                .collect(),
        );
    }

    /// Applies a reloaded conf: a section whose interface and vrid are unchanged
    /// takes its new settings without a transition; one that moved restarts;
    /// removed sections leave (priority 0 from a master); new ones start.
    /// Errors (a new section's interface missing) are logged; the rest goes on.
    pub fn reload(&mut self, confs: &[VrrpConf]) {
        let gone: Vec<String> = self
            .order
            .iter()
            .filter(|n| {
                let r = &self.running[n.as_str()];
                !confs.iter().any(|c| {
                    &c.name == *n && c.interface == r.conf.interface && c.vrid == r.conf.vrid
                })
            })
            .cloned()
            .collect();
        for n in &gone {
            if let Some(r) = self.running.remove(n) {
                leave(&[r]);
            }
        }
        self.order.retain(|n| self.running.contains_key(n));
        let mut order = Vec::new();
        for c in confs {
            let others = neighbours(c, confs);
            if let Some(r) = self.running.get_mut(&c.name) {
                if r.conf != *c {
                    let _ = r.cmds.send(Cmd::Conf(Box::new(c.clone()), others));
                    r.conf = c.clone();
                }
            } else if let Err(e) = self.spawn(c, others, None) {
                tracing::error!("{e}");
                continue;
            }
            order.push(c.name.clone());
        }
        self.order = order;
        self.publish();
    }

    /// SIGTERM: every master sends priority 0 and removes its addresses, then
    /// the thread ends. Bounded: an instance that does not answer is left behind.
    pub fn stop(&mut self) {
        let all: Vec<Running> = self.running.drain().map(|(_, r)| r).collect();
        leave(&all);
        self.order.clear();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Vrrp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops instances and waits (bounded) until each has sent its last advert.
fn leave(list: &[Running]) {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut n = 0;
    for r in list {
        if r.cmds.send(Cmd::Stop(tx.clone())).is_ok() {
            n += 1;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    for _ in 0..n {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if rx.recv_timeout(left).is_err() {
            tracing::warn!("vrrp: an instance did not stop in time");
            break;
        }
    }
}
