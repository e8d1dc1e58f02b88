//! The intake's unit tests.

use super::*;
use crate::envelope::plan_pending_body;
use crate::verify::{sign_standard, sign_zof, Scheme, Secret, SecretSet};

fn judge(set: SecretSet, scheme: Scheme, tolerance_secs: i64) -> Judge {
    let verifier = Verifier { scheme, tolerance: Duration::seconds(tolerance_secs) };
    let policy = IntakePolicy { verifier, allow_orgs: vec![], retention_days: 30 };
    Judge::new(SecretsHandle::new(SecretsStatus::Ready(set)), Arc::new(SecretUsage::default()), policy)
}

fn standard_delivery(secret: &Secret, signed_at: DateTime<Utc>) -> (Vec<u8>, String, String) {
    let body = plan_pending_body("evt_1", signed_at, "plan_1", "org_abc", "run_xyz");
    let ts = signed_at.timestamp();
    let sig = sign_standard(secret, "evt_1", ts, &body);
    (body, ts.to_string(), sig)
}

#[test]
fn the_tolerance_is_judged_as_of_when_the_delivery_was_received() {
    let s = Secret::generate().unwrap();
    let j = judge(SecretSet::single(s.clone()), Scheme::StandardWebhooks, 2);
    let received = Utc::now() - Duration::hours(1);
    let (body, ts, sig) = standard_delivery(&s, received);
    let headers = [("webhook-id", "evt_1"), ("webhook-timestamp", ts.as_str()), ("webhook-signature", sig.as_str())];
    let now = Utc::now();
    assert!(j.judge(&headers, &body, received, now).is_ok());
    assert_eq!(
        j.judge(&headers, &body, now, now).map(|v| v.envelope.id),
        Err(Rejection::Signature(VerifyError::TimestampOutOfTolerance(2)))
    );
}

#[test]
fn an_arrival_time_in_the_future_is_not_believed() {
    let s = Secret::generate().unwrap();
    let j = judge(SecretSet::single(s.clone()), Scheme::StandardWebhooks, 2);
    let later = Utc::now() + Duration::hours(1);
    let (body, ts, sig) = standard_delivery(&s, later);
    let headers = [("webhook-id", "evt_1"), ("webhook-timestamp", ts.as_str()), ("webhook-signature", sig.as_str())];
    assert!(matches!(
        j.judge(&headers, &body, later, Utc::now()),
        Err(Rejection::Signature(VerifyError::TimestampOutOfTolerance(2)))
    ));
}

#[test]
fn a_rotated_out_secret_is_judged_as_of_arrival_and_the_replay_window_as_of_now() {
    let (old, new) = (Secret::new("previous-secret-0123456789").unwrap(), Secret::generate().unwrap());
    let now = Utc::now();
    let expired_at = now - Duration::minutes(10);
    let j = judge(SecretSet::new([(new, None), (old.clone(), Some(expired_at))]), Scheme::Zof, 300);
    let body = plan_pending_body("evt_1", now - Duration::minutes(20), "plan_1", "org_abc", "run_xyz");
    let headers = [("x-zof-signature", sign_zof(&old, &body))];
    let received = now - Duration::minutes(15);
    assert_eq!(j.judge(&headers, &body, received, now).map(|v| v.fingerprint), Ok(old.fingerprint()));
    assert!(matches!(j.judge(&headers, &body, now, now), Err(Rejection::Signature(VerifyError::ExpiredSecret(_)))));
    let ancient = plan_pending_body("evt_2", now - Duration::days(31), "plan_1", "org_abc", "run_xyz");
    let headers = [("x-zof-signature", sign_zof(&old, &ancient))];
    let long_ago = now - Duration::days(31);
    assert_eq!(j.judge(&headers, &ancient, long_ago, now).map(|v| v.fingerprint), Err(Rejection::TooOld(30)));
}

fn team_action(at: DateTime<Utc>) -> crate::domain::team::TeamAction {
    crate::domain::team::TeamAction {
        id: "act_1".into(),
        plan_id: "plan_1".into(),
        organization_id: "org_abc".into(),
        run_id: Some("run_xyz".into()),
        action: crate::domain::team::TeamVerb::Handled,
        by: "alice".into(),
        at,
        until: None,
        status: None,
        comment: None,
    }
}

fn judge_action(j: &Judge, s: &Secret, at: DateTime<Utc>, stored: DateTime<Utc>) -> Result<DateTime<Utc>, TeamRefusal> {
    let body = team_action(at).to_body();
    let headers = [("x-zof-signature", sign_zof(s, &body))];
    j.judge_team_action(&headers, &body, "org_abc", |org| org == "org_abc", stored, Utc::now()).map(|a| a.at)
}

#[test]
fn a_team_action_taken_before_the_retention_window_is_refused() {
    let s = Secret::generate().unwrap();
    let j = judge(SecretSet::single(s.clone()), Scheme::Zof, 300);
    let now = Utc::now();
    assert_eq!(judge_action(&j, &s, now - Duration::days(31), now), Err(TeamRefusal::TooOld(30)));
    assert!(judge_action(&j, &s, now - Duration::days(29), now).is_ok());
}

#[test]
fn a_team_actions_time_is_believed_only_within_the_tolerance_of_when_the_stream_stored_it() {
    let s = Secret::generate().unwrap();
    let j = judge(SecretSet::single(s.clone()), Scheme::Zof, 300);
    let stored = Utc::now() - Duration::minutes(1);
    let tolerance = Duration::seconds(300);
    assert_eq!(judge_action(&j, &s, stored + Duration::days(365), stored), Ok(stored + tolerance), "future");
    assert_eq!(judge_action(&j, &s, stored - Duration::days(2), stored), Ok(stored - tolerance), "back-dated");
    let within = stored - Duration::seconds(10);
    assert_eq!(judge_action(&j, &s, within, stored), Ok(within));
}
