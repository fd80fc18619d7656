//! What the browser's RDP gateway (`web::gateway::relay`) costs, on loopback.
//!
//! `cargo bench -p daas-server --bench gateway` runs a fake xrdp (X.224 confirm
//! selecting TLS, TLS with a self-signed ECDSA P-256 certificate, then an echo or
//! a bulk transfer), an axum route calling `relay` on a runtime of its own
//! (threads `gw-relay`, so its CPU is counted apart) and a client that reaches
//! the fake xrdp either directly over TLS or through the gateway (plain `ws://`,
//! a real RDCleanPath request), and prints:
//!
//! 1. round trips of a small message, direct and through the gateway;
//! 2. connection setup: WebSocket open to RDCleanPath response, beside TCP
//!    connect + X.224 + TLS handshake straight to the fake xrdp;
//! 3. a busy desktop: 64 MiB desktop to browser in 32 KiB writes and 1 MiB
//!    browser to desktop in 1 KiB messages, with the process CPU time
//!    (`/proc/self/stat`) of the same transfer direct and through the gateway,
//!    the gateway threads' own CPU time (`/proc/self/task/*/schedstat`) and the
//!    throughput;
//! 4. the clipboard policy's reading alone (`web::clipboard`, no I/O): the
//!    same 64 MiB of screen updates (fast-path frames of 16 000 bytes) fed in
//!    32 KiB reads to the desktop-to-browser filter under "both" (nothing read) and
//!    "off" (every frame read).

#[path = "../tests/it/fake_xrdp/mod.rs"]
mod fake_xrdp;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt as _;
use daas_server::domain::catalog::Clipboard;
use daas_server::web::clipboard;
use daas_server::web::gateway::{self, Relayed, Target};
use daas_server::web::recording;
use fake_xrdp::{
    Client, Results, TICKET, X224_CONFIRM, X224_REQUEST, next_binary, read_tpkt, request, response,
};
use futures_util::{SinkExt as _, StreamExt as _};
use ironrdp_rdcleanpath::RDCleanPathMessage;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// The gateway's threads, told apart from the client's and the fake xrdp's ("bench").
const GATEWAY_THREAD: &str = "gw-relay";

const ECHO_SIZE: usize = 64;
const WARM_UP: usize = 200;
const ROUND_TRIPS: usize = 2000;
const SETUPS: usize = 50;
const DOWN_BYTES: u64 = 64 << 20;
const DOWN_CHUNK: usize = 32 << 10;
const UP_BYTES: u64 = 1 << 20;
const UP_MESSAGE: usize = 1 << 10;
/// Bulk transfers per path; the CPU figures are their mean.
const TRANSFERS: usize = 8;

// ---------------------------------------------------------------- the fake xrdp

/// A fake xrdp serving `serve_desktop`.
async fn fake_rdp() -> Target {
    fake_xrdp::fake_rdp(X224_CONFIRM, serve_desktop)
        .await
        .target()
}

/// One mode byte from the client: `E` echoes; `B` then the downstream and
/// upstream byte counts (u64 BE each) sends the first in `DOWN_CHUNK` writes
/// while reading the second, then one `K`.
async fn serve_desktop(mut tls: tokio_rustls::server::TlsStream<TcpStream>) {
    let mut mode = [0u8; 1];
    if tls.read_exact(&mut mode).await.is_err() {
        return;
    }
    if mode[0] == b'B' {
        let mut counts = [0u8; 16];
        if tls.read_exact(&mut counts).await.is_err() {
            return;
        }
        let down = u64::from_be_bytes(counts[..8].try_into().expect("8 bytes"));
        let up = u64::from_be_bytes(counts[8..].try_into().expect("8 bytes"));
        let (mut rx, mut tx) = tokio::io::split(tls);
        let send = async {
            let chunk: Vec<u8> = (0..DOWN_CHUNK).map(|i| (i % 251) as u8).collect();
            let mut sent = 0u64;
            while sent < down {
                let n = (down - sent).min(DOWN_CHUNK as u64) as usize;
                tx.write_all(&chunk[..n]).await.expect("desktop write");
                tx.flush().await.expect("desktop flush");
                sent += n as u64;
            }
        };
        let receive = async {
            let mut buf = vec![0u8; 64 << 10];
            let mut got = 0u64;
            while got < up {
                match rx.read(&mut buf).await.expect("desktop read") {
                    0 => panic!("the client left before sending everything"),
                    n => got += n as u64,
                }
            }
        };
        tokio::join!(send, receive);
        tx.write_all(b"K").await.expect("desktop write");
        tx.flush().await.expect("desktop flush");
        let mut tls = rx.unsplit(tx);
        let mut rest = [0u8; 64];
        while matches!(tls.read(&mut rest).await, Ok(n) if n > 0) {}
        let _ = tls.shutdown().await;
        return;
    }
    fake_xrdp::echo(tls).await;
}

