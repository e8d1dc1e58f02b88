//! Review and decide: a plan's details from the Console, and approve or reject as the named
//! person the Console token belongs to, with the guardrails approvals elsewhere learned: the
//! content is read again just before sending, and nothing goes when its revision is not the one
//! on screen; the Console's word on who may decide; a fresh idempotency key; a decision is never
//! queued for later and never retried blindly: after a timeout or a broken connection the plan is
//! read until its outcome is known.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{ActionError, Actions};
use crate::domain::audit::{Actor, AuditAction, AuditEntry, Source};
use crate::domain::plan::{Decision, PlanRecord, PlanState};
use crate::domain::review::{
    decided_line, new_idempotency_key, DecisionAnswer, DecisionRequest, Person, PlanDetails, Rights, Verdict,
};
use crate::domain::team::{new_action_id, TeamAction, TeamVerb};
use crate::domain::words::continuing;
use crate::events::CoreEvent;
use crate::store::{Recorded, StoreError};

/// The Console, as review and decide need it (the console module serves it; tests may too).
pub trait ConsoleReviews: Send + Sync + std::fmt::Debug {
    /// Who the token belongs to.
    fn me(&self) -> BoxFuture<'_, Result<Person, ReviewError>>;
    /// A plan's details; `None` when the Console does not know it.
    fn details(&self, plan_id: String) -> BoxFuture<'_, Result<Option<PlanDetails>, ReviewError>>;
    /// Sends one decision, once.
    fn decide(&self, plan_id: String, request: DecisionRequest) -> BoxFuture<'_, Result<DecisionAnswer, ReviewError>>;
}

/// Why the Console could not be asked, or did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// No Console connection is set up (no URL, no token): nothing can be decided here.
    #[error("{0}")]
    NotConnected(String),
    /// The request may or may not have reached the Console (a timeout, a broken connection).
    #[error("the Console did not answer: {0}")]
    NoAnswer(String),
    /// The Console answered, but not with what was asked (the token refused, a 5xx).
    #[error("{0}")]
    Refused(String),
}

/// How a decision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionOutcome {
    /// The Console took it.
    Decided,
    /// The plan changed since it was shown: nothing was sent.
    Changed,
    /// Someone decided it first (or it was decided before it was sent).
    AlreadyDecided,
    /// The Console says this person may not decide it.
    NotPermitted,
    Expired,
    /// The Console wants a comment.
    CommentRequired,
    /// A rejection without a reason: refused here, nothing sent.
    ReasonRequired,
    /// Sent, and the Console says the plan is still undecided: the decision did not take.
    NotDecided,
    /// Sent, and the Console could not be asked what became of it.
    Unknown,
    /// Nothing could be sent (no connection, the Console refused the token or failed).
    Failed,
}

impl DecisionOutcome {
    /// `zof-approvals approve` and `reject`'s exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            DecisionOutcome::Decided => 0,
            DecisionOutcome::NotDecided | DecisionOutcome::Unknown | DecisionOutcome::Failed => 1,
            DecisionOutcome::ReasonRequired | DecisionOutcome::CommentRequired => 2,
            DecisionOutcome::Changed | DecisionOutcome::AlreadyDecided => 3,
            DecisionOutcome::NotPermitted | DecisionOutcome::Expired => 4,
        }
    }
}

/// What a decision came to, in plain words, with the plan as the Console last described it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionReport {
    pub outcome: DecisionOutcome,
    pub message: String,
    pub details: Option<PlanDetails>,
}

impl DecisionReport {
    fn new(outcome: DecisionOutcome, message: impl Into<String>, details: Option<PlanDetails>) -> DecisionReport {
        DecisionReport { outcome, message: message.into(), details }
    }
}

/// A plan to review: as stored here, with the Console's details (refreshed when it answers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub plan: PlanRecord,
    pub details: Option<PlanDetails>,
    /// Whether the details are the Console's answer just now (else the stored ones, if any).
    pub fresh: bool,
    /// Why they could not be refreshed.
    pub problem: Option<String>,
    /// What the person may do with it, from those details.
    #[serde(flatten)]
    pub rights: Rights,
}

