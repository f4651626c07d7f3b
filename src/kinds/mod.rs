//! Cache kinds: the only code that knows a cache's on-disk format.
//!
//! A kind lists its entries (id, disk size, last use), maps a changed path back to the
//! entry it belongs to, verifies one entry, and removes one entry following the owning
//! tool's own protocol. The engine (index, planner, evictor, verifier, watcher, server)
//! is generic over [`Kind`] and never touches a cache's files itself, so adding a kind
//! touches only this folder and [`KindName`].

pub mod cargo_home;
pub mod cargo_target;
pub mod dir;
pub mod go_build;
pub mod go_mod;

use std::fmt;
use std::hash::Hash;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::UnixTime;

/// What the index keeps per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// Disk usage, as `du` counts it (see `fsutil::disk_usage`).
    pub disk_bytes: u64,
    /// Sum of file lengths.
    pub apparent_bytes: u64,
    pub last_use: UnixTime,
    /// Kind-private data the index keeps with the entry (go-build: a fingerprint of the
    /// output the action names, so eviction can tell whether a survivor still needs it).
    pub aux: u64,
}

/// One thing wrong with an entry, as found by [`Kind::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// A stable, kebab-case code scripts can match on (`unreadable`, `output-hash-mismatch`).
    pub problem: &'static str,
    pub detail: String,
}

/// What [`Kind::remove`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Removed {
        disk_bytes: u64,
    },
    /// Someone else removed it first.
    Gone,
    /// Left alone on purpose (used since it was planned, …); retried later.
    Skipped(String),
    /// Left alone because the owning tool holds the entry's lock (go-mod's version
    /// lock); retried later.
    LockBusy(String),
    /// Left alone because a running tool may use it (a go command); retried once it
    /// exits.
    InUse(String),
    /// The removal was attempted and failed (`EPERM` on an immutable file, `EROFS`, an
    /// I/O error): an error to report; what is left stays on disk and in the index.
    Failed(String),
}

/// A directory the watcher must watch for this kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchDir {
    pub path: PathBuf,
    /// How many levels of subdirectories to watch too, including ones created later:
    /// 0 for the directory alone, `u32::MAX` for the whole tree.
    pub depth: u32,
    /// Directories of this name are watched, never what is below them (a tool that
    /// writes only files there: go's `@v`).
    pub leaf: Option<&'static str>,
}

/// How far in the future a time may be and still be taken as a use now (clocks of
/// machines sharing a file system differ a little).
pub const CLOCK_SLACK_SECS: i64 = 60;

/// Whether an entry last used at `last_use` (read just before removing it) was used
/// after `used_before` (when the plan saw it): then it stays. A time in the future is
/// no use at all but a file's times set by hand (`touch -d 2100-01-01`): it would make
/// the entry impossible to remove (issue #29).
pub fn used_after(last_use: UnixTime, used_before: UnixTime) -> bool {
    last_use > used_before && last_use <= crate::now() + CLOCK_SLACK_SECS
}

/// Why an entry is being removed.
#[derive(Debug, Clone, Copy)]
pub enum Removing<'a> {
    /// Eviction; the `aux` values of the entries that stay.
    Evict(&'a Survivors),
    /// Repair of a broken entry: what is wrong with it.
    Repair(&'a [Finding]),
}

/// The sorted `aux` values of the entries an eviction keeps.
#[derive(Debug, Default)]
pub struct Survivors(Vec<u64>);

impl Survivors {
    pub const NONE: Survivors = Survivors(Vec::new());

    pub fn new(mut aux: Vec<u64>) -> Survivors {
        aux.sort_unstable();
        aux.dedup();
        Survivors(aux)
    }

    pub fn contains(&self, aux: u64) -> bool {
        self.0.binary_search(&aux).is_ok()
    }
}

/// The eviction tier of entries that only `max_age` evicts (see `plan::Candidate::tier`).
pub const AGE_ONLY: u8 = u8::MAX;

/// What a kind keeps of its cache's config (see [`Kind::configure`]).
#[derive(Debug, Clone)]
pub struct KindSettings {
    pub min_age: Duration,
    /// Process names whose running holds recently used entries (`guard_processes`).
    pub guard_processes: Vec<String>,
}

/// What running tools may still open: entries used at or after `since`, and the
/// entries whose kind-specific key is in `keys` whatever their last use (go-mod: the
/// versions named by the module graphs of the go commands running; see
/// [`Kind::holds`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUse {
    /// [`UnixTime::MAX`]: nothing is held by its last use.
    pub since: UnixTime,
    pub keys: std::sync::Arc<std::collections::BTreeSet<String>>,
    /// Who, for people: "go (pid 1234) running since 12:00:03", one per process.
    pub by: String,
}

