//! Accepting a client connection: the process-wide connection cap, then the per-connection
//! limits, wrapped around Pingora's HTTP application.

use super::conn::Guarded;
use crate::shared::Shared;
use crate::telemetry::edge::{EdgeCounters, Limit};
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::sync::Arc;

/// A connection's place under the cap, given back when the connection is dropped.
pub struct Slot(Arc<EdgeCounters>);

impl Slot {
    /// Takes a slot, or `None` when `max` connections are already open.
    pub fn take(counters: &Arc<EdgeCounters>, max: usize) -> Option<Slot> {
        counters.try_open(max).then(|| Slot(counters.clone()))
    }

    pub fn fired(&self, limit: Limit) {
        self.0.fired(limit);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Pingora's HTTP application behind the connection cap and the edge limits.
pub struct EdgeApp<A> {
    app: Arc<A>,
    shared: Arc<Shared>,
}

impl<A> EdgeApp<A> {
    pub fn new(app: A, shared: Arc<Shared>) -> Self {
        EdgeApp {
            app: Arc::new(app),
            shared,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for EdgeApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let limits = self.shared.config().client_limits;
        // Over the cap the stream is dropped here, which closes it before a byte is read.
        let slot = Slot::take(&self.shared.edge, limits.max_connections)?;
        let guarded: Stream = Box::new(Guarded::new(stream, limits, slot));
        self.app.process_new(guarded, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await
    }
}
