//! The Console's HTTP API, and all that this app knows of its shape (see `docs/console-api.md`):
//! the pending-plan list (paginated), one plan, and creating a webhook subscription. Every
//! request carries the bearer token, takes at most [`REQUEST_TIMEOUT`], and is retried here:
//! 5xx and network errors with exponential backoff and jitter (never more than
//! [`RetryPolicy::max_delay`] apart), 429 after its `Retry-After`; 401/403 are never retried.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::token::ConsoleToken;
use super::ConsoleError;
use crate::domain::review::{
    DecisionAnswer, DecisionRequest, Person, PlanDetails, PolicyPack, Risk, Step, Verdict, Viewer,
};

/// Each request's limit, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How many plans one page of the pending list asks for.
pub const PAGE_LIMIT: usize = 100;
/// A list longer than this many pages is treated as a misbehaving cursor.
const MAX_PAGES: usize = 1000;
/// The largest answer read from the Console. A page of [`PAGE_LIMIT`] plans is a few hundred
/// KiB; anything near this is a misbehaving server, and reading on would only fill memory.
pub const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

pub use crate::config::{check_console_api_url as check_api_url, ApiUrlError};

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || ip.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// How failed requests are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait before the first retry; each further retry waits twice as long (jittered).
    pub first_delay: Duration,
    /// No wait is longer than this (a `Retry-After` included).
    pub max_delay: Duration,
    /// Tries per request, the first included.
    pub attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { first_delay: Duration::from_secs(1), max_delay: Duration::from_secs(300), attempts: 4 }
    }
}

impl RetryPolicy {
    /// The jittered wait before retry number `retry` (0 for the first): between half and all of
    /// `first_delay · 2^retry`, capped at `max_delay`.
    pub fn delay(&self, retry: u32) -> Duration {
        let full = self.first_delay.saturating_mul(2u32.saturating_pow(retry.min(20))).min(self.max_delay);
        let mut b = [0u8; 4];
        let unit = match getrandom::fill(&mut b) {
            Ok(()) => f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX),
            Err(_) => 0.5,
        };
        full.mul_f64(0.5 + unit / 2.0)
    }
}

/// A plan as the Console reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsolePlan {
    pub id: String,
    pub status: String,
    pub organization_id: String,
    pub run_id: String,
    #[serde(default)]
    pub created: Option<DateTime<Utc>>,
    #[serde(default)]
    pub updated: Option<DateTime<Utc>>,
    #[serde(default)]
    pub decided_by: Option<String>,
}

/// What a Console status means here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMeaning {
    Pending,
    /// Approved, rejected, expired or cancelled: decided, out of the queue.
    Resolved,
    /// A status this build does not know: kept and shown as is, not resolved.
    Unknown,
}

