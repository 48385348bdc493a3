//! What `plaint serve` writes to its log at INFO and above: never complaint text, customer
//! ids or secrets (style guide, "Observability").
//!
//! The capture: a `tracing` subscriber writing into a buffer, made the default dispatcher of
//! a current-thread runtime's own threads only: the thread that runs `block_on` (where
//! every `tokio::spawn`ed task of that runtime runs) and, through `on_thread_start`, the
//! runtime's blocking-pool threads (`spawn_blocking`: opening the log, sled commits). Tests
//! running in parallel on other threads neither write into this buffer nor lose their own
//! output. The tests first prove the capture works (known INFO lines are there), so an
//! empty buffer cannot pass for a clean one.

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use bytes::Bytes;
use plaint_testkit::{fixtures, NatsServer};
use serde_json::{json, Value};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

/// Distinctive strings that must never reach INFO+ output.
const NATS_PASSWORD: &str = "pw-LOGLEAK-7f3a9c";
const CUSTOMER_ID: &str = "CUST-LOGLEAK-4417";
const SUMMARY: &str = "SUMMARY-LOGLEAK the kettle set the curtains on fire";
const NOTE: &str = "NOTE-LOGLEAK promised a refund on the phone";
const RESOLUTION: &str = "RESOLUTION-LOGLEAK refunded 120 EUR";
const REJECTED_TEXT: &str = "REJECTED-LOGLEAK";

/// The buffer the subscriber writes into.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// tracing-core caches each callsite's interest. While exactly one `Dispatch` is
/// registered in the process, it asks the *current thread's* default dispatcher instead of
/// that one (tokio-rs/tracing#3611, #2874): the capture's own `Dispatch::new` (which runs
/// before the capture is installed) or a serve in a parallel test then cached `never` for
/// callsites such as "ingest consuming", and the capture missed their lines now and then.
/// A second dispatch, registered for the whole test binary, makes tracing take its general
/// path, which asks every registered dispatch.
fn register_a_second_dispatch() {
    static SECOND: OnceLock<tracing::Dispatch> = OnceLock::new();
    SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
}

/// Runs `scenario` on a fresh current-thread runtime with every INFO+ event of its threads
/// captured; returns the captured text.
fn capture_info<F: std::future::Future<Output = ()>>(scenario: impl FnOnce() -> F) -> String {
    register_a_second_dispatch();
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start({
            let dispatch = dispatch.clone();
            // A blocking-pool thread serves this runtime only and ends with it, so its
            // default dispatcher may stay set for the thread's whole life.
            move || std::mem::forget(tracing::dispatcher::set_default(&dispatch))
        })
        .build()
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || runtime.block_on(scenario()));
    runtime.shutdown_timeout(WAIT);
    captured.text()
}

/// A nats-server that only lets user `plaint` in, with [`NATS_PASSWORD`].
fn server_with_password() -> NatsServer {
    NatsServer::start_with_config(&format!(
        "authorization {{\n  users: [\n    {{ user: plaint, password: \"{NATS_PASSWORD}\" }}\n  ]\n}}\n"
    ))
}

async fn connect(server: &NatsServer) -> async_nats::Client {
    let options =
        async_nats::ConnectOptions::with_user_and_password("plaint".into(), NATS_PASSWORD.into());
    timeout(WAIT, options.connect(server.url()))
        .await
        .unwrap()
        .unwrap()
}

fn event(event_type: &str, complaint: &str, minutes: i64, data: Value) -> Value {
    fixtures::envelope(
        Uuid::new_v4(),
        event_type,
        complaint,
        fixtures::at(minutes),
        data,
    )
}

/// Publishes on the event's contract subject and waits for the ack.
async fn publish(js: &async_nats::jetstream::Context, subject: &str, event: &Value) {
    timeout(WAIT, async {
        let payload = Bytes::from(fixtures::bytes(event));
        js.publish(subject.to_owned(), payload)
            .await
            .unwrap()
            .await
            .unwrap()
    })
    .await
    .expect("publish acked in time");
}

async fn api(client: &async_nats::Client, command: &str, request: Value) -> Option<Value> {
    let request = Bytes::from(serde_json::to_vec(&request).unwrap());
    let reply = plaint_service::api::call(client, "complaints", command, request, WAIT)
        .await
        .ok()?;
    Some(serde_json::from_slice(&reply.body).unwrap_or(Value::Null))
}

