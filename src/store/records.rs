//! The records the store keeps, as the rest of the core sees them. Their on-disk form is in
//! `codec`; nothing here knows about sled.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::domain::plan::{PlanFlag, PlanRecord, PlanSource, PlanState, CONSOLE_EVENT_PREFIX};
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
