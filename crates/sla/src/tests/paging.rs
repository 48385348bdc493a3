//! Paging: cold complaints leave memory once their rows are committed, come back before
//! an event about them, and are read from their rows by queries. Nothing the projector
//! decides, persists or reports may depend on what stayed in memory.

use plaint_projection::apply_changes;
use plaint_projection::paging::{PagedRun, PagingSchedule};
use plaint_projection::{ProjectionError, RowSource, ViewRow};

use super::*;

fn fresh() -> SlaProjector {
    SlaProjector::new(config()).unwrap()
}

/// Complaints the projector keeps track of in memory: in full, or armed and paged out.
fn tracked(projector: &SlaProjector) -> usize {
    projector.resident() + projector.paged_out()
}

/// One projector paged as the runner pages it (its committed rows in `rows`), one that
/// keeps everything in memory, fed the same events.
struct PagedAndKept {
    paged: SlaProjector,
    rows: Rows,
    kept: SlaProjector,
    seq: u64,
}

impl PagedAndKept {
    fn new() -> Self {
        PagedAndKept {
            paged: fresh(),
            rows: Rows::new(),
            kept: fresh(),
            seq: 0,
        }
    }

    /// Applies to both (paging in first what the event needs); their effects agree.
    fn apply_event(&mut self, event: &Event) -> Vec<Effect> {
        self.seq += 1;
        let mut keys = Vec::new();
        self.paged.rows_needed(event, &mut keys);
        for key in keys {
            let row = self.rows.row(&key).unwrap();
            self.paged.page_in(&key, row.as_deref()).unwrap();
        }
        let effects = self.paged.apply(self.seq, event);
        assert_eq!(effects, self.kept.apply(self.seq, event), "{event:?}");
        effects
    }

    fn apply(&mut self, complaint: &str, time: &str, body: EventBody) -> Vec<Effect> {
        self.apply_event(&event(complaint, t(time), body))
    }

    /// Commits the paged projector's rows and evicts, as after a batch.
    fn commit(&mut self) {
        apply_changes(&mut self.rows, self.paged.take_changes());
        self.paged.evict();
    }

    /// Ticks both, paging in first what the tick fires, as the runner does.
    fn tick(&mut self, now: &str) -> Vec<Effect> {
        let mut keys = Vec::new();
        self.paged.rows_due(t(now), &mut keys);
        for key in keys {
            let row = self.rows.row(&key).unwrap();
            self.paged.page_in(&key, row.as_deref()).unwrap();
        }
        let effects = self.paged.tick(t(now));
        assert_eq!(effects, self.kept.tick(t(now)), "tick at {now}");
        effects
    }

    fn write_back(&mut self, effects: &[Effect]) {
        for effect in effects {
            if let Effect::AppendEvent { event, .. } = effect {
                self.apply_event(event);
            }
        }
    }

    fn read(&self, complaint: &str, now: &str) -> Option<ComplaintSla> {
        let state = self
            .paged
            .read_complaint(complaint, &self.rows, t(now))
            .unwrap();
        assert_eq!(state, self.kept.complaint(complaint, t(now)));
        state
    }

    /// The breaches query over the paged projector's committed rows (commit first): what
    /// the kept one answers over its rows, and what the in-memory query answered.
    fn breaches(&self, filter: &SlaFilter, now: &str) -> Vec<SlaItem> {
        let items = self.paged.breaches(filter, &self.rows, t(now)).unwrap();
        let kept_rows: Rows = self.kept.rows().into_iter().collect();
        assert_eq!(
            items,
            self.kept.breaches(filter, &kept_rows, t(now)).unwrap()
        );
        assert_eq!(items, self.kept.breaches_in_memory(filter, t(now)));
        items
    }

    fn metric(&self, complaint: &str, now: &str, metric: SlaMetric) -> MetricSla {
        let state = self.read(complaint, now).unwrap();
        state
            .metrics
            .into_iter()
            .find(|m| m.metric == metric)
            .unwrap()
    }
}

