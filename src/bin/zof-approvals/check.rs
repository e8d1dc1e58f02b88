//! `zof-approvals check`: a conformance suite against any receiver (ours or another): valid
//! event, tampered body, wrong secret, empty and missing signature, duplicate id, oversize body,
//! malformed JSON.
//!
//! It is run against the user's own receiver, so it must leave nothing for a person to clean
//! up: its events are of type [`CONFORMANCE_TYPE`], not `remediation.plan_pending`, with ids
//! `evt_conformance_<random>_<case>`. A receiver records and deduplicates an event of another
//! type and answers `ignored` without acting on it: no plan, no notification.

use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use zof_approvals::config::DEFAULT_SECRET_ENV;
use zof_approvals::secrets::secret_from_env;
use zof_approvals::verify::{sign_zof, Secret};

use crate::random_tag;

/// The event type of the suite's deliveries: recognisable, and acted on by no receiver.
pub const CONFORMANCE_TYPE: &str = "zof_approvals.conformance_check";

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[arg(long)]
    url: String,
    #[arg(long, value_name = "VAR", default_value = DEFAULT_SECRET_ENV)]
    secret_env: String,
    /// The organization the events name (a receiver with an allow-list refuses others).
    #[arg(long, default_value = "org_abc")]
    org: String,
}

/// Which answers pass a case.
#[derive(Debug, Clone, Copy)]
struct Expect {
    statuses: &'static [u16],
    /// The answer's JSON `status` must be one of these; empty: the body is not looked at.
    words: &'static [&'static str],
    /// A receiver may close the connection instead of reading a body it refuses.
    closing_passes: bool,
}

const ACKNOWLEDGED: Expect = Expect { statuses: &[200], words: &["accepted", "ignored"], closing_passes: false };
const DUPLICATE: Expect = Expect { statuses: &[200], words: &["duplicate"], closing_passes: false };
const UNVERIFIED: Expect = Expect { statuses: &[401, 403], words: &[], closing_passes: false };
const UNSIGNED: Expect = Expect { statuses: &[400, 401, 403], words: &[], closing_passes: false };
const TOO_LARGE: Expect = Expect { statuses: &[413], words: &[], closing_passes: true };
const MALFORMED: Expect = Expect { statuses: &[400, 422], words: &[], closing_passes: false };

/// One conformance case: what is sent and which answers pass.
struct Case {
    name: &'static str,
    body: Vec<u8>,
    signature: Option<String>,
    expect: Expect,
}

pub async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let secret = secret_from_env(&args.secret_env)?;
    let cases = cases(&secret, &Secret::generate()?, &random_tag()?, &args.org);
    // A fresh connection per case: a receiver may close one after refusing a body it did not read.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).pool_max_idle_per_host(0).build()?;
    let mut results = Vec::with_capacity(cases.len());
    for case in cases {
        let verdict = run(&client, &args.url, &case).await;
        match &verdict {
            Ok(got) => println!("PASS  {} ({got})", case.name),
            Err(why) => println!("FAIL  {}: {why}", case.name),
        }
        results.push(verdict);
    }
    let failed = results.iter().filter(|r| r.is_err()).count();
    println!("{} passed, {} failed", results.len() - failed, failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn cases(secret: &Secret, wrong: &Secret, tag: &str, org: &str) -> Vec<Case> {
    let event = |case: &str| conformance_body(&format!("evt_conformance_{tag}_{case}"), org);
    let signed = |b: &[u8]| Some(sign_zof(secret, b));
    let valid = event("valid");
    let tampered = event("tampered");
    let tampered_sig = signed(&tampered);
    let dup = event("duplicate");
    let wrong_secret = event("wrong_secret");
    let mut oversize = event("oversize");
    oversize.truncate(oversize.len() - 1);
    oversize.extend_from_slice(format!(",\"padding\":\"{}\"}}", "x".repeat(2 * 1024 * 1024)).as_bytes());
    let malformed = format!("{{\"id\":\"evt_conformance_{tag}_malformed\",").into_bytes();
    vec![
        Case { name: "valid event is acknowledged", signature: signed(&valid), body: valid, expect: ACKNOWLEDGED },
        Case { name: "tampered body is refused", signature: tampered_sig, body: tamper(tampered), expect: UNVERIFIED },
        Case {
            name: "wrong secret is refused",
            signature: Some(sign_zof(wrong, &wrong_secret)),
            body: wrong_secret,
            expect: UNVERIFIED,
        },
        Case {
            name: "empty signature is refused",
            signature: Some(String::new()),
            body: event("empty"),
            expect: UNSIGNED,
        },
        Case { name: "missing signature header is refused", signature: None, body: event("missing"), expect: UNSIGNED },
        Case {
            name: "first delivery of an id is acknowledged",
            signature: signed(&dup),
            body: dup.clone(),
            expect: ACKNOWLEDGED,
        },
        Case {
            name: "duplicate delivery is acknowledged as a duplicate",
            signature: signed(&dup),
            body: dup,
            expect: DUPLICATE,
        },
        Case { name: "oversize body is refused", signature: signed(&oversize), body: oversize, expect: TOO_LARGE },
        Case { name: "malformed JSON is refused", signature: signed(&malformed), body: malformed, expect: MALFORMED },
    ]
}

/// A complete envelope of the conformance type: well-formed, so a receiver that verified it
/// records it, and of a type no receiver acts on.
fn conformance_body(id: &str, org: &str) -> Vec<u8> {
    serde_json::json!({
        "id": id,
        "type": CONFORMANCE_TYPE,
        "created": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "data": {"object": {"id": "conformance_check", "organization_id": org, "run_id": "conformance_check"}}
    })
    .to_string()
    .into_bytes()
}

/// The body with a space added after it was signed: the same JSON, so a receiver that verifies
/// re-serialized JSON instead of the raw bytes would let it through.
fn tamper(mut body: Vec<u8>) -> Vec<u8> {
    body.insert(1, b' ');
    body
}

async fn run(client: &reqwest::Client, url: &str, case: &Case) -> Result<String, String> {
    let mut req = client.post(url).header("content-type", "application/json");
    if let Some(sig) = &case.signature {
        req = req.header("x-zof-signature", sig);
    }
    match req.body(case.body.clone()).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            judge(&case.expect, status, &text)
        }
        Err(e) if case.expect.closing_passes && (e.is_request() || e.is_body()) => Ok("connection closed".into()),
        Err(e) => Err(format!("request failed: {e}")),
    }
}

