//! VRRP in network namespaces: lb nodes (and keepalived, when installed) on one
//! bridge, a client requesting the virtual address every 10 ms. Each test builds
//! its own namespaces (named after the pid and a counter) and removes them on
//! drop, panics included; a machine where namespaces cannot be made skips with
//! a notice.
//!
//! The gaps are printed (`benches/vrrp.sh` collects them); the assertion bound
//! is generous (a failover that happens at all, with gratuitous ARP: without it
//! the client would wait out its ARP entry for seconds), not a timing claim.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{lb_bin, TempDir};

const WAIT: Duration = Duration::from_secs(20);
const VIP: &str = "10.77.0.100";
const VIP2: &str = "10.77.0.101";
/// A failover slower than this is broken (the bar is 1 s, checked by benches/vrrp.sh).
const BROKEN: Duration = Duration::from_secs(3);

static SEQ: AtomicUsize = AtomicUsize::new(0);

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

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Namespaces `<p>br` (the bridge) and one per host, each host with `e0` on the
/// bridge and `10.77.0.N/24`; the client is the last host. Deleted on drop,
/// after the processes started in them are killed.
struct Net {
    prefix: String,
    hosts: Vec<String>,
    procs: Mutex<Vec<Child>>,
}

impl Net {
    /// `None` (with a printed notice) where namespaces cannot be made.
    fn new(hosts: &[&str]) -> Option<Net> {
        if !have("ip") {
            eprintln!("skipped: iproute2 ('ip') is not installed");
            return None;
        }
        let prefix = format!(
            "lbv{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let br = format!("{prefix}br");
        if let Err(e) = ip(&["netns", "add", &br]) {
            eprintln!("skipped: cannot create network namespaces ({e})");
            return None;
        }
        let mut net = Net {
            prefix: prefix.clone(),
            hosts: vec![br.clone()],
            procs: Mutex::new(Vec::new()),
        };
        let setup = |net: &mut Net| -> Result<(), String> {
            ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
            ip(&["-n", &br, "link", "set", "br0", "up"])?;
            for (i, h) in hosts.iter().enumerate() {
                let ns = net.ns(h);
                ip(&["netns", "add", &ns])?;
                net.hosts.push(ns.clone());
                let port = format!("p{i}");
                ip(&[
                    "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "e0", "netns",
                    &ns,
                ])?;
                ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"])?;
                let addr = format!("10.77.0.{}/24", i + 1);
                ip(&["-n", &ns, "addr", "add", &addr, "dev", "e0"])?;
                ip(&["-n", &ns, "link", "set", "e0", "up"])?;
                ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            }
            Ok(())
        };
        if let Err(e) = setup(&mut net) {
            eprintln!("skipped: cannot build the test network ({e})");
            return None;
        }
        Some(net)
    }

    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    /// Takes a host's link down, as a dead node's would be.
    fn cut(&self, host: &str) {
        ip(&["-n", &self.ns(host), "link", "set", "e0", "down"]).expect("link down");
    }

    /// Whether `addr` is on the host's e0.
    fn holds(&self, host: &str, addr: &str) -> bool {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.ns(host),
                "-4",
                "-o",
                "addr",
                "show",
                "dev",
                "e0",
            ])
            .output()
            .expect("ip addr");
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {addr}/"))
    }

    fn keep(&self, c: Child) {
        self.procs.lock().unwrap().push(c);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in self.procs.lock().unwrap().iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for h in self.hosts.iter().rev() {
            let _ = ip(&["netns", "del", h]);
        }
    }
}

