//! What the desktop panel shows and does, as plain async calls over the core. The desktop
//! shell's commands are one-liners over [`Panel`]; nothing here knows about Tauri.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::audit::{Actor, AuditAction, AuditEntry, AuditFilter, Source};
use crate::config::{NotificationSettings, Paths, QuietHours, RelaySettings, Settings};
use crate::events::CoreEvent;
use crate::intake::{Intake, IntakePolicy};
use crate::outbox::{NotificationAction, Notifier};
use crate::refusals::RefusalSummary;
use crate::secrets::{SecretManager, SecretsReport};
use crate::store::{DeliveryRecord, DeliveryVerdict, PlanFlag, PlanRecord, PlanState, Store};
use crate::team::{new_action_id, TeamAction, TeamVerb};
use crate::verify::{Scheme, Secret};

/// What "mark handled" did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Handled {
    pub plan: PlanRecord,
    /// The plan was already handled (or decided in the Console): nothing changed.
    pub already: bool,
}

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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceiverStatus {
    pub webhook_url: String,
    pub ready: bool,
    pub reason: Option<String>,
}

/// The newest refused delivery, as the home view names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastRefusal {
    pub at: DateTime<Utc>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryHealth {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub last_rejection: Option<LastRefusal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OldestState {
    None,
    Ok,
    Warning,
    Overdue,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kpis {
    pub pending: u64,
    pub oldest_waiting_secs: Option<i64>,
    pub oldest_state: OldestState,
    pub received_24h: u64,
    pub health: DeliveryHealth,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanView {
    pub plan_id: String,
    pub event_id: String,
    pub run_id: String,
    pub organization_id: String,
    pub received_at: DateTime<Utc>,
    pub created: DateTime<Utc>,
    pub state: PlanState,
    pub snoozed_until: Option<DateTime<Utc>>,
    pub escalated: bool,
    pub age_secs: i64,
    /// What needs a person's eye beyond the state (a tenant mismatch, a notice given up).
    pub flags: Vec<PlanFlag>,
    /// The plan in Zof Console, from `console_url_template`: built here, once, for every view.
    pub console_url: String,
    /// How the plan reached us: a delivery, or reconciliation with the Console.
    pub source: crate::store::PlanSource,
    /// The Console's status when last reconciled (as the Console said it), its decider, and when.
    pub console_status: Option<String>,
    pub decided_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// "Approved in Console by alice@example.com at 2026-05-20 12:00 UTC" for a resolved plan,
    /// "Handled by alice@laptop-7 at …" for a handled one, "Snoozed by … until …" for a snoozed one.
    pub resolution: Option<String>,
    pub handled_at: Option<DateTime<Utc>>,
    pub snoozed_by: Option<String>,
}

/// The plan detail's line for a plan decided in the Console.
pub fn resolution_line(p: &PlanRecord) -> Option<String> {
    let when = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    match (p.state, &p.decided_by, &p.snoozed_by) {
        (PlanState::Handled, Some(by), _) => {
            let at = p.handled_at.map(|t| format!(" at {}", when(t))).unwrap_or_default();
            return Some(format!("Handled by {by}{at}"));
        }
        (PlanState::Snoozed, _, Some(by)) => {
            let until = p.snoozed_until.map(|t| format!(" until {}", when(t))).unwrap_or_default();
            return Some(format!("Snoozed by {by}{until}"));
        }
        (PlanState::Resolved, _, _) => {}
        _ => return None,
    }
    let status = p.console_status.as_deref().unwrap_or("resolved");
    let mut word: Vec<char> = status.replace('_', " ").chars().collect();
    if let Some(first) = word.first_mut() {
        *first = first.to_ascii_uppercase();
    }
    let mut line = format!("{} in Console", word.into_iter().collect::<String>());
    if let Some(by) = &p.decided_by {
        line.push_str(&format!(" by {by}"));
    }
    if let Some(at) = p.resolved_at {
        line.push_str(&format!(" at {}", at.format("%Y-%m-%d %H:%M UTC")));
    }
    Some(line)
}

impl PlanView {
    fn of(p: &PlanRecord, now: DateTime<Utc>, settings: &Settings) -> PlanView {
        PlanView {
            plan_id: p.plan_id.clone(),
            event_id: p.event_id.clone(),
            run_id: p.run_id.clone(),
            organization_id: p.organization_id.clone(),
            received_at: p.received_at,
            created: p.created,
            state: p.state,
            snoozed_until: p.snoozed_until,
            escalated: p.escalated_at.is_some(),
            age_secs: (now - p.received_at).num_seconds().max(0),
            flags: p.flags.clone(),
            console_url: settings.console_url(&p.plan_id, &p.run_id, &p.organization_id),
            source: p.source,
            console_status: p.console_status.clone(),
            decided_by: p.decided_by.clone(),
            resolved_at: p.resolved_at,
            resolution: resolution_line(p),
            handled_at: p.handled_at,
            snoozed_by: p.snoozed_by.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextAction {
    pub kind: &'static str,
    pub severity: Severity,
    pub text: String,
}

/// The home view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    /// False when the core could not start: the store was not read, so the counts, the queue
    /// and the chart are unknown (not zero).
    pub started: bool,
    pub first_run: bool,
    pub receiver: ReceiverStatus,
    pub kpis: Kpis,
    pub queue: Vec<PlanView>,
    pub next_actions: Vec<NextAction>,
    /// Accepted deliveries per hour over the last 24 hours, oldest first.
    pub arrivals_24h: Vec<u32>,
    /// Refused deliveries per refusal code (counted, never logged one by one).
    pub refusals: Vec<RefusalSummary>,
    pub muted_until: Option<DateTime<Utc>>,
    pub notification_status: Option<String>,
    /// The team relay link (`off` when none is set); `None` when the core did not start.
    pub relay: Option<crate::relay::RelayView>,
}

/// At most this many plans travel in an overview (oldest first); `kpis.pending` counts them all.
/// [`Panel::queue`] gives more on request.
pub const QUEUE_LIMIT: usize = 200;
/// At most this many plans in one answer of [`Panel::queue`].
pub const QUEUE_MAX: usize = 10_000;

impl Overview {
    /// What the panel shows when the receiver could not start: not ready, and why.
    pub fn unavailable(reason: &str, settings: &Settings) -> Overview {
        Overview {
            started: false,
            first_run: false,
            receiver: ReceiverStatus {
                webhook_url: crate::receiver::webhook_url(settings.listen),
                ready: false,
                reason: Some(reason.to_owned()),
            },
            kpis: Kpis {
                pending: 0,
                oldest_waiting_secs: None,
                oldest_state: OldestState::None,
                received_24h: 0,
                health: DeliveryHealth { accepted: 0, duplicates: 0, rejected: 0, last_rejection: None },
            },
            queue: Vec::new(),
            next_actions: vec![NextAction {
                kind: "receiver_not_started",
                severity: Severity::Critical,
                text: if reason.starts_with("cannot listen on") {
                    format!(
                        "Zof Approvals could not start, so no webhook is received: {reason}. \
                         Change the listen address in Settings, or quit the program that holds it."
                    )
                } else {
                    format!("Zof Approvals could not start, so no webhook is received: {reason}.")
                },
            }],
            arrivals_24h: vec![0; 24],
            refusals: Vec::new(),
            muted_until: None,
            notification_status: None,
            relay: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanDetail {
    pub plan: PlanView,
    pub payload: serde_json::Value,
    pub deliveries: Vec<DeliveryRecord>,
}

/// The settings the panel edits (a flat view of [`Settings`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingsView {
    pub listen: String,
    pub scheme: Scheme,
    pub allow_orgs: Vec<String>,
    pub console_url_template: String,
    pub quiet_hours: Option<QuietHours>,
    pub escalation_minutes: u32,
    pub coalesce_threshold: u32,
    pub coalesce_window_secs: u32,
    pub show_panel_on_arrival: bool,
    pub start_at_login: bool,
    /// The Console connection (`None` from an older panel: unchanged).
    #[serde(default)]
    pub console_api_url: Option<String>,
    #[serde(default)]
    pub reconcile_interval_secs: Option<u32>,
    #[serde(default)]
    pub public_url: Option<String>,
    /// The name actions are recorded under (`None` from an older panel: unchanged; empty: `user@host`).
    #[serde(default)]
    pub display_name: Option<String>,
    /// What an empty `display_name` stands for on this machine (shown, never saved).
    #[serde(default)]
    pub default_display_name: String,
    /// Settings → Team relay (`None` from an older panel: unchanged). Never a password.
    #[serde(default)]
    pub relay: Option<RelaySettings>,
}

impl SettingsView {
    pub fn of(s: &Settings) -> SettingsView {
        SettingsView {
            listen: s.listen.to_string(),
            scheme: s.scheme,
            allow_orgs: s.allow_orgs.clone(),
            console_url_template: s.console_url_template.clone(),
            quiet_hours: s.notifications.quiet_hours.clone(),
            escalation_minutes: s.notifications.escalation_minutes,
            coalesce_threshold: s.notifications.coalesce_threshold,
            coalesce_window_secs: s.notifications.coalesce_window_secs,
            show_panel_on_arrival: s.notifications.show_panel_on_arrival,
            start_at_login: s.start_at_login,
            console_api_url: Some(s.console_api_url.clone()),
            reconcile_interval_secs: Some(s.reconcile_interval_secs),
            public_url: Some(s.public_url.clone()),
            display_name: Some(s.display_name.clone()),
            default_display_name: crate::audit::local_name(""),
            relay: Some(s.relay.clone()),
        }
    }

    /// The settings with this view's changes, validated.
    pub fn apply_to(&self, base: &Settings) -> Result<Settings, PanelError> {
        let listen: SocketAddr = self.listen.trim().parse().map_err(|_| {
            PanelError::new("invalid_settings", "the listen address must be IP:PORT, e.g. 127.0.0.1:8787")
        })?;
        let settings = Settings {
            listen,
            scheme: self.scheme,
            allow_orgs: self.allow_orgs.iter().map(|o| o.trim().to_owned()).filter(|o| !o.is_empty()).collect(),
            console_url_template: self.console_url_template.trim().to_owned(),
            notifications: NotificationSettings {
                quiet_hours: self.quiet_hours.clone(),
                escalation_minutes: self.escalation_minutes,
                coalesce_threshold: self.coalesce_threshold,
                coalesce_window_secs: self.coalesce_window_secs,
                show_panel_on_arrival: self.show_panel_on_arrival,
            },
            start_at_login: self.start_at_login,
            console_api_url: self
                .console_api_url
                .as_deref()
                .map_or(base.console_api_url.clone(), |u| u.trim().to_owned()),
            reconcile_interval_secs: self.reconcile_interval_secs.unwrap_or(base.reconcile_interval_secs),
            public_url: self.public_url.as_deref().map_or(base.public_url.clone(), |u| u.trim().to_owned()),
            display_name: self.display_name.as_deref().map_or(base.display_name.clone(), |n| n.trim().to_owned()),
            relay: self.relay.as_ref().map_or(base.relay.clone(), RelaySettings::trimmed),
            ..base.clone()
        };
        settings.validate().map_err(|e| PanelError::new("invalid_settings", e))?;
        Ok(settings)
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
        let mut open = Vec::new();
        for plan in self.store.plans_iter() {
            let plan = plan?;
            if plan.state == PlanState::Pending {
                open.push(plan);
            }
        }
        open.sort_by_key(|p| p.received_at);
        Ok(open)
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
        let open = self.pending_plans()?;
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
        next_actions.extend(self.store_actions(&open));
        Ok(Overview {
            started: true,
            first_run,
            receiver: ReceiverStatus { webhook_url: self.webhook_url(), ready: reason.is_none(), reason },
            kpis: Kpis { pending, oldest_waiting_secs: oldest, oldest_state, received_24h, health },
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
        health.rejected = self.intake.refusal_summary(now).iter().map(|r| r.last_24h).sum();
        health.last_rejection = self
            .intake
            .recent_refusals()
            .into_iter()
            .find(|r| r.at >= since)
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
        self.handle(plan_id, Source::Panel).await.map(drop)
    }

    /// Marks a plan handled by this machine's person, from `source`, and records it in the audit
    /// log. The first decision stands: a plan already handled (or decided in the Console) is
    /// left as it is, and the answer says so ([`Handled::already`]).
    pub async fn handle(&self, plan_id: String, source: Source) -> Result<Handled, PanelError> {
        let actor = self.actor(source);
        let change = handle_change(actor.who.clone(), new_action_id());
        let (plan, changed) = self.change_plan_audited(plan_id, &actor, Some(TeamVerb::Handled), change).await?;
        Ok(Handled { plan, already: !changed })
    }

    /// "Snooze" in the panel.
    pub async fn snooze(&self, plan_id: String, minutes: u32) -> Result<(), PanelError> {
        self.snooze_as(plan_id, minutes, Source::Panel).await.map(drop)
    }

    /// Snoozes a plan for `minutes`, by this machine's person, from `source`, recorded in the
    /// audit log. A plan already handled (or decided in the Console) is not snoozed: the
    /// answer is the error `plan_handled`.
    pub async fn snooze_as(&self, plan_id: String, minutes: u32, source: Source) -> Result<PlanRecord, PanelError> {
        check_snooze_minutes(minutes)?;
        let actor = self.actor(source);
        // A plan handled in the meantime (in the panel, or from another notification) stays
        // handled: a snooze must never bring it back into the queue.
        let change = snooze_change(actor.who.clone(), minutes);
        let (plan, _) = self.change_plan_audited(plan_id, &actor, Some(TeamVerb::Snoozed), change).await?;
        if !plan.is_open() {
            return Err(not_snoozed(&plan));
        }
        Ok(plan)
    }

    /// Who acts on this machine, from `source`: the configured display name, else `user@host`.
    pub fn actor(&self, source: Source) -> Actor {
        Actor::new(crate::audit::local_name(&read(&self.settings).display_name), source)
    }

    /// The audit log, newest first.
    pub async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>, PanelError> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || store.audit(&filter)).await??)
    }

    /// Appends one audit row now and waits until it is on disk.
    async fn record(&self, entry: AuditEntry) -> Result<(), PanelError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.append_audit(&entry)).await??;
        self.store.durable().await?;
        Ok(())
    }

    /// Applies what the user chose on a notification, through the same calls as the panel's
    /// buttons (the notifier itself writes nothing).
    pub(crate) async fn apply(&self, action: NotificationAction) {
        match action {
            NotificationAction::Snooze { plan_id, minutes } => match self
                .snooze_as(plan_id.clone(), minutes, Source::Notification)
                .await
            {
                Ok(plan) => {
                    if let Some(until) = plan.snoozed_until {
                        let _ = self.events.send(CoreEvent::Snooze { plan_id, until });
                    }
                }
                Err(e) if e.code == "plan_handled" => tracing::debug!(plan = %plan_id, "a handled plan is not snoozed"),
                Err(e) => tracing::warn!(error = %e, "could not snooze a plan"),
            },
        }
    }

    /// Changes one plan as `actor`: `change` returns the audit row's action and detail when it
    /// changed the plan, `None` to leave it as it is. The plan and its audit row are written
    /// together and are on disk before this returns.
    async fn change_plan_audited(
        &self,
        plan_id: String,
        actor: &Actor,
        team: Option<TeamVerb>,
        change: impl Fn(&mut PlanRecord, DateTime<Utc>) -> Option<(AuditAction, String)> + Send + 'static,
    ) -> Result<(PlanRecord, bool), PanelError> {
        let store = self.store.clone();
        let id = plan_id.clone();
        let actor = actor.clone();
        let (plan, changed) =
            tokio::task::spawn_blocking(move || write_plan_audited(&store, &id, &actor, team, change)).await??;
        self.store.durable().await?;
        self.notifier.withdraw(&plan_id);
        let _ = self.events.send(CoreEvent::PlanChanged { plan_id });
        Ok((plan, changed))
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
    /// secret current (the usual overlap); the secret itself is never shown.
    pub async fn subscribe_console(&self, public_url: String) -> Result<crate::console::Subscription, PanelError> {
        let manager = self.manager()?;
        let settings = self.settings();
        let client = self.console.client(&settings).await?;
        let overlap = Duration::hours(i64::from(settings.secret_overlap_hours));
        let subscription = crate::console::subscribe(&client, &manager, &public_url, overlap).await?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.refresh_secrets(&manager)).await?;
        // Remembered, so Settings shows where Zof now delivers.
        let public_url = public_url.trim().to_owned();
        if settings.public_url != public_url {
            self.save_settings(SettingsView { public_url: Some(public_url), ..self.settings_view() }).await?;
        }
        let _ = self.events.send(CoreEvent::StatusChanged);
        Ok(subscription)
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
        let path = self.paths.settings_file();
        let to_save = next.clone();
        tokio::task::spawn_blocking(move || to_save.save(&path))
            .await?
            .map_err(|e| PanelError::new("invalid_settings", e))?;
        self.record_settings_change(&current, &next).await?;
        self.intake.set_policy(IntakePolicy::from_settings(&next));
        self.notifier.set_preferences(&next.notifications);
        let console_changed = (&next.console_api_url, next.reconcile_interval_secs)
            != (&current.console_api_url, current.reconcile_interval_secs);
        let relay = next.relay.clone();
        *write(&self.settings) = next;
        if console_changed {
            self.console.nudge();
        }
        // Started, restarted or stopped as the settings now say; when they cannot be used
        // (no password yet), the relay's status line says why.
        let _ = self.relay.apply(&relay).await;
        let _ = self.events.send(CoreEvent::StatusChanged);
        Ok(self.settings_view())
    }

    /// Settings saved: which keys changed (quiet hours get a row of their own), never values
    /// beyond the quiet hours' times.
    async fn record_settings_change(&self, before: &Settings, after: &Settings) -> Result<(), PanelError> {
        let as_json = |s: &Settings| serde_json::to_value(s).unwrap_or(serde_json::Value::Null);
        let mut keys = crate::audit::changed_keys(&as_json(before), &as_json(after));
        let quiet = "notifications.quiet_hours";
        let quiet_changed = keys.iter().any(|k| k.starts_with(quiet));
        keys.retain(|k| !k.starts_with(quiet));
        let actor = self.actor(Source::Panel);
        if quiet_changed {
            let detail = match &after.notifications.quiet_hours {
                Some(q) => format!("{}–{}", q.start, q.end),
                None => "off".to_owned(),
            };
            self.record(AuditEntry::new(&actor, AuditAction::QuietHoursChanged, None, detail)).await?;
        }
        if !keys.is_empty() {
            self.record(AuditEntry::new(&actor, AuditAction::SettingsChanged, None, keys.join(", "))).await?;
        }
        Ok(())
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

    /// Puts the rotated set in force now (the watcher would within a quarter second), so a
    /// delivery signed with the new secret right after the rotation is accepted.
    fn refresh_secrets(&self, manager: &SecretManager) {
        if let Ok(set) = manager.load(Utc::now()) {
            self.intake.secrets().replace(crate::secrets::SecretsStatus::Ready(set));
        }
    }

    fn manager(&self) -> Result<SecretManager, PanelError> {
        self.manager.clone().ok_or_else(|| {
            PanelError::new(
                "secrets_external",
                "the secret comes from an environment variable; restart without --secret-env to manage it here",
            )
        })
    }

    pub async fn secrets(&self) -> Result<SecretsReport, PanelError> {
        let m = self.manager()?;
        Ok(tokio::task::spawn_blocking(move || m.report(Utc::now(), true)).await??)
    }

    /// Makes a pasted secret current. The secret goes to the keychain; nothing returns it.
    pub async fn set_secret(&self, secret: String, overlap_hours: u32) -> Result<SecretsReport, PanelError> {
        let secret = Secret::new(&secret).map_err(|e| PanelError::new("invalid_secret", e))?;
        let fingerprint = secret.fingerprint();
        let m = self.manager()?;
        let me = self.clone();
        let report = tokio::task::spawn_blocking(move || {
            m.rotate_to(&secret, Duration::hours(i64::from(overlap_hours)), Utc::now())?;
            me.refresh_secrets(&m);
            m.report(Utc::now(), false)
        })
        .await??;
        self.record_secret_change(AuditAction::SecretSet, &fingerprint, overlap_hours).await?;
        let _ = self.events.send(CoreEvent::StatusChanged);
        Ok(report)
    }

    /// Generates a secret and makes it current. The caller hands it to the user once (the
    /// desktop shell puts it on the clipboard); it is never sent to the webview.
    pub async fn generate_secret(&self, overlap_hours: u32) -> Result<(Secret, SecretsReport), PanelError> {
        let m = self.manager()?;
        let me = self.clone();
        let out = tokio::task::spawn_blocking(move || {
            let secret = m.generate(Duration::hours(i64::from(overlap_hours)), Utc::now())?;
            me.refresh_secrets(&m);
            Ok::<_, crate::secrets::SecretsError>((secret, m.report(Utc::now(), false)?))
        })
        .await??;
        self.record_secret_change(AuditAction::SecretGenerated, &out.0.fingerprint(), overlap_hours).await?;
        let _ = self.events.send(CoreEvent::StatusChanged);
        Ok(out)
    }

    pub async fn revoke_previous_secret(&self) -> Result<SecretsReport, PanelError> {
        let m = self.manager()?;
        let me = self.clone();
        let (revoked, report) = tokio::task::spawn_blocking(move || {
            let revoked = m.revoke_previous()?;
            me.refresh_secrets(&m);
            Ok::<_, crate::secrets::SecretsError>((revoked, m.report(Utc::now(), false)?))
        })
        .await??;
        let fingerprints: Vec<String> = revoked.iter().map(|f| f.0.clone()).collect();
        self.record_secret_change_by(Source::Panel, AuditAction::SecretRevoked, &fingerprints, None).await?;
        let _ = self.events.send(CoreEvent::StatusChanged);
        Ok(report)
    }

    /// A secret set or generated: only its fingerprint is recorded.
    async fn record_secret_change(
        &self,
        action: AuditAction,
        fingerprint: &crate::verify::Fingerprint,
        overlap_hours: u32,
    ) -> Result<(), PanelError> {
        self.record_secret_change_by(Source::Panel, action, std::slice::from_ref(&fingerprint.0), Some(overlap_hours))
            .await
    }

    /// Records a secret change made from `source` (the CLI changes the keychain itself and
    /// tells a running receiver through its control socket): fingerprints only.
    pub async fn record_secret_change_by(
        &self,
        source: Source,
        action: AuditAction,
        fingerprints: &[String],
        overlap_hours: Option<u32>,
    ) -> Result<(), PanelError> {
        self.record(AuditEntry::secret_change(&self.actor(source), action, fingerprints, overlap_hours)).await
    }

    /// Pauses notifications for `minutes` (0 resumes them); the pause is kept in the store, so
    /// it survives a restart ([`stored_mute`] reads it back at start).
    pub async fn mute(&self, minutes: u32) -> Result<(), PanelError> {
        let until = (minutes > 0).then(|| Utc::now() + Duration::minutes(i64::from(minutes)));
        let detail = match until {
            Some(t) => format!("paused until {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            None => "resumed".to_owned(),
        };
        let row = AuditEntry::new(&self.actor(Source::Panel), AuditAction::MuteChanged, None, detail);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.set_meta(MUTE_KEY, &until)?;
            store.append_audit(&row)
        })
        .await??;
        self.store.durable().await?;
        self.notifier.mute_until(until);
        let _ = self.events.send(CoreEvent::StatusChanged);
        Ok(())
    }

    /// Settings → About: this build and its folders; `log_dir` is where the caller's log files go.
    pub fn about(&self, log_dir: &std::path::Path) -> crate::about::About {
        crate::about::About::new(&self.paths, log_dir)
    }

    /// The diagnostics a user copies into a support request: version, OS, settings, store
    /// counts, secret fingerprints, refusal counts and current problems; never a secret or a body.
    pub async fn diagnostics(&self, log_dir: std::path::PathBuf) -> Result<String, PanelError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let facts = me.diagnostic_facts(Utc::now());
            crate::about::diagnostics_text(&me.about(&log_dir), &facts)
        })
        .await
        .map_err(PanelError::from)
    }

    /// What the diagnostics say; a part that cannot be read becomes a problem, not a failure.
    fn diagnostic_facts(&self, now: DateTime<Utc>) -> crate::about::DiagnosticFacts {
        use crate::about::{DiagnosticFacts, SecretsFacts, StoreCounts};
        let mut problems: Vec<String> =
            [self.intake.not_ready(), self.notifier.status(), self.store.down_reason()].into_iter().flatten().collect();
        let mut store = StoreCounts {
            events: self.store.event_count(),
            outbox: self.store.outbox_len(),
            quarantined: self.store.quarantined_count(),
            ..StoreCounts::default()
        };
        for plan in self.store.plans_iter() {
            match plan.map(|p| p.state) {
                Ok(PlanState::Pending) => store.pending += 1,
                Ok(PlanState::Snoozed) => store.snoozed += 1,
                Ok(PlanState::Handled) => store.handled += 1,
                Ok(PlanState::Resolved) => store.resolved += 1,
                Err(e) => {
                    problems.push(format!("the plans cannot be read: {e}"));
                    break;
                }
            }
        }
        let secrets = match &self.manager {
            Some(m) => {
                m.report(now, false).map_or_else(|e| SecretsFacts::Unreadable(e.to_string()), SecretsFacts::Managed)
            }
            None => SecretsFacts::External,
        };
        DiagnosticFacts {
            now,
            webhook_url: self.webhook_url(),
            settings: self.settings(),
            store,
            secrets,
            problems,
            refusals: self.intake.refusal_summary(now),
        }
    }
}

/// What "mark handled" does to an open plan (and the audit row it makes); a plan already
/// handled or decided in the Console is left as it is.
fn handle_change(
    who: String,
    decision_id: String,
) -> impl Fn(&mut PlanRecord, DateTime<Utc>) -> Option<(AuditAction, String)> + Send + 'static {
    move |p, now| {
        if !p.is_open() {
            return None;
        }
        p.state = PlanState::Handled;
        p.handled_at = Some(now);
        p.snoozed_until = None;
        p.decided_by = Some(who.clone());
        p.decision_id = Some(decision_id.clone());
        Some((AuditAction::Handled, String::new()))
    }
}

