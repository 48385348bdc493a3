//! The `complaints` projection: the current state of each complaint.
//!
//! - [`ComplaintsProjector`]: a pure fold from events to one [`ComplaintState`] row per
//!   complaint (status, region, category, severity, channel, when it was filed, first
//!   responded to, resolved, closed; assignee, escalation tier, reopen count, version).
//! - [`ComplaintCounts`]: totals by status and region for `plaint status`.
//!
//! It serves `plaint complaint <id>` (together with the log's history of the complaint)
//! and the counts in `plaint status`. It emits no effects.
//!
//! Nothing here decides anything, so memory is only a cache: one row per complaint
//! (`c/<id>`), the [`RECENT_COMPLAINTS`] most recently touched kept in memory, the others
//! paged in by the runner when an event comes for them and read from the rows by
//! [`ComplaintsProjector::read`] for a query. The counts are kept as they change (row
//! `n/counts`), not recounted, and are all that a restart restores. Complaint text (summary,
//! notes) and customer ids are deliberately not copied into the view: the log has them,
//! and a view that operators browse should not spread them further.

use std::collections::BTreeMap;

use plaint_events::{Event, EventBody, Timestamp};
use plaint_projection::{
    Effect, Projection, ProjectionError, RowCodec, RowError, RowReader, RowSource, RowWriter,
    ViewChange, ViewMap, ViewRow,
};
use serde::{Deserialize, Serialize};

/// Where a complaint is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    AwaitingCustomer,
    Resolved,
    Closed,
    Withdrawn,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::AwaitingCustomer => "awaiting_customer",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
            Status::Withdrawn => "withdrawn",
        }
    }
}

/// One complaint as of its last event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintState {
    pub complaint_id: String,
    pub status: Status,
    pub region: String,
    pub category: String,
    pub severity: plaint_events::Severity,
    pub channel: plaint_events::Channel,
    pub vip: bool,
    pub filed_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_response_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_tier: Option<u8>,
    pub reopen_count: u32,
    pub sla_breaches: u32,
    pub last_event_at: Timestamp,
    /// Number of events in the complaint's stream.
    pub version: u32,
    pub last_seq: u64,
}

plaint_projection::enum_codec!(Status, "status", {
    Status::Open = 0,
    Status::AwaitingCustomer = 1,
    Status::Resolved = 2,
    Status::Closed = 3,
    Status::Withdrawn = 4,
});

/// The row form: fields in declaration order (see `plaint_projection::codec`).
impl RowCodec for ComplaintState {
    fn encode(&self, out: &mut RowWriter) {
        out.str(&self.complaint_id);
        out.put(&self.status);
        out.str(&self.region);
        out.str(&self.category);
        out.put(&self.severity);
        out.put(&self.channel);
        out.bool(self.vip);
        out.put(&self.filed_at);
        out.put(&self.first_response_at);
        out.put(&self.resolved_at);
        out.put(&self.closed_at);
        out.put(&self.assignee);
        out.put(&self.team);
        out.put(&self.escalation_tier);
        out.uint(self.reopen_count.into());
        out.uint(self.sla_breaches.into());
        out.put(&self.last_event_at);
        out.uint(self.version.into());
        out.uint(self.last_seq);
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(ComplaintState {
            complaint_id: input.string()?,
            status: input.get()?,
            region: input.string()?,
            category: input.string()?,
            severity: input.get()?,
            channel: input.get()?,
            vip: input.bool()?,
            filed_at: input.get()?,
            first_response_at: input.get()?,
            resolved_at: input.get()?,
            closed_at: input.get()?,
            assignee: input.get()?,
            team: input.get()?,
            escalation_tier: input.get()?,
            reopen_count: input.uint_as()?,
            sla_breaches: input.uint_as()?,
            last_event_at: input.get()?,
            version: input.uint_as()?,
            last_seq: input.uint()?,
        })
    }
}

/// Totals for `plaint status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComplaintCounts {
    pub total: u64,
    pub by_status: BTreeMap<String, u64>,
    pub by_region: BTreeMap<String, u64>,
}