/// Runs `f` on a thread that has entered the namespace `ns`.
fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("open netns");
        // SAFETY: moves this thread (only) into the namespace.
        let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// Stderr lines of a process, collected as they come.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn follow(&self, r: impl Read + Send + 'static, tag: String) {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines().map_while(Result::ok) {
                if std::env::var("LB_TEST_ECHO").is_ok() {
                    eprintln!("[{tag}] {l}");
                }
                lines.lock().unwrap().push(l);
            }
        });
    }

    fn count(&self, needle: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn wait(&self, needle: &str) {
        wait_for(&format!("a log line with {needle:?}"), || {
            self.count(needle) > 0
        });
        let _ = self.text();
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A process in a namespace; its pid is the program's (`ip netns exec` execs).
struct Proc {
    pid: u32,
    log: Log,
    _dir: TempDir,
}

fn spawn(net: &Net, host: &str, argv: &[&str], dir: TempDir) -> Proc {
    let ns = net.ns(host);
    let mut c = Command::new("ip")
        .args(["netns", "exec", &ns])
        .args(argv)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let log = Log::default();
    log.follow(c.stdout.take().expect("stdout"), format!("{host} out"));
    log.follow(c.stderr.take().expect("stderr"), host.to_string());
    let pid = c.id();
    net.keep(c);
    Proc {
        pid,
        log,
        _dir: dir,
    }
}

impl Proc {
    fn kill(&self, sig: i32) {
        // SAFETY: signals a child this test started.
        unsafe { libc::kill(self.pid as i32, sig) };
    }
}

/// An lb node: each virtual address of `vrrp` served by a frontend (bound
/// before the node holds it), through a backend, by the node's own web server
/// saying its name.
fn lb_conf(www: &std::path::Path, vrrp: &str) -> String {
    let binds: String = [VIP, VIP2]
        .iter()
        .filter(|a| vrrp.contains(&format!("address {a}/")))
        .map(|a| format!("    bind {a}:80\n"))
        .collect();
    format!(
        "global\n    admin 127.0.0.1:9000\n\
         frontend www\n    mode http\n{binds}    default_backend app\n\
         backend app\n    mode http\n    server s1 127.0.0.1:8080 check inter 100ms\n\
         web w\n    bind 127.0.0.1:8080\n    root {}\n\
         {vrrp}",
        www.display()
    )
}

fn vrrp_section(name: &str, vrid: u8, priority: u8, addr: &str, extra: &str) -> String {
    format!(
        "vrrp {name}\n    interface e0\n    vrid {vrid}\n    priority {priority}\n    advert-int 100ms\n    address {addr}/24\n{extra}"
    )
}

fn start_lb(net: &Net, host: &str, vrrp: &str) -> Proc {
    let dir = TempDir::new("vrrp");
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("node.txt"), host).unwrap();
    let conf = lb_conf(&www, vrrp);
    let path: PathBuf = dir.path().join("lb.conf");
    std::fs::write(&path, conf).unwrap();
    let p = path.to_str().unwrap().to_string();
    spawn(net, host, &[lb_bin(), "--conf", &p], dir)
}

/// keepalived with one VRRPv3 instance, plus an lb web server on 0.0.0.0:80
/// saying the host's name (answering on the virtual address once it is there).
struct Keepalived {
    proc: Proc,
    _web: Proc,
    dir: PathBuf,
}

fn start_keepalived(net: &Net, host: &str, vrid: u8, priority: u8, addr: &str) -> Keepalived {
    let dir = TempDir::new("keepalived");
    let d = dir.path().to_path_buf();
    let conf = format!(
        "global_defs {{\n    vrrp_version 3\n    router_id {host}\n}}\n\
         vrrp_instance www {{\n    state BACKUP\n    interface e0\n    virtual_router_id {vrid}\n    \
         priority {priority}\n    advert_int 0.1\n    virtual_ipaddress {{\n        {addr}/24 dev e0\n    }}\n}}\n"
    );
    std::fs::write(d.join("keepalived.conf"), conf).unwrap();
    let www = d.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("node.txt"), host).unwrap();
    std::fs::write(
        d.join("web.conf"),
        format!("web w\n    bind 0.0.0.0:80\n    root {}\n", www.display()),
    )
    .unwrap();
    let web_conf = d.join("web.conf").to_str().unwrap().to_string();
    let web = spawn(
        net,
        host,
        &[lb_bin(), "--conf", &web_conf],
        TempDir::new("kaweb"),
    );
    web.log.wait("listening web w");
    let s = |f: &str| d.join(f).to_str().unwrap().to_string();
    let proc = spawn(
        net,
        host,
        &[
            "keepalived",
            "-n",
            "-l",
            "-D",
            "-f",
            &s("keepalived.conf"),
            "-p",
            &s("keepalived.pid"),
            "-r",
            &s("vrrp.pid"),
            "-c",
            &s("checkers.pid"),
        ],
        dir,
    );
    Keepalived {
        proc,
        _web: web,
        dir: d,
    }
}

