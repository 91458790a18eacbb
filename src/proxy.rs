//! The proxy phases. Pingora calls them in this order for each attempt:
//!
//! ```text
//! request_filter ─ gate: Front Door id, failed-auth limit of the client's address
//!                  admit: route, tenant, body, model ──────────── (reply and stop on error)
//!   └─ upstream_peer ─ choose a deployment, resolve it, build the peer
//!        └─ upstream_request_filter ─ path, host, key, framing
//!             └─ request_body_filter ─ send this attempt's body
//!                  └─ upstream_response_filter ─ record the status
//!                       └─ response_filter ─ tell the client who served it
//! fail_to_connect / error_while_proxy ─ decide whether another attempt follows
//! fail_to_proxy ─ Azure-shaped error when nothing else can be done
//! logging ─ the access log line
//! ```

mod admit;
pub mod attempt;
pub mod ctx;
mod denylist;
mod finish;
mod gate;
mod gateway;
mod headers;
mod hold;
pub mod read_body;
mod record;
mod replay;
pub mod reply;
mod upstream;
pub mod usage;

pub use gateway::Gateway;
