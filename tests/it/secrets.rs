//! Webhook secrets against the real Secret Service (gnome-keyring on a private session bus):
//! set, rotate, revoke, restart, overlap, failure modes, and that no secret reaches the disk.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{bin, wait_until, ServeChild};
use crate::session::Session;

const FIRST: &str = "first-webhook-secret-0123456789";
const SECOND: &str = "second-webhook-secret-0123456789";

fn serve_in(session: &Session, log: Option<&Path>) -> ServeChild {
    let stderr = match log {
        Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
        None => Stdio::null(),
    };
    let mut cmd = session.command(bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).stderr(stderr);
    if log.is_some() {
        cmd.env("ZOF_LOG", "debug");
    }
    ServeChild::spawn(cmd)
}

fn stop(served: ServeChild) {
    served.terminate();
}

/// `zof-approvals secret set` with the secret on stdin; returns (fingerprint or error text, success).
fn secret_set(session: &Session, secret: &str, overlap: Option<&str>) -> (String, bool) {
    let mut cmd = session.command(bin());
    cmd.args(["secret", "set"]);
    if let Some(o) = overlap {
        cmd.args(["--overlap", o]);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(secret.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let fp = text.split_whitespace().find(|w| w.len() == 12 && w.chars().all(|c| c.is_ascii_hexdigit()));
    (fp.map(str::to_owned).unwrap_or(text.clone()), out.status.success())
}

fn status_json(session: &Session) -> (serde_json::Value, bool) {
    let out = session.command(bin()).args(["secret", "status", "--json"]).output().unwrap();
    (serde_json::from_slice(&out.stdout).unwrap(), out.status.success())
}

/// One signed delivery with `secret`; returns the send summary.
fn send_with(url: &str, secret: &str) -> serde_json::Value {
    let out = Command::new(bin())
        .args(["send", "--url", url, "--secret-env", "ZOF_TEST_SENDER_SECRET", "--json"])
        .env("ZOF_TEST_SENDER_SECRET", secret)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn accepted(url: &str, secret: &str) -> bool {
    send_with(url, secret)["accepted"] == 1
}

/// A plain GET (status, body), for `/healthz`.
fn get(base: &str, path: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned())
}

#[test]
fn secrets_are_set_rotated_and_revoked_in_the_real_keychain() {
    let s = Session::with_keyring();
    let (fp1, ok) = secret_set(&s, FIRST, None);
    assert!(ok, "{fp1}");
    assert_eq!(s.keyring_lookup(&fp1).as_deref(), Some(FIRST), "the secret is in the keyring");
    let server = serve_in(&s, None);
    assert!(accepted(&server.url, FIRST));

    let (fp2, ok) = secret_set(&s, SECOND, Some("1h"));
    assert!(ok, "{fp2}");
    wait_until("the receiver verifies with the new secret", || accepted(&server.url, SECOND));
    assert!(accepted(&server.url, FIRST), "the previous secret still verifies during the overlap");
    let (status, ok) = status_json(&s);
    assert!(ok);
    let roles: Vec<(&str, &str)> = status["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["role"].as_str().unwrap(), x["fingerprint"].as_str().unwrap()))
        .collect();
    assert_eq!(roles, vec![("current", fp2.as_str()), ("previous", fp1.as_str())]);
    wait_until("usage of the first secret is recorded", || {
        status_json(&s).0["secrets"][1]["matches"].as_u64().unwrap_or(0) >= 2
    });

    let out = s.command(bin()).args(["secret", "revoke-previous"]).output().unwrap();
    assert!(out.status.success());
    wait_until("the revoked secret is refused", || send_with(&server.url, FIRST)["rejected"] == 1);
    assert_eq!(s.keyring_lookup(&fp1), None, "the revoked secret left the keyring");
    assert_eq!(s.keyring_lookup(&fp2).as_deref(), Some(SECOND));

    stop(server);
    let server = serve_in(&s, None);
    assert!(accepted(&server.url, SECOND), "after a restart the keychain secret is used");
    assert_eq!(send_with(&server.url, FIRST)["rejected"], 1);
}

#[test]
fn deliveries_signed_with_the_old_secret_fail_once_the_overlap_ends() {
    let s = Session::with_keyring();
    let (fp1, _) = secret_set(&s, FIRST, None);
    let server = serve_in(&s, None);
    let (_, ok) = secret_set(&s, SECOND, Some("4s"));
    assert!(ok);
    wait_until("the new secret verifies", || accepted(&server.url, SECOND));
    assert!(accepted(&server.url, FIRST), "old secret during the overlap");
    wait_until("the old secret is refused after the overlap", || send_with(&server.url, FIRST)["rejected"] == 1);
    assert!(accepted(&server.url, SECOND), "the new secret verifies throughout");
    wait_until("the expired secret leaves the keyring", || s.keyring_lookup(&fp1).is_none());
}

#[test]
fn no_delivery_in_flight_during_a_rotation_is_rejected() {
    let s = Session::with_keyring();
    secret_set(&s, FIRST, None);
    let server = serve_in(&s, None);
    let sender = Command::new(bin())
        .args(["send", "--url", &server.url, "--count", "600", "--concurrency", "8", "--rate", "200", "--json"])
        .args(["--secret-env", "ZOF_TEST_SENDER_SECRET"])
        .env("ZOF_TEST_SENDER_SECRET", FIRST)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let (_, ok) = secret_set(&s, SECOND, Some("1h"));
    assert!(ok);
    let out = sender.wait_with_output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["accepted"].as_u64(), summary["rejected"].as_u64(), summary["errors"].as_u64()),
        (Some(600), Some(0), Some(0)),
        "{summary}"
    );
}

#[test]
fn the_secret_never_lands_on_disk_or_in_logs() {
    let s = Session::with_keyring();
    let log = s.dir.path().join("serve.log");
    secret_set(&s, FIRST, None);
    let server = serve_in(&s, Some(&log));
    assert!(accepted(&server.url, FIRST));
    secret_set(&s, SECOND, Some("1h"));
    let generated = s.command(bin()).args(["secret", "generate", "--overlap", "1h"]).output().unwrap();
    assert!(generated.status.success());
    let third = String::from_utf8(generated.stdout).unwrap().trim().to_owned();
    assert!(third.starts_with("whsec_"), "generate prints the new secret once: {third}");
    wait_until("the generated secret verifies", || accepted(&server.url, &third));
    assert_eq!(send_with(&server.url, "a-wrong-secret-0123456789")["rejected"], 1);
    stop(server);
    let mut places = vec![log];
    collect_files(&s.config_dir(), &mut places);
    collect_files(&s.data_dir(), &mut places);
    assert!(places.len() > 3, "searched {places:?}");
    for path in &places {
        let bytes = std::fs::read(path).unwrap();
        for secret in [FIRST, SECOND, third.as_str()] {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "a secret was written to {}", path.display());
        }
    }
}

