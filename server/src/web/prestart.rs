//! Sign in once, without waiting at the click: right after a desktop
//! created from the page is READY, the gateway logs its user in to the
//! desktop's xrdp with the sign-in's password, as the tab would, and
//! leaves once xrdp has taken the login. xrdp's session manager starts
//! the user's session (PAM, Kerberos, the home share, Xorg, XFCE) on its
//! own; when the user opens the desktop, xrdp puts the tab in that session
//! (`Policy=Default`: one session per user and colour depth) instead of
//! starting one then.
//!
//! The login is the web client's own (IronRDP's connector, the same
//! colour depth, TLS with the desktop's pinned certificate), so xrdp
//! counts both as the same session. The password takes no new path: it
//! goes where the gateway gives it anyway, over the same TLS leg, and is
//! zeroed here once sent.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ironrdp_async::single_sequence_step;
use ironrdp_connector::{
    BitmapConfig, ClientConnector, ClientConnectorState, Config, Credentials, DesktopSize,
};
use ironrdp_core::WriteBuf;
use ironrdp_pdu::gcc::{ConnectionType, KeyboardType};
use ironrdp_pdu::rdp::capability_sets::{BitmapCodecs, MajorPlatformType, RailSupportLevel};
use ironrdp_pdu::rdp::client_info::{PerformanceFlags, TimezoneInfo};
use ironrdp_tokio::TokioFramed;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;
use zeroize::Zeroize as _;

use super::autologon::Autologon;
use super::gateway::{DesktopStream, desktop_tls};

/// The colour depth the web client asks for (IronRDP's web client, 16
/// bits); xrdp keeps one session per user and colour depth, so the tab
/// finds the session started here only with the same.
pub const WEB_CLIENT_COLOR_DEPTH: u32 = 16;
/// The desktop size asked for when the page gave none; the tab's own
/// connection resizes the session to the tab.
pub const DEFAULT_SIZE: (u16, u16) = (1280, 800);
/// How long the whole login may take, up to the connection set up.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the login stays connected once set up: xrdp hands it to its
/// session manager at once, and a session whose login has left keeps
/// starting (measured on xrdp 0.9.21: a client gone after 4 s).
pub const HOLD: Duration = Duration::from_secs(4);

/// The sessions whose start is under way on this server, so that the tab
/// opened meanwhile waits for it: xrdp ends a second login of the same
/// user that comes while the first is still connected (seen on xrdp
/// 0.9.21: the tab got "user initiated disconnect"), and puts one that
/// comes after it in the session it starts.
#[derive(Default)]
pub struct Starting {
    by_session: std::sync::Mutex<HashMap<String, watch::Receiver<()>>>,
}

/// Held while a session's start is under way; dropping it ends the wait
/// of the tabs opened meanwhile.
pub struct StartingGuard<'a> {
    starting: &'a Starting,
    session: String,
    _done: watch::Sender<()>,
}

impl Starting {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Receiver<()>>> {
        self.by_session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `session`'s start as under way until the guard is dropped.
    pub fn begin(&self, session: &str) -> StartingGuard<'_> {
        let (done, waiting) = watch::channel(());
        self.lock().insert(session.to_owned(), waiting);
        StartingGuard {
            starting: self,
            session: session.to_owned(),
            _done: done,
        }
    }

    /// Waits, at most `limit`, for `session`'s start if one is under way;
    /// whether there was one.
    pub async fn wait(&self, session: &str, limit: Duration) -> bool {
        let waiting = self.lock().get(session).cloned();
        match waiting {
            Some(mut waiting) => {
                // Err: the start is over (its sender dropped).
                let _ = timeout(limit, waiting.changed()).await;
                true
            }
            None => false,
        }
    }
}

impl Drop for StartingGuard<'_> {
    fn drop(&mut self) {
        self.starting.lock().remove(&self.session);
    }
}

/// What a start did, for the logs and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// From the TCP connect to the connection set up (xrdp has the login).
    pub login: Duration,
}

