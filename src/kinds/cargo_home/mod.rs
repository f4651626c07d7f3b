//! Kind `cargo-home`: what cargo downloads into `$CARGO_HOME` (`~/.cargo`). Cargo's own
//! gc (stable since Rust 1.88) removes by age alone — a month for extracted sources, three
//! for downloads — with no size cap and no free-disk watermark; this kind adds both,
//! under cargo's own lock and with cargo's own record of use.
//!
//! ## Entries (layout: `layout.rs`), in the tiers eviction takes them
//!
//! * tier 0, **extracted sources** (`registry/src/<reg>/<pkg>-<ver>/`) and **git
//!   checkouts** (`git/checkouts/<ident>/<rev>/`): cargo makes them again from the
//!   `.crate` or the git database, offline;
//! * tier 1, **downloads** (`registry/cache/<reg>/<pkg>-<ver>.crate`) and **git
//!   databases** (`git/db/<ident>/`): cargo fetches them again, which needs the network
//!   (cargo wants the `.crate` even when its sources are extracted, `download.rs`);
//! * only by `max_age`, **registry indexes** (`registry/index/<reg>/`), as cargo's gc.
//!
//! Never entries: `bin/` (what `cargo install` put there, shown in status as not
//! managed), the config, credentials, lock files and `.global-cache`.
//!
//! ## Last use
//!
//! The later of cargo's own record (`.global-cache`, `tracker.rs`: every build that
//! resolves a package marks it, to 5 minutes) and `max(atime, mtime)` over the entry's
//! files (older cargo, other tools).
//!
//! ## Safety
//!
//! Removal holds cargo's two package-cache locks as cargo's gc does (`lock.rs`), so
//! nothing goes while a cargo builds or downloads with this home; a held lock holds the
//! whole home for planning too ([`Kind::in_use`]). A source directory or checkout loses
//! its `.cargo-ok` first: a removal cut short leaves something cargo redoes, never one it
//! trusts half-gone (cargo's own gc deletes in directory order and can). Every path goes
//! through the fd-relative layer; cargo's files are only read, its database never
//! opened in place.
//!
//! ## Problems
//!
//! * `partial`: sources or a checkout without `.cargo-ok`, an extraction or checkout cut
//!   short (cargo extracts over it, leaving stale files, or clones it again).
//! * `checksum-mismatch`: a `.crate` whose SHA-256 is not the `cksum` the registry index
//!   gives (`index.rs`). Cargo checks it once, when downloading; a damaged one fails the
//!   build the next time the sources must be extracted, and cargo never fetches it
//!   again by itself. Repair removes it; the next build downloads it.
//!
//! Nothing is judged while cargo holds a lock: it may be writing.

mod index;
mod layout;
mod lock;
mod tracker;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::OFlag;
use sha2::Digest;

use super::{EntryMeta, Finding, InUse, Kind, Removal, Removing, ScanResult, WatchDir, AGE_ONLY};
use crate::{fsutil, UnixTime};

pub use layout::HomeId;

/// Cargo marks what a build uses at its start, and holds its lock until it ends: a
/// package used in the last hour is likely used again by the next build.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(60 * 60);
/// The window between cargo's download lock and its build lock is covered by the use
/// it has just recorded.
pub const MIN_AGE_FLOOR: Duration = Duration::from_secs(60);

/// The largest index summaries file read (crates.io's largest are a few hundred KiB).
const MAX_SUMMARIES: u64 = 64 << 20;

pub struct CargoHomeKind {
    root: PathBuf,
    tracker: Mutex<Tracked>,
    /// Removals one at a time: cargo's locks are `flock`s, which one process taking
    /// them twice on two descriptors would find held by itself.
    removing: Mutex<()>,
}

/// The last good copy of cargo's tracker.
#[derive(Default)]
struct Tracked {
    version: Option<tracker::Version>,
    uses: tracker::Uses,
    /// Why the tracker could not be read, when it could not.
    trouble: Option<String>,
}

