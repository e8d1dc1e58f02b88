//! Upgrades keep data: a store written by the previous release (a fixture committed in
//! `tests/fixtures/store-v1`) is migrated in place, a migration killed midway is finished by the
//! next start, and a store from a newer release is refused and left as it was.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use zof_approvals::store::{DeliveryVerdict, Store, StoreError, SCHEMA_VERSION};

use crate::helpers::bin;

const FIXTURE_PLANS: usize = 25;

/// A copy of the previous release's store, to open and change.
fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1"), &data);
    (dir, data)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn inbox(data: &Path) -> std::process::Output {
    Command::new(bin()).arg("inbox").arg("--data-dir").arg(data).arg("--json").output().unwrap()
}

/// Every file of the store and its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(snapshot(&path));
        } else {
            files.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

fn assert_migrated(data: &Path) {
    let out = inbox(data);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let pending = rows.iter().filter(|r| r["state"] == "pending").count();
    assert_eq!(pending, FIXTURE_PLANS, "every plan of the old store is still pending");
    let store = Store::open(data).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.plans().unwrap().len(), FIXTURE_PLANS);
    let plan = store.plan("plan_fixture_7").unwrap().unwrap();
    assert_eq!((plan.run_id.as_str(), plan.organization_id.as_str()), ("run_7", "org_abc"));
    let log = store.deliveries(1000).unwrap();
    assert!(log.iter().all(|d| d.verdict != DeliveryVerdict::Rejected), "refusal rows are gone");
    assert!(log.iter().any(|d| d.verdict == DeliveryVerdict::Duplicate), "real history stays");
}

#[test]
fn a_store_of_the_previous_release_is_migrated_in_place_and_keeps_every_plan() {
    let (_dir, data) = fixture_copy();
    {
        let store = Store::open(&data).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }
    assert_migrated(&data);
}

#[test]
fn a_migration_killed_midway_is_finished_by_the_next_start() {
    let (_dir, data) = fixture_copy();
    let mut child = Command::new(bin())
        .arg("inbox")
        .arg("--data-dir")
        .arg(&data)
        .env("ZOF_TEST_MIGRATION_STALL_AFTER", "10")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The hook says so once 10 of the 40 refusal rows are removed and on disk, and waits.
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let stalled = std::io::BufRead::lines(stderr).map_while(Result::ok).find(|l| l.contains("migration stalled"));
    assert!(stalled.is_some(), "the migration never reached the hook");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The next start finds the step half done and finishes it.
    assert_migrated(&data);
}

#[test]
fn a_store_of_a_newer_release_is_refused_and_left_unchanged() {
    let (dir, data) = fixture_copy();
    {
        // Written by a newer release: migrated, then stamped with a version this build does not know.
        let store = Store::open(&data).unwrap();
        store.flush_blocking().unwrap();
    }
    std::fs::write(data.join("schema-version"), format!("{}\n", SCHEMA_VERSION + 1)).unwrap();
    let before = snapshot(&data);
    let out = inbox(&data);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("newer version") && err.contains("nothing was changed"), "{err}");
    let serve = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--notifications",
            "off",
            "--secret-env",
            "NO_SUCH_VAR",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--config-dir")
        .arg(dir.path().join("config"))
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .output()
        .unwrap();
    assert!(!serve.status.success(), "serve refuses it too");
    assert!(String::from_utf8_lossy(&serve.stderr).contains("newer version"));
    let after = snapshot(&data);
    let changed: Vec<&PathBuf> = before.iter().zip(&after).filter(|(b, a)| b != a).map(|(b, _)| &b.0).collect();
    assert!(before.len() == after.len() && changed.is_empty(), "files changed: {changed:?}");
    assert!(matches!(Store::open(&data), Err(StoreError::NewerSchema { .. })));
}
