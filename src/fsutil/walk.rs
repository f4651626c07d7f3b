//! The one walk over a directory tree below a cache root: listing, measuring, hashing
//! and removing all go through [`walk_tree`].
//!
//! ## Why a loop, not recursion
//!
//! Trees below a root belong to whoever can write there. A recursive walk gives that
//! user the daemon's stack: a 20,000-level directory in a module version's tree
//! overflowed it and aborted the root daemon on every restart (issue #29). Here depth
//! is a `Vec` of small frames (the names still to visit, the directory's identity,
//! ~100 bytes a level), so a 100,000-level tree costs a few MiB and no stack.
//!
//! ## Descriptors and paths stay bounded
//!
//! Only the [`KEEP_OPEN`] deepest directories keep their descriptor. A shallower one
//! is opened again when the walk climbs back to it, through `..` of the child just
//! finished, and must be the very directory the walk left (same device and inode):
//! a tree moved during the walk stops it with an error instead of leading it
//! elsewhere. The relative path handed to the visitor is one buffer, a name pushed on
//! the way down and cut on the way up: no path is copied per level (which made a deep
//! walk quadratic).
//!
//! Symlinks are reported, never followed; directories on another file system are not
//! entered; what vanishes during the walk is passed over.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode};

use super::{is_file_type, stat_at, DIR_FLAGS};

/// How many of the deepest directories of a walk keep their descriptor open.
pub const KEEP_OPEN: usize = 32;

/// What the walk meets, in depth-first order. `rel` is relative to the walk's start.
pub enum Visit<'a> {
    /// A directory, just opened (before what is below it), `level` levels below the
    /// start (1: one of its own entries).
    Dir {
        rel: &'a Path,
        fd: &'a OwnedFd,
        st: &'a FileStat,
        level: u32,
    },
    /// Anything that is not a directory (file, symlink, FIFO…), with its `lstat`.
    Other {
        rel: &'a Path,
        parent: &'a OwnedFd,
        name: &'a OsStr,
        st: &'a FileStat,
    },
    /// A directory whose contents have all been visited, named in its parent.
    Left {
        rel: &'a Path,
        parent: &'a OwnedFd,
        name: &'a OsStr,
    },
    /// A directory that could not be opened or listed; the walk goes on without it
    /// unless the visitor returns the error.
    Error { rel: &'a Path, error: io::Error },
}

/// How to walk.
#[derive(Debug, Clone, Copy)]
pub struct Walk {
    /// Levels below the start to report (1: its own entries). Directories at the last
    /// level are reported but not listed.
    pub max_depth: u32,
    /// Make directories readable, writable and searchable by their owner before
    /// listing them, as go's `RemoveAll` does for module trees (read-only by design):
    /// for removal only.
    pub make_writable: bool,
    /// Directories of this name are listed, but no directory in them is entered (a
    /// tool that writes only files there: go's `@v`).
    pub leaf_name: Option<&'static str>,
}

impl Walk {
    pub const WHOLE_TREE: Walk = Walk {
        max_depth: u32::MAX,
        make_writable: false,
        leaf_name: None,
    };
}

struct Frame {
    /// `None` once deeper directories took its place among the [`KEEP_OPEN`].
    fd: Option<OwnedFd>,
    dev: u64,
    ino: u64,
    /// Names not visited yet, taken from the end.
    pending: Vec<OsString>,
    /// Its name in its parent (empty for the start).
    name: OsString,
    /// The length of the relative path up to and including this directory.
    rel_len: usize,
    /// A leaf ([`Walk::leaf_name`]): its directories are not entered.
    leaf: bool,
}

