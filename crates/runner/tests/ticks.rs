//! A runner acts on time only as far as the log holds upstream's input: a deadline does
//! not fire while an ingest backlog may hold the event that meets it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use plaint_events::{Event, Timestamp};
mod common;

use plaint_log::{InputWatermark, Log};
use plaint_projection::{Effect, Projection, ProjectionError, ViewChange, ViewRow};
use plaint_runner::{EffectSink, ManualClock, Runner, RunnerOptions};
use plaint_testkit::fixtures::{at, filed};
use tokio_util::sync::CancellationToken;

/// One deadline; its tick publishes the time it fired at.
struct Deadline {
    due: Timestamp,
    fired: bool,
}

impl Projection for Deadline {
    fn name(&self) -> &'static str {
        "deadline"
    }

    fn apply(&mut self, _seq: u64, _event: &Event) -> Vec<Effect> {
        Vec::new()
    }

    fn tick(&mut self, now: Timestamp) -> Vec<Effect> {
        if self.fired || now < self.due {
            return Vec::new();
        }
        self.fired = true;
        vec![Effect::Publish {
            subject: "alerts.deadline".into(),
            msg_id: "deadline".into(),
            payload: now.to_string().into_bytes(),
        }]
    }

    fn next_wakeup(&self) -> Option<Timestamp> {
        (!self.fired).then_some(self.due)
    }

    fn take_changes(&mut self) -> Vec<ViewChange> {
        Vec::new()
    }

    fn restore(&mut self, _rows: &mut dyn Iterator<Item = ViewRow>) -> Result<(), ProjectionError> {
        Ok(())
    }
}

/// Keeps the payloads of what it is given.
#[derive(Default)]
struct Recorded(Mutex<Vec<String>>);

impl EffectSink for Recorded {
    fn carry_out(
        &self,
        _: &'static str,
        effects: Vec<Effect>,
    ) -> BoxFuture<'_, Result<(), String>> {
        for effect in effects {
            if let Effect::Publish { payload, .. } = effect {
                self.0
                    .lock()
                    .unwrap()
                    .push(String::from_utf8(payload).unwrap());
            }
        }
        Box::pin(async { Ok(()) })
    }
}

