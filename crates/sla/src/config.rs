//! The SLA section of plaint's configuration, and its validation into compiled policies.
//!
//! Durations are strings in jiff's friendly format (`"45m"`, `"8h"`, `"1h 30m"`, `"3d"`)
//! or ISO 8601 (`"PT8H"`). A day is always 24 hours of the target's calendar: on a
//! business-hours calendar `"1d"` means 24 *business* hours (three 8-hour days), so write
//! working days as hours (`"8h"`, `"16h"`).

use std::collections::BTreeMap;

use jiff::{civil::Time, tz::TimeZone, Span, SpanRelativeTo};
use plaint_events::{Channel, Severity, SlaMetric};
use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, WeeklyHours};

/// Errors in the SLA configuration. Each names the setting to fix.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SlaConfigError {
    #[error("sla.at_risk_fraction is {0}; it must be greater than 0 and at most 1 (e.g. 0.75)")]
    AtRiskFraction(f64),
    #[error(
        "sla.subject_prefix {0:?} is not a NATS subject prefix; use tokens like \"complaints\""
    )]
    SubjectPrefix(String),
    #[error("{setting}: {value:?} is not a duration; write e.g. \"30m\", \"8h\", \"1h 30m\" or \"3d\" ({detail})")]
    Duration {
        setting: String,
        value: String,
        detail: String,
    },
    #[error("{setting}: the target must be positive (got {value:?})")]
    NonPositiveTarget { setting: String, value: String },
    #[error("sla.business_hours.{calendar}.time_zone: {zone:?} is not an IANA time zone (e.g. \"Europe/Paris\"): {detail}")]
    TimeZone {
        calendar: String,
        zone: String,
        detail: String,
    },
    #[error("sla.business_hours.{calendar}.weekly.{day}: {detail}; write e.g. \"09:00-12:30, 13:30-17:00\"")]
    WeeklyHours {
        calendar: String,
        day: &'static str,
        detail: String,
    },
    #[error("sla.business_hours.{calendar}: no open hours in the week, so no business-hours deadline could ever fall due")]
    NoOpenHours { calendar: String },
    #[error("sla.business_hours.{calendar}.holidays: {value:?} is not a date (YYYY-MM-DD)")]
    Holiday { calendar: String, value: String },
    #[error("sla: a policy uses business hours but there is no sla.business_hours.default and no calendar for region {region:?}; add [sla.business_hours.default]")]
    MissingDefaultBusinessHours { region: String },
    #[error("sla policy {policy:?}: {detail}")]
    Policy { policy: String, detail: String },
    #[error("sla: two policies are named {0:?}; policy names must be unique")]
    DuplicatePolicy(String),
}

/// `[sla]`: policies, business-hours calendars and alerting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlaConfig {
    /// Subject prefix of every subject the projector writes to (`complaints`).
    pub subject_prefix: String,
    /// Fraction of a target used at which an at-risk alert is published (0 < f ≤ 1).
    pub at_risk_fraction: f64,
    /// Armed complaints kept whole in memory once their rows are committed (see
    /// `SlaProjector::set_armed_cache`).
    pub armed_in_memory: usize,
    /// Business-hours calendars by region; `default` serves regions without their own.
    pub business_hours: BTreeMap<String, BusinessHoursConfig>,
    /// Policies in priority order: the first whose `match` fits a complaint wins.
    pub policies: Vec<PolicyConfig>,
    /// The policy of complaints no other policy matches. Its `match` is ignored.
    pub default_policy: PolicyConfig,
}

impl Default for SlaConfig {
    fn default() -> Self {
        SlaConfig {
            subject_prefix: "complaints".into(),
            at_risk_fraction: 0.75,
            armed_in_memory: 20_000,
            business_hours: BTreeMap::from([("default".into(), BusinessHoursConfig::default())]),
            policies: Vec::new(),
            default_policy: PolicyConfig::default(),
        }
    }
}

