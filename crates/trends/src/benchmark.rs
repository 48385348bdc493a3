//! The benchmark of `docs` / `trends-benchmark.md`: a seeded generator of regional
//! complaint counts with injected events (scenarios A, B, C, N), the scoring (POD,
//! chance-corrected POD, false alarms, delay, localisation), the EARS C2 baseline on the
//! same counts, and the table. Run it with
//! `cargo run --release -p plaint-trends --example trends_benchmark -- --seeds 20 [--quick]
//! [--threads 2] [--scenarios ABCN] [--verbose] [--first-seed 0] [--oracle]` (seeds run in parallel
//! on `--threads`; the table does not depend on it; `--verbose` prints, per injected
//! event, the episode that detected it in the run and in the no-injection twin, and the
//! series episodes of the null run with the regions they named; `--first-seed` runs seeds
//! from another start, to tune on seeds other than the reported 0..20). Cost is reported as wall
//! time and as the thread's CPU time, which a busy machine does not inflate. `--oracle`
//! adds a table of the oracle ([`oracle_detection_day`]) on the B events beside ours: an
//! upper bound on what any detector reaches at the bar's rate of cross-region false alarms;
//! `--oracle-only` prints only that table, without running the detector.
//!
//! The generator draws the base counts once per seed; every scenario adds its injected
//! complaints on top of the same base, so the no-injection twin of a scenario run is the
//! same seed's null run.

// Matrix code over (series, region, bucket) indices reads better with explicit indices.
#![allow(clippy::needless_range_loop)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Instant;

use crate::alert::{AlertStatus, Dimension};
use crate::engine::{BucketInput, ColumnId, CusumTable, EngineConfig, TrendEngine};
use crate::stats::{nb_upper_tail, Rng};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub seeds: u64,
    /// Seeds run are `first_seed..first_seed + seeds` (0 for the reported table; tune
    /// on others).
    pub first_seed: u64,
    pub regions: usize,
    pub categories: usize,
    pub history_days: u64,
    pub eval_days: u64,
    pub phi: f64,
    pub scenarios: Vec<Scenario>,
    /// Buckets of history the engine must see before it fits and alerts (the history is
    /// still used for fitting; this only saves detector time in the history).
    pub engine_min_history: usize,
    /// Seeds run in parallel (the table does not depend on it).
    pub threads: usize,
    /// Print, per injected event, the episodes that detected it in the run and in the
    /// no-injection twin (diagnostics).
    pub verbose: bool,
    /// Also run the oracle on every B event and print its table next to ours (see
    /// [`oracle_detection_day`]).
    pub oracle: bool,
    /// Only the oracle: no detector runs (fast; for many seeds). Implies `oracle`.
    pub oracle_only: bool,
}

impl BenchConfig {
    pub fn full(seeds: u64) -> Self {
        BenchConfig {
            seeds,
            first_seed: 0,
            regions: 50,
            categories: 20,
            history_days: 730,
            eval_days: 364,
            phi: 1.5,
            scenarios: vec![Scenario::A, Scenario::B, Scenario::C, Scenario::N],
            engine_min_history: 672,
            threads: 1,
            verbose: false,
            oracle: false,
            oracle_only: false,
        }
    }

