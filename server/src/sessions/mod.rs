//! The application's one way in: create (or claim a warm desktop), watch,
//! get, list and destroy sessions, read the pools and the audit trail, for
//! a [`Caller`] with the rules on who may act on what, the limits and the
//! audit trail. gRPC (`api/grpc/desktop.rs`), the REST endpoints
//! (`api/http/rest.rs`) and the portal (`web/desktops.rs`) are thin
//! adapters over it: they say who calls and shape the answer, nothing more.

pub mod follow;
pub mod limits;
mod nodes;
mod paging;
mod quotas;
pub mod schedule_runs;
mod schedules;
mod snapshots;
mod templates;

use std::sync::Arc;

use daas_api::v1::{
    AuditEntry, CreateSessionRequest, ListAuditRequest, ListAuditResponse, ListSessionsRequest,
    ListSessionsResponse, Pool, Session, SessionState,
};

pub use follow::{EventStream, follow};
use limits::{CreateRate, StreamSlot, StreamSlots};

use crate::{
    audit::{Act, Actor, Audit},
    config::Config,
    domain::{
        error::Error,
        identity::Caller,
        password::PasswordHash,
        time::{Clock, timestamp},
        validate,
    },
    pool::Pools,
    provision::Pipeline,
    store::{
        NewSession, SessionLimits, SessionRecord, Store, StoreError, audit_records::AuditFilter,
    },
};

/// What a create started: the session and its events from the first.
pub struct Started {
    pub record: SessionRecord,
    pub events: EventStream,
    /// A repeat of an earlier create's request id: its session, not a new one.
    pub repeated: bool,
}

/// The sessions service; cheap to share behind an `Arc`.
pub struct Sessions {
    pub config: Arc<Config>,
    pub store: Store,
    pub pipeline: Pipeline,
    pub pools: Pools,
    pub audit: Audit,
    /// What "now" is for the reaper's outlook shown with each session.
    pub clock: Clock,
    create_rate: CreateRate,
    streams: StreamSlots,
}

