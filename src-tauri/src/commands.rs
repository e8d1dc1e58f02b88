//! The commands the panel invokes (`ui/src/lib/api.ts`). Each is a one-liner over the core's
//! `Panel`; errors reach the UI as `{code, message}`.

use tauri::{AppHandle, State};
use tauri_plugin_opener::OpenerExt;
use zof_approvals::about::About;
use zof_approvals::actions::{DecisionReport, Review};
use zof_approvals::console::{ConsoleStatus, ReconcileReport, Subscription};
use zof_approvals::domain::audit::{AuditEntry, AuditFilter};
use zof_approvals::domain::review::Verdict;
use zof_approvals::panel::{Overview, PanelError, PlanDetail, PlanView, SettingsView};
use zof_approvals::relay::RelayView;
use zof_approvals::secrets::SecretsReport;
use zof_approvals::store::DeliveryRecord;

use crate::lifecycle::{error, Core};
use crate::logs::{self, LogFolder};
use crate::{autostart, forward_when_running};

type Answer<T> = Result<T, PanelError>;

#[tauri::command]
pub async fn get_overview(core: State<'_, Core>) -> Answer<Overview> {
    core.overview().await
}

/// The first `limit` pending plans, oldest first (the overview carries the first 200).
#[tauri::command]
pub async fn get_queue(core: State<'_, Core>, limit: usize) -> Answer<Vec<PlanView>> {
    core.panel().await?.queue(limit).await
}

#[tauri::command]
pub async fn get_plan(core: State<'_, Core>, plan_id: String) -> Answer<PlanDetail> {
    core.panel().await?.plan(plan_id).await
}

/// The plan to review: its details read again from the Console.
#[tauri::command]
pub async fn get_review(core: State<'_, Core>, plan_id: String) -> Answer<Review> {
    core.panel().await?.review(plan_id).await
}

/// Approve or reject, as shown at `revision`; every outcome is a report the review shows.
#[tauri::command]
pub async fn decide_plan(
    core: State<'_, Core>,
    plan_id: String,
    verdict: Verdict,
    revision: Option<String>,
    comment: String,
) -> Answer<DecisionReport> {
    Ok(core.panel().await?.decide(plan_id, verdict, revision, comment).await)
}

#[tauri::command]
pub async fn list_activity(core: State<'_, Core>, limit: usize) -> Answer<Vec<DeliveryRecord>> {
    core.panel().await?.activity(limit).await
}

/// The audit log, newest first: one plan's history (`plan_id`), or Activity's "Actions".
#[tauri::command]
pub async fn list_audit(
    core: State<'_, Core>,
    plan_id: Option<String>,
    plan_actions_only: bool,
    limit: usize,
) -> Answer<Vec<AuditEntry>> {
    let filter = AuditFilter { plan_id, plan_actions_only, limit: limit.clamp(1, 1000), ..AuditFilter::default() };
    core.panel().await?.audit(filter).await
}

#[tauri::command]
pub async fn mark_handled(core: State<'_, Core>, plan_id: String) -> Answer<()> {
    core.panel().await?.mark_handled(plan_id).await
}

#[tauri::command]
pub async fn snooze_plan(core: State<'_, Core>, plan_id: String, minutes: u32) -> Answer<()> {
    core.panel().await?.snooze(plan_id, minutes).await
}

#[tauri::command]
pub async fn open_in_console(app: AppHandle, core: State<'_, Core>, plan_id: String) -> Answer<()> {
    let url = core.panel().await?.console_url(plan_id).await?;
    app.opener()
        .open_url(url, None::<&str>)
        .map_err(|e| error("open_failed", format!("could not open the Console: {e}")))
}

#[tauri::command]
pub async fn get_settings(core: State<'_, Core>) -> Answer<SettingsView> {
    core.settings().await
}

/// Saves and applies the settings, then makes "start at login" true of the system too.
#[tauri::command]
pub async fn save_settings(app: AppHandle, core: State<'_, Core>, settings: SettingsView) -> Answer<SettingsView> {
    let saved = core.save_settings(settings, forward_when_running(&app)).await?;
    autostart::apply(&app, saved.start_at_login).await?;
    Ok(saved)
}

