//! Unit tests of the Console API client's pure parts.
use super::*;

#[test]
fn retry_delays_double_with_jitter_and_stop_at_the_cap() {
    let p = RetryPolicy { first_delay: Duration::from_secs(1), max_delay: Duration::from_secs(300), attempts: 9 };
    for retry in 0..12 {
        let full = Duration::from_secs(1 << retry.min(9)).min(Duration::from_secs(300));
        let d = p.delay(retry);
        assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
    }
}

#[test]
fn retry_after_is_read_as_seconds_or_as_a_date() {
    let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z").unwrap().with_timezone(&Utc);
    assert_eq!(retry_after(" 7 ", now), Some(Duration::from_secs(7)));
    assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(60)));
    assert_eq!(retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
    assert_eq!(retry_after("soon", now), None);
}

#[test]
fn the_console_api_is_https_except_on_this_computer() {
    for ok in [
        "https://api.zof.ai",
        "https://api.zof.ai/",
        " https://10.0.0.5:8443/base ",
        "http://127.0.0.1:8080",
        "http://127.8.9.10",
        "http://localhost:3000/",
        "http://LOCALHOST",
        "http://[::1]:9000",
    ] {
        assert_eq!(check_api_url(ok), Ok(()), "{ok}");
    }
    for plain in ["http://api.zof.ai", "http://10.0.0.5", "http://localhost.example.com", "http://[::2]", "ftp://x"] {
        assert_eq!(check_api_url(plain), Err(ApiUrlError::NotHttps), "{plain}");
    }
    assert!(matches!(check_api_url("api.zof.ai"), Err(ApiUrlError::NotAUrl(_))));
    assert!(ApiUrlError::NotHttps.to_string().contains("https://"));
}

#[test]
fn statuses_resolve_only_when_decided() {
    let plan = |status: &str| ConsolePlan {
        id: "p".into(),
        status: status.into(),
        organization_id: "o".into(),
        run_id: "r".into(),
        created: None,
        updated: None,
        decided_by: None,
    };
    for s in ["approved", "rejected", "expired", "cancelled"] {
        assert_eq!(plan(s).meaning(), StatusMeaning::Resolved, "{s}");
    }
    assert_eq!(plan("pending").meaning(), StatusMeaning::Pending);
    assert_eq!(plan("on_hold").meaning(), StatusMeaning::Unknown);
}
