//! A remediation plan as the app knows it, and every change a plan goes through: it arrives
//! (or is announced again), is handled, snoozed, woken, resolved in the Console, or changed by a
//! teammate's action. One function per change, used by every path that makes it (the panel, the
//! CLI, a notification, the team relay), so two paths can never disagree about what a change does.
//! Pure: no I/O, no clock of its own (every time is passed in).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::audit::Source;
use super::team::{TeamAction, TeamVerb};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    Pending,
    Snoozed,
    Handled,
    /// Decided in the Console (approved, rejected, expired, cancelled): out of the queue, with no
    /// notification and no escalation left.
    Resolved,
}

/// How a plan first reached this app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanSource {
    /// A verified `remediation.plan_pending` delivery.
    #[default]
    Webhook,
    /// Reconciliation with the Console found it pending there, never delivered here.
    Console,
}

/// The prefix of the synthetic event a plan found in the Console is recorded under, so it takes
/// the same store → outbox path as a delivered one.
pub const CONSOLE_EVENT_PREFIX: &str = "console:";

/// A remediation plan that awaited (or awaits) approval, keyed by plan id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub plan_id: String,
    pub event_id: String,
    pub run_id: String,
    pub organization_id: String,
    pub created: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub state: PlanState,
    #[serde(default)]
    pub snoozed_until: Option<DateTime<Utc>>,
    /// When the user was told (notification shown, or summarized); `None`: not yet.
    #[serde(default)]
    pub notified_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub escalated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub handled_at: Option<DateTime<Utc>>,
    /// Arrived during quiet hours or a mute: to be summarized when they end.
    #[serde(default)]
    pub held: bool,
    /// What a person should know about this plan beyond its state (see [`PlanFlag`]).
    #[serde(default)]
    pub flags: Vec<PlanFlag>,
    /// Where the plan first came from.
    #[serde(default)]
    pub source: PlanSource,
    /// The plan's status in the Console when reconciliation last looked at it, as the Console
    /// said it (an unknown status is kept as is).
    #[serde(default)]
    pub console_status: Option<String>,
    /// Who decided it in the Console, when the Console says.
    #[serde(default)]
    pub decided_by: Option<String>,
    /// When it was decided in the Console (the Console's `updated`, else when we learned it).
    #[serde(default)]
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who snoozed it, while it is snoozed (or last snoozed it).
    #[serde(default)]
    pub snoozed_by: Option<String>,
    /// The id of the action that marked it handled (a team action's id), so every laptop keeps
    /// the same decision when two teammates handle it at once: the earliest, then the lowest id.
    #[serde(default)]
    pub decision_id: Option<String>,
    /// When the snooze in force was asked for: of two teammates' snoozes, the later stands.
    #[serde(default)]
    pub snoozed_at: Option<DateTime<Utc>>,
    /// Where the snooze in force was asked from (the panel, a notification, the CLI, a
    /// teammate): the row of the snooze's end says it, without reading the audit log.
    #[serde(default)]
    pub snoozed_source: Option<Source>,
    /// Title, environment, risk and service, once the Console's details of the plan came.
    #[serde(default)]
    pub headline: super::review::Headline,
    /// The comment (or reason) of a decision made from the app.
    #[serde(default)]
    pub decision_comment: Option<String>,
}

/// Something about a plan that needs a person's eye; shown in next actions, the plan and `inbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanFlag {
    /// A verified delivery named this plan id under another organization; it was not merged.
    TenantMismatch,
    /// Telling the user failed for longer than the retry limit: the work was given up.
    NotNotified,
    /// The Console disagrees about this plan (another run or organization, or it does not know
    /// it); the activity log says what. The plan is kept.
    ConsoleDisagrees,
}

