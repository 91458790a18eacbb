//! Builds the client edge's settings: listeners (with their certificates) and connection limits.

use super::check_addr;
use crate::config::error::Problems;
use crate::config::file::{ClientLimitsFile, ListenFile};
use crate::config::runtime::{ClientLimits, Listener, TlsListener};
use crate::config::tls;
use std::path::Path;
use std::time::Duration;

/// Pingora refuses request heads over 1 MiB whatever we say (`MAX_HEADER_SIZE`).
const PINGORA_MAX_HEAD: usize = 1024 * 1024;

/// Listeners in file order; certificate paths are relative to the config file's directory.
pub fn build_listeners(
    raw: Vec<ListenFile>,
    file: &Path,
    problems: &mut Problems,
) -> Vec<Listener> {
    if raw.is_empty() {
        problems.push("listen", "at least one address is required");
    }
    let dir = file.parent().unwrap_or(Path::new(""));
    raw.into_iter()
        .enumerate()
        .map(|(i, item)| {
            let (addr, tls, http2) = match item {
                ListenFile::Addr(addr) => (addr, None, None),
                ListenFile::Full(l) => (l.addr, l.tls, l.http2),
            };
            let field = format!("listen[{i}]");
            check_addr(&format!("{field}.addr"), &addr, problems);
            if tls.is_none() && http2 == Some(true) {
                problems.push(
                    format!("{field}.http2"),
                    "HTTP/2 is offered only by TLS ALPN; add `tls` (cleartext h2c is not served)",
                );
            }
            let tls = tls.and_then(|t| {
                let (cert_path, key_path) = (dir.join(&t.cert), dir.join(&t.key));
                let loaded = [tls::stamp(&cert_path), tls::stamp(&key_path)];
                match tls::load(&cert_path, &key_path) {
                    Ok(key) => Some(TlsListener {
                        cert_path,
                        key_path,
                        http2: http2.unwrap_or(true),
                        key,
                        loaded,
                    }),
                    Err(reason) => {
                        problems.push(format!("{field}.tls"), reason);
                        None
                    }
                }
            });
            Listener { addr, tls }
        })
        .collect()
}

pub fn build_client_limits(raw: &ClientLimitsFile, problems: &mut Problems) -> ClientLimits {
    for (field, v) in [
        ("clients.limits.head_timeout_ms", raw.head_timeout_ms),
        ("clients.limits.idle_timeout_ms", raw.idle_timeout_ms),
        ("clients.limits.body_timeout_ms", raw.body_timeout_ms),
        ("clients.limits.send_timeout_ms", raw.send_timeout_ms),
        ("clients.limits.max_connections", raw.max_connections as u64),
        (
            "clients.limits.max_requests_per_connection",
            u64::from(raw.max_requests_per_connection),
        ),
    ] {
        if v == 0 {
            problems.push(field, "must be greater than 0");
        }
    }
    if !(1024..=PINGORA_MAX_HEAD).contains(&raw.max_head_bytes) {
        problems.push(
            "clients.limits.max_head_bytes",
            format!("must be between 1024 and {PINGORA_MAX_HEAD} (Pingora's own ceiling)"),
        );
    }
    ClientLimits {
        head_timeout: Duration::from_millis(raw.head_timeout_ms),
        idle_timeout: Duration::from_millis(raw.idle_timeout_ms),
        max_head_bytes: raw.max_head_bytes,
        body_timeout: Duration::from_millis(raw.body_timeout_ms),
        send_timeout: Duration::from_millis(raw.send_timeout_ms),
        max_connections: raw.max_connections,
        max_requests_per_connection: raw.max_requests_per_connection,
    }
}
