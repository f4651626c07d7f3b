//! Filesystem helpers every kind shares: disk usage as `du` counts it, free space, and
//! symlink-proof access below a cache root.
//!
//! ## No path is trusted (safety rules 2 and 5)
//!
//! Other users may write inside a cache and swap any directory for a symlink at any
//! instant, so nothing below a root is resolved as a joined path string:
//!
//! * the root itself is opened with no symlink anywhere on its path ([`open_root`]: the
//!   configured root is canonical, so a symlink on the way means someone replaced a
//!   component since — an error, not a new root);
//! * everything below it is opened relative to a directory fd with
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, or one `O_NOFOLLOW` component at
//!   a time where `openat2` is missing or the path is longer than `PATH_MAX`
//!   ([`open_dir_beneath`]);
//! * files are opened `O_NONBLOCK` and their type checked on the descriptor, so a FIFO
//!   or device planted in place of an entry never blocks a reader ([`open_file_beneath`]);
//! * walks list directories through their fds and recurse with `openat`, so depth and
//!   path length do not matter and a symlink is never followed ([`walk_tree`], a loop
//!   with bounded descriptors: see `fsutil/walk.rs`).
//!
//! A directory swapped for a symlink between scan and removal therefore makes the
//! operation fail (`ELOOP`/`ENOTDIR`/`EXDEV`) instead of touching what the link names.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode};

mod walk;
pub use walk::{open_dir_at, walk_tree, Visit, Walk, KEEP_OPEN};

/// Disk usage of one file: its allocated blocks × 512, whole, however many hard links
/// it has. Dividing by the link count (so that links inside one cache add up to what
/// `du` says for the set) let a user shrink their cache in the daemon's eyes by making
/// links to its files from outside it: 50 links each turned 1.3 MiB into 68 KiB
/// (issue #29). The cost: two links inside one cache count twice, where `du` counts the
/// inode once (no tool's cache keeps such pairs; a `dir` cache with hard-linked files
/// reads a little over `du`).
pub fn disk_usage(meta: &std::fs::Metadata) -> u64 {
    meta.blocks() * 512
}

/// The same, from a raw `stat`.
pub fn disk_usage_stat(st: &FileStat) -> u64 {
    (st.st_blocks as u64) * 512
}

/// Last use for kinds that trust the filesystem clock: the later of atime and mtime.
pub fn last_use_stat(st: &FileStat) -> i64 {
    st.st_atime.max(st.st_mtime)
}

/// Size and free space of the filesystem holding `path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiskSpace {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

pub fn disk_space(path: &Path) -> io::Result<DiskSpace> {
    let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    let frsize = st.fragment_size() as u64;
    Ok(DiskSpace {
        total_bytes: st.blocks() as u64 * frsize,
        available_bytes: st.blocks_available() as u64 * frsize,
    })
}

/// How every directory below a root is opened: read-only, never through a symlink.
pub const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Opens `rel` (below the directory `dir`) with `flags`, following no symlink on the way
/// and never leaving `dir`.
pub fn open_at_beneath(dir: &impl AsFd, rel: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    match nix::fcntl::openat2(dir, rel, how) {
        // Kernels before 5.6; a path beyond PATH_MAX: one component at a time.
        Err(Errno::ENOSYS | Errno::ENAMETOOLONG | Errno::EPERM) => {}
        other => return other.map_err(io::Error::from),
    }
    let mut comps = Vec::new();
    for comp in rel.components() {
        match comp {
            Component::Normal(name) => comps.push(name),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a plain relative path", rel.display()),
                ))
            }
        }
    }
    let Some((last, parents)) = comps.split_last() else {
        return nix::fcntl::openat(dir, ".", flags | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(io::Error::from);
    };
    let mut fd: Option<OwnedFd> = None;
    for name in parents {
        let next = match &fd {
            Some(f) => nix::fcntl::openat(f, *name, DIR_FLAGS, Mode::empty()),
            None => nix::fcntl::openat(dir, *name, DIR_FLAGS, Mode::empty()),
        };
        fd = Some(next.map_err(io::Error::from)?);
    }
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match &fd {
        Some(f) => nix::fcntl::openat(f, *last, flags, Mode::empty()),
        None => nix::fcntl::openat(dir, *last, flags, Mode::empty()),
    }
    .map_err(io::Error::from)
}

