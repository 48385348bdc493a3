//! `[trends]` section of plaint's configuration.

use jiff::{SignedDuration, Span, SpanRelativeTo};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::engine::{BucketKind, EngineConfig};
use crate::TrendsError;

/// Configuration of the trends projector (see `trends.example.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrendsConfig {
    pub subject_prefix: String,
    pub bucket: BucketKind,
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub allowed_lateness: SignedDuration,
    pub tracked_tag_prefixes: Vec<String>,
    pub max_tag_series: usize,
    pub cell_false_alarms_per_region_month: f64,
    pub cross_region_false_alarms_per_series_year: f64,
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub min_history: SignedDuration,
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub history: SignedDuration,
}

impl Default for TrendsConfig {
    fn default() -> Self {
        TrendsConfig {
            subject_prefix: "complaints".to_owned(),
            bucket: BucketKind::Daily,
            allowed_lateness: SignedDuration::from_hours(6),
            tracked_tag_prefixes: vec!["vendor:".to_owned()],
            max_tag_series: 200,
            cell_false_alarms_per_region_month: 0.25,
            cross_region_false_alarms_per_series_year: 1.0,
            min_history: SignedDuration::from_hours(56 * 24),
            history: SignedDuration::from_hours(730 * 24),
        }
    }
}

impl TrendsConfig {
    /// Checks the values and derives the engine's configuration.
    pub fn engine_config(&self) -> Result<EngineConfig, TrendsError> {
        let mut engine = match self.bucket {
            BucketKind::Daily => EngineConfig::daily(),
            BucketKind::Hourly => EngineConfig::hourly(),
        };
        let bucket_secs = self.bucket.seconds();
        let buckets = |d: SignedDuration| (d.as_secs() / bucket_secs).max(0) as usize;
        if self.allowed_lateness.is_negative() {
            return Err(TrendsError::Config(
                "allowed_lateness must not be negative".into(),
            ));
        }
        if !(self.cell_false_alarms_per_region_month > 0.0
            && self.cross_region_false_alarms_per_series_year > 0.0)
        {
            return Err(TrendsError::Config(
                "false-alarm budgets must be positive".into(),
            ));
        }
        let longest_window = engine.scan_windows.iter().max().copied().unwrap_or(14);
        engine.history_buckets = buckets(self.history).max(4 * longest_window);
        engine.min_history = buckets(self.min_history).max(14);
        engine.cell_false_alarms_per_region_month = self.cell_false_alarms_per_region_month;
        engine.column_false_alarms_per_year = self.cross_region_false_alarms_per_series_year;
        Ok(engine)
    }
}

/// Parses "30m", "8h", "3d", "2w" or ISO 8601 durations.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let span: Span = text.trim().parse().map_err(|e| {
        format!("duration {text:?} is not understood ({e}); write e.g. \"30m\", \"8h\" or \"3d\"")
    })?;
    span.to_duration(SpanRelativeTo::days_are_24_hours()).map_err(|e| {
        format!("duration {text:?} cannot be a fixed length ({e}); use weeks, days, hours or minutes")
    })
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SignedDuration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

fn show_duration<S: Serializer>(d: &SignedDuration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format!("{}h", d.as_secs() / 3600))
}