// ---------------------------------------------------------------- the gateway

/// The gateway on the gateway's runtime; `nodelay` sets TCP_NODELAY on the browsers'
/// connections, which the portal's listener (like `axum::serve`) does not.
fn gateway_server(
    runtime: &tokio::runtime::Runtime,
    target: Target,
    nodelay: bool,
) -> (String, Results) {
    let (app, rx) = fake_xrdp::router(target);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("address");
    runtime.spawn(async move {
        let listener = TcpListener::from_std(listener).expect("a tokio listener");
        if nodelay {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app).await.expect("serve");
        } else {
            axum::serve(listener, app).await.expect("serve");
        }
    });
    (format!("ws://{addr}/gateway"), rx)
}

async fn relay_result(results: &mut Results) -> Relayed {
    fake_xrdp::result(results).await.expect("a relay")
}

// ---------------------------------------------------------------- the clients

/// The browser's side: WebSocket (TCP_NODELAY, as browsers set it), RDCleanPath
/// request, response.
async fn open_gateway(url: &str) -> Client {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .expect("WebSocket connect");
    ws.send(Message::binary(request("ignored:3389", TICKET)))
        .await
        .expect("send request");
    assert!(
        matches!(response(&mut ws).await, RDCleanPathMessage::Response { .. }),
        "expected a success response"
    );
    ws
}

type Direct = tokio_rustls::client::TlsStream<TcpStream>;

/// A native client's side: TCP, X.224, TLS (any certificate, signatures checked, as the gateway).
async fn open_direct(addr: SocketAddr, tls: &tokio_rustls::TlsConnector) -> Direct {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    tcp.write_all(&X224_REQUEST).await.expect("X.224 request");
    let confirm = read_tpkt(&mut tcp).await.expect("X.224 confirm");
    assert_eq!(confirm, X224_CONFIRM);
    tls.connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .expect("TLS handshake")
}

fn tls_connector(pin: &str) -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(gateway::tls_config(pin).expect("a TLS client config"))
}

fn bulk_header() -> Vec<u8> {
    let mut header = vec![b'B'];
    header.extend(DOWN_BYTES.to_be_bytes());
    header.extend(UP_BYTES.to_be_bytes());
    header
}

// ---------------------------------------------------------------- the measures

/// Round trips of `ECHO_SIZE` bytes directly over TLS, appended to `times`.
async fn echo_direct(stream: &mut Direct, n: usize, times: &mut Vec<Duration>) {
    let message = [0x5au8; ECHO_SIZE];
    let mut back = [0u8; ECHO_SIZE];
    for _ in 0..n {
        let t = Instant::now();
        stream.write_all(&message).await.expect("write");
        stream.flush().await.expect("flush");
        stream.read_exact(&mut back).await.expect("echo");
        times.push(t.elapsed());
    }
}

/// Round trips of `ECHO_SIZE` bytes through the gateway, appended to `times`.
async fn echo_gateway(ws: &mut Client, n: usize, times: &mut Vec<Duration>) {
    for _ in 0..n {
        let t = Instant::now();
        ws.send(Message::binary(vec![0x5au8; ECHO_SIZE]))
            .await
            .expect("send");
        let mut got = 0;
        while got < ECHO_SIZE {
            got += next_binary(ws).await.len();
        }
        times.push(t.elapsed());
    }
}

/// The three paths' round trips, in interleaved rounds so that a burst of noise
/// from the VM does not land on one path only.
async fn round_trips(
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    gateways: [(&str, &mut Results); 2],
) -> [Vec<Duration>; 3] {
    let mut direct = open_direct(addr, tls).await;
    direct.write_all(b"E").await.expect("mode");
    let mut ws = Vec::new();
    for (url, _) in &gateways {
        let mut client = open_gateway(url).await;
        client
            .send(Message::binary(b"E".to_vec()))
            .await
            .expect("mode");
        ws.push(client);
    }
    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut warm_up = Vec::new();
    echo_direct(&mut direct, WARM_UP, &mut warm_up).await;
    for client in &mut ws {
        echo_gateway(client, WARM_UP, &mut warm_up).await;
    }
    const ROUNDS: usize = 10;
    for _ in 0..ROUNDS {
        echo_direct(&mut direct, ROUND_TRIPS / ROUNDS, &mut times[0]).await;
        for (client, times) in ws.iter_mut().zip(&mut times[1..]) {
            echo_gateway(client, ROUND_TRIPS / ROUNDS, times).await;
        }
    }
    let _ = direct.shutdown().await;
    for (mut client, (_, results)) in ws.into_iter().zip(gateways) {
        client.close(None).await.expect("close");
        relay_result(results).await;
    }
    for t in &mut times {
        t.sort();
    }
    times
}

