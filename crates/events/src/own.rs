//! Events plaint writes itself (`sla.breached`, `escalation.*`).
//!
//! Their ids are UUIDv5 over a name that identifies the fact (complaint, metric, deadline),
//! so the same fact recorded twice (a restart, a rebuild, two replicas) has the same id and
//! the log's idempotency turns the second write into a no-op.

use jiff::Timestamp;
use serde::Serialize;
use uuid::Uuid;

use crate::{EventBody, EventType};

/// Namespace of all plaint-generated event ids.
pub const NAMESPACE: Uuid = Uuid::from_u128(0x8f0c_5a1e_2d4b_4c6a_9b7e_6f1d_3a2c_5e70);

/// The `source` of events plaint writes: `plaint/<component>`.
pub fn source(component: &str) -> String {
    format!("plaint/{component}")
}

/// The deterministic id of a fact, named by its parts (joined with `/`).
pub fn event_id(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&NAMESPACE, parts.join("/").as_bytes())
}

#[derive(Serialize)]
struct WireOut<'a, T: Serialize> {
    specversion: &'static str,
    id: Uuid,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'static str,
    subject: &'a str,
    time: Timestamp,
    datacontenttype: &'static str,
    data: &'a T,
}

/// Serialises an event in the contract's wire form (CloudEvents JSON, structured mode).
pub fn to_wire(
    id: Uuid,
    source: &str,
    complaint_id: &str,
    time: Timestamp,
    body: &EventBody,
) -> Vec<u8> {
    fn ser<T: Serialize>(
        id: Uuid,
        source: &str,
        subject: &str,
        time: Timestamp,
        t: EventType,
        data: &T,
    ) -> Vec<u8> {
        serde_json::to_vec(&WireOut {
            specversion: "1.0",
            id,
            source,
            event_type: t.as_str(),
            subject,
            time,
            datacontenttype: "application/json",
            data,
        })
        .expect("event types serialise infallibly")
    }
    let t = body.event_type();
    match body {
        EventBody::Filed(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::Acknowledged(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::Assigned(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::CustomerContacted(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::CallbackPromised(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::AwaitingCustomer(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::CustomerReplied(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::Escalated(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::Resolved(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::Reopened(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::Closed(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::Withdrawn(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::SlaBreached(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::EscalationRaised(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::EscalationClaimed(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::EscalationReleased(d) => ser(id, source, complaint_id, time, t, d),
        EventBody::EscalationCleared(d) => ser(id, source, complaint_id, time, t, d),
    }
}

impl crate::Event {
    /// This event in the contract's wire form.
    pub fn to_wire(&self) -> Vec<u8> {
        to_wire(
            self.id,
            &self.source,
            &self.complaint_id,
            self.time,
            &self.body,
        )
    }
}
