//! io_uring for plain HTTP sockets: one ring per worker thread, next to tokio.
//!
//! Why: on the HTTP keep-alive path lb made about 4.2 syscalls per proxied
//! request (a `recv` and a `send` on each side, plus its share of
//! `epoll_wait`), and kernel entry and exit was most of what separated it from a
//! loop that batches them (`experiments/uring-ceiling`: 0.4 syscalls and 6.5 µs of
//! CPU per request against lb's 11.7 µs). Here the `recv`s and `send`s of a
//! worker's plain HTTP sockets are queued as ring entries and submitted together.
//!
//! How it fits tokio (each worker is a current-thread runtime):
//! - A task that reads or writes queues an entry and waits. The worker's
//!   `on_thread_park` hook ([`flush`]) submits everything queued since the last
//!   turn in one `io_uring_enter`; most sends and reads of data already there
//!   complete inline and wake their tasks, so the worker runs them instead of
//!   parking.
//! - The ring is set up with DEFER_TASKRUN, so operations that had to wait (a
//!   `recv` before the peer sent) finish in our thread at the next enter. An
//!   eventfd registered with the ring (watched by tokio's epoll, one reaper task
//!   per worker) says when such work is pending.
//! - Sockets handled here are not registered with epoll at all.
//!
//! Buffers: the kernel may write into a read buffer or read a send buffer until
//! the operation's completion arrives, so the ring owns them meanwhile. A read
//! moves the caller's `BytesMut` into the operation and hands it back at
//! completion; a send copies its bytes into a buffer from the worker's spare
//! stack. A future dropped early (a timeout, a `select!`) cancels its operation
//! and waits for the completion before its buffer is touched again; the bytes a
//! cancelled read did get are kept. A leaked future leaks its buffer, nothing
//! worse.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use io_uring::{opcode, squeue, types, IoUring};

/// Submission queue size; more entries than this in one turn are submitted in
/// several enters.
const ENTRIES: u32 = 1024;
/// Queued entries that make an operation submit at once rather than wait for the
/// worker to run out of tasks.
const FLUSH_AT: usize = 256;
/// `user_data` of cancel requests, whose own completions are ignored.
const CANCEL: u64 = u64::MAX;
/// `IORING_ENTER_GETEVENTS` from <linux/io_uring.h>.
const GETEVENTS: u32 = 1;

struct Slot {
    buf: BytesMut,
    waker: Option<Waker>,
    res: Option<i32>,
    /// The kernel has the entry.
    submitted: bool,
    /// Wake the task once if the entry did not complete in the enter that
    /// submitted it (sends: their timeout is armed only then).
    nudge: bool,
}

struct Ring {
    ring: IoUring,
    /// Entries built since the last submission (not yet seen by the kernel).
    queue: Vec<squeue::Entry>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// An enter failed: entries may sit in the submission queue for the next one.
    stuck: bool,
}

thread_local! {
    static RING: RefCell<Option<Ring>> = const { RefCell::new(None) };
}

/// Worker threads that set up a ring (`lb_io_uring_workers`).
static WORKERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn workers() -> usize {
    WORKERS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether this thread has a ring (sockets accepted or connected here then use it).
pub fn active() -> bool {
    RING.with(|r| r.try_borrow().map(|r| r.is_some()).unwrap_or(false))
}

fn new_ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_cqsize(ENTRIES * 4)
        .build(ENTRIES)
}

/// Whether this kernel (and seccomp profile) lets lb set up its rings: lb
/// falls back to epoll otherwise.
pub fn probe() -> io::Result<()> {
    new_ring().map(drop)
}

