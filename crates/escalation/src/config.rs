//! The `[escalation]` section of plaint's configuration.
//!
//! Tiers are numbered 1 (frontline) to 4 (executive). In every rule, a tier of `0` turns
//! that rule off. Durations are strings in jiff's friendly format (`"30m"`, `"8h"`,
//! `"3d"`, `"1w"`, `"2h 30m"`) or ISO 8601 (`"PT8H"`); a day counts as 24 hours. Amounts
//! are decimal strings (`"1000"`, `"99.50"`) because they are compared exactly.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Span, SpanRelativeTo};
use plaint_events::{Money, Severity};
use serde::{Deserialize, Deserializer};

/// The highest tier (executive). Tier 1 is frontline.
pub const MAX_TIER: u8 = 4;

/// Everything the escalation rules, queues and alerts can be tuned with.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationConfig {
    /// Authority limits per ISO 4217 currency. Replaces the default table when given.
    /// Amounts in a currency that is not listed never trigger the money rule: amounts in
    /// different currencies cannot be compared without exchange rates, which plaint does
    /// not have.
    pub money: BTreeMap<String, AuthorityLimits>,
    /// The tier each severity raises a complaint to (0 = no raise).
    pub severity: SeverityTiers,
    pub sla_breach: SlaBreachRule,
    pub repeat_complainant: RepeatComplainantRule,
    pub reopened: ReopenedRule,
    pub vip: VipRule,
    /// An item that waits unclaimed this long raises one alert on
    /// `<prefix>.alerts.escalation.unclaimed.<region>`.
    #[serde(deserialize_with = "duration")]
    pub unclaimed_alert_after: SignedDuration,
    /// Queue statistics report the median time to claim over claims made in this window
    /// before the query time.
    #[serde(deserialize_with = "duration")]
    pub time_to_claim_window: SignedDuration,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        let standard = AuthorityLimits {
            tier_2_above: Some(Money::from_units(100)),
            tier_3_above: Some(Money::from_units(1_000)),
            tier_4_above: Some(Money::from_units(10_000)),
        };
        EscalationConfig {
            money: ["EUR", "USD", "GBP", "CHF"]
                .into_iter()
                .map(|currency| (currency.to_owned(), standard.clone()))
                .collect(),
            severity: SeverityTiers::default(),
            sla_breach: SlaBreachRule::default(),
            repeat_complainant: RepeatComplainantRule::default(),
            reopened: ReopenedRule::default(),
            vip: VipRule::default(),
            unclaimed_alert_after: SignedDuration::from_hours(4),
            time_to_claim_window: SignedDuration::from_hours(7 * 24),
        }
    }
}

/// What a tier may decide on its own, per currency: an amount at stake strictly above
/// `tier_N_above` needs at least tier N. A missing limit skips that tier.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityLimits {
    #[serde(default)]
    pub tier_2_above: Option<Money>,
    #[serde(default)]
    pub tier_3_above: Option<Money>,
    #[serde(default)]
    pub tier_4_above: Option<Money>,
}

impl AuthorityLimits {
    /// `(tier, limit)` pairs from the lowest tier up.
    pub fn by_tier(&self) -> impl Iterator<Item = (u8, Money)> + '_ {
        [
            (2, self.tier_2_above),
            (3, self.tier_3_above),
            (4, self.tier_4_above),
        ]
        .into_iter()
        .filter_map(|(tier, limit)| limit.map(|limit| (tier, limit)))
    }

    /// The lowest configured limit: the frontline's own authority, used to compare
    /// amounts in different currencies when ordering a queue.
    pub fn frontline_limit(&self) -> Option<Money> {
        self.by_tier().next().map(|(_, limit)| limit)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeverityTiers {
    pub low: u8,
    pub medium: u8,
    pub high: u8,
    pub critical: u8,
}

impl Default for SeverityTiers {
    fn default() -> Self {
        SeverityTiers {
            low: 0,
            medium: 0,
            high: 0,
            critical: 2,
        }
    }
}

impl SeverityTiers {
    pub fn tier_of(&self, severity: Severity) -> u8 {
        match severity {
            Severity::Low => self.low,
            Severity::Medium => self.medium,
            Severity::High => self.high,
            Severity::Critical => self.critical,
        }
    }
}

/// Each `sla.breached` of an open complaint raises it `tiers_per_breach` tiers above
/// where it stands (0 = rule off).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlaBreachRule {
    pub tiers_per_breach: u8,
}

