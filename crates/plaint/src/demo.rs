//! `plaint demo`: a realistic, deterministic stream of complaint events.
//!
//! Many regions and categories with different volumes; each complaint lives a plausible
//! life: acknowledged (mostly within hours), assigned, contacted, sometimes put on hold
//! awaiting the customer, resolved, sometimes reopened, closed — and some never answered
//! at all, so SLA breaches and escalations show up. Timestamps run from `days` ago to
//! a few minutes ago, in event-time order.

use jiff::{SignedDuration, Timestamp};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};
use uuid::Uuid;

const REGIONS: &[(&str, u32)] = &[
    ("eu-west", 30),
    ("eu-north", 12),
    ("eu-south", 14),
    ("us-east", 28),
    ("us-west", 20),
    ("latam-br", 10),
    ("apac-sg", 8),
    ("apac-au", 6),
];

const CATEGORIES: &[(&str, u32)] = &[
    ("billing", 25),
    ("delivery", 22),
    ("product-quality", 15),
    ("customer-service", 12),
    ("refunds", 10),
    ("account-access", 8),
    ("fraud", 3),
    ("technical", 5),
];

const CHANNELS: &[&str] = &["email", "phone", "web", "chat", "letter", "social"];
const VENDORS: &[&str] = &["acme", "globex", "initech", "umbrella", "hooli"];
const AGENTS: &[&str] = &[
    "ana", "ben", "chloe", "dev", "emil", "fatima", "gus", "hana",
];
const SUMMARIES: &[&str] = &[
    "Charged twice for the same order.",
    "Parcel arrived damaged.",
    "Delivery is two weeks late.",
    "Refund promised but never received.",
    "Cannot log in to my account.",
    "Product stopped working after a week.",
    "Rude answer from the hotline.",
    "Unknown transaction on my statement.",
];

/// One generated event: its subject and wire bytes.
pub struct DemoEvent {
    pub subject: String,
    pub id: String,
    pub time: Timestamp,
    pub bytes: Vec<u8>,
}

