//! io_uring for plain HTTP sockets: one ring per worker thread, next to tokio.
//!
//! Why: on epoll a proxied keep-alive request costs about 4.2 syscalls (a
//! `recv` and a `send` on each side, plus a share of `epoll_wait`), and kernel
//! entry and exit dominate its CPU; on this ring it costs about 0.4, because the
//! `recv`s and `send`s of a worker's plain HTTP sockets are queued as ring
//! entries and submitted together (`experiments/uring-ceiling` is the bound).
//!
//! How it fits tokio (each worker is a current-thread runtime):
//! - A task that reads or writes queues an entry and waits. The first entry of
//!   a turn wakes the worker's flusher task, which runs after the tasks already
//!   queued (so a turn's entries go together) and submits everything in one
//!   `io_uring_enter`; the worker's `on_thread_park` hook ([`flush`]) does the
//!   same before it sleeps. Most sends, and reads of bytes already there,
//!   complete inside that call and wake their tasks. (Relying on the park hook
//!   alone would hold entries back for as long as some task keeps the run queue
//!   busy: tokio only calls it when the queue is empty.)
//! - The ring is set up with DEFER_TASKRUN where that works ([`Mode`]), so
//!   operations that had to wait (a `recv` before the peer sent) finish in our
//!   thread at the next enter. An eventfd registered with the ring, watched by
//!   tokio's epoll, wakes the flusher when such work is pending. Each worker
//!   proves this with real sockets before it takes traffic ([`prove`]): a ring
//!   whose wake-up does not come would leave every keep-alive request waiting
//!   for an unrelated timer, so it is dropped for the next mode, then epoll.
//! - Sockets handled here are not registered with epoll at all. Each is put in
//!   the ring's registered-file table when it arrives (one `io_uring_register`)
//!   and taken out before it closes, so its operations name a table index: the
//!   kernel then skips the descriptor lookup and its reference count on every
//!   operation (`fget`/`fput`, 1.7% of lb's CPU per proxied request in a
//!   profile). A full table, or none, leaves sockets named by descriptor.
//! - Every `user_data` carries its slot's generation, so a late completion or
//!   cancel never lands on the slot's next operation.
//! - Timeouts are not tokio timers: a read carries its deadline, a send its idle
//!   time (its deadline set only if it did not complete at submission), and one
//!   sweeper task per worker cancels what is overdue, which then completes with
//!   `ETIMEDOUT`.
//!
//! Buffers: the kernel may write into a read buffer or read a send buffer until
//! the operation's completion arrives, so the ring owns them meanwhile. A read
//! moves the caller's `BytesMut` into the operation and hands it back at
//! completion; a send copies its bytes into a buffer from the worker's spare
//! stack. A read dropped early (a `select!`) or timed out cancels its operation
//! and waits for the completion before its buffer goes back, keeping the bytes
//! it did get; a dropped poll is cancelled without waiting, its slot freed when
//! the completion comes.
//!
//! Sends are not waited for ([`Stream::write_all`] returns once the send is
//! queued): the completion of a send that took everything frees its slot and
//! buffer in `Ring::reap` with no task wake-up, a short send is resubmitted
//! there for the rest, and a failure waits in the slot for the stream's next
//! write, [`Stream::settle`] or half-close. A stream has one send in flight at
//! most, so bytes stay in order. A proxied request then wakes its task twice
//! (client read, server read), and the read that follows a send goes in the
//! same `io_uring_enter`. A stream dropped while its last send is in the
//! kernel hands its socket to that send, which closes it once the send is over
//! (or has timed out).
//!
//! Operation futures are crate-internal and
//! never leaked (`mem::forget`): a leaked queued entry would still be submitted
//! later with its socket's descriptor number. At thread exit the ring leaks the
//! buffers of operations still in the kernel rather than free them.

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
/// flusher.
const FLUSH_AT: usize = 256;
/// `user_data` of cancel requests, whose own completions are ignored.
const CANCEL: u64 = u64::MAX;
/// [`Stream::pending`] with no send in flight (no slot has this `user_data`).
const NO_SEND: u64 = u64::MAX;
/// `IORING_ENTER_GETEVENTS` from <linux/io_uring.h>.
const GETEVENTS: u32 = 1;
/// Enters in a row that submit nothing before a turn gives up (the entries
/// stay queued for the next flush).
const STALLED_ENTERS: u32 = 3;

/// An operation's `user_data`: its slot in the low half, the slot's generation
/// in the high half, so that a late cancel or completion can never be taken for
/// the next operation in the same slot.
fn user_data(i: usize, gen: u32) -> u64 {
    (gen as u64) << 32 | i as u64
}

struct Slot {
    gen: u32,
    buf: BytesMut,
    waker: Option<Waker>,
    res: Option<i32>,
    /// The kernel has the entry.
    submitted: bool,
    /// When the operation is cancelled as timed out (see [`Ring::sweep`]).
    deadline: Option<Instant>,
    /// A send's idle timeout: its deadline is set only if the enter that
    /// submitted it did not complete it (almost every send on loopback or a
    /// LAN completes there).
    idle: Option<Duration>,
    /// Cancelled by its deadline: its `-ECANCELED` reads as `-ETIMEDOUT`.
    expired: bool,
    /// Its future is gone (a cancelled send or poll): freed at completion.
    orphan: bool,
    /// A send nobody waits for ([`Stream::write_all`]), on this socket: a short
    /// send is resubmitted for the rest from `Ring::reap`, and one that sent
    /// everything frees its slot there; a failure stays for `Settle`.
    fire: Option<Target>,
    /// The send's idle time, again for the rest of a short send.
    idle_limit: Option<Duration>,
    /// The socket of a fire send whose stream was dropped: closed once the send
    /// is over (its descriptor and table index must stay its own until then).
    owner: Option<Closing>,
}

/// A dropped stream's socket, kept until its last send is over.
struct Closing {
    sock: std::net::TcpStream,
    fixed: Option<(u32, u64)>,
}

struct Ring {
    ring: IoUring,
    /// Entries built since the last submission, not yet in the submission queue.
    queue: Vec<squeue::Entry>,
    /// Reads built since the last submission: submitted after `queue`, so that
    /// a turn's sends all go before its reads. A read right behind its own
    /// send nearly always finds nothing yet and must arm a poll; behind the
    /// whole turn's sends, the peer (on the other core) has often answered.
    reads: Vec<squeue::Entry>,
    /// `user_data` of the entries in the submission queue, oldest first: the
    /// kernel takes them in this order, and says how many it took.
    in_sq: std::collections::VecDeque<u64>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    gen: u32,
    /// The flusher task, woken when the queue gets its first entry of a turn.
    flusher: Option<Waker>,
    /// When the sweeper task next looks for operations past their deadline
    /// (`None`: no operation has one).
    sweep_at: Option<Instant>,
    /// The sweeper task, woken when an operation's deadline comes before
    /// `sweep_at`.
    sweeper: Option<Waker>,
    /// Registered-file table: its size (0: none, sockets go by descriptor),
    /// the indexes never used yet start at `files_next`, freed ones in
    /// `files_free`.
    files: u32,
    files_next: u32,
    files_free: Vec<u32>,
    /// Tells this ring's table indexes from another worker's.
    id: u64,
    /// The last submit left completions in the kernel (it runs a bounded
    /// number per enter and signals no new wake-up for those): the flusher
    /// enters again at its next turn.
    rerun: bool,
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Thread exit: closing the ring does not wait for operations still in
        // the kernel, so their buffers are leaked rather than freed under them.
        for s in self.slots.drain(..).flatten() {
            if s.res.is_none() {
                std::mem::forget(s.buf);
            }
        }
    }
}

