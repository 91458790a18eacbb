//! Routing: the upstreams (`upstreams`: pools, deployments, endpoints), which deployment
//! serves an attempt (`select`), the live state that decision reads (`state`, `window`),
//! waiting for a saturated deployment (`hold`), priority classes (`class`), what tokens cost
//! (`price`), the retry budget, and how a host becomes an address. The active health checks
//! that feed `state` run as a background task in `ops::health`. `cost` keeps each
//! deployment's spend over the last minute, next to its state.

pub mod class;
pub mod cost;
pub mod fleet;
pub mod hold;
pub mod level;
pub mod price;
pub mod resolve;
pub mod retry_budget;
pub mod select;
pub mod state;
pub mod upstreams;
pub mod window;
