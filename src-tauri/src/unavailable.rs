//! What the panel shows while the core is not running (it could not start): an overview whose
//! receiver is not ready, with the reason, and the settings from the file so the user can fix
//! the cause (another listen port) and start again.
//!
//! `settings_view` and `apply_view` mirror the core's private `SettingsView::of` and
//! `SettingsView::apply_to`; they go once the core makes those public.

use std::net::SocketAddr;

use zof_approvals::config::{NotificationSettings, Settings};
use zof_approvals::panel::{
    DeliveryHealth, Kpis, NextAction, OldestState, Overview, PanelError, ReceiverStatus, SettingsView, Severity,
};
use zof_approvals::receiver::WEBHOOK_PATH;

use crate::lifecycle::error;

pub fn overview(reason: &str, settings: &Settings) -> Overview {
    Overview {
        first_run: false,
        receiver: ReceiverStatus {
            webhook_url: format!("http://{}{WEBHOOK_PATH}", settings.listen),
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
            text: format!(
                "Zof Approvals could not start, so no webhook is received: {reason}. \
                 Change the listen address in Settings, or quit the program that holds it."
            ),
        }],
        arrivals_24h: vec![0; 24],
        muted_until: None,
        notification_status: None,
    }
}

pub fn settings_view(s: &Settings) -> SettingsView {
    SettingsView {
        listen: s.listen.to_string(),
        scheme: s.scheme,
        allow_orgs: s.allow_orgs.clone(),
        console_url_template: s.console_url_template.clone(),
        quiet_hours: s.notifications.quiet_hours.clone(),
        escalation_minutes: s.notifications.escalation_minutes,
        coalesce_threshold: s.notifications.coalesce_threshold,
        show_panel_on_arrival: s.notifications.show_panel_on_arrival,
        start_at_login: s.start_at_login,
    }
}

pub fn apply_view(view: &SettingsView, base: &Settings) -> Result<Settings, PanelError> {
    let listen: SocketAddr = view
        .listen
        .trim()
        .parse()
        .map_err(|_| error("invalid_settings", "the listen address must be IP:PORT, e.g. 127.0.0.1:8787"))?;
    let settings = Settings {
        listen,
        scheme: view.scheme,
        allow_orgs: view.allow_orgs.iter().map(|o| o.trim().to_owned()).filter(|o| !o.is_empty()).collect(),
        console_url_template: view.console_url_template.trim().to_owned(),
        notifications: NotificationSettings {
            quiet_hours: view.quiet_hours.clone(),
            escalation_minutes: view.escalation_minutes,
            coalesce_threshold: view.coalesce_threshold,
            show_panel_on_arrival: view.show_panel_on_arrival,
            ..base.notifications.clone()
        },
        start_at_login: view.start_at_login,
        ..base.clone()
    };
    settings.validate().map_err(|e| error("invalid_settings", e))?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unstarted_core_reads_as_a_receiver_that_is_not_ready() {
        let o = overview("cannot listen on 127.0.0.1:8787: address in use", &Settings::default());
        assert!(!o.receiver.ready);
        assert_eq!(o.receiver.webhook_url, "http://127.0.0.1:8787/webhooks/zof");
        assert_eq!(o.next_actions[0].kind, "receiver_not_started");
    }

    #[test]
    fn settings_round_trip_through_the_view() {
        let base = Settings { allow_orgs: vec!["org_a".into()], ..Settings::default() };
        let mut view = settings_view(&base);
        view.listen = " 127.0.0.1:9999 ".into();
        let next = apply_view(&view, &base).unwrap();
        assert_eq!(next.listen.port(), 9999);
        assert_eq!(Settings { listen: base.listen, ..next }, base);
    }

    #[test]
    fn a_bad_listen_address_is_named() {
        let view = SettingsView { listen: "localhost".into(), ..settings_view(&Settings::default()) };
        assert_eq!(apply_view(&view, &Settings::default()).unwrap_err().code, "invalid_settings");
    }
}
