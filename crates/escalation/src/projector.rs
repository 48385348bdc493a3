//! The escalation projector: applies the log, raises and clears, keeps the queue index.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use jiff::Timestamp;
use plaint_events::{
    own, subjects, ComplaintFiled, EscalationClaimed, EscalationCleared, EscalationRaised,
    EscalationReleased, Event, EventBody, EventType, SlaBreached,
};
use plaint_projection::{Effect, Projection, ProjectionError, ViewChange, ViewRow};
use serde::Serialize;
use uuid::Uuid;

use crate::config::{ConfigError, EscalationConfig, MAX_TIER};
use crate::priority::{money_rank, PriorityKey, Urgency};
use crate::rules::{self, ManualEscalation, SlaBreachFact};
use crate::state::{
    ClaimRecord, ComplaintRow, ComplaintStatus, CustomerFilings, HistoryEntry, QueueItem,
    ReleaseRecord,
};
use crate::store::{IdHasher, RowStore};

pub(crate) const COMPLAINT_ROWS: &str = "complaint/";
pub(crate) const CUSTOMER_ROWS: &str = "customer/";

/// `<prefix>.alerts.escalation.unclaimed.<region>`: an item waited unclaimed longer than
/// `unclaimed_alert_after`. Kept apart from `<prefix>.escalations.<tier>.<region>` so that
/// consumers of the escalation subjects see only raises.
pub fn unclaimed_alert_subject(prefix: &str, region: &str) -> String {
    format!("{prefix}.alerts.escalation.unclaimed.{region}")
}

/// The payload published on [`unclaimed_alert_subject`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnclaimedAlert<'a> {
    #[serde(rename = "type")]
    pub alert_type: &'static str,
    pub complaint_id: &'a str,
    pub tier: u8,
    pub region: &'a str,
    pub unclaimed_since: Timestamp,
    pub waiting_seconds: i64,
    pub alert_after_seconds: i64,
    pub reasons: &'a [plaint_events::EscalationReason],
    pub at: Timestamp,
}

/// What the queue index keeps per item, so that filters need not read the row. Names
/// are [`Names`] numbers, so that a filter compares integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemSummary {
    pub slot: u32,
    pub region: u32,
    pub team: Option<u32>,
    pub claimed_by: Option<u32>,
    pub reasons_mask: u8,
    pub entered_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexEntry {
    tier: u8,
    key: PriorityKey,
    summary: ItemSummary,
    /// `Some(unclaimed_since)` while the item waits unclaimed.
    unclaimed_since: Option<Timestamp>,
}

/// Regions, teams and operators seen, numbered in order of appearance (in memory only;
/// the numbers never reach a row or an answer).
#[derive(Debug, Default)]
pub(crate) struct Names {
    numbers: HashMap<String, u32, BuildHasherDefault<IdHasher>>,
    names: Vec<String>,
}

impl Names {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(number) = self.numbers.get(name) {
            return *number;
        }
        let number = u32::try_from(self.names.len()).expect("fewer than 2^32 names");
        self.names.push(name.to_owned());
        self.numbers.insert(name.to_owned(), number);
        number
    }

    /// The number of a name; a name never seen gets one that no item carries.
    pub(crate) fn find(&self, name: &str) -> u32 {
        self.numbers.get(name).copied().unwrap_or(u32::MAX)
    }

    pub(crate) fn name(&self, number: u32) -> &str {
        &self.names[number as usize]
    }
}

/// What the projector keeps in memory beside a complaint's row, by slot.
#[derive(Debug, Clone, Default)]
struct Companion {
    /// The complaint's region as a [`Names`] number (it never changes after filing).
    region: u32,
    /// The entry the complaint has in the queue index (and `awaiting_alert`), if any.
    indexed: Option<IndexEntry>,
    /// The tier of a raise written but not yet seen back in the log, so that events
    /// arriving in between do not write a second raise to the same tier.
    pending_raise: Option<u8>,
}

