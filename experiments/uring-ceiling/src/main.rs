//! How fast could an io_uring data path be? A deliberately minimal keep-alive
//! HTTP/1.1 proxy on one raw io_uring loop (SINGLE_ISSUER + DEFER_TASKRUN, every
//! submission of a loop turn sent by one `submit_and_wait`), for measuring next to
//! lb and HAProxy with `EXTRA=... benches/compare.sh`.
//!
//! Not a proxy to run: GET-style requests without bodies, responses with
//! Content-Length only, no pipelining, no timeouts, no header checks. It answers
//! the question "what is left for lb to gain by leaving epoll", nothing else.
//!
//! Usage: uring-ceiling LISTEN_ADDR BACKEND_ADDR...
use io_uring::{opcode, squeue, types, IoUring};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::process::exit;

const BUF: usize = 64 << 10;
const RECV_CLIENT: u64 = 1;
const SEND_CLIENT: u64 = 2;
const RECV_SERVER: u64 = 3;
const SEND_SERVER: u64 = 4;
const ACCEPT: u64 = 5;

struct Conn {
    fd: i32,
    req: Vec<u8>,
    req_len: usize,
    server: Option<(usize, i32)>,
    resp: Vec<u8>,
    resp_len: usize,
    sending: usize,
}

fn head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn content_length(head: &[u8]) -> Option<usize> {
    std::str::from_utf8(head)
        .ok()?
        .split("\r\n")
        .find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
}

fn fail(msg: String) -> ! {
    eprintln!("uring-ceiling: {msg}");
    exit(1)
}

fn recv(fd: i32, buf: &mut [u8], at: usize, tag: u64) -> squeue::Entry {
    let rest = &mut buf[at..];
    opcode::Recv::new(types::Fd(fd), rest.as_mut_ptr(), rest.len() as u32)
        .build()
        .user_data(tag)
}

fn send(fd: i32, buf: &[u8], tag: u64) -> squeue::Entry {
    opcode::Send::new(types::Fd(fd), buf.as_ptr(), buf.len() as u32)
        .build()
        .user_data(tag)
}

fn close(c: &Conn) {
    // SAFETY: descriptors this loop owns, closed once as the connection is dropped.
    unsafe {
        libc::close(c.fd);
        if let Some((_, s)) = c.server {
            libc::close(s);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        fail("usage: uring-ceiling LISTEN_ADDR BACKEND_ADDR...".into());
    }
    let listener =
        TcpListener::bind(&args[0]).unwrap_or_else(|e| fail(format!("bind {}: {e}", args[0])));
    let backends: Vec<SocketAddr> = args[1..]
        .iter()
        .map(|a| a.parse().unwrap_or_else(|e| fail(format!("{a}: {e}"))))
        .collect();
    let mut idle: Vec<Vec<i32>> = backends.iter().map(|_| Vec::new()).collect();
    let mut next = 0usize;
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_cqsize(8192)
        .build(2048)
        .unwrap_or_else(|e| fail(format!("io_uring: {e}")));
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let tag = |i: usize, op: u64| (i as u64) << 8 | op;
    let mut queue: Vec<squeue::Entry> =
        vec![opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
            .build()
            .user_data(ACCEPT)];
    let mut done = Vec::new();
    loop {
        {
            let mut sq = ring.submission();
            for e in queue.drain(..) {
                // SAFETY: every buffer an entry points into lives in `conns` (heap
                // Vecs that never move) until its completion is handled.
                unsafe { sq.push(&e) }.unwrap_or_else(|_| fail("submission queue full".into()));
            }
        }
        ring.submit_and_wait(1)
            .unwrap_or_else(|e| fail(format!("io_uring_enter: {e}")));
        done.extend(ring.completion().map(|c| (c.user_data(), c.result())));
        for (user, res) in done.drain(..) {
            let (i, op) = ((user >> 8) as usize, user & 0xff);
            if op == ACCEPT {
                if res < 0 {
                    fail(format!(
                        "accept: {}",
                        std::io::Error::from_raw_os_error(-res)
                    ));
                }
                let one: libc::c_int = 1;
                // SAFETY: setsockopt on the descriptor accept just gave us.
                unsafe {
                    libc::setsockopt(
                        res,
                        libc::IPPROTO_TCP,
                        libc::TCP_NODELAY,
                        (&one as *const libc::c_int).cast(),
                        4,
                    )
                };
                let slot = conns.iter().position(Option::is_none).unwrap_or_else(|| {
                    conns.push(None);
                    conns.len() - 1
                });
                let mut c = Conn {
                    fd: res,
                    req: vec![0; BUF],
                    req_len: 0,
                    server: None,
                    resp: vec![0; BUF],
                    resp_len: 0,
                    sending: 0,
                };
                queue.push(recv(c.fd, &mut c.req, 0, tag(slot, RECV_CLIENT)));
                conns[slot] = Some(c);
                continue;
            }
            let Some(c) = conns[i].as_mut() else { continue };
            if res < 0 || (res == 0 && op != SEND_CLIENT && op != SEND_SERVER) {
                close(c);
                conns[i] = None;
                continue;
            }
            match op {
                RECV_CLIENT => {
                    c.req_len += res as usize;
                    match head_end(&c.req[..c.req_len]) {
                        Some(end) => {
                            let b = next % backends.len();
                            next += 1;
                            let s = idle[b].pop().unwrap_or_else(|| {
                                let s = TcpStream::connect(backends[b]).unwrap_or_else(|e| {
                                    fail(format!("connect {}: {e}", backends[b]))
                                });
                                let _ = s.set_nodelay(true);
                                s.into_raw_fd()
                            });
                            c.server = Some((b, s));
                            c.sending = end;
                            queue.push(send(s, &c.req[..end], tag(i, SEND_SERVER)));
                        }
                        None if c.req_len == BUF => {
                            close(c);
                            conns[i] = None;
                        }
                        None => queue.push(recv(c.fd, &mut c.req, c.req_len, tag(i, RECV_CLIENT))),
                    }
                }
                SEND_SERVER => {
                    if res as usize != c.sending {
                        fail("short send to a server".into());
                    }
                    c.req.copy_within(c.sending..c.req_len, 0);
                    c.req_len -= c.sending;
                    c.resp_len = 0;
                    let (_, s) = c.server.unwrap_or_else(|| fail("no server".into()));
                    queue.push(recv(s, &mut c.resp, 0, tag(i, RECV_SERVER)));
                }
                RECV_SERVER => {
                    c.resp_len += res as usize;
                    let (b, s) = c.server.unwrap_or_else(|| fail("no server".into()));
                    let total = head_end(&c.resp[..c.resp_len]).map(|h| {
                        h + content_length(&c.resp[..h])
                            .unwrap_or_else(|| fail("response without Content-Length".into()))
                    });
                    match total {
                        Some(t) if t <= c.resp_len => {
                            idle[b].push(s);
                            c.server = None;
                            c.sending = t;
                            queue.push(send(c.fd, &c.resp[..t], tag(i, SEND_CLIENT)));
                        }
                        _ if c.resp_len == BUF => fail("response larger than the buffer".into()),
                        _ => queue.push(recv(s, &mut c.resp, c.resp_len, tag(i, RECV_SERVER))),
                    }
                }
                SEND_CLIENT => {
                    if res as usize != c.sending {
                        fail("short send to a client".into());
                    }
                    if head_end(&c.req[..c.req_len]).is_some() {
                        fail("pipelined requests are out of scope".into());
                    }
                    queue.push(recv(c.fd, &mut c.req, c.req_len, tag(i, RECV_CLIENT)));
                }
                _ => {}
            }
        }
    }
}
