//! The store's unit tests: real sled databases in temporary directories.

use super::*;
use crate::envelope::plan_pending_body;
use crate::envelope::Envelope;
use crate::verify::Fingerprint;

use super::timers::timer_keys;

fn inner(store: &Store) -> Arc<Inner> {
    store.live().unwrap()
}

const BODY: &[u8] = b"{}";

fn env(id: &str, plan: &str) -> Envelope {
    Envelope::parse(&plan_pending_body(id, Utc::now(), plan, "org", "run")).unwrap()
}

/// What the intake and then the worker do for a new event.
fn accept(store: &Store, env: &Envelope) -> PlanRecord {
    store.record_event(env, BODY, Utc::now(), &Fingerprint("f".into())).unwrap();
    store.settle_event(&store.event(&env.id).unwrap().unwrap(), |_| {}).unwrap().0
}

#[test]
fn the_request_path_writes_the_claim_and_the_outbox_entry_and_the_worker_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.record_event(&env("e1", "p1"), BODY, Utc::now(), &Fingerprint("f".into())).unwrap();
    assert!(store.plan("p1").unwrap().is_none() && store.deliveries(10).unwrap().is_empty());
    assert_eq!(store.outbox_len(), 1);

    let event = store.event("e1").unwrap().unwrap();
    let (plan, changed) = store.settle_event(&event, |p| p.held = true).unwrap();
    assert_eq!((plan.state, plan.held, changed), (PlanState::Pending, true, true));
    // Settling again (an entry resumed after a crash) keeps one log line and the plan as it is.
    assert!(!store.settle_event(&event, |_| {}).unwrap().1, "nothing changed");
    let log = store.deliveries(10).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].verdict, log[0].event_id.as_deref()), (DeliveryVerdict::Accepted, Some("e1")));
    assert!(store.plan("p1").unwrap().unwrap().held);
}

#[tokio::test]
async fn second_claim_of_an_id_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let fp = Fingerprint("abc".into());
    assert!(matches!(
        store.record_event(&env("e1", "p1"), BODY, Utc::now(), &fp).unwrap(),
        Claim::Accepted { acted_on: true }
    ));
    assert!(matches!(store.record_event(&env("e1", "p1"), BODY, Utc::now(), &fp).unwrap(), Claim::Duplicate { .. }));
    store.durable().await.unwrap();
    assert_eq!(store.outbox().unwrap().len(), 1);
}

#[tokio::test]
async fn an_outbox_entry_whose_claim_never_reached_the_disk_is_discarded_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let orphan = OutboxEntry {
            seq: 7,
            event_id: "never".into(),
            plan_id: "p".into(),
            enqueued_at: Utc::now(),
            attempts: 0,
            work: Work::Arrival,
        };
        inner(&store).outbox.insert(7u64.to_be_bytes(), codec::encode(&orphan)).unwrap();
        store.record_event(&env("e1", "p1"), BODY, Utc::now(), &Fingerprint("f".into())).unwrap();
        store.durable().await.unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let left: Vec<String> = store.outbox().unwrap().into_iter().map(|e| e.event_id).collect();
    assert_eq!(left, vec!["e1"]);
}

#[test]
fn a_lost_claim_leaves_no_outbox_entry_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let fp = Fingerprint("f".into());
    store.record_event(&env("e1", "p1"), BODY, Utc::now(), &fp).unwrap();
    store.record_event(&env("e1", "p1"), BODY, Utc::now(), &fp).unwrap();
    assert_eq!(store.outbox_len(), 1);
}

#[test]
fn a_plan_announced_again_while_open_keeps_its_notification_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    accept(&store, &env("e1", "p1"));
    let notified = Utc::now();
    store.update_plan("p1", |p| p.notified_at = Some(notified)).unwrap();
    accept(&store, &env("e2", "p1"));
    let plan = store.plan("p1").unwrap().unwrap();
    assert_eq!((plan.event_id.as_str(), plan.notified_at), ("e2", Some(notified)));
    store.update_plan("p1", |p| p.state = PlanState::Handled).unwrap();
    accept(&store, &env("e3", "p1"));
    let reopened = store.plan("p1").unwrap().unwrap();
    assert_eq!((reopened.state, reopened.notified_at), (PlanState::Pending, None));
}

