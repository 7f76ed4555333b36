//! How the simulated printers make themselves known, as real ones do:
//!
//! - a Bambu printer multicasts an SSDP `NOTIFY` to `239.255.255.250` on UDP 2021 (and 1990)
//!   at start and then every interval (a real one about once a minute), its serial in `USN`,
//!   its address in `Location`, model, name, connection and bind state in `Dev*.bambu.com`
//!   headers (`docs/printer-protocols.md` §3.2);
//! - a Moonraker answers mDNS queries for `_moonraker._tcp.local` and announces itself twice
//!   at start, as python-zeroconf does for Moonraker's `[zeroconf]` component: a PTR to
//!   `<instance> @ <host>._moonraker._tcp.local`, with the SRV (host, port), the TXT (`uuid`,
//!   `https_port`, `version`) and the host's A record in the additional section. A query from
//!   a port other than 5353 is answered by unicast to its sender (RFC 6762 §6.7).
//!
//! Written here without the agent's code, so discovery is tested against a separate reading
//! of both protocols. Both speak only on the interface of the simulator's own address: one
//! bound to loopback is invisible on the LAN (and silent unless loopback has multicast on),
//! so a demo never shows fake printers to the real ones' apps. Sending fails quietly (a debug
//! log) where there is no multicast route.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

const SSDP_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
const SSDP_PORTS: [u16; 2] = [2021, 1990];
const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
const MDNS_PORT: u16 = 5353;
const SERVICE: [&str; 3] = ["_moonraker", "_tcp", "local"];

/// What a Bambu printer puts in its announcement.
#[derive(Debug, Clone)]
pub struct BambuAnnouncement {
    pub serial: String,
    pub model_code: String,
    pub name: String,
    pub address: Ipv4Addr,
    pub firmware: String,
}

impl BambuAnnouncement {
    /// The `NOTIFY` datagram, with the header spelling of a P1S's firmware.
    pub fn notify(&self) -> String {
        format!(
            "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1990\r\nServer: UPnP/1.0\r\n\
             Location: {}\r\nNT: urn:bambulab-com:device:3dprinter:1\r\nNTS: ssdp:alive\r\n\
             USN: {}\r\nCache-Control: max-age=1800\r\nDevModel.bambu.com: {}\r\n\
             DevName.bambu.com: {}\r\nDevSignal.bambu.com: -44\r\nDevConnect.bambu.com: lan\r\n\
             DevBind.bambu.com: free\r\nDevseclink.bambu.com: secure\r\n\
             DevVersion.bambu.com: {}\r\n\r\n",
            self.address, self.serial, self.model_code, self.name, self.firmware
        )
    }
}

/// Multicasts `announcement` now and every `interval` until `shutdown`.
pub async fn announce_bambu(
    announcement: BambuAnnouncement,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let Ok(socket) = sender(announcement.address) else { return };
    let notify = announcement.notify();
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for port in SSDP_PORTS {
            let group = SocketAddr::V4(SocketAddrV4::new(SSDP_GROUP, port));
            if let Err(error) = socket.send_to(notify.as_bytes(), group).await {
                tracing::debug!(%error, "Cannot multicast the SSDP announcement.");
            }
        }
    }
}

/// The address to announce for a socket bound to `bind`: itself, or for an unspecified
/// address the one the kernel would send multicast from (loopback when there is none).
pub fn announced_address(bind: SocketAddr) -> Ipv4Addr {
    match bind {
        SocketAddr::V4(v4) if !v4.ip().is_unspecified() => *v4.ip(),
        _ => std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|socket| {
                socket.connect((SSDP_GROUP, SSDP_PORTS[0]))?;
                socket.local_addr()
            })
            .ok()
            .and_then(|local| match local.ip() {
                std::net::IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
                _ => None,
            })
            .unwrap_or(Ipv4Addr::LOCALHOST),
    }
}

/// A Moonraker's mDNS service.
#[derive(Debug, Clone)]
pub struct MdnsService {
    /// `Moonraker-1a2b3c4d @ voron-sim`.
    pub instance: String,
    /// The host's name without `.local`.
    pub host: String,
    pub address: Ipv4Addr,
    pub port: u16,
    pub uuid: String,
    pub version: String,
}

