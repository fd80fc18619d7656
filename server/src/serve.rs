//! Starting the server: data dir, store, SSH key, recovery of sessions a
//! previous process left, then the gRPC services on one port (DesktopService,
//! health, reflection) until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use daas_api::v1::{FILE_DESCRIPTOR_SET, desktop_service_server::DesktopServiceServer};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::{
    config::Config,
    pipeline::Pipeline,
    service::DesktopApi,
    sshkey::{self, SshKeyError},
    store::{Store, StoreError},
};

/// Largest request the server decodes.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
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
    #[error(transparent)]
    SshKey(#[from] SshKeyError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A server with its port bound, ready to serve.
pub struct BoundServer {
    listener: TcpListener,
    addr: SocketAddr,
    store: Store,
    pipeline: Pipeline,
    config: Arc<Config>,
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
        let store = Store::open(&config.database)?;
        let ssh_public_key = sshkey::ensure(&config.ssh.private_key)?;
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
        let config = Arc::new(config);
        let pipeline = Pipeline::new(config.clone(), store.clone(), ssh_public_key);
        Ok(BoundServer {
            listener,
            addr,
            store,
            pipeline,
            config,
        })
    }

    /// The address the server listens on (with the real port when the
    /// config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cleans up after a previous process, then serves until `shutdown`
    /// completes; running tools are stopped before it returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
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
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| StartError::Dir {
                path: "reflection".into(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let api = DesktopApi {
            config: self.config.clone(),
            store: self.store.clone(),
            pipeline: self.pipeline.clone(),
        };
        let desktop = DesktopServiceServer::new(api).max_decoding_message_size(MAX_REQUEST_BYTES);
        let pipeline = self.pipeline.clone();
        let stop = async move {
            shutdown.await;
            tracing::info!("shutting down");
            // Ends the streams that follow sessions, so the server can stop.
            pipeline.shutdown_token().cancel();
        };
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(desktop)
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), stop)
            .await?;
        self.pipeline.shutdown(SHUTDOWN_GRACE).await;
        Ok(())
    }
}