thread_local! {
    static RING: RefCell<Option<Ring>> = const { RefCell::new(None) };
    /// This thread's [`Ring::id`] (0: no ring).
    static RING_ID: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Runs `f` on this thread's ring; `None` without one. The ring is never
/// borrowed across a call out of this module, so the borrow always succeeds
/// (a failure would be a bug here, caught in debug builds).
fn with_ring<R>(f: impl FnOnce(&mut Ring) -> R) -> Option<R> {
    RING.try_with(|r| {
        let r = r.try_borrow_mut();
        debug_assert!(r.is_ok(), "io_uring ring borrowed re-entrantly");
        r.ok()?.as_mut().map(f)
    })
    .ok()
    .flatten()
}

/// The next ring's [`Ring::id`].
static RING_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Why a worker runs on epoll rather than a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fallback {
    /// `tune.io-uring off`.
    Off,
    /// The kernel (or a seccomp profile) refused to set up a ring.
    Unsupported,
    /// A ring was set up but failed [`prove`]: its wake-ups do not come.
    ProofFailed,
}

impl Fallback {
    pub fn name(self) -> &'static str {
        match self {
            Fallback::Off => "off",
            Fallback::Unsupported => "unsupported",
            Fallback::ProofFailed => "proof-failed",
        }
    }
}

/// A worker's data path (`lb_io_uring_workers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// A ring in this mode, which passed [`prove`].
    Ring(Mode),
    Epoll(Fallback),
}

/// Every worker's outcome, in start order.
static OUTCOMES: std::sync::Mutex<Vec<Outcome>> = std::sync::Mutex::new(Vec::new());

pub fn record(o: Outcome) {
    OUTCOMES.lock().unwrap_or_else(|e| e.into_inner()).push(o);
}

/// Workers per outcome, for the metric and the start line.
pub fn outcomes() -> Vec<(Outcome, usize)> {
    let mut all = OUTCOMES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    all.sort();
    let mut out: Vec<(Outcome, usize)> = Vec::new();
    for o in all {
        match out.last_mut() {
            Some((last, n)) if *last == o => *n += 1,
            _ => out.push((o, 1)),
        }
    }
    out
}

impl Outcome {
    /// `(path, mode, reason)`, the labels of `lb_io_uring_workers`.
    pub fn labels(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Outcome::Ring(m) => ("io_uring", m.name(), "proven"),
            Outcome::Epoll(f) => ("epoll", "none", f.name()),
        }
    }
}

/// The workers' data paths in a few words, for the start line:
/// "2 io_uring (signal)", "1 epoll (proof-failed)".
pub fn summary() -> String {
    let all = outcomes();
    if all.is_empty() {
        return "epoll".into();
    }
    all.iter()
        .map(|(o, n)| match o {
            Outcome::Ring(m) => format!("{n} io_uring ({})", m.name()),
            Outcome::Epoll(f) => format!("{n} epoll ({})", f.name()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether this thread has a ring (sockets accepted or connected here then use it).
pub fn active() -> bool {
    with_ring(|_| ()).is_some()
}

/// How a ring tells the worker, asleep in tokio's `epoll_wait`, that an
/// operation which had to wait (a `recv` before the peer sent) can finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// DEFER_TASKRUN: the kernel only queues such work and signals the
    /// ring's eventfd; the worker runs it at its next enter, in a batch. It
    /// rests on the kernel signalling that eventfd for deferred work, which
    /// [`prove`] checks.
    DeferTaskrun,
    /// The classic mode, tried first: the kernel interrupts the sleeping
    /// worker with task work that posts the completion, and a posted
    /// completion signals the eventfd, so the flusher takes it without a
    /// syscall. Every io_uring kernel does this, and side by side with
    /// `DeferTaskrun` it served as many or more requests/s
    /// (benches/RESULTS.md).
    Signal,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::DeferTaskrun => "defer-taskrun",
            Mode::Signal => "signal",
        }
    }
}

fn new_ring(mode: Mode) -> io::Result<IoUring> {
    let mut b = IoUring::builder();
    b.setup_single_issuer()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_cqsize(ENTRIES * 4);
    if mode == Mode::DeferTaskrun {
        b.setup_defer_taskrun();
    }
    b.build(ENTRIES)
}

/// Entries of a worker's registered-file table: one per socket it may hold,
/// bounded by the descriptor limit (the kernel refuses more) and by 64 Ki.
fn file_table_size() -> u32 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    lim.rlim_cur.min(1 << 16) as u32
}

/// Whether this kernel (and seccomp profile) lets lb set up its rings: lb
/// falls back to epoll otherwise.
pub fn probe() -> io::Result<()> {
    new_ring(Mode::Signal).map(drop)
}

/// Sets up this worker's ring and its flusher task. Must run inside the
/// worker's current-thread runtime, whose `on_thread_park` calls [`flush`].
/// An error (an old kernel, a seccomp profile that forbids io_uring) leaves
/// the worker on epoll.
pub fn start(mode: Mode) -> io::Result<()> {
    start_with(mode, !eventfd_left_out(mode))
}

