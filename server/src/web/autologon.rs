//! Sign in once (`web.pass_through_credentials`): the gateway holds the
//! RDP stream in clear after its own TLS leg toward xrdp, so it can give
//! xrdp the password the user signed in to the portal with. The web client
//! sends its Client Info PDU without credentials and without
//! `INFO_AUTOLOGON`, so xrdp would ask for the password again; the
//! rewriter puts the user, the password and the flag in that one PDU and
//! passes everything else through untouched. A stream it cannot read is
//! passed through as it came (xrdp then asks, as without the option).

use std::{borrow::Cow, fmt};

use ironrdp_core::{decode, encode_vec};
use ironrdp_pdu::{
    Action, find_size,
    mcs::SendDataRequest,
    rdp::{ClientInfoPdu, client_info::ClientInfoFlags},
    x224::X224,
};
use zeroize::{Zeroize as _, Zeroizing};

/// The browser's bytes held back at most while looking for the Client Info
/// PDU (it comes after a few hundred bytes of MCS connection setup).
const MAX_PENDING: usize = 64 * 1024;

/// Who xrdp logs in, and with what password.
#[derive(Clone, PartialEq, Eq)]
pub struct Autologon {
    pub username: String,
    /// Empty: xrdp takes its first session type (or `autorun`) and SSSD
    /// the short name.
    pub domain: String,
    pub password: Zeroizing<String>,
}

impl fmt::Debug for Autologon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Autologon")
            .field("username", &self.username)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// The browser-to-desktop direction of one relay until its Client Info
/// PDU has passed.
pub struct Rewriter {
    autologon: Option<Autologon>,
    /// Bytes of a frame not whole yet.
    pending: Vec<u8>,
    /// Whether the rest passes through as it comes.
    done: bool,
    rewrote: bool,
}

impl Rewriter {
    /// A rewriter giving `autologon`; None: passes everything through.
    pub fn new(autologon: Option<Autologon>) -> Rewriter {
        Rewriter {
            done: autologon.is_none(),
            autologon,
            pending: Vec::new(),
            rewrote: false,
        }
    }

    /// Whether the Client Info PDU was given the credentials.
    pub fn rewrote(&self) -> bool {
        self.rewrote
    }

