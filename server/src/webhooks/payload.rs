//! What a webhook says, in its three formats: our own JSON object, or one
//! human sentence for Slack (`{"text": ...}`) and Discord
//! (`{"content": ...}`). Built from the stored event, never from tool
//! output: the texts are the stage change's message, the failure's reason,
//! the warning's reason; the config's secrets are masked in them all the
//! same, since a failure's summary quotes a tool's error line.

use daas_api::v1::{SessionEvent, SessionState, session_event::Kind};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::webhooks::{EventName, Format};
use crate::{domain::time::clock_time, files::MASK};

/// Longest reason a chat message carries (Discord takes 2000 characters).
const CHAT_REASON_CHARS: usize = 400;

/// One event of one session that webhooks are told about.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub event: EventName,
    pub session_id: String,
    /// Empty until known: an IDLE_WARNING's event does not carry it.
    pub user: String,
    pub template: String,
    pub state: SessionState,
    pub time_ms: i64,
    /// READY: where to connect; FAILED: why; IDLE_WARNING: the rule that
    /// will reap; DESTROYED: why it was destroyed.
    pub message: String,
    /// FAILED: the stage that failed.
    pub failed_stage: Option<SessionState>,
    /// IDLE_WARNING: when the desktop will be destroyed.
    pub reap_at_ms: Option<i64>,
    /// SCHEDULE_REFUSED (no session): the schedule and when its desktop
    /// was due READY.
    pub schedule: Option<Scheduled>,
}

/// The schedule a SCHEDULE_REFUSED notice is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduled {
    pub schedule_id: String,
    pub due_ms: i64,
}

/// A notice about no session as the outbox keeps it.
#[derive(Serialize, Deserialize)]
struct Stored {
    schedule_id: String,
    due_ms: i64,
    user: String,
    template: String,
    time_ms: i64,
    message: String,
}

