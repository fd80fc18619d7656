//! Starting the server: data dir, store, SSH key, recovery of sessions a
//! previous process left, then the gRPC services on one port (DesktopService,
//! health, reflection) and the HTTP side (`[http]`) until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use daas_api::v1::{
    FILE_DESCRIPTOR_SET, agent_service_server::AgentServiceServer,
    desktop_service_server::DesktopServiceServer,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::{
    api::grpc::agent::AgentApi,
    api::grpc::auth::{AuthLayer, Policy},
    api::grpc::desktop::DesktopApi,
    api::grpc::metered::MeterLayer,
    api::http::{HttpError, HttpListeners, HttpState},
    audit::{Audit, AuditError},
    config::{Config, Tls},
    pki::{self, PkiError, revoked::RevocationList},
    provision::Pipeline,
    provision::sshkey::{self, SshKeyError},
    store::{Store, StoreError},
};

/// Largest request the server decodes.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// HTTP/2 streams one connection may have open.
const MAX_STREAMS_PER_CONNECTION: u32 = 128;
/// How long running tools get to stop at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the store's deployment id {0:?} is not 1-32 of a-z0-9 (the table `deployment` was edited)"
    )]
    Deployment(String),
    #[error(transparent)]
    SshKey(#[from] SshKeyError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("cannot serve reflection: {0}")]
    Reflection(String),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Directory(#[from] crate::web::ldap::DirectoryError),
    #[error(transparent)]
    CookieKeys(#[from] crate::web::cookie_keys::CookieKeyError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    KeptDisks(String),
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, StartError> {
    std::fs::read(path).map_err(|source| StartError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The CA that signs agent certificates, when agents are configured.
fn agent_ca(config: &Config) -> Result<Option<pki::AgentAuthority>, StartError> {
    if config.agent.endpoint.is_none() {
        return Ok(None);
    }
    let Tls::Mutual { ca, .. } = &config.tls else {
        tracing::warn!("agent.endpoint is set but TLS is off: desktops get no agent credential");
        return Ok(None);
    };
    let (cert, key) = config.agent.ca_files();
    let agent_ca = pki::Ca::load(&cert, &key)?;
    if !agent_ca.is_intermediate() && &cert == ca {
        tracing::warn!(
            key = %key.display(),
            "agent certificates are signed by the root CA (tls.ca), whose key the server then keeps online: a PKI made by this version's `pki init` has an agents' CA for that"
        );
    }
    let server_ca_pem = String::from_utf8_lossy(&read(ca)?).into_owned();
    Ok(Some(pki::AgentAuthority {
        ca: agent_ca,
        server_ca_pem,
    }))
}

/// The subject of the agents' CA when it is not `tls.ca` itself: agent
/// certificates must come from it, and no user certificate may.
fn agents_ca_subject(config: &Config) -> Result<Option<Vec<u8>>, StartError> {
    let Tls::Mutual { ca, .. } = &config.tls else {
        return Ok(None);
    };
    let (cert, _) = config.agent.ca_files();
    if &cert == ca || !cert.exists() {
        return Ok(None);
    }
    let pem = read(&cert)?;
    let subject = pki::pem_to_der(&String::from_utf8_lossy(&pem))
        .and_then(|der| pki::subject_of(&der))
        .ok_or_else(|| StartError::Read {
            path: cert.display().to_string(),
            source: std::io::Error::other("no PEM certificate in it"),
        })?;
    Ok(Some(subject))
}

/// The TLS settings of the port, creating the dev PKI first if asked.
fn tls_config(
    tls: &Tls,
    data_dir: &std::path::Path,
) -> Result<Option<ServerTlsConfig>, StartError> {
    let Tls::Mutual {
        ca,
        cert,
        key,
        dev_pki,
        ..
    } = tls
    else {
        return Ok(None);
    };
    if *dev_pki {
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty() && u != "root");
        let user = user.unwrap_or_else(|| "dev".into());
        let dir = data_dir.join("pki");
        if pki::ensure_dev(&dir, &user)? {
            let paths = pki::PkiPaths { dir };
            tracing::warn!(
                ca = %paths.ca().display(),
                cert = %paths.user_cert(&user).display(),
                key = %paths.user_key(&user).display(),
                "dev PKI created: a CA, a server certificate for localhost and an admin certificate for {user}"
            );
        }
    }
    let identity = Identity::from_pem(read(cert)?, read(key)?);
    Ok(Some(
        ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(Certificate::from_pem(read(ca)?)),
    ))
}

/// A server with its port bound, ready to serve.
pub struct BoundServer {
    listener: TcpListener,
    http: HttpListeners,
    metrics: Arc<crate::metrics::Metrics>,
    audit: Audit,
    agent_ca_loaded: bool,
    tls: Option<ServerTlsConfig>,
    revoked: Arc<RevocationList>,
    addr: SocketAddr,
    store: Store,
    pipeline: Pipeline,
    config: Arc<Config>,
    /// What "now" is for the users' schedules (a manual clock in tests).
    clock: crate::domain::time::Clock,
}

impl BoundServer {
    /// Prepares everything and binds the listening port.
    pub async fn bind(config: Config) -> Result<BoundServer, StartError> {
        for dir in [
            config.data_dir.clone(),
            config.data_dir.join("sessions"),
            config.terraform.plugin_cache_dir.clone(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| StartError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let tls = tls_config(&config.tls, &config.data_dir)?;
        let store = Store::connect(&config).await?;
        store.set_lease(i64::try_from(config.store_lease.as_millis()).unwrap_or(i64::MAX));
        let deployment = store.deployment().await?;
        if !crate::domain::contract::is_deployment_id(&deployment) {
            return Err(StartError::Deployment(deployment));
        }
        tracing::info!(%deployment, "this deployment's id, from the store");
        let ssh_public_key = if store.is_shared() {
            let configured =
                config.ssh.private_key != crate::config::Ssh::made_key(&config.data_dir);
            sshkey::share(&config.ssh.private_key, configured, &store).await?
        } else {
            sshkey::ensure(&config.ssh.private_key)?
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let http = HttpListeners::bind(&config).await?;
        // The directory's CA is read now, so a bad one stops the start.
        if let Some(web) = &config.web {
            crate::web::ldap::Directory::new(&web.ldap)?;
        }
        // A malformed revocation list stops the start: it would revoke nothing.
        let revoked = Arc::new(match &config.tls {
            Tls::Mutual { revoked, .. } => RevocationList::open(revoked)?,
            Tls::Plaintext => RevocationList::none(),
        });
        let config = Arc::new(config);
        let agent_ca = agent_ca(&config)?;
        let agent_ca_loaded = agent_ca.is_some();
        let metrics = Arc::new(crate::metrics::Metrics::new().with_orgs(config.orgs.clone()));
        let audit = Audit::open(store.clone(), config.audit.file.as_deref())?;
        let pipeline = Pipeline::new(
            config.clone(),
            store.clone(),
            deployment,
            ssh_public_key,
            agent_ca,
            metrics.clone(),
            audit.clone(),
        );
        Ok(BoundServer {
            audit,
            listener,
            http,
            metrics,
            agent_ca_loaded,
            tls,
            revoked,
            addr,
            store,
            pipeline,
            config,
            clock: crate::domain::time::Clock::System,
        })
    }

    /// Reads "now" for the users' schedules from `clock` (a manual one in
    /// tests), and for the reaper's outlook shown with each session.
    pub fn with_clock(self, clock: crate::domain::time::Clock) -> BoundServer {
        BoundServer { clock, ..self }
    }

    fn tls_is_off(&self) -> bool {
        matches!(self.config.tls, Tls::Plaintext)
    }

    /// The address the server listens on (with the real port when the
    /// config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The HTTPS side's address (`http.listen`), when on.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.https_addr()
    }

    /// The web portal's address (`web.listen`), when on.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.http.web_addr()
    }

    /// Whether the web portal is HTTPS (not: plain on loopback).
    pub fn web_is_tls(&self) -> bool {
        self.http.web_is_tls()
    }

    /// The plain loopback metrics address (`http.metrics_listen`), when on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.http.metrics_addr()
    }

    /// Cleans up after a previous process, then serves until `shutdown`
    /// completes; running tools are stopped before it returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        // Before recovery, whose FAILED events they tell too.
        let webhooks = crate::webhooks::Webhooks::start(
            &self.config,
            &self.store,
            self.metrics.clone(),
            self.pipeline.shutdown_token(),
        );
        match crate::provision::nodes::refresh(&self.pipeline).await {
            Ok(Some(nodes)) => tracing::info!(nodes, "placing desktops on the cluster's nodes"),
            Ok(None) => {}
            Err(err) => match crate::provision::nodes::place_with_last_report(&self.pipeline).await
            {
                Ok(0) => {
                    tracing::warn!(error = %err, "could not read the cluster's nodes at start; none recorded: placing nothing until they are read")
                }
                Ok(nodes) => {
                    tracing::warn!(error = %err, nodes, "could not read the cluster's nodes at start; placing with the last report")
                }
                Err(store) => {
                    tracing::warn!(error = %err, store = %store, "could not read the cluster's nodes at start, nor the last report")
                }
            },
        }
        self.pipeline
            .check_kept_disks()
            .await
            .map_err(StartError::KeptDisks)?;
        let recovering = self.pipeline.recover().await?;
        if recovering > 0 {
            tracing::warn!(
                sessions = recovering,
                "cleaning up sessions a previous server left in progress"
            );
        }
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<DesktopServiceServer<DesktopApi>>()
            .await;
        health_reporter
            .set_serving::<AgentServiceServer<AgentApi>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| StartError::Reflection(e.to_string()))?;
        // Older tools (grpcurl before 1.8.8, Python's grpcio-reflection)
        // speak only v1alpha.
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| StartError::Reflection(e.to_string()))?;
        let pools = crate::pool::Pools::new(
            self.config.clone(),
            self.store.clone(),
            self.pipeline.clone(),
        );
        let mut sessions = crate::sessions::Sessions::new(
            self.config.clone(),
            self.store.clone(),
            self.pipeline.clone(),
            pools.clone(),
            self.audit.clone(),
        );
        sessions.clock = self.clock.clone();
        let sessions = Arc::new(sessions);
        let schedules = tokio::spawn(sessions.clone().run_schedules(self.clock.clone()));
        let desktop = DesktopServiceServer::new(DesktopApi::new(sessions.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        let agents = AgentServiceServer::new(AgentApi::new(
            self.config.clone(),
            self.store.clone(),
            self.metrics.clone(),
        ))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
        let node_watch = tokio::spawn(crate::provision::nodes::run(self.pipeline.clone()));
        let sweeper = tokio::spawn(crate::provision::sweeper::run(
            self.pipeline.clone(),
            self.config.terraform.sweep_interval,
        ));
        let retention = tokio::spawn(crate::store::retention::run(
            self.store.clone(),
            self.config.limits.output_retention,
            self.config.limits.audit_retention,
            self.pipeline.shutdown_token(),
        ));
        let leases = tokio::spawn(self.pipeline.clone().keep_leases(self.config.store_lease));
        let pool_loop = tokio::spawn(pools.run());
        let reaper = tokio::spawn(crate::reaper::run(
            self.config.clone(),
            self.store.clone(),
            self.pipeline.clone(),
            crate::domain::time::Clock::System,
        ));
        let pipeline = self.pipeline.clone();
        let stop = async move {
            shutdown.await;
            tracing::info!("shutting down");
            // Ends the streams that follow sessions, so the server can stop.
            pipeline.shutdown_token().cancel();
        };
        let policy = Policy {
            admins: self.config.auth.admins.iter().cloned().collect(),
            plaintext: self.tls_is_off(),
            revoked: self.revoked.clone(),
            agents_ca: agents_ca_subject(&self.config)?.map(Arc::new),
        };
        let metrics = self.metrics.clone();
        let web_router = match &self.config.web {
            Some(web) => {
                let directory = crate::web::ldap::Directory::new(&web.ldap)?
                    .with_reader(self.config.secrets.web_ldap_password.clone());
                if !directory.can_recheck() {
                    tracing::warn!(
                        "web.ldap.bind_user is not set: signed-in users' groups are not read again, so a user taken out of web.allowed_group keeps the portal until their sign-in ends"
                    );
                }
                let cookie_keys = crate::web::cookie_keys::CookieKeys::open(
                    &web.cookie_keys.clone().unwrap_or_else(|| {
                        self.config
                            .data_dir
                            .join(crate::web::cookie_keys::FILE_NAME)
                    }),
                )?;
                let state = Arc::new(crate::web::WebState::new(
                    self.config.clone(),
                    web.clone(),
                    directory,
                    cookie_keys,
                    sessions.clone(),
                    self.store.clone(),
                    self.audit.clone(),
                ));
                tokio::spawn(crate::web::recording::sweep_until(
                    state.recordings.clone(),
                    crate::web::recording::SWEEP_EVERY,
                    self.pipeline.shutdown_token(),
                ));
                crate::web::router(state)
            }
            None => axum::Router::new(),
        };
        let http_state = Arc::new(HttpState {
            config: self.config.clone(),
            store: self.store.clone(),
            metrics: metrics.clone(),
            agent_ca_loaded: self.agent_ca_loaded,
            sessions,
        });
        let http = tokio::spawn(self.http.serve(
            crate::api::http::https_router(http_state.clone()),
            crate::api::http::router(http_state),
            web_router,
            policy.clone(),
            self.pipeline.shutdown_token(),
        ));
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls)?;
        } else {
            tracing::warn!(
                addr = %self.addr,
                "PLAINTEXT gRPC without authentication (tls.plaintext = true): every local caller is an administrator"
            );
        }
        builder
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
            .layer(
                MeterLayer::new(
                    metrics,
                    &[FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET],
                )
                .with_audit(self.audit.clone()),
            )
            .layer(AuthLayer::new(policy))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .add_service(desktop)
            .add_service(agents)
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), stop)
            .await?;
        self.pipeline.shutdown(SHUTDOWN_GRACE).await;
        webhooks.stopped().await;
        let _ = http.await;
        let _ = reaper.await;
        let _ = pool_loop.await;
        let _ = schedules.await;
        let _ = leases.await;
        let _ = sweeper.await;
        let _ = node_watch.await;
        let _ = retention.await;
        Ok(())
    }
}
