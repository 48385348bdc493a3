//! `rebuild` against a real sled log: decoded ahead on its own thread, rows written on
//! another, the same view as a live runner, and a damaged entry stops it by name.

use std::sync::Arc;

use plaint_complaints::ComplaintsProjector;
mod common;

use common::open_log as open;
use plaint_log::{Candidate, ExpectedVersion, Log};
use plaint_runner::{
    rebuild, view_digest, DiscardEffects, ManualClock, Runner, RunnerError, RunnerOptions,
    ViewStore,
};
use plaint_testkit::fixtures::{acknowledged, at, bytes, filed, resolved};
use tokio_util::sync::CancellationToken;

async fn rebuild_complaints(log: &Log) -> Result<plaint_runner::RebuildReport, RunnerError> {
    rebuild(
        log,
        ComplaintsProjector::new(),
        RunnerOptions::default(),
        |_| {},
    )
    .await
}

/// Appends `segments` batches, each one segment with several complaints' events.
fn fill(log: &Log, segments: usize) -> u64 {
    let first = log.last_seq();
    for s in 0..segments {
        let mut events = Vec::new();
        for c in 0..7 {
            let id = format!("C-{first}-{s}-{c}");
            events.push(filed(&id, "eu-west", "delivery", at(c)));
            events.push(acknowledged(&id, at(c + 5)));
            if c % 2 == 0 {
                events.push(resolved(&id, at(c + 60)));
            }
        }
        append_segment(log, &events);
    }
    log.last_seq()
}

/// Appends `events` as one segment; each must be new.
fn append_segment(log: &Log, events: &[serde_json::Value]) {
    let writer = log.writer();
    let mut batch = writer.begin();
    let encoded: Vec<Vec<u8>> = events.iter().map(bytes).collect();
    for raw in &encoded {
        let event = plaint_events::decode_stored(raw).unwrap();
        let outcome = writer
            .stage(
                &mut batch,
                Candidate {
                    event: &event,
                    bytes: raw,
                    subject_region: None,
                    expected: ExpectedVersion::Any,
                },
            )
            .unwrap();
        assert!(matches!(outcome, plaint_log::Outcome::Appended(_)));
    }
    writer.commit(batch).unwrap();
}

#[tokio::test]
async fn rebuild_equals_a_live_runner_that_caught_up_in_batches_cutting_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let head = fill(&log, 6);
    assert!(head > 100);

    // Live: batches of 4 events end in the middle of segments.
    let mut live = Runner::new(
        log.clone(),
        ComplaintsProjector::new(),
        Arc::new(DiscardEffects),
        Arc::new(ManualClock::new(at(0))),
        RunnerOptions {
            batch_size: 4,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(live.catch_up().await.unwrap(), head);
    let (live_digest, live_checkpoint) = view_digest(&log, "complaints").unwrap();
    assert_eq!(live_checkpoint, head);
    drop(live);

    let mut reached = Vec::new();
    let report = rebuild(
        &log,
        ComplaintsProjector::new(),
        RunnerOptions::default(),
        |seq| reached.push(seq),
    )
    .await
    .unwrap();
    assert_eq!(report.events, head);
    assert_eq!(report.checkpoint, head);
    assert_eq!(reached.last(), Some(&head), "progress reaches the head");
    assert!(reached.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(report.digest, live_digest);

    // A second rebuild gives the same digest again (deterministic across threads).
    let again = rebuild_complaints(&log).await.unwrap();
    assert_eq!(again.digest, live_digest);
}

#[tokio::test]
async fn rebuild_of_an_empty_log_is_an_empty_view() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let report = rebuild_complaints(&log).await.unwrap();
    assert_eq!(report.events, 0);
    assert_eq!(report.checkpoint, 0);
}

#[tokio::test]
async fn an_entry_that_does_not_decode_stops_the_rebuild_and_names_its_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let head = fill(&log, 3);
    // The log stores the bytes it is given: an event whose stored bytes are not its JSON
    // stands for a damaged entry.
    let raw = bytes(&filed("C-bad", "eu-west", "delivery", at(0)));
    let event = plaint_events::decode_stored(&raw).unwrap();
    let damaged = b"{\"specversion\":\"1.0\", this is not json".to_vec();
    log.writer()
        .append_one(Candidate {
            event: &event,
            bytes: &damaged,
            subject_region: None,
            expected: ExpectedVersion::Any,
        })
        .unwrap();
    fill(&log, 2);

    let result = rebuild_complaints(&log).await;
    match result {
        Err(RunnerError::Undecodable { seq, .. }) => assert_eq!(seq, head + 1),
        other => panic!("expected Undecodable at {}, got {other:?}", head + 1),
    }
}

