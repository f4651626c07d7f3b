//! `cachewarden cacheprog`: a GOCACHEPROG program (Go ≥ 1.24) serving go's build cache
//! from a GOCACHE in go's own layout, so every use is seen and nothing damaged reaches
//! the compiler.
//!
//! ## The protocol (go's `cmd/go/internal/cacheprog` and `cache/prog.go`)
//!
//! JSON values one after another on stdin and stdout. This program speaks first:
//! `{"ID":0,"KnownCommands":["get","put","close"]}`. Then go sends requests (`ID`,
//! `Command`, `ActionID`, `OutputID` — `ObjectID` before 1.24 —, `BodySize`), a `put`
//! with a body followed by the body as a base64 JSON string, and reads one response per
//! request (`ID`, `Err`, `Miss`, `OutputID`, `Size`, `Time`, `DiskPath`). A hit's
//! `DiskPath` is handed to the compiler and linker, so it must stay until `close`; go
//! copies it (instead of moving it away) because it lies below `$GOCACHE`. A `get`
//! error is a miss for go, a `put` error may fail the build: puts degrade instead.
//!
//! ## The store
//!
//! The GOCACHE itself, in go's layout (`kinds/go_build/format.rs`): the go-build kind,
//! `go clean -cache` and go without GOCACHEPROG all keep working on it. Differences
//! from go's own writer: files are written to a temporary name and renamed into place
//! (never half-written), the action's time field is the output's `ctime` once written,
//! and every hit sets the action's mtime (go does at most hourly).
//!
//! ## Nothing damaged reaches the compiler
//!
//! A `put`'s body must hash to the `OutputID` go gave it. On a `get`, an output whose
//! size and `ctime` are still those the action recorded has not been written since it
//! was checked (any write changes `ctime`, which no one can set back); anything else
//! is hashed again. A mismatch is a miss (go rebuilds and puts it anew) and the entry is
//! removed.
//!
//! ## Leases (`kinds/go_build/leases.rs`)
//!
//! Each action handed out or stored is appended to this process's lease file, whose
//! `flock` it holds until it exits; the daemon never removes a leased entry. The check
//! and the lease happen under the store lock, shared, which the daemon takes exclusive
//! to remove: a removal and a hand-out never interleave.

use std::io::{self, BufRead, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use base64::Engine;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::fsutil;
use crate::golang::dirhash::to_hex;
use crate::kinds::go_build::{self, leases, Action};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    #[serde(rename = "ID")]
    id: u64,
    command: String,
    #[serde(rename = "ActionID", default)]
    action_id: Option<String>,
    #[serde(rename = "OutputID", default)]
    output_id: Option<String>,
    /// What go 1.21–1.23 called `OutputID`.
    #[serde(rename = "ObjectID", default)]
    object_id: Option<String>,
    #[serde(default)]
    body_size: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Response {
    #[serde(rename = "ID")]
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    err: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    known_commands: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    miss: bool,
    #[serde(rename = "OutputID", skip_serializing_if = "Option::is_none")]
    output_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_path: Option<String>,
}

/// Counts of what one run served, for its closing log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub hits: u64,
    pub misses: u64,
    pub puts: u64,
    /// Outputs found damaged (a miss, and removed).
    pub damaged: u64,
}

