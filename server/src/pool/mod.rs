//! Warm pools: desktops of a template built ahead of time, up to each
//! pool's desired size, so a create claims one and runs only the per-user
//! part. A reconcile loop (one per server) builds through the same
//! pipeline as any create, with the pool's desktops taking provisioning
//! permits only when no user waits; it destroys surplus and expired
//! desktops first, grows at most `max_building` at a time, and stops
//! growing a pool whose builds keep failing ([`restraint`]). A claimed
//! desktop is never returned: its session ends like any other and the
//! pool builds a new one. Everything it decides on is in the store, so a
//! restarted server carries on where the last one stopped.

pub mod restraint;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use daas_api::v1::{OutputLine, OutputStream, SessionState, Tool};
use tokio::sync::Notify;

use crate::audit::{Act, Actor};
use crate::config::{pools::Pool, schedule};
use crate::{
    config::Config,
    domain::password::PasswordHash,
    domain::time::{clock_time, duration, ms, now_ms, timestamp},
    provision::Pipeline,
    store::{NewSession, SessionLimits, SessionRecord, Store, StoreError},
};

/// How often the loop looks at every pool, besides being woken by a claim.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// The warm pools of this server: claims, the reconcile loop, status.
#[derive(Clone)]
pub struct Pools {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    store: Store,
    pipeline: Pipeline,
    wake: Notify,
    /// The end of the restraint last announced, per pool: said once.
    announced: Mutex<HashMap<String, i64>>,
    /// Desktops being destroyed by the loop (not asked twice).
    retiring: Mutex<HashSet<String>>,
    /// Pools that found the server full at their last try: said once.
    full: Mutex<HashSet<String>>,
}

/// A pool's desktops, as the store holds them now.
struct Snapshot {
    /// Unclaimed and READY, the longest waiting first.
    ready: Vec<SessionRecord>,
    /// Unclaimed and READY, of a template the pool no longer has: no
    /// create of its template would claim them.
    stale: Vec<SessionRecord>,
    /// Unclaimed and being built, oldest first.
    building: Vec<SessionRecord>,
    /// Failed builds since the window that counts for the restraint,
    /// oldest first.
    failures: Vec<FailedBuild>,
    claimed_today: usize,
}