impl PlanRecord {
    /// A plan that has just arrived: pending, nothing told or done yet.
    pub fn arrived(
        plan_id: &str,
        event_id: &str,
        run_id: &str,
        organization_id: &str,
        created: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> PlanRecord {
        PlanRecord {
            plan_id: plan_id.to_owned(),
            event_id: event_id.to_owned(),
            run_id: run_id.to_owned(),
            organization_id: organization_id.to_owned(),
            created,
            received_at,
            state: PlanState::Pending,
            snoozed_until: None,
            notified_at: None,
            escalated_at: None,
            handled_at: None,
            held: false,
            flags: Vec::new(),
            source: if event_id.starts_with(CONSOLE_EVENT_PREFIX) { PlanSource::Console } else { PlanSource::Webhook },
            console_status: None,
            decided_by: None,
            resolved_at: None,
            snoozed_by: None,
            decision_id: None,
            snoozed_at: None,
            snoozed_source: None,
            headline: super::review::Headline::default(),
            decision_comment: None,
        }
    }
}

/// Who changes a plan, when, and under which action id (`act_…`): the same for a change made
/// here and for a teammate's, so both go through the same transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The action's id: how every laptop agrees which of two decisions stands.
    pub id: String,
    pub by: String,
    pub source: Source,
    pub at: DateTime<Utc>,
}

/// Why a change was not made to a plan. Its text is what the audit log and the answer say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotApplied {
    #[error("it was already decided in the Console")]
    DecidedInConsole,
    #[error("it was already handled by {by}")]
    AlreadyHandled { by: String },
    #[error("a snooze of a plan already handled (by {by}) does nothing")]
    SnoozeOfDecided { by: String },
    #[error("the snooze had ended before it arrived")]
    SnoozeEnded,
    #[error("a later snooze by {by} stands")]
    LaterSnoozeStands { by: String },
    #[error("the action names organization `{action}`, but the plan belongs to `{plan}`")]
    OtherOrganization { action: String, plan: String },
    #[error("a snooze without an end time")]
    NoUntil,
    #[error("an earlier decision waits for this plan")]
    EarlierDecisionWaits,
    /// The action answers another announcement of this plan id (an older run, replayed).
    #[error("the action names run `{action}`, but the plan was announced for run `{plan}`")]
    OtherRun { action: String, plan: String },
    /// Sent by a version that did not name the run: it cannot be tied to an announcement.
    #[error("the action names no run (sent by an older version); it is not applied")]
    NoRun,
}

/// The longest a snooze lasts, whoever asks for it.
pub const SNOOZE_MAX: chrono::Duration = chrono::Duration::days(7);

/// Orders decisions the same way on every laptop: the earlier one, then the lower id.
fn earlier(a: (Option<DateTime<Utc>>, Option<&str>), b: (DateTime<Utc>, &str)) -> bool {
    match a {
        (Some(at), id) => (at, id.unwrap_or("")) < b,
        (None, _) => false,
    }
}

impl PlanRecord {
    /// A snooze that has ended makes the plan pending again, not yet told; anything else stays.
    pub fn wake(&mut self, now: DateTime<Utc>) {
        if self.state == PlanState::Snoozed && self.snoozed_until.is_none_or(|until| until <= now) {
            self.state = PlanState::Pending;
            self.snoozed_until = None;
            self.notified_at = None;
            self.held = false;
        }
    }

    /// Marks the plan handled by `decision`. Of two "handled", the earliest stands (then the
    /// lower id), so every laptop keeps the same one whichever it heard first; a plan decided
    /// in the Console stays as it is.
    pub fn handle(&mut self, decision: &Decision) -> Result<(), NotApplied> {
        match self.state {
            PlanState::Resolved => return Err(NotApplied::DecidedInConsole),
            PlanState::Handled
                if earlier((self.handled_at, self.decision_id.as_deref()), (decision.at, &decision.id)) =>
            {
                return Err(NotApplied::AlreadyHandled { by: self.decided_by.clone().unwrap_or_default() });
            }
            PlanState::Handled | PlanState::Pending | PlanState::Snoozed => {}
        }
        self.state = PlanState::Handled;
        self.handled_at = Some(decision.at);
        self.snoozed_until = None;
        self.held = false;
        self.decided_by = Some(decision.by.clone());
        self.decision_id = Some(decision.id.clone());
        Ok(())
    }

