//! One managed cache: a kind, its index, its limits and its history, behind the
//! object-safe [`Cache`] trait the daemon, the server and the CLI use.
//!
//! Every method blocks (it may walk, hash or unlink); async callers use
//! `spawn_blocking`. Scans, evictions and verifications of one cache are serialised by
//! `work`; watch events update the index concurrently. Events that arrive while a full
//! scan runs are replayed after the scan's result replaces the index, so a file created
//! mid-scan is never lost.
//!
//! The engine is split by operation: this file holds the state and the scans, status
//! and listings; `evict.rs` carries out eviction plans, `verify.rs` runs integrity
//! sweeps and repairs, `restore.rs` saves and restores index snapshots.
//!
//! ## Locking
//!
//! Lock order: `work` → `index` → `totals`; `history`, `churn`, `stamps`,
//! `changed_during_scan` and `config` are leaves: they may be taken while `work` or
//! `index` is held, and no other lock is ever taken while one of them is held. `work` serialises the long operations (scan, eviction,
//! sweep, restore) of one cache. `index` is held only to read or update the index,
//! never across a kind's I/O: a plan is made under it, removals (eviction and repair
//! alike) run without it, and the removed entries leave the index afterwards under it
//! again. Dropping an `IndexWrite` publishes the new totals, so `status` reads `totals`
//! and never waits for the index.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use glob::MatchOptions;

use crate::config::CacheConfig;
use crate::fsutil::{self, DiskSpace};
use crate::index::{Index, Totals};
use crate::kinds::{
    EntryMeta, Kind, KindSettings, Removal, Removing, ScanResult, Stamp, Survivors, WatchDir,
};
use crate::parallel;
use crate::plan::{self, Candidate, PlanLimits};
use crate::report::*;
use crate::UnixTime;

mod evict;
mod restore;
mod verify;

/// Entries a user names for removal: exact entry names, or every version of a module
/// (names starting with `module@`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub entries: Vec<String>,
    pub modules: Vec<String>,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.modules.is_empty()
    }

    pub fn matches(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e == name) || self.modules.iter().any(|m| of_module(name, m))
    }

    /// What of this selection none of `names` matches, as people read it: the entry
    /// name, or `module M`.
    pub fn not_found<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut entries: Vec<&String> = self.entries.iter().collect();
        let mut modules: Vec<&String> = self.modules.iter().collect();
        for name in names {
            entries.retain(|e| e.as_str() != name);
            modules.retain(|m| !of_module(name, m));
        }
        entries
            .into_iter()
            .cloned()
            .chain(modules.into_iter().map(|m| format!("module {m}")))
            .collect()
    }
}

/// `name` is a version of `module` (`module@version`).
fn of_module(name: &str, module: &str) -> bool {
    name.strip_prefix(module)
        .is_some_and(|rest| rest.starts_with('@'))
}

/// The index locked for a change (see [`CacheOf::index_mut`]).
struct IndexWrite<'a, I: Ord + std::hash::Hash + Clone> {
    index: std::sync::MutexGuard<'a, Index<I>>,
    totals: &'a Mutex<Totals>,
}

impl<I: Ord + std::hash::Hash + Clone> std::ops::Deref for IndexWrite<'_, I> {
    type Target = Index<I>;
    fn deref(&self) -> &Index<I> {
        &self.index
    }
}

impl<I: Ord + std::hash::Hash + Clone> std::ops::DerefMut for IndexWrite<'_, I> {
    fn deref_mut(&mut self) -> &mut Index<I> {
        &mut self.index
    }
}

impl<I: Ord + std::hash::Hash + Clone> Drop for IndexWrite<'_, I> {
    fn drop(&mut self) {
        *self.totals.lock().unwrap() = self.index.totals();
    }
}

/// Entries with their metadata, as scans and snapshots list them.
type Entries<K> = Vec<(<K as Kind>::Id, EntryMeta)>;

/// How many recent errors and problems `status` shows.
const RECENT: usize = 20;

