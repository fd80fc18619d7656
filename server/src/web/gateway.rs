//! The browser's RDP gateway: an RDCleanPath proxy on a WebSocket.
//!
//! The IronRDP web client cannot open TCP or TLS connections, so it sends the
//! gateway one RDCleanPath request (DER) that carries its X.224 connection
//! request and a proxy token. The gateway redeems the token for the desktop's
//! RDP endpoint (never the request's `destination`: the browser does not pick
//! where it connects), sends the X.224 request, reads the confirm, does the TLS
//! handshake with the desktop's xrdp and answers with the confirm and xrdp's
//! certificate chain. The client checks that chain itself (it needs the server's
//! public key for CredSSP, and decides whether to trust it), so the gateway
//! accepts any certificate. From then on the WebSocket carries the RDP stream
//! in clear and the gateway relays it to and from the TLS stream, counting bytes.
//! On the way it may give xrdp the sign-in's credentials (`autologon.rs`) and
//! enforces the template's clipboard policy (`clipboard.rs`), and keeps what
//! the browser gets when the template is recorded (`recording.rs`).
//!
//! What the tickets are and how they are checked is the caller's business (the
//! `redeem` callback); this file knows only the protocol.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::{SinkExt as _, StreamExt as _};
use ironrdp_rdcleanpath::{
    DetectionResult, GENERAL_ERROR_CODE, RDCleanPathErr, RDCleanPathPdu,
    TARGET_UNREACHABLE_ERROR_CODE, TLS_HANDSHAKE_FAILED_ERROR_CODE, VERSION_1,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::autologon::{Autologon, Rewriter};
use super::clipboard::{self, Unreadable};
use super::recording::{self, Recorder, RecordingError};
use crate::domain::catalog::Clipboard;

/// How long the browser has to send its RDCleanPath request once the WebSocket is open.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest RDCleanPath request accepted (a real one is about 100 bytes).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// How long the TCP connect, the X.224 exchange and the TLS handshake with the desktop may each take.
pub const DESKTOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest X.224 connection request or confirm accepted (a real one is 19 to ~60 bytes).
const MAX_X224_BYTES: usize = 512;
/// One read from the desktop's TLS stream becomes one WebSocket message of at most this size.
const RELAY_CHUNK: usize = 32 * 1024;

/// Where a ticket leads: the desktop's RDP endpoint, resolved by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// SHA-256 (hex) of the one certificate the desktop's xrdp may show
    /// (the one the server made for it).
    pub cert_sha256: String,
    /// The session the ticket was for, for the caller's logs.
    pub session_id: String,
    /// Sign in once: who xrdp logs in (`web.pass_through_credentials`).
    pub autologon: Option<super::autologon::Autologon>,
    /// The desktop's template's clipboard policy, enforced on the stream.
    pub clipboard: Clipboard,
    /// Where to keep what the browser gets, when the template is recorded:
    /// no recording, no relay.
    pub record: Option<recording::Plan>,
}

/// What one relayed connection did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// Bytes of RDP sent to the browser (after the RDCleanPath response).
    pub to_client: u64,
    /// Bytes of RDP sent to the desktop.
    pub to_server: u64,
    /// From the call of [`relay`] to the RDCleanPath response sent: the request, the ticket,
    /// the TCP connect, the X.224 exchange and the TLS handshake.
    pub setup: Duration,
    /// Which side ended the relay.
    pub closed_by: ClosedBy,
    /// Whether xrdp was given the sign-in's credentials.
    pub autologon: bool,
    /// The recording of what the browser got, if its template is recorded.
    pub recording: Option<String>,
}

/// Which side ended a relay; a reset or an I/O error counts as that side closing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClosedBy {
    Browser,
    Desktop,
    /// Nothing crossed it for the idle timeout.
    Idle,
    /// Its sign-in ended (signed out), or the server stopped it.
    Stopped,
    /// The gateway: what one side sent could not be checked against the
    /// clipboard policy.
    Gateway(Unreadable),
    /// The gateway: the session's recording could not be written (a
    /// recorded template's desktop is never shown unrecorded).
    Recording(String),
}

