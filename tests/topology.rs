//! The whole `conf/foobar.conf` on ephemeral ports: the file's sections split over `lb` processes (so parts can be killed), its addresses rewritten to the real ones.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;

use common::client::{Client, Resp};
use common::Lb;

fn foobar() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/foobar.conf"))
        .expect("conf/foobar.conf")
}

/// The file's sections by "KIND NAME" (column-0 header line through the next header).
fn sections(text: &str) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        let starts = line
            .chars()
            .next()
            .is_some_and(|c| !c.is_whitespace() && c != '#');
        if starts {
            let mut w = line.split('#').next().unwrap().split_whitespace();
            let key = match (w.next(), w.next()) {
                (Some(k), Some(n)) => format!("{k} {n}"),
                (Some(k), None) => k.to_string(),
                _ => unreachable!(),
            };
            cur = Some(key.clone());
            out.insert(key, format!("{line}\n"));
        } else if let Some(k) = &cur {
            out.get_mut(k).unwrap().push_str(&format!("{line}\n"));
        }
    }
    out
}

/// The running topology: one process per group of sections.
struct Topology {
    kv_primary: Lb,
    kv_replica: Option<Lb>,
    _sentinel: Lb,
    _apps: Lb,
    server1: Option<Lb>,
    _server2: Lb,
    front: Lb,
}

/// Starts `names` from the file with binds on port 0 and every address in
/// `real` (conf address -> running address) rewritten; records what they bound.
fn start(
    secs: &HashMap<String, String>,
    names: &[&str],
    real: &mut HashMap<String, SocketAddr>,
) -> Lb {
    let mut text = String::new();
    for common in ["global", "defaults"] {
        // Each of the test's processes gets its own admin port.
        let sec = secs[common].replace("admin 127.0.0.1:9000", "admin 127.0.0.1:0");
        text.push_str(&sec);
    }
    let mut binds = Vec::new();
    for n in names {
        let mut s = secs[*n].clone();
        // Remember which conf address this section binds, then bind port 0.
        for line in s.clone().lines() {
            let t = line.trim();
            if let Some(addr) = t.strip_prefix("bind ") {
                let addr = addr.split_whitespace().next().unwrap().to_string();
                binds.push((n.to_string(), addr.clone()));
                s = s.replace(line, &line.replace(&addr, "127.0.0.1:0"));
            }
        }
        for (from, to) in real.iter() {
            s = s.replace(from.as_str(), &to.to_string());
        }
        // The test's conf lives in a temp dir: point the root at the repo's site.
        s = s.replace(
            "root www",
            concat!("root ", env!("CARGO_MANIFEST_DIR"), "/conf/www"),
        );
        text.push_str(&s);
    }
    let lb = Lb::start(&text, binds.len());
    for (n, addr) in binds {
        let (kind, name) = n.split_once(' ').unwrap();
        real.insert(addr, lb.addr(kind, name));
    }
    lb
}

fn topology() -> Topology {
    let secs = sections(&foobar());
    let mut real = HashMap::new();
    let kv_primary = start(&secs, &["kv primary"], &mut real);
    let kv_replica = start(&secs, &["kv replica"], &mut real);
    let sentinel = start(&secs, &["sentinel watch"], &mut real);
    let apps = start(&secs, &["app app1", "app app2"], &mut real);
    let server1 = start(&secs, &["web server1"], &mut real);
    let server2 = start(&secs, &["web server2"], &mut real);
    let front = start(
        &secs,
        &["frontend www.foobar.com", "backend web"],
        &mut real,
    );
    // Health checks are on: each server is checked before it takes traffic.
    front.wait_log_count("server web/server1 is UP", 1);
    front.wait_log_count("server web/server2 is UP", 1);
    Topology {
        kv_primary,
        kv_replica: Some(kv_replica),
        _sentinel: sentinel,
        _apps: apps,
        server1: Some(server1),
        _server2: server2,
        front,
    }
}

impl Topology {
    fn www(&self) -> SocketAddr {
        self.front.addr("frontend", "www.foobar.com")
    }
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut c = Client::connect(self.www());
        // localhost: www.foobar.com over plain HTTP is redirected to HTTPS.
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        c.send(req.as_bytes());
        c.read(false).expect("response")
    }
}

