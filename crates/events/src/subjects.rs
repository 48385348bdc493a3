//! Subject names of the contract, built from a configurable prefix (`complaints`).

use crate::{EventType, RejectReason};

/// `<prefix>.events.<region>.<kind>`
pub fn event(prefix: &str, region: &str, event_type: EventType) -> String {
    format!("{prefix}.events.{region}.{}", event_type.subject_kind())
}

/// `<prefix>.events.>`: everything the `COMPLAINTS` stream captures.
pub fn events_wildcard(prefix: &str) -> String {
    format!("{prefix}.events.>")
}

/// `<prefix>.rejected.<reason>`
pub fn rejected(prefix: &str, reason: RejectReason) -> String {
    format!("{prefix}.rejected.{}", reason.as_str())
}

pub fn rejected_wildcard(prefix: &str) -> String {
    format!("{prefix}.rejected.>")
}

/// `<prefix>.alerts.>`: SLA and trend alerts share the `COMPLAINT_ALERTS` stream with
/// escalations.
pub fn alerts_wildcard(prefix: &str) -> String {
    format!("{prefix}.alerts.>")
}

pub fn escalations_wildcard(prefix: &str) -> String {
    format!("{prefix}.escalations.>")
}

/// `<prefix>.alerts.sla.<at_risk|breached>.<region>`
pub fn sla_alert(prefix: &str, kind: &str, region: &str) -> String {
    format!("{prefix}.alerts.sla.{kind}.{region}")
}

/// `<prefix>.alerts.trends.<region|all>.<category>`
pub fn trend_alert(prefix: &str, region_or_all: &str, category: &str) -> String {
    format!("{prefix}.alerts.trends.{region_or_all}.{category}")
}

/// `<prefix>.escalations.<tier>.<region>`
pub fn escalation(prefix: &str, tier: u8, region: &str) -> String {
    format!("{prefix}.escalations.{tier}.{region}")
}

/// `<prefix>.api`: the NATS service's subject root.
pub fn api(prefix: &str) -> String {
    format!("{prefix}.api")
}

/// The `(region, kind)` tokens of an events subject, or None if the subject is not one.
pub fn parse_event<'s>(prefix: &str, subject: &'s str) -> Option<(&'s str, &'s str)> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix(".events.")?;
    let (region, kind) = rest.split_once('.')?;
    if kind.contains('.') {
        return None;
    }
    Some((region, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_subjects_round_trip() {
        let s = event("complaints", "eu-west", EventType::CustomerContacted);
        assert_eq!(s, "complaints.events.eu-west.customer_contacted");
        assert_eq!(
            parse_event("complaints", &s),
            Some(("eu-west", "customer_contacted"))
        );
        assert_eq!(
            event("c", "r", EventType::SlaBreached),
            "c.events.r.sla_breached"
        );
        assert_eq!(parse_event("complaints", "complaints.events.eu"), None);
        assert_eq!(parse_event("complaints", "other.events.eu.filed"), None);
        for t in EventType::ALL {
            assert_eq!(EventType::from_subject_kind(t.subject_kind()), Some(t));
        }
    }
}