    /// Fewer seeds and categories: under a minute on one core.
    pub fn quick() -> Self {
        BenchConfig {
            seeds: 2,
            categories: 10,
            ..BenchConfig::full(2)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    A,
    B,
    C,
    N,
}

/// The generator's parameters for one seed.
#[derive(Debug, Clone)]
pub struct World {
    pub regions: usize,
    pub categories: usize,
    pub days: u64,
    pub phi: f64,
    pub size: Vec<f64>,
    pub rate: Vec<f64>,
    pub amplitude: Vec<f64>,
    pub phase: Vec<f64>,
    pub trend: Vec<f64>,
    pub holidays: BTreeSet<u64>,
}

const DOW: [f64; 7] = [1.15, 1.15, 1.10, 1.10, 1.05, 0.55, 0.45];

impl World {
    pub fn new(seed: u64, regions: usize, categories: usize, days: u64, phi: f64) -> Self {
        let mut rng = Rng::new(seed.wrapping_mul(0x5851_F42D_4C95_7F2D) ^ 0xA11CE);
        let mut size: Vec<f64> = (0..regions).map(|_| (0.7 * rng.normal()).exp()).collect();
        let mean = size.iter().sum::<f64>() / regions as f64;
        size.iter_mut().for_each(|s| *s /= mean);
        let rate = (0..categories)
            .map(|_| (0.3f64.ln() + rng.uniform() * (12f64 / 0.3).ln()).exp())
            .collect();
        let amplitude = (0..categories).map(|_| 0.4 * rng.uniform()).collect();
        let phase = (0..categories)
            .map(|_| std::f64::consts::TAU * rng.uniform())
            .collect();
        let trend = (0..categories).map(|_| 0.6 * rng.uniform() - 0.3).collect();
        let mut holiday_days = BTreeSet::new();
        while holiday_days.len() < 8 {
            holiday_days.insert(rng.below(365));
        }
        let holidays = (0..days)
            .filter(|d| holiday_days.contains(&(d % 365)))
            .collect();
        World {
            regions,
            categories,
            days,
            phi,
            size,
            rate,
            amplitude,
            phase,
            trend,
            holidays,
        }
    }

    /// Expected count of a cell on day `t` (day 0 is a Monday), before injections.
    pub fn mu(&self, r: usize, c: usize, t: u64) -> f64 {
        let dow_mean = DOW.iter().sum::<f64>() / 7.0;
        let years = t as f64 / 365.25;
        let season =
            1.0 + self.amplitude[c] * (std::f64::consts::TAU * years + self.phase[c]).sin();
        let holiday = if self.holidays.contains(&t) { 0.5 } else { 1.0 };
        self.size[r] * self.rate[c] * DOW[(t % 7) as usize] / dow_mean
            * season
            * (self.trend[c] * (years - 1.0)).exp()
            * holiday
    }
}

/// Ground truth of one injected event.
#[derive(Debug, Clone)]
pub struct Injected {
    pub kind: Kind,
    pub column: usize,
    pub regions: Vec<usize>,
    pub onset: u64,
    pub duration: u64,
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Spike,
    Spread,
    Drift,
    Surge,
    Shift,
}

/// Counts of one seed: `base[t][c][r]` plus per-scenario extra complaints.
struct Counts {
    base: Vec<Vec<Vec<u32>>>,
}

fn generate_base(world: &World, seed: u64, history_days: u64) -> Counts {
    let mut rng = Rng::new(seed ^ 0xBA5E);
    let mut base = Vec::with_capacity(world.days as usize);
    for t in 0..world.days {
        let day: Vec<Vec<u32>> = (0..world.categories)
            .map(|c| {
                (0..world.regions)
                    .map(|r| rng.neg_binomial(world.mu(r, c, t), world.phi) as u32)
                    .collect()
            })
            .collect();
        base.push(day);
    }
    // Past outbreaks, in the history only: the baselines must not be polluted by them.
    let mut extra = BTreeMap::new();
    let mut inj = Rng::new(seed ^ 0x0B5E55ED);
    for _ in 0..6 {
        let c = inj.below(world.categories as u64) as usize;
        let m = 5 + inj.below(20) as usize;
        let regions = pick(&mut inj, world.regions, m.min(world.regions));
        let onset = 30 + inj.below(history_days - 80);
        let rho = if inj.uniform() < 0.5 { 0.5 } else { 1.0 };
        add_spread(world, &mut inj, &mut extra, c, &regions, onset, rho);
    }
    for _ in 0..30 {
        let c = inj.below(world.categories as u64) as usize;
        let r = inj.below(world.regions as u64) as usize;
        let onset = 30 + inj.below(history_days - 80);
        let k = if inj.uniform() < 0.5 { 10.0 } else { 20.0 };
        add_spike(world, &mut inj, &mut extra, c, r, onset, k);
    }
    for ((t, c, r), n) in extra {
        base[t as usize][c][r] += n;
    }
    Counts { base }
}

type Extra = BTreeMap<(u64, usize, usize), u32>;

fn pick(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    for i in 0..k.min(n) {
        let j = i + rng.below((n - i) as u64) as usize;
        all.swap(i, j);
    }
    let mut chosen = all[..k.min(n)].to_vec();
    chosen.sort_unstable();
    chosen
}

/// A: `Poisson(k * sqrt(phi * mu))` extra complaints spread over 0–2 days after onset.
fn add_spike(
    world: &World,
    rng: &mut Rng,
    extra: &mut Extra,
    c: usize,
    r: usize,
    onset: u64,
    k: f64,
) -> u64 {
    let mu = world.mu(r, c, onset);
    let n = rng.poisson(k * (world.phi * mu).sqrt());
    let span = rng.below(3);
    for _ in 0..n {
        let t = onset + rng.below(span + 1);
        if t < world.days {
            *extra.entry((t, c, r)).or_insert(0) += 1;
        }
    }
    span + 1
}

/// Days a B rise lasts in each region.
const SPREAD_DAYS: u64 = 14;
/// Days of a B rise's linear ramp to its full size.
const SPREAD_RAMP: u64 = 5;
/// A region's B rise starts `0..SPREAD_STAGGER` days after the event's onset.
const SPREAD_STAGGER: u64 = 5;

/// A region's B excess on day `d` of its rise, as a fraction of `rho * mu`.
fn spread_ramp(d: u64) -> f64 {
    if d < SPREAD_DAYS {
        ((d + 1) as f64 / SPREAD_RAMP as f64).min(1.0)
    } else {
        0.0
    }
}

/// B: extra `Poisson(rho * ramp * mu)` a day for 14 days with a 5-day ramp, onsets
/// staggered over 0–4 days.
fn add_spread(
    world: &World,
    rng: &mut Rng,
    extra: &mut Extra,
    c: usize,
    regions: &[usize],
    onset: u64,
    rho: f64,
) {
    for &r in regions {
        let start = onset + rng.below(SPREAD_STAGGER);
        for d in 0..SPREAD_DAYS {
            let t = start + d;
            if t >= world.days {
                break;
            }
            let n = rng.poisson(rho * spread_ramp(d) * world.mu(r, c, t)) as u32;
            if n > 0 {
                *extra.entry((t, c, r)).or_insert(0) += n;
            }
        }
    }
}

/// Extra complaints making `factor(t)` times the expected count (factor >= 1).
fn add_multiplier(
    world: &World,
    rng: &mut Rng,
    extra: &mut Extra,
    c: usize,
    r: usize,
    days: std::ops::Range<u64>,
    factor: impl Fn(u64) -> f64,
) {
    for t in days {
        if t >= world.days {
            break;
        }
        let n = rng.poisson((factor(t) - 1.0).max(0.0) * world.mu(r, c, t)) as u32;
        if n > 0 {
            *extra.entry((t, c, r)).or_insert(0) += n;
        }
    }
}

/// Injections of one scenario in the evaluation year.
fn inject(world: &World, scenario: Scenario, seed: u64, eval_start: u64) -> (Extra, Vec<Injected>) {
    let mut rng = Rng::new(seed ^ (0x1_0000 + scenario as u64 * 7919));
    let mut extra = Extra::new();
    let mut truth = Vec::new();
    let eval_days = world.days - eval_start;
    let mut busy: Vec<(usize, u64)> = Vec::new();
    let mut free =
        |rng: &mut Rng, c_choices: usize, lead: u64, tail: u64, gap: u64| -> (usize, u64) {
            for _ in 0..10_000 {
                let c = rng.below(c_choices as u64) as usize;
                let onset = eval_start + lead + rng.below(eval_days - lead - tail);
                if busy
                    .iter()
                    .all(|&(bc, bt)| bc != c || bt.abs_diff(onset) >= gap)
                {
                    busy.push((c, onset));
                    return (c, onset);
                }
            }
            (rng.below(c_choices as u64) as usize, eval_start + lead)
        };
    match scenario {
        Scenario::A => {
            for i in 0..40 {
                let k = [3.0, 5.0, 10.0, 20.0][i % 4];
                let cell = free(&mut rng, world.categories * world.regions, 10, 10, 14);
                let (c, r) = (cell.0 / world.regions, cell.0 % world.regions);
                let duration = add_spike(world, &mut rng, &mut extra, c, r, cell.1, k);
                truth.push(Injected {
                    kind: Kind::Spike,
                    column: c,
                    regions: vec![r],
                    onset: cell.1,
                    duration,
                    label: format!("A k={k}"),
                });
            }
        }
        Scenario::B => {
            for &m in &[5usize, 10, 25, 50] {
                for &rho in &[0.2, 0.3, 0.5, 1.0] {
                    let (c, onset) = free(&mut rng, world.categories, 14, 30, 45);
                    let regions = pick(&mut rng, world.regions, m.min(world.regions));
                    add_spread(world, &mut rng, &mut extra, c, &regions, onset, rho);
                    truth.push(Injected {
                        kind: Kind::Spread,
                        column: c,
                        regions,
                        onset,
                        duration: 18,
                        label: format!("B M={m} rho={rho}"),
                    });
                }
            }
        }
        Scenario::C => {
            for _ in 0..2 {
                let (c, onset) = free(&mut rng, world.categories, 30, 60, 10_000);
                for r in 0..world.regions {
                    add_multiplier(world, &mut rng, &mut extra, c, r, onset..world.days, |t| {
                        1.0 + 0.5 * ((t - onset + 1) as f64 / 28.0).min(1.0)
                    });
                }
                truth.push(Injected {
                    kind: Kind::Drift,
                    column: c,
                    regions: (0..world.regions).collect(),
                    onset,
                    duration: 21,
                    label: "C drift".into(),
                });
            }
        }
        Scenario::N => {
            for _ in 0..4 {
                let (r, onset) = free(&mut rng, world.regions, 10, 10, 10_000);
                for c in 0..world.categories {
                    add_multiplier(world, &mut rng, &mut extra, c, r, onset..onset + 2, |_| 1.5);
                }
                truth.push(Injected {
                    kind: Kind::Surge,
                    column: usize::MAX,
                    regions: vec![r],
                    onset,
                    duration: 2,
                    label: "N surge".into(),
                });
            }
            for _ in 0..3 {
                let (cell, onset) =
                    free(&mut rng, world.categories * world.regions, 10, 90, 10_000);
                let (c, r) = (cell / world.regions, cell % world.regions);
                add_multiplier(world, &mut rng, &mut extra, c, r, onset..world.days, |_| {
                    1.3
                });
                truth.push(Injected {
                    kind: Kind::Shift,
                    column: c,
                    regions: vec![r],
                    onset,
                    duration: world.days - onset,
                    label: "N shift".into(),
                });
            }
        }
    }
    (extra, truth)
}

/// One episode as the scorer sees it.
#[derive(Debug, Clone)]
struct Ep {
    column: usize,
    cell_region: Option<usize>,
    start: u64,
    regions: BTreeSet<usize>,
    /// Kind and detector of the first message.
    kind: String,
    /// (bucket, regions named by that message) of each started/updated message.
    named: Vec<(u64, BTreeSet<usize>)>,
}

/// What one engine run produced.
struct RunResult {
    episodes: Vec<Ep>,
    bucket_seconds: Vec<f64>,
    /// CPU time of this thread per bucket (wall time is inflated on a busy machine).
    bucket_cpu: Vec<f64>,
    state_bytes: usize,
    state_json_bytes: usize,
    /// Per evaluated bucket and series: score over threshold of each scan window and of
    /// the CUSUM on the total (verbose runs only).
    ratios: Vec<Vec<Vec<f32>>>,
    /// (phi_cell, misfit variance, mean expected total) per series at the end.
    fitted: Vec<(f64, f64, f64, Vec<f64>)>,
}

fn run_engine(
    world: &World,
    counts: &Counts,
    extra: &Extra,
    cfg: &BenchConfig,
    table: &mut CusumTable,
) -> RunResult {
    let mut config = EngineConfig::daily();
    config.min_history = cfg.engine_min_history;
    let origin: jiff::Timestamp = "2020-01-06T00:00:00Z".parse().expect("valid timestamp");
    let mut engine = TrendEngine::new(config, origin);
    engine.set_cusum_table(std::mem::take(table));
    for r in 0..world.regions {
        engine.region(&format!("r{r:02}"));
    }
    for c in 0..world.categories {
        engine.column(ColumnId {
            dimension: Dimension::Category,
            name: format!("c{c:02}"),
        });
    }
    let mut by_id: BTreeMap<String, Ep> = BTreeMap::new();
    let mut input = BucketInput {
        counts: vec![vec![0; world.regions]; world.categories],
        examples: BTreeMap::new(),
    };
    let mut bucket_seconds = Vec::new();
    let mut bucket_cpu = Vec::new();
    let mut ratios = Vec::new();
    let eval_start = cfg.history_days;
    for t in 0..world.days {
        for c in 0..world.categories {
            for r in 0..world.regions {
                input.counts[c][r] =
                    counts.base[t as usize][c][r] + extra.get(&(t, c, r)).copied().unwrap_or(0);
            }
        }
        let started = Instant::now();
        let cpu_before = thread_cpu_seconds();
        let alerts = engine.close_bucket(&input);
        if t >= eval_start && cfg.verbose {
            ratios.push(
                (0..world.categories)
                    .map(|c| engine.last_ratios(c).to_vec())
                    .collect(),
            );
        }
        if t >= eval_start {
            bucket_seconds.push(started.elapsed().as_secs_f64());
            if let (Some(a), Some(b)) = (cpu_before, thread_cpu_seconds()) {
                bucket_cpu.push(b - a);
            }
        }
        for a in alerts {
            let entry = by_id.entry(a.alert.id.clone()).or_insert_with(|| Ep {
                column: a.column,
                cell_region: a.cell_region,
                start: t,
                kind: format!("{}/{}", a.alert.kind.as_str(), a.alert.detector),
                regions: BTreeSet::new(),
                named: Vec::new(),
            });
            if a.alert.status != AlertStatus::Ended || entry.regions.is_empty() {
                entry.regions.extend(a.region_set.iter().copied());
            }
            if a.alert.status != AlertStatus::Ended {
                let named = a
                    .alert
                    .regions
                    .iter()
                    .filter_map(|rc| rc.region.strip_prefix('r').and_then(|n| n.parse().ok()))
                    .collect();
                entry.named.push((t, named));
            }
        }
    }
    let state_json_bytes = serde_json::to_vec(&engine).map_or(0, |v| v.len());
    let state_bytes = engine.state_bytes();
    let fitted = (0..world.categories)
        .map(|c| {
            let v = engine.column_view(c);
            (
                v.phi_cell,
                v.misfit_variance,
                v.expected_next.unwrap_or(0.0),
                v.scan_windows
                    .iter()
                    .zip(&v.scan_misfits)
                    .map(|(&w, &m)| m * f64::from(w) * v.expected_next.unwrap_or(0.0) / v.phi_cell)
                    .chain(v.scan_thresholds.iter().copied())
                    .collect(),
            )
        })
        .collect();
    *table = engine.cusum_table().clone();
    let mut episodes: Vec<Ep> = by_id
        .into_values()
        .filter(|e| e.start >= eval_start)
        .collect();
    episodes.sort_by_key(|e| (e.start, e.column, e.cell_region));
    RunResult {
        episodes,
        bucket_seconds,
        bucket_cpu,
        state_bytes,
        state_json_bytes,
        fitted,
        ratios,
    }
}

/// EARS C2 per cell: mean and sd of days t-9..t-3; alarm when (x - mean) / sd > z (a zero
/// sd alarms on any count above the mean). Returns, per threshold, the cell episodes.
fn ears_episodes(
    world: &World,
    counts: &Counts,
    extra: &Extra,
    eval_start: u64,
    thresholds: &[f64],
) -> Vec<Vec<Ep>> {
    let mut out = vec![Vec::new(); thresholds.len()];
    let x = |t: u64, c: usize, r: usize| {
        f64::from(counts.base[t as usize][c][r] + extra.get(&(t, c, r)).copied().unwrap_or(0))
    };
    for c in 0..world.categories {
        for r in 0..world.regions {
            let mut last_alarm: Vec<Option<u64>> = vec![None; thresholds.len()];
            for t in eval_start..world.days {
                let base: Vec<f64> = (t - 9..=t - 3).map(|s| x(s, c, r)).collect();
                let mean = base.iter().sum::<f64>() / 7.0;
                let sd = (base.iter().map(|b| (b - mean).powi(2)).sum::<f64>() / 6.0).sqrt();
                let v = x(t, c, r);
                let z = if sd > 0.0 {
                    (v - mean) / sd
                } else if v > mean {
                    f64::INFINITY
                } else {
                    0.0
                };
                // Raised thresholds alone cannot get below the alarms of zero-sd
                // baselines, so the sweep floors the sd at 1 (a common EARS variant).
                let z_floored = (v - mean) / sd.max(1.0);
                for (i, &thr) in thresholds.iter().enumerate() {
                    let z = if i == 0 { z } else { z_floored };
                    if z > thr {
                        if last_alarm[i].is_none_or(|l| t - l > 7) {
                            out[i].push(Ep {
                                column: c,
                                cell_region: Some(r),
                                start: t,
                                regions: [r].into(),
                                kind: String::new(),
                                named: Vec::new(),
                            });
                        }
                        last_alarm[i] = Some(t);
                    }
                }
            }
        }
    }
    out
}

/// Per-group tallies.
#[derive(Debug, Default, Clone)]
struct Tally {
    events: u64,
    hits: u64,
    null_hits: u64,
    delays: Vec<u64>,
    jaccard: Vec<f64>,
    ears_hits: u64,
    ears_matched_hits: u64,
    /// EARS at the next lower threshold (slightly more false alarms than ours).
    ears_looser_hits: u64,
    /// For nuisance rows: alerts counted.
    nuisance_alerts: u64,
    /// For nuisance rows: the same count where the nuisance cannot be the cause (surges:
    /// the no-injection twin; holidays: the run's category alerts on any two days).
    nuisance_chance: f64,
}

#[derive(Debug, Default)]
struct FalseAlarms {
    cell_episodes: u64,
    region_months: f64,
    column_episodes: u64,
    column_years: f64,
}

impl FalseAlarms {
    fn add(&mut self, other: &FalseAlarms) {
        self.cell_episodes += other.cell_episodes;
        self.region_months += other.region_months;
        self.column_episodes += other.column_episodes;
        self.column_years += other.column_years;
    }
    fn cell_rate(&self) -> f64 {
        self.cell_episodes as f64 / self.region_months.max(1e-9)
    }
    fn column_rate(&self) -> f64 {
        self.column_episodes as f64 / self.column_years.max(1e-9)
    }
}

/// Is an episode explained by an injected event (inside its window, on its scope)?
fn explained(ep: &Ep, truth: &[Injected], world_days: u64) -> bool {
    truth.iter().any(|inj| {
        let end = match inj.kind {
            Kind::Drift | Kind::Shift => world_days,
            _ => inj.onset + inj.duration + 3,
        };
        if ep.start < inj.onset || ep.start > end {
            return false;
        }
        match (inj.kind, ep.cell_region) {
            (Kind::Surge, Some(r)) => inj.regions.contains(&r),
            (Kind::Surge, None) => false,
            (_, Some(r)) => ep.column == inj.column && inj.regions.contains(&r),
            (Kind::Spike, None) => false,
            (Kind::Shift, None) => ep.column == inj.column && ep.regions.contains(&inj.regions[0]),
            (_, None) => ep.column == inj.column,
        }
    })
}

/// The earliest episode that detects the event, if any.
fn detecting_episode<'a>(inj: &Injected, episodes: &'a [Ep]) -> Option<&'a Ep> {
    let window_end = window_end(inj);
    episodes
        .iter()
        .filter(|e| e.start >= inj.onset && e.start <= window_end && e.column == inj.column)
        .filter(|e| match (inj.kind, e.cell_region) {
            (Kind::Spike, Some(r)) => r == inj.regions[0],
            (Kind::Spike, None) => false,
            (Kind::Spread, Some(r)) => inj.regions.contains(&r),
            (Kind::Spread, None) => true,
            (Kind::Drift, None) => true,
            (Kind::Drift, Some(_)) => false,
            _ => false,
        })
        .min_by_key(|e| (e.start, e.cell_region.is_some()))
}

