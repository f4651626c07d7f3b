//! One daemon per socket, per state directory and per cache root.
//!
//! Two daemons on the same caches would scan, evict and repair the same entries
//! twice and, on one state directory, overwrite each other's snapshots and audit
//! trail. A second daemon started with another socket path (or where
//! `XDG_RUNTIME_DIR` differs) used to run beside the first with no warning (issue
//! #29). So each claim is an `flock` — released by the kernel when the process dies,
//! never a stale pid file:
//!
//! * `<socket>.lock`: one daemon per socket (then a stale socket file is replaced, a
//!   live one refused);
//! * `<state_dir>/daemon.lock`, holding the pid and the socket path: a second daemon on
//!   the same state directory refuses to start, naming the first; `status` and
//!   `doctor` find the running daemon through it when their socket path differs;
//! * the cache root directory itself (no file is written into a cache): a daemon that
//!   finds a root locked manages it anyway — a user could lock their own cache to
//!   escape the limits — but says, in the cache's errors, which process holds it.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;

use crate::config;
use crate::own_files;

/// The daemon's claims, held while it runs.
pub struct Instance {
    pub listener: UnixListener,
    /// The state directory, if it is the daemon's own and locked by it.
    pub state_dir: Option<PathBuf>,
    _socket_lock: Flock<File>,
    _state_lock: Option<Flock<File>>,
}

/// Claims the state directory, then the socket. A state directory another daemon
/// holds is an error naming it; one that is not the daemon's own is a warning (restarts
/// then rescan everything).
pub fn claim(daemon: &config::DaemonConfig) -> anyhow::Result<Instance> {
    let (state_dir, state_lock) = match prepare_state_dir(daemon.state_dir.as_deref()) {
        Some(dir) => match lock_state_dir(&dir, &daemon.socket)? {
            Some(lock) => (Some(dir), Some(lock)),
            None => (None, None),
        },
        None => (None, None),
    };
    let (listener, socket_lock) = bind(daemon)?;
    Ok(Instance {
        listener,
        state_dir,
        _socket_lock: socket_lock,
        _state_lock: state_lock,
    })
}

const STATE_LOCK: &str = "daemon.lock";

/// Locks the state directory: `Ok(None)` if its lock file cannot be opened: the daemon
/// then runs without snapshots, as with no state directory, rather than not at all.
/// Held by another daemon: an error naming it. The lock is held on a read-only
/// descriptor (a file open for writing would keep its file system from being remounted
/// read-only); the pid and socket are written through another, closed at once.
fn lock_state_dir(dir: &Path, socket: &Path) -> anyhow::Result<Option<Flock<File>>> {
    let path = dir.join(STATE_LOCK);
    let opened = own_files::open_own_file(&path)
        .and_then(|rw| Ok((rw, own_files::open_for_reading(&path)?)));
    let (mut rw, ro) = match opened {
        Ok(files) => files,
        Err(e) => {
            tracing::warn!(
                "no index snapshots (restarts rescan everything): cannot open {}: {e}",
                path.display()
            );
            return Ok(None);
        }
    };
    let lock = match Flock::lock(ro, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, _)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let (pid, other) = parse_state_lock(&text);
            bail!(
                "another cachewarden (pid {pid}, socket {other}) uses the state directory {}: two daemons would manage the same caches and overwrite each other's snapshots and audit trail; stop it (or ask it: `curl --unix-socket {other} http://localhost/v1/status`), or give this one its own state_dir",
                dir.display()
            );
        }
    };
    let written = rw
        .set_len(0)
        .and_then(|_| writeln!(rw, "{}\n{}", std::process::id(), socket.display()));
    if let Err(e) = written {
        // Still held, so no second daemon starts here; only `status` cannot find this
        // one through it.
        tracing::warn!("cannot write {}: {e}", path.display());
    }
    Ok(Some(lock))
}

fn parse_state_lock(text: &str) -> (String, String) {
    let mut lines = text.lines();
    let pid = lines.next().unwrap_or("?").trim().to_string();
    let socket = lines.next().unwrap_or("?").trim().to_string();
    (pid, socket)
}

/// The daemon running on `state_dir`, if one holds its lock: (pid, socket path).
/// Readable by the daemon's own user (the directory is private). The holder is looked
/// up in `/proc/locks`, not by trying the lock: a probe could make a daemon starting
/// at that instant refuse to.
pub fn running_on(state_dir: &Path) -> Option<(u32, PathBuf)> {
    let path = state_dir.join(STATE_LOCK);
    let mut file = own_files::open_for_reading(&path).ok()?;
    let st = nix::sys::stat::fstat(&file).ok()?;
    let pid = crate::fsutil::flock_holder(st.st_dev, st.st_ino)?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let (_, socket) = parse_state_lock(&text);
    Some((pid, PathBuf::from(socket)))
}

