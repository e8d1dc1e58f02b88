//! Durable state in sled: received events (the seen-id set and the inbox), plan states, the outbox
//! of work still to do after an acknowledgement, the delivery log, and records set aside because
//! they could not be read. The only module that names sled.
//!
//! - `records`: the record types; `codec`: their compact, versioned on-disk form;
//! - `commit`: group commit (concurrent deliveries share one `fsync`);
//! - `timers`: the index of plans with time-based work;
//! - `prune`: forgetting what is past the retention window;
//! - `schema`: the schema version, migrations, and refusing stores of a newer version;
//! - `audit`: the audit log, append-only through this API;
//! - `team`: teammates' actions over the relay, applied once each, and this laptop's own to publish.
//!
//! A record that cannot be decoded (damaged, or written by a newer version) never stops a
//! subsystem: it is moved to the `quarantine` tree with the error and skipped.
//!
//! A failed disk (full, or an I/O error) makes sled refuse every later write, so the store
//! reopens itself: the first I/O error marks it down (writers get [`StoreError::Down`], the
//! receiver answers 503), and a recovery thread releases the database and opens it again with
//! backoff, until a write and a flush succeed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::domain::plan::{arrive, Announcement};
use crate::envelope::Envelope;
use crate::verify::Fingerprint;

mod audit;
mod changes;
mod codec;
mod commit;
mod console;
mod prune;
mod records;
mod schema;
mod team;
mod timers;

pub use changes::{Changed, Recorded};
use codec::Record;
use commit::GroupCommit;
pub use console::{ConsolePlanFacts, CONSOLE_FINGERPRINT};
pub use records::{
    Claim, DeliveryRecord, DeliveryVerdict, EventRecord, EventVerdict, OutboxEntry, PlanFlag, PlanRecord, PlanSource,
    PlanState, Work, CONSOLE_EVENT_PREFIX,
};
pub use schema::SCHEMA_VERSION;
use timers::timer_keys;
pub use timers::Due;

/// sled's page cache (its default is 1 GiB). Writes go to the newest leaves of the outbox and
/// the delivery log and to scattered plan and event leaves that are rarely read again; 1 MiB
/// measured as fast as 16 MiB under load (scripts/bench.sh) and keeps the receiver lean.
const CACHE_BYTES: u64 = 1024 * 1024;

/// How many delivery log entries are kept (the activity view and plan history read them).
pub const DELIVERY_LOG_CAP: usize = 20_000;

/// The longest wait between two attempts to reopen a failed store.
const REOPEN_BACKOFF_MAX: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the data directory {0} is in use by another Zof Approvals process (a running `serve` or the desktop app); stop it or use its views instead"
    )]
    Locked(PathBuf),
    #[error("cannot open the data directory {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("could not make the event durable: {0}")]
    Flush(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("the event store failed and is being reopened ({0})")]
    Down(String),
    #[error(
        "the event store was written by a newer version of Zof Approvals (schema {found}; this build reads up to {supported}); \
         nothing was changed: run the newer version, or move the data directory aside to start afresh"
    )]
    NewerSchema { found: u32, supported: u32 },
    #[error("corrupt record in `{tree}`: {message}")]
    Corrupt { tree: &'static str, message: String },
    #[error("no plan with id `{0}`")]
    UnknownPlan(String),
}

impl StoreError {
    /// An error of the disk or the database, after which sled refuses further writes.
    fn is_failure(&self) -> bool {
        match self {
            StoreError::Flush(_) => true,
            StoreError::Sled(e) => !matches!(e, sled::Error::CollectionNotFound(_) | sled::Error::Unsupported(_)),
            _ => false,
        }
    }
}

/// A record set aside because it could not be decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantinedRecord {
    pub tree: String,
    /// The record's key, as text where it is text, else hex.
    pub key: String,
    pub error: String,
    pub at: DateTime<Utc>,
    /// The record as it was, hex-encoded, so a newer version can still read it.
    pub bytes: String,
}

