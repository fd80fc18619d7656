//! A tool's output can hold secrets (passwords and tokens it was given):
//! every line goes through the session log, which masks them before the
//! line is stored as an event or written to the server's log. The log also
//! records the running child in the store, so that a restarted server
//! finds the tool to adopt.

use std::sync::Arc;

use daas_api::v1::{OutputLine, OutputStream, Tool};

use crate::{
    files::MASK,
    metrics::Metrics,
    store::{ChildRecord, Store},
};

/// Where a tool's lines go: the events of one session, with its secrets
/// masked, or the server's log for work that belongs to no session.
#[derive(Clone)]
pub struct SessionLog {
    pub store: Store,
    /// Empty: no session; lines go to the server's log.
    pub session_id: String,
    secrets: Vec<String>,
    /// Where each run's end is counted (`daas_tool_runs_total`).
    pub(super) metrics: Option<Arc<Metrics>>,
}

impl SessionLog {
    pub fn new(store: Store, session_id: String, secrets: Vec<String>) -> Self {
        let secrets = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        SessionLog {
            store,
            session_id,
            secrets,
            metrics: None,
        }
    }

    /// The same log, counting each run's end in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> SessionLog {
        self.metrics = Some(metrics);
        self
    }

    /// The same log, masking `more` too.
    pub fn with_secrets<'a>(&self, more: impl IntoIterator<Item = &'a str>) -> SessionLog {
        let mut log = self.clone();
        log.secrets.extend(
            more.into_iter()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        log
    }

    /// Masks every secret in `text`.
    pub fn redact(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_string(), |acc, secret| acc.replace(secret, MASK))
    }

    /// Records one line (masked) as an event. A store failure is logged: a
    /// lost output line must not fail the provisioning.
    pub async fn line(&self, tool: Tool, stream: OutputStream, text: &str) {
        let text = self.redact(text);
        if self.session_id.is_empty() {
            tracing::info!(tool = tool.as_str_name(), "{text}");
            return;
        }
        let line = OutputLine {
            tool: tool as i32,
            stream: stream as i32,
            text,
        };
        if let Err(err) = self.store.output(&self.session_id, line).await {
            tracing::warn!(session = %self.session_id, error = %err, "could not record an output line");
        }
    }

    pub(super) async fn child(&self, child: Option<ChildRecord>) {
        if self.session_id.is_empty() {
            return;
        }
        if let Err(err) = self.store.set_child(&self.session_id, child).await {
            tracing::warn!(session = %self.session_id, error = %err, "could not record a child process");
        }
    }
}
