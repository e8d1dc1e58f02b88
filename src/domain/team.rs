//! Team actions: what one teammate did to a plan ("handled", "snoozed", or "resolved" as the
//! Console said), carried to every other laptop over the team relay (see [`crate::relay`]).
//!
//! An action is a small JSON object, `{id, plan_id, organization_id, run_id, action, by, at,
//! until?, status?}`, signed with HMAC-SHA256 under the current webhook secret in the same header scheme
//! as deliveries, so NATS credentials alone cannot forge one. Each laptop applies what it reads
//! through the store's `apply_team_action`: the first "handled" stands (the earliest,
//! then the lowest id, so every laptop keeps the same one), a snooze of a handled plan does
//! nothing and is logged, and an action is applied once, by its id: a laptop's own actions
//! come back to it and are recognised.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A new action id (`act_` and 16 random hex digits): how a team action is recognised when it
/// comes back over the relay, and how two laptops agree on which of two decisions stands.
pub fn new_action_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: the time still makes ids of one machine distinct.
        bytes = Utc::now().timestamp_nanos_opt().unwrap_or_default().to_be_bytes();
    }
    format!("act_{}", hex::encode(bytes))
}

/// What a teammate did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamVerb {
    Handled,
    Snoozed,
    /// Decided in the Console, as a teammate's reconciliation learned it.
    Resolved,
    /// Approved or rejected (`status`) by a teammate from the app, with the Console; a hint
    /// this laptop's own reconciliation confirms.
    Decided,
}

impl std::fmt::Display for TeamVerb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TeamVerb::Handled => "handled",
            TeamVerb::Snoozed => "snoozed",
            TeamVerb::Resolved => "resolved",
            TeamVerb::Decided => "decided",
        })
    }
}

/// One team action, as published on `zof.actions.<org>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamAction {
    /// `act_…`: applied once per laptop; JetStream's de-duplication key too.
    pub id: String,
    pub plan_id: String,
    pub organization_id: String,
    /// The run of the announcement the action answers: it applies to that announcement of
    /// the plan only, never to a later one under the same plan id. Actions from versions that
    /// did not send it are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub action: TeamVerb,
    /// Who did it (the teammate's display name).
    pub by: String,
    pub at: DateTime<Utc>,
    /// A snooze: until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Resolved or decided: the Console's status (approved, rejected, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Decided: the person's comment (or reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Why a team action was not applied, as its audit row says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TeamActionError {
    #[error("not a team action: {0}")]
    Malformed(String),
    #[error("the action's subject names organization `{subject}`, its body `{body}`")]
    SubjectMismatch { subject: String, body: String },
    #[error("a snooze without an end time")]
    NoUntil,
}

/// The longest a team action's fields may be: ids and names, never bodies.
const MAX_FIELD: usize = 256;
/// The longest comment a decision carries.
pub const MAX_COMMENT: usize = 4096;

impl TeamAction {
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an action from its body, checking what the store relies on.
    pub fn parse(body: &[u8]) -> Result<TeamAction, TeamActionError> {
        let action: TeamAction = serde_json::from_slice(body).map_err(|e| TeamActionError::Malformed(e.to_string()))?;
        for (name, value) in
            [("id", &action.id), ("plan_id", &action.plan_id), ("organization_id", &action.organization_id)]
        {
            if value.trim().is_empty() || value.len() > MAX_FIELD {
                return Err(TeamActionError::Malformed(format!("`{name}` must be 1 to {MAX_FIELD} characters")));
            }
        }
        if action.run_id.as_ref().is_some_and(|run| run.len() > MAX_FIELD) {
            return Err(TeamActionError::Malformed(format!("`run_id` must be at most {MAX_FIELD} characters")));
        }
        if action.by.len() > MAX_FIELD || action.by.chars().any(char::is_control) {
            return Err(TeamActionError::Malformed(format!("`by` must be at most {MAX_FIELD} characters")));
        }
        if action.action == TeamVerb::Snoozed && action.until.is_none() {
            return Err(TeamActionError::NoUntil);
        }
        if action.action == TeamVerb::Decided && !matches!(action.status.as_deref(), Some("approved" | "rejected")) {
            return Err(TeamActionError::Malformed("a decision is `approved` or `rejected`".into()));
        }
        if action.comment.as_ref().is_some_and(|c| c.len() > MAX_COMMENT) {
            return Err(TeamActionError::Malformed(format!("`comment` must be at most {MAX_COMMENT} bytes")));
        }
        Ok(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action() -> TeamAction {
        TeamAction {
            id: "act_1".into(),
            plan_id: "plan_1".into(),
            organization_id: "org_abc".into(),
            run_id: Some("run_1".into()),
            action: TeamVerb::Snoozed,
            by: "alice@laptop-7".into(),
            at: Utc::now(),
            until: Some(Utc::now()),
            status: None,
            comment: None,
        }
    }

    #[test]
    fn an_action_reads_back_from_its_body() {
        let a = action();
        assert_eq!(TeamAction::parse(&a.to_body()), Ok(a));
    }

    #[test]
    fn malformed_actions_are_named_errors() {
        assert!(matches!(TeamAction::parse(b"{"), Err(TeamActionError::Malformed(_))));
        let no_until = TeamAction { until: None, ..action() };
        assert_eq!(TeamAction::parse(&no_until.to_body()), Err(TeamActionError::NoUntil));
        let empty = TeamAction { plan_id: " ".into(), ..action() };
        assert!(
            matches!(TeamAction::parse(&empty.to_body()), Err(TeamActionError::Malformed(m)) if m.contains("plan_id"))
        );
        let long = TeamAction { by: "x".repeat(300), ..action() };
        assert!(TeamAction::parse(&long.to_body()).is_err());
    }
}
