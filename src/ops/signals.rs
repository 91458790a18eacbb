//! Process signals, in the order a load balancer needs them: on SIGTERM the instance first
//! reports not ready (while still serving), waits `drain_delay_ms` for the balancer to notice,
//! and only then lets Pingora stop accepting and finish what is in flight. On SIGQUIT
//! (graceful upgrade) it reports not ready at once and hands its sockets to the new process.
//! SIGINT stops fast. SIGHUP (reload) is handled by `reload`.

use crate::shared::Shared;
use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// Replaces Pingora's own Unix signal watch.
pub struct DrainingSignals {
    pub shared: Arc<Shared>,
}

#[async_trait]
impl ShutdownSignalWatch for DrainingSignals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut quit), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::quit()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = term.recv() => {
                let delay = self.shared.config().drain_delay;
                log::info!("SIGTERM: not ready, draining for {delay:?} before closing listeners");
                self.shared.draining.store(true, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
                ShutdownSignal::GracefulTerminate
            }
            _ = quit.recv() => {
                log::info!("SIGQUIT: handing listeners to the new process");
                self.shared.draining.store(true, Ordering::Relaxed);
                ShutdownSignal::GracefulUpgrade
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
        }
    }
}