#[tauri::command]
pub async fn get_secrets(core: State<'_, Core>) -> Answer<SecretsReport> {
    core.panel().await?.secrets().await
}

#[tauri::command]
pub async fn set_secret(core: State<'_, Core>, secret: String, overlap_hours: u32) -> Answer<SecretsReport> {
    core.panel().await?.set_secret(secret, overlap_hours).await
}

/// The new secret goes to the clipboard, once; only the report (fingerprints) reaches the webview.
#[tauri::command]
pub async fn generate_secret(app: AppHandle, core: State<'_, Core>, overlap_hours: u32) -> Answer<SecretsReport> {
    let (secret, report) = core.panel().await?.generate_secret(overlap_hours).await?;
    let text = zeroize::Zeroizing::new(secret.expose().to_owned());
    drop(secret);
    crate::clipboard::write_text(&app, text).await.map_err(|e| {
        error(
            "clipboard",
            format!("a new secret is now current but could not be copied ({e}); generate another or paste your own"),
        )
    })?;
    Ok(report)
}

#[tauri::command]
pub async fn revoke_previous_secret(core: State<'_, Core>) -> Answer<SecretsReport> {
    core.panel().await?.revoke_previous_secret().await
}

#[tauri::command]
pub async fn mute_notifications(core: State<'_, Core>, minutes: u32) -> Answer<()> {
    core.panel().await?.mute(minutes, zof_approvals::domain::audit::Source::Panel).await
}

#[tauri::command]
pub async fn copy_webhook_url(app: AppHandle, core: State<'_, Core>) -> Answer<()> {
    logs::copy_webhook_url(app, &core).await
}

/// Settings → About: version, build and the data, config and log folders.
#[tauri::command]
pub async fn get_about(core: State<'_, Core>, folder: State<'_, LogFolder>) -> Answer<About> {
    core.about(&folder.path()?)
}

#[tauri::command]
pub async fn open_logs_folder(app: AppHandle, folder: State<'_, LogFolder>) -> Answer<()> {
    logs::open_folder(app, folder.inner().clone()).await
}

/// The diagnostics (built by the core, never a secret or a body) go to the clipboard.
#[tauri::command]
pub async fn copy_diagnostics(app: AppHandle, core: State<'_, Core>, folder: State<'_, LogFolder>) -> Answer<()> {
    let text = core.panel().await?.diagnostics(folder.path()?).await?;
    logs::copy_text(app, text, "diagnostics").await
}

/// "Check with Console": reconciles the queue with the Console now.
#[tauri::command]
pub async fn check_with_console(core: State<'_, Core>) -> Answer<ReconcileReport> {
    core.panel().await?.check_with_console().await
}

#[tauri::command]
pub async fn get_console_status(core: State<'_, Core>) -> Answer<ConsoleStatus> {
    Ok(core.panel().await?.console_status())
}

/// The pasted token goes to the keychain; only its fingerprint comes back.
#[tauri::command]
pub async fn set_console_token(core: State<'_, Core>, token: String) -> Answer<String> {
    core.panel().await?.set_console_token(token).await
}

/// "Subscribe this app in Zof": the returned secret goes to the keychain, never to the webview.
#[tauri::command]
pub async fn subscribe_console(core: State<'_, Core>, public_url: String) -> Answer<Subscription> {
    core.panel().await?.subscribe_console(public_url).await
}

/// Settings → Team relay's status line; the password only by fingerprint.
#[tauri::command]
pub async fn get_relay_status(core: State<'_, Core>) -> Answer<RelayView> {
    Ok(core.panel().await?.relay_status().await)
}

/// The typed NATS password goes to the keychain; only its fingerprint comes back.
#[tauri::command]
pub async fn set_relay_password(core: State<'_, Core>, password: String) -> Answer<String> {
    core.panel().await?.set_relay_password(password).await
}
