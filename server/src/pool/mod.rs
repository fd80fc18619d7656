//! Warm pools: desktops of a template built ahead of time, up to each
//! pool's desired size, so a create claims one and runs only the per-user
//! part. A reconcile loop (on every server, each pool's pass run by one
//! server at a time: `store::pass`) builds through the same
//! pipeline as any create, with the pool's desktops taking provisioning
//! permits only when no user waits; it destroys surplus and expired
//! desktops first, grows at most `max_building` at a time, and stops
//! growing a pool whose builds keep failing ([`restraint`]). A claimed
//! desktop is never returned: its session ends like any other and the
//! pool builds a new one. Everything it decides on is in the store, so a
//! restarted server carries on where the last one stopped. Here the loop
//! reads each pool's snapshot and acts; what to do is decided by
//! `decide.rs`, a pure function of the snapshot and the time, read from
//! the [`Clock`] the pools are given.

pub mod decide;
pub mod restraint;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use daas_api::v1::{OutputLine, OutputStream, SessionState, Tool};
use tokio::sync::Notify;

use crate::audit::{Act, Actor};
use crate::config::pools::Pool;
use crate::{
    config::Config,
    domain::password::PasswordHash,
    domain::time::{Clock, clock_time, duration, ms, timestamp},
    pool::decide::{Desktop, FailedBuild, Snapshot, decide, restrained_until},
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
    /// Where the loop and the status read the time.
    clock: Clock,
    wake: Notify,
    /// The end of the restraint last announced, per pool: said once.
    announced: Mutex<HashMap<String, i64>>,
    /// Desktops being destroyed by the loop (not asked twice).
    retiring: Mutex<HashSet<String>>,
    /// Pools that found the server full at their last try: said once.
    full: Mutex<HashSet<String>>,
}

