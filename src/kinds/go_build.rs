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
//! empty output `e3b0c442…` is named by hundreds of actions): a full scan splits a
//! shared output's disk usage evenly among the actions naming it, so entry sizes add up
//! to what `du` reports, and eviction removes an output only when no surviving entry
//! names it (the engine passes the survivors' output fingerprints). Outputs named by no
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
//! One job per shard directory on every core: `getdents` for names and types, then
//! `fstatat` and (for actions) `openat`+`read` relative to the shard's directory fd —
//! no path resolution per file.

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

use super::{EntryMeta, Finding, Kind, Removal, Removing, ScanResult, Stamp, UnixTime, WatchDir};
use crate::{fsutil, parallel};

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
    fn file_name(&self) -> String {
        let suffix = match self.role {
            Role::Action => "a",
            Role::Output => "d",
        };
        format!("{}-{suffix}", to_hex(&self.hash))
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
    let action = from_hex(field(3, 67)).ok_or("action-garbled")?;
    let output = from_hex(field(68, 132)).ok_or("action-garbled")?;
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

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = digit(chunk[0])? << 4 | digit(chunk[1])?;
    }
    Some(out)
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
    let hash = from_hex(std::str::from_utf8(&name[..64]).ok()?)?;
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
    /// Outputs named by several actions, with how many: each action's entry carries an
    /// equal share of the output's size, so the total stays what `du` says.
    shared: HashMap<[u8; 32], u32>,
    /// Outputs named by no action (old enough not to be in the middle of a `put`).
    orphans: std::collections::HashSet<[u8; 32]>,
}

pub struct GoBuildKind {
    root: PathBuf,
    /// Outputs whose hash was checked, with the (mtime, size) they had: a sweep re-hashes
    /// only outputs that changed since.
    verified: Mutex<HashMap<[u8; 32], (i64, u64)>>,
    /// What watch events cannot tell by looking at one file, from the last scan.
    outputs: Mutex<OutputBook>,
    shard_fds: Mutex<Vec<Option<Arc<OwnedFd>>>>,
    /// Computes when a running go command may still open entries (injectable for tests).
    in_use: fn(&Path) -> Option<super::InUse>,
}

