//! Team actions over JetStream ([`crate::domain::team`]): this laptop's own go out on
//! `zof.actions.<org>`, signed with its current webhook secret, and every teammate's come in
//! through a durable consumer of its own, so a laptop that slept applies what it missed.
//!
//! Incoming, like a delivery: verify (as of when the stream took it) → apply in the store with
//! its audit row → durable → acknowledge. A message that fails verification is terminated,
//! applies nothing, and is counted with the refused deliveries (never a row each).

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, AckKind};
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::watch;

use super::TeamParts;
use super::{LaptopLink, NatsHeaders, RelayError, MSG_ID_HEADER, PUBLISH_TIMEOUT};
use crate::domain::team::TeamAction;

/// The subjects team actions travel on: one per organization below this prefix.
pub const ACTIONS_PREFIX: &str = "zof.actions";
/// How often queued actions are tried again while NATS or the stream is not there.
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// Queued actions read and published per pass.
const PUBLISH_BATCH: usize = 256;
const ACK_WAIT: Duration = Duration::from_secs(10);
const RETRY_NOT_READY: Duration = Duration::from_secs(5);

/// The subject an action of `org` is published to.
pub fn action_subject(org: &str) -> String {
    format!("{ACTIONS_PREFIX}.{}", super::subject_token(org))
}

/// The durable consumer a laptop reads team actions with (beside its deliveries consumer).
pub fn actions_consumer(consumer: &str) -> String {
    format!("{consumer}_actions")
}

/// Publishes the queued actions until stopped: each is removed from the queue only once
/// JetStream acknowledged it, so an action taken offline goes once the relay is back.
pub(super) async fn publish_queued(panel: TeamParts, js: jetstream::Context, mut stop: watch::Receiver<bool>) {
    let store = panel.store().clone();
    let queued = store.team_queued();
    loop {
        // Retried on a timer only while something waits; otherwise only a new action wakes this.
        let retry = match publish_pass(&panel, &js).await {
            // A full batch: more may wait behind it.
            Ok(true) => continue,
            Ok(false) => false,
            Err(e) => {
                tracing::debug!(error = %e, "relay: team actions wait to be published");
                true
            }
        };
        tokio::select! {
            () = queued.notified() => {}
            () = tokio::time::sleep(RETRY_EVERY), if retry => {}
            _ = stop.changed() => break,
        }
    }
    // What was queued in the last moment goes before the connection closes.
    let _ = tokio::time::timeout(Duration::from_secs(2), publish_pass(&panel, &js)).await;
}

/// Publishes what is queued, up to [`PUBLISH_BATCH`]; `Ok(true)` when the batch was full.
async fn publish_pass(panel: &TeamParts, js: &jetstream::Context) -> Result<bool, RelayError> {
    let store = panel.store().clone();
    let queued = tokio::task::spawn_blocking(move || store.outgoing_team_actions(PUBLISH_BATCH))
        .await
        .map_err(|e| RelayError::Publish(e.to_string()))?
        .map_err(|e| RelayError::Publish(e.to_string()))?;
    let full = queued.len() == PUBLISH_BATCH;
    for (seq, action) in queued {
        let body = action.to_body();
        // Signed as of now, when it is published: a Standard Webhooks timestamp is checked
        // against when the stream takes the message, and an action may have waited in the
        // queue for long (taken while the relay was away, or a Console resolution). When it
        // was taken is `at`, inside the signed body.
        let Some(signed) = panel.intake.judge().sign(&action.id, Utc::now(), &body) else {
            return Err(RelayError::Publish("no webhook secret to sign team actions with yet".into()));
        };
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in &signed {
            headers.insert(*name, value.as_str());
        }
        headers.insert(MSG_ID_HEADER, action.id.as_str());
        let sent = async {
            let ack = js
                .publish_with_headers(action_subject(&action.organization_id), headers, body.into())
                .await
                .map_err(|e| RelayError::Publish(e.to_string()))?;
            ack.await.map_err(|e| RelayError::Publish(e.to_string()))
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, sent).await {
            Ok(Ok(_)) => {
                let store = panel.store().clone();
                let _ = tokio::task::spawn_blocking(move || store.sent_team_action(seq)).await;
                tracing::debug!(action = %action.id, plan = %action.plan_id, "relay: team action published");
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(RelayError::AckTimeout),
        }
    }
    // The sent marks join the next group commit (a crash before it resends, which JetStream's
    // deduplication by message id absorbs).
    panel.store().flush_soon();
    Ok(full)
}

/// Follows the team's actions until stopped. `caught_up` turns true once every action that
/// was waiting at the start is applied (or there were none), so deliveries that arrive next
/// are never announced for a plan a teammate already handled.
pub(super) async fn follow_actions(
    panel: TeamParts,
    js: jetstream::Context,
    link: LaptopLink,
    caught_up: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match follow_once(&panel, &js, &link, &caught_up, &mut stop).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "relay: team actions unavailable; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        if *stop.borrow() {
            break;
        }
    }
}

