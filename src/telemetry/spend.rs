//! The spend rates /status shows, from each deployment's last minute (`routing::cost`): what
//! the gateway costs per hour now (Standard spend plus the provisioned hours paid), how much
//! of it is spillover, and how much of the paid PTU hours the traffic uses.

use crate::routing::cost::Recent;
use crate::routing::price::Price;
use crate::routing::upstreams::Pool;
use serde_json::{json, Value};
use tokio::time::Instant;

/// One pool's figures, in dollars per hour.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Rates {
    /// What the served tokens cost (a provisioned pool's at the amortised price).
    served: f64,
    spillover: f64,
    /// A priced provisioned pool's price per hour, for all its deployments.
    paid: f64,
    /// The part of `paid` not used, deployment by deployment (never below zero).
    unused: f64,
}

impl Rates {
    /// Adds one deployment's last minute.
    fn add(&mut self, price: &Price, recent: Recent) {
        let served = recent.per_hour(recent.spent_usd);
        self.served += served;
        self.spillover += recent.per_hour(recent.spilled_usd);
        if let Some(hour) = price.per_hour() {
            self.paid += hour;
            self.unused += (hour - served).max(0.0);
        }
    }

    /// What the pool costs per hour: its paid hours when provisioned, else its spend.
    fn cost(&self, price: &Price) -> f64 {
        if price.per_hour().is_some() {
            self.paid
        } else {
            self.served
        }
    }
}

fn percent(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| round(part / whole * 100.0, 1e1))
}

/// `x` to `1/scale`: micro-dollars for rates, tenths for percents.
fn round(x: f64, scale: f64) -> f64 {
    (x * scale).round() / scale
}

fn price_kind(price: &Price) -> &'static str {
    match price {
        Price::Unpriced => "unpriced",
        Price::PerToken { .. } => "per_token",
        Price::PerHour(_) => "per_hour",
    }
}

/// The `cost` object of /status.
pub fn status(pools: &[Pool], now: Instant) -> Value {
    let (mut standard, mut spillover, mut paid, mut ptu_served, mut unused) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    let per_pool: Vec<Value> = pools
        .iter()
        .map(|p| {
            let mut r = Rates::default();
            for d in &p.deployments {
                r.add(&p.price, d.state.cost.recent(now));
            }
            spillover += r.spillover;
            match p.price {
                Price::PerHour(_) => {
                    paid += r.paid;
                    ptu_served += r.served;
                    unused += r.unused;
                }
                _ => standard += r.served,
            }
            json!({
                "name": p.name,
                "kind": p.kind.as_str(),
                "price": price_kind(&p.price),
                "per_hour_usd": round(r.cost(&p.price), 1e6),
                "served_per_hour_usd": round(r.served, 1e6),
                "spillover_per_hour_usd": round(r.spillover, 1e6),
                "ptu_use_percent": percent(r.served, r.paid),
            })
        })
        .collect();
    json!({
        "window_seconds": crate::routing::cost::WINDOW.as_secs(),
        "per_hour_usd": round(standard + paid, 1e6),
        "standard_per_hour_usd": round(standard, 1e6),
        "spillover_per_hour_usd": round(spillover, 1e6),
        "ptu_paid_per_hour_usd": round(paid, 1e6),
        "ptu_use_percent": percent(ptu_served, paid),
        "ptu_unused_percent": percent(unused, paid),
        "pools": per_pool,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn minute(spent: f64, spilled: f64) -> Recent {
        Recent {
            spent_usd: spent,
            spilled_usd: spilled,
            span: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_ptu_past_its_share_leaves_nothing_unused_and_others_keep_theirs() {
        let ptu = Price::PerHour(15.0);
        let mut r = Rates::default();
        // $0.125 a minute is $7.50 an hour of $15: half unused.
        r.add(&ptu, minute(0.125, 0.0));
        // $0.5 a minute is $30 an hour: twice its share, none unused.
        r.add(&ptu, minute(0.5, 0.0));
        assert_eq!(r.paid, 30.0);
        assert!((r.served - 37.5).abs() < 1e-9);
        assert!((r.unused - 7.5).abs() < 1e-9);
        assert_eq!(r.cost(&ptu), 30.0);
        assert_eq!(percent(r.unused, r.paid), Some(25.0));
        assert_eq!(percent(r.served, r.paid), Some(125.0));
    }

    #[test]
    fn standard_costs_what_it_serves_and_nothing_is_a_percent_of_nothing() {
        let std = Price::PerToken {
            input: 0.165,
            cached_input: 0.083,
            output: 0.66,
        };
        let mut r = Rates::default();
        r.add(&std, minute(0.01, 0.004));
        assert!((r.cost(&std) - 0.6).abs() < 1e-12);
        assert!((r.spillover - 0.24).abs() < 1e-12);
        assert_eq!((r.paid, r.unused), (0.0, 0.0));
        assert_eq!(percent(r.unused, r.paid), None);
        assert_eq!(price_kind(&Price::Unpriced), "unpriced");
    }
}
