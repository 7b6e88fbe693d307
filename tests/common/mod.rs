//! Test support: start the real `lb` binary on a temp conf, learn its ports, kill it on drop.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub mod client;
pub mod haproxy;
pub mod nginx;
pub mod redis_server;
pub mod servers;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `lb` process.
pub struct Lb {
    pub child: Child,
    /// `(kind, name)` -> addresses, from the `listening` lines, in conf order.
    pub listeners: HashMap<(String, String), Vec<SocketAddr>>,
    pub conf_path: PathBuf,
    pub dir: TempDir,
    stderr: mpsc::Receiver<String>,
    stdout: mpsc::Receiver<String>,
    /// Every stderr line so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

pub use lb::testutil::TempDir;

pub fn lb_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lb")
}

/// Writes `conf` to a temp file and returns (dir, path).
pub fn write_conf(conf: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new("conf");
    let path = dir.path().join("lb.conf");
    std::fs::write(&path, conf).expect("write conf");
    (dir, path)
}

impl Lb {
    /// Starts `lb --conf` on the given text and waits until `expect` listeners are announced.
    pub fn start(conf: &str, expect: usize) -> Lb {
        let (dir, path) = write_conf(conf);
        Lb::start_path(dir, path, expect, &[])
    }

    pub fn start_path(dir: TempDir, path: PathBuf, expect: usize, env: &[(&str, &str)]) -> Lb {
        let mut cmd = Command::new(lb_bin());
        cmd.arg("--conf")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if std::env::var("RUST_LOG").is_err() {
            cmd.env("RUST_LOG", "info");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn lb");
        let (otx, orx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if otx.send(line).is_err() {
                    break;
                }
            }
        });
        let (etx, erx) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if std::env::var("LB_TEST_ECHO").is_ok() {
                    eprintln!("[lb] {line}");
                }
                log2.lock().unwrap().push(line.clone());
                let _ = etx.send(line);
            }
        });
        let mut lb = Lb {
            child,
            listeners: HashMap::new(),
            conf_path: path,
            dir,
            stderr: erx,
            stdout: orx,
            log,
        };
        let mut seen = 0;
        while seen < expect {
            let line = match lb.stdout.recv_timeout(WAIT) {
                Ok(l) => l,
                Err(_) => {
                    let _ = lb.child.kill();
                    let errs: Vec<String> = lb.stderr.try_iter().collect();
                    panic!(
                        "lb did not announce {expect} listeners; stderr:\n{}",
                        errs.join("\n")
                    );
                }
            };
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() == 4 && parts[0] == "listening" {
                let addr: SocketAddr = parts[3].parse().expect("listening address");
                lb.listeners
                    .entry((parts[1].to_string(), parts[2].to_string()))
                    .or_default()
                    .push(addr);
                seen += 1;
            }
        }
        lb
    }

    /// First address of a listener, e.g. `lb.addr("frontend", "www")`.
    pub fn addr(&self, kind: &str, name: &str) -> SocketAddr {
        self.listeners
            .get(&(kind.to_string(), name.to_string()))
            .and_then(|v| v.first().copied())
            .unwrap_or_else(|| panic!("no listener {kind} {name}: {:?}", self.listeners))
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => continue,
                Err(_) => panic!("no log line containing {needle:?}"),
            }
        }
    }

    /// Waits until at least `n` stderr lines (seen at any time) contain `needle`,
    /// whatever their order relative to other waits.
    pub fn wait_log_count(&self, needle: &str, n: usize) {
        self.wait_log_count_within(needle, n, WAIT)
    }

    /// `wait_log_count` with its own bound, for waits that scale with a count.
    pub fn wait_log_count_within(&self, needle: &str, n: usize, wait: Duration) {
        let deadline = std::time::Instant::now() + wait;
        while self.log_count(needle) < n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            // Any new line is a reason to count again.
            if self.stderr.recv_timeout(left).is_err() && self.log_count(needle) < n {
                panic!("fewer than {n} log lines containing {needle:?}");
            }
        }
    }

    /// How many stderr lines so far contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits for a new `listening` line on stdout (after a reload); returns it.
    pub fn wait_listening(&self) -> String {
        loop {
            match self.stdout.recv_timeout(WAIT) {
                Ok(l) if l.starts_with("listening") => return l,
                Ok(_) => continue,
                Err(_) => panic!("no new listening line"),
            }
        }
    }

    /// Rewrites the conf file and sends SIGHUP.
    pub fn reload(&self, conf: &str) {
        std::fs::write(&self.conf_path, conf).expect("rewrite conf");
        self.signal(libc::SIGHUP);
    }

    /// Waits for the process to exit; returns its status code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st.code();
            }
            if std::time::Instant::now() > deadline {
                panic!("lb did not exit");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `lb check --conf` on text; returns (exit code, stdout, stderr).
pub fn check(conf: &str) -> (i32, String, String, PathBuf, TempDir) {
    let (dir, path) = write_conf(conf);
    let out = Command::new(lb_bin())
        .arg("check")
        .arg("--conf")
        .arg(&path)
        .output()
        .expect("run lb check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path,
        dir,
    )
}

/// Runs lb on `conf`, which must exit (not start serving) within `WAIT`;
/// returns its exit code, stderr and the conf's path. An lb that does not
/// exit is killed, so a failing test leaves no process behind.
pub fn run_to_exit(conf: &str) -> (Option<i32>, String, PathBuf, TempDir) {
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let (dir, path) = write_conf(conf);
    let mut child = KillOnDrop(
        Command::new(lb_bin())
            .arg("--conf")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lb"),
    );
    let status = eventually("lb to exit instead of starting", || {
        child.0.try_wait().expect("try_wait")
    });
    let mut err = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status.code(), err, path, dir)
}

/// Polls `f` until it yields a value, failing after `WAIT` (a condition wait,
/// not a fixed sleep: it returns as soon as the condition holds).
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Blocking helper: connect with timeouts set.
pub fn connect(addr: SocketAddr) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// Sends `req`, half-closes, reads everything back.
pub fn roundtrip(addr: SocketAddr, req: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    s.write_all(req).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// Reads a request or response head byte by byte (nothing after it is
/// consumed); `None` if the peer closes (or the read fails) before its end.
pub fn read_head<S: Read>(s: &mut S) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Sends a WebSocket upgrade for `/ws` on `s` and returns the response head.
pub fn websocket_upgrade<S: std::io::Read + std::io::Write>(s: &mut S, host: &str) -> Vec<u8> {
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    read_head(s).expect("a response head").into_bytes()
}

/// A process's resident memory, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