/// Opens the cache root `root` (an absolute, canonical path) with no symlink anywhere
/// on its path: a component replaced by a symlink since the root was configured is an
/// error, never a new root.
pub fn open_root(root: &Path) -> io::Result<OwnedFd> {
    let slash = nix::fcntl::open("/", DIR_FLAGS, Mode::empty()).map_err(io::Error::from)?;
    let rel = root.strip_prefix("/").map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not an absolute path", root.display()),
        )
    })?;
    if rel.as_os_str().is_empty() {
        return Ok(slash);
    }
    open_at_beneath(&slash, rel, DIR_FLAGS).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{}: {e} (a symlink on its path is refused: the root must stay what was configured)",
                root.display()
            ),
        )
    })
}

/// Opens the directory `rel` below `root` without following any symlink on the way.
pub fn open_dir_beneath(root: &Path, rel: &Path) -> io::Result<OwnedFd> {
    let root_fd = open_root(root)?;
    if rel.as_os_str().is_empty() {
        return Ok(root_fd);
    }
    open_at_beneath(&root_fd, rel, DIR_FLAGS)
}

/// Opens the regular file `rel` below `root` for reading: no symlink on the way,
/// `O_NONBLOCK` (a FIFO in its place returns at once), `O_NOATIME` where allowed
/// (verifying must not make entries look used), and its type checked on the
/// descriptor: anything but a regular file is an `InvalidInput` error naming it.
pub fn open_file_beneath(root: &Path, rel: &Path) -> io::Result<std::fs::File> {
    let root_fd = open_root(root)?;
    open_file_at(&root_fd, rel)
}

/// `openat` of one name in `dir` with `O_NOFOLLOW | O_CLOEXEC`, and `O_NOATIME` where
/// the kernel allows it (`EPERM` unless we own the file or are privileged): our reads
/// must not make entries look used.
pub fn openat_noatime<P: ?Sized + nix::NixPath>(
    dir: impl AsFd,
    name: &P,
    flags: OFlag,
) -> io::Result<OwnedFd> {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match nix::fcntl::openat(&dir, name, flags | OFlag::O_NOATIME, Mode::empty()) {
        Err(Errno::EPERM) => nix::fcntl::openat(&dir, name, flags, Mode::empty()),
        other => other,
    }
    .map_err(io::Error::from)
}

/// [`open_file_beneath`] relative to an open directory.
pub fn open_file_at(dir: &impl AsFd, rel: &Path) -> io::Result<std::fs::File> {
    let base = OFlag::O_RDONLY | OFlag::O_NONBLOCK;
    let fd = match open_at_beneath(dir, rel, base | OFlag::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open_at_beneath(dir, rel, base)?,
        other => other?,
    };
    let st = nix::sys::stat::fstat(&fd).map_err(io::Error::from)?;
    if !is_file_type(&st, libc::S_IFREG) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file ({})",
                rel.display(),
                type_name(&st)
            ),
        ));
    }
    // O_NONBLOCK stays: it changes nothing for a regular file, and clearing it with
    // F_SETFL would clear O_NOATIME too.
    Ok(std::fs::File::from(fd))
}

/// Whether opening below a root failed because a directory on the way is now a
/// symlink or not a directory at all (someone swapped it).
pub fn is_swapped(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV)
    )
}

/// Whether an error while listing or opening below a root only says that the thing
/// is no longer there as it was listed: removed (`go clean` racing a scan), or swapped
/// for something else. A scan skips it; it is not an error of the cache.
pub fn is_vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || is_swapped(e)
}

/// The names in the directory `rel` below `dir` (opened with no symlink on the way and
/// never leaving `dir`), each with whether it is a directory — by `lstat`'s type, so a
/// symlink to a directory is not one.
pub fn list_beneath(dir: &impl AsFd, rel: &Path) -> io::Result<Vec<(OsString, bool)>> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let fd = open_at_beneath(dir, rel, DIR_FLAGS)?;
    let mut listing = nix::dir::Dir::from_fd(fd.try_clone()?).map_err(io::Error::from)?;
    let mut names = Vec::new();
    for item in listing.iter() {
        let item = item.map_err(io::Error::from)?;
        let name = OsStr::from_bytes(item.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let is_dir = match item.file_type() {
            Some(t) => t == nix::dir::Type::Directory,
            // File systems that do not fill in d_type.
            None => match stat_at(&fd, name) {
                Ok(st) => is_file_type(&st, libc::S_IFDIR),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            },
        };
        names.push((name.to_os_string(), is_dir));
    }
    Ok(names)
}

