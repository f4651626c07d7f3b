//! Kind `go-build`: Go's build cache (GOCACHE).
//!
//! ## Format (golang/go `src/cmd/go/internal/cache/cache.go`)
//!
//! ```text
//! GOCACHE/README, trim.txt, testexpire.txt, log.txt, fuzz/   never touched
//! GOCACHE/00 … ff/                                           never removed themselves
//! GOCACHE/xx/<64 hex action id>-a   175 bytes (putIndexEntry):
//!     "v1 %x %x %20d %20d\n" — action id, output id, output size, put time (ns)
//! GOCACHE/xx/<64 hex output id>-d   the output; output id = SHA-256 of its content
//! ```
//!
//! `xx` is the first byte of the id in hex. `put` writes the `-d` first (all but the
//! last byte, hash checked, then the last byte), then the `-a`; no temp files, no
//! renames. Every hit sets the used file's mtime to now if it is at least an hour old
//! (`used`, `mtimeInterval`), so **mtime is the LRU clock, to one hour**. Go never
//! verifies an output's hash when serving it, only its size: a same-size corrupt output
//! reaches the compiler. A missing or broken `-a`, or a `-d` missing or of the wrong
//! size, is a miss for go, never an error — so removing any entry is safe *unless* a
//! running go command already decided to use it (golang/go#31948, see below).
//!
//! ## Entries
//!
//! An entry is an action together with the output it names. Outputs may be shared (the
//! empty output `e3b0c442…` is named by hundreds of actions): a shared output's disk
//! usage is carried by one of the actions naming it — the last used, which eviction
//! (oldest first) takes last — so entry sizes add up to what `du` reports; eviction
//! removes an output only when no surviving entry names it (the engine passes the
//! survivors' output fingerprints), and when its carrier goes while others still name
//! it, one of them takes it over (the engine re-reads it at once). An action and an
//! output of its own are one pair: its last use is the later of their mtimes (go bumps
//! them separately), and they go together or not at all. Outputs named by no
//! action (`put` killed between `-d` and `-a`, or left by go's own trim) become entries
//! of their own once older than [`ORPHAN_GRACE`]; younger ones are outputs whose action
//! is still being written, and are left alone. An action whose output is gone is an
//! entry too (with `output-missing` as its problem).
//!
//! ## Safety
//!
//! Go hands a hit's `-d` path to the compiler or linker, which may open it much later;
//! deleting it in between fails the build (golang/go#31948). Three rules close that:
//! `min_age` ≥ 1 h 5 min (mtime lags use by up to the hour of `mtimeInterval`; default
//! 2 h); while `go` processes run, entries touched since the oldest one started (minus
//! the hour and a margin) are protected (`go_procs.rs`); and removal re-reads the mtime
//! just before unlinking, skipping anything used since the plan was made. Served
//! through `cachewarden cacheprog` (GOCACHEPROG), entries are leased exactly instead:
//! what a running go was handed stays until it closes the program (`leases.rs`), and
//! every use sets the action's mtime at once.
//!
//! ## Scan
//!
//! Two steps. The **walk** lists each shard directory with `getdents` and `fstatat`s
//! every name relative to the shard's directory fd — no path resolution and no reads
//! per file, many shards in flight — and gives every file as a provisional entry: sizes
//! and ages are then exact, and status is served. **Pairing** then needs what is
//! inside each 175-byte action file (the output id); it reads only actions the index
//! cannot vouch for (same id, same mtime: go rewrites an action file only together
//! with its mtime), so the first scan reads them all and a rescan almost none.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::stat::FileStat;
use sha2::{Digest, Sha256};

use super::{
    EntryMeta, Finding, InUse, Kind, KindSettings, Known, Removal, Removing, ScanResult, Stamp,
    WatchDir,
};
use crate::golang::dirhash::to_hex;
use crate::golang::procs;
use crate::{fsutil, parallel, UnixTime};
use outputs::with_contents;

mod format;
pub mod leases;
mod outputs;
mod walk;

pub use format::*;
use walk::*;

/// How stale the running-go guard's answer may be when a removal re-checks it.
const GUARD_RECHECK: Duration = Duration::from_millis(50);

/// Default `min_age`: go's own advice is not to trim what was used in the last day;
/// two hours covers the one-hour mtime lag with a wide margin.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(2 * 3600);
/// The lowest safe `min_age`: mtime lags use by up to an hour (`mtimeInterval`), plus
/// five minutes for a compile to open what its go command found.
pub const MIN_AGE_FLOOR: Duration = Duration::from_secs(3600 + 5 * 60);
/// An output with no action is still being `put` while younger than this.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(10 * 60);

