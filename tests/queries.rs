use bytes::Bytes;
use plaint_service::replay::ReplayFilter;
use plaint_testkit::fixtures::{self, at};
use serde_json::{json, Value};

use crate::support::Node;

/// A small history over three complaints, two regions, several types and times.
async fn history(node: &Node) -> usize {
    let events = [
        ("eu", fixtures::filed("A", "eu", "billing", at(0))),
        ("us", fixtures::filed("B", "us", "delivery", at(10))),
        ("eu", fixtures::acknowledged("A", at(20))),
        ("eu", fixtures::filed("C", "eu", "delivery", at(30))),
        ("us", fixtures::contacted("B", at(40))),
        ("eu", fixtures::resolved("A", at(50))),
        ("eu", fixtures::closed("A", at(60))),
        ("us", fixtures::resolved("B", at(70))),
        ("eu", fixtures::acknowledged("C", at(80))),
    ];
    for (region, e) in &events {
        node.publish(region, e).await;
    }
    events.len()
}

/// All pages of a replay through the running server.
async fn replay_online(node: &Node, filter: &ReplayFilter) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 1;
    loop {
        let reply = plaint_service::api::call(
            &node.client,
            "complaints",
            "replay",
            Bytes::from(
                serde_json::to_vec(&json!({"filter": filter, "start": start, "max_bytes": 600}))
                    .unwrap(),
            ),
            crate::support::WAIT,
        )
        .await
        .unwrap();
        out.extend_from_slice(&reply.body);
        match reply.next_seq {
            Some(next) => start = next,
            None => return out,
        }
    }
}

async fn replay_offline(api: &plaint_service::Api, filter: &ReplayFilter) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 1;
    loop {
        let request =
            serde_json::to_vec(&json!({"filter": filter, "start": start, "max_bytes": 600}))
                .unwrap();
        let reply = api.handle("replay", &request).await.unwrap();
        out.extend_from_slice(&reply.body);
        match reply.next_seq {
            Some(next) => start = next,
            None => return out,
        }
    }
}

fn seqs(ndjson: &[u8]) -> Vec<u64> {
    ndjson
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn filters() -> Vec<(ReplayFilter, Vec<u64>)> {
    let f = ReplayFilter::default;
    vec![
        (f(), (1..=9).collect()),
        (
            ReplayFilter {
                from_seq: Some(3),
                to_seq: Some(5),
                ..f()
            },
            vec![3, 4, 5],
        ),
        (
            ReplayFilter {
                since: Some(at(30)),
                until: Some(at(60)),
                ..f()
            },
            vec![4, 5, 6],
        ),
        (
            ReplayFilter {
                complaint: Some("A".into()),
                ..f()
            },
            vec![1, 3, 6, 7],
        ),
        (
            ReplayFilter {
                region: Some("us".into()),
                ..f()
            },
            vec![2, 5, 8],
        ),
        (
            ReplayFilter {
                types: vec!["complaint.filed".into()],
                ..f()
            },
            vec![1, 2, 4],
        ),
        (
            ReplayFilter {
                complaint: Some("A".into()),
                types: vec!["complaint.resolved".into(), "complaint.closed".into()],
                ..f()
            },
            vec![6, 7],
        ),
        (
            ReplayFilter {
                region: Some("eu".into()),
                from_seq: Some(5),
                ..f()
            },
            vec![6, 7, 9],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_filters_select_exactly_and_offline_equals_online() {
    let mut node = Node::new().await;
    node.start();
    let n = history(&node).await;
    node.wait_for_head(n as u64).await;
    let mut online = Vec::new();
    for (filter, expected) in filters() {
        let out = replay_online(&node, &filter).await;
        assert_eq!(seqs(&out), expected, "filter {filter:?}");
        online.push(out);
    }
    node.stop().await;
    let api = plaint_service::open_offline(node.config.clone())
        .await
        .unwrap();
    for ((filter, _), online) in filters().into_iter().zip(online) {
        assert_eq!(
            replay_offline(&api, &filter).await,
            online,
            "offline output equals online for {filter:?}"
        );
    }
    // Lines carry the event exactly as stored.
    let log = api.log();
    let first = replay_offline(
        &api,
        &ReplayFilter {
            from_seq: Some(1),
            to_seq: Some(1),
            ..Default::default()
        },
    )
    .await;
    let stored = log.read(1).unwrap().unwrap();
    assert_eq!(
        first,
        [b"{\"seq\":1,\"event\":".as_slice(), &stored, b"}\n"].concat()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilt_views_have_the_live_digest() {
    let mut node = Node::new().await;
    node.start();
    let n = history(&node).await;
    node.wait_for_head(n as u64).await;
    let mut live = Vec::new();
    for projector in ["complaints", "sla", "escalation", "trends"] {
        let reply = node
            .api("digest", json!({"projector": projector}))
            .await
            .unwrap();
        live.push((
            projector,
            reply["digest"].as_str().unwrap().to_owned(),
            reply["checkpoint"].as_u64().unwrap(),
        ));
    }
    let head = node.api("status", json!({})).await.unwrap()["log"]["last_seq"]
        .as_u64()
        .unwrap();
    node.stop().await;
    let log = node.open_log();
    assert_eq!(log.last_seq(), head);
    let p = plaint_service::serve_projectors(&node.config).unwrap();
    let rebuilt = [
        plaint_runner::rebuild(
            &log,
            plaint_complaints::ComplaintsProjector::new(),
            Default::default(),
            |_| {},
        )
        .await
        .unwrap(),
        plaint_runner::rebuild(&log, p.sla, Default::default(), |_| {})
            .await
            .unwrap(),
        plaint_runner::rebuild(&log, p.escalation, Default::default(), |_| {})
            .await
            .unwrap(),
        plaint_runner::rebuild(&log, p.trends, Default::default(), |_| {})
            .await
            .unwrap(),
    ];
    for ((name, digest, checkpoint), report) in live.into_iter().zip(rebuilt) {
        assert_eq!(report.projector, name);
        assert_eq!(checkpoint, head, "{name} had caught up");
        assert_eq!(
            report.digest, digest,
            "{name}: rebuild reproduces the live view"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_a_discoverable_nats_service_with_clear_errors() {
    let mut node = Node::new().await;
    node.start();
    history(&node).await;
    node.wait_for_head(9).await;
    let info = tokio::time::timeout(
        crate::support::WAIT,
        node.client.request("$SRV.INFO.plaint", Bytes::new()),
    )
    .await
    .unwrap()
    .unwrap();
    let info: Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["name"], "plaint");
    let subjects: Vec<&str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert!(subjects.contains(&"complaints.api.status"), "{subjects:?}");
    assert!(subjects.contains(&"complaints.api.replay"));
    let complaint = node.api("complaint", json!({"id": "A"})).await.unwrap();
    assert_eq!(complaint["lifecycle"], "closed");
    assert_eq!(complaint["history"].as_array().unwrap().len(), 4);
    assert_eq!(complaint["state"]["status"], "closed");
    let missing = node
        .api("complaint", json!({"id": "nope"}))
        .await
        .unwrap_err();
    assert_eq!(missing.code, 404);
    let bad = node
        .api("replay", json!({"filter": {"types": ["complaint.nope"]}}))
        .await
        .unwrap_err();
    assert_eq!(bad.code, 400);
    assert!(bad.message.contains("complaint.nope"));
    node.stop().await;
}