/// When a relay ends besides either side closing it.
#[derive(Debug, Clone)]
pub struct RelayEnd {
    /// Cancelled when the relay must end (its sign-in signed out).
    pub stop: CancellationToken,
    /// Ended after this long with no byte either way.
    pub idle: Duration,
}

/// Why a connection did not reach the relay. The messages are meant for users and logs:
/// they never carry the ticket.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the browser sent no connection request within {0:?}")]
    RequestTimeout(Duration),
    #[error("the browser closed the connection before it was set up")]
    BrowserClosed,
    #[error("WebSocket error: {0}")]
    WebSocket(#[from] axum::Error),
    #[error("bad RDCleanPath request: {0}")]
    BadRequest(String),
    #[error("access refused: {0}")]
    Refused(String),
    #[error("the desktop's RDP service is unreachable: {0}")]
    Unreachable(#[source] io::Error),
    #[error("the desktop's RDP service did not answer the connection request: {0}")]
    Negotiation(String),
    /// The desktop's X.224 confirm (RDP_NEG_FAILURE) goes back to the browser, which explains it.
    #[error("the desktop's RDP service refused the security protocols the browser offered")]
    ProtocolsRefused(Vec<u8>),
    #[error("TLS handshake with the desktop's RDP service failed: {0}")]
    Tls(#[source] io::Error),
    #[error("could not encode the RDCleanPath response: {0}")]
    Encode(String),
    #[error("this desktop's sessions are recorded and the recording cannot start: {0}")]
    Recording(#[source] RecordingError),
}

impl GatewayError {
    /// The gRPC code the audit trail records for this error.
    pub fn code(&self) -> tonic::Code {
        match self {
            GatewayError::Refused(_) => tonic::Code::PermissionDenied,
            GatewayError::BadRequest(_)
            | GatewayError::RequestTimeout(_)
            | GatewayError::BrowserClosed => tonic::Code::InvalidArgument,
            GatewayError::Unreachable(_)
            | GatewayError::Negotiation(_)
            | GatewayError::ProtocolsRefused(_)
            | GatewayError::Tls(_) => tonic::Code::Unavailable,
            GatewayError::WebSocket(_) | GatewayError::Encode(_) => tonic::Code::Internal,
            GatewayError::Recording(_) => tonic::Code::Unavailable,
        }
    }
}

/// Serve one browser connection: read its RDCleanPath request, redeem its `proxy_auth`
/// with `redeem`, connect to the desktop the ticket leads to, answer, then relay until
/// either side closes. An error before the relay is also sent to the browser as an
/// RDCleanPath error PDU when the connection is still open.
pub async fn relay<F, Fut>(
    mut socket: WebSocket,
    redeem: F,
    end: RelayEnd,
) -> Result<Relayed, GatewayError>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<Target, String>>,
{
    let started = Instant::now();
    let (tls, autologon, policy, mut recorder) = match connect(&mut socket, redeem).await {
        Ok(connected) => connected,
        Err(error) => {
            if let Some(pdu) = error_pdu(&error) {
                refuse(&mut socket, &pdu).await;
            }
            return Err(error);
        }
    };
    let setup = started.elapsed();
    let mut rewriter = Rewriter::new(autologon);
    let asked = std::sync::OnceLock::new();
    let (to_client, to_server, closed_by) = pump(
        socket,
        tls,
        end,
        &mut rewriter,
        policy,
        recorder.as_mut(),
        &asked,
    )
    .await;
    let recording = match recorder {
        Some(recorder) => {
            let id = recorder.id().to_string();
            if let Err(error) = recorder.finish(asked.get().copied()).await {
                tracing::warn!(recording = %id, %error, "a recording's end could not be written");
            }
            Some(id)
        }
        None => None,
    };
    Ok(Relayed {
        to_client,
        to_server,
        setup,
        closed_by,
        autologon: rewriter.rewrote(),
        recording,
    })
}

/// The TLS stream to a desktop's xrdp.
pub(super) type DesktopStream = tokio_rustls::client::TlsStream<TcpStream>;

/// The TLS handshake with the xrdp at `addr` over `tcp`, its certificate
/// the one whose SHA-256 is `cert_sha256` ([`tls_config`]).
pub(super) async fn desktop_tls(
    tcp: TcpStream,
    addr: SocketAddr,
    cert_sha256: &str,
) -> io::Result<DesktopStream> {
    let config = tls_config(cert_sha256).map_err(io::Error::other)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
}

/// What a relay works with once set up.
type Connected = (
    DesktopStream,
    Option<Autologon>,
    Clipboard,
    Option<Recorder>,
);

/// Everything up to the RDCleanPath response sent: the stream to relay,
/// who xrdp logs in, the clipboard policy and the recording, if any.
async fn connect<F, Fut>(socket: &mut WebSocket, redeem: F) -> Result<Connected, GatewayError>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<Target, String>>,
{
    let request = timeout(REQUEST_TIMEOUT, read_request(socket))
        .await
        .map_err(|_| GatewayError::RequestTimeout(REQUEST_TIMEOUT))??;
    let x224_request = check_request(&request)?;
    // The destination the browser asked for is ignored: the ticket says where to go.
    let token = request
        .proxy_auth
        .ok_or_else(|| GatewayError::Refused("no ticket in the request".into()))?;
    let target = redeem(token).await.map_err(GatewayError::Refused)?;

    let mut tcp = timeout(DESKTOP_TIMEOUT, TcpStream::connect(target.addr))
        .await
        .map_err(|_| GatewayError::Unreachable(io::ErrorKind::TimedOut.into()))?
        .map_err(GatewayError::Unreachable)?;
    let _ = tcp.set_nodelay(true);

    let x224_confirm = timeout(DESKTOP_TIMEOUT, async {
        tcp.write_all(&x224_request).await?;
        read_tpkt(&mut tcp).await
    })
    .await
    .map_err(|_| GatewayError::Negotiation("timed out".into()))?
    .map_err(|e| GatewayError::Negotiation(e.to_string()))?;
    match selected_protocol(&x224_confirm) {
        Confirm::Tls => {}
        Confirm::Failure => return Err(GatewayError::ProtocolsRefused(x224_confirm)),
        Confirm::NoTls => {
            return Err(GatewayError::Negotiation(
                "the desktop did not select a TLS-based security protocol".into(),
            ));
        }
        Confirm::Malformed => {
            return Err(GatewayError::Negotiation(
                "malformed X.224 connection confirm".into(),
            ));
        }
    }

    let tls = timeout(
        DESKTOP_TIMEOUT,
        desktop_tls(tcp, target.addr, &target.cert_sha256),
    )
    .await
    .map_err(|_| GatewayError::Tls(io::ErrorKind::TimedOut.into()))?
    .map_err(GatewayError::Tls)?;
    let chain: Vec<Vec<u8>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|cert| cert.to_vec())
        .collect();
    if chain.is_empty() {
        return Err(GatewayError::Tls(io::Error::other(
            "the desktop sent no certificate",
        )));
    }

    let response = RDCleanPathPdu::new_response(target.addr.to_string(), x224_confirm, chain)
        .and_then(|pdu| pdu.to_der())
        .map_err(|e| GatewayError::Encode(e.to_string()))?;
    let recorder = match &target.record {
        Some(plan) => {
            let mut recorder = plan
                .to
                .start(&plan.subject)
                .await
                .map_err(GatewayError::Recording)?;
            recorder.response(&response).await.map_err(|e| {
                GatewayError::Recording(RecordingError::Write {
                    dir: plan.to.dir().to_path_buf(),
                    source: e,
                })
            })?;
            Some(recorder)
        }
        None => None,
    };
    if let Err(error) = socket.send(Message::Binary(response.into())).await {
        // The browser went before it got the answer: the recording ends empty.
        if let Some(recorder) = recorder {
            let _ = recorder.finish(None).await;
        }
        return Err(error.into());
    }
    Ok((tls, target.autologon, target.clipboard, recorder))
}

/// Reads binary messages until they hold one whole RDCleanPath PDU (the web client sends
/// it in one message; a PDU split over several is accepted too), answering pings meanwhile.
pub(super) async fn read_request(socket: &mut WebSocket) -> Result<RDCleanPathPdu, GatewayError> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match socket.recv().await {
            None | Some(Ok(Message::Close(_))) => return Err(GatewayError::BrowserClosed),
            Some(Err(e)) => return Err(GatewayError::WebSocket(e)),
            Some(Ok(Message::Binary(data))) => buf.extend_from_slice(&data),
            // tungstenite answers pings itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Text(_))) => {
                return Err(GatewayError::BadRequest("a text message".into()));
            }
        }
        // The PDU is a DER SEQUENCE: anything else fails now rather than at the timeout.
        if buf.first().is_some_and(|tag| *tag != 0x30) {
            return Err(GatewayError::BadRequest("not an RDCleanPath PDU".into()));
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Err(GatewayError::BadRequest("request too large".into()));
        }
        match RDCleanPathPdu::detect(&buf) {
            DetectionResult::NotEnoughBytes => continue,
            DetectionResult::Failed => {
                return Err(GatewayError::BadRequest(
                    "not an RDCleanPath PDU of a supported version".into(),
                ));
            }
            DetectionResult::Detected { total_length, .. } if buf.len() < total_length => continue,
            DetectionResult::Detected { total_length, .. } if buf.len() > total_length => {
                return Err(GatewayError::BadRequest(
                    "data after the request, before the response".into(),
                ));
            }
            DetectionResult::Detected { .. } => {
                return RDCleanPathPdu::from_der(&buf)
                    .map_err(|e| GatewayError::BadRequest(format!("undecodable: {e}")));
            }
        }
    }
}

