//! Publishing to JetStream with a bounded window of outstanding acks.

use std::{future::IntoFuture, time::Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;
use futures::{stream::FuturesUnordered, StreamExt};

type AckFuture = <PublishAckFuture as IntoFuture>::IntoFuture;

/// Counts of a publish run.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PublishStats {
    pub published: u64,
    /// Acknowledged as new by JetStream.
    pub accepted: u64,
    /// Acknowledged as a duplicate (same Nats-Msg-Id within the stream's window).
    pub duplicates: u64,
    pub failed: u64,
    pub seconds: f64,
}

pub struct Publisher {
    js: jetstream::Context,
    in_flight: FuturesUnordered<AckFuture>,
    window: usize,
    stats: PublishStats,
    started: Instant,
    first_error: Option<String>,
}

impl Publisher {
    pub fn new(js: jetstream::Context, window: usize) -> Self {
        Publisher {
            js,
            in_flight: FuturesUnordered::new(),
            window: window.max(1),
            stats: PublishStats::default(),
            started: Instant::now(),
            first_error: None,
        }
    }

    /// Sends one message; waits for an ack first if the window is full.
    pub async fn send(
        &mut self,
        subject: String,
        msg_id: Option<&str>,
        payload: Bytes,
    ) -> anyhow::Result<()> {
        while self.in_flight.len() >= self.window {
            self.settle_one().await;
        }
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = msg_id {
            headers.insert("Nats-Msg-Id", id);
        }
        let ack = self
            .js
            .publish_with_headers(subject, headers, payload)
            .await
            .context(
                "cannot publish to NATS; is the server up and does this user have permission?",
            )?;
        self.in_flight.push(ack.into_future());
        self.stats.published += 1;
        Ok(())
    }

    async fn settle_one(&mut self) {
        match self.in_flight.next().await {
            Some(Ok(ack)) if ack.duplicate => self.stats.duplicates += 1,
            Some(Ok(_)) => self.stats.accepted += 1,
            Some(Err(e)) => {
                self.stats.failed += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
            None => {}
        }
    }

    /// Waits for every outstanding ack.
    pub async fn finish(mut self) -> anyhow::Result<PublishStats> {
        while !self.in_flight.is_empty() {
            self.settle_one().await;
        }
        self.stats.seconds = self.started.elapsed().as_secs_f64();
        if let Some(error) = self.first_error {
            anyhow::bail!(
                "{} of {} messages were not acknowledged by JetStream (first error: {error}); publishing again is safe: duplicates are recognised",
                self.stats.failed,
                self.stats.published
            );
        }
        Ok(self.stats)
    }
}
