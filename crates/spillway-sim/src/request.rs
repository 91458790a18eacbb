//! Understanding a request: which operation its path names, and what its body asks the model for.

use serde_json::Value;

use super::reject::Reject;

/// gpt-4o's default `max_tokens` when the client sends no cap.
pub(crate) const DEFAULT_CAP: u32 = 4096;
/// Api-versions from this date on know `stream_options` (2024-09-01-preview and the 2024-10-21 GA).
const STREAM_OPTIONS_SINCE: &str = "2024-09-01";
/// Azure refuses large `n`; the exact bound matters less than not generating unbounded output.
const MAX_N: u64 = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Chat,
    Completions,
    Embeddings,
}

impl Kind {
    /// The operation name Azure quotes in its 429 messages.
    pub fn operation(self) -> &'static str {
        match self {
            Kind::Chat => "ChatCompletions_Create",
            Kind::Completions => "Completions_Create",
            Kind::Embeddings => "Embeddings_Create",
        }
    }

    /// For answers given before the path is understood (injected faults).
    pub fn guess_from_path(path: &str) -> Kind {
        if path.contains("/chat/") {
            Kind::Chat
        } else if path.contains("/embeddings") {
            Kind::Embeddings
        } else {
            Kind::Completions
        }
    }
}

/// An API path the simulator serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub kind: Kind,
    /// `Some` on the dated path; the v1 path names the deployment in the body's `model`.
    pub deployment: Option<String>,
    /// `None` on the v1 path.
    pub api_version: Option<String>,
}

impl Route {
    pub fn parse(method: &http::Method, path: &str, query: Option<&str>) -> Result<Self, Reject> {
        if method != http::Method::POST {
            return Err(Reject::not_found());
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let kind_of = |rest: &[&str]| match rest {
            ["chat", "completions"] => Some(Kind::Chat),
            ["completions"] => Some(Kind::Completions),
            ["embeddings"] => Some(Kind::Embeddings),
            _ => None,
        };
        match segments.as_slice() {
            ["openai", "v1", rest @ ..] => {
                let kind = kind_of(rest).ok_or_else(Reject::not_found)?;
                Ok(Route {
                    kind,
                    deployment: None,
                    api_version: None,
                })
            }
            ["openai", "deployments", deployment, rest @ ..] if !deployment.is_empty() => {
                let kind = kind_of(rest).ok_or_else(Reject::not_found)?;
                // Azure answers a dated path without api-version with a plain 404.
                let api_version =
                    query_param(query, "api-version").ok_or_else(Reject::not_found)?;
                Ok(Route {
                    kind,
                    deployment: Some((*deployment).to_string()),
                    api_version: Some(api_version),
                })
            }
            _ => Err(Reject::not_found()),
        }
    }

    /// The version quoted in error messages.
    pub fn version_label(&self) -> &str {
        self.api_version.as_deref().unwrap_or("v1")
    }

    fn knows_stream_options(&self) -> bool {
        match &self.api_version {
            None => true,
            Some(v) => v.get(..10).is_some_and(|date| date >= STREAM_OPTIONS_SINCE),
        }
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

/// What the body asks for, reduced to what drives timing, size and throttling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GenRequest {
    pub kind: Kind,
    /// The body's `model`, which on the v1 path must name the deployment.
    pub model: Option<String>,
    pub stream: bool,
    pub include_usage: bool,
    pub n: u32,
    /// The smallest of `max_tokens` / `max_completion_tokens`, else [`DEFAULT_CAP`].
    pub cap: u32,
    /// An estimate, see [`estimate_prompt_tokens`].
    pub prompt_tokens: u64,
    /// Embeddings: how many vectors to return.
    pub inputs: usize,
}

impl GenRequest {
    pub fn parse(route: &Route, body: &[u8]) -> Result<Self, Reject> {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            Reject::bad_request(format!(
                "We could not parse the JSON body of your request. ({e})"
            ))
        })?;
        let obj = v
            .as_object()
            .ok_or_else(|| Reject::bad_request("The request body must be a JSON object."))?;
        let model = match obj.get("model") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(Reject::bad_request("'model' must be a string.")),
        };
        let stream = bool_field(&v, "stream")?;
        if obj.contains_key("stream_options") && !route.knows_stream_options() {
            return Err(Reject::bad_request(
                "Unrecognized request argument supplied: stream_options",
            ));
        }
        let include_usage = v
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let n = uint_field(&v, "n")?.unwrap_or(1);
        if n == 0 || n > MAX_N {
            return Err(Reject::bad_request(format!(
                "'n' must be between 1 and {MAX_N}."
            )));
        }
        let caps = [
            uint_field(&v, "max_tokens")?,
            uint_field(&v, "max_completion_tokens")?,
        ];
        let cap = caps
            .into_iter()
            .flatten()
            .min()
            .map_or(DEFAULT_CAP, |c| u32::try_from(c).unwrap_or(u32::MAX));
        let (prompt_tokens, inputs) = match route.kind {
            Kind::Chat => {
                let messages = v
                    .get("messages")
                    .and_then(Value::as_array)
                    .filter(|m| !m.is_empty())
                    .ok_or_else(|| {
                        Reject::bad_request("'messages' is a required non-empty array.")
                    })?;
                (estimate_prompt_tokens(messages), 1)
            }
            Kind::Completions => {
                let prompt = v
                    .get("prompt")
                    .ok_or_else(|| Reject::bad_request("'prompt' is a required property."))?;
                (text_tokens(prompt).0, 1)
            }
            Kind::Embeddings => {
                let input = v
                    .get("input")
                    .ok_or_else(|| Reject::bad_request("'input' is a required property."))?;
                text_tokens(input)
            }
        };
        Ok(GenRequest {
            kind: route.kind,
            model,
            stream: stream && route.kind != Kind::Embeddings,
            include_usage,
            n: n as u32,
            cap,
            prompt_tokens,
            inputs,
        })
    }

    /// What admission charges before anything runs: prompt + cap for every choice.
    pub fn estimate(&self) -> u64 {
        match self.kind {
            Kind::Embeddings => self.prompt_tokens,
            _ => self.prompt_tokens + u64::from(self.cap) * u64::from(self.n),
        }
    }

    /// Tokens generated per choice and the finish reason, given how long the model wants to talk.
    pub fn output(&self, natural: u32) -> (u32, &'static str) {
        if natural >= self.cap {
            (self.cap, "length")
        } else {
            (natural, "stop")
        }
    }
}

