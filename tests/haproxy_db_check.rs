//! `option mysql-check` and `option pgsql-check`: tiny fake MySQL and
//! PostgreSQL servers inside the test answer a greeting/login, an error, or
//! (PostgreSQL) a password request; the server goes down and up as with
//! HAProxy 2.6, and the login bytes lb's check sends are HAProxy's.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{haproxy, Lb};

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Mysql,
    Pgsql,
}

/// A fake database server. `mode`: 0 answers well, 1 answers the login with
/// an error, 2 answers with an error at once (MySQL) or not as PostgreSQL
/// does, 3 (PostgreSQL) asks for a password.
struct Db {
    port: u16,
    mode: Arc<AtomicU8>,
    /// The last login a check sent (user `haproxy`).
    login: Arc<Mutex<Option<Vec<u8>>>>,
}

fn mysql_packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    p.push(seq);
    p.extend(payload);
    p
}

fn mysql_error(seq: u8, code: u16, msg: &str) -> Vec<u8> {
    let mut e = vec![0xff];
    e.extend(code.to_le_bytes());
    e.extend(b"#HY000");
    e.extend(msg.as_bytes());
    mysql_packet(seq, &e)
}

fn pg_msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend((body.len() as u32 + 4).to_be_bytes());
    m.extend(body);
    m
}

/// Reads what the peer sends until `whole` says it is complete, EOF or 2s.
fn read_until(s: &mut TcpStream, whole: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !whole(&buf) {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf
}

fn serve(
    proto: Proto,
    tag: &'static str,
    mut s: TcpStream,
    mode: u8,
    login: &Mutex<Option<Vec<u8>>>,
) {
    let record = |got: &[u8]| {
        if got.windows(7).any(|w| w == b"haproxy") {
            *login.lock().unwrap() = Some(got.to_vec());
        }
    };
    match proto {
        Proto::Mysql => {
            if mode == 2 {
                let _ = s.write_all(&mysql_error(0, 1129, "Host is blocked"));
                return;
            }
            let mut g = vec![0x0a];
            g.extend(format!("5.7.0-{tag}\0").as_bytes());
            g.extend([1, 0, 0, 0]);
            g.extend(b"saltsalt\0");
            g.extend([0xff, 0xf7, 0x21, 0x02, 0x00, 0xff, 0x81, 21]);
            g.extend([0u8; 10]);
            g.extend(b"saltsaltsalt\0mysql_native_password\0");
            if s.write_all(&mysql_packet(0, &g)).is_err() {
                return;
            }
            // The login and COM_QUIT (5 bytes), or nothing (a greeting-only check).
            let got = read_until(&mut s, |b| {
                b.len() >= 4 && b.len() >= 4 + (b[0] as usize | (b[1] as usize) << 8) + 5
            });
            if got.is_empty() {
                return;
            }
            record(&got);
            let answer = if mode == 1 {
                mysql_error(2, 1045, "Access denied for user 'haproxy'")
            } else {
                mysql_packet(2, &[0, 0, 0, 2, 0, 0, 0])
            };
            let _ = s.write_all(&answer);
        }
        Proto::Pgsql => {
            let got = read_until(&mut s, |b| {
                b.len() >= 4 && b.len() >= u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
            });
            if got.is_empty() {
                return;
            }
            record(&got);
            let answer = match mode {
                1 => pg_msg(
                    b'E',
                    b"SFATAL\0C28000\0Mno pg_hba.conf entry for user haproxy\0\0",
                ),
                2 => b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
                // A password request (with the tag, so the test sees where it lands).
                3 => {
                    let mut a = pg_msg(b'R', &[0, 0, 0, 3]);
                    a.extend(pg_msg(
                        b'S',
                        format!("application_name\0{tag}\0").as_bytes(),
                    ));
                    a
                }
                _ => {
                    let mut a = pg_msg(b'R', &[0, 0, 0, 0]);
                    a.extend(pg_msg(
                        b'S',
                        format!("application_name\0{tag}\0").as_bytes(),
                    ));
                    a.extend(pg_msg(b'Z', b"I"));
                    a
                }
            };
            let _ = s.write_all(&answer);
        }
    }
    // Let the peer read the answer and close first.
    let _ = read_until(&mut s, |_| false);
}

fn db(proto: Proto, tag: &'static str, mode: u8) -> Db {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mode = Arc::new(AtomicU8::new(mode));
    let login = Arc::new(Mutex::new(None));
    let (m, lg) = (mode.clone(), login.clone());
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (m, lg) = (m.clone(), lg.clone());
            std::thread::spawn(move || serve(proto, tag, s, m.load(Ordering::SeqCst), &lg));
        }
    });
    Db { port, mode, login }
}

