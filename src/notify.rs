//! Native notifications for pending plans, on notify-rust. The only module that names it.
//!
//! One async task owns every live notification. Calls from the outbox thread arrive as messages
//! and are answered when the D-Bus call returned (bounded by a timeout), so the acknowledgement
//! of a delivery never waits for a notification and a missing notification server never hangs
//! anything. Clicks are awaited by one small task per live notification (never a thread), and
//! coalescing keeps the number of live notifications small.
//!
//! Policy, all pure and unit-tested: [`Coalescer`] (more than N arrivals in a window share one
//! summary), [`in_quiet_hours`] (a daily schedule that may wrap midnight) and the mute switch.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, Timelike, Utc};
use notify_rust::{Notification, NotificationHandle, NotificationResponse, Timeout, Urgency};
use tokio::sync::{broadcast, mpsc};

use crate::config::{parse_hhmm, NotificationSettings, QuietHours};
use crate::events::CoreEvent;
use crate::outbox::{Notice, Notifier, NotifyError};
use crate::store::{PlanRecord, PlanState, Store};

pub const APP_NAME: &str = "Zof Approvals";
/// The icon the desktop package installs (named after the desktop binary).
pub const ICON: &str = "zof-approvals-desktop";
/// How long one D-Bus call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the outbox thread waits for the notification task's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The summary is updated in place at most this often during a burst.
const SUMMARY_EVERY: Duration = Duration::from_millis(250);
/// The "Snooze" action's duration.
pub const SNOOZE: chrono::Duration = chrono::Duration::hours(1);
/// Live notifications beyond this are closed oldest first (each has a waiting task).
const MAX_LIVE: usize = 32;
const MUTE_KEY: &str = "muted_until";
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

#[derive(Debug, Default)]
struct Shared {
    prefs: NotificationSettings,
    muted_until: Option<DateTime<Utc>>,
    status: Option<String>,
    store: Option<Store>,
}

impl Shared {
    fn quiet_now(&self, now: DateTime<Utc>) -> bool {
        if self.muted_until.is_some_and(|t| t > now) {
            return true;
        }
        let local = now.with_timezone(&Local);
        self.prefs.quiet_hours.as_ref().is_some_and(|q| in_quiet_hours(q, local.hour() * 60 + local.minute()))
    }
}

enum Request {
    Plan { plan: PlanRecord, escalation: bool, answer: std_mpsc::SyncSender<Result<Notice, NotifyError>> },
    Held { count: usize, answer: std_mpsc::SyncSender<Result<Notice, NotifyError>> },
    Withdraw(String),
    Responded { id: u32, response: Response },
    Stop(std_mpsc::SyncSender<()>),
}

#[derive(Debug)]
enum Response {
    Default,
    Action(String),
    Closed,
}

/// Native notifications through the desktop's notification server.
#[derive(Debug)]
pub struct DesktopNotifier {
    shared: Arc<Mutex<Shared>>,
    requests: mpsc::UnboundedSender<Request>,
    task: Mutex<Option<(mpsc::UnboundedReceiver<Request>, tokio::runtime::Handle)>>,
}

impl DesktopNotifier {
    /// Creates the notifier; its task starts on `runtime` when the application attaches it.
    pub fn new(runtime: tokio::runtime::Handle) -> DesktopNotifier {
        let (requests, inbox) = mpsc::unbounded_channel();
        DesktopNotifier {
            shared: Arc::new(Mutex::new(Shared::default())),
            requests,
            task: Mutex::new(Some((inbox, runtime))),
        }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn ask(
        &self,
        make: impl FnOnce(std_mpsc::SyncSender<Result<Notice, NotifyError>>) -> Request,
    ) -> Result<Notice, NotifyError> {
        let (answer, answered) = std_mpsc::sync_channel(1);
        self.requests.send(make(answer)).map_err(|_| NotifyError("the notification task stopped".into()))?;
        answered
            .recv_timeout(ANSWER_TIMEOUT)
            .map_err(|_| NotifyError("the notification server did not answer in time".into()))?
    }
}

impl Notifier for DesktopNotifier {
    fn attach(&self, store: &Store, events: &broadcast::Sender<CoreEvent>) {
        let muted = store.meta::<Option<DateTime<Utc>>>(MUTE_KEY).ok().flatten().flatten();
        {
            let mut s = self.shared();
            s.store = Some(store.clone());
            s.muted_until = muted;
        }
        let Some((inbox, runtime)) = self.task.lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        let task = Task {
            shared: self.shared.clone(),
            requests: self.requests.clone(),
            events: events.clone(),
            store: store.clone(),
            live: HashMap::new(),
            by_plan: HashMap::new(),
            summary: Summary::default(),
            coalescer: Coalescer::default(),
            attention: AttentionGate::default(),
        };
        runtime.spawn(task.run(inbox));
    }

