//! `zof-approvals secret`: the webhook secrets in the OS keychain (status, set, generate,
//! revoke-previous). Secrets are read from a hidden prompt or stdin, never from arguments, and
//! are printed only by `generate`, once. Set, generate and revoke-previous are made by the one
//! owner of secret changes: in a running receiver (through its control socket, so the new set is
//! in force at once), else on the store opened here; either way recorded once in the audit log,
//! by fingerprint, source `cli`.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;
use zof_approvals::actions::{ActionError, Actions};
use zof_approvals::config::{Paths, Settings};
use zof_approvals::control::{Op, Request, SecretText};
use zof_approvals::domain::audit::Source;
use zof_approvals::secrets::{Keychain, SecretManager, SecretRole, SecretStore, SecretsReport};
use zof_approvals::verify::Secret;

use crate::args::parse_duration;
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

pub async fn secret_command(command: SecretCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        SecretCommand::Status { location, json } => {
            let paths = Paths::resolve(location.data_dir, location.config_dir)?;
            let report = tokio::task::spawn_blocking(move || -> anyhow::Result<SecretsReport> {
                let settings = Settings::load(&paths.settings_file())?;
                let keychain: Arc<dyn SecretStore> = Arc::new(Keychain::default());
                let m = SecretManager::new(keychain, &paths.config_dir, settings.rotation_reminder_days);
                Ok(m.report(Utc::now(), true)?)
            })
            .await??;
            if json {
                writeln!(out, "{}", serde_json::to_string(&report)?)?;
            } else {
                print_secret_report(&mut out, &report)?;
            }
            return Ok(if report.keychain.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        SecretCommand::Set { location, overlap } => {
            let text = tokio::task::spawn_blocking(read_secret_input).await??;
            let secret = Secret::new(&text)?;
            let request = Request {
                secret: Some(SecretText(zeroize::Zeroizing::new(secret.expose().to_owned()))),
                overlap_secs: overlap.map(|d| d.num_seconds()),
                ..Request::new(Op::SecretSet)
            };
            let fingerprint = secret.fingerprint();
            change(
                location,
                request,
                move |actions, overlap| async move {
                    actions.set_secret(secret, overlap, Source::Cli).await.map(|_| Changed::default())
                },
                overlap,
            )
            .await?;
            writeln!(out, "the current webhook secret is now {fingerprint} (stored in the OS keychain)")?;
        }
        SecretCommand::Generate { location, overlap } => {
            let request =
                Request { overlap_secs: overlap.map(|d| d.num_seconds()), ..Request::new(Op::SecretGenerate) };
            let changed = change(
                location,
                request,
                |actions, overlap| async move {
                    let (secret, _) = actions.generate_secret(overlap, Source::Cli).await?;
                    Ok(Changed { secret: Some(secret.expose().to_owned()), ..Changed::default() })
                },
                overlap,
            )
            .await?;
            let secret = Secret::new(&changed.secret.unwrap_or_default())?;
            eprintln!("New webhook secret {} (stored in the OS keychain). Paste it into Zof Admin Center now; it is shown only once:", secret.fingerprint());
            writeln!(out, "{}", secret.expose())?;
            out.flush()?;
        }
        SecretCommand::RevokePrevious { location } => {
            let changed = change(
                location,
                Request::new(Op::SecretRevokePrevious),
                |actions, _| async move {
                    let (revoked, _) = actions.revoke_previous_secret(Source::Cli).await?;
                    Ok(Changed { revoked: revoked.into_iter().map(|f| f.0).collect(), ..Changed::default() })
                },
                None,
            )
            .await?;
            for fp in &changed.revoked {
                writeln!(out, "revoked {fp}: it no longer verifies deliveries and left the keychain")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a secret change gave back: a generated secret (shown once), revoked fingerprints.
#[derive(Default)]
struct Changed {
    secret: Option<String>,
    revoked: Vec<String>,
}

/// Makes a secret change where it belongs: in the receiver that holds the data directory
/// (through its control socket: it changes the keychain, puts the new set in force and records
/// it once), else here, through the same owner on the store opened here.
async fn change<F, Fut>(
    location: LocationArgs,
    request: Request,
    here: F,
    overlap: Option<chrono::Duration>,
) -> anyhow::Result<Changed>
where
    F: FnOnce(Actions, chrono::Duration) -> Fut,
    Fut: std::future::Future<Output = Result<Changed, ActionError>>,
{
    let paths = Paths::resolve(location.data_dir, location.config_dir)?;
    #[cfg(unix)]
    if let Some(answer) = zof_approvals::control::send(&paths.data_dir, &request).await? {
        if !answer.ok {
            anyhow::bail!(answer.error.unwrap_or_else(|| "the receiver refused it".into()));
        }
        return Ok(Changed {
            secret: answer.secret.map(|s| s.0.to_string()),
            revoked: answer.revoked.unwrap_or_default(),
        });
    }
    #[cfg(not(unix))]
    let _ = request;
    let actions = crate::offline::actions(paths).await?;
    let overlap =
        overlap.unwrap_or_else(|| chrono::Duration::hours(i64::from(actions.settings().secret_overlap_hours)));
    Ok(here(actions, overlap).await?)
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
