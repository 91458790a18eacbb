//! Reading a token endpoint's answer: the token and its lifetime, or an error fit for a log line.

use super::http::Response;
use super::secret::Secret;
use super::source::{Token, TokenError};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How much of `error_description` is kept: Entra's run to a trace id, timestamp and a URL.
const DESCRIPTION_CHARS: usize = 200;

/// A 2xx with a usable token becomes a [`Token`]; anything else a [`TokenError`]. `secret`
/// (the credential sent) is scrubbed from the error text in case an endpoint echoes it.
pub(super) fn token(
    host: &str,
    resp: &Response,
    secret: Option<&str>,
) -> Result<Token, TokenError> {
    let json: Option<Value> = serde_json::from_slice(&resp.body).ok();
    if !(200..300).contains(&resp.status) {
        return Err(TokenError::Rejected {
            host: host.to_string(),
            status: resp.status,
            detail: detail(json.as_ref(), secret),
        });
    }
    let malformed = |what| TokenError::Malformed {
        host: host.to_string(),
        what,
    };
    let json = json.ok_or(malformed("the body is not JSON"))?;
    let value = json
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or(malformed("no access_token"))?;
    if value.is_empty() || http::HeaderValue::from_str(value).is_err() {
        return Err(malformed("the access_token is not a valid header value"));
    }
    let token_type = json.get("token_type").and_then(Value::as_str);
    if token_type.is_some_and(|t| !t.eq_ignore_ascii_case("bearer")) {
        return Err(malformed("the token_type is not Bearer"));
    }
    let lifetime = lifetime(&json, unix_now()).ok_or(malformed("no positive expires_in"))?;
    Ok(Token {
        value: Secret::new(value),
        lifetime,
    })
}

/// `expires_in` (seconds from now), else `expires_on` (Unix seconds). IMDS and App Service
/// send both as strings, the v2 endpoint `expires_in` as a number; either is accepted.
fn lifetime(json: &Value, now: i64) -> Option<Duration> {
    let seconds = match number(json.get("expires_in")) {
        Some(s) => s,
        None => number(json.get("expires_on"))?.checked_sub(now)?,
    };
    u64::try_from(seconds)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

fn number(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `error (first line of error_description)`: Entra's `AADSTS…` code leads the description, and
/// is what an operator searches for. App Service's own errors say `message` instead.
fn detail(json: Option<&Value>, secret: Option<&str>) -> String {
    // Before truncating, so that no part of a secret survives at the cut.
    let scrub = |text: &str| match secret.filter(|s| !s.is_empty()) {
        Some(s) => text.replace(s, "***"),
        None => text.to_string(),
    };
    let text = |name: &str| {
        json.and_then(|j| j.get(name))
            .and_then(Value::as_str)
            .map(scrub)
    };
    let error = text("error");
    let description = text("error_description").or_else(|| text("message"));
    let description = description.map(|d| {
        let line = d.lines().next().unwrap_or("").trim();
        let mut short: String = line.chars().take(DESCRIPTION_CHARS).collect();
        if short.len() < line.len() {
            short.push('…');
        }
        short
    });
    match (error, description) {
        (Some(e), Some(d)) => format!("{e} ({d})"),
        (Some(e), None) => e,
        (None, Some(d)) => d,
        (None, None) => "no OAuth error in the body".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;

    fn resp(status: u16, body: Value) -> Response {
        Response {
            status,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn lifetimes_as_strings_or_numbers_expires_in_first() {
        let at = |v: Value| lifetime(&v, 1_000);
        assert_eq!(
            at(json!({"expires_in": "3599"})),
            Some(Duration::from_secs(3599))
        );
        assert_eq!(at(json!({"expires_in": 60})), Some(Duration::from_secs(60)));
        let both = json!({"expires_in": 10, "expires_on": "5000"});
        assert_eq!(at(both), Some(Duration::from_secs(10)));
        assert_eq!(
            at(json!({"expires_on": 1_300})),
            Some(Duration::from_secs(300))
        );
        assert_eq!(at(json!({"expires_on": "900"})), None);
        assert_eq!(at(json!({"expires_in": 0})), None);
        assert_eq!(at(json!({"expires_in": "-5"})), None);
        assert_eq!(at(json!({"expires_in": "soon"})), None);
        assert_eq!(at(json!({})), None);
    }

    #[test]
    fn an_answer_without_a_usable_token_is_malformed() {
        let bad = [
            json!({"expires_in": 60}),
            json!({"access_token": "abc"}),
            json!({"access_token": "abc", "expires_in": 0}),
            json!({"access_token": "a\nb", "expires_in": 60}),
            json!({"access_token": "", "expires_in": 60}),
            json!({"access_token": "abc", "expires_in": 60, "token_type": "pop"}),
        ];
        for body in bad {
            let err = token("h", &resp(200, body.clone()), None).unwrap_err();
            assert!(matches!(err, TokenError::Malformed { .. }), "{body}: {err}");
        }
        let ok = json!({"access_token": "abc", "expires_in": "60", "token_type": "Bearer"});
        let t = token("h", &resp(200, ok), None).unwrap();
        assert_eq!(
            (t.value.expose(), t.lifetime),
            ("abc", Duration::from_secs(60))
        );
    }

    #[test]
    fn errors_keep_the_code_and_one_short_line_and_no_secret() {
        let long = format!(
            "AADSTS7000215: Invalid secret s3cr3t.\r\nTrace ID: x{}",
            "y".repeat(300)
        );
        let body = json!({"error": "invalid_client", "error_description": long});
        let err = token("login.example", &resp(401, body), Some("s3cr3t")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token endpoint login.example answered 401: invalid_client (AADSTS7000215: Invalid secret ***.)"
        );
        let long_line = json!({"error": "e", "error_description": "z".repeat(500)});
        let err = token("h", &resp(400, long_line), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(&format!("{}…)", "z".repeat(DESCRIPTION_CHARS))),
            "{err}"
        );
        let app_service = json!({"statusCode": 400, "message": "No MSI found."});
        let err = token("h", &resp(400, app_service), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token endpoint h answered 400: No MSI found."
        );
        let html = Response {
            status: 502,
            body: Bytes::from_static(b"<html>bad gateway</html>"),
        };
        let err = token("h", &html, None).unwrap_err().to_string();
        assert_eq!(
            err,
            "token endpoint h answered 502: no OAuth error in the body"
        );
    }
}
