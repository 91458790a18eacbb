//! The Markdown report: the policies side by side, what changed against `today`, how the
//! load was shaped and why, and the gateway's own metrics as an appendix.

use std::fmt::Write;

use super::config::{
    Policy, STANDARD_CACHED_INPUT_PER_MILLION, STANDARD_INPUT_PER_MILLION,
    STANDARD_OUTPUT_PER_MILLION,
};
use super::load::{Class, Shape};
use super::summary::{Latency, Summary};

/// Everything the report states about how it was made.
#[derive(Debug, Clone)]
pub struct Params {
    pub command: String,
    pub date: String,
    pub machine: String,
    pub ptu_tpm: u64,
    pub ptu_price_per_hour: f64,
    pub prices_in_config: bool,
    pub seed: u64,
    pub shape: Shape,
    pub base_load: f64,
    pub requests: usize,
    pub spillway: String,
}

/// A policy's result: its figures, or why it did not run.
pub type Outcome = Result<Summary, String>;

fn secs(x: Option<f64>) -> String {
    x.map_or("-".into(), |s| format!("{s:.2} s"))
}

pub(super) fn lat(l: &Latency) -> String {
    format!("{} / {}", secs(l.p50), secs(l.p99))
}

fn change(now: f64, before: f64) -> String {
    if before == 0.0 {
        return if now == 0.0 {
            "0%".into()
        } else {
            "n/a (today is 0)".into()
        };
    }
    format!("{:+.1}%", (now - before) / before * 100.0)
}

pub fn markdown(p: &Params, policies: &[Policy], results: &[(String, Outcome)]) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# Policy comparison: spend the PTU first (issue 15)\n");
    let _ = writeln!(
        w,
        "The same seeded open-loop load ({} requests) through the real gateway once per policy, \
         each with fresh simulators and a fresh gateway process. Written by \
         `bench/src/bin/policy_compare.rs`.\n",
        p.requests
    );
    let _ = writeln!(w, "## Results\n");
    let _ = writeln!(
        w,
        "| policy | PTU utilization | PTU use of capacity | Standard tokens | Standard share | \
         Standard cost | interactive p50 / p99 | batch p50 / p99 | 429s to clients | \
         other errors | held | spilled |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, r) in results {
        match r {
            Ok(x) => {
                let _ = writeln!(
                    w,
                    "| {} | {:.1}% | {:.1}% | {} | {:.1}% | ${:.4} | {} | {} | {} | {} | {} | {} |",
                    x.policy,
                    x.ptu_utilization_mean,
                    x.ptu_use_of_capacity * 100.0,
                    x.standard_tokens,
                    x.standard_share * 100.0,
                    x.standard_cost,
                    lat(&x.interactive),
                    lat(&x.batch),
                    x.client_429,
                    x.other_errors,
                    x.held,
                    x.spilled
                );
            }
            Err(_) => {
                let _ = writeln!(w, "| {name} | not run (see below) |||||||||||");
            }
        }
    }
    let _ = writeln!(
        w,
        "\nPTU utilization: mean of the simulated PTU's bucket level (what it reports in \
         `azure-openai-deployment-utilization`) sampled every 100 ms over the schedule. PTU use \
         of capacity: tokens the PTU served / ({} TPM × {:.2} min). Tokens and cost come from the \
         simulators' own counters (prompt + completion). Latencies are client-side, from each \
         request's scheduled send time to its last byte, over 200 answers only. Held: answers \
         with `x-spillway-held-ms`; spilled: answers with `x-spillway-spillover`.\n",
        p.ptu_tpm,
        p.shape.seconds as f64 / 60.0
    );
    let today = results.iter().find_map(|(n, r)| match r {
        Ok(x) if n == "today" => Some(x),
        _ => None,
    });
    if let Some(t) = today {
        let others: Vec<&Summary> = results
            .iter()
            .filter_map(|(n, r)| r.as_ref().ok().filter(|_| n != "today"))
            .collect();
        if !others.is_empty() {
            let _ = writeln!(w, "### Against `today`\n");
            let _ = writeln!(w, "| policy | Standard cost | interactive p99 |");
            let _ = writeln!(w, "|---|---|---|");
            for o in others {
                let p99 = match (o.interactive.p99, t.interactive.p99) {
                    (Some(a), Some(b)) => change(a, b),
                    _ => "-".into(),
                };
                let _ = writeln!(
                    w,
                    "| {} | {} | {} |",
                    o.policy,
                    change(o.standard_cost, t.standard_cost),
                    p99
                );
            }
            let _ = writeln!(w);
        }
    }
    details(w, results);
    setup(w, p, policies);
    super::calibration::write(w, p, today);
    appendix(w, results);
    s
}

