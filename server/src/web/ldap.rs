//! Checks a user's password against the AD domain: an LDAP simple bind as
//! `USER@domain` over LDAPS or StartTLS (never in the clear), then, as that
//! user, a search for the account's canonical name and every group it is
//! in, nested ones included (AD's `LDAP_MATCHING_RULE_IN_CHAIN`). The
//! account bound must be the account found: `USER@domain` is a user
//! principal name, which another account may hold (an alternative UPN
//! suffix). LDAP WhoAmI says who is bound; where the directory lacks it
//! (Samba), the account holding that UPN, if any, is.

use std::{io, sync::Arc};

use ldap3::{LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, StdStream};
use rustls::ClientConfig;

use crate::config::Secret;
use crate::config::web::Ldap;

/// AD's "invalid credentials" (also: disabled, expired, locked out).
const INVALID_CREDENTIALS: u32 = 49;
/// What a directory without an extended operation answers (Samba 4.17:
/// protocolError; others: unavailableCriticalExtension).
const PROTOCOL_ERROR: u32 = 2;
const UNAVAILABLE_CRITICAL_EXTENSION: u32 = 12;

/// The longest password accepted (AD allows 256 characters).
const MAX_PASSWORD_BYTES: usize = 1024;

/// Who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The account's sAMAccountName, as the directory spells it.
    pub user: String,
    /// The sAMAccountNames of the groups it is in, nested ones included.
    pub groups: Vec<String>,
}

impl Identity {
    /// Whether the user is in `group` (names compare case-insensitively, as AD does).
    pub fn is_in(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g.eq_ignore_ascii_case(group))
    }
}

/// Why a sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Wrong user name or password (or a disabled, locked or expired account:
    /// the directory does not say which, and neither do we).
    #[error("wrong user name or password")]
    BadCredentials,
    /// The directory could not be asked.
    #[error("the domain controller cannot be reached ({0}); try again later")]
    Unavailable(String),
}

/// Why the directory settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("web.ldap.ca_file: cannot use {path}: {why}")]
pub struct DirectoryError {
    path: String,
    why: String,
}

/// The AD domain, as `[web.ldap]` names it.
pub struct Directory {
    ldap: Ldap,
    tls: Arc<ClientConfig>,
    /// `web.ldap.bind_user`'s password: the account rechecks read as.
    reader_password: Option<Secret>,
}

impl Directory {
    /// Loads the CA of the DC's certificate beside the system's roots.
    pub fn new(ldap: &Ldap) -> Result<Directory, DirectoryError> {
        let roots =
            crate::pki::roots::system_roots_and(ldap.ca_file.as_deref()).map_err(|why| {
                DirectoryError {
                    path: ldap
                        .ca_file
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    why,
                }
            })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| DirectoryError {
                path: String::new(),
                why: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Directory {
            ldap: ldap.clone(),
            tls: Arc::new(tls),
            reader_password: None,
        })
    }

    /// Rechecks read the directory as `web.ldap.bind_user` with `password`.
    pub fn with_reader(mut self, password: Option<Secret>) -> Directory {
        self.reader_password = password;
        self
    }

    /// Whether signed-in users can be rechecked (a bind user is set).
    pub fn can_recheck(&self) -> bool {
        self.ldap.bind_user.is_some() && self.reader_password.is_some()
    }

