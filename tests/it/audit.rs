//! The audit log: every action a person takes is a row with who, what, when and from where,
//! from the panel API, the control socket and the CLI (with a running `serve` and without);
//! rows survive a restart, only the retention window removes them, and none holds a secret or
//! a body.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use zof_approvals::config::{QuietHours, Settings};
use zof_approvals::control::{send, Op, Request};
use zof_approvals::domain::audit::{default_display_name, Actor, AuditAction, AuditEntry, AuditFilter, Source};
use zof_approvals::panel::{Panel, SettingsView};
use zof_approvals::secrets::MemoryStore;
use zof_approvals::store::PlanState;
use zof_approvals::verify::sign_zof;

use crate::helpers::{bin, event_for, secret, spawn_with, ServeChild, Spawn, TestApp, SECRET};

/// A receiver whose secrets are managed through the panel (an in-memory keychain).
async fn managed_app(dir: Option<Arc<tempfile::TempDir>>) -> TestApp {
    let settings = Settings { listen: "127.0.0.1:0".parse().unwrap(), ..Settings::default() };
    let store: Arc<dyn zof_approvals::secrets::SecretStore> = Arc::new(MemoryStore::default());
    spawn_with(Spawn { settings, dir, secret_store: Some(store), ..Spawn::default() }).await
}

/// Delivers `plan` and waits until the plan is written (the outbox writes it after the answer).
async fn deliver(app: &TestApp, event: &str, plan: &str) {
    assert_eq!(app.post_signed(&event_for(event, plan, "org_abc")).await.status, 200);
    plan_written(&app.panel, plan).await;
}

