//! An incremental Server-Sent Events parser for the side path: fed each upstream body chunk
//! as Pingora hands it over, it reports every dispatched event without holding up the chunk.
//!
//! Chunks do not align with events or lines, so the parser carries two small pieces of
//! state across chunks: the partial line at the end of a chunk (in `carry`) and the data of an
//! event whose blank line has not arrived yet (in `data`). Complete lines inside a chunk are
//! parsed in place, and an event whose lines all sit in one chunk is reported as a slice of
//! that chunk: the common case copies nothing and allocates nothing.
//!
//! Line handling follows the WHATWG EventSource rules: a line ends at `\n`, `\r\n` or a lone
//! `\r`; `:` starts a comment; `field:value` drops one space after the colon; a line without a
//! colon is a field with an empty value; `data` lines are joined with `\n`; a blank line
//! dispatches the event if any `data` line was seen. `event`, `id` and `retry` fields are
//! recognised and counted but not reported: Azure OpenAI's chat stream uses none of them. A
//! leading byte-order mark is not stripped (Azure sends none); it would only hide the first
//! line's field name.

use super::eol::find_eol;

/// Longest line, and largest event data, the parser keeps. Azure's chunks are a few hundred
/// bytes; the cap only stops a broken or hostile upstream from growing our buffers.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// One dispatched event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The event's data: its `data` lines joined by `\n`, without the final newline.
    pub data: &'a [u8],
}

impl Event<'_> {
    /// True for OpenAI's end-of-stream sentinel, `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data == b"[DONE]"
    }
}

/// Counters a caller may log; none of them affects parsing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParserStats {
    /// Events dispatched.
    pub events: u64,
    /// Comment lines (`:` first), such as keep-alives.
    pub comments: u64,
    /// `event`, `id`, `retry` and unknown field lines, parsed and ignored.
    pub other_fields: u64,
    /// Lines longer than the cap (dropped) plus events whose data outgrew it (dropped).
    pub malformed: u64,
    /// Streams that ended in the middle of an event, which per the spec is never dispatched.
    pub truncated: u64,
}

/// The incremental parser. One per response.
#[derive(Debug)]
pub struct SseParser {
    max_line: usize,
    /// The unfinished line at the end of the last chunk.
    carry: Vec<u8>,
    /// The current line outgrew `max_line`: drop bytes until its terminator.
    discarding: bool,
    /// The last chunk ended in `\r`: a `\n` opening the next chunk completes that terminator.
    skip_lf: bool,
    event: PendingEvent,
    stats: ParserStats,
}

/// The event being assembled. Its data lives in `data` only when it has to outlive a chunk
/// or be joined from several lines; otherwise `feed` keeps it as a slice of the chunk.
#[derive(Debug, Default)]
struct PendingEvent {
    data: Vec<u8>,
    /// `data` lines seen since the last dispatch; the event dispatches only if non-zero.
    lines: usize,
    /// Logical data length (with joining newlines), wherever the bytes are kept, so the cap
    /// applies the same way however the stream was chunked.
    len: usize,
    /// The data outgrew the cap: the event is dropped at its blank line.
    overflow: bool,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the default 1 MiB cap.
    pub fn new() -> Self {
        Self::with_max_line(DEFAULT_MAX_LINE)
    }

    /// A parser whose lines, and event data, may not exceed `max_line` bytes.
    pub fn with_max_line(max_line: usize) -> Self {
        Self {
            max_line,
            carry: Vec::new(),
            discarding: false,
            skip_lf: false,
            event: PendingEvent::default(),
            stats: ParserStats::default(),
        }
    }

    /// What the parser has seen so far.
    pub fn stats(&self) -> ParserStats {
        self.stats
    }

    /// Bytes of buffer the parser holds (its carry line and event data, both reused): a
    /// small multiple of the cap at worst, whatever the stream does.
    pub fn buffered_capacity(&self) -> usize {
        self.carry.capacity() + self.event.data.capacity()
    }