/// Outputs that are not simply "one action, one output": kept from scans so a watch
/// event on one file can be accounted like a scan would (both sets are small).
#[derive(Default)]
struct OutputBook {
    /// Outputs named by several actions, with the action whose entry carries the
    /// output's size (the last one used: eviction takes it last, so the output goes
    /// with it); the others carry only their own. `None`: its carrier was removed while
    /// others still name it — the next of them to be looked at takes it over.
    shared: HashMap<[u8; 32], Option<[u8; 32]>>,
    /// The fingerprints (`aux`) of `shared`'s outputs, for [`Kind::is_shared`].
    shared_aux: std::collections::HashSet<u64>,
    /// Outputs named by no action (old enough not to be in the middle of a `put`).
    orphans: std::collections::HashSet<[u8; 32]>,
}

pub struct GoBuildKind {
    root: PathBuf,
    /// Outputs whose hash was checked, by fingerprint, with the (mtime, size) they had:
    /// a sweep re-hashes only outputs that changed since. (A fingerprint, not the id:
    /// 24 bytes less per output. Two outputs would need the same first 8 id bytes *and*
    /// the same mtime and size for one to go unchecked.)
    verified: Mutex<HashMap<u64, (i64, u64)>>,
    /// What watch events cannot tell by looking at one file, from the last scan.
    outputs: Mutex<OutputBook>,
    shard_fds: Mutex<Vec<Option<Arc<OwnedFd>>>>,
    /// Computes when a running go command may still open entries (injectable for tests).
    in_use: fn(&Path, &[String]) -> Option<super::InUse>,
    /// Process names whose running holds recently used entries (`guard_processes`).
    guard: std::sync::RwLock<Vec<String>>,
    /// The guard's last answer and when it was asked (see `in_use_now`).
    guard_checked: Mutex<Option<(std::time::Instant, Option<super::InUse>)>>,
    /// What running `cachewarden cacheprog`s leased.
    leases: leases::Leases,
    /// Their store lock, while removals run.
    removal_lock: leases::RemovalLock,
}

/// The in-use horizon for the GOCACHE at `root`, if a guarded process may be using it.
fn in_use_since(root: &Path, guard: &[String]) -> Option<InUse> {
    procs::oldest_go_using(root, procs::GoCache::Build, guard).map(|(started, pid, name)| {
        InUse::since(
            started - procs::MTIME_INTERVAL_SECS - procs::MARGIN_SECS,
            format!(
                "{name} (pid {pid}) running since {}",
                crate::units::local_time(started)
            ),
        )
    })
}

