//! The `zof-approvals` command as scripts use it: child processes, stdout contracts, exit codes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{bin, ServeChild, SECRET};
use crate::session::Session;

fn serve(data: &std::path::Path) -> ServeChild {
    serve_on(data, None)
}

/// `serve` inside a private session (its bus, for notifications), or in this process's environment.
fn serve_on(data: &std::path::Path, session: Option<&Session>) -> ServeChild {
    let mut command = serve_command(data, session);
    command.stderr(Stdio::null());
    ServeChild::spawn(command)
}

fn serve_command(data: &std::path::Path, session: Option<&Session>) -> Command {
    let mut command = match session {
        Some(s) => s.command(bin()),
        None => Command::new(bin()),
    };
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--secret-env", "ZOF_WEBHOOK_SECRET", "--data-dir"])
        .arg(data)
        .arg("--config-dir")
        .arg(data.join("config"))
        .env("ZOF_WEBHOOK_SECRET", SECRET);
    command
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).env("ZOF_WEBHOOK_SECRET", SECRET).output().unwrap()
}

fn terminate(server: ServeChild) {
    server.terminate();
}

fn inbox(data: &std::path::Path) -> Vec<serde_json::Value> {
    let out = Command::new(bin()).arg("inbox").arg("--data-dir").arg(data).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn serve_prints_one_listening_line_and_send_reports_json_summary() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let out = cli(&["send", "--url", &server.url, "--count", "20", "--concurrency", "4", "--json"]);
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 10);
    for k in
        ["sent", "accepted", "duplicate", "rejected", "errors", "seconds", "per_second", "p50_ms", "p99_ms", "max_ms"]
    {
        assert!(keys.contains(&k), "{k} missing in {s}");
    }
    assert_eq!((s["sent"].as_u64(), s["accepted"].as_u64(), s["errors"].as_u64()), (Some(20), Some(20), Some(0)));
    let dup = cli(&["send", "--url", &server.url, "--count", "3", "--id", "evt_same", "--json"]);
    let d: serde_json::Value = serde_json::from_slice(&dup.stdout).unwrap();
    assert_eq!((d["accepted"].as_u64(), d["duplicate"].as_u64()), (Some(1), Some(2)));
    terminate(server);
    assert_eq!(inbox(dir.path()).len(), 21);
}

/// The last line of `check`, from its PASS and FAIL lines.
fn expected_check_summary(text: &str) -> String {
    let count = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    format!("{} passed, {} failed", count("PASS  "), count("FAIL  "))
}

#[test]
fn check_passes_against_our_receiver_and_fails_with_the_wrong_secret() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let ok = cli(&["check", "--url", &server.url]);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("PASS")).count(), 9, "{text}");
    assert_eq!(text.lines().last(), Some("9 passed, 0 failed"), "{text}");
    let bad = Command::new(bin())
        .args(["check", "--url", &server.url])
        .env("ZOF_WEBHOOK_SECRET", "a-different-secret-0123456789")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let bad_text = String::from_utf8_lossy(&bad.stdout);
    assert!(bad_text.contains("FAIL  valid event is acknowledged"), "{bad_text}");
    assert_eq!(bad_text.lines().last(), Some(expected_check_summary(&bad_text).as_str()), "{bad_text}");
    terminate(server);
}

