//! The laptop's side of the relay: a durable pull consumer of its own, fed through the laptop's
//! own [`Intake`], each message judged as of when the stream stored it. A message is acknowledged to JetStream only once it is durable locally; one
//! that fails verification is terminated (never redelivered) and counted as refused.
//!
//! The loop survives everything but a stop: NATS reconnects by itself (sleep, network change),
//! and a broken message stream or a missing stream is retried with backoff.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, AckKind};
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::{LaptopLink, NatsHeaders, RelayError, RelayStatus, TeamParts, SUBJECT_PREFIX};
use crate::intake::{Intake, Verdict};

/// Messages judged at once: enough to keep the store's group commit busy.
const IN_FLIGHT: usize = 64;
/// A message whose delivery or acknowledgment was lost with a connection (NATS restarted, the
/// network changed) is redelivered after this, and then answered as a duplicate. Judging one
/// takes milliseconds, so a redelivery of a message still being judged is rare, and harmless.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// A message refused only because this side is not ready (no secret yet) is offered again after this.
const RETRY_NOT_READY: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The running consumer; [`ConsumerHandle::stop`] lets messages in flight finish first.
#[derive(Debug)]
pub struct ConsumerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    status: RelayStatus,
}

impl ConsumerHandle {
    /// Starts following the relay: deliveries go through the panel's intake like HTTP ones, and
    /// the team's actions are applied ([`super::actions`]); this laptop's own actions, queued
    /// whatever ran when they were taken, are published while the link exists.
    pub fn start(panel: &TeamParts, link: LaptopLink) -> ConsumerHandle {
        let intake = panel.intake.clone();
        let status = RelayStatus::new("laptop");
        intake.attach_relay_status(std::sync::Arc::new(status.clone()));
        audit_link_changes(panel, &status, &link.consumer);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(panel.clone(), link, status.clone(), stopped));
        ConsumerHandle { stop, task, status }
    }

    pub fn status(&self) -> &RelayStatus {
        &self.status
    }

    /// Stops pulling, waits for the messages being judged to be stored and acknowledged.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the relay consumer stopped with an error");
        }
    }
}

/// The audit log hears when the link came up and when it went down.
fn audit_link_changes(panel: &TeamParts, status: &RelayStatus, consumer: &str) {
    let store = panel.store().clone();
    let who = panel.actor(crate::domain::audit::Source::Team(consumer.to_owned()));
    status.on_link_change(move |connected, reason| {
        use crate::domain::audit::{AuditAction, AuditEntry};
        let (action, detail) = match (connected, reason) {
            (true, _) => (AuditAction::RelayConnected, String::new()),
            (false, Some(why)) => (AuditAction::RelayDisconnected, why),
            (false, None) => (AuditAction::RelayDisconnected, String::new()),
        };
        // Called from NATS's event callback: the write goes to a blocking thread.
        store.append_audit_in_background(AuditEntry::new(&who, action, None, detail));
    });
}

/// How long deliveries wait at start for the team's actions to be applied first.
const ACTIONS_FIRST: Duration = Duration::from_secs(10);

async fn run(panel: TeamParts, link: LaptopLink, status: RelayStatus, mut stop: watch::Receiver<bool>) {
    let intake = panel.intake.clone();
    let client = match super::connect(&link.nats, status.clone()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "relay: cannot start; deliveries come over HTTP only");
            status.disconnected(Some(e.to_string()));
            return;
        }
    };
    let js = super::jetstream(client.clone());
    let (caught_up, mut actions_applied) = watch::channel(false);
    let team = (
        tokio::spawn(super::actions::follow_actions(panel.clone(), js.clone(), link.clone(), caught_up, stop.clone())),
        tokio::spawn(super::actions::publish_queued(panel.clone(), js.clone(), stop.clone())),
    );
    // A teammate's "handled" that waited in the stream is applied before any delivery is
    // announced; the wait is bounded, and a decision that comes later still applies on arrival.
    let _ = tokio::time::timeout(ACTIONS_FIRST, actions_applied.wait_for(|done| *done)).await;
    let mut backoff = Duration::from_millis(200);
    loop {
        match follow(&intake, &js, &link, &status, &mut stop).await {
            Ok(Ended::Stopped) => break,
            Ok(Ended::Reconnected) => backoff = Duration::from_millis(200),
            Err(e) => {
                status.disconnected(Some(e.to_string()));
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        if *stop.borrow() {
            break;
        }
    }
    for task in [team.0, team.1] {
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "a team action task stopped with an error");
        }
    }
    // The last acknowledgments leave before the connection closes.
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
}

