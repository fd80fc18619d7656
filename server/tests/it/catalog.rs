//! The template catalog (`[templates.NAME]`) through the API: what each
//! caller may use, a create's size reaching the module, and the refusals
//! naming the choices. Groups come from the client certificate (`pki
//! issue --group`); the portal's come from the directory (web tests).

use daas_api::v1::{CreateSessionRequest, ListTemplatesRequest, SessionState};
use daas_server::testkit::{TestOptions, TestServer};
use tonic::Code;

use crate::common::*;

async fn server() -> TestServer {
    TestServer::start(TestOptions {
        // One simulated node: the module writes each VM's memory and cores.
        terraform_variables: vec![
            "node_count = 1".into(),
            "node_templates = \"debian-12-xfce,dev\"".into(),
        ],
        extra_toml: format!("{CATALOG}\n[placement]\nrefresh_interval = \"1s\"\n"),
        ..TestOptions::default()
    })
    .await
}

async fn names(client: &mut Client) -> Vec<String> {
    let answer = client
        .list_templates(ListTemplatesRequest {})
        .await
        .expect("list templates")
        .into_inner();
    assert_eq!(answer.default_template, "debian-12-xfce");
    assert!(!answer.open);
    answer.templates.into_iter().map(|t| t.name).collect()
}

fn sized(user: &str, template: &str, size: &str) -> CreateSessionRequest {
    CreateSessionRequest {
        template: template.into(),
        size: size.into(),
        ..request(user)
    }
}

/// A marker the test module wrote for VM `vm`, trimmed.
fn marker(server: &TestServer, vm: &str, what: &str) -> String {
    std::fs::read_to_string(server.markers().join(format!("{vm}.{what}")))
        .unwrap_or_else(|e| panic!("{vm}.{what}: {e}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_caller_sees_and_creates_what_is_for_them_in_the_size_asked() {
    let server = server().await;
    let mut alice = server.client_as("alice", false).await;
    let mut dave = server.client_in_groups("dave", &["daas-developers"]).await;
    let mut admin = server.client().await;
    assert_eq!(names(&mut alice).await, ["debian-12-xfce"]);
    assert_eq!(names(&mut dave).await, ["debian-12-xfce", "dev"]);
    assert_eq!(names(&mut admin).await, ["debian-12-xfce", "dev"]);
    let listed = admin
        .list_templates(ListTemplatesRequest {})
        .await
        .unwrap()
        .into_inner();
    let dev = &listed.templates[1];
    // With its pools (none here), whether it keeps disks, and the
    // reaper's policy for it (the defaults).
    assert!(dev.pools.is_empty() && !dev.persistent);
    assert_eq!(dev.idle_timeout.map(|d| d.seconds), Some(30 * 60));
    assert_eq!(dev.max_lifetime.map(|d| d.seconds), Some(12 * 3600));
    assert_eq!(
        (
            dev.title.as_str(),
            dev.groups.as_slice(),
            dev.sizes[0].memory_mb
        ),
        (
            "Developer workstation",
            ["daas-developers".to_string()].as_slice(),
            8192
        )
    );

    // A size that is not the default reaches the module.
    let small = ready(&create(&mut alice, sized("alice", "", "small")).await);
    assert_eq!(small.template, "debian-12-xfce");
    let size = small.size.clone().expect("the session's size");
    assert_eq!(
        (size.name.as_str(), size.cores, size.memory_mb),
        ("small", 1, 2048)
    );
    assert_eq!(marker(&server, &small.vm_name, "memory"), "2048");
    assert_eq!(marker(&server, &small.vm_name, "cores"), "1");

    // No size: the template's default; dave may use dev.
    let dev = ready(&create(&mut dave, sized("dave", "dev", "")).await);
    assert_eq!(dev.size.as_ref().map(|s| s.name.as_str()), Some("large"));
    assert_eq!(marker(&server, &dev.vm_name, "memory"), "8192");
    assert_eq!(dev.state(), SessionState::Ready);

    // Each template's clipboard policy reaches the roles, which set xrdp's.
    let clipboard = |vm: &str| {
        let values: serde_json::Value =
            serde_json::from_str(&marker(&server, vm, "values")).expect("JSON");
        values["clipboard"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(clipboard(&small.vm_name), "both");
    assert_eq!(clipboard(&dev.vm_name), "off");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_name_the_choices() {
    let server = server().await;
    let mut alice = server.client_as("alice", false).await;
    let refused = |req: CreateSessionRequest| {
        let mut client = alice.clone();
        async move { client.create_session(req).await.expect_err("refused") }
    };
    let status = refused(sized("alice", "windows-11", "")).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("no template 'windows-11'; the templates are: debian-12-xfce"),
        "{status:?}"
    );
    let status = refused(sized("alice", "debian-12-xfce", "huge")).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(
            "its sizes: small (1 core, 2 GiB, 20 GB disk), medium (2 cores, 4 GiB, 20 GB disk)"
        ),
        "{status:?}"
    );
    let status = refused(sized("alice", "dev", "")).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains(
            "template 'dev' is not for you (it is for the groups daas-developers); yours: debian-12-xfce"
        ),
        "{status:?}"
    );
    // Nothing was made.
    let listed = alice
        .list_sessions(daas_api::v1::ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.sessions.is_empty());
    server.stop().await;
}
