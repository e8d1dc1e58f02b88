//! "Start at login" (a setting of the core) made true of the system with the autostart plugin;
//! a login start passes `--hidden`, so the app starts in the tray.

use tauri::AppHandle;
use tauri_plugin_autostart::ManagerExt;
use zof_approvals::panel::PanelError;

use crate::lifecycle::error;

pub const HIDDEN_ARG: &str = "--hidden";

/// Registers or removes the login entry to match `enabled` (a small file: off the async threads).
pub async fn apply(app: &AppHandle, enabled: bool) -> Result<(), PanelError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let autolaunch = app.autolaunch();
        if autolaunch.is_enabled().unwrap_or(!enabled) == enabled {
            return Ok(());
        }
        let result = if enabled { autolaunch.enable() } else { autolaunch.disable() };
        result.map_err(|e| {
            let what = if enabled { "turned on" } else { "turned off" };
            error("autostart", format!("settings saved, but starting at login could not be {what}: {e}"))
        })
    })
    .await
    .map_err(|e| error("internal", e))?
}
