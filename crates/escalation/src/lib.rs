//! Escalation queues: the most dissatisfied customers reach the people with the authority
//! to fix their problem, and small problems stay at the front line.
//!
//! # Main types
//! - [`EscalationProjector`] (`EscalationProjector::new(config)`): the projector
//!   (`impl Projection`, name `escalation`). Applies the log, raises and clears, keeps
//!   one ordered queue per tier, and answers [`EscalationProjector::queue`],
//!   [`EscalationProjector::history`] and [`EscalationProjector::stats`]. Queries and
//!   commands that show or check a complaint's row take the view's rows
//!   (`&dyn RowSource`), for complaints paged out of memory.
//! - [`EscalationConfig`]: the `[escalation]` section (see `escalation.example.toml`).
//! - [`rules`]: every rule as a pure function of a complaint's facts.
//! - [`priority`]: the documented queue order and why it never depends on `now`.
//! - [`commands`]: `prepare_claim`, `prepare_release`, `prepare_reassign`, pure
//!   validations that return the event to append ([`PreparedCommand`]) or a
//!   [`CommandError`].
//! - [`bench`](mod@bench): the benchmark of apply rate and first-page latency
//!   (`cargo run --release -p plaint-escalation --example escalation_bench`, deadlines
//!   from a real SLA projector; `--example escalation_profile` rebuilds repeatedly and
//!   splits the time by event type, for a profiler).
//!
//! # Tiers and rules
//! Tiers run from 1 (frontline) to 4 (executive). A complaint enters a tier's queue when
//! any rule names a tier for it; the highest tier wins and every reason is kept:
//! - `money`: amount at stake above a tier's authority limit, per currency (defaults for
//!   EUR, USD, GBP, CHF: above 100 → tier 2, above 1,000 → 3, above 10,000 → 4);
//! - `severity`: critical → tier 2 (configurable per severity);
//! - `sla_breach`: each `sla.breached` raises one tier above where the complaint stands
//!   (its queue tier or the highest tier its other rules name; 1 if none), so a first
//!   breach of a frontline complaint gives tier 2 and a second one tier 3;
//! - `repeat_complainant`: the customer filed N complaints (this one included) within a
//!   rolling window (default 3 in 30 days), judged when the complaint is filed;
//! - `reopened`: reopened N times (default 2) → tier 2;
//! - `vip`: filed with `vip: true` → tier 2;
//! - `manual`: a `complaint.escalated` event, at its tier.
//!
//! Rules are evaluated for open complaints on `complaint.filed`, `complaint.escalated`,
//! `complaint.reopened` and `sla.breached`. When the target tier is above where the
//! complaint stands, `apply` returns an `escalation.raised` event to append (id
//! `own::event_id([complaint, "raised", tier, triggering event id])`, time of the
//! triggering event) and a publish of the same CloudEvent on
//! `<prefix>.escalations.<tier>.<region>` (msg id = event id). Queues only move up: a
//! rule naming a lower tier than the current one is kept as a reason for later raises but
//! writes nothing. A raise to a higher tier ends any claim (the new tier's operators
//! claim it). `complaint.resolved`, `closed` and `withdrawn` write `escalation.cleared`
//! (reason = that status) and the complaint leaves its queue; a reopened complaint is
//! evaluated again and re-enters if a rule still fires.
//!
//! # How the view changes
//! Queue rows change only when `escalation.*` events come back through the log, so a
//! rebuild equals the live view; the one exception is a `clear_requested` mark set on the
//! terminal event itself (still a function of the log alone), which takes the item out of
//! the queue index at once and lets a complaint reopened before its clear is back be
//! raised again. In memory only: the tier of a raise written but not yet back (so no
//! second raise for the same tier is written meanwhile; after a restart a duplicate raise
//! may be written, and applying it changes nothing) and which unclaimed alerts were sent. `escalation.claimed` takes effect only if the
//! item is unclaimed (or, for a reassign, still held by `reassigned_from`) at the same
//! tier: the first claim in log order wins.
//!
//! # Queue order
//! Tier, then severity, then SLA urgency (breached items first, longest breached first;
//! then nearest next deadline; unknown deadlines last), then money at stake (as a
//! multiple of the currency's frontline limit), then age (oldest complaint first). See
//! [`priority`]. The next deadline comes from the caller ([`query::NextDeadline`], wired
//! to `SlaProjector::next_due`) because only the SLA projector knows
//! business calendars.
//!
//! # Memory: what is resident, what is archived
//! Rows live in a slot store (id → slot by hash, rows in vectors, freed slots reused)
//! that persists exactly what a paged `ViewMap` would; beside each resident complaint's
//! row the projector keeps, by slot, its region and the tier of a raise on its way (its
//! queue entry is built again from the row when the row changes, not kept twice). Only
//! what can act without a new event stays in memory:
//! - every queued complaint's *queue entry*: its place in the queue index (tier,
//!   severity, breach time, money rank, filing time, the id shared once as an
//!   `Arc<str>`; 48 bytes, times as whole seconds and nanoseconds in 12 bytes) with what
//!   filters and statistics read (region, team and holder as interned numbers, a bit per
//!   rule among its reasons, when it entered the tier; 28 bytes), and its place in the
//!   alert schedule while it waits unclaimed and not alerted. `escalation_bench --queued`
//!   measures them at 50,000 queued items: 144 bytes of heap an item restored from its
//!   `queue/` row (index nodes, id and alert schedule; a restore builds each B-tree at
//!   once, with full nodes), and the index's nodes alone 136 bytes an item as applying
//!   events leaves them (inserted one by one, about half full). Until these were made
//!   compact, 349 and 242 bytes; a resident row with its entry takes over 2 KB. Each
//!   is persisted as a row of its own, `queue/<id>` ([`state::QueueRow`]), written and
//!   deleted with the complaint's row, so a restart rebuilds the queues from these small
//!   rows without reading a complaint row.
//! - complaints' full rows (facts, queue item with its reasons and claim, history) only
//!   while something needs them: every complaint row goes to `archived-complaint/<id>`
//!   and leaves memory once that row is committed, unless a raise about it is on its way
//!   (until layout 3, open complaints stayed; until layout 4, queued ones did: at 10
//!   million demo events, with a quarter of complaints breached and never answered, their
//!   rows were most of the projector's memory). Whatever needs a full row gets it from
//!   the rows: any event that can change a complaint pages its row back in before it is
//!   applied (`Projection::rows_needed`), so the rules decide as if it had stayed; an
//!   unclaimed alert pages in the rows of the items it is about (`Projection::rows_due`);
//!   [`EscalationProjector::queue`] filters and orders on the queue entries and reads
//!   the rows of the page's items only; [`EscalationProjector::history`] and the operator
//!   commands read the complaint's row. The most recently cooled rows stay cached
//!   ([`plaint_projection::COLD_CACHE`]).
//! - customers with a filing inside the repeat window as of the latest event time applied
//!   (never the wall clock): rows `customer/<id>`; the others `archived-customer/<id>`,
//!   paged back in when the customer files again (a late filing may still count them).
//! - the waits of first claims over the last two `time_to_claim_window`s before the latest
//!   event time, for the median time to claim of [`EscalationProjector::stats`]: rows
//!   `claim-wait/<id>/<raise count>`, so the statistics need no closed complaint in memory.
//! - the latest event time: row `latest-event-time`.
//!
//! Where a row goes depends on the applied events alone, so a rebuild, a restart (which
//! restores the live rows only: queue entries, customers in the window, claim waits, the
//! latest event time) and a projector that kept everything in memory write the same rows.
//! [`EscalationProjector::resident`] counts what is in memory: full complaint rows and
//! queue entries apart.
//!
//! # Unclaimed alerts
//! `tick(now)` publishes one alert on `<prefix>.alerts.escalation.unclaimed.<region>`
//! for each item that has waited unclaimed (since it entered its tier or was released)
//! for `unclaimed_alert_after`, msg id `own::event_id([complaint, "unclaimed", tier,
//! unclaimed_since])`, the longest waiting first and at most 10,000 per tick (the rest
//! at the next tick, which the runner runs at once); `rows_due` asks for the rows of
//! those items, for the reasons the alert carries. Which alerts were sent is not in the
//! rows (a rebuild runs no ticks) but in a cursor the runner keeps beside them
//! (`Projection::tick_cursor`: every item unclaimed since before that second was
//! alerted, save those still waiting), so a restart does not alert again; an item that
//! became unclaimed within the cursor's second may be alerted once more, with the same
//! msg id. A rebuild keeps the cursor; a view without one (rebuilt before there were
//! cursors) alerts its waiting items again.
//!
//! # What it does not do
//! No I/O and no clock: the runner appends and publishes the effects, passes `now`, and
//! does the expected-version append that makes one of two simultaneous claims fail. It
//! does not de-escalate, convert currencies, or know SLA deadlines.

pub mod bench;
pub mod commands;
pub mod config;
pub mod priority;
mod projector;
pub mod query;
pub mod rules;
pub mod state;
mod store;
#[cfg(test)]
mod tests;

pub use commands::{CommandError, PreparedCommand};
pub use config::{AuthorityLimits, ConfigError, EscalationConfig};
pub use projector::{unclaimed_alert_subject, EscalationProjector, Resident, UnclaimedAlert};
pub use query::{
    CurrentEscalation, EscalationHistory, NextDeadline, OldestItem, QueueEntry, QueuePage,
    QueueQuery, QueueStats, RegionStats, TierStats,
};
pub use state::{ClaimWait, ComplaintStatus, HistoryEntry};