/// What a non-regular file is, for messages.
pub fn type_name(st: &FileStat) -> &'static str {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symlink",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        _ => "of unknown type",
    }
}

/// `lstat` of `rel` below `root`, fd-relative (no symlink on the way; the last
/// component is not followed).
pub fn stat_beneath(root: &Path, rel: &Path) -> io::Result<FileStat> {
    let (parent, name) = split_beneath(rel)?;
    let dir = open_dir_beneath(root, parent)?;
    stat_at(&dir, name)
}

/// Raises this process's open-file soft limit to its hard limit and returns the limit
/// now in force. The soft 1,024 is for `select(2)` users; an fd-relative walk holds a
/// descriptor per level of depth, and the daemon's socket a descriptor per client.
pub fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

/// What [`walk_beneath`] found: a directory it entered (with its open fd), or anything
/// else (a file, a symlink, a FIFO) with its `lstat`.
pub enum Walked<'a> {
    Dir(&'a Path, &'a OwnedFd),
    Other(&'a Path, &'a FileStat),
}

/// Walks every directory below `dir` (an open directory fd) with [`walk_tree`],
/// reporting entries down to `max_depth` levels below it (1: its own entries), calling
/// `visit` with each path relative to `dir`. Symlinks are reported, never followed;
/// directories on other file systems are not entered. Errors are collected with the
/// path they concern.
pub fn walk_beneath(
    dir: OwnedFd,
    max_depth: u32,
    visit: &mut dyn FnMut(Walked),
    errors: &mut Vec<String>,
) {
    let how = Walk {
        max_depth,
        make_writable: false,
        leaf_name: None,
    };
    let walked = walk_tree(dir, how, &mut |item| {
        match item {
            Visit::Dir { rel, fd, .. } => visit(Walked::Dir(rel, fd)),
            Visit::Other { rel, st, .. } => visit(Walked::Other(rel, st)),
            Visit::Left { .. } => {}
            Visit::Error { rel, error } => errors.push(format!("{}: {error}", shown(rel))),
        }
        Ok(())
    });
    if let Err(e) = walked {
        errors.push(format!(".: {e}"));
    }
}

fn shown(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".into()
    } else {
        escape_name(rel.as_os_str().as_bytes())
    }
}

/// A file name or relative path (any bytes) as text that maps back to exactly those
/// bytes ([`unescape_name`]): UTF-8 passes through, except `\` (written `\\`), control
/// characters and bytes that are not UTF-8 (written `\xNN`). Two names never print the
/// same, and no newline or terminal escape from a hostile name reaches a table, a log
/// line or JSON.
pub fn escape_name(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The bytes [`escape_name`] made `text` from; `None` for a malformed escape.
pub fn unescape_name(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b != b'\\' {
            out.push(b);
            rest = tail;
            continue;
        }
        match tail {
            [b'\\', after @ ..] => {
                out.push(b'\\');
                rest = after;
            }
            [b'x', h, l, after @ ..] => {
                let hex = std::str::from_utf8(&[*h, *l]).ok()?.to_string();
                out.push(u8::from_str_radix(&hex, 16).ok()?);
                rest = after;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Splits `rel` into its parent directory and file name, refusing anything that could
/// leave the root (`..`, absolute paths, empty names).
pub fn split_beneath(rel: &Path) -> io::Result<(&Path, &OsStr)> {
    let ok = rel.components().all(|c| matches!(c, Component::Normal(_)));
    match (ok, rel.parent(), rel.file_name()) {
        (true, Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} is not a path below the cache root", rel),
        )),
    }
}

/// Removes the directory `name` in `parent` and everything below it, as go's
/// `RemoveAll` does (directories made writable first) but through directory fds with
/// [`walk_tree`] (a loop, whatever the depth): a symlink is unlinked, never followed,
/// and nothing outside `parent/name` is touched (a hard link to a file elsewhere loses
/// only this name; another file system mounted below is not entered, so its mount
/// point stays and the removal fails). A file or symlink where the directory was is
/// unlinked. Returns the disk usage freed (0 if nothing was there).
pub fn remove_tree_at(parent: impl AsFd, name: &OsStr) -> io::Result<u64> {
    let parent = parent.as_fd();
    let fd = match walk::open_dir_at(parent, name, true) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
            let st = stat_at(parent, name)?;
            return Ok(match unlink_at(parent, name)? {
                true => disk_usage_stat(&st),
                false => 0,
            });
        }
        Err(e) => return Err(e),
    };
    let mut freed = disk_usage_stat(&nix::sys::stat::fstat(&fd)?);
    let how = Walk {
        max_depth: u32::MAX,
        make_writable: true,
        leaf_name: None,
    };
    walk_tree(fd, how, &mut |item| {
        match item {
            Visit::Dir { st, .. } => freed += disk_usage_stat(st),
            Visit::Other {
                parent, name, st, ..
            } => {
                if unlink_at(parent, name)? {
                    freed += disk_usage_stat(st);
                }
            }
            Visit::Left { parent, name, .. } => {
                match nix::unistd::unlinkat(parent, name, nix::unistd::UnlinkatFlags::RemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Visit::Error { error, .. } => return Err(error),
        }
        Ok(())
    })?;
    match nix::unistd::unlinkat(parent, name, nix::unistd::UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(freed),
        Err(e) => Err(e.into()),
    }
}

/// The pid holding an `flock` on the inode (`dev`, `ino`), from `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`, device as hex major:minor):
/// who holds a lock, learnt without taking it.
pub fn flock_holder(dev: u64, ino: u64) -> Option<u32> {
    let wanted = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&wanted.as_str()))
            .then(|| fields.get(4)?.parse().ok())
            .flatten()
    })
}

