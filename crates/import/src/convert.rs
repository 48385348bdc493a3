//! One CSV row → its events: a pure function of (mapping, header, row).

use std::collections::BTreeMap;

use jiff::{civil, fmt::strtime, tz::TimeZone, Timestamp};
use plaint_events::{
    own, AmountAtStake, Channel, ComplaintFiled, ComplaintResolved, Event, EventBody, Money,
    Severity,
};

use crate::{
    mapping::{is_complaint_id_byte, Mapping, MAX_TAGS_PER_ROW},
    ImportError, ImportedRow, SkipReason,
};

/// The contract's limits on names (`customer_id`, `by`) and free text (`summary`).
const MAX_NAME_BYTES: usize = 256;
const MAX_SUMMARY_BYTES: usize = 4096;
const MAX_COMPLAINT_ID_BYTES: usize = 128;

/// Lowercase ASCII letters and digits; every run of anything else becomes one `-`; no
/// leading or trailing `-`; at most 64 bytes. The result is a valid region/category token
/// unless it is empty (nothing alphanumeric in the input).
pub fn slug(text: &str) -> String {
    const MAX: usize = 64;
    let mut out = String::with_capacity(text.len().min(MAX));
    let mut gap = false;
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() {
            let needed = if gap && !out.is_empty() { 2 } else { 1 };
            if out.len() + needed > MAX {
                break;
            }
            if needed == 2 {
                out.push('-');
            }
            out.push(b.to_ascii_lowercase() as char);
            gap = false;
        } else {
            gap = true;
        }
    }
    out
}

struct TagIndex {
    name: String,
    index: usize,
    split: Option<String>,
}

/// A date column's parser with a one-entry cache: exports are usually sorted by date, so
/// consecutive rows repeat the same text and the time-zone arithmetic runs once per day.
struct DateColumn {
    index: usize,
    last: Option<(String, Timestamp)>,
}

enum DateSyntax {
    Iso,
    Strftime(String),
}

/// A [`Mapping`] resolved against a CSV header.
pub(crate) struct RowConverter {
    name: String,
    source: String,
    id_prefix: String,
    time_zone: TimeZone,
    date_only_time: civil::Time,
    date_syntax: DateSyntax,
    null_values: Vec<String>,
    id: usize,
    opened: DateColumn,
    closed: Option<DateColumn>,
    region: Option<usize>,
    category: Option<usize>,
    channel: Option<usize>,
    severity: Option<usize>,
    customer_id: Option<usize>,
    amount: Option<usize>,
    summary: Option<usize>,
    resolved_by: Option<usize>,
    tags: Vec<TagIndex>,
    default_region: Option<String>,
    default_category: Option<String>,
    default_channel: Channel,
    default_severity: Severity,
    currency: Option<String>,
    default_resolved_by: String,
    resolution: String,
    channel_values: BTreeMap<String, Channel>,
    severity_values: BTreeMap<String, Severity>,
}

/// Why a row could not become events, before it is counted.
pub(crate) struct Skip {
    pub reason: SkipReason,
    pub source_id: Option<String>,
}