impl Keepalived {
    /// kill -9 keepalived and its VRRP child.
    fn kill(&self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("vrrp.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: the VRRP process of the keepalived this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        self.proc.kill(libc::SIGKILL);
    }
}

/// Requests `http://addr/node.txt` every 10 ms from inside the client's
/// namespace, recording when each answer came and from which node.
struct Client {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<(Instant, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// One request. The connect timeout is short (the SYN-ACK comes from the
/// kernel, across a bridge): it bounds how late the client notices a takeover.
fn get(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(30)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
    s.set_write_timeout(Some(Duration::from_millis(200))).ok()?;
    s.write_all(b"GET /node.txt HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out);
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(text.split("\r\n\r\n").nth(1)?.trim().to_string())
}

impl Client {
    fn start(net: &Net, addr: &str) -> Client {
        let addr: SocketAddr = format!("{addr}:80").parse().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), answers.clone());
        let thread = in_ns(&net.ns("client"), move || {
            // Bounded: a test that forgets to stop it still ends.
            let end = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::Relaxed) && Instant::now() < end {
                let t = Instant::now();
                if let Some(node) = get(addr) {
                    a.lock().unwrap().push((Instant::now(), node));
                }
                std::thread::sleep(Duration::from_millis(10).saturating_sub(t.elapsed()));
            }
        });
        Client {
            stop,
            answers,
            thread: Some(thread),
        }
    }

    /// Waits until `n` answers from `node` came after `since`.
    fn wait_answers(&self, node: &str, n: usize, since: Instant) {
        wait_for(&format!("{n} answers from {node}"), || {
            self.answers
                .lock()
                .unwrap()
                .iter()
                .filter(|(t, who)| *t >= since && who == node)
                .count()
                >= n
        });
    }