/// A cache root locked by this daemon (see the module doc).
///
/// The lock's descriptor keeps a removed root's inode alive, and the kernel sends the
/// watcher's `IN_DELETE_SELF` only once the last reference goes: the daemon drops the
/// lock of a root it finds removed ([`RootLock::removed`]), so that `rm -rf` of a root
/// is seen as before.
pub struct RootLock(Flock<File>);

impl RootLock {
    /// The locked directory has been removed (it has no links left).
    pub fn removed(&self) -> bool {
        nix::sys::stat::fstat(&*self.0).is_ok_and(|st| st.st_nlink == 0)
    }
}

/// Locks the directory `root`; `Err` says which process holds it, or why it could
/// not be opened.
pub fn lock_root(root: &Path) -> Result<RootLock, String> {
    let fd = crate::fsutil::open_root(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| e.to_string())?;
    match Flock::lock(File::from(fd), FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(RootLock(lock)),
        Err(_) => {
            let holder = crate::fsutil::flock_holder(st.st_dev, st.st_ino)
                .map(|pid| {
                    let comm =
                        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                    format!("pid {pid} ({})", comm.trim())
                })
                .unwrap_or_else(|| "another process".into());
            Err(format!(
                "{holder} holds the lock of {}: another cachewarden daemon manages this cache too, and two would scan, evict and repair the same entries; stop one, or drop this cache from one config",
                root.display()
            ))
        }
    }
}

/// Creates the snapshot directory (private) or checks that an existing one is the
/// daemon's own; without one, restarts scan fully.
fn prepare_state_dir(dir: Option<&Path>) -> Option<PathBuf> {
    let dir = dir?;
    match own_files::ensure_own_dir(dir, 0o700, "state directory") {
        Ok(_) => Some(dir.to_path_buf()),
        Err(e) => {
            tracing::warn!("no index snapshots (restarts rescan everything): {e:#}");
            None
        }
    }
}

/// Claims the socket: one daemon per socket path, a stale socket file replaced, the
/// socket private to the daemon's user (and the configured group), in a directory that
/// is the daemon's own (`own_files.rs`).
fn bind(daemon: &config::DaemonConfig) -> anyhow::Result<(UnixListener, Flock<File>)> {
    let socket = &daemon.socket;
    let dir = socket
        .parent()
        .with_context(|| format!("socket path {} has no directory", socket.display()))?;
    let everyone = matches!(daemon.socket_group, Some((_, config::ALL_USERS_GID)));
    let group = daemon
        .socket_group
        .as_ref()
        .map(|(_, gid)| *gid)
        .filter(|_| !everyone);
    let (dir_mode, socket_mode) = match (everyone, group) {
        (true, _) => (0o755, 0o666),
        (false, Some(_)) => (0o750, 0o660),
        (false, None) => (0o700, 0o600),
    };
    let created = own_files::ensure_own_dir(dir, 0o700, "socket directory")?;
    // A directory named for us is ours to keep private; another (`~/run`) keeps the
    // permissions its owner gave it, which `ensure_own_dir` checked are safe.
    let ours = dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("cachewarden"));
    if created || ours {
        if let Some(gid) = group {
            nix::unistd::chown(dir, None, Some(nix::unistd::Gid::from_raw(gid)))
                .with_context(|| format!("giving {} to the socket group", dir.display()))?;
        }
        own_files::set_mode(dir, dir_mode)
            .with_context(|| format!("making {} private", dir.display()))?;
    }

    let lock_path = PathBuf::from(format!("{}.lock", socket.display()));
    let lock_file = own_files::open_own_file(&lock_path)?;
    let mut lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, _)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            bail!(
                "cachewarden is already running on {} (pid {}); stop it first or use another socket",
                socket.display(),
                pid.trim()
            );
        }
    };
    lock.set_len(0)?;
    lock.rewind()?;
    write!(lock, "{}", std::process::id())?;

    replace_stale_socket(socket)?;
    let listener =
        UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    if let Some(gid) = group {
        nix::unistd::chown(socket, None, Some(nix::unistd::Gid::from_raw(gid)))?;
    }
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(socket_mode))?;
    Ok((listener, lock))
}

fn replace_stale_socket(socket: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(socket) {
        Ok(meta) => meta,
        Err(_) => return Ok(()),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; refusing to replace it",
            socket.display()
        );
    }
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        bail!(
            "cachewarden is already running on {} (it answers connections)",
            socket.display()
        );
    }
    tracing::info!("removing stale socket {}", socket.display());
    std::fs::remove_file(socket)
        .with_context(|| format!("removing stale socket {}", socket.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_root_names_the_process_that_holds_it() {
        let tmp = tempfile::tempdir().unwrap();
        let first = lock_root(tmp.path()).unwrap();
        let err = lock_root(tmp.path()).err().unwrap();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(lock_root(tmp.path()).is_ok());
    }
}
