//! Given/when/then tests of the detectors on hand-made series, of the projector, and
//! property tests of determinism and of insensitivity to event order within a bucket.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use plaint_events::{Channel, ComplaintFiled, Event, EventBody, Severity};
use plaint_projection::{digest_rows, Effect, Projection, ViewRow};
use proptest::prelude::*;

use crate::alert::{AlertKind, AlertStatus, Dimension, TrendAlert, TrendFilter};
use crate::engine::{BucketInput, ColumnId, EngineAlert, EngineConfig, TrendEngine};
use crate::{TrendsConfig, TrendsProjector};

fn origin() -> Timestamp {
    "2024-01-01T00:00:00Z".parse().unwrap()
}

/// A daily engine with regions `r0`, `r1`… and one column, the category `billing`.
fn billing_engine(regions: usize) -> TrendEngine {
    let mut engine = TrendEngine::new(EngineConfig::daily(), origin());
    for r in 0..regions {
        engine.region(&format!("r{r}"));
    }
    engine.column(ColumnId {
        dimension: Dimension::Category,
        name: "billing".into(),
    });
    engine
}

/// An engine with one category over `regions` regions, fed `days` buckets where
/// `count(day, region)` gives the counts. Returns every alert message.
fn run(regions: usize, days: u64, count: impl Fn(u64, usize) -> u32) -> Vec<EngineAlert> {
    let mut engine = billing_engine(regions);
    let mut alerts = Vec::new();
    for t in 0..days {
        let input = BucketInput {
            counts: vec![(0..regions).map(|r| count(t, r)).collect()],
            examples: BTreeMap::new(),
        };
        alerts.extend(engine.close_bucket(&input));
    }
    alerts
}

fn started(alerts: &[EngineAlert]) -> Vec<&EngineAlert> {
    alerts
        .iter()
        .filter(|a| a.alert.status == AlertStatus::Started)
        .collect()
}

#[test]
fn a_flat_series_never_alerts() {
    // Given five regions with exactly ten complaints a day for a year
    let alerts = run(5, 365, |_, _| 10);
    // Then nothing is ever reported
    assert!(alerts.is_empty(), "{:?}", alerts.first().map(|a| &a.alert));
}

#[test]
fn a_clear_spike_is_found_on_its_cell_the_same_bucket() {
    // Given 100 flat days, when region 2 gets 40 complaints instead of 10 on day 100
    let alerts = run(5, 110, |t, r| if t == 100 && r == 2 { 40 } else { 10 });
    // Then one spike episode starts on that cell on day 100, and nothing else
    let starts = started(&alerts);
    assert_eq!(starts.len(), 1, "{starts:?}");
    let a = &starts[0];
    assert_eq!(
        (a.bucket, a.cell_region, a.alert.kind),
        (100, Some(2), AlertKind::Spike)
    );
    assert_eq!(a.alert.region, "r2");
    assert_eq!(a.alert.regions[0].observed, 40);
    assert!(a.alert.p_value < 1e-6);
    assert!(a.alert.score > a.alert.threshold);
    // And the episode ends after a quiet week, with the same id
    let ended: Vec<&EngineAlert> = alerts
        .iter()
        .filter(|a| a.alert.status == AlertStatus::Ended)
        .collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].alert.id, a.alert.id);
    assert_eq!(ended[0].bucket, 108);
}

#[test]
fn a_holiday_dip_never_alerts() {
    // Given flat counts with two holidays at half volume in every region
    let alerts = run(5, 200, |t, _| if t == 90 || t == 150 { 5 } else { 10 });
    // Then nothing is reported, neither on the dip nor when volume comes back
    assert!(alerts.is_empty(), "{:?}", alerts.first().map(|a| &a.alert));
}