fn due_ids(store: &Store, now: DateTime<Utc>) -> (Vec<String>, Vec<String>, Vec<String>) {
    let due = store.due(now, Some(chrono::Duration::minutes(30))).unwrap();
    let ids = |v: Vec<PlanRecord>| v.into_iter().map(|p| p.plan_id).collect::<Vec<_>>();
    (ids(due.woken), due.held, ids(due.escalate))
}

#[test]
fn upkeep_reads_only_plans_whose_time_has_come() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Utc::now();
    let later = now + chrono::Duration::minutes(10);
    for (e, p) in [("e1", "snoozed"), ("e2", "held"), ("e3", "told"), ("e4", "handled")] {
        accept(&store, &env(e, p));
    }
    store
        .update_plan("snoozed", |p| {
            p.state = PlanState::Snoozed;
            p.snoozed_until = Some(later);
        })
        .unwrap();
    store.update_plan("held", |p| p.held = true).unwrap();
    store.update_plan("told", |p| p.notified_at = Some(now)).unwrap();
    store.update_plan("handled", |p| p.notified_at = Some(now)).unwrap();
    store.update_plan("handled", |p| p.state = PlanState::Handled).unwrap();

    let none: Vec<String> = Vec::new();
    assert_eq!(due_ids(&store, now), (none.clone(), vec!["held".to_string()], none.clone()));
    let (woken, _, escalate) = due_ids(&store, now + chrono::Duration::minutes(31));
    assert_eq!((woken, escalate), (vec!["snoozed".to_string()], vec!["told".to_string()]));
    // Three timers: the handled plan's was removed with its change.
    assert_eq!(inner(&store).timers.len(), 3);
}

#[test]
fn a_timer_its_plan_no_longer_needs_is_dropped_by_upkeep() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let plan = accept(&store, &env("e1", "p1"));
    // As left by a crash between writing a new timer and writing the plan.
    let stale = timer_keys(&PlanRecord { held: true, ..plan });
    inner(&store).timers.insert(stale[0].as_slice(), &[]).unwrap();
    assert!(due_ids(&store, Utc::now()).1.is_empty());
    assert_eq!(inner(&store).timers.len(), 0);
}

#[test]
fn a_store_from_before_the_timer_index_gets_it_built_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        accept(&store, &env("e1", "p1"));
        store.update_plan("p1", |p| p.held = true).unwrap();
        inner(&store).timers.clear().unwrap();
        inner(&store).meta.remove("timers_indexed").unwrap();
        std::fs::remove_file(dir.path().join("schema-version")).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(due_ids(&store, Utc::now()).1, vec!["p1".to_string()]);
}

#[test]
fn a_store_of_schema_2_is_stamped_current_and_its_plans_read_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        accept(&store, &env("e1", "p1"));
        std::fs::write(dir.path().join("schema-version"), "2\n").unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), crate::store::SCHEMA_VERSION);
    let plan = store.plan("p1").unwrap().unwrap();
    assert_eq!((plan.state, plan.source, plan.console_status), (PlanState::Pending, PlanSource::Webhook, None));
    assert_eq!((plan.snoozed_by, plan.decision_id), (None, None));
}

#[test]
fn pruning_forgets_events_past_the_window_and_keeps_plans() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let old = Envelope::parse(&plan_pending_body("e_old", Utc::now() - chrono::Duration::days(40), "p_old", "o", "r"))
        .unwrap();
    accept(&store, &old);
    accept(&store, &env("e_new", "p_new"));
    let removed = store.prune(Utc::now() - chrono::Duration::days(30)).unwrap();
    assert_eq!(removed, 1);
    assert!(store.event("e_old").unwrap().is_none() && store.event("e_new").unwrap().is_some());
    assert!(store.plan("p_old").unwrap().is_some(), "plans are kept");
}

#[test]
fn the_delivery_log_is_trimmed_to_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let record = DeliveryRecord {
        at: Utc::now(),
        event_id: None,
        verdict: DeliveryVerdict::Rejected,
        status: 401,
        code: "signature_mismatch".into(),
        reason: "r".into(),
        fingerprint: None,
    };
    for _ in 0..DELIVERY_LOG_CAP + 5 {
        store.record_delivery(&record).unwrap();
    }
    store.prune(Utc::now() - chrono::Duration::days(30)).unwrap();
    assert_eq!(inner(&store).deliveries.len(), DELIVERY_LOG_CAP);
}
