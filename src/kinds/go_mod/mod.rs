//! Kind `go-mod`: Go's module cache (GOMODCACHE).
//!
//! Everything here was read in Go 1.19's source (`src/cmd/go/internal/modfetch`,
//! `golang.org/x/mod`) and checked against Debian's go1.19; see also
//! `../shared/docs/go-caches.md`.
//!
//! ## Format (`modfetch/cache.go`: `CachePath`, `DownloadDir`)
//!
//! ```text
//! GOMODCACHE/cache/download/<esc module>/@v/
//!     list                   versions with a .mod, one per line (rewriteVersionList)
//!     <ver>.info .mod        JSON {"Version","Time"} and the go.mod (writeDiskCache:
//!                            temp file "<ver>.mod123.tmp", rename; no version lock)
//!     <ver>.zip .ziphash     the module zip, every entry named "<module>@<ver>/…", and
//!                            its "h1:" hash (downloadZip, hashZip: under the version lock)
//!     <ver>.lock             the version lock (lockVersion) — never deleted
//!     <ver>.partial          marker while a tree is extracted (download)
//!     <ver>.zip123.tmp       download temp files (tempFile)
//! GOMODCACHE/cache/download/sumdb/…   checksum-database tiles and lookups (sumdb.go)
//! GOMODCACHE/cache/vcs/<sha256>/ + .info + .lock   bare VCS clones (codehost.WorkDir)
//! GOMODCACHE/cache/lock                 go.sum side lock (SideLock) — never deleted
//! GOMODCACHE/<esc module>@<esc ver>/    the extracted tree: files 0444, dirs 0555
//! GOMODCACHE/<esc module>@<ver>.tmp-NNN pre-1.16 extraction temp dirs
//! ```
//!
//! Module paths and versions are case-escaped on disk (`module.EscapePath`): each
//! upper-case letter becomes `!` + its lower-case letter. Names shown to people (status,
//! JSON, logs, `keep` patterns, `evict --entry`) are the real, unescaped
//! `module@version`.
//!
//! ## Entries and tiers
//!
//! One module version is three entries sharing its name, so the planner can drop the
//! cheap-to-rebuild parts first ([`crate::plan::Candidate::tier`]):
//!
//! | role | files | tier | removing it |
//! |---|---|---|---|
//! | [`Role::Tree`] | `<esc>@<ver>/`, `.partial`, `.tmp-*` dirs | 0 | go re-extracts from the zip, offline |
//! | [`Role::Zip`]  | `.zip`, `.ziphash`, `.zip*.tmp` | 1 | the whole version minus `.info`/`.mod`: go re-downloads |
//! | [`Role::Meta`] | `.info`, `.mod`, their temps | [`AGE_ONLY`] | the whole version; `list` rewritten |
//!
//! So under size pressure every cold extracted tree goes before any zip (visible in the
//! dry-run plan as tree paths before `.zip` paths), and the tiny `.info`/`.mod` files
//! that let go resolve the module graph offline stay until the version is past
//! `max_age`. Removing a zip takes the tree with it: no tree is ever kept without the
//! `.ziphash` go's `DownloadDir` requires of a complete one. `cache/download/sumdb/` is
//! one entry and every `cache/vcs/<hash>` one more (tier 1): both are re-fetchable.
//! `list`, `cache/lock` and every `*.lock` belong to no entry and are never deleted.
//! Sizes are disk usage, as `du` counts it. Targeted removal (`evict --entry
//! module@version`, `--module module`) selects by [`Kind::name_of`], so it takes all
//! three entries of a version, tree first.
//!
//! ## Last use
//!
//! Go records none: it never touches atime or mtime of what it reads (unlike GOCACHE).
//! The signal is `max(atime, mtime)` over the version's files (tree files, `.zip`,
//! `.ziphash`, `.info`, `.mod`), one value shared by its three entries. Compiles read
//! the tree's `.go` files, module-graph loading reads `.mod`, so atime is a real use
//! signal — where the mount updates it. [`GoModKind::last_use_signal`] says which applies,
//! read from the cache filesystem's options in `/proc/self/mountinfo`: `relatime` (the
//! default) updates atime at most once a day, so last use is exact to about a day;
//! `noatime` leaves only mtime, i.e. the download time. Our own reads never count: every
//! open for hashing or parsing uses `O_NOATIME`, scans only `stat`.
//! Inotify OPEN/ACCESS events would be finer but cost an event per file a build reads,
//! and would have to be persisted across restarts; a day's resolution is enough to keep
//! what a developer uses (the default `min_age` is two days).
//!
//! ## Safety
//!
//! * **Builds read trees without any lock** (the compiler opens the files directly): a
//!   tree removed under a running `go` command fails it. Our atime signal is not finer
//!   than a process's start time, so while a `go` process that may use this GOMODCACHE
//!   runs, [`Kind::in_use`] holds every version its build list names
//!   ([`crate::golang::build_list`]: its go.mod, go.sum, go.work.sum — go refuses any
//!   version go.sum lacks), or every entry for a process that cannot be resolved; the
//!   checksum database and VCS clones while any go runs; and the version of any module
//!   tree a process executes from (a toolchain). The daemon retries when that changes.
//!   Removal asks again afresh, after creating the `.partial` marker, closing the gap
//!   between plan and removal: a go command that starts after that check sees the
//!   marker (or a missing zip) and takes go's locked slow path.
//! * **Removal follows go's protocol** (`modfetch/fetch.go`: `download`, `DownloadZip`,
//!   `downloadZip`; `cache.go`: `DownloadDir`, `lockVersion`, `rewriteVersionList`):
//!   1. `flock(LOCK_EX|LOCK_NB)` on `<ver>.lock` (created if missing, as go's
//!      `lockedfile.MutexAt` does; never deleted). Busy means go is downloading or
//!      extracting the version: skip it, never block. Our own threads wait for each other
//!      (a version's three entries may be removed in parallel).
//!   2. Re-read last use; skip the version if it was used since the plan was made.
//!   3. Create `<ver>.partial` before touching the tree (if there is one): a go command
//!      now treats the tree as incomplete (`DownloadDir`) and waits for the lock.
//!   4. Check for running go commands (above); if any, undo the marker and skip.
//!   5. Whole version: remove `.zip` then `.ziphash` (a `.zip` never survives its
//!      `.ziphash` — go would re-hash rather than re-download it) — this comes first
//!      because `DownloadZip` takes the zip without the lock once both files exist.
//!   6. `chmod u+rwx` every directory of the tree and remove it, walking with
//!      `openat(O_NOFOLLOW)` directory fds (never a path below the root, never a
//!      symlink); then the `.tmp-*` dirs.
//!   7. Remove `.partial`; for the meta role remove `.mod` and `.info` and rewrite
//!      `list` exactly as `rewriteVersionList` does, under its flock. Unlock.
//!
//!   A `kill -9` at any point leaves the version intact or recognisably incomplete to go:
//!   whenever the tree is not whole, `.partial` is there (go removes what is left and
//!   re-extracts); a `.ziphash` left without its `.zip` makes go download the zip again.
//!   A leftover `.partial` is reported by `verify` (`partial`) and go clears it itself.
//!
//! ## Scan and watch
//!
//! A scan walks the module-path directories down to the first `elem@version` directory
//! (never into trees) and `cache/download` down to each `@v`, groups the files by
//! version, then measures versions on every core (`fstatat` through directory fds; tree
//! directories opened with `O_NOATIME`). The watcher follows `cache/download`
//! recursively: every change to a version, extraction included, touches its `@v`
//! directory (`.partial` comes and goes there), and [`Kind::entries_at`] maps a path there
//! to all three entries of its version.
//!
//! ## Integrity (golang.org/x/mod `sumdb/dirhash/hash.go`)
//!
//! `Hash1`: sort names bytewise, hash the lines `hex(sha256(content)) + "  " + name +
//! "\n"` with SHA-256, `"h1:" + base64` (standard, padded). [`hash_zip`] names files as
//! in the zip (`HashZip`), [`hash_dir`] as `module@version/rel` (`HashDir`). A version's
//! problems (stable codes, per role): tree — `partial` (left by a killed extraction, lock
//! free), `tree-hash-mismatch` (edited or extra files; undetected by go at build time,
//! golang/go#37242), `ziphash-missing`, `ziphash-malformed`, `unreadable`,
//! `stale-temp` (`.tmp-*` dirs); zip — `zip-corrupt` (go fails hard with `zip: not a
//! valid zip file` and never re-downloads), `zip-hash-mismatch`, `ziphash-missing`,
//! `ziphash-malformed`, `stale-temp` (`*.tmp` older than `min_age`); meta —
//! `info-garbled`, `mod-garbled` (go fails on a `.mod` whose hash go.sum pins), and
//! `stale-temp`. Findings are re-checked under the version lock (go may have been
//! writing); a busy lock means "not now". Repair removes what is broken, under the lock:
//! a bad tree alone (go re-extracts offline), a bad zip with its `.ziphash` (zip first),
//! a garbled `.info`/`.mod` alone (`list` rewritten). Verification is incremental: a
//! tree or zip whose files' (mtime, ctime, size) and `.ziphash` are unchanged since it
//! last hashed clean is not hashed again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use base64::Engine as _;
use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::{FileStat, Mode};