/// [`start`], where `eventfd: false` leaves the ring's wake-ups out (tests).
fn start_with(mode: Mode, eventfd: bool) -> io::Result<()> {
    let ring = new_ring(mode)?;
    // SAFETY: eventfd returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own from here on.
    let efd = unsafe { OwnedFd::from_raw_fd(fd) };
    if eventfd {
        ring.submitter().register_eventfd(efd.as_raw_fd())?;
    }
    let files = file_table_size();
    let files = match ring.submitter().register_files_sparse(files) {
        Ok(()) => files,
        Err(e) => {
            tracing::debug!("io_uring: no registered-file table ({e}); sockets go by descriptor");
            0
        }
    };
    // SAFETY: the OwnedFd keeps this descriptor open, and the same, for as long
    // as the AsyncFd owns it.
    let efd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(efd, tokio::io::Interest::READABLE)
    }
    .map_err(|e| io::Error::other(e.to_string()))?;
    let id = RING_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    RING.with(|r| {
        *r.borrow_mut() = Some(Ring {
            ring,
            queue: Vec::new(),
            reads: Vec::new(),
            in_sq: std::collections::VecDeque::new(),
            slots: Vec::new(),
            free: Vec::new(),
            gen: 0,
            flusher: None,
            sweep_at: None,
            sweeper: None,
            files,
            files_next: 0,
            files_free: Vec::new(),
            id,
            rerun: false,
        })
    });
    RING_ID.with(|c| c.set(id));
    // The flusher: submits when a turn queued entries (tokio calls
    // `on_thread_park` only once the run queue is empty, which a busy task can
    // put off indefinitely; this task runs after the tasks queued before it, so a
    // turn's entries still go in one enter), and runs completions when the
    // eventfd says the kernel has some, or when a submit left some behind. The
    // eventfd is edge-triggered in epoll and each signal is a new edge, so it is
    // never read: its counter saturates. It ends with its ring ([`stop`]).
    tokio::spawn(async move {
        loop {
            let go = std::future::poll_fn(|cx| {
                let ready = with_ring(|r| {
                    if r.id != id {
                        return None;
                    }
                    if r.queued() || r.rerun {
                        return Some(true);
                    }
                    if !r.flusher.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        r.flusher = Some(cx.waker().clone());
                    }
                    Some(false)
                })
                .flatten();
                match ready {
                    None => return Poll::Ready(false),
                    Some(true) => return Poll::Ready(true),
                    Some(false) => {}
                }
                match efd.poll_read_ready(cx) {
                    Poll::Ready(Ok(mut g)) => {
                        g.clear_ready();
                        Poll::Ready(true)
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::error!("io_uring eventfd: {e}");
                        Poll::Ready(true)
                    }
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            if !go {
                return;
            }
            turn();
            if with_ring(|r| r.rerun) == Some(true) {
                // Let the tasks just woken run before the next enter.
                tokio::task::yield_now().await;
            } else if with_ring(|r| r.queued()) == Some(true) {
                // The kernel took nothing (an error was logged): retry soon,
                // without spinning.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    tokio::spawn(sweeper(id));
    Ok(())
}

/// Tests stand in for a kernel whose ring wake-ups never come by leaving the
/// eventfd out: `LB_TEST_URING_NO_EVENTFD` lists the modes (or says `all`).
fn eventfd_left_out(mode: Mode) -> bool {
    std::env::var("LB_TEST_URING_NO_EVENTFD")
        .is_ok_and(|v| v.split(',').any(|m| m == "all" || m == mode.name()))
}

/// Drops this thread's ring (it failed [`prove`]); its flusher and sweeper
/// end. Its streams must be gone already.
fn stop() {
    let ring = RING.with(|r| r.borrow_mut().take());
    RING_ID.with(|c| c.set(0));
    if let Some(mut r) = ring {
        let wake: Vec<Waker> = r
            .flusher
            .take()
            .into_iter()
            .chain(r.sweeper.take())
            .collect();
        drop(r);
        for w in wake {
            w.wake();
        }
    }
}

/// Sets up this worker's ring in the first of `modes` that starts and passes
/// [`prove`], logging why each other one was passed over; epoll if none does.
/// Runs inside the worker's runtime.
pub async fn establish(worker: usize, modes: &[Mode]) -> Outcome {
    let mut outcome = Outcome::Epoll(Fallback::Unsupported);
    for &mode in modes {
        if let Err(e) = start(mode) {
            tracing::warn!(
                "worker {worker}: io_uring ({}) unavailable: {e}",
                mode.name()
            );
            continue;
        }
        match prove().await {
            Ok(()) => {
                outcome = Outcome::Ring(mode);
                break;
            }
            Err(why) => {
                tracing::warn!(
                    "worker {worker}: io_uring ({}) failed its proof, not used: {why}",
                    mode.name()
                );
                stop();
                outcome = Outcome::Epoll(Fallback::ProofFailed);
            }
        }
    }
    if let Outcome::Epoll(_) = outcome {
        tracing::warn!("worker {worker}: using epoll");
    }
    record(outcome);
    outcome
}

/// How long [`prove`] waits for its reads. A working ring finishes them in
/// microseconds; a ring whose wake-up never comes does not finish them at all.
const PROOF_WAIT: Duration = Duration::from_millis(500);

/// Single round trips in a set of the proof; their median must be within
/// PROOF_PROMPT (a median: one lucky round trip of a late ring does not pass,
/// one delayed by a busy machine does not fail). A slow set is tried once
/// more, for a machine busy only for a moment.
const PROOF_SINGLES: usize = 7;

/// How late the median single round trip may complete after its peer's
/// write: far above a working ring's 0.1 to 0.4 ms, and below the 11 ms and
/// more (in steps of the 4 ms kernel tick) of a ring whose completions wait
/// for an unrelated wake-up.
const PROOF_PROMPT: Duration = Duration::from_millis(5);

/// Reads in the proof's burst: more than the kernel runs in one go of
/// deferred work, so work it leaves for later must be picked up too.
const PROOF_BURST: usize = 128;

/// Why a ring failed [`prove`].
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("cannot open loopback sockets: {0}")]
    Sockets(io::Error),
    #[error("cannot start the peer's thread: {0}")]
    Thread(io::Error),
    #[error("the peer could not write: {0}")]
    Write(io::Error),
    #[error("a read completed before its peer wrote")]
    Early,
    #[error("a read returned {0} bytes, not 1")]
    Short(usize),
    #[error("a read failed: {0}")]
    Read(io::Error),
    #[error("{left} of {n} reads waiting in the kernel did not complete within {PROOF_WAIT:?} of their peer's write")]
    Stalled { left: usize, n: usize },
    #[error("reads waiting in the kernel completed {median:?} after their peer's write (median; a working ring takes well under a millisecond, and this would delay every keep-alive request)")]
    Slow { median: Duration },
}

/// Shows with real sockets that this worker's ring completes a read that was
/// waiting in the kernel when its peer wrote, which is what every keep-alive
/// request does, and soon after the write: single round trips, then a burst.
/// The peer writes from another thread, at whatever moment it runs, as a
/// client would.
pub async fn prove() -> Result<(), ProofError> {
    let burst = PROOF_BURST.min(file_table_size() as usize / 8).max(1);
    // Completing is not enough: a ring can complete every read, late (in
    // `defer-taskrun` mode on 6.18, 11 to 45 ms after the write, where
    // `signal` takes 0.2 ms), and every keep-alive request then waits that long.
    let mut median = Duration::ZERO;
    for _ in 0..2 {
        let mut took = Vec::with_capacity(PROOF_SINGLES);
        for _ in 0..PROOF_SINGLES {
            took.push(proof_round(1).await?);
        }
        took.sort();
        median = took[PROOF_SINGLES / 2];
        if median <= PROOF_PROMPT {
            break;
        }
    }
    if median > PROOF_PROMPT {
        return Err(ProofError::Slow { median });
    }
    proof_round(burst).await?;
    Ok(())
}

/// One round of `n` reads; how long after the peer's writes the last completed.
async fn proof_round(n: usize) -> Result<Duration, ProofError> {
    let pairs = (0..n)
        .map(|_| loopback_pair())
        .collect::<io::Result<Vec<_>>>()
        .map_err(ProofError::Sockets)?;
    let (mut peers, streams): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let mut bufs: Vec<BytesMut> = (0..n).map(|_| BytesMut::with_capacity(16)).collect();
    let far = Instant::now() + Duration::from_secs(60);
    let mut reads: Vec<_> = streams
        .iter()
        .zip(bufs.iter_mut())
        .map(|(s, b)| Some(Box::pin(s.read_until(b, far))))
        .collect();
    let mut poll_all = |cx: &mut Context<'_>| -> Result<usize, ProofError> {
        let mut left = 0;
        for r in reads.iter_mut() {
            let Some(f) = r else { continue };
            match f.as_mut().poll(cx) {
                Poll::Ready(Ok(1)) => *r = None,
                Poll::Ready(Ok(got)) => return Err(ProofError::Short(got)),
                Poll::Ready(Err(e)) => return Err(ProofError::Read(e)),
                Poll::Pending => left += 1,
            }
        }
        Ok(left)
    };
    // Queued, then in the kernel, each waiting: nothing has been sent yet.
    let left = std::future::poll_fn(|cx| Poll::Ready(poll_all(cx))).await?;
    if left != n {
        return Err(ProofError::Early);
    }
    flush();
    let writer = std::thread::Builder::new()
        .name("lb-ring-proof".into())
        .spawn(move || {
            for p in peers.iter_mut() {
                std::io::Write::write_all(p, b"x")?;
            }
            Ok::<_, io::Error>((peers, Instant::now()))
        })
        .map_err(ProofError::Thread)?;
    let mut left = n;
    let waited = tokio::time::timeout(
        PROOF_WAIT,
        std::future::poll_fn(|cx| match poll_all(cx) {
            Ok(0) => Poll::Ready(Ok(())),
            Ok(l) => {
                left = l;
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }),
    )
    .await;
    let done = Instant::now();
    let wrote = match writer.join() {
        Ok(Ok((_, wrote))) => wrote,
        Ok(Err(e)) => return Err(ProofError::Write(e)),
        Err(_) => return Err(ProofError::Write(io::Error::other("its thread panicked"))),
    };
    match waited {
        Ok(r) => r.map(|()| done.saturating_duration_since(wrote)),
        Err(_) => Err(ProofError::Stalled { left, n }),
    }
}

/// A connected loopback pair: a plain socket for the peer, and its other end
/// on this worker's ring.
fn loopback_pair() -> io::Result<(std::net::TcpStream, Stream)> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    // Bounded: a firewall that drops SYNs on loopback must not hold the start.
    let peer = std::net::TcpStream::connect_timeout(&l.local_addr()?, PROOF_WAIT)?;
    let (s, _) = l.accept()?;
    s.set_nonblocking(true)?;
    Ok((
        peer,
        Stream::from_tokio(tokio::net::TcpStream::from_std(s)?)?,
    ))
}

/// Operations past their deadline are looked for at most this often (and
/// so time out at most this late).
const SWEEP_GRAIN: Duration = Duration::from_millis(5);

/// The worker's one timer for the deadlines of its ring operations. A tokio
/// timer per read was 1.5% of a proxied request's CPU (registered in the
/// wheel, then removed, nearly always before it fired); here an operation's
/// deadline is a field, and this task sleeps until the earliest one that
/// matters, then cancels what is overdue ([`Ring::sweep`]).
async fn sweeper(id: u64) {
    let mut sleep = Box::pin(tokio::time::sleep(Duration::ZERO));
    let mut armed = None;
    loop {
        let mine = std::future::poll_fn(|cx| {
            let Some(at) = with_ring(|r| {
                if r.id != id {
                    return None;
                }
                if !r.sweeper.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    r.sweeper = Some(cx.waker().clone());
                }
                Some(r.sweep_at)
            })
            .flatten() else {
                return Poll::Ready(false);
            };
            if at != armed {
                armed = at;
                if let Some(t) = at {
                    sleep.as_mut().reset(t.into());
                }
            }
            match armed {
                Some(_) => sleep.as_mut().poll(cx).map(|()| true),
                None => Poll::Pending,
            }
        })
        .await;
        if !mine {
            return;
        }
        armed = None;
        let mut wake = Vec::new();
        with_ring(|r| r.sweep(Instant::now(), &mut wake));
        for w in wake {
            w.wake();
        }
    }
}

/// Submits what this turn queued and runs completions. Called by the worker
/// before it parks.
pub fn flush() {
    if with_ring(|r| r.queued() || !r.in_sq.is_empty()) == Some(true) {
        enter(0);
    }
}

/// The flusher's turn: submits what is queued and runs deferred work; with
/// nothing to submit and no work deferred (a `signal` ring, where the kernel
/// has already posted the completions that woke us), it only takes the
/// completions, without a syscall.
fn turn() {
    let mut wake = Vec::new();
    with_ring(|r| {
        let sq = r.ring.submission();
        let deferred = sq.taskrun() || sq.cq_overflow();
        drop(sq);
        if r.queued() || !r.in_sq.is_empty() || deferred || r.rerun {
            r.submit(0, &mut wake);
        } else {
            r.reap(&mut wake);
        }
    });
    for w in wake {
        w.wake();
    }
}

/// Submits the queue, waits for at least `want` completions, wakes their tasks.
fn enter(want: usize) {
    let mut wake = Vec::new();
    with_ring(|r| r.submit(want, &mut wake));
    for w in wake {
        w.wake();
    }
}

impl Ring {
    /// Hands the queued entries to the kernel (in several enters if they do not
    /// fit the submission queue), runs deferred completions, and waits for
    /// `want` completions; collects the wakers of finished operations. Entries
    /// the kernel does not take (an error) stay for the next call.
    fn submit(&mut self, mut want: usize, wake: &mut Vec<Waker>) {
        let mut queued = std::mem::take(&mut self.queue);
        queued.append(&mut self.reads);
        let mut next = 0;
        let mut stalled = 0;
        // Extra rounds for completions the kernel kept aside (bounded, so that
        // a steady stream of them cannot keep the woken tasks waiting).
        let mut extra = 4;
        let mut reaped = 0;
        loop {
            {
                let mut sq = self.ring.submission();
                while next < queued.len() {
                    // SAFETY: every entry points into a buffer held by its slot,
                    // which lives until the entry's completion is taken.
                    if unsafe { sq.push(&queued[next]) }.is_err() {
                        break;
                    }
                    self.in_sq.push_back(queued[next].get_user_data());
                    next += 1;
                }
            }
            let last = next == queued.len();
            let min = if last { want as u32 } else { 0 };
            let to_submit = self.in_sq.len() as u32;
            // SAFETY: a plain io_uring_enter on our ring, no extra argument.
            // GETEVENTS also runs the completions deferred to this thread.
            let r = unsafe {
                self.ring
                    .submitter()
                    .enter::<libc::sigset_t>(to_submit, min, GETEVENTS, None)
            };
            reaped += self.reap(wake);
            if r.is_ok() && last {
                // The wait (if any) is done; later rounds only collect.
                want = 0;
            }
            let taken = match r {
                Ok(n) => n.min(self.in_sq.len()),
                Err(ref e) if e.raw_os_error() == Some(libc::EINTR) => 0,
                // Completion queue full or kernel memory short: the reap above
                // made room; go again.
                Err(ref e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)) => 0,
                Err(e) => {
                    tracing::error!("io_uring_enter: {e}");
                    0
                }
            };
            let mut now = None;
            let mut earliest: Option<Instant> = None;
            for ud in self.in_sq.drain(..taken) {
                let Some(s) = slot_mut(&mut self.slots, ud) else {
                    continue;
                };
                s.submitted = true;
                if s.res.is_some() {
                    continue;
                }
                if let Some(idle) = s.idle.take() {
                    let d = *now.get_or_insert_with(Instant::now) + idle;
                    s.deadline = Some(d);
                    earliest = Some(earliest.map_or(d, |e| e.min(d)));
                }
            }
            if let Some(d) = earliest {
                self.arm(d, wake);
            }
            if extra > 0
                && (self.ring.submission().cq_overflow() || self.ring.submission().taskrun())
            {
                // Completions the kernel kept aside, or ran out of room for.
                extra -= 1;
                continue;
            }
            if last && self.in_sq.is_empty() {
                break;
            }
            stalled = if taken == 0 { stalled + 1 } else { 0 };
            if stalled >= STALLED_ENTERS {
                break;
            }
        }
        // Work the kernel still holds after the bounded rounds: it signals no
        // new wake-up for it, so the flusher comes back for it next turn, as
        // long as these rounds made progress (a flag that stays set with
        // nothing behind it must not keep the worker from sleeping).
        let sq = self.ring.submission();
        self.rerun = (sq.taskrun() || sq.cq_overflow()) && reaped > 0;
        drop(sq);
        if self.rerun {
            wake.extend(self.flusher.take());
        }
        queued.drain(..next);
        if self.queue.is_empty() {
            // Keep the allocation for the next turn.
            self.queue = queued;
        } else {
            queued.append(&mut self.queue);
            self.queue = queued;
        }
    }

    /// Takes the completions the kernel posted; how many.
    fn reap(&mut self, wake: &mut Vec<Waker>) -> usize {
        let mut closing = Vec::new();
        let mut n = 0;
        for cqe in self.ring.completion() {
            n += 1;
            let ud = cqe.user_data();
            if ud == CANCEL {
                continue;
            }
            let i = (ud & 0xffff_ffff) as usize;
            let Some(s) = slot_mut(&mut self.slots, ud) else {
                continue;
            };
            let res = cqe.result();
            if let Some(target) = s.fire {
                let all = res > 0 && res as usize == s.buf.len();
                if res > 0 && !all && !s.expired {
                    // A short send: the rest goes next, with a fresh idle time
                    // (a dropped stream's socket stays open for it, in `owner`).
                    s.buf.advance(res as usize);
                    s.submitted = false;
                    s.deadline = None;
                    s.idle = s.idle_limit;
                    self.queue.push(send_entry(target, &s.buf).user_data(ud));
                    if self.queue.len() + self.reads.len() == 1 {
                        wake.extend(self.flusher.take());
                    }
                    continue;
                }
                if all || s.orphan {
                    // All sent, or its stream is gone: nobody needs to hear of it.
                    let mut s = self.slots[i].take().expect("slot checked above");
                    self.free.push(i);
                    crate::buffer::give_buffer(&mut s.buf);
                    closing.extend(s.owner.take());
                    wake.extend(s.waker.take());
                    continue;
                }
            }
            if s.orphan {
                self.slots[i] = None;
                self.free.push(i);
                continue;
            }
            s.res = Some(match res {
                e if s.expired && (e == -libc::ECANCELED || e == -libc::EINTR) => -libc::ETIMEDOUT,
                // A send cut short by its deadline.
                _ if s.expired && s.fire.is_some() => -libc::ETIMEDOUT,
                // A send that took nothing: the peer is gone.
                0 if s.fire.is_some() => -libc::EPIPE,
                e => e,
            });
            if let Some(w) = s.waker.take() {
                wake.push(w);
            }
        }
        for c in closing {
            self.close(c);
        }
        n
    }

    /// Closes a dropped stream's socket (at once, or once its last send is
    /// over): out of the table first, whose reference would keep it open.
    fn close(&mut self, c: Closing) {
        if let Some((i, ring)) = c.fixed {
            if ring == self.id {
                self.unregister_file(i);
            }
        }
        drop(c.sock);
    }

    fn take(&mut self, ud: u64) -> Option<(i32, BytesMut)> {
        let res = slot_mut(&mut self.slots, ud)?.res?;
        let i = (ud & 0xffff_ffff) as usize;
        let s = self.slots[i].take()?;
        self.free.push(i);
        Some((res, s.buf))
    }

    /// A fresh slot for an operation on `buf`: its index and `user_data`.
    fn new_slot(&mut self, buf: BytesMut) -> (usize, u64) {
        let i = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        self.gen = self.gen.wrapping_add(1);
        self.slots[i] = Some(Slot {
            gen: self.gen,
            buf,
            waker: None,
            res: None,
            submitted: false,
            deadline: None,
            idle: None,
            expired: false,
            orphan: false,
            fire: None,
            idle_limit: None,
            owner: None,
        });
        (i, user_data(i, self.gen))
    }

    /// Entries wait for submission.
    fn queued(&self) -> bool {
        !self.queue.is_empty() || !self.reads.is_empty()
    }

    /// Queues an entry (a read behind the turn's other entries); the first
    /// of a turn wakes the flusher, and a long queue is submitted at once.
    fn enqueue_as(&mut self, entry: squeue::Entry, read: bool, wake: &mut Vec<Waker>) {
        if read {
            self.reads.push(entry);
        } else {
            self.queue.push(entry);
        }
        let n = self.queue.len() + self.reads.len();
        if n == 1 {
            wake.extend(self.flusher.take());
        } else if n >= FLUSH_AT {
            self.submit(0, wake);
        }
    }

    fn enqueue(&mut self, entry: squeue::Entry, wake: &mut Vec<Waker>) {
        self.enqueue_as(entry, false, wake);
    }

    /// Makes sure the sweeper looks at deadline `d` in time.
    fn arm(&mut self, d: Instant, wake: &mut Vec<Waker>) {
        if self.sweep_at.is_none_or(|t| d < t) {
            self.sweep_at = Some(d);
            wake.extend(self.sweeper.take());
        }
    }

    /// Cancels the submitted operations whose deadline has passed (they
    /// complete with `-ETIMEDOUT`, a read keeping what it got), and sets when
    /// to look next: the earliest deadline left, but not sooner than
    /// `SWEEP_GRAIN` from now.
    fn sweep(&mut self, now: Instant, wake: &mut Vec<Waker>) {
        let mut next: Option<Instant> = None;
        let mut overdue = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(s) = slot else { continue };
            let Some(d) = s.deadline else { continue };
            if s.res.is_some() {
                continue;
            }
            if d <= now && s.submitted {
                s.deadline = None;
                s.expired = true;
                overdue.push(user_data(i, s.gen));
            } else {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        self.sweep_at = next.map(|n| n.max(now + SWEEP_GRAIN));
        for ud in overdue {
            self.enqueue(opcode::AsyncCancel::new(ud).build().user_data(CANCEL), wake);
        }
    }

    /// Puts `fd` in the registered-file table; `None` if the table is full
    /// (or absent, or the kernel refuses), and the socket goes by descriptor.
    fn register_file(&mut self, fd: RawFd) -> Option<u32> {
        let i = match self.files_free.pop() {
            Some(i) => i,
            None if self.files_next < self.files => {
                self.files_next += 1;
                self.files_next - 1
            }
            None => return None,
        };
        match self.ring.submitter().register_files_update(i, &[fd]) {
            Ok(_) => Some(i),
            Err(e) => {
                tracing::debug!("io_uring: registering a socket: {e}");
                self.files_free.push(i);
                None
            }
        }
    }

    /// Takes entry `i` out of the table: the table holds a reference to the
    /// socket, which would otherwise stay open after its descriptor closes.
    /// Operations still in the kernel keep the socket until they complete.
    fn unregister_file(&mut self, i: u32) {
        match self.ring.submitter().register_files_update(i, &[-1]) {
            Ok(_) => self.files_free.push(i),
            // The entry stays taken (the socket then closes with the ring).
            Err(e) => tracing::error!("io_uring: unregistering a socket: {e}"),
        }
    }

    /// Ends operation `ud` if the kernel does not have it: its completion if
    /// already there, or its entry taken out of the queue.
    fn end_unsubmitted(&mut self, ud: u64) -> Option<(i32, BytesMut)> {
        self.take(ud).or_else(|| self.unqueue(ud))
    }

    /// Takes an unsubmitted entry out of the queue: its operation is over.
    fn unqueue(&mut self, ud: u64) -> Option<(i32, BytesMut)> {
        let find = |q: &[squeue::Entry]| q.iter().position(|e| e.get_user_data() == ud);
        if let Some(at) = find(&self.queue) {
            self.queue.remove(at);
        } else {
            let at = find(&self.reads)?;
            self.reads.remove(at);
        }
        slot_mut(&mut self.slots, ud)?.res = Some(-libc::ECANCELED);
        self.take(ud)
    }
}

/// The slot `ud` names, if it still holds that operation.
fn slot_mut(slots: &mut [Option<Slot>], ud: u64) -> Option<&mut Slot> {
    let s = slots.get_mut((ud & 0xffff_ffff) as usize)?.as_mut()?;
    (s.gen == (ud >> 32) as u32).then_some(s)
}

/// How long an operation may wait in the kernel before it is cancelled as
/// timed out.
#[derive(Clone, Copy)]
enum Limit {
    None,
    /// Until this instant.
    Deadline(Instant),
}

/// One operation in the ring, holding its buffer until its completion is taken.
struct Op {
    /// Its `user_data` while the ring has it.
    ud: Option<u64>,
    /// The buffer of an operation that never started (no ring on this thread).
    unstarted: Option<BytesMut>,
}

impl Op {
    /// Queues `entry`, whose memory lies in `buf`. Without a ring (a thread that
    /// never ran [`start`]) the operation fails with EBADF.
    fn start(entry: squeue::Entry, buf: BytesMut) -> Op {
        Op::start_with(entry, buf, Limit::None, false)
    }

    /// `read`: a socket read, submitted after the turn's other entries.
    fn start_with(entry: squeue::Entry, buf: BytesMut, limit: Limit, read: bool) -> Op {
        let mut wake = Vec::new();
        let mut buf = Some(buf);
        let ud = with_ring(|r| {
            let buf = buf.take()?;
            let (_, ud) = r.new_slot(buf);
            if let Limit::Deadline(d) = limit {
                if let Some(s) = slot_mut(&mut r.slots, ud) {
                    s.deadline = Some(d);
                }
                r.arm(d, &mut wake);
            }
            r.enqueue_as(entry.user_data(ud), read, &mut wake);
            Some(ud)
        })
        .flatten();
        for w in wake {
            w.wake();
        }
        Op { ud, unstarted: buf }
    }

    /// Queues a send nobody waits for (see `Slot::fire`); its `user_data`,
    /// or `None` without a ring on this thread.
    fn start_fire(
        entry: squeue::Entry,
        buf: BytesMut,
        idle: Duration,
        target: Target,
    ) -> Option<u64> {
        let mut wake = Vec::new();
        let ud = with_ring(|r| {
            let (i, ud) = r.new_slot(buf);
            if let Some(s) = r.slots[i].as_mut() {
                s.idle = Some(idle);
                s.idle_limit = Some(idle);
                s.fire = Some(target);
            }
            r.enqueue(entry.user_data(ud), &mut wake);
            ud
        });
        for w in wake {
            w.wake();
        }
        ud
    }

    /// Ends the operation now and returns its completion: a queued entry is
    /// taken out, a submitted one is cancelled and waited for (short: a socket
    /// operation waits on readiness, and cancelling that completes at once).
    /// `None` if the completion was already taken.
    fn cancel(&mut self) -> Option<(i32, BytesMut)> {
        let Some(ud) = self.ud.take() else {
            return self.unstarted.take().map(|b| (-libc::ECANCELED, b));
        };
        let mut wake = Vec::new();
        let done = with_ring(|r| {
            let done = r.end_unsubmitted(ud);
            if done.is_none() {
                r.enqueue(
                    opcode::AsyncCancel::new(ud).build().user_data(CANCEL),
                    &mut wake,
                );
            }
            done
        })?;
        for w in wake {
            w.wake();
        }
        if done.is_some() {
            return done;
        }
        loop {
            enter(1);
            match with_ring(|r| r.take(ud)) {
                Some(None) => {}
                Some(done) => return done,
                // No ring any more (thread exit): its Drop leaked the buffer.
                None => return None,
            }
        }
    }

    /// Ends the operation without waiting: a submitted entry is cancelled and
    /// its slot freed when the completion arrives. For operations whose buffer
    /// nobody needs back (sends, polls).
    fn detach(&mut self) {
        let Some(ud) = self.ud.take() else { return };
        let mut wake = Vec::new();
        with_ring(|r| {
            if r.end_unsubmitted(ud).is_some() {
                return;
            }
            if let Some(s) = slot_mut(&mut r.slots, ud) {
                s.orphan = true;
                s.waker = None;
                // Cancelled now: the sweeper has nothing left to do for it.
                s.deadline = None;
                s.idle = None;
                r.enqueue(
                    opcode::AsyncCancel::new(ud).build().user_data(CANCEL),
                    &mut wake,
                );
            }
        });
        for w in wake {
            w.wake();
        }
    }
}

impl Future for Op {
    type Output = (i32, BytesMut);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(ud) = self.ud else {
            let buf = self.unstarted.take().unwrap_or_default();
            return Poll::Ready((-libc::EBADF, buf));
        };
        let done = with_ring(|r| {
            if let Some(done) = r.take(ud) {
                return Some(done);
            }
            if let Some(s) = slot_mut(&mut r.slots, ud) {
                if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.waker = Some(cx.waker().clone());
                }
            }
            None
        });
        match done {
            Some(Some(d)) => {
                self.ud = None;
                Poll::Ready(d)
            }
            Some(None) => Poll::Pending,
            // The ring is gone (thread exit): nothing will complete this.
            None => {
                self.ud = None;
                Poll::Ready((-libc::ECANCELED, BytesMut::new()))
            }
        }
    }
}

