//! One client connection's lifetime: served until the client closes it, until
//! it has been idle for the idle timeout, or until shutdown.
//!
//! hyper bounds how long HTTP/1 headers may take, but nothing of its own
//! closes a connection that never sends a byte (the HTTP/1-or-2 sniffing of
//! `hyper_util`'s auto server waits forever) or an HTTP/2 connection that
//! answers pings and sends no request. So each connection carries an
//! [`Activity`]: how many of its requests are in flight and since when none
//! has been. A connection with no request in flight for the idle timeout is
//! shut down gracefully (HTTP/2 gets a GOAWAY); one with a request in flight
//! never is, however long the upstream takes: that is the upstream
//! timeout's business.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The requests of one connection: how many are in flight, and when the last
/// one ended (or the connection opened).
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` at which `in_flight` last dropped to zero.
    idle_since_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        })
    }

    /// Marks a request in flight until the returned guard is dropped (which
    /// for an answer is when its body has been sent or abandoned).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// How long the connection has had no request in flight, or `None` while
    /// one is.
    fn idle_for(&self, now: Instant) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.opened + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(now.saturating_duration_since(since))
    }

    /// Resolves once the connection has been idle for `timeout`.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let now = Instant::now();
            let wait = match self.idle_for(now) {
                Some(idle) if idle >= timeout => return,
                Some(idle) => timeout - idle,
                // A request ending restarts the count: look again after a
                // full timeout at the latest.
                None => timeout,
            };
            tokio::time::sleep_until(now + wait).await;
        }
    }
}

/// A request in flight on a connection; see [`Activity::begin`].
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl crate::body::Carried for InFlight {}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = u64::try_from(activity.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Stored before the count drops, so a watcher that sees zero in
        // flight also sees when that began.
        activity.idle_since_ms.fetch_max(now, Ordering::AcqRel);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves when a connection should be shut down gracefully (with hyper's
/// `Connection::graceful_shutdown`, after which it finishes what it has in
/// flight): once it has been idle for `idle_timeout`, or when `shutdown`
/// turns true. Says which.
pub async fn closing(
    activity: Arc<Activity>,
    idle_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> &'static str {
    tokio::select! {
        biased;
        () = activity.idle(idle_timeout) => "idle",
        _ = shutdown.wait_for(|stop| *stop) => "shutdown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_requests_is_idle_after_the_timeout() {
        let activity = Activity::new();
        let started = Instant::now();
        activity.idle(Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_holds_the_connection_open() {
        let activity = Activity::new();
        let request = activity.begin();
        let idle = tokio::time::timeout(
            Duration::from_secs(60),
            activity.idle(Duration::from_secs(5)),
        );
        assert!(idle.await.is_err(), "idle while a request was in flight");
        drop(request);
        let ended = Instant::now();
        activity.idle(Duration::from_secs(5)).await;
        assert_eq!(
            ended.elapsed(),
            Duration::from_secs(5),
            "counted from when the request ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_count_restarts_when_a_request_ends() {
        let activity = Activity::new();
        tokio::time::sleep(Duration::from_secs(4)).await;
        drop(activity.begin());
        let ended = Instant::now();
        activity.idle(Duration::from_secs(5)).await;
        assert_eq!(ended.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn overlapping_requests_keep_it_busy_until_the_last_ends() {
        let activity = Activity::new();
        let first = activity.begin();
        let second = activity.begin();
        drop(first);
        assert_eq!(activity.idle_for(Instant::now()), None);
        drop(second);
        assert_eq!(activity.idle_for(Instant::now()), Some(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_closes_after_the_timeout() {
        let activity = Activity::new();
        let (_stop, stopped) = watch::channel(false);
        let started = Instant::now();
        let why = closing(activity, Duration::from_secs(7), stopped).await;
        assert_eq!(why, "idle");
        assert_eq!(started.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_closes_a_busy_connection() {
        let activity = Activity::new();
        let _request = activity.begin();
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = stop.send(true);
        });
        let started = Instant::now();
        let why = closing(activity, Duration::from_secs(7), stopped).await;
        assert_eq!(why, "shutdown");
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
