//! Finds the few top-level fields of a JSON request body that the gateway reads or rewrites,
//! and splices new values into the original bytes, so no body is ever re-serialised.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::ops::Range;

/// Why a body is not a JSON object the gateway can work with.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

/// The top-level fields that matter, borrowed from the body.
#[derive(Deserialize, Default)]
struct Top<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    model: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    max_output_tokens: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    stream: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    n: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    best_of: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    input: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    prompt: Option<&'a RawValue>,
}

/// Keeps a field that is present even when its value is `null` (plain `Option` would turn
/// it into "absent", and a later append would then duplicate the key).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Byte range of one field's value inside the body.
pub type Span = Range<usize>;

/// A parsed request body: the original bytes and where its interesting values are.
#[derive(Debug, Clone, Default)]
pub struct JsonBody {
    pub raw: Bytes,
    pub model: Option<(Span, String)>,
    pub max_tokens: Option<(Span, u64)>,
    pub max_completion_tokens: Option<(Span, u64)>,
    pub max_output_tokens: Option<(Span, u64)>,
    pub stream: bool,
    pub stream_options: Option<Span>,
    pub n: u64,
    /// Completions generated server-side to return the best `n` (legacy completions): each
    /// may be as long as the limit, so it counts against the cap like `n`.
    pub best_of: u64,
    /// Where the prompt is (`messages`, `input` or `prompt`), for token counting.
    pub prompt: Option<Span>,
    /// Offset of the object's closing brace, where new fields are appended.
    close: usize,
    /// Whether the object has at least one member (a comma is needed before a new one).
    has_members: bool,
}

fn span_of(body: &[u8], raw: &RawValue) -> Span {
    let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
    start..start + raw.get().len()
}

fn token_limit(
    body: &[u8],
    name: &str,
    raw: Option<&RawValue>,
) -> Result<Option<(Span, u64)>, BodyError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.get() == "null" {
        // An explicit null means "no limit": treated as absent, and rewritten when capped.
        return Ok(Some((span_of(body, raw), u64::MAX)));
    }
    // 0 is refused rather than passed on: it asks for nothing, and Azure answers it with an
    // error after the request has been admitted and counted.
    let n: u64 = serde_json::from_str(raw.get())
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| BodyError(format!("`{name}` must be an integer of at least 1")))?;
    Ok(Some((span_of(body, raw), n)))
}

/// A choice count (`n`, `best_of`): absent or null is 1.
fn choices(name: &str, raw: Option<&RawValue>) -> Result<u64, BodyError> {
    match raw {
        None => Ok(1),
        Some(r) if r.get() == "null" => Ok(1),
        Some(r) => serde_json::from_str::<u64>(r.get())
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| BodyError(format!("`{name}` must be an integer of at least 1"))),
    }
}

impl JsonBody {
    /// Parses a body that must be a JSON object. Unknown fields are skipped (but still
    /// validated as JSON); a repeated known field is an error, so no duplicate can smuggle a
    /// second limit past the cap.
    pub fn parse(raw: Bytes) -> Result<JsonBody, BodyError> {
        let body: &[u8] = &raw;
        let top: Top<'_> = serde_json::from_slice(body)
            .map_err(|e| BodyError(format!("the request body is not valid JSON: {e}")))?;
        let close = body
            .iter()
            .rposition(|b| *b == b'}')
            .ok_or_else(|| BodyError("the request body must be a JSON object".into()))?;
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(BodyError("the request body must be a JSON object".into()));
        }
        let has_members = body[..close]
            .iter()
            .rev()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b != b'{');
        let model = match top.model {
            Some(r) => Some((
                span_of(body, r),
                serde_json::from_str::<String>(r.get())
                    .map_err(|_| BodyError("`model` must be a string".into()))?,
            )),
            None => None,
        };
        let stream = match top.stream {
            None => false,
            Some(r) => match r.get() {
                "true" => true,
                "false" | "null" => false,
                _ => return Err(BodyError("`stream` must be a boolean".into())),
            },
        };
        let n = choices("n", top.n)?;
        let best_of = choices("best_of", top.best_of)?;
        Ok(JsonBody {
            model,
            max_tokens: token_limit(body, "max_tokens", top.max_tokens)?,
            max_completion_tokens: token_limit(
                body,
                "max_completion_tokens",
                top.max_completion_tokens,
            )?,
            max_output_tokens: token_limit(body, "max_output_tokens", top.max_output_tokens)?,
            stream,
            stream_options: top.stream_options.map(|r| span_of(body, r)),
            n,
            best_of,
            prompt: top
                .messages
                .or(top.input)
                .or(top.prompt)
                .map(|r| span_of(body, r)),
            close,
            has_members,
            raw,
        })
    }

    /// How many completions the request may generate, each up to the limit.
    pub fn generated(&self) -> u64 {
        self.n.max(self.best_of)
    }

    /// The prompt part of the body (`messages`, `input` or `prompt`), as raw JSON.
    pub fn prompt_json(&self) -> Option<&[u8]> {
        self.prompt.clone().map(|s| &self.raw[s])
    }
}

