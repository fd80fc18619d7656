//! A session user's password as the desktop stores it: a SHA-512 crypt
//! hash (`$6$SALT$HASH`, what `/etc/shadow` holds), made by the server as
//! soon as a create is accepted. The password itself never goes further:
//! no tool, file or log sees it, and whatever characters a user chose
//! (`{{`, quotes, backslashes) are only ever input to the hash.

use std::fmt;

use rand::Rng;
use sha_crypt::{ROUNDS_DEFAULT, Sha512Params, sha512_crypt_b64};

/// The salt alphabet of crypt(3).
const SALT_CHARS: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// The longest salt SHA-crypt uses.
const SALT_LEN: usize = 16;
const PREFIX: &str = "$6$";

/// A SHA-512 crypt hash, or nothing (no session user). Its `Debug` does not
/// show it: a hash is still something to crack.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PasswordHash(String);

#[derive(Debug, thiserror::Error)]
#[error("cannot hash the session password: {0}")]
pub struct HashError(String);

impl PasswordHash {
    /// No password: the session has no local login.
    pub fn none() -> PasswordHash {
        PasswordHash(String::new())
    }

    /// Hashes `password` with a new random salt and glibc's default rounds
    /// (5,000, as `chpasswd` and `mkpasswd -m sha-512` do); an empty
    /// password gives [`PasswordHash::none`].
    pub fn of(password: &str) -> Result<PasswordHash, HashError> {
        if password.is_empty() {
            return Ok(PasswordHash::none());
        }
        let mut rng = rand::rng();
        let salt: String = (0..SALT_LEN)
            .map(|_| char::from(SALT_CHARS[rng.random_range(0..SALT_CHARS.len())]))
            .collect();
        let hash = crypt(password, &salt)?;
        Ok(PasswordHash(format!("{PREFIX}{salt}${hash}")))
    }

    /// A hash read back (from a desktop's `/etc/shadow`, say); `None` if
    /// it is not a SHA-512 crypt hash.
    pub fn from_crypt(text: &str) -> Option<PasswordHash> {
        let rest = text.strip_prefix(PREFIX)?;
        let (salt, hash) = rest.split_once('$')?;
        let crypt_chars = |s: &str| s.bytes().all(|b| SALT_CHARS.contains(&b));
        (!salt.is_empty() && salt.len() <= SALT_LEN && crypt_chars(salt) && crypt_chars(hash))
            .then(|| PasswordHash(text.to_string()))
    }

    /// The hash, for the playbook (`$6$...`), or "" when there is none.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_none(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `password` is the one hashed (as `login` would check it).
    pub fn verifies(&self, password: &str) -> bool {
        let Some(rest) = self.0.strip_prefix(PREFIX) else {
            return false;
        };
        let Some((salt, hash)) = rest.split_once('$') else {
            return false;
        };
        match crypt(password, salt) {
            Ok(again) => constant_time_eq(again.as_bytes(), hash.as_bytes()),
            Err(_) => false,
        }
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            f.write_str("PasswordHash(none)")
        } else {
            f.write_str("PasswordHash($6$...)")
        }
    }
}

fn crypt(password: &str, salt: &str) -> Result<String, HashError> {
    let params = Sha512Params::new(ROUNDS_DEFAULT).map_err(|e| HashError(format!("{e:?}")))?;
    sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
        .map_err(|e| HashError(format!("{e:?}")))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_never_show_the_password() {
        for password in [
            "correct horse",
            "{{ lookup('pipe', 'id') }}",
            "{% raw %}\"'\\ $6$ é 😀",
        ] {
            let hash = PasswordHash::of(password).unwrap();
            let text = hash.expose();
            assert!(text.starts_with("$6$"), "{text}");
            assert!(!text.contains(password));
            // Only crypt's alphabet: nothing a template or a shell reads.
            assert!(
                text.bytes().all(|b| b == b'$' || SALT_CHARS.contains(&b)),
                "{text}"
            );
            assert!(hash.verifies(password));
            assert!(!hash.verifies("wrong password"));
            assert!(!format!("{hash:?}").contains(&text[3..]));
        }
        let a = PasswordHash::of("same password").unwrap();
        let b = PasswordHash::of("same password").unwrap();
        assert_ne!(a, b, "a new salt each time");
        assert!(PasswordHash::of("").unwrap().is_none());
    }

    #[test]
    fn matches_glibc() {
        // The first test vector of Drepper's specification (glibc's).
        let known = PasswordHash(
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
                .into(),
        );
        assert!(known.verifies("Hello world!"));
        assert!(!known.verifies("Hello world"));
        assert!(!PasswordHash("$5$x$y".into()).verifies("x"));
        assert_eq!(PasswordHash::from_crypt(known.expose()), Some(known));
        assert_eq!(PasswordHash::from_crypt("$5$x$y"), None);
        assert_eq!(PasswordHash::from_crypt("$6$a b$y"), None);
    }
}
