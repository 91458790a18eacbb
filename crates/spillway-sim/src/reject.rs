//! Every error answer the simulator gives, each with its status and Azure-shaped JSON body.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

use super::limits::{QuotaKind, Throttled};

/// An error answer: `{"error": {"code": ..., "message": ...}}` plus optional retry hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reject {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// `retry-after` is sent whenever this is set; `retry-after-ms` only when `with_ms`.
    pub retry_after: Option<Duration>,
    pub with_ms: bool,
}

impl Reject {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            retry_after: None,
            with_ms: false,
        }
    }

    /// 404 for any path or method the simulated resource does not serve.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "404", "Resource not found")
    }

    /// 404 for a well-formed path naming another deployment.
    pub fn deployment_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "DeploymentNotFound",
            "The API deployment for this resource does not exist. If you created the deployment \
             within the last 5 minutes, please wait a moment and try again.",
        )
    }

    /// 401 for a missing or wrong key.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to \
             provide a valid key for an active subscription and use a correct regional API \
             endpoint for your resource.",
        )
    }

    /// 401 of an `auth: entra` deployment for a missing, invalid, foreign or expired Bearer token.
    pub fn token_unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "401",
            "Unauthorized. Access token is missing, invalid, audience is incorrect \
             (https://cognitiveservices.azure.com), or have expired.",
        )
    }

    /// 403 of an `auth: entra` deployment (Azure's `disableLocalAuth`) for any `api-key` header.
    pub fn key_auth_disabled() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "AuthenticationTypeDisabled",
            "Key based authentication is disabled for this resource.",
        )
    }

    /// 400 for a body that is not what the operation expects.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 408 for a non-streaming generation that outlived the synchronous timeout (body seen in the wild).
    pub fn timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "Timeout",
            "The operation was timeout.",
        )
    }

    /// 429 from the limiter, worded like Azure's.
    pub fn throttled(operation: &str, api_version: &str, t: Throttled) -> Self {
        let secs = retry_secs(t.retry_after);
        let what = match t.kind {
            QuotaKind::Tokens => "token rate limit of your current OpenAI S0 pricing tier",
            QuotaKind::Requests => "call rate limit of your current OpenAI S0 pricing tier",
            QuotaKind::Provisioned => {
                "the provisioned throughput (utilization above 100%) of this deployment"
            }
        };
        let mut r = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "429",
            format!(
                "Requests to the {operation} Operation under Azure OpenAI API version \
                 {api_version} have exceeded {what}. Please retry after {secs} seconds. Please go \
                 here: https://aka.ms/oai/quotaincrease if you would like to further increase the \
                 default rate limit."
            ),
        );
        r.retry_after = Some(t.retry_after);
        r.with_ms = t.with_ms;
        r
    }

    /// An answer forced by `Fault::Status`. A 429 always carries both retry headers (1 s unless told).
    pub fn injected(status: StatusCode, operation: &str, retry_after_ms: Option<u64>) -> Self {
        let retry = retry_after_ms.map(Duration::from_millis);
        let mut r = match status.as_u16() {
            429 => Self::throttled(
                operation,
                "2024-10-21",
                Throttled {
                    retry_after: retry.unwrap_or(Duration::from_secs(1)),
                    with_ms: true,
                    kind: QuotaKind::Tokens,
                },
            ),
            408 => Self::timeout(),
            401 => Self::unauthorized(),
            404 => Self::not_found(),
            500 => Self::new(
                status,
                "InternalServerError",
                "The server had an error while processing your request. Sorry about that!",
            ),
            503 => Self::new(
                status,
                "ServiceUnavailable",
                "The service is temporarily unable to process your request. Please try again later.",
            ),
            _ => Self::new(
                status,
                status.as_str(),
                status.canonical_reason().unwrap_or("Simulated failure"),
            ),
        };
        if status != StatusCode::TOO_MANY_REQUESTS && retry.is_some() {
            r.retry_after = retry;
            r.with_ms = true;
        }
        r
    }

    pub fn body(&self) -> Bytes {
        let v = json!({"error": {"code": self.code, "message": self.message}});
        Bytes::from(v.to_string())
    }

    /// The retry headers, `retry-after` in whole seconds rounded up (at least 1).
    pub fn retry_headers(&self) -> Vec<(&'static str, String)> {
        let Some(d) = self.retry_after else {
            return Vec::new();
        };
        let mut h = Vec::with_capacity(2);
        if self.with_ms {
            h.push(("retry-after-ms", d.as_millis().max(1).to_string()));
        }
        h.push(("retry-after", retry_secs(d).to_string()));
        h
    }
}

fn retry_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_body_and_headers() {
        let r = Reject::throttled(
            "ChatCompletions_Create",
            "2024-10-21",
            Throttled {
                retry_after: Duration::from_millis(1500),
                with_ms: true,
                kind: QuotaKind::Provisioned,
            },
        );
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            r.retry_headers(),
            vec![
                ("retry-after-ms", "1500".to_string()),
                ("retry-after", "2".to_string())
            ]
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
        assert_eq!(v["error"]["code"], "429");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21"));
        assert!(msg.contains("Please retry after 2 seconds."));
    }

    #[test]
    fn injected_429_defaults_to_one_second() {
        let r = Reject::injected(StatusCode::TOO_MANY_REQUESTS, "Embeddings_Create", None);
        assert_eq!(
            r.retry_headers(),
            vec![
                ("retry-after-ms", "1000".to_string()),
                ("retry-after", "1".to_string())
            ]
        );
        let r = Reject::injected(StatusCode::INTERNAL_SERVER_ERROR, "x", None);
        assert!(r.retry_headers().is_empty());
        assert_eq!(r.code, "InternalServerError");
    }

    #[test]
    fn timeout_body() {
        let v: serde_json::Value = serde_json::from_slice(&Reject::timeout().body()).unwrap();
        assert_eq!(
            v,
            json!({"error": {"code": "Timeout", "message": "The operation was timeout."}})
        );
    }
}
