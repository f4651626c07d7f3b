//! The in-memory index of one cache: every entry's size and last use, with totals kept
//! up to date on every change so `status` never walks the disk.
//!
//! Entries live in a hash map keyed by the kind's id; ordering by last use is computed
//! on demand (the planner sorts a snapshot). Watch events therefore cost O(1), and the
//! O(n log n) sort is paid only when eviction is planned or a listing asks for it.

use std::collections::HashMap;
use std::hash::Hash;

use crate::kinds::{EntryMeta, UnixTime};

pub struct Index<I> {
    entries: HashMap<I, EntryMeta>,
    disk_bytes: u64,
    apparent_bytes: u64,
}

impl<I: Eq + Hash + Clone> Default for Index<I> {
    fn default() -> Self {
        Index {
            entries: HashMap::new(),
            disk_bytes: 0,
            apparent_bytes: 0,
        }
    }
}

impl<I: Eq + Hash + Clone> Index<I> {
    pub fn from_entries(entries: impl IntoIterator<Item = (I, EntryMeta)>) -> Self {
        let mut index = Index::default();
        for (id, meta) in entries {
            index.upsert(id, meta);
        }
        index
    }

    /// Inserts or updates one entry, keeping the totals exact.
    pub fn upsert(&mut self, id: I, meta: EntryMeta) {
        if let Some(old) = self.entries.insert(id, meta) {
            self.subtract(&old);
        }
        self.disk_bytes += meta.disk_bytes;
        self.apparent_bytes += meta.apparent_bytes;
    }

    pub fn remove(&mut self, id: &I) -> Option<EntryMeta> {
        let old = self.entries.remove(id)?;
        self.subtract(&old);
        Some(old)
    }

    fn subtract(&mut self, old: &EntryMeta) {
        self.disk_bytes -= old.disk_bytes;
        self.apparent_bytes -= old.apparent_bytes;
    }

    pub fn get(&self, id: &I) -> Option<&EntryMeta> {
        self.entries.get(id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    pub fn apparent_bytes(&self) -> u64 {
        self.apparent_bytes
    }

    pub fn oldest_use(&self) -> Option<UnixTime> {
        self.entries.values().map(|m| m.last_use).min()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&I, &EntryMeta)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(disk: u64, t: i64) -> EntryMeta {
        EntryMeta {
            disk_bytes: disk,
            apparent_bytes: disk / 2,
            last_use: t,
        }
    }

    proptest! {
        /// Whatever sequence of upserts and removals arrives, the running totals equal a
        /// fresh sum over the entries.
        #[test]
        fn totals_match_entries(ops in prop::collection::vec((0u8..20, any::<bool>(), 0u64..1_000_000, 0i64..1000), 0..200)) {
            let mut index = Index::default();
            for (id, insert, size, t) in ops {
                if insert { index.upsert(id, meta(size, t)); } else { index.remove(&id); }
            }
            let disk: u64 = index.iter().map(|(_, m)| m.disk_bytes).sum();
            let apparent: u64 = index.iter().map(|(_, m)| m.apparent_bytes).sum();
            prop_assert_eq!(index.disk_bytes(), disk);
            prop_assert_eq!(index.apparent_bytes(), apparent);
            prop_assert_eq!(index.oldest_use(), index.iter().map(|(_, m)| m.last_use).min());
        }
    }
}
