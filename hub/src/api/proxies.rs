//! Who the client is: the TCP peer, unless the peer is a configured trusted proxy
//! (`[http] trusted_proxies`); only then is `X-Forwarded-For` read, from the right, taking
//! the first address that is not itself a trusted proxy. A client can write anything into
//! that header, but a proxy appends the address it saw, so everything right of the first
//! untrusted address was written by proxies we trust. With no trusted proxies configured the
//! header is never read, so no client can choose the address the login limiter counts it by.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`) or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an address or network like 10.0.0.0/8"))?;
        let most = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => most,
            Some(prefix) => match prefix.trim().parse::<u8>() {
                Ok(prefix) if prefix <= most => prefix,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {most}")),
            },
        };
        Ok(Cidr { network: mask(network, prefix), prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        address.is_ipv4() == self.network.is_ipv4() && mask(address, self.prefix) == self.network
    }
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's view of IPv4 clients) as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match canonical(address) {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
            IpAddr::V4((bits & keep).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep =
                if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix.min(128))) };
            IpAddr::V6((bits & keep).into())
        }
    }
}

/// The reverse proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<Cidr>);

impl TrustedProxies {
    pub fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(address))
    }

    /// The client's address: `peer`, or when `peer` is trusted, the rightmost address in
    /// `X-Forwarded-For` that is not a trusted proxy (the leftmost if all are; `peer` if the
    /// header is absent, or unreadable where the walk reached it).
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer.map(canonical)?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|value| value.to_str().ok())
            .collect::<Vec<_>>();
        // Several header lines are one list, in order.
        for line in hops.iter().rev() {
            let Some(line) = line else { return Some(client) };
            for hop in line.rsplit(',') {
                let Some(address) = parse_hop(hop) else { return Some(client) };
                client = address;
                if !self.trusts(address) {
                    return Some(address);
                }
            }
        }
        Some(client)
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`[v6]:port`, `v4:port`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|socket| socket.ip()))
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies(list.iter().map(|text| text.parse().unwrap()).collect())
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn networks_parse_and_contain_their_addresses() {
        let lan: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(lan.to_string(), "10.0.0.0/8");
        assert!(lan.contains("10.200.0.1".parse().unwrap()));
        assert!(!lan.contains("11.0.0.1".parse().unwrap()));
        assert!(lan.contains("::ffff:10.0.0.1".parse().unwrap()), "IPv4-mapped");
        let one: Cidr = "192.0.2.1".parse().unwrap();
        assert!(one.contains("192.0.2.1".parse().unwrap()));
        assert!(!one.contains("192.0.2.2".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let everything: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains("203.0.113.9".parse().unwrap()));
        for bad in ["10.0.0.0/33", "fd00::/129", "proxy.lan", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(TrustedProxies::default().client(ip("192.0.2.5"), &headers), ip("192.0.2.5"));
        let trusted = proxies(&["127.0.0.1"]);
        assert_eq!(trusted.client(ip("192.0.2.5"), &headers), ip("192.0.2.5"));
        assert_eq!(trusted.client(None, &headers), None);
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = proxies(&["127.0.0.1/32", "10.0.0.0/8"]);
        // The client wrote a fake first entry; the proxies appended what they saw.
        let headers = forwarded(&["198.51.100.1, 203.0.113.9", "10.0.0.2"]);
        assert_eq!(trusted.client(ip("127.0.0.1"), &headers), ip("203.0.113.9"));
        // No header: the proxy itself (every client behind it shares its budget).
        assert_eq!(trusted.client(ip("127.0.0.1"), &HeaderMap::new()), ip("127.0.0.1"));
        // Every hop trusted: the leftmost.
        let headers = forwarded(&["10.0.0.7, 10.0.0.2"]);
        assert_eq!(trusted.client(ip("127.0.0.1"), &headers), ip("10.0.0.7"));
        // Garbage where the walk reaches it: the last address known.
        let headers = forwarded(&["203.0.113.9, not-an-address, 10.0.0.2"]);
        assert_eq!(trusted.client(ip("127.0.0.1"), &headers), ip("10.0.0.2"));
        // Ports and IPv6.
        let headers = forwarded(&["[2001:db8::1]:4711", "203.0.113.9:80"]);
        assert_eq!(trusted.client(ip("::ffff:127.0.0.1"), &headers), ip("203.0.113.9"));
        let headers = forwarded(&["[2001:db8::1]:4711"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &headers), ip("2001:db8::1"));
    }
}
