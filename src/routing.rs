//! Routing: which deployment serves an attempt (`select`), the live state that decision reads
//! (`state`), and how a deployment's host becomes an address (`resolve`).

pub mod resolve;
pub mod select;
pub mod state;
