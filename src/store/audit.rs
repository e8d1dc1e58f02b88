//! The audit log's rows ([`crate::domain::audit`]), in the `audit` tree under increasing keys: appended,
//! read newest first, and removed only by pruning past the retention window. The API has no way
//! to change or delete one row.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::domain::audit::{AuditEntry, AuditFilter};

impl Store {
    /// Appends one row (durable with the next group commit; callers that answer a person wait
    /// for [`Store::durable`]).
    pub fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.with(|i| {
            let key = i.db.generate_id()?;
            i.audit.insert(key.to_be_bytes(), super::codec::encode(entry))?;
            Ok(())
        })
    }

    /// Appends one row from async code without waiting for it: the write goes to a blocking
    /// thread and joins the next group commit. For rows no caller answers a person with (a
    /// connection that came up or went down); outside a Tokio runtime the row is only logged.
    pub fn append_audit_in_background(&self, entry: AuditEntry) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(action = %entry.action, "no runtime to record an audit row on");
            return;
        };
        let store = self.clone();
        drop(runtime.spawn_blocking(move || {
            if let Err(e) = store.append_audit(&entry) {
                tracing::warn!(error = %e, action = %entry.action, "could not record an audit row");
            }
            store.flush_soon();
        }));
    }

    /// The rows `filter` selects, newest first. An unreadable row is quarantined and skipped.
    pub fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        self.with(|i| {
            let mut out = Vec::new();
            for kv in i.audit.iter().rev() {
                if filter.limit > 0 && out.len() >= filter.limit {
                    break;
                }
                let Some(entry) = self.decode_entry::<AuditEntry>(i, "audit", kv)? else {
                    continue;
                };
                // Not a stop at the first older row: a teammate's action caught up after a night
                // away is appended now under the time it was taken.
                if filter.matches(&entry) {
                    out.push(entry);
                }
            }
            Ok(out)
        })
    }

    /// Forgets rows older than `cutoff` (the retention window), from the oldest appended; a row
    /// appended late with an older time goes on the pass after. Returns how many.
    pub(super) fn prune_audit(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        self.with(|i| {
            let mut removed = 0;
            for kv in i.audit.iter() {
                let (key, value) = kv?;
                match super::codec::decode::<AuditEntry>("audit", &value) {
                    Ok(entry) if entry.at >= cutoff => break,
                    Ok(_) => {}
                    // Kept for a newer version to read; the count of quarantined rows says so.
                    Err(e) => {
                        self.quarantine(i, "audit", &key, &value, &e)?;
                        continue;
                    }
                }
                i.audit.remove(key)?;
                removed += 1;
            }
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use crate::domain::audit::{Actor, AuditAction, AuditEntry, AuditFilter, Source};
    use crate::store::Store;

    fn row(at_minutes_ago: i64, action: AuditAction, plan: Option<&str>) -> AuditEntry {
        let mut e = AuditEntry::new(&Actor::new("alice@l7", Source::Panel), action, plan, "");
        e.at -= Duration::minutes(at_minutes_ago);
        e
    }

    #[test]
    fn rows_read_newest_first_filtered_and_pruned_only_past_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append_audit(&row(120, AuditAction::SecretSet, None)).unwrap();
        store.append_audit(&row(60, AuditAction::Handled, Some("p1"))).unwrap();
        store.append_audit(&row(10, AuditAction::Snoozed, Some("p2"))).unwrap();
        store.append_audit(&row(5, AuditAction::MuteChanged, None)).unwrap();
        let all = store.audit(&AuditFilter::default()).unwrap();
        let actions: Vec<_> = all.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [AuditAction::MuteChanged, AuditAction::Snoozed, AuditAction::Handled, AuditAction::SecretSet]
        );
        let p1 = store.audit(&AuditFilter { plan_id: Some("p1".into()), ..AuditFilter::default() }).unwrap();
        assert_eq!(p1.len(), 1);
        let recent = chrono::Utc::now() - Duration::minutes(30);
        let since = store.audit(&AuditFilter { since: Some(recent), ..AuditFilter::default() }).unwrap();
        assert_eq!(since.len(), 2);
        let plans = store.audit(&AuditFilter { plan_actions_only: true, limit: 1, ..AuditFilter::default() }).unwrap();
        assert_eq!(plans.iter().map(|e| e.action).collect::<Vec<_>>(), [AuditAction::Snoozed]);
        assert_eq!(store.prune_audit(chrono::Utc::now() - Duration::minutes(90)).unwrap(), 1);
        assert_eq!(store.audit(&AuditFilter::default()).unwrap().len(), 3);
    }

    #[test]
    fn rows_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.append_audit(&row(0, AuditAction::Handled, Some("p1"))).unwrap();
            store.flush_blocking().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let rows = store.audit(&AuditFilter::default()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].who, "alice@l7");
    }
}
