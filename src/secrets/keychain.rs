//! Where secret material is kept: the OS keychain behind a small trait, reached through one
//! long-lived worker thread.
//!
//! The only file that names `keyring`. A keychain call can hang (a locked keyring waiting for a
//! password prompt that never comes), so a caller never makes the call itself: it hands the call
//! to the worker over a queue and waits at most a timeout. A thread per call would leave one
//! stuck thread behind for every retry while the keychain hangs; with one worker the stuck call
//! is the only one, and until it returns further calls fail at once with
//! [`KeychainError::NotAnswering`] instead of queueing behind it.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{KeychainError, KEYCHAIN_SERVICE, KEYCHAIN_TIMEOUT};
use crate::verify::{Fingerprint, Secret};

/// Where secret material is kept. The real one is [`Keychain`]; [`MemoryStore`] serves unit tests.
pub trait SecretStore: Send + Sync + std::fmt::Debug {
    fn get(&self, fingerprint: &Fingerprint) -> Result<Secret, KeychainError>;
    fn set(&self, secret: &Secret) -> Result<(), KeychainError>;
    fn delete(&self, fingerprint: &Fingerprint) -> Result<(), KeychainError>;
    /// A named entry that is not a webhook secret (the Console token, account `console-token`):
    /// `None` when there is none. Callers wrap the text in a type that never prints it.
    fn get_named(&self, _account: &str) -> Result<Option<zeroize::Zeroizing<String>>, KeychainError> {
        Err(KeychainError::Failed("this secret store keeps no named entries".into()))
    }
    fn set_named(&self, _account: &str, _value: &str) -> Result<(), KeychainError> {
        Err(KeychainError::Failed("this secret store keeps no named entries".into()))
    }
    fn delete_named(&self, _account: &str) -> Result<(), KeychainError> {
        Err(KeychainError::Failed("this secret store keeps no named entries".into()))
    }
}

/// The OS keychain (macOS Keychain, Windows Credential Manager, the Secret Service on Linux),
/// every call bounded by a timeout. Clones share one worker thread.
#[derive(Debug, Clone)]
pub struct Keychain {
    worker: Arc<Worker>,
}

impl Default for Keychain {
    fn default() -> Self {
        Keychain::with_backend(Arc::new(OsKeychain { service: KEYCHAIN_SERVICE.into() }), KEYCHAIN_TIMEOUT)
    }
}

impl Keychain {
    /// Puts `backend` behind the worker: each call may take `timeout` before it counts as hanging.
    pub fn with_backend(backend: Arc<dyn SecretStore>, timeout: Duration) -> Keychain {
        let worker =
            Worker { backend, timeout, queue: Mutex::new(None), state: Arc::new(Mutex::new(CallState::default())) };
        Keychain { worker: Arc::new(worker) }
    }
}

impl SecretStore for Keychain {
    fn get(&self, fingerprint: &Fingerprint) -> Result<Secret, KeychainError> {
        let fp = fingerprint.clone();
        self.worker.call(move |store| store.get(&fp))
    }

    fn set(&self, secret: &Secret) -> Result<(), KeychainError> {
        let secret = secret.clone();
        self.worker.call(move |store| store.set(&secret))
    }

    fn delete(&self, fingerprint: &Fingerprint) -> Result<(), KeychainError> {
        let fp = fingerprint.clone();
        self.worker.call(move |store| store.delete(&fp))
    }

    fn get_named(&self, account: &str) -> Result<Option<zeroize::Zeroizing<String>>, KeychainError> {
        let account = account.to_owned();
        self.worker.call(move |store| store.get_named(&account))
    }

    fn set_named(&self, account: &str, value: &str) -> Result<(), KeychainError> {
        let (account, value) = (account.to_owned(), zeroize::Zeroizing::new(value.to_owned()));
        self.worker.call(move |store| store.set_named(&account, &value))
    }

