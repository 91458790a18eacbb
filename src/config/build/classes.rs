//! The parts of the file about priority: the classes, and what a pool's tokens cost.

use super::Problems;
use crate::config::file::{ClassFile, PriceFile};
use crate::routing::class::{Class, ClassPolicy, Classes};
use crate::routing::price::Price;
use crate::routing::upstreams::PoolKind;
use std::collections::BTreeMap;
use std::time::Duration;

/// The longest hold a class may ask for: a held request keeps its client connection and its
/// budget charge, and a synchronous client gives up after a minute or two anyway.
const MAX_HOLD: Duration = Duration::from_secs(120);

pub(super) fn build_classes(raw: BTreeMap<String, ClassFile>, problems: &mut Problems) -> Classes {
    let mut classes = Classes::default();
    for (name, c) in raw {
        let at = format!("classes.{name}");
        let Some(class) = Class::parse(&name) else {
            problems.push(
                at,
                "unknown class: the classes are interactive, standard and batch",
            );
            continue;
        };
        if let Some(v) = c.spill_at_utilization {
            if !(v > 0.0 && v <= 100.0) {
                problems.push(
                    format!("{at}.spill_at_utilization"),
                    "must be a percentage above 0 and at most 100",
                );
            }
        }
        if let Some(v) = c.shed_at_utilization {
            if !(v > 0.0 && v <= 1000.0) {
                problems.push(
                    format!("{at}.shed_at_utilization"),
                    "must be a percentage above 0 (at most 1000)",
                );
            }
        }
        let max_hold = Duration::from_millis(c.max_hold_ms.unwrap_or(0));
        if max_hold > MAX_HOLD {
            problems.push(
                format!("{at}.max_hold_ms"),
                format!("must be at most {} (two minutes)", MAX_HOLD.as_millis()),
            );
        }
        classes.0[class.index()] = ClassPolicy {
            spill_at: c.spill_at_utilization,
            max_hold,
            shed_at: c.shed_at_utilization,
        };
    }
    classes
}

pub(super) fn class_of(at: &str, raw: Option<&str>, problems: &mut Problems) -> Class {
    let Some(name) = raw else {
        return Class::default();
    };
    Class::parse(name).unwrap_or_else(|| {
        problems.push(
            format!("{at}.class"),
            "unknown class: the classes are interactive, standard and batch",
        );
        Class::default()
    })
}

/// A pool's price. A provisioned pool is paid by the hour and its hour is spread over its
/// deployments' capacity, so each of them must say what it is.
pub(super) fn build_price(
    at: &str,
    kind: PoolKind,
    raw: Option<PriceFile>,
    capacities_known: bool,
    problems: &mut Problems,
) -> Price {
    let Some(p) = raw else {
        return Price::Unpriced;
    };
    let at = format!("{at}.price");
    for (field, v) in [
        ("per_hour", p.per_hour),
        ("input_per_million", p.input_per_million),
        ("cached_input_per_million", p.cached_input_per_million),
        ("output_per_million", p.output_per_million),
    ] {
        if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
            problems.push(format!("{at}.{field}"), "must be a price of 0 or more");
        }
    }
    let per_token = p.input_per_million.is_some()
        || p.cached_input_per_million.is_some()
        || p.output_per_million.is_some();
    match kind {
        PoolKind::Provisioned => {
            if per_token {
                problems.push(
                    at.as_str(),
                    "a provisioned pool is priced per_hour, not per token",
                );
            }
            let Some(hour) = p.per_hour else {
                problems.push(
                    format!("{at}.per_hour"),
                    "is required for a provisioned pool",
                );
                return Price::Unpriced;
            };
            if !capacities_known {
                problems.push(
                    format!("{at}.per_hour"),
                    "needs capacity_tokens_per_minute on every deployment of the pool: the hour is spread over the tokens it can serve",
                );
            }
            Price::PerHour(hour)
        }
        PoolKind::Standard => {
            if p.per_hour.is_some() {
                problems.push(
                    format!("{at}.per_hour"),
                    "a Standard pool is priced per million tokens",
                );
            }
            let (Some(input), Some(output)) = (p.input_per_million, p.output_per_million) else {
                problems.push(
                    at.as_str(),
                    "a Standard pool needs input_per_million and output_per_million",
                );
                return Price::Unpriced;
            };
            Price::PerToken {
                input,
                cached_input: p.cached_input_per_million.unwrap_or(input),
                output,
            }
        }
    }
}
