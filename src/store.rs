//! Durable state in sled: received events (the seen-id set and the inbox), plan states, the outbox
//! of work still to do after an acknowledgement, and the delivery log. The only module that names sled.
//!
//! Records are stored in a compact binary form (see `codec`); the request path writes two of
//! them per accepted event, and the outbox worker does the rest after the acknowledgement.
//!
//! Durability uses group commit: writers record their change, then await [`Store::durable`]; one
//! flusher thread flushes once for every writer that arrived meanwhile, so concurrent deliveries
//! share one `fsync`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::envelope::Envelope;
use crate::verify::Fingerprint;

mod codec;
use codec::Record;

/// sled's page cache (its default is 1 GiB). Writes go to the newest leaves of the outbox and
/// the delivery log and to scattered plan and event leaves that are rarely read again; 1 MiB
/// measured as fast as 16 MiB under load (scripts/bench.sh) and keeps the receiver lean.
const CACHE_BYTES: u64 = 1024 * 1024;

/// How many delivery log entries are kept (the activity view and plan history read them).
pub const DELIVERY_LOG_CAP: usize = 20_000;

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
    #[error("corrupt record in `{tree}`: {message}")]
    Corrupt { tree: &'static str, message: String },
    #[error("no plan with id `{0}`")]
    UnknownPlan(String),
}

/// What the store says about a newly verified event.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    /// First delivery of this id; the event is written, and for an event we act on, its outbox
    /// entry (the worker then writes its plan and its line in the delivery log).
    Accepted { acted_on: bool },
    /// The id was seen before (this process or an earlier one).
    Duplicate { first_received_at: DateTime<Utc> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventVerdict {
    Accepted,
    Ignored,
}

/// A received, verified event: the inbox and the seen-id set in one record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub verdict: EventVerdict,
    pub fingerprint: Fingerprint,
    pub plan_id: String,
    pub run_id: String,
    pub organization_id: String,
    /// The outbox entry that carries this event's work (`None` for ignored events).
    #[serde(default)]
    pub outbox_seq: Option<u64>,
    /// The verified body exactly as received, unknown fields included.
    pub payload: Box<serde_json::value::RawValue>,
}

impl EventRecord {
    /// The stored body as a JSON value.
    pub fn payload_value(&self) -> serde_json::Value {
        serde_json::from_str(self.payload.get()).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    Pending,
    Snoozed,
    Handled,
}

/// A remediation plan that awaited (or awaits) approval, keyed by plan id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub plan_id: String,
    pub event_id: String,
    pub run_id: String,
    pub organization_id: String,
    pub created: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub state: PlanState,
    #[serde(default)]
    pub snoozed_until: Option<DateTime<Utc>>,
    /// When the user was told (notification shown, or summarized); `None`: not yet.
    #[serde(default)]
    pub notified_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub escalated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub handled_at: Option<DateTime<Utc>>,
    /// Arrived during quiet hours or a mute: to be summarized when they end.
    #[serde(default)]
    pub held: bool,
}

impl PlanRecord {
    /// A plan that has just arrived: pending, nothing told or done yet.
    pub fn arrived(
        plan_id: &str,
        event_id: &str,
        run_id: &str,
        organization_id: &str,
        created: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> PlanRecord {
        PlanRecord {
            plan_id: plan_id.to_owned(),
            event_id: event_id.to_owned(),
            run_id: run_id.to_owned(),
            organization_id: organization_id.to_owned(),
            created,
            received_at,
            state: PlanState::Pending,
            snoozed_until: None,
            notified_at: None,
            escalated_at: None,
            handled_at: None,
            held: false,
        }
    }

    pub fn is_open(&self) -> bool {
        self.state != PlanState::Handled
    }
}

/// Work to do after an acknowledgement, kept until it is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub seq: u64,
    pub event_id: String,
    pub plan_id: String,
    pub enqueued_at: DateTime<Utc>,
    #[serde(default)]
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryVerdict {
    Accepted,
    Duplicate,
    Ignored,
    Rejected,
}

/// One HTTP delivery and what we answered. Rejected deliveries carry nothing from the body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub at: DateTime<Utc>,
    pub event_id: Option<String>,
    pub verdict: DeliveryVerdict,
    pub status: u16,
    pub code: String,
    pub reason: String,
    pub fingerprint: Option<Fingerprint>,
}