    fn delete_named(&self, account: &str) -> Result<(), KeychainError> {
        let account = account.to_owned();
        self.worker.call(move |store| store.delete_named(&account))
    }
}

/// A call made on the worker thread; it sends its answer back itself.
type Call = Box<dyn FnOnce(&dyn SecretStore) + Send>;

/// One call for the worker. `abandoned` is set when the caller stopped waiting, so a call that
/// queued behind a hung one is not made late, after its caller reported it failed.
struct Job {
    run: Call,
    abandoned: Arc<AtomicBool>,
}

/// What the worker is doing, for callers deciding whether to wait or to fail fast.
#[derive(Debug, Default)]
struct CallState {
    running_since: Option<Instant>,
    /// A caller gave up on the running call; cleared when it returns.
    hung: bool,
}

#[derive(Debug)]
struct Worker {
    backend: Arc<dyn SecretStore>,
    timeout: Duration,
    /// Started on the first call; the thread ends when the last clone of the [`Keychain`] goes.
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    state: Arc<Mutex<CallState>>,
}

impl Worker {
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn SecretStore) -> Result<T, KeychainError> + Send + 'static,
    ) -> Result<T, KeychainError> {
        if self.is_hanging() {
            return Err(KeychainError::NotAnswering(self.timeout));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let abandoned = Arc::new(AtomicBool::new(false));
        let run = Box::new(move |store: &dyn SecretStore| {
            let _ = tx.send(f(store));
        });
        self.enqueue(Job { run, abandoned: abandoned.clone() })?;
        match rx.recv_timeout(self.timeout) {
            Ok(answer) => answer,
            Err(RecvTimeoutError::Timeout) => {
                abandoned.store(true, Ordering::Release);
                let mut state = lock(&self.state);
                if state.running_since.is_some() {
                    state.hung = true;
                }
                Err(KeychainError::Timeout(self.timeout))
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(KeychainError::Failed("the keychain call failed unexpectedly".into()))
            }
        }
    }

    fn is_hanging(&self) -> bool {
        let state = lock(&self.state);
        state.hung || state.running_since.is_some_and(|t| t.elapsed() >= self.timeout)
    }

    fn enqueue(&self, job: Job) -> Result<(), KeychainError> {
        let mut queue = lock(&self.queue);
        let job = match queue.as_ref() {
            Some(q) => match q.send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        // The first call starts the worker. It outlives panics and ends only when its queue
        // closes, so a failed send is not expected; a new worker answers it all the same.
        let (tx, rx) = mpsc::channel();
        let (backend, state) = (self.backend.clone(), self.state.clone());
        std::thread::Builder::new()
            .name("zof-keychain".into())
            .spawn(move || serve(backend.as_ref(), &rx, &state))
            .map_err(|e| KeychainError::Failed(format!("cannot start the keychain thread: {e}")))?;
        tx.send(job).map_err(|_| KeychainError::Failed("the keychain thread stopped".into()))?;
        *queue = Some(tx);
        Ok(())
    }
}

/// The worker thread: one call at a time, until every sender is gone.
fn serve(backend: &dyn SecretStore, jobs: &mpsc::Receiver<Job>, state: &Mutex<CallState>) {
    for job in jobs {
        if job.abandoned.load(Ordering::Acquire) {
            continue;
        }
        lock(state).running_since = Some(Instant::now());
        // A panicking backend must not take the worker down; its caller sees the answer dropped.
        let run = job.run;
        let _ = std::panic::catch_unwind(AssertUnwindSafe(move || run(backend)));
        *lock(state) = CallState::default();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The platform keychain itself, called directly: only ever from the worker thread.
#[derive(Debug)]
struct OsKeychain {
    service: String,
}

impl OsKeychain {
    fn entry(&self, fingerprint: &Fingerprint) -> Result<keyring::Entry, KeychainError> {
        keyring::Entry::new(&self.service, &format!("webhook-secret-{fingerprint}")).map_err(|e| keychain_error(&e))
    }
}

impl SecretStore for OsKeychain {
    fn get(&self, fingerprint: &Fingerprint) -> Result<Secret, KeychainError> {
        match self.entry(fingerprint)?.get_password() {
            Ok(text) => Secret::new(&text)
                .map_err(|e| KeychainError::Failed(format!("the stored secret {fingerprint} is unusable: {e}"))),
            Err(keyring::Error::NoEntry) => Err(KeychainError::Missing(fingerprint.clone())),
            Err(e) => Err(keychain_error(&e)),
        }
    }

    fn set(&self, secret: &Secret) -> Result<(), KeychainError> {
        self.entry(&secret.fingerprint())?.set_password(secret.expose()).map_err(|e| keychain_error(&e))
    }

    fn delete(&self, fingerprint: &Fingerprint) -> Result<(), KeychainError> {
        match self.entry(fingerprint)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(keychain_error(&e)),
        }
    }

    fn get_named(&self, account: &str) -> Result<Option<zeroize::Zeroizing<String>>, KeychainError> {
        let entry = keyring::Entry::new(&self.service, account).map_err(|e| keychain_error(&e))?;
        match entry.get_password() {
            Ok(text) => Ok(Some(zeroize::Zeroizing::new(text))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(keychain_error(&e)),
        }
    }

    fn set_named(&self, account: &str, value: &str) -> Result<(), KeychainError> {
        let entry = keyring::Entry::new(&self.service, account).map_err(|e| keychain_error(&e))?;
        entry.set_password(value).map_err(|e| keychain_error(&e))
    }

    fn delete_named(&self, account: &str) -> Result<(), KeychainError> {
        let entry = keyring::Entry::new(&self.service, account).map_err(|e| keychain_error(&e))?;
        match entry.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(keychain_error(&e)),
        }
    }
}

/// keyring's errors carry platform messages; none of them contains secret material.
fn keychain_error(e: &keyring::Error) -> KeychainError {
    let text = e.to_string();
    let lower = text.to_lowercase();
    match e {
        _ if lower.contains("locked") || lower.contains("prompt") || lower.contains("dismissed") => {
            KeychainError::Locked
        }
        keyring::Error::NoStorageAccess(_) => KeychainError::Unavailable(text),
        keyring::Error::PlatformFailure(_)
            if lower.contains("dbus")
                || lower.contains("d-bus")
                || lower.contains("serviceunknown")
                || lower.contains("connect")
                || lower.contains("no such") =>
        {
            KeychainError::Unavailable(text)
        }
        _ => KeychainError::Failed(text),
    }
}

/// Secret material in memory, for unit tests of the rotation logic. Can be told to fail writes.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<Fingerprint, Secret>>,
    named: Mutex<HashMap<String, zeroize::Zeroizing<String>>>,
    pub fail_writes: AtomicBool,
}

impl SecretStore for MemoryStore {
    fn get(&self, fingerprint: &Fingerprint) -> Result<Secret, KeychainError> {
        lock(&self.entries).get(fingerprint).cloned().ok_or_else(|| KeychainError::Missing(fingerprint.clone()))
    }

    fn set(&self, secret: &Secret) -> Result<(), KeychainError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(KeychainError::Locked);
        }
        lock(&self.entries).insert(secret.fingerprint(), secret.clone());
        Ok(())
    }

    fn delete(&self, fingerprint: &Fingerprint) -> Result<(), KeychainError> {
        lock(&self.entries).remove(fingerprint);
        Ok(())
    }

    fn get_named(&self, account: &str) -> Result<Option<zeroize::Zeroizing<String>>, KeychainError> {
        Ok(lock(&self.named).get(account).cloned())
    }

    fn set_named(&self, account: &str, value: &str) -> Result<(), KeychainError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(KeychainError::Locked);
        }
        lock(&self.named).insert(account.to_owned(), zeroize::Zeroizing::new(value.to_owned()));
        Ok(())
    }

    fn delete_named(&self, account: &str) -> Result<(), KeychainError> {
        lock(&self.named).remove(account);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicUsize;
    use std::thread::ThreadId;

    /// A keychain whose first call hangs until the test releases it, as a locked keyring
    /// waiting for a prompt does. Counts the calls that reach it and the threads they run on.
    #[derive(Debug)]
    struct HangingStore {
        release: Mutex<Option<mpsc::Receiver<()>>>,
        calls: AtomicUsize,
        threads: Mutex<HashSet<ThreadId>>,
        secret: Secret,
    }

    impl SecretStore for HangingStore {
        fn get(&self, _: &Fingerprint) -> Result<Secret, KeychainError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            lock(&self.threads).insert(std::thread::current().id());
            let gate = lock(&self.release).take();
            if let Some(gate) = gate {
                let _ = gate.recv();
            }
            Ok(self.secret.clone())
        }
        fn set(&self, _: &Secret) -> Result<(), KeychainError> {
            unreachable!("not used by this test")
        }
        fn delete(&self, _: &Fingerprint) -> Result<(), KeychainError> {
            unreachable!("not used by this test")
        }
    }

    #[test]
    fn a_hung_keychain_call_makes_later_calls_fail_fast_on_the_same_thread_until_it_returns() {
        let (release, gate) = mpsc::channel();
        let secret = Secret::new("hanging-keychain-secret-0123").unwrap();
        let fp = secret.fingerprint();
        let backend = Arc::new(HangingStore {
            release: Mutex::new(Some(gate)),
            calls: AtomicUsize::new(0),
            threads: Mutex::new(HashSet::new()),
            secret,
        });
        let timeout = Duration::from_millis(400);
        let keychain = Keychain::with_backend(backend.clone(), timeout);

        assert_eq!(keychain.get(&fp).unwrap_err(), KeychainError::Timeout(timeout));
        for _ in 0..20 {
            let asked = Instant::now();
            assert_eq!(keychain.get(&fp).unwrap_err(), KeychainError::NotAnswering(timeout));
            assert!(asked.elapsed() < timeout / 2, "failed fast: {:?}", asked.elapsed());
        }
        assert_eq!(backend.calls.load(Ordering::SeqCst), 1, "no call reached the keychain during the hang");

        release.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while keychain.get(&fp).is_err() {
            assert!(Instant::now() < deadline, "the keychain never answered again");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(backend.calls.load(Ordering::SeqCst), 2);
        assert_eq!(lock(&backend.threads).len(), 1, "every call ran on the one worker thread");
    }

    #[test]
    fn calls_through_the_worker_reach_the_backend_and_return_its_answer() {
        let store = Arc::new(MemoryStore::default());
        let keychain = Keychain::with_backend(store.clone(), Duration::from_secs(5));
        let secret = Secret::new("worker-secret-0123456789").unwrap();
        keychain.set(&secret).unwrap();
        assert_eq!(store.get(&secret.fingerprint()).unwrap(), secret);
        assert_eq!(keychain.get(&secret.fingerprint()).unwrap(), secret);
        keychain.delete(&secret.fingerprint()).unwrap();
        assert_eq!(keychain.get(&secret.fingerprint()), Err(KeychainError::Missing(secret.fingerprint())));
    }

    #[test]
    fn named_entries_go_through_the_worker() {
        let keychain = Keychain::with_backend(Arc::new(MemoryStore::default()), Duration::from_secs(5));
        assert_eq!(keychain.get_named("console-token").unwrap(), None);
        keychain.set_named("console-token", "tok").unwrap();
        assert_eq!(keychain.get_named("console-token").unwrap().as_deref().map(String::as_str), Some("tok"));
        keychain.delete_named("console-token").unwrap();
        assert_eq!(keychain.get_named("console-token").unwrap(), None);
    }
}
