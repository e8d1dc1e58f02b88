#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test here

//! The team relay, end to end: a real `nats-server` on loopback (from `scripts/deps.sh`, or
//! `ZOF_NATS_SERVER`), `zof-approvals relay` processes, and laptops running `serve --relay`.
//! Nothing is mocked; each test has its own server and directories.

mod desktop;
mod support;
mod team;

use std::collections::HashSet;
use std::time::Duration;

use axum::body::Bytes;
use chrono::Utc;
use support::*;
use zof_approvals::envelope::plan_pending_body;
use zof_approvals::relay::{delivery_subject, NatsAuth, NatsConfig, Publisher, RelayStatus, RECEIVED_AT_HEADER};
use zof_approvals::verify::{sign_standard, sign_zof, Secret};

fn publisher(nats: &Nats, rt: &tokio::runtime::Runtime) -> Publisher {
    let config = NatsConfig { url: nats.url(), auth: NatsAuth::None, ca_file: None, name: "test publisher".into() };
    rt.block_on(async {
        let p = Publisher::connect(&config, RelayStatus::new("test")).await.unwrap();
        p.ensure_stream(&Default::default(), Duration::from_secs(10)).await.unwrap();
        p
    })
}

fn stop_and_read(nats: &impl NatsUrl, laptop: &Laptop, proc: Proc) -> Vec<String> {
    wait_drained(nats, &laptop.name);
    proc.terminate();
    laptop.plans()
}

#[test]
fn two_laptops_each_get_every_delivery_exactly_once() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(&nats, dir.path(), "relay", &[]);
    let (a, b) = (Laptop::new(dir.path(), "alice_a"), Laptop::new(dir.path(), "bob_b"));
    let (pa, pb) = (a.start(&nats), b.start(&nats));
    let sent = send(&relay.url(), 1000, &[]);
    assert_eq!(sent["accepted"], 1000, "{sent}");
    for (laptop, proc) in [(&a, pa), (&b, pb)] {
        let plans = stop_and_read(&nats, laptop, proc);
        assert_eq!((plans.len(), distinct(&plans).len()), (1000, 1000), "{}", laptop.name);
        assert_eq!(laptop.notifications(), 1000, "{}: one notification per plan", laptop.name);
    }
}

#[test]
fn a_laptop_that_was_offline_catches_up() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(&nats, dir.path(), "relay", &[]);
    let (a, b) = (Laptop::new(dir.path(), "a"), Laptop::new(dir.path(), "b"));
    let pa = a.start(&nats);
    assert_eq!(send(&relay.url(), 500, &[])["accepted"], 500);
    let pb = b.start(&nats);
    assert_eq!(send(&relay.url(), 500, &[])["accepted"], 500);
    let log_b = pb.log.clone();
    for (laptop, proc) in [(&a, pa), (&b, pb)] {
        let plans = stop_and_read(&nats, laptop, proc);
        assert_eq!(distinct(&plans).len(), 1000, "{}", laptop.name);
        assert_eq!(laptop.notifications(), 1000, "{}", laptop.name);
    }
    let text = std::fs::read_to_string(log_b).unwrap();
    assert!(text.contains("relay: catching up"), "the late laptop said it was catching up:\n{text}");
}

#[test]
fn every_delivery_the_relay_acknowledged_before_it_was_killed_reaches_every_laptop() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(&nats, dir.path(), "relay", &[]);
    let (a, b) = (Laptop::new(dir.path(), "a"), Laptop::new(dir.path(), "b"));
    let (pa, pb) = (a.start(&nats), b.start(&nats));
    let acked_file = dir.path().join("acked.txt");
    let burst = burst_recording_acks(&relay.url(), 5000, &acked_file);
    relay.kill9();
    let out = burst.wait_with_output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["errors"].as_u64().unwrap() > 0, "the burst was cut off: {summary}");
    let acked: HashSet<String> = std::fs::read_to_string(&acked_file).unwrap().lines().map(str::to_owned).collect();
    assert!(acked.len() >= 300);
    for (laptop, proc) in [(&a, pa), (&b, pb)] {
        let plans = distinct(&stop_and_read(&nats, laptop, proc));
        let missing: Vec<_> = acked.difference(&plans).take(5).collect();
        assert!(missing.is_empty(), "{} is missing acknowledged deliveries, e.g. {missing:?}", laptop.name);
        assert_eq!(laptop.notifications(), plans.len(), "{}", laptop.name);
    }
}

