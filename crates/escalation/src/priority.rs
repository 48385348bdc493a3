//! The order of a queue.
//!
//! Items are ordered by tier (highest first), then severity (most severe first), then SLA
//! urgency, then money at stake (most first), then age (oldest complaint first), then
//! complaint id (so the order is total and stable).
//!
//! SLA urgency: a breached item comes before any item that is not breached, and among
//! breached items the one breached longest ago (earliest missed deadline) comes first.
//! Among items not breached, the one whose next SLA deadline is nearest comes first, and
//! items without a known deadline come last. Both halves order by a point in time rather
//! than by a duration measured from `now` ("time since breach", "time to deadline"), which
//! gives the same order at every `now`: that is why the queue index never needs to be
//! re-sorted as time passes.
//!
//! Money at stake is compared across currencies as a multiple of the currency's frontline
//! authority limit (`tier_2_above`, or the lowest limit configured), so 150 EUR (1.5× a
//! 100 EUR limit) ranks above 10,000 JPY (0.67× a 15,000 JPY limit). Amounts in a currency
//! without limits rank as zero.

use std::cmp::{Ordering, Reverse};
use std::sync::Arc;

use jiff::Timestamp;
use plaint_events::{AmountAtStake, Severity};

use crate::config::EscalationConfig;

/// SLA urgency as far as the escalation view knows it (from `sla.breached` events).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Urgency {
    /// Breached: the earliest missed deadline. Declared first so it sorts first.
    Breached { since: Timestamp },
    /// Not breached: ordered among themselves by the next deadline, which only the SLA
    /// projector knows and which the queue query asks for.
    NotBreached,
}

/// The position of an item within its tier's queue, minus the next SLA deadline of items
/// not breached (see [`compare_with_deadlines`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PriorityKey {
    pub severity: Reverse<Severity>,
    pub urgency: Urgency,
    /// Millionths of the frontline authority limit, most first.
    pub money_rank: Reverse<i64>,
    pub filed_at: Timestamp,
    /// Shared with the view's id map, so that a key costs no allocation.
    pub complaint_id: Arc<str>,
}

/// A [`Timestamp`] in 12 bytes instead of 16, with the same order and every nanosecond,
/// for the queue index: a queued complaint keeps three of them in memory. Whole seconds
/// rounded down and the nanoseconds after them, so that the derived order is the order
/// of the points in time; 4-byte aligned (`packed(4)`) so that the index's keys and
/// values need no padding after one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(C, packed(4))]
pub(crate) struct CompactTime {
    second: i64,
    nanosecond: u32,
}

impl CompactTime {
    pub(crate) fn new(time: Timestamp) -> CompactTime {
        // jiff truncates towards zero: before the epoch, both parts are negative.
        let (second, nanosecond) = (time.as_second(), time.subsec_nanosecond());
        let (second, nanosecond) = if nanosecond < 0 {
            (second - 1, nanosecond + 1_000_000_000)
        } else {
            (second, nanosecond)
        };
        CompactTime {
            second,
            nanosecond: nanosecond.unsigned_abs(),
        }
    }

    pub(crate) fn timestamp(self) -> Timestamp {
        let nanosecond = i32::try_from(self.nanosecond).expect("below a second");
        Timestamp::new(self.second, nanosecond).expect("made from a Timestamp")
    }
}

/// The queue index's key: the order of [`PriorityKey`] (the same fields, compared the
/// same way) in 48 bytes instead of 72, since every queued complaint keeps one in memory
/// and a B-tree node holds room for eleven.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct IndexKey {
    /// The severity (most severe first) in the top byte, then the breach time's whole
    /// seconds (rounded down, offset to be positive) or, when not breached, all ones:
    /// `PriorityKey`'s severity and urgency in one word, without which the key would take
    /// 56 bytes.
    band: u64,
    /// The breach time's nanoseconds after its whole seconds; 0 when not breached.
    breach_nanosecond: u32,
    money_rank: Reverse<i64>,
    filed_at: CompactTime,
    complaint_id: Arc<str>,
}

impl IndexKey {
    /// Below the severity byte of `band`.
    const NOT_BREACHED: u64 = (1 << 56) - 1;
    /// Added to a breach time's seconds, which stay within ±2^39 (jiff's range).
    const SECOND_OFFSET: i64 = 1 << 39;

