//! A template's clipboard policy on the relayed RDP stream (`clipboard` in
//! `[templates.NAME]`): the page only asks the web client to leave the
//! clipboard off, and a page can be changed, so the gateway enforces the
//! policy on what crosses it.
//!
//! Copy and paste goes over the static virtual channel named `cliprdr`
//! (MS-RDPECLIP). Its channel id is the one the desktop's MCS Connect
//! Response gives at the place the browser's Connect Initial named it. In a
//! direction the policy closes, the messages that carry clipboard content
//! are replaced: a Format List by an empty one (nothing to paste), a Format
//! Data Response and a File Contents Response by a failure. The others
//! (capabilities, requests, locks) pass, so both ends stay in step. A
//! message split over several chunks, or compressed, is not read in a
//! closed direction: its chunks are dropped. A stream the gateway cannot
//! read while a direction is closed ends the relay (never passed unread).
//! With the policy "both" nothing is read.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use ironrdp_core::{decode, encode_vec};
use ironrdp_pdu::{
    Action, find_size,
    mcs::{ConnectInitial, ConnectResponse, SendDataIndication, SendDataRequest},
    rdp::vc::{ChannelControlFlags, ChannelPduHeader},
    x224::{X224, X224Data},
};

use crate::domain::catalog::Clipboard;

/// The name of the clipboard's static virtual channel (case does not matter).
const CLIPRDR: &str = "cliprdr";
/// Bytes of a frame held back at most until it is whole (an RDP frame is at
/// most 32 KiB for X.224 and 32 KiB for fast-path).
const MAX_PENDING: usize = 64 * 1024;

// CLIPRDR message types (MS-RDPECLIP 2.2.1) that carry clipboard content.
const CB_FORMAT_LIST: u16 = 0x0002;
const CB_FORMAT_DATA_RESPONSE: u16 = 0x0005;
const CB_FILECONTENTS_RESPONSE: u16 = 0x0009;
const CB_RESPONSE_FAIL: u16 = 0x0002;

// MCS domain PDU types (T.125), the first byte of X.224 data shifted right by 2.
const MCS_SEND_DATA_REQUEST: u8 = 25;
const MCS_SEND_DATA_INDICATION: u8 = 26;

/// Why the relay must end: the stream could not be checked against the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {side} sent RDP the gateway could not check against the clipboard policy: {what}")]
pub struct Unreadable {
    side: &'static str,
    what: String,
}

/// What both directions learn of the connection's channels.
#[derive(Debug, Default)]
struct Channels {
    /// Where the browser's Connect Initial named `cliprdr` (none: it asked
    /// for no clipboard).
    positions: Option<Vec<usize>>,
    /// The channel ids the desktop gave those.
    ids: Option<Vec<u16>>,
}

/// Whether `first`, the first data a browser sends (its MCS Connect
/// Initial, one X.224 frame), names the clipboard's channel; None when it
/// is not that.
pub fn asks_for_clipboard(first: &[u8]) -> Option<bool> {
    let data = decode::<X224<X224Data<'_>>>(first).ok()?.0.data;
    let initial = decode::<ConnectInitial>(&data).ok()?;
    let names = initial.channel_names().unwrap_or_default();
    Some(names.iter().any(|def| {
        def.name
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(CLIPRDR))
    }))
}

/// One direction of one relay.
pub struct Filter {
    from_browser: bool,
    /// Whether this direction may carry clipboard content.
    open: bool,
    channels: Arc<Mutex<Channels>>,
    /// The clipboard's channel ids, once both sides named them (taken from
    /// `channels` once, not at every frame).
    ids: Option<Vec<u16>>,
    /// Bytes of a frame not whole yet.
    pending: Vec<u8>,
    /// Dropping the rest of a message's chunks.
    skipping: bool,
    /// Whether anything is read at all (the policy closes some direction).
    reading: bool,
}

/// The two directions' filters of one relay under `policy`: (browser to
/// desktop, desktop to browser).
pub fn filters(policy: Clipboard) -> (Filter, Filter) {
    let channels = Arc::new(Mutex::new(Channels::default()));
    let reading = policy != Clipboard::Both;
    let filter = |from_browser: bool, open: bool| Filter {
        from_browser,
        open,
        channels: channels.clone(),
        ids: None,
        pending: Vec::new(),
        skipping: false,
        reading,
    };
    (
        filter(true, policy.to_desktop()),
        filter(false, policy.from_desktop()),
    )
}

