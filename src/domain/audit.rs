//! The audit log's vocabulary: every action a person (or the Console, or a teammate) took, with
//! who, what, when and from where. The store keeps the rows ([`crate::store::Store::append_audit`])
//! and never edits or deletes one through its API; only the retention window prunes them.
//!
//! A row names a secret only by its fingerprint, and never holds a body or a token.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A plan was marked handled.
    Handled,
    /// A plan was snoozed (the detail says until when).
    Snoozed,
    /// A snooze ended (its time was up) and the plan is pending again.
    Unsnoozed,
    /// The Console decided the plan (approved, rejected, expired, cancelled).
    Resolved,
    SecretSet,
    SecretGenerated,
    SecretRevoked,
    /// Settings were saved; the detail lists the keys that changed.
    SettingsChanged,
    /// Notifications were paused or resumed.
    MuteChanged,
    QuietHoursChanged,
    RelayConnected,
    RelayDisconnected,
    ConsoleConnected,
    ConsoleDisconnected,
    /// A teammate's action that was not applied (a handled plan snoozed, a bad signature, an
    /// organization that is not allowed); the detail says why.
    Ignored,
    /// A person approved the plan from this app (with the Console); the detail gives the
    /// revision decided on and the comment.
    Approved,
    /// A person rejected the plan from this app; the detail gives the revision and the reason.
    Rejected,
}

impl AuditAction {
    pub const ALL: [AuditAction; 17] = [
        AuditAction::Handled,
        AuditAction::Snoozed,
        AuditAction::Unsnoozed,
        AuditAction::Resolved,
        AuditAction::SecretSet,
        AuditAction::SecretGenerated,
        AuditAction::SecretRevoked,
        AuditAction::SettingsChanged,
        AuditAction::MuteChanged,
        AuditAction::QuietHoursChanged,
        AuditAction::RelayConnected,
        AuditAction::RelayDisconnected,
        AuditAction::ConsoleConnected,
        AuditAction::ConsoleDisconnected,
        AuditAction::Ignored,
        AuditAction::Approved,
        AuditAction::Rejected,
    ];

    /// The name rows carry (`handled`, `secret_set`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Handled => "handled",
            AuditAction::Snoozed => "snoozed",
            AuditAction::Unsnoozed => "unsnoozed",
            AuditAction::Resolved => "resolved",
            AuditAction::SecretSet => "secret_set",
            AuditAction::SecretGenerated => "secret_generated",
            AuditAction::SecretRevoked => "secret_revoked",
            AuditAction::SettingsChanged => "settings_changed",
            AuditAction::MuteChanged => "mute_changed",
            AuditAction::QuietHoursChanged => "quiet_hours_changed",
            AuditAction::RelayConnected => "relay_connected",
            AuditAction::RelayDisconnected => "relay_disconnected",
            AuditAction::ConsoleConnected => "console_connected",
            AuditAction::ConsoleDisconnected => "console_disconnected",
            AuditAction::Ignored => "ignored",
            AuditAction::Approved => "approved",
            AuditAction::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == text)
    }

    /// Whether the action is about one plan (it then names it).
    pub fn is_plan_action(self) -> bool {
        matches!(
            self,
            AuditAction::Handled
                | AuditAction::Snoozed
                | AuditAction::Unsnoozed
                | AuditAction::Resolved
                | AuditAction::Approved
                | AuditAction::Rejected
        )
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// From where an action came.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// The desktop panel.
    Panel,
    /// A notification's button.
    Notification,
    /// The tray icon's menu (pause notifications).
    Tray,
    /// The command line (`zof-approvals handle`, `serve`'s own connections, …).
    Cli,
    /// The Zof Console (reconciliation).
    Console,
    /// A teammate, over the team relay: the consumer the action was read by (`team:<consumer>`).
    Team(String),
}

impl Source {
    pub fn parse(text: &str) -> Option<Source> {
        Some(match text {
            "panel" => Source::Panel,
            "notification" => Source::Notification,
            "tray" => Source::Tray,
            "cli" => Source::Cli,
            "console" => Source::Console,
            other => Source::Team(other.strip_prefix("team:")?.to_owned()),
        })
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Panel => f.write_str("panel"),
            Source::Notification => f.write_str("notification"),
            Source::Tray => f.write_str("tray"),
            Source::Cli => f.write_str("cli"),
            Source::Console => f.write_str("console"),
            Source::Team(consumer) => write!(f, "team:{consumer}"),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Source, D::Error> {
        let text = String::deserialize(d)?;
        Source::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("unknown audit source `{text}`")))
    }
}

/// Who acts, and from where: what every action carries to the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub who: String,
    pub source: Source,
}

impl Actor {
    pub fn new(who: impl Into<String>, source: Source) -> Actor {
        Actor { who: who.into(), source }
    }
}

/// One row of the audit log. JSON rows (`audit --json`) have exactly the keys
/// `at who action plan_id detail source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub who: String,
    pub action: AuditAction,
    pub plan_id: Option<String>,
    /// What a reader needs beyond the action: until when, which keys, which fingerprint, why
    /// ignored. Never a secret, a token or a body.
    pub detail: String,
    pub source: Source,
}

impl AuditEntry {
    pub fn new(actor: &Actor, action: AuditAction, plan_id: Option<&str>, detail: impl Into<String>) -> AuditEntry {
        AuditEntry {
            at: Utc::now(),
            who: actor.who.clone(),
            action,
            plan_id: plan_id.map(str::to_owned),
            detail: detail.into(),
            source: actor.source.clone(),
        }
    }
}