pub trait Cache: Send + Sync {
    fn config(&self) -> CacheConfig;
    /// Applies a reloaded config (limits, keep, schedules) to the same kind and path.
    fn set_config(&self, config: CacheConfig);
    /// Walks the whole cache and replaces the index.
    fn scan(&self, now: UnixTime) -> ScanRecord;
    /// Sizes and ages only: the stat-only walk, without completing entries (go-build:
    /// without reading every action to pair it with its output). What `cachewarden
    /// scan` needs to report sizes against limits; status says `walked` and counts
    /// files. Kinds that do not complete scans just scan.
    fn walk(&self, now: UnixTime) -> ScanRecord;
    /// Re-reads the entries the changed paths (relative to the root) belong to.
    fn apply_changes(&self, rel_paths: &[PathBuf]);
    fn watch_dirs(&self) -> Vec<WatchDir>;
    fn status(&self, now: UnixTime) -> CacheStatus;
    fn entries(&self, order: EntryOrder, limit: usize, now: UnixTime) -> Vec<EntryView>;
    /// Cheap check for the watch path: is the cache over `max_size` or the disk below
    /// `min_free`? (Age is left to the schedule.)
    fn over_size_or_free_limit(&self) -> bool;
    fn evict(&self, dry_run: bool, now: UnixTime) -> EvictionReport;
    /// Evicts for the cache's limits and frees `free_bytes` more, oldest first, for its
    /// group's limit `why` (`group.rs`).
    fn evict_for_group(
        &self,
        free_bytes: u64,
        why: plan::Reason,
        dry_run: bool,
        now: UnixTime,
    ) -> EvictionReport;
    /// What an eviction for size or free space could take now: (tier, last use, disk
    /// bytes) of every entry not pinned, past `min_age`, not held by a running tool.
    fn evictable(&self, now: UnixTime) -> Vec<(u8, UnixTime, u64)>;
    /// Removes the entries a user named, whatever the limits say — but never one used
    /// within `min_age` or one a running tool may open (those are reported skipped).
    fn evict_selected(&self, selection: &Selection, dry_run: bool, now: UnixTime)
        -> EvictionReport;
    fn verify(&self, repair: bool, now: UnixTime) -> VerifyReport;
    /// Checks again the entries at these paths and those with open problems (what a
    /// one-shot `verify` found or repaired); never repairs. Returns how many it checked.
    fn recheck(&self, paths: &[String], now: UnixTime) -> usize;
    /// The last eviction before this process started (from the audit trail), until
    /// one of its own replaces it.
    fn seed_last_eviction(&self, last: EvictionSummary);
    fn record_error(&self, message: String, now: UnixTime);
    /// Says that something is wrong now (`what` names the kind of condition; a new
    /// message replaces the old, keeping since when), or with `None` that it is over.
    /// Conditions are states, not errors: they are not counted.
    fn set_condition(&self, what: &'static str, message: Option<String>, now: UnixTime);
    /// How far the running eviction or sweep is: (entries done, entries to do).
    fn progress(&self) -> (u64, u64);
    /// What running tools may still open (see [`crate::kinds::InUse`]).
    fn in_use(&self) -> Option<crate::kinds::InUse>;
    /// Saves the index to `path` for a cheap restart; `Ok(false)` if this kind has no
    /// partitions to make a restart incremental.
    fn save_snapshot(&self, path: &Path) -> std::io::Result<bool>;
    /// Loads a snapshot saved by [`Cache::save_snapshot`] and rescans only partitions
    /// that changed since. `None` (after logging why) means: do a full scan.
    fn restore(&self, path: &Path, now: UnixTime) -> Option<ScanRecord>;
}

pub struct CacheOf<K: Kind> {
    kind: K,
    config: RwLock<CacheConfig>,
    /// Locked for reading with `index.lock()`, for changing with [`CacheOf::index_mut`].
    index: Mutex<Index<K::Id>>,
    /// The index's totals as of its last change: what `status` reads, so a status
    /// request never waits for the index lock a scan, eviction or listing holds.
    totals: Mutex<Totals>,
    history: Mutex<History>,
    /// Entries evicted for size or free space, to notice those that come back.
    churn: Mutex<crate::churn::Churn>,
    /// The running eviction's or sweep's entries done and to do, for progress bars.
    progress: (AtomicU64, AtomicU64),
    /// Paths changed while a full scan runs, replayed after it.
    changed_during_scan: Mutex<Option<Vec<PathBuf>>>,
    /// Per partition, its directory's mtime when last scanned (see `snapshot.rs`).
    stamps: Mutex<Vec<Option<Stamp>>>,
    work: Mutex<()>,
    /// What is wrong now, by kind: since when, and what ([`Cache::set_condition`]).
    conditions: Mutex<std::collections::BTreeMap<&'static str, (UnixTime, String)>>,
}

#[derive(Default)]
struct History {
    /// The first full scan is done.
    scanned: bool,
    /// The first walk is indexed and its entries are being completed (see
    /// [`Kind::complete`]).
    walked: bool,
    /// The index is a walk's and will not be completed ([`Cache::walk`]).
    walk_only: bool,
    last_scan: Option<ScanRecord>,
    last_eviction: Option<EvictionSummary>,
    last_enforcement: Option<UnixTime>,
    /// What running tools held at the last enforcement, if anything.
    held: Option<crate::report::HeldView>,
    /// Why the last enforcement left a limit exceeded, and until when (`plan.rs`).
    unmet: Vec<String>,
    /// The working set at the last enforcement while evicted entries came back.
    working_set: Option<crate::churn::WorkingSet>,
    evicted_entries_total: u64,
    evicted_bytes_total: u64,
    /// (entries, bytes) evicted by reason, in `plan::Reason` order.
    evicted_by_reason: std::collections::BTreeMap<plan::Reason, (u64, u64)>,
    last_verify: Option<UnixTime>,
    last_verify_duration_ms: Option<u64>,
    /// Problems found by the last verification and not repaired.
    open_problems: Vec<ProblemView>,
    problems_found_total: u64,
    errors: VecDeque<ErrorRecord>,
    errors_total: u64,
}

/// Builds the engine for a configured cache, with the kind it names.
pub fn open(config: CacheConfig) -> Arc<dyn Cache> {
    struct Engine(CacheConfig);
    impl crate::kinds::WithKind for Engine {
        type Out = Arc<dyn Cache>;
        fn with<K: Kind>(self, kind: K) -> Arc<dyn Cache> {
            CacheOf::open(kind, self.0)
        }
    }
    let settings = settings_of(&config);
    (config.kind).build(config.path.clone(), &settings, Engine(config))
}

impl<K: Kind> CacheOf<K> {
    pub fn open(kind: K, config: CacheConfig) -> Arc<dyn Cache> {
        Arc::new(CacheOf::new(kind, config))
    }