#[test]
fn an_armed_complaint_paged_out_keeps_its_timers_and_comes_back_when_one_fires() {
    let mut p = PagedAndKept::new();
    p.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    p.apply(
        "c2",
        "2025-01-06T10:00:00Z",
        filed_body("us-east", "delivery", false),
    );
    p.commit();
    // Both are open with deadlines to come: their rows are live, and (the tests keep no
    // armed complaint whole) only their timers and a stub stay in memory.
    assert_eq!((p.paged.resident(), p.paged.paged_out()), (0, 2));
    assert_eq!(p.paged.armed_timers(), p.kept.armed_timers());
    let paged_c1 = p.paged.complaint("c1", t("2025-01-06T10:30:00Z"));
    assert!(paged_c1.is_none(), "not whole in memory");
    // Queries answer as if they had stayed: next_due from the stub, the complaint and
    // the at-risk list from the live rows.
    assert_eq!(p.paged.next_due("c1"), p.kept.next_due("c1"));
    assert!(p.paged.next_due("c1").is_some());
    assert!(p.read("c1", "2025-01-06T10:30:00Z").is_some());
    let at_risk = p
        .paged
        .at_risk(&SlaFilter::default(), &p.rows, t("2025-01-06T10:50:00Z"))
        .unwrap();
    assert_eq!(
        at_risk,
        p.kept
            .at_risk(&SlaFilter::default(), &NoRows, t("2025-01-06T10:50:00Z"))
            .unwrap()
    );
    assert_eq!(
        at_risk.len(),
        2,
        "both first responses (due 11:00) are at risk at 10:50"
    );
    let query = ComplianceQuery::default();
    assert_eq!(
        p.paged.compliance(&query, &p.rows).unwrap(),
        p.kept.compliance(&query, &NoRows).unwrap()
    );

    // The tick that fires their timers asks for their rows first.
    let mut keys = Vec::new();
    p.paged.rows_due(t("2025-01-06T11:00:00Z"), &mut keys);
    keys.sort();
    keys.dedup();
    assert_eq!(keys, vec![b"c/c1".to_vec(), b"c/c2".to_vec()]);
    let effects = p.tick("2025-01-06T11:00:00Z");
    assert_eq!(breach_events(&effects).len(), 2);
    assert_eq!(p.paged.resident(), 2, "paged in for the tick");
    p.commit();
    assert_eq!((p.paged.resident(), p.paged.paged_out()), (0, 2));
    p.write_back(&effects);
    p.commit();

    // An event about one brings its live row back before it is applied.
    let ack_c1 = event("c1", t("2025-01-06T11:30:00Z"), ack());
    let mut keys = Vec::new();
    p.paged.rows_needed(&ack_c1, &mut keys);
    assert_eq!(keys, vec![b"c/c1".to_vec()]);
    p.apply_event(&ack_c1);
    p.commit();
    let kept_rows: Rows = p.kept.rows().into_iter().collect();
    assert_eq!(p.rows, kept_rows);

    // A live row gone from the view while memory refers to it is an error naming the row,
    // not a silent loss of its timers.
    let mut keys = Vec::new();
    p.paged.rows_due(t("2025-01-08T00:00:00Z"), &mut keys);
    assert!(!keys.is_empty());
    let error = p.paged.page_in(&keys[0], None).unwrap_err();
    assert!(
        matches!(&error, ProjectionError::MissingRow { projector: "sla", key } if key.starts_with("c/")),
        "{error:?}"
    );
    assert!(error.to_string().contains("plaint rebuild sla"), "{error}");
}

