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
//! The file is written to a temp file and renamed, so a crash leaves the old snapshot
//! or the new one. Anything unexpected in it (other root, other version, truncation)
//! means a full scan, never a wrong index.
//!
//! Format (little endian): `CWSNAP01`, root path (u32 length + bytes), partition count
//! (u32), per partition a present flag (u8) and mtime (i64 s, i64 ns), entry count
//! (u64), per entry the id (u8 length + bytes) and disk bytes, apparent bytes, last use,
//! aux (4 × 8 bytes), then `END!`.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::kinds::{EntryMeta, Kind, Stamp};

const MAGIC: &[u8; 8] = b"CWSNAP01";
const TRAILER: &[u8; 4] = b"END!";

pub struct Snapshot<I> {
    pub stamps: Vec<Option<Stamp>>,
    pub entries: Vec<(I, EntryMeta)>,
}

pub fn save<'a, K: Kind>(
    kind: &K,
    path: &Path,
    stamps: &[Option<Stamp>],
    count: usize,
    entries: impl Iterator<Item = (&'a K::Id, EntryMeta)>,
) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut out = BufWriter::new(std::fs::File::create(&tmp)?);
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
        out.write_all(&[id_bytes.len() as u8])?;
        out.write_all(&id_bytes)?;
        for v in [m.disk_bytes, m.apparent_bytes, m.last_use as u64, m.aux] {
            out.write_all(&v.to_le_bytes())?;
        }
    }
    out.write_all(TRAILER)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub fn load<K: Kind>(kind: &K, path: &Path) -> io::Result<Snapshot<K::Id>> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    let mut input = BufReader::new(std::fs::File::open(path)?);
    let u64_of = |input: &mut BufReader<std::fs::File>| -> io::Result<u64> {
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
        entries.push((id, meta));
    }
    let mut trailer = [0u8; 4];
    input.read_exact(&mut trailer)?;
    if &trailer != TRAILER {
        return Err(bad("truncated snapshot"));
    }
    Ok(Snapshot { stamps, entries })
}
