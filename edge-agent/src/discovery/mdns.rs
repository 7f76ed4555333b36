//! Moonraker instances over mDNS/DNS-SD, sans-IO: the one query mDNS defines for a service
//! (`_moonraker._tcp.local` PTR, RFC 6762/6763), and the answers read back, whether asked
//! for or announced. Moonraker's `[zeroconf]` component registers
//! `<instance> @ <host>._moonraker._tcp.local` with an SRV (host and port), a TXT (`uuid`,
//! `version`, `https_port`) and the host's A/AAAA records.
//!
//! The reader takes any record from any section of a response and assembles instances as
//! their pieces arrive (a PTR, then its SRV and TXT, then the host's address, possibly in
//! separate messages). A malformed message is an error, never a panic: names are bounded,
//! compression pointers may only point backwards and are followed at most a few times.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
pub const PORT: u16 = 5353;
/// Moonraker's service type.
pub const SERVICE: &str = "_moonraker._tcp.local";
/// The largest mDNS message (RFC 6762 §17: up to 9000 bytes over a jumbo-frame link).
pub const MAX_MESSAGE: usize = 9000;

const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_TXT: u16 = 16;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;

/// The PTR query for [`SERVICE`], as a multicast question (QM).
pub fn query() -> Vec<u8> {
    let mut message = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in SERVICE.split('.') {
        message.push(label.len() as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.push(0);
    message.extend_from_slice(&TYPE_PTR.to_be_bytes());
    message.extend_from_slice(&CLASS_IN.to_be_bytes());
    message
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MdnsError {
    #[error("the message ends early")]
    Truncated,
    #[error("a name is malformed: {0}")]
    BadName(&'static str),
}

/// One resource record, as far as discovery needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Ptr { name: String, target: String },
    Srv { name: String, target: String, port: u16 },
    Txt { name: String, entries: Vec<(String, String)> },
    Address { name: String, address: IpAddr },
    Other,
}

/// Every record of a response (answers, authority and additional). Queries (QR clear) give
/// no records.
pub fn parse(message: &[u8]) -> Result<Vec<Record>, MdnsError> {
    let header = message.get(..12).ok_or(MdnsError::Truncated)?;
    if header[2] & 0x80 == 0 {
        return Ok(Vec::new());
    }
    let count = |at: usize| usize::from(u16::from_be_bytes([header[at], header[at + 1]]));
    let (questions, records) = (count(4), count(6) + count(8) + count(10));
    let mut at = 12;
    for _ in 0..questions {
        at = read_name(message, at)?.1 + 4;
    }
    let mut found = Vec::new();
    for _ in 0..records {
        let (name, after) = read_name(message, at)?;
        let fixed = message.get(after..after + 10).ok_or(MdnsError::Truncated)?;
        let kind = u16::from_be_bytes([fixed[0], fixed[1]]);
        let length = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let start = after + 10;
        let data = message.get(start..start + length).ok_or(MdnsError::Truncated)?;
        found.push(match kind {
            TYPE_PTR => Record::Ptr { name, target: read_name(message, start)?.0 },
            TYPE_SRV if length >= 7 => Record::Srv {
                name,
                port: u16::from_be_bytes([data[4], data[5]]),
                target: read_name(message, start + 6)?.0,
            },
            TYPE_TXT => Record::Txt { name, entries: txt(data) },
            TYPE_A if length == 4 => Record::Address {
                name,
                address: IpAddr::from([data[0], data[1], data[2], data[3]]),
            },
            TYPE_AAAA if length == 16 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(data);
                Record::Address { name, address: IpAddr::from(octets) }
            }
            _ => Record::Other,
        });
        at = start + length;
    }
    Ok(found)
}

/// A name at `at`: its text (labels joined by `.`) and where the record goes on.
fn read_name(message: &[u8], mut at: usize) -> Result<(String, usize), MdnsError> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    let mut jumps = 0;
    let mut length = 0;
    loop {
        let byte = *message.get(at).ok_or(MdnsError::Truncated)?;
        match byte {
            0 => {
                let end = end.unwrap_or(at + 1);
                return Ok((labels.join("."), end));
            }
            b if b & 0xC0 == 0xC0 => {
                let low = *message.get(at + 1).ok_or(MdnsError::Truncated)?;
                let target = usize::from(u16::from_be_bytes([b & 0x3F, low]));
                if target >= at || jumps >= 16 {
                    return Err(MdnsError::BadName(
                        "a compression pointer that does not point back",
                    ));
                }
                jumps += 1;
                end.get_or_insert(at + 2);
                at = target;
            }
            b if b & 0xC0 == 0 => {
                let label =
                    message.get(at + 1..at + 1 + usize::from(b)).ok_or(MdnsError::Truncated)?;
                length += label.len() + 1;
                if length > 255 {
                    return Err(MdnsError::BadName("longer than 255 bytes"));
                }
                labels.push(String::from_utf8_lossy(label).into_owned());
                at += 1 + usize::from(b);
            }
            _ => return Err(MdnsError::BadName("a reserved label type")),
        }
    }
}

/// `key=value` strings of a TXT record.
fn txt(mut data: &[u8]) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    while let Some((&length, rest)) = data.split_first() {
        let Some(entry) = rest.get(..usize::from(length)) else { break };
        let entry = String::from_utf8_lossy(entry);
        let (key, value) = entry.split_once('=').unwrap_or((&entry, ""));
        if !key.is_empty() {
            entries.push((key.to_ascii_lowercase(), value.to_owned()));
        }
        data = &rest[usize::from(length)..];
    }
    entries
}