/// Checks what the gateway supports of a request and returns its X.224 connection request.
fn check_request(request: &RDCleanPathPdu) -> Result<Vec<u8>, GatewayError> {
    let bad = |what: &str| Err(GatewayError::BadRequest(what.into()));
    if request.version != VERSION_1 {
        return bad("unsupported RDCleanPath version");
    }
    if request.error.is_some()
        || request.server_cert_chain.is_some()
        || request.server_addr.is_some()
    {
        return bad("not a request");
    }
    if request.preconnection_blob.is_some() {
        // Hyper-V VMConnect and load-balancer blobs: nothing of ours uses them.
        return bad("preconnection blobs are not supported");
    }
    let Some(x224) = &request.x224_connection_pdu else {
        return bad("no X.224 connection request");
    };
    let x224 = x224.as_bytes();
    match tpkt_length(x224) {
        Some(len) if len == x224.len() && (11..=MAX_X224_BYTES).contains(&len) => {}
        _ => return bad("malformed X.224 connection request"),
    }
    // X.224 TPDU code: connection request (0xE0).
    if x224.get(5).map(|code| code & 0xF0) != Some(0xE0) {
        return bad("not an X.224 connection request");
    }
    Ok(x224.to_vec())
}

/// The length a TPKT header announces (version 3), if `buf` starts with one.
fn tpkt_length(buf: &[u8]) -> Option<usize> {
    match buf {
        [3, _, hi, lo, ..] => Some(usize::from(u16::from_be_bytes([*hi, *lo]))),
        _ => None,
    }
}

