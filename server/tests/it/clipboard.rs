//! The template's clipboard policy on a relay's two directions
//! (`web::clipboard`), fed the PDUs a web client and xrdp send.

use daas_server::domain::catalog::Clipboard;
use daas_server::web::clipboard::{Filter, filters};
use ironrdp_core::decode;
use ironrdp_pdu::find_size;
use ironrdp_pdu::mcs::{SendDataIndication, SendDataRequest};
use ironrdp_pdu::x224::X224;

use crate::fake_xrdp::pdus::*;

const RDPDR: u16 = 1004;
const CLIP: u16 = 1005;

/// Filters of a connection set up with channels rdpdr and cliprdr.
fn connected(policy: Clipboard) -> (Filter, Filter) {
    let (mut up, mut down) = filters(policy);
    let initial = connect_initial(&["rdpdr", "CLIPRDR"]);
    assert_eq!(up.feed(&initial).unwrap(), initial);
    let response = connect_response(&[RDPDR, CLIP]);
    assert_eq!(down.feed(&response).unwrap(), response);
    (up, down)
}

/// The CLIPRDR message a frame carries on the clipboard channel, whole.
fn message_of(frame: &[u8], from_browser: bool) -> Vec<u8> {
    let (channel, data) = if from_browser {
        let pdu = decode::<X224<SendDataRequest<'_>>>(frame).unwrap().0;
        (pdu.channel_id, pdu.user_data.to_vec())
    } else {
        let pdu = decode::<X224<SendDataIndication<'_>>>(frame).unwrap().0;
        (pdu.channel_id, pdu.user_data.to_vec())
    };
    assert_eq!(channel, CLIP);
    let flags = u32::from_le_bytes(data[4..8].try_into().unwrap());
    assert_eq!(flags & WHOLE, WHOLE, "one chunk");
    data[8..].to_vec()
}

#[test]
fn clipboard_both_ways_reads_nothing() {
    let (mut up, mut down) = filters(Clipboard::Both);
    assert_eq!(up.feed(&[0xFF; 10]).unwrap(), [0xFF; 10]);
    let data = from_desktop(CLIP, &chunk(WHOLE, 30, &text_data("secret")));
    assert_eq!(down.feed(&data).unwrap(), data);
}

#[test]
fn clipboard_to_desktop_only_keeps_the_desktops_clipboard_in() {
    let (mut up, mut down) = connected(Clipboard::ToDesktop);
    // The desktop offers text: the browser sees an empty list.
    let offer = from_desktop(CLIP, &chunk(WHOLE, 14, &format_list()));
    let out = down.feed(&offer).unwrap();
    assert_eq!(message_of(&out, false), cliprdr(CB_FORMAT_LIST, 0, &[]));
    // Asked anyway (a changed page), the desktop's text becomes a failure.
    let data = text_data("secret from the desktop");
    let answer = from_desktop(CLIP, &chunk(WHOLE, data.len(), &data));
    let out = down.feed(&answer).unwrap();
    assert_eq!(
        message_of(&out, false),
        cliprdr(CB_FORMAT_DATA_RESPONSE, CB_RESPONSE_FAIL, &[])
    );
    // The browser's own offer and text pass untouched.
    let offer = from_browser(CLIP, &chunk(WHOLE, 14, &format_list()));
    assert_eq!(up.feed(&offer).unwrap(), offer);
    let data = text_data("from the page");
    let answer = from_browser(CLIP, &chunk(WHOLE, data.len(), &data));
    assert_eq!(up.feed(&answer).unwrap(), answer);
    // Other channels, messages without content and fast-path pass.
    let other = from_desktop(RDPDR, &chunk(WHOLE, 30, &text_data("rdpdr")));
    assert_eq!(down.feed(&other).unwrap(), other);
    let request = cliprdr(CB_FORMAT_DATA_REQUEST, 0, &[13, 0, 0, 0]);
    let request = from_desktop(CLIP, &chunk(WHOLE, request.len(), &request));
    assert_eq!(down.feed(&request).unwrap(), request);
    let screen = fast_path(8);
    assert_eq!(down.feed(&screen).unwrap(), screen);
}