impl RowConverter {
    pub(crate) fn new(mapping: &Mapping, header: &[String]) -> Result<RowConverter, ImportError> {
        mapping.validate()?;
        let find = |role: &'static str, column: &str| -> Result<usize, ImportError> {
            header
                .iter()
                .position(|h| h == column)
                .ok_or_else(|| ImportError::MissingColumn {
                    role,
                    column: column.to_owned(),
                    available: header.join(", "),
                })
        };
        let find_opt =
            |role: &'static str, column: &Option<String>| -> Result<Option<usize>, ImportError> {
                column.as_deref().map(|c| find(role, c)).transpose()
            };
        let columns = &mapping.columns;
        let time_zone = TimeZone::get(&mapping.time_zone)
            .map_err(|e| ImportError::InvalidMapping(format!("time_zone: {e}")))?;
        let date_only_time = mapping
            .date_only_time
            .parse()
            .map_err(|e| ImportError::InvalidMapping(format!("date_only_time: {e}")))?;
        Ok(RowConverter {
            name: mapping.name.clone(),
            source: mapping.source(),
            id_prefix: mapping.id_prefix(),
            time_zone,
            date_only_time,
            date_syntax: match &mapping.date_format {
                Some(format) => DateSyntax::Strftime(format.clone()),
                None => DateSyntax::Iso,
            },
            null_values: mapping
                .null_values
                .iter()
                .map(|v| v.trim().to_owned())
                .collect(),
            id: find("id", &columns.id)?,
            opened: DateColumn {
                index: find("opened", &columns.opened)?,
                last: None,
            },
            closed: find_opt("closed", &columns.closed)?
                .map(|index| DateColumn { index, last: None }),
            region: find_opt("region", &columns.region)?,
            category: find_opt("category", &columns.category)?,
            channel: find_opt("channel", &columns.channel)?,
            severity: find_opt("severity", &columns.severity)?,
            customer_id: find_opt("customer_id", &columns.customer_id)?,
            amount: find_opt("amount", &columns.amount)?,
            summary: find_opt("summary", &columns.summary)?,
            resolved_by: find_opt("resolved_by", &columns.resolved_by)?,
            // Looked up last, so a missing column is reported in the order of the mapping file.
            tags: columns
                .tags
                .iter()
                .map(|t| {
                    Ok(TagIndex {
                        name: t.name.clone(),
                        index: find("tags", &t.column)?,
                        split: t.split.clone(),
                    })
                })
                .collect::<Result<Vec<_>, ImportError>>()?,
            default_region: mapping.defaults.region.clone(),
            default_category: mapping.defaults.category.clone(),
            default_channel: mapping.defaults.channel,
            default_severity: mapping.defaults.severity,
            currency: mapping.defaults.currency.clone(),
            default_resolved_by: mapping.defaults.resolved_by.clone(),
            resolution: mapping.defaults.resolution.clone(),
            channel_values: fold_keys(&mapping.channel_values),
            severity_values: fold_keys(&mapping.severity_values),
        })
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// A field's trimmed value, or `None` when it is empty or one of the null values.
    fn value<'r>(&self, row: &'r csv::ByteRecord, index: usize) -> Option<&'r str> {
        // The importer checked the whole row is UTF-8 before calling convert.
        let text = std::str::from_utf8(row.get(index)?).ok()?.trim();
        if text.is_empty() || self.null_values.iter().any(|n| n == text) {
            return None;
        }
        Some(text)
    }

    fn opt_value<'r>(&self, row: &'r csv::ByteRecord, index: Option<usize>) -> Option<&'r str> {
        index.and_then(|i| self.value(row, i))
    }

    /// Converts one row. Checks run in a fixed order (id, dates, region, category, channel,
    /// severity, customer, amount, resolver), so a row with several faults always reports
    /// the same reason.
    pub(crate) fn convert(&mut self, row: &csv::ByteRecord) -> Result<ImportedRow, Skip> {
        let skip = |reason, source_id: Option<&str>| Skip {
            reason,
            source_id: source_id.map(str::to_owned),
        };
        let Some(source_id) = self.value(row, self.id) else {
            return Err(skip(SkipReason::MissingId, None));
        };
        let complaint_id = format!("{}{source_id}", self.id_prefix);
        if complaint_id.len() > MAX_COMPLAINT_ID_BYTES
            || !source_id.bytes().all(is_complaint_id_byte)
        {
            return Err(skip(SkipReason::InvalidId, Some(source_id)));
        }
        let skip = |reason| Err(skip(reason, Some(source_id)));

        let Some(opened_text) = self.value(row, self.opened.index) else {
            return skip(SkipReason::MissingOpenDate);
        };
        let Some(opened_at) = self.parse_date(opened_text, false) else {
            return skip(SkipReason::InvalidOpenDate);
        };
        let closed_at = match self.closed.as_ref().and_then(|c| self.value(row, c.index)) {
            None => None,
            Some(text) => match self.parse_date(text, true) {
                Some(at) => Some(at),
                None => return skip(SkipReason::InvalidCloseDate),
            },
        };

        let Some(region) = self.token(row, self.region, &self.default_region) else {
            return skip(SkipReason::MissingRegion);
        };
        let Some(category) = self.token(row, self.category, &self.default_category) else {
            return skip(SkipReason::MissingCategory);
        };
        let channel = match self.opt_value(row, self.channel) {
            None => self.default_channel,
            Some(text) => match lookup(&self.channel_values, text, parse_channel) {
                Some(channel) => channel,
                None => return skip(SkipReason::InvalidChannel),
            },
        };
        let severity = match self.opt_value(row, self.severity) {
            None => self.default_severity,
            Some(text) => match lookup(&self.severity_values, text, parse_severity) {
                Some(severity) => severity,
                None => return skip(SkipReason::InvalidSeverity),
            },
        };
        let customer_id = match self.opt_value(row, self.customer_id) {
            // One anonymous customer per complaint: exports without customer ids must not
            // look like one customer complaining thousands of times.
            None => format!("anonymous:{complaint_id}"),
            Some(text) if is_name(text) => text.to_owned(),
            Some(_) => return skip(SkipReason::InvalidCustomerId),
        };
        let amount_at_stake = match self.opt_value(row, self.amount) {
            None => None,
            Some(text) => match text.parse::<Money>() {
                Ok(value) => Some(AmountAtStake {
                    value,
                    currency: self
                        .currency
                        .clone()
                        .expect("validated: amount needs a currency"),
                }),
                Err(_) => return skip(SkipReason::InvalidAmount),
            },
        };
        let resolved_by = match self.opt_value(row, self.resolved_by) {
            None => self.default_resolved_by.as_str(),
            Some(text) if is_name(text) => text,
            Some(_) if closed_at.is_none() => self.default_resolved_by.as_str(),
            Some(_) => return skip(SkipReason::InvalidResolvedBy),
        };
        let summary = self
            .opt_value(row, self.summary)
            .map(|s| cut(s, MAX_SUMMARY_BYTES).to_owned());
        let tags = self.tags(row);

        let filed = Event {
            id: own::event_id(&["import", &self.name, source_id, "filed"]),
            source: self.source.clone(),
            complaint_id: complaint_id.clone(),
            time: opened_at,
            body: EventBody::Filed(ComplaintFiled {
                customer_id,
                region: region.clone(),
                category,
                channel,
                severity,
                amount_at_stake,
                summary,
                tags,
                vip: false,
            }),
        };
        let mut events = vec![filed];
        let mut close_before_open = false;
        match closed_at {
            Some(closed_at) if closed_at >= opened_at => events.push(Event {
                id: own::event_id(&["import", &self.name, source_id, "resolved"]),
                source: self.source.clone(),
                complaint_id: complaint_id.clone(),
                time: closed_at,
                body: EventBody::Resolved(ComplaintResolved {
                    by: resolved_by.to_owned(),
                    resolution: self.resolution.clone(),
                }),
            }),
            Some(_) => close_before_open = true,
            None => {}
        }
        Ok(ImportedRow {
            source_id: source_id.to_owned(),
            complaint_id,
            region,
            events,
            close_before_open,
        })
    }

    fn token(
        &self,
        row: &csv::ByteRecord,
        index: Option<usize>,
        default: &Option<String>,
    ) -> Option<String> {
        self.opt_value(row, index)
            .map(slug)
            .filter(|s| !s.is_empty())
            .or_else(|| default.clone())
    }

    fn tags(&self, row: &csv::ByteRecord) -> Vec<String> {
        let mut tags: Vec<String> = Vec::new();
        for tag in &self.tags {
            let Some(value) = self.value(row, tag.index) else {
                continue;
            };
            let parts: Vec<&str> = match &tag.split {
                Some(separator) => value.split(separator.as_str()).collect(),
                None => vec![value],
            };
            for part in parts {
                let part = part.trim();
                if self.null_values.iter().any(|n| n == part) {
                    continue;
                }
                let value_slug = slug(part);
                if value_slug.is_empty() {
                    continue;
                }
                let tag = format!("{}:{value_slug}", tag.name);
                if tags.len() < MAX_TAGS_PER_ROW && !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
        }
        tags
    }

    fn parse_date(&mut self, text: &str, closed: bool) -> Option<Timestamp> {
        let column = if closed {
            self.closed.as_ref()
        } else {
            Some(&self.opened)
        };
        if let Some((last_text, at)) = column.and_then(|c| c.last.as_ref()) {
            if last_text == text {
                return Some(*at);
            }
        }
        let at = match &self.date_syntax {
            DateSyntax::Iso => parse_iso(text, &self.time_zone, self.date_only_time),
            DateSyntax::Strftime(format) => {
                parse_strftime(format, text, &self.time_zone, self.date_only_time)
            }
        }?;
        let column = if closed {
            self.closed.as_mut()
        } else {
            Some(&mut self.opened)
        };
        if let Some(column) = column {
            column.last = Some((text.to_owned(), at));
        }
        Some(at)
    }
}

