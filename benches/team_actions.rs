//! How long a "handled" takes to reach another laptop: two laptops (each its own `Application`
//! and store) follow a real nats-server; laptop B notifies through the real notify-rust client
//! to a recording notification server on a private session bus. For each of 100 plans, A marks
//! it handled (`Panel::handle`, the panel's button) and the clock stops when B's
//! `CloseNotification` for it reaches the bus. Beside it, in the same run, the raw component: a
//! JetStream publish with its PubAck, read by a durable pull consumer and acknowledged (the
//! same hop with no store, no signature and no notification). Then the same for decisions: A
//! approves each plan in the review against a fake Console on loopback (read again, one POST,
//! recorded and shared), and the clock stops at B's `CloseNotification`. Prints p50/p99/max.
//!
//! `cargo bench --bench team_actions [-- ACTIONS]`; needs `nats-server` (scripts/deps.sh, or
//! `ZOF_NATS_SERVER`) and `dbus-daemon`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use axum::body::Bytes;
use chrono::Utc;
use futures::StreamExt;
use zof_approvals::app::{AppConfig, Application, SecretSource};
use zof_approvals::config::{Paths, Settings};
use zof_approvals::domain::audit::Source;
use zof_approvals::envelope::plan_pending_body;
use zof_approvals::notify::DesktopNotifier;
use zof_approvals::outbox::{LogNotifier, Notifier};
use zof_approvals::panel::Panel;
use zof_approvals::relay::{delivery_subject, LaptopLink, NatsAuth, NatsConfig, Publisher, RelayStatus};
use zof_approvals::store::PlanState;
use zof_approvals::verify::{sign_zof, Secret, SecretSet};
use zof_testkit::{now_ms, Call, NotificationRecorder, PrivateBus};

const SECRET: &str = "bench-team-secret-0123456789abcdef";

fn nats_server() -> PathBuf {
    if let Some(p) = std::env::var_os("ZOF_NATS_SERVER") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/nats-venv/bin/nats-server")
}

fn start_nats(dir: &Path) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(nats_server())
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server: run scripts/deps.sh or set ZOF_NATS_SERVER");
    let url = format!("nats://127.0.0.1:{port}");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    (child, url)
}

async fn laptop(
    url: &str,
    dir: &Path,
    name: &str,
    notifier: Arc<dyn Notifier>,
    console: Option<&str>,
) -> (Panel, tokio::task::JoinHandle<()>, tokio::sync::oneshot::Sender<()>) {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        display_name: name.into(),
        console_api_url: console.unwrap_or_default().into(),
        ..Settings::default()
    };
    settings.notifications.coalesce_threshold = u32::MAX;
    let config = AppConfig {
        paths: Paths { data_dir: dir.join(name).join("data"), config_dir: dir.join(name).join("config") },
        settings,
        secrets: SecretSource::Fixed(SecretSet::single(Secret::new(SECRET).unwrap())),
    };
    let token = zof_approvals::console::ConsoleToken::new(zof_testkit::review_console::TOKEN).unwrap();
    let setup = zof_approvals::console::ConsoleSetup::fixed(token);
    let mut app = Application::build_with_console(config, notifier, setup).await.unwrap();
    let nats = NatsConfig { url: url.into(), auth: NatsAuth::None, ca_file: None, name: name.into() };
    app.attach_relay(LaptopLink { nats, stream: "ZOF".into(), consumer: name.into() });
    let panel = app.panel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (panel, task, stop)
}

