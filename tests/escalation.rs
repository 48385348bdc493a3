//! Escalation: a scripted day under the default rules (money above 100 / 1,000 / 10,000
//! EUR → tier 2 / 3 / 4, critical → 2, VIP → 2, reopened twice → 2, 3 complaints of one
//! customer in 30 days → 2, a manual `complaint.escalated` at its tier, each SLA breach one
//! tier up) and the default SLA policy (24x7, first response 1 day).
//!
//! | complaint | filed (min) | facts | tier |
//! |---|---|---|---|
//! | m-150 | 0 | 150 EUR | 2 (money); resolved at 120 → cleared |
//! | m-100 | 0 | 100 EUR (not above the limit) | none |
//! | late | -1500 (imported) | first response due at -60, breached at once | 2 (sla_breach) |
//! | m-1500 | 5 | 1,500 EUR | 3 (money) |
//! | m-20000 (us) | 10 | 20,000 EUR | 4 (money) |
//! | crit | 15 | critical | 2 (severity) |
//! | vip | 20 | VIP | 2 (vip) |
//! | rep-1..3 | 25, 30, 35 | one customer | rep-3: 2 (repeat_complainant) |
//! | reo | 40 | resolved 50, reopened 60, resolved 70, reopened 80 | 2 (reopened) |
//! | man | 45 | escalated to tier 3 at 90 | 3 (manual) |
//! | combo | 50 | critical, VIP, 5,000 EUR | 3 (money 3, severity 2, vip 2) |
//!
//! Queue order: severity, breached first, nearest SLA deadline (here: first response =
//! filing + 1 day; reo's resumed one is due at 1500), money, age.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use plaint_runner::ManualClock;
use plaint_testkit::fixtures::{self, at};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{Node, WAIT};

/// A complaint.filed with the facts the rules read.
fn filed(
    id: &str,
    region: &str,
    minute: i64,
    customer: &str,
    severity: &str,
    eur: &str,
    vip: bool,
) -> Value {
    let data = json!({
        "customer_id": customer,
        "region": region,
        "category": "billing",
        "channel": "phone",
        "severity": severity,
        "amount_at_stake": {"value": eur, "currency": "EUR"},
        "vip": vip,
    });
    fixtures::envelope(Uuid::new_v4(), "complaint.filed", id, at(minute), data)
}

fn escalated(id: &str, minute: i64, tier: u8) -> Value {
    let data = json!({"tier": tier, "reason": "press enquiry", "by": "lead-1"});
    fixtures::envelope(Uuid::new_v4(), "complaint.escalated", id, at(minute), data)
}

/// Events of the given type in the log, through the API's replay.
async fn logged(node: &Node, event_type: &str) -> Result<Vec<Value>, plaint_service::ApiError> {
    let mut out = Vec::new();
    let mut start = 1;
    loop {
        let request = json!({"filter": {"types": [event_type]}, "start": start});
        let body = Bytes::from(serde_json::to_vec(&request).unwrap());
        let reply =
            plaint_service::api::call(&node.client, "complaints", "replay", body, WAIT).await?;
        for line in reply.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.push(serde_json::from_slice::<Value>(line).unwrap()["event"].clone());
        }
        match reply.next_seq {
            Some(next) => start = next,
            None => return Ok(out),
        }
    }
}

/// A raise as (complaint, tier, previous tier, region, [(rule, tier)]).
type Raise = (String, u64, Option<u64>, String, Vec<(String, u64)>);

fn raise_of(event: &Value) -> Raise {
    let data = &event["data"];
    let reasons = data["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["rule"].as_str().unwrap().to_owned(),
                r["tier"].as_u64().unwrap(),
            )
        })
        .collect();
    (
        event["subject"].as_str().unwrap().to_owned(),
        data["tier"].as_u64().unwrap(),
        data["previous_tier"].as_u64(),
        data["region"].as_str().unwrap().to_owned(),
        reasons,
    )
}

fn raise(id: &str, tier: u64, region: &str, reasons: &[(&str, u64)]) -> Raise {
    let reasons = reasons.iter().map(|(r, t)| (r.to_string(), *t)).collect();
    (id.into(), tier, None, region.into(), reasons)
}

