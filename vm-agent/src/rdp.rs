//! RDP clients connected: established TCP connections whose local port is
//! xrdp's, counted from `/proc/net/tcp` and `/proc/net/tcp6` (an IPv4
//! client of a dual-stack listener shows in `tcp6` as `::ffff:a.b.c.d`).

use std::path::Path;

use crate::files::{LARGE_FILE, read_text_capped};

/// `st` of an established connection in `/proc/net/tcp*`.
const TCP_ESTABLISHED: u8 = 0x01;

/// Established connections to local port `port` in the `/proc/net/tcp`
/// and `/proc/net/tcp6` under `proc_root`; a missing or unreadable table
/// counts as none.
pub fn rdp_clients(proc_root: &Path, port: u16) -> u32 {
    ["net/tcp", "net/tcp6"]
        .iter()
        .filter_map(|table| read_text_capped(&proc_root.join(table), LARGE_FILE).ok())
        .map(|text| count_established(&text, port))
        .fold(0, u32::saturating_add)
}

/// Established connections to local port `port` in the text of one
/// `/proc/net/tcp` or `tcp6` table. The header and malformed lines are
/// skipped.
pub fn count_established(table: &str, port: u16) -> u32 {
    let count = table
        .lines()
        .filter_map(parse_line)
        .filter(|entry| entry.state == TCP_ESTABLISHED && entry.local_port == port)
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// The parts of one socket line the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub local_port: u16,
    pub remote_port: u16,
    pub state: u8,
}

/// Parses `"  3: 0F02000A:0D3D 0202000A:C3A2 01 …"`, or `None` for the
/// header or a malformed line.
pub fn parse_line(line: &str) -> Option<Entry> {
    let mut fields = line.split_whitespace();
    let slot = fields.next()?;
    slot.strip_suffix(':')?.parse::<u64>().ok()?;
    let (_, local_port) = parse_address(fields.next()?)?;
    let (_, remote_port) = parse_address(fields.next()?)?;
    let state = fields.next()?;
    if state.len() != 2 {
        return None;
    }
    let state = u8::from_str_radix(state, 16).ok()?;
    Some(Entry {
        local_port,
        remote_port,
        state,
    })
}

/// `"0F02000A:0D3D"` (IPv4: 8 hex digits; IPv6: 32) as address digits and
/// port.
fn parse_address(field: &str) -> Option<(&str, u16)> {
    let (address, port) = field.split_once(':')?;
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    if !matches!(address.len(), 8 | 32) || !hex(address) || port.len() != 4 || !hex(port) {
        return None;
    }
    Some((address, u16::from_str_radix(port, 16).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_parsed() {
        let line = "   3: 0F02000A:0D3D 0202000A:C3A2 01 00000000:00000000 02:000A7E1B 00000000     0        0 31337 2 0000000000000000 20 4 30 10 -1";
        assert_eq!(
            parse_line(line),
            Some(Entry {
                local_port: 3389,
                remote_port: 50082,
                state: 1
            })
        );
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
        assert_eq!(parse_line(header), None);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        for line in [
            "",
            "3:",
            "3: 0F02000A:0D3D",
            "3: 0F02000A:0D3D 0202000A:C3A2",
            "3: 0F02000A0D3D 0202000A:C3A2 01",
            "3: 0F02000A:0D3D 0202000A:C3A2 1",
            "3: 0F02000A:0D3D 0202000A:C3A2 ZZ",
            "3: 0F0200:0D3D 0202000A:C3A2 01",
            "3: 0F02000A:D3D 0202000A:C3A2 01",
            "x: 0F02000A:0D3D 0202000A:C3A2 01",
            "3: 0F02000A:+D3D 0202000A:C3A2 01",
            "3: 0F02000A:0D3D 0202000A:C3A2 01\u{0}",
        ] {
            assert_eq!(count_established(line, 3389), 0, "{line:?}");
        }
    }
}
