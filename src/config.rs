//! Settings (a JSON file in the config dir, edited by the desktop app) and the paths shared by the
//! CLI and the desktop app, validated once at load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::verify::Scheme;

pub const SETTINGS_FILE: &str = "settings.json";
pub const DEFAULT_SECRET_ENV: &str = "ZOF_WEBHOOK_SECRET";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot find the home directory to place data and settings in; pass --data-dir and --config-dir")]
    NoHome,
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid settings: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting `{field}`: {message}")]
    Invalid { field: &'static str, message: String },
}

/// The path Zof delivers to.
pub const WEBHOOK_PATH: &str = "/webhooks/zof";

/// The URL Zof posts to for a receiver listening on `addr`.
pub fn webhook_url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}{WEBHOOK_PATH}")
}

/// The cap on open connections when the settings name none: far above what Zof opens, far
/// below the file descriptors a service gets (`LimitNOFILE=65536` in the packaged units).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Why a Console API URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiUrlError {
    #[error("`{0}` is not a URL (e.g. https://api.zof.ai)")]
    NotAUrl(String),
    #[error("the Console API must be reached over https:// (the token travels with every request); http:// is allowed only for this computer (localhost, 127.0.0.1, ::1)")]
    NotHttps,
}

/// Checks a Console API URL: `https://`, or `http://` to a loopback address (a local test
/// Console or a tunnel's local end), where the token never leaves this computer.
pub fn check_console_api_url(api_url: &str) -> Result<(), ApiUrlError> {
    let text = api_url.trim();
    let not_a_url = || ApiUrlError::NotAUrl(text.to_owned());
    let (scheme, rest) = text.split_once("://").ok_or_else(not_a_url)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(not_a_url());
    }
    let loopback =
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(ApiUrlError::NotHttps),
    }
}

/// The JetStream stream the team relay uses unless the settings name another.
pub const DEFAULT_STREAM: &str = "ZOF";

/// Where the store and the settings live. The CLI and the desktop app use the same defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub data_dir: PathBuf,
    pub config_dir: PathBuf,
}

impl Paths {
    /// The OS's standard locations (`$XDG_DATA_HOME/zof-approvals`, `$XDG_CONFIG_HOME/zof-approvals`
    /// on Linux), each overridable.
    pub fn resolve(data_dir: Option<PathBuf>, config_dir: Option<PathBuf>) -> Result<Paths, ConfigError> {
        let dirs = directories::ProjectDirs::from("ai", "Zof", "zof-approvals");
        let data_dir = match data_dir {
            Some(d) => d,
            None => dirs.as_ref().ok_or(ConfigError::NoHome)?.data_dir().to_path_buf(),
        };
        let config_dir = match config_dir {
            Some(d) => d,
            None => dirs.as_ref().ok_or(ConfigError::NoHome)?.config_dir().to_path_buf(),
        };
        Ok(Paths { data_dir, config_dir })
    }

    pub fn settings_file(&self) -> PathBuf {
        self.config_dir.join(SETTINGS_FILE)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// "HH:MM", local time.
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationSettings {
    pub quiet_hours: Option<QuietHours>,
    /// A plan still pending this long is notified once more, with critical urgency.
    pub escalation_minutes: u32,
    /// More than this many plans within `coalesce_window_secs` share one summary notification.
    pub coalesce_threshold: u32,
    pub coalesce_window_secs: u32,
    pub show_panel_on_arrival: bool,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            quiet_hours: None,
            escalation_minutes: 30,
            coalesce_threshold: 3,
            coalesce_window_secs: 10,
            show_panel_on_arrival: true,
        }
    }
}

/// The team relay this computer follows (Settings → Team relay; `serve` without `--relay`).
/// Never a password: that is kept in the OS keychain (entry `nats-password`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySettings {
    /// `nats://host:4222` or `tls://host:4222`, several separated by commas; empty: no relay.
    pub url: String,
    /// A `.creds` file (JWT and NKey seed); empty: none.
    pub creds_file: String,
    /// A NATS user, whose password is in the keychain; empty: none.
    pub user: String,
    /// A CA certificate (PEM) to trust for the server's TLS; empty: the system's roots only.
    pub ca_file: String,
    pub stream: String,
    /// This computer's durable consumer; empty: `user@host`, made valid for NATS.
    pub consumer: String,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            url: String::new(),
            creds_file: String::new(),
            user: String::new(),
            ca_file: String::new(),
            stream: DEFAULT_STREAM.into(),
            consumer: String::new(),
        }
    }
}

