//! The audit trail: every entry the daemon removed, when, why and at whose request, so
//! "why was my entry deleted?" has an answer.
//!
//! Each removal is one JSON line in `<state_dir>/audit.jsonl` and one structured event
//! in the log (journald keeps its fields: `CACHE=`, `ENTRY=`, `REASON=`, …). The file
//! is bounded: past [`MAX_BYTES`] it is renamed to `audit.jsonl.1` (the previous
//! generation is dropped) and a new one begun, so the trail costs at most twice that.
//! Like every file the daemon writes, it is opened with `O_NOFOLLOW` in the state
//! directory the daemon checked is its own (`own_files.rs`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::report::{EvictionReport, VerifyReport};
use crate::UnixTime;

/// Size at which the trail is rotated.
pub const MAX_BYTES: u64 = 16 << 20;
const FILE: &str = "audit.jsonl";

/// One removal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: UnixTime,
    pub cache: String,
    pub entry: String,
    /// Relative to the cache root.
    pub path: String,
    /// Disk usage freed, where known (repairs report none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_use: Option<UnixTime>,
    /// `max-age`, `max-size`, `min-free`, `request`, or `repair:<problem>`.
    pub reason: String,
    /// Who asked, for `request` (the peer's uid over the socket; the CLI's own uid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
}

