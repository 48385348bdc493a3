//! Streaming a CSV export through a [`Mapping`]: [`Importer`] yields one [`ImportItem`] per
//! row and keeps the [`ImportSummary`].

use std::{
    collections::BTreeMap,
    fmt,
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use plaint_events::{subjects, Event};
use serde::Serialize;

use crate::{
    convert::{RowConverter, Skip},
    ImportError, Mapping,
};

/// Why a row produced no events. Ordered for stable summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The row has a different number of fields than the header.
    WrongFieldCount,
    /// The row is not UTF-8.
    InvalidUtf8,
    MissingId,
    /// The complaint id (prefix + source id) is not 1-128 characters of `[A-Za-z0-9._:-]`.
    InvalidId,
    MissingOpenDate,
    /// The opened value does not match the mapping's date format.
    InvalidOpenDate,
    /// The closed value is present but does not match the date format.
    InvalidCloseDate,
    /// No region value (empty, a null value, or nothing left after slugging) and no default.
    MissingRegion,
    /// No category value and no default.
    MissingCategory,
    /// A channel value that is neither in `channel_values` nor a channel name.
    InvalidChannel,
    /// A severity value that is neither in `severity_values` nor a severity name.
    InvalidSeverity,
    /// A customer id longer than 256 bytes or with control characters.
    InvalidCustomerId,
    /// An amount that is not a non-negative decimal with at most 4 decimal places.
    InvalidAmount,
    /// A resolver longer than 256 bytes or with control characters, on a closed row.
    InvalidResolvedBy,
}

impl SkipReason {
    pub const ALL: [SkipReason; 14] = [
        SkipReason::WrongFieldCount,
        SkipReason::InvalidUtf8,
        SkipReason::MissingId,
        SkipReason::InvalidId,
        SkipReason::MissingOpenDate,
        SkipReason::InvalidOpenDate,
        SkipReason::InvalidCloseDate,
        SkipReason::MissingRegion,
        SkipReason::MissingCategory,
        SkipReason::InvalidChannel,
        SkipReason::InvalidSeverity,
        SkipReason::InvalidCustomerId,
        SkipReason::InvalidAmount,
        SkipReason::InvalidResolvedBy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::WrongFieldCount => "wrong_field_count",
            SkipReason::InvalidUtf8 => "invalid_utf8",
            SkipReason::MissingId => "missing_id",
            SkipReason::InvalidId => "invalid_id",
            SkipReason::MissingOpenDate => "missing_open_date",
            SkipReason::InvalidOpenDate => "invalid_open_date",
            SkipReason::InvalidCloseDate => "invalid_close_date",
            SkipReason::MissingRegion => "missing_region",
            SkipReason::MissingCategory => "missing_category",
            SkipReason::InvalidChannel => "invalid_channel",
            SkipReason::InvalidSeverity => "invalid_severity",
            SkipReason::InvalidCustomerId => "invalid_customer_id",
            SkipReason::InvalidAmount => "invalid_amount",
            SkipReason::InvalidResolvedBy => "invalid_resolved_by",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The events of one imported row.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedRow {
    /// The source's own id (without the prefix).
    pub source_id: String,
    pub complaint_id: String,
    /// The complaint's region: the `<region>` token of every event's subject.
    pub region: String,
    /// `complaint.filed`, then `complaint.resolved` if the row is closed. Publish in order.
    pub events: Vec<Event>,
    /// The row had a close time before its open time, so no `complaint.resolved` was made.
    pub close_before_open: bool,
}

impl ImportedRow {
    /// The JetStream messages of this row's events, in publish order.
    pub fn messages<'a>(
        &'a self,
        subject_prefix: &'a str,
    ) -> impl Iterator<Item = ImportMessage> + 'a {
        self.events.iter().map(move |e| ImportMessage {
            subject: subjects::event(subject_prefix, &self.region, e.event_type()),
            msg_id: e.id.to_string(),
            payload: e.to_wire(),
        })
    }
}

/// One event ready for JetStream: `complaints.events.<region>.<kind>`, with `Nats-Msg-Id`
/// set to the event id so JetStream's dedup window also drops repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportMessage {
    pub subject: String,
    pub msg_id: String,
    pub payload: Vec<u8>,
}

/// What one CSV row became.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportItem {
    Imported {
        /// 1-based data row (the header is not counted).
        row: u64,
        imported: ImportedRow,
    },
    Skipped {
        row: u64,
        reason: SkipReason,
        /// The source id, when the row had a usable one.
        source_id: Option<String>,
    },
}

