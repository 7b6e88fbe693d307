//! One virtual router at work: receives and checks adverts, drives the state
//! machine, sends adverts, adds and removes the addresses, counts everything.

use std::io::Read;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::machine::{Action, Machine, Params, State};
use super::net::{self, Iface};
use super::packet::{self, Reject};
use super::{netlink, BackendUp, Cmd, Status};
use crate::conf::vrrp::VrrpConf;

/// Gratuitous ARPs after taking the addresses: one at once, the rest spaced
/// out, for a neighbour that missed the first.
const GARPS: u8 = 4;
const GARP_SPACING: Duration = Duration::from_millis(100);

pub struct Instance {
    conf: VrrpConf,
    /// Vrids of the other instances on this interface: their adverts are not drops.
    others: Vec<u8>,
    iface: Iface,
    primary: Ipv4Addr,
    /// Taken by `run`, which watches it.
    rx: Option<Socket>,
    tx: Socket,
    arp: Socket,
    machine: Machine,
    status: Arc<Status>,
    backend_up: BackendUp,
    /// Gratuitous ARPs still to send, and when the next one is due.
    garps: (u8, Instant),
    /// The last advert could not be sent: logged once, not every interval.
    send_failing: bool,
}

/// The priority to advertise: the conf's, less the weight of each tracked
/// backend with no server up, never below 1 (0 means "leaving").
fn effective_priority(c: &VrrpConf, up: &BackendUp) -> u8 {
    let lost: u32 = c
        .tracks
        .iter()
        .filter(|t| !up(&t.backend))
        .map(|t| u32::from(t.weight))
        .sum();
    if lost == 0 {
        return c.priority;
    }
    u32::from(c.priority).saturating_sub(lost).clamp(1, 254) as u8
}

fn params(c: &VrrpConf, up: &BackendUp) -> Params {
    Params {
        priority: effective_priority(c, up),
        interval_cs: c.interval_cs(),
        preempt: c.preempt,
    }
}

impl Instance {
    /// Looks the interface up and opens the sockets; errors say what failed.
    pub fn open(
        c: &VrrpConf,
        others: Vec<u8>,
        status: Arc<Status>,
        backend_up: BackendUp,
    ) -> Result<Instance, String> {
        let iface =
            Iface::lookup(&c.interface).map_err(|e| format!("interface {}: {e}", c.interface))?;
        let vips: Vec<Ipv4Addr> = c.addresses.iter().map(|a| a.0).collect();
        let primary = net::primary_address(&c.interface, &vips)
            .map_err(|e| format!("interface {}: {e}", c.interface))?
            .ok_or_else(|| format!("interface {} has no IPv4 address of its own", c.interface))?;
        let e = |what: &str| {
            let what = what.to_string();
            move |e: std::io::Error| format!("{what} on {}: {e}", c.interface)
        };
        let rx = net::receiver(&iface).map_err(e("cannot open the VRRP receive socket"))?;
        let tx = net::sender(&iface, primary).map_err(e("cannot open the VRRP send socket"))?;
        let arp = net::arp_socket().map_err(e("cannot open the ARP socket"))?;
        // Tracks count from the first look, one interval in: at start the
        // health checks have not answered yet, and a backup sends nothing
        // before its master-down interval (3 intervals) anyway.
        let p = Params {
            priority: c.priority,
            ..params(c, &backend_up)
        };
        status.priority.store(p.priority, Ordering::Relaxed);
        Ok(Instance {
            conf: c.clone(),
            others,
            iface,
            primary,
            rx: Some(rx),
            tx,
            arp,
            machine: Machine::new(p, primary),
            status,
            backend_up,
            garps: (0, Instant::now()),
            send_failing: false,
        })
    }