fn ms_of(time: Option<prost_types::Timestamp>) -> i64 {
    time.map(|t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
        .unwrap_or(0)
}

impl Notice {
    /// The notice of `event`, if it is one webhooks are told about;
    /// `destroy_reason` is the message of the session's DESTROYING event,
    /// which its DESTROYED event does not repeat.
    pub fn of(event: &SessionEvent, destroy_reason: Option<String>) -> Option<Notice> {
        let state = SessionState::try_from(event.state).unwrap_or(SessionState::Unspecified);
        let (name, message, reap_at_ms) = match &event.kind {
            Some(Kind::StageChange(change)) => {
                let name = match state {
                    SessionState::Ready => EventName::Ready,
                    SessionState::Failed => EventName::Failed,
                    SessionState::Destroyed => EventName::Destroyed,
                    SessionState::Lost => EventName::Lost,
                    _ => return None,
                };
                let message = match name {
                    EventName::Destroyed => destroy_reason.unwrap_or(change.message.clone()),
                    _ => change.message.clone(),
                };
                (name, message, None)
            }
            Some(Kind::IdleWarning(warning)) => (
                EventName::IdleWarning,
                warning.reason.clone(),
                Some(ms_of(warning.reap_at)),
            ),
            _ => return None,
        };
        let session = event.session.as_ref();
        let failure = session.and_then(|s| s.failure.as_ref());
        let failed = name == EventName::Failed;
        Some(Notice {
            event: name,
            session_id: event.session_id.clone(),
            user: session.map(|s| s.username.clone()).unwrap_or_default(),
            template: session.map(|s| s.template.clone()).unwrap_or_default(),
            state,
            time_ms: ms_of(event.time),
            message: match failure {
                Some(f) if failed => f.reason.clone(),
                _ => message,
            },
            failed_stage: failure
                .filter(|_| failed)
                .map(|f| SessionState::try_from(f.stage).unwrap_or(SessionState::Unspecified)),
            reap_at_ms,
            schedule: None,
        })
    }

    /// A SCHEDULE_REFUSED notice: `schedule`'s desktop for `user` could
    /// not be made at `time_ms`, and `why`.
    pub fn schedule_refused(
        schedule: Scheduled,
        user: &str,
        template: &str,
        time_ms: i64,
        why: &str,
    ) -> Notice {
        Notice {
            event: EventName::ScheduleRefused,
            session_id: String::new(),
            user: user.to_string(),
            template: template.to_string(),
            state: SessionState::Unspecified,
            time_ms,
            message: why.to_string(),
            failed_stage: None,
            reap_at_ms: None,
            schedule: Some(schedule),
        }
    }

    /// The notice about no session as the outbox keeps it; None for a
    /// session's (the outbox points at its event instead).
    pub fn stored(&self) -> Option<String> {
        let schedule = self.schedule.as_ref()?;
        serde_json::to_string(&Stored {
            schedule_id: schedule.schedule_id.clone(),
            due_ms: schedule.due_ms,
            user: self.user.clone(),
            template: self.template.clone(),
            time_ms: self.time_ms,
            message: self.message.clone(),
        })
        .ok()
    }

    /// Reads back what [`Notice::stored`] wrote.
    pub fn from_stored(text: &str) -> Option<Notice> {
        let s: Stored = serde_json::from_str(text).ok()?;
        Some(Notice::schedule_refused(
            Scheduled {
                schedule_id: s.schedule_id,
                due_ms: s.due_ms,
            },
            &s.user,
            &s.template,
            s.time_ms,
            &s.message,
        ))
    }

    /// Replaces every value of `secrets` in the message with the mask.
    pub fn mask(&mut self, secrets: &[String]) {
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            if self.message.contains(secret.as_str()) {
                self.message = self.message.replace(secret.as_str(), MASK);
            }
        }
    }

    /// The body of delivery `delivery` in `format`.
    pub fn body(&self, format: Format, delivery: &str) -> String {
        match format {
            Format::Json => self.json(delivery).to_string(),
            Format::Slack => json!({ "text": slack_escape(&self.sentence()) }).to_string(),
            // No mention in a text ever pings anyone.
            Format::Discord => json!({
                "content": self.sentence(),
                "allowed_mentions": { "parse": [] },
            })
            .to_string(),
        }
    }

    fn json(&self, delivery: &str) -> serde_json::Value {
        if let Some(schedule) = &self.schedule {
            return json!({
                "event": self.event.as_str(),
                "delivery": delivery,
                "schedule_id": schedule.schedule_id,
                "user": self.user,
                "template": self.template,
                "due_at": rfc3339(schedule.due_ms),
                "time": rfc3339(self.time_ms),
                "message": self.message,
            });
        }
        let mut body = json!({
            "event": self.event.as_str(),
            "delivery": delivery,
            "session_id": self.session_id,
            "user": self.user,
            "template": self.template,
            "state": self.state.label(),
            "time": rfc3339(self.time_ms),
            "message": self.message,
        });
        if let Some(stage) = self.failed_stage {
            body["failed_stage"] = stage.label().into();
        }
        if let Some(ms) = self.reap_at_ms {
            body["reap_at"] = rfc3339(ms).into();
        }
        body
    }

    /// One sentence, e.g. "Desktop 3f2a1b2c for alice (xfce) is READY at
    /// 10:02 UTC: connect with RDP to 10.0.0.5:3389".
    pub fn sentence(&self) -> String {
        let short: String = self.session_id.chars().take(8).collect();
        let who = format!("Desktop {short} for {} ({})", self.user, self.template);
        let at = clock_time(self.time_ms);
        let why = shorten(&self.message);
        match self.event {
            EventName::Ready => format!("{who} is READY at {at}: {why}"),
            EventName::Failed => match self.failed_stage {
                Some(stage) => format!("{who} FAILED at {at} during {}: {why}", stage.label()),
                None => format!("{who} FAILED at {at}: {why}"),
            },
            EventName::IdleWarning => format!(
                "{who} will be destroyed at {}: {why}",
                clock_time(self.reap_at_ms.unwrap_or(self.time_ms))
            ),
            EventName::Destroyed => format!("{who} was DESTROYED at {at}: {why}"),
            EventName::Lost => format!("{who} is LOST at {at}: {why}"),
            EventName::ScheduleRefused => format!(
                "The scheduled desktop of {} ({}) due at {} was REFUSED at {at}: {why}",
                self.user,
                self.template,
                clock_time(self.schedule.as_ref().map_or(self.time_ms, |s| s.due_ms))
            ),
        }
    }
}

/// RFC 3339 in UTC, e.g. `2025-01-31T10:02:03.123Z`.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= CHAT_REASON_CHARS {
        return text.to_string();
    }
    let cut: String = text.chars().take(CHAT_REASON_CHARS).collect();
    format!("{cut}…")
}

