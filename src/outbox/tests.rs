//! The outbox worker's passes and its timers, against a real store and fake notifiers.

use super::*;
use crate::envelope::{plan_pending_body, Envelope};
use crate::verify::Fingerprint;

#[derive(Debug, Default)]
struct Told(Mutex<Vec<String>>);
impl Notifier for Told {
    fn plan_pending(&self, plan: &PlanRecord) -> Result<Notice, NotifyError> {
        self.0.lock().unwrap().push(plan.plan_id.clone());
        Ok(Notice::Shown)
    }
}

#[derive(Debug, Default)]
struct Unreachable;
impl Notifier for Unreachable {
    fn plan_pending(&self, _plan: &PlanRecord) -> Result<Notice, NotifyError> {
        Err(NotifyError("no notification server".into()))
    }
}

fn acknowledged(store: &Store, id: &str, plan: &str) {
    let env = Envelope::parse(&plan_pending_body(id, Utc::now(), plan, "o", "r")).unwrap();
    store.record_event(&env, b"{}", Utc::now(), &Fingerprint("f".into())).unwrap();
}

#[test]
fn the_worker_writes_the_plan_of_an_acknowledged_event_and_tells_the_user_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    acknowledged(&store, "e1", "p1");
    let told = Told::default();
    let (tx, mut rx) = broadcast::channel(8);
    drain(&store, &told, &tx, Utc::now()).unwrap();
    drain(&store, &told, &tx, Utc::now()).unwrap();
    assert_eq!(*told.0.lock().unwrap(), vec!["p1"]);
    assert!(store.plan("p1").unwrap().unwrap().notified_at.is_some());
    assert_eq!(store.outbox_len(), 0);
    assert!(matches!(rx.try_recv(), Ok(CoreEvent::PlanChanged { plan_id }) if plan_id == "p1"));
}

#[test]
fn without_a_notification_server_every_plan_still_reaches_the_queue_and_the_entries_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 1..=3 {
        acknowledged(&store, &format!("e{i}"), &format!("p{i}"));
    }
    let (tx, mut rx) = broadcast::channel(16);
    assert!(drain(&store, &Unreachable, &tx, Utc::now()).is_err());
    assert!(drain(&store, &Unreachable, &tx, Utc::now()).is_err());
    let mut changed = 0;
    while rx.try_recv().is_ok() {
        changed += 1;
    }
    assert_eq!(changed, 3, "a retry that changes no plan announces no change");
    for i in 1..=3 {
        let plan = store.plan(&format!("p{i}")).unwrap().unwrap();
        assert_eq!((plan.state, plan.notified_at), (PlanState::Pending, None));
    }
    assert!(store.outbox().unwrap().iter().all(|e| e.attempts == 2));
    // Once a server answers, the retried entries tell the user.
    let told = Told::default();
    drain(&store, &told, &tx, Utc::now()).unwrap();
    assert_eq!(*told.0.lock().unwrap(), vec!["p1", "p2", "p3"]);
    assert_eq!(store.outbox_len(), 0);
}

/// A plan snoozed until `until`, already told once.
fn snoozed(store: &Store, plan: &str, until: DateTime<Utc>) {
    acknowledged(store, &format!("e_{plan}"), plan);
    let (tx, _rx) = broadcast::channel(8);
    drain(store, &Told::default(), &tx, Utc::now()).unwrap();
    store
        .update_plan(plan, |p| {
            p.state = PlanState::Snoozed;
            p.snoozed_until = Some(until);
        })
        .unwrap();
}

#[test]
fn a_snooze_that_ends_while_notifications_fail_is_retried_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    {
        let store = Store::open(dir.path()).unwrap();
        snoozed(&store, "p1", now - chrono::Duration::seconds(1));
        let (tx, _rx) = broadcast::channel(16);
        // The snooze ends; telling the user fails.
        assert!(upkeep(&store, &Unreachable, &tx, now).unwrap(), "the wake is handed to the outbox");
        assert!(drain(&store, &Unreachable, &tx, now).is_err());
        let plan = store.plan("p1").unwrap().unwrap();
        assert_eq!((plan.state, plan.notified_at), (PlanState::Pending, None), "in the queue, not told");
        assert_eq!(store.outbox().unwrap()[0].work, Work::Wake, "kept for the retry");
        store.flush_blocking().unwrap();
    }
    // The process dies; on the next start the wake is still owed, and told once.
    let store = reopen(dir.path());
    let (tx, _rx) = broadcast::channel(16);
    let told = Told::default();
    drain(&store, &told, &tx, Utc::now()).unwrap();
    drain(&store, &told, &tx, Utc::now()).unwrap();
    assert_eq!(*told.0.lock().unwrap(), vec!["p1"]);
    assert!(store.plan("p1").unwrap().unwrap().notified_at.is_some());
    assert_eq!(store.outbox_len(), 0);
}

