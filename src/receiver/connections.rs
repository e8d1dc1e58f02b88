//! The connections the receiver holds open, and when it lets go of them.
//!
//! hyper starts its header-read timer only once it has recognised the protocol, and keeps an
//! HTTP/2 connection without streams for as long as the peer answers pings. So a socket that
//! sends nothing, or one byte, or the HTTP/2 preface and then nothing, would hold a task and a
//! file descriptor forever, and enough of them would starve real deliveries. Here:
//!
//! - a connection with no request in flight is closed once it has been idle for the idle
//!   timeout, counted from the accept for the first request and from the last answer after that;
//! - at most `max` connections are open: a new one closes the one idle the longest to make
//!   room, and when every open connection has a request in flight the new one is refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The open connections, each with its activity, so the longest-idle one can be closed.
#[derive(Debug)]
pub(super) struct Registry {
    max: usize,
    epoch: Instant,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    next_id: u64,
    by_id: HashMap<u64, Arc<Activity>>,
}

/// What the connection's task and its requests share.
#[derive(Debug)]
pub(super) struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// When the connection last went idle, in milliseconds after `epoch`.
    idle_since_ms: AtomicU64,
    /// Asks the connection to close (it is the longest idle and room is needed).
    close: Notify,
}

impl Registry {
    pub(super) fn new(max: usize) -> Arc<Registry> {
        Arc::new(Registry { max: max.max(1), epoch: Instant::now(), open: Mutex::new(Open::default()) })
    }

    /// Registers a new connection, closing the longest-idle one first when `max` are open.
    /// `None` when all are open with requests in flight: the new connection is refused.
    pub(super) fn admit(self: &Arc<Registry>) -> Option<Tracked> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.by_id.len() >= self.max && !close_longest_idle(&mut open) {
            return None;
        }
        let activity = Arc::new(Activity {
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            close: Notify::new(),
        });
        let id = open.next_id;
        open.next_id += 1;
        open.by_id.insert(id, activity.clone());
        Some(Tracked { registry: self.clone(), id, activity })
    }

    /// Closes the longest-idle connection, if any is idle (out of file descriptors, say).
    pub(super) fn make_room(&self) -> bool {
        close_longest_idle(&mut self.open.lock().unwrap_or_else(PoisonError::into_inner))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).by_id.len()
    }
}

/// Asks the connection idle the longest to close and forgets it at once, so its place is free
/// even before its task has run.
fn close_longest_idle(open: &mut Open) -> bool {
    let longest = open
        .by_id
        .iter()
        .filter(|(_, a)| a.in_flight.load(Ordering::SeqCst) == 0)
        .min_by_key(|(id, a)| (a.idle_since_ms.load(Ordering::SeqCst), **id))
        .map(|(id, _)| *id);
    match longest.and_then(|id| open.by_id.remove(&id)) {
        Some(activity) => {
            activity.close.notify_one();
            true
        }
        None => false,
    }
}

/// A registered connection; dropping it (the connection's task ends) frees its place.
#[derive(Debug)]
pub(super) struct Tracked {
    registry: Arc<Registry>,
    id: u64,
    pub(super) activity: Arc<Activity>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.registry.open.lock().unwrap_or_else(PoisonError::into_inner).by_id.remove(&self.id);
    }
}

impl Activity {
    /// When an idle connection is to be closed; `None` while a request is in flight.
    fn idle_deadline(&self, idle_timeout: Duration) -> Option<Instant> {
        (self.in_flight.load(Ordering::SeqCst) == 0)
            .then(|| self.epoch + Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst)) + idle_timeout)
    }
}

/// Marks a request in flight on its connection until dropped (answered, or abandoned).
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Busy {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // The idle time is set before the count drops, so a connection never looks idle since
        // before its last request.
        self.0.idle_since_ms.store(self.0.epoch.elapsed().as_millis() as u64, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's service that keeps its [`Activity`] up to date.
#[derive(Debug, Clone)]
pub(super) struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Counted<S> {
    pub(super) fn new(inner: S, tracked: &Tracked) -> Counted<S> {
        Counted { inner, activity: tracked.activity.clone() }
    }
}

impl<S, R> hyper::service::Service<R> for Counted<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn call(&self, request: R) -> Self::Future {
        let busy = Busy::start(&self.activity);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(busy);
            answer
        })
    }
}

/// Drives `connection` until it ends, it has been idle for `idle_timeout`, or its place is
/// needed. Returning drops the connection, which closes the socket.
pub(super) async fn hold<E: std::fmt::Display>(
    connection: impl std::future::Future<Output = Result<(), E>>,
    tracked: Tracked,
    idle_timeout: Duration,
) {
    tokio::pin!(connection);
    let activity = &tracked.activity;
    loop {
        let check = activity.idle_deadline(idle_timeout).unwrap_or_else(|| Instant::now() + idle_timeout);
        tokio::select! {
            ended = &mut connection => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(check) => {
                if activity.idle_deadline(idle_timeout).is_some_and(|at| at <= Instant::now()) {
                    tracing::debug!("closing a connection idle for {idle_timeout:?}");
                    return;
                }
            }
            () = activity.close.notified() => {
                // A request that arrived since it was chosen finishes; the connection is no
                // longer counted and closes at its idle deadline.
                if activity.in_flight.load(Ordering::SeqCst) == 0 {
                    tracing::debug!("closing the longest-idle connection to make room for a new one");
                    return;
                }
            }
        }
    }
}

