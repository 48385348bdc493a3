//! The compliance report: outcomes of SLA deadlines in a period, grouped.
//!
//! Counted outcomes are: every completed cycle (met on time, or met late = breached, or
//! ended unmet after its deadline = breached), filed under the instant it was met (or its
//! deadline if never met); and every open cycle whose breach is recorded, filed under its
//! deadline. Open cycles not yet breached have no outcome yet and are not counted. So
//! `met + breached = count`.
//!
//! Times to first response and to resolution are the metric's clock time when met: on its
//! calendar (business hours where the policy says so), pauses excluded, as the SLA measured
//! it. Percentiles use the nearest-rank method (the median of an even count is the lower
//! middle value): each figure is a time some complaint actually had.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use plaint_events::SlaMetric;
use serde::{Deserialize, Serialize};

use plaint_projection::{ProjectionError, RowSource};

use crate::config::CLOCK_METRICS;
use crate::projector::{
    complaint_from_row, decode_complaint_row, Names, SlaProjector, ARCHIVE_PREFIX, ROW_PREFIX,
};
use crate::query::SlaFilter;
use crate::state::*;

/// A dimension of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Region,
    Category,
    Policy,
    Metric,
}

impl GroupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Region => "region",
            GroupBy::Category => "category",
            GroupBy::Policy => "policy",
            GroupBy::Metric => "metric",
        }
    }

    pub fn parse(s: &str) -> Option<GroupBy> {
        [
            GroupBy::Region,
            GroupBy::Category,
            GroupBy::Policy,
            GroupBy::Metric,
        ]
        .into_iter()
        .find(|g| g.as_str() == s)
    }
}

/// Which outcomes to count and how to group them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComplianceQuery {
    /// Outcomes at or after this instant (unbounded if absent).
    pub from: Option<Timestamp>,
    /// Outcomes before this instant (unbounded if absent).
    pub to: Option<Timestamp>,
    /// Dimensions, in column order; empty gives the total only.
    pub group_by: Vec<GroupBy>,
    /// Restricts the outcomes counted (`limit` is ignored).
    pub filter: SlaFilter,
}

/// One group's figures. Dimension fields are set for the dimensions grouped by.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComplianceRow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<SlaMetric>,
    pub count: u64,
    pub met: u64,
    pub breached: u64,
    pub met_percent: f64,
    pub breached_percent: f64,
    pub first_response_median_seconds: Option<i64>,
    pub first_response_p90_seconds: Option<i64>,
    pub resolution_median_seconds: Option<i64>,
    pub resolution_p90_seconds: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplianceReport {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub group_by: Vec<GroupBy>,
    pub rows: Vec<ComplianceRow>,
    pub total: ComplianceRow,
}

#[derive(Default)]
struct Tally {
    met: u64,
    breached: u64,
    first_response: Vec<i64>,
    resolution: Vec<i64>,
}

impl Tally {
    fn add(&mut self, metric: SlaMetric, breached: bool, met_used: Option<i64>) {
        if breached {
            self.breached += 1;
        } else {
            self.met += 1;
        }
        match (metric, met_used) {
            (SlaMetric::FirstResponse, Some(used)) => self.first_response.push(used),
            (SlaMetric::Resolution, Some(used)) => self.resolution.push(used),
            _ => {}
        }
    }

    fn into_row(mut self) -> ComplianceRow {
        let count = self.met + self.breached;
        let percent = |n: u64| {
            if count == 0 {
                0.0
            } else {
                (n as f64 * 10_000.0 / count as f64).round() / 100.0
            }
        };
        self.first_response.sort_unstable();
        self.resolution.sort_unstable();
        ComplianceRow {
            count,
            met: self.met,
            breached: self.breached,
            met_percent: percent(self.met),
            breached_percent: percent(self.breached),
            first_response_median_seconds: nearest_rank(&self.first_response, 0.5),
            first_response_p90_seconds: nearest_rank(&self.first_response, 0.9),
            resolution_median_seconds: nearest_rank(&self.resolution, 0.5),
            resolution_p90_seconds: nearest_rank(&self.resolution, 0.9),
            ..ComplianceRow::default()
        }
    }
}

/// The nearest-rank percentile of sorted values.
fn nearest_rank(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

type GroupKey = (Option<u32>, Option<u32>, Option<u16>, Option<SlaMetric>);

/// The outcomes of a report, complaint by complaint.
struct Tallies<'q> {
    from: i64,
    to: i64,
    query: &'q ComplianceQuery,
    wanted_region: Option<u32>,
    wanted_category: Option<u32>,
    wanted_policy: Option<u16>,
    groups: BTreeMap<GroupKey, Tally>,
    total: Tally,
}

