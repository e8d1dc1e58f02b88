//! The records the store keeps, as the rest of the core sees them. Their on-disk form is in
//! `codec`; nothing here knows about sled.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::verify::Fingerprint;

/// What the store says about a newly verified event: did this delivery claim its id?
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// First delivery of this id; the event is written, and for an event we act on, its outbox
    /// entry (the worker then writes its plan and its line in the delivery log).
    Accepted { acted_on: bool },
    /// The id was seen before (this process or an earlier one); when, if its record is readable.
    Duplicate { first_received_at: Option<DateTime<Utc>> },
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
    /// Decided in the Console (approved, rejected, expired, cancelled): out of the queue, with no
    /// notification and no escalation left.
    Resolved,
}

/// How a plan first reached this app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanSource {
    /// A verified `remediation.plan_pending` delivery.
    #[default]
    Webhook,
    /// Reconciliation with the Console found it pending there, never delivered here.
    Console,
}

/// The prefix of the synthetic event a plan found in the Console is recorded under, so it takes
/// the same store → outbox path as a delivered one.
pub const CONSOLE_EVENT_PREFIX: &str = "console:";

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
    /// What a person should know about this plan beyond its state (see [`PlanFlag`]).
    #[serde(default)]
    pub flags: Vec<PlanFlag>,
    /// Where the plan first came from.
    #[serde(default)]
    pub source: PlanSource,
    /// The plan's status in the Console when reconciliation last looked at it, as the Console
    /// said it (an unknown status is kept as is).
    #[serde(default)]
    pub console_status: Option<String>,
    /// Who decided it in the Console, when the Console says.
    #[serde(default)]
    pub decided_by: Option<String>,
    /// When it was decided in the Console (the Console's `updated`, else when we learned it).
    #[serde(default)]
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who snoozed it, while it is snoozed (or last snoozed it).
    #[serde(default)]
    pub snoozed_by: Option<String>,
    /// The id of the action that marked it handled (a team action's id), so every laptop keeps
    /// the same decision when two teammates handle it at once: the earliest, then the lowest id.
    #[serde(default)]
    pub decision_id: Option<String>,
    /// When the snooze in force was asked for: of two teammates' snoozes, the later stands.
    #[serde(default)]
    pub snoozed_at: Option<DateTime<Utc>>,
}

/// Something about a plan that needs a person's eye; shown in next actions, the plan and `inbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanFlag {
    /// A verified delivery named this plan id under another organization; it was not merged.
    TenantMismatch,
    /// Telling the user failed for longer than the retry limit: the work was given up.
    NotNotified,
    /// The Console disagrees about this plan (another run or organization, or it does not know
    /// it); the activity log says what. The plan is kept.
    ConsoleDisagrees,
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
            flags: Vec::new(),
            source: if event_id.starts_with(CONSOLE_EVENT_PREFIX) { PlanSource::Console } else { PlanSource::Webhook },
            console_status: None,
            decided_by: None,
            resolved_at: None,
            snoozed_by: None,
            decision_id: None,
            snoozed_at: None,
        }
    }

    /// A snooze that has ended makes the plan pending again, not yet told; anything else stays.
    pub fn wake(&mut self, now: DateTime<Utc>) {
        if self.state == PlanState::Snoozed && self.snoozed_until.is_none_or(|until| until <= now) {
            self.state = PlanState::Pending;
            self.snoozed_until = None;
            self.notified_at = None;
            self.held = false;
        }
    }

    pub fn flag(&mut self, flag: PlanFlag) {
        if !self.flags.contains(&flag) {
            self.flags.push(flag);
        }
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, PlanState::Handled | PlanState::Resolved)
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
    #[serde(default)]
    pub work: Work,
}

/// What an outbox entry asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Work {
    /// An accepted event: write its plan and tell the user.
    #[default]
    Arrival,
    /// A snooze ended: make the plan pending again and tell the user, until that is recorded.
    Wake,
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
