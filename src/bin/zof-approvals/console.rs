//! `zof-approvals console`: the optional Console connection. `login` keeps the API token in the
//! OS keychain (read from a hidden prompt or stdin, never from arguments, shown only by
//! fingerprint); `status` says whether the Console answers and takes the token; `reconcile`
//! brings the queue in line with the Console (through a running receiver's control socket when
//! one holds the store); `subscribe` creates the Console webhook for a public URL and puts its
//! secret straight into the keychain.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use zof_approvals::config::{Paths, Settings};
use zof_approvals::console::{
    self, ConnectionState, ConsoleClient, ConsoleError, ConsoleToken, ReconcileReport, RetryPolicy,
};
use zof_approvals::domain::audit::Source;
use zof_approvals::secrets::Keychain;
use zof_approvals::store::{Store, StoreError};

use crate::LocationArgs;

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Keep the Console API token in the OS keychain (read from a hidden prompt or stdin).
    Login {
        #[command(flatten)]
        conn: ConnectionArgs,
    },
    /// Whether the Console answers and accepts the token (never shows the token).
    Status {
        #[command(flatten)]
        conn: ConnectionArgs,
        #[arg(long)]
        json: bool,
    },
    /// Reconcile the queue with the Console now.
    Reconcile {
        #[command(flatten)]
        conn: ConnectionArgs,
        #[arg(long)]
        json: bool,
    },
    /// Create the Console webhook for this receiver's public URL; its secret goes to the keychain.
    Subscribe {
        #[command(flatten)]
        conn: ConnectionArgs,
        /// Where Zof can reach this receiver (e.g. a tunnel), with or without `/webhooks/zof`.
        #[arg(long, value_name = "URL")]
        url: String,
    },
}

#[derive(Debug, Args)]
pub struct ConnectionArgs {
    #[command(flatten)]
    location: LocationArgs,
    /// The Console API (default: `console_api_url` from settings).
    #[arg(long, value_name = "URL")]
    console_url: Option<String>,
    /// Read the Console API token from this environment variable instead of the keychain.
    #[arg(long, value_name = "VAR")]
    console_token_env: Option<String>,
}

/// What the connection arguments and the settings resolve to.
pub(crate) struct Resolved {
    pub(crate) paths: Paths,
    pub(crate) settings: Settings,
}

impl ConnectionArgs {
    pub(crate) fn resolve(self) -> anyhow::Result<(Resolved, Option<String>)> {
        let paths = Paths::resolve(self.location.data_dir, self.location.config_dir)?;
        let mut settings = Settings::load(&paths.settings_file())?;
        if let Some(url) = self.console_url {
            settings.console_api_url = url;
        }
        settings.validate()?;
        Ok((Resolved { paths, settings }, self.console_token_env))
    }
}

/// The token from the named variable, else the keychain. Blocking.
fn token(env: Option<&str>) -> Result<ConsoleToken, ConsoleError> {
    match env {
        Some(var) => Ok(ConsoleToken::from_env(var)?),
        None => ConsoleToken::load(&Keychain::default())?.ok_or(ConsoleError::NoToken),
    }
}

pub(crate) async fn client(
    r: &Resolved,
    env: Option<String>,
    retry: RetryPolicy,
) -> Result<ConsoleClient, ConsoleError> {
    if r.settings.console_api_url.is_empty() {
        return Err(ConsoleError::NotConfigured);
    }
    let token = tokio::task::spawn_blocking(move || token(env.as_deref()))
        .await
        .map_err(|e| ConsoleError::Internal(e.to_string()))??;
    ConsoleClient::new(&r.settings.console_api_url, token, retry)
}

pub async fn console_command(command: ConsoleCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConsoleCommand::Login { conn } => login(conn).await,
        ConsoleCommand::Status { conn, json } => status(conn, json).await,
        ConsoleCommand::Reconcile { conn, json } => reconcile(conn, json).await,
        ConsoleCommand::Subscribe { conn, url } => subscribe(conn, &url).await,
    }
}

async fn login(conn: ConnectionArgs) -> anyhow::Result<ExitCode> {
    let (_, env) = conn.resolve()?;
    let fingerprint = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let token = match env {
            Some(var) => ConsoleToken::from_env(&var)?,
            None => ConsoleToken::new(&read_token_input()?)?,
        };
        token.save(&Keychain::default())?;
        Ok(token.fingerprint())
    })
    .await??;
    println!("the Console API token {fingerprint} is stored in the OS keychain");
    Ok(ExitCode::SUCCESS)
}

/// The token, from a hidden prompt on a terminal or else from standard input.
fn read_token_input() -> anyhow::Result<zeroize::Zeroizing<String>> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        Ok(zeroize::Zeroizing::new(rpassword::prompt_password("Paste the Console API token (input hidden): ")?))
    } else {
        let mut text = zeroize::Zeroizing::new(String::new());
        std::io::stdin().read_to_string(&mut text).context("cannot read the token from standard input")?;
        Ok(text)
    }
}