use super::{
    EntryMeta, Finding, InUse, Kind, KindSettings, Removal, Removing, ScanResult, WatchDir,
    AGE_ONLY,
};
use crate::fsutil::{self, stat_at, unlink_at};
use crate::parallel;
use crate::UnixTime;

/// Default `min_age`: relatime updates atime at most once a day, so "last used more than
/// two days ago" means "not used for at least a day".
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(2 * 86400);
/// Safety does not rest on `min_age` here (running go commands hold everything, removal
/// takes go's locks); an hour keeps go's own short-lived temp files out of reach.
pub const MIN_AGE_FLOOR: Duration = Duration::from_secs(3600);

/// The name of the checksum-database entry.
pub const SUMDB_NAME: &str = "cache/download/sumdb";
const VCS_PREFIX: &str = "cache/vcs/";

/// Largest `.info`/`.mod`/`.ziphash` we read (go's own go.mod limit is 16 MiB).
const MAX_SMALL_FILE: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The extracted tree `<esc>@<ver>/` (with `.partial` and `.tmp-*` leftovers).
    Tree,
    /// `.zip` + `.ziphash` (with download temps).
    Zip,
    /// `.info` + `.mod` (with their temps).
    Meta,
    /// `cache/download/sumdb/`.
    Sumdb,
    /// `cache/vcs/<hash>/` + `<hash>.info`.
    Vcs,
}