fn window_end(inj: &Injected) -> u64 {
    match inj.kind {
        Kind::Drift => inj.onset + 21,
        _ => inj.onset + inj.duration + 3,
    }
}

/// Jaccard of the regions an episode names (its latest message inside the event's
/// window: what an analyst reading the alert then is told) against the true set.
fn jaccard(inj: &Injected, e: &Ep) -> f64 {
    let window_end = window_end(inj);
    let truth: BTreeSet<usize> = inj.regions.iter().copied().collect();
    let named = e
        .named
        .iter()
        .rev()
        .find(|(t, _)| *t <= window_end)
        .map_or(&e.regions, |(_, named)| named);
    let inter = truth.intersection(named).count() as f64;
    let union = truth.union(named).count() as f64;
    inter / union.max(1.0)
}

/// Does the event have a detecting episode? Returns the earliest (start, jaccard).
fn detection(inj: &Injected, episodes: &[Ep]) -> Option<(u64, Option<f64>)> {
    detecting_episode(inj, episodes)
        .map(|e| (e.start, e.cell_region.is_none().then(|| jaccard(inj, e))))
}

fn describe(inj: &Injected, episodes: &[Ep]) -> String {
    match detecting_episode(inj, episodes) {
        None => {
            let near: Vec<String> = episodes
                .iter()
                .filter(|e| {
                    e.column == inj.column
                        && e.cell_region.is_none()
                        && e.start + 40 >= inj.onset
                        && e.start <= inj.onset + 40
                })
                .map(|e| format!("{:+} {}", e.start as i64 - inj.onset as i64, e.kind))
                .collect();
            format!("- (series episodes near: {})", near.join(", "))
        }
        Some(e) => match e.cell_region {
            Some(r) => format!("+{} cell r{r:02} {}", e.start - inj.onset, e.kind),
            None => format!(
                "+{} {} named {} J={:.2}",
                e.start - inj.onset,
                e.kind,
                e.named.first().map_or(0, |n| n.1.len()),
                jaccard(inj, e)
            ),
        },
    }
}

/// Detection for EARS, which only has cell alarms (for drift: any cell of the category).
fn ears_detection(inj: &Injected, episodes: &[Ep]) -> bool {
    let window_end = match inj.kind {
        Kind::Drift => inj.onset + 21,
        _ => inj.onset + inj.duration + 3,
    };
    episodes.iter().any(|e| {
        e.start >= inj.onset
            && e.start <= window_end
            && e.column == inj.column
            && e.cell_region.is_some_and(|r| inj.regions.contains(&r))
    })
}

/// Budgets of false cross-region alarms per category-year the oracle is run at: the bar's
/// (1) and half of it. Its false-alarm probability per category-day is `budget / 365`.
pub const ORACLE_BUDGETS: [f64; 2] = [1.0, 0.5];

/// The windows the oracle tests: the cumulative count since onset (the plain oracle), or
/// on each day the window of the largest expected signal-to-noise given the known shape
/// of the rise ([`oracle_best_windows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OracleWindows {
    Cumulative,
    Best,
}