    fn detach(&self) {
        self.shared().store = None;
        let (done, stopped) = std_mpsc::sync_channel(1);
        if self.requests.send(Request::Stop(done)).is_ok() {
            let _ = stopped.recv_timeout(ANSWER_TIMEOUT);
        }
    }

    fn plan_pending(&self, plan: &PlanRecord) -> Result<Notice, NotifyError> {
        if self.shared().quiet_now(Utc::now()) {
            return Ok(Notice::Held);
        }
        self.ask(|answer| Request::Plan { plan: plan.clone(), escalation: false, answer })
    }

    fn escalate(&self, plan: &PlanRecord) -> Result<Notice, NotifyError> {
        if self.shared().quiet_now(Utc::now()) {
            return Ok(Notice::Held);
        }
        self.ask(|answer| Request::Plan { plan: plan.clone(), escalation: true, answer })
    }

    fn summarize_held(&self, count: usize) -> Result<Notice, NotifyError> {
        if self.shared().quiet_now(Utc::now()) {
            return Ok(Notice::Held);
        }
        self.ask(|answer| Request::Held { count, answer })
    }

    fn escalation_after(&self) -> Option<chrono::Duration> {
        Some(chrono::Duration::minutes(i64::from(self.shared().prefs.escalation_minutes)))
    }

    fn status(&self) -> Option<String> {
        self.shared().status.clone()
    }

    fn withdraw(&self, plan_id: &str) {
        let _ = self.requests.send(Request::Withdraw(plan_id.to_owned()));
    }

    fn set_preferences(&self, prefs: &NotificationSettings) {
        self.shared().prefs = prefs.clone();
    }

    fn mute_until(&self, until: Option<DateTime<Utc>>) {
        let store = {
            let mut s = self.shared();
            s.muted_until = until;
            s.store.clone()
        };
        if let Some(store) = store {
            if let Err(e) = store.set_meta(MUTE_KEY, &until) {
                tracing::warn!(error = %e, "could not remember the mute switch");
            }
        }
    }

    fn muted_until(&self) -> Option<DateTime<Utc>> {
        self.shared().muted_until
    }
}

#[derive(Debug, Clone)]
enum Subject {
    Plan(String),
    Summary,
}

struct Live {
    subject: Subject,
    handle: Arc<NotificationHandle>,
    waiter: tokio::task::JoinHandle<()>,
    shown: Instant,
}

/// The one summary notification of a burst, updated in place.
#[derive(Default)]
struct Summary {
    id: Option<u32>,
    plans: HashSet<String>,
    last_update: Option<Instant>,
    dirty: bool,
}

struct Task {
    shared: Arc<Mutex<Shared>>,
    requests: mpsc::UnboundedSender<Request>,
    events: broadcast::Sender<CoreEvent>,
    store: Store,
    live: HashMap<u32, Live>,
    by_plan: HashMap<String, u32>,
    summary: Summary,
    coalescer: Coalescer,
    attention: AttentionGate,
}

impl Task {
    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Request>) {
        loop {
            let flush_at = self.summary.last_update.map(|t| t + SUMMARY_EVERY).filter(|_| self.summary.dirty);
            let request = tokio::select! {
                r = inbox.recv() => match r { Some(r) => r, None => break },
                () = sleep_until(flush_at) => {
                    let _ = self.show_summary().await;
                    continue;
                }
            };
            match request {
                Request::Plan { plan, escalation, answer } => {
                    let _ = answer.send(self.plan(&plan, escalation).await);
                }
                Request::Held { count, answer } => {
                    let text = format!("{count} plan{} arrived while notifications were paused", plural(count));
                    let n = summary_notification(&text, "Open the approvals queue in Zof Approvals");
                    let result = self.show(n, Subject::Summary).await.map(|_| Notice::Shown);
                    let _ = answer.send(result);
                }
                Request::Withdraw(plan_id) => self.withdraw(&plan_id).await,
                Request::Responded { id, response } => self.responded(id, response),
                Request::Stop(done) => {
                    for (_, live) in self.live.drain() {
                        live.waiter.abort();
                    }
                    drop(self);
                    let _ = done.send(());
                    return;
                }
            }
        }
    }

