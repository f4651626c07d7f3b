//! Persisted index snapshots, so a restart rescans only what changed.
//!
//! A kind with partitions (GOCACHE: the 256 shard directories) records each
//! partition's directory mtime when it scans it. Adding or removing an entry changes
//! its directory's mtime, so at restart a partition whose mtime still equals the
//! recorded one holds exactly the entries the snapshot lists for it; only the others
//! are rescanned. Uses of entries (go bumps file mtimes, not directory mtimes) are not
//! seen that way, so restored entries may look older than they are: harmless, because
//! removal re-reads an entry's mtime and skips it if it was used since the plan.
//!
//! The file is written to a temp file with a unique name (`O_EXCL`, never through a
//! symlink, mode 0600) in the state directory the daemon checked is its own, then
//! renamed, so a crash leaves the old snapshot or the new one. It ends with the SHA-256
//! of everything before: one flipped bit (a bad disk, a hand edit, a hostile user with
//! access to the state directory) makes it a mismatch. Anything unexpected (a checksum
//! mismatch, another root or version, truncation, an entry larger than its file system
//! or used in the future, not a regular file) means a full scan, never a wrong index.
//!
//! Format (little endian): `CWSNAP02`, root path (u32 length + bytes), partition count
//! (u32), per partition a present flag (u8) and mtime (i64 s, i64 ns), entry count
//! (u64), per entry the id (u8 length + bytes) and disk bytes, apparent bytes, last use,
//! aux (4 × 8 bytes), then `END!`, then the SHA-256 of all the bytes before it.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::kinds::{EntryMeta, Kind, Stamp};

const MAGIC: &[u8; 8] = b"CWSNAP02";
const TRAILER: &[u8; 4] = b"END!";

pub struct Snapshot<I> {
    pub stamps: Vec<Option<Stamp>>,
    pub entries: Vec<(I, EntryMeta)>,
}

/// A writer that hashes what it writes.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

pub fn save<'a, K: Kind>(
    kind: &K,
    path: &Path,
    stamps: &[Option<Stamp>],
    count: usize,
    entries: impl Iterator<Item = (&'a K::Id, EntryMeta)>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let prefix = format!(
        ".{}.",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    remove_leftover_temps(dir, &prefix);
    // A unique name created with O_EXCL (never an existing file or symlink), 0600.
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    {
        let mut out = Hashing {
            inner: BufWriter::new(tmp.as_file()),
            hash: Sha256::new(),
        };
        out.write_all(MAGIC)?;
        let root = kind.root().as_os_str().as_bytes();
        out.write_all(&(root.len() as u32).to_le_bytes())?;
        out.write_all(root)?;
        out.write_all(&(stamps.len() as u32).to_le_bytes())?;
        for stamp in stamps {
            let s = stamp.unwrap_or(Stamp { secs: 0, nanos: 0 });
            out.write_all(&[stamp.is_some() as u8])?;
            out.write_all(&s.secs.to_le_bytes())?;
            out.write_all(&s.nanos.to_le_bytes())?;
        }
        out.write_all(&(count as u64).to_le_bytes())?;
        let mut id_bytes = Vec::new();
        for (id, m) in entries {
            id_bytes.clear();
            kind.encode_id(id, &mut id_bytes);
            let len = u8::try_from(id_bytes.len()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "entry {} has an id of {} bytes; a snapshot holds at most 255",
                        kind.name_of(id),
                        id_bytes.len()
                    ),
                )
            })?;
            out.write_all(&[len])?;
            out.write_all(&id_bytes)?;
            for v in [m.disk_bytes, m.apparent_bytes, m.last_use as u64, m.aux] {
                out.write_all(&v.to_le_bytes())?;
            }
        }
        out.write_all(TRAILER)?;
        let digest = out.hash.finalize();
        let mut file = out.inner;
        file.write_all(&digest)?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Removes temp files a save of this snapshot left when the daemon was killed during
