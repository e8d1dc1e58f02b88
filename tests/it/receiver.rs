//! The HTTP contract of `POST /webhooks/zof` and `GET /healthz`, one behaviour per test.

use std::sync::Arc;

use chrono::{Duration, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zof_approvals::store::PlanState;
use zof_approvals::verify::{sign_standard, sign_zof, Secret, SecretSet};

use crate::helpers::*;

#[tokio::test]
async fn signed_plan_pending_is_accepted_stored_and_handed_on() {
    let app = spawn_app().await;
    let r = app.post_signed(&event("evt_abc123")).await;
    assert_eq!(
        (r.status, r.json["status"].as_str(), r.json["id"].as_str()),
        (200, Some("accepted"), Some("evt_abc123"))
    );
    assert_eq!(app.wait_notified(1).await, vec!["plan_1"]);
    let (store, _dir) = app.stopped_store().await;
    let stored = store.event("evt_abc123").unwrap().unwrap();
    assert_eq!((stored.plan_id.as_str(), stored.organization_id.as_str()), ("plan_1", "org_abc"));
    assert_eq!(stored.fingerprint, secret().fingerprint());
    let plan = store.plan("plan_1").unwrap().unwrap();
    assert_eq!(plan.state, PlanState::Pending);
    assert!(plan.notified_at.is_some());
    assert_eq!(store.outbox_len(), 0, "the outbox entry is done");
}

#[tokio::test]
async fn duplicate_delivery_is_acknowledged_once() {
    let app = spawn_app().await;
    assert_eq!(app.post_signed(&event("evt_1")).await.json["status"], "accepted");
    let again = app.post_signed(&event("evt_1")).await;
    assert_eq!((again.status, again.json["status"].as_str()), (200, Some("duplicate")));
    let notified = app.notified.clone();
    // A graceful stop finishes the worker's last batch: whatever the duplicate could raise is raised.
    let (store, _d) = app.stopped_store().await;
    assert_eq!(store.outbox_len(), 0, "the work after both answers is done");
    assert_eq!(*notified.0.lock().unwrap(), vec!["plan_1"], "a duplicate raises nothing new");
}

#[tokio::test]
async fn hundred_concurrent_deliveries_of_one_id_yield_one_accepted() {
    let app = Arc::new(spawn_app().await);
    let body = event("evt_race");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (app, body) = (app.clone(), body.clone());
        tasks.spawn(async move { app.post_signed(&body).await.json["status"].as_str().unwrap().to_owned() });
    }
    let mut statuses = Vec::new();
    while let Some(s) = tasks.join_next().await {
        statuses.push(s.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| *s == "accepted").count(), 1);
    assert_eq!(statuses.iter().filter(|s| *s == "duplicate").count(), 99);
    assert_eq!(app.wait_notified(1).await.len(), 1);
    let app = Arc::into_inner(app).unwrap();
    let (store, _d) = app.stopped_store().await;
    assert_eq!(store.event_count(), 1);
    assert_eq!(store.plans().unwrap().len(), 1);
}

#[tokio::test]
async fn same_id_after_restart_is_a_duplicate_and_pending_plans_survive() {
    let app = spawn_app().await;
    assert_eq!(app.post_signed(&event("evt_restart")).await.json["status"], "accepted");
    let dir = app.stop().await;
    let app = spawn_with(Spawn { dir: Some(dir), ..Spawn::default() }).await;
    assert_eq!(app.post_signed(&event("evt_restart")).await.json["status"], "duplicate");
    let (store, _d) = app.stopped_store().await;
    assert_eq!(store.plan("plan_1").unwrap().unwrap().state, PlanState::Pending);
}

#[tokio::test]
async fn missing_empty_malformed_and_wrong_signatures_are_401() {
    let app = spawn_app().await;
    let body = event("evt_sig");
    let wrong = sign_zof(&Secret::new("some-other-secret-0123456789").unwrap(), &body);
    let cases: [(Option<&str>, &str); 5] = [
        (None, "missing_signature"),
        (Some(""), "empty_signature"),
        (Some("sha256=not-hex"), "malformed_signature"),
        (Some("md5=abcdef"), "malformed_signature"),
        (Some(wrong.as_str()), "signature_mismatch"),
    ];
    for (sig, code) in cases {
        let r = app.post(&body, sig).await;
        assert_eq!((r.status, r.json["error"].as_str()), (401, Some(code)), "{sig:?}");
    }
    let (store, _d) = app.stopped_store().await;
    assert_eq!(store.event_count(), 0, "nothing from an unverified body is stored");
}