    /// Reads `user`'s account and groups again, as `web.ldap.bind_user`:
    /// BadCredentials when the account is gone (or outside base_dn).
    pub async fn recheck(&self, user: &str) -> Result<Identity, SignInError> {
        let (Some(reader), Some(password)) = (&self.ldap.bind_user, &self.reader_password) else {
            return Err(SignInError::Unavailable("no web.ldap.bind_user".into()));
        };
        let timeout = self.ldap.timeout;
        let read = async {
            let mut ldap = self.connect().await?;
            let bind = ldap
                .simple_bind(&format!("{reader}@{}", self.ldap.domain), password.expose())
                .await
                .map_err(|e| SignInError::Unavailable(e.to_string()))?;
            if bind.rc == INVALID_CREDENTIALS {
                let _ = ldap.unbind().await;
                return Err(SignInError::Unavailable(
                    "web.ldap.bind_user cannot bind: check the account and secrets.web_ldap_password".into(),
                ));
            }
            bind.success()
                .map_err(|e| SignInError::Unavailable(e.to_string()))?;
            let result = self.identity(&mut ldap, user).await.map(|(id, _)| id);
            let _ = ldap.unbind().await;
            result
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(result) => result,
            Err(_) => Err(SignInError::Unavailable(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            ))),
        }
    }

    /// Checks `password` for `user` and finds the groups. The password is
    /// used for the bind only: it is not kept, logged or put in an error.
    pub async fn sign_in(&self, user: &str, password: &str) -> Result<Identity, SignInError> {
        // An empty password would be an anonymous bind, which "succeeds".
        if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
            return Err(SignInError::BadCredentials);
        }
        if crate::domain::validate::account_name("username", user).is_err() {
            return Err(SignInError::BadCredentials);
        }
        let timeout = self.ldap.timeout;
        match tokio::time::timeout(timeout, self.bind_and_search(user, password)).await {
            Ok(result) => result,
            Err(_) => Err(SignInError::Unavailable(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            ))),
        }
    }

    /// A connection to the DC, over LDAPS or StartTLS.
    async fn connect(&self) -> Result<ldap3::Ldap, SignInError> {
        let unavailable = |e: LdapError| SignInError::Unavailable(e.to_string());
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.ldap.timeout)
            .set_starttls(self.ldap.starttls)
            .set_config(self.tls.clone());
        if let Some(addr) = self.ldap.connect {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .and_then(|s| s.into_std())
                .map_err(|e: io::Error| {
                    SignInError::Unavailable(format!("cannot connect to {addr}: {e}"))
                })?;
            settings = settings.set_std_stream(StdStream::Tcp(stream));
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.ldap.url)
            .await
            .map_err(unavailable)?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    async fn bind_and_search(&self, user: &str, password: &str) -> Result<Identity, SignInError> {
        let unavailable = |e: LdapError| SignInError::Unavailable(e.to_string());
        let mut ldap = self.connect().await?;
        let bind = ldap
            .simple_bind(&format!("{user}@{}", self.ldap.domain), password)
            .await
            .map_err(unavailable)?;
        if bind.rc == INVALID_CREDENTIALS {
            let _ = ldap.unbind().await;
            return Err(SignInError::BadCredentials);
        }
        bind.success().map_err(unavailable)?;
        let result = self.bound_identity(&mut ldap, user).await;
        let _ = ldap.unbind().await;
        result
    }

    /// The account found for `user`, if it is the one bound.
    async fn bound_identity(
        &self,
        ldap: &mut ldap3::Ldap,
        user: &str,
    ) -> Result<Identity, SignInError> {
        let (identity, dn) = self.identity(ldap, user).await?;
        let bound = match self.who_am_i(ldap).await? {
            Some(authzid) => bound_is(&authzid, &identity.user, &dn).ok_or_else(|| {
                SignInError::Unavailable(format!(
                    "the directory's WhoAmI answer is not understood: {:?}",
                    authzid.chars().take(100).collect::<String>()
                ))
            })?,
            // No WhoAmI (Samba): an account that holds `user@domain` as its
            // user principal name is the one bound, else the name's own.
            None => match self.upn_holder(ldap, user).await? {
                Some(holder) => holder.eq_ignore_ascii_case(&dn),
                None => true,
            },
        };
        if bound {
            Ok(identity)
        } else {
            tracing::warn!(
                name = %user,
                found = %identity.user,
                "a sign-in's password is another account's (its user principal name is the name typed): refused"
            );
            Err(SignInError::BadCredentials)
        }
    }

    /// WhoAmI's answer (RFC 4532), or None where the directory lacks it.
    async fn who_am_i(&self, ldap: &mut ldap3::Ldap) -> Result<Option<String>, SignInError> {
        let unavailable = |e: LdapError| SignInError::Unavailable(e.to_string());
        let result = ldap
            .extended(ldap3::exop::WhoAmI)
            .await
            .map_err(unavailable)?;
        if result.1.rc == PROTOCOL_ERROR || result.1.rc == UNAVAILABLE_CRITICAL_EXTENSION {
            return Ok(None);
        }
        let (exop, _) = result.success().map_err(unavailable)?;
        Ok(Some(
            String::from_utf8_lossy(exop.val.as_deref().unwrap_or_default()).to_string(),
        ))
    }

    /// The DN of the account whose user principal name is `user@domain`,
    /// searched from the domain's root (not only base_dn).
    async fn upn_holder(
        &self,
        ldap: &mut ldap3::Ldap,
        user: &str,
    ) -> Result<Option<String>, SignInError> {
        let unavailable = |e: LdapError| SignInError::Unavailable(e.to_string());
        let (root, _) = ldap
            .search(
                "",
                Scope::Base,
                "(objectClass=*)",
                vec!["defaultNamingContext"],
            )
            .await
            .map_err(unavailable)?
            .success()
            .map_err(unavailable)?;
        let base = root
            .into_iter()
            .map(SearchEntry::construct)
            .find_map(|e| first(&e, "defaultNamingContext"))
            .unwrap_or_else(|| self.ldap.base_dn.clone());
        let filter = format!(
            "(userPrincipalName={})",
            ldap3::ldap_escape(format!("{user}@{}", self.ldap.domain))
        );
        let (entries, _) = ldap
            .search(&base, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .map_err(unavailable)?
            .success()
            .map_err(unavailable)?;
        Ok(entries
            .into_iter()
            .next()
            .map(|e| SearchEntry::construct(e).dn))
    }

    /// The account `user` names, with its groups, and its DN.
    async fn identity(
        &self,
        ldap: &mut ldap3::Ldap,
        user: &str,
    ) -> Result<(Identity, String), SignInError> {
        let filter = format!(
            "(&(objectCategory=person)(objectClass=user)(sAMAccountName={}))",
            ldap3::ldap_escape(user)
        );
        // A bind can succeed for an account outside base_dn: not ours.
        let Some(entry) = self.search(ldap, &filter).await?.into_iter().next() else {
            return Err(SignInError::BadCredentials);
        };
        let name = first(&entry, "sAMAccountName").unwrap_or_else(|| user.to_string());
        let filter = format!(
            "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={}))",
            ldap3::ldap_escape(&entry.dn)
        );
        let mut groups: Vec<String> = self
            .search(ldap, &filter)
            .await?
            .iter()
            .filter_map(|g| first(g, "sAMAccountName"))
            .collect();
        groups.sort();
        Ok((Identity { user: name, groups }, entry.dn))
    }

    /// The entries under base_dn that `filter` matches, with their sAMAccountName.
    async fn search(
        &self,
        ldap: &mut ldap3::Ldap,
        filter: &str,
    ) -> Result<Vec<SearchEntry>, SignInError> {
        let unavailable = |e: LdapError| SignInError::Unavailable(e.to_string());
        let (entries, _) = ldap
            .search(
                &self.ldap.base_dn,
                Scope::Subtree,
                filter,
                vec!["sAMAccountName"],
            )
            .await
            .map_err(unavailable)?
            .success()
            .map_err(unavailable)?;
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }
}

