//! The Console connection against a fake Console: an axum server on loopback that serves the
//! endpoints of `docs/console-api.md` with scripted plan states and failures, and counts requests.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use zof_approvals::config::Settings;
use zof_approvals::console::{ConnectionState, ConsoleSetup, ConsoleToken, RetryPolicy, TokenSource};
use zof_approvals::store::{PlanFlag, PlanSource, PlanState};

use crate::helpers::{bin, event_for, files_containing, spawn_with, ServeChild, Spawn, TestApp};
use crate::session::Session;

const TOKEN: &str = "zof_pat_console-token-for-tests-7f3a9c";
const WEBHOOK_SECRET: &str = "whsec_Y29uc29sZS1jcmVhdGVkLXdlYmhvb2stc2VjcmV0";

/// A failure the fake answers the next list request with.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Status(u16),
    RetryAfter(u64),
}

#[derive(Debug, Default)]
struct FakeState {
    plans: BTreeMap<String, Value>,
    failures: VecDeque<Failure>,
    requests: usize,
    list_requests: usize,
    /// Every request waits forever (a Console that never answers).
    hang: bool,
    webhooks: Vec<Value>,
    /// The Authorization headers seen, to prove the token was sent.
    authorizations: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct FakeConsole(Arc<Mutex<FakeState>>);

impl FakeConsole {
    async fn start() -> (FakeConsole, String) {
        let fake = FakeConsole::default();
        let app = Router::new()
            .route("/v1/remediation/plans", get(list))
            .route("/v1/remediation/plans/{id}", get(one))
            .route("/v1/webhooks", post(create_webhook))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, url)
    }

    fn put(&self, id: &str, status: &str, org: &str, run: &str, decided_by: Option<&str>) {
        let plan = json!({
            "id": id, "status": status, "organization_id": org, "run_id": run,
            "created": "2026-05-20T12:00:00Z", "updated": "2026-05-20T12:05:00Z", "decided_by": decided_by,
        });
        self.0.lock().unwrap().plans.insert(id.into(), plan);
    }

    fn fail_next(&self, failures: &[Failure]) {
        self.0.lock().unwrap().failures.extend(failures.iter().copied());
    }

    fn requests(&self) -> usize {
        self.0.lock().unwrap().requests
    }

    fn list_requests(&self) -> usize {
        self.0.lock().unwrap().list_requests
    }