impl Default for SlaBreachRule {
    fn default() -> Self {
        SlaBreachRule {
            tiers_per_breach: 1,
        }
    }
}

/// A complaint filed by a customer who filed `count` complaints (this one included)
/// within `window` is raised to `tier`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepeatComplainantRule {
    pub count: u32,
    #[serde(deserialize_with = "duration")]
    pub window: SignedDuration,
    pub tier: u8,
}

impl Default for RepeatComplainantRule {
    fn default() -> Self {
        RepeatComplainantRule {
            count: 3,
            window: SignedDuration::from_hours(30 * 24),
            tier: 2,
        }
    }
}

/// A complaint reopened `count` times or more is raised to `tier`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReopenedRule {
    pub count: u32,
    pub tier: u8,
}

impl Default for ReopenedRule {
    fn default() -> Self {
        ReopenedRule { count: 2, tier: 2 }
    }
}

/// A complaint filed with `vip: true` is raised to `tier`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VipRule {
    pub tier: u8,
}

impl Default for VipRule {
    fn default() -> Self {
        VipRule { tier: 2 }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("escalation.{field} = {tier} is not a tier; use 1 (frontline) to 4 (executive), or 0 to turn the rule off")]
    TierOutOfRange { field: String, tier: u8 },
    #[error("escalation.money.{currency}: {detail}")]
    AuthorityLimits { currency: String, detail: String },
    #[error("escalation.{field} must be {detail}")]
    Invalid {
        field: &'static str,
        detail: &'static str,
    },
}

impl EscalationConfig {
    /// Checks what serde cannot: tier ranges, ascending limits, positive durations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let tiers = [
            ("severity.low", self.severity.low),
            ("severity.medium", self.severity.medium),
            ("severity.high", self.severity.high),
            ("severity.critical", self.severity.critical),
            (
                "sla_breach.tiers_per_breach",
                self.sla_breach.tiers_per_breach,
            ),
            ("repeat_complainant.tier", self.repeat_complainant.tier),
            ("reopened.tier", self.reopened.tier),
            ("vip.tier", self.vip.tier),
        ];
        for (field, tier) in tiers {
            if tier > MAX_TIER {
                return Err(ConfigError::TierOutOfRange {
                    field: field.to_owned(),
                    tier,
                });
            }
        }
        for (currency, limits) in &self.money {
            let well_formed =
                currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase());
            if !well_formed {
                return Err(ConfigError::AuthorityLimits {
                    currency: currency.clone(),
                    detail:
                        "the key must be an ISO 4217 code of three upper-case letters, e.g. EUR"
                            .into(),
                });
            }
            let ordered: Vec<(u8, Money)> = limits.by_tier().collect();
            if ordered.is_empty() {
                return Err(ConfigError::AuthorityLimits {
                    currency: currency.clone(),
                    detail: "give at least one of tier_2_above, tier_3_above, tier_4_above".into(),
                });
            }
            for pair in ordered.windows(2) {
                if pair[1].1 <= pair[0].1 {
                    return Err(ConfigError::AuthorityLimits {
                        currency: currency.clone(),
                        detail: format!(
                            "tier_{}_above ({}) must be greater than tier_{}_above ({}): higher tiers have more authority",
                            pair[1].0, pair[1].1, pair[0].0, pair[0].1
                        ),
                    });
                }
            }
        }
        if self.repeat_complainant.tier > 0 && self.repeat_complainant.count < 2 {
            return Err(ConfigError::Invalid {
                field: "repeat_complainant.count",
                detail: "at least 2 (the complaint being filed counts as one)",
            });
        }
        if self.repeat_complainant.window <= SignedDuration::ZERO {
            return Err(ConfigError::Invalid {
                field: "repeat_complainant.window",
                detail: "a positive duration, e.g. \"30d\"",
            });
        }
        if self.reopened.tier > 0 && self.reopened.count == 0 {
            return Err(ConfigError::Invalid {
                field: "reopened.count",
                detail: "at least 1",
            });
        }
        if self.unclaimed_alert_after <= SignedDuration::ZERO {
            return Err(ConfigError::Invalid {
                field: "unclaimed_alert_after",
                detail: "a positive duration, e.g. \"4h\"",
            });
        }
        if self.time_to_claim_window <= SignedDuration::ZERO {
            return Err(ConfigError::Invalid {
                field: "time_to_claim_window",
                detail: "a positive duration, e.g. \"7d\"",
            });
        }
        Ok(())
    }
}

