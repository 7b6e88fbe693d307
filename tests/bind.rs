//! Listening addresses belong to one process: a second `lb` (or any other
//! listener, SO_REUSEPORT or not) on an address a running lb holds fails to
//! start; lb's own worker threads and reloads still share their sockets.

mod common;

use std::net::{SocketAddr, TcpListener};

use common::client::Client;
use common::Lb;

/// Asserts that lb on `conf` exits 1 naming line `line` and `addr` as taken.
fn fails_in_use(conf: &str, line: usize, addr: SocketAddr) {
    let (code, err, path, _dir) = common::run_to_exit(conf);
    assert_eq!(code, Some(1), "stderr: {err}");
    let want = format!(
        "{}:{line}: cannot bind {addr}: already in use by another process",
        path.display()
    );
    assert!(err.contains(&want), "want {want:?} in stderr:\n{err}");
}

fn frontend_conf(addr: &str, server: SocketAddr) -> String {
    format!(
        "global\n    nbthread 2\nfrontend f\n    bind {addr}\n    default_backend b\nbackend b\n    server s {server}\n"
    )
}

/// A TCP listener with SO_REUSEPORT set, as another program might hold one.
fn reuseport_listener() -> TcpListener {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.listen(16).unwrap();
    s.into()
}

#[test]
fn second_lb_on_a_frontend_address_fails() {
    let srv = common::servers::http_server("a");
    let first = Lb::start(&frontend_conf("127.0.0.1:0", srv.addr), 1);
    let addr = first.addr("frontend", "f");
    fails_in_use(&frontend_conf(&addr.to_string(), srv.addr), 4, addr);
    // The first one still has every connection.
    for _ in 0..8 {
        assert_eq!(Client::connect(addr).get("/").status, 200);
    }
}

#[test]
fn second_lb_on_a_kv_address_fails() {
    let first = Lb::start("kv k\n    bind 127.0.0.1:0\n", 1);
    let addr = first.addr("kv", "k");
    fails_in_use(&format!("\nkv k\n    bind {addr}\n"), 3, addr);
}

#[test]
fn second_lb_on_web_app_and_admin_addresses_fails() {
    let root = common::TempDir::new("bind-web");
    let first = Lb::start(
        &format!(
            "global\n    admin 127.0.0.1:0\nweb w\n    bind 127.0.0.1:0\n    root {}\napp a\n    bind 127.0.0.1:0\n    kv-primary 127.0.0.1:9\n",
            root.path().display()
        ),
        3,
    );
    let web = first.addr("web", "w");
    fails_in_use(
        &format!(
            "web w\n    bind {web}\n    root {}\n",
            root.path().display()
        ),
        2,
        web,
    );
    let app = first.addr("app", "a");
    fails_in_use(
        &format!("app a\n    bind {app}\n    kv-primary 127.0.0.1:9\n"),
        2,
        app,
    );
    let admin = first.addr("admin", "admin");
    fails_in_use(&format!("global\n    admin {admin}\n"), 2, admin);
}

#[test]
fn another_programs_listener_is_refused_with_or_without_reuseport() {
    let srv = common::servers::http_server("a");
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = plain.local_addr().unwrap();
    fails_in_use(&frontend_conf(&addr.to_string(), srv.addr), 4, addr);
    let shared = reuseport_listener();
    let addr = shared.local_addr().unwrap();
    fails_in_use(&frontend_conf(&addr.to_string(), srv.addr), 4, addr);
    fails_in_use(&format!("kv k\n    bind {addr}\n"), 2, addr);
}

/// Listening TCP sockets on `port`, from /proc/net/tcp.
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&local) && f[3] == "0A"
        })
        .count()
}

/// Waits until exactly `n` sockets listen on `port`.
fn wait_listening_sockets(port: u16, n: usize) {
    common::eventually(&format!("{n} listening sockets on port {port}"), || {
        (listening_sockets(port) == n).then_some(())
    });
}