impl InUse {
    /// Everything used at or after `since`.
    pub fn since(since: UnixTime, by: String) -> InUse {
        InUse {
            since,
            keys: Default::default(),
            by,
        }
    }
}

/// What the index already knows, asked for many entries at once (one lock): for each
/// given entry, the `aux` of the indexed entry with the same id and the same last use;
/// `None` when there is none or it changed since.
pub type Known<'a, I> = &'a dyn Fn(&[(I, EntryMeta)]) -> Vec<Option<u64>>;

/// Everything one full scan found.
pub struct ScanResult<I> {
    pub entries: Vec<(I, EntryMeta)>,
    /// Files that are not entries and are left alone (sockets, symlinks, tool metadata).
    pub ignored_files: u64,
    /// Parts of the tree that could not be read; the scan goes on without them.
    pub errors: Vec<String>,
    /// For kinds with partitions: each scanned partition's directory mtime, taken
    /// before it was listed (`None`: the directory does not exist).
    pub stamps: Vec<(usize, Option<Stamp>)>,
    /// What the root holds that is counted but never managed, and why (go-build: the
    /// fuzz corpora): shown in status beside the entries, not in their total.
    pub unmanaged: Vec<crate::report::Unmanaged>,
}

impl<I> Default for ScanResult<I> {
    /// Nothing found (yet).
    fn default() -> Self {
        ScanResult {
            entries: Vec::new(),
            ignored_files: 0,
            errors: Vec::new(),
            stamps: Vec::new(),
            unmanaged: Vec::new(),
        }
    }
}

/// A directory's mtime to the nanosecond: it changes whenever an entry is added to or
/// removed from the directory, so an unchanged stamp means an unchanged listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub secs: i64,
    pub nanos: i64,
}

impl Stamp {
    pub fn of(st: &nix::sys::stat::FileStat) -> Stamp {
        Stamp {
            secs: st.st_mtime,
            nanos: st.st_mtime_nsec,
        }
    }
}

