//! plaint-trends: early, rare and self-explaining alerts on rising complaint counts.
//!
//! A company with regions everywhere may get one complaint about a vendor's shipment in
//! each of many regions; each region sees an isolated case, only the aggregate shows the
//! trend. This crate counts `complaint.filed` events per (region, category) and per
//! (region, tracked tag such as `vendor:acme`) per bucket of event time, predicts the
//! expected counts, and reports what rises above them, once per episode.
//!
//! # Main types
//! - [`TrendsProjector`] (name `trends`, from [`TrendsConfig`]): the `Projection`. Turns
//!   events into bucket counts, closes buckets on the event-time watermark, publishes
//!   [`TrendAlert`]s as `Effect::Publish` on `<prefix>.alerts.trends.<region|all>.<series>`
//!   with `Nats-Msg-Id = message_id`. Queries: [`TrendsProjector::active`],
//!   [`TrendsProjector::series`], [`TrendsProjector::model`].
//! - [`TrendEngine`]: the detection core on count matrices (`counts[series][region]` per
//!   closed bucket -> alert messages). The projector and the benchmark both use it.
//! - [`model`]: the expected-count model of a series total; [`stats`]: NB tails, CUSUM
//!   increments, the seeded generator; [`benchmark`]: the generator, scenarios, scoring and
//!   EARS C2 baseline of the trends benchmark (`examples/trends_benchmark.rs`).
//!
//! # Method (choices and rules)
//! - **Buckets** are UTC days (or hours) of event time. A bucket closes when the newest
//!   event time seen is `allowed_lateness` past its end; only event time is used, never a
//!   clock, so a live run and a rebuild behave identically. A complaint for a closed bucket
//!   still counts (it updates the stored count, so later windows and fits see it); an alert
//!   whose window contains such complaints says so (`late_events`, `late_data`). Older than
//!   the kept history: not counted (see the `meta` row).
//! - **Expected counts** `mu[r,c,t] = share[r,c] * level * M[c,t]`. `M` is a log-linear
//!   Poisson regression of the series total on day of week, a trend (after 26 weeks) and
//!   two annual harmonics (after a year; hourly: hour-of-day harmonics), fitted weekly by
//!   IRLS on up to 730 buckets, leaving out the last 7 buckets and every bucket that was in
//!   an alert episode, with outbreak-resistant weights (standardised residuals beyond 2.5
//!   weigh `(2.5/z)^2`, Farrington/Noufaily style). `share` is the region's part of the
//!   total (180-bucket half-life weights, counts capped near their expectation), pooled
//!   toward the region's share of all categories by empirical Bayes, so a cell with one
//!   complaint a month borrows strength from its region. A region whose whole volume is
//!   improbably high (p < 0.01) in a bucket has its other series' expectations scaled by
//!   that jump (leave-one-out, and only if the other series are improbably high on their
//!   own: a cell's spike must not raise its own expectation), so a reporting surge is not
//!   a trend in every category. A day that dipped across all categories together (below
//!   80 % of the model and 5 standard deviations down) in each of the two previous years,
//!   365 and 730 days back or on the same calendar date, is expected to dip again by the
//!   mean of those two ratios (fixed-date holidays); a one-off outage never lowers an
//!   expectation. Unpredicted, a holiday inside a slow rise sets the CUSUMs back by days.
//!   Dispersions: per series for cells (pooled over regions), from the fit residuals; and
//!   for the series total a model-misfit variance `m_w` per scan window `w`
//!   (`var(X_w - E_w) = phi E_w + m_w E_w^2` for window sums), from the last year's window
//!   sums against the model: twice their upper semi-variance (the tests are one-sided, and
//!   dips the model does not know must not make rises look less surprising), errors capped
//!   Huber-style at 2.5 standard deviations of the current estimate (a past outbreak the
//!   alerts missed must not pass for misfit), corrected for the skew of small counts. The
//!   window sums are of cleaned totals: each region's count capped like in the scan and
//!   the counts an episode left out at their expectation, since a cell's spike is a cell
//!   alert, not an error of the series model (on the raw totals, the past year's spikes,
//!   all of them before the engine's first alerts, made up most of the estimate and
//!   inflated the windows' variance up to twofold, blunting every later scan). Day
//!   to day errors average out over a window, so a 14-bucket window's misfit is far below
//!   a one-bucket misfit applied to 14 buckets (what an in-sample per-bucket figure for
//!   every window amounted to: up to a fivefold variance on the long windows of large
//!   series).
//! - **Cell detectors**: a negative-binomial upper-tail test (mid-p) of the last 1, 2 and 3
//!   buckets (kind `spike`), and a Höhle–Paul NB likelihood-ratio CUSUM for a 1.5x rise
//!   (kind `sustained`).
//! - **Series detectors** (per category and per tracked tag): an expectation-based subset
//!   scan over regions (exact maximum by the linear-time subset scanning property) on
//!   windows of 1, 3, 7 and 14 buckets, subsets of two or more regions, each region capped
//!   at four standard deviations of excess so one region cannot carry it, each window
//!   with its own misfit; and an NB-CUSUM on the total for a 1.2x rise (with the one-bucket
//!   misfit). The maximizing subset is the test, not the
//!   answer to "which regions": the regions named are those whose posterior probability
//!   of being raised exceeds one half under a two-group mixture (common relative risk or
//!   none) fitted by EM from that subset ([`engine::localise`]), over the alarm's window,
//!   or over the whole episode so far (at most 28 buckets) once it is under way. Kind
//!   `drift` if the named regions are 80 % of the active ones, else `cross_region`.
//! - **Thresholds** come from the false-alarm budget (`cell_false_alarms_per_region_month`,
//!   `cross_region_false_alarms_per_series_year`): 75 % of the cell budget to the spike
//!   tests (Bonferroni over the series of a region and the three windows), 25 % to the
//!   CUSUM, whose threshold is found by simulating the in-control statistic. Of the
//!   series budget, 5 % to the scan's one-bucket window and 50 % to its three longer
//!   windows (a third each), 15 % to the CUSUM on the total, and the rest unspent: a
//!   false alarm of the total's CUSUM is a chance excess of the whole series and names
//!   most regions (about 40 of 50, a false scan alarm about 12), so it is the false alarm
//!   that coincides with a region's reporting surge or a holiday most often, and a
//!   one-bucket jump across regions is more often a reporting artefact than a spreading
//!   problem (those build up over days). The scan windows' thresholds are
//!   simulated from the fitted model (including share and window-misfit uncertainty, each
//!   draw a window ending on a random bucket of the coming week so quiet days' sparser
//!   counts are calibrated for, exponential tail beyond the 0.99 quantile) with every
//!   exceeding bucket counted as an
//!   episode: at these levels a window's exceedances come in runs of one or two buckets
//!   whatever its length, since sliding it by a bucket moves its sum by about one bucket's
//!   standard deviation, far more than its excess over the threshold. They are simulated
//!   every 91 buckets, one series at a time, unless nothing they depend on has moved
//!   (typical total within 15 %, dispersion, each window's variance factor within a half,
//!   no new level; at least once a year): the simulations are most of the engine's cost.
//!   All thresholds are part of the persisted state and shown by
//!   [`TrendsProjector::model`].
//! - **Episodes**: alarms on the same scope (cell, or series) within 7 buckets form one
//!   episode, with a deterministic id (UUIDv5 of scope and first bucket) and messages
//!   `started` (revision 0), `updated` (only when the score grows 1.5x, the kind changes,
//!   or regions join: the message names regions the previous one did not, at least a
//!   fifth more) and `ended` (after 7 quiet buckets, repeating the last message). Each
//!   message names the regions of the current localisation, so the list may also shrink
//!   as evidence accumulates, and a series episode's kind may change between
//!   `cross_region` and `drift` with it; the id stays. A series episode subsumes the cell
//!   alarms of every region it has named so far. An episode still alarming after 28 buckets,
//!   or a sustained one that goes quiet while still clearly above its old level, is a new
//!   level: the baseline is raised and the episode ends with a note, so a level shift is
//!   one alert, not one a week.
//! - **Persistence**: rows `engine/NNNN` (the engine state as JSON, 256 KiB chunks: counts
//!   history, models, shares, thresholds, CUSUMs, episodes), `open/<bucket>` (counts of
//!   buckets not closed yet, by name, so event order within a bucket does not matter) and
//!   `meta` (watermark, late and dropped counts). All of it is a function of the event
//!   sequence; a changed configuration needs `plaint rebuild trends`.
//!
//! # What it does not do
//! No clocks, I/O or async: the runner carries out the effects. It does not re-send on its
//! own: a rebuild re-emits the same messages with the same `Nats-Msg-Id`s, and only the
//! stream's duplicate window (or the runner suppressing effects during a rebuild) keeps
//! them from reaching subscribers twice. Of holidays it predicts only those that fell on the
//! same day in each of the two previous years (daily buckets); a movable holiday is not
//! predicted (dips never alert, since every test is one-sided, but a holiday inside a rise
//! delays its detection). It does not model interactions of weekday and hour in hourly
//! buckets.

pub mod alert;
pub mod benchmark;
pub mod config;
pub mod engine;
pub mod model;
mod projector;
pub mod stats;

pub use alert::{
    AlertKind, AlertStatus, AlertWindow, ColumnModelView, Dimension, ModelView, RegionCount,
    SeriesPoint, SeriesView, TrendAlert, TrendFilter,
};
pub use config::TrendsConfig;
pub use engine::{BucketInput, BucketKind, ColumnId, EngineAlert, EngineConfig, TrendEngine};
pub use projector::{series_token, TrendsProjector};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum TrendsError {
    #[error("invalid [trends] configuration: {0}; fix the value in the config file")]
    Config(String),
}

#[cfg(test)]
mod tests;
