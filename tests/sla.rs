//! SLA: a scripted scenario driven by a manual clock. Every at-risk and breach alert on
//! `complaints.alerts.sla.<at_risk|breached>.<region>` and every `sla.breached` event in the
//! log is asserted exactly, step by step, across two restarts of `plaint serve`; at the end
//! the compliance report has the expected counts and a rebuild reproduces the live view.
//!
//! Policy "fast" (24x7, every complaint): first response 1h, resolution 8h, periodic
//! update 4h, callbacks tracked, resolution and periodic update pausable; at-risk at 75 %.
//! Times are minutes after `fixtures::at(0)`; warn = 75 % of the target.
//!
//! | complaint | story | alerts |
//! |---|---|---|
//! | A (eu) | ack 20, resolved 100 | none |
//! | B (us) | never answered; resolved 150 | at-risk FR (45), breach FR (60) |
//! | C (eu) | ack 10, callback promised at 30 for 90, contacted 120, resolved 150 | at-risk callback (75), breach callback (90) |
//! | D (eu) | ack 70 (after the breach), resolved 150 | at-risk FR (45), breach FR (60), no second breach when met late |
//! | E (eu) | ack 15, awaiting customer 60–180, contacted 340, resolved 350 | at-risk PU only at 315 (due 375, not 255: the pause moved it) |
//! | F (eu) | filed 200, ack at 262 reported at clock 258 (4 min ahead) | at-risk FR (245), met-late breach (due 260, met 262) |
//! | Z (eu) | filed 1000, clock jumps to 2000 | breaches FR, PU, resolution; no at-risk (past the deadlines) |

use std::{path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use jiff::Timestamp;
use plaint_runner::ManualClock;
use plaint_testkit::fixtures::{self, at};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{Node, WAIT};

const SLA_TOML: &str = r#"
[sla]
at_risk_fraction = 0.75

[[sla.policies]]
name = "fast"
calendar = "24x7"
first_response = "1h"
resolution = "8h"
periodic_update = "4h"
callback = true
pausable = ["resolution", "periodic_update"]
"#;

/// One SLA alert or breach event, in minutes after `at(0)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Sla {
    /// `at_risk` or `breached` (the alert subject), or `event` for a log entry.
    kind: &'static str,
    region: String,
    complaint: String,
    metric: String,
    due: i64,
    met: Option<i64>,
}

fn sla(kind: &'static str, region: &str, complaint: &str, metric: &str, due: i64) -> Sla {
    Sla {
        kind,
        region: region.into(),
        complaint: complaint.into(),
        metric: metric.into(),
        due,
        met: None,
    }
}

fn minutes(value: &Value) -> i64 {
    let t: Timestamp = value
        .as_str()
        .expect("a timestamp")
        .parse()
        .expect("RFC 3339");
    let seconds = t.duration_since(at(0)).as_secs();
    assert_eq!(seconds % 60, 0, "{t} is a whole minute of the scenario");
    seconds / 60
}

fn event(kind: &str, complaint: &str, minute: i64, data: Value) -> Value {
    fixtures::envelope(Uuid::new_v4(), kind, complaint, at(minute), data)
}

fn callback_promised(complaint: &str, minute: i64, due_minute: i64) -> Value {
    let data = json!({"by": "agent-1", "due_by": at(due_minute).to_string()});
    event("complaint.callback_promised", complaint, minute, data)
}

fn awaiting_customer(complaint: &str, minute: i64) -> Value {
    let data = json!({"by": "agent-1", "reason": "needs the invoice"});
    event("complaint.awaiting_customer", complaint, minute, data)
}

fn customer_replied(complaint: &str, minute: i64) -> Value {
    event(
        "complaint.customer_replied",
        complaint,
        minute,
        json!({"channel": "email"}),
    )
}

