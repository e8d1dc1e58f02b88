//! Native notifications end to end: signed deliveries over HTTP, the real notify-rust client, a
//! private session bus, and a recording `org.freedesktop.Notifications` server on it.
//!
//! The notification client finds its bus through `DBUS_SESSION_BUS_ADDRESS`, which is
//! process-wide, so these tests share one private bus and take turns.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test here

use std::sync::Arc;

use std::time::Duration;

use chrono::{Local, Timelike, Utc};
use tokio::sync::broadcast;
use zof_approvals::app::{AppConfig, Application, SecretSource};
use zof_approvals::config::{Paths, QuietHours, Settings};
use zof_approvals::console::{ConsoleSetup, ConsoleToken, TokenSource};
use zof_approvals::envelope::plan_pending_body;
use zof_approvals::events::CoreEvent;
use zof_approvals::notify::DesktopNotifier;
use zof_approvals::panel::Panel;
use zof_approvals::store::PlanState;
use zof_approvals::verify::{sign_zof, Secret, SecretSet};
use zof_testkit::{BusTurn, Call, NotificationRecorder};

const SECRET: &str = "notify-test-secret-0123456789";

/// One test at a time, each with its own bus (see [`BusTurn`]).
async fn turn() -> BusTurn {
    BusTurn::take().await.expect("dbus-daemon (package dbus) is needed for these tests")
}

async fn recorder(turn: &BusTurn) -> NotificationRecorder {
    turn.recorder().await.expect("could not own org.freedesktop.Notifications on the test bus")
}

struct App {
    url: String,
    panel: Panel,
    events: broadcast::Receiver<CoreEvent>,
    client: reqwest::Client,
    dir: Arc<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

async fn spawn(dir: Option<Arc<tempfile::TempDir>>, tweak: impl FnOnce(&mut Settings)) -> App {
    spawn_connected(dir, tweak, None).await
}

async fn spawn_connected(
    dir: Option<Arc<tempfile::TempDir>>,
    tweak: impl FnOnce(&mut Settings),
    console: Option<ConsoleSetup>,
) -> App {
    let dir = dir.unwrap_or_else(|| Arc::new(tempfile::tempdir().unwrap()));
    let mut settings = Settings { listen: "127.0.0.1:0".parse().unwrap(), ..Settings::default() };
    tweak(&mut settings);
    let config = AppConfig {
        paths: Paths { data_dir: dir.path().join("data"), config_dir: dir.path().join("config") },
        settings,
        secrets: SecretSource::Fixed(SecretSet::single(Secret::new(SECRET).unwrap())),
    };
    let notifier = Arc::new(DesktopNotifier::new(tokio::runtime::Handle::current()));
    let app = match console {
        Some(setup) => Application::build_with_console(config, notifier, setup).await.unwrap(),
        None => Application::build(config, notifier).await.unwrap(),
    };
    let url = app.webhook_url();
    let panel = app.panel();
    let events = app.subscribe();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    App { url, panel, events, client: reqwest::Client::new(), dir, stop: Some(tx), task: Some(task) }
}

impl App {
    async fn deliver(&self, id: &str, plan: &str) -> String {
        let body = plan_pending_body(id, Utc::now(), plan, "org_abc", "run_xyz");
        let sig = sign_zof(&Secret::new(SECRET).unwrap(), &body);
        let resp = self.client.post(&self.url).header("x-zof-signature", sig).body(body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        v["status"].as_str().unwrap().to_owned()
    }

    async fn stop(mut self) -> Arc<tempfile::TempDir> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
        self.dir.clone()
    }
}

fn notifies(calls: &[Call]) -> Vec<(u32, u32, String, String, Option<u8>)> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Notify { id, replaces_id, summary, body, urgency, .. } => {
                Some((*id, *replaces_id, summary.clone(), body.clone(), *urgency))
            }
            Call::Close { .. } => None,
        })
        .collect()
}

fn closes(calls: &[Call]) -> Vec<u32> {
    calls.iter().filter_map(|c| if let Call::Close { id, .. } = c { Some(*id) } else { None }).collect()
}

