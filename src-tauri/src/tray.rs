//! The tray icon. Linux does not report clicks on the icon itself, so every action is in its
//! menu. The icon shows one of four states and the title the number of pending plans.

use std::sync::Mutex;

use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Wry};
use zof_approvals::domain::audit::Source;
use zof_approvals::panel::{OldestState, Overview};

use crate::lifecycle::Core;
use crate::window::{self, Navigate};

const TRAY: &str = "zof-approvals";
const MUTE_MINUTES: u32 = 60;

/// What the icon says at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayState {
    Idle,
    Pending,
    Overdue,
    /// The receiver is not ready, or notifications are failing.
    Error,
}

impl TrayState {
    pub fn of(o: &Overview) -> TrayState {
        if !o.receiver.ready || o.notification_status.is_some() {
            TrayState::Error
        } else if o.kpis.oldest_state == OldestState::Overdue {
            TrayState::Overdue
        } else if o.kpis.pending > 0 {
            TrayState::Pending
        } else {
            TrayState::Idle
        }
    }

    /// The icon, decoded from `icons/tray-*.png` by build.rs.
    fn icon(self) -> Image<'static> {
        match self {
            TrayState::Idle => TRAY_IDLE,
            TrayState::Pending => TRAY_PENDING,
            TrayState::Overdue => TRAY_OVERDUE,
            TrayState::Error => TRAY_ERROR,
        }
    }
}

// TRAY_IDLE, TRAY_PENDING, TRAY_OVERDUE, TRAY_ERROR (written by build.rs).
include!(concat!(env!("OUT_DIR"), "/tray_icons.rs"));

/// The title beside the icon and the tooltip (where the platform shows one).
pub fn caption(o: &Overview) -> (String, String) {
    let title = if o.kpis.pending > 0 { o.kpis.pending.to_string() } else { String::new() };
    let tooltip = match (&o.receiver.reason, o.kpis.pending) {
        (Some(why), _) if !o.receiver.ready => format!("Zof Approvals: receiver not ready ({why})"),
        (_, 0) => "Zof Approvals: no plans await approval".to_owned(),
        (_, 1) => "Zof Approvals: 1 plan awaits approval".to_owned(),
        (_, n) => format!("Zof Approvals: {n} plans await approval"),
    };
    (title, tooltip)
}

/// Handles kept to update the tray as the overview changes (Tauri managed state).
pub struct Tray {
    icon: TrayIcon,
    mute: MenuItem<Wry>,
    /// What the icon shows now: state, tooltip, muted.
    shown: Mutex<Option<(TrayState, String, bool)>>,
}

impl std::fmt::Debug for Tray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tray").field("id", self.icon.id()).field("shown", &self.shown).finish_non_exhaustive()
    }
}

pub fn build(app: &AppHandle) -> tauri::Result<()> {
    let show = MenuItem::with_id(app, "show", "Show panel", true, None::<&str>)?;
    let mute = MenuItem::with_id(app, "mute", pause_label(false), true, None::<&str>)?;
    let copy = MenuItem::with_id(app, "copy_url", "Copy webhook URL", true, None::<&str>)?;
    let settings = MenuItem::with_id(app, "settings", "Settings…", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit Zof Approvals", true, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&show, &mute, &copy, &settings, &separator, &quit])?;
    let icon = TrayIconBuilder::with_id(TRAY)
        .icon(TrayState::Idle.icon())
        .tooltip("Zof Approvals")
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| on_menu(app, event.id().as_ref()))
        .build(app)?;
    app.manage(Tray { icon, mute, shown: Mutex::new(None) });
    Ok(())
}

fn pause_label(muted: bool) -> String {
    if muted {
        "Resume notifications".to_owned()
    } else {
        format!("Pause notifications ({} h)", MUTE_MINUTES / 60)
    }
}

