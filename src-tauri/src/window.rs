//! The one panel window: shown with or without taking keyboard focus, hidden on close, and told
//! which view to open (`zof://navigate`).

use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager, WebviewWindow};

pub const MAIN: &str = "main";
pub const NAVIGATE: &str = "zof://navigate";

/// A request for the panel to open a view (the UI's `NavigateRequest`).
#[derive(Debug, Clone, Serialize)]
pub struct Navigate {
    pub view: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
}

impl Navigate {
    pub fn view(view: &'static str) -> Navigate {
        Navigate { view, plan_id: None }
    }

    pub fn plan(plan_id: String) -> Navigate {
        Navigate { view: "plan", plan_id: Some(plan_id) }
    }
}

fn main_window(app: &AppHandle) -> Option<WebviewWindow> {
    app.get_webview_window(MAIN)
}

/// Called once from setup, on the main thread: on Linux a window mapped by `show()` does not
/// take the focus (GTK's focus-on-map hint); `show_focused` asks for the focus explicitly.
pub fn prepare(app: &AppHandle) {
    #[cfg(target_os = "linux")]
    if let Some(w) = main_window(app) {
        use gtk::prelude::GtkWindowExt;
        match w.gtk_window() {
            Ok(gtk_window) => gtk_window.set_focus_on_map(false),
            Err(e) => tracing::warn!(error = %e, "no GTK window to configure"),
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = app;
}

/// The user asked for the panel (tray, notification click, second launch).
pub fn show_focused(app: &AppHandle) {
    if let Some(w) = main_window(app) {
        let shown = w.unminimize().and_then(|()| w.show()).and_then(|()| w.set_focus());
        if let Err(e) = shown {
            tracing::warn!(error = %e, "could not show the panel");
        }
    }
}

/// Something arrived: show the panel without stealing the keyboard from what the user is doing.
pub fn show_unfocused(app: &AppHandle) {
    if let Some(w) = main_window(app) {
        if let Err(e) = w.show() {
            tracing::warn!(error = %e, "could not show the panel");
        }
    }
}

pub fn is_visible(app: &AppHandle) -> bool {
    main_window(app).and_then(|w| w.is_visible().ok()).unwrap_or(false)
}

pub fn hide(app: &AppHandle) {
    if let Some(w) = main_window(app) {
        let _ = w.hide();
    }
}

pub fn navigate(app: &AppHandle, to: &Navigate) {
    if let Err(e) = app.emit_to(MAIN, NAVIGATE, to) {
        tracing::warn!(error = %e, "could not tell the panel to navigate");
    }
}
