//! Test peers that are real D-Bus services. [`NotificationRecorder`] owns
//! `org.freedesktop.Notifications` on a given bus, answers like a notification daemon with
//! actions, records every call, and emits the signals a user's click or dismissal causes.
//! [`review_console`] is a fake Zof Console for review and decide, over real HTTP.

pub mod review_console;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use zbus::object_server::SignalEmitter;
use zbus::OwnedVariant;

pub const PATH: &str = "/org/freedesktop/Notifications";

/// One call that reached the server.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    Notify {
        id: u32,
        replaces_id: u32,
        app_name: String,
        app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        urgency: Option<u8>,
        expire_timeout: i32,
        at_ms: f64,
    },
    Close {
        id: u32,
        at_ms: f64,
    },
}

type Sink = Arc<dyn Fn(&Call) + Send + Sync>;

struct Server {
    next_id: AtomicU32,
    calls: Arc<Mutex<Vec<Call>>>,
    sink: Option<Sink>,
}

impl Server {
    fn record(&self, call: Call) {
        if let Some(sink) = &self.sink {
            sink(&call);
        }
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }
}

pub fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Server {
    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        app_name: String,
        replaces_id: u32,
        app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        hints: HashMap<String, OwnedVariant>,
        expire_timeout: i32,
    ) -> u32 {
        let id = if replaces_id != 0 { replaces_id } else { self.next_id.fetch_add(1, Ordering::SeqCst) };
        let urgency = hints.get("urgency").and_then(|v| u8::try_from(v).ok());
        let at_ms = now_ms();
        self.record(Call::Notify {
            id,
            replaces_id,
            app_name,
            app_icon,
            summary,
            body,
            actions,
            urgency,
            expire_timeout,
            at_ms,
        });
        id
    }

    async fn close_notification(&self, id: u32, #[zbus(signal_emitter)] emitter: SignalEmitter<'_>) {
        self.record(Call::Close { id, at_ms: now_ms() });
        let _ = Server::notification_closed(&emitter, id, 3).await;
    }

    fn get_capabilities(&self) -> Vec<String> {
        ["actions", "body", "body-markup", "persistence"].map(String::from).to_vec()
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        ("notification-recorder".into(), "zof-testkit".into(), "1.0".into(), "1.2".into())
    }

    #[zbus(signal)]
    async fn action_invoked(emitter: &SignalEmitter<'_>, id: u32, action_key: &str) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn notification_closed(emitter: &SignalEmitter<'_>, id: u32, reason: u32) -> zbus::Result<()>;
}

/// A running recorder. Dropping it releases the name and closes its connection.
#[derive(Clone)]
pub struct NotificationRecorder {
    connection: zbus::Connection,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl std::fmt::Debug for NotificationRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationRecorder").finish_non_exhaustive()
    }
}

impl NotificationRecorder {
    /// Serves on the bus at `address` (a D-Bus address such as `unix:path=...`).
    pub async fn start(address: &str) -> zbus::Result<NotificationRecorder> {
        Self::start_with_sink(address, None).await
    }

    /// As [`start`](Self::start), calling `sink` for every call as it arrives.
    pub async fn start_with_sink(address: &str, sink: Option<Sink>) -> zbus::Result<NotificationRecorder> {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let server = Server { next_id: AtomicU32::new(1), calls: calls.clone(), sink };
        let connection = zbus::connection::Builder::address(address)
            .serve_at(PATH, server)
            .name("org.freedesktop.Notifications")
            .build()
            .await?;
        Ok(NotificationRecorder { connection, calls })
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Ok(mut c) = self.calls.lock() {
            c.clear();
        }
    }

    /// Emits `ActionInvoked(id, key)`: a click ("default") or a button.
    pub async fn invoke(&self, id: u32, key: &str) -> zbus::Result<()> {
        let emitter = SignalEmitter::new(&self.connection, PATH)?;
        Server::action_invoked(&emitter, id, key).await
    }

    /// Emits `NotificationClosed(id, reason)`.
    pub async fn closed(&self, id: u32, reason: u32) -> zbus::Result<()> {
        let emitter = SignalEmitter::new(&self.connection, PATH)?;
        Server::notification_closed(&emitter, id, reason).await
    }
}

/// A private D-Bus session bus in a temporary directory: nothing auto-starts on it and nothing
/// from the host session leaks in. Killed on drop.
#[derive(Debug)]
pub struct PrivateBus {
    pub address: String,
    dir: tempfile::TempDir,
    daemon: std::process::Child,
}

impl PrivateBus {
    pub fn start() -> std::io::Result<PrivateBus> {
        use std::io::BufRead;
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:dir={}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>"#,
                dir.path().display()
            ),
        )?;
        let mut daemon = std::process::Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut address = String::new();
        if let Some(out) = daemon.stdout.take() {
            std::io::BufReader::new(out).read_line(&mut address)?;
        }
        let address = address.trim().to_owned();
        if address.is_empty() {
            let _ = daemon.kill();
            let _ = daemon.wait();
            return Err(std::io::Error::other("dbus-daemon printed no address"));
        }
        Ok(PrivateBus { address, dir, daemon })
    }

    /// The directory the bus lives in (a test may keep other files there).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// The notification client reads its bus from the process-wide `DBUS_SESSION_BUS_ADDRESS`, so
/// tests of one process that use it take turns: each turn has a private bus of its own, and the
/// variable names it while the turn is held.
#[derive(Debug)]
pub struct BusTurn {
    pub bus: PrivateBus,
    _guard: tokio::sync::MutexGuard<'static, ()>,
}

impl BusTurn {
    /// Waits for this process's turn, then starts a private bus and points the variable at it.
    pub async fn take() -> std::io::Result<BusTurn> {
        static TURN: std::sync::OnceLock<tokio::sync::Mutex<()>> = std::sync::OnceLock::new();
        let guard = TURN.get_or_init(|| tokio::sync::Mutex::new(())).lock().await;
        let bus = PrivateBus::start()?;
        std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &bus.address);
        Ok(BusTurn { bus, _guard: guard })
    }

    /// A recorder on this turn's bus; one dropped a moment ago may still be releasing the name.
    pub async fn recorder(&self) -> zbus::Result<NotificationRecorder> {
        let mut last = None;
        for _ in 0..100 {
            match NotificationRecorder::start(&self.bus.address).await {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(last.unwrap_or_else(|| zbus::Error::Failure("no recorder".into())))
    }
}
