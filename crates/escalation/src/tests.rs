//! Given/when/then tests of the projector, the commands and the queries, driven through a
//! small in-memory log that feeds the projector's own events back like the runner does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use jiff::{SignedDuration, Timestamp};
use plaint_events::{
    AmountAtStake, Channel, ComplaintAssigned, ComplaintEscalated, ComplaintFiled,
    ComplaintReopened, ComplaintResolved, ComplaintWithdrawn, EscalationRaised, Event, EventBody,
    EventType, Severity, SlaBreached, SlaMetric,
};
use plaint_projection::{digest_rows, Effect, NoRows, Projection};
use uuid::Uuid;

use crate::query::NextDeadline;
use crate::{
    CommandError, EscalationConfig, EscalationProjector, HistoryEntry, PreparedCommand, QueuePage,
    QueueQuery,
};

/// Reads the rows under `keys` from `rows` and hands each to the projector, as the runner
/// does before `apply` (keys from `rows_needed`) and `tick` (from `rows_due`).
pub(crate) fn page_in(
    projector: &mut EscalationProjector,
    rows: &BTreeMap<Vec<u8>, Vec<u8>>,
    mut keys: Vec<Vec<u8>>,
) {
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let row = rows.get(&key);
        projector.page_in(&key, row.map(Vec::as_slice)).unwrap();
    }
}

/// A tick as the runner does it, every change taken being committed to `rows`: the rows
/// of the alerts due are paged in, then the tick, then what is cold leaves memory again.
pub(crate) fn tick_as_the_runner_does(
    projector: &mut EscalationProjector,
    rows: &BTreeMap<Vec<u8>, Vec<u8>>,
    now: Timestamp,
) -> Vec<Effect> {
    let mut keys = Vec::new();
    projector.rows_due(now, &mut keys);
    page_in(projector, rows, keys);
    let effects = projector.tick(now);
    projector.evict();
    effects
}

pub(crate) fn t(minutes: i64) -> Timestamp {
    let t0: Timestamp = "2025-03-03T09:00:00Z".parse().unwrap();
    t0.checked_add(SignedDuration::from_mins(minutes)).unwrap()
}

pub(crate) fn filed(
    customer: &str,
    region: &str,
    severity: Severity,
    amount: Option<&str>,
    vip: bool,
) -> EventBody {
    EventBody::Filed(ComplaintFiled {
        customer_id: customer.into(),
        region: region.into(),
        category: "billing".into(),
        channel: Channel::Email,
        severity,
        amount_at_stake: amount.map(|v| AmountAtStake {
            value: v.parse().unwrap(),
            currency: "EUR".into(),
        }),
        summary: None,
        tags: Vec::new(),
        vip,
    })
}

pub(crate) fn breached(metric: SlaMetric, due_at: Timestamp) -> EventBody {
    EventBody::SlaBreached(SlaBreached {
        metric,
        policy: "standard".into(),
        region: "eu".into(),
        due_at,
        target_seconds: 3600,
        met_at: None,
        late_by_seconds: None,
    })
}

fn resolved() -> EventBody {
    EventBody::Resolved(ComplaintResolved {
        by: "ana".into(),
        resolution: "refund".into(),
    })
}

fn reopened() -> EventBody {
    EventBody::Reopened(ComplaintReopened {
        reason: "still broken".into(),
    })
}

fn escalated(tier: u8) -> EventBody {
    EventBody::Escalated(ComplaintEscalated {
        tier,
        reason: "press enquiry".into(),
        by: "lead-1".into(),
    })
}

fn assigned(team: &str) -> EventBody {
    EventBody::Assigned(ComplaintAssigned {
        assignee: "bo".into(),
        team: Some(team.into()),
    })
}