/// Complaints resolved in one segment and reopened or closed in later ones: with small
/// batches they are paged out between their events, by the live runner and the rebuild.
fn fill_with_late_events(log: &Log) -> u64 {
    use plaint_testkit::fixtures::{closed, reopened};
    let mut segments: Vec<Vec<serde_json::Value>> = Vec::new();
    for s in 0..4i64 {
        let mut events = Vec::new();
        for c in 0..6 {
            let id = format!("P-{s}-{c}");
            events.push(filed(&id, "eu-west", "delivery", at(s * 100 + c)));
            events.push(resolved(&id, at(s * 100 + c + 30)));
        }
        if s > 0 {
            for c in 0..6 {
                let id = format!("P-{}-{c}", s - 1);
                let t = at(s * 100 + 50 + c);
                events.push(if c % 2 == 0 {
                    reopened(&id, t)
                } else {
                    closed(&id, t)
                });
            }
        }
        segments.push(events);
    }
    for events in segments {
        append_segment(log, &events);
    }
    log.last_seq()
}

#[tokio::test]
async fn paged_out_complaints_come_back_alike_in_live_batches_and_in_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let head = fill_with_late_events(&log);
    let small = RunnerOptions {
        batch_size: 5,
        rebuild_batch: 7,
        ..Default::default()
    };
    let mut live = Runner::new(
        log.clone(),
        ComplaintsProjector::with_capacity(2),
        Arc::new(DiscardEffects),
        Arc::new(ManualClock::new(at(0))),
        small.clone(),
    )
    .unwrap();
    assert_eq!(live.catch_up().await.unwrap(), head);
    let handle = live.handle();
    let (live_digest, _) = view_digest(&log, "complaints").unwrap();
    {
        let view = handle.lock();
        assert!(view.resident() <= 2, "{} resident", view.resident());
        assert_eq!(view.counts().total, 24);
        assert_eq!(view.counts().by_status.get("open"), Some(&9));
        let closed = view.read("P-0-1", handle.rows()).unwrap().unwrap();
        assert_eq!(closed.status, plaint_complaints::Status::Closed);
        assert_eq!(closed.version, 3);
        let reopened = view.read("P-1-2", handle.rows()).unwrap().unwrap();
        assert_eq!((reopened.reopen_count, reopened.version), (1, 3));
    }
    drop(live);

    let report = rebuild(
        &log,
        ComplaintsProjector::with_capacity(2),
        small.clone(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.digest, live_digest);

    // A restart restores only the counts, and answers about every complaint.
    let restarted = Runner::new(
        log.clone(),
        ComplaintsProjector::new(),
        Arc::new(DiscardEffects),
        Arc::new(ManualClock::new(at(0))),
        small,
    )
    .unwrap();
    let handle = restarted.handle();
    let view = handle.lock();
    assert_eq!(view.resident(), 0);
    assert_eq!(view.counts().total, 24);
    assert!(view.read("P-3-5", handle.rows()).unwrap().is_some());
}

/// A log of late events in a temporary directory, with the `complaints` view rebuilt over
/// it: the view of the current layout that the migration tests forge older ones against.
async fn log_with_rebuilt_complaints() -> (tempfile::TempDir, Log, u64, plaint_runner::RebuildReport)
{
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let head = fill_with_late_events(&log);
    let report = rebuild_complaints(&log).await.unwrap();
    (dir, log, head, report)
}

/// Starts a `complaints` runner on `log` and checks that its view is the rebuilt one.
fn start_complaints_and_expect(log: &Log, digest: &str, head: u64) -> Runner<ComplaintsProjector> {
    let runner = Runner::new(
        log.clone(),
        ComplaintsProjector::new(),
        Arc::new(DiscardEffects),
        Arc::new(ManualClock::new(at(0))),
        RunnerOptions::default(),
    )
    .unwrap();
    assert_eq!(runner.handle().checkpoint(), head);
    assert_eq!(
        view_digest(log, "complaints").unwrap(),
        (digest.to_owned(), head)
    );
    runner
}