impl GoBuildKind {
    pub fn new(root: PathBuf) -> GoBuildKind {
        GoBuildKind {
            root,
            verified: Mutex::new(HashMap::new()),
            outputs: Mutex::new(OutputBook::default()),
            shard_fds: Mutex::new(vec![None; 256]),
            in_use: in_use_since,
            guard_checked: Mutex::new(None),
            leases: leases::Leases::default(),
            removal_lock: leases::RemovalLock::default(),
            guard: std::sync::RwLock::new(
                procs::DEFAULT_BUILD_GUARD
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
        }
    }

    /// Refuses a root that is not recognisably a Go build cache (safety rule 2).
    pub fn check_root(root: &Path) -> Result<(), String> {
        let mut readme = [0u8; README_START.len()];
        let has_readme = std::fs::File::open(root.join("README"))
            .and_then(|mut f| f.read_exact(&mut readme))
            .is_ok_and(|_| readme == README_START);
        let empty = std::fs::read_dir(root)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if has_readme || empty || root.join("00").is_dir() {
            Ok(())
        } else {
            Err(format!(
                "{} does not look like a Go build cache (no README written by go, no 00/…ff/ directories); refusing to manage it",
                root.display()
            ))
        }
    }

    /// The shard directory holding `hash`, opened once and reused: opening it per entry
    /// (root, shard, close) tripled the syscalls of verifying and removing small entries.
    /// A full scan drops the cache, so a root deleted and recreated is opened anew.
    ///
    /// `go clean -cache` removes the 256 shard directories (`cmd/go/internal/clean`,
    /// `RemoveAll` of each `[0-9a-f][0-9a-f]`) and the next go command makes new ones
    /// (`cache.Open`): a cached descriptor would then name a removed directory in which
    /// every entry looks gone (the live index lost all of them, issue #29). A removed
    /// directory has no links left, so one `fstat` tells a stale descriptor, which is
    /// replaced by the directory now at that name. (A shard moved away is a rescan:
    /// the watcher asks for one.)
    fn shard_dir(&self, hash: &[u8; 32]) -> io::Result<Arc<OwnedFd>> {
        let i = hash[0] as usize;
        if let Some(fd) = &self.shard_fds.lock().unwrap()[i] {
            if nix::sys::stat::fstat(&**fd).is_ok_and(|st| st.st_nlink > 0) {
                return Ok(fd.clone());
            }
        }
        let fd = Arc::new(fsutil::open_dir_beneath(
            &self.root,
            Path::new(&format!("{:02x}", hash[0])),
        )?);
        self.shard_fds.lock().unwrap()[i] = Some(fd.clone());
        Ok(fd)
    }

    /// The running-go guard as of at most [`GUARD_RECHECK`] ago: removal re-checks it
    /// before each unlink, and half a million unlinks must not each scan `/proc`.
    /// The store lock, taken for a removal, and who leases `id` if anyone (read
    /// afresh: a cacheprog may have handed it out since the plan).
    fn leased_now(&self, id: &GoId) -> Result<(leases::Holding<'_>, Option<String>), String> {
        let root = fsutil::open_root(&self.root).map_err(|e| e.to_string())?;
        let lock = self.removal_lock.take(&root)?;
        let by = self
            .leases
            .live(&root)
            .iter()
            .find(|l| l.actions.contains(&id.hash))
            .map(|l| format!("cachewarden cacheprog (pid {}) leases it", l.pid));
        Ok((lock, by))
    }

    fn in_use_now(&self) -> Option<super::InUse> {
        let mut last = self.guard_checked.lock().unwrap();
        match &*last {
            Some((at, found)) if at.elapsed() < GUARD_RECHECK => found.clone(),
            _ => {
                let found = self.in_use();
                *last = Some((std::time::Instant::now(), found.clone()));
                found
            }
        }
    }
}

/// What an action names, as far as pairing (`complete`) knows.
#[derive(Clone, Copy)]
enum Names {
    /// Not known yet: the action file must be read.
    Unread,
    /// The action file is damaged (`-a` garbled or truncated): it names nothing.
    Nothing,
    /// An output, by fingerprint; `at` is its place among the walked outputs (`None`:
    /// missing, or in a shard this scan did not walk).
    Output { aux: u64, at: Option<usize> },
    /// The action vanished, or could not be read, after the walk saw it.
    Gone,
}

impl GoBuildKind {
    /// Walks some shards: every `-a` and `-d` becomes a provisional entry with its own
    /// size and mtime (actions with `aux` 0, outputs with their own fingerprint), so
    /// the walk's totals are already what `du` says. `complete` pairs them.
    fn walk_shards(&self, shards: &[u8]) -> ScanResult<GoId> {
        if shards.len() == 256 {
            // A full scan opens shards anew: the root may have been deleted and recreated.
            self.shard_fds
                .lock()
                .unwrap()
                .iter_mut()
                .for_each(|fd| *fd = None);
        }
        // Mostly waiting for inodes when the page cache is cold: many walks in flight.
        let per_shard =
            parallel::map_with(parallel::IO_THREADS, shards, |&s| walk_shard(&self.root, s));
        let mut result = ScanResult {
            entries: Vec::with_capacity(per_shard.iter().map(|s| s.files.len()).sum()),
            ignored_files: 0,
            errors: Vec::new(),
            stamps: Vec::with_capacity(shards.len()),
            // Measured at every walk, partial ones too: a restart shows them at once.
            unmanaged: self.fuzz_corpora().into_iter().collect(),
        };
        for (&s, shard) in shards.iter().zip(per_shard) {
            result.stamps.push((s as usize, shard.stamp));
            result.errors.extend(shard.errors);
            result.ignored_files += shard.ignored;
            result.entries.extend(shard.files);
        }
        result
    }

    /// `GOCACHE/fuzz`: the corpora `go test -fuzz` keeps (`cmd/go/internal/test`,
    /// `GOCACHE/fuzz/<import path>/<FuzzName>/<hash>`). Go never trims them; only `go
    /// clean -fuzzcache` removes them all. They are counted, never evicted: they are
    /// the inputs a fuzzer found interesting, which no build makes again, so removing
    /// them loses work, not cache (issue #31).
    fn fuzz_corpora(&self) -> Option<crate::report::Unmanaged> {
        let fd = fsutil::open_dir_beneath(&self.root, Path::new("fuzz")).ok()?;
        let mut disk_bytes = nix::sys::stat::fstat(&fd).map_or(0, |st| st.st_blocks as u64 * 512);
        let _ = fsutil::walk_tree(fd, fsutil::Walk::WHOLE_TREE, &mut |item| {
            match item {
                fsutil::Visit::Dir { st, .. } | fsutil::Visit::Other { st, .. } => {
                    disk_bytes += fsutil::disk_usage_stat(st)
                }
                fsutil::Visit::Left { .. } | fsutil::Visit::Error { .. } => {}
            }
            Ok(())
        });
        Some(crate::report::Unmanaged {
            what: "fuzz corpora (fuzz/)".into(),
            disk_bytes,
            why: "inputs go's fuzzer found, which no build makes again: counted, never evicted; `go clean -fuzzcache` removes them".into(),
        })
    }

