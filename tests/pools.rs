//! Server pools: algorithms and weights, backups, health checks, retries under a
//! killed server, hot reload under load, invalid reloads, all-down behaviour.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::Client;
use common::servers::{http_server, http_server_at, HttpServer};
use common::Lb;

/// An HTTP conf with one frontend `f` and backend `b` of the given server lines.
fn conf(backend_extra: &str, servers: &[String]) -> String {
    let mut c = String::from(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n    retries 2\n    option redispatch\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n",
    );
    c.push_str(backend_extra);
    for s in servers {
        c.push_str(&format!("    server {s}\n"));
    }
    c
}

fn srv(name: &str, s: &HttpServer, opts: &str) -> String {
    format!("{name} {} {opts}", s.addr)
}

fn tally(c: &mut Client, n: usize) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for _ in 0..n {
        let r = c.get("/");
        assert_eq!(r.status, 200);
        *m.entry(r.header("x-server").unwrap().to_string())
            .or_default() += 1;
    }
    m
}

fn sequence(c: &mut Client, n: usize) -> String {
    (0..n)
        .map(|_| c.get("/").header("x-server").unwrap_or("-").to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn weighted_round_robin_is_smooth() {
    let (a, b, c) = (http_server("a"), http_server("b"), http_server("c"));
    let lb = Lb::start(
        &conf(
            "",
            &[srv("a", &a, "weight 5"), srv("b", &b, ""), srv("c", &c, "")],
        ),
        1,
    );
    let mut cl = Client::connect(lb.addr("frontend", "f"));
    assert_eq!(sequence(&mut cl, 14), "a a b a c a a a a b a c a a");
}

#[test]
fn leastconn_source_and_random_distribute() {
    let (a, b) = (http_server("a"), http_server("b"));
    // leastconn with sequential requests: every pick is a tie, broken by rotation.
    let lb = Lb::start(
        &conf(
            "    balance leastconn\n",
            &[srv("a", &a, ""), srv("b", &b, "")],
        ),
        1,
    );
    let t = tally(&mut Client::connect(lb.addr("frontend", "f")), 20);
    assert_eq!((t["a"], t["b"]), (10, 10), "{t:?}");
    // source: one client address always lands on one server.
    let lb = Lb::start(
        &conf(
            "    balance source\n",
            &[srv("a", &a, ""), srv("b", &b, "")],
        ),
        1,
    );
    let fe = lb.addr("frontend", "f");
    let first = tally(&mut Client::connect(fe), 10);
    assert_eq!(first.len(), 1, "{first:?}");
    let again = tally(&mut Client::connect(fe), 10);
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        again.keys().collect::<Vec<_>>()
    );
    // random: both servers get a real share.
    let lb = Lb::start(
        &conf(
            "    balance random\n",
            &[srv("a", &a, ""), srv("b", &b, "")],
        ),
        1,
    );
    let t = tally(&mut Client::connect(lb.addr("frontend", "f")), 200);
    assert!(
        t.get("a").copied().unwrap_or(0) > 50 && t.get("b").copied().unwrap_or(0) > 50,
        "{t:?}"
    );
}

#[test]
fn health_transitions_follow_rise_and_fall_and_backup_takes_over() {
    let mut a = http_server("a");
    let k = http_server("k");
    let addr = a.addr;
    let lb = Lb::start(
        &conf(
            "    option httpchk GET /healthz\n",
            &[
                srv("a", &a, "check inter 50ms rise 2 fall 2"),
                srv("k", &k, "backup check inter 50ms rise 2 fall 2"),
            ],
        ),
        1,
    );
    // Checked before taking traffic: the first pass brings each server up.
    lb.wait_log("server b/a is UP (reason: check passed, 1/1 succeeded)");
    let mut cl = Client::connect(lb.addr("frontend", "f"));
    assert_eq!(tally(&mut cl, 4).get("a"), Some(&4));
    // Two failed checks take it down; the backup takes all traffic.
    a.kill();
    lb.wait_log("server b/a is DOWN (reason: connect refused, 2/2 failed)");
    let mut cl = Client::connect(lb.addr("frontend", "f"));
    assert_eq!(tally(&mut cl, 4).get("k"), Some(&4));
    // Back on the same port: two passed checks, and new requests go to it again.
    let _a2 = http_server_at(addr, "a");
    lb.wait_log("server b/a is UP (reason: check passed, 2/2 succeeded)");
    assert_eq!(tally(&mut cl, 4).get("a"), Some(&4));
    // Each transition was logged once.
    assert_eq!(lb.log_count("server b/a is DOWN"), 1);
    assert_eq!(lb.log_count("server b/a is UP"), 2);
}

#[test]
fn httpchk_expect_status() {
    let a = http_server("a");
    // The test server answers /status/404 with 404: expecting 200 fails the check.
    let lb = Lb::start(
        &conf(
            "    option httpchk GET /status/404\n    http-check expect status 200\n",
            &[srv("a", &a, "check inter 50ms fall 1")],
        ),
        1,
    );
    lb.wait_log("server b/a is DOWN (reason: HTTP status 404, 1/1 failed)");
    let mut cl = Client::connect(lb.addr("frontend", "f"));
    assert_eq!(cl.get("/").status, 503);
}

#[test]
fn all_servers_down_answers_at_once() {
    let (mut a, mut b) = (http_server("a"), http_server("b"));
    let c = conf(
        "",
        &[
            srv("a", &a, "check inter 50ms fall 1"),
            srv("b", &b, "check inter 50ms fall 1 backup"),
        ],
    )
    .replace("timeout connect 1s", "timeout connect 30s");
    let lb = Lb::start(&c, 1);
    lb.wait_log("server b/a is UP");
    a.kill();
    b.kill();
    lb.wait_log_count("is DOWN", 2);
    let t = Instant::now();
    let mut cl = Client::connect(lb.addr("frontend", "f"));
    assert_eq!(cl.get("/").status, 503);
    // No connect was attempted: far below the 30 s connect timeout.
    assert!(t.elapsed() < Duration::from_secs(10));

    // TCP mode closes the client at once.
    let mut t1 = http_server("t");
    let tcp = format!("defaults\n    mode tcp\n    timeout connect 30s\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server t {} check inter 50ms fall 1\n", t1.addr);
    let lb = Lb::start(&tcp, 1);
    lb.wait_log("server b/t is UP");
    t1.kill();
    lb.wait_log("server b/t is DOWN");
    let mut s = common::connect(lb.addr("frontend", "f"));
    let mut buf = [0u8; 8];
    use std::io::Read;
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
}

/// Runs `threads` keep-alive clients doing GETs until `stop`; returns (ok, failed).
fn load(
    fe: SocketAddr,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, usize)> {
    std::thread::spawn(move || {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut ok, mut failed) = (0, 0);
                    let mut c = Client::connect(fe);
                    while !stop.load(Ordering::Relaxed) {
                        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
                        match c.read(false) {
                            Some(r) if r.status == 200 => ok += 1,
                            other => {
                                eprintln!("failed request: {other:?}");
                                failed += 1;
                                c = Client::connect(fe);
                            }
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    })
}

#[test]
fn killed_server_under_load_costs_no_request() {
    let (mut a, b) = (http_server("a"), http_server("b"));
    let lb = Lb::start(&conf("", &[srv("a", &a, ""), srv("b", &b, "")]), 1);
    let stop = Arc::new(AtomicBool::new(false));
    let runner = load(lb.addr("frontend", "f"), 4, stop.clone());
    // Let traffic reach both servers, then kill one mid-load.
    let deadline = Instant::now() + common::WAIT;
    while a.requests.load(Ordering::SeqCst) < 200 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    a.kill();
    let before = b.requests.load(Ordering::SeqCst);
    while b.requests.load(Ordering::SeqCst) < before + 500 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = runner.join().unwrap();
    assert!(ok > 500, "only {ok} requests");
    assert_eq!(failed, 0, "{failed} failed GETs of {}", ok + failed);
}

#[test]
fn reloads_under_load_lose_nothing_and_keep_health() {
    let servers: Vec<HttpServer> = (0..4).map(|i| http_server(&format!("s{i}"))).collect();
    let lines = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| srv(&format!("s{i}"), &servers[i], "check inter 100ms"))
            .collect()
    };
    let lb = Lb::start(&conf("", &lines(2)), 1);
    lb.wait_log_count("server b/s0 is UP", 1);
    lb.wait_log_count("server b/s1 is UP", 1);
    let stop = Arc::new(AtomicBool::new(false));
    let runner = load(lb.addr("frontend", "f"), 3, stop.clone());
    // 20 reloads that add and remove servers; s0 and s1 never change.
    for i in 0..20 {
        let n = 2 + (i % 3);
        lb.reload(&conf("", &lines(n)));
        lb.wait_log_count("reloaded:", i + 1);
    }
    // Keep the load going until the last configuration served some requests.
    let total = || {
        servers
            .iter()
            .map(|s| s.requests.load(Ordering::SeqCst))
            .sum::<usize>()
    };
    let t0 = total();
    let deadline = Instant::now() + common::WAIT;
    while total() < t0 + 200 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = runner.join().unwrap();
    assert!(ok > 200, "only {ok} requests");
    assert_eq!(failed, 0);
    // The unchanged servers kept their health through every reload: each
    // went up exactly once, at start.
    assert_eq!(lb.log_count("server b/s0 is UP"), 1);
    assert_eq!(lb.log_count("server b/s1 is UP"), 1);
    assert_eq!(lb.log_count("reloaded:"), 20);
    // Added servers took traffic.
    assert!(servers[2].requests.load(Ordering::SeqCst) > 0);
}