impl DeliveryRecord {
    /// An accepted delivery of `event_id`: the one line both the intake (for live listeners) and
    /// the outbox worker (for the log) describe it with.
    pub fn accepted(event_id: &str, at: DateTime<Utc>, fingerprint: Option<Fingerprint>) -> DeliveryRecord {
        DeliveryRecord {
            at,
            event_id: Some(event_id.to_owned()),
            verdict: DeliveryVerdict::Accepted,
            status: 200,
            code: "accepted".into(),
            reason: "accepted".into(),
            fingerprint,
        }
    }
}

/// The sled database and its trees.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: sled::Db,
    events: sled::Tree,
    plans: sled::Tree,
    outbox: sled::Tree,
    deliveries: sled::Tree,
    meta: sled::Tree,
    /// An index of the plans with time-based work (see [`timer_keys`]), so upkeep reads only those.
    timers: sled::Tree,
    /// Serializes changes of a plan with its timers against upkeep's removal of stale timers.
    timers_lock: Mutex<()>,
    commit: GroupCommit,
    dir: PathBuf,
}

impl Store {
    /// Opens (or creates) the store in `dir`. A directory held by another process is [`StoreError::Locked`].
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open { path: dir.into(), source: e.into() })?;
        let db = sled::Config::new().path(dir.join("db")).cache_capacity(CACHE_BYTES).open().map_err(|e| match e {
            sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => StoreError::Locked(dir.into()),
            sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
                StoreError::Locked(dir.into())
            }
            other => StoreError::Open { path: dir.into(), source: other },
        })?;
        let inner = Inner {
            events: db.open_tree("events")?,
            plans: db.open_tree("plans")?,
            outbox: db.open_tree("outbox")?,
            deliveries: db.open_tree("deliveries")?,
            meta: db.open_tree("meta")?,
            timers: db.open_tree("timers")?,
            timers_lock: Mutex::new(()),
            commit: GroupCommit::start(db.clone()),
            db,
            dir: dir.into(),
        };
        let store = Store { inner: Arc::new(inner) };
        store.discard_orphan_outbox_entries()?;
        store.index_timers_once()?;
        Ok(store)
    }

    /// Stores written before the timer index existed get it built once, from their plans.
    fn index_timers_once(&self) -> Result<(), StoreError> {
        const INDEXED: &str = "timers_indexed";
        if self.meta::<bool>(INDEXED)?.unwrap_or(false) {
            return Ok(());
        }
        for plan in self.plans_iter() {
            for key in timer_keys(&plan?) {
                self.inner.timers.insert(key, &[])?;
            }
        }
        self.set_meta(INDEXED, &true)
    }

    /// An outbox entry whose claim never reached the disk (a crash between the two writes) was
    /// never acknowledged: the sender retries it. Runs at open, before any delivery is taken.
    fn discard_orphan_outbox_entries(&self) -> Result<usize, StoreError> {
        let mut discarded = 0;
        for entry in self.outbox()? {
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

    pub fn dir(&self) -> &Path {
        &self.inner.dir
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
    ) -> Result<Intake, StoreError> {
        let i = &self.inner;
        let acts = env.is_plan_pending();
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
            payload: raw_payload(body)?,
        };
        if let Some(seq) = seq {
            let entry = OutboxEntry {
                seq,
                event_id: record.id.clone(),
                plan_id: record.plan_id.clone(),
                enqueued_at: received_at,
                attempts: 0,
            };
            i.outbox.insert(seq.to_be_bytes(), codec::encode(&entry))?;
        }
        let claimed =
            i.events.compare_and_swap(record.id.as_bytes(), None as Option<&[u8]>, Some(codec::encode(&record)))?;
        if let Err(lost) = claimed {
            if let Some(seq) = seq {
                i.outbox.remove(seq.to_be_bytes())?;
            }
            let first: EventRecord = match lost.current {
                Some(bytes) => codec::decode("events", &bytes)?,
                None => return Err(corrupt("events", "a claimed id vanished")),
            };
            return Ok(Intake::Duplicate { first_received_at: first.received_at });
        }
        Ok(Intake::Accepted { acted_on: acts })
    }

    /// The plan `event` makes pending, as [`Store::settle_event`] would write it now.
    pub fn pending_plan_for(&self, event: &EventRecord) -> Result<PlanRecord, StoreError> {
        Ok(pending_plan(self.plan(&event.plan_id)?, event))
    }

    /// The worker's share of an accepted event: makes its plan pending (creating it, or
    /// refreshing an open one announced again), then applies `change` (what the notifier did),
    /// and logs the delivery that brought it. Repeating it for the same event changes nothing
    /// more, so an entry resumed after a crash is safe. Returns the plan, and whether it changed.
    pub fn settle_event(
        &self,
        event: &EventRecord,
        change: impl Fn(&mut PlanRecord),
    ) -> Result<(PlanRecord, bool), StoreError> {
        let plan = self.write_plan(&event.plan_id, |previous| {
            let mut plan = pending_plan(previous, event);
            change(&mut plan);
            Some(plan)
        })?;
        if let Some(seq) =
            event.outbox_seq.filter(|seq| !self.inner.deliveries.contains_key(seq.to_be_bytes()).unwrap_or(false))
        {
            let line = DeliveryRecord::accepted(&event.id, event.received_at, Some(event.fingerprint.clone()));
            self.inner.deliveries.insert(seq.to_be_bytes(), codec::encode(&line))?;
        }
        plan.ok_or_else(|| corrupt("plans", "a plan could not be written"))
    }

    /// Replaces one plan with `next(current)` (a record that cannot be read counts as absent;
    /// `None` from `next` leaves it alone, as does an unchanged plan: the flag says which),
    /// keeping its timers in step. New timers are written
    /// before the plan and old ones removed after it, so a crash at any point leaves at worst a
    /// timer the plan does not need, which upkeep drops, and never a plan without its timer.
    fn write_plan(
        &self,
        plan_id: &str,
        next: impl Fn(Option<PlanRecord>) -> Option<PlanRecord>,
    ) -> Result<Option<(PlanRecord, bool)>, StoreError> {
        let i = &self.inner;
        let _serial = i.timers_lock.lock().map_err(|_| StoreError::Closed)?;
        loop {
            let current = i.plans.get(plan_id.as_bytes())?;
            let old = current.as_deref().and_then(|b| codec::decode::<PlanRecord>("plans", b).ok());
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
    }

    /// The plans whose time-based work is due at `now`, read through the timer index (so this
    /// costs the number of due plans, not the number of plans). Escalation is due
    /// `escalation_after` after a plan was received; `None` turns it off.
    pub fn due(&self, now: DateTime<Utc>, escalation_after: Option<chrono::Duration>) -> Result<Due, StoreError> {
        let mut due = Due {
            woken: self.timers_until(TIMER_SNOOZED, Some(now))?,
            held: self.timers_until(TIMER_HELD, None)?.into_iter().map(|p| p.plan_id).collect(),
            escalate: Vec::new(),
        };
        if let Some(after) = escalation_after {
            due.escalate = self.timers_until(TIMER_ESCALATION, Some(now - after))?;
        }
        Ok(due)
    }

    /// The plans behind the timers of `kind` set at or before `until` (all of them for `None`).
    /// Timers their plan no longer needs are removed on the way.
    fn timers_until(&self, kind: u8, until: Option<DateTime<Utc>>) -> Result<Vec<PlanRecord>, StoreError> {
        let i = &self.inner;
        let mut plans = Vec::new();
        for kv in i.timers.scan_prefix([kind]) {
            let (key, _) = kv?;
            let (at, plan_id) = split_timer_key(&key)?;
            if until.zip(at).is_some_and(|(until, at)| at > until) {
                break;
            }
            let _serial = i.timers_lock.lock().map_err(|_| StoreError::Closed)?;
            match self.plan(&plan_id)? {
                Some(plan) if timer_keys(&plan).iter().any(|k| k.as_slice() == key.as_ref()) => plans.push(plan),
                _ => {
                    i.timers.remove(&key)?;
                }
            }
        }
        Ok(plans)
    }

    /// Resolves once everything written before this call is on disk (group commit).
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.inner.commit.wait().await
    }

    /// Asks for a flush without waiting for it: it joins the next group commit. For writes whose
    /// loss in a crash costs little (a done-mark), so they never add an fsync of their own.
    pub fn flush_soon(&self) {
        let _ = self.inner.commit.request();
    }

    /// Flushes now, on the calling thread. For shutdown and blocking contexts only.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        Ok(())
    }

    pub fn event(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        self.inner.events.get(id.as_bytes())?.map(|v| codec::decode("events", &v)).transpose()
    }

    /// All stored events, newest first.
    pub fn events(&self) -> Result<Vec<EventRecord>, StoreError> {
        let mut all: Vec<EventRecord> = scan(&self.inner.events, "events")?;
        all.sort_by_key(|e| std::cmp::Reverse(e.received_at));
        Ok(all)
    }

    pub fn event_count(&self) -> usize {
        self.inner.events.len()
    }

    pub fn plan(&self, plan_id: &str) -> Result<Option<PlanRecord>, StoreError> {
        self.inner.plans.get(plan_id.as_bytes())?.map(|v| codec::decode("plans", &v)).transpose()
    }

    /// All plans, oldest received first.
    pub fn plans(&self) -> Result<Vec<PlanRecord>, StoreError> {
        let mut all: Vec<PlanRecord> = scan(&self.inner.plans, "plans")?;
        all.sort_by_key(|p| p.received_at);
        Ok(all)
    }

    /// Every plan, read lazily in key order (no list of them all is built).
    pub fn plans_iter(&self) -> impl Iterator<Item = Result<PlanRecord, StoreError>> + '_ {
        self.inner.plans.iter().map(|kv| codec::decode("plans", &kv?.1))
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

    /// Outbox entries in the order they were enqueued.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        scan(&self.inner.outbox, "outbox")
    }

    /// Outbox entries in order, read lazily (the worker stops at the first that fails).
    pub fn outbox_iter(&self) -> impl Iterator<Item = Result<OutboxEntry, StoreError>> + '_ {
        self.inner.outbox.iter().map(|kv| codec::decode("outbox", &kv?.1))
    }

    pub fn outbox_len(&self) -> usize {
        self.inner.outbox.len()
    }

    pub fn complete_outbox(&self, seq: u64) -> Result<(), StoreError> {
        self.inner.outbox.remove(seq.to_be_bytes())?;
        Ok(())
    }

    pub fn retry_outbox(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        let mut next = entry.clone();
        next.attempts = next.attempts.saturating_add(1);
        self.inner.outbox.insert(entry.seq.to_be_bytes(), codec::encode(&next))?;
        Ok(())
    }

    /// A small piece of state kept across restarts (e.g. the mute switch).
    pub fn meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.inner
            .meta
            .get(key.as_bytes())?
            .map(|v| serde_json::from_slice(&v).map_err(|e| corrupt("meta", e)))
            .transpose()
    }

    pub fn set_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        self.inner.meta.insert(key.as_bytes(), encode_meta(value)?)?;
        Ok(())
    }

    /// Appends to the delivery log (made durable with the next group commit). Accepted
    /// deliveries are logged by [`Store::settle_event`] instead, under their outbox number, so the
    /// log keeps arrival order.
    pub fn record_delivery(&self, record: &DeliveryRecord) -> Result<(), StoreError> {
        let key = self.inner.db.generate_id()?;
        self.inner.deliveries.insert(key.to_be_bytes(), codec::encode(record))?;
        Ok(())
    }

    /// The newest `limit` deliveries, newest first.
    pub fn deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.inner.deliveries.iter().rev().take(limit).map(|kv| codec::decode("deliveries", &kv?.1)).collect()
    }

    /// Every logged delivery of one event id, newest first.
    pub fn deliveries_of(&self, event_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut out = Vec::new();
        for kv in self.inner.deliveries.iter().rev() {
            let d: DeliveryRecord = codec::decode("deliveries", &kv?.1)?;
            if d.event_id.as_deref() == Some(event_id) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Forgets events created before `cutoff` (their ids can no longer be replayed: the intake
    /// refuses events that old) and trims the delivery log to [`DELIVERY_LOG_CAP`]. Returns how
    /// many events were removed. Plans are kept.
    pub fn prune(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut removed = 0;
        for kv in self.inner.events.iter() {
            let (key, value) = kv?;
            let record: EventRecord = codec::decode("events", &value)?;
            if record.created < cutoff {
                self.inner.events.remove(key)?;
                removed += 1;
            }
        }
        let excess = self.inner.deliveries.len().saturating_sub(DELIVERY_LOG_CAP);
        for kv in self.inner.deliveries.iter().take(excess) {
            self.inner.deliveries.remove(kv?.0)?;
        }
        Ok(removed)
    }
}

/// Plans with time-based work, as [`Store::due`] returns them.
#[derive(Debug, Default)]
pub struct Due {
    /// Snoozed plans whose snooze has ended.
    pub woken: Vec<PlanRecord>,
    /// Pending plans held back by quiet hours or a mute, to be summarized.
    pub held: Vec<String>,
    /// Announced plans waiting longer than the escalation delay, not escalated yet.
    pub escalate: Vec<PlanRecord>,
}

const TIMER_HELD: u8 = 0;
const TIMER_SNOOZED: u8 = 1;
const TIMER_ESCALATION: u8 = 2;

/// The timer index keys a plan needs: `kind`, then for timed kinds the time (8 bytes that sort
/// like the time), then the plan id. The plan record stays the truth; the index only says where
/// to look.
fn timer_keys(plan: &PlanRecord) -> Vec<Vec<u8>> {
    let key = |kind: u8, at: Option<DateTime<Utc>>| {
        let mut k = vec![kind];
        if kind != TIMER_HELD {
            // Micros since the epoch, sign bit flipped so that big-endian bytes sort by time.
            let micros = at.map_or(i64::MIN, |t| t.timestamp_micros());
            k.extend_from_slice(&((micros as u64) ^ (1 << 63)).to_be_bytes());
        }
        k.extend_from_slice(plan.plan_id.as_bytes());
        k
    };
    match plan.state {
        PlanState::Snoozed => vec![key(TIMER_SNOOZED, plan.snoozed_until)],
        PlanState::Pending if plan.held => vec![key(TIMER_HELD, None)],
        PlanState::Pending if plan.notified_at.is_some() && plan.escalated_at.is_none() => {
            vec![key(TIMER_ESCALATION, Some(plan.received_at))]
        }
        PlanState::Pending | PlanState::Handled => Vec::new(),
    }
}

/// The time (for timed kinds) and the plan id of a timer key.
fn split_timer_key(key: &[u8]) -> Result<(Option<DateTime<Utc>>, String), StoreError> {
    let bad = || corrupt("timers", "a malformed timer key");
    let (&kind, rest) = key.split_first().ok_or_else(bad)?;
    let (at, id) = if kind == TIMER_HELD {
        (None, rest)
    } else {
        let (time, id) = rest.split_at_checked(8).ok_or_else(bad)?;
        let raw = u64::from_be_bytes(time.try_into().map_err(|_| bad())?) ^ (1 << 63);
        (Some(DateTime::from_timestamp_micros(raw as i64).unwrap_or(DateTime::<Utc>::MIN_UTC)), id)
    };
    Ok((at, String::from_utf8(id.to_vec()).map_err(|_| bad())?))
}

fn pending_plan(previous: Option<PlanRecord>, event: &EventRecord) -> PlanRecord {
    match previous {
        // Already recorded for this very event (a rebuild after a crash): keep it as it is.
        Some(same) if same.event_id == event.id => same,
        // The same plan announced again while still open keeps its state and notification history.
        Some(open) if open.is_open() => {
            PlanRecord { event_id: event.id.clone(), received_at: event.received_at, created: event.created, ..open }
        }
        _ => PlanRecord::arrived(
            &event.plan_id,
            &event.id,
            &event.run_id,
            &event.organization_id,
            event.created,
            event.received_at,
        ),
    }
}

fn raw_payload(body: &[u8]) -> Result<Box<serde_json::value::RawValue>, StoreError> {
    let text = std::str::from_utf8(body).map_err(|e| corrupt("events", e))?;
    serde_json::value::RawValue::from_string(text.trim().to_owned()).map_err(|e| corrupt("events", e))
}

fn corrupt(tree: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { tree, message: e.to_string() }
}

/// Small settings-like values in `meta` stay JSON.
fn encode_meta<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| corrupt("meta", e))
}

