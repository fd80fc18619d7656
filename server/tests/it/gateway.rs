//! The browser's RDP gateway (`web::gateway::relay`) end to end on loopback: a real
//! axum server whose route calls `relay`, a fake RDP server (X.224 confirm selecting
//! TLS, then TLS with a self-signed certificate, then an echo) and a WebSocket client
//! sending real RDCleanPath requests built with `ironrdp-rdcleanpath`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::fake_xrdp::{
    self, Client, FakeRdp, Results, TICKET, X224_CONFIRM, X224_REQUEST, echo, next_binary, request,
    response, result,
};
use daas_server::web::gateway::{ClosedBy, RelayEnd, Target};
use futures_util::{SinkExt as _, StreamExt as _};
use ironrdp_rdcleanpath::{RDCleanPathMessage, RDCleanPathPdu};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// An echoing fake xrdp, or one that closes right after TLS.
async fn fake_rdp(close_after_tls: bool) -> FakeRdp {
    fake_rdp_confirming(X224_CONFIRM, close_after_tls).await
}

async fn fake_rdp_confirming(confirm: [u8; 19], close_after_tls: bool) -> FakeRdp {
    fake_xrdp::fake_rdp(confirm, move |mut tls| async move {
        if close_after_tls {
            let _ = tls.shutdown().await;
        } else {
            echo(tls).await;
        }
    })
    .await
}

/// The gateway on 127.0.0.1:0 with `target` as what every good ticket leads to.
async fn gateway_server(target: Target) -> (String, Results) {
    let (app, results) = fake_xrdp::router(target);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (format!("ws://{addr}/gateway"), results)
}

/// The same, each relay ending as `end` says too.
async fn gateway_server_ending(target: Target, end: RelayEnd) -> (String, Results) {
    let (app, results) = fake_xrdp::router_ending(target, end);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (format!("ws://{addr}/gateway"), results)
}

/// A loopback port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address")
}

async fn connect(url: &str) -> Client {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket connect");
    ws
}

async fn send_request(ws: &mut Client, destination: String, ticket: &str) {
    ws.send(Message::binary(request(&destination, ticket)))
        .await
        .expect("send request");
}

/// Waits for the server's close frame (or the end of the stream).
async fn closed(ws: &mut Client) {
    match tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("closed within 10 s")
    {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {}
        Some(Ok(other)) => panic!("expected a close, got {other:?}"),
    }
}