    fn stat_output(&self, output: &[u8; 32]) -> Option<FileStat> {
        let dir = self.shard_dir(output).ok()?;
        let name = format!("{}-d", to_hex(output));
        let st = fsutil::stat_at(&dir, OsStr::new(&name)).ok()?;
        Some(with_contents(&dir, OsStr::new(&name), st))
    }
}

impl Kind for GoBuildKind {
    type Id = GoId;

    fn root(&self) -> &Path {
        &self.root
    }

    fn scan(&self) -> ScanResult<GoId> {
        self.walk_shards(&(0..=255).collect::<Vec<u8>>())
    }

    fn completes_scans(&self) -> bool {
        true
    }

    /// Pairs a walk's actions with the outputs they name: an action's entry gets its
    /// output's size (a shared one's goes to its last used action only), outputs named by no action (and
    /// old enough not to be mid-`put`) stay entries of their own, and the rest of the
    /// outputs leave the list. Only actions `known` cannot vouch for are read.
    fn complete(
        &self,
        walked: ScanResult<GoId>,
        known: Known<GoId>,
        named_elsewhere: &dyn Fn(u64) -> bool,
    ) -> ScanResult<GoId> {
        let ScanResult {
            entries,
            ignored_files,
            mut errors,
            stamps,
            unmanaged,
        } = walked;
        let mut walked_shard = [false; 256];
        for (p, _) in &stamps {
            walked_shard[*p] = true;
        }
        // Vectors sized once: see `Index::from_entries` on heap holes.
        let output_count = entries
            .iter()
            .filter(|(id, _)| id.role == Role::Output)
            .count();
        let mut outputs = Vec::with_capacity(output_count);
        let mut actions = Vec::with_capacity(entries.len() - output_count);
        for entry in entries {
            match entry.0.role {
                Role::Output => outputs.push(entry),
                Role::Action => actions.push(entry),
            }
        }
        // Each shard's walk sorted its files, and shards are walked in order.
        if !outputs.is_sorted_by_key(|(id, _)| id.hash) {
            outputs.sort_unstable_by_key(|(id, _)| id.hash);
        }

        // An output named by its full id (read from the action) or by its fingerprint
        // (inherited from the index: the first 8 bytes of the id).
        let by_id = |o: &[u8; 32]| outputs.binary_search_by_key(o, |(id, _)| id.hash).ok();
        let with_prefix = |prefix: &[u8; 8]| {
            let at = outputs.partition_point(|(id, _)| id.hash[..8] < prefix[..]);
            (
                outputs
                    .get(at)
                    .is_some_and(|(id, _)| id.hash[..8] == prefix[..]),
                at,
            )
        };
        let by_fingerprint = |aux: u64| -> Names {
            let prefix = aux.to_le_bytes();
            let (first, from) = with_prefix(&prefix);
            let second = outputs
                .get(from + 1)
                .is_some_and(|(id, _)| id.hash[..8] == prefix);
            match (first, second) {
                (true, false) => Names::Output {
                    aux,
                    at: Some(from),
                },
                (false, _) if walked_shard[prefix[0] as usize] => Names::Output { aux, at: None },
                _ => Names::Unread, // two outputs share the prefix, or not walked: read
            }
        };
        let mut names: Vec<Names> = known(&actions)
            .into_iter()
            .map(|aux| match aux {
                Some(0) | None => Names::Unread,
                Some(aux) => by_fingerprint(aux),
            })
            .collect();

        // Read what is not known, in parallel: one openat+read+close per action. An
        // action known as naming nothing is read again: it may have been read half
        // written (go's `put` truncates, then writes) and completed within the same
        // second, so its unchanged mtime vouches for nothing.
        let unread: Vec<usize> = (0..actions.len())
            .filter(|&i| matches!(names[i], Names::Unread))
            .collect();
        let read = parallel::map_with(
            parallel::IO_THREADS,
            &unread.chunks(256).collect::<Vec<_>>(),
            |chunk| {
                chunk
                    .iter()
                    .map(|&i| {
                        let id = &actions[i].0;
                        let dir = self.shard_dir(&id.hash)?;
                        read_action(&dir, id)
                    })
                    .collect::<Vec<_>>()
            },
        );
        for (&i, outcome) in unread.iter().zip(read.into_iter().flatten()) {
            names[i] = match outcome.map(|bytes| parse_action(&bytes)) {
                Ok(Ok(a)) => {
                    let aux = fingerprint(&a.output);
                    let at = by_id(&a.output);
                    if at.is_none() && !walked_shard[a.output[0] as usize] {
                        // Its output lies in a shard this (partial) scan did not walk.
                        if let Some(st) = self.stat_output(&a.output) {
                            actions[i].1.disk_bytes += fsutil::disk_usage_stat(&st);
                            actions[i].1.apparent_bytes += st.st_size as u64;
                        }
                    }
                    Names::Output { aux, at }
                }
                Ok(Err(_garbled)) => Names::Nothing,
                Err(e) => {
                    if e.kind() != io::ErrorKind::NotFound {
                        let id = &actions[i].0;
                        errors.push(format!("{:02x}/{}: {e}", id.hash[0], id.file_name()));
                    }
                    Names::Gone
                }
            };
        }

        // How many actions name each output, and which carries its size: the last used
        // (ties: the greatest id), so the total is what `du` says and eviction, oldest
        // first, frees the output with the action that goes last.
        let mut refs = vec![0u32; outputs.len()];
        let mut carrier: Vec<Option<usize>> = vec![None; outputs.len()];
        for (i, n) in names.iter().enumerate() {
            if let Names::Output { at: Some(j), .. } = n {
                refs[*j] += 1;
                let later = |c: usize| {
                    (actions[i].1.last_use, actions[i].0.hash)
                        > (actions[c].1.last_use, actions[c].0.hash)
                };
                if carrier[*j].is_none_or(later) {
                    carrier[*j] = Some(i);
                }
            }
        }
        let carriers: Vec<Option<[u8; 32]>> = carrier
            .iter()
            .map(|c| c.map(|i| actions[i].0.hash))
            .collect();
        let unnamed = refs.iter().filter(|&&n| n == 0).count();
        let mut result = ScanResult {
            entries: Vec::with_capacity(actions.len() + unnamed),
            ignored_files,
            errors,
            stamps,
            unmanaged,
        };
        for ((id, mut meta), n) in actions.into_iter().zip(names) {
            match n {
                Names::Gone | Names::Unread => continue,
                Names::Nothing => meta.aux = 0,
                Names::Output { aux, at } => {
                    meta.aux = aux;
                    if let Some(j) = at {
                        if carriers[j] == Some(id.hash) {
                            let output = &outputs[j].1;
                            meta.disk_bytes += output.disk_bytes;
                            meta.apparent_bytes += output.apparent_bytes;
                        }
                        // An output of its own goes with the action: the pair's last
                        // use is the later of both (a shared one stays while others
                        // name it, so only the action's own use counts).
                        if refs[j] == 1 {
                            meta.last_use = meta.last_use.max(outputs[j].1.last_use);
                        }
                    }
                }
            }
            result.entries.push((id, meta));
        }
        let grace_before = crate::now() - ORPHAN_GRACE.as_secs() as i64;
        let mut book = OutputBook::default();
        for (((id, meta), &count), carrier) in outputs.iter().zip(&refs).zip(carriers) {
            if count > 1 {
                book.shared.insert(id.hash, carrier);
                book.shared_aux.insert(fingerprint(&id.hash));
            } else if count == 0 && meta.last_use < grace_before && !named_elsewhere(meta.aux) {
                book.orphans.insert(id.hash);
                result.entries.push((*id, *meta));
            }
        }

        let mut known_outputs = self.outputs.lock().unwrap();
        if result.stamps.len() == 256 {
            *known_outputs = book;
            // Forget verifications of outputs that no longer exist.
            self.verified
                .lock()
                .unwrap()
                .retain(|fp, _| with_prefix(&fp.to_le_bytes()).0);
        } else {
            known_outputs.shared.extend(book.shared);
            known_outputs.shared_aux.extend(book.shared_aux);
            known_outputs.orphans.extend(book.orphans);
        }
        drop(known_outputs);
        result
    }