/// An entry: a role of one module version (`key` = escaped `module@version`, the tree's
/// path below the root), the sumdb cache (empty key) or a VCS clone (key = its hash).
/// The three entries of a version share one allocation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModId {
    pub key: Arc<str>,
    pub role: Role,
}

impl ModId {
    fn version(key: &Arc<str>, role: Role) -> ModId {
        ModId {
            key: key.clone(),
            role,
        }
    }
}

mod fd;
mod layout;
mod remove;
mod scan;
mod verify;

use crate::golang::dirhash::{hash1, hash_zip, sha256_of};
use crate::golang::module::{escape, is_canonical_version, sort_versions, unescape};
use fd::*;
pub use fd::{mounted_noatime, setup_warnings};
use layout::*;

// ---------------------------------------------------------------------------------------
// The kind.

/// A version's temp files (`@v`) and `.tmp-*` directories.
#[derive(Debug, Default, Clone)]
struct Leftovers {
    temps: Vec<(OsString, VFile)>,
    tmp_dirs: Vec<OsString>,
}

/// What a tree or zip looked like when it hashed clean: latest mtime/ctime (ns), bytes,
/// files, and the `.ziphash` it matched.
type Fingerprint = (i128, u64, u64, String);

pub struct GoModKind {
    root: PathBuf,
    /// Temp files older than this are stale (`stale-temp`).
    /// Follows reloads (`Kind::configure`).
    min_age_secs: std::sync::atomic::AtomicI64,
    /// Trees and zips that hashed clean, with the fingerprint they had then.
    verified: Mutex<HashMap<(Arc<str>, Role), Fingerprint>>,
    claims: Claims,
    /// Temp files and dirs the last scan found, by version key: go makes them only when
    /// interrupted, so they are rare and not worth a directory listing per entry.
    leftovers: Mutex<HashMap<String, Leftovers>>,
    /// When a running go command may use this cache (injectable for tests).
    in_use: fn(&Path, &[String]) -> Option<InUse>,
    /// Process names whose running holds the cache (`guard_processes`).
    guard: std::sync::RwLock<Vec<String>>,
    signal: &'static str,
}

/// The in-use horizon of a go command that cannot be resolved: our use signal is
/// coarser than any process's start, so every entry is protected.
pub const IN_USE_EVERYTHING: UnixTime = i64::MIN;
/// In [`InUse::keys`]: some go command runs, so the checksum database and VCS clones
/// (which any go command may consult when it resolves a version) are held.
const ANY_GO_COMMAND: &str = "\0any go command";