#[test]
fn without_a_secret_service_the_receiver_answers_503_and_says_why() {
    let mut s = Session::with_keyring();
    secret_set(&s, FIRST, None);
    s.stop_keyring();
    let started = Instant::now();
    let server = serve_in(&s, None);
    assert!(started.elapsed() < Duration::from_secs(8), "no hang: {:?}", started.elapsed());
    let (status, body) = get(&server.base, "/healthz");
    assert_eq!(status, 503);
    assert!(body.contains("no keychain is reachable"), "{body}");
    let out = send_with(&server.url, FIRST);
    assert_eq!(out["rejected"], 1, "deliveries are refused with 503, never accepted unverified");
    let (text, ok) = secret_set(&s, SECOND, None);
    assert!(!ok && text.contains("no keychain is reachable"), "{text}");
}

#[test]
fn a_locked_keychain_gives_503_and_a_failed_rotation_changes_nothing() {
    let s = Session::with_keyring();
    let (fp1, _) = secret_set(&s, FIRST, None);
    let before = std::fs::read(s.config_dir().join("secrets.json")).unwrap();
    s.lock_keyring();
    let server = serve_in(&s, None);
    let (status, body) = get(&server.base, "/healthz");
    assert_eq!(status, 503);
    assert!(body.contains("locked"), "{body}");
    let (text, ok) = secret_set(&s, SECOND, None);
    assert!(!ok && text.contains("the keychain is locked"), "{text}");
    assert_eq!(std::fs::read(s.config_dir().join("secrets.json")).unwrap(), before, "the rotation left no trace");
    let (status, ok) = status_json(&s);
    assert!(!ok);
    assert_eq!(status["keychain"]["ok"], false);
    assert_eq!(status["secrets"][0]["fingerprint"], fp1.as_str());
}