impl ComplaintCounts {
    fn add(&mut self, status: Status, n: i64) {
        let count = self
            .by_status
            .entry(status.as_str().to_owned())
            .or_insert(0);
        *count = count.saturating_add_signed(n);
        if *count == 0 {
            self.by_status.remove(status.as_str());
        }
    }
}

impl RowCodec for ComplaintCounts {
    fn encode(&self, out: &mut RowWriter) {
        out.uint(self.total);
        for map in [&self.by_status, &self.by_region] {
            out.uint(map.len() as u64);
            for (name, count) in map {
                out.str(name);
                out.uint(*count);
            }
        }
    }

    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        let total = input.uint()?;
        let mut maps = [BTreeMap::new(), BTreeMap::new()];
        for map in &mut maps {
            for _ in 0..input.uint()? {
                let name = input.string()?;
                map.insert(name, input.uint()?);
            }
        }
        let [by_status, by_region] = maps;
        Ok(ComplaintCounts {
            total,
            by_status,
            by_region,
        })
    }
}

/// Complaints kept in memory at most (besides those changed in the current batch). A
/// complaint's events are mostly days apart, so most events page their complaint in; a
/// row comes back from redb in ~5 µs (see [`plaint_projection::COLD_CACHE`]), so the
/// cache need only hold the complaints of the last few batches.
pub const RECENT_COMPLAINTS: usize = 20_000;

/// Any complaint may leave memory: nothing is decided on the state held here.
fn may_page_out(_: &ComplaintState) -> bool {
    true
}

#[derive(Debug)]
pub struct ComplaintsProjector {
    complaints: ViewMap<ComplaintState>,
    counts: ComplaintCounts,
    counts_dirty: bool,
}

impl Default for ComplaintsProjector {
    fn default() -> Self {
        Self::with_capacity(RECENT_COMPLAINTS)
    }
}

/// Rows of complaints. (To the paged map they are all "archived": none is restored.)
const ROW_PREFIX: &str = "c/";
/// The prefix of rows restored at start; no complaint row is ever written there.
const RESTORED_PREFIX: &str = "o/";
const COUNTS_KEY: &str = "n/counts";

impl ComplaintsProjector {
    pub const NAME: &'static str = "complaints";

    pub fn new() -> Self {
        Self::default()
    }

    /// A projector that keeps at most `recent` complaints in memory between batches.
    pub fn with_capacity(recent: usize) -> Self {
        ComplaintsProjector {
            complaints: ViewMap::paged(ROW_PREFIX, may_page_out, recent),
            counts: ComplaintCounts::default(),
            counts_dirty: false,
        }
    }

    /// A complaint held in memory (recently touched ones; see [`ComplaintsProjector::read`]).
    pub fn get(&self, complaint_id: &str) -> Option<&ComplaintState> {
        self.complaints.get(complaint_id)
    }

    /// Any complaint: from memory, or from `rows` (the view's persisted rows) if it was
    /// paged out.
    pub fn read(
        &self,
        complaint_id: &str,
        rows: &dyn RowSource,
    ) -> Result<Option<ComplaintState>, ProjectionError> {
        Ok(self
            .complaints
            .read(Self::NAME, complaint_id, rows)?
            .map(|c| c.into_owned()))
    }

    pub fn counts(&self) -> ComplaintCounts {
        self.counts.clone()
    }

    /// Complaints held in memory.
    pub fn resident(&self) -> usize {
        self.complaints.len()
    }
}

impl Projection for ComplaintsProjector {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn layout(&self) -> u32 {
        // 2: counts in `n/counts`, restored alone.
        2
    }

