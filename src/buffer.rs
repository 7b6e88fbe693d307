//! Read buffers: a per-worker stack of spare 16 KiB buffers that idle
//! connections give back and the next ones take, and their counts for `/metrics`.
//! While the worker is busy the stack holds as many as its load cycles
//! through (500 HTTP/2 streams take two each); what stayed unused for a second
//! goes back to the allocator, and the allocator's free pages to the kernel,
//! so that RSS returns near its baseline once a burst is over.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;

/// Read buffers grow by this much when nearly full.
pub const READ_CHUNK: usize = 16 << 10;

/// Released read buffers a worker thread keeps for reuse however long they
/// stay unused (1 MiB of 16 KiB buffers).
const SPARE_MIN: usize = 64;

/// Most a worker thread keeps while busy (64 MiB); those beyond `SPARE_MIN`
/// that a whole `DECAY_EVERY` did not use are freed.
const SPARE_MAX: usize = 4096;

/// How often the stack sheds the buffers its load did not need.
const DECAY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// After this many buffers were freed (1 MiB), the allocator is asked to give
/// its free pages back to the kernel (see `trim`).
const TRIM_EVERY: usize = 64;

thread_local! {
    /// Read buffers given back by idle connections, handed to the next connection that
    /// needs one: released buffers go back to the allocator in 16 KiB holes among other
    /// allocations, which it reuses poorly (most of a connection's memory does not
    /// come back); a per-worker stack reuses them whole, as HAProxy's buffer pools do.
    static SPARE: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The stack's lowest length since the last decay: that many were not needed.
    static LOW: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// The decay task runs on this thread.
    static DECAYING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// One thread's buffer counts. Each thread writes only its own (no cache line
/// shared between workers on the request path), with plain loads and stores
/// rather than locked read-modify-writes, since no other thread writes them; a
/// scrape sums them all.
#[derive(Default)]
struct BufferCounts {
    /// Buffers on this thread's spare stack.
    spare: AtomicUsize,
    /// Buffers `take_buffer` had to allocate (the spare stack was empty).
    allocated: AtomicU64,
}

static ALL_COUNTS: Mutex<Vec<Arc<BufferCounts>>> = Mutex::new(Vec::new());

thread_local! {
    static COUNTS: Arc<BufferCounts> = {
        let c = Arc::new(BufferCounts::default());
        ALL_COUNTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(c.clone());
        c
    };
}

/// Over all threads: (buffers on spare stacks now, buffers allocated by
/// `take_buffer` so far). For `/metrics`.
pub fn buffer_counts() -> (usize, u64) {
    let all = ALL_COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    all.iter().fold((0, 0), |(s, a), c| {
        (
            s + c.spare.load(Ordering::Relaxed),
            a + c.allocated.load(Ordering::Relaxed),
        )
    })
}

/// An empty read buffer of at least `READ_CHUNK` bytes: a spare one if the worker has one.
pub fn take_buffer() -> BytesMut {
    let spare = SPARE.with(|s| {
        let mut s = s.borrow_mut();
        let b = s.pop();
        LOW.with(|l| l.set(l.get().min(s.len())));
        b
    });
    COUNTS.with(|c| match spare {
        Some(b) => {
            let n = c.spare.load(Ordering::Relaxed);
            c.spare.store(n.saturating_sub(1), Ordering::Relaxed);
            b
        }
        None => {
            let n = c.allocated.load(Ordering::Relaxed);
            c.allocated.store(n + 1, Ordering::Relaxed);
            BytesMut::with_capacity(READ_CHUNK)
        }
    })
}

/// Room for the next read. A buffer that was read from is left with only the tail
/// of its allocation: once empty it is rewound to the whole of it, which is free
/// when nothing else refers to it. Otherwise a response landing on the last
/// kilobyte or so of the buffer takes two reads and goes out as two writes (two
/// TCP segments, two TLS records). A buffer with less than 1 KiB of room grows.
pub fn make_room(buf: &mut BytesMut) {
    if buf.is_empty() && buf.try_reclaim(READ_CHUNK) {
        return;
    }
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_CHUNK);
    }
}

/// Gives `buf` back for reuse (its contents are discarded), leaving an empty,
/// unallocated buffer in its place. Only buffers of the standard size are kept, so
/// the spare stack stays within `SPARE_MAX` × `READ_CHUNK`: one that grew (a chunked
/// relay's 64 KiB batch, a large write copied for the ring) goes back to the
/// allocator.
pub fn give_buffer(buf: &mut BytesMut) {
    let mut b = std::mem::take(buf);
    b.clear();
    // Unique (no request or response bytes still refer to it): this reclaims the
    // whole allocation without copying or allocating.
    if !b.try_reclaim(READ_CHUNK) || b.capacity() > READ_CHUNK {
        return;
    }
    let decays = decay_task_runs();
    let kept = SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < if decays { SPARE_MAX } else { SPARE_MIN } {
            s.push(b);
            COUNTS.with(|c| {
                let n = c.spare.load(Ordering::Relaxed);
                c.spare.store(n + 1, Ordering::Relaxed);
            });
            true
        } else {
            false
        }
    });
    if !kept {
        freed();
    }
}

/// Whether this thread's stack may grow past `SPARE_MIN`: only where a decay
/// task can run beside it (each worker is a current-thread runtime; elsewhere,
/// `LB_THREADS=shared` or tests, the stack stays at `SPARE_MIN`). Starts it.
fn decay_task_runs() -> bool {
    if DECAYING.with(|d| d.get()) {
        return true;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread => {
            DECAYING.with(|d| d.set(true));
            LOW.with(|l| l.set(usize::MAX));
            h.spawn(decay());
            true
        }
        _ => false,
    }
}

