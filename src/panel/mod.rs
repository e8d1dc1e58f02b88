//! What the desktop panel shows and does, as plain async calls over the core. The desktop
//! shell's commands are one-liners over [`Panel`]; nothing here knows about Tauri. Reading is
//! [`views`]; every change a person makes goes to its one owner, [`crate::actions`].

mod diagnostics;
mod views;

pub use views::*;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use crate::actions::{ActionError, Actions};
use crate::config::{Paths, Settings};
use crate::domain::audit::{AuditEntry, AuditFilter, Source};
use crate::events::CoreEvent;
use crate::intake::Intake;
use crate::outbox::Notifier;
use crate::secrets::{SecretManager, SecretsReport};
use crate::store::{DeliveryRecord, DeliveryVerdict, PlanFlag, PlanRecord, PlanState, Store};
use crate::verify::Secret;

/// An error for the UI: a stable code and a sentence to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct PanelError {
    pub code: &'static str,
    pub message: String,
}

impl PanelError {
    fn new(code: &'static str, message: impl std::fmt::Display) -> PanelError {
        PanelError { code, message: message.to_string() }
    }
}

impl From<ActionError> for PanelError {
    fn from(e: ActionError) -> Self {
        PanelError::new(e.code().as_str(), e)
    }
}

impl From<crate::store::StoreError> for PanelError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::UnknownPlan(_) => PanelError::new("unknown_plan", e),
            other => PanelError::new("store", other),
        }
    }
}

impl From<crate::secrets::SecretsError> for PanelError {
    fn from(e: crate::secrets::SecretsError) -> Self {
        let code = match &e {
            crate::secrets::SecretsError::Keychain(_) => "keychain",
            crate::secrets::SecretsError::Invalid(_) => "invalid_secret",
            crate::secrets::SecretsError::NoPrevious => "no_previous_secret",
            _ => "secrets",
        };
        PanelError::new(code, e)
    }
}

impl From<crate::console::ConsoleError> for PanelError {
    fn from(e: crate::console::ConsoleError) -> Self {
        use crate::console::ConnectionState;
        let code = match e.state() {
            ConnectionState::Off => "console_off",
            ConnectionState::NoToken => "console_no_token",
            ConnectionState::TokenRejected => "console_token_rejected",
            ConnectionState::Connecting | ConnectionState::Ok | ConnectionState::Unreachable => "console_unreachable",
        };
        PanelError::new(code, e)
    }
}

impl From<crate::relay::RelayControlError> for PanelError {
    fn from(e: crate::relay::RelayControlError) -> Self {
        use crate::relay::RelayControlError as E;
        let code = match &e {
            E::EmptyPassword => "invalid_password",
            E::NoKeychain | E::FromCommandLine => "relay_external",
            E::NoPassword(_) => "relay_no_password",
            E::Keychain(_) => "keychain",
            E::Internal(_) => "internal",
        };
        PanelError::new(code, e)
    }
}

impl From<tokio::task::JoinError> for PanelError {
    fn from(e: tokio::task::JoinError) -> Self {
        PanelError::new("internal", e)
    }
}

/// A request to move the receiver to another address (served by `run_until_stopped`).
pub(crate) type Rebind = tokio::net::TcpListener;

/// Everything the panel needs, cheap to clone.
#[derive(Debug, Clone)]
pub struct Panel {
    pub(crate) store: Store,
    pub(crate) intake: Intake,
    pub(crate) notifier: Arc<dyn Notifier>,
    pub(crate) manager: Option<SecretManager>,
    pub(crate) settings: Arc<RwLock<Settings>>,
    pub(crate) console: crate::console::ConsoleHandle,
    pub(crate) paths: Paths,
    pub(crate) addr: Arc<RwLock<SocketAddr>>,
    pub(crate) rebind: mpsc::Sender<Rebind>,
    pub(crate) events: broadcast::Sender<CoreEvent>,
    pub(crate) relay: crate::relay::RelayController,
    pub(crate) actions: Actions,
}

