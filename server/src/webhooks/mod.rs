//! Webhooks (`[[webhooks]]`): a signed POST when a desktop is READY,
//! FAILED, warned of its reaping (IDLE_WARNING) or DESTROYED.
//!
//! The events come from a tap on the store ([`crate::store::events::Tap`]):
//! every stored event of every session passes through it, whichever path
//! (pipeline, destroy, recovery, reaper) made it, so none is missed. The
//! tap never waits: it hands each notice to the bounded queue of every
//! webhook that wants it, and a full queue drops the notice and counts it
//! (`dropped`), so a webhook can never hold up the pipeline. Each webhook
//! has its own worker and at most [`IN_FLIGHT`] deliveries at once, so a
//! slow receiver delays nobody else. Deliveries are retried with back-off
//! (`deliver.rs`, `retry.rs`); their order per session is not kept. A
//! warm pool's desktop built for nobody sends none until a create claims it.

mod client;
mod deliver;
mod payload;
mod retry;
mod sign;

use std::{collections::HashMap, sync::Arc, sync::Mutex, time::Duration};

use daas_api::v1::{SessionEvent, SessionState, session_event::Kind};
use tokio::{
    sync::mpsc::{self, error::TrySendError},
    task::{JoinHandle, JoinSet},
};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use crate::config::webhooks::Webhook;
use crate::{config::Config, metrics::Metrics, store::Store};
use payload::Notice;

/// Notices one webhook may have waiting; more are dropped (and counted).
const QUEUE: usize = 1024;
/// Deliveries of one webhook under way at once.
const IN_FLIGHT: usize = 4;
/// How long deliveries under way get to finish once the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A webhook with what its deliveries need.
pub(crate) struct Hook {
    webhook: Webhook,
    /// For https; the error says why HTTPS cannot be used.
    tls: Result<TlsConnector, String>,
}

/// What every delivery shares.
struct Shared {
    store: Store,
    metrics: Arc<Metrics>,
    /// The config's secrets, masked in the texts sent.
    secrets: Vec<String>,
}

/// The running webhooks: one worker each.
pub struct Webhooks {
    workers: Vec<JoinHandle<()>>,
}

impl Webhooks {
    /// Taps the store and starts a worker per configured webhook; they
    /// stop when `shutdown` fires, after [`SHUTDOWN_GRACE`].
    pub fn start(
        config: &Config,
        store: &Store,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Webhooks {
        if config.webhooks.is_empty() {
            return Webhooks {
                workers: Vec::new(),
            };
        }
        let system_roots = if config.webhooks.iter().any(|w| w.target.https) {
            system_roots()
        } else {
            Vec::new()
        };
        let shared = Arc::new(Shared {
            store: store.clone(),
            metrics: metrics.clone(),
            secrets: config.secrets.values(),
        });
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for webhook in &config.webhooks {
            let tls = tls_of(webhook, &system_roots);
            tracing::info!(
                webhook = %webhook.label,
                receiver = %webhook.target,
                events = ?webhook.events,
                format = ?webhook.format,
                signed = webhook.secret.is_some(),
                "webhook"
            );
            let hook = Arc::new(Hook {
                webhook: webhook.clone(),
                tls,
            });
            let (tx, rx) = mpsc::channel(QUEUE);
            queues.push((hook.clone(), tx));
            workers.push(tokio::spawn(work(
                hook,
                rx,
                shared.clone(),
                shutdown.clone(),
            )));
        }
        store.tap(tap(queues, metrics));
        Webhooks { workers }
    }

    /// Waits for the workers, which end after the server's shutdown.
    pub async fn stopped(self) {
        for worker in self.workers {
            let _ = worker.await;
        }
    }
}

/// The system's CA certificates (the `ca-certificates` bundle on Debian).
fn system_roots() -> Vec<rustls::pki_types::CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for err in &found.errors {
        tracing::warn!(error = %err, "webhooks: cannot read some system CA certificates");
    }
    found.certs
}

