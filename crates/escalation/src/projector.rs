//! The escalation projector: applies the log, raises and clears, keeps the queue index.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasherDefault;
use std::num::NonZeroU32;
use std::sync::Arc;

use jiff::Timestamp;
use plaint_events::{
    own, subjects, AmountAtStake, ComplaintFiled, EscalationClaimed, EscalationCleared,
    EscalationRaised, EscalationReleased, Event, EventBody, EventType, Severity, SlaBreached,
};
use plaint_projection::{
    decode_row, encode_row, Effect, Projection, ProjectionError, RowSource, ViewChange, ViewRow,
};
use serde::Serialize;
use uuid::Uuid;

use crate::config::{ConfigError, EscalationConfig, MAX_TIER};
use crate::priority::{money_rank, CompactTime, IndexKey};
use crate::rules::{self, ManualEscalation, SlaBreachFact};
use crate::state::{
    ClaimRecord, ClaimWait, ComplaintRow, ComplaintStatus, CustomerFilings, HistoryEntry,
    QueueItem, QueueRow, ReleaseRecord,
};
use crate::store::{IdHasher, Prefixes, RowStore, Stored};

const NAME: &str = "escalation";

/// Rows of complaints: live ones (restored at start; none since layout 4) and cold ones
/// (see [`complaint_is_cold`]), read back when an event, a query, a command or an alert
/// asks.
pub(crate) const COMPLAINTS: Prefixes = Prefixes {
    live: "complaint/",
    archive: "archived-complaint/",
};
/// Rows of customers' filings: live while a filing is inside the repeat window.
pub(crate) const CUSTOMERS: Prefixes = Prefixes {
    live: "customer/",
    archive: "archived-customer/",
};
/// `queue/<complaint>`: one [`QueueRow`] per complaint in the queue index.
pub(crate) const QUEUE: &str = "queue/";
/// `claim-wait/<complaint>/<raise count>`: one [`ClaimWait`] per first claim.
const CLAIM_WAITS: &str = "claim-wait/";
/// The latest event time applied (see `EscalationProjector::latest_event_time`).
const LATEST_EVENT_TIME: &str = "latest-event-time";

/// Whether a complaint's row goes to the archive and may leave memory: every row, since
/// layout 4. Nothing acts on a complaint's full row without asking for it: an event pages
/// it back in (`rows_needed`), an unclaimed alert too (`rows_due`), and queries and
/// commands read it from the view's rows. What they select on stays in memory as the
/// complaint's queue entry (persisted as a [`QueueRow`]). A function of the row alone, so
/// rows do not depend on what was resident.
fn complaint_is_cold(_: &ComplaintRow) -> bool {
    true
}

/// Unclaimed alerts one tick sends at most (and rows `rows_due` asks for): the others
/// wait for the next tick. After a restart every waiting item is alerted once more. The
/// crate's tests send three, so that a few items show the bound.
pub(crate) const ALERTS_PER_TICK: usize = if cfg!(test) { 3 } else { 10_000 };

fn queue_key(complaint_id: &str) -> Vec<u8> {
    [QUEUE.as_bytes(), complaint_id.as_bytes()].concat()
}

/// A claim wait in memory: by claim time first, so the ones out of reach are at the
/// front; then its row key.
type ClaimWaitKey = (Timestamp, Box<[u8]>);

#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimWaitEntry {
    pub tier: u8,
    pub seconds: i64,
    persisted: bool,
}

/// The raise count tells apart the first claims of one complaint (one per raise).
fn claim_wait_key(complaint_id: &str, raise_count: u32) -> Box<[u8]> {
    format!("{CLAIM_WAITS}{complaint_id}/{raise_count}")
        .into_bytes()
        .into_boxed_slice()
}

/// The queue index and alert schedule `restore` reads from `queue/` rows, before it
/// builds them.
#[derive(Default)]
struct RestoredQueues {
    queues: [Vec<(IndexKey, ItemSummary)>; MAX_TIER as usize],
    awaiting_alert: Vec<(Timestamp, Arc<str>)>,
}

/// Resident items, for memory reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Resident {
    /// Complaints whose full row is in memory.
    pub complaints: usize,
    /// Entries of the queue index (one per queued complaint, its row in memory or not).
    pub queued: usize,
    pub customers: usize,
    pub claim_waits: usize,
}

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

/// What the queue index keeps per item beside its key, so that filters and statistics
/// need not read the row: with the key, all that stays in memory of a queued complaint
/// whose row is paged out (besides its place in the alert schedule). Names are [`Names`]
/// numbers, so that a filter compares integers. 28 bytes: every queued complaint keeps
/// one, and a B-tree node holds room for eleven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemSummary {
    pub region: NameNumber,
    pub team: Option<NameNumber>,
    pub claimed_by: Option<NameNumber>,
    pub reasons_mask: u8,
    entered_at: CompactTime,
}

