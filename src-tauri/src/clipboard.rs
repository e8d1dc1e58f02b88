//! The clipboard. On Linux through GTK, the window's own toolkit, on the main thread: the app
//! owns the selection for as long as it runs (it lives in the tray), on X11 and Wayland alike,
//! and no second toolkit is linked for it. Elsewhere through Tauri's clipboard plugin. What is
//! copied never passes through the page.

use tauri::AppHandle;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum ClipboardError {
    #[error("the window's main loop is not running ({0})")]
    NoMainLoop(String),
    #[error("the window's main loop stopped before the copy")]
    Stopped,
    #[cfg(not(target_os = "linux"))]
    #[error("{0}")]
    Platform(String),
}

/// Puts `text` on the clipboard; returns once it is there. The app's own copy of the text is
/// wiped as soon as GTK holds it (GTK keeps its copy until the clipboard is replaced).
#[cfg(target_os = "linux")]
pub async fn write_text(app: &AppHandle, text: Zeroizing<String>) -> Result<(), ClipboardError> {
    let (done, copied) = tokio::sync::oneshot::channel();
    app.run_on_main_thread(move || {
        let clipboard = gtk::Clipboard::get(&gtk::gdk::SELECTION_CLIPBOARD);
        clipboard.set_text(&text);
        drop(text);
        let _ = done.send(());
    })
    .map_err(|e| ClipboardError::NoMainLoop(e.to_string()))?;
    copied.await.map_err(|_| ClipboardError::Stopped)
}

#[cfg(not(target_os = "linux"))]
pub async fn write_text(app: &AppHandle, text: Zeroizing<String>) -> Result<(), ClipboardError> {
    use tauri_plugin_clipboard_manager::ClipboardExt;
    let app = app.clone();
    tauri::async_runtime::spawn_blocking(move || app.clipboard().write_text(text.as_str()))
        .await
        .map_err(|e| ClipboardError::Platform(e.to_string()))?
        .map_err(|e| ClipboardError::Platform(e.to_string()))
}

/// The plugin that backs [`write_text`] where GTK does not (registered by `main`).
#[cfg(not(target_os = "linux"))]
pub fn plugin<R: tauri::Runtime>() -> tauri::plugin::TauriPlugin<R> {
    tauri_plugin_clipboard_manager::init()
}
