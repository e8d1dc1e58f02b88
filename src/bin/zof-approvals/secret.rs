//! `zof-approvals secret`: the webhook secrets in the OS keychain (status, set, generate,
//! revoke-previous). Secrets are read from a hidden prompt or stdin, never from arguments, and
//! are printed only by `generate`, once. Set, generate and revoke-previous are recorded in the
//! audit log by fingerprint (source `cli`): through a running receiver's control socket, else in
//! the store; a log that cannot be written is reported on stderr and does not undo the change.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;
use zof_approvals::audit::{local_name, Actor, AuditAction, AuditEntry, Source};
use zof_approvals::config::{Paths, Settings};
use zof_approvals::secrets::{Keychain, SecretManager, SecretRole, SecretStore, SecretsReport};
use zof_approvals::verify::Secret;

use crate::LocationArgs;

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Show fingerprints, ages, expiries and last matches (never the secrets).
    Status {
        #[command(flatten)]
        location: LocationArgs,
        #[arg(long)]
        json: bool,
    },
    /// Make a new secret current, read from stdin or a hidden prompt (never from arguments).
    Set {
        #[command(flatten)]
        location: LocationArgs,
        /// How long the previous secret keeps verifying, e.g. 24h, 90m, 30s; 0 revokes it now.
        /// Default: `secret_overlap_hours` from settings (24h).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        overlap: Option<chrono::Duration>,
    },
    /// Generate a strong secret, make it current and print it once, to paste into Admin Center.
    Generate {
        #[command(flatten)]
        location: LocationArgs,
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        overlap: Option<chrono::Duration>,
    },
    /// End the overlap now: previous secrets stop verifying and leave the keychain.
    RevokePrevious {
        #[command(flatten)]
        location: LocationArgs,
    },
}

/// `0`, `30s`, `90m`, `24h`, `7d`.
pub(crate) fn parse_duration(s: &str) -> Result<chrono::Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(chrono::Duration::zero());
    }
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = number.parse().map_err(|_| format!("`{s}` is not a duration like 24h, 90m or 30s"))?;
    match unit {
        "s" => Ok(chrono::Duration::seconds(n)),
        "m" => Ok(chrono::Duration::minutes(n)),
        "h" => Ok(chrono::Duration::hours(n)),
        "d" => Ok(chrono::Duration::days(n)),
        _ => Err(format!("`{s}` is not a duration like 24h, 90m or 30s")),
    }
}

