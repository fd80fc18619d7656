//! RDP PDUs as a browser's web client and xrdp send them, built with
//! ironrdp-pdu: the MCS connection that names the static channels, the
//! data on one channel, and CLIPRDR messages (MS-RDPECLIP). For the
//! clipboard policy's tests and the gateway's benchmark.

use std::borrow::Cow;

use ironrdp_core::encode_vec;
use ironrdp_pdu::gcc::{
    ChannelDef, ChannelName, ChannelOptions, ClientCoreData, ClientCoreOptionalData,
    ClientGccBlocks, ClientNetworkData, ClientSecurityData, ColorDepth, ConferenceCreateResponse,
    EncryptionLevel, EncryptionMethod, KeyboardType, RdpVersion, SecureAccessSequence,
    ServerCoreData, ServerCoreOptionalData, ServerGccBlocks, ServerNetworkData, ServerSecurityData,
};
use ironrdp_pdu::mcs::{
    ConnectInitial, ConnectResponse, DomainParameters, SendDataIndication, SendDataRequest,
};
use ironrdp_pdu::x224::{X224, X224Data};

/// CLIPRDR message types and flags.
pub const CB_FORMAT_LIST: u16 = 0x0002;
pub const CB_FORMAT_DATA_REQUEST: u16 = 0x0004;
pub const CB_FORMAT_DATA_RESPONSE: u16 = 0x0005;
pub const CB_RESPONSE_OK: u16 = 0x0001;
pub const CB_RESPONSE_FAIL: u16 = 0x0002;
/// Channel chunk flags: a whole message, its first and its last chunk, compressed.
pub const FIRST: u32 = 0x1;
pub const LAST: u32 = 0x2;
pub const WHOLE: u32 = FIRST | LAST;
pub const COMPRESSED: u32 = 0x0020_0000;

fn x224_data(payload: Vec<u8>) -> Vec<u8> {
    encode_vec(&X224(X224Data {
        data: Cow::Owned(payload),
    }))
    .expect("X.224 data")
}

/// The browser's MCS Connect Initial asking for these static channels.
pub fn connect_initial(channels: &[&str]) -> Vec<u8> {
    let blocks = ClientGccBlocks {
        core: ClientCoreData {
            version: RdpVersion::V5_PLUS,
            desktop_width: 1024,
            desktop_height: 768,
            color_depth: ColorDepth::Bpp8,
            sec_access_sequence: SecureAccessSequence::Del,
            keyboard_layout: 0,
            client_build: 0,
            client_name: "web".into(),
            keyboard_type: KeyboardType::IBM_ENHANCED,
            keyboard_subtype: 0,
            keyboard_functional_keys_count: 12,
            ime_file_name: String::new(),
            optional_data: ClientCoreOptionalData::default(),
        },
        security: ClientSecurityData {
            encryption_methods: EncryptionMethod::empty(),
            ext_encryption_methods: 0,
        },
        network: Some(ClientNetworkData {
            channels: channels
                .iter()
                .map(|name| ChannelDef {
                    name: ChannelName::from_utf8(name).expect("a channel name"),
                    options: ChannelOptions::INITIALIZED,
                })
                .collect(),
        }),
        cluster: None,
        monitor: None,
        message_channel: None,
        multi_transport_channel: None,
        monitor_extended: None,
    };
    let initial = ConnectInitial::with_gcc_blocks(blocks).expect("connect initial");
    x224_data(encode_vec(&initial).expect("encode"))
}

/// The desktop's MCS Connect Response giving these channel ids, in order.
pub fn connect_response(ids: &[u16]) -> Vec<u8> {
    let blocks = ServerGccBlocks {
        core: ServerCoreData {
            version: RdpVersion::V5_PLUS,
            optional_data: ServerCoreOptionalData::default(),
        },
        network: ServerNetworkData {
            channel_ids: ids.to_vec(),
            io_channel: 1003,
        },
        security: ServerSecurityData {
            encryption_method: EncryptionMethod::empty(),
            encryption_level: EncryptionLevel::None,
            server_random: None,
            server_cert: Vec::new(),
        },
        message_channel: None,
        multi_transport_channel: None,
    };
    let response = ConnectResponse {
        conference_create_response: ConferenceCreateResponse::new(1002, blocks)
            .expect("conference create response"),
        called_connect_id: 0,
        domain_parameters: DomainParameters::target(),
    };
    x224_data(encode_vec(&response).expect("encode"))
}

/// A channel chunk: its header (`total`, the whole message's length, and
/// `flags`), then `part` of the message.
pub fn chunk(flags: u32, total: usize, part: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(total)
        .expect("a length")
        .to_le_bytes()
        .to_vec();
    out.extend(flags.to_le_bytes());
    out.extend(part);
    out
}

/// `chunk` on channel `channel`, from the browser (MCS Send Data Request).
pub fn from_browser(channel: u16, chunk: &[u8]) -> Vec<u8> {
    encode_vec(&X224(SendDataRequest {
        initiator_id: 1007,
        channel_id: channel,
        user_data: Cow::Borrowed(chunk),
    }))
    .expect("encode")
}

/// `chunk` on channel `channel`, from the desktop (MCS Send Data Indication).
pub fn from_desktop(channel: u16, chunk: &[u8]) -> Vec<u8> {
    encode_vec(&X224(SendDataIndication {
        initiator_id: 1002,
        channel_id: channel,
        user_data: Cow::Borrowed(chunk),
    }))
    .expect("encode")
}

/// A CLIPRDR message: its header (type, flags, length), then `data`.
pub fn cliprdr(msg_type: u16, msg_flags: u16, data: &[u8]) -> Vec<u8> {
    let mut out = msg_type.to_le_bytes().to_vec();
    out.extend(msg_flags.to_le_bytes());
    out.extend(u32::try_from(data.len()).expect("a length").to_le_bytes());
    out.extend(data);
    out
}

/// A format list offering CF_UNICODETEXT (long format names).
pub fn format_list() -> Vec<u8> {
    cliprdr(CB_FORMAT_LIST, 0, &[13, 0, 0, 0, 0, 0])
}

/// A format data response carrying `text` (UTF-16).
pub fn text_data(text: &str) -> Vec<u8> {
    let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    cliprdr(CB_FORMAT_DATA_RESPONSE, CB_RESPONSE_OK, &utf16)
}

/// A fast-path output frame of `len` bytes in all (screen updates; 3 to 0x7FFF).
pub fn fast_path(len: usize) -> Vec<u8> {
    let len16 = u16::try_from(len).expect("a fast-path length");
    let mut out = vec![0x00, 0x80 | (len16 >> 8) as u8, (len16 & 0xFF) as u8];
    out.resize(len, 0x5A);
    out
}
