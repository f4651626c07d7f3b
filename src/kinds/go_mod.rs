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
//!   than a process's start time, so while any `go` process that may use this
//!   GOMODCACHE runs ([`crate::go_procs::oldest_go_using`]) [`Kind::in_use`] protects
//!   every entry; the daemon retries once it exits. [`GoModKind::remove`] checks again
//!   itself, after creating the `.partial` marker, closing the gap between plan and
//!   removal: a go command that starts after that check sees the marker (or a missing
//!   zip) and takes go's locked slow path.
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
use sha2::{Digest, Sha256};

use super::{EntryMeta, Finding, InUse, Kind, Removal, Removing, ScanResult, UnixTime, WatchDir};
use crate::fsutil::{self, stat_at, unlink_at};
use crate::parallel;
use crate::plan::AGE_ONLY;

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

// ---------------------------------------------------------------------------------------
// Case escaping (golang.org/x/mod module/module.go: EscapePath, UnescapePath).

/// `module.EscapePath`/`EscapeVersion`: upper-case letters become `!` + lower case.
/// `None` for `!` or non-ASCII input, which go rejects too.
pub fn escape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        match c {
            '!' => return None,
            c if !c.is_ascii() => return None,
            'A'..='Z' => {
                out.push('!');
                out.push(c.to_ascii_lowercase());
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// `unescapeString`: the inverse; `None` for an upper-case letter, a `!` not followed by
/// a lower-case letter, or non-ASCII.
pub fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut bang = false;
    for c in s.chars() {
        if !c.is_ascii() {
            return None;
        }
        if bang {
            bang = false;
            if !c.is_ascii_lowercase() {
                return None;
            }
            out.push(c.to_ascii_uppercase());
            continue;
        }
        match c {
            '!' => bang = true,
            'A'..='Z' => return None,
            c => out.push(c),
        }
    }
    (!bang).then_some(out)
}

// ---------------------------------------------------------------------------------------
// Semantic versions (golang.org/x/mod semver/semver.go), for `list`.

struct Semver<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    short: bool,
    prerelease: &'a str,
    build: &'a str,
}

fn parse_int(v: &str) -> Option<(&str, &str)> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || (v.starts_with('0') && digits != 1) {
        return None;
    }
    Some(v.split_at(digits))
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

fn is_bad_num(v: &str) -> bool {
    v.len() > 1 && v.starts_with('0') && v.bytes().all(|c| c.is_ascii_digit())
}

fn parse_semver(v: &str) -> Option<Semver<'_>> {
    let rest = v.strip_prefix('v')?;
    let (major, rest) = parse_int(rest)?;
    let mut p = Semver {
        major,
        minor: "0",
        patch: "0",
        short: true,
        prerelease: "",
        build: "",
    };
    if rest.is_empty() {
        return Some(p);
    }
    let (minor, rest) = parse_int(rest.strip_prefix('.')?)?;
    p.minor = minor;
    if rest.is_empty() {
        return Some(p);
    }
    let (patch, mut rest) = parse_int(rest.strip_prefix('.')?)?;
    p.patch = patch;
    p.short = false;
    if rest.starts_with('-') {
        let end = rest.find('+').unwrap_or(rest.len());
        let pre = &rest[..end];
        let ok = pre[1..]
            .split('.')
            .all(|id| !id.is_empty() && id.bytes().all(is_ident_char) && !is_bad_num(id));
        if !ok {
            return None;
        }
        p.prerelease = pre;
        rest = &rest[end..];
    }
    if rest.starts_with('+') {
        let ok = rest[1..]
            .split('.')
            .all(|id| !id.is_empty() && id.bytes().all(is_ident_char));
        if !ok {
            return None;
        }
        p.build = rest;
        rest = "";
    }
    rest.is_empty().then_some(p)
}

/// `module.CanonicalVersion(v) == v`: a full `vX.Y.Z[-pre]`, build metadata only as
/// `+incompatible`.
pub fn is_canonical_version(v: &str) -> bool {
    parse_semver(v).is_some_and(|p| !p.short && (p.build.is_empty() || p.build == "+incompatible"))
}

fn compare_int(x: &str, y: &str) -> std::cmp::Ordering {
    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
}

fn compare_prerelease(x: &str, y: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    if x == y {
        return Equal;
    }
    if x.is_empty() {
        return Greater;
    }
    if y.is_empty() {
        return Less;
    }
    let (mut xs, mut ys) = (x[1..].split('.'), y[1..].split('.'));
    loop {
        match (xs.next(), ys.next()) {
            (Some(dx), Some(dy)) if dx != dy => {
                let (nx, ny) = (
                    dx.bytes().all(|c| c.is_ascii_digit()),
                    dy.bytes().all(|c| c.is_ascii_digit()),
                );
                return match (nx, ny) {
                    (true, false) => Less,
                    (false, true) => Greater,
                    (true, true) => compare_int(dx, dy),
                    (false, false) => dx.cmp(dy),
                };
            }
            (Some(_), Some(_)) => {}
            (None, Some(_)) => return Less,
            (Some(_), None) => return Greater,
            (None, None) => return Equal,
        }
    }
}

/// `semver.Compare`: invalid versions sort before valid ones.
pub fn compare_versions(v: &str, w: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (parse_semver(v), parse_semver(w)) {
        (None, None) => Equal,
        (None, Some(_)) => Less,
        (Some(_), None) => Greater,
        (Some(a), Some(b)) => compare_int(a.major, b.major)
            .then_with(|| compare_int(a.minor, b.minor))
            .then_with(|| compare_int(a.patch, b.patch))
            .then_with(|| compare_prerelease(a.prerelease, b.prerelease)),
    }
}

/// `semver.Sort`: by precedence, ties by string.
pub fn sort_versions(list: &mut [String]) {
    list.sort_by(|a, b| compare_versions(a, b).then_with(|| a.cmp(b)));
}

// ---------------------------------------------------------------------------------------
// dirhash (golang.org/x/mod sumdb/dirhash/hash.go).

/// `Hash1` over (name, SHA-256 of content) pairs; names must not contain a newline.
pub fn hash1(mut files: Vec<(Vec<u8>, [u8; 32])>) -> Result<String, String> {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut summary = Sha256::new();
    for (name, digest) in &files {
        if name.contains(&b'\n') {
            return Err("dirhash: filenames with newlines are not supported".into());
        }
        summary.update(super::go_build::to_hex(digest).as_bytes());
        summary.update(b"  ");
        summary.update(name);
        summary.update(b"\n");
    }
    Ok(format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(summary.finalize())
    ))
}

/// The `/go.mod h1:` line of go.sum: `Hash1(["go.mod"])` over the `.mod` file.
pub fn go_mod_hash(content: &[u8]) -> String {
    let digest: [u8; 32] = Sha256::digest(content).into();
    hash1(vec![(b"go.mod".to_vec(), digest)]).expect("no newline in go.mod")
}

fn sha256_of(mut reader: impl Read, buf: &mut [u8]) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    loop {
        match reader.read(buf) {
            Ok(0) => return Ok(hasher.finalize().into()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `HashZip`: names as stored in the zip, decompressed contents (CRC-checked). A
/// duplicated name is hashed once per occurrence with the last entry's content, as go's
/// name → file map does. The error is the reason the zip cannot be read.
pub fn hash_zip(file: std::fs::File) -> Result<String, String> {
    let mut archive =
        zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| format!("zip: {e}"))?;
    let mut names: Vec<Vec<u8>> = Vec::with_capacity(archive.len());
    let mut last: HashMap<Vec<u8>, usize> = HashMap::new();
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(|e| format!("zip: {e}"))?;
        let name = entry.name_raw().to_vec();
        last.insert(name.clone(), i);
        names.push(name);
    }
    let mut digests: HashMap<usize, [u8; 32]> = HashMap::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        let i = last[&name];
        let digest = match digests.get(&i) {
            Some(d) => *d,
            None => {
                let entry = archive.by_index(i).map_err(|e| format!("zip: {e}"))?;
                let d = sha256_of(entry, &mut buf)
                    .map_err(|e| format!("zip: reading {}: {e}", String::from_utf8_lossy(&name)))?;
                digests.insert(i, d);
                d
            }
        };
        files.push((name, digest));
    }
    hash1(files)
}

/// Why [`hash_dir`] could not hash a tree the way go would.
#[derive(Debug)]
pub enum TreeHashError {
    Io(io::Error),
    /// A symlink, fifo, socket or device: module trees hold only regular files and go's
    /// `HashDir` would follow a symlink.
    NotRegular(String),
    Name(String),
}

/// `HashDir(dir, prefix)` for the directory `rel` below `root`: every regular file,
/// named `prefix/rel/path` with `/` separators. Walks with `openat(O_NOFOLLOW)` and reads
/// with `O_NOATIME`.
pub fn hash_dir(root: &Path, rel: &Path, prefix: &str) -> Result<String, TreeHashError> {
    let fd = open_dir_below(root, rel).map_err(TreeHashError::Io)?;
    let mut dir = Dir::from_fd(fd).map_err(|e| TreeHashError::Io(e.into()))?;
    let mut files = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    hash_dir_into(&mut dir, prefix.as_bytes(), &mut files, &mut buf)?;
    hash1(files).map_err(TreeHashError::Name)
}

fn hash_dir_into(
    dir: &mut Dir,
    prefix: &[u8],
    files: &mut Vec<(Vec<u8>, [u8; 32])>,
    buf: &mut [u8],
) -> Result<(), TreeHashError> {
    for (name, _) in list(dir).map_err(TreeHashError::Io)? {
        let mut full = prefix.to_vec();
        full.push(b'/');
        full.extend_from_slice(name.as_bytes());
        let st = stat_at(&*dir, &name).map_err(TreeHashError::Io)?;
        if fsutil::is_file_type(&st, libc::S_IFDIR) {
            let mut sub = open_dir_at(&*dir, &name).map_err(TreeHashError::Io)?;
            hash_dir_into(&mut sub, &full, files, buf)?;
        } else if fsutil::is_file_type(&st, libc::S_IFREG) {
            let fd = open_noatime(&*dir, &name, OFlag::O_RDONLY).map_err(TreeHashError::Io)?;
            let digest = sha256_of(std::fs::File::from(fd), buf).map_err(TreeHashError::Io)?;
            files.push((full, digest));
        } else {
            return Err(TreeHashError::NotRegular(
                String::from_utf8_lossy(&full).into_owned(),
            ));
        }
    }
    Ok(())
}

/// A `.ziphash` as `hashZip` writes it: `h1:` + base64 of 32 bytes, no newline (go
/// trims space when reading).
fn parse_ziphash(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let b64 = text.strip_prefix("h1:")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (raw.len() == 32).then(|| text.to_string())
}

/// The light `.mod` check: non-empty UTF-8 with a `module` directive.
fn mod_ok(bytes: &[u8]) -> Result<(), &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8")?;
    if text.trim().is_empty() {
        return Err("empty");
    }
    let has_module = text.lines().any(|l| {
        let l = l.trim_start();
        l.strip_prefix("module")
            .is_some_and(|rest| rest.starts_with([' ', '\t', '"', '(']))
    });
    if has_module {
        Ok(())
    } else {
        Err("no module directive")
    }
}

/// The `.info` check: a JSON object whose `Version` is this version (`RevInfo`).
fn info_ok(bytes: &[u8], version: &str) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("Version").and_then(|v| v.as_str()) {
        Some(v) if v == version => Ok(()),
        Some(v) => Err(format!("Version is {v:?}, not {version:?}")),
        None => Err("no Version string".into()),
    }
}

// ---------------------------------------------------------------------------------------
// File names.

/// A file of one version in `@v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VFile {
    Info,
    Mod,
    Zip,
    Ziphash,
    Lock,
    Partial,
    /// `<ver>.zip123.tmp`, `<ver>.ziphash123.tmp`.
    ZipTemp,
    /// `<ver>.info123.tmp`, `<ver>.mod123.tmp` (writeDiskCache).
    MetaTemp,
}

fn valid_escaped_version(v: &str) -> bool {
    unescape(v).is_some_and(|u| is_canonical_version(&u))
}

