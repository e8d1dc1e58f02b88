//! Team actions in the store ([`crate::domain::team`]): the ids already applied (`team_seen`),
//! this laptop's own actions waiting to be published (`team_out`, written in the same
//! transaction as the change they share and kept until JetStream acknowledged them), and
//! teammates' actions on plans that have not arrived here yet (`team_early`, applied as the plan
//! arrives, so it is never announced). What an action does to a plan is the domain's
//! [`PlanRecord::apply_team`], the same transition as the action taken here.

use chrono::{DateTime, Utc};

use super::changes::{Changed, Recorded};
use super::records::{DeliveryRecord, DeliveryVerdict, PlanRecord};
use super::{corrupt, Inner, Store, StoreError};
use crate::domain::audit::{Actor, AuditAction, AuditEntry, Source};
use crate::domain::plan::{NotApplied, TeamOutcome};
use crate::domain::team::{TeamAction, TeamVerb};

impl Store {
    /// Woken whenever an action is queued for the team.
    pub fn team_queued(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.shared.team_queued.clone()
    }

    /// An action joined the queue: the publisher, if one runs, wakes.
    pub(super) fn team_out_added(&self) {
        self.shared.team_queued.notify_one();
    }

    /// Forgets what is past the retention window: ids applied, decisions whose plan never
    /// came, and own actions no relay took in that time (a teammate's consumer would not
    /// accept them any more).
    pub(super) fn prune_team(&self, cutoff: DateTime<Utc>) -> Result<(), StoreError> {
        self.with(|i| {
            for kv in i.team_seen.iter() {
                let (key, value) = kv?;
                let at = value.as_ref().try_into().map(i64::from_be_bytes).unwrap_or(i64::MIN);
                if at < cutoff.timestamp() {
                    i.team_seen.remove(key)?;
                }
            }
            for tree in [&i.team_early, &i.team_out] {
                for kv in tree.iter() {
                    let (key, value) = kv?;
                    if TeamAction::parse(&value).map_or(true, |a| a.at < cutoff) {
                        tree.remove(key)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Claims an action id: `true` the first time it is seen here, `false` after.
    fn claim_team_action(&self, i: &Inner, id: &str) -> Result<bool, StoreError> {
        let now = Utc::now().timestamp().to_be_bytes();
        Ok(i.team_seen.compare_and_swap(id.as_bytes(), None as Option<&[u8]>, Some(&now[..]))?.is_ok())
    }

    /// The actions still to publish, oldest first, with their queue keys.
    pub fn outgoing_team_actions(&self, limit: usize) -> Result<Vec<(u64, TeamAction)>, StoreError> {
        self.with(|i| {
            let mut out = Vec::new();
            for kv in i.team_out.iter().take(limit) {
                let (key, value) = kv?;
                let seq =
                    key.as_ref().try_into().map(u64::from_be_bytes).map_err(|_| corrupt("team_out", "bad key"))?;
                match TeamAction::parse(&value) {
                    Ok(action) => out.push((seq, action)),
                    Err(e) => {
                        self.quarantine(i, "team_out", &key, &value, &corrupt("team_out", e))?;
                    }
                }
            }
            Ok(out)
        })
    }

    /// JetStream acknowledged the action: it leaves the queue.
    pub fn sent_team_action(&self, seq: u64) -> Result<(), StoreError> {
        self.with(|i| {
            i.team_out.remove(seq.to_be_bytes())?;
            Ok(())
        })
    }

    pub fn outgoing_team_count(&self) -> usize {
        self.with(|i| Ok(i.team_out.len())).unwrap_or(0)
    }

    /// Applies a teammate's action read by this laptop's `consumer`, once per action id, and
    /// records it (or why it was not applied) in the audit log with source `team:<consumer>`.
    pub fn apply_team_action(&self, action: &TeamAction, consumer: &str) -> Result<TeamOutcome, StoreError> {
        let fresh = self.with(|i| self.claim_team_action(i, &action.id))?;
        if !fresh {
            return Ok(TeamOutcome::Seen);
        }
        let actor = Actor::new(action.by.clone(), Source::Team(consumer.to_owned()));
        if self.plan(&action.plan_id)?.is_none() {
            return self.keep_early(action, &actor);
        }
        let changed = self.change_plan(&action.plan_id, |plan| {
            plan.apply_team(action, actor.source.clone(), Utc::now())?;
            let (kind, detail) = applied_row(action);
            Ok(Recorded { audit: row(&actor, kind, action, detail), team: None })
        });
        match changed {
            Ok(Changed::Applied(plan)) => {
                if action.action == TeamVerb::Resolved {
                    self.log_resolution(&plan, action.status.as_deref().unwrap_or("resolved"), Some(&action.by))?;
                }
                Ok(TeamOutcome::Applied(Box::new(plan)))
            }
            Ok(Changed::NotApplied(_, why)) => {
                let detail = format!("{} by {}: not applied, {why}", action.action, action.by);
                self.append_audit(&row(&actor, AuditAction::Ignored, action, detail))?;
                Ok(TeamOutcome::NotApplied(why))
            }
            Err(StoreError::UnknownPlan(_)) => self.keep_early(action, &actor),
            Err(e) => Err(e),
        }
    }

    /// The delivery log's line for a plan the Console decided (here, or as a teammate heard).
    pub(super) fn log_resolution(&self, plan: &PlanRecord, status: &str, by: Option<&str>) -> Result<(), StoreError> {
        let by = by.map(|b| format!(" by {b}")).unwrap_or_default();
        self.record_delivery(&DeliveryRecord {
            at: Utc::now(),
            event_id: Some(plan.event_id.clone()),
            verdict: DeliveryVerdict::Ignored,
            status: 200,
            code: "console_resolved".into(),
            reason: format!("plan `{}` was {status} in the Console{by}; it left the queue", plan.plan_id),
            fingerprint: None,
        })
    }

    /// An action for a plan not here yet: kept, and applied when the plan arrives. Of two
    /// kept for one plan, a "handled" outranks a snooze.
    fn keep_early(&self, action: &TeamAction, actor: &Actor) -> Result<TeamOutcome, StoreError> {
        let kept = self.with(|i| {
            if let Some(bytes) = i.team_early.get(action.plan_id.as_bytes())? {
                if let Ok(other) = TeamAction::parse(&bytes) {
                    let outranks = match (other.action, action.action) {
                        (TeamVerb::Snoozed, TeamVerb::Snoozed) => (other.at, &other.id) > (action.at, &action.id),
                        (TeamVerb::Snoozed, _) => false,
                        (_, TeamVerb::Snoozed) => true,
                        _ => (other.at, &other.id) < (action.at, &action.id),
                    };
                    if outranks {
                        return Ok(false);
                    }
                }
            }
            i.team_early.insert(action.plan_id.as_bytes(), action.to_body())?;
            Ok(true)
        })?;
        if !kept {
            let why = NotApplied::EarlierDecisionWaits;
            let detail = format!("{} by {}: not applied, {why}", action.action, action.by);
            self.append_audit(&row(actor, AuditAction::Ignored, action, detail))?;
            return Ok(TeamOutcome::NotApplied(why));
        }
        let (kind, detail) = applied_row(action);
        let detail = if detail.is_empty() {
            "before the plan arrived here".to_owned()
        } else {
            format!("{detail}; before the plan arrived here")
        };
        self.append_audit(&row(actor, kind, action, detail))?;
        Ok(TeamOutcome::Early)
    }

    /// The teammate's decision waiting for `plan_id` to arrive, if one is.
    pub(super) fn early_decision(&self, plan_id: &str) -> Result<Option<TeamAction>, StoreError> {
        self.with(|i| Ok(i.team_early.get(plan_id.as_bytes())?.and_then(|bytes| TeamAction::parse(&bytes).ok())))
    }

    /// Forgets a waiting decision once its plan is written.
    pub(super) fn drop_early_decision(&self, plan_id: &str) -> Result<(), StoreError> {
        self.with(|i| {
            i.team_early.remove(plan_id.as_bytes())?;
            Ok(())
        })
    }
}

/// A new plan with the teammate's decision that waited for it (see [`Store::keep_early`]): the
/// same transition as when the plan is here. One that no longer applies (a snooze that has
/// ended, another organization's, one answering another run) leaves the plan as it arrives.
pub(super) fn with_early_decision(mut plan: PlanRecord, action: Option<&TeamAction>) -> PlanRecord {
    if let Some(action) = action {
        let _ = plan.apply_team(action, Source::Team("relay".into()), Utc::now());
    }
    plan
}

/// The audit row's action and detail for a teammate's action that applied.
fn applied_row(action: &TeamAction) -> (AuditAction, String) {
    match action.action {
        TeamVerb::Snoozed => (AuditAction::Snoozed, until_detail(action)),
        TeamVerb::Handled => (AuditAction::Handled, String::new()),
        TeamVerb::Resolved => (AuditAction::Resolved, action.status.clone().unwrap_or_default()),
        TeamVerb::Decided if action.status.as_deref() == Some("rejected") => {
            (AuditAction::Rejected, comment_detail(None, action.comment.as_deref()))
        }
        TeamVerb::Decided => (AuditAction::Approved, comment_detail(None, action.comment.as_deref())),
    }
}

/// An approval's or rejection's detail: the revision decided on and the comment.
pub(crate) fn comment_detail(revision: Option<&str>, comment: Option<&str>) -> String {
    let mut parts = Vec::new();
    if let Some(r) = revision {
        parts.push(format!("revision {r}"));
    }
    if let Some(c) = comment.filter(|c| !c.is_empty()) {
        parts.push(format!("comment: {c}"));
    }
    parts.join("; ")
}

fn until_detail(action: &TeamAction) -> String {
    action.until.map(|t| format!("until {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))).unwrap_or_default()
}

fn row(actor: &Actor, kind: AuditAction, action: &TeamAction, detail: String) -> AuditEntry {
    let mut entry = AuditEntry::new(actor, kind, Some(&action.plan_id), detail);
    entry.at = action.at.min(Utc::now());
    entry
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::domain::audit::AuditFilter;
    use crate::envelope::{plan_pending_body, Envelope};
    use crate::store::PlanState;
    use crate::verify::Fingerprint;

    fn arrive(store: &Store, plan: &str) -> PlanRecord {
        announce(store, plan, &format!("e_{plan}"), "run")
    }

    fn announce(store: &Store, plan: &str, event: &str, run: &str) -> PlanRecord {
        let env = Envelope::parse(&plan_pending_body(event, Utc::now(), plan, "org", run)).unwrap();
        store.record_event(&env, b"{}", Utc::now(), &Fingerprint("f".into())).unwrap();
        store.settle_event(&store.event(&env.id).unwrap().unwrap(), |_| {}).unwrap().0
    }

    fn act(id: &str, plan: &str, verb: TeamVerb, by: &str, at: DateTime<Utc>) -> TeamAction {
        TeamAction {
            id: id.into(),
            plan_id: plan.into(),
            organization_id: "org".into(),
            run_id: Some("run".into()),
            action: verb,
            by: by.into(),
            at,
            until: (verb == TeamVerb::Snoozed).then(|| Utc::now() + Duration::minutes(30)),
            status: (verb == TeamVerb::Resolved).then(|| "approved".to_owned()),
            comment: None,
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn the_earliest_handled_stands_whichever_arrives_first() {
        let now = Utc::now();
        let (early, late) = (
            act("act_b", "p", TeamVerb::Handled, "bob", now),
            act("act_a", "p", TeamVerb::Handled, "alice", now + Duration::seconds(1)),
        );
        for order in [[&early, &late], [&late, &early]] {
            let (_d, store) = open();
            arrive(&store, "p");
            for a in order {
                store.apply_team_action(a, "me").unwrap();
            }
            let plan = store.plan("p").unwrap().unwrap();
            assert_eq!((plan.state, plan.decided_by.as_deref()), (PlanState::Handled, Some("bob")));
        }
    }

    #[test]
    fn an_old_handled_replayed_once_its_id_is_forgotten_does_not_decide_the_plan_announced_again() {
        let (_d, store) = open();
        arrive(&store, "p");
        let handled = act("act_1", "p", TeamVerb::Handled, "alice", Utc::now());
        assert!(matches!(store.apply_team_action(&handled, "me").unwrap(), TeamOutcome::Applied(_)));
        let again = announce(&store, "p", "e_p_again", "run_2");
        assert_eq!((again.state, again.run_id.as_str()), (PlanState::Pending, "run_2"));
        // The applied ids are forgotten after the retention window (or this is a new laptop).
        store.prune_team(Utc::now() + Duration::seconds(1)).unwrap();
        assert_eq!(
            store.apply_team_action(&handled, "me").unwrap(),
            TeamOutcome::NotApplied(NotApplied::OtherRun { action: "run".into(), plan: "run_2".into() })
        );
        assert_eq!(store.plan("p").unwrap().unwrap().state, PlanState::Pending);
    }

    #[test]
    fn an_action_is_applied_once_and_a_snooze_of_a_handled_plan_is_logged_not_applied() {
        let (_d, store) = open();
        arrive(&store, "p");
        let handled = act("act_1", "p", TeamVerb::Handled, "alice", Utc::now());
        assert!(matches!(store.apply_team_action(&handled, "me").unwrap(), TeamOutcome::Applied(_)));
        assert_eq!(store.apply_team_action(&handled, "me").unwrap(), TeamOutcome::Seen);
        let snooze = act("act_2", "p", TeamVerb::Snoozed, "bob", Utc::now());
        assert!(matches!(store.apply_team_action(&snooze, "me").unwrap(), TeamOutcome::NotApplied(_)));
        assert_eq!(store.plan("p").unwrap().unwrap().state, PlanState::Handled);
        let rows = store.audit(&AuditFilter::default()).unwrap();
        let kinds: Vec<_> = rows.iter().map(|r| (r.action, r.who.as_str(), r.source.to_string())).collect();
        assert_eq!(
            kinds,
            [
                (AuditAction::Ignored, "bob", "team:me".to_owned()),
                (AuditAction::Handled, "alice", "team:me".to_owned())
            ]
        );
    }

    #[test]
    fn of_two_snoozes_the_later_stands_and_one_that_already_ended_is_not_applied() {
        let now = Utc::now();
        let first = act("act_1", "p", TeamVerb::Snoozed, "alice", now);
        let second = TeamAction {
            until: Some(now + Duration::minutes(60)),
            ..act("act_2", "p", TeamVerb::Snoozed, "bob", now + Duration::seconds(5))
        };
        for order in [[&first, &second], [&second, &first]] {
            let (_d, store) = open();
            arrive(&store, "p");
            for a in order {
                store.apply_team_action(a, "me").unwrap();
            }
            let plan = store.plan("p").unwrap().unwrap();
            assert_eq!(
                (plan.state, plan.snoozed_by.as_deref(), plan.snoozed_until),
                (PlanState::Snoozed, Some("bob"), second.until)
            );
        }
        let (_d, store) = open();
        arrive(&store, "q");
        let ended = TeamAction {
            until: Some(now - Duration::minutes(1)),
            ..act("act_3", "q", TeamVerb::Snoozed, "alice", now)
        };
        assert!(matches!(
            store.apply_team_action(&ended, "me").unwrap(),
            TeamOutcome::NotApplied(NotApplied::SnoozeEnded)
        ));
        assert_eq!(store.plan("q").unwrap().unwrap().state, PlanState::Pending);
    }

    #[test]
    fn a_decision_for_a_plan_not_here_yet_waits_for_it_and_the_plan_arrives_decided() {
        let (_d, store) = open();
        let snooze = act("act_1", "p", TeamVerb::Snoozed, "bob", Utc::now());
        let handled = act("act_2", "p", TeamVerb::Handled, "alice", Utc::now());
        assert_eq!(store.apply_team_action(&snooze, "me").unwrap(), TeamOutcome::Early);
        assert_eq!(store.apply_team_action(&handled, "me").unwrap(), TeamOutcome::Early, "handled outranks a snooze");
        let later = act("act_3", "p", TeamVerb::Snoozed, "carol", Utc::now());
        assert!(matches!(store.apply_team_action(&later, "me").unwrap(), TeamOutcome::NotApplied(_)));
        let plan = arrive(&store, "p");
        assert_eq!((plan.state, plan.decided_by.as_deref()), (PlanState::Handled, Some("alice")));
        assert_eq!(store.early_decision("p").unwrap(), None, "used once, then forgotten");
    }

    #[test]
    fn a_console_resolution_is_queued_for_the_team_whatever_runs_and_resolves_a_teammates_plan() {
        let (_d, store) = open();
        arrive(&store, "q");
        store.resolve_in_console("q", "rejected", Some("dana@example.com"), Utc::now()).unwrap();
        let out = store.outgoing_team_actions(10).unwrap();
        assert_eq!(out.len(), 1);
        let (seq, shared) = &out[0];
        assert_eq!(
            (shared.action, shared.status.as_deref(), shared.by.as_str()),
            (TeamVerb::Resolved, Some("rejected"), "dana@example.com")
        );
        // Its own action coming back is recognised.
        assert_eq!(store.apply_team_action(shared, "me").unwrap(), TeamOutcome::Seen);
        store.sent_team_action(*seq).unwrap();
        assert_eq!(store.outgoing_team_count(), 0);

        let (_d2, teammate) = open();
        arrive(&teammate, "q");
        assert!(matches!(teammate.apply_team_action(shared, "mate").unwrap(), TeamOutcome::Applied(_)));
        let plan = teammate.plan("q").unwrap().unwrap();
        assert_eq!((plan.state, plan.console_status.as_deref()), (PlanState::Resolved, Some("rejected")));
        assert_eq!(teammate.outgoing_team_count(), 0, "a resolution read over the relay is not sent on");
    }
}
