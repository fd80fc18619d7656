//! The audit trail: every create, claim, destroy, reap, agent certificate
//! issued, and every refused call (PERMISSION_DENIED, UNAUTHENTICATED,
//! RESOURCE_EXHAUSTED), with who (the certificate's user, subject and
//! fingerprint), from where (the peer address), what, the result and when.
//! Entries go to the store (read with `ListAudit` / `daas audit`) and, when
//! `audit.file` is set, are appended to it as JSON lines for a SIEM.
//!
//! Entries carry codes and the messages users are shown, never a request's
//! body: no password can reach them. Recording never fails the act it
//! records; a lost entry is logged as an error.

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::Serialize;

use crate::{
    domain::identity::{Caller, Origin},
    domain::time::now_ms,
    store::{Store, audit_records::AuditRecord},
};

/// Why the audit trail cannot start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the audit file {path}: {source}")]
pub struct AuditError {
    path: String,
    source: std::io::Error,
}

/// Who acted, as the trail names them.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub name: String,
    pub subject: String,
    pub fingerprint: String,
    pub peer: String,
}

impl Actor {
    /// A caller of the API, with where the call came from.
    pub fn caller(caller: Option<&Caller>, origin: &Origin) -> Actor {
        let name = match caller {
            Some(Caller::User { name, .. }) => name.clone(),
            Some(Caller::Agent { .. }) => "agent".into(),
            Some(Caller::Local) => "local".into(),
            None => String::new(),
        };
        Actor {
            name,
            subject: origin.subject.clone(),
            fingerprint: origin.fingerprint.clone(),
            peer: origin.peer.clone(),
        }
    }

    /// The server's own acts (`server`, `reaper`, `pool`).
    pub fn internal(name: &str) -> Actor {
        Actor {
            name: name.into(),
            ..Actor::default()
        }
    }
}

/// One act to record.
#[derive(Debug, Clone, Default)]
pub struct Act {
    pub action: String,
    pub session_id: String,
    pub owner: String,
    /// `OK` or a gRPC code name.
    pub result: String,
    pub detail: String,
    /// The organisation of the session or caller; empty: none.
    pub org: String,
}

impl Act {
    pub fn new(action: &str) -> Act {
        Act {
            action: action.into(),
            result: "OK".into(),
            ..Act::default()
        }
    }

    pub fn session(mut self, id: &str, owner: &str) -> Act {
        self.session_id = id.into();
        self.owner = owner.into();
        self
    }

    /// The organisation it concerns (its administrators read it).
    pub fn org(mut self, org: Option<&str>) -> Act {
        self.org = org.unwrap_or_default().into();
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Act {
        self.detail = detail.into();
        self
    }

    /// The act failed or was refused with `err`.
    pub fn failed(mut self, err: &crate::domain::error::Error) -> Act {
        self.result = code_name(err.code().grpc()).into();
        self.detail = err.to_string();
        self
    }

    /// The act failed or was refused with `status`.
    pub fn refused(mut self, status: &tonic::Status) -> Act {
        self.result = code_name(status.code()).into();
        self.detail = status.message().to_string();
        self
    }
}

/// The trail: cheap to clone.
#[derive(Clone)]
pub struct Audit {
    store: Store,
    file: Option<Arc<Mutex<File>>>,
    path: Option<PathBuf>,
}

/// A line of the JSON file.
#[derive(Serialize)]
struct Line<'a> {
    /// RFC 3339, UTC.
    time: String,
    actor: &'a str,
    subject: &'a str,
    fingerprint: &'a str,
    peer: &'a str,
    action: &'a str,
    session_id: &'a str,
    owner: &'a str,
    result: &'a str,
    detail: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    org: &'a str,
}

impl Audit {
    /// The trail in `store`, and appended to `file` when given (created
    /// 0640 if missing).
    pub fn open(store: Store, file: Option<&Path>) -> Result<Audit, AuditError> {
        let opened = match file {
            None => None,
            Some(path) => {
                use std::os::unix::fs::OpenOptionsExt;
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o640)
                    .open(path)
                    .map_err(|source| AuditError {
                        path: path.display().to_string(),
                        source,
                    })?;
                Some(Arc::new(Mutex::new(f)))
            }
        };
        Ok(Audit {
            store,
            file: opened,
            path: file.map(Path::to_path_buf),
        })
    }

    /// Records `act` by `actor`, now.
    pub async fn record(&self, actor: &Actor, act: Act) {
        let record = AuditRecord {
            id: 0,
            time_ms: now_ms(),
            actor: actor.name.clone(),
            subject: actor.subject.clone(),
            fingerprint: actor.fingerprint.clone(),
            peer: actor.peer.clone(),
            action: act.action,
            session_id: act.session_id,
            owner: act.owner,
            result: act.result,
            detail: act.detail,
            org: act.org,
        };
        self.append_line(&record);
        if let Err(err) = self.store.append_audit(record).await {
            tracing::error!(error = %err, "an audit entry could not be stored");
        }
    }

    /// Records `act` without waiting (from a synchronous place, such as a
    /// response body's end).
    pub fn spawn_record(&self, actor: Actor, act: Act) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(action = %act.action, "an audit entry was lost: no runtime");
            return;
        };
        let this = self.clone();
        runtime.spawn(async move { this.record(&actor, act).await });
    }

    fn append_line(&self, r: &AuditRecord) {
        let Some(file) = &self.file else { return };
        let line = Line {
            time: jiff::Timestamp::from_millisecond(r.time_ms)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            actor: &r.actor,
            subject: &r.subject,
            fingerprint: &r.fingerprint,
            peer: &r.peer,
            action: &r.action,
            session_id: &r.session_id,
            owner: &r.owner,
            result: &r.result,
            detail: &r.detail,
            org: &r.org,
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        let mut f = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(err) = f.write_all(text.as_bytes()) {
            let path = self.path.as_deref().unwrap_or(Path::new("?"));
            tracing::error!(path = %path.display(), error = %err, "an audit line could not be written");
        }
    }
}

/// The name of a gRPC code, as the protocol spells it (`PERMISSION_DENIED`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The codes whose calls the trail records as refusals.
pub fn is_refusal(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::ResourceExhausted
    )
}