pub trait Kind: Send + Sync + 'static {
    /// The entry id. Kinds with millions of entries use fixed-size binary ids.
    type Id: Clone + Eq + Hash + Ord + Send + Sync + fmt::Debug + 'static;

    fn root(&self) -> &Path;
    /// Walks the whole cache. A kind that cannot finish an entry from a `stat` alone
    /// returns provisional entries here and finishes them in [`Kind::complete`]: the
    /// walk alone already gives exact sizes and ages, so status can be served while
    /// the slower part runs (go-build: reading each action file to pair it with its
    /// output).
    fn scan(&self) -> ScanResult<Self::Id>;
    /// Whether [`Kind::scan`] and [`Kind::scan_partitions`] return provisional entries
    /// that [`Kind::complete`] must finish.
    fn completes_scans(&self) -> bool {
        false
    }
    /// Finishes a walk's provisional entries. `known` spares reading unchanged entries
    /// again; `named_elsewhere(aux)` tells whether an entry outside the walked
    /// partitions carries `aux` (go-build: whether an action elsewhere names an output).
    fn complete(
        &self,
        walked: ScanResult<Self::Id>,
        _known: Known<Self::Id>,
        _named_elsewhere: &dyn Fn(u64) -> bool,
    ) -> ScanResult<Self::Id> {
        walked
    }
    /// The directories whose changes matter.
    fn watch_dirs(&self) -> Vec<WatchDir>;
    /// The entry a changed path (relative to the root) belongs to, if any.
    fn entry_at(&self, rel: &Path) -> Option<Self::Id>;
    /// Every entry a changed path may affect (some kinds split one thing on disk into
    /// several entries).
    fn entries_at(&self, rel: &Path, out: &mut Vec<Self::Id>) {
        out.extend(self.entry_at(rel));
    }
    /// The entry's eviction tier (see `plan::Candidate::tier`).
    fn tier(&self, _id: &Self::Id) -> u8 {
        0
    }
    /// The entry's current metadata, `None` if it no longer exists.
    fn stat(&self, id: &Self::Id) -> io::Result<Option<EntryMeta>>;
    /// Everything wrong with the entry; empty when healthy.
    fn verify(&self, id: &Self::Id) -> Vec<Finding>;
    /// Removes the entry unless it was used after `used_before` (it may have been used
    /// since the plan was made) — following the owning tool's protocol.
    fn remove(&self, id: &Self::Id, used_before: UnixTime, how: Removing) -> Removal;
    /// The entry's name for people and for `keep` patterns.
    fn name_of(&self, id: &Self::Id) -> String;
    /// The entry's main path relative to the root.
    fn path_of(&self, id: &Self::Id) -> String;
    /// Parses a name as printed by [`Kind::name_of`].
    fn parse_name(&self, name: &str) -> Option<Self::Id>;
    /// How the kind knows when an entry was last used, for `status`.
    fn last_use_signal(&self) -> &'static str;

    /// Takes the settings of a reloaded config that the kind itself keeps (go-mod's
    /// `min_age` for stale temp files). Everything else the engine reads per operation.
    fn configure(&self, _settings: &KindSettings) {}

    /// Whether repairing a proven-broken entry waits for `min_age` like eviction does.
    /// Kinds whose owning tool's protocol makes removal safe (a lock, the running-tool
    /// guard) say no: a corrupt entry is dangerous exactly when it is being used.
    fn repair_waits_for_min_age(&self) -> bool {
        true
    }
    /// Whether a running tool may still open entries used since some time, which
    /// eviction must then leave alone whatever `min_age` says.
    fn in_use(&self) -> Option<InUse> {
        None
    }
    /// What running tools hold now by a record of their own, for status ("cachewarden
    /// cacheprog (pid 12) leases 340 entries"); cheap (no `/proc` walk).
    fn leases(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether the cache may hold Go toolchains ([`Kind::toolchain_of`] is ever `Some`).
    fn holds_toolchains(&self) -> bool {
        false
    }
    /// The Go toolchain (`go1.27.3`) the entry is part of, if it is one (go-mod:
    /// `golang.org/toolchain@v0.0.1-go1.27.3.linux-amd64`).
    fn toolchain_of(&self, _id: &Self::Id) -> Option<String> {
        None
    }
    /// Whether a running tool (as [`Kind::in_use`] found them) may still open the entry,
    /// last used at `last_use`.
    fn holds(&self, in_use: &InUse, _id: &Self::Id, last_use: UnixTime) -> bool {
        last_use >= in_use.since
    }

    // Incremental restarts (see `snapshot.rs`). A kind whose entries sit in a fixed set
    // of directories ("partitions") can rescan only those whose mtime changed since a
    // snapshot of the index was saved. The defaults mean "no partitions": a restart
    // scans everything.

    /// How many partitions the cache has (0: no incremental restart).
    fn partitions(&self) -> usize {
        0
    }
    fn partition_of(&self, _id: &Self::Id) -> usize {
        0
    }
    /// The partition directory's current stamp.
    fn partition_stamp(&self, _partition: usize) -> Option<Stamp> {
        None
    }
    /// Walks some partitions (provisional entries, as [`Kind::scan`]).
    fn scan_partitions(&self, _partitions: &[usize]) -> ScanResult<Self::Id> {
        self.scan()
    }
    /// The partition holding what an entry's `aux` refers to (go-build: the output's
    /// shard), so a restart can recheck it when the entry vanished.
    fn partition_of_aux(&self, _aux: u64) -> Option<usize> {
        None
    }
    /// Whether entries can share what their `aux` names (go-build: an output several
    /// actions name), so that [`Kind::named_by_several`] is worth calling.
    fn aux_can_be_shared(&self) -> bool {
        false
    }
    /// `namers`, every entry of the index with this `aux`, now more than one: after
    /// watch events or a partial rescan, which look at one entry at a time (go-build: a
    /// second action naming an output one action had). The kind settles which of them
    /// carries the shared part as a full scan would; `true` if each must then be stat'ed
    /// again ([`Kind::stat`] accounts by that settlement).
    fn named_by_several(&self, _aux: u64, _namers: &[Self::Id]) -> bool {
        false
    }
    /// Whether several entries share what `aux` names now: then a change of one of them
    /// (used, removed) can move the shared part to another, and the engine settles it
    /// with [`Kind::named_by_several`] (a full scan gives it to the last used; events
    /// must too, or the per-entry sizes drift from a scan's).
    fn is_shared(&self, _aux: u64) -> bool {
        false
    }
    /// The `aux` of the entries a changed `id` is a part of, when its size is counted in
    /// theirs (go-build: an output, counted with the action naming it): the engine then
    /// re-reads them, or a file changed in place would leave their sizes stale.
    fn part_of(&self, _id: &Self::Id) -> Option<u64> {
        None
    }
    fn encode_id(&self, _id: &Self::Id, _out: &mut Vec<u8>) {}
    fn decode_id(&self, _bytes: &[u8]) -> Option<Self::Id> {
        None
    }
}