/// Messages on `complaints.escalations.<tier>.<region>`: (msg id, subject tier, subject
/// region, raise).
async fn escalation_messages(node: &Node) -> Vec<(String, u64, String, Raise)> {
    tokio::time::timeout(WAIT, async {
        let mut out = Vec::new();
        for m in node
            .stream_messages(&node.config.topology.alerts_stream)
            .await
        {
            let subject = m.subject.to_string();
            let Some(rest) = subject.strip_prefix("complaints.escalations.") else {
                continue;
            };
            let (tier, region) = rest.split_once('.').unwrap();
            let msg_id = m.headers.get("Nats-Msg-Id").unwrap().as_str().to_owned();
            let event: Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(event["type"], "escalation.raised");
            assert_eq!(
                event["id"].as_str(),
                Some(msg_id.as_str()),
                "msg id = event id"
            );
            out.push((
                msg_id,
                tier.parse().unwrap(),
                region.to_owned(),
                raise_of(&event),
            ));
        }
        out
    })
    .await
    .expect("stream read in time")
}

/// Waits until the log holds `raises` raises and `clears` clears and the stream the raises,
/// then asserts both hold exactly the expected raises, each once.
async fn check_raises(node: &Node, expected: &[Raise], clears: usize, step: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let (raised, cleared, messages) = loop {
        let raised = logged(node, "escalation.raised").await.unwrap_or_default();
        let cleared = logged(node, "escalation.cleared").await.unwrap_or_default();
        let messages = escalation_messages(node).await;
        if raised.len() >= expected.len()
            && cleared.len() >= clears
            && messages.len() >= expected.len()
        {
            break (raised, cleared, messages);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{step}: want {} raises and {clears} clears; log has {raised:#?} and {cleared:#?}",
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    node.wait_for_head(0).await;
    let mut want = expected.to_vec();
    want.sort();
    let mut ids: Vec<&str> = raised.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), raised.len(), "{step}: raise events are unique");
    let mut got: Vec<Raise> = raised.iter().map(raise_of).collect();
    got.sort();
    assert_eq!(got, want, "{step}: escalation.raised events in the log");
    let mut msg_ids: Vec<&str> = messages.iter().map(|m| m.0.as_str()).collect();
    msg_ids.sort();
    msg_ids.dedup();
    assert_eq!(
        msg_ids.len(),
        messages.len(),
        "{step}: escalation messages are unique"
    );
    for (_, tier, region, raise) in &messages {
        assert_eq!(
            (*tier, region),
            (raise.1, &raise.3),
            "{step}: subject tier and region"
        );
    }
    let mut got: Vec<Raise> = messages.into_iter().map(|m| m.3).collect();
    got.sort();
    assert_eq!(
        got, want,
        "{step}: messages on complaints.escalations.<tier>.<region>"
    );
    assert_eq!(
        cleared.len(),
        clears,
        "{step}: escalation.cleared events {cleared:#?}"
    );
}

/// A tier's queue as (complaint, claimed by), in queue order.
async fn queue(node: &Node, tier: u8) -> Vec<(String, Option<String>)> {
    let page = node
        .api("escalation.queue", json!({"tier": tier}))
        .await
        .unwrap();
    assert_eq!(page["has_more"], false);
    let items = page["items"].as_array().unwrap();
    assert_eq!(page["tier_depth"].as_u64(), Some(items.len() as u64));
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!(item["position"].as_u64(), Some(i as u64 + 1));
            assert_eq!(item["tier"].as_u64(), Some(u64::from(tier)));
            let claimed_by = item["claimed_by"].as_str().map(str::to_owned);
            (
                item["complaint_id"].as_str().unwrap().to_owned(),
                claimed_by,
            )
        })
        .collect()
}

fn items(ids: &[&str]) -> Vec<(String, Option<String>)> {
    ids.iter().map(|id| (id.to_string(), None)).collect()
}

async fn all_queues(node: &Node) -> Vec<Value> {
    let mut out = Vec::new();
    for tier in 1..=4 {
        out.push(
            node.api("escalation.queue", json!({"tier": tier}))
                .await
                .unwrap(),
        );
    }
    out
}