#[test]
fn clipboard_off_closes_both_ways_and_drops_the_rest_of_a_long_message() {
    let (mut up, mut down) = connected(Clipboard::Off);
    let data = text_data("from the page");
    let answer = from_browser(CLIP, &chunk(WHOLE, data.len(), &data));
    let out = up.feed(&answer).unwrap();
    assert_eq!(
        message_of(&out, true),
        cliprdr(CB_FORMAT_DATA_RESPONSE, CB_RESPONSE_FAIL, &[])
    );
    // A long answer in three chunks: one failure, the rest dropped; then
    // the next message is read again.
    let data = text_data(&"x".repeat(100));
    let (a, rest) = data.split_at(40);
    let (b, c) = rest.split_at(80);
    let mut stream = from_desktop(CLIP, &chunk(FIRST, data.len(), a));
    stream.extend(from_desktop(CLIP, &chunk(0, data.len(), b)));
    stream.extend(from_desktop(CLIP, &chunk(LAST, data.len(), c)));
    stream.extend(from_desktop(CLIP, &chunk(WHOLE, 14, &format_list())));
    let out = down.feed(&stream).unwrap();
    assert_eq!(
        message_of(&out, false),
        cliprdr(CB_FORMAT_DATA_RESPONSE, CB_RESPONSE_FAIL, &[])
    );
    let first = find_size(&out).unwrap().unwrap().length;
    assert_eq!(
        message_of(&out[first..], false),
        cliprdr(CB_FORMAT_LIST, 0, &[])
    );
    assert_eq!(out.len(), first * 2, "nothing else came through");
    // A compressed chunk, or one that starts no message, is dropped.
    let compressed = from_desktop(CLIP, &chunk(WHOLE | COMPRESSED, 14, &format_list()));
    assert!(down.feed(&compressed).unwrap().is_empty());
    let orphan = from_browser(CLIP, &chunk(LAST, 40, &text_data("tail")));
    assert!(up.feed(&orphan).unwrap().is_empty());
}

#[test]
fn clipboard_frames_split_over_reads_are_held_until_whole() {
    let (_up, mut down) = connected(Clipboard::FromDesktop);
    let data = text_data("kept whole");
    let frame = from_desktop(CLIP, &chunk(WHOLE, data.len(), &data));
    let mut out = Vec::new();
    for piece in frame.chunks(3) {
        out.extend(down.feed(piece).unwrap());
    }
    assert_eq!(out, frame, "from the desktop is open under from-desktop");
}

#[test]
fn clipboard_a_stream_it_cannot_read_ends_the_relay() {
    let (mut up, _down) = filters(Clipboard::Off);
    let error = up.feed(&[0xFF; 40]).unwrap_err();
    assert!(error.to_string().contains("browser"), "{error}");
    // Anything but a Connect Initial first.
    let (mut up, _down) = filters(Clipboard::ToDesktop);
    let offer = from_browser(CLIP, &chunk(WHOLE, 14, &format_list()));
    assert!(up.feed(&offer).is_err());
    // The desktop before the browser said which channels.
    let (_up, mut down) = filters(Clipboard::ToDesktop);
    assert!(down.feed(&connect_response(&[CLIP])).is_err());
    // Fewer ids than channels.
    let (mut up, mut down) = filters(Clipboard::Off);
    up.feed(&connect_initial(&["rdpdr", "cliprdr"])).unwrap();
    assert!(down.feed(&connect_response(&[RDPDR])).is_err());
}

#[test]
fn clipboard_a_connection_without_the_channel_passes() {
    let (mut up, mut down) = filters(Clipboard::Off);
    up.feed(&connect_initial(&["rdpdr"])).unwrap();
    down.feed(&connect_response(&[RDPDR])).unwrap();
    let data = from_desktop(CLIP, &chunk(WHOLE, 30, &text_data("no such channel")));
    assert_eq!(down.feed(&data).unwrap(), data);
}
