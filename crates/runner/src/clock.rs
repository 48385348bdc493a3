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
        ManualClock {
            now: Arc::new(Mutex::new(start)),
            moved: Arc::new(Notify::new()),
        }
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

/// A monotonic time source (seconds since an arbitrary origin), injectable for tests.
pub trait Monotonic: Send + Sync + 'static {
    fn elapsed(&self) -> Duration;
}

/// `std::time::Instant` since creation.
#[derive(Debug, Clone, Copy)]
pub struct InstantMonotonic(std::time::Instant);

impl Default for InstantMonotonic {
    fn default() -> Self {
        InstantMonotonic(std::time::Instant::now())
    }
}

impl Monotonic for InstantMonotonic {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Guards projectors against jumps of the machine's wall clock.
///
/// The time it reports follows the wall clock while the wall clock moves like the
/// monotonic clock (within `tolerance`). When the wall clock jumps ahead (an NTP step, a
/// wrong manual setting), the reported time moves toward it at most `catch_up` times
/// faster than real time, so deadlines due in the skipped span fire spread out rather than
/// all at once. When the wall clock jumps back, the reported time keeps advancing with the
/// monotonic clock (it never goes backwards) until the wall clock catches up, so timers
/// never stall. Every jump is logged.
pub struct JumpGuardClock<C, M = InstantMonotonic> {
    wall: C,
    monotonic: M,
    tolerance: Duration,
    catch_up: u32,
    state: Mutex<Option<(Timestamp, Duration)>>,
}

impl<C: Clock> JumpGuardClock<C> {
    pub fn new(wall: C) -> Self {
        Self::with_monotonic(
            wall,
            InstantMonotonic::default(),
            Duration::from_secs(2),
            10,
        )
    }
}

impl<C: Clock, M: Monotonic> JumpGuardClock<C, M> {
    pub fn with_monotonic(wall: C, monotonic: M, tolerance: Duration, catch_up: u32) -> Self {
        JumpGuardClock {
            wall,
            monotonic,
            tolerance,
            catch_up: catch_up.max(1),
            state: Mutex::new(None),
        }
    }
}

impl<C: Clock, M: Monotonic> Clock for JumpGuardClock<C, M> {
    fn now(&self) -> Timestamp {
        let wall = self.wall.now();
        let mono = self.monotonic.elapsed();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some((last, last_mono)) = *state else {
            *state = Some((wall, mono));
            return wall;
        };
        let step = mono.saturating_sub(last_mono);
        let expected = last.checked_add(step).unwrap_or(last);
        let ahead = wall.duration_since(expected);
        let tolerance = jiff::SignedDuration::try_from(self.tolerance).unwrap_or_default();
        let now = if ahead.abs() <= tolerance {
            wall
        } else if ahead.is_positive() {
            let allowed = jiff::SignedDuration::try_from(step * self.catch_up).unwrap_or_default();
            if ahead > allowed {
                tracing::warn!(
                    jump_s = ahead.as_secs(),
                    "wall clock jumped ahead; catching up gradually"
                );
            }
            expected.checked_add(ahead.min(allowed)).unwrap_or(expected)
        } else {
            tracing::warn!(
                jump_s = ahead.as_secs(),
                "wall clock jumped back; keeping monotonic time"
            );
            expected
        };
        *state = Some((now, mono));
        now
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'_, ()> {
        self.wall.sleep(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct FakeMonotonic(Arc<Mutex<Duration>>);

    impl FakeMonotonic {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Monotonic for FakeMonotonic {
        fn elapsed(&self) -> Duration {
            *self.0.lock().unwrap()
        }
    }

    fn setup() -> (
        ManualClock,
        FakeMonotonic,
        JumpGuardClock<ManualClock, FakeMonotonic>,
    ) {
        let wall = ManualClock::new("2026-01-05T09:00:00Z".parse().unwrap());
        let mono = FakeMonotonic::default();
        let guard =
            JumpGuardClock::with_monotonic(wall.clone(), mono.clone(), Duration::from_secs(2), 10);
        (wall, mono, guard)
    }

    /// Moves wall and monotonic time together by `secs`, one second at a time, and returns
    /// the guarded times seen.
    fn tick(
        wall: &ManualClock,
        mono: &FakeMonotonic,
        guard: &impl Clock,
        secs: u64,
    ) -> Vec<Timestamp> {
        (0..secs)
            .map(|_| {
                wall.advance(Duration::from_secs(1));
                mono.advance(Duration::from_secs(1));
                guard.now()
            })
            .collect()
    }

    #[test]
    fn follows_a_steady_wall_clock_exactly() {
        let (wall, mono, guard) = setup();
        guard.now();
        let seen = tick(&wall, &mono, &guard, 5);
        assert_eq!(*seen.last().unwrap(), wall.now());
    }

    #[test]
    fn a_jump_ahead_is_caught_up_gradually_not_at_once() {
        let (wall, mono, guard) = setup();
        let start = guard.now();
        wall.advance(Duration::from_secs(3600));
        let seen = tick(&wall, &mono, &guard, 1);
        // One real second later the guarded clock moved at most 10 s + 1 s, not an hour.
        assert!(seen[0].duration_since(start).as_secs() <= 11);
        let seen = tick(&wall, &mono, &guard, 400);
        assert_eq!(
            *seen.last().unwrap(),
            wall.now(),
            "caught up within 400 s at 10x"
        );
        assert!(seen.windows(2).all(|w| w[1] >= w[0]), "monotone");
    }

    #[test]
    fn a_jump_back_never_moves_time_backwards_and_never_stalls() {
        let (wall, mono, guard) = setup();
        guard.now();
        tick(&wall, &mono, &guard, 10);
        let before = guard.now();
        wall.set(
            before
                .checked_sub(jiff::SignedDuration::from_hours(1))
                .unwrap(),
        );
        let seen = tick(&wall, &mono, &guard, 30);
        assert!(seen[0] > before, "time keeps advancing");
        assert_eq!(
            seen.last().unwrap().duration_since(before).as_secs(),
            30,
            "at the monotonic rate"
        );
    }
}