    pub(crate) fn new(
        severity: Severity,
        breached_since: Option<Timestamp>,
        money_rank: i64,
        filed_at: Timestamp,
        complaint_id: Arc<str>,
    ) -> IndexKey {
        // Written out rather than cast, so that a new severity must be placed here.
        let most_severe_first: u64 = match severity {
            Severity::Critical => 0,
            Severity::High => 1,
            Severity::Medium => 2,
            Severity::Low => 3,
        };
        let (since, breach_nanosecond) = match breached_since.map(CompactTime::new) {
            Some(CompactTime { second, nanosecond }) => {
                let since = u64::try_from(second + Self::SECOND_OFFSET)
                    .ok()
                    .filter(|since| *since < Self::NOT_BREACHED)
                    .expect("a Timestamp's seconds stay within ±2^39");
                (since, nanosecond)
            }
            None => (Self::NOT_BREACHED, 0),
        };
        IndexKey {
            band: most_severe_first << 56 | since,
            breach_nanosecond,
            money_rank: Reverse(money_rank),
            filed_at: CompactTime::new(filed_at),
            complaint_id,
        }
    }

    pub(crate) fn same_severity(&self, other: &IndexKey) -> bool {
        self.band >> 56 == other.band >> 56
    }

    pub(crate) fn is_breached(&self) -> bool {
        self.band & Self::NOT_BREACHED != Self::NOT_BREACHED
    }

    pub(crate) fn complaint_id(&self) -> &Arc<str> {
        &self.complaint_id
    }

    /// [`compare_with_deadlines`] of the [`PriorityKey`]s these keys stand for.
    pub(crate) fn compare_with_deadlines(
        a: &IndexKey,
        a_deadline: Option<Timestamp>,
        b: &IndexKey,
        b_deadline: Option<Timestamp>,
    ) -> Ordering {
        if !a.same_severity(b) || a.is_breached() || b.is_breached() {
            return a.cmp(b);
        }
        compare_deadlines(a_deadline, b_deadline).then_with(|| a.cmp(b))
    }
}

/// An amount as millionths of its currency's frontline authority limit.
pub fn money_rank(config: &EscalationConfig, amount: Option<&AmountAtStake>) -> i64 {
    let Some(amount) = amount else { return 0 };
    let Some(limit) = config
        .money
        .get(&amount.currency)
        .and_then(|l| l.frontline_limit())
    else {
        return 0;
    };
    if limit.ten_thousandths() <= 0 {
        return 0;
    }
    let rank = i128::from(amount.value.ten_thousandths()) * 1_000_000
        / i128::from(limit.ten_thousandths());
    i64::try_from(rank).unwrap_or(i64::MAX)
}

/// The documented order within one tier, with each item's next SLA deadline.
pub fn compare_with_deadlines(
    a: &PriorityKey,
    a_deadline: Option<Timestamp>,
    b: &PriorityKey,
    b_deadline: Option<Timestamp>,
) -> Ordering {
    a.severity
        .cmp(&b.severity)
        .then_with(|| match (&a.urgency, &b.urgency) {
            (Urgency::NotBreached, Urgency::NotBreached) => {
                compare_deadlines(a_deadline, b_deadline).then_with(|| {
                    (&a.money_rank, a.filed_at, &a.complaint_id).cmp(&(
                        &b.money_rank,
                        b.filed_at,
                        &b.complaint_id,
                    ))
                })
            }
            _ => a.urgency.cmp(&b.urgency).then_with(|| a.cmp(b)),
        })
}

