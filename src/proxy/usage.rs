//! Reads `usage` from a non-streaming JSON response on the side, while the body is forwarded
//! untouched, so budgets and rates are settled with what the upstream really generated.
//! (Streams are read by `crate::stream::SseTap`.)

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
        #[derive(Deserialize)]
        struct Top {
            usage: Option<Usage>,
        }
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
        let top: Top = serde_json::from_slice(&body).ok()?;
        top.usage
    }
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
                total_tokens: 12
            })
        );
        let mut u = JsonUsage::default();
        u.feed(&Bytes::from_static(b"{\"error\":{}}"));
        assert_eq!(u.finish(), None);
        let mut u = JsonUsage::default();
        u.feed(&Bytes::from_static(b"{not json"));
        assert_eq!(u.finish(), None);
    }
}