/// Walks the tree below the directory `start`, calling `visit` for everything in it.
/// The first error `visit` returns ends the walk and is returned, as is a directory
/// found moved when the walk climbs back to it.
pub fn walk_tree(
    start: OwnedFd,
    how: Walk,
    visit: &mut dyn FnMut(Visit) -> io::Result<()>,
) -> io::Result<()> {
    let st = nix::sys::stat::fstat(&start)?;
    if how.make_writable {
        make_writable(&start, &st)?;
    }
    let root_dev = st.st_dev;
    let mut rel: Vec<u8> = Vec::new();
    let pending = match list(&start) {
        Ok(names) => names,
        Err(error) => {
            visit(Visit::Error {
                rel: Path::new(""),
                error,
            })?;
            return Ok(());
        }
    };
    let mut stack = vec![Frame {
        fd: Some(start),
        dev: st.st_dev,
        ino: st.st_ino,
        pending,
        name: OsString::new(),
        rel_len: 0,
        leaf: false,
    }];
    while let Some(top) = stack.last_mut() {
        let Some(name) = top.pending.pop() else {
            // Everything below `top` is done: climb back to its parent.
            let done = stack.pop().expect("the top frame");
            let Some(parent) = stack.last_mut() else {
                break;
            };
            let below = done.fd.expect("the deepest directory is open");
            if parent.fd.is_none() {
                parent.fd = Some(reopen_parent(&below, parent.dev, parent.ino)?);
            }
            drop(below);
            let parent_fd = parent.fd.as_ref().expect("opened above");
            visit(Visit::Left {
                rel: as_path(&rel),
                parent: parent_fd,
                name: &done.name,
            })?;
            rel.truncate(parent.rel_len);
            continue;
        };
        let depth = stack.len() as u32;
        let top = stack.last_mut().expect("the top frame");
        let parent_fd = top.fd.as_ref().expect("the deepest directory is open");
        let top_len = top.rel_len;
        let enter = !top.leaf;
        push_name(&mut rel, &name);
        let Some(fd) = meet(parent_fd, &name, as_path(&rel), enter, root_dev, how, visit)? else {
            rel.truncate(top_len);
            continue;
        };
        let st = nix::sys::stat::fstat(&fd)?;
        if how.make_writable {
            make_writable(&fd, &st)?;
        }
        visit(Visit::Dir {
            rel: as_path(&rel),
            fd: &fd,
            st: &st,
            level: depth,
        })?;
        let is_leaf = how
            .leaf_name
            .is_some_and(|l| name.as_bytes() == l.as_bytes());
        let pending = if depth >= how.max_depth {
            Vec::new()
        } else {
            match list(&fd) {
                Ok(names) => names,
                Err(error) => {
                    visit(Visit::Error {
                        rel: as_path(&rel),
                        error,
                    })?;
                    Vec::new()
                }
            }
        };
        stack.push(Frame {
            fd: Some(fd),
            dev: st.st_dev,
            ino: st.st_ino,
            pending,
            name,
            rel_len: rel.len(),
            leaf: is_leaf,
        });
        if stack.len() > KEEP_OPEN {
            let shallow = stack.len() - 1 - KEEP_OPEN;
            stack[shallow].fd = None;
        }
    }
    Ok(())
}

/// Meets `name` in the directory `parent`: reports it if it is not a directory (or
/// could not be looked at), and opens it if it is one to `enter` (on the walk's file
/// system, not vanished). `Some`: the directory to walk into.
fn meet(
    parent: &OwnedFd,
    name: &OsStr,
    rel: &Path,
    enter: bool,
    root_dev: u64,
    how: Walk,
    visit: &mut dyn FnMut(Visit) -> io::Result<()>,
) -> io::Result<Option<OwnedFd>> {
    let st = match stat_at(parent, name) {
        Ok(st) => st,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return visit(Visit::Error { rel, error }).map(|_| None),
    };
    if !is_file_type(&st, libc::S_IFDIR) {
        return visit(Visit::Other {
            rel,
            parent,
            name,
            st: &st,
        })
        .map(|_| None);
    }
    if st.st_dev != root_dev || !enter {
        return Ok(None);
    }
    match open_child(parent, name, how.make_writable) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        // Swapped for something else since its lstat: report what is there.
        Err(Errno::ENOTDIR | Errno::ELOOP) => match stat_at(parent, name) {
            Ok(st) => visit(Visit::Other {
                rel,
                parent,
                name,
                st: &st,
            })
            .map(|_| None),
            Err(_) => Ok(None),
        },
        Err(e) => visit(Visit::Error {
            rel,
            error: e.into(),
        })
        .map(|_| None),
    }
}

