//! Monitoring of the whole www.foobar.com design: `conf/foobar.conf` run by one
//! `lb` on ephemeral ports, its web, app and kv tiers in `/metrics` and the
//! stats JSON; promtool on the exposition and on the shipped alert rules.
//!
//! The file's fixed ports are replaced without a race: the process starts with
//! its kv, web and app sections on port 0, then a reload points the app, web,
//! backend and replica addresses at what they bound and adds the frontend.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use common::client::Client;
use common::{eventually, Lb};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn foobar() -> String {
    std::fs::read_to_string(format!("{ROOT}/conf/foobar.conf")).expect("conf/foobar.conf")
}

/// Sections in file order: ("KIND NAME", text).
fn sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let starts = line
            .chars()
            .next()
            .is_some_and(|c| !c.is_whitespace() && c != '#');
        if starts {
            let key: Vec<&str> = line
                .split('#')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .take(2)
                .collect();
            out.push((key.join(" "), format!("{line}\n")));
        } else if let Some((_, t)) = out.last_mut() {
            t.push_str(&format!("{line}\n"));
        }
    }
    out
}

/// foobar.conf with every bind on port 0, the admin too, the site's root absolute.
/// `keep`: which sections; `real`: conf address -> running address, replaced in
/// every line but binds; `replicaof`: keep that line.
fn rewrite(
    keep: &dyn Fn(&str) -> bool,
    real: &HashMap<String, SocketAddr>,
    replicaof: bool,
) -> (String, Vec<(String, String)>) {
    let mut text = String::new();
    let mut binds = Vec::new();
    for (key, sec) in sections(&foobar()) {
        // The sentinel is tested in tests/sentinel.rs; here the apps use the kv
        // tier at fixed addresses, so the test's manual role changes stay its own.
        if !(key == "global" || key == "defaults" || keep(&key)) || key.starts_with("sentinel ") {
            continue;
        }
        for line in sec.lines() {
            let t = line.trim_start();
            let mut l = line.to_string();
            if let Some(rest) = t.strip_prefix("bind ") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                binds.push((key.clone(), addr.to_string()));
                l = l.replacen(addr, "127.0.0.1:0", 1);
            } else if t.starts_with("admin ") {
                l = "    admin 127.0.0.1:0".into();
            } else if t.starts_with("replicaof ") && !replicaof {
                continue;
            } else if t.starts_with("kv-sentinel ") {
                l = "    kv-primary 127.0.0.1:6379\n    kv-replica 127.0.0.1:6380".into();
                for (from, to) in real {
                    l = l.replace(from.as_str(), &to.to_string());
                }
            } else if t.starts_with("root www") {
                l = format!("    root {ROOT}/conf/www");
            } else {
                for (from, to) in real {
                    l = l.replace(from.as_str(), &to.to_string());
                }
            }
            text.push_str(&l);
            text.push('\n');
        }
    }
    (text, binds)
}

/// The running design and the addresses it bound.
struct Foobar {
    lb: Lb,
    admin: SocketAddr,
    www: SocketAddr,
    www_tls: SocketAddr,
}

impl Foobar {
    fn start() -> Foobar {
        let tiers =
            |k: &str| k.starts_with("kv ") || k.starts_with("web ") || k.starts_with("app ");
        let (first, binds) = rewrite(&tiers, &HashMap::new(), false);
        let lb = Lb::start(&first, binds.len() + 1);
        let mut real = HashMap::new();
        for (key, addr) in &binds {
            let (kind, name) = key.split_once(' ').expect("KIND NAME");
            real.insert(addr.clone(), lb.addr(kind, name));
        }
        let admin = lb.addr("admin", "admin");
        // Everything, pointed at the real addresses; kv, web and app keep their binds.
        let (full, _) = rewrite(&|_| true, &real, true);
        lb.reload(&full);
        // The frontend's two binds (plain and TLS), announced in conf order.
        let www: SocketAddr = lb
            .wait_listening()
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .expect("frontend address");
        let www_tls: SocketAddr = lb
            .wait_listening()
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .expect("frontend TLS address");
        // The replica follows the primary (the file's `replicaof`, at its real address).
        let primary = lb.addr("kv", "primary");
        let replica = lb.addr("kv", "replica");
        let ok = resp(
            replica,
            &["REPLICAOF", "127.0.0.1", &primary.port().to_string()],
        );
        assert!(ok.starts_with("+OK"), "{ok}");
        lb.wait_log_count("server web/server1 is UP", 1);
        lb.wait_log_count("server web/server2 is UP", 1);
        let f = Foobar {
            lb,
            admin,
            www,
            www_tls,
        };
        eventually("the replica to be in sync", || {
            f.stats().contains("\"link_up\":true").then_some(())
        });
        f
    }

