//! The Zof event envelope, parsed once from a body whose signature already verified.
//!
//! Unknown fields are kept (`extra`) so that what Zof adds later is stored, not rejected.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The one event type this app acts on.
pub const PLAN_PENDING: &str = "remediation.plan_pending";

/// Longest id (event, plan, run, organization) we accept; Zof's ids are far shorter.
pub const MAX_ID_LEN: usize = 256;

/// A validated Zof event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: DateTime<Utc>,
    pub data: Data,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Data {
    pub object: PlanObject,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `data.object` of a `remediation.plan_pending` event: the plan that awaits approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanObject {
    pub id: String,
    pub organization_id: String,
    pub run_id: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a verified body is not a valid envelope. Messages are safe to return to the sender:
/// they name fields, never echo the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the body is not valid UTF-8")]
    NotUtf8,
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    #[error("the body is not a JSON object")]
    NotObject,
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{0}` must be a {1}")]
    WrongType(&'static str, &'static str),
    #[error("field `{0}` must not be empty")]
    Empty(&'static str),
    #[error("field `{0}` is longer than {MAX_ID_LEN} bytes")]
    TooLong(&'static str),
    #[error("field `{0}` contains control characters")]
    ControlChars(&'static str),
    #[error("field `created` is not an RFC 3339 timestamp")]
    BadTimestamp,
}

impl Envelope {
    /// Parses and validates a raw body. Only call this on a body whose signature verified.
    pub fn parse(body: &[u8]) -> Result<Envelope, EnvelopeError> {
        let text = std::str::from_utf8(body).map_err(|_| EnvelopeError::NotUtf8)?;
        let value: Value = serde_json::from_str(text).map_err(|e| EnvelopeError::Json(json_position(&e)))?;
        let Value::Object(mut root) = value else {
            return Err(EnvelopeError::NotObject);
        };
        let id = take_id(&mut root, "id")?;
        let kind = take_id(&mut root, "type")?;
        let created = take_str(&mut root, "created")?;
        let created =
            DateTime::parse_from_rfc3339(&created).map_err(|_| EnvelopeError::BadTimestamp)?.with_timezone(&Utc);
        let mut data = take_object(&mut root, "data")?;
        let mut object = take_object(&mut data, "data.object")?;
        let object = PlanObject {
            id: take_id(&mut object, "data.object.id")?,
            organization_id: take_id(&mut object, "data.object.organization_id")?,
            run_id: take_id(&mut object, "data.object.run_id")?,
            extra: object,
        };
        Ok(Envelope { id, kind, created, data: Data { object, extra: data }, extra: root })
    }

    pub fn is_plan_pending(&self) -> bool {
        self.kind == PLAN_PENDING
    }
}

/// serde_json's messages can quote input; keep only the category and position.
fn json_position(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input (truncated body?)",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Io => "read error",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

fn leaf(path: &'static str) -> &'static str {
    path.rsplit('.').next().unwrap_or(path)
}

fn take(map: &mut Map<String, Value>, path: &'static str) -> Result<Value, EnvelopeError> {
    map.remove(leaf(path)).ok_or(EnvelopeError::Missing(path))
}

fn take_str(map: &mut Map<String, Value>, path: &'static str) -> Result<String, EnvelopeError> {
    match take(map, path)? {
        Value::String(s) => Ok(s),
        _ => Err(EnvelopeError::WrongType(path, "string")),
    }
}

fn take_id(map: &mut Map<String, Value>, path: &'static str) -> Result<String, EnvelopeError> {
    let s = take_str(map, path)?;
    if s.trim().is_empty() {
        return Err(EnvelopeError::Empty(path));
    }
    if s.len() > MAX_ID_LEN {
        return Err(EnvelopeError::TooLong(path));
    }
    if s.chars().any(char::is_control) {
        return Err(EnvelopeError::ControlChars(path));
    }
    Ok(s)
}

fn take_object(map: &mut Map<String, Value>, path: &'static str) -> Result<Map<String, Value>, EnvelopeError> {
    match take(map, path)? {
        Value::Object(o) => Ok(o),
        _ => Err(EnvelopeError::WrongType(path, "JSON object")),
    }
}

/// Builds the body of a `remediation.plan_pending` event (the `send` tool and tests use it).
pub fn plan_pending_body(id: &str, created: DateTime<Utc>, plan: &str, org: &str, run: &str) -> Vec<u8> {
    serde_json::json!({
        "id": id,
        "type": PLAN_PENDING,
        "created": created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "data": {"object": {"id": plan, "organization_id": org, "run_id": run}}
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = r#"{"id":"evt_abc123","type":"remediation.plan_pending","created":"2026-05-20T12:00:00Z",
 "data":{"object":{"id":"resource_id","organization_id":"org_abc","run_id":"run_xyz"}}}"#;

    #[test]
    fn zof_sample_parses() {
        let e = Envelope::parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(e.id, "evt_abc123");
        assert!(e.is_plan_pending());
        assert_eq!(e.data.object.id, "resource_id");
        assert_eq!(e.data.object.organization_id, "org_abc");
        assert_eq!(e.data.object.run_id, "run_xyz");
    }

    #[test]
    fn unknown_fields_are_kept() {
        let body = r#"{"id":"e","type":"t","created":"2026-05-20T12:00:00+02:00","livemode":true,
            "data":{"object":{"id":"p","organization_id":"o","run_id":"r","policy_pack":"x"},"previous":{}}}"#;
        let e = Envelope::parse(body.as_bytes()).unwrap();
        assert_eq!(e.extra["livemode"], Value::Bool(true));
        assert_eq!(e.data.object.extra["policy_pack"], "x");
        assert!(e.data.extra.contains_key("previous"));
        let round = serde_json::to_value(&e).unwrap();
        assert_eq!(round["data"]["object"]["policy_pack"], "x");
    }

    #[test]
    fn each_missing_field_is_named() {
        for field in ["id", "type", "created"] {
            let mut v: Value = serde_json::from_str(SAMPLE).unwrap();
            v.as_object_mut().unwrap().remove(field);
            let err = Envelope::parse(v.to_string().as_bytes()).unwrap_err();
            assert_eq!(
                err,
                EnvelopeError::Missing(match field {
                    "id" => "id",
                    "type" => "type",
                    _ => "created",
                })
            );
        }
        for field in ["id", "organization_id", "run_id"] {
            let mut v: Value = serde_json::from_str(SAMPLE).unwrap();
            v["data"]["object"].as_object_mut().unwrap().remove(field);
            let err = Envelope::parse(v.to_string().as_bytes()).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn wrong_types_and_bad_values_are_refused() {
        let cases = [
            (
                r#"{"id":1,"type":"t","created":"2026-05-20T12:00:00Z","data":{"object":{"id":"p","organization_id":"o","run_id":"r"}}}"#,
                "id",
            ),
            (
                r#"{"id":"e","type":"t","created":"yesterday","data":{"object":{"id":"p","organization_id":"o","run_id":"r"}}}"#,
                "created",
            ),
            (r#"{"id":"e","type":"t","created":"2026-05-20T12:00:00Z","data":[]}"#, "data"),
            (
                r#"{"id":" ","type":"t","created":"2026-05-20T12:00:00Z","data":{"object":{"id":"p","organization_id":"o","run_id":"r"}}}"#,
                "id",
            ),
            (r#"[1,2]"#, "object"),
        ];
        for (body, word) in cases {
            let err = Envelope::parse(body.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(word), "{body} -> {err}");
        }
    }

    #[test]
    fn truncated_and_non_utf8_bodies_are_refused() {
        let truncated = &SAMPLE.as_bytes()[..SAMPLE.len() - 5];
        assert!(matches!(Envelope::parse(truncated), Err(EnvelopeError::Json(m)) if m.contains("truncated")));
        assert_eq!(Envelope::parse(b"{\"id\":\"\xff\"}"), Err(EnvelopeError::NotUtf8));
    }

    #[test]
    fn built_body_round_trips() {
        let created = Utc::now();
        let body = plan_pending_body("evt_1", created, "plan_1", "org_1", "run_1");
        let e = Envelope::parse(&body).unwrap();
        assert_eq!((e.id.as_str(), e.data.object.id.as_str()), ("evt_1", "plan_1"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Envelope::parse(&body);
        }

        #[test]
        fn arbitrary_json_shapes_never_panic(id in ".{0,300}", kind in ".{0,40}", created in ".{0,40}", nested in any::<bool>()) {
            let data = if nested { serde_json::json!({"object": {"id": id, "organization_id": 1, "run_id": null}}) } else { serde_json::json!(id) };
            let body = serde_json::json!({"id": id, "type": kind, "created": created, "data": data}).to_string();
            let _ = Envelope::parse(body.as_bytes());
        }
    }
}