#[test]
fn with_nats_down_the_relay_answers_503_never_200_and_everything_recovers() {
    let mut nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(&nats, dir.path(), "relay", &[]);
    let a = Laptop::new(dir.path(), "a");
    let pa = a.start(&nats);
    assert_eq!(send(&relay.url(), 50, &[])["accepted"], 50);
    wait_drained(&nats, "a");

    nats.stop();
    let during = send(&relay.url(), 5, &[]);
    assert_eq!(during["accepted"], 0, "nothing is acknowledged while NATS is down: {during}");
    wait_until(10, "the relay's /healthz to say unavailable", || relay.healthz().0 == 503);
    wait_until(10, "the laptop to see the relay link down", || {
        pa.healthz().1["detail"]["relay"]["state"] == "disconnected"
    });
    let rt = runtime();
    let body = plan_pending_body("evt_down", Utc::now(), "plan_down", "org_abc", "run_xyz");
    let secret = Secret::new(SECRET).unwrap();
    let reply = rt.block_on(
        reqwest::Client::new().post(relay.url()).header("x-zof-signature", sign_zof(&secret, &body)).body(body).send(),
    );
    let reply = reply.unwrap();
    assert_eq!(reply.status().as_u16(), 503);
    assert!(reply.headers().contains_key("retry-after"), "a 503 says when to retry");
    let during = send(&relay.url(), 20, &[]);
    assert_eq!((during["accepted"].as_u64(), during["rejected"].as_u64()), (Some(0), Some(20)), "{during}");

    nats.restart();
    wait_until(20, "the relay to reconnect", || relay.healthz().0 == 200);
    assert_eq!(send(&relay.url(), 50, &[])["accepted"], 50);
    wait_until(20, "the laptop to reconnect", || pa.healthz().1["detail"]["relay"]["state"] == "connected");
    let plans = stop_and_read(&nats, &a, pa);
    assert_eq!(distinct(&plans).len(), 100);
}

#[test]
fn two_relay_replicas_given_the_same_deliveries_store_each_once() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let (r1, r2) = (relay(&nats, dir.path(), "r1", &[]), relay(&nats, dir.path(), "r2", &[]));
    let a = Laptop::new(dir.path(), "a");
    let pa = a.start(&nats);
    let secret = Secret::new(SECRET).unwrap();
    let client = reqwest::Client::new();
    let rt = runtime();
    let answers: Vec<(String, String)> = rt.block_on(async {
        let mut all = Vec::new();
        for chunk in 0..10 {
            let mut batch = Vec::new();
            for n in 0..20 {
                let id = format!("evt_twin_{chunk}_{n}");
                let body = plan_pending_body(&id, Utc::now(), &format!("plan_{id}"), "org_abc", "run_xyz");
                let sig = sign_zof(&secret, &body);
                for url in [r1.url(), r2.url()] {
                    let req = client.post(url).header("x-zof-signature", sig.clone()).body(body.clone()).send();
                    batch.push(async { req.await.unwrap().text().await.unwrap() });
                }
            }
            for text in futures::future::join_all(batch).await {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                all.push((v["id"].as_str().unwrap().to_owned(), v["status"].as_str().unwrap().to_owned()));
            }
        }
        all
    });
    let accepted: HashSet<_> = answers.iter().filter(|(_, s)| s == "accepted").map(|(id, _)| id.clone()).collect();
    let duplicate = answers.iter().filter(|(_, s)| s == "duplicate").count();
    assert_eq!((accepted.len(), duplicate), (200, 200), "one replica stores each, the other says duplicate");
    let plans = stop_and_read(&nats, &a, pa);
    assert_eq!(distinct(&plans).len(), 200);
    assert_eq!(a.notifications(), 200);
}