    fn admin_get(&self, path: &str) -> String {
        let r = Client::connect(self.admin).get(path);
        assert_eq!(r.status, 200, "{path}");
        r.text()
    }

    fn metrics(&self) -> String {
        self.admin_get("/metrics")
    }

    fn stats(&self) -> String {
        self.admin_get("/api/stats")
    }
}

/// One RESP command; the first line of the answer.
fn resp(addr: SocketAddr, cmd: &[&str]) -> String {
    let mut s = common::connect(addr);
    let mut out = format!("*{}\r\n", cmd.len());
    for a in cmd {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(out.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line
}

/// The value of the sample `name{labels}` (labels as printed, sorted), 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipping: promtool not installed (Debian package prometheus)");
    }
    found.then_some("promtool")
}

/// `promtool ARGS` with `stdin`; (success, stdout + stderr).
fn run_promtool(args: &[&str], stdin: &[u8]) -> (bool, String) {
    let mut c = Command::new("promtool")
        .args(args)
        .current_dir(ROOT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    c.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = c.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The bar: every tier counted, named and checked.
#[test]
fn foobar_conf_is_monitored_end_to_end() {
    let f = Foobar::start();
    let web1 = f.lb.addr("web", "server1");
    let before = f.metrics();
    let ok = "lb_web_requests_total{code=\"2xx\",kind=\"static\",web=\"server1\"}";
    let missing = "lb_web_requests_total{code=\"4xx\",kind=\"static\",web=\"server1\"}";
    let mut c = Client::connect(web1);
    for _ in 0..20 {
        assert_eq!(c.get("/index.html").status, 200);
    }
    for _ in 0..20 {
        assert_eq!(c.get("/no-such-page").status, 404);
    }
    let after = f.metrics();
    // Health checks (GET /healthz, 2xx) may land in between: 2xx grew by at least 20.
    assert!(sample(&after, ok) - sample(&before, ok) >= 20.0, "{after}");
    assert_eq!(sample(&after, missing) - sample(&before, missing), 20.0);
    assert!(after.contains("lb_web_request_duration_seconds_bucket{kind=\"static\""));
    assert!(after.contains("lb_web_open_files{web=\"server1\"} 0"));

    // A write and a read through the whole chain: frontend -> web -> app -> kv.
    let mut c = Client::connect(f.www);
    c.send(b"PUT /api/items/mon HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nok");
    let put = c.read(false).expect("PUT answer");
    assert_eq!(put.status, 200, "{}", put.text());
    let token = put.header("x-write-offset").expect("offset").to_string();
    c.send(
        format!("GET /api/items/mon HTTP/1.1\r\nHost: localhost\r\nX-Read-After: {token}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(c.read(false).expect("GET answer").status, 200);
    let m = f.metrics();
    let app_item: f64 = ["app1", "app2"]
        .iter()
        .map(|a| {
            sample(
                &m,
                &format!("lb_app_requests_total{{app=\"{a}\",code=\"2xx\",endpoint=\"item\"}}"),
            )
        })
        .sum();
    assert_eq!(app_item, 2.0, "{m}");
    let primary_calls: f64 = ["app1", "app2"]
        .iter()
        .map(|a| {
            sample(
                &m,
                &format!("lb_app_kv_calls_total{{app=\"{a}\",role=\"primary\"}}"),
            )
        })
        .sum();
    assert!(primary_calls >= 1.0, "{m}");
    for series in [
        "lb_app_kv_call_duration_seconds_bucket{app=\"app1\"",
        "lb_app_read_fallbacks_total{app=\"app2\",reason=\"replica_behind\"}",
        "lb_kv_commands_total{command=",
        "lb_kv_keys{kv=\"primary\"} 1",
        "lb_kv_replication_role{kv=\"replica\",role=\"replica\"} 1",
        "lb_kv_master_link_up{kv=\"replica\"} 1",
        "lb_kv_replica_lag_seconds{kv=\"primary\"",
        "lb_kv_replica_online{kv=\"primary\"",
        "lb_kv_syncs_total{kv=\"primary\",type=\"full\"} 1",
        "lb_kv_memory_used_bytes{kv=\"primary\"}",
        "lb_web_requests_total{code=\"2xx\",kind=\"forwarded\",web=\"server",
        "lb_tls_certificate_expiry_timestamp_seconds{bind=",
    ] {
        assert!(m.contains(series), "no {series} in\n{m}");
    }

    // A client that does not speak TLS to the TLS bind: a failure, by reason.
    let mut t = common::connect(f.www_tls);
    t.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let _ = std::io::Read::read_to_end(&mut t, &mut Vec::new());
    let m = eventually("the failed handshake counted", || {
        let m = f.metrics();
        m.contains(
            "lb_tls_handshake_failures_total{frontend=\"www.foobar.com\",reason=\"bad_message\"} 1",
        )
        .then_some(m)
    });
    assert!(
        m.contains("lb_tls_handshakes_total{frontend=\"www.foobar.com\"} 0"),
        "{m}"
    );
    dashboard_queries_exist(&m);

    // The stats JSON names every part of the design.
    let s = f.stats();
    for name in ["server1", "server2", "app1", "app2", "primary", "replica"] {
        assert!(s.contains(&format!("\"name\":\"{name}\"")), "{name} in {s}");
    }
    // Binds as they listen (the conf says port 0), TLS marked.
    assert!(
        s.contains(&format!("{{\"addr\":\"{}\",\"tls\":true", f.www_tls)),
        "{s}"
    );

    if promtool().is_some() {
        let (ok, out) = run_promtool(&["check", "metrics"], m.as_bytes());
        assert!(
            ok && out.trim().is_empty(),
            "promtool check metrics:\n{out}"
        );
    }
}

/// Every metric the Grafana dashboard queries is in `exposition`.
fn dashboard_queries_exist(exposition: &str) {
    let dash = std::fs::read_to_string(format!("{ROOT}/conf/grafana/lb.json")).unwrap();
    let names: Vec<&str> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .fold(n, |n, s| n.strip_suffix(s).unwrap_or(n))
        })
        .collect();
    let mut queried = 0;
    for (i, _) in dash.match_indices("lb_") {
        let name: String = dash[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name == "lb_" || !dash[..i].ends_with(['(', '{', ' ', '"', '-']) {
            continue;
        }
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
        queried += 1;
        assert!(
            names.contains(&base),
            "dashboard queries unknown metric {name}"
        );
    }
    assert!(queried > 40, "{queried}");
}

/// The shipped Prometheus configuration and rules pass promtool, and each
/// alert rule has a unit test.
#[test]
fn shipped_rules_pass_promtool() {
    let dir = Path::new(ROOT).join("conf/prometheus");
    let rules = std::fs::read_to_string(dir.join("rules.yml")).expect("rules.yml");
    let tests = std::fs::read_to_string(dir.join("rules_test.yml")).expect("rules_test.yml");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    for a in &alerts {
        assert!(
            tests.contains(&format!("alertname: {a}")),
            "no unit test for alert {a}"
        );
    }
    if promtool().is_none() {
        return;
    }
    for args in [
        &["check", "rules", "conf/prometheus/rules.yml"][..],
        &["check", "config", "conf/prometheus/prometheus.yml"][..],
        &["test", "rules", "conf/prometheus/rules_test.yml"][..],
    ] {
        let (ok, out) = run_promtool(args, b"");
        assert!(ok, "promtool {args:?}:\n{out}");
    }
}

/// A DOWN server shows why and since when; a stopped replica shows as missing.
#[test]
fn failures_show_reasons_and_missing_replicas() {
    let f = Foobar::start();
    // Take server1's web away: a reload keeps it out of the file (its listener
    // stays until restart), so point the backend at a closed port instead.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let text = std::fs::read_to_string(&f.lb.conf_path).unwrap();
    let web1 = f.lb.addr("web", "server1").to_string();
    let moved = text.replace(
        &format!("server server1 {web1}"),
        &format!("server server1 {closed}"),
    );
    assert_ne!(moved, text);
    f.lb.reload(&moved);
    let line = f.lb.wait_log("server web/server1 is DOWN");
    assert!(line.contains("WARN"), "{line}");
    let s = eventually("server1 DOWN with a reason", || {
        let s = f.stats();
        s.contains("\"state\":\"DOWN\",\"reason\":").then_some(s)
    });
    assert!(s.contains("\"ago_s\":"), "{s}");
    // Coming UP is normal operation: info, not a warning.
    assert_eq!(
        f.lb.log_count("INFO lb::balance: server web/server2 is UP"),
        1
    );

    // The replica leaves: the primary lists it as missing, not absent.
    let replica = f.lb.addr("kv", "replica");
    assert!(resp(replica, &["REPLICAOF", "NO", "ONE"]).starts_with("+OK"));
    let s = eventually("the replica missing", || {
        let s = f.stats();
        s.contains("\"online\":false,\"missing_for_s\":")
            .then_some(s)
    });
    assert!(s.contains(&format!("\"addr\":\"{replica}\"")), "{s}");
    let m = f.metrics();
    assert!(
        m.contains(&format!(
            "lb_kv_replica_online{{kv=\"primary\",replica=\"{replica}\"}} 0"
        )),
        "{m}"
    );
    assert!(m.contains("lb_kv_role_changes_total{kv=\"replica\"}"));
}

/// The stats page as a browser renders it (headless Chromium runs its script):
/// the chain and each state's reason are drawn, at a phone's width too. With
/// `$LB_SCREENSHOTS` set it also writes PNGs at phone, tablet and wide sizes
/// (scripts/stats-screenshots.sh). Skips with a message without chromium.
#[test]
fn stats_page_renders_every_state_in_a_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    if Command::new(&chromium)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipping: {chromium} not found (apt-get install chromium)");
        return;
    }
    let out = std::env::var("LB_SCREENSHOTS").ok();
    if let Some(out) = &out {
        std::fs::create_dir_all(out).unwrap();
    }
    let f = Foobar::start();
    // Traffic while the page polls, so rates and latencies show.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, www) = (stop.clone(), f.www);
        std::thread::spawn(move || {
            let mut c = Client::connect(www);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let req = if i.is_multiple_of(3) {
                    format!("PUT /api/items/k{} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nv", i % 50)
                } else if i % 3 == 1 {
                    format!(
                        "GET /api/items/k{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
                        i % 50
                    )
                } else {
                    "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string()
                };
                c.send(req.as_bytes());
                if c.read(false).is_none() {
                    c = Client::connect(www);
                }
            }
        })
    };
    let browse = |extra: &[String]| {
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            // Let the page poll twice, so it shows rates.
            "--virtual-time-budget=4500",
        ]
        .map(String::from)
        .to_vec();
        args.extend_from_slice(extra);
        args.push(format!("http://{}/stats", f.admin));
        let o = Command::new(&chromium)
            .args(&args)
            .stderr(Stdio::null())
            .output()
            .expect("run chromium");
        assert!(o.status.success(), "chromium {args:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // The page at a phone's width, as the browser built it; screenshots if asked.
    let shoot = |state: &str| -> String {
        let dom = browse(&["--dump-dom".into(), "--window-size=360,800".into()]);
        if let Some(out) = &out {
            // A phone's first screen, the whole page on a phone, a tablet, a wide screen.
            for (w, h) in [(360, 800), (360, 2600), (760, 900), (1400, 900)] {
                let png = format!("{out}/stats-{state}-{w}x{h}.png");
                browse(&[
                    format!("--screenshot={png}"),
                    format!("--window-size={w},{h}"),
                ]);
                assert!(Path::new(&png).exists(), "{png}");
                eprintln!("wrote {png}");
            }
        }
        dom
    };
    let dom = shoot("1-all-up");
    for name in ["web server1", "app app1", "kv primary", "kv replica"] {
        assert!(dom.contains(name), "{name} not drawn:\n{dom}");
    }
    assert!(!dom.contains(">MISSING<"), "{dom}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text = std::fs::read_to_string(&f.lb.conf_path).unwrap();
    let web1 = f.lb.addr("web", "server1").to_string();
    f.lb.reload(&text.replace(
        &format!("server server1 {web1}"),
        &format!("server server1 {closed}"),
    ));
    f.lb.wait_log("server web/server1 is DOWN");
    let dom = shoot("2-server-down");
    assert!(
        dom.contains("class=\"why\""),
        "no reason drawn for the DOWN server:\n{dom}"
    );

    // The replica loses its primary (pointed at a closed port): link down, and missing on the primary.
    let (primary, replica) = (f.lb.addr("kv", "primary"), f.lb.addr("kv", "replica"));
    resp(
        replica,
        &["REPLICAOF", "127.0.0.1", &closed.port().to_string()],
    );
    eventually("the replica missing", || {
        f.stats().contains("\"missing_for_s\":").then_some(())
    });
    let dom = shoot("3-replica-down");
    assert!(
        dom.contains(">MISSING<"),
        "the missing replica is not drawn:\n{dom}"
    );

    // Failover: the replica promoted, the old primary following it.
    resp(replica, &["REPLICAOF", "NO", "ONE"]);
    resp(
        primary,
        &["REPLICAOF", "127.0.0.1", &replica.port().to_string()],
    );
    eventually("the old primary following the new one", || {
        let s = f.stats();
        (s.matches("\"link_up\":true").count() == 1).then_some(())
    });
    let dom = shoot("4-after-failover");
    assert!(!dom.contains(">MISSING<"), "{dom}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.join();
}