/// The oracle variants in the table: (windows, budget).
const ORACLES: [(OracleWindows, f64); 4] = [
    (OracleWindows::Cumulative, ORACLE_BUDGETS[0]),
    (OracleWindows::Best, ORACLE_BUDGETS[0]),
    (OracleWindows::Cumulative, ORACLE_BUDGETS[1]),
    (OracleWindows::Best, ORACLE_BUDGETS[1]),
];

/// The B rows of the bar's POD line (pooled in the oracle table).
const BAR_ROWS: [&str; 3] = ["B M=10 rho=0.5", "B M=25 rho=0.3", "B M=50 rho=0.2"];

/// The B row of the bar's delay line.
const FAST_ROW: &str = "B M=25 rho=1";

/// The oracle for a multi-region rise (scenario B): the first day `d` (0 = the event's
/// onset) at which the count of the event's true regions over the day's window
/// `windows[d] = (a, b)` (days `onset + a ..= onset + b`, `b <= d`) is improbably high,
/// `P(X >= observed) < alpha`, under the generator's own null: `X` negative binomial with
/// mean the sum of the true expectations (no injection) over the window and variance
/// `phi` times that mean. `expected[i]` and `observed[i]` are day `onset + i`'s true
/// expectation and count, each summed over the true regions; the slices span the scoring
/// window (`onset + duration + 3` is the last day). None: not detected in it. The plain
/// oracle tests the cumulative count since onset (`windows[d] = (0, d)`,
/// [`oracle_cumulative_windows`]); [`oracle_best_windows`] picks each day's window from
/// the known shape of the rise.
///
/// The null distribution is exact, not an approximation: with the generator's
/// parameterisation a sum of independent negative binomials with one `phi` is negative
/// binomial with the summed mean and the same `phi` (see [`crate::stats`]), so
/// [`nb_upper_tail`] of the sum is the p-value. Testing once a day at `alpha =
/// budget / 365` spends a budget of false alarms per category-year (see
/// [`ORACLE_BUDGETS`]).
///
/// # Why it bounds what a detector can reach
/// A real detector is told none of what the oracle is given: it must estimate the
/// expectations from a history with past outbreaks, and the dispersion, and find the
/// category, the regions and the onset; and it pays for that search out of the same
/// false-alarm budget (every window length, region subset and series it tests each day
/// shares the budget, so each test gets a small part of it). The oracle knows the true
/// expected counts, `phi`, the affected regions and the onset, and spends the whole budget
/// on one test a day, on the event. So at a matched rate of cross-region false alarms no
/// detector finds these events more often or earlier, except in the ways listed below.
///
/// # Where it is not strictly an upper bound
/// - One statistic a day, an unweighted window sum. The best linear statistic for a rise
///   of known shape weights each day by its expected relative excess; on the B shape
///   (5-day ramp, onsets staggered over 0–4 days, flat expectations) that beats the best
///   window by at most 8 % in standard deviations of excess, and beats the cumulative sum
///   since onset by up to 23 % (up to 15 % from choosing the window, see
///   [`oracle_best_windows`]). A detector that guessed which regions started first could
///   weight those more; the oracle is not told the per-region onsets either.
/// - `alpha` is per test, and tests on successive days are strongly correlated (their
///   counts overlap), so `alpha` a day makes fewer than `365 alpha` false *episodes* a
///   year (alarms within 7 days are one episode); a detector calibrated on episodes may
///   afford a somewhat larger `alpha` per day.
/// - `P(X >= x)` of a discrete count is conservative: with small expectations the test's
///   size is below `alpha`; a randomised test would spend exactly `alpha`.
/// - The scorer also credits cell alerts in an affected region, and those spend a separate
///   budget (0.25 false cell alarms per region-month, 7.5 a category-year over 50
///   regions). The oracle does not use it. On the rows where the rise is invisible in each
///   region what cell alerts add is mostly chance, which the chance-corrected POD removes.
pub fn oracle_detection_day(
    expected: &[f64],
    observed: &[u64],
    windows: &[(usize, usize)],
    phi: f64,
    alpha: f64,
) -> Option<u64> {
    let n = expected.len().min(observed.len()).min(windows.len());
    (0..n)
        .find(|&d| {
            let (a, b) = windows[d];
            let b = b.min(d);
            let mean: f64 = expected[a..=b].iter().sum();
            let count: u64 = observed[a..=b].iter().sum();
            nb_upper_tail(count, mean, phi) < alpha
        })
        .map(|d| d as u64)
}

/// The plain oracle's windows: on day `d`, everything since onset.
pub fn oracle_cumulative_windows(days: usize) -> Vec<(usize, usize)> {
    (0..days).map(|d| (0, d)).collect()
}

/// A B event's expected excess on each day after its onset, as a fraction of `rho` times
/// the expectation: the region's ramp averaged over the staggered starts.
pub fn spread_profile(days: usize) -> Vec<f64> {
    (0..days as u64)
        .map(|i| {
            (0..SPREAD_STAGGER)
                .filter(|&s| s <= i)
                .map(|s| spread_ramp(i - s))
                .sum::<f64>()
                / SPREAD_STAGGER as f64
        })
        .collect()
}

/// On each day `d`, the window `(a, b)`, `a <= b <= d`, with the largest expected excess
/// over its standard deviation, `sum(profile[i] * expected[i]) / sqrt(sum(expected[i]))`
/// over `a..=b` (that ratio times `rho / sqrt(phi)` is the window's expected z). Chosen
/// from the known shape of the rise and the true expectations, never from the counts, so
/// each day is still one test. It skips the first days of a rise, which carry little of
/// its excess: on the B shape its expected z is up to 15 % above the cumulative count's.
pub fn oracle_best_windows(expected: &[f64], profile: &[f64]) -> Vec<(usize, usize)> {
    let n = expected.len().min(profile.len());
    let snr = |a: usize, b: usize| {
        let mean: f64 = expected[a..=b].iter().sum();
        let excess: f64 = (a..=b).map(|i| profile[i] * expected[i]).sum();
        if mean > 0.0 {
            excess / mean.sqrt()
        } else {
            0.0
        }
    };
    let mut best = (0, 0);
    (0..n)
        .map(|d| {
            for a in 0..=d {
                if snr(a, d) > snr(best.0, best.1) {
                    best = (a, d);
                }
            }
            best
        })
        .collect()
}

/// Per day of a B event's scoring window: the true expectation (no injection) and the
/// count (base plus `extra`), each summed over the event's true regions.
fn oracle_inputs(
    world: &World,
    counts: &Counts,
    extra: &Extra,
    inj: &Injected,
) -> (Vec<f64>, Vec<u64>) {
    let c = inj.column;
    (inj.onset..=window_end(inj).min(world.days - 1))
        .map(|t| {
            inj.regions.iter().fold((0.0, 0u64), |(e, x), &r| {
                let n = counts.base[t as usize][c][r] + extra.get(&(t, c, r)).copied().unwrap_or(0);
                (e + world.mu(r, c, t), x + u64::from(n))
            })
        })
        .unzip()
}

/// Detection of one event in a run and in its no-injection twin.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    /// Days from onset to the first detection in the run.
    delay: Option<u64>,
    /// Whether the twin is detected in the same window (by chance).
    chance: bool,
}

/// One B event as the oracle table sees it.
#[derive(Debug, Clone)]
struct OracleRecord {
    label: String,
    /// `lam_c` of the event's category: complaints a day in an average region.
    rate: f64,
    /// Our detector as scored (cell alerts in an affected region count), then with its
    /// cross-region (series) alerts only; None when only the oracle ran.
    ours: Option<(Outcome, Outcome)>,
    /// Each of [`ORACLES`].
    oracle: Vec<Outcome>,
}

/// The oracles' and (given the episodes of the run and of its twin) our detector's
/// outcome on every B event of `truth`.
fn oracle_records(
    world: &World,
    counts: &Counts,
    extra: &Extra,
    truth: &[Injected],
    ours: Option<(&[Ep], &[Ep])>,
) -> Vec<OracleRecord> {
    let twin_extra = Extra::new();
    let series_only = |eps: &[Ep]| -> Vec<Ep> {
        eps.iter()
            .filter(|e| e.cell_region.is_none())
            .cloned()
            .collect()
    };
    let ours_series = ours.map(|(run, null)| (series_only(run), series_only(null)));
    truth
        .iter()
        .filter(|inj| inj.kind == Kind::Spread)
        .map(|inj| {
            let (expected, observed) = oracle_inputs(world, counts, extra, inj);
            let (_, twin) = oracle_inputs(world, counts, &twin_extra, inj);
            let cumulative = oracle_cumulative_windows(expected.len());
            let best = oracle_best_windows(&expected, &spread_profile(expected.len()));
            let oracle = ORACLES
                .iter()
                .map(|&(windows, budget)| {
                    let windows = match windows {
                        OracleWindows::Cumulative => &cumulative,
                        OracleWindows::Best => &best,
                    };
                    let day = |counts: &[u64]| {
                        oracle_detection_day(&expected, counts, windows, world.phi, budget / 365.0)
                    };
                    Outcome {
                        delay: day(&observed),
                        chance: day(&twin).is_some(),
                    }
                })
                .collect();
            let outcome = |run: &[Ep], null: &[Ep]| Outcome {
                delay: detection(inj, run).map(|(start, _)| start - inj.onset),
                chance: detection(inj, null).is_some(),
            };
            let ours = ours
                .zip(ours_series.as_ref())
                .map(|((run, null), (srun, snull))| (outcome(run, null), outcome(srun, snull)));
            OracleRecord {
                label: inj.label.clone(),
                rate: world.rate[inj.column],
                ours,
                oracle,
            }
        })
        .collect()
}

