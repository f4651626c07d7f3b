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
//! just before unlinking, skipping anything used since the plan was made.
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
use nix::sys::stat::{FileStat, Mode};
use sha2::{Digest, Sha256};

use super::{
    EntryMeta, Finding, InUse, Kind, KindSettings, Known, Removal, Removing, ScanResult, Stamp, WatchDir,
};
use crate::golang::dirhash::to_hex;
use crate::golang::procs;
use crate::{fsutil, parallel, UnixTime};

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

const ACTION_LEN: usize = 175;
const README_START: &[u8] =
    b"This directory holds cached build artifacts from the Go build system.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `<id>-a` and the output it names.
    Action,
    /// `<id>-d` named by no action.
    Output,
}

/// A 32-byte hash and whether it names an action or an orphan output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoId {
    pub hash: [u8; 32],
    pub role: Role,
}

impl GoId {
    /// The file name as a NUL-terminated C string, without allocating.
    fn c_name(&self) -> [u8; 67] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut name = [0u8; 67];
        for (i, b) in self.hash.iter().enumerate() {
            name[2 * i] = HEX[(b >> 4) as usize];
            name[2 * i + 1] = HEX[(b & 15) as usize];
        }
        name[64] = b'-';
        name[65] = match self.role {
            Role::Action => b'a',
            Role::Output => b'd',
        };
        name
    }

    fn file_name(&self) -> String {
        String::from_utf8_lossy(&self.c_name()[..66]).into_owned()
    }
}

/// A parsed `-a` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub action: [u8; 32],
    pub output: [u8; 32],
    pub size: u64,
    pub time_ns: i64,
}

/// Parses an action file as `putIndexEntry` writes it; the error is a problem code.
pub fn parse_action(bytes: &[u8]) -> Result<Action, &'static str> {
    if bytes.len() < ACTION_LEN {
        return Err("action-truncated");
    }
    if bytes.len() > ACTION_LEN || !bytes.starts_with(b"v1 ") || bytes[ACTION_LEN - 1] != b'\n' {
        return Err("action-garbled");
    }
    let text = std::str::from_utf8(&bytes[..ACTION_LEN - 1]).map_err(|_| "action-garbled")?;
    // "v1" SP 64 SP 64 SP 20 SP 20: fixed columns.
    let field = |from: usize, to: usize| &text[from..to];
    if [2, 67, 132, 153].iter().any(|&i| bytes[i] != b' ') {
        return Err("action-garbled");
    }
    let action = from_hex(field(3, 67).as_bytes()).ok_or("action-garbled")?;
    let output = from_hex(field(68, 132).as_bytes()).ok_or("action-garbled")?;
    let size = field(133, 153)
        .trim_start()
        .parse::<u64>()
        .map_err(|_| "action-garbled")?;
    let time_ns = field(154, 174)
        .trim_start()
        .parse::<i64>()
        .map_err(|_| "action-garbled")?;
    Ok(Action {
        action,
        output,
        size,
        time_ns,
    })
}

/// Formats an action file exactly as go does (for tests and the benchmark generator).
pub fn format_action(a: &Action) -> String {
    format!(
        "v1 {} {} {:20} {:20}\n",
        to_hex(&a.action),
        to_hex(&a.output),
        a.size,
        a.time_ns
    )
}

/// Each byte's value as a lowercase hex digit, or 0xff.
const HEX_DIGITS: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Decodes 64 lowercase hex digits (go writes ids that way), branch-free: a scan
/// decodes every file name in the cache.
pub fn from_hex(digits: &[u8]) -> Option<[u8; 32]> {
    let digits: &[u8; 64] = digits.try_into().ok()?;
    let (mut out, mut invalid) = ([0u8; 32], 0u8);
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (HEX_DIGITS[pair[0] as usize], HEX_DIGITS[pair[1] as usize]);
        invalid |= high | low;
        *byte = high << 4 | low;
    }
    (invalid & 0xf0 == 0).then_some(out)
}

/// The output fingerprint entries carry in `aux`: enough to tell whether a surviving
/// entry names an output (a collision only keeps an output a little longer).
pub fn fingerprint(hash: &[u8; 32]) -> u64 {
    u64::from_le_bytes(hash[..8].try_into().unwrap())
}

/// Parses `<64 hex>-a` / `<64 hex>-d`.
fn parse_file_name(name: &[u8]) -> Option<GoId> {
    if name.len() != 66 || name[64] != b'-' {
        return None;
    }
    let hash = from_hex(&name[..64])?;
    let role = match name[65] {
        b'a' => Role::Action,
        b'd' => Role::Output,
        _ => return None,
    };
    Some(GoId { hash, role })
}

