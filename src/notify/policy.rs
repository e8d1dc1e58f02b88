//! When and how the user is told, decided without D-Bus, a store or a clock of its own, so every
//! rule is unit-tested here: more than N arrivals in a window share one summary ([`Coalescer`]),
//! quiet hours that may wrap midnight and the mute switch ([`quiet_now`]), when the panel comes
//! forward ([`AttentionGate`]), when a plan is escalated ([`escalation_after`]) and what a click
//! on a notification means ([`react`]).

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, Timelike, Utc};

use crate::config::{parse_hhmm, NotificationSettings, QuietHours};

/// The panel is brought forward at most this often during a burst.
const ATTENTION_EVERY: Duration = Duration::from_secs(2);

/// Decides when an arrival brings the panel forward (`CoreEvent::Attention`): once per plan,
/// whether or not its notification could be shown (a retry after a failed notification does not
/// raise the panel again), and at most once per [`ATTENTION_EVERY`] during a burst.
#[derive(Debug, Default)]
pub struct AttentionGate {
    seen: HashSet<String>,
    last: Option<Instant>,
}

impl AttentionGate {
    /// Plan ids remembered; past this the memory starts over (a plan may then raise twice).
    const REMEMBER: usize = 4096;

    pub fn admit(&mut self, plan_id: &str, now: Instant) -> bool {
        if self.seen.contains(plan_id) {
            return false;
        }
        if self.seen.len() >= Self::REMEMBER {
            self.seen.clear();
        }
        self.seen.insert(plan_id.to_owned());
        if self.last.is_some_and(|t| now.duration_since(t) < ATTENTION_EVERY) {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// Counts arrivals in a sliding window: past the threshold, plans share one summary.
#[derive(Debug, Default)]
pub struct Coalescer {
    arrivals: VecDeque<Instant>,
}

impl Coalescer {
    /// Records an arrival; `true` when it should go into the summary.
    pub fn arrive(&mut self, now: Instant, threshold: u32, window: Duration) -> bool {
        while self.arrivals.front().is_some_and(|t| now.duration_since(*t) > window) {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(now);
        // Only "more than threshold" matters: keep no more than threshold + 1 arrivals.
        while self.arrivals.len() > threshold as usize + 1 {
            self.arrivals.pop_front();
        }
        self.arrivals.len() > threshold as usize
    }
}

/// Whether local time `minute_of_day` (0..1440) falls in the quiet hours (which may wrap midnight).
pub fn in_quiet_hours(quiet: &QuietHours, minute_of_day: u32) -> bool {
    let (Some(start), Some(end)) = (parse_hhmm(&quiet.start), parse_hhmm(&quiet.end)) else {
        return false;
    };
    if start <= end {
        (start..end).contains(&minute_of_day)
    } else {
        minute_of_day >= start || minute_of_day < end
    }
}

/// Whether notifications are held back at `now`: muted, or in the quiet hours (local time).
pub fn quiet_now(prefs: &NotificationSettings, muted_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    if muted_until.is_some_and(|t| t > now) {
        return true;
    }
    let local = now.with_timezone(&Local);
    prefs.quiet_hours.as_ref().is_some_and(|q| in_quiet_hours(q, local.hour() * 60 + local.minute()))
}

/// When the quiet time in force at `now` may end: the mute's end or the end of the quiet hours,
/// whichever comes first (the caller looks again then, and it may still be quiet: the other one
/// may still hold). `None` when it is not quiet at `now`.
pub fn quiet_ends(
    prefs: &NotificationSettings,
    muted_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if !quiet_now(prefs, muted_until, now) {
        return None;
    }
    let mute = muted_until.filter(|t| *t > now);
    let local = now.with_timezone(&Local);
    let minute = local.hour() * 60 + local.minute();
    let hours = prefs.quiet_hours.as_ref().filter(|q| in_quiet_hours(q, minute)).and_then(|q| {
        let end = parse_hhmm(&q.end)?;
        // Whole minutes from the start of this minute; a daylight saving change on the way
        // makes this an hour off, which the caller's next look corrects.
        let ahead = (end + 1440 - minute) % 1440;
        let this_minute = now
            - chrono::Duration::seconds(i64::from(local.second()))
            - chrono::Duration::nanoseconds(i64::from(local.nanosecond()));
        Some(this_minute + chrono::Duration::minutes(i64::from(ahead)))
    });
    mute.into_iter().chain(hours).min()
}

/// How long a plan may wait for approval before it is notified once more, urgently.
pub fn escalation_after(prefs: &NotificationSettings) -> chrono::Duration {
    chrono::Duration::minutes(i64::from(prefs.escalation_minutes))
}

/// What a live notification stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Plan(String),
    Summary,
}

/// What the user did with a notification, as the notification server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A click on the notification itself.
    Default,
    Action(String),
    Closed,
}

/// What the notifier does about a [`Response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// The notification is gone: stop tracking it.
    Forget,
    OpenPlan(String),
    OpenQueue,
    /// "Snooze 1 h" on a plan: the core applies it (the notifier writes no store records).
    Snooze(String),
    /// An action this app never offered.
    Unknown(String),
}

/// The action key of "Snooze 1 h".
pub const SNOOZE_ACTION: &str = "snooze";
/// The action key of "Review": opens the plan's review (a notification never decides anything).
pub const REVIEW_ACTION: &str = "review";

pub fn react(subject: &Subject, response: Response) -> Reaction {
    match (subject, response) {
        (_, Response::Closed) => Reaction::Forget,
        (Subject::Plan(plan_id), Response::Default) => Reaction::OpenPlan(plan_id.clone()),
        (Subject::Summary, Response::Default) => Reaction::OpenQueue,
        (Subject::Plan(plan_id), Response::Action(key)) if key == SNOOZE_ACTION => Reaction::Snooze(plan_id.clone()),
        (Subject::Plan(plan_id), Response::Action(key)) if key == REVIEW_ACTION => Reaction::OpenPlan(plan_id.clone()),
        (_, Response::Action(other)) => Reaction::Unknown(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_arrivals_pass_and_the_fourth_in_the_window_is_coalesced() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let got: Vec<bool> = (0..6).map(|i| c.arrive(t0 + Duration::from_secs(i), 3, w)).collect();
        assert_eq!(got, vec![false, false, false, true, true, true]);
        assert!(!c.arrive(t0 + Duration::from_secs(30), 3, w), "a later arrival starts afresh");
    }

    #[test]
    fn quiet_hours_may_wrap_midnight() {
        let night = QuietHours { start: "22:00".into(), end: "07:00".into() };
        let lunch = QuietHours { start: "12:00".into(), end: "13:00".into() };
        let at = |h: u32, m: u32| h * 60 + m;
        assert!(in_quiet_hours(&night, at(23, 30)) && in_quiet_hours(&night, at(6, 59)));
        assert!(!in_quiet_hours(&night, at(7, 0)) && !in_quiet_hours(&night, at(21, 59)));
        assert!(in_quiet_hours(&lunch, at(12, 30)) && !in_quiet_hours(&lunch, at(13, 0)));
    }

    #[test]
    fn a_plan_brings_the_panel_forward_once_and_a_burst_at_most_every_two_seconds() {
        let mut gate = AttentionGate::default();
        let t0 = Instant::now();
        assert!(gate.admit("plan_a", t0));
        assert!(!gate.admit("plan_a", t0 + Duration::from_secs(60)), "a retry of the same plan");
        assert!(!gate.admit("plan_b", t0 + Duration::from_millis(500)), "within the burst");
        assert!(gate.admit("plan_c", t0 + Duration::from_secs(3)));
        assert!(!gate.admit("plan_b", t0 + Duration::from_secs(10)), "plan_b was seen in the burst");
    }

    #[test]
    fn quiet_time_ends_with_the_mute_or_the_quiet_hours_whichever_comes_first() {
        let now = Utc::now();
        let local = now.with_timezone(&Local);
        let minute = local.hour() * 60 + local.minute();
        let hhmm = |m: u32| format!("{:02}:{:02}", (m % 1440) / 60, m % 60);
        let quiet = QuietHours { start: hhmm(minute + 1440 - 5), end: hhmm(minute + 10) };
        let prefs = NotificationSettings { quiet_hours: Some(quiet), ..NotificationSettings::default() };
        let ends = quiet_ends(&prefs, None, now).unwrap();
        assert_eq!(ends.with_timezone(&Local).format("%H:%M").to_string(), hhmm(minute + 10));
        assert!(ends > now && ends <= now + chrono::Duration::minutes(10));
        let mute = now + chrono::Duration::minutes(3);
        assert_eq!(quiet_ends(&prefs, Some(mute), now), Some(mute), "the earlier of the two");
        assert_eq!(quiet_ends(&NotificationSettings::default(), None, now), None, "not quiet");
    }

    #[test]
    fn a_mute_makes_it_quiet_until_it_ends() {
        let now = Utc::now();
        let prefs = NotificationSettings::default();
        let muted = Some(now + chrono::Duration::minutes(5));
        assert!(quiet_now(&prefs, muted, now));
        assert!(!quiet_now(&prefs, muted, now + chrono::Duration::minutes(6)));
        assert!(!quiet_now(&prefs, None, now));
    }

    #[test]
    fn escalation_waits_the_configured_minutes() {
        let prefs = NotificationSettings { escalation_minutes: 45, ..NotificationSettings::default() };
        assert_eq!(escalation_after(&prefs), chrono::Duration::minutes(45));
    }

    #[test]
    fn a_click_opens_its_plan_or_the_queue_and_snooze_goes_to_the_core() {
        let plan = Subject::Plan("plan_1".into());
        assert_eq!(react(&plan, Response::Default), Reaction::OpenPlan("plan_1".into()));
        assert_eq!(react(&Subject::Summary, Response::Default), Reaction::OpenQueue);
        assert_eq!(react(&plan, Response::Action("snooze".into())), Reaction::Snooze("plan_1".into()));
        assert_eq!(react(&plan, Response::Action("review".into())), Reaction::OpenPlan("plan_1".into()));
        assert_eq!(react(&plan, Response::Closed), Reaction::Forget);
        assert_eq!(react(&Subject::Summary, Response::Action("snooze".into())), Reaction::Unknown("snooze".into()));
        assert_eq!(react(&plan, Response::Action("approve".into())), Reaction::Unknown("approve".into()));
    }
}
