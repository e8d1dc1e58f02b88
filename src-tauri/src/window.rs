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

/// Something arrived: bring the panel forward (from the tray, from minimized, or from behind other
/// windows) without taking the keyboard from what the user is doing. Returns whether the user
/// could not see it before: hidden or minimized. A panel that has the focus is left alone.
pub fn bring_forward(app: &AppHandle) -> bool {
    let Some(w) = main_window(app) else {
        return false;
    };
    if w.is_focused().unwrap_or(false) {
        return false;
    }
    let was_out_of_sight = !w.is_visible().unwrap_or(false) || w.is_minimized().unwrap_or(false);
    if let Err(e) = w.unminimize().and_then(|()| w.show()) {
        tracing::warn!(error = %e, "could not show the panel");
    }
    raise_without_focus(app, &w);
    was_out_of_sight
}

/// Restacks the window on top without activating it (`gdk_window_raise`; Tauri's own calls to
/// come forward also take the focus).
#[cfg(target_os = "linux")]
fn raise_without_focus(app: &AppHandle, w: &WebviewWindow) {
    let w = w.clone();
    let raised = app.run_on_main_thread(move || {
        use gtk::prelude::WidgetExt;
        if let Some(gdk_window) = w.gtk_window().ok().and_then(|g| g.window()) {
            gdk_window.raise();
        }
    });
    if let Err(e) = raised {
        tracing::warn!(error = %e, "could not raise the panel");
    }
}

#[cfg(not(target_os = "linux"))]
fn raise_without_focus(_app: &AppHandle, _w: &WebviewWindow) {}

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