impl Sessions {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        pipeline: Pipeline,
        pools: Pools,
        audit: Audit,
    ) -> Self {
        let limits = &config.limits;
        Sessions {
            create_rate: CreateRate::new(limits.creates_per_minute, limits.create_burst),
            streams: StreamSlots::new(limits.max_streams, limits.max_streams_per_user),
            config,
            store,
            pipeline,
            pools,
            audit,
            clock: Clock::System,
        }
    }

    /// Creates a session for `caller` (or follows the one an earlier
    /// create with the same request id made), recorded in the audit trail
    /// by `actor`: `create`, or `claim` when a warm pool's desktop was
    /// taken, or the refusal.
    pub async fn create(
        &self,
        caller: &Caller,
        actor: &Actor,
        req: CreateSessionRequest,
    ) -> Result<Started, Error> {
        let template = req.template.clone();
        // Whom a refused create was for: the user named, else the caller.
        let for_user = match (req.username.is_empty(), caller.user()) {
            (false, _) => req.username.clone(),
            (true, Some(me)) => me.to_string(),
            (true, None) => String::new(),
        };
        // Its organisation, for the trail, even when the create is refused.
        let org = self
            .org_of_create(caller, &req)
            .ok()
            .flatten()
            .map(|o| o.name.clone());
        match self.create_unaudited(caller, req).await {
            Ok(started) => {
                let r = &started.record;
                let (action, detail) = match (started.repeated, r.is_claimed()) {
                    (true, _) => (
                        "create",
                        format!(
                            "template {}: a repeated request id, the same session",
                            r.template
                        ),
                    ),
                    (false, true) => (
                        "claim",
                        format!(
                            "template {}: a warm desktop of pool '{}'",
                            r.template,
                            r.pool.as_deref().unwrap_or("")
                        ),
                    ),
                    (false, false) => ("create", format!("template {}", r.template)),
                };
                let act = Act::new(action)
                    .session(&r.id, &r.username)
                    .org(r.org.as_deref())
                    .detail(detail);
                self.audit.record(actor, act).await;
                Ok(started)
            }
            Err(err) => {
                let act = Act::new("create")
                    .session("", &for_user)
                    .org(org.as_deref())
                    .failed(&err);
                let act = if template.is_empty() {
                    act
                } else {
                    Act {
                        detail: format!("template {template}: {}", act.detail),
                        ..act
                    }
                };
                self.audit.record(actor, act).await;
                Err(err)
            }
        }
    }

    /// Destroys session `id` for `caller`, recorded in the audit trail by
    /// `actor`.
    pub async fn destroy(
        &self,
        caller: &Caller,
        actor: &Actor,
        id: &str,
    ) -> Result<SessionRecord, Error> {
        // The owner, for the trail, even when the caller is refused.
        let mut owner = String::new();
        let mut org = None;
        let result = async {
            let record = self.lookup(id).await?;
            owner.clone_from(&record.username);
            org.clone_from(&record.org);
            self.may_act_on(caller, &record, "destroy")?;
            self.lost_with_its_node(&record).await?;
            let record = self.pipeline.destroy(id).await?;
            tracing::info!(session = %id, "session destroyed");
            Ok::<_, Error>(record)
        }
        .await;
        let act = Act::new("destroy").session(id, &owner).org(org.as_deref());
        let act = match &result {
            Ok(_) => act,
            Err(err) => act.failed(err),
        };
        self.audit.record(actor, act).await;
        result
    }

    /// The events of session `id` after `after`, then live ones, until it
    /// settles.
    pub async fn watch(
        &self,
        caller: &Caller,
        id: String,
        after: u64,
    ) -> Result<EventStream, Error> {
        let slot = self.streams.open(caller.user().unwrap_or("local"))?;
        self.session_for(caller, &id, "watch").await?;
        Ok(follow(
            self.store.clone(),
            id,
            after,
            self.pipeline.shutdown_token(),
            slot,
        ))
    }

    /// Session `id` as the caller sees it, with why it is alive.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Session, Error> {
        let record = self.session_for(caller, id, "get").await?;
        Ok(self.view(&record))
    }

    /// A page of sessions: the caller's, or anyone's for an administrator.
    pub async fn list(
        &self,
        caller: &Caller,
        req: ListSessionsRequest,
    ) -> Result<ListSessionsResponse, Error> {
        let state = match SessionState::try_from(req.state) {
            Ok(SessionState::Unspecified) => None,
            Ok(state) => Some(state),
            Err(_) => {
                return Err(Error::InvalidArgument {
                    field: "state",
                    why: format!("has the unknown value {}", req.state),
                });
            }
        };
        let org = if req.org.is_empty() {
            None
        } else {
            validate::org(&req.org)?;
            Some(req.org)
        };
        let username = match (caller.user(), &org) {
            _ if caller.is_admin() => (!req.username.is_empty()).then_some(req.username),
            // An organisation's administrators list its sessions.
            (Some(_), Some(org)) if self.administers(caller, org) => {
                (!req.username.is_empty()).then_some(req.username)
            }
            (Some(me), _) if req.username.is_empty() || req.username == me => Some(me.to_string()),
            _ => {
                return Err(Error::PermissionDenied(
                    "you may list only your own sessions (or, with `org`, those of an organisation you administer)".into(),
                ));
            }
        };
        let page_size = validate::page_size(req.page_size)?;
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(paging::parse_page_token(&req.page_token)?)
        };
        // One more than asked tells whether another page follows.
        let mut records = self
            .store
            .list_page(username, org, state, after, page_size + 1)
            .await?;
        let next_page_token = if records.len() > page_size as usize {
            records.truncate(page_size as usize);
            records.last().map(paging::page_token).unwrap_or_default()
        } else {
            String::new()
        };
        let sessions = records.iter().map(|r| self.view(r)).collect();
        Ok(ListSessionsResponse {
            sessions,
            next_page_token,
        })
    }

    /// Every warm pool's status (administrators).
    pub async fn pools(&self, caller: &Caller) -> Result<Vec<Pool>, Error> {
        admin_only(caller, "list the warm pools")?;
        let mut pools = Vec::new();
        for pool in self.pools.all() {
            pools.push(self.pools.status(pool).await?);
        }
        Ok(pools)
    }

    /// One warm pool's status (administrators).
    pub async fn pool(&self, caller: &Caller, name: &str) -> Result<Pool, Error> {
        admin_only(caller, "see a warm pool")?;
        let pool = self
            .pools
            .get(name)
            .ok_or_else(|| Error::NoSuchPool(name.to_string()))?;
        Ok(self.pools.status(pool).await?)
    }

    /// A page of the audit trail, newest first (administrators).
    pub async fn audit_page(
        &self,
        caller: &Caller,
        req: ListAuditRequest,
    ) -> Result<ListAuditResponse, Error> {
        let org = if req.org.is_empty() {
            None
        } else {
            validate::org(&req.org)?;
            Some(req.org)
        };
        // An organisation's administrators read its part of the trail.
        if !org.as_deref().is_some_and(|o| self.administers(caller, o)) {
            admin_only(caller, "read the audit trail")?;
        }
        if !req.session_id.is_empty() {
            validate::session_id(&req.session_id)?;
        }
        if !req.username.is_empty() {
            validate::account_name("username", &req.username)?;
        }
        let page_size = validate::page_size(req.page_size)?;
        let before = if req.page_token.is_empty() {
            None
        } else {
            Some(paging::parse_audit_token(&req.page_token)?)
        };
        let filter = AuditFilter {
            username: (!req.username.is_empty()).then_some(req.username),
            session_id: (!req.session_id.is_empty()).then_some(req.session_id),
            org,
            since_ms: req.since.map(paging::since_ms).transpose()?,
            before,
            limit: page_size + 1,
        };
        let mut records = self.store.audit_page(filter).await?;
        let next_page_token = if records.len() > page_size as usize {
            records.truncate(page_size as usize);
            records
                .last()
                .map(|r| format!("{}.{}", r.time_ms, r.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let entries = records
            .into_iter()
            .map(|r| AuditEntry {
                time: Some(timestamp(r.time_ms)),
                actor: r.actor,
                subject: r.subject,
                fingerprint: r.fingerprint,
                peer: r.peer,
                action: r.action,
                session_id: r.session_id,
                owner: r.owner,
                result: r.result,
                detail: r.detail,
                org: r.org,
            })
            .collect();
        Ok(ListAuditResponse {
            entries,
            next_page_token,
        })
    }

    /// Refuses a caller who may not `act` on `record`'s session: not its
    /// owner, an administrator, nor an administrator of its organisation.
    fn may_act_on(&self, caller: &Caller, record: &SessionRecord, act: &str) -> Result<(), Error> {
        if caller.may_act_for(&record.username)
            || record
                .org
                .as_deref()
                .is_some_and(|org| self.administers(caller, org))
        {
            return Ok(());
        }
        tracing::warn!(?caller, session = %record.id, act, "refused access to a session");
        Err(Error::PermissionDenied(format!(
            "you may {act} only your own sessions"
        )))
    }

    /// A session the caller may `act` on (get, watch, destroy).
    async fn session_for(
        &self,
        caller: &Caller,
        id: &str,
        act: &str,
    ) -> Result<SessionRecord, Error> {
        let record = self.lookup(id).await?;
        self.may_act_on(caller, &record, act)?;
        Ok(record)
    }

    /// A session by id (checked), or NOT_FOUND.
    async fn lookup(&self, id: &str) -> Result<SessionRecord, Error> {
        validate::session_id(id)?;
        self.store
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// A session as callers see it, with why it is alive.
    fn view(&self, record: &SessionRecord) -> Session {
        let mut session = record.to_proto();
        session.activity = crate::reaper::why_alive(&self.config, record, self.clock.now_ms());
        session
    }

    /// The stream of the session an earlier create with the same request id
    /// made, if this create asks for the same thing.
    fn same_request(
        &self,
        earlier: SessionRecord,
        username: &str,
        template: &str,
        slot: StreamSlot,
    ) -> Result<Started, Error> {
        if earlier.username != username || earlier.template != template {
            return Err(Error::InvalidArgument {
                field: "request_id",
                why: format!(
                    "was used within 24 h for another create (session {}); choose a new one",
                    earlier.id
                ),
            });
        }
        tracing::info!(session = %earlier.id, "a create repeated its request id: streaming the session it made");
        Ok(Started {
            events: follow(
                self.store.clone(),
                earlier.id.clone(),
                0,
                self.pipeline.shutdown_token(),
                slot,
            ),
            repeated: true,
            record: earlier,
        })
    }

    /// A create, not yet in the audit trail.
    async fn create_unaudited(
        &self,
        caller: &Caller,
        mut req: CreateSessionRequest,
    ) -> Result<Started, Error> {
        req.username = create_owner(caller, std::mem::take(&mut req.username))?;
        validate::account_name("username", &req.username)?;
        if !req.session_user.is_empty() {
            validate::account_name("session_user", &req.session_user)?;
            validate::password("session_password", &req.session_password)?;
        } else if !req.session_password.is_empty() {
            return Err(Error::InvalidArgument {
                field: "session_password",
                why: "is set but session_user is empty".into(),
            });
        }
        if !req.template.is_empty() {
            validate::template(&req.template)?;
        }
        let choice = self.config.catalog.choose(
            &req.template,
            &req.size,
            caller.groups(),
            caller.is_admin(),
        )?;
        let template = choice.template;
        let org = self.org_of_create(caller, &req)?;
        let request_key = if req.request_id.is_empty() {
            None
        } else {
            validate::request_id(&req.request_id)?;
            Some(format!(
                "{}\n{}",
                caller.user().unwrap_or("local"),
                req.request_id
            ))
        };
        // The password goes no further than this: the desktop gets its hash.
        let password_hash = PasswordHash::of(&std::mem::take(&mut req.session_password))?;
        let shutdown = self.pipeline.shutdown_token();
        if shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let slot = self.streams.open(caller.user().unwrap_or("local"))?;
        // A retry of a create that went through: its session, not a new one
        // (and no rate token taken).
        if let Some(key) = &request_key
            && let Some(earlier) = self.store.by_request(key).await?
        {
            return self.same_request(earlier, &req.username, &template, slot);
        }
        self.create_rate.take(&self.store, &req.username).await?;
        let limits = self.limits(org);
        let new = NewSession {
            username: req.username.clone(),
            session_user: req.session_user,
            template: template.clone(),
            request_key,
            pool: None,
            // Kept while the create waits, for a server with a free permit
            // to take it (`SessionStore::take_queued`).
            password: password_hash.clone(),
            placing: self.pipeline.placing(),
            size: Some(choice.size),
            org: org.map(|o| o.name.clone()),
            note: None,
            restore_from: None,
        };
        let record = match self.start(new, limits, password_hash).await {
            Ok(record) => record,
            Err(StoreError::SameRequest(earlier)) => {
                return self.same_request(*earlier, &req.username, &template, slot);
            }
            Err(err) => return Err(err.into()),
        };
        // `follow` replays what the pipeline published already.
        let stream = follow(self.store.clone(), record.id.clone(), 0, shutdown, slot);
        Ok(Started {
            events: stream,
            record,
            repeated: false,
        })
    }

    /// Admits `new` within `limits` (a warm desktop if a pool of its
    /// template has one ready, else one built from nothing) and starts
    /// provisioning it.
    pub(crate) async fn start(
        &self,
        mut new: NewSession,
        limits: SessionLimits,
        password: PasswordHash,
    ) -> Result<SessionRecord, StoreError> {
        // A persistent template's desktop comes back from its user's kept
        // disk, when there is one (not from a pool: its desktops are blank).
        new.restore_from = self.kept_disk_for(&new).await?;
        self.room_to_keep(&new).await?;
        let claimed = match new.restore_from {
            Some(_) => Ok(None),
            None => self.pools.claim(&new, limits).await,
        };
        let created = match claimed {
            Ok(Some(record)) => Ok(record),
            Ok(None) => self.store.create_session(new, limits).await.map(|(r, _)| r),
            Err(err) => Err(err),
        };
        let record = match created {
            Ok(record) => record,
            Err(StoreError::LimitReached(hit)) => {
                self.pipeline.metrics().quota_refused(&hit);
                return Err(StoreError::LimitReached(hit));
            }
            Err(err) => return Err(err),
        };
        tracing::info!(session = %record.id, user = %record.username, vm = %record.vm_name, "session requested");
        self.pipeline.start(record.clone(), password);
        Ok(record)
    }
}

/// The user a create is for: the caller, or anyone for an administrator.
fn create_owner(caller: &Caller, requested: String) -> Result<String, Error> {
    match (caller.user(), requested.is_empty()) {
        (Some(me), true) => Ok(me.to_string()),
        (_, false) if caller.may_act_for(&requested) => Ok(requested),
        (Some(me), false) => Err(Error::PermissionDenied(format!(
            "you may create sessions only for yourself ({me})"
        ))),
        (None, _) => Err(Error::InvalidArgument {
            field: "username",
            why: "is required".into(),
        }),
    }
}

/// Refuses a caller who is not an administrator.
fn admin_only(caller: &Caller, act: &str) -> Result<(), Error> {
    if caller.is_admin() {
        return Ok(());
    }
    tracing::warn!(?caller, act, "refused an administrators' call");
    Err(Error::PermissionDenied(format!(
        "only administrators may {act}"
    )))
}
