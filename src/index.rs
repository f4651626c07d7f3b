//! The in-memory index of one cache: every entry's size and last use, with totals kept
//! up to date on every change so `status` never walks the disk.
//!
//! ## Memory
//!
//! A busy GOCACHE holds millions of entries, so the index is built for size, not
//! generality: 256 shards (by a hash of the id), each a `Vec` of `(id, Packed)` sorted
//! by id. No per-entry allocation, no hash-table slack: a 33-byte GOCACHE id plus the
//! 24-byte [`Packed`] record is 57 bytes an entry (RSS measured 57.6–57.9 B/entry at 1M
//! entries, `docs/benchmarks.md`).
//! Lookups are a binary search in one shard; an insert moves at most one shard's tail
//! (1/256 of the index), which watch events can afford.
//!
//! Ordering by last use is computed on demand: the planner sorts a snapshot, so events
//! stay cheap and the O(n log n) sort is paid only when eviction is planned.
//!
//! ## Totals
//!
//! Entry count, sizes and the oldest last use are kept current on every change, so a
//! status request costs O(1) (a pass over a million entries took 5 ms with the lock
//! held). The oldest last use cannot be updated in O(1) when the oldest entry goes, so
//! the index marks it stale and [`Index::totals`] recomputes it once per batch of
//! changes, not once per request.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::kinds::EntryMeta;
use crate::UnixTime;

const SHARDS: usize = 256;

/// The largest disk usage one entry can have in the index: `u32::MAX` 512-byte blocks,
/// just under 2 TiB. Kept in 4 bytes because a build cache has millions of entries and
/// none near that size.
pub const MAX_ENTRY_DISK: u64 = u32::MAX as u64 * 512;

/// What the index stores per entry; `EntryMeta` unpacked. Disk usage is kept in
/// 512-byte units (as `st_blocks`), at most [`MAX_ENTRY_DISK`] (larger entries are
/// counted as that, and the cache reports it as an error: see `CacheOf::apply_one`),
/// times as unsigned seconds (1970–2106).
#[derive(Clone, Copy)]
#[repr(C, packed)]
struct Packed {
    last_use: u32,
    disk_blocks: u32,
    apparent_bytes: u64,
    aux: u64,
}

impl Packed {
    fn pack(m: &EntryMeta) -> Packed {
        Packed {
            last_use: m.last_use.clamp(0, u32::MAX as i64) as u32,
            disk_blocks: m.disk_bytes.div_ceil(512).min(u32::MAX as u64) as u32,
            apparent_bytes: m.apparent_bytes,
            aux: m.aux,
        }
    }

    fn unpack(self) -> EntryMeta {
        EntryMeta {
            disk_bytes: self.disk_blocks as u64 * 512,
            apparent_bytes: self.apparent_bytes,
            last_use: self.last_use as i64,
            aux: self.aux,
        }
    }
}

pub struct Index<I> {
    shards: Vec<Vec<(I, Packed)>>,
    len: usize,
    disk_bytes: u64,
    apparent_bytes: u64,
    /// The oldest last use; while `oldest_stale`, only a lower bound.
    oldest: Option<UnixTime>,
    oldest_stale: bool,
}

/// What `status` reports of an index, read without walking it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub entries: u64,
    pub disk_bytes: u64,
    pub apparent_bytes: u64,
    pub oldest_use: Option<UnixTime>,
}

impl<I: Ord + Hash + Clone> Default for Index<I> {
    fn default() -> Self {
        Index {
            shards: (0..SHARDS).map(|_| Vec::new()).collect(),
            len: 0,
            disk_bytes: 0,
            apparent_bytes: 0,
            oldest: None,
            oldest_stale: false,
        }
    }
}

fn shard_of<I: Hash>(id: &I) -> usize {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    (h.finish() % SHARDS as u64) as usize
}