/// The sled database and its trees; reopened in place after a disk failure.
#[derive(Debug, Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    /// `None` while the store is down and being reopened.
    live: RwLock<Option<Arc<Inner>>>,
    /// Why the store is down, while it is.
    down: Mutex<Option<String>>,
    recovering: AtomicBool,
    /// The signal the team relay's publisher waits on: an action was queued (see `team`).
    team_queued: Arc<tokio::sync::Notify>,
}

/// Counts of trees that `/healthz` reports, kept as they change: sled's `len()` reads the
/// whole tree, and `/healthz` answers strangers.
#[derive(Debug, Default)]
struct Counts {
    outbox: AtomicUsize,
    quarantine: AtomicUsize,
}

impl Counts {
    fn added(counter: &AtomicUsize, previous: Option<&sled::IVec>) {
        if previous.is_none() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn removed(counter: &AtomicUsize, previous: Option<&sled::IVec>) {
        if previous.is_some() {
            // Never below zero, whatever a test wrote around the API.
            let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(1)));
        }
    }
}

#[derive(Debug)]
struct Inner {
    db: sled::Db,
    events: sled::Tree,
    plans: sled::Tree,
    outbox: sled::Tree,
    deliveries: sled::Tree,
    meta: sled::Tree,
    /// An index of the plans with time-based work (see `timers`), so upkeep reads only those.
    timers: sled::Tree,
    quarantine: sled::Tree,
    /// The audit log (see `audit`): who did what, when and from where.
    audit: sled::Tree,
    /// Team actions (see `team`): ids applied, own actions to publish, decisions waiting for their plan.
    team_seen: sled::Tree,
    team_out: sled::Tree,
    team_early: sled::Tree,
    /// Serializes changes of a plan with its timers against upkeep's removal of stale timers.
    timers_lock: Mutex<()>,
    commit: GroupCommit,
    counts: Counts,
}

