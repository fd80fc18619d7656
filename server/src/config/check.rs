//! From the configuration as written to the checked [`Config`]: one function
//! per section, each resolving its paths and returning that section's checked
//! value or a [`ConfigError`] that names the key. [`finish`] calls them in a
//! fixed order, so a config with several mistakes always reports the same
//! one first; the few checks that span sections are small functions of their
//! own, called where the order puts them.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};

use figment::{Figment, value::magic::RelativePathBuf};

use crate::domain::catalog::Catalog;

use super::{
    Agent, Ansible, AuditTrail, Auth, Config, ConfigError, Http, Limits, Secrets, Ssh, Terraform,
    Tls, VmDefaults,
    policy::{Policies, Policy},
    pools::{Pool, PoolSpec},
    raw::{
        Raw, RawAgent, RawAnsible, RawAudit, RawHttp, RawPolicy, RawSsh, RawTerraform, RawTls,
        given, path, program,
    },
    secrets,
    web::{Web, WebSpec},
    webhooks::{Webhook, WebhookSpec},
};

/// The largest `limits.max_parallel_provisions` and `limits.max_streams`.
const MAX_LIMIT: usize = 1_000_000;

/// Checks every section, in this order, and builds the [`Config`].
pub(super) fn finish(figment: Figment) -> Result<Config, ConfigError> {
    let raw: Raw = figment.extract()?;
    let (listen, http) = listen_and_http(&raw.listen, &raw.http)?;
    limits(&raw.limits)?;
    auth(&raw.auth)?;
    vm(&raw.vm)?;
    durations(&raw)?;
    let data_dir = path(&raw.data_dir);
    let ssh = ssh(raw.ssh, &data_dir)?;
    let terraform = terraform(raw.terraform, &data_dir)?;
    let ansible = ansible(raw.ansible)?;
    let tls = tls(&raw.tls, listen, &http, &data_dir)?;
    let secrets = secrets::load(&raw.secrets)?;
    intervals(&raw.policy, &raw.agent)?;
    let policies = policies(&raw.policy)?;
    let agent = agent(&raw.agent, &tls, &data_dir)?;
    let pools = pools(&raw.pools, &raw.vm.template)?;
    let webhooks = webhooks(&raw.webhooks)?;
    let web = web(&raw.web)?;
    let postgres = super::store::check(&raw.store).map_err(ConfigError::Invalid)?;
    let placement = super::placement::check(&raw.placement).map_err(ConfigError::Invalid)?;
    let catalog = super::catalog::check(
        &raw.templates,
        &raw.vm,
        pools.iter().map(|(name, pool)| (name, &pool.template)),
    )
    .map_err(ConfigError::Invalid)?;
    let orgs = super::orgs::check(&raw.orgs).map_err(ConfigError::Invalid)?;
    let schedules = super::scheduling::check(&raw.schedules).map_err(ConfigError::Invalid)?;
    web_and_catalog(web.as_ref(), &catalog)?;
    web_and_secrets(web.as_ref(), &secrets)?;
    web_and_tls(web.as_ref(), &tls)?;
    Ok(Config {
        schedules,
        orgs,
        catalog,
        placement,
        web,
        pools,
        webhooks,
        agent,
        policies,
        reaper_interval: raw.policy.reaper_interval,
        listen,
        http,
        audit: audit(&raw.audit),
        tls,
        auth: raw.auth,
        secrets,
        database: raw
            .database
            .map(|p| path(&p))
            .unwrap_or_else(|| data_dir.join("daas.sqlite3")),
        postgres,
        store_lease: raw.store.lease,
        log_format: raw.log_format,
        limits: raw.limits,
        vm: raw.vm,
        terraform,
        boot: raw.boot,
        ssh,
        ansible,
        data_dir,
    })
}

/// The error for `key`, in the words every check uses.
fn invalid(key: &str, why: &str) -> ConfigError {
    ConfigError::Invalid(format!("`{key}`: {why}"))
}

/// Each of `durations` longer than zero, the first that is not named.
fn longer_than_zero(durations: &[(&str, Duration)]) -> Result<(), ConfigError> {
    for (key, duration) in durations {
        if duration.is_zero() {
            return Err(invalid(key, "must be longer than zero"));
        }
    }
    Ok(())
}

