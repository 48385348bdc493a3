//! The escalation rules as pure functions of a complaint's facts.
//!
//! Each rule looks at one fact and either stays silent or names a tier with a reason; the
//! complaint's target tier is the highest tier any rule names, and every reason is kept
//! (in rule order: money, severity, sla_breach, repeat_complainant, reopened, vip,
//! manual). The projector decides *when* to evaluate (on `complaint.filed`,
//! `complaint.escalated`, `complaint.reopened` and `sla.breached` of an open complaint)
//! and whether the target is above where the complaint stands.

use jiff::{SignedDuration, Timestamp};
use plaint_events::{AmountAtStake, EscalationReason, Money, Severity, SlaMetric};
use serde::{Deserialize, Serialize};

use crate::config::{EscalationConfig, MAX_TIER};

/// Rule names as they appear in `escalation.raised` reasons and in queue filters.
pub const MONEY: &str = "money";
pub const SEVERITY: &str = "severity";
pub const SLA_BREACH: &str = "sla_breach";
pub const REPEAT_COMPLAINANT: &str = "repeat_complainant";
pub const REOPENED: &str = "reopened";
pub const VIP: &str = "vip";
pub const MANUAL: &str = "manual";

/// All rule names in evaluation order.
pub const RULES: [&str; 7] = [
    MONEY,
    SEVERITY,
    SLA_BREACH,
    REPEAT_COMPLAINANT,
    REOPENED,
    VIP,
    MANUAL,
];

/// A bit per rule, so a queue filter by reason does not touch the complaint's row.
pub fn rule_bit(rule: &str) -> Option<u8> {
    RULES.iter().position(|r| *r == rule).map(|i| 1 << i)
}

/// What the SLA rule remembers about the breaches of a complaint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaBreachFact {
    pub count: u32,
    /// The tier the breaches raised the complaint to (fixed when each breach arrived).
    pub tier: u8,
    pub latest_metric: SlaMetric,
    pub latest_due_at: Timestamp,
}

/// The highest manual escalation (`complaint.escalated`) of a complaint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualEscalation {
    pub tier: u8,
    pub by: String,
    pub reason: String,
}

/// The facts the rules read.
#[derive(Debug, Clone, Copy)]
pub struct RuleFacts<'a> {
    pub severity: Severity,
    pub amount_at_stake: Option<&'a AmountAtStake>,
    pub vip: bool,
    /// How many complaints the customer filed within the repeat window, this one included.
    pub repeat_count: u32,
    pub reopen_count: u32,
    pub sla_breach: Option<&'a SlaBreachFact>,
    pub manual: Option<&'a ManualEscalation>,
}

fn reason(rule: &str, tier: u8, detail: String) -> EscalationReason {
    EscalationReason {
        rule: rule.to_owned(),
        tier,
        detail,
    }
}

/// Money rule: the highest tier whose authority limit (in the amount's currency) the
/// amount exceeds. Currencies without limits stay silent.
pub fn money(config: &EscalationConfig, amount: &AmountAtStake) -> Option<EscalationReason> {
    let (tier, limit) = money_tier(config, amount)?;
    let currency = &amount.currency;
    Some(reason(
        MONEY,
        tier,
        format!(
            "{} {currency} at stake is above the tier {} limit of {limit} {currency}",
            amount.value,
            tier - 1
        ),
    ))
}

/// The money rule's tier and the limit the amount exceeds.
fn money_tier(config: &EscalationConfig, amount: &AmountAtStake) -> Option<(u8, Money)> {
    config
        .money
        .get(&amount.currency)?
        .by_tier()
        .filter(|(_, limit)| amount.value > *limit)
        .last()
}

pub fn severity(config: &EscalationConfig, severity: Severity) -> Option<EscalationReason> {
    let tier = config.severity.tier_of(severity);
    (tier > 0).then(|| reason(SEVERITY, tier, format!("severity {}", severity.as_str())))
}

/// The tier a new breach raises a complaint to: `tiers_per_breach` above where it stands
/// (`standing_tier`: its queue tier or the highest tier its other rules name, 1 if
/// none), at most 4. None when the rule is off.
pub fn sla_breach_tier(config: &EscalationConfig, standing_tier: u8) -> Option<u8> {
    let step = config.sla_breach.tiers_per_breach;
    (step > 0).then(|| standing_tier.max(1).saturating_add(step).min(MAX_TIER))
}

pub fn sla_breach(fact: &SlaBreachFact) -> EscalationReason {
    let times = if fact.count == 1 {
        "1 SLA breach".to_owned()
    } else {
        format!("{} SLA breaches", fact.count)
    };
    reason(
        SLA_BREACH,
        fact.tier,
        format!(
            "{times}, latest {} due {}",
            fact.latest_metric.as_str(),
            fact.latest_due_at
        ),
    )
}

