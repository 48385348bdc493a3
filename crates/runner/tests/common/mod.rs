//! What the runner's integration tests share.

use plaint_log::{Log, LogOptions};

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
