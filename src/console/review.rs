//! The Console as review and decide need it ([`ConsoleReviews`]): who the token belongs to, a
//! plan's details, one decision. And the task that fetches a stored plan's details once, off the
//! request path, with the connection's timeouts and retries.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::{ConsoleClient, ConsoleError, ConsoleHandle};
use crate::actions::{Actions, ConsoleReviews, ReviewError};
use crate::config::Settings;
use crate::details::DetailsBoard;
use crate::domain::review::{DecisionAnswer, DecisionRequest, Person, PlanDetails};

/// Details fetched at once, at most.
const FETCHING: usize = 16;

/// Review and decide over the running connection's settings and token, or over one client
/// (the CLI with no receiver running).
#[derive(Debug, Clone)]
pub struct Reviews {
    client: ClientSource,
    decision_timeout: Duration,
    /// The connection's client, kept while the API URL stays (its connections are reused, and
    /// the token is not read from the keychain for each request); dropped when the token is refused.
    cached: Arc<std::sync::Mutex<Option<ConsoleClient>>>,
}

#[derive(Debug, Clone)]
enum ClientSource {
    Connection { handle: ConsoleHandle, settings: Arc<RwLock<Settings>> },
    Fixed(ConsoleClient),
}

impl Reviews {
    pub fn new(handle: ConsoleHandle, settings: Arc<RwLock<Settings>>, decision_timeout: Duration) -> Reviews {
        Reviews { client: ClientSource::Connection { handle, settings }, decision_timeout, cached: Arc::default() }
    }

    /// Over one client, made with the settings' URL and a token (the CLI's own).
    pub fn with_client(client: ConsoleClient) -> Reviews {
        Reviews {
            client: ClientSource::Fixed(client),
            decision_timeout: super::REQUEST_TIMEOUT,
            cached: Arc::default(),
        }
    }

    async fn client(&self) -> Result<ConsoleClient, ReviewError> {
        let client = match &self.client {
            ClientSource::Connection { handle, settings } => {
                let settings = settings.read().unwrap_or_else(PoisonError::into_inner).clone();
                let url = settings.console_api_url.trim().trim_end_matches('/').to_owned();
                let kept = self.cached.lock().unwrap_or_else(PoisonError::into_inner).clone();
                match kept.filter(|c| c.api_url() == url && !url.is_empty()) {
                    Some(client) => client,
                    None => {
                        let client = handle.client(&settings).await.map_err(review_error)?;
                        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) = Some(client.clone());
                        client
                    }
                }
            }
            ClientSource::Fixed(client) => client.clone(),
        };
        Ok(client.with_decision_timeout(self.decision_timeout))
    }

    /// The Console's answer, with the kept client dropped when it refused the token.
    fn answer<T>(&self, result: Result<T, ConsoleError>) -> Result<T, ReviewError> {
        if matches!(result, Err(ConsoleError::TokenRejected(_))) {
            self.cached.lock().unwrap_or_else(PoisonError::into_inner).take();
        }
        result.map_err(review_error)
    }
}

impl ConsoleReviews for Reviews {
    fn me(&self) -> BoxFuture<'_, Result<Person, ReviewError>> {
        Box::pin(async move { self.answer(self.client().await?.me().await) })
    }

    fn details(&self, plan_id: String) -> BoxFuture<'_, Result<Option<PlanDetails>, ReviewError>> {
        Box::pin(async move { self.answer(self.client().await?.plan_details(&plan_id).await) })
    }

    fn decide(&self, plan_id: String, request: DecisionRequest) -> BoxFuture<'_, Result<DecisionAnswer, ReviewError>> {
        Box::pin(async move { self.answer(self.client().await?.decide(&plan_id, &request).await) })
    }
}

fn review_error(e: ConsoleError) -> ReviewError {
    match e {
        ConsoleError::Unreachable(why) => ReviewError::NoAnswer(why),
        ConsoleError::NotConfigured
        | ConsoleError::NoToken
        | ConsoleError::Token(_)
        | ConsoleError::Keychain(_)
        | ConsoleError::BadToken
        | ConsoleError::BadUrl(_) => ReviewError::NotConnected(e.to_string()),
        other => ReviewError::Refused(other.to_string()),
    }
}

/// Fetches the details of each plan the board asks for, until the board disconnects: kept
/// with the plan through the actions' owner, then the board hears they are in (or will not come).
/// At most [`FETCHING`] at once; fetches still waiting on a Console that hangs are dropped when
/// the connection stops, so they never hold the store open.
pub(super) async fn fetch_details(
    reviews: Reviews,
    actions: Actions,
    board: DetailsBoard,
    mut requests: mpsc::UnboundedReceiver<String>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(FETCHING));
    let mut fetches = tokio::task::JoinSet::new();
    loop {
        let plan_id = tokio::select! {
            next = requests.recv() => match next {
                Some(plan_id) => plan_id,
                None => break,
            },
            Some(_) = fetches.join_next(), if !fetches.is_empty() => continue,
        };
        let (reviews, actions, board, permits) = (reviews.clone(), actions.clone(), board.clone(), permits.clone());
        fetches.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else { return };
            match reviews.details(plan_id.clone()).await {
                Ok(Some(details)) => {
                    if let Err(e) = actions.keep_details(details).await {
                        tracing::warn!(plan = %plan_id, error = %e, "a plan's details could not be kept");
                    }
                }
                Ok(None) => tracing::debug!(plan = %plan_id, "the Console does not know this plan yet"),
                Err(e) => tracing::debug!(plan = %plan_id, error = %e, "a plan's details could not be fetched"),
            }
            board.done(&plan_id);
        });
    }
    fetches.shutdown().await;
}
