//! `cpu-map`: pin worker threads to CPUs, in HAProxy's syntax.
//!
//! `cpu-map [auto:]PROCESS[/THREADS] CPUS...`
//! - PROCESS is `1` or `all` (lb is one process; HAProxy 2.6 also only has one).
//! - THREADS is a set of worker threads, numbered from 1: `N`, `A-B`, `all`,
//!   `odd`, `even`, or a comma list of those; no `/THREADS` means every thread.
//! - CPUS is a set of CPU numbers (`N`, `A-B`, comma lists), over one or more
//!   arguments.
//! - Plain: every thread of the set may run on any CPU of the set.
//! - `auto:`: the threads, in ascending order, get one CPU each, in ascending
//!   order (there must be at least as many CPUs as threads).
//!
//! Several lines apply in order; a later line naming a thread replaces what an
//! earlier one gave it. Threads no line names are not pinned.

/// Highest CPU number accepted (the kernel's default `CPU_SETSIZE` is 1024).
pub const MAX_CPU: usize = 1023;

/// One `cpu-map` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuMap {
    /// Its line in the conf file, for errors found once the thread count is known.
    pub line: usize,
    pub auto: bool,
    pub threads: Threads,
    /// Ascending, without duplicates.
    pub cpus: Vec<usize>,
}

/// Which worker threads a line names (numbered from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Threads {
    All,
    Odd,
    Even,
    /// Ascending, without duplicates.
    List(Vec<usize>),
}

impl Threads {
    /// The thread numbers among `1..=n`; an error for a number above `n`.
    fn resolve(&self, n: usize) -> Result<Vec<usize>, String> {
        Ok(match self {
            Threads::All => (1..=n).collect(),
            Threads::Odd => (1..=n).step_by(2).collect(),
            Threads::Even => (2..=n).step_by(2).collect(),
            Threads::List(l) => {
                if let Some(&t) = l.iter().find(|&&t| t > n) {
                    return Err(format!(
                        "thread {t} does not exist: there are {n} worker thread(s) (nbthread)"
                    ));
                }
                l.clone()
            }
        })
    }
}

