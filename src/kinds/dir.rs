//! Kind `dir`: a plain directory whose regular files are the entries — ccache-like
//! directories, artifact folders, anything whose files can be deleted one by one.
//!
//! * **Entry**: one regular file, named by its path relative to the root.
//! * **Last use**: `max(atime, mtime)`. Most mounts are `relatime`, which updates atime
//!   at most once a day (or when atime < mtime), so this is exact to about a day; on a
//!   `noatime` mount it degrades to the write time.
//! * **Not entries**: directories (kept even when empty, since tools often expect their
//!   layout), symlinks (never followed, never removed), sockets, fifos, devices.
//! * **Problems**: a file that cannot be read to the end (`unreadable`: permissions, I/O
//!   errors on a failing disk).
//! * **Removal**: re-`lstat` the file through `openat(O_NOFOLLOW)` directory fds, skip it
//!   if it was used after the plan was made, then `unlinkat`.

use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{EntryMeta, Finding, Kind, Removal, Removing, ScanResult, WatchDir};
use crate::fsutil::{self, Walked};
use crate::UnixTime;

/// Files younger than this are never evicted: a tool that just wrote a file is likely
/// to read it again at once.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(10 * 60);
/// Nothing fundamental protects younger files of an arbitrary tool; one minute keeps
/// files that are still being written out of reach.
pub const MIN_AGE_FLOOR: Duration = Duration::from_secs(60);

pub struct DirKind {
    root: PathBuf,
}

impl DirKind {
    pub fn new(root: PathBuf) -> DirKind {
        DirKind { root }
    }
}

impl Kind for DirKind {
    type Id = Box<Path>;

    fn root(&self) -> &Path {
        &self.root
    }

    fn scan(&self) -> ScanResult<Box<Path>> {
        let mut result = ScanResult::default();
        let root = match fsutil::open_root(&self.root) {
            Ok(fd) => fd,
            // Gone: nothing in it, and no error (the daemon shows it as a condition).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return result,
            Err(e) => {
                result.errors.push(e.to_string());
                return result;
            }
        };
        let (mut entries, mut ignored) = (Vec::new(), 0);
        fsutil::walk_beneath(
            root,
            u32::MAX,
            &mut |found| match found {
                Walked::Other(rel, st) if fsutil::is_file_type(st, libc::S_IFREG) => {
                    entries.push((rel.into(), entry_meta(st)))
                }
                Walked::Other(..) => ignored += 1,
                Walked::Dir(..) => {}
            },
            &mut result.errors,
        );
        result.entries = entries;
        result.ignored_files = ignored;
        result
    }

    fn watch_dirs(&self) -> Vec<WatchDir> {
        vec![WatchDir {
            path: self.root.clone(),
            depth: u32::MAX,
            leaf: None,
        }]
    }

    fn entry_at(&self, rel: &Path) -> Option<Box<Path>> {
        fsutil::split_beneath(rel).ok()?;
        Some(rel.into())
    }

    fn stat(&self, id: &Box<Path>) -> io::Result<Option<EntryMeta>> {
        match fsutil::stat_beneath(&self.root, id) {
            Ok(st) if fsutil::is_file_type(&st, libc::S_IFREG) => Ok(Some(entry_meta(&st))),
            Ok(_) => Ok(None),
            // Gone, or a directory on the way swapped for a symlink: not an entry.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV)
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn verify(&self, id: &Box<Path>) -> Vec<Finding> {
        let read_all = || -> io::Result<()> {
            let mut file = fsutil::open_file_beneath(&self.root, id)?;
            let mut buf = vec![0u8; 256 * 1024];
            while file.read(&mut buf)? > 0 {}
            Ok(())
        };
        match read_all() {
            Ok(()) => vec![],
            Err(e) if e.kind() == io::ErrorKind::NotFound => vec![],
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => vec![Finding {
                problem: "not-a-regular-file",
                detail: e.to_string(),
            }],
            Err(e) => vec![Finding {
                problem: "unreadable",
                detail: e.to_string(),
            }],
        }
    }

    fn remove(&self, id: &Box<Path>, used_before: UnixTime, _how: Removing) -> Removal {
        let attempt = || -> io::Result<Removal> {
            let (parent, name) = fsutil::split_beneath(id)?;
            let dir = match fsutil::open_dir_beneath(&self.root, parent) {
                Ok(dir) => dir,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Gone),
                // A directory on the way swapped for a symlink or a file: the entry is
                // no longer in the cache (what the link names never is).
                Err(e) if fsutil::is_swapped(&e) => return Ok(Removal::Gone),
                Err(e) => return Err(e),
            };
            let st = match fsutil::stat_at(&dir, name) {
                Ok(st) => st,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Gone),
                Err(e) => return Err(e),
            };
            if !fsutil::is_file_type(&st, libc::S_IFREG) {
                return Ok(Removal::Skipped("no longer a regular file".into()));
            }
            if super::used_after(fsutil::last_use_stat(&st), used_before) {
                return Ok(Removal::Skipped(
                    "used since the eviction was planned".into(),
                ));
            }
            Ok(match fsutil::unlink_at(&dir, name)? {
                true => Removal::Removed {
                    disk_bytes: fsutil::disk_usage_stat(&st),
                },
                false => Removal::Gone,
            })
        };
        attempt().unwrap_or_else(|e| Removal::Failed(format!("cannot remove: {e}")))
    }