impl RelaySettings {
    pub fn is_on(&self) -> bool {
        !self.url.trim().is_empty()
    }

    /// The same with surrounding spaces dropped (as typed in a form).
    pub fn trimmed(&self) -> RelaySettings {
        let t = |s: &String| s.trim().to_owned();
        RelaySettings {
            url: t(&self.url),
            creds_file: t(&self.creds_file),
            user: t(&self.user),
            ca_file: t(&self.ca_file),
            stream: t(&self.stream),
            consumer: t(&self.consumer),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| Err(ConfigError::Invalid { field, message: message.into() });
        if self.is_on() {
            for server in self.url.split(',').map(str::trim) {
                let rest = server.strip_prefix("nats://").or_else(|| server.strip_prefix("tls://"));
                let Some(rest) = rest else {
                    return invalid("relay.url", "each address must start with nats:// or tls://");
                };
                if rest.is_empty() || rest.starts_with(':') || rest.chars().any(char::is_whitespace) {
                    return invalid("relay.url", "each address needs a host, e.g. nats://nats.example.com:4222");
                }
                // A password in the URL would end up in the settings file.
                if rest.split('/').next().is_some_and(|authority| authority.contains('@')) {
                    return invalid(
                        "relay.url",
                        "put no user or password in the address: use the user field (the password is kept in the keychain)",
                    );
                }
            }
        }
        if !self.creds_file.trim().is_empty() && !self.user.trim().is_empty() {
            return invalid("relay.user", "use either a credentials file or a user and password, not both");
        }
        let stream = self.stream.trim();
        if stream.is_empty() || stream.chars().any(|c| matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace()) {
            return invalid("relay.stream", "a stream name without spaces, `.`, `*`, `>` or slashes (e.g. ZOF)");
        }
        if !self.consumer.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return invalid("relay.consumer", "letters, digits, `-` and `_` only (empty: user@host)");
        }
        Ok(())
    }
}

/// Everything a user can set. Unknown keys in the file are an error, so a typo is not silently ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    pub scheme: Scheme,
    /// Standard Webhooks: allowed distance of `webhook-timestamp` from now.
    pub tolerance_secs: u32,
    /// Organizations whose events are accepted; empty accepts any.
    pub allow_orgs: Vec<String>,
    pub max_body_bytes: usize,
    pub retention_days: u32,
    pub request_timeout_secs: u32,
    pub max_concurrent_requests: usize,
    /// Open connections to the receiver; at the cap a new one closes the one idle the longest.
    pub max_connections: usize,
    /// `{plan_id}`, `{run_id}` and `{organization_id}` are replaced.
    pub console_url_template: String,
    pub notifications: NotificationSettings,
    pub start_at_login: bool,
    /// How long the previous secret keeps verifying after a rotation.
    pub secret_overlap_hours: u32,
    /// A secret older than this is reported as due for rotation.
    pub rotation_reminder_days: u32,
    /// The Console API (e.g. `https://api.zof.ai`); empty: no Console connection.
    pub console_api_url: String,
    /// How often the queue is reconciled with the Console, in seconds (at least 30).
    pub reconcile_interval_secs: u32,
    /// Where Zof can reach this receiver (a tunnel or reverse proxy), for `console subscribe`;
    /// empty: none (poll-only: reconciliation alone keeps the queue right).
    pub public_url: String,
    /// The name this machine's actions are recorded under in the audit log and shown to
    /// teammates ("Handled by alice"); empty: the OS user and host (`alice@laptop-7`).
    pub display_name: String,
    /// The team relay to follow; no URL: none.
    pub relay: RelaySettings,
}

