//! One client connection: read, frame every complete request, run them as one batch under one lock, write all replies at once.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::command::{self, Cmd, Ctx, Spec, ADMIN, DENYOOM, NOAUTH, WRITE};
use super::db::{self, ENTRY_OVERHEAD};
use super::frame::{self, parse_i64, reply, Args, Argv, FrameError, Limits};
use super::multi::{Multi, Queued, Watches};
use super::pubsub::Subscriber;
use super::{aof, persist, replication, Kv, Master, State};
use crate::conf::kv::AppendFsync;

/// Read at least this much spare room per read.
const READ_CHUNK: usize = 16 << 10;
/// Replies are written out once this many bytes are pending, even mid-batch.
const FLUSH_AT: usize = 256 << 10;
/// Buffers that grew past this for one big request are shrunk back afterwards.
const KEEP_CAPACITY: usize = 1 << 20;

const ERR_NOAUTH: &str = "NOAUTH Authentication required.";
const ERR_READONLY: &str = "READONLY You can't write against a read only replica.";
const ERR_OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// Per-connection state a command may change.
struct Session {
    id: u64,
    authed: bool,
    name: Option<Vec<u8>>,
    /// From `REPLCONF listening-port`, when this connection is a replica handshaking.
    listening_port: Option<u16>,
    peer: SocketAddr,
    /// Between MULTI and EXEC/DISCARD.
    multi: Option<Multi>,
    watches: Watches,
    /// Pub/sub subscriptions, once the connection subscribed to something.
    sub: Option<Subscriber>,
    /// Signalled by CLIENT KILL.
    kill: Arc<tokio::sync::Notify>,
    /// The last command run, for CLIENT LIST.
    last_cmd: &'static str,
    /// The selected database (SELECT).
    db: usize,
    /// HELLO 3 was sent: replies in RESP3.
    resp3: bool,
    /// CLIENT REPLY OFF.
    reply_off: bool,
    /// CLIENT REPLY SKIP: the next command's reply is dropped.
    reply_skip: bool,
    /// Running EXEC's queue: blocking pops answer at once.
    in_exec: bool,
    /// Running a blocked pop again.
    retrying: bool,
    /// Under `appendfsync always`: the AOF must be on disk up to here before the
    /// batch's replies leave (`durable`).
    sync_due: Option<(Arc<std::fs::File>, u64)>,
}

/// What the batch loop stopped for.
enum Step {
    /// Nothing complete left in the buffer.
    NeedMore,
    /// Many replies pending: write them, then continue.
    Flush,
    Quit,
    Protocol(FrameError),
    Wait {
        n: usize,
        timeout_ms: u64,
        target: u64,
    },
    Psync {
        replid: Vec<u8>,
        offset: i64,
    },
    /// A blocking pop found nothing: wait for writes and run `req` again.
    Block {
        req: Vec<u8>,
        timeout_ms: u64,
    },
    /// BGSAVE / BGREWRITEAOF: started from the connection task, which owns an `Arc<Kv>`.
    Background {
        rewrite: bool,
    },
    /// The AOF could not be written or synced under `appendfsync always`: the
    /// batch's replies are dropped (nothing is acknowledged) and the client closed.
    Unpersisted,
}

