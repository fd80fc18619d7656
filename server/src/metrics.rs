//! The server's Prometheus metrics: one registry, encoded in the text
//! format on `GET /metrics`. What the store holds (sessions by state and
//! template, provisions in flight, the age of each READY desktop's last
//! agent report) is read at each scrape, so it is never stale after a
//! restart; the pipeline reports each stage change
//! ([`Metrics::stage_change`]): stage durations, time to READY, creates and
//! destroys by result; the agent service each report. The cluster's nodes
//! are read from the store at each scrape too (`metrics/nodes.rs`), and the
//! organisations' usage and quotas (`metrics/orgs.rs`).

use daas_api::v1::{SessionEvent, SessionState, session_event::Kind};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
        info::Info,
    },
    registry::{Metric, Registry},
};
use tokio::sync::Mutex;

use crate::store::{SessionRecord, Store, StoreError};

mod nodes;
mod orgs;

/// Stage and READY histograms: 1 s to about 34 min.
fn stage_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 12))
}

/// Tool runs: 100 ms to about 55 min.
fn tool_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 16))
}

/// gRPC durations: 1 ms to about 70 min (a CreateSession stream lasts as
/// long as its provisioning).
fn grpc_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 12))
}

/// Registers `metric` as `name` and hands back a handle on it.
fn add<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Labels of `daas_sessions`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    state: String,
    template: String,
}

/// Labels of `daas_agent_last_report_age_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    session: String,
    template: String,
}

/// Labels of `daas_stage_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: String,
    template: String,
}

/// Labels of the creates' metrics. `origin`: `create` (built for its
/// user), `claim` (a warm pool's desktop claimed) or `pool` (a pool's build).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CreateLabels {
    template: String,
    origin: String,
}

/// Labels of the results' counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    template: String,
    origin: String,
    result: String,
}

/// Labels of `daas_tool_runs_total`: the tool (terraform, ssh, ansible)
/// and how its run ended (`provision::tool::end_reason`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    tool: String,
    reason: String,
}

/// Labels of `daas_tool_run_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolNameLabels {
    tool: String,
}

/// Labels of `daas_reaps_total`: the rule that reaped (idle, disconnected,
/// max_lifetime, agent_lost, pool_max_age).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReapLabels {
    reason: String,
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

/// Labels of `daas_webhook_deliveries_total`: the webhook's name (or
/// index; never its URL), the event, and `delivered`, `failed` or
/// `dropped` (a webhook this server does not have).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: String,
    event: String,
    result: String,
}

