//! What probing the receiver from outside found: a stalled log reader, floods of refusals, web
//! pages posting to loopback, a concurrency queue outside the deadline, re-announced plans, a
//! damaged store, and a full disk. Each test names the case it guards.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use zof_approvals::envelope::plan_pending_body;
use zof_approvals::refusals::RefusalBook;
use zof_approvals::store::{DeliveryVerdict, PlanFlag, Store};

use crate::helpers::{bin, event, event_for, spawn_app, spawn_with, ServeChild, Spawn, SECRET};

/// Polls `done` every 20 ms for up to `within`.
async fn wait_for(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

fn dir_size(path: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() { dir_size(&entry.path()) } else { meta.len() };
    }
    total
}

fn refusals(store: &Store) -> RefusalBook {
    store.meta::<RefusalBook>("refusals").unwrap().unwrap_or_default()
}

#[tokio::test]
async fn a_stalled_log_reader_never_freezes_the_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(bin());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--secret-env", "ZOF_WEBHOOK_SECRET", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config-dir")
        .arg(dir.path().join("config"))
        .env("ZOF_WEBHOOK_SECRET", SECRET)
        // Every delivery writes a line at debug level: a pipe buffer (64 KiB) fills within a few
        // hundred requests, and nobody ever reads it.
        .env("ZOF_LOG", "debug")
        .stderr(Stdio::piped());
    let server = ServeChild::spawn(command);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    for n in 0..1500 {
        let answer = client.post(&server.url).body(event(&format!("evt_unsigned_{n}"))).send().await;
        let status = answer.unwrap_or_else(|e| panic!("request {n} hung or failed: {e}")).status();
        assert_eq!(status, 401);
    }
    for n in 0..500 {
        let body = event(&format!("evt_signed_{n}"));
        let sig = zof_approvals::verify::sign_zof(&crate::helpers::secret(), &body);
        let answer = client.post(&server.url).header("X-Zof-Signature", sig).body(body).send().await;
        let status = answer.unwrap_or_else(|e| panic!("signed delivery {n} hung or failed: {e}")).status();
        assert_eq!(status, 200, "signed delivery {n} after the pipe filled");
    }
    let health = client.get(format!("{}/healthz", server.base)).send().await.unwrap().status();
    assert_eq!(health, 200);
    server.terminate();
}

