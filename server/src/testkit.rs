//! An in-process `daas-server` for integration tests (feature `testkit`):
//! a real server on `127.0.0.1:0` with mutual TLS (a fresh PKI made by the
//! project's own `pki` module), a temporary data dir, the test
//! Terraform module (`terraform/test`, built on `terraform_data`) and the
//! test playbook (`ansible/playbooks/test-desktop.yml`) run by the real
//! `ansible-playbook` on this machine. Test-only knobs reach the module and
//! the playbook as ordinary config variables.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use daas_api::v1::desktop_service_client::DesktopServiceClient;
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::{app::BoundServer, config::Config, pki};

pub use crate::store::test_cluster::{
    PrivateCluster, postgres_connection, postgres_schema, postgres_url,
};

/// What the test module and playbook should do.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// Seconds `terraform apply` sleeps, as a slow hypervisor would.
    pub create_delay_secs: u32,
    /// Seconds the test module's destroy takes.
    pub destroy_delay_secs: u32,
    /// Make the test module declare `boot_wait = "ssh"` on a port nobody
    /// serves, so a session stays in BOOTING until the boot timeout.
    pub boot_wait_ssh: bool,
    /// Make `terraform apply` fail after the VM resource exists.
    pub fail_terraform: bool,
    /// Make the playbook fail.
    pub fail_ansible: bool,
    /// `limits.max_parallel_provisions`.
    pub max_parallel: usize,
    /// `limits.max_sessions` and `limits.max_sessions_per_user`.
    pub max_sessions: usize,
    pub max_sessions_per_user: usize,
    /// `limits.creates_per_minute` and `limits.create_burst`.
    pub creates_per_minute: u32,
    pub create_burst: u32,
    /// `limits.max_streams` and `limits.max_streams_per_user`.
    pub max_streams: usize,
    pub max_streams_per_user: usize,
    /// Serve plaintext gRPC instead of mutual TLS.
    pub plaintext: bool,
    /// Make the test module print PM_API_TOKEN_SECRET (to test masking).
    pub echo_token: bool,
    /// TOML appended to the config (e.g. `[auth]` or `[secrets]` tables).
    pub extra_toml: String,
    /// `ansible.binary` (default: the project's `ansible-playbook`).
    pub ansible_binary: Option<PathBuf>,
    /// Contract outputs the test module prints instead of its own (a
    /// module printing garbage).
    pub module_outputs: Vec<(&'static str, String)>,
    /// Lines added to `[terraform.variables]` as written (`node_count = 4`).
    pub terraform_variables: Vec<String>,
    /// "Now" for the users' schedules; None: the system's clock.
    pub clock: Option<crate::domain::time::ManualClock>,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            create_delay_secs: 0,
            destroy_delay_secs: 0,
            boot_wait_ssh: false,
            fail_terraform: false,
            fail_ansible: false,
            max_parallel: 4,
            max_sessions: 100,
            max_sessions_per_user: 100,
            creates_per_minute: 1000,
            create_burst: 1000,
            max_streams: 1000,
            max_streams_per_user: 1000,
            plaintext: false,
            echo_token: false,
            extra_toml: String::new(),
            ansible_binary: None,
            module_outputs: Vec::new(),
            terraform_variables: Vec::new(),
            clock: None,
        }
    }
}

/// The three files a client needs for mutual TLS.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The test PKI of a server folder: `dir/pki`, made on first use.
fn test_pki(dir: &Path) -> pki::PkiPaths {
    let pki_dir = dir.join("pki");
    if !pki_dir.join("ca.pem").exists() {
        let localhost = ["localhost".to_string()];
        let ips = [std::net::IpAddr::from([127, 0, 0, 1])];
        pki::init(&pki_dir, &localhost, &ips, 30, None).expect("create the test PKI");
    }
    pki::PkiPaths { dir: pki_dir }
}

/// Credentials for `user` from the test PKI in `dir` (issued on first use).
pub fn credentials(dir: &Path, user: &str, admin: bool) -> Credentials {
    credentials_in_groups(dir, user, admin, &[])
}

/// Credentials for `user` in `groups` (the certificate's group URIs) from
/// the test PKI in `dir` (issued on first use).
pub fn credentials_in_groups(
    dir: &Path,
    user: &str,
    admin: bool,
    groups: &[String],
) -> Credentials {
    let paths = test_pki(dir);
    if !paths.user_cert(user).exists() {
        pki::issue_user_files(&paths.dir, user, admin, groups, 30, None)
            .expect("issue a test certificate");
    }
    Credentials {
        ca: paths.ca(),
        cert: paths.user_cert(user),
        key: paths.user_key(user),
    }
}

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `ansible-playbook` the project's setup installs
/// (`DAAS_TEST_ANSIBLE_PLAYBOOK` overrides it).
pub fn ansible_playbook() -> PathBuf {
    if let Some(path) = std::env::var_os("DAAS_TEST_ANSIBLE_PLAYBOOK") {
        return PathBuf::from(path);
    }
    let path = workspace_root().join(".venv/bin/ansible-playbook");
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh first",
        path.display()
    );
    path
}

