//! The Console's review details of a plan (title, steps, diff, revision, who may decide), kept
//! beside the plan in the `details` tree and refreshed whenever they are read again; the few
//! fields every view shows (the [`Headline`]) go onto the plan itself.

use super::{corrupt, Store, StoreError};
use crate::domain::plan::PlanRecord;
use crate::domain::review::PlanDetails;

impl Store {
    /// Keeps `details` (already within bounds) and puts their headline on the plan. They may
    /// come before the plan is written (its arrival is still being settled): the plan takes
    /// their headline then. Returns the plan as it now is, if it is here.
    pub fn set_details(&self, details: &PlanDetails) -> Result<Option<PlanRecord>, StoreError> {
        let bytes = serde_json::to_vec(details).map_err(|e| corrupt("details", e))?;
        self.with(|i| {
            i.details.insert(details.plan_id.as_bytes(), bytes)?;
            Ok(())
        })?;
        let headline = details.headline();
        let written = self.write_plan(&details.plan_id, |old| {
            let mut plan = old?;
            plan.headline = headline.clone();
            Some(plan)
        })?;
        Ok(written.map(|(plan, _)| plan))
    }

    /// The details last read for `plan_id`, if any. Unreadable ones read as absent (they are
    /// read again from the Console).
    pub fn details(&self, plan_id: &str) -> Result<Option<PlanDetails>, StoreError> {
        self.with(|i| Ok(i.details.get(plan_id.as_bytes())?.and_then(|bytes| serde_json::from_slice(&bytes).ok())))
    }
}
