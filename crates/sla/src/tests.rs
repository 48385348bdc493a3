//! Given/when/then tests of the pure core, with time passed in, and the property tests of
//! determinism and rebuild equivalence.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use plaint_events::*;
use plaint_projection::{digest_rows, Effect, NoRows, Projection};
use proptest::prelude::*;
use uuid::Uuid;

use crate::*;

fn t(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn hours(h: i64) -> i64 {
    h * 3600
}

/// 24x7 policy `standard`: first response 1h, resolution 8h (pausable), periodic update
/// 4h (pausable), callbacks; `business` policy for category `billing`: first response 2h,
/// resolution 8h on business hours 09:00-17:00 per region (Paris, New York, UTC default).
fn config() -> SlaConfig {
    let nine_to_five = |zone: &str, holidays: &[&str]| BusinessHoursConfig {
        time_zone: zone.into(),
        holidays: holidays.iter().map(|h| h.to_string()).collect(),
        ..BusinessHoursConfig::default()
    };
    SlaConfig {
        business_hours: BTreeMap::from([
            ("default".into(), nine_to_five("UTC", &[])),
            (
                "eu-west".into(),
                nine_to_five("Europe/Paris", &["2025-12-25"]),
            ),
            ("us-east".into(), nine_to_five("America/New_York", &[])),
        ]),
        policies: vec![
            PolicyConfig {
                name: "business".into(),
                matches: PolicyMatch {
                    category: vec!["billing".into()],
                    ..PolicyMatch::default()
                },
                calendar: CalendarChoice::Business,
                first_response: Some("2h".into()),
                resolution: Some("8h".into()),
                periodic_update: None,
                ..PolicyConfig::default()
            },
            PolicyConfig {
                name: "vip".into(),
                matches: PolicyMatch {
                    vip: Some(true),
                    ..PolicyMatch::default()
                },
                first_response: Some("15m".into()),
                ..PolicyConfig::default()
            },
        ],
        default_policy: PolicyConfig {
            name: "standard".into(),
            first_response: Some("1h".into()),
            resolution: Some("8h".into()),
            periodic_update: Some("4h".into()),
            ..PolicyConfig::default()
        },
        ..SlaConfig::default()
    }
}

fn event(complaint: &str, time: Timestamp, body: EventBody) -> Event {
    let name = format!("{complaint}/{}/{time}", body.event_type());
    Event {
        id: Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()),
        source: "crm-test".into(),
        complaint_id: complaint.into(),
        time,
        body,
    }
}

fn filed_body(region: &str, category: &str, vip: bool) -> EventBody {
    EventBody::Filed(ComplaintFiled {
        customer_id: "cust-1".into(),
        region: region.into(),
        category: category.into(),
        channel: Channel::Email,
        severity: Severity::Medium,
        amount_at_stake: None,
        summary: None,
        tags: vec![],
        vip,
    })
}

fn ack() -> EventBody {
    EventBody::Acknowledged(ComplaintAcknowledged { by: "agent".into() })
}

fn contacted() -> EventBody {
    EventBody::CustomerContacted(CustomerContacted {
        by: "agent".into(),
        channel: Channel::Phone,
        note: None,
    })
}

fn awaiting() -> EventBody {
    EventBody::AwaitingCustomer(AwaitingCustomer {
        by: "agent".into(),
        reason: None,
    })
}

fn replied() -> EventBody {
    EventBody::CustomerReplied(CustomerReplied {
        channel: Channel::Email,
    })
}

fn resolved() -> EventBody {
    EventBody::Resolved(ComplaintResolved {
        by: "agent".into(),
        resolution: "refund".into(),
    })
}

fn reopened() -> EventBody {
    EventBody::Reopened(ComplaintReopened {
        reason: "not fixed".into(),
    })
}

fn promised(due_by: &str) -> EventBody {
    EventBody::CallbackPromised(CallbackPromised {
        by: "agent".into(),
        due_by: t(due_by),
    })
}

/// A view's persisted rows.
type Rows = BTreeMap<Vec<u8>, Vec<u8>>;

/// A projector with a log that breach events are written back into, as the runner does,
/// and its committed rows (it never evicts).
struct Harness {
    projector: SlaProjector,
    seq: u64,
    rows: Rows,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            projector: SlaProjector::new(config()).unwrap(),
            seq: 0,
            rows: Rows::new(),
        }
    }

    /// Commits the changed rows, as after a batch.
    fn commit(&mut self) {
        plaint_projection::apply_changes(&mut self.rows, self.projector.take_changes());
    }

    /// The breaches query over the committed rows, once what was applied is committed; it
    /// answers what the in-memory query answered before breaches had rows.
    fn breaches(&mut self, filter: &SlaFilter, now: &str) -> Vec<SlaItem> {
        self.commit();
        let items = self.projector.breaches(filter, &self.rows, t(now)).unwrap();
        assert_eq!(items, self.projector.breaches_in_memory(filter, t(now)));
        items
    }

    fn apply(&mut self, complaint: &str, time: &str, body: EventBody) -> Vec<Effect> {
        self.apply_event(&event(complaint, t(time), body))
    }

    fn apply_event(&mut self, event: &Event) -> Vec<Effect> {
        self.seq += 1;
        self.projector.apply(self.seq, event)
    }

    fn tick(&mut self, now: &str) -> Vec<Effect> {
        self.projector.tick(t(now))
    }

    /// Applies the events the effects append, as they come back through the log.
    fn write_back(&mut self, effects: &[Effect]) {
        for effect in effects {
            if let Effect::AppendEvent { event, .. } = effect {
                self.apply_event(event);
            }
        }
    }

    fn metric(&self, complaint: &str, now: &str, metric: SlaMetric) -> MetricSla {
        let state = self.projector.complaint(complaint, t(now)).unwrap();
        state
            .metrics
            .into_iter()
            .find(|m| m.metric == metric)
            .unwrap()
    }
}

fn breach_events(effects: &[Effect]) -> Vec<SlaBreached> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::AppendEvent {
                event:
                    Event {
                        body: EventBody::SlaBreached(b),
                        ..
                    },
                ..
            } => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn published(effects: &[Effect]) -> Vec<&str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Publish { subject, .. } => Some(subject.as_str()),
            _ => None,
        })
        .collect()
}