/// Reads one TPKT-framed PDU: the 4-byte header, then the rest of the length it announces.
async fn read_tpkt(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<Vec<u8>> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await?;
    let len = tpkt_length(&header)
        .filter(|len| (11..=MAX_X224_BYTES).contains(len))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "not an X.224 connection confirm",
            )
        })?;
    let mut pdu = vec![0u8; len];
    pdu[..4].copy_from_slice(&header);
    stream.read_exact(&mut pdu[4..]).await?;
    Ok(pdu)
}

enum Confirm {
    /// The server selected TLS, CredSSP over TLS or RDSTLS: a TLS handshake follows.
    Tls,
    /// RDP_NEG_FAILURE: the server refused every protocol the client offered.
    Failure,
    /// Standard RDP security (no negotiation data, or PROTOCOL_RDP): no TLS to terminate.
    NoTls,
    Malformed,
}

/// What an X.224 connection confirm (MS-RDPBCGR 2.2.1.2) says about the security protocol.
fn selected_protocol(confirm: &[u8]) -> Confirm {
    // TPKT (4) | LI (1) | code 0xD0 (1) | DST-REF (2) | SRC-REF (2) | class (1) | RDP_NEG_* (8)
    if confirm.get(5).map(|code| code & 0xF0) != Some(0xD0) {
        return Confirm::Malformed;
    }
    match confirm.get(11..19) {
        None => Confirm::NoTls,
        Some([0x02, _, _, _, p0, p1, p2, p3]) => match u32::from_le_bytes([*p0, *p1, *p2, *p3]) {
            0 => Confirm::NoTls,
            _ => Confirm::Tls,
        },
        Some([0x03, ..]) => Confirm::Failure,
        Some(_) => Confirm::Malformed,
    }
}

