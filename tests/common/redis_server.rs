//! A real redis-server (or redis-sentinel) beside lb, for interop tests, killed
//! on drop; and the probes that let such a test skip when a tool is missing.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};

use super::{eventually, TempDir};

/// Whether `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Whether Python has the `redis` package (Debian's python3-redis).
pub fn have_redis_py() -> bool {
    Command::new("python3")
        .args(["-c", "import redis"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A free loopback port (redis-server needs a number, not 0).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A redis-server or redis-sentinel child, killed on drop.
pub struct Redis {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    /// redis-server on a free port, without persistence unless `extra` asks.
    pub fn start(extra: &[&str]) -> Redis {
        Redis::start_on(free_port(), extra)
    }

    pub fn start_on(port: u16, extra: &[&str]) -> Redis {
        let dir = TempDir::new("redis");
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            dir.path().to_str().expect("utf-8 temp dir"),
            "--logfile",
            "redis.log",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        Redis::answering(child, port, dir, "redis-server")
    }

    /// redis-sentinel with a conf file (it rewrites it).
    pub fn sentinel(port: u16, conf: &str) -> Redis {
        let dir = TempDir::new("redis-sentinel");
        let path = dir.path().join("sentinel.conf");
        std::fs::write(
            &path,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {}/sentinel.log\n{conf}",
                dir.path().display(),
                dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-sentinel")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-sentinel");
        Redis::answering(child, port, dir, "redis-sentinel")
    }

    fn answering(child: Child, port: u16, dir: TempDir, what: &str) -> Redis {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let r = Redis { child, addr, dir };
        eventually(&format!("{what} to answer"), || {
            let mut c = try_conn(addr)?;
            redis::cmd("PING").query::<String>(&mut c).ok()
        });
        r
    }

    /// Its log (and the sentinel's).
    pub fn log(&self) -> String {
        let a = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let b = std::fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default();
        a + &b
    }
}

/// A connection, if one can be made within 2 s.
pub fn try_conn(addr: SocketAddr) -> Option<redis::Connection> {
    let c = redis::Client::open(format!("redis://{addr}/")).ok()?;
    c.get_connection_with_timeout(std::time::Duration::from_secs(2))
        .ok()
}

/// A connection whose every read and write is bounded by `WAIT`.
pub fn client(addr: SocketAddr) -> redis::Connection {
    let c = try_conn(addr).unwrap_or_else(|| panic!("connect to {addr}"));
    c.set_read_timeout(Some(super::WAIT)).unwrap();
    c.set_write_timeout(Some(super::WAIT)).unwrap();
    c
}
