//! `zof-approvals inbox`: the stored events and their plans' states, read straight from the store
//! (so only while no receiver holds it; it says so when one does).

use std::io::Write;
use std::process::ExitCode;

use zof_approvals::config::Paths;
use zof_approvals::store::{EventVerdict, PlanRecord, PlanState, Store};

use crate::LocationArgs;

#[derive(Debug, clap::Args)]
pub struct InboxArgs {
    #[command(flatten)]
    location: LocationArgs,
    #[arg(long)]
    json: bool,
}

pub async fn inbox(args: InboxArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::resolve(args.location.data_dir, args.location.config_dir)?;
    let dir = paths.data_dir.clone();
    let (rows, quarantined) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Vec<serde_json::Value>, usize)> {
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
                    "flags": plan.map(|p| p.flags.clone()).unwrap_or_default(),
                }));
            }
            Ok((rows, store.quarantined_count()))
        })
        .await??;
    if quarantined > 0 {
        // On stderr, so `--json` output stays one array.
        eprintln!(
            "note: {quarantined} stored record(s) could not be read (damaged, or written by a newer version) and were set aside"
        );
    }
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
            flagged(&s("state"), &r["flags"])
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn plan_state_word(state: PlanState) -> &'static str {
    match state {
        PlanState::Pending => "pending",
        PlanState::Snoozed => "snoozed",
        PlanState::Handled => "handled",
        PlanState::Resolved => "resolved",
    }
}

/// The state, with what needs a person's eye: `pending (not notified)`.
fn flagged(state: &str, flags: &serde_json::Value) -> String {
    let words: Vec<String> =
        flags.as_array().into_iter().flatten().filter_map(|f| f.as_str()).map(|f| f.replace('_', " ")).collect();
    if words.is_empty() {
        state.to_owned()
    } else {
        format!("{state} ({})", words.join(", "))
    }
}