/// Outputs that are not simply "one action, one output": kept from scans so a watch
/// event on one file can be accounted like a scan would (both sets are small).
#[derive(Default)]
struct OutputBook {
    /// Outputs named by several actions, with the action whose entry carries the
    /// output's size (the last one used: eviction takes it last, so the output goes
    /// with it); the others carry only their own. `None`: its carrier was removed while
    /// others still name it — the next of them to be looked at takes it over.
    shared: HashMap<[u8; 32], Option<[u8; 32]>>,
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
}

/// The in-use horizon for the GOCACHE at `root`, if a guarded process may be using it.
fn in_use_since(root: &Path, guard: &[String]) -> Option<InUse> {
    procs::oldest_go_using(root, procs::GoCache::Build, guard).map(|(started, pid, name)| InUse {
        since: started - procs::MTIME_INTERVAL_SECS - procs::MARGIN_SECS,
        by: format!(
            "{name} (pid {pid}) running since {}",
            crate::units::local_time(started)
        ),
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
    fn shard_dir(&self, hash: &[u8; 32]) -> io::Result<Arc<OwnedFd>> {
        let i = hash[0] as usize;
        if let Some(fd) = &self.shard_fds.lock().unwrap()[i] {
            return Ok(fd.clone());
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

    /// Hashes an output file, comparing with its name.
    fn output_hash_ok(&self, dir: &OwnedFd, id: &[u8; 32]) -> io::Result<bool> {
        let name = format!("{}-d", to_hex(id));
        // Non-blocking, type checked: a FIFO swapped in never blocks the sweep.
        let mut file = fsutil::open_file_at(dir, Path::new(&name))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finalize().as_slice() == id)
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
        };
        for (&s, shard) in shards.iter().zip(per_shard) {
            result.stamps.push((s as usize, shard.stamp));
            result.errors.extend(shard.errors);
            result.ignored_files += shard.ignored;
            result.entries.extend(shard.files);
        }
        result
    }

    fn stat_output(&self, output: &[u8; 32]) -> Option<FileStat> {
        let dir = self.shard_dir(output).ok()?;
        fsutil::stat_at(&dir, OsStr::new(&format!("{}-d", to_hex(output)))).ok()
    }
}

/// An action file's content, read into a buffer one byte longer than a valid one (so
/// an overlong file shows), on the stack: pairing reads millions of them.
struct ActionFile {
    buf: [u8; ACTION_LEN + 1],
    len: usize,
}

impl std::ops::Deref for ActionFile {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Reads an action file below `dir` with one `read`: a regular file never returns less
/// than asked before its end, and go writes an action with one `write` (`putIndexEntry`).
fn read_action(dir: &OwnedFd, action: &GoId) -> io::Result<ActionFile> {
    let name = action.c_name();
    let name = std::ffi::CStr::from_bytes_with_nul(&name).expect("one NUL, at the end");
    // O_NONBLOCK: a FIFO or device swapped in reads as nothing (a malformed action)
    // instead of blocking; a regular file reads the same either way.
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_CLOEXEC
        | OFlag::O_NOATIME
        | OFlag::O_NONBLOCK;
    let fd = match nix::fcntl::openat(dir, name, flags, Mode::empty()) {
        Err(nix::errno::Errno::EPERM) => {
            nix::fcntl::openat(dir, name, flags - OFlag::O_NOATIME, Mode::empty())?
        }
        other => other?,
    };
    let mut file = ActionFile {
        buf: [0; ACTION_LEN + 1],
        len: 0,
    };
    file.len = nix::unistd::read(&fd, &mut file.buf)?;
    Ok(file)
}

/// What one shard directory holds, and its mtime before it was listed.
struct ShardWalk {
    stamp: Option<Stamp>,
    files: Vec<(GoId, EntryMeta)>,
    errors: Vec<String>,
    ignored: u64,
}

/// `getdents` and one `fstatat` per name, relative to the shard's directory fd: no path
/// resolution and no reads per file, which is what lets the walk beat `du`.
fn walk_shard(root: &Path, shard: u8) -> ShardWalk {
    let shard = format!("{shard:02x}");
    let mut out = ShardWalk {
        stamp: None,
        files: Vec::new(),
        errors: Vec::new(),
        ignored: 0,
    };
    let listing = fsutil::open_dir_beneath(root, Path::new(&shard)).and_then(|dir| {
        // The stamp is taken before listing: a change made during the listing moves
        // the directory's mtime past it, so a restart rescans this shard.
        out.stamp = nix::sys::stat::fstat(&dir).ok().map(|st| Stamp::of(&st));
        let listing = nix::dir::Dir::from_fd(dir.try_clone()?)?;
        Ok((dir, listing))
    });
    let (dir, mut listing) = match listing {
        Ok(both) => both,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.errors.push(format!("{shard}: {e}"));
            return out;
        }
    };
    // Names first, then `fstatat` in inode order: on a cold cache the inodes are then
    // read from the inode table front to back instead of at random.
    let mut names: Vec<(u64, GoId)> = Vec::new();
    for item in listing.iter() {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                out.errors
                    .push(format!("{shard}: reading the directory: {e}"));
                break;
            }
        };
        let name = item.file_name().to_bytes();
        match parse_file_name(name) {
            Some(id) => names.push((item.ino(), id)),
            None => out.ignored += u64::from(!matches!(name, b"." | b"..")),
        }
    }
    names.sort_unstable_by_key(|(ino, _)| *ino);
    out.files.reserve_exact(names.len());
    for (_, id) in names {
        let name = id.c_name();
        let name = std::ffi::CStr::from_bytes_with_nul(&name).expect("one NUL, at the end");
        let st = match nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        {
            Ok(st) => st,
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(e) => {
                out.errors
                    .push(format!("{shard}/{}: {e}", name.to_string_lossy()));
                continue;
            }
        };
        let wanted = match id.role {
            Role::Action => fsutil::is_file_type(&st, libc::S_IFREG),
            // Go ≥ 1.24 may store an executable output as a directory; it is an output.
            Role::Output => {
                fsutil::is_file_type(&st, libc::S_IFREG) || fsutil::is_file_type(&st, libc::S_IFDIR)
            }
        };
        if !wanted {
            out.ignored += 1;
            continue;
        }
        let meta = EntryMeta {
            disk_bytes: fsutil::disk_usage_stat(&st),
            apparent_bytes: st.st_size as u64,
            last_use: st.st_mtime,
            aux: match id.role {
                Role::Action => 0,
                Role::Output => fingerprint(&id.hash),
            },
        };
        out.files.push((id, meta));
    }
    // Sorted here, on many threads, so pairing finds outputs by binary search.
    out.files.sort_unstable_by_key(|(id, _)| *id);
    out
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
                Some(0) => Names::Nothing,
                Some(aux) => by_fingerprint(aux),
                None => Names::Unread,
            })
            .collect();

        // Read what is not known, in parallel: one openat+read+close per action.
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
            return vec![]; // Go ≥ 1.24 executable directories: no hash to compare.
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
            if st.st_mtime > used_before {
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
                            if !corrupt && out_st.st_mtime > used_before {
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
                book.orphans.remove(&out);
            }
            Ok(Removal::Removed { disk_bytes: freed })
        };
        attempt().unwrap_or_else(|e| Removal::Failed(format!("cannot remove: {e}")))
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
        (self.in_use)(&self.root, &self.guard.read().unwrap())
    }

    fn repair_waits_for_min_age(&self) -> bool {
        false // the running-go guard protects a repair (go writes entries in place)
    }

    fn configure(&self, settings: &KindSettings) {
        *self.guard.write().unwrap() = settings.guard_processes.clone();
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::kinds::Survivors;

    /// Writes one action and its output the way go's `put` does; returns the action id.
    pub fn put(root: &Path, seed: u32, content: &[u8], mtime: i64) -> ([u8; 32], [u8; 32]) {
        let action: [u8; 32] = Sha256::digest(seed.to_le_bytes()).into();
        let output: [u8; 32] = Sha256::digest(content).into();
        let write = |hash: &[u8; 32], suffix: &str, bytes: &[u8]| {
            let dir = root.join(format!("{:02x}", hash[0]));
            std::fs::create_dir_all(&dir).unwrap();
            let p = dir.join(format!("{}-{suffix}", to_hex(hash)));
            std::fs::write(&p, bytes).unwrap();
            filetime::set_file_mtime(&p, filetime::FileTime::from_unix_time(mtime, 0)).unwrap();
        };
        write(&output, "d", content);
        let a = Action {
            action,
            output,
            size: content.len() as u64,
            time_ns: mtime * 1_000_000_000,
        };
        write(&action, "a", format_action(&a).as_bytes());
        (action, output)
    }

    fn kind(root: &Path) -> GoBuildKind {
        let mut k = GoBuildKind::new(root.to_path_buf());
        k.in_use = |_, _| None;
        k
    }

    #[test]
    fn hex_ids_decode_only_from_lowercase_digits() {
        let id: [u8; 32] = std::array::from_fn(|i| (i * 37 + 5) as u8);
        assert_eq!(from_hex(to_hex(&id).as_bytes()), Some(id));
        assert_eq!(from_hex(to_hex(&id).to_uppercase().as_bytes()), None);
        assert_eq!(from_hex(&[b'g'; 64]), None);
        assert_eq!(from_hex(&[b'0'; 63]), None);
        let mut name = to_hex(&id).into_bytes();
        name.extend_from_slice(b"-d");
        assert_eq!(
            parse_file_name(&name).map(|g| (g.hash, g.role)),
            Some((id, Role::Output))
        );
        name[65] = b'x';
        assert!(parse_file_name(&name).is_none());
    }

    #[test]
    fn action_files_round_trip_and_reject_damage() {
        let a = Action {
            action: [1; 32],
            output: [2; 32],
            size: 12345,
            time_ns: 1_700_000_000_123_456_789,
        };
        let text = format_action(&a);
        assert_eq!(text.len(), ACTION_LEN);
        assert_eq!(parse_action(text.as_bytes()), Ok(a));
        assert_eq!(
            parse_action(&text.as_bytes()[..100]),
            Err("action-truncated")
        );
        let mut garbled = text.clone().into_bytes();
        garbled[10] = b'x';
        assert_eq!(parse_action(&garbled), Err("action-garbled"));
        assert_eq!(
            parse_action(format!("{text}x").as_bytes()),
            Err("action-garbled")
        );
    }

    #[test]
    fn scan_pairs_actions_with_outputs_and_counts_shared_ones_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = crate::now() - 86400;
        let (a1, _) = put(root, 1, &[5u8; 10_000], old);
        let (a2, shared) = put(root, 2, &[9u8; 8192], old);
        let (a3, _) = put(root, 3, &[9u8; 8192], old); // same output as a2
                                                       // An orphan output, an action whose output is gone, and a young orphan.
        let (a4, o4) = put(root, 4, b"orphan", old);
        std::fs::remove_file(root.join(format!("{:02x}/{}-a", a4[0], to_hex(&a4)))).unwrap();
        let (a5, o5) = put(root, 5, b"dangling", old);
        std::fs::remove_file(root.join(format!("{:02x}/{}-d", o5[0], to_hex(&o5)))).unwrap();
        let (a6, _) = put(root, 6, b"young", crate::now());
        std::fs::remove_file(root.join(format!("{:02x}/{}-a", a6[0], to_hex(&a6)))).unwrap();
        std::fs::write(root.join("README"), README_START).unwrap();

        let k = kind(root);
        let walked = k.scan();
        let walked_bytes: u64 = walked.entries.iter().map(|(_, m)| m.disk_bytes).sum();
        let found = k.complete(walked, &|asked| vec![None; asked.len()], &|_| false);
        let get = |hash: [u8; 32], role| {
            found
                .entries
                .iter()
                .find(|(id, _)| *id == GoId { hash, role })
                .map(|(_, m)| *m)
        };
        let m1 = get(a1, Role::Action).unwrap();
        assert_eq!(m1.apparent_bytes, 175 + 10_000);
        let (m2, m3) = (
            get(a2, Role::Action).unwrap(),
            get(a3, Role::Action).unwrap(),
        );
        assert_eq!(
            m2.apparent_bytes + m3.apparent_bytes,
            2 * 175 + 8192,
            "a shared output counts once"
        );
        assert_eq!(m2.aux, fingerprint(&shared));
        assert!(
            get(o4, Role::Output).is_some(),
            "old orphan outputs are entries"
        );
        assert_eq!(
            get(a5, Role::Action).unwrap().apparent_bytes,
            175,
            "dangling actions are entries"
        );
        assert_eq!(
            found.entries.len(),
            5,
            "young orphans are outputs being put, not entries"
        );
        let total: u64 = found.entries.iter().map(|(_, m)| m.disk_bytes).sum();
        let du = String::from_utf8(
            std::process::Command::new("du")
                .args(["-s", "-B1"])
                .arg(root)
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let du: u64 = du.split_whitespace().next().unwrap().parse().unwrap();
        // du also counts the directories, README and the young orphan.
        assert!(total < du, "{total} vs {du}");
        assert!(
            walked_bytes > total,
            "the walk counts every file, the young orphan too"
        );

        // A rescan trusts what the index knows for an action with the same mtime (it
        // is not read again: damage that kept the mtime goes unseen until a verify),
        // and reads one whose mtime moved (go rewrote it).
        let known: HashMap<GoId, EntryMeta> = found.entries.iter().cloned().collect();
        let known = |asked: &[(GoId, EntryMeta)]| {
            asked
                .iter()
                .map(|(id, m)| Some(known.get(id).filter(|k| k.last_use == m.last_use)?.aux))
                .collect()
        };
        let a1_file = root.join(format!("{:02x}/{}-a", a1[0], to_hex(&a1)));
        std::fs::write(&a1_file, [b'x'; ACTION_LEN]).unwrap();
        filetime::set_file_mtime(&a1_file, filetime::FileTime::from_unix_time(old, 0)).unwrap();
        let again = k.complete(k.scan(), &known, &|_| false);
        let mut before = found.entries.clone();
        let mut after = again.entries.clone();
        before.sort_by_key(|(id, _)| *id);
        after.sort_by_key(|(id, _)| *id);
        assert_eq!(before, after, "unchanged mtimes: nothing re-read");
        filetime::set_file_mtime(&a1_file, filetime::FileTime::from_unix_time(old + 60, 0))
            .unwrap();
        let reread = k.complete(k.scan(), &known, &|_| false);
        let m1 = reread
            .entries
            .iter()
            .find(|(id, _)| id.hash == a1 && id.role == Role::Action)
            .unwrap()
            .1;
        assert_eq!(
            (m1.aux, m1.apparent_bytes),
            (0, 175),
            "a moved mtime is read again"
        );
    }

    #[test]
    fn removal_rechecks_running_go_and_removes_directory_outputs_fd_relatively() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = crate::now() - 86400;
        let (a, out) = put(root, 1, b"an executable, later a directory", old);
        let action = GoId {
            hash: a,
            role: Role::Action,
        };
        // A go command started since the plan: the removal defers.
        let mut k = kind(root);
        k.in_use = |_, _| {
            Some(crate::kinds::InUse {
                since: 0,
                by: "go (pid 1) running since then".into(),
            })
        };
        let r = k.remove(&action, old, Removing::Evict(&Survivors::NONE));
        assert!(
            matches!(&r, Removal::InUse(why) if why.contains("pid 1")),
            "{r:?}"
        );

        // Go 1.24's directory outputs: removed through fds, a symlink inside never
        // followed, and their bytes counted.
        let k = kind(root);
        let out_path = root.join(format!("{:02x}/{}-d", out[0], to_hex(&out)));
        std::fs::remove_file(&out_path).unwrap();
        std::fs::create_dir(&out_path).unwrap();
        std::fs::write(out_path.join("prog"), vec![1u8; 20_000]).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), b"keep").unwrap();
        std::os::unix::fs::symlink(outside.path(), out_path.join("link")).unwrap();
        let t = filetime::FileTime::from_unix_time(old, 0);
        filetime::set_file_mtime(&out_path, t).unwrap();
        let r = k.remove(&action, old, Removing::Evict(&Survivors::NONE));
        assert!(
            matches!(r, Removal::Removed { disk_bytes } if disk_bytes >= 20_000),
            "{r:?}"
        );
        assert!(!out_path.exists());
        assert_eq!(
            std::fs::read(outside.path().join("precious")).unwrap(),
            b"keep"
        );
    }

    #[test]
    fn outputs_newer_than_their_actions_go_with_them_and_the_index_matches_the_disk() {
        // Go bumps -a and -d separately, each only when over an hour old: an output
        // may be newer than its action. At 5bc8f0a such outputs stayed on disk while
        // the index counted them as freed.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("gocache");
        let old = crate::now() - 10 * 86400;
        for seed in 0..40u32 {
            let (_, out) = put(&root, seed, &vec![seed as u8; 40_000], old + seed as i64);
            let d = root.join(format!("{:02x}/{}-d", out[0], to_hex(&out)));
            let t = filetime::FileTime::from_unix_time(old + seed as i64 + 1, 0);
            filetime::set_file_mtime(&d, t).unwrap();
        }
        for b in 0..=255u8 {
            std::fs::create_dir_all(root.join(format!("{b:02x}"))).unwrap();
        }
        let text = format!(
            "[[cache]]\nname = \"gb\"\nkind = \"go-build\"\npath = \"{}\"\nmax_size = \"1 MiB\"\n",
            root.display()
        );
        let cache =
            crate::cache::CacheOf::open(kind(&root), crate::config::first_cache_for_test(&text));
        cache.scan(crate::now());
        let report = cache.evict(false, crate::now());
        assert!(report.removed_entries > 0, "{report:?}");
        assert!(report.unmet.is_empty(), "{report:?}");
        let indexed = cache.status(crate::now()).disk_bytes;
        assert!(indexed <= 1 << 20);
        assert_eq!(report.bytes_after, indexed);
        let fresh =
            crate::cache::CacheOf::open(kind(&root), crate::config::first_cache_for_test(&text));
        assert_eq!(
            fresh.scan(crate::now()).disk_bytes,
            indexed,
            "the index equals the disk"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Garbage in an action file is a problem code, never a panic; what parses
        /// round-trips.
        #[test]
        fn action_files_of_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(a) = parse_action(&bytes) {
                proptest::prop_assert_eq!(parse_action(format_action(&a).as_bytes()), Ok(a));
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Whatever the pairings (outputs shared by several actions), the mtimes (an
        /// output newer or older than its action) and the limit: after an eviction the
        /// index's total is what a fresh scan of the disk finds.
        #[test]
        fn after_an_eviction_the_index_total_equals_a_fresh_scan(
            pairs in proptest::collection::vec((0u8..6, 1i64..40, -3i64..4), 1..24),
            limit_kib in 0u64..200,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("gocache");
            for b in 0..=255u8 {
                std::fs::create_dir_all(root.join(format!("{b:02x}"))).unwrap();
            }
            let base = crate::now() - 100 * 86400;
            for (seed, (content, action_day, skew_h)) in pairs.iter().enumerate() {
                let body = vec![*content; 5000 * (*content as usize + 1)];
                let t = base + action_day * 86400;
                let (_, out) = put(&root, seed as u32, &body, t);
                let d = root.join(format!("{:02x}/{}-d", out[0], to_hex(&out)));
                let ft = filetime::FileTime::from_unix_time(t + skew_h * 3600, 0);
                filetime::set_file_mtime(&d, ft).unwrap();
            }
            let text = format!(
                "[[cache]]\nname = \"gb\"\nkind = \"go-build\"\npath = \"{}\"\nmax_size = \"{} KiB\"\n",
                root.display(),
                limit_kib
            );
            let config = crate::config::first_cache_for_test(&text);
            let cache = crate::cache::CacheOf::open(kind(&root), config.clone());
            cache.scan(crate::now());
            let report = cache.evict(false, crate::now());
            let indexed = cache.status(crate::now()).disk_bytes;
            proptest::prop_assert_eq!(report.bytes_after, indexed);
            let fresh = crate::cache::CacheOf::open(kind(&root), config);
            proptest::prop_assert_eq!(fresh.scan(crate::now()).disk_bytes, indexed);
        }
    }

    #[test]
    fn eviction_keeps_outputs_that_survivors_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = crate::now() - 86400;
        let (a2, shared) = put(root, 2, &[9u8; 8192], old);
        let (a3, _) = put(root, 3, &[9u8; 8192], old);
        let k = kind(root);
        let out_path = root.join(format!("{:02x}/{}-d", shared[0], to_hex(&shared)));
        let survivors = Survivors::new(vec![fingerprint(&shared)]);
        let r = k.remove(
            &GoId {
                hash: a2,
                role: Role::Action,
            },
            old,
            Removing::Evict(&survivors),
        );
        assert!(matches!(r, Removal::Removed { .. }));
        assert!(out_path.exists(), "a3 still names the output");
        let r = k.remove(
            &GoId {
                hash: a3,
                role: Role::Action,
            },
            old,
            Removing::Evict(&Survivors::new(vec![])),
        );
        assert!(matches!(r, Removal::Removed { disk_bytes } if disk_bytes >= 8192));
        assert!(!out_path.exists(), "the last action takes its output along");
        // Used since planned: skipped.
        let (a7, _) = put(root, 7, b"x", old + 100);
        let r = k.remove(
            &GoId {
                hash: a7,
                role: Role::Action,
            },
            old,
            Removing::Evict(&survivors),
        );
        assert!(matches!(r, Removal::Skipped(_)));
    }

    #[test]
    fn verify_names_each_kind_of_damage() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = crate::now() - 86400;
        let k = kind(root);
        let check = |hash: [u8; 32]| {
            let id = GoId {
                hash,
                role: Role::Action,
            };
            k.verify(&id)
                .into_iter()
                .map(|f| f.problem)
                .collect::<Vec<_>>()
        };
        let (healthy, _) = put(root, 1, b"healthy output", old);
        assert!(check(healthy).is_empty());

        let (flipped, out) = put(root, 2, b"flip a byte here", old);
        let p = root.join(format!("{:02x}/{}-d", out[0], to_hex(&out)));
        std::fs::write(&p, b"flip a bytE here").unwrap();
        assert_eq!(check(flipped), ["output-hash-mismatch"]);

        let (resized, out) = put(root, 3, b"resized", old);
        std::fs::write(
            root.join(format!("{:02x}/{}-d", out[0], to_hex(&out))),
            b"resized!",
        )
        .unwrap();
        assert_eq!(check(resized), ["output-size-mismatch"]);

        let (missing, out) = put(root, 4, b"missing", old);
        std::fs::remove_file(root.join(format!("{:02x}/{}-d", out[0], to_hex(&out)))).unwrap();
        assert_eq!(check(missing), ["output-missing"]);

        let (truncated, _) = put(root, 5, b"truncated", old);
        let ap = root.join(format!("{:02x}/{}-a", truncated[0], to_hex(&truncated)));
        let text = std::fs::read(&ap).unwrap();
        std::fs::write(&ap, &text[..90]).unwrap();
        assert_eq!(check(truncated), ["action-truncated"]);

        let (garbled, _) = put(root, 6, b"garbled", old);
        let ap = root.join(format!("{:02x}/{}-a", garbled[0], to_hex(&garbled)));
        let mut text = std::fs::read(&ap).unwrap();
        text[0] = b'x';
        std::fs::write(&ap, &text).unwrap();
        assert_eq!(check(garbled), ["action-garbled"]);

        // Incremental: a verified output is not re-hashed until its mtime or size changes.
        let (again, out) = put(root, 7, b"verified once", old);
        assert!(check(again).is_empty());
        let p = root.join(format!("{:02x}/{}-d", out[0], to_hex(&out)));
        std::fs::write(&p, b"verified ONCE").unwrap();
        filetime::set_file_mtime(&p, filetime::FileTime::from_unix_time(old, 0)).unwrap();
        assert!(check(again).is_empty(), "same mtime and size: trusted");
        filetime::set_file_mtime(&p, filetime::FileTime::from_unix_time(old + 1, 0)).unwrap();
        assert_eq!(check(again), ["output-hash-mismatch"]);
    }

    fn cache_at(root: &Path) -> std::sync::Arc<dyn crate::cache::Cache> {
        let text = format!(
            "[[cache]]\nname = \"gb\"\nkind = \"go-build\"\npath = \"{}\"\n",
            root.display()
        );
        let config = crate::config::first_cache_for_test(&text);
        crate::cache::CacheOf::open(kind(root), config)
    }

    #[test]
    fn a_damaged_planted_or_blocking_snapshot_means_a_full_scan() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("gocache");
        for seed in 0..50 {
            put(
                &root,
                seed,
                format!("output {seed}").as_bytes(),
                crate::now() - 86400,
            );
        }
        for b in 0..=255u8 {
            std::fs::create_dir_all(root.join(format!("{b:02x}"))).unwrap();
        }
        let snap = dir.path().join("gb.snapshot");
        let first = cache_at(&root);
        let scanned = first.scan(crate::now());
        assert!(first.save_snapshot(&snap).unwrap());
        // Saving twice leaves one file: temp files are renamed into place, and one a
        // killed save left behind is cleaned up.
        std::fs::write(dir.path().join(".gb.snapshot.killed123.tmp"), b"half").unwrap();
        assert!(first.save_snapshot(&snap).unwrap());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "gocache")
            .collect();
        assert_eq!(names, ["gb.snapshot"]);
        assert!(cache_at(&root).restore(&snap, crate::now()).is_some());

        // One flipped bit in an entry's size (it made a 2 TiB entry and an eviction
        // of most of a cache at 5bc8f0a): the checksum refuses the file.
        let mut bytes = std::fs::read(&snap).unwrap();
        let size_at = bytes.len() - 36 - 30; // inside the last entry's fields
        bytes[size_at] ^= 0x80;
        std::fs::write(&snap, &bytes).unwrap();
        assert!(cache_at(&root).restore(&snap, crate::now()).is_none());

        // A FIFO in its place is refused at once, not read for ever.
        std::fs::remove_file(&snap).unwrap();
        nix::unistd::mkfifo(&snap, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(cache_at(&root).restore(&snap, crate::now()).is_none());
        std::fs::remove_file(&snap).unwrap();

        // A symlink to a valid snapshot elsewhere is not followed.
        let elsewhere = dir.path().join("elsewhere.snapshot");
        assert!(first.save_snapshot(&elsewhere).unwrap());
        std::os::unix::fs::symlink(&elsewhere, &snap).unwrap();
        assert!(cache_at(&root).restore(&snap, crate::now()).is_none());

        // A full scan after any of these finds the truth.
        let again = cache_at(&root);
        assert_eq!(again.scan(crate::now()).disk_bytes, scanned.disk_bytes);
    }

    #[test]
    fn a_snapshot_restores_the_index_rescanning_only_changed_shards() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("gocache");
        let old = crate::now() - 86400;
        for seed in 0..300 {
            put(&root, seed, format!("output {seed}").as_bytes(), old);
        }
        for b in 0..=255u8 {
            std::fs::create_dir_all(root.join(format!("{b:02x}"))).unwrap();
        }
        let snap = dir.path().join("gb.snapshot");
        let first = cache_at(&root);
        let scanned = first.scan(crate::now());
        assert_eq!(scanned.entries, 300);
        assert!(first.save_snapshot(&snap).unwrap());

        // Unchanged cache: nothing rescanned, same index.
        let second = cache_at(&root);
        let restored = second.restore(&snap, crate::now()).unwrap();
        assert_eq!(restored.partitions_rescanned, Some(0));
        assert_eq!(
            (restored.entries, restored.disk_bytes),
            (scanned.entries, scanned.disk_bytes)
        );
        let oldest = |c: &std::sync::Arc<dyn crate::cache::Cache>| {
            c.entries(crate::report::EntryOrder::Oldest, 1000, 0)
        };
        let names = |v: Vec<crate::report::EntryView>| {
            v.into_iter()
                .map(|e| e.entry)
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(names(oldest(&first)), names(oldest(&second)));

        // One new entry and one removed: only their shards are rescanned.
        let (added, _) = put(&root, 1000, b"new output", old);
        let (gone, _) = put(&root, 1001, b"gone soon", old);
        let third = cache_at(&root);
        third.scan(crate::now());
        third.save_snapshot(&snap).unwrap();
        std::fs::remove_file(root.join(format!("{:02x}/{}-a", gone[0], to_hex(&gone)))).unwrap();
        let (added2, _) = put(&root, 1002, b"another", old);
        let fourth = cache_at(&root);
        let restored = fourth.restore(&snap, crate::now()).unwrap();
        assert!(restored.partitions_rescanned.unwrap() <= 4, "{restored:?}");
        let now_names = names(oldest(&fourth));
        assert!(now_names.contains(
            &GoId {
                hash: added,
                role: Role::Action
            }
            .file_name()
        ));
        assert!(now_names.contains(
            &GoId {
                hash: added2,
                role: Role::Action
            }
            .file_name()
        ));
        assert!(!now_names.contains(
            &GoId {
                hash: gone,
                role: Role::Action
            }
            .file_name()
        ));
        let full = cache_at(&root);
        let truth = full.scan(crate::now());
        assert_eq!(restored.entries, truth.entries);
        assert_eq!(names(oldest(&full)), now_names);

        // A damaged snapshot is never trusted.
        let bytes = std::fs::read(&snap).unwrap();
        std::fs::write(&snap, &bytes[..bytes.len() - 10]).unwrap();
        assert!(cache_at(&root).restore(&snap, crate::now()).is_none());
        std::fs::write(&snap, b"garbage").unwrap();
        assert!(cache_at(&root).restore(&snap, crate::now()).is_none());
    }

    /// Watch events (a cache hit bumps an action's mtime; a chmod touches an output)
    /// must account like a scan: a shared output counted once, no phantom orphans.
    #[test]
    fn events_keep_shared_outputs_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("gocache");
        let old = crate::now() - 86400;
        let big = vec![3u8; 1 << 20];
        let mut actions = Vec::new();
        for seed in 0..4 {
            let (a, out) = put(&root, seed, &big, old);
            actions.push(a);
            let _ = out;
        }
        let (_, orphan) = put(&root, 99, b"orphan", old);
        let (lonely, _) = put(&root, 98, b"x", old);
        let orphan_of = |a: [u8; 32]| root.join(format!("{:02x}/{}-a", a[0], to_hex(&a)));
        std::fs::remove_file(orphan_of(Sha256::digest(99u32.to_le_bytes()).into())).unwrap();
        let _ = lonely;
        std::fs::write(root.join("README"), README_START).unwrap();
        let cache = cache_at(&root);
        let scanned = cache.scan(crate::now());
        let rel = |hash: &[u8; 32], suffix: &str| {
            PathBuf::from(format!("{:02x}/{}-{suffix}", hash[0], to_hex(hash)))
        };
        let mut touched: Vec<PathBuf> = actions.iter().map(|a| rel(a, "a")).collect();
        let shared: [u8; 32] = Sha256::digest(&big).into();
        touched.push(rel(&shared, "d"));
        touched.push(rel(&orphan, "d"));
        cache.apply_changes(&touched);
        let status = cache.status(crate::now());
        assert_eq!(status.entries, scanned.entries);
        assert_eq!(status.disk_bytes, scanned.disk_bytes);
        assert!(
            status.disk_bytes < 2 << 20,
            "the 1 MiB output counts once: {}",
            status.disk_bytes
        );
    }

    #[test]
    fn paths_map_to_entries() {
        let k = kind(Path::new("/x"));
        let hex = "ab".repeat(32);
        let id = k.entry_at(Path::new(&format!("ab/{hex}-a"))).unwrap();
        assert_eq!(id.role, Role::Action);
        assert_eq!(k.path_of(&id), format!("ab/{hex}-a"));
        assert!(
            k.entry_at(Path::new(&format!("cd/{hex}-a"))).is_none(),
            "wrong shard"
        );
        assert!(k.entry_at(Path::new("README")).is_none());
        assert!(k.entry_at(Path::new("fuzz/x/y")).is_none());
        assert_eq!(
            k.parse_name(&format!("{hex}-d")).unwrap().role,
            Role::Output
        );
    }
}
