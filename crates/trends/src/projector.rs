//! `TrendsProjector`: events in, bucket counts into the engine, alerts out as effects.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use plaint_events::{subjects, Event, EventBody};
use plaint_projection::{Effect, Projection, ProjectionError, ViewChange, ViewRow};
use serde::{Deserialize, Serialize};

use crate::alert::{Dimension, ModelView, SeriesPoint, SeriesView, TrendAlert, TrendFilter};
use crate::config::TrendsConfig;
use crate::engine::{BucketInput, ColumnId, EngineConfig, TrendEngine};
use crate::TrendsError;

const NAME: &str = "trends";
/// Engine state is persisted as JSON split into rows of this many bytes.
const CHUNK: usize = 256 * 1024;
/// Example complaint ids kept per cell and open bucket.
const EXAMPLES_PER_CELL: usize = 3;

/// Counts of a bucket that has not closed yet, by names: regions and series seen for the
/// first time are registered with the engine when the bucket closes, in name order, so
/// the order of events within a bucket cannot change the state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct OpenBucket {
    /// `series key ("category/<name>" | "tag/<name>") -> region -> count`
    counts: BTreeMap<String, BTreeMap<String, u32>>,
    examples: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

fn series_key(id: &ColumnId) -> String {
    match id.dimension {
        Dimension::Category => format!("category/{}", id.name),
        Dimension::Tag => format!("tag/{}", id.name),
    }
}

fn parse_series_key(key: &str) -> ColumnId {
    match key.split_once('/') {
        Some(("tag", name)) => ColumnId {
            dimension: Dimension::Tag,
            name: name.to_owned(),
        },
        Some((_, name)) => ColumnId {
            dimension: Dimension::Category,
            name: name.to_owned(),
        },
        None => ColumnId {
            dimension: Dimension::Category,
            name: key.to_owned(),
        },
    }
}

/// Bookkeeping that is persisted with the view.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Meta {
    watermark: Option<Timestamp>,
    /// Complaints for buckets already closed (counted, flagged on alerts).
    late_events: u64,
    /// Complaints older than the kept history or than the first bucket (not counted).
    too_old_events: u64,
    /// Tag values beyond `max_tag_series` (not tracked).
    untracked_tag_values: u64,
}

/// The trends projector (name `trends`). Only `complaint.filed` counts, by event time.
#[derive(Debug)]
pub struct TrendsProjector {
    config: TrendsConfig,
    engine_config: EngineConfig,
    engine: Option<TrendEngine>,
    open: BTreeMap<u64, OpenBucket>,
    meta: Meta,
    engine_dirty: bool,
    engine_chunks: usize,
    open_dirty: BTreeSet<u64>,
    meta_dirty: bool,
    /// Tag values waiting in open buckets to be registered (derived from `open`).
    pending_tags: BTreeSet<String>,
}

impl TrendsProjector {
    pub fn new(config: TrendsConfig) -> Result<Self, TrendsError> {
        let engine_config = config.engine_config()?;
        Ok(TrendsProjector {
            config,
            engine_config,
            engine: None,
            open: BTreeMap::new(),
            meta: Meta::default(),
            engine_dirty: false,
            engine_chunks: 0,
            open_dirty: BTreeSet::new(),
            meta_dirty: false,
            pending_tags: BTreeSet::new(),
        })
    }

    pub fn config(&self) -> &TrendsConfig {
        &self.config
    }

    fn bucket_secs(&self) -> i64 {
        self.config.bucket.seconds()
    }

