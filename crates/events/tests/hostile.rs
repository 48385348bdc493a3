//! Hostile input for [`plaint_events::decode`], the first thing every byte from a
//! producer goes through.
//!
//! - `corpus_*`: the checked-in files of `tests/corpus/`. A file's name says what must
//!   happen to it: `ok-*` decodes, `<reason>-*` (e.g. `schema_violation-tier-zero.json`) is
//!   rejected with exactly that reason. Add a file to pin a new case; no code change needed.
//! - `fuzz_*`: proptest with structured generators: valid events of every type, then
//!   byte flips, truncations, insertions, deletions, JSON-aware field replacements with
//!   values of random types, duplicate keys and deep nesting. Every input must be accepted
//!   or rejected with a non-empty detail, within [`DECODE_BUDGET`], the same way twice,
//!   and whatever is accepted must respect every limit.
//! - `limit_*`: each limit of [`Limits`] at its edge, default and custom.
//! - `pending_fix_*` and `PENDING_PRODUCT_FIXES`: product bugs these tests found, pinned
//!   as they behave today; each fails once its bug is fixed, and says what to change.
//!
//! CI runs [`DEFAULT_FUZZ_CASES`] fuzz cases in all. For a soak, raise the total:
//! `PLAINT_FUZZ_CASES=1000000 cargo test --release -p plaint-events --test hostile fuzz_`.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use jiff::{tz::Offset, SignedDuration};
use plaint_events::{
    decode, decode_stored, is_token, Event, EventBody, EventType, Limits, RejectReason, Rejection,
    Timestamp,
};
use proptest::{prelude::*, sample::Index};
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// Upper bound on one decode, even of a 64 KiB payload in a debug build on a busy machine.
const DECODE_BUDGET: Duration = Duration::from_millis(50);

/// Fuzz cases per CI run, shared among the `fuzz_*` tests.
const DEFAULT_FUZZ_CASES: u32 = 5000;

/// The ingester's clock in every test here: an hour after the corpus's event times.
fn now() -> Timestamp {
    "2024-03-04T10:00:00Z".parse().unwrap()
}

/// Decodes `bytes` and checks what must hold for any input whatsoever: no panic, a
/// non-empty detail on rejection, the same answer twice, within [`DECODE_BUDGET`], and an
/// accepted event that respects `limits`. Timing is the fastest of up to four runs, so a
/// descheduled thread on a shared CI machine does not fail the test; a decode that is
/// really slow is slow every time.
fn decode_checked(bytes: &[u8], now: Timestamp, limits: &Limits) -> Result<Event, Rejection> {
    let mut fastest = Duration::MAX;
    let mut first: Option<Result<Event, Rejection>> = None;
    for run in 0..4 {
        let started = Instant::now();
        let result = decode(bytes, now, limits);
        fastest = fastest.min(started.elapsed());
        match &first {
            None => first = Some(result),
            Some(previous) => assert_eq!(
                previous,
                &result,
                "decoding the same bytes twice gave different answers: {}",
                show(bytes)
            ),
        }
        if run >= 1 && fastest < DECODE_BUDGET {
            break;
        }
    }
    assert!(
        fastest < DECODE_BUDGET,
        "decode took {fastest:?} (budget {DECODE_BUDGET:?}) for {} bytes: {}",
        bytes.len(),
        show(bytes)
    );
    let result = first.unwrap();
    match &result {
        Ok(event) => {
            assert_within_limits(event, now, limits);
            // What decode accepts, the replay path (no clock, no size rule) reads back the same,
            // as long as no limit was raised above its default (see
            // `pending_fix_decode_stored_refuses_what_raised_limits_accepted`).
            if !raises_a_default(limits) {
                assert_eq!(
                    decode_stored(bytes).as_ref(),
                    Ok(event),
                    "decode_stored disagrees"
                );
            }
        }
        Err(rejection) => {
            assert!(
                !rejection.detail.trim().is_empty(),
                "{:?} without a detail",
                rejection.reason
            );
            // The stored-event path must not panic on it either (it sees old bytes only, but
            // a corrupted store is hostile input too).
            let _ = decode_stored(bytes);
        }
    }
    result
}

fn raises_a_default(limits: &Limits) -> bool {
    let default = Limits::default();
    limits.max_depth > default.max_depth
        || limits.max_tags > default.max_tags
        || limits.max_text_bytes > default.max_text_bytes
        || limits.max_name_bytes > default.max_name_bytes
}

fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut shown: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        shown.push_str("...");
    }
    format!("{shown:?}")
}

/// The promises an accepted event makes to everything downstream (subjects, views, keys).
fn assert_within_limits(event: &Event, now: Timestamp, limits: &Limits) {
    let name_ok = |field: &str, value: &str| {
        assert!(
            !value.is_empty()
                && value.len() <= limits.max_name_bytes
                && !value.chars().any(char::is_control),
            "accepted {field} {value:?} breaks the name rule"
        );
    };
    let text_ok = |field: &str, value: &str| {
        assert!(
            value.len() <= limits.max_text_bytes,
            "accepted {field} of {} bytes",
            value.len()
        );
    };
    let token_ok = |field: &str, value: &str| {
        assert!(
            is_token(value),
            "accepted {field} {value:?} that is not a token"
        );
    };
    let tier_ok = |tier: u8| assert!((1..=4).contains(&tier), "accepted tier {tier}");
    let id = &event.complaint_id;
    assert!(
        (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b)),
        "accepted complaint id {id:?}"
    );
    name_ok("source", &event.source);
    let skew = SignedDuration::try_from(limits.max_future_skew).unwrap_or(SignedDuration::MAX);
    if let Ok(latest) = now.checked_add(skew) {
        assert!(
            event.time <= latest,
            "accepted time {} with now {now}",
            event.time
        );
    }
    match &event.body {
        EventBody::Filed(d) => {
            name_ok("customer_id", &d.customer_id);
            token_ok("region", &d.region);
            token_ok("category", &d.category);
            if let Some(summary) = &d.summary {
                text_ok("summary", summary);
            }
            assert!(
                d.tags.len() <= limits.max_tags,
                "accepted {} tags",
                d.tags.len()
            );
            d.tags.iter().for_each(|t| name_ok("tag", t));
            if let Some(amount) = &d.amount_at_stake {
                assert!(
                    amount.value.ten_thousandths() >= 0,
                    "accepted a negative amount"
                );
                let c = amount.currency.as_bytes();
                assert!(
                    c.len() == 3 && c.iter().all(u8::is_ascii_uppercase),
                    "currency {c:?}"
                );
            }
        }
        EventBody::Acknowledged(d) => name_ok("by", &d.by),
        EventBody::Assigned(d) => {
            name_ok("assignee", &d.assignee);
            d.team.iter().for_each(|t| name_ok("team", t));
        }
        EventBody::CustomerContacted(d) => {
            name_ok("by", &d.by);
            d.note.iter().for_each(|n| text_ok("note", n));
        }
        EventBody::CallbackPromised(d) => name_ok("by", &d.by),
        EventBody::AwaitingCustomer(d) => {
            name_ok("by", &d.by);
            d.reason.iter().for_each(|r| text_ok("reason", r));
        }
        EventBody::CustomerReplied(_) => {}
        EventBody::Escalated(d) => {
            tier_ok(d.tier);
            name_ok("by", &d.by);
            text_ok("reason", &d.reason);
        }
        EventBody::Resolved(d) => {
            name_ok("by", &d.by);
            text_ok("resolution", &d.resolution);
        }
        EventBody::Reopened(d) => text_ok("reason", &d.reason),
        EventBody::Closed(d) => d.by.iter().for_each(|b| name_ok("by", b)),
        EventBody::Withdrawn(d) => d.reason.iter().for_each(|r| text_ok("reason", r)),
        EventBody::SlaBreached(d) => {
            token_ok("region", &d.region);
            name_ok("policy", &d.policy);
        }
        EventBody::EscalationRaised(d) => {
            tier_ok(d.tier);
            token_ok("region", &d.region);
        }
        EventBody::EscalationClaimed(d) => {
            tier_ok(d.tier);
            name_ok("by", &d.by);
        }
        EventBody::EscalationReleased(d) => {
            name_ok("by", &d.by);
            text_ok("reason", &d.reason);
        }
        EventBody::EscalationCleared(_) => {}
    }
}

