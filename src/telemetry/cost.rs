//! Cost metrics: what served requests cost, the part spillover caused, and what each priced
//! provisioned deployment's hour costs and leaves unused. A request adds its cost to the
//! counters; the paid hours are accrued off the request path, when a config is installed and
//! at every scrape.

use parking_lot::Mutex;
use prometheus::{CounterVec, Opts, Registry};
use std::collections::HashMap;
use tokio::time::Instant;

/// The cost families and the ledger of paid hours.
pub struct CostMetrics {
    /// Every served request's cost, a provisioned deployment's at its amortised price.
    pub cost: CounterVec,
    /// The part of `cost` served by a pool other than the model's first.
    pub spillover: CounterVec,
    /// Per priced provisioned deployment, the amortised cost of the tokens it served.
    pub ptu_served: CounterVec,
    /// Per priced provisioned deployment, its price per hour times the hours it was priced.
    pub ptu_paid: CounterVec,
    /// The part of `ptu_paid` its served tokens did not use.
    pub ptu_unused: CounterVec,
    /// By (pool, deployment): names, not the deployment's state, so that a reload which
    /// rebuilds the state (a changed endpoint) neither restarts nor repeats its hours.
    ledger: Mutex<HashMap<(String, String), Hours>>,
}

/// One provisioned deployment's accrual so far.
#[derive(Debug)]
struct Hours {
    /// Its price per hour in the installed config; `None` while no config prices it, so the
    /// time it was away is not paid.
    per_hour: Option<f64>,
    /// When its hours were last accrued.
    at: Instant,
    /// `ptu_served` at that time.
    served_seen: f64,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    let c = CounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(c.clone())).expect("unique metric name");
    c
}