    /// Runs until `Cmd::Stop` (or the runtime drops the channel).
    pub async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let Some(sock) = self.rx.take() else {
            return;
        };
        // SAFETY: the Socket owns its descriptor and the AsyncFd owns the
        // Socket, so the fd stays open and unchanged for the AsyncFd's lifetime.
        let rx = match unsafe { AsyncFd::register_with_interest(sock, Interest::READABLE) } {
            Ok(fd) => fd,
            Err(e) => {
                tracing::error!(
                    "vrrp {}: cannot watch the socket: {}",
                    self.conf.name,
                    e.into_parts().1
                );
                return;
            }
        };
        // Addresses left behind by a process that died as master.
        self.release();
        tracing::info!(
            "vrrp {}: vrid {} on {} from {}, priority {}, advert every {} ms",
            self.conf.name,
            self.conf.vrid,
            self.iface.name,
            self.primary,
            self.machine.params().priority,
            self.conf.advert_int.as_millis()
        );
        let now = Instant::now();
        let a = self.machine.start(now.into_std());
        self.act(a);
        let mut buf = vec![0u8; 2048];
        let far = Duration::from_secs(3600);
        // Tracks are looked at once per advert interval.
        let mut track_at = Instant::now() + self.conf.advert_int;
        loop {
            let now = Instant::now();
            let deadline = self.machine.deadline().map_or(now + far, Instant::from_std);
            tokio::select! {
                biased;
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Conf(c, others)) => self.reconf(*c, others),
                    Some(Cmd::Stop(ack)) => {
                        let a = self.machine.shutdown();
                        self.act(a);
                        let _ = ack.send(());
                        return;
                    }
                    None => {
                        let a = self.machine.shutdown();
                        self.act(a);
                        return;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let a = self.machine.timer(Instant::now().into_std());
                    self.act(a);
                }
                r = rx.readable() => {
                    let Ok(mut guard) = r else { continue };
                    loop {
                        match rx.get_ref().read(&mut buf) {
                            Ok(n) => self.received(&buf[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                guard.clear_ready();
                                break;
                            }
                            Err(e) => {
                                tracing::debug!("vrrp {}: receive: {e}", self.conf.name);
                                break;
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(self.garps.1), if self.garps.0 > 0 => {
                    self.garp();
                }
                _ = tokio::time::sleep_until(track_at), if !self.conf.tracks.is_empty() => {
                    track_at = Instant::now() + self.conf.advert_int;
                    let p = params(&self.conf, &self.backend_up);
                    if p.priority != self.machine.params().priority {
                        tracing::warn!(
                            "vrrp {}: priority {} -> {} (tracked backends)",
                            self.conf.name,
                            self.machine.params().priority,
                            p.priority
                        );
                    }
                    self.set(p);
                }
            }
        }
    }

    fn set(&mut self, p: Params) {
        self.status.priority.store(p.priority, Ordering::Relaxed);
        let a = self.machine.set_params(Instant::now().into_std(), p);
        self.act(a);
    }

    /// A reload with the same interface and vrid: new priority, interval,
    /// preempt, tracks and addresses, without a transition.
    fn reconf(&mut self, c: VrrpConf, others: Vec<u8>) {
        let master = self.machine.state() == State::Master;
        if c.addresses != self.conf.addresses && master {
            for &(ip, len) in &self.conf.addresses {
                if !c.addresses.contains(&(ip, len)) {
                    self.del(ip, len);
                }
            }
        }
        let old = std::mem::replace(&mut self.conf, c);
        self.others = others;
        if self.conf.addresses != old.addresses && master {
            self.take();
        }
        let p = params(&self.conf, &self.backend_up);
        self.set(p);
    }

    fn received(&mut self, ip: &[u8]) {
        let a = match packet::parse(ip) {
            Ok(a) => a,
            Err(d) => {
                self.status.drop_one(d);
                return;
            }
        };
        if a.src == self.primary {
            return;
        }
        if a.vrid != self.conf.vrid {
            if !self.others.contains(&a.vrid) {
                self.status.drop_one(Reject::Vrid);
            }
            return;
        }
        self.status.received.fetch_add(1, Ordering::Relaxed);
        if a.interval_cs != self.conf.interval_cs() {
            self.status
                .interval_mismatch
                .fetch_add(1, Ordering::Relaxed);
        }
        let mut theirs = a.addrs.clone();
        theirs.sort();
        let mut ours: Vec<Ipv4Addr> = self.conf.addresses.iter().map(|x| x.0).collect();
        ours.sort();
        if theirs != ours {
            self.status.address_mismatch.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now().into_std();
        let acts = self.machine.advert(now, a.src, a.priority, a.interval_cs);
        if self.machine.state() == State::Backup && a.priority > 0 {
            self.status
                .master
                .store(u32::from(a.src), Ordering::Relaxed);
        }
        self.act(acts);
    }

    fn act(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(p) => self.send(p),
                Action::TakeAddresses => self.take(),
                Action::ReleaseAddresses => self.release(),
                Action::Transition { from, to, why } => {
                    self.status.state.store(to.code(), Ordering::Relaxed);
                    if from != State::Init || to == State::Master {
                        self.status.transitions.fetch_add(1, Ordering::Relaxed);
                    }
                    if to == State::Master {
                        self.status
                            .master
                            .store(u32::from(self.primary), Ordering::Relaxed);
                    }
                    tracing::warn!(
                        "vrrp {}: {} -> {}: {why}",
                        self.conf.name,
                        from.as_str(),
                        to.as_str()
                    );
                }
            }
        }
    }

    fn send(&mut self, priority: u8) {
        let addrs: Vec<Ipv4Addr> = self.conf.addresses.iter().map(|a| a.0).collect();
        let msg = packet::encode(
            self.primary,
            packet::GROUP,
            self.conf.vrid,
            priority,
            self.machine.params().interval_cs,
            &addrs,
        );
        match net::send(&self.tx, &msg) {
            Ok(()) => {
                self.status.sent.fetch_add(1, Ordering::Relaxed);
                if std::mem::take(&mut self.send_failing) {
                    tracing::warn!("vrrp {}: adverts go out again", self.conf.name);
                }
            }
            Err(e) if !self.send_failing => {
                self.send_failing = true;
                tracing::warn!("vrrp {}: cannot send adverts: {e}", self.conf.name);
            }
            Err(_) => {}
        }
    }

    fn take(&mut self) {
        for &(ip, len) in &self.conf.addresses {
            if let Err(e) = netlink::add(self.iface.index, ip, len) {
                tracing::error!(
                    "vrrp {}: cannot add {ip}/{len} to {}: {e}",
                    self.conf.name,
                    self.iface.name
                );
            }
        }
        self.garps = (GARPS, Instant::now());
        self.garp();
    }

    fn garp(&mut self) {
        for &(ip, _) in &self.conf.addresses {
            if let Err(e) = net::garp(&self.arp, &self.iface, ip) {
                tracing::debug!("vrrp {}: gratuitous ARP for {ip}: {e}", self.conf.name);
            }
        }
        self.garps.0 = self.garps.0.saturating_sub(1);
        self.garps.1 = Instant::now() + GARP_SPACING;
    }

    fn release(&mut self) {
        self.garps.0 = 0;
        for &(ip, len) in &self.conf.addresses.clone() {
            self.del(ip, len);
        }
    }

    fn del(&self, ip: Ipv4Addr, len: u8) {
        if let Err(e) = netlink::del(self.iface.index, ip, len) {
            tracing::error!(
                "vrrp {}: cannot remove {ip}/{len} from {}: {e}",
                self.conf.name,
                self.iface.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_lower_the_priority() {
        let mut c = VrrpConf::new("v".into(), 1);
        c.priority = 100;
        for (b, w) in [("a", 60), ("b", 60)] {
            c.tracks.push(crate::conf::vrrp::Track {
                backend: b.into(),
                weight: w,
                line: 1,
            });
        }
        let all_up: BackendUp = Arc::new(|_| true);
        let a_down: BackendUp = Arc::new(|n| n != "a");
        let none_up: BackendUp = Arc::new(|_| false);
        assert_eq!(effective_priority(&c, &all_up), 100);
        assert_eq!(effective_priority(&c, &a_down), 40);
        assert_eq!(effective_priority(&c, &none_up), 1);
    }
}
