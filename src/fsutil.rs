//! Filesystem helpers every kind shares: disk usage as `du` counts it, free space, and
//! symlink-proof access below a cache root.
//!
//! Removal never resolves a path from the root as a string: it walks down with
//! `openat(O_NOFOLLOW | O_DIRECTORY)` one component at a time and unlinks relative to the
//! last directory fd. A directory inside the cache swapped for a symlink to `/home` between
//! scan and removal therefore makes the removal fail (`ELOOP`/`ENOTDIR`) instead of
//! deleting outside the root (safety rule 2).

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode};

/// Disk usage of one file as `du` counts it: allocated blocks × 512, shared evenly among
/// its hard links so that a set of links inside one cache adds up to exactly what `du`
/// reports for the set (du counts each inode once).
pub fn disk_usage(meta: &std::fs::Metadata) -> u64 {
    meta.blocks() * 512 / meta.nlink().max(1)
}

/// The same, from a raw `stat`.
#[allow(clippy::unnecessary_cast)] // st_nlink is u32 on some targets
pub fn disk_usage_stat(st: &FileStat) -> u64 {
    (st.st_blocks as u64) * 512 / (st.st_nlink as u64).max(1)
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

/// Opens the directory `rel` below `root` without following any symlink on the way.
pub fn open_dir_beneath(root: &Path, rel: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut fd = nix::fcntl::open(root, flags, Mode::empty()).map_err(io::Error::from)?;
    for comp in rel.components() {
        match comp {
            Component::Normal(name) => {
                fd =
                    nix::fcntl::openat(&fd, name, flags, Mode::empty()).map_err(io::Error::from)?;
            }
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a plain relative path", rel.display()),
                ))
            }
        }
    }
    Ok(fd)
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

/// `lstat` of `name` in the directory `dir`.
pub fn stat_at(dir: &OwnedFd, name: &OsStr) -> io::Result<FileStat> {
    nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io::Error::from)
}

/// Unlinks the file `name` in `dir`; `Ok(false)` when it was already gone.
pub fn unlink_at(dir: &OwnedFd, name: &OsStr) -> io::Result<bool> {
    match nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Opens a file for reading without bumping its atime where the kernel allows
/// (`O_NOATIME` needs ownership or CAP_FOWNER): verifying a cache must not make every
/// entry look freshly used.
pub fn open_for_verify(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = |extra: i32| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | extra)
            .open(path)
    };
    match open(libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0),
        other => other,
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

    #[test]
    fn hard_links_share_their_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, vec![1u8; 10_000]).unwrap();
        let alone = disk_usage(&std::fs::metadata(&a).unwrap());
        std::fs::hard_link(&a, dir.path().join("b")).unwrap();
        let shared = disk_usage(&std::fs::metadata(&a).unwrap());
        assert!(alone >= 10_000);
        assert_eq!(shared * 2, alone);
    }
}