impl Panel {
    /// The store, for tests that arrange time-based states (an hour passing, say).
    #[doc(hidden)]
    pub fn store_for_tests(&self) -> Store {
        self.store.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CoreEvent> {
        self.events.subscribe()
    }

    pub fn settings(&self) -> Settings {
        read(&self.settings).clone()
    }

    pub fn webhook_url(&self) -> String {
        crate::receiver::webhook_url(*read(&self.addr))
    }

    pub async fn overview(&self) -> Result<Overview, PanelError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.overview_now(Utc::now())).await?
    }

    /// Pending plans, oldest first.
    fn pending_plans(&self) -> Result<Vec<PlanRecord>, PanelError> {
        Ok(self.plans_at(Utc::now())?.0)
    }

    /// Pending plans, oldest first, and how long each plan decided in the last 7 days waited
    /// from arrival to its decision (in seconds): one read of the plans.
    fn plans_at(&self, now: DateTime<Utc>) -> Result<(Vec<PlanRecord>, Vec<i64>), PanelError> {
        let since = now - Duration::days(7);
        let (mut open, mut waits) = (Vec::new(), Vec::new());
        for plan in self.store.plans_iter() {
            let plan = plan?;
            match (plan.state, plan.resolved_at) {
                (PlanState::Pending, _) => open.push(plan),
                (PlanState::Resolved, Some(at)) if at >= since => {
                    waits.push((at - plan.received_at).num_seconds().max(0));
                }
                _ => {}
            }
        }
        open.sort_by_key(|p| p.received_at);
        Ok((open, waits))
    }

    /// The first `limit` pending plans, oldest first: the queue beyond the overview's
    /// [`QUEUE_LIMIT`], for a panel that shows more of it.
    pub async fn queue(&self, limit: usize) -> Result<Vec<PlanView>, PanelError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let (now, settings) = (Utc::now(), me.settings());
            let open = me.pending_plans()?;
            Ok(open.iter().take(limit.min(QUEUE_MAX)).map(|p| PlanView::of(p, now, &settings)).collect())
        })
        .await?
    }

    fn overview_now(&self, now: DateTime<Utc>) -> Result<Overview, PanelError> {
        let settings = self.settings();
        let (open, waits) = self.plans_at(now)?;
        let queue: Vec<PlanView> = open.iter().map(|p| PlanView::of(p, now, &settings)).collect();
        let oldest = queue.iter().map(|p| p.age_secs).max();
        let pending = queue.len() as u64;
        let escalate_secs = i64::from(settings.notifications.escalation_minutes) * 60;
        let oldest_state = match oldest {
            None => OldestState::None,
            Some(a) if a >= escalate_secs => OldestState::Overdue,
            Some(a) if a >= escalate_secs / 2 => OldestState::Warning,
            Some(_) => OldestState::Ok,
        };
        let (health, arrivals_24h, received_24h) = self.delivery_stats(now)?;
        let reason = self.intake.not_ready();
        let secrets = match &self.manager {
            Some(m) => Some(m.report(now, false)?),
            None => None,
        };
        // Poll-only: a working Console connection sets the app up without a webhook secret.
        let console_ok = self.console.status().state == crate::console::ConnectionState::Ok;
        let first_run = secrets.as_ref().is_some_and(|r| r.secrets.is_empty()) && !console_ok;
        let notification_status = self.notifier.status();
        let mut next_actions = Vec::new();
        let overdue = queue.iter().filter(|p| p.age_secs >= escalate_secs).count();
        let mut queue = queue;
        queue.truncate(QUEUE_LIMIT);
        if overdue > 0 {
            next_actions.push(NextAction {
                kind: "plans_overdue",
                severity: Severity::Critical,
                text: format!(
                    "{overdue} plan{} wait{} over {} min for approval",
                    plural(overdue),
                    if overdue == 1 { "s" } else { "" },
                    settings.notifications.escalation_minutes
                ),
            });
        }
        if let Some(why) = &reason {
            next_actions.push(NextAction {
                kind: "receiver_not_ready",
                severity: Severity::Critical,
                text: format!("Receiver unreachable for Zof: {why}"),
            });
        }
        if let Some(why) = &notification_status {
            next_actions.push(NextAction {
                kind: "notifications_failing",
                severity: Severity::Warning,
                text: format!("Notifications are failing: {why}"),
            });
        }
        if secrets.as_ref().is_some_and(|r| r.secrets.iter().any(|s| s.due_for_rotation)) {
            next_actions.push(NextAction {
                kind: "secret_due_for_rotation",
                severity: Severity::Warning,
                text: format!(
                    "The webhook secret is over {} days old: rotate it in Admin Center and here",
                    settings.rotation_reminder_days
                ),
            });
        }
        if let Some(last) = &health.last_rejection {
            next_actions.push(NextAction {
                kind: "deliveries_rejected",
                severity: Severity::Warning,
                text: format!(
                    "{} deliver{} refused in 24 h; last: {}",
                    health.rejected,
                    if health.rejected == 1 { "y" } else { "ies" },
                    last.reason
                ),
            });
        }
        next_actions.extend(team_refusals(&self.intake.refusal_summary(now)));
        next_actions.extend(self.store_actions(&open));
        Ok(Overview {
            started: true,
            first_run,
            receiver: ReceiverStatus { webhook_url: self.webhook_url(), ready: reason.is_none(), reason },
            kpis: Kpis {
                pending,
                oldest_waiting_secs: oldest,
                oldest_state,
                received_24h,
                health,
                median_decision_secs_7d: median(waits),
            },
            queue,
            next_actions,
            arrivals_24h,
            refusals: self.intake.refusal_summary(now),
            muted_until: self.notifier.muted_until().filter(|t| *t > now),
            notification_status,
            relay: Some(self.relay.view()),
        })
    }

    /// What the store says needs a person: plans never notified, tenant mismatches, records set aside.
    fn store_actions(&self, open: &[PlanRecord]) -> Vec<NextAction> {
        let mut actions = Vec::new();
        let flagged = |flag| open.iter().filter(|p| p.flags.contains(&flag)).count();
        let not_notified = self.store.not_notified_count();
        if not_notified > 0 {
            actions.push(NextAction {
                kind: "plans_not_notified",
                severity: Severity::Critical,
                text: format!(
                    "{not_notified} plan{} could not be notified: notifications failed for {} hours, so they were given up. \
                     The plan{} {} in the queue",
                    plural(not_notified),
                    crate::outbox::GIVE_UP_AFTER.num_hours(),
                    plural(not_notified),
                    if not_notified == 1 { "is" } else { "are" },
                ),
            });
        }
        let mismatched = flagged(PlanFlag::TenantMismatch);
        if mismatched > 0 {
            actions.push(NextAction {
                kind: "tenant_mismatch",
                severity: Severity::Warning,
                text: format!(
                    "{mismatched} plan{} {} announced again under another organization; the deliveries were not merged (see Activity)",
                    plural(mismatched),
                    if mismatched == 1 { "was" } else { "were" },
                ),
            });
        }
        let quarantined = self.store.quarantined_count();
        if quarantined > 0 {
            actions.push(NextAction {
                kind: "records_quarantined",
                severity: Severity::Warning,
                text: format!(
                    "{quarantined} stored record{} could not be read (damaged, or written by a newer version) and {} set aside; \
                     everything else works",
                    plural(quarantined),
                    if quarantined == 1 { "was" } else { "were" },
                ),
            });
        }
        actions
    }

    /// Health, hourly arrivals and the count of accepted events over the last 24 hours.
    fn delivery_stats(&self, now: DateTime<Utc>) -> Result<(DeliveryHealth, Vec<u32>, u64), PanelError> {
        let since = now - Duration::hours(24);
        let mut health = DeliveryHealth { accepted: 0, duplicates: 0, rejected: 0, last_rejection: None };
        let mut buckets = vec![0u32; 24];
        for d in self.store.deliveries(crate::store::DELIVERY_LOG_CAP)? {
            if d.at < since {
                break;
            }
            match d.verdict {
                DeliveryVerdict::Accepted => {
                    health.accepted += 1;
                    let hours_ago = (now - d.at).num_hours().clamp(0, 23) as usize;
                    buckets[23 - hours_ago] += 1;
                }
                DeliveryVerdict::Duplicate => health.duplicates += 1,
                // Refusals are counted by the intake, not logged (older stores may hold some).
                DeliveryVerdict::Ignored | DeliveryVerdict::Rejected => {}
            }
        }
        // Refused team actions are counted beside them, and told apart (see `team_refusals`).
        let deliveries = |code: &str| !crate::refusals::is_team_action(code);
        let summary = self.intake.refusal_summary(now);
        health.rejected = summary.iter().filter(|r| deliveries(&r.code)).map(|r| r.last_24h).sum();
        health.last_rejection = self
            .intake
            .recent_refusals()
            .into_iter()
            .find(|r| r.at >= since && deliveries(&r.code))
            .map(|r| LastRefusal { at: r.at, reason: r.reason });
        let received = health.accepted;
        Ok((health, buckets, received))
    }

    pub async fn plan(&self, plan_id: String) -> Result<PlanDetail, PanelError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let plan = me
                .store
                .plan(&plan_id)?
                .ok_or_else(|| PanelError::new("unknown_plan", format!("no plan with id `{plan_id}`")))?;
            let payload = me.store.event(&plan.event_id)?.map(|e| e.payload_value()).unwrap_or(serde_json::Value::Null);
            let deliveries = me.store.deliveries_of(&plan.event_id)?;
            Ok(PlanDetail { plan: PlanView::of(&plan, Utc::now(), &me.settings()), payload, deliveries })
        })
        .await?
    }

    pub async fn activity(&self, limit: usize) -> Result<Vec<DeliveryRecord>, PanelError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || Ok(me.store.deliveries(limit.min(1000))?)).await?
    }

    /// "Mark handled" in the panel.
    pub async fn mark_handled(&self, plan_id: String) -> Result<(), PanelError> {
        self.actions.handle(&plan_id, Source::Panel).await?;
        Ok(())
    }

    /// "Snooze" in the panel.
    pub async fn snooze(&self, plan_id: String, minutes: u32) -> Result<(), PanelError> {
        self.actions.snooze(&plan_id, minutes, Source::Panel).await?;
        Ok(())
    }

    /// The plan to review, with its details read again from the Console.
    pub async fn review(&self, plan_id: String) -> Result<crate::actions::Review, PanelError> {
        Ok(self.actions.review(&plan_id).await?)
    }

    /// Approve or reject from the review, as shown at `revision`; every outcome is a report.
    pub async fn decide(
        &self,
        plan_id: String,
        verdict: crate::domain::review::Verdict,
        revision: Option<String>,
        comment: String,
    ) -> crate::actions::DecisionReport {
        self.actions.decide(&plan_id, verdict, revision, &comment, Source::Panel).await
    }

    /// The person-actions, for the other entry points of a running receiver (the control
    /// socket, a notification, the tray).
    pub fn actions(&self) -> &Actions {
        &self.actions
    }

    /// The audit log, newest first.
    pub async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>, PanelError> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || store.audit(&filter)).await??)
    }

    pub async fn console_url(&self, plan_id: String) -> Result<String, PanelError> {
        let store = self.store.clone();
        let id = plan_id.clone();
        let plan = tokio::task::spawn_blocking(move || store.plan(&id)).await??;
        let plan = plan.ok_or_else(|| PanelError::new("unknown_plan", format!("no plan with id `{plan_id}`")))?;
        Ok(self.settings().console_url(&plan.plan_id, &plan.run_id, &plan.organization_id))
    }

    /// Reconciles the queue with the Console now ("Check with Console").
    pub async fn check_with_console(&self) -> Result<crate::console::ReconcileReport, PanelError> {
        Ok(self.console.reconcile_now().await?)
    }

    pub fn console_status(&self) -> crate::console::ConsoleStatus {
        self.console.status()
    }

    /// Keeps a pasted Console API token in the keychain; returns its fingerprint, never the token.
    pub async fn set_console_token(&self, token: String) -> Result<String, PanelError> {
        let token = crate::console::ConsoleToken::new(&token).map_err(|e| PanelError::new("invalid_token", e))?;
        Ok(self.console.set_token(token).await?)
    }

    /// "Subscribe this app in Zof": creates the Console webhook for `public_url` and makes its
    /// secret current (the usual overlap, recorded like any rotation); the secret itself is
    /// never shown. Settings then show where Zof delivers.
    pub async fn subscribe_console(&self, public_url: String) -> Result<crate::console::Subscription, PanelError> {
        let client = self.console.client(&self.settings()).await?;
        Ok(crate::console::subscribe(&client, &self.actions, &public_url, Source::Panel).await?)
    }

    pub fn settings_view(&self) -> SettingsView {
        SettingsView::of(&self.settings())
    }

    /// Validates, saves and applies settings without a restart (a new listen address rebinds).
    pub async fn save_settings(&self, view: SettingsView) -> Result<SettingsView, PanelError> {
        let current = self.settings();
        let next = view.apply_to(&current)?;
        if next.listen != current.listen {
            let listener = tokio::net::TcpListener::bind(next.listen)
                .await
                .map_err(|e| PanelError::new("invalid_settings", format!("cannot listen on {}: {e}", next.listen)))?;
            let addr = listener.local_addr().map_err(|e| PanelError::new("invalid_settings", e))?;
            self.rebind.send(listener).await.map_err(|_| PanelError::new("internal", "the receiver is stopping"))?;
            *write(&self.addr) = addr;
        }
        let relay = next.relay.clone();
        let before = self.actions.save_settings(next.clone(), Source::Panel).await?;
        if (&next.console_api_url, next.reconcile_interval_secs)
            != (&before.console_api_url, before.reconcile_interval_secs)
        {
            self.console.nudge();
        }
        // Started, restarted or stopped as the settings now say; when they cannot be used
        // (no password yet), the relay's status line says why.
        let _ = self.relay.apply(&relay).await;
        Ok(self.settings_view())
    }

    /// Follows the team relay the settings name, if any (at launch; a save applies itself).
    pub async fn follow_relay(&self) -> Result<(), PanelError> {
        Ok(self.relay.apply(&self.settings().relay).await?)
    }

    /// The team relay link (Settings → Team relay), with the NATS password's fingerprint.
    pub async fn relay_status(&self) -> crate::relay::RelayView {
        self.relay.view_with_password().await
    }

    /// Keeps a typed NATS password in the keychain; returns its fingerprint, never the password.
    /// The consumer takes it when the settings are saved next.
    pub async fn set_relay_password(&self, password: String) -> Result<String, PanelError> {
        let password = zeroize::Zeroizing::new(password);
        Ok(self.relay.set_password(&password).await?)
    }

    pub async fn secrets(&self) -> Result<SecretsReport, PanelError> {
        Ok(self.actions.secrets_report(true).await?)
    }

    /// Makes a pasted secret current. The secret goes to the keychain; nothing returns it.
    pub async fn set_secret(&self, secret: String, overlap_hours: u32) -> Result<SecretsReport, PanelError> {
        let secret = Secret::new(&secret).map_err(|e| PanelError::new("invalid_secret", e))?;
        Ok(self.actions.set_secret(secret, hours(overlap_hours), Source::Panel).await?)
    }

    /// Generates a secret and makes it current. The caller hands it to the user once (the
    /// desktop shell puts it on the clipboard); it is never sent to the webview.
    pub async fn generate_secret(&self, overlap_hours: u32) -> Result<(Secret, SecretsReport), PanelError> {
        Ok(self.actions.generate_secret(hours(overlap_hours), Source::Panel).await?)
    }

    pub async fn revoke_previous_secret(&self) -> Result<SecretsReport, PanelError> {
        Ok(self.actions.revoke_previous_secret(Source::Panel).await?.1)
    }

    /// Pauses notifications for `minutes` (0 resumes them), from the panel or the tray.
    pub async fn mute(&self, minutes: u32, source: Source) -> Result<(), PanelError> {
        Ok(self.actions.mute(minutes, source).await?)
    }

    /// Settings → About: this build and its folders; `log_dir` is where the caller's log files go.
    pub fn about(&self, log_dir: &std::path::Path) -> crate::about::About {
        crate::about::About::new(&self.paths, log_dir)
    }
}

/// Team actions from the relay refused in the last 24 hours: whoever sends them can publish to
/// the team's NATS without the webhook secret (or runs another team's secret).
fn team_refusals(summary: &[crate::refusals::RefusalSummary]) -> Option<NextAction> {
    let refused: u64 = summary.iter().filter(|r| crate::refusals::is_team_action(&r.code)).map(|r| r.last_24h).sum();
    (refused > 0).then(|| NextAction {
        kind: "team_actions_rejected",
        severity: Severity::Warning,
        text: format!(
            "{refused} team action{} from the relay refused in 24 h (unsigned, wrongly signed or not for this team); \
             nothing was applied from them (see Activity)",
            if refused == 1 { "" } else { "s" }
        ),
    })
}

/// The median of `values` (the lower middle of an even count); `None` when there are none.
fn median(mut values: Vec<i64>) -> Option<i64> {
    values.sort_unstable();
    values.get(values.len().saturating_sub(1) / 2).copied()
}

/// A whole number of hours as a duration.
fn hours(n: u32) -> Duration {
    Duration::hours(i64::from(n))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}
