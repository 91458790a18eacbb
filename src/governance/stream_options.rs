//! Makes a stream report its usage: the gateway needs the final usage chunk of every stream
//! to settle budgets and count tokens, so it asks for it when the client did not.

use super::body::{Edits, JsonBody};

/// Adds or amends `stream_options` so that `include_usage` is true. Returns true when the
/// client had not asked for usage itself (the chunk must then be removed from its stream).
pub fn ask_for_usage(body: &JsonBody, edits: &mut Edits) -> bool {
    let Some(span) = body.stream_options.clone() else {
        edits.append("stream_options", r#"{"include_usage":true}"#);
        return true;
    };
    let raw = &body.raw[span.clone()];
    let Ok(mut opts) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(raw)
    else {
        // `null` or something odd: replace it with what we need; upstream validates the rest.
        edits.replace(span, r#"{"include_usage":true}"#.into());
        return true;
    };
    if opts.get("include_usage") == Some(&serde_json::Value::Bool(true)) {
        return false;
    }
    opts.insert("include_usage".into(), true.into());
    edits.replace(span, serde_json::Value::Object(opts).to_string());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::{json, Value};

    fn run(s: &str) -> (bool, Value) {
        let b = JsonBody::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap();
        let mut e = Edits::default();
        let strip = ask_for_usage(&b, &mut e);
        (strip, serde_json::from_slice(&e.apply(&b)).unwrap())
    }

    #[test]
    fn adds_merges_or_leaves_alone() {
        assert_eq!(
            run(r#"{"stream":true}"#),
            (
                true,
                json!({"stream":true,"stream_options":{"include_usage":true}})
            )
        );
        assert_eq!(
            run(r#"{"stream":true,"stream_options":{"include_usage":false,"x":1}}"#),
            (
                true,
                json!({"stream":true,"stream_options":{"include_usage":true,"x":1}})
            )
        );
        assert_eq!(
            run(r#"{"stream":true,"stream_options":{"include_usage":true}}"#),
            (
                false,
                json!({"stream":true,"stream_options":{"include_usage":true}})
            )
        );
        assert_eq!(
            run(r#"{"stream_options":null}"#),
            (true, json!({"stream_options":{"include_usage":true}}))
        );
    }
}
