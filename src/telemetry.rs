//! Telemetry: Prometheus metrics (`metrics`) and the JSON access log (`access`).

pub mod access;
pub mod edge;
pub mod fleet;
pub mod metrics;
