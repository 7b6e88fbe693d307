//! HTTP/2 to servers: per worker thread and server key, a few client
//! connections, each carrying many requests at once as streams.
//!
//! A request takes the first live connection with a free stream (fewer
//! streams in use than the server's SETTINGS_MAX_CONCURRENT_STREAMS); when
//! all are full, one more is opened. Opening is one at a time per key: a
//! burst of requests to a server waits for the connection being opened
//! rather than opening one each. A connection that got GOAWAY or failed
//! leaves the pool (its streams in flight finish); one with no stream for the
//! server's `pool-purge-delay` is closed, as are all idle ones at drain.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::h2::client::{ResponseFuture, SendRequest};
use ::h2::SendStream;
use bytes::Bytes;

use crate::io::Io;

/// Which connections a request may share: the server's address and, for
/// TLS, its connector's identity (the HTTP/1 idle pool's key, `dial::idle::Key`).
pub type Key = (std::net::SocketAddr, Option<u64>);

/// Streams lb opens on a new connection before the server's SETTINGS tell
/// its limit (RFC 9113 6.5.2 recommends servers allow at least 100).
const FIRST_MAX_STREAMS: usize = 100;

/// How often idle connections past their delay are closed.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TCP or TLS to the server failed (the reason, for logs and checks).
    #[error("{0}")]
    Connect(String),
    /// A TLS server that did not agree to h2 by ALPN.
    #[error("the server did not negotiate h2 by ALPN")]
    NoH2,
    #[error("HTTP/2 handshake failed: {0}")]
    Handshake(::h2::Error),
    /// The request could not go out even on a fresh connection.
    #[error("HTTP/2 request not sent: {0}")]
    Send(::h2::Error),
}

impl Error {
    /// The server is to blame for a failed connect (passive health checks).
    pub fn is_connect(&self) -> bool {
        !matches!(self, Error::Send(_))
    }
}

/// Per-server settings of the pool.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Close a connection after this long without a stream (`pool-purge-delay`).
    pub max_idle: Duration,
    /// Largest response header list accepted (decoded), as `tune.bufsize`
    /// bounds an HTTP/1 head.
    pub max_header_list: u32,
}

/// What one connection's streams and driver task share.
#[derive(Default)]
struct State {
    /// Streams in use (a `Lease` each).
    active: AtomicUsize,
    /// The connection ended, failed or got GOAWAY: no new stream on it.
    closed: AtomicBool,
    /// When the last stream ended (ms on `epoch()`), for the idle delay.
    idle_since: AtomicU64,
}

fn epoch() -> Instant {
    static E: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    crate::clock::now()
        .saturating_duration_since(epoch())
        .as_millis() as u64
}

/// One stream's hold on its connection: the connection counts it in use
/// until this is dropped (keep it for the whole exchange, body included).
pub struct Lease {
    state: Arc<State>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.state.idle_since.store(now_ms(), Ordering::Relaxed);
        self.state.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").finish()
    }
}

struct Conn {
    send: SendRequest<Bytes>,
    state: Arc<State>,
    max_idle: Duration,
}

impl Conn {
    fn usable(&self) -> bool {
        !self.state.closed.load(Ordering::Acquire)
    }

    fn has_room(&self) -> bool {
        self.usable()
            && self.state.active.load(Ordering::Acquire) < self.send.current_max_send_streams()
    }

    fn lease(&self) -> Lease {
        self.state.active.fetch_add(1, Ordering::AcqRel);
        Lease {
            state: self.state.clone(),
        }
    }
}

#[derive(Default)]
struct Pool {
    conns: HashMap<Key, Vec<Conn>>,
    /// One connect at a time per key; failures counted so the requests that
    /// waited on a failed connect fail with it instead of trying in turn.
    dialing: HashMap<Key, (Arc<tokio::sync::Mutex<()>>, Arc<AtomicU64>)>,
    sweeper: bool,
}

thread_local! {
    // Per thread, as the HTTP/1 pool: a connection's driver task runs on the
    // worker that opened it, and the request path takes no lock.
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// A stream on a live connection with room, if any (dead ones are dropped).
fn take_stream(key: Key) -> Option<(SendRequest<Bytes>, Lease)> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let list = p.conns.get_mut(&key)?;
        list.retain(Conn::usable);
        let c = list.iter().find(|c| c.has_room())?;
        Some((c.send.clone(), c.lease()))
    })
}

fn dial_lock(key: Key) -> (Arc<tokio::sync::Mutex<()>>, Arc<AtomicU64>) {
    POOL.with(|p| p.borrow_mut().dialing.entry(key).or_default().clone())
}

