//! The web portal's settings (`[web]`, `[web.ldap]`), as written and as
//! checked.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use figment::value::magic::RelativePathBuf;
use serde::{Deserialize, Serialize};

/// `[web]` as written in the config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSpec {
    pub listen: String,
    pub cert: Option<RelativePathBuf>,
    pub key: Option<RelativePathBuf>,
    #[serde(with = "humantime_serde")]
    pub session_idle: Duration,
    #[serde(with = "humantime_serde")]
    pub session_max: Duration,
    pub cookie_keys: Option<RelativePathBuf>,
    pub allowed_group: String,
    pub allow_all_domain_users: bool,
    pub admin_group: String,
    pub templates: Vec<String>,
    pub max_failed_logins: u32,
    #[serde(with = "humantime_serde")]
    pub failed_login_window: Duration,
    #[serde(with = "humantime_serde")]
    pub ticket_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    #[serde(with = "humantime_serde")]
    pub relay_idle_timeout: Duration,
    pub max_relays_per_user: usize,
    #[serde(with = "humantime_serde")]
    pub recheck: Duration,
    pub pass_through_credentials: bool,
    pub start_session_at_create: bool,
    pub recordings: Option<RelativePathBuf>,
    #[serde(with = "humantime_serde")]
    pub recordings_keep: Duration,
    pub ldap: LdapSpec,
}

impl Default for WebSpec {
    fn default() -> Self {
        WebSpec {
            listen: String::new(),
            cert: None,
            key: None,
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(8 * 3600),
            cookie_keys: None,
            allowed_group: String::new(),
            allow_all_domain_users: false,
            admin_group: String::new(),
            templates: Vec::new(),
            max_failed_logins: 5,
            failed_login_window: Duration::from_secs(5 * 60),
            ticket_ttl: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_address: 256,
            relay_idle_timeout: Duration::from_secs(30 * 60),
            max_relays_per_user: 4,
            recheck: Duration::from_secs(5 * 60),
            pass_through_credentials: false,
            start_session_at_create: true,
            recordings: None,
            recordings_keep: Duration::from_secs(90 * 24 * 3600),
            ldap: LdapSpec::default(),
        }
    }
}