/// `listen` (the gRPC port) and `[http]`: health and readiness beside it,
/// metrics on loopback only.
fn listen_and_http(listen: &str, raw: &RawHttp) -> Result<(SocketAddr, Http), ConfigError> {
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| invalid("listen", "expected an address such as 127.0.0.1:50051"))?;
    let http = Http {
        listen: optional_addr("http.listen", &raw.listen)?,
        metrics_listen: optional_addr("http.metrics_listen", &raw.metrics_listen)?,
    };
    if let Some(addr) = http.metrics_listen.filter(|a| !a.ip().is_loopback()) {
        return Err(invalid(
            "http.metrics_listen",
            &format!("is plain HTTP without authentication: a loopback address only, not {addr}"),
        ));
    }
    Ok((listen, http))
}

/// An address, or none when `text` is empty.
fn optional_addr(key: &str, text: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        invalid(
            key,
            "expected an address such as 127.0.0.1:50052, or \"\" for none",
        )
    })
}

/// `[limits]`'s counts: at least 1, and those semaphores count bounded so the
/// server cannot panic at start. (Its retentions are among [`durations`].)
fn limits(limits: &Limits) -> Result<(), ConfigError> {
    for (key, value) in [
        (
            "limits.max_parallel_provisions",
            limits.max_parallel_provisions,
        ),
        ("limits.max_sessions", limits.max_sessions),
        ("limits.max_sessions_per_user", limits.max_sessions_per_user),
        (
            "limits.creates_per_minute",
            limits.creates_per_minute as usize,
        ),
        ("limits.create_burst", limits.create_burst as usize),
        ("limits.max_streams", limits.max_streams),
        ("limits.max_streams_per_user", limits.max_streams_per_user),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be at least 1"));
        }
    }
    for (key, value) in [
        (
            "limits.max_parallel_provisions",
            limits.max_parallel_provisions,
        ),
        ("limits.max_streams", limits.max_streams),
    ] {
        if value > MAX_LIMIT {
            return Err(invalid(key, &format!("must be at most {MAX_LIMIT}")));
        }
    }
    Ok(())
}

/// `[auth]`: every admin a valid user name.
fn auth(auth: &Auth) -> Result<(), ConfigError> {
    for (i, admin) in auth.admins.iter().enumerate() {
        if crate::domain::validate::account_name("admin", admin).is_err() {
            return Err(invalid(
                &format!("auth.admins[{i}]"),
                "is not a valid user name",
            ));
        }
    }
    Ok(())
}

/// `[vm]`: sizes of at least 1, a template name a session may carry.
fn vm(vm: &VmDefaults) -> Result<(), ConfigError> {
    for (key, value) in [
        ("vm.cores", vm.cores),
        ("vm.memory_mb", vm.memory_mb),
        ("vm.disk_gb", vm.disk_gb),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be at least 1"));
        }
    }
    if crate::domain::validate::template(&vm.template).is_err() {
        return Err(invalid(
            "vm.template",
            "letters, digits, '.', '_' and '-' only, at most 64",
        ));
    }
    Ok(())
}

/// The timeouts and retentions of `[terraform]`, `[limits]`, `[boot]` and
/// `[ansible]`: one list, checked before any of those sections' paths.
fn durations(raw: &Raw) -> Result<(), ConfigError> {
    longer_than_zero(&[
        ("terraform.init_timeout", raw.terraform.init_timeout),
        ("terraform.apply_timeout", raw.terraform.apply_timeout),
        ("terraform.destroy_timeout", raw.terraform.destroy_timeout),
        ("terraform.sweep_interval", raw.terraform.sweep_interval),
        ("limits.output_retention", raw.limits.output_retention),
        ("limits.audit_retention", raw.limits.audit_retention),
        ("boot.timeout", raw.boot.timeout),
        ("ansible.timeout", raw.ansible.timeout),
    ])
}

/// `[ssh]`: a user; the key under `data_dir` unless given.
fn ssh(raw: RawSsh, data_dir: &Path) -> Result<Ssh, ConfigError> {
    if raw.user.is_empty() {
        return Err(invalid("ssh.user", "must not be empty"));
    }
    Ok(Ssh {
        user: raw.user,
        private_key: raw
            .private_key
            .map(|p| path(&p))
            .unwrap_or_else(|| Ssh::made_key(data_dir)),
    })
}