    fn apply(&mut self, seq: u64, event: &Event) -> Vec<Effect> {
        if let EventBody::Filed(filed) = &event.body {
            if self.complaints.contains_key(&event.complaint_id) {
                // The ingester rejects a second filing; a view behind a truncated log
                // could still meet one, and counting it twice would be wrong.
                return Vec::new();
            }
            self.counts.total += 1;
            self.counts.add(Status::Open, 1);
            *self
                .counts
                .by_region
                .entry(filed.region.clone())
                .or_insert(0) += 1;
            self.counts_dirty = true;
            self.complaints.insert(
                event.complaint_id.clone(),
                ComplaintState {
                    complaint_id: event.complaint_id.clone(),
                    status: Status::Open,
                    region: filed.region.clone(),
                    category: filed.category.clone(),
                    severity: filed.severity,
                    channel: filed.channel,
                    vip: filed.vip,
                    filed_at: event.time,
                    first_response_at: None,
                    resolved_at: None,
                    closed_at: None,
                    assignee: None,
                    team: None,
                    escalation_tier: None,
                    reopen_count: 0,
                    sla_breaches: 0,
                    last_event_at: event.time,
                    version: 1,
                    last_seq: seq,
                },
            );
            return Vec::new();
        }
        // The log only holds events of filed complaints (the ingester enforces it), so a
        // miss here means the view is behind a truncated log; ignoring is right because a
        // rebuild fixes it.
        let Some(c) = self.complaints.get_mut(&event.complaint_id) else {
            return Vec::new();
        };
        let status_before = c.status;
        c.version += 1;
        c.last_seq = seq;
        c.last_event_at = c.last_event_at.max(event.time);
        match &event.body {
            EventBody::Acknowledged(_) | EventBody::CustomerContacted(_) => {
                c.first_response_at.get_or_insert(event.time);
            }
            EventBody::Assigned(a) => {
                c.assignee = Some(a.assignee.clone());
                c.team = a.team.clone().or(c.team.take());
            }
            EventBody::AwaitingCustomer(_) => c.status = Status::AwaitingCustomer,
            EventBody::CustomerReplied(_) if c.status == Status::AwaitingCustomer => {
                c.status = Status::Open
            }
            EventBody::Resolved(_) => {
                c.status = Status::Resolved;
                c.resolved_at = Some(event.time);
                c.first_response_at.get_or_insert(event.time);
            }
            EventBody::Reopened(_) => {
                c.status = Status::Open;
                c.reopen_count += 1;
                c.resolved_at = None;
                c.closed_at = None;
            }
            EventBody::Closed(_) => {
                c.status = Status::Closed;
                c.closed_at = Some(event.time);
            }
            EventBody::Withdrawn(_) => {
                c.status = Status::Withdrawn;
                c.closed_at = Some(event.time);
            }
            EventBody::SlaBreached(_) => c.sla_breaches += 1,
            EventBody::EscalationRaised(r) => c.escalation_tier = Some(r.tier),
            EventBody::EscalationCleared(_) => c.escalation_tier = None,
            _ => {}
        }
        let status = c.status;
        if status != status_before {
            self.counts.add(status_before, -1);
            self.counts.add(status, 1);
            self.counts_dirty = true;
        }
        Vec::new()
    }

    fn take_changes(&mut self) -> Vec<ViewChange> {
        let mut changes = self.complaints.take_changes(RESTORED_PREFIX);
        if std::mem::take(&mut self.counts_dirty) {
            changes.push((
                COUNTS_KEY.as_bytes().to_vec(),
                Some(plaint_projection::encode_row(&self.counts)),
            ));
        }
        changes
    }

    fn resident_prefixes(&self) -> Vec<Vec<u8>> {
        vec![COUNTS_KEY.into()]
    }

    fn rows_needed(&self, event: &Event, keys: &mut Vec<Vec<u8>>) {
        // A filing creates the complaint; every other event is about a filed one.
        if !matches!(event.body, EventBody::Filed(_)) {
            keys.extend(self.complaints.archive_key(&event.complaint_id));
        }
    }

    fn page_in(&mut self, key: &[u8], row: Option<&[u8]>) -> Result<(), ProjectionError> {
        self.complaints.page_in(Self::NAME, key, row).map(drop)
    }

    fn evict(&mut self) {
        self.complaints.evict();
    }

    fn resident_items(&self) -> Option<usize> {
        Some(self.complaints.len())
    }