async fn plan_written(panel: &Panel, plan: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while panel.plan(plan.into()).await.is_err() {
        assert!(Instant::now() < deadline, "plan {plan} was never written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every row, oldest first (easier to read against the order of the actions).
async fn rows_oldest_first(panel: &Panel) -> Vec<AuditEntry> {
    let mut rows = panel.audit(AuditFilter::default()).await.unwrap();
    rows.reverse();
    rows
}

/// Waits until a row satisfies `ok` (some rows are written by background work).
async fn row_until(panel: &Panel, what: &str, ok: impl Fn(&AuditEntry) -> bool) -> AuditEntry {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(row) = panel.audit(AuditFilter::default()).await.unwrap().into_iter().find(|r| ok(r)) {
            return row;
        }
        assert!(Instant::now() < deadline, "no audit row for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn summary(rows: &[AuditEntry]) -> Vec<(AuditAction, String, Option<String>, String)> {
    rows.iter().map(|r| (r.action, r.who.clone(), r.plan_id.clone(), r.source.to_string())).collect()
}

#[tokio::test]
async fn every_panel_action_is_recorded_with_who_what_and_from_where() {
    let app = managed_app(None).await;
    let panel = &app.panel;
    let default_name = panel.settings_view().default_display_name;
    assert!(default_name.contains('@'), "user@host: {default_name}");
    let named =
        SettingsView { display_name: Some("Alice Martin".into()), escalation_minutes: 45, ..panel.settings_view() };
    panel.save_settings(named).await.unwrap();
    let quiet = QuietHours { start: "22:00".into(), end: "07:00".into() };
    panel.save_settings(SettingsView { quiet_hours: Some(quiet), ..panel.settings_view() }).await.unwrap();
    panel.set_secret(SECRET.into(), 24).await.unwrap();
    deliver(&app, "evt_a1", "plan_a").await;
    deliver(&app, "evt_b1", "plan_b").await;
    let handled = panel.actions().handle("plan_a", Source::Panel).await.unwrap();
    assert!(!handled.already);
    assert!(panel.actions().handle("plan_a", Source::Panel).await.unwrap().already, "the first decision stands");
    panel.snooze("plan_b".into(), 60).await.unwrap();
    let (generated, _) = panel.generate_secret(1).await.unwrap();
    panel.revoke_previous_secret().await.unwrap();
    panel.mute(30, Source::Panel).await.unwrap();
    panel.mute(0, Source::Panel).await.unwrap();

    let rows = rows_oldest_first(panel).await;
    let alice = "Alice Martin".to_owned();
    let panel_row =
        |action, who: &String, plan: Option<&str>| (action, who.clone(), plan.map(str::to_owned), "panel".into());
    assert_eq!(
        summary(&rows),
        [
            panel_row(AuditAction::SettingsChanged, &default_name, None),
            panel_row(AuditAction::QuietHoursChanged, &alice, None),
            panel_row(AuditAction::SecretSet, &alice, None),
            panel_row(AuditAction::Handled, &alice, Some("plan_a")),
            panel_row(AuditAction::Snoozed, &alice, Some("plan_b")),
            panel_row(AuditAction::SecretGenerated, &alice, None),
            panel_row(AuditAction::SecretRevoked, &alice, None),
            panel_row(AuditAction::MuteChanged, &alice, None),
            panel_row(AuditAction::MuteChanged, &alice, None),
        ]
    );
    let details: Vec<&str> = rows.iter().map(|r| r.detail.as_str()).collect();
    let fp = secret().fingerprint().0;
    assert_eq!(details[0], "display_name, notifications.escalation_minutes");
    assert_eq!(details[1], "22:00–07:00");
    assert_eq!(details[2], format!("fingerprint {fp}; the previous secret keeps verifying for 24 h"));
    assert_eq!(details[3], "");
    let until = panel.plan("plan_b".into()).await.unwrap().plan.snoozed_until.unwrap();
    assert_eq!(details[4], format!("until {}", until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
    assert_eq!(
        details[5],
        format!("fingerprint {}; the previous secret keeps verifying for 1 h", generated.fingerprint())
    );
    assert_eq!(details[6], format!("fingerprint {fp}"));
    assert!(details[7].starts_with("paused until "), "{}", details[7]);
    assert_eq!(details[8], "resumed");
    let detail = panel.plan("plan_a".into()).await.unwrap();
    assert_eq!(detail.plan.resolution.as_deref().map(|l| l.starts_with("Handled by Alice Martin at ")), Some(true));
    let history = panel.audit(AuditFilter { plan_id: Some("plan_b".into()), ..AuditFilter::default() }).await.unwrap();
    assert_eq!(summary(&history), [panel_row(AuditAction::Snoozed, &alice, Some("plan_b"))]);
}

#[tokio::test]
async fn a_snooze_that_ends_is_recorded_as_unsnoozed_under_the_snoozer() {
    let app = spawn_with(Spawn::default()).await;
    deliver(&app, "evt_u1", "plan_u").await;
    app.panel.actions().snooze("plan_u", 60, Source::Notification).await.unwrap();
    // The hour passes.
    let store = app.panel.store_for_tests();
    store.update_plan("plan_u", |p| p.snoozed_until = Some(Utc::now() - chrono::Duration::seconds(1))).unwrap();
    let row = row_until(&app.panel, "the snooze's end", |r| r.action == AuditAction::Unsnoozed).await;
    assert_eq!(
        (row.plan_id.as_deref(), row.source, row.who, row.detail.as_str()),
        (Some("plan_u"), Source::Notification, default_display_name(), "the snooze ended")
    );
    assert_eq!(app.panel.plan("plan_u".into()).await.unwrap().plan.state, PlanState::Pending);
}

#[tokio::test]
async fn no_audit_row_holds_a_secret_or_a_body() {
    let app = managed_app(None).await;
    let panel = &app.panel;
    panel.set_secret(SECRET.into(), 24).await.unwrap();
    let marker = "body-marker-7f3a-do-not-log";
    let mut body: serde_json::Value = serde_json::from_slice(&event_for("evt_s1", "plan_s", "org_abc")).unwrap();
    body["data"]["summary"] = serde_json::Value::String(marker.into());
    let body = serde_json::to_vec(&body).unwrap();
    assert_eq!(app.post(&body, Some(&sign_zof(&secret(), &body))).await.status, 200);
    plan_written(panel, "plan_s").await;
    deliver(&app, "evt_s2", "plan_t").await;
    panel.actions().handle("plan_s", Source::Panel).await.unwrap();
    panel.snooze("plan_t".into(), 5).await.unwrap();
    let (generated, _) = panel.generate_secret(0).await.unwrap();
    panel.save_settings(SettingsView { allow_orgs: vec!["org_abc".into()], ..panel.settings_view() }).await.unwrap();
    let rows = panel.audit(AuditFilter::default()).await.unwrap();
    assert!(rows.len() >= 5, "{rows:?}");
    let body_text = String::from_utf8(body).unwrap();
    let key = SECRET.trim_start_matches("whsec_");
    for row in &rows {
        for field in [&row.who, &row.detail, &row.plan_id.clone().unwrap_or_default(), &row.source.to_string()] {
            for needle in [SECRET, key, generated.expose(), marker, body_text.as_str()] {
                assert!(!field.contains(needle), "an audit row holds a secret or a body: {row:?}");
            }
        }
    }
}

#[tokio::test]
async fn rows_survive_a_restart_and_pruning_removes_only_rows_past_retention() {
    let keep = |days| Settings { listen: "127.0.0.1:0".parse().unwrap(), retention_days: days, ..Settings::default() };
    let app = spawn_with(Spawn { settings: keep(60), ..Spawn::default() }).await;
    // A row written 40 days ago (rows are appended in time order: it comes first).
    let mut old =
        AuditEntry::new(&Actor::new("bob@old", Source::Cli), AuditAction::SecretSet, None, "fingerprint 0123456789ab");
    old.at = Utc::now() - chrono::Duration::days(40);
    app.panel.store_for_tests().append_audit(&old).unwrap();
    deliver(&app, "evt_r1", "plan_r").await;
    app.panel.actions().handle("plan_r", Source::Panel).await.unwrap();
    assert_eq!(app.panel.audit(AuditFilter::default()).await.unwrap().len(), 2, "40 days is within 60");
    let dir = app.stop().await;

    // Restarted with a 30-day window: pruning runs at start (then hourly) and takes the old row only.
    let app = spawn_with(Spawn { settings: keep(30), dir: Some(dir), ..Spawn::default() }).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = app.panel.audit(AuditFilter::default()).await.unwrap();
        if rows.len() < 2 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(summary(&rows), [(AuditAction::Handled, default_display_name(), Some("plan_r".into()), "panel".into())]);
}

#[tokio::test]
async fn the_control_socket_applies_actions_as_the_cli_and_refuses_malformed_ones() {
    let app = spawn_with(Spawn::default()).await;
    deliver(&app, "evt_k1", "plan_k").await;
    let data = app.dir.path().join("data");
    let ask = |request: Request| {
        let data = data.clone();
        async move { send(&data, &request).await.unwrap().expect("the receiver answers") }
    };
    let code = |a: &zof_approvals::control::Answer| (a.ok, a.code.map(|c| c.as_str().to_owned()).unwrap_or_default());
    let req = |op| Request::new(op);
    assert_eq!(code(&ask(req(Op::Handle)).await), (false, "invalid_request".into()));
    let nope = Request { plan_id: Some("plan_nope".into()), ..req(Op::Handle) };
    assert_eq!(code(&ask(nope).await), (false, "unknown_plan".into()));
    let control = Request { plan_id: Some("plan\nk".into()), ..req(Op::Handle) };
    assert_eq!(code(&ask(control).await), (false, "invalid_request".into()));
    let no_minutes = Request { plan_id: Some("plan_k".into()), ..req(Op::Snooze) };
    assert_eq!(code(&ask(no_minutes).await), (false, "invalid_request".into()));
    let too_long = Request { plan_id: Some("plan_k".into()), minutes: Some(7 * 24 * 60 + 1), ..req(Op::Snooze) };
    assert_eq!(code(&ask(too_long).await), (false, "invalid_snooze".into()));
    let not_a_secret = Request {
        secret: Some(zof_approvals::control::SecretText(zeroize::Zeroizing::new("short".into()))),
        ..req(Op::SecretSet)
    };
    assert_eq!(code(&ask(not_a_secret).await), (false, "invalid_secret".into()));
    assert_eq!(code(&ask(req(Op::SecretSet)).await), (false, "invalid_request".into()));
    // The receiver records only changes it made itself: the old "the CLI changed it" op is gone.
    let claimed =
        raw_request(&data, r#"{"op":"secret_changed","action":"secret_set","fingerprints":["0123456789ab"]}"#).await;
    assert!(claimed.contains(r#""ok":false"#), "{claimed}");
    let long_line = Request { plan_id: Some("p".repeat(2000)), ..req(Op::Handle) };
    assert!(!ask(long_line).await.ok, "a line past the limit is refused");
    let audit = ask(req(Op::Audit)).await;
    assert_eq!(audit.audit.map(|rows| rows.len()), Some(0), "nothing refused is recorded");

    let handled = ask(Request { plan_id: Some("plan_k".into()), ..req(Op::Handle) }).await;
    assert_eq!(
        (handled.ok, handled.already, handled.plan.map(|p| p.state)),
        (true, Some(false), Some(PlanState::Handled))
    );
    let snooze = ask(Request { plan_id: Some("plan_k".into()), minutes: Some(30), ..req(Op::Snooze) }).await;
    assert_eq!(code(&snooze), (false, "plan_handled".into()));
    assert!(snooze.error.unwrap().starts_with("plan_k was already handled by "), "says by whom");
    let rows = ask(Request { plan_id: Some("plan_k".into()), ..req(Op::Audit) }).await.audit.unwrap();
    assert_eq!(summary(&rows), [(AuditAction::Handled, default_display_name(), Some("plan_k".into()), "cli".into())]);
}

// ---------------------------------------------------------------------------------------------
// The CLI: `handle`, `snooze` and `audit`, through a running `serve` and on the store itself.
// ---------------------------------------------------------------------------------------------

fn serve(data: &Path) -> ServeChild {
    let mut command = Command::new(bin());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--secret-env", "ZOF_WEBHOOK_SECRET", "--data-dir"])
        .arg(data)
        .arg("--config-dir")
        .arg(data.join("config"))
        .env("ZOF_WEBHOOK_SECRET", SECRET)
        .stderr(std::process::Stdio::null());
    ServeChild::spawn(command)
}

/// Runs `zof-approvals ARGS --data-dir DATA --config-dir DATA/config`: (exit code, stdout, stderr).
fn cli(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--config-dir")
        .arg(data.join("config"))
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn send_plan(url: &str, plan: &str) {
    let out = Command::new(bin())
        .args(["send", "--url", url, "--plan", plan, "--json"])
        .env("ZOF_WEBHOOK_SECRET", SECRET)
        .output()
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["accepted"], 1, "{summary}");
}

/// `audit --json ARGS`: one object per line, each with exactly the documented keys.
fn audit_json(data: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = cli(data, &all);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut keys: Vec<&str> = row.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["action", "at", "detail", "plan_id", "source", "who"]);
            row
        })
        .collect()
}

fn actions(rows: &[serde_json::Value]) -> Vec<(String, String, String)> {
    let s = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or("").to_owned();
    rows.iter().map(|r| (s(r, "action"), s(r, "plan_id"), s(r, "source"))).collect()
}

fn t(a: &str, p: &str, s: &str) -> (String, String, String) {
    (a.into(), p.into(), s.into())
}

/// Waits until `plans --json` lists `plan` (the outbox writes it just after the answer).
fn wait_for_plan(data: &Path, plan: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, out, _) = cli(data, &["plans", "--json"]);
        if code == 0 && out.contains(&format!("\"plan\":\"{plan}\"")) {
            return;
        }
        assert!(Instant::now() < deadline, "plan {plan} never listed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn cli_handle_snooze_and_audit_go_through_a_running_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = serve(data);
    send_plan(&server.url, "plan_c1");
    send_plan(&server.url, "plan_c2");
    wait_for_plan(data, "plan_c2");
    let me = default_display_name();

    let (code, out, err) = cli(data, &["handle", "plan_c1"]);
    assert_eq!((code, out), (0, format!("Handled plan_c1 (by {me})\n")), "{err}");
    let (code, out, _) = cli(data, &["handle", "plan_c1"]);
    assert_eq!(code, 0, "handling a handled plan changes nothing and is not an error");
    assert!(out.starts_with(&format!("plan_c1 was already handled by {me} at ")), "{out}");
    let (code, out, _) = cli(data, &["snooze", "plan_c2", "--for", "30m"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("Snoozed plan_c2 until ") && out.ends_with(&format!("(by {me})\n")), "{out}");
    let (code, _, err) = cli(data, &["snooze", "plan_c1"]);
    assert_eq!(code, 3, "a snooze of a handled plan is refused with its own code");
    assert!(err.contains("plan_c1 was already handled by"), "{err}");
    let (code, _, err) = cli(data, &["handle", "plan_nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no plan with id `plan_nope`"), "{err}");
    let (code, _, err) = cli(data, &["snooze", "plan_c2", "--for", "8d"]);
    assert_eq!(code, 2, "a bad duration is a usage error: {err}");

    let rows = audit_json(data, &[]);
    assert_eq!(actions(&rows), [t("snoozed", "plan_c2", "cli"), t("handled", "plan_c1", "cli")]);
    assert!(rows.iter().all(|r| r["who"] == me.as_str()));
    assert_eq!(actions(&audit_json(data, &["--plan", "plan_c1", "--since", "1h"])), [t("handled", "plan_c1", "cli")]);
    let (code, table, _) = cli(data, &["audit"]);
    assert_eq!(code, 0);
    assert!(table.starts_with("AT ") && table.contains("handled") && table.contains("plan_c1"), "{table}");
    let (_, plans, _) = cli(data, &["plans", "--json"]);
    let plans: Vec<serde_json::Value> = serde_json::from_str(&plans).unwrap();
    let c1 = plans.iter().find(|p| p["plan"] == "plan_c1").unwrap();
    assert_eq!((c1["state"].as_str(), c1["decided_by"].as_str()), (Some("handled"), Some(me.as_str())));
    server.terminate();
}

#[test]
fn cli_handle_snooze_and_audit_without_a_receiver_open_the_store_and_the_rows_last() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = serve(data);
    send_plan(&server.url, "plan_o1");
    send_plan(&server.url, "plan_o2");
    wait_for_plan(data, "plan_o2");
    server.terminate();
    let me = default_display_name();

    assert_eq!(cli(data, &["handle", "plan_o1"]).0, 0);
    let (code, out, _) = cli(data, &["snooze", "plan_o2", "--for", "2h"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(cli(data, &["handle", "plan_missing"]).0, 1);
    assert_eq!(cli(data, &["snooze", "plan_o1", "--for", "1d"]).0, 3);
    let offline = audit_json(data, &[]);
    assert_eq!(actions(&offline), [t("snoozed", "plan_o2", "cli"), t("handled", "plan_o1", "cli")]);
    assert!(offline[0]["detail"].as_str().unwrap().starts_with("until "));

    // The receiver reads what the command wrote, and answers `audit` the same.
    let server = serve(data);
    assert_eq!(audit_json(data, &[]), offline);
    let (_, plans, _) = cli(data, &["plans", "--json"]);
    let plans: Vec<serde_json::Value> = serde_json::from_str(&plans).unwrap();
    let state = |id: &str| plans.iter().find(|p| p["plan"] == id).map(|p| p["state"].clone());
    assert_eq!((state("plan_o1"), state("plan_o2")), (Some("handled".into()), Some("snoozed".into())));
    assert_eq!(plans.iter().find(|p| p["plan"] == "plan_o1").unwrap()["decided_by"], me.as_str());
    server.terminate();
}

/// `handle` through a running `serve` goes through its panel: the plan's notification is withdrawn.
#[test]
fn cli_handle_through_serve_withdraws_the_plans_notification() {
    use zof_testkit::Call;
    let session = crate::session::Session::bus_only();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let recorder = runtime.block_on(zof_testkit::NotificationRecorder::start(&session.bus)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut command = session.command(bin());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--secret-env", "ZOF_WEBHOOK_SECRET", "--data-dir"])
        .arg(&data)
        .arg("--config-dir")
        .arg(data.join("config"))
        .env("ZOF_WEBHOOK_SECRET", SECRET)
        .stderr(std::process::Stdio::null());
    let server = ServeChild::spawn(command);
    send_plan(&server.url, "plan_w");
    let wait = |what: &str, ok: &dyn Fn(&[Call]) -> Option<u32>| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(id) = ok(&recorder.calls()) {
                return id;
            }
            assert!(Instant::now() < deadline, "never saw {what}: {:?}", recorder.calls());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let shown = wait("the plan's notification", &|calls| {
        calls.iter().find_map(|c| match c {
            Call::Notify { id, body, .. } if body.contains("plan_w") => Some(*id),
            _ => None,
        })
    });
    let (code, out, err) = cli(&data, &["handle", "plan_w"]);
    assert_eq!(code, 0, "{out}{err}");
    wait("the notification withdrawn", &|calls| {
        calls.iter().find_map(|c| matches!(c, Call::Close { id, .. } if *id == shown).then_some(shown))
    });
    server.terminate();
}

/// Sends one raw line to the control socket and returns the answer line.
async fn raw_request(data: &std::path::Path, line: &str) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(zof_approvals::control::socket_path(data)).await.unwrap();
    stream.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::io::BufReader::new(stream).read_line(&mut answer).await.unwrap();
    answer
}