    fn partitions(&self) -> usize {
        256
    }

    fn partition_of(&self, id: &GoId) -> usize {
        id.hash[0] as usize
    }

    fn partition_stamp(&self, partition: usize) -> Option<Stamp> {
        let st = nix::sys::stat::lstat(&self.root.join(format!("{partition:02x}"))).ok()?;
        Some(Stamp::of(&st))
    }

    fn scan_partitions(&self, partitions: &[usize]) -> ScanResult<GoId> {
        let shards: Vec<u8> = partitions.iter().map(|&p| p as u8).collect();
        self.walk_shards(&shards)
    }

    fn partition_of_aux(&self, aux: u64) -> Option<usize> {
        // The fingerprint is the output id's first 8 bytes, little endian: its low byte
        // is the id's first byte, which names the shard.
        (aux != 0).then_some((aux & 0xff) as usize)
    }

    fn aux_can_be_shared(&self) -> bool {
        true
    }

    /// Several entries name one output fingerprint (or named it: one may be left): the
    /// actions that really name that output share it, carried by the last used (ties:
    /// the greatest id), as [`Kind::complete`] decides; an orphan entry of it is one no
    /// longer; a single action left carries it as its own.
    fn named_by_several(&self, aux: u64, namers: &[GoId]) -> bool {
        let mut output = namers
            .iter()
            .find(|id| id.role == Role::Output)
            .map(|id| id.hash);
        let mut actions = Vec::new();
        for id in namers.iter().filter(|id| id.role == Role::Action) {
            let Ok(dir) = self.shard_dir(&id.hash) else {
                continue;
            };
            let (Ok(st), Ok(bytes)) = (
                fsutil::stat_at(&dir, OsStr::new(&id.file_name())),
                read_action(&dir, id),
            ) else {
                continue;
            };
            let Ok(a) = parse_action(&bytes) else {
                continue;
            };
            if fingerprint(&a.output) != aux || output.is_some_and(|o| o != a.output) {
                continue; // (two outputs with the same first 8 bytes)
            }
            output = Some(a.output);
            actions.push((st.st_mtime, id.hash));
        }
        let (Some(output), Some(&(_, carrier))) = (output, actions.iter().max()) else {
            return false;
        };
        let mut book = self.outputs.lock().unwrap();
        book.orphans.remove(&output);
        if actions.len() > 1 {
            book.shared.insert(output, Some(carrier));
            book.shared_aux.insert(aux);
        } else {
            // One action left naming it: its own output again, as a scan counts it.
            book.shared.remove(&output);
            book.shared_aux.remove(&aux);
        }
        true
    }

