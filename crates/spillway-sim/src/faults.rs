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
}

/// What one request gets, decided once when it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Serve {
        cut_after: Option<u32>,
    },
    Status {
        status: StatusCode,
        retry_after_ms: Option<u64>,
    },
    Refuse,
    Hang,
}

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

    /// Decides the fate of an arriving request, using up one of a counted `Status` fault.
    pub fn next_action(&self) -> Action {
        let mut current = self.lock();
        match &mut *current {
            Fault::None => Action::Serve { cut_after: None },
            Fault::CutStreamAfter(n) => Action::Serve {
                cut_after: Some(*n),
            },
            Fault::Refuse => Action::Refuse,
            Fault::Hang => Action::Hang,
            Fault::Status {
                status,
                remaining,
                retry_after_ms,
            } => {
                if *remaining == Some(0) {
                    *current = Fault::None;
                    return Action::Serve { cut_after: None };
                }
                let status = StatusCode::from_u16(*status).unwrap_or_else(|_| {
                    log::warn!("sim: fault status {status} is not an HTTP status, answering 500");
                    StatusCode::INTERNAL_SERVER_ERROR
                });
                let action = Action::Status {
                    status,
                    retry_after_ms: *retry_after_ms,
                };
                if let Some(n) = remaining {
                    *n -= 1;
                    if *n == 0 {
                        *current = Fault::None;
                    }
                }
                action
            }
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
        assert_eq!(f.next_action(), Action::Serve { cut_after: None });
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
        assert_eq!(f.next_action(), Action::Serve { cut_after: Some(3) });
        f.set(Fault::Refuse);
        assert!(f.is_refusing());
        assert_eq!(f.next_action(), Action::Refuse);
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