/// The `kind = "…"` values of the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KindName {
    /// A plain directory whose regular files are the entries.
    Dir,
    /// Go's build cache (GOCACHE).
    GoBuild,
    /// Go's module cache (GOMODCACHE).
    GoMod,
    /// A cargo target directory (`target/`), or every one below `roots`.
    CargoTarget,
    /// Cargo's downloads (`$CARGO_HOME`, `~/.cargo`).
    CargoHome,
}

impl fmt::Display for KindName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KindName::Dir => "dir",
            KindName::GoBuild => "go-build",
            KindName::GoMod => "go-mod",
            KindName::CargoTarget => "cargo-target",
            KindName::CargoHome => "cargo-home",
        })
    }
}

impl KindName {
    /// `min_age` when the config sets none.
    pub fn default_min_age(self) -> Duration {
        match self {
            KindName::Dir => dir::DEFAULT_MIN_AGE,
            KindName::GoBuild => go_build::DEFAULT_MIN_AGE,
            KindName::GoMod => go_mod::DEFAULT_MIN_AGE,
            KindName::CargoTarget => cargo_target::DEFAULT_MIN_AGE,
            KindName::CargoHome => cargo_home::DEFAULT_MIN_AGE,
        }
    }

    /// The lowest `min_age` allowed without `unsafe_allow_short_min_age`.
    pub fn min_age_floor(self) -> Duration {
        match self {
            KindName::Dir => dir::MIN_AGE_FLOOR,
            KindName::GoBuild => go_build::MIN_AGE_FLOOR,
            KindName::GoMod => go_mod::MIN_AGE_FLOOR,
            KindName::CargoTarget => cargo_target::MIN_AGE_FLOOR,
            KindName::CargoHome => cargo_home::MIN_AGE_FLOOR,
        }
    }

    /// Finds this kind's cache for `path = "auto"`.
    pub fn discover(self) -> Result<Option<PathBuf>, String> {
        match self {
            KindName::Dir => Err("path = \"auto\" needs a kind that can find its own cache (a dir cache needs an explicit path)".into()),
            KindName::GoBuild => Ok(crate::golang::env::discover().gocache),
            KindName::GoMod => Ok(crate::golang::env::discover().gomodcache),
            KindName::CargoTarget => Err("path = \"auto\" is not for cargo-target: give the target directory, or roots = [\"~/src\"] to find every one below".into()),
            KindName::CargoHome => Ok(cargo_home::CargoHomeKind::discover()),
        }
    }

    /// Refuses a root that is not recognisably a cache of this kind (safety rule 2).
    pub fn check_root(self, root: &Path) -> Result<(), String> {
        match self {
            KindName::Dir => Ok(()),
            KindName::GoBuild => go_build::GoBuildKind::check_root(root),
            KindName::GoMod => go_mod::GoModKind::check_root(root),
            KindName::CargoTarget => cargo_target::CargoTargetKind::check_root(root),
            KindName::CargoHome => cargo_home::CargoHomeKind::check_root(root),
        }
    }

    /// Whether a table of this kind may find its caches below `roots` (one cache per
    /// directory found) instead of naming one `path`.
    pub fn finds_caches_below_roots(self) -> bool {
        self == KindName::CargoTarget
    }

