//! Trends end to end, on a real nats-server: a seeded history of `complaint.filed` events
//! (10 regions x 3 categories, Poisson counts with a weekly pattern, event times from
//! 2024-01-01, ~27k events) published through JetStream, then one category rising 2.5x for
//! four days in five of the regions. Exactly one `cross_region` episode must reach
//! `complaints.alerts.trends.all.<category>`, naming those regions; neither a restart of
//! `plaint serve` nor an offline rebuild of the trends view may produce a second one, and the
//! rebuilt view must equal the live one.
//!
//! The history is synthetic and published like an import (`Nats-Msg-Id` = event id), so the
//! test does not depend on the data files in /work/shared/data (nor on `plaint-import`,
//! which is not a dependency of this test binary). The serve clock is a `ManualClock` set
//! before the first event, so the SLA projector's timers never fire on the (old) history and
//! the log holds exactly what the test published.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{Node, WAIT};

const REGIONS: [&str; 10] = [
    "north", "south", "east", "west", "central", "coast", "hills", "lakes", "metro", "valley",
];
const CATEGORIES: [&str; 3] = ["billing", "delivery", "quality"];
/// The category that rises, and where.
const RISING: &str = "delivery";
const RISING_REGIONS: [&str; 5] = ["south", "west", "coast", "lakes", "valley"];
/// Days 0..HISTORY are normal (the model needs 56), then RISE_DAYS days at RISE_FACTOR x in
/// the rising cells, then AFTER_DAYS normal days (the 14-day scan window still sees the rise
/// for 13 days, and an episode ends after 7 quiet buckets), all published before the
/// restart; RESTART_DAYS more normal days after it.
const HISTORY_DAYS: i64 = 70;
const RISE_DAYS: i64 = 4;
const RISE_FACTOR: f64 = 2.5;
const AFTER_DAYS: i64 = 24;
const RESTART_DAYS: i64 = 5;
/// Seed of the history. Over seeds 1-12, the first message named 4-5 of the rising regions
/// and no other, and the whole episode all 5 and 0-3 others (see the bounds below).
const SEED: u64 = 12;
/// Bound of the waits for ingest + projectors on the whole history (debug build, 2 shared
/// cores); the shorter `WAIT` bounds everything else.
const CATCH_UP: Duration = Duration::from_secs(180);

fn day_start(day: i64) -> Timestamp {
    let origin: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
    origin
        .checked_add(SignedDuration::from_hours(24 * day))
        .unwrap()
}

/// SplitMix64: a tiny seeded generator, so the history is the same on every run.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Knuth's method; the rates here are small.
    fn poisson(&mut self, lambda: f64) -> u32 {
        let limit = (-lambda).exp();
        let mut k = 0;
        let mut p = self.uniform();
        while p > limit {
            k += 1;
            p *= self.uniform();
        }
        k
    }
}

/// Expected complaints per day of a (region, category) cell: 20 to 29 a day by region in the
/// rising category (so a region's own noise rarely looks like part of the rise), 1.5 to 2.5
/// in the others, 30 % fewer at weekends (2024-01-01 is a Monday).
fn rate(day: i64, region: usize, category: usize) -> f64 {
    let base = if CATEGORIES[category] == RISING {
        20.0 + 3.0 * (region % 4) as f64
    } else {
        1.5 + 0.5 * (region % 3) as f64
    };
    let weekend = if day.rem_euclid(7) >= 5 { 0.7 } else { 1.0 };
    let rise = if CATEGORIES[category] == RISING
        && RISING_REGIONS.contains(&REGIONS[region])
        && (HISTORY_DAYS..HISTORY_DAYS + RISE_DAYS).contains(&day)
    {
        RISE_FACTOR
    } else {
        1.0
    };
    base * weekend * rise
}

