//! The relay's HTTP side: the same contract as the local receiver (same answers, same codes, the
//! same [`Judge`]), but a verified delivery goes to JetStream instead of a store, and is answered
//! 200 only once JetStream acknowledged it. The relay keeps no state of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use super::{RelayError, RelayStatus, FORWARDED_HEADERS, MSG_ID_HEADER, PUBLISH_TIMEOUT, RECEIVED_AT_HEADER};
use crate::config::WEBHOOK_PATH;
use crate::intake::{Judge, Rejection, Verdict};
use crate::intake::{Limits, BROWSER_HEADERS};
use crate::verify::HeaderSource;

/// What JetStream said about one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Stored, at this stream sequence.
    Stored(u64),
    /// The same `Nats-Msg-Id` was stored within the duplicate window: not stored again.
    Duplicate,
}

/// Publishes to JetStream and awaits the acknowledgment: the relay's one way into the stream
/// (also what the benchmark and the tests use).
#[derive(Debug, Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    status: RelayStatus,
}

impl Publisher {
    pub async fn connect(config: &super::NatsConfig, status: RelayStatus) -> Result<Publisher, RelayError> {
        let client = super::connect(config, status.clone()).await?;
        let js = super::jetstream(client.clone());
        Ok(Publisher { client, js, status })
    }

    /// Creates the stream if it is missing, retrying until NATS answers (the relay waits here
    /// before it listens). Gives up after `within`.
    pub async fn ensure_stream(&self, settings: &super::StreamSettings, within: Duration) -> Result<(), RelayError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut pause = Duration::from_millis(100);
        loop {
            match super::ensure_stream(&self.js, settings).await {
                Ok(_) => {
                    self.status.connected(0);
                    return Ok(());
                }
                Err(e) if tokio::time::Instant::now() + pause >= deadline => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "waiting for JetStream");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    pub fn status(&self) -> &RelayStatus {
        &self.status
    }

    /// Publishes `body` with `headers` and `Nats-Msg-Id: msg_id`; returns once JetStream
    /// acknowledged it, or fails within [`PUBLISH_TIMEOUT`].
    pub async fn publish(
        &self,
        subject: String,
        msg_id: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Published, RelayError> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(RelayError::Disconnected);
        }
        let mut map = async_nats::HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, *value);
        }
        map.insert(MSG_ID_HEADER, msg_id);
        let sent = async {
            let ack = self
                .js
                .publish_with_headers(subject, map, body)
                .await
                .map_err(|e| RelayError::Publish(e.to_string()))?;
            ack.await.map_err(|e| RelayError::Publish(e.to_string()))
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, sent).await {
            Ok(Ok(ack)) if ack.duplicate => Ok(Published::Duplicate),
            Ok(Ok(ack)) => Ok(Published::Stored(ack.sequence)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RelayError::AckTimeout),
        }
    }

    /// Each message's `Nats-Msg-Id` and relay received-at time, in stream order, read with an
    /// ephemeral ordered consumer (the latency benchmark compares them with the laptops' stores).
    pub async fn received_times(&self, stream: &str) -> Result<Vec<(String, DateTime<Utc>)>, RelayError> {
        use futures::StreamExt;
        let failed = |e: &dyn std::fmt::Display| RelayError::Messages(e.to_string());
        let stream = self.js.get_stream(stream).await.map_err(|e| failed(&e))?;
        let config = jetstream::consumer::pull::OrderedConfig::default();
        let consumer = stream.create_consumer(config).await.map_err(|e| failed(&e))?;
        let mut pending = consumer.cached_info().num_pending;
        let mut messages = consumer.messages().await.map_err(|e| failed(&e))?;
        let mut times = Vec::new();
        while pending > 0 {
            let Some(message) = messages.next().await else { break };
            let message = message.map_err(|e| failed(&e))?;
            pending = message.info().map(|i| i.pending).unwrap_or(0);
            let headers = super::NatsHeaders(message.headers.as_ref());
            let id = headers.header(MSG_ID_HEADER).and_then(|v| std::str::from_utf8(v).ok()).map(str::to_owned);
            if let (Some(id), Some(at)) = (id, received_at(headers.header(RECEIVED_AT_HEADER))) {
                times.push((id, at));
            }
        }
        Ok(times)
    }

    /// Sends what is buffered (at shutdown).
    pub async fn flush(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
    }
}

/// The relay: judge, then publish.
#[derive(Debug, Clone)]
pub struct Relay {
    judge: Judge,
    publisher: Publisher,
    unrelayed: Arc<Unrelayed>,
}

/// Deliveries answered 503 because JetStream did not take them: logged as a count, at most one
/// line per [`UNRELAYED_LOG_EVERY`], since an outage can mean thousands of them a second.
#[derive(Debug, Default)]
struct Unrelayed {
    count: AtomicU64,
    logged_at: Mutex<Option<Instant>>,
}

const UNRELAYED_LOG_EVERY: Duration = Duration::from_secs(10);

impl Unrelayed {
    fn record(&self, error: &RelayError) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut logged_at = match self.logged_at.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if logged_at.is_none_or(|at| at.elapsed() >= UNRELAYED_LOG_EVERY) {
            *logged_at = Some(Instant::now());
            let count = self.count.swap(0, Ordering::Relaxed);
            tracing::warn!(error = %error, count, "deliveries not relayed (answered 503) since the last line");
        }
    }
}