#[test]
fn a_resolved_complaint_leaves_memory_and_its_clocks_continue_when_reopened() {
    let mut p = PagedAndKept::new();
    p.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    p.apply(
        "c2",
        "2025-01-06T10:00:00Z",
        filed_body("us-east", "delivery", false),
    );
    p.apply("c1", "2025-01-06T10:10:00Z", ack());
    // Resolved after 3h: nothing can fire for c1 any more.
    p.apply("c1", "2025-01-06T13:00:00Z", resolved());
    p.commit();
    assert_eq!(tracked(&p.paged), 1, "only the open complaint stays");
    assert!(p.paged.complaint("c1", t("2025-01-06T14:00:00Z")).is_none());
    assert!(p.rows.contains_key(b"a/c1".as_slice()));
    assert!(!p.rows.contains_key(b"c/c1".as_slice()));
    assert!(p.rows.contains_key(b"c/c2".as_slice()));
    assert_eq!(
        p.paged.resident_prefixes(),
        vec![b"c/".to_vec()],
        "a restart reads only the live rows"
    );

    // Its state and its outcomes are still reported, from its row.
    let state = p.read("c1", "2025-01-06T14:00:00Z").unwrap();
    assert_eq!(state.status, ComplaintStatus::Resolved);
    assert_eq!(
        p.metric("c1", "2025-01-06T14:00:00Z", SlaMetric::Resolution)
            .state,
        "met"
    );
    assert_eq!(p.read("never-filed", "2025-01-06T14:00:00Z"), None);
    let query = ComplianceQuery {
        group_by: vec![GroupBy::Region, GroupBy::Metric],
        ..ComplianceQuery::default()
    };
    let report = p.paged.compliance(&query, &p.rows).unwrap();
    assert_eq!(report, p.kept.compliance(&query, &NoRows).unwrap());
    // First response, resolution, and the two periodic-update cycles ended by the
    // acknowledgement and the resolution: all met.
    assert_eq!((report.total.count, report.total.met), (4, 4));
    assert!(report
        .rows
        .iter()
        .all(|r| r.region.as_deref() == Some("eu-west")));

    // Reopened at 15:00: the row comes back, and the resolution clock resumes with the 3h
    // already used, as if the complaint had never left memory.
    let reopening = event("c1", t("2025-01-06T15:00:00Z"), reopened());
    let mut keys = Vec::new();
    p.paged.rows_needed(&reopening, &mut keys);
    assert_eq!(keys, vec![b"a/c1".to_vec()]);
    p.apply_event(&reopening);
    assert_eq!(tracked(&p.paged), 2);
    let resolution = p.metric("c1", "2025-01-06T16:00:00Z", SlaMetric::Resolution);
    assert_eq!(
        (
            resolution.state.as_str(),
            resolution.due_at,
            resolution.used_seconds
        ),
        ("running", Some(t("2025-01-06T20:00:00Z")), hours(4))
    );
    p.commit();
    assert!(p.rows.contains_key(b"c/c1".as_slice()));
    assert!(
        !p.rows.contains_key(b"a/c1".as_slice()),
        "moved back to the live rows"
    );
    assert_eq!(tracked(&p.paged), 2);

    // Its timers fire as they would have: the new periodic-update cycle at 19:00, the
    // resumed resolution at 20:00.
    let effects = p.tick("2025-01-06T20:00:00Z");
    let c1_breaches: Vec<(SlaMetric, Timestamp)> = breach_events(&effects)
        .into_iter()
        .filter(|b| b.region == "eu-west")
        .map(|b| (b.metric, b.due_at))
        .collect();
    assert_eq!(
        c1_breaches,
        vec![
            (SlaMetric::PeriodicUpdate, t("2025-01-06T19:00:00Z")),
            (SlaMetric::Resolution, t("2025-01-06T20:00:00Z")),
        ]
    );
    p.write_back(&effects);
    p.commit();
    let eu_west = SlaFilter {
        region: Some("eu-west".into()),
        ..SlaFilter::default()
    };
    let listed: Vec<(SlaMetric, Timestamp)> = p
        .breaches(&eu_west, "2025-01-06T21:00:00Z")
        .into_iter()
        .map(|item| (item.metric, item.due_at))
        .collect();
    assert_eq!(listed, c1_breaches);
}

