//! `cachewarden doctor`: checks what a user would otherwise debug by hand, and says what
//! to do about each finding.
//!
//! Every check is read-only and quick (no cache walk beyond counting the directories the
//! watcher would need). A finding is `ok`, a `warning` (works, but worse than it could),
//! or `action` (something does not work as the user expects); `doctor` exits 1 when
//! any finding needs action.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{self, CacheConfig, Config, Env};
use crate::report::{CacheStatus, StatusReport};
use crate::units::format_bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Action,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: String,
    pub severity: Severity,
    pub message: String,
    /// What to do about it (empty when nothing needs doing).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

fn finding(check: &str, severity: Severity, message: String, fix: &str) -> Finding {
    Finding {
        check: check.to_string(),
        severity,
        message,
        fix: fix.to_string(),
    }
}

/// Runs every check. `config_file` is `--config`; `socket` the socket the CLI would ask;
/// `daemon` the daemon's status there, or why there is none.
pub fn run(
    config_file: Option<&Path>,
    env: &Env,
    socket: Option<&Path>,
    daemon: Result<StatusReport, String>,
) -> Vec<Finding> {
    let mut out = vec![go_on_path()];
    out.extend(go_environment(|k| std::env::var(k).ok()));
    let config = match config::load(config_file, env) {
        Ok(config) => {
            out.push(finding(
                "config",
                Severity::Ok,
                format!(
                    "{} is valid ({} caches)",
                    config.source,
                    config.caches.len()
                ),
                "",
            ));
            // (Caches waiting to appear are checked with the caches below.)
            for note in config
                .notes
                .iter()
                .filter(|n| !n.contains(": waiting for "))
            {
                out.push(finding(
                    "config",
                    Severity::Action,
                    note.clone(),
                    "run a go command once so go creates its caches, or set `path` in the cache's table",
                ));
            }
            Some(config)
        }
        Err(e) => {
            out.push(finding(
                "config",
                Severity::Action,
                e.to_string(),
                "fix the named key or line; `cachewarden config check FILE` checks it again",
            ));
            None
        }
    };
    if let Some(config) = &config {
        for cache in &config.caches {
            out.extend(cache_checks(cache));
        }
        out.push(inotify_budget(config));
        out.push(socket_dir(socket.unwrap_or(&config.daemon.socket)));
    }
    out.push(match &daemon {
        Ok(status) => finding(
            "daemon",
            Severity::Ok,
            format!("running (pid {}), with config {}", status.pid, status.config),
            "",
        ),
        Err(why) => finding(
            "daemon",
            Severity::Warning,
            format!("no daemon answers: {why}"),
            "start it: `systemctl --user enable --now cachewarden` (or `cachewarden daemon` in a shell)",
        ),
    });
    if let Ok(status) = &daemon {
        out.extend(status.caches.iter().filter_map(working_set));
        out.extend(status.caches.iter().filter_map(watched_in_part));
        out.extend(status.caches.iter().flat_map(stays_over_a_limit));
    }
    out
}

/// A cache the daemon could not bring within a limit: why, and from when it will be.
fn stays_over_a_limit(cache: &CacheStatus) -> Vec<Finding> {
    cache
        .unmet
        .iter()
        .map(|why| {
            finding(
                &format!("cache {}", cache.name),
                Severity::Warning,
                format!("stays over a limit: {why}"),
                "nothing, if it is met soon; else raise the limit, lower min_age, or unpin (keep) what the message names",
            )
        })
        .collect()
}

/// A cache with more directories than its watch budget: the daemon sees some changes
/// only at its periodic rescans.
fn watched_in_part(cache: &CacheStatus) -> Option<Finding> {
    let error = cache
        .conditions
        .iter()
        .find(|e| e.message.contains("directories to watch"))?;
    Some(finding(
        "watch",
        Severity::Warning,
        format!("cache {} is watched in part: {}", cache.name, error.message),
        "look for directories someone made in it that its tool never writes (the daemon's log names them), and remove them",
    ))
}