fn parse_iso(text: &str, time_zone: &TimeZone, date_only_time: civil::Time) -> Option<Timestamp> {
    if !text.contains(['T', 't', ' ']) {
        let date: civil::Date = text.parse().ok()?;
        return time_zone
            .to_timestamp(date.to_datetime(date_only_time))
            .ok();
    }
    // Timestamp parsing insists on an offset; without one the text is local civil time.
    if let Ok(at) = text.parse::<Timestamp>() {
        return Some(at);
    }
    let datetime: civil::DateTime = text.parse().ok()?;
    time_zone.to_timestamp(datetime).ok()
}

fn parse_strftime(
    format: &str,
    text: &str,
    time_zone: &TimeZone,
    date_only_time: civil::Time,
) -> Option<Timestamp> {
    let parsed = strtime::parse(format, text).ok()?;
    if parsed.offset().is_some() {
        return parsed.to_timestamp().ok();
    }
    if parsed.iana_time_zone().is_some() {
        return parsed.to_zoned().ok().map(|z| z.timestamp());
    }
    let datetime = if parsed.hour().is_some() {
        parsed.to_datetime().ok()?
    } else {
        parsed.to_date().ok()?.to_datetime(date_only_time)
    };
    time_zone.to_timestamp(datetime).ok()
}