/// it (a save that ends, well or not, removes its own).
fn remove_leftover_temps(dir: &Path, prefix: &str) {
    let Ok(items) = std::fs::read_dir(dir) else {
        return;
    };
    for item in items.flatten() {
        let name = item.file_name();
        let name = name.to_string_lossy();
        let ours = name.starts_with(prefix) && name.ends_with(".tmp");
        if ours && item.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(item.path());
        }
    }
}

pub fn load<K: Kind>(kind: &K, path: &Path) -> io::Result<Snapshot<K::Id>> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    // Never through a symlink, never blocking on a FIFO planted in its place.
    let file = crate::own_files::open_for_reading(path)?;
    let limits = Plausible::for_root(kind.root());
    let mut input = Hashing {
        inner: BufReader::new(file),
        hash: Sha256::new(),
    };
    let u64_of = |input: &mut Hashing<BufReader<std::fs::File>>| -> io::Result<u64> {
        let mut b = [0u8; 8];
        input.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    };
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(bad("not a cachewarden snapshot of this version"));
    }
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let mut root = vec![0u8; u32::from_le_bytes(len) as usize];
    input.read_exact(&mut root)?;
    if root != kind.root().as_os_str().as_bytes() {
        return Err(bad("snapshot of another cache root"));
    }
    input.read_exact(&mut len)?;
    let parts = u32::from_le_bytes(len) as usize;
    if parts != kind.partitions() {
        return Err(bad("snapshot with another partition count"));
    }
    let mut stamps = Vec::with_capacity(parts);
    for _ in 0..parts {
        let mut present = [0u8; 1];
        input.read_exact(&mut present)?;
        let secs = u64_of(&mut input)? as i64;
        let nanos = u64_of(&mut input)? as i64;
        stamps.push((present[0] == 1).then_some(Stamp { secs, nanos }));
    }
    let count = u64_of(&mut input)?;
    let mut entries = Vec::with_capacity(count.min(1 << 24) as usize);
    let mut id_bytes = [0u8; 255];
    for _ in 0..count {
        let mut n = [0u8; 1];
        input.read_exact(&mut n)?;
        let id_bytes = &mut id_bytes[..n[0] as usize];
        input.read_exact(id_bytes)?;
        let id = kind
            .decode_id(id_bytes)
            .ok_or_else(|| bad("undecodable entry id"))?;
        let meta = EntryMeta {
            disk_bytes: u64_of(&mut input)?,
            apparent_bytes: u64_of(&mut input)?,
            last_use: u64_of(&mut input)? as i64,
            aux: u64_of(&mut input)?,
        };
        if !limits.allows(&meta) {
            return Err(bad(&format!(
                "entry {} is implausible ({} bytes, last used at {})",
                kind.name_of(&id),
                meta.disk_bytes,
                meta.last_use
            )));
        }
        entries.push((id, meta));
    }
    let mut trailer = [0u8; 4];
    input.read_exact(&mut trailer)?;
    if &trailer != TRAILER {
        return Err(bad("truncated snapshot"));
    }
    let computed = input.hash.finalize();
    let mut stored = [0u8; 32];
    input.inner.read_exact(&mut stored)?;
    if computed.as_slice() != stored {
        return Err(bad("checksum mismatch (the file was damaged or changed)"));
    }
    Ok(Snapshot { stamps, entries })
}

/// Bounds a restored entry must be within: no larger than its file system, not used
/// more than a day in the future.
struct Plausible {
    fs_bytes: u64,
    latest_use: i64,
}

impl Plausible {
    fn for_root(root: &Path) -> Plausible {
        Plausible {
            fs_bytes: crate::fsutil::disk_space(root).map_or(u64::MAX, |d| d.total_bytes),
            latest_use: crate::now() + 86_400,
        }
    }

    fn allows(&self, m: &EntryMeta) -> bool {
        m.disk_bytes <= self.fs_bytes
            && m.apparent_bytes <= self.fs_bytes
            && m.last_use <= self.latest_use
    }
}
