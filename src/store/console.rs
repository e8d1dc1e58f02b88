//! What reconciliation with the Console writes: a plan found pending there (as a synthetic
//! event, so it takes the same outbox path as a delivered one), a plan decided there, and a
//! disagreement, logged in plain words beside the deliveries.

use chrono::{DateTime, Utc};

use super::changes::{Changed, Recorded};
use super::records::{Claim, DeliveryRecord, DeliveryVerdict, PlanFlag, PlanRecord, Work, CONSOLE_EVENT_PREFIX};
use super::{corrupt, Store, StoreError};
use crate::domain::plan::NotApplied;
use crate::envelope::{Envelope, PLAN_PENDING};
use crate::verify::Fingerprint;

/// The fingerprint recorded for events that came from the Console rather than a signed delivery.
pub const CONSOLE_FINGERPRINT: &str = "console";

/// A plan as the Console describes it, in the terms the store needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsolePlanFacts {
    pub plan_id: String,
    pub organization_id: String,
    pub run_id: String,
    pub created: DateTime<Utc>,
    /// The Console's answer, kept as the synthetic event's payload (`data.console`).
    pub raw: serde_json::Value,
}

impl Store {
    /// Records a plan the Console says is pending and that never reached us, as the event
    /// `console:<plan_id>` of type `remediation.plan_pending`: the outbox announces it as it does
    /// a delivery (quiet hours, mute and coalescing apply), and a later delivery of the plan
    /// merges into it. Recording it twice is a duplicate, like a redelivery.
    pub fn record_console_plan(&self, plan: &ConsolePlanFacts, now: DateTime<Utc>) -> Result<Claim, StoreError> {
        let body = serde_json::json!({
            "id": format!("{CONSOLE_EVENT_PREFIX}{}", plan.plan_id),
            "type": PLAN_PENDING,
            "created": plan.created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "source": "console",
            "data": {
                "object": {"id": plan.plan_id, "organization_id": plan.organization_id, "run_id": plan.run_id},
                "console": plan.raw,
            },
        })
        .to_string();
        let env = Envelope::parse(body.as_bytes()).map_err(|e| corrupt("events", format!("a Console plan: {e}")))?;
        self.record_event(&env, body.as_bytes(), now, &Fingerprint(CONSOLE_FINGERPRINT.into()))
    }

