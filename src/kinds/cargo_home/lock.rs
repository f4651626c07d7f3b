//! Cargo's package-cache locks (`util/cache_lock.rs`), two `flock`s in the CARGO_HOME
//! root, and the rule cargo's own gc follows (`core/gc.rs`):
//!
//! | cargo holds                        | while                                   |
//! |------------------------------------|-----------------------------------------|
//! | `.package-cache` exclusive         | resolving, downloading, extracting, writing `.global-cache` |
//! | `.package-cache-mutate` shared     | a whole build (every rustc and build script reads `src/`) |
//! | both exclusive (mutate first)      | gc deleting                             |
//!
//! Removal takes both, exclusive, without waiting, exactly as cargo's automatic gc
//! does: while any cargo downloads or builds, nothing in its home goes, and a cargo
//! starting meanwhile waits for the removal ("Blocking waiting for file lock on
//! package cache"). Cargo before 1.75 took only `.package-cache`, and only while
//! downloading; its builds are protected by `min_age` alone.
//!
//! The lock files are opened read-only and never created: a root daemon must not leave
//! a root-owned lock file the user's cargo could not open for writing.

use std::os::fd::AsFd;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg, OFlag};

use super::layout::{DOWNLOAD_LOCK, MUTATE_LOCK};
use crate::fsutil;

/// Cargo's two locks, held while this daemon removes something.
pub struct Held {
    _locks: Vec<Flock<std::fs::File>>,
}

/// Takes both locks as cargo's gc does (`MutateExclusive`), without waiting; `Err`
/// says who holds one. A lock file that does not exist is no lock (no cargo ≥ 1.75
/// used this home; an older one creates only `.package-cache`).
pub fn take(root: &impl AsFd) -> Result<Held, String> {
    let mut locks = Vec::new();
    for name in [MUTATE_LOCK, DOWNLOAD_LOCK] {
        let Some((file, st)) = open(root, name)? else {
            continue;
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => locks.push(lock),
            Err(_) => {
                let who = fsutil::flock_holder_name(st.st_dev, st.st_ino)
                    .unwrap_or_else(|| "another process".into());
                return Err(format!("{who} holds cargo's lock {name}"));
            }
        }
    }
    Ok(Held { _locks: locks })
}

/// Who holds either lock now (a build, a download, a gc), learnt without taking them.
pub fn holders(root: &impl AsFd) -> Vec<String> {
    [MUTATE_LOCK, DOWNLOAD_LOCK]
        .into_iter()
        .filter_map(|name| {
            let (_, st) = open(root, name).ok()??;
            let who = fsutil::flock_holder_name(st.st_dev, st.st_ino)?;
            Some(format!("{who} holds cargo's lock {name}"))
        })
        .collect()
}

fn open(
    root: &impl AsFd,
    name: &str,
) -> Result<Option<(std::fs::File, nix::sys::stat::FileStat)>, String> {
    match fsutil::open_at_beneath(root, Path::new(name), OFlag::O_RDONLY | OFlag::O_NONBLOCK) {
        Ok(fd) => {
            let st = nix::sys::stat::fstat(&fd).map_err(|e| format!("{name}: {e}"))?;
            Ok(Some((std::fs::File::from(fd), st)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot open {name}: {e}")),
    }
}