#[tokio::test]
async fn twenty_thousand_refusals_cost_constant_storage_and_displace_no_delivery() {
    let app = spawn_app().await;
    assert_eq!(app.post_signed(&event("evt_real")).await.status, 200);
    assert_eq!(app.post_signed(&event("evt_real")).await.json["status"], "duplicate");
    let data = app.dir.path().join("data");
    // The accepted delivery's log line is written by the outbox worker.
    app.wait_notified(1).await;
    let before = dir_size(&data);
    let client = reqwest::Client::new();
    let url = app.url.clone();
    let tasks: Vec<_> = (0..32)
        .map(|w| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                for n in 0..625 {
                    let body = format!("{{\"id\":\"evt_flood_{w}_{n}\"}}");
                    let r = client.post(&url).body(body).send().await.unwrap();
                    assert_eq!(r.status(), 401);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (store, _dir) = app.stopped_store().await;
    let growth = dir_size(&data).saturating_sub(before);
    eprintln!("store growth over 20,000 refusals: {growth} bytes");
    assert!(growth < 1024 * 1024, "the store grew by {growth} bytes over 20,000 refusals");
    let book = refusals(&store);
    let summary = book.summary(Utc::now());
    assert_eq!((summary[0].code.as_str(), summary[0].last_hour), ("missing_signature", 20_000));
    assert_eq!(book.recent().len(), zof_approvals::refusals::RECENT_CAP);
    // Real history is intact: the accepted and the duplicate delivery, and nothing else.
    let log = store.deliveries(100).unwrap();
    let verdicts: Vec<_> = log.iter().map(|d| d.verdict).collect();
    assert_eq!(verdicts, vec![DeliveryVerdict::Duplicate, DeliveryVerdict::Accepted]);
    assert_eq!(store.deliveries_of("evt_real").unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_cannot_post_to_the_receiver_even_with_a_valid_signature() {
    let app = spawn_app().await;
    let body = event("evt_from_a_page");
    let sig = zof_approvals::verify::sign_zof(&crate::helpers::secret(), &body);
    for (header, value) in
        [("Origin", "https://evil.example"), ("Sec-Fetch-Mode", "no-cors"), ("Sec-Fetch-Site", "cross-site")]
    {
        let r = app.client.post(&app.url).header("X-Zof-Signature", &sig).header(header, value).body(body.clone());
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 403, "{header}");
        let json: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(json["error"], "browser_request_refused", "{header}");
    }
    // Refused before the body is read: a request that announces a body and never sends it is
    // answered at once, not at the request deadline.
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(conn, "POST /webhooks/zof HTTP/1.1\r\nHost: {addr}\r\nOrigin: null\r\nContent-Length: 500000\r\n\r\n{{")
        .unwrap();
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 403");
    let (store, _d) = app.stopped_store().await;
    assert!(store.event("evt_from_a_page").unwrap().is_none(), "nothing from a browser is stored");
    let summary = refusals(&store).summary(Utc::now());
    let browser = summary.iter().find(|s| s.code == "browser_request_refused").unwrap();
    assert_eq!((browser.status, browser.last_hour), (403, 4));
}

#[test]
fn waiting_for_a_concurrency_permit_counts_toward_the_request_deadline() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut settings = Spawn::default().settings;
    settings.max_concurrent_requests = 1;
    settings.request_timeout_secs = 2;
    let app = rt.block_on(spawn_with(Spawn { settings, ..Spawn::default() }));
    let addr = app.base.trim_start_matches("http://").to_owned();
    let started = |addr: &str| {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(c, "POST /webhooks/zof HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 20\r\n\r\n").unwrap();
        c
    };
    // A holds the only permit, trickling a body it never finishes, until its deadline.
    let mut a = started(&addr);
    a.write_all(b"{").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // B queues behind A and trickles its body for 2.5 s: if waiting were not counted it would
    // get its own 2 s after A's end and complete; counted, its deadline passes first.
    let mut b = started(&addr);
    for _ in 0..10 {
        if b.write_all(b"xx").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let status = |c: &mut TcpStream| {
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        String::from_utf8_lossy(&head[9..12]).into_owned()
    };
    assert_eq!(status(&mut a), "408");
    assert_eq!(status(&mut b), "408", "the wait for a permit is part of the request's 2 s");
    rt.block_on(app.stop());
}

#[tokio::test]
async fn a_re_announced_plan_takes_the_latest_run_and_another_organization_is_flagged_not_merged() {
    let app = spawn_app().await;
    let body = |id: &str, org: &str, run: &str| plan_pending_body(id, Utc::now(), "plan_re", org, run);
    assert_eq!(app.post_signed(&body("evt_r1", "org_abc", "run_1")).await.status, 200);
    app.wait_notified(1).await;
    assert_eq!(app.post_signed(&body("evt_r2", "org_abc", "run_2")).await.status, 200);
    assert_eq!(app.post_signed(&body("evt_r3", "org_other", "run_3")).await.status, 200);
    // The worker settles entries in order: once evt_r3's line is logged, both are applied.
    let (store, _d) = app.stopped_store().await;
    let plan = store.plan("plan_re").unwrap().unwrap();
    assert_eq!((plan.run_id.as_str(), plan.organization_id.as_str()), ("run_2", "org_abc"));
    assert_eq!(plan.flags, vec![PlanFlag::TenantMismatch]);
    let line = &store.deliveries_of("evt_r3").unwrap()[0];
    assert_eq!(line.code, "tenant_mismatch");
    assert!(line.reason.contains("org_abc") && line.reason.contains("org_other"), "{}", line.reason);
}

#[tokio::test]
async fn records_of_a_future_format_are_quarantined_and_stop_nothing() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    {
        let store = Store::open(&dir.path().join("data")).unwrap();
        // As a newer version would write them: an unknown format byte.
        let future = [0xB7, 1, 2, 3];
        store.write_raw("plans", b"plan_future", &future).unwrap();
        store.write_raw("events", b"evt_future", &future).unwrap();
        store.write_raw("outbox", &1u64.to_be_bytes(), &future).unwrap();
        store.flush_blocking().unwrap();
    }
    // Reopening in the same process waits for sled to let go of the lock.
    let mut spawn = Spawn { dir: Some(dir.clone()), ..Spawn::default() };
    spawn.settings.retention_days = 30;
    let app = spawn_with(spawn).await;
    // The outbox drains past the damaged entry: a later plan is announced.
    assert_eq!(app.post_signed(&event_for("evt_after", "plan_after", "org_abc")).await.status, 200);
    assert_eq!(app.wait_notified(1).await, vec!["plan_after"]);
    wait_for("the damaged outbox entry and event are set aside", Duration::from_secs(5), async || {
        app.get("/healthz").await.json["detail"]["quarantined"].as_u64() >= Some(2)
    })
    .await;
    let (store, _d) = app.stopped_store().await;
    // Reading every plan sets the damaged one aside too, and yields the readable ones.
    let plans: Vec<String> = store.plans_iter().map(|p| p.unwrap().plan_id).collect();
    assert_eq!(plans, vec!["plan_after"]);
    let quarantined = store.quarantined().unwrap();
    let mut trees: Vec<&str> = quarantined.iter().map(|q| q.tree.as_str()).collect();
    trees.sort_unstable();
    assert_eq!(trees, vec!["events", "outbox", "plans"]);
    assert!(quarantined.iter().all(|q| q.error.contains("unknown record format 0xb7")), "{quarantined:?}");
    // Pruning goes on too.
    assert_eq!(store.prune(Utc::now() + chrono::Duration::days(1)).unwrap(), 1);
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn after_the_disk_fills_the_receiver_recovers_once_space_returns_and_loses_nothing_acknowledged() {
    let Some(disk) = SmallDisk::mount("24m") else {
        // Mounting needs root; CI runs as root and sets ZOF_REQUIRE_ROOT_TESTS so this never skips there.
        assert!(std::env::var_os("ZOF_REQUIRE_ROOT_TESTS").is_none(), "cannot mount a tmpfs");
        eprintln!("skipped: mounting a size-limited tmpfs needs root");
        return;
    };
    let root = std::sync::Arc::new(tempfile::tempdir_in(disk.dir.path()).unwrap());
    let app = spawn_with(Spawn { dir: Some(root.clone()), ..Spawn::default() }).await;
    assert_eq!(app.post_signed(&event("evt_first")).await.status, 200);
    // Fill what is left, but for a little.
    let filler = disk.dir.path().join("filler");
    let free = nix_free_bytes(disk.dir.path());
    std::fs::write(&filler, vec![0u8; free.saturating_sub(256 * 1024) as usize]).unwrap();
    let mut acked = vec!["evt_first".to_string()];
    let mut refused = 0;
    for n in 0..20_000 {
        let id = format!("evt_fill_{n}");
        let r = app.post_signed(&event_for(&id, &format!("plan_{n}"), "org_abc")).await;
        match r.status {
            200 => acked.push(id),
            503 => {
                assert!(r.retry_after.is_some());
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
            other => panic!("unexpected {other}: {}", r.json),
        }
    }
    assert_eq!(refused, 3, "the disk never filled");
    let health = app.get("/healthz").await;
    assert_eq!(health.status, 503, "{}", health.json);
    std::fs::remove_file(&filler).unwrap();
    // Ready again within a few seconds of space returning, without a restart.
    let mut n = 0;
    wait_for("deliveries are accepted again", Duration::from_secs(10), async || {
        n += 1;
        let id = format!("evt_after_{n}");
        let ok = app.post_signed(&event_for(&id, &format!("plan_after_{n}"), "org_abc")).await.status == 200;
        if ok {
            acked.push(id);
        }
        ok
    })
    .await;
    assert_eq!(app.get("/healthz").await.status, 200);
    let (store, _d) = app.stopped_store().await;
    let lost: Vec<&String> = acked.iter().filter(|id| store.event(id).unwrap().is_none()).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged events were lost: {lost:?}", lost.len(), acked.len());
    drop(store);
}

/// Free bytes on the filesystem holding `path`, from `df`.
fn nix_free_bytes(path: &std::path::Path) -> u64 {
    let out = Command::new("df").args(["-B1", "--output=avail"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}