fn bool_field(v: &Value, name: &str) -> Result<bool, Reject> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Reject::bad_request(format!("'{name}' must be a boolean."))),
    }
}

fn uint_field(v: &Value, name: &str) -> Result<Option<u64>, Reject> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x.as_u64().map(Some).ok_or_else(|| {
            Reject::bad_request(format!("'{name}' must be a non-negative integer."))
        }),
    }
}

/// An estimate, not a tokenizer: ceil(characters of all message contents / 4) + 3 per message.
/// It deliberately shares nothing with the gateway's tokenizer, so the two can check each other.
pub(crate) fn estimate_prompt_tokens(messages: &[Value]) -> u64 {
    let chars: u64 = messages
        .iter()
        .map(|m| m.get("content").map_or(0, content_chars))
        .sum();
    chars.div_ceil(4) + 3 * messages.len() as u64
}

/// Characters of a message content: a string, or an array of parts whose `text` counts.
fn content_chars(content: &Value) -> u64 {
    match content {
        Value::String(s) => s.chars().count() as u64,
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(|s| s.chars().count() as u64)
            .sum(),
        _ => 0,
    }
}

/// `(tokens, inputs)` of a `prompt` or `input`: text counts chars/4, token-id arrays count ids.
fn text_tokens(input: &Value) -> (u64, usize) {
    fn walk(v: &Value, chars: &mut u64, ids: &mut u64) {
        match v {
            Value::String(s) => *chars += s.chars().count() as u64,
            Value::Number(_) => *ids += 1,
            Value::Array(items) => items.iter().for_each(|i| walk(i, chars, ids)),
            _ => {}
        }
    }
    let (mut chars, mut ids) = (0, 0);
    walk(input, &mut chars, &mut ids);
    let inputs = match input {
        // An array of strings or of id arrays is a batch; a flat id array is one input.
        Value::Array(items) if items.iter().any(|i| !i.is_number()) => items.len(),
        _ => 1,
    };
    (chars.div_ceil(4) + ids, inputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use serde_json::json;

    fn dated(kind: &str, version: &str) -> Route {
        let path = format!("/openai/deployments/d/{kind}");
        Route::parse(
            &Method::POST,
            &path,
            Some(&format!("api-version={version}")),
        )
        .unwrap()
    }

    #[test]
    fn routes() {
        let r = Route::parse(
            &Method::POST,
            "/openai/deployments/gpt/chat/completions",
            Some("foo=1&api-version=2024-10-21"),
        )
        .unwrap();
        assert_eq!(r.kind, Kind::Chat);
        assert_eq!(r.deployment.as_deref(), Some("gpt"));
        assert_eq!(r.api_version.as_deref(), Some("2024-10-21"));
        let r = Route::parse(&Method::POST, "/openai/v1/embeddings", None).unwrap();
        assert_eq!(
            (r.kind, r.deployment, r.api_version),
            (Kind::Embeddings, None, None)
        );
        let missing_version = Route::parse(
            &Method::POST,
            "/openai/deployments/gpt/chat/completions",
            None,
        );
        assert_eq!(missing_version.unwrap_err(), Reject::not_found());
        let empty_version = Route::parse(
            &Method::POST,
            "/openai/deployments/gpt/completions",
            Some("api-version="),
        );
        assert!(empty_version.is_err());
        assert!(Route::parse(&Method::GET, "/openai/v1/chat/completions", None).is_err());
        assert!(Route::parse(&Method::POST, "/openai/v1/models", None).is_err());
        assert!(Route::parse(&Method::POST, "/", None).is_err());
    }

    #[test]
    fn prompt_estimate() {
        let messages = [
            json!({"role": "system", "content": "12345"}),
            json!({"role": "user", "content": [{"type": "text", "text": "abc"}, {"type": "image_url"}]}),
            json!({"role": "assistant", "content": null}),
        ];
        // 8 characters -> 2 tokens, plus 3 per message.
        assert_eq!(estimate_prompt_tokens(&messages), 2 + 9);
        // Characters, not bytes: 5 two-byte characters round up to 2 tokens.
        assert_eq!(
            estimate_prompt_tokens(&[json!({"content": "ééééé"})]),
            2 + 3
        );
    }

    #[test]
    fn cap_is_the_smallest_given_else_4096() {
        let r = dated("chat/completions", "2024-10-21");
        let parse = |body: Value| GenRequest::parse(&r, body.to_string().as_bytes());
        let m = json!([{"role": "user", "content": "hi"}]);
        let g = parse(json!({"messages": m})).unwrap();
        assert_eq!(
            (g.cap, g.n, g.stream, g.include_usage),
            (DEFAULT_CAP, 1, false, false)
        );
        let g =
            parse(json!({"messages": m, "max_tokens": 50, "max_completion_tokens": 30})).unwrap();
        assert_eq!(g.cap, 30);
        let g = parse(json!({"messages": m, "max_completion_tokens": 70, "n": 3})).unwrap();
        assert_eq!(g.cap, 70);
        // prompt 1 + 3, plus 70 for each of 3 choices.
        assert_eq!(g.estimate(), 4 + 210);
        assert!(parse(json!({"messages": m, "max_tokens": -1})).is_err());
        assert!(parse(json!({"messages": m, "n": 0})).is_err());
        assert!(parse(json!({"messages": []})).is_err());
    }

    #[test]
    fn finish_reason_follows_the_cap() {
        let r = dated("chat/completions", "2024-10-21");
        let body = json!({"messages": [{"content": "x"}], "max_tokens": 10}).to_string();
        let g = GenRequest::parse(&r, body.as_bytes()).unwrap();
        assert_eq!(g.output(200), (10, "length"));
        assert_eq!(g.output(10), (10, "length"));
        assert_eq!(g.output(9), (9, "stop"));
        assert_eq!(g.output(0), (0, "stop"));
    }

    #[test]
    fn stream_options_only_where_the_version_knows_them() {
        let body = json!({"messages": [{"content": "x"}], "stream": true,
                          "stream_options": {"include_usage": true}})
        .to_string();
        let g =
            GenRequest::parse(&dated("chat/completions", "2024-10-21"), body.as_bytes()).unwrap();
        assert!(g.stream && g.include_usage);
        let preview = dated("chat/completions", "2024-09-01-preview");
        assert!(GenRequest::parse(&preview, body.as_bytes()).is_ok());
        let old = GenRequest::parse(&dated("chat/completions", "2024-06-01"), body.as_bytes());
        assert!(old.unwrap_err().message.contains("stream_options"));
        let v1 = Route::parse(&Method::POST, "/openai/v1/chat/completions", None).unwrap();
        assert!(GenRequest::parse(&v1, body.as_bytes()).is_ok());
    }

    #[test]
    fn malformed_json_is_400() {
        let r = dated("chat/completions", "2024-10-21");
        let err = GenRequest::parse(&r, b"{not json").unwrap_err();
        assert_eq!(err.status, http::StatusCode::BAD_REQUEST);
        assert!(GenRequest::parse(&r, b"[1]").is_err());
    }

    #[test]
    fn embeddings_inputs() {
        let r = dated("embeddings", "2024-10-21");
        let parse = |body: Value| GenRequest::parse(&r, body.to_string().as_bytes()).unwrap();
        let g = parse(json!({"input": "abcdefgh"}));
        assert_eq!((g.prompt_tokens, g.inputs, g.estimate()), (2, 1, 2));
        let g = parse(json!({"input": ["abcd", "abcde"]}));
        assert_eq!((g.prompt_tokens, g.inputs), (3, 2));
        let g = parse(json!({"input": [1, 2, 3]}));
        assert_eq!((g.prompt_tokens, g.inputs), (3, 1));
        let g = parse(json!({"input": [[1, 2], [3]], "stream": true}));
        assert_eq!((g.prompt_tokens, g.inputs, g.stream), (3, 2, false));
    }
}