/// An in-memory log around a projector. `post` appends an upstream event; the events the
/// projector writes wait in `outbox` until `deliver` appends them (so tests can hold them
/// back to model the time they take to come back through the stream). `commit` persists
/// the changed rows in `disk` and evicts, as the runner does after a batch; before each
/// event the rows it needs are paged in from `disk`, as the runner does.
pub(crate) struct Harness {
    pub projector: EscalationProjector,
    pub disk: BTreeMap<Vec<u8>, Vec<u8>>,
    pub log: Vec<Event>,
    ids: BTreeSet<Uuid>,
    pub outbox: VecDeque<Event>,
    pub published: Vec<(String, String, Vec<u8>)>,
    next_id: u128,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(EscalationConfig::default())
    }

    pub fn with_config(config: EscalationConfig) -> Harness {
        Harness {
            projector: EscalationProjector::new(config).unwrap(),
            disk: BTreeMap::new(),
            log: Vec::new(),
            ids: BTreeSet::new(),
            outbox: VecDeque::new(),
            published: Vec::new(),
            next_id: 1,
        }
    }

    fn effects(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::AppendEvent { subject, event } => {
                    let region = self.region_of(&event.complaint_id);
                    assert_eq!(
                        subject,
                        plaint_events::subjects::event("complaints", &region, event.event_type())
                    );
                    self.outbox.push_back(event);
                }
                Effect::Publish {
                    subject,
                    msg_id,
                    payload,
                } => self.published.push((subject, msg_id, payload)),
            }
        }
    }

    fn region_of(&self, complaint_id: &str) -> String {
        self.history(complaint_id)
            .map(|h| h.region)
            .unwrap_or_default()
    }

    /// A complaint's history, from memory or from the persisted rows.
    pub fn history(&self, complaint_id: &str) -> Option<crate::EscalationHistory> {
        self.projector.history(complaint_id, &self.disk).unwrap()
    }

    /// Appends an event to the log (a duplicate id is a no-op, as in the real log).
    pub fn append(&mut self, event: Event) {
        if !self.ids.insert(event.id) {
            return;
        }
        self.log.push(event.clone());
        let seq = self.log.len() as u64;
        let mut keys = Vec::new();
        self.projector.rows_needed(&event, &mut keys);
        page_in(&mut self.projector, &self.disk, keys);
        let effects = self.projector.apply(seq, &event);
        self.effects(effects);
    }

    /// Persists the changed rows, then lets what went cold leave memory.
    pub fn commit(&mut self) {
        plaint_projection::apply_changes(&mut self.disk, self.projector.take_changes());
        self.projector.evict();
    }

    /// A restart as the runner does it: the changes committed, then a new projector
    /// restored from the rows under its resident prefixes only. What was in memory only
    /// (raises on their way, alerts sent) is forgotten.
    /// Restores a new projector from the committed live rows and the tick cursor, as the
    /// runner does at a start.
    pub fn restart(&mut self) {
        self.commit();
        let cursor = self.projector.tick_cursor();
        let mut restarted = EscalationProjector::new(self.projector.config().clone()).unwrap();
        let mut rows = Vec::new();
        for prefix in restarted.resident_prefixes() {
            let under = self.disk.range(prefix.clone()..);
            rows.extend(
                under
                    .take_while(|(key, _)| key.starts_with(&prefix))
                    .map(|(key, value)| (key.clone(), value.clone())),
            );
        }
        restarted.restore(&mut rows.into_iter()).unwrap();
        if let Some(cursor) = cursor {
            restarted.restore_tick_cursor(cursor);
        }
        self.projector = restarted;
    }

    /// An upstream event, without delivering what the projector writes.
    pub fn post_held(&mut self, complaint: &str, minutes: i64, body: EventBody) -> Uuid {
        let id = Uuid::from_u128(self.next_id);
        self.next_id += 1;
        self.append(Event {
            id,
            source: "crm".into(),
            complaint_id: complaint.into(),
            time: t(minutes),
            body,
        });
        id
    }

    /// An upstream event, then everything the projector writes comes back.
    pub fn post(&mut self, complaint: &str, minutes: i64, body: EventBody) -> Uuid {
        let id = self.post_held(complaint, minutes, body);
        self.deliver();
        id
    }

    pub fn deliver(&mut self) {
        while let Some(event) = self.outbox.pop_front() {
            self.append(event);
        }
    }

    /// A tick as the runner does it (see [`tick_as_the_runner_does`]; every change taken
    /// by `commit` is in `disk`).
    pub fn tick(&mut self, now: Timestamp) {
        let effects = tick_as_the_runner_does(&mut self.projector, &self.disk, now);
        self.effects(effects);
    }

    pub fn command(&mut self, prepared: PreparedCommand) {
        self.append(prepared.event);
    }

    /// `prepare_claim` against the projector and its persisted rows, as the service asks.
    pub fn claim(
        &self,
        complaint: &str,
        by: &str,
        tier: Option<u8>,
        now: Timestamp,
    ) -> Result<PreparedCommand, CommandError> {
        self.projector
            .prepare_claim(complaint, by, tier, now, &self.disk)
    }

    pub fn release(
        &self,
        complaint: &str,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<PreparedCommand, CommandError> {
        self.projector
            .prepare_release(complaint, by, reason, now, &self.disk)
    }

    pub fn reassign(
        &self,
        complaint: &str,
        to: &str,
        now: Timestamp,
    ) -> Result<PreparedCommand, CommandError> {
        self.projector
            .prepare_reassign(complaint, to, now, &self.disk)
    }

    /// A queue page, rows paged out of memory read from `disk`.
    pub fn queue(
        &self,
        query: &QueueQuery,
        now: Timestamp,
        next_deadline: Option<NextDeadline<'_>>,
    ) -> Result<QueuePage, CommandError> {
        self.projector.queue(query, now, next_deadline, &self.disk)
    }

    pub fn own_events(&self, event_type: EventType) -> Vec<&Event> {
        self.log
            .iter()
            .filter(|e| e.event_type() == event_type)
            .collect()
    }

    pub fn raises(&self, complaint: &str) -> Vec<EscalationRaised> {
        self.log
            .iter()
            .filter(|e| e.complaint_id == complaint)
            .filter_map(|e| match &e.body {
                EventBody::EscalationRaised(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn tier(&self, complaint: &str) -> Option<u8> {
        self.history(complaint)?.current.map(|c| c.tier)
    }

    /// The log replayed as a rebuild does: effects discarded, so none are built.
    pub fn rebuilt(&self) -> EscalationProjector {
        let mut fresh = EscalationProjector::new(self.projector.config().clone()).unwrap();
        fresh.set_rebuilding(true);
        for (i, event) in self.log.iter().enumerate() {
            assert_eq!(fresh.apply(i as u64 + 1, event), vec![]);
        }
        fresh
    }
}

pub(crate) fn digest(projector: &EscalationProjector) -> String {
    let rows = projector.rows();
    digest_rows(rows.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
}

fn reasons(raised: &EscalationRaised) -> Vec<(&str, u8)> {
    raised
        .reasons
        .iter()
        .map(|r| (r.rule.as_str(), r.tier))
        .collect()
}

// ---- raising ----

#[test]
fn given_a_critical_complaint_when_filed_then_it_is_raised_to_tier_two_and_published() {
    let mut h = Harness::new();
    let filed_id = h.post_held(
        "c1",
        0,
        filed("cust-1", "eu", Severity::Critical, None, false),
    );
    assert_eq!(h.outbox.len(), 1);
    let raise = h.outbox[0].clone();
    assert_eq!(
        raise.id,
        plaint_events::own::event_id(&["c1", "raised", "2", &filed_id.to_string()])
    );
    assert_eq!(raise.source, "plaint/escalation");
    assert_eq!(raise.time, t(0));
    let (subject, msg_id, payload) = &h.published[0];
    assert_eq!(subject, "complaints.escalations.2.eu");
    assert_eq!(msg_id, &raise.id.to_string());
    assert_eq!(payload, &raise.to_wire());
    assert_eq!(
        h.tier("c1"),
        None,
        "the queue changes only when the raise comes back"
    );
    h.deliver();
    assert_eq!(h.tier("c1"), Some(2));
    assert_eq!(reasons(&h.raises("c1")[0]), [("severity", 2)]);
}

#[test]
fn given_a_quiet_complaint_when_filed_then_nothing_is_raised() {
    let mut h = Harness::new();
    h.post(
        "c1",
        0,
        filed("cust-1", "eu", Severity::High, Some("99"), false),
    );
    assert!(h.log.len() == 1 && h.published.is_empty());
    assert_eq!(h.tier("c1"), None);
}

#[test]
fn given_money_and_vip_when_filed_then_the_highest_tier_wins_with_every_reason() {
    let mut h = Harness::new();
    h.post(
        "c1",
        0,
        filed("cust-1", "eu", Severity::Critical, Some("5000"), true),
    );
    let raises = h.raises("c1");
    assert_eq!(raises.len(), 1);
    assert_eq!(raises[0].tier, 3);
    assert_eq!(
        reasons(&raises[0]),
        [("money", 3), ("severity", 2), ("vip", 2)]
    );
    assert_eq!(h.tier("c1"), Some(3));
}

#[test]
fn given_a_frontline_complaint_when_breached_twice_then_it_climbs_a_tier_each_time() {
    let mut h = Harness::new();
    h.post("c1", 0, filed("cust-1", "eu", Severity::Low, None, false));
    h.post("c1", 60, breached(SlaMetric::FirstResponse, t(60)));
    assert_eq!(h.tier("c1"), Some(2));
    h.post("c1", 600, breached(SlaMetric::Resolution, t(600)));
    assert_eq!(h.tier("c1"), Some(3));
    let raises = h.raises("c1");
    assert_eq!(
        raises
            .iter()
            .map(|r| (r.tier, r.previous_tier))
            .collect::<Vec<_>>(),
        [(2, None), (3, Some(2))]
    );
    assert!(raises[1].reasons[0]
        .detail
        .starts_with("2 SLA breaches, latest resolution"));
}

#[test]
fn given_a_tier_three_complaint_when_breached_then_it_goes_to_tier_four() {
    let mut h = Harness::new();
    h.post(
        "c1",
        0,
        filed("cust-1", "eu", Severity::Low, Some("2000"), false),
    );
    assert_eq!(h.tier("c1"), Some(3));
    h.post("c1", 60, breached(SlaMetric::FirstResponse, t(60)));
    assert_eq!(h.tier("c1"), Some(4));
}

#[test]
fn given_two_complaints_in_the_window_when_a_third_is_filed_then_only_the_third_is_raised() {
    let mut h = Harness::new();
    let day = 24 * 60;
    h.post("c1", 0, filed("cust-1", "eu", Severity::Low, None, false));
    h.post(
        "c2",
        10 * day,
        filed("cust-1", "eu", Severity::Low, None, false),
    );
    h.post(
        "other",
        11 * day,
        filed("cust-2", "eu", Severity::Low, None, false),
    );
    h.post(
        "c3",
        29 * day,
        filed("cust-1", "eu", Severity::Low, None, false),
    );
    assert_eq!(
        (h.tier("c1"), h.tier("c2"), h.tier("c3")),
        (None, None, Some(2))
    );
    assert_eq!(reasons(&h.raises("c3")[0]), [("repeat_complainant", 2)]);
    // By day 40 only c3 and c4 are within 30 days.
    h.post(
        "c4",
        40 * day,
        filed("cust-1", "eu", Severity::Low, None, false),
    );
    assert_eq!(h.tier("c4"), None);
}

#[test]
fn given_a_complaint_when_reopened_twice_then_the_second_reopen_raises_it() {
    let mut h = Harness::new();
    h.post("c1", 0, filed("cust-1", "eu", Severity::Low, None, false));
    h.post("c1", 10, resolved());
    h.post("c1", 20, reopened());
    assert_eq!(h.tier("c1"), None);
    h.post("c1", 30, resolved());
    h.post("c1", 40, reopened());
    assert_eq!(h.tier("c1"), Some(2));
    assert_eq!(reasons(&h.raises("c1")[0]), [("reopened", 2)]);
}

#[test]
fn given_a_queued_complaint_when_manually_escalated_then_it_moves_to_that_tier() {
    let mut h = Harness::new();
    h.post(
        "c1",
        0,
        filed("cust-1", "eu", Severity::Critical, None, false),
    );
    h.post("c1", 5, escalated(4));
    assert_eq!(h.tier("c1"), Some(4));
    let last = h.raises("c1").pop().unwrap();
    assert_eq!((last.tier, last.previous_tier), (4, Some(2)));
    assert_eq!(reasons(&last), [("severity", 2), ("manual", 4)]);
    // A manual escalation below the current tier moves nothing.
    h.post("c1", 6, escalated(3));
    assert_eq!(h.raises("c1").len(), 2);
}

#[test]
fn given_a_raise_on_its_way_when_more_rules_fire_at_the_same_tier_then_no_second_raise_is_written()
{
    let mut h = Harness::new();
    h.post_held(
        "c1",
        0,
        filed("cust-1", "eu", Severity::Critical, None, false),
    );
    h.post_held("c1", 1, escalated(2));
    h.post_held("c1", 2, breached(SlaMetric::FirstResponse, t(2)));
    let tiers: Vec<u8> = h
        .outbox
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::EscalationRaised(r) => Some(r.tier),
            _ => None,
        })
        .collect();
    assert_eq!(
        tiers,
        [2, 3],
        "the breach still climbs above the pending tier 2"
    );
    h.deliver();
    assert_eq!(h.tier("c1"), Some(3));
}

// ---- clearing ----

#[test]
fn given_a_queued_complaint_when_resolved_then_it_is_cleared_and_leaves_the_queue() {
    let mut h = Harness::new();
    h.post(
        "c1",
        0,
        filed("cust-1", "eu", Severity::Critical, None, false),
    );
    h.post("c1", 30, resolved());
    let cleared = h.own_events(EventType::EscalationCleared);
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].time, t(30));
    assert_eq!(h.tier("c1"), None);
    assert_eq!(h.projector.depths(), [0, 0, 0, 0]);
    let kinds: Vec<_> = h
        .projector
        .history("c1", &NoRows)
        .unwrap()
        .unwrap()
        .entries
        .iter()
        .map(kind)
        .collect();
    assert_eq!(kinds, ["raised", "cleared"]);
}

#[test]
fn given_a_raise_still_on_its_way_when_withdrawn_then_the_raise_is_cleared_when_it_arrives() {
    let mut h = Harness::new();
    h.post_held(
        "c1",
        0,
        filed("cust-1", "eu", Severity::Critical, None, false),
    );
    h.post_held(
        "c1",
        5,
        EventBody::Withdrawn(ComplaintWithdrawn { reason: None }),
    );
    h.deliver();
    assert_eq!(h.tier("c1"), None);
    let cleared = h.own_events(EventType::EscalationCleared);
    assert_eq!(cleared.len(), 1);
    assert!(matches!(&cleared[0].body, EventBody::EscalationCleared(c) if c.reason == "withdrawn"));
}

#[test]
fn given_a_cleared_complaint_when_reopened_before_the_clear_is_back_then_it_re_enters() {
    let mut h = Harness::new();
    h.post(
        "c1",
        0,
        filed("cust-1", "eu", Severity::Critical, None, true),
    );
    h.post_held("c1", 10, resolved());
    h.post_held("c1", 20, reopened());
    h.deliver();
    assert_eq!(h.tier("c1"), Some(2));
    let kinds: Vec<_> = h
        .projector
        .history("c1", &NoRows)
        .unwrap()
        .unwrap()
        .entries
        .iter()
        .map(kind)
        .collect();
    assert_eq!(kinds, ["raised", "cleared", "raised"]);
}

/// Regression (found by the settled-state property): a raise written before a withdraw
/// landed before the clear, was cleared with the item, and its pending marker held back
/// the raise after the reopen, leaving an open complaint out of every queue.
#[test]
fn given_a_raise_on_its_way_when_withdrawn_and_reopened_then_the_complaint_is_raised_again() {
    let mut h = Harness::new();
    h.post("c1", 0, filed("cust-1", "eu", Severity::Low, None, true));
    h.post_held("c1", 10, breached(SlaMetric::FirstResponse, t(10)));
    h.post_held(
        "c1",
        11,
        EventBody::Withdrawn(ComplaintWithdrawn { reason: None }),
    );
    h.post_held("c1", 12, reopened());
    h.deliver();
    assert_eq!(h.tier("c1"), Some(3));
}

fn kind(entry: &HistoryEntry) -> &'static str {
    match entry {
        HistoryEntry::Raised { .. } => "raised",
        HistoryEntry::Claimed { .. } => "claimed",
        HistoryEntry::Released { .. } => "released",
        HistoryEntry::Cleared { .. } => "cleared",
    }
}

