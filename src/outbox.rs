//! Work after the acknowledgement: a dedicated thread drives every outbox entry to done. For a
//! plan that awaits approval that means telling the user, then writing the pending plan and the
//! delivery's line in the activity log, then removing the entry.
//!
//! Entries are durable before the sender hears 200, so an entry left unfinished by a crash is
//! picked up on the next start. Notification calls block (D-Bus), which is why this is a thread
//! and not a task on the async runtime. Between passes the thread sleeps until it is kicked (an
//! arrival, a person's action, new notification settings) or until the next time-based work falls
//! due (a snooze's end, the end of quiet time, an escalation): an idle receiver never wakes it.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::events::CoreEvent;
use crate::store::{OutboxEntry, PlanFlag, PlanRecord, PlanState, Store, Work};

/// What became of a notification request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The user was told (a notification of its own, or a summary that counts it).
    Shown,
    /// Quiet hours or a mute hold it back; it is summarized when they end.
    Held,
}

/// What the user chose on a notification that changes a plan. A notifier writes no store
/// records: it sends these to the core, which applies them as the panel's own buttons do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationAction {
    /// "Snooze" on a plan's notification.
    Snooze { plan_id: String, minutes: u32 },
}

/// Tells the user that plans await approval. Implementations may block in the methods that
/// return a [`Notice`] (they run on the outbox thread); the others are called from async code
/// and must not block.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Called once by `Application::build`, after the preferences and the mute and before any
    /// other call: where to publish what the user sees, and where to send what the user chose.
    fn attach(
        &self,
        _events: &broadcast::Sender<CoreEvent>,
        _actions: &tokio::sync::mpsc::UnboundedSender<NotificationAction>,
    ) {
    }
    /// Called once when the application stops, from a blocking context: stop background work.
    fn detach(&self) {}
    /// A plan awaits approval and the user has not been told yet.
    fn plan_pending(&self, plan: &PlanRecord) -> Result<Notice, NotifyError>;
    /// A plan still pending after the escalation delay: told once more, urgently.
    fn escalate(&self, plan: &PlanRecord) -> Result<Notice, NotifyError> {
        self.plan_pending(plan)
    }
    /// Quiet time ended with `count` plans held back.
    fn summarize_held(&self, _count: usize) -> Result<Notice, NotifyError> {
        Ok(Notice::Shown)
    }
    /// How long a plan may wait before [`Notifier::escalate`]; `None`: never.
    fn escalation_after(&self) -> Option<chrono::Duration> {
        None
    }
    /// Why notifications fail right now, if they do.
    fn status(&self) -> Option<String> {
        None
    }
    /// The plan was handled or snoozed: take its notification back where the platform allows.
    fn withdraw(&self, _plan_id: &str) {}
    /// New notification preferences (quiet hours, escalation, coalescing).
    fn set_preferences(&self, _prefs: &crate::config::NotificationSettings) {}
    /// Mute until the given time (`None`: unmute). The panel keeps the mute in the store and
    /// `Application::build` hands it back here at start.
    fn mute_until(&self, _until: Option<chrono::DateTime<Utc>>) {}
    /// Until when notifications are muted.
    fn muted_until(&self) -> Option<chrono::DateTime<Utc>> {
        None
    }
    /// When notices held back at `now` (quiet hours, a mute) may go out: when the quiet time in
    /// force ends, or the earliest moment it may. `None`: nothing is held back at `now`.
    fn quiet_ends(&self, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        None
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NotifyError(pub String);

/// Writes one log line per pending plan: for embedding and machines without a desktop.
#[derive(Debug, Default)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn plan_pending(&self, plan: &PlanRecord) -> Result<Notice, NotifyError> {
        tracing::info!(
            plan = %plan.plan_id, run = %plan.run_id, organization = %plan.organization_id,
            "remediation plan awaits approval"
        );
        Ok(Notice::Shown)
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

/// How soon an entry waiting for its event's claim is looked at again, and the first retry's delay.
const TICK: Duration = Duration::from_millis(500);
/// Snoozes, held plans and escalations are looked at no more often than this.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);
/// Time-based work that is due but was not done, with no quiet time to wait for (telling the
/// user failed), is tried again after this.
const UPKEEP_RETRY: Duration = Duration::from_secs(5);
/// The longest sleep while some time-based work is ahead. The monotonic clock the thread sleeps
/// on stands still while the computer is suspended, and quiet hours follow local time, which a
/// daylight saving change moves: waking at least this often bounds how late such work can be.
const MAX_SLEEP: Duration = Duration::from_secs(60);

impl OutboxWorker {
    pub fn start(
        store: Store,
        notifier: Arc<dyn Notifier>,
        events: broadcast::Sender<CoreEvent>,
    ) -> std::io::Result<OutboxWorker> {
        let (tx, rx) = mpsc::sync_channel(1);
        let kick = OutboxKick(Arc::new(Mutex::new(Some(tx))));
        // A timer set by anyone (a snooze from the panel, the relay or the Console; a test that
        // moves time) may be earlier than the one the worker sleeps until.
        let timers = kick.clone();
        store.on_new_timer(move || timers.kick());
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

/// Acknowledging deliveries comes first (Zof wants its 2xx fast): the worker runs at a lower
/// scheduling priority (nice 10), so under a burst it yields the CPU to the receiver and catches
/// up right after. On an idle machine it runs at once, so a single plan is announced without delay.
fn yield_to_the_receiver() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{set_current_thread_priority, ThreadPriority, ThreadPriorityValue};
        // The cross-platform scale maps 0..=100 onto nice 19..=-20; 21 is nice 10.
        let nice_10 = ThreadPriorityValue::try_from(21u8).map(ThreadPriority::Crossplatform);
        if let Err(e) =
            nice_10.map_err(|e| e.to_string()).and_then(|p| set_current_thread_priority(p).map_err(|e| e.to_string()))
        {
            tracing::debug!(error = %e, "the outbox worker keeps the normal priority");
        }
    }
}

fn run(store: &Store, notifier: &dyn Notifier, events: &broadcast::Sender<CoreEvent>, wake: &Receiver<()>) {
    yield_to_the_receiver();
    let mut backoff = TICK;
    let mut next_upkeep = Instant::now();
    loop {
        let mut pass = drain(store, notifier, events, Utc::now());
        if Instant::now() >= next_upkeep {
            let started = Instant::now();
            match upkeep(store, notifier, events, Utc::now()) {
                // Woken plans are told in the same pass, not a tick later.
                Ok(true) if pass.is_ok() => pass = drain(store, notifier, events, Utc::now()),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "notification upkeep failed"),
            }
            // Should many plans fall due at once, upkeep still takes at most ~2% of a core.
            next_upkeep = Instant::now() + UPKEEP_EVERY.max(started.elapsed() * 50);
        }
        let deadline = match pass {
            Ok(waiting) => {
                backoff = TICK;
                if waiting {
                    Some(Instant::now() + TICK)
                } else {
                    next_timer(store, notifier).map(|at| at.max(next_upkeep))
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox work failed; will retry");
                backoff = (backoff * 2).min(Duration::from_secs(30));
                Some(Instant::now() + backoff)
            }
        };
        // While failing, new entries wait for the backoff instead of each retrying at once.
        if sleep(wake, deadline, backoff > TICK) {
            break;
        }
    }
    // One last pass so entries acknowledged just before shutdown are not left for the next start.
    let _ = drain(store, notifier, events, Utc::now());
}

/// Sleeps until a kick or `deadline` (only a kick without one); kicks are ignored while
/// `failing`. `true` once the worker is stopped.
fn sleep(wake: &Receiver<()>, deadline: Option<Instant>, failing: bool) -> bool {
    loop {
        let woken = match deadline {
            Some(at) => wake.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => wake.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match woken {
            Ok(()) if failing && deadline.is_some() => continue,
            Ok(()) | Err(RecvTimeoutError::Timeout) => return false,
            Err(RecvTimeoutError::Disconnected) => return true,
        }
    }
}

/// When time-based work next needs the worker, or `None` when no plan has any.
fn next_timer(store: &Store, notifier: &dyn Notifier) -> Option<Instant> {
    let now = Utc::now();
    let next = match store.next_due(notifier.escalation_after()) {
        Ok(next) => next,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the timers; looking again shortly");
            return Some(Instant::now() + UPKEEP_RETRY);
        }
    };
    let mut at = next.at;
    // Held plans, or work already due, wait for the quiet time to end (or for a retry).
    if next.held || at.is_some_and(|t| t <= now) {
        let retry = notifier
            .quiet_ends(now)
            .unwrap_or_else(|| now + chrono::Duration::from_std(UPKEEP_RETRY).unwrap_or_default());
        at = Some(at.filter(|t| *t > now).map_or(retry, |t| t.min(retry)));
    }
    let wait = (at? - now).to_std().unwrap_or_default();
    Some(Instant::now() + wait.min(MAX_SLEEP))
}

/// How long telling the user may keep failing before an entry is given up: the plan stays in
/// the queue, flagged "not notified", and the work stops instead of being retried forever.
pub const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::hours(24);

/// An entry whose event record is missing this long after it was enqueued will never find it
/// (the record was quarantined): it is finished. Younger ones may be racing their own claim.
const CLAIM_GRACE: chrono::Duration = chrono::Duration::minutes(1);

#[derive(Debug, thiserror::Error)]
enum DrainError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

/// One pass over the outbox. Once telling the user fails, the pass stops trying (the notifier
/// is down) but still puts every plan in the queue; the entries stay for the retry. `Ok(true)`:
/// an entry waits for its event's claim to be written, and wants another pass soon.
fn drain(
    store: &Store,
    notifier: &dyn Notifier,
    events: &broadcast::Sender<CoreEvent>,
    now: DateTime<Utc>,
) -> Result<bool, DrainError> {
    let mut pass = Pass { store, notifier, events, now, failed: None, did_work: false, waiting: false };
    for entry in store.outbox_iter() {
        let entry = entry?;
        pass.did_work = true;
        match entry.work {
            Work::Arrival => pass.arrival(&entry)?,
            Work::Wake => pass.wake(&entry)?,
        }
    }
    // Done-marks join the next group commit: a restart does not repeat them, and a crash in
    // the few milliseconds before that flush at worst repeats a notification.
    if pass.did_work {
        store.flush_soon();
    }
    match pass.failed {
        Some(e) => Err(e.into()),
        None => Ok(pass.waiting),
    }
}

struct Pass<'a> {
    store: &'a Store,
    notifier: &'a dyn Notifier,
    events: &'a broadcast::Sender<CoreEvent>,
    now: DateTime<Utc>,
    failed: Option<NotifyError>,
    did_work: bool,
    /// An entry's event was not there yet (its claim may still be on its way).
    waiting: bool,
}

