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
        // A teammate's decision that came while the user was being told waited for this plan,
        // and the plan arrived decided: what was just shown is taken back.
        if settled.state != PlanState::Pending && matches!(notice, Some(Ok(Notice::Shown))) {
            self.notifier.withdraw(&settled.plan_id);
        }
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
mod tests;