fn as_path(rel: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(rel))
}

fn push_name(rel: &mut Vec<u8>, name: &OsStr) {
    if !rel.is_empty() {
        rel.push(b'/');
    }
    rel.extend_from_slice(name.as_bytes());
}

/// The names in a directory, without `.` and `..`.
fn list(fd: &OwnedFd) -> io::Result<Vec<OsString>> {
    let mut dir = nix::dir::Dir::from_fd(fd.try_clone()?)?;
    let mut names = Vec::new();
    for item in dir.iter() {
        let name = item?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name));
        }
    }
    // Taken from the end: reversed, the walk goes in listing order.
    names.reverse();
    Ok(names)
}

/// Opens the subdirectory `name`; for removal, one closed to its owner (no `r` or `x`)
/// is opened to it first, through an `O_PATH` descriptor of that very inode.
fn open_child(parent: &OwnedFd, name: &OsStr, make_writable: bool) -> Result<OwnedFd, Errno> {
    match nix::fcntl::openat(parent, name, DIR_FLAGS, Mode::empty()) {
        Err(Errno::EACCES) if make_writable => {
            let path_fd = nix::fcntl::openat(
                parent,
                name,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let proc_path = format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&path_fd)
            );
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                proc_path.as_str(),
                Mode::from_bits_truncate(0o700),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )?;
            nix::fcntl::openat(parent, name, DIR_FLAGS, Mode::empty())
        }
        other => other,
    }
}

/// Opens the directory `name` in `parent` for [`walk_tree`], as [`open_child`] does.
pub fn open_dir_at(parent: impl AsFd, name: &OsStr, make_writable: bool) -> io::Result<OwnedFd> {
    let parent = parent.as_fd().try_clone_to_owned()?;
    open_child(&parent, name, make_writable).map_err(io::Error::from)
}

fn make_writable(fd: &OwnedFd, st: &FileStat) -> io::Result<()> {
    if st.st_mode & 0o700 != 0o700 {
        nix::sys::stat::fchmod(fd, Mode::from_bits_truncate((st.st_mode & 0o7777) | 0o700))?;
    }
    Ok(())
}

