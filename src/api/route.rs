//! Reads what a client asked for from the request line: which URL shape, which model alias,
//! which operation, and which key it presented. Pure functions, no session.

/// The two Azure OpenAI URL shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `/openai/deployments/{alias}/{operation}?api-version=...`: the alias is in the path.
    Dated,
    /// `/openai/v1/{operation}`: the alias is the body's `model`.
    V1,
}

/// The operations Spillway proxies: the allowlist. Anything else is refused before routing
/// (`classify`), because a request reaches Azure with the deployment's key and only these
/// operations' bodies are governed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    ChatCompletions,
    Completions,
    Responses,
    Embeddings,
}

impl Operation {
    pub const ALL: [Operation; 4] = [
        Operation::ChatCompletions,
        Operation::Completions,
        Operation::Responses,
        Operation::Embeddings,
    ];

    /// The path segments after the deployment (dated shape) or after `/openai/v1/`, exactly.
    pub fn path(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "chat/completions",
            Operation::Completions => "completions",
            Operation::Responses => "responses",
            Operation::Embeddings => "embeddings",
        }
    }

    /// The operation whose path is exactly `suffix`: no other spelling, case or encoding.
    fn from_path(suffix: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.path() == suffix)
    }

    /// The operation named `name` in the config and the logs (`chat.completions`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == name)
    }

    /// Operations whose bodies carry output limits and are parsed and capped.
    pub fn is_generation(self) -> bool {
        !matches!(self, Operation::Embeddings)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "chat.completions",
            Operation::Completions => "completions",
            Operation::Responses => "responses",
            Operation::Embeddings => "embeddings",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of operations: what a model allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operations(u8);

impl Operations {
    pub const ALL: Operations = Operations(0b1111);
    pub const NONE: Operations = Operations(0);

    pub fn with(self, op: Operation) -> Operations {
        Operations(self.0 | op.bit())
    }

    pub fn contains(self, op: Operation) -> bool {
        self.0 & op.bit() != 0
    }
}

/// A recognised request: shape, alias and an operation on the allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub shape: Shape,
    /// From the path for `Dated`; filled from the body for `V1`.
    pub alias: Option<String>,
    pub operation: Operation,
}

impl Route {
    /// The upstream path for a deployment: the dated shape names it in the path, the v1 shape
    /// keeps the path (the body's `model` is rewritten instead).
    pub fn upstream_path(&self, deployment: &str, query: Option<&str>) -> String {
        let prefix = match self.shape {
            Shape::Dated => "/openai/deployments/",
            Shape::V1 => "/openai/v1/",
        };
        let op = self.operation.path();
        let query_len = query.map_or(0, |q| q.len() + 1);
        let mut path =
            String::with_capacity(prefix.len() + deployment.len() + 1 + op.len() + query_len);
        path.push_str(prefix);
        if self.shape == Shape::Dated {
            path.push_str(deployment);
            path.push('/');
        }
        path.push_str(op);
        if let Some(q) = query {
            path.push('?');
            path.push_str(q);
        }
        path
    }
}

/// Whether `s` can be a model alias: letters, digits, `-`, `_` and `.`, not starting with a
/// dot (so never `.` or `..`), at most 64 bytes. What Azure allows in a deployment name,
/// and nothing a path could reinterpret.
pub fn is_alias(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Classifies a request by method and path (without the query). `None`: not an operation
/// Spillway proxies. The path must spell one exactly: `POST`, the alias a plain name, the
/// operation's own segments; dot or empty segments, percent-encoding, backslashes, `;`
/// parameters and other cases never match, so nothing is decoded or normalised here.
pub fn classify(method: &http::Method, path: &str) -> Option<Route> {
    if method != http::Method::POST {
        return None;
    }
    if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        let (alias, suffix) = rest.split_once('/')?;
        if !is_alias(alias) {
            return None;
        }
        return Some(Route {
            shape: Shape::Dated,
            alias: Some(alias.to_string()),
            operation: Operation::from_path(suffix)?,
        });
    }
    let suffix = path.strip_prefix("/openai/v1/")?;
    Some(Route {
        shape: Shape::V1,
        alias: None,
        operation: Operation::from_path(suffix)?,
    })
}

/// The credential a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// None, or none that could be a key.
    Missing,
    /// One key, in `api-key` or `Authorization: Bearer` (or repeated, always the same).
    Key(&'a str),
    /// Two credentials that differ: refused, because which one a server would use is
    /// exactly what an attacker who adds a header hopes to choose.
    Conflicting,
}

/// The credential in `api-key` headers and `Authorization` headers, every one of them.
pub fn presented_key(headers: &http::HeaderMap) -> Presented<'_> {
    let api_keys = headers
        .get_all("api-key")
        .iter()
        .map(|v| std::str::from_utf8(v.as_bytes()).ok().map(str::trim));
    let bearers = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .map(|v| bearer(v.as_bytes()));
    let mut found = None;
    for key in api_keys.chain(bearers) {
        match found {
            None => found = Some(key),
            Some(seen) if seen == key => {}
            Some(_) => return Presented::Conflicting,
        }
    }
    match found.flatten() {
        Some(key) if !key.is_empty() => Presented::Key(key),
        _ => Presented::Missing,
    }
}