/// SLA messages of the alerts stream: (msg id, decoded alert).
async fn stream_alerts(node: &Node) -> Vec<(String, Sla)> {
    tokio::time::timeout(WAIT, async {
        let mut out = Vec::new();
        for m in node
            .stream_messages(&node.config.topology.alerts_stream)
            .await
        {
            let subject = m.subject.to_string();
            let Some(rest) = subject.strip_prefix("complaints.alerts.sla.") else {
                continue;
            };
            let (kind, region) = rest.split_once('.').expect("kind.region");
            let kind = match kind {
                "at_risk" => "at_risk",
                "breached" => "breached",
                other => panic!("unexpected SLA alert kind {other}"),
            };
            let msg_id = m
                .headers
                .get("Nats-Msg-Id")
                .expect("msg id")
                .as_str()
                .to_owned();
            let payload: Value = serde_json::from_slice(&m.payload).unwrap();
            let alert = if kind == "at_risk" {
                Sla {
                    kind,
                    region: region.into(),
                    complaint: payload["complaint_id"].as_str().unwrap().into(),
                    metric: payload["metric"].as_str().unwrap().into(),
                    due: minutes(&payload["due_at"]),
                    met: None,
                }
            } else {
                assert_eq!(payload["type"], "sla.breached", "{payload}");
                assert_eq!(
                    payload["id"].as_str(),
                    Some(msg_id.as_str()),
                    "msg id = event id"
                );
                let data = &payload["data"];
                assert_eq!(data["region"].as_str(), Some(region), "{payload}");
                Sla {
                    kind,
                    region: region.into(),
                    complaint: payload["subject"].as_str().unwrap().into(),
                    metric: data["metric"].as_str().unwrap().into(),
                    due: minutes(&data["due_at"]),
                    met: data.get("met_at").map(minutes),
                }
            };
            out.push((msg_id, alert));
        }
        out
    })
    .await
    .expect("alerts read in time")
}

fn breach_of(event: &Value) -> (String, Sla) {
    let data = &event["data"];
    assert_eq!(event["source"], "plaint/sla", "{event}");
    let breach = Sla {
        kind: "event",
        region: data["region"].as_str().unwrap().into(),
        complaint: event["subject"].as_str().unwrap().into(),
        metric: data["metric"].as_str().unwrap().into(),
        due: minutes(&data["due_at"]),
        met: data.get("met_at").map(minutes),
    };
    (event["id"].as_str().unwrap().to_owned(), breach)
}

/// `sla.breached` events of the log, through the API's replay: (event id, breach).
async fn logged_breaches(node: &Node) -> Result<Vec<(String, Sla)>, plaint_service::ApiError> {
    let mut out = Vec::new();
    let mut start = 1;
    loop {
        let request = json!({"filter": {"types": ["sla.breached"]}, "start": start});
        let reply = plaint_service::api::call(
            &node.client,
            "complaints",
            "replay",
            Bytes::from(serde_json::to_vec(&request).unwrap()),
            WAIT,
        )
        .await?;
        for line in reply.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line: Value = serde_json::from_slice(line).unwrap();
            out.push(breach_of(&line["event"]));
        }
        match reply.next_seq {
            Some(next) => start = next,
            None => return Ok(out),
        }
    }
}

/// What the scenario expects so far (cumulative).
#[derive(Default)]
struct Expected {
    alerts: Vec<Sla>,
    events: Vec<Sla>,
}

impl Expected {
    /// An alert (`at_risk`), or a breach: its alert plus its `sla.breached` event.
    fn add(&mut self, item: Sla) {
        if item.kind == "breached" {
            self.events.push(Sla {
                kind: "event",
                ..item.clone()
            });
        }
        self.alerts.push(item);
    }

