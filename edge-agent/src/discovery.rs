//! Finding the printers on the agent's LAN by listening, never by scanning: Bambu Lab
//! printers' SSDP announcements ([`ssdp`], UDP 2021 and 1990 on `239.255.255.250`) and
//! Moonraker instances over mDNS ([`mdns`], one PTR query for `_moonraker._tcp.local`
//! repeated as RFC 6762 allows, and every answer or announcement heard on `224.0.0.251:5353`).
//! The parsing is sans-IO; this file owns the sockets.
//!
//! A port another program holds (avahi on 5353) is shared where the kernel allows
//! (`SO_REUSEADDR`/`SO_REUSEPORT`); where it does not, mDNS falls back to a one-shot query
//! from an ephemeral port, which responders answer by unicast (RFC 6762 §6.7).

pub mod mdns;
pub mod ssdp;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

pub use mdns::MoonrakerInstance;
pub use ssdp::BambuAnnouncement;

/// A printer found on the LAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Discovered {
    Bambu(BambuAnnouncement),
    Moonraker(MoonrakerInstance),
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for printers: {0}")]
pub struct DiscoveryError(String);

/// Delays between repeats of the mDNS query (RFC 6762 §5.2: at least a second, doubling).
const QUERY_REPEATS: [Duration; 3] =
    [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)];

/// Listens for `duration`; every printer found (again only when what it says changed) goes to
/// `found`. Fails only when no socket at all could be opened.
pub async fn listen(
    duration: Duration,
    found: mpsc::Sender<Discovered>,
) -> Result<(), DiscoveryError> {
    let mut problems = Vec::new();
    let mut ssdp_sockets = Vec::new();
    for port in ssdp::PORTS {
        match multicast_socket(ssdp::GROUP, port) {
            Ok(socket) => ssdp_sockets.push(socket),
            Err(error) => problems.push(format!("UDP {port}: {error}")),
        }
    }
    let mdns_socket = match multicast_socket(mdns::GROUP, mdns::PORT) {
        Ok(socket) => Some(socket),
        Err(error) => {
            problems
                .push(format!("UDP {} (mDNS): {error}; querying from another port", mdns::PORT));
            ephemeral_socket().ok()
        }
    };
    for problem in &problems {
        tracing::warn!(%problem, "Discovery listens on fewer ports.");
    }
    if ssdp_sockets.is_empty() && mdns_socket.is_none() {
        return Err(DiscoveryError(problems.join("; ")));
    }
    let deadline = tokio::time::Instant::now() + duration;
    let mut bambu: BTreeMap<String, BambuAnnouncement> = BTreeMap::new();
    let mut instances = mdns::Instances::default();
    let group = SocketAddr::V4(SocketAddrV4::new(mdns::GROUP, mdns::PORT));
    let query = mdns::query();
    let mut next_query = Some(tokio::time::Instant::now());
    let mut repeats = QUERY_REPEATS.iter();
    let mut buffers = vec![vec![0u8; ssdp::MAX_DATAGRAM]; ssdp_sockets.len()];
    let mut mdns_buffer = vec![0u8; mdns::MAX_MESSAGE];
    loop {
        let query_at = next_query.unwrap_or(deadline);
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return Ok(()),
            () = tokio::time::sleep_until(query_at), if next_query.is_some() => {
                if let Some(socket) = &mdns_socket
                    && let Err(error) = socket.send_to(&query, group).await
                {
                    tracing::debug!(%error, "Cannot send the mDNS query.");
                }
                next_query = repeats.next().map(|delay| tokio::time::Instant::now() + *delay);
            }
            received = recv_any(&ssdp_sockets, &mut buffers) => {
                let Some((index, length, from)) = received else { continue };
                let Some(found_printer) = ssdp::parse(&buffers[index][..length], from.ip()) else {
                    continue;
                };
                if bambu.get(&found_printer.serial) != Some(&found_printer) {
                    bambu.insert(found_printer.serial.clone(), found_printer.clone());
                    if found.send(Discovered::Bambu(found_printer)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            received = async {
                match &mdns_socket {
                    Some(socket) => socket.recv_from(&mut mdns_buffer).await.ok(),
                    None => std::future::pending().await,
                }
            } => {
                let Some((length, from)) = received else { continue };
                match mdns::parse(&mdns_buffer[..length]) {
                    Ok(records) => {
                        for instance in instances.add(records) {
                            if found.send(Discovered::Moonraker(instance)).await.is_err() {
                                return Ok(());
                            }
                        }
                    }
                    Err(error) => tracing::debug!(%error, %from, "Ignored a malformed mDNS message."),
                }
            }
        }
    }
}

/// The first datagram on any of `sockets`: its socket's index, length and sender.
async fn recv_any(
    sockets: &[UdpSocket],
    buffers: &mut [Vec<u8>],
) -> Option<(usize, usize, SocketAddr)> {
    if sockets.is_empty() {
        return std::future::pending().await;
    }
    let reads = sockets.iter().zip(buffers.iter_mut()).enumerate().map(|(i, (socket, buffer))| {
        Box::pin(async move { socket.recv_from(buffer).await.ok().map(|(n, from)| (i, n, from)) })
    });
    futures_util::future::select_all(reads).await.0
}

/// A UDP socket on `port` of every interface, in `group` on every interface that takes it (a
/// Pi on both Ethernet and Wi-Fi hears both), sharing the port with others.
fn multicast_socket(group: Ipv4Addr, port: u16) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).into())?;
    let joined = interface_indexes()
        .into_iter()
        .filter(|index| {
            socket.join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(*index)).is_ok()
        })
        .count();
    if joined == 0 {
        socket.join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED)?;
    }
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(255)?;
    UdpSocket::from_std(socket.into())
}

/// The kernel's network interfaces, by index (`/sys/class/net/*/ifindex`).
fn interface_indexes() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else { return Vec::new() };
    entries
        .filter_map(|entry| {
            let path = entry.ok()?.path().join("ifindex");
            std::fs::read_to_string(path).ok()?.trim().parse().ok()
        })
        .collect()
}

fn ephemeral_socket() -> std::io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}
