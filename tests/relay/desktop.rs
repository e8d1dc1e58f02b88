//! The desktop's side: a laptop `Application` that follows the relay its settings name (as
//! Settings → Team relay saves them through the panel), the NATS password in a keychain, and the
//! consumer stopped and started again by saving, without restarting the application.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use zof_approvals::app::{AppConfig, Application, SecretSource};
use zof_approvals::config::{Paths, RelaySettings, Settings};
use zof_approvals::outbox::{Notice, Notifier, NotifyError};
use zof_approvals::panel::{Panel, SettingsView};
use zof_approvals::relay::RelayView;
use zof_approvals::secrets::{MemoryStore, SecretStore};
use zof_approvals::store::PlanRecord;
use zof_approvals::verify::{Secret, SecretSet};

use crate::support::*;

const NATS_USER: &str = "laptops";
const NATS_PASSWORD: &str = "nats-password-for-the-desktop-test-7f3a";

/// The plans the outbox handed on, in order.
#[derive(Debug, Default)]
struct Announced(Mutex<Vec<String>>);

impl Notifier for Announced {
    fn plan_pending(&self, plan: &PlanRecord) -> Result<Notice, NotifyError> {
        self.0.lock().unwrap().push(plan.plan_id.clone());
        Ok(Notice::Shown)
    }
}

impl Announced {
    fn plans(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Polls the panel's relay status until `check` holds, for at most `secs`.
fn wait_for_relay(rt: &Runtime, panel: &Panel, secs: u64, what: &str, check: impl Fn(&RelayView) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let view = rt.block_on(panel.relay_status());
        if check(&view) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}; relay: {view:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn save_relay(rt: &Runtime, panel: &Panel, relay: RelaySettings) {
    let view = SettingsView { relay: Some(relay), ..panel.settings_view() };
    rt.block_on(panel.save_settings(view)).unwrap();
}

#[test]
fn a_laptop_app_follows_the_relay_its_settings_name_stops_when_the_url_is_cleared_and_catches_up_when_set_again() {
    let nats = Nats::with_user(NATS_USER, NATS_PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let relay = relay_with_env(
        &nats,
        dir.path(),
        "relay",
        &["--nats-user", NATS_USER, "--nats-password-env", "RELAY_NATS_PASSWORD"],
        &[("RELAY_NATS_PASSWORD", NATS_PASSWORD)],
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let paths = Paths { data_dir: dir.path().join("data"), config_dir: dir.path().join("config") };
    let settings = Settings { listen: "127.0.0.1:0".parse().unwrap(), ..Settings::default() };
    let secrets = SecretSource::Fixed(SecretSet::single(Secret::new(SECRET).unwrap()));
    let announced = Arc::new(Announced::default());
    let keychain = Arc::new(MemoryStore::default());
    let config = AppConfig { paths: paths.clone(), settings, secrets };
    let app = rt.block_on(Application::build(config, announced.clone())).unwrap();
    app.set_relay_keychain(keychain.clone());
    let panel = app.panel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = rt.spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    assert_eq!(rt.block_on(panel.relay_status()).state, "off", "no relay until the settings name one");

    // Settings → Team relay: the password to the keychain, the rest to the settings.
    let fingerprint = rt.block_on(panel.set_relay_password(NATS_PASSWORD.into())).unwrap();
    let joined =
        RelaySettings { url: nats.url(), user: NATS_USER.into(), consumer: "desk".into(), ..RelaySettings::default() };
    save_relay(&rt, &panel, joined.clone());
    wait_for_relay(&rt, &panel, 20, "the relay to connect", |v| v.state == "connected");
    let view = rt.block_on(panel.relay_status());
    assert_eq!((view.consumer.as_deref(), view.password_fingerprint.as_deref()), (Some("desk"), Some(&*fingerprint)));
    assert_eq!(send(&relay.url(), 1, &["--plan", "plan_before"])["accepted"], 1);
    wait_until(20, "the relayed plan to be announced", || announced.plans() == ["plan_before"]);

    // Clearing the URL stops the consumer: its connection closes, the status says off.
    save_relay(&rt, &panel, RelaySettings { url: String::new(), ..joined.clone() });
    assert_eq!(rt.block_on(panel.relay_status()).state, "off");
    wait_until(10, "the laptop's NATS connection to close", || {
        !nats.client_names().iter().any(|n| n == "zof-approvals desk")
    });
    assert_eq!(send(&relay.url(), 20, &["--org", "org_abc"])["accepted"], 20, "the relay still takes deliveries");
    assert_eq!(announced.plans().len(), 1, "nothing reaches a laptop that left the relay");

    // Setting it again resumes the same durable consumer: what was sent meanwhile arrives.
    save_relay(&rt, &panel, joined);
    wait_until(30, "the 20 deliveries sent while off to be announced", || announced.plans().len() == 21);
    wait_for_relay(&rt, &panel, 20, "the relay to be connected and caught up", |v| v.state == "connected");
    let plans = announced.plans();
    assert_eq!(distinct(&plans).len(), 21, "each plan announced once: {plans:?}");

    // The password is in the keychain only.
    let stored = keychain.get_named("nats-password").unwrap();
    assert_eq!(stored.as_deref().map(String::as_str), Some(NATS_PASSWORD));
    let file = std::fs::read_to_string(paths.settings_file()).unwrap();
    assert!(file.contains("\"url\"") && !file.contains(NATS_PASSWORD), "settings.json: {file}");
    let _ = stop.send(());
    rt.block_on(running).unwrap().unwrap();
}

#[test]
fn serve_without_relay_flags_follows_the_relay_in_its_settings() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(&nats, dir.path(), "relay", &[]);
    let settings = format!(r#"{{"relay": {{"url": "{}", "consumer": "from_settings"}}}}"#, nats.url());
    let laptop = Laptop::new(dir.path(), "from_settings").with_settings(&settings);
    let proc = laptop.start_from_settings();
    assert_eq!(send(&relay.url(), 30, &[])["accepted"], 30);
    wait_drained(&nats, "from_settings");
    let log = proc.log_text();
    proc.terminate();
    assert_eq!(distinct(&laptop.plans()).len(), 30, "the deliveries came through the consumer the settings name");
    assert!(log.contains("(from settings)"), "serve says where the relay came from:\n{log}");
}
