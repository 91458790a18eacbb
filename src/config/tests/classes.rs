//! Priority classes and prices: defaults that change nothing, validation with the field named.

use super::*;
use crate::routing::class::Class;
use crate::routing::price::Price;
use std::time::Duration;

#[test]
fn without_classes_every_tenant_is_standard_and_nothing_is_held() {
    let c = parse_str(GOOD).unwrap().config;
    assert_eq!(c.tenants.all()[0].class, Class::Standard);
    assert!(!c.classes.any_hold());
    assert_eq!(c.classes.get(Class::Batch).spill_at, None);
    assert_eq!(c.pools[0].price, Price::Unpriced);
    assert_eq!(c.pools[0].hold_queue, 256);
}

#[test]
fn classes_tenants_and_prices_are_read() {
    let text = GOOD
        .replace(
            "    api_keys: [\"${SEARCH_KEY}\", \"literal-key\"]\n",
            "    api_keys: [\"${SEARCH_KEY}\", \"literal-key\"]\n    class: batch\n",
        )
        .replace(
            "        api_key: \"${EASTUS_KEY}\"\n",
            "        api_key: \"${EASTUS_KEY}\"\n        capacity_tokens_per_minute: 60000\n    hold_queue: 8\n    price: { per_hour: 2.5 }\n",
        )
        .replace(
            "        api_key: k2\n",
            "        api_key: k2\n    price: { input_per_million: 0.15, output_per_million: 0.6 }\n",
        )
        + "classes:\n  batch: { spill_at_utilization: 80, max_hold_ms: 20000, shed_at_utilization: 100 }\n";
    let c = parse_str(&text).unwrap().config;
    assert_eq!(c.tenants.all()[0].class, Class::Batch);
    let batch = c.classes.get(Class::Batch);
    assert_eq!(batch.spill_at, Some(80.0));
    assert_eq!(batch.max_hold, Duration::from_secs(20));
    assert_eq!(batch.shed_at, Some(100.0));
    assert_eq!(c.classes.get(Class::Interactive).max_hold, Duration::ZERO);
    assert_eq!(c.pools[0].hold_queue, 8);
    assert_eq!(c.pools[0].price, Price::PerHour(2.5));
    assert_eq!(
        c.pools[1].price,
        Price::PerToken {
            input: 0.15,
            cached_input: 0.15,
            output: 0.6
        }
    );
}

#[test]
fn bad_classes_and_prices_name_the_field() {
    let text = GOOD.replace(
        "    api_keys: [\"${SEARCH_KEY}\", \"literal-key\"]\n",
        "    api_keys: [\"${SEARCH_KEY}\", \"literal-key\"]\n    class: gold\n",
    ) + "classes:\n  gold: {}\n  batch: { spill_at_utilization: 0, max_hold_ms: 999999, shed_at_utilization: -1 }\n";
    let p = problems(&text);
    for field in [
        "tenants[0].class",
        "classes.gold",
        "classes.batch.spill_at_utilization",
        "classes.batch.max_hold_ms",
        "classes.batch.shed_at_utilization",
    ] {
        assert!(p.iter().any(|(f, _)| f == field), "{field} in {p:?}");
    }
    // A PTU's hour is spread over its capacity, which this one does not state; a Standard
    // pool is not priced by the hour.
    let text = GOOD
        .replace(
            "    spill_at_utilization: 85\n",
            "    spill_at_utilization: 85\n    price: { per_hour: 2 }\n",
        )
        .replace(
            "        api_key: k2\n",
            "        api_key: k2\n    price: { per_hour: 1, output_per_million: .nan }\n",
        );
    let p = problems(&text);
    for field in [
        "pools[0].price.per_hour",
        "pools[1].price.per_hour",
        "pools[1].price.output_per_million",
        "pools[1].price",
    ] {
        assert!(p.iter().any(|(f, _)| f == field), "{field} in {p:?}");
    }
}
