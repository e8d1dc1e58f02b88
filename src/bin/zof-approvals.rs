//! The `zof-approvals` command: run the receiver headless, send and sign test deliveries, check a
//! receiver's conformance, read the inbox, manage the webhook secrets.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use zof_approvals::app::{AppConfig, Application, SecretSource};
use zof_approvals::config::{Paths, Settings, DEFAULT_SECRET_ENV};
use zof_approvals::envelope::plan_pending_body;
use zof_approvals::notify::DesktopNotifier;
use zof_approvals::secrets::{secret_from_env, Keychain, SecretManager, SecretRole, SecretStore, SecretsReport};
use zof_approvals::store::{EventVerdict, PlanRecord, PlanState, Store};
use zof_approvals::verify::{sign_standard, sign_zof, Scheme, Secret};

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
    Serve(ServeArgs),
    /// Send signed remediation.plan_pending deliveries (a test event, or a load).
    Send(SendArgs),
    /// Print the X-Zof-Signature header value for a body.
    Sign(SignArgs),
    /// Run a conformance suite against a receiver.
    Check(CheckArgs),
    /// List stored events and plan states.
    Inbox(InboxArgs),
    /// Manage the webhook secrets kept in the OS keychain.
    #[command(subcommand)]
    Secret(SecretCommand),
}

