//! Latency from the HTTP acknowledgement to the `Notify` call on the bus: 1,000 plans sent at a
//! steady rate to a receiver whose notifications go to a recording notification server on a
//! private session bus. Prints p50/p99/max, and the acknowledgements' own p50/p99; asserts
//! nothing. `cargo bench --bench notify_latency` (`-- PLANS RATE` to change the load).
//! Coalescing is switched off so every plan gets its own notification (with coalescing, a
//! burst's later plans update one summary instead).
//!
//! Three runs side by side: no Console connection; a fake Console on loopback that answers each
//! plan's details in 50 ms (the notification then carries the plan's title); and one that hangs
//! (the notification waits at most 2 s for the details, then goes with the ids).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use zof_approvals::app::{AppConfig, Application, SecretSource};
use zof_approvals::config::{Paths, Settings};
use zof_approvals::console::{ConsoleSetup, ConsoleToken};
use zof_approvals::envelope::plan_pending_body;
use zof_approvals::notify::DesktopNotifier;
use zof_approvals::verify::{sign_zof, Secret, SecretSet};
use zof_testkit::review_console::{ReviewConsole, TOKEN};
use zof_testkit::{now_ms, Call, NotificationRecorder, PrivateBus};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let plans: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rate: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100.0);

    let bus = PrivateBus::start().expect("dbus-daemon is needed");
    let address = bus.address.clone();
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &address);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    for console in [None, Some(Duration::from_millis(50)), Some(Duration::from_secs(120))] {
        let label = match console {
            None => "no Console".to_owned(),
            Some(d) if d < Duration::from_secs(60) => format!("Console answering in {} ms", d.as_millis()),
            Some(_) => "Console that hangs".to_owned(),
        };
        let dir = tempfile::tempdir().unwrap();
        runtime.block_on(run(plans, rate, &address, dir.path(), console, &label));
    }
    drop(bus);
}

async fn run(plans: usize, rate: f64, address: &str, dir: &std::path::Path, console: Option<Duration>, label: &str) {
    {
        let recorder = NotificationRecorder::start(address).await.unwrap();
        let secret = Secret::new("bench-secret-0123456789abcdef").unwrap();
        let fake = match console {
            Some(delay) => {
                let (fake, url) = ReviewConsole::start().await;
                fake.set(|c| c.details_delay = delay);
                Some((fake, url))
            }
            None => None,
        };
        let mut settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            console_api_url: fake.as_ref().map(|(_, url)| url.clone()).unwrap_or_default(),
            ..Settings::default()
        };
        settings.notifications.coalesce_threshold = u32::MAX;
        let config = AppConfig {
            paths: Paths { data_dir: dir.join("data"), config_dir: dir.join("config") },
            settings,
            secrets: SecretSource::Fixed(SecretSet::single(secret.clone())),
        };
        let setup = ConsoleSetup::fixed(ConsoleToken::new(TOKEN).unwrap());
        let notifier = Arc::new(DesktopNotifier::new(tokio::runtime::Handle::current()));
        let app = Application::build_with_console(config, notifier, setup).await.unwrap();
        let url = app.webhook_url();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));

        let client = reqwest::Client::new();
        let started = Instant::now();
        let mut acked_at = HashMap::new();
        let mut acks = Vec::with_capacity(plans);
        for n in 0..plans {
            tokio::time::sleep_until((started + Duration::from_secs_f64(n as f64 / rate)).into()).await;
            let plan = format!("plan_bench_{n}");
            if let Some((fake, _)) = &fake {
                fake.add_titled(&plan, "low", true, &plan);
            }
            let body = plan_pending_body(&format!("evt_bench_{n}"), Utc::now(), &plan, "org_abc", "run_xyz");
            let sent = now_ms();
            let resp =
                client.post(&url).header("x-zof-signature", sign_zof(&secret, &body)).body(body).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let acked = now_ms();
            acks.push(acked - sent);
            acked_at.insert(plan, acked);
        }
        // Every plan is told (the hanging Console's plans at most 2 s late), then counted.
        let deadline = Instant::now() + Duration::from_secs(30);
        while recorder.calls().iter().filter(|c| matches!(c, Call::Notify { replaces_id: 0, .. })).count() < plans
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut latencies: Vec<f64> = recorder
            .calls()
            .iter()
            .filter_map(|c| match c {
                Call::Notify { summary, body, at_ms, replaces_id: 0, .. } => {
                    // "Approval needed: plan_bench_7" with details, "Plan plan_bench_7 · run …" without.
                    let plan = summary.strip_prefix("Approval needed: ").or_else(|| body.split_whitespace().nth(1))?;
                    Some((at_ms - acked_at.get(plan)?).max(0.0))
                }
                _ => None,
            })
            .collect();
        let titled = recorder
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Notify { summary, .. } if summary.starts_with("Approval needed: ")))
            .count();
        let pct = |v: &mut Vec<f64>, p: f64| {
            v.sort_by(f64::total_cmp);
            v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
        };
        println!(
            "{label:<30} ack → Notify over {} of {plans} plans at {rate}/s: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  \
             ({titled} with the plan's title); acks p50 {:.1} ms  p99 {:.1} ms",
            latencies.len(),
            pct(&mut latencies, 0.5),
            pct(&mut latencies, 0.99),
            latencies.last().copied().unwrap_or(0.0),
            pct(&mut acks, 0.5),
            pct(&mut acks, 0.99),
        );
        let _ = stop.send(());
        let _ = server.await;
    }
}