/// Connection setups, alternating: direct TCP + X.224 + TLS; WebSocket open to
/// RDCleanPath response; and the gateway's own `Relayed::setup` of the latter.
async fn setups(
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    url: &str,
    results: &mut Results,
) -> [Vec<Duration>; 3] {
    let mut times: [Vec<Duration>; 3] = Default::default();
    for _ in 0..SETUPS {
        let t = Instant::now();
        let mut stream = open_direct(addr, tls).await;
        times[0].push(t.elapsed());
        let _ = stream.shutdown().await;

        let t = Instant::now();
        let mut ws = open_gateway(url).await;
        times[1].push(t.elapsed());
        ws.close(None).await.expect("close");
        times[2].push(relay_result(results).await.setup);
    }
    for t in &mut times {
        t.sort();
    }
    times
}

/// One busy-desktop transfer directly over TLS; returns its wall time (header sent
/// to everything received).
async fn bulk_direct(addr: SocketAddr, tls: &tokio_rustls::TlsConnector) -> Duration {
    let mut stream = open_direct(addr, tls).await;
    stream.write_all(&bulk_header()).await.expect("header");
    stream.flush().await.expect("flush");
    let t = Instant::now();
    let (mut rx, mut tx) = tokio::io::split(stream);
    let send = async {
        let message = vec![0x5au8; UP_MESSAGE];
        for _ in 0..UP_BYTES / UP_MESSAGE as u64 {
            tx.write_all(&message).await.expect("write");
            tx.flush().await.expect("flush");
        }
    };
    let receive = async {
        let mut buf = vec![0u8; 64 << 10];
        let mut got = 0u64;
        while got < DOWN_BYTES + 1 {
            match rx.read(&mut buf).await.expect("read") {
                0 => panic!("the desktop left early"),
                n => got += n as u64,
            }
        }
    };
    tokio::join!(send, receive);
    let elapsed = t.elapsed();
    let _ = rx.unsplit(tx).shutdown().await;
    elapsed
}

/// The same transfer through the gateway.
async fn bulk_gateway(url: &str, results: &mut Results) -> Duration {
    let mut ws = open_gateway(url).await;
    ws.send(Message::binary(bulk_header()))
        .await
        .expect("header");
    let t = Instant::now();
    let (mut tx, mut rx) = ws.split();
    let send = async {
        let message = tokio_tungstenite::tungstenite::Bytes::from(vec![0x5au8; UP_MESSAGE]);
        for _ in 0..UP_BYTES / UP_MESSAGE as u64 {
            tx.send(Message::Binary(message.clone()))
                .await
                .expect("send");
        }
    };
    let receive = async {
        let mut got = 0u64;
        while got < DOWN_BYTES + 1 {
            match rx.next().await.expect("open").expect("a message") {
                Message::Binary(data) => got += data.len() as u64,
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("expected a binary message, got {other:?}"),
            }
        }
    };
    tokio::join!(send, receive);
    let elapsed = t.elapsed();
    let mut ws = tx.reunite(rx).expect("the same WebSocket");
    ws.close(None).await.expect("close");
    let relayed = relay_result(results).await;
    assert_eq!(relayed.to_client, DOWN_BYTES + 1);
    assert_eq!(relayed.to_server, UP_BYTES + bulk_header().len() as u64);
    elapsed
}

/// The process's user + system CPU time (`/proc/self/stat`, in USER_HZ = 100 ticks).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after_name = stat.rsplit_once(')').expect("a stat line").1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime); `fields[0]` is field 3.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