/// Who holds an `flock` on the inode (`dev`, `ino`), for people: "cargo (pid 1234)";
/// `None` when nobody does, or only this process.
pub fn flock_holder_name(dev: u64, ino: u64) -> Option<String> {
    let pid = flock_holder(dev, ino).filter(|&pid| pid != std::process::id())?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    Some(format!("{} (pid {pid})", comm.trim()))
}

/// `lstat` of `name` in the directory `dir`.
pub fn stat_at(dir: impl AsFd, name: &OsStr) -> io::Result<FileStat> {
    nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io::Error::from)
}

/// Unlinks the file `name` in `dir`; `Ok(false)` when it was already gone.
pub fn unlink_at(dir: impl AsFd, name: &OsStr) -> io::Result<bool> {
    match nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub fn is_file_type(st: &FileStat, kind: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == kind
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_dir_beneath_refuses_symlinked_components() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("real")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        assert!(open_dir_beneath(root.path(), Path::new("real")).is_ok());
        assert!(open_dir_beneath(root.path(), Path::new("link")).is_err());
        assert!(split_beneath(Path::new("../x")).is_err());
        assert!(split_beneath(Path::new("/etc/passwd")).is_err());
        assert!(split_beneath(Path::new("a/b")).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn any_name_round_trips(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let text = escape_name(&bytes);
            proptest::prop_assert!(!text.chars().any(char::is_control));
            proptest::prop_assert_eq!(unescape_name(&text), Some(bytes));
        }

        #[test]
        fn any_text_unescapes_without_panicking(text in ".{0,40}") {
            let _ = unescape_name(&text);
        }
    }

    #[test]
    fn names_round_trip_exactly_and_print_safely() {
        for name in [
            &b"plain.o"[..],
            b"\xff-nonutf8",
            b"\xfe-nonutf8",
            b"back\\slash",
            b"esc\x1b[31mred\nnewline",
            b"caf\xc3\xa9",
            b"\\x41 is not A",
        ] {
            let text = escape_name(name);
            assert!(!text.chars().any(char::is_control), "{text:?}");
            assert_eq!(unescape_name(&text).as_deref(), Some(name), "{text}");
        }
        assert_ne!(escape_name(b"\xff-nonutf8"), escape_name(b"\xfe-nonutf8"));
        assert_eq!(escape_name(b"\xff-x"), "\\xff-x");
        assert_eq!(escape_name("café".as_bytes()), "café");
        assert_eq!(unescape_name("bad\\q"), None);
        assert_eq!(unescape_name("short\\x4"), None);
    }

    #[test]
    fn a_hard_link_made_outside_leaves_a_file_its_whole_size() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, vec![1u8; 10_000]).unwrap();
        let alone = disk_usage(&std::fs::metadata(&a).unwrap());
        for i in 0..50 {
            std::fs::hard_link(&a, dir.path().join(format!("outside{i}"))).unwrap();
        }
        assert!(alone >= 10_000);
        assert_eq!(disk_usage(&std::fs::metadata(&a).unwrap()), alone);
    }
}
