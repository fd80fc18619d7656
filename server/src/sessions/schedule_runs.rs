//! Acting on users' schedules: at each pass, each schedule whose next time
//! is near gets its desktop, created (or claimed from a warm pool) as an
//! ordinary session of its user, within their quotas, so that it is READY
//! at the time. When is the pure `Recurrence::due`; this file acts.
//!
//! Any number of servers may run the passes: an occurrence's create carries
//! a request key of the schedule and the time, so the store makes one
//! desktop for it whichever server (or a restarted one) asks, and its run
//! is recorded once.

use std::sync::Arc;

use crate::{
    audit::{Act, Actor},
    domain::{
        error::Error,
        password::PasswordHash,
        recurrence::Recurrence,
        time::{Clock, clock_time},
    },
    store::{
        NewSession, StoreError,
        schedules::{Ran, ScheduleRecord, Which},
    },
    webhooks,
};

use super::Sessions;

/// What a pass did with one schedule's due occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A desktop was created (or claimed): its session.
    Created(String),
    /// Another server, or an earlier pass, made it already.
    Made,
    /// The create was refused: why.
    Refused(String),
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Sessions {
    /// Runs the passes every `schedules.interval` until the server stops,
    /// at the times `clock` tells.
    pub async fn run_schedules(self: Arc<Self>, clock: Clock) {
        let shutdown = self.pipeline.shutdown_token();
        let mut tick = tokio::time::interval(self.config.schedules.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(err) = self.schedule_pass(clock.now_ms()).await {
                tracing::error!(error = %err, "the schedules could not be read");
            }
        }
    }

    /// One pass, as at `now_ms`: each schedule's occurrence that is due
    /// gets its desktop. Returns what was done, by schedule id.
    pub async fn schedule_pass(&self, now_ms: i64) -> Result<Vec<(String, Outcome)>, StoreError> {
        let timing = self.config.schedules;
        let mut done = Vec::new();
        for schedule in self.store.schedules(Which::all()).await? {
            let Ok(recurrence) =
                Recurrence::parse(&schedule.at, &schedule.days, &schedule.timezone)
            else {
                tracing::warn!(schedule = %schedule.id, timezone = %schedule.timezone, "a schedule's time no longer reads (its time zone?): skipped");
                continue;
            };
            let (lead, late) = (ms(timing.lead), ms(timing.late));
            let Some(due) = recurrence.due(now_ms, lead, late, schedule.last_due_ms) else {
                continue;
            };
            // A warm desktop ready now is claimed just before the time, not
            // built a lead ahead.
            if due - ms(timing.claim_lead) > now_ms && self.warm_one_ready(&schedule).await? {
                continue;
            }
            let outcome = self.run_one(&schedule, due, now_ms).await?;
            done.push((schedule.id, outcome));
        }
        Ok(done)
    }

    /// Whether a warm pool of the schedule's template has a desktop of its
    /// size ready.
    async fn warm_one_ready(&self, schedule: &ScheduleRecord) -> Result<bool, StoreError> {
        if self.pipeline.default_size(&schedule.template).name != schedule.size {
            return Ok(false);
        }
        for pool in self.pools.all().filter(|p| p.template == schedule.template) {
            if self.pools.status(pool).await?.ready > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Creates the desktop of `schedule`'s occurrence `due`, and records it.
    async fn run_one(
        &self,
        schedule: &ScheduleRecord,
        due: i64,
        now_ms: i64,
    ) -> Result<Outcome, StoreError> {
        let note = format!(
            "for schedule {} ({} {} {}): due READY at {}",
            schedule.id,
            schedule.at,
            schedule.days,
            schedule.timezone,
            clock_time(due)
        );
        let made = match self.scheduled_create(schedule, due, note) {
            Ok((new, limits)) => match self.start(new, limits, PasswordHash::none()).await {
                Ok(record) => Ok(record.id),
                Err(StoreError::SameRequest(_)) => return Ok(Outcome::Made),
                Err(err @ (StoreError::LimitReached(_) | StoreError::NoRoom(_))) => {
                    Err(Error::from(err))
                }
                Err(err) => return Err(err),
            },
            Err(refused) => Err(refused),
        };
        let ran = match &made {
            Ok(id) => Ran::Created(id.clone()),
            // The user is told by their webhooks: no session exists.
            Err(why) => {
                let why = why.to_string();
                let told = webhooks::schedule_refused(
                    &self.config.webhooks,
                    webhooks::Scheduled {
                        schedule_id: schedule.id.clone(),
                        due_ms: due,
                    },
                    &schedule.username,
                    &schedule.template,
                    now_ms,
                    &why,
                );
                Ran::Refused(why, told)
            }
        };
        // Recorded (and told) once, whichever server got here first.
        if self
            .store
            .schedule_ran(&schedule.id, due, now_ms, ran)
            .await?
        {
            let act = Act::new("scheduled create")
                .session(made.as_deref().unwrap_or(""), &schedule.username)
                .org(schedule.org.as_deref());
            let act = match &made {
                Err(why) => {
                    tracing::warn!(schedule = %schedule.id, user = %schedule.username, %why, "a schedule's desktop was refused");
                    let act = act.failed(why);
                    Act {
                        detail: format!("schedule {}: {}", schedule.id, act.detail),
                        ..act
                    }
                }
                Ok(_) => {
                    tracing::info!(schedule = %schedule.id, user = %schedule.username, due = %clock_time(due), "a schedule's desktop is being made");
                    act.detail(format!(
                        "schedule {}: due READY at {}",
                        schedule.id,
                        clock_time(due)
                    ))
                }
            };
            self.audit.record(&Actor::internal("schedule"), act).await;
        }
        Ok(match made {
            Ok(id) => Outcome::Created(id),
            Err(why) => Outcome::Refused(why.to_string()),
        })
    }

    /// The create of `schedule`'s occurrence `due`: its template and size
    /// as the catalog has them now, its organisation's quotas.
    fn scheduled_create(
        &self,
        schedule: &ScheduleRecord,
        due: i64,
        note: String,
    ) -> Result<(NewSession, crate::store::SessionLimits), Error> {
        let choice = self
            .config
            .catalog
            .choose(&schedule.template, &schedule.size, &[], true)?;
        let org = match &schedule.org {
            Some(name) => Some(
                self.config
                    .orgs
                    .get(name)
                    .ok_or_else(|| Error::NoSuchOrg(name.clone()))?,
            ),
            None => None,
        };
        let new = NewSession {
            username: schedule.username.clone(),
            template: choice.template,
            // One desktop per occurrence, whoever asks.
            request_key: Some(format!(
                "{}\nschedule {} {due}",
                schedule.username, schedule.id
            )),
            placing: self.pipeline.placing(),
            size: Some(choice.size),
            org: org.map(|o| o.name.clone()),
            note: Some(note),
            ..NewSession::default()
        };
        Ok((new, self.limits(org)))
    }
}
