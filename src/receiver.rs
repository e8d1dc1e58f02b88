//! HTTP: `POST /webhooks/zof` and `GET /healthz`. Handlers only translate between HTTP and the
//! [`Intake`] pipeline; every decision is made there.

mod connections;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::intake::{Intake, Rejection, Verdict};
use crate::verify::HeaderSource;

pub use crate::config::{webhook_url, WEBHOOK_PATH};
pub use crate::intake::{Limits, BROWSER_HEADERS, DEFAULT_MAX_CONNECTIONS};

/// Seconds a sender is asked to wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "5";

#[derive(Debug, Clone)]
struct ReceiverState {
    intake: Intake,
    max_body_bytes: usize,
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in flight finish.
///
/// Unlike `axum::serve`, connections are not held for free: one without a request in flight is
/// closed after `limits.request_timeout` idle (from its accept, so a socket that never sends a
/// request is closed too; see `receiver/connections.rs`), and at most `limits.max_connections` are open.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let idle_timeout = limits.request_timeout;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(idle_timeout);
    // Pings find a peer that vanished during a long request; the idle deadline closes the rest.
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(idle_timeout).keep_alive_timeout(idle_timeout);
    let registry = connections::Registry::new(limits.max_connections);
    let mut failures = connections::AcceptFailures::default();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if connections::AcceptFailures::is_per_connection(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, say: free one, and pause instead of spinning.
                    registry.make_room();
                    tokio::time::sleep(failures.failed(&e)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        failures.accepted();
        let Some(tracked) = registry.admit() else {
            tracing::debug!("refused a connection: every open connection has a request in flight");
            continue;
        };
        let service =
            connections::Counted::new(hyper_util::service::TowerToHyperService::new(router.clone()), &tracked);
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
        tokio::spawn(connections::hold(connection, tracked, idle_timeout));
    }
    drop(listener);
    graceful.shutdown().await;
}

pub fn router(intake: Intake, limits: Limits) -> Router {
    let state = ReceiverState { intake, max_body_bytes: limits.max_body_bytes };
    // Layers wrap what is added before them: the timeout is outermost, so time spent waiting
    // for a concurrency permit counts toward the request's deadline.
    let webhook = post(webhook).route_layer(middleware::from_fn_with_state(state.clone(), refuse_browsers));
    Router::new()
        .route(WEBHOOK_PATH, webhook)
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(GlobalConcurrencyLimitLayer::new(limits.max_concurrent_requests))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout))
        .with_state(state)
}

async fn refuse_browsers(State(s): State<ReceiverState>, request: Request, next: Next) -> Response {
    if BROWSER_HEADERS.iter().any(|h| request.headers().contains_key(*h)) {
        return s.intake.refuse(Rejection::BrowserRequest).into_response();
    }
    next.run(request).await
}

async fn webhook(State(s): State<ReceiverState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let verdict = match body {
        Ok(body) => s.intake.receive(&HttpHeaders(&headers), &body).await,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => s.intake.refuse(Rejection::TooLarge(s.max_body_bytes)),
        Err(r) => s.intake.refuse(Rejection::UnreadableBody(r.body_text())),
    };
    verdict.into_response()
}

async fn healthz(State(s): State<ReceiverState>) -> Response {
    let detail = s.intake.health_detail();
    match s.intake.not_ready() {
        None => Json(json!({"status": "ok", "detail": detail})).into_response(),
        Some(reason) => unavailable(json!({"status": "unavailable", "reason": reason, "detail": detail})),
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"status": "not_found"}))).into_response()
}

fn unavailable(body: serde_json::Value) -> Response {
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    r
}

impl IntoResponse for Verdict {
    fn into_response(self) -> Response {
        match self {
            Verdict::Accepted { id } => Json(json!({"status": "accepted", "id": id})).into_response(),
            Verdict::Duplicate { id } => Json(json!({"status": "duplicate", "id": id})).into_response(),
            Verdict::Ignored { id, reason } => {
                Json(json!({"status": "ignored", "id": id, "reason": reason})).into_response()
            }
            Verdict::Rejected(r) => {
                let body = json!({"status": "rejected", "error": r.code(), "message": r.to_string()});
                match StatusCode::from_u16(r.status()) {
                    Ok(StatusCode::SERVICE_UNAVAILABLE) | Err(_) => unavailable(body),
                    Ok(code) => (code, Json(body)).into_response(),
                }
            }
        }
    }
}

struct HttpHeaders<'a>(&'a HeaderMap);

impl HeaderSource for HttpHeaders<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        // Several header lines would be ambiguous; only the first is read.
        self.0.get(name).map(HeaderValue::as_bytes)
    }
}