fn scan<T: Record>(tree: &sled::Tree, name: &'static str) -> Result<Vec<T>, StoreError> {
    tree.iter().map(|kv| codec::decode(name, &kv?.1)).collect()
}

/// Group commit: writers bump `requested` after writing and wait for `flushed` to reach it.
#[derive(Debug)]
struct GroupCommit {
    requested: Arc<AtomicU64>,
    flushed: watch::Receiver<Flushed>,
    doorbell: Mutex<Option<SyncSender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Debug, Clone, Default)]
struct Flushed {
    generation: u64,
    /// The highest generation whose flush failed, and why.
    failed: Option<(u64, String)>,
    closed: bool,
}

impl GroupCommit {
    fn start(db: sled::Db) -> GroupCommit {
        let requested = Arc::new(AtomicU64::new(0));
        let (tx, rx) = watch::channel(Flushed::default());
        let (bell, ring) = mpsc::sync_channel::<()>(1);
        let wanted = requested.clone();
        let spawned = std::thread::Builder::new().name("zof-flush".into()).spawn(move || {
            let mut done = 0;
            while ring.recv().is_ok() {
                let target = wanted.load(Ordering::SeqCst);
                if target <= done {
                    continue;
                }
                match db.flush() {
                    Ok(_) => {
                        done = target;
                        tx.send_modify(|f| f.generation = target);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "flushing the store failed");
                        tx.send_modify(|f| f.failed = Some((target, e.to_string())));
                    }
                }
            }
            if let Err(e) = db.flush() {
                tracing::error!(error = %e, "final flush of the store failed");
            }
            tx.send_modify(|f| f.closed = true);
        });
        if let Err(e) = &spawned {
            tracing::error!(error = %e, "cannot start the flusher thread; every write will report an error");
        }
        let (bell, thread) = match spawned {
            Ok(t) => (Some(bell), Some(t)),
            Err(_) => (None, None),
        };
        GroupCommit { requested, flushed: rx, doorbell: Mutex::new(bell), thread: Mutex::new(thread) }
    }

    /// Registers a write for the next flush and wakes the flusher; returns its generation.
    fn request(&self) -> Result<u64, StoreError> {
        let mine = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let bell = self.doorbell.lock().map_err(|_| StoreError::Closed)?;
        match bell.as_ref().map(|b| b.try_send(())) {
            Some(Ok(())) | Some(Err(TrySendError::Full(()))) => Ok(mine),
            Some(Err(TrySendError::Disconnected(()))) | None => Err(StoreError::Closed),
        }
    }

    async fn wait(&self) -> Result<(), StoreError> {
        let mine = self.request()?;
        let mut rx = self.flushed.clone();
        let state = rx
            .wait_for(|f| f.generation >= mine || f.failed.as_ref().is_some_and(|(g, _)| *g >= mine) || f.closed)
            .await
            .map_err(|_| StoreError::Closed)?;
        if state.generation >= mine {
            Ok(())
        } else if let Some((_, why)) = &state.failed {
            Err(StoreError::Flush(why.clone()))
        } else {
            Err(StoreError::Closed)
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the doorbell ends the flusher thread after one last flush; joining it releases
        // the database (and its file lock) before the drop returns.
        if let Ok(mut bell) = self.commit.doorbell.lock() {
            bell.take();
        }
        if let Some(t) = self.commit.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::plan_pending_body;

    const BODY: &[u8] = b"{}";

    fn env(id: &str, plan: &str) -> Envelope {
        Envelope::parse(&plan_pending_body(id, Utc::now(), plan, "org", "run")).unwrap()
    }

    /// What the intake and then the worker do for a new event.
    fn accept(store: &Store, env: &Envelope) -> PlanRecord {
        store.record_event(env, BODY, Utc::now(), &Fingerprint("f".into())).unwrap();
        store.settle_event(&store.event(&env.id).unwrap().unwrap(), |_| {}).unwrap().0
    }

    #[test]
    fn the_request_path_writes_the_claim_and_the_outbox_entry_and_the_worker_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.record_event(&env("e1", "p1"), BODY, Utc::now(), &Fingerprint("f".into())).unwrap();
        assert!(store.plan("p1").unwrap().is_none() && store.deliveries(10).unwrap().is_empty());
        assert_eq!(store.outbox_len(), 1);

        let event = store.event("e1").unwrap().unwrap();
        let (plan, changed) = store.settle_event(&event, |p| p.held = true).unwrap();
        assert_eq!((plan.state, plan.held, changed), (PlanState::Pending, true, true));
        // Settling again (an entry resumed after a crash) keeps one log line and the plan as it is.
        assert!(!store.settle_event(&event, |_| {}).unwrap().1, "nothing changed");
        let log = store.deliveries(10).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!((log[0].verdict, log[0].event_id.as_deref()), (DeliveryVerdict::Accepted, Some("e1")));
        assert!(store.plan("p1").unwrap().unwrap().held);
    }

    #[tokio::test]
    async fn second_claim_of_an_id_is_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let fp = Fingerprint("abc".into());
        assert!(matches!(
            store.record_event(&env("e1", "p1"), BODY, Utc::now(), &fp).unwrap(),
            Intake::Accepted { acted_on: true }
        ));
        assert!(matches!(
            store.record_event(&env("e1", "p1"), BODY, Utc::now(), &fp).unwrap(),
            Intake::Duplicate { .. }
        ));
        store.durable().await.unwrap();
        assert_eq!(store.outbox().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_outbox_entry_whose_claim_never_reached_the_disk_is_discarded_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let orphan = OutboxEntry {
                seq: 7,
                event_id: "never".into(),
                plan_id: "p".into(),
                enqueued_at: Utc::now(),
                attempts: 0,
            };
            store.inner.outbox.insert(7u64.to_be_bytes(), codec::encode(&orphan)).unwrap();
            store.record_event(&env("e1", "p1"), BODY, Utc::now(), &Fingerprint("f".into())).unwrap();
            store.durable().await.unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let left: Vec<String> = store.outbox().unwrap().into_iter().map(|e| e.event_id).collect();
        assert_eq!(left, vec!["e1"]);
    }

    #[test]
    fn a_lost_claim_leaves_no_outbox_entry_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let fp = Fingerprint("f".into());
        store.record_event(&env("e1", "p1"), BODY, Utc::now(), &fp).unwrap();
        store.record_event(&env("e1", "p1"), BODY, Utc::now(), &fp).unwrap();
        assert_eq!(store.outbox_len(), 1);
    }

    #[test]
    fn a_plan_announced_again_while_open_keeps_its_notification_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        accept(&store, &env("e1", "p1"));
        let notified = Utc::now();
        store.update_plan("p1", |p| p.notified_at = Some(notified)).unwrap();
        accept(&store, &env("e2", "p1"));
        let plan = store.plan("p1").unwrap().unwrap();
        assert_eq!((plan.event_id.as_str(), plan.notified_at), ("e2", Some(notified)));
        store.update_plan("p1", |p| p.state = PlanState::Handled).unwrap();
        accept(&store, &env("e3", "p1"));
        let reopened = store.plan("p1").unwrap().unwrap();
        assert_eq!((reopened.state, reopened.notified_at), (PlanState::Pending, None));
    }

    fn due_ids(store: &Store, now: DateTime<Utc>) -> (Vec<String>, Vec<String>, Vec<String>) {
        let due = store.due(now, Some(chrono::Duration::minutes(30))).unwrap();
        let ids = |v: Vec<PlanRecord>| v.into_iter().map(|p| p.plan_id).collect::<Vec<_>>();
        (ids(due.woken), due.held, ids(due.escalate))
    }

    #[test]
    fn upkeep_reads_only_plans_whose_time_has_come() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let later = now + chrono::Duration::minutes(10);
        for (e, p) in [("e1", "snoozed"), ("e2", "held"), ("e3", "told"), ("e4", "handled")] {
            accept(&store, &env(e, p));
        }
        store
            .update_plan("snoozed", |p| {
                p.state = PlanState::Snoozed;
                p.snoozed_until = Some(later);
            })
            .unwrap();
        store.update_plan("held", |p| p.held = true).unwrap();
        store.update_plan("told", |p| p.notified_at = Some(now)).unwrap();
        store.update_plan("handled", |p| p.notified_at = Some(now)).unwrap();
        store.update_plan("handled", |p| p.state = PlanState::Handled).unwrap();

        let none: Vec<String> = Vec::new();
        assert_eq!(due_ids(&store, now), (none.clone(), vec!["held".to_string()], none.clone()));
        let (woken, _, escalate) = due_ids(&store, now + chrono::Duration::minutes(31));
        assert_eq!((woken, escalate), (vec!["snoozed".to_string()], vec!["told".to_string()]));
        // Three timers: the handled plan's was removed with its change.
        assert_eq!(store.inner.timers.len(), 3);
    }

    #[test]
    fn a_timer_its_plan_no_longer_needs_is_dropped_by_upkeep() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let plan = accept(&store, &env("e1", "p1"));
        // As left by a crash between writing a new timer and writing the plan.
        let stale = timer_keys(&PlanRecord { held: true, ..plan });
        store.inner.timers.insert(stale[0].as_slice(), &[]).unwrap();
        assert!(due_ids(&store, Utc::now()).1.is_empty());
        assert_eq!(store.inner.timers.len(), 0);
    }

    #[test]
    fn a_store_from_before_the_timer_index_gets_it_built_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            accept(&store, &env("e1", "p1"));
            store.update_plan("p1", |p| p.held = true).unwrap();
            store.inner.timers.clear().unwrap();
            store.inner.meta.remove("timers_indexed").unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(due_ids(&store, Utc::now()).1, vec!["p1".to_string()]);
    }

    #[test]
    fn pruning_forgets_events_past_the_window_and_keeps_plans() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old =
            Envelope::parse(&plan_pending_body("e_old", Utc::now() - chrono::Duration::days(40), "p_old", "o", "r"))
                .unwrap();
        accept(&store, &old);
        accept(&store, &env("e_new", "p_new"));
        let removed = store.prune(Utc::now() - chrono::Duration::days(30)).unwrap();
        assert_eq!(removed, 1);
        assert!(store.event("e_old").unwrap().is_none() && store.event("e_new").unwrap().is_some());
        assert!(store.plan("p_old").unwrap().is_some(), "plans are kept");
    }

    #[test]
    fn the_delivery_log_is_trimmed_to_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let record = DeliveryRecord {
            at: Utc::now(),
            event_id: None,
            verdict: DeliveryVerdict::Rejected,
            status: 401,
            code: "signature_mismatch".into(),
            reason: "r".into(),
            fingerprint: None,
        };
        for _ in 0..DELIVERY_LOG_CAP + 5 {
            store.record_delivery(&record).unwrap();
        }
        store.prune(Utc::now() - chrono::Duration::days(30)).unwrap();
        assert_eq!(store.inner.deliveries.len(), DELIVERY_LOG_CAP);
    }
}