    fn restore(&mut self, rows: &mut dyn Iterator<Item = ViewRow>) -> Result<(), ProjectionError> {
        self.complaints.clear();
        self.counts = ComplaintCounts::default();
        self.counts_dirty = false;
        for row in rows {
            if row.0 == COUNTS_KEY.as_bytes() {
                self.counts = plaint_projection::decode_row(&row.1).map_err(|source| {
                    ProjectionError::UndecodableRow {
                        projector: Self::NAME,
                        key: COUNTS_KEY.to_owned(),
                        source,
                    }
                })?;
                continue;
            }
            // Rows of layout 1 (every complaint under `c/`, restored whole; the runner
            // rebuilds such a view, but tests restore rows directly).
            self.complaints.restore_row(Self::NAME, ROW_PREFIX, &row)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plaint_testkit::fixtures::{self, at};

    fn event(v: &serde_json::Value) -> Event {
        plaint_events::decode_stored(&fixtures::bytes(v)).unwrap()
    }

    #[test]
    fn follows_a_complaint_through_its_life() {
        let mut p = ComplaintsProjector::new();
        let history = [
            fixtures::filed("C-1", "eu", "billing", at(0)),
            fixtures::acknowledged("C-1", at(30)),
            fixtures::contacted("C-1", at(60)),
            fixtures::resolved("C-1", at(120)),
            fixtures::reopened("C-1", at(200)),
        ];
        for (i, e) in history.iter().enumerate() {
            assert!(p.apply(i as u64 + 1, &event(e)).is_empty());
        }
        let c = p.get("C-1").unwrap();
        assert_eq!(c.status, Status::Open);
        assert_eq!(c.first_response_at, Some(at(30)));
        assert_eq!(
            c.resolved_at, None,
            "a reopened complaint is no longer resolved"
        );
        assert_eq!(c.reopen_count, 1);
        assert_eq!(c.version, 5);
        assert_eq!(p.counts().by_status.get("open"), Some(&1));
    }

    #[test]
    fn rows_restore_to_the_same_state() {
        let mut p = ComplaintsProjector::new();
        p.apply(1, &event(&fixtures::filed("C-1", "eu", "billing", at(0))));
        p.apply(2, &event(&fixtures::filed("C-2", "us", "delivery", at(0))));
        let rows: Vec<ViewRow> = p
            .take_changes()
            .into_iter()
            .map(|(k, v)| (k, v.unwrap()))
            .collect();
        let mut q = ComplaintsProjector::new();
        q.restore(&mut rows.clone().into_iter()).unwrap();
        assert_eq!(q.get("C-2"), p.get("C-2"));
        assert_eq!(q.counts(), p.counts());
    }

    #[test]
    fn every_field_survives_the_row_form() {
        let state = ComplaintState {
            complaint_id: "C-1".into(),
            status: Status::AwaitingCustomer,
            region: "eu-west".into(),
            category: "billing".into(),
            severity: plaint_events::Severity::High,
            channel: plaint_events::Channel::Letter,
            vip: true,
            filed_at: at(0),
            first_response_at: Some(at(30)),
            resolved_at: None,
            closed_at: Some(at(90)),
            assignee: Some("ana".into()),
            team: None,
            escalation_tier: Some(3),
            reopen_count: 2,
            sla_breaches: 1,
            last_event_at: at(120),
            version: 9,
            last_seq: 1 << 40,
        };
        let row = plaint_projection::encode_row(&state);
        assert_eq!(
            plaint_projection::decode_row::<ComplaintState>(&row),
            Ok(state)
        );
    }

    #[test]
    fn complaints_beyond_the_capacity_leave_memory_and_come_back_for_an_event() {
        let mut p = ComplaintsProjector::with_capacity(1);
        let mut rows = BTreeMap::new();
        for (seq, e) in [
            fixtures::filed("C-1", "eu", "billing", at(0)),
            fixtures::filed("C-2", "us", "billing", at(1)),
            fixtures::resolved("C-1", at(60)),
        ]
        .iter()
        .enumerate()
        {
            p.apply(seq as u64 + 1, &event(e));
        }
        plaint_projection::apply_changes(&mut rows, p.take_changes());
        p.evict();
        assert_eq!(p.resident(), 1, "one complaint stays");
        assert!(p.get("C-1").is_none(), "the least recently touched left");
        let archived = p.read("C-1", &rows).unwrap().unwrap();
        assert_eq!(archived.status, Status::Resolved);
        assert_eq!(p.read("C-2", &rows).unwrap().unwrap().status, Status::Open);
        assert_eq!(p.read("C-9", &rows).unwrap(), None);

        let reopened = event(&fixtures::reopened("C-1", at(90)));
        let mut keys = Vec::new();
        p.rows_needed(&reopened, &mut keys);
        assert_eq!(keys, vec![b"c/C-1".to_vec()]);
        p.page_in(&keys[0], rows.get(&keys[0]).map(Vec::as_slice))
            .unwrap();
        p.apply(4, &reopened);
        let c = p.get("C-1").unwrap();
        assert_eq!((c.status, c.reopen_count, c.version), (Status::Open, 1, 3));
        plaint_projection::apply_changes(&mut rows, p.take_changes());
        let keys: Vec<&[u8]> = rows.keys().map(Vec::as_slice).collect();
        assert_eq!(keys, [b"c/C-1".as_slice(), b"c/C-2", b"n/counts"]);
        let counts = p.counts();
        assert_eq!(counts.total, 2);
        assert_eq!(counts.by_status.get("open"), Some(&2));
        assert_eq!(counts.by_status.get("resolved"), None);
    }

    proptest::proptest! {
        /// Paging out, paging in and restarting leave the rows (and so the digest) as
        /// keeping everything in memory does.
        #[test]
        fn rows_do_not_depend_on_what_stayed_in_memory(
            steps in proptest::collection::vec((0u8..6, 0usize..8), 1..120),
            batch in 1usize..9,
            restart_every in 0usize..4,
            capacity in 0usize..4,
        ) {
            use plaint_projection::paging::{PagedRun, PagingSchedule};
            let mut filed = [false; 8];
            let mut events = Vec::new();
            for (i, (kind, c)) in steps.into_iter().enumerate() {
                let id = format!("C-{c}");
                let t = at(i as i64);
                let value = if !filed[c] {
                    filed[c] = true;
                    fixtures::filed(&id, ["eu", "us"][c % 2], "billing", t)
                } else {
                    match kind {
                        0 => fixtures::acknowledged(&id, t),
                        1 => fixtures::contacted(&id, t),
                        2 => fixtures::resolved(&id, t),
                        3 => fixtures::reopened(&id, t),
                        _ => fixtures::closed(&id, t),
                    }
                };
                events.push(event(&value));
            }
            let mut kept = PagedRun::new(ComplaintsProjector::new());
            kept.run(&events, PagingSchedule { batch, restart_every: 0, evict: false }, ComplaintsProjector::new).unwrap();
            let paged_projector = || ComplaintsProjector::with_capacity(capacity);
            let mut paged = PagedRun::new(paged_projector());
            paged.run(&events, PagingSchedule { batch, restart_every, evict: true }, paged_projector).unwrap();
            proptest::prop_assert_eq!(&paged.rows, &kept.rows);
            proptest::prop_assert_eq!(paged.projector.counts(), kept.projector.counts());
        }
    }

    /// A view written before rows were binary restores as it is.
    #[test]
    fn json_rows_of_older_versions_restore() {
        let mut p = ComplaintsProjector::new();
        p.apply(1, &event(&fixtures::filed("C-1", "eu", "billing", at(0))));
        let (key, _) = p.take_changes().remove(0);
        let json = serde_json::to_vec(p.get("C-1").unwrap()).unwrap();
        let mut q = ComplaintsProjector::new();
        q.restore(&mut std::iter::once((key, json))).unwrap();
        assert_eq!(q.get("C-1"), p.get("C-1"));
    }
}
