//! [`Timeouts`]: how long S3 requests may take, so a stalled S3 cannot hold a request forever.
//!
//! [`client`](super::client) sets a connect timeout and a per-attempt timeout; requests that
//! carry or fetch a body get `attempt + bytes / rate_min` instead ([`Timeouts::for_body`], set
//! per request by [`super::objects`]), and reading a body is bounded the same way (the SDK's
//! attempt timeout ends when the response head arrives). The SDK retries a timed-out attempt
//! like any transient failure; a stop does not wait for any of it.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;

/// How long S3 requests may take (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a connection.
    pub connect: Duration,
    /// One attempt of a request without a large body (HEAD, LIST, small PUT and GET).
    pub attempt: Duration,
    /// The slowest transfer rate tolerated for a body, in bytes per second: a request with a
    /// body of `n` bytes may take `attempt + n / rate_min_bytes_s`.
    pub rate_min_bytes_s: u64,
}

impl Default for Timeouts {
    /// 5 s to connect, 20 s per attempt, bodies at 1 MiB/s at least.
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            attempt: Duration::from_secs(20),
            rate_min_bytes_s: 1 << 20,
        }
    }
}

impl Timeouts {
    /// The SDK configuration of these timeouts.
    pub fn config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .operation_attempt_timeout(self.attempt)
            .build()
    }

    /// How long one attempt carrying or fetching `bytes` may take.
    pub fn for_body(&self, bytes: u64) -> Duration {
        let rate = self.rate_min_bytes_s.max(1);
        self.attempt
            .saturating_add(Duration::from_secs(bytes / rate))
            .saturating_add(Duration::from_millis((bytes % rate) * 1000 / rate))
    }

    /// The timeouts `client` was built with ([`Timeouts::default`] for what it lacks).
    pub fn of(client: &Client) -> Timeouts {
        let defaults = Timeouts::default();
        let config = client.config().timeout_config();
        Timeouts {
            connect: config
                .and_then(TimeoutConfig::connect_timeout)
                .unwrap_or(defaults.connect),
            attempt: config
                .and_then(TimeoutConfig::operation_attempt_timeout)
                .unwrap_or(defaults.attempt),
            rate_min_bytes_s: defaults.rate_min_bytes_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_timeouts_grow_with_the_body() {
        let t = Timeouts {
            connect: Duration::from_secs(1),
            attempt: Duration::from_secs(10),
            rate_min_bytes_s: 1 << 20,
        };
        assert_eq!(t.for_body(0), Duration::from_secs(10));
        assert_eq!(t.for_body(32 << 20), Duration::from_secs(42));
        assert_eq!(t.for_body(1 << 19), Duration::from_millis(10_500));
        let zero = Timeouts {
            rate_min_bytes_s: 0,
            ..t
        };
        assert!(zero.for_body(u64::MAX) > Duration::from_secs(10));
        let config = t.config();
        assert_eq!(config.connect_timeout(), Some(Duration::from_secs(1)));
        assert_eq!(
            config.operation_attempt_timeout(),
            Some(Duration::from_secs(10))
        );
    }
}