#[test]
fn a_dip_that_recurred_two_years_running_is_expected_again_and_a_one_off_is_not() {
    // Given ten regions with 20 complaints a day for almost three years, where day 100 of
    // every 365 is a holiday at 40 % of the volume, and day 500 alone was an outage
    let holiday = |t: u64| t % 365 == 100;
    let mut engine = billing_engine(10);
    let mut alerts = Vec::new();
    for t in 0..880u64 {
        let n = if holiday(t) || t == 500 { 8 } else { 20 };
        let input = BucketInput {
            counts: vec![vec![n; 10]],
            examples: BTreeMap::new(),
        };
        alerts.extend(engine.close_bucket(&input));
    }
    let expected = |day: u64| {
        let points = engine.series_points(0, 3);
        let first = engine.closed() - points.len() as u64;
        points[(day - first) as usize].2.unwrap()
    };
    // Then the third holiday is expected at about 40 %, the day before it in full
    assert!(
        (expected(830) / 8.0 - 1.0).abs() < 0.15,
        "{}",
        expected(830)
    );
    assert!(
        (expected(829) / 20.0 - 1.0).abs() < 0.1,
        "{}",
        expected(829)
    );
    // And the outage's anniversary is expected in full
    assert!(
        (expected(865) / 20.0 - 1.0).abs() < 0.1,
        "{}",
        expected(865)
    );
    // And none of it alerts
    assert!(alerts.is_empty(), "{:?}", alerts.first().map(|a| &a.alert));
}

#[test]
fn a_level_shift_alerts_once_and_becomes_the_new_level() {
    // Given flat counts, when one cell rises by half for good on day 100
    let alerts = run(5, 400, |t, r| if r == 1 && t >= 100 { 15 } else { 10 });
    // Then exactly one episode starts, on that cell, and it ends (absorbed) in time
    let starts = started(&alerts);
    assert_eq!(
        starts.len(),
        1,
        "{:#?}",
        starts
            .iter()
            .map(|a| (&a.alert.kind, a.bucket, a.cell_region))
            .collect::<Vec<_>>()
    );
    assert_eq!(starts[0].cell_region, Some(1));
    assert!(starts[0].bucket >= 100 && starts[0].bucket < 130);
    let ended: Vec<&EngineAlert> = alerts
        .iter()
        .filter(|a| a.alert.status == AlertStatus::Ended)
        .collect();
    assert_eq!(ended.len(), 1);
    assert!(
        ended[0].alert.note.is_some(),
        "the end says the shift became the baseline"
    );
}

#[test]
fn a_rise_in_several_regions_is_one_cross_region_alert_naming_them() {
    // Given ten flat regions, when regions 1, 4, 6 and 8 rise by 60 % for ten days
    let raised = [1usize, 4, 6, 8];
    let alerts = run(10, 140, |t, r| {
        if raised.contains(&r) && (100..110).contains(&t) {
            16
        } else {
            10
        }
    });
    // Then a series-level episode starts within a few days and names exactly those regions
    let series: Vec<&EngineAlert> = started(&alerts)
        .into_iter()
        .filter(|a| a.cell_region.is_none())
        .collect();
    assert_eq!(series.len(), 1, "{series:?}");
    let a = series[0];
    assert!(
        a.bucket >= 100 && a.bucket <= 103,
        "started on day {}",
        a.bucket
    );
    assert_eq!(a.alert.kind, AlertKind::CrossRegion);
    assert_eq!(a.alert.region, "all");
    let mut named: Vec<&str> = a.alert.regions.iter().map(|r| r.region.as_str()).collect();
    named.sort_unstable();
    assert_eq!(named, vec!["r1", "r4", "r6", "r8"]);
}

#[test]
fn a_slow_rise_everywhere_is_a_drift() {
    // Given flat counts, when every region ramps up by half over four weeks
    let alerts = run(6, 200, |t, _| {
        if t < 100 {
            20
        } else {
            20 + (10 * (t - 100).min(28) / 28) as u32
        }
    });
    // Then a series-level drift (or cross-region over nearly all regions) starts within three weeks
    let series: Vec<&EngineAlert> = started(&alerts)
        .into_iter()
        .filter(|a| a.cell_region.is_none())
        .collect();
    assert!(!series.is_empty());
    assert!(
        series[0].bucket < 121,
        "started on day {}",
        series[0].bucket
    );
    assert_eq!(series[0].alert.kind, AlertKind::Drift);
}

