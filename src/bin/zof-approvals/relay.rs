//! `zof-approvals relay`: the always-on, reachable side of the team relay. It answers Zof's
//! deliveries with the same contract as `serve`, and puts what verified into NATS JetStream for
//! every laptop (`serve --relay`). It keeps no local state, so several can run behind one address.
//!
//! Also `relay-bench` (hidden): a plain JetStream publisher, the baseline the relay is measured against.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use zof_approvals::config::{Settings, DEFAULT_SECRET_ENV};
use zof_approvals::intake::{IntakePolicy, Judge};
use zof_approvals::receiver::Limits;
use zof_approvals::relay::{self, Publisher, Relay, RelayStatus, StreamSettings};
use zof_approvals::secrets::{secret_from_env, SecretUsage, SecretsHandle, SecretsStatus};
use zof_approvals::verify::{Scheme, SecretSet};

use crate::args::NatsArgs;
use crate::parse_scheme;

#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// NATS server URL(s): nats://host:4222, tls://host:4222, comma-separated for a cluster.
    #[arg(long, value_name = "URL")]
    nats: String,
    #[command(flatten)]
    nats_args: NatsArgs,
    /// Replicas of the stream when the relay creates it (3 in a JetStream cluster).
    #[arg(long, value_name = "N", default_value_t = 1)]
    replicas: usize,
    /// The environment variable that holds the webhook secret.
    #[arg(long, value_name = "VAR", default_value = DEFAULT_SECRET_ENV)]
    secret_env: String,
    /// Accept events only from this organization (repeatable; none = any).
    #[arg(long = "allow-org", value_name = "ORG")]
    allow_org: Vec<String>,
    /// Signature scheme: zof (X-Zof-Signature) or standard_webhooks.
    #[arg(long, value_parser = parse_scheme, default_value = "zof")]
    scheme: Scheme,
}

pub async fn relay(args: RelayArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings { scheme: args.scheme, allow_orgs: args.allow_org.clone(), ..Settings::default() };
    let secrets = match secret_from_env(&args.secret_env) {
        Ok(secret) => SecretsStatus::Ready(SecretSet::single(secret)),
        Err(e) => SecretsStatus::Unavailable(e.to_string()),
    };
    let judge = Judge::new(
        SecretsHandle::new(secrets),
        Arc::new(SecretUsage::default()),
        IntakePolicy::from_settings(&settings),
    );
    let nats = args.nats_args.config(&args.nats, "zof-approvals relay".into())?;
    let status = RelayStatus::new("relay");
    let publisher = Publisher::connect(&nats, status).await?;
    let stream = StreamSettings { name: args.nats_args.stream.clone(), replicas: args.replicas, ..Default::default() };
    publisher.ensure_stream(&stream, Duration::from_secs(60)).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let limits = Limits {
        max_body_bytes: settings.max_body_bytes,
        request_timeout: Duration::from_secs(u64::from(settings.request_timeout_secs)),
        max_concurrent_requests: settings.max_concurrent_requests,
        max_connections: settings.max_connections,
    };
    eprintln!("Zof Approvals relay");
    eprintln!("  webhook URL : http://{addr}{}", zof_approvals::receiver::WEBHOOK_PATH);
    eprintln!("  stream      : {} (subjects {}.>, {} replica(s))", stream.name, relay::SUBJECT_PREFIX, stream.replicas);
    let relay = Relay::new(judge, publisher);
    if let Some(why) = relay.not_ready() {
        eprintln!("  NOT READY   : {why} (deliveries get 503 until this is fixed)");
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{addr}")?;
    out.flush()?;
    drop(out);
    let app = relay::publish::router(relay.clone(), limits);
    zof_approvals::receiver::serve(listener, app, limits, crate::serve::shutdown_signal()).await;
    relay.publisher().flush().await;
    tracing::info!("relay stopped");
    Ok(ExitCode::SUCCESS)
}

/// A plain JetStream publisher: `count` messages with a `Nats-Msg-Id` each, `concurrency` in
/// flight, each awaited to its acknowledgment. Prints one JSON line.
#[derive(Debug, clap::Args)]
pub struct RelayBenchArgs {
    #[arg(long, value_name = "URL")]
    nats: String,
    #[command(flatten)]
    nats_args: NatsArgs,
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Subject to publish to (inside the stream, which is created if missing).
    #[arg(long, default_value = "zof.deliveries.bench")]
    subject: String,
    /// Replicas of the stream when it is created here (3 on a JetStream cluster).
    #[arg(long, value_name = "N", default_value_t = 1)]
    replicas: usize,
    /// Publish nothing: print each relayed message's event id and the relay's received-at
    /// time (RFC 3339), one per line, for the latency benchmark.
    #[arg(long)]
    received_times: bool,
}

pub async fn relay_bench(args: RelayBenchArgs) -> anyhow::Result<ExitCode> {
    let nats = args.nats_args.config(&args.nats, "zof-approvals relay-bench".into())?;
    let publisher = Publisher::connect(&nats, RelayStatus::new("bench")).await?;
    // The baseline's own stream when it publishes outside the relay's subjects.
    let subjects = match args.subject.starts_with(&format!("{}.", relay::SUBJECT_PREFIX)) {
        true => vec![format!("{}.>", relay::SUBJECT_PREFIX)],
        false => vec![args.subject.clone()],
    };
    let stream = StreamSettings { name: args.nats_args.stream.clone(), replicas: args.replicas, subjects };
    // A cluster elects its JetStream leader first: as the relay does, wait up to a minute.
    publisher.ensure_stream(&stream, Duration::from_secs(60)).await?;
    if args.received_times {
        let mut out = std::io::stdout().lock();
        for (id, at) in publisher.received_times(&stream.name).await? {
            writeln!(out, "{id} {}", at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let tag = crate::random_tag()?;
    // A body the size of a real delivery.
    let body = axum::body::Bytes::from(zof_approvals::envelope::plan_pending_body(
        "evt_bench",
        chrono::Utc::now(),
        "plan_bench",
        "org_bench",
        "run_bench",
    ));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (publisher, next, body, tag, subject, count) =
            (publisher.clone(), next.clone(), body.clone(), tag.clone(), args.subject.clone(), args.count);
        workers.spawn(async move {
            let (mut ok, mut failed, mut ms) = (0u64, 0u64, Vec::new());
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                let t0 = Instant::now();
                let id = format!("bench_{tag}_{n}");
                match publisher
                    .publish(subject.clone(), &id, &[("x-zof-signature", "sha256=bench")], body.clone())
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
                ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            (ok, failed, ms)
        });
    }
    let (mut ok, mut failed, mut ms) = (0, 0, Vec::new());
    while let Some(done) = workers.join_next().await {
        let (o, f, m) = done?;
        ok += o;
        failed += f;
        ms.extend(m);
    }
    let seconds = started.elapsed().as_secs_f64();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms.get(((ms.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
    let summary = serde_json::json!({
        "acked": ok, "failed": failed, "seconds": seconds,
        "per_second": if seconds > 0.0 { ok as f64 / seconds } else { 0.0 },
        "p50_ms": pct(0.5), "p99_ms": pct(0.99),
    });
    println!("{summary}");
    publisher.flush().await;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