/// Parses a name in `@v`: (escaped version, what it is).
fn parse_vfile(name: &str) -> Option<(&str, VFile)> {
    if let Some(base) = name.strip_suffix(".tmp") {
        let base = base.trim_end_matches(|c: char| c.is_ascii_digit());
        let kinds = [
            (".ziphash", VFile::ZipTemp),
            (".zip", VFile::ZipTemp),
            (".info", VFile::MetaTemp),
            (".mod", VFile::MetaTemp),
        ];
        for (suffix, kind) in kinds {
            if let Some(v) = base.strip_suffix(suffix) {
                return valid_escaped_version(v).then_some((v, kind));
            }
        }
        return None;
    }
    let (v, ext) = name.rsplit_once('.')?;
    let kind = match ext {
        "info" => VFile::Info,
        "mod" => VFile::Mod,
        "zip" => VFile::Zip,
        "ziphash" => VFile::Ziphash,
        "lock" => VFile::Lock,
        "partial" => VFile::Partial,
        _ => return None,
    };
    valid_escaped_version(v).then_some((v, kind))
}

/// Parses a directory name next to extracted trees: `elem@ver` (a tree) or
/// `elem@ver.tmp-NNN` (a pre-1.16 extraction temp): (elem, escaped version, is temp).
fn parse_tree_name(name: &str) -> Option<(&str, &str, bool)> {
    let (elem, rest) = name.split_once('@')?;
    if elem.is_empty() {
        return None;
    }
    if valid_escaped_version(rest) {
        return Some((elem, rest, false));
    }
    let (v, random) = rest.rsplit_once(".tmp-")?;
    let temp = !random.is_empty() && random.bytes().all(|c| c.is_ascii_digit());
    (temp && valid_escaped_version(v)).then_some((elem, v, true))
}

/// A key's escaped module path and version.
fn split_key(key: &str) -> Option<(&str, &str)> {
    key.rsplit_once('@')
}

/// Whether an escaped module path is a plain relative path (no empty, `.` or `..`
/// elements) — keys built from user input go through this.
fn plain_module_path(m: &str) -> bool {
    !m.is_empty()
        && m.split('/')
            .all(|e| !e.is_empty() && e != "." && e != ".." && !e.contains('\0'))
}

fn vdir_rel(module: &str) -> PathBuf {
    Path::new("cache/download").join(module).join("@v")
}

/// The tree's parent directory (relative to the root) and its own name.
fn tree_location(key: &str) -> (&Path, &str) {
    match key.rsplit_once('/') {
        Some((parent, name)) => (Path::new(parent), name),
        None => (Path::new(""), key),
    }
}

// ---------------------------------------------------------------------------------------
// Directory-fd helpers: nothing below the root is resolved as a path string.

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Opens the directory `rel` below `root` without following any symlink or leaving
/// the root: one `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` where the kernel has it
/// (Linux ≥ 5.6: a verify sweep opens a few directories per entry, and walking them
/// component by component cost more syscalls than the hashing), else
/// [`fsutil::open_dir_beneath`]'s component-by-component walk.
fn open_dir_below(root: &Path, rel: &Path) -> io::Result<OwnedFd> {
    use nix::fcntl::{OpenHow, ResolveFlag};
    let root_fd = nix::fcntl::open(root, DIR_FLAGS, Mode::empty())?;
    if rel.as_os_str().is_empty() {
        return Ok(root_fd);
    }
    let how = OpenHow::new().flags(DIR_FLAGS).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    match nix::fcntl::openat2(&root_fd, rel, how) {
        Ok(fd) => Ok(fd),
        Err(Errno::ENOSYS | Errno::EPERM) => fsutil::open_dir_beneath(root, rel),
        Err(e) => Err(e.into()),
    }
}

/// `openat` with `O_NOFOLLOW | O_CLOEXEC`, and `O_NOATIME` where the kernel allows it
/// (it needs ownership): our reads must not look like uses. A file (not `O_DIRECTORY`)
/// is opened `O_NONBLOCK` and must be a regular file: a FIFO or device planted in a
/// module's tree is an `InvalidInput` error, never a reader blocked for ever.
fn open_noatime(dir: impl AsFd, name: &OsStr, flags: OFlag) -> io::Result<OwnedFd> {
    let file = !flags.contains(OFlag::O_DIRECTORY);
    let mut flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    if file {
        flags |= OFlag::O_NONBLOCK;
    }
    let fd = match nix::fcntl::openat(dir.as_fd(), name, flags | OFlag::O_NOATIME, Mode::empty()) {
        Err(Errno::EPERM) => nix::fcntl::openat(dir, name, flags, Mode::empty())?,
        other => other?,
    };
    if file {
        let st = nix::sys::stat::fstat(&fd)?;
        if !fsutil::is_file_type(&st, libc::S_IFREG) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is {}", name.to_string_lossy(), fsutil::type_name(&st)),
            ));
        }
    }
    Ok(fd)
}

fn open_dir_at(dir: impl AsFd, name: &OsStr) -> io::Result<Dir> {
    let fd = open_noatime(dir, name, DIR_FLAGS)?;
    Ok(Dir::from_fd(fd)?)
}

/// A directory's entries (without `.` and `..`), with their type where the
/// filesystem reports it.
fn list(dir: &mut Dir) -> io::Result<Vec<(OsString, Option<Type>)>> {
    let mut out = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push((OsStr::from_bytes(name).to_os_string(), entry.file_type()));
        }
    }
    Ok(out)
}

fn read_small(dir: impl AsFd, name: &OsStr) -> io::Result<Vec<u8>> {
    let fd = open_noatime(dir, name, OFlag::O_RDONLY)?;
    let mut buf = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_SMALL_FILE as u64 + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Opens the directory `rel` below `root`, creating missing components (mode 0777 less
/// the umask, as go's `os.MkdirAll`), never following a symlink.
fn open_or_create_dir_beneath(root: &Path, rel: &Path) -> io::Result<OwnedFd> {
    let mut fd = nix::fcntl::open(root, DIR_FLAGS, Mode::empty())?;
    for comp in rel.components() {
        let Component::Normal(name) = comp else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain relative path", rel.display()),
            ));
        };
        fd = match nix::fcntl::openat(&fd, name, DIR_FLAGS, Mode::empty()) {
            Err(Errno::ENOENT) => {
                match nix::sys::stat::mkdirat(&fd, name, Mode::from_bits_truncate(0o777)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                nix::fcntl::openat(&fd, name, DIR_FLAGS, Mode::empty())?
            }
            other => other?,
        };
    }
    Ok(fd)
}

// ---------------------------------------------------------------------------------------
// Measuring.

/// What a walk of a directory tree found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct TreeStat {
    disk: u64,
    apparent: u64,
    files: u64,
    /// Latest `max(atime, mtime)` of the regular files (`i64::MIN`: none).
    last_use: i64,
    /// Latest mtime or ctime (ns) of anything in the tree: any edit moves it.
    changed_ns: i128,
}

fn ns(secs: i64, nanos: i64) -> i128 {
    secs as i128 * 1_000_000_000 + nanos as i128
}

fn changed_ns(st: &FileStat) -> i128 {
    ns(st.st_mtime, st.st_mtime_nsec).max(ns(st.st_ctime, st.st_ctime_nsec))
}

