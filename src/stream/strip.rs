//! Removes the final usage chunk from a stream whose client did not ask for it, forwarding
//! every other byte unchanged and undelayed.
//!
//! The gateway may add `stream_options.include_usage` upstream so it can count tokens; a
//! client that did not ask for it must not see the extra event (older SDKs index
//! `choices[0]` and fail on `"choices":[]`).
//!
//! # What is removed
//! An event is removed when (1) its data (its `data` lines joined by `\n`) parses as a JSON
//! object whose `choices` is an empty array and whose `usage` is an object, not `null`, keys
//! in any order; and (2) its raw bytes from the first byte of its first `data` line up to its
//! blank line number at most [`MAX_HOLD`]. The removed span is exactly those bytes plus the
//! blank line (with its terminator, even a `\r\n` split across chunks). Comment and field
//! lines before an event's first `data` line were forwarded as they arrived, so they stay;
//! Azure's chat stream has none. The prompt-annotation chunk (`"choices":[]`, `"usage"` null
//! or absent) and every `"usage":null` chunk pass unchanged. An event cut short by the end
//! of the stream is judged on the data it has.
//!
//! # What is held back, and for how long
//! Bytes are held from the first byte of a line that may open an event (`d`, `da`, ... until
//! the line is known to be `data`) until the event is known not to be removable, which
//! `prefix` decides from the data's first bytes: `{"choices":[` followed by anything but
//! `]` (Azure puts `choices` first in content chunks) clears it, so does data that is not an
//! object (`[DONE]`). A content chunk is thus released as soon as `data: {"choices":[{` (20
//! bytes) has been read, in the same call when the chunk holds that much of it. Any other
//! event (`"choices":[]`, or another key first, since key order is not relied on) is held to
//! its blank line and then removed or released: at most one event is held at any time, and
//! at most `MAX_HOLD` bytes of it (past that it is released and passes), never the stream.
//!
//! # Zero copy
//! A chunk from which nothing is removed or held, and to which no held bytes are added, is
//! returned as the very `Bytes` it came in; a chunk cut only at its ends is a `slice` of it.
//! A copy is made only when held bytes are joined to the chunk or a span inside it goes.

mod out;
mod prefix;

use super::eol::{find_eol, is_eol};
use bytes::Bytes;
use out::Out;
use prefix::{Prefix, Verdict};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Largest event held back. A usage chunk is a few hundred bytes; a larger held event is
/// released rather than buffered, so a misbehaving upstream cannot make us hold the stream.
pub const MAX_HOLD: usize = 64 * 1024;

/// True when an event's data is the usage chunk: a JSON object with `"choices":[]` and a
/// non-null object `usage`, keys in any order.
pub fn is_usage_chunk(data: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe<'a> {
        // `IgnoredAny` is zero-sized, so the `Vec` never allocates; only its length matters.
        #[serde(default)]
        choices: Option<Vec<IgnoredAny>>,
        #[serde(default, borrow)]
        usage: Option<&'a RawValue>,
    }
    // serde's derived structs also accept arrays: insist on an object.
    if data.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return false;
    }
    match serde_json::from_slice::<Probe<'_>>(data) {
        Ok(p) => {
            p.choices.is_some_and(|c| c.is_empty())
                && p.usage.is_some_and(|u| u.get().starts_with('{'))
        }
        Err(_) => false,
    }
}

/// Fed each upstream chunk in order, returns what to forward to the client.
#[derive(Debug, Default)]
pub struct UsageStripper {
    line: Line,
    event: Ev,
    prefix: Prefix,
    /// Bytes held from earlier chunks (the current chunk's are tracked by position).
    held: Vec<u8>,
    /// The current event's data (lines joined by `\n`) while it may be removed.
    data: Vec<u8>,
    /// Bytes from `mark` on are being held rather than forwarded.
    holding: bool,
    /// The last chunk ended in `\r`; a `\n` opening this one belongs to that terminator.
    skip_lf: bool,
    /// ...and that terminator closed a removed event, so the `\n` goes too.
    drop_lf: bool,
    removed: u64,
}

/// Where the scanner is within the current line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Line {
    #[default]
    Start,
    /// Reading the field name: this many bytes of `data` matched so far.
    Name(u8),
    /// `data:` read; a single space may follow and is not data.
    ValueStart,
    /// Inside a `data` value.
    Value,
    /// A comment or another field: nothing to read up to the terminator.
    Skip,
}

