//! Measures a chat-completions stream from its events: time to first token, time between
//! tokens, content deltas, the final `usage`, finish reason and `[DONE]`.
//!
//! Every event's JSON is parsed into borrowed views that name only the fields we read; the
//! rest (`content_filter_results`, `logprobs`, ...) is skipped by serde without allocating,
//! and string values are looked at as raw JSON (`&RawValue`), so escapes never force a copy.
//! There is no byte pre-check to skip the parse: with `include_usage` every chunk carries
//! `"usage":null`, nearly every chunk carries a delta, and a key may legally be spelled with
//! `\u` escapes, so a check that stays correct would skip almost nothing.
//!
//! Time is an argument (`now`), never read here, so tests drive the clock.

use super::gaps::Gaps;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;
use std::time::{Duration, Instant};

/// The `usage` object of the final chunk (with `stream_options.include_usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Of the prompt tokens, those served from the prompt cache, which cost less: Azure's
    /// `prompt_tokens_details.cached_tokens`, 0 when absent.
    #[serde(rename = "prompt_tokens_details", deserialize_with = "cached_tokens")]
    pub cached_tokens: u64,
}

/// `prompt_tokens_details` down to its `cached_tokens`; `null` (or a missing member) is 0.
/// A small view like the chunk's, so the other details are skipped without allocating.
fn cached_tokens<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    struct Details {
        #[serde(default)]
        cached_tokens: Option<u64>,
    }
    Ok(Option::<Details>::deserialize(d)?
        .and_then(|x| x.cached_tokens)
        .unwrap_or(0))
}

/// What one stream measured, for the access log and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSummary {
    /// From `started` to the first event carrying content, a tool call or a refusal.
    pub ttft: Option<Duration>,
    /// Mean gap between consecutive content events.
    pub tbt_mean: Option<Duration>,
    /// 95th percentile of those gaps (nearest rank; see `gaps`).
    pub tbt_p95: Option<Duration>,
    /// Events that carried content in at least one choice.
    pub content_events: u64,
    /// Choice deltas that carried content (differs from `content_events` only when `n > 1`).
    /// Azure sends about one token per delta, so this estimates completion tokens.
    pub content_deltas: u64,
    /// The upstream's own count, when a usage chunk arrived.
    pub usage: Option<Usage>,
    /// True when no usage chunk arrived: token counts must come from `content_deltas`.
    pub usage_estimated: bool,
    /// `data: [DONE]` arrived, so the stream ended as the upstream meant it to.
    pub done_seen: bool,
    /// The finish reason. With several choices, the first one seen, unless it was `stop`
    /// and another choice gave a different reason (`length`, `content_filter`, ...), which
    /// then wins: the unusual ending is the one worth reporting.
    pub finish_reason: Option<String>,
    /// Events that were not `[DONE]` and did not parse as a chat-completion chunk.
    pub malformed_events: u64,
}

impl StreamSummary {
    /// Completion tokens: the upstream's count, else the content-delta estimate.
    pub fn completion_tokens(&self) -> u64 {
        self.usage
            .map_or(self.content_deltas, |u| u.completion_tokens)
    }
}

/// The meter of one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamMeter {
    first_content: Option<Instant>,
    last_content: Option<Instant>,
    content_events: u64,
    content_deltas: u64,
    gaps: Gaps,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    done: bool,
    malformed: u64,
}

impl StreamMeter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one event's data (as `Event::data` gives it) received at `now`.
    pub fn on_event(&mut self, data: &[u8], now: Instant) {
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<ChunkView<'_>>(data) else {
            self.malformed += 1;
            return;
        };
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        let choices = chunk.choices;
        if let Some(reason) = choices.finish_reason {
            self.note_finish(reason);
        }
        if choices.content_deltas > 0 {
            self.content_events += 1;
            self.content_deltas += choices.content_deltas;
            if let Some(last) = self.last_content {
                self.gaps.record(now.saturating_duration_since(last));
            } else {
                self.first_content = Some(now);
            }
            self.last_content = Some(now);
        }
    }

    /// True once `data: [DONE]` was seen.
    pub fn done_seen(&self) -> bool {
        self.done
    }

    /// The measurements so far; `started` is when the request was sent (or received).
    pub fn summary(&self, started: Instant) -> StreamSummary {
        StreamSummary {
            ttft: self
                .first_content
                .map(|t| t.saturating_duration_since(started)),
            tbt_mean: self.gaps.mean(),
            tbt_p95: self.gaps.p95(),
            content_events: self.content_events,
            content_deltas: self.content_deltas,
            usage: self.usage,
            usage_estimated: self.usage.is_none(),
            done_seen: self.done,
            finish_reason: self.finish_reason.clone(),
            malformed_events: self.malformed,
        }
    }

    fn note_finish(&mut self, raw: &RawValue) {
        // Finish reasons are a handful of times per stream, so decoding (and allocating)
        // here is fine; a non-string value is not a reason and is ignored.
        let Ok(reason) = serde_json::from_str::<String>(raw.get()) else {
            return;
        };
        match &self.finish_reason {
            Some(kept) if kept != "stop" || reason == "stop" => {}
            _ => self.finish_reason = Some(reason),
        }
    }
}

/// The fields of a `chat.completion.chunk` that the meter reads.
#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(default, borrow)]
    choices: ChoicesView<'a>,
    #[serde(default)]
    usage: Option<Usage>,
}

/// The `choices` array folded as it is read, so no `Vec` is built per event.
#[derive(Default)]
struct ChoicesView<'a> {
    content_deltas: u64,
    /// The first non-null finish reason in this chunk, or the first that is not `stop`.
    finish_reason: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaView<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tool_calls: Option<&'a RawValue>,
    #[serde(default, borrow)]
    refusal: Option<&'a RawValue>,
}

impl DeltaView<'_> {
    /// Content, a tool call or a refusal: what a user waits for. The role-only first
    /// delta (`"content":""`) is not.
    fn carries_output(&self) -> bool {
        [self.content, self.tool_calls, self.refusal]
            .into_iter()
            .flatten()
            .any(|raw| !is_empty_json(raw.get()))
    }
}

/// `""`, `[]`, `{}` and `null` are empty (`null` only reaches here inside arrays). A
/// whitespace string is not: a space can be a token of its own.
fn is_empty_json(raw: &str) -> bool {
    let raw = raw.trim();
    if raw == "null" || raw == "\"\"" {
        return true;
    }
    let inner = raw
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .or_else(|| raw.strip_prefix('{').and_then(|s| s.strip_suffix('}')));
    inner.is_some_and(|s| s.trim().is_empty())
}

impl<'de: 'a, 'a> Deserialize<'de> for ChoicesView<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ChoicesVisitor(std::marker::PhantomData))
    }
}

struct ChoicesVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ChoicesVisitor<'a> {
    type Value = ChoicesView<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of choices or null")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(ChoicesView::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut view = ChoicesView::default();
        while let Some(choice) = seq.next_element::<ChoiceView<'de>>()? {
            if choice.delta.as_ref().is_some_and(DeltaView::carries_output) {
                view.content_deltas += 1;
            }
            if let Some(reason) = choice.finish_reason {
                let keep = view
                    .finish_reason
                    .is_none_or(|kept| kept.get() == "\"stop\"");
                if keep {
                    view.finish_reason = Some(reason);
                }
            }
        }
        Ok(view)
    }
}
