//! The lifecycle a complaint's events must follow, as a pure state machine.
//!
//! The ingester keeps one [`StreamStatus`] per complaint (in the log's stream index) and
//! asks [`check`] before appending. Rules (from the contract):
//! - the first event of a complaint is `complaint.filed`, and `filed` comes once;
//! - after `resolved` only `reopened`, `closed`, `customer_contacted` and plaint's own
//!   events may follow;
//! - after `closed` or `withdrawn` only `reopened` and plaint's own events;
//! - `reopened` is only meaningful for a complaint that is not open.

use crate::{EventType, RejectReason, Rejection};

/// Where a complaint is in its life, as far as the lifecycle rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum StreamStatus {
    Open = 1,
    Resolved = 2,
    Closed = 3,
    Withdrawn = 4,
}

impl StreamStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Open => "open",
            StreamStatus::Resolved => "resolved",
            StreamStatus::Closed => "closed",
            StreamStatus::Withdrawn => "withdrawn",
        }
    }
}

/// Checks that `event_type` may follow a complaint in `current` (None: no event yet) and
/// returns the status after it.
pub fn check(
    current: Option<StreamStatus>,
    event_type: EventType,
) -> Result<StreamStatus, Rejection> {
    use EventType as T;
    use StreamStatus as S;
    let Some(status) = current else {
        return match event_type {
            T::Filed => Ok(S::Open),
            other => Err(Rejection::new(
                RejectReason::UnknownComplaint,
                format!(
                    "{other} for a complaint that was never filed; publish complaint.filed first"
                ),
            )),
        };
    };
    let allowed = match (status, event_type) {
        (_, T::Filed) => false,
        (_, t) if t.is_plaint_own() => true,
        (S::Open, T::Reopened) => false,
        (S::Open, _) => true,
        (S::Resolved, T::Reopened | T::Closed | T::CustomerContacted) => true,
        (S::Closed | S::Withdrawn, T::Reopened) => true,
        _ => false,
    };
    if !allowed {
        let detail = match event_type {
            T::Filed => "complaint.filed may come only once per complaint".to_string(),
            t => format!(
                "{t} is not allowed while the complaint is {}",
                status.as_str()
            ),
        };
        return Err(Rejection::new(RejectReason::LifecycleViolation, detail));
    }
    Ok(next(status, event_type))
}

/// The status after an event that [`check`] allowed (or that is already in the log).
pub fn next(status: StreamStatus, event_type: EventType) -> StreamStatus {
    match event_type {
        EventType::Filed | EventType::Reopened => StreamStatus::Open,
        EventType::Resolved => StreamStatus::Resolved,
        EventType::Closed => StreamStatus::Closed,
        EventType::Withdrawn => StreamStatus::Withdrawn,
        _ => status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventType as T;
    use StreamStatus as S;

    fn reason(r: Result<StreamStatus, Rejection>) -> Option<RejectReason> {
        r.err().map(|e| e.reason)
    }

    #[test]
    fn first_event_must_be_filed() {
        assert_eq!(check(None, T::Filed).unwrap(), S::Open);
        assert_eq!(
            reason(check(None, T::Acknowledged)),
            Some(RejectReason::UnknownComplaint)
        );
        assert_eq!(
            reason(check(None, T::SlaBreached)),
            Some(RejectReason::UnknownComplaint)
        );
    }

    #[test]
    fn filed_comes_once() {
        for s in [S::Open, S::Resolved, S::Closed, S::Withdrawn] {
            assert_eq!(
                reason(check(Some(s), T::Filed)),
                Some(RejectReason::LifecycleViolation)
            );
        }
    }

    #[test]
    fn after_resolved_only_reopen_close_contact_and_own() {
        for t in EventType::ALL {
            let allowed = check(Some(S::Resolved), t).is_ok();
            let expected =
                matches!(t, T::Reopened | T::Closed | T::CustomerContacted) || t.is_plaint_own();
            assert_eq!(allowed, expected, "{t} after resolved");
        }
    }

    #[test]
    fn after_closed_or_withdrawn_only_reopen_and_own() {
        for s in [S::Closed, S::Withdrawn] {
            for t in EventType::ALL {
                let allowed = check(Some(s), t).is_ok();
                assert_eq!(
                    allowed,
                    t == T::Reopened || t.is_plaint_own(),
                    "{t} after {s:?}"
                );
            }
        }
    }

    #[test]
    fn reopen_returns_to_open_and_open_cannot_reopen() {
        assert_eq!(check(Some(S::Closed), T::Reopened).unwrap(), S::Open);
        assert_eq!(
            reason(check(Some(S::Open), T::Reopened)),
            Some(RejectReason::LifecycleViolation)
        );
        assert_eq!(check(Some(S::Open), T::Resolved).unwrap(), S::Resolved);
        assert_eq!(check(Some(S::Open), T::Withdrawn).unwrap(), S::Withdrawn);
    }
}