// ---------------------------------------------------------------------------------------
// The corpus

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// What a corpus file's name promises: `Ok(())` for `ok-*`, else the rejection reason.
fn expectation(name: &str) -> Result<(), RejectReason> {
    if name.starts_with("ok-") {
        return Ok(());
    }
    let reason = RejectReason::ALL.into_iter().find(|r| {
        name.strip_prefix(r.as_str())
            .is_some_and(|rest| rest.starts_with('-'))
    });
    Err(reason.unwrap_or_else(|| {
        panic!("corpus file {name} must start with `ok-` or `<reject reason>-`")
    }))
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// Corpus files whose name states the contract's answer while `decode` gives another one
/// today: (file, what decode answers now). Each entry is a product bug described next to
/// it; the test fails as soon as decode changes its answer, so the entry is removed with the
/// fix.
const PENDING_PRODUCT_FIXES: &[(&str, Result<(), RejectReason>)] = &[];

#[test]
fn corpus_files_decode_or_are_rejected_as_their_names_say() {
    let files = corpus();
    assert!(
        files.len() >= 50,
        "the corpus shrank to {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for (name, bytes) in &files {
        let result = decode_checked(bytes, now(), &Limits::default());
        let got = result.as_ref().map(|_| ()).map_err(|r| r.reason);
        let expected = match PENDING_PRODUCT_FIXES.iter().find(|(file, _)| file == name) {
            Some((_, today)) => *today,
            None => expectation(name),
        };
        if got != expected {
            failures.push(format!("{name}: expected {expected:?}, got {result:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "corpus mismatches (a fixed product bug? then drop its PENDING_PRODUCT_FIXES entry):\n{}",
        failures.join("\n")
    );
}

#[test]
fn corpus_covers_every_type_and_every_stateless_rejection() {
    let files = corpus();
    let mut types = std::collections::BTreeSet::new();
    let mut reasons = std::collections::BTreeSet::new();
    for (_, bytes) in &files {
        match decode(bytes, now(), &Limits::default()) {
            Ok(event) => {
                types.insert(event.event_type());
            }
            Err(rejection) => {
                reasons.insert(rejection.reason);
            }
        }
    }
    for t in EventType::ALL {
        assert!(types.contains(&t), "no valid {t} in the corpus");
    }
    // too_large is pinned by `limit_payload_size_is_checked_before_parsing` (a corpus file
    // of 64 KiB would be mostly padding).
    for reason in [
        RejectReason::MalformedJson,
        RejectReason::InvalidUtf8,
        RejectReason::SchemaViolation,
        RejectReason::UnknownType,
        RejectReason::TimeSkew,
    ] {
        assert!(reasons.contains(&reason), "no {reason} case in the corpus");
    }
}

#[test]
fn corpus_valid_events_survive_a_round_trip_through_the_wire_form() {
    for (name, bytes) in corpus().iter().filter(|(name, _)| name.starts_with("ok-")) {
        let event = decode(bytes, now(), &Limits::default()).unwrap();
        let again = decode(&event.to_wire(), now(), &Limits::default())
            .unwrap_or_else(|r| panic!("{name}: its own wire form is rejected: {r}"));
        assert_eq!(again, event, "{name}");
    }
}

// ---------------------------------------------------------------------------------------
// Generators

/// Every `data` field name of every type, so replacements hit real fields (and a few
/// that no type has).
const DATA_KEYS: &[&str] = &[
    "customer_id",
    "region",
    "category",
    "channel",
    "severity",
    "amount_at_stake",
    "summary",
    "tags",
    "vip",
    "by",
    "assignee",
    "team",
    "note",
    "due_by",
    "reason",
    "tier",
    "resolution",
    "metric",
    "policy",
    "due_at",
    "target_seconds",
    "met_at",
    "late_by_seconds",
    "previous_tier",
    "reasons",
    "reassigned_from",
    "value",
    "currency",
    "extension",
];

const ENVELOPE_KEYS: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "data",
    "x",
];

/// JSON literals a `Value` cannot hold, or that parsers get wrong.
const RAW_LITERALS: &[&str] = &[
    "1e999",
    "-1e999",
    "1e-999",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890.5",
    "-0",
    "0.0000000000000000000000000001",
    "1E2",
    "NaN",
    "Infinity",
    "01",
    "+1",
    ".5",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\udc00\\ud800\"",
    "\"\\ud83d\\ude9a\"",
    "\"\\\"\"",
    "\"\\/\"",
    "\"\"",
    "[]",
    "{}",
    "[,]",
    "{\"a\":}",
    "tru",
    "nul",
];

/// Strings that probe the validators.
const NASTY_STRINGS: &[&str] = &[
    "",
    " ",
    "\0",
    "a\0b",
    "\n",
    "\u{7f}",
    "\u{202e}evil",
    "\u{200b}",
    "\u{feff}",
    "é",
    "e\u{301}",
    "𝄞",
    "EU",
    "eu",
    "eu.west",
    "eu west",
    "*",
    ">",
    "a>b",
    "..",
    "-",
    "_",
    "1.0",
    "0.3",
    "1",
    "-5",
    "1e3",
    "99999999999999.9999",
    "999999999999999",
    "EUR",
    "eur",
    "application/json",
    "text/plain",
    "email",
    "critical",
    "first_response",
    "complaint.filed",
    "complaint.closed",
    "sla.breached",
    "escalation.raised",
    "0b6f1f9e-3c55-4d0e-9a57-5d2b3f0e8a11",
    "{0b6f1f9e-3c55-4d0e-9a57-5d2b3f0e8a11}",
    "urn:uuid:0b6f1f9e-3c55-4d0e-9a57-5d2b3f0e8a11",
    "0b6f1f9e3c554d0e9a575d2b3f0e8a11",
    "2024-03-04T09:00:00Z",
    "2024-03-04T09:00:00",
    "2024-03-04",
    "2024-02-30T00:00:00Z",
    "2016-12-31T23:59:60Z",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "-009999-01-02T00:00:00Z",
    "2024-03-04T09:00:00+25:00",
    "2024-03-04T09:00:00.123456789123Z",
    "2024-03-04T09:00:00Z[Europe/Paris]",
    "2024-03-04T10:05:00Z",
    "2024-03-04T10:05:01Z",
    "2024-03-04T10:30:00+00:30",
    "2024-03-04T10:31:00+00:30",
];

fn arb_nasty_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => proptest::sample::select(NASTY_STRINGS).prop_map(str::to_owned),
        2 => "\\PC{0,40}",
        1 => "[a-z0-9_-]{60,70}",
        1 => (0usize..6000, proptest::sample::select(&['a', 'é', '𝄞', '[', '"'][..]))
            .prop_map(|(n, c)| std::iter::repeat_n(c, n).collect()),
        1 => any::<String>(),
    ]
    .boxed()
}

/// Any JSON value, of any type and shape.
fn arb_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(|f| json!(f)),
        (0u8..=6).prop_map(Value::from),
        arb_nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                proptest::sample::select(DATA_KEYS).prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9 ._@:/-]{1,40}", "[^\\p{C}]{1,20}", "[a-z]{256}"]
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{0,200}", "[\\s\\S]{0,50}", "[a-z]{4096}"]
}