/// The CPU time of the gateway runtime's threads (`schedstat`, in nanoseconds).
fn gateway_cpu() -> Duration {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = task.expect("a task").path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() != GATEWAY_THREAD {
            continue;
        }
        let schedstat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        total += schedstat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(total)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn signed_us(a: Duration, b: Duration) -> String {
    format!("{:+.0} µs", (a.as_secs_f64() - b.as_secs_f64()) * 1e6)
}

fn row(name: &str, t: &[Duration], base: Option<&[Duration]>) {
    let diff = base
        .map(|b| {
            format!(
                "  ({} / {} / {})",
                signed_us(pct(t, 0.5), pct(b, 0.5)),
                signed_us(pct(t, 0.95), pct(b, 0.95)),
                signed_us(pct(t, 0.99), pct(b, 0.99))
            )
        })
        .unwrap_or_default();
    println!(
        "  {name:<38} {:>7} {:>7} {:>7}{diff}",
        us(pct(t, 0.5)),
        us(pct(t, 0.95)),
        us(pct(t, 0.99))
    );
}

fn main() {
    let gateway_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(GATEWAY_THREAD)
        .enable_all()
        .build()
        .expect("the gateway's runtime");
    let bench_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench")
        .enable_all()
        .build()
        .expect("the bench's runtime");
    let started = Instant::now();
    bench_runtime.block_on(run(&gateway_runtime));
    println!("total {:.1} s", started.elapsed().as_secs_f64());
    gateway_runtime.shutdown_background();
    bench_runtime.shutdown_background();
}

async fn run(gateway_runtime: &tokio::runtime::Runtime) {
    let target = fake_rdp().await;
    let rdp = target.addr;
    let tls = tls_connector(&target.cert_sha256);
    let (url, mut results) = gateway_server(gateway_runtime, target.clone(), false);
    let (url_nodelay, mut results_nodelay) = gateway_server(gateway_runtime, target.clone(), true);
    // The same desktop with its tab recorded (`record = true`), to a temporary dir.
    let recordings_dir = tempfile::tempdir().expect("a temporary dir");
    let recorded = Target {
        record: Some(recording::Plan {
            to: std::sync::Arc::new(recording::Recordings::new(
                recordings_dir.path().to_path_buf(),
                Duration::from_secs(3600),
            )),
            subject: recording::Subject {
                session_id: "s-bench".into(),
                owner: "bench".into(),
                user: "bench".into(),
                template: "bench".into(),
                clipboard: Clipboard::Both,
                kept: true,
            },
        }),
        ..target.clone()
    };
    let (url_recorded, mut results_recorded) = gateway_server(gateway_runtime, recorded, false);

    println!("RDP gateway on loopback: `cargo bench -p daas-server --bench gateway`");
    println!(
        "(client, fake xrdp: 2 threads \"bench\"; gateway: 2 threads \"{GATEWAY_THREAD}\"; {} CPUs)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // 1. Round trips.
    let [direct, through, through_nodelay] = round_trips(
        rdp,
        &tls,
        [(&url, &mut results), (&url_nodelay, &mut results_nodelay)],
    )
    .await;
    println!("\n1. round trip of {ECHO_SIZE} bytes, {ROUND_TRIPS} after {WARM_UP} warm-up:");
    println!("  {:<38} {:>7} {:>7} {:>7}", "", "p50", "p95", "p99");
    row("direct TLS", &direct, None);
    row(
        "gateway (as the portal: no NODELAY)",
        &through,
        Some(&direct),
    );
    row(
        "gateway (NODELAY on browser side)",
        &through_nodelay,
        Some(&direct),
    );

    // 2. Setup.
    let [direct, through, inside] = setups(rdp, &tls, &url, &mut results).await;
    println!("\n2. connection setup, {SETUPS} connections:");
    println!("  {:<38} {:>7} {:>7} {:>7}", "", "p50", "p95", "p99");
    row("direct TCP + X.224 + TLS", &direct, None);
    row(
        "gateway: WS open to RDCleanPath resp.",
        &through,
        Some(&direct),
    );
    row("  of which relay()'s own setup", &inside, None);

    // 3. Busy desktop.
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let gib = (DOWN_BYTES + UP_BYTES) as f64 / f64::from(1u32 << 30);
    let mut measure = async |path: u8| {
        let (cpu0, gw0) = (process_cpu(), gateway_cpu());
        let mut wall = Duration::ZERO;
        for _ in 0..TRANSFERS {
            wall += match path {
                0 => bulk_direct(rdp, &tls).await,
                1 => bulk_gateway(&url, &mut results).await,
                _ => bulk_gateway(&url_recorded, &mut results_recorded).await,
            };
        }
        let n = TRANSFERS as u32;
        (
            (process_cpu() - cpu0) / n,
            (gateway_cpu() - gw0) / n,
            wall / n,
        )
    };
    let (direct_cpu, _, direct_wall) = measure(0).await;
    let (through_cpu, gw_cpu, through_wall) = measure(1).await;
    let (recorded_cpu, recorded_gw_cpu, recorded_wall) = measure(2).await;
    println!(
        "\n3. busy desktop, per connection (mean of {TRANSFERS}): {:.0} MiB down in {} KiB writes, {:.0} MiB up in {} KiB messages",
        mib(DOWN_BYTES),
        DOWN_CHUNK >> 10,
        mib(UP_BYTES),
        UP_MESSAGE >> 10
    );
    println!(
        "  {:<38} {:>9} {:>9} {:>9}",
        "", "CPU s", "MiB/s", "CPU s/GiB"
    );
    let line = |name: &str, cpu: Duration, wall: Option<Duration>| {
        println!(
            "  {name:<38} {:>9.3} {:>9} {:>9.2}",
            cpu.as_secs_f64(),
            wall.map_or("".to_owned(), |w| format!(
                "{:.0}",
                mib(DOWN_BYTES) / w.as_secs_f64()
            )),
            cpu.as_secs_f64() / gib
        );
    };
    line("direct TLS, whole process", direct_cpu, Some(direct_wall));
    line("gateway, whole process", through_cpu, Some(through_wall));
    line(
        "difference (gateway's share)",
        through_cpu.saturating_sub(direct_cpu),
        None,
    );
    line("gateway threads alone (schedstat)", gw_cpu, None);
    println!(
        "  (process CPU from /proc/self/stat, 10 ms ticks; the difference also swaps the client's TLS for WebSocket)"
    );

    // 4. The clipboard policy's reading.
    println!(
        "\n4. the clipboard policy's reading alone: {:.0} MiB of screen updates, desktop to browser (best of 5)",
        mib(DOWN_BYTES)
    );
    println!("  {:<38} {:>9} {:>9}", "", "MiB/s", "CPU s/GiB");
    let both = filter_time(Clipboard::Both);
    let off = filter_time(Clipboard::Off);
    let gib = DOWN_BYTES as f64 / f64::from(1u32 << 30);
    for (name, t) in [
        ("\"both\" (passed unread)", both),
        ("\"off\" (every frame read)", off),
    ] {
        println!(
            "  {name:<38} {:>9.0} {:>9.3}",
            mib(DOWN_BYTES) / t.as_secs_f64(),
            t.as_secs_f64() / gib
        );
    }
    println!(
        "  {:<38} {:>9} {:>9.3}",
        "added by reading",
        "",
        off.saturating_sub(both).as_secs_f64() / gib
    );

    // 5. Recording.
    println!(
        "\n5. the same through the gateway with the tab recorded (record = true; every frame written and flushed to a file):"
    );
    println!(
        "  {:<38} {:>9} {:>9} {:>9}",
        "", "CPU s", "MiB/s", "CPU s/GiB"
    );
    line(
        "not recorded, whole process",
        through_cpu,
        Some(through_wall),
    );
    line("recorded, whole process", recorded_cpu, Some(recorded_wall));
    line("not recorded, gateway threads", gw_cpu, None);
    line("recorded, gateway threads", recorded_gw_cpu, None);
    line(
        "added by recording (gateway threads)",
        recorded_gw_cpu.saturating_sub(gw_cpu),
        None,
    );
}

/// The best of five runs of [`DOWN_BYTES`] of fast-path frames through a
/// desktop-to-browser filter under `policy`, after the connection's setup.
fn filter_time(policy: Clipboard) -> Duration {
    use fake_xrdp::pdus::{connect_initial, connect_response, fast_path};
    // About 2 MiB of whole frames, read in chunks that split them.
    let frame = fast_path(16_000);
    let stream = frame.repeat(131);
    (0..5)
        .map(|_| {
            let (mut up, mut down) = clipboard::filters(policy);
            up.feed(&connect_initial(&["rdpdr", "cliprdr"]))
                .expect("connect initial");
            down.feed(&connect_response(&[1004, 1005]))
                .expect("connect response");
            let started = Instant::now();
            let mut passed = 0u64;
            while passed < DOWN_BYTES {
                for read in stream.chunks(DOWN_CHUNK) {
                    let out = down.feed(read).expect("screen updates");
                    passed += std::hint::black_box(out).len() as u64;
                }
            }
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}
