//! Monitoring: /metrics in Prometheus text, state gauges, the runtime API (and its survival
//! across reloads), the reload endpoint, basic auth, the loopback rule, /stats and its JSON,
//! and the access log.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;

use common::client::{Client, Resp};
use common::servers::{http_server, http_server_at, HttpServer};
use common::Lb;

/// One frontend `f` -> backend `b` of the given servers, plus `global` lines.
fn conf(global: &str, servers: &[(&str, &HttpServer, &str)]) -> String {
    let mut c = format!(
        "global\n    admin 127.0.0.1:0\n{global}defaults\n    mode http\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n    retries 2\n    option redispatch\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n"
    );
    for (name, s, opts) in servers {
        c.push_str(&format!("    server {name} {} {opts}\n", s.addr));
    }
    c
}

fn admin_req(lb: &Lb, method: &str, path: &str, auth: Option<&str>) -> Resp {
    let mut c = Client::connect(lb.addr("admin", "admin"));
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    c.send(
        format!("{method} {path} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: 0\r\n\r\n")
            .as_bytes(),
    );
    c.read(false).expect("admin response")
}

fn get(lb: &Lb, path: &str) -> Resp {
    admin_req(lb, "GET", path, None)
}

fn post(lb: &Lb, path: &str) -> Resp {
    admin_req(lb, "POST", path, None)
}

/// Parses Prometheus text exposition strictly enough to catch format slips:
/// every sample has a known family (# TYPE before it), labels are quoted, values are numbers.
/// Returns `series (name{labels}) -> value`.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut out = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, ty) = (it.next().unwrap(), it.next().unwrap());
            assert!(
                ["counter", "gauge", "histogram"].contains(&ty),
                "bad type: {line}"
            );
            types.insert(name.to_string(), ty.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|b| types.get(*b).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample without # TYPE: {line}");
        if let Some(l) = series.strip_prefix(name) {
            if !l.is_empty() {
                assert!(l.starts_with('{') && l.ends_with('}'), "bad labels: {line}");
                for pair in l[1..l.len() - 1].split("\",") {
                    let (k, v) = pair.split_once('=').expect("label pair");
                    assert!(!k.is_empty() && v.starts_with('"'), "bad label: {line}");
                }
            }
        }
        assert!(
            out.insert(series.to_string(), v).is_none(),
            "duplicate series {series}"
        );
    }
    out
}