impl ImportItem {
    pub fn row(&self) -> u64 {
        match self {
            ImportItem::Imported { row, .. } | ImportItem::Skipped { row, .. } => *row,
        }
    }

    pub fn events(&self) -> &[Event] {
        match self {
            ImportItem::Imported { imported, .. } => &imported.events,
            ImportItem::Skipped { .. } => &[],
        }
    }
}

/// Counts of an import so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Data rows read (header excluded).
    pub rows: u64,
    /// Rows that produced events.
    pub imported: u64,
    /// Events produced (filed + resolved).
    pub events: u64,
    pub skipped: BTreeMap<SkipReason, u64>,
    /// Imported rows whose close time was before their open time: filed only.
    pub close_before_open: u64,
}

impl ImportSummary {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    fn count(&mut self, item: &ImportItem) {
        self.rows += 1;
        match item {
            ImportItem::Imported { imported, .. } => {
                self.imported += 1;
                self.events += imported.events.len() as u64;
                self.close_before_open += u64::from(imported.close_before_open);
            }
            ImportItem::Skipped { reason, .. } => *self.skipped.entry(*reason).or_default() += 1,
        }
    }
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rows: {} imported as {} events, {} skipped",
            self.rows,
            self.imported,
            self.events,
            self.skipped_total()
        )?;
        for (reason, count) in &self.skipped {
            write!(f, "\n  skipped {reason}: {count}")?;
        }
        if self.close_before_open > 0 {
            write!(
                f,
                "\n  filed without resolution (closed before opened): {}",
                self.close_before_open
            )?;
        }
        Ok(())
    }
}

/// A byte count shared between a [`CountingReader`] and whoever draws the progress bar.
#[derive(Debug, Clone, Default)]
pub struct ByteCounter(Arc<AtomicU64>);

impl ByteCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counts the bytes read through it.
#[derive(Debug)]
pub struct CountingReader<R> {
    inner: R,
    counter: ByteCounter,
}

impl<R: Read> CountingReader<R> {
    pub fn new(inner: R) -> CountingReader<R> {
        CountingReader {
            inner,
            counter: ByteCounter::default(),
        }
    }

    pub fn counter(&self) -> ByteCounter {
        self.counter.clone()
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A file opened for import, decompressed if it is gzip.
pub struct OpenedInput {
    pub reader: Box<dyn Read + Send>,
    /// The file's size on disk, the total of a progress bar.
    pub size: u64,
    /// Bytes of the file consumed so far (compressed bytes for gzip), comparable to `size`.
    pub consumed: ByteCounter,
    pub gzip: bool,
}

impl fmt::Debug for OpenedInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedInput")
            .field("size", &self.size)
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

/// Opens a CSV file, plain or gzip (recognised by its magic bytes, not its name).
pub fn open_path(path: impl AsRef<Path>) -> Result<OpenedInput, ImportError> {
    let path = path.as_ref();
    let open_error = |source| ImportError::Open {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(open_error)?;
    let size = file.metadata().map_err(open_error)?.len();
    let counting = CountingReader::new(file);
    let consumed = counting.counter();
    let (reader, gzip) = gunzip_if_compressed(counting).map_err(open_error)?;
    Ok(OpenedInput {
        reader,
        size,
        consumed,
        gzip,
    })
}

/// Wraps `reader` in a gzip decoder if its first bytes are the gzip magic (`1f 8b`).
/// Returns whether it did. Works on pipes (stdin): it peeks through a buffer, never seeks.
pub fn gunzip_if_compressed<R: Read + Send + 'static>(
    reader: R,
) -> io::Result<(Box<dyn Read + Send>, bool)> {
    let mut buffered = BufReader::with_capacity(64 * 1024, reader);
    // One fill may return fewer than two bytes on a pipe; a gzip stream split that way is
    // improbable enough that a second look is not worth the complexity.
    let head = buffered.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        // Multi-member: `cat a.gz b.gz` and bgzip output are valid gzip files too.
        Ok((
            Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            true,
        ))
    } else {
        Ok((Box::new(buffered), false))
    }
}

/// Where an import stands, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub rows: u64,
    pub bytes_read: u64,
    /// Known when the importer opened a file itself.
    pub total_bytes: Option<u64>,
}