/// `[sla.business_hours.<region>]`: when the clock of a business-hours target runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusinessHoursConfig {
    /// IANA time zone name (`Europe/Paris`, `America/New_York`); daylight saving applies.
    pub time_zone: String,
    /// Open hours per weekday as local `HH:MM-HH:MM` ranges, comma separated; `24:00`
    /// ends a range at midnight; an absent or empty day is closed.
    pub weekly: WeeklyHoursConfig,
    /// Whole local dates on which the calendar is closed (`YYYY-MM-DD`).
    pub holidays: Vec<String>,
}

impl Default for BusinessHoursConfig {
    fn default() -> Self {
        let day = || "09:00-17:00".to_string();
        BusinessHoursConfig {
            time_zone: "UTC".into(),
            weekly: WeeklyHoursConfig {
                mon: day(),
                tue: day(),
                wed: day(),
                thu: day(),
                fri: day(),
                sat: String::new(),
                sun: String::new(),
            },
            holidays: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeeklyHoursConfig {
    pub mon: String,
    pub tue: String,
    pub wed: String,
    pub thu: String,
    pub fri: String,
    pub sat: String,
    pub sun: String,
}

/// Which calendar a target is measured on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CalendarChoice {
    /// Every second counts.
    #[default]
    #[serde(rename = "24x7")]
    AllHours,
    /// Only the open hours of the complaint's region count.
    #[serde(rename = "business")]
    Business,
}

/// `[[sla.policies]]`: which complaints it covers and its targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Token naming the policy in views, events and reports.
    pub name: String,
    #[serde(rename = "match")]
    pub matches: PolicyMatch,
    /// Calendar of every target of this policy unless `calendars` overrides it.
    pub calendar: CalendarChoice,
    /// Per-metric calendar overrides, e.g. `{ first_response = "24x7" }`.
    pub calendars: BTreeMap<String, CalendarChoice>,
    /// Targets; an absent target is not measured. (Field-level defaults: the built-in
    /// default policy's targets must not fill in a target a policy leaves out.)
    #[serde(default)]
    pub first_response: Option<String>,
    #[serde(default)]
    pub resolution: Option<String>,
    #[serde(default)]
    pub periodic_update: Option<String>,
    /// Whether callback promises are tracked (their deadline is the promised `due_by`).
    pub callback: bool,
    /// Metrics whose clock stops while the complaint awaits the customer.
    pub pausable: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            name: "default".into(),
            matches: PolicyMatch::default(),
            calendar: CalendarChoice::AllHours,
            calendars: BTreeMap::new(),
            first_response: Some("1d".into()),
            resolution: Some("5d".into()),
            periodic_update: Some("2d".into()),
            callback: true,
            pausable: vec!["resolution".into(), "periodic_update".into()],
        }
    }
}

/// A policy's `match`: every field given must fit (a list fits if it contains the
/// complaint's value); an empty match fits every complaint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyMatch {
    pub severity: Vec<Severity>,
    pub category: Vec<String>,
    pub region: Vec<String>,
    pub channel: Vec<Channel>,
    pub vip: Option<bool>,
}

impl PolicyMatch {
    pub(crate) fn fits(
        &self,
        severity: Severity,
        category: &str,
        region: &str,
        channel: Channel,
        vip: bool,
    ) -> bool {
        (self.severity.is_empty() || self.severity.contains(&severity))
            && (self.category.is_empty() || self.category.iter().any(|c| c == category))
            && (self.region.is_empty() || self.region.iter().any(|r| r == region))
            && (self.channel.is_empty() || self.channel.contains(&channel))
            && self.vip.unwrap_or(vip) == vip
    }
}

/// Index of the three clock metrics in per-complaint arrays; callbacks are promises, not
/// clocks.
pub(crate) const CLOCK_METRICS: [SlaMetric; 3] = [
    SlaMetric::FirstResponse,
    SlaMetric::Resolution,
    SlaMetric::PeriodicUpdate,
];

