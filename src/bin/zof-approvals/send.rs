//! `zof-approvals send`: signed `remediation.plan_pending` deliveries, one test event or a load,
//! and the numbers a load is judged by (outcomes, rate, latency percentiles).
//!
//! It shares the machine with the receiver it measures, so `main` runs it on one thread.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use zof_approvals::config::DEFAULT_SECRET_ENV;
use zof_approvals::envelope::plan_pending_body;
use zof_approvals::secrets::secret_from_env;
use zof_approvals::verify::{sign_standard, sign_zof, Scheme, Secret};

use crate::{parse_scheme, random_tag};

#[derive(Debug, clap::Args)]
pub struct SendArgs {
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
    /// Send without any signature: a flood of refusals, to measure what they cost the receiver.
    #[arg(long)]
    unsigned: bool,
}

/// One delivery's outcome, as counted by `send`.
enum Outcome {
    Accepted,
    Duplicate,
    Rejected,
    Error,
}

pub async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let secret = match args.unsigned {
        true => None,
        false => Some(Arc::new(secret_from_env(&args.secret_env)?)),
    };
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
                let outcome = deliver(&client, &args.url, secret.as_deref(), args.scheme, &id, body).await;
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
    secret: Option<&Secret>,
    scheme: Scheme,
    id: &str,
    body: Vec<u8>,
) -> Result<(u16, String), reqwest::Error> {
    let mut req = client.post(url).header("content-type", "application/json");
    req = match (secret, scheme) {
        (None, _) => req,
        (Some(secret), Scheme::Zof) => req.header("x-zof-signature", sign_zof(secret, &body)),
        (Some(secret), Scheme::StandardWebhooks) => {
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