/// The error PDU the browser gets for an error, or none when it is gone.
fn error_pdu(error: &GatewayError) -> Option<RDCleanPathPdu> {
    let with = |error_code: u16, http: Option<u16>, wsa: Option<u16>, tls: Option<u8>| {
        Some(RDCleanPathPdu {
            version: VERSION_1,
            error: Some(RDCleanPathErr {
                error_code,
                http_status_code: http,
                wsa_last_error: wsa,
                tls_alert_code: tls,
            }),
            ..RDCleanPathPdu::default()
        })
    };
    match error {
        GatewayError::BrowserClosed | GatewayError::WebSocket(_) => None,
        GatewayError::RequestTimeout(_) => with(GENERAL_ERROR_CODE, Some(408), None, None),
        GatewayError::BadRequest(_) => with(GENERAL_ERROR_CODE, Some(400), None, None),
        GatewayError::Refused(_) => with(GENERAL_ERROR_CODE, Some(403), None, None),
        GatewayError::Unreachable(e) => with(
            TARGET_UNREACHABLE_ERROR_CODE,
            Some(502),
            Some(wsa_error(e)),
            None,
        ),
        GatewayError::Negotiation(_) => with(GENERAL_ERROR_CODE, Some(502), None, None),
        GatewayError::ProtocolsRefused(confirm) => {
            RDCleanPathPdu::new_negotiation_error(confirm.clone()).ok()
        }
        GatewayError::Tls(e) => {
            let alert = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .and_then(|tls| match tls {
                    rustls::Error::AlertReceived(alert) => Some(u8::from(*alert)),
                    _ => None,
                });
            with(TLS_HANDSHAKE_FAILED_ERROR_CODE, Some(502), None, alert)
        }
        GatewayError::Encode(_) => with(GENERAL_ERROR_CODE, Some(500), None, None),
        GatewayError::Recording(_) => with(GENERAL_ERROR_CODE, Some(503), None, None),
    }
}

/// The Windows socket error code the web client knows how to explain.
fn wsa_error(error: &io::Error) -> u16 {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => 10061,
        io::ErrorKind::TimedOut => 10060,
        io::ErrorKind::ConnectionReset => 10054,
        io::ErrorKind::ConnectionAborted => 10053,
        io::ErrorKind::HostUnreachable => 10065,
        io::ErrorKind::NetworkUnreachable => 10051,
        io::ErrorKind::NetworkDown => 10050,
        io::ErrorKind::AddrNotAvailable => 10049,
        _ => 11015, // WSA_QOS_GENERIC_ERROR, as Devolutions Gateway sends
    }
}

