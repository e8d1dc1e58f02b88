//! Refused deliveries cost O(1): counters per refusal code (per minute over the last hour, per
//! hour over the last day) and a ring of the last [`RECENT_CAP`] refusals, instead of a log row
//! each. Anyone who can reach the receiver can send refusals, so they must never fill the store,
//! push accepted deliveries out of the activity log, or flood the log file: the log gets one
//! summary line per code per [`LOG_EVERY`].
//!
//! Team actions read over the relay that are refused are counted here too, under codes that
//! start with [`TEAM_ACTION_CODE_PREFIX`]: whoever may publish to the relay can send those.
//!
//! This is pure bookkeeping; the intake feeds it and the application writes it to the store at
//! most once a second.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// How many refusals are kept one by one.
pub const RECENT_CAP: usize = 100;
/// At most one log line per refusal code in this time.
pub const LOG_EVERY: Duration = Duration::seconds(10);
/// The codes of refused team actions start with this; the others are refused deliveries.
pub const TEAM_ACTION_CODE_PREFIX: &str = "team_action_";

/// Whether `code` counts refused team actions rather than refused deliveries.
pub fn is_team_action(code: &str) -> bool {
    code.starts_with(TEAM_ACTION_CODE_PREFIX)
}

/// One refused delivery. Nothing from its body: refusals are mostly unauthenticated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub at: DateTime<Utc>,
    pub status: u16,
    pub code: String,
    pub reason: String,
}

/// The counts of one refusal code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Tally {
    total: u64,
    status: u16,
    last_at: Option<DateTime<Utc>>,
    last_reason: String,
    /// (minute since the epoch, count), the last 60 minutes.
    minutes: VecDeque<(i64, u64)>,
    /// (hour since the epoch, count), the last 24 hours.
    hours: VecDeque<(i64, u64)>,
    #[serde(skip)]
    logged_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    unlogged: u64,
}

impl Tally {
    fn add(&mut self, r: &Refusal) {
        self.total += 1;
        self.status = r.status;
        self.last_at = Some(r.at);
        r.reason.clone_into(&mut self.last_reason);
        bump(&mut self.minutes, r.at.timestamp().div_euclid(60), 60);
        bump(&mut self.hours, r.at.timestamp().div_euclid(3600), 24);
    }
}

/// Adds one to the bucket `slot` (the newest), keeping at most `keep` buckets.
fn bump(buckets: &mut VecDeque<(i64, u64)>, slot: i64, keep: usize) {
    match buckets.back_mut() {
        Some((s, n)) if *s == slot => *n += 1,
        _ => buckets.push_back((slot, 1)),
    }
    while buckets.len() > keep {
        buckets.pop_front();
    }
}

fn since(buckets: &VecDeque<(i64, u64)>, first_slot: i64) -> u64 {
    buckets.iter().filter(|(s, _)| *s >= first_slot).map(|(_, n)| n).sum()
}

/// A log line that is due: `count` refusals of `code` since the last line for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub code: String,
    pub status: u16,
    pub count: u64,
}

/// How one refusal code looks in the activity view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefusalSummary {
    pub code: String,
    pub status: u16,
    pub last_hour: u64,
    pub last_24h: u64,
    pub total: u64,
    pub last_at: Option<DateTime<Utc>>,
    pub last_reason: String,
}

/// Every refusal counted, and the newest ones kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RefusalBook {
    tallies: BTreeMap<String, Tally>,
    recent: VecDeque<Refusal>,
    #[serde(skip)]
    dirty: bool,
}

impl RefusalBook {
    /// Counts a refusal; returns the log line to write now, if one is due for its code.
    pub fn record(&mut self, refusal: Refusal) -> Option<LogLine> {
        let tally = self.tallies.entry(refusal.code.clone()).or_default();
        tally.add(&refusal);
        tally.unlogged += 1;
        let line = if tally.logged_at.is_none_or(|at| refusal.at - at >= LOG_EVERY) {
            tally.logged_at = Some(refusal.at);
            let count = std::mem::take(&mut tally.unlogged);
            Some(LogLine { code: refusal.code.clone(), status: refusal.status, count })
        } else {
            None
        };
        self.recent.push_back(refusal);
        while self.recent.len() > RECENT_CAP {
            self.recent.pop_front();
        }
        self.dirty = true;
        line
    }