/// A socket's wait for readability ([`Stream::readable_op`]).
pub struct Readable(Op);

impl Future for Readable {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|(res, _)| result(res).map(|_| ()))
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        // Reads wait for their completion (through `Read`'s own drop, which
        // keeps the bytes); everything else lets the kernel finish on its own.
        self.detach();
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

/// A TCP socket whose reads and writes go through this worker's ring.
pub struct Stream {
    /// Dropped by hand: a socket whose last send is still in the kernel goes
    /// to that send's slot, to be closed when it is over.
    sock: std::mem::ManuallyDrop<std::net::TcpStream>,
    /// The send in flight ([`Stream::write_all`] does not wait for it), as
    /// its `user_data`; `NO_SEND` if none. Atomic only so that `&Stream` may be
    /// held across awaits by `Send` futures: plain loads and stores, as one
    /// thread uses it.
    pending: std::sync::atomic::AtomicU64,
    /// Its index in the ring's registered-file table, and that ring's id.
    /// Operations name the socket by index, which spares the kernel a
    /// descriptor lookup (with its reference count) per operation.
    fixed: Option<(u32, u64)>,
}

/// How an operation names its socket.
#[derive(Clone, Copy)]
enum Target {
    Fd(RawFd),
    Fixed(u32),
}

impl Stream {
    /// Takes a socket off tokio's reactor.
    pub fn from_tokio(s: tokio::net::TcpStream) -> io::Result<Stream> {
        let sock = s.into_std()?;
        let fixed = with_ring(|r| r.register_file(sock.as_raw_fd()).map(|i| (i, r.id))).flatten();
        Ok(Stream {
            sock: std::mem::ManuallyDrop::new(sock),
            pending: std::sync::atomic::AtomicU64::new(NO_SEND),
            fixed,
        })
    }

