//! What a person reads before deciding a plan, and the decision itself: the Console's review
//! fields (title, risk, steps, diff, revision, who may decide), kept within bounds, and the
//! answers a decision can get. Pure: the Console's HTTP shape is the console module's.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A diff longer than this is kept cut, with a note that the rest is in the Console.
pub const DIFF_MAX_BYTES: usize = 256 * 1024;
/// At most this many steps are kept.
pub const STEPS_MAX: usize = 200;

/// How risky the Console says a plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    pub fn parse(text: &str) -> Option<Risk> {
        Some(match text {
            "low" => Risk::Low,
            "medium" => Risk::Medium,
            "high" => Risk::High,
            "critical" => Risk::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }

    /// Approving asks the person to type the environment's name first.
    pub fn needs_typed_confirmation(self) -> bool {
        self >= Risk::High
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyPack {
    pub id: String,
    pub name: String,
}

/// One thing the plan would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub action: String,
    pub target: String,
    #[serde(default)]
    pub detail: String,
}

/// The Console's word on whether this token's person may decide, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    pub can_decide: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A plan as the Console describes it for review. Every review field may be absent (an older
/// Console): what is there is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanDetails {
    pub plan_id: String,
    /// `pending`, `approved`, `rejected`, `expired`, `cancelled`, or what the Console says.
    pub status: String,
    pub organization_id: String,
    pub run_id: String,
    #[serde(default)]
    pub updated: Option<DateTime<Utc>>,
    #[serde(default)]
    pub decided_by: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub risk: Option<Risk>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub policy_pack: Option<PolicyPack>,
    #[serde(default)]
    pub requested_by: Option<String>,
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Steps beyond [`STEPS_MAX`] that were not kept.
    #[serde(default)]
    pub steps_omitted: usize,
    #[serde(default)]
    pub diff: Option<String>,
    /// The diff was longer than [`DIFF_MAX_BYTES`]: the rest is in the Console.
    #[serde(default)]
    pub diff_cut: bool,
    /// Opaque; changes whenever the content changes.
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub viewer: Option<Viewer>,
    /// When this app read it.
    pub fetched_at: DateTime<Utc>,
}

impl PlanDetails {
    /// The same details within the bounds the app keeps.
    pub fn bounded(mut self) -> PlanDetails {
        if self.steps.len() > STEPS_MAX {
            self.steps_omitted += self.steps.len() - STEPS_MAX;
            self.steps.truncate(STEPS_MAX);
        }
        if let Some(diff) = &mut self.diff {
            if diff.len() > DIFF_MAX_BYTES {
                let mut cut = DIFF_MAX_BYTES;
                while !diff.is_char_boundary(cut) {
                    cut -= 1;
                }
                diff.truncate(cut);
                self.diff_cut = true;
            }
        }
        self
    }

    /// Decided in the Console (approved, rejected, expired, cancelled).
    pub fn is_decided(&self) -> bool {
        matches!(self.status.as_str(), "approved" | "rejected" | "expired" | "cancelled")
    }

    /// Whether the Console lets this token's person decide, and why not.
    pub fn can_decide(&self) -> (bool, Option<String>) {
        match &self.viewer {
            Some(v) => (v.can_decide, v.reason.clone()),
            // An older Console that says nothing: the Console still has the last word on the POST.
            None => (true, None),
        }
    }

    /// What the person may do with the plan now: the one answer the window and the CLI show.
    pub fn rights(&self) -> Rights {
        if self.is_decided() {
            return Rights {
                decided: true,
                can_decide: false,
                cannot_decide_reason: Some(decided_line(self)),
                type_to_approve: None,
            };
        }
        let (can_decide, reason) = self.can_decide();
        let reason = reason.unwrap_or_else(|| "the Console does not let you decide this plan".into());
        Rights {
            decided: false,
            can_decide,
            cannot_decide_reason: (!can_decide).then_some(reason),
            type_to_approve: self.environment.clone().filter(|_| self.risk.is_some_and(Risk::needs_typed_confirmation)),
        }
    }

    pub fn headline(&self) -> Headline {
        Headline {
            title: self.title.clone(),
            environment: self.environment.clone(),
            risk: self.risk,
            service: self.service.clone(),
        }
    }
}

/// What the person may do with a plan, as the Console described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rights {
    /// Decided already (approved, rejected, expired, cancelled).
    pub decided: bool,
    pub can_decide: bool,
    /// Why not: the Console's reason, or who decided it and when.
    pub cannot_decide_reason: Option<String>,
    /// Approving needs this environment's name typed first (high and critical risk).
    pub type_to_approve: Option<String>,
}

impl Rights {
    /// Without the Console's details nothing can be decided here.
    pub fn without_details() -> Rights {
        Rights {
            decided: false,
            can_decide: false,
            cannot_decide_reason: Some("no details from the Console".into()),
            type_to_approve: None,
        }
    }
}

/// The few review fields every view of a plan shows (the queue, the notification), kept on
/// the plan itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headline {
    pub title: Option<String>,
    pub environment: Option<String>,
    pub risk: Option<Risk>,
    pub service: Option<String>,
}

impl Headline {
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.environment.is_none() && self.risk.is_none() && self.service.is_none()
    }

    /// The notification's title and body: "Approval needed: <title>", and
    /// "<environment> · <risk> risk · <service>" (what is known of it).
    pub fn notification(&self) -> Option<(String, String)> {
        let title = self.title.as_deref()?;
        let mut parts = Vec::new();
        if let Some(env) = &self.environment {
            parts.push(env.clone());
        }
        if let Some(risk) = self.risk {
            parts.push(format!("{} risk", risk.as_str()));
        }
        if let Some(service) = &self.service {
            parts.push(service.clone());
        }
        Some((format!("Approval needed: {title}"), parts.join(" · ")))
    }
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Reject,
}

