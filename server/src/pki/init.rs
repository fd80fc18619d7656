//! What the `daas-server pki` commands and the dev mode make in a PKI
//! directory: `pki init` (the root CA, the agents' CA, the server's
//! certificate), `pki issue` (a user's certificate, signed with the root's
//! key wherever it is kept) and `tls.dev_pki` (whatever is missing, for
//! localhost).

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use super::{
    PkiError,
    disk::{Pair, PkiPaths, create_private_dir, pair_state, refuse_existing, write_ca, write_pair},
    identity::check_user,
    issuing::{Ca, Validity},
};

/// Subject CN of the CA `init` and `ensure_dev` create.
const CA_CN: &str = "DaaS CA";

/// Subject CN of the intermediate CA that signs agent certificates alone.
const AGENTS_CA_CN: &str = "DaaS agents CA";

/// Validity of the CA `init` and `ensure_dev` create.
const CA_DAYS: u32 = 3650;

/// Validity of the server certificate `ensure_dev` creates.
const DEV_SERVER_DAYS: u32 = 825;

/// Validity of the user certificate `ensure_dev` creates.
const DEV_USER_DAYS: u32 = 365;

/// The names of the dev server certificate, and of `pki init`'s when
/// given none: `localhost`, `127.0.0.1` and `::1`.
pub fn localhost_names() -> (Vec<String>, Vec<IpAddr>) {
    (
        vec!["localhost".to_string()],
        vec![
            IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ],
    )
}

/// Creates a root CA (10 years), the agents' intermediate CA under it (10
/// years) and a server certificate (`days`) for `dns` and `ips` in `dir`;
/// the root's key goes to `offline_root` when given (a folder to keep
/// away from the server), else beside the CA. Refuses when any of those
/// files exists. Returns the PKI's paths and where the root key is.
pub fn init(
    dir: &Path,
    dns: &[String],
    ips: &[IpAddr],
    days: u32,
    offline_root: Option<&Path>,
) -> Result<(PkiPaths, PathBuf), PkiError> {
    let paths = PkiPaths::new(dir);
    let root_key = match offline_root {
        Some(folder) => folder.join("ca-key.pem"),
        None => paths.ca_key(),
    };
    refuse_existing(&[
        paths.ca(),
        paths.ca_key(),
        root_key.clone(),
        paths.agents_ca(),
        paths.agents_ca_key(),
        paths.server_cert(),
        paths.server_key(),
    ])?;
    let ca = Ca::generate(CA_CN, &Validity::days(CA_DAYS))?;
    let agents = ca.issue_intermediate(AGENTS_CA_CN, &Validity::days(CA_DAYS))?;
    let server = ca.issue_server(dns, ips, &Validity::days(days))?;
    create_private_dir(dir)?;
    if let Some(folder) = offline_root {
        create_private_dir(folder)?;
    }
    write_ca(&ca, &paths.ca(), &root_key)?;
    write_ca(&agents, &paths.agents_ca(), &paths.agents_ca_key())?;
    write_pair(&server, &paths.server_cert(), &paths.server_key())?;
    Ok((paths, root_key))
}

/// Issues a certificate for user `name` with the root CA in `dir` (its key
/// `ca_key`, by default beside it); writes `users/NAME.pem` and
/// `users/NAME-key.pem` (neither may exist) and returns their paths.
pub fn issue_user_files(
    dir: &Path,
    name: &str,
    admin: bool,
    groups: &[String],
    days: u32,
    ca_key: Option<&Path>,
) -> Result<(PathBuf, PathBuf), PkiError> {
    check_user(name)?;
    let paths = PkiPaths::new(dir);
    if !paths.ca().exists() {
        return Err(PkiError::NoCa { path: paths.ca() });
    }
    let key = ca_key.map_or_else(|| paths.ca_key(), Path::to_path_buf);
    if !key.exists() {
        return Err(PkiError::OfflineRoot { path: key });
    }
    let ca = Ca::load(&paths.ca(), &key)?;
    let (cert, key) = (paths.user_cert(name), paths.user_key(name));
    refuse_existing(&[cert.clone(), key.clone()])?;
    let issued = ca.issue_user(name, admin, groups, &Validity::days(days))?;
    create_private_dir(&paths.users())?;
    write_pair(&issued, &cert, &key)?;
    Ok((cert, key))
}