impl Filter {
    fn side(&self) -> &'static str {
        if self.from_browser {
            "browser"
        } else {
            "desktop"
        }
    }

    fn unreadable(&self, what: impl Into<String>) -> Unreadable {
        Unreadable {
            side: self.side(),
            what: what.into(),
        }
    }

    /// What to send on for `data`: the whole frames, clipboard content
    /// replaced where the policy closes this direction; a frame not whole
    /// yet is held until the next call.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<u8>, Unreadable> {
        if !self.reading {
            return Ok(data.to_vec());
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(data);
        let mut out = Vec::with_capacity(pending.len());
        let mut start = 0;
        while let Some(rest) = pending.get(start..).filter(|rest| !rest.is_empty()) {
            match find_size(rest) {
                Ok(Some(info)) if info.length == 0 => {
                    return Err(self.unreadable("an empty frame"));
                }
                Ok(Some(info)) if rest.len() >= info.length => {
                    let frame = &rest[..info.length];
                    match self.frame(info.action, frame)? {
                        Some(Cow::Borrowed(same)) => out.extend_from_slice(same),
                        Some(Cow::Owned(new)) => out.extend_from_slice(&new),
                        None => {}
                    }
                    start += info.length;
                }
                Ok(_) if rest.len() <= MAX_PENDING => break,
                Ok(_) => return Err(self.unreadable("a frame too large")),
                Err(e) => return Err(self.unreadable(format!("not RDP ({e})"))),
            }
        }
        pending.drain(..start);
        self.pending = pending;
        Ok(out)
    }

    /// One whole frame: as it came, replaced, or dropped (None).
    fn frame<'f>(
        &mut self,
        action: Action,
        frame: &'f [u8],
    ) -> Result<Option<Cow<'f, [u8]>>, Unreadable> {
        if action != Action::X224 {
            // Fast-path: input events and screen updates, never a channel.
            return Ok(Some(Cow::Borrowed(frame)));
        }
        let data = decode::<X224<X224Data<'_>>>(frame)
            .map_err(|e| self.unreadable(format!("an X.224 frame ({e})")))?
            .0
            .data;
        if self.ids.is_none() {
            let mut channels = self
                .channels
                .lock()
                .map_err(|_| self.unreadable("a relay that failed"))?;
            if self.from_browser && channels.positions.is_none() {
                // The first data the browser sends is its MCS Connect Initial.
                let initial = decode::<ConnectInitial>(&data)
                    .map_err(|e| self.unreadable(format!("the MCS Connect Initial ({e})")))?;
                let names = initial.channel_names().unwrap_or_default();
                channels.positions = Some(
                    names
                        .iter()
                        .enumerate()
                        .filter(|(_, def)| {
                            def.name
                                .as_str()
                                .is_some_and(|n| n.eq_ignore_ascii_case(CLIPRDR))
                        })
                        .map(|(i, _)| i)
                        .collect(),
                );
                return Ok(Some(Cow::Borrowed(frame)));
            }
            if !self.from_browser && channels.ids.is_none() {
                let Some(positions) = channels.positions.clone() else {
                    return Err(self.unreadable("data before the browser's Connect Initial"));
                };
                let response = decode::<ConnectResponse>(&data)
                    .map_err(|e| self.unreadable(format!("the MCS Connect Response ({e})")))?;
                let ids = response.channel_ids();
                let mut clipboard = Vec::with_capacity(positions.len());
                for at in positions {
                    match ids.get(at) {
                        Some(id) => clipboard.push(*id),
                        None => return Err(self.unreadable("fewer channel ids than channels")),
                    }
                }
                channels.ids = Some(clipboard);
                return Ok(Some(Cow::Borrowed(frame)));
            }
            let Some(ids) = channels.ids.clone() else {
                return Err(self.unreadable("data before the channels are known"));
            };
            drop(channels);
            self.ids = Some(ids);
        }
        let ids = self.ids.as_deref().unwrap_or_default();
        if self.open || ids.is_empty() {
            return Ok(Some(Cow::Borrowed(frame)));
        }
        let kind = data.first().map(|b| b >> 2);
        let (initiator_id, channel_id, user_data) = match kind {
            Some(MCS_SEND_DATA_REQUEST) if self.from_browser => {
                let pdu = decode::<X224<SendDataRequest<'_>>>(frame)
                    .map_err(|e| self.unreadable(format!("an MCS Send Data Request ({e})")))?
                    .0;
                (pdu.initiator_id, pdu.channel_id, pdu.user_data)
            }
            Some(MCS_SEND_DATA_INDICATION) if !self.from_browser => {
                let pdu = decode::<X224<SendDataIndication<'_>>>(frame)
                    .map_err(|e| self.unreadable(format!("an MCS Send Data Indication ({e})")))?
                    .0;
                (pdu.initiator_id, pdu.channel_id, pdu.user_data)
            }
            Some(MCS_SEND_DATA_REQUEST | MCS_SEND_DATA_INDICATION) => {
                return Err(self.unreadable("MCS data in the wrong direction"));
            }
            // Channel joins, the disconnect ultimatum, ...: no channel data.
            _ => return Ok(Some(Cow::Borrowed(frame))),
        };
        if !self
            .ids
            .as_deref()
            .unwrap_or_default()
            .contains(&channel_id)
        {
            return Ok(Some(Cow::Borrowed(frame)));
        }
        let chunk = match self.closed_chunk(&user_data)? {
            Chunk::Pass => return Ok(Some(Cow::Borrowed(frame))),
            Chunk::Drop => return Ok(None),
            Chunk::Replace(chunk) => chunk,
        };
        let encoded = if self.from_browser {
            encode_vec(&X224(SendDataRequest {
                initiator_id,
                channel_id,
                user_data: Cow::Borrowed(&chunk),
            }))
        } else {
            encode_vec(&X224(SendDataIndication {
                initiator_id,
                channel_id,
                user_data: Cow::Borrowed(&chunk),
            }))
        };
        encoded
            .map(|bytes| Some(Cow::Owned(bytes)))
            .map_err(|e| self.unreadable(format!("a chunk re-encoded ({e})")))
    }

    /// What becomes of a chunk of the clipboard channel in a closed direction.
    fn closed_chunk(&mut self, chunk: &[u8]) -> Result<Chunk, Unreadable> {
        let header = decode::<ChannelPduHeader>(chunk)
            .map_err(|e| self.unreadable(format!("a channel chunk ({e})")))?;
        let flags = header.flags;
        let whole =
            flags.contains(ChannelControlFlags::FLAG_FIRST | ChannelControlFlags::FLAG_LAST);
        if !flags.contains(ChannelControlFlags::FLAG_FIRST) || self.skipping {
            // The rest of a message that was replaced or dropped, or a
            // chunk that starts none.
            self.skipping = !flags.contains(ChannelControlFlags::FLAG_LAST);
            return Ok(Chunk::Drop);
        }
        let message = chunk.get(8..).unwrap_or_default();
        let msg_type = message.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let replaced = match msg_type {
            _ if flags.contains(ChannelControlFlags::PACKET_COMPRESSED) => None,
            Some(CB_FORMAT_LIST) => Some(cliprdr(CB_FORMAT_LIST, 0, &[])),
            Some(CB_FORMAT_DATA_RESPONSE) => {
                Some(cliprdr(CB_FORMAT_DATA_RESPONSE, CB_RESPONSE_FAIL, &[]))
            }
            Some(CB_FILECONTENTS_RESPONSE) => {
                // Its stream id, so the receiver knows which request failed.
                let stream_id = message.get(8..12).unwrap_or(&[0; 4]);
                Some(cliprdr(
                    CB_FILECONTENTS_RESPONSE,
                    CB_RESPONSE_FAIL,
                    stream_id,
                ))
            }
            // Whole messages that carry no content pass.
            Some(_) if whole => return Ok(Chunk::Pass),
            _ => None,
        };
        self.skipping = !flags.contains(ChannelControlFlags::FLAG_LAST);
        Ok(replaced.map_or(Chunk::Drop, |message| {
            let mut out = Vec::with_capacity(8 + message.len());
            let kept = flags & ChannelControlFlags::FLAG_SHOW_PROTOCOL;
            out.extend_from_slice(&u32::try_from(message.len()).unwrap_or(0).to_le_bytes());
            out.extend_from_slice(
                &(ChannelControlFlags::FLAG_FIRST | ChannelControlFlags::FLAG_LAST | kept)
                    .bits()
                    .to_le_bytes(),
            );
            out.extend_from_slice(&message);
            Chunk::Replace(out)
        }))
    }
}

/// What becomes of a chunk of the clipboard channel.
enum Chunk {
    Pass,
    Drop,
    Replace(Vec<u8>),
}

/// A CLIPRDR message: its header (type, flags, length) and `data`.
fn cliprdr(msg_type: u16, msg_flags: u16, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&msg_type.to_le_bytes());
    out.extend_from_slice(&msg_flags.to_le_bytes());
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(data);
    out
}
