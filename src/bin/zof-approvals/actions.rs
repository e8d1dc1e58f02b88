//! `zof-approvals handle` and `snooze`: the panel's two plan actions, for headless and scripted
//! use. With a receiver running on the data directory (`serve` or the desktop app) they ask it
//! over its control socket, so the notification is withdrawn and the views hear of it; otherwise
//! they open the store themselves and apply the same change. Either way the plan and its audit
//! row (source `cli`) are on disk before the command answers.
//!
//! Exit codes: 0 done (also `handle` of a plan that was already handled: the plan is handled);
//! 1 an error (no such plan, a bad duration, the store unavailable); 3 `snooze` of a plan that
//! was already handled or decided in the Console (nothing changed).

use std::process::ExitCode;

use chrono::SecondsFormat;
use zof_approvals::actions::{ActionError, ErrorCode, SNOOZE_MAX_MINUTES};
use zof_approvals::config::Paths;
#[cfg(unix)]
use zof_approvals::control::{self, Op, Request};
use zof_approvals::domain::audit::Source;
use zof_approvals::domain::plan::already_decided;
use zof_approvals::store::PlanRecord;

use crate::LocationArgs;

/// The exit code of a snooze that changed nothing because the plan was already decided.
const EXIT_ALREADY_DECIDED: u8 = 3;

#[derive(Debug, clap::Args)]
pub struct HandleArgs {
    /// The plan to mark handled.
    #[arg(value_name = "PLAN_ID")]
    plan_id: String,
    #[command(flatten)]
    location: LocationArgs,
}

#[derive(Debug, clap::Args)]
pub struct SnoozeArgs {
    /// The plan to snooze.
    #[arg(value_name = "PLAN_ID")]
    plan_id: String,
    /// For how long: 30m, 2h, 1d (1 minute to 7 days).
    #[arg(long = "for", value_name = "DURATION", default_value = "1h", value_parser = parse_snooze)]
    duration: u32,
    #[command(flatten)]
    location: LocationArgs,
}

/// A snooze length in whole minutes: `30m`, `2h`, `1d`, between 1 minute and 7 days.
fn parse_snooze(text: &str) -> Result<u32, String> {
    let span = crate::args::parse_duration(text)?;
    let minutes = span.num_minutes();
    if span.num_seconds() % 60 != 0 || minutes < 1 || minutes > i64::from(SNOOZE_MAX_MINUTES) {
        return Err(format!("`{text}`: snooze for whole minutes, between 1m and 7d"));
    }
    u32::try_from(minutes).map_err(|_| format!("`{text}` is too long"))
}

/// What an action came to, from the receiver or from the store.
enum Outcome {
    Done { plan: Box<PlanRecord>, already: bool },
    Failed { code: ErrorCode, message: String },
}

impl From<ActionError> for Outcome {
    fn from(e: ActionError) -> Outcome {
        Outcome::Failed { code: e.code(), message: e.to_string() }
    }
}

#[cfg(unix)]
fn from_answer(answer: control::Answer) -> Outcome {
    match (answer.ok, answer.plan) {
        (true, Some(plan)) => Outcome::Done { plan: Box::new(plan), already: answer.already.unwrap_or(false) },
        _ => Outcome::Failed {
            code: answer.code.unwrap_or(ErrorCode::Other),
            message: answer.error.unwrap_or_else(|| "the receiver could not do it".into()),
        },
    }
}

pub async fn handle(args: HandleArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::resolve(args.location.data_dir, args.location.config_dir)?;
    #[cfg(unix)]
    {
        let request = Request { plan_id: Some(args.plan_id.clone()), ..Request::new(Op::Handle) };
        if let Some(answer) = control::send(&paths.data_dir, &request).await? {
            return Ok(print_handled(from_answer(answer)));
        }
    }
    let actions = crate::offline::actions(paths).await?;
    let outcome = match actions.handle(&args.plan_id, Source::Cli).await {
        Ok(done) => Outcome::Done { plan: Box::new(done.plan), already: done.already },
        Err(e) => e.into(),
    };
    Ok(print_handled(outcome))
}

pub async fn snooze(args: SnoozeArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::resolve(args.location.data_dir, args.location.config_dir)?;
    let minutes = args.duration;
    #[cfg(unix)]
    {
        let request =
            Request { plan_id: Some(args.plan_id.clone()), minutes: Some(minutes), ..Request::new(Op::Snooze) };
        if let Some(answer) = control::send(&paths.data_dir, &request).await? {
            return Ok(print_snoozed(from_answer(answer)));
        }
    }
    let actions = crate::offline::actions(paths).await?;
    let outcome = match actions.snooze(&args.plan_id, minutes, Source::Cli).await {
        Ok(plan) => Outcome::Done { plan: Box::new(plan), already: false },
        Err(e) => e.into(),
    };
    Ok(print_snoozed(outcome))
}

fn print_handled(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Done { plan, already: false } => {
            let by = plan.decided_by.as_deref().unwrap_or("you");
            println!("Handled {} (by {by})", plan.plan_id);
            ExitCode::SUCCESS
        }
        Outcome::Done { plan, already: true } => {
            println!("{}", already_decided(&plan));
            ExitCode::SUCCESS
        }
        Outcome::Failed { message, .. } => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_snoozed(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Done { plan, .. } => {
            let until = plan
                .snoozed_until
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_else(|| "later".into());
            let by = plan.snoozed_by.as_deref().unwrap_or("you");
            println!("Snoozed {} until {until} (by {by})", plan.plan_id);
            ExitCode::SUCCESS
        }
        Outcome::Failed { code: ErrorCode::PlanHandled, message } => {
            eprintln!("{message}");
            ExitCode::from(EXIT_ALREADY_DECIDED)
        }
        Outcome::Failed { message, .. } => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_snooze;

    #[test]
    fn snooze_durations_are_whole_minutes_between_one_minute_and_seven_days() {
        assert_eq!(parse_snooze("30m"), Ok(30));
        assert_eq!(parse_snooze("2h"), Ok(120));
        assert_eq!(parse_snooze("7d"), Ok(7 * 24 * 60));
        for bad in ["0", "30s", "90s", "8d", "1w", "soon", ""] {
            assert!(parse_snooze(bad).is_err(), "{bad}");
        }
    }
}