/// Why a session could not be started ahead; the tab then starts it at
/// the click, as without. Never carries the password.
#[derive(Debug, thiserror::Error)]
pub enum PrestartError {
    #[error("the desktop's RDP service is unreachable: {0}")]
    Unreachable(#[source] io::Error),
    #[error("TLS handshake with the desktop's RDP service failed: {0}")]
    Tls(#[source] io::Error),
    #[error("the desktop's RDP service did not complete the login: {0}")]
    Rdp(String),
    #[error("the login did not complete within {0:?}")]
    TimedOut(Duration),
}

/// Logs `login` in to the xrdp at `addr` (its certificate `cert_sha256`)
/// with a desktop of `size`, stays `hold` connected, then leaves.
pub async fn start(
    addr: SocketAddr,
    cert_sha256: &str,
    login: &Autologon,
    size: (u16, u16),
    hold: Duration,
) -> Result<Started, PrestartError> {
    let started = Instant::now();
    let mut tls = timeout(LOGIN_TIMEOUT, connect(addr, cert_sha256, login, size))
        .await
        .map_err(|_| PrestartError::TimedOut(LOGIN_TIMEOUT))??;
    let login = started.elapsed();
    // Whatever xrdp sends meanwhile (its screen while the session starts)
    // is not looked at: the tab shows the session.
    let _ = timeout(hold, async {
        let mut sink = tokio::io::sink();
        tokio::io::copy(&mut tls, &mut sink).await
    })
    .await;
    let _ = tls.shutdown().await;
    Ok(Started { login })
}

/// The connection sequence up to the connection set up, the Client Info
/// PDU carrying the login with `INFO_AUTOLOGON`.
async fn connect(
    addr: SocketAddr,
    cert_sha256: &str,
    login: &Autologon,
    size: (u16, u16),
) -> Result<DesktopStream, PrestartError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(PrestartError::Unreachable)?;
    let _ = tcp.set_nodelay(true);
    let client_addr = tcp.local_addr().map_err(PrestartError::Unreachable)?;
    let mut connector = ClientConnector::new(config(login, size), client_addr);
    let result = sequence(&mut connector, tcp, addr, cert_sha256).await;
    // Best effort: the connector's copy of the password (what it sent is
    // zeroed in `sequence`).
    if let Credentials::UsernamePassword { password, .. } = &mut connector.config.credentials {
        password.zeroize();
    }
    result
}

async fn sequence(
    connector: &mut ClientConnector,
    tcp: TcpStream,
    addr: SocketAddr,
    cert_sha256: &str,
) -> Result<DesktopStream, PrestartError> {
    let rdp = |e: ironrdp_connector::ConnectorError| PrestartError::Rdp(e.to_string());
    let mut framed = TokioFramed::new(tcp);
    let mut buf = WriteBuf::new();
    while !connector.should_perform_security_upgrade() {
        single_sequence_step(&mut framed, connector, &mut buf)
            .await
            .map_err(rdp)?;
    }
    let (tcp, leftover) = framed.into_inner();
    if !leftover.is_empty() {
        return Err(PrestartError::Rdp(
            "data before the TLS handshake".to_owned(),
        ));
    }
    let tls = desktop_tls(tcp, addr, cert_sha256)
        .await
        .map_err(PrestartError::Tls)?;
    connector.mark_security_upgrade_as_done();
    if connector.should_perform_credssp() {
        return Err(PrestartError::Rdp(
            "the desktop asked for network level authentication (CredSSP), which xrdp does not do"
                .to_owned(),
        ));
    }
    let mut framed = TokioFramed::new(tls);
    let result = async {
        while !matches!(connector.state, ClientConnectorState::Connected { .. }) {
            single_sequence_step(&mut framed, connector, &mut buf)
                .await
                .map_err(rdp)?;
        }
        Ok(())
    }
    .await;
    // What was sent, the Client Info PDU with the password among it.
    buf.into_inner().zeroize();
    result?;
    let (tls, _) = framed.into_inner();
    Ok(tls)
}

/// The web client's settings (IronRDP's `ironrdp-web`), with the login.
fn config(login: &Autologon, (width, height): (u16, u16)) -> Config {
    Config {
        credentials: Credentials::UsernamePassword {
            username: login.username.clone(),
            password: login.password.as_str().to_owned(),
        },
        domain: (!login.domain.is_empty()).then(|| login.domain.clone()),
        enable_tls: true,
        enable_credssp: false,
        enable_standard_rdp_security: false,
        keyboard_type: KeyboardType::IBM_ENHANCED,
        keyboard_subtype: 0,
        keyboard_layout: 0,
        keyboard_functional_keys_count: 12,
        connection_type: ConnectionType::Lan,
        ime_file_name: String::new(),
        dig_product_id: String::new(),
        desktop_size: DesktopSize { width, height },
        monitor_layout: None,
        desktop_scale_factor: 0,
        desktop_physical_size: None,
        desktop_orientation: None,
        device_scale_factor: None,
        monitor_extended_layout: None,
        relative_mouse_input: false,
        bitmap: Some(BitmapConfig {
            color_depth: WEB_CLIENT_COLOR_DEPTH,
            lossy_compression: true,
            codecs: BitmapCodecs(Vec::new()),
        }),
        client_build: 0,
        client_name: "daas-gateway".to_owned(),
        client_dir: "C:\\Windows\\System32\\mstscax.dll".to_owned(),
        platform: MajorPlatformType::UNSPECIFIED,
        hardware_id: None,
        request_data: None,
        autologon: true,
        enable_audio_playback: false,
        enable_audio_capture: false,
        performance_flags: PerformanceFlags::default(),
        license_cache: None,
        timezone_info: TimezoneInfo::default(),
        compression_type: None,
        enable_server_pointer: false,
        pointer_software_rendering: false,
        multitransport_flags: None,
        alternate_shell: String::new(),
        work_dir: String::new(),
        remote_application_mode: false,
        rail_support_level: RailSupportLevel::SUPPORTED,
        support_dyn_vc_gfx_protocol: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn _is_send(login: &Autologon, addr: SocketAddr) -> impl Send + '_ {
        start(addr, "", login, DEFAULT_SIZE, HOLD)
    }

    #[tokio::test]
    async fn a_tab_waits_for_the_start_under_way_and_no_longer() {
        let starting = std::sync::Arc::new(Starting::default());
        assert!(
            !starting.wait("s-1", Duration::from_secs(5)).await,
            "none under way"
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let held = starting.clone();
        let start = tokio::spawn(async move {
            let _guard = held.begin("s-1");
            let _ = rx.await;
        });
        tokio::task::yield_now().await;
        let waiter = starting.clone();
        let tab = tokio::spawn(async move { waiter.wait("s-1", Duration::from_secs(30)).await });
        tokio::task::yield_now().await;
        assert!(
            !tab.is_finished(),
            "the tab went on while the start was under way"
        );
        let _ = tx.send(());
        let _ = start.await;
        assert!(tab.await.expect("the tab's wait"), "it waited");
        assert!(starting.lock().is_empty(), "the ended start is forgotten");
        // A start that never ends holds a tab no longer than its limit.
        let _stuck = starting.begin("s-2");
        assert!(starting.wait("s-2", Duration::from_millis(50)).await);
    }
}
