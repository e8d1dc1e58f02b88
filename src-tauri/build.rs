//! Generates the Tauri context (config, icons, ACL). The app's own commands are declared here so
//! the capability in `capabilities/` can allow exactly them; a command missing from this list is
//! not reachable from the webview.

const COMMANDS: &[&str] = &[
    "get_overview",
    "get_queue",
    "get_plan",
    "get_review",
    "decide_plan",
    "list_activity",
    "list_audit",
    "mark_handled",
    "snooze_plan",
    "open_in_console",
    "get_settings",
    "save_settings",
    "get_secrets",
    "set_secret",
    "generate_secret",
    "revoke_previous_secret",
    "mute_notifications",
    "copy_webhook_url",
    "get_about",
    "open_logs_folder",
    "copy_diagnostics",
    "check_with_console",
    "get_console_status",
    "set_console_token",
    "subscribe_console",
    "get_relay_status",
    "set_relay_password",
];

fn main() {
    let attributes = tauri_build::Attributes::new().app_manifest(tauri_build::AppManifest::new().commands(COMMANDS));
    if let Err(e) = tauri_build::try_build(attributes) {
        // Fail the build with the cause, not a panic backtrace.
        eprintln!("tauri-build failed: {e:#}");
        std::process::exit(1);
    }
}
