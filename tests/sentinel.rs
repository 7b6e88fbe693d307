//! The sentinel role: automatic failover of the kv primary, and apps that follow it.
//! Real lb processes (primary, replica, sentinel + app) on loopback; the primary is
//! killed with SIGKILL during app writes and direct writes acknowledged by `WAIT 1`.
//! The same over real redis-server nodes, and a real redis-sentinel over kv nodes.
//! Tests needing a tool skip with a message when it is missing (`.ci/run` installs them).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::redis_server::{client as conn, free_port, have, have_redis_py, try_conn, Redis};
use common::{eventually, Lb, TempDir};

/// `SENTINEL get-master-addr-by-name NAME` on `s`.
fn master_of(s: SocketAddr, name: &str) -> Option<SocketAddr> {
    let mut c = try_conn(s)?;
    let v: Vec<String> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(name)
        .query(&mut c)
        .ok()?;
    format!("{}:{}", v.first()?, v.get(1)?).parse().ok()
}

/// `SENTINEL replicas NAME` as field maps.
fn replicas_of(s: SocketAddr, name: &str) -> Vec<std::collections::HashMap<String, String>> {
    let Some(mut c) = try_conn(s) else {
        return Vec::new();
    };
    redis::cmd("SENTINEL")
        .arg("replicas")
        .arg(name)
        .query::<Vec<std::collections::HashMap<String, String>>>(&mut c)
        .unwrap_or_default()
}

fn info_field(addr: SocketAddr, field: &str) -> Option<String> {
    let mut c = try_conn(addr)?;
    let info: String = redis::cmd("INFO").arg("replication").query(&mut c).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

/// One HTTP request on a new connection; the status (0: no answer).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> u16 {
    http_full(addr, method, path, body, "").0
}

/// One HTTP request with extra header lines; (status, whole response text).
fn http_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: app\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The `x-write-offset` of a write's answer.
fn write_offset(resp: &str) -> Option<u64> {
    resp.lines()
        .find_map(|l| l.strip_prefix("x-write-offset: "))
        .and_then(|v| v.trim().parse().ok())
}

/// A data node: a kv section in its own lb, or a redis-server.
enum Node {
    Kv(Lb),
    Redis(Redis),
}

impl Node {
    fn addr(&self) -> SocketAddr {
        match self {
            Node::Kv(lb) => lb.addr("kv", "n"),
            Node::Redis(r) => r.addr,
        }
    }