    /// The Console decided the plan (`status`, by `decided_by`, at `at`): it leaves the queue as
    /// resolved, its timers with it. Returns the plan when this call resolved it (it was open).
    pub fn resolve_in_console(
        &self,
        plan_id: &str,
        status: &str,
        decided_by: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Option<PlanRecord>, StoreError> {
        let console = crate::domain::audit::Actor::new(
            decided_by.unwrap_or("the Zof Console"),
            crate::domain::audit::Source::Console,
        );
        self.resolve_as(plan_id, status, decided_by, at, &console)
    }

    /// [`Store::resolve_in_console`], recorded in the audit log as `actor`'s. What the Console
    /// said (source `console`) is queued for teammates in the same write, so it reaches those
    /// without a Console connection of their own.
    pub(super) fn resolve_as(
        &self,
        plan_id: &str,
        status: &str,
        decided_by: Option<&str>,
        at: DateTime<Utc>,
        actor: &crate::domain::audit::Actor,
    ) -> Result<Option<PlanRecord>, StoreError> {
        use crate::domain::audit::{AuditAction, AuditEntry, Source};
        use crate::domain::team::{new_action_id, TeamAction, TeamVerb};
        let changed = self.change_plan(plan_id, |plan| {
            if !plan.resolve(status, decided_by, at) {
                return Err(NotApplied::DecidedInConsole);
            }
            let mut audit = AuditEntry::new(actor, AuditAction::Resolved, Some(plan_id), status);
            audit.at = at;
            let team = (actor.source == Source::Console).then(|| TeamAction {
                id: new_action_id(),
                plan_id: plan_id.to_owned(),
                organization_id: plan.organization_id.clone(),
                run_id: Some(plan.run_id.clone()),
                action: TeamVerb::Resolved,
                by: actor.who.clone(),
                at,
                until: None,
                status: Some(status.to_owned()),
                comment: None,
            });
            Ok(Recorded { audit, team })
        })?;
        match changed {
            Changed::Applied(plan) => {
                self.log_resolution(&plan, status, decided_by)?;
                Ok(Some(plan))
            }
            // Already out of the queue: the Console's word is still kept on the plan.
            Changed::NotApplied(..) => {
                self.write_plan(plan_id, |old| {
                    let mut plan = old?;
                    plan.resolve(status, decided_by, at);
                    Some(plan)
                })?;
                Ok(None)
            }
        }
    }

    /// Plans whose arrival is acknowledged but not yet settled by the outbox (so no plan record
    /// exists yet), as the outbox would write them: reconciliation checks these too, so a plan
    /// decided in the Console meanwhile is never announced.
    pub fn unsettled_plans(&self) -> Result<Vec<PlanRecord>, StoreError> {
        let mut plans = Vec::new();
        for entry in self.outbox_iter() {
            let entry = entry?;
            if entry.work != Work::Arrival || self.plan(&entry.plan_id)?.is_some() {
                continue;
            }
            if let Some(event) = self.event(&entry.event_id)?.filter(|e| e.outbox_seq == Some(entry.seq)) {
                plans.push(self.pending_plan_for(&event)?);
            }
        }
        Ok(plans)
    }

    /// Writes `plan` where no plan with its id exists yet (one from [`Store::unsettled_plans`]);
    /// when its arrival is settled, the outbox finds it and keeps it as it is.
    pub fn adopt_unsettled(&self, plan: &PlanRecord) -> Result<(), StoreError> {
        self.write_plan(&plan.plan_id, |old| Some(old.unwrap_or_else(|| plan.clone())))?;
        Ok(())
    }

    /// Keeps the Console's status for a plan that stays open here (pending, or a status this
    /// build does not know, shown as is). Returns whether the plan changed.
    pub fn note_console_status(&self, plan_id: &str, status: &str) -> Result<bool, StoreError> {
        let written = self.write_plan(plan_id, |old| {
            let mut plan = old?;
            plan.console_status = Some(status.to_owned());
            Some(plan)
        })?;
        Ok(written.is_some_and(|(_, changed)| changed))
    }

    /// The Console disagrees about a plan we hold: it is flagged (never dropped) and the activity
    /// log says what, once per plan. Returns whether the flag is new.
    pub fn flag_console_disagreement(&self, plan_id: &str, what: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let written = self.write_plan(plan_id, |old| {
            let mut plan = old?;
            plan.flag(PlanFlag::ConsoleDisagrees);
            Some(plan)
        })?;
        let Some((plan, true)) = written else {
            return Ok(false);
        };
        self.record_delivery(&DeliveryRecord {
            at,
            event_id: Some(plan.event_id),
            verdict: DeliveryVerdict::Ignored,
            status: 200,
            code: "console_disagrees".into(),
            reason: format!("the Console disagrees about plan `{plan_id}`: {what}; it was kept here and flagged"),
            fingerprint: None,
        })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PlanSource;
    use crate::store::PlanState;

    fn facts(plan: &str) -> ConsolePlanFacts {
        ConsolePlanFacts {
            plan_id: plan.into(),
            organization_id: "org".into(),
            run_id: "run".into(),
            created: Utc::now(),
            raw: serde_json::json!({"id": plan, "status": "pending"}),
        }
    }

    #[test]
    fn a_console_plan_is_an_event_the_worker_settles_as_a_console_plan_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.record_console_plan(&facts("p1"), Utc::now()).unwrap(), Claim::Accepted { acted_on: true });
        assert!(matches!(store.record_console_plan(&facts("p1"), Utc::now()).unwrap(), Claim::Duplicate { .. }));
        let event = store.event("console:p1").unwrap().unwrap();
        let (plan, _) = store.settle_event(&event, |_| {}).unwrap();
        assert_eq!((plan.source, plan.state), (PlanSource::Console, PlanState::Pending));
        assert_eq!(event.payload_value()["data"]["console"]["status"], "pending");
    }

    #[test]
    fn a_plan_resolved_in_the_console_leaves_its_timers_and_stays_resolved_when_announced_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.record_console_plan(&facts("p1"), Utc::now()).unwrap();
        let event = store.event("console:p1").unwrap().unwrap();
        store.settle_event(&event, |p| p.notified_at = Some(Utc::now())).unwrap();
        let resolved = store.resolve_in_console("p1", "approved", Some("alice@example.com"), Utc::now()).unwrap();
        assert_eq!(resolved.map(|p| p.state), Some(PlanState::Resolved));
        assert!(store.resolve_in_console("p1", "approved", Some("alice@example.com"), Utc::now()).unwrap().is_none());
        let far = Utc::now() + chrono::Duration::days(1);
        assert!(store.due(far, Some(chrono::Duration::minutes(1))).unwrap().escalate.is_empty());
        let (again, _) = store.settle_event(&event, |_| {}).unwrap();
        assert_eq!(again.state, PlanState::Resolved);
    }

    #[test]
    fn a_disagreement_is_flagged_and_logged_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.record_console_plan(&facts("p1"), Utc::now()).unwrap();
        store.settle_event(&store.event("console:p1").unwrap().unwrap(), |_| {}).unwrap();
        assert!(store.flag_console_disagreement("p1", "it names run `r2`", Utc::now()).unwrap());
        assert!(!store.flag_console_disagreement("p1", "it names run `r2`", Utc::now()).unwrap());
        let lines: Vec<_> =
            store.deliveries(10).unwrap().into_iter().filter(|d| d.code == "console_disagrees").collect();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].reason.contains("run `r2`"), "{}", lines[0].reason);
    }
}
