//! [`Backoff`]: the one retry delay of every loop that waits out a failure (EventBridge
//! PutEvents, S3 shipping rounds, artifact uploads, `logbook tail` reconnects).
//!
//! Capped exponential backoff with "equal jitter": the `n`th consecutive retry waits a random
//! time in `[d/2, d]` where `d = min(base * 2^n, cap)`. Jitter spreads the retries of many
//! clients hit by the same outage; the lower half bound keeps the delay growing. A success calls
//! [`Backoff::reset`], so the next failure starts again at `base`.
//!
//! Invariants: every delay is at most `cap` and at least `min(base, cap) / 2`; the attempt
//! counter saturates (no overflow however long an outage lasts).

use std::time::Duration;

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starting at `base`, never above `cap`.
    pub const fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The next delay (jittered), advancing the attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(jitter_unit())
    }

    /// The next delay given `unit` in `[0, 1]` as the random draw, advancing the attempt
    /// (deterministic, for tests).
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let d = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = d / 2;
        let jitter = Duration::try_from_secs_f64(half.as_secs_f64() * unit.clamp(0.0, 1.0))
            .unwrap_or(half)
            .min(half);
        let delay = half.saturating_add(jitter);
        debug_assert!(delay <= self.cap);
        delay
    }

    /// The longest the next delay can be (`min(base * 2^attempt, cap)`), without advancing.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(30));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Consecutive failures so far (delays handed out since the last reset).
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// After a success: the next failure starts again at `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A random draw in `[0, 1)` without a random crate (std's randomly keyed hasher).
pub fn jitter_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        assert_eq!(b.next_delay_with(1.0), Duration::from_millis(100));
        assert_eq!(b.next_delay_with(0.0), Duration::from_millis(100)); // 200 / 2
        assert_eq!(b.next_delay_with(1.0), Duration::from_millis(400));
        assert_eq!(b.attempts(), 3);
        while b.ceiling() < Duration::from_secs(10) {
            assert!(b.next_delay() <= b.ceiling());
        }
        for _ in 0..40 {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_secs(5) && d <= Duration::from_secs(10),
                "{d:?}"
            );
        }
        assert_eq!(b.next_delay_with(1.0), Duration::from_secs(10));
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.ceiling(), Duration::from_millis(100));
        assert_eq!(b.next_delay_with(1.0), Duration::from_millis(100));
        let u = jitter_unit();
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn a_long_outage_neither_overflows_nor_passes_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..10_000 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
        assert_eq!(b.attempts(), 10_000);
        let mut huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert!(huge.next_delay_with(1.0) <= Duration::MAX);
        assert!(huge.next_delay_with(1.0) >= Duration::MAX / 2);
    }
}