    fn prefs(&self) -> NotificationSettings {
        self.shared.lock().map(|s| s.prefs.clone()).unwrap_or_default()
    }

    fn set_status(&self, status: Option<String>) {
        if let Ok(mut s) = self.shared.lock() {
            if s.status != status {
                s.status = status;
                let _ = self.events.send(CoreEvent::StatusChanged);
            }
        }
    }

    async fn plan(&mut self, plan: &PlanRecord, escalation: bool) -> Result<Notice, NotifyError> {
        // Quiet hours and mute were checked before this request was sent. The panel comes
        // forward even when the notification below cannot be shown.
        if !escalation && self.attention.admit(&plan.plan_id, Instant::now()) {
            let _ = self.events.send(CoreEvent::Attention { plan_id: plan.plan_id.clone() });
        }
        let prefs = self.prefs();
        let window = Duration::from_secs(u64::from(prefs.coalesce_window_secs));
        if !escalation && self.coalescer.arrive(Instant::now(), prefs.coalesce_threshold, window) {
            self.summary.plans.insert(plan.plan_id.clone());
            self.summary.dirty = true;
            if self.summary.last_update.is_none_or(|t| t.elapsed() >= SUMMARY_EVERY) {
                self.show_summary().await?;
            }
            return Ok(Notice::Shown);
        }
        let mut n = plan_notification(plan, escalation);
        if let Some(id) = self.by_plan.get(&plan.plan_id) {
            n.id(*id);
        }
        self.show(n, Subject::Plan(plan.plan_id.clone())).await?;
        Ok(Notice::Shown)
    }

    async fn show_summary(&mut self) -> Result<(), NotifyError> {
        self.summary.dirty = false;
        self.summary.last_update = Some(Instant::now());
        let count = self.summary.plans.len();
        if count == 0 {
            return self.close_summary().await;
        }
        let mut n = summary_notification(
            &format!("{count} plan{} await{} approval", plural(count), if count == 1 { "s" } else { "" }),
            "Open the approvals queue in Zof Approvals",
        );
        if let Some(id) = self.summary.id {
            n.id(id);
        }
        let id = self.show(n, Subject::Summary).await?;
        self.summary.id = Some(id);
        Ok(())
    }

    async fn close_summary(&mut self) -> Result<(), NotifyError> {
        if let Some(id) = self.summary.id.take() {
            self.close(id).await;
        }
        Ok(())
    }

    /// Shows (or replaces) a notification and starts waiting for its click.
    async fn show(&mut self, n: Notification, subject: Subject) -> Result<u32, NotifyError> {
        let shown = tokio::time::timeout(CALL_TIMEOUT, n.show_async()).await;
        let handle = match shown {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return Err(self.failed(&e.to_string())),
            Err(_) => return Err(self.failed("the notification server did not answer within 3 seconds")),
        };
        self.set_status(None);
        let id = handle.id();
        if let Some(old) = self.live.remove(&id) {
            old.waiter.abort();
        }
        let handle = Arc::new(handle);
        let waiter = tokio::spawn(wait_for_response(handle.clone(), self.requests.clone()));
        if let Subject::Plan(plan_id) = &subject {
            self.by_plan.insert(plan_id.clone(), id);
        }
        self.live.insert(id, Live { subject, handle, waiter, shown: Instant::now() });
        self.bound_live().await;
        Ok(id)
    }

    fn failed(&self, why: &str) -> NotifyError {
        let message = format!("notifications cannot be shown ({why}); plans still reach the queue");
        tracing::warn!("{message}");
        self.set_status(Some(message.clone()));
        NotifyError(message)
    }

