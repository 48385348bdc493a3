use std::{path::PathBuf, sync::Arc, time::Duration};

use async_nats::jetstream;
use bytes::Bytes;
use plaint_runner::{Clock, SystemClock};
use plaint_service::Config;
use plaint_testkit::NatsServer;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Every wait in a test is bounded by this.
pub const WAIT: Duration = Duration::from_secs(30);

/// A nats-server plus a data directory, and `plaint serve` running in-process when started.
#[allow(dead_code)]
pub struct Node {
    pub server: NatsServer,
    pub data: tempfile::TempDir,
    pub config: Config,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    serving: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Node {
    pub async fn new() -> Node {
        Self::with_config(|_| {}).await
    }

    pub async fn with_config(adjust: impl FnOnce(&mut Config)) -> Node {
        let server = NatsServer::start();
        let data = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.nats.url = server.url();
        config.data = data.path().to_path_buf();
        // Tests run on a shared CI machine; a power-cut guarantee adds nothing here.
        config.durability = plaint_log::Durability::Flush;
        adjust(&mut config);
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = jetstream::new(client.clone());
        plaint_ingest::ensure_streams(&js, &config.topology)
            .await
            .unwrap();
        Node {
            server,
            data,
            config,
            client,
            js,
            serving: None,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.config.db_path()
    }

    /// Starts serving with a manual clock at the fixtures' epoch (`fixtures::at(0)`), so
    /// projector timers fire only when a test moves the clock.
    pub fn start(&mut self) {
        self.start_with_clock(Arc::new(plaint_runner::ManualClock::new(
            plaint_testkit::fixtures::at(0),
        )));
    }

    #[allow(dead_code)]
    pub fn start_with_system_clock(&mut self) {
        self.start_with_clock(Arc::new(SystemClock));
    }

    pub fn start_with_clock(&mut self, clock: Arc<dyn Clock>) {
        assert!(self.serving.is_none(), "already serving");
        let shutdown = CancellationToken::new();
        let config = self.config.clone();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            plaint_service::serve_with_clock(config, clock, token)
                .await
                .expect("serve");
        });
        self.serving = Some((shutdown, task));
    }

    /// Graceful stop: waits for serve to return (batch finished, log flushed).
    pub async fn stop(&mut self) {
        if let Some((shutdown, task)) = self.serving.take() {
            shutdown.cancel();
            tokio::time::timeout(WAIT, task)
                .await
                .expect("serve stops in time")
                .expect("serve task");
        }
    }

    /// Publishes one event on its contract subject and waits for the JetStream ack.
    pub async fn publish(&self, region: &str, event: &Value) {
        self.publish_raw(
            &plaint_testkit::fixtures::subject(region, event),
            plaint_testkit::fixtures::bytes(event),
        )
        .await;
    }

    /// Publishes an event and waits until it is in the log and every projector applied it.
    pub async fn publish_applied(&self, region: &str, event: &Value) {
        self.publish(region, event).await;
        let id = event["id"].as_str().unwrap();
        let complaint = event["subject"].as_str().unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(report) = self
                .api("complaint", serde_json::json!({"id": complaint}))
                .await
            {
                let history = report["history"].as_array().unwrap();
                if let Some(entry) = history.iter().find(|e| e["event"]["id"] == id) {
                    self.wait_for_head(entry["seq"].as_u64().unwrap()).await;
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "event {id} of {complaint} not in the log"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn publish_raw(&self, subject: &str, payload: Vec<u8>) {
        tokio::time::timeout(WAIT, async {
            self.js
                .publish(subject.to_owned(), Bytes::from(payload))
                .await
                .unwrap()
                .await
                .unwrap();
        })
        .await
        .expect("publish acked in time");
    }

    /// Calls the running server's API.
    pub async fn api(
        &self,
        command: &str,
        request: Value,
    ) -> Result<Value, plaint_service::ApiError> {
        let reply = plaint_service::api::call(
            &self.client,
            &self.config.topology.subject_prefix,
            command,
            Bytes::from(serde_json::to_vec(&request).unwrap()),
            WAIT,
        )
        .await?;
        Ok(serde_json::from_slice(&reply.body).unwrap_or(Value::Null))
    }

    /// Waits until the log head (seen through the API) reaches `seq` and every projector
    /// has caught up with it.
    pub async fn wait_for_head(&self, seq: u64) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = Value::Null;
        loop {
            if let Ok(status) = self.api("status", serde_json::json!({})).await {
                let head = status["log"]["last_seq"].as_u64().unwrap_or(0);
                let caught_up = status["projectors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p["lag"] == 0);
                if head >= seq && caught_up {
                    return status;
                }
                last = status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "log head did not reach {seq} within {WAIT:?}; last status {last}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every projector has caught up and the head has not moved for 300 ms:
    /// effects of the last events (an escalation raised by a breach) come back through
    /// JetStream after the views looked caught up.
    #[allow(dead_code)]
    pub async fn wait_quiet(&self) -> Value {
        let mut status = self.wait_for_head(0).await;
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let again = self.wait_for_head(0).await;
            if again["log"]["last_seq"] == status["log"]["last_seq"] {
                return again;
            }
            status = again;
        }
    }

    /// Every message a JetStream stream holds, in stream order.
    pub async fn stream_messages(
        &self,
        stream: &str,
    ) -> Vec<async_nats::jetstream::message::StreamMessage> {
        tokio::time::timeout(WAIT, async {
            let mut stream = self.js.get_stream(stream).await.unwrap();
            let state = stream.info().await.unwrap().state.clone();
            let mut out = Vec::new();
            if state.messages == 0 {
                return out;
            }
            for seq in state.first_sequence..=state.last_sequence {
                out.push(stream.get_raw_message(seq).await.unwrap());
            }
            out
        })
        .await
        .expect("stream read in time")
    }

    /// Messages of the rejected stream, as (reason, detail, original subject, payload).
    pub async fn rejected(&self) -> Vec<(String, String, String, Bytes)> {
        let mut out = Vec::new();
        for m in self
            .stream_messages(&self.config.topology.rejected_stream)
            .await
        {
            let h = |k: &str| {
                m.headers
                    .get(k)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            out.push((
                h("Plaint-Reject-Reason"),
                h("Plaint-Reject-Detail"),
                h("Plaint-Original-Subject"),
                m.payload.clone(),
            ));
        }
        out
    }

    /// Waits until the rejected stream holds `n` messages.
    pub async fn wait_for_rejected(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut stream = self
                .js
                .get_stream(&self.config.topology.rejected_stream)
                .await
                .unwrap();
            if stream.info().await.unwrap().state.messages >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "rejected stream did not reach {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens the log offline (serve must be stopped).
    pub fn open_log(&self) -> plaint_log::Log {
        // sled's flusher thread lets go of the file lock shortly after the last handle.
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            match plaint_log::Log::open(self.db_path(), self.config.log_options()) {
                Ok(log) => return log,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot open the log: {e}"),
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some((shutdown, _)) = &self.serving {
            shutdown.cancel();
        }
    }
}
