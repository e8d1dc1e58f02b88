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
use serde::{Deserialize, Serialize};

mod audit;
mod changes;
mod codec;
mod commit;
mod console;
mod deliveries;
mod details;
mod events;
mod meta;
mod outbox;
mod prune;
mod quarantine;
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
pub(crate) use team::comment_detail;
use timers::timer_keys;
pub use timers::{Due, NextDue};

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
    /// Called after a plan got a new timer (see [`Store::on_new_timer`]).
    new_timer: std::sync::OnceLock<timers::NewTimerHook>,
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
    /// The Console's review details of plans (see `details`), JSON by plan id.
    details: sled::Tree,
    /// Serializes changes of a plan with its timers against upkeep's removal of stale timers.
    timers_lock: Mutex<()>,
    commit: GroupCommit,
    counts: Counts,
}

impl Inner {
    fn open(dir: &Path) -> Result<Inner, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open { path: dir.into(), source: e.into() })?;
        // No background flush (sled's default wakes a thread twice a second, idle or not): every
        // write reaches disk through the group commit (`commit.rs`), which writers that answer
        // someone await (`Store::durable`) and every other writer asks for (`Store::flush_soon`),
        // and the store is flushed when it closes (the flusher's last flush, `flush_blocking`).
        // sled still cleans its segments as pages are rewritten, on the writers' threads.
        let db =
            sled::Config::new().path(dir.join("db")).cache_capacity(CACHE_BYTES).flush_every_ms(None).open().map_err(
                |e| match e {
                    sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                        StoreError::Locked(dir.into())
                    }
                    sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
                        StoreError::Locked(dir.into())
                    }
                    other => StoreError::Open { path: dir.into(), source: other },
                },
            )?;
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
            details: db.open_tree("details")?,
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
            new_timer: std::sync::OnceLock::new(),
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
        let new_timer = std::cell::Cell::new(false);
        let written = self.with(|i| {
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
                    new_timer.set(after.iter().any(|k| !before.contains(k)));
                    return Ok(Some((new, true)));
                }
            }
        });
        if new_timer.get() {
            self.new_timer_set();
        }
        written
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

fn corrupt(tree: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { tree, message: e.to_string() }
}

#[cfg(test)]
mod tests;
