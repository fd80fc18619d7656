//! Request checks, health and reflection on the real server.

use crate::common::*;
use daas_api::v1::{CreateSessionRequest, ListSessionsRequest, SessionState};
use daas_server::testkit::{TestOptions, TestServer};
use tonic::Code;

async fn create_error(client: &mut Client, req: CreateSessionRequest) -> tonic::Status {
    match client.create_session(req).await {
        Ok(_) => panic!("the request was accepted"),
        Err(status) => status,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_invalid_argument_naming_the_field() {
    let server = TestServer::start(TestOptions::default()).await;
    let mut client = server.client().await;
    let secret = "short7!";
    let cases = [
        (
            request(" "),
            "username must not consist only of dots and spaces",
        ),
        (request("a/b"), "username contains '/'"),
        (request(&"x".repeat(21)), "username has 21 characters"),
        (
            request("tab\there"),
            "username contains a control character",
        ),
        (
            CreateSessionRequest {
                username: "alice".into(),
                session_user: "bob@corp".into(),
                session_password: "long-enough-1".into(),
                ..Default::default()
            },
            "session_user contains '@'",
        ),
        (
            CreateSessionRequest {
                username: "alice".into(),
                session_user: "bob".into(),
                ..Default::default()
            },
            "session_password is required",
        ),
        (
            CreateSessionRequest {
                username: "alice".into(),
                session_user: "bob".into(),
                session_password: secret.into(),
                ..Default::default()
            },
            "session_password must have at least 8 characters",
        ),
        (
            CreateSessionRequest {
                username: "alice".into(),
                session_password: "long-enough-1".into(),
                ..Default::default()
            },
            "session_password is set but session_user is empty",
        ),
        (
            CreateSessionRequest {
                username: "alice".into(),
                template: "../../etc".into(),
                ..Default::default()
            },
            "template must be",
        ),
    ];
    for (req, message) in cases {
        let status = create_error(&mut client, req).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(message),
            "{message}: {}",
            status.message()
        );
        assert!(!status.message().contains(secret));
    }
    let none = client
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap();
    assert!(none.into_inner().sessions.is_empty(), "nothing was created");

    let status = client
        .list_sessions(ListSessionsRequest {
            state: 99,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // An oversized request is refused, and the server keeps serving.
    let status = create_error(&mut client, request(&"x".repeat(100_000))).await;
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let events = create(&mut client, request("alice")).await;
    assert_eq!(stages(&events).last(), Some(&SessionState::Ready));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_by_user_and_state() {
    let server = TestServer::start(TestOptions::default()).await;
    let mut client = server.client().await;
    create(&mut client, request("alice")).await;
    create(&mut client, request("bob")).await;
    let list = |username: &str, state: SessionState| ListSessionsRequest {
        username: username.into(),
        state: state as i32,
        ..Default::default()
    };
    let all = client
        .list_sessions(list("", SessionState::Unspecified))
        .await
        .unwrap();
    assert_eq!(all.into_inner().sessions.len(), 2);
    let bob = client
        .list_sessions(list("bob", SessionState::Unspecified))
        .await
        .unwrap();
    let bob = bob.into_inner().sessions;
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].username, "bob");
    let ready = client
        .list_sessions(list("", SessionState::Ready))
        .await
        .unwrap();
    assert_eq!(ready.into_inner().sessions.len(), 2);
    let failed = client
        .list_sessions(list("", SessionState::Failed))
        .await
        .unwrap();
    assert!(failed.into_inner().sessions.is_empty());
    server.stop().await;
}

/// One request to the server's reflection in protocol version `$pb`
/// (`v1`, `v1alpha`: the same messages in two packages); the reply's
/// message.
macro_rules! reflect_once {
    ($pb:ident, $channel:expr, $request:expr) => {{
        use tonic_reflection::pb::$pb::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some($request),
        };
        let mut replies = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        replies.message().await.unwrap().unwrap().message_response
    }};
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_are_served_on_the_same_port() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::{
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let (server, channel) = server_and_channel().await;
    let mut health = HealthClient::new(channel.clone());
    let reply = health
        .check(HealthCheckRequest {
            service: "daas.v1.DesktopService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.status, 1, "SERVING");

    let reply = reflect_once!(v1, channel, MessageRequest::ListServices(String::new()));
    let Some(MessageResponse::ListServicesResponse(list)) = reply else {
        panic!("unexpected reflection reply");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"daas.v1.DesktopService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
    server.stop().await;
}

/// Stock tools that speak only the older reflection protocol (Python's
/// grpcio-reflection, grpcurl before 1.8.8) find the services too.
#[tokio::test(flavor = "multi_thread")]
async fn reflection_is_served_as_v1alpha_too() {
    use tonic_reflection::pb::v1alpha::{
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let (server, channel) = server_and_channel().await;
    let symbol = MessageRequest::FileContainingSymbol("daas.v1.DesktopService".into());
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        reflect_once!(v1alpha, channel, symbol)
    else {
        panic!("unexpected reflection reply");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    server.stop().await;
}

/// A test server and a channel to it as the user alice.
async fn server_and_channel() -> (TestServer, tonic::transport::Channel) {
    let server = TestServer::start(TestOptions::default()).await;
    let creds = server.credentials("alice", false);
    let channel = daas_server::testkit::channel(&server.endpoint(), Some(&creds))
        .await
        .unwrap();
    (server, channel)
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_come_in_pages() {
    let server = TestServer::start(TestOptions::default()).await;
    let mut client = server.client().await;
    for i in 0..5 {
        create(&mut client, request(&format!("u{i}"))).await;
    }
    let mut names = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_sessions(ListSessionsRequest {
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        names.extend(page.sessions.into_iter().map(|s| s.username));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        names,
        ["u4", "u3", "u2", "u1", "u0"],
        "newest first, once each"
    );

    for (size, token, field) in [(1001, "", "page_size"), (0, "garbage", "page_token")] {
        let status = client
            .list_sessions(ListSessionsRequest {
                page_size: size,
                page_token: token.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(field), "{}", status.message());
    }
    server.stop().await;
}

/// A client that lost its stream and sends the same create again gets the
/// first desktop's stream, not a second desktop.
#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_request_id_streams_the_first_session() {
    let server = TestServer::start(TestOptions::default()).await;
    let mut alice = server.client_as("alice", false).await;
    let req = CreateSessionRequest {
        request_id: "3f1c2d7e-retry".into(),
        ..Default::default()
    };
    let first = create(&mut alice, req.clone()).await;
    let again = create(&mut alice, req.clone()).await;
    assert_eq!(again, first, "the same session's events, from the start");
    let sessions = alice
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 1, "one desktop");

    // Another caller's key is another key.
    let mut bob = server.client_as("bob", false).await;
    let bobs = create(&mut bob, req.clone()).await;
    assert_ne!(bobs[0].session_id, first[0].session_id);

    // The same key for something else is refused.
    let status = create_error(
        &mut alice,
        CreateSessionRequest {
            template: "other-template".into(),
            ..req.clone()
        },
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("request_id"),
        "{}",
        status.message()
    );
    let status = create_error(
        &mut alice,
        CreateSessionRequest {
            request_id: "no spaces".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument);
    server.stop().await;
}
