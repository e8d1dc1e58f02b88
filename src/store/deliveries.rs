//! The delivery log: one line per delivery answered (accepted ones are written by the outbox
//! worker under their outbox number, so the log keeps arrival order), capped at
//! [`super::DELIVERY_LOG_CAP`] lines by pruning.

use super::codec;
use super::records::DeliveryRecord;
use super::{Store, StoreError};

impl Store {
    /// Appends to the delivery log (made durable with the next group commit). Accepted
    /// deliveries are logged by [`Store::settle_event`] instead, under their outbox number, so the
    /// log keeps arrival order. Refusals are not logged here: they are counted (see `refusals`).
    pub fn record_delivery(&self, record: &DeliveryRecord) -> Result<(), StoreError> {
        self.with(|i| {
            let key = i.db.generate_id()?;
            i.deliveries.insert(key.to_be_bytes(), codec::encode(record))?;
            Ok(())
        })
    }

    /// The newest `limit` readable deliveries, newest first.
    pub fn deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.with(|i| {
            let mut out = Vec::new();
            for kv in i.deliveries.iter().rev() {
                if out.len() >= limit {
                    break;
                }
                out.extend(self.decode_entry(i, "deliveries", kv)?);
            }
            Ok(out)
        })
    }

    /// Every logged delivery of one event id, newest first.
    pub fn deliveries_of(&self, event_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.with(|i| {
            let mut out = Vec::new();
            for kv in i.deliveries.iter().rev() {
                let d: Option<DeliveryRecord> = self.decode_entry(i, "deliveries", kv)?;
                out.extend(d.filter(|d| d.event_id.as_deref() == Some(event_id)));
            }
            Ok(out)
        })
    }
}
