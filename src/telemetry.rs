//! Telemetry: Prometheus metrics (`metrics`) and the JSON access log (`access`); what
//! requests and provisioned hours cost (`cost`).

pub mod access;
pub mod cost;
pub mod edge;
pub mod fleet;
pub mod metrics;
