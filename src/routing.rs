//! Routing: the upstreams (`upstreams`: pools, deployments, endpoints), which deployment
//! serves an attempt (`select`), the live state that decision reads (`state`, `window`), the retry budget, and how a host becomes an address. The active
//! health checks that feed `state` run as a background task in `ops::health`.

pub mod fleet;
pub mod resolve;
pub mod retry_budget;
pub mod select;
pub mod state;
pub mod upstreams;
pub mod window;
