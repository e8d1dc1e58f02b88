//! `zof-approvals show`, `approve` and `reject`: review a plan and decide it as the person the
//! Console token belongs to. With a receiver running on the data directory they go through it
//! (the window and the notifications follow); otherwise they reach the Console directly and
//! record the decision in the store here. Text from the Console is printed with control
//! characters shown, never sent to the terminal.
//!
//! Exit codes: 0 decided; 1 not decided (an error), or outcome unknown, and it says which;
//! 2 bad arguments (no `--yes` without a terminal, an empty reason); 3 conflict (the plan
//! changed, or was already decided: it says by whom); 4 not permitted, or expired.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use zof_approvals::actions::{Actions, DecisionOutcome, DecisionReport, Review};
use zof_approvals::console::{RetryPolicy, Reviews};
use zof_approvals::domain::audit::Source;
use zof_approvals::domain::review::{terminal_safe, PlanDetails, Verdict};

use crate::console::ConnectionArgs;

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The plan to show.
    #[arg(value_name = "PLAN_ID")]
    plan_id: String,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: ConnectionArgs,
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The plan to approve.
    #[arg(value_name = "PLAN_ID")]
    plan_id: String,
    /// A comment recorded with the approval.
    #[arg(long, value_name = "TEXT", default_value = "")]
    comment: String,
    /// Approve without asking (required without a terminal).
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    conn: ConnectionArgs,
}

#[derive(Debug, clap::Args)]
pub struct RejectArgs {
    /// The plan to reject.
    #[arg(value_name = "PLAN_ID")]
    plan_id: String,
    /// Why (required).
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Reject without asking.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    conn: ConnectionArgs,
}

/// Where the plan is reviewed and decided: the receiver that holds the store, or here.
enum Place {
    #[cfg(unix)]
    Receiver(std::path::PathBuf),
    Here(Actions),
}

impl Place {
    async fn open(conn: ConnectionArgs) -> anyhow::Result<Place> {
        let (r, env) = conn.resolve()?;
        #[cfg(unix)]
        {
            use zof_approvals::control::{ask, Op};
            if ask(&r.paths.data_dir, Op::Status).await?.is_some() {
                return Ok(Place::Receiver(r.paths.data_dir));
            }
        }
        let client = crate::console::client(&r, env, RetryPolicy::default()).await;
        let actions = crate::offline::actions(r.paths).await?;
        if let Ok(client) = client {
            actions.serve_reviews(std::sync::Arc::new(Reviews::with_client(client)));
        }
        Ok(Place::Here(actions))
    }

    async fn review(&self, plan_id: &str) -> anyhow::Result<Review> {
        match self {
            #[cfg(unix)]
            Place::Receiver(dir) => {
                use zof_approvals::control::{send, Op, Request};
                let request = Request { plan_id: Some(plan_id.to_owned()), ..Request::new(Op::Review) };
                let answer = send(dir, &request).await?.ok_or_else(|| anyhow::anyhow!("the receiver stopped"))?;
                answer.review.ok_or_else(|| anyhow::anyhow!(answer.error.unwrap_or_else(|| "no review".into())))
            }
            Place::Here(actions) => Ok(actions.review(plan_id).await?),
        }
    }

    async fn decide(&self, plan_id: &str, verdict: Verdict, shown: Option<String>, comment: &str) -> DecisionReport {
        match self {
            #[cfg(unix)]
            Place::Receiver(dir) => {
                use zof_approvals::control::{send, Op, Request};
                let request = Request {
                    plan_id: Some(plan_id.to_owned()),
                    verdict: Some(verdict),
                    revision: shown,
                    comment: Some(comment.to_owned()),
                    ..Request::new(Op::Decide)
                };
                match send(dir, &request).await {
                    Ok(Some(answer)) => answer.decision.unwrap_or_else(|| DecisionReport {
                        outcome: DecisionOutcome::Failed,
                        message: answer.error.unwrap_or_else(|| "the receiver could not decide".into()),
                        details: None,
                    }),
                    Ok(None) | Err(_) => DecisionReport {
                        outcome: DecisionOutcome::Unknown,
                        message: "Outcome unknown: the receiver stopped answering; check the plan with `show`".into(),
                        details: None,
                    },
                }
            }
            Place::Here(actions) => actions.decide(plan_id, verdict, shown, comment, Source::Cli).await,
        }
    }
}