/// Sets up this worker's ring and its reaper task. Must run inside the
/// worker's current-thread runtime, whose `on_thread_park` calls [`flush`].
/// An error (an old kernel, a seccomp profile that forbids io_uring) leaves
/// the worker on epoll.
pub fn start() -> io::Result<()> {
    let ring = new_ring()?;
    // SAFETY: eventfd returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own from here on.
    let efd = unsafe { OwnedFd::from_raw_fd(fd) };
    ring.submitter().register_eventfd(efd.as_raw_fd())?;
    // SAFETY: the OwnedFd keeps this descriptor open, and the same, for as long
    // as the AsyncFd owns it.
    let efd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(efd, tokio::io::Interest::READABLE)
    }
    .map_err(|e| io::Error::other(e.to_string()))?;
    RING.with(|r| {
        *r.borrow_mut() = Some(Ring {
            ring,
            queue: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            stuck: false,
        })
    });
    WORKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tokio::spawn(async move {
        // The eventfd is edge-triggered in epoll and each signal is a new edge,
        // so it is never read: its counter just saturates.
        while let Ok(mut g) = efd.readable().await {
            g.clear_ready();
            drop(g);
            enter(0);
        }
    });
    Ok(())
}

/// Submits what this turn queued and runs completions. Called by the worker
/// before it parks (and by the reaper when the eventfd fires).
pub fn flush() {
    let pending = RING.with(|r| match r.try_borrow() {
        Ok(r) => r.as_ref().is_some_and(|r| !r.queue.is_empty() || r.stuck),
        Err(_) => false,
    });
    if pending {
        enter(0);
    }
}

/// Submits the queue, waits for at least `want` completions, wakes their tasks.
fn enter(want: usize) {
    let mut wake = Vec::new();
    RING.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            if let Some(r) = r.as_mut() {
                r.submit(want, &mut wake);
            }
        }
    });
    for w in wake {
        w.wake();
    }
}

impl Ring {
    /// Hands the queued entries to the kernel (in several enters if they do not
    /// fit the submission queue), runs deferred completions, and waits for
    /// `want` completions; collects the wakers of finished operations.
    fn submit(&mut self, want: usize, wake: &mut Vec<Waker>) {
        let queued = std::mem::take(&mut self.queue);
        let mut next = 0;
        loop {
            let mut pushed = 0;
            {
                let mut sq = self.ring.submission();
                while next < queued.len() {
                    // SAFETY: every entry points into a buffer held by its slot,
                    // which lives until the entry's completion is taken.
                    if unsafe { sq.push(&queued[next]) }.is_err() {
                        break;
                    }
                    next += 1;
                    pushed += 1;
                }
            }
            let last = next == queued.len();
            let min = if last { want as u32 } else { 0 };
            // SAFETY: a plain io_uring_enter on our ring, no extra argument.
            // GETEVENTS also runs the completions deferred to this thread.
            let r = unsafe {
                self.ring
                    .submitter()
                    .enter::<libc::sigset_t>(pushed, min, GETEVENTS, None)
            };
            self.reap(wake);
            for e in &queued[next - pushed as usize..next] {
                if let Some(Some(s)) = self.slots.get_mut(e.get_user_data() as usize) {
                    s.submitted = true;
                    if s.res.is_none() && std::mem::take(&mut s.nudge) {
                        wake.extend(s.waker.take());
                    }
                }
            }
            match r {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && !last => continue,
                Err(e) => {
                    // The kernel keeps what it did not take; the next enter
                    // submits it. Nothing here can do better than report.
                    tracing::error!("io_uring_enter: {e}");
                    self.stuck = true;
                }
            }
            if last {
                break;
            }
        }
        if self.queue.is_empty() {
            // Keep the allocation for the next turn.
            let mut queued = queued;
            queued.clear();
            self.queue = queued;
        }
    }

    fn reap(&mut self, wake: &mut Vec<Waker>) {
        for cqe in self.ring.completion() {
            let ud = cqe.user_data();
            if ud == CANCEL {
                continue;
            }
            if let Some(Some(s)) = self.slots.get_mut(ud as usize) {
                s.res = Some(cqe.result());
                if let Some(w) = s.waker.take() {
                    wake.push(w);
                }
            }
        }
    }

    fn take(&mut self, i: usize) -> Option<(i32, BytesMut)> {
        let res = self.slots[i].as_ref()?.res?;
        let s = self.slots[i].take()?;
        self.free.push(i);
        Some((res, s.buf))
    }
}

