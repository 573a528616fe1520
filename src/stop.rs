//! A request to stop, passed in like the clock: the app
//! turns SIGINT and SIGTERM into one, and the engines that must end
//! cleanly (restore and copy finish the batches in flight and close their
//! undo archive; export abandons its archive) look at it instead of being
//! dropped midway.

use tokio::sync::watch;

/// The engines' side: has a stop been asked for?
#[derive(Clone, Debug)]
pub struct Stop(watch::Receiver<bool>);

/// The asking side.
#[derive(Debug)]
pub struct StopHandle(watch::Sender<bool>);

impl Stop {
    /// A stop and the handle that requests it.
    pub fn new() -> (StopHandle, Stop) {
        let (tx, rx) = watch::channel(false);
        (StopHandle(tx), Stop(rx))
    }

    /// A stop that is never requested (library callers, tests).
    pub fn never() -> Stop {
        Stop::new().1
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once a stop is requested; never, if it cannot be.
    pub async fn requested(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|asked| *asked).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Default for Stop {
    fn default() -> Self {
        Stop::never()
    }
}

impl StopHandle {
    pub fn request(&self) {
        self.0.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_is_seen_by_every_clone_and_never_stays_pending() {
        let (handle, stop) = Stop::new();
        let other = stop.clone();
        assert!(!stop.is_requested());
        let waiting = tokio::spawn(async move { other.requested().await });
        handle.request();
        waiting.await.unwrap();
        assert!(stop.is_requested());
        let never = Stop::never();
        let timed_out =
            tokio::time::timeout(std::time::Duration::from_millis(20), never.requested()).await;
        assert!(timed_out.is_err() && !never.is_requested());
    }
}
