//! Core events to the panel and the tray. The UI never polls: deliveries are pushed as they are
//! answered, and a fresh overview follows any change (debounced, so a burst of a thousand
//! deliveries costs a handful of overviews) and every 30 s so ages advance.

use std::sync::Arc;
use std::time::Duration;

use tauri::{AppHandle, Emitter};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{watch, Notify};
use zof_approvals::events::CoreEvent;
use zof_approvals::panel::{Overview, Panel};

use crate::lifecycle::{self, CoreState};
use crate::tray;
use crate::window::{self, Navigate};

pub const OVERVIEW: &str = "zof://overview";
pub const DELIVERY: &str = "zof://delivery";
/// The event the review listens to while a decision's outcome is being checked.
const DECISION_CHECKING: &str = "zof://decision-checking";
const DEBOUNCE: Duration = Duration::from_millis(150);
const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// Forwards until the core leaves the running state.
pub fn spawn(app: AppHandle, panel: Panel, core: watch::Receiver<CoreState>) {
    let refresh = Arc::new(Notify::new());
    refresh.notify_one();
    tauri::async_runtime::spawn(push_overviews(app.clone(), panel.clone(), refresh.clone(), core.clone()));
    tauri::async_runtime::spawn(forward_events(app, panel, refresh, core));
}

/// While the core is not running the panel and the tray still say why (receiver not ready).
pub async fn show_failures(app: AppHandle, mut core: watch::Receiver<CoreState>) {
    loop {
        let failure = match &*core.borrow_and_update() {
            CoreState::Failed(why) => Some(why.clone()),
            _ => None,
        };
        if let Some(why) = failure {
            let overview = Overview::unavailable(&why, &lifecycle::load_settings().await);
            tray::update(&app, &overview);
            if let Err(e) = app.emit(OVERVIEW, &overview) {
                tracing::warn!(error = %e, "could not push the overview");
            }
        }
        if core.changed().await.is_err() {
            return;
        }
    }
}

async fn until_not_running(mut core: watch::Receiver<CoreState>) {
    let _ = core.wait_for(|s| !matches!(s, CoreState::Running(_))).await;
}

/// One overview per burst of changes, and one every 30 s.
async fn push_overviews(app: AppHandle, panel: Panel, refresh: Arc<Notify>, core: watch::Receiver<CoreState>) {
    let stopped = until_not_running(core);
    tokio::pin!(stopped);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + REFRESH_EVERY, REFRESH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            () = refresh.notified() => tokio::time::sleep(DEBOUNCE).await,
            _ = every.tick() => {}
        }
        match panel.overview().await {
            Ok(overview) => {
                tray::update(&app, &overview);
                if let Err(e) = app.emit(OVERVIEW, &overview) {
                    tracing::warn!(error = %e, "could not push the overview");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not compute the overview"),
        }
    }
}

async fn forward_events(app: AppHandle, panel: Panel, refresh: Arc<Notify>, core: watch::Receiver<CoreState>) {
    let mut events = panel.subscribe();
    let stopped = until_not_running(core);
    tokio::pin!(stopped);
    loop {
        let event = tokio::select! {
            () = &mut stopped => return,
            event = events.recv() => event,
        };
        match event {
            Ok(CoreEvent::Delivery(record)) => {
                if let Err(e) = app.emit(DELIVERY, &record) {
                    tracing::warn!(error = %e, "could not push a delivery");
                }
                refresh.notify_one();
            }
            // A snooze from a notification is already recorded by the core.
            Ok(CoreEvent::PlanChanged { .. } | CoreEvent::StatusChanged | CoreEvent::Snooze { .. }) => {
                refresh.notify_one();
            }
            Ok(CoreEvent::Attention { .. }) => {
                // A plan just arrived: bring the panel forward, leaving the keyboard alone. It
                // opens on the home view unless the user had it in sight (they may be editing).
                if panel.settings().notifications.show_panel_on_arrival {
                    // The window's getters wait for the main thread: not on an async worker.
                    let app = app.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        if window::bring_forward(&app) {
                            window::navigate(&app, &Navigate::view("home"));
                        }
                    })
                    .await;
                }
            }
            Ok(CoreEvent::OpenPlan { plan_id }) => {
                window::show_focused(&app);
                window::navigate(&app, &Navigate::plan(plan_id));
            }
            Ok(CoreEvent::OpenQueue) => {
                window::show_focused(&app);
                window::navigate(&app, &Navigate::view("queue"));
            }
            // The review says "checking with the Console…" until the decision's outcome is known.
            Ok(CoreEvent::DecisionChecking { plan_id }) => {
                if let Err(e) = app.emit(DECISION_CHECKING, &plan_id) {
                    tracing::warn!(error = %e, "could not push a decision's check");
                }
            }
            // Missed events: the next overview carries the state anyway.
            Err(RecvError::Lagged(_)) => refresh.notify_one(),
            Err(RecvError::Closed) => return,
        }
    }
}
