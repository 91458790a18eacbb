//! Which address a request comes from: the TCP peer, unless the peer is a trusted proxy
//! (Front Door, a load balancer), whose headers name the client. A client that is not a
//! trusted proxy never chooses its address by a header.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// The client's address. From a trusted `peer`: `X-Azure-ClientIP` (Front Door sets it,
/// overwriting what the client sent), else the rightmost `X-Forwarded-For` entry that is
/// not itself a trusted proxy (entries left of it were written by the client and prove
/// nothing), else the peer.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    if let Some(ip) = headers
        .get("x-azure-clientip")
        .and_then(|v| parse_ip(v.to_str().ok()?))
    {
        return ip;
    }
    // The nearest hop so far: where the walk stops at anything it cannot read.
    let mut nearest = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(list) = value.to_str() else {
            return nearest;
        };
        for entry in list.rsplit(',') {
            let Some(ip) = parse_ip(entry) else {
                return nearest;
            };
            if !is_trusted(&ip) {
                return ip;
            }
            nearest = ip;
        }
    }
    nearest
}

/// An address as proxies write it: `1.2.3.4`, `2001:db8::1`, with or without a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:5678`).
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn trusted() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address() {
        let h = headers(&[
            ("x-azure-clientip", "198.51.100.1"),
            ("x-forwarded-for", "198.51.100.2"),
        ]);
        assert_eq!(
            client_addr(ip("203.0.113.5"), &h, &trusted()),
            ip("203.0.113.5")
        );
        assert_eq!(client_addr(ip("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
    }

    #[test]
    fn a_trusted_peer_names_the_client() {
        let t = trusted();
        let h = headers(&[
            ("x-azure-clientip", "198.51.100.1"),
            ("x-forwarded-for", "198.51.100.2"),
        ]);
        assert_eq!(client_addr(ip("10.0.0.1"), &h, &t), ip("198.51.100.1"));
        // The rightmost untrusted entry: the client wrote the ones left of it.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1, 198.51.100.2"),
            ("x-forwarded-for", "10.1.1.1:443"),
        ]);
        assert_eq!(client_addr(ip("10.0.0.1"), &h, &t), ip("198.51.100.2"));
        let h = headers(&[("x-forwarded-for", "[2001:db8::7]:80, fd00::1")]);
        assert_eq!(client_addr(ip("fd00::2"), &h, &t), ip("2001:db8::7"));
        // Nothing readable: the nearest hop.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, garbage, 10.2.2.2")]);
        assert_eq!(client_addr(ip("10.0.0.1"), &h, &t), ip("10.2.2.2"));
        assert_eq!(
            client_addr(ip("10.0.0.1"), &HeaderMap::new(), &t),
            ip("10.0.0.1")
        );
    }
}
