//! The listener and its connections: HTTP/1.1 keep-alive, refusing on demand, graceful shutdown.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch, Notify};

use super::faults::Fault;
use super::handler::handle;
use super::state::Shared;

/// After a failed accept or re-bind: long enough not to spin, short enough for tests.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Owns the listening socket so `Fault::Refuse` can close it synchronously: a connect made right
/// after `set_fault` returns must already be refused, not sit in an accept backlog.
#[derive(Debug)]
pub(crate) struct Server {
    pub shared: Arc<Shared>,
    pub addr: SocketAddr,
    listener: Mutex<Option<TcpListener>>,
    /// Wakes the accept loop when the listener is replaced, since the old one's waker died with it.
    relisten: Notify,
    /// Bumped to drop every open connection at once.
    kill: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
    runtime: Handle,
}

/// Pending connections the kernel queues: a gateway opening hundreds of upstream connections
/// at once must not see SYNs dropped (and a 1 s retransmission) as std's default 128 would.
const BACKLOG: u32 = 4096;

/// Binds synchronously, so a cleared `Refuse` is listening again before `set_fault` returns.
/// SO_REUSEADDR, so connections we closed (now in TIME_WAIT) do not block the port.
fn bind(addr: SocketAddr, runtime: &Handle) -> io::Result<TcpListener> {
    let _guard = runtime.enter();
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

impl Server {
    /// Binds `addr` and starts the accept loop. The returned receiver yields `None` once the
    /// accept loop and every connection have ended.
    pub fn start(
        shared: Arc<Shared>,
        shutdown: watch::Sender<bool>,
        addr: SocketAddr,
    ) -> io::Result<(Arc<Server>, tokio::task::JoinHandle<()>, mpsc::Receiver<()>)> {
        let runtime = Handle::try_current().map_err(io::Error::other)?;
        let listener = bind(addr, &runtime)?;
        let addr = listener.local_addr()?;
        let server = Arc::new(Server {
            shared,
            addr,
            listener: Mutex::new(Some(listener)),
            relisten: Notify::new(),
            kill: watch::Sender::new(0),
            shutdown,
            runtime,
        });
        let (drain_tx, drain_rx) = mpsc::channel(1);
        let task = tokio::spawn(accept_loop(server.clone(), drain_tx));
        Ok((server, task, drain_rx))
    }

    /// The slot holds only a listener, valid whatever a panicking holder did.
    fn slot(&self) -> MutexGuard<'_, Option<TcpListener>> {
        self.listener.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_fault(&self, fault: Fault) {
        let refuse = fault == Fault::Refuse;
        let previous = self.shared.faults.set(fault);
        if refuse {
            drop(self.slot().take());
            self.kill.send_modify(|generation| *generation += 1);
        } else if previous == Fault::Refuse {
            self.relisten_now();
        }
        self.relisten.notify_one();
    }

    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Re-binds the same port if nothing is listening and we should be. Failure (someone else
    /// took the port) is logged; the accept loop keeps trying.
    fn relisten_now(&self) {
        let mut slot = self.slot();
        if slot.is_some() || self.is_shut_down() || self.shared.faults.is_refusing() {
            return;
        }
        match bind(self.addr, &self.runtime) {
            Ok(listener) => *slot = Some(listener),
            Err(e) => log::warn!(
                "sim {}: cannot re-bind {}: {e}",
                self.shared.cfg.name,
                self.addr
            ),
        }
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        match self.slot().as_ref() {
            Some(listener) => listener.poll_accept(cx),
            None => Poll::Pending,
        }
    }
}

async fn accept_loop(server: Arc<Server>, drain: mpsc::Sender<()>) {
    let mut shutdown = server.shutdown.subscribe();
    while !*shutdown.borrow_and_update() {
        let listening = server.slot().is_some();
        if !listening && !server.shared.faults.is_refusing() {
            server.relisten_now();
            if server.slot().is_none() {
                tokio::select! {
                    _ = shutdown.changed() => {}
                    _ = tokio::time::sleep(RETRY_PAUSE) => {}
                }
                continue;
            }
        }
        let accepted = tokio::select! {
            changed = shutdown.changed() => match changed {
                Ok(()) => continue,
                Err(_) => break,
            },
            () = server.relisten.notified() => continue,
            accepted = poll_fn(|cx| server.poll_accept(cx)) => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                // Each SSE event is its own small write: Nagle would hold it for an ACK.
                let _ = stream.set_nodelay(true);
                serve_connection(server.clone(), stream, drain.clone())
            }
            Err(e) => {
                log::warn!("sim {}: accept failed: {e}", server.shared.cfg.name);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    // Frees the port for whoever comes next.
    drop(server.slot().take());
}

fn serve_connection(server: Arc<Server>, stream: TcpStream, drain: mpsc::Sender<()>) {
    let mut kill = server.kill.subscribe();
    kill.mark_unchanged();
    let mut shutdown = server.shutdown.subscribe();
    tokio::spawn(async move {
        // Held until the connection ends, so shutdown can wait for every connection.
        let _drain = drain;
        let shared = server.shared.clone();
        let service = service_fn(move |req| handle(shared.clone(), req));
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        log::debug!("sim {}: connection ended: {e}", server.shared.cfg.name);
                    }
                    break;
                }
                // Dropping the connection closes the socket: this is how Refuse cuts everyone off.
                _ = kill.changed() => break,
                changed = shutdown.changed(), if !draining => {
                    if changed.is_ok() && *shutdown.borrow() {
                        // Finish the request in progress, then close; idle connections close now.
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    });
}