/// `[store]` naming a new schema of its own in the test PostgreSQL, for
/// [`TestOptions::extra_toml`].
pub async fn postgres_store_toml() -> String {
    format!(
        "[store]\nurl = {}\n",
        toml_string_of(&postgres_schema().await)
    )
}

fn toml_string(path: &Path) -> String {
    toml_string_of(&path.display().to_string())
}

/// A TOML basic string holding `value` (they escape like JSON strings; no
/// DEL character, which JSON leaves as is).
fn toml_string_of(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

/// Writes a server config for the test module into `dir` and returns its
/// path. Data goes to `dir/data`, module markers to `dir/markers`.
pub fn write_config(dir: &Path, options: &TestOptions) -> PathBuf {
    let root = workspace_root();
    let markers = dir.join("markers");
    std::fs::create_dir_all(&markers).expect("create the marker dir");
    let tls_toml = if options.plaintext {
        "[tls]\nplaintext = true".to_string()
    } else {
        let paths = test_pki(dir);
        format!(
            "[tls]\nca = {}\ncert = {}\nkey = {}",
            toml_string(&paths.ca()),
            toml_string(&paths.server_cert()),
            toml_string(&paths.server_key())
        )
    };
    let mut text = String::new();
    let _ = write!(
        text,
        r#"listen = "127.0.0.1:0"
data_dir = {data}

[limits]
max_parallel_provisions = {max_parallel}
max_sessions = {max_sessions}
max_sessions_per_user = {max_per_user}
creates_per_minute = {per_minute}
create_burst = {burst}
max_streams = {max_streams}
max_streams_per_user = {max_streams_per_user}

{tls}

[terraform]
module_dir = {module}
init_timeout = "2m"
apply_timeout = "2m"
destroy_timeout = "2m"

[terraform.variables]
create_delay_seconds = {delay}
destroy_delay_seconds = {destroy_delay}
boot_wait = "{boot_wait}"
fail_create = {fail_tf}
echo_token = {echo_token}
marker_dir = {markers}
outputs = {{ {outputs} }}
{variables}

[boot]
timeout = "1m"

[ansible]
binary = {ansible}
playbook = {playbook}
teardown_playbook = {teardown}
connection = "local"
timeout = "3m"

[ansible.extra_vars]
fail_configure = {fail_ansible}
marker_dir = {markers}

{extra}
"#,
        data = toml_string(&dir.join("data")),
        max_parallel = options.max_parallel,
        module = toml_string(&root.join("terraform/test")),
        delay = options.create_delay_secs,
        destroy_delay = options.destroy_delay_secs,
        boot_wait = if options.boot_wait_ssh { "ssh" } else { "none" },
        fail_tf = options.fail_terraform,
        markers = toml_string(&markers),
        ansible = toml_string(
            &options
                .ansible_binary
                .clone()
                .unwrap_or_else(ansible_playbook)
        ),
        playbook = toml_string(&root.join("ansible/playbooks/test-desktop.yml")),
        teardown = toml_string(&root.join("ansible/playbooks/test-teardown.yml")),
        fail_ansible = options.fail_ansible,
        max_sessions = options.max_sessions,
        max_per_user = options.max_sessions_per_user,
        per_minute = options.creates_per_minute,
        burst = options.create_burst,
        max_streams = options.max_streams,
        max_streams_per_user = options.max_streams_per_user,
        echo_token = options.echo_token,
        tls = tls_toml,
        extra = options.extra_toml,
        variables = options.terraform_variables.join("\n"),
        outputs = options
            .module_outputs
            .iter()
            .map(|(name, value)| format!("{name} = {}", toml_string_of(value)))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let path = dir.join("daas.toml");
    std::fs::write(&path, text).expect("write the test config");
    path
}

/// Credentials of session `session_id`'s agent from the test PKI in `dir`
/// (issued on each call, as the server does at each create).
pub fn agent_credentials(dir: &Path, session_id: &str) -> Credentials {
    let paths = test_pki(dir);
    let ca =
        pki::Ca::load(&paths.agents_ca(), &paths.agents_ca_key()).expect("load the agents' CA");
    let issued = ca
        .issue_agent(session_id, &pki::Validity::days(1))
        .expect("issue an agent certificate");
    let agent_dir = dir.join(format!("agent-{session_id}"));
    std::fs::create_dir_all(&agent_dir).expect("create the agent's folder");
    let (cert, key) = (agent_dir.join("agent.pem"), agent_dir.join("agent-key.pem"));
    std::fs::write(&cert, issued.cert_pem).expect("write the agent certificate");
    std::fs::write(&key, issued.key_pem).expect("write the agent key");
    Credentials {
        ca: paths.ca(),
        cert,
        key,
    }
}

/// A channel to `endpoint` with `credentials` (none: plaintext).
pub async fn channel(
    endpoint: &str,
    credentials: Option<&Credentials>,
) -> Result<Channel, tonic::transport::Error> {
    let mut channel = Channel::from_shared(endpoint.to_string()).expect("a valid endpoint");
    if let Some(creds) = credentials {
        let read = |p: &Path| std::fs::read(p).expect("read a test credential");
        channel = channel.tls_config(
            ClientTlsConfig::new()
                .domain_name("localhost")
                .ca_certificate(Certificate::from_pem(read(&creds.ca)))
                .identity(Identity::from_pem(read(&creds.cert), read(&creds.key))),
        )?;
    }
    channel.connect().await
}

/// A DesktopService client for `endpoint` with `credentials`.
pub async fn connect(
    endpoint: &str,
    credentials: Option<&Credentials>,
) -> Result<DesktopServiceClient<Channel>, tonic::transport::Error> {
    Ok(DesktopServiceClient::new(
        channel(endpoint, credentials).await?,
    ))
}

/// A running in-process server. Stops when dropped.
pub struct TestServer {
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    web_addr: Option<SocketAddr>,
    plaintext: bool,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with `options` in a new temporary folder.
    pub async fn start(options: TestOptions) -> TestServer {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let config_path = write_config(dir.path(), &options);
        TestServer::start_in(dir, &config_path, options.plaintext, options.clock).await
    }

    /// Stops the server and starts another on the same folder (config,
    /// store, keys): what survives a restart. Its ports are new.
    pub async fn restart(mut self) -> TestServer {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let dir = std::mem::replace(
            &mut self.dir,
            tempfile::tempdir().expect("create a temp dir"),
        );
        let config_path = dir.path().join("daas.toml");
        TestServer::start_in(dir, &config_path, self.plaintext, None).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        config_path: &Path,
        plaintext: bool,
        clock: Option<crate::domain::time::ManualClock>,
    ) -> TestServer {
        let config = Config::load(Some(config_path)).expect("load the test config");
        let mut server = BoundServer::bind(config)
            .await
            .expect("bind the test server");
        if let Some(clock) = clock {
            server = server.with_clock(crate::domain::time::Clock::Manual(clock));
        }
        let addr = server.local_addr();
        let (http_addr, metrics_addr) = (server.http_addr(), server.metrics_addr());
        let web_addr = server.web_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(err) = server.serve(shutdown).await {
                eprintln!("test server failed: {err}");
            }
        });
        TestServer {
            addr,
            http_addr,
            metrics_addr,
            web_addr,
            plaintext,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `https://127.0.0.1:PORT` (`http://` when plaintext).
    pub fn endpoint(&self) -> String {
        let scheme = if self.plaintext { "http" } else { "https" };
        format!("{scheme}://{}", self.addr)
    }

    /// `https://127.0.0.1:PORT` of the HTTP side (`http.listen`), when on.
    pub fn http_endpoint(&self) -> Option<String> {
        self.http_addr.map(|a| format!("https://{a}"))
    }

    /// `https://127.0.0.1:PORT` of the web portal (`web.listen`), when on.
    pub fn web_endpoint(&self) -> Option<String> {
        self.web_addr.map(|a| format!("https://{a}"))
    }

    /// `http://127.0.0.1:PORT` of `http.metrics_listen`, when on.
    pub fn metrics_endpoint(&self) -> Option<String> {
        self.metrics_addr.map(|a| format!("http://{a}"))
    }

    /// Credentials for `user` (an administrator when `admin`), issued by
    /// the server's CA.
    pub fn credentials(&self, user: &str, admin: bool) -> Credentials {
        credentials(self.dir.path(), user, admin)
    }

    /// The server's temporary folder (config, `data/`, `markers/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the test module and playbook leave their markers
    /// (`VM.created`, `VM.destroyed`, `VM.configured`).
    pub fn markers(&self) -> PathBuf {
        self.dir.path().join("markers")
    }

    /// Credentials of session `session_id`'s agent.
    pub fn agent_credentials(&self, session_id: &str) -> Credentials {
        agent_credentials(self.dir.path(), session_id)
    }

    /// A client connected as the administrator `admin`.
    pub async fn client(&self) -> DesktopServiceClient<Channel> {
        self.client_as("admin", true).await
    }

    /// A client connected as `user` (not an administrator) in `groups`.
    pub async fn client_in_groups(
        &self,
        user: &str,
        groups: &[&str],
    ) -> DesktopServiceClient<Channel> {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let creds = credentials_in_groups(self.dir.path(), user, false, &groups);
        connect(&self.endpoint(), Some(&creds))
            .await
            .expect("connect to the test server")
    }

    /// A client connected as `user`.
    pub async fn client_as(&self, user: &str, admin: bool) -> DesktopServiceClient<Channel> {
        let creds = (!self.plaintext).then(|| self.credentials(user, admin));
        connect(&self.endpoint(), creds.as_ref())
            .await
            .expect("connect to the test server")
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