    /// The same socket on tokio's reactor (for the poll-based tunnel), once
    /// the send in flight is over.
    pub async fn to_tokio(&self) -> io::Result<tokio::net::TcpStream> {
        self.settle().await?;
        tokio::net::TcpStream::from_std(self.sock.try_clone()?)
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// The table index on this thread's ring, else the descriptor (a socket
    /// is used on the worker that took it; the check keeps an index from ever
    /// naming another ring's socket).
    fn target(&self) -> Target {
        match self.fixed {
            Some((i, ring)) if RING_ID.with(|c| c.get()) == ring => Target::Fixed(i),
            _ => Target::Fd(self.fd()),
        }
    }

    /// Half-closes: a FIN after what was sent, once the send in flight is over.
    pub async fn shutdown_write(&self) -> io::Result<()> {
        self.settle().await?;
        self.sock.shutdown(std::net::Shutdown::Write)
    }

    /// Waits for the send in flight, if any: its error, if it failed.
    pub async fn settle(&self) -> io::Result<()> {
        match self.take_pending() {
            None => Ok(()),
            ud => Settle { stream: self, ud }.await,
        }
    }

    fn take_pending(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let ud = self.pending.load(Relaxed);
        if ud == NO_SEND {
            return None;
        }
        self.pending.store(NO_SEND, Relaxed);
        Some(ud)
    }

    fn set_pending(&self, ud: u64) {
        self.pending.store(ud, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reads what is available into the spare capacity of `buf` (at least one
    /// byte of room), waiting until `deadline`. `Ok(0)` is EOF.
    pub async fn read_until(&self, buf: &mut BytesMut, deadline: Instant) -> io::Result<usize> {
        if buf.capacity() == buf.len() {
            buf.reserve(crate::buffer::READ_CHUNK);
        }
        let mut owned = std::mem::take(buf);
        let room = owned.capacity() - owned.len();
        let at = owned.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        let room = room.min(u32::MAX as usize) as u32;
        let entry = match self.target() {
            Target::Fixed(i) => opcode::Recv::new(types::Fixed(i), at, room).build(),
            Target::Fd(fd) => opcode::Recv::new(types::Fd(fd), at, room).build(),
        };
        Read {
            op: Op::start_with(entry, owned, Limit::Deadline(deadline), true),
            dst: buf,
        }
        .await
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ETIMEDOUT) => io::Error::new(io::ErrorKind::TimedOut, "read timeout"),
            _ => e,
        })
    }

    /// Sends all of `data`, failing if the peer accepts nothing for `idle`.
    /// Returns once the send is queued, not done: the task goes on (to its
    /// next read, submitted in the same enter) without a wake-up for the
    /// send's completion, which `Ring::reap` handles alone when it sent
    /// everything, as nearly every send does. A failure surfaces at the
    /// stream's next `write_all`, [`Stream::settle`] or half-close; a read
    /// meanwhile sees the broken connection itself. One send at a time: this
    /// waits for the previous one first, so bytes stay in order.
    pub async fn write_all(&self, data: &[u8], idle: Duration) -> io::Result<()> {
        self.settle().await?;
        if data.is_empty() {
            return Ok(());
        }
        let mut buf = crate::buffer::take_buffer();
        buf.clear();
        buf.extend_from_slice(data);
        let target = self.target();
        let entry = send_entry(target, &buf);
        match Op::start_fire(entry, buf, idle, target) {
            Some(ud) => {
                self.set_pending(ud);
                Ok(())
            }
            None => Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
    }

    /// Waits until the socket has bytes to read, EOF or an error.
    pub async fn readable(&self) -> io::Result<()> {
        self.readable_op().await
    }

    /// [`Stream::readable`] as a plain future, started at once: one
    /// operation and no async state, which a parked connection holds while idle.
    pub fn readable_op(&self) -> Readable {
        let mask = libc::POLLIN as u32;
        let entry = match self.target() {
            Target::Fixed(i) => opcode::PollAdd::new(types::Fixed(i), mask).build(),
            Target::Fd(fd) => opcode::PollAdd::new(types::Fd(fd), mask).build(),
        };
        Readable(Op::start(entry, BytesMut::new()))
    }

    /// Waits until the socket has room to send, or an error (for sendfile(2)
    /// straight to the descriptor, once the send in flight is settled).
    pub async fn writable(&self) -> io::Result<()> {
        self.poll(libc::POLLOUT as u32).await
    }

    async fn poll(&self, mask: u32) -> io::Result<()> {
        let entry = match self.target() {
            Target::Fixed(i) => opcode::PollAdd::new(types::Fixed(i), mask).build(),
            Target::Fd(fd) => opcode::PollAdd::new(types::Fd(fd), mask).build(),
        };
        let (res, _) = Op::start(entry, BytesMut::new()).await;
        result(res).map(|_| ())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: taken once, here; `sock` is not used after.
        let sock = unsafe { std::mem::ManuallyDrop::take(&mut self.sock) };
        if let Some((_, ring)) = self.fixed {
            // Sockets stay on the worker that registered them. One dropped
            // elsewhere would keep its entry, and the socket open, until that
            // worker's ring closes.
            debug_assert_eq!(
                RING_ID.with(|c| c.get()),
                ring,
                "ring socket left its worker"
            );
        }
        let mut closing = Some(Closing {
            sock,
            fixed: self.fixed,
        });
        let pending = self.take_pending();
        // No ring any more (thread exit): closing it released its table, and
        // `closing` drops the socket below.
        with_ring(|r| {
            if let Some(ud) = pending {
                if let Some(s) = slot_mut(&mut r.slots, ud).filter(|s| s.res.is_none()) {
                    // The last send is still going: it keeps the socket, and
                    // closes it when it is over (the sweeper bounds that).
                    s.orphan = true;
                    s.waker = None;
                    s.owner = closing.take();
                    return;
                }
                // It failed; nobody is left to hear of it.
                if let Some((_, mut buf)) = r.take(ud) {
                    crate::buffer::give_buffer(&mut buf);
                }
            }
            if let Some(c) = closing.take() {
                r.close(c);
            }
        });
    }
}

/// Waits for a stream's send in flight ([`Stream::settle`]); if dropped first,
/// the stream keeps track of the send.
struct Settle<'a> {
    stream: &'a Stream,
    ud: Option<u64>,
}

impl Future for Settle<'_> {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(ud) = self.ud else {
            return Poll::Ready(Ok(()));
        };
        let done = with_ring(|r| {
            if let Some((res, mut buf)) = r.take(ud) {
                crate::buffer::give_buffer(&mut buf);
                return Some(res);
            }
            // No slot: the send took everything and its slot went at completion.
            let Some(s) = slot_mut(&mut r.slots, ud) else {
                return Some(0);
            };
            if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                s.waker = Some(cx.waker().clone());
            }
            None
        });
        let res = match done {
            Some(Some(res)) => res,
            Some(None) => return Poll::Pending,
            // The ring is gone (thread exit): nothing will complete this.
            None => -libc::ECANCELED,
        };
        self.ud = None;
        Poll::Ready(match res {
            0.. => Ok(()),
            e if e == -libc::ETIMEDOUT => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "write timeout"))
            }
            e => Err(io::Error::from_raw_os_error(-e)),
        })
    }
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        if let Some(ud) = self.ud {
            self.stream.set_pending(ud);
        }
    }
}