impl Verdict {
    /// The Console status a decided plan gets.
    pub fn status(self) -> &'static str {
        match self {
            Verdict::Approve => "approved",
            Verdict::Reject => "rejected",
        }
    }
}

/// Who a Console token belongs to (`GET /v1/me`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

impl Person {
    /// The name decisions are recorded under: the name, else the email, else the id.
    pub fn display(&self) -> String {
        self.name.clone().or_else(|| self.email.clone()).unwrap_or_else(|| self.id.clone())
    }
}

/// One decision as sent: the revision the person saw and a fresh idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRequest {
    pub verdict: Verdict,
    pub revision: Option<String>,
    pub comment: String,
    pub idempotency_key: String,
}

/// What the Console answered to a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum DecisionAnswer {
    /// 200: decided, the plan as it now is.
    Decided(Box<PlanDetails>),
    /// 409: `revision_mismatch` or `already_decided`, with the plan as it is.
    Conflict { error: String, plan: Box<PlanDetails> },
    /// 403: `not_permitted` or `self_approval`, with the Console's words.
    NotPermitted { error: String, message: String },
    /// 410.
    Expired,
    /// 422.
    CommentRequired,
}

/// "Approved by Bob Example at 14:01" for a decided plan (or what the Console said of it).
pub fn decided_line(details: &PlanDetails) -> String {
    let mut line = super::words::status_word(&details.status);
    if let Some(by) = &details.decided_by {
        line.push_str(&format!(" by {by}"));
    }
    if let Some(at) = details.updated {
        line.push_str(&format!(" at {}", at.format("%H:%M")));
    }
    line
}

/// A fresh idempotency key (a random UUID, version 4).
pub fn new_idempotency_key() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No entropy source: the time still makes one machine's keys distinct.
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default().to_be_bytes();
        b[..8].copy_from_slice(&nanos);
        b[8..].copy_from_slice(&nanos);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Text from the Console made safe for a terminal: control characters (escape sequences among
/// them) are shown as `\u{…}`, never sent; newlines and tabs stay.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> PlanDetails {
        PlanDetails {
            plan_id: "p".into(),
            status: "pending".into(),
            organization_id: "o".into(),
            run_id: "r".into(),
            updated: None,
            decided_by: None,
            title: Some("Roll back checkout".into()),
            summary: None,
            risk: Some(Risk::High),
            environment: Some("prod-eu".into()),
            service: Some("checkout".into()),
            policy_pack: None,
            requested_by: None,
            steps: Vec::new(),
            steps_omitted: 0,
            diff: None,
            diff_cut: false,
            revision: Some("rev_1".into()),
            expires_at: None,
            viewer: None,
            fetched_at: Utc::now(),
        }
    }

    #[test]
    fn details_are_kept_within_bounds_and_say_what_was_cut() {
        let step = Step { action: "restart".into(), target: "svc".into(), detail: String::new() };
        let big =
            PlanDetails { steps: vec![step; STEPS_MAX + 5], diff: Some("é".repeat(DIFF_MAX_BYTES)), ..details() }
                .bounded();
        assert_eq!((big.steps.len(), big.steps_omitted), (STEPS_MAX, 5));
        assert!(big.diff_cut && big.diff.as_ref().is_some_and(|d| d.len() <= DIFF_MAX_BYTES));
        let small = details().bounded();
        assert!(!small.diff_cut && small.steps_omitted == 0);
    }

    #[test]
    fn the_notification_names_title_environment_risk_and_service() {
        let h = details().headline();
        assert_eq!(
            h.notification(),
            Some(("Approval needed: Roll back checkout".into(), "prod-eu · high risk · checkout".into()))
        );
        assert_eq!(Headline::default().notification(), None, "no title: the notification goes as before");
    }

    #[test]
    fn terminal_escapes_are_shown_never_sent() {
        assert_eq!(terminal_safe("a\x1b[31mred\x07\n\tb"), "a\\u{1b}[31mred\\u{7}\n\tb");
    }

    #[test]
    fn idempotency_keys_are_fresh_v4_uuids() {
        let (a, b) = (new_idempotency_key(), new_idempotency_key());
        assert_ne!(a, b);
        assert_eq!((a.len(), &a[14..15]), (36, "4"));
    }

    #[test]
    fn high_and_critical_risk_ask_for_the_environment_to_be_typed() {
        assert!(!Risk::Medium.needs_typed_confirmation());
        assert!(Risk::High.needs_typed_confirmation() && Risk::Critical.needs_typed_confirmation());
        assert_eq!(details().rights().type_to_approve.as_deref(), Some("prod-eu"));
        let medium = PlanDetails { risk: Some(Risk::Medium), ..details() };
        assert_eq!(medium.rights().type_to_approve, None);
    }

    #[test]
    fn a_decided_plan_or_the_consoles_no_leaves_nothing_to_decide_and_says_why() {
        let bob = PlanDetails { status: "approved".into(), decided_by: Some("Bob Example".into()), ..details() };
        let r = bob.rights();
        assert!(r.decided && !r.can_decide);
        assert_eq!(r.cannot_decide_reason.as_deref(), Some("Approved by Bob Example"));
        let no = PlanDetails {
            viewer: Some(Viewer { can_decide: false, reason: Some("You requested it".into()) }),
            ..details()
        };
        assert_eq!(
            (no.rights().can_decide, no.rights().cannot_decide_reason.as_deref()),
            (false, Some("You requested it"))
        );
        assert!(details().rights().can_decide && details().rights().cannot_decide_reason.is_none());
    }
}
