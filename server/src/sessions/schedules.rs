//! Users' schedules as callers meet them: added (checked against the
//! catalog, the organisations and the time zones now), listed and removed,
//! with the next time each is due. Acting on them is `schedule_runs.rs`.

use daas_api::v1::{
    AddScheduleRequest, CreateSessionRequest, ListSchedulesRequest, Schedule as WireSchedule,
};

use super::{Sessions, create_owner};
use crate::{
    audit::{Act, Actor},
    domain::{
        error::Error,
        identity::Caller,
        recurrence::{Invalid, Recurrence},
        time::{now_ms, timestamp},
        validate,
    },
    store::schedules::{MAX_PER_USER, ScheduleRecord, Which},
};

impl From<Invalid> for Error {
    fn from(invalid: Invalid) -> Self {
        Error::InvalidArgument {
            field: invalid.field,
            why: invalid.why,
        }
    }
}

/// The server's time zone, by its IANA name (UTC when it has none).
fn server_timezone() -> String {
    jiff::tz::TimeZone::system()
        .iana_name()
        .unwrap_or("UTC")
        .to_string()
}

impl Sessions {
    /// Adds a schedule for `caller` (an administrator: for anyone),
    /// recorded in the audit trail by `actor`.
    pub async fn add_schedule(
        &self,
        caller: &Caller,
        actor: &Actor,
        req: AddScheduleRequest,
    ) -> Result<WireSchedule, Error> {
        let result = self.add_schedule_unaudited(caller, req).await;
        let act = Act::new("add schedule");
        let act = match &result {
            Ok(s) => act
                .session("", &s.username)
                .org(Some(s.org.as_str()).filter(|o| !o.is_empty()))
                .detail(format!(
                    "schedule {}: {} {} {}, template {} {}",
                    s.id, s.at, s.days, s.timezone, s.template, s.size
                )),
            Err(err) => act.failed(err),
        };
        self.audit.record(actor, act).await;
        result
    }

    async fn add_schedule_unaudited(
        &self,
        caller: &Caller,
        req: AddScheduleRequest,
    ) -> Result<WireSchedule, Error> {
        let username = create_owner(caller, req.username)?;
        validate::account_name("username", &username)?;
        if !req.template.is_empty() {
            validate::template(&req.template)?;
        }
        let timezone = if req.timezone.is_empty() {
            server_timezone()
        } else {
            req.timezone
        };
        let recurrence = Recurrence::parse(&req.at, &req.days, &timezone)?;
        let choice = self.config.catalog.choose(
            &req.template,
            &req.size,
            caller.groups(),
            caller.is_admin(),
        )?;
        let as_create = CreateSessionRequest {
            username: username.clone(),
            org: req.org,
            ..Default::default()
        };
        let org = self.org_of_create(caller, &as_create)?;
        let record = ScheduleRecord {
            id: uuid::Uuid::new_v4().to_string(),
            username,
            at: format!(
                "{:02}:{:02}",
                recurrence.minute / 60,
                recurrence.minute % 60
            ),
            days: req.days.trim().to_string(),
            timezone,
            template: choice.template,
            size: choice.size.name,
            org: org.map(|o| o.name.clone()),
            created_ms: now_ms(),
            ..ScheduleRecord::default()
        };
        // The same schedule again (a retry after a lost answer): the one
        // there already, not a second desktop at each time.
        let same = |s: &ScheduleRecord| {
            (&s.at, &s.days, &s.timezone, &s.template, &s.size, &s.org)
                == (
                    &record.at,
                    &record.days,
                    &record.timezone,
                    &record.template,
                    &record.size,
                    &record.org,
                )
        };
        let existing = self
            .store
            .schedules(Which::of_user(&record.username))
            .await?;
        if let Some(there) = existing.iter().find(|s| same(s)) {
            tracing::info!(schedule = %there.id, user = %there.username, "the same schedule was added again: the existing one stands");
            return Ok(self.schedule_view(there));
        }
        self.store
            .add_schedule(record.clone(), MAX_PER_USER)
            .await?;
        tracing::info!(schedule = %record.id, user = %record.username, at = %record.at, days = %record.days, timezone = %record.timezone, "schedule added");
        Ok(self.schedule_view(&record))
    }

    /// The caller's schedules, a user's, or everyone's for an
    /// administrator.
    pub async fn schedules(
        &self,
        caller: &Caller,
        req: ListSchedulesRequest,
    ) -> Result<Vec<WireSchedule>, Error> {
        let username = match caller.user() {
            _ if caller.is_admin() => (!req.username.is_empty()).then_some(req.username),
            Some(me) if req.username.is_empty() || req.username == me => Some(me.to_string()),
            _ => {
                return Err(Error::PermissionDenied(
                    "you may list only your own schedules".into(),
                ));
            }
        };
        if let Some(user) = &username {
            validate::account_name("username", user)?;
        }
        let which = username.map_or_else(Which::all, |u| Which::of_user(&u));
        let records = self.store.schedules(which).await?;
        Ok(records.iter().map(|r| self.schedule_view(r)).collect())
    }

    /// Removes schedule `id` (the caller's, or any for an administrator),
    /// recorded in the audit trail by `actor`.
    pub async fn remove_schedule(
        &self,
        caller: &Caller,
        actor: &Actor,
        id: &str,
    ) -> Result<WireSchedule, Error> {
        let mut owner = String::new();
        let result = async {
            validate::schedule_id(id)?;
            let found = self
                .store
                .schedules(Which::id(id))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| Error::NoSuchSchedule(id.to_string()))?;
            owner.clone_from(&found.username);
            if !caller.may_act_for(&found.username) {
                return Err(Error::PermissionDenied(
                    "you may remove only your own schedules".into(),
                ));
            }
            let removed = self
                .store
                .remove_schedule(id)
                .await?
                .ok_or_else(|| Error::NoSuchSchedule(id.to_string()))?;
            tracing::info!(schedule = %id, user = %removed.username, "schedule removed");
            Ok(self.schedule_view(&removed))
        }
        .await;
        let act = Act::new("remove schedule")
            .session("", &owner)
            .detail(format!("schedule {id}"));
        let act = match &result {
            Ok(s) => act.org(Some(s.org.as_str()).filter(|o| !o.is_empty())),
            Err(err) => act.failed(err),
        };
        self.audit.record(actor, act).await;
        result
    }

    /// A schedule as the API shows it, with its next time from now.
    pub(super) fn schedule_view(&self, r: &ScheduleRecord) -> WireSchedule {
        let next = Recurrence::parse(&r.at, &r.days, &r.timezone)
            .ok()
            .and_then(|rec| rec.next_from(self.clock.now_ms()));
        WireSchedule {
            id: r.id.clone(),
            username: r.username.clone(),
            at: r.at.clone(),
            days: r.days.clone(),
            timezone: r.timezone.clone(),
            template: r.template.clone(),
            size: r.size.clone(),
            org: r.org.clone().unwrap_or_default(),
            next_at: next.map(timestamp),
            created_at: Some(timestamp(r.created_ms)),
            last_run_at: r.last_run_ms.map(timestamp),
            last_session_id: r.last_session_id.clone(),
            last_error: r.last_error.clone(),
        }
    }
}
