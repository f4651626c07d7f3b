//! What `cachewarden cacheprog` (the GOCACHEPROG program, `src/cacheprog.rs`) has
//! handed to running go commands, and the lock that keeps a removal from racing a
//! hand-out. Both live in the GOCACHE the program serves from:
//!
//! ```text
//! cachewarden/lock              shared by a cacheprog while it checks and leases an
//!                               entry, exclusive while this daemon removes one
//! cachewarden/leases/<pid>      one per running cacheprog, locked exclusive for its
//!                               life: the action ids it served or stored, a line each
//! ```
//!
//! A lease lasts while its file's `flock` is held, which the kernel lets go when the
//! cacheprog exits however it ends (go closes it, go or it is killed): a lease never
//! outlives its process, and a file whose lock nobody holds is a finished lease (the
//! next cacheprog removes it). go keeps what it was handed until it closes the program
//! (go's `cache/prog.go`: `DiskPath` must exist until `close`), so every leased entry
//! stays, whatever the limits say. The daemon reads these files, never writes or
//! creates them (they belong to the user whose go runs the cacheprog).

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg, OFlag};

use crate::fsutil;

pub const DIR: &str = "cachewarden";
pub const LOCK: &str = "cachewarden/lock";
pub const LEASES: &str = "cachewarden/leases";

/// A lease file larger than this is read only this far (a cacheprog leasing every
/// entry of a 1M-entry cache writes 65 MiB).
const MAX_LEASE_BYTES: u64 = 256 << 20;

/// The live leases, as last read: per lease file (device, inode), its size then and
/// what it leased.
#[derive(Default)]
pub struct Leases {
    read: Mutex<HashMap<(u64, u64), ReadLease>>,
}

type ReadLease = (i64, std::sync::Arc<Lease>);

/// One running cacheprog's lease.
#[derive(Debug, Default)]
pub struct Lease {
    pub pid: u32,
    pub actions: BTreeSet<[u8; 32]>,
}

impl Leases {
    /// Every live lease under `root` (a GOCACHE), reading again only files that grew.
    pub fn live(&self, root: &impl AsFd) -> Vec<std::sync::Arc<Lease>> {
        let Ok(names) = fsutil::list_beneath(root, Path::new(LEASES)) else {
            return Vec::new();
        };
        let mut read = self.read.lock().unwrap();
        let mut live = Vec::new();
        let mut seen = Vec::new();
        for (name, is_dir) in names {
            if is_dir {
                continue;
            }
            let rel = Path::new(LEASES).join(&name);
            let Ok(file) = fsutil::open_file_at(root, &rel) else {
                continue;
            };
            let Ok(st) = nix::sys::stat::fstat(&file) else {
                continue;
            };
            let Some(pid) = fsutil::flock_holder(st.st_dev, st.st_ino) else {
                continue; // finished: its cacheprog exited
            };
            let key = (st.st_dev, st.st_ino);
            seen.push(key);
            match read.get(&key) {
                Some((size, lease)) if *size == st.st_size => live.push(lease.clone()),
                _ => {
                    let lease = std::sync::Arc::new(Lease {
                        pid,
                        actions: parse(file),
                    });
                    read.insert(key, (st.st_size, lease.clone()));
                    live.push(lease);
                }
            }
        }
        read.retain(|key, _| seen.contains(key));
        live
    }
}

/// What is in use: the running-process guard's answer with the live leases' actions
/// (as hex, the keys `GoBuildKind::holds` looks up) and who holds them.
pub fn with_leases(
    guard: Option<crate::kinds::InUse>,
    leases: &[std::sync::Arc<Lease>],
) -> Option<crate::kinds::InUse> {
    if leases.is_empty() {
        return guard;
    }
    let mut keys = BTreeSet::new();
    let mut by = Vec::new();
    for lease in leases {
        keys.extend(
            lease
                .actions
                .iter()
                .map(|a| crate::golang::dirhash::to_hex(a)),
        );
        by.push(format!(
            "cachewarden cacheprog (pid {}) leases {} entries",
            lease.pid,
            lease.actions.len()
        ));
    }
    let (since, guard_by) = match guard {
        Some(g) => (g.since, Some(g.by)),
        None => (crate::UnixTime::MAX, None),
    };
    Some(crate::kinds::InUse {
        since,
        keys: std::sync::Arc::new(keys),
        by: guard_by
            .into_iter()
            .chain(by)
            .collect::<Vec<_>>()
            .join("; "),
    })
}

fn parse(file: std::fs::File) -> BTreeSet<[u8; 32]> {
    let mut text = Vec::new();
    let _ = file.take(MAX_LEASE_BYTES).read_to_end(&mut text);
    text.split(|&b| b == b'\n')
        .filter_map(super::from_hex)
        .collect()
}

/// The store lock, held exclusive by this daemon's removals: shared by the removals
/// running at once (an `flock` taken twice by one process on two descriptors
/// conflicts), taken and let go under this mutex.
#[derive(Default)]
pub struct RemovalLock {
    held: Mutex<Option<(Flock<std::fs::File>, usize)>>,
}

/// One removal's share of the [`RemovalLock`].
pub struct Holding<'a>(Option<&'a RemovalLock>);

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        if let Some(lock) = self.0 {
            let mut held = lock.held.lock().unwrap();
            if let Some((_, users)) = held.as_mut() {
                *users -= 1;
                if *users == 0 {
                    *held = None;
                }
            }
        }
    }
}

impl RemovalLock {
    /// Takes the store lock exclusive without waiting, or shares it with the removals
    /// holding it: a holding that holds nothing when there is no lock file (no
    /// cacheprog ever served this GOCACHE); `Err` says who holds it.
    pub fn take(&self, root: &impl AsFd) -> Result<Holding<'_>, String> {
        let mut held = self.held.lock().unwrap();
        if let Some((_, users)) = held.as_mut() {
            *users += 1;
            return Ok(Holding(Some(self)));
        }
        let fd = match fsutil::open_at_beneath(
            root,
            Path::new(LOCK),
            OFlag::O_RDONLY | OFlag::O_NONBLOCK,
        ) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Holding(None)),
            Err(e) => return Err(format!("cannot open {LOCK}: {e}")),
        };
        let st = nix::sys::stat::fstat(&fd).map_err(|e| e.to_string())?;
        match Flock::lock(std::fs::File::from(fd), FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                *held = Some((lock, 1));
                Ok(Holding(Some(self)))
            }
            Err(_) => {
                let who = fsutil::flock_holder_name(st.st_dev, st.st_ino)
                    .unwrap_or_else(|| "a cacheprog".into());
                Err(format!("{who} is handing out entries"))
            }
        }
    }
}