    /// Snoozes the plan until `until` (at most [`SNOOZE_MAX`] after the decision). A plan that
    /// is handled or decided stays so; of two snoozes the later stands; a snooze that ended
    /// before `now` does nothing.
    pub fn snooze(&mut self, decision: &Decision, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), NotApplied> {
        if !self.is_open() {
            let by = self.decided_by.clone().unwrap_or_else(|| "someone".into());
            return Err(NotApplied::SnoozeOfDecided { by });
        }
        let until = until.min(decision.at + SNOOZE_MAX);
        if until <= now {
            return Err(NotApplied::SnoozeEnded);
        }
        let later = (self.snoozed_at, self.decision_id.as_deref().unwrap_or(""));
        if self.state == PlanState::Snoozed && later.0.is_some_and(|at| (at, later.1) > (decision.at, &decision.id)) {
            return Err(NotApplied::LaterSnoozeStands { by: self.snoozed_by.clone().unwrap_or_default() });
        }
        self.state = PlanState::Snoozed;
        self.snoozed_until = Some(until);
        self.snoozed_by = Some(decision.by.clone());
        self.snoozed_at = Some(decision.at);
        self.snoozed_source = Some(decision.source.clone());
        self.decision_id = Some(decision.id.clone());
        Ok(())
    }

    /// The Console decided the plan (`status`, by `decided_by`, at `at`): an open plan leaves
    /// the queue as resolved. The Console's word is kept either way. `true` when it was open.
    pub fn resolve(&mut self, status: &str, decided_by: Option<&str>, at: DateTime<Utc>) -> bool {
        let was_open = self.is_open();
        self.console_status = Some(status.to_owned());
        self.decided_by = decided_by.map(str::to_owned);
        if was_open {
            self.state = PlanState::Resolved;
            self.resolved_at = Some(at);
            self.snoozed_until = None;
            self.held = false;
            // Decided in the Console itself, not through this app.
            self.decision_id = None;
        }
        was_open
    }

    /// A person approved or rejected the plan from the app (the Console took it: `status` is
    /// `approved` or `rejected`). Whatever its state here, it leaves the queue decided, with
    /// who, when and the comment; a plan already decided this way stays as the first decision.
    pub fn decide(&mut self, status: &str, comment: Option<&str>, decision: &Decision) -> Result<(), NotApplied> {
        if self.state == PlanState::Resolved && self.decision_id.is_some() {
            return Err(NotApplied::DecidedInConsole);
        }
        self.state = PlanState::Resolved;
        self.console_status = Some(status.to_owned());
        self.decided_by = Some(decision.by.clone());
        self.resolved_at = Some(decision.at);
        self.snoozed_until = None;
        self.held = false;
        self.decision_id = Some(decision.id.clone());
        self.decision_comment = comment.map(str::to_owned);
        Ok(())
    }

    /// A teammate's action, through the same transition as the same action taken here. An
    /// action applies only to a plan of its own organization, announced for the run it names:
    /// an old action replayed after the plan id was announced again decides nothing.
    pub fn apply_team(&mut self, action: &TeamAction, source: Source, now: DateTime<Utc>) -> Result<(), NotApplied> {
        if action.organization_id != self.organization_id {
            return Err(NotApplied::OtherOrganization {
                action: action.organization_id.clone(),
                plan: self.organization_id.clone(),
            });
        }
        match &action.run_id {
            None => return Err(NotApplied::NoRun),
            Some(run) if *run != self.run_id => {
                return Err(NotApplied::OtherRun { action: run.clone(), plan: self.run_id.clone() });
            }
            Some(_) => {}
        }
        let decision = Decision { id: action.id.clone(), by: action.by.clone(), source, at: action.at };
        match action.action {
            TeamVerb::Handled => self.handle(&decision),
            TeamVerb::Snoozed => self.snooze(&decision, action.until.ok_or(NotApplied::NoUntil)?, now),
            TeamVerb::Decided => {
                let status = action.status.as_deref().unwrap_or("approved");
                self.decide(status, action.comment.as_deref(), &decision)
            }
            TeamVerb::Resolved => {
                let status = action.status.as_deref().unwrap_or("resolved");
                if self.resolve(status, Some(&action.by), action.at) {
                    Ok(())
                } else {
                    Err(NotApplied::DecidedInConsole)
                }
            }
        }
    }