    /// Waits until the stream and the log hold at least what is expected and the views
    /// caught up, then asserts they hold exactly that, each message and event once.
    async fn check(&self, node: &Node, step: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let (alerts, events) = loop {
            let alerts = stream_alerts(node).await;
            // Right after a (re)start the API may not answer yet.
            let events = logged_breaches(node).await.unwrap_or_default();
            if alerts.len() >= self.alerts.len() && events.len() >= self.events.len() {
                break (alerts, events);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{step}: expected {} alerts and {} breach events; have {alerts:#?} and {events:#?}",
                self.alerts.len(),
                self.events.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        node.wait_for_head(0).await;
        assert_unique(
            step,
            "alert msg ids",
            alerts.iter().map(|(id, _)| id.clone()).collect(),
        );
        assert_unique(
            step,
            "breach event ids",
            events.iter().map(|(id, _)| id.clone()).collect(),
        );
        let sorted = |items: &[Sla]| {
            let mut items = items.to_vec();
            items.sort();
            items
        };
        let got: Vec<Sla> = alerts.into_iter().map(|(_, a)| a).collect();
        assert_eq!(sorted(&got), sorted(&self.alerts), "{step}: SLA alerts");
        let got: Vec<Sla> = events.into_iter().map(|(_, e)| e).collect();
        assert_eq!(
            sorted(&got),
            sorted(&self.events),
            "{step}: sla.breached events"
        );
    }
}

fn assert_unique(step: &str, what: &str, mut ids: Vec<String>) {
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "{step}: {what} are unique");
}

/// Moves the manual clock to `minute`.
fn set(clock: &ManualClock, minute: i64) {
    clock.set(at(minute));
}

async fn compliance(node: &Node) -> Value {
    let query = json!({"query": {"group_by": ["metric"]}, "format": "json"});
    node.api("sla.compliance", query).await.unwrap()
}

/// A compliance row: (metric, met, breached).
type Row = (String, u64, u64);

/// The rows plus the total (count, met, breached).
fn tally(report: &Value) -> (Vec<Row>, (u64, u64, u64)) {
    let mut rows: Vec<Row> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let metric = r["metric"].as_str().unwrap().to_owned();
            (
                metric,
                r["met"].as_u64().unwrap(),
                r["breached"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    let t = &report["total"];
    let total = (
        t["count"].as_u64().unwrap(),
        t["met"].as_u64().unwrap(),
        t["breached"].as_u64().unwrap(),
    );
    (rows, total)
}

fn rows(items: &[(&str, u64, u64)]) -> Vec<Row> {
    let mut rows: Vec<_> = items
        .iter()
        .map(|(m, a, b)| (m.to_string(), *a, *b))
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_scenario_alerts_and_breaches_exactly_once_across_restarts() {
    scripted_scenario(SLA_TOML).await;
}

/// The same scenario with no armed complaint kept whole once its row is committed: every
/// tick that fires a timer reads its complaint back from the view (`rows_due`), every
/// event about one reads it back first (`rows_needed`), and the at-risk list and the
/// compliance report read the rows of those paged out. Every alert, event and count is
/// the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripted_scenario_is_unchanged_with_every_armed_complaint_paged_out() {
    let toml = SLA_TOML.replace(
        "at_risk_fraction = 0.75\n",
        "at_risk_fraction = 0.75\narmed_in_memory = 0\n",
    );
    assert_ne!(toml, SLA_TOML);
    scripted_scenario(&toml).await;
}

async fn scripted_scenario(sla_toml: &str) {
    let section = plaint_service::Config::parse(Path::new("sla-test.toml"), sla_toml)
        .unwrap()
        .sla;
    assert!(section.is_some());
    let mut node = Node::with_config(|c| c.sla = section).await;
    let clock = ManualClock::new(at(0));
    node.start_with_clock(Arc::new(clock.clone()));
    let mut expected = Expected::default();
    let (fr, pu, res, cb) = (
        "first_response",
        "periodic_update",
        "resolution",
        "callback",
    );

    // t=0: five complaints.
    let regions = [
        ("A", "eu"),
        ("B", "us"),
        ("C", "eu"),
        ("D", "eu"),
        ("E", "eu"),
    ];
    for (id, region) in regions {
        let category = if matches!(id, "A" | "C") {
            "billing"
        } else {
            "delivery"
        };
        node.publish_applied(region, &fixtures::filed(id, region, category, at(0)))
            .await;
    }
    set(&clock, 10);
    node.publish_applied("eu", &fixtures::acknowledged("C", at(10)))
        .await;
    set(&clock, 15);
    node.publish_applied("eu", &fixtures::acknowledged("E", at(15)))
        .await;
    set(&clock, 20);
    node.publish_applied("eu", &fixtures::acknowledged("A", at(20)))
        .await;
    set(&clock, 30);
    node.publish_applied("eu", &callback_promised("C", 30, 90))
        .await;
    expected.check(&node, "t=30: nothing at risk yet").await;

    // t=46: 75 % of the first response of B and D (the others answered).
    set(&clock, 46);
    expected.add(sla("at_risk", "us", "B", fr, 60));
    expected.add(sla("at_risk", "eu", "D", fr, 60));
    expected.check(&node, "t=46").await;
    // The at-risk list answers with both, from memory or from their rows.
    let at_risk = node
        .api("sla.at_risk", json!({"filter": {"metric": fr}}))
        .await
        .unwrap();
    let listed: Vec<(&str, &str)> = at_risk
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["complaint_id"].as_str().unwrap(),
                item["region"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, vec![("B", "us"), ("D", "eu")], "{at_risk}");

    // t=60: their first responses breach; E starts waiting for the customer.
    set(&clock, 60);
    expected.add(sla("breached", "us", "B", fr, 60));
    expected.add(sla("breached", "eu", "D", fr, 60));
    expected.check(&node, "t=60").await;
    node.publish_applied("eu", &awaiting_customer("E", 60))
        .await;

    // t=70: D answers late: the breach is already recorded, no second one.
    set(&clock, 70);
    node.publish_applied("eu", &fixtures::acknowledged("D", at(70)))
        .await;
    let d = node.api("sla.complaint", json!({"id": "D"})).await.unwrap();
    let d_fr = d["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == fr)
        .unwrap();
    assert_eq!(
        (d_fr["state"].as_str(), d_fr["breached"].as_bool()),
        (Some("met"), Some(true))
    );
    assert_eq!(d_fr["late_by_seconds"], 600, "{d_fr}");

    // t=76: C's callback (promised at 30 for 90) is at risk.
    set(&clock, 76);
    expected.add(sla("at_risk", "eu", "C", cb, 90));
    expected.check(&node, "t=76").await;

    // Restart with the clock unchanged: the at-risk alert still in its window is sent again
    // with the same msg id and absorbed; breaches already recorded do not fire again.
    node.stop().await;
    node.start_with_clock(Arc::new(clock.clone()));
    node.wait_for_head(0).await;
    expected.check(&node, "t=76 after restart").await;

    // t=90: the callback is broken.
    set(&clock, 90);
    expected.add(sla("breached", "eu", "C", cb, 90));
    expected.check(&node, "t=90").await;
    set(&clock, 100);
    node.publish_applied("eu", &fixtures::resolved("A", at(100)))
        .await;
    set(&clock, 120);
    node.publish_applied("eu", &fixtures::contacted("C", at(120)))
        .await;
    set(&clock, 150);
    node.publish_applied("us", &fixtures::resolved("B", at(150)))
        .await;
    node.publish_applied("eu", &fixtures::resolved("C", at(150)))
        .await;
    node.publish_applied("eu", &fixtures::resolved("D", at(150)))
        .await;
    // E's periodic update (due 255 without the pause) must not warn at 195.
    set(&clock, 180);
    node.publish_applied("eu", &customer_replied("E", 180))
        .await;
    set(&clock, 200);
    node.publish_applied("eu", &fixtures::filed("F", "eu", "billing", at(200)))
        .await;
    expected.check(&node, "t=200").await;

    // t=246: F's first response is at risk (due 260).
    set(&clock, 246);
    expected.add(sla("at_risk", "eu", "F", fr, 260));
    expected.check(&node, "t=246").await;
    // t=258: F's answer arrives stamped 262 (4 minutes ahead of our clock, within the
    // allowed skew): met late before the timer fired, so a met-late breach is written.
    set(&clock, 258);
    node.publish_applied("eu", &fixtures::acknowledged("F", at(262)))
        .await;
    expected.add(Sla {
        met: Some(262),
        ..sla("breached", "eu", "F", fr, 260)
    });
    expected.check(&node, "t=258").await;
    set(&clock, 270);
    set(&clock, 300);
    node.publish_applied("eu", &fixtures::resolved("F", at(300)))
        .await;
    expected
        .check(
            &node,
            "t=300: the timer of F did not fire after the met-late record",
        )
        .await;

    // Stop, move the clock while nothing runs, start: E's resumed periodic update (45 min
    // used before the pause, resumed at 180: due 375, at risk from 315) warns once.
    node.stop().await;
    set(&clock, 316);
    node.start_with_clock(Arc::new(clock.clone()));
    expected.add(sla("at_risk", "eu", "E", pu, 375));
    expected.check(&node, "t=316 after a restart").await;
    set(&clock, 340);
    node.publish_applied("eu", &fixtures::contacted("E", at(340)))
        .await;
    set(&clock, 350);
    node.publish_applied("eu", &fixtures::resolved("E", at(350)))
        .await;
    expected.check(&node, "t=350").await;

    // Compliance of A–F. A: FR, PU×2, RES met. B: FR breached; PU, RES met. C: FR, PU×3,
    // RES met; callback breached. D: FR breached (met late); PU×2, RES met. E: FR, PU×3, RES
    // met. F: FR breached (met late); PU×2, RES met.
    let report = compliance(&node).await;
    let want = rows(&[(fr, 3, 3), (res, 6, 0), (pu, 13, 0), (cb, 0, 1)]);
    assert_eq!(tally(&report), (want, (26, 22, 4)), "{report}");

    // Z is filed at 1000 and the clock jumps to 2000, past all of Z's deadlines: three
    // breaches and no at-risk alert (a warning past its deadline is pointless).
    set(&clock, 1000);
    node.publish_applied("eu", &fixtures::filed("Z", "eu", "delivery", at(1000)))
        .await;
    set(&clock, 2000);
    expected.add(sla("breached", "eu", "Z", fr, 1060));
    expected.add(sla("breached", "eu", "Z", pu, 1240));
    expected.add(sla("breached", "eu", "Z", res, 1480));
    expected.check(&node, "t=2000").await;
    let report = compliance(&node).await;
    let want = rows(&[(fr, 3, 4), (res, 6, 1), (pu, 13, 1), (cb, 0, 1)]);
    assert_eq!(tally(&report), (want, (29, 22, 7)), "{report}");
    let breaches = node.api("sla.breaches", json!({})).await.unwrap();
    let mut open: Vec<(String, String)> = breaches
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["complaint_id"].as_str().unwrap().into(),
                b["metric"].as_str().unwrap().into(),
            )
        })
        .collect();
    open.sort();
    let want: Vec<(String, String)> = [("B", fr), ("Z", fr), ("Z", pu), ("Z", res)]
        .iter()
        .map(|(c, m)| (c.to_string(), m.to_string()))
        .collect();
    assert_eq!(
        open, want,
        "open breaches: B's unanswered first response and Z's three"
    );

    // Totals, then rebuild: the view replayed from the log equals the live one.
    assert_eq!(
        expected
            .alerts
            .iter()
            .filter(|a| a.kind == "at_risk")
            .count(),
        5
    );
    assert_eq!(
        expected
            .alerts
            .iter()
            .filter(|a| a.kind == "breached")
            .count(),
        7
    );
    assert_eq!(expected.events.len(), 7);
    node.wait_quiet().await;
    let live = node
        .api("digest", json!({"projector": "sla"}))
        .await
        .unwrap();
    node.stop().await;
    let log = node.open_log();
    assert_eq!(
        live["checkpoint"].as_u64(),
        Some(log.last_seq()),
        "the live view had caught up"
    );
    let mut offline = Vec::new();
    for entry in log.read_range(1, log.last_seq()) {
        let (_, bytes) = entry.unwrap();
        let event: Value = serde_json::from_slice(&bytes).unwrap();
        if event["type"] == "sla.breached" {
            offline.push(breach_of(&event));
        }
    }
    assert_unique(
        "offline",
        "breach event ids",
        offline.iter().map(|(id, _)| id.clone()).collect(),
    );
    let mut offline: Vec<Sla> = offline.into_iter().map(|(_, b)| b).collect();
    offline.sort();
    let mut want = expected.events.clone();
    want.sort();
    assert_eq!(offline, want, "the log read offline holds each breach once");
    let fresh = plaint_service::serve_projectors(&node.config).unwrap().sla;
    let rebuilt = plaint_runner::rebuild(&log, fresh, Default::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(
        Some(rebuilt.digest.as_str()),
        live["digest"].as_str(),
        "rebuild reproduces the live view"
    );
}

/// A tick that breaches more complaints than the JetStream context lends publish-ack
/// permits (`max_ack_inflight`) still delivers every alert and breach event: the sink
/// awaits acks as its window fills instead of publishing everything first (which waited
/// for a permit forever and stalled the projector).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_with_more_breaches_than_the_ack_window_delivers_them_all() {
    let section = plaint_service::Config::parse(Path::new("sla-test.toml"), SLA_TOML)
        .unwrap()
        .sla;
    let mut node = Node::with_config(|c| {
        c.sla = section;
        c.nats.max_ack_inflight = 64;
    })
    .await;
    let clock = ManualClock::new(at(0));
    node.start_with_clock(Arc::new(clock.clone()));
    const COMPLAINTS: u64 = 400;
    for i in 0..COMPLAINTS {
        let id = format!("W-{i:03}");
        node.publish("eu", &fixtures::filed(&id, "eu", "billing", at(0)))
            .await;
    }
    node.wait_for_head(COMPLAINTS).await;
    // Past every first-response deadline (1h) at once; nothing else is due yet.
    clock.set(at(90));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        node.wait_for_head(2 * COMPLAINTS).await;
        let breaches = logged_breaches(&node).await.unwrap();
        let alerts = stream_alerts(&node).await;
        let breached = alerts.iter().filter(|(_, a)| a.kind == "breached").count() as u64;
        if breaches.len() as u64 == COMPLAINTS && breached == COMPLAINTS {
            break;
        }
        assert!(
            breaches.len() as u64 <= COMPLAINTS && breached <= COMPLAINTS,
            "more than one breach per complaint: {} events, {breached} alerts",
            breaches.len()
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} breach events and {breached} breach alerts of {COMPLAINTS} delivered",
            breaches.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.stop().await;
}
