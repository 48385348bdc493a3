//! What the runner's integration tests share.

use plaint_log::{Candidate, ExpectedVersion, Log, LogOptions};

/// A log in `dir` (`log.sled`), flushed but not fsynced: tests need no power-cut guarantee.
pub fn open_log(dir: &std::path::Path) -> Log {
    Log::open(
        dir.join("log.sled"),
        LogOptions {
            durability: plaint_log::Durability::Flush,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Appends one event given as JSON, as ingest would.
#[allow(dead_code)] // not every test binary appends events one at a time
pub fn append(log: &Log, event: &serde_json::Value) {
    let raw = plaint_testkit::fixtures::bytes(event);
    let decoded = plaint_events::decode_stored(&raw).unwrap();
    log.writer()
        .append_one(Candidate {
            event: &decoded,
            bytes: &raw,
            subject_region: None,
            expected: ExpectedVersion::Any,
        })
        .unwrap();
}
