//! A monotonically increasing counter that blocking threads and async tasks can wait on.
//!
//! The journal keeps two: `visible` (records readers may see; acknowledgement point of `batch`)
//! and `durable` (records fsynced; acknowledgement point of `sync`). Values are exclusive upper
//! bounds: "every offset below this".
//!
//! Invariant: the value only grows; `close` wakes every waiter, and waiters then see
//! `is_closed()` and stop waiting. No wake-up is lost: the advancer stores the value and then
//! takes the mutex the blocking waiters check under; async waiters enable their `Notified`
//! before checking.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Instant;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Watermark {
    value: AtomicU64,
    closed: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
    notify: tokio::sync::Notify,
}

impl Watermark {
    /// A watermark starting at `value`.
    pub fn new(value: u64) -> Self {
        Watermark {
            value: AtomicU64::new(value),
            ..Default::default()
        }
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Raises the value to `value` (never lowers it) and wakes waiters.
    pub fn advance(&self, value: u64) {
        if self.value.fetch_max(value, Ordering::AcqRel) < value {
            self.wake();
        }
    }

    /// Marks the watermark closed and wakes every waiter.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        drop(self.lock.lock().unwrap_or_else(PoisonError::into_inner));
        self.cv.notify_all();
        self.notify.notify_waiters();
    }

    /// Blocks until the value reaches `target`, the watermark closes, or `deadline` passes.
    /// Returns whether the target was reached.
    pub fn wait(&self, target: u64, deadline: Option<Instant>) -> bool {
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.get() >= target {
                return true;
            }
            if self.is_closed() {
                return false;
            }
            guard = match deadline {
                None => self.cv.wait(guard).unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    self.cv
                        .wait_timeout(guard, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Waits asynchronously until the value reaches `target` or the watermark closes.
    /// Returns whether the target was reached.
    pub async fn wait_async(&self, target: u64) -> bool {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.get() >= target {
                return true;
            }
            if self.is_closed() {
                return false;
            }
            notified.await;
        }
    }
}
