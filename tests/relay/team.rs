//! Team actions over the relay: laptops in this process (each its own `Application`, store and
//! consumer) on a real nats-server; the laptop under watch notifies through the real notify-rust
//! client to a recording notification server on a private session bus.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use chrono::Utc;
use zof_approvals::app::{AppConfig, Application, SecretSource};
use zof_approvals::config::{Paths, Settings};
use zof_approvals::domain::audit::{AuditAction, AuditFilter, Source};
use zof_approvals::domain::team::{TeamAction, TeamVerb};
use zof_approvals::envelope::plan_pending_body;
use zof_approvals::notify::DesktopNotifier;
use zof_approvals::outbox::{LogNotifier, Notifier};
use zof_approvals::panel::Panel;
use zof_approvals::relay::actions::action_subject;
use zof_approvals::relay::{delivery_subject, LaptopLink, NatsAuth, NatsConfig, Publisher, RelayStatus};
use zof_approvals::store::PlanState;
use zof_approvals::verify::{sign_zof, signature_headers, Scheme, Secret, SecretSet};
use zof_testkit::{BusTurn, Call, NotificationRecorder};

use super::support::{Nats, SECRET};

/// One test at a time, each with its own bus (see [`BusTurn`]).
async fn turn() -> BusTurn {
    BusTurn::take().await.expect("dbus-daemon (package dbus) is needed for these tests")
}

async fn recorder(turn: &BusTurn) -> NotificationRecorder {
    turn.recorder().await.expect("could not own org.freedesktop.Notifications on the test bus")
}

struct Mate {
    panel: Panel,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// A laptop named `name` (its display name and consumer), following `nats`; `desktop` picks the
/// real notification client, otherwise plans are only logged.
async fn mate(nats: &Nats, name: &str, desktop: bool, allow: &[&str]) -> Mate {
    let allow_orgs = allow.iter().map(|o| (*o).to_owned()).collect();
    mate_with(nats, name, desktop, Settings { allow_orgs, ..Settings::default() }).await
}

/// [`mate`], connected to the Console at `console` (the review console's API URL), if given.
async fn mate_with_console(nats: &Nats, name: &str, desktop: bool, allow: &[&str], console: Option<&str>) -> Mate {
    let allow_orgs = allow.iter().map(|o| (*o).to_owned()).collect();
    let console_api_url = console.unwrap_or_default().into();
    mate_with(nats, name, desktop, Settings { allow_orgs, console_api_url, ..Settings::default() }).await
}

/// [`mate`] with these settings (a signature scheme, say).
async fn mate_with(nats: &Nats, name: &str, desktop: bool, settings: Settings) -> Mate {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings { listen: "127.0.0.1:0".parse().unwrap(), display_name: name.into(), ..settings };
    let config = AppConfig {
        paths: Paths { data_dir: dir.path().join("data"), config_dir: dir.path().join("config") },
        settings,
        secrets: SecretSource::Fixed(SecretSet::single(Secret::new(SECRET).unwrap())),
    };
    let notifier: Arc<dyn Notifier> =
        if desktop { Arc::new(DesktopNotifier::new(tokio::runtime::Handle::current())) } else { Arc::new(LogNotifier) };
    let token = zof_approvals::console::ConsoleToken::new(zof_testkit::review_console::TOKEN).unwrap();
    let setup = zof_approvals::console::ConsoleSetup::fixed(token);
    let mut app = Application::build_with_console(config, notifier, setup).await.unwrap();
    let nats_config = NatsConfig { url: nats.url(), auth: NatsAuth::None, ca_file: None, name: name.into() };
    app.attach_relay(LaptopLink { nats: nats_config, stream: "ZOF".into(), consumer: name.into() });
    let panel = app.panel();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Mate { panel, stop: Some(tx), task: Some(task), _dir: dir }
}

impl Mate {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }

    async fn state(&self, plan: &str) -> Option<(PlanState, Option<String>)> {
        self.panel.plan(plan.into()).await.ok().map(|d| (d.plan.state, d.plan.decided_by))
    }

