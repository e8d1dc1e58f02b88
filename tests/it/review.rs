//! Review and decide against a fake Console that serves the documented contract on loopback
//! (`docs/console-api.md`): details fetched and kept, the notification saying what the plan is,
//! and every guardrail of a decision (revision, idempotency key, never a blind retry, the
//! Console's word on who may decide).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zof_approvals::actions::{DecisionOutcome, DecisionReport};
use zof_approvals::console::{ConsoleSetup, ConsoleToken, RetryPolicy, TokenSource};
use zof_approvals::domain::audit::{AuditAction, AuditFilter};
use zof_approvals::domain::review::Verdict;
use zof_approvals::store::PlanState;
use zof_testkit::review_console::{OnDecision, ReviewConsole as Fake, TOKEN};

use crate::helpers::{bin, event_for, files_containing, spawn_with, Spawn, TestApp};

async fn connected(url: &str) -> TestApp {
    let settings = zof_approvals::config::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        console_api_url: url.into(),
        ..zof_approvals::config::Settings::default()
    };
    let setup = ConsoleSetup {
        token: TokenSource::Fixed(ConsoleToken::new(TOKEN).unwrap()),
        retry: RetryPolicy { first_delay: Duration::from_millis(20), max_delay: Duration::from_secs(1), attempts: 2 },
        watch_system: false,
        decision_timeout: Duration::from_millis(500),
    };
    spawn_with(Spawn { settings, console: Some(setup), ..Spawn::default() }).await
}