#[test]
fn a_wake_entry_written_before_a_crash_wakes_the_plan_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ended = Utc::now() - chrono::Duration::seconds(1);
    snoozed(&store, "p1", ended);
    // As left by a crash between the wake's two writes: the entry, and the plan still snoozed.
    let plan = store.plan("p1").unwrap().unwrap();
    store.wake(&plan, ended).unwrap();
    store
        .update_plan("p1", |p| {
            p.state = PlanState::Snoozed;
            p.snoozed_until = Some(ended);
        })
        .unwrap();
    let (tx, _rx) = broadcast::channel(16);
    let told = Told::default();
    drain(&store, &told, &tx, Utc::now()).unwrap();
    assert_eq!(*told.0.lock().unwrap(), vec!["p1"]);
    assert_eq!(store.plan("p1").unwrap().unwrap().state, PlanState::Pending);
}

#[test]
fn telling_the_user_is_given_up_after_a_day_and_the_plan_stays_flagged_not_notified() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let env = Envelope::parse(&plan_pending_body("e1", Utc::now(), "p1", "o", "r")).unwrap();
    let day_ago = Utc::now() - GIVE_UP_AFTER - chrono::Duration::minutes(1);
    store.record_event(&env, b"{}", day_ago, &Fingerprint("f".into())).unwrap();
    acknowledged(&store, "e2", "p2");
    let (tx, _rx) = broadcast::channel(16);
    assert!(drain(&store, &Unreachable, &tx, Utc::now()).is_err());
    // The day-old entry is done; the new one is still retried.
    let left: Vec<String> = store.outbox().unwrap().into_iter().map(|e| e.plan_id).collect();
    assert_eq!(left, vec!["p2"]);
    let p1 = store.plan("p1").unwrap().unwrap();
    assert_eq!((p1.state, p1.flags.as_slice()), (PlanState::Pending, [PlanFlag::NotNotified].as_slice()));
    assert_eq!(store.not_notified_count(), 1);
    // Nothing more is tried for it.
    let told = Told::default();
    drain(&store, &told, &tx, Utc::now()).unwrap();
    assert_eq!(*told.0.lock().unwrap(), vec!["p2"]);
}

#[derive(Debug)]
struct Quiet(DateTime<Utc>);
impl Notifier for Quiet {
    fn plan_pending(&self, _plan: &PlanRecord) -> Result<Notice, NotifyError> {
        Ok(Notice::Held)
    }
    fn quiet_ends(&self, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Some(self.0)
    }
}

#[test]
fn with_no_time_based_work_the_worker_sleeps_until_it_is_kicked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(next_timer(&store, &Told::default()), None, "an empty store");
    acknowledged(&store, "e1", "p1");
    let (tx, _rx) = broadcast::channel(8);
    assert!(!drain(&store, &Told::default(), &tx, Utc::now()).unwrap());
    assert_eq!(next_timer(&store, &Told::default()), None, "a plan told, no escalation");
}

#[test]
fn the_worker_wakes_for_a_snooze_s_end_and_for_the_end_of_quiet_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ends =
        DateTime::from_timestamp_micros((Utc::now() + chrono::Duration::seconds(30)).timestamp_micros()).unwrap();
    snoozed(&store, "p1", ends);
    assert_eq!(store.next_due(None).unwrap(), crate::store::NextDue { at: Some(ends), held: false });
    let quiet_until = Utc::now() + chrono::Duration::hours(2);
    acknowledged(&store, "e2", "p2");
    let (tx, _rx) = broadcast::channel(8);
    drain(&store, &Quiet(quiet_until), &tx, Utc::now()).unwrap();
    assert!(store.next_due(None).unwrap().held, "p2 is held back");
    let asked = Instant::now();
    let wake = next_timer(&store, &Quiet(quiet_until)).unwrap();
    assert!(wake <= asked + MAX_SLEEP + Duration::from_secs(1), "the snooze's end, at the latest");
}

fn reopen(dir: &std::path::Path) -> Store {
    for _ in 0..100 {
        match Store::open(dir) {
            Err(crate::store::StoreError::Locked(_)) => std::thread::sleep(Duration::from_millis(20)),
            other => return other.unwrap(),
        }
    }
    panic!("the store stayed locked");
}