/// The parent of the directory `below`, which must be the directory (`dev`, `ino`)
/// the walk came down from.
fn reopen_parent(below: &OwnedFd, dev: u64, ino: u64) -> io::Result<OwnedFd> {
    let up = nix::fcntl::openat(below, "..", DIR_FLAGS, Mode::empty())?;
    let st = nix::sys::stat::fstat(&up)?;
    if (st.st_dev, st.st_ino) != (dev, ino) {
        return Err(io::Error::other(
            "a directory was moved out of the tree during the walk; stopped there",
        ));
    }
    Ok(up)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `levels` directories named `d` below `root`, made fd-relatively
    /// (a path that long is beyond `PATH_MAX`), with a file at the bottom.
    pub(crate) fn deep_chain(root: &Path, levels: usize) {
        let mut fd = super::super::open_root(root).unwrap();
        for _ in 0..levels {
            nix::sys::stat::mkdirat(&fd, "d", Mode::from_bits_truncate(0o755)).unwrap();
            fd = nix::fcntl::openat(&fd, "d", DIR_FLAGS, Mode::empty()).unwrap();
        }
        let file = nix::fcntl::openat(
            &fd,
            "bottom",
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        nix::unistd::write(&file, b"x").unwrap();
    }

    /// Descriptors this process has open below `dir` (other tests run beside this one).
    fn open_below(dir: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(dir)))
            .count()
    }

    /// Removes a deep tree with the loop before its temp dir goes, also when an assertion
    /// failed (`std::fs::remove_dir_all` recurses: the test's own stack would overflow).
    struct Deep(tempfile::TempDir);

    impl Drop for Deep {
        fn drop(&mut self) {
            let parent = super::super::open_root(self.0.path().parent().unwrap()).unwrap();
            let _ = super::super::remove_tree_at(parent, self.0.path().file_name().unwrap());
        }
    }

    /// Deep enough that recursion would overflow the small stack the walk gets here
    /// (100,000 levels, as issue #29 asks, are walked by the daemon in
    /// `tests/integration/local_attacks.rs`; on this sandbox every level of depth
    /// costs every syscall below it, so a unit test stays shallower).
    const LEVELS: usize = 20_000;

    #[test]
    fn a_deep_tree_is_walked_in_a_loop_with_few_descriptors() {
        let tmp = Deep(tempfile::tempdir().unwrap());
        let dir = tmp.0.path().to_path_buf();
        deep_chain(&dir, LEVELS);
        let (mut dirs, mut left, mut most_open, mut bottom_len) = (0, 0, 0, 0);
        let mut visits = 0u64;
        let start = super::super::open_root(&dir).unwrap();
        // On a thread with a small stack: recursion would overflow it at once.
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn_scoped(s, || {
                    walk_tree(start, Walk::WHOLE_TREE, &mut |v| {
                        match v {
                            Visit::Dir { .. } => dirs += 1,
                            Visit::Left { .. } => left += 1,
                            Visit::Other { rel, .. } => bottom_len = rel.as_os_str().len(),
                            Visit::Error { error, .. } => return Err(error),
                        }
                        visits += 1;
                        if visits % 997 == 0 {
                            most_open = most_open.max(open_below(&dir));
                        }
                        Ok(())
                    })
                    .unwrap()
                })
                .unwrap()
                .join()
                .unwrap();
        });
        assert_eq!((dirs, left), (LEVELS, LEVELS));
        assert_eq!(bottom_len, LEVELS * 2 + "bottom".len());
        assert!(
            most_open <= KEEP_OPEN + 2,
            "{most_open} descriptors open below the tree"
        );
        assert_eq!(open_below(&dir), 0);
        drop(tmp);
        assert!(!dir.exists(), "removed by the same loop");
    }

    #[test]
    fn a_directory_moved_away_during_the_walk_stops_it() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        std::fs::create_dir(&a).unwrap();
        deep_chain(&a, KEEP_OPEN + 8);
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let mut moved = false;
        let start = super::super::open_root(&a).unwrap();
        let result = walk_tree(start, Walk::WHOLE_TREE, &mut |v| {
            // At the bottom, the first level is moved out of the walked tree: the
            // walk must not climb into `elsewhere`.
            if let Visit::Other { .. } = v {
                if !moved {
                    std::fs::rename(a.join("d"), elsewhere.join("d")).unwrap();
                    moved = true;
                }
            }
            Ok(())
        });
        assert!(moved);
        let err = result.unwrap_err();
        assert!(err.to_string().contains("moved out of the tree"), "{err}");
    }

    #[test]
    fn a_leaf_is_listed_but_its_directories_are_not_entered() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("m/@v/planted")).unwrap();
        std::fs::write(tmp.path().join("m/@v/v1.0.0.zip"), b"z").unwrap();
        std::fs::write(tmp.path().join("m/@v/planted/x"), b"x").unwrap();
        let how = Walk {
            leaf_name: Some("@v"),
            ..Walk::WHOLE_TREE
        };
        let mut seen = Vec::new();
        walk_tree(
            super::super::open_root(tmp.path()).unwrap(),
            how,
            &mut |v| {
                match v {
                    Visit::Dir { rel, .. } | Visit::Other { rel, .. } => {
                        seen.push(rel.to_string_lossy().into_owned())
                    }
                    _ => {}
                }
                Ok(())
            },
        )
        .unwrap();
        seen.sort();
        assert_eq!(seen, ["m", "m/@v", "m/@v/v1.0.0.zip"]);
    }
}