/// A request on its way: what `send` returns.
pub struct Sent {
    pub response: ResponseFuture,
    /// The request body's sender; `None` when the head ended the stream.
    pub body: Option<SendStream<Bytes>>,
    /// Keeps the stream counted on its connection: hold it to the end.
    pub lease: Lease,
    /// The stream went on a connection opened for it (not a pooled one).
    pub fresh: bool,
}

/// Sends a request head (already HTTP/2-shaped: method, URI with scheme,
/// authority and path, headers without connection-specific ones) on a pooled
/// connection to `key`, opening one with `connect` if none has room.
pub async fn send<F>(
    key: Key,
    limits: Limits,
    connect: F,
    req: http::Request<()>,
    end_of_stream: bool,
) -> Result<Sent, Error>
where
    F: Future<Output = Result<Io, String>>,
{
    let mut connect = Some(connect);
    // A pooled connection may turn out to be going away: the request was not
    // sent (h2 refuses it before writing), so it goes on another one.
    loop {
        let (send, lease, fresh) = match take_stream(key) {
            Some((s, l)) => (s, l, false),
            None => {
                let Some(c) = connect.take() else {
                    // Our own connect went into the pool and is already full
                    // or gone: open no second one for this request.
                    return Err(Error::Connect("no HTTP/2 connection with room".into()));
                };
                let (s, l) = open(key, limits, c).await?;
                (s, l, true)
            }
        };
        match start(send, req.clone(), end_of_stream).await {
            Ok((response, body)) => {
                return Ok(Sent {
                    response,
                    body,
                    lease,
                    fresh,
                })
            }
            Err(e) => {
                lease.state.closed.store(true, Ordering::Release);
                if connect.is_none() {
                    return Err(Error::Send(e));
                }
            }
        }
    }
}

async fn start(
    send: SendRequest<Bytes>,
    req: http::Request<()>,
    end_of_stream: bool,
) -> Result<(ResponseFuture, Option<SendStream<Bytes>>), ::h2::Error> {
    let mut send = send.ready().await?;
    let (resp, body) = send.send_request(req, end_of_stream)?;
    Ok((resp, (!end_of_stream).then_some(body)))
}

/// A stream on a new connection for `key`, opened one at a time per key: a
/// request that waited for another's connect takes a stream on it.
async fn open<F>(key: Key, limits: Limits, connect: F) -> Result<(SendRequest<Bytes>, Lease), Error>
where
    F: Future<Output = Result<Io, String>>,
{
    let (lock, failures) = dial_lock(key);
    let seen = failures.load(Ordering::Acquire);
    let _turn = lock.lock().await;
    if let Some(x) = take_stream(key) {
        return Ok(x);
    }
    if failures.load(Ordering::Acquire) != seen {
        return Err(Error::Connect(
            "connect failed for a request ahead of this one".into(),
        ));
    }
    match handshake(limits, connect).await {
        Ok(conn) => {
            let lease = conn.lease();
            let send = conn.send.clone();
            let spawn_sweeper = POOL.with(|p| {
                let mut p = p.borrow_mut();
                p.conns.entry(key).or_default().push(conn);
                !std::mem::replace(&mut p.sweeper, true)
            });
            if spawn_sweeper {
                tokio::spawn(sweep());
            }
            Ok((send, lease))
        }
        Err(e) => {
            failures.fetch_add(1, Ordering::AcqRel);
            Err(e)
        }
    }
}

async fn handshake<F>(limits: Limits, connect: F) -> Result<Conn, Error>
where
    F: Future<Output = Result<Io, String>>,
{
    let mut io = connect.await.map_err(Error::Connect)?;
    if let Io::TlsOut(t) = &io {
        if t.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(Error::NoH2);
        }
    }
    // h2 polls its socket; a ring socket cannot be polled.
    io.to_reactor()
        .await
        .map_err(|e| Error::Connect(format!("socket: {e}")))?;
    let (send, conn) = ::h2::client::Builder::new()
        .initial_max_send_streams(FIRST_MAX_STREAMS)
        .max_header_list_size(limits.max_header_list)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(Error::Handshake)?;
    let state = Arc::new(State::default());
    state.idle_since.store(now_ms(), Ordering::Relaxed);
    let driver = state.clone();
    tokio::spawn(async move {
        // Ends once every handle is dropped (pool purge), on GOAWAY after
        // the streams in flight, or on an error.
        if let Err(e) = conn.await {
            tracing::debug!("HTTP/2 server connection ended: {e}");
        }
        driver.closed.store(true, Ordering::Release);
    });
    Ok(Conn {
        send,
        state,
        max_idle: limits.max_idle,
    })
}