// ---- operator commands ----

fn queued_harness() -> Harness {
    let mut h = Harness::new();
    h.post(
        "c1",
        0,
        filed("cust-1", "eu", Severity::Critical, None, false),
    );
    h.post(
        "quiet",
        0,
        filed("cust-2", "eu", Severity::Low, None, false),
    );
    h
}

#[test]
fn given_an_unclaimed_item_when_claimed_then_the_holder_is_recorded_and_a_retry_is_idempotent() {
    let mut h = queued_harness();
    let prepared = h.claim("c1", "ana", Some(2), t(10)).unwrap();
    assert!(!prepared.already_applied);
    assert_eq!(prepared.subject, "complaints.events.eu.escalation_claimed");
    assert_eq!(prepared.event.time, t(10));
    let again = h.claim("c1", "ana", None, t(11)).unwrap();
    assert_eq!(
        again.event.id, prepared.event.id,
        "same view state, same id"
    );
    h.command(prepared.clone());
    let retry = h.claim("c1", "ana", None, t(12)).unwrap();
    assert!(retry.already_applied);
    assert_eq!(
        retry.event, prepared.event,
        "the retry hands back the event that took effect"
    );
    assert_eq!(
        h.projector
            .history("c1", &NoRows)
            .unwrap()
            .unwrap()
            .current
            .unwrap()
            .claimed_by
            .as_deref(),
        Some("ana")
    );
}

#[test]
fn given_two_operators_claiming_at_once_when_both_land_in_the_log_then_the_first_wins() {
    let mut h = queued_harness();
    let ana = h.claim("c1", "ana", None, t(10)).unwrap();
    let bo = h.claim("c1", "bo", None, t(10)).unwrap();
    assert_ne!(ana.event.id, bo.event.id);
    h.command(ana);
    h.command(bo);
    let current = h
        .projector
        .history("c1", &NoRows)
        .unwrap()
        .unwrap()
        .current
        .unwrap();
    assert_eq!(current.claimed_by.as_deref(), Some("ana"));
    let error = h.claim("c1", "bo", None, t(11)).unwrap_err();
    assert_eq!(
        error,
        CommandError::AlreadyClaimed {
            complaint_id: "c1".into(),
            by: "ana".into()
        }
    );
    assert_eq!(
        error.to_string(),
        "complaint c1 is already claimed by ana; ask ana to release it, or reassign it"
    );
    assert_eq!(error.code(), "already_claimed");
}

#[test]
fn claims_of_what_is_not_queued_or_of_unknown_tiers_are_clear_errors() {
    let h = queued_harness();
    let claim = |id: &str, tier| h.claim(id, "ana", tier, t(1)).unwrap_err();
    assert_eq!(
        claim("quiet", None),
        CommandError::NotInQueue {
            complaint_id: "quiet".into()
        }
    );
    assert_eq!(
        claim("nope", None),
        CommandError::UnknownComplaint("nope".into())
    );
    assert_eq!(claim("c1", Some(7)), CommandError::UnknownTier(7));
    assert_eq!(claim("c1", Some(0)), CommandError::UnknownTier(0));
    assert_eq!(
        claim("c1", Some(3)),
        CommandError::WrongTier {
            complaint_id: "c1".into(),
            requested: 3,
            actual: 2
        }
    );
    assert!(matches!(
        h.claim("c1", "a b", None, t(1)),
        Err(CommandError::InvalidOperator(_))
    ));
    assert_eq!(
        CommandError::UnknownTier(7).to_string(),
        "tier 7 does not exist; tiers are 1 (frontline) to 4 (executive)"
    );
}

#[test]
fn given_a_claimed_item_when_released_then_only_the_holder_may_and_a_retry_is_idempotent() {
    let mut h = queued_harness();
    assert_eq!(
        h.release("c1", "ana", "busy", t(5)).unwrap_err(),
        CommandError::NotClaimed {
            complaint_id: "c1".into()
        }
    );
    let claim = h.claim("c1", "ana", None, t(10)).unwrap();
    h.command(claim);
    assert_eq!(
        h.release("c1", "bo", "busy", t(11)).unwrap_err(),
        CommandError::NotClaimedBy {
            complaint_id: "c1".into(),
            by: "bo".into(),
            holder: "ana".into()
        }
    );
    assert_eq!(
        h.release("c1", "ana", " ", t(11)).unwrap_err(),
        CommandError::InvalidReason
    );
    let release = h.release("c1", "ana", "needs legal", t(20)).unwrap();
    h.command(release.clone());
    let current = h
        .projector
        .history("c1", &NoRows)
        .unwrap()
        .unwrap()
        .current
        .unwrap();
    assert_eq!((current.claimed_by, current.unclaimed_since), (None, t(20)));
    let retry = h.release("c1", "ana", "needs legal", t(21)).unwrap();
    assert!(retry.already_applied);
    assert_eq!(retry.event, release.event);
    // Claimed again by the same operator after the release: a new claim, a new id.
    let reclaim = h.claim("c1", "ana", None, t(30)).unwrap();
    assert!(!reclaim.already_applied);
    assert_ne!(
        reclaim.event.id,
        h.own_events(EventType::EscalationClaimed)[0].id
    );
}

#[test]
fn given_a_claimed_item_when_reassigned_then_the_new_holder_has_it_and_the_old_one_is_recorded() {
    let mut h = queued_harness();
    assert_eq!(
        h.reassign("c1", "bo", t(5)).unwrap_err(),
        CommandError::NotClaimed {
            complaint_id: "c1".into()
        }
    );
    h.command(h.claim("c1", "ana", None, t(10)).unwrap());
    assert_eq!(
        h.reassign("c1", "ana", t(11)).unwrap_err(),
        CommandError::AlreadyClaimed {
            complaint_id: "c1".into(),
            by: "ana".into()
        }
    );
    let reassign = h.reassign("c1", "bo", t(12)).unwrap();
    h.command(reassign.clone());
    let entries = h.projector.history("c1", &NoRows).unwrap().unwrap().entries;
    assert!(
        matches!(entries.last(), Some(HistoryEntry::Claimed { by, reassigned_from: Some(from), .. }) if by == "bo" && from == "ana")
    );
    let retry = h.reassign("c1", "bo", t(13)).unwrap();
    assert!(retry.already_applied && retry.event == reassign.event);
}

#[test]
fn given_a_claimed_item_when_raised_to_a_higher_tier_then_the_claim_ends() {
    let mut h = queued_harness();
    h.command(h.claim("c1", "ana", None, t(10)).unwrap());
    h.post("c1", 20, escalated(3));
    let history = h.projector.history("c1", &NoRows).unwrap().unwrap();
    let current = history.current.unwrap();
    assert_eq!((current.tier, current.claimed_by), (3, None));
    assert!(
        matches!(history.entries.last(), Some(HistoryEntry::Raised { ended_claim_of: Some(by), .. }) if by == "ana")
    );
}

