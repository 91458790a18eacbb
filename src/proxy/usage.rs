//! Reads `usage` from a non-streaming JSON response on the side, while the body is forwarded
//! untouched, so budgets and rates are settled with what the upstream really generated.
//! (Streams are read by `crate::stream::SseTap`.)
//!
//! Azure OpenAI writes `usage` as the last member of the answer, after the choices and their
//! content-filter results. Reading it from the end skips parsing the rest, about nine tenths
//! of the work; any other layout gets the whole answer parsed.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

/// Responses larger than this are not inspected (no completion body is near it).
const MAX_INSPECTED: usize = 1024 * 1024;

pub use crate::stream::Usage;

/// Keeps a JSON response's chunks as it passes (reference-counted, not copied), up to a
/// bound, and parses its usage at the end.
#[derive(Debug, Default)]
pub struct JsonUsage {
    chunks: Vec<Bytes>,
    len: usize,
    overflow: bool,
}

impl JsonUsage {
    pub fn feed(&mut self, chunk: &Bytes) {
        if self.overflow {
            return;
        }
        self.len += chunk.len();
        if self.len > MAX_INSPECTED {
            self.overflow = true;
            self.chunks = Vec::new();
        } else {
            self.chunks.push(chunk.clone());
        }
    }

    pub fn finish(&mut self) -> Option<Usage> {
        let chunks = std::mem::take(&mut self.chunks);
        // A completion usually arrives in one chunk: parse it in place.
        let body = match chunks.as_slice() {
            [one] => one.clone(),
            many => {
                let mut joined = BytesMut::with_capacity(self.len);
                for c in many {
                    joined.extend_from_slice(c);
                }
                joined.freeze()
            }
        };
        trailing_usage(&body).unwrap_or_else(|| parsed_usage(&body))
    }
}