    /// The caches of this kind below `root`, for a table with `roots`.
    pub fn caches_below(self, root: &Path) -> Vec<PathBuf> {
        match self {
            KindName::CargoTarget => cargo_target::find_target_dirs(root),
            KindName::Dir | KindName::GoBuild | KindName::GoMod | KindName::CargoHome => Vec::new(),
        }
    }

    /// Builds what `with` makes of this kind's [`Kind`] for the cache at `root`: the
    /// one place that maps a name to its implementation (the engine's `cache::open`
    /// passes itself as `with`), so a new kind is a folder here and an arm in each of
    /// these methods, never an edit to the engine.
    pub fn build<W: WithKind>(self, root: PathBuf, settings: &KindSettings, with: W) -> W::Out {
        match self {
            KindName::Dir => with.with(dir::DirKind::new(root)),
            KindName::GoBuild => with.with(go_build::GoBuildKind::new(root)),
            KindName::GoMod => with.with(go_mod::GoModKind::new(root, settings.min_age)),
            KindName::CargoTarget => with.with(cargo_target::CargoTargetKind::new(root)),
            KindName::CargoHome => with.with(cargo_home::CargoHomeKind::new(root)),
        }
    }

    /// The `guard_processes` default, and whether the setting applies at all (a `dir`
    /// cache's writer is unknown; `min_age` protects it).
    pub fn default_guard(self) -> Option<&'static [&'static str]> {
        match self {
            // Cargo's own locks say what a running cargo uses.
            KindName::Dir | KindName::CargoTarget | KindName::CargoHome => None,
            KindName::GoBuild => Some(crate::golang::procs::DEFAULT_BUILD_GUARD),
            KindName::GoMod => Some(crate::golang::procs::DEFAULT_MOD_GUARD),
        }
    }

    /// Whether its entries can be Go toolchains (`keep_toolchains`).
    pub fn holds_toolchains(self) -> bool {
        self == KindName::GoMod
    }

    /// Whether its entries are Go module versions (`evict --module`).
    pub fn names_modules(self) -> bool {
        self == KindName::GoMod
    }

    /// Where the tool keeps this cache for a user whose home is `home`, with `setting`
    /// their own settings of the tool's environment (go: what `go env -w` wrote), for a
    /// per-user table's `path = "auto"`. `None`: the kind cannot say.
    pub fn per_user_auto(
        self,
        home: &Path,
        setting: &dyn Fn(&str) -> Option<PathBuf>,
    ) -> Option<PathBuf> {
        match self {
            KindName::Dir | KindName::CargoTarget => None,
            // Cargo reads CARGO_HOME from the environment only, never from a file.
            KindName::CargoHome => Some(home.join(".cargo")),
            KindName::GoBuild => {
                Some(setting("GOCACHE").unwrap_or_else(|| home.join(".cache/go-build")))
            }
            KindName::GoMod => Some(
                setting("GOMODCACHE")
                    .or_else(|| {
                        // GOPATH may be a list; go uses the first element.
                        let first = setting("GOPATH")?
                            .to_string_lossy()
                            .split(':')
                            .next()?
                            .to_string();
                        Some(PathBuf::from(first).join("pkg/mod"))
                    })
                    .unwrap_or_else(|| home.join("go/pkg/mod")),
            ),
        }
    }

    /// What `doctor` should warn about a cache of this kind at `path`: (what, fix).
    pub fn setup_warnings(self, path: &Path) -> Vec<(String, String)> {
        match self {
            KindName::GoMod => go_mod::setup_warnings(path),
            KindName::CargoHome => cargo_home::setup_warnings(path),
            KindName::CargoTarget => cargo_target::setup_warnings(path),
            KindName::Dir | KindName::GoBuild => Vec::new(),
        }
    }

    /// What `doctor` says of a cache of this kind at `path` besides, all being well.
    pub fn setup_notes(self, path: &Path) -> Vec<String> {
        match self {
            KindName::CargoHome => cargo_home::setup_notes(path),
            KindName::Dir | KindName::GoBuild | KindName::GoMod | KindName::CargoTarget => {
                Vec::new()
            }
        }
    }
}

/// Something built generically over a [`Kind`] (see [`KindName::build`]).
pub trait WithKind {
    type Out;
    fn with<K: Kind>(self, kind: K) -> Self::Out;
}
