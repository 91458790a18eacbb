//! Injected failures: what the next requests (or the listener) should suffer instead of normal service.

use std::sync::{Mutex, MutexGuard, PoisonError};

use http::StatusCode;

/// A failure to inject, set with `SimHandle::set_fault` and active until replaced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fault {
    /// Normal service.
    #[default]
    None,
    /// Answer `status` with an Azure-shaped JSON error to the next `remaining` requests
    /// (`None`: until cleared). A 429 carries `retry-after-ms` and `retry-after` (1 s unless
    /// `retry_after_ms` says otherwise); other statuses carry them only when `retry_after_ms` is set.
    Status {
        status: u16,
        remaining: Option<u32>,
        retry_after_ms: Option<u64>,
    },
    /// Stop accepting: the listener and every open connection are closed, so connects are refused.
    /// Replacing this fault re-binds the same port.
    Refuse,
    /// Streams are aborted after this many content chunks: no finish chunk, no `[DONE]`, no
    /// terminating HTTP chunk. Non-streaming requests are unaffected.
    CutStreamAfter(u32),
    /// Read the request, then never answer (until the simulator shuts down).
    Hang,
    /// Answer 429 to the next `remaining` requests (`None`: until cleared) with these retry
    /// headers verbatim, each absent when `None`: what a broken or hostile upstream may send
    /// (`1e300`, `99999999999999999999`, `-1`, `NaN`), which `Status` cannot express.
    ThrottleWith {
        retry_after: Option<String>,
        retry_after_ms: Option<String>,
        remaining: Option<u32>,
    },
    /// Serve normally, but report this `usage` in every completion (the JSON answer and the
    /// stream's usage chunk), whatever was generated: a broken or hostile count.
    ReportUsage {
        prompt_tokens: u64,
        completion_tokens: u64,
        total_tokens: u64,
    },
}

/// What one request gets, decided once when it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Serve {
        cut_after: Option<u32>,
        /// Reported instead of the real usage: prompt, completion, total.
        usage: Option<[u64; 3]>,
    },
    Status {
        status: StatusCode,
        retry_after_ms: Option<u64>,
    },
    /// A 429 with these `retry-after` and `retry-after-ms` values, verbatim.
    RawThrottle {
        retry_after: Option<String>,
        retry_after_ms: Option<String>,
    },
    Refuse,
    Hang,
}

const SERVE: Action = Action::Serve {
    cut_after: None,
    usage: None,
};

#[derive(Debug, Default)]
pub(crate) struct Faults {
    current: Mutex<Fault>,
}

impl Faults {
    /// A fault is a plain value that is never left half-written, so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Fault> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Installs `f` and returns the fault it replaced.
    pub fn set(&self, f: Fault) -> Fault {
        std::mem::replace(&mut *self.lock(), f)
    }

    pub fn is_refusing(&self) -> bool {
        matches!(*self.lock(), Fault::Refuse)
    }

    /// Decides the fate of an arriving request, using up one of a counted fault.
    pub fn next_action(&self) -> Action {
        let mut current = self.lock();
        let (action, remaining) = match &mut *current {
            Fault::None => return SERVE,
            Fault::CutStreamAfter(n) => {
                return Action::Serve {
                    cut_after: Some(*n),
                    usage: None,
                }
            }
            Fault::ReportUsage {
                prompt_tokens,
                completion_tokens,
                total_tokens,
            } => {
                return Action::Serve {
                    cut_after: None,
                    usage: Some([*prompt_tokens, *completion_tokens, *total_tokens]),
                }
            }
            Fault::Refuse => return Action::Refuse,
            Fault::Hang => return Action::Hang,
            Fault::Status {
                status,
                remaining,
                retry_after_ms,
            } => {
                let status = StatusCode::from_u16(*status).unwrap_or_else(|_| {
                    log::warn!("sim: fault status {status} is not an HTTP status, answering 500");
                    StatusCode::INTERNAL_SERVER_ERROR
                });
                let action = Action::Status {
                    status,
                    retry_after_ms: *retry_after_ms,
                };
                (action, remaining)
            }
            Fault::ThrottleWith {
                retry_after,
                retry_after_ms,
                remaining,
            } => {
                let action = Action::RawThrottle {
                    retry_after: retry_after.clone(),
                    retry_after_ms: retry_after_ms.clone(),
                };
                (action, remaining)
            }
        };
        match remaining {
            Some(0) => {
                *current = Fault::None;
                SERVE
            }
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    *current = Fault::None;
                }
                action
            }
            None => action,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_status_runs_out() {
        let f = Faults::default();
        f.set(Fault::Status {
            status: 503,
            remaining: Some(2),
            retry_after_ms: None,
        });
        let failing = Action::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after_ms: None,
        };
        assert_eq!(f.next_action(), failing);
        assert_eq!(f.next_action(), failing);
        assert_eq!(f.next_action(), SERVE);
        assert_eq!(f.set(Fault::Hang), Fault::None);
    }

    #[test]
    fn uncounted_status_stays_until_cleared() {
        let f = Faults::default();
        f.set(Fault::Status {
            status: 429,
            remaining: None,
            retry_after_ms: Some(5),
        });
        for _ in 0..5 {
            assert!(matches!(f.next_action(), Action::Status { .. }));
        }
        f.set(Fault::CutStreamAfter(3));
        assert_eq!(
            f.next_action(),
            Action::Serve {
                cut_after: Some(3),
                usage: None
            }
        );
        f.set(Fault::Refuse);
        assert!(f.is_refusing());
        assert_eq!(f.next_action(), Action::Refuse);
    }

    #[test]
    fn raw_throttle_and_reported_usage() {
        let f = Faults::default();
        f.set(Fault::ThrottleWith {
            retry_after: Some("1e300".into()),
            retry_after_ms: None,
            remaining: Some(1),
        });
        assert_eq!(
            f.next_action(),
            Action::RawThrottle {
                retry_after: Some("1e300".into()),
                retry_after_ms: None
            }
        );
        assert_eq!(f.next_action(), SERVE);
        f.set(Fault::ReportUsage {
            prompt_tokens: u64::MAX,
            completion_tokens: 1,
            total_tokens: 0,
        });
        let usage = Action::Serve {
            cut_after: None,
            usage: Some([u64::MAX, 1, 0]),
        };
        assert_eq!(f.next_action(), usage);
        assert_eq!(f.next_action(), usage, "until cleared");
    }

    #[test]
    fn invalid_status_becomes_500() {
        let f = Faults::default();
        f.set(Fault::Status {
            status: 42,
            remaining: Some(1),
            retry_after_ms: None,
        });
        assert_eq!(
            f.next_action(),
            Action::Status {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                retry_after_ms: None
            }
        );
    }
}