/// A `max_size` below what builds use: entries evicted for size come back. The
/// advice is the working set (`churn.rs`): the bytes the last day's builds used, each
/// entry once, cached or evicted.
fn working_set(cache: &CacheStatus) -> Option<Finding> {
    let back = cache.recreated_after_eviction;
    let max = cache.limits.max_size_bytes?;
    let set = cache.working_set?;
    if back.bytes == 0 || back.bytes * 10 < max || set.bytes <= max {
        return None;
    }
    Some(finding(
        &format!("cache {}", cache.name),
        Severity::Warning,
        format!(
            "max_size {} is below this cache's working set: the last day's builds used about {} ({} still cached, {} evicted for size after that use), and {} entries ({}) evicted for size came back",
            format_bytes(max),
            format_bytes(set.bytes),
            format_bytes(set.cached_bytes),
            format_bytes(set.evicted_bytes),
            back.entries,
            format_bytes(back.bytes)
        ),
        &format!(
            "raise max_size to at least {}: each entry that comes back is rebuilt or downloaded again",
            format_bytes(set.bytes)
        ),
    ))
}

fn go_on_path() -> Finding {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("go"))
            .find(|p| p.is_file())
    });
    match found {
        Some(go) => finding("go", Severity::Ok, format!("go is {}", go.display()), ""),
        None => finding(
            "go",
            Severity::Warning,
            "go is not on PATH: `path = \"auto\"` falls back to $GOCACHE, $GOMODCACHE and go's defaults from $HOME".into(),
            "install go (Debian: apt-get install golang-go) or set each cache's `path`",
        ),
    }
}

/// Whether a GOCACHEPROG command line runs `cachewarden cacheprog` (go splits it on
/// spaces, honouring quotes: `cmd/internal/quoted`).
fn is_our_cacheprog(prog: &str) -> bool {
    let words: Vec<&str> = prog
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '"' || c == '\''))
        .collect();
    words.len() >= 2
        && std::path::Path::new(words[0]).file_name() == Some("cachewarden".as_ref())
        && words[1] == "cacheprog"
}

/// Settings in go's environment that change what cachewarden can see or guard.
fn go_environment(var: impl Fn(&str) -> Option<String>) -> Vec<Finding> {
    let mut out = Vec::new();
    match var("GOCACHEPROG").filter(|v| !v.is_empty()) {
        Some(prog) if is_our_cacheprog(&prog) => out.push(finding(
            "go-env",
            Severity::Ok,
            format!("GOCACHEPROG is {prog:?}: go's build cache is served from GOCACHE by cachewarden itself, which sees every use, checks every output it hands out and leases what a running go holds"),
            "",
        )),
        Some(_) => out.push(finding(
            "go-env",
            Severity::Action,
            "GOCACHEPROG is set: go keeps its build cache through that program and bypasses GOCACHE, which is what cachewarden manages".into(),
            "use `go env -w GOCACHEPROG=\"cachewarden cacheprog\"` (served from GOCACHE, managed as before), manage the program's own storage (a `dir` cache), or unset GOCACHEPROG",
        )),
        None => {}
    }
    if var("GOFLAGS").is_some_and(|v| v.split_whitespace().any(|f| f.starts_with("-modcacherw"))) {
        out.push(finding(
            "go-env",
            Severity::Warning,
            "GOFLAGS has -modcacherw: extracted modules are writable, so an edit to one goes unnoticed by go until `go mod verify`".into(),
            "keep a verify_schedule with on_problem = \"repair\" on the go-mod cache, or drop -modcacherw",
        ));
    }
    out
}

fn cache_checks(cache: &CacheConfig) -> Vec<Finding> {
    let check = format!("cache {}", cache.name);
    let mut out = Vec::new();
    if !cache.path.is_dir() {
        out.push(finding(
            &check,
            Severity::Action,
            format!(
                "{} does not exist yet (the daemon manages it once it appears)",
                cache.path.display()
            ),
            "run a go command that creates it, or fix `path`",
        ));
        return out;
    }
    out.push(finding(
        &check,
        Severity::Ok,
        format!("{} ({})", cache.path.display(), cache.kind),
        "",
    ));
    for (what, fix) in cache.kind.setup_warnings(&cache.path) {
        out.push(finding(&check, Severity::Warning, what, &fix));
    }
    for note in cache.kind.setup_notes(&cache.path) {
        out.push(finding(&check, Severity::Ok, note, ""));
    }
    if let (Some(limit), Ok(disk)) = (
        cache.limits.min_free,
        crate::fsutil::disk_space(&cache.path),
    ) {
        let min = limit.resolve(disk.total_bytes);
        if disk.available_bytes < min {
            out.push(finding(
                &check,
                Severity::Action,
                format!(
                    "{} free on its filesystem, below min_free {}",
                    format_bytes(disk.available_bytes),
                    format_bytes(min)
                ),
                "the daemon evicts to get above it; if it cannot, what fills the disk is not this cache (`cachewarden status` shows how much is)",
            ));
        }
    }
    out
}