/// Sends an error PDU and closes the WebSocket; the browser may already be gone.
async fn refuse(socket: &mut WebSocket, pdu: &RDCleanPathPdu) {
    if let Ok(der) = pdu.to_der() {
        let _ = socket.send(Message::Binary(der.into())).await;
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
}

/// Relays until either side closes, it is idle for `end.idle`, `end.stop`, a side sends
/// what the clipboard `policy` cannot be checked on, or the `recorder` cannot keep what
/// the browser is sent (before it is sent); returns the bytes sent to the browser and to
/// the desktop. When recording, `asked` is set to whether the browser's client asked
/// for the clipboard's channel (a replay's must ask for the same channels).
async fn pump(
    socket: WebSocket,
    tls: DesktopStream,
    end: RelayEnd,
    rewriter: &mut Rewriter,
    policy: Clipboard,
    mut recorder: Option<&mut Recorder>,
    asked: &std::sync::OnceLock<bool>,
) -> (u64, u64, ClosedBy) {
    let mut first = recorder.is_some();
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (mut tls_rx, mut tls_tx) = tokio::io::split(tls);
    let mut to_client = 0u64;
    let mut to_server = 0u64;
    // When a byte last crossed, in milliseconds from `started`.
    let started = Instant::now();
    let last = AtomicU64::new(0);
    let crossed = || {
        let now = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        last.store(now, Ordering::Relaxed);
    };

    let (mut to_desktop, mut to_browser) = clipboard::filters(policy);
    // Each direction ends with what it could not read, if that ended it.
    let browser_to_desktop = async {
        let mut unreadable = None;
        while let Some(Ok(message)) = ws_rx.next().await {
            match message {
                Message::Binary(data) => {
                    if std::mem::take(&mut first)
                        && let Some(clipboard) = clipboard::asks_for_clipboard(&data)
                    {
                        let _ = asked.set(clipboard);
                    }
                    let data = match to_desktop.feed(&rewriter.feed(&data)) {
                        Ok(data) => data,
                        Err(error) => {
                            unreadable = Some(error);
                            break;
                        }
                    };
                    if tls_tx.write_all(&data).await.is_err() || tls_tx.flush().await.is_err() {
                        return None;
                    }
                    crossed();
                    to_server += data.len() as u64;
                }
                // tungstenite answers pings (and a close) itself.
                Message::Ping(_) | Message::Pong(_) => {}
                Message::Text(_) | Message::Close(_) => break,
            }
        }
        // TLS close_notify, then FIN.
        let _ = tls_tx.shutdown().await;
        unreadable
    };
    let desktop_to_browser = async {
        let mut buf = vec![0u8; RELAY_CHUNK];
        let mut ended = ClosedBy::Desktop;
        loop {
            match tls_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = match to_browser.feed(buf.get(..n).unwrap_or_default()) {
                        Ok(chunk) => chunk,
                        Err(error) => {
                            ended = ClosedBy::Gateway(error);
                            break;
                        }
                    };
                    if chunk.is_empty() {
                        continue;
                    }
                    if let Some(recorder) = recorder.as_deref_mut() {
                        // Known from the browser's first message, which the
                        // desktop answers: a live watch's client needs it.
                        if let Some(asked) = asked.get() {
                            recorder.client_asked_for_clipboard(*asked).await;
                        }
                        if let Err(error) = recorder.to_browser(&chunk).await {
                            ended = ClosedBy::Recording(error.to_string());
                            break;
                        }
                    }
                    let sent = chunk.len() as u64;
                    if ws_tx.send(Message::Binary(chunk.into())).await.is_err() {
                        return ClosedBy::Desktop;
                    }
                    crossed();
                    to_client += sent;
                }
            }
        }
        let reason = match ended {
            ClosedBy::Gateway(_) => "the gateway could not check the desktop's RDP stream",
            ClosedBy::Recording(_) => "the gateway could not keep this session's recording",
            _ => "the desktop closed the connection",
        };
        let _ = ws_tx
            .send(Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: reason.into(),
            })))
            .await;
        ended
    };
    let idle = async {
        loop {
            let quiet = started
                .elapsed()
                .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
            if quiet >= end.idle {
                return;
            }
            tokio::time::sleep(end.idle - quiet).await;
        }
    };
    let closed_by = tokio::select! {
        unreadable = browser_to_desktop => unreadable.map_or(ClosedBy::Browser, ClosedBy::Gateway),
        ended = desktop_to_browser => ended,
        () = idle => ClosedBy::Idle,
        () = end.stop.cancelled() => ClosedBy::Stopped,
    };
    (to_client, to_server, closed_by)
}