/// The shortest reconciliation interval: the Console is asked at most this often on a timer.
pub const MIN_RECONCILE_INTERVAL_SECS: u32 = 30;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            scheme: Scheme::Zof,
            tolerance_secs: 300,
            allow_orgs: Vec::new(),
            max_body_bytes: 1024 * 1024,
            retention_days: 30,
            request_timeout_secs: 10,
            max_concurrent_requests: 512,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            console_url_template: "https://console.zof.ai/approvals/{plan_id}?org={organization_id}&run={run_id}"
                .into(),
            notifications: NotificationSettings::default(),
            start_at_login: false,
            secret_overlap_hours: 24,
            rotation_reminder_days: 90,
            console_api_url: String::new(),
            reconcile_interval_secs: 300,
            public_url: String::new(),
            display_name: String::new(),
            relay: RelaySettings::default(),
        }
    }
}

impl Settings {
    /// Reads the settings file; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(source) => return Err(ConfigError::Read { path: path.into(), source }),
        };
        let settings: Settings = serde_json::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Writes atomically (temp file + rename) so a reader never sees half a file.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        self.validate()?;
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        write_atomically(path, text.as_bytes())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| Err(ConfigError::Invalid { field, message: message.into() });
        if self.max_body_bytes < 1024 || self.max_body_bytes > 64 * 1024 * 1024 {
            return invalid("max_body_bytes", "must be between 1 KiB and 64 MiB");
        }
        if self.retention_days == 0 {
            return invalid("retention_days", "must be at least 1 day");
        }
        if self.request_timeout_secs == 0 || self.request_timeout_secs > 10 {
            return invalid(
                "request_timeout_secs",
                "must be between 1 and 10 seconds (Zof waits 10 seconds for an answer)",
            );
        }
        if self.max_concurrent_requests == 0 {
            return invalid("max_concurrent_requests", "must be at least 1");
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if self.tolerance_secs == 0 {
            return invalid("tolerance_secs", "must be at least 1 second");
        }
        if self.allow_orgs.iter().any(|o| o.trim().is_empty() || o.trim() != o) {
            return invalid("allow_orgs", "organization ids must be non-empty, without surrounding spaces");
        }
        if !self.console_url_template.starts_with("https://") && !self.console_url_template.starts_with("http://") {
            return invalid("console_url_template", "must start with https:// or http://");
        }
        if let Some(q) = &self.notifications.quiet_hours {
            for (field, t) in [("quiet_hours.start", &q.start), ("quiet_hours.end", &q.end)] {
                if parse_hhmm(t).is_none() {
                    return invalid(field, "must be a time as HH:MM (00:00 to 23:59)");
                }
            }
        }
        if self.notifications.coalesce_threshold == 0 {
            return invalid("notifications.coalesce_threshold", "must be at least 1");
        }
        if !(1..=3600).contains(&self.notifications.coalesce_window_secs) {
            return invalid("notifications.coalesce_window_secs", "must be between 1 and 3600 seconds");
        }
        if self.notifications.escalation_minutes == 0 {
            return invalid("notifications.escalation_minutes", "must be at least 1 minute");
        }
        if self.reconcile_interval_secs < MIN_RECONCILE_INTERVAL_SECS {
            return invalid("reconcile_interval_secs", "must be at least 30 seconds");
        }
        if !self.console_api_url.is_empty() {
            check_console_api_url(&self.console_api_url)
                .map_err(|e| ConfigError::Invalid { field: "console_api_url", message: e.to_string() })?;
        }
        let web = |url: &str| url.starts_with("https://") || url.starts_with("http://");
        if !self.public_url.is_empty() && !web(&self.public_url) {
            return invalid("public_url", "must be empty or start with https:// or http://");
        }
        if self.display_name.len() > 128 || self.display_name.chars().any(char::is_control) {
            return invalid("display_name", "must be at most 128 characters, without control characters");
        }
        self.relay.validate()
    }

    pub fn allows_org(&self, org: &str) -> bool {
        self.allow_orgs.is_empty() || self.allow_orgs.iter().any(|o| o == org)
    }

    /// The Console link for a plan.
    pub fn console_url(&self, plan_id: &str, run_id: &str, organization_id: &str) -> String {
        self.console_url_template
            .replace("{plan_id}", &url_component(plan_id))
            .replace("{run_id}", &url_component(run_id))
            .replace("{organization_id}", &url_component(organization_id))
    }
}