#[tokio::test]
async fn tampered_reserialized_and_truncated_bodies_are_401() {
    let app = spawn_app().await;
    let body = event("evt_tamper");
    let sig = sign_zof(&secret(), &body);
    let tampered = String::from_utf8(body.clone()).unwrap().replace("org_abc", "org_evil").into_bytes();
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let reserialized = serde_json::to_vec_pretty(&value).unwrap();
    let truncated = &body[..body.len() - 3];
    for (name, b) in [("tampered", tampered.as_slice()), ("reserialized", &reserialized), ("truncated", truncated)] {
        let r = app.post(b, Some(&sig)).await;
        assert_eq!((r.status, r.json["error"].as_str()), (401, Some("signature_mismatch")), "{name}");
    }
}

#[tokio::test]
async fn response_never_echoes_the_body_or_the_secret() {
    let mut spawn = Spawn::default();
    spawn.settings.allow_orgs = vec!["org_abc".into()];
    let app = spawn_with(spawn).await;
    // Every body carries the marker in its event and plan ids; each is refused at another step.
    let marked = |org: &str| event_for("evt_echo_marker", "plan_echo_marker", org);
    let edited = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = serde_json::from_slice::<serde_json::Value>(&marked("org_abc")).unwrap();
        edit(&mut v);
        v.to_string().into_bytes()
    };
    let whole = marked("org_abc");
    let cases: Vec<(&str, Vec<u8>, bool, u16)> = vec![
        ("wrong signature", whole.clone(), false, 401),
        ("truncated JSON", whole[..whole.len() - 10].to_vec(), true, 400),
        ("wrong type", edited(&|v| v["data"]["object"]["run_id"] = serde_json::json!(["run_echo_marker"])), true, 400),
        ("bad timestamp", edited(&|v| v["created"] = serde_json::json!("echo_marker")), true, 400),
        (
            "control characters",
            edited(&|v| v["data"]["object"]["id"] = serde_json::json!("echo_marker\u{1}")),
            true,
            400,
        ),
        ("organization not allowed", marked("org_other"), true, 403),
    ];
    for (name, body, signed, status) in cases {
        let r = if signed { app.post_signed(&body).await } else { app.post(&body, Some("sha256=00")).await };
        let text = r.json.to_string();
        assert_eq!(r.status, status, "{name}: {text}");
        assert!(!text.contains("echo_marker") && !text.contains(SECRET), "{name}: {text}");
    }
}

#[tokio::test]
async fn oversize_body_is_413() {
    let mut spawn = Spawn::default();
    spawn.settings.max_body_bytes = 4096;
    let app = spawn_with(spawn).await;
    let mut body = event("evt_big");
    body.truncate(body.len() - 1);
    body.extend_from_slice(format!(",\"pad\":\"{}\"}}", "x".repeat(5000)).as_bytes());
    let r = app.post_signed(&body).await;
    assert_eq!((r.status, r.json["error"].as_str()), (413, Some("body_too_large")));
}

#[tokio::test]
async fn signed_but_malformed_bodies_are_400_with_the_reason() {
    let app = spawn_app().await;
    let mut missing = serde_json::from_slice::<serde_json::Value>(&event("evt_m")).unwrap();
    missing["data"]["object"].as_object_mut().unwrap().remove("run_id");
    let mut wrong_type = serde_json::from_slice::<serde_json::Value>(&event("evt_w")).unwrap();
    wrong_type["data"]["object"]["organization_id"] = serde_json::json!(42);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("invalid UTF-8", b"{\"id\":\"\xff\xfe\"}".to_vec(), "UTF-8"),
        ("invalid JSON", b"{\"id\":".to_vec(), "JSON"),
        ("missing field", missing.to_string().into_bytes(), "run_id"),
        ("wrong type", wrong_type.to_string().into_bytes(), "organization_id"),
        ("bad timestamp", String::from_utf8(event("evt_t")).unwrap().replace("Z\"", "\"").into_bytes(), "created"),
    ];
    for (name, body, word) in cases {
        let r = app.post_signed(&body).await;
        assert_eq!(r.status, 400, "{name}");
        assert!(r.json["message"].as_str().unwrap().contains(word), "{name}: {}", r.json);
    }
}

