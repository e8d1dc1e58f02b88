//! Settings → About: which build this is and where its files live, and the diagnostics a user
//! copies into a support request. The diagnostics are built here, from counts, states and
//! fingerprints only: never a secret, a body, or a refusal's detail text (which may quote a
//! body), so pasting them anywhere is safe.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::config::{Paths, Settings};
use crate::refusals::RefusalSummary;
use crate::secrets::SecretsReport;

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit it was built from (`build.rs`), or "unknown".
pub const COMMIT: &str = match option_env!("ZOF_GIT_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};
/// The build profile.
pub const PROFILE: &str = if cfg!(debug_assertions) { "debug" } else { "release" };

/// What Settings → About shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct About {
    pub version: String,
    pub commit: String,
    pub profile: String,
    /// Operating system and architecture, e.g. `linux x86_64`.
    pub os: String,
    pub data_dir: String,
    pub config_dir: String,
    pub log_dir: String,
}

impl About {
    pub fn new(paths: &Paths, log_dir: &Path) -> About {
        About {
            version: VERSION.into(),
            commit: COMMIT.into(),
            profile: PROFILE.into(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            data_dir: paths.data_dir.display().to_string(),
            config_dir: paths.config_dir.display().to_string(),
            log_dir: log_dir.display().to_string(),
        }
    }
}

/// How many records of each kind the store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub events: usize,
    pub pending: usize,
    pub snoozed: usize,
    pub handled: usize,
    /// Decided in the Console.
    pub resolved: usize,
    pub outbox: usize,
    pub quarantined: usize,
}

/// Where the receiver's secrets come from, as far as the diagnostics tell.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretsFacts {
    /// The keychain: fingerprints, ages and matches (never the secrets).
    Managed(SecretsReport),
    /// An environment variable or a fixed set: nothing to report but that.
    External,
    /// The report could not be read.
    Unreadable(String),
}

/// Everything the diagnostics say besides [`About`], gathered by the panel.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosticFacts {
    pub now: DateTime<Utc>,
    pub webhook_url: String,
    pub settings: Settings,
    pub store: StoreCounts,
    pub secrets: SecretsFacts,
    /// Problems the app knows of now: why the receiver is not ready, why notifications fail,
    /// why the store is down.
    pub problems: Vec<String>,
    /// Refusals per code; only codes, statuses, counts and times are written.
    pub refusals: Vec<RefusalSummary>,
}