/// One day's `complaint.filed` events as (subject, event id, payload), in event-time order.
/// Each day has its own seed, so any range of days can be generated on its own.
fn day_events(day: i64) -> Vec<(Timestamp, String, String, Vec<u8>)> {
    let mut rng =
        Rng::new(SEED.wrapping_mul(0x9e37_79b9) ^ (day as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut out = Vec::new();
    for (r, region) in REGIONS.iter().enumerate() {
        for (c, category) in CATEGORIES.iter().enumerate() {
            for i in 0..rng.poisson(rate(day, r, c)) {
                let offset = (rng.uniform() * 86_400.0) as i64;
                let time = day_start(day)
                    .checked_add(SignedDuration::from_secs(offset))
                    .unwrap();
                let complaint = format!("tr-{day:03}-{region}-{category}-{i}");
                let id = Uuid::new_v5(&Uuid::NAMESPACE_URL, complaint.as_bytes());
                let event = plaint_testkit::fixtures::envelope(
                    id,
                    "complaint.filed",
                    &complaint,
                    time,
                    json!({
                        "customer_id": format!("cust-{complaint}"),
                        "region": region,
                        "category": category,
                        "channel": "web",
                        "severity": "low",
                    }),
                );
                let subject = plaint_testkit::fixtures::subject(region, &event);
                out.push((
                    time,
                    subject,
                    id.to_string(),
                    plaint_testkit::fixtures::bytes(&event),
                ));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.cmp(&b.2)));
    out
}

/// Publishes the days' events with `Nats-Msg-Id` = event id, as `plaint publish` and the
/// importer do, awaiting the acks chunk by chunk. Returns how many were published.
async fn publish_days(node: &Node, days: std::ops::Range<i64>) -> u64 {
    let events: Vec<_> = days.flat_map(day_events).collect();
    for chunk in events.chunks(1000) {
        tokio::time::timeout(WAIT, async {
            let mut acks = Vec::with_capacity(chunk.len());
            for (_, subject, id, payload) in chunk {
                let mut headers = HeaderMap::new();
                headers.insert("Nats-Msg-Id", id.as_str());
                let ack = node
                    .js
                    .publish_with_headers(subject.clone(), headers, Bytes::from(payload.clone()))
                    .await
                    .unwrap();
                acks.push(ack);
            }
            for ack in acks {
                ack.await.unwrap();
            }
        })
        .await
        .expect("a chunk of the history acknowledged in time");
    }
    events.len() as u64
}

/// Waits until the log head is `seq` and every projector has applied it (effects are carried
/// out before a checkpoint moves, so the alerts are in the stream by then).
async fn wait_caught_up(node: &Node, seq: u64) {
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    let mut last = Value::Null;
    loop {
        if let Ok(status) = node.api("status", json!({})).await {
            let head = status["log"]["last_seq"].as_u64().unwrap_or(0);
            let caught_up = status["projectors"]
                .as_array()
                .is_some_and(|ps| ps.iter().all(|p| p["checkpoint"].as_u64() == Some(seq)));
            if head == seq && caught_up {
                return;
            }
            assert!(
                head <= seq,
                "the log holds more than was published: {status}"
            );
            last = status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not caught up with {seq} within {CATCH_UP:?}; last status {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One trends message of the alerts stream.
#[derive(Debug, Clone)]
struct TrendMessage {
    subject: String,
    msg_id: String,
    alert: Value,
}

/// Every message on `complaints.alerts.trends.>` in the alerts stream, in stream order.
async fn trend_messages(node: &Node) -> Vec<TrendMessage> {
    tokio::time::timeout(WAIT, async {
        let mut out = Vec::new();
        for m in node
            .stream_messages(&node.config.topology.alerts_stream)
            .await
        {
            let subject = m.subject.to_string();
            if !subject.starts_with("complaints.alerts.trends.") {
                continue;
            }
            let msg_id = m
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            let alert: Value = serde_json::from_slice(&m.payload).expect("alert is JSON");
            out.push(TrendMessage {
                subject,
                msg_id,
                alert,
            });
        }
        out
    })
    .await
    .expect("alerts stream read in time")
}

/// Episode id -> its messages, for the cross-region episodes (any message of kind
/// `cross_region`) on `complaints.alerts.trends.all.<category>`.
fn cross_region_episodes(
    messages: &[TrendMessage],
    category: &str,
) -> BTreeMap<String, Vec<TrendMessage>> {
    let subject = format!("complaints.alerts.trends.all.{category}");
    let ids: BTreeSet<&str> = messages
        .iter()
        .filter(|m| m.subject == subject && m.alert["kind"] == "cross_region")
        .map(|m| m.alert["id"].as_str().unwrap())
        .collect();
    let mut episodes: BTreeMap<String, Vec<TrendMessage>> = BTreeMap::new();
    for m in messages
        .iter()
        .filter(|m| ids.contains(m.alert["id"].as_str().unwrap()))
    {
        episodes
            .entry(m.alert["id"].as_str().unwrap().to_owned())
            .or_default()
            .push(m.clone());
    }
    episodes
}

fn summary(messages: &[TrendMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            let regions: Vec<String> = m.alert["regions"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .map(|r| {
                            format!(
                                "{}:{}/{:.1}",
                                r["region"].as_str().unwrap(),
                                r["observed"],
                                r["expected"].as_f64().unwrap()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "{} {} {} {} window {}..{} {} {} regions {:?}",
                m.subject,
                m.msg_id,
                m.alert["kind"],
                m.alert["status"],
                m.alert["window"]["start"],
                m.alert["window"]["end"],
                m.alert["detector"],
                m.alert["score"],
                regions
            )
        })
        .collect()
}

fn assert_msg_ids_unique_and_consistent(messages: &[TrendMessage]) {
    let mut seen = BTreeSet::new();
    for m in messages {
        assert!(
            seen.insert(m.msg_id.clone()),
            "Nats-Msg-Id {} appears twice",
            m.msg_id
        );
        assert_eq!(
            m.msg_id,
            format!(
                "{}:{}",
                m.alert["id"].as_str().unwrap(),
                m.alert["revision"]
            ),
            "Nats-Msg-Id is <episode id>:<revision>"
        );
        assert_eq!(m.alert["message_id"].as_str(), Some(m.msg_id.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_region_rise_is_one_cross_region_episode_across_restart_and_rebuild() {
    let started = std::time::Instant::now();
    // A tenth of the default cross-region false-alarm budget (1 per series and year): the
    // two quiet, low-volume categories are watched for some 50 days and must stay silent. At
    // the default a false cross_region episode in one of them is a matter of chance (2 of 6
    // seeds while this test was tuned); the injected rise is found either way.
    let parsed = plaint_service::Config::parse(
        Path::new("trends-test.toml"),
        "[trends]\ncross_region_false_alarms_per_series_year = 0.1\n",
    )
    .unwrap();
    let mut node = Node::with_config(|c| c.trends = parsed.trends.clone()).await;
    // Before every event: SLA timers stay quiet on the old history.
    let clock = || {
        Arc::new(plaint_runner::ManualClock::new(
            "2023-12-01T00:00:00Z".parse().unwrap(),
        ))
    };
    node.start_with_clock(clock());

    // History, the rise, and the quiet days after it.
    let phase_one = HISTORY_DAYS + RISE_DAYS + AFTER_DAYS;
    let mut head = publish_days(&node, 0..phase_one).await;
    wait_caught_up(&node, head).await;
    let model = node.api("trends.model", json!({})).await.unwrap();
    // Every day but the last has closed (one more if the first bucket is the day before).
    let closed = model["buckets_closed"].as_u64().unwrap();
    assert!(
        (phase_one as u64 - 1..=phase_one as u64).contains(&closed),
        "{model}"
    );

    let messages = trend_messages(&node).await;
    assert_msg_ids_unique_and_consistent(&messages);
    let all = summary(&messages);
    for category in CATEGORIES.iter().filter(|c| **c != RISING) {
        let episodes = cross_region_episodes(&messages, category);
        assert!(
            episodes.is_empty(),
            "no cross_region episode on {category}; trend messages: {all:#?}"
        );
    }
    let episodes = cross_region_episodes(&messages, RISING);
    assert_eq!(
        episodes.len(),
        1,
        "one cross_region episode on {RISING}; trend messages: {all:#?}"
    );
    let (episode, episode_messages) = episodes.iter().next().unwrap();
    let episode = episode.clone();
    let first = &episode_messages[0].alert;
    assert_eq!(first["status"], "started", "{all:#?}");
    assert_eq!(first["revision"], 0);
    assert_eq!(first["region"], "all");
    assert_eq!(first["series"], RISING);
    assert_eq!(first["dimension"], "category");
    // It started during the rise.
    let started_at: Timestamp = first["started_at"].as_str().unwrap().parse().unwrap();
    assert!(
        started_at >= day_start(HISTORY_DAYS) && started_at < day_start(HISTORY_DAYS + RISE_DAYS),
        "started at {started_at}; {all:#?}"
    );
    // The regions are the rising ones. The first message (the alarm that started it): at
    // least four of the five and at most one other. The episode over all its messages (an
    // update adds regions and never drops one, so noise on later, longer windows accumulates):
    // all five and at most two others, i.e. a Jaccard index of at least 5/7.
    let rising: BTreeSet<String> = RISING_REGIONS.iter().map(|r| r.to_string()).collect();
    let regions_of = |alerts: &[&Value]| -> BTreeSet<String> {
        alerts
            .iter()
            .flat_map(|a| a["regions"].as_array().unwrap().iter())
            .map(|r| r["region"].as_str().unwrap().to_owned())
            .collect()
    };
    let first_named = regions_of(&[first]);
    assert!(
        first_named.intersection(&rising).count() >= 4
            && first_named.difference(&rising).count() <= 1,
        "first message named {first_named:?}, rising {rising:?}; {all:#?}"
    );
    let named = regions_of(
        &episode_messages
            .iter()
            .map(|m| &m.alert)
            .collect::<Vec<_>>(),
    );
    assert!(
        named.is_superset(&rising) && named.difference(&rising).count() <= 2,
        "the episode named {named:?}, rising {rising:?}; {all:#?}"
    );
    for region in first["regions"].as_array().unwrap() {
        assert!(
            region["observed"].as_f64().unwrap() > region["expected"].as_f64().unwrap(),
            "a named region is above expectation: {region}"
        );
    }
    // After the quiet days the episode has ended, once, and it was the last message.
    let ended: Vec<&TrendMessage> = episode_messages
        .iter()
        .filter(|m| m.alert["status"] == "ended")
        .collect();
    assert_eq!(ended.len(), 1, "the episode ended once: {all:#?}");
    assert_eq!(episode_messages.last().unwrap().alert["status"], "ended");

    // Restart: the restored projector continues; a further quiet week starts nothing new on
    // the series, and re-sends nothing (the stream would drop a re-send by Nats-Msg-Id, but
    // the projector must not even make a new revision or episode).
    node.stop().await;
    node.start_with_clock(clock());
    wait_caught_up(&node, head).await;
    head += publish_days(&node, phase_one..phase_one + RESTART_DAYS).await;
    wait_caught_up(&node, head).await;
    let after_restart = trend_messages(&node).await;
    assert_msg_ids_unique_and_consistent(&after_restart);
    let all = summary(&after_restart);
    let episodes = cross_region_episodes(&after_restart, RISING);
    assert_eq!(
        episodes.keys().collect::<Vec<_>>(),
        vec![&episode],
        "still the one cross_region episode after the restart: {all:#?}"
    );
    assert_eq!(episodes[&episode].len(), episode_messages.len(), "{all:#?}");
    for category in CATEGORIES.iter().filter(|c| **c != RISING) {
        assert!(
            cross_region_episodes(&after_restart, category).is_empty(),
            "{all:#?}"
        );
    }
    let live = node
        .api("digest", json!({"projector": "trends"}))
        .await
        .unwrap();
    assert_eq!(live["checkpoint"].as_u64(), Some(head));
    node.stop().await;

    // Rebuild offline: the same view, and nothing new on the alerts stream (a rebuild
    // discards effects; had it not, the same Nats-Msg-Ids would be dropped as duplicates).
    let log = node.open_log();
    assert_eq!(
        log.last_seq(),
        head,
        "the log holds exactly what was published"
    );
    let fresh = plaint_service::serve_projectors(&node.config)
        .unwrap()
        .trends;
    let report = tokio::time::timeout(
        CATCH_UP,
        plaint_runner::rebuild(&log, fresh, Default::default(), |_| {}),
    )
    .await
    .expect("rebuild in time")
    .unwrap();
    assert_eq!(report.checkpoint, head);
    assert_eq!(
        Some(report.digest.as_str()),
        live["digest"].as_str(),
        "the rebuilt trends view equals the live one"
    );
    drop(log);
    let after_rebuild = trend_messages(&node).await;
    assert_eq!(
        after_rebuild.iter().map(|m| &m.msg_id).collect::<Vec<_>>(),
        after_restart.iter().map(|m| &m.msg_id).collect::<Vec<_>>(),
        "the rebuild published nothing"
    );
    eprintln!(
        "trends scenario: {head} events, {} trend messages, episode {episode} named {named:?}, {:.1}s",
        after_rebuild.len(),
        started.elapsed().as_secs_f64()
    );
}