/// A TLS client for xrdp, on ring: the desktop's certificate must be the one
/// whose SHA-256 is `cert_sha256` (the server made it and Ansible installed
/// it over SSH with a checked host key), and the handshake's signatures are
/// checked against it as usual. No name or chain matters: the pin is the
/// identity. Public for the benchmark, which connects to the same fake
/// desktop directly.
pub fn tls_config(cert_sha256: &str) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCertificate {
        sha256: cert_sha256.to_ascii_lowercase(),
        algorithms: provider.signature_verification_algorithms,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct PinnedCertificate {
    sha256: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.sha256.is_empty() {
            return Err(rustls::Error::General(
                "no certificate is pinned for this desktop (it was made before pinning): destroy it and create another".into(),
            ));
        }
        let shown = crate::pki::fingerprint(end_entity);
        if shown != self.sha256 {
            return Err(rustls::Error::General(format!(
                "the desktop's RDP certificate (SHA-256 {shown}) is not the one the server made for it: another machine answers at its address, or its xrdp certificate was replaced"
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_trail_tells_refusals_from_unreachable_desktops() {
        assert_eq!(
            GatewayError::Refused("used".into()).code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            GatewayError::BadRequest("x".into()).code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            GatewayError::Unreachable(io::ErrorKind::ConnectionRefused.into()).code(),
            tonic::Code::Unavailable
        );
        assert_eq!(
            GatewayError::Encode("x".into()).code(),
            tonic::Code::Internal
        );
    }

    #[test]
    fn confirm_selecting_tls_is_accepted() {
        // xrdp's confirm selecting PROTOCOL_SSL.
        let cc = [
            3, 0, 0, 19, 14, 0xD0, 0, 0, 0x12, 0x34, 0, 2, 0x1F, 8, 0, 1, 0, 0, 0,
        ];
        assert!(matches!(selected_protocol(&cc), Confirm::Tls));
        let failure = [
            3, 0, 0, 19, 14, 0xD0, 0, 0, 0x12, 0x34, 0, 3, 0, 8, 0, 5, 0, 0, 0,
        ];
        assert!(matches!(selected_protocol(&failure), Confirm::Failure));
        let rdp = [3, 0, 0, 11, 6, 0xD0, 0, 0, 0x12, 0x34, 0];
        assert!(matches!(selected_protocol(&rdp), Confirm::NoTls));
        assert!(matches!(
            selected_protocol(&[3, 0, 0, 4]),
            Confirm::Malformed
        ));
    }

    #[test]
    fn requests_are_checked() {
        let x224 = vec![3, 0, 0, 19, 14, 0xE0, 0, 0, 0, 0, 0, 1, 0, 8, 0, 3, 0, 0, 0];
        let ok = RDCleanPathPdu::new_request(x224.clone(), "ignored:3389".into(), "t".into(), None)
            .expect("request");
        assert_eq!(check_request(&ok).expect("valid"), x224);
        let pcb =
            RDCleanPathPdu::new_request(x224.clone(), "x".into(), "t".into(), Some("p".into()))
                .expect("request");
        assert!(check_request(&pcb).is_err());
        let short = RDCleanPathPdu::new_request(x224[..18].to_vec(), "x".into(), "t".into(), None)
            .expect("request");
        assert!(check_request(&short).is_err());
        let mut not_cr = x224;
        not_cr[5] = 0xD0;
        let not_cr =
            RDCleanPathPdu::new_request(not_cr, "x".into(), "t".into(), None).expect("request");
        assert!(check_request(&not_cr).is_err());
    }
}