    fn name_of(&self, id: &Box<Path>) -> String {
        fsutil::escape_name(id.as_os_str().as_bytes())
    }

    fn path_of(&self, id: &Box<Path>) -> String {
        self.name_of(id)
    }

    fn parse_name(&self, name: &str) -> Option<Box<Path>> {
        let bytes = fsutil::unescape_name(name)?;
        self.entry_at(Path::new(std::ffi::OsStr::from_bytes(&bytes)))
    }

    fn last_use_signal(&self) -> &'static str {
        "max(atime, mtime) of each file; atime is exact to about a day on relatime mounts, absent on noatime mounts"
    }
}

fn entry_meta(st: &nix::sys::stat::FileStat) -> EntryMeta {
    EntryMeta {
        disk_bytes: fsutil::disk_usage_stat(st),
        apparent_bytes: st.st_size as u64,
        last_use: fsutil::last_use_stat(st),
        aux: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Survivors;
    use filetime::FileTime;

    const EVICT: Removing = Removing::Evict(&Survivors::NONE);

    fn kind_with(files: &[(&str, i64)]) -> (tempfile::TempDir, DirKind) {
        let dir = tempfile::tempdir().unwrap();
        for (name, t) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"data").unwrap();
            filetime::set_file_times(
                &p,
                FileTime::from_unix_time(*t, 0),
                FileTime::from_unix_time(*t, 0),
            )
            .unwrap();
        }
        let kind = DirKind::new(dir.path().to_path_buf());
        (dir, kind)
    }

    #[test]
    fn scan_lists_regular_files_only() {
        let (dir, kind) = kind_with(&[("a", 100), ("sub/b", 200)]);
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let mut found = kind.scan();
        found.entries.sort_by(|a, b| a.0.cmp(&b.0));
        let names: Vec<_> = found
            .entries
            .iter()
            .map(|(id, _)| kind.name_of(id))
            .collect();
        assert_eq!(names, ["a", "sub/b"]);
        assert_eq!(found.entries[1].1.last_use, 200);
        assert_eq!(found.ignored_files, 1);
    }

    #[test]
    fn remove_skips_files_used_after_the_plan() {
        let (dir, kind) = kind_with(&[("a", 100)]);
        let id: Box<Path> = Path::new("a").into();
        assert!(matches!(kind.remove(&id, 99, EVICT), Removal::Skipped(_)));
        assert!(dir.path().join("a").exists());
        assert!(matches!(
            kind.remove(&id, 100, EVICT),
            Removal::Removed { .. }
        ));
        assert!(!dir.path().join("a").exists());
        assert_eq!(kind.remove(&id, 100, EVICT), Removal::Gone);
    }

    #[test]
    fn remove_never_follows_a_symlinked_directory_out_of_the_root() {
        let (dir, kind) = kind_with(&[]);
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), b"x").unwrap();
        filetime::set_file_mtime(
            outside.path().join("precious"),
            FileTime::from_unix_time(1, 0),
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("sub")).unwrap();
        let id: Box<Path> = Path::new("sub/precious").into();
        assert_eq!(kind.remove(&id, i64::MAX, EVICT), Removal::Gone);
        assert!(outside.path().join("precious").exists());
    }

    #[test]
    fn unreadable_files_are_problems() {
        let (dir, kind) = kind_with(&[("a", 100)]);
        let id: Box<Path> = Path::new("a").into();
        assert!(kind.verify(&id).is_empty());
        // A directory or a FIFO where a file was expected is reported, never read (a
        // FIFO would block the reader for ever).
        std::fs::remove_file(dir.path().join("a")).unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        assert_eq!(kind.verify(&id)[0].problem, "not-a-regular-file");
        std::fs::remove_dir(dir.path().join("a")).unwrap();
        nix::unistd::mkfifo(&dir.path().join("a"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let found = kind.verify(&id);
        assert_eq!(found[0].problem, "not-a-regular-file");
        assert!(found[0].detail.contains("FIFO"), "{found:?}");
    }
}