/// What the go commands running on the cache at `root` may read, and the toolchains
/// (or any module tree) a process executes from: each go command's build list
/// ([`crate::golang::build_list`]), or everything for one that cannot be resolved.
fn go_in_use(root: &Path, guard: &[String]) -> Option<InUse> {
    use crate::golang::build_list::{reads_of, Reads};
    let mut keys = std::collections::BTreeSet::new();
    let mut since = UnixTime::MAX;
    let mut by = Vec::new();
    let mut processes = crate::golang::procs::guarded_processes_using(
        root,
        crate::golang::procs::GoCache::Mod,
        guard,
    );
    processes.sort_by_key(|p| (p.started, p.pid));
    for p in &processes {
        let who = format!(
            "{} (pid {}) running since {}",
            p.name,
            p.pid,
            crate::units::local_time(p.started)
        );
        match reads_of(p) {
            Reads::Versions { keys: read, from } => {
                by.push(format!("{who}: the {} versions {from} names", read.len()));
                keys.extend(read);
            }
            Reads::Everything(why) => {
                since = IN_USE_EVERYTHING;
                by.push(format!("{who}: every version, as {why}"));
            }
        }
    }
    if !processes.is_empty() {
        keys.insert(ANY_GO_COMMAND.to_string());
    }
    for (pid, name, key) in crate::golang::procs::executing_beneath(root) {
        by.push(format!("{name} (pid {pid}) executing from {key}"));
        keys.insert(key);
    }
    if by.is_empty() {
        return None;
    }
    Some(InUse {
        since,
        keys: Arc::new(keys),
        by: by.join("; "),
    })
}

impl GoModKind {
    pub fn new(root: PathBuf, min_age: Duration) -> GoModKind {
        let mode = std::fs::read_to_string("/proc/self/mountinfo")
            .map_or(AtimeMode::Unknown, |text| atime_mode(&text, &root));
        GoModKind {
            root,
            min_age_secs: std::sync::atomic::AtomicI64::new(min_age.as_secs() as i64),
            verified: Mutex::new(HashMap::new()),
            claims: Claims::default(),
            leftovers: Mutex::new(HashMap::new()),
            in_use: go_in_use,
            guard: std::sync::RwLock::new(
                crate::golang::procs::DEFAULT_MOD_GUARD
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            signal: match mode {
                AtimeMode::Relatime => SIGNAL_RELATIME,
                AtimeMode::Strict => SIGNAL_STRICT,
                AtimeMode::NoAtime => SIGNAL_NOATIME,
                AtimeMode::Unknown => SIGNAL_UNKNOWN,
            },
        }
    }

    /// Refuses a root that is not recognisably a Go module cache (safety rule 2): it
    /// must be empty or hold go's `cache/download/` (or `cache/lock`).
    pub fn check_root(root: &Path) -> Result<(), String> {
        let empty = std::fs::read_dir(root)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        let is_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
        let is_file = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
        if empty || is_dir(&root.join("cache/download")) || is_file(&root.join("cache/lock")) {
            Ok(())
        } else {
            Err(format!(
                "{} does not look like a Go module cache (no cache/download/ written by go, and not empty); refusing to manage it",
                root.display()
            ))
        }
    }

    /// Who may read the entry now, if anyone (asked afresh: this is the last look
    /// before a removal).
    fn held_by(&self, id: &ModId) -> Option<String> {
        self.in_use()
            .filter(|u| self.holds(u, id, UnixTime::MIN))
            .map(|u| u.by)
    }
}

fn is_vcs_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

impl Kind for GoModKind {
    type Id = ModId;

    fn root(&self) -> &Path {
        &self.root
    }

    fn scan(&self) -> ScanResult<ModId> {
        let mut result = ScanResult::default();
        let versions: Vec<(Arc<str>, Parts)> = self
            .find_versions(&mut result.errors, &mut result.ignored_files)
            .into_iter()
            .map(|(k, p)| (Arc::from(k.as_str()), p))
            .collect();
        *self.leftovers.lock().unwrap() = versions
            .iter()
            .filter_map(|(key, parts)| {
                let temps: Vec<(OsString, VFile)> = parts
                    .files
                    .iter()
                    .filter(|(_, k)| matches!(k, VFile::ZipTemp | VFile::MetaTemp))
                    .cloned()
                    .collect();
                (!temps.is_empty() || !parts.tmp_dirs.is_empty()).then(|| {
                    (
                        key.to_string(),
                        Leftovers {
                            temps,
                            tmp_dirs: parts.tmp_dirs.clone(),
                        },
                    )
                })
            })
            .collect();
        let examined = parallel::map(&versions, |(key, parts)| self.examine(key, parts));
        for ((key, _), ex) in versions.iter().zip(examined) {
            for role in [Role::Tree, Role::Zip, Role::Meta] {
                if let Some(meta) = Self::meta_of(&ex, role) {
                    result.entries.push((ModId::version(key, role), meta));
                }
            }
            result.errors.extend(ex.errors);
        }
        self.scan_others(&mut result);
        // Forget verifications of versions that are gone.
        let present: HashSet<&str> = versions.iter().map(|(k, _)| &**k).collect();
        self.verified
            .lock()
            .unwrap()
            .retain(|(k, _), _| present.contains(&**k));
        result
    }

