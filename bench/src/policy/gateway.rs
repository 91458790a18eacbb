//! The gateway under test as a child process: its config written to a work directory,
//! checked with `spillway -t`, started, awaited until ready, scraped, and killed.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use super::client;

/// A free loopback port. Another process may take it before the gateway binds it; the
/// gateway then fails to start and the run says so, which is rare enough not to engineer for.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running gateway; dropping it kills the process, so an early return or a panic in the
/// harness never leaves one behind holding its ports.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    pub addr: String,
    pub admin: String,
    pub dir: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Already gone is fine: kill then reports an error we have no use for.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Last lines of a log, for an error message.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Writes `yaml` to `dir/spillway.yaml` and asks the binary whether it accepts it, so a
/// config the gateway does not know yet (a policy whose keys have not landed) is reported by
/// the gateway's own words instead of as a start that never becomes ready.
pub fn check(binary: &Path, dir: &Path, yaml: &str) -> Result<PathBuf, String> {
    let file = dir.join("spillway.yaml");
    fs::write(&file, yaml).map_err(|e| format!("writing {}: {e}", file.display()))?;
    let out = Command::new(binary)
        .arg("-t")
        .arg("-c")
        .arg(&file)
        .output()
        .map_err(|e| format!("running {}: {e}", binary.display()))?;
    if out.status.success() {
        return Ok(file);
    }
    let mut why = String::from_utf8_lossy(&out.stderr).into_owned();
    why.push_str(&String::from_utf8_lossy(&out.stdout));
    Err(format!(
        "the gateway rejects the config ({}):\n{}",
        file.display(),
        why.trim()
    ))
}

/// Starts the gateway on `file` and waits until its admin `/readyz` answers 200.
pub async fn start(
    binary: &Path,
    file: &Path,
    addr: String,
    admin: String,
) -> Result<Gateway, String> {
    let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let log =
        |name: &str| fs::File::create(dir.join(name)).map_err(|e| format!("creating {name}: {e}"));
    let child = Command::new(binary)
        .arg("-c")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(log("stdout.log")?)
        .stderr(log("stderr.log")?)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let mut gw = Gateway {
        child,
        addr,
        admin,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = gw.child.try_wait() {
            return Err(format!(
                "the gateway exited ({status}) before it was ready:\n{}",
                tail(&gw.dir.join("stderr.log"), 20)
            ));
        }
        let ready = matches!(client::get(&gw.admin, "/readyz").await, Ok(a) if a.status == 200);
        // The client port is bound by another service than the admin one: check it too.
        if ready && tokio::net::TcpStream::connect(&gw.addr).await.is_ok() {
            return Ok(gw);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the gateway was not ready within 20 s:\n{}",
                tail(&gw.dir.join("stderr.log"), 20)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Gateway {
    /// The whole `/metrics` text, or an empty string if the scrape failed (the report then
    /// shows no gateway metrics rather than failing the run).
    pub async fn metrics(&self) -> String {
        match client::get(&self.admin, "/metrics").await {
            Ok(a) if a.status == 200 => String::from_utf8_lossy(&a.body).into_owned(),
            _ => String::new(),
        }
    }
}

/// Metric name prefixes the report's appendix shows.
pub const METRIC_PREFIXES: [&str; 4] = [
    "spillway_cost",
    "spillway_held",
    "spillway_hold",
    "spillway_spill",
];

/// The sample lines of `text` whose metric starts with one of [`METRIC_PREFIXES`], and each
/// such metric's total over its labels (histogram buckets have no meaningful total).
pub fn pick_metrics(text: &str) -> (Vec<String>, Vec<(String, f64)>) {
    let mut lines = Vec::new();
    let mut totals: Vec<(String, f64)> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || !METRIC_PREFIXES.iter().any(|p| line.starts_with(p)) {
            continue;
        }
        lines.push(line.to_string());
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        let (Some(value), false) = (value, name.ends_with("_bucket")) else {
            continue;
        };
        match totals.iter_mut().find(|(n, _)| n == name) {
            Some((_, total)) => *total += value,
            None => totals.push((name.to_string(), value)),
        }
    }
    (lines, totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_and_totals() {
        let text = "# HELP spillway_spillovers_total x\n\
            spillway_spillovers_total{reason=\"a\"} 3\n\
            spillway_spillovers_total{reason=\"b\"} 4\n\
            spillway_requests_total 9\n\
            spillway_hold_seconds_bucket{le=\"1\"} 2\n\
            spillway_cost_dollars_total 0.5\n";
        let (lines, totals) = pick_metrics(text);
        assert_eq!(lines.len(), 4);
        assert_eq!(
            totals,
            vec![
                ("spillway_spillovers_total".to_string(), 7.0),
                ("spillway_cost_dollars_total".to_string(), 0.5)
            ]
        );
    }
}