fn arb_token() -> impl Strategy<Value = String> {
    "[a-z0-9_-]{1,64}"
}

fn arb_channel() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&["email", "phone", "web", "chat", "letter", "social", "other"][..])
}

fn arb_offset() -> impl Strategy<Value = Offset> {
    prop_oneof![
        Just(Offset::UTC),
        (-14 * 3600..=14 * 3600i32).prop_map(|s| Offset::from_seconds(s - s % 60).unwrap())
    ]
}

/// A time at most `max_ahead_secs` after [`now`] and up to ~300 years before it, written
/// with a random offset.
fn arb_time(max_ahead_secs: i64) -> impl Strategy<Value = String> {
    // Half of them within minutes of the clock, where the skew rule decides.
    (
        prop_oneof![
            -900i64..=max_ahead_secs,
            -300 * 365 * 86_400i64..=max_ahead_secs
        ],
        0u32..1_000_000_000,
        arb_offset(),
    )
        .prop_map(move |(secs, nanos, offset)| {
            let t = now()
                .checked_add(SignedDuration::new(secs, 0))
                .unwrap()
                .checked_add(SignedDuration::new(0, nanos as i32))
                .unwrap();
            let t = if t > now()
                .checked_add(SignedDuration::new(max_ahead_secs, 0))
                .unwrap()
            {
                now()
            } else {
                t
            };
            t.display_with_offset(offset).to_string()
        })
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    proptest::option::of(s).boxed()
}

/// A valid `data` object of type `t`.
fn arb_data(t: EventType) -> BoxedStrategy<Value> {
    fn obj(pairs: Vec<(&str, Option<Value>)>) -> Value {
        Value::Object(
            pairs
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_owned(), v?)))
                .collect::<Map<_, _>>(),
        )
    }
    let s = |v: String| Some(Value::String(v));
    match t {
        EventType::Filed => (
            (arb_name(), arb_token(), arb_token(), arb_channel()),
            proptest::sample::select(&["low", "medium", "high", "critical"][..]),
            opt(("[0-9]{1,14}(\\.[0-9]{1,4})?", "[A-Z]{3}")),
            opt(arb_text()),
            opt(proptest::collection::vec(arb_name(), 0..=32)),
            opt(any::<bool>()),
        )
            .prop_map(move |((customer, region, category, channel), severity, amount, summary, tags, vip)| {
                obj(vec![
                    ("customer_id", s(customer)),
                    ("region", s(region)),
                    ("category", s(category)),
                    ("channel", Some(json!(channel))),
                    ("severity", Some(json!(severity))),
                    ("amount_at_stake", amount.map(|(value, currency)| json!({"value": value, "currency": currency}))),
                    ("summary", summary.map(Value::String)),
                    ("tags", tags.map(|t| json!(t))),
                    ("vip", vip.map(Value::Bool)),
                ])
            })
            .boxed(),
        EventType::Acknowledged => arb_name().prop_map(|by| json!({ "by": by })).boxed(),
        EventType::Assigned => (arb_name(), opt(arb_name()))
            .prop_map(move |(a, team)| obj(vec![("assignee", s(a)), ("team", team.map(Value::String))]))
            .boxed(),
        EventType::CustomerContacted => (arb_name(), arb_channel(), opt(arb_text()))
            .prop_map(move |(by, channel, note)| {
                obj(vec![("by", s(by)), ("channel", Some(json!(channel))), ("note", note.map(Value::String))])
            })
            .boxed(),
        EventType::CallbackPromised => (arb_name(), arb_time(400 * 86_400 * 365))
            .prop_map(|(by, due)| json!({"by": by, "due_by": due}))
            .boxed(),
        EventType::AwaitingCustomer => (arb_name(), opt(arb_text()))
            .prop_map(move |(by, reason)| obj(vec![("by", s(by)), ("reason", reason.map(Value::String))]))
            .boxed(),
        EventType::CustomerReplied => arb_channel().prop_map(|c| json!({ "channel": c })).boxed(),
        EventType::Escalated => (1u8..=4, arb_text(), arb_name())
            .prop_map(|(tier, reason, by)| json!({"tier": tier, "reason": reason, "by": by}))
            .boxed(),
        EventType::Resolved => (arb_name(), arb_text())
            .prop_map(|(by, resolution)| json!({"by": by, "resolution": resolution}))
            .boxed(),
        EventType::Reopened => arb_text().prop_map(|r| json!({ "reason": r })).boxed(),
        EventType::Closed => opt(arb_name()).prop_map(move |by| obj(vec![("by", by.map(Value::String))])).boxed(),
        EventType::Withdrawn => {
            opt(arb_text()).prop_map(move |r| obj(vec![("reason", r.map(Value::String))])).boxed()
        }
        EventType::SlaBreached => (
            proptest::sample::select(&["first_response", "resolution", "periodic_update", "callback"][..]),
            arb_name(),
            arb_token(),
            arb_time(0),
            any::<i64>(),
            opt((arb_time(0), any::<i64>())),
        )
            .prop_map(move |(metric, policy, region, due, target, met)| {
                obj(vec![
                    ("metric", Some(json!(metric))),
                    ("policy", s(policy)),
                    ("region", s(region)),
                    ("due_at", s(due)),
                    ("target_seconds", Some(json!(target))),
                    ("met_at", met.as_ref().map(|(at, _)| json!(at))),
                    ("late_by_seconds", met.map(|(_, late)| json!(late))),
                ])
            })
            .boxed(),
        EventType::EscalationRaised => (
            1u8..=4,
            opt(1u8..=4),
            arb_token(),
            proptest::collection::vec(("[a-z_]{1,20}", 1u8..=4, arb_text()), 0..4),
        )
            .prop_map(move |(tier, previous, region, reasons)| {
                let reasons: Vec<Value> = reasons
                    .into_iter()
                    .map(|(rule, tier, detail)| json!({"rule": rule, "tier": tier, "detail": detail}))
                    .collect();
                obj(vec![
                    ("tier", Some(json!(tier))),
                    ("previous_tier", previous.map(|p| json!(p))),
                    ("region", s(region)),
                    ("reasons", Some(Value::Array(reasons))),
                ])
            })
            .boxed(),
        EventType::EscalationClaimed => (arb_name(), 1u8..=4, opt(arb_name()))
            .prop_map(move |(by, tier, from)| {
                obj(vec![("by", s(by)), ("tier", Some(json!(tier))), ("reassigned_from", from.map(Value::String))])
            })
            .boxed(),
        EventType::EscalationReleased => (arb_name(), arb_text())
            .prop_map(|(by, reason)| json!({"by": by, "reason": reason}))
            .boxed(),
        EventType::EscalationCleared => proptest::sample::select(&["resolved", "closed", "withdrawn"][..])
            .prop_map(|r| json!({ "reason": r }))
            .boxed(),
    }
}