/// Parses the arguments after `cpu-map`.
pub fn parse(args: &[String], line: usize) -> Result<CpuMap, String> {
    let Some((first, rest)) = args.split_first() else {
        return Err(
            "expected [auto:]PROCESS[/THREADS] CPUS..., e.g. 'cpu-map auto:1/1-2 0-1'".into(),
        );
    };
    if rest.is_empty() {
        return Err(format!("no CPUs after '{first}'"));
    }
    let (auto, spec) = match first.strip_prefix("auto:") {
        Some(s) => (true, s),
        None => (false, first.as_str()),
    };
    let (process, threads) = match spec.split_once('/') {
        Some((p, t)) => (p, Some(t)),
        None => (spec, None),
    };
    if process != "1" && process != "all" {
        return Err(format!(
            "process set '{process}': lb runs one process, so it must be 1 or all"
        ));
    }
    let threads = match threads {
        None | Some("all") => Threads::All,
        Some("odd") => Threads::Odd,
        Some("even") => Threads::Even,
        Some(t) => Threads::List(set(t, 1, 1024, "thread")?),
    };
    let mut cpus = Vec::new();
    for a in rest {
        cpus.extend(set(a, 0, MAX_CPU, "CPU")?);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(CpuMap {
        line,
        auto,
        threads,
        cpus,
    })
}

/// `N`, `A-B` and comma lists of them, each within `lo..=hi`; ascending, deduplicated.
fn set(s: &str, lo: usize, hi: usize, what: &str) -> Result<Vec<usize>, String> {
    let num = |v: &str| -> Result<usize, String> {
        match v.parse::<usize>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(n),
            Ok(n) => Err(format!("{what} {n} is out of range ({lo}..{hi})")),
            Err(_) => Err(format!("'{v}' is not a {what} number or range")),
        }
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("{what} range '{part}' runs backwards"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The CPUs of each of `n` worker threads (index 0 is thread 1; empty: not
/// pinned), from the lines in order. An error names the line at fault.
pub fn resolve(maps: &[CpuMap], n: usize) -> Result<Vec<Vec<usize>>, (usize, String)> {
    let mut out = vec![Vec::new(); n];
    for m in maps {
        let threads = m.threads.resolve(n).map_err(|e| (m.line, e))?;
        if m.auto {
            if m.cpus.len() < threads.len() {
                return Err((
                    m.line,
                    format!(
                        "auto: maps {} thread(s) one to a CPU, but names only {} CPU(s)",
                        threads.len(),
                        m.cpus.len()
                    ),
                ));
            }
            for (t, &c) in threads.iter().zip(&m.cpus) {
                out[t - 1] = vec![c];
            }
        } else {
            for t in threads {
                out[t - 1] = m.cpus.clone();
            }
        }
    }
    Ok(out)
}

/// `resolve`, and every CPU named must be one this process may use: what
/// starting the workers needs, so that `lb check` finds it too.
pub fn for_workers(maps: &[CpuMap], n: usize) -> Result<Vec<Vec<usize>>, (usize, String)> {
    let cpus = resolve(maps, n)?;
    let Some(first) = maps.first() else {
        return Ok(cpus);
    };
    let allowed = allowed_cpus().map_err(|e| {
        (
            first.line,
            format!("cannot read the CPUs this process may use: {e}"),
        )
    })?;
    for m in maps {
        if let Some(c) = m.cpus.iter().find(|c| !allowed.contains(c)) {
            return Err((
                m.line,
                format!("CPU {c} is not available to this process (it may use {allowed:?})"),
            ));
        }
    }
    Ok(cpus)
}

/// Pins the calling thread to `cpus` (nothing to do when empty).
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET is given numbers
    // below CPU_SETSIZE (MAX_CPU); sched_setaffinity reads the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The CPUs this process may run on now (`sched_getaffinity`).
pub fn allowed_cpus() -> std::io::Result<Vec<usize>> {
    // SAFETY: the kernel fills a set we own, of the size we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((0..=MAX_CPU)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<CpuMap, String> {
        let args: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse(&args, 7)
    }

    #[test]
    fn forms_haproxy_accepts() {
        let m = p("1/all 0-3").unwrap();
        assert_eq!(
            (m.auto, &m.threads, &m.cpus[..]),
            (false, &Threads::All, &[0, 1, 2, 3][..])
        );
        let m = p("auto:1/1-4 0-1 2,3").unwrap();
        assert!(m.auto);
        assert_eq!(m.threads, Threads::List(vec![1, 2, 3, 4]));
        assert_eq!(m.cpus, [0, 1, 2, 3]);
        assert_eq!(p("1 5").unwrap().threads, Threads::All);
        assert_eq!(p("all/odd 0").unwrap().threads, Threads::Odd);
        assert_eq!(p("1/2,4 1 1 0").unwrap().cpus, [0, 1]);
    }

    #[test]
    fn bad_forms_say_why() {
        for (s, want) in [
            ("", "expected"),
            ("1/1", "no CPUs"),
            ("2/1 0", "one process"),
            ("1/0 0", "out of range"),
            ("1/x 0", "not a thread"),
            ("1/1 1024", "out of range"),
            ("1/1 3-1", "backwards"),
            ("1/1 0-", "not a CPU"),
        ] {
            let e = p(s).unwrap_err();
            assert!(e.contains(want), "{s:?}: {e}");
        }
    }

    #[test]
    fn resolution_per_thread() {
        let maps = [p("1/all 0-1").unwrap(), p("auto:1/2-3 4-6").unwrap()];
        assert_eq!(
            resolve(&maps, 4).unwrap(),
            [vec![0, 1], vec![4], vec![5], vec![0, 1]]
        );
        assert_eq!(
            resolve(&[p("1/even 2").unwrap()], 3).unwrap(),
            [vec![], vec![2], vec![]]
        );
        let (line, e) = resolve(&[p("1/3 0").unwrap()], 2).unwrap_err();
        assert_eq!(line, 7);
        assert!(e.contains("thread 3 does not exist"), "{e}");
        let (_, e) = resolve(&[p("auto:1/1-3 0-1").unwrap()], 3).unwrap_err();
        assert!(e.contains("only 2 CPU"), "{e}");
    }

    #[test]
    fn pinning_the_current_thread() {
        let allowed = allowed_cpus().unwrap();
        let first = allowed[0];
        std::thread::spawn(move || {
            pin_current_thread(&[first]).unwrap();
            assert_eq!(allowed_cpus().unwrap(), [first]);
        })
        .join()
        .unwrap();
    }
}