    async fn bound_live(&mut self) {
        while self.live.len() > MAX_LIVE {
            let oldest = self
                .live
                .iter()
                .filter(|(_, l)| matches!(l.subject, Subject::Plan(_)))
                .min_by_key(|(_, l)| l.shown)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => self.close(id).await,
                None => break,
            }
        }
    }

    async fn close(&mut self, id: u32) {
        if let Some(live) = self.live.remove(&id) {
            live.waiter.abort();
            if let Subject::Plan(plan_id) = &live.subject {
                self.by_plan.remove(plan_id);
            }
            if tokio::time::timeout(CALL_TIMEOUT, live.handle.close_async()).await.is_err() {
                tracing::warn!(id, "closing a notification timed out");
            }
        }
    }

    async fn withdraw(&mut self, plan_id: &str) {
        if let Some(id) = self.by_plan.get(plan_id).copied() {
            self.close(id).await;
        }
        if self.summary.plans.remove(plan_id) {
            self.summary.dirty = true;
            if self.summary.plans.is_empty() {
                let _ = self.close_summary().await;
            }
        }
    }

    fn responded(&mut self, id: u32, response: Response) {
        let Some(live) = self.live.get(&id) else { return };
        let subject = live.subject.clone();
        match (subject, response) {
            (_, Response::Closed) => {
                if let Some(live) = self.live.remove(&id) {
                    if let Subject::Plan(plan_id) = live.subject {
                        self.by_plan.remove(&plan_id);
                    } else if self.summary.id == Some(id) {
                        self.summary.id = None;
                    }
                }
            }
            (Subject::Plan(plan_id), Response::Default) => {
                let _ = self.events.send(CoreEvent::OpenPlan { plan_id });
            }
            (Subject::Summary, Response::Default) => {
                let _ = self.events.send(CoreEvent::OpenQueue);
            }
            (Subject::Plan(plan_id), Response::Action(key)) if key == "snooze" => self.snooze(plan_id),
            (_, Response::Action(other)) => tracing::debug!(action = %other, "unknown notification action"),
        }
    }

    /// "Snooze 1 h" from the notification: the core records it, the panel and the shell hear it.
    fn snooze(&mut self, plan_id: String) {
        let until = Utc::now() + SNOOZE;
        let changed = self.store.update_plan(&plan_id, |p| {
            if p.state == PlanState::Pending {
                p.state = PlanState::Snoozed;
                p.snoozed_until = Some(until);
            }
        });
        match changed {
            Ok(_) => {
                let _ = self.events.send(CoreEvent::Snooze { plan_id: plan_id.clone(), until });
                let _ = self.events.send(CoreEvent::PlanChanged { plan_id: plan_id.clone() });
                let _ = self.requests.send(Request::Withdraw(plan_id));
            }
            Err(e) => tracing::warn!(error = %e, "could not snooze a plan"),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

async fn wait_for_response(handle: Arc<NotificationHandle>, requests: mpsc::UnboundedSender<Request>) {
    let id = handle.id();
    let mut got = None;
    handle
        .wait_for_action_async(|r: &NotificationResponse| {
            got = Some(match r {
                NotificationResponse::Default => Response::Default,
                NotificationResponse::Action(a) => Response::Action(a.clone()),
                _ => Response::Closed,
            });
        })
        .await;
    let _ = requests.send(Request::Responded { id, response: got.unwrap_or(Response::Closed) });
}

fn plan_notification(plan: &PlanRecord, escalation: bool) -> Notification {
    let mut n = Notification::new();
    let summary =
        if escalation { "Remediation plan still awaits approval" } else { "Remediation plan awaits approval" };
    n.appname(APP_NAME)
        .icon(ICON)
        .summary(summary)
        .body(&format!("Plan {} · run {} · organization {}", plan.plan_id, plan.run_id, plan.organization_id))
        .action("default", "Open plan")
        .action("snooze", "Snooze 1 h")
        .urgency(if escalation { Urgency::Critical } else { Urgency::Normal })
        .timeout(Timeout::Never);
    n
}

fn summary_notification(summary: &str, body: &str) -> Notification {
    let mut n = Notification::new();
    n.appname(APP_NAME).icon(ICON).summary(summary).body(body).action("default", "Open queue").urgency(Urgency::Normal);
    n
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
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
    fn a_mute_makes_it_quiet_until_it_ends() {
        let now = Utc::now();
        let s = Shared { muted_until: Some(now + chrono::Duration::minutes(5)), ..Shared::default() };
        assert!(s.quiet_now(now));
        assert!(!s.quiet_now(now + chrono::Duration::minutes(6)));
    }

    #[test]
    fn plan_notifications_name_plan_run_and_organization_with_actions() {
        let plan = PlanRecord::arrived("plan_7", "evt", "run_9", "org_abc", Utc::now(), Utc::now());
        let n = plan_notification(&plan, true);
        assert!(n.body.contains("plan_7") && n.body.contains("run_9") && n.body.contains("org_abc"));
        assert_eq!(n.actions, vec!["default", "Open plan", "snooze", "Snooze 1 h"]);
        assert_eq!(n.summary, "Remediation plan still awaits approval");
    }
}