pub(crate) fn clock_index(metric: SlaMetric) -> Option<usize> {
    CLOCK_METRICS.iter().position(|m| *m == metric)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    pub seconds: i64,
    pub business: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub name: String,
    pub matches: PolicyMatch,
    pub targets: [Option<Target>; 3],
    pub callback: bool,
    /// Pausable flags of the three clocks.
    pub pausable: [bool; 3],
}

/// The validated configuration the projector runs on.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub subject_prefix: String,
    pub at_risk_fraction: f64,
    /// Policies in match order; the default policy is last.
    pub policies: Vec<Policy>,
    /// Business calendars; index 0 is `default` if configured.
    pub calendars: Vec<(String, Calendar)>,
    pub calendar_by_region: BTreeMap<String, u16>,
    pub default_calendar: Option<u16>,
}

pub(crate) fn parse_target(setting: &str, value: &str) -> Result<i64, SlaConfigError> {
    let err = |detail: String| SlaConfigError::Duration {
        setting: setting.to_string(),
        value: value.to_string(),
        detail,
    };
    let span: Span = value
        .trim()
        .parse()
        .map_err(|e: jiff::Error| err(e.to_string()))?;
    let duration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|e| err(format!("months and years have no fixed length: {e}")))?;
    let seconds = duration.as_secs();
    if seconds <= 0 {
        return Err(SlaConfigError::NonPositiveTarget {
            setting: setting.to_string(),
            value: value.to_string(),
        });
    }
    Ok(seconds)
}

fn parse_weekly(name: &str, weekly: &WeeklyHoursConfig) -> Result<WeeklyHours, SlaConfigError> {
    let days: [(&'static str, &str); 7] = [
        ("mon", &weekly.mon),
        ("tue", &weekly.tue),
        ("wed", &weekly.wed),
        ("thu", &weekly.thu),
        ("fri", &weekly.fri),
        ("sat", &weekly.sat),
        ("sun", &weekly.sun),
    ];
    let mut hours = WeeklyHours::default();
    for (index, (day, text)) in days.into_iter().enumerate() {
        let err = |detail: String| SlaConfigError::WeeklyHours {
            calendar: name.to_string(),
            day,
            detail,
        };
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (start, end) = part
                .split_once('-')
                .ok_or_else(|| err(format!("{part:?} is not a HH:MM-HH:MM range")))?;
            let start = parse_clock_time(start.trim(), false)
                .ok_or_else(|| err(format!("{start:?} is not HH:MM")))?;
            let end = parse_clock_time(end.trim(), true)
                .ok_or_else(|| err(format!("{end:?} is not HH:MM")))?;
            if end <= start {
                return Err(err(format!("{part:?} ends before it starts")));
            }
            if ranges
                .last()
                .is_some_and(|&(_, previous_end)| start < previous_end)
            {
                return Err(err(format!(
                    "{part:?} overlaps or precedes the range before it; list ranges in order"
                )));
            }
            ranges.push((start, end));
        }
        hours.days[index] = ranges;
    }
    if hours.days.iter().all(Vec::is_empty) {
        return Err(SlaConfigError::NoOpenHours {
            calendar: name.to_string(),
        });
    }
    Ok(hours)
}

/// Seconds since local midnight; `24:00` only where it ends a range.
fn parse_clock_time(text: &str, allow_midnight_end: bool) -> Option<u32> {
    if allow_midnight_end && text == "24:00" {
        return Some(86_400);
    }
    let time: Time = text.parse().ok()?;
    Some(time.hour() as u32 * 3600 + time.minute() as u32 * 60 + time.second() as u32)
}

