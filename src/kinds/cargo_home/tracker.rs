//! Cargo's own record of when it last used each thing in its home:
//! `$CARGO_HOME/.global-cache`, SQLite, written since Rust 1.78
//! (`core/global_cache_tracker.rs`). Every build that resolves a package marks its
//! index, `.crate` and sources used (to 5 minutes, `UPDATE_RESOLUTION`), even a no-op
//! build that reads no file: a far better signal than file times, which are all there
//! is without it (older cargo, another tool filling the home).
//!
//! ## Read without touching cargo's database
//!
//! The file is copied into memory through the fd-relative layer (`O_NOFOLLOW`, below
//! the root) and opened there, read-only (`sqlite3_deserialize`): no SQLite lock on
//! cargo's file (a reader's lock delays cargo's commit, which gives up after 5 s), no
//! journal opened by a path a user could swap, nothing written, ever. Cargo writes the
//! file in one transaction with a rollback journal beside it (it sets no journal mode;
//! WAL is avoided on purpose): a copy is taken only while no journal exists and the
//! file did not change during the copy, else the last good copy serves until the next
//! change (the journal's removal at commit is one).

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;

use nix::fcntl::OFlag;

use super::layout::{self, HomeId};
use crate::fsutil;

/// Last uses by entry, in seconds since the epoch.
pub type Uses = Arc<HashMap<HomeId, i64>>;

/// The file's identity and size when it was copied: unchanged, the copy is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    ino: u64,
    mtime_ns: i128,
    size: i64,
}

/// A database larger than this is not read (cargo's holds a row per package: a home
/// with 100,000 packages has a few tens of MiB).
const MAX_BYTES: i64 = 512 << 20;