/// Nearest deadline first; unknown deadlines last.
pub fn compare_deadlines(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// Across tiers: the higher tier first, then the within-tier order.
pub fn compare_across_tiers(
    a: (u8, &PriorityKey, Option<Timestamp>),
    b: (u8, &PriorityKey, Option<Timestamp>),
) -> Ordering {
    b.0.cmp(&a.0)
        .then_with(|| compare_with_deadlines(a.1, a.2, b.1, b.2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plaint_events::Money;

    fn at(text: &str) -> Timestamp {
        format!("2025-03-01T{text}:00Z").parse().unwrap()
    }

    fn key(
        id: &str,
        severity: Severity,
        urgency: Urgency,
        money: i64,
        filed_at: &str,
    ) -> PriorityKey {
        PriorityKey {
            severity: Reverse(severity),
            urgency,
            money_rank: Reverse(money),
            filed_at: at(filed_at),
            complaint_id: id.into(),
        }
    }

    #[test]
    fn priority_order_is_tier_severity_urgency_money_age() {
        let breached = |t: &str| Urgency::Breached { since: at(t) };
        let items = [
            (
                2,
                key("low-old", Severity::Low, Urgency::NotBreached, 0, "01:00"),
                None,
            ),
            (
                3,
                key("tier3-low", Severity::Low, Urgency::NotBreached, 0, "09:00"),
                None,
            ),
            (
                2,
                key(
                    "crit-breached-late",
                    Severity::Critical,
                    breached("08:00"),
                    0,
                    "05:00",
                ),
                None,
            ),
            (
                2,
                key(
                    "crit-breached-early",
                    Severity::Critical,
                    breached("07:00"),
                    0,
                    "06:00",
                ),
                None,
            ),
            (
                2,
                key(
                    "crit-deadline-soon",
                    Severity::Critical,
                    Urgency::NotBreached,
                    0,
                    "05:00",
                ),
                Some(at("10:00")),
            ),
            (
                2,
                key(
                    "crit-deadline-later-rich",
                    Severity::Critical,
                    Urgency::NotBreached,
                    9_000_000,
                    "05:00",
                ),
                Some(at("11:00")),
            ),
            (
                2,
                key(
                    "crit-no-deadline-rich",
                    Severity::Critical,
                    Urgency::NotBreached,
                    9_000_000,
                    "05:00",
                ),
                None,
            ),
            (
                2,
                key(
                    "crit-no-deadline-poor-old",
                    Severity::Critical,
                    Urgency::NotBreached,
                    0,
                    "01:00",
                ),
                None,
            ),
            (
                2,
                key(
                    "crit-no-deadline-poor-new",
                    Severity::Critical,
                    Urgency::NotBreached,
                    0,
                    "02:00",
                ),
                None,
            ),
            (
                2,
                key("high", Severity::High, breached("00:00"), 0, "00:00"),
                None,
            ),
        ];
        let mut sorted: Vec<_> = items.iter().collect();
        sorted.sort_by(|a, b| compare_across_tiers((a.0, &a.1, a.2), (b.0, &b.1, b.2)));
        let order: Vec<&str> = sorted.iter().map(|i| &*i.1.complaint_id).collect();
        assert_eq!(
            order,
            [
                "tier3-low",
                "crit-breached-early",
                "crit-breached-late",
                "crit-deadline-soon",
                "crit-deadline-later-rich",
                "crit-no-deadline-rich",
                "crit-no-deadline-poor-old",
                "crit-no-deadline-poor-new",
                "high",
                "low-old",
            ]
        );
    }

    #[test]
    fn the_index_order_agrees_with_the_documented_order_when_no_deadline_is_known() {
        let a = key("a", Severity::High, Urgency::NotBreached, 5, "01:00");
        let b = key("b", Severity::High, Urgency::NotBreached, 7, "02:00");
        assert_eq!(a.cmp(&b), compare_with_deadlines(&a, None, &b, None));
        assert_eq!(b.cmp(&a), Ordering::Less, "more money first");
    }

    /// Times a whole second apart or less, before the epoch, at jiff's limits.
    fn awkward_times() -> Vec<Timestamp> {
        let mut times = vec![Timestamp::MIN, Timestamp::MAX, Timestamp::UNIX_EPOCH];
        for text in [
            "1969-12-31T23:59:59.999999999Z",
            "1969-12-31T23:59:59Z",
            "1969-12-31T23:59:58.5Z",
            "1970-01-01T00:00:00.000000001Z",
            "2025-03-01T10:00:00Z",
            "2025-03-01T10:00:00.25Z",
            "2025-03-01T10:00:00.75Z",
            "2025-03-01T10:00:01Z",
            "1600-01-01T00:00:00.1Z",
        ] {
            times.push(text.parse().unwrap());
        }
        times
    }

    #[test]
    fn a_compact_time_keeps_every_nanosecond_and_the_order() {
        let times = awkward_times();
        for a in &times {
            assert_eq!(CompactTime::new(*a).timestamp(), *a);
            for b in &times {
                assert_eq!(
                    CompactTime::new(*a).cmp(&CompactTime::new(*b)),
                    a.cmp(b),
                    "{a} {b}"
                );
            }
        }
    }

    #[test]
    fn the_index_key_orders_as_the_priority_key() {
        let times = awkward_times();
        let mut keys = Vec::new();
        let severities = [
            Severity::Low,
            Severity::Critical,
            Severity::Medium,
            Severity::High,
        ];
        for (i, severity) in severities.into_iter().enumerate() {
            // Jiff's first and last times too, for the breach time's room in `band`.
            for breached in [
                None,
                Some(times[i + 3]),
                Some(times[i + 4]),
                Some(times[i % 2]),
            ] {
                for money in [-1, 0, 7, i64::MAX] {
                    for filed in [times[i], times[6], times[7], times[8]] {
                        for id in ["a", "b"] {
                            keys.push(PriorityKey {
                                severity: Reverse(severity),
                                urgency: breached.map_or(Urgency::NotBreached, |since| {
                                    Urgency::Breached { since }
                                }),
                                money_rank: Reverse(money),
                                filed_at: filed,
                                complaint_id: id.into(),
                            });
                        }
                    }
                }
            }
        }
        let index_key = |k: &PriorityKey| {
            let breached = match k.urgency {
                Urgency::Breached { since } => Some(since),
                Urgency::NotBreached => None,
            };
            let key = IndexKey::new(
                k.severity.0,
                breached,
                k.money_rank.0,
                k.filed_at,
                k.complaint_id.clone(),
            );
            assert_eq!(
                (key.is_breached(), key.complaint_id()),
                (breached.is_some(), &k.complaint_id)
            );
            key
        };
        let deadlines = [None, Some(times[6]), Some(times[7])];
        for (i, a) in keys.iter().enumerate() {
            let (a_index, a_deadline) = (index_key(a), deadlines[i % 3]);
            for (j, b) in keys.iter().enumerate().skip(i.saturating_sub(40)).take(80) {
                let (b_index, b_deadline) = (index_key(b), deadlines[j % 3]);
                assert_eq!(a_index.cmp(&b_index), a.cmp(b), "{a:?} {b:?}");
                assert_eq!(a_index.same_severity(&b_index), a.severity == b.severity);
                assert_eq!(
                    IndexKey::compare_with_deadlines(&a_index, a_deadline, &b_index, b_deadline),
                    compare_with_deadlines(a, a_deadline, b, b_deadline),
                    "{a:?} {a_deadline:?} {b:?} {b_deadline:?}"
                );
            }
        }
    }

    /// Every queued complaint keeps an index key (and its summary, see the projector's
    /// tests) in a B-tree node with room for eleven: bounds, so that a field added or
    /// widened is a decision.
    #[test]
    fn the_index_key_stays_small() {
        assert_eq!(std::mem::size_of::<CompactTime>(), 12);
        assert!(std::mem::size_of::<IndexKey>() <= 48);
        assert!(std::mem::size_of::<IndexKey>() < std::mem::size_of::<PriorityKey>());
    }

    #[test]
    fn money_is_ranked_as_a_multiple_of_the_frontline_limit() {
        let mut config = EscalationConfig::default();
        config.money.insert(
            "JPY".into(),
            crate::config::AuthorityLimits {
                tier_2_above: Some(Money::from_units(15_000)),
                tier_3_above: None,
                tier_4_above: None,
            },
        );
        let amount = |v: i64, c: &str| AmountAtStake {
            value: Money::from_units(v),
            currency: c.into(),
        };
        assert_eq!(money_rank(&config, Some(&amount(150, "EUR"))), 1_500_000);
        assert_eq!(money_rank(&config, Some(&amount(10_000, "JPY"))), 666_666);
        assert_eq!(money_rank(&config, Some(&amount(10_000, "SEK"))), 0);
        assert_eq!(money_rank(&config, None), 0);
    }
}