fn details(w: &mut String, results: &[(String, Outcome)]) {
    let _ = writeln!(w, "### Details\n");
    let _ = writeln!(
        w,
        "| policy | requests | answers by status | served by Standard | PTU tokens | \
         PTU utilization max | PTU 429s (at the sim) | Standard 429s (at the sim) | \
         interactive / batch 200s | wall |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    for (name, r) in results {
        match r {
            Ok(x) => {
                let statuses: Vec<String> = x
                    .by_status
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect();
                let _ = writeln!(
                    w,
                    "| {} | {} | {} | {} | {} | {:.1}% | {} | {} | {} / {} | {:.0} s |",
                    name,
                    x.requests,
                    statuses.join(", "),
                    x.served_by_standard,
                    x.ptu_tokens,
                    x.ptu_utilization_max,
                    x.ptu_429,
                    x.standard_429,
                    x.interactive.n,
                    x.batch.n,
                    x.wall.as_secs_f64()
                );
            }
            Err(e) => {
                let _ = writeln!(w, "| {name} | not run | | | | | | | | |\n\n```\n{e}\n```\n");
            }
        }
    }
    for (name, r) in results {
        if let Ok(x) = r {
            if !x.errors_sample.is_empty() {
                let _ = writeln!(w, "\nFirst errors without an answer ({name}):\n");
                for e in &x.errors_sample {
                    let _ = writeln!(w, "- `{e}`");
                }
            }
        }
    }
    let _ = writeln!(w);
}

fn setup(w: &mut String, p: &Params, policies: &[Policy]) {
    let sh = &p.shape;
    let _ = writeln!(w, "## How it was run\n");
    let _ = writeln!(w, "```\n{}\n```\n", p.command);
    let _ = writeln!(w, "- Date: {}; machine: {}", p.date, p.machine);
    let _ = writeln!(w, "- Gateway: `{}`", p.spillway);
    let _ = writeln!(
        w,
        "- Simulators (in the harness's process): `eastus-ptu` Provisioned, {} TPM (leaky \
         bucket); `westus-std` and `swedencentral-std` Standard, quotas far above this load; \
         TTFT 50 ms, 10 ms between tokens",
        p.ptu_tpm
    );
    let _ = writeln!(
        w,
        "- Prices: PTU ${}/hour{}; Standard ${STANDARD_INPUT_PER_MILLION} input, \
         ${STANDARD_CACHED_INPUT_PER_MILLION} cached input, ${STANDARD_OUTPUT_PER_MILLION} output \
         per million tokens{}",
        p.ptu_price_per_hour,
        // The PTU costs the same whatever the policy: only Standard spend can differ.
        format_args!(
            " (the same for every policy: {:.4} $ over this run)",
            p.ptu_price_per_hour * sh.seconds as f64 / 3600.0
        ),
        if p.prices_in_config {
            " (also in the gateway's config)"
        } else {
            " (left out of the gateway's config: --no-prices)"
        }
    );
    let _ = writeln!(w, "- Seed: {}", p.seed);
    let _ = writeln!(
        w,
        "- Load: {} s, open loop (Poisson arrivals, each request its own connection), mean \
         {:.0}% of the PTU's capacity in tokens (prompt + output). Every {} s period ends with a \
         {} s burst at {:.0}% of capacity; the rest of it runs at {:.1}% (derived so the run \
         averages the mean). {:.0}% interactive: {} prompt tokens, max_tokens {} (and that many \
         generated), `x-spillway-max-wait-ms: {}`, tenant `interactive`; the rest batch: {} \
         prompt tokens, max_tokens {}, `x-spillway-max-wait-ms: {}`, tenant `batch`. All \
         synchronous.",
        sh.seconds,
        sh.mean_load * 100.0,
        sh.period_secs,
        sh.burst_secs,
        sh.burst_load * 100.0,
        p.base_load * 100.0,
        sh.interactive_share * 100.0,
        super::load::PROMPT_TOKENS,
        Class::Interactive.output_tokens(),
        Class::Interactive.max_wait_ms(),
        super::load::PROMPT_TOKENS,
        Class::Batch.output_tokens(),
        Class::Batch.max_wait_ms(),
    );
    let _ = writeln!(
        w,
        "- Gateway config (common): PTU pool `kind: provisioned`, `spill_at_utilization: 90`, \
         `capacity_tokens_per_minute: {}`; Standard pool of the two Standard sims; model \
         `gpt-4o-mini: {{pools: [ptu, standard]}}`; retry on 408/429/5xx, 3 attempts; \
         sync_max_tokens 2000; no tenant budgets.\n",
        p.ptu_tpm
    );
    let _ = writeln!(w, "Policies (changes to the common config):\n");
    for pol in policies {
        let _ = writeln!(w, "- `{}`: {}", pol.name, pol.about);
        for (path, v) in &pol.changes {
            let _ = writeln!(w, "  - `{path}`: `{v}`");
        }
    }
    let _ = writeln!(w);
}

fn appendix(w: &mut String, results: &[(String, Outcome)]) {
    let _ = writeln!(w, "## Appendix: the gateway's metrics\n");
    let _ = writeln!(
        w,
        "Samples scraped from `/metrics` at the end of each run whose names start with {}.\n",
        super::gateway::METRIC_PREFIXES
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (name, r) in results {
        let Ok(x) = r else { continue };
        let _ = writeln!(w, "### {name}\n");
        if x.metric_lines.is_empty() {
            let _ = writeln!(w, "(none)\n");
            continue;
        }
        let _ = writeln!(w, "Totals over labels:\n");
        for (n, v) in &x.metric_totals {
            let _ = writeln!(w, "- `{n}`: {v}");
        }
        let _ = writeln!(w, "\n```");
        for l in &x.metric_lines {
            let _ = writeln!(w, "{l}");
        }
        let _ = writeln!(w, "```\n");
    }
}
