use std::{borrow::Cow, time::Duration};

use jiff::Timestamp;
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::{
    model::*,
    reject::{RejectReason, Rejection},
};

/// Limits that protect the ingester from hostile or broken producers. All are
/// configurable; the defaults suit complaint traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Payloads above this are rejected `too_large` without being parsed.
    pub max_payload_bytes: usize,
    /// How far in the future an event's `time` may be (clock skew between systems).
    pub max_future_skew: Duration,
    /// Deepest allowed JSON nesting (objects and arrays), checked before parsing.
    pub max_depth: usize,
    pub max_tags: usize,
    /// Free-text fields (`summary`, `note`, `reason`, `resolution`).
    pub max_text_bytes: usize,
    /// Identifiers and names (`customer_id`, `by`, `assignee`, tags, ...).
    pub max_name_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 64 * 1024,
            max_future_skew: Duration::from_secs(5 * 60),
            max_depth: 16,
            max_tags: 32,
            max_text_bytes: 4096,
            max_name_bytes: 256,
        }
    }
}

/// Decodes and validates one event as received from a producer.
///
/// `now` is the ingester's clock, used only for the future-skew rule: old events are
/// always fine (imports, late systems). The checks run cheapest first: size, UTF-8,
/// nesting depth, JSON syntax, envelope, then the `data` of the type.
pub fn decode(bytes: &[u8], now: Timestamp, limits: &Limits) -> Result<Event, Rejection> {
    if bytes.len() > limits.max_payload_bytes {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!(
                "payload is {} bytes; the limit is {}",
                bytes.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    let event = decode_inner(bytes, limits)?;
    let skew =
        jiff::SignedDuration::try_from(limits.max_future_skew).unwrap_or(jiff::SignedDuration::MAX);
    if let Ok(latest) = now.checked_add(skew) {
        if event.time > latest {
            return Err(Rejection::new(
                RejectReason::TimeSkew,
                format!(
                    "time {} is more than {}s ahead of the ingester clock ({now})",
                    event.time,
                    limits.max_future_skew.as_secs()
                ),
            ));
        }
    }
    Ok(event)
}

/// Decodes an event that is already in the log. Stored events passed [`decode`] when they
/// arrived; this skips the clock rule (their time is now in the past) and the size rule
/// (limits may have been lowered since).
pub fn decode_stored(bytes: &[u8]) -> Result<Event, Rejection> {
    // Every size and count limit is skipped: the configured limits may have been raised
    // when the event was accepted, and the log must always read back what it holds.
    let limits = Limits {
        max_payload_bytes: usize::MAX,
        max_tags: usize::MAX,
        max_text_bytes: usize::MAX,
        max_name_bytes: usize::MAX,
        max_depth: 128,
        ..Limits::default()
    };
    decode_inner(bytes, &limits)
}

/// Region and category tokens: `[a-z0-9_-]{1,64}`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[derive(Deserialize)]
struct WireEnvelope<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    specversion: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    source: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow, default, deserialize_with = "borrowed")]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    subject: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    time: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    datacontenttype: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// An optional string that borrows from the payload unless it has escapes. serde borrows
/// a `Cow<str>` field marked `borrow`, but an `Option<Cow<str>>` goes through the `Cow`
/// impl that always copies: seven allocations per decoded event, for fields that are
/// only compared and parsed.
fn borrowed<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Text;
    impl<'de> serde::de::Visitor<'de> for Text {
        type Value = Option<Cow<'de, str>>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }

        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
    }
    deserializer.deserialize_option(Text)
}

fn schema(detail: impl Into<String>) -> Rejection {
    Rejection::new(RejectReason::SchemaViolation, detail)
}

fn json_error(err: serde_json::Error, what: &str) -> Rejection {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            Rejection::new(RejectReason::MalformedJson, format!("{what}: {err}"))
        }
        Category::Data => schema(format!("{what}: {err}")),
    }
}

