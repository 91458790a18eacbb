//! The `clients` section: the Front Door id, the trusted proxies and the failed-authentication
//! limit.

use super::{expand_secret, Problems};
use crate::config::file::ClientsFile;
use crate::config::runtime::Clients;
use crate::governance::auth_failures::AuthFailurePolicy;
use ipnet::IpNet;
use std::net::IpAddr;
use std::time::Duration;

pub(super) fn build_clients(
    raw: ClientsFile,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Clients {
    let front_door_id = raw
        .front_door_id
        .and_then(|v| expand_secret("clients.front_door_id", &v, lookup, problems));
    let mut trusted_proxies = Vec::with_capacity(raw.trusted_proxies.len());
    for (i, entry) in raw.trusted_proxies.iter().enumerate() {
        // A bare address is a network of one.
        match entry
            .parse::<IpNet>()
            .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        {
            Ok(net) => trusted_proxies.push(net.trunc()),
            Err(_) => problems.push(
                format!("clients.trusted_proxies[{i}]"),
                format!("`{entry}` is not a CIDR such as 10.0.0.0/8 or an IP address"),
            ),
        }
    }
    let a = raw.auth_failures;
    if a.limit > 0 && a.window_ms == 0 {
        problems.push(
            "clients.auth_failures.window_ms",
            "must be greater than 0 (set limit: 0 to turn the limit off)",
        );
    }
    if !(1..=10_000_000).contains(&a.max_addresses) {
        problems.push(
            "clients.auth_failures.max_addresses",
            "must be between 1 and 10000000",
        );
    }
    Clients {
        front_door_id,
        trusted_proxies,
        auth_failures: AuthFailurePolicy {
            limit: a.limit,
            window: Duration::from_millis(a.window_ms),
            max_addresses: a.max_addresses,
        },
    }
}
