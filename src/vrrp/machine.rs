//! The RFC 5798 (section 6.4) state machine of one virtual router, without I/O:
//! events in (start, timer, advert, priority change, shutdown), actions out.
//! Time is passed in, so tests drive it with a fake clock.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Init,
    Backup,
    Master,
}

impl State {
    pub const ALL: [State; 3] = [State::Init, State::Backup, State::Master];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(c: u8) -> State {
        match c {
            1 => State::Backup,
            2 => State::Master,
            _ => State::Init,
        }
    }
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority.
    Send(u8),
    /// Add the virtual addresses and announce them (gratuitous ARP).
    TakeAddresses,
    /// Remove the virtual addresses.
    ReleaseAddresses,
    /// The state changed; `why` is for the log.
    Transition { from: State, to: State, why: String },
}

/// Settings a reload may change without a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Priority advertised now (the conf's minus failed tracks), 1..=255.
    pub priority: u8,
    /// Our Advertisement_Interval, centiseconds.
    pub interval_cs: u16,
    pub preempt: bool,
}

pub struct Machine {
    params: Params,
    /// Our primary address: breaks ties between equal priorities.
    primary: Ipv4Addr,
    state: State,
    /// The interval the master advertises (learned as a backup, RFC 5798 6.4.2).
    master_interval_cs: u16,
    /// Advert timer as master, Master_Down_Timer as backup; none in INIT.
    deadline: Option<Instant>,
    /// The master announced it is leaving (priority 0): the timer is the skew.
    left: bool,
}

fn cs(n: u32) -> Duration {
    Duration::from_millis(u64::from(n) * 10)
}

impl Machine {
    pub fn new(params: Params, primary: Ipv4Addr) -> Machine {
        Machine {
            params,
            primary,
            state: State::Init,
            master_interval_cs: params.interval_cs,
            deadline: None,
            left: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn params(&self) -> Params {
        self.params
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Skew_Time: lower priorities wait longer, so the best backup wins the race.
    pub fn skew(&self) -> Duration {
        let p = u32::from(self.params.priority);
        // In centiseconds with a fraction: keep it in microseconds.
        Duration::from_micros(
            u64::from((256 - p.min(256)) * u32::from(self.master_interval_cs)) * 10_000 / 256,
        )
    }

    /// Master_Down_Interval = 3 x Master_Adver_Interval + Skew_Time.
    pub fn master_down(&self) -> Duration {
        cs(3 * u32::from(self.master_interval_cs)) + self.skew()
    }

    fn advert_interval(&self) -> Duration {
        cs(u32::from(self.params.interval_cs))
    }

    /// Startup event: the address owner (255) is master at once, others wait as backup.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        if self.params.priority == 255 {
            return self.become_master(now, "address owner (priority 255)".into());
        }
        self.master_interval_cs = self.params.interval_cs;
        self.deadline = Some(now + self.master_down());
        vec![self.transition(State::Backup, "startup".into())]
    }

    /// The deadline passed.
    pub fn timer(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            State::Init => Vec::new(),
            State::Backup => {
                let why = if self.left {
                    "the master left (priority 0)".to_string()
                } else {
                    format!(
                        "no advert from a master for {} ms",
                        self.master_down().as_millis()
                    )
                };
                self.become_master(now, why)
            }
            State::Master => {
                self.deadline = Some(now + self.advert_interval());
                vec![Action::Send(self.params.priority)]
            }
        }
    }

    /// A valid advert for our vrid from `src` (never ourselves).
    pub fn advert(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        priority: u8,
        interval_cs: u16,
    ) -> Vec<Action> {
        let ours = self.params.priority;
        match self.state {
            State::Init => Vec::new(),
            State::Backup => {
                if priority == 0 {
                    // The master left cleanly: take over after the skew only.
                    self.deadline = Some(now + self.skew());
                    self.left = true;
                } else if !self.params.preempt || priority >= ours {
                    self.master_interval_cs = interval_cs;
                    self.deadline = Some(now + self.master_down());
                    self.left = false;
                }
                // A lower priority master while we preempt: ignored, our timer runs out.
                Vec::new()
            }
            State::Master => {
                if priority == 0 {
                    self.deadline = Some(now + self.advert_interval());
                    return vec![Action::Send(ours)];
                }
                if priority > ours || (priority == ours && src > self.primary) {
                    self.master_interval_cs = interval_cs;
                    self.deadline = Some(now + self.master_down());
                    let why = if priority > ours {
                        format!("{src} advertises higher priority {priority} > {ours}")
                    } else {
                        format!("{src} has equal priority {priority} and a higher address")
                    };
                    return vec![
                        Action::ReleaseAddresses,
                        self.transition(State::Backup, why),
                    ];
                }
                // A lower master: our next advert makes it step down.
                Vec::new()
            }
        }
    }

    /// New settings (a reload or a track changing the priority): no transition;
    /// a master advertises a new priority at once.
    pub fn set_params(&mut self, now: Instant, p: Params) -> Vec<Action> {
        let old = self.params;
        self.params = p;
        if old == p {
            return Vec::new();
        }
        match self.state {
            State::Master => {
                self.deadline = Some(now + self.advert_interval());
                vec![Action::Send(p.priority)]
            }
            State::Backup => {
                // A shorter skew applies from now; the timer is not pushed later.
                if let Some(d) = self.deadline {
                    let sooner = now + self.master_down();
                    if sooner < d {
                        self.deadline = Some(sooner);
                    }
                }
                Vec::new()
            }
            State::Init => Vec::new(),
        }
    }