/// Labels of `daas_webhook_attempts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookNameLabels {
    webhook: String,
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
    in_flight: Gauge,
    agent_reports: Counter,
    agent_age: Family<AgentLabels, Gauge>,
    stage_seconds: Family<StageLabels, Histogram>,
    ready_seconds: Family<CreateLabels, Histogram>,
    creates: Family<ResultLabels, Counter>,
    destroys: Family<ResultLabels, Counter>,
    grpc_requests: Family<GrpcLabels, Counter>,
    grpc_durations: Family<MethodLabels, Histogram>,
    tool_runs: Family<ToolLabels, Counter>,
    tool_seconds: Family<ToolNameLabels, Histogram>,
    reaps: Family<ReapLabels, Counter>,
    webhook_deliveries: Family<WebhookLabels, Counter>,
    webhook_attempts: Family<WebhookNameLabels, Counter>,
    nodes: nodes::NodeGauges,
    orgs: orgs::OrgGauges,
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
        let r = &mut registry;
        let sessions = add(
            r,
            "sessions",
            "Sessions in the store by state and template",
            Family::default(),
        );
        let in_flight = add(
            r,
            "provisions_in_flight",
            "Sessions in PROVISIONING, BOOTING or CONFIGURING",
            Gauge::default(),
        );
        let agent_reports = add(
            r,
            "agent_reports",
            "Activity reports received from the agents",
            Counter::default(),
        );
        let agent_age = add(
            r,
            "agent_last_report_age_seconds",
            "Seconds since each READY desktop's agent last reported",
            Family::default(),
        );
        let stage_seconds = add(
            r,
            "stage_duration_seconds",
            "Time sessions spent in a stage (QUEUED: waiting for a provisioning permit)",
            Family::new_with_constructor(stage_histogram as fn() -> Histogram),
        );
        let ready_seconds = add(
            r,
            "time_to_ready_seconds",
            "From the request (a claim: from the claim) to READY",
            Family::new_with_constructor(stage_histogram as fn() -> Histogram),
        );
        let creates = add(
            r,
            "creates",
            "Creates that ended, by result (ready, failed)",
            Family::default(),
        );
        let destroys = add(
            r,
            "destroys",
            "Destroys that ended, by result (destroyed, failed)",
            Family::default(),
        );
        let grpc_requests = add(
            r,
            "grpc_requests",
            "gRPC requests by method and code",
            Family::default(),
        );
        let grpc_durations = add(
            r,
            "grpc_request_duration_seconds",
            "gRPC request durations, from the request to the response's end",
            Family::new_with_constructor(grpc_histogram as fn() -> Histogram),
        );
        let tool_runs = add(
            r,
            "tool_runs",
            "Runs of terraform, ssh and ansible-playbook by how they ended \
             (ok, exit_<code>, signal, timeout, cancelled, spawn_failed, io_error)",
            Family::default(),
        );
        let tool_seconds = add(
            r,
            "tool_run_duration_seconds",
            "How long each tool run took",
            Family::new_with_constructor(tool_histogram as fn() -> Histogram),
        );
        let reaps = add(
            r,
            "reaps",
            "Desktops the reaper destroyed, by rule \
             (idle, disconnected, max_lifetime, agent_lost, pool_max_age)",
            Family::default(),
        );
        let webhook_deliveries = add(
            r,
            "webhook_deliveries",
            "Webhook deliveries by webhook, event and result (delivered, failed, dropped)",
            Family::default(),
        );
        let webhook_attempts = add(
            r,
            "webhook_attempts",
            "Webhook POSTs sent, retries included",
            Family::default(),
        );
        let nodes = nodes::NodeGauges::new(r);
        let orgs = orgs::OrgGauges::new(r);
        Metrics {
            nodes,
            orgs,
            registry,
            webhook_deliveries,
            webhook_attempts,
            tool_runs,
            tool_seconds,
            reaps,
            sessions,
            in_flight,
            agent_reports,
            agent_age,
            stage_seconds,
            ready_seconds,
            creates,
            destroys,
            grpc_requests,
            grpc_durations,
            scrape: Mutex::new(()),
        }
    }

    /// The organisations whose usage and quotas each scrape reads.
    pub fn with_orgs(self, orgs: crate::domain::orgs::Orgs) -> Metrics {
        Metrics {
            orgs: self.orgs.with_orgs(orgs),
            ..self
        }
    }

    /// A create refused by an organisation's quota (or a member's in it).
    pub fn quota_refused(&self, hit: &crate::store::LimitHit) {
        if let crate::store::LimitHit::Quota { org, member, over } = hit {
            self.orgs.refused(org, member.is_some(), over.resource);
        }
    }

    /// A stage change of `record`'s session that the store recorded as
    /// `event`.
    pub fn stage_change(&self, record: &SessionRecord, event: &SessionEvent) {
        let Some(Kind::StageChange(change)) = &event.kind else {
            return;
        };
        let from = change.previous();
        let to = SessionState::try_from(event.state).unwrap_or(SessionState::Unspecified);
        let template = record.template.clone();
        let origin = if record.is_claimed() {
            "claim"
        } else if record.is_unclaimed() {
            "pool"
        } else {
            "create"
        };
        if let Some(d) = change.previous_duration {
            let seconds = d.seconds as f64 + f64::from(d.nanos) / 1e9;
            self.stage_seconds
                .get_or_create(&StageLabels {
                    stage: from.label().to_string(),
                    template: template.clone(),
                })
                .observe(seconds.max(0.0));
        }
        let result = |result: &str| ResultLabels {
            template: template.clone(),
            origin: origin.to_string(),
            result: result.to_string(),
        };
        match (from, to) {
            (_, SessionState::Ready) => {
                let since = record.claimed_ms.unwrap_or(record.created_ms);
                let ms = crate::domain::time::now_ms().saturating_sub(since).max(0);
                self.ready_seconds
                    .get_or_create(&CreateLabels {
                        template: template.clone(),
                        origin: origin.to_string(),
                    })
                    .observe(ms as f64 / 1000.0);
                self.creates.get_or_create(&result("ready")).inc();
            }
            (SessionState::Destroying, SessionState::Destroyed) => {
                self.destroys.get_or_create(&result("destroyed")).inc();
            }
            (SessionState::Destroying, SessionState::Failed) => {
                self.destroys.get_or_create(&result("failed")).inc();
            }
            (_, SessionState::Failed) => {
                self.creates.get_or_create(&result("failed")).inc();
            }
            _ => {}
        }
    }

    /// One run of `tool` that ended as `reason` (`provision::tool::end_reason`) after
    /// `seconds`.
    pub fn tool_run(&self, tool: &str, reason: &str, seconds: f64) {
        self.tool_runs
            .get_or_create(&ToolLabels {
                tool: tool.to_string(),
                reason: reason.to_string(),
            })
            .inc();
        self.tool_seconds
            .get_or_create(&ToolNameLabels {
                tool: tool.to_string(),
            })
            .observe(seconds.max(0.0));
    }

    /// A desktop the reaper destroyed by `rule`.
    pub fn reap(&self, rule: &str) {
        self.reaps
            .get_or_create(&ReapLabels {
                reason: rule.to_string(),
            })
            .inc();
    }

    /// A webhook delivery of `event` that ended with `result`.
    pub fn webhook_delivery(&self, webhook: &str, event: &str, result: &str) {
        self.webhook_deliveries
            .get_or_create(&WebhookLabels {
                webhook: webhook.to_string(),
                event: event.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// One POST of a webhook delivery.
    pub fn webhook_attempt(&self, webhook: &str) {
        self.webhook_attempts
            .get_or_create(&WebhookNameLabels {
                webhook: webhook.to_string(),
            })
            .inc();
    }

    /// An agent's report, recorded.
    pub fn agent_report(&self) {
        self.agent_reports.inc();
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
        let mut in_flight = 0;
        for (state, template, count) in counts {
            if matches!(
                state,
                SessionState::Provisioning | SessionState::Booting | SessionState::Configuring
            ) {
                in_flight += count;
            }
            let labels = SessionLabels {
                state: state.label().to_string(),
                template,
            };
            self.sessions
                .get_or_create(&labels)
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.in_flight
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
        let now = crate::domain::time::now_ms();
        self.agent_age.clear();
        for record in store.list(None, Some(SessionState::Ready)).await? {
            if let Some(ms) = record.activity.last_report_ms {
                let labels = AgentLabels {
                    session: record.id,
                    template: record.template,
                };
                self.agent_age
                    .get_or_create(&labels)
                    .set(now.saturating_sub(ms).max(0) / 1000);
            }
        }
        self.nodes.set(&store.nodes().await?);
        self.orgs.set(store).await?;
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
