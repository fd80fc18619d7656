//! Webhooks (`[[webhooks]]`): a signed POST when a desktop is READY,
//! FAILED, warned of its reaping (IDLE_WARNING), DESTROYED or LOST, and
//! when a user's schedule could not make its desktop (SCHEDULE_REFUSED:
//! a notice about no session, kept whole in the outbox row).
//!
//! Deliveries come from the store's outbox (`store::outbox`): the store
//! writes a delivery row for each webhook that wants an event in the
//! transaction that stores the event, whichever path (pipeline, destroy,
//! recovery, reaper) and whichever server made it, so none is lost to a
//! crash. Every server runs [`deliver_due`]: it takes due rows (any
//! server's), at most [`IN_FLIGHT`] at once, holds them while it delivers
//! and deletes each once settled; a server that dies mid-delivery leaves
//! its rows to another once its hold (`store.lease`) runs out. Deliveries are retried with back-off
//! (`deliver.rs`, `retry.rs`); at least once, with the row's id as the
//! delivery id; their order per session is not kept. A warm pool's desktop
//! built for nobody sends none until a create claims it.

mod client;
mod deliver;
mod payload;

pub use payload::Scheduled;
mod retry;
mod sign;

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use daas_api::v1::{SessionEvent, SessionState, session_event::Kind};
use tokio::{
    sync::Notify,
    task::{JoinHandle, JoinSet},
};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use crate::config::webhooks::EventName;
use crate::config::webhooks::Webhook;
use crate::store::outbox::{Delivery, Told};
use crate::{config::Config, metrics::Metrics, store::Store};
use payload::Notice;

/// Deliveries under way at once on this server.
const IN_FLIGHT: usize = 32;
/// How often the outbox is looked at without a wake-up (other servers'
/// events, deliveries a dead server left).
const POLL: Duration = Duration::from_millis(500);
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
        let mut hooks = HashMap::new();
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
            hooks.insert(webhook.label.clone(), hook);
        }
        let wanted: Vec<(String, BTreeSet<EventName>)> = config
            .webhooks
            .iter()
            .map(|w| (w.label.clone(), w.events.clone()))
            .collect();
        let wake = Arc::new(Notify::new());
        store.set_outbox(Arc::new(move |event: &SessionEvent| {
            wanting(&wanted, event)
        }));
        {
            // This server's events wake the deliveries at once.
            let wake = wake.clone();
            store.tap(Arc::new(move |event: &SessionEvent| {
                if told(event).is_some() {
                    wake.notify_one();
                }
            }));
        }
        // A taken delivery stays this server's for a lease, held again every
        // third of it while it runs.
        let hold = config.store_lease;
        let worker = tokio::spawn(deliver_due(hooks, shared, wake, hold, shutdown));
        Webhooks {
            workers: vec![worker],
        }
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

/// The deliveries that tell of a scheduled create refused (no session
/// exists to tell it by): the webhooks of `webhooks` that want
/// SCHEDULE_REFUSED, and the notice, written with the schedule's run.
pub fn schedule_refused(
    webhooks: &[Webhook],
    schedule: payload::Scheduled,
    user: &str,
    template: &str,
    time_ms: i64,
    why: &str,
) -> Told {
    let wanting: Vec<String> = webhooks
        .iter()
        .filter(|w| w.events.contains(&EventName::ScheduleRefused))
        .map(|w| w.label.clone())
        .collect();
    if wanting.is_empty() {
        return Told::default();
    }
    let notice = Notice::schedule_refused(schedule, user, template, time_ms, why);
    match notice.stored() {
        Some(notice) => Told {
            webhooks: wanting,
            notice,
        },
        None => Told::default(),
    }
}

/// The kind of notice `event` makes, if webhooks are told about it (not
/// for a warm pool's desktop built for nobody).
fn told(event: &SessionEvent) -> Option<EventName> {
    let notice = Notice::of(event, None)?;
    // An IDLE_WARNING's event does not say whose desktop it is: the
    // delivery finds out.
    (notice.event == EventName::IdleWarning || !notice.user.is_empty()).then_some(notice.event)
}

