//! kv against a real Redis 7 (Debian's redis-server): RDB replication both ways,
//! persistence after kill -9, transactions through redis-py. Each test skips with
//! a notice when the tool it needs is missing (`.ci/run` installs them).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};

use common::{eventually, Lb, TempDir};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[allow(dead_code)] // used by the transaction test
fn have_redis_py() -> bool {
    Command::new("python3")
        .args(["-c", "import redis"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A free loopback port (redis-server needs a number, not 0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A redis-server child killed on drop.
struct Redis {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    fn start(extra: &[&str]) -> Redis {
        let dir = TempDir::new("redis");
        let port = free_port();
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
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let r = Redis {
            child,
            addr,
            _dir: dir,
        };
        eventually("redis-server to answer", || {
            let mut c = redis::Client::open(format!("redis://{addr}/"))
                .ok()?
                .get_connection()
                .ok()?;
            redis::cmd("PING").query::<String>(&mut c).ok()
        });
        r
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("redis.log")).unwrap_or_default()
    }
}

fn client(addr: SocketAddr) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection()
        .unwrap()
}

fn info(c: &mut redis::Connection, section: &str) -> String {
    redis::cmd("INFO").arg(section).query(c).unwrap()
}

fn field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

fn start_kv(extra: &str) -> (Lb, SocketAddr) {
    let lb = Lb::start(&format!("kv main\n    bind 127.0.0.1:0\n{extra}"), 1);
    let a = lb.addr("kv", "main");
    (lb, a)
}

#[test]
fn a_redis_replica_of_kv_loads_every_key_with_its_ttl() {
    if !have("redis-server") {
        eprintln!("SKIPPED: redis-server not installed (apt-get install redis-server)");
        return;
    }
    let (_lb, kv) = start_kv("");
    let mut k = client(kv);
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("SET")
            .arg(format!("key:{i}"))
            .arg(format!("value-{i}"))
            .ignore();
    }
    pipe.cmd("SET")
        .arg("ttl")
        .arg("12345")
        .arg("EX")
        .arg(1000)
        .ignore();
    let () = pipe.query(&mut k).unwrap();

    let replica = Redis::start(&["--replicaof", "127.0.0.1", &kv.port().to_string()]);
    let mut r = client(replica.addr);
    eventually("the Redis replica to load kv's RDB", || {
        let i = info(&mut r, "replication");
        (field(&i, "master_link_status").as_deref() == Some("up")).then_some(())
    });
    let n: i64 = redis::cmd("DBSIZE").query(&mut r).unwrap();
    assert_eq!(n, 2001, "redis log:\n{}", replica.log());
    let v: String = redis::cmd("GET").arg("key:1999").query(&mut r).unwrap();
    assert_eq!(v, "value-1999");
    let ttl: i64 = redis::cmd("TTL").arg("ttl").query(&mut r).unwrap();
    assert!((990..=1000).contains(&ttl), "ttl {ttl}");
    let v: String = redis::cmd("GET").arg("ttl").query(&mut r).unwrap();
    assert_eq!(v, "12345");

    // Then the stream: a new write on kv reaches the Redis replica.
    let () = redis::cmd("SET")
        .arg("after")
        .arg("sync")
        .query(&mut k)
        .unwrap();
    eventually("the streamed write on the Redis replica", || {
        redis::cmd("GET")
            .arg("after")
            .query::<Option<String>>(&mut r)
            .ok()
            .flatten()
    });
    // Its ACKs reach kv: WAIT counts it.
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut k).unwrap();
    assert_eq!(acked, 1);
}

#[test]
fn kv_replicates_from_a_redis_primary_then_follows_its_stream() {
    if !have("redis-server") {
        eprintln!("SKIPPED: redis-server not installed (apt-get install redis-server)");
        return;
    }
    for diskless in ["no", "yes"] {
        let primary = Redis::start(&[
            "--repl-diskless-sync",
            diskless,
            "--repl-diskless-sync-delay",
            "0",
        ]);
        let mut p = client(primary.addr);
        let mut pipe = redis::pipe();
        for i in 0..999 {
            // Values of every RDB string encoding: ints, short, long compressible (LZF).
            let v = match i % 3 {
                0 => i.to_string(),
                1 => format!("v{i}"),
                _ => "x".repeat(100 + i),
            };
            pipe.cmd("SET").arg(format!("k{i}")).arg(v).ignore();
        }
        pipe.cmd("SET")
            .arg("ttl")
            .arg("v")
            .arg("EX")
            .arg(1000)
            .ignore();
        let () = pipe.query(&mut p).unwrap();

        let (lb, kv) = start_kv(&format!("    replicaof {}\n", primary.addr));
        let mut k = client(kv);
        eventually("kv to load Redis's RDB", || {
            let n: i64 = redis::cmd("DBSIZE").query(&mut k).ok()?;
            (n == 1000).then_some(())
        });
        let v: String = redis::cmd("GET").arg("k998").query(&mut k).unwrap();
        assert_eq!(v, "x".repeat(1098));
        let v: String = redis::cmd("GET").arg("k3").query(&mut k).unwrap();
        assert_eq!(v, "3");
        let ttl: i64 = redis::cmd("TTL").arg("ttl").query(&mut k).unwrap();
        assert!((990..=1000).contains(&ttl), "ttl {ttl}");

        let () = redis::cmd("SET")
            .arg("new")
            .arg("write")
            .query(&mut p)
            .unwrap();
        eventually("the streamed write on kv", || {
            redis::cmd("GET")
                .arg("new")
                .query::<Option<String>>(&mut k)
                .ok()
                .flatten()
        });
        let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut p).unwrap();
        assert_eq!(acked, 1, "diskless {diskless}");

        // A command kv does not implement: the replica says it diverged.
        let _: i64 = redis::cmd("PFADD")
            .arg("hll")
            .arg("a")
            .query(&mut p)
            .unwrap();
        eventually("kv to report the divergence", || {
            let i = info(&mut k, "replication");
            (field(&i, "kv_diverged").as_deref() == Some("1")).then_some(i)
        });
        lb.wait_log("diverged");
    }
}