/// The diagnostics as plain text, one `key: value` a line, in sections.
pub fn diagnostics_text(about: &About, facts: &DiagnosticFacts) -> String {
    let mut out = String::new();
    let s = &facts.settings;
    let _ = writeln!(out, "Zof Approvals diagnostics, {}", facts.now.to_rfc3339_opts(SecondsFormat::Secs, true));
    let _ = writeln!(out, "version: {} ({}, {})", about.version, about.commit, about.profile);
    let _ = writeln!(out, "os: {}", about.os);
    let _ = writeln!(out, "data folder: {}", about.data_dir);
    let _ = writeln!(out, "config folder: {}", about.config_dir);
    let _ = writeln!(out, "log folder: {}", about.log_dir);
    let _ = writeln!(out, "\n[receiver]\nwebhook url: {}", facts.webhook_url);
    let _ = writeln!(out, "\n[settings]");
    let _ = writeln!(out, "listen: {}\nscheme: {:?}\ntolerance_secs: {}", s.listen, s.scheme, s.tolerance_secs);
    let _ =
        writeln!(out, "allow_orgs: {}", if s.allow_orgs.is_empty() { "(any)".into() } else { s.allow_orgs.join(", ") });
    let _ = writeln!(out, "max_body_bytes: {}\nretention_days: {}", s.max_body_bytes, s.retention_days);
    let _ = writeln!(out, "request_timeout_secs: {}", s.request_timeout_secs);
    let _ = writeln!(out, "max_concurrent_requests: {}", s.max_concurrent_requests);
    let _ = writeln!(out, "console_url_template: {}", s.console_url_template);
    let n = &s.notifications;
    let quiet = n.quiet_hours.as_ref().map_or_else(|| "none".into(), |q| format!("{}-{}", q.start, q.end));
    let _ = writeln!(out, "quiet_hours: {quiet}\nescalation_minutes: {}", n.escalation_minutes);
    let _ = writeln!(out, "coalesce: {} within {} s", n.coalesce_threshold, n.coalesce_window_secs);
    let _ = writeln!(out, "show_panel_on_arrival: {}\nstart_at_login: {}", n.show_panel_on_arrival, s.start_at_login);
    let _ = writeln!(out, "secret_overlap_hours: {}", s.secret_overlap_hours);
    let _ = writeln!(out, "rotation_reminder_days: {}", s.rotation_reminder_days);
    let c = &facts.store;
    let _ = writeln!(out, "\n[store]\nevents: {}\nplans pending: {}", c.events, c.pending);
    let _ = writeln!(
        out,
        "plans snoozed: {}\nplans handled: {}\nplans resolved in the Console: {}",
        c.snoozed, c.handled, c.resolved
    );
    let _ = writeln!(out, "outbox: {}\nquarantined: {}", c.outbox, c.quarantined);
    write_secrets(&mut out, &facts.secrets);
    let _ = writeln!(out, "\n[refusals]");
    if facts.refusals.is_empty() {
        let _ = writeln!(out, "none");
    }
    for r in &facts.refusals {
        let last = r.last_at.map_or_else(|| "never".into(), |t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
        let _ = writeln!(
            out,
            "{} ({}): {} in the last hour, {} in 24 h, {} in all; last {last}",
            r.code, r.status, r.last_hour, r.last_24h, r.total
        );
    }
    let _ = writeln!(out, "\n[problems]");
    if facts.problems.is_empty() {
        let _ = writeln!(out, "none");
    }
    for p in &facts.problems {
        let _ = writeln!(out, "- {p}");
    }
    out
}

fn write_secrets(out: &mut String, secrets: &SecretsFacts) {
    let _ = writeln!(out, "\n[secrets]");
    match secrets {
        SecretsFacts::External => {
            let _ = writeln!(out, "source: an environment variable (not managed by the app)");
        }
        SecretsFacts::Unreadable(why) => {
            let _ = writeln!(out, "status: unreadable ({why})");
        }
        SecretsFacts::Managed(report) => {
            let keychain = match (&report.keychain.ok, &report.keychain.message) {
                (true, None) => "ok".to_owned(),
                (true, Some(m)) => format!("ok ({m})"),
                (false, m) => format!("unavailable ({})", m.as_deref().unwrap_or("no detail")),
            };
            let _ = writeln!(out, "keychain: {keychain}");
            if report.secrets.is_empty() {
                let _ = writeln!(out, "none set");
            }
            for s in &report.secrets {
                let _ = writeln!(
                    out,
                    "{:?} {}: {} days old, {} matches{}{}",
                    s.role,
                    s.fingerprint,
                    s.age_days,
                    s.matches,
                    if s.due_for_rotation { ", due for rotation" } else { "" },
                    if s.missing { ", missing from the keychain" } else { "" },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::app::{AppConfig, Application, SecretSource};
    use crate::events::CoreEvent;
    use crate::outbox::LogNotifier;
    use crate::secrets::MemoryStore;
    use crate::verify::sign_zof;

    const BODY_MARKER: &str = "body-field-value-5be0c9d1";

    fn about() -> About {
        let paths = Paths { data_dir: "/d".into(), config_dir: "/c".into() };
        About::new(&paths, Path::new("/l"))
    }

    #[test]
    fn about_names_the_version_the_build_and_the_folders() {
        let a = about();
        assert_eq!(a.version, env!("CARGO_PKG_VERSION"));
        assert!(!a.commit.is_empty());
        assert_eq!(a.profile, "debug", "tests build with debug assertions");
        assert_eq!((a.data_dir.as_str(), a.config_dir.as_str(), a.log_dir.as_str()), ("/d", "/c", "/l"));
    }

    async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>, signature: Option<String>) -> u16 {
        let mut req = client.post(url).body(body);
        if let Some(sig) = signature {
            req = req.header("X-Zof-Signature", sig);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// A real receiver with a generated secret, an accepted and a refused delivery: the text
    /// carries the fingerprint and the counts, never the secret or anything from a body.
    #[tokio::test]
    async fn diagnostics_carry_counts_and_fingerprints_but_no_secret_and_no_body() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths { data_dir: dir.path().join("data"), config_dir: dir.path().join("config") };
        let settings = Settings { listen: "127.0.0.1:0".parse().unwrap(), ..Settings::default() };
        let secrets = SecretSource::Store(Arc::new(MemoryStore::default()));
        let app = Application::build(AppConfig { paths, settings, secrets }, Arc::new(LogNotifier)).await.unwrap();
        let (panel, url) = (app.panel(), app.webhook_url());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let (secret, report) = panel.generate_secret(24).await.unwrap();
        let mut events = panel.subscribe();
        let body = serde_json::json!({
            "id": "evt_diag_1", "type": "remediation.plan_pending", "created": Utc::now().to_rfc3339(),
            "note": BODY_MARKER,
            "data": {"object": {"id": "plan_diag", "organization_id": "org_abc", "run_id": "run_1"}}
        })
        .to_string();
        let client = reqwest::Client::new();
        let signature = sign_zof(&secret, body.as_bytes());
        assert_eq!(post(&client, &url, body.clone().into_bytes(), Some(signature)).await, 200);
        // The plan is made pending after the acknowledgement, by the outbox worker.
        let settled = async { while !matches!(events.recv().await, Ok(CoreEvent::PlanChanged { .. })) {} };
        tokio::time::timeout(std::time::Duration::from_secs(10), settled).await.unwrap();
        let malformed = format!(r#"{{"id":"evt_diag_2","note":"{BODY_MARKER}""#);
        let signature = sign_zof(&secret, malformed.as_bytes());
        assert_eq!(post(&client, &url, malformed.clone().into_bytes(), Some(signature)).await, 400);

        let text = panel.diagnostics(dir.path().join("logs")).await.unwrap();
        let _ = stop.send(());
        running.await.unwrap().unwrap();
        for leak in [secret.expose(), BODY_MARKER, body.as_str(), malformed.as_str()] {
            assert!(!text.contains(leak), "{leak:?} is in the diagnostics:\n{text}");
        }
        let fingerprint = report.secrets[0].fingerprint.to_string();
        for fact in [VERSION, fingerprint.as_str(), "events: 1", "plans pending: 1", "malformed_event (400)"] {
            assert!(text.contains(fact), "{fact:?} is missing from the diagnostics:\n{text}");
        }
    }
}
