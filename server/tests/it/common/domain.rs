//! The test AD domain (tests/ad/dc.sh: Samba in a network namespace;
//! root), started once and shared, for the web portal's tests.

use std::{path::PathBuf, process::Command as StdCommand};

/// The DC's settings as TOML (`dc.sh env`), and the users' passwords.
pub struct Domain {
    /// `[web]` and `[web.ldap]` for it (3 failed sign-ins allowed).
    pub toml: String,
    dir: PathBuf,
}

impl Domain {
    /// Starts the DC unless it runs (idempotent; ~15 s the first time).
    pub fn start() -> Domain {
        let root = daas_server::testkit::workspace_root();
        let dc = root.join("tests/ad/dc.sh");
        let status = StdCommand::new(&dc)
            .arg("start")
            .status()
            .expect("run tests/ad/dc.sh (root)");
        assert!(status.success(), "tests/ad/dc.sh start failed");
        let env = StdCommand::new(&dc)
            .arg("env")
            .output()
            .expect("tests/ad/dc.sh env");
        let env = String::from_utf8_lossy(&env.stdout).to_string();
        let get = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("dc.sh env has no {name}"))
                .to_string()
        };
        let toml = format!(
            "[web]\nlisten = \"127.0.0.1:0\"\nallowed_group = {:?}\nadmin_group = {:?}\n\
             max_failed_logins = 3\n\n[web.ldap]\nurl = {:?}\nconnect = {:?}\nca_file = {:?}\n\
             base_dn = {:?}\ndomain = {:?}\nbind_user = {:?}\n\n\
             [secrets]\nweb_ldap_password_file = {:?}\n",
            get("DAAS_WEB__ALLOWED_GROUP"),
            get("DAAS_WEB__ADMIN_GROUP"),
            get("DAAS_WEB__LDAP__URL"),
            get("DAAS_WEB__LDAP__CONNECT"),
            get("DAAS_WEB__LDAP__CA_FILE"),
            get("DAAS_WEB__LDAP__BASE_DN"),
            get("DAAS_WEB__LDAP__DOMAIN"),
            get("DAAS_WEB__LDAP__BIND_USER"),
            get("DAAS_SECRETS__WEB_LDAP_PASSWORD_FILE"),
        );
        let dir = PathBuf::from(std::env::var("DAAS_AD_DIR").unwrap_or("/var/tmp/daas-ad".into()));
        Domain { toml, dir }
    }

    /// Puts `user` in daas-users (`add`) or takes them out (`remove`).
    pub fn member(&self, change: &str, user: &str) {
        let root = daas_server::testkit::workspace_root();
        let status = StdCommand::new(root.join("tests/ad/dc.sh"))
            .args(["member", change, user])
            .status()
            .expect("run tests/ad/dc.sh member");
        assert!(
            status.success(),
            "tests/ad/dc.sh member {change} {user} failed"
        );
    }

    /// A user's password.
    pub fn password(&self, user: &str) -> String {
        std::fs::read_to_string(self.dir.join("passwords").join(user))
            .expect("a user's password file")
            .trim()
            .to_string()
    }
}