pub fn secret_command(command: SecretCommand) -> anyhow::Result<ExitCode> {
    let manager = |location: LocationArgs| -> anyhow::Result<(SecretManager, Settings, Paths)> {
        let paths = Paths::resolve(location.data_dir, location.config_dir)?;
        let settings = Settings::load(&paths.settings_file())?;
        let store: Arc<dyn SecretStore> = Arc::new(Keychain::default());
        Ok((SecretManager::new(store, &paths.config_dir, settings.rotation_reminder_days), settings, paths))
    };
    let overlap_or_default = |given: Option<chrono::Duration>, settings: &Settings| {
        given.unwrap_or_else(|| chrono::Duration::hours(i64::from(settings.secret_overlap_hours)))
    };
    let mut out = std::io::stdout().lock();
    match command {
        SecretCommand::Status { location, json } => {
            let (m, _, _) = manager(location)?;
            let report = m.report(Utc::now(), true)?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&report)?)?;
            } else {
                print_secret_report(&mut out, &report)?;
            }
            return Ok(if report.keychain.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        SecretCommand::Set { location, overlap } => {
            let (m, settings, paths) = manager(location)?;
            let secret = Secret::new(&read_secret_input()?)?;
            let overlap = overlap_or_default(overlap, &settings);
            let meta = m.rotate_to(&secret, overlap, Utc::now())?;
            writeln!(out, "the current webhook secret is now {} (stored in the OS keychain)", meta.fingerprint)?;
            let change =
                SecretChange { action: AuditAction::SecretSet, fingerprints: vec![meta.fingerprint.0.clone()] };
            record(&paths, &settings, &change, Some(overlap));
        }
        SecretCommand::Generate { location, overlap } => {
            let (m, settings, paths) = manager(location)?;
            let overlap = overlap_or_default(overlap, &settings);
            let secret = m.generate(overlap, Utc::now())?;
            eprintln!("New webhook secret {} (stored in the OS keychain). Paste it into Zof Admin Center now; it is shown only once:", secret.fingerprint());
            writeln!(out, "{}", secret.expose())?;
            out.flush()?;
            let change =
                SecretChange { action: AuditAction::SecretGenerated, fingerprints: vec![secret.fingerprint().0] };
            record(&paths, &settings, &change, Some(overlap));
        }
        SecretCommand::RevokePrevious { location } => {
            let (m, settings, paths) = manager(location)?;
            let revoked = m.revoke_previous()?;
            for fp in &revoked {
                writeln!(out, "revoked {fp}: it no longer verifies deliveries and left the keychain")?;
            }
            if !revoked.is_empty() {
                let fingerprints = revoked.into_iter().map(|f| f.0).collect();
                record(&paths, &settings, &SecretChange { action: AuditAction::SecretRevoked, fingerprints }, None);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A change of the secrets, for the audit log: fingerprints only.
struct SecretChange {
    action: AuditAction,
    fingerprints: Vec<String>,
}

/// Records `change` in the audit log (source `cli`): through the receiver that holds the store,
/// else in the store itself. Runs on a blocking thread of the runtime. The secret is already
/// changed, so a log that cannot be written is said on stderr, not turned into a failure.
fn record(paths: &Paths, settings: &Settings, change: &SecretChange, overlap: Option<chrono::Duration>) {
    // Whole hours, rounded up: the row says at least how long the previous secret keeps verifying.
    let overlap_hours = overlap.map(|d| u32::try_from((d.num_seconds().max(0) + 3599) / 3600).unwrap_or(u32::MAX));
    if let Err(e) = record_change(paths, settings, change, overlap_hours) {
        eprintln!("note: the secret change was not recorded in the audit log: {e:#}");
    }
}

fn record_change(
    paths: &Paths,
    settings: &Settings,
    change: &SecretChange,
    overlap_hours: Option<u32>,
) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use zof_approvals::console::control::{self, Op, Request};
        let request = Request {
            action: Some(change.action),
            fingerprints: Some(change.fingerprints.clone()),
            overlap_hours,
            ..Request::new(Op::SecretChanged)
        };
        let asked = tokio::runtime::Handle::current().block_on(control::send(&paths.data_dir, &request))?;
        if let Some(answer) = asked {
            return match answer.ok {
                true => Ok(()),
                false => Err(anyhow::anyhow!(answer.error.unwrap_or_else(|| "the receiver refused it".into()))),
            };
        }
    }
    let actor = Actor::new(local_name(&settings.display_name), Source::Cli);
    let row = AuditEntry::secret_change(&actor, change.action, &change.fingerprints, overlap_hours);
    let store = crate::actions::open_store(&paths.data_dir)?;
    store.append_audit(&row)?;
    store.flush_blocking()?;
    Ok(())
}

/// The new secret, from a hidden prompt on a terminal or else from standard input.
fn read_secret_input() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        Ok(rpassword::prompt_password("Paste the webhook secret from Zof Admin Center (input hidden): ")?)
    } else {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read the secret from standard input")?;
        Ok(text)
    }
}

fn print_secret_report(out: &mut impl Write, report: &SecretsReport) -> anyhow::Result<()> {
    if let Some(why) = &report.keychain.message {
        writeln!(out, "keychain: {why}")?;
    }
    if report.secrets.is_empty() {
        writeln!(out, "no webhook secret is configured: run `zof-approvals secret set` and paste the secret from Zof Admin Center")?;
        return Ok(());
    }
    for s in &report.secrets {
        let role = match s.role {
            SecretRole::Current => "current ",
            SecretRole::Previous => "previous",
        };
        let expires = s
            .expires_at
            .map(|t| format!("expires {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
            .unwrap_or_default();
        let last = s
            .last_matched_at
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "never".into());
        writeln!(
            out,
            "{role}  {}  {} days old  last match {last} ({} matches)  {expires}",
            s.fingerprint, s.age_days, s.matches
        )?;
        if s.missing {
            writeln!(out, "          missing from the keychain: deliveries signed with it are refused")?;
        }
        if s.due_for_rotation {
            writeln!(
                out,
                "          due for rotation: create a new secret in Zof Admin Center, then `zof-approvals secret set`"
            )?;
        }
    }
    Ok(())
}