    /// Parses one chunk, calling `on_event` for every event whose blank line is in it.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(Event<'_>)) {
        let mut rest = chunk;
        // An empty chunk must not consume a pending `\r`'s claim on the next `\n`.
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        // Data of the pending event that is still a slice of this chunk (one line only).
        let mut borrowed: Option<&[u8]> = None;
        while !rest.is_empty() {
            let Some(end) = find_eol(rest) else {
                self.keep_partial(rest);
                break;
            };
            let segment = &rest[..end];
            let cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    // The `\n` of a `\r\n` may open the next chunk.
                    None => self.skip_lf = true,
                }
            }
            if self.discarding {
                self.discarding = false;
                continue;
            }
            if self.carry.is_empty() {
                if segment.len() > self.max_line {
                    self.stats.malformed += 1;
                    continue;
                }
                self.line(Source::Chunk(segment), &mut borrowed, &mut on_event);
            } else if self.carry.len() + segment.len() > self.max_line {
                self.carry.clear();
                self.stats.malformed += 1;
            } else {
                // The line began in an earlier chunk: finish it in `carry` and parse it there.
                let mut carry = std::mem::take(&mut self.carry);
                carry.extend_from_slice(segment);
                self.line(Source::Carry(&carry), &mut borrowed, &mut on_event);
                carry.clear();
                self.carry = carry;
            }
        }
        // The chunk goes away after this call: an event still open keeps its data by value.
        if let Some(data) = borrowed {
            self.event.data.clear();
            self.event.data.extend_from_slice(data);
        }
    }

    /// Ends the stream. An event without its blank line is discarded, as the spec (and every
    /// SSE client) does; the call returns whether one was, so the caller can log a truncation.
    pub fn finish(&mut self) -> bool {
        let truncated = self.event.lines > 0 || !self.carry.is_empty() || self.discarding;
        self.carry.clear();
        self.discarding = false;
        self.skip_lf = false;
        self.event.reset();
        if truncated {
            self.stats.truncated += 1;
        }
        truncated
    }

    /// Keeps the unterminated tail of a chunk, unless that makes the line too long.
    fn keep_partial(&mut self, tail: &[u8]) {
        if self.discarding {
            return;
        }
        if self.carry.len() + tail.len() > self.max_line {
            // Counted once, here; the rest of the line is skipped up to its terminator.
            self.carry.clear();
            self.discarding = true;
            self.stats.malformed += 1;
        } else {
            self.carry.extend_from_slice(tail);
        }
    }

    /// Parses one complete line (without its terminator).
    fn line<'c>(
        &mut self,
        line: Source<'c, '_>,
        borrowed: &mut Option<&'c [u8]>,
        on_event: &mut impl FnMut(Event<'_>),
    ) {
        let bytes = line.bytes();
        if bytes.is_empty() {
            self.dispatch(borrowed, on_event);
            return;
        }
        if bytes[0] == b':' {
            self.stats.comments += 1;
            return;
        }
        let (field, value_at) = match bytes.iter().position(|&b| b == b':') {
            Some(colon) if bytes.get(colon + 1) == Some(&b' ') => (&bytes[..colon], colon + 2),
            Some(colon) => (&bytes[..colon], colon + 1),
            None => (bytes, bytes.len()),
        };
        if field != b"data" {
            self.stats.other_fields += 1;
            return;
        }
        let ev = &mut self.event;
        let joined = ev.len + usize::from(ev.lines > 0) + (bytes.len() - value_at);
        ev.lines += 1;
        if ev.overflow || joined > self.max_line {
            ev.overflow = true;
            return;
        }
        ev.len = joined;
        match line {
            // First data line, still in the chunk: keep a slice, copy nothing.
            Source::Chunk(b) if ev.lines == 1 => *borrowed = Some(&b[value_at..]),
            _ => {
                if ev.lines == 1 {
                    ev.data.clear();
                } else {
                    if let Some(first) = borrowed.take() {
                        ev.data.clear();
                        ev.data.extend_from_slice(first);
                    }
                    ev.data.push(b'\n');
                }
                ev.data.extend_from_slice(&bytes[value_at..]);
            }
        }
    }

    fn dispatch(&mut self, borrowed: &mut Option<&[u8]>, on_event: &mut impl FnMut(Event<'_>)) {
        let ev = &mut self.event;
        if ev.lines == 0 {
            return;
        }
        if ev.overflow {
            self.stats.malformed += 1;
        } else {
            let data = borrowed.take().unwrap_or(&ev.data);
            self.stats.events += 1;
            on_event(Event { data });
        }
        *borrowed = None;
        ev.reset();
    }
}

impl PendingEvent {
    fn reset(&mut self) {
        // Keep the allocation: the next event reuses it.
        self.data.clear();
        self.lines = 0;
        self.len = 0;
        self.overflow = false;
    }
}

/// Where a complete line lives: in the chunk (may be kept as a slice) or in `carry`.
enum Source<'c, 'l> {
    Chunk(&'c [u8]),
    Carry(&'l [u8]),
}

impl Source<'_, '_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Source::Chunk(b) | Source::Carry(b) => b,
        }
    }
}