impl ItemSummary {
    pub(crate) fn entered_at(&self) -> Timestamp {
        self.entered_at.timestamp()
    }
}

/// An item's entry in the queue index and the alert schedule, as the row calls for it:
/// built when needed (before and after a change, at a restore), never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexEntry {
    tier: u8,
    key: IndexKey,
    summary: ItemSummary,
    /// `Some(unclaimed_since)` while the item waits unclaimed: its place in
    /// `awaiting_alert`.
    unclaimed_since: Option<Timestamp>,
}

/// A queued complaint's facts as the queue index needs them, borrowed from its row
/// ([`QueueFacts::of`]) or from its [`QueueRow`]: both turn into an index entry through
/// [`index_entry_of`], so a restart (from queue rows) and a page-in (from the complaint's
/// row) index an item the same way.
#[derive(Debug, Clone, Copy, PartialEq)]
struct QueueFacts<'a> {
    tier: u8,
    region: &'a str,
    team: Option<&'a str>,
    claimed_by: Option<&'a str>,
    severity: Severity,
    amount_at_stake: Option<&'a AmountAtStake>,
    filed_at: Timestamp,
    breached_since: Option<Timestamp>,
    reasons_mask: u8,
    entered_at: Timestamp,
    unclaimed_since: Option<Timestamp>,
}