impl Relay {
    pub fn new(judge: Judge, publisher: Publisher) -> Relay {
        Relay { judge, publisher, unrelayed: Arc::default() }
    }

    /// Judges one delivery and, if it verified, publishes it. 200 only for what is in the stream.
    pub async fn receive(&self, headers: &dyn HeaderSource, body: Bytes) -> Verdict {
        let now = Utc::now();
        let verified = match self.judge.judge(headers, &body, now, now) {
            Ok(v) => v,
            Err(rejection) => return refused(rejection),
        };
        let envelope = verified.envelope;
        let received_at = now.to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut forwarded: Vec<(&str, &str)> = FORWARDED_HEADERS
            .iter()
            .filter_map(|name| headers.header(name).and_then(|v| std::str::from_utf8(v).ok()).map(|v| (*name, v)))
            .filter(|(_, v)| !v.contains(['\r', '\n']))
            .collect();
        forwarded.push((RECEIVED_AT_HEADER, &received_at));
        let subject = super::delivery_subject(&envelope.data.object.organization_id);
        let id = envelope.id.clone();
        match self.publisher.publish(subject, &id, &forwarded, body).await {
            Ok(Published::Duplicate) => Verdict::Duplicate { id },
            Ok(Published::Stored(_)) if envelope.is_plan_pending() => Verdict::Accepted { id },
            Ok(Published::Stored(_)) => Verdict::Ignored {
                id,
                reason: format!("events of type `{}` are recorded but not acted on", envelope.kind),
            },
            Err(e) => {
                tracing::debug!(error = %e, event = %id, "delivery not relayed; answered 503");
                self.unrelayed.record(&e);
                Verdict::Rejected(Rejection::Unavailable(format!("the relay cannot store the delivery ({e})")))
            }
        }
    }

    /// Why deliveries get 503 right now, if they do.
    pub fn not_ready(&self) -> Option<String> {
        self.judge
            .not_ready()
            .or_else(|| (!self.publisher.status.is_connected()).then(|| "NATS is not reachable".into()))
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }
}

fn refused(rejection: Rejection) -> Verdict {
    // Counted by the sender's retries and its own logs; the relay keeps no state.
    tracing::debug!(code = rejection.code(), status = rejection.status(), "delivery refused");
    Verdict::Rejected(rejection)
}

#[derive(Debug, Clone)]
struct RelayState {
    relay: Relay,
    max_body_bytes: usize,
}

/// `POST /webhooks/zof` and `GET /healthz`, with the local receiver's limits and refusals.
pub fn router(relay: Relay, limits: Limits) -> Router {
    let state = RelayState { relay, max_body_bytes: limits.max_body_bytes };
    let webhook = post(webhook).route_layer(middleware::from_fn(refuse_browsers));
    Router::new()
        .route(WEBHOOK_PATH, webhook)
        .route("/healthz", get(healthz))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"status": "not_found"}))) })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(GlobalConcurrencyLimitLayer::new(limits.max_concurrent_requests))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout))
        .with_state(state)
}

async fn refuse_browsers(request: Request, next: Next) -> Response {
    if BROWSER_HEADERS.iter().any(|h| request.headers().contains_key(*h)) {
        return refused(Rejection::BrowserRequest).into_response();
    }
    next.run(request).await
}

async fn webhook(State(s): State<RelayState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let verdict = match body {
        Ok(body) => s.relay.receive(&HttpHeaders(&headers), body).await,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => refused(Rejection::TooLarge(s.max_body_bytes)),
        Err(r) => refused(Rejection::UnreadableBody(r.body_text())),
    };
    verdict.into_response()
}

async fn healthz(State(s): State<RelayState>) -> Response {
    let detail = json!({"relay": s.relay.publisher.status.snapshot()});
    match s.relay.not_ready() {
        None => Json(json!({"status": "ok", "detail": detail})).into_response(),
        Some(reason) => {
            let body = json!({"status": "unavailable", "reason": reason, "detail": detail});
            let mut r = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
    }
}

struct HttpHeaders<'a>(&'a HeaderMap);

impl HeaderSource for HttpHeaders<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(HeaderValue::as_bytes)
    }
}

/// Parses the relay's received-at header; `None` when it is missing or not RFC 3339.
pub(crate) fn received_at(value: Option<&[u8]>) -> Option<DateTime<Utc>> {
    let text = std::str::from_utf8(value?).ok()?;
    DateTime::parse_from_rfc3339(text.trim()).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    #[test]
    fn the_received_at_header_is_read_as_rfc3339_or_not_at_all() {
        let at = received_at(Some(b"2026-12-01T21:24:50.140383Z")).unwrap();
        assert_eq!(at.to_rfc3339_opts(SecondsFormat::Micros, true), "2026-12-01T21:24:50.140383Z");
        assert_eq!(received_at(Some(b"2026-12-01T22:24:50+01:00")), Some(at.with_nanosecond(0).unwrap()));
        assert_eq!(received_at(Some(b"yesterday")), None);
        assert_eq!(received_at(Some(&[0xff, 0xfe])), None);
        assert_eq!(received_at(None), None);
    }
}