    fn is_shared(&self, aux: u64) -> bool {
        self.outputs.lock().unwrap().shared_aux.contains(&aux)
    }

    fn encode_id(&self, id: &GoId, out: &mut Vec<u8>) {
        out.extend_from_slice(&id.hash);
        out.push(matches!(id.role, Role::Output) as u8);
    }

    fn decode_id(&self, bytes: &[u8]) -> Option<GoId> {
        let (hash, role) = bytes.split_at_checked(32)?;
        let role = match role {
            [0] => Role::Action,
            [1] => Role::Output,
            _ => return None,
        };
        Some(GoId {
            hash: hash.try_into().ok()?,
            role,
        })
    }

    fn watch_dirs(&self) -> Vec<WatchDir> {
        // The root and its direct subdirectories (the 256 shards, plus fuzz/ whose
        // events map to no entry), including shards go creates later.
        vec![WatchDir {
            path: self.root.clone(),
            depth: 1,
            leaf: None,
        }]
    }

    fn entry_at(&self, rel: &Path) -> Option<GoId> {
        let mut parts = rel.components();
        let shard = parts.next()?.as_os_str().as_bytes();
        let name = parts.next()?.as_os_str().as_bytes();
        if parts.next().is_some() || shard.len() != 2 {
            return None;
        }
        let id = parse_file_name(name)?;
        (format!("{:02x}", id.hash[0]).as_bytes() == shard).then_some(id)
    }

    fn stat(&self, id: &GoId) -> io::Result<Option<EntryMeta>> {
        let dir = match self.shard_dir(&id.hash) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let name = id.file_name();
        let st = match fsutil::stat_at(&dir, OsStr::new(&name)) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match id.role {
            Role::Action => {
                let mut meta = EntryMeta {
                    disk_bytes: fsutil::disk_usage_stat(&st),
                    apparent_bytes: st.st_size as u64,
                    last_use: st.st_mtime,
                    aux: 0,
                };
                let bytes = match read_action(&dir, id) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                };
                if let Ok(a) = parse_action(&bytes) {
                    meta.aux = fingerprint(&a.output);
                    if let Some(out) = self.stat_output(&a.output) {
                        let mut book = self.outputs.lock().unwrap();
                        let carries = match book.shared.get_mut(&a.output) {
                            None => true, // its own output
                            Some(Some(carrier)) => *carrier == id.hash,
                            Some(carrier @ None) => {
                                // Its carrier went: this action takes the output over.
                                *carrier = Some(id.hash);
                                true
                            }
                        };
                        if carries {
                            meta.disk_bytes += fsutil::disk_usage_stat(&out);
                            meta.apparent_bytes += out.st_size as u64;
                        }
                        if !book.shared.contains_key(&a.output) {
                            meta.last_use = meta.last_use.max(out.st_mtime);
                        }
                    }
                }
                Ok(Some(meta))
            }
            // An output is an entry of its own only while no action names it. One file
            // cannot tell that, so events only keep up known orphans (a scan finds new
            // ones); one that changes now is being put or used, so it belongs to an action.
            Role::Output => {
                let st = with_contents(&dir, OsStr::new(&name), st);
                let grace_before = crate::now() - ORPHAN_GRACE.as_secs() as i64;
                let mut book = self.outputs.lock().unwrap();
                if st.st_mtime >= grace_before {
                    book.orphans.remove(&id.hash);
                }
                Ok((book.orphans.contains(&id.hash)).then(|| EntryMeta {
                    disk_bytes: fsutil::disk_usage_stat(&st),
                    apparent_bytes: st.st_size as u64,
                    last_use: st.st_mtime,
                    aux: fingerprint(&id.hash),
                }))
            }
        }
    }

