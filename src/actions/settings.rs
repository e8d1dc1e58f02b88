//! Settings and the mute switch. [`Actions::save_settings`] is the only code that writes the
//! settings file: the panel, the CLI (a Console subscription's public URL) and the desktop's
//! fallback when the receiver could not start all reach it, so a running receiver never
//! overwrites a change from its older copy.

use chrono::{DateTime, Duration, Utc};

use super::{ActionError, Actions};
use crate::config::{ConfigError, Paths, Settings};
use crate::domain::audit::{changed_keys, Actor, AuditAction, AuditEntry, Source};
use crate::intake::IntakePolicy;
use crate::store::Store;

/// Where [`Actions::mute`] keeps the pause.
const MUTE_KEY: &str = "muted_until";

impl Actions {
    /// Validates and saves `next`, records which keys changed, and applies it to a running
    /// receiver's intake and notifier. Returns the settings before the change.
    pub async fn save_settings(&self, next: Settings, source: Source) -> Result<Settings, ActionError> {
        let before = self.settings();
        write_file(&self.paths, next.clone()).await?;
        let rows = settings_rows(&self.actor(source), &before, &next);
        *self.settings.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next.clone();
        if let Some(running) = &self.running {
            running.intake.set_policy(IntakePolicy::from_settings(&next));
            running.notifier.set_preferences(&next.notifications);
            // New quiet hours or escalation delay move the outbox worker's next wake.
            running.intake.kick_outbox();
        }
        self.record(rows).await?;
        self.status_changed();
        Ok(before)
    }

    /// Pauses notifications for `minutes` (0 resumes them), from `source`; the pause is kept
    /// in the store, so it survives a restart ([`stored_mute`] reads it back at start).
    pub async fn mute(&self, minutes: u32, source: Source) -> Result<(), ActionError> {
        let until = (minutes > 0).then(|| Utc::now() + Duration::minutes(i64::from(minutes)));
        let detail = match until {
            Some(t) => format!("paused until {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            None => "resumed".to_owned(),
        };
        let row = AuditEntry::new(&self.actor(source), AuditAction::MuteChanged, None, detail);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.set_meta(MUTE_KEY, &until)?;
            store.append_audit(&row)
        })
        .await??;
        self.store.durable().await?;
        if let Some(running) = &self.running {
            running.notifier.mute_until(until);
            // Held notices go out when the pause ends: the outbox worker learns when.
            running.intake.kick_outbox();
        }
        self.status_changed();
        Ok(())
    }
}

/// Saves settings where no receiver runs and no store can be opened (the desktop's fallback
/// when the receiver could not start): the same writer, without an audit row, which the
/// receiver that starts next cannot have.
pub async fn save_settings_without_receiver(paths: &Paths, next: Settings) -> Result<(), ConfigError> {
    write_file(paths, next).await
}

async fn write_file(paths: &Paths, next: Settings) -> Result<(), ConfigError> {
    let path = paths.settings_file();
    tokio::task::spawn_blocking(move || next.save(&path))
        .await
        .map_err(|e| ConfigError::Write { path: paths.settings_file(), source: std::io::Error::other(e) })?
}

/// Settings saved: which keys changed (quiet hours get a row of their own), never values
/// beyond the quiet hours' times.
fn settings_rows(actor: &Actor, before: &Settings, after: &Settings) -> Vec<AuditEntry> {
    let as_json = |s: &Settings| serde_json::to_value(s).unwrap_or(serde_json::Value::Null);
    let mut keys = changed_keys(&as_json(before), &as_json(after));
    let quiet = "notifications.quiet_hours";
    let quiet_changed = keys.iter().any(|k| k.starts_with(quiet));
    keys.retain(|k| !k.starts_with(quiet));
    let mut rows = Vec::new();
    if quiet_changed {
        let detail = match &after.notifications.quiet_hours {
            Some(q) => format!("{}–{}", q.start, q.end),
            None => "off".to_owned(),
        };
        rows.push(AuditEntry::new(actor, AuditAction::QuietHoursChanged, None, detail));
    }
    if !keys.is_empty() {
        rows.push(AuditEntry::new(actor, AuditAction::SettingsChanged, None, keys.join(", ")));
    }
    rows
}

/// The pause [`Actions::mute`] kept, for the application to hand to the notifier at start.
pub fn stored_mute(store: &Store) -> Option<DateTime<Utc>> {
    match store.meta::<Option<DateTime<Utc>>>(MUTE_KEY) {
        Ok(until) => until.flatten(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the mute switch; notifications are not paused");
            None
        }
    }
}