impl Pass<'_> {
    /// Tells the user about `plan` if it still wants telling, unless this pass already failed to.
    fn notice_for(&self, plan: &PlanRecord) -> Option<Result<Notice, NotifyError>> {
        let wants_notice = plan.state == PlanState::Pending && plan.notified_at.is_none() && !plan.held;
        match (wants_notice, &self.failed) {
            (false, _) => None,
            (true, None) => Some(self.notifier.plan_pending(plan)),
            (true, Some(e)) => Some(Err(e.clone())),
        }
    }

    fn arrival(&mut self, entry: &OutboxEntry) -> Result<(), DrainError> {
        let store = self.store;
        let Some(event) = store.event(&entry.event_id)? else {
            if self.now - entry.enqueued_at > CLAIM_GRACE {
                tracing::warn!(event = %entry.event_id, "an outbox entry's event cannot be read; its work is dropped");
                store.complete_outbox(entry.seq)?;
            }
            // Otherwise the claim may not be written yet: this entry's turn comes on a later pass.
            self.waiting = true;
            return Ok(());
        };
        // The claim was won by another delivery of the same id: this entry carries no work.
        if event.outbox_seq != Some(entry.seq) {
            store.complete_outbox(entry.seq)?;
            return Ok(());
        }
        // Tell the user first, then write the plan once with what was done.
        let notice = self.notice_for(&store.pending_plan_for(&event)?);
        let now = self.now;
        let (settled, changed) = store.settle_event(&event, |p| {
            if let Some(Ok(notice)) = &notice {
                apply_notice(p, *notice, now);
            }
        })?;
        if changed {
            let _ = self.events.send(CoreEvent::PlanChanged { plan_id: settled.plan_id });
        }
        self.finish(entry, notice)
    }

    /// A snooze ended (see [`Store::wake`]): the plan is pending again; tell the user.
    fn wake(&mut self, entry: &OutboxEntry) -> Result<(), DrainError> {
        let store = self.store;
        let Some(plan) = store.plan(&entry.plan_id)? else {
            store.complete_outbox(entry.seq)?;
            return Ok(());
        };
        let mut woken = plan.clone();
        woken.wake(self.now);
        let notice = self.notice_for(&woken);
        let now = self.now;
        let written = store.update_plan(&entry.plan_id, |p| {
            p.wake(now);
            if let Some(Ok(notice)) = &notice {
                apply_notice(p, *notice, now);
            }
        })?;
        if written != plan {
            let _ = self.events.send(CoreEvent::PlanChanged { plan_id: written.plan_id });
        }
        self.finish(entry, notice)
    }

    /// Completes the entry, or keeps it for a retry when telling the user failed, or gives it up
    /// once that has failed for [`GIVE_UP_AFTER`].
    fn finish(&mut self, entry: &OutboxEntry, notice: Option<Result<Notice, NotifyError>>) -> Result<(), DrainError> {
        let Some(Err(e)) = notice else {
            self.store.complete_outbox(entry.seq)?;
            return Ok(());
        };
        if self.now - entry.enqueued_at > GIVE_UP_AFTER {
            tracing::warn!(
                plan = %entry.plan_id, attempts = entry.attempts, error = %e,
                "telling the user kept failing; the plan stays in the queue, flagged as not notified"
            );
            self.store.update_plan(&entry.plan_id, |p| p.flag(PlanFlag::NotNotified))?;
            self.store.complete_outbox(entry.seq)?;
            let _ = self.events.send(CoreEvent::PlanChanged { plan_id: entry.plan_id.clone() });
        } else {
            self.store.retry_outbox(entry)?;
        }
        self.failed.get_or_insert(e);
        Ok(())
    }
}

