//! A change to one plan, written whole: the plan (with its timers), the audit row that says who
//! changed it, and the team action that shares it with teammates, in one sled transaction. A
//! crash leaves all of it or none of it, so a change made with nothing running (the CLI) or
//! while the relay is away is still queued for the team, and goes when a relay link next exists.

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::timers::timer_keys;
use super::{codec, Store, StoreError};
use crate::domain::audit::AuditEntry;
use crate::domain::plan::{NotApplied, PlanRecord};
use crate::domain::team::TeamAction;

/// What a change records beside the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub audit: AuditEntry,
    /// The action to share with the team (this laptop's own); `None` for what came from the team.
    pub team: Option<TeamAction>,
}

/// What [`Store::change_plan`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Changed {
    /// The plan changed, as it now is.
    Applied(PlanRecord),
    /// Nothing changed, and why; the plan as it is.
    NotApplied(PlanRecord, NotApplied),
}

impl Store {
    /// Changes plan `plan_id` with `change`, which says what to record beside it, or why the
    /// plan stays as it is. The writes join the next group commit; callers that answer a person
    /// wait for [`Store::durable`]. A plan that is not here (or cannot be read) is
    /// [`StoreError::UnknownPlan`].
    pub fn change_plan(
        &self,
        plan_id: &str,
        change: impl FnOnce(&mut PlanRecord) -> Result<Recorded, NotApplied>,
    ) -> Result<Changed, StoreError> {
        let wrote_team = std::cell::Cell::new(false);
        let new_timer = std::cell::Cell::new(false);
        let changed = self.with(|i| {
            // Every writer of a plan holds this lock: nothing changes the plan between the read
            // and the transaction.
            let _serial = i.timers_lock.lock().map_err(|_| StoreError::Closed)?;
            let old = self.plan_in(i, plan_id)?.ok_or_else(|| StoreError::UnknownPlan(plan_id.into()))?;
            let mut new = old.clone();
            let recorded = match change(&mut new) {
                Ok(recorded) => recorded,
                Err(why) => return Ok(Changed::NotApplied(old, why)),
            };
            let (before, after) = (timer_keys(&old), timer_keys(&new));
            let plan_bytes = codec::encode(&new);
            let audit_bytes = codec::encode(&recorded.audit);
            let team = recorded.team.as_ref().map(|a| (a.id.clone(), a.to_body()));
            let now = chrono::Utc::now().timestamp().to_be_bytes();
            let result: Result<(), TransactionError<()>> = (&i.plans, &i.timers, &i.audit, &i.team_out, &i.team_seen)
                .transaction(|(plans, timers, audit, team_out, team_seen)| {
                    for key in after.iter().filter(|k| !before.contains(k)) {
                        timers.insert(key.as_slice(), &[])?;
                    }
                    plans.insert(plan_id.as_bytes(), plan_bytes.as_slice())?;
                    for key in before.iter().filter(|k| !after.contains(k)) {
                        timers.remove(key.as_slice())?;
                    }
                    audit.insert(&audit.generate_id()?.to_be_bytes(), audit_bytes.as_slice())?;
                    if let Some((id, body)) = &team {
                        // Marked seen, so it is not applied again when it comes back.
                        team_seen.insert(id.as_bytes(), &now)?;
                        team_out.insert(&team_out.generate_id()?.to_be_bytes(), body.as_slice())?;
                    }
                    Ok::<(), ConflictableTransactionError<()>>(())
                });
            result.map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::Sled(e),
                TransactionError::Abort(()) => StoreError::Closed,
            })?;
            wrote_team.set(team.is_some());
            new_timer.set(after.iter().any(|k| !before.contains(k)));
            Ok(Changed::Applied(new))
        })?;
        if wrote_team.get() {
            self.team_out_added();
        }
        if new_timer.get() {
            self.new_timer_set();
        }
        Ok(changed)
    }
}
