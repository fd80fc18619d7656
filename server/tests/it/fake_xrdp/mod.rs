//! A fake xrdp on loopback, the gateway route in front of it and the browser's
//! side of RDCleanPath: shared by `tests/it/gateway.rs` and `benches/gateway.rs`
//! (each uses a part of it, hence the `dead_code` allowance).
#![allow(dead_code)]

pub mod pdus;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use axum::routing::get;
use daas_server::web::gateway::{self, GatewayError, RelayEnd, Relayed, Target};
use futures_util::StreamExt as _;
use ironrdp_rdcleanpath::{RDCleanPathMessage, RDCleanPathPdu};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// The one ticket the gateway route accepts.
pub const TICKET: &str = "ticket-0123456789";
/// An X.224 connection request with RDP_NEG_REQ asking for TLS or CredSSP, as IronRDP sends.
pub const X224_REQUEST: [u8; 19] = [3, 0, 0, 19, 14, 0xE0, 0, 0, 0, 0, 0, 1, 0, 8, 0, 3, 0, 0, 0];
/// xrdp's answer: an X.224 connection confirm with RDP_NEG_RSP selecting PROTOCOL_SSL.
pub const X224_CONFIRM: [u8; 19] = [
    3, 0, 0, 19, 14, 0xD0, 0, 0, 0x12, 0x34, 0, 2, 0x1F, 8, 0, 1, 0, 0, 0,
];

/// The browser's end of the gateway.
pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// What each relay returned, as the portal's handler would log it.
pub type Results = mpsc::UnboundedReceiver<Result<Relayed, String>>;

pub struct FakeRdp {
    pub addr: SocketAddr,
    pub cert: CertificateDer<'static>,
    /// Connections accepted.
    pub accepted: Arc<AtomicUsize>,
    /// The X.224 request of each connection.
    pub requests: mpsc::UnboundedReceiver<Vec<u8>>,
}

/// A fake xrdp: reads the X.224 request, answers `confirm`, and after a
/// success confirm does TLS (self-signed certificate for "desktop.test") and
/// hands the stream to `serve`. After RDP_NEG_FAILURE it closes.
pub async fn fake_rdp<F, Fut>(confirm: [u8; 19], serve: F) -> FakeRdp
where
    F: Fn(TlsStream<TcpStream>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (acceptor, cert) = self_signed_tls();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let (tx, requests) = mpsc::unbounded_channel();
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx, serve) = (acceptor.clone(), tx.clone(), serve.clone());
            tokio::spawn(async move {
                let Ok(request) = read_tpkt(&mut tcp).await else {
                    return;
                };
                let _ = tx.send(request);
                if tcp.write_all(&confirm).await.is_err() || confirm[11] == 3 {
                    return; // RDP_NEG_FAILURE: no TLS follows
                }
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(tls).await;
                }
            });
        }
    });
    FakeRdp {
        addr,
        cert,
        accepted,
        requests,
    }
}

/// A desktop's TLS side: a self-signed certificate for "desktop.test",
/// and that certificate.
pub fn self_signed_tls() -> (tokio_rustls::TlsAcceptor, CertificateDer<'static>) {
    let key = rcgen::generate_simple_self_signed(vec!["desktop.test".to_owned()])
        .expect("self-signed certificate");
    let cert = key.cert.der().clone();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der())),
        )
        .expect("server config");
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), cert)
}

/// The SHA-256 (hex) by which the server pins `cert`.
pub fn cert_sha256(cert: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, cert))
}

impl FakeRdp {
    /// Where a ticket leads to reach this fake, its certificate pinned.
    pub fn target(&self) -> Target {
        target(self.addr, &self.cert)
    }
}

/// A ticket's target: `addr`, with `cert` the one certificate accepted there.
pub fn target(addr: SocketAddr, cert: &[u8]) -> Target {
    Target {
        addr,
        cert_sha256: cert_sha256(cert),
        session_id: "s-1".to_owned(),
        autologon: None,
        clipboard: daas_server::domain::catalog::Clipboard::Both,
        record: None,
    }
}

/// Echoes until the client leaves.
pub async fn echo(mut tls: TlsStream<TcpStream>) {
    let mut buf = vec![0u8; 8192];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = tls.shutdown().await;
}

/// One TPKT (X.224 request or confirm).
pub async fn read_tpkt<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await?;
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut pdu = header.to_vec();
    pdu.resize(len.max(4), 0);
    stream.read_exact(&mut pdu[4..]).await?;
    Ok(pdu)
}

#[derive(Clone)]
struct Gw {
    target: Target,
    end: RelayEnd,
    results: mpsc::UnboundedSender<Result<Relayed, String>>,
}

async fn ws_route(State(gw): State<Gw>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| async move {
        let target = gw.target.clone();
        let result = gateway::relay(
            socket,
            move |ticket: String| async move {
                if ticket == TICKET {
                    Ok(target)
                } else {
                    Err("this ticket is unknown, used or expired".to_owned())
                }
            },
            gw.end.clone(),
        )
        .await;
        let _ = gw
            .results
            .send(result.map_err(|e: GatewayError| e.to_string()));
    })
}

/// `/gateway`, calling `gateway::relay` with `target` as where [`TICKET`] leads,
/// and each relay's result; relays end only when a side closes.
pub fn router(target: Target) -> (Router, Results) {
    let end = RelayEnd {
        stop: CancellationToken::new(),
        idle: Duration::from_secs(3600),
    };
    router_ending(target, end)
}

/// The same, each relay also ending as `end` says.
pub fn router_ending(target: Target, end: RelayEnd) -> (Router, Results) {
    let (results, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/gateway", get(ws_route))
        .with_state(Gw {
            target,
            end,
            results,
        });
    (app, rx)
}

/// The next relay's result, within 10 s.
pub async fn result(results: &mut Results) -> Result<Relayed, String> {
    tokio::time::timeout(Duration::from_secs(10), results.recv())
        .await
        .expect("the relay ended within 10 s")
        .expect("a result")
}

/// An RDCleanPath request as IronRDP's web client sends it, DER.
pub fn request(destination: &str, ticket: &str) -> Vec<u8> {
    RDCleanPathPdu::new_request(
        X224_REQUEST.to_vec(),
        destination.to_owned(),
        ticket.to_owned(),
        None,
    )
    .expect("request")
    .to_der()
    .expect("DER")
}

/// The next binary message, skipping pings and pongs.
pub async fn next_binary(ws: &mut Client) -> Vec<u8> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("the WebSocket is open")
            .expect("a WebSocket message");
        match message {
            Message::Binary(data) => return data.to_vec(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

/// The gateway's RDCleanPath answer.
pub async fn response(ws: &mut Client) -> RDCleanPathMessage {
    let der = next_binary(ws).await;
    RDCleanPathPdu::from_der(&der)
        .expect("an RDCleanPath PDU")
        .into_message()
        .expect("a valid RDCleanPath message")
}
