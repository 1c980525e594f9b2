//! [`Stop`]: how the shipper's tasks hear that the process is stopping, so each can finish or
//! abandon its in-flight work cleanly (abort a multipart upload, leave progress where the last
//! success put it) within the grace period instead of being dropped mid-request.
//!
//! Invariant: once set, a stop stays set; a [`Stop::never`] is never set (a one-off command).

use tokio::sync::watch;

/// The receiving side (cheap to clone).
#[derive(Debug, Clone)]
pub struct Stop(Option<watch::Receiver<bool>>);

/// The sending side: [`StopSignal::set`] (or dropping it) stops every [`Stop`] made with it.
#[derive(Debug)]
pub struct StopSignal(watch::Sender<bool>);

impl Stop {
    /// A signal and its receiver.
    pub fn channel() -> (StopSignal, Stop) {
        let (tx, rx) = watch::channel(false);
        (StopSignal(tx), Stop(Some(rx)))
    }

    /// A stop that never comes.
    pub fn never() -> Stop {
        Stop(None)
    }

    /// Whether the stop was signalled.
    pub fn is_set(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|rx| *rx.borrow() || rx.has_changed().is_err())
    }

    /// Completes once the stop is signalled (never, for [`Stop::never`]).
    pub async fn wait(&mut self) {
        match &mut self.0 {
            // An error means the signal was dropped: that stops too.
            Some(rx) => {
                let _ = rx.wait_for(|stopped| *stopped).await;
            }
            None => std::future::pending::<()>().await,
        }
    }
}

impl StopSignal {
    /// Stops every receiver.
    pub fn set(&self) {
        self.0.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn set_once_stays_set() {
        let (signal, mut stop) = Stop::channel();
        assert!(!stop.is_set());
        signal.set();
        stop.wait().await;
        assert!(stop.is_set());
        assert!(stop.clone().is_set());
        assert!(!Stop::never().is_set());
        let (signal, mut dropped) = Stop::channel();
        drop(signal);
        dropped.wait().await;
        assert!(dropped.is_set());
    }
}