impl CostMetrics {
    pub fn new(r: &Registry) -> Self {
        let usage = &["tenant", "model", "pool", "class"];
        let ptu = &["pool", "deployment"];
        CostMetrics {
            cost: counter(
                r,
                "cost_usd_total",
                "Cost of served requests in US dollars (provisioned: amortised over capacity).",
                usage,
            ),
            spillover: counter(
                r,
                "spillover_cost_usd_total",
                "The part of cost_usd_total served by a later pool than the model's first.",
                usage,
            ),
            ptu_served: counter(
                r,
                "ptu_served_usd_total",
                "Amortised cost of the tokens each priced provisioned deployment served.",
                ptu,
            ),
            ptu_paid: counter(
                r,
                "ptu_paid_usd_total",
                "Price per hour of each priced provisioned deployment, times the hours priced.",
                ptu,
            ),
            ptu_unused: counter(
                r,
                "ptu_unused_usd_total",
                "The part of ptu_paid_usd_total not used by served tokens (never below zero).",
                ptu,
            ),
            ledger: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one served request that cost `usd`, labelled by `usage` (tenant, model, pool,
    /// class); `ptu` names its provisioned deployment when it was served by one.
    pub fn served(&self, usage: &[&str; 4], usd: f64, spillover: bool, ptu: Option<[&str; 2]>) {
        self.cost.with_label_values(usage).inc_by(usd);
        if spillover {
            self.spillover.with_label_values(usage).inc_by(usd);
        }
        if let Some(ptu) = ptu {
            self.ptu_served.with_label_values(&ptu).inc_by(usd);
        }
    }

    /// Accrues every known deployment's hours up to `now` at the price it had, then takes the
    /// prices of `priced` (pool, deployment, price per hour): the deployments the installed
    /// config prices by the hour. One not seen before starts now; one no longer listed stops.
    ///
    /// Unused is clamped per accrual: a deployment that served more than its share over one
    /// interval (a PTU briefly past 100%) has none unused there, and the excess is not set
    /// against other intervals, since capacity left idle cannot be saved for later.
    pub fn accrue<'a>(&self, priced: impl Iterator<Item = (&'a str, &'a str, f64)>, now: Instant) {
        let mut ledger = self.ledger.lock();
        for ((pool, deployment), h) in ledger.iter_mut() {
            let labels = [pool.as_str(), deployment.as_str()];
            let served = self.ptu_served.with_label_values(&labels).get();
            let hours = now.saturating_duration_since(h.at).as_secs_f64() / 3600.0;
            let paid = h.per_hour.map_or(0.0, |p| p * hours);
            let used = (served - h.served_seen).max(0.0);
            self.ptu_paid.with_label_values(&labels).inc_by(paid);
            self.ptu_unused
                .with_label_values(&labels)
                .inc_by((paid - used).max(0.0));
            (h.at, h.served_seen, h.per_hour) = (now, served, None);
        }
        for (pool, deployment, per_hour) in priced {
            let key = (pool.to_string(), deployment.to_string());
            let served = self.ptu_served.with_label_values(&[pool, deployment]).get();
            let h = ledger.entry(key).or_insert(Hours {
                per_hour: None,
                at: now,
                served_seen: served,
            });
            h.per_hour = Some(per_hour);
            // Shown from the start, so that rate() has a first sample.
            self.ptu_paid.with_label_values(&[pool, deployment]);
            self.ptu_unused.with_label_values(&[pool, deployment]);
        }
    }

    /// Accrues for `config`'s priced provisioned deployments.
    pub fn accrue_config(&self, config: &crate::config::Config, now: Instant) {
        let priced = config.deployments().filter_map(|(pool, d)| {
            let per_hour = pool.price.per_hour()?;
            d.capacity_tpm?;
            Some((pool.name.as_str(), d.name.as_str(), per_hour))
        });
        self.accrue(priced, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::core::Collector;
    use std::time::Duration;

    fn get(c: &CounterVec) -> f64 {
        c.with_label_values(&["ptu", "east"]).get()
    }

    #[tokio::test(start_paused = true)]
    async fn paid_hours_accrue_at_the_price_they_had_and_unused_never_goes_back() {
        let m = CostMetrics::new(&Registry::new());
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        m.accrue([("ptu", "east", 10.0)].into_iter(), t0);
        assert_eq!(get(&m.ptu_paid), 0.0);
        // Half an hour, $2 of it used: $5 paid, $3 unused.
        m.served(
            &["t", "m", "ptu", "batch"],
            2.0,
            false,
            Some(["ptu", "east"]),
        );
        m.accrue([("ptu", "east", 10.0)].into_iter(), t0 + hour / 2);
        assert!((get(&m.ptu_paid) - 5.0).abs() < 1e-9);
        assert!((get(&m.ptu_unused) - 3.0).abs() < 1e-9);
        assert!((get(&m.ptu_served) - 2.0).abs() < 1e-9);
        // A reload doubles the price: the next half hour is paid at $20, and served $12
        // there is over its $10 share: nothing unused, and the $3 earlier stays.
        m.accrue([("ptu", "east", 20.0)].into_iter(), t0 + hour / 2);
        m.served(
            &["t", "m", "ptu", "batch"],
            12.0,
            false,
            Some(["ptu", "east"]),
        );
        m.accrue([("ptu", "east", 20.0)].into_iter(), t0 + hour);
        assert!((get(&m.ptu_paid) - 15.0).abs() < 1e-9);
        assert!((get(&m.ptu_unused) - 3.0).abs() < 1e-9);
        // Removed for an hour, then back: the hour away is not paid; a reload that keeps it
        // (the same names) neither restarts nor repeats it.
        m.accrue(std::iter::empty(), t0 + hour);
        m.accrue([("ptu", "east", 20.0)].into_iter(), t0 + 2 * hour);
        m.accrue([("ptu", "east", 20.0)].into_iter(), t0 + 2 * hour);
        assert!((get(&m.ptu_paid) - 15.0).abs() < 1e-9);
        m.accrue(
            [("ptu", "east", 20.0)].into_iter(),
            t0 + 2 * hour + hour / 4,
        );
        assert!((get(&m.ptu_paid) - 20.0).abs() < 1e-9);
        assert!((get(&m.ptu_unused) - 8.0).abs() < 1e-9);
    }

    #[test]
    fn a_request_counts_its_cost_and_its_spillover_part() {
        let m = CostMetrics::new(&Registry::new());
        let l = ["t", "m", "std", "interactive"];
        m.served(&l, 0.25, true, None);
        m.served(&l, 0.5, false, None);
        assert!((m.cost.with_label_values(&l).get() - 0.75).abs() < 1e-12);
        assert!((m.spillover.with_label_values(&l).get() - 0.25).abs() < 1e-12);
        assert_eq!(m.ptu_served.collect()[0].get_metric().len(), 0);
    }
}
