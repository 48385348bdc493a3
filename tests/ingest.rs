use std::collections::HashSet;

use plaint_testkit::fixtures::{self, at};
use serde_json::Value;

use crate::support::Node;

fn stored(log: &plaint_log::Log) -> Vec<(u64, Value)> {
    log.read_range(1, u64::MAX)
        .map(|r| {
            let (seq, bytes) = r.unwrap();
            (seq, serde_json::from_slice(&bytes).unwrap())
        })
        .collect()
}

/// Publishes each (region, event) on its contract subject, with a window of 1,000
/// outstanding acks (the context allows 5,000 before it waits for acks that are only
/// awaited later); returns the stream sequence of each.
async fn publish_in_windows(node: &Node, events: &[(&str, Value)]) -> Vec<u64> {
    let mut stream_order = Vec::new();
    for window in events.chunks(1000) {
        let mut acks = Vec::new();
        for (region, event) in window {
            let subject = fixtures::subject(region, event);
            acks.push(
                node.js
                    .publish(subject, fixtures::bytes(event).into())
                    .await
                    .unwrap(),
            );
        }
        for ack in acks {
            stream_order.push(ack.await.unwrap().sequence);
        }
    }
    stream_order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_arrive_once_in_publish_order_gapless() {
    let mut node = Node::new().await;
    node.start();
    // 2,500 complaints × 4 events, published concurrently in a window: JetStream orders
    // them, and the log must keep exactly that order.
    let mut published = Vec::new();
    for i in 0..2500 {
        let id = format!("C-{i}");
        published.push(("eu", fixtures::filed(&id, "eu", "billing", at(0))));
        published.push(("eu", fixtures::acknowledged(&id, at(1))));
        published.push(("eu", fixtures::contacted(&id, at(2))));
        published.push(("eu", fixtures::resolved(&id, at(3))));
    }
    let stream_order = publish_in_windows(&node, &published).await;
    node.wait_for_head(10_000).await;
    node.stop().await;
    let log = node.open_log();
    let entries = stored(&log);
    assert_eq!(entries.len(), 10_000);
    for (i, (seq, event)) in entries.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1, "gapless from 1");
        // Publish order = JetStream stream order, since each publish was sent in turn.
        assert_eq!(
            event["id"], published[i].1["id"],
            "log order is publish order at {seq}"
        );
    }
    assert!(stream_order.windows(2).all(|w| w[0] < w[1]));
    assert!(log.verify(|_| {}).unwrap().problem.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_twice_and_a_full_redelivery_are_no_ops() {
    let mut node = Node::new().await;
    node.start();
    let filed = fixtures::filed("C-1", "eu", "billing", at(0));
    let ack = fixtures::acknowledged("C-1", at(1));
    // Published without Nats-Msg-Id, so JetStream stores both copies and delivers both.
    node.publish("eu", &filed).await;
    node.publish("eu", &filed).await;
    node.publish("eu", &ack).await;
    node.publish("eu", &ack).await;
    let status = node.wait_for_head(2).await;
    assert_eq!(status["ingest"]["duplicates"], 2);
    node.stop().await;

    // Force JetStream to redeliver everything: delete the durable consumer; serve recreates
    // it at the start of the stream.
    node.js
        .delete_consumer_from_stream("plaint-ingest", "COMPLAINTS")
        .await
        .unwrap();
    node.start();
    node.publish("eu", &fixtures::contacted("C-1", at(2))).await;
    let status = node.wait_for_head(3).await;
    assert_eq!(
        status["ingest"]["duplicates"], 4,
        "all four earlier messages came back as duplicates"
    );
    node.stop().await;
    let log = node.open_log();
    let entries = stored(&log);
    assert_eq!(entries.len(), 3);
    assert!(
        node.rejected().await.is_empty(),
        "duplicates are not rejections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_id_with_other_content_is_rejected_and_the_original_stays() {
    let mut node = Node::new().await;
    node.start();
    let filed = fixtures::filed("C-1", "eu", "billing", at(0));
    let mut changed = filed.clone();
    changed["data"]["severity"] = "critical".into();
    node.publish("eu", &filed).await;
    node.publish("eu", &changed).await;
    node.wait_for_rejected(1).await;
    let rejected = node.rejected().await;
    assert_eq!(rejected[0].0, "conflicting_duplicate");
    assert_eq!(rejected[0].3.as_ref(), fixtures::bytes(&changed).as_slice());
    node.stop().await;
    let log = node.open_log();
    let entries = stored(&log);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].1["data"]["severity"], "medium");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_restart_mid_stream_loses_nothing_and_doubles_nothing() {
    let mut node = Node::new().await;
    node.start();
    let mut ids = HashSet::new();
    let mut publish_range = |from: usize, to: usize| {
        let mut events = Vec::new();
        for i in from..to {
            let e = fixtures::filed(&format!("C-{i}"), "eu", "billing", at(0));
            ids.insert(e["id"].as_str().unwrap().to_owned());
            events.push(e);
        }
        events
    };
    let first = publish_range(0, 3000);
    let second = publish_range(3000, 6000);
    // Publish the first half while serving, stop in the middle of the flow, publish the
    // rest while stopped, restart.
    let publisher = {
        let js = node.js.clone();
        tokio::spawn(async move {
            for e in first {
                js.publish(fixtures::subject("eu", &e), fixtures::bytes(&e).into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        })
    };
    node.wait_for_head(500).await;
    node.stop().await;
    publisher.await.unwrap();
    let head_at_stop = node.open_log().last_seq();
    for e in &second {
        node.publish("eu", e).await;
    }
    // Reopening above took sled's lock; wait for it to be released by dropping the log.
    node.start();
    let status = node.wait_for_head(6000).await;
    assert!(head_at_stop >= 500);
    let complaints = status["projectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "complaints")
        .unwrap();
    assert_eq!(complaints["checkpoint"], 6000);
    assert_eq!(
        status["complaints"]["total"], 6000,
        "each complaint applied once"
    );
    node.stop().await;
    let log = node.open_log();
    let entries = stored(&log);
    assert_eq!(entries.len(), 6000);
    let logged: HashSet<String> = entries
        .iter()
        .map(|(_, e)| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(logged, ids);
    // The projector resumed from its checkpoint: its view equals a fresh rebuild.
    let (live, _) = plaint_runner::view_digest(&log, "complaints").unwrap();
    let rebuilt = plaint_runner::rebuild(
        &log,
        plaint_complaints::ComplaintsProjector::new(),
        Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(live, rebuilt.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_data_directory_behind_an_old_consumer_gets_the_whole_stream() {
    let mut node = Node::new().await;
    node.start();
    node.publish("eu", &fixtures::filed("C-1", "eu", "billing", at(0)))
        .await;
    node.publish("eu", &fixtures::acknowledged("C-1", at(1)))
        .await;
    node.wait_for_head(2).await;
    node.stop().await;
    // The operator starts over with an empty data directory; the consumer has acked both.
    let fresh = tempfile::tempdir().unwrap();
    node.config.data = fresh.path().to_path_buf();
    node.start();
    node.publish("eu", &fixtures::contacted("C-1", at(2))).await;
    let status = node.wait_for_head(3).await;
    assert_eq!(
        status["ingest"]["appended"], 3,
        "history replayed into the new log"
    );
    node.stop().await;
    let entries = stored(&node.open_log());
    let kinds: Vec<(u64, &str, &str)> = entries
        .iter()
        .map(|(seq, e)| {
            (
                *seq,
                e["type"].as_str().unwrap_or("?"),
                e["id"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    // Printed in full if it fails: it failed once under load (count not 3) and did not
    // reproduce since.
    assert_eq!(entries.len(), 3, "entries after reopen: {kinds:?}");
}

/// While a backlog waits in the stream the log holds the stream only up to the last
/// message read (`Through` its store time), which holds projectors' deadlines back; once
/// nothing waits, it is `Complete`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_input_watermark_follows_an_ingest_backlog() {
    use plaint_log::InputWatermark;
    let node = Node::new().await;
    let published_from = plaint_events::Timestamp::now();
    let events: Vec<(&str, Value)> = (0..3000)
        .map(|i| {
            (
                "eu",
                fixtures::filed(&format!("C-{i}"), "eu", "billing", at(0)),
            )
        })
        .collect();
    publish_in_windows(&node, &events).await;
    let published_until = plaint_events::Timestamp::now();

    let log = node.open_log();
    let ingester = plaint_ingest::Ingester::new(
        log.clone(),
        node.js.clone(),
        node.config.topology.clone(),
        plaint_ingest::IngestOptions {
            batch_size: 100,
            ..node.config.ingest.options()
        },
    );
    assert_eq!(log.input_watermark(), InputWatermark::Unknown);
    let mut changes = log.subscribe_input_watermark();
    let watching = tokio::spawn(async move {
        let mut seen = Vec::new();
        while changes.changed().await.is_ok() {
            let watermark = *changes.borrow_and_update();
            seen.push(watermark);
            if watermark == InputWatermark::Complete {
                break;
            }
        }
        seen
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(ingester.run(stop.clone()));
    let seen = tokio::time::timeout(std::time::Duration::from_secs(60), watching)
        .await
        .expect("the backlog is read to its end")
        .unwrap();
    stop.cancel();
    running.await.unwrap().unwrap();

    assert_eq!(log.last_seq(), 3000);
    assert_eq!(seen.last(), Some(&InputWatermark::Complete));
    let behind: Vec<_> = seen
        .iter()
        .filter_map(|w| match w {
            InputWatermark::Through(t) => Some(*t),
            _ => None,
        })
        .collect();
    assert!(!behind.is_empty(), "a 30-batch backlog is seen: {seen:?}");
    assert!(
        behind.windows(2).all(|w| w[0] <= w[1]),
        "it only moves forward: {behind:?}"
    );
    // JetStream's store time comes from the server's clock (the same machine here).
    let slack = jiff::SignedDuration::from_secs(1);
    assert!(
        behind
            .iter()
            .all(|t| *t >= published_from - slack && *t <= published_until + slack),
        "store times of the published messages: {behind:?}"
    );
}