/// Outcomes of a group of events, pooled.
#[derive(Debug, Default)]
struct OutcomeTally {
    events: u64,
    hits: u64,
    chance: u64,
    delays: Vec<u64>,
}

impl OutcomeTally {
    fn add(&mut self, o: &Outcome) {
        self.events += 1;
        self.hits += u64::from(o.delay.is_some());
        self.chance += u64::from(o.chance);
        self.delays.extend(o.delay);
    }

    /// POD, twin's hit rate, chance-corrected POD, median delay of the detected, POD
    /// within 3 days.
    fn cells(&self) -> String {
        let n = self.events.max(1) as f64;
        let mut delays = self.delays.clone();
        delays.sort_unstable();
        let median = delays
            .get(delays.len() / 2)
            .map_or("-".to_owned(), |d| d.to_string());
        let within3 = delays.iter().filter(|&&d| d <= 3).count() as f64 / n;
        format!(
            "{:>4.2} {:>4.2} {:>5.2} {:>3} {:>4.2}",
            self.hits as f64 / n,
            self.chance as f64 / n,
            (self.hits as f64 - self.chance as f64) / n,
            median,
            within3
        )
    }
}

/// Terciles of `lam_c ~ LogUniform(0.3, 12)`: `0.3 * 40^(1/3)` and `0.3 * 40^(2/3)`.
fn density_cuts() -> [f64; 2] {
    [0.3 * 40f64.powf(1.0 / 3.0), 0.3 * 40f64.powf(2.0 / 3.0)]
}

/// Which records a row of the oracle table pools.
type RecordFilter<'a> = dyn Fn(&OracleRecord) -> bool + 'a;

/// One block of columns in the oracle table.
#[derive(Debug, Clone, Copy)]
enum Column {
    Ours,
    OursSeries,
    /// Index into [`ORACLES`].
    Oracle(usize),
}