fn decode_inner(bytes: &[u8], limits: &Limits) -> Result<Event, Rejection> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Rejection::new(
            RejectReason::InvalidUtf8,
            format!("payload is not UTF-8: {e}"),
        )
    })?;
    // serde_json itself stops at 128 levels; the pre-pass is only needed below that (and
    // costs a scan of every stored event on replay otherwise).
    if limits.max_depth < SERDE_JSON_DEPTH {
        check_depth(text.as_bytes(), limits.max_depth)?;
    }
    let wire: WireEnvelope<'_> =
        serde_json::from_str(text).map_err(|e| json_error(e, "envelope"))?;

    let specversion = required(&wire.specversion, "specversion")?;
    if specversion != "1.0" {
        return Err(schema(format!(
            "specversion must be \"1.0\", got {specversion:?}"
        )));
    }
    let id_text = required(&wire.id, "id")?;
    let id = parse_uuid(id_text)?;
    let source = required(&wire.source, "source")?;
    check_name("source", source, limits)?;
    let type_text = required(&wire.event_type, "type")?;
    let event_type = EventType::parse(type_text).ok_or_else(|| {
        Rejection::new(
            RejectReason::UnknownType,
            format!("type {type_text:?} is not a plaint event type"),
        )
    })?;
    let subject = required(&wire.subject, "subject")?;
    if !is_complaint_id(subject) {
        return Err(schema(format!(
            "subject (the complaint id) must be 1-128 characters of [A-Za-z0-9._:-], got {:?}",
            truncate(subject)
        )));
    }
    let time_text = required(&wire.time, "time")?;
    let time = parse_time("time", time_text)?;
    if let Some(ct) = &wire.datacontenttype {
        if ct != "application/json" {
            return Err(schema(format!(
                "datacontenttype must be \"application/json\" when present, got {ct:?}"
            )));
        }
    }
    let data = wire.data.ok_or_else(|| schema("missing field `data`"))?;
    if !data.get().trim_start().starts_with('{') {
        return Err(schema("`data` must be a JSON object"));
    }
    let body = decode_body(event_type, data.get(), limits)?;
    Ok(Event {
        id,
        source: source.to_owned(),
        complaint_id: subject.to_owned(),
        time,
        body,
    })
}

fn required<'s>(field: &'s Option<Cow<'_, str>>, name: &str) -> Result<&'s str, Rejection> {
    field
        .as_deref()
        .ok_or_else(|| schema(format!("missing field `{name}`")))
}