#[test]
fn noise_alone_stays_within_the_series_false_alarm_budget() {
    // Given six categories over twelve regions with negative-binomial noise around a
    // weekly pattern (phi = 1.5) and nothing else, for three years
    let (regions, categories, days) = (12usize, 6usize, 3 * 365u64);
    let mut engine = TrendEngine::new(EngineConfig::daily(), origin());
    for r in 0..regions {
        engine.region(&format!("r{r}"));
    }
    for c in 0..categories {
        engine.column(ColumnId {
            dimension: Dimension::Category,
            name: format!("c{c}"),
        });
    }
    let dow = [1.2, 1.2, 1.1, 1.1, 1.0, 0.5, 0.4];
    let mut rng = crate::stats::Rng::new(42);
    let mut series_episodes = 0;
    for t in 0..days {
        let counts = (0..categories)
            .map(|c| {
                (0..regions)
                    .map(|r| {
                        let mu = (0.5 + c as f64) * (0.5 + r as f64 / 8.0) * dow[(t % 7) as usize];
                        rng.neg_binomial(mu, 1.5) as u32
                    })
                    .collect()
            })
            .collect();
        let alerts = engine.close_bucket(&BucketInput {
            counts,
            examples: BTreeMap::new(),
        });
        if t >= 2 * 365 {
            series_episodes += started(&alerts)
                .iter()
                .filter(|a| a.cell_region.is_none())
                .count();
        }
    }
    // Then the last year has no more series episodes than the budget spent on them allows:
    // 70 % of one per series-year (scan windows 55 %, CUSUM on the total 15 %)
    let config = EngineConfig::daily();
    let share: f64 = config.scan_window_shares().iter().sum::<f64>() + config.total_cusum_share();
    let allowed = share * config.column_false_alarms_per_year * categories as f64;
    assert!(
        (series_episodes as f64) <= allowed.ceil(),
        "{series_episodes} series episodes, at most {allowed:.1} expected"
    );
}

#[test]
fn past_cell_spikes_do_not_pass_for_misfit_of_the_series_model() {
    // Given one category over twelve regions with negative-binomial noise for 300 days,
    // once as it is and once with six large single-cell spikes in the last year of the fit
    let misfits = |spikes: bool| {
        let mut engine = billing_engine(12);
        let mut rng = crate::stats::Rng::new(7);
        for t in 0..300u64 {
            let counts = (0..12usize)
                .map(|r| {
                    let x = rng.neg_binomial(3.0, 1.5) as u32;
                    let spiked = spikes && t >= 100 && t % 30 == 10 && r == (t / 30) as usize % 12;
                    x + if spiked { 60 } else { 0 }
                })
                .collect();
            engine.close_bucket(&BucketInput {
                counts: vec![counts],
                examples: BTreeMap::new(),
            });
        }
        engine.column_view(0).scan_misfits
    };
    let (clean, spiked) = (misfits(false), misfits(true));
    // Then the scan windows' misfit variances stay near those of the plain noise: each
    // spike is a cell alert, not an error of the series model that would blunt every
    // later scan (measured on the raw totals they came out at 0.04-0.08 against
    // 0.003-0.02 without spikes; what is left comes from the spikes' pull on the fit of
    // the total)
    assert_eq!(clean.len(), 4);
    for (w, (a, b)) in clean.iter().zip(&spiked).enumerate() {
        assert!(
            *b < 0.015 && b - a < 0.01,
            "window {w}: {spiked:?} against {clean:?}"
        );
    }
}

#[test]
fn an_overwhelming_spike_still_gives_finite_json() {
    // Regression: a p-value that underflowed to 0 made the score infinite, serialised as
    // null, and neither the message nor the persisted engine state could be read back.
    let alerts = run(3, 80, |t, r| if t == 70 && r == 0 { 5_000 } else { 1 });
    let spike = started(&alerts)
        .into_iter()
        .find(|a| a.cell_region == Some(0))
        .expect("spike");
    assert!(spike.alert.score.is_finite() && spike.alert.p_value > 0.0);
    let json = serde_json::to_string(&spike.alert).unwrap();
    let back: TrendAlert = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spike.alert);
}

// ---- projector ----

fn filed(id: &str, at: Timestamp, region: &str, category: &str, tags: &[&str]) -> Event {
    Event {
        id: plaint_events::own::event_id(&["test", id]),
        source: "crm-test".into(),
        complaint_id: id.into(),
        time: at,
        body: EventBody::Filed(ComplaintFiled {
            customer_id: "cust".into(),
            region: region.into(),
            category: category.into(),
            channel: Channel::Web,
            severity: Severity::Medium,
            amount_at_stake: None,
            summary: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            vip: false,
        }),
    }
}

/// Events for `days` days: `per_day(day, region)` complaints in each of three regions,
/// spread over the day; every complaint in region "north" also tagged `vendor:acme`.
fn history(days: i64, per_day: impl Fn(i64, usize) -> u32) -> Vec<Event> {
    let regions = ["north", "south", "west"];
    let mut events = Vec::new();
    for d in 0..days {
        for (r, region) in regions.iter().enumerate() {
            let n = per_day(d, r);
            for i in 0..n {
                let at = origin()
                    + SignedDuration::from_secs(d * 86_400 + 3_600 + i64::from(i) * 60 + r as i64);
                let tags: &[&str] = if r == 0 {
                    &["vendor:acme", "other:x"]
                } else {
                    &[]
                };
                events.push(filed(
                    &format!("c{d:04}-{r}-{i:03}"),
                    at,
                    region,
                    "delivery",
                    tags,
                ));
            }
        }
    }
    events
}