    /// `cache/download` down to each module's `@v` (every version change touches it,
    /// extraction included: `.partial` comes and goes there) and `cache/vcs` itself
    /// when it exists. Only the levels go writes: module path elements, then `@v`,
    /// which holds files only; nothing below `@v` and nothing deeper than a module
    /// path ([`layout::MAX_PATH_ELEMENTS`]) is watched, so a user's directories there
    /// cost no watches (issue #29). Trees are not watched: they change only under
    /// `.partial`.
    fn watch_dirs(&self) -> Vec<WatchDir> {
        let mut dirs = vec![WatchDir {
            path: self.root.join("cache/download"),
            depth: layout::MAX_PATH_ELEMENTS as u32 + 1,
            leaf: Some("@v"),
        }];
        let vcs = self.root.join("cache/vcs");
        if vcs.is_dir() {
            dirs.push(WatchDir {
                path: vcs,
                depth: 0,
                leaf: None,
            });
        }
        dirs
    }

    fn entry_at(&self, rel: &Path) -> Option<ModId> {
        let mut out = Vec::new();
        self.entries_at(rel, &mut out);
        out.into_iter().next()
    }

    fn entries_at(&self, rel: &Path, out: &mut Vec<ModId>) {
        let Some(rel) = rel.to_str() else { return };
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        let push_version = |key: String, out: &mut Vec<ModId>| {
            let key: Arc<str> = Arc::from(key.as_str());
            for role in [Role::Tree, Role::Zip, Role::Meta] {
                out.push(ModId::version(&key, role));
            }
        };
        match comps.as_slice() {
            ["cache", "download", "sumdb", ..] => out.push(ModId {
                key: Arc::from(""),
                role: Role::Sumdb,
            }),
            ["cache", "vcs", name, ..] => {
                let hash = name.strip_suffix(".info").unwrap_or(name);
                if is_vcs_hash(hash) {
                    out.push(ModId {
                        key: Arc::from(hash),
                        role: Role::Vcs,
                    });
                }
            }
            ["cache", "download", rest @ ..] => {
                let Some(at) = rest.iter().position(|c| *c == "@v") else {
                    return;
                };
                let (module, file) = (rest[..at].join("/"), rest.get(at + 1));
                if module.is_empty() {
                    return;
                }
                match file.and_then(|f| parse_vfile(f)) {
                    Some((_, VFile::Lock)) | None => {}
                    Some((version, _)) => push_version(format!("{module}@{version}"), out),
                }
            }
            ["cache", ..] => {}
            _ => {
                let Some(i) = comps.iter().position(|c| c.contains('@')) else {
                    return;
                };
                if let Some((elem, version, _)) = parse_tree_name(comps[i]) {
                    let mut key = comps[..i].join("/");
                    if !key.is_empty() {
                        key.push('/');
                    }
                    push_version(format!("{key}{elem}@{version}"), out);
                }
            }
        }
    }

    fn tier(&self, id: &ModId) -> u8 {
        match id.role {
            Role::Tree => 0,
            Role::Zip | Role::Sumdb | Role::Vcs => 1,
            Role::Meta => AGE_ONLY,
        }
    }

    fn stat(&self, id: &ModId) -> io::Result<Option<EntryMeta>> {
        match id.role {
            Role::Sumdb => Ok(self.stat_sumdb()),
            Role::Vcs => Ok(self.stat_vcs(&id.key)),
            role => {
                let parts = self.parts_of(&id.key)?;
                let ex = self.examine(&id.key, &parts);
                if let Some(e) = ex.errors.first() {
                    if ex.role(role).is_none() {
                        return Err(io::Error::other(e.clone()));
                    }
                }
                Ok(Self::meta_of(&ex, role))
            }
        }
    }