impl ConsolePlan {
    pub fn meaning(&self) -> StatusMeaning {
        match self.status.as_str() {
            "pending" => StatusMeaning::Pending,
            "approved" | "rejected" | "expired" | "cancelled" => StatusMeaning::Resolved,
            _ => StatusMeaning::Unknown,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Page {
    data: Vec<serde_json::Value>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// The answer to creating a webhook subscription. `secret` goes straight to the keychain; its
/// `Debug` shows only a fingerprint.
#[derive(Debug)]
pub struct CreatedWebhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: crate::verify::Secret,
}

#[derive(Deserialize)]
struct CreatedWebhookAnswer {
    id: String,
    url: String,
    #[serde(default)]
    events: Vec<String>,
    secret: String,
}

/// A client of one Console API with one token. Cheap to clone; clones share the request count.
#[derive(Debug, Clone)]
pub struct ConsoleClient {
    http: reqwest::Client,
    base: String,
    token: ConsoleToken,
    retry: RetryPolicy,
    requests: Arc<AtomicU64>,
    /// How long a decision waits for its answer before its outcome is checked instead.
    decision_timeout: Duration,
}

impl ConsoleClient {
    pub fn new(api_url: &str, token: ConsoleToken, retry: RetryPolicy) -> Result<ConsoleClient, ConsoleError> {
        check_api_url(api_url)?;
        let base = api_url.trim().trim_end_matches('/').to_owned();
        // Checked here too, not only in the settings: a redirect must not take the token to
        // plain http either.
        let loopback = reqwest::Url::parse(&base).is_ok_and(|u| is_loopback(&u));
        let http = reqwest::Client::builder()
            .https_only(!loopback)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("zof-approvals/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConsoleError::Unreachable(e.without_url().to_string()))?;
        Ok(ConsoleClient {
            http,
            base,
            token,
            retry,
            requests: Arc::new(AtomicU64::new(0)),
            decision_timeout: REQUEST_TIMEOUT,
        })
    }

    /// The same client, with decisions waiting `timeout` for an answer (tests shorten it).
    pub fn with_decision_timeout(mut self, timeout: Duration) -> ConsoleClient {
        self.decision_timeout = timeout;
        self
    }

    pub fn token(&self) -> &ConsoleToken {
        &self.token
    }

    pub fn api_url(&self) -> &str {
        &self.base
    }

    /// HTTP requests made so far (retries included).
    pub fn requests_made(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Every plan the Console lists as pending, page after page.
    pub async fn pending_plans(&self) -> Result<Vec<(ConsolePlan, serde_json::Value)>, ConsoleError> {
        let mut plans = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let limit = PAGE_LIMIT.to_string();
            let mut query = vec![("status", "pending"), ("limit", limit.as_str())];
            if let Some(c) = cursor.as_deref() {
                query.push(("cursor", c));
            }
            let url = format!("{}/v1/remediation/plans", self.base);
            let (_, body) = self.send(|| self.http.get(&url).query(&query), &[StatusCode::OK]).await?;
            let page: Page = parse(&body)?;
            for raw in page.data {
                let plan: ConsolePlan = serde_json::from_value(raw.clone()).map_err(|e| bad_answer(&e))?;
                plans.push((plan, raw));
            }
            match page.next_cursor.filter(|c| !c.is_empty()) {
                Some(next) => cursor = Some(next),
                None => return Ok(plans),
            }
        }
        Err(ConsoleError::BadAnswer(format!("the pending list did not end after {MAX_PAGES} pages")))
    }

    /// One request that says whether the Console answers and accepts the token: the first
    /// pending plan, if any.
    pub async fn probe(&self) -> Result<(), ConsoleError> {
        let url = format!("{}/v1/remediation/plans", self.base);
        self.send(|| self.http.get(&url).query(&[("status", "pending"), ("limit", "1")]), &[StatusCode::OK]).await?;
        Ok(())
    }

    /// One plan; `None` when the Console does not know it (404).
    pub async fn plan(&self, plan_id: &str) -> Result<Option<(ConsolePlan, serde_json::Value)>, ConsoleError> {
        let url = format!("{}/v1/remediation/plans/{}", self.base, path_segment(plan_id));
        let (status, body) = self.send(|| self.http.get(&url), &[StatusCode::OK, StatusCode::NOT_FOUND]).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let raw: serde_json::Value = parse(&body)?;
        let plan = serde_json::from_value(raw.clone()).map_err(|e| bad_answer(&e))?;
        Ok(Some((plan, raw)))
    }

    /// Subscribes `url` to `remediation.plan_pending`; the answer carries the signing secret.
    pub async fn create_webhook(&self, url: &str, description: &str) -> Result<CreatedWebhook, ConsoleError> {
        let body = serde_json::json!({
            "url": url,
            "events": [crate::envelope::PLAN_PENDING],
            "description": description,
        })
        .to_string();
        let endpoint = format!("{}/v1/webhooks", self.base);
        let (_, answer) = self
            .send(
                || self.http.post(&endpoint).header(CONTENT_TYPE, "application/json").body(body.clone()),
                &[StatusCode::CREATED, StatusCode::OK],
            )
            .await?;
        let answer: CreatedWebhookAnswer = parse(&answer)?;
        let text = zeroize::Zeroizing::new(answer.secret);
        let secret = crate::verify::Secret::new(&text).map_err(|e| {
            ConsoleError::BadAnswer(format!("the webhook secret the Console returned is unusable: {e}"))
        })?;
        Ok(CreatedWebhook { id: answer.id, url: answer.url, events: answer.events, secret })
    }

    /// Who the token belongs to (`GET /v1/me`): the person decisions are recorded under.
    pub async fn me(&self) -> Result<Person, ConsoleError> {
        let url = format!("{}/v1/me", self.base);
        let (_, body) = self.send(|| self.http.get(&url), &[StatusCode::OK]).await?;
        parse(&body)
    }

    /// One plan with its review fields, within the app's bounds; `None` when the Console does
    /// not know it (404).
    pub async fn plan_details(&self, plan_id: &str) -> Result<Option<PlanDetails>, ConsoleError> {
        let url = format!("{}/v1/remediation/plans/{}", self.base, path_segment(plan_id));
        let (status, body) = self.send(|| self.http.get(&url), &[StatusCode::OK, StatusCode::NOT_FOUND]).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(details_from(&body)?))
    }

    /// Sends one decision, once: a decision is never retried blindly. A network error or a
    /// timeout leaves the outcome unknown ([`ConsoleError::Unreachable`]); the caller reads the
    /// plan to learn it.
    pub async fn decide(&self, plan_id: &str, request: &DecisionRequest) -> Result<DecisionAnswer, ConsoleError> {
        let url = format!("{}/v1/remediation/plans/{}/decision", self.base, path_segment(plan_id));
        let body = serde_json::json!({
            "decision": match request.verdict { Verdict::Approve => "approve", Verdict::Reject => "reject" },
            "revision": request.revision,
            "comment": request.comment,
        })
        .to_string();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut auth = HeaderValue::from_str(&self.token.bearer()).map_err(|_| ConsoleError::BadToken)?;
        auth.set_sensitive(true);
        let response = self
            .http
            .post(&url)
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", request.idempotency_key.as_str())
            .timeout(self.decision_timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| ConsoleError::Unreachable(describe(&e)))?;
        let status = response.status();
        let body = match read_capped(response, MAX_ANSWER_BYTES).await {
            Ok(body) => body,
            Err(Unread::TooLarge) => return Err(too_large()),
            Err(Unread::Network(e)) => return Err(ConsoleError::Unreachable(describe(&e))),
        };
        #[derive(Deserialize)]
        struct Refusal {
            #[serde(default)]
            error: String,
            #[serde(default)]
            message: Option<String>,
            #[serde(default)]
            plan: Option<serde_json::Value>,
        }
        let refusal = || serde_json::from_slice::<Refusal>(&body).map_err(|e| bad_answer(&e));
        match status {
            StatusCode::OK => Ok(DecisionAnswer::Decided(Box::new(details_from(&body)?))),
            StatusCode::CONFLICT => {
                let r = refusal()?;
                let plan = r.plan.ok_or_else(|| ConsoleError::BadAnswer("a 409 without the plan".into()))?;
                let plan = details_from(&serde_json::to_vec(&plan).map_err(|e| bad_answer(&e))?)?;
                Ok(DecisionAnswer::Conflict { error: r.error, plan: Box::new(plan) })
            }
            StatusCode::FORBIDDEN => match refusal() {
                Ok(r) if matches!(r.error.as_str(), "not_permitted" | "self_approval") => {
                    let message = r.message.unwrap_or_else(|| r.error.replace('_', " "));
                    Ok(DecisionAnswer::NotPermitted { error: r.error, message })
                }
                _ => Err(ConsoleError::TokenRejected(403)),
            },
            StatusCode::UNAUTHORIZED => Err(ConsoleError::TokenRejected(401)),
            StatusCode::GONE => Ok(DecisionAnswer::Expired),
            StatusCode::UNPROCESSABLE_ENTITY => Ok(DecisionAnswer::CommentRequired),
            StatusCode::TOO_MANY_REQUESTS => Err(ConsoleError::RateLimited { retry_after: None }),
            other => Err(ConsoleError::Status(other.as_u16())),
        }
    }

    /// Sends a request (built afresh for each try) until it gets one of `expected`, retrying
    /// what is worth retrying. Returns the status and the body.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        expected: &[StatusCode],
    ) -> Result<(StatusCode, Vec<u8>), ConsoleError> {
        let mut last = ConsoleError::Unreachable("no request was made".into());
        for attempt in 0..self.retry.attempts.max(1) {
            if attempt > 0 {
                let wait = match &last {
                    ConsoleError::RateLimited { retry_after: Some(after) } => (*after).min(self.retry.max_delay),
                    _ => self.retry.delay(attempt - 1),
                };
                tracing::debug!(?wait, attempt, "retrying a Console request");
                tokio::time::sleep(wait).await;
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let mut auth = HeaderValue::from_str(&self.token.bearer()).map_err(|_| ConsoleError::BadToken)?;
            auth.set_sensitive(true);
            let response = match build().header(AUTHORIZATION, auth).send().await {
                Ok(r) => r,
                Err(e) => {
                    last = ConsoleError::Unreachable(describe(&e));
                    continue;
                }
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(ConsoleError::TokenRejected(status.as_u16()));
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, Utc::now()));
                last = ConsoleError::RateLimited { retry_after };
                continue;
            }
            if status.is_server_error() {
                last = ConsoleError::Status(status.as_u16());
                continue;
            }
            if !expected.contains(&status) {
                return Err(ConsoleError::Status(status.as_u16()));
            }
            match read_capped(response, MAX_ANSWER_BYTES).await {
                Ok(body) => return Ok((status, body)),
                Err(Unread::TooLarge) => return Err(too_large()),
                Err(Unread::Network(e)) => last = ConsoleError::Unreachable(describe(&e)),
            }
        }
        Err(last)
    }
}

/// Why an answer's body was not read.
enum Unread {
    /// Over the cap: not retried, the next try would be as large.
    TooLarge,
    Network(reqwest::Error),
}

/// The body, chunk by chunk, refused as soon as it passes `cap` bytes (whatever
/// `Content-Length` claims), so a huge or endless answer never sits in memory whole.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, Unread> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(Unread::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Unread::Network)? {
        if body.len() + chunk.len() > cap {
            return Err(Unread::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn too_large() -> ConsoleError {
    ConsoleError::BadAnswer(format!("the Console's answer is over {} MiB", MAX_ANSWER_BYTES / (1024 * 1024)))
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// A plan's review fields as the Console sends them: every one optional, a risk this build does
/// not know read as unknown.
#[derive(Deserialize)]
struct DetailsAnswer {
    id: String,
    status: String,
    organization_id: String,
    run_id: String,
    #[serde(default)]
    updated: Option<DateTime<Utc>>,
    #[serde(default)]
    decided_by: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    risk: Option<String>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    policy_pack: Option<PolicyPack>,
    #[serde(default)]
    requested_by: Option<String>,
    #[serde(default)]
    steps: Option<Vec<Step>>,
    #[serde(default)]
    diff: Option<String>,
    #[serde(default)]
    revision: Option<String>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    viewer: Option<Viewer>,
}

/// A plan's review fields from a PLAN already read (an item of the pending list).
pub(super) fn details_of(plan: &serde_json::Value) -> Result<PlanDetails, ConsoleError> {
    let answer = DetailsAnswer::deserialize(plan).map_err(|e| bad_answer(&e))?;
    Ok(details_from_answer(answer))
}

fn details_from(body: &[u8]) -> Result<PlanDetails, ConsoleError> {
    Ok(details_from_answer(parse(body)?))
}

fn details_from_answer(a: DetailsAnswer) -> PlanDetails {
    PlanDetails {
        plan_id: a.id,
        status: a.status,
        organization_id: a.organization_id,
        run_id: a.run_id,
        updated: a.updated,
        decided_by: a.decided_by,
        title: a.title,
        summary: a.summary,
        risk: a.risk.as_deref().and_then(Risk::parse),
        environment: a.environment,
        service: a.service,
        policy_pack: a.policy_pack,
        requested_by: a.requested_by,
        steps: a.steps.unwrap_or_default(),
        steps_omitted: 0,
        diff: a.diff,
        diff_cut: false,
        revision: a.revision,
        expires_at: a.expires_at,
        viewer: a.viewer,
        fetched_at: Utc::now(),
    }
    .bounded()
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ConsoleError> {
    serde_json::from_slice(body).map_err(|e| bad_answer(&e))
}

fn bad_answer(e: &serde_json::Error) -> ConsoleError {
    ConsoleError::BadAnswer(format!("line {} column {}: {}", e.line(), e.column(), classify(e)))
}

fn classify(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "the answer ends early",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "not the expected shape",
        serde_json::error::Category::Io => "read error",
    }
}

/// A network error in words, without the URL's query (which holds nothing secret, but is noise).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        text
    }
}

fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