impl Tallies<'_> {
    fn add(&mut self, complaint: &Complaint) {
        if self.wanted_region.is_some_and(|r| r != complaint.region)
            || self
                .wanted_category
                .is_some_and(|c| c != complaint.category)
            || self.wanted_policy.is_some_and(|p| p != complaint.policy)
        {
            return;
        }
        for record in &complaint.completed {
            let met_used = (record.met_at != NONE).then_some(record.used);
            self.count(
                complaint,
                record.metric,
                record.outcome_at(),
                record.breached,
                met_used,
            );
        }
        for (i, clock) in complaint.clocks.iter().enumerate() {
            if let Some(due_at) = clock.open_breach() {
                self.count(complaint, CLOCK_METRICS[i], due_at, true, None);
            }
        }
        for promise in complaint.promises.iter().filter(|p| p.breached) {
            self.count(complaint, SlaMetric::Callback, promise.due_at, true, None);
        }
    }

    fn count(
        &mut self,
        complaint: &Complaint,
        metric: SlaMetric,
        at: i64,
        breached: bool,
        met_used: Option<i64>,
    ) {
        if at < self.from || at >= self.to || self.query.filter.metric.is_some_and(|m| m != metric)
        {
            return;
        }
        let by = |g: GroupBy| self.query.group_by.contains(&g);
        let key: GroupKey = (
            by(GroupBy::Region).then_some(complaint.region),
            by(GroupBy::Category).then_some(complaint.category),
            by(GroupBy::Policy).then_some(complaint.policy),
            by(GroupBy::Metric).then_some(metric),
        );
        self.groups
            .entry(key)
            .or_default()
            .add(metric, breached, met_used);
        self.total.add(metric, breached, met_used);
    }
}

impl SlaProjector {
    /// The compliance report of a period (see the module documentation for what counts),
    /// over the complaints in memory and the archived ones in `rows` (the view's persisted
    /// rows, read under the projector's lock). Archived rows are read one at a time: the
    /// report holds its tallies, not the complaints.
    pub fn compliance(
        &self,
        query: &ComplianceQuery,
        rows: &dyn RowSource,
    ) -> Result<ComplianceReport, ProjectionError> {
        let filter = &query.filter;
        // Archived complaints may name regions and categories memory does not know (after
        // a restart): they are interned into this copy as they come.
        let mut names = self.names.clone();
        let wanted_policy = match &filter.policy {
            Some(name) => match self.config.policies.iter().position(|p| &p.name == name) {
                Some(policy) => Some(policy as u16),
                // No complaint has a policy the configuration does not name.
                None => return Ok(self.empty_report(query, &names)),
            },
            None => None,
        };
        let mut tallies = Tallies {
            from: query.from.map_or(i64::MIN, |t| t.as_second()),
            to: query.to.map_or(i64::MAX, |t| t.as_second()),
            query,
            // A name no complaint has yet matches nothing, as it should.
            wanted_region: filter
                .region
                .as_ref()
                .map(|n| names.intern_region(&self.config, n)),
            wanted_category: filter.category.as_ref().map(|n| names.categories.intern(n)),
            wanted_policy,
            groups: BTreeMap::new(),
            total: Tally::default(),
        };
        for complaint in self.complaints.iter() {
            tallies.add(complaint);
        }
        let no_id: std::sync::Arc<str> = std::sync::Arc::from("");
        // Archived complaints, and armed ones paged out (their live rows), are counted
        // from their rows; memory is never older than the rows, so a complaint held whole
        // is counted from there.
        let prefixes: &[&str] = if self.complaints.paged_out() > 0 {
            &[ARCHIVE_PREFIX, ROW_PREFIX]
        } else {
            &[ARCHIVE_PREFIX]
        };
        for prefix in prefixes {
            for row in rows.rows_with_prefix(prefix.as_bytes()) {
                let (key, value) = row?;
                let id = String::from_utf8_lossy(&key[prefix.len()..]);
                let held_whole = self
                    .by_id
                    .get(&*id)
                    .is_some_and(|&slot| self.complaints.get(slot).is_some());
                if held_whole {
                    continue;
                }
                let row = decode_complaint_row(&key, &value)?;
                tallies.add(&complaint_from_row(
                    &self.config,
                    &mut names,
                    no_id.clone(),
                    &row,
                ));
            }
        }
        let Tallies { groups, total, .. } = tallies;
        Ok(self.report_of(query, &names, groups, total))
    }

    fn empty_report(&self, query: &ComplianceQuery, names: &Names) -> ComplianceReport {
        self.report_of(query, names, BTreeMap::new(), Tally::default())
    }

    fn report_of(
        &self,
        query: &ComplianceQuery,
        names: &Names,
        groups: BTreeMap<GroupKey, Tally>,
        total: Tally,
    ) -> ComplianceReport {
        let mut rows: Vec<ComplianceRow> = groups
            .into_iter()
            .map(
                |((region, category, policy, metric), tally)| ComplianceRow {
                    region: region.map(|r| names.regions.name(r).to_string()),
                    category: category.map(|c| names.categories.name(c).to_string()),
                    policy: policy.map(|p| self.config.policies[p as usize].name.clone()),
                    metric,
                    ..tally.into_row()
                },
            )
            .collect();
        rows.sort_by(|a, b| {
            (&a.region, &a.category, &a.policy, a.metric).cmp(&(
                &b.region,
                &b.category,
                &b.policy,
                b.metric,
            ))
        });
        ComplianceReport {
            from: query.from,
            to: query.to,
            group_by: query.group_by.clone(),
            rows,
            total: total.into_row(),
        }
    }
}

