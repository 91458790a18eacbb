//! Telemetry: Prometheus metrics (`metrics`) and the JSON access log (`access`); what
//! requests and provisioned hours cost (`cost`) and the spend rates of /status (`spend`).

pub mod access;
pub mod cost;
pub mod edge;
pub mod fleet;
pub mod identity;
pub mod metrics;
pub mod spend;