pub async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let place = Place::open(args.conn).await?;
    let review = place.review(&args.plan_id).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&show_json(&review))?)?;
    } else {
        print_review(&mut out, &review)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn approve(args: ApproveArgs) -> anyhow::Result<ExitCode> {
    decide(args.conn, &args.plan_id, Verdict::Approve, &args.comment, args.yes).await
}

pub async fn reject(args: RejectArgs) -> anyhow::Result<ExitCode> {
    if args.reason.trim().is_empty() {
        eprintln!("error: a rejection needs a reason (--reason TEXT)");
        return Ok(ExitCode::from(2));
    }
    decide(args.conn, &args.plan_id, Verdict::Reject, &args.reason, true).await
}

async fn decide(
    conn: ConnectionArgs,
    plan_id: &str,
    verdict: Verdict,
    comment: &str,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let terminal = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if verdict == Verdict::Approve && !yes && !terminal {
        eprintln!("error: approving without a terminal needs --yes");
        return Ok(ExitCode::from(2));
    }
    let place = Place::open(conn).await?;
    let review = place.review(plan_id).await?;
    let details = review.details.as_ref();
    let shown = details.and_then(|d| d.revision.clone());
    if terminal {
        let word = if verdict == Verdict::Approve { "Approve" } else { "Reject" };
        eprintln!("{word} {}", headline(plan_id, details));
        eprint!("{word} this plan? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("not decided: nothing was sent");
            return Ok(ExitCode::FAILURE);
        }
    }
    let report = place.decide(plan_id, verdict, shown, comment).await;
    let line = terminal_safe(&report.message);
    if report.outcome == DecisionOutcome::Decided {
        println!("{line}");
    } else {
        eprintln!("{line}");
    }
    Ok(ExitCode::from(report.outcome.exit_code()))
}

/// "Roll back checkout · prod-eu · high risk", or the plan id when the Console said nothing.
fn headline(plan_id: &str, details: Option<&PlanDetails>) -> String {
    let Some(d) = details else { return plan_id.to_owned() };
    let mut parts = vec![terminal_safe(d.title.as_deref().unwrap_or(plan_id))];
    parts.extend(d.environment.as_deref().map(terminal_safe));
    parts.extend(d.risk.map(|r| format!("{} risk", r.as_str())));
    parts.join(" · ")
}

/// `show --json`: exactly the documented keys.
fn show_json(review: &Review) -> serde_json::Value {
    let d = review.details.as_ref();
    let r = &review.rights;
    serde_json::json!({
        "plan": review.plan.plan_id,
        "title": d.and_then(|d| d.title.clone()),
        "summary": d.and_then(|d| d.summary.clone()),
        "risk": d.and_then(|d| d.risk),
        "environment": d.and_then(|d| d.environment.clone()),
        "service": d.and_then(|d| d.service.clone()),
        "policy_pack": d.and_then(|d| d.policy_pack.clone()),
        "requested_by": d.and_then(|d| d.requested_by.clone()),
        "steps": d.map(|d| d.steps.clone()).unwrap_or_default(),
        "diff": d.and_then(|d| d.diff.clone()),
        "revision": d.and_then(|d| d.revision.clone()),
        "expires_at": d.and_then(|d| d.expires_at),
        "can_decide": r.can_decide,
        "cannot_decide_reason": r.cannot_decide_reason,
        "state": d.map_or_else(|| format!("{:?}", review.plan.state).to_lowercase(), |d| d.status.clone()),
    })
}

fn print_review(out: &mut impl Write, review: &Review) -> anyhow::Result<()> {
    let plan = &review.plan;
    let Some(d) = &review.details else {
        writeln!(out, "{} (run {}, organization {})", plan.plan_id, plan.run_id, plan.organization_id)?;
        let why = review.problem.as_deref().unwrap_or("the Console has not described it");
        writeln!(out, "no details: {}", terminal_safe(why))?;
        return Ok(());
    };
    let safe = |s: &Option<String>| s.as_deref().map(terminal_safe);
    writeln!(out, "{}", headline(&plan.plan_id, Some(d)))?;
    writeln!(
        out,
        "plan {} · run {} · organization {} · {}",
        plan.plan_id,
        plan.run_id,
        plan.organization_id,
        terminal_safe(&d.status)
    )?;
    for (label, value) in [
        ("service", safe(&d.service)),
        ("requested by", safe(&d.requested_by)),
        ("policy pack", d.policy_pack.as_ref().map(|p| terminal_safe(&p.name))),
        ("revision", safe(&d.revision)),
        ("expires", d.expires_at.map(|t| t.to_rfc3339())),
    ] {
        if let Some(v) = value {
            writeln!(out, "{label}: {v}")?;
        }
    }
    if let Some(summary) = safe(&d.summary) {
        writeln!(out, "\n{summary}")?;
    }
    if !d.steps.is_empty() {
        writeln!(out, "\nsteps:")?;
        for (n, s) in d.steps.iter().enumerate() {
            writeln!(
                out,
                "  {}. {} {}  {}",
                n + 1,
                terminal_safe(&s.action),
                terminal_safe(&s.target),
                terminal_safe(&s.detail)
            )?;
        }
        if d.steps_omitted > 0 {
            writeln!(out, "  … {} more steps in the Console", d.steps_omitted)?;
        }
    }
    if let Some(diff) = safe(&d.diff) {
        writeln!(out, "\ndiff:\n{diff}")?;
        if d.diff_cut {
            writeln!(out, "… the rest is in the Console")?;
        }
    }
    let r = &review.rights;
    let why = terminal_safe(r.cannot_decide_reason.as_deref().unwrap_or_default());
    if r.decided {
        writeln!(out, "\ndecided: {why}")?;
    } else if r.can_decide {
        writeln!(out, "\nyou may decide it: zof-approvals approve {0} / reject {0} --reason …", plan.plan_id)?;
    } else {
        writeln!(out, "\nyou may not decide it: {why}")?;
    }
    if let Some(problem) = &review.problem {
        writeln!(out, "(not refreshed: {})", terminal_safe(problem))?;
    }
    Ok(())
}