async fn claim(client: async_nats::Client, by: &str) -> Result<Value, plaint_service::ApiError> {
    let request = json!({"id": "crit", "by": by, "tier": 2});
    let body = Bytes::from(serde_json::to_vec(&request).unwrap());
    let reply = plaint_service::api::call(&client, "complaints", "escalation.claim", body, WAIT);
    Ok(serde_json::from_slice(&reply.await?.body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_day_queues_claims_restart_and_rebuild() {
    let mut node = Node::new().await;
    let clock = ManualClock::new(at(0));
    node.start_with_clock(Arc::new(clock.clone()));

    let quiet = |id: &str, region: &str, minute: i64| {
        filed(
            id,
            region,
            minute,
            &format!("cust-{id}"),
            "medium",
            "20",
            false,
        )
    };
    let script: Vec<(i64, &str, Value)> = vec![
        (
            0,
            "eu",
            filed("m-150", "eu", 0, "cust-m-150", "medium", "150", false),
        ),
        (
            0,
            "eu",
            filed("m-100", "eu", 0, "cust-m-100", "medium", "100", false),
        ),
        (0, "eu", quiet("late", "eu", -1500)),
        (
            5,
            "eu",
            filed("m-1500", "eu", 5, "cust-m-1500", "medium", "1500", false),
        ),
        (
            10,
            "us",
            filed(
                "m-20000",
                "us",
                10,
                "cust-m-20000",
                "medium",
                "20000",
                false,
            ),
        ),
        (
            15,
            "eu",
            filed("crit", "eu", 15, "cust-crit", "critical", "20", false),
        ),
        (
            20,
            "eu",
            filed("vip", "eu", 20, "cust-vip", "medium", "50", true),
        ),
        (
            25,
            "eu",
            filed("rep-1", "eu", 25, "cust-rep", "low", "20", false),
        ),
        (
            30,
            "eu",
            filed("rep-2", "eu", 30, "cust-rep", "low", "20", false),
        ),
        (
            35,
            "eu",
            filed("rep-3", "eu", 35, "cust-rep", "medium", "20", false),
        ),
        (40, "eu", quiet("reo", "eu", 40)),
        (45, "eu", quiet("man", "eu", 45)),
        (
            50,
            "eu",
            filed("combo", "eu", 50, "cust-combo", "critical", "5000", true),
        ),
        (50, "eu", fixtures::resolved("reo", at(50))),
        (60, "eu", fixtures::reopened("reo", at(60))),
        (70, "eu", fixtures::resolved("reo", at(70))),
        (80, "eu", fixtures::reopened("reo", at(80))),
        (90, "eu", escalated("man", 90, 3)),
    ];
    for (minute, region, event) in &script {
        clock.set(at(*minute));
        node.publish_applied(region, event).await;
    }

    let mut raises = vec![
        raise("late", 2, "eu", &[("sla_breach", 2)]),
        raise("m-150", 2, "eu", &[("money", 2)]),
        raise("m-1500", 3, "eu", &[("money", 3)]),
        raise("m-20000", 4, "us", &[("money", 4)]),
        raise("crit", 2, "eu", &[("severity", 2)]),
        raise("vip", 2, "eu", &[("vip", 2)]),
        raise("rep-3", 2, "eu", &[("repeat_complainant", 2)]),
        raise("reo", 2, "eu", &[("reopened", 2)]),
        raise("man", 3, "eu", &[("manual", 3)]),
        raise(
            "combo",
            3,
            "eu",
            &[("money", 3), ("severity", 2), ("vip", 2)],
        ),
    ];
    check_raises(&node, &raises, 0, "after the morning").await;
    assert_eq!(queue(&node, 1).await, items(&[]));
    let tier2 = ["crit", "late", "m-150", "vip", "rep-3", "reo"];
    assert_eq!(queue(&node, 2).await, items(&tier2));
    assert_eq!(queue(&node, 3).await, items(&["combo", "m-1500", "man"]));
    assert_eq!(queue(&node, 4).await, items(&["m-20000"]));
    let late = node
        .api(
            "escalation.queue",
            json!({"tier": 2, "reason": "sla_breach"}),
        )
        .await;
    let late = late.unwrap();
    assert_eq!(late["items"][0]["complaint_id"], "late");
    assert_eq!(late["items"][0]["breached_since"], at(-60).to_string());
    assert_eq!(late["items"].as_array().unwrap().len(), 1);

    // Two operators claim crit at the same moment, from two tasks: one wins.
    clock.set(at(100));
    let ana = tokio::spawn(claim(node.client.clone(), "ana"));
    let ben = tokio::spawn(claim(node.client.clone(), "ben"));
    let (ana, ben) = tokio::time::timeout(WAIT, async { (ana.await.unwrap(), ben.await.unwrap()) })
        .await
        .expect("claims answered");
    let (winner, loser, won, lost) = match (ana, ben) {
        (Ok(won), Err(lost)) => ("ana", "ben", won, lost),
        (Err(lost), Ok(won)) => ("ben", "ana", won, lost),
        other => panic!("exactly one claim must succeed: {other:?}"),
    };
    assert_eq!(won["event_type"], "escalation.claimed", "{won}");
    assert_eq!(won["already_applied"], false);
    assert_eq!(lost.code, 409, "{lost:?}");
    assert!(
        lost.message
            .contains(&format!("already claimed by {winner}")),
        "{lost:?}"
    );
    // The claim is in the log; wait until the views applied it.
    node.wait_for_head(0).await;
    let mut tier2_claimed = items(&tier2);
    tier2_claimed[0].1 = Some(winner.to_owned());
    assert_eq!(queue(&node, 2).await, tier2_claimed);

    // The loser cannot release it; the holder can reassign it.
    let request = json!({"id": "crit", "by": loser, "reason": "not mine"});
    let err = node.api("escalation.release", request).await.unwrap_err();
    assert_eq!(err.code, 409, "{err:?}");
    let want = format!("claimed by {winner}, not by {loser}; only the holder can release it");
    assert!(err.message.contains(&want), "{err:?}");
    let moved = node
        .api("escalation.reassign", json!({"id": "crit", "to": "cleo"}))
        .await;
    let moved = moved.unwrap();
    assert_eq!(moved["event_type"], "escalation.claimed", "{moved}");
    let mut history = Value::Null;
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        history = node
            .api("escalation.history", json!({"id": "crit"}))
            .await
            .unwrap();
        if history["current"]["claimed_by"] == "cleo" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(history["current"]["claimed_by"], "cleo", "{history}");
    tier2_claimed[0].1 = Some("cleo".to_owned());
    assert_eq!(queue(&node, 2).await, tier2_claimed);
    let claims = logged(&node, "escalation.claimed").await.unwrap();
    assert_eq!(
        claims.len(),
        2,
        "the winner's claim and the reassignment: {claims:#?}"
    );
    assert_eq!(claims[1]["data"]["reassigned_from"], winner);

    // A restart in the middle of the day changes nothing.
    node.wait_for_head(0).await;
    let queues_before = all_queues(&node).await;
    let digest_before = node
        .api("digest", json!({"projector": "escalation"}))
        .await
        .unwrap();
    node.stop().await;
    node.start_with_clock(Arc::new(clock.clone()));
    node.wait_for_head(0).await;
    assert_eq!(
        all_queues(&node).await,
        queues_before,
        "queues after the restart"
    );
    let digest_after = node
        .api("digest", json!({"projector": "escalation"}))
        .await
        .unwrap();
    assert_eq!(digest_after, digest_before);
    check_raises(&node, &raises, 0, "after the restart").await;

    // A resolved complaint leaves its queue.
    clock.set(at(120));
    node.publish_applied("eu", &fixtures::resolved("m-150", at(120)))
        .await;
    check_raises(&node, &raises, 1, "after m-150 was resolved").await;
    let cleared = logged(&node, "escalation.cleared").await.unwrap();
    assert_eq!(
        (
            cleared[0]["subject"].as_str(),
            &cleared[0]["data"]["reason"]
        ),
        (Some("m-150"), &json!("resolved"))
    );
    let mut tier2_claimed: Vec<_> = tier2_claimed
        .into_iter()
        .filter(|(id, _)| id != "m-150")
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    while queue(&node, 2).await != tier2_claimed && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(queue(&node, 2).await, tier2_claimed);
    assert_eq!(queue(&node, 3).await, items(&["combo", "m-1500", "man"]));
    assert_eq!(queue(&node, 4).await, items(&["m-20000"]));

    // A manual escalation moves vip up from tier 2 to 4 (previous tier recorded).
    clock.set(at(130));
    node.publish_applied("eu", &escalated("vip", 130, 4)).await;
    raises.push((
        "vip".into(),
        4,
        Some(2),
        "eu".into(),
        vec![("vip".into(), 2), ("manual".into(), 4)],
    ));
    check_raises(&node, &raises, 1, "after vip was escalated").await;
    tier2_claimed.retain(|(id, _)| id != "vip");
    assert_eq!(queue(&node, 2).await, tier2_claimed);
    // Tier 4: both medium, not breached; m-20000's deadline (10 + 1 day) is nearer.
    assert_eq!(queue(&node, 4).await, items(&["m-20000", "vip"]));
    let stats = node.api("escalation.stats", json!({})).await.unwrap();
    let depths: Vec<u64> = stats["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["depth"].as_u64().unwrap())
        .collect();
    assert_eq!(depths, vec![0, 4, 3, 2], "{stats}");

    // Rebuild: the view replayed from the log equals the live one.
    node.wait_for_head(0).await;
    let live = node
        .api("digest", json!({"projector": "escalation"}))
        .await
        .unwrap();
    node.stop().await;
    let log = node.open_log();
    assert_eq!(live["checkpoint"].as_u64(), Some(log.last_seq()));
    let fresh = plaint_service::serve_projectors(&node.config)
        .unwrap()
        .escalation;
    let rebuilt = plaint_runner::rebuild(&log, fresh, Default::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(
        Some(rebuilt.digest.as_str()),
        live["digest"].as_str(),
        "rebuild = live view"
    );
}
