//! `spawn_app()`: a receiver on port 0 with a fresh store, and the signed requests tests send.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use zof_approvals::app::{AppConfig, Application, SecretSource};
use zof_approvals::config::{Paths, Settings};
use zof_approvals::console::ConsoleSetup;
use zof_approvals::envelope::plan_pending_body;
use zof_approvals::outbox::{Notice, Notifier, NotifyError};
use zof_approvals::panel::Panel;
use zof_approvals::store::{PlanRecord, Store};
use zof_approvals::verify::{sign_zof, Secret, SecretSet};

/// Valid base64 after `whsec_`: the Standard Webhooks tests sign with the decoded key.
pub const SECRET: &str = "whsec_dGVzdC1zZWNyZXQtZm9yLWludGVncmF0aW9uLXRlc3Rz";

pub fn secret() -> Secret {
    Secret::new(SECRET).unwrap()
}

/// Records which plans the outbox handed on (the notifier boundary, observed), and the title
/// and body each notification would show, when the plan's details came in time.
#[derive(Debug, Default)]
pub struct SeenPlans(pub Mutex<Vec<String>>, pub Mutex<Vec<Option<(String, String)>>>);

impl Notifier for SeenPlans {
    fn plan_pending(&self, plan: &PlanRecord) -> Result<Notice, NotifyError> {
        self.1.lock().unwrap().push(plan.headline.notification());
        self.0.lock().unwrap().push(plan.plan_id.clone());
        Ok(Notice::Shown)
    }
}

pub struct TestApp {
    pub base: String,
    pub url: String,
    pub client: reqwest::Client,
    pub dir: Arc<tempfile::TempDir>,
    pub notified: Arc<SeenPlans>,
    pub panel: Panel,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub struct Spawn {
    pub settings: Settings,
    pub secrets: SecretSet,
    pub dir: Option<Arc<tempfile::TempDir>>,
    /// The Console connection's token and retries (none: the default, no token).
    pub console: Option<ConsoleSetup>,
    /// Secrets managed in this store (set, generated and revoked through the panel), instead of
    /// the fixed `secrets`.
    pub secret_store: Option<Arc<dyn zof_approvals::secrets::SecretStore>>,
}

impl Default for Spawn {
    fn default() -> Self {
        let settings = Settings { listen: "127.0.0.1:0".parse().unwrap(), ..Settings::default() };
        Spawn { settings, secrets: SecretSet::single(secret()), dir: None, console: None, secret_store: None }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Spawn::default()).await
}

pub async fn spawn_with(spawn: Spawn) -> TestApp {
    let dir = spawn.dir.unwrap_or_else(|| Arc::new(tempfile::tempdir().unwrap()));
    let paths = Paths { data_dir: dir.path().join("data"), config_dir: dir.path().join("config") };
    let secrets = match spawn.secret_store {
        Some(store) => SecretSource::Store(store),
        None => SecretSource::Fixed(spawn.secrets),
    };
    let config = AppConfig { paths, settings: spawn.settings, secrets };
    let notified = Arc::new(SeenPlans::default());
    let app = match spawn.console {
        Some(setup) => Application::build_with_console(config, notified.clone(), setup).await.unwrap(),
        None => Application::build(config, notified.clone()).await.unwrap(),
    };
    let panel = app.panel();
    let base = format!("http://{}", app.local_addr());
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    TestApp {
        url: format!("{base}/webhooks/zof"),
        base,
        client: reqwest::Client::new(),
        dir,
        notified,
        panel,
        stop: Some(tx),
        task: Some(task),
    }
}

pub struct Reply {
    pub status: u16,
    pub json: serde_json::Value,
    pub retry_after: Option<String>,
}

impl TestApp {
    pub async fn post(&self, body: &[u8], signature: Option<&str>) -> Reply {
        let mut req = self.client.post(&self.url).body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header("X-Zof-Signature", sig);
        }
        reply(req.send().await.unwrap()).await
    }

    pub async fn post_signed(&self, body: &[u8]) -> Reply {
        self.post(body, Some(&sign_zof(&secret(), body))).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        reply(self.client.get(format!("{}{path}", self.base)).send().await.unwrap()).await
    }

    /// Stops the receiver (graceful) and returns its directory for a restart or inspection.
    pub async fn stop(mut self) -> Arc<tempfile::TempDir> {
        self.shutdown().await;
        self.dir.clone()
    }

    async fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Opens the store after stopping the receiver. sled hands its last log write to a
    /// background IO thread that still holds the file lock for a moment after the database is
    /// dropped, so an immediate reopen in the same process may briefly see it locked.
    pub async fn stopped_store(self) -> (Store, Arc<tempfile::TempDir>) {
        let dir = self.stop().await;
        let path = dir.path().join("data");
        for _ in 0..100 {
            match Store::open(&path) {
                Err(zof_approvals::store::StoreError::Locked(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
                opened => return (opened.unwrap(), dir),
            }
        }
        panic!("the store stayed locked for 2 s after the receiver stopped");
    }

    /// Waits until the outbox handed `n` plans to the notifier.
    pub async fn wait_notified(&self, n: usize) -> Vec<String> {
        for _ in 0..200 {
            let seen = self.notified.0.lock().unwrap().clone();
            if seen.len() >= n {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.notified.0.lock().unwrap().clone()
    }
}

async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Reply { status, json, retry_after }
}

pub fn event(id: &str) -> Vec<u8> {
    event_for(id, "plan_1", "org_abc")
}

pub fn event_for(id: &str, plan: &str, org: &str) -> Vec<u8> {
    plan_pending_body(id, Utc::now(), plan, org, "run_xyz")
}

pub fn event_created(id: &str, created: DateTime<Utc>) -> Vec<u8> {
    plan_pending_body(id, created, "plan_1", "org_abc", "run_xyz")
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zof-approvals"))
}

/// A `zof-approvals serve` child, killed on drop so a failed assertion leaves nothing running.
pub struct ServeChild {
    pub child: std::process::Child,
    pub base: String,
    pub url: String,
}

impl ServeChild {
    /// Spawns `command` (a `serve` invocation) and waits for its `listening on` line.
    pub fn spawn(mut command: std::process::Command) -> ServeChild {
        use std::io::BufRead;
        let mut child = command.stdout(std::process::Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let base = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("got {line:?}")).to_owned();
        ServeChild { url: format!("{base}/webhooks/zof"), base, child }
    }

    /// SIGTERM, and the receiver must exit cleanly.
    pub fn terminate(mut self) {
        std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve exits cleanly on SIGTERM: {status:?}");
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `ok` every 100 ms until it holds, for at most 15 s (blocking: for tests that watch
/// other processes or files).
pub fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("timed out waiting until {what}");
}

/// Files under `dir` whose bytes contain `needle` (a secret or a token that must be nowhere).
pub fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())) {
            found.push(path);
        }
    }
    found
}
