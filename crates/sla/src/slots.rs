//! [`Slots`]: the complaints the projector tracks in memory, each at a small number (its
//! slot) that the deadline index keys on.
//!
//! A slot holds a complaint in full, or, for an armed complaint paged out, a [`Dormant`]
//! stub: what a tick, a filter and `next_due` read without its row. Evicting a complaint
//! frees its slot for the next one: the table stays as large as the most complaints ever
//! tracked at once, not as the log's history, and the slots of the complaints that stay
//! never move (so their index entries stay valid, paged out or not). Each entry is boxed:
//! the table keeps the length of its peak, and a complaint inline made every slot, free or
//! not, ~140 bytes (18 MB at 130,000 slots in a heap profile of a live ingest, kept after
//! the complaints left).

use std::ops::{Index, IndexMut};
use std::sync::Arc;

use crate::state::Complaint;

/// An armed complaint whose full state is on disk (its committed `c/` row): its timers stay
/// in the deadline index, and `rows_due` or `rows_needed` bring it back before a tick fires
/// one or an event changes it. About 50 bytes where the full state took ~600 (clocks,
/// promises, completed cycles): a backfill leaves every complaint whose deadline passed
/// meanwhile armed until ingest catches up, hundreds of thousands of them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Dormant {
    pub id: Arc<str>,
    pub region: u32,
    pub category: u32,
    pub policy: u16,
    /// What `SlaProjector::next_due` answers for it (`state::NONE`: nothing due).
    pub next_due: i64,
}

#[derive(Debug)]
enum Entry {
    Vacant,
    Resident(Box<Complaint>),
    PagedOut(Box<Dormant>),
}

/// A complaint as a slot holds it.
#[derive(Clone, Copy)]
pub(crate) enum Held<'a> {
    Resident(&'a Complaint),
    PagedOut(&'a Dormant),
}

impl<'a> Held<'a> {
    pub(crate) fn id(self) -> &'a Arc<str> {
        match self {
            Held::Resident(complaint) => &complaint.id,
            Held::PagedOut(dormant) => &dormant.id,
        }
    }

    /// (region, category, policy), what the queries' filters compare.
    pub(crate) fn names(self) -> (u32, u32, u16) {
        match self {
            Held::Resident(c) => (c.region, c.category, c.policy),
            Held::PagedOut(d) => (d.region, d.category, d.policy),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Slots {
    items: Vec<Entry>,
    /// Vacant slots, the most recently freed last.
    free: Vec<u32>,
    resident: usize,
    paged_out: usize,
}

impl Slots {
    /// The slot the next [`Slots::insert`] fills (timers are armed before the insert).
    pub(crate) fn next_slot(&self) -> u32 {
        self.free.last().copied().unwrap_or(self.items.len() as u32)
    }

    pub(crate) fn insert(&mut self, complaint: Complaint) -> u32 {
        self.resident += 1;
        let entry = Entry::Resident(Box::new(complaint));
        match self.free.pop() {
            Some(slot) => {
                self.items[slot as usize] = entry;
                slot
            }
            None => {
                self.items.push(entry);
                (self.items.len() - 1) as u32
            }
        }
    }

    /// Frees a resident complaint's slot.
    pub(crate) fn remove(&mut self, slot: u32) -> Option<Complaint> {
        let entry = self.items.get_mut(slot as usize)?;
        if !matches!(entry, Entry::Resident(_)) {
            return None;
        }
        let Entry::Resident(complaint) = std::mem::replace(entry, Entry::Vacant) else {
            unreachable!("matched above");
        };
        self.resident -= 1;
        self.free.push(slot);
        Some(*complaint)
    }

    /// Replaces a resident complaint by its stub; the slot stays taken.
    pub(crate) fn page_out(&mut self, slot: u32, dormant: Dormant) -> Option<Complaint> {
        let entry = self.items.get_mut(slot as usize)?;
        if !matches!(entry, Entry::Resident(_)) {
            return None;
        }
        let Entry::Resident(complaint) =
            std::mem::replace(entry, Entry::PagedOut(Box::new(dormant)))
        else {
            unreachable!("matched above");
        };
        self.resident -= 1;
        self.paged_out += 1;
        Some(*complaint)
    }

    /// Puts a paged-out complaint back in full, in the slot its stub held.
    pub(crate) fn page_in(&mut self, slot: u32, complaint: Complaint) {
        let entry = &mut self.items[slot as usize];
        assert!(
            matches!(entry, Entry::PagedOut(_)),
            "only a paged-out slot is paged in"
        );
        *entry = Entry::Resident(Box::new(complaint));
        self.paged_out -= 1;
        self.resident += 1;
    }

    /// The resident complaint at `slot` (None: vacant or paged out).
    pub(crate) fn get(&self, slot: u32) -> Option<&Complaint> {
        match self.items.get(slot as usize)? {
            Entry::Resident(complaint) => Some(complaint),
            _ => None,
        }
    }

    pub(crate) fn held(&self, slot: u32) -> Option<Held<'_>> {
        match self.items.get(slot as usize)? {
            Entry::Resident(complaint) => Some(Held::Resident(complaint)),
            Entry::PagedOut(dormant) => Some(Held::PagedOut(dormant)),
            Entry::Vacant => None,
        }
    }

    /// Complaints held in full.
    pub(crate) fn len(&self) -> usize {
        self.resident
    }

    /// Armed complaints paged out (held as stubs).
    pub(crate) fn paged_out(&self) -> usize {
        self.paged_out
    }

    /// Complaints held in full, in slot order (which says nothing about their ids or ages).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Complaint> {
        self.items.iter().filter_map(|entry| match entry {
            Entry::Resident(complaint) => Some(&**complaint),
            _ => None,
        })
    }

    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.free.clear();
        self.resident = 0;
        self.paged_out = 0;
    }
}

impl Index<usize> for Slots {
    type Output = Complaint;

    fn index(&self, slot: usize) -> &Complaint {
        match &self.items[slot] {
            Entry::Resident(complaint) => complaint,
            _ => panic!("complaint at slot {slot} is not resident: page it in first"),
        }
    }
}

impl IndexMut<usize> for Slots {
    fn index_mut(&mut self, slot: usize) -> &mut Complaint {
        match &mut self.items[slot] {
            Entry::Resident(complaint) => complaint,
            _ => panic!("complaint at slot {slot} is not resident: page it in first"),
        }
    }
}