impl CargoHomeKind {
    pub fn new(root: PathBuf) -> CargoHomeKind {
        CargoHomeKind {
            root,
            tracker: Mutex::new(Tracked::default()),
            removing: Mutex::new(()),
        }
    }

    /// `$CARGO_HOME`, else `~/.cargo` (cargo's `home` crate), for `path = "auto"`.
    pub fn discover() -> Option<PathBuf> {
        match std::env::var_os("CARGO_HOME").filter(|v| !v.is_empty()) {
            Some(home) => Some(PathBuf::from(home)),
            None => Some(PathBuf::from(std::env::var_os("HOME")?).join(".cargo")),
        }
    }

    /// Refuses a directory that is not cargo's home (safety rule 2): cargo's home has
    /// `registry/` or `git/` (each tagged with a `CACHEDIR.TAG`), or cargo's lock or
    /// tracker files. An empty directory is waited on.
    pub fn check_root(root: &Path) -> Result<(), String> {
        let empty = std::fs::read_dir(root).is_ok_and(|mut d| d.next().is_none());
        let has = |name: &str| std::fs::symlink_metadata(root.join(name)).is_ok();
        let cargo_files = ["registry", "git", layout::TRACKER, layout::DOWNLOAD_LOCK];
        if empty || cargo_files.iter().any(|f| has(f)) {
            Ok(())
        } else {
            Err(format!(
                "{} does not look like a cargo home (no registry/, git/, .global-cache or .package-cache written by cargo, and not empty); refusing to manage it",
                root.display()
            ))
        }
    }

    fn open(&self) -> io::Result<OwnedFd> {
        fsutil::open_root(&self.root)
    }

    /// Cargo's record of use, read again when the file changed. Returns the previous
    /// record when it was replaced.
    fn refresh_tracker(&self, root: &impl AsFd) -> Option<tracker::Uses> {
        let version = tracker::version(root).ok()?;
        let mut tracked = self.tracker.lock().unwrap();
        if version == tracked.version {
            return None;
        }
        match tracker::read(root) {
            Ok(read) => {
                let (version, uses) = read.map_or((None, Arc::default()), |(v, u)| (Some(v), u));
                tracked.version = version;
                tracked.trouble = None;
                Some(std::mem::replace(&mut tracked.uses, uses))
            }
            Err(tracker::NotNow::Busy) => None,
            Err(tracker::NotNow::Broken(why)) => {
                if tracked.trouble.as_ref() != Some(&why) {
                    tracing::warn!(cache = %self.root.display(), "cannot read cargo's record of use, file times serve instead: {why}");
                }
                tracked.trouble = Some(why);
                None
            }
        }
    }

    fn uses(&self, root: &impl AsFd) -> tracker::Uses {
        self.refresh_tracker(root);
        self.tracker.lock().unwrap().uses.clone()
    }

