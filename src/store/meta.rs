//! Small pieces of state kept across restarts (the mute switch, the refusal counters), and the
//! raw access benchmarks and tests use to count trees or write damaged records.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{corrupt, Counts, Store, StoreError};

impl Store {
    /// A small piece of state kept across restarts (e.g. the mute switch). A value that cannot
    /// be read is quarantined and reads as absent.
    pub fn meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.with(|i| {
            let Some(bytes) = i.meta.get(key.as_bytes())? else {
                return Ok(None);
            };
            match serde_json::from_slice(&bytes) {
                Ok(v) => Ok(Some(v)),
                Err(e) => {
                    self.quarantine(i, "meta", key.as_bytes(), &bytes, &corrupt("meta", e))?;
                    Ok(None)
                }
            }
        })
    }

    pub fn set_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| corrupt("meta", e))?;
        self.with(|i| {
            i.meta.insert(key.as_bytes(), bytes)?;
            Ok(())
        })
    }

    /// Counts a tree's records by reading it whole (sled's `len()`): what `/healthz` did before
    /// it kept counts, for the benchmark that compares the two.
    #[doc(hidden)]
    pub fn count_by_scan(&self, tree: &str) -> usize {
        self.with(|i| Ok(i.tree(tree).map_or(0, sled::Tree::len))).unwrap_or(0)
    }

    /// Writes raw bytes under `key` in one of the store's trees, bypassing the codec: how tests
    /// make a store with damaged records, or records of a future format version.
    #[doc(hidden)]
    pub fn write_raw(&self, tree: &str, key: &[u8], bytes: &[u8]) -> Result<(), StoreError> {
        self.with(|i| {
            let t = i.tree(tree).ok_or_else(|| corrupt("meta", format!("no tree named `{tree}`")))?;
            let previous = t.insert(key, bytes)?;
            if tree == "outbox" {
                Counts::added(&i.counts.outbox, previous.as_ref());
            }
            Ok(())
        })
    }
}