/// The oracle tables: per B row, our detector (as scored, and its cross-region alerts
/// only) beside the two oracles at the bar's budget, then the oracles at half of it; the
/// bar rows pooled; the bar rows and the fast row by category density. `cell_rate`: our
/// false cell alarms per region-month in the null run, for the chance floor that cell
/// alerts set.
fn oracle_table(records: &[OracleRecord], categories: usize, cell_rate: Option<f64>) -> String {
    let mut out = String::new();
    let with_ours = records.iter().any(|r| r.ours.is_some());
    let title = |c: Column| match c {
        Column::Ours => "ours (as scored)".to_owned(),
        Column::OursSeries => "ours (cross-region only)".to_owned(),
        Column::Oracle(i) => format!(
            "oracle {} {}/yr",
            match ORACLES[i].0 {
                OracleWindows::Cumulative => "cumul.",
                OracleWindows::Best => "best w.",
            },
            ORACLES[i].1
        ),
    };
    let line = |label: &str, group: &[&OracleRecord], columns: &[Column]| {
        let mut text = format!("{:<32} {:>4}", label, group.len());
        for &c in columns {
            let mut tally = OutcomeTally::default();
            for r in group {
                let outcome = match c {
                    Column::Ours => r.ours.map(|o| o.0),
                    Column::OursSeries => r.ours.map(|o| o.1),
                    Column::Oracle(i) => r.oracle.get(i).copied(),
                };
                if let Some(o) = outcome {
                    tally.add(&o);
                }
            }
            let _ = write!(text, " | {}", tally.cells());
        }
        text
    };
    // Rows in the order of injection (M, then rho).
    let mut labels: Vec<&str> = Vec::new();
    for r in records {
        if !labels.contains(&r.label.as_str()) {
            labels.push(&r.label);
        }
    }
    let select = |pred: &RecordFilter| -> Vec<&OracleRecord> {
        records.iter().filter(|r| pred(r)).collect()
    };
    let bar = |r: &OracleRecord| BAR_ROWS.contains(&r.label.as_str());
    let fast = |r: &OracleRecord| r.label == FAST_ROW;
    let cuts = density_cuts();
    let terciles = [
        (format!("lam_c < {:.2}", cuts[0]), 0.0, cuts[0]),
        (
            format!("lam_c {:.2}-{:.2}", cuts[0], cuts[1]),
            cuts[0],
            cuts[1],
        ),
        (format!("lam_c > {:.2}", cuts[1]), cuts[1], f64::INFINITY),
    ];
    let table = |out: &mut String, columns: &[Column]| {
        let mut titles = format!("{:<37}", "");
        let mut header = format!("{:<32} {:>4}", "event", "n");
        for &c in columns {
            let _ = write!(titles, " | {:<23}", title(c));
            let _ = write!(header, " | POD null  corr med <=3");
        }
        let _ = writeln!(out, "{}", titles.trim_end());
        let _ = writeln!(out, "{header}");
        for label in &labels {
            let _ = writeln!(
                out,
                "{}",
                line(label, &select(&|r| r.label == *label), columns)
            );
        }
        let _ = writeln!(out, "{}", line("bar rows pooled", &select(&bar), columns));
        let groups: [(&str, &RecordFilter); 2] = [("bar rows", &bar), (FAST_ROW, &fast)];
        for (name, group) in groups {
            for (tercile, lo, hi) in &terciles {
                let rows = select(&|r| group(r) && r.rate >= *lo && r.rate < *hi);
                let _ = writeln!(
                    out,
                    "{}",
                    line(&format!("  {name}, {tercile}"), &rows, columns)
                );
            }
        }
    };
    let _ = writeln!(
        out,
        "Oracle on the B events (benchmark::oracle_detection_day): told the true expectations, phi, regions and onset; one exact NB test a day of the regions' count over a window, at alpha = budget / 365 a category-day; an upper bound on any detector at that rate of cross-region false alarms. 'cumul.': the count since onset; 'best w.': each day the window of the largest expected z given the known shape of the rise. Columns: POD, hit rate of the no-injection twin over the same window, POD minus that, median delay of the detected (days), POD within 3 days. lam_c: complaints a day in an average region of the category (terciles of LogUniform(0.3, 12))."
    );
    let mut first: Vec<Column> = Vec::new();
    if with_ours {
        first.extend([Column::Ours, Column::OursSeries]);
    }
    let half: Vec<Column> = (0..ORACLES.len())
        .filter(|&i| ORACLES[i].1 != ORACLE_BUDGETS[0])
        .map(Column::Oracle)
        .collect();
    first.extend(
        (0..ORACLES.len())
            .filter(|&i| ORACLES[i].1 == ORACLE_BUDGETS[0])
            .map(Column::Oracle),
    );
    table(&mut out, &first);
    let _ = writeln!(out);
    table(&mut out, &half);
    let window = 22.0;
    let alphas: Vec<String> = ORACLE_BUDGETS
        .iter()
        .map(|b| {
            format!(
                "{b}/yr: alpha {:.5}, {window} tests x alpha = {:.3}",
                b / 365.0,
                window * b / 365.0
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "oracle chance rate (null column) is at most the tests in a window times alpha ({}); less, as successive tests are correlated",
        alphas.join("; ")
    );
    // Chance that a window holds a false cell alarm in one of the M affected regions of
    // a bar row, at a rate of false cell alarms per region-month (spread evenly).
    let cell_chance = |per_region_month: f64, label: &str| -> Option<f64> {
        let m: f64 = label
            .split_whitespace()
            .nth(1)?
            .strip_prefix("M=")?
            .parse()
            .ok()?;
        let per_cell_day = per_region_month / (365.25 / 12.0) / categories as f64;
        Some(1.0 - (-per_cell_day * m * window).exp())
    };
    // With cell alarms independent of the events, a detector of power `p` and chance
    // rate `o` on its own scores `(p + c - pc) - (o + c - oc) = (p - o)(1 - c)`.
    let best = ORACLES
        .iter()
        .position(|&o| o == (OracleWindows::Best, ORACLE_BUDGETS[0]))
        .unwrap_or(0);
    let rates: Vec<(String, f64)> = std::iter::once(("the cell budget".to_owned(), 0.25))
        .chain(cell_rate.map(|f| ("our null run's rate".to_owned(), f)))
        .collect();
    for (name, rate) in rates {
        let mut projected = Vec::new();
        let rows: Vec<String> = BAR_ROWS
            .iter()
            .filter_map(|label| {
                let c = cell_chance(rate, label)?;
                let mut tally = OutcomeTally::default();
                for r in records.iter().filter(|r| r.label == *label) {
                    tally.add(r.oracle.get(best)?);
                }
                let n = tally.events.max(1) as f64;
                let score = (tally.hits as f64 - tally.chance as f64) / n * (1.0 - c);
                projected.push(score);
                Some(format!(
                    "{} chance {c:.2}, projected {score:.2}",
                    &label[2..]
                ))
            })
            .collect();
        let _ = writeln!(
            out,
            "false cell alarm in an affected region, by chance, over a {window}-day window at {name} ({rate:.3}/region-month, {categories} categories): {}; projected = chance-corrected POD of a detector with the 'best w. 1/yr' oracle's power that also raised those cell alarms, (POD - null) x (1 - chance): pooled {:.2}",
            rows.join("; "),
            projected.iter().sum::<f64>() / projected.len().max(1) as f64
        );
    }
    out
}

/// The benchmark's result: the printed table plus headline numbers.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub table: String,
}

const EARS_THRESHOLDS: [f64; 14] = [
    3.09, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0, 40.0, 60.0, 100.0,
];

/// What one seed contributes to the table.
#[derive(Default)]
struct SeedOut {
    tallies: BTreeMap<String, Tally>,
    fa_ours: BTreeMap<&'static str, FalseAlarms>,
    fa_ears: Vec<FalseAlarms>,
    ears_hits_by_thr: BTreeMap<String, Vec<u64>>,
    cost: (Vec<f64>, usize, usize, Vec<f64>),
    /// One per B event, when the oracle runs.
    oracle: Vec<OracleRecord>,
}

impl SeedOut {
    /// Nothing counted yet: where one seed's run and the merge of all seeds start.
    fn empty() -> SeedOut {
        SeedOut {
            tallies: BTreeMap::new(),
            fa_ours: BTreeMap::new(),
            fa_ears: (0..EARS_THRESHOLDS.len())
                .map(|_| FalseAlarms::default())
                .collect(),
            ears_hits_by_thr: BTreeMap::new(),
            cost: (Vec::new(), 0, 0, Vec::new()),
            oracle: Vec::new(),
        }
    }
}

/// Runs every scenario of one seed.
fn run_seed(
    cfg: &BenchConfig,
    seed: u64,
    table: &mut CusumTable,
    progress: &mut dyn FnMut(&str),
) -> SeedOut {
    let days = cfg.history_days + cfg.eval_days;
    let eval_start = cfg.history_days;
    let SeedOut {
        mut tallies,
        mut fa_ours,
        mut fa_ears,
        mut ears_hits_by_thr,
        mut cost,
        mut oracle,
    } = SeedOut::empty();
    let region_months = cfg.regions as f64 * cfg.eval_days as f64 / (365.25 / 12.0);
    let column_years = cfg.categories as f64 * cfg.eval_days as f64 / 365.25;
    let world = World::new(seed, cfg.regions, cfg.categories, days, cfg.phi);
    let counts = generate_base(&world, seed, cfg.history_days);
    if cfg.oracle_only {
        for &scenario in &cfg.scenarios {
            let (extra, truth) = inject(&world, scenario, seed, eval_start);
            oracle.extend(oracle_records(&world, &counts, &extra, &truth, None));
        }
        progress(&format!("seed {seed}: oracle only"));
        return SeedOut {
            oracle,
            ..SeedOut::empty()
        };
    }
    let empty = Extra::new();
    let null = run_engine(&world, &counts, &empty, cfg, table);
    progress(&format!(
        "seed {seed}: null run, {} episodes",
        null.episodes.len()
    ));
    let fitted: Vec<String> = null
        .fitted
        .iter()
        .zip(&world.rate)
        .map(|((phi, misfit, m, inflation), rate)| {
            let inflation: Vec<String> = inflation.iter().map(|i| format!("{i:.2}")).collect();
            format!(
                "{rate:.1}:{m:.0}/{phi:.2}/{misfit:.4}/[{}]",
                inflation.join(",")
            )
        })
        .collect();
    progress(&format!(
        "seed {seed}: per series rate:expected/phi_cell/misfit/[misfit variance over count variance, then threshold, per scan window] {}",
        fitted.join(" ")
    ));
    if cfg.verbose {
        // Share of (bucket, series) whose score exceeds its threshold, per detector.
        let n = null
            .ratios
            .first()
            .and_then(|b| b.first())
            .map_or(0, |v| v.len());
        let shares: Vec<String> = (0..n)
            .map(|i| {
                let (mut over, mut all) = (0usize, 0usize);
                for bucket in &null.ratios {
                    for series in bucket {
                        if let Some(&v) = series.get(i) {
                            all += 1;
                            over += usize::from(v > 1.0);
                        }
                    }
                }
                format!("{over}/{all}")
            })
            .collect();
        progress(&format!(
            "seed {seed}: null buckets over threshold per detector {}",
            shares.join(" ")
        ));
        let mut kinds: BTreeMap<(bool, &str), usize> = BTreeMap::new();
        for e in &null.episodes {
            *kinds
                .entry((e.cell_region.is_some(), e.kind.as_str()))
                .or_default() += 1;
        }
        progress(&format!(
            "seed {seed}: null episodes by (cell, kind) {kinds:?}"
        ));
        for e in null.episodes.iter().filter(|e| e.cell_region.is_none()) {
            progress(&format!(
                "seed {seed}: null series episode c{:02} at {} {} named first {} union {}",
                e.column,
                e.start,
                e.kind,
                e.named.first().map_or(0, |n| n.1.len()),
                e.regions.len()
            ));
        }
    }
    let fa = fa_ours.entry("null").or_default();
    fa.cell_episodes += null
        .episodes
        .iter()
        .filter(|e| e.cell_region.is_some())
        .count() as u64;
    fa.column_episodes += null
        .episodes
        .iter()
        .filter(|e| e.cell_region.is_none())
        .count() as u64;
    fa.region_months += region_months;
    fa.column_years += column_years;
    // Holidays: category alerts starting on or the day after a holiday (null run).
    let holidays: Vec<u64> = world
        .holidays
        .iter()
        .copied()
        .filter(|&h| h >= eval_start)
        .collect();
    let tally = tallies.entry("N holiday".into()).or_default();
    let column_episodes_per_day = null
        .episodes
        .iter()
        .filter(|e| e.cell_region.is_none())
        .count() as f64
        / cfg.eval_days as f64;
    for &h in &holidays {
        tally.events += 1;
        tally.nuisance_chance += 2.0 * column_episodes_per_day;
        let on_holiday: Vec<&Ep> = null
            .episodes
            .iter()
            .filter(|e| e.cell_region.is_none() && (h..=h + 1).contains(&e.start))
            .collect();
        tally.nuisance_alerts += on_holiday.len() as u64;
        if cfg.verbose {
            for e in on_holiday {
                progress(&format!(
                    "seed {seed} N holiday {h}: c{:02} {:+} {} named {}",
                    e.column,
                    e.start as i64 - h as i64,
                    e.kind,
                    e.regions.len()
                ));
            }
        }
    }
    for &scenario in &cfg.scenarios {
        let (extra, truth) = inject(&world, scenario, seed, eval_start);
        let result = run_engine(&world, &counts, &extra, cfg, table);
        progress(&format!(
            "seed {seed}: scenario {scenario:?}, {} episodes",
            result.episodes.len()
        ));
        cost.0.extend_from_slice(&result.bucket_seconds);
        cost.3.extend_from_slice(&result.bucket_cpu);
        cost.1 = cost.1.max(result.state_bytes);
        cost.2 = cost.2.max(result.state_json_bytes);
        let ears = ears_episodes(&world, &counts, &extra, eval_start, &EARS_THRESHOLDS);
        // False alarms outside injected windows.
        let fa = fa_ours.entry(scenario_name(scenario)).or_default();
        for e in &result.episodes {
            if !explained(e, &truth, days) {
                if e.cell_region.is_some() {
                    fa.cell_episodes += 1;
                } else {
                    fa.column_episodes += 1;
                }
            }
        }
        fa.region_months += region_months;
        fa.column_years += column_years;
        if cfg.oracle {
            oracle.extend(oracle_records(
                &world,
                &counts,
                &extra,
                &truth,
                Some((&result.episodes, &null.episodes)),
            ));
        }
        for (i, eps) in ears.iter().enumerate() {
            fa_ears[i].cell_episodes +=
                eps.iter().filter(|e| !explained(e, &truth, days)).count() as u64;
            fa_ears[i].region_months += region_months;
        }
        for inj in &truth {
            let tally = tallies.entry(inj.label.clone()).or_default();
            tally.events += 1;
            match inj.kind {
                Kind::Surge => {
                    let r = inj.regions[0];
                    // A series episode naming the surging region while the surge lasts.
                    let names_surge = |e: &&Ep| {
                        e.cell_region.is_none()
                            && e.regions.contains(&r)
                            && e.start >= inj.onset
                            && e.start <= inj.onset + inj.duration + 3
                    };
                    let naming =
                        |episodes: &[Ep]| episodes.iter().filter(names_surge).count() as u64;
                    tally.nuisance_alerts += naming(&result.episodes);
                    tally.nuisance_chance += naming(&null.episodes) as f64;
                    if cfg.verbose {
                        let show = |episodes: &[Ep]| {
                            episodes
                                .iter()
                                .filter(names_surge)
                                .map(|e| {
                                    format!(
                                        "c{:02} {:+} {} named {} of {}",
                                        e.column,
                                        e.start as i64 - inj.onset as i64,
                                        e.kind,
                                        e.named.first().map_or(0, |n| n.1.len()),
                                        e.regions.len()
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        progress(&format!(
                            "seed {seed} N surge r{r:02} onset {}: run [{}] | null [{}]",
                            inj.onset,
                            show(&result.episodes),
                            show(&null.episodes)
                        ));
                    }
                }
                Kind::Shift => {
                    let (c, r) = (inj.column, inj.regions[0]);
                    tally.nuisance_alerts += result
                        .episodes
                        .iter()
                        .filter(|e| {
                            e.column == c
                                && e.start >= inj.onset
                                && (e.cell_region == Some(r)
                                    || (e.cell_region.is_none() && e.regions.contains(&r)))
                        })
                        .count() as u64;
                }
                _ => {
                    if let Some((start, jaccard)) = detection(inj, &result.episodes) {
                        tally.hits += 1;
                        tally.delays.push(start - inj.onset);
                        if let Some(j) = jaccard {
                            tally.jaccard.push(j);
                        }
                    }
                    if detection(inj, &null.episodes).is_some() {
                        tally.null_hits += 1;
                    }
                    if cfg.verbose && (inj.kind != Kind::Spike || !inj.label.ends_with("=3")) {
                        let cell = if inj.kind == Kind::Spike {
                            let r = inj.regions[0];
                            let added: u32 = (inj.onset..inj.onset + inj.duration)
                                .map(|t| extra.get(&(t, inj.column, r)).copied().unwrap_or(0))
                                .sum();
                            let base: Vec<u32> = (inj.onset..inj.onset + inj.duration)
                                .map(|t| counts.base[t as usize][inj.column][r])
                                .collect();
                            format!(
                                " r{r:02} mu {:.2} +{added} over {} base {base:?}",
                                world.mu(r, inj.column, inj.onset),
                                inj.duration
                            )
                        } else {
                            String::new()
                        };
                        // Highest score over threshold of each series detector
                        // inside the event's window, and its day after onset.
                        let peaks: Vec<String> =
                            (0..result.ratios.first().map_or(0, |b| b[inj.column].len()))
                                .map(|i| {
                                    let (mut best, mut at) = (0.0f32, 0);
                                    for t in inj.onset..=window_end(inj).min(days - 1) {
                                        let v = result.ratios[(t - eval_start) as usize]
                                            [inj.column]
                                            .get(i)
                                            .copied()
                                            .unwrap_or(0.0);
                                        if v > best {
                                            (best, at) = (v, t - inj.onset);
                                        }
                                    }
                                    format!("{best:.2}@{at}")
                                })
                                .collect();
                        progress(&format!(
                            "seed {seed} {} c{:02} onset {}{cell} peaks [{}]: run {} | null {}",
                            inj.label,
                            inj.column,
                            inj.onset,
                            peaks.join(" "),
                            describe(inj, &result.episodes),
                            describe(inj, &null.episodes)
                        ));
                    }
                    let hits = ears_hits_by_thr
                        .entry(inj.label.clone())
                        .or_insert_with(|| vec![0; EARS_THRESHOLDS.len()]);
                    for (i, eps) in ears.iter().enumerate() {
                        if ears_detection(inj, eps) {
                            hits[i] += 1;
                        }
                    }
                }
            }
        }
    }
    SeedOut {
        tallies,
        fa_ours,
        fa_ears,
        ears_hits_by_thr,
        cost,
        oracle,
    }
}

/// Runs every scenario for every seed (seeds spread over `cfg.threads` threads; the
/// result does not depend on the thread count) and prints the table.
pub fn run(cfg: &BenchConfig, mut progress: impl FnMut(&str)) -> BenchReport {
    let SeedOut {
        mut tallies,
        mut fa_ours,
        mut fa_ears,
        mut ears_hits_by_thr,
        mut cost,
        mut oracle,
    } = SeedOut::empty();
    let threads = cfg.threads.clamp(1, cfg.seeds.max(1) as usize);
    let next = std::sync::atomic::AtomicU64::new(0);
    let (tx, rx) = std::sync::mpsc::channel::<(u64, Option<SeedOut>, String)>();
    let mut outs: BTreeMap<u64, SeedOut> = BTreeMap::new();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                let mut table = CusumTable::new();
                loop {
                    let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seed >= cfg.seeds {
                        break;
                    }
                    let seed = cfg.first_seed + seed;
                    let out = run_seed(cfg, seed, &mut table, &mut |line: &str| {
                        let _ = tx.send((seed, None, line.to_owned()));
                    });
                    let _ = tx.send((seed, Some(out), String::new()));
                }
            });
        }
        drop(tx);
        for (seed, out, line) in rx {
            match out {
                Some(out) => {
                    outs.insert(seed, out);
                }
                None => progress(&line),
            }
        }
    });
    for out in outs.into_values() {
        for (label, t) in out.tallies {
            let m = tallies.entry(label).or_default();
            m.events += t.events;
            m.hits += t.hits;
            m.null_hits += t.null_hits;
            m.delays.extend(t.delays);
            m.jaccard.extend(t.jaccard);
            m.nuisance_alerts += t.nuisance_alerts;
            m.nuisance_chance += t.nuisance_chance;
        }
        for (name, f) in out.fa_ours {
            fa_ours.entry(name).or_default().add(&f);
        }
        for (i, f) in out.fa_ears.iter().enumerate() {
            fa_ears[i].add(f);
        }
        for (label, hits) in out.ears_hits_by_thr {
            let m = ears_hits_by_thr
                .entry(label)
                .or_insert_with(|| vec![0; EARS_THRESHOLDS.len()]);
            for (a, b) in m.iter_mut().zip(hits) {
                *a += b;
            }
        }
        cost.0.extend(out.cost.0);
        cost.3.extend(out.cost.3);
        cost.1 = cost.1.max(out.cost.1);
        cost.2 = cost.2.max(out.cost.2);
        oracle.extend(out.oracle);
    }

    // EARS at a threshold matched to our cell false-alarm rate (scenario A run).
    let ours_cell = fa_ours.get("A").map_or(0.0, FalseAlarms::cell_rate);
    let matched = (0..EARS_THRESHOLDS.len())
        .find(|&i| fa_ears[i].cell_rate() <= ours_cell.max(1e-9))
        .unwrap_or(EARS_THRESHOLDS.len() - 1);
    for (label, hits) in &ears_hits_by_thr {
        if let Some(t) = tallies.get_mut(label) {
            t.ears_hits = hits[0];
            t.ears_matched_hits = hits[matched];
            t.ears_looser_hits = hits[matched.saturating_sub(1)];
        }
    }

    let mut out = String::new();
    let _ =
        writeln!(
        out,
        "plaint-trends benchmark: {} seeds{}, {} regions x {} categories, {} + {} days, phi = {}",
        cfg.seeds,
        if cfg.first_seed > 0 {
            format!(" from {}", cfg.first_seed)
        } else {
            String::new()
        },
        cfg.regions, cfg.categories, cfg.history_days, cfg.eval_days, cfg.phi
    );
    let _ = writeln!(out);
    if cfg.oracle_only {
        out.push_str(&oracle_table(&oracle, cfg.categories, None));
        return BenchReport { table: out };
    }
    let _ = writeln!(
        out,
        "{:<18} {:>6} {:>6} {:>8} {:>7} {:>7} {:>8} | {:>9} {:>9} {:>9}",
        "event",
        "n",
        "POD",
        "POD-null",
        "delay",
        "POD<=3",
        "jaccard",
        "EARS@3.09",
        "EARS@z*",
        "EARS@z-"
    );
    for (label, t) in &tallies {
        if label.starts_with('N') {
            continue;
        }
        let n = t.events.max(1) as f64;
        let pod = t.hits as f64 / n;
        let corrected = pod - t.null_hits as f64 / n;
        let mut delays = t.delays.clone();
        delays.sort_unstable();
        let median = delays
            .get(delays.len() / 2)
            .map_or("-".to_owned(), |d| d.to_string());
        let within3 = delays.iter().filter(|&&d| d <= 3).count() as f64 / n;
        let jac = if t.jaccard.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{:.2}",
                t.jaccard.iter().sum::<f64>() / t.jaccard.len() as f64
            )
        };
        let _ = writeln!(
            out,
            "{:<18} {:>6} {:>6.2} {:>8.2} {:>7} {:>7.2} {:>8} | {:>9.2} {:>9.2} {:>9.2}",
            label,
            t.events,
            pod,
            corrected,
            median,
            within3,
            jac,
            t.ears_hits as f64 / n,
            t.ears_matched_hits as f64 / n,
            t.ears_looser_hits as f64 / n
        );
    }
    let b_jaccard: Vec<f64> = tallies
        .iter()
        .filter(|(label, _)| label.starts_with("B "))
        .flat_map(|(_, t)| t.jaccard.iter().copied())
        .collect();
    let b_bar: Vec<&Tally> = ["B M=10 rho=0.5", "B M=25 rho=0.3", "B M=50 rho=0.2"]
        .iter()
        .filter_map(|l| tallies.get(*l))
        .collect();
    let b_events: u64 = b_bar.iter().map(|t| t.events).sum();
    let b_hits: u64 = b_bar.iter().map(|t| t.hits).sum();
    let b_null: u64 = b_bar.iter().map(|t| t.null_hits).sum();
    let _ = writeln!(
        out,
        "B bar rows pooled: POD {:.2}, chance-corrected {:.2}; B localisation: mean Jaccard {:.2} over {} category-alert detections",
        b_hits as f64 / b_events.max(1) as f64,
        (b_hits as f64 - b_null as f64) / b_events.max(1) as f64,
        b_jaccard.iter().sum::<f64>() / b_jaccard.len().max(1) as f64,
        b_jaccard.len()
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<18} {:>6} {:>28}",
        "nuisance", "n", "category alerts per nuisance"
    );
    for (label, t) in &tallies {
        if !label.starts_with('N') {
            continue;
        }
        let n = t.events.max(1) as f64;
        let what = match label.as_str() {
            "N shift" => "episodes on the shifted cell".to_owned(),
            "N surge" => format!(
                "category alerts; {:.3} in the no-injection twin",
                t.nuisance_chance / n
            ),
            _ => format!(
                "category alerts; {:.3} on any two days at this run's rate",
                t.nuisance_chance / n
            ),
        };
        let _ = writeln!(
            out,
            "{:<18} {:>6} {:>10.3}  ({what})",
            label,
            t.events,
            t.nuisance_alerts as f64 / t.events.max(1) as f64
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "false alarms outside injected windows:");
    let _ = writeln!(
        out,
        "{:<10} {:>22} {:>26}",
        "run", "cell / region-month", "cross-region / series-year"
    );
    for (name, fa) in &fa_ours {
        let _ = writeln!(
            out,
            "{:<10} {:>22.3} {:>26.3}",
            name,
            fa.cell_rate(),
            fa.column_rate()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "EARS C2 (7-day baseline, 2-day guard) cell false alarms per region-month by threshold z (z > 3.09: sd floored at 1):");
    let mut line = String::new();
    for (i, z) in EARS_THRESHOLDS.iter().enumerate() {
        let _ = write!(line, " z={z}: {:.2};", fa_ears[i].cell_rate());
    }
    let _ = writeln!(out, "{line}");
    let _ = writeln!(
        out,
        "EARS@z* = EARS at z = {} (first threshold with false alarms <= ours in scenario A, {:.3}/region-month); EARS@z- at z = {} (the next lower one)",
        EARS_THRESHOLDS[matched], ours_cell, EARS_THRESHOLDS[matched.saturating_sub(1)]
    );
    let _ = writeln!(out);
    let times = &mut cost.0;
    times.sort_by(f64::total_cmp);
    let ms = |q: f64| {
        times
            .get(((times.len().max(1) - 1) as f64 * q) as usize)
            .map_or(0.0, |s| s * 1000.0)
    };
    let mean_ms = times.iter().sum::<f64>() / times.len().max(1) as f64 * 1000.0;
    let _ = writeln!(
        out,
        "cost per bucket, {} cells + {} cross-region scans, one core: median {:.2} ms, mean {:.2} ms (incl. weekly refits and quarterly recalibration), p99 {:.1} ms",
        cfg.regions * cfg.categories,
        cfg.categories,
        ms(0.5),
        mean_ms,
        ms(0.99)
    );
    if !cost.3.is_empty() {
        // The kernel updates a running thread's CPU time at scheduler ticks, so single
        // buckets read coarsely; the mean over all of them is exact to a tick per run.
        let cpu = &cost.3;
        let _ = writeln!(
            out,
            "CPU time per bucket (this thread's, not inflated by other load on the machine): mean {:.2} ms",
            cpu.iter().sum::<f64>() / cpu.len() as f64 * 1000.0,
        );
    }
    let _ = writeln!(
        out,
        "detector state: {:.1} MB in memory, {:.1} MB as persisted JSON (730 days of counts per cell included)",
        cost.1 as f64 / 1e6,
        cost.2 as f64 / 1e6
    );
    if cfg.oracle {
        let _ = writeln!(out);
        let cell_rate = fa_ours.get("null").map(FalseAlarms::cell_rate);
        out.push_str(&oracle_table(&oracle, cfg.categories, cell_rate));
    }
    BenchReport { table: out }
}

fn scenario_name(s: Scenario) -> &'static str {
    match s {
        Scenario::A => "A",
        Scenario::B => "B",
        Scenario::C => "C",
        Scenario::N => "N",
    }
}

