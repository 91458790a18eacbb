//! A real `redis-server` on a free loopback port, started and stopped by the test, and a TCP
//! relay that can cut one gateway off from it. A machine without `redis-server` fails the
//! test that needs one: CI installs it, and a skipped fleet test would prove nothing.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A running `redis-server`, killed when dropped.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    password: Option<String>,
}

impl Redis {
    /// Starts a Redis that keeps nothing on disk, on a port no one else uses.
    pub fn start() -> Redis {
        Self::start_inner(None)
    }

    /// Like `start`, with `requirepass`.
    pub fn start_with_password(password: &str) -> Redis {
        Self::start_inner(Some(password.to_string()))
    }

    fn start_inner(password: Option<String>) -> Redis {
        let mut r = Redis {
            port: super::free_port(),
            child: None,
            password,
        };
        r.restart();
        r
    }

    /// (Re)starts the server on the same port, empty.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(
                self.password
                    .iter()
                    .flat_map(|p| ["--requirepass".to_string(), p.clone()]),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server): the fleet tests need a real Redis");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let ping = |r: &Redis| match &r.password {
            None => r.command(&["PING"]),
            // Unauthenticated, a PING is refused with NOAUTH: the server is up.
            Some(_) => r.command(&["PING"]).map(|a| {
                if a.starts_with("-NOAUTH") {
                    "+PONG".into()
                } else {
                    a
                }
            }),
        };
        while ping(self).as_deref() != Some("+PONG") {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server at once (SIGKILL): connections drop, nothing is said.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until member `id` holds a lease of `amount` on `tenant`'s budget dimension `dim`
    /// (`t` tokens, `r` requests), as the fleet's script records it.
    pub async fn wait_for_lease(&self, id: &str, dim: char, tenant: &str, amount: u64) {
        let key = format!("{{spillway}}:i:{id}");
        let field = format!("l:{dim}:{tenant}");
        let want = amount.to_string();
        super::wait_until(
            &format!("{id} to hold a lease of {amount} on {tenant}"),
            Duration::from_secs(20),
            async || self.command(&["HGET", &key, &field]).as_deref() == Some(want.as_str()),
        )
        .await;
    }

    pub fn url(&self) -> String {
        match &self.password {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
        }
    }

    /// Runs one command (unauthenticated) and returns the answer's first line (`+PONG`, `:3`), or
    /// a bulk string's value.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line.starts_with('$') && !line.starts_with("$-1") {
            // A bulk string: its value is on the next line.
            line.clear();
            reader.read_line(&mut line).ok()?;
        }
        Some(line.trim_end().to_string())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay in front of a Redis: `cut` makes every connection through it hang, as a
/// network partition or a dead peer does, without closing anything.
pub struct Relay {
    pub port: u16,
    cut: Arc<AtomicBool>,
}

impl Relay {
    pub async fn start(target_port: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::join!(pump(ri, wo, flag.clone()), pump(ro, wi, flag));
                });
            }
        });
        Relay { port, cut }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }
}

/// Copies one direction until the relay is cut; from then on swallows everything, so the
/// peer hears nothing.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
