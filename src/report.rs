//! What cachewarden tells people and scripts: the JSON shapes of the socket API and the
//! CLI's `--json`, and their human-readable tables. One set of types serves both, so the
//! CLI without a daemon and the daemon's socket answer identically.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::CacheConfig;
use crate::fsutil::DiskSpace;
use crate::plan::{PlanLimits, Reason};
use crate::units::{format_bytes, format_duration};
use crate::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EntryOrder {
    #[default]
    Oldest,
    Largest,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub pid: u32,
    pub config: String,
    pub started_at: UnixTime,
    pub caches: Vec<CacheStatus>,
    /// Things worth knowing that are not errors (e.g. caches found but not managed).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheStatus {
    pub name: String,
    pub kind: String,
    pub path: PathBuf,
    /// Whose cache it is, for a cache a table found per user (`users.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `scanning` until the first walk is indexed; then, for kinds that complete their
    /// entries after the walk (go-build pairs actions with outputs), `completing`
    /// (sizes and ages exact, eviction and verification waiting); then `ready`.
    pub state: String,
    pub entries: u64,
    pub disk_bytes: u64,
    pub apparent_bytes: u64,
    pub limits: LimitsView,
    pub disk: Option<DiskSpace>,
    pub oldest_last_use: Option<UnixTime>,
    pub oldest_age_secs: Option<i64>,
    /// Limits currently exceeded: `max_size`, `min_free`, `max_age`.
    pub over_limits: Vec<String>,
    /// While over a limit: why the last enforcement could not meet it, and from when
    /// it will be met if nothing is used meanwhile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmet: Vec<String>,
    pub last_use_signal: String,
    pub last_scan: Option<ScanRecord>,
    pub last_eviction: Option<EvictionSummary>,
    /// When an enforcement last ended with every limit met.
    #[serde(default)]
    pub last_enforcement: Option<UnixTime>,
    /// Entries the last enforcement left because running tools may open them, and
    /// which processes hold what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldView>,
    /// What running tools hold by the owning tool's own record now (go-build: each
    /// running `cachewarden cacheprog`'s lease), whatever any enforcement did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<String>,
    /// go-mod: the Go toolchains (`golang.org/toolchain@…`) it holds, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub toolchains: Vec<ToolchainView>,
    pub evicted_entries_total: u64,
    pub evicted_bytes_total: u64,
    /// Entries evicted for size or free space that came back within a day: a sign that
    /// `max_size` is below the working set (`churn.rs`).
    #[serde(default)]
    pub recreated_after_eviction: crate::churn::Recreated,
    /// While entries evicted for size come back: the bytes the last day's builds used
    /// (`churn.rs`), as of the last enforcement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_set: Option<crate::churn::WorkingSet>,
    /// The totals above by reason (`max-age`, `max-size`, `min-free`, `requested`).
    #[serde(default)]
    pub evicted_by_reason: Vec<EvictedByReason>,
    pub problems: ProblemsView,
    /// Errors: things that went wrong (counted, the latest kept), not go's own races.
    pub errors_total: u64,
    pub errors: Vec<ErrorRecord>,
    /// What is wrong *now* and goes away by itself once it is not (the root gone, the
    /// cache watched in part, its lock held by another daemon), each since when.
    #[serde(default)]
    pub conditions: Vec<ErrorRecord>,
}

