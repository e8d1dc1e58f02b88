//! The link's state as people read it: `connected`, `catching up N`, `disconnected since …`.
//! Shared by the NATS client's event callback, the consumer loop and `/healthz`; each change of
//! state is logged once.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::intake::{LinkHealth, LinkHealthSource};

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Connecting,
    Connected { pending: u64 },
    Disconnected { since: DateTime<Utc>, reason: Option<String> },
}

impl LinkHealthSource for RelayStatus {
    fn health(&self) -> LinkHealth {
        self.snapshot()
    }
}

/// A cheap, cloneable handle on the link's state.
#[derive(Debug, Clone)]
pub struct RelayStatus {
    inner: Arc<Mutex<State>>,
    /// Counts reconnections: a pull consumer's request did not survive the old connection, so
    /// the consumer loop starts a new one at once instead of waiting for it to expire.
    reconnects: Arc<tokio::sync::watch::Sender<u64>>,
    /// Counts changes of state (connecting, connected, catching up, disconnected), for a view
    /// that refreshes when the link changes.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// Which link this is, in the log lines (`relay` or `laptop`).
    role: &'static str,
    /// Whether "catching up" was logged: a few messages arriving at once are not a backlog worth
    /// a line (nor is the "connected" that follows them).
    backlog_logged: Arc<std::sync::atomic::AtomicBool>,
    /// Told when the link comes up (`true`) or goes down (`false`, with why when known).
    on_change: Arc<std::sync::OnceLock<LinkHook>>,
}

/// What [`RelayStatus::on_link_change`] calls.
struct LinkHook(Box<dyn Fn(bool, Option<String>) + Send + Sync>);

impl std::fmt::Debug for LinkHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkHook")
    }
}

/// A backlog this large is logged as "catching up N".
const BACKLOG_WORTH_LOGGING: u64 = 100;

impl RelayStatus {
    pub fn new(role: &'static str) -> RelayStatus {
        let (reconnects, _) = tokio::sync::watch::channel(0);
        let (changes, _) = tokio::sync::watch::channel(0);
        RelayStatus {
            inner: Arc::new(Mutex::new(State::Connecting)),
            reconnects: Arc::new(reconnects),
            changes: Arc::new(changes),
            role,
            backlog_logged: Arc::default(),
            on_change: Arc::default(),
        }
    }

    pub fn snapshot(&self) -> LinkHealth {
        let state = self.with(|s| s.clone());
        let (name, pending, since, reason) = match &state {
            State::Connecting => ("connecting", 0, None, None),
            State::Connected { pending: 0 } => ("connected", 0, None, None),
            State::Connected { pending } => ("catching_up", *pending, None, None),
            State::Disconnected { since, reason } => ("disconnected", 0, Some(*since), reason.clone()),
        };
        LinkHealth { state: name, pending, since, reason, text: describe(&state) }
    }

    /// Changes each time the client reconnects after losing its connection.
    pub fn reconnects(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reconnects.subscribe()
    }

    /// Changes each time the state changes kind (not when only the pending count moves).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn is_connected(&self) -> bool {
        self.with(|s| matches!(s, State::Connected { .. }))
    }

    /// Connected, with `pending` messages still to take.
    pub fn connected(&self, pending: u64) {
        self.set(State::Connected { pending });
    }

    /// Down, with the reason when there is one; `since` stays the first moment it went down.
    pub fn disconnected(&self, reason: Option<String>) {
        let since = self.with(|s| match s {
            State::Disconnected { since, .. } => *since,
            _ => Utc::now(),
        });
        self.set(State::Disconnected { since, reason });
    }

    pub(crate) fn on_event(&self, event: &async_nats::Event) {
        match event {
            // Until the stream (relay) or the consumer (laptop) answered, "connecting" stays.
            async_nats::Event::Connected if self.with(|s| *s == State::Connecting) => {}
            async_nats::Event::Connected => {
                let pending = self.with(|s| match s {
                    State::Connected { pending } => *pending,
                    _ => 0,
                });
                self.connected(pending);
                self.reconnects.send_modify(|n| *n = n.wrapping_add(1));
            }
            async_nats::Event::Disconnected | async_nats::Event::Closed => self.disconnected(None),
            other => tracing::warn!(link = self.role, event = %other, "NATS"),
        }
    }

    /// Calls `hook` each time the link comes up or goes down (set once; later calls are ignored).
    pub fn on_link_change(&self, hook: impl Fn(bool, Option<String>) + Send + Sync + 'static) {
        let _ = self.on_change.set(LinkHook(Box::new(hook)));
    }

    fn set(&self, next: State) {
        let shown = next.clone();
        let previous = self.with(|s| std::mem::replace(s, next));
        let up = |s: &State| matches!(s, State::Connected { .. });
        let down = |s: &State| matches!(s, State::Disconnected { .. });
        if let Some(hook) = self.on_change.get() {
            if up(&shown) && !up(&previous) {
                (hook.0)(true, None);
            } else if down(&shown) && up(&previous) {
                let reason = match &shown {
                    State::Disconnected { reason, .. } => reason.clone(),
                    _ => None,
                };
                (hook.0)(false, reason);
            }
        }
        let kind = |s: &State| match s {
            State::Connecting => 0,
            State::Connected { pending: 0 } => 1,
            State::Connected { .. } => 2,
            State::Disconnected { .. } => 3,
        };
        if kind(&previous) == kind(&shown) {
            return;
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        use std::sync::atomic::Ordering::Relaxed;
        let quiet = match (&previous, &shown) {
            // Live traffic: a few messages at once from "connected" are not a backlog.
            (State::Connected { pending: 0 }, State::Connected { pending }) => *pending < BACKLOG_WORTH_LOGGING,
            (State::Connected { .. }, State::Connected { pending: 0 }) => !self.backlog_logged.load(Relaxed),
            _ => false,
        };
        if quiet {
            return;
        }
        self.backlog_logged.store(kind(&shown) == 2, Relaxed);
        match &shown {
            State::Disconnected { reason: Some(why), .. } => {
                tracing::warn!(link = self.role, reason = %why, "relay: {}", describe(&shown));
            }
            _ => tracing::info!(link = self.role, "relay: {}", describe(&shown)),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

fn describe(state: &State) -> String {
    match state {
        State::Connecting => "connecting".into(),
        State::Connected { pending: 0 } => "connected".into(),
        State::Connected { pending } => format!("catching up {pending}"),
        State::Disconnected { since, .. } => {
            format!("disconnected since {}", since.to_rfc3339_opts(SecondsFormat::Secs, true))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_reads_as_a_phrase() {
        let s = RelayStatus::new("laptop");
        assert_eq!(s.snapshot().text, "connecting");
        s.connected(42);
        assert_eq!((s.snapshot().state, s.snapshot().text), ("catching_up", "catching up 42".to_string()));
        s.connected(0);
        assert_eq!(s.snapshot().text, "connected");
        s.disconnected(None);
        let first = s.snapshot().since;
        s.disconnected(Some("stream not found".into()));
        assert_eq!(s.snapshot().since, first, "since stays the first moment the link went down");
        assert!(s.snapshot().text.starts_with("disconnected since "));
    }
}
