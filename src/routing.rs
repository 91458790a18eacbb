//! Routing: which deployment serves an attempt (`select`), the live state that decision reads
//! (`state`, `window`), the retry budget, health checks, and how a host becomes an address.

pub mod health;
pub mod resolve;
pub mod retry_budget;
pub mod select;
pub mod state;
pub mod window;
