//! The one object the proxy keeps per streamed response: it meters the upstream bytes and,
//! when the gateway itself asked for `include_usage`, removes the usage chunk from what the
//! client gets. Its `on_body` has the shape of Pingora's `response_body_filter`.

use super::meter::{StreamMeter, StreamSummary};
use super::sse::{ParserStats, SseParser};
use super::strip::UsageStripper;
use bytes::Bytes;
use std::time::Instant;

/// Parser, meter and (optionally) stripper for one response.
#[derive(Debug)]
pub struct SseTap {
    parser: SseParser,
    meter: StreamMeter,
    stripper: Option<UsageStripper>,
}

impl SseTap {
    /// `strip_usage`: the client did not ask for the usage chunk, the gateway did.
    pub fn new(strip_usage: bool) -> Self {
        Self {
            parser: SseParser::new(),
            meter: StreamMeter::new(),
            stripper: strip_usage.then(UsageStripper::new),
        }
    }

    /// Meters `body` (the upstream chunk, as received at `now`) and rewrites it to what the
    /// client should get. The meter sees the upstream bytes, usage chunk included.
    pub fn on_body(&mut self, body: &mut Option<Bytes>, end_of_stream: bool, now: Instant) {
        if let Some(chunk) = body.as_ref() {
            let meter = &mut self.meter;
            self.parser.feed(chunk, |ev| meter.on_event(ev.data, now));
        }
        if end_of_stream {
            self.parser.finish();
        }
        if let Some(stripper) = self.stripper.as_mut() {
            stripper.filter_body(body, end_of_stream);
        }
    }

    pub fn meter(&self) -> &StreamMeter {
        &self.meter
    }

    pub fn parser_stats(&self) -> ParserStats {
        self.parser.stats()
    }

    /// Usage chunks removed from the client's stream (0 or 1 in practice).
    pub fn usage_chunks_removed(&self) -> u64 {
        self.stripper.as_ref().map_or(0, UsageStripper::removed)
    }

    pub fn summary(&self, started: Instant) -> StreamSummary {
        self.meter.summary(started)
    }
}