/// Waits until bob's bus shows `plan` and alice holds it pending; returns the notification's id.
async fn shown_on_bus(recorder: &NotificationRecorder, a: &Panel, plan: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = recorder.calls().iter().find_map(|c| match c {
            Call::Notify { id, body, .. } if body.split_whitespace().nth(1) == Some(plan) => Some(*id),
            _ => None,
        });
        let held = a.plan(plan.to_owned()).await.is_ok_and(|d| d.plan.state == PlanState::Pending);
        if let (Some(id), true) = (shown, held) {
            return id;
        }
        assert!(Instant::now() < deadline, "{plan} did not reach both laptops");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// When bob's notification `shown` was closed on his bus.
async fn closed_on_bus(recorder: &NotificationRecorder, shown: u32, plan: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let closed = recorder.calls().iter().find_map(|c| match c {
            Call::Close { id, at_ms } if *id == shown => Some(*at_ms),
            _ => None,
        });
        if let Some(at) = closed {
            return at;
        }
        assert!(Instant::now() < deadline, "{plan}: bob's notification was never closed");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn percentiles(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    format!(
        "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n = {})",
        pct(0.5),
        pct(0.99),
        v.last().copied().unwrap_or(0.0),
        v.len()
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let actions: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100);
    let bus = PrivateBus::start().expect("dbus-daemon is needed");
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    let dir = tempfile::tempdir().unwrap();
    let (mut nats, url) = start_nats(&dir.path().join("nats"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let recorder = NotificationRecorder::start(&bus.address).await.unwrap();
        let config = NatsConfig { url: url.clone(), auth: NatsAuth::None, ca_file: None, name: "bench relay".into() };
        let relay = Publisher::connect(&config, RelayStatus::new("bench")).await.unwrap();
        relay.ensure_stream(&Default::default(), Duration::from_secs(10)).await.unwrap();
        let (console, console_url) = zof_testkit::review_console::ReviewConsole::start().await;
        let (a, a_task, a_stop) = laptop(&url, dir.path(), "alice", Arc::new(LogNotifier), Some(&console_url)).await;
        let desktop = Arc::new(DesktopNotifier::new(tokio::runtime::Handle::current()));
        let (b, b_task, b_stop) = laptop(&url, dir.path(), "bob", desktop, None).await;

        // One plan at a time, so bob's notification of it is live (the notifier keeps a bounded
        // number on screen): delivered, shown on bob's bus, held by alice, then handled by alice.
        let secret = Secret::new(SECRET).unwrap();
        let mut latencies = Vec::with_capacity(actions);
        for n in 0..actions {
            let (id, plan) = (format!("evt_team_{n}"), format!("plan_team_{n}"));
            let body = plan_pending_body(&id, Utc::now(), &plan, "org_bench", "run_bench");
            let sig = sign_zof(&secret, &body);
            relay
                .publish(delivery_subject("org_bench"), &id, &[("x-zof-signature", sig.as_str())], Bytes::from(body))
                .await
                .unwrap();
            let shown = shown_on_bus(&recorder, &a, &plan).await;
            let clicked = now_ms();
            let done = a.actions().handle(&plan, Source::Panel).await.unwrap();
            assert!(!done.already);
            latencies.push(closed_on_bus(&recorder, shown, &plan).await - clicked);
        }
        let last = format!("plan_team_{}", actions - 1);
        let state = b.plan(last).await.unwrap().plan;
        assert_eq!((state.state, state.decided_by.as_deref()), (PlanState::Handled, Some("alice")));
        println!("team action, alice marks handled → CloseNotification on bob's bus: {}", percentiles(latencies));

        // Decisions: alice approves in the review (after confirming: the plan read again, the
        // POST to the Console, the plan resolved with its audit row and team action), and the
        // clock stops when bob's notification of it is withdrawn on his bus.
        let mut decided = Vec::with_capacity(actions);
        for n in 0..actions {
            let (id, plan) = (format!("evt_dec_{n}"), format!("plan_dec_{n}"));
            console.add(&plan, "low", true);
            let body = plan_pending_body(&id, Utc::now(), &plan, "org_abc", "run_xyz");
            let sig = sign_zof(&secret, &body);
            relay
                .publish(delivery_subject("org_abc"), &id, &[("x-zof-signature", sig.as_str())], Bytes::from(body))
                .await
                .unwrap();
            let shown = shown_on_bus(&recorder, &a, &plan).await;
            let clicked = now_ms();
            let report = a
                .decide(
                    plan.clone(),
                    zof_approvals::domain::review::Verdict::Approve,
                    Some("rev_1".into()),
                    String::new(),
                )
                .await;
            assert_eq!(report.outcome, zof_approvals::actions::DecisionOutcome::Decided, "{}", report.message);
            decided.push(closed_on_bus(&recorder, shown, &plan).await - clicked);
        }
        println!("decision, alice approves → CloseNotification on bob's bus:     {}", percentiles(decided));

        // The raw component: publish + PubAck, then a durable pull consumer's receive + ack.
        let js = jetstream::new(async_nats::connect(&url).await.unwrap());
        js.get_or_create_stream(jetstream::stream::Config {
            name: "RAW".into(),
            subjects: vec!["raw.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let stream = js.get_stream("RAW").await.unwrap();
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                "raw",
                jetstream::consumer::pull::Config { durable_name: Some("raw".into()), ..Default::default() },
            )
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap();
        let mut raw = Vec::with_capacity(actions);
        for n in 0..actions {
            let started = Instant::now();
            js.publish("raw.org_bench", Bytes::from(format!("{{\"n\":{n}}}"))).await.unwrap().await.unwrap();
            let message = messages.next().await.unwrap().unwrap();
            message.ack().await.unwrap();
            raw.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        println!("raw JetStream, publish + PubAck → pull consumer receives + acks:   {}", percentiles(raw));

        let _ = a_stop.send(());
        let _ = b_stop.send(());
        let _ = a_task.await;
        let _ = b_task.await;
    });
    let _ = nats.kill();
    let _ = nats.wait();
    drop(bus);
}