/// The subjects of one region's own events and escalations, formatted once: a filing
/// that raises writes two of them, and formatting them was a visible part of its cost.
#[derive(Debug)]
struct RegionSubjects {
    raised: String,
    cleared: String,
    /// `<prefix>.escalations.<tier>.<region>` of tiers 1 to 4.
    escalations: [String; MAX_TIER as usize],
}

impl RegionSubjects {
    fn new(prefix: &str, region: &str) -> RegionSubjects {
        RegionSubjects {
            raised: subjects::event(prefix, region, EventType::EscalationRaised),
            cleared: subjects::event(prefix, region, EventType::EscalationCleared),
            escalations: std::array::from_fn(|i| subjects::escalation(prefix, i as u8 + 1, region)),
        }
    }

    fn escalation(&self, prefix: &str, tier: u8, region: &str) -> String {
        match tier
            .checked_sub(1)
            .and_then(|i| self.escalations.get(usize::from(i)))
        {
            Some(subject) => subject.clone(),
            None => subjects::escalation(prefix, tier, region),
        }
    }
}

/// The escalation projector. See the crate documentation for the rules and the order.
pub struct EscalationProjector {
    pub(crate) config: EscalationConfig,
    pub(crate) subject_prefix: String,
    pub(crate) complaints: RowStore<ComplaintRow>,
    customers: RowStore<CustomerFilings>,
    /// In memory only, by complaint slot: see [`Companion`].
    companions: Vec<Companion>,
    pub(crate) names: Names,
    /// By region number; see [`RegionSubjects`].
    region_subjects: Vec<Option<RegionSubjects>>,
    /// `own::source("escalation")`, made once.
    source: String,
    /// Derived from the rows (rebuilt by `restore`): one ordered index per tier.
    pub(crate) queues: [BTreeMap<PriorityKey, ItemSummary>; MAX_TIER as usize],
    /// In memory only: unclaimed items this process has not alerted on yet, by the time
    /// they became unclaimed. After a restart every unclaimed item is alerted once more
    /// (with the same msg id, so within the stream's duplicate window it is absorbed).
    awaiting_alert: BTreeSet<(Timestamp, Arc<str>)>,
    /// Effects are discarded (see `Projection::set_rebuilding`): raises and clears are
    /// decided (the pending raise is state) but their events are not built.
    rebuilding: bool,
}