/// The records an eviction report stands for (none for a dry run).
pub fn of_eviction(report: &EvictionReport, uid: Option<u32>) -> Vec<AuditRecord> {
    if report.dry_run {
        return Vec::new();
    }
    report
        .evicted
        .iter()
        .map(|e| {
            let reason = serde_json::to_value(e.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let requested = reason == "requested";
            AuditRecord {
                at: report.at,
                cache: report.cache.clone(),
                entry: e.entry.entry.clone(),
                path: e.entry.path.clone(),
                bytes: Some(e.entry.disk_bytes),
                last_use: Some(e.entry.last_use),
                reason: if requested { "request".into() } else { reason },
                uid: uid.filter(|_| requested),
            }
        })
        .collect()
}

/// The records of the entries a sweep repaired (removed).
pub fn of_repairs(report: &VerifyReport) -> Vec<AuditRecord> {
    let mut records: Vec<AuditRecord> = Vec::new();
    for p in report.problems.iter().filter(|p| p.repaired) {
        // One removal per entry, named by its first problem.
        if records.last().is_some_and(|r| r.entry == p.entry) {
            continue;
        }
        records.push(AuditRecord {
            at: report.at,
            cache: report.cache.clone(),
            entry: p.entry.clone(),
            path: p.path.clone(),
            bytes: None,
            last_use: None,
            reason: format!("repair:{}", p.problem),
            uid: None,
        });
    }
    records
}

/// The trail of one daemon (or one-shot command), appended to from any thread.
pub struct AuditLog {
    /// `None`: no state directory of our own; events go to the log only.
    path: Option<PathBuf>,
    lock: Mutex<()>,
}

impl AuditLog {
    pub fn new(state_dir: Option<&Path>) -> AuditLog {
        AuditLog {
            path: state_dir.map(|d| d.join(FILE)),
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Logs each record as a structured event and appends it to the file. A failure to
    /// write is returned (the caller counts it as an error); the removals stand.
    pub fn record(&self, records: &[AuditRecord]) -> std::io::Result<()> {
        for r in records {
            tracing::info!(
                target: "cachewarden::audit",
                cache = %r.cache,
                entry = %r.entry,
                path = %r.path,
                bytes = r.bytes,
                last_use = r.last_use,
                reason = %r.reason,
                uid = r.uid,
                "removed"
            );
        }
        let Some(path) = &self.path else {
            return Ok(());
        };
        if records.is_empty() {
            return Ok(());
        }
        let _one_writer = self.lock.lock().unwrap();
        let mut file = crate::own_files::open_own_log(path)?;
        if file.metadata()?.len() >= MAX_BYTES {
            std::fs::rename(path, path.with_extension("jsonl.1"))?;
            file = crate::own_files::open_own_log(path)?;
        }
        let mut lines = Vec::new();
        for r in records {
            serde_json::to_writer(&mut lines, r)?;
            lines.push(b'\n');
        }
        file.write_all(&lines)
    }
}

/// What `cachewarden log` and `GET /v1/audit` ask for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// Only removals at or after this Unix time.
    pub since: Option<UnixTime>,
    pub cache: Option<String>,
    /// At most this many, the newest.
    pub limit: Option<usize>,
    /// Only these caches (what the asker may see; `None`: all). Not from the query.
    #[serde(skip)]
    pub caches: Option<std::collections::HashSet<String>>,
}

/// Reads the trail at `path` (both generations, oldest first), filtered; the newest
/// `limit` records. Lines that do not parse (a torn last line after a crash) are
/// skipped.
pub fn read(path: &Path, query: &Query) -> std::io::Result<Vec<AuditRecord>> {
    let mut records = Vec::new();
    each_record(path, &mut |record| {
        let wanted = !(query.since.is_some_and(|t| record.at < t)
            || query.cache.as_ref().is_some_and(|c| &record.cache != c)
            || query
                .caches
                .as_ref()
                .is_some_and(|seen| !seen.contains(&record.cache)));
        if wanted {
            records.push(record);
        }
    })?;
    if let Some(limit) = query.limit {
        let skip = records.len().saturating_sub(limit);
        records.drain(..skip);
    }
    Ok(records)
}

/// Each record of the trail at `path`, oldest first (both generations), streamed.
fn each_record(path: &Path, visit: &mut dyn FnMut(AuditRecord)) -> std::io::Result<()> {
    for file in [path.with_extension("jsonl.1"), path.to_path_buf()] {
        let f = match crate::own_files::open_for_reading(&file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in std::io::BufReader::new(f).lines() {
            if let Ok(record) = serde_json::from_str::<AuditRecord>(&line?) {
                visit(record);
            }
        }
    }
    Ok(())
}

/// Each cache's last eviction in the trail (its newest removals of one second, not
/// repairs): what `status` shows as the last eviction after a restart (issue #30: it
/// said `never` over a trail of 719 removals). Streamed: memory is per cache.
pub fn last_evictions(
    path: &Path,
) -> std::io::Result<std::collections::HashMap<String, crate::report::EvictionSummary>> {
    let mut last: std::collections::HashMap<String, crate::report::EvictionSummary> =
        Default::default();
    each_record(path, &mut |r| {
        if r.reason.starts_with("repair") {
            return;
        }
        let summary = last
            .entry(r.cache)
            .or_insert(crate::report::EvictionSummary {
                at: r.at,
                entries: 0,
                freed_bytes: 0,
                skipped: 0,
            });
        if r.at > summary.at {
            *summary = crate::report::EvictionSummary {
                at: r.at,
                entries: 0,
                freed_bytes: 0,
                skipped: 0,
            };
        }
        if r.at == summary.at {
            summary.entries += 1;
            summary.freed_bytes += r.bytes.unwrap_or(0);
        }
    })?;
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at: UnixTime, cache: &str, entry: &str) -> AuditRecord {
        AuditRecord {
            at,
            cache: cache.into(),
            entry: entry.into(),
            path: entry.into(),
            bytes: Some(512),
            last_use: Some(at - 100),
            reason: "max-size".into(),
            uid: None,
        }
    }

    #[test]
    fn the_trail_is_appended_read_back_filtered_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(Some(dir.path()));
        log.record(&[record(10, "a", "x"), record(20, "b", "y")])
            .unwrap();
        log.record(&[record(30, "a", "z")]).unwrap();
        let path = log.path().unwrap();
        let all = read(path, &Query::default()).unwrap();
        assert_eq!(all.len(), 3);
        let q = Query {
            since: Some(15),
            cache: Some("a".into()),
            ..Query::default()
        };
        assert_eq!(read(path, &q).unwrap(), [record(30, "a", "z")]);
        let newest = Query {
            limit: Some(1),
            ..Query::default()
        };
        assert_eq!(read(path, &newest).unwrap()[0].entry, "z");

        // A torn last line (a crash mid-write) is skipped, not an error.
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(b"{\"at\": 4")
            .unwrap();
        assert_eq!(read(path, &Query::default()).unwrap().len(), 3);

        // Past MAX_BYTES the file is rotated; both generations are read.
        let f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        f.set_len(MAX_BYTES).unwrap();
        log.record(&[record(40, "a", "w")]).unwrap();
        assert!(path.with_extension("jsonl.1").exists());
        assert!(std::fs::metadata(path).unwrap().len() < 1000);
        let all = read(path, &Query::default()).unwrap();
        assert_eq!(all.last().unwrap().entry, "w");
    }

    #[test]
    fn a_symlinked_trail_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(FILE)).unwrap();
        let log = AuditLog::new(Some(dir.path()));
        assert!(log.record(&[record(1, "a", "x")]).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