/// A GOCACHE served to go.
pub struct Store {
    root_path: PathBuf,
    root: OwnedFd,
    lock: std::fs::File,
    lease: std::fs::File,
    /// The lease file's lock, held for this process's life.
    _leased: Flock<std::fs::File>,
    temp_serial: u64,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

impl Store {
    /// Opens the GOCACHE at `root` (which go has created) and takes a lease for this
    /// process, removing the lease files of cacheprogs that have exited.
    pub fn open(root: &Path) -> io::Result<Store> {
        let root_fd = fsutil::open_root(root)?;
        for dir in [leases::DIR, leases::LEASES] {
            match nix::sys::stat::mkdirat(&root_fd, Path::new(dir), Mode::from_bits_truncate(0o755))
            {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => {
                    return Err(io::Error::other(format!(
                        "cannot create {dir} in {}: {e}",
                        root.display()
                    )))
                }
            }
        }
        let create = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_CLOEXEC;
        let lock = open_own(&root_fd, Path::new(leases::LOCK), create)?;
        finish_stale_leases(&root_fd);
        // Locked before it is visible under its name: a lease file found unlocked is
        // always a finished one, never one whose cacheprog is about to lock it.
        let pid = std::process::id();
        let name = Path::new(leases::LEASES).join(pid.to_string());
        let temp = Path::new(leases::LEASES).join(format!(".{pid}.new"));
        let lease = open_own(&root_fd, &temp, create | OFlag::O_APPEND | OFlag::O_TRUNC)?;
        let held = Flock::lock(lease.try_clone()?, FlockArg::LockExclusive)
            .map_err(|(_, e)| io::Error::from(e))?;
        nix::fcntl::renameat(&root_fd, &temp, &root_fd, &name)?;
        Ok(Store {
            root_path: root.to_path_buf(),
            root: root_fd,
            lock,
            lease,
            _leased: held,
            temp_serial: 0,
        })
    }