fn tls_of(
    webhook: &Webhook,
    system: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<TlsConnector, String> {
    if !webhook.target.https {
        return Err("an http webhook".into());
    }
    let extra = webhook.ca_file.as_ref().map(|ca| ca.certs.as_slice());
    let tls = client::tls_connector(system, extra.unwrap_or_default());
    if let Err(why) = &tls {
        tracing::error!(webhook = %webhook.label, receiver = %webhook.target, %why, "a webhook cannot use HTTPS: its deliveries will fail");
    }
    tls
}

/// The store's tap: picks the events webhooks are told about and queues
/// them without waiting. It remembers each destroy's reason (in the
/// DESTROYING event) for the DESTROYED that follows.
fn tap(
    queues: Vec<(Arc<Hook>, mpsc::Sender<Notice>)>,
    metrics: Arc<Metrics>,
) -> crate::store::events::Tap {
    let destroying: Mutex<HashMap<String, String>> = Mutex::default();
    Arc::new(move |event: &SessionEvent| {
        let Some(notice) = notice_of(event, &destroying) else {
            return;
        };
        for (hook, queue) in &queues {
            if !hook.webhook.events.contains(&notice.event) {
                continue;
            }
            if let Err(err) = queue.try_send(notice.clone()) {
                let why = match err {
                    TrySendError::Full(_) => "its queue is full",
                    TrySendError::Closed(_) => "the server is stopping",
                };
                tracing::warn!(webhook = %hook.webhook.label, event = notice.event.as_str(), session = %notice.session_id, "a webhook notice is dropped: {why}");
                metrics.webhook_delivery(&hook.webhook.label, notice.event.as_str(), "dropped");
            }
        }
    })
}

/// The notice of `event`, if webhooks are told about it.
fn notice_of(event: &SessionEvent, destroying: &Mutex<HashMap<String, String>>) -> Option<Notice> {
    let Some(Kind::StageChange(change)) = &event.kind else {
        return Notice::of(event, None);
    };
    let mut reasons = destroying
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let state = SessionState::try_from(event.state).unwrap_or(SessionState::Unspecified);
    match state {
        SessionState::Destroying => {
            reasons.insert(event.session_id.clone(), change.message.clone());
            None
        }
        SessionState::Destroyed | SessionState::Failed => {
            let reason = reasons.remove(&event.session_id);
            Notice::of(event, reason).filter(is_for_someone)
        }
        _ => Notice::of(event, None).filter(is_for_someone),
    }
}

/// A warm pool's desktop nobody has claimed is built for no one.
fn is_for_someone(notice: &Notice) -> bool {
    !notice.user.is_empty()
}

/// One webhook's worker: takes notices off its queue, at most
/// [`IN_FLIGHT`] delivered at once. Once `shutdown` fires, what is under
/// way and queued gets [`SHUTDOWN_GRACE`]; the rest is dropped (counted).
async fn work(
    hook: Arc<Hook>,
    mut queue: mpsc::Receiver<Notice>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut running = JoinSet::new();
    let grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace);
    let (mut stopping, mut drained) = (false, false);
    loop {
        tokio::select! {
            () = shutdown.cancelled(), if !stopping => {
                stopping = true;
                queue.close();
                grace.as_mut().reset(tokio::time::Instant::now() + SHUTDOWN_GRACE);
            }
            () = &mut grace, if stopping => break,
            Some(_) = running.join_next(), if !running.is_empty() => {}
            notice = queue.recv(), if !drained && running.len() < IN_FLIGHT => match notice {
                Some(notice) => {
                    running.spawn(delivery(hook.clone(), notice, shared.clone()));
                }
                None => drained = true,
            },
        }
        if drained && running.is_empty() {
            break;
        }
    }
    // What the grace did not see through: each aborted delivery counts
    // itself as dropped (its guard), and so does each notice still queued.
    running.abort_all();
    while running.join_next().await.is_some() {}
    while let Ok(notice) = queue.try_recv() {
        shared
            .metrics
            .webhook_delivery(&hook.webhook.label, notice.event.as_str(), "dropped");
    }
}

/// Counts a delivery as dropped unless it settled (the task was aborted
/// at shutdown).
struct Unsettled<'a> {
    metrics: &'a Metrics,
    label: &'a str,
    event: &'static str,
    settled: bool,
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.metrics
                .webhook_delivery(self.label, self.event, "dropped");
        }
    }
}

/// Delivers one notice and counts how it ended.
async fn delivery(hook: Arc<Hook>, mut notice: Notice, shared: Arc<Shared>) {
    let webhook = &hook.webhook;
    let event = notice.event.as_str();
    let mut guard = Unsettled {
        metrics: &shared.metrics,
        label: &webhook.label,
        event,
        settled: false,
    };
    if notice.user.is_empty() && !resolve(&mut notice, &shared.store).await {
        guard.settled = true;
        return;
    }
    notice.mask(&shared.secrets);
    let id = uuid::Uuid::new_v4().to_string();
    let result = deliver::deliver(&hook, &notice, &id, &shared.metrics).await;
    guard.settled = true;
    match result {
        Ok(attempts) => {
            tracing::debug!(webhook = %webhook.label, event, session = %notice.session_id, delivery = %id, attempts, "webhook delivered");
            shared
                .metrics
                .webhook_delivery(&webhook.label, event, "delivered");
        }
        Err(err) => {
            tracing::warn!(webhook = %webhook.label, receiver = %webhook.target, event, session = %notice.session_id, delivery = %id, error = %err, "a webhook delivery failed");
            shared
                .metrics
                .webhook_delivery(&webhook.label, event, "failed");
        }
    }
}

/// Fills in the user and template an IDLE_WARNING's event lacks; false
/// when there is no one to tell (a warm pool's unclaimed desktop).
async fn resolve(notice: &mut Notice, store: &Store) -> bool {
    match store.get(&notice.session_id).await {
        Ok(Some(record)) => {
            notice.user = record.username.clone();
            notice.template = record.template.clone();
            !record.is_unclaimed() && !record.username.is_empty()
        }
        Ok(None) => false,
        Err(err) => {
            tracing::warn!(session = %notice.session_id, error = %err, "a webhook cannot read its session; sending without the user");
            true
        }
    }
}
