//! Who the client is: its address, taken from `Forwarded` or
//! `X-Forwarded-For` only when the connection comes from a trusted proxy.
//!
//! Behind a load balancer every connection comes from the balancer, so the
//! limits per client address would treat all consumers as one. The
//! balancer's addresses are configured as trusted proxies; for a
//! connection from one of them the client is the right-most address in
//! the forwarding chain that is not itself a trusted proxy. A connection
//! from anywhere else is taken at its word: its headers are ignored, so a
//! client cannot pick its own address.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The networks whose connections may name the client in a header.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts `nets` (single addresses are `/32` or `/128` networks).
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    /// Parses addresses and networks such as `10.0.0.0/8` or `127.0.0.1`.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, String> {
        items
            .iter()
            .map(|s| {
                let s = s.as_ref().trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is not an IP address or network"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a connection from `peer` with `headers`.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer.ip());
        if !self.trusts(peer) {
            return peer;
        }
        let chain = forwarded_for(headers);
        // Right to left: each hop was added by the proxy after it; the first
        // address that is not a trusted proxy is the client.
        for ip in chain.iter().rev() {
            match ip {
                Some(ip) if self.trusts(*ip) => continue,
                Some(ip) => return *ip,
                // A hop we cannot read (`unknown`, an obfuscated name):
                // nothing left of it can be trusted either.
                None => return peer,
            }
        }
        chain.first().copied().flatten().unwrap_or(peer)
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The forwarding chain, left (client side) to right, from `Forwarded`
/// (RFC 7239) if present, else from `X-Forwarded-For`. `None` stands for
/// a hop that names no readable address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, v)| node_ip(v))
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(node_ip)
        .collect()
}

/// The address of a node as `Forwarded` or `X-Forwarded-For` write it:
/// `192.0.2.1`, `"192.0.2.1:4711"`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn node_ip(raw: &str) -> Option<IpAddr> {
    let s = raw.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest
            .split(']')
            .next()
            .and_then(|h| h.parse().ok())
            .map(canonical);
    }
    s.parse::<SocketAddr>().ok().map(|a| canonical(a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 5000)
    }

    #[test]
    fn headers_count_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        let lb = TrustedProxies::parse(&["10.0.0.0/8", "127.0.0.1"]).unwrap();
        let xff = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(
            none.client_ip(peer("10.1.2.3"), &xff),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            lb.client_ip(peer("198.51.100.1"), &xff),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            lb.client_ip(peer("10.1.2.3"), &xff),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let lb = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        // A client that writes its own header gets it kept on the left.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.2")]);
        assert_eq!(
            lb.client_ip(peer("10.0.0.1"), &h),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        let h = headers(&[
            (
                "forwarded",
                "for=1.1.1.1;proto=http, for=\"[2001:db8::7]:4711\"",
            ),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        assert_eq!(
            lb.client_ip(peer("10.0.0.1"), &h),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(
            lb.client_ip(peer("10.0.0.1"), &h),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        let h = headers(&[("x-forwarded-for", "::ffff:203.0.113.9")]);
        assert_eq!(
            lb.client_ip(peer("10.0.0.1"), &h),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["lb.example"]).is_err());
    }
}
