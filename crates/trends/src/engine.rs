//! The detection engine: closed buckets of counts `[series][region]` in, alert messages out.
//!
//! It knows nothing of events; the projector and the benchmark both feed it count
//! matrices, so what the benchmark measures is exactly what runs in production.
//!
//! Per bucket: expected counts `mu[r,c,t] = share[r,c] * level * M[c,t]`, where `M` is the
//! series total from the seasonal model ([`crate::model`]) and `share` is the region's
//! part of it (long-memory, empirical-Bayes pooled toward the region's share of all
//! complaints); a region whose whole volume jumps across the other series (a reporting
//! surge) has its expectations scaled by that jump, so a surge does not look like a trend
//! in every category. Then the cell detectors (negative-binomial tail over 1–3 buckets,
//! NB-CUSUM) and the series detectors (expectation-based subset scan over regions, NB-CUSUM
//! on the total), and the episode bookkeeping that turns alarms into one conversation.

// Matrix code over (series, region, bucket) indices reads better with explicit indices.
#![allow(clippy::needless_range_loop)]

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::alert::{AlertKind, AlertStatus, AlertWindow, Dimension, RegionCount, TrendAlert};
use crate::model::{self, Features, Observation, SeasonalModel};
use crate::stats::{ebp_score, nb_llr, nb_ln_pmf, nb_upper_tail, quantile, Rng};

/// Buckets of per-cell detail (expected counts, CUSUM trace, late arrivals) kept for
/// windows and for the series query.
pub const RECENT: usize = 64;
/// High bit of a stored count: the bucket is left out of the baseline (it was part of an
/// alert episode or a reporting surge).
const EXCLUDED: u32 = 1 << 31;
const COUNT_MASK: u32 = !EXCLUDED;
/// A region's whole volume must be this unlikely before it is explained away as a surge.
const SURGE_P: f64 = 1e-2;
/// Share of the cell false-alarm budget given to the spike tests (the rest: NB-CUSUM).
const SPIKE_SHARE: f64 = 0.75;
/// Shares of the series false-alarm budget (`column_false_alarms_per_year`): the subset
/// scan's shortest window (one bucket)...
const SCAN_SHORTEST_SHARE: f64 = 0.05;
/// ...its longer windows together (split equally)...
const SCAN_LONGER_SHARE: f64 = 0.5;
/// ...and the NB-CUSUM on the total. The rest is not spent. A false alarm of the total's
/// CUSUM is a chance excess of the whole series, spread over every region, so it names
/// most of them (about 40 of 50 in the benchmark, against about 12 for a false scan alarm):
/// it is the false alarm that lands on a region's reporting surge or a holiday most often.
/// A one-bucket rise across regions is more often a reporting artefact than a spreading
/// problem, which builds up over days (the longer windows and the CUSUM).
const TOTAL_CUSUM_SHARE: f64 = 0.15;
/// Window errors enter the misfit estimate capped at this many standard deviations...
const MISFIT_CAP: f64 = 2.5;
/// ...which keeps this share of a normal's upper semi-variance.
const MISFIT_CAP_KEEPS: f64 = 0.9776;
/// A day is a dip when all categories together are below this share of the model...
const DIP_RATIO: f64 = 0.8;
/// ...and this many standard deviations below it.
const DIP_Z: f64 = 5.0;
/// Exceeding buckets per false scan episode assumed by the calibration.
const RUN_CREDIT: f64 = 1.0;
/// Examples kept per cell.
const EXAMPLES: usize = 5;

/// Bucket length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BucketKind {
    Daily,
    Hourly,
}

impl BucketKind {
    pub fn seconds(self) -> i64 {
        match self {
            BucketKind::Daily => 86_400,
            BucketKind::Hourly => 3_600,
        }
    }

    pub fn week_len(self) -> u32 {
        match self {
            BucketKind::Daily => 7,
            BucketKind::Hourly => 168,
        }
    }

    pub fn per_year(self) -> f64 {
        365.25 * 86_400.0 / self.seconds() as f64
    }

    pub fn per_month(self) -> f64 {
        self.per_year() / 12.0
    }

    pub fn label(self) -> &'static str {
        match self {
            BucketKind::Daily => "1d",
            BucketKind::Hourly => "1h",
        }
    }
}

/// Everything the engine's behaviour depends on. Built from [`crate::TrendsConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    pub bucket: BucketKind,
    /// Buckets of counts kept for fitting (730 daily).
    pub history_buckets: usize,
    /// Buckets a series needs before it is modelled and may alert.
    pub min_history: usize,
    pub refit_every: usize,
    pub recalibrate_every: usize,
    /// The most recent buckets are left out of each fit so an outbreak in progress does
    /// not become its own baseline.
    pub guard_buckets: usize,
    /// Half-life, in buckets, of the weights of the region-share estimate.
    pub share_half_life: f64,
    pub cell_false_alarms_per_region_month: f64,
    pub column_false_alarms_per_year: f64,
    /// Alarms on the same scope within this many buckets belong to one episode.
    pub episode_gap: usize,
    /// An episode that is still alarming after this many buckets is taken as a new level:
    /// the baseline is raised and the episode ends.
    pub rebaseline_after: usize,
    pub scan_windows: Vec<usize>,
    pub cell_kappa: f64,
    pub total_kappa: f64,
    pub calibration_draws: usize,
    /// A cross-region alert needs at least this many excess complaints.
    pub min_excess: f64,
    pub seed: u64,
}

impl EngineConfig {
    pub fn daily() -> Self {
        EngineConfig {
            bucket: BucketKind::Daily,
            history_buckets: 730,
            min_history: 56,
            refit_every: 7,
            recalibrate_every: 91,
            guard_buckets: 7,
            share_half_life: 180.0,
            cell_false_alarms_per_region_month: 0.25,
            column_false_alarms_per_year: 1.0,
            episode_gap: 7,
            rebaseline_after: 28,
            scan_windows: vec![1, 3, 7, 14],
            cell_kappa: 1.5,
            total_kappa: 1.2,
            calibration_draws: 600,
            min_excess: 3.0,
            seed: 0x7472_656e_6473,
        }
    }

    pub fn hourly() -> Self {
        EngineConfig {
            bucket: BucketKind::Hourly,
            history_buckets: 56 * 24,
            min_history: 14 * 24,
            refit_every: 24,
            recalibrate_every: 7 * 24,
            guard_buckets: 24,
            share_half_life: 14.0 * 24.0,
            scan_windows: vec![1, 6, 24, 72],
            rebaseline_after: 48,
            episode_gap: 24,
            ..EngineConfig::daily()
        }
    }

    fn spike_alpha(&self, columns: usize) -> f64 {
        // SPIKE_SHARE of the per-cell budget goes to the spike tests, split over three windows.
        let per_cell = self.cell_false_alarms_per_region_month
            / (columns.max(1) as f64 * self.bucket.per_month());
        per_cell * SPIKE_SHARE / 3.0
    }

    fn cell_arl(&self, columns: usize) -> f64 {
        let per_cell = self.cell_false_alarms_per_region_month
            / (columns.max(1) as f64 * self.bucket.per_month());
        1.0 / (per_cell * (1.0 - SPIKE_SHARE))
    }

    fn total_arl(&self) -> f64 {
        self.bucket.per_year() / (self.column_false_alarms_per_year * TOTAL_CUSUM_SHARE)
    }

    /// Share of the series false-alarm budget of each scan window, in `scan_windows`
    /// order: `SCAN_SHORTEST_SHARE` for the shortest, `SCAN_LONGER_SHARE` split equally
    /// over the others (a single window gets both).
    pub fn scan_window_shares(&self) -> Vec<f64> {
        let n = self.scan_windows.len();
        let shortest = (0..n).min_by_key(|&i| (self.scan_windows[i], i));
        (0..n)
            .map(|i| match (n, Some(i) == shortest) {
                (1, _) => SCAN_SHORTEST_SHARE + SCAN_LONGER_SHARE,
                (_, true) => SCAN_SHORTEST_SHARE,
                _ => SCAN_LONGER_SHARE / (n - 1) as f64,
            })
            .collect()
    }

    /// Share of the series false-alarm budget of the NB-CUSUM on the total.
    pub fn total_cusum_share(&self) -> f64 {
        TOTAL_CUSUM_SHARE
    }
}

/// A series: a category, or a tracked tag value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ColumnId {
    pub dimension: Dimension,
    pub name: String,
}

/// One closed bucket: `counts[column][region]` (missing entries are zero) and a few
/// complaint ids per cell for the alerts' examples.
#[derive(Debug, Clone, Default)]
pub struct BucketInput {
    pub counts: Vec<Vec<u32>>,
    pub examples: BTreeMap<(usize, usize), Vec<String>>,
}

impl BucketInput {
    fn count(&self, column: usize, region: usize) -> u32 {
        self.counts
            .get(column)
            .and_then(|c| c.get(region))
            .copied()
            .unwrap_or(0)
    }
}

