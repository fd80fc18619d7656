//! How the user names each setting: the config file's keys, and for each
//! TLS file its description, command-line option, environment variable and
//! config key. A leaf, so that `settings` (which reads the values under
//! these names) and `error` (whose messages say where to set a missing file)
//! both take the names from here rather than from each other.

/// The config file's keys.
pub const CONFIG_KEYS: [&str; 4] = ["endpoint", "ca", "cert", "key"];

/// One of the three files mutual TLS needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// The CA certificate the server's certificate is checked with.
    Ca,
    /// The client's certificate.
    Cert,
    /// The client certificate's private key.
    Key,
}

impl TlsFile {
    /// What the file is, for messages: `CA certificate`.
    pub fn what(self) -> &'static str {
        match self {
            TlsFile::Ca => "CA certificate",
            TlsFile::Cert => "client certificate",
            TlsFile::Key => "client private key",
        }
    }

    /// The command-line option: `--ca`.
    pub fn flag(self) -> &'static str {
        match self {
            TlsFile::Ca => "--ca",
            TlsFile::Cert => "--cert",
            TlsFile::Key => "--key",
        }
    }

    /// The environment variable: `DAAS_CA`.
    pub fn env(self) -> &'static str {
        match self {
            TlsFile::Ca => "DAAS_CA",
            TlsFile::Cert => "DAAS_CERT",
            TlsFile::Key => "DAAS_KEY",
        }
    }

    /// The config file's key: `ca`.
    pub fn key(self) -> &'static str {
        match self {
            TlsFile::Ca => "ca",
            TlsFile::Cert => "cert",
            TlsFile::Key => "key",
        }
    }

    /// What its PEM block holds: `certificate` or `private key`.
    pub fn pem_kind(self) -> &'static str {
        match self {
            TlsFile::Ca | TlsFile::Cert => "certificate",
            TlsFile::Key => "private key",
        }
    }
}