/// `[terraform]`: no variable the contract sets, a module directory that
/// exists.
fn terraform(raw: RawTerraform, data_dir: &Path) -> Result<Terraform, ConfigError> {
    for key in raw.variables.keys() {
        if crate::domain::contract::CONTRACT_VARIABLES.contains(&key.as_str()) {
            return Err(invalid(
                &format!("terraform.variables.{key}"),
                "is a contract variable the server sets itself",
            ));
        }
        if key == "vmid_base" {
            return Err(invalid(
                "terraform.variables.vmid_base",
                "VM ids come from the server now: set `placement.vm_id_base` instead (the same number keeps the same ids)",
            ));
        }
    }
    let module_dir = path(&raw.module_dir);
    if !module_dir.is_dir() {
        return Err(invalid(
            "terraform.module_dir",
            &format!("{} is not a directory", module_dir.display()),
        ));
    }
    Ok(Terraform {
        module_dir,
        binary: program(&raw.binary),
        plugin_cache_dir: raw
            .plugin_cache_dir
            .map(|p| path(&p))
            .unwrap_or_else(|| data_dir.join("terraform-plugins")),
        init_timeout: raw.init_timeout,
        apply_timeout: raw.apply_timeout,
        destroy_timeout: raw.destroy_timeout,
        sweep_interval: raw.sweep_interval,
        variables: raw.variables,
    })
}

/// `[ansible]`: the playbooks are files.
fn ansible(raw: RawAnsible) -> Result<Ansible, ConfigError> {
    let playbook = path(&raw.playbook);
    let teardown_playbook = given(&raw.teardown_playbook);
    if let Some(file) = &teardown_playbook
        && !file.is_file()
    {
        return Err(invalid(
            "ansible.teardown_playbook",
            &format!("{} is not a file", file.display()),
        ));
    }
    if !playbook.is_file() {
        return Err(invalid(
            "ansible.playbook",
            &format!("{} is not a file", playbook.display()),
        ));
    }
    Ok(Ansible {
        binary: program(&raw.binary),
        playbook,
        teardown_playbook,
        config: given(&raw.config),
        connection: raw.connection,
        timeout: raw.timeout,
        extra_vars: raw.extra_vars,
    })
}

/// `[tls]`: plaintext only when the gRPC and HTTP ports are on loopback;
/// else the PKI's files (under `data_dir/pki` unless given), which must
/// exist unless a dev PKI will make them.
fn tls(raw: &RawTls, listen: SocketAddr, http: &Http, data_dir: &Path) -> Result<Tls, ConfigError> {
    if raw.plaintext {
        for addr in std::iter::once(listen).chain(http.listen) {
            if !addr.ip().is_loopback() {
                return Err(invalid(
                    "tls.plaintext",
                    &format!("is allowed only on loopback addresses, not {addr}: use mutual TLS"),
                ));
            }
        }
        return Ok(Tls::Plaintext);
    }
    let pki = data_dir.join("pki");
    let pick = |value: &Option<RelativePathBuf>, default: &str| {
        value
            .as_ref()
            .map(path)
            .unwrap_or_else(|| pki.join(default))
    };
    let ca = pick(&raw.ca, "ca.pem");
    let cert = pick(&raw.cert, "server.pem");
    let key = pick(&raw.key, "server-key.pem");
    if !raw.dev_pki {
        for (name, file) in [("tls.ca", &ca), ("tls.cert", &cert), ("tls.key", &key)] {
            if !file.is_file() {
                return Err(invalid(
                    name,
                    &format!(
                        "{} does not exist (create a PKI with `daas-server pki init`, \
                         or set tls.dev_pki = true for a local trial)",
                        file.display()
                    ),
                ));
            }
        }
    }
    let revoked =
        given(&raw.revoked).unwrap_or_else(|| ca.with_file_name(crate::pki::revoked::FILE_NAME));
    Ok(Tls::Mutual {
        ca,
        cert,
        key,
        revoked,
        dev_pki: raw.dev_pki,
    })
}

/// `[policy]`'s timeouts, the reaper's interval and `agent.report_interval`:
/// one list, checked before the policy's warning and the agent's endpoint.
fn intervals(policy: &RawPolicy, agent: &RawAgent) -> Result<(), ConfigError> {
    longer_than_zero(&[
        ("policy.idle_timeout", policy.idle_timeout),
        ("policy.disconnected_timeout", policy.disconnected_timeout),
        ("policy.max_lifetime", policy.max_lifetime),
        ("policy.agent_lost_timeout", policy.agent_lost_timeout),
        ("policy.reaper_interval", policy.reaper_interval),
        ("agent.report_interval", agent.report_interval),
    ])
}