/// Why a session on the consumer ended without an error.
enum Ended {
    Stopped,
    /// The client reconnected: the session's pull request died with the old connection.
    Reconnected,
}

/// One session on the consumer: until stopped, reconnected, or the message stream breaks (Err).
async fn follow(
    intake: &Intake,
    js: &jetstream::Context,
    link: &LaptopLink,
    status: &RelayStatus,
    stop: &mut watch::Receiver<bool>,
) -> Result<Ended, RelayError> {
    let mut reconnects = status.reconnects();
    reconnects.borrow_and_update();
    let stream = js
        .get_stream(&link.stream)
        .await
        .map_err(|e| RelayError::Stream { name: link.stream.clone(), reason: e.to_string() })?;
    let consumer_error =
        |e: &dyn std::fmt::Display| RelayError::Consumer { name: link.consumer.clone(), reason: e.to_string() };
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &link.consumer,
            pull::Config {
                durable_name: Some(link.consumer.clone()),
                filter_subject: format!("{SUBJECT_PREFIX}.>"),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: 1024,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| consumer_error(&e))?;
    status.connected(consumer.cached_info().num_pending);
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(256)
        .heartbeat(Duration::from_secs(3))
        .expires(Duration::from_secs(10))
        .messages()
        .await
        .map_err(|e| consumer_error(&e))?;
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut judging = JoinSet::new();
    let outcome = loop {
        tokio::select! {
            _ = stop.changed() => break Ok(Ended::Stopped),
            _ = reconnects.changed() => break Ok(Ended::Reconnected),
            Some(_) = judging.join_next(), if !judging.is_empty() => {}
            next = messages.next() => match next {
                Some(Ok(message)) => {
                    if let Ok(info) = message.info() {
                        status.connected(info.pending);
                    }
                    let Ok(permit) = permits.clone().acquire_owned().await else { break Ok(Ended::Stopped) };
                    let intake = intake.clone();
                    judging.spawn(async move {
                        take(&intake, message).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => break Err(RelayError::Messages(e.to_string())),
                None => break Err(RelayError::Messages("closed by the server".into())),
            },
        }
    };
    // Messages being judged finish (stored and acknowledged) before this returns.
    while judging.join_next().await.is_some() {}
    outcome
}

/// Judges one message as of when the stream stored it, and tells JetStream the outcome. The
/// relay's `Zof-Received-At` header is not believed: it is not signed, and anyone who may
/// publish could back-date it to slip a captured delivery past the timestamp tolerance.
async fn take(intake: &Intake, message: jetstream::Message) {
    let headers = NatsHeaders(message.headers.as_ref());
    let stored = super::stored_at(&message).unwrap_or_else(Utc::now);
    let verdict = intake.receive_as_of(&headers, &message.payload, stored).await;
    let ack = match &verdict {
        Verdict::Accepted { .. } | Verdict::Duplicate { .. } | Verdict::Ignored { .. } => AckKind::Ack,
        // Not the message's fault (no secret yet, the store reopening): offered again later.
        Verdict::Rejected(r) if r.status() == 503 => AckKind::Nak(Some(RETRY_NOT_READY)),
        // Refused by this laptop's own secrets and policy: never redelivered.
        Verdict::Rejected(_) => AckKind::Term,
    };
    if let Err(e) = message.ack_with(ack).await {
        // Redelivered after the ack wait, and then answered as a duplicate.
        tracing::debug!(error = %e, "relay: acknowledgment not sent");
    }
}
