//! The core's lifecycle inside the desktop app: built off the main thread at launch exactly like
//! the CLI's `serve`, handed to commands once it runs, stopped gracefully on Quit. When it cannot
//! start (port taken, store locked by another process), the window still opens and says why.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use zof_approvals::about::About;
use zof_approvals::app::{AppConfig, AppError, Application, SecretSource};
use zof_approvals::config::{ConfigError, Paths, Settings};
use zof_approvals::notify::DesktopNotifier;
use zof_approvals::outbox::Notifier;
use zof_approvals::panel::{Overview, Panel, PanelError, SettingsView};

/// How long a command waits for the core to finish starting (the keychain load is bounded by
/// the core's own timeout; this only keeps a command from hanging forever).
const START_WAIT: Duration = Duration::from_secs(30);

/// What the core is doing right now.
#[derive(Debug, Clone)]
pub enum CoreState {
    Starting,
    Running(Box<Panel>),
    /// It could not start, or its server stopped by itself: the reason, for the panel.
    Failed(String),
    /// Quit was asked for: no new work is taken.
    Stopping,
    Stopped,
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error("a start-up task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The notifier the app tells the user with. One place, so swapping in the native one is one line.
fn notifier() -> Arc<dyn Notifier> {
    Arc::new(DesktopNotifier::new(tokio::runtime::Handle::current()))
}

/// Shared by the setup hook, the commands, the tray and the signal handler (Tauri managed state).
#[derive(Debug, Clone)]
pub struct Core {
    state: Arc<watch::Sender<CoreState>>,
    shutdown: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

impl Default for Core {
    fn default() -> Self {
        Core { state: Arc::new(watch::Sender::new(CoreState::Starting)), shutdown: Arc::new(Mutex::new(None)) }
    }
}

impl Core {
    pub fn subscribe(&self) -> watch::Receiver<CoreState> {
        self.state.subscribe()
    }

    /// Builds and runs the core on the async runtime; `on_running` gets the panel once it serves.
    /// Also used to retry after a failed start (new settings).
    pub fn start(&self, on_running: impl FnOnce(Panel) + Send + 'static) {
        let (stop, stopped) = oneshot::channel();
        *lock(&self.shutdown) = Some(stop);
        self.state.send_replace(CoreState::Starting);
        let me = self.clone();
        tauri::async_runtime::spawn(async move {
            let app = match build().await {
                Ok(app) => app,
                Err(e) => {
                    tracing::error!(error = %e, "the core could not start");
                    me.state.send_replace(CoreState::Failed(e.to_string()));
                    return;
                }
            };
            tracing::info!(url = %app.webhook_url(), "receiver started");
            me.state.send_replace(CoreState::Running(Box::new(app.panel())));
            on_running(app.panel());
            // The team relay from the settings, if any: off the start path (a keychain read).
            let panel = app.panel();
            tauri::async_runtime::spawn(async move {
                if let Err(e) = panel.follow_relay().await {
                    tracing::warn!(error = %e, "the team relay did not start");
                }
            });
            let result = app
                .run_until_stopped(async {
                    let _ = stopped.await;
                })
                .await;
            let quitting = matches!(*me.state.borrow(), CoreState::Stopping);
            match result {
                Ok(()) => tracing::info!("the core stopped; the store is flushed"),
                Err(e) => tracing::error!(error = %e, "the core stopped with an error"),
            }
            me.state.send_replace(if quitting {
                CoreState::Stopped
            } else {
                CoreState::Failed("the receiver stopped unexpectedly; restart Zof Approvals".into())
            });
        });
    }

    /// Stops the receiver (in-flight requests finish, the outbox drains its batch, the store is
    /// flushed) and waits for that, at most `within`. Returns whether it finished in time.
    pub async fn stop(&self, within: Duration) -> bool {
        let was = self.state.send_replace(CoreState::Stopping);
        if matches!(was, CoreState::Failed(_) | CoreState::Stopped) {
            self.state.send_replace(CoreState::Stopped);
            return true;
        }
        if let Some(stop) = lock(&self.shutdown).take() {
            let _ = stop.send(());
        }
        let mut state = self.state.subscribe();
        let done = state.wait_for(|s| matches!(s, CoreState::Stopped | CoreState::Failed(_)));
        let finished = matches!(tokio::time::timeout(within, done).await, Ok(Ok(_)));
        finished
    }

    /// The running core's panel, waiting while it starts.
    pub async fn panel(&self) -> Result<Panel, PanelError> {
        match self.settled().await {
            CoreState::Running(panel) => Ok(*panel),
            CoreState::Failed(why) => Err(not_started(&why)),
            CoreState::Starting => Err(error("starting", "Zof Approvals is still starting; try again in a moment")),
            CoreState::Stopping | CoreState::Stopped => Err(error("stopping", "Zof Approvals is quitting")),
        }
    }

    /// The running panel, if the core runs now (no waiting): for the tray menu.
    pub fn panel_now(&self) -> Option<Panel> {
        match &*self.state.borrow() {
            CoreState::Running(panel) => Some((**panel).clone()),
            _ => None,
        }
    }

    /// The webhook URL: the running receiver's, or else the one the settings name.
    pub async fn webhook_url(&self) -> Result<String, PanelError> {
        match self.panel_now() {
            Some(panel) => Ok(panel.webhook_url()),
            None => Ok(zof_approvals::receiver::webhook_url(try_load_settings().await?.listen)),
        }
    }

    /// The home view; when the core could not start, a view that says why (receiver not ready).
    pub async fn overview(&self) -> Result<Overview, PanelError> {
        match self.settled().await {
            CoreState::Running(panel) => panel.overview().await,
            CoreState::Failed(why) => Ok(Overview::unavailable(&why, &load_settings().await)),
            _ => self.panel().await?.overview().await,
        }
    }

    /// The settings; readable from the file when the core could not start, so the user can fix them.
    pub async fn settings(&self) -> Result<SettingsView, PanelError> {
        match self.settled().await {
            CoreState::Running(panel) => Ok(panel.settings_view()),
            CoreState::Failed(_) => Ok(SettingsView::of(&load_settings().await)),
            _ => Ok(self.panel().await?.settings_view()),
        }
    }

    /// Saves settings through the running core (applied live). When the core could not start,
    /// writes the file and starts the core again with it; the outcome arrives as an overview.
    pub async fn save_settings(
        &self,
        view: SettingsView,
        on_running: impl FnOnce(Panel) + Send + 'static,
    ) -> Result<SettingsView, PanelError> {
        match self.settled().await {
            CoreState::Running(panel) => panel.save_settings(view).await,
            CoreState::Failed(_) => {
                let paths = Paths::resolve(None, None).map_err(|e| error("invalid_settings", e))?;
                let base = load_settings().await;
                let next = view.apply_to(&base)?;
                zof_approvals::actions::save_settings_without_receiver(&paths, next.clone())
                    .await
                    .map_err(|e| error("invalid_settings", e))?;
                self.start(on_running);
                Ok(SettingsView::of(&next))
            }
            _ => self.panel().await?.save_settings(view).await,
        }
    }

    /// Settings → About: the running core's folders, or else the default ones (the core may have
    /// failed to start; the folders are still worth showing).
    pub fn about(&self, log_dir: &std::path::Path) -> Result<About, PanelError> {
        match self.panel_now() {
            Some(panel) => Ok(panel.about(log_dir)),
            None => Paths::resolve(None, None).map(|paths| About::new(&paths, log_dir)).map_err(|e| error("paths", e)),
        }
    }

    /// The current state once it is no longer `Starting` (or the wait ran out).
    async fn settled(&self) -> CoreState {
        let mut state = self.state.subscribe();
        let wait = state.wait_for(|s| !matches!(s, CoreState::Starting));
        let settled = match tokio::time::timeout(START_WAIT, wait).await {
            Ok(Ok(s)) => s.clone(),
            _ => self.state.borrow().clone(),
        };
        settled
    }
}

/// Builds the core exactly like `zof-approvals serve` does (keychain secrets, settings file).
async fn build() -> Result<Application, StartError> {
    let paths = Paths::resolve(None, None)?;
    let file = paths.settings_file();
    let settings = tokio::task::spawn_blocking(move || Settings::load(&file)).await??;
    let config = AppConfig { paths, settings, secrets: SecretSource::keychain() };
    Ok(Application::build(config, notifier()).await?)
}

/// The settings file as it is (defaults when it is missing or unreadable: the failure is shown
/// as the reason the core did not start).
pub async fn load_settings() -> Settings {
    try_load_settings().await.unwrap_or_default()
}

/// The settings file, or why it cannot be read.
pub async fn try_load_settings() -> Result<Settings, PanelError> {
    let loaded = tokio::task::spawn_blocking(|| {
        let paths = Paths::resolve(None, None)?;
        Settings::load(&paths.settings_file())
    })
    .await;
    let why = match loaded {
        Ok(Ok(s)) => return Ok(s),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    Err(error("settings", format!("the settings cannot be read: {why}")))
}

pub fn error(code: &'static str, message: impl std::fmt::Display) -> PanelError {
    PanelError { code, message: message.to_string() }
}

fn not_started(why: &str) -> PanelError {
    error("not_started", format!("Zof Approvals could not start: {why}"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
