//! Historical complaint exports (CSV, plain or gzip) turned into plaint events, so users can
//! bootstrap baselines from the data they already have.
//!
//! - [`Mapping`]: which CSV column is the source id, opened/closed time, region, category,
//!   channel, severity, customer, amount, summary, resolver and tags; constant
//!   [`Defaults`]; value tables for channel and severity; null values; date format and time
//!   zone. Deserialised from a small TOML file (`import.example.toml` documents every key).
//! - [`Preset`]: built-in mappings for the CFPB Consumer Complaint Database export (`cfpb`)
//!   and the NYC Council constituent-services export (`nyc-council`). A preset is nothing
//!   but a mapping shipped in the crate ([`Preset::mapping_toml`], `src/presets/*.toml`,
//!   where each decision is written down).
//! - [`Importer`]: streams a CSV from any reader (or [`Importer::open`] on a path, with
//!   [`open_path`] recognising gzip by its magic bytes) and yields one [`ImportItem`] per
//!   row: the row's events, or a [`SkipReason`]. It keeps an [`ImportSummary`] and reports
//!   [`Progress`] (rows, and bytes of the file consumed) for a progress bar.
//!
//! The rules, which users can rely on:
//! - Each row gives a `complaint.filed` at its opened time, and a `complaint.resolved` at its
//!   closed time when there is one that is not before the opened time (otherwise the row is
//!   counted in [`ImportSummary::close_before_open`]).
//! - Event ids are `own::event_id(["import", <mapping name>, <source id>, "filed"|"resolved"])`
//!   (UUIDv5), `source` is `import/<mapping name>`, the complaint id is
//!   `<id_prefix><source id>`. Every event is a pure function of its row and the mapping:
//!   importing a file twice is a no-op in the log, and a source id that appears twice with
//!   different contents yields the same ids, so the log rejects the second copy as
//!   `conflicting_duplicate` instead of silently overwriting.
//! - Region and category are slugs ([`slug`]): lowercase ASCII alphanumerics, every other
//!   run of characters one `-`, trimmed, at most 64 bytes; so `QUALITY OF LIFE` and
//!   `Quality of Life` are one category. Tags are `<name>:<slug>`, at most 16 per row.
//! - Dates without a time of day are read at `date_only_time` (default 12:00) in
//!   `time_zone`: noon keeps the calendar day whatever zone a reader later uses.
//! - Without a customer column every complaint gets its own customer,
//!   `anonymous:<complaint id>`, so repeat-complainant rules do not fire on exports that do
//!   not identify customers.
//! - Rows that cannot become valid events are skipped with a reason, never half-imported;
//!   every produced event passes `plaint_events::decode` (tested over the real exports).
//!
//! What it does not do: publish (the CLI sends [`ImportedRow::messages`] to JetStream with
//! `Nats-Msg-Id` = event id), deduplicate rows (the log does that, by id), guess a mapping,
//! or emit events other than `filed` and `resolved`. Events come in file order, so a
//! `resolved` is published right after its `filed` even though its time may be years later.

mod convert;
mod importer;
mod mapping;

use std::{io, path::PathBuf};

pub use convert::slug;
pub use importer::{
    gunzip_if_compressed, open_path, ByteCounter, CountingReader, ImportItem, ImportMessage,
    ImportSummary, ImportedRow, Importer, OpenedInput, Progress, SkipReason,
};
pub use mapping::{Columns, Defaults, Mapping, Preset, TagColumn};

/// Everything that stops an import. Row-level problems are not errors: they are
/// [`ImportItem::Skipped`] items.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot open {path}: {source}; check the path and its permissions")]
    Open { path: PathBuf, source: io::Error },
    #[error("unknown preset {name:?}; the presets are: {presets}")]
    UnknownPreset { name: String, presets: String },
    #[error("{arg:?} is neither a preset ({presets}) nor a readable mapping file: {source}")]
    MappingFile {
        arg: String,
        presets: String,
        source: io::Error,
    },
    #[error("the mapping is not valid: {0}; see crates/import/import.example.toml for the format")]
    MappingToml(Box<toml::de::Error>),
    #[error("the mapping is not valid: {0}")]
    InvalidMapping(String),
    #[error("the CSV header has no column {column:?} (mapped as {role}); fix the mapping. Columns present: {available}")]
    MissingColumn {
        role: &'static str,
        column: String,
        available: String,
    },
    #[error("the input is empty: a CSV header row is required")]
    NoHeader,
    #[error("reading the CSV failed at line {line}: {source}; the file may be truncated, corrupt, or not CSV")]
    Read { line: u64, source: csv::Error },
}

#[cfg(test)]
mod tests;
