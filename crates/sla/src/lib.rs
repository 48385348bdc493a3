//! plaint's SLA projector: deadlines on business-hours calendars, at-risk warnings,
//! breaches recorded as events, and compliance reports.
//!
//! # Main types
//! - [`SlaConfig`] (`[sla]` in plaint's TOML, example in `crates/sla/sla.example.toml`) →
//!   [`SlaProjector::new`], which validates time zones, hours, targets and policies
//!   ([`SlaConfigError`]).
//! - [`SlaProjector`] implements [`plaint_projection::Projection`] (name `"sla"`):
//!   `apply` folds events, `tick(now)` fires timers, `next_wakeup` says when to tick next.
//! - [`DeadlineIndex`]: armed timers ordered by time; a tick costs O(log n) per fired
//!   timer, whatever the number of open complaints.
//! - Queries: [`SlaProjector::at_risk`], [`SlaProjector::breaches`] ([`SlaFilter`] →
//!   [`SlaItem`]s), [`SlaProjector::read_complaint`] ([`ComplaintSla`]),
//!   [`SlaProjector::compliance`] ([`ComplianceQuery`] → [`ComplianceReport`], rendered by
//!   `to_table`, `to_csv`, `to_json`), [`SlaProjector::next_due`]. `read_complaint` and
//!   `compliance` read paged-out complaints from the view's rows (a
//!   [`plaint_projection::RowSource`]), `breaches` reads its breach rows there, `at_risk`
//!   chooses from memory and reads the rows of the paged-out complaints it returns;
//!   `next_due` needs memory only (see "Rows and memory").
//! - [`bench`]: a synthetic load that measures rebuild rate, memory and firing cost.
//!
//! # Rules
//! **Policies.** The first policy whose `match` fits the complaint (severity, category,
//! region, channel, vip) wins; otherwise `default_policy`. The policy is chosen when the
//! complaint is filed and kept: editing policies affects complaints filed afterwards, or
//! all of them after `plaint rebuild sla`.
//!
//! **Metrics.** Each is a clock measured on its calendar (24x7, or the business hours of
//! the complaint's region: IANA zone, weekly hours, holidays, daylight saving through
//! jiff's bundled tz database).
//! - `first_response`: from `complaint.filed` to the first `acknowledged` or
//!   `customer_contacted`. A resolution does not count as a response: the clock stops
//!   while the complaint is resolved and resumes if it is reopened (as Zendesk's first
//!   reply time does).
//! - `resolution`: from filed to `resolved` (or `closed` while open). A `reopened` resumes
//!   the same clock from the reopening, keeping the time already used (Zendesk/Jira): the
//!   new deadline is the reopening plus what remained of the target; a resolution already
//!   late stays breached.
//! - `periodic_update`: while open, the longest gap between updates to the customer
//!   (`acknowledged`, `customer_contacted`, `resolved`). Each update ends one cycle and
//!   starts the next; a reopening starts a new cycle.
//! - `callback`: each `callback_promised` must be followed by a `customer_contacted` by its
//!   `due_by` (wall-clock, never paused). One contact keeps every pending promise.
//!   Closing or withdrawing drops the promises not yet broken.
//! - `awaiting_customer` pauses the metrics the policy lists in `pausable` (callback
//!   cannot be) until `customer_replied`. Resolving, closing or withdrawing ends a pause.
//!
//! **Deadlines and breaches.** A deadline is met if the metric is met at or before it (by
//! event time). At `at_risk_fraction` of the target used (default 75 %), `tick` publishes
//! an at-risk alert on `<prefix>.alerts.sla.at_risk.<region>` (once per deadline; which
//! were sent is not in the rows but in a tick cursor the runner keeps beside them, every
//! warning due before a second, so neither a restart nor a rebuild warns again; without one (a view of before cursors),
//! warnings still inside the at-risk window are sent again with the same `Nats-Msg-Id`). When a deadline passes unmet, `tick` writes `sla.breached`
//! through the `COMPLAINTS` stream (id = UUIDv5 of complaint/metric/deadline, time = the
//! deadline) and publishes it on `<prefix>.alerts.sla.breached.<region>` (msg id = event
//! id). The view records the breach only when `apply` sees that event come back, so a
//! rebuild (no ticks) reproduces the live rows. A metric met after its deadline before any
//! breach was recorded makes `apply` write a met-late `sla.breached` (`met_at`,
//! `late_by_seconds`; id name ends in `/met_late`, so it never collides with the timer's);
//! the view counts either or both as one breach of that deadline. A met cycle's outcome is
//! decided by event time alone, so a late-arriving event showing the metric met in time
//! wins over a breach recorded meanwhile.
//!
//! **Time.** Only event times and the `now` given to `tick` and queries: no clock is read.
//! Times are kept to the second. An event older than the complaint's previous event is
//! read at the previous event's time, so clocks never run backwards. Durations in config
//! are jiff friendly strings (`"30m"`, `"8h"`, `"1h 30m"`, `"3d"`); a day is 24 hours of
//! the target's calendar (on business hours write working days as `"8h"`).
//!
//! **Rows and memory.** One row per complaint (region, category, policy, status, each
//! clock, pending promises, completed cycles; binary, see `plaint_projection::codec`).
//! Complaints are never deleted: their completed cycles feed the compliance report. A
//! complaint is *cold* when nothing can fire for it (no clock or promise armed in the
//! [`DeadlineIndex`]): resolved, closed or withdrawn, open and awaiting the customer with
//! every clock paused or met, or open with every deadline already breached (the backlog of
//! never-answered complaints). Live complaints' rows are `c/<complaint id>`, cold ones'
//! `a/<complaint id>`; a row changing side is deleted from the other. Memory holds the
//! live complaints only (and a cache of the most recently cooled): a cold one leaves at
//! the first `evict` after its row is committed (its slot is reused), an event about it
//! pages it back in first (`rows_needed`, `page_in`), and a restart reads `c/` alone.
//!
//! Live complaints are paged out too, all but the `[sla] armed_in_memory` most recently
//! touched (default 20,000; [`SlaProjector::set_armed_cache`]): a backfill of history
//! leaves every complaint whose deadline passed meanwhile armed until ingest catches up
//! (ticks wait for the backlog), hundreds of thousands at 10 million events, ~600 bytes
//! each. One paged out keeps its slot, its [`DeadlineIndex`] entries and a stub of ~50
//! bytes (id, names for the filters, `next_due`); its `c/` row is the rest. The tick that
//! fires one of its timers asks for that row first (`rows_due`, with the same limits as
//! the tick), as does an event about it (`rows_needed`); `at_risk` and `compliance` read
//! the rows of those they need. A row missing while memory refers to it is an error
//! ([`plaint_projection::ProjectionError::MissingRow`]), not a lost timer.
//!
//! Each listed breach (a recorded breach of a cycle still open, or of a promise not yet
//! kept, of a complaint open or resolved) also has a row of its own,
//! `b/<deadline>/<complaint id>#<timer>` (deadline as 13 zero-padded digits, `10^12 +`
//! its Unix second), holding what a breaches item needs that does not depend on `now`
//! (names, metric, promise, start, deadline, target, time used and since when the clock
//! runs, paused). It is written and deleted by `take_changes` together with its
//! complaint's row: a complaint's listed breaches before the first change since its row
//! was taken (or restored, or paged in) are what its breach rows on disk are, so the
//! projector notes them then (for the few complaints that have any) and, without reading
//! disk, deletes those the complaint no longer lists and writes those that are new or
//! whose clock moved. Key order is the query's order.
//!
//! Ticks read memory only, once `rows_due` is paged in; `next_due` reads memory only;
//! [`SlaProjector::breaches`] scans `b/` in key order up to its limit (so it answers for
//! the last committed batch); [`SlaProjector::read_complaint`] reads a paged-out
//! complaint's row, and [`SlaProjector::compliance`] scans `a/` besides memory (and `c/`
//! for the armed complaints paged out). A
//! complaint filed again after it was paged out is not recognised as filed (the ingester
//! rejects a second filing).
//!
//! Layouts ([`plaint_projection::Projection::layout`]; a view of another layout is rebuilt
//! from the log at start): 2 put cold complaints under `a/`; 3 added the breach rows and
//! made open complaints whose every deadline is breached cold, which a view of layout 2
//! (with its breaches only in memory) cannot answer for.
//!
//! # What it does not do
//! No I/O, no clock, no NATS or sled: the runner carries out the [`Effect`]s and persists
//! the rows. It does not re-evaluate policies when a complaint changes, and it measures no
//! "next reply" metric (replies to customer messages) beyond the periodic update.
//!
//! [`Effect`]: plaint_projection::Effect

pub mod bench;
mod calendar;
mod compliance;
mod config;
mod index;
mod projector;
mod query;
mod slots;
mod state;

pub use compliance::{ComplianceQuery, ComplianceReport, ComplianceRow, GroupBy};
pub use config::{
    BusinessHoursConfig, CalendarChoice, PolicyConfig, PolicyMatch, SlaConfig, SlaConfigError,
    WeeklyHoursConfig,
};
pub use index::{DeadlineIndex, DeadlineKey};
pub use projector::{AtRiskAlert, SlaProjector};
pub use query::{ComplaintSla, CompletedCycle, MetricSla, SlaFilter, SlaItem};
pub use state::{ClockPhase, ComplaintStatus};

#[cfg(test)]
mod tests;