#[test]
fn a_complaint_closed_with_a_recorded_breach_leaves_memory_and_its_breach_still_counts() {
    let mut p = PagedAndKept::new();
    p.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    p.apply(
        "c1",
        "2025-01-06T10:10:00Z",
        promised("2025-01-06T11:00:00Z"),
    );
    // The first response and the promise breach; their events come back.
    let effects = p.tick("2025-01-06T11:30:00Z");
    assert_eq!(breach_events(&effects).len(), 2);
    p.write_back(&effects);
    p.commit();
    // Recorded breaches of an open complaint are listed; its resolution still runs, so
    // it stays.
    assert_eq!(tracked(&p.paged), 1);
    let now = t("2025-01-06T12:00:00Z");
    assert_eq!(
        p.breaches(&SlaFilter::default(), "2025-01-06T12:00:00Z")
            .len(),
        2
    );

    p.apply(
        "c1",
        "2025-01-06T12:00:00Z",
        EventBody::Closed(ComplaintClosed { by: None }),
    );
    p.commit();
    assert_eq!(tracked(&p.paged), 0);
    assert!(p.rows.keys().all(|k| k.starts_with(b"a/")));
    assert!(p
        .breaches(&SlaFilter::default(), "2025-01-06T12:00:00Z")
        .is_empty());
    let state = p.read("c1", "2025-01-06T12:00:00Z").unwrap();
    assert_eq!(state.status, ComplaintStatus::Closed);
    for filter in [
        SlaFilter::default(),
        SlaFilter {
            region: Some("eu-west".into()),
            metric: Some(SlaMetric::Callback),
            ..SlaFilter::default()
        },
        SlaFilter {
            region: Some("mars".into()),
            ..SlaFilter::default()
        },
    ] {
        let query = ComplianceQuery {
            group_by: vec![GroupBy::Metric],
            filter,
            ..ComplianceQuery::default()
        };
        assert_eq!(
            p.paged.compliance(&query, &p.rows).unwrap(),
            p.kept.compliance(&query, &NoRows).unwrap()
        );
    }
    let all = p
        .paged
        .compliance(&ComplianceQuery::default(), &p.rows)
        .unwrap();
    assert!(all.total.breached >= 2, "{all:?}");

    // After a restart only the live rows are read: memory holds nothing, and the reports
    // still come from the archive (names memory never saw included).
    let mut restarted = fresh();
    let live: Vec<ViewRow> = p.rows.rows_with_prefix(b"c/").map(Result::unwrap).collect();
    restarted.restore(&mut live.into_iter()).unwrap();
    assert_eq!(tracked(&restarted), 0);
    let query = ComplianceQuery {
        group_by: vec![GroupBy::Region, GroupBy::Category, GroupBy::Metric],
        filter: SlaFilter {
            region: Some("eu-west".into()),
            ..SlaFilter::default()
        },
        ..ComplianceQuery::default()
    };
    assert_eq!(
        restarted.compliance(&query, &p.rows).unwrap(),
        p.kept.compliance(&query, &NoRows).unwrap()
    );
    assert_eq!(
        restarted.read_complaint("c1", &p.rows, now).unwrap(),
        p.kept.complaint("c1", now)
    );
}

#[test]
fn a_complaint_paged_in_and_left_unchanged_leaves_again() {
    let mut p = PagedAndKept::new();
    p.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    p.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        EventBody::Withdrawn(ComplaintWithdrawn { reason: None }),
    );
    p.commit();
    assert_eq!(tracked(&p.paged), 0);
    // A breach record for a deadline it no longer has: paged in, changes nothing.
    let stale = event(
        "c1",
        t("2025-01-06T11:00:00Z"),
        EventBody::SlaBreached(SlaBreached {
            metric: SlaMetric::FirstResponse,
            policy: "standard".into(),
            region: "eu-west".into(),
            due_at: t("2025-01-06T11:00:00Z"),
            target_seconds: hours(1),
            met_at: None,
            late_by_seconds: None,
        }),
    );
    p.apply_event(&stale);
    assert_eq!(tracked(&p.paged), 1);
    assert!(
        p.paged.take_changes().is_empty(),
        "paging in changes nothing"
    );
    p.paged.evict();
    assert_eq!(tracked(&p.paged), 0);
}

/// A rebuild evicts before it takes the next batch's changes (once the previous batch is
/// committed): a cold complaint changed in the meantime must stay until taken.
#[test]
fn a_cold_complaint_changed_since_the_last_take_stays_until_taken() {
    let mut p = PagedAndKept::new();
    p.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "delivery", false),
    );
    p.apply("c1", "2025-01-06T10:10:00Z", ack());
    p.apply("c1", "2025-01-06T11:00:00Z", resolved());
    apply_changes(&mut p.rows, p.paged.take_changes());
    // Still cold once closed, but changed after the take.
    p.apply(
        "c1",
        "2025-01-06T12:00:00Z",
        EventBody::Closed(ComplaintClosed { by: None }),
    );
    p.paged.evict();
    assert_eq!(tracked(&p.paged), 1, "its change is not taken yet");
    p.commit();
    assert_eq!(tracked(&p.paged), 0);
    assert_eq!(
        p.read("c1", "2025-01-06T13:00:00Z").unwrap().status,
        ComplaintStatus::Closed
    );
}

