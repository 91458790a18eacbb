//! The streaming side path: SSE responses are forwarded chunk by chunk as they arrive, and on
//! the side each chunk is parsed to measure the stream (time to first token, time between
//! tokens, usage) and, when the gateway added `include_usage` for its own accounting, to
//! remove the usage chunk the client did not ask for.
//!
//! - [`sse`]: incremental SSE parser; events are slices of the chunk whenever possible.
//! - [`meter`]: TTFT, TBT mean/p95, content deltas, usage, finish reason, `[DONE]`.
//! - [`strip`]: usage-chunk removal, zero-copy when nothing is removed, holding back at most
//!   one event (and only one that may be the usage chunk).
//! - [`tap`]: the three together, in the shape of Pingora's body filter.
//!
//! Nothing here reads the clock or does I/O: callers pass `Instant`s, tests script them.

mod eol;
pub mod gaps;
pub mod meter;
pub mod sse;
pub mod strip;
pub mod tap;

pub use meter::{StreamMeter, StreamSummary, Usage};
pub use sse::{Event, ParserStats, SseParser};
pub use strip::{is_usage_chunk, UsageStripper};
pub use tap::SseTap;

#[cfg(test)]
mod tests;