fn metrics(lb: &Lb) -> HashMap<String, f64> {
    let r = get(lb, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    parse_metrics(&r.text())
}

fn m(map: &HashMap<String, f64>, series: &str) -> f64 {
    *map.get(series)
        .unwrap_or_else(|| panic!("no series {series} in {:#?}", map.keys()))
}

fn tally(c: &mut Client, n: usize) -> HashMap<String, usize> {
    let mut t = HashMap::new();
    for _ in 0..n {
        let r = c.get("/");
        assert_eq!(r.status, 200);
        *t.entry(r.header("x-server").unwrap().to_string())
            .or_default() += 1;
    }
    t
}

#[test]
fn metrics_parse_and_move_with_traffic() {
    let (a, b) = (http_server("a"), http_server("b"));
    let lb = Lb::start(&conf("", &[("a", &a, ""), ("b", &b, "")]), 2);
    let before = metrics(&lb);
    assert_eq!(m(&before, "lb_reloads_total"), 0.0);
    assert_eq!(
        m(
            &before,
            r#"lb_server_status{backend="b",server="a",state="UP"}"#
        ),
        1.0
    );
    let mut c = Client::connect(lb.addr("frontend", "f"));
    for _ in 0..6 {
        assert_eq!(c.get("/").status, 200);
    }
    for _ in 0..3 {
        assert_eq!(c.get("/status/404").status, 404);
    }
    assert_eq!(c.get("/status/503").status, 503);
    drop(c);
    // A request is counted just after its last byte reaches the client.
    let after = common::eventually("all 10 requests counted", || {
        let x = metrics(&lb);
        let key = r#"lb_frontend_request_duration_seconds_count{frontend="f"}"#;
        (x.get(key) == Some(&10.0)).then_some(x)
    });
    let fe = |code: &str| {
        m(
            &after,
            &format!(r#"lb_frontend_http_responses_total{{code="{code}",frontend="f"}}"#),
        )
    };
    assert_eq!((fe("2xx"), fe("4xx"), fe("5xx")), (6.0, 3.0, 1.0));
    assert_eq!(
        m(
            &after,
            r#"lb_frontend_request_duration_seconds_count{frontend="f"}"#
        ),
        10.0
    );
    assert_eq!(
        m(
            &after,
            r#"lb_frontend_request_duration_seconds_bucket{frontend="f",le="+Inf"}"#
        ),
        10.0
    );
    assert_eq!(
        m(&after, r#"lb_frontend_sessions_total{frontend="f"}"#),
        1.0
    );
    // Round robin: 5 requests each, counted per server too.
    for s in ["a", "b"] {
        let l = format!(r#"backend="b",server="{s}""#);
        assert_eq!(
            m(
                &after,
                &format!("lb_server_request_duration_seconds_count{{{l}}}")
            ),
            5.0
        );
        assert_eq!(m(&after, &format!("lb_server_sessions_total{{{l}}}")), 5.0);
        assert!(m(&after, &format!("lb_server_bytes_out_total{{{l}}}")) > 0.0);
        // One client connection, kept alive upstream: one new connection per server.
        assert_eq!(
            m(
                &after,
                &format!("lb_server_connect_duration_seconds_count{{{l}}}")
            ),
            1.0
        );
    }
    assert!(m(&after, r#"lb_frontend_bytes_in_total{frontend="f"}"#) > 0.0);
    let hit = m(
        &after,
        r#"lb_backend_connection_reuse_total{backend="b",result="hit"}"#,
    );
    let miss = m(
        &after,
        r#"lb_backend_connection_reuse_total{backend="b",result="miss"}"#,
    );
    assert_eq!((hit, miss), (8.0, 2.0));
    assert_eq!(
        m(&after, r#"lb_backend_connection_reuse_ratio{backend="b"}"#),
        0.8
    );
}

#[test]
fn state_gauges_follow_a_killed_and_revived_server() {
    let (mut a, b) = (http_server("a"), http_server("b"));
    let addr = a.addr;
    let lb = Lb::start(
        &conf(
            "",
            &[
                ("a", &a, "check inter 100ms rise 1 fall 1"),
                ("b", &b, "check inter 100ms rise 1 fall 1"),
            ],
        ),
        2,
    );
    lb.wait_log_count("is UP", 2);
    let up = r#"lb_server_status{backend="b",server="a",state="UP"}"#;
    let down = r#"lb_server_status{backend="b",server="a",state="DOWN"}"#;
    let x = metrics(&lb);
    assert_eq!((m(&x, up), m(&x, down)), (1.0, 0.0));
    a.kill();
    lb.wait_log("server b/a is DOWN");
    let x = metrics(&lb);
    assert_eq!((m(&x, up), m(&x, down)), (0.0, 1.0));
    assert!(
        m(
            &x,
            r#"lb_server_check_failures_total{backend="b",server="a"}"#
        ) >= 1.0
    );
    assert_eq!(m(&x, r#"lb_backend_active_servers{backend="b"}"#), 1.0);
    let _a = http_server_at(addr, "a");
    lb.wait_log("server b/a is UP");
    let x = metrics(&lb);
    assert_eq!((m(&x, up), m(&x, down)), (1.0, 0.0));
    // Unchecked -> UP, UP -> DOWN, DOWN -> UP.
    assert_eq!(
        m(
            &x,
            r#"lb_server_check_up_down_total{backend="b",server="a"}"#
        ),
        3.0
    );
}

#[test]
fn runtime_api_changes_traffic_and_survives_reload() {
    let (a, b) = (http_server("a"), http_server("b"));
    let text = conf("", &[("a", &a, ""), ("b", &b, "")]);
    let lb = Lb::start(&text, 2);
    let mut c = Client::connect(lb.addr("frontend", "f"));

    let r = post(&lb, "/api/servers/b/a/drain");
    assert_eq!((r.status, r.text().trim()), (200, "b/a is now DRAIN"));
    assert_eq!(tally(&mut c, 6).get("a"), None);
    let list = get(&lb, "/api/servers").text();
    assert!(list.contains(r#""server":"a","addr":""#), "{list}");
    assert!(list.contains(r#""state":"DRAIN""#), "{list}");

    // A reload keeps the drain (the server keeps its name).
    lb.reload(&text);
    lb.wait_log_count("reloaded", 1);
    assert_eq!(tally(&mut c, 6).get("a"), None);

    let r = post(&lb, "/api/servers/b/a/ready");
    assert_eq!(r.status, 200);
    let t = tally(&mut c, 6);
    assert_eq!((t["a"], t["b"]), (3, 3));

    let r = post(&lb, "/api/servers/b/a/weight/3");
    assert_eq!((r.status, r.text().trim()), (200, "b/a weight is now 3"));
    let t = tally(&mut c, 8);
    assert_eq!((t["a"], t["b"]), (6, 2));
    // The weight survives a reload that moves the server to another address.
    let a2 = http_server("a");
    let moved = conf("", &[("a", &a2, ""), ("b", &b, "")]);
    lb.reload(&moved);
    lb.wait_log_count("reloaded", 2);
    let t = tally(&mut c, 8);
    assert_eq!((t["a"], t["b"]), (6, 2));
    assert_eq!(
        a2.requests.load(std::sync::atomic::Ordering::SeqCst),
        6,
        "the new address took a's traffic"
    );

    let r = post(&lb, "/api/servers/b/b/maint");
    assert_eq!((r.status, r.text().trim()), (200, "b/b is now MAINT"));
    assert_eq!(tally(&mut c, 4).get("b"), None);
    let x = metrics(&lb);
    assert_eq!(
        m(
            &x,
            r#"lb_server_status{backend="b",server="b",state="MAINT"}"#
        ),
        1.0
    );
    assert_eq!(m(&x, r#"lb_server_weight{backend="b",server="a"}"#), 3.0);

    assert_eq!(post(&lb, "/api/servers/b/zz/drain").status, 404);
    assert_eq!(post(&lb, "/api/servers/nope/a/drain").status, 404);
    assert_eq!(post(&lb, "/api/servers/b/a/sleep").status, 400);
    assert_eq!(post(&lb, "/api/servers/b/a/weight/x").status, 400);
    assert_eq!(get(&lb, "/api/servers/b/a/drain").status, 405);
    assert_eq!(get(&lb, "/nothing").status, 404);
}

#[test]
fn reload_endpoint_reports_success_and_failure() {
    let (a, b) = (http_server("a"), http_server("b"));
    let lb = Lb::start(&conf("", &[("a", &a, "")]), 2);
    std::fs::write(&lb.conf_path, conf("", &[("a", &a, ""), ("b", &b, "")])).unwrap();
    let r = post(&lb, "/api/reload");
    assert_eq!((r.status, r.text().trim()), (200, "reloaded: 1 changes"));
    let t = tally(&mut Client::connect(lb.addr("frontend", "f")), 4);
    assert_eq!((t["a"], t["b"]), (2, 2));

    std::fs::write(&lb.conf_path, "frontend f\n    bnd 127.0.0.1:0\n").unwrap();
    let r = post(&lb, "/api/reload");
    assert_eq!(r.status, 500);
    assert!(r.text().starts_with("reload failed: "), "{}", r.text());
    assert!(
        r.text().contains(":2: unknown keyword 'bnd'"),
        "{}",
        r.text()
    );
    // The running conf is untouched.
    let t = tally(&mut Client::connect(lb.addr("frontend", "f")), 2);
    assert_eq!((t["a"], t["b"]), (1, 1));
    let x = metrics(&lb);
    assert_eq!(m(&x, "lb_reloads_total"), 1.0);
    assert_eq!(m(&x, "lb_reload_failures_total"), 1.0);
    assert_eq!(get(&lb, "/api/reload").status, 405);
}

#[test]
fn basic_auth_guards_every_endpoint() {
    let a = http_server("a");
    let lb = Lb::start(&conf("    admin-auth admin:s3cret\n", &[("a", &a, "")]), 2);
    for path in ["/metrics", "/stats", "/api/stats", "/api/servers"] {
        let r = get(&lb, path);
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.text(), "authentication required\n");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"lb admin\"")
        );
    }
    // admin:wrong
    let r = admin_req(&lb, "GET", "/metrics", Some("Basic YWRtaW46d3Jvbmc="));
    assert_eq!(r.status, 401);
    assert_eq!(post(&lb, "/api/servers/b/a/maint").status, 401);
    // admin:s3cret
    let ok = Some("Basic YWRtaW46czNjcmV0");
    assert_eq!(admin_req(&lb, "GET", "/metrics", ok).status, 200);
    let r = admin_req(&lb, "POST", "/api/servers/b/a/drain", ok);
    assert_eq!(r.status, 200);
}

#[test]
fn non_loopback_admin_needs_auth_or_insecure() {
    let base = "frontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server s 127.0.0.1:1\n";
    let (code, _, err, _, _dir) = common::check(&format!("global\n    admin 0.0.0.0:0\n{base}"));
    assert_eq!(code, 1);
    assert!(
        err.contains(":2: 'admin': refusing 0.0.0.0:0 (not loopback)"),
        "{err}"
    );
    let (code, _, err, _, _dir) = common::check(&format!(
        "global\n    admin 0.0.0.0:0\n    admin-auth u:p\n{base}"
    ));
    assert_eq!(code, 0, "{err}");
    let (code, _, err, _, _dir) = common::check(&format!(
        "global\n    admin 0.0.0.0:0\n    admin-insecure\n{base}"
    ));
    assert_eq!(code, 0, "{err}");
    // The running binary refuses too.
    let (dir, path) = common::write_conf(&format!("global\n    admin 0.0.0.0:0\n{base}"));
    let out = std::process::Command::new(common::lb_bin())
        .arg("--conf")
        .arg(&path)
        .output()
        .unwrap();
    drop(dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing"));
}

/// Sends one RESP command and reads the first reply line.
fn kv_cmd(addr: SocketAddr, args: &[&str]) -> String {
    let mut s = common::connect(addr);
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn stats_page_and_json_show_the_topology_and_kv_pair() {
    let (a, b) = (http_server("a"), http_server("b"));
    let text = format!(
        "{}    server spare {} backup\nkv primary\n    bind 127.0.0.1:0\n",
        conf("", &[("a", &a, ""), ("b", &b, "")]),
        b.addr
    );
    let lb = Lb::start(&text, 3);
    let primary = lb.addr("kv", "primary");
    let replica = Lb::start(
        &format!("global\n    admin 127.0.0.1:0\nkv replica\n    bind 127.0.0.1:0\n    replicaof {primary}\n"),
        2,
    );
    assert_eq!(post(&lb, "/api/servers/b/b/drain").status, 200);
    assert_eq!(kv_cmd(primary, &["SET", "k", "v"]), "+OK\r\n");

    let page = get(&lb, "/stats");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let html = page.text();
    assert!(html.contains("class=\"flow\"") && html.contains("fetch(\"/api/stats\""));
    // Self-contained: no external scripts, styles or images.
    assert!(!html.contains("src=") && !html.contains("href=") && !html.contains("://"));

    let j = get(&lb, "/stats;json");
    assert_eq!(j.header("content-type"), Some("application/json"));
    let j = j.text();
    assert!(
        j.contains(r#""frontends":[{"name":"f","mode":"http","backends":["b"]"#),
        "{j}"
    );
    assert!(
        j.contains(r#""backends":[{"name":"b","mode":"http""#),
        "{j}"
    );
    assert!(j.contains(r#"{"name":"a","addr":""#), "{j}");
    assert!(j.contains(r#""state":"DRAIN""#), "{j}");
    assert!(
        j.contains(r#"{"name":"spare","addr":""#) && j.contains(r#""backup":true"#),
        "{j}"
    );
    assert!(
        j.contains(r#""kv":[{"name":"primary","role":"primary","offset":"#),
        "{j}"
    );
    assert!(j.contains(r#""keys":1,"#), "{j}");
    let api = get(&lb, "/api/stats").text();
    assert!(api.starts_with(r#"{"uptime_s":"#) && api.contains(r#""name":"primary""#));

    // The primary sees its replica attach, with its lag; the replica sees its link.
    let seen = common::eventually("the replica in the primary's stats", || {
        let j = get(&lb, "/api/stats").text();
        j.contains(r#""replicas":[{"addr":""#).then_some(j)
    });
    assert!(seen.contains(r#""lag_bytes":"#), "{seen}");
    let r = common::eventually("the replica's link up", || {
        let j = get(&replica, "/api/stats").text();
        j.contains(r#""link_up":true"#).then_some(j)
    });
    assert!(r.contains(r#""role":"replica""#), "{r}");
    assert!(r.contains(&format!(r#""master":"{primary}""#)), "{r}");

    let x = metrics(&lb);
    assert_eq!(
        m(&x, r#"lb_kv_commands_total{command="set",kv="primary"}"#),
        1.0
    );
    assert_eq!(m(&x, r#"lb_kv_keys{kv="primary"}"#), 1.0);
    assert_eq!(
        m(&x, r#"lb_kv_replication_role{kv="primary",role="primary"}"#),
        1.0
    );
    assert!(x
        .keys()
        .any(|k| k.starts_with("lb_kv_replica_lag_bytes{kv=\"primary\"")));
    assert!(x
        .keys()
        .any(|k| k.starts_with("lb_kv_replica_lag_seconds{kv=\"primary\"")));
    let y = metrics(&replica);
    assert_eq!(
        m(&y, r#"lb_kv_replication_role{kv="replica",role="replica"}"#),
        1.0
    );
    assert_eq!(m(&y, r#"lb_kv_master_link_up{kv="replica"}"#), 1.0);

    // Every metric the Grafana dashboard queries exists.
    let dash =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/grafana/lb.json"))
            .unwrap();
    let names: Vec<&str> = x
        .keys()
        .chain(y.keys())
        .map(|k| k.split('{').next().unwrap())
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
        // The web, app and TLS tiers are not in this conf: tests/monitoring.rs checks them.
        if ["lb_web_", "lb_app_", "lb_tls_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        queried += 1;
        assert!(
            names.contains(&name.as_str()),
            "dashboard queries unknown metric {name}"
        );
    }
    assert!(queried > 20, "{queried}");
}

fn read_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    common::eventually("access log lines", || {
        let t = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = t.lines().map(str::to_string).collect();
        (lines.len() >= n).then_some(lines)
    })
}

#[test]
fn access_log_lines_have_the_fields() {
    let a = http_server("a");
    let dir = common::TempDir::new("accesslog");
    let log = dir.path().join("access.log");
    let lb = Lb::start(
        &conf(
            &format!("    access-log {}\n", log.display()),
            &[("a", &a, "")],
        ),
        2,
    );
    let mut c = Client::connect(lb.addr("frontend", "f"));
    assert_eq!(c.get("/hello").status, 200);
    assert_eq!(c.get("/status/404").status, 404);
    let port = c.r.get_ref().local_addr().unwrap().port();
    let lines = read_lines(&log, 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    // 127.0.0.1:PORT [22/Nov/2026:11:20:01.123] f b/a 0/1/1 200 123 45 "GET /hello HTTP/1.1"
    let f: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(f[0], format!("127.0.0.1:{port}"));
    assert!(
        f[1].starts_with('[') && f[1].ends_with(']') && f[1].len() == 26,
        "{}",
        f[1]
    );
    assert_eq!((f[2], f[3]), ("f", "b/a"));
    let t: Vec<i64> = f[4].split('/').map(|x| x.parse().unwrap()).collect();
    assert!(t[0] >= 0 && t[1] >= t[0] && t[2] >= t[1], "{}", f[4]);
    assert_eq!(f[5], "200");
    assert!(f[6].parse::<u64>().unwrap() > 0);
    assert!(f[7].parse::<u64>().unwrap() > 0);
    assert_eq!(&f[8..], ["\"GET", "/hello", "HTTP/1.1\""]);
    // Second request reused the server connection: no connect time.
    assert!(lines[1].contains(" b/a -1/"), "{}", lines[1]);
    assert!(lines[1].contains(" 404 ") && lines[1].ends_with("\"GET /status/404 HTTP/1.1\""));
}

/// A request refused before it reaches a backend (400 for a missing Host, 431
/// for an oversized head) is still a response: counted in the frontend's
/// metrics and logged, with `<BADREQ>` for its request line.
#[test]
fn refused_requests_are_counted_and_logged() {
    let a = http_server("a");
    let dir = common::TempDir::new("accesslog-badreq");
    let log = dir.path().join("access.log");
    let lb = Lb::start(
        &conf(
            &format!("    access-log {}\n", log.display()),
            &[("a", &a, "")],
        ),
        2,
    );
    let refused = |raw: &[u8]| {
        let mut c = Client::connect(lb.addr("frontend", "f"));
        c.send(raw);
        c.read(false).expect("a response").status
    };
    assert_eq!(refused(b"GET / HTTP/1.1\r\n\r\n"), 400);
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "y".repeat(20 << 10)
    );
    assert_eq!(refused(huge.as_bytes()), 431);
    let lines = read_lines(&log, 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, code) in lines.iter().zip(["400", "431"]) {
        assert!(line.contains(" f -/- -1/-1/"), "{line}");
        assert!(line.contains(&format!(" {code} ")), "{line}");
        assert!(line.ends_with("\"<BADREQ>\""), "{line}");
    }
    let x = metrics(&lb);
    assert_eq!(
        m(
            &x,
            r#"lb_frontend_http_responses_total{code="4xx",frontend="f"}"#
        ),
        2.0
    );
}

#[test]
fn access_log_json_covers_http_and_tcp() {
    let a = http_server("a");
    let dir = common::TempDir::new("accesslog-json");
    let log = dir.path().join("access.json");
    let text = format!(
        "{}frontend t\n    mode tcp\n    bind 127.0.0.1:0\n    default_backend tb\nbackend tb\n    mode tcp\n    server e {}\n",
        conf(
            &format!("    access-log {}\n    log-format json\n", log.display()),
            &[("a", &a, "")],
        ),
        a.addr
    );
    let lb = Lb::start(&text, 3);
    assert_eq!(
        Client::connect(lb.addr("frontend", "f")).get("/x").status,
        200
    );
    let lines = read_lines(&log, 1);
    let http = &lines[0];
    assert!(http.starts_with(r#"{"time":"20"#), "{http}");
    for field in [
        r#""client_ip":"127.0.0.1""#,
        r#""frontend":"f""#,
        r#""backend":"b""#,
        r#""server":"a""#,
        r#""status":200"#,
        r#""request":"GET /x HTTP/1.1""#,
    ] {
        assert!(http.contains(field), "{field} in {http}");
    }
    // One line per TCP connection, written when it closes.
    let raw = common::roundtrip(lb.addr("frontend", "t"), b"GET /y HTTP/1.0\r\n\r\n");
    assert!(raw.starts_with(b"HTTP/1.1 200"));
    let lines = read_lines(&log, 2);
    let tcp = &lines[1];
    for field in [
        r#""frontend":"t""#,
        r#""backend":"tb""#,
        r#""server":"e""#,
        r#""tr_ms":-1"#,
        r#""status":null"#,
        r#""request":null"#,
    ] {
        assert!(tcp.contains(field), "{field} in {tcp}");
    }
    assert!(
        tcp.contains(&format!(r#""bytes_out":{}"#, raw.len())),
        "{tcp}"
    );
}

#[test]
fn bytes_through_an_upgrade_tunnel_are_counted() {
    let a = http_server("a");
    let lb = Lb::start(&conf("", &[("a", &a, "")]), 2);
    let fe = r#"lb_frontend_bytes_out_total{frontend="f"}"#;
    let fe_in = r#"lb_frontend_bytes_in_total{frontend="f"}"#;
    let (out0, in0) = {
        let m0 = metrics(&lb);
        (m(&m0, fe), m(&m0, fe_in))
    };
    let mut c = Client::connect(lb.addr("frontend", "f"));
    c.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(c.read(true).unwrap().status, 101);
    let payload = vec![b'w'; 100_000];
    c.send(&payload);
    let mut back = vec![0u8; payload.len()];
    c.r.read_exact(&mut back).unwrap();
    assert_eq!(back, payload);
    drop(c);
    // The tunnel ends when both sides have closed; then its bytes are in the totals.
    common::eventually("tunnel bytes counted", || {
        let now = metrics(&lb);
        (m(&now, fe) - out0 >= 100_000.0 && m(&now, fe_in) - in0 >= 100_000.0).then_some(())
    });
}

/// The admin listener reads no request body. An answer sent while the client
/// is still writing one is followed by a lingering close (the HTTP/1 driver's,
/// as for the proxy): the client writes it all and reads the answer, not a reset.
#[test]
fn an_admin_answer_reaches_a_client_still_sending_a_body() {
    let a = http_server("a");
    let lb = Lb::start(&conf("", &[("a", &a, "")]), 2);
    let mut c = Client::connect(lb.addr("admin", "admin"));
    let len = 2usize << 20;
    c.send(
        format!(
            "POST /api/servers/b/zz/drain HTTP/1.1\r\nHost: admin\r\nContent-Length: {len}\r\n\r\n"
        )
        .as_bytes(),
    );
    let mut w = c.r.get_ref().try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&vec![b'u'; len]).is_ok());
    let r = c.read(false).unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    let mut rest = Vec::new();
    let end = c.r.read_to_end(&mut rest);
    assert!(matches!(end, Ok(0)), "after the answer: {end:?}");
    assert!(writer.join().unwrap(), "the upload was cut");
}