#[test]
fn timers_due_together_fire_in_complaint_order_whatever_slots_they_hold() {
    let mut p = PagedAndKept::new();
    let filed = || filed_body("us-east", "delivery", false);
    p.apply("a", "2025-01-06T10:00:00Z", filed());
    p.apply("p", "2025-01-06T10:00:00Z", filed());
    p.apply(
        "a",
        "2025-01-06T10:00:00Z",
        EventBody::Withdrawn(ComplaintWithdrawn { reason: None }),
    );
    p.commit();
    // The paged projector gives q the slot a left, below p's; the other a new one.
    p.apply("q", "2025-01-06T10:00:00Z", filed());
    let effects = p.tick("2025-01-06T11:00:00Z");
    let order: Vec<&str> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::AppendEvent { event, .. } => Some(event.complaint_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec!["p", "q"]);
}

/// The keys of the breach rows, as `<complaint>#<timer>`.
fn breach_rows(rows: &Rows) -> Vec<String> {
    rows.keys()
        .filter(|k| k.starts_with(b"b/"))
        .map(|k| String::from_utf8_lossy(&k[16..]).into_owned())
        .collect()
}

/// Files c1 (standard policy, 24x7: first response 1h, periodic update 4h, resolution
/// 8h) and c2 (billing: business hours in Paris, first response 2h, resolution 8h) on
/// Monday 2025-01-06 at 10:00Z and never answers them; ticks past every deadline and writes
/// the breaches back. Nothing can fire for either any more.
fn every_deadline_breached() -> PagedAndKept {
    let mut p = PagedAndKept::new();
    p.apply(
        "c1",
        "2025-01-06T10:00:00Z",
        filed_body("us-east", "delivery", false),
    );
    p.apply(
        "c2",
        "2025-01-06T10:00:00Z",
        filed_body("eu-west", "billing", false),
    );
    p.commit();
    assert_eq!(tracked(&p.paged), 2);
    let effects = p.tick("2025-01-07T12:00:00Z");
    assert_eq!(breach_events(&effects).len(), 5);
    p.write_back(&effects);
    p.commit();
    p
}

#[test]
fn an_open_complaint_whose_every_deadline_is_breached_leaves_memory_and_is_still_listed() {
    let p = every_deadline_breached();
    assert_eq!(tracked(&p.paged), 0, "nothing can fire: both left memory");
    assert_eq!(p.paged.resident_items(), Some(0));
    assert_eq!(p.paged.armed_timers(), (0, 0));
    assert_eq!(p.kept.resident(), 2);
    assert!(p.rows.contains_key(b"a/c1".as_slice()));
    assert!(p.rows.contains_key(b"a/c2".as_slice()));
    assert_eq!(
        breach_rows(&p.rows),
        ["c1#00000", "c2#00000", "c1#00002", "c1#00001", "c2#00001"],
        "in deadline order"
    );

    // Listed as the in-memory query listed them, the time used and how late at the query's
    // now (checked against the kept projector and the former in-memory query).
    for now in ["2025-01-07T12:00:00Z", "2025-01-08T12:00:00Z"] {
        let items = p.breaches(&SlaFilter::default(), now);
        let listed: Vec<(&str, SlaMetric, Timestamp)> = items
            .iter()
            .map(|i| (i.complaint_id.as_str(), i.metric, i.due_at))
            .collect();
        assert_eq!(
            listed,
            [
                ("c1", SlaMetric::FirstResponse, t("2025-01-06T11:00:00Z")),
                ("c2", SlaMetric::FirstResponse, t("2025-01-06T12:00:00Z")),
                ("c1", SlaMetric::PeriodicUpdate, t("2025-01-06T14:00:00Z")),
                ("c1", SlaMetric::Resolution, t("2025-01-06T18:00:00Z")),
                // 6 business hours on Monday (11:00-17:00 in Paris), 2 on Tuesday.
                ("c2", SlaMetric::Resolution, t("2025-01-07T10:00:00Z")),
            ]
        );
        for item in &items {
            let metric = p.metric(&item.complaint_id, now, item.metric);
            assert_eq!(
                (item.used_seconds, item.late_by_seconds, item.paused),
                (
                    metric.used_seconds,
                    t(now).as_second() - item.due_at.as_second(),
                    false
                ),
                "{item:?}"
            );
            assert!(item.breach_recorded && item.fraction_used > 1.0, "{item:?}");
        }
        let c2_resolution = &items[4];
        // Tuesday 13:00 in Paris: 6 h on Monday and 4 h; Wednesday: 8 h more.
        let expected = if now.starts_with("2025-01-07") {
            hours(10)
        } else {
            hours(18)
        };
        assert_eq!(c2_resolution.used_seconds, expected);
    }

    // Filters and the limit, as before.
    let now = "2025-01-08T12:00:00Z";
    for (filter, count) in [
        (
            SlaFilter {
                region: Some("eu-west".into()),
                ..SlaFilter::default()
            },
            2,
        ),
        (
            SlaFilter {
                policy: Some("standard".into()),
                metric: Some(SlaMetric::Resolution),
                ..SlaFilter::default()
            },
            1,
        ),
        (
            SlaFilter {
                category: Some("billing".into()),
                limit: Some(1),
                ..SlaFilter::default()
            },
            1,
        ),
        (
            SlaFilter {
                limit: Some(0),
                ..SlaFilter::default()
            },
            0,
        ),
        (
            SlaFilter {
                region: Some("mars".into()),
                ..SlaFilter::default()
            },
            0,
        ),
    ] {
        assert_eq!(p.breaches(&filter, now).len(), count, "{filter:?}");
    }

    // A restart reads the live rows only (there are none) and still lists them all.
    let mut restarted = fresh();
    let live: Vec<ViewRow> = p.rows.rows_with_prefix(b"c/").map(Result::unwrap).collect();
    restarted.restore(&mut live.into_iter()).unwrap();
    assert_eq!(tracked(&restarted), 0);
    assert_eq!(
        restarted
            .breaches(&SlaFilter::default(), &p.rows, t(now))
            .unwrap(),
        p.breaches(&SlaFilter::default(), now)
    );
}

