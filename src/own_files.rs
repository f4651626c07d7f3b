//! The daemon's own files — its socket, the socket's lock, snapshots — and the
//! directories they live in (safety rule 5).
//!
//! A user daemon started from cron or a plain ssh session has no `XDG_RUNTIME_DIR`, so
//! its socket goes to `/tmp/cachewarden-<uid>/`, a name any local user can predict and
//! create first. A directory someone else owns or can write to lets them plant a symlink
//! where the daemon writes (its lock file would overwrite whatever the link names) or
//! swap the socket for their own (the CLI would send them its requests). So:
//!
//! * the daemon refuses a socket or state directory it does not own, or that its group
//!   or others may write, and says which, whose and what to do ([`UntrustedDir`]);
//! * directories it creates get their final mode at `mkdir` (no window with the umask's
//!   mode before a `chmod`);
//! * its files are opened with `O_NOFOLLOW | O_CLOEXEC` and checked on the descriptor
//!   to be regular files it owns ([`open_own_file`]);
//! * the CLI talks only to a socket in a directory only its user or root could have
//!   made ([`check_socket_dir`]).

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A directory the daemon or the CLI will not trust, and why.
#[derive(Debug)]
pub struct UntrustedDir {
    pub path: PathBuf,
    pub owner: u32,
    pub mode: u32,
    pub why: String,
}

impl fmt::Display for UntrustedDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is owned by {} with mode {:04o}: {}",
            self.path.display(),
            user_name(self.owner),
            self.mode & 0o7777,
            self.why
        )
    }
}

impl std::error::Error for UntrustedDir {}

fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

fn my_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// `dir`'s metadata, refusing a symlink in its place (someone could re-point it).
fn lstat_dir(dir: &Path) -> io::Result<std::fs::Metadata> {
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a directory{}",
                dir.display(),
                if meta.file_type().is_symlink() {
                    " but a symlink"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(meta)
}

/// Creates `dir` (and missing parents) with `mode`, or checks an existing one: it must
/// be owned by this process's uid and writable by no one else. `what` names its use in
/// errors ("socket directory"). Returns whether it was created here.
pub fn ensure_own_dir(dir: &Path, mode: u32, what: &str) -> anyhow::Result<bool> {
    let created = match std::fs::symlink_metadata(dir) {
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    anyhow::anyhow!("creating the {what}'s parent {}: {e}", parent.display())
                })?;
            }
            match std::fs::DirBuilder::new().mode(mode).create(dir) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => anyhow::bail!("creating the {what} {}: {e}", dir.display()),
            }
        }
        Err(e) => anyhow::bail!("the {what} {}: {e}", dir.display()),
    };
    let meta = lstat_dir(dir).map_err(|e| anyhow::anyhow!("the {what}: {e}"))?;
    let untrusted = |why: String| UntrustedDir {
        path: dir.to_path_buf(),
        owner: meta.uid(),
        mode: meta.mode(),
        why,
    };
    if meta.uid() != my_uid() {
        return Err(untrusted(format!(
            "the {what} must be owned by the daemon's user, {}: another user could plant files in it. Remove it (as its owner or root) and start again, or configure a path in a directory you own",
            user_name(my_uid())
        ))
        .into());
    }
    if meta.mode() & 0o022 != 0 {
        return Err(untrusted(format!(
            "the {what} must not be writable by group or others: run `chmod go-w {}` or configure a path in a private directory",
            dir.display()
        ))
        .into());
    }
    Ok(created)
}

/// Whether `dir` exists and passes [`ensure_own_dir`]'s checks (creating nothing).
pub fn is_own_dir(dir: &Path) -> bool {
    lstat_dir(dir).is_ok_and(|m| m.uid() == my_uid() && m.mode() & 0o022 == 0)
}