/// A send of all of `buf` (which the slot holding it keeps alive).
fn send_entry(target: Target, buf: &[u8]) -> squeue::Entry {
    let len = buf.len().min(u32::MAX as usize) as u32;
    match target {
        Target::Fixed(i) => opcode::Send::new(types::Fixed(i), buf.as_ptr(), len),
        Target::Fd(fd) => opcode::Send::new(types::Fd(fd), buf.as_ptr(), len),
    }
    .flags(libc::MSG_NOSIGNAL)
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn worker() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(flush)
            .build()
            .unwrap()
    }

    /// Runs `f` on a worker-like runtime with a ring in each mode; where
    /// io_uring is not permitted there is nothing to test, and it says so.
    fn on_ring<F: Future<Output = ()>>(f: impl Fn() -> F) {
        if let Err(e) = probe() {
            eprintln!("io_uring not permitted here ({e}); nothing to test");
            return;
        }
        for mode in [Mode::DeferTaskrun, Mode::Signal] {
            worker().block_on(async {
                start(mode).unwrap();
                f().await;
                stop();
            });
        }
    }

    /// A working ring passes its proof, burst included (more waiting reads
    /// than the kernel completes in one enter): `signal` always; a
    /// `defer-taskrun` ring passes or is found slow (late completions), never
    /// anything else.
    #[test]
    fn a_working_ring_passes_its_proof() {
        if probe().is_err() {
            return;
        }
        for mode in [Mode::DeferTaskrun, Mode::Signal] {
            worker().block_on(async {
                start(mode).unwrap();
                for _ in 0..2 {
                    match prove().await {
                        Ok(()) => {}
                        Err(ProofError::Slow { .. }) if mode == Mode::DeferTaskrun => {}
                        Err(e) => panic!("{mode:?}: {e}"),
                    }
                }
                stop();
            });
        }
    }

    /// A ring whose wake-ups never come (no eventfd: the worker sleeps through
    /// its completions) fails the proof, in either mode, and the worker can
    /// then drop it and go on.
    #[test]
    fn a_ring_without_wake_ups_fails_its_proof() {
        if probe().is_err() {
            return;
        }
        for mode in [Mode::DeferTaskrun, Mode::Signal] {
            worker().block_on(async {
                start_with(mode, false).unwrap();
                let e = prove().await.unwrap_err();
                assert!(matches!(e, ProofError::Stalled { .. }), "{e}");
                stop();
                assert!(!active());
                // The ring's tasks have ended: nothing holds the runtime.
                tokio::task::yield_now().await;
            });
        }
    }

    fn pair() -> (std::net::TcpStream, Stream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        let s = Stream::from_tokio(tokio::net::TcpStream::from_std(s).unwrap()).unwrap();
        (c, s)
    }

    /// A task that never lets the worker park (it yields forever) must not
    /// hold back ring operations: the flusher task submits them.
    #[test]
    fn a_busy_task_does_not_hold_back_ring_operations() {
        on_ring(|| async {
            let stop = Arc::new(AtomicBool::new(false));
            let busy = stop.clone();
            tokio::spawn(async move {
                while !busy.load(Ordering::Relaxed) {
                    tokio::task::yield_now().await;
                }
            });
            // Let the flusher run and wait, as it does between turns.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            let (mut c, s) = pair();
            c.write_all(b"hello").unwrap();
            let mut buf = BytesMut::with_capacity(64);
            let far = Instant::now() + Duration::from_secs(60);
            let n = tokio::time::timeout(Duration::from_secs(5), s.read_until(&mut buf, far))
                .await
                .expect("read held back")
                .unwrap();
            assert_eq!(&buf[..n], b"hello");
            // write_all returns once the send is queued; settle waits for it.
            let send = async {
                s.write_all(b"world", Duration::from_secs(5)).await?;
                s.settle().await
            };
            tokio::time::timeout(Duration::from_secs(5), send)
                .await
                .expect("send held back")
                .unwrap();
            let mut got = [0u8; 5];
            c.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"world");
            stop.store(true, Ordering::Relaxed);
        });
    }

    /// A socket in the registered-file table is taken out when its stream
    /// drops, so it really closes: the peer sees EOF (the table's reference
    /// would otherwise hold it open).
    #[test]
    fn a_dropped_stream_closes_its_registered_socket() {
        on_ring(|| async {
            let (mut c, s) = pair();
            assert!(s.fixed.is_some(), "the socket was not registered");
            s.write_all(b"bye", Duration::from_secs(5)).await.unwrap();
            s.settle().await.unwrap();
            drop(s);
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).expect("no EOF after the drop");
            assert_eq!(&got, b"bye");
        });
    }

    /// A stream dropped while its last send is still going (here one far
    /// larger than the socket buffers, so the kernel takes it in several short
    /// sends) delivers all of it, in order, and then closes the socket.
    #[test]
    fn a_send_in_flight_outlives_its_dropped_stream() {
        on_ring(|| async {
            let (c, s) = pair();
            let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
            s.write_all(&data, Duration::from_secs(10)).await.unwrap();
            drop(s);
            // The reader blocks, so not on this worker, whose ring sends.
            let reader = tokio::task::spawn_blocking(move || {
                let mut c = c;
                c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut got = Vec::new();
                c.read_to_end(&mut got).map(|_| got)
            });
            let got = reader.await.unwrap().expect("no EOF after the send");
            assert!(
                got == data,
                "got {} of {} bytes, or out of order",
                got.len(),
                data.len()
            );
        });
    }

    /// A read dropped while it waits (its timeout) is cancelled; the buffer
    /// comes back intact and the socket's next bytes go to the next read.
    #[test]
    fn a_cancelled_read_keeps_its_buffer() {
        on_ring(|| async {
            let (mut c, s) = pair();
            let mut buf = BytesMut::with_capacity(64);
            buf.extend_from_slice(b"kept:");
            let soon = Instant::now() + Duration::from_millis(50);
            let e = s.read_until(&mut buf, soon).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut);
            assert_eq!(&buf[..], b"kept:");
            c.write_all(b"next").unwrap();
            let far = Instant::now() + Duration::from_secs(5);
            s.read_until(&mut buf, far).await.unwrap();
            assert_eq!(&buf[..], b"kept:next");
        });
    }

    /// The sweeper cancels only the operations past their deadline, and a
    /// deadline earlier than the one it sleeps toward wakes it in time.
    #[test]
    fn the_sweeper_times_out_only_overdue_operations() {
        on_ring(|| async {
            let (mut c1, s1) = pair();
            let (_c2, s2) = pair();
            let started = Instant::now();
            // The long deadline first, so the short one must re-arm the sweeper.
            let long = async {
                let mut buf = BytesMut::with_capacity(64);
                let far = Instant::now() + Duration::from_secs(30);
                s1.read_until(&mut buf, far).await.map(|_| buf)
            };
            let short = async {
                let mut buf = BytesMut::with_capacity(64);
                let soon = Instant::now() + Duration::from_millis(100);
                let r = s2.read_until(&mut buf, soon).await;
                // Once it has timed out, the long read is still waiting.
                c1.write_all(b"still here").unwrap();
                r
            };
            let (long, short) = tokio::join!(long, short);
            assert_eq!(short.unwrap_err().kind(), io::ErrorKind::TimedOut);
            let waited = started.elapsed();
            assert!(waited >= Duration::from_millis(100), "{waited:?}");
            assert!(waited < Duration::from_secs(10), "{waited:?}");
            assert_eq!(&long.unwrap()[..], b"still here");
        });
    }
}