// ---- first response ----

#[test]
fn first_response_met_in_time() {
    // Given a complaint filed at 10:00 under a 1h first-response target,
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    // when it is acknowledged at 10:30,
    let effects = h.apply("c1", "2025-01-06T10:30:00Z", ack());
    // then the metric is met, used 30 minutes, and nothing fires later.
    assert!(effects.is_empty());
    let first = h.metric("c1", "2025-01-06T12:00:00Z", SlaMetric::FirstResponse);
    assert_eq!(
        (first.state.as_str(), first.breached, first.used_seconds),
        ("met", false, 1800)
    );
    assert!(breach_events(&h.tick("2025-01-06T11:30:00Z"))
        .iter()
        .all(|b| b.metric != SlaMetric::FirstResponse));
}

#[test]
fn first_response_at_risk_is_published_once() {
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    assert_eq!(h.projector.next_wakeup(), Some(t("2025-01-06T10:45:00Z")));
    // Before 75 % of the hour nothing is at risk.
    assert!(h.tick("2025-01-06T10:44:59Z").is_empty());
    // At 10:45 the first response is at risk: one alert on the region's subject,
    let effects = h.tick("2025-01-06T10:45:00Z");
    assert_eq!(
        published(&effects),
        vec!["complaints.alerts.sla.at_risk.eu-west"]
    );
    let Effect::Publish {
        payload, msg_id, ..
    } = &effects[0]
    else {
        unreachable!()
    };
    let alert: AtRiskAlert = serde_json::from_slice(payload).unwrap();
    assert_eq!(
        (alert.metric, alert.due_at),
        (SlaMetric::FirstResponse, t("2025-01-06T11:00:00Z"))
    );
    assert_eq!(
        msg_id,
        &own::event_id(&["c1", "first_response", "2025-01-06T11:00:00Z", "at_risk"]).to_string()
    );
    // and not again at the next tick; the query lists it.
    assert!(h.tick("2025-01-06T10:50:00Z").is_empty());
    let items = h
        .projector
        .at_risk(&SlaFilter::default(), &NoRows, t("2025-01-06T10:50:00Z"))
        .unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!((items[0].used_seconds, items[0].late_by_seconds), (3000, 0));
    assert!(h
        .projector
        .at_risk(
            &SlaFilter {
                region: Some("us-east".into()),
                ..SlaFilter::default()
            },
            &NoRows,
            t("2025-01-06T10:50:00Z")
        )
        .unwrap()
        .is_empty());
}

#[test]
fn a_restart_with_the_tick_cursor_does_not_warn_again_and_one_without_does() {
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    h.apply(
        "c2",
        "2025-01-06T10:30:00Z",
        filed_body("eu-west", "delivery", false),
    );
    // c1's first response is at risk from 10:45, c2's from 11:15.
    assert_eq!(published(&h.tick("2025-01-06T10:50:00Z")).len(), 1);
    h.commit();
    let cursor = h
        .projector
        .tick_cursor()
        .expect("a tick handed warnings out");
    let restart = |cursor: Option<u64>| {
        let mut restarted = SlaProjector::new(config()).unwrap();
        restarted.restore(&mut h.rows.clone().into_iter()).unwrap();
        if let Some(cursor) = cursor {
            restarted.restore_tick_cursor(cursor);
        }
        restarted
    };
    let mut kept = restart(Some(cursor));
    assert!(
        kept.tick(t("2025-01-06T10:55:00Z")).is_empty(),
        "c1 was warned before the restart"
    );
    // (c1's breach at 11:00 comes too.)
    let later = kept.tick(t("2025-01-06T11:20:00Z"));
    let at_risk: Vec<AtRiskAlert> = later
        .iter()
        .filter_map(|effect| match effect {
            Effect::Publish {
                subject, payload, ..
            } if subject.contains(".at_risk.") => Some(serde_json::from_slice(payload).unwrap()),
            _ => None,
        })
        .collect();
    assert_eq!(at_risk.len(), 1);
    assert_eq!(
        at_risk[0].complaint_id, "c2",
        "a warning due after the cursor still comes"
    );
    // Without the cursor (a rebuilt view) c1 is warned again, with the same msg id.
    let mut forgetful = restart(None);
    assert_eq!(
        published(&forgetful.tick(t("2025-01-06T10:55:00Z"))).len(),
        1
    );
}

#[test]
fn first_response_breached_when_the_deadline_passes() {
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    // When the deadline passes, the tick writes sla.breached with the deterministic id
    let effects = h.tick("2025-01-06T11:00:00Z");
    let breaches = breach_events(&effects);
    assert_eq!(breaches.len(), 1);
    assert_eq!(
        (
            breaches[0].metric,
            breaches[0].due_at,
            breaches[0].target_seconds
        ),
        (SlaMetric::FirstResponse, t("2025-01-06T11:00:00Z"), 3600)
    );
    let Effect::AppendEvent { subject, event } = &effects[0] else {
        panic!("{effects:?}")
    };
    assert_eq!(subject, "complaints.events.eu-west.sla_breached");
    assert_eq!(
        event.id,
        own::event_id(&["c1", "first_response", "2025-01-06T11:00:00Z"])
    );
    assert_eq!(
        (event.source.as_str(), event.time),
        ("plaint/sla", t("2025-01-06T11:00:00Z"))
    );
    assert_eq!(
        published(&effects),
        vec!["complaints.alerts.sla.breached.eu-west"]
    );
    // but the view is unchanged until the event comes back through the log,
    assert!(h
        .breaches(&SlaFilter::default(), "2025-01-06T11:05:00Z")
        .is_empty());
    assert!(
        h.tick("2025-01-06T11:10:00Z").is_empty(),
        "a deadline fires once"
    );
    h.write_back(&effects);
    // then it is an open breach, sorted by how late.
    let open = h.breaches(&SlaFilter::default(), "2025-01-06T11:30:00Z");
    assert_eq!(open.len(), 1);
    assert_eq!(
        (
            open[0].metric,
            open[0].late_by_seconds,
            open[0].breach_recorded
        ),
        (SlaMetric::FirstResponse, 1800, true)
    );
    // Applying the same event again (a replica, a replay) changes nothing.
    let digest = h.projector.digest();
    h.write_back(&effects);
    assert_eq!(h.projector.digest(), digest);
}

