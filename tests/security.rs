//! `deploy/nats-server.conf`, proven against a real nats-server: each role can do what its
//! comment in the file says and is refused the rest.
//!
//! NATS refuses a forbidden publish or subscription by sending the client
//! `-ERR 'Permissions Violation for Publish to "<subject>"'` (or `Subscription to`) and
//! dropping the message; the connection stays up. async-nats hands that error to the event
//! callback, so each connection here forwards server errors to a channel, and a refusal is
//! proven twice: the server said so, and nothing reached the stream or the subscriber.
//! Every wait is bounded.

use std::{sync::Arc, time::Duration};

use async_nats::{
    jetstream::{self, consumer::pull},
    ConnectOptions, Event,
};
use bytes::Bytes;
use futures::StreamExt;
use plaint_testkit::{fixtures, NatsServer};
use serde_json::json;
use tokio::{sync::mpsc, time::timeout};
use tokio_util::sync::CancellationToken;

const CONFIG: &str = include_str!("../deploy/nats-server.conf");

/// Bound on every wait that is expected to succeed.
const WAIT: Duration = Duration::from_secs(30);
/// How long a refused JetStream request waits for the answer that never comes.
const NO_ANSWER: Duration = Duration::from_secs(2);
/// How long to watch for a message that must not arrive, after both ends have flushed.
const QUIET: Duration = Duration::from_millis(300);

/// The placeholder password of `user` in the deploy file (asserted to be there, so the
/// tests follow the file).
fn password(user: &str) -> String {
    let password = format!("{user}-CHANGE-ME");
    assert!(
        CONFIG.contains(&format!("user: {user}\n        password: \"{password}\"")),
        "deploy/nats-server.conf no longer has user {user} with password {password:?}"
    );
    password
}

/// One user's connection, with the server's error messages.
struct Conn {
    client: async_nats::Client,
    js: jetstream::Context,
    errors: mpsc::UnboundedReceiver<String>,
}

impl Conn {
    /// Connects as `user`; `inbox` is the private inbox prefix the deploy file gives the
    /// role (None: the shared `_INBOX`).
    async fn new(server: &NatsServer, user: &str, inbox: Option<&str>) -> Conn {
        let (tx, errors) = mpsc::unbounded_channel();
        let mut options = ConnectOptions::with_user_and_password(user.into(), password(user))
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    if let Event::ServerError(error) = event {
                        let _ = tx.send(error.to_string());
                    }
                }
            });
        if let Some(prefix) = inbox {
            options = options.custom_inbox_prefix(prefix);
        }
        let client = timeout(WAIT, options.connect(server.url()))
            .await
            .expect("connect in time")
            .unwrap_or_else(|e| panic!("{user} cannot connect: {e}"));
        let js = jetstream::ContextBuilder::new()
            .timeout(NO_ANSWER)
            .build(client.clone());
        Conn { client, js, errors }
    }

    /// Publishes `body` to JetStream and waits for the stream's ack; panics, naming the
    /// subject, if none comes in time or the publish fails.
    async fn publish_acked(
        &self,
        subject: &str,
        body: &serde_json::Value,
    ) -> jetstream::publish::PublishAck {
        timeout(WAIT, async {
            self.js
                .publish(subject.to_owned(), event_bytes(body))
                .await?
                .await
        })
        .await
        .unwrap_or_else(|_| panic!("no ack in time for a publish to {subject}"))
        .unwrap_or_else(|e| panic!("publish to {subject} refused: {e}"))
    }

    /// Waits for the server's permissions error about `what` on `subject`
    /// (`what` = "Publish" or "Subscription").
    async fn refused(&mut self, what: &str, subject: &str) {
        let needle = format!("Permissions Violation for {what} to \"{subject}\"");
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.errors.recv()).await {
                Ok(Some(error)) if error.contains(&needle) => return,
                Ok(Some(error)) => seen.push(error),
                Ok(None) | Err(_) => panic!("no `{needle}` from the server; saw {seen:?}"),
            }
        }
    }

    /// Publishes on core NATS and proves the server refused it.
    async fn publish_refused(&mut self, subject: &str) {
        self.client
            .publish(subject.to_owned(), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        self.client.flush().await.unwrap();
        self.refused("Publish", subject).await;
    }

    /// Subscribes and proves the server refused it; returns the subscription so the
    /// caller can show that nothing arrives on it.
    async fn subscribe_refused(&mut self, subject: &str) -> async_nats::Subscriber {
        let subscriber = self.client.subscribe(subject.to_owned()).await.unwrap();
        self.client.flush().await.unwrap();
        self.refused("Subscription", subject).await;
        subscriber
    }

    /// No server error at all so far (after a round trip).
    async fn no_errors(&mut self) {
        self.client.flush().await.unwrap();
        if let Ok(error) = self.errors.try_recv() {
            panic!("unexpected server error: {error}");
        }
    }
}