    fn new(kind: K, config: CacheConfig) -> CacheOf<K> {
        kind.configure(&settings_of(&config));
        CacheOf {
            config: RwLock::new(config),
            index: Mutex::new(Index::default()),
            totals: Mutex::new(Totals::default()),
            history: Mutex::new(History::default()),
            churn: Mutex::new(crate::churn::Churn::default()),
            progress: (AtomicU64::new(0), AtomicU64::new(0)),
            changed_during_scan: Mutex::new(None),
            stamps: Mutex::new(vec![None; kind.partitions()]),
            kind,
            work: Mutex::new(()),
            conditions: Mutex::new(Default::default()),
        }
    }

    /// The index, locked for a change; its totals are published when the lock is
    /// released.
    fn index_mut(&self) -> IndexWrite<'_, K::Id> {
        IndexWrite {
            index: self.index.lock().unwrap(),
            totals: &self.totals,
        }
    }

    fn totals(&self) -> Totals {
        *self.totals.lock().unwrap()
    }

    /// Says so, as an error, when an entry is larger than the index can count (it is
    /// then counted as `MAX_ENTRY_DISK`, never wrapped).
    fn check_entry_size(&self, id: &K::Id, meta: &EntryMeta, now: UnixTime) {
        if meta.disk_bytes > crate::index::MAX_ENTRY_DISK {
            self.record_error(
                format!(
                    "{}: {} bytes on disk, more than an index entry holds; counted as {}",
                    self.kind.path_of(id),
                    meta.disk_bytes,
                    crate::index::MAX_ENTRY_DISK
                ),
                now,
            );
        }
    }