/// Closes connections idle past their delay, and all idle ones once the
/// drain starts; one task per worker thread.
async fn sweep() {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::shutdown::drain_started(), if !crate::shutdown::draining() => {}
        }
        let now = now_ms();
        let all = crate::shutdown::draining();
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            let p = &mut *p;
            for list in p.conns.values_mut() {
                list.retain(|c| {
                    let busy = c.state.active.load(Ordering::Acquire) > 0;
                    let since = c.state.idle_since.load(Ordering::Relaxed);
                    c.usable()
                        && (busy
                            || (!all && now.saturating_sub(since) < c.max_idle.as_millis() as u64))
                });
            }
            p.conns.retain(|_, l| !l.is_empty());
            let conns = &p.conns;
            // Dial locks of keys with no connection and nobody waiting.
            p.dialing
                .retain(|k, (l, _)| conns.contains_key(k) || Arc::strong_count(l) > 1);
        });
    }
}

/// Live connections this thread holds for `key` (tests and metrics).
pub fn conn_count(key: Key) -> usize {
    POOL.with(|p| {
        p.borrow()
            .conns
            .get(&key)
            .map_or(0, |l| l.iter().filter(|c| c.usable()).count())
    })
}

/// A stream refused before the server processed it (RST_STREAM with
/// REFUSED_STREAM): safe to send again, whatever the method.
pub fn refused(e: &::h2::Error) -> bool {
    e.reason() == Some(::h2::Reason::REFUSED_STREAM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::net::{TcpListener, TcpStream};

    /// An h2c server answering 200 to each request after `hold`, with at
    /// most `max` streams; counts connections.
    async fn server(
        max: u32,
        hold: Duration,
    ) -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut c = ::h2::server::Builder::new()
                        .max_concurrent_streams(max)
                        .handshake::<_, Bytes>(s)
                        .await
                        .unwrap();
                    while let Some(Ok((_req, mut respond))) = c.accept().await {
                        tokio::spawn(async move {
                            tokio::time::sleep(hold).await;
                            let _ = respond.send_response(http::Response::new(()), true);
                        });
                    }
                });
            }
        });
        (addr, accepted, task)
    }

    fn req(addr: SocketAddr) -> http::Request<()> {
        http::Request::builder()
            .uri(format!("http://{addr}/"))
            .body(())
            .unwrap()
    }

    const LIMITS: Limits = Limits {
        max_idle: Duration::from_secs(5),
        max_header_list: 16 << 10,
    };

    async fn dial(addr: SocketAddr) -> Result<Io, String> {
        TcpStream::connect(addr)
            .await
            .map(Io::Plain)
            .map_err(|e| e.to_string())
    }

    async fn get(addr: SocketAddr) -> u16 {
        let key = (addr, None);
        let sent = send(key, LIMITS, dial(addr), req(addr), true)
            .await
            .unwrap();
        assert!(sent.body.is_none());
        sent.response.await.unwrap().status().as_u16()
    }

    async fn burst(addr: SocketAddr, n: usize) -> Vec<u16> {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            set.spawn(get(addr));
        }
        set.join_all().await
    }

    #[tokio::test]
    async fn streams_share_a_connection_until_it_is_full() {
        let (addr, accepted, _t) = server(4, Duration::from_millis(200)).await;
        // A burst of 4: one connection (the others wait for its connect).
        let codes = burst(addr, 4).await;
        assert!(codes.iter().all(|&c| c == 200), "{codes:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // 6 at once against a limit of 4 (known once SETTINGS came): a second one.
        let codes = burst(addr, 6).await;
        assert!(codes.iter().all(|&c| c == 200), "{codes:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(conn_count((addr, None)), 2);
    }

    #[tokio::test]
    async fn failed_connect_fails_the_request() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let key = (addr, None);
        let Err(e) = send(key, LIMITS, dial(addr), req(addr), true).await else {
            panic!("sent to a closed port");
        };
        assert!(e.is_connect(), "{e}");
        assert_eq!(conn_count(key), 0);
    }

    #[tokio::test]
    async fn a_connection_that_got_goaway_is_replaced() {
        // Each connection serves one request, then GOAWAY.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut c = ::h2::server::handshake(s).await.unwrap();
                    if let Some(Ok((_req, mut respond))) = c.accept().await {
                        let _ = respond.send_response(http::Response::new(()), true);
                        c.graceful_shutdown();
                    }
                    while c.accept().await.is_some() {}
                });
            }
        });
        assert_eq!(get(addr).await, 200);
        let key = (addr, None);
        let gone = async {
            while conn_count(key) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone)
            .await
            .expect("the connection leaves the pool after GOAWAY");
        assert_eq!(get(addr).await, 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
