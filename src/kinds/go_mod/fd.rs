//! Directory-fd helpers (nothing below the root is resolved as a path string), the
//! measuring of versions, our own threads' claims on versions, and how trustworthy
//! atime is on the cache's file system.
use super::*;

// ---------------------------------------------------------------------------------------
// Directory-fd helpers: nothing below the root is resolved as a path string.

pub(super) use fsutil::DIR_FLAGS;

/// [`fsutil::openat_noatime`]: our reads must not look like uses. A file (not `O_DIRECTORY`)
/// is opened `O_NONBLOCK` and must be a regular file: a FIFO or device planted in a
/// module's tree is an `InvalidInput` error, never a reader blocked for ever.
pub(super) fn open_noatime(dir: impl AsFd, name: &OsStr, flags: OFlag) -> io::Result<OwnedFd> {
    let file = !flags.contains(OFlag::O_DIRECTORY);
    let flags = if file {
        flags | OFlag::O_NONBLOCK
    } else {
        flags
    };
    let fd = fsutil::openat_noatime(dir, name, flags)?;
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

/// A directory's entries (without `.` and `..`), with their type where the
/// filesystem reports it.
pub(super) fn list(dir: &mut Dir) -> io::Result<Vec<(OsString, Option<Type>)>> {
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

pub(super) fn read_small(dir: impl AsFd, name: &OsStr) -> io::Result<Vec<u8>> {
    let fd = open_noatime(dir, name, OFlag::O_RDONLY)?;
    let mut buf = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_SMALL_FILE as u64 + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Opens the directory `rel` below `root`, creating missing components (mode 0777 less
/// the umask, as go's `os.MkdirAll`), never following a symlink.
pub(super) fn open_or_create_dir_beneath(root: &Path, rel: &Path) -> io::Result<OwnedFd> {
    let mut fd = fsutil::open_root(root)?;
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
pub(super) struct TreeStat {
    pub(super) disk: u64,
    pub(super) apparent: u64,
    pub(super) files: u64,
    /// Latest `max(atime, mtime)` of the regular files (`i64::MIN`: none).
    pub(super) last_use: i64,
    /// Latest mtime or ctime (ns) of anything in the tree: any edit moves it.
    pub(super) changed_ns: i128,
}

pub(super) fn ns(secs: i64, nanos: i64) -> i128 {
    secs as i128 * 1_000_000_000 + nanos as i128
}

pub(super) fn changed_ns(st: &FileStat) -> i128 {
    ns(st.st_mtime, st.st_mtime_nsec).max(ns(st.st_ctime, st.st_ctime_nsec))
}

/// Measures the tree `name` in `parent` with [`fsutil::walk_tree`] (a loop: a user's
/// 100,000-level directory is no threat to the daemon's stack).
pub(super) fn stat_tree_at(parent: impl AsFd, name: &OsStr) -> io::Result<TreeStat> {
    let fd = open_noatime(parent, name, DIR_FLAGS)?;
    let st = nix::sys::stat::fstat(&fd)?;
    // A directory's link count counts its subdirectories, not hard links: no sharing.
    let mut acc = TreeStat {
        disk: st.st_blocks as u64 * 512,
        changed_ns: changed_ns(&st),
        last_use: i64::MIN,
        ..TreeStat::default()
    };
    fsutil::walk_tree(fd, fsutil::Walk::WHOLE_TREE, &mut |item| {
        match item {
            fsutil::Visit::Dir { st, .. } => {
                acc.disk += st.st_blocks as u64 * 512;
                acc.changed_ns = acc.changed_ns.max(changed_ns(st));
            }
            fsutil::Visit::Other { st, .. } => {
                acc.disk += fsutil::disk_usage_stat(st);
                acc.apparent += st.st_size as u64;
                acc.changed_ns = acc.changed_ns.max(changed_ns(st));
                if fsutil::is_file_type(st, libc::S_IFREG) {
                    acc.files += 1;
                    acc.last_use = acc.last_use.max(fsutil::last_use_stat(st));
                }
            }
            fsutil::Visit::Left { .. } => {}
            fsutil::Visit::Error { error, .. } => return Err(error),
        }
        Ok(())
    })?;
    Ok(acc)
}

/// Where a version's files are.
#[derive(Debug, Default, Clone)]
pub(super) struct Parts {
    /// `<esc>@<ver>/` exists.
    pub(super) tree: bool,
    /// Names of `<elem>@<ver>.tmp-NNN` directories next to the tree.
    pub(super) tmp_dirs: Vec<OsString>,
    /// This version's files in `@v`.
    pub(super) files: Vec<(OsString, VFile)>,
}

impl Parts {
    pub(super) fn has(&self, kind: VFile) -> bool {
        self.files.iter().any(|(_, k)| *k == kind)
    }

    pub(super) fn names<'a>(&'a self, kinds: &'a [VFile]) -> impl Iterator<Item = &'a OsString> {
        self.files
            .iter()
            .filter(move |(_, k)| kinds.contains(k))
            .map(|(n, _)| n)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sizes {
    pub(super) disk: u64,
    pub(super) apparent: u64,
}

impl Sizes {
    pub(super) fn add_stat(&mut self, st: &FileStat) {
        self.disk += fsutil::disk_usage_stat(st);
        self.apparent += st.st_size as u64;
    }
}

/// One version, measured.
#[derive(Debug, Default)]
pub(super) struct Examined {
    pub(super) tree: Option<Sizes>,
    pub(super) zip: Option<Sizes>,
    pub(super) meta: Option<Sizes>,
    pub(super) last_use: i64,
    pub(super) errors: Vec<String>,
}

impl Examined {
    pub(super) fn role(&self, role: Role) -> Option<Sizes> {
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
pub(super) struct Claims {
    pub(super) held: Mutex<HashSet<Arc<str>>>,
    pub(super) freed: Condvar,
}

pub(super) struct Claim<'a> {
    pub(super) claims: &'a Claims,
    pub(super) key: Arc<str>,
}

impl Claims {
    pub(super) fn claim(&self, key: &Arc<str>) -> Claim<'_> {
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
pub(super) struct Locked<'a> {
    /// The `@v` directory.
    pub(super) vdir: OwnedFd,
    pub(super) _flock: Flock<std::fs::File>,
    /// Released last (fields drop in order): our next thread must find go's lock free.
    pub(super) _claim: Claim<'a>,
}

pub(super) enum LockError {
    /// Go holds the lock.
    Busy(String),
    /// `@v` does not exist and we were not to create it.
    NoDir,
    Io(String),
}

// ---------------------------------------------------------------------------------------
// How trustworthy atime is on the cache's filesystem.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AtimeMode {
    Relatime,
    Strict,
    NoAtime,
    Unknown,
}

/// The atime behaviour of the mount holding `path`, from `/proc/self/mountinfo` text:
/// the longest mount point that contains `path` wins (later lines on ties, as later
/// mounts shadow earlier ones).
pub(super) fn atime_mode(mountinfo: &str, path: &Path) -> AtimeMode {
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

/// Whether the mount holding `path` is `noatime` (last use is then the download time).
pub fn mounted_noatime(mountinfo: &str, path: &Path) -> bool {
    atime_mode(mountinfo, path) == AtimeMode::NoAtime
}

/// What `cachewarden doctor` should warn about a module cache at `path`: (what, fix).
pub fn setup_warnings(path: &Path) -> Vec<(String, String)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    match mounted_noatime(&mountinfo, path) {
        true => vec![(
            "its filesystem is mounted noatime: go records no use of modules, so last use is the download time and eviction is by download age".into(),
            "remount with relatime (the default) if modules you use daily get evicted".into(),
        )],
        false => Vec::new(),
    }
}

pub(super) const SIGNAL_RELATIME: &str = "max(atime, mtime) of each module version's files (tree, .zip, .info, .mod): go records no use; this filesystem is mounted relatime, which updates atime at most once a day, so last use is exact to about a day";
pub(super) const SIGNAL_STRICT: &str = "max(atime, mtime) of each module version's files (tree, .zip, .info, .mod): go records no use; this filesystem updates atime on every read (strictatime), so last use is exact";
pub(super) const SIGNAL_NOATIME: &str = "mtime of each module version's files only: go records no use and this filesystem is mounted noatime, so atime is absent and last use is the download time (eviction is by download age)";
pub(super) const SIGNAL_UNKNOWN: &str = "max(atime, mtime) of each module version's files (tree, .zip, .info, .mod): go records no use; the mount options of this filesystem are unknown, so atime may be exact to a day (relatime) or absent (noatime)";