fn parse_uuid(text: &str) -> Result<Uuid, Rejection> {
    // Only the canonical hyphenated form: ids are compared as bytes by producers' tools,
    // and accepting braces or URNs would let one event arrive under two spellings.
    if text.len() != 36 {
        return Err(schema(format!(
            "id must be a hyphenated UUID, got {:?}",
            truncate(text)
        )));
    }
    Uuid::parse_str(text).map_err(|e| schema(format!("id is not a UUID: {e}")))
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`. jiff alone also
/// takes ISO 8601 and RFC 9557 forms, which strict consumers of a replay would refuse.
fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't' | b' ')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 9 {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

fn parse_time(field: &str, text: &str) -> Result<Timestamp, Rejection> {
    if !is_rfc3339(text) {
        return Err(schema(format!(
            "{field} must be RFC 3339 with an offset (e.g. 2024-05-01T09:30:00Z), got {:?}",
            truncate(text)
        )));
    }
    text.parse::<Timestamp>().map_err(|e| {
        schema(format!(
            "{field} must be RFC 3339 with an offset (e.g. 2024-05-01T09:30:00Z): {e}"
        ))
    })
}

fn is_complaint_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// serde_json's own recursion limit (its default, which plaint does not disable).
const SERDE_JSON_DEPTH: usize = 128;

/// Rejects nesting deeper than `max` before serde sees it, so a hostile `[[[[...` cannot
/// drive the parser's recursion.
fn check_depth(bytes: &[u8], max: usize) -> Result<(), Rejection> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(schema(format!("JSON nesting is deeper than {max} levels")));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn data<T: DeserializeOwned>(event_type: EventType, raw: &str) -> Result<T, Rejection> {
    serde_json::from_str(raw).map_err(|e| {
        let what = format!("data of {event_type}: {e}");
        if e.classify() == serde_json::error::Category::Data {
            return schema(what);
        }
        // The envelope parse skipped over `data` without checking every escape or number.
        // A typed parse fails with a "syntax" error also for well-formed JSON of the wrong
        // shape (an integer where a string enum belongs): decide by parsing it untyped.
        match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(_) => schema(what),
            Err(untyped) if untyped.to_string().starts_with("number out of range") => schema(what),
            Err(_) => Rejection::new(RejectReason::MalformedJson, what),
        }
    })
}

fn check_name(field: &str, value: &str, limits: &Limits) -> Result<(), Rejection> {
    if value.is_empty()
        || value.len() > limits.max_name_bytes
        || value.chars().any(char::is_control)
    {
        return Err(schema(format!(
            "{field} must be 1-{} bytes without control characters",
            limits.max_name_bytes
        )));
    }
    Ok(())
}

fn check_text(field: &str, value: &str, limits: &Limits) -> Result<(), Rejection> {
    if value.len() > limits.max_text_bytes {
        return Err(schema(format!(
            "{field} is {} bytes; the limit is {}",
            value.len(),
            limits.max_text_bytes
        )));
    }
    Ok(())
}

fn check_opt_text(field: &str, value: &Option<String>, limits: &Limits) -> Result<(), Rejection> {
    value
        .as_deref()
        .map_or(Ok(()), |v| check_text(field, v, limits))
}

fn check_token(field: &str, value: &str) -> Result<(), Rejection> {
    if !is_token(value) {
        return Err(schema(format!(
            "{field} must match [a-z0-9_-]{{1,64}}, got {:?}",
            truncate(value)
        )));
    }
    Ok(())
}

fn check_tier(tier: u8) -> Result<(), Rejection> {
    if !(1..=4).contains(&tier) {
        return Err(schema(format!("tier must be 1 to 4, got {tier}")));
    }
    Ok(())
}

fn decode_body(event_type: EventType, raw: &str, limits: &Limits) -> Result<EventBody, Rejection> {
    let body = match event_type {
        EventType::Filed => {
            let d: ComplaintFiled = data(event_type, raw)?;
            check_name("customer_id", &d.customer_id, limits)?;
            check_token("region", &d.region)?;
            check_token("category", &d.category)?;
            if let Some(amount) = &d.amount_at_stake {
                let c = amount.currency.as_bytes();
                if c.len() != 3 || !c.iter().all(u8::is_ascii_uppercase) {
                    return Err(schema(format!(
                        "amount_at_stake.currency must be an ISO 4217 code like \"EUR\", got {:?}",
                        truncate(&amount.currency)
                    )));
                }
            }
            check_opt_text("summary", &d.summary, limits)?;
            if d.tags.len() > limits.max_tags {
                return Err(schema(format!(
                    "{} tags; the limit is {}",
                    d.tags.len(),
                    limits.max_tags
                )));
            }
            for tag in &d.tags {
                check_name("tag", tag, limits)?;
            }
            EventBody::Filed(d)
        }
        EventType::Acknowledged => {
            let d: ComplaintAcknowledged = data(event_type, raw)?;
            check_name("by", &d.by, limits)?;
            EventBody::Acknowledged(d)
        }
        EventType::Assigned => {
            let d: ComplaintAssigned = data(event_type, raw)?;
            check_name("assignee", &d.assignee, limits)?;
            if let Some(team) = &d.team {
                check_name("team", team, limits)?;
            }
            EventBody::Assigned(d)
        }
        EventType::CustomerContacted => {
            let d: CustomerContacted = data(event_type, raw)?;
            check_name("by", &d.by, limits)?;
            check_opt_text("note", &d.note, limits)?;
            EventBody::CustomerContacted(d)
        }
        EventType::CallbackPromised => {
            let d: CallbackPromised = data(event_type, raw)?;
            check_name("by", &d.by, limits)?;
            EventBody::CallbackPromised(d)
        }
        EventType::AwaitingCustomer => {
            let d: AwaitingCustomer = data(event_type, raw)?;
            check_name("by", &d.by, limits)?;
            check_opt_text("reason", &d.reason, limits)?;
            EventBody::AwaitingCustomer(d)
        }
        EventType::CustomerReplied => EventBody::CustomerReplied(data(event_type, raw)?),
        EventType::Escalated => {
            let d: ComplaintEscalated = data(event_type, raw)?;
            check_tier(d.tier)?;
            check_name("by", &d.by, limits)?;
            check_text("reason", &d.reason, limits)?;
            EventBody::Escalated(d)
        }
        EventType::Resolved => {
            let d: ComplaintResolved = data(event_type, raw)?;
            check_name("by", &d.by, limits)?;
            check_text("resolution", &d.resolution, limits)?;
            EventBody::Resolved(d)
        }
        EventType::Reopened => {
            let d: ComplaintReopened = data(event_type, raw)?;
            check_text("reason", &d.reason, limits)?;
            EventBody::Reopened(d)
        }
        EventType::Closed => {
            let d: ComplaintClosed = data(event_type, raw)?;
            if let Some(by) = &d.by {
                check_name("by", by, limits)?;
            }
            EventBody::Closed(d)
        }
        EventType::Withdrawn => {
            let d: ComplaintWithdrawn = data(event_type, raw)?;
            check_opt_text("reason", &d.reason, limits)?;
            EventBody::Withdrawn(d)
        }
        EventType::SlaBreached => {
            let d: SlaBreached = data(event_type, raw)?;
            check_token("region", &d.region)?;
            check_name("policy", &d.policy, limits)?;
            EventBody::SlaBreached(d)
        }
        EventType::EscalationRaised => {
            let d: EscalationRaised = data(event_type, raw)?;
            check_tier(d.tier)?;
            check_token("region", &d.region)?;
            EventBody::EscalationRaised(d)
        }
        EventType::EscalationClaimed => {
            let d: EscalationClaimed = data(event_type, raw)?;
            check_tier(d.tier)?;
            check_name("by", &d.by, limits)?;
            EventBody::EscalationClaimed(d)
        }
        EventType::EscalationReleased => {
            let d: EscalationReleased = data(event_type, raw)?;
            check_name("by", &d.by, limits)?;
            check_text("reason", &d.reason, limits)?;
            EventBody::EscalationReleased(d)
        }
        EventType::EscalationCleared => EventBody::EscalationCleared(data(event_type, raw)?),
    };
    Ok(body)
}