/// A plan delivered, its notification handed on, and the plan written. (The worker tells the
/// user first and writes the plan after, so the notification alone does not mean it is queued.)
async fn arrived(app: &TestApp, plan: &str) {
    assert_eq!(app.post_signed(&event_for(&format!("evt_{plan}"), plan, "org_abc")).await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !app.notified.0.lock().unwrap().iter().any(|p| p == plan)
        || app.panel.store_for_tests().plan(plan).unwrap().is_none_or(|p| p.notified_at.is_none())
    {
        assert!(Instant::now() < deadline, "{plan} was never notified and written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Console holding `plan` (which the signed-in person `may_decide`), an app connected to it,
/// and the plan delivered and notified.
async fn with_one_plan(plan: &str, may_decide: bool) -> (Fake, TestApp) {
    let (fake, url) = Fake::start().await;
    fake.add(plan, "low", may_decide);
    let app = connected(&url).await;
    arrived(&app, plan).await;
    (fake, app)
}

/// Approves `plan` as shown at its first revision, without a comment.
async fn approve_as_shown(app: &TestApp, plan: &str) -> DecisionReport {
    app.panel.decide(plan.into(), Verdict::Approve, Some("rev_1".into()), String::new()).await
}

fn notification_of(app: &TestApp, plan: &str) -> Option<(String, String)> {
    let seen = app.notified.0.lock().unwrap().clone();
    let at = seen.iter().position(|p| p == plan).unwrap();
    app.notified.1.lock().unwrap()[at].clone()
}

#[tokio::test]
async fn details_are_fetched_kept_and_shown_and_the_notification_says_what_the_plan_is() {
    let (fake, url) = Fake::start().await;
    fake.add("plan_d", "high", true);
    let app = connected(&url).await;
    arrived(&app, "plan_d").await;
    assert_eq!(
        notification_of(&app, "plan_d"),
        Some(("Approval needed: Roll back checkout to 4.2.0".into(), "prod-eu · high risk · checkout".into()))
    );
    let overview = app.panel.overview().await.unwrap();
    let queued = overview.queue.iter().find(|p| p.plan_id == "plan_d").unwrap();
    assert_eq!(queued.headline.title.as_deref(), Some("Roll back checkout to 4.2.0"));
    let review = app.panel.review("plan_d".into()).await.unwrap();
    let details = review.details.unwrap();
    assert!(review.fresh);
    assert_eq!((details.steps.len(), details.revision.as_deref()), (1, Some("rev_1")));
    assert!(details.diff.unwrap().contains("<script>alert(1)</script>"), "kept as text, as written");
    app.stop().await;
}

#[tokio::test]
async fn with_a_console_that_hangs_the_plan_is_still_notified_without_its_details() {
    let (fake, url) = Fake::start().await;
    fake.set(|c| c.details_delay = Duration::from_secs(30));
    let app = connected(&url).await;
    // The first reconciliation is over before the plan exists: only its details could say what it is.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.panel.console_status().state != zof_approvals::console::ConnectionState::Ok {
        assert!(Instant::now() < deadline, "the Console connection never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.add("plan_h", "low", true);
    arrived(&app, "plan_h").await;
    assert_eq!(notification_of(&app, "plan_h"), None, "told as before, with ids only");
    app.stop().await;
}

#[tokio::test]
async fn approving_sends_the_revision_shown_a_fresh_key_and_the_comment_once_and_records_who() {
    let (fake, url) = Fake::start().await;
    fake.add("plan_a", "medium", true);
    fake.add("plan_b", "medium", true);
    let app = connected(&url).await;
    arrived(&app, "plan_a").await;
    let report = app.panel.decide("plan_a".into(), Verdict::Approve, Some("rev_1".into()), "looks right".into()).await;
    assert_eq!(report.outcome, DecisionOutcome::Decided, "{}", report.message);
    assert!(report.message.starts_with("Approved by Alice Example"), "{}", report.message);
    let sent = fake.decisions();
    assert_eq!(sent.len(), 1);
    let (key, body) = &sent[0];
    assert_eq!(body, &json!({"decision": "approve", "revision": "rev_1", "comment": "looks right"}));
    let key = key.clone().expect("an Idempotency-Key header");
    assert_eq!(key.len(), 36);

    let plan = app.panel.store_for_tests().plan("plan_a").unwrap().unwrap();
    assert_eq!((plan.state, plan.console_status.as_deref()), (PlanState::Resolved, Some("approved")));
    let detail = app.panel.plan("plan_a".into()).await.unwrap();
    assert_eq!(detail.plan.resolution.as_deref().map(|l| l.starts_with("Approved by Alice Example at ")), Some(true));
    let rows = app.panel.audit(AuditFilter { plan_id: Some("plan_a".into()), ..AuditFilter::default() }).await.unwrap();
    let row = rows.iter().find(|r| r.action == AuditAction::Approved).expect("an approved row");
    assert_eq!((row.who.as_str(), row.source.to_string()), ("Alice Example", "panel".to_owned()));
    assert!(row.detail.contains("revision rev_1") && row.detail.contains("looks right"), "{}", row.detail);
    let queued = app.panel.store_for_tests().outgoing_team_actions(10).unwrap();
    assert!(queued.iter().any(|(_, a)| a.plan_id == "plan_a" && a.by == "Alice Example"), "shared with the team");

    // A second decision gets a key of its own.
    arrived(&app, "plan_b").await;
    app.panel.decide("plan_b".into(), Verdict::Reject, Some("rev_1".into()), "wrong version".into()).await;
    let sent = fake.decisions();
    assert_eq!(sent.len(), 2);
    assert_ne!(sent[1].0, Some(key));
    assert_eq!(sent[1].1["decision"], "reject");
    app.stop().await;
}

#[tokio::test]
async fn a_plan_that_changed_since_it_was_shown_is_not_sent_and_its_new_content_comes_back() {
    let (fake, app) = with_one_plan("plan_c", true).await;
    let shown = app.panel.review("plan_c".into()).await.unwrap().details.unwrap().revision;
    fake.set(|c| c.change_on_next_read = true);
    let report = app.panel.decide("plan_c".into(), Verdict::Approve, shown, String::new()).await;
    assert_eq!(report.outcome, DecisionOutcome::Changed);
    assert_eq!(report.message, "This plan changed since you opened it");
    let now = report.details.unwrap();
    assert_eq!(
        (now.revision.as_deref(), now.summary.as_deref()),
        (Some("rev_2"), Some("Now also restarts the payment workers"))
    );
    assert!(fake.decisions().is_empty(), "nothing was sent");
    app.stop().await;
}

#[tokio::test]
async fn a_plan_bob_already_approved_says_bob_and_nothing_is_retried() {
    let (fake, app) = with_one_plan("plan_x", true).await;
    fake.set(|c| c.on_decision = OnDecision::AlreadyDecidedByBob);
    let report = approve_as_shown(&app, "plan_x").await;
    assert_eq!(report.outcome, DecisionOutcome::AlreadyDecided);
    assert_eq!(report.message, "Already approved by Bob Example at 14:01");
    assert_eq!(fake.decisions().len(), 1, "one POST, never retried");
    let plan = app.panel.store_for_tests().plan("plan_x").unwrap().unwrap();
    assert_eq!((plan.state, plan.decided_by.as_deref()), (PlanState::Resolved, Some("Bob Example")));
    app.stop().await;
}

#[tokio::test]
async fn a_person_the_console_does_not_let_decide_gets_its_reason_and_sends_nothing() {
    let (fake, app) = with_one_plan("plan_s", false).await;
    let review = app.panel.review("plan_s".into()).await.unwrap();
    assert_eq!(review.details.as_ref().map(|d| d.can_decide().0), Some(false));
    let report = approve_as_shown(&app, "plan_s").await;
    assert_eq!(report.outcome, DecisionOutcome::NotPermitted);
    assert_eq!(report.message, "You requested this plan; someone else must approve it");
    assert!(fake.decisions().is_empty());
    // The Console can still refuse at the POST: its words are shown, nothing retried.
    fake.add("plan_s2", "low", true);
    fake.set(|c| c.on_decision = OnDecision::SelfApproval);
    arrived(&app, "plan_s2").await;
    let report = approve_as_shown(&app, "plan_s2").await;
    assert_eq!((report.outcome, fake.decisions().len()), (DecisionOutcome::NotPermitted, 1));
    app.stop().await;
}

#[tokio::test]
async fn a_rejection_without_a_reason_is_refused_here() {
    let (fake, app) = with_one_plan("plan_r", true).await;
    let reads = fake.0.lock().unwrap().details_reads;
    let report = app.panel.decide("plan_r".into(), Verdict::Reject, Some("rev_1".into()), "  ".into()).await;
    assert_eq!(report.outcome, DecisionOutcome::ReasonRequired);
    assert!(fake.decisions().is_empty());
    assert_eq!(fake.0.lock().unwrap().details_reads, reads, "not even the plan was read");
    app.stop().await;
}

#[tokio::test]
async fn a_decision_that_gets_no_answer_is_learned_from_the_plan_with_exactly_one_post() {
    let (fake, app) = with_one_plan("plan_t", true).await;
    fake.set(|c| c.on_decision = OnDecision::TakeThenHang);
    let report = approve_as_shown(&app, "plan_t").await;
    assert_eq!(report.outcome, DecisionOutcome::Decided, "{}", report.message);
    assert_eq!(fake.decisions().len(), 1, "the decision was never sent again");
    assert_eq!(app.panel.store_for_tests().plan("plan_t").unwrap().unwrap().state, PlanState::Resolved);
    app.stop().await;
}

#[tokio::test]
async fn an_expired_plan_says_so() {
    let (fake, app) = with_one_plan("plan_e", true).await;
    fake.set(|c| c.on_decision = OnDecision::Expired);
    let report = approve_as_shown(&app, "plan_e").await;
    assert_eq!(report.outcome, DecisionOutcome::Expired);
    assert_eq!(fake.decisions().len(), 1);
    app.stop().await;
}

/// `zof-approvals ARGS` against the app's data directory (through its control socket).
fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin())
        .args(args)
        .arg("--data-dir")
        .arg(app.dir.path().join("data"))
        .arg("--config-dir")
        .arg(app.dir.path().join("config"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_approve_and_reject_from_the_command_line() {
    let (fake, url) = Fake::start().await;
    fake.add("plan_k", "high", true);
    fake.add("plan_l", "low", true);
    let app = connected(&url).await;
    arrived(&app, "plan_k").await;
    arrived(&app, "plan_l").await;
    let shown = tokio::task::spawn_blocking({
        let dir = app.dir.clone();
        move || {
            std::process::Command::new(bin())
                .args(["show", "plan_k", "--json", "--data-dir"])
                .arg(dir.path().join("data"))
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let json: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = vec![
        "plan",
        "title",
        "summary",
        "risk",
        "environment",
        "service",
        "policy_pack",
        "requested_by",
        "steps",
        "diff",
        "revision",
        "expires_at",
        "can_decide",
        "cannot_decide_reason",
        "state",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!((json["risk"].as_str(), json["can_decide"].as_bool()), (Some("high"), Some(true)));

    let app = Arc::new(app);
    let run = |args: &'static [&'static str]| {
        let app = app.clone();
        tokio::task::spawn_blocking(move || cli(&app, args))
    };
    let text = run(&["show", "plan_k"]).await.unwrap();
    let out = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(out.contains("+<script>alert(1)</script>"), "{out}");
    assert!(!out.contains('\u{1b}') && out.contains("\\u{1b}[31m"), "escape sequences are shown, never sent: {out}");

    let no_yes = run(&["approve", "plan_k"]).await.unwrap();
    assert_eq!(no_yes.status.code(), Some(2), "approving without a terminal needs --yes");
    let no_reason = run(&["reject", "plan_l", "--reason", " "]).await.unwrap();
    assert_eq!(no_reason.status.code(), Some(2));
    assert!(fake.decisions().is_empty());

    let approved = run(&["approve", "plan_k", "--yes", "--comment", "ok"]).await.unwrap();
    assert_eq!(approved.status.code(), Some(0), "{}", String::from_utf8_lossy(&approved.stderr));
    assert!(String::from_utf8_lossy(&approved.stdout).contains("Approved by Alice Example"));
    fake.set(|c| c.on_decision = OnDecision::AlreadyDecidedByBob);
    let conflict = run(&["reject", "plan_l", "--reason", "no"]).await.unwrap();
    assert_eq!(conflict.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&conflict.stderr).contains("Bob Example"));

    let rows = app.panel.audit(AuditFilter::default()).await.unwrap();
    let approved_row = rows.iter().find(|r| r.action == AuditAction::Approved).unwrap();
    assert_eq!(approved_row.source.to_string(), "cli");
    // The token is nowhere on disk or in what the commands printed.
    for out in [&shown, &text, &approved, &conflict] {
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(TOKEN)
                && !String::from_utf8_lossy(&out.stderr).contains(TOKEN)
        );
    }
    assert!(files_containing(app.dir.path(), TOKEN).is_empty(), "the token is not in the store or the logs");
}
