//! One reconciliation: the queue here is brought in line with the Console. Plans decided there
//! leave the queue as resolved; plans pending there that never reached us are recorded (and
//! announced by the outbox, like a delivery); plans on which the two disagree are flagged and
//! kept. Store work runs on blocking threads; the HTTP calls are async.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::api::{ConsoleClient, ConsolePlan, StatusMeaning};
use super::ConsoleError;
use crate::store::{Claim, ConsolePlanFacts, PlanRecord, Store, StoreError};

/// How many single-plan requests are in flight at once.
const PLAN_CHECKS_AT_ONCE: usize = 8;

/// What a reconciliation did; `console reconcile --json` prints it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    /// Plans compared: those the Console lists as pending, and ours it did not list.
    pub checked: usize,
    /// Plans that left the queue because they were decided in the Console.
    pub resolved: usize,
    /// Plans pending in the Console that had never reached us.
    pub added: usize,
    /// Plans newly flagged because the Console disagrees.
    pub flagged: usize,
    /// Plans that could not be checked this time (the Console failed for them).
    pub errors: usize,
}

/// The report, and the plans whose views and notifications must follow.
#[derive(Debug, Default)]
pub struct Outcome {
    pub report: ReconcileReport,
    /// Resolved plans: their notifications are withdrawn.
    pub resolved: Vec<String>,
    /// Every plan that changed (resolved, added, flagged).
    pub changed: Vec<String>,
    /// Pending plans the Console changed since their details were read: read them again.
    pub refresh: Vec<String>,
}

/// Reconciles `store` with the Console behind `client`. Plans of organizations `allow_orgs`
/// does not allow are dropped, as their deliveries would be. Fails as a whole only when the
/// pending list cannot be read, or the token is refused.
pub async fn reconcile(client: &ConsoleClient, store: &Store, allow_orgs: &[String]) -> Result<Outcome, ConsoleError> {
    let pending = client.pending_plans().await?;
    let allowed = |org: &str| allow_orgs.is_empty() || allow_orgs.iter().any(|o| o == org);
    let pending: Vec<_> = pending.into_iter().filter(|(p, _)| allowed(&p.organization_id)).collect();
    let listed: HashSet<String> = pending.iter().map(|(p, _)| p.id.clone()).collect();

    let s = store.clone();
    let (mut outcome, open) = blocking(move || {
        let mut outcome = Outcome::default();
        let now = Utc::now();
        for (plan, raw) in &pending {
            outcome.report.checked += 1;
            match s.plan(&plan.id)? {
                Some(ours) => {
                    if ours.is_open() {
                        compare(&s, &ours, plan, now, &mut outcome)?;
                    }
                }
                None => {
                    let facts = ConsolePlanFacts {
                        plan_id: plan.id.clone(),
                        organization_id: plan.organization_id.clone(),
                        run_id: plan.run_id.clone(),
                        created: plan.created.unwrap_or(now),
                        raw: raw.clone(),
                    };
                    // The listing already describes it: its details are kept before the outbox
                    // can announce it, so its notification says what it is.
                    if let Ok(found) = super::api::details_of(raw) {
                        s.set_details(&found)?;
                    }
                    match s.record_console_plan(&facts, now) {
                        Ok(Claim::Accepted { acted_on: true }) => {
                            outcome.report.added += 1;
                            outcome.changed.push(plan.id.clone());
                        }
                        Ok(_) => {}
                        // A plan no delivery could carry (an empty or overlong id): not added, said.
                        Err(e @ StoreError::Corrupt { .. }) => {
                            tracing::warn!(error = %e, "a plan the Console lists cannot be recorded");
                            outcome.report.errors += 1;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        let mut open: Vec<PlanRecord> =
            s.plans_iter().filter_map(Result::ok).filter(|p| p.is_open() && !listed.contains(&p.plan_id)).collect();
        // Arrivals the outbox has not written yet are ours too.
        let known: HashSet<String> = open.iter().map(|p| p.plan_id.clone()).collect();
        open.extend(
            s.unsettled_plans()?.into_iter().filter(|p| !listed.contains(&p.plan_id) && !known.contains(&p.plan_id)),
        );
        Ok((outcome, open))
    })
    .await?;

    // Ours that the Console no longer lists as pending: ask about each, a few at a time.
    let asked = futures_util::stream::iter(open)
        .map(|ours| async move {
            let answer = client.plan(&ours.plan_id).await;
            (ours, answer)
        })
        .buffer_unordered(PLAN_CHECKS_AT_ONCE);
    futures_util::pin_mut!(asked);
    while let Some((ours, answer)) = asked.next().await {
        outcome.report.checked += 1;
        match answer {
            Ok(Some((theirs, _))) => {
                let s = store.clone();
                outcome = blocking(move || {
                    let mut outcome = outcome;
                    compare(&s, &ours, &theirs, Utc::now(), &mut outcome)?;
                    Ok(outcome)
                })
                .await?;
            }
            Ok(None) => {
                let s = store.clone();
                let id = ours.plan_id.clone();
                let flagged = blocking(move || {
                    Ok(s.flag_console_disagreement(&id, "the Console does not know this plan (404)", Utc::now())?)
                })
                .await?;
                if flagged {
                    outcome.report.flagged += 1;
                    outcome.changed.push(ours.plan_id);
                }
            }
            Err(e @ ConsoleError::TokenRejected(_)) => return Err(e),
            Err(e) => {
                tracing::debug!(plan = %ours.plan_id, error = %e, "could not check a plan with the Console");
                outcome.report.errors += 1;
            }
        }
    }
    Ok(outcome)
}

/// Compares a plan we hold (open) with the Console's, and applies what follows.
fn compare(
    store: &Store,
    ours: &PlanRecord,
    theirs: &ConsolePlan,
    now: DateTime<Utc>,
    outcome: &mut Outcome,
) -> Result<(), ConsoleError> {
    let mut differences = Vec::new();
    if theirs.organization_id != ours.organization_id {
        differences.push(format!(
            "it belongs to organization `{}` there, `{}` here",
            theirs.organization_id, ours.organization_id
        ));
    }
    if theirs.run_id != ours.run_id {
        differences.push(format!("it names run `{}` there, `{}` here", theirs.run_id, ours.run_id));
    }
    if !differences.is_empty() {
        if store.flag_console_disagreement(&ours.plan_id, &differences.join("; "), now)? {
            outcome.report.flagged += 1;
            outcome.changed.push(ours.plan_id.clone());
        }
        return Ok(());
    }
    match theirs.meaning() {
        StatusMeaning::Resolved => {
            // An arrival not settled yet gets its plan now, resolved; the outbox then keeps it.
            store.adopt_unsettled(ours)?;
            let at = theirs.updated.unwrap_or(now);
            if store.resolve_in_console(&ours.plan_id, &theirs.status, theirs.decided_by.as_deref(), at)?.is_some() {
                outcome.report.resolved += 1;
                outcome.resolved.push(ours.plan_id.clone());
                outcome.changed.push(ours.plan_id.clone());
            }
        }
        StatusMeaning::Pending | StatusMeaning::Unknown => {
            let known = store.details(&ours.plan_id)?.map(|d| d.updated);
            if known.is_some_and(|updated| updated != theirs.updated) {
                outcome.refresh.push(ours.plan_id.clone());
            }
            if store.note_console_status(&ours.plan_id, &theirs.status)? {
                outcome.changed.push(ours.plan_id.clone());
            }
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConsoleError> + Send + 'static,
) -> Result<T, ConsoleError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ConsoleError::Internal(e.to_string()))?
}