/// Sets `dir`'s mode exactly (a `mkdir` mode is cut by the umask): only ever to the
/// mode it was meant to have, which adds at most the socket group's read access.
pub fn set_mode(dir: &Path, mode: u32) -> io::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// Opens (creating with mode 0600) one of the daemon's own files for reading and
/// writing, never through a symlink, and checks on the descriptor that it is a regular
/// file owned by this process's uid.
pub fn open_own_file(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).truncate(false);
    open_own(options, path)
}

/// Opens (creating with mode 0600) one of the daemon's logs for appending, with the
/// same checks as [`open_own_file`].
pub fn open_own_log(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true);
    open_own(options, path)
}

/// `options` plus creation with mode 0600, `O_NOFOLLOW | O_CLOEXEC`, then the checks.
fn open_own(mut options: std::fs::OpenOptions, path: &Path) -> io::Result<File> {
    let file = options
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("opening {} (symlinks are refused): {e}", path.display()),
            )
        })?;
    check_own(file, path)
}

/// Opens one of the daemon's files for reading, never through a symlink, refusing
/// anything but a regular file (a FIFO planted there would block the reader).
pub fn open_for_reading(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// `file` if it is a regular file owned by this process's uid.
fn check_own(file: File, path: &Path) -> io::Result<File> {
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != my_uid() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a regular file owned by {}; refusing to write to it",
                path.display(),
                user_name(my_uid())
            ),
        ));
    }
    Ok(file)
}

/// The CLI's check before it talks to `socket`: its directory must be writable by its
/// owner alone, and that owner must be this user or root — or the directory must sit
/// in one only root can write (`/run/cachewarden`, made by systemd for the system
/// daemon's user). Then no other user could have put a socket there.
pub fn check_socket_dir(socket: &Path) -> Result<(), UntrustedDir> {
    let Some(dir) = socket.parent() else {
        return Ok(());
    };
    let Ok(meta) = lstat_dir(dir) else {
        return Ok(()); // connecting will fail and say so
    };
    let untrusted = |why: &str| {
        UntrustedDir {
        path: dir.to_path_buf(),
        owner: meta.uid(),
        mode: meta.mode(),
        why: format!(
            "{why}, so the socket {} may not be cachewarden's; not connecting. Remove the directory (as its owner or root) and restart the daemon",
            socket.display()
        ),
    }
    };
    if meta.mode() & 0o022 != 0 {
        return Err(untrusted("others may write to it"));
    }
    let me = my_uid();
    if meta.uid() == me || meta.uid() == 0 {
        return Ok(());
    }
    let made_by_root = dir
        .parent()
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|p| p.uid() == 0 && p.mode() & 0o022 == 0);
    if made_by_root {
        return Ok(());
    }
    Err(untrusted(&format!(
        "it belongs to another user and sits where any user can create directories (you are {})",
        user_name(me)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_writable_by_others_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        assert!(ensure_own_dir(&dir, 0o700, "socket directory").unwrap());
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o077, 0);
        assert!(!ensure_own_dir(&dir, 0o700, "socket directory").unwrap());
        set_mode(&dir, 0o777).unwrap();
        let e = ensure_own_dir(&dir, 0o700, "socket directory").unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("mode 0777"), "{text}");
        assert!(text.contains("chmod go-w"), "{text}");
        assert!(check_socket_dir(&dir.join("s.sock")).is_err());
    }

    #[test]
    fn a_symlink_in_place_of_the_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("real")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("real"), tmp.path().join("link")).unwrap();
        let e = ensure_own_dir(&tmp.path().join("link"), 0o700, "state directory").unwrap_err();
        assert!(format!("{e:#}").contains("symlink"), "{e:#}");
    }

    #[test]
    fn own_files_are_never_opened_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join("cw.lock")).unwrap();
        assert!(open_own_file(&tmp.path().join("cw.lock")).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        let f = open_own_file(&tmp.path().join("fresh.lock")).unwrap();
        assert_eq!(f.metadata().unwrap().mode() & 0o177, 0);
    }
}
