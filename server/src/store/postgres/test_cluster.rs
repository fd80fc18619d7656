//! The test PostgreSQL (tests and the `testkit` feature only): the cluster
//! `scripts/postgres.sh` runs, a schema of its own per test, and how a
//! store reaches it.

/// The URL of the test PostgreSQL: `DAAS_TEST_POSTGRES` (`make test` starts
/// one and sets it), else the one `scripts/postgres.sh ensure` starts (or
/// finds running) in the temporary folder, shared by every test process.
pub fn postgres_url() -> String {
    if let Ok(url) = std::env::var("DAAS_TEST_POSTGRES") {
        return url;
    }
    let dir = std::env::temp_dir().join("daas-test-postgres");
    postgres_sh("ensure", &dir)
}

/// The URL of a new schema of its own in the test PostgreSQL: a store per
/// test, without a database per test.
pub async fn postgres_schema() -> String {
    let url = postgres_url();
    let schema = format!("t{}", uuid::Uuid::new_v4().simple());
    let config: tokio_postgres::Config = url.parse().expect("the test URL");
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connecting to the test PostgreSQL");
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("making a schema");
    drop(client);
    let _ = driver.await;
    format!("{url}&options=-csearch_path%3D{schema}")
}

/// How the store reaches the PostgreSQL at `url` (a test's: no TLS roots).
pub fn postgres_connection(url: &str) -> super::Connection {
    super::Connection {
        config: url.parse().expect("a PostgreSQL URL"),
        roots: rustls::RootCertStore::empty(),
        max_connections: 8,
    }
}

/// A PostgreSQL of one test's own, for a test that stops and starts it
/// (`scripts/postgres.sh` in a folder under /var/tmp, which the postgres
/// user can reach); destroyed when dropped.
pub struct PrivateCluster {
    dir: std::path::PathBuf,
    /// Its URL (the database `daas`).
    pub url: String,
}

impl PrivateCluster {
    /// Makes and starts one.
    pub fn start() -> PrivateCluster {
        let dir = std::path::PathBuf::from("/var/tmp")
            .join(format!("daas-test-pg-{}", uuid::Uuid::new_v4().simple()));
        let url = postgres_sh("start", &dir);
        PrivateCluster { dir, url }
    }

    /// Stops it (fast: open connections are ended).
    pub fn stop(&self) {
        postgres_sh("stop", &self.dir);
    }

    /// Starts it again, on the same socket.
    pub fn restart(&self) {
        postgres_sh("start", &self.dir);
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        postgres_sh("destroy", &self.dir);
    }
}

/// Runs `scripts/postgres.sh COMMAND DIR`; its output.
fn postgres_sh(command: &str, dir: &std::path::Path) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh");
    let out = std::process::Command::new(script)
        .arg(command)
        .arg(dir)
        .output()
        .expect("running scripts/postgres.sh");
    assert!(
        out.status.success(),
        "scripts/postgres.sh {command} {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