#[test]
fn breach_rows_follow_the_complaint_when_it_is_resolved_reopened_met_and_closed() {
    let mut p = every_deadline_breached();
    let listed = |p: &PagedAndKept, now: &str| -> Vec<(String, SlaMetric)> {
        p.breaches(&SlaFilter::default(), now)
            .into_iter()
            .map(|i| (i.complaint_id, i.metric))
            .collect()
    };

    // Resolved: the resolution is met (late) and the periodic update ends; the first
    // response, stopped, stays breached and listed. Nothing is armed: c1 leaves again.
    p.apply("c1", "2025-01-07T13:00:00Z", resolved());
    p.commit();
    assert_eq!(tracked(&p.paged), 0);
    assert_eq!(breach_rows(&p.rows), ["c1#00000", "c2#00000", "c2#00001"]);
    let first_response = &p.breaches(
        &SlaFilter {
            metric: Some(SlaMetric::FirstResponse),
            region: Some("us-east".into()),
            ..SlaFilter::default()
        },
        "2025-01-07T14:00:00Z",
    )[0];
    assert_eq!(
        (first_response.paused, first_response.used_seconds),
        (true, hours(27)),
        "stopped at the resolution"
    );

    // Reopened: the resolution resumes with its breach (same deadline), a new periodic
    // update cycle is armed, so c1 is live again.
    p.apply("c1", "2025-01-07T15:00:00Z", reopened());
    p.commit();
    assert_eq!(tracked(&p.paged), 1);
    assert!(p.rows.contains_key(b"c/c1".as_slice()));
    assert_eq!(
        listed(&p, "2025-01-07T16:00:00Z"),
        [
            ("c1".to_string(), SlaMetric::FirstResponse),
            ("c2".to_string(), SlaMetric::FirstResponse),
            ("c1".to_string(), SlaMetric::Resolution),
            ("c2".to_string(), SlaMetric::Resolution),
        ]
    );

    // Acknowledged: the first response is met (late), no longer listed.
    p.apply("c1", "2025-01-07T16:00:00Z", ack());
    p.commit();
    assert_eq!(breach_rows(&p.rows), ["c2#00000", "c1#00001", "c2#00001"]);

    // Closed (c1) and withdrawn (c2): history, listed no more; both leave memory.
    p.apply(
        "c1",
        "2025-01-07T17:00:00Z",
        EventBody::Closed(ComplaintClosed { by: None }),
    );
    p.apply(
        "c2",
        "2025-01-07T17:00:00Z",
        EventBody::Withdrawn(ComplaintWithdrawn { reason: None }),
    );
    p.commit();
    assert!(breach_rows(&p.rows).is_empty());
    assert!(listed(&p, "2025-01-08T00:00:00Z").is_empty());
    assert_eq!(tracked(&p.paged), 0);
    assert_eq!(
        digest_rows(p.rows.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))),
        p.kept.digest()
    );
}