#[test]
fn with_no_session_bus_at_all_serve_and_secret_commands_fail_clearly() {
    let s = Session::bus_only();
    let out = s
        .command(bin())
        .args(["secret", "status"])
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("no webhook secret is configured"));
    let mut child = s
        .command(bin())
        .args(["secret", "set"])
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(FIRST.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no keychain is reachable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_missing_previous_entry_is_reported_and_the_current_secret_keeps_verifying() {
    let s = Session::with_keyring();
    let (fp1, _) = secret_set(&s, FIRST, None);
    let (fp2, ok) = secret_set(&s, SECOND, Some("1h"));
    assert!(ok, "{fp2}");
    s.keyring_clear(&fp1);
    assert_eq!(s.keyring_lookup(&fp1), None);

    let server = serve_in(&s, None);
    assert_eq!(get(&server.base, "/healthz").0, 200, "the receiver is ready without the previous secret");
    assert!(accepted(&server.url, SECOND), "the current secret verifies");
    assert_eq!(send_with(&server.url, FIRST)["rejected"], 1, "the missing one verifies nothing");

    let (status, ok) = status_json(&s);
    assert!(ok, "{status}");
    let shown: Vec<(&str, bool)> = status["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["fingerprint"].as_str().unwrap(), x["missing"].as_bool().unwrap()))
        .collect();
    assert_eq!(shown, vec![(fp2.as_str(), false), (fp1.as_str(), true)]);
    let text = s.command(bin()).args(["secret", "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    let previous = text.split(&fp1).nth(1).unwrap_or_default();
    assert!(previous.contains("missing from the keychain"), "{text}");
}

#[test]
fn a_keychain_change_made_by_another_program_reaches_a_running_receiver_without_a_poll() {
    let s = Session::with_keyring();
    let (fp1, ok) = secret_set(&s, FIRST, None);
    assert!(ok, "{fp1}");
    let server = serve_in(&s, None);
    assert_eq!(get(&server.base, "/healthz").0, 200);
    // Deleted with another program: the Secret Service's signal wakes the watcher (its poll, where
    // there are no signals, comes once a minute: longer than this test waits).
    s.keyring_clear(&fp1);
    wait_until("the receiver no longer has the deleted secret", || get(&server.base, "/healthz").0 == 503);
    let (_, body) = get(&server.base, "/healthz");
    assert!(body.contains("no entry for secret"), "{body}");
    stop(server);
}

#[test]
fn an_invalid_whsec_secret_is_refused_when_set_and_changes_nothing() {
    let s = Session::with_keyring();
    let (fp1, ok) = secret_set(&s, FIRST, None);
    assert!(ok, "{fp1}");
    let before = std::fs::read(s.config_dir().join("secrets.json")).unwrap();
    let (text, ok) = secret_set(&s, "whsec_not*valid*base64*0123", None);
    assert!(!ok, "refused: {text}");
    assert!(text.contains("not valid base64") && !text.contains("not*valid"), "{text}");
    assert_eq!(std::fs::read(s.config_dir().join("secrets.json")).unwrap(), before);
    assert_eq!(keyring_usernames(&s), vec![format!("webhook-secret-{fp1}")], "nothing new in the keyring");
}

/// The user names of every entry the app has in the keyring.
fn keyring_usernames(session: &Session) -> Vec<String> {
    let out = session.command("secret-tool").args(["search", "--all", "service", "zof-approvals"]).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    listing.lines().filter_map(|l| l.strip_prefix("attribute.username = ")).map(str::to_owned).collect()
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// `zof-approvals audit --json` in the session: one row per line.
fn audit_rows(session: &Session) -> (Vec<serde_json::Value>, String) {
    let out = session.command(bin()).args(["audit", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (text.lines().map(|l| serde_json::from_str(l).unwrap()).collect(), text)
}

#[test]
fn secret_commands_are_recorded_by_fingerprint_with_and_without_a_receiver() {
    let s = Session::with_keyring();
    // No receiver: the command writes the row in the store itself.
    let (fp1, ok) = secret_set(&s, FIRST, None);
    assert!(ok, "{fp1}");
    let (rows, _) = audit_rows(&s);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0]["action"].as_str(), rows[0]["source"].as_str()), (Some("secret_set"), Some("cli")));
    assert_eq!(rows[0]["detail"], format!("fingerprint {fp1}; the previous secret keeps verifying for 24 h"));

    // A receiver holds the store: the commands tell it over the control socket.
    let server = serve_in(&s, None);
    let (fp2, ok) = secret_set(&s, SECOND, Some("90m"));
    assert!(ok, "{fp2}");
    let generated = s.command(bin()).args(["secret", "generate", "--overlap", "1h"]).output().unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let new_secret = String::from_utf8_lossy(&generated.stdout).trim().to_owned();
    let revoked = s.command(bin()).args(["secret", "revoke-previous"]).output().unwrap();
    assert!(revoked.status.success());
    let (rows, text) = audit_rows(&s);
    let seen: Vec<(&str, &str)> =
        rows.iter().map(|r| (r["action"].as_str().unwrap(), r["source"].as_str().unwrap())).collect();
    assert_eq!(
        seen,
        [("secret_revoked", "cli"), ("secret_generated", "cli"), ("secret_set", "cli"), ("secret_set", "cli")]
    );
    assert_eq!(rows[2]["detail"], format!("fingerprint {fp2}; the previous secret keeps verifying for 2 h"));
    assert!(rows[0]["detail"].as_str().unwrap().contains(&fp2), "the revoked one, by fingerprint: {}", rows[0]);
    for secret in [FIRST, SECOND, new_secret.as_str()] {
        assert!(!text.contains(secret), "no secret in the audit log");
    }
    stop(server);

    // A store that cannot be opened: nothing is changed, so no change goes unrecorded.
    let third = "third-webhook-secret-0123456789";
    let mut child = s
        .command(bin())
        .args(["secret", "set", "--data-dir", "/dev/null/not-a-dir"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(third.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/dev/null/not-a-dir"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fingerprint = zof_approvals::verify::Secret::new(third).unwrap().fingerprint().to_string();
    assert_eq!(s.keyring_lookup(&fingerprint), None, "the keychain is left as it was");
}