/// The tag of the server a new connection through `addr` reaches, if any.
fn tag_via(proto: Proto, addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    if proto == Proto::Pgsql {
        let mut body = vec![0, 3, 0, 0];
        body.extend(b"user\0app\0\0");
        let mut m = (body.len() as u32 + 4).to_be_bytes().to_vec();
        m.extend(body);
        s.write_all(&m).ok()?;
    }
    let got = read_until(&mut s, |b| {
        b.windows(2)
            .any(|w| w == b"-A" || w == b"-B" || w == b"\0A" || w == b"\0B")
    });
    ["A", "B"]
        .into_iter()
        .find(|t| {
            got.windows(2)
                .any(|w| w == format!("-{t}").as_bytes() || w == format!("\0{t}").as_bytes())
        })
        .map(str::to_string)
}

/// Waits until every one of 6 connections reaches `only`, or until one reaches B.
fn all_on_a(proto: Proto, addr: SocketAddr) {
    common::eventually("every connection on A", || {
        (0..6)
            .all(|_| tag_via(proto, addr).as_deref() == Some("A"))
            .then_some(())
    });
}

fn some_on_b(proto: Proto, addr: SocketAddr) {
    common::eventually("a connection on B", || {
        (0..6)
            .any(|_| tag_via(proto, addr).as_deref() == Some("B"))
            .then_some(())
    });
}

fn conf(bind: &str, check: &str, a: u16, b: u16) -> String {
    format!(
        "defaults\n mode tcp\n timeout connect 2s\n timeout server 10s\n timeout client 10s\n timeout check 1s\n\n\
         frontend ft\n bind {bind}\n default_backend bk\n\n\
         backend bk\n {check}\n server A 127.0.0.1:{a} check inter 100ms rise 1 fall 1\n server B 127.0.0.1:{b} check inter 100ms rise 1 fall 1\n"
    )
}

/// Runs the down/up sequence on lb and HAProxy for one check line; returns
/// the login bytes each sent (lb's, HAProxy's).
fn down_and_up(proto: Proto, check: &str, good: u8, bad: u8) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let a = db(proto, "A", good);
    let b = db(proto, "B", bad);
    let run = |addr: SocketAddr| {
        all_on_a(proto, addr);
        b.mode.store(good, Ordering::SeqCst);
        some_on_b(proto, addr);
        b.mode.store(bad, Ordering::SeqCst);
        all_on_a(proto, addr);
    };
    let lb = Lb::start(&conf("127.0.0.1:0", check, a.port, b.port), 1);
    run(lb.addr("frontend", "ft"));
    drop(lb);
    let lb_login = b.login.lock().unwrap().take();
    let port = haproxy::free_port();
    let haddr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let Some(_h) = haproxy::start(&conf(&haddr.to_string(), check, a.port, b.port), haddr) else {
        return (lb_login, None);
    };
    // Checks of the stopped lb may still be in flight: take HAProxy's after its run.
    *b.login.lock().unwrap() = None;
    run(haddr);
    let h_login = b.login.lock().unwrap().take();
    (lb_login, h_login)
}

#[test]
fn mysql_check_marks_servers_down_and_up_as_haproxy() {
    // With a user: the login answer decides (Access denied = down).
    for check in [
        "option mysql-check user haproxy",
        "option mysql-check user haproxy post-41",
        "option mysql-check user haproxy pre-41",
    ] {
        let (lb, h) = down_and_up(Proto::Mysql, check, 0, 1);
        assert!(lb.is_some(), "{check}: lb sent no login");
        if let Some(h) = h {
            assert_eq!(lb.unwrap(), h, "{check}: login bytes differ from HAProxy's");
        }
    }
    // Without a user: only the greeting is read; an error greeting is down.
    let (lb, _) = down_and_up(Proto::Mysql, "option mysql-check", 0, 2);
    assert!(lb.is_none(), "no user: no login sent");
}

#[test]
fn pgsql_check_marks_servers_down_and_up_as_haproxy() {
    // An error is down, and so is a reply that is not PostgreSQL's; a
    // password request is up (HAProxy does not try the password).
    for (good, bad) in [(0, 1), (3, 2)] {
        let (lb, h) = down_and_up(Proto::Pgsql, "option pgsql-check user haproxy", good, bad);
        assert!(lb.is_some(), "lb sent no startup message");
        if let Some(h) = h {
            assert_eq!(lb.unwrap(), h, "startup bytes differ from HAProxy's");
        }
    }
}

#[test]
fn check_refuses_bad_db_checks() {
    let text = "defaults\n mode tcp\n timeout connect 1s\n timeout server 1s\n timeout client 1s\n\n\
                frontend ft\n bind 127.0.0.1:0\n default_backend bk\n\n\
                backend bk\n option pgsql-check\n option mysql-check user x post-42\n server A 127.0.0.1:1 check\n";
    let (code, _out, err, _p, _d) = common::check(text);
    assert_ne!(code, 0);
    assert!(err.contains(":12:") && err.contains("pgsql-check"), "{err}");
    assert!(err.contains(":13:") && err.contains("post-42"), "{err}");
}