/// Every query answered by `paged` (over its rows) as by `kept` (over its own).
fn same_answers(
    paged: &SlaProjector,
    paged_rows: &Rows,
    kept: &SlaProjector,
    kept_rows: &Rows,
    ids: &BTreeSet<String>,
) -> Result<(), TestCaseError> {
    for now in [t("2025-03-07T13:00:00Z"), t("2025-03-20T00:00:00Z")] {
        for id in ids.iter().map(String::as_str).chain(["never-filed"]) {
            prop_assert_eq!(
                paged.read_complaint(id, paged_rows, now).unwrap(),
                kept.read_complaint(id, kept_rows, now).unwrap(),
                "{}",
                id
            );
            prop_assert_eq!(paged.next_due(id), kept.next_due(id), "{}", id);
        }
        let filter = SlaFilter::default();
        prop_assert_eq!(
            paged.at_risk(&filter, paged_rows, now).unwrap(),
            kept.at_risk(&filter, kept_rows, now).unwrap()
        );
        // A limited answer is the head of the full one, whatever is paged out.
        for limit in [0, 1, 2] {
            let limited = SlaFilter {
                limit: Some(limit),
                ..SlaFilter::default()
            };
            let full = kept.at_risk(&filter, kept_rows, now).unwrap();
            prop_assert_eq!(
                paged.at_risk(&limited, paged_rows, now).unwrap(),
                full[..limit.min(full.len())].to_vec()
            );
        }
        // Breaches are read from the rows: paged out or not, and as the in-memory query
        // of a projector that kept everything answered.
        for filter in [
            filter,
            SlaFilter {
                region: Some("eu-west".into()),
                ..SlaFilter::default()
            },
            SlaFilter {
                metric: Some(SlaMetric::Resolution),
                limit: Some(1),
                ..SlaFilter::default()
            },
            SlaFilter {
                policy: Some("business".into()),
                ..SlaFilter::default()
            },
        ] {
            let breaches = paged.breaches(&filter, paged_rows, now).unwrap();
            prop_assert_eq!(&breaches, &kept.breaches(&filter, kept_rows, now).unwrap());
            prop_assert_eq!(&breaches, &kept.breaches_in_memory(&filter, now));
        }
    }
    for (group_by, region) in [
        (vec![GroupBy::Policy, GroupBy::Metric], None),
        (
            vec![GroupBy::Region, GroupBy::Category],
            Some("us-east".to_string()),
        ),
    ] {
        let query = ComplianceQuery {
            group_by,
            filter: SlaFilter {
                region,
                ..SlaFilter::default()
            },
            ..ComplianceQuery::default()
        };
        prop_assert_eq!(
            paged.compliance(&query, paged_rows).unwrap(),
            kept.compliance(&query, kept_rows).unwrap()
        );
    }
    Ok(())
}

