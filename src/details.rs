//! Plan details in flight. A plan stored from any source asks the Console for its review
//! details once, off the request path; its notification waits for them at most
//! [`WAIT_FOR_DETAILS`] after the plan was stored, so it can say what the plan is about, and goes
//! as before when they are late. Nothing waits while no Console connection works.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::events::CoreEvent;
use crate::outbox::{Notice, NotificationAction, Notifier, NotifyError};
use crate::store::{PlanRecord, Store};

/// How long after a plan was stored its notification waits for the plan's details.
pub const WAIT_FOR_DETAILS: chrono::Duration = chrono::Duration::seconds(2);

/// Which plans' details are being fetched, and the queue of requests the Console side reads.
#[derive(Debug, Clone, Default)]
pub struct DetailsBoard(Arc<Board>);

#[derive(Debug, Default)]
struct Board {
    /// A Console connection reads the requests.
    connected: AtomicBool,
    /// The connection may answer (a URL and a token it has not refused): without it nothing
    /// is asked for, and no notification waits.
    active: AtomicBool,
    fetching: Mutex<HashSet<String>>,
    arrived: Condvar,
    requests: Mutex<Option<mpsc::UnboundedSender<String>>>,
}

impl DetailsBoard {
    /// A plan was stored: its details are asked for, and its notification will wait for them.
    pub fn expect(&self, plan_id: &str) {
        if !self.0.connected.load(Ordering::SeqCst) || !self.0.active.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(mut fetching) = self.0.fetching.lock() {
            fetching.insert(plan_id.to_owned());
        }
        if !self.request(plan_id) {
            self.done(plan_id);
        }
    }

    /// Asks for a plan's details without anyone waiting (a refresh). `false` when no
    /// Console connection reads requests.
    pub fn request(&self, plan_id: &str) -> bool {
        let requests = self.0.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        requests.as_ref().is_some_and(|tx| tx.send(plan_id.to_owned()).is_ok())
    }

    /// The details of `plan_id` came (or will not come): whoever waits for them goes on.
    pub fn done(&self, plan_id: &str) {
        if let Ok(mut fetching) = self.0.fetching.lock() {
            if fetching.remove(plan_id) {
                self.0.arrived.notify_all();
            }
        }
    }

    /// Blocks until the details of `plan_id` are in, or `until`. Blocking: the outbox thread's.
    pub fn wait(&self, plan_id: &str, until: DateTime<Utc>) {
        let Ok(mut fetching) = self.0.fetching.lock() else { return };
        while fetching.contains(plan_id) {
            let Ok(left) = (until - Utc::now()).to_std() else { return };
            match self.0.arrived.wait_timeout(fetching, left) {
                Ok((guard, _)) => fetching = guard,
                Err(_) => return,
            }
        }
    }

    /// The Console side reads the requests from now on.
    pub fn connect(&self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.0.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tx);
        self.0.connected.store(true, Ordering::SeqCst);
        rx
    }

    /// Whether the connection may answer now (set as its state changes).
    pub fn set_active(&self, active: bool) {
        self.0.active.store(active, Ordering::SeqCst);
    }

    /// No Console connection works now: nothing waits for details.
    pub fn disconnect(&self) {
        self.0.connected.store(false, Ordering::SeqCst);
        self.0.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Ok(mut fetching) = self.0.fetching.lock() {
            fetching.clear();
        }
        self.0.arrived.notify_all();
    }
}

/// A notifier that tells of a new plan with its details when they come in time: it waits on
/// the board, then reads the details for the plan's headline. Everything else goes straight through.
#[derive(Debug)]
pub struct WithDetails {
    inner: Arc<dyn Notifier>,
    board: DetailsBoard,
    store: Store,
}

impl WithDetails {
    pub fn new(inner: Arc<dyn Notifier>, board: DetailsBoard, store: Store) -> WithDetails {
        WithDetails { inner, board, store }
    }
}

impl Notifier for WithDetails {
    fn attach(
        &self,
        events: &tokio::sync::broadcast::Sender<CoreEvent>,
        actions: &mpsc::UnboundedSender<NotificationAction>,
    ) {
        self.inner.attach(events, actions);
    }

    fn detach(&self) {
        self.inner.detach();
    }

    fn plan_pending(&self, plan: &PlanRecord) -> Result<Notice, NotifyError> {
        self.board.wait(&plan.plan_id, plan.received_at + WAIT_FOR_DETAILS);
        if !plan.headline.is_empty() {
            return self.inner.plan_pending(plan);
        }
        // The plan may not be written yet (its arrival is being settled): its details are.
        match self.store.details(&plan.plan_id) {
            Ok(Some(details)) => self.inner.plan_pending(&PlanRecord { headline: details.headline(), ..plan.clone() }),
            _ => self.inner.plan_pending(plan),
        }
    }

    fn escalate(&self, plan: &PlanRecord) -> Result<Notice, NotifyError> {
        self.inner.escalate(plan)
    }

    fn summarize_held(&self, count: usize) -> Result<Notice, NotifyError> {
        self.inner.summarize_held(count)
    }

    fn escalation_after(&self) -> Option<chrono::Duration> {
        self.inner.escalation_after()
    }

    fn status(&self) -> Option<String> {
        self.inner.status()
    }

    fn withdraw(&self, plan_id: &str) {
        self.inner.withdraw(plan_id);
    }

    fn set_preferences(&self, prefs: &crate::config::NotificationSettings) {
        self.inner.set_preferences(prefs);
    }

    fn mute_until(&self, until: Option<DateTime<Utc>>) {
        self.inner.mute_until(until);
    }

    fn muted_until(&self) -> Option<DateTime<Utc>> {
        self.inner.muted_until()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_when_the_details_come_or_at_its_deadline_and_nothing_waits_unconnected() {
        let board = DetailsBoard::default();
        board.expect("p");
        board.wait("p", Utc::now() + chrono::Duration::seconds(30));
        let mut requests = board.connect();
        board.expect("p");
        assert!(requests.try_recv().is_err(), "nothing is asked for while no Console may answer");
        board.set_active(true);
        board.expect("p");
        assert_eq!(requests.try_recv().ok().as_deref(), Some("p"));
        let b = board.clone();
        let answer = std::thread::spawn(move || b.done("p"));
        board.wait("p", Utc::now() + chrono::Duration::seconds(30));
        answer.join().unwrap();
        board.expect("q");
        assert_eq!(requests.try_recv().ok().as_deref(), Some("q"));
        board.wait("q", Utc::now() + chrono::Duration::milliseconds(50));
        board.disconnect();
        board.expect("r");
        assert!(requests.try_recv().is_err(), "nothing is asked for without a connection");
    }
}