#[tokio::test]
async fn unknown_fields_are_kept() {
    let app = spawn_app().await;
    let mut v = serde_json::from_slice::<serde_json::Value>(&event("evt_extra")).unwrap();
    v["livemode"] = serde_json::json!(true);
    v["data"]["object"]["policy_pack"] = serde_json::json!("pp_1");
    assert_eq!(app.post_signed(v.to_string().as_bytes()).await.json["status"], "accepted");
    let (store, _d) = app.stopped_store().await;
    let payload = store.event("evt_extra").unwrap().unwrap().payload_value();
    assert_eq!(
        (payload["livemode"].as_bool(), payload["data"]["object"]["policy_pack"].as_str()),
        (Some(true), Some("pp_1"))
    );
}

#[tokio::test]
async fn unknown_event_type_is_ignored_recorded_and_deduplicated() {
    let app = spawn_app().await;
    let body = String::from_utf8(event("evt_other")).unwrap().replace("remediation.plan_pending", "run.completed");
    let r = app.post_signed(body.as_bytes()).await;
    assert_eq!((r.status, r.json["status"].as_str()), (200, Some("ignored")));
    assert!(r.json["reason"].as_str().unwrap().contains("run.completed"));
    assert_eq!(app.post_signed(body.as_bytes()).await.json["status"], "duplicate");
    let notified = app.notified.clone();
    let (store, _d) = app.stopped_store().await;
    assert_eq!(store.outbox_len(), 0, "the work after both answers is done");
    assert!(notified.0.lock().unwrap().is_empty(), "an ignored event raises nothing");
}

#[tokio::test]
async fn other_organization_is_403_when_an_allow_list_is_set() {
    let mut spawn = Spawn::default();
    spawn.settings.allow_orgs = vec!["org_abc".into()];
    let app = spawn_with(spawn).await;
    let r = app.post_signed(&event_for("evt_o", "plan_o", "org_other")).await;
    assert_eq!((r.status, r.json["error"].as_str()), (403, Some("organization_not_allowed")));
    assert_eq!(app.post_signed(&event_for("evt_a", "plan_a", "org_abc")).await.status, 200);
}

#[tokio::test]
async fn previous_secret_is_refused_once_expired() {
    let old = Secret::new("previous-secret-0123456789").unwrap();
    let now = Utc::now();
    let secrets = SecretSet::new([
        (secret(), None),
        (old.clone(), Some(now - Duration::seconds(1))),
        (Secret::new("overlap-secret-0123456789").unwrap(), Some(now + Duration::hours(1))),
    ]);
    let app = spawn_with(Spawn { secrets, ..Spawn::default() }).await;
    let body = event("evt_old_secret");
    let r = app.post(&body, Some(&sign_zof(&old, &body))).await;
    assert_eq!((r.status, r.json["error"].as_str()), (401, Some("expired_secret")));
    let overlap = Secret::new("overlap-secret-0123456789").unwrap();
    assert_eq!(app.post(&body, Some(&sign_zof(&overlap, &body))).await.json["status"], "accepted");
}

#[tokio::test]
async fn two_signatures_in_one_header_pass_during_sender_rotation() {
    let app = spawn_app().await;
    let body = event("evt_two");
    let other = sign_zof(&Secret::new("senders-new-secret-0123456789").unwrap(), &body);
    let header = format!("{other}, {}", sign_zof(&secret(), &body));
    assert_eq!(app.post(&body, Some(&header)).await.json["status"], "accepted");
}

#[tokio::test]
async fn standard_webhooks_timestamp_out_of_tolerance_is_401() {
    let mut spawn = Spawn::default();
    spawn.settings.scheme = zof_approvals::verify::Scheme::StandardWebhooks;
    let app = spawn_with(spawn).await;
    let send = |ts: i64| {
        let body = event(&format!("evt_sw_{ts}"));
        let sig = sign_standard(&secret(), "msg_1", ts, &body);
        app.client
            .post(&app.url)
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body)
            .send()
    };
    let now = Utc::now().timestamp();
    assert_eq!(send(now).await.unwrap().status(), 200);
    let late = send(now - 600).await.unwrap();
    assert_eq!(late.status(), 401);
    assert!(late.text().await.unwrap().contains("timestamp_out_of_tolerance"));
}

