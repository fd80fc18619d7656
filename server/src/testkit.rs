//! An in-process `daas-server` for integration tests (feature `testkit`):
//! a real server on `127.0.0.1:0` with a temporary data dir, the test
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
use tonic::transport::Channel;

use crate::{config::Config, serve::BoundServer};

/// What the test module and playbook should do.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// Seconds `terraform apply` sleeps, as a slow hypervisor would.
    pub create_delay_secs: u32,
    /// Make `terraform apply` fail after the VM resource exists.
    pub fail_terraform: bool,
    /// Make the playbook fail.
    pub fail_ansible: bool,
    /// `limits.max_parallel_provisions`.
    pub max_parallel: usize,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            create_delay_secs: 0,
            fail_terraform: false,
            fail_ansible: false,
            max_parallel: 4,
        }
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

fn toml_string(path: &Path) -> String {
    // TOML basic strings escape like JSON strings.
    serde_json::Value::from(path.display().to_string()).to_string()
}

/// Writes a server config for the test module into `dir` and returns its
/// path. Data goes to `dir/data`, module markers to `dir/markers`.
pub fn write_config(dir: &Path, options: &TestOptions) -> PathBuf {
    let root = workspace_root();
    let markers = dir.join("markers");
    std::fs::create_dir_all(&markers).expect("create the marker dir");
    let mut text = String::new();
    let _ = write!(
        text,
        r#"listen = "127.0.0.1:0"
data_dir = {data}

[limits]
max_parallel_provisions = {max_parallel}

[terraform]
module_dir = {module}
init_timeout = "2m"
apply_timeout = "2m"
destroy_timeout = "2m"

[terraform.variables]
create_delay_seconds = {delay}
fail_create = {fail_tf}
marker_dir = {markers}

[boot]
timeout = "1m"

[ansible]
binary = {ansible}
playbook = {playbook}
connection = "local"
timeout = "3m"

[ansible.extra_vars]
fail_configure = {fail_ansible}
marker_dir = {markers}
"#,
        data = toml_string(&dir.join("data")),
        max_parallel = options.max_parallel,
        module = toml_string(&root.join("terraform/test")),
        delay = options.create_delay_secs,
        fail_tf = options.fail_terraform,
        markers = toml_string(&markers),
        ansible = toml_string(&ansible_playbook()),
        playbook = toml_string(&root.join("ansible/playbooks/test-desktop.yml")),
        fail_ansible = options.fail_ansible,
    );
    let path = dir.join("daas.toml");
    std::fs::write(&path, text).expect("write the test config");
    path
}

/// A running in-process server. Stops when dropped.
pub struct TestServer {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with `options` in a new temporary folder.
    pub async fn start(options: TestOptions) -> TestServer {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let config_path = write_config(dir.path(), &options);
        let config = Config::load(Some(&config_path)).expect("load the test config");
        let server = BoundServer::bind(config)
            .await
            .expect("bind the test server");
        let addr = server.local_addr();
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
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
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

    /// A gRPC client connected to the server.
    pub async fn client(&self) -> DesktopServiceClient<Channel> {
        DesktopServiceClient::connect(self.endpoint())
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
