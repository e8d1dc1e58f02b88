//! Records that cannot be decoded (damaged, or written by a newer version) are moved to the
//! `quarantine` tree with the error, so the subsystem that met one goes on with the next.

use chrono::Utc;

use super::{corrupt, Counts, Inner, QuarantinedRecord, Store, StoreError};

impl Store {
    /// Moves an unreadable record out of its tree into `quarantine`, with the error: the
    /// subsystem that met it goes on with the next record.
    pub(super) fn quarantine(
        &self,
        i: &Inner,
        tree: &'static str,
        key: &[u8],
        bytes: &[u8],
        error: &StoreError,
    ) -> Result<(), StoreError> {
        let key_text = match std::str::from_utf8(key) {
            Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
            _ => hex::encode(key),
        };
        tracing::warn!(tree, key = %key_text, error = %error, "set aside a record that cannot be read");
        let record = QuarantinedRecord {
            tree: tree.into(),
            key: key_text,
            error: error.to_string(),
            at: Utc::now(),
            bytes: hex::encode(bytes),
        };
        let mut qkey = tree.as_bytes().to_vec();
        qkey.push(0);
        qkey.extend_from_slice(key);
        let previous = i.quarantine.insert(qkey, serde_json::to_vec(&record).map_err(|e| corrupt("quarantine", e))?)?;
        Counts::added(&i.counts.quarantine, previous.as_ref());
        if let Some(t) = i.tree(tree) {
            let removed = t.remove(key)?;
            if tree == "outbox" {
                Counts::removed(&i.counts.outbox, removed.as_ref());
            }
        }
        Ok(())
    }
}