/// An alert message with the indices the benchmark scores by.
#[derive(Debug, Clone)]
pub struct EngineAlert {
    pub alert: TrendAlert,
    pub column: usize,
    /// The region of a cell alert; None for series-level alerts.
    pub cell_region: Option<usize>,
    pub region_set: Vec<usize>,
    pub bucket: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Episode {
    id: String,
    started: u64,
    last_alarm: u64,
    revision: u32,
    best_ratio: f64,
    /// Every region the episode has named (its cell alarms are subsumed by it).
    regions: BTreeSet<usize>,
    last: TrendAlert,
    /// First bucket of the first alarm's window: series episodes localise over the
    /// whole episode so far.
    #[serde(default)]
    evidence_from: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Column {
    id: ColumnId,
    first_seen: u64,
    totals: Vec<u32>,
    model: Option<SeasonalModel>,
    phi_cell: f64,
    misfit: f64,
    /// Misfit variance of window sums, per scan window (see `window_misfits`).
    #[serde(default)]
    misfit_w: Vec<f64>,
    level: f64,
    level_since: u64,
    cusum: f64,
    cusum_since: u64,
    cusum_h: f64,
    scan_h: Vec<f64>,
    /// Per window: (score at the 0.99 quantile, exponential tail scale) of the null scan.
    scan_tail: Vec<(f64, f64)>,
    calibrated_at: Option<u64>,
    /// (typical total, cell dispersion, misfit, bucket) the thresholds were simulated
    /// for and when; `calibrated_at` is the last check.
    #[serde(default)]
    calibrated_for: Option<(f64, f64, f64, u64)>,
    /// The window misfits the scan thresholds were simulated for.
    #[serde(default)]
    calibrated_misfit_w: Vec<f64>,
    episode: Option<Episode>,
    /// Diagnostics of the last bucket: score over threshold of each scan window, then of
    /// the CUSUM on the total (not persisted).
    #[serde(skip)]
    last_ratios: Vec<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cell {
    counts: Vec<u32>,
    /// Expected count of the recent buckets; negative = not modelled.
    expected: Vec<f32>,
    cusum_trace: Vec<f32>,
    late: Vec<u16>,
    share: f64,
    share_var: f64,
    level: f64,
    level_since: u64,
    cusum: f64,
    cusum_since: u64,
    cusum_h: f64,
    episode: Option<Episode>,
    examples: Vec<(u64, String)>,
}

impl Cell {
    fn new(history: usize) -> Self {
        Cell {
            counts: vec![0; history],
            expected: vec![-1.0; RECENT],
            cusum_trace: vec![-1.0; RECENT],
            late: vec![0; RECENT],
            share: 0.0,
            share_var: 0.0,
            level: 1.0,
            level_since: 0,
            cusum: 0.0,
            cusum_since: 0,
            cusum_h: 0.0,
            episode: None,
            examples: Vec::new(),
        }
    }
}

/// Thresholds of the NB-CUSUM found by simulation, keyed by the rounded (mean, dispersion,
/// kappa, target run length). Deterministic (seeded per key), so it is recomputed rather
/// than persisted.
pub type CusumTable = BTreeMap<(i32, i32, i32, i32), f64>;

/// What one alarm says, before episode bookkeeping.
struct Alarm {
    kind: AlertKind,
    regions: Vec<usize>,
    window_start: u64,
    window_buckets: u32,
    score: f64,
    threshold: f64,
    p_value: f64,
    detector: String,
}

/// The detection engine (see the module doc).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrendEngine {
    config: EngineConfig,
    origin: Timestamp,
    origin_week_pos: u32,
    closed: u64,
    regions: Vec<String>,
    region_index: BTreeMap<String, usize>,
    columns: Vec<Column>,
    /// `<dimension>/<name>` -> column (JSON map keys must be strings).
    column_index: BTreeMap<String, usize>,
    cells: Vec<Vec<Cell>>,
    last_fit: Option<u64>,
    share_prior_weight: f64,
    /// Days whose complaints across all categories fell far below the model (holidays,
    /// outages), with their ratio to it; see `dip_factor`.
    #[serde(default)]
    dips: Vec<(u64, f32)>,
    /// Days before this have been checked for dips.
    #[serde(default)]
    dips_checked: u64,
    #[serde(skip)]
    cusum_table: CusumTable,
}

impl TrendEngine {
    /// An engine whose bucket 0 starts at `origin` (UTC).
    pub fn new(config: EngineConfig, origin: Timestamp) -> Self {
        let origin_week_pos = week_position(origin, config.bucket);
        TrendEngine {
            config,
            origin,
            origin_week_pos,
            closed: 0,
            regions: Vec::new(),
            region_index: BTreeMap::new(),
            columns: Vec::new(),
            column_index: BTreeMap::new(),
            cells: Vec::new(),
            last_fit: None,
            share_prior_weight: 0.0,
            dips: Vec::new(),
            dips_checked: 0,
            cusum_table: CusumTable::new(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn origin(&self) -> Timestamp {
        self.origin
    }

    /// Number of buckets closed so far (= index of the open bucket).
    pub fn closed(&self) -> u64 {
        self.closed
    }

    pub fn regions(&self) -> &[String] {
        &self.regions
    }

    pub fn columns(&self) -> impl Iterator<Item = &ColumnId> {
        self.columns.iter().map(|c| &c.id)
    }

    pub fn bucket_start(&self, bucket: u64) -> Timestamp {
        let secs = self.config.bucket.seconds().saturating_mul(bucket as i64);
        self.origin
            .saturating_add(SignedDuration::from_secs(secs))
            .unwrap_or(self.origin)
    }

    /// Shares the simulated CUSUM thresholds with another engine (the benchmark runs many).
    pub fn cusum_table(&self) -> &CusumTable {
        &self.cusum_table
    }

    pub fn set_cusum_table(&mut self, table: CusumTable) {
        self.cusum_table = table;
    }

    pub fn region_id(&self, name: &str) -> Option<usize> {
        self.region_index.get(name).copied()
    }

    pub fn column_id(&self, id: &ColumnId) -> Option<usize> {
        self.column_index.get(&column_key(id)).copied()
    }

    /// The index of a region, registering it on first sight.
    pub fn region(&mut self, name: &str) -> usize {
        if let Some(&i) = self.region_index.get(name) {
            return i;
        }
        let i = self.regions.len();
        self.regions.push(name.to_owned());
        self.region_index.insert(name.to_owned(), i);
        for column in &mut self.cells {
            column.push(Cell::new(self.config.history_buckets));
        }
        i
    }

    /// The index of a series, registering it on first sight.
    pub fn column(&mut self, id: ColumnId) -> usize {
        if let Some(&i) = self.column_index.get(&column_key(&id)) {
            return i;
        }
        let i = self.columns.len();
        self.column_index.insert(column_key(&id), i);
        self.columns.push(Column {
            id,
            first_seen: self.closed,
            totals: vec![0; self.config.history_buckets],
            model: None,
            phi_cell: 1.0,
            misfit: 0.0,
            misfit_w: Vec::new(),
            level: 1.0,
            level_since: 0,
            cusum: 0.0,
            cusum_since: 0,
            cusum_h: 0.0,
            scan_h: Vec::new(),
            scan_tail: Vec::new(),
            calibrated_at: None,
            calibrated_for: None,
            calibrated_misfit_w: Vec::new(),
            episode: None,
            last_ratios: Vec::new(),
        });
        self.cells.push(
            (0..self.regions.len())
                .map(|_| Cell::new(self.config.history_buckets))
                .collect(),
        );
        i
    }

    /// A complaint that arrived after its bucket closed. It is added to the stored count
    /// (so windows and later fits see it) and remembered as late, so an alert whose window
    /// contains it says so. Returns false if the bucket is older than the kept history.
    pub fn add_late(&mut self, bucket: u64, column: usize, region: usize) -> bool {
        let history = self.config.history_buckets as u64;
        if bucket >= self.closed || self.closed - bucket > history {
            return false;
        }
        let slot = (bucket % history) as usize;
        let col = &mut self.columns[column];
        col.totals[slot] += 1;
        let cell = &mut self.cells[column][region];
        cell.counts[slot] += 1;
        if self.closed - bucket <= RECENT as u64 {
            let r = (bucket % RECENT as u64) as usize;
            cell.late[r] = cell.late[r].saturating_add(1);
        }
        true
    }

    fn week_pos(&self, t: u64) -> u32 {
        ((u64::from(self.origin_week_pos) + t) % u64::from(self.config.bucket.week_len())) as u32
    }

    fn slot(&self, t: u64) -> usize {
        (t % self.config.history_buckets as u64) as usize
    }

    /// Closes the open bucket with these counts and runs the detectors.
    pub fn close_bucket(&mut self, input: &BucketInput) -> Vec<EngineAlert> {
        let t = self.closed;
        let slot = self.slot(t);
        let rslot = (t % RECENT as u64) as usize;
        for (c, column) in self.columns.iter_mut().enumerate() {
            let mut total = 0u32;
            for (r, cell) in self.cells[c].iter_mut().enumerate() {
                let x = input.count(c, r);
                cell.counts[slot] = x;
                total += x;
                cell.expected[rslot] = -1.0;
                cell.cusum_trace[rslot] = -1.0;
                cell.late[rslot] = 0;
                cell.examples.retain(|(b, _)| t - b < RECENT as u64);
            }
            column.totals[slot] = total;
        }
        for (&(c, r), ids) in &input.examples {
            if let Some(cell) = self.cells.get_mut(c).and_then(|col| col.get_mut(r)) {
                for id in ids.iter().take(EXAMPLES) {
                    cell.examples.push((t, id.clone()));
                }
                let excess = cell.examples.len().saturating_sub(EXAMPLES);
                cell.examples.drain(..excess);
            }
        }
        self.closed += 1;
        if (self.closed as usize) < self.config.min_history {
            return Vec::new();
        }
        if self
            .last_fit
            .is_none_or(|f| t - f >= self.config.refit_every as u64)
        {
            self.refit(t);
            self.find_dips(t);
            self.last_fit = Some(t);
        }
        self.recalibrate_due(t);
        self.detect(t)
    }

    fn column_level_at(column: &Column, s: u64) -> f64 {
        if s >= column.level_since {
            column.level
        } else {
            1.0
        }
    }

    fn features(&self, span: u64) -> Features {
        let bucket = self.config.bucket;
        let per_year = bucket.per_year();
        match bucket {
            BucketKind::Daily => Features {
                week_len: 7,
                buckets_per_year: per_year,
                trend: span >= 182,
                annual: if span >= 700 {
                    2
                } else if span >= 365 {
                    1
                } else {
                    0
                },
                daily: 0,
            },
            BucketKind::Hourly => Features {
                week_len: 168,
                buckets_per_year: per_year,
                trend: span >= 28 * 24,
                annual: 0,
                daily: 3,
            },
        }
    }

    /// Records the days, old enough to be complete, on which all categories together fell
    /// far below the model: a ratio under `DIP_RATIO` and more than `DIP_Z` standard
    /// deviations down (daily buckets only; each day is checked once).
    fn find_dips(&mut self, t: u64) {
        if self.config.bucket != BucketKind::Daily {
            return;
        }
        let history = self.config.history_buckets as u64;
        let from = self.dips_checked.max((t + 1).saturating_sub(history));
        let to = (t + 1).saturating_sub(self.config.guard_buckets as u64);
        for s in from..to {
            let (mut x, mut e) = (0.0, 0.0);
            for column in &self.columns {
                let Some(model) = &column.model else { continue };
                if column.id.dimension != Dimension::Category || s < column.first_seen {
                    continue;
                }
                x += f64::from(column.totals[self.slot(s)] & COUNT_MASK);
                e += model.predict(s, self.week_pos(s)) * Self::column_level_at(column, s);
            }
            if e > 0.0 && x < DIP_RATIO * e && (x - e) / (2.0 * e).sqrt() < -DIP_Z {
                self.dips.push((s, (x / e) as f32));
            }
        }
        self.dips_checked = self.dips_checked.max(to);
        // Two years back is as far as `dip_factor` looks.
        let keep_from = t.saturating_sub(2 * 366 + 1);
        self.dips.retain(|&(s, _)| s >= keep_from);
    }

    /// The expected share of a normal day's volume on day `t`: a dip that recurred on the
    /// same day in each of the two previous years (a fixed-date holiday) is expected
    /// again, at the mean of those years' ratios; anything else is 1. The same day is
    /// either 365 and 730 days back or the same calendar date; both years must agree, so
    /// a one-off outage a year ago never lowers an expectation.
    fn dip_factor(&self, t: u64) -> f64 {
        if self.dips.is_empty() || self.config.bucket != BucketKind::Daily {
            return 1.0;
        }
        let find = |s: Option<u64>| {
            let s = s?;
            let i = self.dips.binary_search_by_key(&s, |&(b, _)| b).ok()?;
            Some(f64::from(self.dips[i].1))
        };
        let mut lags = vec![(t.checked_sub(365), t.checked_sub(730))];
        let day = self
            .bucket_start(t)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        let calendar = |years: i16| {
            let date = day.checked_sub(jiff::Span::new().years(years)).ok()?;
            let at = date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
            let secs = at.as_second() - self.origin.as_second();
            (secs >= 0).then_some((secs / 86_400) as u64)
        };
        lags.push((calendar(1), calendar(2)));
        for (a, b) in lags {
            if let (Some(a), Some(b)) = (find(a), find(b)) {
                return ((a + b) / 2.0).clamp(0.05, 1.0);
            }
        }
        1.0
    }

    /// Refits every series' model, then the region shares and dispersions.
    fn refit(&mut self, t: u64) {
        let history = self.config.history_buckets as u64;
        let start_all = (t + 1).saturating_sub(history);
        let end = (t + 1).saturating_sub(self.config.guard_buckets as u64);
        let n_regions = self.regions.len();
        let min_history = self.config.min_history as u64;
        for c in 0..self.columns.len() {
            let column = &self.columns[c];
            let start = start_all.max(column.first_seen);
            if end <= start || t + 1 - column.first_seen < min_history {
                continue;
            }
            let obs: Vec<Observation> = (start..end)
                .map(|s| {
                    let raw = column.totals[self.slot(s)];
                    Observation {
                        t: s,
                        week_pos: self.week_pos(s),
                        count: f64::from(raw & COUNT_MASK) / Self::column_level_at(column, s),
                        usable: raw & EXCLUDED == 0,
                    }
                })
                .collect();
            let features = self.features(end - start);
            let warm = column
                .model
                .as_ref()
                .filter(|m| m.features == features)
                .map(|m| m.coefficients.clone());
            if let Some(fitted) = model::fit(features, &obs, warm.as_deref()) {
                self.columns[c].model = Some(fitted);
            }
        }

        // Region shares: long-memory weighted sums per cell, pooled toward the region's
        // share of all categories (empirical Bayes), so sparse cells borrow strength.
        let half_life = self.config.share_half_life;
        let weights: Vec<f64> = (start_all..end)
            .map(|s| 0.5f64.powf((t - s) as f64 / half_life))
            .collect();
        let kappa =
            weights.iter().map(|w| w * w).sum::<f64>() / weights.iter().sum::<f64>().max(1e-9);
        let slots: Vec<usize> = (start_all..end).map(|s| self.slot(s)).collect();
        let mut n = vec![vec![0.0; n_regions]; self.columns.len()];
        let mut big_n = vec![vec![0.0; n_regions]; self.columns.len()];
        for c in 0..self.columns.len() {
            let column = &self.columns[c];
            if column.model.is_none() {
                continue;
            }
            for r in 0..n_regions {
                let cell = &self.cells[c][r];
                let (mut num, mut den) = (0.0, 0.0);
                for (i, s) in (start_all..end).enumerate() {
                    let slot = slots[i];
                    let total = column.totals[slot];
                    let raw = cell.counts[slot];
                    if total & EXCLUDED != 0 || raw & EXCLUDED != 0 {
                        continue;
                    }
                    let lvl_c = Self::column_level_at(column, s);
                    let lvl_r = if s >= cell.level_since {
                        cell.level
                    } else {
                        1.0
                    };
                    let total = f64::from(total & COUNT_MASK) / lvl_c;
                    let mut x = f64::from(raw & COUNT_MASK) / lvl_c / lvl_r;
                    if cell.share > 0.0 {
                        // Past outbreaks the alerts missed must not inflate the share.
                        let e = cell.share * total;
                        x = x.min(e + 4.0 * (column.phi_cell * e).sqrt() + 3.0);
                    }
                    num += weights[i] * x;
                    den += weights[i] * total;
                }
                n[c][r] = num;
                big_n[c][r] = den;
            }
        }
        let categories: Vec<usize> = (0..self.columns.len())
            .filter(|&c| {
                self.columns[c].model.is_some()
                    && self.columns[c].id.dimension == Dimension::Category
            })
            .collect();
        let pool: Vec<usize> = if categories.is_empty() {
            (0..self.columns.len())
                .filter(|&c| self.columns[c].model.is_some())
                .collect()
        } else {
            categories
        };
        let region_share: Vec<f64> = (0..n_regions)
            .map(|r| {
                let num: f64 = pool.iter().map(|&c| n[c][r]).sum();
                let den: f64 = pool.iter().map(|&c| big_n[c][r]).sum();
                if den > 0.0 {
                    num / den
                } else {
                    0.0
                }
            })
            .collect();
        let mean_phi = {
            let fitted: Vec<f64> = self
                .columns
                .iter()
                .filter(|c| c.model.is_some())
                .map(|c| c.phi_cell)
                .collect();
            if fitted.is_empty() {
                1.0
            } else {
                fitted.iter().sum::<f64>() / fitted.len() as f64
            }
        };
        let (mut num, mut den) = (0.0, 0.0);
        for c in 0..self.columns.len() {
            for r in 0..n_regions {
                let e = big_n[c][r] * region_share[r];
                if e > 0.0 {
                    num += (n[c][r] - e).powi(2) - mean_phi * kappa * e;
                    den += e * e;
                }
            }
        }
        let tau2 = if den > 0.0 {
            (num / den).clamp(1e-3, 4.0)
        } else {
            1.0
        };
        self.share_prior_weight = mean_phi * kappa / tau2;
        for c in 0..self.columns.len() {
            if self.columns[c].model.is_none() {
                continue;
            }
            for r in 0..n_regions {
                let e = big_n[c][r] * region_share[r];
                let cell = &mut self.cells[c][r];
                if e <= 0.0 {
                    cell.share = 0.0;
                    cell.share_var = 0.0;
                    continue;
                }
                let phi_k = mean_phi * kappa;
                let rho = (1.0 + (n[c][r] - e) * tau2 / (tau2 * e + phi_k)).max(0.02);
                cell.share = region_share[r] * rho;
                cell.share_var = (tau2 * phi_k / (tau2 * e + phi_k)) / (rho * rho);
            }
        }

        // Dispersion of cells around share * total, over the last year of the fit.
        let year = self.config.bucket.per_year() as u64;
        for c in 0..self.columns.len() {
            let Some(model) = self.columns[c].model.clone() else {
                continue;
            };
            let column = &self.columns[c];
            let from = end
                .saturating_sub(year)
                .max(start_all)
                .max(column.first_seen);
            let (mut num, mut den, mut msum, mut mcount) = (0.0, 0.0, 0.0, 0.0);
            // The model's total per bucket (None: left out), for the window misfits.
            let mut predicted = Vec::with_capacity(end.saturating_sub(from) as usize);
            for s in from..end {
                let slot = self.slot(s);
                if column.totals[slot] & EXCLUDED != 0 {
                    predicted.push(None);
                    continue;
                }
                let m = model.predict(s, self.week_pos(s));
                predicted.push(Some(m));
                msum += m;
                mcount += 1.0;
                let lvl_c = Self::column_level_at(column, s);
                for cell in &self.cells[c] {
                    let raw = cell.counts[slot];
                    if raw & EXCLUDED != 0 || cell.share <= 0.0 {
                        continue;
                    }
                    let lvl_r = if s >= cell.level_since {
                        cell.level
                    } else {
                        1.0
                    };
                    let x = f64::from(raw & COUNT_MASK) / lvl_c / lvl_r;
                    let mu = cell.share * m;
                    num += ((x - mu).powi(2)).min(25.0 * (mu + 0.5));
                    den += mu;
                }
            }
            let phi_cell = if den > 0.0 {
                (num / den).clamp(1.0, 20.0)
            } else {
                1.0
            };
            let mbar = if mcount > 0.0 { msum / mcount } else { 1.0 };
            // The totals the window misfits are measured on: each region's count capped
            // like in the scan (a cell's spike is a cell alert, not misfit of the series
            // model) and a region's count that an episode left out replaced by its
            // expectation. Measured on the raw totals, every spike of the past year that
            // the series episodes did not cover (none at all before the engine's first
            // alerts) raised the misfit, and with it the variance every later rise is
            // measured against: the variance factors of the scan windows fell from
            // 1.1-1.9 to 1.0-1.3 in the benchmark.
            let cleaned: Vec<f64> = (from..end)
                .zip(&predicted)
                .map(|(s, m)| {
                    let Some(m) = m else { return 0.0 };
                    let slot = self.slot(s);
                    let lvl_c = Self::column_level_at(column, s);
                    self.cells[c]
                        .iter()
                        .map(|cell| {
                            let e = cell.share * cell.level * m * lvl_c;
                            let raw = cell.counts[slot];
                            if raw & EXCLUDED != 0 {
                                e
                            } else {
                                f64::from(raw & COUNT_MASK)
                                    .min(e + 4.0 * (phi_cell * e).sqrt() + 2.0)
                            }
                        })
                        .sum()
                })
                .collect();
            let misfit_w = self.window_misfits(c, &predicted, &cleaned, from, phi_cell);
            let column = &mut self.columns[c];
            column.phi_cell = phi_cell;
            column.misfit = ((model.phi_total - phi_cell) / mbar.max(1e-9)).clamp(0.0, 1.0);
            column.misfit_w = misfit_w;
        }
    }

    /// Relative variance of the model's error on window sums of the series total, per
    /// scan window, beyond the counts' own dispersion: `var(X - E) = phi E + m E^2`.
    /// Estimated from the upper semi-variance only (twice the mean square of positive
    /// errors), since every test is one-sided and the dips the model does not know
    /// (holidays, outages) would otherwise make the rises look less surprising than they
    /// are.
    fn window_misfits(
        &self,
        c: usize,
        predicted: &[Option<f64>],
        observed: &[f64],
        from: u64,
        phi: f64,
    ) -> Vec<f64> {
        let column = &self.columns[c];
        let share_sum: f64 = self.cells[c]
            .iter()
            .map(|cell| cell.share * cell.level)
            .sum();
        let n = predicted.len();
        // Prefix sums of observed and expected totals and of left-out buckets.
        let (mut px, mut pe, mut pout) = (vec![0.0; n + 1], vec![0.0; n + 1], vec![0u32; n + 1]);
        for (i, m) in predicted.iter().enumerate() {
            let s = from + i as u64;
            let x = observed[i];
            let e = m.unwrap_or(0.0) * Self::column_level_at(column, s) * share_sum;
            px[i + 1] = px[i] + x;
            pe[i + 1] = pe[i] + e;
            pout[i + 1] = pout[i] + u32::from(m.is_none());
        }
        self.config
            .scan_windows
            .iter()
            .map(|&w| {
                if n < w {
                    return 0.0;
                }
                let sums: Vec<(f64, f64)> = (w..=n)
                    .filter(|&i| pout[i] == pout[i - w])
                    .map(|i| (px[i] - px[i - w], pe[i] - pe[i - w]))
                    .collect();
                let den: f64 = sums.iter().map(|(_, es)| es * es).sum();
                if den <= 0.0 {
                    return 0.0;
                }
                // Huber-style: errors capped at MISFIT_CAP standard deviations of the
                // current estimate, rescaled by the share of a normal's upper
                // semi-variance the cap keeps; iterated from no misfit, so a past outbreak
                // the alerts missed moves the estimate by a few capped windows only.
                let mut m = 0.0;
                for _ in 0..4 {
                    let mut num = 0.0;
                    for &(xs, es) in &sums {
                        let v = phi * es + m * es * es;
                        let d = xs - es;
                        if d > 0.0 {
                            num +=
                                2.0 * (d * d).min(MISFIT_CAP * MISFIT_CAP * v) / MISFIT_CAP_KEEPS;
                        }
                        // A count's upper semi-variance exceeds half its variance by
                        // its skewness (Edgeworth: by 0.133 skewness); uncorrected, every
                        // small series would get a misfit of its own skew.
                        let skew = (2.0 * phi - 1.0) / (phi * es).max(1e-9).sqrt();
                        num -= phi * es * (1.0 + 0.266 * skew.min(2.0));
                    }
                    m = (num / den).clamp(0.0, 1.0);
                }
                m
            })
            .collect()
    }

    /// The misfit variance the scan over window `wi` uses (the whole-series estimate
    /// until the windows have one).
    fn window_misfit(&self, c: usize, wi: usize) -> f64 {
        let column = &self.columns[c];
        column.misfit_w.get(wi).copied().unwrap_or(column.misfit)
    }

    /// The misfit variance of one bucket's total, for the CUSUM on the total.
    fn total_misfit(&self, c: usize) -> f64 {
        match self.config.scan_windows.iter().position(|&w| w == 1) {
            Some(wi) => self.window_misfit(c, wi),
            None => self.columns[c].misfit,
        }
    }

    /// Mean expected total of the coming week (the typical bucket thresholds are set for).
    fn typical_total(&self, c: usize, t: u64) -> Option<f64> {
        let column = &self.columns[c];
        let model = column.model.as_ref()?;
        let week = u64::from(self.config.bucket.week_len());
        let sum: f64 = (t + 1..t + 1 + week)
            .map(|s| model.predict(s, self.week_pos(s)))
            .sum();
        Some(sum / week as f64 * column.level)
    }

    /// Sets the CUSUM and scan thresholds by simulation from the fitted model.
    /// Calibrates series that have a model but no thresholds yet, and at most one series
    /// whose thresholds are older than `recalibrate_every` (the oldest), so the cost of
    /// the simulations is spread over the buckets instead of stalling one of them.
    fn recalibrate_due(&mut self, t: u64) {
        let every = self.config.recalibrate_every as u64;
        let mut due: Vec<usize> = (0..self.columns.len())
            .filter(|&c| self.columns[c].model.is_some() && self.columns[c].calibrated_at.is_none())
            .collect();
        if due.is_empty() {
            let oldest = (0..self.columns.len())
                .filter_map(|c| {
                    self.columns[c]
                        .calibrated_at
                        .filter(|&at| t - at >= every)
                        .map(|at| (at, c))
                })
                .min();
            due.extend(oldest.map(|(_, c)| c));
        }
        for c in due {
            // The simulations are the bulk of the engine's cost; when what they depend on
            // has hardly moved since the last ones (typical total within 15 %, dispersion
            // within 0.1, each window's variance factor within a half), the thresholds
            // would come out the same up to simulation noise, so they are kept for another
            // period (at most a year). A rebaseline clears `calibrated_for` and forces new
            // ones.
            let now = self.typical_total(c, t).map(|m| {
                let column = &self.columns[c];
                (m, column.phi_cell, column.misfit, t)
            });
            let column = &self.columns[c];
            // The scan scores are divided by the current variance factor
            // `phi + misfit_w * E_w` of their window, so a threshold depends on it only
            // through the shape of the null distribution: a loose tolerance will do.
            let windows_unchanged = column.misfit_w.len() == column.calibrated_misfit_w.len()
                && self.config.scan_windows.iter().enumerate().all(|(wi, &w)| {
                    let (m, m0) = (column.misfit_w[wi], column.calibrated_misfit_w[wi]);
                    let e = now.map_or(0.0, |n| n.0) * w as f64;
                    (m - m0).abs() * e <= 0.5 * (column.phi_cell + m0 * e)
                });
            let unchanged = match (column.calibrated_for, now) {
                (Some((m0, p0, _, at)), Some((m, p, _, _))) => {
                    (m / m0).ln().abs() < 1.15f64.ln()
                        && (p - p0).abs() < 0.1
                        && windows_unchanged
                        && t - at < self.config.bucket.per_year() as u64
                }
                _ => false,
            };
            if unchanged {
                self.columns[c].calibrated_at = Some(t);
                continue;
            }
            self.recalibrate(t, c);
            self.columns[c].calibrated_at = Some(t);
            self.columns[c].calibrated_for = now;
            self.columns[c].calibrated_misfit_w = self.columns[c].misfit_w.clone();
        }
    }

    fn recalibrate(&mut self, t: u64, only: usize) {
        let n_columns = self.columns.len();
        let cell_arl = self.config.cell_arl(n_columns);
        let total_arl = self.config.total_arl();
        let windows = self.config.scan_windows.clone();
        let shares = self.config.scan_window_shares();
        let per_year_budget = self.config.column_false_alarms_per_year;
        for c in only..=only {
            let Some(mbar) = self.typical_total(c, t) else {
                continue;
            };
            let phi_cell = self.columns[c].phi_cell;
            let total_phi = phi_cell + self.total_misfit(c) * mbar;
            let h = self.cusum_threshold(mbar, total_phi, self.config.total_kappa, total_arl);
            self.columns[c].cusum_h = h;
            let mut mus = Vec::with_capacity(self.regions.len());
            let mut vars = Vec::with_capacity(self.regions.len());
            for r in 0..self.regions.len() {
                let (share, level, share_var) = (
                    self.cells[c][r].share,
                    self.cells[c][r].level,
                    self.cells[c][r].share_var,
                );
                let mu = share * level * mbar;
                mus.push(mu);
                vars.push(share_var);
                let h = if mu > 0.0 {
                    self.cusum_threshold(mu, phi_cell, self.config.cell_kappa, cell_arl)
                } else {
                    0.0
                };
                self.cells[c][r].cusum_h = h;
            }
            let mut rng = Rng::new(
                self.config.seed ^ (c as u64).wrapping_mul(0x9E37_79B9) ^ t.rotate_left(32),
            );
            let mut scan_h = Vec::with_capacity(windows.len());
            let mut scan_tail = Vec::with_capacity(windows.len());
            let draws = self.config.calibration_draws.max(100);
            let mut observed = vec![0.0; mus.len()];
            let mut expected = vec![0.0; mus.len()];
            let mut scratch = Vec::with_capacity(mus.len());
            // The coming week's profile relative to its mean: each draw is a window
            // ending on any bucket of it, so short windows on quiet days (sparser counts,
            // heavier tails) are calibrated for too, not only the mean day.
            let profile: Vec<f64> = {
                let week = u64::from(self.config.bucket.week_len());
                let column = &self.columns[c];
                (t + 1..t + 1 + week)
                    .map(|s| {
                        column.model.as_ref().map_or(1.0, |m| {
                            m.predict(s, self.week_pos(s)) * column.level / mbar.max(1e-9)
                        })
                    })
                    .collect()
            };
            for (wi, &w) in windows.iter().enumerate() {
                let misfit = self.window_misfit(c, wi);
                let mut scores = Vec::with_capacity(draws);
                for _ in 0..draws {
                    let f = (misfit.sqrt() * rng.normal() - misfit / 2.0).exp();
                    let end = rng.below(profile.len() as u64) as usize;
                    let span: f64 = (0..w)
                        .map(|j| profile[(end + profile.len() * w - j) % profile.len()])
                        .sum();
                    for r in 0..mus.len() {
                        let b = mus[r] * span;
                        expected[r] = b;
                        let u = if vars[r] > 1e-4 {
                            (vars[r].sqrt() * rng.normal() - vars[r] / 2.0).exp()
                        } else {
                            1.0
                        };
                        observed[r] = rng.neg_binomial(b * f * u, phi_cell) as f64;
                    }
                    let best = best_subset(
                        &observed,
                        &expected,
                        phi_cell,
                        misfit,
                        self.config.min_excess,
                        &mut scratch,
                    );
                    scores.push(best.0);
                }
                let q90 = quantile(&scores, 0.90);
                let q99 = quantile(&scores, 0.99);
                let theta = ((q99 - q90) / 10f64.ln()).max(0.25);
                // At these levels a w-bucket window's exceedances come in runs of one or
                // two buckets whatever w is (sliding by a bucket moves the sum by about a
                // standard deviation of one bucket while the excess over the threshold is
                // far smaller), so each exceeding bucket counts as an episode.
                let per_bucket = per_year_budget * shares[wi] / self.config.bucket.per_year();
                let target = per_bucket * RUN_CREDIT;
                let h = (q99 + theta * (0.01 / target).ln()).max(2.0);
                scan_h.push(h);
                scan_tail.push((q99, theta));
            }
            self.columns[c].scan_h = scan_h;
            self.columns[c].scan_tail = scan_tail;
        }
    }

    /// The NB-CUSUM threshold giving the target average run length under the null.
    fn cusum_threshold(&mut self, mu: f64, phi: f64, kappa: f64, arl: f64) -> f64 {
        let mu_key = (2.0 * mu.max(1e-3).log2()).round() as i32;
        let phi_key = (phi * 4.0).ceil() as i32;
        let kappa_key = (kappa * 100.0).round() as i32;
        let arl_key = (4.0 * arl.max(2.0).log2()).round() as i32;
        let key = (mu_key, phi_key, kappa_key, arl_key);
        if let Some(&h) = self.cusum_table.get(&key) {
            return h;
        }
        let h = simulate_cusum_threshold(
            2f64.powf(f64::from(mu_key) / 2.0),
            f64::from(phi_key) / 4.0,
            f64::from(kappa_key) / 100.0,
            2f64.powf(f64::from(arl_key) / 4.0),
            self.config.seed
                ^ ((mu_key as u64) << 40)
                ^ ((phi_key as u64) << 24)
                ^ ((kappa_key as u64) << 12)
                ^ arl_key as u64,
        );
        self.cusum_table.insert(key, h);
        h
    }

    fn detect(&mut self, t: u64) -> Vec<EngineAlert> {
        let n_regions = self.regions.len();
        let n_columns = self.columns.len();
        let wp = self.week_pos(t);
        let dip = self.dip_factor(t);
        let slot = self.slot(t);
        let rslot = (t % RECENT as u64) as usize;

        // Expectations before the surge adjustment.
        let mut totals_expected = vec![None; n_columns];
        for (c, column) in self.columns.iter().enumerate() {
            if let Some(model) = &column.model {
                totals_expected[c] = Some(model.predict(t, wp) * column.level * dip);
            }
        }
        let mut mu = vec![vec![0.0; n_regions]; n_columns];
        for c in 0..n_columns {
            if let Some(m) = totals_expected[c] {
                for r in 0..n_regions {
                    let cell = &self.cells[c][r];
                    mu[c][r] = cell.share * cell.level * m;
                }
            }
        }
        // Reporting surges: a region whose volume across all categories is far above
        // expectation has every cell's expectation scaled by the jump of the others.
        let is_category: Vec<bool> = self
            .columns
            .iter()
            .map(|c| c.id.dimension == Dimension::Category && c.model.is_some())
            .collect();
        let (mut phi_sum, mut phi_n) = (0.0, 0.0);
        for c in 0..n_columns {
            if is_category[c] {
                phi_sum += self.columns[c].phi_cell;
                phi_n += 1.0;
            }
        }
        let region_phi = if phi_n > 0.0 { phi_sum / phi_n } else { 1.0 };
        let mut surge = vec![None; n_regions];
        for (r, surge) in surge.iter_mut().enumerate() {
            let (mut o, mut e) = (0u64, 0.0);
            for c in 0..n_columns {
                if is_category[c] {
                    o += u64::from(self.cells[c][r].counts[slot] & COUNT_MASK);
                    e += mu[c][r];
                }
            }
            if e > 0.0 && o as f64 > e && nb_upper_tail(o, e, region_phi) < SURGE_P {
                *surge = Some((o as f64, e));
            }
        }
        for c in 0..n_columns {
            for r in 0..n_regions {
                let mut m = mu[c][r];
                if let Some((o, e)) = surge[r] {
                    // Leave the series' own complaints out (a tag's complaints are part of
                    // the category totals too), so a rise cannot explain itself away.
                    let (o, e) = (
                        o - f64::from(self.cells[c][r].counts[slot] & COUNT_MASK),
                        e - m,
                    );
                    // The other series must be improbably high on their own: a spike of
                    // this cell must not explain away its own rise.
                    if e > 0.0 && nb_upper_tail(o as u64, e, region_phi) < SURGE_P {
                        m *= (o / e).max(1.0);
                    }
                }
                mu[c][r] = m;
                let cell = &mut self.cells[c][r];
                cell.expected[rslot] = if totals_expected[c].is_some() {
                    m as f32
                } else {
                    -1.0
                };
            }
        }

        let mut out = Vec::new();
        let spike_alpha = self.config.spike_alpha(n_columns);
        for c in 0..n_columns {
            if totals_expected[c].is_none() {
                continue;
            }
            let column_alarm = self.detect_column(c, t);
            let phi = self.columns[c].phi_cell;
            for r in 0..n_regions {
                let alarm = self.detect_cell(c, r, t, phi, spike_alpha);
                let covered = self.columns[c]
                    .episode
                    .as_ref()
                    .is_some_and(|e| e.regions.contains(&r));
                if let Some(alarm) = alarm {
                    if !covered {
                        if let Some(a) = self.episode_alarm(c, Some(r), t, alarm) {
                            out.push(a);
                        }
                    }
                }
            }
            if let Some(alarm) = column_alarm {
                if let Some(a) = self.episode_alarm(c, None, t, alarm) {
                    out.push(a);
                }
            }
        }
        out.extend(self.end_quiet_episodes(t));

        // Keep what alarmed (and surges) out of future baselines.
        for c in 0..n_columns {
            let column_regions: Option<BTreeSet<usize>> =
                self.columns[c].episode.as_ref().map(|e| e.regions.clone());
            if column_regions.is_some() {
                self.columns[c].totals[slot] |= EXCLUDED;
            }
            for r in 0..n_regions {
                let in_column = column_regions.as_ref().is_some_and(|set| set.contains(&r));
                let cell = &mut self.cells[c][r];
                if cell.episode.is_some() || in_column || surge[r].is_some() {
                    cell.counts[slot] |= EXCLUDED;
                }
            }
        }
        out
    }

    fn detect_cell(
        &mut self,
        c: usize,
        r: usize,
        t: u64,
        phi: f64,
        spike_alpha: f64,
    ) -> Option<Alarm> {
        let rslot = (t % RECENT as u64) as usize;
        let history = self.config.history_buckets as u64;
        let cell = &mut self.cells[c][r];
        let mu = f64::from(cell.expected[rslot]);
        if mu <= 0.0 {
            cell.cusum_trace[rslot] = 0.0;
            return None;
        }
        let x = f64::from(cell.counts[(t % history) as usize] & COUNT_MASK);
        if cell.cusum == 0.0 {
            cell.cusum_since = t;
        }
        cell.cusum = (cell.cusum + nb_llr(x, mu, phi, self.config.cell_kappa)).max(0.0);
        cell.cusum_trace[rslot] = cell.cusum as f32;
        let mut best: Option<Alarm> = None;
        if x > 0.0 {
            let (mut sx, mut sm) = (0u64, 0.0);
            for w in 0..3u64 {
                if w > t {
                    break;
                }
                let s = t - w;
                let e = f64::from(cell.expected[(s % RECENT as u64) as usize]);
                if e < 0.0 {
                    break;
                }
                sx += u64::from(cell.counts[(s % history) as usize] & COUNT_MASK);
                sm += e;
                // Longer windows alarm only while the newest bucket is itself high, so a
                // spike is not re-reported for two more buckets after it.
                if w == 0 && x <= e {
                    break;
                }
                if (sx as f64) <= sm + 2.0 * (phi * sm).sqrt() {
                    continue;
                }
                // Mid-p: with sparse cells the plain tail probability is far below its
                // nominal level, which would leave most of the budget unused.
                // Floored so that -log10(p) stays finite (JSON has no infinity).
                let p =
                    (nb_upper_tail(sx, sm, phi) - 0.5 * nb_ln_pmf(sx, sm, phi).exp()).max(1e-300);
                if p < spike_alpha && best.as_ref().is_none_or(|b| p < b.p_value) {
                    best = Some(Alarm {
                        kind: AlertKind::Spike,
                        regions: vec![r],
                        window_start: s,
                        window_buckets: w as u32 + 1,
                        score: -p.log10(),
                        threshold: -spike_alpha.log10(),
                        p_value: p,
                        detector: format!("nb_tail_w{}", w + 1),
                    });
                }
            }
        }
        if best.is_none() && cell.cusum_h > 0.0 && cell.cusum > cell.cusum_h {
            let since = cell.cusum_since.max(t.saturating_sub(RECENT as u64 - 1));
            let (sx, sm) = window_sums(cell, since, t, history);
            best = Some(Alarm {
                kind: AlertKind::Sustained,
                regions: vec![r],
                window_start: since,
                window_buckets: (t - since + 1) as u32,
                score: cell.cusum,
                threshold: cell.cusum_h,
                p_value: nb_upper_tail(sx, sm, phi),
                detector: "nb_cusum".to_owned(),
            });
        }
        if cell.cusum_h > 0.0 && cell.cusum > cell.cusum_h {
            cell.cusum = 0.0;
        }
        best
    }

    fn detect_column(&mut self, c: usize, t: u64) -> Option<Alarm> {
        let history = self.config.history_buckets as u64;
        let slot = (t % history) as usize;
        let rslot = (t % RECENT as u64) as usize;
        let n_regions = self.regions.len();
        let (phi, misfit) = (self.columns[c].phi_cell, self.columns[c].misfit);
        let total_misfit = self.total_misfit(c);
        // Each region's count enters the total capped like in the scan, so one region's
        // spike (a cell alert already) does not also raise a drift of the whole series.
        let (mut x_total, mut e_total) = (0.0, 0.0);
        for r in 0..n_regions {
            let cell = &self.cells[c][r];
            let e = f64::from(cell.expected[rslot]).max(0.0);
            let x = f64::from(cell.counts[slot] & COUNT_MASK);
            x_total += x.min(e + 4.0 * (phi * e).sqrt() + 2.0);
            e_total += e;
        }
        let column = &mut self.columns[c];
        if column.cusum == 0.0 {
            column.cusum_since = t;
        }
        if e_total > 0.0 {
            column.cusum = (column.cusum
                + nb_llr(
                    x_total,
                    e_total,
                    phi + total_misfit * e_total,
                    self.config.total_kappa,
                ))
            .max(0.0);
        }
        let drift = column.cusum_h > 0.0 && column.cusum > column.cusum_h;
        let drift_since = column.cusum_since.max(t.saturating_sub(RECENT as u64 - 1));
        let drift_score = (column.cusum, column.cusum_h);
        let cusum_ratio = if column.cusum_h > 0.0 {
            (column.cusum / column.cusum_h) as f32
        } else {
            0.0
        };
        column.last_ratios.clear();
        if drift {
            column.cusum = 0.0;
        }

        let active_regions = (0..n_regions)
            .filter(|&r| self.cells[c][r].share > 0.0)
            .count();
        let mut best: Option<(f64, usize, f64, Vec<usize>)> = None;
        let mut observed = vec![0.0; n_regions];
        let mut expected = vec![0.0; n_regions];
        let mut scratch = Vec::with_capacity(n_regions);
        let windows = self.config.scan_windows.clone();
        let scan_h = self.columns[c].scan_h.clone();
        for (wi, &w) in windows.iter().enumerate() {
            let Some(&h) = scan_h.get(wi) else { continue };
            if (w as u64) > t + 1 {
                continue;
            }
            let from = t + 1 - w as u64;
            let mut complete = true;
            for r in 0..n_regions {
                let cell = &self.cells[c][r];
                let mut sx = 0.0;
                let mut sm = 0.0;
                for s in from..=t {
                    let e = cell.expected[(s % RECENT as u64) as usize];
                    if e < 0.0 {
                        complete = false;
                    }
                    sm += f64::from(e.max(0.0));
                    sx += f64::from(cell.counts[(s % history) as usize] & COUNT_MASK);
                }
                observed[r] = sx;
                expected[r] = sm;
            }
            if !complete {
                continue;
            }
            let (score, k) = best_subset(
                &observed,
                &expected,
                phi,
                self.window_misfit(c, wi),
                self.config.min_excess,
                &mut scratch,
            );
            let ratio = score / h;
            if self.columns[c].last_ratios.len() == wi {
                self.columns[c].last_ratios.push(ratio as f32);
            }
            if ratio > 1.0 && best.as_ref().is_none_or(|b| ratio > b.0 / scan_h[b.1]) {
                best = Some((
                    score,
                    wi,
                    h,
                    localise(&observed, &expected, phi, &scratch[..k]),
                ));
            }
        }
        let column = &mut self.columns[c];
        column.last_ratios.resize(windows.len(), 0.0);
        column.last_ratios.push(cusum_ratio);
        if let Some((score, wi, h, mut regions)) = best {
            regions.sort_unstable();
            let (q99, theta) = self.columns[c].scan_tail[wi];
            let p = (0.01 * (-(score - q99) / theta).exp()).min(1.0);
            let w = windows[wi];
            let kind = if regions.len() * 5 >= active_regions * 4 {
                AlertKind::Drift
            } else {
                AlertKind::CrossRegion
            };
            return Some(Alarm {
                kind,
                regions,
                window_start: t + 1 - w as u64,
                window_buckets: w as u32,
                score,
                threshold: h,
                p_value: p,
                detector: format!("ebp_subset_scan_w{w}"),
            });
        }
        if drift {
            // Name the regions that carry the rise: the maximizing subset of the scan over
            // the CUSUM's window (all regions only if no subset stands out).
            for r in 0..n_regions {
                let (x, m) = window_sums(&self.cells[c][r], drift_since, t, history);
                observed[r] = x as f64;
                expected[r] = m;
            }
            let (score, k) = best_subset(
                &observed,
                &expected,
                phi,
                misfit,
                self.config.min_excess,
                &mut scratch,
            );
            let regions: Vec<usize> = if score > 0.0 && k > 0 {
                localise(&observed, &expected, phi, &scratch[..k])
            } else {
                (0..n_regions)
                    .filter(|&r| self.cells[c][r].share > 0.0)
                    .collect()
            };
            let kind = if regions.len() * 5 >= active_regions * 4 {
                AlertKind::Drift
            } else {
                AlertKind::CrossRegion
            };
            let (mut sx, mut sm) = (0u64, 0.0);
            for &r in &regions {
                let (x, m) = window_sums(&self.cells[c][r], drift_since, t, history);
                sx += x;
                sm += m;
            }
            return Some(Alarm {
                kind,
                regions,
                window_start: drift_since,
                window_buckets: (t - drift_since + 1) as u32,
                score: drift_score.0,
                threshold: drift_score.1,
                p_value: nb_upper_tail(sx, sm, phi + misfit * sm),
                detector: "nb_cusum_total".to_owned(),
            });
        }
        None
    }

    fn scope_key(&self, c: usize, region: Option<usize>) -> String {
        let column = &self.columns[c].id;
        let dim = match column.dimension {
            Dimension::Category => "category",
            Dimension::Tag => "tag",
        };
        match region {
            Some(r) => format!("cell/{}/{dim}/{}", self.regions[r], column.name),
            None => format!("series/{dim}/{}", column.name),
        }
    }

    fn build_alert(
        &self,
        c: usize,
        cell_region: Option<usize>,
        alarm: &Alarm,
        t: u64,
    ) -> TrendAlert {
        let history = self.config.history_buckets as u64;
        let column = &self.columns[c];
        let mut regions = Vec::new();
        let mut examples = Vec::new();
        let mut late = 0u32;
        let window_end = t;
        for &r in &alarm.regions {
            let cell = &self.cells[c][r];
            let (x, m) = window_sums(cell, alarm.window_start, window_end, history);
            regions.push(RegionCount {
                region: self.regions[r].clone(),
                observed: x,
                expected: round3(m),
            });
            for s in alarm.window_start..=window_end {
                if t - s < RECENT as u64 {
                    late += u32::from(cell.late[(s % RECENT as u64) as usize]);
                }
            }
        }
        regions.sort_by(|a, b| {
            (b.observed as f64 - b.expected)
                .total_cmp(&(a.observed as f64 - a.expected))
                .then(a.region.cmp(&b.region))
        });
        regions.truncate(60);
        for rc in regions.iter().take(EXAMPLES) {
            let r = self.region_index[&rc.region];
            for (b, id) in self.cells[c][r].examples.iter().rev() {
                if *b >= alarm.window_start && examples.len() < EXAMPLES {
                    examples.push(id.clone());
                }
            }
        }
        let window = AlertWindow {
            start: self.bucket_start(alarm.window_start),
            end: self.bucket_start(window_end + 1),
            buckets: alarm.window_buckets,
        };
        TrendAlert {
            id: String::new(),
            message_id: String::new(),
            revision: 0,
            status: AlertStatus::Started,
            kind: alarm.kind,
            region: cell_region.map_or_else(|| "all".to_owned(), |r| self.regions[r].clone()),
            dimension: column.id.dimension,
            series: column.id.name.clone(),
            regions,
            window,
            score: round3(finite(alarm.score)),
            threshold: round3(finite(alarm.threshold)),
            p_value: finite(alarm.p_value),
            detector: alarm.detector.clone(),
            examples,
            started_at: self.bucket_start(t),
            last_alarm_at: self.bucket_start(t),
            ended_at: None,
            late_events: late,
            late_data: late > 0,
            note: None,
        }
    }

    fn episode_alarm(
        &mut self,
        c: usize,
        region: Option<usize>,
        t: u64,
        alarm: Alarm,
    ) -> Option<EngineAlert> {
        let gap = self.config.episode_gap as u64;
        let ongoing = match region {
            Some(r) => self.cells[c][r].episode.as_ref(),
            None => self.columns[c].episode.as_ref(),
        }
        .filter(|ep| t - ep.last_alarm <= gap);
        // A message names the regions the rise is localised to now (see `localise`); a
        // series episode in progress localises over all its buckets so far (at most 28),
        // which is better evidence than the latest window alone. The episode keeps the
        // union of every region it named: its cell alarms are subsumed by it.
        let mut alarm = alarm;
        let ongoing_from = ongoing.map(|ep| ep.evidence_from);
        let previously_named: Option<BTreeSet<String>> =
            ongoing.map(|ep| ep.last.regions.iter().map(|rc| rc.region.clone()).collect());
        if let (None, Some(from)) = (region, ongoing_from) {
            self.localise_episode(c, t, from.min(alarm.window_start), &mut alarm);
        }
        // Regions join when the message names regions the previous one did not (at least
        // a fifth more, so that chance wobbles of a large set are not news).
        let grew = match &previously_named {
            Some(before) => {
                let joined = alarm
                    .regions
                    .iter()
                    .filter(|&&r| !before.contains(&self.regions[r]))
                    .count();
                joined >= (before.len() / 5).max(1)
            }
            None => true,
        };
        let mut alert = self.build_alert(c, region, &alarm, t);
        let scope = self.scope_key(c, region);
        let ratio = alarm.score / alarm.threshold.max(1e-9);
        let existing = match region {
            Some(r) => self.cells[c][r].episode.take(),
            None => self.columns[c].episode.take(),
        };
        let (episode, publish) = match existing {
            Some(mut ep) if t - ep.last_alarm <= gap => {
                ep.last_alarm = t;
                let stronger = ratio > ep.best_ratio * 1.5;
                let kind_changed = alarm.kind != ep.last.kind;
                ep.regions.extend(alarm.regions.iter().copied());
                alert.id = ep.id.clone();
                alert.started_at = ep.last.started_at;
                if grew || stronger || kind_changed {
                    ep.best_ratio = ep.best_ratio.max(ratio);
                    ep.revision += 1;
                    alert.revision = ep.revision;
                    alert.status = AlertStatus::Updated;
                    alert.message_id = format!("{}:{}", alert.id, alert.revision);
                    ep.last = alert.clone();
                    (ep, true)
                } else {
                    ep.last.last_alarm_at = alert.last_alarm_at;
                    (ep, false)
                }
            }
            _ => {
                let id = plaint_events::own::event_id(&[
                    "trends",
                    &scope,
                    &alert.started_at.to_string(),
                ])
                .to_string();
                alert.id = id.clone();
                alert.message_id = format!("{id}:0");
                let ep = Episode {
                    id,
                    started: t,
                    last_alarm: t,
                    revision: 0,
                    best_ratio: ratio,
                    regions: alarm.regions.iter().copied().collect(),
                    last: alert.clone(),
                    evidence_from: alarm.window_start,
                };
                (ep, true)
            }
        };
        let region_set: Vec<usize> = episode.regions.iter().copied().collect();
        let mut episode = Some(episode);
        let mut ended = None;
        if let Some(ep) = &episode {
            if t - ep.started + 1 >= self.config.rebaseline_after as u64 && ep.last_alarm == t {
                ended = Some(self.rebaseline(c, region, ep));
                episode = None;
            }
        }
        match region {
            Some(r) => self.cells[c][r].episode = episode,
            None => self.columns[c].episode = episode,
        }
        if let Some(ended) = ended {
            return Some(EngineAlert {
                alert: ended,
                column: c,
                cell_region: region,
                region_set,
                bucket: t,
            });
        }
        publish.then_some(EngineAlert {
            alert,
            column: c,
            cell_region: region,
            region_set,
            bucket: t,
        })
    }

    /// Re-localises a series alarm over buckets `from..=t` (at most 28 of them, within
    /// the recent ring) and sets its kind from the coverage of the regions named.
    fn localise_episode(&self, c: usize, t: u64, from: u64, alarm: &mut Alarm) {
        let history = self.config.history_buckets as u64;
        let from = from.max(t.saturating_sub(27));
        let n_regions = self.regions.len();
        let phi = self.columns[c].phi_cell;
        let mut observed = vec![0.0; n_regions];
        let mut expected = vec![0.0; n_regions];
        for r in 0..n_regions {
            let (x, m) = window_sums(&self.cells[c][r], from, t, history);
            // Capped like in the scan, so one region's spike does not steer the naming.
            observed[r] = (x as f64).min(m + 4.0 * (phi * m).sqrt() + 2.0 * (t - from + 1) as f64);
            expected[r] = m;
        }
        let mut scratch = Vec::with_capacity(n_regions);
        let (score, k) = best_subset(
            &observed,
            &expected,
            phi,
            self.columns[c].misfit,
            self.config.min_excess,
            &mut scratch,
        );
        if score <= 0.0 || k == 0 {
            return;
        }
        alarm.regions = localise(&observed, &expected, phi, &scratch[..k]);
        let active = expected.iter().filter(|&&e| e > 0.0).count();
        alarm.kind = if alarm.regions.len() * 5 >= active * 4 {
            AlertKind::Drift
        } else {
            AlertKind::CrossRegion
        };
    }

    /// A persistent shift: raise the baseline of what the episode covered to the level
    /// seen during the episode, let its buckets back into the fits, and end it.
    fn rebaseline(&mut self, c: usize, region: Option<usize>, ep: &Episode) -> TrendAlert {
        let history = self.config.history_buckets as u64;
        let from = ep.started.max(self.closed.saturating_sub(RECENT as u64));
        let t = self.closed - 1;
        // New levels: the thresholds must be simulated for them at the next occasion.
        self.columns[c].calibrated_for = None;
        let regions: Vec<usize> = match region {
            Some(r) => vec![r],
            None => ep.regions.iter().copied().collect(),
        };
        let drift = region.is_none() && ep.last.kind == AlertKind::Drift;
        let mut factors = Vec::new();
        if drift {
            let (mut sx, mut sm) = (0u64, 0.0);
            for r in 0..self.regions.len() {
                let (x, m) = window_sums(&self.cells[c][r], from, t, history);
                sx += x;
                sm += m;
            }
            let ratio = if sm > 0.0 {
                (sx as f64 / sm).max(1.0)
            } else {
                1.0
            };
            let column = &mut self.columns[c];
            column.level *= ratio;
            column.level_since = ep.started;
            column.cusum = 0.0;
            for s in ep.started..=t {
                column.totals[(s % history) as usize] &= COUNT_MASK;
            }
            factors.push(ratio);
        }
        for &r in &regions {
            let cell = &mut self.cells[c][r];
            if !drift {
                let (x, m) = window_sums(cell, from, t, history);
                let ratio = if m > 0.0 {
                    (x as f64 / m).max(1.0)
                } else {
                    1.0
                };
                cell.level *= ratio;
                cell.level_since = ep.started;
                cell.cusum = 0.0;
                factors.push(ratio);
            }
            for s in ep.started..=t {
                cell.counts[(s % history) as usize] &= COUNT_MASK;
            }
        }
        if !drift && region.is_none() {
            for s in ep.started..=t {
                self.columns[c].totals[(s % history) as usize] &= COUNT_MASK;
            }
        }
        let factor = factors.iter().sum::<f64>() / factors.len().max(1) as f64;
        let mut alert = ep.last.clone();
        alert.revision = ep.revision + 1;
        alert.status = AlertStatus::Ended;
        alert.message_id = format!("{}:{}", alert.id, alert.revision);
        alert.ended_at = Some(self.bucket_start(t + 1));
        alert.note = Some(format!(
            "persistent for {} buckets: taken as the new level (baseline x{factor:.2})",
            t - ep.started + 1
        ));
        alert
    }

    fn end_quiet_episodes(&mut self, t: u64) -> Vec<EngineAlert> {
        let gap = self.config.episode_gap as u64;
        let mut out = Vec::new();
        for c in 0..self.columns.len() {
            let quiet = |ep: &Option<Episode>| ep.as_ref().is_some_and(|e| t - e.last_alarm > gap);
            if quiet(&self.columns[c].episode) {
                let ep = self.columns[c].episode.take().expect("checked");
                let region_set = ep.regions.iter().copied().collect();
                out.push(EngineAlert {
                    alert: self.ended(ep),
                    column: c,
                    cell_region: None,
                    region_set,
                    bucket: t,
                });
            }
            for r in 0..self.regions.len() {
                if quiet(&self.cells[c][r].episode) {
                    let ep = self.cells[c][r].episode.take().expect("checked");
                    let note = self.absorb_sustained_shift(c, r, &ep, t);
                    let mut alert = self.ended(ep);
                    alert.note = note;
                    out.push(EngineAlert {
                        alert,
                        column: c,
                        cell_region: Some(r),
                        region_set: vec![r],
                        bucket: t,
                    });
                }
            }
        }
        out
    }

    /// A sustained episode that went quiet while the cell is still clearly above its old
    /// expectation over the whole episode: the rise is a new level, not a passing event.
    /// Raising the baseline now is what keeps a level shift to one alert instead of one a
    /// week.
    fn absorb_sustained_shift(
        &mut self,
        c: usize,
        r: usize,
        ep: &Episode,
        t: u64,
    ) -> Option<String> {
        if ep.last.kind != AlertKind::Sustained {
            return None;
        }
        let history = self.config.history_buckets as u64;
        let phi = self.columns[c].phi_cell;
        let cell = &mut self.cells[c][r];
        let from = ep.started.max((t + 1).saturating_sub(RECENT as u64));
        let (x, m) = window_sums(cell, from, t, history);
        if m <= 0.0 || (x as f64) < 1.1 * m || nb_upper_tail(x, m, phi) >= 0.01 {
            return None;
        }
        let ratio = (x as f64 / m).min(2.0);
        cell.level *= ratio;
        cell.level_since = ep.started;
        cell.cusum = 0.0;
        for s in ep.started..=t {
            cell.counts[(s % history) as usize] &= COUNT_MASK;
        }
        self.columns[c].calibrated_for = None;
        Some(format!(
            "still {ratio:.2}x the old expectation: taken as the new level"
        ))
    }

    fn ended(&self, ep: Episode) -> TrendAlert {
        let mut alert = ep.last;
        alert.revision = ep.revision + 1;
        alert.status = AlertStatus::Ended;
        alert.message_id = format!("{}:{}", alert.id, alert.revision);
        alert.ended_at = Some(self.bucket_start(ep.last_alarm + 1));
        alert
    }

    /// The latest message of every episode still open.
    pub fn active(&self) -> Vec<TrendAlert> {
        let mut out = Vec::new();
        for (c, column) in self.columns.iter().enumerate() {
            if let Some(ep) = &column.episode {
                out.push(ep.last.clone());
            }
            for cell in &self.cells[c] {
                if let Some(ep) = &cell.episode {
                    out.push(ep.last.clone());
                }
            }
        }
        out
    }

    /// Recent buckets of one cell: observed, expected and the CUSUM statistic.
    pub fn series_points(
        &self,
        c: usize,
        r: usize,
    ) -> Vec<(Timestamp, u64, Option<f64>, Option<f64>)> {
        let cell = &self.cells[c][r];
        let history = self.config.history_buckets as u64;
        let from = self.closed.saturating_sub(RECENT as u64);
        (from..self.closed)
            .map(|s| {
                let slot = (s % RECENT as u64) as usize;
                let e = cell.expected[slot];
                let z = cell.cusum_trace[slot];
                (
                    self.bucket_start(s),
                    u64::from(cell.counts[(s % history) as usize] & COUNT_MASK),
                    (e >= 0.0).then_some(round3(f64::from(e))),
                    (z >= 0.0).then_some(round3(f64::from(z))),
                )
            })
            .collect()
    }

    pub fn cell_cusum_threshold(&self, c: usize, r: usize) -> Option<f64> {
        let h = self.cells[c][r].cusum_h;
        (h > 0.0).then_some(h)
    }

    pub fn spike_alpha(&self) -> f64 {
        self.config.spike_alpha(self.columns.len())
    }

    pub fn share_prior_weight(&self) -> f64 {
        self.share_prior_weight
    }

    /// Model parameters and thresholds of one series.
    pub fn column_view(&self, c: usize) -> crate::alert::ColumnModelView {
        let column = &self.columns[c];
        let terms = column
            .model
            .as_ref()
            .map_or_else(Vec::new, |m| term_names(&m.features));
        crate::alert::ColumnModelView {
            dimension: column.id.dimension,
            series: column.id.name.clone(),
            fitted: column.model.is_some(),
            coefficients: column.model.as_ref().map_or_else(Vec::new, |m| {
                m.coefficients.iter().map(|b| round3(*b)).collect()
            }),
            terms,
            phi_total: column.model.as_ref().map_or(1.0, |m| round3(m.phi_total)),
            phi_cell: round3(column.phi_cell),
            misfit_variance: column.misfit,
            level: round3(column.level),
            scan_windows: self.config.scan_windows.iter().map(|&w| w as u32).collect(),
            scan_thresholds: column.scan_h.iter().map(|h| round3(*h)).collect(),
            scan_misfits: column.misfit_w.clone(),
            total_cusum_threshold: round3(column.cusum_h),
            expected_next: column
                .model
                .as_ref()
                .map(|m| round3(m.predict(self.closed, self.week_pos(self.closed)) * column.level)),
        }
    }

    /// Approximate bytes of detector state held in memory.
    /// Diagnostics: score over threshold of each scan window, then of the CUSUM on the
    /// total, in the last closed bucket (empty if the series was not scanned).
    pub fn last_ratios(&self, c: usize) -> &[f32] {
        &self.columns[c].last_ratios
    }

    pub fn state_bytes(&self) -> usize {
        let per_cell = self.config.history_buckets * 4 + RECENT * (4 + 4 + 2) + 128;
        let per_column = self.config.history_buckets * 4 + 512;
        self.columns.len() * (per_column + self.regions.len() * per_cell)
    }
}

fn column_key(id: &ColumnId) -> String {
    match id.dimension {
        Dimension::Category => format!("category/{}", id.name),
        Dimension::Tag => format!("tag/{}", id.name),
    }
}

fn term_names(f: &Features) -> Vec<String> {
    let mut names = vec!["intercept".to_owned()];
    if f.trend {
        names.push("trend_per_year".to_owned());
    }
    for d in ["tue", "wed", "thu", "fri", "sat", "sun"] {
        names.push(format!("dow_{d}"));
    }
    for h in 1..=f.annual {
        names.push(format!("annual_sin{h}"));
        names.push(format!("annual_cos{h}"));
    }
    for h in 1..=f.daily {
        names.push(format!("hour_sin{h}"));
        names.push(format!("hour_cos{h}"));
    }
    names
}

/// JSON has no NaN or infinity: extreme values are clamped, NaN becomes 0.
fn finite(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(-1e300, 1e300)
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Observed and expected sums of one cell over buckets `from..=to` (expected only over
/// the recent ring).
fn window_sums(cell: &Cell, from: u64, to: u64, history: u64) -> (u64, f64) {
    let (mut x, mut m) = (0u64, 0.0);
    for s in from..=to {
        x += u64::from(cell.counts[(s % history) as usize] & COUNT_MASK);
        if to - s < RECENT as u64 {
            m += f64::from(cell.expected[(s % RECENT as u64) as usize].max(0.0));
        }
    }
    (x, m)
}

/// Monday 00:00 UTC = position 0.
fn week_position(at: Timestamp, bucket: BucketKind) -> u32 {
    let days = at.as_second().div_euclid(86_400);
    // 1970-01-01 was a Thursday (position 3).
    let day = (days + 3).rem_euclid(7) as u32;
    match bucket {
        BucketKind::Daily => day,
        BucketKind::Hourly => day * 24 + (at.as_second().rem_euclid(86_400) / 3_600) as u32,
    }
}

/// The expectation-based scan over subsets of regions (size two or more), exact for the
/// maximum thanks to the linear-time subset scanning property: sort regions by
/// observed/expected and only prefixes can be optimal. Each region's observed count is
/// capped at its expectation plus four standard deviations plus two, so no single region can carry a
/// cross-region alert on its own (that is a cell alert). Returns (score, size) with the
/// chosen regions at the front of `order`.
pub fn best_subset(
    observed: &[f64],
    expected: &[f64],
    phi: f64,
    misfit: f64,
    min_excess: f64,
    order: &mut Vec<usize>,
) -> (f64, usize) {
    let capped = |r: usize| observed[r].min(expected[r] + 4.0 * (phi * expected[r]).sqrt() + 2.0);
    // Only regions above expectation can extend an optimal prefix beyond two, so only
    // they are sorted (plus the best two of the rest, for the minimum size).
    let mut above: Vec<(f64, usize)> = Vec::with_capacity(observed.len());
    let mut rest: Vec<(f64, usize)> = Vec::new();
    for r in 0..observed.len() {
        if expected[r] > 0.0 {
            let ratio = capped(r) / expected[r];
            if ratio > 1.0 {
                above.push((ratio, r));
            } else {
                rest.push((ratio, r));
            }
        }
    }
    let by_ratio = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    above.sort_unstable_by(by_ratio);
    if above.len() < 2 {
        rest.sort_unstable_by(by_ratio);
        above.extend(rest.iter().take(2 - above.len()));
    }
    order.clear();
    order.extend(above.iter().map(|&(_, r)| r));
    let (mut c, mut b) = (0.0, 0.0);
    let (mut best, mut best_k) = (0.0, 0);
    for (k, &r) in order.iter().enumerate() {
        let x = capped(r);
        if x <= expected[r] && k >= 2 {
            break;
        }
        c += x;
        b += expected[r];
        if k >= 1 && c - b >= min_excess {
            let score = ebp_score(c, b, phi + misfit * b);
            if score > best {
                best = score;
                best_k = k + 1;
            }
        }
    }
    (best, best_k)
}

/// The regions an alarm names: those more likely than not part of the rise.
///
/// The maximizing subset of the scan is the right test statistic but a poor answer to
/// "which regions": with a moderate rise in many regions it keeps only the luckiest ones,
/// with a strong rise in a few it also takes in regions that are merely high by chance.
/// So the regions are modelled as a two-group mixture, raised by a common relative risk
/// `q` with probability `pi` or at their expectation otherwise, fitted by EM starting from
/// the maximizing subset; a region is named if its posterior probability of being raised
/// exceeds one half (the choice that maximizes the expected overlap with the true set).
/// Likelihoods are Poisson scaled by the cell dispersion `phi`. The result is sorted and
/// never empty (the maximizing subset if the mixture collapses).
pub fn localise(observed: &[f64], expected: &[f64], phi: f64, subset: &[usize]) -> Vec<usize> {
    let (c, b) = subset
        .iter()
        .fold((0.0, 0.0), |(c, b), &r| (c + observed[r], b + expected[r]));
    let active: Vec<usize> = (0..observed.len()).filter(|&r| expected[r] > 0.0).collect();
    let mut q = if b > 0.0 { (c / b).max(1.05) } else { 1.05 };
    let mut pi = (subset.len() as f64 / active.len().max(1) as f64).clamp(0.02, 0.98);
    let mut post = vec![0.0; observed.len()];
    for _ in 0..30 {
        let ln_q = q.ln();
        let (mut w_sum, mut wx, mut wb) = (0.0, 0.0, 0.0);
        for &r in &active {
            let llr = ((observed[r] * ln_q - (q - 1.0) * expected[r]) / phi).clamp(-50.0, 50.0);
            let odds = pi / (1.0 - pi) * llr.exp();
            post[r] = odds / (1.0 + odds);
            w_sum += post[r];
            wx += post[r] * observed[r];
            wb += post[r] * expected[r];
        }
        let next_pi = (w_sum / active.len().max(1) as f64).clamp(0.02, 0.98);
        let next_q = if wb > 0.0 { (wx / wb).max(1.01) } else { q };
        let settled = (next_pi - pi).abs() < 1e-4 && (next_q - q).abs() < 1e-4;
        pi = next_pi;
        q = next_q;
        if settled {
            break;
        }
    }
    let named: Vec<usize> = active.iter().copied().filter(|&r| post[r] > 0.5).collect();
    let mut out = if named.is_empty() {
        subset.to_vec()
    } else {
        named
    };
    out.sort_unstable();
    out
}

/// Finds the NB-CUSUM threshold with the target in-control run length by simulating the
/// statistic without resets and counting up-crossings of each candidate threshold.
fn simulate_cusum_threshold(mu: f64, phi: f64, kappa: f64, arl: f64, seed: u64) -> f64 {
    const STEP: f64 = 0.05;
    const BINS: usize = 1200;
    let steps = ((40.0 * arl) as usize).clamp(100_000, 600_000);
    let mut rng = Rng::new(seed);
    let mut diff = vec![0i64; BINS + 1];
    let mut s = 0.0f64;
    for _ in 0..steps {
        let x = rng.neg_binomial(mu, phi) as f64;
        let next = (s + nb_llr(x, mu, phi, kappa)).max(0.0);
        if next > s {
            // Thresholds h with s <= h < next are crossed upward.
            let lo = (s / STEP).ceil() as usize;
            let hi = ((next / STEP).ceil() as usize).min(BINS);
            if lo < hi {
                diff[lo] += 1;
                diff[hi] -= 1;
            }
        }
        s = next;
    }
    let mut counts = vec![0i64; BINS];
    let mut running = 0;
    for (i, d) in diff.iter().take(BINS).enumerate() {
        running += d;
        counts[i] = running;
    }
    let target = steps as f64 / arl;
    if let Some(i) = (1..BINS).find(|&i| (counts[i] as f64) <= target) {
        if target >= 10.0 || counts[i] > 0 {
            return i as f64 * STEP;
        }
    }
    // Too few crossings to read the target off directly: extrapolate the log count
    // linearly from the last thresholds still crossed 40 and 10 times.
    let at = |n: i64| {
        (1..BINS)
            .rev()
            .find(|&i| counts[i] >= n)
            .map(|i| i as f64 * STEP)
    };
    match (at(40), at(10)) {
        (Some(h40), Some(h10)) if h10 > h40 => {
            h10 + (h10 - h40) / (4f64).ln() * (10.0 / target).ln()
        }
        (_, Some(h10)) => h10 * 1.5,
        _ => BINS as f64 * STEP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_scan_finds_the_raised_regions() {
        let expected = vec![10.0; 8];
        let mut observed = expected.clone();
        observed[2] = 22.0;
        observed[5] = 24.0;
        let mut order = Vec::new();
        let (score, k) = best_subset(&observed, &expected, 1.0, 0.0, 3.0, &mut order);
        assert!(score > 5.0);
        let mut chosen = order[..k].to_vec();
        chosen.sort_unstable();
        assert_eq!(chosen, vec![2, 5]);
    }

    #[test]
    fn localisation_names_the_raised_regions_not_the_luckiest_or_the_noise() {
        // A 1.5x rise in 30 of 50 regions: every raised region is named, almost no other.
        let mut rng = Rng::new(11);
        let expected = vec![20.0; 50];
        let observed: Vec<f64> = (0..50)
            .map(|r| rng.neg_binomial(if r < 30 { 30.0 } else { 20.0 }, 1.5) as f64)
            .collect();
        let mut order = Vec::new();
        let (score, k) = best_subset(&observed, &expected, 1.5, 0.0, 3.0, &mut order);
        assert!(score > 0.0);
        let named = localise(&observed, &expected, 1.5, &order[..k]);
        let hits = named.iter().filter(|&&r| r < 30).count();
        let jaccard = hits as f64 / (named.len() + 30 - hits) as f64;
        assert!(jaccard > 0.7, "named {named:?}");
    }

    #[test]
    fn series_budget_favours_the_longer_scan_windows_and_is_not_exceeded() {
        for config in [EngineConfig::daily(), EngineConfig::hourly()] {
            let shares = config.scan_window_shares();
            assert_eq!(shares.len(), config.scan_windows.len());
            let total: f64 = shares.iter().sum::<f64>() + config.total_cusum_share();
            assert!(total <= 1.0, "{total}");
            // The one-bucket window gets the least; the longer windows share equally.
            assert_eq!(config.scan_windows[0], 1);
            assert!(
                shares[1..].iter().all(|&s| s > 2.0 * shares[0]),
                "{shares:?}"
            );
            assert!(shares[1..].iter().all(|&s| (s - shares[1]).abs() < 1e-12));
            // The total's CUSUM names most regions when it alarms falsely: it gets less
            // than any longer scan window.
            assert!(config.total_cusum_share() < shares[1]);
        }
        // A single window gets the whole scan share.
        let single = EngineConfig {
            scan_windows: vec![7],
            ..EngineConfig::daily()
        };
        assert!((single.scan_window_shares()[0] - 0.55).abs() < 1e-12);
    }

    #[test]
    fn cusum_threshold_grows_with_the_run_length() {
        let short = simulate_cusum_threshold(2.0, 1.5, 1.5, 200.0, 1);
        let long = simulate_cusum_threshold(2.0, 1.5, 1.5, 5000.0, 1);
        assert!(long > short && short > 0.5, "{short} {long}");
    }

    #[test]
    fn week_positions_start_on_monday() {
        let monday: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(week_position(monday, BucketKind::Daily), 0);
        let sunday_noon: Timestamp = "2024-01-07T12:00:00Z".parse().unwrap();
        assert_eq!(week_position(sunday_noon, BucketKind::Daily), 6);
        assert_eq!(week_position(sunday_noon, BucketKind::Hourly), 6 * 24 + 12);
    }
}