/// A valid event of any type, as a JSON value.
fn arb_valid_event() -> BoxedStrategy<Value> {
    proptest::sample::select(&EventType::ALL[..])
        .prop_flat_map(|t| {
            (
                Just(t),
                any::<u128>(),
                "[a-z][a-z0-9/-]{0,30}",
                "[A-Za-z0-9._:-]{1,128}",
                arb_time(300),
                any::<bool>(),
                arb_data(t),
            )
        })
        .prop_map(|(t, id, source, subject, time, with_content_type, data)| {
            let mut event = json!({
                "specversion": "1.0",
                "id": Uuid::from_u128(id).to_string(),
                "source": source,
                "type": t.as_str(),
                "subject": subject,
                "time": time,
                "data": data,
            });
            if with_content_type {
                event["datacontenttype"] = json!("application/json");
            }
            event
        })
        .boxed()
}

/// A value to put somewhere: any JSON value, or raw text no `Value` can hold.
#[derive(Debug, Clone)]
enum Replacement {
    Json(Value),
    Raw(&'static str),
}

fn arb_replacement() -> impl Strategy<Value = Replacement> {
    prop_oneof![
        3 => arb_json().prop_map(Replacement::Json),
        1 => proptest::sample::select(RAW_LITERALS).prop_map(Replacement::Raw),
    ]
}

/// A change to the event's JSON structure. `in_data` chooses the `data` object (if it still
/// is one) or the envelope; `key` picks a field name from the matching list.
#[derive(Debug, Clone)]
enum JsonMutation {
    Replace {
        in_data: bool,
        key: Index,
        value: Replacement,
    },
    Remove {
        in_data: bool,
        key: Index,
    },
    DuplicateKey {
        in_data: bool,
        key: Index,
        value: Replacement,
    },
    Nest {
        in_data: bool,
        key: Index,
        depth: usize,
        arrays: bool,
    },
}

#[derive(Debug, Clone)]
enum ByteMutation {
    Flip { at: Index, mask: u8 },
    Truncate { at: Index },
    Insert { at: Index, bytes: Vec<u8> },
    Delete { at: Index, len: usize },
}

fn arb_json_mutation() -> impl Strategy<Value = JsonMutation> {
    prop_oneof![
        4 => (any::<bool>(), any::<Index>(), arb_replacement())
            .prop_map(|(in_data, key, value)| JsonMutation::Replace { in_data, key, value }),
        1 => (any::<bool>(), any::<Index>()).prop_map(|(in_data, key)| JsonMutation::Remove { in_data, key }),
        1 => (any::<bool>(), any::<Index>(), arb_replacement())
            .prop_map(|(in_data, key, value)| JsonMutation::DuplicateKey { in_data, key, value }),
        1 => (any::<bool>(), any::<Index>(), prop_oneof![1usize..20, 1usize..3000], any::<bool>())
            .prop_map(|(in_data, key, depth, arrays)| JsonMutation::Nest { in_data, key, depth, arrays }),
    ]
}

/// Bytes that change how a JSON parser or UTF-8 decoder sees what follows.
const INTERESTING_BYTES: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b",",
    b":",
    b"\0",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"\\u0000",
    b"\\ud800",
    b"1e999",
    b"null",
];

fn arb_byte_mutation() -> impl Strategy<Value = ByteMutation> {
    let interesting = prop_oneof![
        2 => proptest::sample::select(INTERESTING_BYTES).prop_map(<[u8]>::to_vec),
        2 => proptest::collection::vec(0u8..0x80, 1..8),
        1 => proptest::collection::vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        // Mostly flips that keep ASCII ASCII, so the JSON parser, not the UTF-8 check, decides.
        3 => (any::<Index>(), 1u8..=127).prop_map(|(at, mask)| ByteMutation::Flip { at, mask }),
        1 => (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| ByteMutation::Flip { at, mask }),
        1 => any::<Index>().prop_map(|at| ByteMutation::Truncate { at }),
        2 => (any::<Index>(), interesting).prop_map(|(at, bytes)| ByteMutation::Insert { at, bytes }),
        1 => (any::<Index>(), 1usize..16).prop_map(|(at, len)| ByteMutation::Delete { at, len }),
    ]
}