/// The webhooks (of `wanted`: name and events) that want `event`.
fn wanting(wanted: &[(String, BTreeSet<EventName>)], event: &SessionEvent) -> Vec<String> {
    let Some(kind) = told(event) else {
        return Vec::new();
    };
    wanted
        .iter()
        .filter(|(_, events)| events.contains(&kind))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Takes due deliveries from the outbox and delivers them, until
/// `shutdown`; what is under way then gets [`SHUTDOWN_GRACE`], and what it
/// does not finish is delivered later (by this server after a restart, or
/// by another).
async fn deliver_due(
    hooks: HashMap<String, Arc<Hook>>,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    hold: Duration,
    shutdown: CancellationToken,
) {
    let hooks = Arc::new(hooks);
    let mut running = JoinSet::new();
    let hold_ms = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
    loop {
        let free = IN_FLIGHT.saturating_sub(running.len());
        if free > 0 {
            match shared.store.claim_deliveries(free, hold_ms).await {
                Ok(due) => {
                    for delivery in due {
                        let hooks = hooks.clone();
                        running.spawn(delivery_of(hooks, delivery, shared.clone(), hold));
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "webhooks: cannot read the outbox; trying again")
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(POLL) => {}
            () = wake.notified() => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    let grace = tokio::time::sleep(SHUTDOWN_GRACE);
    tokio::pin!(grace);
    while !running.is_empty() {
        tokio::select! {
            () = &mut grace => break,
            _ = running.join_next() => {}
        }
    }
    running.abort_all();
    while running.join_next().await.is_some() {}
}

/// Holds `id` for `hold` every third of it until dropped.
struct Holding(JoinHandle<()>);

impl Holding {
    fn start(store: Store, id: String, hold: Duration) -> Holding {
        Holding(tokio::spawn(async move {
            let hold_ms = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
            loop {
                tokio::time::sleep(hold / 3).await;
                if let Err(err) = store.hold_deliveries(vec![id.clone()], hold_ms).await {
                    tracing::warn!(delivery = %id, error = %err, "webhooks: cannot hold a delivery; another server may send it too");
                }
            }
        }))
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The notice delivery `delivery` tells, from its event in the store (and
/// for DESTROYED, the reason its DESTROYING event gave).
async fn notice_from_store(store: &Store, delivery: &Delivery) -> Option<Notice> {
    let events = match store.events_after(&delivery.session_id, 0).await {
        Ok(events) => events,
        Err(err) => {
            tracing::warn!(session = %delivery.session_id, error = %err, "webhooks: cannot read a session's events");
            return None;
        }
    };
    let at = events
        .iter()
        .position(|e| e.sequence == delivery.sequence)?;
    let reason = events[..at].iter().rev().find_map(|e| match &e.kind {
        Some(Kind::StageChange(change)) if e.state == SessionState::Destroying as i32 => {
            Some(change.message.clone())
        }
        _ => None,
    });
    Notice::of(&events[at], reason)
}

/// Delivers one outbox row and counts how it ended; the row is forgotten
/// once settled.
async fn delivery_of(
    hooks: Arc<HashMap<String, Arc<Hook>>>,
    delivery: Delivery,
    shared: Arc<Shared>,
    hold: Duration,
) {
    let store = &shared.store;
    let _holding = Holding::start(store.clone(), delivery.id.clone(), hold);
    let settle = || async {
        if let Err(err) = store.finish_delivery(&delivery.id).await {
            tracing::warn!(delivery = %delivery.id, error = %err, "webhooks: cannot forget a settled delivery; it may be sent again");
        }
    };
    let Some(hook) = hooks.get(&delivery.webhook) else {
        tracing::warn!(webhook = %delivery.webhook, session = %delivery.session_id, delivery = %delivery.id, "a delivery to a webhook this server does not have is dropped (give every server the same [[webhooks]])");
        shared
            .metrics
            .webhook_delivery(&delivery.webhook, "unknown", "dropped");
        settle().await;
        return;
    };
    let notice = match &delivery.notice {
        Some(stored) => Notice::from_stored(stored),
        None => notice_from_store(store, &delivery).await,
    };
    let Some(mut notice) = notice else {
        tracing::warn!(session = %delivery.session_id, sequence = delivery.sequence, "webhooks: the event of a delivery is gone; dropped");
        settle().await;
        return;
    };
    let webhook = &hook.webhook;
    let event = notice.event.as_str();
    if notice.user.is_empty() && !resolve(&mut notice, store).await {
        settle().await;
        return;
    }
    notice.mask(&shared.secrets);
    let result = deliver::deliver(hook, &notice, &delivery.id, &shared.metrics).await;
    match result {
        Ok(attempts) => {
            tracing::debug!(webhook = %webhook.label, event, session = %notice.session_id, delivery = %delivery.id, attempts, "webhook delivered");
            shared
                .metrics
                .webhook_delivery(&webhook.label, event, "delivered");
        }
        Err(err) => {
            tracing::warn!(webhook = %webhook.label, receiver = %webhook.target, event, session = %notice.session_id, delivery = %delivery.id, error = %err, "a webhook delivery failed");
            shared
                .metrics
                .webhook_delivery(&webhook.label, event, "failed");
        }
    }
    settle().await;
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