// ---- unclaimed alerts ----

#[test]
fn given_an_unclaimed_item_when_it_waits_past_the_alert_age_then_one_alert_is_published() {
    let mut h = queued_harness();
    let before = h.published.len();
    assert_eq!(h.projector.next_wakeup(), Some(t(240)));
    h.tick(t(239));
    assert_eq!(h.published.len(), before);
    h.tick(t(240));
    h.tick(t(300));
    let alerts: Vec<_> = h.published[before..].to_vec();
    assert_eq!(alerts.len(), 1, "once per item and waiting period");
    let (subject, msg_id, payload) = &alerts[0];
    assert_eq!(subject, "complaints.alerts.escalation.unclaimed.eu");
    let json: serde_json::Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(json["type"], "escalation.unclaimed");
    assert_eq!(json["complaint_id"], "c1");
    assert_eq!(json["tier"], 2);
    assert_eq!(json["waiting_seconds"], 14_400);
    // A claim then a release starts a new waiting period, which alerts again later.
    h.command(h.claim("c1", "ana", None, t(310)).unwrap());
    h.command(h.release("c1", "ana", "off shift", t(320)).unwrap());
    h.tick(t(500));
    assert_eq!(h.published.len(), before + 1);
    h.tick(t(560));
    assert_eq!(h.published.len(), before + 2);
    assert_ne!(&h.published[before + 1].1, msg_id);
    assert_eq!(h.projector.next_wakeup(), None);
}

#[test]
fn a_team_change_while_waiting_does_not_repeat_an_alert() {
    let mut h = queued_harness();
    h.tick(t(300));
    let sent = h.published.len();
    h.post("c1", 310, assigned("billing-l2"));
    h.tick(t(600));
    assert_eq!(h.published.len(), sent);
}

// ---- queries ----

#[test]
fn the_queue_is_ordered_by_severity_urgency_money_age_with_deadlines_from_the_caller() {
    let mut h = Harness::new();
    h.post("high-old", 0, filed("a", "eu", Severity::High, None, true));
    h.post(
        "crit-rich",
        5,
        filed("b", "eu", Severity::Critical, Some("900"), false),
    );
    h.post(
        "crit-poor",
        1,
        filed("c", "eu", Severity::Critical, None, false),
    );
    h.post(
        "crit-breached",
        9,
        filed("d", "eu", Severity::Critical, None, false),
    );
    h.post(
        "crit-breached",
        20,
        breached(SlaMetric::FirstResponse, t(20)),
    );
    h.post("crit-breached", 40, escalated(2));
    h.post(
        "crit-soon",
        8,
        filed("e", "eu", Severity::Critical, None, false),
    );
    // The breach raised crit-breached to tier 3; put a breached one in tier 2 as well.
    h.post(
        "high-breached",
        3,
        filed("f", "eu", Severity::High, None, true),
    );
    h.post(
        "high-breached",
        30,
        breached(SlaMetric::FirstResponse, t(25)),
    );
    let page = h.queue(&QueueQuery::tier(2), t(60), None).unwrap();
    let ids: Vec<_> = page.items.iter().map(|i| i.complaint_id.as_str()).collect();
    assert_eq!(ids, ["crit-rich", "crit-poor", "crit-soon", "high-old"]);
    let deadlines: BTreeMap<&str, Timestamp> = [("crit-soon", t(70)), ("crit-poor", t(90))].into();
    let deadline_of = |id: &str| deadlines.get(id).copied();
    let page = h
        .queue(&QueueQuery::tier(2), t(60), Some(&deadline_of))
        .unwrap();
    let ids: Vec<_> = page.items.iter().map(|i| i.complaint_id.as_str()).collect();
    assert_eq!(ids, ["crit-soon", "crit-poor", "crit-rich", "high-old"]);
    assert_eq!(page.items[0].next_deadline, Some(t(70)));
    assert_eq!(page.items[0].position, 1);
    let tier3 = h.queue(&QueueQuery::tier(3), t(60), None).unwrap();
    let ids: Vec<_> = tier3
        .items
        .iter()
        .map(|i| i.complaint_id.as_str())
        .collect();
    assert_eq!(ids, ["crit-breached", "high-breached"]);
}

#[test]
fn queue_filters_and_paging() {
    let mut h = Harness::new();
    for i in 0..5 {
        h.post(
            &format!("eu-{i}"),
            i,
            filed(&format!("e{i}"), "eu", Severity::Critical, None, false),
        );
        h.post(
            &format!("us-{i}"),
            i,
            filed(&format!("u{i}"), "us", Severity::Low, None, true),
        );
    }
    h.post("eu-3", 10, assigned("payments"));
    h.command(h.claim("eu-1", "ana", None, t(11)).unwrap());
    let query = |q: QueueQuery| {
        h.queue(&q, t(20), None)
            .unwrap()
            .items
            .into_iter()
            .map(|i| i.complaint_id)
            .collect::<Vec<_>>()
    };
    let us = QueueQuery {
        region: Some("us".into()),
        ..QueueQuery::tier(2)
    };
    assert_eq!(query(us), ["us-0", "us-1", "us-2", "us-3", "us-4"]);
    assert_eq!(
        query(QueueQuery {
            team: Some("payments".into()),
            ..QueueQuery::tier(2)
        }),
        ["eu-3"]
    );
    assert_eq!(
        query(QueueQuery {
            reason: Some("vip".into()),
            limit: 2,
            ..QueueQuery::tier(2)
        }),
        ["us-0", "us-1"]
    );
    assert_eq!(
        query(QueueQuery {
            claimed: Some(true),
            ..QueueQuery::tier(2)
        }),
        ["eu-1"]
    );
    assert_eq!(
        query(QueueQuery {
            claimed_by: Some("ana".into()),
            ..QueueQuery::tier(2)
        }),
        ["eu-1"]
    );
    let unclaimed_eu = QueueQuery {
        region: Some("eu".into()),
        claimed: Some(false),
        ..QueueQuery::tier(2)
    };
    assert_eq!(query(unclaimed_eu), ["eu-0", "eu-2", "eu-3", "eu-4"]);
    let page = h
        .queue(
            &QueueQuery {
                offset: 3,
                limit: 4,
                ..QueueQuery::tier(2)
            },
            t(20),
            None,
        )
        .unwrap();
    assert_eq!(
        page.items.iter().map(|i| i.position).collect::<Vec<_>>(),
        [4, 5, 6, 7]
    );
    assert!(page.has_more);
    assert_eq!(page.tier_depth, 10);
    let last = h
        .queue(
            &QueueQuery {
                offset: 8,
                limit: 4,
                ..QueueQuery::tier(2)
            },
            t(20),
            None,
        )
        .unwrap();
    assert_eq!((last.items.len(), last.has_more), (2, false));
    assert_eq!(
        h.queue(&QueueQuery::tier(5), t(20), None).unwrap_err(),
        CommandError::UnknownTier(5)
    );
    let bad_rule = QueueQuery {
        reason: Some("weather".into()),
        ..QueueQuery::tier(2)
    };
    assert_eq!(
        h.queue(&bad_rule, t(20), None).unwrap_err().code(),
        "unknown_rule"
    );
}

#[test]
fn stats_report_depth_oldest_and_median_time_to_claim() {
    let mut h = Harness::new();
    h.post("a", 0, filed("a", "eu", Severity::Critical, None, false));
    h.post("b", 10, filed("b", "eu", Severity::Critical, None, false));
    h.post("c", 20, filed("c", "us", Severity::Critical, None, false));
    h.post(
        "d",
        30,
        filed("d", "us", Severity::Low, Some("50000"), false),
    );
    h.command(h.claim("a", "ana", None, t(40)).unwrap());
    h.command(h.claim("b", "bo", None, t(20)).unwrap());
    h.command(h.claim("c", "cy", None, t(80)).unwrap());
    let stats = h.projector.stats(t(100));
    assert_eq!(stats.total_depth, 4);
    let tier2 = &stats.tiers[1];
    assert_eq!((tier2.depth, tier2.unclaimed), (3, 0));
    assert_eq!(tier2.oldest.as_ref().unwrap().complaint_id, "a");
    assert_eq!(tier2.oldest.as_ref().unwrap().waiting_seconds, 6000);
    // Waits: a 40 min, b 10 min, c 60 min → median 40 min.
    assert_eq!(tier2.median_time_to_claim_seconds, Some(2400));
    assert_eq!(tier2.claims_in_window, 3);
    let regions: Vec<_> = tier2
        .regions
        .iter()
        .map(|r| (r.region.as_str(), r.depth))
        .collect();
    assert_eq!(regions, [("eu", 2), ("us", 1)]);
    let tier4 = &stats.tiers[3];
    assert_eq!(
        (
            tier4.depth,
            tier4.unclaimed,
            tier4.median_time_to_claim_seconds
        ),
        (1, 1, None)
    );
    // Claims older than the window no longer count.
    assert_eq!(
        h.projector.stats(t(60 * 24 * 8)).tiers[1].claims_in_window,
        0
    );
}

