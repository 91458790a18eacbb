//! The load every policy gets: a seeded open-loop schedule of interactive and batch requests
//! whose rate follows an on/off burst shape, generated up front so each policy sees the
//! identical arrivals.

use std::time::Duration;

/// Characters of the one user message: ceil(1188 / 4) + 3 = 300 prompt tokens by the
/// simulator's estimate (`spillway_sim` request.rs).
pub const PROMPT_CHARS: usize = 1188;
/// What the simulator will count for that message.
pub const PROMPT_TOKENS: u64 = 300;

/// The two kinds of client the issue is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Interactive,
    Batch,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Interactive => "interactive",
            Class::Batch => "batch",
        }
    }

    /// Tenant key of the class (the config's tenants are named like the classes).
    pub fn key(self) -> &'static str {
        match self {
            Class::Interactive => "ikey",
            Class::Batch => "bkey",
        }
    }

    /// `max_tokens`, and the output the simulator is told to generate: the whole limit, so
    /// admission estimates and real usage agree and the bucket arithmetic stays readable.
    pub fn output_tokens(self) -> u64 {
        match self {
            Class::Interactive => 500,
            Class::Batch => 1500,
        }
    }

    /// `x-spillway-max-wait-ms`: how long the client accepts to be held for the PTU.
    pub fn max_wait_ms(self) -> u64 {
        match self {
            Class::Interactive => 1000,
            Class::Batch => 20000,
        }
    }

    pub fn tokens(self) -> u64 {
        PROMPT_TOKENS + self.output_tokens()
    }
}

/// The on/off burst shape. Each period ends with `burst_secs` at `burst_load`; the rest of it
/// runs at a base load derived so that the whole run averages `mean_load`. Loads are
/// fractions of the PTU's capacity in tokens (prompt + output) per minute.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub seconds: u64,
    pub mean_load: f64,
    pub burst_load: f64,
    pub period_secs: u64,
    pub burst_secs: u64,
    pub interactive_share: f64,
}

impl Shape {
    fn in_burst(&self, t: f64) -> bool {
        if self.burst_secs == 0 || self.period_secs == 0 {
            return false;
        }
        let p = self.period_secs as f64;
        t.rem_euclid(p) >= p - self.burst_secs as f64
    }

    /// Seconds of the run spent in bursts (a burst cut by the end of the run counts in part).
    pub fn burst_seconds(&self) -> f64 {
        if self.burst_secs == 0 || self.period_secs == 0 {
            return 0.0;
        }
        let (p, b, s) = (
            self.period_secs as f64,
            self.burst_secs as f64,
            self.seconds as f64,
        );
        let mut total = 0.0;
        let mut start = p - b;
        while start < s {
            total += (start + b).min(s) - start;
            start += p;
        }
        total
    }

    /// The load outside bursts that makes the run's mean `mean_load`.
    pub fn base_load(&self) -> Result<f64, String> {
        let s = self.seconds as f64;
        let burst = self.burst_seconds();
        if burst >= s {
            return Ok(self.burst_load);
        }
        let base = (self.mean_load * s - self.burst_load * burst) / (s - burst);
        if base < 0.0 {
            return Err(format!(
                "the bursts alone exceed the mean load ({:.2} x capacity for {burst:.0} of \
                 {s:.0} s): lower --burst-load or --burst-secs",
                self.burst_load
            ));
        }
        Ok(base)
    }

    fn load_at(&self, t: f64, base: f64) -> f64 {
        if self.in_burst(t) {
            self.burst_load
        } else {
            base
        }
    }

    /// The next instant after `t` where the load may change (a phase edge), or the run's end.
    fn next_edge(&self, t: f64) -> f64 {
        let end = self.seconds as f64;
        if self.burst_secs == 0 || self.period_secs == 0 {
            return end;
        }
        let p = self.period_secs as f64;
        let k = (t / p).floor();
        let on = k * p + p - self.burst_secs as f64;
        let next = if t < on { on } else { (k + 1.0) * p };
        next.min(end)
    }

    /// Mean tokens of one request with this mix.
    pub fn mean_request_tokens(&self) -> f64 {
        let i = self.interactive_share;
        i * Class::Interactive.tokens() as f64 + (1.0 - i) * Class::Batch.tokens() as f64
    }

