//! One test per rejection reason of the contract. Each publishes the poison message between
//! two valid events, so it also shows that a poison message does not block the messages
//! after it, and that the rejected stream keeps the original payload byte for byte.

use plaint_testkit::fixtures::{self, at};
use serde_json::{json, Value};

use crate::support::Node;

/// Given a filed complaint C-1 in region `eu`, when `payload` is published on `subject`
/// followed by a valid event, then it is rejected with `reason` (original bytes kept) and
/// the valid event after it is in the log.
async fn assert_rejected(subject: &str, payload: Vec<u8>, reason: &str) {
    let mut node = Node::new().await;
    node.start();
    node.publish("eu", &fixtures::filed("C-1", "eu", "billing", at(0)))
        .await;
    node.publish_raw(subject, payload.clone()).await;
    node.publish("eu", &fixtures::acknowledged("C-1", at(5)))
        .await;
    node.wait_for_rejected(1).await;
    let status = node.wait_for_head(2).await;
    let rejected = node.rejected().await;
    assert_eq!(rejected.len(), 1, "exactly one rejection: {rejected:?}");
    let (got_reason, detail, original_subject, original) = &rejected[0];
    assert_eq!(got_reason, reason, "detail: {detail}");
    assert!(!detail.is_empty(), "a rejection says why");
    assert_eq!(original_subject, subject);
    assert_eq!(
        original.as_ref(),
        payload.as_slice(),
        "payload preserved byte for byte"
    );
    assert_eq!(
        status["log"]["last_seq"], 2,
        "the valid event after the poison message is in"
    );
    assert_eq!(status["ingest"]["rejected"][reason], 1);
    node.stop().await;
}

fn ack_of(complaint: &str) -> Value {
    fixtures::acknowledged(complaint, at(1))
}

const ACK_SUBJECT: &str = "complaints.events.eu.acknowledged";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json() {
    assert_rejected(
        ACK_SUBJECT,
        b"{\"specversion\": \"1.0\", \"id\": ".to_vec(),
        "malformed_json",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8() {
    let mut payload = fixtures::bytes(&ack_of("C-1"));
    let at = payload.len() - 5;
    payload[at] = 0xff;
    assert_rejected(ACK_SUBJECT, payload, "invalid_utf8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large() {
    let mut event = ack_of("C-1");
    event["data"]["padding"] = Value::String("x".repeat(70 * 1024));
    assert_rejected(ACK_SUBJECT, fixtures::bytes(&event), "too_large").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_violation() {
    let mut event = ack_of("C-1");
    event["data"] = json!({"who": "nobody"});
    assert_rejected(ACK_SUBJECT, fixtures::bytes(&event), "schema_violation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_type() {
    let mut event = ack_of("C-1");
    event["type"] = "complaint.teleported".into();
    assert_rejected(
        "complaints.events.eu.teleported",
        fixtures::bytes(&event),
        "unknown_type",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_complaint() {
    assert_rejected(
        ACK_SUBJECT,
        fixtures::bytes(&ack_of("C-404")),
        "unknown_complaint",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_violation() {
    let again = fixtures::filed("C-1", "eu", "billing", at(1));
    assert_rejected(
        "complaints.events.eu.filed",
        fixtures::bytes(&again),
        "lifecycle_violation",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_duplicate() {
    // Same id as a valid event already in the log (the filed one), different content.
    let mut node = Node::new().await;
    node.start();
    let filed = fixtures::filed("C-1", "eu", "billing", at(0));
    node.publish("eu", &filed).await;
    let mut other = filed.clone();
    other["data"]["category"] = "delivery".into();
    node.publish("eu", &other).await;
    node.publish("eu", &fixtures::acknowledged("C-1", at(5)))
        .await;
    node.wait_for_rejected(1).await;
    node.wait_for_head(2).await;
    let rejected = node.rejected().await;
    assert_eq!(rejected[0].0, "conflicting_duplicate");
    assert_eq!(rejected[0].3.as_ref(), fixtures::bytes(&other).as_slice());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_region_mismatch() {
    assert_rejected(
        "complaints.events.us.acknowledged",
        fixtures::bytes(&ack_of("C-1")),
        "subject_region_mismatch",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_type_mismatch() {
    assert_rejected(
        "complaints.events.eu.resolved",
        fixtures::bytes(&ack_of("C-1")),
        "subject_type_mismatch",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_skew() {
    let future = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2);
    let event = fixtures::acknowledged("C-1", future);
    assert_rejected(ACK_SUBJECT, fixtures::bytes(&event), "time_skew").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_events_are_never_rejected_for_their_age() {
    let mut node = Node::new().await;
    node.start();
    let long_ago: jiff::Timestamp = "1999-01-04T09:00:00Z".parse().unwrap();
    node.publish("eu", &fixtures::filed("C-OLD", "eu", "billing", long_ago))
        .await;
    node.wait_for_head(1).await;
    let complaint = node
        .api("complaint", serde_json::json!({"id": "C-OLD"}))
        .await
        .unwrap();
    assert_eq!(
        complaint["history"][0]["seq"], 1,
        "the 1999 event is in the log"
    );
    assert!(node.rejected().await.is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_poison_loses_nothing_and_blocks_nothing() {
    // Few publish-ack permits: a batch's hundreds of rejections must be published in
    // windows (all at once would wait forever for a permit).
    let mut node = Node::with_config(|c| c.nats.max_ack_inflight = 64).await;
    node.start();
    // 2,000 valid events, each followed by a poison message (alternating reasons).
    let mut valid_ids = std::collections::HashSet::new();
    for window in 0..4 {
        let mut acks = Vec::new();
        for i in 0..500 {
            let n = window * 500 + i;
            let event = fixtures::filed(&format!("F-{n}"), "eu", "billing", at(0));
            valid_ids.insert(event["id"].as_str().unwrap().to_owned());
            let subject = fixtures::subject("eu", &event);
            acks.push(
                node.js
                    .publish(subject, fixtures::bytes(&event).into())
                    .await
                    .unwrap(),
            );
            let poison: Vec<u8> = if n % 2 == 0 {
                b"{not json".to_vec()
            } else {
                vec![0xff, 0xfe, b'{']
            };
            acks.push(node.js.publish(ACK_SUBJECT, poison.into()).await.unwrap());
        }
        for ack in acks {
            tokio::time::timeout(crate::support::WAIT, ack)
                .await
                .unwrap()
                .unwrap();
        }
    }
    node.wait_for_rejected(2000).await;
    let status = node.wait_for_head(2000).await;
    assert_eq!(status["ingest"]["rejected"]["malformed_json"], 1000);
    assert_eq!(status["ingest"]["rejected"]["invalid_utf8"], 1000);
    node.stop().await;
    let log = node.open_log();
    let logged: std::collections::HashSet<String> = log
        .read_range(1, u64::MAX)
        .map(|r| {
            serde_json::from_slice::<Value>(&r.unwrap().1).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .filter(|id| valid_ids.contains(id))
        .collect();
    assert_eq!(logged.len(), 2000, "every valid event is in the log");
}