/// A server running the deploy file, with the contract's streams created by the plaint
/// user, as `plaint serve` does at start.
async fn server() -> (NatsServer, Conn) {
    let server = NatsServer::start_with_config(CONFIG);
    let plaint = Conn::new(&server, "plaint", None).await;
    let topology = plaint_ingest::Topology::default();
    let js = jetstream::new(plaint.client.clone());
    timeout(WAIT, plaint_ingest::ensure_streams(&js, &topology))
        .await
        .expect("streams in time")
        .expect("the plaint user may create and update the streams");
    (server, plaint)
}

async fn messages_in(plaint: &Conn, stream: &str) -> u64 {
    let mut stream = plaint.js.get_stream(stream).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// Proves nothing arrives on `subscriber`: the publisher has flushed (the server has the
/// message), the subscriber's connection has flushed (anything routed to it came before
/// the PONG), and a short extra watch for good measure.
async fn nothing_arrives(subscriber: &mut async_nats::Subscriber, receiver: &Conn) {
    receiver.client.flush().await.unwrap();
    if let Ok(Some(message)) = timeout(QUIET, subscriber.next()).await {
        panic!("a refused subscription received {:?}", message.subject);
    }
}

fn event_bytes(event: &serde_json::Value) -> Bytes {
    Bytes::from(fixtures::bytes(event))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regional_crm_publishes_only_upstream_events_of_its_own_region() {
    let (server, plaint) = server().await;
    let mut eu = Conn::new(&server, "crm-eu", Some("_INBOX_crm_eu")).await;
    let mut us = Conn::new(&server, "crm-us", Some("_INBOX_crm_us")).await;
    let filed = fixtures::filed("C-1", "eu", "billing", fixtures::at(0));

    // Allowed: its own region, an upstream kind, acked by JetStream into its private inbox.
    let ack = eu.publish_acked("complaints.events.eu.filed", &filed).await;
    assert_eq!(ack.stream, "COMPLAINTS");
    let contacted = fixtures::contacted("C-2", fixtures::at(1));
    us.publish_acked("complaints.events.us.customer_contacted", &contacted)
        .await;

    // Another region: dropped by the server, so no ack ever comes.
    let publish = eu
        .js
        .publish("complaints.events.us.filed", event_bytes(&filed))
        .await
        .unwrap();
    assert!(
        publish.await.is_err(),
        "a publish to another region must not be acked"
    );
    eu.refused("Publish", "complaints.events.us.filed").await;
    us.publish_refused("complaints.events.eu.filed").await;

    // plaint's own kinds: a CRM must not forge an SLA breach or an escalation claim.
    for kind in [
        "sla_breached",
        "escalation_raised",
        "escalation_claimed",
        "escalation_cleared",
    ] {
        eu.publish_refused(&format!("complaints.events.eu.{kind}"))
            .await;
    }
    // Anything else in the account.
    for subject in [
        "complaints.events.eu",
        "complaints.events.eu.filed.extra",
        "complaints.rejected.schema_violation",
        "complaints.alerts.sla.breached.eu",
        "complaints.escalations.4.eu",
        "complaints.api.status",
        "$SRV.PING",
        "$JS.API.STREAM.DELETE.COMPLAINTS",
        "$JS.API.STREAM.PURGE.COMPLAINTS",
        "$JS.API.CONSUMER.MSG.NEXT.COMPLAINTS.plaint-ingest",
    ] {
        eu.publish_refused(subject).await;
    }
    assert_eq!(
        messages_in(&plaint, "COMPLAINTS").await,
        2,
        "only the two allowed events"
    );
    assert_eq!(messages_in(&plaint, "COMPLAINTS_REJECTED").await, 0);
    assert_eq!(messages_in(&plaint, "COMPLAINT_ALERTS").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regional_crm_reads_nothing_not_even_other_users_inboxes() {
    let (server, plaint) = server().await;
    let mut eu = Conn::new(&server, "crm-eu", Some("_INBOX_crm_eu")).await;
    let mut snoops = Vec::new();
    for subject in [
        "complaints.>",
        "complaints.events.eu.>",
        "complaints.alerts.>",
        // plaint's pull requests are answered on `_INBOX.<id>`: that is where every
        // region's events travel to the ingester.
        "_INBOX.>",
        "_INBOX_crm_us.>",
        "$SRV.>",
        ">",
    ] {
        snoops.push(eu.subscribe_refused(subject).await);
    }
    // Events of both regions do flow past while the refused subscriptions exist.
    let consumer = plaint
        .js
        .get_stream("COMPLAINTS")
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some("probe".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let filed = fixtures::filed("C-9", "us", "billing", fixtures::at(0));
    plaint
        .publish_acked("complaints.events.us.filed", &filed)
        .await;
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(WAIT)
        .messages()
        .await
        .expect("fetch");
    let message = timeout(WAIT, batch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(message.subject.as_str(), "complaints.events.us.filed");
    plaint.client.flush().await.unwrap();
    for snoop in &mut snoops {
        nothing_arrives(snoop, &eu).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_that_forgets_its_inbox_prefix_gets_no_acks() {
    let (server, plaint) = server().await;
    // The default `_INBOX.` prefix is not the crm's: its ack subscription is refused and
    // the publish, although stored, is never confirmed. The deploy file says why.
    let mut eu = Conn::new(&server, "crm-eu", None).await;
    let filed = fixtures::filed("C-1", "eu", "billing", fixtures::at(0));
    let publish = eu
        .js
        .publish("complaints.events.eu.filed", event_bytes(&filed))
        .await
        .unwrap();
    assert!(publish.await.is_err(), "no ack without the private inbox");
    let error = timeout(WAIT, eu.errors.recv()).await.unwrap().unwrap();
    assert!(
        error.contains("Permissions Violation for Subscription to \"_INBOX."),
        "{error}"
    );
    assert_eq!(messages_in(&plaint, "COMPLAINTS").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_reads_alerts_and_nothing_else() {
    let (server, plaint) = server().await;
    let mut analyst = Conn::new(&server, "analyst", Some("_INBOX_analyst")).await;

    // Live alerts on core NATS.
    let mut live = analyst
        .client
        .subscribe("complaints.alerts.>")
        .await
        .unwrap();
    // The stream's history, through a pull consumer filtered to alerts. Created before the
    // alerts are published: creating it is a request the server answers, so the live
    // subscription above is registered by then (a client flush only writes the SUB out; a
    // publish from another connection could overtake it).
    let consumer: jetstream::consumer::PullConsumer = timeout(
        WAIT,
        analyst.js.create_consumer_on_stream(
            pull::Config {
                name: Some("analyst-1".into()),
                filter_subject: "complaints.alerts.>".into(),
                ..Default::default()
            },
            "COMPLAINT_ALERTS",
        ),
    )
    .await
    .unwrap()
    .expect("an analyst may create a consumer on COMPLAINT_ALERTS filtered to alerts");
    let alert = json!({"alert": "sla_breached", "complaint": "C-1"});
    let escalation = json!({"tier": 2, "complaint": "C-1"});
    for (subject, body) in [
        ("complaints.alerts.sla.breached.eu", &alert),
        ("complaints.escalations.2.eu", &escalation),
        ("complaints.alerts.trends.all.billing", &alert),
    ] {
        plaint.publish_acked(subject, body).await;
    }
    let first = timeout(WAIT, live.next()).await.unwrap().unwrap();
    assert_eq!(first.subject.as_str(), "complaints.alerts.sla.breached.eu");
    let second = timeout(WAIT, live.next()).await.unwrap().unwrap();
    assert_eq!(
        second.subject.as_str(),
        "complaints.alerts.trends.all.billing"
    );

    let mut batch = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let mut subjects = Vec::new();
    while let Some(message) = timeout(WAIT, batch.next()).await.unwrap() {
        let message = message.unwrap();
        subjects.push(message.subject.to_string());
        message
            .ack()
            .await
            .expect("an analyst may ack its consumer's messages");
    }
    assert_eq!(
        subjects,
        [
            "complaints.alerts.sla.breached.eu",
            "complaints.alerts.trends.all.billing"
        ],
        "alerts, and not the escalation between them"
    );
    analyst.no_errors().await;

    // Escalations share the stream but are for operators: no consumer that could see them.
    for (name, filter) in [
        ("esc", "complaints.escalations.>"),
        ("all", ""),
        ("wide", "complaints.>"),
    ] {
        let config = pull::Config {
            name: Some(name.into()),
            filter_subject: filter.into(),
            ..Default::default()
        };
        let created = analyst
            .js
            .create_consumer_on_stream(config, "COMPLAINT_ALERTS")
            .await;
        assert!(
            created.is_err(),
            "consumer {name} with filter {filter:?} must be refused"
        );
        let subject = match filter {
            "" => format!("$JS.API.CONSUMER.CREATE.COMPLAINT_ALERTS.{name}"),
            f => format!("$JS.API.CONSUMER.CREATE.COMPLAINT_ALERTS.{name}.{f}"),
        };
        analyst.refused("Publish", &subject).await;
    }
    // Nor a message fetched by sequence (the escalation is message 2), nor other streams.
    analyst
        .publish_refused("$JS.API.STREAM.MSG.GET.COMPLAINT_ALERTS")
        .await;
    analyst
        .publish_refused("$JS.API.DIRECT.GET.COMPLAINT_ALERTS")
        .await;
    let events = pull::Config {
        name: Some("events".into()),
        filter_subject: "complaints.events.>".into(),
        ..Default::default()
    };
    assert!(analyst
        .js
        .create_consumer_on_stream(events, "COMPLAINTS")
        .await
        .is_err());
    analyst
        .refused(
            "Publish",
            "$JS.API.CONSUMER.CREATE.COMPLAINTS.events.complaints.events.>",
        )
        .await;
    for subject in [
        "$JS.API.CONSUMER.MSG.NEXT.COMPLAINTS.plaint-ingest",
        "$JS.API.STREAM.INFO.COMPLAINTS",
        "$JS.API.CONSUMER.DELETE.COMPLAINT_ALERTS.analyst-1",
        "$JS.API.STREAM.PURGE.COMPLAINT_ALERTS",
    ] {
        analyst.publish_refused(subject).await;
    }

    // An analyst publishes nothing.
    for subject in [
        "complaints.alerts.sla.breached.eu",
        "complaints.events.eu.filed",
        "complaints.api.status",
        "complaints.rejected.schema_violation",
        "$SRV.PING",
    ] {
        analyst.publish_refused(subject).await;
    }
    // And subscribes to nothing but alerts and its own inbox.
    let mut snoops = Vec::new();
    for subject in [
        "complaints.events.>",
        "complaints.escalations.>",
        "complaints.rejected.>",
        "complaints.>",
        "_INBOX.>",
    ] {
        snoops.push(analyst.subscribe_refused(subject).await);
    }
    let contacted = fixtures::contacted("C-1", fixtures::at(5));
    plaint
        .publish_acked("complaints.events.eu.customer_contacted", &contacted)
        .await;
    plaint
        .client
        .publish("complaints.escalations.3.eu", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    plaint.client.flush().await.unwrap();
    for snoop in &mut snoops {
        nothing_arrives(snoop, &analyst).await;
    }
    assert_eq!(
        messages_in(&plaint, "COMPLAINT_ALERTS").await,
        4,
        "three plus one escalation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_cannot_turn_a_push_consumer_into_an_event_publisher() {
    // A push consumer delivers from inside the server to a subject its creator names, past
    // the creator's publish permissions. Aimed at an events subject, could an analyst's
    // consumer copy alerts into COMPLAINTS? nats-server 2.9 accepts such a consumer but
    // delivers nothing on that subject: neither its subscribers nor the stream capturing it
    // see a message (while the same consumer aimed at the analyst's inbox delivers). The
    // deploy file relies on that; this pins it, so a server upgrade that changes it fails
    // here.
    let (server, plaint) = server().await;
    let analyst = Conn::new(&server, "analyst", Some("_INBOX_analyst")).await;
    plaint
        .publish_acked(
            "complaints.alerts.sla.breached.eu",
            &json!({"alert": "sla_breached"}),
        )
        .await;
    let push = |name: &str, deliver_subject: &str| jetstream::consumer::push::Config {
        name: Some(name.into()),
        filter_subject: "complaints.alerts.>".into(),
        deliver_subject: deliver_subject.into(),
        ..Default::default()
    };

    // The control: push consumers work for an analyst, into its own inbox.
    let mut own = analyst
        .client
        .subscribe("_INBOX_analyst.alerts")
        .await
        .unwrap();
    analyst.client.flush().await.unwrap();
    timeout(
        WAIT,
        analyst
            .js
            .create_consumer_on_stream(push("own", "_INBOX_analyst.alerts"), "COMPLAINT_ALERTS"),
    )
    .await
    .unwrap()
    .expect("a push consumer into the analyst's inbox");
    timeout(WAIT, own.next())
        .await
        .expect("the control consumer delivers")
        .unwrap();

    // The attempt, with a subscriber on the events subjects so the consumer has interest.
    let mut watcher = plaint
        .client
        .subscribe("complaints.events.>")
        .await
        .unwrap();
    plaint.client.flush().await.unwrap();
    let created = timeout(
        WAIT,
        analyst.js.create_consumer_on_stream(
            push("sneaky", "complaints.events.eu.filed"),
            "COMPLAINT_ALERTS",
        ),
    )
    .await
    .unwrap();
    if let Ok(Some(message)) = timeout(Duration::from_secs(2), watcher.next()).await {
        panic!(
            "an analyst's push consumer published on {}",
            message.subject
        );
    }
    assert_eq!(
        messages_in(&plaint, "COMPLAINTS").await,
        0,
        "an analyst's push consumer (created: {}) injected into COMPLAINTS",
        created.is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_uses_the_api_and_publishes_no_events() {
    let (server, plaint) = server().await;
    let mut operator = Conn::new(&server, "operator", None).await;
    for subject in [
        "complaints.events.eu.filed",
        "complaints.events.eu.escalation_claimed",
        "complaints.alerts.sla.breached.eu",
        "complaints.escalations.1.eu",
        "complaints.rejected.schema_violation",
        "$JS.API.STREAM.DELETE.COMPLAINTS",
        "$JS.API.STREAM.PURGE.COMPLAINTS_REJECTED",
        "$JS.API.STREAM.MSG.DELETE.COMPLAINTS_REJECTED",
        "$JS.API.CONSUMER.CREATE.COMPLAINTS",
    ] {
        operator.publish_refused(subject).await;
    }
    let mut snoop = operator.subscribe_refused("complaints.events.>").await;
    let filed = fixtures::filed("C-1", "eu", "billing", fixtures::at(0));
    plaint
        .publish_acked("complaints.events.eu.filed", &filed)
        .await;
    nothing_arrives(&mut snoop, &operator).await;
    // Read-only access to the rejected stream (`plaint rejected list`).
    let mut rejected = operator
        .js
        .get_stream("COMPLAINTS_REJECTED")
        .await
        .expect("stream info");
    assert_eq!(rejected.info().await.unwrap().state.messages, 0);
    operator.no_errors().await;
    assert_eq!(messages_in(&plaint, "COMPLAINTS").await, 1);
}

/// plaint itself under its deploy-file user: streams, ingest (consume and ack), effects,
/// rejections, the API and service discovery, with a CRM publishing and an operator
/// asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaint_serves_under_its_own_user_end_to_end() {
    let (server, plaint) = server().await;
    let data = tempfile::tempdir().unwrap();
    let mut config = plaint_service::Config::default();
    config.nats.url = server.url();
    config.nats.user = Some("plaint".into());
    config.nats.password = Some(password("plaint"));
    config.data = data.path().to_path_buf();
    config.durability = plaint_log::Durability::Flush;
    let shutdown = CancellationToken::new();
    let serving = {
        let shutdown = shutdown.clone();
        let config = config.clone();
        tokio::spawn(async move {
            plaint_service::serve_with_clock(config, Arc::new(plaint_runner::SystemClock), shutdown)
                .await
        })
    };

    let mut operator = Conn::new(&server, "operator", None).await;
    let mut rejections = operator
        .client
        .subscribe("complaints.rejected.>")
        .await
        .unwrap();
    let mut alerts = operator
        .client
        .subscribe("complaints.alerts.>")
        .await
        .unwrap();
    operator.client.flush().await.unwrap();

    let eu = Conn::new(&server, "crm-eu", Some("_INBOX_crm_eu")).await;
    // Filed in 2024 and never answered: with the real clock its first-response SLA is long
    // breached, so plaint also has to publish an alert and its own sla.breached event.
    let filed = fixtures::filed("C-1", "eu", "billing", fixtures::at(0));
    let acknowledged = fixtures::acknowledged("C-1", fixtures::at(1));
    let unknown = fixtures::acknowledged("C-404", fixtures::at(1));
    for (subject, event) in [
        ("complaints.events.eu.filed", &filed),
        ("complaints.events.eu.acknowledged", &acknowledged),
        ("complaints.events.eu.acknowledged", &unknown),
    ] {
        eu.publish_acked(subject, event).await;
    }

    // The rejection reaches operators, published by plaint.
    let rejection = timeout(WAIT, rejections.next())
        .await
        .expect("a rejection in time")
        .unwrap();
    assert_eq!(
        rejection.subject.as_str(),
        "complaints.rejected.unknown_complaint"
    );
    // So does an SLA alert (an effect published by a projector).
    let alert = timeout(WAIT, alerts.next())
        .await
        .expect("an SLA alert in time")
        .unwrap();
    assert!(
        alert.subject.starts_with("complaints.alerts.sla."),
        "{}",
        alert.subject
    );

    // The operator's API calls are answered (the reply goes to the operator's inbox).
    let deadline = tokio::time::Instant::now() + WAIT;
    let status = loop {
        let reply = plaint_service::api::call(
            &operator.client,
            "complaints",
            "status",
            Bytes::from_static(b"{}"),
            WAIT,
        )
        .await
        .expect("the operator may call the API");
        let status: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        if status["log"]["last_seq"].as_u64().unwrap_or(0) >= 2 {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "log head stuck: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status["log"]["last_seq"].as_u64().unwrap() >= 2, "{status}");
    // Service discovery.
    let ping = timeout(
        WAIT,
        operator.client.request("$SRV.PING.plaint", Bytes::new()),
    )
    .await
    .expect("ping in time")
    .expect("the operator may discover the service");
    let ping: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["name"], "plaint");

    // Every event ingested was acknowledged: the plaint user may ack ($JS.ACK), or the
    // consumer would redeliver forever.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut consumer: jetstream::consumer::PullConsumer = plaint
            .js
            .get_consumer_from_stream("plaint-ingest", "COMPLAINTS")
            .await
            .unwrap();
        let info = consumer.info().await.unwrap();
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "unacked: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    operator.no_errors().await;

    shutdown.cancel();
    timeout(WAIT, serving)
        .await
        .expect("serve stops in time")
        .unwrap()
        .expect("serve ran without a permission problem");
}