#[test]
fn a_laptop_offline_past_the_tolerance_accepts_what_was_valid_when_the_relay_took_it() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(&nats, dir.path(), "relay", &["--scheme", "standard_webhooks"]);
    let sent = send(&relay.url(), 20, &["--scheme", "standard_webhooks"]);
    assert_eq!(sent["accepted"], 20, "{sent}");
    let sent_at = std::time::Instant::now();
    // The control: signed 10 s before it reached the relay, beyond a 2 s tolerance.
    let rt = runtime();
    let p = publisher(&nats, &rt);
    let secret = Secret::new(SECRET).unwrap();
    let body = plan_pending_body("evt_late", Utc::now(), "plan_late", "org_abc", "run_xyz");
    let ts = Utc::now().timestamp() - 10;
    let sig = sign_standard(&secret, "evt_late", ts, &body);
    let (ts, now) = (ts.to_string(), Utc::now().to_rfc3339());
    let headers = [
        ("webhook-id", "evt_late"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
        (RECEIVED_AT_HEADER, now.as_str()),
    ];
    rt.block_on(p.publish(delivery_subject("org_abc"), "evt_late", &headers, Bytes::from(body))).unwrap();

    let a = Laptop::new(dir.path(), "a").with_settings(r#"{"scheme": "standard_webhooks", "tolerance_secs": 2}"#);
    // Offline until the deliveries are older than the tolerance: the point of this test is time passing.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(sent_at.elapsed()));
    let pa = a.start(&nats);
    let plans = stop_and_read(&nats, &a, pa);
    assert_eq!(distinct(&plans).len(), 20, "what the relay took in time is accepted; the late one is not");
    assert!(!plans.contains(&"evt_late".to_string()));
}

#[test]
fn a_captured_delivery_published_straight_to_nats_with_a_back_dated_received_at_is_refused() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(&nats, dir.path(), "relay", &["--scheme", "standard_webhooks"]);
    let a = Laptop::new(dir.path(), "a").with_settings(r#"{"scheme": "standard_webhooks"}"#);
    let pa = a.start(&nats);
    // Signed an hour ago and captured; published now, without the relay, claiming the relay
    // took it when it was signed.
    let rt = runtime();
    let p = publisher(&nats, &rt);
    let secret = Secret::new(SECRET).unwrap();
    let signed_at = Utc::now() - chrono::Duration::hours(1);
    let body = plan_pending_body("evt_captured", signed_at, "plan_captured", "org_abc", "run_xyz");
    let sig = sign_standard(&secret, "evt_captured", signed_at.timestamp(), &body);
    let (ts, claimed) = (signed_at.timestamp().to_string(), signed_at.to_rfc3339());
    let headers = [
        ("webhook-id", "evt_captured"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
        (RECEIVED_AT_HEADER, claimed.as_str()),
    ];
    rt.block_on(p.publish(delivery_subject("org_abc"), "evt_captured", &headers, Bytes::from(body))).unwrap();
    // What the relay takes now still arrives.
    assert_eq!(send(&relay.url(), 5, &["--scheme", "standard_webhooks"])["accepted"], 5);
    let log = pa.log.clone();
    let plans = stop_and_read(&nats, &a, pa);
    assert_eq!(distinct(&plans).len(), 5, "{plans:?}");
    assert!(!plans.contains(&"evt_captured".to_string()), "the captured delivery is refused");
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("timestamp_out_of_tolerance"), "the refusal is counted:\n{text}");
}

/// Event id, headers, body: a message as a forger with NATS credentials would publish it.
type Forged<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>);

