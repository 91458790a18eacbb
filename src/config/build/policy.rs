//! The parts of the file about who calls and what they may ask for: tenants (keys, budgets,
//! cap overrides) and the global governance settings.

use super::{expand_secret, Problems};
use crate::config::file::{CapsFile, OnExceedFile};
use crate::config::runtime::*;
use crate::config::KeyDigest;
use crate::governance::adaptive::AdaptivePolicy;
use crate::governance::budget::{BudgetLimits, LocalBudget};
use crate::governance::caps::{CapPolicy, OnExceed};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Tenant keys shorter than this get a warning (not an error: existing files stay valid).
pub(super) const MIN_KEY_CHARS: usize = 16;

fn on_exceed(v: OnExceedFile) -> OnExceed {
    match v {
        OnExceedFile::Clamp => OnExceed::Clamp,
        OnExceedFile::Reject => OnExceed::Reject,
    }
}

pub(super) fn build_caps(at: &str, c: CapsFile, problems: &mut Problems) -> CapOverrides {
    for (field, v) in [
        ("sync_max_tokens", c.sync_max_tokens),
        ("stream_max_tokens", c.stream_max_tokens),
        ("default_max_tokens", c.default_max_tokens),
    ] {
        if v == Some(0) {
            problems.push(format!("{at}.caps.{field}"), "must be greater than 0");
        }
    }
    CapOverrides {
        sync_max_tokens: c.sync_max_tokens,
        stream_max_tokens: c.stream_max_tokens,
        default_max_tokens: c.default_max_tokens,
        on_exceed: c.on_exceed.map(on_exceed),
    }
}

pub(super) fn build_tenants(
    raw: Vec<crate::config::file::TenantFile>,
    lookup: &dyn Fn(&str) -> Option<String>,
    previous: Option<&Config>,
    initial_share: u32,
    problems: &mut Problems,
) -> Tenants {
    if raw.is_empty() {
        problems.push("tenants", "at least one tenant is required");
    }
    let mut names = HashSet::new();
    let mut seen_keys: HashMap<KeyDigest, String> = HashMap::new();
    let mut out = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        if t.name.is_empty() {
            problems.push(format!("tenants[{i}].name"), "is empty");
        } else if !names.insert(t.name.clone()) {
            problems.push(
                format!("tenants[{i}].name"),
                format!("duplicate tenant `{}`", t.name),
            );
        }
        if t.api_keys.is_empty() && t.entra.is_none() {
            problems.push(
                format!("tenants[{i}].api_keys"),
                "at least one key (or an `entra` identity) is required",
            );
        }
        let mut keys = Vec::new();
        for (k, key) in t.api_keys.iter().enumerate() {
            let field = format!("tenants[{i}].api_keys[{k}]");
            if let Some(secret) = expand_secret(&field, key, lookup, problems) {
                if secret.expose().chars().count() < MIN_KEY_CHARS {
                    problems.warn(
                        &field,
                        format!("shorter than {MIN_KEY_CHARS} characters: easy to guess, and its stored digest easy to reverse"),
                    );
                }
                // Only the digest outlives this function; the plaintext is dropped here.
                let digest = KeyDigest::of(secret.expose());
                if let Some(owner) = seen_keys.get(&digest) {
                    problems.push(field, format!("the same key is already given to `{owner}`"));
                } else {
                    seen_keys.insert(digest.clone(), t.name.clone());
                    keys.push(digest);
                }
            }
        }
        for (field, v) in [
            ("tokens_per_minute", t.tokens_per_minute),
            ("requests_per_minute", t.requests_per_minute),
        ] {
            if v == Some(0) {
                problems.push(
                    format!("tenants[{i}].{field}"),
                    "must be greater than 0 (omit it for no limit)",
                );
            }
        }
        let caps = build_caps(&format!("tenants[{i}]"), t.caps, problems);
        // The budget's level carries over a reload, so a reload is no way to reset it.
        let before = previous.and_then(|c| c.tenants.all().iter().find(|p| p.name == t.name));
        let budget = before
            .map(|p| p.budget.clone())
            .unwrap_or_else(|| Arc::new(LocalBudget::with_share(initial_share)));
        // Sequential ids spread over the failure-source bits; addresses (used before) did
        // not: two tenants' budgets allocated side by side could share a bit.
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = before.map_or_else(
            || NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            |p| p.id,
        );
        let class =
            super::classes::class_of(&format!("tenants[{i}]"), t.class.as_deref(), problems);
        let tenant = Tenant {
            name: t.name,
            class,
            limits: BudgetLimits {
                tokens_per_minute: t.tokens_per_minute,
                requests_per_minute: t.requests_per_minute,
            },
            caps,
            budget,
            id,
        };
        out.push((Arc::new(tenant), keys));
    }
    Tenants::new(out)
}

pub(super) fn build_governance(
    g: crate::config::file::GovernanceFile,
    sync_window: Duration,
    problems: &mut Problems,
) -> Governance {
    for (field, v) in [
        ("governance.sync_max_tokens", g.sync_max_tokens),
        ("governance.stream_max_tokens", g.stream_max_tokens),
        ("governance.default_max_tokens", g.default_max_tokens),
    ] {
        if v == 0 {
            problems.push(field, "must be greater than 0");
        }
    }
    if !(1024..=64 * 1024 * 1024).contains(&g.max_body_bytes) {
        problems.push(
            "governance.max_body_bytes",
            "must be between 1024 and 67108864 (64 MiB)",
        );
    }
    if !(g.adaptive_safety > 0.0 && g.adaptive_safety <= 1.0) {
        problems.push(
            "governance.adaptive_safety",
            "must be above 0 and at most 1",
        );
    }
    Governance {
        caps: CapPolicy {
            sync_max_tokens: g.sync_max_tokens,
            stream_max_tokens: g.stream_max_tokens,
            default_max_tokens: g.default_max_tokens,
            on_exceed: on_exceed(g.on_exceed),
        },
        max_body_bytes: g.max_body_bytes,
        adaptive: AdaptivePolicy {
            window: sync_window,
            safety: g.adaptive_safety,
            floor: g.adaptive_min_tokens,
        },
    }
}