impl std::fmt::Debug for EscalationProjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EscalationProjector")
            .field("complaints", &self.complaints.len())
            .field(
                "queued",
                &self.queues.iter().map(|q| q.len()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl EscalationProjector {
    /// A projector with the default subject prefix `complaints`.
    pub fn new(config: EscalationConfig) -> Result<EscalationProjector, ConfigError> {
        config.validate()?;
        Ok(EscalationProjector {
            config,
            subject_prefix: "complaints".into(),
            complaints: RowStore::default(),
            customers: RowStore::default(),
            companions: Vec::new(),
            names: Names::default(),
            region_subjects: Vec::new(),
            source: own::source("escalation"),
            queues: Default::default(),
            awaiting_alert: BTreeSet::new(),
            rebuilding: false,
        })
    }

    /// Uses `prefix` (plaint's `subject_prefix`) for every subject it emits.
    pub fn with_subject_prefix(mut self, prefix: impl Into<String>) -> EscalationProjector {
        self.subject_prefix = prefix.into();
        self.region_subjects.clear();
        self
    }

    pub fn config(&self) -> &EscalationConfig {
        &self.config
    }

    /// Items in the queue of each tier (index 0 = tier 1).
    pub fn depths(&self) -> [usize; MAX_TIER as usize] {
        std::array::from_fn(|i| self.queues[i].len())
    }

    /// An item whose clear is on its way is already out of the queue index: it is
    /// resolved, closed or withdrawn, and nobody should claim it or be alerted about it.
    fn index_entry(&mut self, slot: u32) -> Option<IndexEntry> {
        let row = self.complaints.row(slot);
        let item = row.queue.as_ref().filter(|q| !q.clear_requested)?;
        let key = PriorityKey {
            severity: Reverse(row.severity),
            urgency: match row.breached_since {
                Some(since) => Urgency::Breached { since },
                None => Urgency::NotBreached,
            },
            money_rank: Reverse(money_rank(&self.config, row.amount_at_stake.as_ref())),
            filed_at: row.filed_at,
            complaint_id: Arc::clone(self.complaints.id(slot)),
        };
        let reasons_mask = item
            .reasons
            .iter()
            .filter_map(|r| rules::rule_bit(&r.rule))
            .fold(0, |a, b| a | b);
        let names = &mut self.names;
        let region = self.companions[slot as usize].region;
        Some(IndexEntry {
            tier: item.tier,
            key,
            summary: ItemSummary {
                slot,
                region,
                team: row.team.as_deref().map(|team| names.intern(team)),
                claimed_by: item.claim.as_ref().map(|c| names.intern(&c.by)),
                reasons_mask,
                entered_at: item.entered_at,
            },
            unclaimed_since: item.claim.is_none().then_some(item.unclaimed_since),
        })
    }

    /// Brings the queue index and the alert schedule in step with the row of `slot`.
    fn reindex(&mut self, slot: u32) {
        let after = self.index_entry(slot);
        let companion = &mut self.companions[slot as usize];
        if companion.indexed == after {
            return;
        }
        let before = std::mem::replace(&mut companion.indexed, after.clone());
        let alert_before = before
            .as_ref()
            .and_then(|e| e.unclaimed_since.map(|t| (e.tier, t)));
        let alert_after = after
            .as_ref()
            .and_then(|e| e.unclaimed_since.map(|t| (e.tier, t)));
        if let Some(entry) = before {
            self.queues[usize::from(entry.tier - 1)].remove(&entry.key);
        }
        if let Some(entry) = after {
            self.queues[usize::from(entry.tier - 1)].insert(entry.key, entry.summary);
        }
        // Only a new waiting period (or a new tier) earns a new alert; a change of team or
        // of breach state while waiting must not repeat one already sent.
        if alert_before != alert_after {
            let complaint_id = self.complaints.id(slot);
            if let Some((_, since)) = alert_before {
                self.awaiting_alert
                    .remove(&(since, Arc::clone(complaint_id)));
            }
            if let Some((_, since)) = alert_after {
                self.awaiting_alert
                    .insert((since, Arc::clone(complaint_id)));
            }
        }
    }

    /// Mutates a complaint's row (marking it changed) and keeps the queue index in step.
    fn update<R>(&mut self, slot: u32, change: impl FnOnce(&mut ComplaintRow) -> R) -> R {
        let result = change(self.complaints.row_mut(slot));
        self.reindex(slot);
        result
    }

    /// The subjects of the region of `slot`.
    fn region_subjects(&mut self, slot: u32) -> &RegionSubjects {
        let region = self.companions[slot as usize].region as usize;
        if self.region_subjects.len() <= region {
            self.region_subjects.resize_with(region + 1, || None);
        }
        let (prefix, names) = (&self.subject_prefix, &self.names);
        self.region_subjects[region]
            .get_or_insert_with(|| RegionSubjects::new(prefix, names.name(region as u32)))
    }

    fn own_event(&self, trigger: &Event, id_parts: &[&str], body: EventBody) -> Event {
        Event {
            id: own::event_id(id_parts),
            source: self.source.clone(),
            complaint_id: trigger.complaint_id.clone(),
            time: trigger.time,
            body,
        }
    }

    /// Evaluates the rules of an open complaint and writes a raise when they ask for a
    /// tier above where it stands (or is about to stand).
    fn raise_if_needed(&mut self, slot: u32, trigger: &Event) -> Vec<Effect> {
        let complaint_id = &trigger.complaint_id;
        let row = self.complaints.row(slot);
        if row.status != ComplaintStatus::Open {
            return Vec::new();
        }
        let Some(target) = rules::target(&self.config, &row.rule_facts()) else {
            return Vec::new();
        };
        let standing = row
            .queue
            .as_ref()
            .filter(|q| !q.clear_requested)
            .map(|q| q.tier);
        let pending = self.companions[slot as usize].pending_raise;
        if Some(target) <= standing.max(pending) {
            return Vec::new();
        }
        if self.rebuilding {
            self.companions[slot as usize].pending_raise = Some(target);
            return Vec::new();
        }
        let reasons = rules::evaluate(&self.config, &row.rule_facts());
        let region = row.region.clone();
        let mut trigger_id = Uuid::encode_buffer();
        let trigger_id = trigger.id.hyphenated().encode_lower(&mut trigger_id);
        let event = self.own_event(
            trigger,
            &[complaint_id, "raised", &target.to_string(), trigger_id],
            EventBody::EscalationRaised(EscalationRaised {
                tier: target,
                previous_tier: standing,
                region,
                reasons,
            }),
        );
        self.companions[slot as usize].pending_raise = Some(target);
        let prefix = self.subject_prefix.clone();
        let subjects = self.region_subjects(slot);
        let region = match &event.body {
            EventBody::EscalationRaised(raised) => raised.region.as_str(),
            _ => unreachable!("built above"),
        };
        let publish = Effect::Publish {
            subject: subjects.escalation(&prefix, target, region),
            msg_id: event.id.to_string(),
            payload: event.to_wire(),
        };
        let subject = subjects.raised.clone();
        vec![Effect::AppendEvent { subject, event }, publish]
    }

    fn clear(&mut self, slot: u32, trigger: &Event, reason: ComplaintStatus) -> Vec<Effect> {
        if self.rebuilding {
            return Vec::new();
        }
        let complaint_id = &trigger.complaint_id;
        let mut trigger_id = Uuid::encode_buffer();
        let trigger_id = trigger.id.hyphenated().encode_lower(&mut trigger_id);
        let event = self.own_event(
            trigger,
            &[complaint_id, "cleared", trigger_id],
            EventBody::EscalationCleared(EscalationCleared {
                reason: reason.as_str().to_owned(),
            }),
        );
        let subject = self.region_subjects(slot).cleared.clone();
        vec![Effect::AppendEvent { subject, event }]
    }

    fn on_filed(&mut self, event: &Event, filed: &ComplaintFiled) -> Vec<Effect> {
        if self.complaints.slot(&event.complaint_id).is_some() {
            return Vec::new();
        }
        let window = self.config.repeat_complainant.window;
        let customer = self
            .customers
            .upsert(&filed.customer_id, CustomerFilings::default);
        let filings = self.customers.row_mut(customer);
        let position = filings.filed_at.partition_point(|t| *t <= event.time);
        filings.filed_at.insert(position, event.time);
        let repeat_count = rules::filings_in_window(&filings.filed_at, event.time, window);
        // Keep only what a future filing can still count; filings that arrive late with
        // older times than this may see fewer predecessors than they had.
        let newest = *filings.filed_at.last().expect("not empty");
        let keep_after = newest.checked_sub(window).unwrap_or(Timestamp::MIN);
        let stale = filings.filed_at.partition_point(|t| *t <= keep_after);
        filings.filed_at.drain(..stale);
        let (slot, _) = self.complaints.insert(
            &event.complaint_id,
            ComplaintRow {
                region: filed.region.clone(),
                customer_id: filed.customer_id.clone(),
                severity: filed.severity,
                amount_at_stake: filed.amount_at_stake.clone(),
                vip: filed.vip,
                team: None,
                filed_at: event.time,
                status: ComplaintStatus::Open,
                repeat_count,
                reopen_count: 0,
                sla_breach: None,
                breached_since: None,
                manual: None,
                raise_count: 0,
                queue: None,
                history: Vec::new(),
            },
        );
        let region = self.names.intern(&filed.region);
        self.companions.push(Companion {
            region,
            ..Companion::default()
        });
        self.raise_if_needed(slot, event)
    }

    fn on_breached(&mut self, slot: u32, event: &Event, breach: &SlaBreached) -> Vec<Effect> {
        let config = &self.config;
        let row = self.complaints.row(slot);
        if row.status != ComplaintStatus::Open {
            return Vec::new();
        }
        // "Where it stands" is read from the rows only (queue tier, rule targets), never
        // from the in-memory pending raise, so that a rebuild fixes the same tier.
        let rule_target = rules::target(config, &row.rule_facts());
        let standing = row.queue_tier().max(rule_target).unwrap_or(1);
        let breach_tier = rules::sla_breach_tier(config, standing);
        self.update(slot, |row| {
            row.breached_since = Some(
                row.breached_since
                    .map_or(breach.due_at, |t| t.min(breach.due_at)),
            );
            if let Some(tier) = breach_tier {
                let fact = row.sla_breach.get_or_insert(SlaBreachFact {
                    count: 0,
                    tier,
                    latest_metric: breach.metric,
                    latest_due_at: breach.due_at,
                });
                fact.count += 1;
                fact.tier = fact.tier.max(tier);
                fact.latest_metric = breach.metric;
                fact.latest_due_at = breach.due_at;
            }
        });
        self.raise_if_needed(slot, event)
    }

    fn on_terminal(&mut self, slot: u32, event: &Event, status: ComplaintStatus) -> Vec<Effect> {
        let needs_clear = self.update(slot, |row| {
            row.status = status;
            match row.queue.as_mut() {
                Some(item) if !item.clear_requested => {
                    item.clear_requested = true;
                    true
                }
                _ => false,
            }
        });
        // A raise still on its way is cleared when it comes back (see on_raised). A raise
        // written before this clear lands before it and is cleared with the item, so it
        // must not hold back a raise after a reopen.
        if needs_clear {
            self.companions[slot as usize].pending_raise = None;
            self.clear(slot, event, status)
        } else {
            Vec::new()
        }
    }

    fn on_raised(
        &mut self,
        slot: u32,
        seq: u64,
        event: &Event,
        raised: &EscalationRaised,
    ) -> Vec<Effect> {
        let pending_raise = &mut self.companions[slot as usize].pending_raise;
        if pending_raise.is_some_and(|tier| tier <= raised.tier) {
            *pending_raise = None;
        }
        let row = self.complaints.row(slot);
        // A raise not above the current tier can only be written twice when a restart lost
        // the pending marker; it changes nothing.
        if row.queue_tier() >= Some(raised.tier) || !(1..=MAX_TIER).contains(&raised.tier) {
            return Vec::new();
        }
        let needs_clear = row.status != ComplaintStatus::Open;
        let status = row.status;
        let already_clearing = self.update(slot, |row| {
            row.raise_count += 1;
            let previous = row.queue.take();
            let already_clearing = previous.as_ref().is_some_and(|q| q.clear_requested);
            row.history.push(HistoryEntry::Raised {
                seq,
                at: event.time,
                event_id: event.id,
                tier: raised.tier,
                previous_tier: previous.as_ref().map(|q| q.tier),
                reasons: raised.reasons.clone(),
                ended_claim_of: previous.and_then(|q| q.claim).map(|c| c.by),
            });
            row.queue = Some(QueueItem {
                tier: raised.tier,
                entered_at: event.time,
                raised_event_id: event.id,
                reasons: raised.reasons.clone(),
                claim: None,
                unclaimed_since: event.time,
                last_release: None,
                operator_events: 0,
                clear_requested: already_clearing || needs_clear,
            });
            already_clearing
        });
        // A raise that arrives after the complaint was resolved, closed or withdrawn is
        // cleared at once, unless a clear is already on its way.
        if needs_clear && !already_clearing {
            return self.clear(slot, event, status);
        }
        Vec::new()
    }

    fn on_claimed(&mut self, slot: u32, seq: u64, event: &Event, claimed: &EscalationClaimed) {
        self.update(slot, |row| {
            let Some(item) = row.queue.as_mut() else {
                return;
            };
            // The log is the arbiter: the first claim in log order wins, and a reassign
            // takes effect only from the holder it was prepared against.
            let holder = item.claim.as_ref().map(|c| c.by.as_str());
            let takes_effect = item.tier == claimed.tier
                && holder != Some(claimed.by.as_str())
                && holder == claimed.reassigned_from.as_deref();
            if !takes_effect {
                return;
            }
            item.claim = Some(ClaimRecord {
                by: claimed.by.clone(),
                at: event.time,
                event_id: event.id,
                reassigned_from: claimed.reassigned_from.clone(),
            });
            item.operator_events += 1;
            row.history.push(HistoryEntry::Claimed {
                seq,
                at: event.time,
                event_id: event.id,
                by: claimed.by.clone(),
                tier: claimed.tier,
                reassigned_from: claimed.reassigned_from.clone(),
            });
        });
    }

    fn on_released(&mut self, slot: u32, seq: u64, event: &Event, released: &EscalationReleased) {
        self.update(slot, |row| {
            let Some(item) = row.queue.as_mut() else {
                return;
            };
            if item.claim.as_ref().map(|c| c.by.as_str()) != Some(released.by.as_str()) {
                return;
            }
            item.claim = None;
            item.unclaimed_since = event.time;
            item.last_release = Some(ReleaseRecord {
                by: released.by.clone(),
                reason: released.reason.clone(),
                at: event.time,
                event_id: event.id,
            });
            item.operator_events += 1;
            row.history.push(HistoryEntry::Released {
                seq,
                at: event.time,
                event_id: event.id,
                by: released.by.clone(),
                reason: released.reason.clone(),
            });
        });
    }

    fn on_cleared(&mut self, slot: u32, seq: u64, event: &Event, cleared: &EscalationCleared) {
        self.update(slot, |row| {
            if row.queue.take().is_some() {
                row.history.push(HistoryEntry::Cleared {
                    seq,
                    at: event.time,
                    event_id: event.id,
                    reason: cleared.reason.clone(),
                });
            }
        });
    }

    fn rebuild_indexes(&mut self) {
        self.queues = Default::default();
        self.awaiting_alert.clear();
        let names = &mut self.names;
        self.companions = self
            .complaints
            .values()
            .map(|row| Companion {
                region: names.intern(&row.region),
                ..Companion::default()
            })
            .collect();
        for slot in 0..self.complaints.len() {
            self.reindex(slot as u32);
        }
    }

    /// All persisted rows in key order, as the runner would hold them (for digests and
    /// rebuild comparisons in tests and tools).
    pub fn rows(&self) -> Vec<ViewRow> {
        let mut rows: Vec<ViewRow> = self
            .complaints
            .persisted(COMPLAINT_ROWS)
            .chain(self.customers.persisted(CUSTOMER_ROWS))
            .collect();
        rows.sort();
        rows
    }
}

impl Projection for EscalationProjector {
    fn name(&self) -> &'static str {
        "escalation"
    }

    fn apply(&mut self, seq: u64, event: &Event) -> Vec<Effect> {
        if let EventBody::Filed(filed) = &event.body {
            return self.on_filed(event, filed);
        }
        // Every other event is about a complaint filed before, or changes nothing.
        let Some(slot) = self.complaints.slot(&event.complaint_id) else {
            return Vec::new();
        };
        match &event.body {
            EventBody::Filed(_) => Vec::new(),
            EventBody::Assigned(assigned) => {
                self.update(slot, |row| {
                    if assigned.team.is_some() {
                        row.team = assigned.team.clone();
                    }
                });
                Vec::new()
            }
            EventBody::Escalated(escalated) => {
                let escalation = ManualEscalation {
                    tier: escalated.tier.clamp(1, MAX_TIER),
                    by: escalated.by.clone(),
                    reason: escalated.reason.clone(),
                };
                self.update(slot, |row| {
                    if row
                        .manual
                        .as_ref()
                        .is_none_or(|m| m.tier <= escalation.tier)
                    {
                        row.manual = Some(escalation);
                    }
                });
                self.raise_if_needed(slot, event)
            }
            EventBody::Reopened(_) => {
                self.update(slot, |row| {
                    row.status = ComplaintStatus::Open;
                    row.reopen_count += 1;
                });
                self.raise_if_needed(slot, event)
            }
            EventBody::Resolved(_) => self.on_terminal(slot, event, ComplaintStatus::Resolved),
            EventBody::Closed(_) => self.on_terminal(slot, event, ComplaintStatus::Closed),
            EventBody::Withdrawn(_) => self.on_terminal(slot, event, ComplaintStatus::Withdrawn),
            EventBody::SlaBreached(breach) => self.on_breached(slot, event, breach),
            EventBody::EscalationRaised(raised) => self.on_raised(slot, seq, event, raised),
            EventBody::EscalationClaimed(claimed) => {
                self.on_claimed(slot, seq, event, claimed);
                Vec::new()
            }
            EventBody::EscalationReleased(released) => {
                self.on_released(slot, seq, event, released);
                Vec::new()
            }
            EventBody::EscalationCleared(cleared) => {
                self.on_cleared(slot, seq, event, cleared);
                Vec::new()
            }
            EventBody::Acknowledged(_)
            | EventBody::CustomerContacted(_)
            | EventBody::CallbackPromised(_)
            | EventBody::AwaitingCustomer(_)
            | EventBody::CustomerReplied(_) => Vec::new(),
        }
    }

    fn tick(&mut self, now: Timestamp) -> Vec<Effect> {
        let alert_after = self.config.unclaimed_alert_after;
        let Some(threshold) = now.checked_sub(alert_after).ok() else {
            return Vec::new();
        };
        let mut effects = Vec::new();
        while let Some((since, complaint_id)) = self.awaiting_alert.first().cloned() {
            if since > threshold {
                break;
            }
            self.awaiting_alert.pop_first();
            let Some(row) = self.complaints.get(&complaint_id) else {
                continue;
            };
            let Some(item) = row.queue.as_ref().filter(|q| q.claim.is_none()) else {
                continue;
            };
            let alert = UnclaimedAlert {
                alert_type: "escalation.unclaimed",
                complaint_id: &complaint_id,
                tier: item.tier,
                region: &row.region,
                unclaimed_since: since,
                waiting_seconds: now.duration_since(since).as_secs(),
                alert_after_seconds: alert_after.as_secs(),
                reasons: &item.reasons,
                at: now,
            };
            let msg_id = own::event_id(&[
                &complaint_id,
                "unclaimed",
                &item.tier.to_string(),
                &since.to_string(),
            ]);
            effects.push(Effect::Publish {
                subject: unclaimed_alert_subject(&self.subject_prefix, &row.region),
                msg_id: msg_id.to_string(),
                payload: serde_json::to_vec(&alert).expect("alerts serialise infallibly"),
            });
        }
        effects
    }

    fn next_wakeup(&self) -> Option<Timestamp> {
        let (since, _) = self.awaiting_alert.first()?;
        since.checked_add(self.config.unclaimed_alert_after).ok()
    }

    fn set_rebuilding(&mut self, rebuilding: bool) {
        self.rebuilding = rebuilding;
    }

    fn take_changes(&mut self) -> Vec<ViewChange> {
        let mut changes = self.complaints.take_changes(COMPLAINT_ROWS);
        changes.extend(self.customers.take_changes(CUSTOMER_ROWS));
        changes
    }

    fn restore(&mut self, rows: &mut dyn Iterator<Item = ViewRow>) -> Result<(), ProjectionError> {
        self.complaints.clear();
        self.customers.clear();
        for row in rows {
            if self
                .complaints
                .restore_row("escalation", COMPLAINT_ROWS, &row)?
                .is_none()
            {
                self.customers
                    .restore_row("escalation", CUSTOMER_ROWS, &row)?;
            }
        }
        self.rebuild_indexes();
        Ok(())
    }
}