impl<I: Ord + Hash + Clone> Index<I> {
    /// Builds an index in one go (a full scan's result); a later duplicate id wins.
    ///
    /// Each shard is allocated once at its exact size: growing 256 vectors by doubling,
    /// interleaved with a scan's large temporary buffers, left holes in the heap that
    /// `malloc_trim` could not return (`docs/benchmarks.md`).
    pub fn from_entries(entries: impl IntoIterator<Item = (I, EntryMeta)>) -> Self {
        let entries: Vec<(I, EntryMeta)> = entries.into_iter().collect();
        let shard_of_each: Vec<u8> = entries.iter().map(|(id, _)| shard_of(id) as u8).collect();
        let mut sizes = [0usize; SHARDS];
        for &s in &shard_of_each {
            sizes[s as usize] += 1;
        }
        let mut index = Index {
            shards: sizes.iter().map(|&n| Vec::with_capacity(n)).collect(),
            ..Index::default()
        };
        for ((id, meta), s) in entries.into_iter().zip(shard_of_each) {
            index.shards[s as usize].push((id, Packed::pack(&meta)));
        }
        for shard in &mut index.shards {
            // Stable sort keeps insertion order among equal ids; keep the last of each.
            shard.sort_by(|a, b| a.0.cmp(&b.0));
            shard.reverse();
            shard.dedup_by(|a, b| a.0 == b.0);
            shard.reverse();
            if shard.len() < shard.capacity() {
                shard.shrink_to_fit();
            }
        }
        index.recount();
        index
    }

    fn recount(&mut self) {
        self.len = self.shards.iter().map(Vec::len).sum();
        let (mut disk, mut apparent) = (0, 0);
        for (_, p) in self.shards.iter().flatten() {
            let m = p.unpack();
            disk += m.disk_bytes;
            apparent += m.apparent_bytes;
        }
        self.disk_bytes = disk;
        self.apparent_bytes = apparent;
        self.recompute_oldest();
    }

    fn recompute_oldest(&mut self) {
        self.oldest = self
            .shards
            .iter()
            .flatten()
            .map(|(_, p)| p.last_use as i64)
            .min();
        self.oldest_stale = false;
    }

    /// Keeps `oldest` a lower bound (exact unless stale) when an entry used at `last_use`
    /// goes or is used again.
    fn forget_use(&mut self, last_use: UnixTime) {
        if self.oldest == Some(last_use) {
            self.oldest_stale = true;
        }
    }

    fn note_use(&mut self, last_use: UnixTime) {
        if self.oldest.is_none_or(|o| last_use < o) {
            self.oldest = Some(last_use);
        }
    }

    /// Inserts or updates one entry, keeping the totals exact.
    pub fn upsert(&mut self, id: I, meta: EntryMeta) {
        let packed = Packed::pack(&meta);
        let new = packed.unpack();
        let shard = &mut self.shards[shard_of(&id)];
        match shard.binary_search_by(|(k, _)| k.cmp(&id)) {
            Ok(i) => {
                let old = shard[i].1.unpack();
                shard[i].1 = packed;
                self.disk_bytes -= old.disk_bytes;
                self.apparent_bytes -= old.apparent_bytes;
                self.forget_use(old.last_use);
            }
            Err(i) => {
                shard.insert(i, (id, packed));
                self.len += 1;
            }
        }
        self.disk_bytes += new.disk_bytes;
        self.apparent_bytes += new.apparent_bytes;
        self.note_use(new.last_use);
    }

    pub fn remove(&mut self, id: &I) -> Option<EntryMeta> {
        let shard = &mut self.shards[shard_of(id)];
        let i = shard.binary_search_by(|(k, _)| k.cmp(id)).ok()?;
        let old = shard.remove(i).1.unpack();
        self.len -= 1;
        self.disk_bytes -= old.disk_bytes;
        self.apparent_bytes -= old.apparent_bytes;
        self.forget_use(old.last_use);
        Some(old)
    }

