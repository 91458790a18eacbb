//! Output-token caps: the limit a request may ask for, decided from its body, its streaming
//! flag and the policy, and the edits that make every limit field say the same value.

use super::body::{Edits, JsonBody};
use crate::api::Operation;

/// What to do when a request asks for more output than the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExceed {
    Clamp,
    Reject,
}

/// The caps in force for one request (global, model and tenant settings already merged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapPolicy {
    pub sync_max_tokens: u32,
    pub stream_max_tokens: u32,
    pub default_max_tokens: u32,
    pub on_exceed: OnExceed,
}

/// Why the applied limit has its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapReason {
    /// The client's own limit was within the cap.
    Client,
    /// The client sent no limit; the default was injected.
    Default,
    /// Lowered to the synchronous cap.
    SyncCap,
    /// Lowered to the adaptive synchronous cap (measured rate × window).
    AdaptiveCap,
    /// Lowered to the streaming cap.
    StreamCap,
}

impl CapReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CapReason::Client => "client",
            CapReason::Default => "default",
            CapReason::SyncCap => "sync-cap",
            CapReason::AdaptiveCap => "adaptive-cap",
            CapReason::StreamCap => "stream-cap",
        }
    }
}

/// The outcome for a request that may go upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capped {
    /// The smallest limit the client sent, if any.
    pub requested: Option<u64>,
    /// The per-choice limit sent upstream.
    pub applied: u32,
    /// Output the request may generate in all: `applied × n`.
    pub total_output: u64,
    pub reason: CapReason,
}

/// A request refused by `on_exceed: reject` (or one that cannot fit any cap).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CapRejected(pub String);

/// Decides the limit. `adaptive_sync` is the measured synchronous cap, when there is one.
pub fn decide(
    body: &JsonBody,
    policy: &CapPolicy,
    adaptive_sync: Option<u32>,
) -> Result<Capped, CapRejected> {
    let requested = [
        &body.max_tokens,
        &body.max_completion_tokens,
        &body.max_output_tokens,
    ]
    .into_iter()
    .flatten()
    .map(|(_, v)| *v)
    .filter(|v| *v != u64::MAX)
    .min();
    let (cap, cap_reason) = if body.stream {
        (policy.stream_max_tokens, CapReason::StreamCap)
    } else {
        match adaptive_sync {
            Some(a) if a < policy.sync_max_tokens => (a, CapReason::AdaptiveCap),
            _ => (policy.sync_max_tokens, CapReason::SyncCap),
        }
    };
    let n = body.generated();
    // `n` (or `best_of`) completions each as long as the limit: the cap bounds their sum.
    let per_choice_cap = u64::from(cap) / n;
    if per_choice_cap == 0 {
        return Err(CapRejected(format!(
            "{n} choices (n, best_of) cannot fit the output cap of {cap} tokens; lower them"
        )));
    }
    let (applied, reason) = match requested {
        Some(r) if r <= per_choice_cap => (r, CapReason::Client),
        Some(r) => {
            if policy.on_exceed == OnExceed::Reject {
                return Err(CapRejected(reject_message(r, n, cap, body.stream, policy)));
            }
            (per_choice_cap, cap_reason)
        }
        None => {
            let d = u64::from(policy.default_max_tokens);
            if d <= per_choice_cap {
                (d, CapReason::Default)
            } else {
                (per_choice_cap, cap_reason)
            }
        }
    };
    // Fits in u32: it is at most `cap`.
    let applied = applied as u32;
    Ok(Capped {
        requested,
        applied,
        total_output: u64::from(applied) * n,
        reason,
    })
}

fn reject_message(requested: u64, n: u64, cap: u32, stream: bool, policy: &CapPolicy) -> String {
    let asked = if n > 1 {
        format!("{requested} output tokens for each of {n} choices (n, best_of)")
    } else {
        format!("{requested} output tokens")
    };
    if stream {
        format!("The request asks for {asked}, above this gateway's streaming cap of {cap} tokens.")
    } else {
        format!(
            "The request asks for {asked}, above this gateway's synchronous cap of {cap} tokens. \
             Lower max_tokens, or send the request with \"stream\": true (streaming cap: {} tokens).",
            policy.stream_max_tokens
        )
    }
}