    /// Shutdown event: a master sends priority 0 so that a backup takes over now.
    pub fn shutdown(&mut self) -> Vec<Action> {
        self.deadline = None;
        let mut out = Vec::new();
        if self.state == State::Master {
            out.push(Action::Send(0));
            out.push(Action::ReleaseAddresses);
        }
        if self.state != State::Init {
            out.push(self.transition(State::Init, "shutdown".into()));
        }
        out
    }

    fn become_master(&mut self, now: Instant, why: String) -> Vec<Action> {
        self.left = false;
        self.deadline = Some(now + self.advert_interval());
        vec![
            Action::Send(self.params.priority),
            Action::TakeAddresses,
            self.transition(State::Master, why),
        ]
    }

    fn transition(&mut self, to: State, why: String) -> Action {
        let from = self.state;
        self.state = to;
        Action::Transition { from, to, why }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

    fn machine(priority: u8, preempt: bool) -> Machine {
        Machine::new(
            Params {
                priority,
                interval_cs: 10,
                preempt,
            },
            ME,
        )
    }

    fn states(actions: &[Action]) -> Vec<State> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Transition { to, .. } => Some(*to),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn timers_follow_the_rfc() {
        let m = machine(100, true);
        // Skew = (256 - 100) * 10 cs / 256 = 6.09 cs.
        assert_eq!(m.skew(), Duration::from_micros(60_937));
        assert_eq!(m.master_down(), Duration::from_micros(360_937));
        let m = machine(150, true);
        assert!(m.master_down() < machine(100, true).master_down());
    }

    #[test]
    fn backup_becomes_master_when_adverts_stop() {
        let t0 = Instant::now();
        let mut m = machine(100, true);
        assert_eq!(states(&m.start(t0)), [State::Backup]);
        // Adverts from a higher master keep pushing the timer.
        let mut t = t0;
        for _ in 0..10 {
            t += Duration::from_millis(100);
            assert!(m.advert(t, PEER, 150, 10).is_empty());
            assert_eq!(m.deadline(), Some(t + m.master_down()));
        }
        let down = m.deadline().unwrap();
        let a = m.timer(down);
        assert_eq!(a[..2], [Action::Send(100), Action::TakeAddresses], "{a:?}");
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.deadline(), Some(down + Duration::from_millis(100)));
        assert_eq!(
            m.timer(down + Duration::from_millis(100)),
            [Action::Send(100)]
        );
    }

    #[test]
    fn priority_zero_means_take_over_after_the_skew() {
        let t0 = Instant::now();
        let mut m = machine(100, true);
        m.start(t0);
        m.advert(t0, PEER, 150, 10);
        m.advert(t0, PEER, 0, 10);
        assert_eq!(m.deadline(), Some(t0 + m.skew()));
    }

    #[test]
    fn master_steps_down_for_higher_priority_or_equal_and_higher_address() {
        let t0 = Instant::now();
        let mut m = machine(100, true);
        m.start(t0);
        m.timer(m.deadline().unwrap());
        assert_eq!(m.state(), State::Master);
        // Lower: ignored; priority 0: answered with an advert at once.
        assert!(m.advert(t0, PEER, 50, 10).is_empty());
        assert_eq!(m.advert(t0, PEER, 0, 10), [Action::Send(100)]);
        // Equal priority, lower address: we stay.
        assert!(m
            .advert(t0, Ipv4Addr::new(10, 77, 0, 0), 100, 10)
            .is_empty());
        // Equal priority, higher address: we go.
        let a = m.advert(t0, PEER, 100, 10);
        assert_eq!(a[0], Action::ReleaseAddresses);
        assert_eq!(states(&a), [State::Backup]);
        // Higher priority from master state too.
        let mut m = machine(100, true);
        m.start(t0);
        m.timer(m.deadline().unwrap());
        assert_eq!(states(&m.advert(t0, PEER, 150, 20)), [State::Backup]);
        // It learned the master's interval.
        assert_eq!(m.master_down(), Duration::from_millis(600) + m.skew());
    }

    #[test]
    fn preempt_and_nopreempt() {
        let t0 = Instant::now();
        // Preempt: a lower master's adverts do not hold us back.
        let mut m = machine(150, true);
        m.start(t0);
        let d = m.deadline();
        m.advert(t0 + Duration::from_millis(100), PEER, 100, 10);
        assert_eq!(m.deadline(), d);
        // Nopreempt: they do.
        let mut m = machine(150, false);
        m.start(t0);
        let t = t0 + Duration::from_millis(100);
        m.advert(t, PEER, 100, 10);
        assert_eq!(m.deadline(), Some(t + m.master_down()));
    }

    #[test]
    fn owner_is_master_at_once() {
        let mut m = machine(255, true);
        assert_eq!(states(&m.start(Instant::now())), [State::Master]);
    }

    #[test]
    fn priority_change_is_advertised_without_a_transition() {
        let t0 = Instant::now();
        let mut m = machine(100, true);
        m.start(t0);
        m.timer(m.deadline().unwrap());
        let p = Params {
            priority: 40,
            ..m.params()
        };
        assert_eq!(m.set_params(t0, p), [Action::Send(40)]);
        assert_eq!(m.state(), State::Master);
        assert!(m.set_params(t0, p).is_empty());
    }

    #[test]
    fn shutdown_sends_priority_zero() {
        let t0 = Instant::now();
        let mut m = machine(100, true);
        m.start(t0);
        m.timer(m.deadline().unwrap());
        let a = m.shutdown();
        assert_eq!(a[..2], [Action::Send(0), Action::ReleaseAddresses]);
        assert_eq!(m.state(), State::Init);
        assert_eq!(m.deadline(), None);
        // A backup leaves silently.
        let mut m = machine(100, true);
        m.start(t0);
        assert!(!m.shutdown().iter().any(|a| matches!(a, Action::Send(_))));
    }
}
