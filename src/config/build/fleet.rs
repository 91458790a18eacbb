//! The `fleet` section: where the shared Redis is and how often the instances talk to it.

use super::{expand_secret, Problems};
use crate::config::file::FleetFile;
use crate::config::runtime::Fleet;
use std::time::Duration;

pub(super) fn build_fleet(
    raw: Option<FleetFile>,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<Fleet> {
    let raw = raw?;
    let url = expand_secret("fleet.redis_url", &raw.redis_url, lookup, problems)?;
    let scheme_ok = ["redis://", "rediss://"]
        .iter()
        .any(|s| url.expose().starts_with(s));
    // The parser's own message may quote the URL, password and all: say only what is wrong.
    if !scheme_ok || redis::Client::open(url.expose()).is_err() {
        problems.push(
            "fleet.redis_url",
            "must be a redis:// or rediss:// URL such as rediss://:${REDIS_PASSWORD}@my-cache.redis.cache.windows.net:6380",
        );
    }
    let key_prefix = raw.key_prefix.unwrap_or_else(|| "spillway".into());
    // Keys are `{prefix}:...`: a brace would break the hash tag that keeps them in one slot.
    if key_prefix.is_empty() || key_prefix.contains(['{', '}']) || key_prefix.len() > 64 {
        problems.push(
            "fleet.key_prefix",
            "must be 1 to 64 characters without braces",
        );
    }
    let instance_id = raw.instance_id.unwrap_or_else(default_instance_id);
    if instance_id.is_empty() || instance_id.len() > 128 {
        problems.push("fleet.instance_id", "must be 1 to 128 characters");
    }
    let sync_ms = raw.sync_interval_ms.unwrap_or(100);
    if !(10..=10_000).contains(&sync_ms) {
        problems.push("fleet.sync_interval_ms", "must be between 10 and 10000");
    }
    // Five missed exchanges: long enough for a GC-free process to never drop out by accident,
    // short enough that a dead instance's share comes back within half a second by default.
    let member_ms = raw.member_timeout_ms.unwrap_or(sync_ms.saturating_mul(5));
    if member_ms < sync_ms.saturating_mul(2) {
        problems.push(
            "fleet.member_timeout_ms",
            "must be at least twice sync_interval_ms, or members drop out between exchanges",
        );
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(sync_ms.clamp(50, 1_000));
    if timeout_ms == 0 {
        problems.push("fleet.timeout_ms", "must be greater than 0");
    }
    let expected_members = raw.expected_members.unwrap_or(1);
    if expected_members == 0 {
        problems.push("fleet.expected_members", "must be at least 1");
    }
    Some(Fleet {
        redis_url: url,
        key_prefix,
        instance_id,
        sync_interval: Duration::from_millis(sync_ms),
        member_timeout: Duration::from_millis(member_ms),
        timeout: Duration::from_millis(timeout_ms),
        expected_members,
    })
}

/// Host name and process id: unique per pod (Kubernetes sets the host name to the pod's).
fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "spillway".into());
    format!("{host}-{}", std::process::id())
}