    /// Episodes still open (their latest message), newest first.
    pub fn active(&self, filter: &TrendFilter) -> Vec<TrendAlert> {
        let Some(engine) = &self.engine else {
            return Vec::new();
        };
        let mut alerts: Vec<TrendAlert> = engine
            .active()
            .into_iter()
            .filter(|a| filter.matches(a))
            .collect();
        alerts.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(a.id.cmp(&b.id)));
        alerts
    }

    /// Observed vs expected of one (region, series) cell over the recent buckets. `series`
    /// is a category, or a tracked tag value such as `vendor:acme`.
    pub fn series(&self, region: &str, series: &str) -> Option<SeriesView> {
        let engine = self.engine.as_ref()?;
        let r = engine.region_id(region)?;
        let (dimension, c) =
            [Dimension::Category, Dimension::Tag]
                .into_iter()
                .find_map(|dimension| {
                    engine
                        .column_id(&ColumnId {
                            dimension,
                            name: series.to_owned(),
                        })
                        .map(|c| (dimension, c))
                })?;
        let points = engine
            .series_points(c, r)
            .into_iter()
            .map(|(start, observed, expected, cusum)| SeriesPoint {
                start,
                observed,
                expected,
                cusum,
            })
            .collect();
        Some(SeriesView {
            region: region.to_owned(),
            dimension,
            series: series.to_owned(),
            bucket: self.config.bucket.label().to_owned(),
            cusum_threshold: engine.cell_cusum_threshold(c, r),
            spike_alpha: engine.spike_alpha(),
            points,
        })
    }

    /// The configured model, fitted parameters and thresholds.
    pub fn model(&self) -> ModelView {
        let cfg = &self.engine_config;
        let (buckets_closed, regions, columns, spike_alpha, prior) = match &self.engine {
            Some(e) => (
                e.closed(),
                e.regions().to_vec(),
                (0..e.columns().count()).map(|c| e.column_view(c)).collect(),
                e.spike_alpha(),
                e.share_prior_weight(),
            ),
            None => (0, Vec::new(), Vec::new(), 0.0, 0.0),
        };
        ModelView {
            bucket: self.config.bucket.label().to_owned(),
            buckets_closed,
            min_history: cfg.min_history as u64,
            cell_false_alarms_per_region_month: cfg.cell_false_alarms_per_region_month,
            cross_region_false_alarms_per_series_year: cfg.column_false_alarms_per_year,
            spike_alpha,
            cell_cusum_kappa: cfg.cell_kappa,
            total_cusum_kappa: cfg.total_kappa,
            share_prior_weight: prior,
            regions,
            columns,
        }
    }

    fn floor_to_bucket(&self, at: Timestamp) -> Timestamp {
        let secs = at.as_second().div_euclid(self.bucket_secs()) * self.bucket_secs();
        Timestamp::from_second(secs).unwrap_or(at)
    }

    fn on_filed(
        &mut self,
        event: &Event,
        region: &str,
        category: &str,
        tags: &[String],
    ) -> Vec<Effect> {
        let lateness = self.config.allowed_lateness;
        if self.engine.is_none() {
            let origin =
                self.floor_to_bucket(event.time.saturating_sub(lateness).unwrap_or(event.time));
            self.engine = Some(TrendEngine::new(self.engine_config.clone(), origin));
        }
        let bucket_secs = self.bucket_secs();
        let engine = self.engine.as_mut().expect("created above");
        let offset = event.time.as_second() - engine.origin().as_second();
        if offset < 0 {
            self.meta.too_old_events += 1;
            self.meta_dirty = true;
            return Vec::new();
        }
        let bucket = (offset / bucket_secs) as u64;
        let mut columns = vec![ColumnId {
            dimension: Dimension::Category,
            name: category.to_owned(),
        }];
        let tracked: BTreeSet<&String> = tags
            .iter()
            .filter(|tag| {
                self.config
                    .tracked_tag_prefixes
                    .iter()
                    .any(|p| tag.starts_with(p.as_str()))
            })
            .collect();
        for tag in tracked {
            let id = ColumnId {
                dimension: Dimension::Tag,
                name: tag.clone(),
            };
            if engine.column_id(&id).is_none() && !self.pending_tags.contains(tag) {
                let tag_columns = engine
                    .columns()
                    .filter(|c| c.dimension == Dimension::Tag)
                    .count();
                if tag_columns + self.pending_tags.len() >= self.config.max_tag_series {
                    self.meta.untracked_tag_values += 1;
                    self.meta_dirty = true;
                    continue;
                }
                if bucket >= engine.closed() {
                    self.pending_tags.insert(tag.clone());
                }
            }
            columns.push(id);
        }
        if bucket < engine.closed() {
            let known = engine.region_id(region).is_some()
                && columns.iter().all(|id| engine.column_id(id).is_some());
            let r = engine.region(region);
            let mut counted = false;
            for id in columns {
                let c = engine.column(id);
                counted |= engine.add_late(bucket, c, r);
            }
            if counted {
                self.meta.late_events += 1;
            } else {
                self.meta.too_old_events += 1;
            }
            self.engine_dirty |= counted || !known;
            self.meta_dirty = true;
        } else {
            let open = self.open.entry(bucket).or_default();
            for id in &columns {
                let key = series_key(id);
                *open
                    .counts
                    .entry(key.clone())
                    .or_default()
                    .entry(region.to_owned())
                    .or_insert(0) += 1;
                // The smallest ids, not the first ones, so the order of events within a
                // bucket cannot change the rows.
                let examples = open
                    .examples
                    .entry(key)
                    .or_default()
                    .entry(region.to_owned())
                    .or_default();
                if let Err(at) = examples.binary_search(&event.complaint_id) {
                    examples.insert(at, event.complaint_id.clone());
                    examples.truncate(EXAMPLES_PER_CELL);
                }
            }
            self.open_dirty.insert(bucket);
        }
        if self.meta.watermark.is_none_or(|w| event.time > w) {
            self.meta.watermark = Some(event.time);
            self.meta_dirty = true;
        }
        self.close_due(lateness)
    }

    /// Closes every bucket whose end plus the allowed lateness the watermark has passed.
    fn close_due(&mut self, lateness: SignedDuration) -> Vec<Effect> {
        let Some(watermark) = self.meta.watermark else {
            return Vec::new();
        };
        let Some(engine) = self.engine.as_mut() else {
            return Vec::new();
        };
        let bucket_secs = self.config.bucket.seconds();
        let mut effects = Vec::new();
        loop {
            let next = engine.closed();
            let end = engine.origin().as_second() + (next as i64 + 1) * bucket_secs;
            if end + lateness.as_secs() > watermark.as_second() {
                break;
            }
            let open = self.open.remove(&next).unwrap_or_default();
            self.open_dirty.insert(next);
            let mut input = BucketInput::default();
            for (key, by_region) in &open.counts {
                let c = engine.column(parse_series_key(key));
                for (region, &n) in by_region {
                    let r = engine.region(region);
                    if input.counts.len() <= c {
                        input.counts.resize(c + 1, Vec::new());
                    }
                    if input.counts[c].len() <= r {
                        input.counts[c].resize(r + 1, 0);
                    }
                    input.counts[c][r] = n;
                }
            }
            for (key, by_region) in open.examples {
                let c = engine.column(parse_series_key(&key));
                for (region, ids) in by_region {
                    let r = engine.region(&region);
                    input.examples.insert((c, r), ids);
                }
            }
            self.pending_tags.retain(|tag| {
                engine
                    .column_id(&ColumnId {
                        dimension: Dimension::Tag,
                        name: tag.clone(),
                    })
                    .is_none()
            });
            for alert in engine.close_bucket(&input) {
                let payload =
                    serde_json::to_vec(&alert.alert).expect("alerts serialise infallibly");
                let subject = subjects::trend_alert(
                    &self.config.subject_prefix,
                    &alert.alert.region,
                    &series_token(alert.alert.dimension, &alert.alert.series),
                );
                effects.push(Effect::Publish {
                    subject,
                    msg_id: alert.alert.message_id.clone(),
                    payload,
                });
            }
            self.engine_dirty = true;
        }
        effects
    }
}