/// Whether WhoAmI's `authzid` (RFC 4532: `u:DOMAIN\\name` from AD, or
/// `dn:DN`) is the account `name` at `dn`; None for an answer of another form.
fn bound_is(authzid: &str, name: &str, dn: &str) -> Option<bool> {
    if let Some(bound) = authzid.strip_prefix("dn:") {
        return Some(bound.eq_ignore_ascii_case(dn));
    }
    let (_, bound) = authzid.strip_prefix("u:")?.split_once('\\')?;
    Some(bound.eq_ignore_ascii_case(name))
}

fn first(entry: &SearchEntry, attr: &str) -> Option<String> {
    entry.attrs.get(attr).and_then(|v| v.first()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> Directory {
        let spec = crate::config::web::LdapSpec {
            url: "ldaps://127.0.0.1:9".into(),
            base_dn: "DC=daas,DC=test".into(),
            domain: "daas.test".into(),
            timeout: std::time::Duration::from_secs(2),
            ..Default::default()
        };
        let web = crate::config::web::check(&crate::config::web::WebSpec {
            listen: "127.0.0.1:0".into(),
            allow_all_domain_users: true,
            ldap: spec,
            ..Default::default()
        })
        .expect("valid")
        .expect("on");
        Directory::new(&web.ldap).expect("a directory")
    }

    #[tokio::test]
    async fn empty_passwords_and_bad_names_never_reach_the_directory() {
        let dir = directory();
        // Nothing listens on port 9: reaching it would be Unavailable.
        for (user, password) in [
            ("alice", ""),
            ("", "secret"),
            ("al*ce", "secret"),
            ("alice)(objectClass=*", "secret"),
        ] {
            assert!(
                matches!(
                    dir.sign_in(user, password).await,
                    Err(SignInError::BadCredentials)
                ),
                "{user:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_directory_is_unavailable_not_a_bad_password() {
        let err = directory()
            .sign_in("alice", "secret")
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, SignInError::Unavailable(_)), "{err}");
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn the_bound_account_must_be_the_one_found() {
        let dn = "CN=alice,CN=Users,DC=daas,DC=test";
        assert_eq!(bound_is("u:DAAS\\alice", "alice", dn), Some(true));
        assert_eq!(bound_is("u:DAAS\\ALICE", "alice", dn), Some(true));
        assert_eq!(bound_is("u:DAAS\\mallory", "alice", dn), Some(false));
        assert_eq!(bound_is(&format!("dn:{dn}"), "alice", dn), Some(true));
        assert_eq!(
            bound_is("dn:CN=mallory,CN=Users,DC=daas,DC=test", "alice", dn),
            Some(false)
        );
        assert_eq!(bound_is("u:alice@daas.test", "alice", dn), None);
        assert_eq!(bound_is("", "alice", dn), None);
    }

    #[test]
    fn group_names_compare_as_ad_does() {
        let who = Identity {
            user: "alice".into(),
            groups: vec!["daas-users".into()],
        };
        assert!(who.is_in("DAAS-Users"));
        assert!(!who.is_in("daas-admins"));
    }
}
