//! Which running `go` commands may still open build-cache entries.
//!
//! A go command plans its actions, writes cache paths into `importcfg` files, and a
//! compile or the link may open them much later — for as long as the command runs
//! (`go run` and `go test` keep it alive for the program's whole run). An entry it hit
//! at time T has mtime ≥ T − 1 h (go bumps mtime at most hourly), so every entry with
//! mtime ≥ (start of the oldest running go command) − 1 h − [`MARGIN`] must stay until
//! that command exits (`../shared/docs/go-caches.md`, "Long builds").
//!
//! Processes are found in `/proc`: `comm` is `go`, the start time is field 22 of
//! `stat` (clock ticks after boot, `btime` in `/proc/stat`). A command counts unless its
//! `environ` (readable for our own processes, or as root) sets `GOCACHE` to another
//! directory or to `off`; an unreadable environment counts, to be safe.

use std::path::Path;

use crate::kinds::{InUse, UnixTime};

/// Slack on top of go's one-hour mtime granularity.
pub const MARGIN_SECS: i64 = 5 * 60;
const MTIME_INTERVAL_SECS: i64 = 3600;

/// Which of go's caches a process may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoCache {
    /// GOCACHE.
    Build,
    /// GOMODCACHE (default `$GOPATH/pkg/mod`).
    Mod,
}

/// The in-use horizon for the GOCACHE at `root`, if any go command may be using it.
pub fn in_use_since(root: &Path) -> Option<InUse> {
    oldest_go_using(root, GoCache::Build).map(|(started, pid)| InUse {
        since: started - MTIME_INTERVAL_SECS - MARGIN_SECS,
        by: format!("go (pid {pid}) running since {}", format_local(started)),
    })
}

/// The oldest running go command that may use the cache at `root`: (start, pid).
pub fn oldest_go_using(root: &Path, cache: GoCache) -> Option<(UnixTime, i32)> {
    let boot = boot_time()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()? as i64;
    let mut oldest: Option<(UnixTime, i32)> = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        if !std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == "go") {
            continue;
        }
        if !may_use(&dir, root, cache) {
            continue;
        }
        let Some(start_ticks) = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|s| start_ticks(&s))
        else {
            continue;
        };
        let started = boot + start_ticks / ticks;
        if oldest.is_none_or(|(t, _)| started < t) {
            oldest = Some((started, pid));
        }
    }
    oldest
}

/// Field 22 of `/proc/<pid>/stat`; the command name (field 2) may contain spaces and
/// parentheses, so count fields after the last ')'.
fn start_ticks(stat: &str) -> Option<i64> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn boot_time() -> Option<UnixTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// False only when the process's environment sends it to another cache.
fn may_use(proc_dir: &Path, root: &Path, cache: GoCache) -> bool {
    let Ok(environ) = std::fs::read(proc_dir.join("environ")) else {
        return true;
    };
    let var = |name: &[u8]| {
        environ
            .split(|&b| b == 0)
            .find_map(|kv| kv.strip_prefix(name))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    // Unset variables mean go's defaults, relative to the process's own HOME.
    let home = var(b"HOME=")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from);
    let theirs = match cache {
        GoCache::Build => match var(b"GOCACHE=") {
            Some(v) if v == "off" => return false,
            Some(v) if !v.is_empty() => std::path::PathBuf::from(v),
            _ => match var(b"XDG_CACHE_HOME=").filter(|x| !x.is_empty()) {
                Some(xdg) => Path::new(&xdg).join("go-build"),
                None => match &home {
                    Some(h) => h.join(".cache/go-build"),
                    None => return true,
                },
            },
        },
        GoCache::Mod => match (var(b"GOMODCACHE="), var(b"GOPATH=")) {
            (Some(v), _) if !v.is_empty() => std::path::PathBuf::from(v),
            (_, Some(gopath)) if gopath.split(':').any(|s| !s.is_empty()) => {
                let first = gopath
                    .split(':')
                    .find(|s| !s.is_empty())
                    .unwrap_or_default();
                Path::new(first).join("pkg/mod")
            }
            _ => match &home {
                Some(h) => h.join("go/pkg/mod"),
                None => return true,
            },
        },
    };
    // A cache that does not exist is not ours; one we cannot resolve may be.
    match theirs.canonicalize() {
        Ok(p) => p == root,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

fn format_local(t: UnixTime) -> String {
    use chrono::TimeZone;
    chrono::Local.timestamp_opt(t, 0).single().map_or_else(
        || t.to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "1234 (go (weird) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 2 0 0 20 0 8 0 987654 1000 ";
        assert_eq!(start_ticks(stat), Some(987654));
    }

    #[test]
    fn a_running_go_command_is_found() {
        // This test process is not named "go"; a fake one is: copy `sleep` to a file
        // named go and run it.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("go");
        std::fs::copy("/bin/sleep", &fake).unwrap();
        let cache = dir.path().join("gocache");
        std::fs::create_dir(&cache).unwrap();
        let cache = cache.canonicalize().unwrap();
        let elsewhere = dir.path().join("other-cache");
        std::fs::create_dir(&elsewhere).unwrap();
        let mut child = std::process::Command::new(&fake)
            .arg("30")
            .env("GOCACHE", &cache)
            .spawn()
            .unwrap();
        let found = (0..100).find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            in_use_since(&cache)
        });
        // A go command on another cache does not count for this one.
        assert!(in_use_since(&elsewhere.canonicalize().unwrap())
            .is_none_or(|u| !u.by.contains(&child.id().to_string())));
        let mut other = std::process::Command::new(&fake)
            .arg("30")
            .env("GOCACHE", "off")
            .spawn()
            .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let found = found.expect("the fake go process is seen");
        assert!(found.since <= crate::now() - 3600);
        assert!(
            found.by.contains(&format!("pid {}", child.id())),
            "{}",
            found.by
        );
        // Only the GOCACHE=off process is left: it uses no cache.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(in_use_since(&cache).is_none_or(|u| !u.by.contains(&other.id().to_string())));
        other.kill().unwrap();
        other.wait().unwrap();
    }
}