    /// A last use in the future counts as the time the index first saw it: a file's
    /// times are its owner's to set, and `touch -d 2100-01-01` would otherwise make
    /// entries the newest for ever (issue #29). Counting them as *now* at every look
    /// would do the same (always within `min_age`), so an entry already indexed keeps
    /// the time it had, and a new one gets now. (Removal re-checks ignore such times
    /// too: [`crate::kinds::used_after`].) Returns how many, and one of them.
    fn clamp_future_times<'a>(
        &self,
        entries: impl Iterator<Item = (&'a K::Id, &'a mut EntryMeta)>,
        previous: &dyn Fn(&K::Id) -> Option<UnixTime>,
        now: UnixTime,
    ) -> (u64, Option<(String, UnixTime)>) {
        let mut future = 0u64;
        let mut example = None;
        for (id, meta) in entries {
            if meta.last_use > now + crate::kinds::CLOCK_SLACK_SECS {
                future += 1;
                example.get_or_insert_with(|| (self.kind.path_of(id), meta.last_use));
                meta.last_use = previous(id)
                    .filter(|t| *t <= now + crate::kinds::CLOCK_SLACK_SECS)
                    .unwrap_or(now);
            }
        }
        (future, example)
    }

    fn start_progress(&self, total: usize) {
        self.progress.0.store(0, Ordering::Relaxed);
        self.progress.1.store(total as u64, Ordering::Relaxed);
    }

    fn cfg(&self) -> CacheConfig {
        self.config.read().unwrap().clone()
    }

    fn disk(&self) -> Option<DiskSpace> {
        fsutil::disk_space(self.kind.root()).ok()
    }

    fn plan_limits(&self, config: &CacheConfig, disk: Option<DiskSpace>) -> PlanLimits {
        let total = disk.map_or(0, |d| d.total_bytes);
        PlanLimits {
            max_bytes: config.limits.max_size.map(|l| l.resolve(total)),
            max_age_secs: config.limits.max_age.map(secs),
            min_free_bytes: config.limits.min_free.map(|l| l.resolve(total)),
            min_age_secs: secs(config.limits.min_age),
            surplus_age_secs: config.keep_toolchains.map(|_| {
                secs(
                    config
                        .limits
                        .max_age
                        .unwrap_or(crate::config::SURPLUS_TOOLCHAIN_AGE),
                )
            }),
        }
    }

    /// The Go toolchains the cache holds, newest first (go-mod; empty for other kinds).
    fn toolchains(&self) -> Vec<crate::report::ToolchainView> {
        if !self.kind.holds_toolchains() {
            return Vec::new();
        }
        let mut by_version: std::collections::BTreeMap<String, (u64, UnixTime)> =
            Default::default();
        for (id, m) in self.index.lock().unwrap().iter() {
            if let Some(v) = self.kind.toolchain_of(id) {
                let t = by_version.entry(v).or_insert((0, UnixTime::MIN));
                t.0 += m.disk_bytes;
                t.1 = t.1.max(m.last_use);
            }
        }
        let mut views: Vec<crate::report::ToolchainView> = by_version
            .into_iter()
            .map(
                |(version, (disk_bytes, last_use))| crate::report::ToolchainView {
                    version,
                    disk_bytes,
                    last_use,
                },
            )
            .collect();
        views.sort_by(|a, b| crate::golang::module::compare_go_versions(&b.version, &a.version));
        views
    }

    fn pinned(&self, config: &CacheConfig, id: &K::Id) -> bool {
        if config.keep.is_empty() {
            return false;
        }
        let name = self.kind.name_of(id);
        let opts = MatchOptions {
            require_literal_separator: true,
            ..MatchOptions::new()
        };
        config.keep.iter().any(|p| p.matches_with(&name, opts))
    }

    fn view(
        &self,
        config: &CacheConfig,
        id: &K::Id,
        disk_bytes: u64,
        last_use: UnixTime,
        now: UnixTime,
    ) -> EntryView {
        EntryView {
            entry: self.kind.name_of(id),
            path: self.kind.path_of(id),
            disk_bytes,
            last_use,
            age_secs: now - last_use,
            pinned: self.pinned(config, id),
        }
    }

    fn problem_view(
        &self,
        config: &CacheConfig,
        id: &K::Id,
        problem: &str,
        detail: String,
    ) -> ProblemView {
        ProblemView {
            cache: config.name.clone(),
            entry: self.kind.name_of(id),
            path: self.kind.path_of(id),
            problem: problem.to_string(),
            detail,
            repaired: false,
            unrepaired: None,
        }
    }

    /// Entries that came to name an `aux` (an output, for go-build) that other entries
    /// name too: the kind settles who carries it and they are stat'ed again, so the
    /// index accounts as a full scan would (one pass over the index, only when some
    /// entry was named anew). Returns the errors of those stats.
    fn settle_shared(&self, index: &mut Index<K::Id>, named_anew: &HashSet<u64>) -> Vec<String> {
        if named_anew.is_empty() || !self.kind.aux_can_be_shared() {
            return Vec::new();
        }
        let mut wanted: Vec<u64> = named_anew.iter().copied().collect();
        wanted.sort_unstable();
        let mut namers: std::collections::HashMap<u64, Vec<K::Id>> = Default::default();
        for (id, aux) in index.with_aux(&wanted) {
            namers.entry(aux).or_default().push(id.clone());
        }
        let mut errors = Vec::new();
        for (aux, ids) in namers {
            if (ids.len() > 1 || self.kind.is_shared(aux)) && self.kind.named_by_several(aux, &ids)
            {
                for id in ids {
                    if let Err(e) = self.apply_one(index, id) {
                        errors.push(e);
                    }
                }
            }
        }
        errors
    }

    /// Re-reads the entries whose size counts parts that changed ([`Kind::part_of`]).
    fn reread_wholes(&self, index: &mut Index<K::Id>, mut parts: Vec<u64>) -> Vec<String> {
        if parts.is_empty() {
            return Vec::new();
        }
        parts.sort_unstable();
        parts.dedup();
        let wholes: Vec<K::Id> = index
            .with_aux(&parts)
            .into_iter()
            .map(|(id, _)| id.clone())
            .collect();
        wholes
            .into_iter()
            .filter_map(|id| self.apply_one(index, id).err())
            .collect()
    }

    /// Brings one entry of the index up to date with the disk. `Some(aux)` when the
    /// entry now names an `aux` it did not before (new, or naming something else), or
    /// was used or removed while naming a shared one, for [`Self::settle_shared`].
    fn apply_one(&self, index: &mut Index<K::Id>, id: K::Id) -> Result<Option<u64>, String> {
        let before = index.get(&id).map(|m| (m.aux, m.last_use));
        match self.kind.stat(&id) {
            Ok(Some(mut meta)) => {
                // Silent here (a scan logs them): a user touching files must not be
                // able to flood the log, one line per event.
                let was = before.map(|b| b.1);
                self.clamp_future_times(std::iter::once((&id, &mut meta)), &|_| was, crate::now());
                self.check_entry_size(&id, &meta, crate::now());
                if before.is_none() {
                    let key = crate::churn::key_of(&id);
                    (self.churn.lock().unwrap()).appeared(key, meta.disk_bytes, crate::now());
                }
                index.upsert(id, meta);
                let named_anew = before.map(|b| b.0) != Some(meta.aux);
                let used_shared =
                    before.is_some_and(|b| b.1 != meta.last_use) && self.kind.is_shared(meta.aux);
                Ok((meta.aux != 0 && (named_anew || used_shared)).then_some(meta.aux))
            }
            Ok(None) => {
                index.remove(&id);
                Ok(before
                    .map(|b| b.0)
                    .filter(|&aux| aux != 0 && self.kind.is_shared(aux)))
            }
            Err(e) => Err(format!("{}: {e}", self.kind.path_of(&id))),
        }
    }

    /// Replaces the index with a scan's result (plus entries kept from a snapshot),
    /// then replays the changes watched meanwhile.
    fn install(
        &self,
        result: ScanResult<K::Id>,
        kept: Vec<(K::Id, EntryMeta)>,
        started: Instant,
        walk_ms: u64,
        now: UnixTime,
        partitions_rescanned: Option<u64>,
    ) -> ScanRecord {
        {
            let mut stamps = self.stamps.lock().unwrap();
            for (p, stamp) in &result.stamps {
                if let Some(slot) = stamps.get_mut(*p) {
                    *slot = *stamp;
                }
            }
        }
        let mut result = result;
        let previous = |id: &K::Id| self.index.lock().unwrap().get(id).map(|m| m.last_use);
        let (future, example) = self.clamp_future_times(
            result.entries.iter_mut().map(|(id, m)| (&*id, m)),
            &previous,
            now,
        );
        if let Some((path, at)) = example {
            tracing::warn!(
                cache = %self.cfg().name,
                "{future} entries last used in the future (e.g. {path} at {}): counted as used when first seen",
                crate::units::local_time(at)
            );
        }
        for (id, m) in &result.entries {
            self.check_entry_size(id, m, now);
        }
        let mut entries = kept;
        entries.extend(result.entries); // no copy when `kept` is empty
        let fresh = Index::from_entries(entries);
        let record = ScanRecord {
            at: now,
            duration_ms: started.elapsed().as_millis() as u64,
            walk_ms,
            entries: fresh.len() as u64,
            disk_bytes: fresh.disk_bytes(),
            ignored_files: result.ignored_files,
            errors: result.errors.len() as u64,
            partitions_rescanned,
            partitions: partitions_rescanned.map(|_| self.kind.partitions() as u64),
            unmanaged: result.unmanaged.clone(),
        };
        *self.index_mut() = fresh;
        parallel::release_freed_memory();
        let replay = self
            .changed_during_scan
            .lock()
            .unwrap()
            .take()
            .unwrap_or_default();
        self.apply_changes(&replay);
        let mut history = self.history.lock().unwrap();
        history.scanned = true;
        history.last_scan = Some(record.clone());
        drop(history);
        for e in result.errors.into_iter().take(RECENT) {
            self.record_error(format!("scan: {e}"), now);
        }
        record
    }
}

