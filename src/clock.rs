//! A clock read once per task poll on the request path.
//!
//! A proxied request needs the time about seven times (its deadlines, its
//! timings, the upstream pool's idle times), and on a VM's clock each
//! `Instant::now()` is costly (together about 2% of the request's CPU). Inside a connection task's poll ([`Fresh`]) [`now`] reads the clock
//! once and returns that instant until the poll ends, as HAProxy's `now_ms` is
//! read once per loop turn. A poll is short (it returns at the next wait for
//! I/O), so a deadline computed from it is early by microseconds at most.
//! Outside such a poll [`now`] is `Instant::now()`.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// `None`: not inside a [`Fresh`] poll. `Some(None)`: inside one, not read yet.
type Cached = Option<Option<Instant>>;

thread_local! {
    static NOW: Cell<Cached> = const { Cell::new(None) };
}

/// The current instant, as of the first call in this task poll.
pub fn now() -> Instant {
    NOW.with(|c| match c.get() {
        Some(Some(t)) => t,
        Some(None) => {
            let t = Instant::now();
            c.set(Some(Some(t)));
            t
        }
        None => Instant::now(),
    })
}

/// A future whose polls each see one reading of the clock through [`now`].
pub struct Fresh<F>(pub F);

impl<F: Future> Future for Fresh<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let outer = NOW.with(|c| c.replace(Some(None)));
        // SAFETY: the inner future is never moved out of the pinned wrapper.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        let r = inner.poll(cx);
        NOW.with(|c| c.set(outer));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_reading_per_poll_and_none_outside() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, b, c) = Fresh(async {
                let a = now();
                std::thread::sleep(Duration::from_millis(2));
                let b = now();
                // The next poll reads the clock again.
                tokio::time::sleep(Duration::from_millis(2)).await;
                (a, b, now())
            })
            .await;
            assert_eq!(a, b);
            assert!(c >= a + Duration::from_millis(2));
            let d = now();
            std::thread::sleep(Duration::from_millis(2));
            assert!(now() >= d + Duration::from_millis(2));
        });
    }
}