impl CacheStatus {
    /// A cache whose directory does not exist yet (`CacheConfig::waiting`).
    pub fn waiting(config: &CacheConfig) -> CacheStatus {
        let limits = PlanLimits {
            max_bytes: config.limits.max_size.map(|l| l.resolve(0)),
            max_age_secs: None,
            min_free_bytes: None,
            min_age_secs: 0,
            surplus_age_secs: None,
        };
        CacheStatus {
            name: config.name.clone(),
            kind: config.kind.to_string(),
            path: config.path.clone(),
            user: config.owner.as_ref().map(|o| o.name.clone()),
            state: "waiting".into(),
            entries: 0,
            disk_bytes: 0,
            apparent_bytes: 0,
            limits: LimitsView::new(config, &limits),
            disk: None,
            oldest_last_use: None,
            oldest_age_secs: None,
            over_limits: Vec::new(),
            unmet: Vec::new(),
            last_use_signal: match &config.refused {
                None => format!("waiting for {} to appear", config.path.display()),
                Some(why) => format!("waiting: {why} for now"),
            },
            last_scan: None,
            last_eviction: None,
            last_enforcement: None,
            held: None,
            leases: Vec::new(),
            toolchains: Vec::new(),
            recreated_after_eviction: Default::default(),
            working_set: None,
            evicted_entries_total: 0,
            evicted_bytes_total: 0,
            evicted_by_reason: Vec::new(),
            problems: ProblemsView::default(),
            errors_total: 0,
            errors: Vec::new(),
            conditions: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitsView {
    pub max_size: Option<String>,
    pub max_size_bytes: Option<u64>,
    pub max_age: Option<String>,
    pub min_free: Option<String>,
    pub min_free_bytes: Option<u64>,
    pub min_age: String,
    pub schedule: String,
    pub verify_schedule: Option<String>,
    pub keep: Vec<String>,
}

impl LimitsView {
    pub fn new(config: &CacheConfig, resolved: &PlanLimits) -> LimitsView {
        LimitsView {
            max_size: config.limits.max_size.map(|s| s.to_string()),
            max_size_bytes: resolved.max_bytes,
            max_age: config.limits.max_age.map(format_duration),
            min_free: config.limits.min_free.map(|s| s.to_string()),
            min_free_bytes: resolved.min_free_bytes,
            min_age: format_duration(config.limits.min_age),
            schedule: config.schedule.text.clone(),
            verify_schedule: config.verify_schedule.as_ref().map(|s| s.text.clone()),
            keep: config.keep.iter().map(|p| p.as_str().to_string()).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanRecord {
    pub at: UnixTime,
    pub duration_ms: u64,
    /// Of which the walk (listing and `stat`): from then on sizes and ages are exact.
    /// The rest completes entries (go-build: reads action files to pair them).
    pub walk_ms: u64,
    pub entries: u64,
    pub disk_bytes: u64,
    pub ignored_files: u64,
    pub errors: u64,
    /// Set when the index came from a snapshot: how many partitions (of how many)
    /// had to be rescanned.
    pub partitions_rescanned: Option<u64>,
    pub partitions: Option<u64>,
    /// Counted beside the entries, never removed (see [`Unmanaged`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmanaged: Vec<Unmanaged>,
}

/// Part of a cache's root that is counted but never removed, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unmanaged {
    pub what: String,
    pub disk_bytes: u64,
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvictionSummary {
    pub at: UnixTime,
    pub entries: u64,
    pub freed_bytes: u64,
    pub skipped: u64,
}

/// A Go toolchain in a module cache: its zip, tree and metadata together.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ToolchainView {
    /// `go1.27.3`.
    pub version: String,
    pub disk_bytes: u64,
    pub last_use: UnixTime,
}

/// Entries held by running tools at an enforcement (`CacheStatus::held`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeldView {
    pub at: UnixTime,
    /// Entries old enough to go that stayed.
    pub entries: u64,
    /// One clause per process: "go (pid 1234) running since 12:00:03: the 57 versions
    /// /src/app/go.mod names".
    pub by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvictedByReason {
    pub reason: crate::plan::Reason,
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ProblemsView {
    pub last_verify: Option<UnixTime>,
    /// How long the last verification took.
    #[serde(default)]
    pub last_verify_duration_ms: Option<u64>,
    /// Open problems by code.
    #[serde(default)]
    pub open_by_problem: std::collections::BTreeMap<String, u64>,
    /// Problems the last verification found and did not repair.
    pub open: u64,
    pub found_total: u64,
    pub recent: Vec<ProblemView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProblemView {
    pub cache: String,
    pub entry: String,
    /// Relative to the cache root.
    pub path: String,
    pub problem: String,
    pub detail: String,
    pub repaired: bool,
    /// Why a problem was left in place: a stable code and a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unrepaired: Option<Unrepaired>,
}

/// Why a broken entry was not repaired. Codes: `not-requested`, `pinned`,
/// `within-min-age` (dir caches), `go-running`, `lock-busy`, `skipped`,
/// `removal-failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unrepaired {
    pub code: String,
    pub reason: String,
}

impl Unrepaired {
    pub fn new(code: &str, reason: impl Into<String>) -> Unrepaired {
        Unrepaired {
            code: code.to_string(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub at: UnixTime,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryView {
    pub entry: String,
    pub path: String,
    pub disk_bytes: u64,
    pub last_use: UnixTime,
    pub age_secs: i64,
    pub pinned: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvictedView {
    #[serde(flatten)]
    pub entry: EntryView,
    pub reason: Reason,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkippedView {
    pub entry: String,
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvictionReport {
    pub cache: String,
    pub dry_run: bool,
    pub at: UnixTime,
    pub bytes_before: u64,
    pub bytes_after_planned: u64,
    pub removed_entries: u64,
    pub freed_bytes: u64,
    /// Planned (dry run) or removed entries, oldest first.
    pub evicted: Vec<EvictedView>,
    pub skipped: Vec<SkippedView>,
    pub unmet: Vec<String>,
    /// Entries old enough to go but held because a running tool may open them.
    pub held_in_use: u64,
    pub in_use_since: Option<UnixTime>,
    pub in_use_by: Option<String>,
    pub duration_ms: u64,
    /// Names a targeted eviction asked for that no entry has (`module M` for a module
    /// with no version in the cache).
    #[serde(default)]
    pub not_found: Vec<String>,
    /// Removals that were attempted and failed (an immutable file, a read-only file
    /// system), with the error; also counted in the cache's errors.
    #[serde(default)]
    pub failed: Vec<SkippedView>,
    /// Disk usage of the entries left: what is really on disk after the removals (the
    /// plan's `bytes_after_planned` for a dry run).
    #[serde(default)]
    pub bytes_after: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    pub cache: String,
    pub at: UnixTime,
    pub checked: u64,
    pub duration_ms: u64,
    pub problems: Vec<ProblemView>,
}

/// `text` with control characters written `\xNN`: whatever a hostile file name or
/// error message holds, no newline breaks a table and no escape sequence reaches the
/// terminal. (Entry names are escaped already, `fsutil::escape_name`; this is for the
/// rest.)
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A plain text table: columns padded to their widest cell, control characters escaped.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| printable(cell)).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

pub fn age(secs: Option<i64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 0 => "0s".into(),
        Some(s) if s < 3600 => format!("{}m", s / 60),
        Some(s) if s < 2 * 86400 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86400),
    }
}

/// `[####------] 41%`: how full a cache is against its limit (over 100% when over).
pub fn fill_bar(used: u64, limit: u64) -> String {
    let percent = if limit == 0 {
        100
    } else {
        (used as u128 * 100 / limit as u128).min(999) as usize
    };
    let filled = percent.min(100) / 10;
    format!(
        "[{}{}] {percent}%",
        "#".repeat(filled),
        "-".repeat(10 - filled)
    )
}

/// One user's caches together (`GET /v1/users`, `status --by-user`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUsage {
    /// The owner of caches a table found per user; `None` for caches named by path.
    pub user: Option<String>,
    pub caches: Vec<String>,
    pub entries: u64,
    pub disk_bytes: u64,
    pub evicted_bytes_total: u64,
}

/// Disk usage by owner, the biggest first.
pub fn by_user(caches: &[CacheStatus]) -> Vec<UserUsage> {
    let mut users: Vec<UserUsage> = Vec::new();
    for c in caches {
        let i = match users.iter().position(|u| u.user == c.user) {
            Some(i) => i,
            None => {
                users.push(UserUsage {
                    user: c.user.clone(),
                    caches: Vec::new(),
                    entries: 0,
                    disk_bytes: 0,
                    evicted_bytes_total: 0,
                });
                users.len() - 1
            }
        };
        let u = &mut users[i];
        u.caches.push(c.name.clone());
        u.entries += c.entries;
        u.disk_bytes += c.disk_bytes;
        u.evicted_bytes_total += c.evicted_bytes_total;
    }
    users.sort_by(|a, b| b.disk_bytes.cmp(&a.disk_bytes).then(a.user.cmp(&b.user)));
    users
}

pub fn reason_text(reason: Reason) -> &'static str {
    match reason {
        Reason::MaxAge => "max-age",
        Reason::MaxSize => "group_max_size",
        Reason::MinFree => "group_min_free",
        Reason::Requested => "requested",
        Reason::KeepToolchains => "keep-toolchains",
    }
}

/// `status --by-user`.
pub fn users_table(users: &[UserUsage]) -> String {
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                u.user.clone().unwrap_or_else(|| "(by path)".into()),
                format_bytes(u.disk_bytes),
                u.entries.to_string(),
                format_bytes(u.evicted_bytes_total),
                u.caches.join(", "),
            ]
        })
        .collect();
    table(&["USER", "SIZE", "ENTRIES", "EVICTED", "CACHES"], &rows)
}

pub fn status_table(caches: &[CacheStatus], now: UnixTime) -> String {
    let rows: Vec<Vec<String>> = caches
        .iter()
        .map(|c| {
            let limit = c.limits.max_size_bytes.map_or("-".into(), format_bytes);
            let eviction = c.last_eviction.as_ref().map_or("never".into(), |e| {
                format!(
                    "{} ago, {} entries, {}",
                    age(Some(now - e.at)),
                    e.entries,
                    format_bytes(e.freed_bytes)
                )
            });
            let mut size = format!("{} / {limit}", format_bytes(c.disk_bytes));
            if let Some(max) = c.limits.max_size_bytes {
                size.push_str(&format!(" {}", fill_bar(c.disk_bytes, max)));
            }
            if !c.over_limits.is_empty() {
                size.push_str(&format!(" (over {})", c.over_limits.join(", ")));
            }
            vec![
                c.name.clone(),
                c.kind.clone(),
                size,
                match c.state.as_str() {
                    "ready" => c.entries.to_string(),
                    "walked" => format!("{} files", c.entries),
                    "waiting" => format!("waiting for {}", c.path.display()),
                    state => state.to_string(),
                },
                age(c.oldest_age_secs),
                eviction,
                c.problems.open.to_string(),
                c.errors_total.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "CACHE",
            "KIND",
            "SIZE / LIMIT",
            "ENTRIES",
            "OLDEST",
            "LAST EVICTION",
            "PROBLEMS",
            "ERRORS",
        ],
        &rows,
    )
}

/// Problems as a table of what and where, each followed by its detail and why it was
/// not repaired on lines of their own: the table stays as narrow as its short columns
/// (issue #30: one row per problem ran past 300 columns), and the long texts wrap.
pub fn problems_table(problems: &[ProblemView]) -> String {
    let rows: Vec<Vec<String>> = problems
        .iter()
        .map(|p| {
            vec![
                p.cache.clone(),
                p.path.clone(),
                p.problem.clone(),
                if p.repaired { "repaired" } else { "open" }.into(),
            ]
        })
        .collect();
    let table = table(&["CACHE", "PATH", "PROBLEM", "STATE"], &rows);
    let mut lines = table.lines();
    let mut out = String::new();
    if let Some(header) = lines.next() {
        out.push_str(header);
        out.push('\n');
    }
    for (line, p) in lines.zip(problems) {
        out.push_str(line);
        out.push('\n');
        out.push_str(&format!("    {}\n", printable(&p.detail)));
        if let Some(u) = &p.unrepaired {
            out.push_str(&format!("    not repaired: {}\n", printable(&u.reason)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_bars_show_how_full_a_cache_is() {
        assert_eq!(fill_bar(0, 100), "[----------] 0%");
        assert_eq!(fill_bar(41, 100), "[####------] 41%");
        assert_eq!(fill_bar(250, 100), "[##########] 250%");
        assert_eq!(fill_bar(5, 0), "[##########] 100%");
    }
}