    /// Removes many entries in one pass per shard: O(n), where one `remove` per entry
    /// would move a shard's tail each time (an eviction of half of a million-entry
    /// index took seconds under the index lock).
    pub fn remove_many<'a>(&mut self, ids: impl IntoIterator<Item = &'a I>)
    where
        I: 'a,
    {
        let mut by_shard: Vec<Vec<&I>> = (0..SHARDS).map(|_| Vec::new()).collect();
        for id in ids {
            by_shard[shard_of(id)].push(id);
        }
        let mut oldest_gone = UnixTime::MAX;
        for (shard, mut gone) in self.shards.iter_mut().zip(by_shard) {
            if gone.is_empty() {
                continue;
            }
            gone.sort_unstable();
            let (mut removed, mut disk, mut apparent) = (0, 0, 0);
            shard.retain(|(id, p)| {
                if gone.binary_search(&id).is_err() {
                    return true;
                }
                let m = p.unpack();
                removed += 1;
                disk += m.disk_bytes;
                apparent += m.apparent_bytes;
                oldest_gone = oldest_gone.min(m.last_use);
                false
            });
            self.len -= removed;
            self.disk_bytes -= disk;
            self.apparent_bytes -= apparent;
        }
        self.forget_use(oldest_gone);
    }

    /// Looks up many ids in one pass per shard, in the order given: O(n + m) with
    /// sequential memory access, where a binary search per id costs a cache miss per
    /// step (a rescan asks about every action of a million-entry index).
    pub fn get_many<'a>(&self, ids: impl IntoIterator<Item = &'a I>) -> Vec<Option<EntryMeta>>
    where
        I: 'a,
    {
        let ids: Vec<&I> = ids.into_iter().collect();
        let mut by_shard: Vec<Vec<u32>> = (0..SHARDS).map(|_| Vec::new()).collect();
        for (at, id) in ids.iter().enumerate() {
            by_shard[shard_of(id)].push(at as u32);
        }
        let mut found = vec![None; ids.len()];
        for (shard, mut asked) in self.shards.iter().zip(by_shard) {
            asked.sort_by(|&a, &b| ids[a as usize].cmp(ids[b as usize])); // often sorted already
            let mut i = 0;
            for at in asked {
                let id = ids[at as usize];
                while i < shard.len() && shard[i].0 < *id {
                    i += 1;
                }
                if i < shard.len() && shard[i].0 == *id {
                    found[at as usize] = Some(shard[i].1.unpack());
                }
            }
        }
        found
    }

    pub fn get(&self, id: &I) -> Option<EntryMeta> {
        let shard = &self.shards[shard_of(id)];
        let i = shard.binary_search_by(|(k, _)| k.cmp(id)).ok()?;
        Some(shard[i].1.unpack())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Disk usage of all entries (the sum of their rounded-up 512-byte blocks).
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    pub fn apparent_bytes(&self) -> u64 {
        self.apparent_bytes
    }

    /// The totals, exact: settles a stale oldest last use first (O(n), once per batch
    /// of changes that removed or reused the oldest entry; O(1) otherwise).
    pub fn totals(&mut self) -> Totals {
        if self.oldest_stale {
            self.recompute_oldest();
        }
        Totals {
            entries: self.len as u64,
            disk_bytes: self.disk_bytes,
            apparent_bytes: self.apparent_bytes,
            oldest_use: self.oldest,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&I, EntryMeta)> {
        self.shards.iter().flatten().map(|(id, p)| (id, p.unpack()))
    }

    /// The entries whose `aux` is in `wanted` (sorted), with it: one pass over the
    /// index with no hashing (watch batches call it; at a million entries it must cost
    /// little more than reading the records).
    pub fn with_aux(&self, wanted: &[u64]) -> Vec<(&I, u64)> {
        debug_assert!(wanted.is_sorted());
        self.shards
            .iter()
            .flatten()
            .filter_map(|(id, p)| {
                let aux = p.aux;
                wanted.binary_search(&aux).is_ok().then_some((id, aux))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(disk: u64, t: i64) -> EntryMeta {
        EntryMeta {
            disk_bytes: disk * 512,
            apparent_bytes: disk * 100,
            last_use: t,
            aux: disk ^ 7,
        }
    }

    proptest! {
        /// Whatever sequence of upserts and removals arrives, the index holds exactly
        /// what a map would, and the running totals equal a fresh sum.
        #[test]
        fn behaves_like_a_map(ops in prop::collection::vec((0u16..300, any::<bool>(), 0u64..100_000, 0i64..1000), 0..400)) {
            let mut index = Index::default();
            let mut model = std::collections::BTreeMap::new();
            for (id, insert, size, t) in ops {
                if insert {
                    index.upsert(id, meta(size, t));
                    model.insert(id, meta(size, t));
                } else {
                    prop_assert_eq!(index.remove(&id), model.remove(&id));
                }
                // The oldest last use stays exact through every change (settled per
                // batch, here after each one).
                if t % 3 == 0 {
                    prop_assert_eq!(index.totals().oldest_use, model.values().map(|m| m.last_use).min());
                }
            }
            prop_assert_eq!(index.len(), model.len());
            for (id, m) in &model {
                prop_assert_eq!(index.get(id), Some(*m));
            }
            // Many at once, in any order, repeated and absent ids included.
            let asked: Vec<u16> = (0u16..300).rev().chain(0..300).collect();
            let many = index.get_many(&asked);
            for (id, got) in asked.iter().zip(many) {
                prop_assert_eq!(got, model.get(id).copied());
            }
            let disk: u64 = model.values().map(|m| m.disk_bytes).sum();
            let apparent: u64 = model.values().map(|m| m.apparent_bytes).sum();
            prop_assert_eq!(index.disk_bytes(), disk);
            prop_assert_eq!(index.apparent_bytes(), apparent);
            prop_assert_eq!(index.totals().oldest_use, model.values().map(|m| m.last_use).min());
            let mut rebuilt = Index::from_entries(model.iter().map(|(k, v)| (*k, *v)));
            let half: Vec<u16> = model.keys().copied().step_by(2).collect();
            let mut trimmed = Index::from_entries(model.iter().map(|(k, v)| (*k, *v)));
            trimmed.remove_many(half.iter().chain(&[9999]));
            for id in &half {
                rebuilt.remove(id);
            }
            prop_assert_eq!(trimmed.len(), rebuilt.len());
            prop_assert_eq!(trimmed.disk_bytes(), rebuilt.disk_bytes());
            prop_assert_eq!(trimmed.apparent_bytes(), rebuilt.apparent_bytes());
            prop_assert_eq!(trimmed.totals(), rebuilt.totals());
            let rebuilt = Index::from_entries(model.iter().map(|(k, v)| (*k, *v)));
            prop_assert_eq!(rebuilt.disk_bytes(), disk);
            prop_assert_eq!(rebuilt.len(), model.len());
        }
    }

    #[test]
    fn sizes_at_the_edge_of_the_record_saturate_instead_of_wrapping() {
        for (disk, kept) in [
            (MAX_ENTRY_DISK - 512, MAX_ENTRY_DISK - 512),
            (MAX_ENTRY_DISK, MAX_ENTRY_DISK),
            (MAX_ENTRY_DISK + 1, MAX_ENTRY_DISK),
            (u64::MAX, MAX_ENTRY_DISK),
        ] {
            let m = EntryMeta {
                disk_bytes: disk,
                apparent_bytes: disk,
                last_use: -5,
                aux: 1,
            };
            let back = Packed::pack(&m).unpack();
            assert_eq!(back.disk_bytes, kept, "{disk}");
            assert_eq!(back.apparent_bytes, disk);
            assert_eq!(back.last_use, 0, "times before 1970 clamp to 1970");
        }
    }

    #[test]
    fn later_duplicates_win_in_bulk_builds() {
        let index = Index::from_entries([(1u8, meta(1, 10)), (1u8, meta(2, 20))]);
        assert_eq!(index.len(), 1);
        assert_eq!(index.get(&1).unwrap().last_use, 20);
    }

    #[test]
    fn sizes_round_up_to_blocks() {
        let mut index = Index::default();
        index.upsert(
            1u8,
            EntryMeta {
                disk_bytes: 100,
                apparent_bytes: 100,
                last_use: -5,
                aux: 0,
            },
        );
        assert_eq!(index.disk_bytes(), 512);
        assert_eq!(index.get(&1).unwrap().last_use, 0);
    }
}
