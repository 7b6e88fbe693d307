//! The process's file descriptors: `RLIMIT_NOFILE` raised to its hard limit
//! at start, `maxconn` fitted to what is left (as HAProxy does), counts for
//! `/metrics`, and how a connect's or accept's local shortage is told apart
//! from a server's failure.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::conf::Conf;

/// Descriptors kept free beyond what connections, listeners and checks take:
/// the access log reopened, a conf read on reload, a resolver, stray pipes.
pub const RESERVE: usize = 16;

/// Descriptors a proxied connection may take: the client's and its server's.
pub const PER_CONN: usize = 2;

/// The soft limit in force (after [`raise`]), for `/metrics`.
static LIMIT: AtomicU64 = AtomicU64::new(0);

/// The maxconn last announced as lowered, so a reload that lowers it the same
/// way says nothing again.
static WARNED: AtomicUsize = AtomicUsize::new(0);

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit
/// now in force. A refusal keeps the old one (logged).
pub fn raise() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a stack struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r.rlim_cur = r.rlim_max;
            } else {
                tracing::warn!(
                    "cannot raise the open-file limit from {} to {}: {}",
                    r.rlim_cur,
                    r.rlim_max,
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    let soft = r.rlim_cur;
    LIMIT.store(soft, Ordering::Relaxed);
    soft
}

/// The soft open-file limit (0 before [`raise`]).
pub fn limit() -> u64 {
    LIMIT.load(Ordering::Relaxed)
}

/// Descriptors open in this process now (`/proc/self/fd`).
pub fn open() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count().saturating_sub(1))
}

/// Descriptors `conf` needs beside its connections: listening sockets (one
/// per worker per address), the admin listener, concurrent health checks.
pub fn fixed_need(conf: &Conf, workers: usize, max_checks: usize) -> usize {
    let binds: usize = conf.frontends.iter().map(|f| f.binds.len()).sum::<usize>()
        + conf.kvs.len()
        + conf.webs.len()
        + conf.apps.len();
    let checked: usize = conf
        .backends
        .iter()
        .map(|b| b.servers.iter().filter(|s| s.opts.check).count())
        .sum();
    binds * workers + usize::from(conf.global.admin.is_some()) + checked.min(max_checks) + RESERVE
}

/// The largest maxconn `limit` descriptors carry when `used` are open already
/// and `fixed` more are needed beside connections.
pub fn fitting_maxconn(limit: u64, used: usize, fixed: usize) -> usize {
    let free = (limit.min(usize::MAX as u64) as usize).saturating_sub(used + fixed);
    (free / PER_CONN).max(1)
}

/// Descriptors open before the first [`fit`] (workers, rings, logs): what
/// connections cannot have.
static BASE: AtomicUsize = AtomicUsize::new(0);

/// Lowers the global maxconn, and every frontend's above it, to what the
/// open-file limit carries, with one warning (as HAProxy does when `ulimit-n`
/// is too low): at start, before anything is bound, and on reload.
pub fn fit(conf: &mut Conf, workers: usize) {
    let limit = limit();
    if limit == 0 {
        return;
    }
    let used = match BASE.load(Ordering::Relaxed) {
        0 => {
            let n = open();
            BASE.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    };
    // `tune.max-checks-per-thread` is per worker.
    let max_checks = match conf.global.max_checks {
        0 => usize::MAX,
        n => n.saturating_mul(workers),
    };
    let fixed = fixed_need(conf, workers, max_checks);
    let fits = fitting_maxconn(limit, used, fixed);
    if conf.global.maxconn <= fits {
        return;
    }
    if WARNED.swap(fits, Ordering::Relaxed) != fits {
        tracing::warn!(
            "open-file limit {limit} too low for maxconn {} ({} descriptors each, {} open, {fixed} for \
             listeners, checks and reserve): maxconn lowered to {fits}; raise the hard limit \
             (ulimit -Hn, LimitNOFILE=) to at least {}",
            conf.global.maxconn,
            PER_CONN,
            used,
            used + fixed + PER_CONN * conf.global.maxconn
        );
    }
    conf.global.maxconn = fits;
    for f in &mut conf.frontends {
        f.maxconn = f.maxconn.min(fits);
    }
}

/// Whether an error says this process (or the host) ran out of something,
/// not that the peer failed: EMFILE, ENFILE, ENOBUFS, ENOMEM.
pub fn is_local_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The prefix of a connect failure's reason (`connect::open`) that
/// [`is_local_shortage`] flagged: the dialer and the health checks do not
/// count it against the server.
pub const LOCAL: &str = "local resource shortage";

/// Whether a connect failure's reason is a local shortage.
pub fn is_local_reason(reason: &str) -> bool {
    reason.starts_with(LOCAL)
}

/// One log line at most every `every` for a recurring condition, with the
/// number of occurrences since the last line.
pub struct RateLimitedLog {
    last: std::sync::Mutex<Option<std::time::Instant>>,
    since: AtomicU64,
    every: std::time::Duration,
}

impl RateLimitedLog {
    pub const fn new(every: std::time::Duration) -> RateLimitedLog {
        RateLimitedLog {
            last: std::sync::Mutex::new(None),
            since: AtomicU64::new(0),
            every,
        }
    }

    /// Counts one occurrence; `Some(n)` when a line is due (n occurrences since
    /// the last line, this one included).
    pub fn hit(&self) -> Option<u64> {
        let n = self.since.fetch_add(1, Ordering::Relaxed) + 1;
        let now = std::time::Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some(t) if now.duration_since(t) < self.every => None,
            _ => {
                *last = Some(now);
                self.since.store(0, Ordering::Relaxed);
                Some(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxconn_fits_what_is_left() {
        assert_eq!(fitting_maxconn(256, 25, 20), 105);
        assert_eq!(fitting_maxconn(30, 25, 20), 1);
        assert_eq!(fitting_maxconn(1 << 20, 25, 20), ((1 << 20) - 45) / 2);
    }

    #[test]
    fn a_shortage_is_told_from_a_refusal() {
        assert!(is_local_shortage(&std::io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(!is_local_shortage(&std::io::Error::from_raw_os_error(
            libc::ECONNREFUSED
        )));
    }

    #[test]
    fn rate_limited_log_counts_what_it_held_back() {
        let l = RateLimitedLog::new(std::time::Duration::from_secs(3600));
        assert_eq!(l.hit(), Some(1));
        assert_eq!(l.hit(), None);
        assert_eq!(l.hit(), None);
        let l2 = RateLimitedLog::new(std::time::Duration::ZERO);
        assert_eq!(l2.hit(), Some(1));
        assert_eq!(l2.hit(), Some(1));
    }
}
