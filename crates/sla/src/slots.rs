//! [`Slots`]: the complaints held in memory, each at a small number (its slot) that the
//! deadline index keys on.
//!
//! Evicting a complaint frees its slot for the next one: the table stays as large as the
//! most complaints ever resident at once, not as the log's history, and the slots of the
//! complaints that stay never move (so their index entries stay valid). Each complaint is
//! boxed: the table keeps the length of the most complaints ever resident at once, and a
//! complaint inline made every slot, free or not, ~140 bytes (18 MB at 130,000 slots in a
//! heap profile of a live ingest, kept after the complaints left).

use std::ops::{Index, IndexMut};

use crate::state::Complaint;

#[derive(Debug, Default)]
pub(crate) struct Slots {
    items: Vec<Option<Box<Complaint>>>,
    /// Vacant slots, the most recently freed last.
    free: Vec<u32>,
    len: usize,
}

impl Slots {
    /// The slot the next [`Slots::insert`] fills (timers are armed before the insert).
    pub(crate) fn next_slot(&self) -> u32 {
        self.free.last().copied().unwrap_or(self.items.len() as u32)
    }

    pub(crate) fn insert(&mut self, complaint: Complaint) -> u32 {
        self.len += 1;
        match self.free.pop() {
            Some(slot) => {
                self.items[slot as usize] = Some(Box::new(complaint));
                slot
            }
            None => {
                self.items.push(Some(Box::new(complaint)));
                (self.items.len() - 1) as u32
            }
        }
    }

    pub(crate) fn remove(&mut self, slot: u32) -> Option<Complaint> {
        let complaint = self.items.get_mut(slot as usize)?.take()?;
        self.len -= 1;
        self.free.push(slot);
        Some(*complaint)
    }

    pub(crate) fn get(&self, slot: u32) -> Option<&Complaint> {
        self.items.get(slot as usize)?.as_deref()
    }

    /// Complaints held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Complaints held, in slot order (which says nothing about their ids or ages).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Complaint> {
        self.items.iter().flatten().map(|c| &**c)
    }

    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.free.clear();
        self.len = 0;
    }
}

impl Index<usize> for Slots {
    type Output = Complaint;

    fn index(&self, slot: usize) -> &Complaint {
        self.items[slot]
            .as_deref()
            .expect("slots in the index and by_id are held")
    }
}

impl IndexMut<usize> for Slots {
    fn index_mut(&mut self, slot: usize) -> &mut Complaint {
        self.items[slot]
            .as_deref_mut()
            .expect("slots in the index and by_id are held")
    }
}