/// `[web.ldap]` as written in the config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSpec {
    pub url: String,
    pub connect: String,
    pub starttls: bool,
    pub ca_file: Option<RelativePathBuf>,
    pub base_dn: String,
    pub domain: String,
    pub bind_user: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for LdapSpec {
    fn default() -> Self {
        LdapSpec {
            url: String::new(),
            connect: String::new(),
            starttls: false,
            ca_file: None,
            base_dn: String::new(),
            domain: String::new(),
            bind_user: String::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The checked `[web]`: the portal is on.
#[derive(Debug, Clone)]
pub struct Web {
    pub listen: SocketAddr,
    /// The certificate and key browsers see; None: the gRPC port's.
    pub cert: Option<(PathBuf, PathBuf)>,
    pub session_idle: Duration,
    pub session_max: Duration,
    /// The cookie key file; None: `data_dir/web-cookie-keys`.
    pub cookie_keys: Option<PathBuf>,
    pub allowed_group: Option<String>,
    pub admin_group: Option<String>,
    /// The templates offered; empty: `vm.template` and the pools'.
    pub templates: Vec<String>,
    pub max_failed_logins: u32,
    pub failed_login_window: Duration,
    pub ticket_ttl: Duration,
    /// How long a browser may take to send a request's headers, and stay
    /// idle between requests.
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// A desktop in the tab with no byte either way for this long is closed.
    pub relay_idle_timeout: Duration,
    pub max_relays_per_user: usize,
    /// How often a signed-in user's groups are read again (with
    /// `ldap.bind_user`).
    pub recheck: Duration,
    /// Sign in once: the sign-in's password, kept in this server's memory
    /// only, logs the user in to xrdp through the gateway.
    pub pass_through_credentials: bool,
    /// With sign in once: a desktop created from the page starts its
    /// user's session as soon as it is READY (a login through the gateway
    /// that leaves at once), so the tab opens into it.
    pub start_session_at_create: bool,
    /// Where the recordings of templates with `record = true` are kept;
    /// None: `data_dir/recordings`.
    pub recordings: Option<PathBuf>,
    /// A recording older than this is deleted.
    pub recordings_keep: Duration,
    pub ldap: Ldap,
}

/// The checked `[web.ldap]`.
#[derive(Debug, Clone)]
pub struct Ldap {
    /// `ldaps://host[:port]` or `ldap://host[:port]` (with StartTLS).
    pub url: String,
    /// The host the certificate must name.
    pub host: String,
    /// Where to connect instead of resolving `host`.
    pub connect: Option<SocketAddr>,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub base_dn: String,
    pub domain: String,
    /// The account the portal reads the directory as, to recheck signed-in
    /// users (its password: `secrets.web_ldap_password`).
    pub bind_user: Option<String>,
    pub timeout: Duration,
}

/// Checks `[web]`; None when `listen` is empty (the portal is off).
pub fn check(spec: &WebSpec) -> Result<Option<Web>, String> {
    if spec.listen.is_empty() {
        return Ok(None);
    }
    let listen = spec
        .listen
        .parse()
        .map_err(|_| "`web.listen`: expected an address such as 0.0.0.0:8443".to_string())?;
    let path = |p: &RelativePathBuf| p.relative();
    // "" as written (or from the environment): unset.
    let given =
        |p: &Option<RelativePathBuf>| p.clone().filter(|p| !p.original().as_os_str().is_empty());
    let cert = match (&given(&spec.cert), &given(&spec.key)) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            for (name, file) in [("web.cert", path(cert)), ("web.key", path(key))] {
                if !file.is_file() {
                    return Err(format!("`{name}`: {} is not a file", file.display()));
                }
            }
            Some((path(cert), path(key)))
        }
        _ => return Err("`web.cert` and `web.key` go together".into()),
    };
    for (key, value) in [
        ("web.session_idle", spec.session_idle),
        ("web.session_max", spec.session_max),
        ("web.failed_login_window", spec.failed_login_window),
        ("web.ticket_ttl", spec.ticket_ttl),
        ("web.header_timeout", spec.header_timeout),
        ("web.relay_idle_timeout", spec.relay_idle_timeout),
        ("web.recheck", spec.recheck),
        ("web.recordings_keep", spec.recordings_keep),
        ("web.ldap.timeout", spec.ldap.timeout),
    ] {
        if value.is_zero() {
            return Err(format!("`{key}`: must be longer than zero"));
        }
    }
    for (key, value) in [
        ("web.max_connections", spec.max_connections),
        (
            "web.max_connections_per_address",
            spec.max_connections_per_address,
        ),
        ("web.max_relays_per_user", spec.max_relays_per_user),
    ] {
        if value == 0 {
            return Err(format!("`{key}`: must be at least 1"));
        }
    }
    if spec.max_failed_logins == 0 {
        return Err("`web.max_failed_logins`: must be at least 1".into());
    }
    for (i, template) in spec.templates.iter().enumerate() {
        if crate::domain::validate::template(template).is_err() {
            return Err(format!(
                "`web.templates[{i}]`: letters, digits, '.', '_' and '-' only, at most 64"
            ));
        }
    }
    let group = |value: &str| (!value.is_empty()).then(|| value.to_string());
    match (spec.allowed_group.is_empty(), spec.allow_all_domain_users) {
        (true, false) => {
            return Err(
                "`web.allowed_group`: required: the AD group whose members may sign in \
                 (or web.allow_all_domain_users = true to let every account of the domain in)"
                    .into(),
            );
        }
        (false, true) => {
            return Err(
                "`web.allow_all_domain_users`: not with web.allowed_group: choose one".into(),
            );
        }
        _ => {}
    }
    Ok(Some(Web {
        listen,
        cert,
        session_idle: spec.session_idle,
        session_max: spec.session_max.max(spec.session_idle),
        cookie_keys: given(&spec.cookie_keys).map(|p| path(&p)),
        allowed_group: group(&spec.allowed_group),
        admin_group: group(&spec.admin_group),
        templates: spec.templates.clone(),
        max_failed_logins: spec.max_failed_logins,
        failed_login_window: spec.failed_login_window,
        ticket_ttl: spec.ticket_ttl,
        header_timeout: spec.header_timeout,
        max_connections: spec.max_connections,
        max_connections_per_address: spec.max_connections_per_address,
        relay_idle_timeout: spec.relay_idle_timeout,
        max_relays_per_user: spec.max_relays_per_user,
        recheck: spec.recheck,
        pass_through_credentials: spec.pass_through_credentials,
        start_session_at_create: spec.start_session_at_create,
        recordings: given(&spec.recordings).map(|p| path(&p)),
        recordings_keep: spec.recordings_keep,
        ldap: check_ldap(&spec.ldap)?,
    }))
}

fn check_ldap(spec: &LdapSpec) -> Result<Ldap, String> {
    let (tls_scheme, rest) = if let Some(rest) = spec.url.strip_prefix("ldaps://") {
        (true, rest)
    } else if let Some(rest) = spec.url.strip_prefix("ldap://") {
        (false, rest)
    } else {
        return Err(
            "`web.ldap.url`: required with web.listen: ldaps://dc.example.org, or ldap://... \
             with web.ldap.starttls = true"
                .into(),
        );
    };
    if !tls_scheme && !spec.starttls {
        return Err(
            "`web.ldap.url`: ldap:// sends passwords in the clear: use ldaps:// or set \
             web.ldap.starttls = true"
                .into(),
        );
    }
    if tls_scheme && spec.starttls {
        return Err("`web.ldap.starttls`: not with ldaps:// (already TLS)".into());
    }
    let authority = rest.trim_end_matches('/');
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => authority,
    };
    if host.is_empty() || authority.contains('/') || authority.contains('@') {
        return Err("`web.ldap.url`: expected ldaps://host or ldaps://host:port".into());
    }
    let connect = if spec.connect.is_empty() {
        None
    } else {
        Some(spec.connect.parse().map_err(|_| {
            "`web.ldap.connect`: expected an address such as 10.0.0.5:636".to_string()
        })?)
    };
    if spec.domain.is_empty() || spec.domain.contains(['@', '/', ' ']) {
        return Err(
            "`web.ldap.domain`: required: the domain users sign in to (their UPN suffix, \
             e.g. example.org)"
                .into(),
        );
    }
    if !spec.bind_user.is_empty()
        && crate::domain::validate::account_name("web.ldap.bind_user", &spec.bind_user).is_err()
    {
        return Err("`web.ldap.bind_user`: an account name (sAMAccountName)".into());
    }
    if spec.base_dn.is_empty() {
        return Err("`web.ldap.base_dn`: required, e.g. DC=example,DC=org".into());
    }
    let ca_file = spec
        .ca_file
        .as_ref()
        .filter(|p| !p.original().as_os_str().is_empty())
        .map(|p| p.relative());
    if let Some(file) = &ca_file
        && !file.is_file()
    {
        return Err(format!(
            "`web.ldap.ca_file`: {} is not a file",
            file.display()
        ));
    }
    Ok(Ldap {
        url: spec.url.trim_end_matches('/').to_string(),
        host: host.trim_matches(['[', ']']).to_string(),
        connect,
        starttls: spec.starttls,
        ca_file,
        base_dn: spec.base_dn.clone(),
        domain: spec.domain.clone(),
        bind_user: (!spec.bind_user.is_empty()).then(|| spec.bind_user.clone()),
        timeout: spec.timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ldap(url: &str) -> LdapSpec {
        LdapSpec {
            url: url.into(),
            base_dn: "DC=daas,DC=test".into(),
            domain: "daas.test".into(),
            ..LdapSpec::default()
        }
    }

    #[test]
    fn the_portal_is_off_without_listen() {
        assert!(check(&WebSpec::default()).expect("valid").is_none());
    }

    #[test]
    fn ldap_urls_are_checked() {
        let ok = check_ldap(&ldap("ldaps://dc1.daas.test:636/")).expect("valid");
        assert_eq!(ok.host, "dc1.daas.test");
        assert_eq!(ok.url, "ldaps://dc1.daas.test:636");
        assert!(
            check_ldap(&ldap("ldap://dc1.daas.test"))
                .expect_err("clear text")
                .contains("in the clear")
        );
        let starttls = LdapSpec {
            starttls: true,
            ..ldap("ldap://dc1.daas.test")
        };
        assert!(check_ldap(&starttls).expect("valid").starttls);
        assert!(check_ldap(&ldap("http://dc1")).is_err());
        assert!(check_ldap(&ldap("ldaps://user@dc1")).is_err());
        let no_domain = LdapSpec {
            domain: String::new(),
            ..ldap("ldaps://dc1")
        };
        assert!(check_ldap(&no_domain).is_err());
        let connect = LdapSpec {
            connect: "10.99.0.1:636".into(),
            ..ldap("ldaps://dc1")
        };
        assert_eq!(
            check_ldap(&connect).expect("valid").connect,
            Some("10.99.0.1:636".parse().expect("an address"))
        );
    }

    #[test]
    fn web_settings_are_checked() {
        let spec = WebSpec {
            listen: "127.0.0.1:0".into(),
            ldap: ldap("ldaps://dc1.daas.test"),
            ..WebSpec::default()
        };
        let err = check(&spec).expect_err("no group, and not every user said");
        assert!(err.contains("web.allowed_group"), "{err}");
        let spec = WebSpec {
            allow_all_domain_users: true,
            ..spec
        };
        let web = check(&spec).expect("valid").expect("on");
        assert!(web.allowed_group.is_none());
        let both = WebSpec {
            allowed_group: "daas-users".into(),
            ..spec.clone()
        };
        assert!(check(&both).is_err());
        let bad = WebSpec {
            max_failed_logins: 0,
            ..spec.clone()
        };
        assert!(check(&bad).is_err());
        let bad = WebSpec {
            templates: vec!["no spaces".into()],
            ..spec
        };
        assert!(check(&bad).is_err());
    }
}