/// "HH:MM" → minutes after midnight.
pub fn parse_hhmm(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn url_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Writes a file via a temporary sibling and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    let err = |source| ConfigError::Write { path: path.into(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_defaults_and_saved_settings_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        assert_eq!(Settings::load(&path).unwrap(), Settings::default());
        let mut s = Settings { allow_orgs: vec!["org_abc".into()], ..Settings::default() };
        s.notifications.quiet_hours = Some(QuietHours { start: "22:00".into(), end: "07:30".into() });
        s.save(&path).unwrap();
        assert_eq!(Settings::load(&path).unwrap(), s);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(&path, r#"{"listen":"127.0.0.1:1","lisen":"x"}"#).unwrap();
        assert!(Settings::load(&path).unwrap_err().to_string().contains("lisen"));
        std::fs::write(&path, r#"{"notifications":{"quiet_hours":{"start":"25:00","end":"07:00"}}}"#).unwrap();
        assert!(Settings::load(&path).unwrap_err().to_string().contains("quiet_hours.start"));
        std::fs::write(&path, r#"{"notifications":{"coalesce_window_secs":0}}"#).unwrap();
        assert!(Settings::load(&path).unwrap_err().to_string().contains("coalesce_window_secs"));
        std::fs::write(&path, r#"{"reconcile_interval_secs":10}"#).unwrap();
        assert!(Settings::load(&path).unwrap_err().to_string().contains("reconcile_interval_secs"));
        std::fs::write(&path, r#"{"max_connections":0}"#).unwrap();
        assert!(Settings::load(&path).unwrap_err().to_string().contains("max_connections"));
        std::fs::write(&path, r#"{"console_api_url":"ftp://x"}"#).unwrap();
        assert!(Settings::load(&path).unwrap_err().to_string().contains("console_api_url"));
    }

    #[test]
    fn relay_settings_are_optional_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(&path, r#"{"listen":"127.0.0.1:1"}"#).unwrap();
        assert_eq!(Settings::load(&path).unwrap().relay, RelaySettings::default(), "an older file loads");
        std::fs::write(&path, r#"{"relay":{"url":"tls://a:4222, nats://b:4222","user":"alice"}}"#).unwrap();
        let loaded = Settings::load(&path).unwrap();
        assert_eq!((loaded.relay.stream.as_str(), loaded.relay.user.as_str()), ("ZOF", "alice"));
        for (bad, field) in [
            (r#"{"relay":{"url":"http://a:4222"}}"#, "relay.url"),
            (r#"{"relay":{"url":"nats://alice:hunter2@a:4222"}}"#, "relay.url"),
            (r#"{"relay":{"url":"nats://a","creds_file":"/x.creds","user":"u"}}"#, "relay.user"),
            (r#"{"relay":{"stream":"Z.OF"}}"#, "relay.stream"),
            (r#"{"relay":{"consumer":"a@b"}}"#, "relay.consumer"),
            (r#"{"relay":{"password":"x"}}"#, "password"),
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = Settings::load(&path).unwrap_err().to_string();
            assert!(e.contains(field), "{bad}: {e}");
            assert!(!e.contains("hunter2"), "the error does not repeat a password: {e}");
        }
    }

    #[test]
    fn the_console_api_url_must_be_https_unless_it_is_this_computer() {
        let with = |url: &str| Settings { console_api_url: url.into(), ..Settings::default() }.validate();
        for ok in ["", "https://api.zof.ai", "http://127.0.0.1:8080", "http://localhost:3000", "http://[::1]:9000"] {
            assert!(with(ok).is_ok(), "{ok}");
        }
        let e = with("http://api.zof.ai").unwrap_err().to_string();
        assert!(e.contains("console_api_url") && e.contains("https://"), "{e}");
    }

    #[test]
    fn console_url_escapes_ids() {
        let s = Settings {
            console_url_template: "https://c.example/{organization_id}/p/{plan_id}".into(),
            ..Settings::default()
        };
        assert_eq!(s.console_url("plan 1/x", "r", "org_a"), "https://c.example/org_a/p/plan%201%2Fx");
    }

    #[test]
    fn hhmm_parses_only_valid_times() {
        assert_eq!(parse_hhmm("07:30"), Some(450));
        for bad in ["7:30", "24:00", "12:60", "ab:cd", ""] {
            assert_eq!(parse_hhmm(bad), None, "{bad}");
        }
    }
}