/// One operation in the ring, holding its buffer until its completion is taken.
struct Op {
    slot: Option<usize>,
    /// The buffer of an operation that never started (no ring on this thread).
    unstarted: Option<BytesMut>,
}

impl Op {
    /// Queues `entry`, whose memory lies in `buf`. Without a ring (a thread that
    /// never ran [`start`]) the operation fails with an error.
    fn start(entry: squeue::Entry, buf: BytesMut) -> Op {
        Op::start_with(entry, buf, false)
    }

    fn start_with(entry: squeue::Entry, buf: BytesMut, nudge: bool) -> Op {
        let mut wake = Vec::new();
        let mut buf = Some(buf);
        let slot = RING.with(|r| {
            let mut r = r.try_borrow_mut().ok()?;
            let r = r.as_mut()?;
            let buf = buf.take()?;
            let i = r.free.pop().unwrap_or_else(|| {
                r.slots.push(None);
                r.slots.len() - 1
            });
            r.slots[i] = Some(Slot {
                buf,
                waker: None,
                res: None,
                submitted: false,
                nudge,
            });
            r.queue.push(entry.user_data(i as u64));
            if r.queue.len() >= FLUSH_AT {
                r.submit(0, &mut wake);
            }
            Some(i)
        });
        for w in wake {
            w.wake();
        }
        Op {
            slot,
            unstarted: buf,
        }
    }

    /// Takes the completion now: removes a not yet submitted entry, or cancels
    /// a submitted one and waits for its completion. `None` if it was taken.
    fn cancel(&mut self) -> Option<(i32, BytesMut)> {
        let Some(i) = self.slot.take() else {
            return self.unstarted.take().map(|b| (-libc::ECANCELED, b));
        };
        let unsubmitted = RING.with(|r| {
            // Not borrowed here unless dropped from inside the ring's own code,
            // which drops no operation; if it were, leaking the slot is safe.
            let mut r = r.try_borrow_mut().ok()?;
            let r = r.as_mut()?;
            if let Some(done) = r.take(i) {
                return Some(done);
            }
            let at = r.queue.iter().position(|e| e.get_user_data() == i as u64)?;
            r.queue.remove(at);
            r.slots[i].as_mut()?.res = Some(-libc::ECANCELED);
            r.take(i)
        });
        if unsubmitted.is_some() {
            return unsubmitted;
        }
        RING.with(|r| {
            let mut r = r.try_borrow_mut().ok()?;
            r.as_mut()?
                .queue
                .push(opcode::AsyncCancel::new(i as u64).build().user_data(CANCEL));
            Some(())
        })?;
        // Cancelling a socket operation completes at once (it was waiting on
        // readiness), so this wait is short.
        loop {
            enter(1);
            let done = RING.with(|r| r.try_borrow_mut().ok()?.as_mut()?.take(i));
            if done.is_some() {
                return done;
            }
        }
    }
}

impl Op {
    /// The kernel has the entry and it has not completed.
    fn in_flight(&self) -> bool {
        let Some(i) = self.slot else { return false };
        RING.with(|r| {
            let Ok(r) = r.try_borrow() else { return false };
            let slot = r.as_ref().and_then(|r| r.slots.get(i)?.as_ref());
            slot.is_some_and(|s| s.submitted && s.res.is_none())
        })
    }
}

impl Future for Op {
    type Output = (i32, BytesMut);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(i) = self.slot else {
            let buf = self.unstarted.take().unwrap_or_default();
            return Poll::Ready((-libc::EBADF, buf));
        };
        let done = RING.with(|r| {
            let mut r = r.try_borrow_mut().ok()?;
            let r = r.as_mut()?;
            if let Some(done) = r.take(i) {
                return Some(done);
            }
            if let Some(s) = r.slots[i].as_mut() {
                if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.waker = Some(cx.waker().clone());
                }
            }
            None
        });
        match done {
            Some(d) => {
                self.slot = None;
                Poll::Ready(d)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        self.cancel();
    }
}

fn result(res: i32) -> io::Result<usize> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    }
}

