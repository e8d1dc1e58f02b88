//! Forgetting what is past the retention window: events (their ids can no longer be replayed,
//! because the intake refuses events that old), audit rows, and the delivery log beyond its cap.
//! Plans are kept.

use chrono::{DateTime, Utc};

use super::records::EventRecord;
use super::{Store, StoreError, DELIVERY_LOG_CAP};

impl Store {
    /// Forgets events created before `cutoff` and audit rows written before it, and trims the
    /// delivery log to [`DELIVERY_LOG_CAP`]. Returns how many events were removed. An unreadable event record is
    /// quarantined on the way, so it can never stop pruning.
    pub fn prune(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        let audit = self.prune_audit(cutoff)?;
        self.prune_team(cutoff)?;
        if audit > 0 {
            tracing::info!(removed = audit, "pruned audit rows past the retention window");
        }
        self.with(|i| {
            let mut removed = 0;
            for kv in i.events.iter() {
                let (key, value) = kv?;
                let Some(record) = self.decoded::<EventRecord>(i, "events", &key, &value)? else {
                    continue;
                };
                if record.created < cutoff {
                    i.events.remove(key)?;
                    removed += 1;
                }
            }
            let excess = i.deliveries.len().saturating_sub(DELIVERY_LOG_CAP);
            for kv in i.deliveries.iter().take(excess) {
                i.deliveries.remove(kv?.0)?;
            }
            Ok(removed)
        })
        .inspect(|_| self.flush_soon())
    }
}
