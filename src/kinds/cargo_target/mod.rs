//! Kind `cargo-target`: one cargo target directory (`target/`), the largest single item
//! on most disks that build Rust: cargo never cleans it (rust-lang/cargo#5026), and
//! `cargo clean` is all or one package.
//!
//! ## Entries (layout: `layout.rs`)
//!
//! * **A unit**: one compilation of one package for one profile and target — its
//!   fingerprint directory, its build-script directory and its outputs in `deps/` and
//!   `examples/`, all named by the unit's hash. Removing a unit makes cargo rebuild it,
//!   and only what depends on it, at the next build (a missing fingerprint or output is
//!   "dirty" for cargo, never an error). Outputs whose unit has no fingerprint left
//!   (an interrupted `cargo clean -p`, an older cargo) are a unit of their own.
//! * **An incremental directory** (`incremental/<crate>-<hash>/`): rustc's incremental
//!   sessions for one crate. Losing it costs only compile speed, so under size pressure
//!   every incremental directory goes before any unit (tier 0; units are tier 1).
//! * Not entries: `.cargo-lock`, the profile's "uplifted" final outputs (hard links to
//!   the units' outputs, which cargo makes again), `doc/`, `package/`, `tmp/`.
//!
//! ## Last use
//!
//! `max(atime, mtime)` over the unit's files: cargo rewrites a unit's fingerprint and
//! outputs when it builds it, and rustc reads a unit's `.rmeta`/`.rlib` whenever a
//! dependent is compiled (atime, exact to about a day on relatime mounts). A no-op
//! `cargo build` writes nothing, so a project built daily without changes ages by a day
//! at a time, like a Go module.
//!
//! ## Safety
//!
//! Never while cargo builds: a profile directory whose build lock cargo holds is held
//! whole ([`Kind::in_use`]); removal takes that lock itself without waiting, removes the
//! fingerprint first (so a crash mid-way leaves the unit dirty, never fresh with
//! missing outputs), then outputs and the build directory, and lets go. Every path goes
//! through the fd-relative layer; nothing is followed out of the target directory.
//!
//! ## Problems
//!
//! A unit cargo would take as fresh but rustc could not read: an `.rlib` that is not an
//! `ar` archive, an `.rmeta` without rustc's magic, a `.so` that is not ELF, a
//! fingerprint file that is not JSON where cargo writes JSON (disk full, a crash
//! mid-write). Not while cargo builds in the profile. Repair removes the unit; cargo
//! rebuilds it.
//!
//! Cargo lets its lock go when compiling ends: a test binary, a doctest or `cargo
//! run` reading dependencies afterwards is protected by `min_age` alone (1 h by
//! default), as go/packages tools are for GOCACHE.

mod layout;
mod lock;

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{EntryMeta, Finding, InUse, Kind, Removal, Removing, ScanResult, Stamp, WatchDir};
use crate::{fsutil, UnixTime};

pub use layout::{find_target_dirs, is_cargo_tagged};

/// What `doctor` warns about a target directory: (what, fix).
pub fn setup_warnings(path: &Path) -> Vec<(String, String)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    match super::go_mod::mounted_noatime(&mountinfo, path) {
        true => vec![(
            "its filesystem is mounted noatime: rustc reading a dependency's outputs is no use, so last use is when each unit was built".into(),
            "remount with relatime (the default) if dependencies every build reads get evicted first".into(),
        )],
        false => Vec::new(),
    }
}