impl Recorded {
    fn fired(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    async fn wait_for_one(&self) -> Vec<String> {
        for _ in 0..500 {
            if !self.fired().is_empty() {
                return self.fired();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the deadline did not fire");
    }
}

/// Starts a runner of one deadline at `due` that looks for wake-ups every 20 ms.
fn run_deadline(
    log: &Log,
    due: Timestamp,
    sink: &Arc<Recorded>,
    clock: Arc<ManualClock>,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), plaint_runner::RunnerError>>,
) {
    let runner = Runner::new(
        log.clone(),
        Deadline { due, fired: false },
        sink.clone(),
        clock,
        RunnerOptions {
            idle_tick: Duration::from_millis(20),
            ..Default::default()
        },
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(runner.run(shutdown.clone()));
    (shutdown, running)
}

#[tokio::test]
async fn a_deadline_waits_for_the_input_watermark_to_pass_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open_log(dir.path());
    let due = at(60);
    let clock = Arc::new(ManualClock::new(at(600)));
    let sink = Arc::new(Recorded::default());
    // Nothing known upstream (NATS not read yet), then a backlog published up to before
    // the deadline: wall time is long past the deadline, but nothing may fire.
    log.set_input_watermark(InputWatermark::Unknown);
    let (shutdown, running) = run_deadline(&log, due, &sink, clock);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        sink.fired().is_empty(),
        "nothing fires while upstream is unknown"
    );
    log.set_input_watermark(InputWatermark::Through(at(30)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        sink.fired().is_empty(),
        "nothing fires while the backlog may hold what meets the deadline"
    );

    // The backlog is read past the deadline: it fires, at the watermark, not at wall time.
    log.set_input_watermark(InputWatermark::Through(at(90)));
    assert_eq!(sink.wait_for_one().await, vec![at(90).to_string()]);

    shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn with_nothing_waiting_upstream_a_deadline_fires_at_wall_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open_log(dir.path());
    assert_eq!(log.input_watermark(), InputWatermark::Complete);
    let clock = Arc::new(ManualClock::new(at(600)));
    let sink = Arc::new(Recorded::default());
    let (shutdown, running) = run_deadline(&log, at(60), &sink, clock);
    assert_eq!(sink.wait_for_one().await, vec![at(600).to_string()]);
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// A reminder per complaint, due an hour after its filing, whose text lives only in the
/// view's row: memory keeps the due time and the row key, and the tick needs the row.
#[derive(Default)]
struct Reminders {
    /// Due time → row key, for every reminder not fired yet.
    due: std::collections::BTreeMap<(Timestamp, Vec<u8>), ()>,
    /// Rows written by `apply` and not taken yet.
    changes: Vec<ViewChange>,
    /// Rows paged in for the tick; dropped again by `evict`.
    paged_in: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    /// The most rows held in memory at once.
    most_paged_in: Arc<Mutex<usize>>,
}

impl Projection for Reminders {
    fn name(&self) -> &'static str {
        "reminders"
    }

    fn apply(&mut self, _seq: u64, event: &Event) -> Vec<Effect> {
        let key = format!("reminder/{}", event.complaint_id).into_bytes();
        let due = event
            .time
            .checked_add(jiff::SignedDuration::from_mins(60))
            .unwrap();
        self.due.insert((due, key.clone()), ());
        let text = format!("call {} back", event.complaint_id).into_bytes();
        self.changes.push((key, Some(text)));
        Vec::new()
    }

    fn rows_due(&self, now: Timestamp, keys: &mut Vec<Vec<u8>>) {
        keys.extend(
            self.due
                .keys()
                .take_while(|(due, _)| *due <= now)
                .map(|(_, key)| key.clone()),
        );
    }

    fn page_in(&mut self, key: &[u8], row: Option<&[u8]>) -> Result<(), ProjectionError> {
        self.paged_in
            .insert(key.to_vec(), row.expect("the row is committed").to_vec());
        let mut most = self.most_paged_in.lock().unwrap();
        *most = (*most).max(self.paged_in.len());
        Ok(())
    }

    fn tick(&mut self, now: Timestamp) -> Vec<Effect> {
        let mut effects = Vec::new();
        while let Some(((due, key), ())) = self.due.first_key_value() {
            if *due > now {
                break;
            }
            let text = self.paged_in.get(key).expect("rows_due paged the row in");
            effects.push(Effect::Publish {
                subject: "alerts.reminder".into(),
                msg_id: String::from_utf8_lossy(key).into_owned(),
                payload: text.clone(),
            });
            self.due.pop_first();
        }
        effects
    }

    fn evict(&mut self) {
        self.paged_in.clear();
    }

    fn next_wakeup(&self) -> Option<Timestamp> {
        self.due.keys().next().map(|(due, _)| *due)
    }

    fn take_changes(&mut self) -> Vec<ViewChange> {
        std::mem::take(&mut self.changes)
    }

    fn restore(&mut self, _rows: &mut dyn Iterator<Item = ViewRow>) -> Result<(), ProjectionError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_tick_gets_the_rows_of_the_timers_it_fires_and_lets_them_go_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open_log(dir.path());
    for (complaint, minute) in [("C-1", 0), ("C-2", 30)] {
        common::append(&log, &filed(complaint, "eu", "billing", at(minute)));
    }
    // Past C-1's reminder only.
    let clock = Arc::new(ManualClock::new(at(75)));
    let sink = Arc::new(Recorded::default());
    let most_paged_in = Arc::new(Mutex::new(0));
    let runner = Runner::new(
        log.clone(),
        Reminders {
            most_paged_in: most_paged_in.clone(),
            ..Default::default()
        },
        sink.clone(),
        clock.clone(),
        RunnerOptions {
            idle_tick: Duration::from_millis(20),
            ..Default::default()
        },
    )
    .unwrap();
    let handle = runner.handle();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(runner.run(shutdown.clone()));

    assert_eq!(sink.wait_for_one().await, vec!["call C-1 back".to_string()]);
    assert_eq!(
        *most_paged_in.lock().unwrap(),
        1,
        "only the row of the timer that fired"
    );
    clock.set(at(120));
    for _ in 0..500 {
        if sink.fired().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sink.fired(), vec!["call C-1 back", "call C-2 back"]);
    assert!(
        handle.lock().paged_in.is_empty(),
        "what a tick paged in leaves memory after it"
    );
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// Fires once per run and counts the runs that fired in its tick cursor.
struct CountsFirings {
    fired: u64,
    fired_now: bool,
    restored: Arc<Mutex<Option<u64>>>,
}

impl Projection for CountsFirings {
    fn name(&self) -> &'static str {
        "counts-firings"
    }

    fn apply(&mut self, _seq: u64, _event: &Event) -> Vec<Effect> {
        Vec::new()
    }

    fn tick(&mut self, _now: Timestamp) -> Vec<Effect> {
        if self.fired_now {
            return Vec::new();
        }
        self.fired_now = true;
        self.fired += 1;
        vec![Effect::Publish {
            subject: "alerts.count".into(),
            msg_id: self.fired.to_string(),
            payload: self.fired.to_string().into_bytes(),
        }]
    }

    fn tick_cursor(&self) -> Option<u64> {
        Some(self.fired)
    }

    fn restore_tick_cursor(&mut self, cursor: u64) {
        self.fired = cursor;
        *self.restored.lock().unwrap() = Some(cursor);
    }

    fn take_changes(&mut self) -> Vec<ViewChange> {
        Vec::new()
    }

    fn restore(&mut self, _rows: &mut dyn Iterator<Item = ViewRow>) -> Result<(), ProjectionError> {
        Ok(())
    }
}

#[tokio::test]
async fn the_tick_cursor_is_kept_beside_the_view_and_handed_back_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open_log(dir.path());
    for run in 1..=2u64 {
        let restored = Arc::new(Mutex::new(None));
        let sink = Arc::new(Recorded::default());
        let runner = Runner::new(
            log.clone(),
            CountsFirings {
                fired: 0,
                fired_now: false,
                restored: restored.clone(),
            },
            sink.clone(),
            Arc::new(ManualClock::new(at(0))),
            RunnerOptions {
                idle_tick: Duration::from_millis(20),
                ..Default::default()
            },
        )
        .unwrap();
        let expected_restored = (run > 1).then_some(run - 1);
        assert_eq!(*restored.lock().unwrap(), expected_restored);
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(runner.run(shutdown.clone()));
        assert_eq!(sink.wait_for_one().await, vec![run.to_string()]);
        shutdown.cancel();
        running.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_rebuild_keeps_the_tick_cursor_and_hands_it_to_the_rebuilt_projector() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open_log(dir.path());
    common::append(&log, &filed("C-1", "eu", "billing", at(0)));
    let store = plaint_runner::ViewStore::open(
        log.path(),
        "counts-firings",
        plaint_runner::ViewStore::DEFAULT_CACHE_BYTES,
    )
    .unwrap();
    // A view of another layout, whose runner had fired 7 times.
    store.set_layout(0).unwrap();
    store.commit(Vec::new(), 1).unwrap();
    store.set_tick_cursor(7).unwrap();
    let restored = Arc::new(Mutex::new(None));
    let runner = Runner::new(
        log.clone(),
        CountsFirings {
            fired: 0,
            fired_now: false,
            restored: restored.clone(),
        },
        Arc::new(Recorded::default()),
        Arc::new(ManualClock::new(at(0))),
        RunnerOptions::default(),
    )
    .unwrap();
    assert!(!runner.rebuild_pending(), "rebuilt in new");
    assert_eq!(store.layout().unwrap(), Some(1));
    assert_eq!(store.tick_cursor().unwrap(), Some(7));
    assert_eq!(*restored.lock().unwrap(), Some(7));
    assert_eq!(runner.handle().lock().fired, 7);
}
