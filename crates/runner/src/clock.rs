use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use plaint_events::Timestamp;
use tokio::sync::Notify;

/// Where the runner gets the time. Injected so that tests move time by hand.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    /// Sleeps for up to `duration` of this clock's time (a manual clock wakes early when
    /// it is advanced).
    fn sleep(&self, duration: Duration) -> BoxFuture<'_, ()>;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock that moves only when told to. Sleepers wake whenever it moves.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Timestamp>>,
    moved: Arc<Notify>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock { now: Arc::new(Mutex::new(start)), moved: Arc::new(Notify::new()) }
    }

    pub fn set(&self, to: Timestamp) {
        *self.now.lock().unwrap() = to;
        self.moved.notify_waiters();
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap();
        *now = now.checked_add(by).expect("clock in range");
        drop(now);
        self.moved.notify_waiters();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap()
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'_, ()> {
        // Wake on a move of the clock, or after the real duration as a safety net so a
        // forgotten advance cannot hang a test forever.
        let moved = self.moved.clone();
        Box::pin(async move {
            tokio::select! {
                _ = moved.notified() => {}
                _ = tokio::time::sleep(duration) => {}
            }
        })
    }
}