/// Directories the watcher needs (non-recursive watches), against the user's limit.
fn inotify_budget(config: &Config) -> Finding {
    let needed: u64 = config
        .caches
        .iter()
        .filter(|c| c.path.is_dir())
        .map(|c| {
            let cache = crate::cache::open(c.clone());
            cache
                .watch_dirs()
                .iter()
                .map(|w| count_dirs(&w.path, w.depth))
                .sum::<u64>()
                .min(crate::watch::WATCH_BUDGET as u64)
        })
        .sum();
    let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match limit {
        Some(limit) if needed * 2 > limit => finding(
            "inotify",
            Severity::Action,
            format!("the caches need about {needed} watches; this user may have {limit} (shared with every other program)"),
            "raise fs.inotify.max_user_watches (e.g. `sysctl fs.inotify.max_user_watches=524288`, and in /etc/sysctl.d/)",
        ),
        Some(limit) => finding(
            "inotify",
            Severity::Ok,
            format!("the caches need about {needed} watches of {limit}"),
            "",
        ),
        None => finding(
            "inotify",
            Severity::Warning,
            "cannot read fs.inotify.max_user_watches".into(),
            "",
        ),
    }
}

fn count_dirs(dir: &Path, depth: u32) -> u64 {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .max_depth(depth.min(64) as usize)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_dir())
        .count() as u64
}

fn socket_dir(socket: &Path) -> Finding {
    let dir = socket.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    match crate::own_files::check_socket_dir(socket) {
        Ok(()) => finding(
            "socket",
            Severity::Ok,
            format!("{} (its directory is private)", socket.display()),
            "",
        ),
        Err(e) => finding(
            "socket",
            Severity::Action,
            e.to_string(),
            &format!(
                "remove {} (as its owner or root) and restart the daemon",
                dir.display()
            ),
        ),
    }
}

/// Text for people: one line per finding, the fix indented below.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let mark = match f.severity {
            Severity::Ok => "ok     ",
            Severity::Warning => "warning",
            Severity::Action => "ACTION ",
        };
        out.push_str(&format!("{mark}  {:<16} {}\n", f.check, f.message));
        if !f.fix.is_empty() {
            out.push_str(&format!("{:9}{:<16} fix: {}\n", "", "", f.fix));
        }
    }
    let actions = findings
        .iter()
        .filter(|f| f.severity == Severity::Action)
        .count();
    let warnings = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    out.push_str(&format!(
        "{} checks: {actions} need action, {warnings} warnings\n",
        findings.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_settings_that_bypass_or_weaken_the_caches_are_named() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let found = go_environment(env(&[("GOCACHEPROG", "/usr/bin/gocacheprog")]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Action);
        assert!(found[0].message.contains("bypasses GOCACHE"));
        const OURS: [&[(&str, &str)]; 2] = [
            &[("GOCACHEPROG", "cachewarden cacheprog")],
            &[(
                "GOCACHEPROG",
                "/usr/bin/cachewarden cacheprog --cache go-build",
            )],
        ];
        for ours in OURS {
            let found = go_environment(env(ours));
            assert_eq!(found[0].severity, Severity::Ok, "{ours:?}");
            assert!(found[0]
                .message
                .contains("served from GOCACHE by cachewarden"));
        }
        let found = go_environment(env(&[("GOFLAGS", "-mod=mod -modcacherw")]));
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(go_environment(env(&[("GOFLAGS", "-mod=mod")])).is_empty());
        assert!(go_environment(env(&[])).is_empty());
    }

    #[test]
    fn the_summary_counts_what_needs_action() {
        let text = render(&[
            finding("a", Severity::Ok, "fine".into(), ""),
            finding("b", Severity::Action, "broken".into(), "mend it"),
        ]);
        assert!(text.contains("ACTION   b"), "{text}");
        assert!(text.contains("fix: mend it"), "{text}");
        assert!(
            text.ends_with("2 checks: 1 need action, 0 warnings\n"),
            "{text}"
        );
    }
}