/// Decrements the connected-clients gauge however the connection ends.
struct ClientGuard(Arc<Kv>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.stats.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn serve(kv: Arc<Kv>, sock: TcpStream, peer: SocketAddr) {
    let id = kv.next_id.fetch_add(1, Ordering::Relaxed);
    let laddr = sock.local_addr().unwrap_or(peer);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    let kill = kv.clients.add(id, peer, laddr, fd);
    let mut sess = Session {
        id,
        authed: kv.conf.requirepass.is_none(),
        name: None,
        listening_port: None,
        peer,
        multi: None,
        watches: Watches::default(),
        sub: None,
        kill,
        last_cmd: "NULL",
        db: 0,
        resp3: false,
        reply_off: false,
        reply_skip: false,
        in_exec: false,
        retrying: false,
        sync_due: None,
    };
    serve_conn(kv.clone(), sock, &mut sess).await;
    kv.clients.remove(id);
    kv.monitors.remove(id);
    if let Some(sub) = sess.sub.as_mut() {
        sub.leave(&mut kv.pubsub());
    }
    if !sess.watches.is_empty() {
        let mut st = kv.lock();
        st.select(sess.db);
        sess.watches.clear(&mut st.db);
        st.select(0);
    }
}

async fn serve_conn(kv: Arc<Kv>, mut sock: TcpStream, sess: &mut Session) {
    let _ = sock.set_nodelay(true);
    if let Ok(a) = sock.local_addr() {
        kv.port.store(a.port(), Ordering::Relaxed);
    }
    kv.stats.connections.fetch_add(1, Ordering::Relaxed);
    kv.stats.clients.fetch_add(1, Ordering::Relaxed);
    let guard = ClientGuard(kv.clone());
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut start = 0usize;
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut args = Args::default();
    let wt = kv.conf.write_timeout;
    loop {
        // Messages published before this request was read go out before its reply, as in Redis.
        if let Some(sub) = sess.sub.as_mut() {
            while out.len() < FLUSH_AT {
                match sub.rx.try_recv() {
                    Ok(m) => out.extend_from_slice(&m),
                    Err(_) => break,
                }
            }
        }
        let step = process(&kv, sess, &buf, &mut start, &mut args, &mut out);
        if !durable(&kv, sess, &mut out).await {
            return;
        }
        if !out.is_empty() {
            if !write(&mut sock, &out, wt).await {
                return;
            }
            out.clear();
            if out.capacity() > KEEP_CAPACITY {
                out.shrink_to(READ_CHUNK);
            }
        }
        match step {
            Step::Flush => continue,
            Step::Quit | Step::Unpersisted => return,
            Step::Block { req, timeout_ms } => {
                match block(&kv, sess, &mut sock, &mut buf, &req, timeout_ms, &mut out).await {
                    Some(()) => continue,
                    None => return,
                }
            }
            Step::Background { rewrite } => {
                if rewrite {
                    if kv.lock().aof.is_none() {
                        reply::err(
                            &mut out,
                            "ERR Background append only file rewriting needs appendonly yes in kv",
                        );
                    } else if aof::start_rewrite(&kv) {
                        reply::simple(&mut out, "Background append only file rewriting started");
                    } else {
                        reply::err(
                            &mut out,
                            "ERR Background append only file rewriting already in progress",
                        );
                    }
                } else if persist::bgsave(&kv) {
                    reply::simple(&mut out, "Background saving started");
                } else {
                    reply::err(&mut out, "ERR Background save already in progress");
                }
                continue;
            }
            Step::Protocol(e) => {
                reply::err(&mut out, &format!("ERR Protocol error: {e}"));
                let _ = write(&mut sock, &out, wt).await;
                return;
            }
            Step::Wait {
                n,
                timeout_ms,
                target,
            } => {
                let got = wait_acks(&kv, n, timeout_ms, target).await;
                reply::int(&mut out, got as i64);
                continue;
            }
            Step::Psync { replid, offset } => {
                kv.clients.update(sess.id, |i| i.replica = true);
                let rest = buf[start..].to_vec();
                let addr = SocketAddr::new(
                    sess.peer.ip(),
                    sess.listening_port.unwrap_or(sess.peer.port()),
                );
                // A replica is not a client in INFO's count.
                drop(guard);
                replication::feed(kv, sock, addr, replid, offset, rest).await;
                return;
            }
            Step::NeedMore => {}
        }
        // Compact, then read more.
        if start > 0 {
            buf.drain(..start);
            start = 0;
        }
        if buf.len() as u64 > kv.conf.max_query_bytes {
            reply::err(
                &mut out,
                "ERR Protocol error: request exceeds max-query-bytes",
            );
            let _ = write(&mut sock, &out, wt).await;
            return;
        }
        if buf.capacity() > KEEP_CAPACITY && buf.len() < READ_CHUNK {
            buf.shrink_to(READ_CHUNK);
        }
        buf.reserve(READ_CHUNK);
        if let Some(sub) = sess.sub.as_mut() {
            // Subscribed: messages and requests, whichever comes first; no idle timeout.
            tokio::select! {
                biased;
                _ = sess.kill.notified() => return,
                r = sock.read_buf(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                },
                m = sub.rx.recv() => {
                    let Some(m) = m else { return };
                    out.extend_from_slice(&m);
                    while out.len() < FLUSH_AT {
                        match sub.rx.try_recv() {
                            Ok(m) => out.extend_from_slice(&m),
                            Err(_) => break,
                        }
                    }
                    if sub.handle.overflow.load(Ordering::Relaxed) {
                        tracing::warn!(kv = %kv.name, client = %sess.peer, "closing a subscriber too slow for its messages");
                        return;
                    }
                    continue;
                }
            }
        }
        let read = sock.read_buf(&mut buf);
        let timeout = kv.settings.timeout();
        let read = async {
            if timeout.is_zero() {
                Some(read.await)
            } else {
                tokio::time::timeout(timeout, read).await.ok()
            }
        };
        let n = tokio::select! {
            biased;
            _ = sess.kill.notified() => return,
            r = read => match r {
                Some(r) => r,
                None => return,
            },
        };
        match n {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// A blocked pop: runs `req` again after every batch of writes until it is
/// served or times out (then a nil reply). Bytes the client sends meanwhile
/// wait in `buf`; None when the client went away or was killed.
async fn block(
    kv: &Arc<Kv>,
    sess: &mut Session,
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
    req: &[u8],
    timeout_ms: u64,
    out: &mut Vec<u8>,
) -> Option<()> {
    let mut rx = kv.writes_tx.subscribe();
    let deadline =
        (timeout_ms > 0).then(|| tokio::time::Instant::now() + Duration::from_millis(timeout_ms));
    kv.stats.blocked.fetch_add(1, Ordering::Relaxed);
    let done = loop {
        rx.borrow_and_update();
        // Run again: served, or blocked again (nothing written to `out`).
        let mut start = 0;
        let mut args = Args::default();
        sess.retrying = true;
        let step = process(kv, sess, req, &mut start, &mut args, out);
        sess.retrying = false;
        if !durable(kv, sess, out).await {
            break None;
        }
        match step {
            Step::Block { .. } => {}
            _ => break Some(()),
        }
        let timed_out = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = sess.kill.notified() => break None,
            r = rx.changed() => if r.is_err() { break None },
            _ = timed_out => {
                // Every blocking pop times out with the null array, as in Redis.
                let _resp = reply::Resp3Guard::new(sess.resp3);
                reply::nil_array(out);
                break Some(());
            }
            r = sock.readable() => {
                if r.is_err() {
                    break None;
                }
                // Keep what the client pipelines (within max-query-bytes); notice when it closes.
                if buf.len() as u64 > kv.conf.max_query_bytes {
                    break None;
                }
                buf.reserve(READ_CHUNK);
                match sock.try_read_buf(buf) {
                    Ok(0) => break None,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => break None,
                }
            }
        }
    };
    kv.stats.blocked.fetch_sub(1, Ordering::Relaxed);
    done
}

async fn write(sock: &mut TcpStream, data: &[u8], limit: Duration) -> bool {
    matches!(
        tokio::time::timeout(limit, sock.write_all(data)).await,
        Ok(Ok(()))
    )
}

/// WAIT: how many replicas have acknowledged `target`, waiting up to the timeout for `n`.
async fn wait_acks(kv: &Kv, n: usize, timeout_ms: u64, target: u64) -> usize {
    let mut rx = kv.ack_tx.subscribe();
    let deadline =
        (timeout_ms > 0).then(|| tokio::time::Instant::now() + Duration::from_millis(timeout_ms));
    kv.stats.blocked.fetch_add(1, Ordering::Relaxed);
    let count = loop {
        rx.borrow_and_update();
        let count = kv.replicas().iter().filter(|r| r.has(target)).count();
        if count >= n {
            break count;
        }
        let changed = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rx.changed()).await {
                Ok(r) => r,
                Err(_) => break count,
            },
            None => rx.changed().await,
        };
        if changed.is_err() {
            break count;
        }
    };
    kv.stats.blocked.fetch_sub(1, Ordering::Relaxed);
    count
}

/// Under `appendfsync always`, a batch's replies leave only once its writes are
/// on disk. The fsync runs off the worker, which serves other clients meanwhile:
/// their writes share the next fsync (one per turn, as Redis's loop does), where
/// an fsync on the worker made every batch wait for its own. False: not synced,
/// the replies are dropped and the connection closes (nothing is acknowledged).
async fn durable(kv: &Arc<Kv>, sess: &mut Session, out: &mut Vec<u8>) -> bool {
    let Some((file, upto)) = sess.sync_due.take() else {
        return true;
    };
    let Err(err) = super::persist::sync_aof(kv, file, upto).await else {
        return true;
    };
    tracing::error!(kv = %kv.name, "AOF fsync failed: {err}");
    if let Some(a) = kv.lock().aof.as_mut() {
        a.error = Some(format!("fsync: {err}"));
    }
    out.clear();
    false
}

/// Runs every complete request in `buf[start..]`, appending replies to `out`.
/// The state lock is taken at most once per batch and released before returning.
fn process(
    kv: &Kv,
    sess: &mut Session,
    buf: &[u8],
    start: &mut usize,
    args: &mut Args,
    out: &mut Vec<u8>,
) -> Step {
    let mut guard: Option<MutexGuard<'_, State>> = None;
    let _resp = reply::Resp3Guard::new(sess.resp3);
    let now = db::now_ms();
    let mut ncmd = 0u64;
    let step = loop {
        if out.len() > FLUSH_AT {
            break Step::Flush;
        }
        let lim = Limits {
            max_bulk: kv.conf.max_value_bytes.min(usize::MAX as u64) as usize,
            max_array: kv.conf.max_array_len.min(usize::MAX as u64) as usize,
            max_inline: kv.conf.max_inline_bytes.min(usize::MAX as u64) as usize,
            authed: sess.authed,
        };
        let rest = &buf[*start..];
        let n = match frame::parse(rest, &lim, args) {
            Err(e) => break Step::Protocol(e),
            Ok(None) => break Step::NeedMore,
            Ok(Some(n)) => n,
        };
        *start += n;
        let a = Argv {
            buf: rest,
            ranges: &args.ranges,
        };
        if a.is_empty() {
            continue;
        }
        ncmd += 1;
        let mark = out.len();
        let skip = sess.reply_skip;
        let step = dispatch(kv, sess, &mut guard, a, now, out);
        // CLIENT REPLY OFF/SKIP: the command ran, its reply is dropped.
        if sess.reply_off || skip {
            out.truncate(mark);
            if skip {
                sess.reply_skip = false;
            }
        }
        if let Some(step) = step {
            break step;
        }
    };
    if let Some(mut st) = guard {
        let off = st.repl.offset;
        let seq = st.write_seq;
        let active = st.repl.backlog.is_some();
        // The batch's writes reach the AOF (write(2)) before its replies leave.
        let sync = match st.aof.as_mut() {
            Some(a) if a.pending() => Some(a.write_pending(&kv.aof_sync)),
            _ => None,
        };
        drop(st);
        if active {
            kv.publish_offset(off);
        }
        if kv.stats.blocked.load(Ordering::Relaxed) > 0 {
            kv.writes_tx
                .send_if_modified(|v| std::mem::replace(v, seq) != seq);
        }
        let always = kv.conf.appendfsync == AppendFsync::Always;
        match sync {
            // Synced by the caller before the replies leave (`durable`).
            Some(Ok((file, upto))) if always => sess.sync_due = Some((file, upto)),
            Some(Err(_)) if always => {
                out.clear();
                return Step::Unpersisted;
            }
            _ => {}
        }
    }
    kv.stats.commands.fetch_add(ncmd, Ordering::Relaxed);
    if ncmd > 0 {
        let (cmd, multi, db) = (
            sess.last_cmd,
            sess.multi.as_ref().map_or(-1, |m| m.queued.len() as i64),
            sess.db,
        );
        let (sub, psub) = sess
            .sub
            .as_ref()
            .map_or((0, 0), |s| (s.channels.len(), s.patterns.len()));
        kv.clients.update(sess.id, |i| {
            i.last = std::time::Instant::now();
            i.cmd = cmd;
            i.multi = multi;
            i.db = db;
            i.sub = sub;
            i.psub = psub;
        });
    }
    step
}

fn lock<'a, 'g>(kv: &'a Kv, guard: &'g mut Option<MutexGuard<'a, State>>) -> &'g mut State {
    guard.get_or_insert_with(|| kv.lock())
}

/// Runs one request; `Some(step)` when the connection must leave the batch loop.
fn dispatch<'a>(
    kv: &'a Kv,
    sess: &mut Session,
    guard: &mut Option<MutexGuard<'a, State>>,
    a: Argv,
    now: u64,
    out: &mut Vec<u8>,
) -> Option<Step> {
    // A failed check inside MULTI also dooms the transaction (EXECABORT).
    let flag = |sess: &mut Session| {
        if let Some(m) = sess.multi.as_mut() {
            m.failed = true;
        }
    };
    let Some(spec) = command::lookup(a.get(0)) else {
        command::unknown_command(out, a);
        flag(sess);
        return None;
    };
    kv.stats.per_command.inc(spec);
    sess.last_cmd = spec.name;
    if !spec.arity_ok(a.len()) {
        command::wrong_arity(out, spec.name);
        flag(sess);
        return None;
    }
    if !sess.authed && !spec.is(NOAUTH) {
        reply::err(out, ERR_NOAUTH);
        flag(sess);
        return None;
    }
    if sess.sub.as_ref().is_some_and(|s| s.count() > 0)
        && !matches!(
            spec.cmd,
            Cmd::Subscribe
                | Cmd::PSubscribe
                | Cmd::Unsubscribe
                | Cmd::PUnsubscribe
                | Cmd::Ping
                | Cmd::Quit
        )
    {
        reply::err(out, &format!("ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", spec.name));
        return None;
    }
    if sess.multi.is_some()
        && !matches!(
            spec.cmd,
            Cmd::Exec | Cmd::Discard | Cmd::Multi | Cmd::Watch | Cmd::Quit
        )
    {
        if spec.is(WRITE) && lock(kv, guard).repl.is_replica {
            reply::err(out, ERR_READONLY);
            flag(sess);
            return None;
        }
        // As Redis: a command that may grow memory is refused at queueing time past maxmemory.
        if spec.is(DENYOOM) {
            if let Some(max) = kv.settings.maxmemory() {
                let grow: u64 =
                    a.iter().skip(1).map(|x| x.len() as u64).sum::<u64>() + ENTRY_OVERHEAD;
                if lock(kv, guard).used() + grow > max {
                    reply::err(out, ERR_OOM);
                    flag(sess);
                    return None;
                }
            }
        }
        let max = kv.conf.max_query_bytes.min(usize::MAX as u64) as usize;
        if let Some(m) = sess.multi.as_mut() {
            let q = Queued::new(a);
            m.bytes += q.bytes();
            if m.bytes > max {
                m.failed = true;
                reply::err(out, "ERR transaction exceeds max-query-bytes");
                return None;
            }
            m.queued.push(q);
        }
        reply::simple(out, "QUEUED");
        return None;
    }
    // As Redis: admin commands and credentials are not shown to monitors.
    if kv.monitors.active() && !spec.is(ADMIN) && !matches!(spec.cmd, Cmd::Auth | Cmd::Hello) {
        kv.monitors.feed(sess.db, sess.peer, a);
    }
    match spec.cmd {
        Cmd::Subscribe | Cmd::PSubscribe => {
            let pattern = spec.cmd == Cmd::PSubscribe;
            let id = sess.id;
            let sub = sess.sub.get_or_insert_with(|| Subscriber::new(id));
            let mut reg = kv.pubsub();
            for name in a.iter().skip(1) {
                sub.subscribe(&mut reg, name, pattern, out);
            }
        }
        Cmd::Unsubscribe | Cmd::PUnsubscribe => {
            let pattern = spec.cmd == Cmd::PUnsubscribe;
            let names: Vec<&[u8]> = a.iter().skip(1).collect();
            let id = sess.id;
            let sub = sess.sub.get_or_insert_with(|| Subscriber::new(id));
            sub.unsubscribe(&mut kv.pubsub(), &names, pattern, out);
        }
        Cmd::Publish => {
            let n = kv.pubsub().publish(a.get(1), a.get(2));
            // Replicas deliver it to their own subscribers (not written to the AOF).
            lock(kv, guard).propagate_repl(&[b"PUBLISH", a.get(1), a.get(2)]);
            reply::int(out, n as i64);
        }
        Cmd::PubSub => pubsub_cmd(kv, a, out),
        Cmd::Function => {
            // kv has no functions: enough for clients and test suites that clean up.
            let sub = a.get(1);
            if sub.eq_ignore_ascii_case(b"FLUSH") && a.len() <= 3 {
                reply::ok(out);
            } else if sub.eq_ignore_ascii_case(b"LIST") {
                reply::array(out, 0);
            } else {
                unknown_subcommand(out, sub, "FUNCTION");
            }
        }
        Cmd::Multi => {
            if sess.multi.is_some() {
                reply::err(out, "ERR MULTI calls can not be nested");
            } else {
                sess.multi = Some(Multi::default());
                reply::ok(out);
            }
        }
        Cmd::Exec => return exec(kv, sess, guard, now, out),
        Cmd::Discard => {
            if sess.multi.take().is_none() {
                reply::err(out, "ERR DISCARD without MULTI");
            } else {
                let st = lock(kv, guard);
                st.select(sess.db);
                sess.watches.clear(&mut st.db);
                st.select(0);
                reply::ok(out);
            }
        }
        Cmd::Watch => {
            if sess.multi.is_some() {
                reply::err(out, "ERR WATCH inside MULTI is not allowed");
            } else {
                let st = lock(kv, guard);
                st.select(sess.db);
                for k in a.iter().skip(1) {
                    let live = st.db.peek(k).is_some_and(|e| !e.expired(now));
                    sess.watches.add(&mut st.db, k, live);
                }
                st.select(0);
                reply::ok(out);
            }
        }
        Cmd::Unwatch => {
            if !sess.watches.is_empty() {
                let st = lock(kv, guard);
                st.select(sess.db);
                sess.watches.clear(&mut st.db);
                st.select(0);
            }
            reply::ok(out);
        }
        Cmd::Ping if sess.sub.as_ref().is_some_and(|s| s.count() > 0) => {
            reply::array(out, 2);
            reply::bulk(out, b"pong");
            reply::bulk(out, if a.len() > 1 { a.get(1) } else { b"" });
        }
        Cmd::Ping => match a.len() {
            1 => reply::simple(out, "PONG"),
            2 => reply::bulk(out, a.get(1)),
            _ => command::wrong_arity(out, "ping"),
        },
        Cmd::Echo => reply::bulk(out, a.get(1)),
        Cmd::Monitor => {
            // Lines arrive through the subscriber queue the read loop already serves.
            let id = sess.id;
            let sub = sess.sub.get_or_insert_with(|| Subscriber::new(id));
            kv.monitors.add(sub.handle.clone());
            reply::ok(out);
        }
        Cmd::Quit => {
            reply::ok(out);
            return Some(Step::Quit);
        }
        Cmd::Select => match parse_i64(a.get(1)) {
            None => reply::err(out, command::ERR_NOT_INT),
            Some(n) if n >= 0 && (n as u64) < kv.conf.databases.max(1) as u64 => {
                sess.db = n as usize;
                reply::ok(out);
            }
            Some(_) => reply::err(out, super::select::ERR_DB_RANGE),
        },
        Cmd::Auth => auth(kv, sess, a, out),
        Cmd::Hello => hello(kv, sess, a, out),
        Cmd::Client => client(kv, sess, a, out),
        Cmd::Command => command::command(out, a),
        Cmd::Config => super::config::config(kv, a, out),
        Cmd::Info => {
            let st = lock(kv, guard);
            let sections: Vec<&[u8]> = a.iter().skip(1).collect();
            kv.info(st, &sections, out);
        }
        Cmd::Role => {
            let st = lock(kv, guard);
            kv.role(st, out);
        }
        Cmd::ReplicaOf | Cmd::SlaveOf => {
            let (h, p) = (a.get(1), a.get(2));
            let target = if h.eq_ignore_ascii_case(b"NO") && p.eq_ignore_ascii_case(b"ONE") {
                None
            } else {
                match parse_i64(p) {
                    None => {
                        reply::err(out, command::ERR_NOT_INT);
                        return None;
                    }
                    Some(port) if !(1..=65535).contains(&port) => {
                        reply::err(out, "ERR Invalid master port");
                        return None;
                    }
                    Some(port) => Some(Master {
                        host: String::from_utf8_lossy(h).into_owned(),
                        port: port as u16,
                    }),
                }
            };
            let st = lock(kv, guard);
            kv.replicaof(st, target, out);
        }
        Cmd::Wait => {
            let Some(n) = parse_i64(a.get(1)) else {
                reply::err(out, command::ERR_NOT_INT);
                return None;
            };
            let Some(t) = parse_i64(a.get(2)) else {
                reply::err(out, "ERR timeout is not an integer or out of range");
                return None;
            };
            if t < 0 {
                reply::err(out, "ERR timeout is negative");
                return None;
            }
            let st = lock(kv, guard);
            if st.repl.is_replica {
                reply::err(out, "ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.");
                return None;
            }
            return Some(Step::Wait {
                n: n.max(0) as usize,
                timeout_ms: t as u64,
                target: st.repl.offset,
            });
        }
        Cmd::ReplConf => replconf(sess, a, out),
        Cmd::Save => {
            let st = lock(kv, guard);
            if st.bgsave_running {
                reply::err(out, "ERR Background save already in progress");
            } else {
                match persist::save(kv, st) {
                    Ok(()) => reply::ok(out),
                    Err(e) => {
                        tracing::error!(kv = %kv.name, "SAVE failed: {e}");
                        reply::err(out, "ERR");
                    }
                }
            }
        }
        Cmd::BgSave => return Some(Step::Background { rewrite: false }),
        Cmd::BgRewriteAof => return Some(Step::Background { rewrite: true }),
        Cmd::LastSave => {
            let st = lock(kv, guard);
            reply::int(out, st.last_save as i64);
        }
        Cmd::Psync | Cmd::Sync => {
            let (replid, offset) = if spec.cmd == Cmd::Psync {
                (a.get(1).to_vec(), parse_i64(a.get(2)).unwrap_or(-1))
            } else {
                // Empty replid: the old SYNC, answered with the RDB alone.
                (Vec::new(), -1)
            };
            return Some(Step::Psync { replid, offset });
        }
        _ => {
            let may_block = !sess.in_exec;
            if let Some(timeout_ms) = keyspace(
                kv,
                guard,
                spec,
                a,
                now,
                (sess.db, may_block, sess.retrying),
                out,
            ) {
                let mut req = Vec::new();
                let args: Vec<&[u8]> = a.iter().collect();
                reply::command(&mut req, &args);
                return Some(Step::Block { req, timeout_ms });
            }
        }
    }
    None
}

/// EXEC: runs the queued commands under the one lock hold, replies in one array.
fn exec<'a>(
    kv: &'a Kv,
    sess: &mut Session,
    guard: &mut Option<MutexGuard<'a, State>>,
    now: u64,
    out: &mut Vec<u8>,
) -> Option<Step> {
    let Some(m) = sess.multi.take() else {
        reply::err(out, "ERR EXEC without MULTI");
        return None;
    };
    {
        let st = lock(kv, guard);
        st.select(sess.db);
        let abort = if m.failed {
            Some(false)
        } else if sess.watches.touched(&st.db, now) {
            Some(true)
        } else {
            None
        };
        sess.watches.clear(&mut st.db);
        st.select(0);
        match abort {
            Some(false) => {
                reply::err(
                    out,
                    "EXECABORT Transaction discarded because of previous errors.",
                );
                return None;
            }
            Some(true) => {
                reply::nil_array(out);
                return None;
            }
            None => st.exec_begin(),
        }
    }
    reply::array(out, m.queued.len());
    sess.in_exec = true;
    for q in &m.queued {
        if dispatch(kv, sess, guard, q.argv(), now, out).is_some() {
            // WAIT, PSYNC, BGSAVE...: they need the connection task.
            reply::err(out, "ERR Command not allowed inside a transaction");
        }
    }
    sess.in_exec = false;
    lock(kv, guard).exec_end();
    None
}