/// The current version of the file; `None` when there is none.
pub fn version(root: &impl AsFd) -> io::Result<Option<Version>> {
    match fsutil::stat_at(root, layout::TRACKER.as_ref()) {
        Ok(st) => Ok(Some(version_of(&st))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn version_of(st: &nix::sys::stat::FileStat) -> Version {
    Version {
        ino: st.st_ino,
        mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
        size: st.st_size,
    }
}

/// Why a copy cannot be taken now; the caller keeps its last one.
pub enum NotNow {
    /// Cargo is writing it (a journal exists, or it changed during the copy).
    Busy,
    /// Unreadable, or not a database this reader knows: said once, in status.
    Broken(String),
}

/// Reads every last use cargo recorded. `Ok(None)`: there is no tracker.
pub fn read(root: &impl AsFd) -> Result<Option<(Version, Uses)>, NotNow> {
    let journal = format!("{}-journal", layout::TRACKER);
    if fsutil::stat_at(root, journal.as_ref()).is_ok() {
        return Err(NotNow::Busy);
    }
    let broken = |e: &dyn std::fmt::Display| NotNow::Broken(format!("{}: {e}", layout::TRACKER));
    let file = match fsutil::open_at_beneath(
        root,
        Path::new(layout::TRACKER),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK,
    ) {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(broken(&e)),
    };
    let st = nix::sys::stat::fstat(&file).map_err(|e| broken(&e))?;
    if !fsutil::is_file_type(&st, libc::S_IFREG) {
        return Err(broken(&"not a regular file"));
    }
    if st.st_size <= 0 || st.st_size > MAX_BYTES {
        return Err(broken(&format!("{} bytes", st.st_size)));
    }
    let before = version_of(&st);
    let mut db = rusqlite::Connection::open_in_memory().map_err(|e| broken(&e))?;
    db.deserialize_read_exact(rusqlite::MAIN_DB, &file, st.st_size as usize, true)
        .map_err(|e| broken(&e))?;
    let after = nix::sys::stat::fstat(&file).map_err(|e| broken(&e))?;
    if version_of(&after) != before {
        return Err(NotNow::Busy);
    }
    let uses = uses_in(&db).map_err(|e| broken(&e))?;
    Ok(Some((before, Arc::new(uses))))
}

/// Every row of cargo's five tables (schema: `global_cache_tracker.rs::migrations`).
fn uses_in(db: &rusqlite::Connection) -> rusqlite::Result<HashMap<HomeId, i64>> {
    let mut uses = HashMap::new();
    let mut rows = |sql: &str, id: &dyn Fn(String, Option<String>) -> HomeId| {
        let mut stmt = db.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let parent: String = row.get(0)?;
            let name: Option<String> = row.get(1)?;
            let at: i64 = row.get(2)?;
            uses.insert(id(parent, name), at);
        }
        Ok::<_, rusqlite::Error>(())
    };
    rows(
        "SELECT name, NULL, timestamp FROM registry_index",
        &|reg, _| HomeId::Index(reg.into()),
    )?;
    rows(
        "SELECT i.name, c.name, c.timestamp FROM registry_crate c JOIN registry_index i ON c.registry_id = i.id",
        &|reg, file| HomeId::Crate(reg.into(), file.unwrap_or_default().into()),
    )?;
    rows(
        "SELECT i.name, s.name, s.timestamp FROM registry_src s JOIN registry_index i ON s.registry_id = i.id",
        &|reg, dir| HomeId::Src(reg.into(), dir.unwrap_or_default().into()),
    )?;
    rows("SELECT name, NULL, timestamp FROM git_db", &|ident, _| {
        HomeId::GitDb(ident.into())
    })?;
    rows(
        "SELECT d.name, c.name, c.timestamp FROM git_checkout c JOIN git_db d ON c.git_id = d.id",
        &|ident, rev| HomeId::Checkout(ident.into(), rev.unwrap_or_default().into()),
    )?;
    Ok(uses)
}

/// Writes a tracker as cargo does, for tests: `(entry, timestamp)` rows.
#[cfg(test)]
pub fn write_for_test(home: &Path, rows: &[(HomeId, i64)]) {
    let db = rusqlite::Connection::open(home.join(layout::TRACKER)).unwrap();
    db.execute_batch(
        "CREATE TABLE registry_index (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL, timestamp INTEGER NOT NULL);
         CREATE TABLE registry_crate (registry_id INTEGER NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL, timestamp INTEGER NOT NULL, PRIMARY KEY (registry_id, name));
         CREATE TABLE registry_src (registry_id INTEGER NOT NULL, name TEXT NOT NULL, size INTEGER, timestamp INTEGER NOT NULL, PRIMARY KEY (registry_id, name));
         CREATE TABLE git_db (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL, timestamp INTEGER NOT NULL);
         CREATE TABLE git_checkout (git_id INTEGER NOT NULL, name TEXT UNIQUE NOT NULL, size INTEGER, timestamp INTEGER NOT NULL, PRIMARY KEY (git_id, name));",
    )
    .unwrap();
    let parent = |table: &str, name: &str| -> i64 {
        db.execute(
            &format!("INSERT OR IGNORE INTO {table} (name, timestamp) VALUES (?1, 0)"),
            [name],
        )
        .unwrap();
        db.query_row(
            &format!("SELECT id FROM {table} WHERE name = ?1"),
            [name],
            |r| r.get(0),
        )
        .unwrap()
    };
    for (id, at) in rows {
        match id {
            HomeId::Index(reg) => {
                parent("registry_index", reg);
                db.execute(
                    "UPDATE registry_index SET timestamp = ?1 WHERE name = ?2",
                    rusqlite::params![at, &**reg],
                )
                .unwrap();
            }
            HomeId::Crate(reg, name) | HomeId::Src(reg, name) => {
                let table = if matches!(id, HomeId::Crate(..)) {
                    "registry_crate"
                } else {
                    "registry_src"
                };
                let reg = parent("registry_index", reg);
                db.execute(
                    &format!("INSERT INTO {table} VALUES (?1, ?2, 0, ?3)"),
                    rusqlite::params![reg, &**name, at],
                )
                .unwrap();
            }
            HomeId::GitDb(ident) => {
                parent("git_db", ident);
                db.execute(
                    "UPDATE git_db SET timestamp = ?1 WHERE name = ?2",
                    rusqlite::params![at, &**ident],
                )
                .unwrap();
            }
            HomeId::Checkout(ident, rev) => {
                let git = parent("git_db", ident);
                db.execute(
                    "INSERT INTO git_checkout VALUES (?1, ?2, 0, ?3)",
                    rusqlite::params![git, &**rev, at],
                )
                .unwrap();
            }
        }
    }
}