    /// The entry's sizes and last use on disk (the tracker not included); `None` when
    /// it is not there, or not what its name says (a symlink, a file for a directory).
    fn measure(&self, root: &impl AsFd, id: &HomeId) -> io::Result<Option<EntryMeta>> {
        let rel = id.rel();
        let st = match fsutil::open_at_beneath(
            root,
            rel.parent().unwrap_or(Path::new("")),
            fsutil::DIR_FLAGS,
        )
        .and_then(|dir| fsutil::stat_at(&dir, rel.file_name().unwrap_or_default()))
        {
            Ok(st) => st,
            Err(e) if fsutil::is_vanished(&e) || fsutil::is_swapped(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let wanted = if id.is_tree() {
            libc::S_IFDIR
        } else {
            libc::S_IFREG
        };
        if !fsutil::is_file_type(&st, wanted) {
            return Ok(None);
        }
        if !id.is_tree() {
            return Ok(Some(EntryMeta {
                disk_bytes: fsutil::disk_usage_stat(&st),
                apparent_bytes: st.st_size as u64,
                last_use: fsutil::last_use_stat(&st),
                aux: 0,
            }));
        }
        // A checkout's git objects are hard links to its database's: counted there.
        let shared_elsewhere = matches!(id, HomeId::Checkout(..));
        let dir = match fsutil::open_at_beneath(root, &rel, fsutil::DIR_FLAGS) {
            Ok(fd) => fd,
            Err(e) if fsutil::is_vanished(&e) || fsutil::is_swapped(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut meta = EntryMeta {
            disk_bytes: st.st_blocks as u64 * 512,
            apparent_bytes: 0,
            last_use: fsutil::last_use_stat(&st),
            aux: 0,
        };
        fsutil::walk_tree(dir, fsutil::Walk::WHOLE_TREE, &mut |item| {
            match item {
                fsutil::Visit::Dir { st, .. } => {
                    meta.disk_bytes += st.st_blocks as u64 * 512;
                    meta.last_use = meta.last_use.max(fsutil::last_use_stat(st));
                }
                fsutil::Visit::Other { st, .. } => {
                    meta.last_use = meta.last_use.max(fsutil::last_use_stat(st));
                    if !(shared_elsewhere && st.st_nlink > 1) {
                        meta.disk_bytes += fsutil::disk_usage_stat(st);
                        meta.apparent_bytes += st.st_size as u64;
                    }
                }
                fsutil::Visit::Left { .. } | fsutil::Visit::Error { .. } => {}
            }
            Ok(())
        })?;
        Ok(Some(meta))
    }

    /// What `measure` says, with cargo's record of use.
    fn meta(
        &self,
        root: &impl AsFd,
        id: &HomeId,
        uses: &tracker::Uses,
    ) -> io::Result<Option<EntryMeta>> {
        Ok(self.measure(root, id)?.map(|mut meta| {
            if let Some(&at) = uses.get(id) {
                meta.last_use = meta.last_use.max(at);
            }
            meta
        }))
    }

    /// Every entry on disk, and the files below the entry directories that are none.
    fn list(&self, root: &impl AsFd, errors: &mut Vec<String>) -> (Vec<HomeId>, u64) {
        let mut ids = Vec::new();
        let mut ignored = 0;
        let list = |rel: &str, errors: &mut Vec<String>| -> Vec<(String, bool)> {
            match fsutil::list_beneath(root, Path::new(rel)) {
                Ok(names) => names
                    .into_iter()
                    .filter_map(|(name, is_dir)| Some((name.into_string().ok()?, is_dir)))
                    .collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    errors.push(format!("cannot list {rel}: {e}"));
                    Vec::new()
                }
            }
        };
        let mut take = |rel: String, ids: &mut Vec<HomeId>| match HomeId::of(Path::new(&rel)) {
            Some(id) if id.rel() == Path::new(&rel) => ids.push(id),
            _ => ignored += 1,
        };
        for (reg, is_dir) in list("registry/index", errors) {
            if is_dir {
                take(format!("registry/index/{reg}"), &mut ids);
            }
        }
        for (reg, is_dir) in list("registry/cache", errors) {
            if is_dir {
                for (file, _) in list(&format!("registry/cache/{reg}"), errors) {
                    take(format!("registry/cache/{reg}/{file}"), &mut ids);
                }
            }
        }
        for (reg, is_dir) in list("registry/src", errors) {
            if is_dir {
                for (dir, _) in list(&format!("registry/src/{reg}"), errors) {
                    take(format!("registry/src/{reg}/{dir}"), &mut ids);
                }
            }
        }
        for (ident, is_dir) in list("git/db", errors) {
            if is_dir {
                take(format!("git/db/{ident}"), &mut ids);
            }
        }
        for (ident, is_dir) in list("git/checkouts", errors) {
            if is_dir {
                for (rev, _) in list(&format!("git/checkouts/{ident}"), errors) {
                    take(format!("git/checkouts/{ident}/{rev}"), &mut ids);
                }
            }
        }
        (ids, ignored)
    }

    /// `bin/`: counted in status, never managed.
    fn installed_programs(&self, root: &impl AsFd) -> Option<crate::report::Unmanaged> {
        let dir = fsutil::open_at_beneath(root, Path::new(layout::BIN), fsutil::DIR_FLAGS).ok()?;
        let mut disk_bytes = nix::sys::stat::fstat(&dir).ok()?.st_blocks as u64 * 512;
        let _ = fsutil::walk_tree(dir, fsutil::Walk::WHOLE_TREE, &mut |item| {
            match item {
                fsutil::Visit::Dir { st, .. } => disk_bytes += st.st_blocks as u64 * 512,
                fsutil::Visit::Other { st, .. } => disk_bytes += fsutil::disk_usage_stat(st),
                _ => {}
            }
            Ok(())
        });
        Some(crate::report::Unmanaged {
            what: "installed programs (bin/)".into(),
            disk_bytes,
            why: "what `cargo install` put there, which no build fetches again: counted, never evicted; `cargo uninstall` removes them".into(),
        })
    }

    /// The `.crate`'s SHA-256 against the index's `cksum`.
    fn check_crate(&self, root: &impl AsFd, reg: &str, file: &str) -> Vec<Finding> {
        let Some((package, version)) = file
            .strip_suffix(".crate")
            .and_then(layout::package_version)
        else {
            return Vec::new();
        };
        let Some(at) = layout::index_cache_path(package) else {
            return Vec::new();
        };
        let summaries = Path::new("registry/index")
            .join(reg)
            .join(".cache")
            .join(at);
        let Ok(bytes) = read_at(root, &summaries, MAX_SUMMARIES) else {
            return Vec::new(); // no index entry: nothing to check against
        };
        let expected = match index::checksum_of(&bytes, version) {
            Ok(Some(sum)) => sum,
            Ok(None) | Err(_) => return Vec::new(),
        };
        let rel = Path::new("registry/cache").join(reg).join(file);
        let actual = match sha256_at(root, &rel) {
            Ok(sum) => sum,
            Err(e) if fsutil::is_vanished(&e) => return Vec::new(),
            Err(e) => {
                return vec![Finding {
                    problem: "unreadable",
                    detail: format!("cannot read {}: {e}", rel.display()),
                }]
            }
        };
        if actual == expected {
            return Vec::new();
        }
        vec![Finding {
            problem: "checksum-mismatch",
            detail: format!(
                "SHA-256 {actual}, the registry index says {expected}: cargo would fail to extract it and never fetch it again by itself"
            ),
        }]
    }
}

/// What `doctor` warns about a cargo home: (what, fix).
pub fn setup_warnings(path: &Path) -> Vec<(String, String)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let tracked = std::fs::symlink_metadata(path.join(layout::TRACKER)).is_ok();
    match !tracked && super::go_mod::mounted_noatime(&mountinfo, path) {
        true => vec![(
            "no record of use from cargo (.global-cache, cargo ≥ 1.78) and the filesystem is mounted noatime: last use is the download time, so eviction is by download age".into(),
            "use cargo 1.78 or later (it records every use), or remount with relatime".into(),
        )],
        false => Vec::new(),
    }
}

/// What `doctor` says of a cargo home besides: how cargo's own gc and this daemon
/// share it.
pub fn setup_notes(path: &Path) -> Vec<String> {
    // `[cache] auto-clean-frequency` (cargo ≥ 1.88, `core/gc.rs`), default "1 day".
    let frequency = ["config.toml", "config"].iter().find_map(|name| {
        let bytes = read_at(&fsutil::open_root(path).ok()?, Path::new(name), 1 << 20).ok()?;
        let config: toml::Table = std::str::from_utf8(&bytes).ok()?.parse().ok()?;
        let value = config
            .get("cache")?
            .get("auto-clean-frequency")?
            .as_str()?
            .to_string();
        Some(format!("{value:?} in {name}"))
    });
    let frequency = frequency.unwrap_or_else(|| "\"1 day\", cargo's default".into());
    vec![if frequency.starts_with("\"never\"") {
        format!("cargo's own gc is off here (cache.auto-clean-frequency = {frequency}): this daemon's limits alone apply")
    } else {
        format!("cargo 1.88 and later also clean this home themselves (cache.auto-clean-frequency = {frequency}): sources unused for a month, downloads for three; both take cargo's package-cache lock, so they never race — cargo's gc removes by age, this daemon by size, free space and max_age")
    }]
}

/// Reads a small file below `root` without changing its atime.
fn read_at(root: &impl AsFd, rel: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    fsutil::open_file_at(root, rel)?
        .take(limit)
        .read_to_end(&mut out)?;
    Ok(out)
}

fn sha256_at(root: &impl AsFd, rel: &Path) -> io::Result<String> {
    let mut file = fsutil::open_file_at(root, rel)?;
    let mut hasher = sha2::Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

impl Kind for CargoHomeKind {
    type Id = HomeId;

    fn root(&self) -> &Path {
        &self.root
    }

    fn scan(&self) -> ScanResult<HomeId> {
        let mut result = ScanResult::default();
        let root = match self.open() {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return result,
            Err(e) => {
                result.errors.push(e.to_string());
                return result;
            }
        };
        let uses = self.uses(&root);
        if let Some(why) = &self.tracker.lock().unwrap().trouble {
            result.errors.push(format!(
                "cargo's record of use: {why}; file times serve instead"
            ));
        }
        let (ids, ignored) = self.list(&root, &mut result.errors);
        result.ignored_files = ignored;
        let measured = crate::parallel::map_with(crate::parallel::IO_THREADS, &ids, |id| {
            self.meta(&root, id, &uses)
        });
        for (id, meta) in ids.into_iter().zip(measured) {
            match meta {
                Ok(Some(meta)) => result.entries.push((id, meta)),
                Ok(None) => result.ignored_files += 1,
                Err(e) => result.errors.push(format!("{}: {e}", id.rel().display())),
            }
        }
        result.unmanaged.extend(self.installed_programs(&root));
        result
    }

    fn watch_dirs(&self) -> Vec<WatchDir> {
        // Down to the entries' own directories: a source directory's `.cargo-ok`, which
        // cargo writes last, says it is whole. Below that, cargo writes once (sources,
        // checkouts) or rarely (an index's cache, a git database's packs): seen at the
        // next rescan.
        vec![WatchDir {
            path: self.root.clone(),
            depth: 4,
            leaf: None,
        }]
    }

    fn entry_at(&self, rel: &Path) -> Option<HomeId> {
        HomeId::of(rel)
    }

    fn entries_at(&self, rel: &Path, out: &mut Vec<HomeId>) {
        let tracker_changed = rel
            .to_str()
            .is_some_and(|r| r.trim_start_matches('/').starts_with(layout::TRACKER));
        if !tracker_changed {
            out.extend(HomeId::of(rel));
            return;
        }
        // Cargo recorded uses: every entry whose record changed has a new last use.
        let Ok(root) = self.open() else { return };
        let Some(before) = self.refresh_tracker(&root) else {
            return;
        };
        let now = self.tracker.lock().unwrap().uses.clone();
        out.extend(
            now.iter()
                .filter(|(id, at)| before.get(*id) != Some(at))
                .map(|(id, _)| id.clone()),
        );
        out.extend(before.keys().filter(|id| !now.contains_key(*id)).cloned());
    }

    fn tier(&self, id: &HomeId) -> u8 {
        match id {
            HomeId::Src(..) | HomeId::Checkout(..) => 0,
            HomeId::Crate(..) | HomeId::GitDb(..) => 1,
            HomeId::Index(..) => AGE_ONLY,
        }
    }

    fn stat(&self, id: &HomeId) -> io::Result<Option<EntryMeta>> {
        let root = match self.open() {
            Ok(fd) => fd,
            Err(e) if fsutil::is_vanished(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let uses = self.uses(&root);
        self.meta(&root, id, &uses)
    }

    fn verify(&self, id: &HomeId) -> Vec<Finding> {
        let Ok(root) = self.open() else {
            return Vec::new();
        };
        if !lock::holders(&root).is_empty() {
            return Vec::new(); // cargo may be writing it
        }
        match id {
            HomeId::Src(..) | HomeId::Checkout(..) => {
                let ready = id.rel().join(layout::READY);
                match fsutil::open_at_beneath(&root, &ready, OFlag::O_RDONLY | OFlag::O_NONBLOCK) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        let what = match id {
                            HomeId::Src(..) => {
                                "an extraction cut short: cargo extracts over it, stale files stay"
                            }
                            _ => "a checkout cut short: cargo clones it again",
                        };
                        vec![Finding {
                            problem: "partial",
                            detail: format!("no {}: {what}", layout::READY),
                        }]
                    }
                    _ => Vec::new(),
                }
            }
            HomeId::Crate(reg, file) => self.check_crate(&root, reg, file),
            HomeId::Index(_) | HomeId::GitDb(_) => Vec::new(),
        }
    }

    fn remove(&self, id: &HomeId, used_before: UnixTime, _how: Removing) -> Removal {
        let _one_at_a_time = self.removing.lock().unwrap();
        let attempt = || -> io::Result<Removal> {
            let root = match self.open() {
                Ok(fd) => fd,
                Err(e) if fsutil::is_vanished(&e) => return Ok(Removal::Gone),
                Err(e) => return Err(e),
            };
            let _held = match lock::take(&root) {
                Ok(held) => held,
                Err(why) => return Ok(Removal::InUse(why)),
            };
            let uses = self.uses(&root);
            let Some(meta) = self.meta(&root, id, &uses)? else {
                return Ok(Removal::Gone);
            };
            if super::used_after(meta.last_use, used_before) {
                return Ok(Removal::Skipped(
                    "used since the eviction was planned".into(),
                ));
            }
            let rel = id.rel();
            let (parent, name) = fsutil::split_beneath(&rel)?;
            let parent = match fsutil::open_at_beneath(&root, parent, fsutil::DIR_FLAGS) {
                Ok(fd) => fd,
                Err(e) if fsutil::is_vanished(&e) => return Ok(Removal::Gone),
                Err(e) => return Err(e),
            };
            if !id.is_tree() {
                let st = fsutil::stat_at(&parent, name)?;
                return Ok(match fsutil::unlink_at(&parent, name)? {
                    true if st.st_nlink <= 1 => Removal::Removed {
                        disk_bytes: fsutil::disk_usage_stat(&st),
                    },
                    true => Removal::Removed { disk_bytes: 0 },
                    false => Removal::Gone,
                });
            }
            if matches!(id, HomeId::Src(..) | HomeId::Checkout(..)) {
                // Not ready from now on, whatever is left of it.
                let dir = fsutil::open_dir_at(&parent, name, false)?;
                fsutil::unlink_at(&dir, OsStr::new(layout::READY))?;
            }
            fsutil::remove_tree_at(&parent, name)?;
            Ok(Removal::Removed {
                disk_bytes: meta.disk_bytes,
            })
        };
        attempt().unwrap_or_else(|e| Removal::Failed(format!("cannot remove: {e}")))
    }

    fn name_of(&self, id: &HomeId) -> String {
        id.rel().to_string_lossy().into_owned()
    }

    fn path_of(&self, id: &HomeId) -> String {
        self.name_of(id)
    }

    fn parse_name(&self, name: &str) -> Option<HomeId> {
        HomeId::of(Path::new(name)).filter(|id| id.rel() == Path::new(name))
    }

    fn last_use_signal(&self) -> &'static str {
        "cargo's own record of use (.global-cache, to 5 minutes: every build that resolves a package marks it) where it has one, else max(atime, mtime) of the entry's files"
    }

    fn in_use(&self) -> Option<InUse> {
        let root = self.open().ok()?;
        let by = lock::holders(&root);
        (!by.is_empty()).then(|| InUse {
            since: UnixTime::MAX,
            keys: Arc::new(BTreeSet::from(["cargo".to_string()])),
            by: by.join("; "),
        })
    }

    fn holds(&self, in_use: &InUse, _id: &HomeId, _last_use: UnixTime) -> bool {
        // Cargo's locks are for the whole home.
        !in_use.keys.is_empty()
    }

    fn repair_waits_for_min_age(&self) -> bool {
        // Cargo's lock makes removal safe; a damaged `.crate` fails the next extraction.
        false
    }
}

#[cfg(test)]
mod tests;
