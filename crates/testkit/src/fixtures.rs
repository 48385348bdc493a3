//! Contract-shaped events for tests.

use jiff::Timestamp;
use serde_json::{json, Value};
use uuid::Uuid;

/// A CloudEvents envelope with the given type, complaint and data.
pub fn envelope(
    id: Uuid,
    event_type: &str,
    complaint: &str,
    time: Timestamp,
    data: Value,
) -> Value {
    json!({
        "specversion": "1.0",
        "id": id.to_string(),
        "source": "crm-test",
        "type": event_type,
        "subject": complaint,
        "time": time.to_string(),
        "datacontenttype": "application/json",
        "data": data,
    })
}

pub fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("json")
}

/// A fixed, readable point in time: 2024-03-04 (a Monday) 09:00 UTC plus `minutes`.
pub fn at(minutes: i64) -> Timestamp {
    let base: Timestamp = "2024-03-04T09:00:00Z".parse().unwrap();
    base.checked_add(jiff::SignedDuration::from_mins(minutes))
        .unwrap()
}

pub fn filed(complaint: &str, region: &str, category: &str, time: Timestamp) -> Value {
    envelope(
        Uuid::new_v4(),
        "complaint.filed",
        complaint,
        time,
        json!({
            "customer_id": format!("cust-{complaint}"),
            "region": region,
            "category": category,
            "channel": "email",
            "severity": "medium",
            "amount_at_stake": {"value": "20.00", "currency": "EUR"},
            "summary": "The parcel arrived broken.",
            "tags": ["vendor:acme"],
        }),
    )
}

pub fn acknowledged(complaint: &str, time: Timestamp) -> Value {
    envelope(
        Uuid::new_v4(),
        "complaint.acknowledged",
        complaint,
        time,
        json!({"by": "agent-1"}),
    )
}

pub fn contacted(complaint: &str, time: Timestamp) -> Value {
    envelope(
        Uuid::new_v4(),
        "complaint.customer_contacted",
        complaint,
        time,
        json!({"by": "agent-1", "channel": "phone"}),
    )
}

pub fn resolved(complaint: &str, time: Timestamp) -> Value {
    envelope(
        Uuid::new_v4(),
        "complaint.resolved",
        complaint,
        time,
        json!({"by": "agent-1", "resolution": "refund"}),
    )
}

pub fn reopened(complaint: &str, time: Timestamp) -> Value {
    envelope(
        Uuid::new_v4(),
        "complaint.reopened",
        complaint,
        time,
        json!({"reason": "not fixed"}),
    )
}

pub fn closed(complaint: &str, time: Timestamp) -> Value {
    envelope(
        Uuid::new_v4(),
        "complaint.closed",
        complaint,
        time,
        json!({}),
    )
}

/// The subject an event belongs on: `complaints.events.<region>.<kind>`.
pub fn subject(region: &str, event: &Value) -> String {
    let t = event["type"].as_str().unwrap();
    let kind = plaint_events::EventType::parse(t)
        .map(|t| t.subject_kind())
        .unwrap_or("unknown");
    format!("complaints.events.{region}.{kind}")
}
