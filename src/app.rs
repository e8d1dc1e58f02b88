//! `Application::build(config)`: store + secrets + receiver + outbox worker, wired once. The CLI's
//! `serve` and the desktop shell both start exactly this.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use std::sync::RwLock;
use tokio::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::actions::{stored_mute, Actions};
use crate::config::{Paths, Settings};
use crate::console::{ConnectionParts, ConsoleConnection, ConsoleSetup};
use crate::domain::audit::Source;
use crate::events::CoreEvent;
use crate::intake::{Intake, IntakePolicy};
use crate::outbox::{NotificationAction, Notifier, OutboxWorker};
use crate::panel::Panel;
use crate::receiver::{self, Limits};
pub use crate::secrets::SecretSource;
use crate::secrets::{SecretManager, SecretStore, SecretUsage, SecretsHandle, SecretsStatus, SecretsWatcher};
use crate::store::{Store, StoreError};
use crate::verify::SecretSet;

/// Everything needed to start the receiver.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub paths: Paths,
    pub settings: Settings,
    pub secrets: SecretSource,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start a worker thread: {0}")]
    Thread(std::io::Error),
    #[error("a background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A built receiver, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    limits: Limits,
    worker: OutboxWorker,
    pruner: (JoinHandle<()>, tokio::sync::oneshot::Sender<()>),
    applier: (JoinHandle<()>, tokio::sync::oneshot::Sender<()>),
    watcher: Option<SecretsWatcher>,
    rebinds: mpsc::Receiver<TcpListener>,
    panel: Panel,
    console: ConsoleConnection,
    #[cfg(unix)]
    control: Option<crate::control::ControlSocket>,
}

impl Application {
    pub async fn build(config: AppConfig, notifier: Arc<dyn Notifier>) -> Result<Application, AppError> {
        let console = ConsoleSetup::for_secrets(&config.secrets);
        Application::build_with_console(config, notifier, console).await
    }

