//! `zof-approvals plans`: one row per plan (its state, where it came from, what the Console said),
//! read straight from the store, or from the receiver that holds it (its control socket).

use std::io::Write;
use std::process::ExitCode;

use zof_approvals::config::Paths;
#[cfg(unix)]
use zof_approvals::control::Op;
use zof_approvals::store::{PlanRecord, PlanSource, Store, StoreError};

use crate::inbox::plan_state_word;
use crate::LocationArgs;

#[derive(Debug, clap::Args)]
pub struct PlansArgs {
    #[command(flatten)]
    location: LocationArgs,
    #[arg(long)]
    json: bool,
}

fn row(p: &PlanRecord) -> serde_json::Value {
    serde_json::json!({
        "plan": p.plan_id,
        "org": p.organization_id,
        "run": p.run_id,
        "state": plan_state_word(p.state),
        "source": match p.source { PlanSource::Webhook => "webhook", PlanSource::Console => "console" },
        "console_status": p.console_status,
        "decided_by": p.decided_by,
        "handled_at": p.handled_at,
        "snoozed_by": p.snoozed_by,
        "snoozed_until": p.snoozed_until,
        "flags": p.flags,
        "notified_at": p.notified_at,
    })
}

pub async fn plans(args: PlansArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::resolve(args.location.data_dir, args.location.config_dir)?;
    let dir = paths.data_dir.clone();
    let opened = tokio::task::spawn_blocking(move || Store::open(&dir).and_then(|store| store.plans())).await?;
    let plans = match opened {
        Ok(plans) => plans,
        // A receiver holds the store: ask it.
        #[cfg(unix)]
        Err(StoreError::Locked(dir)) => {
            let answer = zof_approvals::control::ask(&paths.data_dir, Op::Plans).await?;
            match answer.and_then(|a| a.plans) {
                Some(plans) => plans,
                None => return Err(StoreError::Locked(dir).into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    let rows: Vec<serde_json::Value> = plans.iter().map(row).collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&rows)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        writeln!(out, "no plans")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "{:<24} {:<14} {:<14} {:<9} {:<8} CONSOLE", "PLAN", "ORG", "RUN", "STATE", "SOURCE")?;
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
        let mut console = s("console_status");
        if !s("decided_by").is_empty() {
            console = format!("{console} by {}", s("decided_by"));
        }
        writeln!(
            out,
            "{:<24} {:<14} {:<14} {:<9} {:<8} {console}",
            s("plan"),
            s("org"),
            s("run"),
            s("state"),
            s("source")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
