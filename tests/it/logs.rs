//! The log files of `zof-approvals serve`: where they go, that they fill, and that no secret, no
//! raw body and no body field other than the ids ever reaches them, at debug level, through
//! signed, unsigned, tampered and malformed deliveries and a secret rotation.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use chrono::Utc;
use zof_approvals::verify::{sign_zof, Secret};

use crate::helpers::{bin, wait_until, ServeChild};
use crate::session::Session;

const FIRST: &str = "first-logged-secret-Q7m2x9Kd41";
const SECOND: &str = "second-logged-secret-Z3v8p0Lw65";
/// In every event id: ids may be logged.
const ID_MARKER: &str = "LOGMARK";
/// The value of a body field no log may show.
const BODY_MARKER: &str = "body-field-value-8c1e55a0";
const TAMPERED_MARKER: &str = "tampered-value-4d9b02f7";

/// A plan_pending body with an id carrying [`ID_MARKER`] and an extra field carrying `note`.
fn body(n: u32, note: &str) -> Vec<u8> {
    serde_json::json!({
        "id": format!("evt_{ID_MARKER}_{n}"),
        "type": "remediation.plan_pending",
        "created": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "note": note,
        "data": {"object": {"id": format!("plan_{ID_MARKER}_{n}"), "organization_id": "org_abc", "run_id": "run_1"}}
    })
    .to_string()
    .into_bytes()
}

fn signature(secret: &str, body: &[u8]) -> String {
    sign_zof(&Secret::new(secret).unwrap(), body)
}

/// One POST to the webhook URL over a plain connection; returns the status.
fn post(url: &str, body: &[u8], signature: Option<&str>) -> u16 {
    let rest = url.trim_start_matches("http://");
    let (addr, path) = rest.split_once('/').unwrap();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let mut head = format!(
        "POST /{path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(sig) = signature {
        head.push_str(&format!("x-zof-signature: {sig}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    answer.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `zof-approvals secret set` in the session, the secret on stdin.
fn secret_set(session: &Session, secret: &str, overlap: &str) {
    let mut child = session
        .command(bin())
        .args(["secret", "set", "--overlap", overlap])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(secret.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "secret set");
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn log_files_never_contain_a_secret_or_a_body() {
    let s = Session::with_keyring();
    let logs = s.dir.path().join("logs");
    secret_set(&s, FIRST, "1h");
    let mut serve = s.command(bin());
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--notifications", "off", "--log-dir"])
        .arg(&logs)
        .env("ZOF_LOG", "debug")
        .stderr(Stdio::null());
    let server = ServeChild::spawn(serve);

    let mut bodies = Vec::new();
    for n in 0..3 {
        let b = body(n, BODY_MARKER);
        assert_eq!(post(&server.url, &b, Some(&signature(FIRST, &b))), 200, "a signed delivery is accepted");
        bodies.push(b);
    }
    assert_eq!(post(&server.url, &bodies[0], Some(&signature(FIRST, &bodies[0]))), 200, "a duplicate");
    let unsigned = body(10, BODY_MARKER);
    assert_eq!(post(&server.url, &unsigned, None), 401, "unsigned");
    let signed = body(11, BODY_MARKER);
    let tampered = String::from_utf8(signed.clone()).unwrap().replace(BODY_MARKER, TAMPERED_MARKER).into_bytes();
    assert_eq!(post(&server.url, &tampered, Some(&signature(FIRST, &signed))), 401, "tampered");
    let wrong = body(12, BODY_MARKER);
    assert_eq!(post(&server.url, &wrong, Some(&signature("a-wrong-secret-0123456789", &wrong))), 401, "wrong secret");
    let malformed = format!(r#"{{"id":"evt_{ID_MARKER}_13","note":"{BODY_MARKER}""#).into_bytes();
    assert_eq!(post(&server.url, &malformed, Some(&signature(FIRST, &malformed))), 400, "malformed JSON");

    secret_set(&s, SECOND, "1h");
    let mut n = 20;
    wait_until("the rotated secret verifies", || {
        n += 1;
        let b = body(n, BODY_MARKER);
        let ok = post(&server.url, &b, Some(&signature(SECOND, &b))) == 200;
        bodies.push(b);
        ok
    });
    server.terminate();

    let files = files_in(&logs);
    assert!(!files.is_empty(), "serve wrote a log file in {}", logs.display());
    let mut lines = 0;
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        lines += bytes.iter().filter(|&&b| b == b'\n').count();
        for needle in [FIRST, SECOND, BODY_MARKER, TAMPERED_MARKER] {
            assert!(!contains(&bytes, needle.as_bytes()), "{needle:?} was logged in {}", path.display());
        }
        for raw in bodies.iter().chain([&unsigned, &tampered, &wrong, &malformed]) {
            assert!(!contains(&bytes, raw), "a raw body was logged in {}", path.display());
        }
    }
    let text: String = files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    assert!(lines > 5 && text.contains("receiver started"), "the log has the receiver's lines: {text}");
    assert!(text.contains(&format!("plan_{ID_MARKER}_0")), "the plans that arrived are logged by id: {text}");
}

/// Without `--log-dir`, serve logs to `logs` in `--data-dir`, or else to the XDG state dir; the
/// other commands write no log file.
#[test]
fn serve_logs_beside_its_data_dir_or_in_the_state_dir_and_other_commands_log_to_stderr_only() {
    let s = Session::bus_only();
    let state = s.dir.path().join("state");
    let command = |args: &[&str]| {
        let mut c = s.command(bin());
        c.args(args).env("XDG_STATE_HOME", &state).env("ZOF_WEBHOOK_SECRET", FIRST).stderr(Stdio::null());
        c
    };
    let data = s.dir.path().join("portable");
    let data_arg = data.to_str().unwrap();
    let serve_args =
        ["serve", "--listen", "127.0.0.1:0", "--notifications", "off", "--secret-env", "ZOF_WEBHOOK_SECRET"];
    let with_data: Vec<&str> = serve_args.iter().copied().chain(["--data-dir", data_arg]).collect();
    ServeChild::spawn(command(&with_data)).terminate();
    assert_eq!(files_in(&data.join("logs")).len(), 1, "serve --data-dir logs beside its data");
    assert!(files_in(&state).is_empty(), "and not in the state dir");

    ServeChild::spawn(command(&serve_args)).terminate();
    assert_eq!(files_in(&state.join("zof-approvals/logs")).len(), 1, "serve logs in $XDG_STATE_HOME by default");

    let other = s.dir.path().join("other");
    let out = command(&["inbox", "--data-dir", other.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success());
    assert!(files_in(&other.join("logs")).is_empty(), "inbox writes no log file");
    assert_eq!(files_in(&state.join("zof-approvals/logs")).len(), 1, "nor does any command but serve");
}