/// Run against the user's own receiver, `check` leaves no plan and raises no notification. A
/// real plan sent after it shows the receiver does notify, so the silence is check's own.
#[test]
fn check_leaves_no_plan_and_no_notification_behind() {
    let session = Session::bus_only();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let recorder = runtime.block_on(zof_testkit::NotificationRecorder::start(&session.bus)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve_on(&data, Some(&session));
    let checked = cli(&["check", "--url", &server.url]);
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stdout));
    let sent = cli(&["send", "--url", &server.url, "--plan", "plan_real", "--json"]);
    assert!(sent.status.success());
    // A graceful stop finishes the outbox: every notification the run called for has been sent.
    terminate(server);

    let rows = inbox(&data);
    let (checks, others): (Vec<_>, Vec<_>) =
        rows.iter().partition(|r| r["id"].as_str().unwrap().starts_with("evt_conformance_"));
    assert_eq!(checks.len(), 2, "the valid event and the duplicate's first delivery are recorded: {rows:#?}");
    for r in &checks {
        assert_eq!(
            (r["type"].as_str(), r["state"].as_str()),
            (Some("zof_approvals.conformance_check"), Some("ignored"))
        );
    }
    let plans: Vec<&str> = others.iter().map(|r| r["plan"].as_str().unwrap()).collect();
    assert_eq!(plans, ["plan_real"], "only the real plan is in the inbox");
    assert_eq!(others[0]["state"], "pending");
    let notified: Vec<String> = recorder
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            zof_testkit::Call::Notify { body, .. } => Some(body),
            zof_testkit::Call::Close { .. } => None,
        })
        .collect();
    assert_eq!(notified.len(), 1, "one notification, for the real plan: {notified:#?}");
    assert!(notified[0].contains("plan_real"), "{notified:#?}");
}

