//! What a desktop's address may be (`Session.rdp_host`, the module's
//! `ssh_host` and `rdp_host` outputs): an IP address or a DNS name. The
//! server refuses a module output that is neither, and the CLI checks
//! again before it writes an address into a `.rdp` file or a command line,
//! so that no value can carry a line break, an option (`-oProxyCommand=`)
//! or a template into them.

use std::net::IpAddr;

/// The longest DNS name (RFC 1035), without a final dot.
const MAX_NAME: usize = 253;
/// The longest label of a DNS name.
const MAX_LABEL: usize = 63;

/// Checks that `value` is an IPv4 or IPv6 address (without brackets) or a
/// DNS name: labels of 1-63 ASCII letters, digits and '-' that neither
/// start nor end with '-', separated by dots, at most 253 characters.
/// The error says why, without repeating the value.
pub fn check_host(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is empty");
    }
    if value.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if value.len() > MAX_NAME {
        return Err("is longer than a DNS name may be (253 characters)");
    }
    for label in value.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL {
            return Err(
                "is neither an IP address nor a DNS name (a label is empty or over 63 characters)",
            );
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(
                "is neither an IP address nor a DNS name (only letters, digits, '-' and '.')",
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(
                "is neither an IP address nor a DNS name (a label starts or ends with '-')",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names_pass_the_rest_not() {
        for ok in [
            "127.0.0.1",
            "10.0.0.5",
            "fd00::5",
            "::1",
            "desktop-abc123",
            "pve1.ad.example.org",
            "a",
            "123",
        ] {
            assert_eq!(check_host(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-oProxyCommand=touch /tmp/x",
            "host\r\nusername:s:evil",
            "{{ lookup('pipe', 'id') }}",
            "127.0.0.1 ; id",
            "[::1]",
            "a..b",
            "a.",
            "under_score.example",
            "-lead.example",
            "trail-.example",
            "é.example",
        ] {
            assert!(check_host(bad).is_err(), "{bad:?}");
        }
        assert!(check_host(&"a".repeat(64)).is_err());
        assert!(check_host(&["a"; 128].join(".")).is_err());
        assert!(check_host(&["a"; 127].join(".")).is_ok());
    }
}