/// The subject token of a series: the category itself (already a token), or
/// `tag-<tag>` with every character outside `[a-z0-9_-]` replaced by `-`
/// (`vendor:Acme` -> `tag-vendor-acme`), at most 64 characters.
pub fn series_token(dimension: Dimension, name: &str) -> String {
    match dimension {
        Dimension::Category => name.to_owned(),
        Dimension::Tag => {
            let mut token: String = format!("tag-{name}")
                .chars()
                .map(|ch| {
                    let ch = ch.to_ascii_lowercase();
                    if ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-' {
                        ch
                    } else {
                        '-'
                    }
                })
                .collect();
            token.truncate(64);
            token
        }
    }
}

impl Projection for TrendsProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn apply(&mut self, _seq: u64, event: &Event) -> Vec<Effect> {
        match &event.body {
            EventBody::Filed(filed) => {
                let (region, category, tags) = (
                    filed.region.clone(),
                    filed.category.clone(),
                    filed.tags.clone(),
                );
                self.on_filed(event, &region, &category, &tags)
            }
            _ => Vec::new(),
        }
    }

    fn take_changes(&mut self) -> Vec<ViewChange> {
        let mut changes = Vec::new();
        if self.engine_dirty {
            if let Some(engine) = &self.engine {
                let bytes = serde_json::to_vec(engine).expect("engine state serialises infallibly");
                let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
                for (i, chunk) in chunks.iter().enumerate() {
                    changes.push((format!("engine/{i:04}").into_bytes(), Some(chunk.to_vec())));
                }
                for i in chunks.len()..self.engine_chunks {
                    changes.push((format!("engine/{i:04}").into_bytes(), None));
                }
                self.engine_chunks = chunks.len();
            }
            self.engine_dirty = false;
        }
        for bucket in std::mem::take(&mut self.open_dirty) {
            let key = format!("open/{bucket:012}").into_bytes();
            let value = self
                .open
                .get(&bucket)
                .map(|b| serde_json::to_vec(b).expect("open buckets serialise"));
            changes.push((key, value));
        }
        if self.meta_dirty {
            changes.push((
                b"meta".to_vec(),
                Some(serde_json::to_vec(&self.meta).expect("meta serialises")),
            ));
            self.meta_dirty = false;
        }
        changes
    }

    fn restore(&mut self, rows: &mut dyn Iterator<Item = ViewRow>) -> Result<(), ProjectionError> {
        let corrupt = |key: &[u8], source| ProjectionError::CorruptRow {
            projector: NAME,
            key: String::from_utf8_lossy(key).into_owned(),
            source,
        };
        self.engine = None;
        self.open.clear();
        self.meta = Meta::default();
        self.open_dirty.clear();
        self.pending_tags.clear();
        self.engine_dirty = false;
        self.meta_dirty = false;
        let mut engine_bytes = Vec::new();
        let mut chunks = 0;
        for (key, value) in rows {
            if key.starts_with(b"engine/") {
                engine_bytes.extend_from_slice(&value);
                chunks += 1;
            } else if let Some(bucket) = key.strip_prefix(b"open/") {
                let bucket: u64 = String::from_utf8_lossy(bucket).parse().unwrap_or(u64::MAX);
                let open = serde_json::from_slice(&value).map_err(|e| corrupt(&key, e))?;
                self.open.insert(bucket, open);
            } else if key == b"meta" {
                self.meta = serde_json::from_slice(&value).map_err(|e| corrupt(&key, e))?;
            }
        }
        if !engine_bytes.is_empty() {
            let engine: TrendEngine =
                serde_json::from_slice(&engine_bytes).map_err(|e| corrupt(b"engine/*", e))?;
            self.engine = Some(engine);
        }
        self.engine_chunks = chunks;
        self.pending_tags = self
            .open
            .values()
            .flat_map(|b| b.counts.keys())
            .map(|key| parse_series_key(key))
            .filter(|id| id.dimension == Dimension::Tag)
            .filter(|id| {
                self.engine
                    .as_ref()
                    .is_none_or(|e| e.column_id(id).is_none())
            })
            .map(|id| id.name)
            .collect();
        Ok(())
    }
}