// ---- rebuild and restore ----

fn busy_history(h: &mut Harness) {
    h.post(
        "c1",
        0,
        filed("cust-1", "eu", Severity::Critical, Some("2500"), false),
    );
    h.post("c2", 1, filed("cust-2", "us", Severity::Low, None, false));
    h.post("c3", 2, filed("cust-1", "eu", Severity::Low, None, true));
    h.post("c2", 3, assigned("support"));
    h.tick(t(5));
    h.post_held("c2", 60, breached(SlaMetric::FirstResponse, t(60)));
    h.post_held("c2", 61, escalated(2));
    h.deliver();
    h.command(h.claim("c1", "ana", None, t(70)).unwrap());
    h.tick(t(400));
    h.post("c3", 80, resolved());
    h.post("c3", 90, reopened());
    h.post("c1", 100, breached(SlaMetric::Resolution, t(100)));
    h.tick(t(800));
}

#[test]
fn given_a_live_history_with_ticks_when_rebuilt_from_the_log_then_the_rows_are_identical() {
    let mut h = Harness::new();
    busy_history(&mut h);
    assert!(h
        .published
        .iter()
        .any(|(s, _, _)| s.contains("alerts.escalation.unclaimed")));
    let rebuilt = h.rebuilt();
    assert_eq!(digest(&rebuilt), digest(&h.projector));
    assert_eq!(rebuilt.rows(), h.projector.rows());
}

#[test]
fn given_persisted_changes_when_restored_then_state_and_queries_match() {
    let mut h = Harness::new();
    let mut stored: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    busy_history(&mut h);
    for (key, value) in h.projector.take_changes() {
        match value {
            Some(value) => stored.insert(key, value),
            None => stored.remove(&key),
        };
    }
    assert_eq!(
        stored.clone().into_iter().collect::<Vec<_>>(),
        h.projector.rows()
    );
    let mut restored = EscalationProjector::new(EscalationConfig::default()).unwrap();
    restored.restore(&mut stored.into_iter()).unwrap();
    assert_eq!(digest(&restored), digest(&h.projector));
    for tier in 1..=4 {
        let query = QueueQuery::tier(tier);
        assert_eq!(
            restored.queue(&query, t(900), None, &NoRows).unwrap(),
            h.queue(&query, t(900), None).unwrap()
        );
    }
    assert_eq!(restored.stats(t(900)), h.projector.stats(t(900)));
}

/// A view written before rows were binary (JSON rows) restores to the same state.
#[test]
fn given_json_rows_of_an_older_version_when_restored_then_the_state_is_the_same() {
    use plaint_projection::decode_row;
    let mut h = Harness::new();
    busy_history(&mut h);
    let json_rows: Vec<plaint_projection::ViewRow> = h
        .projector
        .rows()
        .into_iter()
        .map(|(key, value)| {
            // Claim waits and the latest event time came with binary rows: they stay so.
            let json = if key.starts_with(b"complaint/") {
                serde_json::to_vec(&decode_row::<crate::state::ComplaintRow>(&value).unwrap())
            } else if key.starts_with(b"customer/") {
                serde_json::to_vec(&decode_row::<crate::state::CustomerFilings>(&value).unwrap())
            } else {
                Ok(value)
            };
            (key, json.unwrap())
        })
        .collect();
    let mut restored = EscalationProjector::new(EscalationConfig::default()).unwrap();
    restored.restore(&mut json_rows.into_iter()).unwrap();
    assert_eq!(restored.rows(), h.projector.rows());
}

#[test]
fn a_corrupt_row_is_reported_with_the_rebuild_hint() {
    let mut projector = EscalationProjector::new(EscalationConfig::default()).unwrap();
    let rows = vec![(b"complaint/c1".to_vec(), b"{not json".to_vec())];
    let error = projector.restore(&mut rows.into_iter()).unwrap_err();
    assert!(
        error.to_string().contains("plaint rebuild escalation"),
        "{error}"
    );
}

// ---- paging: cold complaints and customers leave memory and come back ----

/// The rows of the whole view, as a projector that kept everything in memory has them.
fn rows_kept_in_memory(h: &Harness) -> BTreeMap<Vec<u8>, Vec<u8>> {
    h.rebuilt().rows().into_iter().collect()
}

#[test]
fn given_a_closed_de_escalated_complaint_when_committed_then_it_leaves_memory_and_its_history_is_read_from_rows(
) {
    let mut h = Harness::new();
    h.post(
        "c1",
        0,
        filed("cust-1", "eu", Severity::Critical, None, false),
    );
    h.post("c2", 1, filed("cust-2", "eu", Severity::Low, None, false));
    h.command(h.claim("c1", "ana", None, t(20)).unwrap());
    h.commit();
    assert!(h.disk.contains_key(b"queue/c1".as_slice()));
    assert_eq!(
        h.projector.resident(),
        crate::Resident {
            complaints: 0,
            queued: 1,
            customers: 2,
            claim_waits: 1
        },
        "c1 stays as a queue entry only"
    );
    h.post("c1", 30, resolved());
    h.post(
        "c1",
        40,
        EventBody::Closed(plaint_events::ComplaintClosed { by: None }),
    );
    let history = h.history("c1").unwrap();
    let stats = h.projector.stats(t(60));
    assert_eq!(stats.tiers[1].claims_in_window, 1);
    h.commit();
    assert!(h.projector.complaints.get("c1").is_none(), "c1 left memory");
    assert_eq!(
        h.projector.resident().complaints,
        0,
        "the open c2 is in no queue, so it leaves too"
    );
    assert!(h.disk.contains_key(b"archived-complaint/c2".as_slice()));
    assert!(h.disk.contains_key(b"archived-complaint/c1".as_slice()));
    assert!(
        !h.disk.contains_key(b"queue/c1".as_slice()),
        "its queue row went with its queue entry"
    );
    assert_eq!(h.projector.resident().queued, 0);
    assert_eq!(h.projector.history("c1", &NoRows).unwrap(), None);
    assert_eq!(h.history("c1"), Some(history), "answered from the rows");
    assert_eq!(
        h.projector.stats(t(60)),
        stats,
        "its claim still counts in the statistics"
    );
    assert_eq!(h.disk, rows_kept_in_memory(&h));
}

/// Queued complaints in every state a page shows: claimed or not, breached or not, with
/// a team, in two regions and two tiers.
fn queued_mix(h: &mut Harness) {
    for i in 0..6 {
        let severity = [Severity::Critical, Severity::High][i % 2];
        let region = ["eu", "us"][i % 2];
        h.post(
            &format!("q{i}"),
            i as i64,
            filed(&format!("k{i}"), region, severity, Some("500"), i % 3 == 0),
        );
    }
    h.post("q1", 10, breached(SlaMetric::FirstResponse, t(9)));
    h.post("q2", 11, assigned("payments"));
    h.command(h.claim("q2", "ana", None, t(12)).unwrap());
    h.command(h.claim("q4", "bo", None, t(13)).unwrap());
    h.post("quiet", 14, filed("k9", "eu", Severity::Low, None, false));
}

/// Pages of every tier with filters and deadlines, as the service asks them.
fn pages(h: &Harness) -> Vec<crate::QueuePage> {
    let deadlines: BTreeMap<&str, Timestamp> = [("q0", t(90)), ("q3", t(70))].into();
    let deadline_of = |id: &str| deadlines.get(id).copied();
    let mut pages = Vec::new();
    for tier in 1..=4 {
        let queries = [
            QueueQuery::tier(tier),
            QueueQuery {
                claimed: Some(false),
                region: Some("eu".into()),
                ..QueueQuery::tier(tier)
            },
            QueueQuery {
                offset: 1,
                limit: 2,
                ..QueueQuery::tier(tier)
            },
        ];
        for query in &queries {
            pages.push(h.queue(query, t(60), None).unwrap());
            pages.push(h.queue(query, t(60), Some(&deadline_of)).unwrap());
        }
    }
    pages
}

#[test]
fn given_queued_complaints_when_committed_then_their_rows_leave_memory_and_the_pages_stay_the_same()
{
    let mut h = Harness::new();
    queued_mix(&mut h);
    let before = pages(&h);
    assert_eq!(h.projector.depths().iter().sum::<usize>(), 6);
    assert!(before.iter().any(|p| !p.items.is_empty()));
    h.commit();
    assert_eq!(
        h.projector.resident(),
        crate::Resident {
            complaints: 0,
            queued: 6,
            customers: 7,
            claim_waits: 2
        },
        "only the queue entries stay"
    );
    assert_eq!(h.projector.resident_items(), Some(15));
    for id in ["q0", "q1", "q2"] {
        assert!(h.disk.contains_key(format!("queue/{id}").as_bytes()));
        assert!(h
            .disk
            .contains_key(format!("archived-complaint/{id}").as_bytes()));
        assert!(!h.disk.contains_key(format!("complaint/{id}").as_bytes()));
    }
    assert!(!h.disk.contains_key(b"queue/quiet".as_slice()));
    assert_eq!(
        pages(&h),
        before,
        "answered from the queue entries and the rows"
    );
    let blind = h
        .projector
        .queue(&QueueQuery::tier(2), t(60), None, &NoRows)
        .unwrap();
    assert_eq!(
        (blind.tier_depth, blind.items.len()),
        (5, 0),
        "in memory: the entries, not the rows"
    );
    assert_eq!(h.disk, rows_kept_in_memory(&h));
}

