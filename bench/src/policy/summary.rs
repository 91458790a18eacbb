//! The figures of one run, computed from the simulators' own counters and the client's
//! observations, never from the gateway's metrics (which are what the policies change).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use spillway_sim::SimStats;

use super::config::{STANDARD_INPUT_PER_MILLION, STANDARD_OUTPUT_PER_MILLION};
use super::gateway::pick_metrics;
use super::load::Class;
use super::run::{Measured, Outcome};

#[derive(Debug, Clone)]
pub struct Summary {
    pub policy: String,
    pub requests: usize,
    /// Mean of the PTU bucket's level sampled every 100 ms, percent.
    pub ptu_utilization_mean: f64,
    pub ptu_utilization_max: f64,
    /// PTU tokens served over what it could have served in the schedule's minutes.
    pub ptu_use_of_capacity: f64,
    pub ptu_tokens: u64,
    pub standard_tokens: u64,
    pub standard_share: f64,
    pub standard_cost: f64,
    pub interactive: Latency,
    pub batch: Latency,
    pub client_429: usize,
    /// Non-200 answers other than 429, plus requests without an answer.
    pub other_errors: usize,
    pub by_status: BTreeMap<String, usize>,
    pub held: usize,
    /// Answers with `x-spillway-spillover`.
    pub spilled: usize,
    /// Answers that name a Standard deployment in `x-ms-deployment-name`.
    pub served_by_standard: usize,
    pub ptu_429: u64,
    pub standard_429: u64,
    pub errors_sample: Vec<String>,
    pub metric_lines: Vec<String>,
    pub metric_totals: Vec<(String, f64)>,
    pub wall: Duration,
}

/// Client-side end-to-end latency of the 200 answers of one class, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub n: usize,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

fn latency(outcomes: &[Outcome], class: Class) -> Latency {
    let mut v: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.class == class && o.status == Some(200))
        .map(|o| o.latency.as_secs_f64())
        .collect();
    v.sort_by(f64::total_cmp);
    Latency {
        n: v.len(),
        p50: percentile(&v, 0.50),
        p99: percentile(&v, 0.99),
    }
}

fn tokens(s: &SimStats) -> u64 {
    s.prompt_tokens + s.completion_tokens
}

/// The Standard sims serve no cached prompts, so the cached-input price never applies.
pub fn standard_cost(stats: &[SimStats]) -> f64 {
    stats
        .iter()
        .map(|s| {
            s.prompt_tokens as f64 * STANDARD_INPUT_PER_MILLION / 1e6
                + s.completion_tokens as f64 * STANDARD_OUTPUT_PER_MILLION / 1e6
        })
        .sum()
}

pub fn summarize(policy: &str, m: &Measured, ptu_tpm: u64, seconds: u64) -> Summary {
    let ptu_tokens = tokens(&m.ptu);
    let standard_tokens: u64 = m.standard.iter().map(tokens).sum();
    let total = (ptu_tokens + standard_tokens).max(1);
    let mut by_status = BTreeMap::new();
    let mut errors_sample = Vec::new();
    for o in &m.outcomes {
        let key = match (o.status, &o.error) {
            (Some(s), _) => s.to_string(),
            (None, Some(e)) if e.starts_with("no answer") => "timeout".to_string(),
            (None, _) => "transport".to_string(),
        };
        *by_status.entry(key).or_insert(0) += 1;
        if let (Some(e), true) = (&o.error, errors_sample.len() < 5) {
            errors_sample.push(e.clone());
        }
    }
    let client_429 = by_status.get("429").copied().unwrap_or(0);
    let ok = by_status.get("200").copied().unwrap_or(0);
    let samples = &m.utilization_samples;
    let (lines, totals) = pick_metrics(&m.metrics);
    Summary {
        policy: policy.to_string(),
        requests: m.outcomes.len(),
        ptu_utilization_mean: samples.iter().sum::<f64>() / samples.len().max(1) as f64,
        ptu_utilization_max: samples.iter().copied().fold(0.0, f64::max),
        ptu_use_of_capacity: ptu_tokens as f64 / (ptu_tpm as f64 * seconds as f64 / 60.0),
        ptu_tokens,
        standard_tokens,
        standard_share: standard_tokens as f64 / total as f64,
        standard_cost: standard_cost(&m.standard),
        interactive: latency(&m.outcomes, Class::Interactive),
        batch: latency(&m.outcomes, Class::Batch),
        client_429,
        other_errors: m.outcomes.len() - ok - client_429,
        by_status,
        held: m.outcomes.iter().filter(|o| o.held).count(),
        spilled: m.outcomes.iter().filter(|o| o.spillover).count(),
        served_by_standard: m
            .outcomes
            .iter()
            .filter(|o| {
                o.deployment
                    .as_deref()
                    .is_some_and(|d| super::config::STANDARD_NAMES.contains(&d))
            })
            .count(),
        ptu_429: m.ptu.throttled_429,
        standard_429: m.standard.iter().map(|s| s.throttled_429).sum(),
        errors_sample,
        metric_lines: lines,
        metric_totals: totals,
        wall: m.wall,
    }
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

impl Summary {
    /// The JSON line printed on stdout.
    pub fn json(&self) -> Value {
        let lat = |l: &Latency| {
            json!({
                "n": l.n,
                "p50_s": l.p50.map(|x| round(x, 3)),
                "p99_s": l.p99.map(|x| round(x, 3))
            })
        };
        json!({
            "policy": self.policy,
            "requests": self.requests,
            "ptu_utilization_mean_pct": round(self.ptu_utilization_mean, 2),
            "ptu_utilization_max_pct": round(self.ptu_utilization_max, 2),
            "ptu_use_of_capacity": round(self.ptu_use_of_capacity, 4),
            "ptu_tokens": self.ptu_tokens,
            "standard_tokens": self.standard_tokens,
            "standard_share": round(self.standard_share, 4),
            "standard_cost_usd": round(self.standard_cost, 6),
            "interactive": lat(&self.interactive),
            "batch": lat(&self.batch),
            "client_429": self.client_429,
            "other_errors": self.other_errors,
            "by_status": self.by_status,
            "held": self.held,
            "spilled": self.spilled,
            "served_by_standard": self.served_by_standard,
            "ptu_429_at_sim": self.ptu_429,
            "standard_429_at_sim": self.standard_429,
            "gateway_metric_totals": self.metric_totals.iter().cloned().collect::<BTreeMap<_, _>>(),
            "wall_s": round(self.wall.as_secs_f64(), 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[3.0], 0.99), Some(3.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn cost_of_a_million_each() {
        let s = SimStats {
            prompt_tokens: 1_000_000,
            completion_tokens: 1_000_000,
            ..SimStats::default()
        };
        assert!((standard_cost(&[s]) - 0.825).abs() < 1e-9);
    }
}
