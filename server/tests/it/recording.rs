//! Session recording (`record = true`) through the real gateway: a fake
//! xrdp on loopback, the browser's side of RDCleanPath, the recording on
//! disk, and its replay (`web::replay::play`) to a second client.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use daas_server::domain::catalog::Clipboard;
use daas_server::web::recording::{KIND_RDP, KIND_RESPONSE, Plan, Recordings, Subject};
use daas_server::web::replay;
use futures_util::{SinkExt as _, StreamExt as _};
use ironrdp_rdcleanpath::RDCleanPathMessage;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::fake_xrdp::{self, Client, TICKET, next_binary, pdus::*, request, response, result};

const CLIP: u16 = 1005;
/// What the user types: it goes to the desktop, never into a recording.
const TYPED: &[u8] = b"typed: hunter2-secret";
/// What the desktop puts in the user's clipboard.
const COPIED: &str = "copied on the desktop";

/// What the fake desktop sends once the browser's Connect Initial came: the
/// Connect Response, its clipboard's text, screen updates.
fn desktop_stream() -> Vec<Vec<u8>> {
    let copied = text_data(COPIED);
    vec![
        connect_response(&[1004, CLIP]),
        from_desktop(CLIP, &chunk(WHOLE, copied.len(), &copied)),
        fast_path(5_000),
        fast_path(300),
    ]
}

/// A fake xrdp that answers the browser's first message with
/// `desktop_stream()` and then reads until the browser leaves.
async fn fake_desktop() -> fake_xrdp::FakeRdp {
    fake_xrdp::fake_rdp(fake_xrdp::X224_CONFIRM, |mut tls| async move {
        let mut buf = vec![0u8; 8192];
        if !matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {
            return;
        }
        for (i, frame) in desktop_stream().into_iter().enumerate() {
            if i == 3 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            if tls.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = tls.flush().await;
        while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
        let _ = tls.shutdown().await;
    })
    .await
}

/// Alice's desktop of the template "exam", recorded in `to`.
fn alices(to: Arc<Recordings>) -> Plan {
    Plan {
        to,
        subject: Subject {
            session_id: "s-1".into(),
            owner: "alice".into(),
            user: "alice".into(),
            template: "exam".into(),
            clipboard: Clipboard::Both,
            kept: true,
        },
    }
}

async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    format!("ws://{addr}")
}