/// Reads a CSV export row by row and converts each row with a [`Mapping`].
///
/// Streaming: one record buffer is reused, nothing accumulates but the summary. An
/// [`Iterator`] of `Result<ImportItem, ImportError>`: skipped rows are items, an `Err` is
/// fatal (unreadable input) and ends the iteration.
pub struct Importer<R> {
    csv: csv::Reader<R>,
    converter: RowConverter,
    header_len: usize,
    record: csv::ByteRecord,
    counter: ByteCounter,
    total_bytes: Option<u64>,
    summary: ImportSummary,
    finished: bool,
}

impl<R> fmt::Debug for Importer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Importer")
            .field("source", &self.converter.source())
            .field("summary", &self.summary)
            .finish()
    }
}

impl<R: Read> Importer<CountingReader<R>> {
    /// An importer over any reader of CSV text (decompress first: see
    /// [`gunzip_if_compressed`]). Reads the header row now.
    pub fn new(mapping: &Mapping, reader: R) -> Result<Self, ImportError> {
        let counting = CountingReader::new(reader);
        let counter = counting.counter();
        Importer::with_reader(mapping, counting, counter, None)
    }
}

impl Importer<Box<dyn Read + Send>> {
    /// An importer over a plain or gzip CSV file; progress counts the file's bytes.
    pub fn open(mapping: &Mapping, path: impl AsRef<Path>) -> Result<Self, ImportError> {
        let input = open_path(path)?;
        Importer::with_reader(mapping, input.reader, input.consumed, Some(input.size))
    }
}

impl<R: Read> Importer<R> {
    fn with_reader(
        mapping: &Mapping,
        reader: R,
        counter: ByteCounter,
        total_bytes: Option<u64>,
    ) -> Result<Self, ImportError> {
        // Flexible: a short or long row becomes a skipped item instead of a csv error, so the
        // rest of the file is still imported.
        let mut csv = csv::ReaderBuilder::new()
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .from_reader(reader);
        let header_record = csv
            .byte_headers()
            .map_err(|source| ImportError::Read { line: 1, source })?;
        if header_record.is_empty() {
            return Err(ImportError::NoHeader);
        }
        let header: Vec<String> = header_record
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let h = String::from_utf8_lossy(h);
                let h = if i == 0 {
                    h.trim_start_matches('\u{feff}')
                } else {
                    &h
                };
                h.trim().to_owned()
            })
            .collect();
        let converter = RowConverter::new(mapping, &header)?;
        Ok(Importer {
            csv,
            converter,
            header_len: header.len(),
            record: csv::ByteRecord::new(),
            counter,
            total_bytes,
            summary: ImportSummary::default(),
            finished: false,
        })
    }

    /// `import/<name>`, the `source` of every event.
    pub fn source(&self) -> &str {
        self.converter.source()
    }

    pub fn progress(&self) -> Progress {
        Progress {
            rows: self.summary.rows,
            bytes_read: self.counter.get(),
            total_bytes: self.total_bytes,
        }
    }

    /// The counts so far; final once the iterator has returned `None`.
    pub fn summary(&self) -> &ImportSummary {
        &self.summary
    }

    /// Runs the import to the end, calling `each` for every item, and returns the summary.
    pub fn run(mut self, mut each: impl FnMut(&ImportItem)) -> Result<ImportSummary, ImportError> {
        for item in self.by_ref() {
            each(&item?);
        }
        Ok(self.summary)
    }

    fn next_item(&mut self) -> Result<Option<ImportItem>, ImportError> {
        let line = self.csv.position().line();
        if !self
            .csv
            .read_byte_record(&mut self.record)
            .map_err(|source| ImportError::Read { line, source })?
        {
            return Ok(None);
        }
        let row = self.summary.rows + 1;
        let skipped = |reason| ImportItem::Skipped {
            row,
            reason,
            source_id: None,
        };
        let item = if self.record.len() != self.header_len {
            skipped(crate::SkipReason::WrongFieldCount)
        } else if std::str::from_utf8(self.record.as_slice()).is_err() {
            skipped(crate::SkipReason::InvalidUtf8)
        } else {
            match self.converter.convert(&self.record) {
                Ok(imported) => ImportItem::Imported { row, imported },
                Err(Skip { reason, source_id }) => ImportItem::Skipped {
                    row,
                    reason,
                    source_id,
                },
            }
        };
        self.summary.count(&item);
        Ok(Some(item))
    }
}

impl<R: Read> Iterator for Importer<R> {
    type Item = Result<ImportItem, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let result = self.next_item().transpose();
        if !matches!(result, Some(Ok(_))) {
            self.finished = true;
        }
        result
    }
}
