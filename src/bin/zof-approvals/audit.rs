//! `zof-approvals audit`: the audit log, newest first: who did what, when and from where. From
//! the receiver that holds the store (its control socket), else from the store itself.
//! `--json` prints one JSON object per line (JSON Lines) with exactly the keys
//! `at who action plan_id detail source`.

use std::io::Write;
use std::process::ExitCode;

use chrono::{SecondsFormat, Utc};
use zof_approvals::config::Paths;
#[cfg(unix)]
use zof_approvals::control::{self, Op, Request};
use zof_approvals::domain::audit::{AuditEntry, AuditFilter};

use crate::LocationArgs;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only the rows about this plan.
    #[arg(long = "plan", value_name = "ID")]
    plan_id: Option<String>,
    /// Only the rows of this last stretch of time: 30m, 24h, 7d.
    #[arg(long, value_name = "DURATION", value_parser = crate::args::parse_duration)]
    since: Option<chrono::Duration>,
    /// One JSON object per line, newest first.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    location: LocationArgs,
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::resolve(args.location.data_dir, args.location.config_dir)?;
    let since = args.since.map(|d| Utc::now() - d);
    let rows = read(&paths, args.plan_id, since).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for row in &rows {
            writeln!(out, "{}", serde_json::to_string(row)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        writeln!(out, "no audit rows")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "{:<20}  {:<24}  {:<20}  {:<24}  {:<14}  DETAIL", "AT", "WHO", "ACTION", "PLAN", "SOURCE")?;
    for r in &rows {
        writeln!(
            out,
            "{:<20}  {:<24}  {:<20}  {:<24}  {:<14}  {}",
            r.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            r.who,
            r.action.as_str(),
            r.plan_id.as_deref().unwrap_or("-"),
            r.source.to_string(),
            r.detail
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn read(
    paths: &Paths,
    plan_id: Option<String>,
    since: Option<chrono::DateTime<Utc>>,
) -> anyhow::Result<Vec<AuditEntry>> {
    #[cfg(unix)]
    {
        let request = Request { plan_id: plan_id.clone(), since, ..Request::new(Op::Audit) };
        if let Some(answer) = control::send(&paths.data_dir, &request).await? {
            return match answer.audit {
                Some(rows) if answer.ok => Ok(rows),
                _ => Err(anyhow::anyhow!(answer
                    .error
                    .unwrap_or_else(|| "the receiver could not read the audit log".into()))),
            };
        }
    }
    let dir = paths.data_dir.clone();
    let filter = AuditFilter { plan_id, since, ..AuditFilter::default() };
    tokio::task::spawn_blocking(move || {
        let store = crate::offline::open_store(&dir)?;
        Ok(store.audit(&filter)?)
    })
    .await?
}
