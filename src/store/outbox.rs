//! The outbox: work acknowledged and not finished yet (an arrival to announce, a snooze that
//! ended), kept until it is done, across restarts too; its length is a count kept as entries
//! come and go.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::codec;
use super::records::{OutboxEntry, PlanRecord, PlanState, Work};
use super::{Counts, Store, StoreError};

impl Store {
    /// Readable outbox entries in the order they were enqueued.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.with(|i| self.scan(i, "outbox"))
    }

    /// Readable outbox entries in order, read lazily.
    pub fn outbox_iter(&self) -> impl Iterator<Item = Result<OutboxEntry, StoreError>> + '_ {
        self.lazily("outbox")
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
    pub(super) fn discard_orphan_outbox_entries(&self) -> Result<usize, StoreError> {
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
    pub(super) fn record_unsnooze(&self, before: &PlanRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
        use crate::domain::audit::{local_name, Actor, AuditAction, AuditEntry, Source};
        let who = before.snoozed_by.clone().unwrap_or_else(|| local_name(""));
        let actor = Actor::new(who, before.snoozed_source.clone().unwrap_or(Source::Panel));
        let mut row = AuditEntry::new(&actor, AuditAction::Unsnoozed, Some(&before.plan_id), "the snooze ended");
        row.at = now;
        self.append_audit(&row)
    }
}
