//! The `zof-approvals` command: run the receiver headless, send and sign test deliveries, check a
//! receiver's conformance, read the inbox and the plans, handle and snooze plans, read the audit
//! log, manage the webhook secrets, connect the Console and run the team relay. One module per command;
//! this file parses the command line and runs the chosen one on a runtime that suits it.

use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use zof_approvals::config::DEFAULT_SECRET_ENV;
use zof_approvals::secrets::secret_from_env;
use zof_approvals::verify::{sign_zof, Scheme};

mod actions;
mod args;
mod audit;
mod check;
mod console;
mod inbox;
mod offline;
mod plans;
mod relay;
mod review;
mod secret;
mod send;
mod serve;

/// jemalloc, configured in `.cargo/config.toml` (one arena, freed pages returned within half a
/// second): the receiver's memory stays flat under load, where glibc grows an arena per thread.
/// On a 100,000-event run this halves peak RSS and raises throughput by half (README, Benchmarks).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(name = "zof-approvals", version, about = "Tells you the moment a Zof remediation plan awaits your approval.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the webhook receiver headless.
    Serve(serve::ServeArgs),
    /// Send signed remediation.plan_pending deliveries (a test event, or a load).
    Send(send::SendArgs),
    /// Print the X-Zof-Signature header value for a body.
    Sign(SignArgs),
    /// Run a conformance suite against a receiver (it creates no plan and no notification).
    Check(check::CheckArgs),
    /// List stored events and plan states.
    Inbox(inbox::InboxArgs),
    /// List plans: state, source, and what the Console said about them.
    Plans(plans::PlansArgs),
    /// Mark a plan handled (through the running receiver, if one holds the store).
    Handle(actions::HandleArgs),
    /// Snooze a plan (default 1h; through the running receiver, if one holds the store).
    Snooze(actions::SnoozeArgs),
    /// A plan's details from the Console: what it would change, and whether you may decide it.
    Show(review::ShowArgs),
    /// Approve a plan as the person the Console token belongs to (asks first; --yes without a terminal).
    Approve(review::ApproveArgs),
    /// Reject a plan, with a reason, as the person the Console token belongs to.
    Reject(review::RejectArgs),
    /// The audit log: who did what, when and from where, newest first.
    Audit(audit::AuditArgs),
    /// The optional Console connection: login, status, reconcile, subscribe.
    #[command(subcommand)]
    Console(console::ConsoleCommand),
    /// Manage the webhook secrets kept in the OS keychain.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Run the team relay: verify deliveries and put them into NATS JetStream for every laptop.
    Relay(relay::RelayArgs),
    /// Publish straight to JetStream (the relay benchmark's baseline).
    #[command(hide = true)]
    RelayBench(relay::RelayBenchArgs),
}

/// Where the store and the settings are, for the commands that read them.
#[derive(Debug, Args)]
struct LocationArgs {
    /// Data directory (the event store). Default: the OS's data dir for zof-approvals.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Config directory (settings). Default: the OS's config dir for zof-approvals.
    #[arg(long, value_name = "DIR")]
    config_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SignArgs {
    #[arg(long, value_name = "VAR", default_value = DEFAULT_SECRET_ENV)]
    secret_env: String,
    /// Read the body from this file (default: standard input).
    #[arg(long, value_name = "F")]
    file: Option<PathBuf>,
}

fn parse_scheme(s: &str) -> Result<Scheme, String> {
    Scheme::parse(s).ok_or_else(|| format!("unknown scheme `{s}` (use zof or standard_webhooks)"))
}

/// Eight random hex digits: what keeps one run's event ids apart from another's.
fn random_tag() -> anyhow::Result<String> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("random number generator failed: {e}"))?;
    Ok(hex::encode(b))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout_gone = quiet_when_stdout_is_gone();
    // Only the long-running receiver keeps log files; the other commands log to stderr.
    let log = match &cli.command {
        Command::Serve(a) => serve::init_logging(a),
        _ => zof_approvals::logging::init_stderr("info"),
    };
    let log_dir = log.dir().map(PathBuf::from);
    // The load generator runs on one thread: it shares the machine with the receiver it measures,
    // and one thread drives 64 connections with less CPU than a pool that hands work around.
    let mut builder = match cli.command {
        Command::Send(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    // Declared after `log`, so the runtime stops (its threads' last lines queued) before the
    // log's writers flush and end.
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(async move {
            match cli.command {
                Command::Serve(a) => serve::serve(a, log_dir).await,
                Command::Send(a) => send::send(a).await,
                Command::Sign(a) => sign(&a),
                Command::Check(a) => check::check(a).await,
                Command::Inbox(a) => inbox::inbox(a).await,
                Command::Plans(a) => plans::plans(a).await,
                Command::Handle(a) => actions::handle(a).await,
                Command::Snooze(a) => actions::snooze(a).await,
                Command::Show(a) => review::show(a).await,
                Command::Approve(a) => review::approve(a).await,
                Command::Reject(a) => review::reject(a).await,
                Command::Audit(a) => audit::audit(a).await,
                Command::Console(c) => console::console_command(c).await,
                Command::Secret(c) => secret::secret_command(c).await,
                Command::Relay(a) => relay::relay(a).await,
                Command::RelayBench(a) => relay::relay_bench(a).await,
            }
        })
    }));
    let gone = || stdout_gone.load(Ordering::SeqCst);
    match result {
        Ok(Ok(code)) => code,
        Ok(Err(e)) if gone() || stdout_closed(&e) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
        Err(_) if gone() => ExitCode::SUCCESS,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Whether the command failed because the reader of its output went away
/// (`zof-approvals send --json | head -c 10`): the reader has what it wanted, so the command
/// ends quietly and successfully, as `grep` and `rg` do. Only an error the command itself
/// returned counts, not one inside another (a network error carrying a broken pipe).
fn stdout_closed(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// `println!` panics when the reader of stdout went away. Such a panic is not reported: it is
/// flagged, and the command ends as for [`stdout_closed`]. Every other panic is reported as usual.
fn quiet_when_stdout_is_gone() -> Arc<AtomicBool> {
    let gone = Arc::new(AtomicBool::new(false));
    let flag = gone.clone();
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload().downcast_ref::<String>().map_or("", String::as_str);
        if message.starts_with("failed printing to stdout") && message.contains(BROKEN_PIPE) {
            flag.store(true, Ordering::SeqCst);
        } else {
            report(info);
        }
    }));
    gone
}

/// How a broken pipe reads in `println!`'s panic message (the OS error's number).
#[cfg(windows)]
const BROKEN_PIPE: &str = "(os error 232)";
#[cfg(not(windows))]
const BROKEN_PIPE: &str = "(os error 32)";

fn sign(args: &SignArgs) -> anyhow::Result<ExitCode> {
    let secret = secret_from_env(&args.secret_env)?;
    let mut body = Vec::new();
    match &args.file {
        Some(path) => body = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        None => {
            std::io::stdin().read_to_end(&mut body).context("cannot read standard input")?;
        }
    }
    writeln!(std::io::stdout().lock(), "{}", sign_zof(&secret, &body))?;
    Ok(ExitCode::SUCCESS)
}