/// `1d 2h`, `3h 05m`, `12m 30s`, `45s`.
fn human_duration(seconds: Option<i64>) -> String {
    let Some(seconds) = seconds else {
        return "-".to_string();
    };
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

impl ComplianceReport {
    fn dimension_values(&self, row: &ComplianceRow) -> Vec<String> {
        self.group_by
            .iter()
            .map(|g| {
                match g {
                    GroupBy::Region => row.region.clone(),
                    GroupBy::Category => row.category.clone(),
                    GroupBy::Policy => row.policy.clone(),
                    GroupBy::Metric => row.metric.map(|m| m.as_str().to_string()),
                }
                .unwrap_or_default()
            })
            .collect()
    }

    /// A fixed-width text table, one line per group and a total line.
    pub fn to_table(&self) -> String {
        let mut header: Vec<String> = self
            .group_by
            .iter()
            .map(|g| g.as_str().to_string())
            .collect();
        header.extend(
            [
                "count",
                "met %",
                "breached %",
                "first resp. median",
                "first resp. p90",
                "resolution median",
                "resolution p90",
            ]
            .map(String::from),
        );
        let line = |dimensions: Vec<String>, row: &ComplianceRow| {
            let mut cells = dimensions;
            cells.push(row.count.to_string());
            cells.push(format!("{:.1}", row.met_percent));
            cells.push(format!("{:.1}", row.breached_percent));
            cells.push(human_duration(row.first_response_median_seconds));
            cells.push(human_duration(row.first_response_p90_seconds));
            cells.push(human_duration(row.resolution_median_seconds));
            cells.push(human_duration(row.resolution_p90_seconds));
            cells
        };
        let mut lines = vec![header];
        for row in &self.rows {
            lines.push(line(self.dimension_values(row), row));
        }
        let mut total_dimensions = vec![String::new(); self.group_by.len()];
        if let Some(first) = total_dimensions.first_mut() {
            *first = "total".to_string();
        }
        let total_line = line(total_dimensions, &self.total);
        let dimensions = self.group_by.len();
        let mut widths = vec![0; lines[0].len()];
        for cells in lines.iter().chain(std::iter::once(&total_line)) {
            for (i, cell) in cells.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let render = |cells: &[String], out: &mut String| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                // Dimensions read left-aligned, figures right-aligned.
                if i < dimensions {
                    let _ = write!(text, "{cell:<width$}", width = widths[i]);
                } else {
                    let _ = write!(text, "{cell:>width$}", width = widths[i]);
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        let mut out = String::new();
        render(&lines[0], &mut out);
        let rule_width = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
        out.push_str(&"-".repeat(rule_width));
        out.push('\n');
        for cells in &lines[1..] {
            render(cells, &mut out);
        }
        if !self.group_by.is_empty() {
            out.push_str(&"-".repeat(rule_width));
            out.push('\n');
        }
        render(&total_line, &mut out);
        out
    }

    /// CSV with a header line; one line per group (no total line); durations in seconds,
    /// empty when there is nothing to measure.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let mut header: Vec<&str> = self.group_by.iter().map(|g| g.as_str()).collect();
        header.extend([
            "count",
            "met",
            "breached",
            "met_percent",
            "breached_percent",
            "first_response_median_seconds",
            "first_response_p90_seconds",
            "resolution_median_seconds",
            "resolution_p90_seconds",
        ]);
        out.push_str(&header.join(","));
        out.push('\n');
        let seconds = |value: Option<i64>| value.map(|v| v.to_string()).unwrap_or_default();
        let rows: Vec<&ComplianceRow> = if self.group_by.is_empty() {
            vec![&self.total]
        } else {
            self.rows.iter().collect()
        };
        for row in rows {
            let mut cells: Vec<String> = self
                .dimension_values(row)
                .iter()
                .map(|v| csv_field(v))
                .collect();
            cells.extend([
                row.count.to_string(),
                row.met.to_string(),
                row.breached.to_string(),
                format!("{:.2}", row.met_percent),
                format!("{:.2}", row.breached_percent),
                seconds(row.first_response_median_seconds),
                seconds(row.first_response_p90_seconds),
                seconds(row.resolution_median_seconds),
                seconds(row.resolution_p90_seconds),
            ]);
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    /// The report as one JSON document (the serde form).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialise infallibly")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(&[], 0.5), None);
        assert_eq!(nearest_rank(&[7], 0.9), Some(7));
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 0.5), Some(2));
        let values: Vec<i64> = (1..=10).collect();
        assert_eq!(nearest_rank(&values, 0.9), Some(9));
        assert_eq!(nearest_rank(&values, 0.5), Some(5));
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human_duration(Some(45)), "45s");
        assert_eq!(human_duration(Some(750)), "12m 30s");
        assert_eq!(human_duration(Some(3 * 3600 + 300)), "3h 05m");
        assert_eq!(human_duration(Some(26 * 3600)), "1d 2h");
        assert_eq!(human_duration(None), "-");
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("eu-west"), "eu-west");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