    fn shard(&self, id: &[u8; 32]) -> io::Result<OwnedFd> {
        let name = format!("{:02x}", id[0]);
        match fsutil::open_at_beneath(&self.root, Path::new(&name), fsutil::DIR_FLAGS) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match nix::sys::stat::mkdirat(
                    &self.root,
                    Path::new(&name),
                    Mode::from_bits_truncate(0o777),
                ) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                fsutil::open_at_beneath(&self.root, Path::new(&name), fsutil::DIR_FLAGS)
            }
            other => other,
        }
    }

    fn path_of(&self, id: &[u8; 32], suffix: char) -> String {
        let mut path = self.root_path.clone();
        path.push(format!("{:02x}", id[0]));
        path.push(format!("{}-{suffix}", to_hex(id)));
        path.to_string_lossy().into_owned()
    }

    fn lease(&self, action: &[u8; 32]) {
        let mut line = to_hex(action);
        line.push('\n');
        // One write: the daemon reads whole lines.
        let _ = (&self.lease).write_all(line.as_bytes());
    }

    /// Under the store lock, shared: no removal runs meanwhile.
    fn under_lock<T>(&self, f: impl FnOnce() -> T) -> io::Result<T> {
        let held = Flock::lock(self.lock.try_clone()?, FlockArg::LockShared)
            .map_err(|(_, e)| io::Error::from(e))?;
        let out = f();
        drop(held);
        Ok(out)
    }

    /// A hit: (the action as stored, the output's path); `None` for a miss.
    pub fn get(
        &self,
        action_id: &[u8; 32],
        served: &mut Served,
    ) -> io::Result<Option<(Action, String)>> {
        self.under_lock(|| -> io::Result<Option<(Action, String)>> {
            let shard = self.shard(action_id)?;
            let name = format!("{}-a", to_hex(action_id));
            let Ok(bytes) = read_small(&shard, &name) else {
                return Ok(None);
            };
            let Ok(action) = go_build::parse_action(&bytes) else {
                return Ok(None);
            };
            if action.action != *action_id {
                return Ok(None);
            }
            let out_shard = self.shard(&action.output)?;
            let out_name = format!("{}-d", to_hex(&action.output));
            let st = match fsutil::stat_at(&out_shard, out_name.as_ref()) {
                Ok(st) if fsutil::is_file_type(&st, libc::S_IFREG) => st,
                _ => return Ok(None),
            };
            if st.st_size as u64 != action.size {
                served.damaged += 1;
                let _ = fsutil::unlink_at(&shard, name.as_ref());
                return Ok(None);
            }
            let mut action = action;
            if ctime_ns(&st) != action.time_ns {
                // Written since it was checked, or never checked: hash it.
                let ok = sha256_of(&out_shard, &out_name).is_ok_and(|h| h == action.output);
                if !ok {
                    served.damaged += 1;
                    let _ = fsutil::unlink_at(&shard, name.as_ref());
                    let _ = fsutil::unlink_at(&out_shard, out_name.as_ref());
                    return Ok(None);
                }
                action.time_ns = ctime_ns(&st);
                self.write_atomic(&shard, &name, go_build::format_action(&action).as_bytes())?;
            } else {
                // A use, seen at once (go bumps mtime at most hourly).
                let now = nix::sys::time::TimeSpec::UTIME_NOW;
                let _ = nix::sys::stat::utimensat(
                    &shard,
                    Path::new(&name),
                    &nix::sys::time::TimeSpec::UTIME_OMIT,
                    &now,
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                );
            }
            self.lease(action_id);
            Ok(Some((action, self.path_of(&action.output, 'd'))))
        })?
    }

    /// Stores `body` as the output `output_id` of `action_id`; returns its path.
    pub fn put(
        &mut self,
        action_id: &[u8; 32],
        output_id: &[u8; 32],
        body: &[u8],
    ) -> io::Result<String> {
        let digest: [u8; 32] = sha2::Sha256::digest(body).into();
        if digest != *output_id {
            return Err(io::Error::other(format!(
                "the body of {} does not hash to its output id",
                to_hex(action_id)
            )));
        }
        self.temp_serial += 1;
        let this = &*self;
        this.under_lock(|| -> io::Result<String> {
            let out_shard = this.shard(output_id)?;
            let out_name = format!("{}-d", to_hex(output_id));
            let existing = fsutil::stat_at(&out_shard, out_name.as_ref())
                .ok()
                .filter(|st| {
                    fsutil::is_file_type(st, libc::S_IFREG) && st.st_size as usize == body.len()
                })
                .filter(|_| sha256_of(&out_shard, &out_name).is_ok_and(|h| h == *output_id));
            let st = match existing {
                Some(st) => st,
                None => {
                    this.write_atomic(&out_shard, &out_name, body)?;
                    fsutil::stat_at(&out_shard, out_name.as_ref())?
                }
            };
            let action = Action {
                action: *action_id,
                output: *output_id,
                size: body.len() as u64,
                time_ns: ctime_ns(&st),
            };
            let shard = this.shard(action_id)?;
            let name = format!("{}-a", to_hex(action_id));
            this.write_atomic(&shard, &name, go_build::format_action(&action).as_bytes())?;
            this.lease(action_id);
            Ok(this.path_of(output_id, 'd'))
        })?
    }

    /// Writes `name` in `dir` through a temporary name and a rename: never half there.
    fn write_atomic(&self, dir: &OwnedFd, name: &str, bytes: &[u8]) -> io::Result<()> {
        let temp = format!(".{name}.tmp-{}-{}", std::process::id(), self.temp_serial);
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(
            dir,
            Path::new(&temp),
            flags,
            Mode::from_bits_truncate(0o666),
        )?;
        let mut file = std::fs::File::from(fd);
        let written = file.write_all(bytes);
        drop(file);
        if let Err(e) = written.and_then(|()| {
            nix::fcntl::renameat(dir, Path::new(&temp), dir, Path::new(name))
                .map_err(io::Error::from)
        }) {
            let _ = fsutil::unlink_at(dir, temp.as_ref());
            return Err(e);
        }
        Ok(())
    }
}

fn ctime_ns(st: &nix::sys::stat::FileStat) -> i64 {
    st.st_ctime
        .saturating_mul(1_000_000_000)
        .saturating_add(st.st_ctime_nsec)
}

fn read_small(dir: &OwnedFd, name: &str) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    io::Read::read_to_end(
        &mut io::Read::take(fsutil::open_file_at(dir, Path::new(name))?, 4096),
        &mut out,
    )?;
    Ok(out)
}

fn sha256_of(dir: &OwnedFd, name: &str) -> io::Result<[u8; 32]> {
    let mut file = fsutil::open_file_at(dir, Path::new(name))?;
    let mut hasher = sha2::Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// Opens (creating) one of this program's own files below the store, never through a
/// symlink, and refuses one another user owns.
fn open_own(root: &OwnedFd, rel: &Path, flags: OFlag) -> io::Result<std::fs::File> {
    let fd = nix::fcntl::openat(
        root,
        rel,
        flags | OFlag::O_NOFOLLOW,
        Mode::from_bits_truncate(0o644),
    )?;
    let st = nix::sys::stat::fstat(&fd)?;
    if st.st_uid != nix::unistd::geteuid().as_raw() || !fsutil::is_file_type(&st, libc::S_IFREG) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a file of this user's", rel.display()),
        ));
    }
    Ok(std::fs::File::from(fd))
}