/// `--notifications off` uses no D-Bus at all: with no session bus the plan still reaches the
/// inbox, its outbox work is done (it counts as announced) and it is logged once.
#[test]
fn serve_with_notifications_off_needs_no_session_bus() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let mut command = serve_command(&data, None);
    command
        .arg("--notifications")
        .arg("off")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/zof-test-bus")
        .stderr(std::fs::File::create(&log).unwrap());
    let server = ServeChild::spawn(command);
    let sent = cli(&["send", "--url", &server.url, "--plan", "plan_off", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap();
    assert_eq!(s["accepted"].as_u64(), Some(1), "{s}");
    terminate(server);

    let rows = inbox(&data);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!((rows[0]["plan"].as_str(), rows[0]["state"].as_str()), (Some("plan_off"), Some("pending")));
    assert!(!rows[0]["notified_at"].is_null(), "the outbox finished the plan's work: {rows:#?}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.matches("remediation plan awaits approval").count(), 1, "{log}");
    assert!(!log.contains("notifications cannot be shown"), "{log}");
}

#[test]
fn serve_refuses_an_unknown_notifications_mode() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serve_command(dir.path(), None);
    let out = command.args(["--notifications", "loud"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'loud'"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn sign_prints_the_header_value_for_stdin() {
    use std::io::Write;
    let mut child = Command::new(bin())
        .arg("sign")
        .env("ZOF_WEBHOOK_SECRET", "key-long-enough-0123456789")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello").unwrap();
    let out = child.wait_with_output().unwrap();
    let expected = zof_approvals::verify::sign_zof(
        &zof_approvals::verify::Secret::new("key-long-enough-0123456789").unwrap(),
        b"hello",
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), expected);
}

#[test]
fn inbox_says_clearly_when_a_running_receiver_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let out = Command::new(bin()).arg("inbox").arg("--data-dir").arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another Zof Approvals process"));
    terminate(server);
}

#[test]
fn serve_without_a_secret_answers_503_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--secret-env", "ZOF_TEST_UNSET_VAR", "--data-dir"])
        .arg(dir.path())
        .arg("--config-dir")
        .arg(dir.path().join("config"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = format!("{}/webhooks/zof", line.trim().trim_start_matches("listening on "));
    let out = cli(&["send", "--url", &url, "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["rejected"].as_u64(), Some(1));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("ZOF_TEST_UNSET_VAR is not set"), "{err}");
}

/// SIGKILL mid-burst: every id that got a 2xx is in the inbox after a restart, and every
/// accepted plan's outbox work (its notification, on a real notification server) is completed.
#[test]
fn crash_mid_burst_loses_no_acknowledged_event() {
    let session = Session::bus_only();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _recorder = runtime.block_on(zof_testkit::NotificationRecorder::start(&session.bus)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acked = dir.path().join("acked.txt");
    let mut server = serve_on(&data, Some(&session));
    let mut sender = Command::new(bin())
        .args(["send", "--url", &server.url, "--count", "20000", "--concurrency", "16", "--acked-out"])
        .arg(&acked)
        .env("ZOF_WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::fs::read_to_string(&acked).map(|s| s.lines().count()).unwrap_or(0) < 300 {
        assert!(started.elapsed() < Duration::from_secs(60), "the burst never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    sender.wait().unwrap();
    let acked: Vec<String> = std::fs::read_to_string(&acked).unwrap().lines().map(str::to_owned).collect();
    assert!(acked.len() >= 300 && acked.len() < 20000, "killed mid-burst: {} acknowledged", acked.len());

    // Restart: the outbox resumes; stop gracefully so its last batch is done, then read the inbox.
    let server = serve_on(&data, Some(&session));
    let out = cli(&["send", "--url", &server.url, "--count", "1", "--json"]);
    assert!(out.status.success());
    terminate(server);
    let rows = inbox(&data);
    let stored: std::collections::HashMap<&str, &serde_json::Value> =
        rows.iter().map(|r| (r["id"].as_str().unwrap(), r)).collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains_key(id.as_str())).collect();
    assert!(missing.is_empty(), "{} acknowledged ids lost, e.g. {:?}", missing.len(), missing.first());
    let unfinished = rows.iter().filter(|r| r["notified_at"].is_null()).count();
    assert_eq!(unfinished, 0, "every accepted plan's outbox work is completed after the restart");
}

/// `zof-approvals ARGS` with its stdout a pipe whose reader is already gone (as after
/// `| head -c 10` has read its fill), and its stderr captured.
fn run_with_stdout_closed(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(bin())
        .args(args)
        .env("ZOF_WEBHOOK_SECRET", SECRET)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn every_command_ends_quietly_when_its_output_is_no_longer_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let body = dir.path().join("body.json");
    std::fs::write(&body, br#"{"id":"evt_1"}"#).unwrap();
    let url = server.url.clone();
    let body = body.to_str().unwrap();
    let mut runs = vec![
        vec!["send", "--url", &url, "--count", "3", "--json"],
        vec!["send", "--url", &url, "--count", "3"],
        vec!["sign", "--file", body],
    ];
    for args in &runs {
        let out = run_with_stdout_closed(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !stderr.contains("panicked"), "{args:?}: {:?}\n{stderr}", out.status);
    }
    terminate(server);
    let data = dir.path().to_str().unwrap();
    runs = vec![
        vec!["inbox", "--data-dir", data, "--json"],
        vec!["inbox", "--data-dir", data],
        vec!["plans", "--data-dir", data, "--json"],
        vec!["audit", "--data-dir", data],
    ];
    for args in &runs {
        let out = run_with_stdout_closed(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !stderr.contains("panicked"), "{args:?}: {:?}\n{stderr}", out.status);
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}

#[test]
fn log_lines_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = dir.path().join("stderr");
    let mut command = serve_command(dir.path(), None);
    command.stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()));
    let server = ServeChild::spawn(command);
    assert!(cli(&["send", "--url", &server.url]).status.success());
    terminate(server);
    let served = std::fs::read_to_string(&stderr).unwrap();
    let inbox = Command::new(bin()).args(["inbox", "--data-dir"]).arg(dir.path()).env("ZOF_LOG", "debug").output();
    let listed = String::from_utf8_lossy(&inbox.unwrap().stderr).into_owned();
    for (what, log) in [("serve", &served), ("inbox", &listed)] {
        assert!(log.contains("INFO") || log.contains("DEBUG"), "{what} logged nothing to look at:\n{log}");
        assert!(!log.contains("\x1b["), "{what}'s log has escape codes:\n{log:?}");
    }
}
