//! The bodies of successful answers: completion JSON, embeddings, and the SSE events of a stream.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Value};

use super::request::Kind;

/// Length of the simulated embedding vectors: enough to look like one, small enough to be cheap.
const EMBEDDING_DIMS: usize = 8;

/// One generated answer, everything needed to render it in either shape.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub kind: Kind,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub n: u32,
    /// Tokens per choice.
    pub tokens: u32,
    pub finish_reason: &'static str,
    pub prompt_tokens: u64,
    pub include_usage: bool,
    /// Reported instead of the real usage (prompt, completion, total): `Fault::ReportUsage`.
    pub reported_usage: Option<[u64; 3]>,
}

/// Token `i` as text: one short word per token, so `content.split_whitespace().count()` is the token count.
pub(crate) fn token_text(i: u32) -> String {
    format!("tok{i} ")
}

/// The whole content of a choice; exactly the concatenation of the streamed deltas.
pub(crate) fn content(tokens: u32) -> String {
    (0..tokens).map(token_text).collect()
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Random-looking hex without a dependency: `RandomState` is randomly keyed per process, and the
/// counter makes every call distinct.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// A uuid-shaped random id, for `apim-request-id` / `x-request-id`.
pub(crate) fn request_id() -> String {
    let (a, b) = (random_u64(), random_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

pub(crate) fn completion_id(kind: Kind) -> String {
    let prefix = if kind == Kind::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    };
    format!("{prefix}-{:016x}{:013x}", random_u64(), random_u64() >> 12)
}

fn filter_results() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe})
}

fn prompt_filter_results() -> Value {
    let mut results = filter_results();
    results["jailbreak"] = json!({"filtered": false, "detected": false});
    json!([{"prompt_index": 0, "content_filter_results": results}])
}

fn usage([prompt, completion, total]: [u64; 3]) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
    })
}

impl Reply {
    pub fn completion_tokens(&self) -> u64 {
        u64::from(self.tokens) * u64::from(self.n)
    }

    /// What the answer reports: the real counts, unless a fault says otherwise.
    fn usage(&self) -> Value {
        let (prompt, completion) = (self.prompt_tokens, self.completion_tokens());
        usage(
            self.reported_usage
                .unwrap_or([prompt, completion, prompt + completion]),
        )
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            _ => "text_completion",
        }
    }

    /// The non-streaming `chat.completion` (or `text_completion`) body.
    pub fn completion_body(&self) -> Bytes {
        let text = content(self.tokens);
        let choices: Vec<Value> = (0..self.n)
            .map(|index| {
                let mut c = json!({
                    "index": index,
                    "finish_reason": self.finish_reason,
                    "logprobs": null,
                    "content_filter_results": filter_results(),
                });
                if self.kind == Kind::Chat {
                    c["message"] = json!({"role": "assistant", "content": text, "refusal": null});
                } else {
                    c["text"] = json!(text);
                }
                c
            })
            .collect();
        let v = json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_sim",
            "choices": choices,
            "usage": self.usage(),
            "prompt_filter_results": prompt_filter_results(),
        });
        Bytes::from(v.to_string())
    }

    /// With `include_usage`, every chunk but the last carries `"usage": null`.
    fn event(&self, mut v: Value) -> Bytes {
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        sse(&v)
    }

    fn chunk(&self, choice: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_sim",
            "choices": [choice],
        })
    }

    /// Sent at once: Azure's prompt-annotation chunk, with no choices and empty identity.
    pub fn annotation_event(&self) -> Bytes {
        self.event(json!({
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": prompt_filter_results(),
        }))
    }

    /// The chat role chunk opening each choice; text completions have none.
    pub fn role_event(&self, index: u32) -> Option<Bytes> {
        (self.kind == Kind::Chat).then(|| {
            self.event(self.chunk(json!({
                "index": index,
                "delta": {"role": "assistant", "content": "", "refusal": null},
                "finish_reason": null,
                "logprobs": null,
                "content_filter_results": {},
            })))
        })
    }

    pub fn token_event(&self, index: u32, token: u32) -> Bytes {
        let mut c = json!({
            "index": index,
            "finish_reason": null,
            "logprobs": null,
            "content_filter_results": filter_results(),
        });
        if self.kind == Kind::Chat {
            c["delta"] = json!({"content": token_text(token)});
        } else {
            c["text"] = json!(token_text(token));
        }
        self.event(self.chunk(c))
    }

    pub fn finish_event(&self, index: u32) -> Bytes {
        let mut c = json!({
            "index": index,
            "finish_reason": self.finish_reason,
            "logprobs": null,
            "content_filter_results": {},
        });
        if self.kind == Kind::Chat {
            c["delta"] = json!({});
        } else {
            c["text"] = json!("");
        }
        self.event(self.chunk(c))
    }

    /// The last chunk before `[DONE]` when `include_usage` was asked for.
    pub fn usage_event(&self) -> Option<Bytes> {
        self.include_usage.then(|| {
            let mut v = self.chunk(json!(null));
            v["choices"] = json!([]);
            v["usage"] = self.usage();
            sse(&v)
        })
    }
}

