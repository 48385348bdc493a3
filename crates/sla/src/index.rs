//! [`DeadlineIndex`]: every armed timer ordered by the time it fires.
//!
//! A timer is one deadline of one complaint: a clock metric (first response, resolution,
//! periodic update) or one callback promise. Each armed timer has two entries: its warn
//! time (the at-risk threshold) and its due time. Both live in ordered sets keyed by
//! `(time, complaint slot, timer)`, so arming, disarming and firing are O(log n) and a tick
//! only touches the entries that are due.
//!
//! Due entries are popped when they fire. Warn entries stay until the timer is disarmed,
//! because they also answer "which items are at risk now" (every warn entry at or before
//! `now`); a cursor remembers how far warnings have been sent, and warn entries armed
//! behind the cursor (a clock resumed when it was already past its warn time) wait in a
//! small pending list for the next tick. Each warn entry carries its timer's due time, so
//! that the at-risk query orders and pages its items by deadline without reading the
//! complaints (some of which may be paged out).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// Timer ids within a complaint: 0..=2 are the clock metrics, `CALLBACK_BASE + serial`
/// the callback promises.
pub(crate) const CALLBACK_BASE: u16 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeadlineKey {
    pub at: i64,
    pub slot: u32,
    pub timer: u16,
}

impl DeadlineKey {
    fn last_at(at: i64) -> DeadlineKey {
        DeadlineKey {
            at,
            slot: u32::MAX,
            timer: u16::MAX,
        }
    }
}

/// Warn and due entries of every armed timer.
#[derive(Debug, Clone)]
pub struct DeadlineIndex {
    /// Warn entry → the timer's due time.
    warn: BTreeMap<DeadlineKey, i64>,
    due: BTreeSet<DeadlineKey>,
    /// Warn entries up to and including this key have been handed to a tick.
    warned_through: DeadlineKey,
    /// Warn entries armed at or behind the cursor since the last tick.
    pending_warns: Vec<DeadlineKey>,
}

impl Default for DeadlineIndex {
    fn default() -> Self {
        DeadlineIndex {
            warn: BTreeMap::new(),
            due: BTreeSet::new(),
            warned_through: DeadlineKey {
                at: i64::MIN,
                slot: 0,
                timer: 0,
            },
            pending_warns: Vec::new(),
        }
    }
}

impl DeadlineIndex {
    pub(crate) fn arm(&mut self, slot: u32, timer: u16, warn_at: i64, due_at: i64) {
        let warn_key = DeadlineKey {
            at: warn_at,
            slot,
            timer,
        };
        if self.warn.insert(warn_key, due_at).is_none() && warn_key <= self.warned_through {
            self.pending_warns.push(warn_key);
        }
        self.due.insert(DeadlineKey {
            at: due_at,
            slot,
            timer,
        });
    }

    pub(crate) fn disarm(&mut self, slot: u32, timer: u16, warn_at: i64, due_at: i64) {
        self.warn.remove(&DeadlineKey {
            at: warn_at,
            slot,
            timer,
        });
        self.due.remove(&DeadlineKey {
            at: due_at,
            slot,
            timer,
        });
    }

    /// Warn entries that became due by `now` and were not handed out before, in key
    /// order. Entries disarmed in the meantime are skipped.
    ///
    /// At most `limit` entries past the cursor are handed out; the rest stay behind it for
    /// the next call (and `next_wakeup` says so).
    pub(crate) fn take_warnings(&mut self, now: i64, limit: usize) -> Vec<DeadlineKey> {
        let mut fired: Vec<DeadlineKey> = std::mem::take(&mut self.pending_warns)
            .into_iter()
            .filter(|key| key.at <= now && self.warn.contains_key(key))
            .collect();
        let until = DeadlineKey::last_at(now);
        if until > self.warned_through {
            let before = fired.len();
            fired.extend(
                self.warn
                    .range((Bound::Excluded(self.warned_through), Bound::Included(until)))
                    .take(limit)
                    .map(|(key, _)| *key),
            );
            self.warned_through = match fired.last() {
                Some(last) if fired.len() - before == limit => *last,
                _ => until,
            };
        }
        fired.sort_unstable();
        fired.dedup();
        fired
    }