#[test]
fn met_late_with_a_recorded_breach_writes_nothing_more() {
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    let effects = h.tick("2025-01-06T11:00:00Z");
    h.write_back(&effects);
    // When the complaint is finally acknowledged at 11:20,
    let effects = h.apply("c1", "2025-01-06T11:20:00Z", ack());
    // then no second breach is written; the metric is met late, 20 minutes late.
    assert!(breach_events(&effects).is_empty());
    let first = h.metric("c1", "2025-01-06T12:00:00Z", SlaMetric::FirstResponse);
    assert_eq!(
        (first.state.as_str(), first.breached, first.late_by_seconds),
        ("met", true, Some(1200))
    );
    assert!(h
        .breaches(&SlaFilter::default(), "2025-01-06T12:00:00Z")
        .is_empty());
}

#[test]
fn met_late_without_a_recorded_breach_writes_a_met_late_event() {
    // Given no tick ran while the deadline passed (downtime, or an imported history),
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    // when the acknowledgement comes at 11:30,
    let effects = h.apply("c1", "2025-01-06T11:30:00Z", ack());
    // then apply writes a met-late breach with how late, under a distinct id,
    let breaches = breach_events(&effects);
    assert_eq!(breaches.len(), 1);
    assert_eq!(
        (breaches[0].met_at, breaches[0].late_by_seconds),
        (Some(t("2025-01-06T11:30:00Z")), Some(1800))
    );
    let Effect::AppendEvent { event, .. } = &effects[0] else {
        unreachable!()
    };
    assert_eq!(
        event.id,
        own::event_id(&["c1", "first_response", "2025-01-06T11:00:00Z", "met_late"])
    );
    assert_eq!(event.time, t("2025-01-06T11:30:00Z"));
    // and the timer, had it fired meanwhile, used another id: both count as one breach.
    let timer_breach = h.tick("2025-01-06T12:00:00Z");
    assert!(breach_events(&timer_breach)
        .iter()
        .all(|b| b.metric != SlaMetric::FirstResponse));
    let digest = h.projector.digest();
    h.write_back(&effects);
    assert_eq!(h.projector.digest(), digest);
    let report = h
        .projector
        .compliance(
            &ComplianceQuery {
                filter: SlaFilter {
                    metric: Some(SlaMetric::FirstResponse),
                    ..SlaFilter::default()
                },
                ..ComplianceQuery::default()
            },
            &NoRows,
        )
        .unwrap();
    assert_eq!((report.total.count, report.total.breached), (1, 1));
}

// ---- resolution: pause, resume, reopen ----

#[test]
fn awaiting_customer_pauses_pausable_metrics_only() {
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    h.apply("c1", "2025-01-06T10:10:00Z", ack());
    // When the complaint awaits the customer from 12:00 to 14:00,
    h.apply("c1", "2025-01-06T12:00:00Z", awaiting());
    let paused = h.metric("c1", "2025-01-06T13:00:00Z", SlaMetric::Resolution);
    assert_eq!(
        (
            paused.state.as_str(),
            paused.paused,
            paused.used_seconds,
            paused.due_at
        ),
        ("paused", true, hours(2), None)
    );
    // nothing fires during the pause, even past the original deadline,
    assert!(breach_events(&h.tick("2025-01-06T13:59:00Z")).is_empty());
    h.apply("c1", "2025-01-06T14:00:00Z", replied());
    // then resolution resumes with 6h left: due at 20:00 instead of 18:00.
    let resumed = h.metric("c1", "2025-01-06T15:00:00Z", SlaMetric::Resolution);
    assert_eq!(
        (resumed.state.as_str(), resumed.due_at, resumed.used_seconds),
        ("running", Some(t("2025-01-06T20:00:00Z")), hours(3))
    );
    // The periodic update (pausable) resumed too; its cycle started at 10:10 with 1h50 used.
    let periodic = h.metric("c1", "2025-01-06T14:00:00Z", SlaMetric::PeriodicUpdate);
    assert_eq!(periodic.due_at, Some(t("2025-01-06T16:10:00Z")));
}

#[test]
fn a_non_pausable_metric_keeps_running_while_awaiting_the_customer() {
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    h.apply("c1", "2025-01-06T10:05:00Z", awaiting());
    // First response is not pausable in the standard policy: it breaches at 11:00.
    let effects = h.tick("2025-01-06T11:00:00Z");
    assert_eq!(
        breach_events(&effects)
            .iter()
            .map(|b| b.metric)
            .collect::<Vec<_>>(),
        vec![SlaMetric::FirstResponse]
    );
}

#[test]
fn reopening_resumes_resolution_with_the_time_already_used() {
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    h.apply("c1", "2025-01-06T10:10:00Z", ack());
    // Resolved after 3h: met.
    h.apply("c1", "2025-01-06T13:00:00Z", resolved());
    assert_eq!(
        h.metric("c1", "2025-01-06T14:00:00Z", SlaMetric::Resolution)
            .state,
        "met"
    );
    // When reopened at 15:00,
    h.apply("c1", "2025-01-06T15:00:00Z", reopened());
    // then the resolution clock resumes with 5h left: due 20:00, and its earlier
    // completion no longer counts.
    let resolution = h.metric("c1", "2025-01-06T15:00:00Z", SlaMetric::Resolution);
    assert_eq!(
        (
            resolution.state.as_str(),
            resolution.due_at,
            resolution.used_seconds
        ),
        ("running", Some(t("2025-01-06T20:00:00Z")), hours(3))
    );
    let state = h
        .projector
        .complaint("c1", t("2025-01-06T15:00:00Z"))
        .unwrap();
    assert!(state
        .completed
        .iter()
        .all(|c| c.metric != SlaMetric::Resolution));
    // A new periodic-update cycle started at the reopening.
    assert_eq!(
        h.metric("c1", "2025-01-06T15:00:00Z", SlaMetric::PeriodicUpdate)
            .due_at,
        Some(t("2025-01-06T19:00:00Z"))
    );
    // When it breaches at 20:00 it is the reopened deadline that is recorded.
    let effects = h.tick("2025-01-06T20:00:00Z");
    let resolution_breach: Vec<_> = breach_events(&effects)
        .into_iter()
        .filter(|b| b.metric == SlaMetric::Resolution)
        .collect();
    assert_eq!(resolution_breach[0].due_at, t("2025-01-06T20:00:00Z"));
}

