//! The desktop app's log files and what Settings → About does with the desktop: open the logs
//! folder with the desktop's default handler (on a blocking thread: the file manager's launcher
//! may be slow to answer), copy text to the clipboard (through [`crate::clipboard`]).

use std::path::PathBuf;

use tauri::AppHandle;
use tauri_plugin_opener::OpenerExt;
use zof_approvals::about;
use zof_approvals::logging::{self, LogGuard};
use zof_approvals::panel::PanelError;

use crate::lifecycle::{error, Core};

/// Where the app's log files go (Tauri managed state); `None` when no folder could be found.
#[derive(Debug, Clone)]
pub struct LogFolder(Option<PathBuf>);

impl LogFolder {
    pub fn of(guard: &LogGuard) -> LogFolder {
        LogFolder(guard.dir().map(PathBuf::from).or_else(|| logging::default_log_dir().ok()))
    }

    pub fn path(&self) -> Result<PathBuf, PanelError> {
        self.0.clone().ok_or_else(|| error("no_log_folder", "there is no log folder: the home directory is unknown"))
    }
}

/// Logs to stderr and to daily files in the OS's log folder; to stderr alone (saying why) when
/// that folder cannot be used.
pub fn init() -> LogGuard {
    const FILTER: &str = "info,tao=warn,wry=warn";
    let guard = match logging::default_log_dir().and_then(|dir| logging::init_with_files(FILTER, &dir)) {
        Ok(guard) => guard,
        Err(e) => {
            let guard = logging::init_stderr(FILTER);
            tracing::warn!(error = %e, "logging to stderr only");
            guard
        }
    };
    tracing::info!(
        version = about::VERSION,
        commit = about::COMMIT,
        profile = about::PROFILE,
        "Zof Approvals starting"
    );
    guard
}

/// Opens the logs folder in the file manager (creating it first if nothing was logged yet).
pub async fn open_folder(app: AppHandle, folder: LogFolder) -> Result<(), PanelError> {
    let dir = folder.path()?;
    tauri::async_runtime::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)
            .map_err(|e| error("open_failed", format!("could not create the logs folder {}: {e}", dir.display())))?;
        app.opener()
            .open_path(dir.to_string_lossy(), None::<&str>)
            .map_err(|e| error("open_failed", format!("could not open the logs folder: {e}")))
    })
    .await
    .map_err(|e| error("internal", e))?
}

/// The webhook URL to the clipboard: the panel's button and the tray's item. The address comes
/// from the settings, also while the receiver is starting or could not start.
pub async fn copy_webhook_url(app: AppHandle, core: &Core) -> Result<(), PanelError> {
    copy_text(app, core.webhook_url().await?, "webhook URL").await
}

/// Puts `text` on the clipboard; `what` names it in the error.
pub async fn copy_text(app: AppHandle, text: String, what: &'static str) -> Result<(), PanelError> {
    crate::clipboard::write_text(&app, zeroize::Zeroizing::new(text))
        .await
        .map_err(|e| error("clipboard", format!("could not copy the {what}: {e}")))
}