#[test]
fn invalid_reload_changes_nothing() {
    let (a, b) = (http_server("a"), http_server("b"));
    let good = conf("", &[srv("a", &a, "")]);
    let lb = Lb::start(&good, 1);
    let mut cl = Client::connect(lb.addr("frontend", "f"));
    assert_eq!(cl.get("/").header("x-server"), Some("a"));
    // A typo on line 13: the reload fails with FILE:LINE and nothing changes.
    let bad = format!("{}    srever b {}\n", conf("", &[srv("a", &a, "")]), b.addr);
    lb.reload(&bad);
    let line = lb.wait_log("reload failed:");
    assert!(
        line.contains(&format!(
            "{}:13: unknown keyword 'srever'",
            lb.conf_path.display()
        )),
        "{line}"
    );
    for _ in 0..4 {
        assert_eq!(cl.get("/").header("x-server"), Some("a"));
    }
    assert_eq!(b.requests.load(Ordering::SeqCst), 0);
}

#[test]
fn reload_opens_and_closes_listeners() {
    let a = http_server("a");
    let base = conf("", &[srv("a", &a, "")]);
    let lb = Lb::start(&base, 1);
    let f = lb.addr("frontend", "f");
    // Add a frontend: its listener opens and announces its port.
    let with_g = format!("{base}frontend g\n    bind 127.0.0.1:0\n    default_backend b\n");
    lb.reload(&with_g);
    let line = lb.wait_listening();
    assert!(line.starts_with("listening frontend g "), "{line}");
    let g: SocketAddr = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert_eq!(Client::connect(g).get("/").status, 200);
    // The unchanged listener kept its socket: an open connection still works.
    let mut kept = Client::connect(f);
    assert_eq!(kept.get("/").status, 200);
    // Remove it again: the port closes, f keeps serving.
    lb.reload(&base);
    lb.wait_log("closed listener of frontend g");
    let deadline = Instant::now() + common::WAIT;
    while std::net::TcpStream::connect(g).is_ok() {
        assert!(Instant::now() < deadline, "listener g still open");
        std::thread::yield_now();
    }
    assert_eq!(kept.get("/").status, 200);
    let served = Arc::new(AtomicUsize::new(0));
    served.fetch_add(
        Client::connect(f).get("/").status as usize,
        Ordering::SeqCst,
    );
    assert_eq!(served.load(Ordering::SeqCst), 200);
}

