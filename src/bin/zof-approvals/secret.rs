//! `zof-approvals secret`: the webhook secrets in the OS keychain (status, set, generate,
//! revoke-previous). Secrets are read from a hidden prompt or stdin, never from arguments, and
//! are printed only by `generate`, once.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;
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
fn parse_duration(s: &str) -> Result<chrono::Duration, String> {
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
    let manager = |location: LocationArgs| -> anyhow::Result<(SecretManager, Settings)> {
        let paths = Paths::resolve(location.data_dir, location.config_dir)?;
        let settings = Settings::load(&paths.settings_file())?;
        let store: Arc<dyn SecretStore> = Arc::new(Keychain::default());
        Ok((SecretManager::new(store, &paths.config_dir, settings.rotation_reminder_days), settings))
    };
    let overlap_or_default = |given: Option<chrono::Duration>, settings: &Settings| {
        given.unwrap_or_else(|| chrono::Duration::hours(i64::from(settings.secret_overlap_hours)))
    };
    let mut out = std::io::stdout().lock();
    match command {
        SecretCommand::Status { location, json } => {
            let (m, _) = manager(location)?;
            let report = m.report(Utc::now(), true)?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&report)?)?;
            } else {
                print_secret_report(&mut out, &report)?;
            }
            return Ok(if report.keychain.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        SecretCommand::Set { location, overlap } => {
            let (m, settings) = manager(location)?;
            let secret = Secret::new(&read_secret_input()?)?;
            let meta = m.rotate_to(&secret, overlap_or_default(overlap, &settings), Utc::now())?;
            writeln!(out, "the current webhook secret is now {} (stored in the OS keychain)", meta.fingerprint)?;
        }
        SecretCommand::Generate { location, overlap } => {
            let (m, settings) = manager(location)?;
            let secret = m.generate(overlap_or_default(overlap, &settings), Utc::now())?;
            eprintln!("New webhook secret {} (stored in the OS keychain). Paste it into Zof Admin Center now; it is shown only once:", secret.fingerprint());
            writeln!(out, "{}", secret.expose())?;
        }
        SecretCommand::RevokePrevious { location } => {
            let (m, _) = manager(location)?;
            for fp in m.revoke_previous()? {
                writeln!(out, "revoked {fp}: it no longer verifies deliveries and left the keychain")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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