/// What [`Kind::complete`] may take as known: the `aux` of these entries, for the
/// same id with the same last use.
fn known_from<I: std::hash::Hash + Eq>(
    entries: &[(I, EntryMeta)],
) -> impl Fn(&[(I, EntryMeta)]) -> Vec<Option<u64>> + '_ {
    let by_id: std::collections::HashMap<&I, &EntryMeta> =
        entries.iter().map(|(id, m)| (id, m)).collect();
    move |asked| {
        asked
            .iter()
            .map(|(id, m)| Some(by_id.get(id).filter(|k| k.last_use == m.last_use)?.aux))
            .collect()
    }
}

/// The tier the planner uses: the kind's, or — with `tiered_eviction = false` — one
/// tier for everything but the age-only entries.
fn tier_for(tiered: bool, kind_tier: u8) -> u8 {
    match (tiered, kind_tier) {
        (true, t) | (false, t @ plan::AGE_ONLY) => t,
        (false, _) => 0,
    }
}

/// Seconds of a configured duration; a "never" like 300000000000y saturates instead of
/// wrapping negative (which would make every entry look expired).
fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// What a kind keeps of its cache's config.
fn settings_of(config: &CacheConfig) -> KindSettings {
    KindSettings {
        min_age: config.limits.min_age,
        guard_processes: config.guard_processes.clone(),
    }
}