fn pick<'a>(rng: &mut StdRng, items: &'a [(&'a str, u32)]) -> &'a str {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for (name, w) in items {
        if x < *w {
            return name;
        }
        x -= w;
    }
    items[0].0
}

fn one<'a>(rng: &mut StdRng, items: &'a [&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn minutes(m: f64) -> SignedDuration {
    SignedDuration::from_secs((m * 60.0) as i64)
}

/// Generates `complaints` complaints whose lives start within the last `days` days and
/// end before `now`, sorted by event time.
pub fn generate(complaints: usize, days: i64, seed: u64, now: Timestamp) -> Vec<DemoEvent> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events = Vec::new();
    let start = now - SignedDuration::from_hours(24 * days);
    let span_minutes = (days * 24 * 60) as f64;
    for n in 0..complaints {
        let id = format!("DEMO-{seed}-{n:06}");
        let region = pick(&mut rng, REGIONS);
        let category = pick(&mut rng, CATEGORIES);
        let severity = match rng.random_range(0..100) {
            0..=44 => "low",
            45..=79 => "medium",
            80..=95 => "high",
            _ => "critical",
        };
        let filed_at = start + minutes(rng.random_range(0.0..span_minutes));
        let customer = format!(
            "cust-{:05}",
            rng.random_range(0..(complaints as u32 / 2).max(10))
        );
        let mut data = json!({
            "customer_id": customer,
            "region": region,
            "category": category,
            "channel": one(&mut rng, CHANNELS),
            "severity": severity,
            "summary": one(&mut rng, SUMMARIES),
            "tags": [format!("vendor:{}", one(&mut rng, VENDORS))],
            "vip": rng.random_bool(0.04),
        });
        if rng.random_bool(0.35) {
            let value = match rng.random_range(0..100) {
                0..=70 => rng.random_range(5..100),
                71..=92 => rng.random_range(100..1000),
                93..=98 => rng.random_range(1000..10_000),
                _ => rng.random_range(10_000..60_000),
            };
            data["amount_at_stake"] = json!({"value": format!("{value}.00"), "currency": if region.starts_with("us") { "USD" } else { "EUR" }});
        }
        let mut life: Vec<(Timestamp, &str, Value)> = vec![(filed_at, "complaint.filed", data)];
        let agent = one(&mut rng, AGENTS);
        let mut t = filed_at;
        let never_answered = rng.random_bool(0.06);
        if !never_answered {
            let slow = if rng.random_bool(0.85) { 6.0 } else { 40.0 };
            t += minutes(rng.random_range(5.0..(60.0 * slow)));
            life.push((t, "complaint.acknowledged", json!({"by": agent})));
            t += minutes(rng.random_range(1.0..120.0));
            life.push((
                t,
                "complaint.assigned",
                json!({"assignee": agent, "team": format!("{region}-care")}),
            ));
            if rng.random_bool(0.2) {
                t += minutes(rng.random_range(10.0..240.0));
                let due = t + minutes(rng.random_range(60.0..1440.0));
                life.push((
                    t,
                    "complaint.callback_promised",
                    json!({"by": agent, "due_by": due.to_string()}),
                ));
                if rng.random_bool(0.8) {
                    t = due - minutes(rng.random_range(1.0..50.0));
                    life.push((
                        t,
                        "complaint.customer_contacted",
                        json!({"by": agent, "channel": "phone"}),
                    ));
                }
            }
            if rng.random_bool(0.25) {
                t += minutes(rng.random_range(30.0..600.0));
                life.push((
                    t,
                    "complaint.awaiting_customer",
                    json!({"by": agent, "reason": "needs receipt"}),
                ));
                t += minutes(rng.random_range(60.0..4000.0));
                life.push((t, "complaint.customer_replied", json!({"channel": "email"})));
            }
            t += minutes(rng.random_range(30.0..3000.0));
            life.push((
                t,
                "complaint.customer_contacted",
                json!({"by": agent, "channel": one(&mut rng, CHANNELS)}),
            ));
            if rng.random_bool(0.03) {
                t += minutes(rng.random_range(5.0..60.0));
                life.push((
                    t,
                    "complaint.escalated",
                    json!({"tier": 3, "reason": "customer threatens legal action", "by": agent}),
                ));
            }
            if rng.random_bool(0.8) {
                t += minutes(rng.random_range(60.0..6000.0));
                life.push((
                    t,
                    "complaint.resolved",
                    json!({"by": agent, "resolution": "refund issued"}),
                ));
                if rng.random_bool(0.1) {
                    t += minutes(rng.random_range(60.0..4000.0));
                    life.push((
                        t,
                        "complaint.reopened",
                        json!({"reason": "problem came back"}),
                    ));
                    t += minutes(rng.random_range(60.0..3000.0));
                    life.push((
                        t,
                        "complaint.resolved",
                        json!({"by": agent, "resolution": "replacement sent"}),
                    ));
                }
                if rng.random_bool(0.7) {
                    t += minutes(rng.random_range(600.0..4000.0));
                    life.push((t, "complaint.closed", json!({"by": agent})));
                }
            } else if rng.random_bool(0.2) {
                t += minutes(rng.random_range(60.0..3000.0));
                life.push((
                    t,
                    "complaint.withdrawn",
                    json!({"reason": "customer gave up"}),
                ));
            }
        }
        for (time, event_type, data) in life {
            // Lives that would run into the future are cut at now: still open.
            if time > now {
                break;
            }
            let event_id = Uuid::new_v5(
                &plaint_events::own::NAMESPACE,
                format!("demo/{id}/{event_type}/{time}").as_bytes(),
            );
            let value = json!({
                "specversion": "1.0",
                "id": event_id.to_string(),
                "source": format!("crm-{region}"),
                "type": event_type,
                "subject": id,
                "time": time.to_string(),
                "datacontenttype": "application/json",
                "data": data,
            });
            let kind = plaint_events::EventType::parse(event_type)
                .expect("demo types are valid")
                .subject_kind();
            events.push(DemoEvent {
                subject: format!("complaints.events.{region}.{kind}"),
                id: event_id.to_string(),
                time,
                bytes: serde_json::to_vec(&value).expect("json"),
            });
        }
    }
    events.sort_by_key(|e| e.time);
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_events_are_valid_ordered_and_deterministic() {
        let now: Timestamp = "2026-01-10T12:00:00Z".parse().unwrap();
        let a = generate(300, 14, 7, now);
        let b = generate(300, 14, 7, now);
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| x.bytes == y.bytes));
        assert!(a.windows(2).all(|w| w[0].time <= w[1].time));
        let limits = plaint_events::Limits::default();
        for e in &a {
            let event = plaint_events::decode(&e.bytes, now, &limits).unwrap();
            assert!(e.subject.ends_with(event.event_type().subject_kind()));
        }
        let types: std::collections::BTreeSet<&str> = a
            .iter()
            .map(|e| e.subject.rsplit('.').next().unwrap())
            .collect();
        for kind in [
            "filed",
            "acknowledged",
            "resolved",
            "reopened",
            "closed",
            "callback_promised",
        ] {
            assert!(types.contains(kind), "demo has {kind}");
        }
    }
}
