//! The server's Prometheus metrics: one registry, encoded in the text
//! format on `GET /metrics`. What the store holds (sessions by state and
//! template) is read at each scrape, so it is never stale after a restart.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{family::Family, gauge::Gauge, info::Info},
    registry::Registry,
};
use tokio::sync::Mutex;

use crate::store::{Store, StoreError};

/// Labels of `daas_sessions`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    state: String,
    template: String,
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

pub struct Metrics {
    registry: Registry,
    sessions: Family<SessionLabels, Gauge>,
    /// One scrape at a time: a scrape clears and refills the gauges of the
    /// store's counts.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("daas");
        registry.register(
            "build",
            "The daas-server version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let sessions = Family::<SessionLabels, Gauge>::default();
        registry.register(
            "sessions",
            "Sessions in the store by state and template",
            sessions.clone(),
        );
        Metrics {
            registry,
            sessions,
            scrape: Mutex::new(()),
        }
    }

    /// Every metric in the Prometheus text format, the store's counts read
    /// now.
    pub async fn render(&self, store: &Store) -> Result<String, MetricsError> {
        let _one = self.scrape.lock().await;
        let counts = store.count_by_state().await?;
        self.sessions.clear();
        for (state, template, count) in counts {
            let state = state.as_str_name().trim_start_matches("SESSION_STATE_");
            let labels = SessionLabels {
                state: state.to_string(),
                template,
            };
            self.sessions
                .get_or_create(&labels)
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
