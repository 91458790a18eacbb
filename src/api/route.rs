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

/// The operation, for deciding whether the body is governed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    ChatCompletions,
    Completions,
    Responses,
    Embeddings,
    Other,
}

impl Operation {
    fn from_suffix(suffix: &str) -> Self {
        match suffix {
            "chat/completions" => Operation::ChatCompletions,
            "completions" => Operation::Completions,
            "responses" => Operation::Responses,
            "embeddings" => Operation::Embeddings,
            _ => Operation::Other,
        }
    }

    /// Operations whose bodies carry output limits and are parsed and capped.
    pub fn is_generation(self) -> bool {
        matches!(
            self,
            Operation::ChatCompletions | Operation::Completions | Operation::Responses
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "chat.completions",
            Operation::Completions => "completions",
            Operation::Responses => "responses",
            Operation::Embeddings => "embeddings",
            Operation::Other => "other",
        }
    }
}

/// A recognised request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub shape: Shape,
    /// From the path for `Dated`; filled from the body for `V1`.
    pub alias: Option<String>,
    pub operation: Operation,
    /// The path after the alias (`Dated`) or after `/openai/v1/` (`V1`), e.g. `chat/completions`.
    pub suffix: String,
}

impl Route {
    /// The upstream path for a deployment: the dated shape names it in the path, the v1 shape
    /// keeps the path (the body's `model` is rewritten instead).
    pub fn upstream_path(&self, deployment: &str, query: Option<&str>) -> String {
        let prefix = match self.shape {
            Shape::Dated => "/openai/deployments/",
            Shape::V1 => "/openai/v1/",
        };
        let query_len = query.map_or(0, |q| q.len() + 1);
        let mut path = String::with_capacity(
            prefix.len() + deployment.len() + 1 + self.suffix.len() + query_len,
        );
        path.push_str(prefix);
        if self.shape == Shape::Dated {
            path.push_str(deployment);
            path.push('/');
        }
        path.push_str(&self.suffix);
        if let Some(q) = query {
            path.push('?');
            path.push_str(q);
        }
        path
    }
}

/// Classifies a request path (without the query). `None`: not an Azure OpenAI path.
pub fn classify(path: &str) -> Option<Route> {
    if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        let (alias, suffix) = rest.split_once('/')?;
        if alias.is_empty() || suffix.is_empty() {
            return None;
        }
        return Some(Route {
            shape: Shape::Dated,
            alias: Some(alias.to_string()),
            operation: Operation::from_suffix(suffix),
            suffix: suffix.to_string(),
        });
    }
    let suffix = path.strip_prefix("/openai/v1/")?;
    if suffix.is_empty() {
        return None;
    }
    Some(Route {
        shape: Shape::V1,
        alias: None,
        operation: Operation::from_suffix(suffix),
        suffix: suffix.to_string(),
    })
}

/// The key a client presented: `api-key`, else `Authorization: Bearer`.
pub fn presented_key<'a>(
    api_key: Option<&'a [u8]>,
    authorization: Option<&'a [u8]>,
) -> Option<&'a str> {
    if let Some(k) = api_key.and_then(|v| std::str::from_utf8(v).ok()) {
        return Some(k.trim());
    }
    let auth = std::str::from_utf8(authorization?).ok()?.trim();
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_both_shapes() {
        let r = classify("/openai/deployments/gpt-4o-mini/chat/completions").unwrap();
        assert_eq!(r.shape, Shape::Dated);
        assert_eq!(r.alias.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(r.operation, Operation::ChatCompletions);
        assert_eq!(
            r.upstream_path("real", Some("api-version=2024-10-21")),
            "/openai/deployments/real/chat/completions?api-version=2024-10-21"
        );
        let r = classify("/openai/v1/chat/completions").unwrap();
        assert_eq!(r.shape, Shape::V1);
        assert_eq!(r.alias, None);
        assert_eq!(r.upstream_path("real", None), "/openai/v1/chat/completions");
        assert_eq!(
            classify("/openai/deployments/e/embeddings")
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
            assert!(classify(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn reads_either_key_header() {
        assert_eq!(presented_key(Some(b"k1"), Some(b"Bearer k2")), Some("k1"));
        assert_eq!(presented_key(None, Some(b"Bearer k2")), Some("k2"));
        assert_eq!(presented_key(None, Some(b"bearer  k3 ")), Some("k3"));
        assert_eq!(presented_key(None, Some(b"Basic abc")), None);
        assert_eq!(presented_key(None, None), None);
    }
}