fn stat_tree(dir: &mut Dir, acc: &mut TreeStat) -> io::Result<()> {
    let st = nix::sys::stat::fstat(&*dir)?;
    // A directory's link count counts its subdirectories, not hard links: no sharing.
    acc.disk += st.st_blocks as u64 * 512;
    acc.changed_ns = acc.changed_ns.max(changed_ns(&st));
    for (name, _) in list(dir)? {
        let st = match stat_at(&*dir, &name) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if fsutil::is_file_type(&st, libc::S_IFDIR) {
            match open_dir_at(&*dir, &name) {
                Ok(mut sub) => stat_tree(&mut sub, acc)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        acc.disk += fsutil::disk_usage_stat(&st);
        acc.apparent += st.st_size as u64;
        acc.changed_ns = acc.changed_ns.max(changed_ns(&st));
        if fsutil::is_file_type(&st, libc::S_IFREG) {
            acc.files += 1;
            acc.last_use = acc.last_use.max(fsutil::last_use_stat(&st));
        }
    }
    Ok(())
}

fn stat_tree_at(parent: impl AsFd, name: &OsStr) -> io::Result<TreeStat> {
    let mut acc = TreeStat {
        last_use: i64::MIN,
        ..TreeStat::default()
    };
    let mut dir = open_dir_at(parent, name)?;
    stat_tree(&mut dir, &mut acc)?;
    Ok(acc)
}

/// Where a version's files are.
#[derive(Debug, Default, Clone)]
struct Parts {
    /// `<esc>@<ver>/` exists.
    tree: bool,
    /// Names of `<elem>@<ver>.tmp-NNN` directories next to the tree.
    tmp_dirs: Vec<OsString>,
    /// This version's files in `@v`.
    files: Vec<(OsString, VFile)>,
}

impl Parts {
    fn has(&self, kind: VFile) -> bool {
        self.files.iter().any(|(_, k)| *k == kind)
    }

    fn names<'a>(&'a self, kinds: &'a [VFile]) -> impl Iterator<Item = &'a OsString> {
        self.files
            .iter()
            .filter(move |(_, k)| kinds.contains(k))
            .map(|(n, _)| n)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sizes {
    disk: u64,
    apparent: u64,
}

impl Sizes {
    fn add_stat(&mut self, st: &FileStat) {
        self.disk += fsutil::disk_usage_stat(st);
        self.apparent += st.st_size as u64;
    }
}

/// One version, measured.
#[derive(Debug, Default)]
struct Examined {
    tree: Option<Sizes>,
    zip: Option<Sizes>,
    meta: Option<Sizes>,
    last_use: i64,
    errors: Vec<String>,
}

impl Examined {
    fn role(&self, role: Role) -> Option<Sizes> {
        match role {
            Role::Tree => self.tree,
            Role::Zip => self.zip,
            Role::Meta => self.meta,
            Role::Sumdb | Role::Vcs => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Our own threads' claims on versions (go's flock excludes other processes; two of our
// threads would exclude each other through it and misread that as "go holds it").

#[derive(Default)]
struct Claims {
    held: Mutex<HashSet<Arc<str>>>,
    freed: Condvar,
}

struct Claim<'a> {
    claims: &'a Claims,
    key: Arc<str>,
}

impl Claims {
    fn claim(&self, key: &Arc<str>) -> Claim<'_> {
        let mut held = self.held.lock().unwrap();
        while held.contains(key) {
            held = self.freed.wait(held).unwrap();
        }
        held.insert(key.clone());
        Claim {
            claims: self,
            key: key.clone(),
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.claims.held.lock().unwrap().remove(&self.key);
        self.claims.freed.notify_all();
    }
}

/// A version locked as go locks it; dropping it unlocks (the `.lock` file stays).
struct Locked<'a> {
    /// The `@v` directory.
    vdir: OwnedFd,
    _flock: Flock<std::fs::File>,
    /// Released last (fields drop in order): our next thread must find go's lock free.
    _claim: Claim<'a>,
}

enum LockError {
    /// Go holds the lock.
    Busy(String),
    /// `@v` does not exist and we were not to create it.
    NoDir,
    Io(String),
}

// ---------------------------------------------------------------------------------------
// How trustworthy atime is on the cache's filesystem.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AtimeMode {
    Relatime,
    Strict,
    NoAtime,
    Unknown,
}

/// The atime behaviour of the mount holding `path`, from `/proc/self/mountinfo` text:
/// the longest mount point that contains `path` wins (later lines on ties, as later
/// mounts shadow earlier ones).
fn atime_mode(mountinfo: &str, path: &Path) -> AtimeMode {
    // Mount points escape space, tab, newline and backslash as \ooo.
    let unescape_octal = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let octal = b.get(i + 1..i + 4).and_then(|d| {
                let d = std::str::from_utf8(d).ok()?;
                u8::from_str_radix(d, 8).ok()
            });
            match (b[i], octal) {
                (b'\\', Some(v)) => {
                    out.push(v);
                    i += 4;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        PathBuf::from(OsStr::from_bytes(&out))
    };
    let mut best: Option<(usize, AtimeMode)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 6 {
            continue;
        }
        let point = unescape_octal(fields[4]);
        if !path.starts_with(&point) {
            continue;
        }
        let opts: Vec<&str> = fields[5].split(',').collect();
        let mode = if opts.contains(&"noatime") {
            AtimeMode::NoAtime
        } else if opts.contains(&"relatime") {
            AtimeMode::Relatime
        } else {
            AtimeMode::Strict
        };
        let depth = point.components().count();
        if best.is_none_or(|(d, _)| depth >= d) {
            best = Some((depth, mode));
        }
    }
    best.map_or(AtimeMode::Unknown, |(_, m)| m)
}

/// Whether the mount holding `path` is `noatime` (last use is then the download time);
/// for `cachewarden doctor`.
pub fn mounted_noatime(mountinfo: &str, path: &Path) -> bool {
    atime_mode(mountinfo, path) == AtimeMode::NoAtime
}

const SIGNAL_RELATIME: &str = "max(atime, mtime) of each module version's files (tree, .zip, .info, .mod): go records no use; this filesystem is mounted relatime, which updates atime at most once a day, so last use is exact to about a day";
const SIGNAL_STRICT: &str = "max(atime, mtime) of each module version's files (tree, .zip, .info, .mod): go records no use; this filesystem updates atime on every read (strictatime), so last use is exact";
const SIGNAL_NOATIME: &str = "mtime of each module version's files only: go records no use and this filesystem is mounted noatime, so atime is absent and last use is the download time (eviction is by download age)";
const SIGNAL_UNKNOWN: &str = "max(atime, mtime) of each module version's files (tree, .zip, .info, .mod): go records no use; the mount options of this filesystem are unknown, so atime may be exact to a day (relatime) or absent (noatime)";

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

/// The in-use horizon while go runs: our use signal is coarser than any process's start,
/// so every entry is protected.
pub const IN_USE_EVERYTHING: UnixTime = i64::MIN;

fn go_in_use(root: &Path, guard: &[String]) -> Option<InUse> {
    let (started, pid, name) =
        crate::go_procs::oldest_go_using(root, crate::go_procs::GoCache::Mod, guard)?;
    Some(InUse {
        since: IN_USE_EVERYTHING,
        by: format!(
            "{name} (pid {pid}) running since {}",
            crate::units::local_time(started)
        ),
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
                crate::go_procs::DEFAULT_MOD_GUARD
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

    fn go_running(&self) -> Option<String> {
        self.in_use().map(|u| u.by)
    }

    // -- listing ------------------------------------------------------------------------

    /// One version's files, from go's fixed names (`fstatat`, no directory listing: a
    /// popular module's `@v` or a busy parent directory would make every call cost
    /// O(siblings)) plus the leftovers (temps, `.tmp-*` dirs) the last scan found. Used
    /// by `stat` and `verify`; removal lists everything ([`GoModKind::list_parts`]).
    fn parts_of(&self, key: &str) -> io::Result<Parts> {
        let mut parts = Parts::default();
        let Some((module, version)) = split_key(key) else {
            return Ok(parts);
        };
        let leftovers = self.leftovers.lock().unwrap().get(key).cloned();
        let missing =
            |e: &io::Error| matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR));
        let (parent, name) = tree_location(key);
        match open_dir_below(&self.root, parent) {
            Ok(dir) => {
                let is_dir = |n: &OsStr| match stat_at(&dir, n) {
                    Ok(st) => Ok(fsutil::is_file_type(&st, libc::S_IFDIR)),
                    Err(e) if missing(&e) => Ok(false),
                    Err(e) => Err(e),
                };
                parts.tree = is_dir(OsStr::new(name))?;
                for tmp in leftovers.iter().flat_map(|l| &l.tmp_dirs) {
                    if is_dir(tmp)? {
                        parts.tmp_dirs.push(tmp.clone());
                    }
                }
            }
            Err(e) if missing(&e) => {}
            Err(e) => return Err(e),
        }
        match open_dir_below(&self.root, &vdir_rel(module)) {
            Ok(vdir) => {
                let fixed = [
                    ("info", VFile::Info),
                    ("mod", VFile::Mod),
                    ("zip", VFile::Zip),
                    ("ziphash", VFile::Ziphash),
                    ("lock", VFile::Lock),
                    ("partial", VFile::Partial),
                ]
                .map(|(ext, kind)| (OsString::from(format!("{version}.{ext}")), kind));
                let temps = leftovers.iter().flat_map(|l| l.temps.iter().cloned());
                for (file, kind) in fixed.into_iter().chain(temps) {
                    match stat_at(&vdir, &file) {
                        Ok(_) => parts.files.push((file, kind)),
                        Err(e) if missing(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) if missing(&e) => {}
            Err(e) => return Err(e),
        }
        Ok(parts)
    }

    /// One version's files, listing its `@v` and the tree's parent directory: every
    /// temp file and temp dir, also those created since the last scan.
    fn list_parts(&self, key: &str) -> io::Result<Parts> {
        let mut parts = Parts::default();
        let Some((module, version)) = split_key(key) else {
            return Ok(parts);
        };
        let (parent, name) = tree_location(key);
        let tmp_prefix = format!("{name}.tmp-");
        match open_dir_below(&self.root, parent) {
            Ok(fd) => {
                let mut dir = Dir::from_fd(fd)?;
                for (child, ty) in list(&mut dir)? {
                    let Some(child_str) = child.to_str() else {
                        continue;
                    };
                    let is_dir = || match ty {
                        Some(t) => t == Type::Directory,
                        None => stat_at(&dir, &child)
                            .is_ok_and(|st| fsutil::is_file_type(&st, libc::S_IFDIR)),
                    };
                    if child_str == name {
                        parts.tree = is_dir();
                    } else if child_str.starts_with(&tmp_prefix)
                        && parse_tree_name(child_str).is_some_and(|(_, v, tmp)| tmp && v == version)
                        && is_dir()
                    {
                        parts.tmp_dirs.push(child);
                    }
                }
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {}
            Err(e) => return Err(e),
        }
        match open_dir_below(&self.root, &vdir_rel(module)) {
            Ok(fd) => {
                let mut dir = Dir::from_fd(fd)?;
                for (child, _) in list(&mut dir)? {
                    if let Some((v, kind)) = child.to_str().and_then(parse_vfile) {
                        if v == version {
                            parts.files.push((child, kind));
                        }
                    }
                }
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {}
            Err(e) => return Err(e),
        }
        Ok(parts)
    }

    /// Measures a version: each role's sizes and the shared last use.
    fn examine(&self, key: &str, parts: &Parts) -> Examined {
        let mut ex = Examined {
            last_use: i64::MIN,
            ..Examined::default()
        };
        let Some((module, _)) = split_key(key) else {
            return ex;
        };
        // Leftovers (markers, temps) date a version only when nothing else does.
        let mut fallback = i64::MIN;
        let (parent_rel, name) = tree_location(key);
        if parts.tree || !parts.tmp_dirs.is_empty() {
            match open_dir_below(&self.root, parent_rel) {
                Ok(parent) => {
                    let mut sizes = Sizes::default();
                    let mut any = false;
                    if parts.tree {
                        match stat_tree_at(&parent, OsStr::new(name)) {
                            Ok(t) => {
                                any = true;
                                sizes.disk += t.disk;
                                sizes.apparent += t.apparent;
                                ex.last_use = ex.last_use.max(t.last_use);
                                fallback = fallback.max((t.changed_ns / 1_000_000_000) as i64);
                            }
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => {
                                any = true;
                                ex.errors.push(format!("{key}: {e}"));
                            }
                        }
                    }
                    for tmp in &parts.tmp_dirs {
                        if let Ok(t) = stat_tree_at(&parent, tmp) {
                            any = true;
                            sizes.disk += t.disk;
                            sizes.apparent += t.apparent;
                            fallback = fallback.max((t.changed_ns / 1_000_000_000) as i64);
                        }
                    }
                    if any {
                        ex.tree = Some(sizes);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => ex.errors.push(format!("{}: {e}", parent_rel.display())),
            }
        }
        if !parts.files.is_empty() {
            let rel = vdir_rel(module);
            match open_dir_below(&self.root, &rel) {
                Ok(vdir) => {
                    for (file, kind) in &parts.files {
                        let st = match stat_at(&vdir, file) {
                            Ok(st) => st,
                            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                            Err(e) => {
                                ex.errors.push(format!(
                                    "{}/{}: {e}",
                                    rel.display(),
                                    file.to_string_lossy()
                                ));
                                continue;
                            }
                        };
                        let slot = match kind {
                            VFile::Lock => continue,
                            VFile::Partial => {
                                fallback = fallback.max(st.st_mtime);
                                &mut ex.tree
                            }
                            VFile::ZipTemp => {
                                fallback = fallback.max(st.st_mtime);
                                &mut ex.zip
                            }
                            VFile::MetaTemp => {
                                fallback = fallback.max(st.st_mtime);
                                &mut ex.meta
                            }
                            VFile::Zip | VFile::Ziphash => {
                                ex.last_use = ex.last_use.max(fsutil::last_use_stat(&st));
                                &mut ex.zip
                            }
                            VFile::Info | VFile::Mod => {
                                ex.last_use = ex.last_use.max(fsutil::last_use_stat(&st));
                                &mut ex.meta
                            }
                        };
                        slot.get_or_insert_with(Sizes::default).add_stat(&st);
                    }
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {}
                Err(e) => ex.errors.push(format!("{}: {e}", rel.display())),
            }
        }
        if ex.last_use == i64::MIN {
            ex.last_use = fallback;
        }
        ex
    }

    fn meta_of(ex: &Examined, role: Role) -> Option<EntryMeta> {
        ex.role(role).map(|s| EntryMeta {
            disk_bytes: s.disk,
            apparent_bytes: s.apparent,
            last_use: ex.last_use,
            aux: 0,
        })
    }

    /// Finds every version: trees by walking the module-path directories down to the
    /// first `@` directory, download files by walking `cache/download` down to `@v`.
    fn find_versions(
        &self,
        errors: &mut Vec<String>,
        ignored: &mut u64,
    ) -> BTreeMap<String, Parts> {
        let mut versions: BTreeMap<String, Parts> = BTreeMap::new();
        let mut stack: Vec<String> = vec![String::new()];
        while let Some(rel) = stack.pop() {
            let dir = self.root.join(&rel);
            let items = match std::fs::read_dir(&dir) {
                Ok(items) => items,
                Err(e) => {
                    errors.push(format!("{}: {e}", dir.display()));
                    continue;
                }
            };
            for item in items {
                let item = match item {
                    Ok(item) => item,
                    Err(e) => {
                        errors.push(format!("{}: {e}", dir.display()));
                        break;
                    }
                };
                let is_dir = item.file_type().is_ok_and(|t| t.is_dir());
                let name = item.file_name();
                let Some(name) = name.to_str() else {
                    *ignored += 1;
                    continue;
                };
                if !is_dir {
                    *ignored += 1;
                    continue;
                }
                if rel.is_empty() && name == "cache" {
                    continue;
                }
                let child = if rel.is_empty() {
                    name.to_string()
                } else {
                    format!("{rel}/{name}")
                };
                match parse_tree_name(name) {
                    Some((elem, version, tmp)) => {
                        let prefix = if rel.is_empty() {
                            String::new()
                        } else {
                            format!("{rel}/")
                        };
                        let parts = versions
                            .entry(format!("{prefix}{elem}@{version}"))
                            .or_default();
                        if tmp {
                            parts.tmp_dirs.push(OsString::from(name));
                        } else {
                            parts.tree = true;
                        }
                    }
                    None if name.contains('@') => *ignored += 1,
                    None => stack.push(child),
                }
            }
        }

        let download = self.root.join("cache/download");
        let mut stack: Vec<String> = vec![String::new()];
        while let Some(rel) = stack.pop() {
            let dir = download.join(&rel);
            let items = match std::fs::read_dir(&dir) {
                Ok(items) => items,
                Err(e) if rel.is_empty() && e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => {
                    errors.push(format!("{}: {e}", dir.display()));
                    continue;
                }
            };
            for item in items.flatten() {
                let name = item.file_name();
                let Some(name) = name.to_str() else {
                    *ignored += 1;
                    continue;
                };
                if !item.file_type().is_ok_and(|t| t.is_dir()) {
                    *ignored += 1;
                    continue;
                }
                if rel.is_empty() && name == "sumdb" {
                    continue;
                }
                if name == "@v" {
                    if rel.is_empty() {
                        continue;
                    }
                    self.list_vdir(&rel, &mut versions, errors, ignored);
                } else if rel.is_empty() {
                    stack.push(name.to_string());
                } else {
                    stack.push(format!("{rel}/{name}"));
                }
            }
        }
        versions
    }

    fn list_vdir(
        &self,
        module: &str,
        versions: &mut BTreeMap<String, Parts>,
        errors: &mut Vec<String>,
        ignored: &mut u64,
    ) {
        let rel = vdir_rel(module);
        let items = match std::fs::read_dir(self.root.join(&rel)) {
            Ok(items) => items,
            Err(e) => {
                errors.push(format!("{}: {e}", rel.display()));
                return;
            }
        };
        for item in items.flatten() {
            let name = item.file_name();
            match name.to_str().and_then(parse_vfile) {
                Some((_, VFile::Lock)) | None => *ignored += 1,
                Some((version, kind)) => {
                    versions
                        .entry(format!("{module}@{version}"))
                        .or_default()
                        .files
                        .push((name.clone(), kind));
                }
            }
        }
    }

    /// The sumdb cache and the VCS clones.
    fn scan_others(&self, out: &mut ScanResult<ModId>) {
        if let Some(meta) = self.stat_sumdb() {
            out.entries.push((
                ModId {
                    key: Arc::from(""),
                    role: Role::Sumdb,
                },
                meta,
            ));
        }
        let Ok(items) = std::fs::read_dir(self.root.join("cache/vcs")) else {
            return;
        };
        let mut hashes: Vec<String> = items
            .flatten()
            .filter_map(|i| {
                let name = i.file_name().into_string().ok()?;
                let hash = name.strip_suffix(".info").unwrap_or(&name);
                is_vcs_hash(hash).then(|| hash.to_string())
            })
            .collect();
        hashes.sort();
        hashes.dedup();
        for hash in hashes {
            if let Some(meta) = self.stat_vcs(&hash) {
                out.entries.push((
                    ModId {
                        key: Arc::from(hash.as_str()),
                        role: Role::Vcs,
                    },
                    meta,
                ));
            }
        }
    }

    fn stat_sumdb(&self) -> Option<EntryMeta> {
        let download = open_dir_below(&self.root, Path::new("cache/download")).ok()?;
        let t = stat_tree_at(&download, OsStr::new("sumdb")).ok()?;
        Some(EntryMeta {
            disk_bytes: t.disk,
            apparent_bytes: t.apparent,
            last_use: if t.last_use == i64::MIN {
                (t.changed_ns / 1_000_000_000) as i64
            } else {
                t.last_use
            },
            aux: 0,
        })
    }

    fn stat_vcs(&self, hash: &str) -> Option<EntryMeta> {
        let vcs = open_dir_below(&self.root, Path::new("cache/vcs")).ok()?;
        let mut meta = EntryMeta {
            disk_bytes: 0,
            apparent_bytes: 0,
            last_use: i64::MIN,
            aux: 0,
        };
        let mut found = false;
        if let Ok(t) = stat_tree_at(&vcs, OsStr::new(hash)) {
            found = true;
            meta.disk_bytes += t.disk;
            meta.apparent_bytes += t.apparent;
            meta.last_use = t.last_use.max((t.changed_ns / 1_000_000_000) as i64);
        }
        if let Ok(st) = stat_at(&vcs, OsStr::new(&format!("{hash}.info"))) {
            found = true;
            meta.disk_bytes += fsutil::disk_usage_stat(&st);
            meta.apparent_bytes += st.st_size as u64;
            meta.last_use = meta.last_use.max(fsutil::last_use_stat(&st));
        }
        found.then_some(meta)
    }

    // -- locking ------------------------------------------------------------------------

    /// Takes go's version lock (`lockVersion`), creating `@v` and the lock file if
    /// `create` (as go does); never waits for go, only for our own threads.
    fn lock_version(&self, key: &Arc<str>, create: bool) -> Result<Locked<'_>, LockError> {
        let claim = self.claims.claim(key);
        let Some((module, version)) = split_key(key) else {
            return Err(LockError::Io(format!("{key}: not module@version")));
        };
        let rel = vdir_rel(module);
        let vdir = if create {
            open_or_create_dir_beneath(&self.root, &rel)
        } else {
            open_dir_below(&self.root, &rel)
        };
        let vdir = match vdir {
            Ok(fd) => fd,
            Err(e) if !create && matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                return Err(LockError::NoDir)
            }
            Err(e) => return Err(LockError::Io(format!("{}: {e}", rel.display()))),
        };
        let name = format!("{version}.lock");
        let lock_path = rel.join(&name);
        let mut flags = OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        if create {
            flags |= OFlag::O_CREAT;
        }
        let fd = match nix::fcntl::openat(
            &vdir,
            name.as_str(),
            flags,
            Mode::from_bits_truncate(0o666),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if !create => return Err(LockError::NoDir),
            Err(e) => return Err(LockError::Io(format!("{}: {e}", lock_path.display()))),
        };
        match Flock::lock(std::fs::File::from(fd), FlockArg::LockExclusiveNonblock) {
            Ok(flock) => Ok(Locked {
                vdir,
                _flock: flock,
                _claim: claim,
            }),
            Err((_, Errno::EWOULDBLOCK)) => Err(LockError::Busy(format!(
                "go holds {}: it is downloading or extracting this version; retried later",
                lock_path.display()
            ))),
            Err((_, e)) => Err(LockError::Io(format!(
                "locking {}: {e}",
                lock_path.display()
            ))),
        }
    }

    // -- verification -------------------------------------------------------------------

    fn stale(&self, st: &FileStat) -> bool {
        st.st_mtime < crate::now() - self.min_age_secs.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn read_ziphash(&self, vdir: &OwnedFd, version: &str) -> Result<String, Finding> {
        let name = format!("{version}.ziphash");
        match read_small(vdir, OsStr::new(&name)) {
            Ok(bytes) => parse_ziphash(&bytes).ok_or_else(|| Finding {
                problem: "ziphash-malformed",
                detail: format!(
                    "{name} holds {:?}, not \"h1:\" + base64 of a SHA-256 (go fails with \"unexpected ziphash\")",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
                ),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Finding {
                problem: "ziphash-missing",
                detail: format!("{name} is missing: go treats the version as incomplete and cannot verify it"),
            }),
            Err(e) => Err(Finding {
                problem: "unreadable",
                detail: format!("{name}: {e}"),
            }),
        }
    }

    /// Everything wrong with one role of a version, without locks.
    fn check(&self, id: &ModId, parts: &Parts) -> Vec<Finding> {
        let mut found = Vec::new();
        let Some((module, version)) = split_key(&id.key) else {
            return found;
        };
        let real = unescape(&id.key).unwrap_or_else(|| id.key.to_string());
        let rel = vdir_rel(module);
        let vdir = open_dir_below(&self.root, &rel).ok();
        let stale_files = |kinds: &[VFile], found: &mut Vec<Finding>| {
            let Some(vdir) = &vdir else { return };
            for name in parts.names(kinds) {
                if stat_at(vdir, name).is_ok_and(|st| self.stale(&st)) {
                    found.push(Finding {
                        problem: "stale-temp",
                        detail: format!(
                            "{}/{} is a temp file older than min_age, left by an interrupted go command",
                            rel.display(),
                            name.to_string_lossy()
                        ),
                    });
                }
            }
        };
        match id.role {
            Role::Tree => {
                let (parent_rel, name) = tree_location(&id.key);
                if !parts.tmp_dirs.is_empty() {
                    if let Ok(parent) = open_dir_below(&self.root, parent_rel) {
                        for tmp in &parts.tmp_dirs {
                            if stat_at(&parent, tmp).is_ok_and(|st| self.stale(&st)) {
                                found.push(Finding {
                                    problem: "stale-temp",
                                    detail: format!(
                                        "{} is an extraction temp dir older than min_age (go < 1.16)",
                                        parent_rel.join(tmp).display()
                                    ),
                                });
                            }
                        }
                    }
                }
                if parts.has(VFile::Partial) {
                    found.push(Finding {
                        problem: "partial",
                        detail: format!(
                            "{}/{version}.partial is left by an interrupted extraction: the tree is incomplete (go re-extracts it)",
                            rel.display()
                        ),
                    });
                    return found;
                }
                if !parts.tree {
                    return found;
                }
                let ziphash = match vdir.as_ref().map(|v| self.read_ziphash(v, version)) {
                    Some(Ok(h)) => h,
                    Some(Err(f)) => {
                        found.push(f);
                        return found;
                    }
                    None => {
                        found.push(Finding {
                            problem: "ziphash-missing",
                            detail: format!(
                                "{}/{version}.ziphash is missing: go treats the tree as incomplete",
                                rel.display()
                            ),
                        });
                        return found;
                    }
                };
                let fingerprint = open_dir_below(&self.root, parent_rel)
                    .and_then(|p| stat_tree_at(&p, OsStr::new(name)));
                let fingerprint = match fingerprint {
                    Ok(t) => (t.changed_ns, t.apparent, t.files, ziphash.clone()),
                    Err(e) => {
                        found.push(Finding {
                            problem: "unreadable",
                            detail: format!("{}: {e}", id.key),
                        });
                        return found;
                    }
                };
                let cache_key = (id.key.clone(), Role::Tree);
                if self.verified.lock().unwrap().get(&cache_key) == Some(&fingerprint) {
                    return found;
                }
                match hash_dir(&self.root, Path::new(&*id.key), &real) {
                    Ok(h) if h == ziphash => {
                        self.verified.lock().unwrap().insert(cache_key, fingerprint);
                    }
                    Ok(h) => found.push(Finding {
                        problem: "tree-hash-mismatch",
                        detail: format!(
                            "{} hashes to {h}, not {ziphash} as {version}.ziphash says: files were edited, added or removed (go mod verify: dir has been modified)",
                            id.key
                        ),
                    }),
                    Err(TreeHashError::NotRegular(file)) => found.push(Finding {
                        problem: "tree-hash-mismatch",
                        detail: format!("{file} is not a regular file: module trees hold only regular files"),
                    }),
                    Err(TreeHashError::Name(e)) => found.push(Finding {
                        problem: "tree-hash-mismatch",
                        detail: format!("{}: {e}", id.key),
                    }),
                    Err(TreeHashError::Io(e)) => found.push(Finding {
                        problem: "unreadable",
                        detail: format!("{}: {e}", id.key),
                    }),
                }
            }
            Role::Zip => {
                stale_files(&[VFile::ZipTemp], &mut found);
                let Some(vdir) = &vdir else { return found };
                let has_zip = parts.has(VFile::Zip);
                let ziphash = if has_zip || parts.has(VFile::Ziphash) {
                    match self.read_ziphash(vdir, version) {
                        Ok(h) => Some(h),
                        Err(f) if f.problem == "ziphash-missing" && !has_zip => None,
                        Err(f) => {
                            found.push(f);
                            None
                        }
                    }
                } else {
                    None
                };
                if !has_zip {
                    return found;
                }
                let zip_name = format!("{version}.zip");
                let fd = match open_noatime(vdir, OsStr::new(&zip_name), OFlag::O_RDONLY) {
                    Ok(fd) => fd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return found,
                    Err(e) => {
                        found.push(Finding {
                            problem: "unreadable",
                            detail: format!("{}/{zip_name}: {e}", rel.display()),
                        });
                        return found;
                    }
                };
                let file = std::fs::File::from(fd);
                let fingerprint = nix::sys::stat::fstat(&file).ok().map(|st| {
                    (
                        changed_ns(&st),
                        st.st_size as u64,
                        0u64,
                        ziphash.clone().unwrap_or_default(),
                    )
                });
                let cache_key = (id.key.clone(), Role::Zip);
                if ziphash.is_some()
                    && fingerprint.is_some()
                    && self.verified.lock().unwrap().get(&cache_key) == fingerprint.as_ref()
                {
                    return found;
                }
                match hash_zip(file) {
                    Err(e) => found.push(Finding {
                        problem: "zip-corrupt",
                        detail: format!(
                            "{}/{zip_name} cannot be read ({e}): go fails on it and never re-downloads it",
                            rel.display()
                        ),
                    }),
                    Ok(h) => match &ziphash {
                        Some(want) if *want == h => {
                            if let Some(fp) = fingerprint {
                                self.verified.lock().unwrap().insert(cache_key, fp);
                            }
                        }
                        Some(want) => found.push(Finding {
                            problem: "zip-hash-mismatch",
                            detail: format!(
                                "{}/{zip_name} hashes to {h}, not {want} (go mod verify: zip has been modified)",
                                rel.display()
                            ),
                        }),
                        None => {}
                    },
                }
            }
            Role::Meta => {
                stale_files(&[VFile::MetaTemp], &mut found);
                let Some(vdir) = &vdir else { return found };
                let real_version = unescape(version).unwrap_or_else(|| version.to_string());
                // Incremental too: unchanged since they last parsed clean.
                let mut fingerprint: Fingerprint = (0, 0, 0, String::new());
                for kind in [VFile::Info, VFile::Mod] {
                    for name in parts.names(&[kind]) {
                        if let Ok(st) = stat_at(vdir, name) {
                            fingerprint.0 = fingerprint.0.max(changed_ns(&st));
                            fingerprint.1 += st.st_size as u64;
                            fingerprint.2 += 1;
                        }
                    }
                }
                let cache_key = (id.key.clone(), Role::Meta);
                if self.verified.lock().unwrap().get(&cache_key) == Some(&fingerprint) {
                    return found;
                }
                for (file, extension, problem) in [
                    (VFile::Info, "info", "info-garbled"),
                    (VFile::Mod, "mod", "mod-garbled"),
                ] {
                    if !parts.has(file) {
                        continue;
                    }
                    let name = format!("{version}.{extension}");
                    let why = match read_small(vdir, OsStr::new(&name)) {
                        Ok(bytes) => {
                            let checked = match file {
                                VFile::Info => info_ok(&bytes, &real_version),
                                _ => mod_ok(&bytes).map_err(String::from),
                            };
                            match checked {
                                Ok(()) => continue,
                                Err(why) => (problem, why),
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => ("unreadable", e.to_string()),
                    };
                    found.push(Finding {
                        problem: why.0,
                        detail: format!("{}/{name}: {}", rel.display(), why.1),
                    });
                }
                if found.is_empty() {
                    self.verified.lock().unwrap().insert(cache_key, fingerprint);
                }
            }
            Role::Sumdb | Role::Vcs => {}
        }
        found
    }

    // -- removal ------------------------------------------------------------------------

    /// Creates `<ver>.partial`; `true` if we created it.
    fn mark_partial(vdir: &OwnedFd, version: &str) -> io::Result<bool> {
        let name = format!("{version}.partial");
        match nix::fcntl::openat(
            vdir,
            name.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        ) {
            Ok(_) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the tree and its temp dirs (the `.partial` marker must be in place).
    fn remove_tree(&self, key: &str, parts: &Parts) -> io::Result<()> {
        let (parent_rel, name) = tree_location(key);
        let parent = match open_dir_below(&self.root, parent_rel) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        fsutil::remove_tree_at(&parent, OsStr::new(name))?;
        for tmp in &parts.tmp_dirs {
            fsutil::remove_tree_at(&parent, tmp)?;
        }
        Ok(())
    }

    /// Rewrites `list` from the `.mod` files present, exactly as go's
    /// `rewriteVersionList` does, under the flock go takes on it (go holds it for
    /// microseconds: we retry briefly rather than block).
    fn rewrite_list(vdir: &OwnedFd) -> io::Result<()> {
        let fd = match nix::fcntl::openat(
            vdir,
            "list",
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        ) {
            Ok(fd) => fd,
            Err(e) => return Err(io::Error::other(format!("opening list: {e}"))),
        };
        let mut file = std::fs::File::from(fd);
        let mut tries = 0;
        let lock = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => break lock,
                Err((f, Errno::EWOULDBLOCK)) if tries < 100 => {
                    file = f;
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((_, e)) => return Err(io::Error::other(format!("locking list: {e}"))),
            }
        };
        let mut dir = Dir::from_fd(nix::fcntl::openat(vdir, ".", DIR_FLAGS, Mode::empty())?)?;
        let mut versions: Vec<String> = list(&mut dir)?
            .into_iter()
            .filter_map(|(name, _)| {
                let v = name.to_str()?.strip_suffix(".mod")?;
                (!v.is_empty() && is_canonical_version(v)).then(|| v.to_string())
            })
            .collect();
        sort_versions(&mut versions);
        let text: String = versions.iter().map(|v| format!("{v}\n")).collect();
        let current = {
            let mut buf = vec![0u8; text.len() + 1];
            let n = lock.read_at(&mut buf, 0).unwrap_or(usize::MAX);
            (n == text.len()).then(|| buf[..n].to_vec())
        };
        if current.as_deref() == Some(text.as_bytes()) {
            return Ok(());
        }
        // As go: empty it, reserve the size (zero-filled), write.
        lock.set_len(0)?;
        lock.set_len(text.len() as u64)?;
        lock.write_all_at(text.as_bytes(), 0)?;
        Ok(())
    }

    fn remove_version(&self, id: &ModId, used_before: UnixTime, how: Removing) -> Removal {
        let Some((_, version)) = split_key(&id.key) else {
            return Removal::Gone;
        };
        let locked = match self.lock_version(&id.key, true) {
            Ok(l) => l,
            Err(LockError::Busy(why)) => return Removal::LockBusy(why),
            Err(LockError::NoDir) => return Removal::Gone,
            Err(LockError::Io(why)) => return Removal::Skipped(format!("cannot lock: {why}")),
        };
        let parts = match self.list_parts(&id.key) {
            Ok(p) => p,
            Err(e) => return Removal::Skipped(format!("cannot list {}: {e}", id.key)),
        };
        let ex = self.examine(&id.key, &parts);
        if ex.role(id.role).is_none() {
            return Removal::Gone;
        }
        if ex.last_use > used_before {
            return Removal::Skipped(format!(
                "used since the plan was made (last use {})",
                ex.last_use
            ));
        }

        // What goes.
        let codes: Vec<&str> = match how {
            Removing::Repair(found) => found.iter().map(|f| f.problem).collect(),
            Removing::Evict(_) => Vec::new(),
        };
        let has = |c: &str| codes.contains(&c);
        let repair = matches!(how, Removing::Repair(_));
        let (drop_tree, drop_zip, drop_meta) = match (id.role, repair) {
            (Role::Tree, false) => (true, false, false),
            (Role::Zip, false) => (true, true, false),
            (Role::Meta, false) => (true, true, true),
            (Role::Tree, true) => (
                [
                    "partial",
                    "tree-hash-mismatch",
                    "ziphash-missing",
                    "ziphash-malformed",
                    "unreadable",
                ]
                .iter()
                .any(|c| has(c)),
                false,
                false,
            ),
            (Role::Zip, true) => (
                false,
                [
                    "zip-corrupt",
                    "zip-hash-mismatch",
                    "ziphash-missing",
                    "ziphash-malformed",
                    "unreadable",
                ]
                .iter()
                .any(|c| has(c)),
                false,
            ),
            (Role::Meta, true) => (false, false, false),
            (Role::Sumdb | Role::Vcs, _) => (false, false, false),
        };
        let tree_exists = parts.tree || !parts.tmp_dirs.is_empty();
        let vdir = &locked.vdir;

        // The marker first, then the last look for go commands.
        let mut marked = false;
        if drop_tree && tree_exists {
            match Self::mark_partial(vdir, version) {
                Ok(created) => marked = created,
                Err(e) => return Removal::Skipped(format!("cannot create {version}.partial: {e}")),
            }
        }
        if let Some(by) = self.go_running() {
            if marked {
                let _ = unlink_at(vdir, OsStr::new(&format!("{version}.partial")));
            }
            return Removal::InUse(format!(
                "{by} may read this version; deferred until it exits"
            ));
        }

        let attempt = || -> io::Result<u64> {
            let mut freed = 0;
            if drop_zip {
                // .zip before .ziphash: a zip must never outlive its hash's removal.
                unlink_at(vdir, OsStr::new(&format!("{version}.zip")))?;
                unlink_at(vdir, OsStr::new(&format!("{version}.ziphash")))?;
                // Under the lock every download temp is dead (downloadZip does the same).
                for name in parts.names(&[VFile::ZipTemp]) {
                    unlink_at(vdir, name)?;
                }
                freed += ex.zip.map_or(0, |s| s.disk);
            } else if repair && id.role == Role::Zip && has("stale-temp") {
                for name in parts.names(&[VFile::ZipTemp]) {
                    unlink_at(vdir, name)?;
                }
            }
            if drop_tree {
                self.remove_tree(&id.key, &parts)?;
                unlink_at(vdir, OsStr::new(&format!("{version}.partial")))?;
                freed += ex.tree.map_or(0, |s| s.disk);
            } else if repair && id.role == Role::Tree && has("stale-temp") {
                let (parent_rel, _) = tree_location(&id.key);
                let parent = open_dir_below(&self.root, parent_rel)?;
                for tmp in &parts.tmp_dirs {
                    fsutil::remove_tree_at(&parent, tmp)?;
                }
            }
            let mut list_changed = false;
            if drop_meta || (repair && id.role == Role::Meta) {
                let old_enough = |name: &OsStr| stat_at(vdir, name).is_ok_and(|st| self.stale(&st));
                for (name, kind) in &parts.files {
                    let go = match kind {
                        VFile::Info => drop_meta || has("info-garbled"),
                        VFile::Mod => drop_meta || has("mod-garbled"),
                        // Written without the version lock: only old ones are dead.
                        VFile::MetaTemp => (drop_meta || has("stale-temp")) && old_enough(name),
                        _ => false,
                    };
                    if go && unlink_at(vdir, name)? && *kind == VFile::Mod {
                        list_changed = true;
                    }
                }
                if drop_meta {
                    freed += ex.meta.map_or(0, |s| s.disk);
                }
            }
            if list_changed {
                Self::rewrite_list(vdir)?;
            }
            Ok(freed)
        };
        let result = attempt();
        {
            let mut verified = self.verified.lock().unwrap();
            verified.remove(&(id.key.clone(), Role::Tree));
            verified.remove(&(id.key.clone(), Role::Zip));
        }
        match result {
            Ok(freed) => Removal::Removed { disk_bytes: freed },
            // The marker (if any) stays: the tree is recognisably incomplete to go.
            Err(e) => Removal::Failed(format!("removing {}: {e}", id.key)),
        }
    }

    fn remove_sumdb(&self, used_before: UnixTime) -> Removal {
        let Some(meta) = self.stat_sumdb() else {
            return Removal::Gone;
        };
        if meta.last_use > used_before {
            return Removal::Skipped(format!(
                "used since the plan was made (last use {})",
                meta.last_use
            ));
        }
        if let Some(by) = self.go_running() {
            return Removal::InUse(format!("{by} may read it; deferred until it exits"));
        }
        let removed = open_dir_below(&self.root, Path::new("cache/download"))
            .and_then(|d| fsutil::remove_tree_at(&d, OsStr::new("sumdb")));
        match removed {
            Ok(_) => Removal::Removed {
                disk_bytes: meta.disk_bytes,
            },
            Err(e) => Removal::Failed(format!("removing {SUMDB_NAME}: {e}")),
        }
    }

    /// A VCS clone, under its lock (`codehost.WorkDir`): `.info` first, so a half-removed
    /// clone is one go starts over.
    fn remove_vcs(&self, hash: &str, used_before: UnixTime) -> Removal {
        if !is_vcs_hash(hash) {
            return Removal::Gone;
        }
        let Some(meta) = self.stat_vcs(hash) else {
            return Removal::Gone;
        };
        let vcs = match open_dir_below(&self.root, Path::new("cache/vcs")) {
            Ok(d) => d,
            Err(e) => return Removal::Skipped(format!("cache/vcs: {e}")),
        };
        let lock_name = format!("{hash}.lock");
        let fd = match nix::fcntl::openat(
            &vcs,
            lock_name.as_str(),
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        ) {
            Ok(fd) => fd,
            Err(e) => return Removal::Skipped(format!("cache/vcs/{lock_name}: {e}")),
        };
        let _lock = match Flock::lock(std::fs::File::from(fd), FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Removal::LockBusy(format!("go holds cache/vcs/{lock_name}; retried later"))
            }
            Err((_, e)) => return Removal::Skipped(format!("locking cache/vcs/{lock_name}: {e}")),
        };
        if meta.last_use > used_before {
            return Removal::Skipped(format!(
                "used since the plan was made (last use {})",
                meta.last_use
            ));
        }
        if let Some(by) = self.go_running() {
            return Removal::InUse(format!("{by} may use it; deferred until it exits"));
        }
        let removed = unlink_at(&vcs, OsStr::new(&format!("{hash}.info")))
            .and_then(|_| fsutil::remove_tree_at(&vcs, OsStr::new(hash)));
        match removed {
            Ok(_) => Removal::Removed {
                disk_bytes: meta.disk_bytes,
            },
            Err(e) => Removal::Failed(format!("removing cache/vcs/{hash}: {e}")),
        }
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
        let mut result = ScanResult {
            entries: Vec::new(),
            ignored_files: 0,
            errors: Vec::new(),
            stamps: Vec::new(),
        };
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

    /// `cache/download` recursively (every version change touches its `@v` directory,
    /// extraction included: `.partial` comes and goes there) and `cache/vcs` itself when
    /// it exists. Trees are not watched: they change only under `.partial`.
    fn watch_dirs(&self) -> Vec<WatchDir> {
        let mut dirs = vec![WatchDir {
            path: self.root.join("cache/download"),
            depth: u32::MAX,
        }];
        let vcs = self.root.join("cache/vcs");
        if vcs.is_dir() {
            dirs.push(WatchDir {
                path: vcs,
                depth: 0,
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

    fn configure(&self, config: &crate::config::CacheConfig) {
        let secs = i64::try_from(config.limits.min_age.as_secs()).unwrap_or(i64::MAX);
        self.min_age_secs
            .store(secs, std::sync::atomic::Ordering::Relaxed);
        *self.guard.write().unwrap() = config.guard_processes.clone();
    }

    fn in_use(&self) -> Option<InUse> {
        (self.in_use)(&self.root, &self.guard.read().unwrap())
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::kinds::Survivors;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    /// Writes a module zip the way a proxy serves it: every entry `module@version/name`.
    pub fn write_zip(path: &Path, module: &str, version: &str, files: &[(&str, &[u8])]) {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in files {
            zip.start_file(format!("{module}@{version}/{name}"), opts)
                .unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }

    fn set_times(path: &Path, t: i64) {
        let ft = filetime::FileTime::from_unix_time(t, 0);
        for e in walkdir::WalkDir::new(path).contents_first(true) {
            let e = e.unwrap();
            filetime::set_symlink_file_times(e.path(), ft, ft).unwrap();
        }
    }

    /// Puts one module version into a module cache as `go mod download` leaves it:
    /// .info, .mod, .zip, .ziphash, .lock, `list`, and the read-only extracted tree, all
    /// last used at `t`. Returns the key.
    pub fn put_version(
        root: &Path,
        module: &str,
        version: &str,
        files: &[(&str, &[u8])],
        t: i64,
    ) -> Arc<str> {
        let (m, v) = (escape(module).unwrap(), escape(version).unwrap());
        let vdir = root.join(vdir_rel(&m));
        std::fs::create_dir_all(&vdir).unwrap();
        let zip = vdir.join(format!("{v}.zip"));
        write_zip(&zip, module, version, files);
        let h = hash_zip(std::fs::File::open(&zip).unwrap()).unwrap();
        std::fs::write(vdir.join(format!("{v}.ziphash")), &h).unwrap();
        std::fs::write(vdir.join(format!("{v}.lock")), b"").unwrap();
        std::fs::write(
            vdir.join(format!("{v}.info")),
            format!("{{\"Version\":\"{version}\",\"Time\":\"2024-01-01T00:00:00Z\"}}"),
        )
        .unwrap();
        let gomod = files
            .iter()
            .find(|(n, _)| *n == "go.mod")
            .map_or(format!("module {module}\n").into_bytes(), |(_, d)| {
                d.to_vec()
            });
        std::fs::write(vdir.join(format!("{v}.mod")), gomod).unwrap();
        let mut versions: Vec<String> = std::fs::read_dir(&vdir)
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().into_string().unwrap();
                n.strip_suffix(".mod").map(str::to_string)
            })
            .collect();
        sort_versions(&mut versions);
        std::fs::write(
            vdir.join("list"),
            versions
                .iter()
                .map(|v| format!("{v}\n"))
                .collect::<String>(),
        )
        .unwrap();
        let tree = root.join(format!("{m}@{v}"));
        for (name, data) in files {
            let p = tree.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
        for e in walkdir::WalkDir::new(&tree).contents_first(true) {
            let e = e.unwrap();
            if e.file_type().is_dir() {
                std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
            }
        }
        set_times(&tree, t);
        for ext in ["zip", "ziphash", "info", "mod"] {
            set_times(&vdir.join(format!("{v}.{ext}")), t);
        }
        Arc::from(format!("{m}@{v}").as_str())
    }

    fn files_v(n: u8) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("go.mod", b"module example.com/Hello\n\ngo 1.19\n".to_vec()),
            (
                "hello.go",
                format!("package hello\n\nconst N = {n}\n").into_bytes(),
            ),
            ("sub/data.txt", vec![n; 5000]),
        ]
    }

    fn put(root: &Path, module: &str, version: &str, n: u8, t: i64) -> Arc<str> {
        let files = files_v(n);
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(a, b)| (*a, b.as_slice())).collect();
        put_version(root, module, version, &refs, t)
    }

    fn kind(root: &Path) -> GoModKind {
        let mut k = GoModKind::new(root.to_path_buf(), Duration::from_secs(3600));
        k.in_use = |_, _| None;
        k
    }

    fn id(key: &Arc<str>, role: Role) -> ModId {
        ModId::version(key, role)
    }

    fn codes(found: Vec<Finding>) -> Vec<&'static str> {
        let mut c: Vec<_> = found.into_iter().map(|f| f.problem).collect();
        c.sort();
        c
    }

    /// Make a read-only file of a tree writable, as a user editing it would.
    fn edit(path: &Path, content: &[u8]) {
        let dir = path.parent().unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::write(path, content).unwrap();
    }

    #[test]
    fn case_escaping_matches_go() {
        assert_eq!(
            escape("github.com/BurntSushi/toml").unwrap(),
            "github.com/!burnt!sushi/toml"
        );
        assert_eq!(
            unescape("github.com/!burnt!sushi/toml").unwrap(),
            "github.com/BurntSushi/toml"
        );
        assert_eq!(unescape("v1.0.0-!r!c1").unwrap(), "v1.0.0-RC1");
        assert!(
            unescape("github.com/Burnt").is_none(),
            "upper case is not escaped form"
        );
        assert!(
            unescape("a!").is_none() && unescape("a!1").is_none() && unescape("a!!b").is_none()
        );
        assert!(escape("a!b").is_none() && escape("ü").is_none());
    }

    #[test]
    fn versions_sort_as_semver_does() {
        for v in [
            "v1.0.0",
            "v0.0.0-20200101000000-abcdefabcdef",
            "v2.0.0+incompatible",
            "v1.2.3-rc.1",
        ] {
            assert!(is_canonical_version(v), "{v}");
        }
        for v in [
            "v1",
            "v1.2",
            "1.0.0",
            "v1.0.0+build",
            "v01.0.0",
            "v1.0.0-01",
            "v1.0.0-",
            "v1.0.0.tmp-1",
        ] {
            assert!(!is_canonical_version(v), "{v}");
        }
        // The semver.org precedence example, shuffled.
        let want = [
            "v1.0.0-alpha",
            "v1.0.0-alpha.1",
            "v1.0.0-alpha.beta",
            "v1.0.0-beta",
            "v1.0.0-beta.2",
            "v1.0.0-beta.11",
            "v1.0.0-rc.1",
            "v1.0.0",
            "v1.2.0",
            "v1.10.0",
            "v2.0.0+incompatible",
        ];
        let mut got: Vec<String> = want.iter().rev().map(|s| s.to_string()).collect();
        got.swap(2, 7);
        sort_versions(&mut got);
        assert_eq!(got, want);
    }

    /// Vectors from go1.19: `go mod download -json` of a module served from a file://
    /// proxy with exactly these files printed these Sum and GoModSum (and wrote them to
    /// go.sum and the .ziphash).
    #[test]
    fn hashes_match_real_go_output() {
        let files: [(&str, &[u8]); 4] = [
            ("go.mod", b"module example.com/Hello\n\ngo 1.19\n"),
            (
                "hello.go",
                b"package hello\n\n// Greeting says hello.\nconst Greeting = \"hello\"\n",
            ),
            ("sub/data.txt", b"two  spaces and a newline\n"),
            ("LICENSE", b"Public domain.\n"),
        ];
        const SUM: &str = "h1:ot8331Zhp7El6q3XpsW1X8yDaWgK9GDizaEfnA64YH0=";
        const GO_MOD_SUM: &str = "h1:Ujqv6D3TiGFVgA/p4BVj4WbisobGKr5FKXi6Lk0m1Zs=";
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("v1.0.0.zip");
        write_zip(&zip, "example.com/Hello", "v1.0.0", &files);
        assert_eq!(hash_zip(std::fs::File::open(&zip).unwrap()).unwrap(), SUM);
        // Zip metadata (order, compression) does not matter, names and contents do.
        let mut reversed = files;
        reversed.reverse();
        write_zip(&zip, "example.com/Hello", "v1.0.0", &reversed);
        assert_eq!(hash_zip(std::fs::File::open(&zip).unwrap()).unwrap(), SUM);
        let key = put_version(dir.path(), "example.com/Hello", "v1.0.0", &files, 1);
        assert_eq!(&*key, "example.com/!hello@v1.0.0");
        assert_eq!(
            hash_dir(dir.path(), Path::new(&*key), "example.com/Hello@v1.0.0").unwrap(),
            SUM
        );
        assert_eq!(go_mod_hash(files[0].1), GO_MOD_SUM);
        assert!(parse_ziphash(SUM.as_bytes()).is_some());
        assert!(
            parse_ziphash(format!("{SUM}\n").as_bytes()).is_some(),
            "go trims space"
        );
        assert!(parse_ziphash(b"h1:short").is_none());
        assert!(parse_ziphash(b"\0\0\0").is_none());
        // A truncated zip is unreadable, as for go.
        let bytes = std::fs::read(&zip).unwrap();
        std::fs::write(&zip, &bytes[..bytes.len() - 30]).unwrap();
        assert!(hash_zip(std::fs::File::open(&zip).unwrap()).is_err());
    }

    #[test]
    fn file_names_map_to_versions_and_roles() {
        assert_eq!(parse_vfile("v1.0.0.zip"), Some(("v1.0.0", VFile::Zip)));
        assert_eq!(
            parse_vfile("v1.2.3-rc.1.ziphash"),
            Some(("v1.2.3-rc.1", VFile::Ziphash))
        );
        assert_eq!(
            parse_vfile("v1.0.0.zip123456.tmp"),
            Some(("v1.0.0", VFile::ZipTemp))
        );
        assert_eq!(
            parse_vfile("v1.0.0.mod0.tmp"),
            Some(("v1.0.0", VFile::MetaTemp))
        );
        assert_eq!(
            parse_vfile("v1.0.0-!r!c1.lock"),
            Some(("v1.0.0-!r!c1", VFile::Lock))
        );
        assert_eq!(parse_vfile("list"), None);
        assert_eq!(parse_vfile("v1.0.zip"), None);
        assert_eq!(
            parse_tree_name("errors@v0.9.1"),
            Some(("errors", "v0.9.1", false))
        );
        assert_eq!(
            parse_tree_name("errors@v0.9.1.tmp-123"),
            Some(("errors", "v0.9.1", true))
        );
        assert_eq!(parse_tree_name("errors@latest"), None);

        let k = kind(Path::new("/x"));
        let mut out = Vec::new();
        k.entries_at(
            Path::new("cache/download/github.com/!burnt!sushi/toml/@v/v1.0.0.ziphash"),
            &mut out,
        );
        let key: Arc<str> = Arc::from("github.com/!burnt!sushi/toml@v1.0.0");
        assert_eq!(
            out,
            [
                id(&key, Role::Tree),
                id(&key, Role::Zip),
                id(&key, Role::Meta)
            ]
        );
        for ignored in [
            "cache/download/github.com/pkg/errors/@v/v0.9.1.lock",
            "cache/download/github.com/pkg/errors/@v/list",
            "cache/download/github.com/pkg/errors/@v",
            "cache/lock",
        ] {
            out.clear();
            k.entries_at(Path::new(ignored), &mut out);
            assert!(out.is_empty(), "{ignored}");
        }
        out.clear();
        k.entries_at(
            Path::new("github.com/!burnt!sushi/toml@v1.0.0/decode.go"),
            &mut out,
        );
        assert_eq!(out[0], id(&key, Role::Tree));
        assert_eq!(
            k.entry_at(Path::new("cache/download/sumdb/sum.golang.org/lookup/x"))
                .unwrap()
                .role,
            Role::Sumdb
        );
        let hash = "ab".repeat(32);
        assert_eq!(
            k.entry_at(Path::new(&format!("cache/vcs/{hash}.info")))
                .unwrap(),
            ModId {
                key: Arc::from(hash.as_str()),
                role: Role::Vcs
            }
        );

        assert_eq!(
            k.name_of(&id(&key, Role::Zip)),
            "github.com/BurntSushi/toml@v1.0.0"
        );
        assert_eq!(
            k.path_of(&id(&key, Role::Tree)),
            "github.com/!burnt!sushi/toml@v1.0.0"
        );
        assert_eq!(
            k.path_of(&id(&key, Role::Zip)),
            "cache/download/github.com/!burnt!sushi/toml/@v/v1.0.0.zip"
        );
        assert_eq!(
            k.parse_name("github.com/BurntSushi/toml@v1.0.0"),
            Some(id(&key, Role::Tree))
        );
        assert_eq!(k.parse_name("../../etc@v1.0.0"), None);
        assert_eq!(k.parse_name("github.com/x@latest"), None);
        assert_eq!(k.tier(&id(&key, Role::Tree)), 0);
        assert_eq!(k.tier(&id(&key, Role::Zip)), 1);
        assert_eq!(k.tier(&id(&key, Role::Meta)), AGE_ONLY);
    }

    #[test]
    fn scan_finds_every_part_of_every_version() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = crate::now() - 10 * 86400;
        let a = put(root, "example.com/Hello", "v1.0.0", 1, old);
        let b = put(root, "example.com/Hello", "v1.1.0", 2, old + 100);
        let c = put(root, "golang.org/x/text", "v0.3.0", 3, old);
        // Nested module path next to its parent's versions.
        let d = put(root, "golang.org/x/text/sub", "v0.1.0", 4, old);
        // Only the download files, no tree (tier-0 evicted).
        let e = put(root, "example.com/zonly", "v1.0.0", 5, old);
        fsutil::remove_tree_at(
            open_dir_below(root, Path::new("example.com")).unwrap(),
            OsStr::new("zonly@v1.0.0"),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("cache/download/sumdb/sum.golang.org/lookup")).unwrap();
        std::fs::write(
            root.join("cache/download/sumdb/sum.golang.org/lookup/x@v1"),
            b"tile",
        )
        .unwrap();
        let hash = "cd".repeat(32);
        std::fs::create_dir_all(root.join("cache/vcs").join(&hash).join("objects")).unwrap();
        std::fs::write(root.join("cache/vcs").join(&hash).join("HEAD"), b"ref").unwrap();
        std::fs::write(root.join(format!("cache/vcs/{hash}.info")), b"git3:x").unwrap();
        std::fs::write(root.join(format!("cache/vcs/{hash}.lock")), b"").unwrap();
        std::fs::write(root.join("cache/lock"), b"").unwrap();

        let k = kind(root);
        let found = k.scan();
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        let get = |key: &Arc<str>, role| {
            found
                .entries
                .iter()
                .find(|(i, _)| *i == id(key, role))
                .map(|(_, m)| *m)
        };
        for key in [&a, &b, &c, &d] {
            for role in [Role::Tree, Role::Zip, Role::Meta] {
                assert!(get(key, role).is_some(), "{key} {role:?}");
            }
        }
        assert!(get(&e, Role::Tree).is_none() && get(&e, Role::Zip).is_some());
        let tree = get(&a, Role::Tree).unwrap();
        assert!(
            tree.apparent_bytes >= 5000 && tree.disk_bytes >= 8192,
            "{tree:?}"
        );
        assert_eq!(
            get(&a, Role::Zip).unwrap().last_use,
            old,
            "last use is shared"
        );
        assert_eq!(get(&b, Role::Meta).unwrap().last_use, old + 100);
        assert!(found.entries.iter().any(|(i, _)| i.role == Role::Sumdb));
        assert!(found
            .entries
            .iter()
            .any(|(i, m)| i.role == Role::Vcs && m.apparent_bytes == 3 + 6));
        assert_eq!(found.entries.len(), 4 * 3 + 2 + 2);
        // Sizes add up to most of what du reports: du also counts the directories above
        // the entries and the list files (a lot, relative to these tiny versions).
        let total: u64 = found.entries.iter().map(|(_, m)| m.disk_bytes).sum();
        let du = std::process::Command::new("du")
            .args(["-s", "-B1"])
            .arg(root)
            .output()
            .unwrap();
        let du: u64 = String::from_utf8(du.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(total <= du && total * 2 >= du, "{total} vs du {du}");
        // A watch event's stat agrees with the scan.
        for (i, m) in &found.entries {
            assert_eq!(k.stat(i).unwrap(), Some(*m), "{i:?}");
        }
    }

    #[test]
    fn verify_names_each_kind_of_damage() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = crate::now() - 10 * 86400;
        let k = kind(root);
        let check = |key: &Arc<str>, role| codes(k.verify(&id(key, role)));
        let healthy = put(root, "example.com/healthy", "v1.0.0", 1, old);
        for role in [Role::Tree, Role::Zip, Role::Meta] {
            assert!(check(&healthy, role).is_empty(), "{role:?}");
        }
        let vdir = |m: &str| root.join(format!("cache/download/{m}/@v"));

        let corrupt = put(root, "example.com/corrupt", "v1.0.0", 2, old);
        let zip = vdir("example.com/corrupt").join("v1.0.0.zip");
        let bytes = std::fs::read(&zip).unwrap();
        std::fs::write(&zip, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(check(&corrupt, Role::Zip), ["zip-corrupt"]);
        assert!(check(&corrupt, Role::Tree).is_empty(), "the tree is fine");

        let other = put(root, "example.com/other", "v1.0.0", 3, old);
        let zip = vdir("example.com/other").join("v1.0.0.zip");
        write_zip(
            &zip,
            "example.com/other",
            "v1.0.0",
            &[("go.mod", b"module example.com/other\n")],
        );
        assert_eq!(check(&other, Role::Zip), ["zip-hash-mismatch"]);

        let edited = put(root, "example.com/edited", "v1.0.0", 4, old);
        edit(
            &root.join("example.com/edited@v1.0.0/hello.go"),
            b"package hello // edited\n",
        );
        assert_eq!(check(&edited, Role::Tree), ["tree-hash-mismatch"]);
        let extra = put(root, "example.com/extra", "v1.0.0", 5, old);
        edit(&root.join("example.com/extra@v1.0.0/sub/stray.txt"), b"x");
        assert_eq!(check(&extra, Role::Tree), ["tree-hash-mismatch"]);

        let missing = put(root, "example.com/missing", "v1.0.0", 6, old);
        std::fs::remove_file(vdir("example.com/missing").join("v1.0.0.ziphash")).unwrap();
        assert_eq!(check(&missing, Role::Zip), ["ziphash-missing"]);
        assert_eq!(check(&missing, Role::Tree), ["ziphash-missing"]);
        let malformed = put(root, "example.com/malformed", "v1.0.0", 7, old);
        std::fs::write(
            vdir("example.com/malformed").join("v1.0.0.ziphash"),
            [0u8; 47],
        )
        .unwrap();
        assert_eq!(check(&malformed, Role::Zip), ["ziphash-malformed"]);

        let partial = put(root, "example.com/partial", "v1.0.0", 8, old);
        std::fs::write(vdir("example.com/partial").join("v1.0.0.partial"), b"").unwrap();
        assert_eq!(check(&partial, Role::Tree), ["partial"]);
        // While go holds the lock the marker is go's extraction in progress.
        let lock = std::fs::File::open(vdir("example.com/partial").join("v1.0.0.lock")).unwrap();
        let held = Flock::lock(lock, FlockArg::LockExclusiveNonblock).unwrap();
        assert!(check(&partial, Role::Tree).is_empty());
        drop(held);

        let temps = put(root, "example.com/temps", "v1.0.0", 9, old);
        let tmp = vdir("example.com/temps").join("v1.0.0.zip12345.tmp");
        std::fs::write(&tmp, b"half a download").unwrap();
        // Leftovers are found by scans (go leaves them only when interrupted).
        k.scan();
        assert!(
            check(&temps, Role::Zip).is_empty(),
            "a young temp is a download in progress"
        );
        set_times(&tmp, old);
        assert_eq!(check(&temps, Role::Zip), ["stale-temp"]);
        let tmp_dir = root.join("example.com/temps@v1.0.0.tmp-987");
        std::fs::create_dir(&tmp_dir).unwrap();
        set_times(&tmp_dir, old);
        k.scan();
        assert_eq!(check(&temps, Role::Tree), ["stale-temp"]);

        let garbled = put(root, "example.com/garbled", "v1.0.0", 10, old);
        std::fs::write(vdir("example.com/garbled").join("v1.0.0.info"), b"{\"Vers").unwrap();
        std::fs::write(vdir("example.com/garbled").join("v1.0.0.mod"), b"\xff\xfe").unwrap();
        assert_eq!(check(&garbled, Role::Meta), ["info-garbled", "mod-garbled"]);
        std::fs::write(
            vdir("example.com/garbled").join("v1.0.0.info"),
            b"{\"Version\":\"v9.9.9\"}",
        )
        .unwrap();
        std::fs::write(vdir("example.com/garbled").join("v1.0.0.mod"), b"go 1.19\n").unwrap();
        assert_eq!(check(&garbled, Role::Meta), ["info-garbled", "mod-garbled"]);

        // Incremental: a clean tree is not hashed again until something in it changes.
        let again = put(root, "example.com/again", "v1.0.0", 11, old);
        assert!(check(&again, Role::Tree).is_empty());
        assert!(k
            .verified
            .lock()
            .unwrap()
            .contains_key(&(again.clone(), Role::Tree)));
        edit(
            &root.join("example.com/again@v1.0.0/hello.go"),
            b"package hello // changed\n",
        );
        assert_eq!(check(&again, Role::Tree), ["tree-hash-mismatch"]);
    }

    #[test]
    fn tiers_remove_tree_then_zip_then_everything_and_keep_locks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = crate::now() - 10 * 86400;
        let k = kind(root);
        let a = put(root, "example.com/Hello", "v1.0.0", 1, old);
        let b = put(root, "example.com/Hello", "v1.1.0", 2, old);
        let vdir = root.join("cache/download/example.com/!hello/@v");
        let evict =
            |key: &Arc<str>, role| k.remove(&id(key, role), old, Removing::Evict(&Survivors::NONE));

        // Tier 0: the tree only; go can re-extract it offline.
        assert!(
            matches!(evict(&a, Role::Tree), Removal::Removed { disk_bytes } if disk_bytes > 5000)
        );
        assert!(!root.join("example.com/!hello@v1.0.0").exists());
        for f in [
            "v1.0.0.zip",
            "v1.0.0.ziphash",
            "v1.0.0.info",
            "v1.0.0.mod",
            "v1.0.0.lock",
        ] {
            assert!(vdir.join(f).exists(), "{f}");
        }
        assert!(!vdir.join("v1.0.0.partial").exists());
        assert!(matches!(evict(&a, Role::Tree), Removal::Gone));

        // Tier 1: zip and ziphash (and a tree, had it one).
        assert!(matches!(evict(&b, Role::Zip), Removal::Removed { .. }));
        assert!(!root.join("example.com/!hello@v1.1.0").exists());
        assert!(!vdir.join("v1.1.0.zip").exists() && !vdir.join("v1.1.0.ziphash").exists());
        assert!(vdir.join("v1.1.0.mod").exists() && vdir.join("v1.1.0.lock").exists());

        // Meta: the whole version, and `list` no longer names it.
        assert!(matches!(evict(&a, Role::Meta), Removal::Removed { .. }));
        assert!(!vdir.join("v1.0.0.mod").exists() && !vdir.join("v1.0.0.info").exists());
        assert!(!vdir.join("v1.0.0.zip").exists());
        assert!(
            vdir.join("v1.0.0.lock").exists(),
            "lock files are never deleted"
        );
        assert_eq!(
            std::fs::read_to_string(vdir.join("list")).unwrap(),
            "v1.1.0\n"
        );
        assert!(
            k.scan().entries.iter().all(|(i, _)| i.key != a),
            "nothing of a is left"
        );

        // Used since the plan was made: skipped.
        let c = put(root, "example.com/used", "v1.0.0", 3, old + 500);
        assert!(
            matches!(evict(&c, Role::Tree), Removal::Skipped(why) if why.contains("used since"))
        );
        assert!(root.join("example.com/used@v1.0.0/hello.go").exists());
    }

    #[test]
    fn a_busy_lock_or_a_running_go_command_defers_removal() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = crate::now() - 10 * 86400;
        let mut k = kind(root);
        let a = put(root, "example.com/busy", "v1.0.0", 1, old);
        let lock_path = root.join("cache/download/example.com/busy/@v/v1.0.0.lock");
        let held = Flock::lock(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&lock_path)
                .unwrap(),
            FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        let r = k.remove(&id(&a, Role::Zip), old, Removing::Evict(&Survivors::NONE));
        assert!(
            matches!(&r, Removal::LockBusy(why) if why.contains("go holds")),
            "{r:?}"
        );
        assert!(root.join("example.com/busy@v1.0.0/hello.go").exists());
        assert!(!root
            .join("cache/download/example.com/busy/@v/v1.0.0.partial")
            .exists());
        drop(held);

        k.in_use = |_, _| {
            Some(InUse {
                since: IN_USE_EVERYTHING,
                by: "go (pid 1) running since now".into(),
            })
        };
        let r = k.remove(&id(&a, Role::Tree), old, Removing::Evict(&Survivors::NONE));
        assert!(
            matches!(&r, Removal::InUse(why) if why.contains("pid 1")),
            "{r:?}"
        );
        assert!(
            !root
                .join("cache/download/example.com/busy/@v/v1.0.0.partial")
                .exists(),
            "marker undone"
        );
        assert!(root.join("example.com/busy@v1.0.0/hello.go").exists());
        assert_eq!(k.in_use().unwrap().since, i64::MIN);

        // A version with no @v at all (a stray tree) still gets a lock, as go would make.
        k.in_use = |_, _| None;
        let stray = put(root, "example.com/stray", "v1.0.0", 2, old);
        std::fs::remove_dir_all(root.join("cache/download/example.com/stray")).unwrap();
        assert!(matches!(
            k.remove(
                &id(&stray, Role::Tree),
                old,
                Removing::Evict(&Survivors::NONE)
            ),
            Removal::Removed { .. }
        ));
        assert!(root
            .join("cache/download/example.com/stray/@v/v1.0.0.lock")
            .exists());
    }

    #[test]
    fn the_three_entries_of_a_version_can_be_removed_in_parallel() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = crate::now() - 10 * 86400;
        let k = kind(root);
        let keys: Vec<Arc<str>> = (0..8)
            .map(|i| put(root, "example.com/par", &format!("v1.0.{i}"), i, old))
            .collect();
        let ids: Vec<ModId> = keys
            .iter()
            .flat_map(|k| [id(k, Role::Tree), id(k, Role::Zip), id(k, Role::Meta)])
            .collect();
        let results = parallel::map(&ids, |i| {
            k.remove(i, old, Removing::Evict(&Survivors::NONE))
        });
        assert!(
            results.iter().all(|r| !matches!(r, Removal::Skipped(_))),
            "{results:?}"
        );
        assert!(k.scan().entries.is_empty());
        assert_eq!(
            std::fs::read_to_string(root.join("cache/download/example.com/par/@v/list")).unwrap(),
            ""
        );
    }

    #[test]
    fn a_reloaded_min_age_takes_effect() {
        let dir = tempfile::tempdir().unwrap();
        let k = GoModKind::new(dir.path().to_path_buf(), Duration::from_secs(86_400));
        let temp = dir.path().join("v1.0.0.zip123.tmp");
        std::fs::write(&temp, b"half").unwrap();
        let t = filetime::FileTime::from_unix_time(crate::now() - 7200, 0);
        filetime::set_file_mtime(&temp, t).unwrap();
        let st = nix::sys::stat::stat(&temp).unwrap();
        assert!(!k.stale(&st), "2 h old, min_age 1 day");
        let text = format!(
            "[[cache]]\nname = \"m\"\nkind = \"dir\"\npath = \"{}\"\n",
            dir.path().display()
        );
        let mut config = crate::config::first_cache_for_test(&text);
        config.limits.min_age = Duration::from_secs(3600);
        k.configure(&config);
        assert!(k.stale(&st), "2 h old, min_age reloaded to 1 h");
    }

    #[test]
    fn removal_never_follows_a_symlink_out_of_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), b"keep me").unwrap();
        let root = dir.path();
        let old = crate::now() - 10 * 86400;
        let k = kind(root);
        let a = put(root, "example.com/sym", "v1.0.0", 1, old);
        let tree = root.join("example.com/sym@v1.0.0");
        std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(outside.path(), tree.join("link")).unwrap();
        // A symlink where a directory should be inside the tree, too.
        std::fs::set_permissions(tree.join("sub"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(outside.path(), tree.join("sub/deeper")).unwrap();
        assert_eq!(codes(k.verify(&id(&a, Role::Tree))), ["tree-hash-mismatch"]);
        let removed = k.remove(&id(&a, Role::Tree), old, Removing::Evict(&Survivors::NONE));
        assert!(matches!(removed, Removal::Removed { .. }), "{removed:?}");
        assert!(!tree.exists());
        assert_eq!(
            std::fs::read(outside.path().join("precious")).unwrap(),
            b"keep me"
        );
    }

    #[test]
    fn repair_removes_only_what_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = crate::now() - 10 * 86400;
        let k = kind(root);
        let vdir = |m: &str| root.join(format!("cache/download/{m}/@v"));
        let repair = |key: &Arc<str>, role| {
            let found = k.verify(&id(key, role));
            assert!(!found.is_empty());
            // (The engine repairs only entries older than min_age; the damage done here
            // is younger.)
            let r = k.remove(&id(key, role), crate::now() + 1, Removing::Repair(&found));
            assert!(matches!(r, Removal::Removed { .. }), "{r:?}");
            assert!(k.verify(&id(key, role)).is_empty(), "repaired");
        };

        let corrupt = put(root, "example.com/corrupt", "v1.0.0", 1, old);
        std::fs::write(
            vdir("example.com/corrupt").join("v1.0.0.zip"),
            b"PK garbage",
        )
        .unwrap();
        repair(&corrupt, Role::Zip);
        assert!(!vdir("example.com/corrupt").join("v1.0.0.zip").exists());
        assert!(
            !vdir("example.com/corrupt").join("v1.0.0.ziphash").exists(),
            "goes with its zip"
        );
        assert!(
            root.join("example.com/corrupt@v1.0.0/hello.go").exists(),
            "the tree stays"
        );

        let edited = put(root, "example.com/edited", "v1.0.0", 2, old);
        edit(
            &root.join("example.com/edited@v1.0.0/hello.go"),
            b"package hello // edited\n",
        );
        repair(&edited, Role::Tree);
        assert!(!root.join("example.com/edited@v1.0.0").exists());
        assert!(
            vdir("example.com/edited").join("v1.0.0.zip").exists(),
            "go re-extracts offline"
        );
        assert!(!vdir("example.com/edited").join("v1.0.0.partial").exists());

        let partial = put(root, "example.com/partial", "v1.0.0", 3, old);
        std::fs::write(vdir("example.com/partial").join("v1.0.0.partial"), b"").unwrap();
        repair(&partial, Role::Tree);
        assert!(!root.join("example.com/partial@v1.0.0").exists());
        assert!(!vdir("example.com/partial").join("v1.0.0.partial").exists());

        let garbled = put(root, "example.com/garbled", "v1.0.0", 4, old);
        put(root, "example.com/garbled", "v1.1.0", 5, old);
        std::fs::write(vdir("example.com/garbled").join("v1.0.0.mod"), b"").unwrap();
        repair(&garbled, Role::Meta);
        assert!(!vdir("example.com/garbled").join("v1.0.0.mod").exists());
        assert!(vdir("example.com/garbled").join("v1.0.0.info").exists());
        assert_eq!(
            std::fs::read_to_string(vdir("example.com/garbled").join("list")).unwrap(),
            "v1.1.0\n"
        );

        let temps = put(root, "example.com/temps", "v1.0.0", 6, old);
        let tmp = vdir("example.com/temps").join("v1.0.0.mod77.tmp");
        std::fs::write(&tmp, b"module x").unwrap();
        set_times(&tmp, old);
        k.scan();
        repair(&temps, Role::Meta);
        assert!(!tmp.exists() && vdir("example.com/temps").join("v1.0.0.mod").exists());
    }

    #[test]
    fn only_module_caches_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        assert!(GoModKind::check_root(dir.path()).is_ok(), "empty");
        std::fs::write(dir.path().join("precious.txt"), b"x").unwrap();
        let err = GoModKind::check_root(dir.path()).unwrap_err();
        assert!(
            err.contains("does not look like a Go module cache"),
            "{err}"
        );
        std::fs::create_dir_all(dir.path().join("cache/download")).unwrap();
        assert!(GoModKind::check_root(dir.path()).is_ok());
    }

    #[test]
    fn mount_options_tell_how_good_atime_is() {
        let info = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                    40 27 0:40 / /home/u\\040x rw,noatime - ext4 /dev/vdb rw\n\
                    41 27 0:41 / /srv rw - xfs /dev/vdc rw\n";
        assert_eq!(
            atime_mode(info, Path::new("/home/u x/go/pkg/mod")),
            AtimeMode::NoAtime
        );
        assert_eq!(
            atime_mode(info, Path::new("/home/ux/go")),
            AtimeMode::Relatime
        );
        assert_eq!(atime_mode(info, Path::new("/srv/mod")), AtimeMode::Strict);
        assert_eq!(atime_mode("", Path::new("/x")), AtimeMode::Unknown);
        // The kind's signal is the one for the mount its root is on.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let expected = match atime_mode(&mountinfo, Path::new("/tmp")) {
            AtimeMode::Relatime => SIGNAL_RELATIME,
            AtimeMode::Strict => SIGNAL_STRICT,
            AtimeMode::NoAtime => SIGNAL_NOATIME,
            AtimeMode::Unknown => SIGNAL_UNKNOWN,
        };
        assert_eq!(kind(Path::new("/tmp")).last_use_signal(), expected);
    }
}