/// What "snooze" does to an open plan (and the audit row it makes).
fn snooze_change(
    who: String,
    minutes: u32,
) -> impl Fn(&mut PlanRecord, DateTime<Utc>) -> Option<(AuditAction, String)> + Send + 'static {
    let decision_id = new_action_id();
    move |p, now| {
        if !p.is_open() {
            return None;
        }
        let until = now + Duration::minutes(i64::from(minutes));
        p.state = PlanState::Snoozed;
        p.snoozed_until = Some(until);
        p.snoozed_by = Some(who.clone());
        p.snoozed_at = Some(now);
        p.decision_id = Some(decision_id.clone());
        Some((AuditAction::Snoozed, format!("until {}", until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))))
    }
}

/// The longest snooze (7 days), in minutes.
pub const SNOOZE_MAX_MINUTES: u32 = 7 * 24 * 60;

fn check_snooze_minutes(minutes: u32) -> Result<(), PanelError> {
    if minutes == 0 || minutes > SNOOZE_MAX_MINUTES {
        return Err(PanelError::new("invalid_snooze", "snooze between 1 minute and 7 days"));
    }
    Ok(())
}

/// The answer to a snooze of a plan that is no longer open.
fn not_snoozed(plan: &PlanRecord) -> PanelError {
    PanelError::new("plan_handled", format!("{}; there is nothing to snooze", already_decided(plan)))
}

