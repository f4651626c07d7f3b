//! One managed cache: a kind, its index, its limits and its history, behind the
//! object-safe [`Cache`] trait the daemon, the server and the CLI use.
//!
//! Every method blocks (it may walk, hash or unlink); async callers use
//! `spawn_blocking`. Scans, evictions and verifications of one cache are serialised by
//! `work`; watch events update the index concurrently. Events that arrive while a full
//! scan runs are replayed after the scan's result replaces the index, so a file created
//! mid-scan is never lost.

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
use crate::UnixTime;
use crate::plan::{self, Candidate, PlanLimits};
use crate::report::*;

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

impl Selection {}

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
    /// Removes the entries a user named, whatever the limits say — but never one used
    /// within `min_age` or one a running tool may open (those are reported skipped).
    fn evict_selected(&self, selection: &Selection, dry_run: bool, now: UnixTime)
        -> EvictionReport;
    fn verify(&self, repair: bool, now: UnixTime) -> VerifyReport;
    fn record_error(&self, message: String, now: UnixTime);
    /// How far the running eviction or sweep is: (entries done, entries to do).
    fn progress(&self) -> (u64, u64);
    /// Entries used at or after this may still be opened by a running tool.
    fn in_use_since(&self) -> Option<UnixTime>;
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
    use crate::kinds::{dir::DirKind, go_build::GoBuildKind, go_mod::GoModKind, KindName};
    match config.kind {
        KindName::Dir => CacheOf::open(DirKind::new(config.path.clone()), config),
        KindName::GoBuild => CacheOf::open(GoBuildKind::new(config.path.clone()), config),
        KindName::GoMod => CacheOf::open(
            GoModKind::new(config.path.clone(), config.limits.min_age),
            config,
        ),
    }
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
            in_use_since: None,
        }
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

    fn apply_one(&self, index: &mut Index<K::Id>, id: K::Id) -> Result<(), String> {
        match self.kind.stat(&id) {
            Ok(Some(meta)) => {
                self.check_entry_size(&id, &meta, crate::now());
                if index.get(&id).is_none() {
                    let key = crate::churn::key_of(&id);
                    (self.churn.lock().unwrap()).appeared(key, meta.disk_bytes, crate::now());
                }
                index.upsert(id, meta)
            }
            Ok(None) => {
                index.remove(&id);
            }
            Err(e) => return Err(format!("{}: {e}", self.kind.path_of(&id))),
        }
        Ok(())
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

    /// Removes what a plan lists (or, for a dry run, only reports it) and keeps the
    /// index and history in step.
    fn carry_out(
        &self,
        config: &CacheConfig,
        plan: plan::Plan<K::Id>,
        survivors: &Survivors,
        in_use: Option<crate::kinds::InUse>,
        dry_run: bool,
        now: UnixTime,
    ) -> EvictionReport {
        let started = Instant::now();
        let outcomes: Vec<Option<Removal>> = if dry_run {
            vec![None; plan.evict.len()]
        } else {
            self.start_progress(plan.evict.len());
            parallel::map_with(parallel::IO_THREADS, &plan.evict, |p| {
                let outcome = self
                    .kind
                    .remove(&p.id, p.last_use, Removing::Evict(survivors));
                self.progress.0.fetch_add(1, Ordering::Relaxed);
                Some(outcome)
            })
        };

        let mut report = EvictionReport {
            cache: config.name.clone(),
            dry_run,
            at: now,
            bytes_before: plan.bytes_before,
            bytes_after_planned: plan.bytes_after,
            removed_entries: 0,
            freed_bytes: 0,
            evicted: Vec::new(),
            skipped: Vec::new(),
            unmet: plan.unmet.clone(),
            held_in_use: plan.held_in_use,
            in_use_since: in_use.as_ref().map(|u| u.since),
            in_use_by: in_use.filter(|_| plan.held_in_use > 0).map(|u| u.by),
            duration_ms: 0,
            not_found: Vec::new(),
            failed: Vec::new(),
            bytes_after: 0,
        };
        let mut removed_by_reason = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        let mut left_behind: Vec<u64> = Vec::new();
        {
            let mut index = self.index_mut();
            let mut gone: Vec<&K::Id> = Vec::new();
            for (planned, outcome) in plan.evict.iter().zip(outcomes) {
                let mut view = self.view(
                    config,
                    &planned.id,
                    planned.disk_bytes,
                    planned.last_use,
                    now,
                );
                view.pinned = false;
                match outcome {
                    None => report.evicted.push(EvictedView {
                        entry: view,
                        reason: planned.reason,
                    }),
                    Some(Removal::Removed { disk_bytes }) => {
                        if disk_bytes < planned.disk_bytes {
                            // Part of it stays (go-build: an output others still name):
                            // one of them is re-read below to take those bytes over.
                            if let Some(m) = index.get(&planned.id).filter(|m| m.aux != 0) {
                                left_behind.push(m.aux);
                            }
                        }
                        removed_by_reason.push((planned.reason, disk_bytes));
                        if matches!(
                            planned.reason,
                            plan::Reason::MaxSize | plan::Reason::MinFree
                        ) {
                            let key = crate::churn::key_of(&planned.id);
                            self.churn.lock().unwrap().evicted(key, now);
                        }
                        gone.push(&planned.id);
                        report.removed_entries += 1;
                        report.freed_bytes += disk_bytes;
                        report.evicted.push(EvictedView {
                            entry: view,
                            reason: planned.reason,
                        });
                    }
                    Some(Removal::Gone) => gone.push(&planned.id),
                    Some(Removal::Skipped(why) | Removal::LockBusy(why) | Removal::InUse(why)) => {
                        // Used since planning, or busy: refresh its metadata so the next
                        // plan sees the truth.
                        let _ = self.apply_one(&mut index, planned.id.clone());
                        report.skipped.push(SkippedView {
                            entry: view.entry,
                            path: view.path,
                            reason: why,
                        });
                    }
                    Some(Removal::Failed(why)) => {
                        // Whatever part of it is left is still there: re-read it.
                        let _ = self.apply_one(&mut index, planned.id.clone());
                        failures.push(format!("{}: {why}", view.path));
                        report.failed.push(SkippedView {
                            entry: view.entry,
                            path: view.path,
                            reason: why,
                        });
                    }
                }
            }
            index.remove_many(gone);
            if !left_behind.is_empty() {
                left_behind.sort_unstable();
                left_behind.dedup();
                let heirs: Vec<K::Id> = index
                    .iter()
                    .filter(|(_, m)| left_behind.binary_search(&m.aux).is_ok())
                    .map(|(id, m)| (m.aux, id.clone()))
                    .collect::<std::collections::BTreeMap<u64, K::Id>>()
                    .into_values()
                    .collect();
                for heir in heirs {
                    let _ = self.apply_one(&mut index, heir);
                }
            }
            report.bytes_after = if dry_run {
                plan.bytes_after
            } else {
                index.disk_bytes()
            };
        }
        for failure in failures.iter().take(RECENT) {
            self.record_error(format!("eviction: {failure}"), now);
        }
        if failures.len() > RECENT {
            self.record_error(
                format!("eviction: {} more removals failed", failures.len() - RECENT),
                now,
            );
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        if !dry_run {
            let mut history = self.history.lock().unwrap();
            history.evicted_entries_total += report.removed_entries;
            history.evicted_bytes_total += report.freed_bytes;
            for (reason, bytes) in &removed_by_reason {
                let count = history.evicted_by_reason.entry(*reason).or_default();
                count.0 += 1;
                count.1 += bytes;
            }
            if report.removed_entries > 0 || !report.skipped.is_empty() {
                history.last_eviction = Some(EvictionSummary {
                    at: now,
                    entries: report.removed_entries,
                    freed_bytes: report.freed_bytes,
                    skipped: report.skipped.len() as u64,
                });
            }
        }
        report
    }
}

/// The `aux` values of the entries that stay when `going` are removed: every entry's
/// `aux`, minus one occurrence per removed entry (a multiset difference on sorted
/// vectors — 8 bytes per entry, no hash set over millions of ids).
fn survivors_of<'a, I: Ord + std::hash::Hash + Clone + 'a>(
    index: &Index<I>,
    going: impl Iterator<Item = &'a I>,
) -> Survivors {
    let mut all: Vec<u64> = index.iter().map(|(_, m)| m.aux).collect();
    all.sort_unstable();
    let mut gone: Vec<u64> = going
        .filter_map(|id| index.get(id))
        .map(|m| m.aux)
        .collect();
    gone.sort_unstable();
    let mut kept = Vec::with_capacity(all.len());
    let mut g = gone.into_iter().peekable();
    for aux in all {
        while g.peek().is_some_and(|&x| x < aux) {
            g.next();
        }
        if g.peek() == Some(&aux) {
            g.next();
        } else {
            kept.push(aux);
        }
    }
    Survivors::new(kept)
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
            *self.index_mut() = Index::from_entries(walked.entries.iter().cloned());
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
            for id in ids {
                if let Err(e) = self.apply_one(&mut index, id) {
                    errors.push(e);
                }
            }
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
        CacheStatus {
            name: config.name.clone(),
            kind: config.kind.to_string(),
            path: self.kind.root().to_path_buf(),
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
            recreated_after_eviction: self.churn.lock().unwrap().recreated(now),
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
        let _work = self.work.lock().unwrap();
        let config = self.cfg();
        let disk = self.disk();
        let in_use = self.kind.in_use();
        let mut limits = self.plan_limits(&config, disk);
        limits.in_use_since = in_use.as_ref().map(|u| u.since);
        let (plan, survivors) = {
            // Planning borrows the ids: a candidate costs 32 bytes, not a copy of the id.
            let index = self.index.lock().unwrap();
            let candidates: Vec<Candidate<&K::Id>> = index
                .iter()
                .map(|(id, m)| Candidate {
                    id,
                    disk_bytes: m.disk_bytes,
                    last_use: m.last_use,
                    pinned: self.pinned(&config, id),
                    tier: tier_for(config.tiered_eviction, self.kind.tier(id)),
                })
                .collect();
            let borrowed = plan::plan(&candidates, &limits, disk.map(|d| d.available_bytes), now);
            drop(candidates);
            let plan = plan::Plan {
                evict: borrowed
                    .evict
                    .into_iter()
                    .map(|p| plan::Planned {
                        id: p.id.clone(),
                        disk_bytes: p.disk_bytes,
                        last_use: p.last_use,
                        reason: p.reason,
                    })
                    .collect(),
                bytes_before: borrowed.bytes_before,
                bytes_after: borrowed.bytes_after,
                unmet: borrowed.unmet,
                held_in_use: borrowed.held_in_use,
            };
            let survivors = survivors_of(&index, plan.evict.iter().map(|p| &p.id));
            (plan, survivors)
        };

        let mut report = self.carry_out(&config, plan, &survivors, in_use, dry_run, now);
        if !report.failed.is_empty() && self.over_size_or_free_limit() {
            report.unmet.push(format!(
                "{} removals failed (see failed), and a limit is still exceeded: {} left",
                report.failed.len(),
                crate::units::format_bytes(report.bytes_after)
            ));
        }
        if !dry_run && report.unmet.is_empty() {
            self.history.lock().unwrap().last_enforcement = Some(now);
        }
        parallel::release_freed_memory(); // planning copied every entry
        report
    }

    fn evict_selected(
        &self,
        selection: &Selection,
        dry_run: bool,
        now: UnixTime,
    ) -> EvictionReport {
        let _work = self.work.lock().unwrap();
        let config = self.cfg();
        let in_use = self.kind.in_use();
        let young_after = now.saturating_sub(secs(config.limits.min_age));
        let mut refused = Vec::new();
        let mut matched: Vec<String> = Vec::new();
        let (plan, survivors) = {
            let index = self.index.lock().unwrap();
            let mut chosen: Vec<(u8, UnixTime, K::Id, u64)> = Vec::new();
            for (id, m) in index.iter() {
                let name = self.kind.name_of(id);
                if !selection.matches(&name) {
                    continue;
                }
                matched.push(name.clone());
                let why = if m.last_use > young_after {
                    Some("used within min_age".to_string())
                } else if in_use.as_ref().is_some_and(|u| m.last_use >= u.since) {
                    Some(format!(
                        "may still be opened by {}",
                        in_use.as_ref().unwrap().by
                    ))
                } else {
                    None
                };
                match why {
                    Some(reason) => refused.push(SkippedView {
                        entry: name,
                        path: self.kind.path_of(id),
                        reason,
                    }),
                    None => chosen.push((self.kind.tier(id), m.last_use, id.clone(), m.disk_bytes)),
                }
            }
            chosen.sort();
            let going: HashSet<&K::Id> = chosen.iter().map(|c| &c.2).collect();
            let survivors = Survivors::new(
                index
                    .iter()
                    .filter(|(id, _)| !going.contains(id))
                    .map(|(_, m)| m.aux)
                    .collect(),
            );
            drop(going);
            let bytes_before = index.disk_bytes();
            let freed: u64 = chosen.iter().map(|c| c.3).sum();
            let plan = plan::Plan {
                evict: chosen
                    .into_iter()
                    .map(|(_, last_use, id, disk_bytes)| plan::Planned {
                        id,
                        disk_bytes,
                        last_use,
                        reason: plan::Reason::Requested,
                    })
                    .collect(),
                bytes_before,
                bytes_after: bytes_before - freed,
                unmet: Vec::new(),
                held_in_use: 0,
            };
            (plan, survivors)
        };
        let mut report = self.carry_out(&config, plan, &survivors, in_use, dry_run, now);
        report.skipped.extend(refused);
        report.not_found = selection.not_found(matched.iter().map(String::as_str));
        report
    }

    fn verify(&self, repair: bool, now: UnixTime) -> VerifyReport {
        let _work = self.work.lock().unwrap();
        let config = self.cfg();
        let started = Instant::now();
        let ids: Vec<(K::Id, UnixTime)> = {
            let index = self.index.lock().unwrap();
            index
                .iter()
                .map(|(id, m)| (id.clone(), m.last_use))
                .collect()
        };
        self.start_progress(ids.len());
        let findings = parallel::map_with(parallel::IO_THREADS, &ids, |(id, _)| {
            let found = self.kind.verify(id);
            self.progress.0.fetch_add(1, Ordering::Relaxed);
            found
        });
        let young_after = now.saturating_sub(secs(config.limits.min_age));
        let waits_for_min_age = self.kind.repair_waits_for_min_age();
        let mut problems = Vec::new();
        let mut index = self.index_mut();
        for ((id, last_use), found) in ids.iter().zip(findings) {
            if found.is_empty() {
                continue;
            }
            // Why a broken entry stays (see README, "Repair"), or `None`: repaired.
            let unrepaired: Option<Unrepaired> = if !repair {
                Some(Unrepaired::new(
                    "not-requested",
                    "repair was not asked for (verify --repair, or on_problem = \"repair\")",
                ))
            } else if self.pinned(&config, id) {
                Some(Unrepaired::new("pinned", "pinned by keep"))
            } else if waits_for_min_age && *last_use > young_after {
                Some(Unrepaired::new(
                    "within-min-age",
                    format!(
                        "used {} ago, within min_age {}",
                        age(Some(now - last_use)),
                        crate::units::format_duration(config.limits.min_age)
                    ),
                ))
            } else if let Some(in_use) = self.kind.in_use() {
                // Checked per entry, just before its removal: a go command that starts
                // during the sweep is seen.
                Some(Unrepaired::new(
                    "go-running",
                    format!("a go command is running: {}", in_use.by),
                ))
            } else {
                let used_before = if waits_for_min_age {
                    young_after
                } else {
                    UnixTime::MAX
                };
                match self.kind.remove(id, used_before, Removing::Repair(&found)) {
                    Removal::Removed { .. } | Removal::Gone => {
                        index.remove(id);
                        None
                    }
                    Removal::Skipped(why) => Some(Unrepaired::new("skipped", why)),
                    Removal::LockBusy(why) => Some(Unrepaired::new("lock-busy", why)),
                    Removal::InUse(why) => Some(Unrepaired::new("go-running", why)),
                    Removal::Failed(why) => {
                        self.record_error(
                            format!("repair of {}: {why}", self.kind.path_of(id)),
                            now,
                        );
                        Some(Unrepaired::new("removal-failed", why))
                    }
                }
            };
            for f in found {
                let mut p = self.problem_view(&config, id, f.problem, f.detail);
                p.repaired = unrepaired.is_none();
                p.unrepaired = unrepaired.clone();
                problems.push(p);
            }
        }
        drop(index);
        let report = VerifyReport {
            cache: config.name.clone(),
            at: now,
            checked: ids.len() as u64,
            duration_ms: started.elapsed().as_millis() as u64,
            problems,
        };
        let mut history = self.history.lock().unwrap();
        history.last_verify = Some(now);
        history.last_verify_duration_ms = Some(report.duration_ms);
        history.problems_found_total += report.problems.len() as u64;
        history.open_problems = report
            .problems
            .iter()
            .filter(|p| !p.repaired)
            .cloned()
            .collect();
        drop(history);
        parallel::release_freed_memory(); // the sweep listed every entry
        report
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

    fn in_use_since(&self) -> Option<UnixTime> {
        self.kind.in_use().map(|u| u.since)
    }

    fn save_snapshot(&self, path: &Path) -> std::io::Result<bool> {
        if self.kind.partitions() == 0 {
            return Ok(false);
        }
        let stamps = self.stamps.lock().unwrap().clone();
        let index = self.index.lock().unwrap();
        crate::snapshot::save(&self.kind, path, &stamps, index.len(), index.iter())?;
        drop(index);
        parallel::release_freed_memory();
        Ok(true)
    }

    fn restore(&self, path: &Path, now: UnixTime) -> Option<ScanRecord> {
        let parts = self.kind.partitions();
        if parts == 0 {
            return None;
        }
        let _work = self.work.lock().unwrap();
        *self.changed_during_scan.lock().unwrap() = Some(Vec::new());
        let started = Instant::now();
        let snapshot = match crate::snapshot::load(&self.kind, path) {
            Ok(s) => s,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("not using the snapshot: {e}");
                }
                *self.changed_during_scan.lock().unwrap() = None;
                return None;
            }
        };
        let unchanged: Vec<bool> = (0..parts)
            .map(|p| {
                snapshot.stamps[p].is_some() && self.kind.partition_stamp(p) == snapshot.stamps[p]
            })
            .collect();
        let changed: Vec<usize> = (0..parts).filter(|&p| !unchanged[p]).collect();
        let (mut kept, stale): (Entries<K>, Entries<K>) = snapshot
            .entries
            .into_iter()
            .partition(|(id, _)| unchanged[self.kind.partition_of(id)]);
        {
            let mut stamps = self.stamps.lock().unwrap();
            for p in (0..parts).filter(|&p| unchanged[p]) {
                stamps[p] = snapshot.stamps[p];
            }
        }
        let named = Survivors::new(kept.iter().map(|(_, m)| m.aux).collect());
        let was_stale = known_from(&stale);
        let walked = self.kind.scan_partitions(&changed);
        let walk_ms = started.elapsed().as_millis() as u64;
        let mut result = self
            .kind
            .complete(walked, &was_stale, &|aux| named.contains(aux));

        // An entry that vanished from a changed partition may leave behind something
        // that now belongs to no one in an unchanged one (go-build: an output whose
        // action was removed): rescan those partitions too.
        let found: HashSet<&K::Id> = result.entries.iter().map(|(id, _)| id).collect();
        let named_now = Survivors::new(
            kept.iter()
                .chain(&result.entries)
                .map(|(_, m)| m.aux)
                .collect(),
        );
        let extra: Vec<usize> = stale
            .iter()
            .filter(|(id, m)| !found.contains(id) && !named_now.contains(m.aux))
            .filter_map(|(_, m)| self.kind.partition_of_aux(m.aux))
            .filter(|&p| unchanged[p])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        drop(found);
        let mut rescanned = changed.len();
        if !extra.is_empty() {
            let rescanning: Entries<K>;
            (rescanning, kept) = kept
                .into_iter()
                .partition(|(id, _)| extra.contains(&self.kind.partition_of(id)));
            let named = Survivors::new(
                kept.iter()
                    .chain(&result.entries)
                    .map(|(_, m)| m.aux)
                    .collect(),
            );
            let walked = self.kind.scan_partitions(&extra);
            let more = self
                .kind
                .complete(walked, &known_from(&rescanning), &|aux| named.contains(aux));
            result.entries.extend(more.entries);
            result.stamps.extend(more.stamps);
            result.errors.extend(more.errors);
            result.ignored_files += more.ignored_files;
            rescanned += extra.len();
        }
        Some(self.install(result, kept, started, walk_ms, now, Some(rescanned as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untiered_eviction_keeps_only_the_age_only_tier() {
        assert_eq!(tier_for(true, 1), 1);
        assert_eq!(tier_for(false, 1), 0);
        assert_eq!(tier_for(false, plan::AGE_ONLY), plan::AGE_ONLY);
    }

    #[test]
    fn selections_match_entries_and_modules() {
        let s = Selection {
            entries: vec!["a@v1".into()],
            modules: vec!["github.com/x/y".into()],
        };
        assert!(s.matches("a@v1"));
        assert!(!s.matches("a@v2"));
        assert!(s.matches("github.com/x/y@v1.2.3"));
        assert!(
            !s.matches("github.com/x/yz@v1.2.3"),
            "a module, not a prefix"
        );
        assert_eq!(
            s.not_found(["a@v2", "github.com/x/yz@v1"]),
            ["a@v1", "module github.com/x/y"]
        );
        assert!(s.not_found(["a@v1", "github.com/x/y@v0.1.0"]).is_empty());
    }

    use crate::kinds::dir::DirKind;
    use crate::kinds::{Finding, Known};
    use std::sync::mpsc;

    /// A dir kind whose completion step keeps one entry, once the test lets it.
    struct Gated {
        inner: DirKind,
        release: Mutex<mpsc::Receiver<()>>,
    }

    type Id = Box<Path>;

    impl Kind for Gated {
        type Id = Id;
        fn root(&self) -> &Path {
            self.inner.root()
        }
        fn scan(&self) -> ScanResult<Id> {
            self.inner.scan()
        }
        fn completes_scans(&self) -> bool {
            true
        }
        fn complete(
            &self,
            mut walked: ScanResult<Id>,
            _: Known<Id>,
            _: &dyn Fn(u64) -> bool,
        ) -> ScanResult<Id> {
            self.release.lock().unwrap().recv().unwrap();
            walked.entries.sort_by_key(|(_, m)| m.disk_bytes);
            walked.entries.truncate(1);
            walked
        }
        fn watch_dirs(&self) -> Vec<WatchDir> {
            self.inner.watch_dirs()
        }
        fn entry_at(&self, rel: &Path) -> Option<Id> {
            self.inner.entry_at(rel)
        }
        fn stat(&self, id: &Id) -> std::io::Result<Option<EntryMeta>> {
            self.inner.stat(id)
        }
        fn verify(&self, id: &Id) -> Vec<Finding> {
            self.inner.verify(id)
        }
        fn remove(&self, id: &Id, used_before: UnixTime, how: Removing) -> Removal {
            self.inner.remove(id, used_before, how)
        }
        fn name_of(&self, id: &Id) -> String {
            self.inner.name_of(id)
        }
        fn path_of(&self, id: &Id) -> String {
            self.inner.path_of(id)
        }
        fn parse_name(&self, name: &str) -> Option<Id> {
            self.inner.parse_name(name)
        }
        fn last_use_signal(&self) -> &'static str {
            "test"
        }
    }

    #[test]
    fn a_first_scan_serves_the_walk_while_it_completes_and_holds_eviction() {
        let dir = tempfile::tempdir().unwrap();
        for (name, len) in [("a", 10_000), ("b", 20_000), ("c", 30_000)] {
            std::fs::write(dir.path().join(name), vec![0u8; len]).unwrap();
        }
        let text = format!(
            "[[cache]]\nname = \"t\"\nkind = \"dir\"\npath = \"{}\"\nmax_size = \"1B\"\nmin_age = \"0s\"\nunsafe_allow_short_min_age = true\n",
            dir.path().display()
        );
        let config = crate::config::first_cache_for_test(&text);
        let (release, gate) = mpsc::channel();
        let gated = Gated {
            inner: DirKind::new(dir.path().to_path_buf()),
            release: Mutex::new(gate),
        };
        let cache = CacheOf::open(gated, config);
        assert_eq!(cache.status(0).state, "scanning");

        let scanning = std::thread::spawn({
            let cache = cache.clone();
            move || cache.scan(crate::now())
        });
        let status = loop {
            let status = cache.status(crate::now());
            if status.state != "scanning" {
                break status;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(status.state, "completing");
        assert_eq!(status.entries, 3, "the walk's entries are served");
        let walked_bytes = status.disk_bytes;
        assert!(walked_bytes >= 60_000);

        // Eviction waits for the completed index: it must never plan on a provisional one.
        let evicting = std::thread::spawn({
            let cache = cache.clone();
            move || cache.evict(true, crate::now())
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            !evicting.is_finished(),
            "eviction ran on a provisional index"
        );

        release.send(()).unwrap();
        let record = scanning.join().unwrap();
        assert!(record.walk_ms <= record.duration_ms);
        let status = cache.status(crate::now());
        assert_eq!((status.state.as_str(), status.entries), ("ready", 1));
        let plan = evicting.join().unwrap();
        assert_eq!(plan.evicted.len(), 1, "planned on the completed index");
    }

    #[test]
    fn status_never_waits_for_the_index_lock_and_its_totals_stay_exact() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::now();
        for (name, age_days) in [("old", 30), ("middle", 20), ("young", 10)] {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![0u8; 4096]).unwrap();
            let t = filetime::FileTime::from_unix_time(now - age_days * 86400, 0);
            filetime::set_file_times(&path, t, t).unwrap();
        }
        let text = format!(
            "[[cache]]\nname = \"t\"\nkind = \"dir\"\npath = \"{}\"\nmax_age = \"25d\"\n",
            dir.path().display()
        );
        let cache = Arc::new(CacheOf::new(
            DirKind::new(dir.path().to_path_buf()),
            crate::config::first_cache_for_test(&text),
        ));
        cache.scan(now);
        assert_eq!(cache.status(now).oldest_last_use, Some(now - 30 * 86400));

        // A listing, a sweep or an eviction plan holds the index lock for long.
        let held = cache.index.lock().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn({
            let cache = cache.clone();
            move || tx.send(cache.status(now)).unwrap()
        });
        let status = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("status waited for the index lock");
        assert_eq!((status.entries, status.over_limits.len()), (3, 1));
        drop(held);

        // The oldest entry evicted: status shows the next oldest, without a walk.
        let report = cache.evict(false, now);
        assert_eq!(report.removed_entries, 1);
        let status = cache.status(now);
        assert_eq!(status.entries, 2);
        assert_eq!(status.oldest_last_use, Some(now - 20 * 86400));
        assert!(status.over_limits.is_empty());
        assert_eq!(status.disk_bytes, cache.index.lock().unwrap().disk_bytes());
    }

    /// A dir kind whose every entry is broken.
    struct Broken(DirKind);

    impl Kind for Broken {
        type Id = Id;
        fn root(&self) -> &Path {
            self.0.root()
        }
        fn scan(&self) -> ScanResult<Id> {
            self.0.scan()
        }
        fn watch_dirs(&self) -> Vec<WatchDir> {
            self.0.watch_dirs()
        }
        fn entry_at(&self, rel: &Path) -> Option<Id> {
            self.0.entry_at(rel)
        }
        fn stat(&self, id: &Id) -> std::io::Result<Option<EntryMeta>> {
            self.0.stat(id)
        }
        fn verify(&self, _: &Id) -> Vec<Finding> {
            vec![Finding {
                problem: "unreadable",
                detail: "a failing disk".into(),
            }]
        }
        fn remove(&self, id: &Id, used_before: UnixTime, how: Removing) -> Removal {
            self.0.remove(id, used_before, how)
        }
        fn name_of(&self, id: &Id) -> String {
            self.0.name_of(id)
        }
        fn path_of(&self, id: &Id) -> String {
            self.0.path_of(id)
        }
        fn parse_name(&self, name: &str) -> Option<Id> {
            self.0.parse_name(name)
        }
        fn last_use_signal(&self) -> &'static str {
            "test"
        }
    }

    #[test]
    fn a_dir_cache_repairs_only_past_min_age_and_every_unrepaired_problem_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::now();
        for (name, age) in [("old", 86_400), ("fresh", 60), ("kept.pinned", 86_400)] {
            let path = dir.path().join(name);
            std::fs::write(&path, b"x").unwrap();
            let t = filetime::FileTime::from_unix_time(now - age, 0);
            filetime::set_file_times(&path, t, t).unwrap();
        }
        let text = format!(
            "[[cache]]\nname = \"t\"\nkind = \"dir\"\npath = \"{}\"\nkeep = [\"*.pinned\"]\n",
            dir.path().display()
        );
        let cache = CacheOf::open(
            Broken(DirKind::new(dir.path().to_path_buf())),
            crate::config::first_cache_for_test(&text),
        );
        cache.scan(now);
        let why = |report: &VerifyReport, entry: &str| {
            let p = report.problems.iter().find(|p| p.entry == entry).unwrap();
            p.unrepaired
                .as_ref()
                .map(|u| (u.code.clone(), u.reason.clone()))
        };
        let report = cache.verify(false, now);
        let (code, reason) = why(&report, "old").unwrap();
        assert_eq!(code, "not-requested");
        assert!(reason.contains("verify --repair"), "{reason}");

        let report = cache.verify(true, now);
        assert_eq!(why(&report, "old"), None, "repaired");
        assert!(!dir.path().join("old").exists());
        let (code, reason) = why(&report, "fresh").unwrap();
        assert_eq!(code, "within-min-age");
        assert_eq!(reason, "used 1m ago, within min_age 10m");
        assert_eq!(why(&report, "kept.pinned").unwrap().0, "pinned");
        assert!(dir.path().join("fresh").exists());
        let table = crate::report::problems_table(&report.problems);
        assert!(
            table.contains("WHY NOT REPAIRED") && table.contains("pinned by keep"),
            "{table}"
        );
        assert_eq!(cache.status(now).problems.open, 2);
    }
}
