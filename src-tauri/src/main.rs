//! Zof Approvals desktop: a thin Tauri shell over the `zof_approvals` core. It starts the same
//! `Application` as `zof-approvals serve`, wraps its `Panel` in commands, forwards core events to
//! the panel and the tray, keeps one instance, and quits only after the store is flushed.
//!
//! Flow: launch → single-instance check → window (hidden until setup shows it) + tray → core
//! built on the async runtime → events forwarded. Closing the window hides it; Quit (tray menu,
//! SIGTERM, SIGINT) stops the core, waits for it, then exits.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

/// The same allocator and settings as the `zof-approvals` CLI (`.cargo/config.toml`): one arena,
/// freed memory returned within half a second, so the receiver's bursts do not stay resident.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod autostart;
mod clipboard;
mod commands;
mod forward;
mod lifecycle;
mod logs;
mod tray;
mod window;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tauri::{AppHandle, Manager, RunEvent, WindowEvent};
use zof_approvals::panel::Panel;

use crate::lifecycle::Core;

/// How long Quit waits for the core to drain and flush before exiting anyway.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// WebKit settings for a small, mostly idle panel, applied through the environment the web
/// process inherits (set before any thread or WebKit process starts; a value the user set wins,
/// so `WEBKIT_DISABLE_DMABUF_RENDERER=0` brings the GPU renderer back).
/// - `WEBKIT_DISABLE_DMABUF_RENDERER=1`: WebKitGTK paints the page on the CPU into shared memory
///   instead of compositing through EGL/DMA-BUF. A panel of tiles and tables has nothing to
///   accelerate; the GPU path's buffers cost about 100 MiB of the web process under Mesa's
///   software driver, and it is the path that shows blank windows on some NVIDIA and Wayland
///   setups (`scripts/measure-desktop.sh`, README, Benchmarks).
/// - `JSC_useJIT=0`: the panel's script is small and event-driven, so the interpreter is plenty,
///   and the JIT's code and pools cost 8–20 MiB of the web process.
const WEBKIT_ENV: [(&str, &str); 2] = [("WEBKIT_DISABLE_DMABUF_RENDERER", "1"), ("JSC_useJIT", "0")];

fn main() -> ExitCode {
    for (name, value) in WEBKIT_ENV {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
    let log = logs::init();
    let hidden = std::env::args().any(|a| a == autostart::HIDDEN_ARG);
    let builder = tauri::Builder::default()
        // First, so a second launch hands over to the first before anything else starts.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| window::show_focused(app)));
    #[cfg(not(target_os = "linux"))]
    let builder = builder.plugin(clipboard::plugin());
    let built = builder
        .plugin(tauri_plugin_opener::init())
        .plugin(tauri_plugin_autostart::Builder::new().app_name("Zof Approvals").arg(autostart::HIDDEN_ARG).build())
        .manage(Core::default())
        .manage(Quitting::default())
        .manage(logs::LogFolder::of(&log))
        .invoke_handler(tauri::generate_handler![
            commands::get_overview,
            commands::get_queue,
            commands::get_plan,
            commands::get_review,
            commands::decide_plan,
            commands::list_activity,
            commands::list_audit,
            commands::mark_handled,
            commands::snooze_plan,
            commands::open_in_console,
            commands::get_settings,
            commands::save_settings,
            commands::get_secrets,
            commands::set_secret,
            commands::generate_secret,
            commands::revoke_previous_secret,
            commands::mute_notifications,
            commands::copy_webhook_url,
            commands::get_about,
            commands::open_logs_folder,
            commands::copy_diagnostics,
            commands::check_with_console,
            commands::get_console_status,
            commands::set_console_token,
            commands::subscribe_console,
            commands::get_relay_status,
            commands::set_relay_password,
        ])
        .on_window_event(|window, event| {
            // Closing the panel keeps the app in the tray; Quit is in the tray menu.
            if let WindowEvent::CloseRequested { api, .. } = event {
                api.prevent_close();
                let _ = window.hide();
            }
        })
        .setup(move |app| {
            setup(app.handle(), hidden)?;
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match built {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: Zof Approvals could not start its window: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = app.run_return(on_run_event);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn setup(app: &AppHandle, hidden: bool) -> tauri::Result<()> {
    window::prepare(app);
    tray::build(app)?;
    let core = app.state::<Core>();
    tauri::async_runtime::spawn(forward::show_failures(app.clone(), core.subscribe()));
    core.start(forward_when_running(app));
    tauri::async_runtime::spawn(quit_on_signal(app.clone()));
    if !hidden {
        window::show_focused(app);
    }
    Ok(())
}

/// What to do once the core serves: forward its events, and make "start at login" match.
pub fn forward_when_running(app: &AppHandle) -> impl FnOnce(Panel) + Send + 'static {
    let app = app.clone();
    move |panel: Panel| {
        let start_at_login = panel.settings().start_at_login;
        forward::spawn(app.clone(), panel, app.state::<Core>().subscribe());
        tauri::async_runtime::spawn(async move {
            if let Err(e) = autostart::apply(&app, start_at_login).await {
                tracing::warn!(error = %e, "start at login");
            }
        });
    }
}

fn on_run_event(app: &AppHandle, event: RunEvent) {
    if let RunEvent::ExitRequested { api, code, .. } = event {
        // Only `quit` ends the app. `code: None`: the last window went away, the app lives on in
        // the tray; an exit asked for elsewhere first stops the core like Quit does.
        if !app.state::<Quitting>().0.load(Ordering::SeqCst) {
            api.prevent_exit();
            if code.is_some() {
                quit(app);
            }
        }
    }
}

/// Set once Quit started, so a second Quit (menu + signal) does not race the first.
#[derive(Debug, Default)]
struct Quitting(AtomicBool);

/// Quit: hide the window at once, stop the core (receiver drained, store flushed), then exit.
pub fn quit(app: &AppHandle) {
    if app.state::<Quitting>().0.swap(true, Ordering::SeqCst) {
        return;
    }
    window::hide(app);
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        if !app.state::<Core>().stop(STOP_WITHIN).await {
            tracing::warn!("the core did not stop within {STOP_WITHIN:?}; exiting anyway");
        }
        app.exit(0);
    });
}

/// SIGTERM and SIGINT mean Quit (session logout, `kill`, Ctrl-C in a terminal).
async fn quit_on_signal(app: AppHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: quitting"),
                    _ = int.recv() => tracing::info!("SIGINT: quitting"),
                }
            }
            _ => {
                tracing::warn!("cannot listen for SIGTERM/SIGINT");
                return;
            }
        }
    }
    #[cfg(not(unix))]
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    quit(&app);
}
