//! Secrets the tools need (the AD join password, the Proxmox API token, the
//! portal's LDAP bind password): a [`Secret`] that never prints, and loading
//! them at start from the files or environment variables `[secrets]` names,
//! so that no secret is ever written in the config itself.

use figment::value::magic::RelativePathBuf;

use super::{
    ConfigError,
    raw::{RawSecrets, given},
};

/// A secret value: never printed, not even by `Debug`.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "(none)"
        } else {
            "********"
        })
    }
}

/// Secrets for the tools, read at start from files or environment
/// variables the config names (never from the config itself).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Password of the account that joins desktops to the AD domain; given
    /// to Ansible as `ad_join_password`.
    pub ad_join_password: Option<Secret>,
    /// Proxmox API token id and secret; given to Terraform as
    /// `PM_API_TOKEN_ID` and `PM_API_TOKEN_SECRET`.
    pub proxmox_token_id: Option<String>,
    pub proxmox_token_secret: Option<Secret>,
    /// Password of `web.ldap.bind_user`, the account the portal reads the
    /// directory as to recheck signed-in users' groups.
    pub web_ldap_password: Option<Secret>,
    /// Password of the PostgreSQL user `store.url` names.
    pub store_password: Option<Secret>,
}

impl Secrets {
    /// The environment a Terraform provider (and the module's inventory)
    /// reads its credentials from: never a file, never a command line.
    pub fn provider_env(&self) -> Vec<(&'static str, &str)> {
        match (&self.proxmox_token_id, &self.proxmox_token_secret) {
            (Some(id), Some(secret)) => vec![
                ("PM_API_TOKEN_ID", id.as_str()),
                ("PM_API_TOKEN_SECRET", secret.expose()),
            ],
            _ => Vec::new(),
        }
    }

    /// Every secret value, for masking tool output.
    pub fn values(&self) -> Vec<String> {
        [
            &self.ad_join_password,
            &self.proxmox_token_secret,
            &self.web_ldap_password,
            &self.store_password,
        ]
        .into_iter()
        .flatten()
        .map(|s| s.expose().to_string())
        .collect()
    }
}

/// Reads one secret from the file or the environment variable named.
fn load_secret(
    key: &str,
    file: &Option<RelativePathBuf>,
    env: &Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid(format!("`secrets.{key}_*`: {why}"));
    // An empty value means "not set", as in the reference.
    let file = given(file);
    let env = env.as_ref().filter(|e| !e.is_empty());
    let value = match (file, env) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "set either the _file or the _env key, not both".into(),
            ));
        }
        (Some(file), None) => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| invalid(format!("cannot read {}: {e}", file.display())))?;
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(&file)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(file = %file.display(), "a secret file is readable by others; chmod 600 it");
            }
            text.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| invalid(format!("the environment variable {var} is not set")))?,
        (None, None) => return Ok(None),
    };
    if value.is_empty() {
        return Err(invalid("the secret is empty".into()));
    }
    Ok(Some(Secret(value)))
}

/// `[secrets]`: each secret from its file or its variable, the Proxmox token
/// id and secret together or not at all.
pub(super) fn load(raw: &RawSecrets) -> Result<Secrets, ConfigError> {
    let secrets = Secrets {
        ad_join_password: load_secret(
            "ad_join_password",
            &raw.ad_join_password_file,
            &raw.ad_join_password_env,
        )?,
        proxmox_token_id: raw.proxmox_token_id.clone().filter(|s| !s.is_empty()),
        proxmox_token_secret: load_secret(
            "proxmox_token_secret",
            &raw.proxmox_token_secret_file,
            &raw.proxmox_token_secret_env,
        )?,
        web_ldap_password: load_secret(
            "web_ldap_password",
            &raw.web_ldap_password_file,
            &raw.web_ldap_password_env,
        )?,
        store_password: load_secret(
            "store_password",
            &raw.store_password_file,
            &raw.store_password_env,
        )?,
    };
    if secrets.proxmox_token_secret.is_some() != secrets.proxmox_token_id.is_some() {
        return Err(ConfigError::Invalid(
            "`secrets.proxmox_token_id`: set it together with the token secret".into(),
        ));
    }
    Ok(secrets)
}
