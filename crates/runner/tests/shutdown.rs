//! A runner told to stop while its effects cannot be delivered (NATS down) stops, and
//! leaves the batch uncommitted so that the next start repeats the effects.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};
use std::time::Duration;

use futures::future::BoxFuture;
use plaint_events::Event;
mod common;

use plaint_projection::{Effect, Projection, ProjectionError, ViewChange, ViewRow};
use plaint_runner::{EffectSink, ManualClock, Runner, RunnerOptions};
use plaint_testkit::fixtures::{at, filed};
use tokio_util::sync::CancellationToken;

/// One alert per event, nothing else.
struct AlertPerEvent;

impl Projection for AlertPerEvent {
    fn name(&self) -> &'static str {
        "alert_per_event"
    }

    fn apply(&mut self, seq: u64, _event: &Event) -> Vec<Effect> {
        vec![Effect::Publish {
            subject: "alerts.test".into(),
            msg_id: format!("alert-{seq}"),
            payload: Vec::new(),
        }]
    }

    fn take_changes(&mut self) -> Vec<ViewChange> {
        Vec::new()
    }

    fn restore(&mut self, _rows: &mut dyn Iterator<Item = ViewRow>) -> Result<(), ProjectionError> {
        Ok(())
    }
}

/// A sink whose every delivery fails, as with NATS down.
#[derive(Default)]
struct Unreachable {
    attempts: AtomicUsize,
}

impl EffectSink for Unreachable {
    fn carry_out(&self, _: &'static str, _: Vec<Effect>) -> BoxFuture<'_, Result<(), String>> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err("no responders".to_owned()) })
    }
}

#[tokio::test]
async fn stopping_while_effects_fail_returns_promptly_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open_log(dir.path());
    common::append(&log, &filed("C-1", "eu", "billing", at(0)));

    let sink = Arc::new(Unreachable::default());
    let runner = Runner::new(
        log.clone(),
        AlertPerEvent,
        sink.clone(),
        Arc::new(ManualClock::new(at(0))),
        RunnerOptions::default(),
    )
    .unwrap();
    let handle = runner.handle();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(runner.run(shutdown.clone()));
    while sink.attempts.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the runner stops although its effects keep failing")
        .unwrap()
        .unwrap();
    assert_eq!(
        handle.checkpoint(),
        0,
        "the batch whose effects were not delivered is not committed"
    );
}
