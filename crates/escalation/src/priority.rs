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
