//! A person's actions on a plan: handle and snooze, and a teammate's action applied here. Each
//! goes through the domain's transition ([`crate::domain::plan`]) and is written with its audit
//! row and the team action that shares it, in one write ([`Store::change_plan`]).

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{ActionError, Actions};
use crate::domain::audit::{Actor, AuditAction, AuditEntry, Source};
use crate::domain::plan::{already_decided, Decision, PlanRecord, PlanState, TeamOutcome};
use crate::domain::team::{new_action_id, TeamAction, TeamVerb};
use crate::store::{Changed, Recorded, Store, StoreError};

/// The longest snooze (7 days), in minutes.
pub const SNOOZE_MAX_MINUTES: u32 = 7 * 24 * 60;

/// What "mark handled" did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Handled {
    pub plan: PlanRecord,
    /// The plan was already handled (or decided in the Console): nothing changed.
    pub already: bool,
}

impl Actions {
    /// Marks a plan handled by this machine's person, from `source`. The first decision stands:
    /// a plan already handled (or decided in the Console) is left as it is, and the answer says
    /// so ([`Handled::already`]).
    pub async fn handle(&self, plan_id: &str, source: Source) -> Result<Handled, ActionError> {
        let actor = self.actor(source);
        let changed = self
            .change(plan_id, actor, TeamVerb::Handled, |plan, decision| {
                plan.handle(decision)?;
                Ok((AuditAction::Handled, String::new()))
            })
            .await?;
        Ok(match changed {
            Changed::Applied(plan) => Handled { plan, already: false },
            Changed::NotApplied(plan, _) => Handled { plan, already: true },
        })
    }

    /// Snoozes a plan for `minutes`, by this machine's person, from `source`. A plan handled
    /// meanwhile stays handled: the answer is [`ActionError::NotOpen`].
    pub async fn snooze(&self, plan_id: &str, minutes: u32, source: Source) -> Result<PlanRecord, ActionError> {
        if minutes == 0 || minutes > SNOOZE_MAX_MINUTES {
            return Err(ActionError::InvalidSnooze);
        }
        let actor = self.actor(source);
        let changed = self
            .change(plan_id, actor, TeamVerb::Snoozed, move |plan, decision| {
                let until = decision.at + Duration::minutes(i64::from(minutes));
                plan.snooze(decision, until, decision.at)?;
                Ok((
                    AuditAction::Snoozed,
                    format!("until {}", until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                ))
            })
            .await?;
        match changed {
            Changed::Applied(plan) => Ok(plan),
            Changed::NotApplied(plan, _) => Err(ActionError::NotOpen(already_decided(&plan))),
        }
    }

    /// Applies a teammate's action read by this laptop's `consumer` (once per action id), with
    /// the same transition as the action taken here, then the same follow-up.
    pub async fn apply_team_action(&self, action: TeamAction, consumer: &str) -> Result<TeamOutcome, StoreError> {
        let store = self.store.clone();
        let consumer = consumer.to_owned();
        let plan_id = action.plan_id.clone();
        let hint = action.action == TeamVerb::Decided;
        let outcome = tokio::task::spawn_blocking(move || store.apply_team_action(&action, &consumer))
            .await
            .map_err(|_| StoreError::Closed)??;
        // A teammate's decision is a hint: this laptop asks the Console itself, and flags the
        // plan if the Console says otherwise.
        if let (true, TeamOutcome::Applied(_), Some(running)) = (hint, &outcome, &self.running) {
            running.intake.details().request(&plan_id);
        }
        match &outcome {
            TeamOutcome::Applied(plan) => self.after_plan_change(&plan_id, plan.state != PlanState::Pending).await?,
            TeamOutcome::NotApplied(why) => {
                tracing::info!(plan = %plan_id, reason = %why, "relay: a team action was not applied");
                self.after_plan_change(&plan_id, false).await?;
            }
            TeamOutcome::Early | TeamOutcome::Seen => self.store.durable().await?,
        }
        Ok(outcome)
    }

    /// One person-action on a plan: `transition` changes it as `decision` and names the audit
    /// row; the change, the row and the team action are written together, then followed up.
    async fn change(
        &self,
        plan_id: &str,
        actor: Actor,
        verb: TeamVerb,
        transition: impl FnOnce(&mut PlanRecord, &Decision) -> Result<(AuditAction, String), crate::domain::plan::NotApplied>
            + Send
            + 'static,
    ) -> Result<Changed, ActionError> {
        let store = self.store.clone();
        let id = plan_id.to_owned();
        let changed =
            tokio::task::spawn_blocking(move || change_plan(&store, &id, &actor, verb, Utc::now(), transition))
                .await??;
        let withdraw = matches!(&changed, Changed::Applied(plan) if plan.state != PlanState::Pending);
        self.after_plan_change(plan_id, withdraw).await?;
        Ok(changed)
    }
}

/// The write of one person-action (blocking): the plan, its audit row, and the team action
/// queued for teammates whatever runs.
fn change_plan(
    store: &Store,
    plan_id: &str,
    actor: &Actor,
    verb: TeamVerb,
    now: DateTime<Utc>,
    transition: impl FnOnce(&mut PlanRecord, &Decision) -> Result<(AuditAction, String), crate::domain::plan::NotApplied>,
) -> Result<Changed, StoreError> {
    let decision = Decision { id: new_action_id(), by: actor.who.clone(), source: actor.source.clone(), at: now };
    store.change_plan(plan_id, |plan| {
        let (action, detail) = transition(plan, &decision)?;
        let mut audit = AuditEntry::new(actor, action, Some(plan_id), detail);
        audit.at = now;
        let team = TeamAction {
            id: decision.id.clone(),
            plan_id: plan_id.to_owned(),
            organization_id: plan.organization_id.clone(),
            run_id: Some(plan.run_id.clone()),
            action: verb,
            by: actor.who.clone(),
            at: now,
            until: plan.snoozed_until.filter(|_| verb == TeamVerb::Snoozed),
            status: None,
            comment: None,
        };
        Ok(Recorded { audit, team: Some(team) })
    })
}