/// "plan_x was already handled by bob at 2026-05-20 14:02 UTC" (or decided in the Console).
pub fn already_decided(plan: &PlanRecord) -> String {
    let how = resolution_line(plan).map_or_else(
        || "marked handled (or decided in the Console)".to_owned(),
        |line| {
            let mut chars = line.chars();
            chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
        },
    );
    format!("{} was already {how}", plan.plan_id)
}

/// Changes one plan and appends its audit row in the same blocking call: `change` returns the
/// row's action and detail when it changed the plan. Returns the plan and whether it changed.
/// With `team`, the change is queued for teammates too (when a relay is attached), under the
/// plan's decision id. The writes join the next group commit; callers wait for
/// [`Store::durable`] or flush.
fn write_plan_audited(
    store: &Store,
    plan_id: &str,
    actor: &Actor,
    team: Option<TeamVerb>,
    change: impl Fn(&mut PlanRecord, DateTime<Utc>) -> Option<(AuditAction, String)>,
) -> Result<(PlanRecord, bool), crate::store::StoreError> {
    let now = Utc::now();
    let row = std::sync::Mutex::new(None);
    let plan = store.update_plan(plan_id, |p| {
        // May run more than once under contention: the last run is what was written.
        let done = change(p, now);
        if let Ok(mut row) = row.lock() {
            *row = done;
        }
    })?;
    let row = row.into_inner().ok().flatten();
    let changed = row.is_some();
    if let Some((action, detail)) = row {
        let mut entry = AuditEntry::new(actor, action, Some(plan_id), detail);
        entry.at = now;
        store.append_audit(&entry)?;
        if let (Some(verb), Some(decision)) = (team, plan.decision_id.clone()) {
            store.share_with_team(&TeamAction {
                id: decision,
                plan_id: plan_id.to_owned(),
                organization_id: plan.organization_id.clone(),
                action: verb,
                by: actor.who.clone(),
                at: now,
                until: plan.snoozed_until.filter(|_| verb == TeamVerb::Snoozed),
                status: None,
            })?;
        }
    }
    Ok((plan, changed))
}