/// Applies the JSON mutations, serialises (compact or pretty), splices in raw text, then
/// applies the byte mutations.
fn mutate(
    mut event: Value,
    json_mutations: &[JsonMutation],
    bytes_mutations: &[ByteMutation],
    pretty: bool,
) -> Vec<u8> {
    // Raw text goes in as a unique placeholder string and is spliced into the serialised
    // bytes afterwards; so do duplicate keys, which a JSON map cannot hold.
    fn placeholder(raw: String, splices: &mut Vec<(String, String)>) -> String {
        let marker = format!("@@SPLICE{}@@", splices.len());
        splices.push((format!("\"{marker}\""), raw));
        marker
    }
    fn value_of(replacement: &Replacement, splices: &mut Vec<(String, String)>) -> Value {
        match replacement {
            Replacement::Json(v) => v.clone(),
            Replacement::Raw(raw) => Value::String(placeholder((*raw).to_owned(), splices)),
        }
    }
    let mut splices: Vec<(String, String)> = Vec::new();
    for mutation in json_mutations {
        let (in_data, key) = match mutation {
            JsonMutation::Replace { in_data, key, .. }
            | JsonMutation::Remove { in_data, key }
            | JsonMutation::DuplicateKey { in_data, key, .. }
            | JsonMutation::Nest { in_data, key, .. } => (*in_data, key),
        };
        let keys = if in_data { DATA_KEYS } else { ENVELOPE_KEYS };
        let key = *key.get(keys);
        let target = if in_data {
            event.get_mut("data")
        } else {
            Some(&mut event)
        };
        let Some(Value::Object(map)) = target else {
            continue;
        };
        match mutation {
            JsonMutation::Replace { value, .. } => {
                let v = value_of(value, &mut splices);
                map.insert(key.to_owned(), v);
            }
            JsonMutation::Remove { .. } => {
                map.remove(key);
            }
            JsonMutation::DuplicateKey { value, .. } => {
                let v = value_of(value, &mut splices);
                let marker = placeholder(format!("\"{key}\""), &mut splices);
                map.insert(marker, v);
            }
            JsonMutation::Nest { depth, arrays, .. } => {
                let inner = map.get(key).cloned().unwrap_or(Value::Null).to_string();
                let (open, close) = if *arrays {
                    ("[", "]")
                } else {
                    ("{\"n\":", "}")
                };
                let raw = format!("{}{inner}{}", open.repeat(*depth), close.repeat(*depth));
                map.insert(
                    key.to_owned(),
                    Value::String(placeholder(raw, &mut splices)),
                );
            }
        }
    }
    let mut text = if pretty {
        serde_json::to_string_pretty(&event)
    } else {
        serde_json::to_string(&event)
    }
    .expect("a Value serialises");
    for (marker, raw) in splices.iter().rev() {
        text = text.replace(marker.as_str(), raw);
    }
    let mut bytes = text.into_bytes();
    for mutation in bytes_mutations {
        if bytes.is_empty() {
            break;
        }
        match mutation {
            ByteMutation::Flip { at, mask } => {
                let i = at.index(bytes.len());
                bytes[i] ^= mask;
            }
            ByteMutation::Truncate { at } => bytes.truncate(at.index(bytes.len())),
            ByteMutation::Insert { at, bytes: new } => {
                let i = at.index(bytes.len() + 1);
                bytes.splice(i..i, new.iter().copied());
            }
            ByteMutation::Delete { at, len } => {
                let i = at.index(bytes.len());
                let end = (i + len).min(bytes.len());
                bytes.drain(i..end);
            }
        }
    }
    bytes
}

/// Cases for one `fuzz_*` test: its share of `PLAINT_FUZZ_CASES` (default
/// [`DEFAULT_FUZZ_CASES`]).
fn cases(share_percent: u32) -> ProptestConfig {
    let total = std::env::var("PLAINT_FUZZ_CASES")
        .ok()
        .map(|v| {
            v.parse::<u32>()
                .expect("PLAINT_FUZZ_CASES must be a number of cases")
        })
        .unwrap_or(DEFAULT_FUZZ_CASES);
    ProptestConfig {
        cases: (total / 100 * share_percent).max(1),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases(15))]

    /// The generators' baseline: every generated valid event is accepted as it was written,
    /// and its own wire form decodes to the same value.
    #[test]
    fn fuzz_valid_events_of_every_type_are_accepted(event in arb_valid_event(), pretty in any::<bool>()) {
        let bytes = if pretty { serde_json::to_vec_pretty(&event) } else { serde_json::to_vec(&event) }.unwrap();
        let decoded = match decode_checked(&bytes, now(), &Limits::default()) {
            Ok(e) => e,
            Err(r) => return Err(TestCaseError::fail(format!("valid event rejected: {r}\n{}", show(&bytes)))),
        };
        prop_assert_eq!(decoded.event_type().as_str(), event["type"].as_str().unwrap());
        prop_assert_eq!(decoded.complaint_id.as_str(), event["subject"].as_str().unwrap());
        prop_assert_eq!(decoded.id.to_string(), event["id"].as_str().unwrap());
        prop_assert_eq!(decode(&decoded.to_wire(), now(), &Limits::default()), Ok(decoded));
    }
}

proptest! {
    #![proptest_config(cases(60))]

    /// Mutations of valid events: one to four structural changes, then zero to three byte
    /// changes. Whatever comes out is decided (accepted within limits, or rejected with a
    /// detail), quickly, the same way twice.
    #[test]
    fn fuzz_mutated_events_are_decided_quickly_and_stably(
        event in arb_valid_event(),
        json_mutations in proptest::collection::vec(arb_json_mutation(), 0..4),
        byte_mutations in proptest::collection::vec(arb_byte_mutation(), 0..3),
        pretty in any::<bool>(),
    ) {
        let bytes = mutate(event, &json_mutations, &byte_mutations, pretty);
        let _ = decode_checked(&bytes, now(), &Limits::default());
        // A tighter configuration must not change what "decided" means.
        let tight = Limits { max_payload_bytes: 2048, max_depth: 4, max_tags: 1, max_text_bytes: 16, max_name_bytes: 8, max_future_skew: Duration::ZERO };
        let _ = decode_checked(&bytes, now(), &tight);
        // A producer's clock ahead of ours.
        let behind = now().checked_sub(SignedDuration::from_secs(600)).unwrap();
        let _ = decode_checked(&bytes, behind, &Limits::default());
    }
}

proptest! {
    #![proptest_config(cases(15))]

    /// Bytes with no structure at all, and JSON-flavoured noise.
    #[test]
    fn fuzz_arbitrary_bytes_are_decided(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            "[{}\\[\\]\":,0-9a-z\\\\ .\\-]{0,400}".prop_map(String::into_bytes),
        ]
    ) {
        let _ = decode_checked(&bytes, now(), &Limits::default());
    }
}

