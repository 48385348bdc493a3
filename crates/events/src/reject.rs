use std::fmt;

/// Why an event was refused. Each reason is also the last token of the subject
/// `complaints.rejected.<reason>` it is published on, so operators can subscribe to one
/// kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    MalformedJson,
    InvalidUtf8,
    TooLarge,
    SchemaViolation,
    UnknownType,
    UnknownComplaint,
    LifecycleViolation,
    ConflictingDuplicate,
    SubjectRegionMismatch,
    /// The subject's `<kind>` token does not name the event's `type`.
    SubjectTypeMismatch,
    TimeSkew,
}

impl RejectReason {
    pub const ALL: [RejectReason; 11] = [
        RejectReason::MalformedJson,
        RejectReason::InvalidUtf8,
        RejectReason::TooLarge,
        RejectReason::SchemaViolation,
        RejectReason::UnknownType,
        RejectReason::UnknownComplaint,
        RejectReason::LifecycleViolation,
        RejectReason::ConflictingDuplicate,
        RejectReason::SubjectRegionMismatch,
        RejectReason::SubjectTypeMismatch,
        RejectReason::TimeSkew,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::TooLarge => "too_large",
            RejectReason::SchemaViolation => "schema_violation",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::UnknownComplaint => "unknown_complaint",
            RejectReason::LifecycleViolation => "lifecycle_violation",
            RejectReason::ConflictingDuplicate => "conflicting_duplicate",
            RejectReason::SubjectRegionMismatch => "subject_region_mismatch",
            RejectReason::SubjectTypeMismatch => "subject_type_mismatch",
            RejectReason::TimeSkew => "time_skew",
        }
    }

    pub fn parse(s: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused event: the reason (machine readable) and a detail that tells the producer
/// exactly which field or rule failed. Rejections are values, not errors: they are an
/// expected outcome of ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl std::error::Error for Rejection {}