/// Whether an answer passes: its HTTP status, and when the case names words, the JSON `status`.
fn judge(expect: &Expect, status: u16, body: &str) -> Result<String, String> {
    if !expect.statuses.contains(&status) {
        return Err(format!("got {status}, expected one of {:?}", expect.statuses));
    }
    if expect.words.is_empty() {
        return Ok(status.to_string());
    }
    let word = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("status").and_then(serde_json::Value::as_str).map(str::to_owned));
    match word {
        Some(w) if expect.words.contains(&w.as_str()) => Ok(format!("{status} {w}")),
        Some(w) => Err(format!("got {status} with status \"{w}\", expected one of {:?}", expect.words)),
        None => Err(format!("got {status} without a JSON \"status\", expected one of {:?}", expect.words)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_must_say_duplicate_in_json() {
        assert!(judge(&DUPLICATE, 200, r#"{"status":"duplicate","id":"e"}"#).is_ok());
        let accepted_again = judge(&DUPLICATE, 200, r#"{"status":"accepted","id":"e"}"#);
        assert!(accepted_again.is_err_and(|e| e.contains("\"accepted\"")));
        let plain_ok = judge(&DUPLICATE, 200, "OK");
        assert!(plain_ok.is_err_and(|e| e.contains("without a JSON")));
        let quoted_elsewhere = judge(&DUPLICATE, 200, r#"{"status":"accepted","note":"duplicate"}"#);
        assert!(quoted_elsewhere.is_err(), "the word must be the status, not anywhere in the body");
    }

    #[test]
    fn a_valid_event_passes_when_accepted_or_ignored_with_200_only() {
        assert!(judge(&ACKNOWLEDGED, 200, r#"{"status":"ignored","id":"e","reason":"r"}"#).is_ok());
        assert!(judge(&ACKNOWLEDGED, 200, r#"{"status":"accepted","id":"e"}"#).is_ok());
        assert!(judge(&ACKNOWLEDGED, 202, r#"{"status":"accepted","id":"e"}"#).is_err(), "202");
        assert!(judge(&ACKNOWLEDGED, 200, r#"{"status":"duplicate","id":"e"}"#).is_err(), "a duplicate");
    }

    #[test]
    fn every_event_of_the_suite_is_of_the_conformance_type_with_a_recognisable_id() {
        let secret = Secret::new("a-secret-long-enough-0123456789").unwrap();
        let cases = cases(&secret, &Secret::generate().unwrap(), "t1", "org_abc");
        assert_eq!(cases.len(), 9);
        for case in cases.iter().filter(|c| !c.name.starts_with("malformed")) {
            let v: serde_json::Value = serde_json::from_slice(&case.body).unwrap();
            assert_eq!(v["type"], CONFORMANCE_TYPE, "{}", case.name);
            assert!(v["id"].as_str().unwrap().starts_with("evt_conformance_t1_"), "{}", case.name);
        }
    }
}