/// [`Panel::handle`] for a store opened without a receiver (the CLI's `handle` when nothing
/// runs): the same change and audit row, on disk before this returns. Blocking.
pub fn handle_in_store(store: &Store, plan_id: &str, actor: &Actor) -> Result<Handled, PanelError> {
    let change = handle_change(actor.who.clone(), new_action_id());
    let (plan, changed) = write_plan_audited(store, plan_id, actor, Some(TeamVerb::Handled), change)?;
    store.flush_blocking()?;
    Ok(Handled { plan, already: !changed })
}

/// [`Panel::snooze_as`] for a store opened without a receiver. Blocking.
pub fn snooze_in_store(store: &Store, plan_id: &str, minutes: u32, actor: &Actor) -> Result<PlanRecord, PanelError> {
    check_snooze_minutes(minutes)?;
    let change = snooze_change(actor.who.clone(), minutes);
    let (plan, changed) = write_plan_audited(store, plan_id, actor, Some(TeamVerb::Snoozed), change)?;
    store.flush_blocking()?;
    if !changed {
        return Err(not_snoozed(&plan));
    }
    Ok(plan)
}

/// Where [`Panel::mute`] keeps the pause.
const MUTE_KEY: &str = "muted_until";

/// The pause [`Panel::mute`] kept, for `Application::build` to hand to the notifier at start.
pub(crate) fn stored_mute(store: &Store) -> Option<DateTime<Utc>> {
    match store.meta::<Option<DateTime<Utc>>>(MUTE_KEY) {
        Ok(until) => until.flatten(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the mute switch; notifications are not paused");
            None
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unstarted_receiver_reads_as_not_ready_with_the_reason() {
        let o = Overview::unavailable("cannot listen on 127.0.0.1:8787: address in use", &Settings::default());
        assert!(!o.receiver.ready);
        assert!(!o.started, "its counts are unknown, not zero");
        assert_eq!(o.receiver.webhook_url, "http://127.0.0.1:8787/webhooks/zof");
        assert!(o.next_actions[0].text.contains("address in use"));
    }

    #[test]
    fn settings_round_trip_through_the_view() {
        let base = Settings { allow_orgs: vec!["org_a".into()], ..Settings::default() };
        let mut view = SettingsView::of(&base);
        view.listen = " 127.0.0.1:9999 ".into();
        view.allow_orgs.push("  ".into());
        let next = view.apply_to(&base).unwrap();
        assert_eq!(next.listen.port(), 9999);
        assert_eq!(Settings { listen: base.listen, ..next }, base);
    }

    #[test]
    fn a_plan_view_carries_its_console_link() {
        let settings = Settings {
            console_url_template: "https://c.example/{organization_id}/{plan_id}".into(),
            ..Settings::default()
        };
        let now = Utc::now();
        let plan = PlanRecord::arrived("plan 1", "e", "r", "org_a", now, now);
        assert_eq!(PlanView::of(&plan, now, &settings).console_url, "https://c.example/org_a/plan%201");
    }

    #[test]
    fn a_plan_resolved_in_the_console_says_how_by_whom_and_when() {
        let now = Utc::now();
        let mut plan = PlanRecord::arrived("p", "e", "r", "o", now, now);
        assert_eq!(resolution_line(&plan), None);
        plan.state = PlanState::Resolved;
        plan.console_status = Some("rejected".into());
        plan.decided_by = Some("alice@example.com".into());
        plan.resolved_at = chrono::DateTime::from_timestamp(1_779_278_700, 0);
        assert_eq!(
            resolution_line(&plan).as_deref(),
            Some("Rejected in Console by alice@example.com at 2026-05-20 12:05 UTC")
        );
        plan.decided_by = None;
        plan.console_status = Some("expired".into());
        assert_eq!(resolution_line(&plan).as_deref(), Some("Expired in Console at 2026-05-20 12:05 UTC"));
    }

    #[test]
    fn a_decided_plan_says_who_decided_it_and_when() {
        let now = Utc::now();
        let mut plan = PlanRecord::arrived("plan_x", "e", "r", "o", now, now);
        plan.state = PlanState::Handled;
        plan.decided_by = Some("bob@l2".into());
        plan.handled_at = chrono::DateTime::from_timestamp(1_779_285_720, 0);
        assert_eq!(already_decided(&plan), "plan_x was already handled by bob@l2 at 2026-05-20 14:02 UTC");
        plan.state = PlanState::Resolved;
        plan.console_status = Some("approved".into());
        plan.resolved_at = plan.handled_at;
        assert_eq!(already_decided(&plan), "plan_x was already approved in Console by bob@l2 at 2026-05-20 14:02 UTC");
    }

    #[test]
    fn settings_from_an_older_panel_keep_the_console_connection() {
        let base = Settings { console_api_url: "https://api.example".into(), ..Settings::default() };
        let older = SettingsView {
            console_api_url: None,
            reconcile_interval_secs: None,
            public_url: None,
            relay: None,
            ..SettingsView::of(&base)
        };
        assert_eq!(older.apply_to(&base).unwrap().console_api_url, "https://api.example");
        let joined = Settings {
            relay: RelaySettings { url: "nats://n:4222".into(), ..RelaySettings::default() },
            ..Settings::default()
        };
        let older = SettingsView { relay: None, ..SettingsView::of(&base) };
        assert_eq!(older.apply_to(&joined).unwrap().relay, joined.relay, "an older panel leaves the relay alone");
        let typed = RelaySettings { url: " nats://n:4222 ".into(), user: " alice ".into(), ..RelaySettings::default() };
        let saved = SettingsView { relay: Some(typed), ..SettingsView::of(&base) }.apply_to(&base).unwrap();
        assert_eq!((saved.relay.url.as_str(), saved.relay.user.as_str()), ("nats://n:4222", "alice"));
        let off = SettingsView { console_api_url: Some(" ".into()), ..SettingsView::of(&base) };
        assert_eq!(off.apply_to(&base).unwrap().console_api_url, "");
    }

    #[test]
    fn invalid_settings_are_refused_with_the_field_named() {
        let base = Settings::default();
        let bad_listen = SettingsView { listen: "localhost".into(), ..SettingsView::of(&base) };
        assert!(bad_listen.apply_to(&base).unwrap_err().message.contains("IP:PORT"));
        let bad_quiet = SettingsView {
            quiet_hours: Some(QuietHours { start: "25:00".into(), end: "07:00".into() }),
            ..SettingsView::of(&base)
        };
        assert!(bad_quiet.apply_to(&base).unwrap_err().message.contains("quiet_hours.start"));
    }
}