/// A read into the caller's buffer: the buffer goes back to `dst` at
/// completion, or at drop with whatever the read got.
struct Read<'a> {
    op: Op,
    dst: &'a mut BytesMut,
}

fn put_back(dst: &mut BytesMut, res: i32, mut buf: BytesMut) {
    if res > 0 {
        // SAFETY: the kernel wrote `res` bytes into the spare capacity that
        // started at `buf.len()`, as the entry asked.
        unsafe { buf.set_len(buf.len() + res as usize) };
    }
    *dst = buf;
}

impl Future for Read<'_> {
    type Output = io::Result<usize>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let (res, buf) = std::task::ready!(Pin::new(&mut this.op).poll(cx));
        put_back(this.dst, res, buf);
        Poll::Ready(result(res))
    }
}

impl Drop for Read<'_> {
    fn drop(&mut self) {
        if let Some((res, buf)) = self.op.cancel() {
            put_back(self.dst, res, buf);
        }
    }
}

/// A send, whose idle timeout is armed only if the enter that submitted it
/// did not complete it (almost every send on loopback or a LAN completes there,
/// and a timer per send was a measurable share of the request's CPU).
/// `None` when `idle` passed.
struct Send {
    op: Op,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Send {
    fn new(fd: RawFd, buf: BytesMut, idle: Duration) -> Send {
        let len = buf.len().min(u32::MAX as usize) as u32;
        let entry = opcode::Send::new(types::Fd(fd), buf.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
            .build();
        Send {
            op: Op::start_with(entry, buf, true),
            idle,
            timer: None,
        }
    }
}

impl Future for Send {
    type Output = Option<(i32, BytesMut)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(done) = Pin::new(&mut this.op).poll(cx) {
            return Poll::Ready(Some(done));
        }
        if this.timer.is_none() && this.op.in_flight() {
            this.timer = Some(Box::pin(tokio::time::sleep(this.idle)));
        }
        match this.timer.as_mut().map(|t| t.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}

/// A TCP socket whose reads and writes go through this worker's ring.
pub struct Stream {
    sock: std::net::TcpStream,
}

impl Stream {
    /// Takes a socket off tokio's reactor.
    pub fn from_tokio(s: tokio::net::TcpStream) -> io::Result<Stream> {
        Ok(Stream {
            sock: s.into_std()?,
        })
    }

    /// The same socket on tokio's reactor (for the poll-based tunnel).
    pub fn to_tokio(&self) -> io::Result<tokio::net::TcpStream> {
        tokio::net::TcpStream::from_std(self.sock.try_clone()?)
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Reads what is available into the spare capacity of `buf` (at least one
    /// byte of room), waiting until `deadline`. `Ok(0)` is EOF.
    pub async fn read_until(&self, buf: &mut BytesMut, deadline: Instant) -> io::Result<usize> {
        if buf.capacity() == buf.len() {
            buf.reserve(crate::io::READ_CHUNK);
        }
        let mut owned = std::mem::take(buf);
        let room = owned.capacity() - owned.len();
        let at = owned.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        let entry =
            opcode::Recv::new(types::Fd(self.fd()), at, room.min(u32::MAX as usize) as u32).build();
        let read = Read {
            op: Op::start(entry, owned),
            dst: buf,
        };
        match tokio::time::timeout_at(deadline.into(), read).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "read timeout")),
        }
    }

    /// Writes all of `data`, failing if the peer accepts nothing for `idle`.
    pub async fn write_all(&self, data: &[u8], idle: Duration) -> io::Result<()> {
        let mut buf = crate::io::take_buffer();
        buf.clear();
        buf.extend_from_slice(data);
        while !buf.is_empty() {
            let Some((res, back)) = Send::new(self.fd(), buf, idle).await else {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "write timeout"));
            };
            buf = back;
            match result(res) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        crate::io::give_buffer(&mut buf);
        Ok(())
    }

    /// Waits until the socket has bytes to read, EOF or an error.
    pub async fn readable(&self) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(self.fd()), libc::POLLIN as u32).build();
        let (res, _) = Op::start(entry, BytesMut::new()).await;
        result(res).map(|_| ())
    }
}