/// The token of `Bearer TOKEN`; `None` for any other scheme.
fn bearer(value: &[u8]) -> Option<&str> {
    let auth = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_both_shapes() {
        let post = &http::Method::POST;
        let r = classify(post, "/openai/deployments/gpt-4o-mini/chat/completions").unwrap();
        assert_eq!(r.shape, Shape::Dated);
        assert_eq!(r.alias.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(r.operation, Operation::ChatCompletions);
        assert_eq!(
            r.upstream_path("real", Some("api-version=2024-10-21")),
            "/openai/deployments/real/chat/completions?api-version=2024-10-21"
        );
        let r = classify(post, "/openai/v1/chat/completions").unwrap();
        assert_eq!(r.shape, Shape::V1);
        assert_eq!(r.alias, None);
        assert_eq!(r.upstream_path("real", None), "/openai/v1/chat/completions");
        assert_eq!(
            classify(post, "/openai/deployments/e/embeddings")
                .unwrap()
                .operation,
            Operation::Embeddings
        );
        for bad in [
            "/",
            "/openai",
            "/openai/deployments/",
            "/openai/deployments/x",
            "/openai/v1/",
            "/v1/chat/completions",
        ] {
            assert!(classify(post, bad).is_none(), "{bad}");
        }
    }

    /// Every spelling the hardening review got past the old prefix match, and more: none is
    /// an operation on the list.
    #[test]
    fn only_exact_allowlisted_operations_classify() {
        let post = &http::Method::POST;
        for bad in [
            "/openai/v1/fine_tuning/jobs",
            "/openai/v1/files",
            "/openai/v1/files/file-abc",
            "/openai/v1/batches",
            "/openai/deployments/mini/../../files",
            "/openai/deployments/mini/chat/completions/",
            "/openai/deployments/mini/./chat/completions",
            "/openai/deployments/mini/x/../chat/completions",
            "/openai/deployments/mini/chat//completions",
            "/openai/deployments/mini/chat%2Fcompletions",
            "/openai/deployments/mini/chat%2fcompletions",
            "/openai/deployments/mini/chat\\completions",
            "/openai/deployments/mini/chat%5Ccompletions",
            "/openai/deployments/mini/Chat/Completions",
            "/openai/deployments/mini/CHAT/COMPLETIONS",
            "/openai/deployments/mini/chat/completions;x",
            "/openai/deployments/mini;x/chat/completions",
            "/openai/deployments/mini/extensions/chat/completions",
            "/openai/deployments/mini/images/generations",
            "/openai/deployments/mini/audio/transcriptions",
            "/openai/deployments/./chat/completions",
            "/openai/deployments/../chat/completions",
            "/openai/deployments/mi%6Ei/chat/completions",
            "/openai/deployments//chat/completions",
            "/openai/v1/./chat/completions",
            "/openai/v1//chat/completions",
            "/openai/v1/chat/completions/",
            "/openai/v1/responses/resp_1",
            "/openai/v1/Embeddings",
            "/OPENAI/v1/chat/completions",
            "/openai//v1/chat/completions",
        ] {
            assert!(classify(post, bad).is_none(), "{bad}");
        }
        for method in [
            http::Method::GET,
            http::Method::PUT,
            http::Method::DELETE,
            http::Method::PATCH,
            http::Method::OPTIONS,
        ] {
            assert!(classify(&method, "/openai/v1/chat/completions").is_none());
        }
        for op in Operation::ALL {
            let dated = format!("/openai/deployments/m-1_x.y/{}", op.path());
            assert_eq!(classify(post, &dated).unwrap().operation, op);
            let v1 = format!("/openai/v1/{}", op.path());
            assert_eq!(classify(post, &v1).unwrap().operation, op);
            assert_eq!(Operation::from_name(op.as_str()), Some(op));
        }
        assert!(!is_alias(&"a".repeat(65)));
    }

    #[test]
    fn operation_sets() {
        let set = Operations::NONE.with(Operation::Embeddings);
        assert!(set.contains(Operation::Embeddings));
        assert!(!set.contains(Operation::ChatCompletions));
        assert!(Operation::ALL
            .into_iter()
            .all(|op| Operations::ALL.contains(op)));
    }

    /// What `presented_key` makes of these headers, as its `Debug` text.
    fn key_of(headers: &[(&'static str, &'static str)]) -> String {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, http::HeaderValue::from_static(value));
        }
        format!("{:?}", presented_key(&map))
    }

    #[test]
    fn reads_either_key_header_and_refuses_two_that_differ() {
        assert_eq!(key_of(&[("api-key", "k1")]), r#"Key("k1")"#);
        assert_eq!(key_of(&[("authorization", "Bearer k2")]), r#"Key("k2")"#);
        assert_eq!(key_of(&[("authorization", "bearer  k3 ")]), r#"Key("k3")"#);
        assert_eq!(
            key_of(&[("api-key", "k1"), ("api-key", "k1")]),
            r#"Key("k1")"#
        );
        assert_eq!(
            key_of(&[("api-key", "k1"), ("authorization", "Bearer k1")]),
            r#"Key("k1")"#
        );
        assert_eq!(
            key_of(&[("api-key", "k1"), ("api-key", "k2")]),
            "Conflicting"
        );
        assert_eq!(
            key_of(&[("api-key", "k1"), ("authorization", "Bearer k2")]),
            "Conflicting"
        );
        assert_eq!(
            key_of(&[("api-key", "k1"), ("authorization", "Basic abc")]),
            "Conflicting"
        );
        assert_eq!(key_of(&[("authorization", "Basic abc")]), "Missing");
        assert_eq!(key_of(&[("api-key", "")]), "Missing");
        assert_eq!(key_of(&[]), "Missing");
    }
}