    /// The warn entries [`DeadlineIndex::take_warnings`] would hand out now, without taking
    /// them (some may come twice): what `rows_due` pages in before the tick.
    pub(crate) fn peek_warnings(
        &self,
        now: i64,
        limit: usize,
    ) -> impl Iterator<Item = &DeadlineKey> + '_ {
        let pending = self
            .pending_warns
            .iter()
            .filter(move |key| key.at <= now && self.warn.contains_key(key));
        let until = DeadlineKey::last_at(now);
        let fresh = (until > self.warned_through).then(|| {
            self.warn
                .range((Bound::Excluded(self.warned_through), Bound::Included(until)))
                .take(limit)
                .map(|(key, _)| key)
        });
        pending.chain(fresh.into_iter().flatten())
    }

    /// The due entries [`DeadlineIndex::take_due`] would pop now, without popping them.
    pub(crate) fn peek_due(&self, now: i64, limit: usize) -> impl Iterator<Item = &DeadlineKey> {
        self.due
            .iter()
            .take_while(move |key| key.at <= now)
            .take(limit)
    }

    /// The due time of the timer behind a warn entry, if it is armed.
    pub(crate) fn warn_due(&self, key: &DeadlineKey) -> Option<i64> {
        self.warn.get(key).copied()
    }

    /// Whether the timer is armed with these times. (Its due entry may be gone: a tick
    /// pops it when it fires, and the timer stays armed until its breach comes back.)
    pub(crate) fn holds(&self, slot: u32, timer: u16, warn_at: i64, due_at: i64) -> bool {
        let warn = DeadlineKey {
            at: warn_at,
            slot,
            timer,
        };
        self.warn.get(&warn) == Some(&due_at)
    }

    /// Pops the due entries at or before `now`, in time order, at most `limit` of them.
    pub(crate) fn take_due(&mut self, now: i64, limit: usize) -> Vec<DeadlineKey> {
        let mut fired = Vec::new();
        while let Some(first) = self.due.first() {
            if first.at > now || fired.len() == limit {
                break;
            }
            fired.push(self.due.pop_first().expect("first exists"));
        }
        fired
    }

    /// Every warn entry at or before `now`, with its timer's due time: the timers at risk
    /// or overdue.
    pub(crate) fn warned_by(&self, now: i64) -> impl Iterator<Item = (&DeadlineKey, &i64)> {
        self.warn.range(..=DeadlineKey::last_at(now))
    }

    /// A second before which every armed warn entry was handed to a tick (`None` before
    /// the first tick): what a restart takes back so as not to warn again.
    pub(crate) fn warned_before(&self) -> Option<i64> {
        if self.warned_through.at == i64::MIN {
            return None;
        }
        // Entries at the cursor's own second may not all be handed out (a limited take).
        let pending = self.pending_warns.iter().map(|k| k.at).min();
        Some(pending.map_or(self.warned_through.at, |p| p.min(self.warned_through.at)))
    }

    /// Takes back [`DeadlineIndex::warned_before`] after the timers are armed again: warn
    /// entries before that second count as handed out.
    pub(crate) fn restore_warned_before(&mut self, before: i64) {
        let through = DeadlineKey {
            at: before.saturating_sub(1),
            slot: u32::MAX,
            timer: u16::MAX,
        };
        self.warned_through = self.warned_through.max(through);
    }

    /// The earliest time a tick would have something to do.
    pub(crate) fn next_wakeup(&self) -> Option<i64> {
        let pending = self.pending_warns.iter().map(|k| k.at).min();
        let warn = self
            .warn
            .range((Bound::Excluded(self.warned_through), Bound::Unbounded))
            .next()
            .map(|(k, _)| k.at);
        let due = self.due.first().map(|k| k.at);
        [pending, warn, due].into_iter().flatten().min()
    }

    pub(crate) fn len(&self) -> (usize, usize) {
        (self.warn.len(), self.due.len())
    }

    pub(crate) fn clear(&mut self) {
        *self = DeadlineIndex::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_entries_fire_once_in_time_order() {
        let mut index = DeadlineIndex::default();
        index.arm(1, 0, 50, 100);
        index.arm(2, 0, 20, 40);
        assert_eq!(index.next_wakeup(), Some(20));
        assert_eq!(
            index
                .take_due(100, usize::MAX)
                .iter()
                .map(|k| k.slot)
                .collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert!(index.take_due(1000, usize::MAX).is_empty());
    }

    #[test]
    fn warnings_are_handed_out_once_and_rearmed_ones_behind_the_cursor_later() {
        let mut index = DeadlineIndex::default();
        index.arm(1, 0, 50, 100);
        assert!(index.take_warnings(49, usize::MAX).is_empty());
        assert_eq!(index.take_warnings(60, usize::MAX).len(), 1);
        assert!(index.take_warnings(70, usize::MAX).is_empty());
        // Disarmed and armed again with an earlier warn time (a new deadline).
        index.disarm(1, 0, 50, 100);
        index.arm(1, 0, 40, 200);
        assert_eq!(index.next_wakeup(), Some(40));
        assert_eq!(
            index.take_warnings(70, usize::MAX),
            vec![DeadlineKey {
                at: 40,
                slot: 1,
                timer: 0
            }]
        );
        // Still listed as at risk, but not handed out again.
        assert_eq!(index.warned_by(70).count(), 1);
        assert!(index.take_warnings(80, usize::MAX).is_empty());
    }

    #[test]
    fn a_peek_shows_what_the_next_take_hands_out() {
        let mut index = DeadlineIndex::default();
        for slot in 0..6 {
            index.arm(slot, 0, 10 + i64::from(slot), 20 + i64::from(slot));
        }
        assert_eq!(index.take_warnings(11, usize::MAX).len(), 2);
        // A timer re-armed behind the cursor waits in the pending list.
        index.disarm(0, 0, 10, 20);
        index.arm(0, 0, 5, 30);
        for (now, limit) in [(12, 1), (15, 2), (40, 3), (40, usize::MAX)] {
            let mut peeked: Vec<DeadlineKey> = index.peek_warnings(now, limit).copied().collect();
            peeked.sort_unstable();
            peeked.dedup();
            let due: Vec<DeadlineKey> = index.peek_due(now, limit).copied().collect();
            assert_eq!(peeked, index.take_warnings(now, limit), "warnings at {now}");
            assert_eq!(due, index.take_due(now, limit), "due at {now}");
        }
        assert_eq!(
            index.warn_due(&DeadlineKey {
                at: 5,
                slot: 0,
                timer: 0
            }),
            Some(30)
        );
        assert!(index.holds(0, 0, 5, 30) && !index.holds(0, 0, 10, 20));
    }

    #[test]
    fn a_limited_take_leaves_the_rest_for_the_next_one_in_the_same_order() {
        let mut index = DeadlineIndex::default();
        for slot in 0..5 {
            index.arm(slot, 0, 10 + i64::from(slot), 100 + i64::from(slot));
        }
        let warned: Vec<u32> = [2, 2, 2]
            .into_iter()
            .flat_map(|limit| index.take_warnings(50, limit))
            .map(|k| k.slot)
            .collect();
        assert_eq!(warned, vec![0, 1, 2, 3, 4]);
        assert!(index.take_warnings(50, 2).is_empty());
        assert_eq!(index.next_wakeup(), Some(100));
        assert_eq!(index.take_due(200, 3).len(), 3);
        assert_eq!(index.next_wakeup(), Some(103), "the rest is due at once");
        let rest: Vec<u32> = index.take_due(200, 3).iter().map(|k| k.slot).collect();
        assert_eq!(rest, vec![3, 4]);
    }
}