impl<'a> QueueFacts<'a> {
    /// An item whose clear is on its way is already out of the queue index: it is
    /// resolved, closed or withdrawn, and nobody should claim it or be alerted about it.
    fn of(row: &'a ComplaintRow) -> Option<QueueFacts<'a>> {
        let item = row.queue.as_ref().filter(|q| !q.clear_requested)?;
        Some(QueueFacts {
            tier: item.tier,
            region: &row.region,
            team: row.team.as_deref(),
            claimed_by: item.claim.as_ref().map(|c| c.by.as_str()),
            severity: row.severity,
            amount_at_stake: row.amount_at_stake.as_ref(),
            filed_at: row.filed_at,
            breached_since: row.breached_since,
            reasons_mask: item
                .reasons
                .iter()
                .filter_map(|r| rules::rule_bit(&r.rule))
                .fold(0, |a, b| a | b),
            entered_at: item.entered_at,
            unclaimed_since: item.claim.is_none().then_some(item.unclaimed_since),
        })
    }

    fn of_queue_row(row: &'a QueueRow) -> QueueFacts<'a> {
        QueueFacts {
            tier: row.tier,
            region: &row.region,
            team: row.team.as_deref(),
            claimed_by: row.claimed_by.as_deref(),
            severity: row.severity,
            amount_at_stake: row.amount_at_stake.as_ref(),
            filed_at: row.filed_at,
            breached_since: row.breached_since,
            reasons_mask: row.reasons_mask,
            entered_at: row.entered_at,
            unclaimed_since: row.unclaimed_since,
        }
    }

    fn to_queue_row(self) -> QueueRow {
        QueueRow {
            tier: self.tier,
            region: self.region.to_owned(),
            team: self.team.map(str::to_owned),
            claimed_by: self.claimed_by.map(str::to_owned),
            severity: self.severity,
            amount_at_stake: self.amount_at_stake.cloned(),
            filed_at: self.filed_at,
            breached_since: self.breached_since,
            reasons_mask: self.reasons_mask,
            entered_at: self.entered_at,
            unclaimed_since: self.unclaimed_since,
        }
    }
}

/// The queue index entry of an item (see [`QueueFacts`]); the money rank is taken with
/// the limits configured now, as the item's other entries are.
fn index_entry_of(
    config: &EscalationConfig,
    names: &mut Names,
    complaint_id: Arc<str>,
    facts: &QueueFacts<'_>,
) -> IndexEntry {
    IndexEntry {
        tier: facts.tier,
        key: IndexKey::new(
            facts.severity,
            facts.breached_since,
            money_rank(config, facts.amount_at_stake),
            facts.filed_at,
            complaint_id,
        ),
        summary: ItemSummary {
            region: names.intern(facts.region),
            team: facts.team.map(|team| names.intern(team)),
            claimed_by: facts.claimed_by.map(|by| names.intern(by)),
            reasons_mask: facts.reasons_mask,
            entered_at: CompactTime::new(facts.entered_at),
        },
        unclaimed_since: facts.unclaimed_since,
    }
}

/// The number of a name in [`Names`]: never zero, so that an optional one (a team, a
/// holder) takes 4 bytes.
pub(crate) type NameNumber = NonZeroU32;

/// Regions, teams and operators seen, numbered from 1 in order of appearance (in memory
/// only; the numbers never reach a row or an answer).
#[derive(Debug, Default)]
pub(crate) struct Names {
    numbers: HashMap<String, NameNumber, BuildHasherDefault<IdHasher>>,
    names: Vec<String>,
}

impl Names {
    fn intern(&mut self, name: &str) -> NameNumber {
        if let Some(number) = self.numbers.get(name) {
            return *number;
        }
        let number = u32::try_from(self.names.len() + 1)
            .ok()
            .and_then(NameNumber::new)
            .filter(|n| *n < NameNumber::MAX)
            .expect("fewer than 2^32 - 1 names");
        self.names.push(name.to_owned());
        self.numbers.insert(name.to_owned(), number);
        number
    }

    /// The number of a name; a name never seen gets one that no item carries.
    pub(crate) fn find(&self, name: &str) -> NameNumber {
        self.numbers.get(name).copied().unwrap_or(NameNumber::MAX)
    }

    pub(crate) fn name(&self, number: NameNumber) -> &str {
        &self.names[number.get() as usize - 1]
    }
}

/// What the projector keeps in memory beside a complaint's row, by slot, while the row
/// is resident.
#[derive(Debug, Clone, Default)]
struct Companion {
    /// The complaint's region as a [`Names`] number (it never changes after filing); `None`
    /// in a free slot.
    region: Option<NameNumber>,
    /// Its `queue/` row is in the rows (as of the last `take_changes`).
    queue_row_stored: bool,
    /// Its queue entry changed since the last `take_changes`: the `queue/` row is written
    /// again (or deleted).
    queue_row_changed: bool,
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
    /// The latest event time applied: the clock by which customers' filings leave the
    /// repeat window and claim waits age (never the wall clock, so that rows depend on
    /// the log alone). Persisted; `latest_event_time_changed` says it must be written.
    latest_event_time: Option<Timestamp>,
    latest_event_time_changed: bool,
    /// Customers whose row is live, by newest filing: the front is the next to leave the
    /// repeat window and move to the archive. Entries may be stale; each is checked.
    live_customers_by_newest: BTreeSet<(Timestamp, u32)>,
    /// First-claim waits that a query at or after `latest_event_time - window` can
    /// count (see `stats`).
    pub(crate) claim_waits: BTreeMap<ClaimWaitKey, ClaimWaitEntry>,
    /// Claim waits added since the last `take_changes`.
    new_claim_waits: Vec<ClaimWaitKey>,
    pub(crate) names: Names,
    /// By region number (0 unused); see [`RegionSubjects`].
    region_subjects: Vec<Option<RegionSubjects>>,
    /// `own::source("escalation")`, made once.
    source: String,
    /// One ordered index per tier: every queued complaint, its row in memory or not.
    /// Persisted as `queue/` rows, from which `restore` rebuilds it.
    pub(crate) queues: [BTreeMap<IndexKey, ItemSummary>; MAX_TIER as usize],
    /// In memory only: unclaimed items this process has not alerted on yet, by the time
    /// they became unclaimed. After a restart every unclaimed item is alerted once more
    /// (with the same msg id, so within the stream's duplicate window it is absorbed).
    awaiting_alert: BTreeSet<(Timestamp, Arc<str>)>,
    /// In seconds: every item that became unclaimed before it was alerted, save those
    /// still in `awaiting_alert`. From the ticks of this process and the cursor the runner
    /// kept ([`Projection::tick_cursor`]), so that a restart does not alert again.
    alerted_before: Option<i64>,
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

/// Cold complaints (and customers) kept in memory: see [`plaint_projection::COLD_CACHE`].
/// The crate's own tests keep none, so every event after a cooling exercises paging.
const COLD_CACHE: usize = if cfg!(test) {
    0
} else {
    plaint_projection::COLD_CACHE
};

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
            latest_event_time: None,
            latest_event_time_changed: false,
            live_customers_by_newest: BTreeSet::new(),
            claim_waits: BTreeMap::new(),
            new_claim_waits: Vec::new(),
            names: Names::default(),
            region_subjects: Vec::new(),
            source: own::source("escalation"),
            queues: Default::default(),
            awaiting_alert: BTreeSet::new(),
            alerted_before: None,
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

    /// Items held in memory (the rest is in archived rows).
    pub fn resident(&self) -> Resident {
        Resident {
            complaints: self.complaints.len(),
            queued: self.queues.iter().map(BTreeMap::len).sum(),
            customers: self.customers.len(),
            claim_waits: self.claim_waits.len(),
        }
    }

    /// A customer's filings leave the repeat window (and memory) once they are all at or
    /// before this time.
    fn repeat_window_start(&self) -> Option<Timestamp> {
        let window = self.config.repeat_complainant.window;
        self.latest_event_time?.checked_sub(window).ok()
    }

    /// Claim waits at or before this time can count for no query at or after
    /// `latest_event_time - time_to_claim_window`, and are dropped.
    fn claim_waits_start(&self) -> Option<Timestamp> {
        let window = self.config.time_to_claim_window;
        let latest = self.latest_event_time?;
        latest.checked_sub(window).ok()?.checked_sub(window).ok()
    }

    fn set_companion(&mut self, slot: u32, companion: Companion) {
        let slot = slot as usize;
        if slot == self.companions.len() {
            self.companions.push(companion);
        } else {
            self.companions[slot] = companion;
        }
    }

    /// A complaint's row: from memory, or its archived row from `rows` (the view's
    /// persisted rows) when it was paged out.
    pub(crate) fn complaint_row<'a>(
        &'a self,
        complaint_id: &str,
        rows: &dyn RowSource,
    ) -> Result<Option<std::borrow::Cow<'a, ComplaintRow>>, ProjectionError> {
        if let Some(row) = self.complaints.get(complaint_id) {
            return Ok(Some(std::borrow::Cow::Borrowed(row)));
        }
        let key = [COMPLAINTS.archive.as_bytes(), complaint_id.as_bytes()].concat();
        let Some(bytes) = rows.row(&key)? else {
            return Ok(None);
        };
        let row = decode_row(&bytes).map_err(|source| ProjectionError::UndecodableRow {
            projector: NAME,
            key: format!("{}{complaint_id}", COMPLAINTS.archive),
            source,
        })?;
        Ok(Some(std::borrow::Cow::Owned(row)))
    }

