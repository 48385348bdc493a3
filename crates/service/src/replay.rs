//! Replay: the log's entries, filtered, as NDJSON lines `{"seq": N, "event": <bytes>}`.
//!
//! The stored bytes are spliced into each line, never re-encoded, so a replay prints
//! events exactly as they were received. Filters on complaint, region, type and time use
//! the index records, so only matching events are touched. Work is done in pages of
//! bounded size: the NATS API serves one page per request (the client asks for the next
//! when it has written the last), which is the flow control that lets a 10-million-event
//! replay run in constant memory on both sides.

use plaint_events::{EventType, Timestamp};
use plaint_log::{EntryMeta, Log, LogError};
use serde::{Deserialize, Serialize};

/// Which events to replay. All conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplayFilter {
    pub from_seq: Option<u64>,
    pub to_seq: Option<u64>,
    /// Event time at or after.
    pub since: Option<Timestamp>,
    /// Event time before.
    pub until: Option<Timestamp>,
    pub complaint: Option<String>,
    pub region: Option<String>,
    /// Event types (`complaint.filed`, `sla.breached`, ...).
    pub types: Vec<String>,
}

impl ReplayFilter {
    fn needs_meta(&self) -> bool {
        self.since.is_some()
            || self.until.is_some()
            || self.region.is_some()
            || !self.types.is_empty()
    }

    fn matches(&self, meta: &EntryMeta, types: &[EventType]) -> bool {
        self.since.is_none_or(|s| meta.time >= s)
            && self.until.is_none_or(|u| meta.time < u)
            && self.region.as_ref().is_none_or(|r| *r == meta.region)
            && self
                .complaint
                .as_ref()
                .is_none_or(|c| *c == meta.complaint_id)
            && (types.is_empty() || types.contains(&meta.event_type))
    }

    /// Checks the filter and returns the parsed types.
    pub fn parsed_types(&self) -> Result<Vec<EventType>, String> {
        self.types
            .iter()
            .map(|t| {
                EventType::parse(t).ok_or_else(|| {
                    format!(
                        "unknown event type {t:?}; types are e.g. complaint.filed, sla.breached"
                    )
                })
            })
            .collect()
    }
}

/// One page of replay output.
#[derive(Debug, Clone, Default)]
pub struct ReplayPage {
    /// NDJSON, one line per event.
    pub lines: Vec<u8>,
    pub events: u64,
    /// Where the next page starts, or None when the replay is complete.
    pub next_seq: Option<u64>,
}

/// Appends one output line for an entry.
pub fn write_line(out: &mut Vec<u8>, seq: u64, event: &[u8]) {
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"event\":");
    out.extend_from_slice(event);
    out.extend_from_slice(b"}\n");
}

/// Produces the page of matching events starting at `start` (inclusive), stopping before
/// `max_bytes` of output is exceeded (a page always holds at least one event).
pub fn page(
    log: &Log,
    filter: &ReplayFilter,
    start: u64,
    max_bytes: usize,
) -> Result<ReplayPage, LogError> {
    let types = filter.parsed_types().unwrap_or_default();
    let to = filter.to_seq.unwrap_or(u64::MAX).min(log.last_seq());
    let start = start.max(filter.from_seq.unwrap_or(1)).max(1);
    let mut page = ReplayPage::default();
    if start > to {
        return Ok(page);
    }
    if let Some(complaint) = &filter.complaint {
        // The stream index lists the complaint's entries: no scan.
        let seqs = log.stream(complaint)?.map(|s| s.seqs).unwrap_or_default();
        for seq in seqs.into_iter().filter(|s| *s >= start && *s <= to) {
            if page.lines.len() >= max_bytes && page.events > 0 {
                page.next_seq = Some(seq);
                return Ok(page);
            }
            if filter.needs_meta() {
                let segment = log.segments(seq).next().transpose()?;
                let meta = segment.as_ref().and_then(|s| s.meta().ok().flatten());
                let keep = meta
                    .and_then(|m| {
                        m.into_iter()
                            .nth((seq - segment.as_ref().unwrap().first_seq) as usize)
                    })
                    .is_some_and(|m| filter.matches(&m, &types));
                if !keep {
                    continue;
                }
            }
            if let Some(bytes) = log.read(seq)? {
                write_line(&mut page.lines, seq, &bytes);
                page.events += 1;
            }
        }
        return Ok(page);
    }
    for segment in log.segments(start) {
        let segment = segment?;
        let view = segment.view();
        if view.first_seq > to {
            break;
        }
        let metas = if filter.needs_meta() {
            segment.meta()?
        } else {
            None
        };
        for (i, (seq, bytes)) in view.iter().enumerate() {
            if seq < start {
                continue;
            }
            if seq > to {
                return Ok(page);
            }
            if let Some(metas) = &metas {
                if !metas.get(i).is_some_and(|m| filter.matches(m, &types)) {
                    continue;
                }
            }
            if page.lines.len() + bytes.len() + 32 > max_bytes && page.events > 0 {
                page.next_seq = Some(seq);
                return Ok(page);
            }
            write_line(&mut page.lines, seq, bytes);
            page.events += 1;
        }
    }
    Ok(page)
}