#[test]
fn messages_forged_on_the_subject_are_refused_by_the_laptops() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let a = Laptop::new(dir.path(), "a");
    let rt = runtime();
    let p = publisher(&nats, &rt);
    let pa = a.start(&nats);
    let secret = Secret::new(SECRET).unwrap();
    let other = Secret::new("another-secret-not-the-laptops-0123").unwrap();
    let body = |id: &str| plan_pending_body(id, Utc::now(), &format!("plan_{id}"), "org_abc", "run_xyz");
    let original = body("evt_tampered");
    let signed_original = sign_zof(&secret, &original);
    let tampered = String::from_utf8(original).unwrap().replace("plan_evt_tampered", "plan_evil").into_bytes();
    let wrong_secret = sign_zof(&other, &body("evt_wrong_secret"));
    let good = body("evt_good");
    let good_sig = sign_zof(&secret, &good);
    let messages: Vec<Forged> = vec![
        ("evt_tampered", vec![("x-zof-signature", signed_original.as_str())], tampered),
        ("evt_unsigned", vec![], body("evt_unsigned")),
        ("evt_wrong_secret", vec![("x-zof-signature", wrong_secret.as_str())], body("evt_wrong_secret")),
        ("evt_good", vec![("x-zof-signature", good_sig.as_str())], good),
    ];
    for (id, headers, body) in messages {
        rt.block_on(p.publish(delivery_subject("org_abc"), id, &headers, Bytes::from(body))).unwrap();
    }
    wait_drained(&nats, "a");
    let log = pa.log.clone();
    let plans = stop_and_read(&nats, &a, pa);
    assert_eq!(plans, vec!["evt_good".to_string()], "only the genuine delivery becomes a plan");
    let text = std::fs::read_to_string(log).unwrap();
    for code in ["signature_mismatch", "missing_signature"] {
        assert!(text.contains(code), "the refusal `{code}` is counted:\n{text}");
    }
}

#[test]
fn a_three_node_cluster_losing_a_node_mid_burst_keeps_every_acknowledged_delivery() {
    let mut cluster = Cluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    // The relay waits for the cluster to elect its JetStream leader before it listens.
    let relay = relay(&cluster, dir.path(), "relay", &["--replicas", "3"]);
    let a = Laptop::new(dir.path(), "a");
    let pa = a.start(&cluster);
    let acked_file = dir.path().join("acked.txt");
    let burst = burst_recording_acks(&relay.url(), 2000, &acked_file);
    cluster.kill(1);
    let out = burst.wait_with_output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["errors"], 0, "the relay answered every delivery: {summary}");
    // The two nodes left keep the stream: the relay takes deliveries again.
    wait_until(30, "the relay to take deliveries again", || send(&relay.url(), 10, &[])["accepted"] == 10);
    let acked: HashSet<String> = std::fs::read_to_string(&acked_file).unwrap().lines().map(str::to_owned).collect();
    let plans = distinct(&stop_and_read(&cluster, &a, pa));
    let missing: Vec<_> = acked.difference(&plans).take(5).collect();
    assert!(missing.is_empty(), "acknowledged deliveries missing on the laptop, e.g. {missing:?}");
    assert_eq!(a.notifications(), plans.len());
}

#[test]
fn the_relay_answers_like_the_receiver() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(&nats, dir.path(), "relay", &[]);
    let out = std::process::Command::new(bin())
        .args(["check", "--url", &relay.url()])
        .env("ZOF_WEBHOOK_SECRET", SECRET)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the conformance suite passes against the relay:\n{report}");
    let rt = runtime();
    let body = plan_pending_body("evt_browser", Utc::now(), "plan_b", "org_abc", "run_xyz");
    let sig = sign_zof(&Secret::new(SECRET).unwrap(), &body);
    let request =
        reqwest::Client::new().post(relay.url()).header("x-zof-signature", sig).header("origin", "https://example.com");
    let status = rt.block_on(request.body(body).send()).unwrap().status().as_u16();
    assert_eq!(status, 403, "a browser's request is refused as by the receiver");
    let (code, health) = relay.healthz();
    assert_eq!((code, &health["detail"]["relay"]["state"]), (200, &serde_json::json!("connected")));
}

/// `send` of `count` deliveries at concurrency 32 to `url`, each acknowledged id appended to
/// `acked_file`; returns once 300 are acknowledged, with the burst still going.
fn burst_recording_acks(url: &str, count: u32, acked_file: &std::path::Path) -> std::process::Child {
    let burst = std::process::Command::new(bin())
        .args(["send", "--url", url, "--count", &count.to_string(), "--concurrency", "32", "--json", "--acked-out"])
        .arg(acked_file)
        .env("ZOF_WEBHOOK_SECRET", SECRET)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let acked_lines = || std::fs::read_to_string(acked_file).map(|t| t.lines().count()).unwrap_or(0);
    wait_until(30, "300 acknowledged deliveries", || acked_lines() >= 300);
    burst
}

