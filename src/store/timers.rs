//! The timer index: which plans have time-based work (a snooze that ends, a notice held back by
//! quiet time, an escalation), so upkeep reads those plans and not every plan. The plan record
//! stays the truth; the index only says where to look, and a key its plan no longer needs is
//! dropped when it is read.

use chrono::{DateTime, Utc};

use super::records::{PlanFlag, PlanRecord, PlanState};
use super::{corrupt, Inner, Store, StoreError};

/// What [`Store::on_new_timer`] calls.
pub(super) struct NewTimerHook(Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for NewTimerHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewTimerHook")
    }
}

/// When time-based work next falls due, as [`Store::next_due`] returns it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NextDue {
    /// The earliest snooze end or escalation.
    pub at: Option<DateTime<Utc>>,
    /// Some plans are held back by quiet time: due when it ends, which the notifier knows.
    pub held: bool,
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
/// Not a timer: open plans whose notification was given up, so they are counted without a scan.
const NOT_NOTIFIED: u8 = 3;

/// The timer index keys a plan needs: `kind`, then for timed kinds the time (8 bytes that sort
/// like the time), then the plan id.
pub(super) fn timer_keys(plan: &PlanRecord) -> Vec<Vec<u8>> {
    let key = |kind: u8, at: Option<DateTime<Utc>>| {
        let mut k = vec![kind];
        if kind != TIMER_HELD && kind != NOT_NOTIFIED {
            // Micros since the epoch, sign bit flipped so that big-endian bytes sort by time.
            let micros = at.map_or(i64::MIN, |t| t.timestamp_micros());
            k.extend_from_slice(&((micros as u64) ^ (1 << 63)).to_be_bytes());
        }
        k.extend_from_slice(plan.plan_id.as_bytes());
        k
    };
    let mut keys = match plan.state {
        PlanState::Snoozed => vec![key(TIMER_SNOOZED, plan.snoozed_until)],
        PlanState::Pending if plan.held => vec![key(TIMER_HELD, None)],
        PlanState::Pending if plan.notified_at.is_some() && plan.escalated_at.is_none() => {
            vec![key(TIMER_ESCALATION, Some(plan.received_at))]
        }
        PlanState::Pending | PlanState::Handled | PlanState::Resolved => Vec::new(),
    };
    if plan.is_open() && plan.flags.contains(&PlanFlag::NotNotified) {
        keys.push(key(NOT_NOTIFIED, None));
    }
    keys
}

/// The time (for timed kinds) and the plan id of a timer key.
fn split_timer_key(key: &[u8]) -> Result<(Option<DateTime<Utc>>, String), StoreError> {
    let bad = || corrupt("timers", "a malformed timer key");
    let (&kind, rest) = key.split_first().ok_or_else(bad)?;
    let (at, id) = if kind == TIMER_HELD || kind == NOT_NOTIFIED {
        (None, rest)
    } else {
        let (time, id) = rest.split_at_checked(8).ok_or_else(bad)?;
        let raw = u64::from_be_bytes(time.try_into().map_err(|_| bad())?) ^ (1 << 63);
        (Some(DateTime::from_timestamp_micros(raw as i64).unwrap_or(DateTime::<Utc>::MIN_UTC)), id)
    };
    Ok((at, String::from_utf8(id.to_vec()).map_err(|_| bad())?))
}

impl Store {
    /// The plans whose time-based work is due at `now`, read through the timer index (so this
    /// costs the number of due plans, not the number of plans). Escalation is due
    /// `escalation_after` after a plan was received; `None` turns it off.
    pub fn due(&self, now: DateTime<Utc>, escalation_after: Option<chrono::Duration>) -> Result<Due, StoreError> {
        self.with(|i| {
            let mut due = Due {
                woken: self.timers_until(i, TIMER_SNOOZED, Some(now))?,
                held: self.timers_until(i, TIMER_HELD, None)?.into_iter().map(|p| p.plan_id).collect(),
                escalate: Vec::new(),
            };
            if let Some(after) = escalation_after {
                due.escalate = self.timers_until(i, TIMER_ESCALATION, Some(now - after))?;
            }
            Ok(due)
        })
    }

    /// Has `hook` called after every write that gives a plan a new timer (a snooze, a plan held
    /// back by quiet time, an escalation ahead), whoever wrote it: the outbox worker sleeps until
    /// its next timer, and learns of an earlier one this way. Set once; later calls are ignored.
    pub fn on_new_timer(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.shared.new_timer.set(NewTimerHook(Box::new(hook)));
    }

    pub(super) fn new_timer_set(&self) {
        if let Some(hook) = self.shared.new_timer.get() {
            (hook.0)();
        }
    }

    /// When [`Store::due`] next has something to return, read from the first timer of each kind
    /// (a timer its plan no longer needs only makes the caller look early).
    pub fn next_due(&self, escalation_after: Option<chrono::Duration>) -> Result<NextDue, StoreError> {
        self.with(|i| {
            let first = |kind: u8| -> Result<Option<DateTime<Utc>>, StoreError> {
                for kv in i.timers.scan_prefix([kind]) {
                    if let Ok((at, _)) = split_timer_key(&kv?.0) {
                        return Ok(at);
                    }
                }
                Ok(None)
            };
            let snooze = first(TIMER_SNOOZED)?;
            let escalation = match escalation_after {
                Some(after) => first(TIMER_ESCALATION)?.map(|t| t + after),
                None => None,
            };
            let held = i.timers.scan_prefix([TIMER_HELD]).next().is_some();
            Ok(NextDue { at: snooze.into_iter().chain(escalation).min(), held })
        })
    }

    /// The plans behind the timers of `kind` set at or before `until` (all of them for `None`).
    /// Timers their plan no longer needs, or that are malformed, are removed on the way.
    fn timers_until(&self, i: &Inner, kind: u8, until: Option<DateTime<Utc>>) -> Result<Vec<PlanRecord>, StoreError> {
        let mut plans = Vec::new();
        for kv in i.timers.scan_prefix([kind]) {
            let (key, _) = kv?;
            let Ok((at, plan_id)) = split_timer_key(&key) else {
                i.timers.remove(&key)?;
                continue;
            };
            if until.zip(at).is_some_and(|(until, at)| at > until) {
                break;
            }
            let _serial = i.timers_lock.lock().map_err(|_| StoreError::Closed)?;
            match self.plan_in(i, &plan_id)? {
                Some(plan) if timer_keys(&plan).iter().any(|k| k.as_slice() == key.as_ref()) => plans.push(plan),
                _ => {
                    i.timers.remove(&key)?;
                }
            }
        }
        Ok(plans)
    }

    /// Open plans whose notification was given up (see [`PlanFlag::NotNotified`]).
    pub fn not_notified_count(&self) -> usize {
        self.with(|i| Ok(i.timers.scan_prefix([NOT_NOTIFIED]).count())).unwrap_or(0)
    }

    /// Stores written before the timer index existed get it built once, from their plans.
    pub(super) fn index_timers_once(&self) -> Result<(), StoreError> {
        const INDEXED: &str = "timers_indexed";
        if self.meta::<bool>(INDEXED)?.unwrap_or(false) {
            return Ok(());
        }
        self.with(|i| {
            for plan in self.plans_in(i) {
                for key in timer_keys(&plan?) {
                    i.timers.insert(key, &[])?;
                }
            }
            Ok(())
        })?;
        self.set_meta(INDEXED, &true)
    }
}
