//! MONITOR: every command the server runs, as a line to each monitoring
//! connection (through its subscriber queue, bounded like pub/sub's).
//! Costs one atomic load per command while nobody monitors.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::frame::Argv;
use super::pubsub::Handle;

#[derive(Debug, Default)]
pub struct Monitors {
    list: Mutex<Vec<Arc<Handle>>>,
    n: AtomicUsize,
}

impl Monitors {
    fn list(&self) -> MutexGuard<'_, Vec<Arc<Handle>>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, h: Arc<Handle>) {
        let mut l = self.list();
        if !l.iter().any(|x| x.id == h.id) {
            l.push(h);
        }
        self.n.store(l.len(), Ordering::Relaxed);
    }

    pub fn remove(&self, id: u64) {
        let mut l = self.list();
        l.retain(|h| h.id != id);
        self.n.store(l.len(), Ordering::Relaxed);
    }

    pub fn active(&self) -> bool {
        self.n.load(Ordering::Relaxed) > 0
    }

    /// Sends one command's line to every monitor.
    pub fn feed(&self, db: usize, peer: SocketAddr, a: Argv) {
        let l = line(db, peer, a);
        for h in self.list().iter() {
            h.send(l.clone());
        }
    }
}

/// `+<secs>.<usecs> [<db> <addr>] "arg" ...`, arguments quoted as Redis's sdscatrepr.
fn line(db: usize, peer: SocketAddr, a: Argv) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut s = format!(
        "+{}.{:06} [{db} {peer}]",
        now.as_secs(),
        now.subsec_micros()
    );
    for arg in a.iter() {
        s.push_str(" \"");
        for &b in arg {
            match b {
                b'\\' => s.push_str("\\\\"),
                b'"' => s.push_str("\\\""),
                b'\n' => s.push_str("\\n"),
                b'\r' => s.push_str("\\r"),
                b'\t' => s.push_str("\\t"),
                7 => s.push_str("\\a"),
                8 => s.push_str("\\b"),
                0x20..=0x7e => s.push(b as char),
                _ => s.push_str(&format!("\\x{b:02x}")),
            }
        }
        s.push('"');
    }
    s.push_str("\r\n");
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_quote_like_redis() {
        let buf = b"SETk\"\n\x01";
        let r = [0..3, 3..4, 4..7];
        let l = line(2, "127.0.0.1:5".parse().unwrap(), Argv { buf, ranges: &r });
        let l = String::from_utf8(l).unwrap();
        assert!(l.starts_with('+'));
        assert!(
            l.ends_with(" [2 127.0.0.1:5] \"SET\" \"k\" \"\\\"\\n\\x01\"\r\n"),
            "{l}"
        );
    }
}