    pub fn flag(&mut self, flag: PlanFlag) {
        if !self.flags.contains(&flag) {
            self.flags.push(flag);
        }
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, PlanState::Handled | PlanState::Resolved)
    }
}

/// What applying a team action did on this laptop.
#[derive(Debug, Clone, PartialEq)]
pub enum TeamOutcome {
    /// The plan changed; its notification is withdrawn.
    Applied(Box<PlanRecord>),
    /// The plan has not arrived here yet: the action waits for it, and applies as it arrives.
    Early,
    /// Nothing changed; the audit log says why (a handled plan snoozed, an earlier decision).
    NotApplied(NotApplied),
    /// Seen before (this laptop's own action coming back, or a redelivery).
    Seen,
}

/// What an announcement of a plan (a verified delivery, or the Console's word that it is
/// pending) says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement<'a> {
    pub plan_id: &'a str,
    pub event_id: &'a str,
    pub run_id: &'a str,
    pub organization_id: &'a str,
    pub created: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

/// What an announcement does to its plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub plan: PlanRecord,
    /// The plan belongs to this other organization: the announcement was not merged.
    pub mismatch: Option<String>,
}

/// A plan arrives, or is announced again: the transition every intake source's plans take.
pub fn arrive(previous: Option<PlanRecord>, event: &Announcement<'_>) -> Merged {
    let merged = |plan| Merged { plan, mismatch: None };
    match previous {
        // Already recorded for this very event (a rebuild after a crash): keep it as it is.
        Some(same) if same.event_id == event.event_id => merged(same),
        // Decided in the Console: a late or repeated announcement does not bring it back.
        Some(resolved) if resolved.state == PlanState::Resolved => merged(resolved),
        // Found in the Console while its delivery was still being settled: the delivery's plan stands.
        Some(open) if open.is_open() && event.event_id.starts_with(CONSOLE_EVENT_PREFIX) => merged(open),
        // A plan id belongs to the organization that announced it first.
        Some(mut other) if other.organization_id != event.organization_id => {
            let org = other.organization_id.clone();
            other.flag(PlanFlag::TenantMismatch);
            Merged { plan: other, mismatch: Some(org) }
        }
        // The same plan announced again while still open keeps its state and notification
        // history; the latest verified delivery names its run.
        Some(open) if open.is_open() => merged(PlanRecord {
            event_id: event.event_id.to_owned(),
            run_id: event.run_id.to_owned(),
            received_at: event.received_at,
            created: event.created,
            ..open
        }),
        _ => merged(PlanRecord::arrived(
            event.plan_id,
            event.event_id,
            event.run_id,
            event.organization_id,
            event.created,
            event.received_at,
        )),
    }
}

