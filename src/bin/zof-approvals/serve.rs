//! `zof-approvals serve`: the receiver headless, the same `Application` the desktop app runs.
//! It prints one `listening on` line on stdout for scripts and stops cleanly on SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use zof_approvals::about;
use zof_approvals::app::{AppConfig, Application, SecretSource};
use zof_approvals::config::{Paths, Settings};
use zof_approvals::console::{ConsoleSetup, TokenSource};
use zof_approvals::logging::{self, LogGuard};
use zof_approvals::notify::DesktopNotifier;
use zof_approvals::outbox::{LogNotifier, Notifier};
use zof_approvals::relay::LaptopLink;
use zof_approvals::secrets::Keychain;
use zof_approvals::verify::Scheme;

use crate::{parse_scheme, LocationArgs};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port. Default: from settings (127.0.0.1:8787).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    location: LocationArgs,
    /// Read the webhook secret from this environment variable instead of the OS keychain
    /// (headless use; e.g. --secret-env ZOF_WEBHOOK_SECRET).
    #[arg(long, value_name = "VAR")]
    secret_env: Option<String>,
    /// Accept events only from this organization (repeatable; none = any).
    #[arg(long = "allow-org", value_name = "ORG")]
    allow_org: Vec<String>,
    /// Signature scheme: zof (X-Zof-Signature) or standard_webhooks.
    #[arg(long, value_parser = parse_scheme)]
    scheme: Option<Scheme>,
    /// How plans are announced: desktop notifications over D-Bus, or off (one log line per
    /// plan, no D-Bus at all; plans still reach the queue and `inbox`).
    #[arg(long, value_enum, default_value_t = Notifications::Desktop)]
    notifications: Notifications,
    /// Also take deliveries from a team relay's NATS JetStream (nats://host:4222, tls://…).
    #[arg(long, value_name = "URL")]
    relay: Option<String>,
    /// This laptop's durable consumer name (default: user@host, made valid for NATS).
    #[arg(long, value_name = "NAME", requires = "relay")]
    consumer: Option<String>,
    #[command(flatten)]
    nats: crate::args::NatsArgs,
    /// Reconcile the queue with this Console API (default: `console_api_url` from settings).
    #[arg(long, value_name = "URL")]
    console_url: Option<String>,
    /// Read the Console API token from this environment variable instead of the keychain.
    #[arg(long, value_name = "VAR")]
    console_token_env: Option<String>,
    /// Seconds between reconciliations (at least 30; default: from settings, 300).
    #[arg(long, value_name = "SECS")]
    reconcile_interval: Option<u32>,
    /// Folder for the daily log files (the last 7 are kept). Default: `logs` in --data-dir when
    /// that is given, else the OS's state dir (`~/.local/state/zof-approvals/logs` on Linux).
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
}