/// The top-level `usage` of an answer, from parsing all of it.
fn parsed_usage(body: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct Top {
        usage: Option<Usage>,
    }
    serde_json::from_slice::<Top>(body).ok()?.usage
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

/// The top-level `usage` when it is the answer's last member, found from the end; `None` when
/// the answer does not end that way. (An answer that is not valid JSON can still end that way;
/// its usage is then read where a whole parse would give up, which only meters it.)
///
/// Why this finds the top-level member and nothing else, in valid JSON: a quote after `{` or
/// `,` is not inside a string (a quote in a string is escaped, so preceded by a backslash), so
/// it opens a string, and that string followed by `:` is a key. The value is parsed as JSON,
/// and the one `}` after it, followed by the end of the answer, closes the outermost object.
fn trailing_usage(body: &[u8]) -> Option<Option<Usage>> {
    const KEY: &[u8] = b"\"usage\"";
    let key = memchr::memmem::rfind(body, KEY)?;
    let before = body[..key]
        .iter()
        .rev()
        .find(|b| !b.is_ascii_whitespace())?;
    if !matches!(before, b'{' | b',') {
        return None;
    }
    let value = skip_ws(skip_ws(&body[key + KEY.len()..]).strip_prefix(b":")?);
    let mut values = serde_json::Deserializer::from_slice(value).into_iter::<Option<Usage>>();
    let usage = values.next()?.ok()?;
    let after = skip_ws(&value[values.byte_offset()..]);
    skip_ws(after.strip_prefix(b"}")?)
        .is_empty()
        .then_some(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_from_split_body() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
        let mut u = JsonUsage::default();
        for part in body.chunks(9) {
            u.feed(&Bytes::copy_from_slice(part));
        }
        assert_eq!(
            u.finish(),
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 7,
                total_tokens: 12,
                cached_tokens: 0,
            })
        );
        let mut u = JsonUsage::default();
        u.feed(&Bytes::from_static(b"{\"error\":{}}"));
        assert_eq!(u.finish(), None);
        let mut u = JsonUsage::default();
        u.feed(&Bytes::from_static(b"{not json"));
        assert_eq!(u.finish(), None);
    }

    fn usage(p: u64, c: u64) -> Usage {
        Usage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: p + c,
            cached_tokens: 0,
        }
    }

    /// Azure's own layout is read from the end, with the same result as parsing it all.
    #[test]
    fn azure_answers_are_read_from_the_end() {
        let azure = br#"{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"Hi \"usage\":{} there","refusal":null,"role":"assistant"}}],"created":1,"id":"chatcmpl-1","model":"gpt-4o-mini-2024-07-18","object":"chat.completion","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}],"system_fingerprint":"fp_1","usage":{"completion_tokens":7,"completion_tokens_details":{"accepted_prediction_tokens":0,"reasoning_tokens":0},"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":12}}"#;
        assert_eq!(trailing_usage(azure), Some(Some(usage(5, 7))));
        assert_eq!(parsed_usage(azure), Some(usage(5, 7)));
        let pretty = b"{\n  \"id\": \"x\",\n  \"usage\" : {\"prompt_tokens\": 1, \"completion_tokens\": 2, \"total_tokens\": 3}\n}\n";
        assert_eq!(trailing_usage(pretty), Some(Some(usage(1, 2))));
        assert_eq!(trailing_usage(br#"{"id":"x","usage":null}"#), Some(None));
    }

    /// A gpt-4o-mini answer whose prompt hit the prompt cache, as Azure OpenAI sends it
    /// (api-version 2024-10-21): the cached part of the prompt is read on the fast path too.
    #[test]
    fn cached_prompt_tokens_are_read() {
        let azure = br#"{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"Paris.","refusal":null,"role":"assistant"}}],"created":1733150000,"id":"chatcmpl-AaBbCc","model":"gpt-4o-mini-2024-07-18","object":"chat.completion","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}],"system_fingerprint":"fp_04751d0b65","usage":{"completion_tokens":3,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":1541,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":1408},"total_tokens":1544}}"#;
        let want = Usage {
            prompt_tokens: 1541,
            completion_tokens: 3,
            total_tokens: 1544,
            cached_tokens: 1408,
        };
        assert_eq!(trailing_usage(azure), Some(Some(want)));
        assert_eq!(parsed_usage(azure), Some(want));
        let mut tap = JsonUsage::default();
        tap.feed(&Bytes::copy_from_slice(azure));
        assert_eq!(tap.finish(), Some(want));
    }

    /// Whenever the fast path answers, it agrees with parsing the whole answer; where it
    /// cannot be sure, it declines.
    #[test]
    fn reading_from_the_end_never_disagrees_with_parsing() {
        let u = r#"{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}"#;
        let v = r#"{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}"#;
        let cases = [
            // Declined: usage not last, nested, inside a string, a value, escaped.
            (format!(r#"{{"usage":{u},"id":"x"}}"#), false),
            (format!(r#"{{"usage":{u},"a":{{"usage":{v}}}}}"#), false),
            (format!(r#"{{"a":{{"usage":{v}}}}}"#), false),
            (format!(r#"{{"a":["usage",{v}]}}"#), false),
            (r#"{"a":"usage"}"#.to_string(), false),
            (
                r#"{"a":"x\"usage\":{\"prompt_tokens\":9}}"}"#.to_string(),
                false,
            ),
            (format!(r#"{{"a":"x\\","usage":{u}}}"#), true),
            (format!(r#"[{{"usage":{u}}}]"#), false),
            (format!(r#"{{"usage":{u}}}}}"#), false),
            (format!(r#"{{"usage":{u}}} x"#), false),
            (r#"{"usage":{"prompt_tokens":"many"}}"#.to_string(), false),
            // Taken: the top-level member, last.
            (format!(r#"{{"usage":{u}}}"#), true),
            (format!(r#"{{"a":{{"usage":{v}}},"usage":{u}}}"#), true),
            (format!(" {{ \"a\" : 1 ,\n\t\"usage\":{u} }} \n"), true),
        ];
        for (body, taken) in &cases {
            let fast = trailing_usage(body.as_bytes());
            assert_eq!(fast.is_some(), *taken, "{body}");
            if let Some(fast) = fast {
                assert_eq!(fast, parsed_usage(body.as_bytes()), "{body}");
            }
            let mut tap = JsonUsage::default();
            tap.feed(&Bytes::copy_from_slice(body.as_bytes()));
            assert_eq!(tap.finish(), parsed_usage(body.as_bytes()), "{body}");
        }
    }
}