impl GoBuildKind {
    pub fn new(root: PathBuf) -> GoBuildKind {
        GoBuildKind {
            root,
            verified: Mutex::new(HashMap::new()),
            outputs: Mutex::new(OutputBook::default()),
            shard_fds: Mutex::new(vec![None; 256]),
            in_use: crate::go_procs::in_use_since,
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

    /// Hashes an output file, comparing with its name.
    fn output_hash_ok(&self, dir: &OwnedFd, id: &[u8; 32]) -> io::Result<bool> {
        let name = format!("{}-d", to_hex(id));
        let fd = nix::fcntl::openat(
            dir,
            name.as_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut file = std::fs::File::from(fd);
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

impl GoBuildKind {
    /// Scans some shards. Actions elsewhere are not seen: an output here counts as
    /// named if `named_elsewhere` says an entry outside these shards names it, and an
    /// action here whose output lies in an unscanned shard gets that output's full size.
    fn scan_shards(
        &self,
        shards: &[u8],
        named_elsewhere: &dyn Fn(u64) -> bool,
    ) -> ScanResult<GoId> {
        // Mostly waiting for inodes and action blocks when the page cache is cold.
        if shards.len() == 256 {
            self.shard_fds
                .lock()
                .unwrap()
                .iter_mut()
                .for_each(|fd| *fd = None);
        }
        let per_shard =
            parallel::map_with(parallel::IO_THREADS, shards, |&s| scan_shard(&self.root, s));
        let mut scanned = [false; 256];
        for &s in shards {
            scanned[s as usize] = true;
        }
        let mut result = ScanResult {
            entries: Vec::new(),
            ignored_files: 0,
            errors: Vec::new(),
            stamps: shards
                .iter()
                .zip(&per_shard)
                .map(|(&s, r)| (s as usize, r.stamp))
                .collect(),
        };
        // Outputs per shard, sorted by id, with how many actions name them.
        let mut outputs: Vec<Vec<(&[u8; 32], &FileStat, u32)>> = vec![Vec::new(); 256];
        for shard in &per_shard {
            result.errors.extend(shard.errors.iter().cloned());
            result.ignored_files += shard.ignored;
            for s in shard.seen.iter().filter(|s| s.id.role == Role::Output) {
                outputs[s.id.hash[0] as usize].push((&s.id.hash, &s.st, 0));
            }
        }
        for shard in &mut outputs {
            shard.sort_unstable_by_key(|(id, _, _)| **id);
        }
        let find = |outputs: &Vec<Vec<(&[u8; 32], &FileStat, u32)>>, id: &[u8; 32]| {
            outputs[id[0] as usize]
                .binary_search_by_key(&id, |(o, _, _)| o)
                .ok()
        };
        for shard in &per_shard {
            for s in &shard.seen {
                if let Some(Ok(a)) = &s.action {
                    if let Some(i) = find(&outputs, &a.output) {
                        outputs[a.output[0] as usize][i].2 += 1;
                    }
                }
            }
        }
        let grace_before = crate::now() - ORPHAN_GRACE.as_secs() as i64;
        let full = shards.len() == 256;
        let mut book = OutputBook::default();
        for shard in &outputs {
            for (id, _, refs) in shard.iter().filter(|(_, _, refs)| *refs > 1) {
                book.shared.insert(**id, *refs);
            }
        }
        for shard in &per_shard {
            for s in &shard.seen {
                let own_disk = fsutil::disk_usage_stat(&s.st);
                let own_len = s.st.st_size as u64;
                match (&s.action, s.id.role) {
                    (Some(parsed), Role::Action) => {
                        let (mut disk, mut apparent, mut aux) = (own_disk, own_len, 0);
                        if let Ok(a) = parsed {
                            aux = fingerprint(&a.output);
                            if let Some(i) = find(&outputs, &a.output) {
                                let (_, st, refs) = outputs[a.output[0] as usize][i];
                                disk += fsutil::disk_usage_stat(st) / refs as u64;
                                apparent += st.st_size as u64 / refs as u64;
                            } else if !scanned[a.output[0] as usize] {
                                if let Some(st) = self.stat_output(&a.output) {
                                    disk += fsutil::disk_usage_stat(&st);
                                    apparent += st.st_size as u64;
                                }
                            }
                        }
                        result.entries.push((
                            s.id,
                            EntryMeta {
                                disk_bytes: disk,
                                apparent_bytes: apparent,
                                last_use: mtime(&s.st),
                                aux,
                            },
                        ));
                    }
                    (None, Role::Output) => {
                        let refs = find(&outputs, &s.id.hash)
                            .map_or(0, |i| outputs[s.id.hash[0] as usize][i].2);
                        let named = refs > 0 || named_elsewhere(fingerprint(&s.id.hash));
                        if !named && mtime(&s.st) < grace_before {
                            book.orphans.insert(s.id.hash);
                            result.entries.push((
                                s.id,
                                EntryMeta {
                                    disk_bytes: own_disk,
                                    apparent_bytes: own_len,
                                    last_use: mtime(&s.st),
                                    aux: fingerprint(&s.id.hash),
                                },
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        {
            let mut known = self.outputs.lock().unwrap();
            if full {
                *known = book;
                // Forget verifications of outputs that no longer exist.
                let present: std::collections::HashSet<&[u8; 32]> =
                    outputs.iter().flatten().map(|(id, _, _)| *id).collect();
                self.verified
                    .lock()
                    .unwrap()
                    .retain(|id, _| present.contains(id));
            } else {
                known.shared.extend(book.shared);
                known.orphans.extend(book.orphans);
            }
        }
        result
    }

    fn stat_output(&self, output: &[u8; 32]) -> Option<FileStat> {
        let dir = self.shard_dir(output).ok()?;
        fsutil::stat_at(&dir, OsStr::new(&format!("{}-d", to_hex(output)))).ok()
    }
}

/// One file of a shard, as the scan saw it.
struct Seen {
    id: GoId,
    st: FileStat,
    action: Option<Result<Action, &'static str>>,
}

fn read_at(dir: &OwnedFd, name: &OsStr, max: usize) -> io::Result<Vec<u8>> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOATIME;
    let fd = match nix::fcntl::openat(dir, name, flags, Mode::empty()) {
        Err(nix::errno::Errno::EPERM) => {
            nix::fcntl::openat(dir, name, flags - OFlag::O_NOATIME, Mode::empty())?
        }
        other => other?,
    };
    let mut buf = Vec::with_capacity(max + 1);
    std::fs::File::from(fd)
        .take(max as u64 + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// What one shard directory holds, and its mtime before it was listed.
struct ShardScan {
    stamp: Option<Stamp>,
    seen: Vec<Seen>,
    errors: Vec<String>,
    ignored: u64,
}

fn scan_shard(root: &Path, shard: u8) -> ShardScan {
    let shard = format!("{shard:02x}");
    let mut out = ShardScan {
        stamp: None,
        seen: Vec::new(),
        errors: Vec::new(),
        ignored: 0,
    };
    let dir = match fsutil::open_dir_beneath(root, Path::new(&shard)) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.errors.push(format!("{shard}: {e}"));
            return out;
        }
    };
    // The stamp is taken before listing: a change made during the listing moves the
    // directory's mtime past it, so a restart rescans this shard.
    out.stamp = nix::sys::stat::fstat(&dir).ok().map(|st| Stamp::of(&st));
    let names = match std::fs::read_dir(root.join(&shard)) {
        Ok(names) => names,
        Err(e) => {
            out.errors.push(format!("{shard}: {e}"));
            return out;
        }
    };
    let (seen, errors, mut ignored) = (&mut out.seen, &mut out.errors, 0);
    for item in names {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                errors.push(format!("{shard}: reading the directory: {e}"));
                break;
            }
        };
        let name = item.file_name();
        let Some(id) = parse_file_name(name.as_bytes()) else {
            ignored += 1;
            continue;
        };
        let st = match fsutil::stat_at(&dir, &name) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                errors.push(format!("{shard}/{}: {e}", name.to_string_lossy()));
                continue;
            }
        };
        let regular = fsutil::is_file_type(&st, libc::S_IFREG);
        let action = match id.role {
            Role::Action if regular => match read_at(&dir, &name, ACTION_LEN) {
                Ok(bytes) => Some(parse_action(&bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    errors.push(format!("{shard}/{}: {e}", name.to_string_lossy()));
                    continue;
                }
            },
            // Go ≥ 1.24 may store an executable output as a directory; it is an output.
            Role::Output if regular || fsutil::is_file_type(&st, libc::S_IFDIR) => None,
            _ => {
                ignored += 1;
                continue;
            }
        };
        seen.push(Seen { id, st, action });
    }
    out.ignored = ignored;
    out
}

fn mtime(st: &FileStat) -> UnixTime {
    st.st_mtime
}

impl Kind for GoBuildKind {
    type Id = GoId;

    fn root(&self) -> &Path {
        &self.root
    }

    fn scan(&self) -> ScanResult<GoId> {
        self.scan_shards(&(0..=255).collect::<Vec<u8>>(), &|_| false)
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

    fn scan_partitions(
        &self,
        partitions: &[usize],
        named_elsewhere: &dyn Fn(u64) -> bool,
    ) -> ScanResult<GoId> {
        let shards: Vec<u8> = partitions.iter().map(|&p| p as u8).collect();
        self.scan_shards(&shards, named_elsewhere)
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
                let bytes = match read_at(&dir, OsStr::new(&name), ACTION_LEN) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                };
                if let Ok(a) = parse_action(&bytes) {
                    meta.aux = fingerprint(&a.output);
                    if let Some(out) = self.stat_output(&a.output) {
                        let book = self.outputs.lock().unwrap();
                        let refs = book.shared.get(&a.output).copied().unwrap_or(1) as u64;
                        meta.disk_bytes += fsutil::disk_usage_stat(&out) / refs;
                        meta.apparent_bytes += out.st_size as u64 / refs;
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
                let bytes = match read_at(&dir, OsStr::new(&id.file_name()), ACTION_LEN) {
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
        if !fsutil::is_file_type(&st, libc::S_IFREG) {
            return vec![]; // Go ≥ 1.24 executable directories: no hash to compare.
        }
        let size = st.st_size as u64;
        if let Some(expected) = expected_size.filter(|&e| e != size) {
            return found(
                "output-size-mismatch",
                format!("{out_name} has {size} bytes, the action records {expected}"),
            );
        }
        let stamp = (st.st_mtime, size);
        if self.verified.lock().unwrap().get(&output) == Some(&stamp) {
            return vec![];
        }
        match self.output_hash_ok(&out_dir, &output) {
            Ok(true) => {
                self.verified.lock().unwrap().insert(output, stamp);
                vec![]
            }
            Ok(false) => found(
                "output-hash-mismatch",
                format!("the SHA-256 of {out_name} is not its name"),
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => vec![],
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
            let output = match id.role {
                Role::Output => Some(id.hash),
                Role::Action => read_at(&dir, OsStr::new(&name), ACTION_LEN)
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
            let mut freed = 0;
            if fsutil::unlink_at(&dir, OsStr::new(&name))? {
                freed += fsutil::disk_usage_stat(&st);
            }
            if id.role == Role::Output {
                self.outputs.lock().unwrap().orphans.remove(&id.hash);
            }
            // The output goes with its last action; a corrupt one goes whoever names it.
            let remove_output = match (id.role, how) {
                (Role::Output, _) => false, // already removed above
                (Role::Action, Removing::Evict(survivors)) => {
                    output.is_some_and(|o| !survivors.contains(fingerprint(&o)))
                }
                (Role::Action, Removing::Repair(findings)) => {
                    findings.iter().any(|f| f.problem == "output-hash-mismatch")
                }
            };
            if let (true, Some(out)) = (remove_output, output) {
                let out_dir = self.shard_dir(&out)?;
                let out_name = format!("{}-d", to_hex(&out));
                if let Ok(out_st) = fsutil::stat_at(&out_dir, OsStr::new(&out_name)) {
                    let corrupt = matches!(how, Removing::Repair(_));
                    if corrupt || out_st.st_mtime <= used_before {
                        if fsutil::is_file_type(&out_st, libc::S_IFDIR) {
                            // Go ≥ 1.24 executable outputs; the shard dir was opened
                            // without following links, and remove_dir_all never follows
                            // them either.
                            let path = self.root.join(format!("{:02x}", out[0])).join(&out_name);
                            std::fs::remove_dir_all(&path)?;
                        } else if fsutil::unlink_at(&out_dir, OsStr::new(&out_name))? {
                            freed += fsutil::disk_usage_stat(&out_st);
                        }
                        self.verified.lock().unwrap().remove(&out);
                        let mut book = self.outputs.lock().unwrap();
                        book.shared.remove(&out);
                        book.orphans.remove(&out);
                    }
                }
            }
            Ok(Removal::Removed { disk_bytes: freed })
        };
        attempt().unwrap_or_else(|e| Removal::Skipped(format!("cannot remove: {e}")))
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
        (self.in_use)(&self.root)
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
        k.in_use = |_| None;
        k
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
    fn scan_pairs_actions_with_outputs_and_splits_shared_ones() {
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
        let found = k.scan();
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
        let env = crate::config::Env {
            home: None,
            uid: 1000,
            xdg_runtime_dir: None,
            xdg_config_home: None,
            xdg_state_home: None,
        };
        let config =
            crate::config::parse(&text, crate::config::ConfigSource::Embedded, &env).unwrap();
        crate::cache::CacheOf::open(kind(root), config.caches[0].clone())
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