/// Logs to stderr and to the log files; to stderr alone (saying why) when the log folder cannot
/// be used, since a receiver without log files is better than no receiver.
pub fn init_logging(args: &ServeArgs) -> LogGuard {
    let dir = logging::resolve_log_dir(args.log_dir.as_deref(), args.location.data_dir.as_deref());
    match dir.and_then(|dir| logging::init_with_files("info", &dir)) {
        Ok(guard) => guard,
        Err(e) => {
            let guard = logging::init_stderr("info");
            tracing::warn!(error = %e, "logging to stderr only");
            guard
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Notifications {
    Off,
    Desktop,
}

pub async fn serve(args: ServeArgs, log_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let paths = Paths::resolve(args.location.data_dir, args.location.config_dir)?;
    let mut settings = Settings::load(&paths.settings_file())?;
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    if !args.allow_org.is_empty() {
        settings.allow_orgs = args.allow_org;
    }
    if let Some(scheme) = args.scheme {
        settings.scheme = scheme;
    }
    if let Some(url) = args.console_url {
        settings.console_api_url = url;
    }
    if let Some(secs) = args.reconcile_interval {
        settings.reconcile_interval_secs = secs;
    }
    settings.validate()?;
    let console_url = settings.console_api_url.clone();
    let interval = settings.reconcile_interval_secs;
    let token = match args.console_token_env {
        Some(var) => TokenSource::Env(var),
        None => TokenSource::Keychain(Arc::new(Keychain::default())),
    };
    let console = ConsoleSetup { token, ..ConsoleSetup::default() };
    let secrets_from_env = args.secret_env.is_some();
    let secrets = match args.secret_env {
        Some(var) => SecretSource::Env(var),
        None => SecretSource::keychain(),
    };
    let relay_settings = settings.relay.clone();
    let config = AppConfig { paths: paths.clone(), settings, secrets };
    let notifier: Arc<dyn Notifier> = match args.notifications {
        Notifications::Desktop => Arc::new(DesktopNotifier::new(tokio::runtime::Handle::current())),
        Notifications::Off => Arc::new(LogNotifier),
    };
    let mut app = Application::build_with_console(config, notifier, console).await?;
    let mut relay_line = None;
    if let Some(url) = &args.relay {
        let consumer = match args.consumer.clone() {
            Some(name) => name,
            None => zof_approvals::relay::default_consumer_name().await,
        };
        let nats = args.nats.config(url, format!("zof-approvals {consumer}"))?;
        relay_line = Some(format!("{url}, stream {}, consumer {consumer}", args.nats.stream));
        app.attach_relay(LaptopLink { nats, stream: args.nats.stream.clone(), consumer });
    } else if relay_settings.is_on() {
        // The relay from the settings (Settings → Team relay); its password in the OS keychain,
        // also when the webhook secret comes from the environment.
        if secrets_from_env {
            app.set_relay_keychain(Arc::new(Keychain::default()));
        }
        let url = &relay_settings.url;
        relay_line = Some(match app.follow_relay_settings().await {
            Ok(()) => {
                let consumer = app.relay_view().consumer.unwrap_or_default();
                format!("{url}, stream {}, consumer {consumer} (from settings)", relay_settings.stream)
            }
            Err(e) => format!("{url} NOT STARTED: {e}"),
        });
    }
    eprintln!("Zof Approvals receiver");
    eprintln!("  webhook URL : {}", app.webhook_url());
    eprintln!("  data        : {}", paths.data_dir.display());
    eprintln!("  settings    : {}", paths.settings_file().display());
    if let Some(dir) = &log_dir {
        eprintln!("  logs        : {}", dir.display());
    }
    if !console_url.is_empty() {
        eprintln!("  console     : {console_url} (reconciled every {interval} s)");
    }
    if let Some(line) = relay_line {
        eprintln!("  relay       : {line}");
    }
    if args.notifications == Notifications::Off {
        eprintln!("  notify      : off (no D-Bus; each plan is logged once)");
    }
    if let Some(manager) = app.secret_manager() {
        let m = manager.clone();
        let report = tokio::task::spawn_blocking(move || m.report(Utc::now(), false)).await??;
        for s in &report.secrets {
            eprintln!("  secret      : {} ({:?}, {} days old)", s.fingerprint, s.role, s.age_days);
        }
    }
    if let Some(why) = app.intake_not_ready() {
        eprintln!("  NOT READY   : {why} (deliveries get 503 until this is fixed)");
    }
    tracing::info!(version = about::VERSION, commit = about::COMMIT, url = %app.webhook_url(), "receiver started");
    let stop = shutdown_signal();
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{}", app.local_addr())?;
    out.flush()?;
    drop(out);
    app.run_until_stopped(stop).await?;
    // Through the log, not stderr directly: a reader that stopped reading must not hang the exit.
    tracing::info!("stopped; the store is flushed");
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM. The handlers are installed now, not when the future is first polled, so a
/// signal sent right after the `listening on` line stops the receiver cleanly instead of killing it.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
        async move {
            match streams {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
