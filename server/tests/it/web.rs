//! The web portal against a real AD domain controller (tests/ad/dc.sh,
//! Samba 4.17 in a network namespace; root) and a real server on ephemeral
//! ports, driven with curl and a cookie jar as a browser would: sign-in
//! over LDAPS, the group rules, the cookie's flags, CSRF, the failed
//! sign-in limit, the audit trail, a create followed over server-sent
//! events, the .rdp file, tickets, destroy and sign-out.

use std::{os::unix::fs::PermissionsExt, path::PathBuf, time::Duration};

use crate::common::domain::Domain;
use daas_server::testkit::{TestOptions, TestServer};
use serde_json::Value;
use tokio::process::Command;

/// A browser: curl with a cookie jar, trusting the server's CA.
struct Browser {
    base: String,
    ca: PathBuf,
    jar: tempfile::NamedTempFile,
    csrf: String,
}

/// An answer: status, headers (lower-case names) and body.
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
}

impl Browser {
    fn new(server: &TestServer) -> Browser {
        let base = server
            .web_endpoint()
            .expect("the portal is on")
            .replace("127.0.0.1", "localhost");
        Browser {
            base,
            ca: server.dir().join("pki/ca.pem"),
            jar: tempfile::NamedTempFile::new().expect("a cookie jar"),
            csrf: String::new(),
        }
    }

    /// `method path` as the portal's page sends it: JSON, with the page's
    /// `Origin` on anything but a GET.
    async fn call(&self, method: &str, path: &str, body: Option<&str>, csrf: bool) -> Answer {
        let mut extra = Vec::new();
        if method != "GET" {
            extra.push("-H".to_string());
            extra.push(format!("Origin: {}", self.base));
        }
        if let Some(body) = body {
            for arg in ["-H", "Content-Type: application/json", "--data-raw", body] {
                extra.push(arg.to_string());
            }
        }
        self.call_with(method, path, &extra, csrf).await
    }

    /// `method path` with curl's `extra` arguments (headers, a body).
    async fn call_with(&self, method: &str, path: &str, extra: &[String], csrf: bool) -> Answer {
        let headers = tempfile::NamedTempFile::new().expect("a header file");
        let mut cmd = Command::new("curl");
        cmd.args([
            "--silent",
            "--show-error",
            "--max-time",
            "120",
            "-X",
            method,
        ])
        .arg("--cacert")
        .arg(&self.ca)
        .arg("--cookie")
        .arg(self.jar.path())
        .arg("--cookie-jar")
        .arg(self.jar.path())
        .arg("--dump-header")
        .arg(headers.path())
        .args(["--write-out", "\n%{http_code}"]);
        if csrf {
            cmd.args(["-H", &format!("X-CSRF-Token: {}", self.csrf)]);
        }
        let out = cmd
            .args(extra)
            .arg(format!("{}{path}", self.base))
            .output()
            .await
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        Answer {
            status: code.trim().parse().unwrap_or(0),
            headers: std::fs::read_to_string(headers.path())
                .unwrap_or_default()
                .to_lowercase(),
            body: body.to_string(),
        }
    }