#[test]
fn resolution_met_late_and_reopened_stays_breached() {
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    h.apply("c1", "2025-01-06T10:10:00Z", ack());
    let effects = h.tick("2025-01-06T18:00:00Z");
    h.write_back(&effects);
    h.apply("c1", "2025-01-06T19:00:00Z", resolved());
    h.apply("c1", "2025-01-07T09:00:00Z", reopened());
    let resolution = h.metric("c1", "2025-01-07T10:00:00Z", SlaMetric::Resolution);
    assert!(resolution.breached);
    assert_eq!(resolution.due_at, Some(t("2025-01-06T18:00:00Z")));
    // It is an open breach again, and firing does not repeat it.
    assert_eq!(
        h.breaches(
            &SlaFilter {
                metric: Some(SlaMetric::Resolution),
                ..SlaFilter::default()
            },
            "2025-01-07T10:00:00Z"
        )
        .len(),
        1
    );
    assert!(breach_events(&h.tick("2025-01-07T10:00:00Z"))
        .iter()
        .all(|b| b.metric != SlaMetric::Resolution));
}

// ---- periodic update ----

#[test]
fn periodic_update_restarts_at_each_update_and_breaches_on_a_long_gap() {
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    h.apply("c1", "2025-01-06T13:00:00Z", contacted());
    assert_eq!(
        h.metric("c1", "2025-01-06T13:00:00Z", SlaMetric::PeriodicUpdate)
            .due_at,
        Some(t("2025-01-06T17:00:00Z"))
    );
    let effects = h.tick("2025-01-06T17:00:00Z");
    let periodic: Vec<_> = breach_events(&effects)
        .into_iter()
        .filter(|b| b.metric == SlaMetric::PeriodicUpdate)
        .collect();
    assert_eq!(periodic.len(), 1);
    assert_eq!(periodic[0].due_at, t("2025-01-06T17:00:00Z"));
    h.write_back(&effects);
    // The next update ends the breached cycle (late) and starts a fresh one.
    h.apply("c1", "2025-01-06T18:00:00Z", contacted());
    let state = h
        .projector
        .complaint("c1", t("2025-01-06T18:00:00Z"))
        .unwrap();
    let cycles: Vec<bool> = state
        .completed
        .iter()
        .filter(|c| c.metric == SlaMetric::PeriodicUpdate)
        .map(|c| c.breached)
        .collect();
    assert_eq!(cycles, vec![false, true]);
    assert_eq!(
        h.metric("c1", "2025-01-06T18:00:00Z", SlaMetric::PeriodicUpdate)
            .due_at,
        Some(t("2025-01-06T22:00:00Z"))
    );
}

// ---- callbacks ----

#[test]
fn callback_promised_and_kept() {
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    h.apply("c1", "2025-01-06T10:10:00Z", ack());
    h.apply(
        "c1",
        "2025-01-06T10:20:00Z",
        promised("2025-01-06T12:00:00Z"),
    );
    let effects = h.apply("c1", "2025-01-06T11:30:00Z", contacted());
    assert!(effects.is_empty());
    assert!(breach_events(&h.tick("2025-01-06T12:30:00Z"))
        .iter()
        .all(|b| b.metric != SlaMetric::Callback));
    let state = h
        .projector
        .complaint("c1", t("2025-01-06T12:30:00Z"))
        .unwrap();
    let kept: Vec<_> = state
        .completed
        .iter()
        .filter(|c| c.metric == SlaMetric::Callback)
        .collect();
    assert_eq!(kept.len(), 1);
    assert!(!kept[0].breached);
}

#[test]
fn callback_promised_and_broken() {
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    h.apply("c1", "2025-01-06T10:10:00Z", ack());
    h.apply(
        "c1",
        "2025-01-06T10:20:00Z",
        promised("2025-01-06T12:00:00Z"),
    );
    // At risk at 75 % of the 100 minutes promised (11:35),
    assert_eq!(
        published(&h.tick("2025-01-06T11:35:00Z")),
        vec!["complaints.alerts.sla.at_risk.eu-west"]
    );
    // broken at 12:00 (the agent's own promise),
    let effects = h.tick("2025-01-06T12:00:00Z");
    let broken: Vec<_> = breach_events(&effects)
        .into_iter()
        .filter(|b| b.metric == SlaMetric::Callback)
        .collect();
    assert_eq!(broken.len(), 1);
    assert_eq!(
        (broken[0].due_at, broken[0].target_seconds),
        (t("2025-01-06T12:00:00Z"), 6000)
    );
    h.write_back(&effects);
    let open = h.breaches(
        &SlaFilter {
            metric: Some(SlaMetric::Callback),
            ..SlaFilter::default()
        },
        "2025-01-06T12:30:00Z",
    );
    assert_eq!((open.len(), open[0].promise), (1, Some(0)));
    // and the late call closes the breach without writing another one.
    assert!(breach_events(&h.apply("c1", "2025-01-06T13:00:00Z", contacted())).is_empty());
    assert!(h
        .breaches(&SlaFilter::default(), "2025-01-06T13:00:00Z")
        .iter()
        .all(|i| i.metric != SlaMetric::Callback));
}

#[test]
fn two_promises_with_the_same_due_time_have_distinct_breach_ids() {
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    h.apply(
        "c1",
        "2025-01-06T10:20:00Z",
        promised("2025-01-06T12:00:00Z"),
    );
    h.apply(
        "c1",
        "2025-01-06T10:40:00Z",
        promised("2025-01-06T12:00:00Z"),
    );
    let effects = h.tick("2025-01-06T12:00:00Z");
    let ids: BTreeSet<Uuid> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::AppendEvent { event, .. } if matches!(&event.body, EventBody::SlaBreached(b) if b.metric == SlaMetric::Callback) => Some(event.id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 2);
    h.write_back(&effects);
    assert_eq!(
        h.breaches(
            &SlaFilter {
                metric: Some(SlaMetric::Callback),
                ..SlaFilter::default()
            },
            "2025-01-06T12:00:00Z"
        )
        .len(),
        2
    );
}

