//! Group commit: many writers, one `fsync`. Writers record their change, then await
//! [`GroupCommit::wait`]; one flusher thread flushes once for every writer that arrived meanwhile.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::StoreError;

/// Group commit: writers bump `requested` after writing and wait for `flushed` to reach it.
#[derive(Debug)]
pub(super) struct GroupCommit {
    requested: Arc<AtomicU64>,
    flushed: watch::Receiver<Flushed>,
    doorbell: Mutex<Option<SyncSender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Debug, Clone, Default)]
struct Flushed {
    generation: u64,
    /// The highest generation whose flush failed, and why.
    failed: Option<(u64, String)>,
    closed: bool,
}

impl GroupCommit {
    pub(super) fn start(db: sled::Db) -> GroupCommit {
        let requested = Arc::new(AtomicU64::new(0));
        let (tx, rx) = watch::channel(Flushed::default());
        let (bell, ring) = mpsc::sync_channel::<()>(1);
        let wanted = requested.clone();
        let spawned = std::thread::Builder::new().name("zof-flush".into()).spawn(move || {
            let mut done = 0;
            while ring.recv().is_ok() {
                let target = wanted.load(Ordering::SeqCst);
                if target <= done {
                    continue;
                }
                match db.flush() {
                    Ok(_) => {
                        done = target;
                        tx.send_modify(|f| f.generation = target);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "flushing the store failed");
                        tx.send_modify(|f| f.failed = Some((target, e.to_string())));
                    }
                }
            }
            if let Err(e) = db.flush() {
                tracing::error!(error = %e, "final flush of the store failed");
            }
            tx.send_modify(|f| f.closed = true);
        });
        if let Err(e) = &spawned {
            tracing::error!(error = %e, "cannot start the flusher thread; every write will report an error");
        }
        let (bell, thread) = match spawned {
            Ok(t) => (Some(bell), Some(t)),
            Err(_) => (None, None),
        };
        GroupCommit { requested, flushed: rx, doorbell: Mutex::new(bell), thread: Mutex::new(thread) }
    }

    /// Registers a write for the next flush and wakes the flusher; returns its generation.
    pub(super) fn request(&self) -> Result<u64, StoreError> {
        let mine = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let bell = self.doorbell.lock().map_err(|_| StoreError::Closed)?;
        match bell.as_ref().map(|b| b.try_send(())) {
            Some(Ok(())) | Some(Err(TrySendError::Full(()))) => Ok(mine),
            Some(Err(TrySendError::Disconnected(()))) | None => Err(StoreError::Closed),
        }
    }

    pub(super) async fn wait(&self) -> Result<(), StoreError> {
        let mine = self.request()?;
        let mut rx = self.flushed.clone();
        let state = rx
            .wait_for(|f| f.generation >= mine || f.failed.as_ref().is_some_and(|(g, _)| *g >= mine) || f.closed)
            .await
            .map_err(|_| StoreError::Closed)?;
        if state.generation >= mine {
            Ok(())
        } else if let Some((_, why)) = &state.failed {
            Err(StoreError::Flush(why.clone()))
        } else {
            Err(StoreError::Closed)
        }
    }

    /// Ends the flusher thread after one last flush, and waits for it: the database (and its
    /// file lock) is released once the caller drops its own handle.
    pub(super) fn stop(&self) {
        if let Ok(mut bell) = self.doorbell.lock() {
            bell.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}