/// Where the scanner is within the current event.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Ev {
    /// No `data` line since the last blank line.
    #[default]
    Idle,
    /// Held; the data's prefix may still clear it.
    Deciding,
    /// Held until its end, then removed or released.
    Hold,
    /// Known not removable: forwarded to its end.
    Pass,
}

/// The scan of one chunk: the chunk, what is emitted so far, and where the current run of
/// forwarded or held bytes began.
struct Scan<'c> {
    buf: &'c [u8],
    out: Out,
    mark: usize,
}

impl UsageStripper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Usage chunks removed so far.
    pub fn removed(&self) -> u64 {
        self.removed
    }

    /// Bytes held back across calls right now (0 between events).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The bytes to forward for `chunk`. With `end_of_stream`, also whatever was held (unless
    /// it is a usage chunk cut short), and the stripper is ready for a new stream.
    pub fn filter(&mut self, chunk: Bytes, end_of_stream: bool) -> Bytes {
        let mut scan = Scan {
            buf: &chunk,
            out: Out::Empty,
            mark: 0,
        };
        self.scan(&mut scan);
        let len = scan.buf.len();
        let run = &scan.buf[scan.mark..];
        let oversized = self.held.len() + run.len() > MAX_HOLD;
        if self.holding && oversized && matches!(self.event, Ev::Deciding | Ev::Hold) {
            // Too big to be a usage chunk worth holding: let it all go, this chunk's part as
            // a slice of it.
            self.release(&mut scan);
            self.event = Ev::Pass;
            scan.out.range(scan.buf, scan.mark, len);
        } else if self.holding {
            self.held.extend_from_slice(run);
        } else {
            scan.out.range(scan.buf, scan.mark, len);
        }
        if end_of_stream {
            self.finish(&mut scan);
        }
        let Scan { out, .. } = scan;
        out.into_bytes(chunk)
    }

    /// Pingora's `response_body_filter` shape: rewrites `body` in place.
    pub fn filter_body(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        let chunk = body.take().unwrap_or_default();
        let out = self.filter(chunk, end_of_stream);
        *body = (!out.is_empty()).then_some(out);
    }

    fn scan(&mut self, s: &mut Scan<'_>) {
        let buf = s.buf;
        if buf.is_empty() {
            // Nothing to scan; above all, keep a pending `\r` waiting for its `\n`.
            return;
        }
        let mut i = 0;
        if std::mem::take(&mut self.skip_lf) && buf.first() == Some(&b'\n') {
            if std::mem::take(&mut self.drop_lf) {
                s.mark = 1;
            }
            i = 1;
        }
        self.drop_lf = false;
        while i < buf.len() {
            let b = buf[i];
            match self.line {
                Line::Start if is_eol(b) => {
                    let end = self.terminator(buf, i);
                    self.blank_line(s, i, end);
                    i = end;
                }
                Line::Start if b == b':' => {
                    self.line = Line::Skip;
                    i += 1;
                }
                Line::Start => {
                    if self.event == Ev::Idle {
                        // This line may open the usage event: hold it until it is known.
                        s.out.range(buf, s.mark, i);
                        s.mark = i;
                        self.holding = true;
                    }
                    self.line = Line::Name(0);
                }
                Line::Name(k) if is_eol(b) => {
                    if k == 4 {
                        // `data` alone is a data line with an empty value.
                        self.data_line();
                    } else {
                        self.other_line(s);
                    }
                    i = self.terminator(buf, i);
                    self.line = Line::Start;
                }
                Line::Name(k) if k < 4 && b == b"data"[usize::from(k)] => {
                    self.line = Line::Name(k + 1);
                    i += 1;
                }
                Line::Name(4) if b == b':' => {
                    self.data_line();
                    self.line = Line::ValueStart;
                    i += 1;
                }
                Line::Name(_) => {
                    self.other_line(s);
                    self.line = Line::Skip;
                    i += 1;
                }
                Line::ValueStart => {
                    if b == b' ' {
                        i += 1;
                    }
                    self.line = Line::Value;
                }
                Line::Value => {
                    let end = find_terminator(buf, i);
                    self.value(s, i, end);
                    i = end;
                    if let Some(&t) = buf.get(end) {
                        debug_assert!(is_eol(t));
                        i = self.terminator(buf, end);
                        self.line = Line::Start;
                    }
                }
                Line::Skip => {
                    let end = find_terminator(buf, i);
                    i = if end < buf.len() {
                        self.line = Line::Start;
                        self.terminator(buf, end)
                    } else {
                        end
                    };
                }
            }
        }
    }

    /// Consumes the terminator at `at` and returns the index after it. A `\r` ending the
    /// chunk may be the first half of a `\r\n`: remember to skip a `\n` opening the next.
    fn terminator(&mut self, buf: &[u8], at: usize) -> usize {
        if buf[at] == b'\r' {
            match buf.get(at + 1) {
                Some(b'\n') => return at + 2,
                None => self.skip_lf = true,
                Some(_) => {}
            }
        }
        at + 1
    }

    /// A `data` line begins (its field name is read).
    fn data_line(&mut self) {
        match self.event {
            Ev::Idle => {
                self.event = Ev::Deciding;
                self.prefix = Prefix::default();
                self.data.clear();
            }
            Ev::Deciding => {
                self.data.push(b'\n');
                // The joining newline is data too: the prefix must see it.
                if let Verdict::Hold = self.prefix.step(b'\n') {
                    self.event = Ev::Hold;
                }
            }
            Ev::Hold => self.data.push(b'\n'),
            Ev::Pass => {}
        }
    }

    /// A comment or non-`data` field. Before any `data` line it cannot open the usage event,
    /// so what was held of it goes out now.
    fn other_line(&mut self, s: &mut Scan<'_>) {
        if self.event == Ev::Idle && self.holding {
            self.release(s);
        }
    }

    /// Data bytes `buf[from..to]` of the current event.
    fn value(&mut self, s: &mut Scan<'_>, from: usize, to: usize) {
        let bytes = &s.buf[from..to];
        if self.event == Ev::Deciding {
            for &b in bytes {
                match self.prefix.step(b) {
                    Verdict::More => continue,
                    Verdict::Hold => self.event = Ev::Hold,
                    Verdict::Pass => {
                        self.release(s);
                        self.event = Ev::Pass;
                        return;
                    }
                }
                break;
            }
        }
        if matches!(self.event, Ev::Deciding | Ev::Hold) {
            self.data.extend_from_slice(bytes);
        }
    }

    /// A blank line spanning `at..end`: the current event ends.
    fn blank_line(&mut self, s: &mut Scan<'_>, at: usize, end: usize) {
        match self.event {
            Ev::Idle => {}
            Ev::Pass => self.event = Ev::Idle,
            Ev::Deciding | Ev::Hold => {
                // Measured up to the blank line's terminator so a `\r\n` split across chunks
                // counts the same as a whole one.
                let size = self.held.len() + (at - s.mark);
                if size <= MAX_HOLD && is_usage_chunk(&self.data) {
                    self.held.clear();
                    self.holding = false;
                    s.mark = end;
                    self.drop_lf = self.skip_lf;
                    self.removed += 1;
                } else {
                    self.release(s);
                }
                self.data.clear();
                self.event = Ev::Idle;
            }
        }
    }

    /// Forwards what is held: earlier chunks' bytes now, this chunk's run from `mark` on as
    /// part of the forwarded run.
    fn release(&mut self, s: &mut Scan<'_>) {
        s.out.bytes(s.buf, &self.held);
        self.held.clear();
        self.holding = false;
    }

    /// The stream ended: decide on what is still held, then reset for reuse.
    fn finish(&mut self, s: &mut Scan<'_>) {
        if self.holding {
            let removable = matches!(self.event, Ev::Deciding | Ev::Hold)
                && self.held.len() <= MAX_HOLD
                && is_usage_chunk(&self.data);
            if removable {
                self.removed += 1;
            } else {
                s.out.bytes(s.buf, &self.held);
            }
        }
        let removed = self.removed;
        *self = Self {
            removed,
            ..Self::default()
        };
    }
}

fn find_terminator(buf: &[u8], from: usize) -> usize {
    find_eol(&buf[from..]).map_or(buf.len(), |p| from + p)
}
