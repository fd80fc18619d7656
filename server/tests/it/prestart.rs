//! The session start at the claim (`web/prestart.rs`) against an RDP
//! server's side of the connection sequence (IronRDP's acceptor, over TLS
//! with the fake desktop's self-signed certificate): the login reaches it whole, with the
//! web client's colour depth, and only to the pinned certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::fake_xrdp;
use daas_server::web::autologon::Autologon;
use daas_server::web::prestart::{self, PrestartError, WEB_CLIENT_COLOR_DEPTH};
use ironrdp_acceptor::{Acceptor, BeginResult, DesktopSize};
use ironrdp_pdu::nego::SecurityProtocol;
use ironrdp_pdu::rdp::capability_sets::{self, CapabilitySet};
use ironrdp_pdu::rdp::client_info::Credentials;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const PASSWORD: &str = "Pa55-w0rd!prestart";

/// What the fake desktop saw of one login.
#[derive(Debug)]
struct Seen {
    credentials: Option<Credentials>,
    /// The colour depth of the client's bitmap capability.
    bpp: Option<u16>,
    /// Whether the client left (end of stream) after the sequence.
    left: bool,
}

struct FakeDesktop {
    addr: SocketAddr,
    cert_sha256: String,
    seen: mpsc::UnboundedReceiver<Result<Seen, String>>,
}

/// An RDP server on loopback that accepts TLS logins and reports each.
async fn fake_desktop() -> FakeDesktop {
    let (tls, cert) = fake_xrdp::self_signed_tls();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let (tx, seen) = mpsc::unbounded_channel();
    // The acceptor's futures are not Send: one thread of its own, serving
    // one connection at a time.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            listener.set_nonblocking(true).expect("non-blocking");
            let listener = TcpListener::from_std(listener).expect("listener");
            while let Ok((tcp, _)) = listener.accept().await {
                if tx.send(serve(tls.clone(), tcp).await).is_err() {
                    break;
                }
            }
        });
    });
    FakeDesktop {
        addr,
        cert_sha256: fake_xrdp::cert_sha256(&cert),
        seen,
    }
}

async fn serve(tls: tokio_rustls::TlsAcceptor, tcp: tokio::net::TcpStream) -> Result<Seen, String> {
    let size = DesktopSize {
        width: 1024,
        height: 768,
    };
    let capabilities = vec![
        CapabilitySet::General(capability_sets::General::default()),
        CapabilitySet::Bitmap(capability_sets::Bitmap {
            pref_bits_per_pix: 32,
            desktop_width: size.width,
            desktop_height: size.height,
            desktop_resize_flag: true,
            drawing_flags: capability_sets::BitmapDrawingFlags::empty(),
        }),
    ];
    let mut acceptor = Acceptor::new(SecurityProtocol::SSL, size, capabilities, None);
    let framed = ironrdp_tokio::TokioFramed::new(tcp);
    let BeginResult::ShouldUpgrade(tcp) = ironrdp_acceptor::accept_begin(framed, &mut acceptor)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Err("no TLS asked".into());
    };
    let stream = tls.accept(tcp).await.map_err(|e| e.to_string())?;
    acceptor.mark_security_upgrade_as_done();
    let framed = ironrdp_tokio::TokioFramed::new(stream);
    let (framed, result) = ironrdp_acceptor::accept_finalize(framed, &mut acceptor)
        .await
        .map_err(|e| e.to_string())?;
    let bpp = result.capabilities.iter().find_map(|cap| match cap {
        CapabilitySet::Bitmap(bitmap) => Some(bitmap.pref_bits_per_pix),
        _ => None,
    });
    let (mut stream, _) = framed.into_inner();
    let mut rest = Vec::new();
    let left = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest))
        .await
        .is_ok();
    Ok(Seen {
        credentials: result.credentials,
        bpp,
        left,
    })
}

fn alice() -> Autologon {
    Autologon {
        username: "alice".into(),
        domain: String::new(),
        password: zeroize::Zeroizing::new(PASSWORD.into()),
    }
}

/// Everything logged on this thread, at every level, while it lives.
struct Logs {
    text: Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Logs {
    fn capture() -> Logs {
        let text = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = text.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Writer(writer.clone()))
            .finish();
        Logs {
            text,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().expect("logs")).into_owned()
    }
}

struct Writer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_login_reaches_xrdp_whole_then_leaves() {
    let mut desktop = fake_desktop().await;
    let logs = Logs::capture();
    let started = prestart::start(
        desktop.addr,
        &desktop.cert_sha256,
        &alice(),
        prestart::DEFAULT_SIZE,
        Duration::from_millis(200),
    )
    .await
    .expect("the login completes");
    let logged = logs.text();
    assert!(
        logged.contains("Client Info") || logged.contains("ClientInfo"),
        "the connector's logs were captured: {logged}"
    );
    assert!(!logged.contains(PASSWORD), "the password is in the logs");
    assert!(started.login > Duration::ZERO);
    let seen = desktop
        .seen
        .recv()
        .await
        .expect("one login")
        .expect("the sequence completes on the server's side");
    let credentials = seen.credentials.expect("the Client Info PDU's credentials");
    assert_eq!(credentials.username, "alice");
    assert_eq!(credentials.password, PASSWORD);
    assert_eq!(credentials.domain, None);
    assert_eq!(
        seen.bpp.map(u32::from),
        Some(WEB_CLIENT_COLOR_DEPTH),
        "the web client's colour depth, so xrdp finds the same session for the tab"
    );
    assert!(seen.left, "the login leaves after its hold");
}

#[tokio::test]
async fn another_certificate_gets_no_login() {
    let mut desktop = fake_desktop().await;
    let wrong = "00".repeat(32);
    let err = prestart::start(
        desktop.addr,
        &wrong,
        &alice(),
        prestart::DEFAULT_SIZE,
        Duration::ZERO,
    )
    .await
    .expect_err("a certificate that is not the desktop's");
    assert!(matches!(err, PrestartError::Tls(_)), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(PASSWORD), "{text}");
    let seen = desktop.seen.recv().await.expect("one connection");
    assert!(seen.is_err(), "no login reached it: {seen:?}");
}

#[tokio::test]
async fn a_desktop_not_listening_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let err = prestart::start(
        addr,
        &"00".repeat(32),
        &alice(),
        prestart::DEFAULT_SIZE,
        Duration::ZERO,
    )
    .await
    .expect_err("nothing listens");
    assert!(matches!(err, PrestartError::Unreachable(_)), "{err:?}");
}