    /// Stops the client; returns the longest time between two answers.
    fn finish(mut self) -> (Duration, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("client thread");
        }
        let a = self.answers.lock().unwrap();
        let gap = a
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or_default();
        let mut nodes: Vec<String> = Vec::new();
        for (_, n) in a.iter() {
            if nodes.last() != Some(n) {
                nodes.push(n.clone());
            }
        }
        (gap, nodes)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// GET a path of the admin listener of `host` (127.0.0.1:9000 in its namespace).
fn admin_get(net: &Net, host: &str, path: &str) -> String {
    let path = path.to_string();
    in_ns(&net.ns(host), move || {
        let mut s = common::connect("127.0.0.1:9000".parse().unwrap());
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .join()
    .expect("admin request")
}

fn report(what: &str, gap: Duration) {
    // benches/vrrp.sh greps these lines.
    eprintln!("vrrp-gap {what}: {:.3} s", gap.as_secs_f64());
}

/// lb nodes a (priority 150, master) and b (100, backup) of VRRP `www`, and
/// a client that a already answers through the virtual address.
fn a_master_b_backup(net: &Net) -> (Proc, Proc, Client) {
    let a = start_lb(net, "a", &vrrp_section("www", 51, 150, VIP, ""));
    a.log.wait("vrrp www: BACKUP -> MASTER");
    let b = start_lb(net, "b", &vrrp_section("www", 51, 100, VIP, ""));
    b.log.wait("vrrp www: INIT -> BACKUP");
    let t0 = Instant::now();
    let client = Client::start(net, VIP);
    client.wait_answers("a", 20, t0);
    (a, b, client)
}

#[test]
fn two_lb_nodes_fail_over_when_the_master_dies() {
    let Some(net) = Net::new(&["a", "b", "client"]) else {
        return;
    };
    let (a, b, client) = a_master_b_backup(&net);
    assert!(net.holds("a", VIP) && !net.holds("b", VIP));
    assert_eq!(b.log.count("-> MASTER"), 0, "{}", b.log.text());

    let killed = Instant::now();
    a.kill(libc::SIGKILL);
    net.cut("a");
    client.wait_answers("b", 20, killed);
    let (gap, nodes) = client.finish();
    report("lb master killed, lb backup takes over", gap);
    assert_eq!(nodes, ["a", "b"]);
    assert!(gap < BROKEN, "gap {gap:?}");
    assert!(net.holds("b", VIP));
    assert_eq!(
        b.log
            .count("vrrp www: BACKUP -> MASTER: no advert from a master"),
        1
    );
    // The runtime API, the stats JSON and /metrics tell the same.
    let api = admin_get(&net, "b", "/api/vrrp");
    assert!(
        api.contains(r#"[{"name":"www","vrid":51,"interface":"e0","state":"MASTER","priority":100,"master":"10.77.0.2","transitions":1,"#),
        "{api}"
    );
    let stats = admin_get(&net, "b", "/api/stats");
    assert!(stats.contains(r#""vrrp":[{"name":"www""#), "{stats}");
    let m = admin_get(&net, "b", "/metrics");
    for line in [
        r#"lb_vrrp_state{interface="e0",state="MASTER",vrid="51",vrrp="www"} 1"#,
        r#"lb_vrrp_transitions_total{interface="e0",vrid="51",vrrp="www"} 1"#,
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
    assert!(!m.contains(r#"lb_vrrp_adverts_received_total{interface="e0",vrid="51",vrrp="www"} 0"#));
}

#[test]
fn keepalived_master_lb_backup_then_lb_takes_over() {
    if !have("keepalived") {
        eprintln!("skipped: keepalived is not installed");
        return;
    }
    let Some(net) = Net::new(&["ka", "lb", "client"]) else {
        return;
    };
    let ka = start_keepalived(&net, "ka", 51, 150, VIP);
    ka.proc.log.wait("Entering MASTER STATE");
    let lb = start_lb(&net, "lb", &vrrp_section("www", 51, 100, VIP, ""));
    lb.log.wait("vrrp www: INIT -> BACKUP");
    let t0 = Instant::now();
    let client = Client::start(&net, VIP);
    // 100 answers (over a second, many master-down intervals): lb stays backup.
    client.wait_answers("ka", 100, t0);
    assert_eq!(lb.log.count("-> MASTER"), 0, "{}", lb.log.text());
    assert_eq!(ka.proc.log.count("Entering MASTER STATE"), 1);
    assert!(net.holds("ka", VIP) && !net.holds("lb", VIP));
    let m = admin_get(&net, "lb", "/metrics");
    assert!(
        m.contains("lb_vrrp_state{interface=\"e0\",state=\"BACKUP\",vrid=\"51\",vrrp=\"www\"} 1"),
        "{m}"
    );

    let killed = Instant::now();
    ka.kill();
    net.cut("ka");
    client.wait_answers("lb", 20, killed);
    let (gap, nodes) = client.finish();
    report("keepalived master killed, lb backup takes over", gap);
    assert_eq!(nodes, ["ka", "lb"]);
    assert!(gap < BROKEN, "gap {gap:?}");
}

#[test]
fn lb_master_keepalived_backup_stays_backup_until_lb_dies() {
    if !have("keepalived") {
        eprintln!("skipped: keepalived is not installed");
        return;
    }
    let Some(net) = Net::new(&["lb", "ka", "client"]) else {
        return;
    };
    let lb = start_lb(&net, "lb", &vrrp_section("www", 51, 150, VIP, ""));
    lb.log.wait("vrrp www: BACKUP -> MASTER");
    let ka = start_keepalived(&net, "ka", 51, 100, VIP);
    ka.proc.log.wait("Entering BACKUP STATE");
    let t0 = Instant::now();
    let client = Client::start(&net, VIP);
    client.wait_answers("lb", 100, t0);
    assert_eq!(
        ka.proc.log.count("Entering MASTER STATE"),
        0,
        "{}",
        ka.proc.log.text()
    );
    assert_eq!(lb.log.count("MASTER -> BACKUP"), 0, "{}", lb.log.text());

    let killed = Instant::now();
    lb.kill(libc::SIGKILL);
    net.cut("lb");
    client.wait_answers("ka", 20, killed);
    let (gap, nodes) = client.finish();
    report("lb master killed, keepalived backup takes over", gap);
    assert_eq!(nodes, ["lb", "ka"]);
}

/// The reference for the README: two keepalived nodes, the same setup.
#[test]
fn keepalived_pair_fails_over() {
    if !have("keepalived") {
        eprintln!("skipped: keepalived is not installed");
        return;
    }
    let Some(net) = Net::new(&["k1", "k2", "client"]) else {
        return;
    };
    let k1 = start_keepalived(&net, "k1", 51, 150, VIP);
    k1.proc.log.wait("Entering MASTER STATE");
    let k2 = start_keepalived(&net, "k2", 51, 100, VIP);
    k2.proc.log.wait("Entering BACKUP STATE");
    let t0 = Instant::now();
    let client = Client::start(&net, VIP);
    client.wait_answers("k1", 20, t0);
    let killed = Instant::now();
    k1.kill();
    net.cut("k1");
    client.wait_answers("k2", 20, killed);
    let (gap, nodes) = client.finish();
    report(
        "keepalived master killed, keepalived backup takes over",
        gap,
    );
    assert_eq!(nodes, ["k1", "k2"]);
}

#[test]
fn sigterm_hands_over_at_once_with_priority_zero() {
    let Some(net) = Net::new(&["a", "b", "client"]) else {
        return;
    };
    let (a, b, client) = a_master_b_backup(&net);
    let stopped = Instant::now();
    a.kill(libc::SIGTERM);
    a.log.wait("vrrp www: MASTER -> INIT: shutdown");
    client.wait_answers("b", 20, stopped);
    let (gap, nodes) = client.finish();
    report("lb master SIGTERM, lb backup takes over", gap);
    assert_eq!(nodes, ["a", "b"]);
    assert!(
        !net.holds("a", VIP),
        "the leaving master removed the address"
    );
    b.log.wait("vrrp www: BACKUP -> MASTER");
    // The backup took over after its skew (61 ms), not the master-down interval.
    assert_eq!(
        b.log
            .count("vrrp www: BACKUP -> MASTER: the master left (priority 0)"),
        1,
        "{}",
        b.log.text()
    );
}

#[test]
fn active_active_each_node_masters_one_address_and_a_survivor_holds_both() {
    let Some(net) = Net::new(&["a", "b", "client"]) else {
        return;
    };
    let a = start_lb(
        &net,
        "a",
        &(vrrp_section("one", 51, 150, VIP, "") + &vrrp_section("two", 52, 100, VIP2, "")),
    );
    let b = start_lb(
        &net,
        "b",
        &(vrrp_section("one", 51, 100, VIP, "") + &vrrp_section("two", 52, 150, VIP2, "")),
    );
    a.log.wait("vrrp one: BACKUP -> MASTER");
    b.log.wait("vrrp two: BACKUP -> MASTER");
    wait_for("each node holds its address", || {
        net.holds("a", VIP) && net.holds("b", VIP2) && !net.holds("a", VIP2)
    });
    let t0 = Instant::now();
    let c1 = Client::start(&net, VIP);
    let c2 = Client::start(&net, VIP2);
    c1.wait_answers("a", 10, t0);
    c2.wait_answers("b", 10, t0);
    // Neither node saw the other's vrid as a bad advert.
    let m = admin_get(&net, "a", "/metrics");
    assert!(
        m.contains("lb_vrrp_adverts_dropped_total{interface=\"e0\",reason=\"vrid\",vrid=\"51\",vrrp=\"one\"} 0"),
        "{m}"
    );
    let killed = Instant::now();
    b.kill(libc::SIGKILL);
    net.cut("b");
    c2.wait_answers("a", 20, killed);
    let (gap, nodes) = c2.finish();
    report("active-active: node b killed, a takes its address", gap);
    assert_eq!(nodes, ["b", "a"]);
    assert!(gap < BROKEN, "gap {gap:?}");
    let (_, nodes) = c1.finish();
    assert_eq!(nodes, ["a"], "the other address never moved");
    assert!(net.holds("a", VIP) && net.holds("a", VIP2));
}

/// Adverts that must not be acted on, sent from the client namespace: each is
/// counted under its reason, none as received.
#[test]
fn bad_adverts_are_dropped_and_counted() {
    let Some(net) = Net::new(&["a", "client"]) else {
        return;
    };
    let a = start_lb(
        &net,
        "a",
        &vrrp_section("www", 51, 100, VIP, "    nopreempt\n"),
    );
    a.log.wait("vrrp www: INIT -> BACKUP");
    use lb::vrrp::packet::{encode, GROUP};
    let me: std::net::Ipv4Addr = "10.77.0.2".parse().unwrap();
    let vip: std::net::Ipv4Addr = VIP.parse().unwrap();
    let good = encode(me, GROUP, 51, 200, 10, &[vip]);
    let mut bad_sum = good.clone();
    bad_sum[2] = 254;
    let mut v2 = good.clone();
    v2[0] = 0x21;
    let other_vrid = encode(me, GROUP, 77, 200, 10, &[vip]);
    in_ns(&net.ns("client"), move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).unwrap();
        s.set_multicast_if_v4(&me).unwrap();
        s.set_multicast_ttl_v4(255).unwrap();
        let to: SocketAddr = "224.0.0.18:0".parse().unwrap();
        for p in [&bad_sum, &v2, &other_vrid] {
            s.send_to(p, &to.into()).unwrap();
        }
        // Right but for the TTL.
        s.set_multicast_ttl_v4(1).unwrap();
        s.send_to(&good, &to.into()).unwrap();
    })
    .join()
    .unwrap();
    let count = |reason: &str| {
        format!("lb_vrrp_adverts_dropped_total{{interface=\"e0\",reason=\"{reason}\",vrid=\"51\",vrrp=\"www\"}} 1")
    };
    wait_for("four drops counted", || {
        let m = admin_get(&net, "a", "/metrics");
        ["checksum", "version", "vrid", "ttl"]
            .iter()
            .all(|r| m.contains(&count(r)))
    });
    let m = admin_get(&net, "a", "/metrics");
    assert!(
        m.contains("lb_vrrp_adverts_received_total{interface=\"e0\",vrid=\"51\",vrrp=\"www\"} 0"),
        "{m}"
    );
}

#[test]
fn without_capabilities_lb_refuses_to_start_and_check_is_silent() {
    if !have("setpriv") {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return;
    }
    let dir = TempDir::new("vrrpcaps");
    let path = dir.path().join("lb.conf");
    std::fs::write(
        &path,
        "web w\n    bind 127.0.0.1:0\n    root .\n\nvrrp www\n    interface lo\n    vrid 51\n    address 10.77.0.100/24\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let out = Command::new("setpriv")
        .args([
            "--inh-caps=-all",
            "--bounding-set=-net_raw,-net_admin",
            lb_bin(),
            "--conf",
            p,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{p}:5: vrrp needs CAP_NET_RAW and CAP_NET_ADMIN")),
        "{err}"
    );
    let out = Command::new("setpriv")
        .args([
            "--inh-caps=-all",
            "--bounding-set=-net_raw,-net_admin",
            lb_bin(),
            "check",
            "--conf",
            p,
        ])
        .output()
        .expect("setpriv");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn reload_changes_priority_without_a_transition_and_track_lowers_it() {
    let Some(net) = Net::new(&["a", "b", "client"]) else {
        return;
    };
    let track = "    track backend app weight -60\n";
    let a = start_lb(&net, "a", &vrrp_section("www", 51, 150, VIP, track));
    a.log.wait("vrrp www: BACKUP -> MASTER");
    let b = start_lb(&net, "b", &vrrp_section("www", 51, 120, VIP, ""));
    b.log.wait("vrrp www: INIT -> BACKUP");
    // A reload: priority 150 -> 140 and a longer interval; a stays master.
    let conf_a = a._dir.path().join("lb.conf");
    let text = std::fs::read_to_string(&conf_a).unwrap();
    std::fs::write(
        &conf_a,
        text.replace("priority 150", "priority 140")
            .replace("advert-int 100ms", "advert-int 200ms"),
    )
    .unwrap();
    a.kill(libc::SIGHUP);
    a.log.wait("reloaded");
    wait_for("the new priority in /metrics", || {
        admin_get(&net, "a", "/metrics")
            .contains("lb_vrrp_priority{interface=\"e0\",vrid=\"51\",vrrp=\"www\"} 140")
    });
    assert_eq!(a.log.count("MASTER ->"), 0, "{}", a.log.text());
    // Its backend's server goes away: backend app has no server up, 140 - 60
    // = 80 < 120, and b (preempting) takes over.
    let t0 = Instant::now();
    let client = Client::start(&net, VIP);
    client.wait_answers("a", 5, t0);
    let moved = text
        .replace("priority 150", "priority 140")
        .replace("advert-int 100ms", "advert-int 200ms")
        .replace("server s1 127.0.0.1:8080", "server s1 127.0.0.1:8089");
    std::fs::write(&conf_a, moved).unwrap();
    a.kill(libc::SIGHUP);
    a.log.wait("priority 140 -> 80 (tracked backends)");
    b.log.wait("vrrp www: BACKUP -> MASTER");
    a.log.wait("vrrp www: MASTER -> BACKUP");
    client.wait_answers("b", 5, t0);
    let (_, nodes) = client.finish();
    assert_eq!(nodes.last().map(String::as_str), Some("b"), "{nodes:?}");
}

#[test]
fn a_missing_interface_fails_the_start_with_its_line() {
    // Needs the capabilities to get as far as the interface (root in tests and CI).
    if !lb::vrrp::caps::has_net_caps() {
        eprintln!("skipped: not running with CAP_NET_RAW and CAP_NET_ADMIN");
        return;
    }
    let (code, err, path, _dir) = common::run_to_exit(
        "vrrp www\n    interface nosuch9\n    vrid 51\n    address 10.77.0.100/24\n",
    );
    assert_eq!(code, Some(1), "{err}");
    let want = format!("{}:1: vrrp www: interface nosuch9: ", path.display());
    assert!(err.contains(&want), "{err}");
}