    /// SIGKILL: no chance to flush or hand over anything.
    fn kill(&mut self) {
        match self {
            Node::Kv(lb) => {
                lb.child.kill().unwrap();
                let _ = lb.child.wait();
            }
            Node::Redis(r) => {
                r.child.kill().unwrap();
                let _ = r.child.wait();
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Kv,
    Redis,
}

fn node(kind: Kind, port: u16, replicaof: Option<SocketAddr>) -> Node {
    match kind {
        Kind::Kv => {
            let mut conf = format!("kv n\n    bind 127.0.0.1:{port}\n");
            if let Some(p) = replicaof {
                conf.push_str(&format!("    replicaof {p}\n"));
            }
            Node::Kv(Lb::start(&conf, 1))
        }
        Kind::Redis => {
            let of = replicaof.map(|p| format!("127.0.0.1 {}", p.port()));
            let mut extra = Vec::new();
            if let Some(of) = &of {
                extra.extend(["--replicaof", of.as_str()]);
            }
            Node::Redis(Redis::start_on(port, &extra))
        }
    }
}

/// The sentinel and the app following it, in one lb.
fn sentinel_and_app(primary: SocketAddr, down_after: &str) -> (Lb, SocketAddr, SocketAddr) {
    let sport = free_port();
    let conf = format!(
        "global\n    admin 127.0.0.1:0\n\
         sentinel watch\n    bind 127.0.0.1:{sport}\n    monitor db {primary} 1\n    down-after {down_after}\n    failover-timeout 5s\n\
         app web\n    bind 127.0.0.1:0\n    kv-sentinel 127.0.0.1:{sport} db\n    timeout kv 1s\n"
    );
    let lb = Lb::start(&conf, 3);
    let (s, a) = (lb.addr("sentinel", "watch"), lb.addr("app", "web"));
    (lb, s, a)
}

/// What one writer saw: (when, status, i).
type Log = Arc<Mutex<Vec<(Instant, u16, u64)>>>;

/// The issue's bar, over kv nodes or redis-server nodes.
fn primary_killed_during_writes(kind: Kind) {
    let pport = free_port();
    let mut primary = node(kind, pport, None);
    let p_addr = primary.addr();
    let replica = node(kind, free_port(), Some(p_addr));
    let r_addr = replica.addr();
    let (sent_lb, sentinel, app) = sentinel_and_app(p_addr, "500ms");

    // The sentinel found the replica through the primary's INFO, linked and in sync.
    eventually("the sentinel to know the replica", || {
        replicas_of(sentinel, "db")
            .iter()
            .any(|r| {
                r.get("port") == Some(&r_addr.port().to_string())
                    && r.get("master-link-status").map(String::as_str) == Some("ok")
            })
            .then_some(())
    });
    // A write whose read-your-writes token must hold across the failover.
    let token = eventually("the app to write", || {
        let (st, text) = http_full(app, "PUT", "/api/items/before", "kept", "");
        (st == 200).then(|| write_offset(&text)).flatten()
    });

    let stop = Arc::new(AtomicBool::new(false));
    // App writes, each on a new connection, as fast as they are answered.
    let app_log: Log = Arc::default();
    let app_writer = {
        let (stop, log) = (stop.clone(), app_log.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let st = http(app, "PUT", &format!("/api/items/app:{i}"), &i.to_string());
                log.lock().unwrap().push((Instant::now(), st, i));
            }
        })
    };
    // Direct writes on the primary, each acknowledged by one replica (WAIT 1).
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let direct = {
        let (stop, acked) = (stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let Some(mut c) = try_conn(p_addr) else {
                return;
            };
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let set: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(format!("direct:{i}"))
                    .arg(i)
                    .query(&mut c);
                let n: redis::RedisResult<i64> = redis::cmd("WAIT").arg(1).arg(1000).query(&mut c);
                match (set, n) {
                    (Ok(()), Ok(n)) if n >= 1 => acked.lock().unwrap().push(i),
                    (Ok(()), Ok(_)) => {}
                    _ => return, // the primary is gone
                }
            }
        })
    };
    eventually("writes of both kinds", || {
        (acked.lock().unwrap().len() >= 50
            && app_log
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.1 == 200)
                .count()
                >= 20)
            .then_some(())
    });

    let killed_at = Instant::now();
    primary.kill();
    eventually("the sentinel to switch to the replica", || {
        (master_of(sentinel, "db") == Some(r_addr)).then_some(())
    });
    let switched_at = Instant::now();
    eventually("app writes to succeed again", || {
        app_log
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.0 > switched_at && e.1 == 200)
            .then_some(())
    });
    let resumed = app_log
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.0 > killed_at && e.1 == 200)
        .map(|e| e.0);
    // Some more writes on the new primary, then stop.
    let n = app_log.lock().unwrap().len();
    eventually("more app writes", || {
        (app_log.lock().unwrap().len() >= n + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    app_writer.join().unwrap();
    direct.join().unwrap();

    // The longest gap between successful app writes across the failover.
    let log = app_log.lock().unwrap().clone();
    let ok: Vec<Instant> = log.iter().filter(|e| e.1 == 200).map(|e| e.0).collect();
    let gap = ok
        .windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap_or_default();
    let failed: Vec<u16> = log.iter().filter(|e| e.1 != 200).map(|e| e.1).collect();
    println!(
        "{}: longest gap between successful app writes {:.3} s; sentinel switched {:.3} s after the kill; app writes resumed {:.3} s after it; {} app writes answered 503",
        if kind == Kind::Kv { "kv nodes" } else { "redis-server nodes" },
        gap.as_secs_f64(),
        switched_at.duration_since(killed_at).as_secs_f64(),
        resumed.map_or(f64::NAN, |t| t.duration_since(killed_at).as_secs_f64()),
        failed.len()
    );
    // Writes that failed during the failover said so clearly: 503, never another answer.
    assert!(failed.iter().all(|&s| s == 503), "statuses {failed:?}");
    // Generous bound (the bar is 3 s; this is a test, not a benchmark).
    assert!(gap < Duration::from_secs(15), "gap {gap:?}");

    // The replica is the primary, with every acknowledged write.
    assert_eq!(info_field(r_addr, "role").as_deref(), Some("master"));
    let acked = acked.lock().unwrap().clone();
    let mut c = conn(r_addr);
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|i| {
            redis::cmd("GET")
                .arg(format!("direct:{i}"))
                .query::<Option<String>>(&mut c)
                .unwrap()
                != Some(i.to_string())
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acked.len()
    );
    // App writes answered 200 after the switch are on the new primary.
    for (t, st, i) in &log {
        if *st == 200 && *t > switched_at {
            let v: Option<String> = redis::cmd("GET")
                .arg(format!("app:{i}"))
                .query(&mut c)
                .unwrap();
            assert_eq!(v, Some(i.to_string()), "app write {i}");
        }
    }

    // redis-py's Sentinel client finds the new primary.
    if have_redis_py() {
        let out = Command::new("python3")
            .args([
                "-c",
                &format!(
                    "from redis.sentinel import Sentinel\nprint(Sentinel([('127.0.0.1', {})], socket_timeout=5).discover_master('db'))",
                    sentinel.port()
                ),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("'127.0.0.1', {}", r_addr.port())),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!(
            "redis-py check SKIPPED: python3 redis not installed (apt-get install python3-redis)"
        );
    }

    // The old primary restarts (empty, as a primary by its own conf): the sentinel makes
    // it a replica of the new one, and it gets the data.
    let old = node(kind, pport, None);
    eventually("the old primary to follow the new one", || {
        (info_field(old.addr(), "master_port") == Some(r_addr.port().to_string())
            && info_field(old.addr(), "master_link_status").as_deref() == Some("up"))
        .then_some(())
    });
    let last = *acked.last().expect("acknowledged writes");
    let mut o = conn(old.addr());
    let v: Option<String> = redis::cmd("GET")
        .arg(format!("direct:{last}"))
        .query(&mut o)
        .unwrap();
    assert_eq!(v, Some(last.to_string()));
    // A token from before the failover never reads older data (the direct writes acknowledged
    // by WAIT 1 after it mean the replica had it): the read is served, by whichever node.
    for _ in 0..4 {
        let (st, text) = http_full(
            app,
            "GET",
            "/api/items/before",
            "",
            &format!("X-Read-After: {token}\r\n"),
        );
        assert_eq!(st, 200, "{text}");
        assert!(text.contains("\"value\":\"kept\""), "{text}");
    }
    // /metrics says where the primary is now and that one failover happened.
    let metrics = common::client::Client::connect(sent_lb.addr("admin", "admin"))
        .get("/metrics")
        .text();
    for series in [
        format!(
            "lb_sentinel_master_address{{addr=\"{r_addr}\",master=\"db\",sentinel=\"watch\"}} 1"
        ),
        "lb_sentinel_failovers_total{master=\"db\",sentinel=\"watch\"} 1".to_string(),
        "lb_sentinel_quorum_reachable{master=\"db\",sentinel=\"watch\"} 1".to_string(),
    ] {
        assert!(metrics.contains(&series), "no {series} in\n{metrics}");
    }
    // The stats page: which node is primary now, and what happened.
    let stats = common::client::Client::connect(sent_lb.addr("admin", "admin"))
        .get("/api/stats")
        .text();
    assert!(
        stats.contains(&format!("\"primary\":\"{r_addr}\",\"status\":\"ok\"")),
        "{stats}"
    );
    assert!(stats.contains("\"failovers\":1"), "{stats}");
    assert!(stats.contains("+switch-master db"), "{stats}");
    assert!(sent_lb.log_count("+switch-master") >= 1);
    assert!(sent_lb.log_count("+convert-to-slave") >= 1 || kind == Kind::Redis);
    drop(replica);
}

#[test]
fn kv_primary_killed_during_writes_fails_over() {
    primary_killed_during_writes(Kind::Kv);
}

#[test]
fn redis_primary_killed_during_writes_fails_over() {
    if !have("redis-server") {
        eprintln!("SKIPPED: redis-server not installed (apt-get install redis-server)");
        return;
    }
    primary_killed_during_writes(Kind::Redis);
}

/// A sentinel in its own lb.
fn sentinel(primary: SocketAddr, quorum: usize) -> Lb {
    Lb::start(
        &format!(
            "sentinel s\n    bind 127.0.0.1:0\n    monitor db {primary} {quorum}\n    down-after 500ms\n    failover-timeout 3s\n"
        ),
        1,
    )
}

fn peers_of(s: SocketAddr) -> usize {
    let Some(mut c) = try_conn(s) else { return 0 };
    redis::cmd("SENTINEL")
        .arg("sentinels")
        .arg("db")
        .query::<Vec<redis::Value>>(&mut c)
        .map(|v| v.len())
        .unwrap_or(0)
}

#[test]
fn three_sentinels_promote_once_and_two_stopped_prevent_any_failover() {
    let mut primary = node(Kind::Kv, free_port(), None);
    let p = primary.addr();
    let replica = node(Kind::Kv, free_port(), Some(p));
    let r = replica.addr();
    let mut ss: Vec<Lb> = (0..3).map(|_| sentinel(p, 2)).collect();
    let addrs: Vec<SocketAddr> = ss.iter().map(|l| l.addr("sentinel", "s")).collect();
    // They find each other through the hello channel on the primary (no peer lines).
    eventually("each sentinel to know the two others", || {
        addrs.iter().all(|a| peers_of(*a) == 2).then_some(())
    });
    eventually("the sentinels to know the replica", || {
        addrs
            .iter()
            .all(|a| !replicas_of(*a, "db").is_empty())
            .then_some(())
    });
    let mut c = conn(addrs[0]);
    let ck: String = redis::cmd("SENTINEL")
        .arg("ckquorum")
        .arg("db")
        .query(&mut c)
        .unwrap();
    assert!(ck.starts_with("OK 3 usable"), "{ck}");

    // All three up: the primary dies, exactly one of them promotes the replica, all agree.
    primary.kill();
    eventually("every sentinel to name the replica", || {
        addrs
            .iter()
            .all(|a| master_of(*a, "db") == Some(r))
            .then_some(())
    });
    let promotions: usize = ss.iter().map(|l| l.log_count("+promoted-slave")).sum();
    assert_eq!(promotions, 1);
    assert_eq!(info_field(r, "role").as_deref(), Some("master"));

    // Two stopped: the last one sees the new primary die, but alone it is a minority.
    for l in ss.drain(1..) {
        drop(l);
    }
    let s0 = &ss[0];
    let sdowns = s0.log_count("+sdown master");
    drop(replica);
    s0.wait_log_count("+sdown master", sdowns + 1);
    let tries = s0.log_count("+try-failover");
    let odowns = s0.log_count("+odown");
    // Several down-after periods and more than a failover timeout: nothing may happen.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(master_of(addrs[0], "db"), Some(r));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s0.log_count("+odown"), odowns);
    assert_eq!(s0.log_count("+try-failover"), tries);
    let mut c = conn(addrs[0]);
    let ck: redis::RedisResult<String> = redis::cmd("SENTINEL")
        .arg("ckquorum")
        .arg("db")
        .query(&mut c);
    assert!(ck.is_err(), "{ck:?}");
}

#[test]
fn sentinel_protocol_answers_as_redis() {
    let primary = node(Kind::Kv, free_port(), None);
    let p = primary.addr();
    let replica = node(Kind::Kv, free_port(), Some(p));
    let r = replica.addr();
    let s = sentinel(p, 1);
    let a = s.addr("sentinel", "s");
    eventually("the replica known and linked", || {
        replicas_of(a, "db")
            .iter()
            .any(|x| x.get("master-link-status").map(String::as_str) == Some("ok"))
            .then_some(())
    });
    let mut c = conn(a);
    assert_eq!(redis::cmd("PING").query::<String>(&mut c).unwrap(), "PONG");
    let info: String = redis::cmd("INFO").arg("sentinel").query(&mut c).unwrap();
    assert!(
        info.contains(&format!(
            "master0:name=db,status=ok,address={p},slaves=1,sentinels=1"
        )),
        "{info}"
    );
    let m: std::collections::HashMap<String, String> = redis::cmd("SENTINEL")
        .arg("master")
        .arg("db")
        .query(&mut c)
        .unwrap();
    assert_eq!(m["flags"], "master");
    assert_eq!(m["num-slaves"], "1");
    assert_eq!(m["quorum"], "1");
    let e: redis::RedisResult<()> = redis::cmd("SENTINEL")
        .arg("master")
        .arg("nope")
        .query(&mut c);
    assert!(e.unwrap_err().to_string().contains("No such master"));
    let none: redis::Value = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg("nope")
        .query(&mut c)
        .unwrap();
    assert_eq!(none, redis::Value::Nil);

    // Events on pub/sub, and a forced failover (no agreement needed).
    let mut sub = conn(a);
    let mut ps = sub.as_pubsub();
    ps.subscribe("+switch-master").unwrap();
    let ok: String = redis::cmd("SENTINEL")
        .arg("failover")
        .arg("db")
        .query(&mut c)
        .unwrap();
    assert_eq!(ok, "OK");
    ps.set_read_timeout(Some(common::WAIT)).unwrap();
    let msg = ps.get_message().unwrap();
    let text: String = msg.get_payload().unwrap();
    assert_eq!(
        text,
        format!("db {} {} {} {}", p.ip(), p.port(), r.ip(), r.port())
    );
    assert_eq!(master_of(a, "db"), Some(r));
    // The old primary is still up: it is made a replica of the new one.
    eventually("the old primary to follow", || {
        (info_field(p, "master_port") == Some(r.port().to_string())).then_some(())
    });
}

#[test]
fn a_real_redis_sentinel_fails_over_kv_nodes() {
    if !have("redis-sentinel") {
        eprintln!("SKIPPED: redis-sentinel not installed (apt-get install redis-sentinel)");
        return;
    }
    let mut primary = node(Kind::Kv, free_port(), None);
    let p = primary.addr();
    let replica = node(Kind::Kv, free_port(), Some(p));
    let r = replica.addr();
    let s = Redis::sentinel(
        free_port(),
        &format!(
            "sentinel monitor db 127.0.0.1 {} 1\nsentinel down-after-milliseconds db 500\nsentinel failover-timeout db 5000\n",
            p.port()
        ),
    );
    eventually("redis-sentinel to know the replica", || {
        replicas_of(s.addr, "db")
            .iter()
            .any(|x| x.get("master-link-status").map(String::as_str) == Some("ok"))
            .then_some(())
    });
    let mut c = conn(p);
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<()>(&mut c)
        .unwrap();
    let n: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut c).unwrap();
    assert_eq!(n, 1);
    primary.kill();
    eventually("redis-sentinel to promote the kv replica", || {
        (master_of(s.addr, "db") == Some(r)).then_some(())
    });
    eventually("the kv replica to be primary", || {
        (info_field(r, "role").as_deref() == Some("master")).then_some(())
    });
    let mut c = conn(r);
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v.as_deref(), Some("v"), "{}", s.log());
}

/// A partition of the primary alone, as its peers see it: the process is frozen
/// (SIGSTOP), so connections stay open and nothing answers (no reset, only
/// timeouts). Three sentinels promote the replica exactly once; thawed, the old
/// primary is made a replica of the new one, with the writes made meanwhile.
#[test]
fn a_frozen_primary_is_failed_over_once_and_rejoins_as_replica() {
    let primary = node(Kind::Kv, free_port(), None);
    let p = primary.addr();
    let replica = node(Kind::Kv, free_port(), Some(p));
    let r = replica.addr();
    let ss: Vec<Lb> = (0..3).map(|_| sentinel(p, 2)).collect();
    let addrs: Vec<SocketAddr> = ss.iter().map(|l| l.addr("sentinel", "s")).collect();
    eventually(
        "each sentinel to know the others and the linked replica",
        || {
            addrs
                .iter()
                .all(|a| {
                    peers_of(*a) == 2
                        && replicas_of(*a, "db")
                            .iter()
                            .any(|x| x.get("master-link-status").map(String::as_str) == Some("ok"))
                })
                .then_some(())
        },
    );
    let Node::Kv(plb) = &primary else {
        unreachable!()
    };
    plb.signal(libc::SIGSTOP);
    eventually("every sentinel to name the replica", || {
        addrs
            .iter()
            .all(|a| master_of(*a, "db") == Some(r))
            .then_some(())
    });
    let mut c = conn(r);
    redis::cmd("SET")
        .arg("during")
        .arg("partition")
        .query::<()>(&mut c)
        .unwrap();
    plb.signal(libc::SIGCONT);
    eventually("the old primary to follow the new one", || {
        (info_field(p, "master_port") == Some(r.port().to_string())
            && info_field(p, "master_link_status").as_deref() == Some("up"))
        .then_some(())
    });
    let mut o = conn(p);
    let v: Option<String> = redis::cmd("GET").arg("during").query(&mut o).unwrap();
    assert_eq!(v.as_deref(), Some("partition"));
    let promotions: usize = ss.iter().map(|l| l.log_count("+promoted-slave")).sum();
    assert_eq!(promotions, 1);
    assert_eq!(info_field(r, "role").as_deref(), Some("master"));
}

/// Stderr lines of one process, collected as they come.
type Lines = Arc<Mutex<Vec<String>>>;

/// Network namespaces for the partition test: a bridge and one namespace per host,
/// each with `e0` on `10.78.0.N/24`; deleted on drop, after their processes.
struct Net {
    prefix: String,
    names: Vec<String>,
    procs: Mutex<Vec<Child>>,
    logs: Mutex<Vec<(String, Lines)>>,
}

static NET_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    fn new(hosts: &[&str]) -> Option<Net> {
        if !have("ip") {
            eprintln!("SKIPPED: iproute2 ('ip') is not installed");
            return None;
        }
        let prefix = format!(
            "lbs{}x{}",
            std::process::id(),
            NET_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let br = format!("{prefix}br");
        if let Err(e) = ip(&["netns", "add", &br]) {
            eprintln!("SKIPPED: cannot create network namespaces ({e})");
            return None;
        }
        let mut net = Net {
            prefix: prefix.clone(),
            names: vec![br.clone()],
            procs: Mutex::new(Vec::new()),
            logs: Mutex::new(Vec::new()),
        };
        let mut setup = || -> Result<(), String> {
            ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
            ip(&["-n", &br, "link", "set", "br0", "up"])?;
            for (i, h) in hosts.iter().enumerate() {
                let ns = format!("{prefix}{h}");
                ip(&["netns", "add", &ns])?;
                net.names.push(ns.clone());
                let port = format!("p{i}");
                ip(&[
                    "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "e0", "netns",
                    &ns,
                ])?;
                ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"])?;
                ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("10.78.0.{}/24", i + 1),
                    "dev",
                    "e0",
                ])?;
                ip(&["-n", &ns, "link", "set", "e0", "up"])?;
                ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            }
            Ok(())
        };
        if let Err(e) = setup() {
            eprintln!("SKIPPED: cannot build the test network ({e})");
            return None;
        }
        Some(net)
    }

    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    fn link(&self, host: &str, state: &str) {
        ip(&["-n", &self.ns(host), "link", "set", "e0", state]).expect("link state");
    }

    /// `lb --conf` with `conf` inside the host's namespace; its stderr kept.
    fn lb(&self, host: &str, conf: &str) {
        let dir = TempDir::new("netns-conf");
        let path = dir.path().join("lb.conf");
        std::fs::write(&path, conf).unwrap();
        let mut c = Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .arg(common::lb_bin())
            .arg("--conf")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lb in a namespace");
        let lines: Lines = Arc::default();
        let (err, l2) = (c.stderr.take().expect("stderr"), lines.clone());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(l);
            }
        });
        self.logs.lock().unwrap().push((host.to_string(), lines));
        self.procs.lock().unwrap().push(c);
        // The conf file must outlive the start only.
        std::mem::forget(dir);
    }

    fn log_count(&self, needle: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| {
                l.lock()
                    .unwrap()
                    .iter()
                    .filter(|x| x.contains(needle))
                    .count()
            })
            .sum()
    }

    /// Runs `f` on a thread inside the host's namespace.
    fn run<T: Send + 'static>(&self, host: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        use std::os::fd::AsRawFd;
        let path = format!("/var/run/netns/{}", self.ns(host));
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).expect("open netns");
            // SAFETY: moves this thread (only) into the namespace.
            let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (h, l) in self.logs.lock().unwrap().iter() {
                for line in l.lock().unwrap().iter() {
                    eprintln!("[{h}] {line}");
                }
            }
        }
        for c in self.procs.lock().unwrap().iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in self.names.iter().rev() {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

/// The primary alone cut off (its link down: no resets, no answers) from its replica
/// and three sentinels (quorum 2): exactly one promotion; its link back up, it is
/// made a replica of the new primary.
#[test]
fn a_partitioned_primary_is_replaced_by_exactly_one_promotion() {
    let Some(net) = Net::new(&["p", "r", "s1", "s2", "s3"]) else {
        return;
    };
    let (p, r) = ("10.78.0.1:6379", "10.78.0.2:6379");
    net.lb("p", &format!("kv n\n    bind {p}\n"));
    net.lb("r", &format!("kv n\n    bind {r}\n    replicaof {p}\n"));
    for (i, s) in ["s1", "s2", "s3"].iter().enumerate() {
        net.lb(
            s,
            &format!(
                "sentinel s\n    bind 10.78.0.{}:26379\n    monitor db {p} 2\n    down-after 500ms\n    failover-timeout 3s\n",
                i + 3
            ),
        );
    }
    let sentinels: Vec<SocketAddr> = (3..=5)
        .map(|i| format!("10.78.0.{i}:26379").parse().unwrap())
        .collect();
    let (pa, ra): (SocketAddr, SocketAddr) = (p.parse().unwrap(), r.parse().unwrap());
    let ss = sentinels.clone();
    net.run("s1", move || {
        eventually(
            "the sentinels to know each other and the linked replica",
            || {
                ss.iter()
                    .all(|a| {
                        peers_of(*a) == 2
                            && replicas_of(*a, "db").iter().any(|x| {
                                x.get("master-link-status").map(String::as_str) == Some("ok")
                            })
                    })
                    .then_some(())
            },
        )
    });
    net.link("p", "down");
    let ss = sentinels.clone();
    net.run("s1", move || {
        eventually("every sentinel to name the replica", || {
            ss.iter()
                .all(|a| master_of(*a, "db") == Some(ra))
                .then_some(())
        })
    });
    assert_eq!(net.log_count("+promoted-slave"), 1);
    net.link("p", "up");
    let followed = net.run("s1", move || {
        let deadline = Instant::now() + common::WAIT;
        while Instant::now() < deadline {
            if info_field(pa, "master_host").as_deref() == Some("10.78.0.2")
                && info_field(pa, "master_link_status").as_deref() == Some("up")
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // What the old primary says, for the failure message.
        let info = try_conn(pa).and_then(|mut c| {
            redis::cmd("INFO")
                .arg("replication")
                .query::<String>(&mut c)
                .ok()
        });
        Err(info)
    });
    assert!(
        followed.is_ok(),
        "the old primary does not follow the new one: {followed:?}"
    );
    assert_eq!(net.log_count("+promoted-slave"), 1);
    let role = net.run("s1", move || info_field(ra, "role"));
    assert_eq!(role.as_deref(), Some("master"));
}
