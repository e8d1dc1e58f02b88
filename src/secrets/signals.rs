//! The Secret Service's signals on the session bus, so the watcher hears of keychain changes
//! instead of polling for them: an item created, changed or deleted in a collection
//! (`org.freedesktop.Secret.Collection`), a collection created, changed (locked, unlocked) or
//! deleted (`org.freedesktop.Secret.Service`), and the service itself starting or going away.
//! This is the only code that names the Secret Service's D-Bus API; where there is no session
//! bus or no Secret Service (macOS, Windows, a headless box), it says so and the watcher falls
//! back to a slow poll.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use zbus::message::Type;
use zbus::{Connection, MatchRule, MessageStream};

const SERVICE_NAME: &str = "org.freedesktop.secrets";
const SERVICE_INTERFACE: &str = "org.freedesktop.Secret.Service";
const COLLECTION_INTERFACE: &str = "org.freedesktop.Secret.Collection";

/// What the watcher hears from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Heard {
    /// A signal of the Secret Service: the secrets may have changed.
    Changed,
    /// The signals came or went: look at the timers and the fallback poll.
    Look,
}

/// Tells `tell` [`Heard::Changed`] for every signal of the Secret Service, and keeps `listening`
/// true while the service is there to send them. Returns when the session bus is unavailable or
/// `tell` answers that nobody listens any more.
pub(super) async fn follow(tell: impl Fn(Heard) -> bool + Send + 'static, listening: Arc<AtomicBool>) {
    let conn = match tokio::time::timeout(Duration::from_secs(5), Connection::session()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "no session bus: the keychain is looked at once a minute");
            return;
        }
        Err(_) => {
            tracing::debug!("the session bus did not answer: the keychain is looked at once a minute");
            return;
        }
    };
    let mut owner = stream(&conn, owner_rule()).await;
    let mut service = stream(&conn, interface_rule(SERVICE_INTERFACE)).await;
    let mut collections = stream(&conn, interface_rule(COLLECTION_INTERFACE)).await;
    if owner.is_none() || collections.is_none() {
        return;
    }
    // Subscribed first, then asked: a service that starts in between is not missed.
    listening.store(has_owner(&conn).await, Ordering::Release);
    tell(Heard::Look);
    loop {
        tokio::select! {
            Some(Ok(msg)) = next(&mut owner) => {
                // NameOwnerChanged(name, old owner, new owner): an empty new owner means it left.
                let present = msg.body().deserialize::<(String, String, String)>().is_ok_and(|(_, _, new)| !new.is_empty());
                listening.store(present, Ordering::Release);
            }
            Some(Ok(_)) = next(&mut service) => {}
            Some(Ok(_)) = next(&mut collections) => {}
            else => break,
        }
        if !tell(Heard::Changed) {
            return;
        }
    }
    listening.store(false, Ordering::Release);
    tell(Heard::Look);
}

fn interface_rule(interface: &'static str) -> zbus::Result<MatchRule<'static>> {
    Ok(MatchRule::builder().msg_type(Type::Signal).interface(interface)?.build())
}

fn owner_rule() -> zbus::Result<MatchRule<'static>> {
    Ok(MatchRule::builder()
        .msg_type(Type::Signal)
        .sender("org.freedesktop.DBus")?
        .interface("org.freedesktop.DBus")?
        .member("NameOwnerChanged")?
        .arg(0, SERVICE_NAME)?
        .build())
}

async fn stream(conn: &Connection, rule: zbus::Result<MatchRule<'static>>) -> Option<MessageStream> {
    let subscribed = match rule {
        Ok(rule) => MessageStream::for_match_rule(rule, conn, Some(64)).await,
        Err(e) => Err(e),
    };
    match subscribed {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(error = %e, "cannot listen for the Secret Service's signals");
            None
        }
    }
}

async fn has_owner(conn: &Connection) -> bool {
    let Ok(dbus) = zbus::fdo::DBusProxy::new(conn).await else {
        return false;
    };
    match zbus::names::BusName::try_from(SERVICE_NAME) {
        Ok(name) => dbus.name_has_owner(name).await.unwrap_or(false),
        Err(_) => false,
    }
}

async fn next(stream: &mut Option<MessageStream>) -> Option<zbus::Result<zbus::Message>> {
    match stream {
        Some(s) => s.next().await,
        None => None,
    }
}
