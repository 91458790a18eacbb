//! Compares the gateway's spill policies (issue 15, "Spend the PTU first"): the same seeded
//! open-loop load through the real gateway once per policy, against a simulated PTU and two
//! Standard deployments, and a Markdown report of what each policy cost and how fast it was.
//!
//! Build the gateway first (`cargo build --release -p spillway-cli`), then:
//! `cargo run --release -p spillway-bench --bin policy-compare -- --policies today --seconds 180`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use spillway_bench::policy::config::policies;
use spillway_bench::policy::load::{schedule, Shape};
use spillway_bench::policy::report::{self, Params};
use spillway_bench::policy::run::{self, Setup};
use spillway_bench::policy::summary::summarize;

#[derive(Debug, Parser)]
#[command(about = "Run the same load through the gateway once per spill policy and compare")]
struct Args {
    /// Policies to run, comma-separated, from: today, hold, classes.
    #[arg(long, value_delimiter = ',', default_value = "today,hold,classes")]
    policies: Vec<String>,
    /// Length of the load schedule.
    #[arg(long, default_value_t = 180)]
    seconds: u64,
    /// The simulated PTU's capacity (tokens per minute), also the gateway's
    /// `capacity_tokens_per_minute` for it.
    #[arg(long, default_value_t = 600_000)]
    ptu_tpm: u64,
    /// Seed of the schedule (arrival times, classes, prompts).
    #[arg(long, default_value_t = 15)]
    seed: u64,
    /// Mean load over the run, as a fraction of the PTU's capacity in tokens.
    #[arg(long, default_value_t = 0.75)]
    mean_load: f64,
    /// Load during a burst, as a fraction of the PTU's capacity.
    #[arg(long, default_value_t = 1.6)]
    burst_load: f64,
    /// Each period ends with a burst; the rest of it runs at the derived base load.
    #[arg(long, default_value_t = 120)]
    period_secs: u64,
    #[arg(long, default_value_t = 60)]
    burst_secs: u64,
    /// Share of requests that are interactive (the rest are batch).
    #[arg(long, default_value_t = 0.7)]
    interactive_share: f64,
    /// The PTU's hourly price, written into the config's PTU pool.
    #[arg(long, default_value_t = 16.0)]
    ptu_price_per_hour: f64,
    /// Leave the `price` blocks out of the gateway's config (for a gateway that rejects them).
    #[arg(long)]
    no_prices: bool,
    /// The gateway binary.
    #[arg(long)]
    spillway: Option<PathBuf>,
    /// Where the Markdown report goes.
    #[arg(long)]
    out: Option<PathBuf>,
    /// A request without an answer after this long counts as a failure.
    #[arg(long, default_value_t = 120)]
    request_timeout_secs: u64,
    /// Keep the gateways' configs and logs (under the temp directory) after the run.
    #[arg(long)]
    keep_work: bool,
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm), so the report can be
/// dated without a calendar dependency.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("nproc {cores}, {cpu}")
}

fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$;&|".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let all = policies();
    let mut chosen = Vec::new();
    for name in &args.policies {
        match all.iter().find(|p| p.name == name.trim()) {
            Some(p) => chosen.push(p.clone()),
            None => {
                eprintln!("unknown policy {name:?}; known: today, hold, classes");
                return ExitCode::from(2);
            }
        }
    }
    let shape = Shape {
        seconds: args.seconds,
        mean_load: args.mean_load,
        burst_load: args.burst_load,
        period_secs: args.period_secs,
        burst_secs: args.burst_secs,
        interactive_share: args.interactive_share,
    };
    let (base_load, arrivals) = match shape
        .base_load()
        .and_then(|b| Ok((b, schedule(&shape, args.ptu_tpm, args.seed)?)))
    {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let spillway = args.spillway.clone().unwrap_or_else(run::default_spillway);
    // Absolute, so the report names the binary wherever it was run from.
    let spillway = spillway.canonicalize().unwrap_or(spillway);
    if !spillway.is_file() {
        eprintln!(
            "no gateway binary at {} (cargo build --release -p spillway-cli, or --spillway)",
            spillway.display()
        );
        return ExitCode::from(2);
    }
    let setup = Setup {
        spillway: spillway.clone(),
        ptu_tpm: args.ptu_tpm,
        prices: (!args.no_prices).then_some(args.ptu_price_per_hour),
        request_timeout: Duration::from_secs(args.request_timeout_secs),
        work_root: run::work_root(),
    };
    eprintln!(
        "{} requests over {} s (base load {:.1}%), policies {:?}; work in {}",
        arrivals.len(),
        shape.seconds,
        base_load * 100.0,
        args.policies,
        setup.work_root.display()
    );
    let mut results = Vec::new();
    for policy in &chosen {
        eprintln!("policy {}: running", policy.name);
        let result = run::run(policy, &setup, &arrivals)
            .await
            .map(|m| summarize(policy.name, &m, args.ptu_tpm, args.seconds));
        match &result {
            Ok(s) => println!("{}", s.json()),
            Err(e) => eprintln!("policy {}: not run: {e}", policy.name),
        }
        results.push((policy.name.to_string(), result));
    }
    let params = Params {
        command: command_line(),
        date: utc_now(),
        machine: machine(),
        ptu_tpm: args.ptu_tpm,
        ptu_price_per_hour: args.ptu_price_per_hour,
        prices_in_config: !args.no_prices,
        seed: args.seed,
        shape,
        base_load,
        requests: arrivals.len(),
        spillway: spillway.display().to_string(),
    };
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/policy-comparison.md")
    });
    let text = report::markdown(&params, &chosen, &results);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&out, text) {
        eprintln!("writing {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    eprintln!("report: {}", out.display());
    if args.keep_work {
        eprintln!("configs and logs kept in {}", setup.work_root.display());
    } else {
        let _ = std::fs::remove_dir_all(&setup.work_root);
    }
    if results.iter().any(|(_, r)| r.is_err()) {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