    /// [`Application::build`] with the Console connection's token source and retries named.
    pub async fn build_with_console(
        config: AppConfig,
        notifier: Arc<dyn Notifier>,
        console: ConsoleSetup,
    ) -> Result<Application, AppError> {
        let settings = config.settings.clone();
        // Bind first: a taken port fails before anything holds the store.
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| AppError::Bind { addr: settings.listen, source })?;
        let addr = listener.local_addr().map_err(|source| AppError::Bind { addr: settings.listen, source })?;
        let data_dir = config.paths.data_dir.clone();
        let (store, muted) = tokio::task::spawn_blocking(move || {
            // Read once here, off the async threads: the name actions are recorded under.
            crate::domain::audit::local_name("");
            Store::open(&data_dir).map(|store| {
                let muted = stored_mute(&store);
                (store, muted)
            })
        })
        .await??;
        let (events, _) = broadcast::channel(1024);
        let usage = Arc::new(SecretUsage::default());
        let (secrets, manager, watcher) = start_secrets(&config, usage.clone()).await?;
        // Attached last among what can fail, so a failed build leaves no notification task behind.
        notifier.set_preferences(&settings.notifications);
        notifier.mute_until(muted);
        let (actions, chosen) = mpsc::unbounded_channel();
        notifier.attach(&events, &actions);
        // A new plan's notification waits a moment for its details from the Console.
        let details = crate::details::DetailsBoard::default();
        let notifier: Arc<dyn Notifier> =
            Arc::new(crate::details::WithDetails::new(notifier, details.clone(), store.clone()));
        let worker = match OutboxWorker::start(store.clone(), notifier.clone(), events.clone()) {
            Ok(w) => w,
            Err(e) => {
                notifier.detach();
                return Err(AppError::Thread(e));
            }
        };
        let policy = IntakePolicy::from_settings(&settings);
        let intake = Intake::new(store.clone(), secrets, usage, policy, events.clone(), worker.kick(), details);
        // The team relay's consumer, a second intake source beside HTTP; its password beside the secrets.
        let relay_keychain = match &config.secrets {
            SecretSource::Store(store) => Some(store.clone()),
            SecretSource::Env(_) | SecretSource::Fixed(_) => None,
        };
        let shared_settings = Arc::new(RwLock::new(settings.clone()));
        let actions = Actions::running(
            intake.clone(),
            config.paths.clone(),
            shared_settings.clone(),
            manager.clone(),
            notifier.clone(),
            events.clone(),
        );
        let team = crate::relay::TeamParts { intake: intake.clone(), actions: actions.clone(), events: events.clone() };
        let relay =
            crate::relay::RelayController::new(team, relay_keychain, crate::relay::default_consumer_name().await);
        let limits = Limits {
            max_body_bytes: settings.max_body_bytes,
            request_timeout: Duration::from_secs(u64::from(settings.request_timeout_secs)),
            max_concurrent_requests: settings.max_concurrent_requests,
            max_connections: settings.max_connections,
        };
        let (stop_pruning, stopped) = tokio::sync::oneshot::channel();
        let pruner = (tokio::spawn(upkeep(intake.clone(), settings.retention_days, stopped)), stop_pruning);
        let (rebind, rebinds) = mpsc::channel(1);
        let settings = shared_settings;
        let console = ConsoleConnection::start(
            ConnectionParts {
                store: store.clone(),
                settings: settings.clone(),
                notifier: notifier.clone(),
                events: events.clone(),
                outbox: worker.kick(),
                actions: actions.clone(),
                details: intake.details().clone(),
            },
            console,
        );
        #[cfg(unix)]
        let data_dir = config.paths.data_dir.clone();
        let panel = Panel {
            store,
            intake,
            notifier,
            manager,
            settings,
            console: console.handle(),
            paths: config.paths,
            addr: Arc::new(RwLock::new(addr)),
            rebind,
            events,
            relay,
            actions,
        };
        // After the panel: actions asked over the socket go through it, as the panel's buttons do.
        #[cfg(unix)]
        let control = open_control_socket(&data_dir, panel.clone()).await;
        let (stop_applying, stopped) = tokio::sync::oneshot::channel();
        let applier = (tokio::spawn(apply_notification_actions(panel.clone(), chosen, stopped)), stop_applying);
        Ok(Application {
            listener,
            limits,
            worker,
            pruner,
            applier,
            watcher,
            rebinds,
            panel,
            console,
            #[cfg(unix)]
            control,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| self.panel.settings().listen)
    }