impl Review {
    fn new(plan: PlanRecord, details: Option<PlanDetails>, fresh: bool, problem: Option<String>) -> Review {
        let rights = details.as_ref().map_or_else(Rights::without_details, PlanDetails::rights);
        Review { plan, details, fresh, problem, rights }
    }
}

/// How often, and how far apart, a decision's outcome is asked after no answer came.
const CHECKS: u32 = 6;
const CHECK_FIRST_DELAY: Duration = Duration::from_millis(250);

impl Actions {
    /// Where review and decide reach the Console; set once, by the application.
    pub fn serve_reviews(&self, reviews: Arc<dyn ConsoleReviews>) {
        let _ = self.reviews.set(reviews);
    }

    fn reviews(&self) -> Result<&Arc<dyn ConsoleReviews>, ReviewError> {
        self.reviews
            .get()
            .ok_or_else(|| ReviewError::NotConnected("no Console connection: set the Console API in Settings".into()))
    }

    /// Keeps details the Console sent (bounded) with their plan, and follows up. A plan a
    /// teammate said was decided while the Console still calls it pending is flagged.
    pub async fn keep_details(&self, details: PlanDetails) -> Result<Option<PlanRecord>, StoreError> {
        let store = self.store.clone();
        let plan_id = details.plan_id.clone();
        let kept = tokio::task::spawn_blocking(move || {
            let plan = store.set_details(&details)?;
            if let Some(p) = &plan {
                let hinted = p.state == PlanState::Resolved && p.decision_id.is_some();
                if hinted && !details.is_decided() {
                    let what = format!(
                        "a teammate's decision ({}) is not what the Console says: `{}`",
                        p.console_status.as_deref().unwrap_or("decided"),
                        details.status
                    );
                    store.flag_console_disagreement(&p.plan_id, &what, Utc::now())?;
                }
            }
            Ok::<_, StoreError>(plan)
        })
        .await
        .map_err(|_| StoreError::Closed)??;
        if kept.is_some() {
            self.after_plan_change(&plan_id, false).await?;
        }
        Ok(kept)
    }

    /// The plan to review, with its details read again from the Console (the stored ones when
    /// it cannot answer).
    pub async fn review(&self, plan_id: &str) -> Result<Review, ActionError> {
        let store = self.store.clone();
        let id = plan_id.to_owned();
        let (plan, stored) = tokio::task::spawn_blocking(move || {
            let plan = store.plan(&id)?.ok_or_else(|| StoreError::UnknownPlan(id.clone()))?;
            Ok::<_, StoreError>((plan, store.details(&id)?))
        })
        .await??;
        let asked = match self.reviews() {
            Ok(reviews) => reviews.details(plan_id.to_owned()).await,
            Err(e) => Err(e),
        };
        match asked {
            Ok(Some(details)) => {
                let plan = self.keep_details(details.clone()).await?.unwrap_or(plan);
                Ok(Review::new(plan, Some(details), true, None))
            }
            Ok(None) => Ok(Review::new(plan, stored, false, Some("the Console does not know this plan".into()))),
            Err(e) => Ok(Review::new(plan, stored, false, Some(e.to_string()))),
        }
    }