    /// The second into each burst at which the tokens admitted over the last 60 s reach
    /// `threshold` (a fraction) of the capacity, if the period leaves a full minute of base
    /// load before it. This is what makes today's gateway spill.
    pub fn window_crossing(&self, base: f64, threshold: f64) -> Option<f64> {
        let lead = self.period_secs.saturating_sub(self.burst_secs) as f64;
        if self.burst_load <= base || lead + self.burst_secs as f64 <= 0.0 {
            return None;
        }
        // Window sum, in capacity-minutes, x s into a burst: (burst·x + base·(60 − x)) / 60.
        let x = (threshold * 60.0 - base * 60.0) / (self.burst_load - base);
        let fits = x >= 0.0 && x <= self.burst_secs as f64 && x <= 60.0 && lead >= 60.0 - x;
        fits.then_some(x)
    }
}

/// One planned request.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Duration,
    pub class: Class,
    /// The user message, [`PROMPT_CHARS`] long.
    pub prompt: String,
}

/// Poisson arrivals whose rate is piecewise constant: an exponential gap that crosses a phase
/// edge is redrawn from the edge, which is exact because the exponential has no memory.
pub fn schedule(shape: &Shape, ptu_tpm: u64, seed: u64) -> Result<Vec<Arrival>, String> {
    let base = shape.base_load()?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let per_request = shape.mean_request_tokens();
    let end = shape.seconds as f64;
    let mut out = Vec::new();
    let mut t = 0.0;
    while t < end {
        let load = shape.load_at(t, base);
        let edge = shape.next_edge(t);
        let rate = load * ptu_tpm as f64 / 60.0 / per_request;
        if rate <= 0.0 {
            t = edge;
            continue;
        }
        // 1 - f64() is in (0, 1], so the log is finite.
        let gap = -(1.0 - rng.f64()).ln() / rate;
        if t + gap >= edge {
            t = edge;
            continue;
        }
        t += gap;
        let class = if rng.f64() < shape.interactive_share {
            Class::Interactive
        } else {
            Class::Batch
        };
        out.push(Arrival {
            at: Duration::from_secs_f64(t),
            class,
            prompt: prompt_text(&mut rng),
        });
    }
    Ok(out)
}

/// Lowercase words of random length, exactly [`PROMPT_CHARS`] characters.
fn prompt_text(rng: &mut fastrand::Rng) -> String {
    let mut s = String::with_capacity(PROMPT_CHARS);
    while s.len() < PROMPT_CHARS {
        if !s.is_empty() {
            s.push(' ');
        }
        for _ in 0..rng.usize(2..9) {
            s.push(rng.lowercase());
        }
    }
    s.truncate(PROMPT_CHARS);
    s
}

/// The request body of an arrival: the gateway and the simulator both read `max_tokens`.
pub fn body(a: &Arrival) -> Vec<u8> {
    serde_json::json!({
        "messages": [{"role": "user", "content": a.prompt}],
        "max_tokens": a.class.output_tokens(),
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            seconds: 180,
            mean_load: 0.75,
            burst_load: 1.6,
            period_secs: 120,
            burst_secs: 60,
            interactive_share: 0.7,
        }
    }

    #[test]
    fn base_load_keeps_the_mean() {
        let s = shape();
        // One whole burst (60-120 s) in 180 s: (0.75·180 − 1.6·60) / 120.
        assert_eq!(s.burst_seconds(), 60.0);
        assert!((s.base_load().unwrap() - 0.325).abs() < 1e-9);
        let long = Shape {
            seconds: 300,
            ..shape()
        };
        // Bursts at 60-120 and 180-240.
        assert_eq!(long.burst_seconds(), 120.0);
    }

    #[test]
    fn schedule_is_reproducible_and_near_the_mean() {
        let s = shape();
        let a = schedule(&s, 600_000, 7).unwrap();
        let b = schedule(&s, 600_000, 7).unwrap();
        assert_eq!(a.len(), b.len());
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.at == y.at && x.class == y.class));
        let tokens: u64 = a.iter().map(|r| r.class.tokens()).sum();
        let mean = tokens as f64 / (600_000.0 * 3.0);
        assert!((mean - 0.75).abs() < 0.08, "mean load {mean}");
        assert!(a.iter().all(|r| r.prompt.chars().count() == PROMPT_CHARS));
        let in_burst = a.iter().filter(|r| s.in_burst(r.at.as_secs_f64())).count();
        assert!(in_burst > a.len() / 2, "the burst carries most requests");
    }

    #[test]
    fn too_large_bursts_are_refused() {
        let s = Shape {
            burst_load: 3.0,
            ..shape()
        };
        assert!(s.base_load().is_err());
    }

    #[test]
    fn window_crossing() {
        let s = shape();
        let base = s.base_load().unwrap();
        // (1.6·x + 0.325·(60 − x)) / 60 = 0.9  →  x = 34.5 / 1.275.
        let x = s.window_crossing(base, 0.9).unwrap();
        assert!((x - 34.5 / 1.275).abs() < 1e-9);
    }
}