/// Edits that make the body carry `applied` in every limit field it has, or in the one field
/// the operation uses when it has none.
pub fn edits(body: &JsonBody, operation: Operation, capped: &Capped, edits: &mut Edits) {
    let fields = [
        &body.max_tokens,
        &body.max_completion_tokens,
        &body.max_output_tokens,
    ];
    let mut present = false;
    for (span, value) in fields.into_iter().flatten() {
        present = true;
        if *value != u64::from(capped.applied) {
            edits.replace(span.clone(), capped.applied.to_string());
        }
    }
    if !present {
        let name = match operation {
            Operation::Responses => "max_output_tokens",
            // `max_tokens` is understood by every api-version and by gpt-4o-family models.
            _ => "max_tokens",
        };
        edits.append(name, &capped.applied.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::Value;

    const POLICY: CapPolicy = CapPolicy {
        sync_max_tokens: 2000,
        stream_max_tokens: 8000,
        default_max_tokens: 1000,
        on_exceed: OnExceed::Clamp,
    };

    fn body(s: &str) -> JsonBody {
        JsonBody::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    fn rewrite(s: &str, op: Operation, adaptive: Option<u32>) -> (Capped, Value) {
        let b = body(s);
        let c = decide(&b, &POLICY, adaptive).unwrap();
        let mut e = Edits::default();
        edits(&b, op, &c, &mut e);
        (c, serde_json::from_slice(&e.apply(&b)).unwrap())
    }

    #[test]
    fn sync_is_clamped_and_stream_gets_its_own_cap() {
        let (c, v) = rewrite(r#"{"max_tokens":8000}"#, Operation::ChatCompletions, None);
        assert_eq!(
            (c.applied, c.reason, c.requested),
            (2000, CapReason::SyncCap, Some(8000))
        );
        assert_eq!(v["max_tokens"], 2000);
        let (c, v) = rewrite(
            r#"{"max_tokens":9000,"stream":true}"#,
            Operation::ChatCompletions,
            None,
        );
        assert_eq!((c.applied, c.reason), (8000, CapReason::StreamCap));
        assert_eq!(v["max_tokens"], 8000);
        let (c, _) = rewrite(r#"{"max_tokens":500}"#, Operation::ChatCompletions, None);
        assert_eq!((c.applied, c.reason), (500, CapReason::Client));
    }

    #[test]
    fn missing_or_null_limit_gets_the_default_in_the_operations_field() {
        let (c, v) = rewrite(r#"{"messages":[]}"#, Operation::ChatCompletions, None);
        assert_eq!(
            (c.applied, c.reason, c.requested),
            (1000, CapReason::Default, None)
        );
        assert_eq!(v["max_tokens"], 1000);
        let (_, v) = rewrite(r#"{"input":"x"}"#, Operation::Responses, None);
        assert_eq!(v["max_output_tokens"], 1000);
        assert!(v.get("max_tokens").is_none());
        let (_, v) = rewrite(
            r#"{"max_completion_tokens":null}"#,
            Operation::ChatCompletions,
            None,
        );
        assert_eq!(v["max_completion_tokens"], 1000);
        assert!(
            v.get("max_tokens").is_none(),
            "no second field is added: {v}"
        );
    }

    #[test]
    fn two_fields_cannot_bypass_the_cap() {
        let (c, v) = rewrite(
            r#"{"max_tokens":100,"max_completion_tokens":8000}"#,
            Operation::ChatCompletions,
            None,
        );
        assert_eq!(c.applied, 100);
        assert_eq!(
            (
                v["max_tokens"].as_u64(),
                v["max_completion_tokens"].as_u64()
            ),
            (Some(100), Some(100))
        );
        let (c, v) = rewrite(
            r#"{"max_tokens":9000,"max_completion_tokens":8000}"#,
            Operation::ChatCompletions,
            None,
        );
        assert_eq!(c.applied, 2000);
        assert_eq!(
            (
                v["max_tokens"].as_u64(),
                v["max_completion_tokens"].as_u64()
            ),
            (Some(2000), Some(2000))
        );
    }

    #[test]
    fn n_multiplies_the_output() {
        let (c, v) = rewrite(
            r#"{"max_tokens":1500,"n":4}"#,
            Operation::ChatCompletions,
            None,
        );
        assert_eq!((c.applied, c.total_output), (500, 2000));
        assert_eq!(v["max_tokens"], 500);
        let b = body(r#"{"n":3000}"#);
        assert!(decide(&b, &POLICY, None).is_err());
    }

    #[test]
    fn best_of_counts_like_n() {
        let (c, v) = rewrite(
            r#"{"prompt":"x","max_tokens":1500,"best_of":20}"#,
            Operation::Completions,
            None,
        );
        assert_eq!((c.applied, c.total_output), (100, 2000));
        assert_eq!(v["max_tokens"], 100);
        let (c, _) = rewrite(
            r#"{"prompt":"x","max_tokens":1500,"n":2,"best_of":4}"#,
            Operation::Completions,
            None,
        );
        assert_eq!(c.total_output, 2000);
    }

    #[test]
    fn adaptive_cap_only_lowers() {
        let (c, _) = rewrite(
            r#"{"max_tokens":8000}"#,
            Operation::ChatCompletions,
            Some(1200),
        );
        assert_eq!((c.applied, c.reason), (1200, CapReason::AdaptiveCap));
        let (c, _) = rewrite(
            r#"{"max_tokens":8000}"#,
            Operation::ChatCompletions,
            Some(5000),
        );
        assert_eq!((c.applied, c.reason), (2000, CapReason::SyncCap));
        let (c, _) = rewrite(
            r#"{"max_tokens":8000,"stream":true}"#,
            Operation::ChatCompletions,
            Some(10),
        );
        assert_eq!(c.applied, 8000);
    }

    #[test]
    fn reject_mode_names_the_cap_and_suggests_streaming() {
        let policy = CapPolicy {
            on_exceed: OnExceed::Reject,
            ..POLICY
        };
        let err = decide(&body(r#"{"max_tokens":8000}"#), &policy, None).unwrap_err();
        assert!(err.0.contains("2000") && err.0.contains("stream"), "{err}");
        assert!(decide(&body(r#"{"max_tokens":1999}"#), &policy, None).is_ok());
        assert_eq!(decide(&body(r#"{}"#), &policy, None).unwrap().applied, 1000);
    }
}