    fn verify(&self, id: &GoId) -> Vec<Finding> {
        let found = |problem: &'static str, detail: String| vec![Finding { problem, detail }];
        let dir = match self.shard_dir(&id.hash) {
            Ok(dir) => dir,
            Err(e) => return found("unreadable", e.to_string()),
        };
        let (output, expected_size) = match id.role {
            Role::Output => (id.hash, None),
            Role::Action => {
                let bytes = match read_action(&dir, id) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return vec![],
                    Err(e) => return found("unreadable", e.to_string()),
                };
                let a = match parse_action(&bytes) {
                    Ok(a) => a,
                    Err(code) => {
                        return found(
                            code,
                            format!(
                                "{} bytes, expected {ACTION_LEN} in go's v1 format",
                                bytes.len()
                            ),
                        )
                    }
                };
                if a.action != id.hash {
                    return found(
                        "action-id-mismatch",
                        format!("the file names action {}", to_hex(&a.action)),
                    );
                }
                (a.output, Some(a.size))
            }
        };
        let out_name = format!("{}-d", to_hex(&output));
        let out_dir = match self.shard_dir(&output) {
            Ok(d) => d,
            Err(_) => return found("output-missing", format!("{out_name} does not exist")),
        };
        let st = match fsutil::stat_at(&out_dir, OsStr::new(&out_name)) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return found("output-missing", format!("{out_name} does not exist"))
            }
            Err(e) => return found("unreadable", e.to_string()),
        };
        if fsutil::is_file_type(&st, libc::S_IFDIR) {
            return self.verify_executable(&out_dir, &out_name, &output, expected_size, &st);
        }
        if !fsutil::is_file_type(&st, libc::S_IFREG) {
            return found(
                "not-a-regular-file",
                format!("{out_name} is {}", fsutil::type_name(&st)),
            );
        }
        let size = st.st_size as u64;
        if let Some(expected) = expected_size.filter(|&e| e != size) {
            return found(
                "output-size-mismatch",
                format!("{out_name} has {size} bytes, the action records {expected}"),
            );
        }
        let stamp = (st.st_mtime, size);
        if self.verified.lock().unwrap().get(&fingerprint(&output)) == Some(&stamp) {
            return vec![];
        }
        match self.output_hash_ok(&out_dir, &output) {
            Ok(true) => {
                self.verified
                    .lock()
                    .unwrap()
                    .insert(fingerprint(&output), stamp);
                vec![]
            }
            Ok(false) => found(
                "output-hash-mismatch",
                format!("the SHA-256 of {out_name} is not its name"),
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => vec![],
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                found("not-a-regular-file", e.to_string())
            }
            Err(e) => found("unreadable", e.to_string()),
        }
    }

    fn remove(&self, id: &GoId, used_before: UnixTime, how: Removing) -> Removal {
        let attempt = || -> io::Result<Removal> {
            let dir = match self.shard_dir(&id.hash) {
                Ok(dir) => dir,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Gone),
                Err(e) => return Err(e),
            };
            let name = id.file_name();
            let st = match fsutil::stat_at(&dir, OsStr::new(&name)) {
                Ok(st) => st,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Gone),
                Err(e) => return Err(e),
            };
            if super::used_after(st.st_mtime, used_before) {
                return Ok(Removal::Skipped(
                    "used since the eviction was planned".into(),
                ));
            }
            // The running-go guard, again just before unlinking: a go command that
            // started since the plan may hold this entry.
            if let Some(u) = self.in_use_now() {
                if st.st_mtime >= u.since || matches!(how, Removing::Repair(_)) {
                    return Ok(Removal::InUse(format!(
                        "{} may open it; deferred until it exits",
                        u.by
                    )));
                }
            }
            // A cacheprog hands out under its shared lock: holding it exclusive, the
            // leases read now are all there are until this removal is done.
            let _no_hand_out = match self.leased_now(id) {
                Ok((lock, None)) => lock,
                Ok((_, Some(by))) | Err(by) => {
                    return Ok(Removal::InUse(format!(
                        "{by}; deferred until its go command closes it"
                    )))
                }
            };
            let output = match id.role {
                Role::Output => Some(id.hash),
                Role::Action => read_action(&dir, id)
                    .ok()
                    .and_then(|b| parse_action(&b).ok())
                    .map(|a| a.output),
            };
            if id.role == Role::Output {
                if let Removing::Evict(survivors) = how {
                    if survivors.contains(fingerprint(&id.hash)) {
                        return Ok(Removal::Skipped("an action now names this output".into()));
                    }
                }
            }
            // The output goes with its last action; a corrupt one goes whoever names it.
            let remove_output = match (id.role, how) {
                (Role::Output, _) => false, // it is the entry itself
                (Role::Action, Removing::Evict(survivors)) => {
                    output.is_some_and(|o| !survivors.contains(fingerprint(&o)))
                }
                (Role::Action, Removing::Repair(findings)) => {
                    findings.iter().any(|f| f.problem == "output-hash-mismatch")
                }
            };
            // The pair goes together or not at all: its last use is the later of both
            // mtimes (go bumps them separately), re-read here under the same rule, so
            // bytes are never counted as freed while the output stays.
            let going_output = match (remove_output, output) {
                (true, Some(out)) => {
                    let out_dir = self.shard_dir(&out)?;
                    let out_name = format!("{}-d", to_hex(&out));
                    match fsutil::stat_at(&out_dir, OsStr::new(&out_name)) {
                        Ok(out_st) => {
                            let corrupt = matches!(how, Removing::Repair(_));
                            if !corrupt && super::used_after(out_st.st_mtime, used_before) {
                                return Ok(Removal::Skipped(
                                    "its output was used since the eviction was planned".into(),
                                ));
                            }
                            Some((out, out_dir, out_name, out_st))
                        }
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            let mut freed = 0;
            if fsutil::unlink_at(&dir, OsStr::new(&name))? {
                freed += fsutil::disk_usage_stat(&st);
            }
            if id.role == Role::Output {
                self.outputs.lock().unwrap().orphans.remove(&id.hash);
            }
            if let (Role::Action, Some(out), None) = (id.role, output, &going_output) {
                // The output stays for the others naming it: if this action carried its
                // size, the next of them to be looked at takes it over (the engine
                // re-reads one right after the eviction).
                if let Some(carrier) = self.outputs.lock().unwrap().shared.get_mut(&out) {
                    if *carrier == Some(id.hash) {
                        *carrier = None;
                    }
                }
            }
            if let Some((out, out_dir, out_name, out_st)) = going_output {
                if fsutil::is_file_type(&out_st, libc::S_IFDIR) {
                    // Go ≥ 1.24 executable outputs: removed through directory fds,
                    // never a path, never through a symlink; counted.
                    freed += fsutil::remove_tree_at(&*out_dir, OsStr::new(&out_name))?;
                } else if fsutil::unlink_at(&out_dir, OsStr::new(&out_name))? {
                    freed += fsutil::disk_usage_stat(&out_st);
                }
                self.verified.lock().unwrap().remove(&fingerprint(&out));
                let mut book = self.outputs.lock().unwrap();
                book.shared.remove(&out);
                book.shared_aux.remove(&fingerprint(&out));
                book.orphans.remove(&out);
            }
            Ok(Removal::Removed { disk_bytes: freed })
        };
        attempt().unwrap_or_else(|e| Removal::Failed(format!("cannot remove: {e}")))
    }

    fn part_of(&self, id: &GoId) -> Option<u64> {
        (id.role == Role::Output).then(|| fingerprint(&id.hash))
    }

    fn name_of(&self, id: &GoId) -> String {
        id.file_name()
    }

    fn path_of(&self, id: &GoId) -> String {
        format!("{:02x}/{}", id.hash[0], id.file_name())
    }

    fn parse_name(&self, name: &str) -> Option<GoId> {
        let name = name.rsplit('/').next()?;
        parse_file_name(name.as_bytes())
    }

    fn last_use_signal(&self) -> &'static str {
        "mtime of each action file: go sets it to now on every hit when it is at least an hour old (exact to one hour)"
    }

    fn in_use(&self) -> Option<super::InUse> {
        let guard = (self.in_use)(&self.root, &self.guard.read().unwrap());
        let leases = fsutil::open_root(&self.root)
            .map(|root| self.leases.live(&root))
            .unwrap_or_default();
        leases::with_leases(guard, &leases)
    }

    fn leases(&self) -> Vec<String> {
        let Ok(root) = fsutil::open_root(&self.root) else {
            return Vec::new();
        };
        self.leases
            .live(&root)
            .iter()
            .map(|l| {
                format!(
                    "cachewarden cacheprog (pid {}) leases {} entries",
                    l.pid,
                    l.actions.len()
                )
            })
            .collect()
    }

    fn holds(&self, in_use: &super::InUse, id: &GoId, last_use: UnixTime) -> bool {
        last_use >= in_use.since
            || (!in_use.keys.is_empty() && in_use.keys.contains(&to_hex(&id.hash)))
    }

    fn repair_waits_for_min_age(&self) -> bool {
        false // the running-go guard protects a repair (go writes entries in place)
    }

    fn configure(&self, settings: &KindSettings) {
        *self.guard.write().unwrap() = settings.guard_processes.clone();
    }
}

#[cfg(test)]
pub mod tests;