impl<K: Kind> Cache for CacheOf<K> {
    fn config(&self) -> CacheConfig {
        self.cfg()
    }

    fn set_config(&self, config: CacheConfig) {
        self.kind.configure(&settings_of(&config));
        *self.config.write().unwrap() = config;
    }

    fn scan(&self, now: UnixTime) -> ScanRecord {
        let _work = self.work.lock().unwrap();
        *self.changed_during_scan.lock().unwrap() = Some(Vec::new());
        let started = Instant::now();
        let walked = self.kind.scan();
        if !self.kind.completes_scans() {
            let walk_ms = started.elapsed().as_millis() as u64;
            return self.install(walked, Vec::new(), started, walk_ms, now, None);
        }
        // A first scan serves the walk's provisional index (sizes and ages are exact)
        // while the kind completes it; eviction and verification wait on `work`. A
        // rescan keeps serving the old index, whose unchanged entries spare the kind
        // from reading them again.
        let first = !self.history.lock().unwrap().scanned;
        if first {
            let mut provisional = walked.entries.clone();
            self.clamp_future_times(
                provisional.iter_mut().map(|(id, m)| (&*id, m)),
                &|_| None,
                now,
            );
            *self.index_mut() = Index::from_entries(provisional);
            self.history.lock().unwrap().walked = true;
        }
        let walk_ms = started.elapsed().as_millis() as u64;
        let known = |entries: &[(K::Id, EntryMeta)]| {
            if first {
                return vec![None; entries.len()];
            }
            let indexed = self
                .index
                .lock()
                .unwrap()
                .get_many(entries.iter().map(|(id, _)| id));
            entries
                .iter()
                .zip(indexed)
                .map(|((_, m), k)| Some(k.filter(|k| k.last_use == m.last_use)?.aux))
                .collect()
        };
        let result = self.kind.complete(walked, &known, &|_| false);
        self.install(result, Vec::new(), started, walk_ms, now, None)
    }

    fn walk(&self, now: UnixTime) -> ScanRecord {
        if !self.kind.completes_scans() {
            return self.scan(now);
        }
        let _work = self.work.lock().unwrap();
        let started = Instant::now();
        let walked = self.kind.scan();
        let walk_ms = started.elapsed().as_millis() as u64;
        let record = self.install(walked, Vec::new(), started, walk_ms, now, None);
        self.history.lock().unwrap().walk_only = true;
        record
    }