impl Inner {
    fn open(dir: &Path) -> Result<Inner, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open { path: dir.into(), source: e.into() })?;
        let db = sled::Config::new().path(dir.join("db")).cache_capacity(CACHE_BYTES).open().map_err(|e| match e {
            sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => StoreError::Locked(dir.into()),
            sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
                StoreError::Locked(dir.into())
            }
            other => StoreError::Open { path: dir.into(), source: other },
        })?;
        let outbox = db.open_tree("outbox")?;
        let quarantine = db.open_tree("quarantine")?;
        // Counted once here (the store opens on a blocking thread), then kept as they change.
        let counts = Counts { outbox: AtomicUsize::new(outbox.len()), quarantine: AtomicUsize::new(quarantine.len()) };
        Ok(Inner {
            events: db.open_tree("events")?,
            plans: db.open_tree("plans")?,
            outbox,
            deliveries: db.open_tree("deliveries")?,
            meta: db.open_tree("meta")?,
            timers: db.open_tree("timers")?,
            quarantine,
            audit: db.open_tree("audit")?,
            team_seen: db.open_tree("team_seen")?,
            team_out: db.open_tree("team_out")?,
            team_early: db.open_tree("team_early")?,
            timers_lock: Mutex::new(()),
            commit: GroupCommit::start(db.clone()),
            db,
            counts,
        })
    }

    fn tree(&self, name: &str) -> Option<&sled::Tree> {
        Some(match name {
            "events" => &self.events,
            "plans" => &self.plans,
            "outbox" => &self.outbox,
            "deliveries" => &self.deliveries,
            "meta" => &self.meta,
            "timers" => &self.timers,
            "audit" => &self.audit,
            "team_out" => &self.team_out,
            _ => return None,
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Joining the flusher releases the database (and its file lock) before the drop returns.
        self.commit.stop();
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`. A directory held by another process is [`StoreError::Locked`].
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        // Before sled opens (and writes): a store of a newer version is left as it is.
        schema::check_version(dir)?;
        let inner = Inner::open(dir)?;
        let shared = Shared {
            dir: dir.into(),
            live: RwLock::new(Some(Arc::new(inner))),
            down: Mutex::new(None),
            recovering: AtomicBool::new(false),
            team_queued: Arc::new(tokio::sync::Notify::new()),
        };
        let store = Store { shared: Arc::new(shared) };
        store.prepare()?;
        Ok(store)
    }

    /// Work done each time the database is opened, before any delivery is taken: the schema
    /// check (and migration) comes first, so a newer store is refused before anything is written.
    fn prepare(&self) -> Result<(), StoreError> {
        self.migrate()?;
        self.discard_orphan_outbox_entries()?;
        Ok(())
    }

    /// The open database, or why there is none right now.
    fn live(&self) -> Result<Arc<Inner>, StoreError> {
        let live = self.shared.live.read().map_err(|_| StoreError::Closed)?;
        match live.as_ref() {
            Some(inner) => Ok(inner.clone()),
            None => Err(StoreError::Down(self.down_reason().unwrap_or_else(|| "reopening".into()))),
        }
    }

    /// Runs `f` on the open database; an I/O failure marks the store down and starts its recovery.
    fn with<T>(&self, f: impl FnOnce(&Inner) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let inner = self.live()?;
        let result = f(&inner);
        drop(inner);
        if let Err(e) = &result {
            if e.is_failure() {
                self.fail(e);
            }
        }
        result
    }

    /// Why the store cannot take writes right now, if it cannot (a failed disk being recovered).
    pub fn down_reason(&self) -> Option<String> {
        self.shared.down.lock().ok().and_then(|d| d.clone())
    }

    fn fail(&self, e: &StoreError) {
        if let Ok(mut down) = self.shared.down.lock() {
            down.get_or_insert_with(|| e.to_string());
        }
        if self.shared.recovering.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::error!(error = %e, "the event store failed; reopening it");
        // Taken out now, not by the recovery thread: from here on every call fails fast with
        // `Down` instead of meeting a database that failed (sled can spin reading one).
        let failed = self.shared.live.write().ok().and_then(|mut live| live.take());
        let weak = Arc::downgrade(&self.shared);
        let spawned =
            std::thread::Builder::new().name("zof-store-recovery".into()).spawn(move || recover(&weak, failed));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the store's recovery thread");
            self.shared.recovering.store(false, Ordering::SeqCst);
        }
    }

    /// Records a verified event whose raw body is `body`.
    ///
    /// Two writes, in an order that makes every crash point recoverable without a multi-tree
    /// transaction (sled recovers a prefix of its log): first the outbox entry, then the claim of
    /// the id (a compare-and-swap that only succeeds where the id is absent, and names the outbox
    /// entry). An outbox entry without its claim is discarded at open. The plan and the accepted
    /// delivery's log line are written by the outbox worker ([`Store::settle_event`]), off the
    /// request path: until that entry is done it stays in the outbox, across restarts too.
    pub fn record_event(
        &self,
        env: &Envelope,
        body: &[u8],
        received_at: DateTime<Utc>,
        fingerprint: &Fingerprint,
    ) -> Result<Claim, StoreError> {
        let acts = env.is_plan_pending();
        let payload = raw_payload(body)?;
        self.with(|i| {
            let seq = if acts { Some(i.db.generate_id()?) } else { None };
            let record = EventRecord {
                id: env.id.clone(),
                kind: env.kind.clone(),
                created: env.created,
                received_at,
                verdict: if acts { EventVerdict::Accepted } else { EventVerdict::Ignored },
                fingerprint: fingerprint.clone(),
                plan_id: env.data.object.id.clone(),
                run_id: env.data.object.run_id.clone(),
                organization_id: env.data.object.organization_id.clone(),
                outbox_seq: seq,
                payload,
            };
            if let Some(seq) = seq {
                let entry = OutboxEntry {
                    seq,
                    event_id: record.id.clone(),
                    plan_id: record.plan_id.clone(),
                    enqueued_at: received_at,
                    attempts: 0,
                    work: Work::Arrival,
                };
                let previous = i.outbox.insert(seq.to_be_bytes(), codec::encode(&entry))?;
                Counts::added(&i.counts.outbox, previous.as_ref());
            }
            let claimed =
                i.events.compare_and_swap(record.id.as_bytes(), None as Option<&[u8]>, Some(codec::encode(&record)))?;
            let Err(lost) = claimed else {
                return Ok(Claim::Accepted { acted_on: acts });
            };
            if let Some(seq) = seq {
                let previous = i.outbox.remove(seq.to_be_bytes())?;
                Counts::removed(&i.counts.outbox, previous.as_ref());
            }
            // The first delivery's record may be unreadable (quarantined later): still a duplicate.
            let first_received_at = lost
                .current
                .and_then(|bytes| codec::decode::<EventRecord>("events", &bytes).ok())
                .map(|first| first.received_at);
            Ok(Claim::Duplicate { first_received_at })
        })
    }

    /// The plan `event` makes pending, as [`Store::settle_event`] would write it now.
    pub fn pending_plan_for(&self, event: &EventRecord) -> Result<PlanRecord, StoreError> {
        let previous = self.plan(&event.plan_id)?;
        let fresh = previous.is_none();
        let plan = arrive(previous, &announcement(event)).plan;
        if fresh {
            return Ok(team::with_early_decision(plan, self.early_decision(&event.plan_id)?.as_ref()));
        }
        Ok(plan)
    }

    /// The worker's share of an accepted event: makes its plan pending (creating it, or
    /// refreshing an open one announced again: the latest verified delivery's run wins), then
    /// applies `change` (what the notifier did), and logs the delivery that brought it. A
    /// delivery that names a known plan under another organization is not merged: the plan is
    /// flagged and the log line says so. Repeating this for the same event changes nothing more,
    /// so an entry resumed after a crash is safe. Returns the plan, and whether it changed.
    pub fn settle_event(
        &self,
        event: &EventRecord,
        change: impl Fn(&mut PlanRecord),
    ) -> Result<(PlanRecord, bool), StoreError> {
        let mismatch = std::cell::Cell::new(None);
        let early = std::cell::Cell::new(false);
        let waiting = self.early_decision(&event.plan_id)?;
        let plan = self.write_plan(&event.plan_id, |previous| {
            let fresh = previous.is_none();
            let merged = arrive(previous, &announcement(event));
            mismatch.set(merged.mismatch);
            let mut plan = merged.plan;
            // A teammate decided it before it arrived here: it arrives decided, never announced.
            if fresh && waiting.is_some() {
                plan = team::with_early_decision(plan, waiting.as_ref());
                early.set(true);
            }
            change(&mut plan);
            Some(plan)
        })?;
        if early.get() {
            self.drop_early_decision(&event.plan_id)?;
        }
        if let Some(seq) = event.outbox_seq {
            let line = match mismatch.take() {
                None => DeliveryRecord::accepted(&event.id, event.received_at, Some(event.fingerprint.clone())),
                Some(plan_org) => DeliveryRecord {
                    at: event.received_at,
                    event_id: Some(event.id.clone()),
                    verdict: DeliveryVerdict::Accepted,
                    status: 200,
                    code: "tenant_mismatch".into(),
                    reason: format!(
                        "tenant mismatch: plan `{}` belongs to organization `{plan_org}`, but this delivery names `{}`; \
                         it was not merged",
                        event.plan_id, event.organization_id
                    ),
                    fingerprint: Some(event.fingerprint.clone()),
                },
            };
            self.with(|i| {
                if !i.deliveries.contains_key(seq.to_be_bytes())? {
                    i.deliveries.insert(seq.to_be_bytes(), codec::encode(&line))?;
                }
                Ok(())
            })?;
        }
        plan.ok_or_else(|| corrupt("plans", "a plan could not be written"))
    }

    /// Replaces one plan with `next(current)` (a record that cannot be read counts as absent;
    /// `None` from `next` leaves it alone, as does an unchanged plan: the flag says which),
    /// keeping its timers in step. New timers are written before the plan and old ones removed
    /// after it, so a crash at any point leaves at worst a timer the plan does not need, which
    /// upkeep drops, and never a plan without its timer.
    fn write_plan(
        &self,
        plan_id: &str,
        next: impl Fn(Option<PlanRecord>) -> Option<PlanRecord>,
    ) -> Result<Option<(PlanRecord, bool)>, StoreError> {
        self.with(|i| {
            let _serial = i.timers_lock.lock().map_err(|_| StoreError::Closed)?;
            loop {
                let current = i.plans.get(plan_id.as_bytes())?;
                let old = match &current {
                    Some(bytes) => self.decoded(i, "plans", plan_id.as_bytes(), bytes)?,
                    None => None,
                };
                // A quarantined record is gone from the tree: compare against what is there now.
                let current = if old.is_none() { None } else { current };
                let before = old.as_ref().map(timer_keys).unwrap_or_default();
                let Some(new) = next(old.clone()) else {
                    return Ok(None);
                };
                // Nothing changes (an entry retried while notifications are down): write nothing.
                if old.as_ref() == Some(&new) {
                    return Ok(Some((new, false)));
                }
                let after = timer_keys(&new);
                for key in after.iter().filter(|k| !before.contains(k)) {
                    i.timers.insert(key.as_slice(), &[])?;
                }
                if i.plans.compare_and_swap(plan_id.as_bytes(), current, Some(codec::encode(&new)))?.is_ok() {
                    for key in before.iter().filter(|k| !after.contains(k)) {
                        i.timers.remove(key.as_slice())?;
                    }
                    return Ok(Some((new, true)));
                }
            }
        })
    }

    /// Changes one plan atomically; `change` may run more than once under contention.
    pub fn update_plan(&self, plan_id: &str, change: impl Fn(&mut PlanRecord)) -> Result<PlanRecord, StoreError> {
        let plan = self.write_plan(plan_id, |old| {
            let mut plan = old?;
            change(&mut plan);
            Some(plan)
        })?;
        plan.map(|(plan, _)| plan).ok_or_else(|| StoreError::UnknownPlan(plan_id.into()))
    }

    /// A snooze ended: the plan is pending again, and an outbox entry tells the user (retried,
    /// and kept across a crash, until that is recorded). The entry is written first, so a crash
    /// between the two writes leaves an entry that wakes the plan itself.
    pub fn wake(&self, plan: &PlanRecord, now: DateTime<Utc>) -> Result<PlanRecord, StoreError> {
        self.with(|i| {
            let seq = i.db.generate_id()?;
            let entry = OutboxEntry {
                seq,
                event_id: plan.event_id.clone(),
                plan_id: plan.plan_id.clone(),
                enqueued_at: now,
                attempts: 0,
                work: Work::Wake,
            };
            let previous = i.outbox.insert(seq.to_be_bytes(), codec::encode(&entry))?;
            Counts::added(&i.counts.outbox, previous.as_ref());
            Ok(())
        })?;
        let woken = self.update_plan(&plan.plan_id, |p| p.wake(now))?;
        if plan.state == PlanState::Snoozed && woken.state == PlanState::Pending {
            self.record_unsnooze(plan, now)?;
        }
        Ok(woken)
    }

    /// The audit row of a snooze that ended, under the name and source of the snooze itself,
    /// as the plan keeps them.
    fn record_unsnooze(&self, before: &PlanRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
        use crate::domain::audit::{local_name, Actor, AuditAction, AuditEntry, Source};
        let who = before.snoozed_by.clone().unwrap_or_else(|| local_name(""));
        let actor = Actor::new(who, before.snoozed_source.clone().unwrap_or(Source::Panel));
        let mut row = AuditEntry::new(&actor, AuditAction::Unsnoozed, Some(&before.plan_id), "the snooze ended");
        row.at = now;
        self.append_audit(&row)
    }

    /// Resolves once everything written before this call is on disk (group commit).
    pub async fn durable(&self) -> Result<(), StoreError> {
        let inner = self.live()?;
        let result = inner.commit.wait().await;
        drop(inner);
        if let Err(e) = &result {
            if e.is_failure() {
                self.fail(e);
            }
        }
        result
    }

    /// Asks for a flush without waiting for it: it joins the next group commit. For writes whose
    /// loss in a crash costs little (a done-mark), so they never add an fsync of their own.
    pub fn flush_soon(&self) {
        if let Ok(inner) = self.live() {
            let _ = inner.commit.request();
        }
    }

    /// Flushes now, on the calling thread. For shutdown and blocking contexts only.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.with(|i| {
            i.db.flush()?;
            Ok(())
        })
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn event(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        self.with(|i| match i.events.get(id.as_bytes())? {
            Some(bytes) => self.decoded(i, "events", id.as_bytes(), &bytes),
            None => Ok(None),
        })
    }

    /// All stored events, newest first.
    pub fn events(&self) -> Result<Vec<EventRecord>, StoreError> {
        let mut all: Vec<EventRecord> = self.with(|i| self.scan(i, "events"))?;
        all.sort_by_key(|e| std::cmp::Reverse(e.received_at));
        Ok(all)
    }

    pub fn event_count(&self) -> usize {
        self.with(|i| Ok(i.events.len())).unwrap_or(0)
    }

    pub fn plan(&self, plan_id: &str) -> Result<Option<PlanRecord>, StoreError> {
        self.with(|i| self.plan_in(i, plan_id))
    }

    fn plan_in(&self, i: &Inner, plan_id: &str) -> Result<Option<PlanRecord>, StoreError> {
        match i.plans.get(plan_id.as_bytes())? {
            Some(bytes) => self.decoded(i, "plans", plan_id.as_bytes(), &bytes),
            None => Ok(None),
        }
    }

    /// All plans, oldest received first.
    pub fn plans(&self) -> Result<Vec<PlanRecord>, StoreError> {
        let mut all: Vec<PlanRecord> = self.with(|i| self.scan(i, "plans"))?;
        all.sort_by_key(|p| p.received_at);
        Ok(all)
    }

    /// Every readable plan, read lazily in key order (no list of them all is built).
    pub fn plans_iter(&self) -> impl Iterator<Item = Result<PlanRecord, StoreError>> + '_ {
        self.lazily("plans")
    }

    fn plans_in<'a>(&'a self, i: &'a Inner) -> impl Iterator<Item = Result<PlanRecord, StoreError>> + 'a {
        i.plans.iter().filter_map(move |kv| self.decode_entry(i, "plans", kv).transpose())
    }

    /// Readable outbox entries in the order they were enqueued.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.with(|i| self.scan(i, "outbox"))
    }

    /// Readable outbox entries in order, read lazily.
    pub fn outbox_iter(&self) -> impl Iterator<Item = Result<OutboxEntry, StoreError>> + '_ {
        self.lazily("outbox")
    }

    /// The readable records of `tree` in key order, decoded one at a time; unreadable ones are
    /// quarantined on the way. A store that is down yields its error once.
    fn lazily<'a, T: Record + 'a>(&'a self, tree: &'static str) -> impl Iterator<Item = Result<T, StoreError>> + 'a {
        let (first, rest) = match self.live() {
            Ok(i) => (None, Some(i)),
            Err(e) => (Some(Err(e)), None),
        };
        first.into_iter().chain(rest.into_iter().flat_map(move |i| {
            let iter = i.tree(tree).map(sled::Tree::iter).into_iter().flatten();
            iter.filter_map(move |kv| self.decode_entry(&i, tree, kv).transpose())
        }))
    }

    /// Work acknowledged and not finished yet: a count kept as entries come and go (no scan).
    pub fn outbox_len(&self) -> usize {
        self.live().map(|i| i.counts.outbox.load(Ordering::Relaxed)).unwrap_or(0)
    }

    pub fn complete_outbox(&self, seq: u64) -> Result<(), StoreError> {
        self.with(|i| {
            let previous = i.outbox.remove(seq.to_be_bytes())?;
            Counts::removed(&i.counts.outbox, previous.as_ref());
            Ok(())
        })
    }

    pub fn retry_outbox(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        let mut next = entry.clone();
        next.attempts = next.attempts.saturating_add(1);
        self.with(|i| {
            i.outbox.insert(entry.seq.to_be_bytes(), codec::encode(&next))?;
            Ok(())
        })
    }

    /// An outbox entry whose claim never reached the disk (a crash between the two writes) was
    /// never acknowledged: the sender retries it. Runs at open, before any delivery is taken.
    fn discard_orphan_outbox_entries(&self) -> Result<usize, StoreError> {
        let mut discarded = 0;
        for entry in self.outbox()? {
            if entry.work != Work::Arrival {
                continue;
            }
            let claimed = self.event(&entry.event_id)?.is_some_and(|e| e.outbox_seq == Some(entry.seq));
            if !claimed {
                self.complete_outbox(entry.seq)?;
                discarded += 1;
            }
        }
        if discarded > 0 {
            tracing::info!(discarded, "discarded outbox entries of deliveries that were never acknowledged");
        }
        Ok(discarded)
    }

    /// A small piece of state kept across restarts (e.g. the mute switch). A value that cannot
    /// be read is quarantined and reads as absent.
    pub fn meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.with(|i| {
            let Some(bytes) = i.meta.get(key.as_bytes())? else {
                return Ok(None);
            };
            match serde_json::from_slice(&bytes) {
                Ok(v) => Ok(Some(v)),
                Err(e) => {
                    self.quarantine(i, "meta", key.as_bytes(), &bytes, &corrupt("meta", e))?;
                    Ok(None)
                }
            }
        })
    }

    pub fn set_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| corrupt("meta", e))?;
        self.with(|i| {
            i.meta.insert(key.as_bytes(), bytes)?;
            Ok(())
        })
    }

    /// Appends to the delivery log (made durable with the next group commit). Accepted
    /// deliveries are logged by [`Store::settle_event`] instead, under their outbox number, so the
    /// log keeps arrival order. Refusals are not logged here: they are counted (see `refusals`).
    pub fn record_delivery(&self, record: &DeliveryRecord) -> Result<(), StoreError> {
        self.with(|i| {
            let key = i.db.generate_id()?;
            i.deliveries.insert(key.to_be_bytes(), codec::encode(record))?;
            Ok(())
        })
    }

    /// The newest `limit` readable deliveries, newest first.
    pub fn deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.with(|i| {
            let mut out = Vec::new();
            for kv in i.deliveries.iter().rev() {
                if out.len() >= limit {
                    break;
                }
                out.extend(self.decode_entry(i, "deliveries", kv)?);
            }
            Ok(out)
        })
    }

    /// Every logged delivery of one event id, newest first.
    pub fn deliveries_of(&self, event_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.with(|i| {
            let mut out = Vec::new();
            for kv in i.deliveries.iter().rev() {
                let d: Option<DeliveryRecord> = self.decode_entry(i, "deliveries", kv)?;
                out.extend(d.filter(|d| d.event_id.as_deref() == Some(event_id)));
            }
            Ok(out)
        })
    }

    /// How many records were set aside because they could not be read.
    pub fn quarantined_count(&self) -> usize {
        self.live().map(|i| i.counts.quarantine.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// The records set aside, oldest first.
    pub fn quarantined(&self) -> Result<Vec<QuarantinedRecord>, StoreError> {
        self.with(|i| {
            i.quarantine.iter().map(|kv| serde_json::from_slice(&kv?.1).map_err(|e| corrupt("quarantine", e))).collect()
        })
    }

    /// Writes raw bytes under `key` in one of the store's trees, bypassing the codec: how tests
    /// make a store with damaged records, or records of a future format version.
    #[doc(hidden)]
    pub fn write_raw(&self, tree: &str, key: &[u8], bytes: &[u8]) -> Result<(), StoreError> {
        self.with(|i| {
            let t = i.tree(tree).ok_or_else(|| corrupt("meta", format!("no tree named `{tree}`")))?;
            let previous = t.insert(key, bytes)?;
            if tree == "outbox" {
                Counts::added(&i.counts.outbox, previous.as_ref());
            }
            Ok(())
        })
    }

    /// Decodes one record read from `tree`; one that cannot be decoded is quarantined and reads as absent.
    fn decoded<T: Record>(
        &self,
        i: &Inner,
        tree: &'static str,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match codec::decode(tree, bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                self.quarantine(i, tree, key, bytes, &e)?;
                Ok(None)
            }
        }
    }

    fn decode_entry<T: Record>(
        &self,
        i: &Inner,
        tree: &'static str,
        kv: sled::Result<(sled::IVec, sled::IVec)>,
    ) -> Result<Option<T>, StoreError> {
        let (key, value) = kv?;
        self.decoded(i, tree, &key, &value)
    }

    fn scan<T: Record>(&self, i: &Inner, tree: &'static str) -> Result<Vec<T>, StoreError> {
        let Some(t) = i.tree(tree) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for kv in t.iter() {
            out.extend(self.decode_entry(i, tree, kv)?);
        }
        Ok(out)
    }

    /// Moves an unreadable record out of its tree into `quarantine`, with the error: the
    /// subsystem that met it goes on with the next record.
    fn quarantine(
        &self,
        i: &Inner,
        tree: &'static str,
        key: &[u8],
        bytes: &[u8],
        error: &StoreError,
    ) -> Result<(), StoreError> {
        let key_text = match std::str::from_utf8(key) {
            Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
            _ => hex::encode(key),
        };
        tracing::warn!(tree, key = %key_text, error = %error, "set aside a record that cannot be read");
        let record = QuarantinedRecord {
            tree: tree.into(),
            key: key_text,
            error: error.to_string(),
            at: Utc::now(),
            bytes: hex::encode(bytes),
        };
        let mut qkey = tree.as_bytes().to_vec();
        qkey.push(0);
        qkey.extend_from_slice(key);
        let previous = i.quarantine.insert(qkey, serde_json::to_vec(&record).map_err(|e| corrupt("quarantine", e))?)?;
        Counts::added(&i.counts.quarantine, previous.as_ref());
        if let Some(t) = i.tree(tree) {
            let removed = t.remove(key)?;
            if tree == "outbox" {
                Counts::removed(&i.counts.outbox, removed.as_ref());
            }
        }
        Ok(())
    }
}

/// Releases the failed database once its last user lets go, then opens it again with backoff
/// until a write and a flush succeed. Ends when the store is dropped.
fn recover(shared: &Weak<Shared>, failed: Option<Arc<Inner>>) {
    if let Some(failed) = failed {
        // Requests and waiters in flight hold it for a moment; they fail and drop it.
        let patience = std::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&failed) > 1 && std::time::Instant::now() < patience {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(failed);
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(s) = shared.upgrade() else {
            return;
        };
        match Inner::open(&s.dir).and_then(probe) {
            Ok(inner) => {
                if let Ok(mut live) = s.live.write() {
                    *live = Some(Arc::new(inner));
                }
                let store = Store { shared: s.clone() };
                match store.prepare() {
                    Ok(()) => {
                        if let Ok(mut down) = s.down.lock() {
                            down.take();
                        }
                        s.recovering.store(false, Ordering::SeqCst);
                        tracing::info!("the event store was reopened and takes deliveries again");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the reopened event store is not usable yet");
                        if let Ok(mut live) = s.live.write() {
                            live.take();
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "the event store cannot be reopened yet");
                if let Ok(mut down) = s.down.lock() {
                    *down = Some(e.to_string());
                }
            }
        }
        drop(s);
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(REOPEN_BACKOFF_MAX);
    }
}

/// A database that opens may still be unable to write (the disk is still full): prove it can.
fn probe(inner: Inner) -> Result<Inner, StoreError> {
    inner.meta.insert("probe", Utc::now().to_rfc3339().as_bytes())?;
    inner.db.flush()?;
    Ok(inner)
}

/// The announcement an accepted event makes.
fn announcement(event: &EventRecord) -> Announcement<'_> {
    Announcement {
        plan_id: &event.plan_id,
        event_id: &event.id,
        run_id: &event.run_id,
        organization_id: &event.organization_id,
        created: event.created,
        received_at: event.received_at,
    }
}

fn raw_payload(body: &[u8]) -> Result<Box<serde_json::value::RawValue>, StoreError> {
    let text = std::str::from_utf8(body).map_err(|e| corrupt("events", e))?;
    serde_json::value::RawValue::from_string(text.trim().to_owned()).map_err(|e| corrupt("events", e))
}

fn corrupt(tree: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { tree, message: e.to_string() }
}

#[cfg(test)]
mod tests;