// ---- business hours ----

fn first_response_due(region: &str, filed_at: &str) -> Option<Timestamp> {
    let mut h = Harness::new();
    h.apply("c1", filed_at, filed_body(region, "billing", false));
    h.metric("c1", filed_at, SlaMetric::FirstResponse).due_at
}

#[test]
fn business_hours_carry_a_deadline_over_the_weekend() {
    // Friday 16:00 in Paris (15:00Z) + 2 business hours = Monday 10:00 (09:00Z).
    assert_eq!(
        first_response_due("eu-west", "2025-01-10T15:00:00Z"),
        Some(t("2025-01-13T09:00:00Z"))
    );
}

#[test]
fn business_hours_skip_a_holiday() {
    // Wednesday 24 December 16:00 Paris + 2h: Christmas is closed, so Friday 10:00.
    assert_eq!(
        first_response_due("eu-west", "2025-12-24T15:00:00Z"),
        Some(t("2025-12-26T09:00:00Z"))
    );
}

#[test]
fn business_hours_across_the_european_dst_change() {
    // Friday 28 March 2025 16:00 CET (15:00Z); summer time starts Sunday 30 March.
    // Monday 10:00 CEST is 08:00Z.
    assert_eq!(
        first_response_due("eu-west", "2025-03-28T15:00:00Z"),
        Some(t("2025-03-31T08:00:00Z"))
    );
    // And back to winter time on 26 October: Friday 24 16:00 CEST (14:00Z) → Monday 27
    // 10:00 CET (09:00Z).
    assert_eq!(
        first_response_due("eu-west", "2025-10-24T14:00:00Z"),
        Some(t("2025-10-27T09:00:00Z"))
    );
}

#[test]
fn business_hours_across_the_us_dst_change() {
    // Friday 7 March 2025 16:00 EST (21:00Z); DST starts Sunday 9 March: Monday 10:00 EDT
    // is 14:00Z.
    assert_eq!(
        first_response_due("us-east", "2025-03-07T21:00:00Z"),
        Some(t("2025-03-10T14:00:00Z"))
    );
    // Friday 31 October 16:00 EDT (20:00Z); DST ends Sunday 2 November: Monday 10:00 EST
    // is 15:00Z.
    assert_eq!(
        first_response_due("us-east", "2025-10-31T20:00:00Z"),
        Some(t("2025-11-03T15:00:00Z"))
    );
}

#[test]
fn business_time_used_counts_only_open_hours() {
    let mut h = Harness::new();
    // Filed Friday 16:30 Paris, acknowledged Monday 09:30: 1h of business time used.
    h.apply(
        "c1",
        "2025-01-10T15:30:00Z",
        filed_body("eu-west", "billing", false),
    );
    h.apply("c1", "2025-01-13T08:30:00Z", ack());
    let first = h.metric("c1", "2025-01-13T09:00:00Z", SlaMetric::FirstResponse);
    assert_eq!(
        (first.used_seconds, first.breached, first.calendar.as_str()),
        (3600, false, "business:eu-west")
    );
    // A region without its own calendar uses the default one.
    let mut h = Harness::new();
    h.apply(
        "c2",
        "2025-01-10T16:00:00Z",
        filed_body("apac", "billing", false),
    );
    assert_eq!(
        h.metric("c2", "2025-01-10T16:00:00Z", SlaMetric::FirstResponse)
            .calendar,
        "business:default"
    );
}

// ---- policies ----

#[test]
fn the_first_matching_policy_wins() {
    let mut h = Harness::new();
    h.apply(
        "vip-billing",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "billing", true),
    );
    h.apply(
        "vip",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", true),
    );
    h.apply(
        "plain",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    let policy = |id: &str| {
        h.projector
            .complaint(id, t("2025-01-06T10:00:00Z"))
            .unwrap()
            .policy
    };
    assert_eq!(
        (policy("vip-billing"), policy("vip"), policy("plain")),
        ("business".into(), "vip".into(), "standard".into())
    );
    assert_eq!(
        h.metric("vip", "2025-01-06T10:00:00Z", SlaMetric::FirstResponse)
            .target_seconds,
        900
    );
}

#[test]
fn withdrawing_stops_clocks_and_drops_unbroken_promises() {
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    h.apply("c1", "2025-01-06T10:05:00Z", ack());
    h.apply(
        "c1",
        "2025-01-06T10:10:00Z",
        promised("2025-01-06T12:00:00Z"),
    );
    h.apply(
        "c1",
        "2025-01-06T10:20:00Z",
        EventBody::Withdrawn(ComplaintWithdrawn { reason: None }),
    );
    assert_eq!(h.projector.next_wakeup(), None);
    assert!(h.tick("2025-01-08T00:00:00Z").is_empty());
    assert_eq!(
        h.projector
            .complaint("c1", t("2025-01-08T00:00:00Z"))
            .unwrap()
            .status,
        ComplaintStatus::Withdrawn
    );
}

// ---- rows, restore, report ----