    /// Counts the request; `Err` is the answer when the token is wrong.
    async fn admit(&self, headers: &HeaderMap) -> Result<(), Response> {
        let hang = {
            let mut s = self.0.lock().unwrap();
            s.requests += 1;
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            s.authorizations.push(auth.clone());
            if auth != format!("Bearer {TOKEN}") {
                return Err((StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid token"}))).into_response());
            }
            s.hang
        };
        if hang {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

async fn list(
    State(fake): State<FakeConsole>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(r) = fake.admit(&headers).await {
        return r;
    }
    let mut s = fake.0.lock().unwrap();
    s.list_requests += 1;
    match s.failures.pop_front() {
        Some(Failure::Status(code)) => return StatusCode::from_u16(code).unwrap().into_response(),
        Some(Failure::RetryAfter(secs)) => {
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs.to_string())]).into_response()
        }
        None => {}
    }
    assert_eq!(q.get("status").map(String::as_str), Some("pending"));
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
    let start: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let pending: Vec<Value> = s.plans.values().filter(|p| p["status"] == "pending").cloned().collect();
    let page: Vec<Value> = pending.iter().skip(start).take(limit).cloned().collect();
    let next = (start + limit < pending.len()).then(|| (start + limit).to_string());
    Json(json!({"data": page, "next_cursor": next})).into_response()
}

async fn one(State(fake): State<FakeConsole>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = fake.admit(&headers).await {
        return r;
    }
    match fake.0.lock().unwrap().plans.get(&id) {
        Some(plan) => Json(plan.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response(),
    }
}

async fn create_webhook(State(fake): State<FakeConsole>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Err(r) = fake.admit(&headers).await {
        return r;
    }
    fake.0.lock().unwrap().webhooks.push(body.clone());
    let answer = json!({"id": "wh_123", "url": body["url"], "events": body["events"], "secret": WEBHOOK_SECRET});
    (StatusCode::CREATED, Json(answer)).into_response()
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy { first_delay: Duration::from_millis(20), max_delay: Duration::from_secs(300), attempts: 4 }
}

/// A receiver connected to the fake Console, with the token given directly.
async fn connected_app(console_url: &str, token: &str) -> TestApp {
    let settings =
        Settings { listen: "127.0.0.1:0".parse().unwrap(), console_api_url: console_url.into(), ..Settings::default() };
    let setup = ConsoleSetup {
        token: TokenSource::Fixed(ConsoleToken::new(token).unwrap()),
        retry: fast_retries(),
        watch_system: false,
        ..ConsoleSetup::default()
    };
    spawn_with(Spawn { settings, console: Some(setup), ..Spawn::default() }).await
}

/// Waits until the connection's first reconciliation is done (in the state `want`).
async fn first_run(app: &TestApp, want: ConnectionState) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = app.panel.console_status();
        if status.last_attempt_at.is_some() {
            assert_eq!(status.state, want, "{status:?}");
            return;
        }
        assert!(Instant::now() < deadline, "the first reconciliation never finished: {status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `plan`'s detail satisfies `ok`.
async fn plan_until(app: &TestApp, plan: &str, ok: impl Fn(&zof_approvals::panel::PlanDetail) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(detail) = app.panel.plan(plan.into()).await {
            if ok(&detail) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "plan {plan} never reached the expected state");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn without_a_console_url_nothing_is_asked_and_setting_one_in_settings_connects_at_once() {
    let (fake, url) = FakeConsole::start().await;
    fake.put("plan_s", "pending", "org_abc", "run_xyz", None);
    let app = connected_app("", TOKEN).await;
    let err = app.panel.check_with_console().await.unwrap_err();
    assert_eq!(err.code, "console_off");
    assert_eq!(app.panel.console_status().state, ConnectionState::Off);
    assert_eq!(fake.requests(), 0, "no Console, no request");

    let view = zof_approvals::panel::SettingsView { console_api_url: Some(url), ..app.panel.settings_view() };
    app.panel.save_settings(view).await.unwrap();
    assert_eq!(app.wait_notified(1).await, vec!["plan_s"]);
    first_run(&app, ConnectionState::Ok).await;
}

#[tokio::test]
async fn the_control_socket_is_private_to_its_user_and_refuses_what_is_not_a_request() {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use zof_approvals::control::{ask, socket_path, Op};
    let app = connected_app("", TOKEN).await;
    let data = app.dir.path().join("data");
    let mode = std::fs::metadata(socket_path(&data)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let answer = ask(&data, Op::Status).await.unwrap().expect("the receiver answers");
    assert_eq!(answer.status.unwrap()["state"], "off");
    let mut raw = tokio::net::UnixStream::connect(socket_path(&data)).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    raw.read_to_string(&mut reply).await.unwrap();
    assert!(reply.contains(r#""ok":false"#), "{reply}");
    let (_store, dir) = app.stopped_store().await;
    assert!(!socket_path(&dir.path().join("data")).exists(), "removed when the receiver stops");
}

#[tokio::test]
async fn a_plan_approved_in_the_console_leaves_the_queue_as_resolved() {
    let (fake, url) = FakeConsole::start().await;
    let app = connected_app(&url, TOKEN).await;
    first_run(&app, ConnectionState::Ok).await;
    assert_eq!(app.post_signed(&event_for("evt_a1", "plan_a", "org_abc")).await.status, 200);
    assert_eq!(app.wait_notified(1).await, vec!["plan_a"]);
    fake.put("plan_a", "approved", "org_abc", "run_xyz", Some("alice@example.com"));

    let asked = Instant::now();
    let report = app.panel.check_with_console().await.unwrap();
    println!("measure: a plan approved in the Console left the queue {:?} after `Check with Console`", asked.elapsed());
    assert_eq!((report.resolved, report.added, report.flagged, report.errors), (1, 0, 0, 0));
    let detail = app.panel.plan("plan_a".into()).await.unwrap();
    assert_eq!(detail.plan.state, PlanState::Resolved);
    assert_eq!(
        detail.plan.resolution.as_deref(),
        Some("Approved in Console by alice@example.com at 2026-05-20 12:05 UTC")
    );
    assert!(app.panel.overview().await.unwrap().queue.is_empty(), "out of the queue");
    let activity = app.panel.activity(20).await.unwrap();
    let line = activity.iter().find(|d| d.code == "console_resolved").expect("Activity says why it left");
    assert!(line.reason.contains("approved in the Console by alice@example.com"), "{}", line.reason);
    // A repeated delivery of the plan does not bring it back.
    assert_eq!(app.post_signed(&event_for("evt_a2", "plan_a", "org_abc")).await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.panel.activity(20).await.unwrap().iter().any(|d| d.event_id.as_deref() == Some("evt_a2")) {
        assert!(Instant::now() < deadline, "the second delivery was never settled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (store, _dir) = app.stopped_store().await;
    assert_eq!(store.plan("plan_a").unwrap().unwrap().state, PlanState::Resolved);
}

#[tokio::test]
async fn a_plan_missed_while_away_is_added_and_notified_once_and_its_webhook_adds_nothing() {
    let (fake, url) = FakeConsole::start().await;
    fake.put("plan_m", "pending", "org_abc", "run_xyz", None);
    let app = connected_app(&url, TOKEN).await;
    first_run(&app, ConnectionState::Ok).await;
    assert_eq!(app.panel.console_status().last_report.map(|r| r.added), Some(1));
    assert_eq!(app.wait_notified(1).await, vec!["plan_m"]);
    // The notifier is called before the outbox writes the plan: wait for the record.
    plan_until(&app, "plan_m", |_| true).await;
    let detail = app.panel.plan("plan_m".into()).await.unwrap();
    assert_eq!((detail.plan.source, detail.plan.state), (PlanSource::Console, PlanState::Pending));

    // The delivery arrives late: it merges into the same plan, and nobody is told twice.
    assert_eq!(app.post_signed(&event_for("evt_m", "plan_m", "org_abc")).await.status, 200);
    plan_until(&app, "plan_m", |d| d.plan.event_id == "evt_m" && !d.deliveries.is_empty()).await;
    let report = app.panel.check_with_console().await.unwrap();
    assert_eq!(report.added, 0);
    assert_eq!(*app.notified.0.lock().unwrap(), vec!["plan_m"], "told once");
    assert_eq!(app.panel.plan("plan_m".into()).await.unwrap().plan.source, PlanSource::Console);
}

#[tokio::test]
async fn a_plan_the_console_disagrees_about_is_flagged_and_kept() {
    let (fake, url) = FakeConsole::start().await;
    let app = connected_app(&url, TOKEN).await;
    first_run(&app, ConnectionState::Ok).await;
    for (id, plan) in [("evt_d", "plan_d"), ("evt_g", "plan_gone")] {
        assert_eq!(app.post_signed(&event_for(id, plan, "org_abc")).await.status, 200);
    }
    app.wait_notified(2).await;
    fake.put("plan_d", "pending", "org_abc", "run_other", None);

    let report = app.panel.check_with_console().await.unwrap();
    assert_eq!((report.flagged, report.resolved), (2, 0));
    for plan in ["plan_d", "plan_gone"] {
        let detail = app.panel.plan(plan.into()).await.unwrap();
        assert_eq!(detail.plan.state, PlanState::Pending, "kept");
        assert!(detail.plan.flags.contains(&PlanFlag::ConsoleDisagrees));
    }
    let lines: Vec<String> = app
        .panel
        .activity(50)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.code == "console_disagrees")
        .map(|d| d.reason)
        .collect();
    assert!(lines.iter().any(|l| l.contains("run `run_other` there, `run_xyz` here")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("does not know this plan")), "{lines:?}");
    // Said once, not at every reconciliation.
    assert_eq!(app.panel.check_with_console().await.unwrap().flagged, 0);
}

#[tokio::test]
async fn all_of_250_pending_plans_are_read_across_pages() {
    let (fake, url) = FakeConsole::start().await;
    let app = connected_app(&url, TOKEN).await;
    first_run(&app, ConnectionState::Ok).await;
    for i in 0..250 {
        fake.put(&format!("plan_{i:03}"), "pending", "org_abc", "run_xyz", None);
    }
    let before = fake.list_requests();
    let report = app.panel.check_with_console().await.unwrap();
    assert_eq!((report.checked, report.added), (250, 250));
    assert_eq!(fake.list_requests() - before, 3, "pages of 100");
    app.wait_notified(1).await;
    let (store, _dir) = app.stopped_store().await;
    assert_eq!(store.plans().unwrap().len(), 250);
}

#[tokio::test]
async fn a_plan_the_console_lists_with_an_empty_run_is_counted_as_an_error_and_the_others_are_added() {
    let (fake, url) = FakeConsole::start().await;
    let app = connected_app(&url, TOKEN).await;
    first_run(&app, ConnectionState::Ok).await;
    fake.put("plan_bad", "pending", "org_abc", "", None);
    fake.put("plan_good", "pending", "org_abc", "run_xyz", None);
    let report = app.panel.check_with_console().await.unwrap();
    assert_eq!((report.added, report.errors), (1, 1));
    assert_eq!(app.wait_notified(1).await, vec!["plan_good"]);
}

#[tokio::test]
async fn a_plan_decided_before_its_arrival_was_written_is_never_announced() {
    use zof_approvals::console::{reconcile, ConsoleClient};
    use zof_approvals::store::Store;
    let (fake, url) = FakeConsole::start().await;
    fake.put("plan_q", "pending", "org_abc", "run_xyz", None);
    let dir = tempfile::tempdir().unwrap();
    // No outbox worker: what reconciliation adds stays unsettled.
    let store = Store::open(dir.path()).unwrap();
    let client = ConsoleClient::new(&url, ConsoleToken::new(TOKEN).unwrap(), fast_retries()).unwrap();
    assert_eq!(reconcile(&client, &store, &[]).await.unwrap().report.added, 1);
    assert!(store.plan("plan_q").unwrap().is_none(), "not written yet");
    fake.put("plan_q", "approved", "org_abc", "run_xyz", Some("carol@example.com"));
    assert_eq!(reconcile(&client, &store, &[]).await.unwrap().report.resolved, 1);
    // The outbox's turn comes: the plan stays resolved, so nobody is told.
    let event = store.event("console:plan_q").unwrap().unwrap();
    let (plan, _) = store.settle_event(&event, |_| {}).unwrap();
    assert_eq!((plan.state, plan.decided_by.as_deref()), (PlanState::Resolved, Some("carol@example.com")));
}

/// A Console that answers every list request with `bytes` bytes of JSON-looking padding,
/// announced with a `Content-Length` or streamed without one. Counts the requests.
async fn oversized_console(bytes: usize, announced: bool) -> (String, Arc<Mutex<usize>>) {
    let requests = Arc::new(Mutex::new(0));
    let seen = requests.clone();
    let answer = move || {
        *seen.lock().unwrap() += 1;
        let chunk = axum::body::Bytes::from(vec![b' '; 64 * 1024]);
        let chunks = bytes / chunk.len();
        if announced {
            axum::body::Body::from(vec![b' '; bytes])
        } else {
            axum::body::Body::from_stream(futures::stream::iter(
                std::iter::repeat_n(chunk, chunks).map(Ok::<_, std::convert::Infallible>),
            ))
        }
    };
    let app = Router::new().route("/v1/remediation/plans", get(move || std::future::ready(answer())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, requests)
}

#[tokio::test]
async fn an_answer_over_8_mib_is_refused_without_reading_it_all_or_retrying() {
    use zof_approvals::console::{ConsoleClient, ConsoleError};
    for announced in [true, false] {
        let (url, requests) = oversized_console(9 * 1024 * 1024, announced).await;
        let client = ConsoleClient::new(&url, ConsoleToken::new(TOKEN).unwrap(), fast_retries()).unwrap();
        let err = client.pending_plans().await.unwrap_err();
        assert!(matches!(err, ConsoleError::BadAnswer(_)), "{err:?}");
        assert!(err.to_string().contains("the Console's answer is over 8 MiB"), "{err}");
        assert_eq!(*requests.lock().unwrap(), 1, "a too-large answer is not asked for again");
    }
}

#[tokio::test]
async fn a_console_api_over_plain_http_is_refused_unless_it_is_this_computer() {
    use zof_approvals::console::{ApiUrlError, ConsoleClient, ConsoleError};
    let token = ConsoleToken::new(TOKEN).unwrap();
    let err = ConsoleClient::new("http://api.zof.example", token.clone(), fast_retries()).unwrap_err();
    assert!(matches!(err, ConsoleError::BadUrl(ApiUrlError::NotHttps)), "{err:?}");
    assert!(err.to_string().contains("https://"), "{err}");
    let settings = Settings { console_api_url: "http://api.zof.example".into(), ..Settings::default() };
    let err = settings.validate().unwrap_err().to_string();
    assert!(err.contains("console_api_url") && err.contains("https://"), "{err}");
    // The fake Console on loopback, over http, is fine.
    let (fake, url) = FakeConsole::start().await;
    fake.put("plan_l", "pending", "org_abc", "run_xyz", None);
    let client = ConsoleClient::new(&url, token, fast_retries()).unwrap();
    assert_eq!(client.pending_plans().await.unwrap().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_and_the_reconciliation_recovers() {
    let (fake, url) = FakeConsole::start().await;
    let app = connected_app(&url, TOKEN).await;
    first_run(&app, ConnectionState::Ok).await;
    fake.put("plan_r", "pending", "org_abc", "run_xyz", None);
    fake.fail_next(&[Failure::Status(500), Failure::Status(503)]);
    let before = fake.list_requests();
    let report = app.panel.check_with_console().await.unwrap();
    assert_eq!(report.added, 1);
    assert_eq!(fake.list_requests() - before, 3, "two failures, then the answer");
    assert_eq!(app.panel.console_status().state, ConnectionState::Ok);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let (fake, url) = FakeConsole::start().await;
    let app = connected_app(&url, TOKEN).await;
    first_run(&app, ConnectionState::Ok).await;
    fake.fail_next(&[Failure::RetryAfter(1)]);
    let asked = Instant::now();
    app.panel.check_with_console().await.unwrap();
    assert!(asked.elapsed() >= Duration::from_secs(1), "waited {:?}", asked.elapsed());
}

#[tokio::test]
async fn a_refused_token_is_shown_as_a_token_problem_without_a_retry_storm() {
    let (fake, url) = FakeConsole::start().await;
    let app = connected_app(&url, "zof_pat_revoked").await;
    first_run(&app, ConnectionState::TokenRejected).await;
    let status = app.panel.console_status();
    assert!(status.message.unwrap().contains("refused the API token"));
    let err = app.panel.check_with_console().await.unwrap_err();
    assert_eq!(err.code, "console_token_rejected");
    assert_eq!(fake.requests(), 2, "one request per reconciliation, no retries");
}

#[tokio::test]
async fn a_console_that_never_answers_does_not_slow_deliveries() {
    let (fake, url) = FakeConsole::start().await;
    fake.0.lock().unwrap().hang = true;
    let app = connected_app(&url, TOKEN).await;
    // The first reconciliation is under way and will wait for its 10 s timeout.
    while fake.requests() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    for i in 0..20 {
        let sent = Instant::now();
        assert_eq!(
            app.post_signed(&event_for(&format!("evt_h{i}"), &format!("plan_h{i}"), "org_abc")).await.status,
            200
        );
        assert!(sent.elapsed() < Duration::from_secs(2), "delivery {i} took {:?}", sent.elapsed());
    }
    assert_eq!(app.wait_notified(20).await.len(), 20);
    println!("measure: 20 deliveries while the Console hangs: {:?}", started.elapsed());
    assert!(app.panel.console_status().last_attempt_at.is_none(), "the reconciliation is still waiting");
}

/// One pass over 1,000 pending plans: what it costs in time and requests (printed, not asserted).
#[tokio::test]
async fn measure_a_reconciliation_of_1000_pending_plans() {
    let (fake, url) = FakeConsole::start().await;
    let app = connected_app(&url, TOKEN).await;
    first_run(&app, ConnectionState::Ok).await;
    for i in 0..1000 {
        fake.put(&format!("plan_{i:04}"), "pending", "org_abc", "run_xyz", None);
    }
    for (what, change) in
        [("adding 1,000 missed plans", None), ("1,000 plans already here", None), ("1,000 approved", Some("approved"))]
    {
        if let Some(status) = change {
            for i in 0..1000 {
                fake.put(&format!("plan_{i:04}"), status, "org_abc", "run_xyz", Some("alice@example.com"));
            }
        }
        let (before, started) = (fake.requests(), Instant::now());
        let report = app.panel.check_with_console().await.unwrap();
        println!(
            "measure: reconcile, {what}: {:?}, {} requests, {report:?}",
            started.elapsed(),
            fake.requests() - before
        );
        // The next step starts from the steady state: every added plan announced and written.
        assert_eq!(app.wait_notified(1000).await.len(), 1000);
        let deadline = Instant::now() + Duration::from_secs(20);
        while app.panel.store_for_tests().outbox_len() > 0 {
            assert!(Instant::now() < deadline, "the outbox never drained");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(app.panel.overview().await.unwrap().queue.is_empty());
}

#[test]
fn resuming_from_sleep_and_the_network_coming_back_reconcile_at_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (fake, url) = rt.block_on(FakeConsole::start());
    // A private bus stands in for the system bus, where logind and NetworkManager signal.
    let system = zof_testkit::PrivateBus::start().expect("dbus-daemon (package dbus) is needed for these tests");
    let dir = tempfile::tempdir().unwrap();
    let mut serve = std::process::Command::new(bin());
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--secret-env", "ZOF_TEST_SECRET", "--notifications", "off"])
        .args(["--console-url", &url, "--console-token-env", "ZOF_TEST_TOKEN"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config-dir")
        .arg(dir.path().join("config"))
        .env("ZOF_TEST_SECRET", crate::helpers::SECRET)
        .env("ZOF_TEST_TOKEN", TOKEN)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &system.address)
        .stderr(Stdio::null());
    let served = ServeChild::spawn(serve);
    let signal = |member: &str, value: &str| {
        let (interface, path) = match member {
            "PrepareForSleep" => ("org.freedesktop.login1.Manager", "/org/freedesktop/login1"),
            _ => ("org.freedesktop.NetworkManager", "/org/freedesktop/NetworkManager"),
        };
        let status = std::process::Command::new("dbus-send")
            .arg(format!("--bus={}", system.address))
            .args(["--type=signal", path, &format!("{interface}.{member}"), value])
            .status()
            .unwrap();
        assert!(status.success());
    };
    // Each signal is sent until it is heard: the receiver subscribes a moment after it starts.
    let heard = |member: &str, value: &str| {
        let before = fake.list_requests();
        let deadline = Instant::now() + Duration::from_secs(15);
        while fake.list_requests() == before {
            assert!(Instant::now() < deadline, "{member} {value} never started a reconciliation");
            signal(member, value);
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while fake.list_requests() == 0 {
        assert!(Instant::now() < deadline, "no reconciliation at start");
        std::thread::sleep(Duration::from_millis(20));
    }
    heard("PrepareForSleep", "boolean:false");
    heard("StateChanged", "uint32:70");
    served.terminate();
}

#[tokio::test]
async fn subscribing_from_the_panel_makes_the_returned_secret_current_and_remembers_the_url() {
    use zof_approvals::app::{AppConfig, Application, SecretSource};
    use zof_approvals::secrets::{MemoryStore, SecretStore};
    let (_fake, url) = FakeConsole::start().await;
    let dir = tempfile::tempdir().unwrap();
    let keychain = Arc::new(MemoryStore::default());
    let settings = Settings { listen: "127.0.0.1:0".parse().unwrap(), console_api_url: url, ..Settings::default() };
    let config = AppConfig {
        paths: zof_approvals::config::Paths {
            data_dir: dir.path().join("data"),
            config_dir: dir.path().join("config"),
        },
        settings,
        secrets: SecretSource::Store(keychain.clone()),
    };
    let setup =
        ConsoleSetup { watch_system: false, retry: fast_retries(), ..ConsoleSetup::for_secrets(&config.secrets) };
    let app =
        Application::build_with_console(config, Arc::new(crate::helpers::SeenPlans::default()), setup).await.unwrap();
    let panel = app.panel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    panel.set_console_token(TOKEN.into()).await.unwrap();
    let sub = panel.subscribe_console("https://laptop.example.net/".into()).await.unwrap();
    let secret = zof_approvals::verify::Secret::new(WEBHOOK_SECRET).unwrap();
    assert_eq!(sub.secret_fingerprint, secret.fingerprint().to_string());
    assert_eq!(keychain.get(&secret.fingerprint()).unwrap(), secret);
    assert_eq!(panel.settings().public_url, "https://laptop.example.net/");
    let rows = panel.audit(zof_approvals::domain::audit::AuditFilter::default()).await.unwrap();
    let set: Vec<_> =
        rows.iter().filter(|r| r.action == zof_approvals::domain::audit::AuditAction::SecretSet).collect();
    assert_eq!(set.len(), 1, "{rows:?}");
    assert!(set[0].detail.contains(&secret.fingerprint().to_string()) && set[0].source.to_string() == "panel");
    let report = panel.secrets().await.unwrap();
    assert_eq!(report.secrets[0].fingerprint, secret.fingerprint());
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}

// The CLI, against a real keychain on a private session bus.

fn run(session: &Session, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = session.command(bin());
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_refused_token_makes_console_status_say_so_with_one_request() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (fake, url) = rt.block_on(FakeConsole::start());
    let session = Session::bus_only();
    let mut cmd = session.command(bin());
    cmd.args(["console", "status", "--json", "--console-url", &url, "--console-token-env", "ZOF_TEST_TOKEN"])
        .env("ZOF_TEST_TOKEN", "zof_pat_revoked-token-value");
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["state"], "token_rejected", "{status}");
    assert_eq!(fake.requests(), 1);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("revoked-token-value"), "{all}");
}

#[test]
fn the_cli_logs_in_reconciles_through_a_running_receiver_and_the_token_never_leaks() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (fake, url) = rt.block_on(FakeConsole::start());
    fake.put("plan_cli", "pending", "org_abc", "run_xyz", None);
    let session = Session::with_keyring();
    let (ok, out, err) = run(&session, &["console", "login"], Some(&format!("{TOKEN}\n")));
    assert!(ok, "{out}{err}");
    let fingerprint = ConsoleToken::new(TOKEN).unwrap().fingerprint();
    assert!(out.contains(&fingerprint), "{out}");
    let mut outputs = out + &err;

    let log = session.dir.path().join("serve.log");
    let mut serve = session.command(bin());
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--secret-env", "ZOF_TEST_SECRET", "--notifications", "off"])
        .args(["--console-url", &url])
        .env("ZOF_TEST_SECRET", crate::helpers::SECRET)
        .env("ZOF_LOG", "debug")
        .stderr(std::fs::File::create(&log).unwrap());
    let served = ServeChild::spawn(serve);
    let (ok, out, err) = run(&session, &["console", "reconcile", "--json"], None);
    assert!(ok, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = report.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["added", "checked", "errors", "flagged", "resolved"]);
    outputs += &(out + &err);
    let (ok, out, err) = run(&session, &["console", "status", "--json"], None);
    assert!(ok, "{out}{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((status["state"].as_str(), status["receiver"].as_bool()), (Some("ok"), Some(true)), "{status}");
    assert_eq!(status["token_fingerprint"].as_str(), Some(fingerprint.as_str()));
    outputs += &(out + &err);
    // `plans` works while the receiver holds the store, through its socket.
    let (ok, out, err) = run(&session, &["plans", "--json"], None);
    assert!(ok, "{out}{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((rows[0]["plan"].as_str(), rows[0]["source"].as_str()), (Some("plan_cli"), Some("console")), "{rows}");
    assert_eq!(rows[0]["state"], "pending");
    outputs += &(out + &err);
    served.terminate();

    // Without a receiver, `console reconcile` works on the store itself.
    fake.put("plan_cli", "approved", "org_abc", "run_xyz", Some("bob@example.com"));
    let (ok, out, err) = run(&session, &["console", "reconcile", "--json", "--console-url", &url], None);
    assert!(ok, "{out}{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["resolved"], 1, "{out}");
    outputs += &(out + &err);
    let (ok, out, err) = run(&session, &["plans", "--json"], None);
    assert!(ok, "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    let row = &rows[0];
    let keys: Vec<&str> = row.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "console_status",
            "decided_by",
            "flags",
            "handled_at",
            "notified_at",
            "org",
            "plan",
            "run",
            "snoozed_by",
            "snoozed_until",
            "source",
            "state"
        ]
    );
    assert_eq!((row["state"].as_str(), row["source"].as_str()), (Some("resolved"), Some("console")));
    assert_eq!(row["decided_by"], "bob@example.com");
    outputs += &(out + &err);

    assert!(fake.0.lock().unwrap().authorizations.iter().all(|a| a == &format!("Bearer {TOKEN}")));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("reconciled the queue with the Console"), "{logged}");
    assert!(!logged.contains(TOKEN), "the token is in the receiver's log");
    assert!(!outputs.contains(TOKEN), "the token is in a command's output");
    for dir in [session.data_dir(), session.config_dir()] {
        assert_eq!(files_containing(&dir, TOKEN), Vec::<std::path::PathBuf>::new());
    }
}

#[test]
fn subscribe_keeps_the_returned_secret_in_the_keychain_and_deliveries_signed_with_it_pass() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (fake, url) = rt.block_on(FakeConsole::start());
    let session = Session::with_keyring();
    let mut cmd = session.command(bin());
    cmd.args(["console", "subscribe", "--url", "https://laptop.example.net", "--console-url", &url])
        .args(["--console-token-env", "ZOF_TEST_TOKEN"])
        .env("ZOF_TEST_TOKEN", TOKEN);
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    let fingerprint = zof_approvals::verify::Secret::new(WEBHOOK_SECRET).unwrap().fingerprint().to_string();
    assert!(text.contains(&fingerprint) && !text.contains(WEBHOOK_SECRET) && !text.contains(TOKEN), "{text}");
    assert_eq!(session.keyring_lookup(&fingerprint).as_deref(), Some(WEBHOOK_SECRET));
    let asked = fake.0.lock().unwrap().webhooks[0].clone();
    assert_eq!(asked["url"], "https://laptop.example.net/webhooks/zof");
    assert_eq!(asked["events"], json!(["remediation.plan_pending"]));
    // The rotation is recorded like every other: by fingerprint, with who and from where.
    let audit = session.command(bin()).args(["audit", "--json"]).output().unwrap();
    let rows: Vec<Value> =
        String::from_utf8_lossy(&audit.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        rows.iter().any(|r| r["action"] == "secret_set"
            && r["source"] == "cli"
            && r["detail"].as_str().is_some_and(|d| d.contains(&fingerprint))),
        "{rows:?}"
    );

    let mut serve = session.command(bin());
    serve.args(["serve", "--listen", "127.0.0.1:0", "--notifications", "off"]).stderr(Stdio::null());
    let served = ServeChild::spawn(serve);
    let sent = std::process::Command::new(bin())
        .args(["send", "--url", &served.url, "--secret-env", "ZOF_TEST_SENDER_SECRET", "--json"])
        .env("ZOF_TEST_SENDER_SECRET", WEBHOOK_SECRET)
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&sent.stdout).unwrap();
    assert_eq!(summary["accepted"], 1, "{summary}");
    served.terminate();
    for dir in [session.data_dir(), session.config_dir()] {
        assert!(files_containing(&dir, WEBHOOK_SECRET).is_empty() && files_containing(&dir, TOKEN).is_empty());
    }
}

#[tokio::test]
async fn the_audit_log_records_console_resolutions_and_connection_changes() {
    use zof_approvals::domain::audit::{AuditAction, AuditFilter, Source};
    let (fake, url) = FakeConsole::start().await;
    let app = connected_app(&url, TOKEN).await;
    first_run(&app, ConnectionState::Ok).await;
    assert_eq!(app.post_signed(&event_for("evt_au1", "plan_au", "org_abc")).await.status, 200);
    assert_eq!(app.wait_notified(1).await, vec!["plan_au"]);
    fake.put("plan_au", "approved", "org_abc", "run_xyz", Some("alice@example.com"));
    assert_eq!(app.panel.check_with_console().await.unwrap().resolved, 1);
    // Every attempt of the next reconciliation fails: the connection goes down.
    fake.fail_next(&[Failure::Status(503); 8]);
    assert!(app.panel.check_with_console().await.is_err());
    assert_eq!(app.panel.console_status().state, ConnectionState::Unreachable);

    // The connection's rows are written off the request path: wait for the last one.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = app.panel.audit(AuditFilter::default()).await.unwrap();
        if rows.iter().any(|r| r.action == AuditAction::ConsoleDisconnected) {
            break rows;
        }
        assert!(Instant::now() < deadline, "no console_disconnected row: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut rows = rows;
    rows.reverse();
    let seen: Vec<_> = rows.iter().map(|r| (r.action, r.plan_id.as_deref(), r.source.clone())).collect();
    assert_eq!(
        seen,
        [
            (AuditAction::ConsoleConnected, None, Source::Console),
            (AuditAction::Resolved, Some("plan_au"), Source::Console),
            (AuditAction::ConsoleDisconnected, None, Source::Console),
        ]
    );
    assert_eq!((rows[1].who.as_str(), rows[1].detail.as_str()), ("alice@example.com", "approved"));
    assert_eq!(rows[0].detail, url);
    assert!(rows[2].detail.starts_with(&format!("{url}: ")), "{}", rows[2].detail);
    assert!(rows.iter().all(|r| !r.detail.contains(TOKEN) && !r.who.contains(TOKEN)), "never the token");
}