/// `zof-approvals ARGS` on a laptop's data (through its control socket while it runs); it must succeed.
fn cli_on(laptop: &Laptop, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(bin())
        .args(args)
        .arg("--data-dir")
        .arg(laptop.home.join("data"))
        .arg("--config-dir")
        .arg(laptop.home.join("config"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `zof-approvals plans --json` of a laptop.
fn plans_json(laptop: &Laptop) -> Vec<serde_json::Value> {
    serde_json::from_slice(&cli_on(laptop, &["plans", "--json"])).unwrap()
}

/// The plan ids a laptop holds in `state`.
fn plans_in(laptop: &Laptop, state: &str) -> Vec<String> {
    plans_json(laptop)
        .into_iter()
        .filter(|p| p["state"] == state)
        .map(|p| p["plan"].as_str().unwrap().to_owned())
        .collect()
}

/// `zof-approvals handle PLAN` on a laptop's data (through its receiver if one runs).
fn handle_with_cli(laptop: &Laptop, plan: &str) {
    cli_on(laptop, &["handle", plan]);
}

#[test]
fn a_plan_handled_with_the_cli_on_one_laptop_reads_handled_by_that_person_on_another() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(&nats, dir.path(), "relay", &[]);
    let a = Laptop::new(dir.path(), "alice_l7").with_settings(r#"{"display_name": "alice"}"#);
    let b = Laptop::new(dir.path(), "bob_l2").with_settings(r#"{"display_name": "bob"}"#);
    let (pa, pb) = (a.start(&nats), b.start(&nats));
    assert_eq!(send(&relay.url(), 3, &[])["accepted"], 3);
    wait_until(30, "both laptops hold the three plans", || {
        plans_in(&a, "pending").len() == 3 && plans_in(&b, "pending").len() == 3
    });
    let target = plans_in(&a, "pending").remove(0);
    handle_with_cli(&a, &target);
    wait_until(15, "bob's laptop reads the plan handled", || plans_in(&b, "handled") == [target.clone()]);
    let row = plans_json(&b).into_iter().find(|p| p["plan"] == target.as_str()).unwrap();
    assert_eq!(row["decided_by"], "alice", "{row}");
    assert!(row["handled_at"].is_string(), "{row}");
    let audit = cli_on(&b, &["audit", "--json", "--plan", &target]);
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&audit).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        rows.iter().any(|r| r["action"] == "handled" && r["who"] == "alice" && r["source"] == "team:bob_l2"),
        "{rows:?}"
    );
    pa.terminate();
    pb.terminate();
}

#[test]
fn a_plan_handled_with_the_cli_while_no_receiver_runs_is_shared_once_serve_relay_starts() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(&nats, dir.path(), "relay", &[]);
    let a = Laptop::new(dir.path(), "alice_l7").with_settings(r#"{"display_name": "alice"}"#);
    let b = Laptop::new(dir.path(), "bob_l2").with_settings(r#"{"display_name": "bob"}"#);
    let (pa, pb) = (a.start(&nats), b.start(&nats));
    assert_eq!(send(&relay.url(), 2, &[])["accepted"], 2);
    wait_until(30, "both laptops hold the two plans", || {
        plans_in(&a, "pending").len() == 2 && plans_in(&b, "pending").len() == 2
    });
    // Alice's receiver stops; she handles the plan with the CLI on her store alone.
    pa.terminate();
    let target = plans_in(&a, "pending").remove(0);
    handle_with_cli(&a, &target);
    assert_eq!(plans_in(&b, "handled"), Vec::<String>::new(), "nothing could reach bob yet");
    // Once `serve --relay` runs again, the queued action goes out and bob reads it.
    let pa = a.start(&nats);
    wait_until(30, "bob's laptop reads the plan handled", || plans_in(&b, "handled") == [target.clone()]);
    let row = plans_json(&b).into_iter().find(|p| p["plan"] == target.as_str()).unwrap();
    assert_eq!(row["decided_by"], "alice", "{row}");
    pa.terminate();
    pb.terminate();
}
