//! Received events: a verified delivery recorded with its outbox entry before the ack (the
//! claim of its id is the compare-and-swap that makes a duplicate a duplicate), and the
//! worker's share after it, which makes the plan pending through the domain's arrival.

use chrono::{DateTime, Utc};

use super::codec;
use super::records::{
    Claim, DeliveryRecord, DeliveryVerdict, EventRecord, EventVerdict, OutboxEntry, PlanRecord, Work,
};
use super::{corrupt, team, Counts, Store, StoreError};
use crate::domain::plan::{arrive, Announcement};
use crate::envelope::Envelope;
use crate::verify::Fingerprint;

impl Store {
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
        // The Console's details may come before the plan is written: it arrives with them.
        let headline = self.details(&event.plan_id)?.map(|d| d.headline());
        let plan = self.write_plan(&event.plan_id, |previous| {
            let fresh = previous.is_none();
            let merged = arrive(previous, &announcement(event));
            mismatch.set(merged.mismatch);
            let mut plan = merged.plan;
            if let Some(headline) = headline.as_ref().filter(|_| plan.headline.is_empty()) {
                plan.headline = headline.clone();
            }
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
            // Written only where absent (one compare-and-swap): a resumed entry keeps its first line.
            self.with(|i| {
                let _ = i.deliveries.compare_and_swap(
                    seq.to_be_bytes(),
                    None as Option<&[u8]>,
                    Some(codec::encode(&line)),
                )?;
                Ok(())
            })?;
        }
        plan.ok_or_else(|| corrupt("plans", "a plan could not be written"))
    }
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
