//! Which running `go` commands may still open build-cache entries.
//!
//! A go command plans its actions, writes cache paths into `importcfg` files, and a
//! compile or the link may open them much later — for as long as the command runs
//! (`go run` and `go test` keep it alive for the program's whole run). An entry it hit
//! at time T has mtime ≥ T − 1 h (go bumps mtime at most hourly), so every entry with
//! mtime ≥ (start of the oldest running go command) − 1 h − [`MARGIN`] must stay until
//! that command exits (`../shared/docs/go-caches.md`, "Long builds").
//!
//! Processes are found in `/proc`: `comm` is one of the guarded names, the start time
//! is field 22 of `stat` (clock ticks after boot, `btime` in `/proc/stat`). Zombies
//! (state `Z`, already exited) never count. A process counts unless its `environ`
//! (readable for our own processes, or as root) sends it to another cache or sets
//! `GOCACHE=off`; an unreadable environment counts, to be safe.
//!
//! ## Not only `go`
//!
//! `go list -export` (what go/packages clients such as golangci-lint and staticcheck
//! run) hands out GOCACHE paths that the tool opens *after* the go command exited, for
//! as long as the tool runs. So the guard covers a list of process names, configurable
//! per cache (`guard_processes`, [`DEFAULT_BUILD_GUARD`]). Tools not on the list are
//! covered by `min_age` only.
//!
//! ## Containers
//!
//! A go command in a container sees its cache at a path of its own mount namespace
//! (`/root/.cache/go-build`, bind-mounted from the host). Its environment's paths are
//! therefore resolved through `/proc/<pid>/root` and compared with the cache root by
//! device and inode; when that cannot be done (no permission to look into the
//! process), the process counts.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::UnixTime;

/// Process names whose running holds a GOCACHE's recently used entries: go itself and
/// the go/packages tools that open `go list -export` paths after go exits.
pub const DEFAULT_BUILD_GUARD: &[&str] = &["go", "golangci-lint", "staticcheck", "govulncheck"];
/// The same for a GOMODCACHE: go itself (tools that only read sources, like gopls, run
/// all day and would hold every module for ever).
pub const DEFAULT_MOD_GUARD: &[&str] = &["go"];

/// Slack on top of go's one-hour mtime granularity.
pub const MARGIN_SECS: i64 = 5 * 60;
/// How often go bumps a used entry's mtime (`cmd/go/internal/cache`, `mtimeInterval`).
pub const MTIME_INTERVAL_SECS: i64 = 3600;

/// Which of go's caches a process may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoCache {
    /// GOCACHE.
    Build,
    /// GOMODCACHE (default `$GOPATH/pkg/mod`).
    Mod,
}

/// A running process named in a guard list that may use a cache.
#[derive(Debug, Clone)]
pub struct GuardedProcess {
    pub pid: i32,
    pub name: String,
    /// When it started (seconds since the epoch).
    pub started: UnixTime,
    /// Its clock-tick start time: with the pid, it names the process uniquely.
    pub start_ticks: i64,
    /// `/proc/<pid>`.
    pub dir: std::path::PathBuf,
}

/// Every running process named in `guard` that may use the cache at `root`.
pub fn guarded_processes_using(
    root: &Path,
    cache: GoCache,
    guard: &[String],
) -> Vec<GuardedProcess> {
    let (Some(boot), Some(ticks)) = (
        boot_time(),
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten(),
    ) else {
        return Vec::new();
    };
    let root_id = std::fs::metadata(root).ok().map(|m| (m.dev(), m.ino()));
    let mut found = Vec::new();
    for (pid, dir) in processes() {
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let name = comm.trim();
        if !guard.iter().any(|g| g == name) {
            continue;
        }
        let Some((state, start_ticks)) = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|s| Some((state(&s)?, start_ticks(&s)?)))
        else {
            continue;
        };
        // A zombie has exited: it opens nothing (its environ reads as empty).
        if state == 'Z' || state == 'X' {
            continue;
        }
        if !may_use(&dir, root_id, cache) {
            continue;
        }
        found.push(GuardedProcess {
            pid,
            name: name.to_string(),
            started: boot + start_ticks / ticks,
            start_ticks,
            dir,
        });
    }
    found
}

/// The oldest running process named in `guard` that may use the cache at `root`:
/// (start, pid, name).
pub fn oldest_go_using(
    root: &Path,
    cache: GoCache,
    guard: &[String],
) -> Option<(UnixTime, i32, String)> {
    guarded_processes_using(root, cache, guard)
        .into_iter()
        .min_by_key(|p| (p.started, p.pid))
        .map(|p| (p.started, p.pid, p.name))
}

