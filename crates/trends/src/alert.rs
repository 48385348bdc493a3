//! The alert message published on `<prefix>.alerts.trends.<region|all>.<series>` and the
//! query views. All of it is plain serde data; the JSON is the documented contract.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What kind of rise an alert reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// One cell (region x series) far above its expected count in the last 1–3 buckets.
    Spike,
    /// One cell persistently above its expected count (NB-CUSUM).
    Sustained,
    /// A subset of regions of one series jointly above expectation (subset scan).
    CrossRegion,
    /// The series total across all regions persistently above expectation (NB-CUSUM).
    Drift,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Spike => "spike",
            AlertKind::Sustained => "sustained",
            AlertKind::CrossRegion => "cross_region",
            AlertKind::Drift => "drift",
        }
    }
}

/// Where an episode is in its life. One episode is one conversation: `started` once,
/// `updated` when it grows (higher score or more regions), `ended` once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Started,
    Updated,
    Ended,
}

/// Whether a series is a complaint category or a tracked tag value (e.g. `vendor:acme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Category,
    Tag,
}

/// One region named by an alert, with its counts over the alert's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionCount {
    pub region: String,
    pub observed: u64,
    pub expected: f64,
}

/// The buckets an alert's statistic covers: `[start, end)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertWindow {
    pub start: Timestamp,
    pub end: Timestamp,
    pub buckets: u32,
}

/// One message of a trend episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendAlert {
    /// The episode id (UUIDv5 of scope and first alarming bucket): the same in every
    /// message of the episode and on every replay.
    pub id: String,
    /// `<id>:<revision>`, used as `Nats-Msg-Id`.
    pub message_id: String,
    pub revision: u32,
    pub status: AlertStatus,
    pub kind: AlertKind,
    /// A region for cell alerts, `all` for cross-region and drift alerts.
    pub region: String,
    pub dimension: Dimension,
    /// The category, or the tag value (`vendor:acme`).
    pub series: String,
    pub regions: Vec<RegionCount>,
    pub window: AlertWindow,
    /// The detector statistic and the threshold it crossed (same units).
    pub score: f64,
    pub threshold: f64,
    /// Upper-tail probability of the window's observed count under the model (cells,
    /// drift), or the calibrated tail probability of the scan score (cross-region).
    pub p_value: f64,
    /// e.g. `nb_tail_w1`, `nb_cusum`, `ebp_subset_scan_w7`, `nb_cusum_total`.
    pub detector: String,
    /// A few complaint ids from the alarming window.
    pub examples: Vec<String>,
    pub started_at: Timestamp,
    pub last_alarm_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// Complaints counted in the window that arrived after their bucket had closed.
    pub late_events: u32,
    /// True when late complaints are part of the window that alarmed.
    pub late_data: bool,
    /// Why an episode ended early, e.g. when a persistent shift became the new baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Filter of [`crate::TrendsProjector::active`]; `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrendFilter {
    pub region: Option<String>,
    pub series: Option<String>,
    pub kind: Option<AlertKind>,
}

impl TrendFilter {
    pub fn matches(&self, alert: &TrendAlert) -> bool {
        self.region
            .as_ref()
            .is_none_or(|r| alert.region == *r || alert.regions.iter().any(|rc| rc.region == *r))
            && self.series.as_ref().is_none_or(|s| alert.series == *s)
            && self.kind.is_none_or(|k| alert.kind == k)
    }
}

/// One bucket of a cell's series, ready to plot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    pub start: Timestamp,
    pub observed: u64,
    /// `None` before the model had enough history.
    pub expected: Option<f64>,
    /// The cell's NB-CUSUM statistic after this bucket.
    pub cusum: Option<f64>,
}

/// Observed vs expected of one (region, series) cell over the retained recent buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesView {
    pub region: String,
    pub dimension: Dimension,
    pub series: String,
    pub bucket: String,
    pub cusum_threshold: Option<f64>,
    pub spike_alpha: f64,
    pub points: Vec<SeriesPoint>,
}

/// The fitted model and thresholds of one series (column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnModelView {
    pub dimension: Dimension,
    pub series: String,
    pub fitted: bool,
    pub coefficients: Vec<f64>,
    pub terms: Vec<String>,
    pub phi_total: f64,
    pub phi_cell: f64,
    pub misfit_variance: f64,
    pub level: f64,
    /// Subset-scan thresholds per window length, in score units.
    pub scan_windows: Vec<u32>,
    pub scan_thresholds: Vec<f64>,
    /// Model-misfit variance of the series total per scan window (relative variance of a
    /// window sum beyond the counts' own dispersion).
    #[serde(default)]
    pub scan_misfits: Vec<f64>,
    pub total_cusum_threshold: f64,
    pub expected_next: Option<f64>,
}

/// The configured model and thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelView {
    pub bucket: String,
    pub buckets_closed: u64,
    pub min_history: u64,
    pub cell_false_alarms_per_region_month: f64,
    pub cross_region_false_alarms_per_series_year: f64,
    /// Per-bucket level of each spike test (three windows share half the cell budget).
    pub spike_alpha: f64,
    pub cell_cusum_kappa: f64,
    pub total_cusum_kappa: f64,
    /// Empirical-Bayes pooling of cell shares toward region shares (prior weight).
    pub share_prior_weight: f64,
    pub regions: Vec<String>,
    pub columns: Vec<ColumnModelView>,
}