    /// What to send on for `data` from the browser: the frames that are
    /// whole, the Client Info PDU rewritten; a frame not whole yet is held
    /// until the next call.
    pub fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        if self.done {
            return data.to_vec();
        }
        self.pending.extend_from_slice(data);
        let mut out = Vec::with_capacity(self.pending.len());
        let mut start = 0;
        while !self.done {
            let rest = &self.pending[start..];
            match find_size(rest) {
                // Nothing left to look at.
                Ok(_) if rest.is_empty() => break,
                // Not RDP as expected: pass it all on.
                Ok(Some(info)) if info.length == 0 => self.done = true,
                Ok(Some(info)) if rest.len() >= info.length => {
                    let frame = &rest[..info.length];
                    match self.rewritten(info.action, frame) {
                        Some(mut new) => {
                            out.extend_from_slice(&new);
                            new.zeroize();
                            self.rewrote = true;
                            self.done = true;
                        }
                        None => out.extend_from_slice(frame),
                    }
                    start += info.length;
                }
                // Not whole yet: wait for more, within bounds.
                Ok(_) if rest.len() <= MAX_PENDING => break,
                // Too much held back, or unreadable: pass it all on.
                _ => self.done = true,
            }
        }
        if self.done {
            out.extend_from_slice(&self.pending[start..]);
            self.pending.zeroize();
            self.pending = Vec::new();
            self.autologon = None;
        } else {
            self.pending.drain(..start);
        }
        out
    }

    /// `frame` with the credentials when it is the Client Info PDU.
    fn rewritten(&self, action: Action, frame: &[u8]) -> Option<Vec<u8>> {
        let autologon = self.autologon.as_ref()?;
        if action != Action::X224 {
            return None;
        }
        let request = decode::<X224<SendDataRequest<'_>>>(frame).ok()?.0;
        let mut pdu = decode::<ClientInfoPdu>(&request.user_data).ok()?;
        let info = &mut pdu.client_info;
        info.credentials.username.clone_from(&autologon.username);
        info.credentials.domain = Some(autologon.domain.clone());
        info.credentials.password.clone_from(&autologon.password);
        info.password_cookie = None;
        info.flags |= ClientInfoFlags::AUTOLOGON;
        let user_data = encode_vec(&pdu).map(Zeroizing::new);
        pdu.client_info.credentials.password.zeroize();
        let out = encode_vec(&X224(SendDataRequest {
            initiator_id: request.initiator_id,
            channel_id: request.channel_id,
            user_data: Cow::Borrowed(user_data.ok()?.as_slice()),
        }));
        out.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_pdu::rdp::{
        client_info::{
            AddressFamily, ClientInfo, CompressionType, Credentials, ExtendedClientInfo,
            ExtendedClientOptionalInfo,
        },
        headers::{BasicSecurityHeader, BasicSecurityHeaderFlags},
    };

    /// The Client Info PDU as the web client sends it: no password, no
    /// INFO_AUTOLOGON, on the I/O channel.
    fn web_client_info() -> Vec<u8> {
        let pdu = ClientInfoPdu {
            security_header: BasicSecurityHeader {
                flags: BasicSecurityHeaderFlags::INFO_PKT,
            },
            client_info: ClientInfo {
                credentials: Credentials {
                    username: "alice".into(),
                    password: String::new(),
                    domain: None,
                },
                password_cookie: None,
                code_page: 0,
                flags: ClientInfoFlags::UNICODE
                    | ClientInfoFlags::MOUSE
                    | ClientInfoFlags::DISABLE_CTRL_ALT_DEL,
                compression_type: CompressionType::K8,
                alternate_shell: String::new(),
                work_dir: String::new(),
                extra_info: ExtendedClientInfo {
                    address_family: AddressFamily::INET,
                    address: "127.0.0.1".into(),
                    dir: "C:\\".into(),
                    optional_data: ExtendedClientOptionalInfo::default(),
                },
            },
        };
        let mut buf = ironrdp_core::WriteBuf::new();
        ironrdp_pdu::mcs::encode_send_data_request(1007, 1003, &pdu, &mut buf).unwrap();
        buf.filled().to_vec()
    }

    /// An MCS Erect Domain Request (X.224 data), as sent before it.
    const ERECT_DOMAIN: [u8; 12] = [3, 0, 0, 12, 2, 0xF0, 0x80, 4, 1, 0, 1, 0];

    fn alice() -> Autologon {
        Autologon {
            username: "alice".into(),
            domain: String::new(),
            password: Zeroizing::new("Secr3t-Pa55".into()),
        }
    }

    fn credentials_of(frame: &[u8]) -> (Credentials, ClientInfoFlags, u16, u16) {
        let request = decode::<X224<SendDataRequest<'_>>>(frame).unwrap().0;
        let pdu = decode::<ClientInfoPdu>(&request.user_data).unwrap();
        (
            pdu.client_info.credentials,
            pdu.client_info.flags,
            request.initiator_id,
            request.channel_id,
        )
    }

    #[test]
    fn the_client_info_gets_the_password_and_autologon() {
        let mut rewriter = Rewriter::new(Some(alice()));
        let mut stream = ERECT_DOMAIN.to_vec();
        stream.extend(web_client_info());
        let out = rewriter.feed(&stream);
        assert!(rewriter.rewrote());
        assert_eq!(&out[..12], &ERECT_DOMAIN, "what comes before is untouched");
        let (credentials, flags, initiator, channel) = credentials_of(&out[12..]);
        assert_eq!(credentials.username, "alice");
        assert_eq!(credentials.password, "Secr3t-Pa55");
        assert_eq!(
            credentials.domain.unwrap_or_default(),
            "",
            "no domain: xrdp takes its default session type"
        );
        assert!(flags.contains(ClientInfoFlags::AUTOLOGON | ClientInfoFlags::UNICODE));
        assert_eq!((initiator, channel), (1007, 1003));
        // Then everything passes as it comes, however it looks.
        assert_eq!(rewriter.feed(&[0x44, 1, 2]), [0x44, 1, 2]);
        assert_eq!(rewriter.feed(&web_client_info()), web_client_info());
    }

    #[test]
    fn frames_split_over_messages_are_held_until_whole() {
        let mut rewriter = Rewriter::new(Some(alice()));
        let mut stream = ERECT_DOMAIN.to_vec();
        stream.extend(web_client_info());
        let mut out = Vec::new();
        for chunk in stream.chunks(5) {
            out.extend(rewriter.feed(chunk));
        }
        assert!(rewriter.rewrote());
        assert_eq!(credentials_of(&out[12..]).0.password, "Secr3t-Pa55");
    }

    #[test]
    fn without_the_option_or_on_a_stream_it_cannot_read_nothing_changes() {
        let mut off = Rewriter::new(None);
        assert_eq!(off.feed(&web_client_info()), web_client_info());
        assert!(!off.rewrote());

        // Not RDP (a TPKT version other than 3 reads as fast-path garbage).
        let mut rewriter = Rewriter::new(Some(alice()));
        let junk = [0xFFu8; 40];
        assert_eq!(rewriter.feed(&junk), junk);
        assert_eq!(rewriter.feed(&web_client_info()), web_client_info());
        assert!(!rewriter.rewrote());

        // A frame claiming more than is ever held.
        let mut rewriter = Rewriter::new(Some(alice()));
        let mut big = vec![3, 0, 0xFF, 0xFF];
        big.resize(1000, 0);
        let mut out = rewriter.feed(&big);
        for _ in 0..70 {
            out.extend(rewriter.feed(&[0u8; 1000]));
        }
        assert_eq!(out.len(), 71_000, "held, then passed on once too big");
        assert!(!rewriter.rewrote());
    }

    #[test]
    fn the_password_never_shows_in_debug() {
        assert!(!format!("{:?}", alice()).contains("Secr3t"));
    }
}
