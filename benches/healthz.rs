//! What `/healthz` costs with a long outbox: 200,000 acknowledged deliveries whose work is not
//! done yet (no worker runs), then the counts `/healthz` reports, read 200 times, beside the
//! same counts read by scanning the trees (sled's `len()`, what it did before it kept counts).
//! Prints medians and p99s; asserts nothing. `cargo bench --bench healthz` (`-- ENTRIES`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::Utc;
use zof_approvals::envelope::{plan_pending_body, Envelope};
use zof_approvals::store::Store;
use zof_approvals::verify::Fingerprint;

fn main() {
    let entries: usize =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let fill = Instant::now();
    for n in 0..entries {
        let body = plan_pending_body(&format!("evt_{n}"), Utc::now(), &format!("plan_{n}"), "org_abc", "run_1");
        let env = Envelope::parse(&body).unwrap();
        store.record_event(&env, &body, Utc::now(), &Fingerprint("0123456789ab".into())).unwrap();
    }
    store.flush_blocking().unwrap();
    println!("outbox: {} entries written in {:.1} s", store.outbox_len(), fill.elapsed().as_secs_f64());

    let kept = measure(|| store.outbox_len() + store.quarantined_count() + store.not_notified_count());
    let scanned = measure(|| store.count_by_scan("outbox") + store.count_by_scan("quarantine"));
    println!("healthz counts, kept:     p50 {:>10.3} ms  p99 {:>10.3} ms", ms(kept.0), ms(kept.1));
    println!("healthz counts, scanned:  p50 {:>10.3} ms  p99 {:>10.3} ms", ms(scanned.0), ms(scanned.1));
}

/// p50 and p99 of 200 calls (20 for a scan slower than 50 ms).
fn measure(mut read: impl FnMut() -> usize) -> (Duration, Duration) {
    let first = Instant::now();
    std::hint::black_box(read());
    let runs = if first.elapsed() > Duration::from_millis(50) { 20 } else { 200 };
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(read());
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[runs / 2], times[runs * 99 / 100])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