fn apply_notice(plan: &mut PlanRecord, notice: Notice, now: DateTime<Utc>) {
    match notice {
        Notice::Shown => {
            plan.notified_at = Some(now);
            plan.held = false;
            plan.flags.retain(|f| *f != PlanFlag::NotNotified);
        }
        Notice::Held => plan.held = true,
    }
}

fn record_notice(store: &Store, plan_id: &str, notice: Notice) -> Result<(), crate::store::StoreError> {
    let now = Utc::now();
    store.update_plan(plan_id, |p| apply_notice(p, notice, now))?;
    Ok(())
}

/// Time-based work: snoozes that ended (handed to the outbox as wake entries, so telling the
/// user is retried and survives a crash), plans held back by quiet time, escalations. Returns
/// whether it enqueued work.
fn upkeep(
    store: &Store,
    notifier: &dyn Notifier,
    events: &broadcast::Sender<CoreEvent>,
    now: DateTime<Utc>,
) -> Result<bool, DrainError> {
    // The timer index names the few plans with time-based work; the others are not read.
    let due = store.due(now, notifier.escalation_after())?;
    let mut changed = Vec::new();
    let enqueued = !due.woken.is_empty();
    for plan in due.woken {
        changed.push(store.wake(&plan, now)?.plan_id);
    }
    if !due.held.is_empty() && notifier.summarize_held(due.held.len())? == Notice::Shown {
        for plan_id in due.held {
            record_notice(store, &plan_id, Notice::Shown)?;
            changed.push(plan_id);
        }
    }
    for plan in due.escalate {
        if notifier.escalate(&plan)? == Notice::Shown {
            store.update_plan(&plan.plan_id, |p| p.escalated_at = Some(now))?;
            changed.push(plan.plan_id);
        }
    }
    if !changed.is_empty() {
        store.flush_soon();
        for plan_id in changed {
            let _ = events.send(CoreEvent::PlanChanged { plan_id });
        }
    }
    Ok(enqueued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{plan_pending_body, Envelope};
    use crate::verify::Fingerprint;

    #[derive(Debug, Default)]
    struct Told(Mutex<Vec<String>>);
    impl Notifier for Told {
        fn plan_pending(&self, plan: &PlanRecord) -> Result<Notice, NotifyError> {
            self.0.lock().unwrap().push(plan.plan_id.clone());
            Ok(Notice::Shown)
        }
    }

    #[derive(Debug, Default)]
    struct Unreachable;
    impl Notifier for Unreachable {
        fn plan_pending(&self, _plan: &PlanRecord) -> Result<Notice, NotifyError> {
            Err(NotifyError("no notification server".into()))
        }
    }

    fn acknowledged(store: &Store, id: &str, plan: &str) {
        let env = Envelope::parse(&plan_pending_body(id, Utc::now(), plan, "o", "r")).unwrap();
        store.record_event(&env, b"{}", Utc::now(), &Fingerprint("f".into())).unwrap();
    }

    #[test]
    fn the_worker_writes_the_plan_of_an_acknowledged_event_and_tells_the_user_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        acknowledged(&store, "e1", "p1");
        let told = Told::default();
        let (tx, mut rx) = broadcast::channel(8);
        drain(&store, &told, &tx, Utc::now()).unwrap();
        drain(&store, &told, &tx, Utc::now()).unwrap();
        assert_eq!(*told.0.lock().unwrap(), vec!["p1"]);
        assert!(store.plan("p1").unwrap().unwrap().notified_at.is_some());
        assert_eq!(store.outbox_len(), 0);
        assert!(matches!(rx.try_recv(), Ok(CoreEvent::PlanChanged { plan_id }) if plan_id == "p1"));
    }

    #[test]
    fn without_a_notification_server_every_plan_still_reaches_the_queue_and_the_entries_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 1..=3 {
            acknowledged(&store, &format!("e{i}"), &format!("p{i}"));
        }
        let (tx, mut rx) = broadcast::channel(16);
        assert!(drain(&store, &Unreachable, &tx, Utc::now()).is_err());
        assert!(drain(&store, &Unreachable, &tx, Utc::now()).is_err());
        let mut changed = 0;
        while rx.try_recv().is_ok() {
            changed += 1;
        }
        assert_eq!(changed, 3, "a retry that changes no plan announces no change");
        for i in 1..=3 {
            let plan = store.plan(&format!("p{i}")).unwrap().unwrap();
            assert_eq!((plan.state, plan.notified_at), (PlanState::Pending, None));
        }
        assert!(store.outbox().unwrap().iter().all(|e| e.attempts == 2));
        // Once a server answers, the retried entries tell the user.
        let told = Told::default();
        drain(&store, &told, &tx, Utc::now()).unwrap();
        assert_eq!(*told.0.lock().unwrap(), vec!["p1", "p2", "p3"]);
        assert_eq!(store.outbox_len(), 0);
    }

    /// A plan snoozed until `until`, already told once.
    fn snoozed(store: &Store, plan: &str, until: DateTime<Utc>) {
        acknowledged(store, &format!("e_{plan}"), plan);
        let (tx, _rx) = broadcast::channel(8);
        drain(store, &Told::default(), &tx, Utc::now()).unwrap();
        store
            .update_plan(plan, |p| {
                p.state = PlanState::Snoozed;
                p.snoozed_until = Some(until);
            })
            .unwrap();
    }

    #[test]
    fn a_snooze_that_ends_while_notifications_fail_is_retried_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        {
            let store = Store::open(dir.path()).unwrap();
            snoozed(&store, "p1", now - chrono::Duration::seconds(1));
            let (tx, _rx) = broadcast::channel(16);
            // The snooze ends; telling the user fails.
            assert!(upkeep(&store, &Unreachable, &tx, now).unwrap(), "the wake is handed to the outbox");
            assert!(drain(&store, &Unreachable, &tx, now).is_err());
            let plan = store.plan("p1").unwrap().unwrap();
            assert_eq!((plan.state, plan.notified_at), (PlanState::Pending, None), "in the queue, not told");
            assert_eq!(store.outbox().unwrap()[0].work, Work::Wake, "kept for the retry");
            store.flush_blocking().unwrap();
        }
        // The process dies; on the next start the wake is still owed, and told once.
        let store = reopen(dir.path());
        let (tx, _rx) = broadcast::channel(16);
        let told = Told::default();
        drain(&store, &told, &tx, Utc::now()).unwrap();
        drain(&store, &told, &tx, Utc::now()).unwrap();
        assert_eq!(*told.0.lock().unwrap(), vec!["p1"]);
        assert!(store.plan("p1").unwrap().unwrap().notified_at.is_some());
        assert_eq!(store.outbox_len(), 0);
    }

    #[test]
    fn a_wake_entry_written_before_a_crash_wakes_the_plan_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ended = Utc::now() - chrono::Duration::seconds(1);
        snoozed(&store, "p1", ended);
        // As left by a crash between the wake's two writes: the entry, and the plan still snoozed.
        let plan = store.plan("p1").unwrap().unwrap();
        store.wake(&plan, ended).unwrap();
        store
            .update_plan("p1", |p| {
                p.state = PlanState::Snoozed;
                p.snoozed_until = Some(ended);
            })
            .unwrap();
        let (tx, _rx) = broadcast::channel(16);
        let told = Told::default();
        drain(&store, &told, &tx, Utc::now()).unwrap();
        assert_eq!(*told.0.lock().unwrap(), vec!["p1"]);
        assert_eq!(store.plan("p1").unwrap().unwrap().state, PlanState::Pending);
    }

    #[test]
    fn telling_the_user_is_given_up_after_a_day_and_the_plan_stays_flagged_not_notified() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let env = Envelope::parse(&plan_pending_body("e1", Utc::now(), "p1", "o", "r")).unwrap();
        let day_ago = Utc::now() - GIVE_UP_AFTER - chrono::Duration::minutes(1);
        store.record_event(&env, b"{}", day_ago, &Fingerprint("f".into())).unwrap();
        acknowledged(&store, "e2", "p2");
        let (tx, _rx) = broadcast::channel(16);
        assert!(drain(&store, &Unreachable, &tx, Utc::now()).is_err());
        // The day-old entry is done; the new one is still retried.
        let left: Vec<String> = store.outbox().unwrap().into_iter().map(|e| e.plan_id).collect();
        assert_eq!(left, vec!["p2"]);
        let p1 = store.plan("p1").unwrap().unwrap();
        assert_eq!((p1.state, p1.flags.as_slice()), (PlanState::Pending, [PlanFlag::NotNotified].as_slice()));
        assert_eq!(store.not_notified_count(), 1);
        // Nothing more is tried for it.
        let told = Told::default();
        drain(&store, &told, &tx, Utc::now()).unwrap();
        assert_eq!(*told.0.lock().unwrap(), vec!["p2"]);
    }

    #[derive(Debug)]
    struct Quiet(DateTime<Utc>);
    impl Notifier for Quiet {
        fn plan_pending(&self, _plan: &PlanRecord) -> Result<Notice, NotifyError> {
            Ok(Notice::Held)
        }
        fn quiet_ends(&self, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
            Some(self.0)
        }
    }

    #[test]
    fn with_no_time_based_work_the_worker_sleeps_until_it_is_kicked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(next_timer(&store, &Told::default()), None, "an empty store");
        acknowledged(&store, "e1", "p1");
        let (tx, _rx) = broadcast::channel(8);
        assert!(!drain(&store, &Told::default(), &tx, Utc::now()).unwrap());
        assert_eq!(next_timer(&store, &Told::default()), None, "a plan told, no escalation");
    }

    #[test]
    fn the_worker_wakes_for_a_snooze_s_end_and_for_the_end_of_quiet_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ends =
            DateTime::from_timestamp_micros((Utc::now() + chrono::Duration::seconds(30)).timestamp_micros()).unwrap();
        snoozed(&store, "p1", ends);
        assert_eq!(store.next_due(None).unwrap(), crate::store::NextDue { at: Some(ends), held: false });
        let quiet_until = Utc::now() + chrono::Duration::hours(2);
        acknowledged(&store, "e2", "p2");
        let (tx, _rx) = broadcast::channel(8);
        drain(&store, &Quiet(quiet_until), &tx, Utc::now()).unwrap();
        assert!(store.next_due(None).unwrap().held, "p2 is held back");
        let asked = Instant::now();
        let wake = next_timer(&store, &Quiet(quiet_until)).unwrap();
        assert!(wake <= asked + MAX_SLEEP + Duration::from_secs(1), "the snooze's end, at the latest");
    }

    fn reopen(dir: &std::path::Path) -> Store {
        for _ in 0..100 {
            match Store::open(dir) {
                Err(crate::store::StoreError::Locked(_)) => std::thread::sleep(Duration::from_millis(20)),
                other => return other.unwrap(),
            }
        }
        panic!("the store stayed locked");
    }
}