/// A build of the pool that failed.
struct FailedBuild {
    at_ms: i64,
    reason: String,
    /// Its session, whose events say when the pool is restrained.
    session: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pools {
    pub fn new(config: Arc<Config>, store: Store, pipeline: Pipeline) -> Self {
        Pools {
            inner: Arc::new(Inner {
                config,
                store,
                pipeline,
                wake: Notify::new(),
                announced: Mutex::new(HashMap::new()),
                retiring: Mutex::new(HashSet::new()),
                full: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// The configured pool named `name`.
    pub fn get(&self, name: &str) -> Option<&Pool> {
        self.inner.config.pools.get(name)
    }

    /// Every configured pool, by name.
    pub fn all(&self) -> impl Iterator<Item = &Pool> {
        self.inner.config.pools.values()
    }

    /// Claims a ready desktop of a pool of `new.template` for `new`, if one
    /// is ready; the caller starts its per-user stage.
    pub async fn claim(
        &self,
        new: &NewSession,
        limits: SessionLimits,
    ) -> Result<Option<SessionRecord>, StoreError> {
        for pool in self.all().filter(|p| p.template == new.template) {
            if let Some((record, _)) = self
                .inner
                .store
                .claim(new.clone(), &pool.name, limits)
                .await?
            {
                tracing::info!(session = %record.id, pool = %pool.name, vm = %record.vm_name, user = %record.username, "claimed a warm desktop");
                self.inner.wake.notify_one();
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    /// Runs the reconcile loop until the server stops.
    pub async fn run(self) {
        if let Err(err) = self.retire_unconfigured().await {
            tracing::error!(error = %err, "cannot look for desktops of pools no longer configured");
        }
        if self.inner.config.pools.is_empty() {
            return;
        }
        let shutdown = self.inner.pipeline.shutdown_token();
        loop {
            self.reconcile_all().await;
            tokio::select! {
                _ = tokio::time::sleep(RECONCILE_EVERY) => {}
                _ = self.inner.wake.notified() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One pass over every pool.
    pub async fn reconcile_all(&self) {
        for pool in self.all() {
            if let Err(err) = self.reconcile(pool).await {
                tracing::error!(pool = %pool.name, error = %err, "cannot reconcile a warm pool");
            }
        }
    }

    async fn snapshot(&self, pool: &Pool, now: i64) -> Result<Snapshot, StoreError> {
        let midnight = schedule::midnight_ms(&pool.timezone).unwrap_or(now - 86_400_000);
        let rule = &pool.restraint;
        let since = midnight.min(now - ms(rule.window).saturating_add(ms(rule.backoff)));
        let rows = self.inner.store.pool_sessions(&pool.name, since).await?;
        let mut snap = Snapshot {
            ready: Vec::new(),
            stale: Vec::new(),
            building: Vec::new(),
            failures: Vec::new(),
            claimed_today: rows
                .iter()
                .filter(|r| r.claimed_ms.is_some_and(|c| c >= midnight))
                .count(),
        };
        for row in rows.into_iter().filter(SessionRecord::is_unclaimed) {
            match row.state {
                SessionState::Ready if row.template != pool.template => snap.stale.push(row),
                SessionState::Ready => snap.ready.push(row),
                s if s.is_in_progress() && s != SessionState::Destroying => snap.building.push(row),
                SessionState::Failed if row.updated_ms >= since => {
                    let reason = row.failure.map(|(_, r)| r).unwrap_or_default();
                    // A restart is not the build's fault.
                    if !reason.starts_with(crate::provision::RESTARTED) {
                        snap.failures.push(FailedBuild {
                            at_ms: row.updated_ms,
                            reason,
                            session: row.id,
                        });
                    }
                }
                _ => {}
            }
        }
        snap.ready.sort_by_key(|r| r.ready_ms);
        snap.failures.sort_by_key(|f| f.at_ms);
        Ok(snap)
    }

    fn restrained_until(pool: &Pool, snap: &Snapshot, now: i64) -> Option<i64> {
        let times: Vec<i64> = snap.failures.iter().map(|f| f.at_ms).collect();
        restraint::restrained_until(&pool.restraint, &times, now)
    }

    /// Destroys expired and surplus desktops, then builds toward the
    /// desired size, unless the pool is restrained.
    async fn reconcile(&self, pool: &Pool) -> Result<(), StoreError> {
        let now = now_ms();
        let snap = self.snapshot(pool, now).await?;
        for record in &snap.stale {
            let reason = format!(
                "pool '{}' now builds template {}, not {}",
                pool.name, pool.template, record.template
            );
            self.retire(record, reason, None);
        }
        let max_age = ms(pool.max_age);
        let (expired, fresh): (Vec<_>, Vec<_>) = snap
            .ready
            .iter()
            .partition(|r| now - r.ready_ms.unwrap_or(r.created_ms) >= max_age);
        for record in expired {
            let reason = format!(
                "pool '{}': unclaimed for longer than max_age {}; replacing it",
                pool.name,
                humantime::format_duration(pool.max_age)
            );
            self.retire(record, reason, Some("pool_max_age"));
        }
        let desired = pool.desired_now() as usize;
        let have = fresh.len() + snap.building.len();
        if have > desired {
            // Builds not done are the cheapest to drop; then the oldest.
            let surplus = snap.building.iter().rev().chain(fresh.iter().copied());
            for record in surplus.take(have - desired) {
                let reason = format!(
                    "pool '{}' wants {desired} desktops now; destroying one of {have}",
                    pool.name
                );
                self.retire(record, reason, None);
            }
            return Ok(());
        }
        let need = desired - have;
        if need == 0 {
            return Ok(());
        }
        if let Some(until) = Self::restrained_until(pool, &snap, now) {
            self.announce_restraint(pool, &snap, until).await;
            return Ok(());
        }
        let room = (pool.max_building as usize).saturating_sub(snap.building.len());
        for _ in 0..need.min(room) {
            let new = NewSession {
                template: pool.template.clone(),
                pool: Some(pool.name.clone()),
                ..NewSession::default()
            };
            let limits = SessionLimits {
                max_sessions: self.inner.config.limits.max_sessions,
                max_per_user: usize::MAX,
            };
            match self.inner.store.create_session(new, limits).await {
                Ok((record, _)) => {
                    lock(&self.inner.full).remove(&pool.name);
                    tracing::info!(pool = %pool.name, session = %record.id, vm = %record.vm_name, "building a warm desktop");
                    self.inner.pipeline.start(record, PasswordHash::none());
                }
                Err(StoreError::LimitReached(hit)) => {
                    if lock(&self.inner.full).insert(pool.name.clone()) {
                        let why = StoreError::LimitReached(hit).to_string();
                        tracing::warn!(pool = %pool.name, %why, "a warm pool cannot grow");
                    }
                    break;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Says once, in the log and in the last failed desktop's events, that
    /// the pool stops growing until `until`.
    async fn announce_restraint(&self, pool: &Pool, snap: &Snapshot, until: i64) {
        if lock(&self.inner.announced).insert(pool.name.clone(), until) == Some(until) {
            return;
        }
        let Some(last) = snap.failures.last() else {
            return;
        };
        let line = format!(
            "pool '{}' builds nothing until {}: {} builds failed within {} (last: {})",
            pool.name,
            clock_time(until),
            snap.failures.len(),
            humantime::format_duration(pool.restraint.window),
            last.reason
        );
        tracing::warn!(pool = %pool.name, until = %clock_time(until), "{line}");
        // In the events of the build that failed last.
        let output = OutputLine {
            tool: Tool::Unspecified as i32,
            stream: OutputStream::Stderr as i32,
            text: line,
        };
        if let Err(err) = self.inner.store.output(&last.session, output).await {
            tracing::warn!(error = %err, "cannot record a pool's restraint");
        }
    }

    /// Destroys an unclaimed desktop in the background, unless a claim
    /// takes it first.
    /// Destroys a warm desktop unless a create claims it first; `reap`
    /// names the rule in `daas_reaps_total` when it is one.
    fn retire(&self, record: &SessionRecord, reason: String, reap: Option<&'static str>) {
        if !lock(&self.inner.retiring).insert(record.id.clone()) {
            return;
        }
        let this = self.clone();
        let id = record.id.clone();
        let owner = record.username.clone();
        tokio::spawn(async move {
            match this
                .inner
                .pipeline
                .destroy_unclaimed(&id, reason.clone())
                .await
            {
                Ok(true) => {
                    tracing::info!(session = %id, %reason, "destroyed a warm desktop");
                    if let Some(rule) = reap {
                        let pipeline = &this.inner.pipeline;
                        pipeline.metrics().reap(rule);
                        let act = Act::new("reap").session(&id, &owner).detail(reason);
                        pipeline.audit().record(&Actor::internal("pool"), act).await;
                    }
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(session = %id, error = %err, "cannot destroy a warm desktop")
                }
            }
            lock(&this.inner.retiring).remove(&id);
        });
    }

    /// Destroys ready desktops of pools this config no longer has.
    async fn retire_unconfigured(&self) -> Result<(), StoreError> {
        let ready = self
            .inner
            .store
            .list(None, Some(SessionState::Ready))
            .await?;
        for record in ready.iter().filter(|r| r.is_unclaimed()) {
            let Some(name) = &record.pool else { continue };
            if self.get(name).is_none() {
                self.retire(
                    record,
                    format!("pool '{name}' is no longer configured"),
                    None,
                );
            }
        }
        Ok(())
    }

    /// Where pool `pool` stands.
    pub async fn status(&self, pool: &Pool) -> Result<daas_api::v1::Pool, StoreError> {
        let now = now_ms();
        let snap = self.snapshot(pool, now).await?;
        let window = ms(pool.restraint.window);
        let recent: Vec<_> = snap
            .failures
            .iter()
            .filter(|f| now - f.at_ms < window)
            .collect();
        Ok(daas_api::v1::Pool {
            name: pool.name.clone(),
            template: pool.template.clone(),
            desired: pool.desired_now(),
            ready: u32::try_from(snap.ready.len()).unwrap_or(u32::MAX),
            provisioning: u32::try_from(snap.building.len()).unwrap_or(u32::MAX),
            claimed_today: u32::try_from(snap.claimed_today).unwrap_or(u32::MAX),
            failures: u32::try_from(recent.len()).unwrap_or(u32::MAX),
            restrained_until: Self::restrained_until(pool, &snap, now).map(timestamp),
            last_failure: recent.last().map(|f| f.reason.clone()).unwrap_or_default(),
            oldest_ready_age: snap
                .ready
                .first()
                .map(|r| duration(now - r.ready_ms.unwrap_or(r.created_ms))),
            max_age: Some(duration(ms(pool.max_age))),
        })
    }
}