    pub fn webhook_url(&self) -> String {
        self.panel.webhook_url()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CoreEvent> {
        self.panel.subscribe()
    }

    pub fn store(&self) -> &Store {
        &self.panel.store
    }

    /// Why deliveries are refused with 503 right now, if they are.
    pub fn intake_not_ready(&self) -> Option<String> {
        self.panel.intake.not_ready()
    }

    /// Rotation and status of the secrets, when they come from a secret store.
    pub fn secret_manager(&self) -> Option<&SecretManager> {
        self.panel.manager.as_ref()
    }

    /// Also takes deliveries from the team relay (JetStream), through the same intake as HTTP,
    /// whatever the settings say (`serve --relay`: the flags win). Must be called inside the
    /// Tokio runtime; a second call is ignored.
    pub fn attach_relay(&mut self, link: crate::relay::LaptopLink) {
        self.panel.relay.start_fixed(link);
    }

    /// Follows the team relay the settings name (`relay.url`), if any; saving the settings later
    /// restarts or stops it ([`Panel::save_settings`]). When the settings cannot be used (no
    /// password in the keychain, say) the receiver runs without it and the panel says why.
    pub async fn follow_relay_settings(&self) -> Result<(), crate::relay::RelayControlError> {
        self.panel.relay.apply(&self.panel.settings().relay).await
    }

    /// Where the NATS password of the relay settings is kept, when not with the webhook secrets
    /// (`serve --secret-env` still keeps it in the OS keychain).
    pub fn set_relay_keychain(&self, store: Arc<dyn SecretStore>) {
        self.panel.relay.set_keychain(store);
    }

    /// The team relay link as the panel shows it.
    pub fn relay_view(&self) -> crate::relay::RelayView {
        self.panel.relay.view()
    }

    /// The handle the desktop shell works through.
    pub fn panel(&self) -> Panel {
        self.panel.clone()
    }

    /// Serves until `shutdown` resolves; in-flight requests finish, the outbox thread finishes
    /// its batch and the store is flushed before this returns. A new listen address from the
    /// settings moves the server without dropping the store or the queue.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), AppError> {
        let Application {
            mut listener,
            limits,
            worker,
            pruner,
            applier,
            watcher,
            mut rebinds,
            panel,
            console,
            #[cfg(unix)]
            control,
        } = self;
        let mut shutdown = Box::pin(shutdown);
        let served = loop {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let app = receiver::router(panel.intake.clone(), limits);
            let mut server = tokio::spawn(receiver::serve(listener, app, limits, async {
                let _ = stopped.await;
            }));
            tokio::select! {
                () = &mut shutdown => {
                    let _ = stop.send(());
                    break server.await;
                }
                Some(next) = rebinds.recv() => {
                    let _ = stop.send(());
                    if let Err(e) = server.await {
                        tracing::warn!(error = %e, "the previous listener stopped with an error");
                    }
                    tracing::info!(addr = ?next.local_addr().ok(), "receiver moved to a new address");
                    listener = next;
                }
                done = &mut server => break done,
            }
        };
        // Messages being judged are stored and acknowledged; the rest stay in the stream.
        panel.relay.shutdown().await;
        #[cfg(unix)]
        if let Some(control) = control {
            control.stop().await;
        }
        console.stop().await;
        // Not an abort: a prune already running on a blocking thread would keep the store open.
        let (pruning, stop_pruning) = pruner;
        let _ = stop_pruning.send(());
        let _ = pruning.await;
        // A snooze being applied finishes first: it holds the store and withdraws a notification.
        let (applying, stop_applying) = applier;
        let _ = stop_applying.send(());
        let _ = applying.await;
        let store = panel.store.clone();
        let notifier = panel.notifier.clone();
        drop(panel);
        // The last handle to the store is dropped on this blocking thread: that joins the flusher.
        tokio::task::spawn_blocking(move || {
            worker.stop();
            notifier.detach();
            if let Some(w) = watcher {
                w.stop();
            }
            store.flush_blocking()
        })
        .await??;
        Ok(served?)
    }
}

/// The socket `console reconcile`, `handle`, `snooze` and `audit` reach this receiver through;
/// without it the receiver still runs (the commands then say the store is in use). File work,
/// so off the async threads.
#[cfg(unix)]
async fn open_control_socket(dir: &std::path::Path, panel: Panel) -> Option<crate::control::ControlSocket> {
    let dir = dir.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || crate::control::ControlSocket::serve(&dir, panel)).await;
    match opened.map_err(std::io::Error::other).and_then(|r| r) {
        Ok(socket) => Some(socket),
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the control socket; the CLI cannot reach this receiver");
            None
        }
    }
}

type SecretsParts = (SecretsHandle, Option<SecretManager>, Option<SecretsWatcher>);

async fn start_secrets(config: &AppConfig, usage: Arc<SecretUsage>) -> Result<SecretsParts, AppError> {
    let fixed = |status| Ok((SecretsHandle::new(status), None, None));
    match &config.secrets {
        SecretSource::Fixed(set) => fixed(SecretsStatus::Ready(set.clone())),
        SecretSource::Env(var) => fixed(match crate::secrets::secret_from_env(var) {
            Ok(secret) => SecretsStatus::Ready(SecretSet::single(secret)),
            Err(e) => SecretsStatus::Unavailable(e.to_string()),
        }),
        SecretSource::Store(store) => {
            let manager =
                SecretManager::new(store.clone(), &config.paths.config_dir, config.settings.rotation_reminder_days);
            let handle = SecretsHandle::new(SecretsStatus::Unavailable("loading the webhook secrets".into()));
            let (m, h) = (manager.clone(), handle.clone());
            // The first load reads the keychain: a blocking call, bounded by the keychain timeout.
            let watcher = tokio::task::spawn_blocking(move || SecretsWatcher::start(m, h, usage))
                .await?
                .map_err(AppError::Thread)?;
            Ok((handle, Some(manager), Some(watcher)))
        }
    }
}

