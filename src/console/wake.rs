//! Moments worth reconciling at once: the computer woke from sleep (logind's
//! `PrepareForSleep(false)`) or the network came back (NetworkManager's `StateChanged` to 70,
//! connected globally). Both come from the system bus; where there is none, or neither
//! service, this stays silent and the timer alone drives reconciliation.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use zbus::message::Type;
use zbus::{Connection, MatchRule, MessageStream};

/// NetworkManager's `NM_STATE_CONNECTED_GLOBAL`.
const NM_CONNECTED_GLOBAL: u32 = 70;

/// Sends a reason on `tx` each time one of the signals says the Console may be reachable again.
/// Returns when the system bus is unavailable or `tx` is closed.
pub(super) async fn watch(tx: mpsc::Sender<&'static str>) {
    let conn = match tokio::time::timeout(Duration::from_secs(5), Connection::system()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "no system bus: reconciliation follows the timer only");
            return;
        }
        Err(_) => {
            tracing::debug!("the system bus did not answer: reconciliation follows the timer only");
            return;
        }
    };
    let mut sleep = stream(&conn, "org.freedesktop.login1.Manager", "PrepareForSleep").await;
    let mut network = stream(&conn, "org.freedesktop.NetworkManager", "StateChanged").await;
    loop {
        let reason = tokio::select! {
            Some(Ok(msg)) = next(&mut sleep) => match msg.body().deserialize::<bool>() {
                Ok(false) => "resume from sleep",
                _ => continue,
            },
            Some(Ok(msg)) = next(&mut network) => match msg.body().deserialize::<u32>() {
                Ok(NM_CONNECTED_GLOBAL) => "the network came back",
                _ => continue,
            },
            else => return,
        };
        if tx.send(reason).await.is_err() {
            return;
        }
    }
}

async fn stream(conn: &Connection, interface: &'static str, member: &'static str) -> Option<MessageStream> {
    let rule = MatchRule::builder()
        .msg_type(Type::Signal)
        .interface(interface)
        .and_then(|b| b.member(member))
        .map(|b| b.build());
    let rule = match rule {
        Ok(rule) => rule,
        Err(e) => {
            tracing::debug!(error = %e, interface, "cannot describe a system bus signal");
            return None;
        }
    };
    match MessageStream::for_match_rule(rule, conn, Some(16)).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(error = %e, interface, "cannot listen for a system bus signal");
            None
        }
    }
}

async fn next(stream: &mut Option<MessageStream>) -> Option<zbus::Result<zbus::Message>> {
    match stream {
        Some(s) => s.next().await,
        None => None,
    }
}
