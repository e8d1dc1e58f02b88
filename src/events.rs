//! Events the core publishes for whoever shows state (the desktop shell forwards them to the UI).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::DeliveryRecord;

/// Something changed that a view may show, or the user asked for something through a notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CoreEvent {
    /// A delivery was answered (any verdict).
    Delivery(DeliveryRecord),
    /// A plan was added or changed state.
    PlanChanged { plan_id: String },
    /// Receiver readiness, secrets or notification health changed.
    StatusChanged,
    /// A plan was just announced to the user (not held back by quiet time): the desktop may
    /// bring the panel forward.
    Attention { plan_id: String },
    /// The user clicked a plan's notification.
    OpenPlan { plan_id: String },
    /// The user clicked the summary notification.
    OpenQueue,
    /// The user chose "Snooze" on a plan's notification.
    Snooze { plan_id: String, until: DateTime<Utc> },
    /// A decision got no answer: the plan is being read to learn its outcome.
    DecisionChecking { plan_id: String },
}
