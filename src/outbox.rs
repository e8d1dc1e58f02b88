//! Work after the acknowledgement: a dedicated thread drives every outbox entry to done.
//!
//! Entries are durable before the sender hears 200, so an entry left unfinished by a crash is
//! picked up on the next start. Notification calls block (D-Bus), which is why this is a thread
//! and not a task on the async runtime.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::broadcast;

use crate::events::CoreEvent;
use crate::store::{PlanRecord, Store};

/// Tells the user that plans await approval. Implementations may block; they run on the outbox thread.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// A plan awaits approval and the user has not been told yet.
    fn plan_pending(&self, plan: &PlanRecord) -> Result<(), NotifyError>;
    /// Time passed or state changed (snoozes ending, escalations due, plans handled).
    fn tick(&self, _store: &Store) -> Result<(), NotifyError> {
        Ok(())
    }
    /// Why notifications fail right now, if they do.
    fn status(&self) -> Option<String> {
        None
    }
    /// The plan was handled or snoozed: take its notification back where the platform allows.
    /// Must not block (called from async code).
    fn withdraw(&self, _plan_id: &str) {}
    /// New notification preferences (quiet hours, escalation, coalescing). Must not block.
    fn set_preferences(&self, _prefs: &crate::config::NotificationSettings) {}
    /// Mute until the given time (`None`: unmute). Must not block.
    fn mute_until(&self, _until: Option<chrono::DateTime<Utc>>) {}
    /// Until when notifications are muted.
    fn muted_until(&self) -> Option<chrono::DateTime<Utc>> {
        None
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NotifyError(pub String);

/// Writes one log line per pending plan: the headless default before native notifications.
#[derive(Debug, Default)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn plan_pending(&self, plan: &PlanRecord) -> Result<(), NotifyError> {
        tracing::info!(
            plan = %plan.plan_id, run = %plan.run_id, organization = %plan.organization_id,
            "remediation plan awaits approval"
        );
        Ok(())
    }
}

/// Wakes the outbox thread; cheap to clone and to call from async code.
#[derive(Debug, Clone)]
pub struct OutboxKick(Arc<Mutex<Option<SyncSender<()>>>>);

impl OutboxKick {
    pub fn kick(&self) {
        if let Ok(g) = self.0.lock() {
            if let Some(tx) = g.as_ref() {
                let _ = tx.try_send(());
            }
        }
    }

    fn close(&self) {
        if let Ok(mut g) = self.0.lock() {
            g.take();
        }
    }
}

/// The running outbox thread.
#[derive(Debug)]
pub struct OutboxWorker {
    kick: OutboxKick,
    thread: Option<JoinHandle<()>>,
}

/// How often the worker wakes without a kick, for time-based work (snoozes, escalations, retries).
const TICK: Duration = Duration::from_millis(500);

impl OutboxWorker {
    pub fn start(
        store: Store,
        notifier: Arc<dyn Notifier>,
        events: broadcast::Sender<CoreEvent>,
    ) -> std::io::Result<OutboxWorker> {
        let (tx, rx) = mpsc::sync_channel(1);
        let kick = OutboxKick(Arc::new(Mutex::new(Some(tx))));
        let thread = std::thread::Builder::new()
            .name("zof-outbox".into())
            .spawn(move || run(&store, notifier.as_ref(), &events, &rx))?;
        kick.kick();
        Ok(OutboxWorker { kick, thread: Some(thread) })
    }

    pub fn kick(&self) -> OutboxKick {
        self.kick.clone()
    }

    /// Finishes the current batch and stops.
    pub fn stop(mut self) {
        self.kick.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for OutboxWorker {
    fn drop(&mut self) {
        self.kick.close();
    }
}

fn run(store: &Store, notifier: &dyn Notifier, events: &broadcast::Sender<CoreEvent>, wake: &Receiver<()>) {
    let mut backoff = TICK;
    loop {
        match drain(store, notifier, events) {
            Ok(()) => backoff = TICK,
            Err(e) => {
                tracing::warn!(error = %e, "outbox work failed; will retry");
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        if let Err(e) = notifier.tick(store) {
            tracing::warn!(error = %e, "notification upkeep failed");
        }
        match wake.recv_timeout(backoff) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // One last pass so entries acknowledged just before shutdown are not left for the next start.
    let _ = drain(store, notifier, events);
}

#[derive(Debug, thiserror::Error)]
enum DrainError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

fn drain(store: &Store, notifier: &dyn Notifier, events: &broadcast::Sender<CoreEvent>) -> Result<(), DrainError> {
    let entries = store.outbox()?;
    if entries.is_empty() {
        return Ok(());
    }
    for entry in entries {
        // The claim may not be written yet: this entry's turn comes on a later pass.
        let Some(event) = store.event(&entry.event_id)? else {
            continue;
        };
        // The claim was won by another delivery of the same id: this entry carries no work.
        if event.outbox_seq != Some(entry.seq) {
            store.complete_outbox(entry.seq)?;
            continue;
        }
        let plan = match store.plan(&entry.plan_id)? {
            Some(plan) => plan,
            None => store.ensure_plan(&event)?,
        };
        if plan.is_open() && plan.notified_at.is_none() {
            if let Err(e) = notifier.plan_pending(&plan) {
                store.retry_outbox(&entry)?;
                return Err(e.into());
            }
            store.update_plan(&plan.plan_id, |p| p.notified_at = Some(Utc::now()))?;
            let _ = events.send(CoreEvent::PlanChanged { plan_id: plan.plan_id.clone() });
        }
        store.complete_outbox(entry.seq)?;
    }
    // Done-marks are made durable here, on this thread, so a restart does not repeat them.
    store.flush_blocking()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{plan_pending_body, Envelope};
    use crate::verify::Fingerprint;

    #[derive(Debug, Default)]
    struct Told(Mutex<Vec<String>>);
    impl Notifier for Told {
        fn plan_pending(&self, plan: &PlanRecord) -> Result<(), NotifyError> {
            self.0.lock().unwrap().push(plan.plan_id.clone());
            Ok(())
        }
    }

    #[test]
    fn a_claim_whose_plan_was_lost_gets_its_plan_rebuilt_and_notified() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let env = Envelope::parse(&plan_pending_body("e1", Utc::now(), "p1", "o", "r")).unwrap();
        store.record_event(&env, b"{}", Utc::now(), &Fingerprint("f".into())).unwrap();
        // The crash cut between the claim and the plan write.
        store.update_plan("p1", |_| {}).unwrap();
        store.remove_plan_for_test("p1");
        let told = Told::default();
        let (tx, _rx) = broadcast::channel(8);
        drain(&store, &told, &tx).unwrap();
        assert_eq!(*told.0.lock().unwrap(), vec!["p1"]);
        assert!(store.plan("p1").unwrap().unwrap().notified_at.is_some());
        assert_eq!(store.outbox_len(), 0);
    }
}
