//! The server's Prometheus metrics: one registry, encoded in the text
//! format on `GET /metrics`. What the store holds (sessions by state and
//! template) is read at each scrape, so it is never stale after a restart.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
        info::Info,
    },
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

/// Labels of `daas_grpc_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: String,
    code: String,
}

/// Labels of `daas_grpc_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
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
    grpc_requests: Family<GrpcLabels, Counter>,
    grpc_durations: Family<MethodLabels, Histogram>,
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
        let grpc_requests = Family::<GrpcLabels, Counter>::default();
        registry.register(
            "grpc_requests",
            "gRPC requests by method and code",
            grpc_requests.clone(),
        );
        // 1 ms to about 70 min: a CreateSession stream lasts as long as its
        // provisioning.
        let grpc_durations =
            Family::<MethodLabels, Histogram>::new_with_constructor(|| -> Histogram {
                Histogram::new(exponential_buckets(0.001, 4.0, 12))
            });
        registry.register(
            "grpc_request_duration_seconds",
            "gRPC request durations, from the request to the response's end",
            grpc_durations.clone(),
        );
        Metrics {
            registry,
            sessions,
            grpc_requests,
            grpc_durations,
            scrape: Mutex::new(()),
        }
    }

    /// One gRPC request that ended with `code` after `seconds`.
    pub fn grpc_request(&self, method: &str, code: tonic::Code, seconds: f64) {
        self.grpc_requests
            .get_or_create(&GrpcLabels {
                method: method.to_string(),
                code: format!("{code:?}"),
            })
            .inc();
        self.grpc_durations
            .get_or_create(&MethodLabels {
                method: method.to_string(),
            })
            .observe(seconds);
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