/// The plan detail's line for a plan decided in the Console.
pub fn resolution_line(p: &PlanRecord) -> Option<String> {
    let when = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    match (p.state, &p.decided_by, &p.snoozed_by) {
        (PlanState::Handled, Some(by), _) => {
            let at = p.handled_at.map(|t| format!(" at {}", when(t))).unwrap_or_default();
            return Some(format!("Handled by {by}{at}"));
        }
        (PlanState::Snoozed, _, Some(by)) => {
            let until = p.snoozed_until.map(|t| format!(" until {}", when(t))).unwrap_or_default();
            return Some(format!("Snoozed by {by}{until}"));
        }
        (PlanState::Resolved, Some(by), _) if p.decision_id.is_some() => {
            let word = if p.console_status.as_deref() == Some("rejected") { "Rejected" } else { "Approved" };
            let at = p.resolved_at.map(|t| format!(" at {}", when(t))).unwrap_or_default();
            let comment = p.decision_comment.as_deref().map(|c| format!(": \u{201c}{c}\u{201d}")).unwrap_or_default();
            return Some(format!("{word} by {by}{at}{comment}"));
        }
        (PlanState::Resolved, _, _) => {}
        _ => return None,
    }
    let status = p.console_status.as_deref().unwrap_or("resolved");
    let mut line = format!("{} in Console", super::words::status_word(status));
    if let Some(by) = &p.decided_by {
        line.push_str(&format!(" by {by}"));
    }
    if let Some(at) = p.resolved_at {
        line.push_str(&format!(" at {}", at.format("%Y-%m-%d %H:%M UTC")));
    }
    Some(line)
}

/// "plan_x was already handled by bob at 2026-05-20 14:02 UTC" (or decided in the Console).
pub fn already_decided(plan: &PlanRecord) -> String {
    let how = resolution_line(plan).map_or_else(
        || "marked handled (or decided in the Console)".to_owned(),
        |line| super::words::continuing(&line),
    );
    format!("{} was already {how}", plan.plan_id)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn plan(run: &str) -> PlanRecord {
        PlanRecord::arrived("plan_1", "evt_1", run, "org_abc", Utc::now(), Utc::now())
    }

    fn action(verb: TeamVerb, run: Option<&str>, at: DateTime<Utc>) -> TeamAction {
        TeamAction {
            id: "act_1".into(),
            plan_id: "plan_1".into(),
            organization_id: "org_abc".into(),
            run_id: run.map(str::to_owned),
            action: verb,
            by: "alice".into(),
            at,
            until: (verb == TeamVerb::Snoozed).then(|| at + Duration::minutes(30)),
            status: None,
            comment: None,
        }
    }

    fn team() -> Source {
        Source::Team("me".into())
    }

    #[test]
    fn a_team_action_applies_only_to_the_announcement_whose_run_it_names() {
        let now = Utc::now();
        let mut again = plan("run_2");
        let old = action(TeamVerb::Handled, Some("run_1"), now);
        assert_eq!(
            again.apply_team(&old, team(), now),
            Err(NotApplied::OtherRun { action: "run_1".into(), plan: "run_2".into() })
        );
        let unnamed = action(TeamVerb::Handled, None, now);
        assert_eq!(again.apply_team(&unnamed, team(), now), Err(NotApplied::NoRun));
        assert_eq!(again.state, PlanState::Pending, "nothing applied from another run");
        assert_eq!(again.apply_team(&action(TeamVerb::Handled, Some("run_2"), now), team(), now), Ok(()));
        assert_eq!(again.state, PlanState::Handled);
    }

    #[test]
    fn another_organizations_action_changes_nothing() {
        let now = Utc::now();
        let mut p = plan("run_1");
        let before = p.clone();
        let elsewhere =
            TeamAction { organization_id: "org_other".into(), ..action(TeamVerb::Handled, Some("run_1"), now) };
        assert_eq!(
            p.apply_team(&elsewhere, team(), now),
            Err(NotApplied::OtherOrganization { action: "org_other".into(), plan: "org_abc".into() })
        );
        assert_eq!(p, before);
    }

    #[test]
    fn a_team_snooze_lasts_at_most_seven_days_after_it_was_asked() {
        let now = Utc::now();
        let mut p = plan("run_1");
        let forever =
            TeamAction { until: Some(now + Duration::days(3650)), ..action(TeamVerb::Snoozed, Some("run_1"), now) };
        p.apply_team(&forever, team(), now).unwrap();
        assert_eq!((p.state, p.snoozed_until), (PlanState::Snoozed, Some(now + SNOOZE_MAX)));
    }
}