/// Dev mode: creates what is missing in `dir` (CA + server cert for
/// localhost, 127.0.0.1, ::1; and a user certificate for `user`, admin),
/// leaves existing files alone. Returns true when it created something.
pub fn ensure_dev(dir: &Path, user: &str) -> Result<bool, PkiError> {
    check_user(user)?;
    let paths = PkiPaths::new(dir);
    let server = pair_state(&paths.server_cert(), &paths.server_key())?;
    let client = pair_state(&paths.user_cert(user), &paths.user_key(user))?;
    let mut created = false;
    let ca = match pair_state(&paths.ca(), &paths.ca_key())? {
        Pair::Present => Ca::load(&paths.ca(), &paths.ca_key())?,
        Pair::Missing => {
            // Certificates without the CA that signed them are useless.
            for (cert, state) in [
                (paths.server_cert(), &server),
                (paths.user_cert(user), &client),
            ] {
                if matches!(state, Pair::Present) {
                    return Err(PkiError::Incomplete {
                        present: cert,
                        missing: paths.ca(),
                    });
                }
            }
            let ca = Ca::generate(CA_CN, &Validity::days(CA_DAYS))?;
            let agents = ca.issue_intermediate(AGENTS_CA_CN, &Validity::days(CA_DAYS))?;
            create_private_dir(dir)?;
            write_ca(&ca, &paths.ca(), &paths.ca_key())?;
            write_ca(&agents, &paths.agents_ca(), &paths.agents_ca_key())?;
            created = true;
            ca
        }
    };
    if let Pair::Missing = server {
        let (dns, ips) = localhost_names();
        let issued = ca.issue_server(&dns, &ips, &Validity::days(DEV_SERVER_DAYS))?;
        write_pair(&issued, &paths.server_cert(), &paths.server_key())?;
        created = true;
    }
    if let Pair::Missing = client {
        let issued = ca.issue_user(user, true, &[], &Validity::days(DEV_USER_DAYS))?;
        create_private_dir(&paths.users())?;
        write_pair(&issued, &paths.user_cert(user), &paths.user_key(user))?;
        created = true;
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identity::Caller;
    use crate::pki::{identity_of, pem_to_der};
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The subjectAltNames of a certificate (DER), as `ip:[127, 0, 0, 1]`.
    fn sans(der: &[u8]) -> Vec<String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        crate::pki::issuing::tests::sans(&cert)
    }

    #[test]
    fn init_writes_private_keys_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let (paths, _) = init(&dir, &["localhost".into()], &[], 10, None).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&paths.ca_key()), 0o600);
        assert_eq!(mode(&paths.server_key()), 0o600);
        assert!(paths.ca().exists() && paths.server_cert().exists());
        let ca_before = std::fs::read(paths.ca_key()).unwrap();

        let err = init(&dir, &["localhost".into()], &[], 10, None).unwrap_err();
        assert!(
            err.to_string().contains(&paths.ca().display().to_string()),
            "{err}"
        );
        assert_eq!(std::fs::read(paths.ca_key()).unwrap(), ca_before);

        let (cert, key) = issue_user_files(&dir, "alice", true, &[], 5, None).unwrap();
        assert_eq!(cert, paths.user_cert("alice"));
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&paths.users()), 0o700);
        let pem = std::fs::read_to_string(&cert).unwrap();
        assert_eq!(
            identity_of(&pem_to_der(&pem).unwrap()).unwrap(),
            Caller::User {
                name: "alice".into(),
                admin: true,
                groups: Vec::new()
            }
        );
        let err = issue_user_files(&dir, "alice", false, &[], 5, None).unwrap_err();
        assert!(matches!(err, PkiError::Exists { .. }), "{err}");
        let err = issue_user_files(&dir, "a/b", false, &[], 5, None).unwrap_err();
        assert!(err.to_string().contains("\"a/b\""), "{err}");

        // Without a CA there is nothing to issue with.
        let err =
            issue_user_files(&tmp.path().join("none"), "bob", false, &[], 5, None).unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }

    #[test]
    fn ensure_dev_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dev");
        assert!(ensure_dev(&dir, "dev").unwrap());
        let paths = PkiPaths::new(&dir);
        for key in [paths.ca_key(), paths.server_key(), paths.user_key("dev")] {
            assert_eq!(mode(&key), 0o600, "{}", key.display());
        }
        let before = std::fs::read(paths.ca_key()).unwrap();
        assert!(!ensure_dev(&dir, "dev").unwrap());
        assert_eq!(std::fs::read(paths.ca_key()).unwrap(), before);

        let pem = std::fs::read_to_string(paths.user_cert("dev")).unwrap();
        assert_eq!(
            identity_of(&pem_to_der(&pem).unwrap()).unwrap(),
            Caller::User {
                name: "dev".into(),
                admin: true,
                groups: Vec::new()
            }
        );
        let pem = std::fs::read_to_string(paths.server_cert()).unwrap();
        assert_eq!(
            sans(&pem_to_der(&pem).unwrap()),
            vec![
                "dns:localhost".to_string(),
                "ip:[127, 0, 0, 1]".into(),
                format!("ip:{:?}", std::net::Ipv6Addr::LOCALHOST.octets()),
            ]
        );

        // A missing user certificate is added with the existing CA.
        std::fs::remove_file(paths.user_cert("dev")).unwrap();
        std::fs::remove_file(paths.user_key("dev")).unwrap();
        assert!(ensure_dev(&dir, "dev").unwrap());
        assert_eq!(std::fs::read(paths.ca_key()).unwrap(), before);

        // Half a pair is an error naming both files.
        std::fs::remove_file(paths.server_key()).unwrap();
        let err = ensure_dev(&dir, "dev").unwrap_err().to_string();
        assert!(
            err.contains("server.pem") && err.contains("server-key.pem"),
            "{err}"
        );
    }
}