fn complaint_ids(log: &[Event]) -> BTreeSet<String> {
    log.iter().map(|e| e.complaint_id.clone()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Live, with ticks and breach events coming back: paging out after every step changes
    /// no effect, no row and no answer.
    #[test]
    fn a_paged_live_history_has_the_effects_rows_and_answers_of_a_kept_one(
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let (log, effects, mut kept) = run_live(&steps);
        let mut rows = Rows::new();
        let (paged_log, paged_effects, paged) = run_live_with(&steps, Some(&mut rows));
        prop_assert_eq!(&paged_log, &log);
        prop_assert_eq!(&paged_effects, &effects);
        let mut kept_rows = Rows::new();
        apply_changes(&mut kept_rows, kept.take_changes());
        prop_assert_eq!(&rows, &kept_rows);
        prop_assert_eq!(
            digest_rows(rows.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))),
            rebuild(&log).digest()
        );
        prop_assert!(tracked(&paged) <= kept.resident());
        // Only complaints with an armed timer stay (the crate's tests keep no cold cache).
        prop_assert_eq!(tracked(&paged), rows.keys().filter(|k| k.starts_with(b"c/")).count());
        // and those are paged out: the tests keep no armed complaint in full either.
        prop_assert_eq!(paged.resident(), 0);
        same_answers(&paged, &rows, &kept, &kept_rows, &complaint_ids(&log))?;
    }

    /// Driven in batches as the runner drives it, with restarts that read the live rows
    /// only: the rows (so the digest) do not depend on what stayed in memory, nor do the
    /// effects without restarts, nor any query.
    #[test]
    fn rows_do_not_depend_on_what_stayed_in_memory(
        steps in prop::collection::vec(step(), 1..80),
        batch in 1usize..9,
        restart_every in 0usize..4,
    ) {
        let (log, _, _) = run_live(&steps);
        let mut kept = PagedRun::new(fresh());
        kept.run(&log, PagingSchedule { batch, restart_every: 0, evict: false }, fresh).unwrap();
        let mut paged = PagedRun::new(fresh());
        paged.run(&log, PagingSchedule { batch, restart_every, evict: true }, fresh).unwrap();
        prop_assert_eq!(&paged.rows, &kept.rows);
        if restart_every == 0 {
            prop_assert_eq!(&paged.effects, &kept.effects);
        }
        prop_assert_eq!(
            digest_rows(paged.rows.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))),
            rebuild(&log).digest()
        );
        same_answers(&paged.projector, &paged.rows, &kept.projector, &kept.rows, &complaint_ids(&log))?;
    }
}

#[test]
fn the_generated_histories_page_complaints_out_and_back_in() {
    // Guards the properties against testing nothing: a history of the generator whose
    // complaints go cold, are paged out, and come back (reopened, closed).
    let event = |complaint, kind, minutes| Step::Event {
        complaint,
        kind,
        minutes,
    };
    // c1 (24x7 policy): acknowledged, resolved, reopened, breached, closed; c0 withdrawn.
    let steps = [
        event(0, 0, 0),
        event(1, 0, 5),
        event(1, 1, 10),
        event(1, 7, 60),
        Step::Tick { minutes: 10 },
        event(0, 10, 5),
        event(1, 8, 60),
        Step::Tick { minutes: 600 },
        Step::Deliver { count: 3 },
        event(1, 9, 60),
    ];
    let (log, effects, kept) = run_live(&steps);
    let mut rows = Rows::new();
    let (_, paged_effects, paged) = run_live_with(&steps, Some(&mut rows));
    assert_eq!(paged_effects, effects);
    assert!(breach_events(&effects).len() >= 2, "{log:#?}");
    assert_eq!((kept.resident(), tracked(&paged)), (2, 0));
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        vec![b"a/c0".to_vec(), b"a/c1".to_vec()]
    );
    let mut run = PagedRun::new(fresh());
    let schedule = PagingSchedule {
        batch: 2,
        restart_every: 0,
        evict: true,
    };
    run.run(&log, schedule, fresh).unwrap();
    assert_eq!(run.rows, rows);
}

#[test]
fn the_generated_histories_page_out_open_complaints_whose_every_deadline_is_breached() {
    // Guards the properties: c1 (24x7 policy) is never answered; ten hours later its first
    // response, periodic update and resolution are breached, the breaches come back, and
    // it leaves memory while the breaches query lists it.
    let steps = [
        Step::Event {
            complaint: 1,
            kind: 0,
            minutes: 0,
        },
        Step::Tick { minutes: 600 },
        Step::Deliver { count: 3 },
    ];
    let (log, _, kept) = run_live(&steps);
    let mut rows = Rows::new();
    let (_, _, paged) = run_live_with(&steps, Some(&mut rows));
    assert_eq!((kept.resident(), tracked(&paged)), (1, 0));
    assert_eq!(rows.keys().filter(|k| k.starts_with(b"b/")).count(), 3);
    assert!(rows.contains_key(b"a/c1".as_slice()));
    let now = t("2025-03-08T00:00:00Z");
    let listed = paged.breaches(&SlaFilter::default(), &rows, now).unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed, kept.breaches_in_memory(&SlaFilter::default(), now));
    assert_eq!(
        digest_rows(rows.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))),
        rebuild(&log).digest()
    );
}
