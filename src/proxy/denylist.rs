//! The client headers that never reach an upstream deployment: credentials, hop-by-hop
//! headers, routing identity (forwarding and Front Door headers) and the gateway's own.
//!
//! A denylist rather than an allowlist: Azure OpenAI features and SDK telemetry ride on
//! headers the gateway does not know (`openai-beta`, `x-ms-client-request-id`,
//! `x-stainless-*`, new `x-ms-*` options), and an allowlist would drop each new one silently.
//! What must not travel is a short, known set: everything that authenticates, that only
//! concerns this hop, or that says who the client is or how it got here.

use http::header::{self, HeaderMap, HeaderName};

/// Exact names removed (lowercase, as `HeaderName` stores them).
const DENIED: &[&str] = &[
    // Credentials: the deployment's own `api-key` is set after this.
    "api-key",
    "authorization",
    "proxy-authorization",
    "ocp-apim-subscription-key",
    "cookie",
    // Hop-by-hop (RFC 9110 §7.6.1), and the framing the gateway sets itself.
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    // Who the client is and how it got here: not the upstream's business.
    "forwarded",
    "x-real-ip",
    "x-client-ip",
];

/// Name prefixes removed: forwarding headers, Azure Front Door's (`x-azure-fdid`,
/// `x-azure-clientip`, ...), its health probes' (`x-fd-healthprobe`), and the gateway's own
/// control headers, which a client must not be able to pass to the upstream.
const DENIED_PREFIXES: &[&str] = &["x-forwarded-", "x-azure-", "x-fd-", "x-spillway-"];

fn denied(name: &HeaderName) -> bool {
    let n = name.as_str();
    DENIED.contains(&n) || DENIED_PREFIXES.iter().any(|p| n.starts_with(p))
}

/// Removes every denied header from `h`, and the headers `Connection` names (hop-by-hop by
/// declaration). No allocation: names are collected in a fixed array (a `HeaderName` clone
/// is a static reference or a reference count), in rounds when there are more.
pub fn strip(h: &mut HeaderMap) {
    if let Some(connection) = h.get(header::CONNECTION).cloned() {
        for token in connection.as_bytes().split(|b| *b == b',') {
            if let Ok(name) = HeaderName::from_bytes(token.trim_ascii()) {
                h.remove(name);
            }
        }
    }
    loop {
        let mut found: [Option<HeaderName>; 8] = Default::default();
        let mut n = 0;
        for name in h.keys().filter(|name| denied(name)) {
            found[n] = Some(name.clone());
            n += 1;
            if n == found.len() {
                break;
            }
        }
        for name in found.into_iter().flatten() {
            h.remove(name);
        }
        if n < 8 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_denied_headers_and_keeps_the_rest() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("api-key", "tenant"),
            ("Authorization", "Bearer tenant"),
            ("Proxy-Authorization", "Basic x"),
            ("Ocp-Apim-Subscription-Key", "k"),
            ("Cookie", "session=1"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Upgrade", "websocket"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-For", "1.2.3.4"),
            ("Forwarded", "for=1.2.3.4"),
            ("X-Azure-FDID", "id"),
            ("X-Azure-ClientIP", "1.2.3.4"),
            ("X-FD-HealthProbe", "1"),
            ("X-Spillway-Cap", "none"),
            ("X-Spillway-Anything", "x"),
            ("Content-Type", "application/json"),
            ("User-Agent", "sdk"),
            ("x-ms-client-request-id", "abc"),
            ("x-stainless-lang", "python"),
            ("openai-beta", "assistants=v2"),
        ] {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        strip(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "content-type",
                "openai-beta",
                "user-agent",
                "x-ms-client-request-id",
                "x-stainless-lang"
            ]
        );
    }

    #[test]
    fn more_denied_headers_than_one_round_holds() {
        let mut h = HeaderMap::new();
        for i in 0..20 {
            h.insert(
                HeaderName::from_bytes(format!("x-spillway-{i}").as_bytes()).unwrap(),
                "x".parse().unwrap(),
            );
        }
        h.insert("accept", "*/*".parse().unwrap());
        strip(&mut h);
        assert_eq!(h.len(), 1);
    }
}