    async fn sign_in(&mut self, user: &str, password: &str) -> Answer {
        let body = serde_json::json!({ "username": user, "password": password }).to_string();
        let answer = self.call("POST", "/web/login", Some(&body), false).await;
        if answer.status == 200 {
            self.csrf = answer.json()["csrf"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
        answer
    }
}

/// A server with the portal on the test domain, and `web_keys` (TOML
/// lines) added to its `[web]` table.
async fn portal(domain: &Domain, web_keys: &str) -> TestServer {
    let toml = domain.toml.replace(
        "max_failed_logins = 3",
        &format!("max_failed_logins = 3\n{web_keys}"),
    );
    assert_ne!(
        toml, domain.toml,
        "the test domain's [web] has max_failed_logins"
    );
    TestServer::start(TestOptions {
        extra_toml: toml,
        ..TestOptions::default()
    })
    .await
}

async fn audit_of(server: &TestServer) -> Vec<daas_api::v1::AuditEntry> {
    let mut admin = server.client().await;
    admin
        .list_audit(daas_api::v1::ListAuditRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("ListAudit")
        .into_inner()
        .entries
}

#[tokio::test(flavor = "multi_thread")]
async fn the_portal_signs_in_domain_users_and_serves_their_desktops() {
    let domain = Domain::start();
    // No catalog: web.templates offers any name, as before the catalog.
    let server = TestServer::start(TestOptions {
        extra_toml: domain.toml.replacen(
            "[web]\n",
            "[web]\ntemplates = [\"debian-12-xfce\", \"ubuntu-24\"]\n",
            1,
        ),
        ..TestOptions::default()
    })
    .await;

    // The page itself, with its security headers, needs no sign-in.
    let anonymous = Browser::new(&server);
    let page = anonymous.call("GET", "/", None, false).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Sign in with your domain account"));
    assert!(
        page.headers
            .contains("content-security-policy: default-src 'none'")
    );
    assert!(page.headers.contains("x-frame-options: deny"));
    assert_eq!(
        anonymous.call("GET", "/web/me", None, false).await.status,
        401
    );
    assert_eq!(
        anonymous.call("GET", "/app.js", None, false).await.status,
        200
    );

    // alice, in daas-users: a cookie with every flag, a user (not admin).
    let mut alice = Browser::new(&server);
    let alice_password = domain.password("alice");
    let signed = alice.sign_in("alice", &alice_password).await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    let cookie = signed
        .headers
        .lines()
        .find(|l| l.starts_with("set-cookie: __host-daas="))
        .expect("a session cookie")
        .to_string();
    for flag in ["secure", "httponly", "samesite=strict", "path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let me = alice.call("GET", "/web/me", None, false).await.json();
    assert_eq!(me["user"], "alice");
    assert_eq!(me["admin"], false);
    let offered: Vec<&str> = me["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(offered, ["debian-12-xfce", "ubuntu-24"]);
    assert_eq!(me["templates"][1]["default_size"], "standard");
    assert_eq!(
        alice.call("GET", "/web/audit", None, false).await.status,
        403
    );
    assert_eq!(
        alice.call("GET", "/web/nodes", None, false).await.status,
        403
    );

    // A state-changing call without the CSRF token is refused.
    let body = r#"{"template":"","request_id":"web-test-1"}"#;
    let refused = alice.call("POST", "/web/sessions", Some(body), false).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("CSRF"));

    // Create, then follow the stages as server-sent events to READY.
    let created = alice.call("POST", "/web/sessions", Some(body), true).await;
    assert_eq!(created.status, 202, "{}", created.body);
    let id = created.json()["id"].as_str().expect("an id").to_string();
    let events = alice
        .call("GET", &format!("/web/sessions/{id}/events"), None, false)
        .await;
    assert_eq!(events.status, 200);
    assert!(events.headers.contains("content-type: text/event-stream"));
    let states: Vec<String> = events
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|e| e["kind"] == "stage")
        .map(|e| e["state"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        states,
        ["QUEUED", "PROVISIONING", "BOOTING", "CONFIGURING", "READY"],
        "{}",
        events.body
    );
    assert!(events.body.contains("event: end"));
    let list = alice.call("GET", "/web/sessions", None, false).await.json();
    let mine = &list["sessions"][0];
    assert_eq!(mine["id"], id.as_str());
    assert_eq!(mine["username"], "alice");
    assert_eq!(mine["state"], "READY");

    // The .rdp file, and a ticket (CSRF-checked) for the gateway.
    let rdp = alice
        .call("GET", &format!("/web/sessions/{id}/rdp"), None, false)
        .await;
    assert_eq!(rdp.status, 200);
    assert!(rdp.body.contains("username:s:alice"));
    assert!(rdp.headers.contains("content-disposition: attachment"));
    let path = format!("/web/sessions/{id}/ticket");
    assert_eq!(alice.call("POST", &path, None, false).await.status, 403);
    let ticket = alice.call("POST", &path, None, true).await.json();
    assert_eq!(ticket["ticket"].as_str().map(str::len), Some(64));
    // The template's clipboard policy, for the page (the open catalog's: both).
    assert_eq!(ticket["clipboard"], "both");
    // No sign in once here: the page keeps the desktop's size.
    assert_eq!(ticket["autologon"], false);
    assert_eq!(ticket["recorded"], false);
    assert_eq!(ticket["watchable"], false);
    let watchers = alice
        .call("GET", &format!("/web/sessions/{id}/watchers"), None, false)
        .await;
    assert_eq!(watchers.status, 200, "{}", watchers.body);
    assert_eq!(watchers.json()["watchers"], serde_json::json!([]));
    // A few tickets at once, then a clear 429: never one that cannot work.
    for _ in 1..8 {
        assert_eq!(alice.call("POST", &path, None, true).await.status, 200);
    }
    let full = alice.call("POST", &path, None, true).await;
    assert_eq!(full.status, 429, "{}", full.body);
    assert!(full.body.contains("desktop tabs opening"), "{}", full.body);

    // bob: right password, not in daas-users: refused. A wrong password:
    // 401, and after three failures (from this address), 429 with
    // Retry-After even with the right one.
    let mut bob = Browser::new(&server);
    let bob_password = domain.password("bob");
    let denied = bob.sign_in("bob", &bob_password).await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(denied.body.contains("daas-users"));
    // Another user's session is not bob's: he has no cookie anyway.
    assert_eq!(
        bob.call("GET", "/web/sessions", None, false).await.status,
        401
    );
    // An empty password is never an (anonymous) bind that succeeds.
    let empty = Browser::new(&server).sign_in("alice", "").await;
    assert_eq!(empty.status, 401);
    let mut mallory = Browser::new(&server);
    for _ in 0..2 {
        let wrong = mallory.sign_in("carol", "not-her-password").await;
        assert_eq!(wrong.status, 401, "{}", wrong.body);
        assert!(wrong.body.contains("wrong user name or password"));
    }
    let carol_password = domain.password("carol");
    let limited = mallory.sign_in("carol", &carol_password).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.headers.contains("retry-after: "));

    // carol is an administrator through daas-admins (the limit was on her
    // name: a server restart would clear it; here, another server).
    let server2 = TestServer::start(TestOptions {
        extra_toml: domain.toml.clone(),
        ..TestOptions::default()
    })
    .await;
    let mut carol = Browser::new(&server2);
    let signed = carol.sign_in("carol", &carol_password).await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    assert_eq!(signed.json()["admin"], true);
    assert_eq!(
        carol.call("GET", "/web/pools", None, false).await.status,
        200
    );
    // The cluster's nodes: none here (the test module places its VMs
    // itself); an unknown node is named.
    let nodes = carol.call("GET", "/web/nodes", None, false).await;
    assert_eq!(nodes.status, 200, "{}", nodes.body);
    assert_eq!(nodes.json()["nodes"], serde_json::json!([]));
    let drain = carol
        .call("POST", "/web/nodes/node-9/drain", None, true)
        .await;
    assert_eq!(drain.status, 404, "{}", drain.body);
    assert!(drain.body.contains("daas node list"), "{}", drain.body);
    let trail = carol.call("GET", "/web/audit", None, false).await.json();
    assert!(trail["entries"].as_array().is_some_and(|e| !e.is_empty()));
    server2.stop().await;

    // Destroy (CSRF-checked), then sign out: the old cookie opens nothing.
    let path = format!("/web/sessions/{id}/destroy");
    assert_eq!(alice.call("POST", &path, None, false).await.status, 403);
    let destroyed = alice.call("POST", &path, None, true).await;
    assert_eq!(destroyed.status, 200, "{}", destroyed.body);
    assert_eq!(destroyed.json()["state"], "DESTROYED");
    let jar_before = std::fs::read_to_string(alice.jar.path()).expect("the jar");
    let out = alice.call("POST", "/web/logout", None, true).await;
    assert_eq!(out.status, 204);
    assert!(out.headers.contains("max-age=0"));
    assert_eq!(alice.call("GET", "/web/me", None, false).await.status, 401);
    std::fs::write(alice.jar.path(), jar_before).expect("restore the old cookie");
    assert_eq!(alice.call("GET", "/web/me", None, false).await.status, 401);

    // The trail: sign-ins (good, wrong, refused, limited), create, destroy,
    // all from "web"; no password anywhere in it.
    let entries = audit_of(&server).await;
    let has = |actor: &str, action: &str, result: &str| {
        entries
            .iter()
            .any(|e| e.actor == actor && e.action == action && e.result == result)
    };
    assert!(has("alice", "web sign-in", "OK"));
    assert!(has("bob", "web sign-in", "PERMISSION_DENIED"));
    assert!(has("carol", "web sign-in", "UNAUTHENTICATED"));
    assert!(has("carol", "web sign-in", "RESOURCE_EXHAUSTED"));
    assert!(has("alice", "create", "OK"));
    assert!(has("alice", "destroy", "OK"));
    assert!(
        entries
            .iter()
            .filter(|e| e.action.starts_with("web") || e.actor == "alice")
            .all(|e| e.subject == "web" || e.action != "web sign-in")
    );
    let text = format!("{entries:?}");
    for secret in [&alice_password, &bob_password, &carol_password] {
        assert!(!text.contains(secret.as_str()), "a password in the trail");
    }
    server.stop().await;
}

/// The sign-in under abuse: login CSRF, parallel guessing, bursts in the
/// trail, an account bound under another's name, an unreachable directory.
#[tokio::test(flavor = "multi_thread")]
async fn the_sign_in_holds_under_abuse() {
    let domain = Domain::start();
    let server = TestServer::start(TestOptions {
        extra_toml: domain.toml.clone(),
        ..TestOptions::default()
    })
    .await;
    let alice_password = domain.password("alice");
    let body = serde_json::json!({ "username": "alice", "password": alice_password }).to_string();
    let browser = Browser::new(&server);
    let origin = format!("Origin: {}", browser.base);
    let args = |headers: &[&str]| {
        let mut args: Vec<String> = Vec::new();
        for header in headers {
            args.push("-H".into());
            args.push(header.to_string());
        }
        args.push("--data-raw".into());
        args.push(body.clone());
        args
    };
    // A form on another site can neither send JSON nor this Origin.
    let form = args(&["Content-Type: application/x-www-form-urlencoded", &origin]);
    let answer = browser.call_with("POST", "/web/login", &form, false).await;
    assert_eq!(answer.status, 415, "{}", answer.body);
    for headers in [
        vec![
            "Content-Type: application/json",
            "Origin: https://evil.example",
        ],
        vec!["Content-Type: application/json"],
    ] {
        let answer = browser
            .call_with("POST", "/web/login", &args(&headers), false)
            .await;
        assert_eq!(answer.status, 403, "{headers:?}: {}", answer.body);
        assert!(
            answer.body.contains("this portal's own page"),
            "{}",
            answer.body
        );
    }
    let ok = browser
        .call_with(
            "POST",
            "/web/login",
            &args(&["Content-Type: application/json; charset=utf-8", &origin]),
            false,
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    // Ten guesses at once: one at a time reaches the directory, and the
    // limit (3) holds however many run in parallel.
    let guesses = (0..10).map(|_| {
        let mut guesser = Browser::new(&server);
        async move { guesser.sign_in("carol", "not-her-password").await.status }
    });
    let mut statuses = futures_util::future::join_all(guesses).await;
    statuses.sort_unstable();
    assert_eq!(statuses[..3], [401, 401, 401], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    // The seven refusals are one entry of the trail.
    let entries = audit_of(&server).await;
    let limited = entries
        .iter()
        .filter(|e| e.actor == "carol" && e.result == "RESOURCE_EXHAUSTED")
        .count();
    assert_eq!(limited, 1, "a burst of refusals is one entry");
    server.stop().await;

    // mallory's user principal name is dave@daas.example: with that UPN
    // suffix, her password binds "dave", but the account bound is hers.
    let toml = domain
        .toml
        .replace("domain = \"daas.test\"", "domain = \"daas.example\"");
    assert_ne!(toml, domain.toml, "the test domain's toml names daas.test");
    let server = TestServer::start(TestOptions {
        extra_toml: toml,
        ..TestOptions::default()
    })
    .await;
    let mut dave = Browser::new(&server);
    let taken = dave.sign_in("dave", &domain.password("mallory")).await;
    assert_eq!(
        taken.status, 401,
        "signed in as dave with mallory's password: {}",
        taken.body
    );
    server.stop().await;

    // An unreachable directory: the browser learns only that sign-in is
    // unavailable (the details are in the log).
    let toml = domain
        .toml
        .lines()
        .map(|l| {
            if l.starts_with("connect = ") {
                "connect = \"127.0.0.1:9\""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let server = TestServer::start(TestOptions {
        extra_toml: toml,
        ..TestOptions::default()
    })
    .await;
    let mut alice = Browser::new(&server);
    let answer = alice.sign_in("alice", &alice_password).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(
        answer.json()["error"],
        "sign-in is unavailable: try again later"
    );
    server.stop().await;
}

/// A TLS connection to the portal, trusting the test CA.
async fn tls_to(server: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(server.dir().join("pki/ca.pem")).expect("the CA") {
        roots.add(cert.expect("a certificate")).expect("a root");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let addr = server
        .web_endpoint()
        .expect("the portal is on")
        .trim_start_matches("https://")
        .to_string();
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("a name"), tcp)
        .await
        .expect("a TLS handshake")
}

/// Whether the server closes `stream` within `within` (reading whatever
/// it still sends).
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Slow or idle connections are closed, and one address cannot hold more
/// than its share of them (no domain needed: nobody signs in).
#[tokio::test(flavor = "multi_thread")]
async fn slow_idle_and_too_many_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(TestOptions {
        extra_toml: "[web]\nlisten = \"127.0.0.1:0\"\nallow_all_domain_users = true\n\
                     header_timeout = \"1s\"\nmax_connections_per_address = 3\n\
                     [web.ldap]\nurl = \"ldaps://dc.invalid\"\nbase_dn = \"DC=x\"\ndomain = \"x\"\n"
            .into(),
        ..TestOptions::default()
    })
    .await;
    // Headers that never end: closed after header_timeout.
    let mut slow = tls_to(&server).await;
    slow.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut slow, Duration::from_secs(8)).await,
        "a slow client stays"
    );
    drop(slow);
    // A kept-alive connection, idle after its answer: closed too.
    let mut idle = tls_to(&server).await;
    idle.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut idle, Duration::from_secs(8)).await,
        "an idle client stays"
    );
    drop(idle);
    // Three connections from this address; a fourth is closed at once.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tls_to(&server).await);
    }
    let addr = server
        .web_endpoint()
        .expect("on")
        .trim_start_matches("https://")
        .to_string();
    let mut fourth = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    assert!(
        closed_within(&mut fourth, Duration::from_secs(3)).await,
        "a fourth was served"
    );
    // One closed: there is room again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = tls_to(&server).await;
    again
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut again, &mut answer)
        .await
        .ok();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await;
}

/// Sign in once (`web.pass_through_credentials`): the password the user
/// signed in with is kept in the server's memory only: no file of the
/// server's (store, audit trail, keys) holds it, before or after sign-out.
#[tokio::test(flavor = "multi_thread")]
async fn a_passed_through_password_is_in_no_file() {
    let domain = Domain::start();
    let server = portal(&domain, "pass_through_credentials = true").await;
    let password = domain.password("alice");
    let mut tab = Browser::new(&server);
    assert_eq!(tab.sign_in("alice", &password).await.status, 200);
    let path = "/web/sessions";
    assert_eq!(tab.call("GET", path, None, false).await.status, 200);
    let in_files = || {
        crate::secrets::files_under(server.dir())
            .into_iter()
            .filter(|file| {
                let bytes = std::fs::read(file).unwrap_or_default();
                bytes
                    .windows(password.len())
                    .any(|w| w == password.as_bytes())
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(in_files(), Vec::<std::path::PathBuf>::new());
    let out = tab.call("POST", "/web/logout", None, true).await;
    assert!(out.status < 300, "{}", out.body);
    assert_eq!(in_files(), Vec::<std::path::PathBuf>::new());
    let trail = audit_of(&server).await;
    assert!(trail.iter().any(|e| e.action == "web sign-in"));
    assert!(trail.iter().all(|e| !format!("{e:?}").contains(&password)));
    server.stop().await;
}

/// A page left open does not keep its sign-in alive, and one user has a
/// bounded number of sign-ins.
#[tokio::test(flavor = "multi_thread")]
async fn sign_ins_end_when_unused_and_are_bounded_per_user() {
    let domain = Domain::start();
    let server = portal(&domain, "session_idle = \"2s\"").await;
    let password = domain.password("alice");
    let mut tab = Browser::new(&server);
    assert_eq!(tab.sign_in("alice", &password).await.status, 200);
    let refresh = ["-H".to_string(), "X-Page-Refresh: 1".to_string()];
    // Refreshes every 0.5 s: answered while the sign-in lives (2 s after
    // the last thing the user did), then not.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let answer = tab.call_with("GET", "/web/sessions", &refresh, false).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    let answer = tab.call_with("GET", "/web/sessions", &refresh, false).await;
    assert_eq!(
        answer.status, 401,
        "the page's refreshes kept the sign-in alive"
    );
    // What the user does keeps it.
    let mut used = Browser::new(&server);
    assert_eq!(used.sign_in("alice", &password).await.status, 200);
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            used.call("GET", "/web/sessions", None, false).await.status,
            200
        );
    }
    server.stop().await;
    // The cap and a restart on a portal where nothing expires meanwhile
    // (16 sign-ins or a restart may take longer than 2 s on a busy machine).
    let server = portal(&domain, "").await;
    let mut used = Browser::new(&server);
    assert_eq!(used.sign_in("alice", &password).await.status, 200);
    // 16 sign-ins of one user at most (the one above is the first).
    let mut browsers = Vec::new();
    for _ in 1..16 {
        let mut browser = Browser::new(&server);
        assert_eq!(browser.sign_in("alice", &password).await.status, 200);
        browsers.push(browser);
    }
    let mut one_more = Browser::new(&server);
    let refused = one_more.sign_in("alice", &password).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(
        refused.body.contains("signed in from 16 browsers"),
        "{}",
        refused.body
    );
    // Signing out from one makes room.
    assert_eq!(
        used.call("POST", "/web/logout", None, true).await.status,
        204
    );
    assert_eq!(one_more.sign_in("alice", &password).await.status, 200);
    // A restart signs nobody in or out: the cookie keys (a file) and the
    // sign-ins (the store) outlive the process.
    let server = server.restart().await;
    for browser in [&mut one_more, &mut used] {
        browser.base = Browser::new(&server).base;
    }
    let kept = one_more.call("GET", "/web/sessions", None, false).await;
    assert_eq!(kept.status, 200, "signed out by a restart: {}", kept.body);
    let ended = used.call("GET", "/web/sessions", None, false).await;
    assert_eq!(ended.status, 401, "a sign-out undone by a restart");
    let keys = server.dir().join("data/web-cookie-keys");
    let mode = std::fs::metadata(&keys)
        .expect("the key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    server.stop().await;
}

/// A user taken out of the allowed group is signed out at the next
/// recheck (`web.recheck`, read as `web.ldap.bind_user`), not hours later.
#[tokio::test(flavor = "multi_thread")]
async fn a_user_taken_out_of_the_group_is_signed_out_at_the_next_recheck() {
    let domain = Domain::start();
    let server = portal(&domain, "recheck = \"1s\"").await;
    let mut dave = Browser::new(&server);
    let signed = dave.sign_in("dave", &domain.password("dave")).await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    // Rechecked while still in the group: nothing changes.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(dave.call("GET", "/web/me", None, false).await.status, 200);
    domain.member("remove", "dave");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let refused = dave.call("GET", "/web/me", None, false).await;
    let after = dave.call("GET", "/web/me", None, false).await;
    domain.member("add", "dave");
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("may no longer use this service"),
        "{}",
        refused.body
    );
    assert_eq!(after.status, 401, "still signed in after the refusal");
    let entries = audit_of(&server).await;
    assert!(
        entries.iter().any(|e| e.actor == "dave"
            && e.action == "web recheck"
            && e.result == "PERMISSION_DENIED"),
        "no recheck in the trail"
    );
    server.stop().await;
}

/// A user name from the directory is data: an account named with Jinja
/// syntax (AD allows it) signs in through the portal and makes a desktop,
/// and the playbook reads the name as it is, not templated.
#[tokio::test(flavor = "multi_thread")]
async fn a_directory_name_that_is_a_template_reaches_ansible_literally() {
    const NAME: &str = "{{'x'~'y'}}";
    let domain = Domain::start();
    let server = portal(&domain, "").await;
    let mut tab = Browser::new(&server);
    let signed = tab.sign_in(NAME, &domain.password(NAME)).await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    assert_eq!(signed.json()["user"], NAME);
    let body = r#"{"template":"","request_id":"web-template-name"}"#;
    let created = tab.call("POST", "/web/sessions", Some(body), true).await;
    assert_eq!(created.status, 202, "{}", created.body);
    let id = created.json()["id"].as_str().expect("an id").to_string();
    let events = tab
        .call("GET", &format!("/web/sessions/{id}/events"), None, false)
        .await;
    assert!(events.body.contains("event: end"), "{}", events.body);
    let list = tab.call("GET", "/web/sessions", None, false).await.json();
    let mine = &list["sessions"][0];
    assert_eq!(mine["state"], "READY", "{list}");
    let vm = mine["vm_name"].as_str().expect("a VM name");
    let values: Value = serde_json::from_str(
        &std::fs::read_to_string(server.markers().join(format!("{vm}.values")))
            .expect("the playbook recorded its values"),
    )
    .expect("JSON");
    assert_eq!(values["username"], NAME, "templated by Ansible: {values}");
    assert_eq!(values["user_fact"], NAME);
    server.stop().await;
}

/// Recordings are listed, replayed and watched live for administrators
/// only, and every replay or watch opened (or refused) is in the audit trail.
#[tokio::test(flavor = "multi_thread")]
async fn recordings_and_live_watches_are_for_administrators_and_audited() {
    use daas_server::domain::catalog::Clipboard;
    use daas_server::web::recording::{Recordings, Subject};

    let domain = Domain::start();
    let server = portal(&domain, "").await;
    // A recording as the gateway makes one, where the server keeps them.
    let recordings = Recordings::new(
        server.dir().join("data/recordings"),
        Duration::from_secs(3600),
    );
    let mut recorder = recordings
        .start(&Subject {
            session_id: "s-recorded".into(),
            owner: "alice".into(),
            user: "alice".into(),
            template: "exam".into(),
            clipboard: Clipboard::Off,
            kept: true,
        })
        .await
        .expect("a recording");
    recorder.response(b"response").await.expect("write");
    recorder.to_browser(b"screen").await.expect("write");
    let id = recorder.finish(None).await.expect("finished").id;

    let mut alice = Browser::new(&server);
    assert_eq!(
        alice
            .sign_in("alice", &domain.password("alice"))
            .await
            .status,
        200
    );
    let mut carol = Browser::new(&server);
    assert_eq!(
        carol
            .sign_in("carol", &domain.password("carol"))
            .await
            .status,
        200
    );

    let refused = alice.call("GET", "/web/recordings", None, false).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let listed = carol.call("GET", "/web/recordings", None, false).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let all = listed.json()["recordings"].clone();
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(all[0]["id"], id.as_str());
    assert_eq!(all[0]["owner"], "alice");
    assert_eq!(all[0]["clipboard"], "off");
    assert_eq!(all[0]["bytes"], 6);
    assert_eq!(listed.json()["more"], false);
    for (filter, count) in [("user=alice", 1), ("user=bob", 0), ("session=s-other", 0)] {
        let some = carol
            .call("GET", &format!("/web/recordings?{filter}"), None, false)
            .await;
        assert_eq!(
            some.json()["recordings"].as_array().map(Vec::len),
            Some(count),
            "{filter}"
        );
    }

    // The replay's WebSocket, as the page opens it.
    let upgrade: Vec<String> = [
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ]
    .iter()
    .flat_map(|h| ["-H".to_string(), h.to_string()])
    .chain(["--max-time".to_string(), "3".to_string()])
    .collect();
    let path = format!("/web/recordings/{id}/replay");
    let refused = alice.call_with("GET", &path, &upgrade, false).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let unknown = carol
        .call_with(
            "GET",
            "/web/recordings/1-0123456789abcdef/replay",
            &upgrade,
            false,
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert!(
        unknown.body.contains("web.recordings_keep"),
        "{}",
        unknown.body
    );
    let too_fast = carol
        .call_with("GET", &format!("{path}?speed=99"), &upgrade, false)
        .await;
    assert_eq!(too_fast.status, 400, "{}", too_fast.body);
    let opened = carol.call_with("GET", &path, &upgrade, false).await;
    assert_eq!(opened.status, 101, "{}", opened.body);
    // A closed tab is replayed, not watched.
    let closed = carol
        .call_with("GET", &format!("{path}?live=1"), &upgrade, false)
        .await;
    assert_eq!(closed.status, 409, "{}", closed.body);

    // A tab open now (watched only, not kept): carol watches it live, and
    // is marked as watching while she does.
    let mut open = recordings
        .start(&Subject {
            session_id: "s-open".into(),
            owner: "alice".into(),
            user: "alice".into(),
            template: "lab".into(),
            clipboard: Clipboard::Both,
            kept: false,
        })
        .await
        .expect("a recording");
    open.response(b"response").await.expect("write");
    let live = format!("/web/recordings/{}/replay", open.id());
    let not_kept = carol.call_with("GET", &live, &upgrade, false).await;
    assert_eq!(not_kept.status, 409, "{}", not_kept.body);
    let live_path = format!("{live}?live=1");
    let watch = carol.call_with("GET", &live_path, &upgrade, false);
    let seen = async {
        for _ in 0..30 {
            if recordings.watchers("s-open").await == ["carol"] {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    let (watched, seen) = tokio::join!(watch, seen);
    assert_eq!(watched.status, 101, "{}", watched.body);
    assert!(seen, "carol is marked as watching s-open");

    let entries = audit_of(&server).await;
    let replays: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "web replay")
        .collect();
    assert!(
        replays
            .iter()
            .any(|e| e.actor == "alice" && e.result == "PERMISSION_DENIED"),
        "{replays:?}"
    );
    assert!(
        replays.iter().any(|e| e.actor == "carol"
            && e.result == "OK"
            && e.session_id == "s-recorded"
            && e.owner == "alice"
            && e.detail.contains(&id)),
        "{replays:?}"
    );
    assert!(
        entries.iter().any(|e| e.action == "web watch"
            && e.actor == "carol"
            && e.result == "OK"
            && e.session_id == "s-open"),
        "{entries:?}"
    );
    server.stop().await;
}