    fn apply_changes(&self, rel_paths: &[PathBuf]) {
        if let Some(pending) = self.changed_during_scan.lock().unwrap().as_mut() {
            pending.extend_from_slice(rel_paths);
        }
        let mut ids: Vec<K::Id> = Vec::new();
        for p in rel_paths {
            self.kind.entries_at(p, &mut ids);
        }
        ids.sort();
        ids.dedup();
        let mut errors = Vec::new();
        {
            let mut index = self.index_mut();
            let mut named_anew = HashSet::new();
            let mut parts_changed = Vec::new();
            for id in ids {
                parts_changed.extend(self.kind.part_of(&id));
                match self.apply_one(&mut index, id) {
                    Ok(Some(aux)) => {
                        named_anew.insert(aux);
                    }
                    Ok(None) => {}
                    Err(e) => errors.push(e),
                }
            }
            // A changed part shared by several entries is settled as a scan would
            // (its carrier is the last used); one of a single entry is re-read.
            let (shared, own): (Vec<u64>, Vec<u64>) = parts_changed
                .into_iter()
                .partition(|&aux| self.kind.is_shared(aux));
            named_anew.extend(shared);
            errors.extend(self.settle_shared(&mut index, &named_anew));
            errors.extend(self.reread_wholes(&mut index, own));
        }
        let now = crate::now();
        for e in errors {
            self.record_error(format!("watch: {e}"), now);
        }
    }

    fn watch_dirs(&self) -> Vec<WatchDir> {
        self.kind.watch_dirs()
    }

    fn status(&self, now: UnixTime) -> CacheStatus {
        let config = self.cfg();
        let disk = self.disk();
        let limits = self.plan_limits(&config, disk);
        let Totals {
            entries,
            disk_bytes,
            apparent_bytes,
            oldest_use: oldest,
        } = self.totals();
        let mut over_limits = Vec::new();
        if limits.max_bytes.is_some_and(|m| disk_bytes > m) {
            over_limits.push("max_size".to_string());
        }
        if let (Some(min), Some(d)) = (limits.min_free_bytes, disk) {
            if d.available_bytes < min {
                over_limits.push("min_free".to_string());
            }
        }
        if let (Some(age), Some(oldest)) = (limits.max_age_secs, oldest) {
            if oldest < now - age {
                over_limits.push("max_age".to_string());
            }
        }
        let history = self.history.lock().unwrap();
        // Why a limit stays exceeded: said only while it is.
        let unmet = match over_limits.is_empty() {
            true => Vec::new(),
            false => history.unmet.clone(),
        };
        CacheStatus {
            name: config.name.clone(),
            kind: config.kind.to_string(),
            path: self.kind.root().to_path_buf(),
            user: config.owner.as_ref().map(|o| o.name.clone()),
            state: match (history.scanned, history.walked, history.walk_only) {
                (_, _, true) => "walked",
                (true, _, _) => "ready",
                (false, true, _) => "completing",
                (false, false, _) => "scanning",
            }
            .to_string(),
            entries,
            disk_bytes,
            apparent_bytes,
            limits: LimitsView::new(&config, &limits),
            disk,
            oldest_last_use: oldest,
            oldest_age_secs: oldest.map(|t| now - t),
            over_limits,
            last_use_signal: self.kind.last_use_signal().to_string(),
            last_scan: history.last_scan.clone(),
            last_eviction: history.last_eviction.clone(),
            last_enforcement: history.last_enforcement,
            held: history.held.clone(),
            leases: self.kind.leases(),
            unmet,
            toolchains: self.toolchains(),
            recreated_after_eviction: self.churn.lock().unwrap().recreated(now),
            working_set: history.working_set,
            evicted_entries_total: history.evicted_entries_total,
            evicted_bytes_total: history.evicted_bytes_total,
            evicted_by_reason: history
                .evicted_by_reason
                .iter()
                .map(|(&reason, &(entries, bytes))| EvictedByReason {
                    reason,
                    entries,
                    bytes,
                })
                .collect(),
            problems: ProblemsView {
                last_verify: history.last_verify,
                last_verify_duration_ms: history.last_verify_duration_ms,
                open_by_problem: history.open_problems.iter().fold(
                    Default::default(),
                    |mut counts, p| {
                        *counts.entry(p.problem.clone()).or_default() += 1;
                        counts
                    },
                ),
                open: history.open_problems.len() as u64,
                found_total: history.problems_found_total,
                recent: history.open_problems.iter().take(RECENT).cloned().collect(),
            },
            errors_total: history.errors_total,
            errors: history.errors.iter().cloned().collect(),
            conditions: (self.conditions.lock().unwrap().values())
                .map(|(at, message)| ErrorRecord {
                    at: *at,
                    message: message.clone(),
                })
                .collect(),
        }
    }