/// Applies what the user chose on a notification (a snooze) through the panel, until stopped.
async fn apply_notification_actions(
    panel: Panel,
    mut chosen: mpsc::UnboundedReceiver<NotificationAction>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    tokio::pin!(stop);
    loop {
        let action = tokio::select! {
            action = chosen.recv() => match action {
                Some(action) => action,
                None => return,
            },
            _ = &mut stop => return,
        };
        apply(&panel, action).await;
    }
}

/// What the user chose on a notification, through the same action as the panel's button (the
/// notifier itself writes nothing).
async fn apply(panel: &Panel, action: NotificationAction) {
    match action {
        NotificationAction::Snooze { plan_id, minutes } => {
            match panel.actions().snooze(&plan_id, minutes, Source::Notification).await {
                Ok(plan) => {
                    if let Some(until) = plan.snoozed_until {
                        let _ = panel.events.send(CoreEvent::Snooze { plan_id, until });
                    }
                }
                Err(crate::actions::ActionError::NotOpen(_)) => {
                    tracing::debug!(plan = %plan_id, "a handled plan is not snoozed");
                }
                Err(e) => tracing::warn!(error = %e, "could not snooze a plan"),
            }
        }
    }
}

/// Housekeeping off the request path, on one timer that sleeps while nothing happens: the
/// refusal counters are written at most once a second after a refusal was counted (and again when
/// a refusal's log line falls due), and events past the retention window are pruned at start,
/// then hourly.
async fn upkeep(intake: Intake, retention_days: u32, stop: tokio::sync::oneshot::Receiver<()>) {
    const PRUNE_EVERY: Duration = Duration::from_secs(3600);
    const PERSIST_EVERY: Duration = Duration::from_secs(1);
    let counted = intake.refusals_counted();
    let mut next_prune = Instant::now();
    let mut persist_at: Option<Instant> = None;
    let mut last_persist: Option<Instant> = None;
    tokio::pin!(stop);
    loop {
        let next = persist_at.map_or(next_prune, |at| at.min(next_prune));
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = counted.notified() => {
                let soonest = last_persist.map_or_else(Instant::now, |t| t + PERSIST_EVERY);
                persist_at = Some(persist_at.map_or(soonest, |at| at.min(soonest)));
                continue;
            }
            _ = &mut stop => break,
        }
        let now = Instant::now();
        let persist = persist_at.is_some_and(|at| at <= now);
        let prune = next_prune <= now;
        if persist {
            (persist_at, last_persist) = (None, Some(now));
        }
        if prune {
            next_prune = now + PRUNE_EVERY;
        }
        let intake = intake.clone();
        let done = tokio::task::spawn_blocking(move || {
            let again = if persist { intake.persist_refusals(Utc::now()) } else { None };
            let pruned = if prune {
                intake.store().prune(Utc::now() - chrono::Duration::days(i64::from(retention_days))).map(Some)
            } else {
                Ok(None)
            };
            (again, pruned)
        })
        .await;
        match done {
            Ok((again, pruned)) => {
                // A refusal's log line that falls due later (refusals counted meanwhile wait
                // as a permit of `counted`, and are taken on the next turn).
                if let Some(at) = again {
                    persist_at = Some(now + (at - Utc::now()).to_std().unwrap_or_default());
                }
                match pruned {
                    Ok(Some(n)) if n > 0 => tracing::info!(removed = n, "pruned events past the retention window"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning failed"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "upkeep task failed"),
        }
    }
    // The last counts are kept across a restart.
    let _ = tokio::task::spawn_blocking(move || intake.persist_refusals(Utc::now())).await;
}