impl SlaConfig {
    pub(crate) fn compile(&self) -> Result<Compiled, SlaConfigError> {
        if !(self.at_risk_fraction > 0.0 && self.at_risk_fraction <= 1.0) {
            return Err(SlaConfigError::AtRiskFraction(self.at_risk_fraction));
        }
        let prefix_ok = !self.subject_prefix.is_empty()
            && self.subject_prefix.split('.').all(|token| {
                !token.is_empty()
                    && !token.contains(|c: char| c.is_whitespace() || c == '*' || c == '>')
            });
        if !prefix_ok {
            return Err(SlaConfigError::SubjectPrefix(self.subject_prefix.clone()));
        }
        let mut calendars = Vec::new();
        let mut calendar_by_region = BTreeMap::new();
        // `default` first, so that its index is stable whatever the region names.
        let ordered = self
            .business_hours
            .iter()
            .filter(|(name, _)| name.as_str() == "default")
            .chain(
                self.business_hours
                    .iter()
                    .filter(|(name, _)| name.as_str() != "default"),
            );
        for (name, hours) in ordered {
            let zone = TimeZone::get(&hours.time_zone).map_err(|e| SlaConfigError::TimeZone {
                calendar: name.clone(),
                zone: hours.time_zone.clone(),
                detail: e.to_string(),
            })?;
            let weekly = parse_weekly(name, &hours.weekly)?;
            let mut holidays = Vec::new();
            for value in &hours.holidays {
                let date: jiff::civil::Date =
                    value.trim().parse().map_err(|_| SlaConfigError::Holiday {
                        calendar: name.clone(),
                        value: value.clone(),
                    })?;
                holidays.push(date);
            }
            let index = calendars.len() as u16;
            calendars.push((name.clone(), Calendar::business(zone, weekly, holidays)));
            calendar_by_region.insert(name.clone(), index);
        }
        let default_calendar = calendar_by_region.get("default").copied();

        let mut policies = Vec::new();
        for (position, policy) in self
            .policies
            .iter()
            .chain(std::iter::once(&self.default_policy))
            .enumerate()
        {
            let is_default = position == self.policies.len();
            let compiled = compile_policy(policy, is_default)?;
            if policies.iter().any(|p: &Policy| p.name == compiled.name) {
                return Err(SlaConfigError::DuplicatePolicy(compiled.name));
            }
            policies.push(compiled);
        }
        let uses_business = policies
            .iter()
            .any(|p| p.targets.iter().flatten().any(|t| t.business));
        if uses_business && default_calendar.is_none() {
            // Only regions with their own calendar could be served; a complaint from any
            // other region would have no clock, so insist on a default.
            return Err(SlaConfigError::MissingDefaultBusinessHours {
                region: "(any other)".into(),
            });
        }
        Ok(Compiled {
            subject_prefix: self.subject_prefix.clone(),
            at_risk_fraction: self.at_risk_fraction,
            policies,
            calendars,
            calendar_by_region,
            default_calendar,
        })
    }
}