/// Processes executing from a module tree below the module cache at `root`, as (pid,
/// name, escaped `module@version`): a `golang.org/toolchain@…` go, its compiler and
/// linker, a `gofmt` run from it — any process at all, not only guarded names. Its
/// executable (`/proc/PID/exe`) and the files it maps (`/proc/PID/maps`) count. Paths
/// are the host's: a process in a container is seen through its go command instead.
///
/// Reading every process's `maps` costs a few megabytes, and removal asks before each
/// version: the answer is reused for [`EXECUTING_FRESH`]. (A program whose files are
/// removed under it keeps running from its mapped inode; what staleness risks is only
/// a later open of another file of the tree by a process that started in that time.)
pub fn executing_beneath(root: &Path) -> Vec<(i32, String, String)> {
    type Seen = Vec<(
        std::path::PathBuf,
        std::time::Instant,
        Vec<(i32, String, String)>,
    )>;
    static LAST: std::sync::Mutex<Seen> = std::sync::Mutex::new(Vec::new());
    if let Some((_, _, found)) = LAST
        .lock()
        .unwrap()
        .iter()
        .find(|(r, at, _)| r == root && at.elapsed() < EXECUTING_FRESH)
    {
        return found.clone();
    }
    let found = executing_beneath_now(root);
    let mut last = LAST.lock().unwrap();
    last.retain(|(r, at, _)| r != root && at.elapsed() < EXECUTING_FRESH);
    last.push((root.to_path_buf(), std::time::Instant::now(), found.clone()));
    found
}

/// How long [`executing_beneath`]'s answer is reused.
pub const EXECUTING_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

fn executing_beneath_now(root: &Path) -> Vec<(i32, String, String)> {
    let Ok(root) = root.canonicalize() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (pid, dir) in processes() {
        let mut keys: Vec<String> = Vec::new();
        let mut note = |path: &Path| {
            if let Some(key) = module_dir_of(&root, path) {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        };
        if let Ok(exe) = std::fs::read_link(dir.join("exe")) {
            note(&exe);
        }
        if let Ok(maps) = std::fs::read_to_string(dir.join("maps")) {
            for line in maps.lines() {
                // address perms offset dev inode path
                if let Some(path) = line.split_whitespace().nth(5) {
                    note(Path::new(path));
                }
            }
        }
        if keys.is_empty() {
            continue;
        }
        let name = std::fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_default();
        found.extend(keys.into_iter().map(|k| (pid, name.clone(), k)));
    }
    found
}

/// The `module@version` directory (relative to `root`, as on disk) that `path` lies in.
fn module_dir_of(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let mut key = std::path::PathBuf::new();
    for part in rel.components() {
        let part = part.as_os_str().to_str()?;
        key.push(part);
        if part.contains('@') {
            return Some(key.to_str()?.to_string());
        }
    }
    None
}

/// Every process, as (pid, `/proc/<pid>`).
fn processes() -> impl Iterator<Item = (i32, std::path::PathBuf)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            Some((pid, entry.path()))
        })
}

/// Field 3 of `/proc/<pid>/stat`, the process state (`R`, `S`, `Z`, …).
fn state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
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

