//! What the panel shows: read-only models of the store, the receiver and the settings
//! (the home view, the queue, a plan, the settings form). Nothing here changes anything.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::PanelError;
use crate::config::{NotificationSettings, QuietHours, RelaySettings, Settings};
use crate::domain::plan::resolution_line;
use crate::domain::review::Headline;
use crate::refusals::RefusalSummary;
use crate::store::{DeliveryRecord, PlanFlag, PlanRecord, PlanState};
use crate::verify::Scheme;

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
    /// From arrival to decision, the median over the plans decided in the last 7 days.
    pub median_decision_secs_7d: Option<i64>,
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
    /// Title, environment, risk and service from the Console's details, once they came.
    pub headline: Headline,
}

impl PlanView {
    pub fn of(p: &PlanRecord, now: DateTime<Utc>, settings: &Settings) -> PlanView {
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
            headline: p.headline.clone(),
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
                median_decision_secs_7d: None,
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
            default_display_name: crate::domain::audit::local_name(""),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plan::already_decided;

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