    /// The queue index entry the row of `slot` calls for (see [`QueueFacts::of`]).
    fn index_entry(&mut self, slot: u32) -> Option<IndexEntry> {
        let facts = QueueFacts::of(self.complaints.row(slot))?;
        let id = Arc::clone(self.complaints.id(slot));
        Some(index_entry_of(&self.config, &mut self.names, id, &facts))
    }

    /// Brings the queue index and the alert schedule from the entry the row of `slot`
    /// called for (`before`) to the one it calls for now.
    fn reindex(&mut self, slot: u32, before: Option<IndexEntry>) {
        let after = self.index_entry(slot);
        if before == after {
            return;
        }
        self.companions[slot as usize].queue_row_changed = true;
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
    /// The entry the row had is built again rather than kept beside the row: every row
    /// changes here, so the index holds exactly that entry, and a copy per resident
    /// queued complaint cost more memory than building it costs time.
    fn update<R>(&mut self, slot: u32, change: impl FnOnce(&mut ComplaintRow) -> R) -> R {
        let before = self.index_entry(slot);
        let result = change(self.complaints.row_mut(slot));
        self.reindex(slot, before);
        result
    }

    /// The subjects of the region of `slot`.
    fn region_subjects(&mut self, slot: u32) -> &RegionSubjects {
        let region = self.companions[slot as usize]
            .region
            .expect("a resident complaint's region is known");
        let index = region.get() as usize;
        if self.region_subjects.len() <= index {
            self.region_subjects.resize_with(index + 1, || None);
        }
        let (prefix, names) = (&self.subject_prefix, &self.names);
        self.region_subjects[index]
            .get_or_insert_with(|| RegionSubjects::new(prefix, names.name(region)))
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
        self.set_companion(
            slot,
            Companion {
                region: Some(region),
                ..Companion::default()
            },
        );
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
        let first_claim = self.update(slot, |row| {
            let item = row.queue.as_mut()?;
            // The log is the arbiter: the first claim in log order wins, and a reassign
            // takes effect only from the holder it was prepared against.
            let holder = item.claim.as_ref().map(|c| c.by.as_str());
            let takes_effect = item.tier == claimed.tier
                && holder != Some(claimed.by.as_str())
                && holder == claimed.reassigned_from.as_deref();
            if !takes_effect {
                return None;
            }
            item.claim = Some(ClaimRecord {
                by: claimed.by.clone(),
                at: event.time,
                event_id: event.id,
                reassigned_from: claimed.reassigned_from.clone(),
            });
            item.operator_events += 1;
            let entered = first_claim_of(&row.history, claimed);
            row.history.push(HistoryEntry::Claimed {
                seq,
                at: event.time,
                event_id: event.id,
                by: claimed.by.clone(),
                tier: claimed.tier,
                reassigned_from: claimed.reassigned_from.clone(),
            });
            entered.map(|entered_at| (row.raise_count, entered_at))
        });
        if let Some((raise_count, entered_at)) = first_claim {
            let key = (event.time, claim_wait_key(&event.complaint_id, raise_count));
            let wait = ClaimWaitEntry {
                tier: claimed.tier,
                seconds: event.time.duration_since(entered_at).as_secs(),
                persisted: false,
            };
            self.claim_waits.insert(key.clone(), wait);
            self.new_claim_waits.push(key);
        }
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

    /// Sets up the companions of the complaint rows a restore took (the queue index and
    /// the alert schedule come from the `queue/` rows).
    fn index_restored_rows(&mut self) {
        self.companions = vec![Companion::default(); self.complaints.slot_count()];
        for slot in 0..self.complaints.slot_count() as u32 {
            if self.complaints.in_use(slot) {
                self.index_paged_in(slot);
            }
        }
    }

    /// Sets up the companion of a complaint whose row came back from the rows. Its queue
    /// entry is in the index already (it stayed there when the row left memory, or came
    /// from its `queue/` row), and so is its place in the alert schedule, which must not
    /// change: an alert already sent is not sent again.
    fn index_paged_in(&mut self, slot: u32) {
        let region = self.names.intern(&self.complaints.row(slot).region);
        let indexed = self.index_entry(slot);
        let queue_row_stored = indexed.is_some();
        if let Some(entry) = indexed {
            self.queues[usize::from(entry.tier - 1)]
                .entry(entry.key)
                .or_insert(entry.summary);
        }
        self.set_companion(
            slot,
            Companion {
                region: Some(region),
                queue_row_stored,
                ..Companion::default()
            },
        );
    }

    /// Adds a `queue/` row to the entries `restore` indexes.
    fn restore_queue_row(
        &mut self,
        row: &ViewRow,
        restored: &mut RestoredQueues,
    ) -> Result<(), ProjectionError> {
        let undecodable = |source| ProjectionError::UndecodableRow {
            projector: NAME,
            key: String::from_utf8_lossy(&row.0).into_owned(),
            source,
        };
        let id = std::str::from_utf8(&row.0[QUEUE.len()..]).map_err(|_| {
            undecodable(plaint_projection::RowError {
                at: 0,
                what: "the complaint id in the key is not UTF-8".into(),
            })
        })?;
        let queued: QueueRow = decode_row(&row.1).map_err(undecodable)?;
        if !(1..=MAX_TIER).contains(&queued.tier) {
            return Err(undecodable(plaint_projection::RowError {
                at: 1,
                what: format!("tier {} does not exist", queued.tier),
            }));
        }
        let entry = index_entry_of(
            &self.config,
            &mut self.names,
            Arc::from(id),
            &QueueFacts::of_queue_row(&queued),
        );
        if let Some(since) = entry.unclaimed_since {
            restored
                .awaiting_alert
                .push((since, Arc::clone(entry.key.complaint_id())));
        }
        restored.queues[usize::from(entry.tier - 1)].push((entry.key, entry.summary));
        Ok(())
    }

    /// The unclaimed alerts `tick(now)` sends: the longest waiting first, at most
    /// [`ALERTS_PER_TICK`].
    fn alerts_due(&self, now: Timestamp) -> impl Iterator<Item = &(Timestamp, Arc<str>)> {
        let threshold = now.checked_sub(self.config.unclaimed_alert_after).ok();
        self.awaiting_alert
            .iter()
            .take_while(move |(since, _)| threshold.is_some_and(|t| *since <= t))
            .take(ALERTS_PER_TICK)
    }

    /// Customers whose row is live but whose filings all left the repeat window are
    /// marked, so that `take_changes` moves their row to the archive. Decided at each
    /// `take_changes` by the latest event time alone: a rebuild, a restart and a
    /// projector that kept everything resident move the same rows.
    fn archive_expired_customers(&mut self) {
        let Some(window_start) = self.repeat_window_start() else {
            return;
        };
        while let Some(&(newest, slot)) = self.live_customers_by_newest.first() {
            if newest > window_start {
                break;
            }
            self.live_customers_by_newest.pop_first();
            let expired = self.customers.in_use(slot)
                && self.customers.stored(slot) == Stored::Live
                && self.customers.row(slot).all_before(window_start);
            if expired {
                self.customers.mark(slot);
            }
        }
    }

    /// Changes of the claim waits: deletes of those out of reach, writes of new ones.
    fn take_claim_wait_changes(&mut self, changes: &mut Vec<ViewChange>) {
        if let Some(start) = self.claim_waits_start() {
            while let Some(entry) = self.claim_waits.first_entry() {
                if entry.key().0 > start {
                    break;
                }
                let ((_, key), wait) = entry.remove_entry();
                if wait.persisted {
                    changes.push((key.into_vec(), None));
                }
            }
        }
        for key in std::mem::take(&mut self.new_claim_waits) {
            let Some(wait) = self.claim_waits.get_mut(&key) else {
                continue;
            };
            wait.persisted = true;
            let (at, key) = key;
            let row = ClaimWait {
                at,
                tier: wait.tier,
                seconds: wait.seconds,
            };
            changes.push((key.into_vec(), Some(encode_row(&row))));
        }
    }

    fn restore_claim_wait(&mut self, row: &ViewRow) -> Result<(), ProjectionError> {
        let wait: ClaimWait =
            decode_row(&row.1).map_err(|source| ProjectionError::UndecodableRow {
                projector: NAME,
                key: String::from_utf8_lossy(&row.0).into_owned(),
                source,
            })?;
        self.claim_waits.insert(
            (wait.at, row.0.clone().into_boxed_slice()),
            ClaimWaitEntry {
                tier: wait.tier,
                seconds: wait.seconds,
                persisted: true,
            },
        );
        Ok(())
    }

    /// The persisted rows of everything in memory, in key order, as `take_changes` would
    /// leave them now (for digests and rebuild comparisons in tests and tools; with
    /// nothing evicted, the whole view): the `queue/` rows are those of the complaints
    /// whose rows are in memory.
    pub fn rows(&self) -> Vec<ViewRow> {
        let window_start = self.repeat_window_start();
        let customer_cold =
            move |f: &CustomerFilings| window_start.is_some_and(|start| f.all_before(start));
        let claim_waits_start = self.claim_waits_start();
        let mut rows: Vec<ViewRow> = self
            .complaints
            .persisted(COMPLAINTS, complaint_is_cold)
            .chain(self.complaints.iter().filter_map(|(id, row)| {
                let queued = QueueFacts::of(row)?.to_queue_row();
                Some((queue_key(id), encode_row(&queued)))
            }))
            .chain(self.customers.persisted(CUSTOMERS, customer_cold))
            .chain(
                self.claim_waits
                    .iter()
                    .filter(|((at, _), _)| claim_waits_start.is_none_or(|start| *at > start))
                    .map(|((at, key), wait)| {
                        let row = ClaimWait {
                            at: *at,
                            tier: wait.tier,
                            seconds: wait.seconds,
                        };
                        (key.to_vec(), encode_row(&row))
                    }),
            )
            .chain(
                self.latest_event_time
                    .map(|t| (LATEST_EVENT_TIME.as_bytes().to_vec(), encode_row(&t))),
            )
            .collect();
        rows.sort();
        rows
    }
}

/// When a claim about to be appended to `history` is the first claim after the item
/// entered its tier, the time it entered: the wait `stats` measures. Reassigns and
/// releases do not end the wait's chance; a first claim or a clear does.
fn first_claim_of(history: &[HistoryEntry], claimed: &EscalationClaimed) -> Option<Timestamp> {
    if claimed.reassigned_from.is_some() {
        return None;
    }
    for entry in history.iter().rev() {
        match entry {
            HistoryEntry::Raised { tier, at, .. } => return (*tier == claimed.tier).then_some(*at),
            HistoryEntry::Claimed {
                reassigned_from: None,
                ..
            }
            | HistoryEntry::Cleared { .. } => return None,
            HistoryEntry::Claimed { .. } | HistoryEntry::Released { .. } => {}
        }
    }
    None
}

/// Whether `apply` can change anything for an event of this kind: the others need no
/// row paged in.
fn acts_on(body: &EventBody) -> bool {
    !matches!(
        body,
        EventBody::Acknowledged(_)
            | EventBody::CustomerContacted(_)
            | EventBody::CallbackPromised(_)
            | EventBody::AwaitingCustomer(_)
            | EventBody::CustomerReplied(_)
    )
}

impl Projection for EscalationProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn resident_items(&self) -> Option<usize> {
        let resident = self.resident();
        Some(resident.complaints + resident.queued + resident.customers + resident.claim_waits)
    }

    fn layout(&self) -> u32 {
        // 2: cold complaints and customers under `archived-*/`, claim waits in rows of
        // their own, the latest event time in a row. 3: an open complaint that is not
        // queued is cold too (at 10 million events, open complaints held in memory for
        // no timer and no query were most of the projector's memory). 4: every complaint
        // row is cold; a queued complaint keeps its queue entry in memory and in a
        // `queue/` row of its own (at 10 million events, the full rows of queued
        // complaints were most of the projector's memory).
        4
    }

    fn apply(&mut self, seq: u64, event: &Event) -> Vec<Effect> {
        if self.latest_event_time < Some(event.time) {
            self.latest_event_time = Some(event.time);
            self.latest_event_time_changed = true;
        }
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

    /// Sends the unclaimed alerts due ([`ALERTS_PER_TICK`] at most), from the items' rows
    /// (for their reasons): the runner pages in the rows `rows_due` asked for first.
    fn tick(&mut self, now: Timestamp) -> Vec<Effect> {
        let alert_after = self.config.unclaimed_alert_after;
        let due: Vec<(Timestamp, Arc<str>)> = self.alerts_due(now).cloned().collect();
        if let Ok(threshold) = now.checked_sub(alert_after) {
            // Whole seconds before the threshold: an item that became unclaimed within its
            // second may be alerted once more after a restart, never not at all.
            let before = threshold.as_second();
            self.alerted_before = Some(self.alerted_before.map_or(before, |b| b.max(before)));
        }
        let mut effects = Vec::new();
        for (since, complaint_id) in due {
            self.awaiting_alert
                .remove(&(since, Arc::clone(&complaint_id)));
            // Paged in for this tick (`rows_due`); missing only when a caller ticks
            // without paging in, or the rows lack it. Waiting for a row that will not
            // come would wake the runner at once, again and again: it is skipped.
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

    fn rows_due(&self, now: Timestamp, keys: &mut Vec<Vec<u8>>) {
        for (_, complaint_id) in self.alerts_due(now) {
            keys.extend(self.complaints.archive_key(COMPLAINTS, complaint_id));
        }
    }

    fn tick_cursor(&self) -> Option<u64> {
        let before = self.alerted_before?;
        let waiting = self
            .awaiting_alert
            .first()
            .map(|(since, _)| since.as_second());
        let cursor = waiting.map_or(before, |w| w.min(before));
        Some(u64::try_from(cursor).unwrap_or(0))
    }

    fn restore_tick_cursor(&mut self, cursor: u64) {
        let before = i64::try_from(cursor).unwrap_or(i64::MAX);
        self.awaiting_alert
            .retain(|(since, _)| since.as_second() >= before);
        self.alerted_before = Some(before);
    }

    fn next_wakeup(&self) -> Option<Timestamp> {
        let (since, _) = self.awaiting_alert.first()?;
        since.checked_add(self.config.unclaimed_alert_after).ok()
    }

    fn set_rebuilding(&mut self, rebuilding: bool) {
        self.rebuilding = rebuilding;
    }

    fn take_changes(&mut self) -> Vec<ViewChange> {
        // Each changed queue entry's `queue/` row, written or deleted with the complaint's.
        let companions = &mut self.companions;
        let mut queue_changes = Vec::new();
        let mut changes =
            self.complaints
                .take_changes(COMPLAINTS, complaint_is_cold, |slot, id, row, _| {
                    let companion = &mut companions[slot as usize];
                    if !std::mem::take(&mut companion.queue_row_changed) {
                        return;
                    }
                    match QueueFacts::of(row) {
                        Some(facts) => {
                            let value = encode_row(&facts.to_queue_row());
                            queue_changes.push((queue_key(id), Some(value)));
                            companion.queue_row_stored = true;
                        }
                        None if std::mem::take(&mut companion.queue_row_stored) => {
                            queue_changes.push((queue_key(id), None));
                        }
                        None => {}
                    }
                });
        changes.append(&mut queue_changes);
        self.archive_expired_customers();
        let window_start = self.repeat_window_start();
        let live_customers = &mut self.live_customers_by_newest;
        changes.extend(self.customers.take_changes(
            CUSTOMERS,
            |filings| window_start.is_some_and(|start| filings.all_before(start)),
            |slot, _, filings, stored| {
                if let (Stored::Live, Some(newest)) = (stored, filings.filed_at.last()) {
                    live_customers.insert((*newest, slot));
                }
            },
        ));
        self.take_claim_wait_changes(&mut changes);
        if std::mem::take(&mut self.latest_event_time_changed) {
            if let Some(latest) = self.latest_event_time {
                changes.push((
                    LATEST_EVENT_TIME.as_bytes().to_vec(),
                    Some(encode_row(&latest)),
                ));
            }
        }
        changes
    }

    fn resident_prefixes(&self) -> Vec<Vec<u8>> {
        [
            COMPLAINTS.live,
            QUEUE,
            CUSTOMERS.live,
            CLAIM_WAITS,
            LATEST_EVENT_TIME,
        ]
        .iter()
        .map(|prefix| prefix.as_bytes().to_vec())
        .collect()
    }

    fn rows_needed(&self, event: &Event, keys: &mut Vec<Vec<u8>>) {
        match &event.body {
            // The ingester rejects a second filing, so a filing needs no complaint row; it
            // counts the customer's earlier filings.
            EventBody::Filed(filed) => {
                keys.extend(self.customers.archive_key(CUSTOMERS, &filed.customer_id));
            }
            body if acts_on(body) => {
                keys.extend(self.complaints.archive_key(COMPLAINTS, &event.complaint_id));
            }
            _ => {}
        }
    }

    fn page_in(&mut self, key: &[u8], row: Option<&[u8]>) -> Result<(), ProjectionError> {
        let Some(bytes) = row else {
            return Ok(());
        };
        if let Some(id) = key.strip_prefix(COMPLAINTS.archive.as_bytes()) {
            let id = String::from_utf8_lossy(id);
            if let Some(slot) = self.complaints.page_in(NAME, COMPLAINTS, &id, bytes)? {
                self.index_paged_in(slot);
            }
        } else if let Some(id) = key.strip_prefix(CUSTOMERS.archive.as_bytes()) {
            let id = String::from_utf8_lossy(id);
            self.customers.page_in(NAME, CUSTOMERS, &id, bytes)?;
        }
        Ok(())
    }

    fn evict(&mut self) {
        let companions = &mut self.companions;
        self.complaints.evict(COLD_CACHE, |slot| {
            let companion = &mut companions[slot as usize];
            // A raise on its way must find its pending marker when it comes back.
            if companion.pending_raise.is_some() {
                return false;
            }
            debug_assert!(
                !companion.queue_row_changed,
                "an unchanged row has its queue row written"
            );
            // Its queue entry, if any, stays in the index.
            *companion = Companion::default();
            true
        });
        self.customers.evict(COLD_CACHE, |_| true);
    }

    fn restore(&mut self, rows: &mut dyn Iterator<Item = ViewRow>) -> Result<(), ProjectionError> {
        self.queues = Default::default();
        self.awaiting_alert.clear();
        self.alerted_before = None;
        self.complaints.clear();
        self.customers.clear();
        self.live_customers_by_newest.clear();
        self.claim_waits.clear();
        self.new_claim_waits.clear();
        self.latest_event_time = None;
        self.latest_event_time_changed = false;
        // The runner passes the live rows only; archived ones are taken too (a test or a
        // tool may pass every row) and may leave memory at the next `evict`.
        let mut restored_any = false;
        let mut queued = RestoredQueues::default();
        for row in rows {
            restored_any = true;
            if row.0.starts_with(CLAIM_WAITS.as_bytes()) {
                self.restore_claim_wait(&row)?;
            } else if row.0.starts_with(QUEUE.as_bytes()) {
                self.restore_queue_row(&row, &mut queued)?;
            } else if row.0 == LATEST_EVENT_TIME.as_bytes() {
                let latest =
                    decode_row(&row.1).map_err(|source| ProjectionError::UndecodableRow {
                        projector: NAME,
                        key: LATEST_EVENT_TIME.to_owned(),
                        source,
                    })?;
                self.latest_event_time = Some(latest);
            } else if self
                .complaints
                .restore_row(NAME, COMPLAINTS, &row)?
                .is_none()
            {
                let restored = self.customers.restore_row(NAME, CUSTOMERS, &row)?;
                if let Some((slot, Stored::Live)) = restored {
                    if let Some(newest) = self.customers.row(slot).filed_at.last() {
                        self.live_customers_by_newest.insert((*newest, slot));
                    }
                }
            }
        }
        if restored_any {
            // Rows were restored, so some may have been paged out before: ask for the
            // archived row of every id not in memory.
            self.complaints.forget_paged_out();
            self.customers.forget_paged_out();
        }
        // Built at once from all entries, the B-trees' nodes are full; inserted one by one
        // in the rows' order (by id, close to the order of time) they were half empty.
        self.queues = queued.queues.map(BTreeMap::from_iter);
        self.awaiting_alert = BTreeSet::from_iter(queued.awaiting_alert);
        self.index_restored_rows();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every queued complaint keeps beside its key, and every slot of the companion
    /// table: bounds, so that a field added or widened is a decision.
    #[test]
    fn summaries_and_companions_stay_small() {
        assert!(std::mem::size_of::<ItemSummary>() <= 28);
        assert!(std::mem::size_of::<Companion>() <= 8);
    }
}