fn apply_all(projector: &mut TrendsProjector, events: &[Event]) -> Vec<Effect> {
    let mut effects = Vec::new();
    for (i, e) in events.iter().enumerate() {
        effects.extend(projector.apply(i as u64 + 1, e));
    }
    effects
}

/// The rows a runner would hold after committing every batch.
fn persisted(projector: &mut TrendsProjector, rows: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
    for (key, value) in projector.take_changes() {
        match value {
            Some(v) => {
                rows.insert(key, v);
            }
            None => {
                rows.remove(&key);
            }
        }
    }
}

fn digest(rows: &BTreeMap<Vec<u8>, Vec<u8>>) -> String {
    digest_rows(rows.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
}

fn spike_history() -> Vec<Event> {
    history(90, |d, r| if d == 80 && r == 0 { 30 } else { 6 })
}

fn publishes(effects: &[Effect]) -> Vec<(String, String, TrendAlert)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Publish {
                subject,
                msg_id,
                payload,
            } => Some((
                subject.clone(),
                msg_id.clone(),
                serde_json::from_slice(payload).unwrap(),
            )),
            Effect::AppendEvent { .. } => None,
        })
        .collect()
}

#[test]
fn projector_publishes_a_spike_on_the_cell_subject_with_a_deterministic_id() {
    let mut projector = TrendsProjector::new(TrendsConfig::default()).unwrap();
    let effects = apply_all(&mut projector, &spike_history());
    let published = publishes(&effects);
    let starts: Vec<&(String, String, TrendAlert)> = published
        .iter()
        .filter(|(_, _, a)| a.status == AlertStatus::Started)
        .collect();
    assert!(!starts.is_empty());
    let subjects: Vec<&str> = starts.iter().map(|(s, _, _)| s.as_str()).collect();
    assert!(
        subjects.contains(&"complaints.alerts.trends.north.delivery"),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&"complaints.alerts.trends.north.tag-vendor-acme"),
        "{subjects:?}"
    );
    for (_, msg_id, alert) in &starts {
        assert_eq!(msg_id, &alert.message_id);
        assert_eq!(alert.message_id, format!("{}:0", alert.id));
        assert!(
            !alert.examples.is_empty()
                && alert.examples.iter().all(|id| id.starts_with("c0080-0-"))
        );
        assert!(!alert.late_data);
    }
    // Replaying the same log gives the same messages (ids included).
    let mut again = TrendsProjector::new(TrendsConfig::default()).unwrap();
    assert_eq!(apply_all(&mut again, &spike_history()), effects);
    // Queries
    let active = projector.active(&TrendFilter {
        region: Some("north".into()),
        ..TrendFilter::default()
    });
    assert!(active
        .iter()
        .all(|a| a.region == "north" || a.region == "all"));
    let series = projector.series("north", "delivery").unwrap();
    assert!(series
        .points
        .iter()
        .any(|p| p.observed == 30 && p.expected.is_some_and(|e| e < 10.0)));
    assert!(projector.series("north", "vendor:acme").is_some());
    let model = projector.model();
    assert_eq!(model.columns.len(), 2, "other:x is not a tracked prefix");
    assert!(model.columns.iter().all(|c| c.fitted));
}