/// A store's record as the decision sees it.
fn desktop(record: SessionRecord) -> Desktop {
    Desktop {
        since_ms: record.ready_ms.unwrap_or(record.created_ms),
        id: record.id,
        owner: record.username,
        template: record.template,
        node: record.node.unwrap_or_default(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pools {
    /// The pools of `config`, reading the time from the system's clock.
    pub fn new(config: Arc<Config>, store: Store, pipeline: Pipeline) -> Self {
        Self::with_clock(config, store, pipeline, Clock::System)
    }

    /// The pools of `config`, reading the time from `clock` (a manual one
    /// in tests).
    pub fn with_clock(config: Arc<Config>, store: Store, pipeline: Pipeline, clock: Clock) -> Self {
        Pools {
            inner: Arc::new(Inner {
                config,
                store,
                pipeline,
                clock,
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
        // Its desktops are the template's default size: no other size
        // claims one.
        let size = self.inner.pipeline.default_size(&new.template);
        if new.size.as_ref().is_some_and(|s| s.name != size.name) {
            return Ok(None);
        }
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

    /// Pool `pool`'s desktops in the store at `now`.
    async fn snapshot(&self, pool: &Pool, now: i64) -> Result<Snapshot, StoreError> {
        let midnight = pool.midnight_before(now).unwrap_or(now - 86_400_000);
        let rule = &pool.restraint;
        let since = midnight.min(now - ms(rule.window).saturating_add(ms(rule.backoff)));
        let rows = self.inner.store.pool_sessions(&pool.name, since).await?;
        let drained: Vec<String> = self
            .inner
            .store
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.drained)
            .map(|n| n.listed.node)
            .collect();
        let on_drained =
            |row: &SessionRecord| row.node.as_ref().is_some_and(|n| drained.contains(n));
        let mut snap = Snapshot {
            claimed_today: rows
                .iter()
                .filter(|r| r.claimed_ms.is_some_and(|c| c >= midnight))
                .count(),
            ..Snapshot::default()
        };
        let mut ready = Vec::new();
        for row in rows.into_iter().filter(SessionRecord::is_unclaimed) {
            match row.state {
                SessionState::Ready if row.template != pool.template => {
                    snap.stale.push(desktop(row))
                }
                SessionState::Ready if on_drained(&row) => snap.drained.push(desktop(row)),
                SessionState::Ready => ready.push(row),
                s if s.is_in_progress() && s != SessionState::Destroying => {
                    snap.building.push(desktop(row))
                }
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
        ready.sort_by_key(|r| r.ready_ms);
        snap.ready = ready.into_iter().map(desktop).collect();
        snap.failures.sort_by_key(|f| f.at_ms);
        Ok(snap)
    }

    /// Carries out what [`decide`] says for the pool now: destroys stale,
    /// expired and surplus desktops, says once that a restrained pool
    /// builds nothing, or builds toward the desired size.
    async fn reconcile(&self, pool: &Pool) -> Result<(), StoreError> {
        // One server at a time per pool: what it builds is in the store
        // before the next one looks.
        let Some(_pass) = self
            .inner
            .store
            .try_pass(&format!("pool {}", pool.name))
            .await?
        else {
            return Ok(());
        };
        let now = self.inner.clock.now_ms();
        let snap = self.snapshot(pool, now).await?;
        let actions = decide(pool, &snap, now);
        for retire in actions.retire {
            let rule = retire.why.reap_rule();
            self.retire(&retire.id, &retire.owner, retire.reason, rule);
        }
        if let Some(until) = actions.restrained_until {
            self.announce_restraint(pool, &snap, until).await;
        }
        let size = self.inner.pipeline.default_size(&pool.template);
        for _ in 0..actions.build {
            let new = NewSession {
                template: pool.template.clone(),
                pool: Some(pool.name.clone()),
                placing: self.inner.pipeline.placing(),
                size: Some(size.clone()),
                ..NewSession::default()
            };
            let limits = SessionLimits {
                max_sessions: self.inner.config.limits.max_sessions,
                max_per_user: usize::MAX,
                org: None,
            };
            match self.inner.store.create_session(new, limits).await {
                Ok((record, _)) => {
                    lock(&self.inner.full).remove(&pool.name);
                    tracing::info!(pool = %pool.name, session = %record.id, vm = %record.vm_name, "building a warm desktop");
                    self.inner.pipeline.start(record, PasswordHash::none());
                }
                Err(err @ (StoreError::LimitReached(_) | StoreError::NoRoom(_))) => {
                    if lock(&self.inner.full).insert(pool.name.clone()) {
                        let why = err.to_string();
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

    /// Destroys a warm desktop in the background unless a create claims it
    /// first; `reap`
    /// names the rule in `daas_reaps_total` when it is one.
    fn retire(&self, id: &str, owner: &str, reason: String, reap: Option<&'static str>) {
        if !lock(&self.inner.retiring).insert(id.to_string()) {
            return;
        }
        let this = self.clone();
        let id = id.to_string();
        let owner = owner.to_string();
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
                    &record.id,
                    &record.username,
                    format!("pool '{name}' is no longer configured"),
                    None,
                );
            }
        }
        Ok(())
    }

    /// Where pool `pool` stands.
    pub async fn status(&self, pool: &Pool) -> Result<daas_api::v1::Pool, StoreError> {
        let now = self.inner.clock.now_ms();
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
            desired: pool.desired_at(now),
            ready: u32::try_from(snap.ready.len()).unwrap_or(u32::MAX),
            provisioning: u32::try_from(snap.building.len()).unwrap_or(u32::MAX),
            claimed_today: u32::try_from(snap.claimed_today).unwrap_or(u32::MAX),
            failures: u32::try_from(recent.len()).unwrap_or(u32::MAX),
            restrained_until: restrained_until(pool, &snap, now).map(timestamp),
            last_failure: recent.last().map(|f| f.reason.clone()).unwrap_or_default(),
            oldest_ready_age: snap.ready.first().map(|d| duration(now - d.since_ms)),
            max_age: Some(duration(ms(pool.max_age))),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{audit::Audit, domain::time::ManualClock, metrics::Metrics};

    const HOUR: i64 = 3_600_000;
    /// 2024-01-01 00:00 UTC, a Monday.
    const MONDAY: i64 = 1_704_067_200_000;

    const CONFIG: &str = r#"
        data_dir = "data"
        [terraform]
        module_dir = "modules/test"
        [ansible]
        playbook = "play.yml"
        [tls]
        plaintext = true
        [pools.lab]
        size = 1
        timezone = "UTC"
        [[pools.lab.schedule]]
        days = "mon-fri"
        from = "08:00"
        to = "09:00"
        size = 5
    "#;

    #[tokio::test]
    async fn the_pools_read_the_time_from_their_clock() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir_all(dir.path().join("modules/test")).expect("module dir");
        std::fs::write(dir.path().join("play.yml"), "---\n").expect("playbook");
        let file = dir.path().join("daas.toml");
        std::fs::write(&file, CONFIG).expect("config");
        let config = Arc::new(Config::load(Some(&file)).expect("a valid config"));
        let store = Store::open(&config.database).expect("a store");
        let audit = Audit::open(store.clone(), None).expect("an audit");
        let metrics = Arc::new(Metrics::new());
        let pipeline = Pipeline::new(
            config.clone(),
            store.clone(),
            "0123456789ab".into(),
            String::new(),
            None,
            metrics,
            audit,
        );
        let clock = ManualClock::at(MONDAY + 8 * HOUR + 30 * 60_000);
        let pools = Pools::with_clock(config, store, pipeline, Clock::Manual(clock.clone()));
        let lab = pools.get("lab").expect("pool lab");
        let status = pools.status(lab).await.expect("the pool's status");
        assert_eq!(status.desired, 5, "Monday 08:30: the window's size");
        clock.advance(Duration::from_secs(3600));
        let status = pools.status(lab).await.expect("the pool's status");
        assert_eq!(status.desired, 1, "Monday 09:30: the pool's size");
    }
}