proptest! {
    #![proptest_config(cases(10))]

    /// Nesting at any depth, in any field, open or balanced, inside strings or not: the
    /// depth rule holds exactly and nothing recurses without bound.
    #[test]
    fn fuzz_deep_nesting_is_bounded(
        event in arb_valid_event(),
        in_data in any::<bool>(),
        key in any::<Index>(),
        depth in prop_oneof![1usize..40, 1usize..30_000],
        arrays in any::<bool>(),
        balanced in any::<bool>(),
    ) {
        let mutation = JsonMutation::Nest { in_data, key, depth, arrays };
        let mut bytes = mutate(event, &[mutation], &[], false);
        if !balanced {
            let close = if arrays { b']' } else { b'}' };
            let keep = bytes.len() - bytes.iter().rev().take_while(|&&b| b == close || b == b'}').count();
            bytes.truncate(keep);
        }
        if let Ok(event) = decode_checked(&bytes, now(), &Limits::default()) {
            prop_assert!(depth <= 15, "accepted nesting of {depth} inside an event: {:?}", event.id);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Limits, each at its edge

/// A valid `complaint.filed` with `data` adjusted by `edit`.
fn filed_with(edit: impl FnOnce(&mut Map<String, Value>)) -> Value {
    let mut event = json!({
        "specversion": "1.0",
        "id": "0b6f1f9e-3c55-4d0e-9a57-5d2b3f0e8a11",
        "source": "crm-eu",
        "type": "complaint.filed",
        "subject": "C-1",
        "time": "2024-03-04T09:00:00Z",
        "data": {
            "customer_id": "cust-1", "region": "eu", "category": "delivery",
            "channel": "email", "severity": "low", "summary": "Broken.", "tags": ["a"],
        },
    });
    edit(event["data"].as_object_mut().unwrap());
    event
}

/// A field's name and how to build an event with that field set to a value.
type FieldCase = (&'static str, Box<dyn Fn(&str) -> Value>);

/// A valid `complaint.filed` with `data.<field>` set to `value`.
fn filed_set(field: &str, value: Value) -> Value {
    filed_with(|d| {
        d.insert(field.to_owned(), value);
    })
}

/// An event of `event_type` with the given `data` and envelope `time`.
fn event_of(event_type: &str, data: Value, time: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": "7d1c1e0a-6b0c-4b55-8f39-0c6d7e1d2a33",
        "source": "crm-eu",
        "type": event_type,
        "subject": "C-1",
        "time": time,
        "data": data,
    })
}

fn check(event: &Value, limits: &Limits) -> Result<Event, Rejection> {
    decode_checked(&serde_json::to_vec(event).unwrap(), now(), limits)
}

fn reason(event: &Value, limits: &Limits) -> Option<RejectReason> {
    check(event, limits).err().map(|r| r.reason)
}

const SCHEMA: Option<RejectReason> = Some(RejectReason::SchemaViolation);

#[test]
fn limit_payload_size_is_checked_before_parsing() {
    let limits = Limits::default();
    assert_eq!(limits.max_payload_bytes, 64 * 1024);
    // Neither UTF-8 nor JSON: only a check that runs before both can call it too large.
    for junk in [
        vec![0xffu8; 64 * 1024 + 1],
        vec![b'['; 64 * 1024 + 1],
        vec![b'"'; 10 << 20],
    ] {
        let rejection = decode_checked(&junk, now(), &limits).unwrap_err();
        assert_eq!(rejection.reason, RejectReason::TooLarge, "{rejection}");
        assert!(
            rejection.detail.contains("65536"),
            "the detail names the limit: {rejection}"
        );
    }
    // A valid event padded with insignificant whitespace to exactly the limit is fine; one
    // byte more is not.
    let mut bytes = serde_json::to_vec(&filed_with(|_| {})).unwrap();
    bytes.resize(limits.max_payload_bytes, b' ');
    assert!(decode_checked(&bytes, now(), &limits).is_ok());
    bytes.push(b' ');
    assert_eq!(
        decode_checked(&bytes, now(), &limits).unwrap_err().reason,
        RejectReason::TooLarge
    );
    // A configured limit applies the same way.
    let small = Limits {
        max_payload_bytes: 300,
        ..Limits::default()
    };
    let mut bytes = serde_json::to_vec(&filed_with(|_| {})).unwrap();
    assert!(bytes.len() < 300);
    bytes.resize(300, b' ');
    assert!(decode_checked(&bytes, now(), &small).is_ok());
    bytes.push(b'\n');
    assert_eq!(
        decode_checked(&bytes, now(), &small).unwrap_err().reason,
        RejectReason::TooLarge
    );
    // The largest thing the defaults let through, 64 KiB of strings, decodes in budget.
    let big = filed_with(|d| {
        d.insert("summary".into(), json!("𝄞".repeat(1024)));
        d.insert("extension".into(), json!("x".repeat(59 * 1024)));
    });
    assert!(check(&big, &limits).is_ok());
}

#[test]
fn limit_name_fields_are_counted_in_bytes_and_refuse_control_characters() {
    let limits = Limits::default();
    assert_eq!(limits.max_name_bytes, 256);
    let cases: Vec<FieldCase> = vec![
        (
            "customer_id",
            Box::new(|v| filed_set("customer_id", json!(v))),
        ),
        ("tag", Box::new(|v| filed_set("tags", json!([v])))),
        (
            "source",
            Box::new(|v| {
                let mut e = filed_with(|_| {});
                e["source"] = json!(v);
                e
            }),
        ),
        (
            "by",
            Box::new(|v| {
                event_of(
                    "complaint.acknowledged",
                    json!({ "by": v }),
                    "2024-03-04T09:00:00Z",
                )
            }),
        ),
        (
            "assignee",
            Box::new(|v| {
                event_of(
                    "complaint.assigned",
                    json!({ "assignee": v }),
                    "2024-03-04T09:00:00Z",
                )
            }),
        ),
        (
            "team",
            Box::new(|v| {
                event_of(
                    "complaint.assigned",
                    json!({ "assignee": "a", "team": v }),
                    "2024-03-04T09:00:00Z",
                )
            }),
        ),
        (
            "closed by",
            Box::new(|v| {
                event_of(
                    "complaint.closed",
                    json!({ "by": v }),
                    "2024-03-04T09:00:00Z",
                )
            }),
        ),
    ];
    for (field, make) in &cases {
        assert!(
            check(&make(&"n".repeat(256)), &limits).is_ok(),
            "{field} of 256 bytes"
        );
        assert_eq!(
            reason(&make(&"n".repeat(257)), &limits),
            SCHEMA,
            "{field} of 257 bytes"
        );
        // 128 two-byte characters are 256 bytes; one more byte is over.
        assert!(
            check(&make(&"é".repeat(128)), &limits).is_ok(),
            "{field} of 128 'é'"
        );
        assert_eq!(
            reason(&make(&format!("{}a", "é".repeat(128))), &limits),
            SCHEMA,
            "{field}"
        );
        assert_eq!(reason(&make(""), &limits), SCHEMA, "empty {field}");
        for control in ["a\0b", "a\nb", "\u{1b}[31m", "a\u{7f}", "a\u{85}b"] {
            assert_eq!(
                reason(&make(control), &limits),
                SCHEMA,
                "{field} {control:?}"
            );
        }
    }
    let tight = Limits {
        max_name_bytes: 8,
        ..Limits::default()
    };
    let by = |v: &str| {
        event_of(
            "complaint.acknowledged",
            json!({ "by": v }),
            "2024-03-04T09:00:00Z",
        )
    };
    assert!(check(&by("abcdefgh"), &tight).is_ok());
    assert_eq!(reason(&by("abcdefghi"), &tight), SCHEMA);
}

#[test]
fn limit_free_text_fields_are_bounded_but_may_hold_any_character() {
    let limits = Limits::default();
    assert_eq!(limits.max_text_bytes, 4096);
    let t = "2024-03-04T09:00:00Z";
    let cases: Vec<FieldCase> = vec![
        ("summary", Box::new(|v| filed_set("summary", json!(v)))),
        (
            "note",
            Box::new(move |v| {
                event_of(
                    "complaint.customer_contacted",
                    json!({"by": "a", "channel": "web", "note": v}),
                    t,
                )
            }),
        ),
        (
            "awaiting reason",
            Box::new(move |v| {
                event_of(
                    "complaint.awaiting_customer",
                    json!({"by": "a", "reason": v}),
                    t,
                )
            }),
        ),
        (
            "escalated reason",
            Box::new(move |v| {
                event_of(
                    "complaint.escalated",
                    json!({"tier": 2, "by": "a", "reason": v}),
                    t,
                )
            }),
        ),
        (
            "resolution",
            Box::new(move |v| {
                event_of("complaint.resolved", json!({"by": "a", "resolution": v}), t)
            }),
        ),
        (
            "reopened reason",
            Box::new(move |v| event_of("complaint.reopened", json!({ "reason": v }), t)),
        ),
        (
            "withdrawn reason",
            Box::new(move |v| event_of("complaint.withdrawn", json!({ "reason": v }), t)),
        ),
        (
            "released reason",
            Box::new(move |v| event_of("escalation.released", json!({"by": "a", "reason": v}), t)),
        ),
    ];
    for (field, make) in &cases {
        assert!(
            check(&make(&"s".repeat(4096)), &limits).is_ok(),
            "{field} of 4096 bytes"
        );
        assert_eq!(
            reason(&make(&"s".repeat(4097)), &limits),
            SCHEMA,
            "{field} of 4097 bytes"
        );
        assert_eq!(
            reason(&make(&"€".repeat(1366)), &limits),
            SCHEMA,
            "{field} of 4098 bytes in 1366 chars"
        );
        assert!(
            check(
                &make("line one\nline two\ttab \0 nul \u{202e} rtl"),
                &limits
            )
            .is_ok(),
            "{field}"
        );
    }
    let tight = Limits {
        max_text_bytes: 3,
        ..Limits::default()
    };
    let reopened = |v: &str| event_of("complaint.reopened", json!({ "reason": v }), t);
    assert!(check(&reopened("abc"), &tight).is_ok());
    assert_eq!(reason(&reopened("abcd"), &tight), SCHEMA);
}

#[test]
fn limit_number_of_tags() {
    let limits = Limits::default();
    assert_eq!(limits.max_tags, 32);
    let tags = |n: usize| {
        filed_set(
            "tags",
            json!((0..n).map(|i| format!("t{i}")).collect::<Vec<_>>()),
        )
    };
    assert!(check(&tags(0), &limits).is_ok());
    assert!(check(&tags(32), &limits).is_ok());
    let rejection = check(&tags(33), &limits).unwrap_err();
    assert_eq!(rejection.reason, RejectReason::SchemaViolation);
    assert!(
        rejection.detail.contains("33") && rejection.detail.contains("32"),
        "{rejection}"
    );
    assert_eq!(reason(&tags(2000), &limits), SCHEMA);
    let none = Limits {
        max_tags: 0,
        ..Limits::default()
    };
    assert!(check(&tags(0), &none).is_ok());
    assert_eq!(reason(&tags(1), &none), SCHEMA);
}

/// `{"extension": [[...]]}` in `data`: the envelope and `data` are two levels, the
/// extension's arrays the rest.
fn nested(levels_in_extension: usize, arrays: bool) -> Vec<u8> {
    let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
    let inner = if arrays { "" } else { "1" };
    let mut text = serde_json::to_string(&filed_set("extension", json!("@@X@@"))).unwrap();
    text = text.replace(
        "\"@@X@@\"",
        &format!(
            "{}{inner}{}",
            open.repeat(levels_in_extension),
            close.repeat(levels_in_extension)
        ),
    );
    text.into_bytes()
}

#[test]
fn limit_nesting_depth_counts_every_object_and_array() {
    let limits = Limits::default();
    assert_eq!(limits.max_depth, 16);
    for arrays in [true, false] {
        assert!(
            decode_checked(&nested(14, arrays), now(), &limits).is_ok(),
            "16 levels in all"
        );
        let rejection = decode_checked(&nested(15, arrays), now(), &limits).unwrap_err();
        assert_eq!(rejection.reason, RejectReason::SchemaViolation);
        assert!(rejection.detail.contains("nesting"), "{rejection}");
    }
    // Brackets inside strings are text, escaped quotes included.
    let in_strings = filed_set("summary", json!(format!("\"{}\\", "[{".repeat(500))));
    assert!(check(&in_strings, &limits).is_ok());
    // Hostile depth that fits in 64 KiB, balanced or not, is refused by the pre-scan.
    for bytes in [
        vec![b'['; 60_000],
        nested(30_000, true),
        nested(10_000, false),
    ] {
        assert!(bytes.len() <= limits.max_payload_bytes);
        assert_eq!(
            decode_checked(&bytes, now(), &limits).unwrap_err().reason,
            RejectReason::SchemaViolation
        );
    }
    // Without the depth rule, nothing overflows the stack either: serde_json skips unknown
    // fields iteratively (so the deep extension is accepted) and stops typed fields at its
    // recursion limit.
    let unlimited = Limits {
        max_depth: usize::MAX,
        ..Limits::default()
    };
    for bytes in [nested(30_000, true), nested(10_000, false)] {
        assert!(decode_checked(&bytes, now(), &unlimited).is_ok());
    }
    let deep_by = format!("{}\"x\"{}", "[".repeat(30_000), "]".repeat(30_000));
    let deep_by = serde_json::to_string(&event_of(
        "complaint.acknowledged",
        json!({"by": "@@X@@"}),
        "2024-03-04T09:00:00Z",
    ))
    .unwrap()
    .replace("\"@@X@@\"", &deep_by);
    assert_eq!(
        decode_checked(deep_by.as_bytes(), now(), &unlimited)
            .unwrap_err()
            .reason,
        RejectReason::SchemaViolation
    );
    let tight = Limits {
        max_depth: 2,
        ..Limits::default()
    };
    assert!(check(
        &filed_with(|d| {
            d.remove("tags");
        }),
        &tight
    )
    .is_ok());
    assert_eq!(
        reason(&filed_with(|_| {}), &tight),
        SCHEMA,
        "tags are a third level"
    );
}

#[test]
fn limit_future_times_are_refused_and_old_times_never() {
    let limits = Limits::default();
    assert_eq!(limits.max_future_skew, Duration::from_secs(300));
    let ack = |time: &str| event_of("complaint.acknowledged", json!({ "by": "a" }), time);
    for ok in [
        "2024-03-04T10:05:00Z",
        "2024-03-04T10:04:59.999999999Z",
        "2024-03-04T11:05:00+01:00",
        "2024-03-05T00:05:00+14:00",
        "2024-03-03T22:05:00-12:00",
        "2024-03-04T09:00:00Z",
        "2000-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "1900-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
    ] {
        assert!(check(&ack(ok), &limits).is_ok(), "{ok} must be accepted");
    }
    for (future, ahead) in [
        ("2024-03-04T10:05:00.000000001Z", "1 ns over"),
        ("2024-03-04T10:05:01Z", "1 s over"),
        (
            "2024-03-04T06:05:01-04:00",
            "an offset that makes it look earlier",
        ),
        ("2024-03-05T10:00:00Z", "a day"),
        ("9999-01-01T00:00:00Z", "the year 9999"),
    ] {
        let rejection = check(&ack(future), &limits).unwrap_err();
        assert_eq!(
            rejection.reason,
            RejectReason::TimeSkew,
            "{future} ({ahead}): {rejection}"
        );
        assert!(
            rejection.detail.contains("300"),
            "the detail names the limit: {rejection}"
        );
    }
    // Only the envelope's time is the event time: a callback may be promised far ahead.
    let callback = event_of(
        "complaint.callback_promised",
        json!({"by": "a", "due_by": "2030-01-01T00:00:00Z"}),
        "2024-03-04T09:00:00Z",
    );
    assert!(check(&callback, &limits).is_ok());
    let strict = Limits {
        max_future_skew: Duration::ZERO,
        ..Limits::default()
    };
    assert!(check(&ack("2024-03-04T10:00:00Z"), &strict).is_ok());
    assert_eq!(
        reason(&ack("2024-03-04T10:00:01Z"), &strict),
        Some(RejectReason::TimeSkew)
    );
    // Extreme clocks and limits do not overflow into a panic.
    let endless = Limits {
        max_future_skew: Duration::MAX,
        ..Limits::default()
    };
    assert!(check(&ack("9999-01-01T00:00:00Z"), &endless).is_ok());
    let at_the_end = decode(
        &serde_json::to_vec(&ack("9999-01-01T00:00:00Z")).unwrap(),
        Timestamp::MAX,
        &limits,
    );
    assert!(at_the_end.is_ok(), "{at_the_end:?}");
    let at_the_start = decode(
        &serde_json::to_vec(&ack("2024-03-04T09:00:00Z")).unwrap(),
        Timestamp::MIN,
        &limits,
    );
    assert_eq!(at_the_start.unwrap_err().reason, RejectReason::TimeSkew);
}

#[test]
fn limit_region_and_category_are_subject_safe_tokens() {
    let limits = Limits::default();
    let good = ["eu", "a", "0", "eu-west_1", "_", "-", &"r".repeat(64)];
    let bad = [
        "",
        "EU",
        "Eu",
        "eu.west",
        "eu west",
        "*",
        ">",
        "eu>",
        "eu*",
        "é",
        "eu\0",
        "eu\n",
        "eu/1",
        "eu:1",
        "\u{ff45}u",
        &"r".repeat(65),
    ];
    for field in ["region", "category"] {
        for token in good {
            assert!(is_token(token), "{token:?}");
            let e = filed_set(field, json!(token));
            assert!(check(&e, &limits).is_ok(), "{field} {token:?}");
        }
        for token in bad {
            assert!(!is_token(token), "{token:?}");
            let e = filed_set(field, json!(token));
            assert_eq!(reason(&e, &limits), SCHEMA, "{field} {token:?}");
        }
    }
    // plaint's own events carry regions too, and are held to the same rule.
    let t = "2024-03-04T09:00:00Z";
    for token in bad {
        let sla = event_of(
            "sla.breached",
            json!({"metric": "resolution", "policy": "p", "region": token, "due_at": t, "target_seconds": 60}),
            t,
        );
        assert_eq!(
            reason(&sla, &limits),
            SCHEMA,
            "sla.breached region {token:?}"
        );
        let raised = event_of(
            "escalation.raised",
            json!({"tier": 1, "region": token, "reasons": []}),
            t,
        );
        assert_eq!(
            reason(&raised, &limits),
            SCHEMA,
            "escalation.raised region {token:?}"
        );
    }
}

#[test]
fn limit_complaint_id_syntax() {
    let limits = Limits::default();
    let with_subject = |s: &str| {
        let mut e = filed_with(|_| {});
        e["subject"] = json!(s);
        e
    };
    for ok in [
        "C",
        "C-2024-000123",
        "crm:eu:42",
        "a.b_c-d:e",
        "0",
        &"x".repeat(128),
    ] {
        let event = check(&with_subject(ok), &limits).unwrap();
        assert_eq!(event.complaint_id, ok);
    }
    for bad in [
        "",
        " ",
        "C 1",
        "C/1",
        "C*",
        "C>",
        "C\0",
        "C\n",
        "C\u{e9}",
        "C\u{ff11}",
        "C#1",
        "C%2F",
        "C\"",
        "C\\",
        &"x".repeat(129),
    ] {
        assert_eq!(
            reason(&with_subject(bad), &limits),
            SCHEMA,
            "complaint id {bad:?}"
        );
    }
    let mut e = filed_with(|_| {});
    e["subject"] = json!(42);
    assert_eq!(reason(&e, &limits), SCHEMA, "a number is not an id");
}

#[test]
fn limit_event_id_is_a_canonical_uuid() {
    let limits = Limits::default();
    let with_id = |id: &str| {
        let mut e = filed_with(|_| {});
        e["id"] = json!(id);
        e
    };
    assert!(check(&with_id("0B6F1F9E-3C55-4D0E-9A57-5D2B3F0E8A11"), &limits).is_ok());
    for bad in [
        "",
        "0b6f1f9e3c554d0e9a575d2b3f0e8a11",
        "{0b6f1f9e-3c55-4d0e-9a57-5d2b3f0e8a11}",
        "urn:uuid:0b6f1f9e-3c55-4d0e-9a57-5d2b3f0e8a11",
        "0b6f1f9e-3c55-4d0e-9a57-5d2b3f0e8a1",
        "0b6f1f9e-3c55-4d0e-9a57-5d2b3f0e8a1z",
        "0b6f1f9e+3c55-4d0e-9a57-5d2b3f0e8a11",
    ] {
        assert_eq!(reason(&with_id(bad), &limits), SCHEMA, "id {bad:?}");
    }
}

/// Regression: `decode_stored` checked stored events against the *default* limits while
/// the ingester accepts them under the *configured* ones (`[ingest] max_tags`,
/// `max_text_bytes`): raising a limit made every projector stop on the first event that
/// used the room.
#[test]
fn decode_stored_reads_back_what_raised_limits_accepted() {
    let raised = Limits {
        max_tags: 64,
        max_text_bytes: 8192,
        ..Limits::default()
    };
    let tags = filed_set(
        "tags",
        json!((0..40).map(|i| format!("t{i}")).collect::<Vec<_>>()),
    );
    let summary = filed_set("summary", json!("s".repeat(5000)));
    for event in [tags, summary] {
        let bytes = serde_json::to_vec(&event).unwrap();
        assert!(
            decode(&bytes, now(), &raised).is_ok(),
            "the ingester accepts it"
        );
        let back = decode_stored(&bytes);
        assert!(back.is_ok(), "and the log reads it back: {back:?}");
    }
}