/// `plaint serve` with a NATS password, fed a complaint's whole life plus rejections, asked
/// about it through the API, then stopped.
async fn serve_a_complaint_life(server: &NatsServer, config: plaint_service::Config) {
    let client = connect(server).await;
    let js = async_nats::jetstream::new(client.clone());
    timeout(WAIT, plaint_ingest::ensure_streams(&js, &config.topology))
        .await
        .unwrap()
        .unwrap();
    let shutdown = CancellationToken::new();
    // The real clock: the 2024 complaint is long past its SLA deadlines, so the projectors
    // also breach, alert and escalate, and those paths log too.
    let serving = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let clock = Arc::new(plaint_runner::SystemClock);
            plaint_service::serve_with_clock(config, clock, shutdown).await
        }
    });

    let filed = event(
        "complaint.filed",
        "C-LOG-1",
        0,
        json!({
            "customer_id": CUSTOMER_ID,
            "region": "eu",
            "category": "billing",
            "channel": "email",
            "severity": "critical",
            "amount_at_stake": {"value": "120.00", "currency": "EUR"},
            "summary": SUMMARY,
            "tags": [CUSTOMER_ID],
            "vip": true,
        }),
    );
    let contacted = event(
        "complaint.customer_contacted",
        "C-LOG-1",
        5,
        json!({"by": "agent-1", "channel": "phone", "note": NOTE}),
    );
    let resolved = event(
        "complaint.resolved",
        "C-LOG-1",
        10,
        json!({"by": "agent-1", "resolution": RESOLUTION}),
    );
    publish(&js, "complaints.events.eu.filed", &filed).await;
    publish(&js, "complaints.events.eu.customer_contacted", &contacted).await;
    publish(&js, "complaints.events.eu.resolved", &resolved).await;
    // Rejections quote input in their detail: an unknown complaint, a bad enum value, and
    // bytes that are not JSON at all.
    let unknown = event(
        "complaint.customer_contacted",
        "C-LOG-404",
        5,
        json!({"by": "agent-1", "channel": "phone", "note": REJECTED_TEXT}),
    );
    let bad_channel = event(
        "complaint.customer_replied",
        "C-LOG-1",
        6,
        json!({ "channel": REJECTED_TEXT }),
    );
    publish(&js, "complaints.events.eu.customer_contacted", &unknown).await;
    publish(&js, "complaints.events.eu.customer_replied", &bad_channel).await;
    timeout(WAIT, async {
        let payload = Bytes::from(format!("{{\"summary\": \"{REJECTED_TEXT}"));
        js.publish("complaints.events.eu.filed", payload)
            .await
            .unwrap()
            .await
            .unwrap()
    })
    .await
    .unwrap();

    // Wait until all three valid events are in the log and every message was handled.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // The API answers once serve has started it.
        let status = api(&client, "status", json!({})).await.unwrap_or_default();
        let head = status["log"]["last_seq"].as_u64().unwrap_or(0);
        let mut rejected = js.get_stream("COMPLAINTS_REJECTED").await.unwrap();
        let rejected = rejected.info().await.unwrap().state.messages;
        if head >= 3 && rejected >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck: {status}, rejected {rejected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Queries whose answers hold the customer data.
    let complaint = api(&client, "complaint", json!({"id": "C-LOG-1"}))
        .await
        .unwrap();
    assert!(
        complaint.to_string().contains(CUSTOMER_ID),
        "the API does answer: {complaint}"
    );
    api(&client, "replay", json!({"filter": {}, "start": 1}))
        .await
        .unwrap();

    shutdown.cancel();
    timeout(WAIT, serving)
        .await
        .expect("serve stops in time")
        .unwrap()
        .expect("serve");
}

fn assert_clean(logs: &str, secrets: &[&str]) {
    for secret in secrets {
        let leaks: Vec<&str> = logs.lines().filter(|line| line.contains(secret)).collect();
        assert!(
            leaks.is_empty(),
            "{secret:?} logged at INFO+:\n{}",
            leaks.join("\n")
        );
    }
}

#[test]
fn info_logs_carry_no_customer_data_text_or_password() {
    let server = server_with_password();
    let data = tempfile::tempdir().unwrap();
    let mut config = plaint_service::Config::default();
    config.nats.url = server.url();
    config.nats.user = Some("plaint".into());
    config.nats.password = Some(NATS_PASSWORD.into());
    config.data = data.path().to_path_buf();
    config.durability = plaint_log::Durability::Flush;

    let logs = capture_info(|| serve_a_complaint_life(&server, config));

    // The capture saw the service run: spawned tasks, the blocking pool and shutdown.
    for expected in [
        "connecting to NATS",
        "log opened",
        "plaint serving",
        "ingest consuming",
        "API serving",
        "stopped",
    ] {
        assert!(
            logs.contains(expected),
            "no {expected:?} line captured; got:\n{logs}"
        );
    }
    assert!(
        logs.contains("user/password"),
        "the kind of authentication is logged:\n{logs}"
    );
    assert_clean(
        &logs,
        &[
            NATS_PASSWORD,
            CUSTOMER_ID,
            SUMMARY,
            "SUMMARY-LOGLEAK",
            NOTE,
            RESOLUTION,
            REJECTED_TEXT,
        ],
    );
}

/// Regression: a URL of the form `nats://user:password@host` was logged verbatim at INFO
/// ("connecting to NATS url=..."), password included, and its credentials were not used.
#[test]
fn a_password_in_the_nats_url_is_used_and_not_logged() {
    let server = server_with_password();
    let nats = plaint_service::config::NatsConfig {
        url: format!("nats://plaint:{NATS_PASSWORD}@127.0.0.1:{}", server.port()),
        ..Default::default()
    };
    let logs = capture_info(|| async {
        // With retry_on_initial_connect, connect returns a client at once and keeps trying.
        let client = timeout(WAIT, plaint_service::nats::connect(&nats))
            .await
            .unwrap()
            .unwrap();
        drop(client);
    });
    assert!(
        logs.contains("connecting to NATS"),
        "the capture works:\n{logs}"
    );
    let leaked = logs.lines().any(|line| line.contains(NATS_PASSWORD));
    assert!(!leaked, "the URL's password must not be logged:\n{logs}");
}