#[test]
fn given_a_paged_out_queued_complaint_when_claimed_reassigned_and_released_then_commands_read_its_row(
) {
    let mut kept = queued_harness();
    let mut paged = queued_harness();
    paged.commit();
    assert_eq!(paged.projector.resident().complaints, 0);
    assert_eq!(
        paged
            .projector
            .prepare_claim("c1", "ana", None, t(10), &NoRows),
        Err(CommandError::UnknownComplaint("c1".into())),
        "the row is not in memory"
    );
    assert_eq!(
        paged.claim("quiet", "ana", None, t(10)),
        Err(CommandError::NotInQueue {
            complaint_id: "quiet".into()
        }),
        "a paged-out complaint in no queue is read from the rows too"
    );
    type Step = fn(&Harness) -> Result<PreparedCommand, CommandError>;
    let steps: [(Step, bool); 6] = [
        (|h| h.claim("c1", "ana", Some(2), t(10)), false),
        (|h| h.claim("c1", "ana", None, t(11)), true),
        (|h| h.reassign("c1", "bo", t(12)), false),
        (|h| h.reassign("c1", "bo", t(13)), true),
        (|h| h.release("c1", "bo", "needs legal", t(14)), false),
        (|h| h.release("c1", "bo", "needs legal", t(15)), true),
    ];
    for (step, retry) in steps {
        let prepared = step(&paged).unwrap();
        assert_eq!(prepared, step(&kept).unwrap());
        assert_eq!(prepared.already_applied, retry);
        if !retry {
            paged.command(prepared.clone());
            kept.command(prepared);
        }
        paged.commit();
        assert_eq!(paged.projector.resident().complaints, 0, "out again");
    }
    assert_eq!(
        paged.claim("c1", "cy", Some(3), t(20)),
        Err(CommandError::WrongTier {
            complaint_id: "c1".into(),
            requested: 3,
            actual: 2
        })
    );
    assert_eq!(paged.log, kept.log);
    kept.commit();
    assert_eq!(paged.disk, kept.disk);
}

#[test]
fn given_an_unclaimed_item_paged_out_when_its_alert_is_due_then_the_tick_pages_it_in_alerts_as_before_and_lets_it_go(
) {
    let mut kept = queued_harness();
    let mut paged = queued_harness();
    paged.commit();
    assert_eq!(paged.projector.resident().complaints, 0);
    let due = |h: &Harness, now| {
        let mut keys = Vec::new();
        h.projector.rows_due(now, &mut keys);
        keys
    };
    assert!(due(&paged, t(239)).is_empty());
    assert_eq!(due(&paged, t(300)), [b"archived-complaint/c1".to_vec()]);
    let sent = (kept.published.len(), paged.published.len());
    kept.tick(t(300));
    paged.tick(t(300));
    assert_eq!(paged.published[sent.1..], kept.published[sent.0..]);
    assert_eq!(paged.published.len(), sent.1 + 1);
    let (_, _, payload) = &paged.published[sent.1];
    let json: serde_json::Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(
        json["reasons"][0]["rule"], "severity",
        "the reasons came from the row"
    );
    assert_eq!(
        paged.projector.resident().complaints,
        0,
        "the row left again after the tick"
    );
    assert_eq!(paged.projector.next_wakeup(), None);
    assert!(due(&paged, t(600)).is_empty(), "alerted once");
}

#[test]
fn a_tick_alerts_a_bounded_number_and_the_rest_at_the_next_tick() {
    let mut h = Harness::new();
    let items = crate::projector::ALERTS_PER_TICK + 2;
    for i in 0..items {
        h.post(
            &format!("c{i}"),
            i as i64,
            filed(&format!("k{i}"), "eu", Severity::Critical, None, false),
        );
    }
    h.commit();
    let mut keys = Vec::new();
    h.projector.rows_due(t(600), &mut keys);
    assert_eq!(keys.len(), crate::projector::ALERTS_PER_TICK);
    let before = h.published.len();
    h.tick(t(600));
    assert_eq!(
        h.published.len(),
        before + crate::projector::ALERTS_PER_TICK
    );
    assert_eq!(
        h.projector.next_wakeup(),
        Some(t(240 + crate::projector::ALERTS_PER_TICK as i64)),
        "the rest are due still"
    );
    h.tick(t(600));
    assert_eq!(h.published.len(), before + items);
    assert_eq!(h.projector.next_wakeup(), None);
    assert_eq!(h.projector.resident().complaints, 0);
}

#[test]
fn given_a_restart_from_the_live_rows_when_the_queues_are_asked_then_they_answer_as_before() {
    let mut h = Harness::new();
    queued_mix(&mut h);
    let tick_all = |h: &mut Harness, now| {
        while h.projector.next_wakeup().is_some_and(|at| at <= now) {
            h.tick(now);
        }
    };
    tick_all(&mut h, t(300));
    let before = pages(&h);
    let stats = h.projector.stats(t(60));
    let alerted: Vec<_> = h.published.clone();
    let resident = h.projector.resident();
    h.restart();
    assert!(
        h.projector
            .resident_prefixes()
            .iter()
            .all(|p| !b"archived-complaint/".starts_with(p)),
        "a restart reads no archived complaint row"
    );
    assert_eq!(
        h.projector.resident(),
        crate::Resident {
            complaints: 0,
            ..resident
        },
        "the queue entries came back from their rows, the complaints stay on disk"
    );
    assert_eq!(pages(&h), before);
    assert_eq!(h.projector.stats(t(60)), stats);
    // The tick cursor came back too: what was alerted is not alerted again.
    assert!(alerted.iter().any(|(s, _, _)| s.contains(".alerts.")));
    tick_all(&mut h, t(300));
    assert_eq!(h.published.len(), alerted.len(), "no alert repeated");
    // Without it (a view of before tick cursors), each item still waiting is alerted again, with
    // the same msg id.
    let mut forgetful = Harness::new();
    queued_mix(&mut forgetful);
    tick_all(&mut forgetful, t(300));
    let first: BTreeSet<_> = forgetful
        .published
        .iter()
        .filter(|(s, _, _)| s.contains(".alerts."))
        .map(|(_, id, _)| id.clone())
        .collect();
    let sent = forgetful.published.len();
    forgetful.commit();
    let cursor = forgetful.projector.tick_cursor();
    assert!(cursor.is_some());
    forgetful.projector = {
        let mut rows = Vec::new();
        let mut restored = EscalationProjector::new(forgetful.projector.config().clone()).unwrap();
        for prefix in restored.resident_prefixes() {
            rows.extend(
                forgetful
                    .disk
                    .range(prefix.clone()..)
                    .take_while(|(key, _)| key.starts_with(&prefix))
                    .map(|(key, value)| (key.clone(), value.clone())),
            );
        }
        restored.restore(&mut rows.into_iter()).unwrap();
        restored
    };
    tick_all(&mut forgetful, t(300));
    let again: BTreeSet<_> = forgetful.published[sent..]
        .iter()
        .map(|(_, id, _)| id.clone())
        .collect();
    assert_eq!(again, first);
    assert_eq!(h.projector.resident().complaints, 0);
    // An event about a restored queued complaint pages its row in and moves its entry.
    h.command(h.claim("q0", "cy", None, t(310)).unwrap());
    let claimed = QueueQuery {
        claimed_by: Some("cy".into()),
        ..QueueQuery::tier(2)
    };
    let ids: Vec<_> = h
        .queue(&claimed, t(320), None)
        .unwrap()
        .items
        .into_iter()
        .map(|i| i.complaint_id)
        .collect();
    assert_eq!(ids, ["q0"]);
    h.commit();
    assert_eq!(h.disk, rows_kept_in_memory(&h));
    // Released after the restart: a new wait, alerted in its turn although the restored
    // cursor is past the waits alerted before.
    h.command(h.release("q0", "cy", "handover", t(330)).unwrap());
    let sent = h.published.len();
    tick_all(&mut h, t(330 + 4 * 60));
    let alerts: Vec<_> = h.published[sent..]
        .iter()
        .filter(|(s, _, _)| s.contains(".alerts."))
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(String::from_utf8_lossy(&alerts[0].2).contains("\"complaint_id\":\"q0\""));
}

