//! The local path and the team path of each plan action, against one table of cases: the same
//! change made here (through [`Actions`]) and read from a teammate (through the store's
//! `apply_team_action`) must leave the plan the same way.

use chrono::{Duration, Utc};

use super::Actions;
use crate::config::{Paths, Settings};
use crate::domain::audit::{AuditAction, AuditFilter, Source};
use crate::domain::plan::{PlanRecord, PlanState};
use crate::domain::team::{TeamAction, TeamVerb};
use crate::envelope::{plan_pending_body, Envelope};
use crate::store::Store;
use crate::verify::Fingerprint;

fn open() -> (tempfile::TempDir, Actions) {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths { data_dir: dir.path().join("data"), config_dir: dir.path().join("config") };
    let store = Store::open(&paths.data_dir).unwrap();
    let settings = Settings { display_name: "alice".into(), ..Settings::default() };
    (dir, Actions::offline(store, paths, settings, None))
}

fn arrive(store: &Store, plan: &str) {
    let env = Envelope::parse(&plan_pending_body(&format!("e_{plan}"), Utc::now(), plan, "org", "run")).unwrap();
    store.record_event(&env, b"{}", Utc::now(), &Fingerprint("f".into())).unwrap();
    store.settle_event(&store.event(&env.id).unwrap().unwrap(), |_| {}).unwrap();
}

/// The plan's state before the action, set up directly in the store.
#[derive(Debug, Clone, Copy)]
enum Before {
    Pending,
    /// Pending, held back by quiet hours or a mute (to be summarized later).
    Held,
    Snoozed,
    Handled,
    Resolved,
}

fn prepare(store: &Store, plan: &str, before: Before) {
    arrive(store, plan);
    let earlier = Utc::now() - Duration::minutes(5);
    store
        .update_plan(plan, |p| match before {
            Before::Pending => {}
            Before::Held => p.held = true,
            Before::Snoozed => {
                p.state = PlanState::Snoozed;
                p.snoozed_until = Some(earlier + Duration::hours(1));
                p.snoozed_at = Some(earlier);
                p.snoozed_by = Some("carol".into());
                p.held = true;
            }
            Before::Handled => {
                p.state = PlanState::Handled;
                p.handled_at = Some(earlier);
                p.decided_by = Some("carol".into());
                p.decision_id = Some("act_0".into());
            }
            Before::Resolved => {
                p.state = PlanState::Resolved;
                p.resolved_at = Some(earlier);
                p.console_status = Some("approved".into());
            }
        })
        .unwrap();
}

/// What a person sees of a plan after an action, whoever took it.
fn seen(p: &PlanRecord) -> (PlanState, bool, bool, Option<String>, Option<String>) {
    (p.state, p.held, p.snoozed_until.is_some(), p.decided_by.clone(), p.snoozed_by.clone())
}

#[tokio::test]
async fn handle_and_snooze_do_the_same_to_a_plan_taken_here_or_read_from_a_teammate() {
    let cases = [Before::Pending, Before::Held, Before::Snoozed, Before::Handled, Before::Resolved];
    for verb in [TeamVerb::Handled, TeamVerb::Snoozed] {
        for before in cases {
            let (_d1, here) = open();
            prepare(here.store(), "p", before);
            let local = match verb {
                TeamVerb::Handled => here.handle("p", Source::Panel).await.map(|h| h.plan).ok(),
                _ => here.snooze("p", 30, Source::Panel).await.ok(),
            };
            let local = local.unwrap_or_else(|| here.store().plan("p").unwrap().unwrap());

            let (_d2, there) = open();
            prepare(there.store(), "p", before);
            let action = TeamAction {
                id: "act_9".into(),
                plan_id: "p".into(),
                organization_id: "org".into(),
                run_id: Some(there.store().plan("p").unwrap().unwrap().run_id),
                action: verb,
                by: "alice".into(),
                at: Utc::now(),
                until: (verb == TeamVerb::Snoozed).then(|| Utc::now() + Duration::minutes(30)),
                status: None,
                comment: None,
            };
            there.store().apply_team_action(&action, "laptop").unwrap();
            let remote = there.store().plan("p").unwrap().unwrap();
            assert_eq!(seen(&local), seen(&remote), "{verb} of a plan that was {before:?}");
        }
    }
}

#[tokio::test]
async fn an_action_taken_with_nothing_running_is_queued_for_the_team_with_its_audit_row() {
    let (_d, actions) = open();
    arrive(actions.store(), "p");
    let done = actions.handle("p", Source::Cli).await.unwrap();
    let queued = actions.store().outgoing_team_actions(10).unwrap();
    assert_eq!(queued.len(), 1, "queued for the team though no relay runs");
    let (_, action) = &queued[0];
    assert_eq!((action.action, action.by.as_str(), action.plan_id.as_str()), (TeamVerb::Handled, "alice", "p"));
    assert_eq!(done.plan.decision_id.as_deref(), Some(action.id.as_str()), "the same decision id everywhere");
    let rows = actions.store().audit(&AuditFilter::default()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].action, rows[0].source.to_string()), (AuditAction::Handled, "cli".to_owned()));
    // Its own action coming back over the relay is recognised, not applied twice.
    assert_eq!(actions.store().apply_team_action(action, "me").unwrap(), crate::domain::plan::TeamOutcome::Seen);
}

#[tokio::test]
async fn a_snooze_that_ends_is_recorded_under_the_snoozes_own_name_and_source_from_the_plan() {
    let (_d, actions) = open();
    arrive(actions.store(), "p");
    actions.snooze("p", 30, Source::Notification).await.unwrap();
    let snoozed = actions.store().plan("p").unwrap().unwrap();
    assert_eq!(snoozed.snoozed_source, Some(Source::Notification));
    // The audit log is pruned past its window; the plan still knows who snoozed it and from where.
    actions.store().prune(Utc::now() + Duration::days(1)).unwrap_or_default();
    let woken = actions.store().wake(&snoozed, Utc::now() + Duration::hours(1)).unwrap();
    assert_eq!(woken.state, PlanState::Pending);
    let rows = actions.store().audit(&AuditFilter::default()).unwrap();
    let ended = rows.iter().find(|r| r.action == AuditAction::Unsnoozed).unwrap();
    assert_eq!((ended.who.as_str(), ended.source.clone()), ("alice", Source::Notification));
}

#[tokio::test]
async fn a_mute_from_the_tray_is_recorded_as_from_the_tray() {
    let (_d, actions) = open();
    actions.mute(30, Source::Tray).await.unwrap();
    let rows = actions.store().audit(&AuditFilter::default()).unwrap();
    assert_eq!((rows[0].action, rows[0].source.to_string()), (AuditAction::MuteChanged, "tray".to_owned()));
}