#[test]
fn restore_from_rows_gives_the_same_state_and_queries() {
    let mut h = Harness::new();
    h.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    h.apply(
        "c2",
        "2025-01-06T10:00:00Z",
        filed_body("us-east", "billing", false),
    );
    h.apply("c1", "2025-01-06T10:30:00Z", awaiting());
    h.apply(
        "c2",
        "2025-01-06T10:40:00Z",
        promised("2025-01-07T12:00:00Z"),
    );
    let effects = h.tick("2025-01-06T11:00:00Z");
    h.write_back(&effects);
    h.commit();
    // c1 awaits the customer with its first response (not pausable) breached: nothing can
    // fire for it, so its row is archived, its breach listed; c2's clocks run.
    assert_eq!(
        h.rows
            .keys()
            .map(|k| String::from_utf8_lossy(&k[..2]).into_owned())
            .collect::<Vec<_>>(),
        ["a/", "b/", "c/"]
    );
    let rows: Vec<_> = h.rows.clone().into_iter().collect();
    let mut restored = SlaProjector::new(config()).unwrap();
    restored.restore(&mut rows.clone().into_iter()).unwrap();
    assert_eq!(restored.digest(), h.projector.digest());
    assert_eq!(restored.next_wakeup(), h.projector.next_wakeup());
    let now = t("2025-01-06T15:00:00Z");
    assert_eq!(
        restored.complaint("c1", now),
        h.projector.complaint("c1", now)
    );
    assert_eq!(
        restored
            .breaches(&SlaFilter::default(), &h.rows, now)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        restored.breaches_in_memory(&SlaFilter::default(), now),
        h.projector.breaches_in_memory(&SlaFilter::default(), now)
    );
    assert_eq!(
        restored
            .at_risk(&SlaFilter::default(), &NoRows, now)
            .unwrap(),
        h.projector
            .at_risk(&SlaFilter::default(), &NoRows, now)
            .unwrap()
    );
    assert!(restored.take_changes().is_empty());
    // A view written before rows were binary (JSON rows) restores to the same state.
    let json_rows = rows
        .into_iter()
        .filter(|(key, _)| !key.starts_with(b"b/"))
        .map(|(key, value)| {
            let row: crate::state::ComplaintRow = plaint_projection::decode_row(&value).unwrap();
            (key, serde_json::to_vec(&row).unwrap())
        });
    let mut from_json = SlaProjector::new(config()).unwrap();
    from_json.restore(&mut json_rows.into_iter()).unwrap();
    assert_eq!(from_json.digest(), h.projector.digest());
}

#[test]
fn compliance_report_groups_and_renders() {
    let mut h = Harness::new();
    // eu-west: two complaints answered in 30m and 50m, resolved in 2h and 10h (late).
    h.apply(
        "a",
        "2025-01-06T08:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    h.apply("a", "2025-01-06T08:30:00Z", ack());
    h.apply("a", "2025-01-06T10:00:00Z", resolved());
    h.apply(
        "b",
        "2025-01-06T08:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    h.apply("b", "2025-01-06T08:50:00Z", ack());
    h.apply("b", "2025-01-06T11:00:00Z", contacted());
    h.apply("b", "2025-01-06T14:00:00Z", contacted());
    h.apply("b", "2025-01-06T18:00:00Z", resolved());
    // us-east: first response breached and still open.
    h.apply(
        "c",
        "2025-01-06T08:00:00Z",
        filed_body("us-east", "delivery", false),
    );
    let effects = h.tick("2025-01-06T09:00:00Z");
    h.write_back(&effects);

    let report = h
        .projector
        .compliance(
            &ComplianceQuery {
                from: Some(t("2025-01-06T00:00:00Z")),
                to: Some(t("2025-01-07T00:00:00Z")),
                group_by: vec![GroupBy::Region, GroupBy::Metric],
                filter: SlaFilter::default(),
            },
            &NoRows,
        )
        .unwrap();
    let row = |region: &str, metric: SlaMetric| {
        report
            .rows
            .iter()
            .find(|r| r.region.as_deref() == Some(region) && r.metric == Some(metric))
            .unwrap()
            .clone()
    };
    let eu_first = row("eu-west", SlaMetric::FirstResponse);
    assert_eq!(
        (eu_first.count, eu_first.met, eu_first.met_percent),
        (2, 2, 100.0)
    );
    assert_eq!(
        (
            eu_first.first_response_median_seconds,
            eu_first.first_response_p90_seconds
        ),
        (Some(1800), Some(3000))
    );
    let eu_resolution = row("eu-west", SlaMetric::Resolution);
    assert_eq!(
        (
            eu_resolution.count,
            eu_resolution.breached,
            eu_resolution.breached_percent
        ),
        (2, 1, 50.0)
    );
    assert_eq!(eu_resolution.resolution_p90_seconds, Some(hours(10)));
    let us_first = row("us-east", SlaMetric::FirstResponse);
    assert_eq!(
        (
            us_first.count,
            us_first.breached,
            us_first.first_response_median_seconds
        ),
        (1, 1, None)
    );
    assert_eq!(
        report.total.count,
        report.rows.iter().map(|r| r.count).sum::<u64>()
    );

    let table = report.to_table();
    assert!(
        table.lines().next().unwrap().starts_with("region   metric"),
        "{table}"
    );
    assert!(table.contains("eu-west  first_response"), "{table}");
    assert!(
        table.lines().last().unwrap().starts_with("total"),
        "{table}"
    );
    let csv = report.to_csv();
    assert!(
        csv.starts_with("region,metric,count,met,breached,met_percent"),
        "{csv}"
    );
    assert!(
        csv.contains("eu-west,resolution,2,1,1,50.00,50.00,,,7200,36000"),
        "{csv}"
    );
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["total"]["count"], report.total.count);

    // A period before everything counts nothing; an unknown region matches nothing.
    let empty = h
        .projector
        .compliance(
            &ComplianceQuery {
                to: Some(t("2025-01-01T00:00:00Z")),
                ..ComplianceQuery::default()
            },
            &NoRows,
        )
        .unwrap();
    assert_eq!(empty.total.count, 0);
    let none = h
        .projector
        .compliance(
            &ComplianceQuery {
                filter: SlaFilter {
                    region: Some("mars".into()),
                    ..SlaFilter::default()
                },
                ..ComplianceQuery::default()
            },
            &NoRows,
        )
        .unwrap();
    assert_eq!(none.total.count, 0);
}

// ---- properties ----

#[derive(Debug, Clone)]
enum Step {
    /// An upstream event for complaint `n`, `minutes` after the previous step (negative:
    /// a late event with an older time).
    Event {
        complaint: u8,
        kind: u8,
        minutes: i64,
    },
    Tick {
        minutes: i64,
    },
    /// Breach events written by ticks come back through the log (a random part of them).
    Deliver {
        count: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0u8..4, 0u8..12, -30i64..240).prop_map(|(complaint, kind, minutes)| Step::Event { complaint, kind, minutes }),
        3 => (0i64..600).prop_map(|minutes| Step::Tick { minutes }),
        2 => (0u8..4).prop_map(|count| Step::Deliver { count }),
    ]
}

