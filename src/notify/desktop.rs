//! The D-Bus side of notifications, on notify-rust: the only file that names it.
//!
//! One async task owns every live notification. Calls from the outbox thread arrive as messages
//! and are answered when the D-Bus call returned (bounded by a timeout), so the acknowledgement
//! of a delivery never waits for a notification and a missing notification server never hangs
//! anything. Clicks are awaited by one small task per live notification (never a thread), and
//! coalescing keeps the number of live notifications small. The rules come from
//! [`super::policy`]; a snooze goes back to the core, which writes it.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use notify_rust::{Notification, NotificationHandle, NotificationResponse, Timeout, Urgency};
use tokio::sync::{broadcast, mpsc};

use super::policy::{self, AttentionGate, Coalescer, Reaction, Response, Subject, REVIEW_ACTION, SNOOZE_ACTION};
use super::{APP_NAME, ICON, SNOOZE_MINUTES};
use crate::config::NotificationSettings;
use crate::events::CoreEvent;
use crate::outbox::{Notice, NotificationAction, Notifier, NotifyError};
use crate::store::PlanRecord;

/// How long one D-Bus call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the outbox thread waits for the notification task's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The summary is updated in place at most this often during a burst.
const SUMMARY_EVERY: Duration = Duration::from_millis(250);
/// Live notifications beyond this are closed oldest first (each has a waiting task).
const MAX_LIVE: usize = 32;

#[derive(Debug, Default)]
struct Shared {
    prefs: NotificationSettings,
    muted_until: Option<DateTime<Utc>>,
    status: Option<String>,
}

impl Shared {
    fn quiet_now(&self, now: DateTime<Utc>) -> bool {
        policy::quiet_now(&self.prefs, self.muted_until, now)
    }
}

enum Request {
    Plan { plan: Box<PlanRecord>, escalation: bool, answer: std_mpsc::SyncSender<Result<Notice, NotifyError>> },
    Held { count: usize, answer: std_mpsc::SyncSender<Result<Notice, NotifyError>> },
    Withdraw(String),
    Responded { id: u32, response: Response },
    Stop(std_mpsc::SyncSender<()>),
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
    fn attach(&self, events: &broadcast::Sender<CoreEvent>, actions: &mpsc::UnboundedSender<NotificationAction>) {
        let Some((inbox, runtime)) = self.task.lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        let task = Task {
            shared: self.shared.clone(),
            requests: self.requests.clone(),
            events: events.clone(),
            actions: actions.clone(),
            live: HashMap::new(),
            by_plan: HashMap::new(),
            summary: Summary::default(),
            coalescer: Coalescer::default(),
            attention: AttentionGate::default(),
        };
        runtime.spawn(task.run(inbox));
    }

    fn detach(&self) {
        let (done, stopped) = std_mpsc::sync_channel(1);
        if self.requests.send(Request::Stop(done)).is_ok() {
            let _ = stopped.recv_timeout(ANSWER_TIMEOUT);
        }
    }

    fn plan_pending(&self, plan: &PlanRecord) -> Result<Notice, NotifyError> {
        if self.shared().quiet_now(Utc::now()) {
            return Ok(Notice::Held);
        }
        self.ask(|answer| Request::Plan { plan: Box::new(plan.clone()), escalation: false, answer })
    }

    fn escalate(&self, plan: &PlanRecord) -> Result<Notice, NotifyError> {
        if self.shared().quiet_now(Utc::now()) {
            return Ok(Notice::Held);
        }
        self.ask(|answer| Request::Plan { plan: Box::new(plan.clone()), escalation: true, answer })
    }

    fn summarize_held(&self, count: usize) -> Result<Notice, NotifyError> {
        if self.shared().quiet_now(Utc::now()) {
            return Ok(Notice::Held);
        }
        self.ask(|answer| Request::Held { count, answer })
    }

    fn escalation_after(&self) -> Option<chrono::Duration> {
        Some(policy::escalation_after(&self.shared().prefs))
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
        self.shared().muted_until = until;
    }

    fn muted_until(&self) -> Option<DateTime<Utc>> {
        self.shared().muted_until
    }

    fn quiet_ends(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let shared = self.shared();
        policy::quiet_ends(&shared.prefs, shared.muted_until, now)
    }
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
    /// What the user chose that changes a plan, for the core to apply.
    actions: mpsc::UnboundedSender<NotificationAction>,
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
        match policy::react(&live.subject, response) {
            Reaction::Forget => {
                if let Some(live) = self.live.remove(&id) {
                    if let Subject::Plan(plan_id) = live.subject {
                        self.by_plan.remove(&plan_id);
                    } else if self.summary.id == Some(id) {
                        self.summary.id = None;
                    }
                }
            }
            Reaction::OpenPlan(plan_id) => {
                let _ = self.events.send(CoreEvent::OpenPlan { plan_id });
            }
            Reaction::OpenQueue => {
                let _ = self.events.send(CoreEvent::OpenQueue);
            }
            // The core writes the snooze and withdraws this notification, as for the panel's button.
            Reaction::Snooze(plan_id) => {
                let _ = self.actions.send(NotificationAction::Snooze { plan_id, minutes: SNOOZE_MINUTES });
            }
            Reaction::Unknown(other) => tracing::debug!(action = %other, "unknown notification action"),
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
    let ids = format!("Plan {} · run {} · organization {}", plan.plan_id, plan.run_id, plan.organization_id);
    // With the Console's details: what the plan is about, in the words the window uses.
    let (summary, body) = match plan.headline.notification() {
        Some((title, body)) if !body.is_empty() => (title, body),
        Some((title, _)) => (title, ids),
        None if escalation => ("Remediation plan still awaits approval".to_owned(), ids),
        None => ("Remediation plan awaits approval".to_owned(), ids),
    };
    n.appname(APP_NAME)
        .icon(ICON)
        .summary(&summary)
        .body(&body)
        .action("default", "Review")
        .action(REVIEW_ACTION, "Review")
        .action(SNOOZE_ACTION, "Snooze 1 h")
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
    fn plan_notifications_name_plan_run_and_organization_with_actions() {
        let plan = PlanRecord::arrived("plan_7", "evt", "run_9", "org_abc", Utc::now(), Utc::now());
        let n = plan_notification(&plan, true);
        assert!(n.body.contains("plan_7") && n.body.contains("run_9") && n.body.contains("org_abc"));
        assert_eq!(n.actions, vec!["default", "Review", "review", "Review", "snooze", "Snooze 1 h"]);
        assert_eq!(n.summary, "Remediation plan still awaits approval");
    }

    #[test]
    fn a_plan_with_its_details_says_what_it_is_about() {
        let mut plan = PlanRecord::arrived("plan_7", "evt", "run_9", "org_abc", Utc::now(), Utc::now());
        plan.headline = crate::domain::review::Headline {
            title: Some("Roll back checkout".into()),
            environment: Some("prod-eu".into()),
            risk: Some(crate::domain::review::Risk::High),
            service: Some("checkout".into()),
        };
        let n = plan_notification(&plan, false);
        assert_eq!(
            (n.summary.as_str(), n.body.as_str()),
            ("Approval needed: Roll back checkout", "prod-eu · high risk · checkout")
        );
    }
}