impl AuditEntry {
    /// A secret set, generated or revoked: the row names the secrets by fingerprint only, and
    /// says how long the previous secret keeps verifying when that changed.
    pub fn secret_change(
        actor: &Actor,
        action: AuditAction,
        fingerprints: &[String],
        overlap_hours: Option<u32>,
    ) -> AuditEntry {
        let mut detail = format!("fingerprint {}", fingerprints.join(", "));
        if let Some(hours) = overlap_hours {
            detail.push_str(&format!("; the previous secret keeps verifying for {hours} h"));
        }
        AuditEntry::new(actor, action, None, detail)
    }
}

/// Whether `text` has the shape of a secret's fingerprint (12 lowercase hex digits), the only
/// way a row may name a secret.
pub fn is_fingerprint(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Which rows to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub plan_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// Only plan actions (handled, snoozed, un-snoozed, resolved), as Activity's "actions" filter.
    pub plan_actions_only: bool,
    /// At most this many rows (0: no limit).
    pub limit: usize,
}

impl AuditFilter {
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        self.plan_id.as_deref().is_none_or(|id| entry.plan_id.as_deref() == Some(id))
            && self.since.is_none_or(|since| entry.at >= since)
            && (!self.plan_actions_only || entry.action.is_plan_action())
    }
}

/// The name actions are recorded under when none is configured: the OS user and host
/// (`alice@laptop-7`). Reads `/etc/hostname`: call it off the async threads.
pub fn default_display_name() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "user".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "host".into());
    format!("{user}@{host}")
}

/// The name actions are recorded under: `configured` when set, else [`default_display_name`]
/// (read once, then remembered).
pub fn local_name(configured: &str) -> String {
    static DEFAULT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let configured = configured.trim();
    if configured.is_empty() {
        DEFAULT.get_or_init(default_display_name).clone()
    } else {
        configured.to_owned()
    }
}

/// The keys that differ between two JSON objects, dotted for nested ones (`notifications.quiet_hours`).
pub fn changed_keys(before: &serde_json::Value, after: &serde_json::Value) -> Vec<String> {
    fn walk(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    let null = serde_json::Value::Null;
                    walk(&name, a.get(key).unwrap_or(&null), b.get(key).unwrap_or(&null), out);
                }
            }
            (a, b) if a != b => out.push(prefix.to_owned()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", before, after, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_read_back_as_written() {
        for source in [
            Source::Panel,
            Source::Notification,
            Source::Tray,
            Source::Cli,
            Source::Console,
            Source::Team("bob_l2".into()),
        ] {
            assert_eq!(Source::parse(&source.to_string()), Some(source));
        }
        assert_eq!(Source::parse("elsewhere"), None);
        assert_eq!(Source::Team("alice_laptop".into()).to_string(), "team:alice_laptop");
    }

    #[test]
    fn actions_read_back_as_written_and_only_plan_actions_name_a_plan() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
            let json = serde_json::to_string(&action).unwrap_or_default();
            assert_eq!(json, format!("\"{action}\""));
        }
        let plan: Vec<_> = AuditAction::ALL.into_iter().filter(|a| a.is_plan_action()).collect();
        assert_eq!(
            plan,
            [
                AuditAction::Handled,
                AuditAction::Snoozed,
                AuditAction::Unsnoozed,
                AuditAction::Resolved,
                AuditAction::Approved,
                AuditAction::Rejected
            ]
        );
    }

    #[test]
    fn a_json_row_has_exactly_the_documented_keys() {
        let actor = Actor::new("alice@laptop-7", Source::Team("alice_laptop-7".into()));
        let row = AuditEntry::new(&actor, AuditAction::Handled, Some("plan_1"), "");
        let value = serde_json::to_value(&row).unwrap_or_default();
        let mut keys: Vec<&str> = value.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(keys, ["action", "at", "detail", "plan_id", "source", "who"]);
        assert_eq!(value["source"], "team:alice_laptop-7");
        assert_eq!(value["action"], "handled");
    }

    #[test]
    fn changed_keys_names_nested_keys_that_differ() {
        let a = serde_json::json!({"listen": "127.0.0.1:8787", "notifications": {"quiet_hours": null, "escalation_minutes": 30}});
        let b = serde_json::json!({"listen": "127.0.0.1:8787", "notifications": {"quiet_hours": {"start": "22:00", "end": "07:00"}, "escalation_minutes": 45}});
        assert_eq!(changed_keys(&a, &b), ["notifications.escalation_minutes", "notifications.quiet_hours"]);
        assert!(changed_keys(&a, &a).is_empty());
    }

    #[test]
    fn filters_select_by_plan_time_and_kind() {
        let actor = Actor::new("a", Source::Cli);
        let mut row = AuditEntry::new(&actor, AuditAction::Snoozed, Some("p1"), "until 15:00");
        let filter = AuditFilter { plan_id: Some("p1".into()), ..AuditFilter::default() };
        assert!(filter.matches(&row));
        assert!(!AuditFilter { plan_id: Some("p2".into()), ..filter.clone() }.matches(&row));
        let since = row.at + chrono::Duration::seconds(1);
        assert!(!AuditFilter { since: Some(since), ..AuditFilter::default() }.matches(&row));
        row.action = AuditAction::MuteChanged;
        row.plan_id = None;
        assert!(!AuditFilter { plan_actions_only: true, ..AuditFilter::default() }.matches(&row));
    }
}