fn compile_policy(policy: &PolicyConfig, is_default: bool) -> Result<Policy, SlaConfigError> {
    let err = |detail: String| SlaConfigError::Policy {
        policy: policy.name.clone(),
        detail,
    };
    if !plaint_events::is_token(&policy.name) {
        return Err(err(
            "the name must be a lowercase token [a-z0-9_-]{1,64}".into()
        ));
    }
    for metric in policy.calendars.keys() {
        match SlaMetric::parse(metric) {
            Some(SlaMetric::Callback) => {
                return Err(err(
                    "callback deadlines are the promised due_by instants; they take no calendar"
                        .into(),
                ))
            }
            Some(_) => {}
            None => return Err(err(format!("calendars: unknown metric {metric:?}"))),
        }
    }
    let mut pausable = [false; 3];
    for metric in &policy.pausable {
        match SlaMetric::parse(metric) {
            Some(SlaMetric::Callback) => {
                return Err(err(
                    "a callback promise cannot pause: the agent promised a wall-clock time".into(),
                ))
            }
            Some(metric) => pausable[clock_index(metric).expect("clock metric")] = true,
            None => return Err(err(format!("pausable: unknown metric {metric:?}"))),
        }
    }
    let values = [
        &policy.first_response,
        &policy.resolution,
        &policy.periodic_update,
    ];
    let mut targets = [None; 3];
    for (index, metric) in CLOCK_METRICS.iter().enumerate() {
        if let Some(value) = values[index] {
            let setting = format!("sla policy {:?}: {}", policy.name, metric.as_str());
            let seconds = parse_target(&setting, value)?;
            let calendar = policy
                .calendars
                .get(metric.as_str())
                .copied()
                .unwrap_or(policy.calendar);
            targets[index] = Some(Target {
                seconds,
                business: calendar == CalendarChoice::Business,
            });
        }
    }
    let matches = if is_default {
        PolicyMatch::default()
    } else {
        policy.matches.clone()
    };
    Ok(Policy {
        name: policy.name.clone(),
        matches,
        targets,
        callback: policy.callback,
        pausable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_friendly_and_iso_durations() {
        assert_eq!(parse_target("t", "30m"), Ok(1800));
        assert_eq!(parse_target("t", "1h 30m"), Ok(5400));
        assert_eq!(parse_target("t", "3d"), Ok(3 * 86_400));
        assert_eq!(parse_target("t", "PT8H"), Ok(8 * 3600));
        assert!(matches!(
            parse_target("t", "soon"),
            Err(SlaConfigError::Duration { .. })
        ));
        assert!(matches!(
            parse_target("t", "0s"),
            Err(SlaConfigError::NonPositiveTarget { .. })
        ));
        assert!(matches!(
            parse_target("t", "1 month"),
            Err(SlaConfigError::Duration { .. })
        ));
    }

    #[test]
    fn default_config_is_valid() {
        let compiled = SlaConfig::default().compile().unwrap();
        assert_eq!(compiled.policies.len(), 1);
        assert_eq!(compiled.default_calendar, Some(0));
    }

    #[test]
    fn invalid_settings_are_named() {
        let mut config = SlaConfig::default();
        config.business_hours.get_mut("default").unwrap().time_zone = "Mars/Olympus".into();
        assert!(matches!(
            config.compile(),
            Err(SlaConfigError::TimeZone { .. })
        ));

        let mut config = SlaConfig::default();
        config.business_hours.get_mut("default").unwrap().weekly.mon = "17:00-09:00".into();
        assert!(matches!(
            config.compile(),
            Err(SlaConfigError::WeeklyHours { day: "mon", .. })
        ));

        let config = SlaConfig {
            at_risk_fraction: 1.5,
            ..SlaConfig::default()
        };
        assert_eq!(
            config.compile().unwrap_err(),
            SlaConfigError::AtRiskFraction(1.5)
        );

        let mut config = SlaConfig::default();
        config.default_policy.pausable = vec!["callback".into()];
        assert!(matches!(
            config.compile(),
            Err(SlaConfigError::Policy { .. })
        ));

        let mut config = SlaConfig::default();
        config.policies.push(PolicyConfig::default());
        assert_eq!(
            config.compile().unwrap_err(),
            SlaConfigError::DuplicatePolicy("default".into())
        );

        let mut config = SlaConfig::default();
        config.business_hours.clear();
        config.default_policy.calendar = CalendarChoice::Business;
        assert!(matches!(
            config.compile(),
            Err(SlaConfigError::MissingDefaultBusinessHours { .. })
        ));
    }

    #[test]
    fn example_file_parses_and_validates() {
        #[derive(Deserialize)]
        struct File {
            sla: SlaConfig,
        }
        let text = include_str!("../sla.example.toml");
        let file: File = toml::from_str(text).unwrap();
        let compiled = file.sla.compile().unwrap();
        assert!(compiled.policies.len() >= 3);
        assert!(compiled.calendar_by_region.contains_key("eu-west"));
    }

    /// Regression: an omitted target was filled from the built-in default policy.
    #[test]
    fn an_omitted_target_is_not_measured() {
        let policy: PolicyConfig = toml::from_str("name = \"x\"\nfirst_response = \"1h\"").unwrap();
        assert_eq!(policy.first_response.as_deref(), Some("1h"));
        assert_eq!(policy.resolution, None);
        assert_eq!(policy.periodic_update, None);
    }
}