/// Value tables match case-insensitively and ignoring padding, like the lookups do.
fn fold_keys<T: Copy>(table: &BTreeMap<String, T>) -> BTreeMap<String, T> {
    table
        .iter()
        .map(|(k, v)| (k.trim().to_lowercase(), *v))
        .collect()
}

fn lookup<T: Copy>(
    table: &BTreeMap<String, T>,
    text: &str,
    parse: fn(&str) -> Option<T>,
) -> Option<T> {
    let folded = text.to_lowercase();
    table.get(&folded).copied().or_else(|| parse(&folded))
}

fn parse_channel(name: &str) -> Option<Channel> {
    [
        Channel::Email,
        Channel::Phone,
        Channel::Web,
        Channel::Chat,
        Channel::Letter,
        Channel::Social,
        Channel::Other,
    ]
    .into_iter()
    .find(|c| c.as_str() == name)
}

fn parse_severity(name: &str) -> Option<Severity> {
    [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ]
    .into_iter()
    .find(|s| s.as_str() == name)
}

/// The contract's rule for names: 1-256 bytes without control characters.
fn is_name(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_NAME_BYTES && !text.chars().any(char::is_control)
}

/// The longest prefix of at most `max` bytes that ends on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slug_lowercases_collapses_trims_and_cuts() {
        let cases = [
            ("Credit card", "credit-card"),
            ("  Quality of Life ", "quality-of-life"),
            ("QUALITY OF LIFE", "quality-of-life"),
            (
                "Payday loan, title loan, or personal loan",
                "payday-loan-title-loan-or-personal-loan",
            ),
            ("NYPD - NEW YORK POLICE DE", "nypd-new-york-police-de"),
            ("Café Crème", "caf-cr-me"),
            ("WOMEN _ GENDER EQUITY", "women-gender-equity"),
            ("---", ""),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(slug(input), expected, "{input:?}");
        }
        let long =
            slug("Credit reporting, credit repair services, or other personal consumer reports");
        assert_eq!(
            long,
            "credit-reporting-credit-repair-services-or-other-personal-consum"
        );
        assert_eq!(long.len(), 64);
        // A separator that would land on the 64th byte is dropped with the word after it.
        assert_eq!(slug(&format!("{} b", "a".repeat(63))), "a".repeat(63));
    }

    #[test]
    fn iso_dates_take_the_zone_and_the_date_only_time() {
        let ny = TimeZone::get("America/New_York").unwrap();
        let noon = civil::time(12, 0, 0, 0);
        let at = |s: &str| parse_iso(s, &ny, noon).map(|t| t.to_string());
        assert_eq!(at("2015-01-01").as_deref(), Some("2015-01-01T17:00:00Z"));
        assert_eq!(at("2015-07-01").as_deref(), Some("2015-07-01T16:00:00Z"));
        assert_eq!(
            at("2016-09-01T08:36:17").as_deref(),
            Some("2016-09-01T12:36:17Z")
        );
        assert_eq!(
            at("2016-09-01 08:36:17").as_deref(),
            Some("2016-09-01T12:36:17Z")
        );
        assert_eq!(
            at("2023-06-05T12:00:00-05:00").as_deref(),
            Some("2023-06-05T17:00:00Z")
        );
        for bad in [
            "06/05/2023",
            "2023-02-30",
            "yesterday",
            "2023-06-05T25:00:00",
        ] {
            assert_eq!(at(bad), None, "{bad}");
        }
    }

    #[test]
    fn strftime_dates_handle_date_only_local_and_offset_forms() {
        let utc = TimeZone::UTC;
        let noon = civil::time(12, 0, 0, 0);
        let at = |f: &str, s: &str| parse_strftime(f, s, &utc, noon).map(|t| t.to_string());
        assert_eq!(
            at("%m/%d/%Y", "6/5/2023").as_deref(),
            Some("2023-06-05T12:00:00Z")
        );
        assert_eq!(
            at("%m/%d/%Y %I:%M:%S %p", "06/05/2023 01:02:03 PM").as_deref(),
            Some("2023-06-05T13:02:03Z")
        );
        assert_eq!(
            at("%d.%m.%Y %H:%M %z", "05.06.2023 10:00 +0200").as_deref(),
            Some("2023-06-05T08:00:00Z")
        );
        assert_eq!(at("%m/%d/%Y", "2023-06-05"), None);
    }

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
    }

    proptest! {
        #[test]
        fn slug_is_a_valid_token_or_empty_and_idempotent(text in "\\PC{0,100}") {
            let s = slug(&text);
            prop_assert!(s.is_empty() || plaint_events::is_token(&s), "{s:?}");
            prop_assert_eq!(slug(&s), s.clone());
            prop_assert_eq!(s.is_empty(), !text.bytes().any(|b| b.is_ascii_alphanumeric()));
        }
    }
}