/// Removes the lease files whose cacheprog has exited (nobody holds their lock).
fn finish_stale_leases(root: &OwnedFd) {
    let Ok(names) = fsutil::list_beneath(root, Path::new(leases::LEASES)) else {
        return;
    };
    let Ok(dir) = fsutil::open_at_beneath(root, Path::new(leases::LEASES), fsutil::DIR_FLAGS)
    else {
        return;
    };
    // (Names starting with a dot are leases being created: see `Store::open`.)
    for (name, _) in names
        .into_iter()
        .filter(|(n, _)| !n.as_encoded_bytes().starts_with(b"."))
    {
        let Ok(file) = fsutil::open_file_at(&dir, Path::new(&name)) else {
            continue;
        };
        if let Ok(held) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            let _ = fsutil::unlink_at(&dir, &name);
            drop(held);
        }
    }
}

fn id_of(text: Option<&String>) -> Option<[u8; 32]> {
    B64.decode(text?).ok()?.try_into().ok()
}

/// Serves go until it sends `close` or closes stdin.
pub fn serve(store: &mut Store, input: impl BufRead, mut output: impl Write) -> io::Result<Served> {
    let mut served = Served::default();
    let send = |output: &mut dyn Write, r: Response| -> io::Result<()> {
        serde_json::to_writer(&mut *output, &r)?;
        output.write_all(b"\n")?;
        output.flush()
    };
    send(
        &mut output,
        Response {
            id: 0,
            known_commands: Some(vec!["get", "put", "close"]),
            ..Response::default()
        },
    )?;
    let mut values = serde_json::Deserializer::from_reader(input).into_iter::<serde_json::Value>();
    while let Some(value) = values.next() {
        let value = value
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("from go: {e}")))?;
        let request: Request = serde_json::from_value(value).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a request from go: {e}"),
            )
        })?;
        let mut response = Response {
            id: request.id,
            ..Response::default()
        };
        match request.command.as_str() {
            "get" => match id_of(request.action_id.as_ref()) {
                None => response.miss = true,
                Some(action_id) => match store.get(&action_id, &mut served) {
                    Ok(Some((action, path))) => {
                        served.hits += 1;
                        response.output_id = Some(B64.encode(action.output));
                        response.size = Some(action.size);
                        response.time = chrono::DateTime::from_timestamp_nanos(action.time_ns)
                            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                            .into();
                        response.disk_path = Some(path);
                    }
                    Ok(None) | Err(_) => {
                        served.misses += 1;
                        response.miss = true;
                    }
                },
            },
            "put" => {
                let body = match request.body_size {
                    0 => Vec::new(),
                    _ => match values.next() {
                        Some(Ok(serde_json::Value::String(b64))) => {
                            B64.decode(b64).map_err(|e| {
                                io::Error::new(
                                    io::ErrorKind::InvalidData,
                                    format!("a put body from go: {e}"),
                                )
                            })?
                        }
                        other => {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("expected a put body from go, got {other:?}"),
                            ))
                        }
                    },
                };
                let output_id = id_of(request.output_id.as_ref().or(request.object_id.as_ref()));
                match (id_of(request.action_id.as_ref()), output_id) {
                    (Some(action_id), Some(output_id)) => {
                        match store.put(&action_id, &output_id, &body) {
                            Ok(path) => {
                                served.puts += 1;
                                response.disk_path = Some(path);
                            }
                            Err(e) => response.err = Some(e.to_string()),
                        }
                    }
                    _ => response.err = Some("a put without a valid ActionID and OutputID".into()),
                }
            }
            "close" => {
                send(&mut output, response)?;
                return Ok(served);
            }
            other => response.err = Some(format!("unknown command {other:?}")),
        }
        send(&mut output, response)?;
    }
    Ok(served)
}

#[cfg(test)]
mod tests;
