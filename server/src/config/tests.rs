//! Loading whole configurations: defaults, file and environment layered,
//! paths resolved, secrets read and hidden, and each mistake reported with
//! the key it is about.

#![allow(clippy::result_large_err)] // figment's Jail API returns figment::Error

use super::*;
use figment::Jail;

fn with_layout(jail: &mut Jail) -> figment::error::Result<()> {
    std::fs::create_dir_all(jail.directory().join("etc/modules/test"))
        .map_err(|e| e.to_string())?;
    jail.create_file("etc/play.yml", "---\n")?;
    Ok(())
}

fn error_of(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(_) => panic!("the config was accepted"),
        Err(err) => err.to_string(),
    }
}

const GOOD: &str = r#"
    data_dir = "data"
    [limits]
    max_parallel_provisions = 3
    [terraform]
    module_dir = "modules/test"
    binary = "bin/terraform"
    [terraform.variables]
    storage = "local-lvm"
    [ansible]
    playbook = "play.yml"
    timeout = "90s"
    [tls]
    plaintext = true
"#;

#[test]
fn file_then_environment_with_paths_relative_to_the_file() {
    Jail::expect_with(|jail| {
        with_layout(jail)?;
        jail.create_file("etc/daas.toml", GOOD)?;
        jail.set_env("DAAS_LIMITS__MAX_PARALLEL_PROVISIONS", "8");
        jail.set_env("DAAS_ENDPOINT", "http://elsewhere:1");
        let config = Config::load(Some(Path::new("etc/daas.toml"))).map_err(|e| e.to_string())?;
        let etc = jail.directory().join("etc");
        assert_eq!(
            config.limits.max_parallel_provisions, 8,
            "the environment wins"
        );
        assert_eq!(config.data_dir, etc.join("data"));
        assert_eq!(config.database, etc.join("data/daas.sqlite3"));
        assert_eq!(config.terraform.module_dir, etc.join("modules/test"));
        assert_eq!(config.terraform.binary, etc.join("bin/terraform"));
        assert_eq!(config.ansible.binary, PathBuf::from("ansible-playbook"));
        assert_eq!(config.ansible.timeout, Duration::from_secs(90));
        assert_eq!(config.terraform.variables["storage"], "local-lvm");
        assert_eq!(config.ssh.private_key, etc.join("data/ssh/id_ed25519"));
        assert!(matches!(config.tls, Tls::Plaintext));
        assert_eq!(config.audit.file, None, "off by default");
        Ok(())
    });
}