    async fn until(&self, plan: &str, what: &str, ok: impl Fn(PlanState, Option<&str>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some((state, by)) = self.state(plan).await {
                if ok(state, by.as_deref()) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{plan}: never {what}; now {:?}", self.state(plan).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn audit(&self, plan: &str) -> Vec<zof_approvals::domain::audit::AuditEntry> {
        let filter = AuditFilter { plan_id: Some(plan.into()), ..AuditFilter::default() };
        self.panel.audit(filter).await.unwrap()
    }
}

async fn publisher(nats: &Nats) -> Publisher {
    let config = NatsConfig { url: nats.url(), auth: NatsAuth::None, ca_file: None, name: "test relay".into() };
    let p = Publisher::connect(&config, RelayStatus::new("test")).await.unwrap();
    p.ensure_stream(&Default::default(), Duration::from_secs(10)).await.unwrap();
    p
}

/// A delivery as the relay publishes it.
async fn deliver(p: &Publisher, plan: &str) {
    deliver_signed(p, plan, Scheme::Zof).await;
}

/// [`deliver`], signed in `scheme`.
async fn deliver_signed(p: &Publisher, plan: &str, scheme: Scheme) {
    let id = format!("evt_{plan}");
    let body = plan_pending_body(&id, Utc::now(), plan, "org_abc", "run_xyz");
    let signed = signature_headers(scheme, &Secret::new(SECRET).unwrap(), &id, Utc::now(), &body);
    let headers: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    p.publish(delivery_subject("org_abc"), &id, &headers, Bytes::from(body)).await.unwrap();
}

/// Waits until `consumer` has taken and acknowledged everything in the stream.
async fn drained(nats: &Nats, consumer: &str) {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(stream) = js.get_stream("ZOF").await {
            if let Ok(mut c) = stream.get_consumer::<async_nats::jetstream::consumer::pull::Config>(consumer).await {
                if let Ok(info) = c.info().await {
                    if info.num_pending == 0 && info.num_ack_pending == 0 {
                        return;
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "consumer {consumer} not drained within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn notified(calls: &[Call], plan: &str) -> Option<u32> {
    calls.iter().find_map(|c| match c {
        Call::Notify { id, body, .. } if body.contains(&format!("Plan {plan} ")) => Some(*id),
        _ => None,
    })
}

fn closed(calls: &[Call], id: u32) -> bool {
    calls.iter().any(|c| matches!(c, Call::Close { id: closed, .. } if *closed == id))
}

async fn until_calls(rec: &NotificationRecorder, what: &str, ok: impl Fn(&[Call]) -> bool) -> Vec<Call> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let calls = rec.calls();
        if ok(&calls) {
            return calls;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}: {calls:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_handled_or_snoozed_on_one_laptop_is_withdrawn_on_another_and_says_who_did_it() {
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let nats = Nats::start();
    let p = publisher(&nats).await;
    let (alice, bob) = (mate(&nats, "alice", false, &[]).await, mate(&nats, "bob", true, &[]).await);
    deliver(&p, "plan_h").await;
    let calls = until_calls(&rec, "bob is told of plan_h", |c| notified(c, "plan_h").is_some()).await;
    let shown = notified(&calls, "plan_h").unwrap();
    alice.until("plan_h", "pending at alice's", |s, _| s == PlanState::Pending).await;

    let handled = alice.panel.actions().handle("plan_h", Source::Panel).await.unwrap();
    assert!(!handled.already);
    let took = Instant::now();
    until_calls(&rec, "bob's notification is closed", |c| closed(c, shown)).await;
    eprintln!("handled at alice's → closed on bob's bus: {:?}", took.elapsed());
    bob.until("plan_h", "handled by alice", |s, by| s == PlanState::Handled && by == Some("alice")).await;

    let view = bob.panel.plan("plan_h".into()).await.unwrap().plan;
    assert!(view.resolution.as_deref().is_some_and(|r| r.starts_with("Handled by alice at ")), "{view:?}");
    let rows = bob.audit("plan_h").await;
    let row = rows.iter().find(|r| r.action == AuditAction::Handled).expect("bob's audit log has it");
    assert_eq!((row.who.as_str(), row.source.to_string()), ("alice", "team:bob".to_owned()));
    // Alice's own action came back to her over NATS and was recognised: one row, not two.
    drained(&nats, "alice_actions").await;
    let mine: Vec<_> = alice.audit("plan_h").await.into_iter().filter(|r| r.action == AuditAction::Handled).collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0].source, Source::Panel);

    // A snooze: bob's notification goes, and his panel says who snoozed it until when.
    deliver(&p, "plan_z").await;
    let calls = until_calls(&rec, "bob is told of plan_z", |c| notified(c, "plan_z").is_some()).await;
    let shown = notified(&calls, "plan_z").unwrap();
    alice.until("plan_z", "pending at alice's", |s, _| s == PlanState::Pending).await;
    alice.panel.actions().snooze("plan_z", 45, Source::Panel).await.unwrap();
    until_calls(&rec, "bob's notification of plan_z is closed", |c| closed(c, shown)).await;
    bob.until("plan_z", "snoozed", |s, _| s == PlanState::Snoozed).await;
    let view = bob.panel.plan("plan_z".into()).await.unwrap().plan;
    assert!(view.resolution.as_deref().is_some_and(|r| r.starts_with("Snoozed by alice until ")), "{view:?}");
    let rows = bob.audit("plan_z").await;
    assert!(rows
        .iter()
        .any(|r| r.action == AuditAction::Snoozed && r.who == "alice" && r.detail.starts_with("until ")));
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_laptop_asleep_during_the_action_applies_it_before_announcing_the_plan() {
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let nats = Nats::start();
    let p = publisher(&nats).await;
    let alice = mate(&nats, "alice", false, &[]).await;
    deliver(&p, "plan_s").await;
    alice.until("plan_s", "pending at alice's", |s, _| s == PlanState::Pending).await;
    alice.panel.actions().handle("plan_s", Source::Panel).await.unwrap();
    drained(&nats, "alice_actions").await;
    // A later plan, announced once carol has read everything before it.
    deliver(&p, "plan_after").await;

    let carol = mate(&nats, "carol", true, &[]).await;
    let calls = until_calls(&rec, "carol announces the later plan", |c| notified(c, "plan_after").is_some()).await;
    assert_eq!(notified(&calls, "plan_s"), None, "the plan alice handled was never announced: {calls:#?}");
    carol.until("plan_s", "handled by alice", |s, by| s == PlanState::Handled && by == Some("alice")).await;
    let rows = carol.audit("plan_s").await;
    assert!(rows.iter().any(|r| r.action == AuditAction::Handled && r.who == "alice"), "{rows:?}");
    alice.stop().await;
    carol.stop().await;
}

/// An action as a forger with NATS credentials might publish it.
async fn publish_action(p: &Publisher, org: &str, action: &TeamAction, signature: Option<&str>) {
    let headers: Vec<(&str, &str)> = signature.map(|s| vec![("x-zof-signature", s)]).unwrap_or_default();
    p.publish(action_subject(org), &action.id, &headers, Bytes::from(action.to_body())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_wrongly_signed_team_actions_change_nothing_and_are_counted_with_the_refusals() {
    let nats = Nats::start();
    let p = publisher(&nats).await;
    let bob = mate(&nats, "bob", false, &["org_abc"]).await;
    deliver(&p, "plan_f").await;
    deliver(&p, "plan_sentinel").await;
    bob.until("plan_sentinel", "pending", |s, _| s == PlanState::Pending).await;
    let action = |id: &str, plan: &str, org: &str| TeamAction {
        id: id.into(),
        plan_id: plan.into(),
        organization_id: org.into(),
        run_id: Some("run_xyz".into()),
        action: TeamVerb::Handled,
        by: "mallory".into(),
        at: Utc::now(),
        until: None,
        status: None,
        comment: None,
    };
    let wrong = Secret::new("not-the-team-secret-0123456789").unwrap();
    let right = Secret::new(SECRET).unwrap();
    let unsigned = action("act_unsigned", "plan_f", "org_abc");
    publish_action(&p, "org_abc", &unsigned, None).await;
    let badly = action("act_wrong_secret", "plan_f", "org_abc");
    publish_action(&p, "org_abc", &badly, Some(&sign_zof(&wrong, &badly.to_body()))).await;
    let elsewhere = action("act_other_org", "plan_f", "org_other");
    publish_action(&p, "org_other", &elsewhere, Some(&sign_zof(&right, &elsewhere.to_body()))).await;
    // Read after the three: a genuine action on another plan.
    let genuine = TeamAction { by: "alice".into(), ..action("act_genuine", "plan_sentinel", "org_abc") };
    publish_action(&p, "org_abc", &genuine, Some(&sign_zof(&right, &genuine.to_body()))).await;

    bob.until("plan_sentinel", "handled by alice", |s, by| s == PlanState::Handled && by == Some("alice")).await;
    assert_eq!(bob.state("plan_f").await, Some((PlanState::Pending, None)), "nothing applied from a forgery");
    let rows = bob.panel.audit(AuditFilter::default()).await.unwrap();
    assert!(rows.iter().all(|r| r.action != AuditAction::Ignored), "counted, not written one by one: {rows:#?}");
    let counted = bob.panel.overview().await.unwrap().refusals;
    let codes: Vec<(&str, u64)> = counted.iter().map(|r| (r.code.as_str(), r.total)).collect();
    for code in
        ["team_action_missing_signature", "team_action_signature_mismatch", "team_action_organization_not_allowed"]
    {
        assert!(codes.contains(&(code, 1)), "{code} is counted once: {codes:?}");
    }
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handled_and_snoozed_racing_on_two_laptops_end_in_the_same_state_on_every_laptop() {
    let nats = Nats::start();
    let p = publisher(&nats).await;
    let (alice, bob) = (mate(&nats, "alice", false, &[]).await, mate(&nats, "bob", false, &[]).await);
    for plan in ["plan_r1", "plan_r2"] {
        deliver(&p, plan).await;
    }
    for m in [&alice, &bob] {
        m.until("plan_r2", "pending", |s, _| s == PlanState::Pending).await;
    }
    // plan_r1: alice handles while bob snoozes. plan_r2: both handle at once.
    let (handled, snoozed, h2a, h2b) = tokio::join!(
        alice.panel.actions().handle("plan_r1", Source::Panel),
        bob.panel.actions().snooze("plan_r1", 30, Source::Panel),
        alice.panel.actions().handle("plan_r2", Source::Panel),
        bob.panel.actions().handle("plan_r2", Source::Panel),
    );
    handled.unwrap();
    let _ = snoozed; // snoozed first, or refused because handled: both are fair outcomes here
    h2a.unwrap();
    h2b.unwrap();
    for consumer in ["alice_actions", "bob_actions"] {
        drained(&nats, consumer).await;
    }
    assert_eq!(alice.state("plan_r1").await, Some((PlanState::Handled, Some("alice".into()))));
    assert_eq!(bob.state("plan_r1").await, Some((PlanState::Handled, Some("alice".into()))));
    let (a2, b2) = (alice.state("plan_r2").await, bob.state("plan_r2").await);
    assert_eq!(a2, b2, "the same decision stands on both laptops");
    assert_eq!(a2.map(|s| s.0), Some(PlanState::Handled));
    alice.stop().await;
    bob.stop().await;
}

/// The relay link's rows in the laptop's audit log, oldest first.
async fn link_rows(m: &Mate) -> Vec<AuditAction> {
    let rows = m.panel.audit(AuditFilter::default()).await.unwrap();
    let mut link: Vec<AuditAction> = rows
        .into_iter()
        .map(|r| r.action)
        .filter(|a| matches!(a, AuditAction::RelayConnected | AuditAction::RelayDisconnected))
        .collect();
    link.reverse();
    link
}

async fn until_link_rows(m: &Mate, want: &[AuditAction]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while link_rows(m).await != want {
        assert!(Instant::now() < deadline, "audit rows of the link: {:?}, not {want:?}", link_rows(m).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_link_coming_up_going_down_and_back_is_in_the_audit_log() {
    let mut nats = Nats::start();
    let _p = publisher(&nats).await;
    let alice = mate(&nats, "alice", false, &[]).await;
    use AuditAction::{RelayConnected as Up, RelayDisconnected as Down};
    until_link_rows(&alice, &[Up]).await;
    nats.stop();
    until_link_rows(&alice, &[Up, Down]).await;
    nats.restart();
    until_link_rows(&alice, &[Up, Down, Up]).await;
    let rows = alice.panel.audit(AuditFilter::default()).await.unwrap();
    assert!(rows.iter().all(|r| r.who == "alice" && r.source == Source::Team("alice".into())), "{rows:?}");
    alice.stop().await;
}

/// Queues in `m`'s store an action on `plan` as if `m`'s person had taken it at `at`, long
/// before the relay took it (the relay was away): it is published as soon as the link is up.
async fn queue_handled_taken_at(m: &Mate, plan: &str, at: chrono::DateTime<Utc>) {
    use zof_approvals::domain::audit::{Actor, AuditEntry};
    use zof_approvals::domain::plan::Decision;
    use zof_approvals::domain::team::new_action_id;
    use zof_approvals::store::Recorded;
    let store = m.panel.store_for_tests();
    let plan = plan.to_owned();
    tokio::task::spawn_blocking(move || {
        let actor = Actor::new("alice", Source::Panel);
        let decision = Decision { id: new_action_id(), by: "alice".into(), source: Source::Panel, at };
        store.change_plan(&plan, |p| {
            p.handle(&decision)?;
            let mut audit = AuditEntry::new(&actor, AuditAction::Handled, Some(&plan), "");
            audit.at = at;
            let team = TeamAction {
                id: decision.id.clone(),
                plan_id: plan.clone(),
                organization_id: p.organization_id.clone(),
                run_id: Some(p.run_id.clone()),
                action: TeamVerb::Handled,
                by: "alice".into(),
                at,
                until: None,
                status: None,
                comment: None,
            };
            Ok(Recorded { audit, team: Some(team) })
        })
    })
    .await
    .unwrap()
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_published_half_an_hour_after_it_was_taken_reaches_a_teammate_under_either_scheme() {
    for scheme in [Scheme::Zof, Scheme::StandardWebhooks] {
        let nats = Nats::start();
        let p = publisher(&nats).await;
        let settings = || Settings { scheme, ..Settings::default() };
        let alice = mate_with(&nats, "alice", false, settings()).await;
        let bob = mate_with(&nats, "bob", false, settings()).await;
        deliver_signed(&p, "plan_late", scheme).await;
        for m in [&alice, &bob] {
            m.until("plan_late", "pending", |s, _| s == PlanState::Pending).await;
        }
        queue_handled_taken_at(&alice, "plan_late", Utc::now() - chrono::Duration::minutes(30)).await;
        bob.until("plan_late", &format!("handled by alice ({scheme:?})"), |s, by| {
            s == PlanState::Handled && by == Some("alice")
        })
        .await;
        alice.stop().await;
        bob.stop().await;
    }
}

/// The size of the files under `dir`.
fn dir_size(dir: &std::path::Path) -> u64 {
    let mut size = 0;
    for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let meta = entry.metadata().unwrap();
        size += if meta.is_dir() { dir_size(&entry.path()) } else { meta.len() };
    }
    size
}

/// Not a timing: prints how much the store grew, and bounds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_forged_actions_cost_the_store_under_a_mebibyte() {
    const FORGED: usize = 100_000;
    let nats = Nats::start();
    let p = publisher(&nats).await;
    let bob = mate(&nats, "bob", false, &[]).await;
    deliver(&p, "plan_sentinel").await;
    bob.until("plan_sentinel", "pending", |s, _| s == PlanState::Pending).await;
    let data = bob._dir.path().join("data");
    let store = bob.panel.store_for_tests();
    tokio::task::spawn_blocking(move || store.flush_blocking()).await.unwrap().unwrap();
    let before = dir_size(&data);

    // Unsigned, on a subject naming a long made-up organization, as fast as JetStream takes them.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let subject = action_subject(&"o".repeat(1000));
    let started = Instant::now();
    for chunk in 0..FORGED / 1000 {
        let mut acks = Vec::with_capacity(1000);
        for n in 0..1000 {
            let id = format!("act_forged_{chunk}_{n}");
            let body = format!(
                r#"{{"id":"{id}","plan_id":"plan_{n}","organization_id":"x","action":"handled","by":"m","at":"2026-01-01T00:00:00Z"}}"#
            );
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            acks.push(js.publish_with_headers(subject.clone(), headers, body.into()).await.unwrap());
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    eprintln!("published {FORGED} forged actions in {:?}", started.elapsed());
    // Read after them all: a genuine action.
    let right = Secret::new(SECRET).unwrap();
    let genuine = TeamAction {
        id: "act_genuine".into(),
        plan_id: "plan_sentinel".into(),
        organization_id: "org_abc".into(),
        run_id: Some("run_xyz".into()),
        action: TeamVerb::Handled,
        by: "alice".into(),
        at: Utc::now(),
        until: None,
        status: None,
        comment: None,
    };
    publish_action(&p, "org_abc", &genuine, Some(&sign_zof(&right, &genuine.to_body()))).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    while bob.state("plan_sentinel").await.map(|s| s.0) != Some(PlanState::Handled) {
        assert!(Instant::now() < deadline, "the forged actions were not all read within 10 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("read and refused them all in {:?}", started.elapsed());
    let refusals = bob.panel.overview().await.unwrap().refusals;
    let counted: u64 = refusals.iter().map(|r| r.total).sum();
    let last = &refusals[0].last_reason;
    assert!(last.contains(&"o".repeat(64)) && !last.contains(&"o".repeat(65)), "the subject is cut short: {last}");
    let Mate { panel, stop, task, _dir } = bob;
    drop(panel);
    let _ = stop.unwrap().send(());
    task.unwrap().await.unwrap();
    let after = dir_size(&_dir.path().join("data"));
    let growth = after.saturating_sub(before);
    let store = zof_approvals::store::Store::open(&_dir.path().join("data")).unwrap();
    let record = serde_json::to_vec(&store.meta::<serde_json::Value>("refusals").unwrap()).unwrap().len();
    eprintln!(
        "store: {before} bytes before, {after} after: {growth} bytes for {FORGED} forged actions \
         ({counted} counted; the refusal record is {record} bytes)"
    );
    assert_eq!(counted, FORGED as u64, "every forged action is counted");
    assert!(growth < 1024 * 1024, "{growth} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_alice_approves_on_her_laptop_is_withdrawn_on_bobs_and_reads_approved_by_her() {
    let turn = turn().await;
    let rec = recorder(&turn).await;
    let nats = Nats::start();
    let p = publisher(&nats).await;
    let (console, url) = zof_testkit::review_console::ReviewConsole::start().await;
    console.add("plan_ap", "medium", true);
    let alice = mate_with_console(&nats, "alice", false, &[], Some(&url)).await;
    let bob = mate(&nats, "bob", true, &[]).await;
    deliver(&p, "plan_ap").await;
    let calls = until_calls(&rec, "bob is told of plan_ap", |c| notified(c, "plan_ap").is_some()).await;
    let shown = notified(&calls, "plan_ap").unwrap();
    alice.until("plan_ap", "pending at alice's", |s, _| s == PlanState::Pending).await;

    let report = alice
        .panel
        .decide("plan_ap".into(), zof_approvals::domain::review::Verdict::Approve, Some("rev_1".into()), "ok".into())
        .await;
    assert_eq!(report.outcome, zof_approvals::actions::DecisionOutcome::Decided, "{}", report.message);
    until_calls(&rec, "bob's notification is withdrawn", |c| closed(c, shown)).await;
    bob.until("plan_ap", "decided by Alice Example", |s, by| s == PlanState::Resolved && by == Some("Alice Example"))
        .await;
    let view = bob.panel.plan("plan_ap".into()).await.unwrap().plan;
    assert!(view.resolution.as_deref().is_some_and(|r| r.starts_with("Approved by Alice Example")), "{view:?}");
    let rows = bob.audit("plan_ap").await;
    assert!(rows.iter().any(|r| r.action == AuditAction::Approved && r.who == "Alice Example"), "{rows:?}");
    assert_eq!(console.decisions().len(), 1, "one decision reached the Console");
    alice.stop().await;
    bob.stop().await;
}
