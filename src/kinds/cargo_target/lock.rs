//! Cargo's build lock: `<profile>/.cargo-lock`, which cargo holds with an exclusive
//! `flock` for the whole build of that profile directory (`util/flock.rs`,
//! `Filesystem::open_rw_exclusive_create`, taken by `Layout::new`; a second cargo
//! prints "Blocking waiting for file lock on build directory").
//!
//! The rule is go's (design.md, safety rule 3): a profile directory is never touched
//! while cargo builds in it. Removal takes the same lock without waiting, so a cargo
//! that starts meanwhile waits for the removal instead of reading half a unit; and who
//! holds it is learnt from `/proc/locks` without taking it, for planning and status.
//! The lock file is opened read-only, never created: a root daemon must not leave a
//! root-owned `.cargo-lock` the user's cargo could not open.

use std::path::Path;

use nix::fcntl::{Flock, FlockArg, OFlag};

use super::layout::LOCK;
use crate::fsutil;

/// A profile's build lock, held while units are removed from it.
pub struct Held {
    _lock: Option<Flock<std::fs::File>>,
}

/// Takes the build lock of `profile` (relative to the target directory open as
/// `root`) without waiting. `Ok(Held)` also when the profile has no lock file (no cargo
/// ever built there, as cargo always creates it); `Err` names who holds it.
pub fn take(root: &impl std::os::fd::AsFd, profile: &Path) -> Result<Held, String> {
    let path = profile.join(LOCK);
    let fd = match fsutil::open_at_beneath(root, &path, OFlag::O_RDONLY | OFlag::O_NONBLOCK) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Held { _lock: None }),
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    let st = nix::sys::stat::fstat(&fd).map_err(|e| e.to_string())?;
    match Flock::lock(std::fs::File::from(fd), FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Held { _lock: Some(lock) }),
        Err((_, _)) => Err(holder_text(profile, st.st_dev, st.st_ino)),
    }
}

/// Who else holds the build lock of `profile`, if anyone: "cargo (pid 123) holds the
/// build lock of debug". (This daemon's own removals hold it too; they do not count.)
pub fn holder(root: &impl std::os::fd::AsFd, profile: &Path) -> Option<String> {
    let st = fsutil::open_at_beneath(
        root,
        &profile.join(LOCK),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK,
    )
    .ok()
    .and_then(|fd| nix::sys::stat::fstat(&fd).ok())?;
    let who = fsutil::flock_holder_name(st.st_dev, st.st_ino)?;
    Some(format!(
        "{who} holds the build lock of {}",
        profile.display()
    ))
}

fn holder_text(profile: &Path, dev: u64, ino: u64) -> String {
    let who = fsutil::flock_holder_name(dev, ino).unwrap_or_else(|| "another process".into());
    format!("{who} holds the build lock of {}", profile.display())
}