fn upstream_body(kind: u8, now: Timestamp, complaint: u8) -> EventBody {
    let region = ["eu-west", "us-east", "apac"][complaint as usize % 3];
    let category = ["billing", "delivery"][complaint as usize % 2];
    match kind {
        0 => filed_body(region, category, complaint == 3),
        1 => ack(),
        2 | 3 => contacted(),
        4 => EventBody::CallbackPromised(CallbackPromised {
            by: "agent".into(),
            due_by: now
                .checked_add(jiff::SignedDuration::from_mins(90))
                .unwrap(),
        }),
        5 => awaiting(),
        6 => replied(),
        7 => resolved(),
        8 => reopened(),
        9 => EventBody::Closed(ComplaintClosed { by: None }),
        10 => EventBody::Withdrawn(ComplaintWithdrawn { reason: None }),
        _ => EventBody::Assigned(ComplaintAssigned {
            assignee: "x".into(),
            team: None,
        }),
    }
}

/// Runs a history live: events through the lifecycle check, ticks, and plaint's own
/// events written back into the log after a random delay. Returns the log, the effects
/// and the live projector.
fn run_live(steps: &[Step]) -> (Vec<Event>, Vec<Effect>, SlaProjector) {
    run_live_with(steps, None)
}

/// [`run_live`], optionally with the projector paged as the runner pages it: `rows` are
/// its committed rows; before an event the archived row it needs is paged in, after each
/// step the changes are committed and cold complaints evicted (before the next tick).
fn run_live_with(
    steps: &[Step],
    mut rows: Option<&mut BTreeMap<Vec<u8>, Vec<u8>>>,
) -> (Vec<Event>, Vec<Effect>, SlaProjector) {
    let mut projector = SlaProjector::new(config()).unwrap();
    let mut log: Vec<Event> = Vec::new();
    let mut ids: BTreeSet<Uuid> = BTreeSet::new();
    let mut statuses: BTreeMap<u8, lifecycle::StreamStatus> = BTreeMap::new();
    let mut pending: Vec<Event> = Vec::new();
    let mut all_effects = Vec::new();
    let mut clock = t("2025-03-07T12:00:00Z");
    let mut counter = 0u32;
    let mut append = |event: Event,
                      projector: &mut SlaProjector,
                      rows: Option<&BTreeMap<Vec<u8>, Vec<u8>>>,
                      log: &mut Vec<Event>,
                      pending: &mut Vec<Event>,
                      all: &mut Vec<Effect>| {
        if ids.insert(event.id) {
            log.push(event.clone());
            if let Some(rows) = rows {
                let mut keys = Vec::new();
                projector.rows_needed(&event, &mut keys);
                for key in keys {
                    projector
                        .page_in(&key, rows.get(&key).map(Vec::as_slice))
                        .unwrap();
                }
            }
            let effects = projector.apply(log.len() as u64, &event);
            for effect in &effects {
                if let Effect::AppendEvent { event, .. } = effect {
                    pending.push(event.clone());
                }
            }
            all.extend(effects);
        }
    };
    for step in steps {
        match *step {
            Step::Event {
                complaint,
                kind,
                minutes,
            } => {
                let time = clock
                    .checked_add(jiff::SignedDuration::from_mins(minutes))
                    .unwrap();
                if minutes > 0 {
                    clock = time;
                }
                let body = upstream_body(kind, clock, complaint);
                let Ok(next) =
                    lifecycle::check(statuses.get(&complaint).copied(), body.event_type())
                else {
                    continue;
                };
                statuses.insert(complaint, next);
                counter += 1;
                let mut event = event(&format!("c{complaint}"), time, body);
                event.id = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("{counter}").as_bytes());
                append(
                    event,
                    &mut projector,
                    rows.as_deref(),
                    &mut log,
                    &mut pending,
                    &mut all_effects,
                );
            }
            Step::Tick { minutes } => {
                clock = clock
                    .checked_add(jiff::SignedDuration::from_mins(minutes))
                    .unwrap();
                if let Some(rows) = rows.as_deref() {
                    // As the runner: the complaints whose timers fire come back first.
                    let mut keys = Vec::new();
                    projector.rows_due(clock, &mut keys);
                    for key in keys {
                        projector
                            .page_in(&key, rows.get(&key).map(Vec::as_slice))
                            .unwrap();
                    }
                }
                let effects = projector.tick(clock);
                for effect in &effects {
                    if let Effect::AppendEvent { event, .. } = effect {
                        pending.push(event.clone());
                    }
                }
                all_effects.extend(effects);
            }
            Step::Deliver { count } => {
                let take = (count as usize).min(pending.len());
                for event in pending.drain(..take).collect::<Vec<_>>() {
                    append(
                        event,
                        &mut projector,
                        rows.as_deref(),
                        &mut log,
                        &mut pending,
                        &mut all_effects,
                    );
                }
            }
        }
        if let Some(rows) = rows.as_deref_mut() {
            plaint_projection::apply_changes(rows, projector.take_changes());
            projector.evict();
        }
    }
    // At the end everything written has come back.
    while !pending.is_empty() {
        for event in std::mem::take(&mut pending) {
            append(
                event,
                &mut projector,
                rows.as_deref(),
                &mut log,
                &mut pending,
                &mut all_effects,
            );
        }
        if let Some(rows) = rows.as_deref_mut() {
            plaint_projection::apply_changes(rows, projector.take_changes());
            projector.evict();
        }
    }
    (log, all_effects, projector)
}

fn rebuild(log: &[Event]) -> SlaProjector {
    let mut projector = SlaProjector::new(config()).unwrap();
    for (i, event) in log.iter().enumerate() {
        for effect in projector.apply(i as u64 + 1, event) {
            // A rebuild may ask again for events of its own, but only ones the log holds.
            if let Effect::AppendEvent { event, .. } = effect {
                assert!(
                    log.iter().any(|e| e.id == event.id),
                    "rebuild wrote a new event {event:?}"
                );
            }
        }
    }
    projector
}