/// Parses `"8h"`, `"30m"`, `"3d"`, `"PT8H"`; a day is 24 hours, a week 7 days.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let span: Span = text.trim().parse().map_err(|e| {
        format!("duration {text:?} is not understood ({e}); write e.g. \"30m\", \"8h\" or \"3d\"")
    })?;
    span.to_duration(SpanRelativeTo::days_are_24_hours()).map_err(|e| {
        format!("duration {text:?} cannot be a fixed length ({e}); use days, hours or minutes, not months or years")
    })
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SignedDuration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_friendly_format() {
        assert_eq!(parse_duration("8h").unwrap(), SignedDuration::from_hours(8));
        assert_eq!(
            parse_duration("30m").unwrap(),
            SignedDuration::from_mins(30)
        );
        assert_eq!(
            parse_duration("3d").unwrap(),
            SignedDuration::from_hours(72)
        );
        assert_eq!(
            parse_duration("1w").unwrap(),
            SignedDuration::from_hours(168)
        );
        assert_eq!(
            parse_duration("PT2H").unwrap(),
            SignedDuration::from_hours(2)
        );
        assert!(parse_duration("1 month").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_default_config_is_valid() {
        assert_eq!(EscalationConfig::default().validate(), Ok(()));
    }

    #[test]
    fn the_example_file_parses_and_is_valid() {
        #[derive(Deserialize)]
        struct Root {
            escalation: EscalationConfig,
        }
        let text = include_str!("../escalation.example.toml");
        let root: Root = toml::from_str(text).expect("example parses");
        assert_eq!(root.escalation.validate(), Ok(()));
        assert_eq!(
            root.escalation.unclaimed_alert_after,
            SignedDuration::from_hours(4)
        );
        assert_eq!(
            root.escalation.money["EUR"].tier_3_above,
            Some(Money::from_units(1_000))
        );
    }

    #[test]
    fn given_descending_limits_when_validated_then_the_error_names_the_currency() {
        let mut config = EscalationConfig::default();
        config.money.insert(
            "JPY".into(),
            AuthorityLimits {
                tier_2_above: Some(Money::from_units(10_000)),
                tier_3_above: Some(Money::from_units(5_000)),
                tier_4_above: None,
            },
        );
        let error = config.validate().unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("escalation.money.JPY: tier_3_above"),
            "{error}"
        );
    }

    #[test]
    fn given_tier_five_when_validated_then_refused() {
        let mut config = EscalationConfig::default();
        config.vip.tier = 5;
        assert_eq!(
            config.validate(),
            Err(ConfigError::TierOutOfRange {
                field: "vip.tier".into(),
                tier: 5
            })
        );
    }

    #[test]
    fn unknown_fields_are_refused_so_typos_do_not_pass_silently() {
        let result: Result<EscalationConfig, _> = toml::from_str("unclaimed_alert_afer = \"1h\"");
        assert!(result.is_err());
    }
}
