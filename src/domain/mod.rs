//! The domain: what a plan, a team action and an audit row are, and every change a plan goes
//! through, as plain types and pure functions. It imports nothing else in the crate; the store
//! keeps these records and applies these changes, and decides nothing itself.
//!
//! - [`plan`]: `PlanRecord` and its transitions (arrive, handle, snooze, wake, resolve, a
//!   teammate's action), with the team's conflict rules;
//! - [`team`]: the team action as it travels over the relay;
//! - [`audit`]: the audit log's vocabulary (who, what, when, from where).
//! - [`review`]: what a person reads before deciding a plan, and the decision.

pub mod audit;
pub mod plan;
pub mod review;
pub mod team;
pub mod words;
