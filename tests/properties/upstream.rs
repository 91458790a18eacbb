//! Numbers from the upstream (retry hints, usage) and what they reach: a deployment's
//! cool-down, its admitted-token window, a tenant's budget. None may panic, wrap, or impose
//! more than the policy allows.

use pingora::http::ResponseHeader;
use proptest::prelude::*;
use spillway::governance::budget::{BudgetLimits, BudgetStore, LocalBudget, OverBudget, MAX_WAIT};
use spillway::proxy::attempt::retry_after;
use spillway::routing::state::{DeploymentState, RoutingPolicy};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A retry hint as an upstream may write it: numbers of every size and sign, and garbage.
fn hint() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:e}")),
        prop::sample::select(
            &[
                "1e300",
                "-1e300",
                "99999999999999999999",
                "NaN",
                "inf",
                "-inf",
                "-0",
                "0",
                "1e-300",
                "86400",
                " 5 ",
                "Wed, 21 Oct 2015 07:28:00 GMT",
                "",
                "0x10",
            ][..]
        )
        .prop_map(String::from),
        "[ -~]{0,24}",
    ]
}

fn answer(headers: &[(&'static str, Option<String>)]) -> ResponseHeader {
    let mut r = ResponseHeader::build(429, None).unwrap();
    for (name, value) in headers {
        if let Some(v) = value {
            // A value no header can hold cannot arrive either.
            let _ = r.insert_header(*name, v.as_str());
        }
    }
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn a_retry_hint_never_cools_a_deployment_beyond_the_policy(
        after in prop::option::of(hint()),
        after_ms in prop::option::of(hint()),
        max_cooldown_ms in prop_oneof![0u64..120_000, Just(u64::MAX)],
        uptime_ms in prop_oneof![0u64..1_000_000, Just(u64::MAX / 4)],
    ) {
        let wait = retry_after(&answer(&[("retry-after", after), ("retry-after-ms", after_ms)]));
        let policy = RoutingPolicy {
            max_cooldown: Duration::from_millis(max_cooldown_ms),
            ..RoutingPolicy::default()
        };
        let state = DeploymentState::new();
        // `checked_add`: a far-off instant the platform cannot represent is no case to test.
        let Some(now) = Instant::now().checked_add(Duration::from_millis(uptime_ms)) else {
            return Ok(());
        };
        state.on_throttled(wait, &policy, now);
        let left = state.cooldown_left(now).unwrap_or_default();
        prop_assert!(left <= policy.max_cooldown && left <= wait, "{left:?} {wait:?}");
        let shown = state.status(&policy, now)["cooldown_ms"].as_u64().unwrap();
        prop_assert!(shown <= max_cooldown_ms);
    }

    #[test]
    fn the_admitted_window_never_wraps_whatever_usage_says(
        leases in prop::collection::vec(
            (prop_oneof![any::<u64>(), Just(u64::MAX)], prop::option::of(any::<u64>()), 0u8..3),
            1..12,
        ),
    ) {
        let state = Arc::new(DeploymentState::new());
        let now = Instant::now();
        // What the window truly holds; it saturates at i64::MAX, so only a sum that never
        // came near that is exact.
        let (mut held, mut ever_huge) = (0u128, false);
        for (tokens, actual, end) in leases {
            ever_huge |= tokens >= 1 << 50 || actual.is_some_and(|a| a >= 1 << 50);
            let before = state.admitted_tokens(now);
            let lease = state.lease(tokens, now);
            // A wrap shows as a sum that falls when tokens are added.
            prop_assert!(state.admitted_tokens(now) >= before);
            let clamp = |n: u64| u128::from(n.min(i64::MAX as u64));
            match end {
                0 => lease.release(),
                1 => {
                    lease.settle(actual);
                    held += clamp(actual.unwrap_or(tokens));
                }
                _ => {
                    drop(lease);
                    held += clamp(tokens);
                }
            }
            let sum = u128::from(state.admitted_tokens(now));
            prop_assert!(sum <= held.min(i64::MAX as u128), "{sum} > {held}: wrapped or invented");
            if !ever_huge {
                prop_assert_eq!(sum, held);
            }
            prop_assert_eq!(state.inflight(), 0);
        }
    }

    #[test]
    fn no_usage_makes_a_tenant_wait_beyond_the_bound(
        tpm in prop_oneof![1u64..1_000_000, Just(u64::MAX)],
        rpm in prop::option::of(1u64..10_000),
        steps in prop::collection::vec((any::<u64>(), any::<u64>(), 0u64..120_000), 1..10),
    ) {
        let budget = LocalBudget::default();
        let limits = BudgetLimits { tokens_per_minute: Some(tpm), requests_per_minute: rpm };
        let mut now = Instant::now();
        for (tokens, actual, later_ms) in steps {
            let asked = tokens % tpm.saturating_add(1);
            match budget.admit(limits, asked, now) {
                Ok(left) => {
                    prop_assert!(left.tokens.unwrap() <= tpm);
                    // The upstream reports any usage at all for what was admitted.
                    budget.settle(limits, asked, actual, now);
                }
                Err(OverBudget::RetryAfter { wait, .. }) => prop_assert!(wait <= MAX_WAIT),
                Err(OverBudget::TooLarge { .. }) => prop_assert!(asked > tpm),
            }
            now += Duration::from_millis(later_ms);
        }
        // After the longest wait, a request of the whole budget fits again.
        prop_assert!(budget.admit(limits, tpm, now + MAX_WAIT).is_ok());
    }
}