#[tokio::test]
async fn a_view_of_an_older_row_layout_is_rebuilt_when_the_runner_starts() {
    let (_dir, log, head, report) = log_with_rebuilt_complaints().await;
    let store = forge_layout_1_view(&log, head);
    let mut runner = start_complaints_and_expect(&log, &report.digest, head);
    assert_eq!(store.layout().unwrap(), Some(2));
    assert_eq!(runner.catch_up().await.unwrap(), 0);
}

#[tokio::test]
async fn a_view_an_older_plaint_kept_in_sled_is_dropped_and_rebuilt() {
    let (_dir, log, head, report) = log_with_rebuilt_complaints().await;
    ViewStore::open(log.path(), "complaints", ViewStore::DEFAULT_CACHE_BYTES)
        .unwrap()
        .clear()
        .unwrap();
    // Before views moved to redb they were sled trees beside the log's.
    let legacy = log.db().open_tree("view/complaints").unwrap();
    legacy
        .insert(b"\x00checkpoint", &head.to_be_bytes())
        .unwrap();
    legacy.insert(b"c/P-1-1", b"an old row".as_slice()).unwrap();
    start_complaints_and_expect(&log, &report.digest, head);
    assert!(!log
        .db()
        .tree_names()
        .iter()
        .any(|name| name.as_ref() == b"view/complaints"));
}

/// Forges the `complaints` view of an older plaint (layout 1, a row of another shape).
fn forge_layout_1_view(log: &Log, head: u64) -> ViewStore {
    let store = ViewStore::open(log.path(), "complaints", ViewStore::DEFAULT_CACHE_BYTES).unwrap();
    store.set_layout(1).unwrap();
    let stale = (
        b"c/stale".to_vec(),
        Some(b"not a row of this layout".to_vec()),
    );
    store.commit(vec![stale], head).unwrap();
    store
}

#[tokio::test]
async fn a_deferred_rebuild_hands_out_the_view_at_once_and_rebuilds_it_in_run() {
    let (_dir, log, head, report) = log_with_rebuilt_complaints().await;
    let store = forge_layout_1_view(&log, head);
    let runner = Runner::new(
        log.clone(),
        ComplaintsProjector::new(),
        Arc::new(DiscardEffects),
        Arc::new(ManualClock::new(at(0))),
        RunnerOptions {
            defer_rebuild: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(runner.rebuild_pending());
    let handle = runner.handle();
    // Queries see an empty view at checkpoint 0, not the old layout's rows.
    assert_eq!(handle.checkpoint(), 0);
    assert_eq!(handle.lock().counts().total, 0);
    assert!(store.rebuild_interrupted().unwrap(), "marked until done");

    let shutdown = CancellationToken::new();
    let running = tokio::spawn(runner.run(shutdown.clone()));
    for _ in 0..1000 {
        if handle.checkpoint() == head {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(
        view_digest(&log, "complaints").unwrap(),
        (report.digest.clone(), head)
    );
    assert_eq!(store.layout().unwrap(), Some(2));
    assert!(!store.rebuild_interrupted().unwrap());
    // The next start restores it as it is.
    let runner = start_complaints_and_expect(&log, &report.digest, head);
    assert!(!runner.rebuild_pending());
}

#[tokio::test]
async fn a_rebuild_that_did_not_finish_is_done_again_at_the_next_start() {
    let (_dir, log, head, report) = log_with_rebuilt_complaints().await;
    // As a crash halfway through leaves it: marked, part of the rows, a checkpoint, and
    // the current layout (which alone would let a start catch up live from there).
    let store = ViewStore::open(log.path(), "complaints", ViewStore::DEFAULT_CACHE_BYTES).unwrap();
    store.begin_rebuild().unwrap();
    store.set_layout(2).unwrap();
    store
        .commit(
            vec![(b"c/P-1-1".to_vec(), Some(b"half".to_vec()))],
            head / 2,
        )
        .unwrap();
    let runner = start_complaints_and_expect(&log, &report.digest, head);
    assert!(!runner.rebuild_pending());
    assert!(!store.rebuild_interrupted().unwrap());
}