/// How many of `filed_at_times` fall in the rolling window that ends at `filed_at`
/// (`(filed_at - window, filed_at]`).
pub fn filings_in_window(
    filed_at_times: &[Timestamp],
    filed_at: Timestamp,
    window: SignedDuration,
) -> u32 {
    let window_start = filed_at.checked_sub(window).unwrap_or(Timestamp::MIN);
    filed_at_times
        .iter()
        .filter(|t| **t > window_start && **t <= filed_at)
        .count() as u32
}

fn repeat_complainant_fires(config: &EscalationConfig, repeat_count: u32) -> bool {
    let rule = &config.repeat_complainant;
    rule.tier > 0 && repeat_count >= rule.count
}

pub fn repeat_complainant(
    config: &EscalationConfig,
    repeat_count: u32,
) -> Option<EscalationReason> {
    let rule = &config.repeat_complainant;
    repeat_complainant_fires(config, repeat_count).then(|| {
        reason(
            REPEAT_COMPLAINANT,
            rule.tier,
            format!(
                "{repeat_count} complaints from this customer within {:#}",
                rule.window
            ),
        )
    })
}

fn reopened_fires(config: &EscalationConfig, reopen_count: u32) -> bool {
    let rule = &config.reopened;
    rule.tier > 0 && reopen_count >= rule.count
}

pub fn reopened(config: &EscalationConfig, reopen_count: u32) -> Option<EscalationReason> {
    let rule = &config.reopened;
    reopened_fires(config, reopen_count).then(|| {
        let times = if reopen_count == 1 {
            "once".to_owned()
        } else {
            format!("{reopen_count} times")
        };
        reason(REOPENED, rule.tier, format!("reopened {times}"))
    })
}

fn vip_fires(config: &EscalationConfig, vip: bool) -> bool {
    vip && config.vip.tier > 0
}

pub fn vip(config: &EscalationConfig, vip: bool) -> Option<EscalationReason> {
    vip_fires(config, vip).then(|| reason(VIP, config.vip.tier, "VIP customer".into()))
}

fn manual_tier(escalation: &ManualEscalation) -> u8 {
    escalation.tier.clamp(1, MAX_TIER)
}

pub fn manual(escalation: &ManualEscalation) -> EscalationReason {
    reason(
        MANUAL,
        manual_tier(escalation),
        format!("escalated by {}: {}", escalation.by, escalation.reason),
    )
}

/// Every rule that names a tier, in rule order.
pub fn evaluate(config: &EscalationConfig, facts: &RuleFacts<'_>) -> Vec<EscalationReason> {
    let mut reasons = Vec::new();
    reasons.extend(
        facts
            .amount_at_stake
            .and_then(|amount| money(config, amount)),
    );
    reasons.extend(severity(config, facts.severity));
    reasons.extend(facts.sla_breach.map(sla_breach));
    reasons.extend(repeat_complainant(config, facts.repeat_count));
    reasons.extend(reopened(config, facts.reopen_count));
    reasons.extend(vip(config, facts.vip));
    reasons.extend(facts.manual.map(manual));
    reasons
}

/// The tier the reasons ask for: the highest, None when no rule fired.
pub fn target_tier(reasons: &[EscalationReason]) -> Option<u8> {
    reasons.iter().map(|r| r.tier).max()
}