#[tokio::test]
async fn event_older_than_the_retention_window_is_refused() {
    let app = spawn_app().await;
    let r = app.post_signed(&event_created("evt_ancient", Utc::now() - Duration::days(31))).await;
    assert_eq!((r.status, r.json["error"].as_str()), (400, Some("event_too_old")));
}

#[tokio::test]
async fn without_a_secret_deliveries_get_503_with_retry_after_and_health_says_why() {
    let app = spawn_with(Spawn { secrets: SecretSet::default(), ..Spawn::default() }).await;
    let r = app.post_signed(&event("evt_nosecret")).await;
    assert_eq!((r.status, r.retry_after.as_deref()), (503, Some("5")));
    let h = app.get("/healthz").await;
    assert_eq!((h.status, h.json["status"].as_str()), (503, Some("unavailable")));
    assert!(h.json["reason"].as_str().unwrap().contains("no webhook secret"));
}

#[tokio::test]
async fn health_is_ok_and_other_routes_are_404_or_405() {
    let app = spawn_app().await;
    let h = app.get("/healthz").await;
    let detail = serde_json::json!({"quarantined": 0, "not_notified": 0, "outbox": 0});
    assert_eq!((h.status, h.json.clone()), (200, serde_json::json!({"status": "ok", "detail": detail})));
    assert_eq!(app.get("/webhooks/zof").await.status, 405);
    assert_eq!(app.get("/nope").await.status, 404);
}

#[tokio::test]
async fn a_body_trickled_byte_by_byte_is_cut_off() {
    let mut spawn = Spawn::default();
    spawn.settings.request_timeout_secs = 1;
    let app = spawn_with(spawn).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = event("evt_slow");
    let head = format!(
        "POST /webhooks/zof HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nx-zof-signature: {}\r\n\r\n",
        body.len(),
        sign_zof(&secret(), &body)
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let trickle = async {
        for b in &body {
            if conn.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    // The receiver answers 408 long before the trickle could finish (body.len() * 100 ms).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), trickle).await;
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(2), conn.read(&mut answer)).await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    let (store, _d) = app.stopped_store().await;
    assert_eq!(store.event_count(), 0);
}

#[tokio::test]
async fn headers_trickled_slowly_are_cut_off() {
    let mut spawn = Spawn::default();
    spawn.settings.request_timeout_secs = 1;
    let app = spawn_with(spawn).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"POST /webhooks/zof HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let trickle = async {
        for b in b"x-zof-signature: sha256=00000000000000000000000000000000" {
            if conn.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        false
    };
    // Cut off after the 1 s header deadline, long before the 5 s the trickle would take.
    let cut_off = tokio::time::timeout(std::time::Duration::from_secs(4), trickle).await;
    assert!(
        matches!(cut_off, Ok(true)) || {
            let mut rest = Vec::new();
            matches!(
                tokio::time::timeout(std::time::Duration::from_secs(1), conn.read_to_end(&mut rest)).await,
                Ok(Ok(_))
            )
        },
        "the connection is closed"
    );
}

#[tokio::test]
async fn rejected_deliveries_are_counted_in_plain_words_without_body_content() {
    let app = spawn_app().await;
    app.post(&event("evt_logged"), Some("sha256=00")).await;
    app.post_signed(&event("evt_ok")).await;
    let (store, _d) = app.stopped_store().await;
    // The delivery log keeps real deliveries; refusals are counted apart.
    let log = store.deliveries(10).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(store.deliveries_of("evt_ok").unwrap().len(), 1);
    let book = store.meta::<zof_approvals::refusals::RefusalBook>("refusals").unwrap().unwrap();
    let recent = book.recent();
    assert_eq!((recent.len(), recent[0].status, recent[0].code.as_str()), (1, 401, "malformed_signature"));
    assert!(recent[0].reason.contains("signature") && !recent[0].reason.contains("evt_logged"));
}