/// Changes to apply to a body: values replaced in place and members appended at the end.
#[derive(Debug, Clone, Default)]
pub struct Edits {
    replace: Vec<(Span, String)>,
    append: Vec<String>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.replace.is_empty() && self.append.is_empty()
    }

    /// Replaces a value (the span of an existing field) with raw JSON.
    pub fn replace(&mut self, span: Span, json: String) {
        self.replace.push((span, json));
    }

    /// Adds `"name": json` as a new member of the object.
    pub fn append(&mut self, name: &str, json: &str) {
        self.append.push(format!("\"{name}\":{json}"));
    }

    /// Applies the edits to `body` in one pass; returns the original bytes when there are none.
    pub fn apply(&self, body: &JsonBody) -> Bytes {
        if self.is_empty() {
            return body.raw.clone();
        }
        let raw: &[u8] = &body.raw;
        let mut replace: Vec<&(Span, String)> = self.replace.iter().collect();
        replace.sort_by_key(|(s, _)| s.start);
        let extra: usize = replace.iter().map(|(_, v)| v.len()).sum::<usize>()
            + self.append.iter().map(|m| m.len() + 1).sum::<usize>();
        let mut out = BytesMut::with_capacity(raw.len() + extra);
        let mut at = 0;
        for (span, value) in replace {
            out.extend_from_slice(&raw[at..span.start]);
            out.extend_from_slice(value.as_bytes());
            at = span.end;
        }
        out.extend_from_slice(&raw[at..body.close]);
        let mut need_comma = body.has_members;
        for member in &self.append {
            if need_comma {
                out.extend_from_slice(b",");
            }
            out.extend_from_slice(member.as_bytes());
            need_comma = true;
        }
        out.extend_from_slice(&raw[body.close..]);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(s: &str) -> JsonBody {
        JsonBody::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    fn value(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn finds_fields_and_spans() {
        let b = parse(
            r#"{"model":"gpt-4o-mini","max_tokens":8000,"stream":true,"n":2,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(b.model.as_ref().unwrap().1, "gpt-4o-mini");
        assert_eq!(b.max_tokens.as_ref().unwrap().1, 8000);
        assert_eq!(&b.raw[b.max_tokens.clone().unwrap().0], b"8000");
        assert!(b.stream);
        assert_eq!(b.n, 2);
        assert!(b.prompt_json().unwrap().starts_with(b"[{"));
    }

    #[test]
    fn rejects_what_is_not_a_usable_object() {
        for bad in [
            "",
            "{",
            "[1,2]",
            "\"text\"",
            r#"{"max_tokens":-1}"#,
            r#"{"max_tokens":"many"}"#,
            r#"{"stream":"yes"}"#,
            r#"{"n":0}"#,
            r#"{"best_of":0}"#,
            r#"{"best_of":"3"}"#,
            r#"{"max_tokens":0}"#,
            r#"{"max_completion_tokens":0}"#,
            r#"{"max_output_tokens":0}"#,
            r#"{"model":5}"#,
            r#"{"max_tokens":10,"max_tokens":9000}"#,
        ] {
            assert!(JsonBody::parse(Bytes::from(bad)).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn splices_without_touching_the_rest() {
        let src = r#"{ "model" : "alias", "messages":[{"content":"a \"quoted\" }"}], "max_tokens": 8000 }"#;
        let b = parse(src);
        let mut e = Edits::default();
        e.replace(b.model.clone().unwrap().0, "\"real\"".into());
        e.replace(b.max_tokens.clone().unwrap().0, "2000".into());
        e.append("stream_options", r#"{"include_usage":true}"#);
        let out = e.apply(&b);
        assert_eq!(
            value(&out),
            json!({"model":"real","messages":[{"content":"a \"quoted\" }"}],"max_tokens":2000,"stream_options":{"include_usage":true}})
        );
        assert!(
            String::from_utf8_lossy(&out).contains(r#""messages":[{"content":"a \"quoted\" }"}]"#)
        );
    }

    #[test]
    fn appends_to_an_empty_object_and_keeps_bytes_when_unchanged() {
        let b = parse("{ }");
        let mut e = Edits::default();
        e.append("max_tokens", "1000");
        e.append("n", "1");
        assert_eq!(value(&e.apply(&b)), json!({"max_tokens":1000,"n":1}));
        let b = parse(r#"{"a":1}"#);
        assert_eq!(Edits::default().apply(&b).as_ptr(), b.raw.as_ptr());
    }

    #[test]
    fn null_limit_counts_as_unlimited() {
        let b = parse(r#"{"max_completion_tokens":null}"#);
        assert_eq!(b.max_completion_tokens.unwrap().1, u64::MAX);
    }
}