/// A Moonraker instance found on the LAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoonrakerInstance {
    /// The instance's name (`Moonraker-1a2b3c4d @ voron`).
    pub name: String,
    /// The host's mDNS name (`voron.local`).
    pub host: String,
    pub address: IpAddr,
    pub port: u16,
    /// What to put in the agent's `url`.
    pub url: String,
    pub uuid: Option<String>,
    pub version: Option<String>,
}

/// Instances assembled from the records seen so far.
#[derive(Debug, Default)]
pub struct Instances {
    instances: BTreeMap<String, String>,
    services: BTreeMap<String, (String, u16)>,
    texts: BTreeMap<String, Vec<(String, String)>>,
    addresses: BTreeMap<String, IpAddr>,
    reported: BTreeMap<String, MoonrakerInstance>,
}

impl Instances {
    /// Takes in a response's records; returns the instances now complete that were not
    /// reported before, or changed since.
    pub fn add(&mut self, records: Vec<Record>) -> Vec<MoonrakerInstance> {
        let key = |name: &str| name.trim_end_matches('.').to_ascii_lowercase();
        for record in records {
            match record {
                Record::Ptr { name, target } if key(&name) == SERVICE => {
                    let label = target
                        .strip_suffix(&format!(".{SERVICE}"))
                        .or_else(|| target.split('.').next())
                        .unwrap_or(&target)
                        .to_owned();
                    self.instances.insert(key(&target), label);
                }
                Record::Srv { name, target, port } => {
                    self.services.insert(key(&name), (target, port));
                }
                Record::Txt { name, entries } => {
                    self.texts.insert(key(&name), entries);
                }
                Record::Address { name, address } => {
                    // IPv4 first: what people type and what the agent's URL parser reads most
                    // plainly; an AAAA stands only until an A arrives.
                    let current = self.addresses.get(&key(&name));
                    if current.is_none_or(|c| c.is_ipv6() || address.is_ipv4()) {
                        self.addresses.insert(key(&name), address);
                    }
                }
                _ => {}
            }
        }
        let mut new = Vec::new();
        for (instance, label) in &self.instances {
            let Some((host, port)) = self.services.get(instance) else { continue };
            let Some(address) = self.addresses.get(&key(host)) else { continue };
            let text = |k: &str| {
                self.texts.get(instance)?.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
            };
            let url = match address {
                IpAddr::V4(v4) => format!("http://{v4}:{port}"),
                IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
            };
            let found = MoonrakerInstance {
                name: label.clone(),
                host: host.trim_end_matches('.').to_owned(),
                address: *address,
                port: *port,
                url,
                uuid: text("uuid").filter(|u| !u.is_empty()),
                version: text("version").filter(|v| !v.is_empty()),
            };
            if self.reported.get(instance) != Some(&found) {
                self.reported.insert(instance.clone(), found.clone());
                new.push(found);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response as Moonraker's python-zeroconf sends it, built by hand: PTR in the
    /// answers, SRV, TXT and A in the additional section, names compressed.
    fn response() -> Vec<u8> {
        let mut m = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 3];
        // Answer: _moonraker._tcp.local PTR "Moonraker-1a2b3c4d @ voron"._moonraker._tcp.local
        let service_at = m.len();
        for label in ["_moonraker", "_tcp", "local"] {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&[0, 12, 0, 1, 0, 0, 0x11, 0x94]);
        let instance = b"Moonraker-1a2b3c4d @ voron";
        m.extend_from_slice(&((instance.len() + 3) as u16).to_be_bytes());
        let instance_at = m.len();
        m.push(instance.len() as u8);
        m.extend_from_slice(instance);
        m.extend_from_slice(&[0xC0, service_at as u8]);
        // SRV: priority 0, weight 0, port 7125, target voron.local
        m.extend_from_slice(&[0xC0, instance_at as u8, 0, 33, 0x80, 1, 0, 0, 0, 120]);
        let target = [&[5u8][..], b"voron", &[5], b"local", &[0]].concat();
        m.extend_from_slice(&((6 + target.len()) as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 0x1B, 0xD5]);
        let host_at = m.len();
        m.extend_from_slice(&target);
        // TXT
        m.extend_from_slice(&[0xC0, instance_at as u8, 0, 16, 0x80, 1, 0, 0, 0x11, 0x94]);
        let entries = [&b"uuid=0f1e2d3c"[..], b"https_port=", b"version=v0.9.3-12"];
        let txt: Vec<u8> = entries
            .iter()
            .flat_map(|e| std::iter::once(e.len() as u8).chain(e.iter().copied()))
            .collect();
        m.extend_from_slice(&(txt.len() as u16).to_be_bytes());
        m.extend_from_slice(&txt);
        // A
        m.extend_from_slice(&[
            0xC0,
            host_at as u8,
            0,
            1,
            0x80,
            1,
            0,
            0,
            0,
            120,
            0,
            4,
            192,
            168,
            1,
            60,
        ]);
        m
    }

    #[test]
    fn the_query_asks_for_moonrakers_ptr() {
        let query = query();
        assert_eq!(&query[..12], &[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&query[12..23], b"\x0a_moonraker");
        assert_eq!(&query[query.len() - 4..], &[0, 12, 0, 1]);
        assert!(parse(&query).unwrap().is_empty(), "a query carries no records");
    }

    #[test]
    fn a_moonraker_answer_assembles_one_instance_once() {
        let records = parse(&response()).unwrap();
        assert_eq!(records.len(), 4, "{records:?}");
        let mut instances = Instances::default();
        let found = instances.add(records.clone());
        assert_eq!(
            found,
            [MoonrakerInstance {
                name: "Moonraker-1a2b3c4d @ voron".into(),
                host: "voron.local".into(),
                address: "192.168.1.60".parse().unwrap(),
                port: 7125,
                url: "http://192.168.1.60:7125".into(),
                uuid: Some("0f1e2d3c".into()),
                version: Some("v0.9.3-12".into()),
            }]
        );
        assert!(instances.add(records).is_empty(), "reported once");
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let whole = response();
        for cut in 0..whole.len() {
            let _ = parse(&whole[..cut]);
        }
        // A pointer to itself, and one pointing forwards.
        let mut looped = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xC0, 12];
        looped.extend_from_slice(&[0, 12, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(parse(&looped), Err(MdnsError::BadName(_))));
        let forward = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xC0, 40];
        assert!(parse(&forward).is_err());
        assert!(parse(&[0x84; 5]).is_err());
    }
}