fn resp_cmd(addr: SocketAddr, cmd: &[&str]) -> String {
    let mut s = common::connect(addr);
    let mut out = format!("*{}\r\n", cmd.len());
    for a in cmd {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(out.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    if let Some(n) = line.strip_prefix('$') {
        let n: i64 = n.trim().parse().unwrap();
        if n < 0 {
            return "(nil)".into();
        }
        let mut v = String::new();
        r.read_line(&mut v).unwrap();
        return v.trim_end().to_string();
    }
    line.trim_end().to_string()
}

fn app_of(r: &Resp) -> String {
    r.text()
        .split("\"app\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn foobar_conf_is_valid() {
    for f in [
        "conf/foobar.conf",
        "conf/examples/foobar-core.conf",
        "conf/examples/foobar-server1.conf",
        "conf/examples/foobar-replica.conf",
    ] {
        let out = std::process::Command::new(common::lb_bin())
            .args(["check", "--conf"])
            .arg(format!("{}/{f}", env!("CARGO_MANIFEST_DIR")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let secs = sections(&foobar());
    for s in [
        "frontend www.foobar.com",
        "backend web",
        "web server1",
        "web server2",
        "app app1",
        "app app2",
        "kv primary",
        "kv replica",
        "sentinel watch",
    ] {
        assert!(secs.contains_key(s), "conf/foobar.conf lacks '{s}'");
    }
}

#[test]
fn the_whole_topology() {
    let mut t = topology();

    // www.foobar.com over plain HTTP moves to HTTPS.
    let mut c = Client::connect(t.www());
    c.send(b"GET /x HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n");
    let r = c.read(false).expect("redirect");
    assert_eq!(r.status, 301);
    assert!(r
        .header("location")
        .unwrap_or("")
        .starts_with("https://www.foobar.com:"));

    // The site and the API alternate between the two servers.
    let page = t.get("/", &[]);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("/api/whoami"));
    let css = t.get("/style.css", &[]);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    let statics: Vec<String> = (0..4)
        .map(|_| t.get("/", &[]).header("x-served-by").unwrap().to_string())
        .collect();
    assert!(statics.windows(2).all(|w| w[0] != w[1]), "{statics:?}");
    let apps: Vec<String> = (0..4).map(|_| app_of(&t.get("/api/whoami", &[]))).collect();
    assert!(apps.windows(2).all(|w| w[0] != w[1]), "{apps:?}");
    let mut set = apps.clone();
    set.sort();
    set.dedup();
    assert_eq!(set, ["app1", "app2"]);

    // PUT through the balancer, read it back through the balancer (with the token) and on the replica.
    let mut c = Client::connect(t.www());
    c.send(b"PUT /api/items/user:1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nalice");
    let w = c.read(false).unwrap();
    assert_eq!(w.status, 200, "{}", w.text());
    let cookie = w
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    for _ in 0..2 {
        // Both apps, whichever the balancer picks.
        let r = t.get("/api/items/user:1", &[("Cookie", &cookie)]);
        assert_eq!(r.text(), "{\"key\":\"user:1\",\"value\":\"alice\"}\n");
    }
    let primary = t.kv_primary.addr("kv", "primary");
    assert_eq!(resp_cmd(primary, &["WAIT", "1", "5000"]), ":1");
    let replica = t.kv_replica.as_ref().unwrap().addr("kv", "replica");
    assert_eq!(resp_cmd(replica, &["GET", "user:1"]), "alice");
    // The apps learn the replica from the sentinel (it finds it in the primary's INFO).
    common::eventually("reads served by the replica", || {
        let r = t.get("/api/items/user:1", &[]);
        (r.header("x-kv-source") == Some("replica")).then_some(())
    });

    // The replica dies: reads fall back to the primary.
    drop(t.kv_replica.take());
    for _ in 0..2 {
        let r = t.get("/api/items/user:1", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-kv-source"),
            Some("primary; replica unreachable")
        );
        assert_eq!(r.text(), "{\"key\":\"user:1\",\"value\":\"alice\"}\n");
    }

    // server1's web dies: the balancer's connect retry routes around it (no health checks needed).
    drop(t.server1.take());
    for _ in 0..4 {
        let r = t.get("/", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-served-by"), Some("server2"));
    }
}