fn persisted_digest(
    projector: &mut SlaProjector,
    store: &mut BTreeMap<Vec<u8>, Vec<u8>>,
) -> String {
    for (key, value) in projector.take_changes() {
        match value {
            Some(value) => store.insert(key, value),
            None => store.remove(&key),
        };
    }
    digest_rows(store.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn effects_are_a_pure_function_of_events_and_ticks(steps in prop::collection::vec(step(), 1..80)) {
        let (log_a, effects_a, projector_a) = run_live(&steps);
        let (log_b, effects_b, projector_b) = run_live(&steps);
        prop_assert_eq!(log_a, log_b);
        prop_assert_eq!(effects_a, effects_b);
        prop_assert_eq!(projector_a.digest(), projector_b.digest());
    }

    #[test]
    fn a_rebuild_equals_the_live_view(steps in prop::collection::vec(step(), 1..80)) {
        let (log, _, mut live) = run_live(&steps);
        let mut store = BTreeMap::new();
        let live_digest = persisted_digest(&mut live, &mut store);
        prop_assert_eq!(&live_digest, &live.digest());
        let rebuilt = rebuild(&log);
        prop_assert_eq!(&rebuilt.digest(), &live_digest);
        // A rebuild discards effects, and told so builds none: the same rows.
        let mut quiet = SlaProjector::new(config()).unwrap();
        quiet.set_rebuilding(true);
        for (i, event) in log.iter().enumerate() {
            prop_assert_eq!(quiet.apply(i as u64 + 1, event), vec![]);
        }
        prop_assert_eq!(quiet.digest(), live_digest);
        // Rows written from the compact state are what the row types write.
        for (key, value) in &store {
            if key.starts_with(b"b/") {
                let row: crate::state::BreachRow = plaint_projection::decode_row(value).unwrap();
                prop_assert_eq!(&plaint_projection::encode_row(&row), value);
            } else {
                let row: crate::state::ComplaintRow = plaint_projection::decode_row(value).unwrap();
                prop_assert_eq!(&plaint_projection::encode_row(&row), value);
            }
        }
        // A restart from the persisted rows gives the same view and the same timers.
        let mut restored = SlaProjector::new(config()).unwrap();
        restored.restore(&mut store.clone().into_iter()).unwrap();
        prop_assert_eq!(restored.digest(), live.digest());
        prop_assert_eq!(restored.armed_timers(), live.armed_timers());
        let now = t("2025-03-20T00:00:00Z");
        // The breaches read from the rows are what the in-memory query answered.
        for filter in [
            SlaFilter::default(),
            SlaFilter { region: Some("us-east".into()), ..SlaFilter::default() },
            SlaFilter { metric: Some(SlaMetric::Callback), limit: Some(2), ..SlaFilter::default() },
            SlaFilter { policy: Some("vip".into()), category: Some("billing".into()), ..SlaFilter::default() },
            SlaFilter { limit: Some(1), ..SlaFilter::default() },
        ] {
            for now in [t("2025-03-07T13:00:00Z"), now] {
                let from_rows = restored.breaches(&filter, &store, now).unwrap();
                prop_assert_eq!(&from_rows, &live.breaches_in_memory(&filter, now));
                prop_assert_eq!(&from_rows, &live.breaches(&filter, &store, now).unwrap());
            }
        }
        let query = ComplianceQuery { group_by: vec![GroupBy::Policy, GroupBy::Metric], ..ComplianceQuery::default() };
        prop_assert_eq!(restored.compliance(&query, &NoRows).unwrap(), live.compliance(&query, &NoRows).unwrap());
    }

    #[test]
    fn next_due_is_the_least_due_of_the_report_s_running_unbreached_metrics(steps in prop::collection::vec(step(), 1..80)) {
        let (log, _, live) = run_live(&steps);
        let mut ids: BTreeSet<&str> = log.iter().map(|e| e.complaint_id.as_str()).collect();
        ids.insert("never-filed");
        for now in [t("2025-03-07T12:00:00Z"), t("2025-03-20T00:00:00Z")] {
            for id in &ids {
                let from_report = live.complaint(id, now).and_then(|report| {
                    report
                        .metrics
                        .iter()
                        .filter(|m| !m.breached && (m.state == "running" || m.state == "pending"))
                        .filter_map(|m| m.due_at)
                        .min()
                });
                prop_assert_eq!(live.next_due(id), from_report, "{}", id);
            }
        }
    }

    #[test]
    fn a_restart_midway_converges_to_the_same_rows(steps in prop::collection::vec(step(), 2..60), cut in 0usize..60) {
        // Live up to the cut, persist, restore into a new projector, apply the rest of the
        // log: the rows equal a rebuild's.
        let (log, _, _) = run_live(&steps);
        let cut = cut.min(log.len());
        let mut first = SlaProjector::new(config()).unwrap();
        for (i, event) in log[..cut].iter().enumerate() {
            first.apply(i as u64 + 1, event);
        }
        let mut store = BTreeMap::new();
        persisted_digest(&mut first, &mut store);
        let mut second = SlaProjector::new(config()).unwrap();
        second.restore(&mut store.clone().into_iter()).unwrap();
        for (i, event) in log[cut..].iter().enumerate() {
            second.apply((cut + i) as u64 + 1, event);
        }
        prop_assert_eq!(persisted_digest(&mut second, &mut store), rebuild(&log).digest());
    }
}

#[test]
fn the_generated_histories_reach_breaches_written_back_through_the_log() {
    // Guards the property tests against testing nothing: a plain history of the generator
    // produces breach events, and its rebuild equals the live view.
    let steps = [
        Step::Event {
            complaint: 0,
            kind: 0,
            minutes: 0,
        },
        Step::Event {
            complaint: 1,
            kind: 0,
            minutes: 5,
        },
        Step::Event {
            complaint: 1,
            kind: 4,
            minutes: 5,
        },
        Step::Tick { minutes: 50 },
        Step::Tick { minutes: 120 },
        Step::Deliver { count: 1 },
        Step::Event {
            complaint: 0,
            kind: 1,
            minutes: 30,
        },
        Step::Event {
            complaint: 0,
            kind: 7,
            minutes: 600,
        },
        Step::Event {
            complaint: 0,
            kind: 8,
            minutes: 60,
        },
        Step::Tick { minutes: 590 },
    ];
    let (log, effects, live) = run_live(&steps);
    let breaches = log
        .iter()
        .filter(|e| e.event_type() == EventType::SlaBreached)
        .count();
    assert!(breaches >= 3, "{log:#?}");
    assert!(published(&effects).iter().any(|s| s.contains(".at_risk.")));
    assert_eq!(rebuild(&log).digest(), live.digest());
}

mod paging;