/// The bar: during a load run, 20 hot reloads that add and remove
/// servers and one killed server cost no request, and the unchanged servers
/// keep their health state. `LB_SOAK_SECS` sets the run length (default 6;
/// the README's figure uses 20).
#[test]
fn soak_reloads_and_a_kill_under_load() {
    let secs: u64 = std::env::var("LB_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut servers: Vec<HttpServer> = (0..4).map(|i| http_server(&format!("s{i}"))).collect();
    let lines = |servers: &[HttpServer], n: usize| -> Vec<String> {
        (0..n)
            .map(|i| srv(&format!("s{i}"), &servers[i], "check inter 100ms"))
            .collect()
    };
    let lb = Lb::start(&conf("", &lines(&servers, 3)), 1);
    for i in 0..3 {
        lb.wait_log_count(&format!("server b/s{i} is UP"), 1);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let runner = load(lb.addr("frontend", "f"), 3, stop.clone());
    let start = Instant::now();
    let step = Duration::from_millis(secs * 1000 / 21);
    for i in 0..20 {
        // Pace the reloads over the run (this paces the test; it synchronizes nothing).
        while start.elapsed() < step * (i + 1) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if i == 10 {
            servers[2].kill();
        }
        lb.reload(&conf("", &lines(&servers, 3 + (i as usize % 2))));
        lb.wait_log_count("reloaded:", i as usize + 1);
    }
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = runner.join().unwrap();
    eprintln!("soak: {ok} requests, {failed} failed, {secs}s");
    assert!(ok > 500, "only {ok} requests");
    assert_eq!(failed, 0);
    assert_eq!(lb.log_count("server b/s0 is UP"), 1);
    assert_eq!(lb.log_count("server b/s1 is UP"), 1);
}