    /// Approves or rejects `plan_id` as the person the Console token belongs to, from `source`.
    /// `shown` is the revision on the person's screen; `comment` is optional for an approval and
    /// required (the reason) for a rejection. Every outcome is a report in plain words.
    pub async fn decide(
        &self,
        plan_id: &str,
        verdict: Verdict,
        shown: Option<String>,
        comment: &str,
        source: Source,
    ) -> DecisionReport {
        let comment = comment.trim().to_owned();
        if verdict == Verdict::Reject && comment.is_empty() {
            return DecisionReport::new(DecisionOutcome::ReasonRequired, "a rejection needs a reason", None);
        }
        let reviews = match self.reviews() {
            Ok(r) => r.clone(),
            Err(e) => return DecisionReport::new(DecisionOutcome::Failed, e.to_string(), None),
        };
        // Content before approval: the plan as the Console has it now.
        let fresh = match reviews.details(plan_id.to_owned()).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                return DecisionReport::new(DecisionOutcome::Failed, "the Console does not know this plan", None)
            }
            Err(e) => return DecisionReport::new(DecisionOutcome::Failed, e.to_string(), None),
        };
        if let Err(e) = self.keep_details(fresh.clone()).await {
            tracing::warn!(error = %e, "the plan's details could not be kept");
        }
        if fresh.is_decided() {
            let line = format!("Already {}", continuing(&decided_line(&fresh)));
            self.learn_outcome(&fresh).await;
            return DecisionReport::new(DecisionOutcome::AlreadyDecided, line, Some(fresh));
        }
        if fresh.revision != shown {
            return DecisionReport::new(DecisionOutcome::Changed, "This plan changed since you opened it", Some(fresh));
        }
        if let Rights { can_decide: false, cannot_decide_reason: Some(why), .. } = fresh.rights() {
            return DecisionReport::new(DecisionOutcome::NotPermitted, why, Some(fresh));
        }
        let me = match reviews.me().await {
            Ok(me) => me,
            Err(e) => return DecisionReport::new(DecisionOutcome::Failed, e.to_string(), Some(fresh)),
        };
        let request = DecisionRequest {
            verdict,
            revision: fresh.revision.clone(),
            comment: comment.clone(),
            idempotency_key: new_idempotency_key(),
        };
        match reviews.decide(plan_id.to_owned(), request).await {
            Ok(DecisionAnswer::Decided(plan)) => self.decided(*plan, verdict, &me, &comment, source).await,
            Ok(DecisionAnswer::Conflict { error, plan }) => {
                self.learn_outcome(&plan).await;
                let message = if error == "revision_mismatch" && !plan.is_decided() {
                    "This plan changed since you opened it".to_owned()
                } else {
                    format!("Already {}", continuing(&decided_line(&plan)))
                };
                let outcome =
                    if plan.is_decided() { DecisionOutcome::AlreadyDecided } else { DecisionOutcome::Changed };
                DecisionReport::new(outcome, message, Some(*plan))
            }
            Ok(DecisionAnswer::NotPermitted { message, .. }) => {
                DecisionReport::new(DecisionOutcome::NotPermitted, message, Some(fresh))
            }
            Ok(DecisionAnswer::Expired) => {
                DecisionReport::new(DecisionOutcome::Expired, "This plan expired before it was decided", Some(fresh))
            }
            Ok(DecisionAnswer::CommentRequired) => DecisionReport::new(
                DecisionOutcome::CommentRequired,
                "The Console requires a comment for this decision",
                Some(fresh),
            ),
            Err(ReviewError::NoAnswer(why)) => self.check_outcome(plan_id, verdict, &me, &comment, source, &why).await,
            Err(e) => DecisionReport::new(DecisionOutcome::Failed, e.to_string(), Some(fresh)),
        }
    }

    /// No answer came: the plan is read (never the decision sent again) until its outcome is known.
    async fn check_outcome(
        &self,
        plan_id: &str,
        verdict: Verdict,
        me: &Person,
        comment: &str,
        source: Source,
        why: &str,
    ) -> DecisionReport {
        if let Some(running) = &self.running {
            let _ = running.events.send(CoreEvent::DecisionChecking { plan_id: plan_id.to_owned() });
        }
        let Ok(reviews) = self.reviews().cloned() else {
            return DecisionReport::new(DecisionOutcome::Unknown, format!("outcome unknown: {why}"), None);
        };
        let mut delay = CHECK_FIRST_DELAY;
        for _ in 0..CHECKS {
            match reviews.details(plan_id.to_owned()).await {
                Ok(Some(plan)) if plan.status == verdict.status() && plan_decided_by(&plan, me) => {
                    return self.decided(plan, verdict, me, comment, source).await;
                }
                Ok(Some(plan)) if plan.is_decided() => {
                    self.learn_outcome(&plan).await;
                    let line = format!("Not decided by you: {}", continuing(&decided_line(&plan)));
                    return DecisionReport::new(DecisionOutcome::AlreadyDecided, line, Some(plan));
                }
                Ok(Some(plan)) => {
                    return DecisionReport::new(
                        DecisionOutcome::NotDecided,
                        "Not decided: the Console did not take the decision; the plan still waits",
                        Some(plan),
                    );
                }
                Ok(None) | Err(_) => {}
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(4));
        }
        DecisionReport::new(
            DecisionOutcome::Unknown,
            format!("Outcome unknown: the Console did not answer ({why}); check the plan in the Console"),
            None,
        )
    }

    /// The Console took the decision: the plan leaves the queue decided by the named person,
    /// with the audit row and the team action written with it, then the usual follow-up.
    async fn decided(
        &self,
        plan: PlanDetails,
        verdict: Verdict,
        me: &Person,
        comment: &str,
        source: Source,
    ) -> DecisionReport {
        let by = plan.decided_by.clone().unwrap_or_else(|| me.display());
        let actor = Actor::new(by.clone(), source);
        let now = Utc::now();
        let decision = Decision { id: new_action_id(), by: by.clone(), source: actor.source.clone(), at: now };
        let revision = plan.revision.clone();
        let comment_kept = (!comment.is_empty()).then(|| comment.to_owned());
        let store = self.store.clone();
        let plan_id = plan.plan_id.clone();
        let written = tokio::task::spawn_blocking(move || {
            store.change_plan(&plan_id, |p| {
                p.decide(verdict.status(), comment_kept.as_deref(), &decision)?;
                let kind = if verdict == Verdict::Approve { AuditAction::Approved } else { AuditAction::Rejected };
                let detail = crate::store::comment_detail(revision.as_deref(), comment_kept.as_deref());
                let mut audit = AuditEntry::new(&actor, kind, Some(&p.plan_id), detail);
                audit.at = now;
                let team = TeamAction {
                    id: decision.id.clone(),
                    plan_id: p.plan_id.clone(),
                    organization_id: p.organization_id.clone(),
                    run_id: Some(p.run_id.clone()),
                    action: TeamVerb::Decided,
                    by: decision.by.clone(),
                    at: now,
                    until: None,
                    status: Some(verdict.status().to_owned()),
                    comment: comment_kept.clone(),
                };
                Ok(Recorded { audit, team: Some(team) })
            })
        })
        .await;
        match written {
            Ok(Ok(_)) | Ok(Err(StoreError::UnknownPlan(_))) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "a decision the Console took could not be recorded here"),
            Err(e) => tracing::warn!(error = %e, "a decision the Console took could not be recorded here"),
        }
        if let Err(e) = self.after_plan_change(&plan.plan_id, true).await {
            tracing::warn!(error = %e, "a decision's change is not on disk yet");
        }
        let word = if verdict == Verdict::Approve { "Approved" } else { "Rejected" };
        let line = format!("{word} by {by} at {}", now.format("%H:%M"));
        DecisionReport::new(DecisionOutcome::Decided, line, Some(plan))
    }

    /// What the Console says of a plan decided elsewhere, kept here: it leaves the queue.
    async fn learn_outcome(&self, plan: &PlanDetails) {
        if !plan.is_decided() {
            return;
        }
        let store = self.store.clone();
        let (id, status, by, at) =
            (plan.plan_id.clone(), plan.status.clone(), plan.decided_by.clone(), plan.updated.unwrap_or_else(Utc::now));
        let resolved =
            tokio::task::spawn_blocking(move || store.resolve_in_console(&id, &status, by.as_deref(), at)).await;
        if let Ok(Ok(Some(_))) = resolved {
            if let Err(e) = self.after_plan_change(&plan.plan_id, true).await {
                tracing::warn!(error = %e, "a plan decided elsewhere is not on disk yet");
            }
        }
    }
}

/// Whether the Console names `me` as the plan's decider (an older Console names nobody).
fn plan_decided_by(plan: &PlanDetails, me: &Person) -> bool {
    match plan.decided_by.as_deref() {
        None => true,
        Some(by) => [Some(me.id.as_str()), me.email.as_deref(), me.name.as_deref()].contains(&Some(by)),
    }
}