#[tokio::test]
async fn gateway_relays_both_ways_to_the_ticket_target_ignoring_the_destination() {
    let mut rdp = fake_rdp(false).await;
    let (url, mut results) = gateway_server(rdp.target()).await;
    let mut ws = connect(&url).await;
    // The browser points at a closed port: the gateway must go where the ticket leads.
    send_request(&mut ws, closed_port().await.to_string(), TICKET).await;

    let RDCleanPathMessage::Response {
        x224_connection_response,
        server_cert_chain,
        server_addr,
    } = response(&mut ws).await
    else {
        panic!("expected a success response");
    };
    assert_eq!(x224_connection_response.as_bytes(), X224_CONFIRM);
    assert_eq!(server_cert_chain.len(), 1);
    assert_eq!(server_cert_chain[0].as_bytes(), rdp.cert.as_ref());
    assert_eq!(server_addr, rdp.addr.to_string());
    assert_eq!(rdp.requests.recv().await.expect("a request"), X224_REQUEST);

    // Small and large messages, echoed through TLS and back.
    let mut sent = 0u64;
    for payload in [
        b"hello desktop".to_vec(),
        (0..200_000u32).map(|i| (i % 251) as u8).collect(),
    ] {
        ws.send(Message::binary(payload.clone()))
            .await
            .expect("send");
        sent += payload.len() as u64;
        let mut echoed = Vec::new();
        while echoed.len() < payload.len() {
            echoed.extend(next_binary(&mut ws).await);
        }
        assert_eq!(echoed, payload);
    }

    // A ping is answered during the relay.
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .expect("ping");
    let pong = loop {
        match ws.next().await.expect("open").expect("message") {
            Message::Pong(data) => break data,
            Message::Ping(_) => continue,
            other => panic!("expected a pong, got {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"are you there");

    ws.close(None).await.expect("close");
    let relayed = result(&mut results).await.expect("a relay");
    assert_eq!(relayed.to_server, sent);
    assert_eq!(relayed.to_client, sent);
    assert_eq!(relayed.closed_by, ClosedBy::Browser);
    assert!(
        relayed.setup < Duration::from_secs(5),
        "setup {:?}",
        relayed.setup
    );
    assert_eq!(rdp.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn gateway_a_refused_ticket_gets_a_403_error_pdu_and_no_connection() {
    let rdp = fake_rdp(false).await;
    let (url, mut results) = gateway_server(rdp.target()).await;
    let mut ws = connect(&url).await;
    // Even a destination that is the real target is not used without a ticket.
    send_request(&mut ws, rdp.addr.to_string(), "stolen-or-used-ticket").await;

    let RDCleanPathMessage::GeneralErr(error) = response(&mut ws).await else {
        panic!("expected an error");
    };
    assert_eq!(error.error_code, ironrdp_rdcleanpath::GENERAL_ERROR_CODE);
    assert_eq!(error.http_status_code, Some(403));
    closed(&mut ws).await;
    let error = result(&mut results).await.expect_err("refused");
    assert!(error.contains("unknown, used or expired"), "{error}");
    assert!(
        !error.contains("stolen-or-used-ticket"),
        "the ticket leaked: {error}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        rdp.accepted.load(Ordering::SeqCst),
        0,
        "the gateway connected to the target"
    );
}

#[tokio::test]
async fn gateway_an_unreachable_desktop_gets_a_target_unreachable_error_pdu() {
    let (url, mut results) = gateway_server(fake_xrdp::target(closed_port().await, b"none")).await;
    let mut ws = connect(&url).await;
    send_request(&mut ws, "ignored:3389".to_owned(), TICKET).await;

    let RDCleanPathMessage::GeneralErr(error) = response(&mut ws).await else {
        panic!("expected an error");
    };
    assert_eq!(
        error.error_code,
        ironrdp_rdcleanpath::TARGET_UNREACHABLE_ERROR_CODE
    );
    assert_eq!(error.wsa_last_error, Some(10061)); // connection refused
    closed(&mut ws).await;
    let error = result(&mut results).await.expect_err("unreachable");
    assert!(error.contains("unreachable"), "{error}");
}

#[tokio::test]
async fn gateway_a_bad_request_gets_a_400_error_pdu() {
    let rdp = fake_rdp(false).await;
    let (url, mut results) = gateway_server(rdp.target()).await;
    let next_version = RDCleanPathPdu {
        version: ironrdp_rdcleanpath::VERSION_1 + 1,
        ..RDCleanPathPdu::new_request(
            X224_REQUEST.to_vec(),
            "x:3389".to_owned(),
            TICKET.to_owned(),
            None,
        )
        .expect("request")
    };
    let bad_requests = [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        next_version.to_der().expect("DER"),
        // A PDU without the X.224 request.
        RDCleanPathPdu {
            proxy_auth: Some(TICKET.to_owned()),
            destination: Some("x:3389".to_owned()),
            ..RDCleanPathPdu::default()
        }
        .to_der()
        .expect("DER"),
    ];
    for bad in bad_requests {
        let mut ws = connect(&url).await;
        ws.send(Message::binary(bad)).await.expect("send");
        let der = next_binary(&mut ws).await;
        let error = RDCleanPathPdu::from_der(&der)
            .expect("a PDU")
            .error
            .expect("an error");
        assert_eq!(error.http_status_code, Some(400));
        closed(&mut ws).await;
        let error = result(&mut results).await.expect_err("bad request");
        assert!(error.contains("bad RDCleanPath request"), "{error}");
    }
    assert_eq!(rdp.accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn gateway_a_request_split_over_messages_is_accepted() {
    let rdp = fake_rdp(false).await;
    let (url, mut results) = gateway_server(rdp.target()).await;
    let mut ws = connect(&url).await;
    for chunk in request("x:3389", TICKET).chunks(7) {
        ws.send(Message::binary(chunk.to_vec()))
            .await
            .expect("send");
    }
    assert!(matches!(
        response(&mut ws).await,
        RDCleanPathMessage::Response { .. }
    ));
    drop(ws);
    let relayed = result(&mut results).await.expect("a relay");
    assert_eq!(relayed.closed_by, ClosedBy::Browser);
}

#[tokio::test]
async fn gateway_the_desktop_closing_closes_the_websocket() {
    let rdp = fake_rdp(true).await;
    let (url, mut results) = gateway_server(rdp.target()).await;
    let mut ws = connect(&url).await;
    send_request(&mut ws, "x:3389".to_owned(), TICKET).await;
    assert!(matches!(
        response(&mut ws).await,
        RDCleanPathMessage::Response { .. }
    ));
    closed(&mut ws).await;
    let relayed = result(&mut results).await.expect("a relay");
    assert_eq!(relayed.closed_by, ClosedBy::Desktop);
    assert_eq!((relayed.to_client, relayed.to_server), (0, 0));
}

#[tokio::test]
async fn gateway_an_idle_relay_is_closed_and_a_busy_one_is_not() {
    let rdp = fake_rdp(false).await;
    let end = RelayEnd {
        stop: CancellationToken::new(),
        idle: Duration::from_millis(600),
    };
    let (url, mut results) = gateway_server_ending(rdp.target(), end).await;
    let mut ws = connect(&url).await;
    send_request(&mut ws, "x:3389".to_owned(), TICKET).await;
    assert!(matches!(
        response(&mut ws).await,
        RDCleanPathMessage::Response { .. }
    ));
    // Traffic every 200 ms for 1.5 s: longer than the idle timeout in
    // all, never that long quiet.
    for _ in 0..8 {
        ws.send(Message::binary(b"ping".to_vec()))
            .await
            .expect("send");
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an echo");
        assert!(matches!(echoed, Some(Ok(Message::Binary(_)))), "{echoed:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Then quiet: closed.
    closed(&mut ws).await;
    let relayed = result(&mut results).await.expect("a relay");
    assert_eq!(relayed.closed_by, ClosedBy::Idle);
    assert_eq!(relayed.to_server, 8 * 4);
}

#[tokio::test]
async fn gateway_a_stopped_relay_is_closed() {
    let rdp = fake_rdp(false).await;
    let stop = CancellationToken::new();
    let end = RelayEnd {
        stop: stop.clone(),
        idle: Duration::from_secs(3600),
    };
    let (url, mut results) = gateway_server_ending(rdp.target(), end).await;
    let mut ws = connect(&url).await;
    send_request(&mut ws, "x:3389".to_owned(), TICKET).await;
    assert!(matches!(
        response(&mut ws).await,
        RDCleanPathMessage::Response { .. }
    ));
    stop.cancel();
    closed(&mut ws).await;
    let relayed = result(&mut results).await.expect("a relay");
    assert_eq!(relayed.closed_by, ClosedBy::Stopped);
}

#[tokio::test]
async fn gateway_a_negotiation_failure_goes_back_to_the_browser() {
    // RDP_NEG_FAILURE with SSL_REQUIRED_BY_SERVER (1).
    let failure = [
        3, 0, 0, 19, 14, 0xD0, 0, 0, 0x12, 0x34, 0, 3, 0, 8, 0, 1, 0, 0, 0,
    ];
    let rdp = fake_rdp_confirming(failure, false).await;
    let (url, mut results) = gateway_server(rdp.target()).await;
    let mut ws = connect(&url).await;
    send_request(&mut ws, "x:3389".to_owned(), TICKET).await;
    let RDCleanPathMessage::NegotiationErr {
        x224_connection_response,
    } = response(&mut ws).await
    else {
        panic!("expected a negotiation error");
    };
    assert_eq!(x224_connection_response, failure);
    closed(&mut ws).await;
    let error = result(&mut results).await.expect_err("refused");
    assert!(error.contains("security protocols"), "{error}");
}

#[tokio::test]
async fn gateway_a_desktop_showing_another_certificate_is_refused() {
    // What a machine taking the desktop's address would do: a valid TLS
    // server, with a certificate other than the one the server made.
    let rdp = fake_rdp(false).await;
    let other = fake_rdp(false).await;
    for (pin, why) in [
        (
            fake_xrdp::target(rdp.addr, &other.cert),
            "not the one the server made",
        ),
        (
            Target {
                cert_sha256: String::new(),
                ..rdp.target()
            },
            "no certificate is pinned",
        ),
    ] {
        let (url, mut results) = gateway_server(pin).await;
        let mut ws = connect(&url).await;
        send_request(&mut ws, rdp.addr.to_string(), TICKET).await;
        let RDCleanPathMessage::GeneralErr(_) = response(&mut ws).await else {
            panic!("expected an error, not a relay to a desktop that is not ours");
        };
        closed(&mut ws).await;
        let error = result(&mut results).await.expect_err("refused");
        assert!(error.contains("TLS") && error.contains(why), "{error}");
    }
}

/// The Client Info PDU as the web client sends it (no password, no
/// INFO_AUTOLOGON), framed as on the wire.
fn web_client_info(user: &str) -> Vec<u8> {
    use ironrdp_pdu::rdp::{
        ClientInfoPdu,
        client_info::{
            AddressFamily, ClientInfo, ClientInfoFlags, CompressionType, Credentials,
            ExtendedClientInfo, ExtendedClientOptionalInfo,
        },
        headers::{BasicSecurityHeader, BasicSecurityHeaderFlags},
    };
    let pdu = ClientInfoPdu {
        security_header: BasicSecurityHeader {
            flags: BasicSecurityHeaderFlags::INFO_PKT,
        },
        client_info: ClientInfo {
            credentials: Credentials {
                username: user.into(),
                password: String::new(),
                domain: None,
            },
            password_cookie: None,
            code_page: 0,
            flags: ClientInfoFlags::UNICODE | ClientInfoFlags::MOUSE,
            compression_type: CompressionType::K8,
            alternate_shell: String::new(),
            work_dir: String::new(),
            extra_info: ExtendedClientInfo {
                address_family: AddressFamily::INET,
                address: "192.0.2.1".into(),
                dir: "C:\\".into(),
                optional_data: ExtendedClientOptionalInfo::default(),
            },
        },
    };
    let mut buf = ironrdp_core::WriteBuf::new();
    ironrdp_pdu::mcs::encode_send_data_request(1007, 1003, &pdu, &mut buf).expect("encode");
    buf.filled().to_vec()
}

/// Sign in once: the Client Info PDU reaches xrdp with the sign-in's user,
/// password and INFO_AUTOLOGON; what comes before and after is untouched.
#[tokio::test]
async fn gateway_gives_xrdp_the_sign_ins_credentials() {
    use daas_server::web::autologon::Autologon;
    use ironrdp_pdu::{mcs::SendDataRequest, rdp::ClientInfoPdu, x224::X224};

    let (frames_tx, mut frames) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let rdp = fake_xrdp::fake_rdp(X224_CONFIRM, move |mut tls| {
        let frames_tx = frames_tx.clone();
        async move {
            // The erect domain request, the Client Info PDU, then raw bytes.
            for _ in 0..2 {
                match fake_xrdp::read_tpkt(&mut tls).await {
                    Ok(frame) => {
                        let _ = frames_tx.send(frame);
                    }
                    Err(_) => return,
                }
            }
            echo(tls).await;
        }
    })
    .await;
    let target = Target {
        autologon: Some(Autologon {
            username: "alice".into(),
            domain: String::new(),
            password: zeroize::Zeroizing::new("Pa55-w0rd!".into()),
        }),
        ..rdp.target()
    };
    let (url, mut results) = gateway_server(target).await;
    let mut ws = connect(&url).await;
    send_request(&mut ws, "desktop:3389".into(), TICKET).await;
    let RDCleanPathMessage::Response { .. } = response(&mut ws).await else {
        panic!("expected a success response");
    };
    let erect_domain = [3u8, 0, 0, 12, 2, 0xF0, 0x80, 4, 1, 0, 1, 0];
    let mut stream = erect_domain.to_vec();
    stream.extend(web_client_info("alice"));
    // Split where the browser's messages may split it.
    let (first, second) = stream.split_at(20);
    for part in [first, second] {
        ws.send(Message::binary(part.to_vec())).await.expect("send");
    }
    assert_eq!(frames.recv().await.expect("a frame"), erect_domain);
    let info = frames.recv().await.expect("the Client Info PDU");
    let request = ironrdp_core::decode::<X224<SendDataRequest<'_>>>(&info)
        .expect("an MCS send data request")
        .0;
    let pdu = ironrdp_core::decode::<ClientInfoPdu>(&request.user_data).expect("client info");
    let credentials = &pdu.client_info.credentials;
    assert_eq!(
        (credentials.username.as_str(), credentials.password.as_str()),
        ("alice", "Pa55-w0rd!")
    );
    assert!(
        pdu.client_info
            .flags
            .contains(ironrdp_pdu::rdp::client_info::ClientInfoFlags::AUTOLOGON)
    );
    // After it, bytes pass as they come.
    ws.send(Message::binary(b"after".to_vec()))
        .await
        .expect("send");
    assert_eq!(next_binary(&mut ws).await, b"after");
    ws.close(None).await.expect("close");
    let relayed = result(&mut results).await.expect("a relay");
    assert!(relayed.autologon);
}

/// Without credentials for the ticket the Client Info PDU is relayed as the
/// browser sent it: xrdp asks for the password.
#[tokio::test]
async fn gateway_without_credentials_relays_the_client_info_untouched() {
    let rdp = fake_rdp(false).await;
    let (url, mut results) = gateway_server(rdp.target()).await;
    let mut ws = connect(&url).await;
    send_request(&mut ws, "desktop:3389".into(), TICKET).await;
    let RDCleanPathMessage::Response { .. } = response(&mut ws).await else {
        panic!("expected a success response");
    };
    let info = web_client_info("alice");
    ws.send(Message::binary(info.clone())).await.expect("send");
    let mut echoed = Vec::new();
    while echoed.len() < info.len() {
        echoed.extend(next_binary(&mut ws).await);
    }
    assert_eq!(echoed, info);
    ws.close(None).await.expect("close");
    assert!(!result(&mut results).await.expect("a relay").autologon);
}

/// Under a clipboard policy that closes a direction, the gateway reads the
/// stream: what it cannot read (here not RDP at all) ends the relay instead
/// of passing unread, and the result says why.
#[tokio::test]
async fn gateway_a_stream_the_clipboard_policy_cannot_read_ends_the_relay() {
    let rdp = fake_rdp(false).await;
    let target = Target {
        clipboard: daas_server::domain::catalog::Clipboard::Off,
        ..rdp.target()
    };
    let (url, mut results) = gateway_server(target).await;
    let mut ws = connect(&url).await;
    send_request(&mut ws, "desktop:3389".into(), TICKET).await;
    let RDCleanPathMessage::Response { .. } = response(&mut ws).await else {
        panic!("expected a success response");
    };
    ws.send(Message::binary(vec![0xFFu8; 64]))
        .await
        .expect("send");
    closed(&mut ws).await;
    let relayed = result(&mut results).await.expect("a relay");
    let ClosedBy::Gateway(why) = &relayed.closed_by else {
        panic!("closed by {:?}, not the gateway", relayed.closed_by);
    };
    assert_eq!(relayed.to_server, 0, "nothing unread reached the desktop");
    let why = why.to_string();
    assert!(why.contains("clipboard policy"), "{why}");
}