pub(crate) fn done_event() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// A small deterministic embedding per input, and usage with prompt tokens only.
pub(crate) fn embeddings_body(model: &str, inputs: usize, prompt_tokens: u64) -> Bytes {
    let data: Vec<Value> = (0..inputs)
        .map(|i| {
            let vector: Vec<f64> = (0..EMBEDDING_DIMS)
                .map(|j| ((i * EMBEDDING_DIMS + j) as f64 * 0.7).sin())
                .collect();
            json!({"object": "embedding", "index": i, "embedding": vector})
        })
        .collect();
    let v = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    });
    Bytes::from(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(kind: Kind, include_usage: bool) -> Reply {
        Reply {
            kind,
            id: "chatcmpl-x".into(),
            created: 7,
            model: "m".into(),
            n: 2,
            tokens: 3,
            finish_reason: "length",
            prompt_tokens: 11,
            include_usage,
            reported_usage: None,
        }
    }

    fn parse_event(b: &Bytes) -> Value {
        let s = std::str::from_utf8(b).unwrap();
        let json = s
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        assert!(
            !json.contains('\n'),
            "one event per frame, no stray newlines"
        );
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn content_is_one_word_per_token() {
        assert_eq!(content(3), "tok0 tok1 tok2 ");
        assert_eq!(content(0), "");
        assert_eq!(content(57).split_whitespace().count(), 57);
    }

    #[test]
    fn non_streaming_body() {
        let v: Value = serde_json::from_slice(&reply(Kind::Chat, false).completion_body()).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"].as_array().unwrap().len(), 2);
        assert_eq!(v["choices"][1]["index"], 1);
        assert_eq!(v["choices"][0]["message"]["content"], "tok0 tok1 tok2 ");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(
            v["choices"][0]["content_filter_results"]["hate"]["filtered"],
            false
        );
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17})
        );
        assert_eq!(v["prompt_filter_results"][0]["prompt_index"], 0);
        let v: Value =
            serde_json::from_slice(&reply(Kind::Completions, false).completion_body()).unwrap();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "tok0 tok1 tok2 ");
    }

    #[test]
    fn sse_events_with_usage() {
        let r = reply(Kind::Chat, true);
        let a = parse_event(&r.annotation_event());
        assert_eq!(a["choices"], json!([]));
        assert_eq!(
            (a["id"].as_str(), a["created"].as_u64()),
            (Some(""), Some(0))
        );
        assert!(a["prompt_filter_results"].is_array());
        assert!(a["usage"].is_null() && a.get("usage").is_some());
        let role = parse_event(&r.role_event(1).unwrap());
        assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(role["choices"][0]["index"], 1);
        let tok = parse_event(&r.token_event(0, 2));
        assert_eq!(tok["object"], "chat.completion.chunk");
        assert_eq!(tok["choices"][0]["delta"]["content"], "tok2 ");
        assert!(tok["choices"][0]["content_filter_results"]["violence"].is_object());
        assert!(tok.get("usage").is_some_and(Value::is_null));
        let fin = parse_event(&r.finish_event(0));
        assert_eq!(fin["choices"][0]["delta"], json!({}));
        assert_eq!(fin["choices"][0]["finish_reason"], "length");
        assert!(fin.get("usage").is_some_and(Value::is_null));
        let u = parse_event(&r.usage_event().unwrap());
        assert_eq!(u["choices"], json!([]));
        assert_eq!(u["usage"]["completion_tokens"], 6);
        assert_eq!(u["usage"]["total_tokens"], 17);
        assert_eq!(&done_event()[..], b"data: [DONE]\n\n");
    }

    #[test]
    fn sse_events_without_usage() {
        let r = reply(Kind::Completions, false);
        assert!(r.usage_event().is_none());
        assert!(r.role_event(0).is_none());
        let tok = parse_event(&r.token_event(0, 0));
        assert!(tok.get("usage").is_none());
        assert_eq!(tok["choices"][0]["text"], "tok0 ");
        assert!(parse_event(&r.annotation_event()).get("usage").is_none());
    }

    #[test]
    fn ids_look_like_uuids_and_differ() {
        let (a, b) = (request_id(), request_id());
        assert_ne!(a, b);
        let lens: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(lens, vec![8, 4, 4, 4, 12]);
        assert!(completion_id(Kind::Chat).starts_with("chatcmpl-"));
    }

    #[test]
    fn embeddings() {
        let v: Value = serde_json::from_slice(&embeddings_body("e", 2, 5)).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(
            v["data"][1]["embedding"].as_array().unwrap().len(),
            EMBEDDING_DIMS
        );
        assert_eq!(v["usage"], json!({"prompt_tokens": 5, "total_tokens": 5}));
    }
}
