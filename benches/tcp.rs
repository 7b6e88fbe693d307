//! TCP-mode benchmark: 1 GiB stream throughput and connections/s through lb
//! (both thread models) and HAProxy (when installed), against a direct connection.
//!
//! `cargo bench --bench tcp`; env: `BENCH_ROUNDS` (default 3), `BENCH_GIB` (default 1),
//! `BENCH_CONN_SECS` (default 2), `BENCH_NO_HAPROXY=1` to skip HAProxy.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Reads everything until EOF, then answers with one byte and closes: the
/// client's read of that byte marks the end of the transfer.
fn sink_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
                let _ = s.write_all(b"k");
            });
        }
    });
    addr
}

/// Echoes one small message per connection, then closes.
fn ping_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut b = [0u8; 1];
            if s.read_exact(&mut b).is_ok() {
                let _ = s.write_all(&b);
            }
        }
    });
    addr
}

fn stream_gib(addr: SocketAddr, bytes: u64) -> f64 {
    let mut s = TcpStream::connect(addr).unwrap();
    let buf = vec![0x5au8; 1 << 20];
    let t = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    s.shutdown(Shutdown::Write).unwrap();
    let mut k = [0u8; 1];
    s.read_exact(&mut k).unwrap();
    bytes as f64 / t.elapsed().as_secs_f64() / (1u64 << 30) as f64 * 8.0
}

fn conns_per_sec(addr: SocketAddr, secs: f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (stop, count) = (stop.clone(), count.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect(addr) else {
                        continue;
                    };
                    let _ = s.set_nodelay(true);
                    let mut b = [0u8; 1];
                    if s.write_all(b"x").is_ok() && s.read_exact(&mut b).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / secs
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_lb(
    sink: SocketAddr,
    ping: SocketAddr,
    threads: &str,
    dir: &std::path::Path,
) -> (Proc, SocketAddr, SocketAddr) {
    let conf = format!(
        "global\n    nbthread 2\ndefaults\n    mode tcp\nfrontend sink\n    bind 127.0.0.1:0\n    default_backend sink\nbackend sink\n    server s {sink}\nfrontend ping\n    bind 127.0.0.1:0\n    default_backend ping\nbackend ping\n    server p {ping}\n"
    );
    let path = dir.join(format!("lb-{threads}.conf"));
    std::fs::write(&path, conf).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--conf")
        .arg(&path)
        .env("LB_THREADS", threads)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let mut addrs = Vec::new();
    while addrs.len() < 2 {
        let l = lines.next().expect("lb exited").unwrap();
        if let Some(a) = l.split_whitespace().nth(3) {
            addrs.push(a.parse().unwrap());
        }
    }
    (Proc(child), addrs[0], addrs[1])
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_haproxy(
    sink: SocketAddr,
    ping: SocketAddr,
    dir: &std::path::Path,
) -> Option<(Proc, SocketAddr, SocketAddr)> {
    if std::env::var("BENCH_NO_HAPROXY").is_ok() {
        return None;
    }
    let (p1, p2) = (free_port(), free_port());
    let conf = format!(
        "global\n    nbthread 2\n    maxconn 4000\ndefaults\n    mode tcp\n    option splice-auto\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\nlisten sink\n    bind 127.0.0.1:{p1}\n    server s {sink}\nlisten ping\n    bind 127.0.0.1:{p2}\n    server p {ping}\n"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let a1: SocketAddr = format!("127.0.0.1:{p1}").parse().unwrap();
    let a2: SocketAddr = format!("127.0.0.1:{p2}").parse().unwrap();
    // Readiness: poll until the port accepts (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(a2).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
    Some((Proc(child), a1, a2))
}

fn env_num(k: &str, d: f64) -> f64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    let rounds = env_num("BENCH_ROUNDS", 3.0) as usize;
    let bytes = (env_num("BENCH_GIB", 1.0) * (1u64 << 30) as f64) as u64;
    let secs = env_num("BENCH_CONN_SECS", 2.0);
    // Removed on drop, also when a run fails.
    let dir = lb::testutil::TempDir::new("bench-tcp");
    let sink = sink_server();
    let ping = ping_server();
    let (_lb1, lb1_sink, lb1_ping) = start_lb(sink, ping, "per-thread", &dir);
    let (_lb2, lb2_sink, lb2_ping) = start_lb(sink, ping, "shared", &dir);
    let hap = start_haproxy(sink, ping, &dir);
    let mut targets: Vec<(&str, SocketAddr, SocketAddr)> = vec![
        ("direct", sink, ping),
        ("lb per-thread", lb1_sink, lb1_ping),
        ("lb shared", lb2_sink, lb2_ping),
    ];
    if let Some((_, s, p)) = &hap {
        targets.push(("haproxy splice-auto", *s, *p));
    }
    let mut gbps = vec![Vec::new(); targets.len()];
    let mut cps = vec![Vec::new(); targets.len()];
    for r in 0..rounds {
        eprintln!("round {}/{rounds}", r + 1);
        for (i, (_, s, p)) in targets.iter().enumerate() {
            gbps[i].push(stream_gib(*s, bytes));
            cps[i].push(conns_per_sec(*p, secs));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let g: Vec<f64> = gbps.iter_mut().map(median).collect();
    let c: Vec<f64> = cps.iter_mut().map(median).collect();
    println!(
        "\nTCP mode, {rounds} interleaved rounds, median; stream = {:.1} GiB, conns = 4 client threads, {secs}s",
        bytes as f64 / (1u64 << 30) as f64
    );
    println!("| target | stream Gbit/s | vs direct | conns/s | vs direct |");
    println!("|---|---:|---:|---:|---:|");
    for (i, (name, _, _)) in targets.iter().enumerate() {
        println!(
            "| {name} | {:.2} | {:.2}x | {:.0} | {:.2}x |",
            g[i],
            g[i] / g[0],
            c[i],
            c[i] / c[0]
        );
    }
}