/// Shows the overview's state; does nothing when nothing visible changed.
pub fn update(app: &AppHandle, o: &Overview) {
    let Some(tray) = app.try_state::<Tray>() else { return };
    let state = TrayState::of(o);
    let (title, tooltip) = caption(o);
    let muted = o.muted_until.is_some();
    let mut shown = tray.shown.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let next = (state, tooltip.clone(), muted);
    if shown.as_ref() == Some(&next) {
        return;
    }
    let result = tray
        .icon
        .set_icon(Some(state.icon()))
        .and_then(|()| tray.icon.set_title(Some(&title)))
        .and_then(|()| tray.icon.set_tooltip(Some(&tooltip)))
        .and_then(|()| tray.mute.set_text(pause_label(muted)));
    match result {
        Ok(()) => *shown = Some(next),
        Err(e) => tracing::warn!(error = %e, "could not update the tray icon"),
    }
}

fn on_menu(app: &AppHandle, id: &str) {
    match id {
        "show" => window::show_focused(app),
        "settings" => {
            window::show_focused(app);
            window::navigate(app, &Navigate::view("settings"));
        }
        "mute" => toggle_mute(app),
        "copy_url" => copy_webhook_url(app),
        "quit" => crate::quit(app),
        other => tracing::debug!(id = other, "unknown tray menu item"),
    }
}

fn toggle_mute(app: &AppHandle) {
    let Some(panel) = app.state::<Core>().panel_now() else {
        // Nothing is received, so nothing is notified: the panel says why.
        tracing::warn!("notifications cannot be paused while the receiver is not running");
        window::show_focused(app);
        return;
    };
    let muted = app.try_state::<Tray>().is_some_and(|t| {
        t.shown.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref().is_some_and(|s| s.2)
    });
    tauri::async_runtime::spawn(async move {
        if let Err(e) = panel.mute(if muted { 0 } else { MUTE_MINUTES }, Source::Tray).await {
            tracing::warn!(error = %e, "could not pause notifications");
        }
    });
}

fn copy_webhook_url(app: &AppHandle) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        if let Err(e) = crate::logs::copy_webhook_url(app.clone(), &app.state::<Core>()).await {
            tracing::warn!(error = %e.message, "could not copy the webhook URL");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use zof_approvals::config::Settings;

    fn ready(pending: u64, oldest: OldestState) -> Overview {
        let mut o = Overview::unavailable("x", &Settings::default());
        o.receiver.ready = true;
        o.receiver.reason = None;
        o.kpis.pending = pending;
        o.kpis.oldest_state = oldest;
        o
    }

    #[test]
    fn icon_state_follows_the_queue_and_health() {
        assert_eq!(TrayState::of(&ready(0, OldestState::None)), TrayState::Idle);
        assert_eq!(TrayState::of(&ready(2, OldestState::Warning)), TrayState::Pending);
        assert_eq!(TrayState::of(&ready(2, OldestState::Overdue)), TrayState::Overdue);
        let mut failing = ready(2, OldestState::Overdue);
        failing.notification_status = Some("no notification server".into());
        assert_eq!(TrayState::of(&failing), TrayState::Error);
        assert_eq!(TrayState::of(&Overview::unavailable("port taken", &Settings::default())), TrayState::Error);
    }

    #[test]
    fn caption_counts_pending_plans() {
        assert_eq!(
            caption(&ready(0, OldestState::None)),
            (String::new(), "Zof Approvals: no plans await approval".into())
        );
        assert_eq!(caption(&ready(3, OldestState::Ok)).0, "3");
        assert!(caption(&Overview::unavailable("port taken", &Settings::default())).1.contains("port taken"));
    }

    #[test]
    fn every_tray_icon_is_decoded_whole() {
        for s in [TrayState::Idle, TrayState::Pending, TrayState::Overdue, TrayState::Error] {
            let icon = s.icon();
            assert_eq!((icon.width(), icon.height()), (64, 64), "{s:?}");
            assert_eq!(icon.rgba().len(), 64 * 64 * 4, "{s:?}");
            // Drawn, not blank: some pixels are opaque and some transparent.
            let alpha: Vec<u8> = icon.rgba().chunks_exact(4).map(|p| p[3]).collect();
            assert!(alpha.contains(&255) && alpha.contains(&0), "{s:?}");
        }
    }
}
