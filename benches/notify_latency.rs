//! Latency from the HTTP acknowledgement to the `Notify` call on the bus: 1,000 plans sent at a
//! steady rate to a receiver whose notifications go to a recording notification server on a
//! private session bus. Prints p50/p99/max; asserts nothing. `cargo bench --bench notify_latency`
//! (`-- PLANS RATE` to change the load). Coalescing is switched off so every plan gets its own
//! notification (with coalescing, a burst's later plans update one summary instead).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use zof_approvals::app::{AppConfig, Application, SecretSource};
use zof_approvals::config::{Paths, Settings};
use zof_approvals::envelope::plan_pending_body;
use zof_approvals::notify::DesktopNotifier;
use zof_approvals::verify::{sign_zof, Secret, SecretSet};
use zof_testkit::{now_ms, Call, NotificationRecorder, PrivateBus};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let plans: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rate: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100.0);

    let bus = PrivateBus::start().expect("dbus-daemon is needed");
    let address = bus.address.clone();
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &address);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let recorder = NotificationRecorder::start(&address).await.unwrap();
        let secret = Secret::new("bench-secret-0123456789abcdef").unwrap();
        let mut settings = Settings { listen: "127.0.0.1:0".parse().unwrap(), ..Settings::default() };
        settings.notifications.coalesce_threshold = u32::MAX;
        let config = AppConfig {
            paths: Paths { data_dir: dir.path().join("data"), config_dir: dir.path().join("config") },
            settings,
            secrets: SecretSource::Fixed(SecretSet::single(secret.clone())),
        };
        let app = Application::build(config, Arc::new(DesktopNotifier::new(tokio::runtime::Handle::current())))
            .await
            .unwrap();
        let url = app.webhook_url();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));

        let client = reqwest::Client::new();
        let started = Instant::now();
        let mut acked_at = HashMap::new();
        for n in 0..plans {
            tokio::time::sleep_until((started + Duration::from_secs_f64(n as f64 / rate)).into()).await;
            let plan = format!("plan_bench_{n}");
            let body = plan_pending_body(&format!("evt_bench_{n}"), Utc::now(), &plan, "org_bench", "run_bench");
            let resp =
                client.post(&url).header("x-zof-signature", sign_zof(&secret, &body)).body(body).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            acked_at.insert(plan, now_ms());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut latencies: Vec<f64> = recorder
            .calls()
            .iter()
            .filter_map(|c| match c {
                Call::Notify { body, at_ms, replaces_id: 0, .. } => {
                    let plan = body.split_whitespace().nth(1)?;
                    Some((at_ms - acked_at.get(plan)?).max(0.0))
                }
                _ => None,
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
        println!(
            "notify latency over {} of {plans} plans at {rate}/s: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            latencies.len(),
            pct(0.5),
            pct(0.99),
            latencies.last().copied().unwrap_or(0.0)
        );
        let _ = stop.send(());
        let _ = server.await;
    });
    drop(bus);
}