/// Waits until `check` holds on the recorded calls.
async fn until(rec: &NotificationRecorder, what: &str, check: impl Fn(&[Call]) -> bool) -> Vec<Call> {
    for _ in 0..150 {
        let calls = rec.calls();
        if check(&calls) {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("timed out waiting until {what}: {:#?}", rec.calls());
}

async fn event(app: &mut App, what: &str, mut matches: impl FnMut(&CoreEvent) -> bool) -> CoreEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    loop {
        match tokio::time::timeout_at(deadline, app.events.recv()).await {
            Ok(Ok(e)) if matches(&e) => return e,
            Ok(_) => {}
            Err(_) => panic!("no {what} event"),
        }
    }
}

/// Clicks (or presses `key` on) a notification until aborted: notify-rust starts listening for
/// the signal only after `Notify` returned, so one click may come too early.
fn keep_clicking(rec: &NotificationRecorder, id: u32, key: &'static str) -> tokio::task::JoinHandle<()> {
    let rec = rec.clone();
    tokio::spawn(async move {
        loop {
            let _ = rec.invoke(id, key).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn body_names(calls: &[Call], plan: &str) -> usize {
    notifies(calls).iter().filter(|n| n.3.contains(&format!("Plan {plan} "))).count()
}

/// Waits until the worker has written `plan`: its notification was shown, held or failed by then.
async fn written(app: &mut App, plan: &str) {
    event(app, &format!("{plan} written"), |e| matches!(e, CoreEvent::PlanChanged { plan_id } if plan_id == plan))
        .await;
}

/// Waits for a whole pass of the worker's time-based work (woken snoozes, the held summary,
/// escalations) that starts after this call, so that a test may then say it raised nothing more.
/// A sentinel plan is delivered and announced, then made old enough to escalate; the pass that
/// escalates it announces its changes only after all of that pass's work is done. Needs
/// notifications on (no quiet hours, no mute); the escalation skips coalescing.
async fn upkeep_pass(app: &mut App, sentinel: &str) {
    app.deliver(&format!("evt_{sentinel}"), sentinel).await;
    written(app, sentinel).await;
    let old = Utc::now() - chrono::Duration::minutes(31); // past the default 30-minute delay
    zof_approvals_store(app).update_plan(sentinel, |p| p.received_at = old).unwrap();
    // Passes are spaced by up to 50 times the previous one's length: allow for a loaded machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, app.events.recv()).await {
            Ok(Ok(CoreEvent::PlanChanged { plan_id })) if plan_id == sentinel => return,
            Ok(_) => {}
            Err(_) => panic!("the sentinel {sentinel} was not escalated"),
        }
    }
}

/// Waits until nobody owns `org.freedesktop.Notifications` on the test bus.
async fn until_no_notification_server(turn: &BusTurn) {
    for _ in 0..100 {
        let bus = format!("--bus={}", turn.bus.address);
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("dbus-send")
                .arg(bus)
                .args(["--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus"])
                .args(["org.freedesktop.DBus.NameHasOwner", "string:org.freedesktop.Notifications"])
                .output()
        })
        .await
        .unwrap()
        .expect("dbus-send (package dbus) is needed for these tests");
        if String::from_utf8_lossy(&out.stdout).contains("boolean false") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("org.freedesktop.Notifications is still owned on the test bus");
}

#[tokio::test]
async fn each_pending_plan_raises_one_actionable_notification() {
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let app = spawn(None, |_| {}).await;
    assert_eq!(app.deliver("evt_n1", "plan_n1").await, "accepted");
    assert_eq!(app.deliver("evt_n2", "plan_n2").await, "accepted");
    let calls = until(&rec, "two notifications", |c| notifies(c).len() >= 2).await;
    let Call::Notify { app_name, summary, body, actions, urgency, .. } = &calls[0] else { panic!() };
    assert_eq!((app_name.as_str(), summary.as_str()), ("Zof Approvals", "Remediation plan awaits approval"));
    assert!(body.contains("plan_n1") && body.contains("run_xyz") && body.contains("org_abc"), "{body}");
    assert_eq!(actions, &["default", "Review", "review", "Review", "snooze", "Snooze 1 h"]);
    assert_eq!(*urgency, Some(1));
    assert_eq!(body_names(&calls, "plan_n2"), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_duplicate_delivery_raises_nothing() {
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let app = spawn(None, |_| {}).await;
    assert_eq!(app.deliver("evt_d", "plan_d").await, "accepted");
    assert_eq!(app.deliver("evt_d", "plan_d").await, "duplicate");
    // The worker takes entries in order: once a later plan is announced, the duplicate's turn is over.
    assert_eq!(app.deliver("evt_d_later", "plan_d_later").await, "accepted");
    let calls = until(&rec, "the later plan's notification", |c| body_names(c, "plan_d_later") == 1).await;
    assert_eq!(body_names(&calls, "plan_d"), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_burst_of_fifty_is_coalesced_into_at_most_four_notifications() {
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let app = Arc::new(spawn(None, |_| {}).await);
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..50 {
        let app = app.clone();
        sends.spawn(async move { app.deliver(&format!("evt_b{i}"), &format!("plan_b{i}")).await });
    }
    while let Some(r) = sends.join_next().await {
        assert_eq!(r.unwrap(), "accepted");
    }
    let calls = until(&rec, "the summary counts 47 plans", |c| {
        notifies(c).last().is_some_and(|n| n.2 == "47 plans await approval")
    })
    .await;
    let distinct: std::collections::HashSet<u32> = notifies(&calls).iter().map(|n| n.0).collect();
    assert!(distinct.len() <= 4, "{} notifications: {:#?}", distinct.len(), notifies(&calls));
    let summary_id = notifies(&calls).last().unwrap().0;
    assert!(
        notifies(&calls).iter().filter(|n| n.0 == summary_id).skip(1).all(|n| n.1 == summary_id),
        "updated in place"
    );
    let app = Arc::into_inner(app).unwrap();
    app.stop().await;
}

#[tokio::test]
async fn clicking_a_notification_opens_that_plan_and_the_summary_opens_the_queue() {
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let mut app = spawn(None, |s| s.notifications.coalesce_threshold = 1).await;
    app.deliver("evt_c1", "plan_c1").await;
    let calls = until(&rec, "a notification", |c| !notifies(c).is_empty()).await;
    let id = notifies(&calls)[0].0;
    let clicker = keep_clicking(&rec, id, "default");
    let e = event(&mut app, "OpenPlan", |e| matches!(e, CoreEvent::OpenPlan { .. })).await;
    clicker.abort();
    assert_eq!(e, CoreEvent::OpenPlan { plan_id: "plan_c1".into() });

    app.deliver("evt_c2", "plan_c2").await;
    let calls = until(&rec, "a summary", |c| notifies(c).iter().any(|n| n.2.contains("1 plan awaits approval"))).await;
    let summary = notifies(&calls).iter().find(|n| n.2.contains("awaits approval") && n.2.starts_with('1')).unwrap().0;
    let clicker = keep_clicking(&rec, summary, "default");
    event(&mut app, "OpenQueue", |e| matches!(e, CoreEvent::OpenQueue)).await;
    clicker.abort();
    app.stop().await;
}

#[tokio::test]
async fn snooze_withholds_the_plan_and_raises_it_again_later() {
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let mut app = spawn(None, |_| {}).await;
    app.deliver("evt_s", "plan_s").await;
    let calls = until(&rec, "a notification", |c| !notifies(c).is_empty()).await;
    let id = notifies(&calls)[0].0;
    let clicker = keep_clicking(&rec, id, "snooze");
    event(&mut app, "Snooze", |e| matches!(e, CoreEvent::Snooze { .. })).await;
    clicker.abort();
    until(&rec, "the snoozed notification is closed", |c| closes(c).contains(&id)).await;
    let plan = app.panel.plan("plan_s".into()).await.unwrap().plan;
    assert_eq!(plan.state, PlanState::Snoozed);
    let until_at = plan.snoozed_until.unwrap();
    assert!(until_at > Utc::now() + chrono::Duration::minutes(59));
    upkeep_pass(&mut app, "plan_s_sentinel").await;
    assert_eq!(body_names(&rec.calls(), "plan_s"), 1, "nothing while snoozed");
    // The hour passes.
    let store = zof_approvals_store(&app);
    store.update_plan("plan_s", |p| p.snoozed_until = Some(Utc::now() - chrono::Duration::seconds(1))).unwrap();
    until(&rec, "the plan is raised again", |c| body_names(c, "plan_s") == 2).await;
    assert_eq!(app.panel.plan("plan_s".into()).await.unwrap().plan.state, PlanState::Pending);
    app.stop().await;
}

/// The click goes to the core, which writes the snooze as the panel's button does: durably.
#[tokio::test]
async fn a_snooze_chosen_on_a_notification_is_kept_across_a_restart() {
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let mut app = spawn(None, |_| {}).await;
    app.deliver("evt_sr", "plan_sr").await;
    let calls = until(&rec, "a notification", |c| !notifies(c).is_empty()).await;
    let clicker = keep_clicking(&rec, notifies(&calls)[0].0, "snooze");
    let snoozed = event(&mut app, "Snooze", |e| matches!(e, CoreEvent::Snooze { .. })).await;
    clicker.abort();
    let CoreEvent::Snooze { plan_id, until: snoozed_until } = snoozed else { unreachable!() };
    assert_eq!(plan_id, "plan_sr");
    let dir = app.stop().await;
    let app = spawn(Some(dir), |_| {}).await;
    let plan = app.panel.plan("plan_sr".into()).await.unwrap().plan;
    assert_eq!((plan.state, plan.snoozed_until), (PlanState::Snoozed, Some(snoozed_until)));
    assert_eq!(app.panel.overview().await.unwrap().kpis.pending, 0);
    app.stop().await;
}

/// The notification's Snooze button is an action like the panel's: in the audit log, from `notification`.
#[tokio::test]
async fn a_snooze_chosen_on_a_notification_is_in_the_audit_log_from_the_notification() {
    use zof_approvals::domain::audit::{AuditAction, AuditFilter, Source};
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let mut app = spawn(None, |s| s.display_name = "Alice Martin".into()).await;
    app.deliver("evt_sa", "plan_sa").await;
    let calls = until(&rec, "a notification", |c| !notifies(c).is_empty()).await;
    let clicker = keep_clicking(&rec, notifies(&calls)[0].0, "snooze");
    let snoozed = event(&mut app, "Snooze", |e| matches!(e, CoreEvent::Snooze { .. })).await;
    clicker.abort();
    let CoreEvent::Snooze { until: snoozed_until, .. } = snoozed else { unreachable!() };
    let filter = AuditFilter { plan_id: Some("plan_sa".into()), ..AuditFilter::default() };
    let rows = app.panel.audit(filter).await.unwrap();
    let seen: Vec<_> = rows.iter().map(|r| (r.action, r.who.as_str(), r.source.clone(), r.detail.clone())).collect();
    let detail = format!("until {}", snoozed_until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    assert_eq!(seen, [(AuditAction::Snoozed, "Alice Martin", Source::Notification, detail)]);
    let plan = app.panel.plan("plan_sa".into()).await.unwrap().plan;
    assert_eq!(plan.resolution.as_deref().map(|l| l.starts_with("Snoozed by Alice Martin until ")), Some(true));
    app.stop().await;
}

#[tokio::test]
async fn a_snooze_never_brings_back_a_plan_that_was_handled() {
    let turn = turn().await;
    let _rec = recorder(&turn).await;
    let mut app = spawn(None, |_| {}).await;
    app.deliver("evt_hs", "plan_hs").await;
    // The plan is written by the outbox worker just after the answer.
    event(&mut app, "the plan written", |e| matches!(e, CoreEvent::PlanChanged { plan_id } if plan_id == "plan_hs"))
        .await;
    app.panel.mark_handled("plan_hs".into()).await.unwrap();
    let err = app.panel.snooze("plan_hs".into(), 60).await.unwrap_err();
    assert_eq!(err.code, "plan_handled");
    let plan = app.panel.plan("plan_hs".into()).await.unwrap().plan;
    assert_eq!((plan.state, plan.snoozed_until), (PlanState::Handled, None));
    assert_eq!(app.panel.overview().await.unwrap().kpis.pending, 0);
    app.stop().await;
}

fn zof_approvals_store(app: &App) -> zof_approvals::store::Store {
    app.panel.store_for_tests()
}

#[tokio::test]
async fn quiet_hours_hold_notifications_and_summarize_them_when_they_end() {
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let now = Local::now();
    let hhmm = |t: chrono::DateTime<Local>| format!("{:02}:{:02}", t.hour(), t.minute());
    let quiet =
        QuietHours { start: hhmm(now - chrono::Duration::hours(1)), end: hhmm(now + chrono::Duration::hours(1)) };
    let mut app = spawn(None, |s| s.notifications.quiet_hours = Some(quiet)).await;
    app.deliver("evt_q1", "plan_q1").await;
    written(&mut app, "plan_q1").await;
    app.deliver("evt_q2", "plan_q2").await;
    written(&mut app, "plan_q2").await;
    assert!(notifies(&rec.calls()).is_empty(), "quiet hours hold notifications back");
    let overview = app.panel.overview().await.unwrap();
    assert_eq!(overview.kpis.pending, 2, "held plans are still in the queue");
    let mut view = app.panel.settings_view();
    view.quiet_hours = None;
    app.panel.save_settings(view).await.unwrap();
    let calls = until(&rec, "the held summary", |c| !notifies(c).is_empty()).await;
    assert_eq!(notifies(&calls)[0].2, "2 plans arrived while notifications were paused");
    upkeep_pass(&mut app, "plan_q_sentinel").await;
    let summaries = notifies(&rec.calls()).iter().filter(|n| n.2.contains("while notifications were paused")).count();
    assert_eq!(summaries, 1, "summarized once");
    app.stop().await;
}

#[tokio::test]
async fn mute_holds_notifications_and_survives_a_restart() {
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let app = spawn(None, |_| {}).await;
    app.panel.mute(60, zof_approvals::domain::audit::Source::Panel).await.unwrap();
    let dir = app.stop().await;
    let mut app = spawn(Some(dir), |_| {}).await;
    assert!(app.panel.overview().await.unwrap().muted_until.is_some(), "the mute survived the restart");
    app.deliver("evt_m", "plan_m").await;
    written(&mut app, "plan_m").await;
    assert!(notifies(&rec.calls()).is_empty());
    app.panel.mute(0, zof_approvals::domain::audit::Source::Panel).await.unwrap();
    let calls = until(&rec, "the held summary", |c| !notifies(c).is_empty()).await;
    assert_eq!(notifies(&calls)[0].2, "1 plan arrived while notifications were paused");
    app.stop().await;
}

#[tokio::test]
async fn a_plan_still_pending_after_the_delay_is_escalated_once_with_critical_urgency() {
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let mut app = spawn(None, |_| {}).await;
    app.deliver("evt_e", "plan_e").await;
    until(&rec, "the first notification", |c| notifies(c).len() == 1).await;
    let store = zof_approvals_store(&app);
    store.update_plan("plan_e", |p| p.received_at = Utc::now() - chrono::Duration::minutes(31)).unwrap();
    let calls = until(&rec, "the escalation", |c| notifies(c).iter().any(|n| n.4 == Some(2))).await;
    let escalation = notifies(&calls).into_iter().find(|n| n.4 == Some(2)).unwrap();
    assert_eq!(escalation.2, "Remediation plan still awaits approval");
    upkeep_pass(&mut app, "plan_e_sentinel").await;
    let escalations = notifies(&rec.calls()).iter().filter(|n| n.4 == Some(2) && n.3.contains("Plan plan_e ")).count();
    assert_eq!(escalations, 1, "escalated once");
    assert!(app.panel.plan("plan_e".into()).await.unwrap().plan.escalated);
    app.stop().await;
}

#[tokio::test]
async fn a_handled_plan_has_its_notification_closed() {
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let app = spawn(None, |_| {}).await;
    app.deliver("evt_h", "plan_h").await;
    let calls = until(&rec, "a notification", |c| !notifies(c).is_empty()).await;
    let id = notifies(&calls)[0].0;
    app.panel.mark_handled("plan_h".into()).await.unwrap();
    until(&rec, "the notification is closed", |c| closes(c).contains(&id)).await;
    assert_eq!(app.panel.overview().await.unwrap().kpis.pending, 0);
    app.stop().await;
}

/// A Console that lists nothing as pending and says every plan was approved by alice.
async fn approving_console() -> String {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/v1/remediation/plans",
            get(|| async { axum::Json(serde_json::json!({"data": [], "next_cursor": null})) }),
        )
        .route(
            "/v1/remediation/plans/{id}",
            get(|axum::extract::Path(id): axum::extract::Path<String>| async move {
                axum::Json(serde_json::json!({
                    "id": id, "status": "approved", "organization_id": "org_abc", "run_id": "run_xyz",
                    "created": "2026-05-20T12:00:00Z", "updated": "2026-05-20T12:05:00Z",
                    "decided_by": "alice@example.com",
                }))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_plan_approved_in_the_console_has_its_notification_closed() {
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let console = approving_console().await;
    let setup = ConsoleSetup {
        token: TokenSource::Fixed(ConsoleToken::new("zof_pat_notify").unwrap()),
        watch_system: false,
        ..ConsoleSetup::default()
    };
    let app = spawn_connected(None, |s| s.console_api_url = console, Some(setup)).await;
    // The reconciliation at start is done before the plan arrives.
    while app.panel.console_status().last_attempt_at.is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.deliver("evt_c", "plan_c").await;
    let calls = until(&rec, "a notification", |c| !notifies(c).is_empty()).await;
    let id = notifies(&calls)[0].0;
    assert_eq!(app.panel.check_with_console().await.unwrap().resolved, 1);
    until(&rec, "the notification is closed", |c| closes(c).contains(&id)).await;
    assert_eq!(app.panel.overview().await.unwrap().kpis.pending, 0);
    app.stop().await;
}

#[tokio::test]
async fn after_a_restart_unnotified_plans_are_raised_and_notified_ones_are_not() {
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let app = spawn(None, |_| {}).await;
    app.deliver("evt_r1", "plan_r1").await;
    until(&rec, "plan_r1 is notified", |c| body_names(c, "plan_r1") == 1).await;
    drop(rec); // the notification server goes away: plan_r2 cannot be notified
    until_no_notification_server(&turn).await;
    app.deliver("evt_r2", "plan_r2").await;
    let dir = app.stop().await;
    let rec = recorder(&turn).await;
    let mut app = spawn(Some(dir), |_| {}).await;
    until(&rec, "plan_r2 is notified after the restart", |c| body_names(c, "plan_r2") == 1).await;
    upkeep_pass(&mut app, "plan_r_sentinel").await;
    assert_eq!(body_names(&rec.calls(), "plan_r1"), 0, "plan_r1 is not notified twice");
    app.stop().await;
}

#[tokio::test]
async fn without_a_notification_server_nothing_hangs_and_status_says_why() {
    let _turn = turn().await;
    let mut app = spawn(None, |_| {}).await;
    let started = std::time::Instant::now();
    assert_eq!(app.deliver("evt_x", "plan_x").await, "accepted");
    assert!(started.elapsed() < Duration::from_secs(2), "the acknowledgement does not wait for notifications");
    // The desktop shell still brings the panel forward for the plan.
    let attention = event(&mut app, "Attention", |e| matches!(e, CoreEvent::Attention { .. })).await;
    assert!(matches!(attention, CoreEvent::Attention { plan_id } if plan_id == "plan_x"));
    let mut status = None;
    for _ in 0..100 {
        status = app.panel.overview().await.unwrap().notification_status;
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.expect("the failure is shown in status");
    assert!(status.contains("notifications cannot be shown"), "{status}");
    let overview = app.panel.overview().await.unwrap();
    assert_eq!(overview.kpis.pending, 1, "the plan is still pending and visible");
    assert!(overview.next_actions.iter().any(|a| a.kind == "notifications_failing"));
    app.stop().await;
}

#[tokio::test]
async fn without_any_session_bus_nothing_hangs_and_status_says_why() {
    let _turn = turn().await;
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/zof-test-bus");
    let app = spawn(None, |_| {}).await;
    assert_eq!(app.deliver("evt_nb", "plan_nb").await, "accepted");
    let mut status = None;
    for _ in 0..100 {
        status = app.panel.overview().await.unwrap().notification_status;
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(status.is_some(), "no bus at all is reported");
    app.stop().await;
}