#[test]
fn given_a_paged_out_complaint_when_breached_or_reopened_then_rules_decide_as_if_it_had_stayed() {
    fn script(h: &mut Harness, paging: bool) {
        let commit = |h: &mut Harness| {
            if paging {
                h.commit();
            }
        };
        h.post("c1", 0, filed("cust-1", "eu", Severity::Low, None, false));
        h.post("c1", 10, resolved());
        h.post("c1", 20, reopened());
        h.post("c1", 30, resolved());
        h.post("c2", 31, filed("cust-2", "eu", Severity::Low, None, false));
        h.post(
            "c2",
            32,
            EventBody::Withdrawn(ComplaintWithdrawn { reason: None }),
        );
        commit(h);
        if paging {
            assert_eq!(h.projector.resident().complaints, 0, "both are paged out");
        }
        // A breach of a resolved complaint raises nothing, and it leaves memory again.
        h.post("c1", 40, breached(SlaMetric::Resolution, t(35)));
        commit(h);
        if paging {
            assert_eq!(h.projector.resident().complaints, 0);
        }
        // The second reopen counts the first one, which the archived row remembers.
        h.post("c1", 50, reopened());
        commit(h);
        h.post("c2", 60, reopened());
        commit(h);
        h.post("c2", 70, breached(SlaMetric::FirstResponse, t(70)));
        commit(h);
    }
    let mut kept = Harness::new();
    script(&mut kept, false);
    let mut paged = Harness::new();
    script(&mut paged, true);
    assert_eq!(paged.log, kept.log, "the same raises, nothing more");
    assert_eq!(paged.published, kept.published);
    assert_eq!(reasons(&paged.raises("c1")[0]), [("reopened", 2)]);
    assert_eq!(reasons(&paged.raises("c2")[0]), [("sla_breach", 2)]);
    assert_eq!((paged.tier("c1"), paged.tier("c2")), (Some(2), Some(2)));
    kept.commit();
    assert_eq!(paged.disk, kept.disk);
}

#[test]
fn given_a_repeat_complainant_whose_earlier_complaints_were_paged_out_when_filing_again_then_it_is_a_repeat(
) {
    let day = 24 * 60;
    let mut h = Harness::new();
    for (complaint, at) in [("c1", 0), ("c2", 10 * day)] {
        h.post(
            complaint,
            at,
            filed("cust-1", "eu", Severity::Low, None, false),
        );
        h.post(complaint, at + 60, resolved());
    }
    h.commit();
    assert_eq!(
        h.projector.resident(),
        crate::Resident {
            complaints: 0,
            queued: 0,
            customers: 1,
            claim_waits: 0
        },
        "the complaints left; the customer's filings are inside the window"
    );
    h.post(
        "c3",
        20 * day,
        filed("cust-1", "eu", Severity::Low, None, false),
    );
    assert_eq!(reasons(&h.raises("c3")[0]), [("repeat_complainant", 2)]);
    h.post("c3", 20 * day + 60, resolved());
    // Forty days on, cust-1's filings (days 0, 10, 20) are all out of the window.
    h.post(
        "other",
        60 * day,
        filed("cust-2", "eu", Severity::Low, None, false),
    );
    h.commit();
    assert!(h.disk.contains_key(b"archived-customer/cust-1".as_slice()));
    assert!(!h.disk.contains_key(b"customer/cust-1".as_slice()));
    assert_eq!(h.projector.resident().customers, 1, "only cust-2 stays");
    // A filing that arrives late, dated day 25: its window (day -5, day 25] holds the
    // filings of days 10 and 20, which come back with the customer's row.
    h.post(
        "c4",
        25 * day,
        filed("cust-1", "eu", Severity::Low, None, false),
    );
    assert_eq!(h.tier("c4"), Some(2));
    assert_eq!(reasons(&h.raises("c4")[0]), [("repeat_complainant", 2)]);
    h.commit();
    assert_eq!(h.disk, rows_kept_in_memory(&h));
}

// ---- property: random histories with delays, ticks and restarts ----

mod properties {
    use std::cmp::Reverse;

    use plaint_events::lifecycle::{self, StreamStatus};
    use plaint_events::{ComplaintClosed, Money};
    use proptest::prelude::*;

    use super::*;
    use crate::priority::{compare_with_deadlines, money_rank, PriorityKey, Urgency};
    use crate::state::ComplaintStatus;

    #[derive(Debug, Clone)]
    enum Op {
        File {
            complaint: u8,
            customer: u8,
            severity: u8,
            amount: Option<u32>,
            vip: bool,
        },
        Breach(u8),
        Escalate(u8, u8),
        Assign(u8, u8),
        Resolve(u8),
        Close(u8),
        Withdraw(u8),
        Reopen(u8),
        Claim(u8, u8),
        Release(u8, u8),
        Reassign(u8, u8),
        DeliverOne,
        DeliverAll,
        Tick,
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        let c = 0u8..6;
        prop_oneof![
            3 => (c.clone(), 0u8..3, 0u8..4, proptest::option::of(0u32..20_000), any::<bool>()).prop_map(
                |(complaint, customer, severity, amount, vip)| Op::File { complaint, customer, severity, amount, vip }
            ),
            2 => c.clone().prop_map(Op::Breach),
            1 => (c.clone(), 0u8..6).prop_map(|(c, t)| Op::Escalate(c, t)),
            1 => (c.clone(), 0u8..2).prop_map(|(c, t)| Op::Assign(c, t)),
            1 => c.clone().prop_map(Op::Resolve),
            1 => c.clone().prop_map(Op::Close),
            1 => c.clone().prop_map(Op::Withdraw),
            1 => c.clone().prop_map(Op::Reopen),
            2 => (c.clone(), 0u8..3).prop_map(|(c, o)| Op::Claim(c, o)),
            1 => (c.clone(), 0u8..3).prop_map(|(c, o)| Op::Release(c, o)),
            1 => (c.clone(), 0u8..3).prop_map(|(c, o)| Op::Reassign(c, o)),
            2 => Just(Op::DeliverOne),
            2 => Just(Op::DeliverAll),
            1 => Just(Op::Tick),
            1 => Just(Op::Restart),
        ]
    }

    fn severity(code: u8) -> Severity {
        [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ][usize::from(code % 4)]
    }

    /// A deterministic stand-in for the SLA projector's next deadline.
    fn deadline_of(id: &str) -> Option<Timestamp> {
        let n = id.bytes().map(u64::from).sum::<u64>();
        (n % 3 != 0).then(|| t((n % 97) as i64))
    }

    /// Every complaint's row, resident or paged out (restarts page them out).
    fn every_complaint(h: &Harness) -> BTreeMap<String, crate::state::ComplaintRow> {
        let mut rows: BTreeMap<String, crate::state::ComplaintRow> = h
            .disk
            .iter()
            .filter_map(|(key, value)| {
                let key = std::str::from_utf8(key).ok()?;
                let id = key
                    .strip_prefix(crate::projector::COMPLAINTS.live)
                    .or_else(|| key.strip_prefix(crate::projector::COMPLAINTS.archive))?;
                Some((
                    id.to_owned(),
                    plaint_projection::decode_row(value).expect("a complaint row"),
                ))
            })
            .collect();
        for (id, row) in h.projector.complaints.iter() {
            rows.insert(id.to_string(), row.clone());
        }
        rows
    }

    fn run(ops: &[Op]) -> Harness {
        run_with(EscalationConfig::default(), ops, &[])
    }

    /// `lateness[step]` dates the filing of that step so many 5-minute units in the past.
    fn run_with(config: EscalationConfig, ops: &[Op], lateness: &[u8]) -> Harness {
        let mut h = Harness::with_config(config.clone());
        let mut status: BTreeMap<String, StreamStatus> = BTreeMap::new();
        for (step, op) in ops.iter().enumerate() {
            let minutes = step as i64 * 7;
            let filed_minutes = minutes - 5 * i64::from(lateness.get(step).copied().unwrap_or(0));
            let now = t(minutes);
            let name = |c: &u8| format!("c{c}");
            let operator = |o: &u8| format!("op{o}");
            let mut upstream = |h: &mut Harness, complaint: String, body: EventBody| {
                let current = status.get(&complaint).copied();
                if let Ok(next) = lifecycle::check(current, body.event_type()) {
                    status.insert(complaint.clone(), next);
                    h.post_held(&complaint, minutes, body);
                }
            };
            match op {
                Op::File {
                    complaint,
                    customer,
                    severity: s,
                    amount,
                    vip,
                } => {
                    let amount = amount.map(|a| Money::from_units(i64::from(a)).to_string());
                    let complaint = name(complaint);
                    let current = status.get(&complaint).copied();
                    if lifecycle::check(current, EventType::Filed).is_err() {
                        continue;
                    }
                    status.insert(complaint.clone(), StreamStatus::Open);
                    h.post_held(
                        &complaint,
                        filed_minutes,
                        filed(
                            &format!("k{customer}"),
                            "eu",
                            severity(*s),
                            amount.as_deref(),
                            *vip,
                        ),
                    );
                }
                Op::Breach(c) => upstream(&mut h, name(c), breached(SlaMetric::FirstResponse, now)),
                Op::Escalate(c, tier) => upstream(&mut h, name(c), escalated(*tier)),
                Op::Assign(c, team) => upstream(&mut h, name(c), assigned(&format!("team{team}"))),
                Op::Resolve(c) => upstream(&mut h, name(c), resolved()),
                Op::Close(c) => upstream(
                    &mut h,
                    name(c),
                    EventBody::Closed(ComplaintClosed { by: None }),
                ),
                Op::Withdraw(c) => upstream(
                    &mut h,
                    name(c),
                    EventBody::Withdrawn(ComplaintWithdrawn { reason: None }),
                ),
                Op::Reopen(c) => upstream(&mut h, name(c), reopened()),
                Op::Claim(c, o) => {
                    if let Ok(p) = h.claim(&name(c), &operator(o), None, now) {
                        h.command(p);
                    }
                }
                Op::Release(c, o) => {
                    if let Ok(p) = h.release(&name(c), &operator(o), "handover", now) {
                        h.command(p);
                    }
                }
                Op::Reassign(c, o) => {
                    if let Ok(p) = h.reassign(&name(c), &operator(o), now) {
                        h.command(p);
                    }
                }
                Op::DeliverOne => {
                    if let Some(event) = h.outbox.pop_front() {
                        h.append(event);
                    }
                }
                Op::DeliverAll => h.deliver(),
                Op::Tick => h.tick(now),
                Op::Restart => h.restart(),
            }
        }
        h.deliver();
        h
    }