/// Accept errors: those of one connection are skipped; others (out of file descriptors) pause
/// the loop, longer each time, and are logged at most once per [`LOG_EVERY`] with a count.
#[derive(Debug)]
pub(super) struct AcceptFailures {
    delay: Duration,
    unlogged: u64,
    logged_at: Option<Instant>,
}

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Default for AcceptFailures {
    fn default() -> Self {
        AcceptFailures { delay: FIRST_PAUSE, unlogged: 0, logged_at: None }
    }
}

impl AcceptFailures {
    /// Whether the error belongs to one connection (it went away before it was accepted).
    pub(super) fn is_per_connection(e: &std::io::Error) -> bool {
        use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
        matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset)
    }

    /// Records a failure and says how long to pause before accepting again.
    pub(super) fn failed(&mut self, e: &std::io::Error) -> Duration {
        self.unlogged += 1;
        if self.logged_at.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            tracing::warn!(error = %e, failures = self.unlogged, "accepting a connection failed; pausing before the next try");
            (self.logged_at, self.unlogged) = (Some(Instant::now()), 0);
        }
        let pause = self.delay;
        self.delay = (self.delay * 2).min(LONGEST_PAUSE);
        pause
    }

    pub(super) fn accepted(&mut self) {
        self.delay = FIRST_PAUSE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets when `t` went idle, in milliseconds after the registry's epoch.
    fn idle_since(t: &Tracked, ms: u64) {
        t.activity.idle_since_ms.store(ms, Ordering::SeqCst);
    }

    fn asked_to_close(t: &Tracked) -> bool {
        futures::FutureExt::now_or_never(t.activity.close.notified()).is_some()
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_makes_room_and_busy_ones_never_do() {
        let registry = Registry::new(3);
        let (a, b, c) = (registry.admit().unwrap(), registry.admit().unwrap(), registry.admit().unwrap());
        // `a` answered a request last: `b` is the one idle the longest.
        for (t, ms) in [(&a, 30), (&b, 10), (&c, 20)] {
            idle_since(t, ms);
        }
        let d = registry.admit().unwrap();
        assert_eq!(registry.len(), 3);
        assert!(asked_to_close(&b));
        assert!(!asked_to_close(&a) && !asked_to_close(&c) && !asked_to_close(&d));
        // With every connection busy, a new one is refused rather than one cut mid-request.
        let busy: Vec<Busy> = [&a, &c, &d].iter().map(|t| Busy::start(&t.activity)).collect();
        assert!(registry.admit().is_none());
        drop(busy);
        drop(b);
        assert_eq!(registry.len(), 3, "a connection already replaced frees no second place");
        drop(a);
        assert_eq!(registry.len(), 2);
    }

    #[tokio::test]
    async fn a_connection_is_idle_from_its_accept_and_from_its_last_answer_never_during_a_request() {
        let registry = Registry::new(8);
        let t = registry.admit().unwrap();
        let timeout = Duration::from_secs(1);
        idle_since(&t, 0);
        assert_eq!(t.activity.idle_deadline(timeout), Some(registry.epoch + timeout));
        let busy = Busy::start(&t.activity);
        assert_eq!(t.activity.idle_deadline(timeout), None, "no deadline while a request is in flight");
        let answered = Instant::now();
        drop(busy);
        let deadline = t.activity.idle_deadline(timeout).unwrap();
        // Kept in whole milliseconds: at most one before the answer.
        assert!(deadline + Duration::from_millis(1) >= answered + timeout, "counted from the answer");
    }

    #[tokio::test]
    async fn accept_failures_back_off_and_are_logged_once_per_interval() {
        let mut failures = AcceptFailures::default();
        let e = std::io::Error::other("too many open files");
        let pauses: Vec<Duration> = (0..9).map(|_| failures.failed(&e)).collect();
        assert_eq!((pauses[0], pauses[8]), (FIRST_PAUSE, LONGEST_PAUSE));
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(failures.unlogged, 8, "only the first of nine failures within the interval is logged");
        failures.logged_at = Instant::now().checked_sub(LOG_EVERY);
        failures.failed(&e);
        assert_eq!(failures.unlogged, 0, "the next interval logs again, with the count");
        failures.accepted();
        assert_eq!(failures.failed(&e), FIRST_PAUSE);
        let gone = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert!(AcceptFailures::is_per_connection(&gone) && !AcceptFailures::is_per_connection(&e));
    }
}