/// False only when the process's environment sends it to another cache. Its paths are
/// its own mount namespace's: they are looked up through `/proc/<pid>/root` and
/// compared with the cache root (`root_id`, device and inode).
fn may_use(proc_dir: &Path, root_id: Option<(u64, u64)>, cache: GoCache) -> bool {
    let Some(env) = ProcessEnv::read(proc_dir) else {
        return true;
    };
    let home = env.home();
    let var = |name: &str| env.var(name);
    let theirs = match cache {
        GoCache::Build => match var("GOCACHE") {
            Some(v) if v == "off" => return false,
            Some(v) if !v.is_empty() => std::path::PathBuf::from(v),
            _ => match var("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
                Some(xdg) => Path::new(&xdg).join("go-build"),
                None => match &home {
                    Some(h) => h.join(".cache/go-build"),
                    None => return true,
                },
            },
        },
        GoCache::Mod => match (var("GOMODCACHE"), var("GOPATH")) {
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
    let Ok(rel) = theirs.strip_prefix("/") else {
        return true; // relative: go would refuse it; we cannot tell
    };
    // The process's view of the file system, which may be a container's.
    match std::fs::metadata(proc_dir.join("root").join(rel)) {
        Ok(m) => root_id.is_none_or(|id| id == (m.dev(), m.ino())),
        // A cache that does not exist is not ours; one we cannot resolve may be.
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// A process's go settings: its environment, then what `go env -w` wrote to the go env
/// file it reads (looked up through its own root, as a container sees it), as go
/// itself resolves them (`cmd/go/internal/cfg`: environment first, then the file).
pub struct ProcessEnv {
    environ: Vec<u8>,
    file_vars: Vec<(String, String)>,
}

impl ProcessEnv {
    /// `None` when the environment cannot be read (another user's process).
    pub fn read(proc_dir: &Path) -> Option<ProcessEnv> {
        let environ = std::fs::read(proc_dir.join("environ")).ok()?;
        let mut env = ProcessEnv {
            environ,
            file_vars: Vec::new(),
        };
        let env_file = match env.process_var("GOENV").filter(|v| !v.is_empty()) {
            Some(v) if v == "off" => None,
            Some(v) => Some(std::path::PathBuf::from(v)),
            None => match env.process_var("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
                Some(x) => Some(Path::new(&x).join("go/env")),
                None => env.home().map(|h| h.join(".config/go/env")),
            },
        };
        env.file_vars = env_file
            .and_then(|f| {
                let rel = f.strip_prefix("/").ok()?.to_path_buf();
                std::fs::read_to_string(proc_dir.join("root").join(rel)).ok()
            })
            .map(|text| crate::golang::env::parse_env_file(&text))
            .unwrap_or_default();
        Some(env)
    }

    fn process_var(&self, name: &str) -> Option<String> {
        self.environ.split(|&b| b == 0).find_map(|kv| {
            let value = kv.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
            Some(String::from_utf8_lossy(value).into_owned())
        })
    }

    /// The variable as go sees it: the environment's, else the go env file's.
    pub fn var(&self, name: &str) -> Option<String> {
        self.process_var(name).or_else(|| {
            self.file_vars
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    /// `HOME`, which the defaults of unset variables are relative to.
    pub fn home(&self) -> Option<std::path::PathBuf> {
        self.process_var("HOME")
            .filter(|h| !h.is_empty())
            .map(std::path::PathBuf::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Who holds the GOCACHE at `root`, as the go-build kind reports it.
    struct Holder {
        started: UnixTime,
        by: String,
    }

    fn in_use_since(root: &Path, guard: &[String]) -> Option<Holder> {
        oldest_go_using(root, GoCache::Build, guard).map(|(started, pid, name)| Holder {
            started,
            by: format!("{name} (pid {pid})"),
        })
    }

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "1234 (go (weird) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 2 0 0 20 0 8 0 987654 1000 ";
        assert_eq!(start_ticks(stat), Some(987654));
    }

    #[test]
    fn zombies_never_count_and_states_are_read_past_odd_names() {
        let stat = "1234 (go (weird) x) Z 1 1234 1234 0 -1 4194560 100 0 0 0 5 2 0 0 20 0 8 0 987654 1000 ";
        assert_eq!(state(stat), Some('Z'));
        // A real zombie named go: a child that exited and was not reaped.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("go");
        std::fs::copy("/bin/true", &fake).unwrap();
        let cache = dir.path().join("gocache");
        std::fs::create_dir(&cache).unwrap();
        let cache = cache.canonicalize().unwrap();
        let child = std::process::Command::new(&fake)
            .env("GOCACHE", &cache)
            .spawn()
            .unwrap();
        let zombie = format!("/proc/{}/stat", child.id());
        let became_zombie = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            std::fs::read_to_string(&zombie).is_ok_and(|s| state(&s) == Some('Z'))
        });
        assert!(became_zombie);
        let guard = vec!["go".to_string()];
        assert!(in_use_since(&cache, &guard)
            .is_none_or(|u| !u.by.contains(&format!("pid {}", child.id()))));
        drop(child); // std does not reap on drop; the test process's exit does
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
        let guard = vec!["go".to_string()];
        let mut child = std::process::Command::new(&fake)
            .arg("30")
            .env("GOCACHE", &cache)
            .spawn()
            .unwrap();
        let found = (0..100).find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            in_use_since(&cache, &guard)
        });
        // A go command on another cache does not count for this one.
        assert!(in_use_since(&elsewhere.canonicalize().unwrap(), &guard)
            .is_none_or(|u| !u.by.contains(&child.id().to_string())));
        let mut other = std::process::Command::new(&fake)
            .arg("30")
            .env("GOCACHE", "off")
            .spawn()
            .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let found = found.expect("the fake go process is seen");
        assert!(found.started <= crate::now());
        assert!(
            found.by.contains(&format!("pid {}", child.id())),
            "{}",
            found.by
        );
        // Only the GOCACHE=off process is left: it uses no cache.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            in_use_since(&cache, &guard).is_none_or(|u| !u.by.contains(&other.id().to_string()))
        );
        other.kill().unwrap();
        other.wait().unwrap();
    }

    #[test]
    fn a_cache_moved_with_go_env_w_is_held_by_that_users_go_commands() {
        // `go env -w GOCACHE=…` writes ~/.config/go/env; the process environment has
        // no GOCACHE, and go uses the file's.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("go");
        std::fs::copy("/bin/sleep", &fake).unwrap();
        let home = dir.path().join("home");
        let cache = dir.path().join("moved-cache");
        std::fs::create_dir_all(home.join(".config/go")).unwrap();
        std::fs::create_dir_all(home.join(".cache/go-build")).unwrap();
        std::fs::create_dir(&cache).unwrap();
        let cache = cache.canonicalize().unwrap();
        std::fs::write(
            home.join(".config/go/env"),
            format!("GOCACHE={}\n", cache.display()),
        )
        .unwrap();
        let mut child = std::process::Command::new(&fake)
            .arg("30")
            .env_clear()
            .env("HOME", &home)
            .spawn()
            .unwrap();
        let guard = vec!["go".to_string()];
        let pid = child.id();
        let held = |root: &Path| {
            (0..100).find_map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                in_use_since(root, &guard).filter(|u| u.by.contains(&format!("pid {pid}")))
            })
        };
        let moved = held(&cache);
        let default_place = in_use_since(
            &home.join(".cache/go-build").canonicalize().unwrap(),
            &guard,
        )
        .filter(|u| u.by.contains(&format!("pid {pid}")));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(moved.is_some(), "the cache named in go's env file is held");
        assert!(
            default_place.is_none(),
            "the default place is not its cache"
        );
    }

    #[test]
    fn a_go_command_in_a_container_is_seen_through_its_own_root() {
        // A mount namespace of its own with the cache bind-mounted at a path that, on
        // the host, is another (empty) directory: as a container sees a host cache.
        if !nix::unistd::geteuid().is_root() {
            eprintln!("a_go_command_in_a_container...: not run: needs root for unshare -m");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("go");
        std::fs::copy("/bin/sleep", &fake).unwrap();
        let cache = dir.path().join("gocache");
        let inside = dir.path().join("container-view");
        std::fs::create_dir(&cache).unwrap();
        std::fs::create_dir(&inside).unwrap();
        let cache = cache.canonicalize().unwrap();
        let mut child = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount --bind {} {} && exec env GOCACHE={} {} 30",
                cache.display(),
                inside.display(),
                inside.display(),
                fake.display()
            ))
            .spawn()
            .expect("unshare is installed (util-linux)");
        let guard = vec!["go".to_string()];
        let pid = child.id();
        let found = (0..200).find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            in_use_since(&cache, &guard).filter(|u| u.by.contains(&format!("pid {pid}")))
        });
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            found.is_some(),
            "the containerised go command holds the host cache"
        );
        // On the host, its GOCACHE path is another directory: not this one's user.
        assert!(in_use_since(&inside.canonicalize().unwrap(), &guard)
            .is_none_or(|u| !u.by.contains(&format!("pid {pid}"))));
    }

    #[test]
    fn go_packages_tools_hold_the_cache_too_and_the_list_is_configurable() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("golangci-lint");
        std::fs::copy("/bin/sleep", &tool).unwrap();
        let cache = dir.path().join("gocache");
        std::fs::create_dir(&cache).unwrap();
        let cache = cache.canonicalize().unwrap();
        let mut child = std::process::Command::new(&tool)
            .arg("30")
            .env("GOCACHE", &cache)
            .spawn()
            .unwrap();
        let defaults: Vec<String> = DEFAULT_BUILD_GUARD.iter().map(|s| s.to_string()).collect();
        let pid = child.id();
        let found = (0..200).find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            in_use_since(&cache, &defaults).filter(|u| u.by.contains(&format!("pid {pid}")))
        });
        let without = in_use_since(&cache, &["go".to_string()]);
        child.kill().unwrap();
        child.wait().unwrap();
        let found = found.expect("golangci-lint is guarded by default");
        assert!(found.by.starts_with("golangci-lint (pid"), "{}", found.by);
        assert!(
            without.is_none_or(|u| !u.by.contains(&format!("pid {pid}"))),
            "a guard list without it ignores it"
        );
    }

    #[test]
    fn a_program_running_from_a_module_tree_is_found_whatever_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mod");
        let bin = root.join("golang.org/toolchain@v0.0.1-go1.27.3.linux-amd64/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/sleep", bin.join("gofmt")).unwrap();
        let mut child = std::process::Command::new(bin.join("gofmt"))
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let found = (0..100).find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            executing_beneath_now(&root)
                .into_iter()
                .find(|(p, _, _)| *p == pid)
        });
        child.kill().unwrap();
        child.wait().unwrap();
        let (_, name, key) = found.expect("the program is found");
        assert_eq!(name, "gofmt");
        assert_eq!(key, "golang.org/toolchain@v0.0.1-go1.27.3.linux-amd64");
        assert!(executing_beneath_now(&dir.path().join("elsewhere")).is_empty());
    }
}