    fn entries(&self, order: EntryOrder, limit: usize, now: UnixTime) -> Vec<EntryView> {
        // The `limit` first entries in order, kept in a bounded max-heap: memory stays
        // O(limit) however large the index is.
        let config = self.cfg();
        let key = |m: &EntryMeta| match order {
            EntryOrder::Oldest => m.last_use,
            EntryOrder::Largest => -(m.disk_bytes.min(i64::MAX as u64) as i64),
        };
        let mut best: std::collections::BinaryHeap<(i64, K::Id, u64, UnixTime)> =
            Default::default();
        {
            let index = self.index.lock().unwrap();
            for (id, m) in index.iter() {
                let k = key(&m);
                if best.len() == limit {
                    match best.peek() {
                        Some(top) if (k, id) < (top.0, &top.1) => {
                            best.pop();
                        }
                        _ => continue,
                    }
                }
                if limit > 0 {
                    best.push((k, id.clone(), m.disk_bytes, m.last_use));
                }
            }
        }
        best.into_sorted_vec()
            .into_iter()
            .map(|(_, id, size, t)| self.view(&config, &id, size, t, now))
            .collect()
    }

    fn over_size_or_free_limit(&self) -> bool {
        let config = self.cfg();
        let disk = if config.limits.min_free.is_some()
            || matches!(
                config.limits.max_size,
                Some(crate::units::SizeLimit::Percent(_))
            ) {
            self.disk()
        } else {
            None
        };
        let limits = self.plan_limits(&config, disk);
        let size = self.totals().disk_bytes;
        limits.max_bytes.is_some_and(|m| size > m)
            || matches!((limits.min_free_bytes, disk), (Some(min), Some(d)) if d.available_bytes < min)
    }

    fn evict(&self, dry_run: bool, now: UnixTime) -> EvictionReport {
        self.evict_over_limits(None, dry_run, now)
    }

    fn evict_for_group(
        &self,
        free_bytes: u64,
        why: plan::Reason,
        dry_run: bool,
        now: UnixTime,
    ) -> EvictionReport {
        self.evict_over_limits(Some((free_bytes, why)), dry_run, now)
    }

    fn evictable(&self, now: UnixTime) -> Vec<(u8, UnixTime, u64)> {
        self.evictable_now(now)
    }

    fn evict_selected(
        &self,
        selection: &Selection,
        dry_run: bool,
        now: UnixTime,
    ) -> EvictionReport {
        self.evict_named(selection, dry_run, now)
    }

    fn verify(&self, repair: bool, now: UnixTime) -> VerifyReport {
        self.verify_all(repair, now)
    }

    fn recheck(&self, paths: &[String], now: UnixTime) -> usize {
        self.recheck_paths(paths, now)
    }

    fn seed_last_eviction(&self, last: EvictionSummary) {
        let mut history = self.history.lock().unwrap();
        if history.last_eviction.is_none() {
            history.last_eviction = Some(last);
        }
    }

    fn set_condition(&self, what: &'static str, message: Option<String>, now: UnixTime) {
        let mut conditions = self.conditions.lock().unwrap();
        match message {
            None => {
                if conditions.remove(what).is_some() {
                    tracing::info!(cache = %self.cfg().name, "no longer: {what}");
                }
            }
            Some(message) => {
                let since = match conditions.get(what) {
                    Some((_, old)) if *old == message => return,
                    Some((since, _)) => *since,
                    None => now,
                };
                tracing::warn!(cache = %self.cfg().name, "{message}");
                conditions.insert(what, (since, message));
            }
        }
    }

    fn record_error(&self, message: String, now: UnixTime) {
        tracing::warn!(cache = %self.config.read().unwrap().name, "{message}");
        let mut history = self.history.lock().unwrap();
        history.errors_total += 1;
        if history.errors.len() == RECENT {
            history.errors.pop_front();
        }
        history.errors.push_back(ErrorRecord { at: now, message });
    }

    fn progress(&self) -> (u64, u64) {
        (
            self.progress.0.load(Ordering::Relaxed),
            self.progress.1.load(Ordering::Relaxed),
        )
    }

    fn in_use(&self) -> Option<crate::kinds::InUse> {
        self.kind.in_use()
    }

    fn save_snapshot(&self, path: &Path) -> std::io::Result<bool> {
        self.save_index_snapshot(path)
    }

    fn restore(&self, path: &Path, now: UnixTime) -> Option<ScanRecord> {
        self.restore_from_snapshot(path, now)
    }
}

#[cfg(test)]
mod tests;
