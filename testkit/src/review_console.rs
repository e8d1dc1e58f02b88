//! A fake Zof Console serving the review-and-decide contract of `docs/console-api.md` on a
//! real loopback HTTP server: plans with every review field, `GET /v1/me`, and decisions
//! answered as a test chooses (taken, already decided by Bob, self-approval, expired, or taken
//! and answered too late), each one recorded with its idempotency key.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// The only token this Console accepts.
pub const TOKEN: &str = "zct_review_token_0123456789abcdef";

/// How the fake Console answers a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDecision {
    /// 200, the plan decided by the token's person.
    Take,
    /// 409 `already_decided`: Bob Example approved it at 14:01.
    AlreadyDecidedByBob,
    /// 403 `self_approval`.
    SelfApproval,
    /// 410.
    Expired,
    /// Takes it, then answers too late (the client's decision timeout passes first).
    TakeThenHang,
}

/// What the Console holds and what it was asked.
#[derive(Debug)]
pub struct Console {
    pub plans: HashMap<String, Value>,
    /// Each decision received: its `Idempotency-Key` and its body.
    pub decisions: Vec<(Option<String>, Value)>,
    pub details_reads: usize,
    pub on_decision: OnDecision,
    /// Details answers wait this long (a Console that hangs).
    pub details_delay: Duration,
    /// The next details read answers with a new revision and summary.
    pub change_on_next_read: bool,
}

/// The Console's review API (`/v1/me`, the pending list, one plan, a decision) on loopback.
#[derive(Debug, Clone)]
pub struct ReviewConsole(pub Arc<Mutex<Console>>);

impl ReviewConsole {
    /// Starts it on a free loopback port; returns it and its API URL.
    pub async fn start() -> (ReviewConsole, String) {
        let fake = ReviewConsole(Arc::new(Mutex::new(Console {
            plans: HashMap::new(),
            decisions: Vec::new(),
            details_reads: 0,
            on_decision: OnDecision::Take,
            details_delay: Duration::ZERO,
            change_on_next_read: false,
        })));
        let app = Router::new()
            .route("/v1/me", get(me))
            .route("/v1/remediation/plans", get(list))
            .route("/v1/remediation/plans/{id}", get(details))
            .route("/v1/remediation/plans/{id}/decision", post(decide))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("the fake Console");
        let url = format!("http://{}", listener.local_addr().expect("the fake Console"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (fake, url)
    }

    /// A pending plan with every review field; `can_decide` is the Console's word for this token.
    pub fn add(&self, plan: &str, risk: &str, can_decide: bool) {
        self.add_titled(plan, risk, can_decide, "Roll back checkout to 4.2.0");
    }

    /// [`ReviewConsole::add`], with its own title.
    pub fn add_titled(&self, plan: &str, risk: &str, can_decide: bool, title: &str) {
        let plan_json = json!({
            "id": plan, "status": "pending", "organization_id": "org_abc", "run_id": "run_xyz",
            "title": title, "summary": "Error rate rose after 4.3.0",
            "risk": risk, "environment": "prod-eu", "service": "checkout",
            "policy_pack": {"id": "pp_1", "name": "Production changes"},
            "requested_by": "carol@example.com",
            "steps": [{"action": "rollback", "target": "deploy/checkout", "detail": "to 4.2.0"}],
            "diff": "--- a/deploy.yaml\n+++ b/deploy.yaml\n-image: checkout:4.3.0\n+image: checkout:4.2.0\n+<script>alert(1)</script>\n+\u{1b}[31mred\u{1b}[0m\n",
            "revision": "rev_1",
            "expires_at": "2099-01-01T00:00:00Z",
            "viewer": {"can_decide": can_decide, "reason": if can_decide { Value::Null } else { json!("You requested this plan; someone else must approve it") }},
        });
        self.0.lock().expect("the fake Console").plans.insert(plan.into(), plan_json);
    }

    pub fn set(&self, f: impl FnOnce(&mut Console)) {
        f(&mut self.0.lock().expect("the fake Console"));
    }

    pub fn decisions(&self) -> Vec<(Option<String>, Value)> {
        self.0.lock().expect("the fake Console").decisions.clone()
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn me(State(_): State<ReviewConsole>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(json!({"id": "usr_1", "email": "alice@example.com", "name": "Alice Example"})).into_response()
}

async fn list(State(fake): State<ReviewConsole>) -> Response {
    let data: Vec<Value> =
        fake.0.lock().expect("the fake Console").plans.values().filter(|p| p["status"] == "pending").cloned().collect();
    Json(json!({"data": data, "next_cursor": null})).into_response()
}

async fn details(State(fake): State<ReviewConsole>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let delay = {
        let mut c = fake.0.lock().expect("the fake Console");
        c.details_reads += 1;
        c.details_delay
    };
    tokio::time::sleep(delay).await;
    let mut c = fake.0.lock().expect("the fake Console");
    let change = std::mem::take(&mut c.change_on_next_read);
    match c.plans.get_mut(&id) {
        Some(plan) => {
            if change {
                plan["revision"] = json!("rev_2");
                plan["summary"] = json!("Now also restarts the payment workers");
            }
            Json(plan.clone()).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn decide(
    State(fake): State<ReviewConsole>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (mode, plan) = {
        let mut c = fake.0.lock().expect("the fake Console");
        c.decisions.push((key, body.clone()));
        let mode = c.on_decision;
        let status = if body["decision"] == "reject" { "rejected" } else { "approved" };
        let plan = c.plans.get_mut(&id).map(|plan| {
            match mode {
                OnDecision::Take | OnDecision::TakeThenHang => {
                    plan["status"] = json!(status);
                    plan["decided_by"] = json!("Alice Example");
                    plan["updated"] = json!(chrono::Utc::now().to_rfc3339());
                }
                OnDecision::AlreadyDecidedByBob => {
                    plan["status"] = json!("approved");
                    plan["decided_by"] = json!("Bob Example");
                    plan["updated"] = json!("2026-05-20T14:01:00Z");
                }
                _ => {}
            }
            plan.clone()
        });
        (mode, plan)
    };
    let Some(plan) = plan else { return StatusCode::NOT_FOUND.into_response() };
    match mode {
        OnDecision::Take => Json(plan).into_response(),
        OnDecision::TakeThenHang => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Json(plan).into_response()
        }
        OnDecision::AlreadyDecidedByBob => {
            (StatusCode::CONFLICT, Json(json!({"error": "already_decided", "plan": plan}))).into_response()
        }
        OnDecision::SelfApproval => (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "self_approval", "message": "You requested this plan; someone else must approve it"})),
        )
            .into_response(),
        OnDecision::Expired => (StatusCode::GONE, Json(json!({"error": "expired"}))).into_response(),
    }
}