#[test]
fn the_audit_file_is_off_when_empty_and_relative_to_the_file() {
    Jail::expect_with(|jail| {
        with_layout(jail)?;
        jail.create_file("etc/daas.toml", &format!("{GOOD}\n[audit]\nfile = \"\"\n"))?;
        let config = Config::load(Some(Path::new("etc/daas.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(config.audit.file, None);
        let text = format!("{GOOD}\n[audit]\nfile = \"log/audit.jsonl\"\n");
        jail.create_file("etc/daas.toml", &text)?;
        let config = Config::load(Some(Path::new("etc/daas.toml"))).map_err(|e| e.to_string())?;
        let etc = jail.directory().join("etc");
        assert_eq!(config.audit.file, Some(etc.join("log/audit.jsonl")));
        Ok(())
    });
}

#[test]
fn secrets_come_from_files_or_the_environment_and_never_print() {
    Jail::expect_with(|jail| {
        with_layout(jail)?;
        jail.create_file("etc/ad-password", "Join-Me-42\n")?;
        jail.set_env("PM_SECRET_FOR_TEST", "tok-7f3a");
        let text = format!(
            "{GOOD}\n[secrets]\nad_join_password_file = \"ad-password\"\n\
             proxmox_token_id = \"daas@pve!daas\"\n\
             proxmox_token_secret_env = \"PM_SECRET_FOR_TEST\"\n"
        );
        jail.create_file("etc/daas.toml", &text)?;
        let config = Config::load(Some(Path::new("etc/daas.toml"))).map_err(|e| e.to_string())?;
        let secrets = &config.secrets;
        assert_eq!(
            secrets.ad_join_password.as_ref().map(Secret::expose),
            Some("Join-Me-42")
        );
        assert_eq!(
            secrets.proxmox_token_secret.as_ref().map(Secret::expose),
            Some("tok-7f3a")
        );
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("Join-Me-42") && !printed.contains("tok-7f3a"),
            "{printed}"
        );
        Ok(())
    });
}

#[test]
fn a_postgres_store_takes_its_password_from_the_secrets() {
    Jail::expect_with(|jail| {
        with_layout(jail)?;
        jail.create_file("etc/db-password", "Db-Pass-9\n")?;
        let text = format!(
            "{GOOD}\n[store]\nurl = \"postgres://daas@db.example.org/daas?sslmode=require\"\n\
             ca_file = \"db-ca.pem\"\n[secrets]\nstore_password_file = \"db-password\"\n"
        );
        jail.create_file("etc/daas.toml", &text)?;
        let config = Config::load(Some(Path::new("etc/daas.toml"))).map_err(|e| e.to_string())?;
        let postgres = config.postgres.as_ref().expect("a PostgreSQL store");
        assert_eq!(postgres.max_connections, 16);
        assert_eq!(
            postgres.ca_file.as_deref(),
            Some(jail.directory().join("etc/db-ca.pem").as_path())
        );
        assert_eq!(
            config.secrets.store_password.as_ref().map(Secret::expose),
            Some("Db-Pass-9")
        );
        assert!(!format!("{config:?}").contains("Db-Pass-9"));
        Ok(())
    });
}

#[test]
fn the_readme_shows_the_reference_of_help() {
    let readme = include_str!("../../../README.md");
    assert!(readme.contains(include_str!("reference.toml")));
}

#[test]
fn mistakes_name_the_key() {
    Jail::expect_with(|jail| {
        with_layout(jail)?;
        let cases = [
            ("[limits]\nmax_paralel = 3", "max_paralel"),
            (
                "[limits]\nmax_parallel_provisions = \"many\"",
                "max_parallel_provisions",
            ),
            (
                "[limits]\nmax_parallel_provisions = 0",
                "limits.max_parallel_provisions",
            ),
            ("listen = \"nowhere\"", "listen"),
            ("[ansible]\ntimeout = \"soon\"", "timeout"),
            (
                "[terraform]\nmodule_dir = \"missing\"",
                "terraform.module_dir",
            ),
            (
                "[terraform.variables]\nslot = 3",
                "terraform.variables.slot",
            ),
            ("[vm]\ntemplate = \"../x\"", "vm.template"),
            ("[limits]\nmax_sessions = 0", "limits.max_sessions"),
            (
                "[policy]\nwarning = \"10m\"\nagent_lost_timeout = \"10m\"",
                "policy.warning",
            ),
            (
                "[policy]\nwarning = \"10m\"\nagent_lost_timeout = \"10m\"",
                "policy.warning",
            ),
            ("[auth]\nadmins = [\"a/b\"]", "auth.admins[0]"),
            ("listen = \"0.0.0.0:1\"", "tls.plaintext"),
            ("[http]\nlisten = \"0.0.0.0:9\"", "tls.plaintext"),
            ("[http]\nlisten = \"here\"", "http.listen"),
            (
                "[http]\nmetrics_listen = \"0.0.0.0:9\"",
                "http.metrics_listen",
            ),
            (
                "[secrets]\nad_join_password_env = \"DAAS_TEST_NO_SUCH_VAR\"",
                "DAAS_TEST_NO_SUCH_VAR",
            ),
            (
                "[[webhooks]]\nurl = \"https://x/\"\nformat = \"slack\"\nevents = [\"READDY\"]",
                "webhooks[0].events",
            ),
            (
                "[[webhooks]]\nurl = \"https://x/\"",
                "webhooks[0].secret_file",
            ),
            ("[store]\nurl = \"mysql://db/daas\"", "store.url"),
            (
                "[store]\nurl = \"postgres://db/daas?sslmode=verify-full\"",
                "sslmode=require",
            ),
            (
                "[store]\nurl = \"postgres://daas:hunter2@db/daas\"",
                "secrets.store_password_file",
            ),
            (
                "[store]\nurl = \"postgres://db/daas\"\nmax_connections = 1",
                "store.max_connections",
            ),
        ];
        for (bad, key) in cases {
            let text = format!(
                "{bad}\n{}",
                if bad.starts_with("[terraform]") {
                    ""
                } else {
                    "[terraform]\nmodule_dir = \"modules/test\""
                }
            );
            let text = if bad.starts_with("[ansible]") {
                format!("{text}\nplaybook = \"play.yml\"")
            } else {
                format!("{text}\n[ansible]\nplaybook = \"play.yml\"")
            };
            let text = format!("{text}\n[tls]\nplaintext = true\n");
            jail.create_file("etc/daas.toml", &text)?;
            let result = Config::load(Some(Path::new("etc/daas.toml")));
            assert!(result.is_err(), "{bad:?} was accepted");
            let err = error_of(result);
            assert!(err.contains(key), "{bad:?} -> {err}");
        }
        jail.create_file(
            "etc/daas.toml",
            "[terraform]\nmodule_dir = \"modules/test\"\n[ansible]\nplaybook = \"play.yml\"\n",
        )?;
        let err = error_of(Config::load(Some(Path::new("etc/daas.toml"))));
        assert!(err.contains("tls.ca") && err.contains("pki init"), "{err}");
        let err = error_of(Config::load(Some(Path::new("etc/absent.toml"))));
        assert!(err.contains("etc/absent.toml does not exist"), "{err}");
        Ok(())
    });
}