    fn verify(&self, id: &ModId) -> Vec<Finding> {
        if matches!(id.role, Role::Sumdb | Role::Vcs) {
            return Vec::new();
        }
        let Ok(parts) = self.parts_of(&id.key) else {
            return Vec::new();
        };
        let first = self.check(id, &parts);
        if first.is_empty() {
            return first;
        }
        // Confirm under go's lock: go may have been writing what we read, and a marker
        // or temp file is only a leftover if nobody holds the lock.
        match self.lock_version(&id.key, false) {
            Ok(_locked) => match self.parts_of(&id.key) {
                Ok(parts) => self.check(id, &parts),
                Err(_) => first,
            },
            Err(LockError::Busy(_)) => Vec::new(),
            Err(LockError::NoDir) | Err(LockError::Io(_)) => first,
        }
    }

    fn remove(&self, id: &ModId, used_before: UnixTime, how: Removing) -> Removal {
        match id.role {
            Role::Sumdb => self.remove_sumdb(used_before),
            Role::Vcs => self.remove_vcs(&id.key, used_before),
            _ => self.remove_version(id, used_before, how),
        }
    }

    fn name_of(&self, id: &ModId) -> String {
        match id.role {
            Role::Sumdb => SUMDB_NAME.to_string(),
            Role::Vcs => format!("{VCS_PREFIX}{}", id.key),
            _ => unescape(&id.key).unwrap_or_else(|| id.key.to_string()),
        }
    }

    fn path_of(&self, id: &ModId) -> String {
        let (module, version) = split_key(&id.key).unwrap_or((&id.key, ""));
        match id.role {
            Role::Tree => id.key.to_string(),
            Role::Zip => format!("cache/download/{module}/@v/{version}.zip"),
            Role::Meta => format!("cache/download/{module}/@v/{version}.mod"),
            Role::Sumdb => SUMDB_NAME.to_string(),
            Role::Vcs => format!("{VCS_PREFIX}{}", id.key),
        }
    }

    /// `module@version` names the version's tree entry (its first); `cache/download/sumdb`
    /// and `cache/vcs/<hash>` the others.
    fn parse_name(&self, name: &str) -> Option<ModId> {
        if name == SUMDB_NAME {
            return Some(ModId {
                key: Arc::from(""),
                role: Role::Sumdb,
            });
        }
        if let Some(hash) = name.strip_prefix(VCS_PREFIX) {
            return is_vcs_hash(hash).then(|| ModId {
                key: Arc::from(hash),
                role: Role::Vcs,
            });
        }
        let (module, version) = name.rsplit_once('@')?;
        let (module, version) = (escape(module)?, escape(version)?);
        if !plain_module_path(&module) || !valid_escaped_version(&version) {
            return None;
        }
        Some(ModId {
            key: Arc::from(format!("{module}@{version}").as_str()),
            role: Role::Tree,
        })
    }

    fn last_use_signal(&self) -> &'static str {
        self.signal
    }

    fn repair_waits_for_min_age(&self) -> bool {
        false // go's version lock and the running-go guard protect a repair
    }

    fn configure(&self, settings: &KindSettings) {
        let secs = i64::try_from(settings.min_age.as_secs()).unwrap_or(i64::MAX);
        self.min_age_secs
            .store(secs, std::sync::atomic::Ordering::Relaxed);
        *self.guard.write().unwrap() = settings.guard_processes.clone();
    }

    fn in_use(&self) -> Option<InUse> {
        (self.in_use)(&self.root, &self.guard.read().unwrap())
    }

    fn holds_toolchains(&self) -> bool {
        true
    }

    fn toolchain_of(&self, id: &ModId) -> Option<String> {
        if !matches!(id.role, Role::Tree | Role::Zip | Role::Meta) {
            return None;
        }
        let full = id.key.strip_prefix("golang.org/toolchain@v0.0.1-")?;
        // go1.27.3.linux-amd64: the version, then `.GOOS-GOARCH`.
        Some(full.rsplit_once('.').map_or(full, |(v, _)| v).to_string())
    }

    fn holds(&self, in_use: &InUse, id: &ModId, last_use: UnixTime) -> bool {
        last_use >= in_use.since
            || match id.role {
                Role::Sumdb | Role::Vcs => in_use.keys.contains(ANY_GO_COMMAND),
                Role::Tree | Role::Zip | Role::Meta => in_use.keys.contains(&*id.key),
            }
    }
}

#[cfg(test)]
mod dirhash_tests;
#[cfg(test)]
mod held_tests;
#[cfg(test)]
mod race_tests;
#[cfg(test)]
pub mod tests;
