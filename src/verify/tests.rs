//! The verifier's cases: known vectors, tampering, each bad header, rotation overlap, and the parsers
//! under arbitrary input.

use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

fn secret(s: &str) -> Secret {
    Secret::new(s).unwrap()
}

struct Headers(HashMap<&'static str, Vec<u8>>);
impl HeaderSource for Headers {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(Vec::as_slice)
    }
}
fn zof_headers(value: &str) -> Headers {
    Headers(HashMap::from([(ZOF_SIGNATURE_HEADER, value.as_bytes().to_vec())]))
}

const BODY: &[u8] = br#"{"id":"evt_1"}"#;

#[test]
fn valid_signature_names_the_matching_secret() {
    let s = secret("current-secret-0123456789");
    let set = SecretSet::single(s.clone());
    let got = Verifier::default().verify(&set, &zof_headers(&sign_zof(&s, BODY)), BODY, Utc::now());
    assert_eq!(got, Ok(s.fingerprint()));
}

#[test]
fn known_vector_matches_hmac_sha256() {
    // HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog"), RFC-independent well-known vector.
    let s = Secret(Zeroizing::new("key".into()));
    assert_eq!(
        sign_zof(&s, b"The quick brown fox jumps over the lazy dog"),
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    );
}

#[test]
fn tampered_body_wrong_secret_and_bad_headers_are_refused() {
    let s = secret("current-secret-0123456789");
    let set = SecretSet::single(s.clone());
    let v = Verifier::default();
    let now = Utc::now();
    let good = sign_zof(&s, BODY);
    assert_eq!(v.verify(&set, &zof_headers(&good), br#"{"id":"evt_2"}"#, now), Err(VerifyError::NoMatch));
    let other = sign_zof(&secret("another-secret-0123456789"), BODY);
    assert_eq!(v.verify(&set, &zof_headers(&other), BODY, now), Err(VerifyError::NoMatch));
    assert_eq!(v.verify(&set, &Headers(HashMap::new()), BODY, now), Err(VerifyError::MissingHeader("X-Zof-Signature")));
    assert_eq!(v.verify(&set, &zof_headers("  "), BODY, now), Err(VerifyError::EmptyHeader("X-Zof-Signature")));
    assert_eq!(
        v.verify(&set, &zof_headers("sha256=zz"), BODY, now),
        Err(VerifyError::MalformedHeader("X-Zof-Signature"))
    );
    assert_eq!(
        v.verify(&set, &zof_headers(&good[..good.len() - 2]), BODY, now),
        Err(VerifyError::MalformedHeader("X-Zof-Signature"))
    );
    assert_eq!(v.verify(&SecretSet::default(), &zof_headers(&good), BODY, now), Err(VerifyError::NoSecret));
}

#[test]
fn several_signatures_in_one_header_pass_if_one_matches() {
    let s = secret("current-secret-0123456789");
    let set = SecretSet::single(s.clone());
    let wrong = sign_zof(&secret("another-secret-0123456789"), BODY);
    let good = sign_zof(&s, BODY);
    for header in [format!("{wrong},{good}"), format!("{wrong} {good}"), format!("v0=abc, {good}")] {
        assert!(Verifier::default().verify(&set, &zof_headers(&header), BODY, Utc::now()).is_ok(), "{header}");
    }
}

/// Three secrets (the current one, one in its overlap, one expired) and seven wrong signatures.
fn rotation_with_decoys() -> (Vec<Secret>, SecretSet, Vec<String>, DateTime<Utc>) {
    let now = Utc::now();
    let keys: Vec<Secret> = ["current-secret-0123456789", "previous-secret-0123456789", "expired-secret-0123456789"]
        .into_iter()
        .map(secret)
        .collect();
    let set = SecretSet::new([
        (keys[0].clone(), None),
        (keys[1].clone(), Some(now + Duration::hours(1))),
        (keys[2].clone(), Some(now - Duration::hours(1))),
    ]);
    let decoys = (0..7).map(|n| sign_zof(&secret(&format!("decoy-secret-{n}-0123456789")), BODY)).collect();
    (keys, set, decoys, now)
}

#[test]
fn each_secret_s_tag_is_computed_once_however_many_signatures_are_listed() {
    let (keys, set, decoys, now) = rotation_with_decoys();
    let parse = |sigs: &[String]| parse_zof_signatures(sigs.join(",").as_bytes()).unwrap();
    let tags = std::cell::Cell::new(0);
    let counting = |s: &Secret| {
        tags.set(tags.get() + 1);
        mac(s.zof_key(), &[BODY]).finalize()
    };
    let wrong = parse(&[decoys.clone(), vec![decoys[0].clone()]].concat());
    assert_eq!(wrong.len(), MAX_SIGNATURES);
    assert_eq!(match_any(&set, now, &wrong, counting), Err(VerifyError::NoMatch));
    assert_eq!(tags.replace(0), 3, "8 signatures, 3 secrets: one tag per secret, not 24");
    let last_is_good = parse(&[decoys, vec![sign_zof(&keys[1], BODY)]].concat());
    assert_eq!(match_any(&set, now, &last_is_good, counting), Ok(keys[1].fingerprint()));
    assert_eq!(tags.get(), 2, "the search stops at the secret that matched");
}

#[test]
fn many_signatures_and_several_secrets_verify_and_a_wrong_one_is_refused() {
    let (keys, set, decoys, now) = rotation_with_decoys();
    let v = Verifier::default();
    for (n, key) in keys[..2].iter().enumerate() {
        let mut sigs = decoys.clone();
        sigs.insert(n * 3, sign_zof(key, BODY));
        let header = sigs.join(", ");
        assert_eq!(v.verify(&set, &zof_headers(&header), BODY, now), Ok(key.fingerprint()), "{header}");
    }
    let expired = [decoys.clone(), vec![sign_zof(&keys[2], BODY)]].concat().join(" ");
    assert!(matches!(v.verify(&set, &zof_headers(&expired), BODY, now), Err(VerifyError::ExpiredSecret(_))));
    let wrong = [decoys, vec![sign_zof(&keys[0], b"another body")]].concat().join(",");
    assert_eq!(v.verify(&set, &zof_headers(&wrong), BODY, now), Err(VerifyError::NoMatch));
}

#[test]
fn a_tag_never_equals_a_candidate_of_another_length() {
    let tag = mac(b"key", &[BODY]).finalize();
    let bytes = tag.clone().into_bytes().to_vec();
    assert!(same_tag(&tag, &bytes));
    assert!(!same_tag(&tag, &bytes[..31]));
    assert!(!same_tag(&tag, &[bytes.as_slice(), &[0]].concat()));
    assert!(!same_tag(&tag, &[]));
}

#[test]
fn standard_webhooks_with_several_secrets_and_signatures_names_the_one_that_signed() {
    let (current, previous) = (Secret::generate().unwrap(), Secret::generate().unwrap());
    let now = Utc::now();
    let set = SecretSet::new([(current.clone(), None), (previous.clone(), Some(now + Duration::hours(1)))]);
    let v = Verifier { scheme: Scheme::StandardWebhooks, tolerance: Duration::seconds(300) };
    let ts = now.timestamp();
    let decoys: Vec<String> = (0..7).map(|_| sign_standard(&Secret::generate().unwrap(), "msg_1", ts, BODY)).collect();
    let good = [decoys.clone(), vec![sign_standard(&previous, "msg_1", ts, BODY)]].concat().join(" ");
    let got = v.verify(&set, &standard_headers(&ts.to_string(), &good), BODY, now);
    assert_eq!(got, Ok(previous.fingerprint()));
    let got = v.verify(&set, &standard_headers(&ts.to_string(), &decoys.join(" ")), BODY, now);
    assert_eq!(got, Err(VerifyError::NoMatch));
}

#[test]
fn previous_secret_passes_until_it_expires() {
    let old = secret("previous-secret-0123456789");
    let new = secret("current-secret-0123456789");
    let now = Utc::now();
    let set = SecretSet::new([(new.clone(), None), (old.clone(), Some(now + Duration::hours(1)))]);
    let v = Verifier::default();
    let h = zof_headers(&sign_zof(&old, BODY));
    assert_eq!(v.verify(&set, &h, BODY, now), Ok(old.fingerprint()));
    let later = now + Duration::hours(2);
    assert!(matches!(v.verify(&set, &h, BODY, later), Err(VerifyError::ExpiredSecret(_))));
    assert_eq!(v.verify(&set, &zof_headers(&sign_zof(&new, BODY)), BODY, later), Ok(new.fingerprint()));
}

#[test]
fn standard_webhooks_signature_and_tolerance() {
    let s = Secret::generate().unwrap();
    let set = SecretSet::single(s.clone());
    let v = Verifier { scheme: Scheme::StandardWebhooks, tolerance: Duration::seconds(300) };
    let now = Utc::now();
    let headers = |ts: i64, sig: String| {
        Headers(HashMap::from([
            (WEBHOOK_ID_HEADER, b"msg_1".to_vec()),
            (WEBHOOK_TIMESTAMP_HEADER, ts.to_string().into_bytes()),
            (WEBHOOK_SIGNATURE_HEADER, sig.into_bytes()),
        ]))
    };
    let ts = now.timestamp();
    let good = sign_standard(&s, "msg_1", ts, BODY);
    assert_eq!(v.verify(&set, &headers(ts, format!("v1,AAAA {good}")), BODY, now), Ok(s.fingerprint()));
    let old = ts - 301;
    assert_eq!(
        v.verify(&set, &headers(old, sign_standard(&s, "msg_1", old, BODY)), BODY, now),
        Err(VerifyError::TimestampOutOfTolerance(300))
    );
    assert_eq!(v.verify(&set, &headers(ts, good), b"{}", now), Err(VerifyError::NoMatch));
}

#[test]
fn standard_webhooks_reference_vector() {
    // The example from the Standard Webhooks specification.
    let s = Secret(Zeroizing::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()));
    let body = br#"{"test": 2432232314}"#;
    assert_eq!(
        sign_standard(&s, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

fn standard_headers(ts: &str, sig: &str) -> Headers {
    Headers(HashMap::from([
        (WEBHOOK_ID_HEADER, b"msg_1".to_vec()),
        (WEBHOOK_TIMESTAMP_HEADER, ts.as_bytes().to_vec()),
        (WEBHOOK_SIGNATURE_HEADER, sig.as_bytes().to_vec()),
    ]))
}

#[test]
fn whsec_secrets_verify_with_or_without_base64_padding() {
    // 32 bytes encode to 43 characters and one `=`: a sender may hand out either form.
    let key: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37)).collect();
    let padded = format!("whsec_{}", B64.encode(&key));
    let unpadded = padded.trim_end_matches('=').to_owned();
    assert!(padded.ends_with('=') && !unpadded.ends_with('='));
    let now = Utc::now();
    let ts = now.timestamp().to_string();
    let tag = mac(&key, &[b"msg_1", b".", ts.as_bytes(), b".", BODY]).finalize().into_bytes();
    let sig = format!("v1,{}", B64.encode(tag));
    let v = Verifier { scheme: Scheme::StandardWebhooks, tolerance: Duration::seconds(300) };
    for (form, text) in [("padded", &padded), ("unpadded", &unpadded)] {
        let s = Secret::new(text).unwrap_or_else(|e| panic!("{form}: {e}"));
        let set = SecretSet::single(s.clone());
        assert_eq!(v.verify(&set, &standard_headers(&ts, &sig), BODY, now), Ok(s.fingerprint()), "{form}");
        assert_eq!(sign_standard(&s, "msg_1", now.timestamp(), BODY), sig, "{form}");
    }
}

#[test]
fn unpadded_whsec_secret_signs_like_the_reference_library() {
    // From the `standardwebhooks` Python package: Webhook(secret).sign("msg_1", 1614265330, BODY).
    let s = Secret::new("whsec_ACVKb5S53gMoTXKXvOEGK1B1mr/kCS5TeJ3C5wwxVns").unwrap();
    assert_eq!(sign_standard(&s, "msg_1", 1614265330, BODY), "v1,2nzaW1hDZB/3Zw9llSargq1gSTt8VmIgOk8ciYcVeMU=");
}

#[test]
fn whsec_secrets_that_are_not_base64_are_refused_when_set() {
    for (case, text) in [
        ("a character outside the alphabet", "whsec_bm90LWJhc2U2NC*hIQ=="),
        ("url-safe alphabet", "whsec_-_-_-_-_-_-_-_-_-_-_-_"),
        ("a length no base64 has", "whsec_QUJDREVGR0hJSktMT"),
        ("leftover bits a real encoder never writes", "whsec_QUJDREVGR0hJSktMTU"),
        ("padding in the middle", "whsec_QUJD=REVGR0hJSktMTU5P"),
        ("spaces inside", "whsec_QUJD REVG R0hJ SktM"),
    ] {
        assert_eq!(Secret::new(text), Err(SecretError::InvalidBase64), "{case}");
    }
    let shown = SecretError::InvalidBase64.to_string();
    assert!(shown.contains("not valid base64") && !shown.contains("QUJD"), "{shown}");
}

#[test]
fn extreme_timestamps_are_out_of_tolerance_without_overflow() {
    let s = Secret::generate().unwrap();
    let set = SecretSet::single(s.clone());
    let v = Verifier { scheme: Scheme::StandardWebhooks, tolerance: Duration::seconds(300) };
    for (case, ts) in [("i64::MIN", i64::MIN), ("i64::MAX", i64::MAX)] {
        let sig = sign_standard(&s, "msg_1", ts, BODY);
        assert_eq!(
            v.verify(&set, &standard_headers(&ts.to_string(), &sig), BODY, Utc::now()),
            Err(VerifyError::TimestampOutOfTolerance(300)),
            "{case}"
        );
    }
}

#[test]
fn debug_never_shows_the_secret() {
    let s = secret("super-secret-value-0123456789");
    let shown = format!("{s:?} {:?}", SecretSet::single(s.clone()));
    assert!(!shown.contains("super-secret-value"), "{shown}");
    assert!(shown.contains(&s.fingerprint().0));
}

#[test]
fn generated_secrets_are_distinct_and_strong() {
    let a = Secret::generate().unwrap();
    let b = Secret::generate().unwrap();
    assert_ne!(a, b);
    assert_eq!(a.standard_key().len(), 32);
    assert_eq!(a.fingerprint().0.len(), 12);
}

#[test]
fn pasted_secrets_are_validated() {
    assert_eq!(Secret::new("   "), Err(SecretError::Empty));
    assert_eq!(Secret::new("short"), Err(SecretError::TooShort));
    assert_eq!(Secret::new("with\nnewline-inside-0123"), Err(SecretError::Invalid));
    assert_eq!(Secret::new("  padded-secret-0123456789\n").unwrap().expose(), "padded-secret-0123456789");
}

proptest! {
    #[test]
    fn zof_header_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_zof_signatures(&bytes);
        let _ = parse_standard_signatures(&bytes);
    }

    #[test]
    fn zof_header_parser_finds_every_listed_signature(sigs in proptest::collection::vec(proptest::array::uniform32(any::<u8>()), 1..5), sep in "[ ,]{1,3}") {
        let header = sigs.iter().map(|s| format!("sha256={}", hex::encode(s))).collect::<Vec<_>>().join(&sep);
        let parsed = parse_zof_signatures(header.as_bytes()).unwrap();
        prop_assert_eq!(parsed, sigs.iter().map(|s| s.to_vec()).collect::<Vec<_>>());
    }
}