#[test]
fn workers_and_reloads_share_their_own_addresses() {
    let srv = common::servers::http_server("a");
    let lb = Lb::start(&frontend_conf("127.0.0.1:0", srv.addr), 1);
    let addr = lb.addr("frontend", "f");
    // One socket per worker thread on the same address.
    assert_eq!(listening_sockets(addr.port()), 2);
    // A renamed frontend opens the address again while the old one holds it.
    let renamed = frontend_conf(&addr.to_string(), srv.addr).replace("frontend f", "frontend g");
    lb.reload(&renamed);
    let line = lb.wait_listening();
    assert_eq!(line, format!("listening frontend g {addr}"));
    assert!(lb.wait_log("reloaded:").contains("changes"));
    // A connection queued on f's sockets as they close would be reset.
    wait_listening_sockets(addr.port(), 2);
    for _ in 0..8 {
        assert_eq!(Client::connect(addr).get("/").status, 200);
    }
    // A reload that keeps the address keeps serving on it.
    lb.reload(&format!("# moved\n{renamed}"));
    lb.wait_log("reloaded:");
    assert_eq!(Client::connect(addr).get("/").status, 200);
}

#[test]
fn a_reload_onto_an_address_another_process_holds_fails_and_keeps_serving() {
    let srv = common::servers::http_server("a");
    let lb = Lb::start(&frontend_conf("127.0.0.1:0", srv.addr), 1);
    let addr = lb.addr("frontend", "f");
    let other = reuseport_listener();
    let taken = other.local_addr().unwrap();
    let conf = frontend_conf(&addr.to_string(), srv.addr);
    lb.reload(&format!(
        "{conf}frontend g\n    bind {taken}\n    default_backend b\n"
    ));
    let line = lb.wait_log("reload failed");
    assert!(
        line.contains(&format!(
            ":9: cannot bind {taken}: already in use by another process"
        )),
        "{line}"
    );
    assert_eq!(Client::connect(addr).get("/").status, 200);
}

#[test]
fn a_new_lb_can_take_the_address_while_the_old_one_drains() {
    let srv = common::servers::http_server("a");
    let conf = format!(
        "global\n    timeout drain 30s\n{}",
        frontend_conf("127.0.0.1:0", srv.addr)
    );
    let old = Lb::start(&conf, 1);
    let addr = old.addr("frontend", "f");
    // A TCP-mode connection the old lb keeps through its drain.
    let mut held = Client::connect(addr);
    assert_eq!(held.get("/").status, 200);
    old.signal(libc::SIGTERM);
    old.wait_log("SIGTERM: draining");
    wait_listening_sockets(addr.port(), 0);
    let new = Lb::start(&conf.replace("127.0.0.1:0", &addr.to_string()), 1);
    assert_eq!(new.addr("frontend", "f"), addr);
    assert_eq!(Client::connect(addr).get("/").status, 200);
    // The old connection still works: the drain goes on beside the new lb.
    assert_eq!(held.get("/").status, 200);
}

#[test]
fn a_wildcard_bind_beside_a_specific_one_of_the_same_lb_is_allowed() {
    let srv = common::servers::http_server("a");
    let lb = Lb::start(&frontend_conf("127.0.0.1:0", srv.addr), 1);
    let addr = lb.addr("frontend", "f");
    let conf = frontend_conf(&addr.to_string(), srv.addr);
    let wildcard = format!("0.0.0.0:{}", addr.port());
    lb.reload(&format!(
        "{conf}frontend g\n    bind {wildcard}\n    default_backend b\n"
    ));
    // f is announced again too: its bind line now names the port.
    let lines = [lb.wait_listening(), lb.wait_listening()];
    assert!(
        lines.contains(&format!("listening frontend g {wildcard}")),
        "{lines:?}"
    );
    wait_listening_sockets(addr.port(), 4);
    assert_eq!(Client::connect(addr).get("/").status, 200);
}