    /// Lines for codes with refusals not logged yet whose quiet time has passed (so the last
    /// refusals of a burst are logged too, at most [`LOG_EVERY`] late).
    pub fn due_lines(&mut self, now: DateTime<Utc>) -> Vec<LogLine> {
        let mut lines = Vec::new();
        for (code, t) in &mut self.tallies {
            if t.unlogged > 0 && t.logged_at.is_none_or(|at| now - at >= LOG_EVERY) {
                t.logged_at = Some(now);
                lines.push(LogLine { code: code.clone(), status: t.status, count: std::mem::take(&mut t.unlogged) });
            }
        }
        lines
    }

    /// When [`RefusalBook::due_lines`] next has a line to give: refusals not logged yet wait
    /// for their code's [`LOG_EVERY`].
    pub fn next_line_at(&self) -> Option<DateTime<Utc>> {
        self.tallies.values().filter(|t| t.unlogged > 0).filter_map(|t| t.logged_at).map(|at| at + LOG_EVERY).min()
    }

    /// A copy to write to the store, if anything changed since the last one.
    pub fn take_snapshot(&mut self) -> Option<RefusalBook> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some(RefusalBook { tallies: self.tallies.clone(), recent: self.recent.clone(), dirty: false })
    }

    /// Per code, most refused in the last hour first; codes with nothing in 24 hours are left out.
    pub fn summary(&self, now: DateTime<Utc>) -> Vec<RefusalSummary> {
        let minute = now.timestamp().div_euclid(60);
        let hour = now.timestamp().div_euclid(3600);
        let mut out: Vec<RefusalSummary> = self
            .tallies
            .iter()
            .map(|(code, t)| RefusalSummary {
                code: code.clone(),
                status: t.status,
                last_hour: since(&t.minutes, minute - 59),
                last_24h: since(&t.hours, hour - 23),
                total: t.total,
                last_at: t.last_at,
                last_reason: t.last_reason.clone(),
            })
            .filter(|s| s.last_24h > 0)
            .collect();
        out.sort_by(|a, b| b.last_hour.cmp(&a.last_hour).then(b.last_24h.cmp(&a.last_24h)));
        out
    }

    /// The newest refusals, newest first.
    pub fn recent(&self) -> Vec<Refusal> {
        self.recent.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(code: &str, at: DateTime<Utc>) -> Refusal {
        Refusal { at, status: 401, code: code.into(), reason: format!("{code} reason") }
    }

    #[test]
    fn twenty_thousand_refusals_keep_a_hundred_and_log_one_line_per_code_per_ten_seconds() {
        let mut book = RefusalBook::default();
        let start = Utc::now();
        let mut lines = Vec::new();
        for n in 0..20_000i64 {
            // 20,000 over 20 s.
            lines.extend(book.record(refusal("missing_signature", start + Duration::milliseconds(n))));
        }
        assert_eq!(book.recent.len(), RECENT_CAP);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let end = start + Duration::milliseconds(20_000);
        let due = book.due_lines(end + LOG_EVERY);
        let logged: u64 = lines.iter().chain(&due).map(|l| l.count).sum();
        assert_eq!(logged, 20_000, "every refusal is counted in some line");
        let summary = book.summary(end);
        assert_eq!(
            (summary[0].code.as_str(), summary[0].last_hour, summary[0].total),
            ("missing_signature", 20_000, 20_000)
        );
        assert!(serde_json::to_vec(&book).unwrap().len() < 32 * 1024);
    }

    #[test]
    fn the_last_hour_forgets_older_minutes_and_the_snapshot_is_taken_once_per_change() {
        let mut book = RefusalBook::default();
        let now = Utc::now();
        book.record(refusal("signature_mismatch", now - Duration::minutes(90)));
        book.record(refusal("signature_mismatch", now));
        let s = &book.summary(now)[0];
        assert_eq!((s.last_hour, s.last_24h), (1, 2));
        assert!(book.take_snapshot().is_some());
        assert!(book.take_snapshot().is_none(), "nothing changed since");
        let restored: RefusalBook = serde_json::from_slice(&serde_json::to_vec(&book).unwrap()).unwrap();
        assert_eq!(restored.summary(now), book.summary(now));
    }
}