/// `target_tier(&evaluate(config, facts))` without writing the reasons: most events that
/// evaluate the rules raise nothing, and the reasons' texts are the costly part.
pub fn target(config: &EscalationConfig, facts: &RuleFacts<'_>) -> Option<u8> {
    let severity_tier = config.severity.tier_of(facts.severity);
    [
        facts
            .amount_at_stake
            .and_then(|amount| money_tier(config, amount))
            .map(|(tier, _)| tier),
        (severity_tier > 0).then_some(severity_tier),
        facts.sla_breach.map(|fact| fact.tier),
        repeat_complainant_fires(config, facts.repeat_count)
            .then_some(config.repeat_complainant.tier),
        reopened_fires(config, facts.reopen_count).then_some(config.reopened.tier),
        vip_fires(config, facts.vip).then_some(config.vip.tier),
        facts.manual.map(manual_tier),
    ]
    .into_iter()
    .flatten()
    .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EscalationConfig {
        EscalationConfig::default()
    }

    fn eur(value: &str) -> AmountAtStake {
        AmountAtStake {
            value: value.parse().unwrap(),
            currency: "EUR".into(),
        }
    }

    fn quiet_facts() -> RuleFacts<'static> {
        RuleFacts {
            severity: Severity::Medium,
            amount_at_stake: None,
            vip: false,
            repeat_count: 1,
            reopen_count: 0,
            sla_breach: None,
            manual: None,
        }
    }

    #[test]
    fn money_within_frontline_authority_stays_at_the_front_line() {
        assert_eq!(money(&config(), &eur("100")), None);
        assert_eq!(money(&config(), &eur("0")), None);
    }

    #[test]
    fn money_above_each_limit_needs_the_next_tier() {
        let tier = |value| money(&config(), &eur(value)).map(|r| r.tier);
        assert_eq!(tier("100.0001"), Some(2));
        assert_eq!(tier("1000"), Some(2));
        assert_eq!(tier("1000.01"), Some(3));
        assert_eq!(tier("10000"), Some(3));
        assert_eq!(tier("10000.5"), Some(4));
        assert_eq!(tier("99999999"), Some(4));
    }

    #[test]
    fn money_reason_names_amount_and_limit() {
        let reason = money(&config(), &eur("1500")).unwrap();
        assert_eq!(reason.rule, "money");
        assert_eq!(
            reason.detail,
            "1500 EUR at stake is above the tier 2 limit of 1000 EUR"
        );
    }

    #[test]
    fn money_limits_are_per_currency() {
        let mut config = config();
        config.money.insert(
            "JPY".into(),
            crate::config::AuthorityLimits {
                tier_2_above: Some(Money::from_units(15_000)),
                tier_3_above: None,
                tier_4_above: Some(Money::from_units(1_500_000)),
            },
        );
        let jpy = |v: &str| AmountAtStake {
            value: v.parse().unwrap(),
            currency: "JPY".into(),
        };
        assert_eq!(money(&config, &jpy("10000")), None);
        assert_eq!(money(&config, &jpy("20000")).map(|r| r.tier), Some(2));
        assert_eq!(
            money(&config, &jpy("200000")).map(|r| r.tier),
            Some(2),
            "no tier 3 limit"
        );
        assert_eq!(money(&config, &jpy("2000000")).map(|r| r.tier), Some(4));
        let sek = AmountAtStake {
            value: Money::from_units(1_000_000),
            currency: "SEK".into(),
        };
        assert_eq!(
            money(&config, &sek),
            None,
            "unlisted currencies cannot be compared"
        );
    }

    #[test]
    fn critical_severity_needs_tier_two_by_default_and_others_stay() {
        assert_eq!(
            severity(&config(), Severity::Critical).map(|r| r.tier),
            Some(2)
        );
        for quiet in [Severity::Low, Severity::Medium, Severity::High] {
            assert_eq!(severity(&config(), quiet), None);
        }
        let mut config = config();
        config.severity.high = 2;
        config.severity.critical = 3;
        assert_eq!(severity(&config, Severity::High).map(|r| r.tier), Some(2));
        assert_eq!(
            severity(&config, Severity::Critical).map(|r| r.tier),
            Some(3)
        );
    }

    #[test]
    fn a_breach_raises_one_tier_above_where_the_complaint_stands() {
        assert_eq!(
            sla_breach_tier(&config(), 1),
            Some(2),
            "frontline item goes to tier 2"
        );
        assert_eq!(
            sla_breach_tier(&config(), 0),
            Some(2),
            "not standing anywhere = frontline"
        );
        assert_eq!(
            sla_breach_tier(&config(), 2),
            Some(3),
            "a second breach goes another tier"
        );
        assert_eq!(sla_breach_tier(&config(), 3), Some(4));
        assert_eq!(
            sla_breach_tier(&config(), 4),
            Some(4),
            "executive is the top"
        );
        let mut off = config();
        off.sla_breach.tiers_per_breach = 0;
        assert_eq!(sla_breach_tier(&off, 1), None);
    }

    #[test]
    fn repeat_window_counts_filings_in_the_rolling_window_only() {
        let day = SignedDuration::from_hours(24);
        let t0: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let at = |days: i64| t0.checked_add(day * days as i32).unwrap();
        let filings = [at(0), at(10), at(29), at(45)];
        let window = SignedDuration::from_hours(30 * 24);
        assert_eq!(filings_in_window(&filings, at(29), window), 3);
        assert_eq!(
            filings_in_window(&filings, at(30), window),
            2,
            "day 0 left the window"
        );
        assert_eq!(filings_in_window(&filings, at(45), window), 2);
        assert_eq!(
            filings_in_window(&filings, at(10), window),
            2,
            "later filings do not count"
        );
    }

    #[test]
    fn repeat_complainant_fires_at_the_configured_count() {
        assert_eq!(repeat_complainant(&config(), 2), None);
        let reason = repeat_complainant(&config(), 3).unwrap();
        assert_eq!(
            (reason.tier, reason.detail.as_str()),
            (2, "3 complaints from this customer within 720h")
        );
        assert!(repeat_complainant(&config(), 7).is_some());
    }

    #[test]
    fn reopened_fires_at_the_configured_count() {
        assert_eq!(reopened(&config(), 1), None);
        assert_eq!(
            reopened(&config(), 2).map(|r| (r.tier, r.detail)),
            Some((2, "reopened 2 times".into()))
        );
    }

    #[test]
    fn vip_fires_only_for_vips_and_when_on() {
        assert_eq!(vip(&config(), false), None);
        assert_eq!(vip(&config(), true).map(|r| r.tier), Some(2));
        let mut off = config();
        off.vip.tier = 0;
        assert_eq!(vip(&off, true), None);
    }

    #[test]
    fn manual_escalation_takes_its_own_tier() {
        let escalation = ManualEscalation {
            tier: 3,
            by: "ana".into(),
            reason: "press".into(),
        };
        let reason = manual(&escalation);
        assert_eq!((reason.rule.as_str(), reason.tier), ("manual", 3));
        assert_eq!(reason.detail, "escalated by ana: press");
    }

    #[test]
    fn the_highest_tier_wins_and_every_reason_is_kept_in_rule_order() {
        let amount = eur("5000");
        let breach = SlaBreachFact {
            count: 1,
            tier: 2,
            latest_metric: SlaMetric::FirstResponse,
            latest_due_at: "2025-01-01T10:00:00Z".parse().unwrap(),
        };
        let facts = RuleFacts {
            severity: Severity::Critical,
            amount_at_stake: Some(&amount),
            vip: true,
            sla_breach: Some(&breach),
            ..quiet_facts()
        };
        let reasons = evaluate(&config(), &facts);
        let rules: Vec<_> = reasons.iter().map(|r| (r.rule.as_str(), r.tier)).collect();
        assert_eq!(
            rules,
            [("money", 3), ("severity", 2), ("sla_breach", 2), ("vip", 2)]
        );
        assert_eq!(target_tier(&reasons), Some(3));
    }

    #[test]
    fn no_rule_no_target() {
        let reasons = evaluate(&config(), &quiet_facts());
        assert!(reasons.is_empty());
        assert_eq!(target_tier(&reasons), None);
    }

    proptest::proptest! {
        #[test]
        fn the_target_is_the_highest_tier_of_the_reasons(
            severity in 0usize..4,
            amount in proptest::option::of((0i64..50_000, 0usize..3)),
            vip in proptest::bool::ANY,
            repeat_count in 0u32..5,
            reopen_count in 0u32..4,
            breach_tier in proptest::option::of(0u8..6),
            manual_tier in proptest::option::of(0u8..7),
            severity_tiers in proptest::collection::vec(0u8..5, 4),
            off in proptest::collection::vec(proptest::bool::ANY, 3),
        ) {
            let mut config = config();
            config.severity.low = severity_tiers[0];
            config.severity.medium = severity_tiers[1];
            config.severity.high = severity_tiers[2];
            config.severity.critical = severity_tiers[3];
            if off[0] { config.vip.tier = 0; }
            if off[1] { config.reopened.tier = 0; }
            if off[2] { config.repeat_complainant.tier = 0; }
            let amount = amount.map(|(value, currency)| AmountAtStake {
                value: Money::from_units(value),
                currency: ["EUR", "JPY", "SEK"][currency].into(),
            });
            let breach = breach_tier.map(|tier| SlaBreachFact {
                count: 1,
                tier,
                latest_metric: SlaMetric::Resolution,
                latest_due_at: Timestamp::UNIX_EPOCH,
            });
            let manual = manual_tier.map(|tier| ManualEscalation {
                tier,
                by: "ana".into(),
                reason: "press".into(),
            });
            let facts = RuleFacts {
                severity: [Severity::Low, Severity::Medium, Severity::High, Severity::Critical][severity],
                amount_at_stake: amount.as_ref(),
                vip,
                repeat_count,
                reopen_count,
                sla_breach: breach.as_ref(),
                manual: manual.as_ref(),
            };
            proptest::prop_assert_eq!(target(&config, &facts), target_tier(&evaluate(&config, &facts)));
        }
    }

    #[test]
    fn every_rule_has_a_distinct_filter_bit() {
        let bits: Vec<u8> = RULES.iter().map(|r| rule_bit(r).unwrap()).collect();
        let combined = bits.iter().fold(0u8, |acc, b| acc | b);
        assert_eq!(combined.count_ones() as usize, RULES.len());
        assert_eq!(rule_bit("weather"), None);
    }
}