/// Every `DECAY_EVERY`, frees the spare buffers beyond `SPARE_MIN` that the
/// last period did not take; ends once the stack is back to `SPARE_MIN`.
async fn decay() {
    loop {
        tokio::time::sleep(DECAY_EVERY).await;
        let (freed, left) = SPARE.with(|s| {
            let mut s = s.borrow_mut();
            let unused = LOW.with(|l| l.get()).min(s.len());
            let n = unused.saturating_sub(SPARE_MIN);
            // The oldest first: the stack is taken from its top.
            s.drain(..n);
            LOW.with(|l| l.set(s.len()));
            (n, s.len())
        });
        if freed > 0 {
            COUNTS.with(|c| c.spare.store(left, Ordering::Relaxed));
            trim();
        }
        if left <= SPARE_MIN {
            DECAYING.with(|d| d.set(false));
            return;
        }
    }
}

thread_local! {
    /// Buffers this thread freed since its last `malloc_trim`.
    static FREED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts a buffer freed (dropped by the caller); every `TRIM_EVERY`, gives
/// the allocator's free pages back to the kernel.
fn freed() {
    let n = FREED.with(|f| {
        let n = f.get() + 1;
        f.set(n % TRIM_EVERY);
        n
    });
    if n == TRIM_EVERY {
        trim();
    }
}

thread_local! {
    /// A collect is already due on this thread.
    static TRIM_DUE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How long after a burst of frees the allocator is asked to give memory back:
/// one collect for the whole burst, and at most a few a second under steady
/// churn (500 HTTP/2 streams take and free more buffers than the spare stack
/// keeps; a collect per 64 frees cost 1.5% of a worker there).
const TRIM_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// Returns the allocator's free memory to the kernel soon, on this thread
/// (each worker is a current-thread runtime, so the task runs here, where the
/// buffers were freed); at once elsewhere (`LB_THREADS=shared`, tests).
fn trim() {
    if TRIM_DUE.with(|d| d.replace(true)) {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread => {
            h.spawn(async {
                tokio::time::sleep(TRIM_DELAY).await;
                TRIM_DUE.with(|d| d.set(false));
                collect();
            });
        }
        _ => {
            TRIM_DUE.with(|d| d.set(false));
            collect();
        }
    }
}

/// mimalloc (lb's allocator) purges freed pages only when the thread
/// allocates again, which an idle worker does not; glibc (unit tests) keeps
/// freed chunks mapped except at the top of the heap.
fn collect() {
    // SAFETY: both only release free pages of this thread's heap; no pointer is involved.
    unsafe {
        libmimalloc_sys::mi_collect(true);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        libc::malloc_trim(0);
    }
}

/// A spare buffer that goes back to the worker's stack when dropped.
pub struct SpareBuffer(pub BytesMut);

impl SpareBuffer {
    pub fn take() -> SpareBuffer {
        SpareBuffer(take_buffer())
    }
}

impl std::ops::Deref for SpareBuffer {
    type Target = BytesMut;
    fn deref(&self) -> &BytesMut {
        &self.0
    }
}

impl std::ops::DerefMut for SpareBuffer {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.0
    }
}

impl Drop for SpareBuffer {
    fn drop(&mut self) {
        give_buffer(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Buf, BufMut};

    /// An emptied buffer gets its whole allocation back, in place: the next
    /// response is read whole, not cut at the end of the allocation.
    #[test]
    fn an_emptied_buffer_is_rewound_in_place() {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let start = buf.as_ptr();
        buf.put_bytes(b'x', READ_CHUNK - 1100);
        buf.advance(READ_CHUNK - 1100);
        assert_eq!(buf.capacity(), 1100);
        make_room(&mut buf);
        assert_eq!(buf.capacity(), READ_CHUNK);
        assert_eq!(buf.as_ptr(), start, "rewound, not reallocated");
    }

    /// A buffer that grew is freed, not kept: the spare stack holds standard
    /// buffers only.
    #[test]
    fn grown_buffers_are_not_kept_as_spares() {
        SPARE.with(|s| s.borrow_mut().clear());
        let mut big = BytesMut::with_capacity(READ_CHUNK);
        big.put_bytes(b'x', 100 << 10);
        give_buffer(&mut big);
        assert_eq!(SPARE.with(|s| s.borrow().len()), 0);
        let mut std = take_buffer();
        std.put_bytes(b'x', 1000);
        give_buffer(&mut std);
        assert_eq!(SPARE.with(|s| s.borrow().len()), 1);
        assert_eq!(take_buffer().capacity(), READ_CHUNK);
    }

    /// While a head split off the buffer is still alive, rewinding would
    /// overwrite it: the buffer keeps its tail, and grows only when less than
    /// 1 KiB is left.
    #[test]
    fn a_buffer_still_shared_is_not_rewound() {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        buf.put_bytes(b'x', READ_CHUNK - 1100);
        let head = buf.split().freeze();
        make_room(&mut buf);
        assert_eq!(buf.capacity(), 1100);
        assert!(head.iter().all(|&b| b == b'x'));
        buf.put_bytes(b'y', 200);
        buf.advance(200);
        make_room(&mut buf);
        assert!(buf.capacity() >= READ_CHUNK);
        assert!(head.iter().all(|&b| b == b'x'));
    }
}