fn keyspace<'a>(
    kv: &'a Kv,
    guard: &mut Option<MutexGuard<'a, State>>,
    spec: &Spec,
    a: Argv,
    now: u64,
    // The connection's database, whether a blocking pop may wait (not in EXEC)
    // and whether this is a blocked pop running again.
    (db, may_block, retry): (usize, bool, bool),
    out: &mut Vec<u8>,
) -> Option<u64> {
    let st = lock(kv, guard);
    if spec.is(WRITE) && st.repl.is_replica {
        reply::err(out, ERR_READONLY);
        return None;
    }
    if spec.is(WRITE) {
        if let Some(e) = st.aof.as_ref().and_then(|a| a.error.as_deref()) {
            reply::err(out, &format!("MISCONF Errors writing to the AOF file: {e}"));
            return None;
        }
    }
    if spec.is(DENYOOM) {
        if let Some(max) = kv.settings.maxmemory() {
            let grow: u64 = a.iter().skip(1).map(|x| x.len() as u64).sum::<u64>() + ENTRY_OVERHEAD;
            if st.used() + grow > max {
                reply::err(out, ERR_OOM);
                return None;
            }
        }
    }
    // The connection's database for this command; database 0 back after it.
    st.select(db);
    let mut c = Ctx {
        kv,
        st,
        out,
        now,
        from_master: false,
        may_block,
        blocked: None,
        retry,
    };
    command::exec(&mut c, spec, a);
    c.st.select(0);
    c.blocked
}

