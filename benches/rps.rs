//! HTTP requests/s and latency: direct to a backend, through lb with 1 worker,
//! through lb with all workers, driven by this file's own keep-alive client.
//!
//! `cargo bench --bench rps`; env: `BENCH_CONNS` (50), `BENCH_SECS` (3), `BENCH_ROUNDS` (3).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BODY: &[u8] = &[b'x'; 1024];

/// A minimal keep-alive HTTP server answering every request with 1 KiB.
async fn backend(l: TcpListener) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let mut buf = vec![0u8; 16384];
            let mut have = 0;
            let resp = {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
                    BODY.len()
                )
                .into_bytes();
                r.extend_from_slice(BODY);
                r
            };
            loop {
                let n = match s.read(&mut buf[have..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                have += n;
                // Answer every complete head (requests carry no body here).
                let mut out = Vec::new();
                let mut start = 0;
                while let Some(i) = find(&buf[start..have], b"\r\n\r\n") {
                    start += i + 4;
                    out.extend_from_slice(&resp);
                }
                buf.copy_within(start..have, 0);
                have -= start;
                if !out.is_empty() && s.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// One client connection: request, read the whole response, repeat until `end`.
async fn client(addr: SocketAddr, end: Instant, lat: &mut Vec<u32>) -> u64 {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return 0;
    };
    let _ = s.set_nodelay(true);
    let req = b"GET /file HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut buf = vec![0u8; 65536];
    let mut done = 0;
    while Instant::now() < end {
        let t = Instant::now();
        if s.write_all(req).await.is_err() {
            break;
        }
        let mut have = 0;
        loop {
            let n = match s.read(&mut buf[have..]).await {
                Ok(0) | Err(_) => return done,
                Ok(n) => n,
            };
            have += n;
            if let Some(h) = find(&buf[..have], b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..h]).unwrap_or("");
                let cl: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if have >= h + 4 + cl {
                    break;
                }
            }
        }
        lat.push(t.elapsed().as_micros() as u32);
        done += 1;
    }
    done
}

struct Result {
    rps: f64,
    p50: u32,
    p99: u32,
}

async fn load(addr: SocketAddr, conns: usize, secs: f64) -> Result {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let t = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(100_000);
                let n = client(addr, end, &mut lat).await;
                (n, lat)
            })
        })
        .collect();
    let mut total = 0;
    let mut lat = Vec::new();
    for h in tasks {
        if let Ok((n, l)) = h.await {
            total += n;
            lat.extend(l);
        }
    }
    let el = t.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Result {
        rps: total as f64 / el,
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_lb(backend: SocketAddr, threads: usize, dir: &std::path::Path) -> (Proc, SocketAddr) {
    let conf = format!(
        "global\n    nbthread {threads}\ndefaults\n    mode http\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server s {backend}\n"
    );
    let path = dir.join(format!("lb-{threads}.conf"));
    std::fs::write(&path, conf).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--conf")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let line = BufReader::new(out)
        .lines()
        .next()
        .expect("lb exited")
        .unwrap();
    let addr = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    (Proc(child), addr)
}

fn env_num(k: &str, d: f64) -> f64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    let conns = env_num("BENCH_CONNS", 50.0) as usize;
    let secs = env_num("BENCH_SECS", 3.0);
    let rounds = env_num("BENCH_ROUNDS", 3.0) as usize;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The backend gets a runtime of its own on one thread.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            backend(l).await
        });
    });
    let be = rx.recv().unwrap();
    // Removed on drop, also when a run fails.
    let dir = lb::testutil::TempDir::new("bench-rps");
    let (_p1, lb1) = start_lb(be, 1, &dir);
    let (_pn, lbn) = start_lb(be, cores, &dir);
    let targets = [
        ("direct".to_string(), be),
        ("lb, 1 worker".to_string(), lb1),
        (format!("lb, {cores} workers"), lbn),
    ];
    let rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    );
    let mut results: Vec<Vec<Result>> = targets.iter().map(|_| Vec::new()).collect();
    for r in 0..rounds {
        eprintln!("round {}/{rounds}", r + 1);
        for (i, (_, a)) in targets.iter().enumerate() {
            results[i].push(rt.block_on(load(*a, conns, secs)));
        }
    }
    println!("\nHTTP keep-alive, {conns} connections, {secs}s x {rounds} interleaved rounds (median by requests/s), 1 KiB responses");
    println!("| target | requests/s | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|");
    for (i, (name, _)) in targets.iter().enumerate() {
        let v = &mut results[i];
        v.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        let m = &v[v.len() / 2];
        println!("| {name} | {:.0} | {} | {} |", m.rps, m.p50, m.p99);
    }
}