async fn replay_route(
    State(recordings): State<Arc<Recordings>>,
    Path(id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let (_, player) = recordings.play(&id).await.expect("the recording opens");
    upgrade.on_upgrade(move |socket| async move {
        replay::play(socket, player, replay::Pace::Recorded(4))
            .await
            .expect("played to the end");
    })
}

/// A browser's WebSocket to `url`, its RDCleanPath request with `ticket` sent.
async fn open(url: String, ticket: &str) -> Client {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    ws.send(Message::binary(request("desktop:3389", ticket)))
        .await
        .expect("send");
    ws
}

/// Reads binary messages until `len` bytes came.
async fn read_bytes(ws: &mut Client, len: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < len {
        got.extend(next_binary(ws).await);
    }
    got
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn utf16(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

#[tokio::test]
async fn a_recorded_relay_keeps_what_the_tab_got_and_its_replay_plays_it_back() {
    let dir = tempfile::tempdir().expect("a temporary dir");
    let recordings = Arc::new(Recordings::new(
        dir.path().join("recordings"),
        Duration::from_secs(3600),
    ));
    let rdp = fake_desktop().await;
    let mut target = rdp.target();
    target.record = Some(alices(recordings.clone()));
    let (gateway, mut results) = fake_xrdp::router(target);
    let app = gateway.merge(
        Router::new()
            .route("/replay/{id}", get(replay_route))
            .with_state(recordings.clone()),
    );
    let base = serve(app).await;

    // The user's tab: its request, the desktop's stream, then what she types.
    let mut ws = open(format!("{base}/gateway"), TICKET).await;
    let RDCleanPathMessage::Response {
        x224_connection_response,
        ..
    } = response(&mut ws).await
    else {
        panic!("expected a success response");
    };
    let initial = connect_initial(&["rdpdr", "cliprdr"]);
    ws.send(Message::binary(initial.clone()))
        .await
        .expect("send");
    let expected: Vec<u8> = desktop_stream().concat();
    let got = read_bytes(&mut ws, expected.len()).await;
    assert_eq!(got, expected, "the tab gets the desktop's stream unchanged");
    ws.send(Message::binary(from_browser(1004, TYPED)))
        .await
        .expect("send");
    ws.close(None).await.expect("close");
    let relayed = result(&mut results).await.expect("relayed");
    let id = relayed.recording.expect("recorded");

    // On disk: the response, then exactly what the tab got; nothing it sent.
    let (meta, mut player) = recordings.play(&id).await.expect("the recording opens");
    assert_eq!(
        (meta.owner.as_str(), meta.template.as_str(), meta.bytes),
        ("alice", "exam", expected.len() as u64)
    );
    assert!(meta.ended_ms.is_some());
    assert_eq!(
        meta.client_clipboard,
        Some(true),
        "her client asked for the clipboard"
    );
    let first = player.next().await.expect("read").expect("a frame");
    assert_eq!(first.kind, KIND_RESPONSE);
    let mut kept = Vec::new();
    let mut times = Vec::new();
    while let Some(frame) = player.next().await.expect("read") {
        assert_eq!(frame.kind, KIND_RDP);
        times.push(frame.at_ms);
        kept.extend(frame.bytes);
    }
    assert_eq!(kept, expected);
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    for file in std::fs::read_dir(dir.path().join("recordings")).expect("the dir") {
        let bytes = std::fs::read(file.expect("an entry").path()).expect("read");
        assert!(
            !contains(&bytes, TYPED),
            "what the user typed is never kept"
        );
        assert!(!contains(&bytes, &initial), "nor anything else she sent");
    }

    // The replay: the recorded response, then the stream, the clipboard's
    // text taken out; what the auditor's client sends goes nowhere.
    let mut auditor = open(format!("{base}/replay/{id}"), "replay").await;
    let RDCleanPathMessage::Response {
        x224_connection_response: replayed_confirm,
        ..
    } = response(&mut auditor).await
    else {
        panic!("expected the recorded response");
    };
    assert_eq!(replayed_confirm, x224_connection_response);
    auditor
        .send(Message::binary(initial.clone()))
        .await
        .expect("send");
    let mut replayed = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), auditor.next())
            .await
            .expect("the replay goes on")
        {
            Some(Ok(Message::Binary(data))) => replayed.extend_from_slice(&data),
            Some(Ok(Message::Close(frame))) => {
                let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                assert_eq!(reason, "the end of the recording");
                break;
            }
            other => panic!("expected the replay, got {other:?}"),
        }
    }
    assert!(
        !contains(&replayed, &utf16(COPIED)),
        "the clipboard is emptied"
    );
    assert!(
        contains(&kept, &utf16(COPIED)),
        "though it was recorded as shown"
    );
    let screen: Vec<u8> = [fast_path(5_000), fast_path(300)].concat();
    assert!(
        replayed.ends_with(&screen),
        "the screen updates are replayed"
    );
    assert!(replayed.starts_with(&connect_response(&[1004, CLIP])));
    assert_eq!(rdp.accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_recorded_desktop_is_not_shown_when_its_recording_cannot_start() {
    let dir = tempfile::tempdir().expect("a temporary dir");
    // A file where the recordings' directory should be.
    let blocked = dir.path().join("recordings");
    std::fs::write(&blocked, b"not a directory").expect("write");
    let rdp = fake_desktop().await;
    let mut target = rdp.target();
    target.record = Some(alices(Arc::new(Recordings::new(
        blocked,
        Duration::from_secs(3600),
    ))));
    let (gateway, mut results) = fake_xrdp::router(target);
    let base = serve(gateway).await;
    let mut ws = open(format!("{base}/gateway"), TICKET).await;
    let RDCleanPathMessage::GeneralErr(error) = response(&mut ws).await else {
        panic!("expected an error");
    };
    assert_eq!(error.http_status_code, Some(503));
    let err = result(&mut results).await.expect_err("refused");
    assert!(
        err.contains("recorded and the recording cannot start") && err.contains("web.recordings"),
        "{err}"
    );
}

async fn watch_route(
    State(recordings): State<Arc<Recordings>>,
    Path(id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let (meta, player) = recordings.play(&id).await.expect("the recording opens");
    let mark = recordings
        .mark_watched(&meta.session_id, "carol")
        .await
        .expect("marked");
    upgrade.on_upgrade(move |socket| async move {
        let pace = replay::Pace::Live { recordings, mark };
        replay::play(socket, player, pace)
            .await
            .expect("watched to the tab's end");
    })
}

/// A fake xrdp that sends the Connect Response and a screen update, then
/// one more each time the browser sends something.
async fn answering_desktop() -> fake_xrdp::FakeRdp {
    fake_xrdp::fake_rdp(fake_xrdp::X224_CONFIRM, |mut tls| async move {
        let mut buf = vec![0u8; 8192];
        if !matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {
            return;
        }
        let first = [connect_response(&[1004, CLIP]), fast_path(4_000)].concat();
        if tls.write_all(&first).await.is_err() {
            return;
        }
        while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {
            if tls.write_all(&fast_path(700)).await.is_err() {
                return;
            }
        }
        let _ = tls.shutdown().await;
    })
    .await
}

/// Shadowing: an administrator joins a tab already open, gets all of it
/// from its start, then what the desktop sends as it comes, marked as
/// watching meanwhile; the watch ends when the tab closes, and a tab only
/// watched (not recorded) leaves no file.
#[tokio::test]
async fn a_watch_joins_an_open_tab_from_its_start_and_follows_it_to_its_end() {
    let dir = tempfile::tempdir().expect("a temporary dir");
    let recordings = Arc::new(Recordings::new(
        dir.path().join("recordings"),
        Duration::from_secs(3600),
    ));
    let rdp = answering_desktop().await;
    let mut target = rdp.target();
    let mut plan = alices(recordings.clone());
    plan.subject.kept = false;
    target.record = Some(plan);
    let (gateway, mut results) = fake_xrdp::router(target);
    let app = gateway.merge(
        Router::new()
            .route("/watch/{id}", get(watch_route))
            .with_state(recordings.clone()),
    );
    let base = serve(app).await;

    // Alice's tab, open and drawn.
    let mut tab = open(format!("{base}/gateway"), TICKET).await;
    response(&mut tab).await;
    let initial = connect_initial(&["rdpdr", "cliprdr"]);
    tab.send(Message::binary(initial.clone()))
        .await
        .expect("send");
    let first = [connect_response(&[1004, CLIP]), fast_path(4_000)].concat();
    assert_eq!(read_bytes(&mut tab, first.len()).await, first);
    let listed = recordings.list().await.expect("listed");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].ended_ms.is_none() && !listed[0].kept);
    assert_eq!(
        listed[0].client_clipboard,
        Some(true),
        "known while it is open"
    );
    let id = listed[0].id.clone();

    // Carol joins: everything from the start.
    let mut watch = open(format!("{base}/watch/{id}"), "watch").await;
    response(&mut watch).await;
    watch.send(Message::binary(initial)).await.expect("send");
    assert_eq!(read_bytes(&mut watch, first.len()).await, first);
    assert_eq!(recordings.watchers("s-1").await, ["carol"]);
    // What she sends reaches no desktop: nothing more comes.
    watch
        .send(Message::binary(from_browser(1004, TYPED)))
        .await
        .expect("send");
    // What alice's desktop sends next reaches both.
    tab.send(Message::binary(from_browser(1004, b"a key")))
        .await
        .expect("send");
    assert_eq!(read_bytes(&mut tab, 700).await, fast_path(700));
    assert_eq!(read_bytes(&mut watch, 700).await, fast_path(700));

    // Alice closes her tab: the watch ends, and nothing is left on disk.
    tab.close(None).await.expect("close");
    result(&mut results).await.expect("relayed");
    match tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the watch ends")
    {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.reason.as_str(), "the user's tab closed");
        }
        other => panic!("expected the watch's end, got {other:?}"),
    }
    for _ in 0..50 {
        if recordings.watchers("s-1").await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recordings.watchers("s-1").await.is_empty());
    assert!(recordings.list().await.expect("listed").is_empty());
    let files: Vec<_> = std::fs::read_dir(dir.path().join("recordings"))
        .expect("the dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .collect();
    assert!(files.is_empty(), "{files:?}");
    assert_eq!(rdp.accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}
