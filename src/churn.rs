//! Eviction churn: entries that come back soon after they were evicted.
//!
//! When `max_size` is below what builds really use, eviction and the tool fight: what
//! is evicted for size is rebuilt or downloaded again within hours, and every rebuild
//! costs more than the disk it saved. The sign is an entry re-created soon after its
//! eviction. [`Churn`] remembers recently evicted entries by a 64-bit hash of their id
//! (16 bytes each, at most [`MAX_TRACKED`]) for [`WINDOW`], and counts the bytes of
//! those that reappear; `status`, metrics and `doctor` show it so the operator raises
//! the limit instead of paying rebuilds.
//!
//! ## The working set
//!
//! What to raise the limit to is the bytes the last [`WINDOW`]'s builds used: the
//! entries used within it that are still cached, plus those evicted for size after a
//! use within it that have not come back (an entry that came back is cached again,
//! counted once). Each entry counts once however often it thrashed, so a loop of
//! builds that evicts and recreates the same 100 MiB estimates 100 MiB, not 100 MiB
//! per build (issue #30: `max_size` plus everything that came back overshot a real
//! `go build -a std` by a third). The supervisor takes it at each enforcement
//! ([`WorkingSet`]), since summing the recent entries is a pass over the index.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::UnixTime;

/// How long an evicted entry is remembered, and the span re-creations are summed over.
pub const WINDOW: i64 = 24 * 3600;
/// Evicted entries remembered at most (about 3 MiB).
pub const MAX_TRACKED: usize = 200_000;

/// The hash an entry is remembered by.
pub fn key_of<I: Hash>(id: &I) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

#[derive(Debug, Default)]
pub struct Churn {
    /// Evicted entries by key: when, their size, and whether they had been used within
    /// the window before (part of the working set).
    evicted: HashMap<u64, Evicted>,
    /// The same keys in eviction order, to forget the oldest first.
    order: VecDeque<(UnixTime, u64)>,
    /// Re-creations within the window: when, and the entry's size then.
    recreated: VecDeque<(UnixTime, u64)>,
}

#[derive(Debug, Clone, Copy)]
struct Evicted {
    at: UnixTime,
    bytes: u64,
    used_in_window: bool,
}

/// The bytes the last [`WINDOW`]'s builds used (see the module docs), at `at`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkingSet {
    pub at: UnixTime,
    pub bytes: u64,
    /// Used within the window and still cached.
    pub cached_bytes: u64,
    /// Used within the window, then evicted for size, and not back.
    pub evicted_bytes: u64,
    pub window_secs: i64,
}

/// Entries evicted and back again within [`WINDOW`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recreated {
    pub entries: u64,
    pub bytes: u64,
    pub window_secs: i64,
}

impl Churn {
    /// An entry of `bytes` last used at `last_use` was evicted for size.
    pub fn evicted(&mut self, key: u64, bytes: u64, last_use: UnixTime, now: UnixTime) {
        self.forget_before(now - WINDOW);
        if self.order.len() == MAX_TRACKED {
            if let Some((_, old)) = self.order.pop_front() {
                self.evicted.remove(&old);
            }
        }
        let used_in_window = last_use >= now - WINDOW;
        self.evicted.insert(
            key,
            Evicted {
                at: now,
                bytes,
                used_in_window,
            },
        );
        self.order.push_back((now, key));
    }

    /// The working set, given the bytes of the entries used within the window that are
    /// cached now (the caller's pass over its index).
    pub fn working_set(&self, cached_bytes: u64, now: UnixTime) -> WorkingSet {
        let evicted_bytes = (self.evicted.values())
            .filter(|e| e.used_in_window && e.at >= now - WINDOW)
            .map(|e| e.bytes)
            .sum();
        WorkingSet {
            at: now,
            bytes: cached_bytes + evicted_bytes,
            cached_bytes,
            evicted_bytes,
            window_secs: WINDOW,
        }
    }

    /// An entry appeared (was not in the index): counts it if it was evicted within the
    /// window.
    pub fn appeared(&mut self, key: u64, bytes: u64, now: UnixTime) {
        if self.evicted.is_empty() {
            return;
        }
        if let Some(Evicted { at, .. }) = self.evicted.remove(&key) {
            if at >= now - WINDOW {
                self.recreated.push_back((now, bytes));
                if self.recreated.len() > MAX_TRACKED {
                    self.recreated.pop_front();
                }
            }
        }
    }

    pub fn recreated(&self, now: UnixTime) -> Recreated {
        let recent = self.recreated.iter().filter(|(t, _)| *t >= now - WINDOW);
        let (entries, bytes) = recent.fold((0, 0), |(n, b), (_, size)| (n + 1, b + size));
        Recreated {
            entries,
            bytes,
            window_secs: WINDOW,
        }
    }

    fn forget_before(&mut self, cutoff: UnixTime) {
        while self.order.front().is_some_and(|(t, _)| *t < cutoff) {
            let (t, key) = self.order.pop_front().unwrap();
            if self.evicted.get(&key).is_some_and(|e| e.at == t) {
                self.evicted.remove(&key);
            }
        }
        while self.recreated.front().is_some_and(|(t, _)| *t < cutoff) {
            self.recreated.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_back_soon_after_eviction_are_counted_once() {
        let mut churn = Churn::default();
        churn.evicted(key_of(&"a"), 500, 900, 1000);
        churn.evicted(key_of(&"b"), 900, 900, 1000);
        churn.appeared(key_of(&"a"), 500, 2000);
        churn.appeared(key_of(&"a"), 500, 2001); // already counted
        churn.appeared(key_of(&"c"), 700, 2000); // never evicted
        assert_eq!(
            churn.recreated(2000),
            Recreated {
                entries: 1,
                bytes: 500,
                window_secs: WINDOW
            }
        );
        // After the window, neither the re-creation nor the eviction counts.
        churn.appeared(key_of(&"b"), 900, 1000 + WINDOW + 1);
        assert_eq!(churn.recreated(2000 + WINDOW + 1).entries, 0);
    }

    /// A loop of builds thrashing the same entries counts each once; what came back is
    /// the caller's (cached), what was not used within the window is not counted.
    #[test]
    fn the_working_set_counts_each_entry_once() {
        let mut churn = Churn::default();
        let now = 10 * WINDOW;
        for round in 0..5 {
            for entry in 0..10u64 {
                churn.evicted(entry, 100, now - 50 + round, now - 40 + round);
            }
        }
        churn.evicted(99, 5000, now - 2 * WINDOW, now - 30); // cold: not the working set
        churn.appeared(3, 100, now - 20); // back: counted in the caller's cached bytes
        let set = churn.working_set(700, now);
        assert_eq!(
            (set.cached_bytes, set.evicted_bytes, set.bytes),
            (700, 900, 1600)
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let mut churn = Churn::default();
        for i in 0..(MAX_TRACKED as u64 + 10) {
            churn.evicted(i, 1, 5, 5);
        }
        assert_eq!(churn.evicted.len(), MAX_TRACKED);
        churn.appeared(0, 1, 6);
        assert_eq!(churn.recreated(6).entries, 0, "the oldest was forgotten");
        churn.appeared(MAX_TRACKED as u64 + 9, 1, 6);
        assert_eq!(churn.recreated(6).entries, 1);
    }
}
