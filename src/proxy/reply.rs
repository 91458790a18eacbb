//! Answers the gateway gives on its own, shaped like Azure OpenAI's errors so that SDKs parse
//! them: `{"error": {"code": ..., "message": ...}}` with the matching status.

use crate::api::Operation;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// An error answer: status, Azure-style code and a message for humans. Messages never carry
/// secrets: they name fields and limits, not keys.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Reply {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn unauthorized() -> Self {
        Reply::new(
            401,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        )
    }

    /// A missing, unknown or conflicting key: what counts against the client's address.
    pub fn is_auth_failure(&self) -> bool {
        self.status == 401
    }

    pub fn not_through_front_door() -> Self {
        Reply::new(
            403,
            "403",
            "This gateway accepts requests only through its Azure Front Door.",
        )
    }

    pub fn too_many_auth_failures(wait: std::time::Duration) -> Self {
        let ms = wait.as_millis().max(1);
        let secs = ms.div_ceil(1000);
        Reply::new(
            429,
            "429",
            format!("Too many requests with a missing or invalid key from this address. Please retry after {secs} seconds."),
        )
        .with_header("retry-after-ms", ms.to_string())
        .with_header("retry-after", secs.to_string())
    }

    pub fn conflicting_credentials() -> Self {
        Reply::new(
            401,
            "401",
            "The request carries more than one credential (api-key or Authorization headers) and they differ. Send one key.",
        )
    }

    pub fn unknown_model(alias: &str) -> Self {
        Reply::new(
            404,
            "DeploymentNotFound",
            format!("The API deployment `{alias}` does not exist on this gateway. Ask your administrator for the model aliases you may use."),
        )
    }

    pub fn operation_not_allowed(alias: &str, op: Operation) -> Self {
        Reply::new(
            404,
            "OperationNotSupported",
            format!(
                "The operation `{}` is not enabled for the deployment `{alias}` on this gateway.",
                op.as_str()
            ),
        )
    }

    pub fn not_found() -> Self {
        Reply::new(404, "404", "Resource not found")
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Reply::new(400, "BadRequest", message)
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        let v = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        Bytes::from(v.to_string())
    }

    /// Writes the whole answer to the client.
    pub async fn send(&self, session: &mut Session, request_id: &str) -> Result<()> {
        let extra = self.headers.iter().map(|(n, v)| (*n, v.as_str()));
        let headers = std::iter::once(("x-request-id", request_id)).chain(extra);
        write_json(session, self.status, self.body(), headers).await
    }
}

/// Writes a complete JSON answer the gateway generated itself.
async fn write_json<'a>(
    session: &mut Session,
    status: u16,
    body: Bytes,
    headers: impl Iterator<Item = (&'static str, &'a str)>,
) -> Result<()> {
    let mut h = ResponseHeader::build(status, Some(4))?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", body.len().to_string())?;
    for (name, value) in headers {
        h.insert_header(name, value)?;
    }
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await
}

/// Answers the client-port health probe: 200 when ready, 503 when not.
pub async fn health(session: &mut Session, ready: bool) -> Result<()> {
    // Anyone can call this path: it says ready or not, never why (model names and their
    // health are for the admin listener).
    let (status, body) = if ready {
        (200, &br#"{"status":"ready"}"#[..])
    } else {
        (503, &br#"{"status":"not ready"}"#[..])
    };
    let body = Bytes::from_static(body);
    write_json(
        session,
        status,
        body,
        std::iter::once(("cache-control", "no-store")),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_azure_shaped() {
        let v: serde_json::Value =
            serde_json::from_slice(&Reply::unknown_model("x").body()).unwrap();
        assert_eq!(v["error"]["code"], "DeploymentNotFound");
        assert!(v["error"]["message"].as_str().unwrap().contains("`x`"));
    }
}
