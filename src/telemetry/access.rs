//! The access log sink: one JSON line per request, written by a dedicated thread so that a
//! slow disk or pipe never stalls a proxy thread. When the writer falls behind, lines are
//! dropped and counted (`spillway_access_log_dropped_total`) rather than queued without bound.

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

/// Lines queued before new ones are dropped.
const QUEUE: usize = 16 * 1024;

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Off,
    Stdout,
    Stderr,
    /// Appended to this file.
    File(std::path::PathBuf),
}

impl Sink {
    pub fn parse(s: &str) -> Sink {
        match s {
            "off" | "" => Sink::Off,
            "stdout" | "-" => Sink::Stdout,
            "stderr" => Sink::Stderr,
            path => Sink::File(path.into()),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Sink::Off => "off",
            Sink::Stdout => "stdout",
            Sink::Stderr => "stderr",
            Sink::File(_) => "file",
        }
    }
}

/// The sending side, held by the gateway.
pub struct AccessLog {
    tx: Option<SyncSender<String>>,
    sink: Sink,
}

fn writer(sink: &Sink) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match sink {
        Sink::Off => Box::new(std::io::sink()),
        Sink::Stdout => Box::new(std::io::stdout()),
        Sink::Stderr => Box::new(std::io::stderr()),
        Sink::File(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
    })
}

/// How long the writer lets lines gather after writing a batch. Waking the writer for each
/// line costs the proxy threads a futex wake per request; a short pause batches them.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

fn drain(rx: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(line) = rx.recv() {
        let mut ok = writeln!(out, "{line}").is_ok();
        while let Ok(line) = rx.try_recv() {
            ok &= writeln!(out, "{line}").is_ok();
        }
        if !(ok && out.flush().is_ok()) {
            log::warn!("access log write failed");
        }
        std::thread::sleep(BATCH_PAUSE);
    }
}

impl AccessLog {
    /// A log that writes nothing.
    pub fn off() -> AccessLog {
        AccessLog {
            tx: None,
            sink: Sink::Off,
        }
    }

    /// Opens the sink and starts its writer thread.
    pub fn start(sink: Sink) -> std::io::Result<AccessLog> {
        if sink == Sink::Off {
            return Ok(AccessLog::off());
        }
        let out = writer(&sink)?;
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("spillway-access-log".into())
            .spawn(move || drain(rx, out))?;
        Ok(AccessLog { tx: Some(tx), sink })
    }

    /// Queues a line; returns false when it had to be dropped.
    pub fn write(&self, line: String) -> bool {
        match &self.tx {
            None => true,
            Some(tx) => match tx.try_send(line) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
        }
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_file() {
        let path = std::env::temp_dir().join(format!("spillway-access-{}.log", fastrand::u64(..)));
        let log = AccessLog::start(Sink::File(path.clone())).unwrap();
        assert!(log.write("{\"a\":1}".into()));
        assert!(log.write("{\"a\":2}".into()));
        drop(log);
        // The writer thread ends when the sender is dropped; wait for its flush.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 2 {
                assert_eq!(text, "{\"a\":1}\n{\"a\":2}\n");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "lines never arrived: {text:?}"
            );
            std::thread::yield_now();
        }
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn sinks_parse() {
        assert_eq!(Sink::parse("-"), Sink::Stdout);
        assert_eq!(Sink::parse("off"), Sink::Off);
        assert_eq!(Sink::parse("/var/log/x"), Sink::File("/var/log/x".into()));
    }
}