fn auth(kv: &Kv, sess: &mut Session, a: Argv, out: &mut Vec<u8>) {
    let Some(pass) = kv.conf.requirepass.as_deref() else {
        return reply::err(out, "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
    };
    let (user, given) = match a.len() {
        2 => (&b"default"[..], a.get(1)),
        3 => (a.get(1), a.get(2)),
        _ => return reply::err(out, command::ERR_SYNTAX),
    };
    if user == b"default" && given == pass.as_bytes() {
        sess.authed = true;
        reply::ok(out);
    } else {
        reply::err(
            out,
            "WRONGPASS invalid username-password pair or user is disabled.",
        );
    }
}

/// HELLO [protover [AUTH user pass] [SETNAME name]]: RESP2 only (HELLO 3 gets -NOPROTO,
/// so RESP3 clients fall back), answered with Redis 7.0's fields as a flat array.
fn hello(kv: &Kv, sess: &mut Session, a: Argv, out: &mut Vec<u8>) {
    let mut i = 1;
    let mut proto = if sess.resp3 { 3 } else { 2 };
    if a.len() > 1 {
        match parse_i64(a.get(1)) {
            None => {
                return reply::err(
                    out,
                    "ERR Protocol version is not an integer or out of range",
                )
            }
            Some(n @ (2 | 3)) => proto = n,
            Some(_) => return reply::err(out, "NOPROTO unsupported protocol version"),
        }
        i = 2;
    }
    let mut name = None;
    while i < a.len() {
        let o = a.get(i);
        let left = a.len() - i - 1;
        if o.eq_ignore_ascii_case(b"AUTH") && left >= 2 {
            let (user, pass) = (a.get(i + 1), a.get(i + 2));
            let ok = kv
                .conf
                .requirepass
                .as_deref()
                .is_some_and(|p| user == b"default" && pass == p.as_bytes());
            if !ok {
                return reply::err(
                    out,
                    "WRONGPASS invalid username-password pair or user is disabled.",
                );
            }
            sess.authed = true;
            i += 3;
        } else if o.eq_ignore_ascii_case(b"SETNAME") && left >= 1 {
            name = Some(a.get(i + 1));
            i += 2;
        } else {
            return reply::err(
                out,
                &format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(o)
                ),
            );
        }
    }
    if !sess.authed {
        return reply::err(out, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(n) = name {
        if n.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
            return reply::err(
                out,
                "ERR Client names cannot contain spaces, newlines or special characters.",
            );
        }
        sess.name = (!n.is_empty()).then(|| n.to_vec());
    }
    let role: &[u8] = if kv.master_tx.borrow().is_some() {
        b"replica"
    } else {
        b"master"
    };
    // The reply, and everything after it, in the chosen protocol.
    sess.resp3 = proto == 3;
    reply::set_resp3(sess.resp3);
    reply::map(out, 7);
    reply::bulk(out, b"server");
    reply::bulk(out, b"redis");
    reply::bulk(out, b"version");
    reply::bulk(out, super::REDIS_VERSION.as_bytes());
    reply::bulk(out, b"proto");
    reply::int(out, proto);
    reply::bulk(out, b"id");
    reply::int(out, sess.id as i64);
    reply::bulk(out, b"mode");
    reply::bulk(out, b"standalone");
    reply::bulk(out, b"role");
    reply::bulk(out, role);
    reply::bulk(out, b"modules");
    reply::array(out, 0);
}

/// PUBSUB CHANNELS [pattern] | NUMSUB [channel...] | NUMPAT.
fn pubsub_cmd(kv: &Kv, a: Argv, out: &mut Vec<u8>) {
    let sub = a.get(1);
    let reg = kv.pubsub();
    if sub.eq_ignore_ascii_case(b"CHANNELS") && a.len() <= 3 {
        let chans = reg.channels((a.len() == 3).then(|| a.get(2)));
        reply::array(out, chans.len());
        for c in chans {
            reply::bulk(out, c);
        }
    } else if sub.eq_ignore_ascii_case(b"NUMSUB") {
        reply::array(out, (a.len() - 2) * 2);
        for c in a.iter().skip(2) {
            reply::bulk(out, c);
            reply::int(out, reg.numsub(c) as i64);
        }
    } else if sub.eq_ignore_ascii_case(b"NUMPAT") && a.len() == 2 {
        reply::int(out, reg.numpat() as i64);
    } else {
        drop(reg);
        unknown_subcommand(out, sub, "PUBSUB");
    }
}

fn unknown_subcommand(out: &mut Vec<u8>, sub: &[u8], cmd: &str) {
    reply::err(
        out,
        &format!(
            "ERR unknown subcommand '{}'. Try {cmd} HELP.",
            String::from_utf8_lossy(&sub[..sub.len().min(128)])
        ),
    );
}

/// The size of a request as a RESP array: what the caller's query buffer holds
/// while it runs (CLIENT LIST's `qbuf`).
fn resp_size(a: Argv) -> usize {
    let digits = |n: usize| n.to_string().len();
    3 + digits(a.len())
        + a.iter()
            .map(|x| x.len() + 5 + digits(x.len()))
            .sum::<usize>()
}

fn client(kv: &Kv, sess: &mut Session, a: Argv, out: &mut Vec<u8>) {
    let sub = a.get(1);
    let is = |s: &[u8]| sub.eq_ignore_ascii_case(s);
    if is(b"SETNAME") {
        if a.len() != 3 {
            return command::wrong_arity(out, "client|setname");
        }
        let name = a.get(2);
        if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
            return reply::err(
                out,
                "ERR Client names cannot contain spaces, newlines or special characters.",
            );
        }
        sess.name = (!name.is_empty()).then(|| name.to_vec());
        kv.clients.update(sess.id, |i| i.name = name.to_vec());
        reply::ok(out);
    } else if is(b"GETNAME") {
        match &sess.name {
            Some(n) => reply::bulk(out, n),
            None => reply::nil(out),
        }
    } else if is(b"ID") {
        reply::int(out, sess.id as i64);
    } else if is(b"SETINFO") {
        if a.len() != 4 {
            return command::wrong_arity(out, "client|setinfo");
        }
        reply::ok(out);
    } else if is(b"INFO") && a.len() == 2 {
        kv.clients.info(sess.id, resp_size(a), out);
    } else if is(b"LIST") {
        kv.clients.list(a, sess.id, resp_size(a), out);
    } else if is(b"REPLY") && a.len() == 3 {
        let m = a.get(2);
        if m.eq_ignore_ascii_case(b"ON") {
            sess.reply_off = false;
            sess.reply_skip = false;
            reply::ok(out);
        } else if m.eq_ignore_ascii_case(b"OFF") {
            sess.reply_off = true;
        } else if m.eq_ignore_ascii_case(b"SKIP") {
            // No reply to SKIP itself; the next command's is dropped too.
            if !sess.reply_off {
                sess.reply_skip = true;
            }
        } else {
            reply::err(out, command::ERR_SYNTAX);
        }
    } else if is(b"KILL") && a.len() == 2 {
        command::wrong_arity(out, "client|kill");
    } else if is(b"KILL") && a.len() >= 3 {
        let is_replica = kv.master_tx.borrow().is_some() && kv.link().up;
        let k = kv.clients.kill(a, sess.id, is_replica, out);
        if k.master {
            kv.kill_master_tx.send_modify(|g| *g += 1);
        }
        if k.replicas {
            kv.kill_replicas_tx.send_modify(|g| *g += 1);
        }
    } else {
        unknown_subcommand(out, sub, "CLIENT");
    }
}