/// `[policy]`: the warning comes before every timeout it warns of.
fn policies(raw: &RawPolicy) -> Result<Policies, ConfigError> {
    for (key, timeout) in [
        ("policy.idle_timeout", raw.idle_timeout),
        ("policy.disconnected_timeout", raw.disconnected_timeout),
        ("policy.max_lifetime", raw.max_lifetime),
        ("policy.agent_lost_timeout", raw.agent_lost_timeout),
    ] {
        if raw.warning >= timeout {
            return Err(invalid(
                "policy.warning",
                &format!("must be shorter than {key}, or the warning comes at once"),
            ));
        }
    }
    Ok(Policies {
        default: Policy {
            idle_timeout: raw.idle_timeout,
            disconnected_timeout: raw.disconnected_timeout,
            max_lifetime: raw.max_lifetime,
            agent_lost_timeout: raw.agent_lost_timeout,
            warning: raw.warning,
        },
        templates: raw.templates.clone(),
    })
}

/// `[agent]`: an endpoint that is a URL; its CA found beside `tls.ca`.
fn agent(raw: &RawAgent, tls: &Tls, data_dir: &Path) -> Result<Agent, ConfigError> {
    let endpoint = Some(raw.endpoint.clone()).filter(|e| !e.is_empty());
    if let Some(endpoint) = &endpoint
        && !endpoint.starts_with("https://")
        && !endpoint.starts_with("http://")
    {
        return Err(invalid(
            "agent.endpoint",
            "must be a URL such as https://10.0.2.2:50051",
        ));
    }
    let tls_ca = match tls {
        Tls::Mutual { ca, .. } => ca.clone(),
        Tls::Plaintext => data_dir.join("pki").join("ca.pem"),
    };
    Ok(Agent {
        endpoint,
        tls_server_name: Some(raw.tls_server_name.clone()).filter(|s| !s.is_empty()),
        binary: given(&raw.binary),
        ca_cert: given(&raw.ca_cert),
        ca_key: given(&raw.ca_key),
        tls_ca,
        report_interval: raw.report_interval,
        first_report_wait: raw.first_report_wait,
    })
}

/// `[pools.NAME]`, each checked against the default template.
fn pools(
    specs: &BTreeMap<String, PoolSpec>,
    default_template: &str,
) -> Result<BTreeMap<String, Pool>, ConfigError> {
    let mut pools = BTreeMap::new();
    for (name, spec) in specs {
        let pool = Pool::check(name, spec, default_template)
            .map_err(|why| invalid(&format!("pools.{name}"), &why))?;
        pools.insert(name.clone(), pool);
    }
    Ok(pools)
}

/// `[[webhooks]]`.
fn webhooks(specs: &[WebhookSpec]) -> Result<Vec<Webhook>, ConfigError> {
    super::webhooks::check_all(specs).map_err(|err| ConfigError::Invalid(err.to_string()))
}

/// `[web]`: the portal, or none when it is off.
fn web(spec: &WebSpec) -> Result<Option<Web>, ConfigError> {
    super::web::check(spec).map_err(ConfigError::Invalid)
}

/// The portal offers templates of a closed catalog only.
fn web_and_catalog(web: Option<&Web>, catalog: &Catalog) -> Result<(), ConfigError> {
    let Some(web) = web else { return Ok(()) };
    if catalog.open {
        return Ok(());
    }
    match web.templates.iter().find(|t| catalog.get(t).is_none()) {
        Some(t) => Err(invalid(
            "web.templates",
            &format!("\"{t}\" is not in [templates]"),
        )),
        None => Ok(()),
    }
}

/// The portal's LDAP bind user and its password go together.
fn web_and_secrets(web: Option<&Web>, secrets: &Secrets) -> Result<(), ConfigError> {
    if let Some(web) = web
        && web.ldap.bind_user.is_some() != secrets.web_ldap_password.is_some()
    {
        return Err(invalid(
            "web.ldap.bind_user",
            "and secrets.web_ldap_password_file (or _env) go together: the account the portal rechecks signed-in users' groups as",
        ));
    }
    Ok(())
}

/// The portal is plain HTTP when TLS is off: loopback only then.
fn web_and_tls(web: Option<&Web>, tls: &Tls) -> Result<(), ConfigError> {
    if let (Tls::Plaintext, Some(web)) = (tls, web)
        && !web.listen.ip().is_loopback()
    {
        return Err(invalid(
            "web.listen",
            &format!(
                "is plain HTTP when tls.plaintext = true: a loopback address only, not {}",
                web.listen
            ),
        ));
    }
    Ok(())
}

/// `[audit]`: the JSON-lines file, off when empty.
fn audit(raw: &RawAudit) -> AuditTrail {
    AuditTrail {
        file: given(&raw.file),
    }
}