/// A unit rebuilt a minute ago is likely read again at once by its dependents.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(60 * 60);
/// Cargo holds its lock for the whole build, so only a unit being written right now
/// needs the floor.
pub const MIN_AGE_FLOOR: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// A unit, by its hash.
    Unit(u64),
    /// `incremental/<name>`.
    Incremental(Arc<str>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId {
    /// `debug`, `release`, `<triple>/<profile>`.
    pub profile: Arc<str>,
    pub part: Part,
}

/// What an entry adds up from.
const NOTHING: EntryMeta = EntryMeta {
    disk_bytes: 0,
    apparent_bytes: 0,
    last_use: 0,
    aux: 0,
};

/// A unit of a profile: (profile, hash).
type UnitKey = (Arc<str>, u64);

pub struct CargoTargetKind {
    root: PathBuf,
    /// Package names of units by (profile, hash), learnt from fingerprint directories:
    /// names for people only, never used to find files.
    packages: Mutex<HashMap<UnitKey, Arc<str>>>,
    /// Directory listings by unit hash, by (profile, directory), valid while the
    /// directory's mtime holds: a watch event re-reads one unit without listing
    /// `deps/` (thousands of files) again.
    listings: Mutex<HashMap<(Arc<str>, &'static str), Listing>>,
    /// The build locks this kind holds, by profile, with how many removals use each:
    /// shared by the removals running at once (an `flock` taken twice by one process
    /// on two descriptors conflicts), taken and let go under this mutex.
    locks: Mutex<HashMap<Arc<str>, (lock::Held, usize)>>,
}

struct Listing {
    stamp: Stamp,
    by_hash: Arc<HashMap<u64, Vec<OsString>>>,
}

/// The directories of a profile whose names carry unit hashes.
const UNIT_DIRS: [&str; 4] = [
    layout::FINGERPRINT,
    layout::BUILD,
    layout::DEPS,
    layout::EXAMPLES,
];

impl CargoTargetKind {
    pub fn new(root: PathBuf) -> CargoTargetKind {
        CargoTargetKind {
            root,
            packages: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The build lock of `profile`, taken without waiting or shared with the removals
    /// holding it already, until the guard goes; `Err` names who else holds it.
    fn hold(
        &self,
        root: &impl std::os::fd::AsFd,
        profile: &Arc<str>,
    ) -> Result<Holding<'_>, String> {
        let mut locks = self.locks.lock().unwrap();
        match locks.get_mut(profile) {
            Some((_, users)) => *users += 1,
            None => {
                let held = lock::take(root, Path::new(&**profile))?;
                locks.insert(profile.clone(), (held, 1));
                // What cargo wrote before we took its lock is listed afresh: from now
                // on only our removals change the profile (`listing`).
                (self.listings.lock().unwrap()).retain(|(p, _), _| p != profile);
            }
        }
        Ok(Holding {
            kind: self,
            profile: profile.clone(),
        })
    }

    /// Refuses a directory cargo did not tag as its own (safety rule 2).
    pub fn check_root(root: &Path) -> Result<(), String> {
        match is_cargo_tagged(root) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "{} has a CACHEDIR.TAG that cargo did not write: not a cargo target directory",
                root.display()
            )),
            Err(e) => Err(format!(
                "{} is not a cargo target directory (no CACHEDIR.TAG from cargo: {e})",
                root.display()
            )),
        }
    }

    /// The names in `profile/dir` by unit hash, from the cache while the directory's
    /// mtime is unchanged.
    fn listing(
        &self,
        root: &impl std::os::fd::AsFd,
        profile: &Arc<str>,
        dir: &'static str,
    ) -> Arc<HashMap<u64, Vec<OsString>>> {
        let rel = Path::new(&**profile).join(dir);
        let removing = self.locks.lock().unwrap().contains_key(profile);
        if removing {
            // Our removals hold cargo's lock of this profile: only they change it, so
            // what was listed is what there is, less what they removed (a miss is
            // harmless); listing `deps/` again after each removal made eviction
            // quadratic.
            if let Some(l) = self.listings.lock().unwrap().get(&(profile.clone(), dir)) {
                return l.by_hash.clone();
            }
        }
        let Ok(st) = fsutil::open_at_beneath(root, &rel, fsutil::DIR_FLAGS)
            .and_then(|fd| nix::sys::stat::fstat(&fd).map_err(io::Error::from))
        else {
            return Arc::default();
        };
        let stamp = Stamp::of(&st);
        let key = (profile.clone(), dir);
        if let Some(l) = self.listings.lock().unwrap().get(&key) {
            if l.stamp == stamp {
                return l.by_hash.clone();
            }
        }
        let mut by_hash: HashMap<u64, Vec<OsString>> = HashMap::new();
        for (name, _) in fsutil::list_beneath(root, &rel).unwrap_or_default() {
            if let Some(hash) = layout::hash_of(&name) {
                if dir == layout::FINGERPRINT {
                    if let Some(package) = layout::package_of(&name) {
                        (self.packages.lock().unwrap())
                            .insert((profile.clone(), hash), Arc::from(package));
                    }
                }
                by_hash.entry(hash).or_default().push(name);
            }
        }
        let by_hash = Arc::new(by_hash);
        (self.listings.lock().unwrap()).insert(
            key,
            Listing {
                stamp,
                by_hash: by_hash.clone(),
            },
        );
        by_hash
    }

    /// The paths (relative to the root) of everything a unit is made of, the
    /// fingerprint first.
    fn unit_paths(
        &self,
        root: &impl std::os::fd::AsFd,
        profile: &Arc<str>,
        hash: u64,
    ) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for dir in UNIT_DIRS {
            let listing = self.listing(root, profile, dir);
            for name in listing.get(&hash).into_iter().flatten() {
                paths.push(Path::new(&**profile).join(dir).join(name));
            }
        }
        paths
    }

    fn paths_of(&self, root: &impl std::os::fd::AsFd, id: &TargetId) -> Vec<PathBuf> {
        match &id.part {
            Part::Unit(hash) => self.unit_paths(root, &id.profile, *hash),
            Part::Incremental(name) => {
                vec![Path::new(&*id.profile)
                    .join(layout::INCREMENTAL)
                    .join(&**name)]
            }
        }
    }

    /// Sizes and last use of the files and trees at `paths`; `None` when none exists.
    fn measure(
        &self,
        root: &impl std::os::fd::AsFd,
        paths: &[PathBuf],
    ) -> io::Result<Option<EntryMeta>> {
        let mut meta = NOTHING;
        let mut found = false;
        for rel in paths {
            let Some((dir, name, st)) = stat_in_parent(root, rel)? else {
                continue;
            };
            found = true;
            count(&mut meta, &st);
            if !fsutil::is_file_type(&st, libc::S_IFDIR) {
                continue;
            }
            // A directory (fingerprint, build script, incremental): made or renamed
            // into when cargo or rustc wrote it.
            meta.last_use = meta.last_use.max(st.st_mtime);
            let sub = match fsutil::open_dir_at(&dir, name, false) {
                Ok(sub) => sub,
                Err(e) if fsutil::is_vanished(&e) => continue,
                Err(e) => return Err(e),
            };
            let mut errors = Vec::new();
            fsutil::walk_beneath(
                sub,
                u32::MAX,
                &mut |walked| match walked {
                    fsutil::Walked::Dir(_, fd) => {
                        if let Ok(st) = nix::sys::stat::fstat(fd) {
                            meta.disk_bytes += fsutil::disk_usage_stat(&st);
                        }
                    }
                    fsutil::Walked::Other(_, st) => count(&mut meta, st),
                },
                &mut errors,
            );
        }
        Ok(found.then_some(meta))
    }

    /// One unit directory of a profile (`deps`, `.fingerprint`, …) walked: what each
    /// unit (or incremental directory) has in it, the files that are no unit's, and
    /// what could not be read.
    fn walk_unit_dir(
        &self,
        root: &impl std::os::fd::AsFd,
        profile: &Arc<str>,
        dir: &'static str,
    ) -> (HashMap<Part, EntryMeta>, u64, Vec<String>) {
        let mut units: HashMap<Part, EntryMeta> = HashMap::new();
        let (mut ignored, mut errors) = (0u64, Vec::new());
        let rel = Path::new(&**profile).join(dir);
        let fd = match fsutil::open_at_beneath(root, &rel, fsutil::DIR_FLAGS) {
            Ok(fd) => fd,
            Err(e) if fsutil::is_vanished(&e) => return (units, 0, errors),
            Err(e) => {
                errors.push(format!("{}: {e}", rel.display()));
                return (units, 0, errors);
            }
        };
        // The directory's stamp before it is read: the listing `stat` uses later is
        // made from this walk's first level, not read a second time.
        let stamp = nix::sys::stat::fstat(&fd).ok().map(|st| Stamp::of(&st));
        let mut by_hash: HashMap<u64, Vec<OsString>> = HashMap::new();
        let mut packages: Vec<(u64, Arc<str>)> = Vec::new();
        let mut part_of = |top: &OsStr| -> Option<Part> {
            if dir == layout::INCREMENTAL {
                return Some(Part::Incremental(Arc::from(top.to_str()?)));
            }
            let hash = layout::hash_of(top)?;
            if dir == layout::FINGERPRINT {
                if let Some(package) = layout::package_of(top) {
                    packages.push((hash, Arc::from(package)));
                }
            }
            by_hash.entry(hash).or_default().push(top.to_os_string());
            Some(Part::Unit(hash))
        };
        // The unit of the top-level directory being walked (the walk goes depth
        // first: all of it before the next top-level name), summed apart and added
        // once it is left.
        let mut current: Option<(Part, EntryMeta)> = None;
        let flush = |current: &mut Option<(Part, EntryMeta)>,
                     units: &mut HashMap<Part, EntryMeta>| {
            if let Some((part, meta)) = current.take() {
                let sum = units.entry(part).or_insert(NOTHING);
                sum.disk_bytes += meta.disk_bytes;
                sum.apparent_bytes += meta.apparent_bytes;
                sum.last_use = sum.last_use.max(meta.last_use);
            }
        };
        let walked = fsutil::walk_tree(fd, fsutil::Walk::WHOLE_TREE, &mut |item| {
            match item {
                fsutil::Visit::Dir { rel, st, level, .. } => {
                    if level == 1 {
                        flush(&mut current, &mut units);
                        current = part_of(rel.as_os_str()).map(|part| {
                            let last_use = st.st_mtime;
                            (
                                part,
                                EntryMeta {
                                    last_use,
                                    ..NOTHING
                                },
                            )
                        });
                    }
                    if let Some((_, meta)) = &mut current {
                        meta.disk_bytes += fsutil::disk_usage_stat(st);
                    }
                }
                fsutil::Visit::Other { rel, name, st, .. } => {
                    let top_level = !rel.as_os_str().as_bytes().contains(&b'/');
                    if top_level {
                        flush(&mut current, &mut units);
                        match part_of(name) {
                            Some(part) => count(units.entry(part).or_insert(NOTHING), st),
                            None => ignored += 1,
                        }
                    } else {
                        match &mut current {
                            Some((_, meta)) => count(meta, st),
                            None => ignored += 1,
                        }
                    }
                }
                fsutil::Visit::Left { .. } => {}
                fsutil::Visit::Error { rel: at, error } => {
                    errors.push(format!("{}: {error}", rel.join(at).display()));
                }
            }
            Ok(())
        });
        flush(&mut current, &mut units);
        if let Err(e) = walked {
            errors.push(format!("{}: {e}", rel.display()));
        }
        if !packages.is_empty() {
            let mut known = self.packages.lock().unwrap();
            for (hash, package) in packages {
                known.insert((profile.clone(), hash), package);
            }
        }
        if let (Some(stamp), true) = (stamp, dir != layout::INCREMENTAL) {
            (self.listings.lock().unwrap()).insert(
                (profile.clone(), dir),
                Listing {
                    stamp,
                    by_hash: Arc::new(by_hash),
                },
            );
        }
        (units, ignored, errors)
    }

    fn open(&self) -> io::Result<std::os::fd::OwnedFd> {
        fsutil::open_root(&self.root)
    }

    /// The unit's outputs rustc would read, checked by their magic numbers, and its
    /// fingerprint's JSON files parsed.
    fn check_unit(&self, root: &impl std::os::fd::AsFd, paths: &[PathBuf]) -> Vec<Finding> {
        let mut found = Vec::new();
        // The fingerprint directory's files, then the outputs.
        let mut files: Vec<PathBuf> = Vec::new();
        for rel in paths {
            match rel.iter().any(|c| c == layout::FINGERPRINT) {
                true => files.extend(
                    (fsutil::list_beneath(root, rel)
                        .unwrap_or_default()
                        .into_iter())
                    .filter(|(_, is_dir)| !is_dir)
                    .map(|(name, _)| rel.join(name)),
                ),
                false => files.push(rel.clone()),
            }
        }
        for rel in &files {
            let Some(name) = rel.file_name().and_then(OsStr::to_str) else {
                continue;
            };
            let in_fingerprint = rel.iter().any(|c| c == layout::FINGERPRINT);
            let expect: Option<(&[u8], &'static str)> = if name.ends_with(".rlib") {
                Some((b"!<arch>\n".as_slice(), "rlib-not-an-archive"))
            } else if name.ends_with(".rmeta") {
                Some((b"rust".as_slice(), "rmeta-not-rust-metadata"))
            } else if name.ends_with(".so") {
                Some((b"\x7fELF".as_slice(), "output-not-elf"))
            } else {
                None
            };
            if in_fingerprint && name.ends_with(".json") {
                match read_beneath(root, rel, 16 << 20) {
                    Ok(bytes) if serde_json::from_slice::<serde_json::Value>(&bytes).is_err() => {
                        found.push(Finding {
                            problem: "fingerprint-not-json",
                            detail: format!(
                                "{} does not parse as JSON (written in part?)",
                                rel.display()
                            ),
                        })
                    }
                    Ok(_) => {}
                    Err(e) if fsutil::is_vanished(&e) => {}
                    Err(e) => found.push(unreadable(rel, e)),
                }
                continue;
            }
            let Some((magic, problem)) = expect else {
                continue;
            };
            match read_beneath(root, rel, magic.len()) {
                Ok(head) if head.as_slice() != magic => found.push(Finding {
                    problem,
                    detail: format!(
                        "{} does not start as rustc writes it ({} bytes read): cargo takes it as fresh and the next build fails",
                        rel.display(),
                        head.len()
                    ),
                }),
                Ok(_) => {}
                Err(e) if fsutil::is_vanished(&e) => {}
                Err(e) => found.push(unreadable(rel, e)),
            }
        }
        found
    }
}

