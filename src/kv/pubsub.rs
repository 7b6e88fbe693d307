//! Pub/sub: the channel and pattern registry, and the per-connection subscriber.
//!
//! PUBLISH encodes each message once and hands the bytes to every subscriber's
//! bounded queue; the subscriber's connection task writes them out. A subscriber
//! whose queue is full is too slow (Redis's pubsub output buffer limit): it is
//! flagged and its connection closed, so a stuck client never grows our memory.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::db::glob;
use super::frame::reply;

/// Messages queued per subscriber before it counts as too slow.
pub const QUEUE: usize = 16 << 10;

/// One subscribed connection, as the registry sees it.
#[derive(Debug)]
pub struct Handle {
    pub(super) id: u64,
    tx: mpsc::Sender<Vec<u8>>,
    /// Its queue overflowed: the connection must close.
    pub overflow: AtomicBool,
}

impl Handle {
    pub(super) fn send(&self, msg: Vec<u8>) {
        if self.tx.try_send(msg).is_err() {
            self.overflow.store(true, Ordering::Relaxed);
        }
    }
}

/// Who listens to what.
#[derive(Debug, Default)]
pub struct Registry {
    channels: HashMap<Vec<u8>, HashMap<u64, Arc<Handle>>>,
    patterns: HashMap<Vec<u8>, HashMap<u64, Arc<Handle>>>,
}

impl Registry {
    /// Delivers `msg` on `channel`; returns how many receivers got it.
    pub fn publish(&self, channel: &[u8], msg: &[u8]) -> usize {
        let mut n = 0;
        if let Some(subs) = self.channels.get(channel) {
            let mut frame = Vec::with_capacity(channel.len() + msg.len() + 32);
            reply::array(&mut frame, 3);
            reply::bulk(&mut frame, b"message");
            reply::bulk(&mut frame, channel);
            reply::bulk(&mut frame, msg);
            for h in subs.values() {
                h.send(frame.clone());
                n += 1;
            }
        }
        for (pat, subs) in &self.patterns {
            if !glob(pat, channel) {
                continue;
            }
            let mut frame = Vec::with_capacity(pat.len() + channel.len() + msg.len() + 40);
            reply::array(&mut frame, 4);
            reply::bulk(&mut frame, b"pmessage");
            reply::bulk(&mut frame, pat);
            reply::bulk(&mut frame, channel);
            reply::bulk(&mut frame, msg);
            for h in subs.values() {
                h.send(frame.clone());
                n += 1;
            }
        }
        n
    }

    /// Channels with at least one subscriber, matching `pattern` if given.
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<&[u8]> {
        self.channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob(p, c)))
            .map(|c| c.as_slice())
            .collect()
    }

    pub fn numsub(&self, channel: &[u8]) -> usize {
        self.channels.get(channel).map_or(0, |s| s.len())
    }

    pub fn numpat(&self) -> usize {
        self.patterns.len()
    }
}

/// A connection's subscriptions.
#[derive(Debug)]
pub struct Subscriber {
    pub handle: Arc<Handle>,
    pub rx: mpsc::Receiver<Vec<u8>>,
    pub channels: HashSet<Vec<u8>>,
    pub patterns: HashSet<Vec<u8>>,
}

impl Subscriber {
    pub fn new(id: u64) -> Subscriber {
        let (tx, rx) = mpsc::channel(QUEUE);
        Subscriber {
            handle: Arc::new(Handle {
                id,
                tx,
                overflow: AtomicBool::new(false),
            }),
            rx,
            channels: HashSet::new(),
            patterns: HashSet::new(),
        }
    }

    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// SUBSCRIBE / PSUBSCRIBE one name; the confirmation goes to `out`.
    pub fn subscribe(&mut self, reg: &mut Registry, name: &[u8], pattern: bool, out: &mut Vec<u8>) {
        let (mine, map, kind): (_, _, &[u8]) = if pattern {
            (&mut self.patterns, &mut reg.patterns, b"psubscribe")
        } else {
            (&mut self.channels, &mut reg.channels, b"subscribe")
        };
        if mine.insert(name.to_vec()) {
            map.entry(name.to_vec())
                .or_default()
                .insert(self.handle.id, self.handle.clone());
        }
        reply::array(out, 3);
        reply::bulk(out, kind);
        reply::bulk(out, name);
        reply::int(out, self.count() as i64);
    }

    /// UNSUBSCRIBE / PUNSUBSCRIBE the given names, or all when none are given.
    pub fn unsubscribe(
        &mut self,
        reg: &mut Registry,
        names: &[&[u8]],
        pattern: bool,
        out: &mut Vec<u8>,
    ) {
        let kind: &[u8] = if pattern {
            b"punsubscribe"
        } else {
            b"unsubscribe"
        };
        let all: Vec<Vec<u8>>;
        let names: Vec<&[u8]> = if names.is_empty() {
            all = if pattern {
                self.patterns.iter().cloned().collect()
            } else {
                self.channels.iter().cloned().collect()
            };
            all.iter().map(|v| v.as_slice()).collect()
        } else {
            names.to_vec()
        };
        if names.is_empty() {
            reply::array(out, 3);
            reply::bulk(out, kind);
            reply::nil(out);
            reply::int(out, self.count() as i64);
            return;
        }
        for name in names {
            let (mine, map) = if pattern {
                (&mut self.patterns, &mut reg.patterns)
            } else {
                (&mut self.channels, &mut reg.channels)
            };
            if mine.remove(name) {
                if let Some(subs) = map.get_mut(name) {
                    subs.remove(&self.handle.id);
                    if subs.is_empty() {
                        map.remove(name);
                    }
                }
            }
            reply::array(out, 3);
            reply::bulk(out, kind);
            reply::bulk(out, name);
            reply::int(out, self.count() as i64);
        }
    }

    /// Leaves every channel and pattern (the connection closed).
    pub fn leave(&mut self, reg: &mut Registry) {
        let mut sink = Vec::new();
        self.unsubscribe(reg, &[], false, &mut sink);
        self.unsubscribe(reg, &[], true, &mut sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_reaches_channels_and_patterns() {
        let mut reg = Registry::default();
        let mut a = Subscriber::new(1);
        let mut b = Subscriber::new(2);
        let mut out = Vec::new();
        a.subscribe(&mut reg, b"news", false, &mut out);
        assert_eq!(out, b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
        b.subscribe(&mut reg, b"n*", true, &mut out);
        assert_eq!(reg.publish(b"news", b"hi"), 2);
        assert_eq!(
            a.rx.try_recv().unwrap(),
            b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        assert_eq!(
            b.rx.try_recv().unwrap(),
            b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        assert_eq!(reg.publish(b"other", b"x"), 0);
        out.clear();
        a.unsubscribe(&mut reg, &[], false, &mut out);
        assert_eq!(out, b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:0\r\n");
        out.clear();
        a.unsubscribe(&mut reg, &[], false, &mut out);
        assert_eq!(out, b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
        b.leave(&mut reg);
        assert_eq!(reg.publish(b"news", b"hi"), 0);
        assert_eq!(reg.numpat(), 0);
    }
}