/// CPU time used so far by the calling thread (Linux `schedstat`, nanoseconds); None
/// where it cannot be read.
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 * 1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_has_the_stated_weekly_shape() {
        let a = World::new(1, 10, 4, 70, 1.5);
        let b = World::new(1, 10, 4, 70, 1.5);
        assert_eq!(a.size, b.size);
        let mean_size = a.size.iter().sum::<f64>() / a.size.len() as f64;
        assert!((mean_size - 1.0).abs() < 1e-9);
        assert!(a.rate.iter().all(|&l| (0.3..=12.0).contains(&l)));
        let monday = a.mu(0, 0, 7) / a.mu(0, 0, 7 + 6);
        assert!(monday > 2.0, "monday/sunday = {monday}");
    }

    const ALPHA: f64 = 1.0 / 365.0;

    fn cumulative_day(expected: &[f64], observed: &[u64], alpha: f64) -> Option<u64> {
        let windows = oracle_cumulative_windows(expected.len());
        oracle_detection_day(expected, observed, &windows, 1.5, alpha)
    }

    fn best_day(expected: &[f64], observed: &[u64], alpha: f64) -> Option<u64> {
        let windows = oracle_best_windows(expected, &spread_profile(expected.len()));
        oracle_detection_day(expected, observed, &windows, 1.5, alpha)
    }

    #[test]
    fn oracle_finds_a_huge_rise_on_day_zero_and_nothing_without_a_rise() {
        let expected = vec![3.0; 22];
        let mut observed = vec![3u64; 22];
        assert_eq!(cumulative_day(&expected, &observed, ALPHA), None);
        assert_eq!(best_day(&expected, &observed, ALPHA), None);
        observed[0] = 40;
        assert_eq!(cumulative_day(&expected, &observed, ALPHA), Some(0));
        assert_eq!(best_day(&expected, &observed, ALPHA), Some(0));
    }

    #[test]
    fn oracle_delay_grows_as_the_rise_shrinks() {
        // 20 expected a day over the true regions, and counts at their expectation under
        // the B shape (rounded): the ramp averaged over the staggered starts.
        let expected = vec![20.0; 22];
        let profile = spread_profile(22);
        let observed = |rho: f64| -> Vec<u64> {
            profile
                .iter()
                .map(|g| (20.0 * (1.0 + rho * g)).round() as u64)
                .collect()
        };
        for day in [cumulative_day, best_day] {
            let days: Vec<u64> = [1.0, 0.5, 0.3]
                .iter()
                .map(|&rho| day(&expected, &observed(rho), ALPHA).expect("detected"))
                .collect();
            assert!(days[0] < days[1] && days[1] < days[2], "{days:?}");
            // A tenth of the rise stays under the threshold in the window.
            assert_eq!(day(&expected, &observed(0.1), ALPHA), None);
        }
        // The best windows skip the rise's first days, so find it no later.
        for rho in [1.0, 0.5, 0.3] {
            let (c, b) = (
                cumulative_day(&expected, &observed(rho), ALPHA).unwrap(),
                best_day(&expected, &observed(rho), ALPHA).unwrap(),
            );
            assert!(b <= c, "rho {rho}: best {b}, cumulative {c}");
        }
    }

    #[test]
    fn spread_profile_is_the_staggered_ramp_and_best_windows_follow_it() {
        let profile = spread_profile(22);
        let want = [0.04, 0.12, 0.24, 0.4, 0.6, 0.76, 0.88, 0.96, 1.0];
        for (g, w) in profile.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{profile:?}");
        }
        assert_eq!(profile[17], 0.2);
        assert!(profile[18..].iter().all(|&g| g == 0.0));
        // The profile sums to the mean excess days: 14 days less the 2 of the ramp.
        assert!((profile.iter().sum::<f64>() - 12.0).abs() < 1e-9);
        let windows = oracle_best_windows(&[5.0; 22], &profile);
        assert_eq!(windows[0], (0, 0));
        assert!(windows[10].0 > 0 && windows[10].1 == 10, "{windows:?}");
        // After the rise the best window stays the one that covered it.
        assert_eq!(windows[21], windows[17]);
    }

    #[test]
    fn oracle_false_alarms_stay_within_its_budget() {
        // Null counts drawn from the generator's distribution: one test at alpha alarms at
        // most alpha of the time, and a 22-day window at most 22 alpha of the time.
        let mut rng = Rng::new(11);
        let (mut single, mut cumulative, mut best) = (0u32, 0u32, 0u32);
        let reps = 3000;
        let expected = vec![6.0; 22];
        for _ in 0..reps {
            let observed: Vec<u64> = expected.iter().map(|&m| rng.neg_binomial(m, 1.5)).collect();
            single += u32::from(cumulative_day(&expected[..1], &observed[..1], 0.05).is_some());
            cumulative += u32::from(cumulative_day(&expected, &observed, ALPHA).is_some());
            best += u32::from(best_day(&expected, &observed, ALPHA).is_some());
        }
        let share = |n: u32| f64::from(n) / reps as f64;
        assert!(
            share(single) <= 0.05 + 0.012,
            "single day {}",
            share(single)
        );
        assert!(
            share(cumulative) <= 22.0 * ALPHA,
            "cumulative {}",
            share(cumulative)
        );
        assert!(share(best) <= 22.0 * ALPHA, "best windows {}", share(best));
    }
}
