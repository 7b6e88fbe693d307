//! `agent-check`: an agent inside the test answers `down`, `up`, `drain`,
//! `ready`, `maint`, `NN%`; the server's state and weight follow, on lb and
//! on HAProxy 2.6 running the same conf, and both send the same `agent-send`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{haproxy, servers, Lb};

struct Agent {
    port: u16,
    reply: Arc<Mutex<String>>,
    /// What the last asker sent before reading the reply.
    heard: Arc<Mutex<Vec<u8>>>,
}

fn agent(first: &str) -> Agent {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let reply = Arc::new(Mutex::new(first.to_string()));
    let heard = Arc::new(Mutex::new(Vec::new()));
    let (r, h) = (reply.clone(), heard.clone());
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            // agent-send ends with a newline here; read it, then answer.
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut got = Vec::new();
            let mut b = [0u8; 64];
            while !got.contains(&b'\n') {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&b[..n]),
                }
            }
            *h.lock().unwrap() = got;
            let line = r.lock().unwrap().clone();
            let _ = s.write_all(line.as_bytes());
        }
    });
    Agent { port, reply, heard }
}

fn tag_via(addr: SocketAddr) -> Option<String> {
    let s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    Some(line.trim().to_string()).filter(|l| !l.is_empty())
}

fn all_on_a(addr: SocketAddr, after: &str) {
    common::eventually(&format!("every connection on A after '{after}'"), || {
        (0..6)
            .all(|_| tag_via(addr).as_deref() == Some("A"))
            .then_some(())
    });
}

fn some_on_b(addr: SocketAddr, after: &str) {
    common::eventually(&format!("a connection on B after '{after}'"), || {
        (0..6)
            .any(|_| tag_via(addr).as_deref() == Some("B"))
            .then_some(())
    });
}

fn conf(bind: &str, a: SocketAddr, b: SocketAddr, agent: u16) -> String {
    format!(
        "defaults\n mode tcp\n timeout connect 2s\n timeout server 10s\n timeout client 10s\n\n\
         frontend ft\n bind {bind}\n default_backend bk\n\n\
         backend bk\n server A {a} weight 10\n server B {b} weight 10 agent-check agent-port {agent} agent-inter 100ms agent-send \"hello\\n\"\n"
    )
}

/// The agent's words, in order, and whether B takes traffic after each.
const STEPS: &[(&str, bool)] = &[
    ("down\n", false),
    ("up\n", true),
    ("drain\n", false),
    ("ready\n", true),
    ("maint\n", false),
    ("ready\n", true),
    ("0%\n", false),
    ("100%\n", true),
    ("down #disk full\n", false),
    ("up, 50%\n", true),
];

fn run(ag: &Agent, addr: SocketAddr) {
    for (words, b_up) in STEPS {
        *ag.reply.lock().unwrap() = words.to_string();
        if *b_up {
            some_on_b(addr, words.trim());
        } else {
            all_on_a(addr, words.trim());
        }
    }
}

#[test]
fn agent_replies_set_state_and_weight_as_haproxy() {
    let a = servers::tagged_echo("A");
    let b = servers::tagged_echo("B");
    let ag = agent("up\n");
    let lb = Lb::start(&conf("127.0.0.1:0", a, b, ag.port), 1);
    run(&ag, lb.addr("frontend", "ft"));
    lb.wait_log("agent says down: disk full");
    assert_eq!(&ag.heard.lock().unwrap()[..], b"hello\n");
    drop(lb);

    let port = haproxy::free_port();
    let haddr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    *ag.reply.lock().unwrap() = "up\n".into();
    let Some(_h) = haproxy::start(&conf(&haddr.to_string(), a, b, ag.port), haddr) else {
        return;
    };
    run(&ag, haddr);
    assert_eq!(&ag.heard.lock().unwrap()[..], b"hello\n");
}

#[test]
fn check_refuses_an_agent_without_a_port() {
    let text =
        "defaults\n mode tcp\n timeout connect 1s\n timeout server 1s\n timeout client 1s\n\n\
                frontend ft\n bind 127.0.0.1:0\n default_backend bk\n\n\
                backend bk\n server A 127.0.0.1:1 agent-check\n";
    let (code, _out, err, _p, _d) = common::check(text);
    assert_ne!(code, 0);
    assert!(err.contains("agent-port"), "{err}");
}