fn replconf(sess: &mut Session, a: Argv, out: &mut Vec<u8>) {
    let mut i = 1;
    while i < a.len() {
        let o = a.get(i);
        if o.eq_ignore_ascii_case(b"ACK") || o.eq_ignore_ascii_case(b"GETACK") {
            // Acknowledgements never get a reply; only a replica feed reads them.
            return;
        }
        if i + 1 >= a.len() {
            return reply::err(out, command::ERR_SYNTAX);
        }
        let v = a.get(i + 1);
        if o.eq_ignore_ascii_case(b"listening-port") {
            match parse_i64(v) {
                Some(p) if (0..=65535).contains(&p) => sess.listening_port = Some(p as u16),
                _ => return reply::err(out, command::ERR_NOT_INT),
            }
        } else if !o.eq_ignore_ascii_case(b"capa") && !o.eq_ignore_ascii_case(b"ip-address") {
            return reply::err(
                out,
                &format!(
                    "ERR Unrecognized REPLCONF option: {}",
                    String::from_utf8_lossy(o)
                ),
            );
        }
        i += 2;
    }
    reply::ok(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::kv::KvConf;

    fn run(kv: &Kv, sess: &mut Session, input: &[u8]) -> (Vec<u8>, usize) {
        let mut start = 0;
        let mut args = Args::default();
        let mut out = Vec::new();
        let step = process(kv, sess, input, &mut start, &mut args, &mut out);
        assert!(matches!(step, Step::NeedMore));
        (out, start)
    }

    fn session(authed: bool) -> Session {
        Session {
            id: 1,
            authed,
            name: None,
            listening_port: None,
            peer: "127.0.0.1:1".parse().unwrap(),
            multi: None,
            watches: Watches::default(),
            sub: None,
            kill: Arc::default(),
            last_cmd: "NULL",
            db: 0,
            resp3: false,
            reply_off: false,
            reply_skip: false,
            in_exec: false,
            retrying: false,
            sync_due: None,
        }
    }

    #[test]
    fn a_batch_runs_every_complete_request_and_keeps_the_partial_one() {
        let kv = Kv::new(&KvConf::new("t".into(), 1));
        let mut s = session(true);
        let (out, used) = run(
            &kv,
            &mut s,
            b"SET a 1\r\nINCR a\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n*1\r\n$4\r\nPI",
        );
        assert_eq!(out, b"+OK\r\n:2\r\n$1\r\n2\r\n");
        assert_eq!(used, 37);
        // The lock was released at the end of the batch.
        assert_eq!(kv.lock().db.len(), 1);
        assert_eq!(kv.stats.commands.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn checks_run_in_redis_order() {
        let mut conf = KvConf::new("t".into(), 1);
        conf.requirepass = Some("pw".into());
        let kv = Kv::new(&conf);
        let mut s = session(false);
        // Unknown command and arity come before NOAUTH, as in Redis 7.
        let (out, _) = run(&kv, &mut s, b"NOPE\r\nGET\r\nGET k\r\nAUTH pw\r\nGET k\r\n");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "-ERR unknown command 'NOPE', with args beginning with: \r\n\
             -ERR wrong number of arguments for 'get' command\r\n\
             -NOAUTH Authentication required.\r\n+OK\r\n$-1\r\n"
        );
    }

    #[test]
    fn replconf_records_the_listening_port() {
        let kv = Kv::new(&KvConf::new("t".into(), 1));
        let mut s = session(true);
        let (out, _) = run(
            &kv,
            &mut s,
            b"REPLCONF listening-port 6380 capa psync2\r\nREPLCONF ACK 5\r\nREPLCONF bogus 1\r\n",
        );
        assert_eq!(
            out,
            b"+OK\r\n-ERR Unrecognized REPLCONF option: bogus\r\n".to_vec()
        );
        assert_eq!(s.listening_port, Some(6380));
    }
}
