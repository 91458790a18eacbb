//! `SimHandle`: how tests and the CLI control and observe a running simulator.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::entra::Issuer;
use super::faults::Fault;
use super::record::{RecordedRequest, SimStats};
use super::server::Server;

/// A running simulator. Cheap to clone; when the last clone is dropped the simulator shuts down
/// (without waiting); call [`SimHandle::shutdown`] to wait for it.
#[derive(Debug, Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    server: Arc<Server>,
    /// Taken by the first `shutdown` call.
    accept_task: Mutex<Option<JoinHandle<()>>>,
    drained: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}

impl SimHandle {
    pub(crate) fn new(
        server: Arc<Server>,
        accept_task: JoinHandle<()>,
        drained: mpsc::Receiver<()>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                server,
                accept_task: Mutex::new(Some(accept_task)),
                drained: Mutex::new(Some(drained)),
            }),
        }
    }

    /// The bound address (the real port when spawned on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.inner.server.addr
    }

    /// `http://IP:PORT`, to use as an upstream base URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Replaces the active fault. Setting `Refuse` has closed the listener when this returns, and
    /// replacing `Refuse` has re-bound the same port when this returns.
    pub fn set_fault(&self, fault: Fault) {
        self.inner.server.set_fault(fault);
    }

    /// Applies to requests arriving from now on.
    pub fn set_tbt(&self, d: Duration) {
        self.inner.server.shared.set_tbt(d);
    }

    /// Applies to requests arriving from now on.
    pub fn set_ttft(&self, d: Duration) {
        self.inner.server.shared.set_ttft(d);
    }

    /// Applies to requests arriving from now on.
    pub fn set_natural_tokens(&self, n: u32) {
        self.inner.server.shared.set_natural_tokens(n);
    }

    /// Every request received (also rejected ones), in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.server.shared.recorder.requests()
    }

    /// The simulated Entra ID tenant: rotate keys, mint tokens, take the token service down,
    /// read its counters.
    pub fn issuer(&self) -> &Issuer {
        &self.inner.server.shared.issuer
    }

    pub fn stats(&self) -> SimStats {
        self.inner.server.shared.recorder.stats()
    }

    /// Provisioned mode: the bucket level in percent of capacity, drained to now (may exceed 100).
    /// Other modes: 0.
    pub fn utilization_percent(&self) -> f64 {
        self.inner.server.shared.limiter.utilization(Instant::now())
    }

    /// Stops accepting, lets every connection finish its request in progress (hung requests are
    /// dropped), and returns once the port is free and all connections have closed.
    pub async fn shutdown(self) {
        self.inner.server.shutdown();
        let task = take(&self.inner.accept_task);
        if let Some(task) = task {
            if let Err(e) = task.await {
                log::warn!("sim: accept loop ended abnormally: {e}");
            }
        }
        let drained = take(&self.inner.drained);
        if let Some(mut drained) = drained {
            // Yields `None` once every connection has dropped its sender.
            while drained.recv().await.is_some() {}
        }
    }
}

/// The slots hold an `Option` that is only ever taken whole, so a poisoned lock is still valid.
fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}