async fn follow_once(
    panel: &TeamParts,
    js: &jetstream::Context,
    link: &LaptopLink,
    caught_up: &watch::Sender<bool>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), RelayError> {
    let name = actions_consumer(&link.consumer);
    let failed = |e: &dyn std::fmt::Display| RelayError::Consumer { name: name.clone(), reason: e.to_string() };
    let stream = js
        .get_stream(&link.stream)
        .await
        .map_err(|e| RelayError::Stream { name: link.stream.clone(), reason: e.to_string() })?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: format!("{ACTIONS_PREFIX}.>"),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| failed(&e))?;
    if consumer.cached_info().num_pending == 0 && consumer.cached_info().num_ack_pending == 0 {
        caught_up.send_replace(true);
    }
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(64)
        .heartbeat(Duration::from_secs(3))
        .expires(Duration::from_secs(10))
        .messages()
        .await
        .map_err(|e| failed(&e))?;
    loop {
        let next = tokio::select! {
            _ = stop.changed() => return Ok(()),
            next = messages.next() => next,
        };
        match next {
            Some(Ok(message)) => {
                let pending = message.info().map(|i| i.pending).unwrap_or(0);
                take(panel, &link.consumer, message).await;
                if pending == 0 {
                    caught_up.send_replace(true);
                }
            }
            Some(Err(e)) => return Err(RelayError::Messages(e.to_string())),
            None => return Err(RelayError::Messages("closed by the server".into())),
        }
    }
}

/// Judges and applies one action, then tells JetStream the outcome.
async fn take(panel: &TeamParts, consumer: &str, message: jetstream::Message) {
    let headers = NatsHeaders(message.headers.as_ref());
    // When the stream stored it (set by the server, not by whoever published it).
    let as_of = super::stored_at(&message).unwrap_or_else(Utc::now);
    let subject_org = message.subject.as_str().strip_prefix(ACTIONS_PREFIX).unwrap_or("").trim_start_matches('.');
    let names_org = |org: &str| super::subject_token(org) == subject_org;
    let judged =
        panel.intake.judge().judge_team_action(&headers, &message.payload, subject_org, names_org, as_of, Utc::now());
    let ack = match judged {
        Ok(action) => match apply(panel, consumer, action).await {
            Ok(()) => AckKind::Ack,
            // The store is not taking writes right now: offered again.
            Err(e) => {
                tracing::warn!(error = %e, "relay: a team action could not be stored; it is offered again");
                AckKind::Nak(Some(RETRY_NOT_READY))
            }
        },
        Err(refusal) if refusal.is_retryable() => AckKind::Nak(Some(RETRY_NOT_READY)),
        // Counted with the refused deliveries (O(1), whatever the flood); nothing in it is believed.
        Err(refusal) => {
            panel.intake.refuse_team_action(&refusal, subject_org);
            AckKind::Term
        }
    };
    if let Err(e) = message.ack_with(ack).await {
        tracing::debug!(error = %e, "relay: acknowledgment of a team action not sent");
    }
}

async fn apply(panel: &TeamParts, consumer: &str, action: TeamAction) -> Result<(), crate::store::StoreError> {
    panel.actions.apply_team_action(action, consumer).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_subjects_and_consumers_are_valid_nats_names() {
        assert_eq!(action_subject("org_abc"), "zof.actions.org_abc");
        assert_eq!(action_subject("a.b"), "zof.actions.a_b");
        assert_eq!(actions_consumer("alice_l7"), "alice_l7_actions");
    }
}