impl MdnsService {
    /// The response: PTR answer; SRV, TXT and A additional; names compressed.
    pub fn response(&self) -> Vec<u8> {
        let mut m = vec![0, 0, 0x84, 0x00, 0, 0, 0, 1, 0, 0, 0, 3];
        let service_at = m.len() as u16;
        for label in SERVICE {
            push_label(&mut m, label);
        }
        m.push(0);
        m.extend_from_slice(&[0, 12, 0, 1]);
        m.extend_from_slice(&4500u32.to_be_bytes());
        let instance = self.instance.as_bytes();
        let instance = &instance[..instance.len().min(63)];
        m.extend_from_slice(&((instance.len() + 3) as u16).to_be_bytes());
        let instance_at = m.len() as u16;
        m.push(instance.len() as u8);
        m.extend_from_slice(instance);
        m.extend_from_slice(&pointer(service_at));
        // SRV, cache-flush class.
        m.extend_from_slice(&pointer(instance_at));
        m.extend_from_slice(&[0, 33, 0x80, 1]);
        m.extend_from_slice(&120u32.to_be_bytes());
        let mut target = Vec::new();
        push_label(&mut target, &self.host);
        push_label(&mut target, "local");
        target.push(0);
        m.extend_from_slice(&((6 + target.len()) as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(&self.port.to_be_bytes());
        let host_at = m.len() as u16;
        m.extend_from_slice(&target);
        // TXT
        m.extend_from_slice(&pointer(instance_at));
        m.extend_from_slice(&[0, 16, 0x80, 1]);
        m.extend_from_slice(&4500u32.to_be_bytes());
        let mut txt = Vec::new();
        for entry in [
            format!("uuid={}", self.uuid),
            "https_port=".to_owned(),
            format!("version={}", self.version),
        ] {
            let entry = &entry.as_bytes()[..entry.len().min(255)];
            txt.push(entry.len() as u8);
            txt.extend_from_slice(entry);
        }
        m.extend_from_slice(&(txt.len() as u16).to_be_bytes());
        m.extend_from_slice(&txt);
        // A
        m.extend_from_slice(&pointer(host_at));
        m.extend_from_slice(&[0, 1, 0x80, 1]);
        m.extend_from_slice(&120u32.to_be_bytes());
        m.extend_from_slice(&[0, 4]);
        m.extend_from_slice(&self.address.octets());
        m
    }
}

fn push_label(message: &mut Vec<u8>, label: &str) {
    let label = &label.as_bytes()[..label.len().min(63)];
    message.push(label.len() as u8);
    message.extend_from_slice(label);
}

fn pointer(at: u16) -> [u8; 2] {
    (0xC000 | at).to_be_bytes()
}

/// Whether `query` asks for Moonraker's service (PTR or ANY for `_moonraker._tcp.local`).
pub fn asks_for_moonraker(query: &[u8]) -> bool {
    let Some(header) = query.get(..12) else { return false };
    if header[2] & 0x80 != 0 {
        return false;
    }
    let questions = u16::from_be_bytes([header[4], header[5]]);
    let mut at = 12;
    for _ in 0..questions {
        let mut labels = Vec::new();
        loop {
            let Some(&length) = query.get(at) else { return false };
            if length == 0 || length & 0xC0 != 0 {
                // Compressed names in questions are unusual; treat a pointer as the end.
                at += if length == 0 { 1 } else { 2 };
                break;
            }
            let Some(label) = query.get(at + 1..at + 1 + usize::from(length)) else { return false };
            labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
            at += 1 + usize::from(length);
        }
        let Some(kind) = query.get(at..at + 2) else { return false };
        let kind = u16::from_be_bytes([kind[0], kind[1]]);
        at += 4;
        if labels == SERVICE && (kind == 12 || kind == 255) {
            return true;
        }
    }
    false
}

/// Answers queries for `service` and announces it at start, until `shutdown`.
pub async fn mdns_responder(service: MdnsService, shutdown: CancellationToken) {
    let socket = match listener(service.address) {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(%error, "Cannot listen for mDNS queries; the simulator is not discoverable.");
            return;
        }
    };
    let response = service.response();
    let group = SocketAddr::V4(SocketAddrV4::new(MDNS_GROUP, MDNS_PORT));
    // Two announcements a second apart (RFC 6762 §8.3).
    let mut announcements = tokio::time::interval(Duration::from_secs(1));
    let mut announced = 0;
    let mut buffer = vec![0u8; 9000];
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = announcements.tick(), if announced < 2 => {
                announced += 1;
                if let Err(error) = socket.send_to(&response, group).await {
                    tracing::debug!(%error, "Cannot multicast the mDNS announcement.");
                }
            }
            received = socket.recv_from(&mut buffer) => {
                let Ok((length, from)) = received else { continue };
                if !asks_for_moonraker(&buffer[..length]) {
                    continue;
                }
                let to = if from.port() == MDNS_PORT { group } else { from };
                if let Err(error) = socket.send_to(&response, to).await {
                    tracing::debug!(%error, "Cannot answer an mDNS query.");
                }
            }
        }
    }
}

/// UDP 5353, in the mDNS group on the interface of `address` only (a simulator on loopback
/// is never heard on the LAN), shared with other responders.
fn listener(address: Ipv4Addr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, MDNS_PORT)).into())?;
    socket.join_multicast_v4(&MDNS_GROUP, &address)?;
    socket.set_multicast_if_v4(&address)?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(255)?;
    UdpSocket::from_std(socket.into())
}

/// A socket for multicasting on `address`'s interface only: a simulator bound to loopback
/// announces on loopback (which needs `ip link set lo multicast on`), never on the LAN.
fn sender(address: Ipv4Addr) -> std::io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.set_multicast_ttl_v4(1)?;
    socket.set_multicast_loop_v4(true)?;
    socket2::SockRef::from(&socket).set_multicast_if_v4(&address)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_for_moonraker_is_recognised_and_others_are_not() {
        let mut query = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in SERVICE {
            push_label(&mut query, label);
        }
        query.push(0);
        query.extend_from_slice(&[0, 12, 0, 1]);
        assert!(asks_for_moonraker(&query));
        let mut other = query.clone();
        other[13] = b'x';
        assert!(!asks_for_moonraker(&other));
        assert!(!asks_for_moonraker(&query[..20]));
        let service = MdnsService {
            instance: "Moonraker-0001 @ voron".into(),
            host: "voron".into(),
            address: Ipv4Addr::LOCALHOST,
            port: 7125,
            uuid: "0001".into(),
            version: "v0.9.3".into(),
        };
        assert!(!asks_for_moonraker(&service.response()), "a response is not a query");
    }
}