    /// Windows short enough for the steps of a generated history (7 minutes apart) to
    /// move customers and claim waits out of them.
    fn paging_config() -> EscalationConfig {
        let mut config = EscalationConfig::default();
        config.repeat_complainant.window = SignedDuration::from_mins(60);
        config.repeat_complainant.count = 2;
        config.time_to_claim_window = SignedDuration::from_mins(30);
        config
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Paging out, paging in and restarting (which restores the live rows only) leave
        /// the rows as keeping everything in memory does; without restarts (which forget
        /// raises on their way) the effects too. Queries, commands and unclaimed alerts
        /// answer the same, though the paged projector reads the rows of queued complaints
        /// back from its rows.
        #[test]
        fn paged_rows_and_effects_do_not_depend_on_what_stayed_in_memory(
            ops in proptest::collection::vec(op(), 1..80),
            lateness in proptest::collection::vec(0u8..30, 80),
            batch in 1usize..6,
            restart_every in 0usize..4,
        ) {
            use plaint_projection::paging::{PagedRun, PagingSchedule};
            let config = paging_config();
            let log = run_with(config.clone(), &ops, &lateness).log;
            let fresh = || EscalationProjector::new(config.clone()).unwrap();
            let mut kept = PagedRun::new(fresh());
            kept.run(&log, PagingSchedule { batch, restart_every: 0, evict: false }, fresh).unwrap();
            let mut paged = PagedRun::new(fresh());
            paged.run(&log, PagingSchedule { batch, restart_every, evict: true }, fresh).unwrap();
            prop_assert_eq!(&paged.rows, &kept.rows);
            prop_assert_eq!(
                kept.rows.clone().into_iter().collect::<Vec<_>>(),
                kept.projector.rows(),
                "the rows are the whole view"
            );
            if restart_every == 0 {
                prop_assert_eq!(&paged.effects, &kept.effects);
            }
            let latest = log.iter().map(|e| e.time).max().unwrap_or(t(0));
            for now in [latest, latest.checked_sub(SignedDuration::from_mins(20)).unwrap()] {
                prop_assert_eq!(paged.projector.stats(now), kept.projector.stats(now));
            }
            prop_assert_eq!(paged.projector.depths(), kept.projector.depths());
            prop_assert_eq!(paged.projector.resident().queued, kept.projector.resident().queued);
            let pages_agree = |paged: &PagedRun<EscalationProjector>, kept: &PagedRun<EscalationProjector>| {
                for tier in 1..=4 {
                    let queries = [
                        QueueQuery::tier(tier),
                        QueueQuery { claimed: Some(false), limit: 2, ..QueueQuery::tier(tier) },
                        QueueQuery { claimed: Some(true), offset: 1, ..QueueQuery::tier(tier) },
                        QueueQuery { team: Some("team1".into()), ..QueueQuery::tier(tier) },
                        QueueQuery { region: Some("eu".into()), reason: Some("sla_breach".into()), ..QueueQuery::tier(tier) },
                    ];
                    for query in &queries {
                        for deadlines in [None, Some(&deadline_of as NextDeadline<'_>)] {
                            let ours = paged.projector.queue(query, latest, deadlines, &paged.rows).unwrap();
                            let theirs = kept.projector.queue(query, latest, deadlines, &kept.rows).unwrap();
                            if ours != theirs {
                                return Err(format!("{query:?}: {ours:?} != {theirs:?}"));
                            }
                        }
                    }
                }
                Ok(())
            };
            prop_assert_eq!(pages_agree(&paged, &kept), Ok(()));
            for c in 0..6 {
                let id = format!("c{c}");
                prop_assert_eq!(
                    paged.projector.history(&id, &paged.rows).unwrap(),
                    kept.projector.history(&id, &kept.rows).unwrap()
                );
                for o in 0..3 {
                    let by = format!("op{o}");
                    let (p, k) = (&paged.projector, &kept.projector);
                    prop_assert_eq!(
                        p.prepare_claim(&id, &by, None, latest, &paged.rows),
                        k.prepare_claim(&id, &by, None, latest, &kept.rows)
                    );
                    prop_assert_eq!(
                        p.prepare_release(&id, &by, "handover", latest, &paged.rows),
                        k.prepare_release(&id, &by, "handover", latest, &kept.rows)
                    );
                    prop_assert_eq!(
                        p.prepare_reassign(&id, &by, latest, &paged.rows),
                        k.prepare_reassign(&id, &by, latest, &kept.rows)
                    );
                }
            }
            // Unclaimed alerts: the paged projector gets the rows of those due through
            // `rows_due`, and lets them go after the tick. Neither has ticked before, so
            // both alert every item waiting (a restart forgets only alerts sent).
            for now in [latest, latest.checked_add(SignedDuration::from_hours(5)).unwrap()] {
                // A tick sends a bounded number; the runner ticks again while some are due.
                while paged.projector.next_wakeup().is_some_and(|at| at <= now) {
                    let ours = tick_as_the_runner_does(&mut paged.projector, &paged.rows, now);
                    prop_assert!(!ours.is_empty());
                    prop_assert_eq!(&ours, &kept.projector.tick(now));
                }
                prop_assert_eq!(kept.projector.next_wakeup(), paged.projector.next_wakeup());
            }
            prop_assert_eq!(paged.projector.next_wakeup(), None);
            prop_assert_eq!(pages_agree(&paged, &kept), Ok(()));
        }

        #[test]
        fn rebuild_equals_live_whatever_the_delays_ticks_and_restarts(ops in proptest::collection::vec(op(), 1..80)) {
            let mut h = run(&ops);
            // Restarts paged complaints out: the whole live view is in the rows.
            h.commit();
            let live = digest_rows(h.disk.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
            prop_assert_eq!(digest(&h.rebuilt()), live);
        }

        #[test]
        fn once_settled_open_complaints_stand_at_their_target_and_others_are_out(ops in proptest::collection::vec(op(), 1..80)) {
            let h = run(&ops);
            let config = h.projector.config().clone();
            let mut queued = 0;
            for (id, row) in &every_complaint(&h) {
                let target = crate::rules::target_tier(&crate::rules::evaluate(&config, &row.rule_facts()));
                match row.status {
                    ComplaintStatus::Open => prop_assert_eq!(row.queue_tier(), target, "{}", id),
                    _ => prop_assert_eq!(row.queue_tier(), None, "{}", id),
                }
                queued += usize::from(row.queue.is_some());
            }
            prop_assert_eq!(h.projector.depths().iter().sum::<usize>(), queued);
        }

        #[test]
        fn a_page_equals_the_documented_order_of_all_matching_items(
            ops in proptest::collection::vec(op(), 1..80),
            offset in 0usize..4,
            limit in 1usize..5,
            claimed in proptest::option::of(any::<bool>()),
        ) {
            let h = run(&ops);
            let config = h.projector.config();
            for tier in 1..=4u8 {
                let mut expected: Vec<(PriorityKey, Option<Timestamp>)> = every_complaint(&h)
                    .iter()
                    .filter_map(|(id, row)| {
                        let item = row.queue.as_ref().filter(|q| q.tier == tier)?;
                        if claimed.is_some_and(|c| c != item.claim.is_some()) {
                            return None;
                        }
                        let key = PriorityKey {
                            severity: Reverse(row.severity),
                            urgency: row.breached_since.map_or(Urgency::NotBreached, |since| Urgency::Breached { since }),
                            money_rank: Reverse(money_rank(config, row.amount_at_stake.as_ref())),
                            filed_at: row.filed_at,
                            complaint_id: id.as_str().into(),
                        };
                        Some((key, deadline_of(id)))
                    })
                    .collect();
                expected.sort_by(|a, b| compare_with_deadlines(&a.0, a.1, &b.0, b.1));
                let expected: Vec<String> =
                    expected.into_iter().skip(offset).take(limit).map(|(k, _)| k.complaint_id.to_string()).collect();
                let query = QueueQuery { tier, claimed, offset, limit, ..QueueQuery::default() };
                let page = h.queue(&query, t(0), Some(&deadline_of)).unwrap();
                let got: Vec<String> = page.items.into_iter().map(|i| i.complaint_id).collect();
                prop_assert_eq!(got, expected, "tier {}", tier);
            }
        }
    }
}
