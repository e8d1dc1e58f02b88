//! The store's schema version, and migrations from older ones.
//!
//! A store records the version it was written in, in a small file beside the database
//! (`schema-version`), read before the database is opened. Stores from before the version was
//! recorded are version 1. Opening a store of an older version migrates it in place,
//! one idempotent step at a time, and stamps the new version only once the step is on disk: a
//! process killed in the middle leaves a store the next start finishes migrating. A store of a
//! newer version is refused before anything is written, so an older build never misreads it.
//!
//! Versions:
//! 1. events, plans, outbox, delivery log (every delivery, refusals included), meta;
//! 2. the timer index exists; refusals are counted (`refusals`), so the delivery log's refusal
//!    rows, which a flood could fill it with, are removed;
//! 3. plans may be `resolved` (decided in the Console) and carry the Console's view of them
//!    (source, status, decider): a state byte an older build does not know, so it must refuse
//!    the store rather than misread it. Nothing to rewrite: older plans read as webhook plans;
//! 4. the audit log (`audit`), and plans say who snoozed them and which action handled them:
//!    fields an older build would find unexpected, so it must refuse the store. Nothing to rewrite;
//! 5. plans say where their snooze was asked from, and team actions are queued whatever runs:
//!    again fields an older build would not expect. Nothing to rewrite.

use std::path::Path;

use super::records::{DeliveryRecord, DeliveryVerdict};
use super::{codec, corrupt, Store, StoreError};

/// The version this build writes, and the newest it reads.
pub const SCHEMA_VERSION: u32 = 5;
const VERSION_FILE: &str = "schema-version";

/// Test hook: stop (and wait to be killed) after removing this many rows in a migration, so a
/// test can kill the process in the middle of one. Never set outside tests.
const STALL_HOOK: &str = "ZOF_TEST_MIGRATION_STALL_AFTER";

/// The version of the store in `dir`, without opening its database: no file and no database
/// is a new store (the current version); a database without the file is version 1.
pub(super) fn read_version(dir: &Path) -> Result<u32, StoreError> {
    match std::fs::read_to_string(dir.join(VERSION_FILE)) {
        Ok(text) => text.trim().parse().map_err(|e| corrupt("meta", format!("{VERSION_FILE}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(if dir.join("db").exists() { 1 } else { SCHEMA_VERSION })
        }
        Err(e) => Err(StoreError::Open { path: dir.join(VERSION_FILE), source: e.into() }),
    }
}

/// Refuses a store of a newer version. Runs before the database is opened, so nothing changes.
pub(super) fn check_version(dir: &Path) -> Result<u32, StoreError> {
    let found = read_version(dir)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { found, supported: SCHEMA_VERSION });
    }
    Ok(found)
}

impl Store {
    /// The version the store is in.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        read_version(self.dir())
    }

    /// Brings an older store to [`SCHEMA_VERSION`], one idempotent step at a time. Runs at open,
    /// before anything else touches the store.
    pub(super) fn migrate(&self) -> Result<(), StoreError> {
        let found = check_version(self.dir())?;
        if found < SCHEMA_VERSION {
            tracing::info!(from = found, to = SCHEMA_VERSION, "migrating the event store");
        }
        if found < 2 {
            self.index_timers_once()?;
            self.remove_logged_refusals()?;
        }
        // Versions 3 to 5 add fields at the end of plan records, a plan state and a tree: no
        // step, the stamp alone keeps older builds from misreading what this one writes.
        if found < SCHEMA_VERSION || !self.dir().join(VERSION_FILE).exists() {
            self.stamp(SCHEMA_VERSION)?;
        }
        Ok(())
    }

    /// Flushes the steps' work, then records the version reached (written whole, then renamed).
    fn stamp(&self, version: u32) -> Result<(), StoreError> {
        self.flush_blocking()?;
        let io = |e: std::io::Error| StoreError::Open { path: self.dir().join(VERSION_FILE), source: e.into() };
        let tmp = self.dir().join(format!("{VERSION_FILE}.tmp"));
        std::fs::write(&tmp, format!("{version}\n")).map_err(io)?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, self.dir().join(VERSION_FILE)).map_err(io)?;
        tracing::info!(version, "event store schema version recorded");
        Ok(())
    }

    /// Version 2: the delivery log keeps real deliveries only. Idempotent.
    fn remove_logged_refusals(&self) -> Result<(), StoreError> {
        let stall_after = std::env::var(STALL_HOOK).ok().and_then(|v| v.parse::<usize>().ok());
        let mut removed = 0;
        self.with(|i| {
            for kv in i.deliveries.iter() {
                let (key, value) = kv?;
                let refused = codec::decode::<DeliveryRecord>("deliveries", &value)
                    .is_ok_and(|d| d.verdict == DeliveryVerdict::Rejected);
                if refused {
                    i.deliveries.remove(key)?;
                    removed += 1;
                    if stall_after == Some(removed) {
                        i.db.flush()?;
                        eprintln!("migration stalled after {removed} rows (test hook)");
                        loop {
                            std::thread::park();
                        }
                    }
                }
            }
            Ok(())
        })?;
        if removed > 0 {
            tracing::info!(removed, "removed refused deliveries from the delivery log (they are counted now)");
        }
        Ok(())
    }
}