#[derive(Debug, Subcommand)]
enum SecretCommand {
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
struct ServeArgs {
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
}

#[derive(Debug, Args)]
struct SendArgs {
    /// The receiver's webhook URL, e.g. http://127.0.0.1:8787/webhooks/zof
    #[arg(long)]
    url: String,
    #[arg(long, value_name = "VAR", default_value = DEFAULT_SECRET_ENV)]
    secret_env: String,
    /// How many deliveries to send.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// How many deliveries in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Steady rate in deliveries per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Use this event id for every delivery (default: a unique id each).
    #[arg(long)]
    id: Option<String>,
    #[arg(long, default_value = "org_abc")]
    org: String,
    #[arg(long, default_value = "run_xyz")]
    run: String,
    /// Plan id (default: a unique plan per event).
    #[arg(long)]
    plan: Option<String>,
    /// Append each acknowledged (2xx) event id to this file as soon as it is acknowledged.
    #[arg(long, value_name = "FILE")]
    acked_out: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    #[arg(long, value_parser = parse_scheme, default_value = "zof")]
    scheme: Scheme,
}

#[derive(Debug, Args)]
struct SignArgs {
    #[arg(long, value_name = "VAR", default_value = DEFAULT_SECRET_ENV)]
    secret_env: String,
    /// Read the body from this file (default: standard input).
    #[arg(long, value_name = "F")]
    file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[arg(long)]
    url: String,
    #[arg(long, value_name = "VAR", default_value = DEFAULT_SECRET_ENV)]
    secret_env: String,
}

#[derive(Debug, Args)]
struct InboxArgs {
    #[command(flatten)]
    location: LocationArgs,
    #[arg(long)]
    json: bool,
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

fn parse_scheme(s: &str) -> Result<Scheme, String> {
    Scheme::parse(s).ok_or_else(|| format!("unknown scheme `{s}` (use zof or standard_webhooks)"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log = zof_approvals::logging::init_stderr("info");
    // The load generator runs on one thread: it shares the machine with the receiver it measures,
    // and one thread drives 64 connections with less CPU than a pool that hands work around.
    let mut builder = match cli.command {
        Command::Send(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(a) => serve(a).await,
            Command::Send(a) => send(a).await,
            Command::Sign(a) => sign(&a),
            Command::Check(a) => check(a).await,
            Command::Inbox(a) => inbox(a).await,
            Command::Secret(c) => tokio::task::spawn_blocking(move || secret_command(c)).await?,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
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
    settings.validate()?;
    let secrets = match args.secret_env {
        Some(var) => SecretSource::Env(var),
        None => SecretSource::keychain(),
    };
    let config = AppConfig { paths: paths.clone(), settings, secrets };
    let notifier = Arc::new(DesktopNotifier::new(tokio::runtime::Handle::current()));
    let app = Application::build(config, notifier).await?;
    eprintln!("Zof Approvals receiver");
    eprintln!("  webhook URL : {}", app.webhook_url());
    eprintln!("  data        : {}", paths.data_dir.display());
    eprintln!("  settings    : {}", paths.settings_file().display());
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
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{}", app.local_addr())?;
    out.flush()?;
    drop(out);
    app.run_until_stopped(shutdown_signal()).await?;
    eprintln!("stopped; the store is flushed");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One delivery's outcome, as counted by `send`.
enum Outcome {
    Accepted,
    Duplicate,
    Rejected,
    Error,
}

async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let secret = Arc::new(secret_from_env(&args.secret_env)?);
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(args.concurrency).build()?;
    let acked = match &args.acked_out {
        Some(path) => Some(AckWriter::open(path)?),
        None => None,
    };
    let run_tag = random_tag()?;
    let next = Arc::new(AtomicU64::new(0));
    let args = Arc::new(args);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, secret, next, args, acked, tag) =
            (client.clone(), secret.clone(), next.clone(), args.clone(), acked.clone(), run_tag.clone());
        workers.spawn(async move {
            let mut seen = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= args.count {
                    break;
                }
                if let Some(rate) = args.rate {
                    let due = started + Duration::from_secs_f64(n as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let id = args.id.clone().unwrap_or_else(|| format!("evt_{tag}_{n}"));
                let plan = args.plan.clone().unwrap_or_else(|| format!("plan_{tag}_{n}"));
                let body = plan_pending_body(&id, Utc::now(), &plan, &args.org, &args.run);
                let t0 = Instant::now();
                let outcome = deliver(&client, &args.url, &secret, args.scheme, &id, body).await;
                seen.push((outcome_kind(&outcome), t0.elapsed()));
                if let (Some(w), Ok(true)) = (&acked, outcome.as_ref().map(|(s, _)| (200..300).contains(s))) {
                    w.write(&id);
                }
            }
            seen
        });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = workers.join_next().await {
        outcomes.extend(done?);
    }
    let summary = Summary::new(&outcomes, started.elapsed());
    if let Some(w) = acked {
        w.finish();
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        summary.print();
    }
    Ok(if summary.errors + summary.rejected == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn outcome_kind(outcome: &Result<(u16, String), reqwest::Error>) -> Outcome {
    match outcome {
        Ok((200..=299, body)) if body.contains("\"duplicate\"") => Outcome::Duplicate,
        Ok((200..=299, _)) => Outcome::Accepted,
        Ok(_) => Outcome::Rejected,
        Err(_) => Outcome::Error,
    }
}

async fn deliver(
    client: &reqwest::Client,
    url: &str,
    secret: &Secret,
    scheme: Scheme,
    id: &str,
    body: Vec<u8>,
) -> Result<(u16, String), reqwest::Error> {
    let mut req = client.post(url).header("content-type", "application/json");
    req = match scheme {
        Scheme::Zof => req.header("x-zof-signature", sign_zof(secret, &body)),
        Scheme::StandardWebhooks => {
            let ts = Utc::now().timestamp();
            req.header("webhook-id", id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", sign_standard(secret, id, ts, &body))
        }
    };
    let resp = req.body(body).send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, text))
}

fn random_tag() -> anyhow::Result<String> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("random number generator failed: {e}"))?;
    Ok(hex::encode(b))
}

/// Writes acknowledged ids from a dedicated thread, one line each, flushed as it goes.
#[derive(Clone)]
struct AckWriter {
    tx: std::sync::mpsc::Sender<String>,
    done: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl AckWriter {
    fn open(path: &std::path::Path) -> anyhow::Result<AckWriter> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let handle = std::thread::spawn(move || {
            for id in rx {
                if writeln!(file, "{id}").and_then(|()| file.flush()).is_err() {
                    eprintln!("warning: cannot write to the --acked-out file");
                    return;
                }
            }
        });
        Ok(AckWriter { tx, done: Arc::new(std::sync::Mutex::new(Some(handle))) })
    }

    fn write(&self, id: &str) {
        let _ = self.tx.send(id.to_owned());
    }

    fn finish(self) {
        let handle = self.done.lock().ok().and_then(|mut h| h.take());
        drop(self.tx);
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

#[derive(Debug, serde::Serialize)]
struct Summary {
    sent: u64,
    accepted: u64,
    duplicate: u64,
    rejected: u64,
    errors: u64,
    seconds: f64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Summary {
    fn new(outcomes: &[(Outcome, Duration)], elapsed: Duration) -> Summary {
        let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|(o, _)| f(o)).count() as u64;
        let mut ms: Vec<f64> = outcomes.iter().map(|(_, d)| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if ms.is_empty() {
                0.0
            } else {
                ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1]
            }
        };
        let seconds = elapsed.as_secs_f64();
        Summary {
            sent: outcomes.len() as u64,
            accepted: count(|o| matches!(o, Outcome::Accepted)),
            duplicate: count(|o| matches!(o, Outcome::Duplicate)),
            rejected: count(|o| matches!(o, Outcome::Rejected)),
            errors: count(|o| matches!(o, Outcome::Error)),
            seconds: round3(seconds),
            per_second: round3(if seconds > 0.0 { outcomes.len() as f64 / seconds } else { 0.0 }),
            p50_ms: round3(pct(0.50)),
            p99_ms: round3(pct(0.99)),
            max_ms: round3(ms.last().copied().unwrap_or(0.0)),
        }
    }

    fn print(&self) {
        println!(
            "sent {}  accepted {}  duplicate {}  rejected {}  errors {}",
            self.sent, self.accepted, self.duplicate, self.rejected, self.errors
        );
        println!(
            "{:.3} s  {:.1}/s  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            self.seconds, self.per_second, self.p50_ms, self.p99_ms, self.max_ms
        );
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn sign(args: &SignArgs) -> anyhow::Result<ExitCode> {
    let secret = secret_from_env(&args.secret_env)?;
    let mut body = Vec::new();
    match &args.file {
        Some(path) => body = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        None => {
            std::io::stdin().read_to_end(&mut body).context("cannot read standard input")?;
        }
    }
    println!("{}", sign_zof(&secret, &body));
    Ok(ExitCode::SUCCESS)
}

/// One conformance case: what is sent and which statuses pass.
struct Case {
    name: &'static str,
    body: Vec<u8>,
    signature: Option<String>,
    expect: &'static [u16],
    expect_status_word: Option<&'static str>,
}

async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let secret = secret_from_env(&args.secret_env)?;
    let wrong = Secret::generate()?;
    let tag = random_tag()?;
    let event = |n: &str| {
        plan_pending_body(
            &format!("evt_check_{tag}_{n}"),
            Utc::now(),
            &format!("plan_check_{tag}_{n}"),
            "org_abc",
            "run_check",
        )
    };
    let valid = event("valid");
    let mut tampered = event("tampered");
    let tampered_sig = sign_zof(&secret, &tampered);
    if let Some(b) = tampered.iter_mut().find(|b| **b == b'c') {
        *b = b'C';
    }
    let dup = event("duplicate");
    let mut oversize = event("oversize");
    oversize.truncate(oversize.len() - 1);
    oversize.extend_from_slice(format!(",\"padding\":\"{}\"}}", "x".repeat(2 * 1024 * 1024)).as_bytes());
    let malformed = b"{\"id\":\"evt_check_malformed\",".to_vec();
    let signed = |b: &[u8]| Some(sign_zof(&secret, b));
    let cases = vec![
        Case {
            name: "valid event is acknowledged",
            signature: signed(&valid),
            body: valid,
            expect: &[200, 201, 202, 204],
            expect_status_word: None,
        },
        Case {
            name: "tampered body is refused",
            signature: Some(tampered_sig),
            body: tampered,
            expect: &[401, 403],
            expect_status_word: None,
        },
        Case {
            name: "wrong secret is refused",
            signature: Some(sign_zof(&wrong, &event("wrong"))),
            body: event("wrong"),
            expect: &[401, 403],
            expect_status_word: None,
        },
        Case {
            name: "empty signature is refused",
            signature: Some(String::new()),
            body: event("empty"),
            expect: &[400, 401, 403],
            expect_status_word: None,
        },
        Case {
            name: "missing signature header is refused",
            signature: None,
            body: event("missing"),
            expect: &[400, 401, 403],
            expect_status_word: None,
        },
        Case {
            name: "first delivery of an id is acknowledged",
            signature: signed(&dup),
            body: dup.clone(),
            expect: &[200, 201, 202, 204],
            expect_status_word: None,
        },
        Case {
            name: "duplicate delivery is acknowledged as a duplicate",
            signature: signed(&dup),
            body: dup,
            expect: &[200, 201, 202, 204],
            expect_status_word: Some("duplicate"),
        },
        Case {
            name: "oversize body is refused",
            signature: signed(&oversize),
            body: oversize,
            expect: &[413],
            expect_status_word: None,
        },
        Case {
            name: "malformed JSON is refused",
            signature: signed(&malformed),
            body: malformed,
            expect: &[400, 422],
            expect_status_word: None,
        },
    ];
    // A fresh connection per case: a receiver may close one after refusing a body it did not read.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).pool_max_idle_per_host(0).build()?;
    let mut failed = 0;
    for case in cases {
        let mut req = client.post(&args.url).header("content-type", "application/json");
        if let Some(sig) = &case.signature {
            req = req.header("x-zof-signature", sig);
        }
        let verdict = match req.body(case.body).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                let word_ok = case
                    .expect_status_word
                    .is_none_or(|w| text.contains(&format!("\"{w}\"")) || !text.trim_start().starts_with('{'));
                if case.expect.contains(&status) && word_ok {
                    Ok(format!("{status}"))
                } else {
                    Err(format!(
                        "got {status}, expected one of {:?}{}",
                        case.expect,
                        case.expect_status_word.map(|w| format!(" with status \"{w}\"")).unwrap_or_default()
                    ))
                }
            }
            // A receiver may close the connection on an oversize body instead of answering 413.
            Err(e) if case.expect == [413] && (e.is_request() || e.is_body()) => Ok("connection closed".into()),
            Err(e) => Err(format!("request failed: {e}")),
        };
        match verdict {
            Ok(got) => println!("PASS  {} ({got})", case.name),
            Err(why) => {
                failed += 1;
                println!("FAIL  {}: {why}", case.name);
            }
        }
    }
    println!("{} passed, {} failed", 9 - failed, failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn inbox(args: InboxArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::resolve(args.location.data_dir, args.location.config_dir)?;
    let dir = paths.data_dir.clone();
    let rows = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<serde_json::Value>> {
        let store = Store::open(&dir)?;
        let plans: std::collections::HashMap<String, PlanRecord> =
            store.plans_iter().map(|p| p.map(|p| (p.plan_id.clone(), p))).collect::<Result<_, _>>()?;
        let queued: std::collections::HashSet<u64> =
            store.outbox_iter().map(|e| e.map(|e| e.seq)).collect::<Result<_, _>>()?;
        let mut rows = Vec::new();
        for e in store.events()? {
            let plan = plans.get(&e.plan_id).filter(|p| p.event_id == e.id);
            let state = match (e.verdict, plan) {
                (EventVerdict::Ignored, _) => "ignored".to_string(),
                (EventVerdict::Accepted, Some(p)) => plan_state_word(p.state).to_string(),
                // Acknowledged; the worker has not written its plan yet (it will on the next start).
                (EventVerdict::Accepted, None) if e.outbox_seq.is_some_and(|s| queued.contains(&s)) => {
                    "received".to_string()
                }
                // A later event announced the same plan again.
                (EventVerdict::Accepted, None) => "superseded".to_string(),
            };
            rows.push(serde_json::json!({
                "id": e.id, "type": e.kind, "plan": e.plan_id, "run": e.run_id,
                "org": e.organization_id, "received_at": e.received_at, "state": state,
                "notified_at": plan.and_then(|p| p.notified_at),
            }));
        }
        Ok(rows)
    })
    .await??;
    if args.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("the inbox is empty");
        return Ok(ExitCode::SUCCESS);
    }
    let _ = writeln!(
        std::io::stdout(),
        "{:<28} {:<26} {:<24} {:<14} {:<14} {:<25} STATE",
        "ID",
        "TYPE",
        "PLAN",
        "RUN",
        "ORG",
        "RECEIVED"
    );
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        let _ = writeln!(
            std::io::stdout(),
            "{:<28} {:<26} {:<24} {:<14} {:<14} {:<25} {}",
            s("id"),
            s("type"),
            s("plan"),
            s("run"),
            s("org"),
            s("received_at"),
            s("state")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn plan_state_word(state: PlanState) -> &'static str {
    match state {
        PlanState::Pending => "pending",
        PlanState::Snoozed => "snoozed",
        PlanState::Handled => "handled",
    }
}

fn secret_command(command: SecretCommand) -> anyhow::Result<ExitCode> {
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