/// Slack reads `<...>` as links and mentions, and `&` as an entity.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use daas_api::v1::{Failure, IdleWarning, Session, StageChange};

    const ID: &str = "3f2a1b2c-0000-4000-8000-000000000001";
    /// 2025-01-31T10:02:03.123Z
    const AT_MS: i64 = 1_738_317_723_123;

    fn stage_change(to: SessionState, message: &str, session: Option<Session>) -> SessionEvent {
        SessionEvent {
            session_id: ID.into(),
            sequence: 9,
            time: Some(crate::domain::time::timestamp(AT_MS)),
            state: to as i32,
            kind: Some(Kind::StageChange(StageChange {
                message: message.into(),
                ..Default::default()
            })),
            session,
            ..Default::default()
        }
    }

    fn alice() -> Session {
        Session {
            id: ID.into(),
            username: "alice".into(),
            template: "xfce".into(),
            ..Default::default()
        }
    }

    #[test]
    fn ready_in_the_three_formats() {
        let event = stage_change(
            SessionState::Ready,
            "connect with RDP to 10.0.0.5:3389",
            Some(alice()),
        );
        let notice = Notice::of(&event, None).expect("READY is told");
        let body: serde_json::Value =
            serde_json::from_str(&notice.body(Format::Json, "d-1")).unwrap();
        assert_eq!(
            body,
            json!({
                "event": "READY",
                "delivery": "d-1",
                "session_id": ID,
                "user": "alice",
                "template": "xfce",
                "state": "READY",
                "time": "2025-01-31T10:02:03.123Z",
                "message": "connect with RDP to 10.0.0.5:3389",
            })
        );
        let sentence = "Desktop 3f2a1b2c for alice (xfce) is READY at 10:02 UTC: connect with RDP to 10.0.0.5:3389";
        let slack: serde_json::Value =
            serde_json::from_str(&notice.body(Format::Slack, "d-1")).unwrap();
        assert_eq!(slack, json!({ "text": sentence }));
        let discord: serde_json::Value =
            serde_json::from_str(&notice.body(Format::Discord, "d-1")).unwrap();
        assert_eq!(
            discord,
            json!({ "content": sentence, "allowed_mentions": { "parse": [] } })
        );
    }

    #[test]
    fn failed_carries_the_stage_and_the_reason_masked() {
        let session = Session {
            failure: Some(Failure {
                stage: SessionState::Provisioning as i32,
                reason: "terraform apply failed: token pm-S3cret refused <x>".into(),
            }),
            ..alice()
        };
        let event = stage_change(
            SessionState::Failed,
            "provisioning failed; nothing was left behind",
            Some(session),
        );
        let mut notice = Notice::of(&event, None).unwrap();
        notice.mask(&["pm-S3cret".to_string(), String::new()]);
        assert_eq!(notice.failed_stage, Some(SessionState::Provisioning));
        let body: serde_json::Value =
            serde_json::from_str(&notice.body(Format::Json, "d")).unwrap();
        assert_eq!(body["failed_stage"], "PROVISIONING");
        assert_eq!(
            body["message"],
            "terraform apply failed: token ******** refused <x>"
        );
        assert!(
            notice
                .body(Format::Slack, "d")
                .contains("FAILED at 10:02 UTC during PROVISIONING: terraform apply failed: token ******** refused &lt;x&gt;")
        );
    }

    #[test]
    fn lost_says_which_node_and_no_failed_stage() {
        let why = "node pve2 is offline since 10:00 UTC: the desktop cannot be reached";
        let session = Session {
            failure: Some(Failure {
                stage: SessionState::Ready as i32,
                reason: why.into(),
            }),
            ..alice()
        };
        let event = stage_change(SessionState::Lost, why, Some(session));
        let notice = Notice::of(&event, None).unwrap();
        assert_eq!(notice.event, EventName::Lost);
        assert_eq!(notice.failed_stage, None);
        let body: serde_json::Value =
            serde_json::from_str(&notice.body(Format::Json, "d")).unwrap();
        assert_eq!(body["event"], "LOST");
        assert_eq!(body["message"], why);
        assert!(body.get("failed_stage").is_none(), "{body}");
        assert_eq!(
            notice.sentence(),
            format!("Desktop 3f2a1b2c for alice (xfce) is LOST at 10:02 UTC: {why}")
        );
    }

    #[test]
    fn idle_warning_and_destroyed() {
        let warning = SessionEvent {
            session_id: ID.into(),
            time: Some(crate::domain::time::timestamp(AT_MS)),
            state: SessionState::Ready as i32,
            kind: Some(Kind::IdleWarning(IdleWarning {
                reap_at: Some(crate::domain::time::timestamp(AT_MS + 30 * 60_000)),
                reason: "idle_timeout 30m: no input since 10:02 UTC".into(),
            })),
            ..Default::default()
        };
        let mut notice = Notice::of(&warning, None).unwrap();
        assert_eq!(notice.event, EventName::IdleWarning);
        assert_eq!(notice.user, "", "resolved from the store later");
        notice.user = "alice".into();
        notice.template = "xfce".into();
        let body: serde_json::Value =
            serde_json::from_str(&notice.body(Format::Json, "d")).unwrap();
        assert_eq!(body["reap_at"], "2025-01-31T10:32:03.123Z");
        assert_eq!(
            notice.sentence(),
            "Desktop 3f2a1b2c for alice (xfce) will be destroyed at 10:32 UTC: idle_timeout 30m: no input since 10:02 UTC"
        );

        let destroyed = stage_change(SessionState::Destroyed, "the VM is gone", Some(alice()));
        let notice = Notice::of(&destroyed, Some("reaped: max_lifetime 12h".into())).unwrap();
        assert_eq!(notice.message, "reaped: max_lifetime 12h");
        assert!(
            notice
                .sentence()
                .ends_with("was DESTROYED at 10:02 UTC: reaped: max_lifetime 12h")
        );
        let notice = Notice::of(&destroyed, None).unwrap();
        assert_eq!(notice.message, "the VM is gone");
    }

    #[test]
    fn other_events_are_not_told() {
        for state in [
            SessionState::Queued,
            SessionState::Provisioning,
            SessionState::Configuring,
            SessionState::Destroying,
        ] {
            assert_eq!(Notice::of(&stage_change(state, "m", None), None), None);
        }
        let line = SessionEvent {
            kind: Some(Kind::Output(Default::default())),
            ..Default::default()
        };
        assert_eq!(Notice::of(&line, None), None);
    }

    #[test]
    fn long_reasons_are_cut_for_chats_only() {
        let long = "x".repeat(3000);
        let mut notice = Notice::of(
            &stage_change(SessionState::Ready, &long, Some(alice())),
            None,
        )
        .unwrap();
        assert!(notice.sentence().chars().count() < 500);
        assert!(notice.body(Format::Json, "d").contains(&long));
        notice.mask(&[]);
        assert_eq!(notice.message, long);
    }

    #[test]
    fn a_refused_schedule_is_kept_whole_and_read_back() {
        let notice = Notice::schedule_refused(
            Scheduled {
                schedule_id: "sch-1".into(),
                due_ms: AT_MS + 600_000,
            },
            "alice",
            "xfce",
            AT_MS,
            "organisation 'physics' is at its quota <@here> & more",
        );
        let stored = notice.stored().expect("a notice about no session");
        assert_eq!(Notice::from_stored(&stored), Some(notice.clone()));
        assert_eq!(Notice::from_stored("not json"), None);
        let body: serde_json::Value =
            serde_json::from_str(&notice.body(Format::Json, "d-1")).unwrap();
        assert_eq!(body["event"], "SCHEDULE_REFUSED");
        assert_eq!(body["schedule_id"], "sch-1");
        assert_eq!(body["due_at"], "2025-01-31T10:12:03.123Z");
        assert_eq!(body["time"], "2025-01-31T10:02:03.123Z");
        assert!(body.get("session_id").is_none() && body.get("state").is_none());
        let slack = notice.body(Format::Slack, "d-1");
        assert!(
            slack.contains("due at 10:12 UTC was REFUSED at 10:02 UTC"),
            "{slack}"
        );
        assert!(slack.contains("&lt;@here&gt; &amp; more"), "{slack}");
        // A session's notice is not kept whole: the outbox points at its event.
        let ready = Notice::of(&stage_change(SessionState::Ready, "m", Some(alice())), None);
        assert_eq!(ready.and_then(|n| n.stored()), None);
    }
}