/// One removal's use of a profile's build lock ([`CargoTargetKind::hold`]); the last
/// one lets the lock go.
struct Holding<'a> {
    kind: &'a CargoTargetKind,
    profile: Arc<str>,
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        let mut locks = self.kind.locks.lock().unwrap();
        if let Some((_, users)) = locks.get_mut(&self.profile) {
            *users -= 1;
            if *users == 0 {
                locks.remove(&self.profile);
            }
        }
    }
}

/// The directory holding `rel` (open, below `root`), its last name, and its `lstat`;
/// `None` when it is not there (or a directory on the way was swapped).
fn stat_in_parent<'a>(
    root: &impl std::os::fd::AsFd,
    rel: &'a Path,
) -> io::Result<Option<(std::os::fd::OwnedFd, &'a OsStr, nix::sys::stat::FileStat)>> {
    let (parent, name) = fsutil::split_beneath(rel)?;
    let dir = match fsutil::open_at_beneath(root, parent, fsutil::DIR_FLAGS) {
        Ok(dir) => dir,
        Err(e) if fsutil::is_vanished(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    match fsutil::stat_at(&dir, name) {
        Ok(st) => Ok(Some((dir, name, st))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Adds what `st` takes to `meta`: its disk usage, and a regular file's length and use.
fn count(meta: &mut EntryMeta, st: &nix::sys::stat::FileStat) {
    meta.disk_bytes += fsutil::disk_usage_stat(st);
    if fsutil::is_file_type(st, libc::S_IFREG) {
        meta.apparent_bytes += st.st_size as u64;
        meta.last_use = meta.last_use.max(fsutil::last_use_stat(st));
    }
}

fn unreadable(rel: &Path, e: io::Error) -> Finding {
    Finding {
        problem: "unreadable",
        detail: format!("{}: {e}", rel.display()),
    }
}

/// Up to `limit` bytes of the regular file at `rel`.
fn read_beneath(root: &impl std::os::fd::AsFd, rel: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let file = fsutil::open_file_at(root, rel)?;
    let mut bytes = Vec::new();
    file.take(limit as u64).read_to_end(&mut bytes)?;
    Ok(bytes)
}

impl Kind for CargoTargetKind {
    type Id = TargetId;

    fn root(&self) -> &Path {
        &self.root
    }

    fn scan(&self) -> ScanResult<TargetId> {
        let mut result = ScanResult::default();
        let root = match self.open() {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return result,
            Err(e) => {
                result.errors.push(e.to_string());
                return result;
            }
        };
        let profiles = match layout::profiles(&root) {
            Ok(p) => p,
            Err(e) => {
                result.errors.push(e.to_string());
                return result;
            }
        };
        // One walk per unit directory of each profile, as `du` does, each file added
        // to the unit its name (or its top directory's name) carries: the same sums
        // `measure` makes for one unit. The directories are walked at once.
        let profiles: Vec<Arc<str>> = profiles
            .iter()
            .map(|p| Arc::from(p.to_string_lossy().as_ref()))
            .collect();
        let jobs: Vec<(Arc<str>, &'static str)> = profiles
            .iter()
            .flat_map(|p| {
                (UNIT_DIRS.into_iter().chain([layout::INCREMENTAL])).map(|d| (p.clone(), d))
            })
            .collect();
        let walked = crate::parallel::map_with(crate::parallel::IO_THREADS, &jobs, |(p, d)| {
            self.walk_unit_dir(&root, p, d)
        });
        let mut units: HashMap<TargetId, EntryMeta> = HashMap::new();
        for ((profile, _), (found, ignored, errors)) in jobs.iter().zip(walked) {
            result.ignored_files += ignored;
            result.errors.extend(errors);
            for (part, meta) in found {
                let id = TargetId {
                    profile: profile.clone(),
                    part,
                };
                let sum = units.entry(id).or_insert(NOTHING);
                sum.disk_bytes += meta.disk_bytes;
                sum.apparent_bytes += meta.apparent_bytes;
                sum.last_use = sum.last_use.max(meta.last_use);
            }
        }
        result.entries = units.into_iter().collect();
        result
    }

    fn watch_dirs(&self) -> Vec<WatchDir> {
        // The root, its profiles, their unit directories and the units' own
        // directories (a build writes each unit's fingerprint last). A `--target`
        // build's units are a level deeper: their outputs in `deps/` and new unit
        // directories are seen, a rewrite inside an existing fingerprint directory
        // only with its outputs or at the next rescan. (Four levels, with `out/` as a
        // leaf, left the live index off a fresh scan in the real-cargo test: open.)
        vec![WatchDir {
            path: self.root.clone(),
            depth: 3,
            leaf: None,
        }]
    }

    fn entry_at(&self, rel: &Path) -> Option<TargetId> {
        // `<profile>/<dir>/<name>…` or `<triple>/<profile>/<dir>/<name>…` (unit names
        // are ASCII: a name that is not UTF-8 is no unit's).
        let comps: Vec<&str> = rel.to_str()?.split('/').filter(|c| !c.is_empty()).collect();
        let at = comps
            .iter()
            .position(|c| UNIT_DIRS.contains(c) || *c == layout::INCREMENTAL)?;
        if at == 0 || at > 2 {
            return None;
        }
        let profile: Arc<str> = Arc::from(comps[..at].join("/"));
        let name = comps.get(at + 1)?;
        let part = match comps[at] {
            layout::INCREMENTAL => Part::Incremental(Arc::from(*name)),
            _ => Part::Unit(layout::hash_of(OsStr::new(name))?),
        };
        Some(TargetId { profile, part })
    }

    fn tier(&self, id: &TargetId) -> u8 {
        match id.part {
            Part::Incremental(_) => 0,
            Part::Unit(_) => 1,
        }
    }

    fn stat(&self, id: &TargetId) -> io::Result<Option<EntryMeta>> {
        let root = match self.open() {
            Ok(fd) => fd,
            Err(e) if fsutil::is_vanished(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        self.measure(&root, &self.paths_of(&root, id))
    }

    fn verify(&self, id: &TargetId) -> Vec<Finding> {
        let Ok(root) = self.open() else {
            return Vec::new();
        };
        // While cargo builds in the profile its files are being written: nothing can
        // be judged (a fingerprint JSON half written is not damage).
        if lock::holder(&root, Path::new(&*id.profile)).is_some() {
            return Vec::new();
        }
        match &id.part {
            Part::Unit(_) => self.check_unit(&root, &self.paths_of(&root, id)),
            Part::Incremental(_) => Vec::new(),
        }
    }

    fn remove(&self, id: &TargetId, used_before: UnixTime, _how: Removing) -> Removal {
        let attempt = || -> io::Result<Removal> {
            let root = match self.open() {
                Ok(fd) => fd,
                Err(e) if fsutil::is_vanished(&e) => return Ok(Removal::Gone),
                Err(e) => return Err(e),
            };
            let _held = match self.hold(&root, &id.profile) {
                Ok(held) => held,
                Err(why) => return Ok(Removal::InUse(why)),
            };
            let paths = self.paths_of(&root, id);
            let Some(meta) = self.measure(&root, &paths)? else {
                return Ok(Removal::Gone);
            };
            if super::used_after(meta.last_use, used_before) {
                return Ok(Removal::Skipped(
                    "used since the eviction was planned".into(),
                ));
            }
            // The fingerprint first (`unit_paths` lists it first): from then on cargo
            // takes the unit as dirty, whatever is left of it.
            let mut freed = 0;
            for rel in &paths {
                let Some((dir, name, st)) = stat_in_parent(&root, rel)? else {
                    continue;
                };
                freed += match fsutil::is_file_type(&st, libc::S_IFDIR) {
                    true => fsutil::remove_tree_at(&dir, name)?,
                    // A hard link (the profile's uplifted copy keeps the blocks)
                    // frees nothing.
                    false => match fsutil::unlink_at(&dir, name)? {
                        true if st.st_nlink <= 1 => fsutil::disk_usage_stat(&st),
                        _ => 0,
                    },
                };
            }
            Ok(Removal::Removed { disk_bytes: freed })
        };
        attempt().unwrap_or_else(|e| Removal::Failed(format!("cannot remove: {e}")))
    }

    fn name_of(&self, id: &TargetId) -> String {
        match &id.part {
            Part::Unit(hash) => {
                let packages = self.packages.lock().unwrap();
                match packages.get(&(id.profile.clone(), *hash)) {
                    Some(package) => format!("{}/{package}-{hash:016x}", id.profile),
                    None => format!("{}/{hash:016x}", id.profile),
                }
            }
            Part::Incremental(name) => {
                format!("{}/{}/{name}", id.profile, layout::INCREMENTAL)
            }
        }
    }

    fn path_of(&self, id: &TargetId) -> String {
        match &id.part {
            Part::Unit(_) => {
                let name = self.name_of(id);
                let unit = name.rsplit('/').next().unwrap_or("");
                format!("{}/{}/{unit}", id.profile, layout::FINGERPRINT)
            }
            Part::Incremental(_) => self.name_of(id),
        }
    }

    fn parse_name(&self, name: &str) -> Option<TargetId> {
        if let Some((profile, dir)) = name.split_once(&format!("/{}/", layout::INCREMENTAL)) {
            return Some(TargetId {
                profile: Arc::from(profile),
                part: Part::Incremental(Arc::from(dir)),
            });
        }
        let (profile, unit) = name.rsplit_once('/')?;
        let hash = match layout::hash_of(OsStr::new(unit)) {
            Some(hash) => hash,
            None if unit.len() == 16 => u64::from_str_radix(unit, 16).ok()?,
            None => return None,
        };
        Some(TargetId {
            profile: Arc::from(profile),
            part: Part::Unit(hash),
        })
    }

    fn last_use_signal(&self) -> &'static str {
        "max(atime, mtime) of each unit's files: cargo rewrites a unit when it builds it and rustc reads a dependency's outputs (atime, exact to about a day on relatime mounts); a no-op build writes nothing"
    }

    fn in_use(&self) -> Option<InUse> {
        let root = self.open().ok()?;
        let profiles = layout::profiles(&root).ok()?;
        let mut keys = BTreeSet::new();
        let mut by = Vec::new();
        for profile in profiles {
            if let Some(who) = lock::holder(&root, &profile) {
                keys.insert(profile.to_string_lossy().into_owned());
                by.push(who);
            }
        }
        (!keys.is_empty()).then(|| InUse {
            since: UnixTime::MAX,
            keys: Arc::new(keys),
            by: by.join("; "),
        })
    }

    fn holds(&self, in_use: &InUse, id: &TargetId, _last_use: UnixTime) -> bool {
        in_use.keys.contains(&*id.profile)
    }

    fn repair_waits_for_min_age(&self) -> bool {
        // The build lock makes removal safe; a broken unit breaks the next build.
        false
    }
}

#[cfg(test)]
mod tests;
