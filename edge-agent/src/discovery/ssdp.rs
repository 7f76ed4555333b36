//! Bambu Lab printers' SSDP announcements, sans-IO: a printer multicasts `NOTIFY * HTTP/1.1`
//! to `239.255.255.250` on UDP 2021 about once a minute (`docs/printer-protocols.md` §3.2),
//! with its serial in `USN`, its address in `Location` and the rest in `Dev*.bambu.com`
//! headers. Only announcements with Bambu's `NT` are taken; anything else on the port is
//! someone else's or garbage, and is ignored.

use std::net::IpAddr;

use serde::Serialize;

/// Bambu's device type in `NT`.
pub const BAMBU_NT: &str = "urn:bambulab-com:device:3dprinter:1";
/// The multicast group and the ports Bambu printers announce on.
pub const GROUP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(239, 255, 255, 250);
pub const PORTS: [u16; 2] = [2021, 1990];
/// The largest datagram read; announcements are well under 1 KiB.
pub const MAX_DATAGRAM: usize = 4096;

/// One printer's announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BambuAnnouncement {
    pub serial: String,
    /// The model code (`C12`, `N2S`, `BL-P001`, …), as the printer names it.
    pub model: Option<String>,
    pub name: Option<String>,
    pub address: IpAddr,
    /// `lan` (LAN-only mode) or `cloud`.
    pub connection: Option<String>,
    /// `free` or `occupied` (bound to a Bambu account).
    pub bind: Option<String>,
    pub firmware: Option<String>,
    pub signal_dbm: Option<i32>,
    /// `ssdp:alive` or `ssdp:byebye`.
    pub alive: bool,
}

/// Reads one datagram; `None` unless it is a Bambu printer's announcement. `from` is the
/// sender, used when `Location` is missing or not an address.
pub fn parse(datagram: &[u8], from: IpAddr) -> Option<BambuAnnouncement> {
    let text = std::str::from_utf8(datagram.get(..MAX_DATAGRAM.min(datagram.len()))?).ok()?;
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let start = lines.next()?.trim();
    // Printers send NOTIFY; some firmware answers an M-SEARCH with HTTP/1.1 200 OK.
    if !(start.eq_ignore_ascii_case("NOTIFY * HTTP/1.1") || start.starts_with("HTTP/1.1 200")) {
        return None;
    }
    let header = |wanted: &str| -> Option<String> {
        text.split("\r\n").flat_map(|l| l.split('\n')).skip(1).find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case(wanted).then(|| value.trim().to_owned())
        })
    };
    let nt = header("NT").or_else(|| header("ST"))?;
    if !nt.eq_ignore_ascii_case(BAMBU_NT) {
        return None;
    }
    let serial = header("USN")?;
    let serial = serial.strip_prefix("uuid:").unwrap_or(&serial).trim().to_owned();
    let valid = !serial.is_empty()
        && serial.len() <= 64
        && serial.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return None;
    }
    let address = header("Location")
        .and_then(|location| {
            let host = location.trim_start_matches("http://").split(['/', ':']).next()?.to_owned();
            host.parse::<IpAddr>().ok()
        })
        .unwrap_or(from);
    let nonempty = |value: Option<String>| value.filter(|v| !v.is_empty() && v.len() <= 128);
    Some(BambuAnnouncement {
        serial,
        model: nonempty(header("DevModel.bambu.com")),
        name: nonempty(header("DevName.bambu.com")),
        address,
        connection: nonempty(header("DevConnect.bambu.com")),
        bind: nonempty(header("DevBind.bambu.com")),
        firmware: nonempty(header("DevVersion.bambu.com")),
        signal_dbm: header("DevSignal.bambu.com").and_then(|s| s.parse().ok()),
        alive: !header("NTS").is_some_and(|nts| nts.eq_ignore_ascii_case("ssdp:byebye")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const P1S: &str = "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1990\r\nServer: UPnP/1.0\r\n\
        Location: 192.168.1.50\r\nNT: urn:bambulab-com:device:3dprinter:1\r\nNTS: ssdp:alive\r\n\
        USN: 01P00A391800001\r\nCache-Control: max-age=1800\r\nDevModel.bambu.com: C12\r\n\
        DevName.bambu.com: P1S by the window\r\nDevSignal.bambu.com: -44\r\n\
        DevConnect.bambu.com: lan\r\nDevBind.bambu.com: free\r\n\
        Devseclink.bambu.com: secure\r\nDevVersion.bambu.com: 01.07.00.00\r\n\r\n";

    #[test]
    fn a_p1s_announcement_reads_whole() {
        let from: IpAddr = "192.168.1.50".parse().unwrap();
        let found = parse(P1S.as_bytes(), from).unwrap();
        assert_eq!(
            found,
            BambuAnnouncement {
                serial: "01P00A391800001".into(),
                model: Some("C12".into()),
                name: Some("P1S by the window".into()),
                address: from,
                connection: Some("lan".into()),
                bind: Some("free".into()),
                firmware: Some("01.07.00.00".into()),
                signal_dbm: Some(-44),
                alive: true,
            }
        );
    }

    #[test]
    fn other_devices_and_garbage_are_ignored() {
        let from: IpAddr = "10.0.0.9".parse().unwrap();
        let moonraker =
            "NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\nUSN: uuid:1234::upnp:rootdevice\r\n\r\n";
        for garbage in [
            moonraker.as_bytes(),
            b"\xff\xfe\x00garbage",
            b"",
            b"NOTIFY * HTTP/1.1\r\nNT: urn:bambulab-com:device:3dprinter:1\r\n\r\n",
            b"NOTIFY * HTTP/1.1\r\nNT: urn:bambulab-com:device:3dprinter:1\r\nUSN: ../../etc\r\n\r\n",
            b"M-SEARCH * HTTP/1.1\r\nST: urn:bambulab-com:device:3dprinter:1\r\n\r\n",
        ] {
            assert_eq!(parse(garbage, from), None, "{:?}", String::from_utf8_lossy(garbage));
        }
        // Without a usable Location, the sender's address stands in; a bye is not alive.
        let bye = P1S
            .replace("Location: 192.168.1.50", "Location: printer.local")
            .replace("ssdp:alive", "ssdp:byebye");
        let found = parse(bye.as_bytes(), from).unwrap();
        assert_eq!((found.address, found.alive), (from, false));
    }
}