#[test]
fn only_filed_events_count_and_late_complaints_are_flagged() {
    let mut projector = TrendsProjector::new(TrendsConfig::default()).unwrap();
    let mut events = history(80, |_, _| 6);
    // Day 80: a normal day, then day 81 opens and closes day 80; 25 complaints for day 80
    // arrive late (after it closed), then day 81 is a bit high and closes.
    let day = |d: i64, h: i64| origin() + SignedDuration::from_secs(d * 86_400 + h * 3_600);
    for i in 0..6 {
        events.push(filed(
            &format!("n80-{i}"),
            day(80, 2),
            "north",
            "delivery",
            &[],
        ));
    }
    events.push(filed("s81-0", day(81, 7), "south", "delivery", &[]));
    for i in 0..25 {
        events.push(filed(
            &format!("late-{i:02}"),
            day(80, 20),
            "north",
            "delivery",
            &[],
        ));
    }
    for i in 0..14 {
        events.push(filed(
            &format!("n81-{i:02}"),
            day(81, 9),
            "north",
            "delivery",
            &[],
        ));
    }
    events.push(filed("s82-0", day(82, 7), "south", "delivery", &[]));
    let effects = apply_all(&mut projector, &events);
    let published = publishes(&effects);
    let late: Vec<&TrendAlert> = published
        .iter()
        .map(|(_, _, a)| a)
        .filter(|a| a.region == "north")
        .collect();
    assert!(
        !late.is_empty(),
        "the late complaints make day 80-81 a spike"
    );
    assert!(
        late[0].late_data && late[0].late_events >= 25,
        "{:?}",
        late[0]
    );
    // A non-filed event changes nothing.
    let before = projector.take_changes();
    assert!(!before.is_empty());
    let mut other = events[0].clone();
    other.body = EventBody::Closed(plaint_events::ComplaintClosed { by: None });
    assert!(projector.apply(10_000, &other).is_empty());
    assert!(projector.take_changes().is_empty());
}

#[test]
fn restore_then_continue_equals_an_uninterrupted_run() {
    let events = spike_history();
    let (first, second) = events.split_at(events.len() * 2 / 3);
    let mut straight = TrendsProjector::new(TrendsConfig::default()).unwrap();
    let mut straight_rows = BTreeMap::new();
    let mut straight_effects = apply_all(&mut straight, first);
    persisted(&mut straight, &mut straight_rows);
    let mut resumed = TrendsProjector::new(TrendsConfig::default()).unwrap();
    let mut rows: Vec<ViewRow> = straight_rows.clone().into_iter().collect();
    resumed.restore(&mut rows.drain(..)).unwrap();
    let mut resumed_rows = straight_rows.clone();
    let mut resumed_effects = straight_effects.clone();
    for (i, e) in second.iter().enumerate() {
        let seq = (first.len() + i + 1) as u64;
        straight_effects.extend(straight.apply(seq, e));
        resumed_effects.extend(resumed.apply(seq, e));
        if i % 50 == 0 {
            persisted(&mut resumed, &mut resumed_rows);
        }
    }
    persisted(&mut straight, &mut straight_rows);
    persisted(&mut resumed, &mut resumed_rows);
    assert_eq!(digest(&straight_rows), digest(&resumed_rows));
    assert_eq!(straight_effects, resumed_effects);
}

#[test]
fn config_parses_the_example_file() {
    #[derive(serde::Deserialize)]
    struct File {
        trends: TrendsConfig,
    }
    let text = include_str!("../trends.example.toml");
    let file: File = toml::from_str(text).unwrap();
    assert_eq!(file.trends, TrendsConfig::default());
    assert!(toml::from_str::<File>("[trends]\nallowed_lateness = \"1 month\"\n").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// The pure core is deterministic, and the order of events within a bucket does not
    /// change the rows or the effects.
    #[test]
    fn order_within_a_bucket_does_not_matter(seed in any::<u64>()) {
        let mut rng = crate::stats::Rng::new(seed);
        let noise: Vec<u32> = (0..75 * 3).map(|_| rng.below(4) as u32).collect();
        let events = history(75, |d, r| if d == 70 && r == 1 { 25 } else { 3 + noise[d as usize * 3 + r] });
        let mut shuffled = events.clone();
        // Shuffle within each day.
        let mut by_day: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
        for e in shuffled.drain(..) {
            by_day.entry(e.time.as_second().div_euclid(86_400)).or_default().push(e);
        }
        for day in by_day.values_mut() {
            for i in (1..day.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                day.swap(i, j);
            }
            // Keep event times increasing across days only; within a day any order.
            shuffled.append(day);
        }
        let mut a = TrendsProjector::new(TrendsConfig::default()).unwrap();
        let mut b = TrendsProjector::new(TrendsConfig::default()).unwrap();
        let (mut rows_a, mut rows_b) = (BTreeMap::new(), BTreeMap::new());
        let effects_a = apply_all(&mut a, &events);
        let effects_b = apply_all(&mut b, &shuffled);
        persisted(&mut a, &mut rows_a);
        persisted(&mut b, &mut rows_b);
        prop_assert_eq!(digest(&rows_a), digest(&rows_b));
        prop_assert_eq!(effects_a, effects_b);
    }
}