async fn status(conn: ConnectionArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (r, env) = conn.resolve()?;
    #[cfg(unix)]
    if let Some(answer) = zof_approvals::control::ask(&r.paths.data_dir, zof_approvals::control::Op::Status).await? {
        let mut status = answer.status.unwrap_or_default();
        status["receiver"] = serde_json::Value::Bool(true);
        let state: Option<ConnectionState> = serde_json::from_value(status["state"].clone()).ok();
        print_status(&status, json)?;
        return Ok(exit_for(state));
    }
    // No receiver runs on this store: ask the Console directly, once.
    let once = RetryPolicy { attempts: 1, ..RetryPolicy::default() };
    let probed = match client(&r, env, once).await {
        Ok(c) => c.probe().await.map(|()| c.token().fingerprint()).map_err(|e| (e, Some(c.token().fingerprint()))),
        Err(e) => Err((e, None)),
    };
    let (state, message, fingerprint) = match probed {
        Ok(fp) => (ConnectionState::Ok, None, Some(fp)),
        Err((e, fp)) => (e.state(), Some(e.to_string()), fp),
    };
    let status = serde_json::json!({
        "state": state,
        "api_url": r.settings.console_api_url,
        "token_fingerprint": fingerprint,
        "message": message,
        "interval_secs": r.settings.reconcile_interval_secs,
        "public_url": r.settings.public_url,
        "receiver": false,
    });
    print_status(&status, json)?;
    Ok(exit_for(Some(state)))
}

fn exit_for(state: Option<ConnectionState>) -> ExitCode {
    match state {
        Some(ConnectionState::Ok | ConnectionState::Off | ConnectionState::Connecting) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

fn print_status(status: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(status)?)?;
        return Ok(());
    }
    let s = |k: &str| status[k].as_str().unwrap_or("").to_owned();
    let state = s("state");
    let words = match state.as_str() {
        "off" => "off (no console_api_url; the app works from deliveries alone)".to_owned(),
        "ok" => "connected".to_owned(),
        "no_token" => "no API token (run `zof-approvals console login`)".to_owned(),
        "token_rejected" => "the Console refused the API token".to_owned(),
        "unreachable" => "the Console cannot be reached".to_owned(),
        other => other.to_owned(),
    };
    writeln!(out, "console   : {words}")?;
    if !s("api_url").is_empty() {
        writeln!(out, "api       : {}", s("api_url"))?;
    }
    if let Some(fp) = status["token_fingerprint"].as_str() {
        writeln!(out, "token     : {fp} (in the keychain or the named variable; never shown)")?;
    }
    if let Some(m) = status["message"].as_str() {
        writeln!(out, "why       : {m}")?;
    }
    if let Some(at) = status["last_success_at"].as_str() {
        writeln!(out, "reconciled: {at}")?;
    }
    if status["receiver"] == true {
        writeln!(out, "receiver  : running (this is its connection)")?;
    }
    Ok(())
}

async fn reconcile(conn: ConnectionArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (r, env) = conn.resolve()?;
    #[cfg(unix)]
    if let Some(answer) = zof_approvals::control::ask(&r.paths.data_dir, zof_approvals::control::Op::Reconcile).await? {
        return match answer.report {
            Some(report) if answer.ok => print_report(&report, json),
            _ => Err(anyhow::anyhow!(answer.error.unwrap_or_else(|| "the receiver could not reconcile".into()))),
        };
    }
    let client = client(&r, env, RetryPolicy::default()).await?;
    let dir = r.paths.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&dir)).await?.map_err(|e| match e {
        StoreError::Locked(dir) => anyhow::anyhow!(
            "the data directory {} is in use by a receiver that does not answer on its control socket; \
             use `Check with Console` in the app, or stop it and retry",
            dir.display()
        ),
        other => other.into(),
    })?;
    let outcome = console::reconcile(&client, &store, &r.settings.allow_orgs).await;
    // Plans added here are announced by the receiver's outbox when it next starts.
    tokio::task::spawn_blocking(move || store.flush_blocking()).await??;
    print_report(&outcome?.report, json)
}

fn print_report(report: &ReconcileReport, json: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(report)?)?;
    } else {
        writeln!(
            out,
            "checked {} plan(s) with the Console: {} resolved there, {} added, {} flagged, {} could not be checked",
            report.checked, report.resolved, report.added, report.flagged, report.errors
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn subscribe(conn: ConnectionArgs, url: &str) -> anyhow::Result<ExitCode> {
    let overrides = conn.console_url.is_some() || conn.console_token_env.is_some();
    let (r, env) = conn.resolve()?;
    // A running receiver subscribes with its own connection, so its secrets, its settings and
    // the audit row change in one place.
    #[cfg(unix)]
    {
        use zof_approvals::control::{send, Op, Request};
        let request = Request { url: Some(url.to_owned()), ..Request::new(Op::Subscribe) };
        if let Some(answer) = send(&r.paths.data_dir, &request).await? {
            if overrides {
                eprintln!(
                    "note: a receiver runs on this data directory; it subscribed with its own Console connection"
                );
            }
            let Some(subscription) = answer.subscription.filter(|_| answer.ok) else {
                eprintln!("error: {}", answer.error.unwrap_or_else(|| "the receiver could not subscribe".into()));
                return Ok(ExitCode::FAILURE);
            };
            print_subscribed(&subscription);
            return Ok(ExitCode::SUCCESS);
        }
    }
    let client = client(&r, env, RetryPolicy::default()).await?;
    let actions = crate::offline::actions(r.paths).await?;
    let subscription = console::subscribe(&client, &actions, url, Source::Cli).await?;
    print_subscribed(&subscription);
    Ok(ExitCode::SUCCESS)
}

fn print_subscribed(subscription: &console::Subscription) {
    println!(
        "subscribed {} in the Console (webhook {}); the current webhook secret is now {} (stored in the OS keychain, never shown)",
        subscription.url, subscription.webhook_id, subscription.secret_fingerprint
    );
}
