//! The config file: TOML with `[daemon]` and `[[cache]]` tables.
//!
//! Every error names the file, the line and the key, because the person reading it is
//! usually an operator who just edited `/etc/cachewarden/config.toml` and sent SIGHUP.
//! Unknown keys are errors (`deny_unknown_fields`): a misspelt `max_sise` that silently
//! did nothing would let a cache fill a disk.
//!
//! With no config file the daemon uses [`EMBEDDED_DEFAULT`], which finds the user's Go
//! caches with `go env` (see `go_env.rs`).

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::kinds::KindName;
use crate::schedule::CronSchedule;
use crate::units::{self, SizeLimit};
use crate::users::{self, Owner, UsersSpec};

/// The config used when no file is given or found: the user's Go caches, found with
/// `go env`, with limits fit for a developer workstation.
pub const EMBEDDED_DEFAULT: &str = include_str!("default-config.toml");

/// The system daemon's config (the packaged unit names it explicitly).
pub const SYSTEM_CONFIG: &str = "/etc/cachewarden/config.toml";
/// The system daemon's socket (systemd's `RuntimeDirectory=cachewarden`).
pub const SYSTEM_SOCKET: &str = "/run/cachewarden/cachewarden.sock";

/// Enforcement schedule when a cache sets none. Limits are also enforced as soon as watch
/// events push a cache over one; this catches entries that merely grew old.
pub const DEFAULT_SCHEDULE: &str = "17 * * * *";

/// A config error, located as precisely as the problem allows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Where the effective config came from.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigSource {
    File(PathBuf),
    Embedded,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Embedded => f.write_str("<embedded default>"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub source: ConfigSource,
    pub daemon: DaemonConfig,
    pub caches: Vec<CacheConfig>,
    /// Tables with group limits.
    pub groups: Vec<GroupConfig>,
    /// Some table finds its caches per user or by a glob: the daemon re-reads the
    /// config now and then to pick up new users and caches.
    pub discovers: bool,
    /// Things the operator should know about this config that are not errors, e.g. a
    /// discovered cache whose kind this build cannot manage. Shown in `status`.
    pub notes: Vec<String>,
}

/// The `socket_group` of `socket_group = "*"`: no group, every user.
pub const ALL_USERS_GID: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub socket: PathBuf,
    /// Group allowed to read status over the socket (socket mode 0660, dir 0750);
    /// `"*"` ([`ALL_USERS_GID`]): every local user (socket 0666, dir 0755).
    pub socket_group: Option<(String, u32)>,
    pub log_level: String,
    /// Where index snapshots are kept for cheap restarts (`None`: no snapshots).
    pub state_dir: Option<PathBuf>,
    /// A loopback TCP address serving only `GET /metrics`, for Prometheus without
    /// socket access (off by default).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// How long a toolchain beyond `keep_toolchains` stays unused when no `max_age` is set.
pub const SURPLUS_TOOLCHAIN_AGE: Duration = Duration::from_secs(30 * 86400);

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub name: String,
    pub kind: KindName,
    /// Canonical absolute path of the cache root.
    pub path: PathBuf,
    pub limits: Limits,
    pub keep: Vec<glob::Pattern>,
    pub schedule: CronSchedule,
    pub verify_schedule: Option<CronSchedule>,
    pub on_problem: OnProblem,
    /// Evict by the kind's tiers (go-mod: extracted trees before zips); when false, by
    /// last use alone. Entries only `max_age` removes stay so either way.
    pub tiered_eviction: bool,
    /// go-mod: how many of the newest Go toolchains (`golang.org/toolchain@…`) are kept
    /// like any module; older ones go once unused for `max_age` (or
    /// [`SURPLUS_TOOLCHAIN_AGE`] without one). `None`: toolchains are plain modules.
    pub keep_toolchains: Option<u32>,
    /// Process names whose running holds entries they may open (go-build, go-mod;
    /// `go_procs.rs`).
    pub guard_processes: Vec<String>,
    /// The directory does not exist yet: `path` is as configured (not canonical), and
    /// the daemon reloads the config once it appears.
    pub waiting: bool,
    /// Why a cache whose directory exists waits (the daemon only, `Env::long_running`):
    /// it does not look like its kind's cache yet. Reloaded once it does.
    pub refused: Option<String>,
    /// The `name` of the table it comes from (a table with `users` or a glob path
    /// yields `<table>@<user>` caches).
    pub table: String,
    /// Whose cache it is, for a cache a table found per user: its removals run with the
    /// owner's file-system credentials.
    pub owner: Option<Owner>,
}

/// Limits on all the caches of one table together: under shared pressure the least
/// recently used entries of all of them go first (`group.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// The table's name.
    pub name: String,
    pub max_size: Option<SizeLimit>,
    pub min_free: Option<SizeLimit>,
    /// Who gives first under the group's limits.
    pub policy: GroupPolicy,
}

/// How a group's limits choose whose entries go (`group.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupPolicy {
    /// The members furthest over an equal share of the group's limit give first, each
    /// its own least recently used entries (the default: any user can make their
    /// entries look used by touching them, so recency alone cannot be trusted across
    /// users).
    #[default]
    FairShare,
    /// The least recently used entries of all members together, whoever owns them.
    Lru,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_size: Option<SizeLimit>,
    pub max_age: Option<Duration>,
    pub min_free: Option<SizeLimit>,
    /// The safety floor: an entry used more recently than this is never evicted.
    pub min_age: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnProblem {
    /// Log and count problems found by scheduled sweeps, change nothing.
    Report,
    /// Remove broken entries (following the kind's removal protocol).
    Repair,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    cache: Vec<RawCache>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    socket: Option<Spanned<PathBuf>>,
    socket_group: Option<Spanned<String>>,
    log_level: Option<Spanned<String>>,
    state_dir: Option<Spanned<PathBuf>>,
    metrics_listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    name: Spanned<String>,
    kind: KindName,
    /// Required, except for a `cargo-target` table with `roots`.
    path: Option<Spanned<PathBuf>>,
    /// `cargo-target`: the directories below which target directories are found.
    roots: Option<Spanned<Vec<PathBuf>>>,
    max_size: Option<SizeLimit>,
    #[serde(default, with = "units::duration_text")]
    max_age: Option<Duration>,
    min_free: Option<SizeLimit>,
    min_age: Option<Spanned<String>>,
    #[serde(default)]
    keep: Vec<Spanned<String>>,
    schedule: Option<CronSchedule>,
    verify_schedule: Option<CronSchedule>,
    #[serde(default = "default_on_problem")]
    on_problem: OnProblem,
    /// Lets `min_age` go below the kind's safe floor. The name says what it costs.
    #[serde(default)]
    unsafe_allow_short_min_age: bool,
    guard_processes: Option<Spanned<Vec<String>>>,
    #[serde(default = "default_true")]
    tiered_eviction: bool,
    keep_toolchains: Option<Spanned<u32>>,
    /// One cache per user (`users.rs`).
    users: Option<Spanned<UsersSpec>>,
    /// Limits on all the caches of this table together (`group.rs`).
    group_max_size: Option<SizeLimit>,
    group_min_free: Option<SizeLimit>,
    #[serde(default)]
    group_policy: GroupPolicy,
}

fn default_true() -> bool {
    true
}

fn default_on_problem() -> OnProblem {
    OnProblem::Report
}

/// The environment a config is resolved in: injected so tests can fake `$HOME` and the
/// user's runtime dir.
#[derive(Debug, Clone)]
pub struct Env {
    pub home: Option<PathBuf>,
    pub uid: u32,
    pub xdg_runtime_dir: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub xdg_state_home: Option<PathBuf>,
    /// Loading for the daemon: a root that exists but does not look like its kind's
    /// cache (yet) waits, with the reason, instead of failing the whole config — `go
    /// clean -modcache` leaves a half-removed root for a moment, and a daemon started or
    /// reloaded then must not refuse to run. One-shot commands and `config check`
    /// refuse it.
    pub long_running: bool,
}

impl Env {
    pub fn from_process() -> Env {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Env {
            home: var("HOME"),
            uid: nix::unistd::getuid().as_raw(),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            xdg_state_home: var("XDG_STATE_HOME"),
            long_running: false,
        }
    }

    /// The config file used when none is named: the user's; for root also the
    /// system's. (A user's daemon must not pick up the system daemon's config and
    /// socket: without a file of their own, users get the embedded default.)
    pub fn default_config_file(&self) -> Option<PathBuf> {
        let user = self
            .xdg_config_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".config")))
            .map(|d| d.join("cachewarden/config.toml"));
        let system = (self.uid == 0).then(|| PathBuf::from(SYSTEM_CONFIG));
        [user, system].into_iter().flatten().find(|p| p.is_file())
    }

    /// `/var/lib/cachewarden` for root (the system unit's `StateDirectory=`), the
    /// user's XDG state dir otherwise.
    pub fn default_state_dir(&self) -> Option<PathBuf> {
        if self.uid == 0 {
            return Some(PathBuf::from("/var/lib/cachewarden"));
        }
        let base = self
            .xdg_state_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".local/state")))?;
        Some(base.join("cachewarden"))
    }

    /// `/run/cachewarden/…` for root (the system unit's RuntimeDirectory), the user's
    /// runtime dir otherwise.
    pub fn default_socket(&self) -> PathBuf {
        if self.uid == 0 {
            return PathBuf::from(SYSTEM_SOCKET);
        }
        let dir = if let Some(run) = &self.xdg_runtime_dir {
            run.join("cachewarden")
        } else {
            PathBuf::from(format!("/tmp/cachewarden-{}", self.uid))
        };
        dir.join("cachewarden.sock")
    }
}

/// Loads the config named on the command line, else the default file, else the embedded
/// default.
pub fn load(explicit: Option<&Path>, env: &Env) -> Result<Config, ConfigError> {
    match explicit
        .map(Path::to_path_buf)
        .or_else(|| env.default_config_file())
    {
        Some(path) => load_file(&path, env),
        None => parse(EMBEDDED_DEFAULT, ConfigSource::Embedded, env),
    }
}

/// The socket a config names even when it does not load (a typo in a key, a bad
/// value): read from `[daemon] socket` if the file is TOML at all, else the default.
/// The CLI finds a running daemon with it, which runs on the config it loaded before
/// (issue #30: a broken config must not blind `status`, `socket` and `doctor`).
pub fn socket_despite_errors(explicit: Option<&Path>, env: &Env) -> PathBuf {
    let named = explicit
        .map(Path::to_path_buf)
        .or_else(|| env.default_config_file())
        .and_then(|file| read_config_text(&file).ok())
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|table| {
            let socket = table.get("daemon")?.get("socket")?.as_str()?;
            let span = 0..0;
            Some(home_expanded(Spanned::new(span, PathBuf::from(socket)), env).into_inner())
        });
    named
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| env.default_socket())
}

pub fn load_file(path: &Path, env: &Env) -> Result<Config, ConfigError> {
    let text = read_config_text(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: None,
        key: None,
        message: format!("cannot read config file: {e}"),
    })?;
    parse(&text, ConfigSource::File(path.to_path_buf()), env)
}

/// A config file's text. Symlinks are followed (configuration management links them),
/// but the file must be a regular file, opened without blocking: a FIFO or device named
/// as the config would otherwise hang the daemon's reload.
fn read_config_text(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

pub fn parse(text: &str, source: ConfigSource, env: &Env) -> Result<Config, ConfigError> {
    let file = source.to_string();
    let err_at = |span: Option<Range<usize>>, key: Option<&str>, message: String| ConfigError {
        file: file.clone(),
        line: span.map(|s| line_of(text, s.start)),
        key: key.map(str::to_string),
        message,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let key = key_of_error(e.message(), e.span().map(|s| line_text(text, s.start)));
        let mut message = e.message().trim().to_string();
        let line = e
            .span()
            .map(|s| line_text(text, s.start).trim().to_string());
        if message.contains("expected a sequence") && line.as_deref() == Some("[cache]") {
            // `[cache]` (one table) where the config wants `[[cache]]` (one per cache).
            message.push_str("; each cache is its own `[[cache]]` table (two brackets)");
        }
        err_at(e.span(), key.as_deref(), message)
    })?;

    let mut notes = Vec::new();
    let daemon = DaemonConfig {
        socket: match raw.daemon.socket.map(|s| home_expanded(s, env)) {
            Some(s) if s.get_ref().is_relative() => {
                return Err(err_at(
                    Some(s.span()),
                    Some("socket"),
                    format!(
                        "{:?} is a relative path; give an absolute path",
                        s.get_ref()
                    ),
                ))
            }
            Some(s) => s.into_inner(),
            None => env.default_socket(),
        },
        socket_group: match raw.daemon.socket_group {
            None => None,
            // Every local user: status for all, and each owner acts on their own caches
            // (a shared build server; the server authorizes by peer uid).
            Some(g) if g.get_ref() == "*" => Some(("*".to_string(), ALL_USERS_GID)),
            Some(g) => match nix::unistd::Group::from_name(g.get_ref()) {
                Ok(Some(group)) => Some((g.get_ref().clone(), group.gid.as_raw())),
                _ => {
                    return Err(err_at(
                        Some(g.span()),
                        Some("socket_group"),
                        format!("no such group {:?}", g.get_ref()),
                    ))
                }
            },
        },
        metrics_listen: match raw.daemon.metrics_listen {
            None => None,
            Some(a) => match a.get_ref().parse::<std::net::SocketAddr>() {
                Ok(addr) if addr.ip().is_loopback() => Some(addr),
                Ok(_) => {
                    return Err(err_at(
                        Some(a.span()),
                        Some("metrics_listen"),
                        format!(
                            "{:?} is not a loopback address: metrics are served on 127.0.0.0/8 or [::1] only (put a reverse proxy in front to expose them)",
                            a.get_ref()
                        ),
                    ))
                }
                Err(_) => {
                    return Err(err_at(
                        Some(a.span()),
                        Some("metrics_listen"),
                        format!(
                            "{:?} is not an address and port like \"127.0.0.1:9587\"",
                            a.get_ref()
                        ),
                    ))
                }
            },
        },
        state_dir: match raw.daemon.state_dir.map(|d| home_expanded(d, env)) {
            Some(d) if d.get_ref().is_relative() => {
                return Err(err_at(
                    Some(d.span()),
                    Some("state_dir"),
                    format!(
                        "{:?} is a relative path; give an absolute path",
                        d.get_ref()
                    ),
                ))
            }
            Some(d) => Some(d.into_inner()),
            None => env.default_state_dir(),
        },
        log_level: match raw.daemon.log_level {
            None => "info".to_string(),
            Some(l) => {
                let level = l.get_ref().to_ascii_lowercase();
                if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
                    return Err(err_at(
                        Some(l.span()),
                        Some("log_level"),
                        format!(
                            "unknown level {:?}: expected error, warn, info, debug or trace",
                            l.get_ref()
                        ),
                    ));
                }
                level
            }
        },
    };

    let mut caches: Vec<CacheConfig> = Vec::new();
    let homes = crate::roots::homes(env.home.as_deref());
    let mut names = HashSet::new();
    let mut groups = Vec::new();
    let mut discovers = false;
    for raw in raw.cache {
        let table = raw.name.get_ref().clone();
        let name = table.clone();
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid_name {
            return Err(err_at(
                Some(raw.name.span()),
                Some("name"),
                format!("invalid cache name {name:?}: use letters, digits, '-', '_' and '.' (it appears in URLs)"),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(err_at(
                Some(raw.name.span()),
                Some("name"),
                format!("duplicate cache name {name:?}"),
            ));
        }
        let path = match (&raw.path, &raw.roots) {
            (Some(path), None) => path.clone(),
            (None, Some(roots)) if raw.kind.finds_caches_below_roots() => {
                Spanned::new(roots.span(), PathBuf::from("roots"))
            }
            (None, Some(roots)) => {
                return Err(err_at(
                    Some(roots.span()),
                    Some("roots"),
                    format!("roots applies to cargo-target caches (the directories their target directories are found below); a {} cache takes a path", raw.kind),
                ))
            }
            (Some(_), Some(roots)) => {
                return Err(err_at(
                    Some(roots.span()),
                    Some("roots"),
                    "give path (one target directory) or roots (directories to find them below), not both".into(),
                ))
            }
            (None, None) => {
                return Err(err_at(
                    Some(raw.name.span()),
                    Some("path"),
                    format!("cache {name:?} has no path (the cache's directory, or \"auto\")"),
                ))
            }
        };
        let path_span = Some(path.span());
        // With `users`, `~/` is each user's home (`users::path_for`).
        let plain_path = match raw.users {
            Some(_) => path.get_ref().clone(),
            None => home_expanded(path.clone(), env).into_inner(),
        };
        let targets = match &raw.users {
            // Each user's target directories below their `~/…` roots, theirs.
            Some(users) if raw.roots.is_some() => {
                let owners = users::resolve(users.get_ref())
                    .map_err(|m| err_at(Some(users.span()), Some("users"), m))?;
                let roots = raw
                    .roots
                    .as_ref()
                    .map(|r| r.get_ref().clone())
                    .unwrap_or_default();
                let mut targets = Vec::new();
                for owner in owners {
                    let mut theirs = Vec::new();
                    for root in &roots {
                        let root = users::path_for(raw.kind, root, &owner)
                            .map_err(|m| err_at(path_span.clone(), Some("roots"), m))?;
                        theirs.push(root);
                    }
                    let prefix = format!("{table}@{}", owner.name);
                    targets.extend(
                        caches_below_roots(raw.kind, &prefix, &theirs)
                            .into_iter()
                            .map(|(name, dir, _)| (name, dir, Some(owner.clone()))),
                    );
                }
                targets
            }
            Some(users) => {
                let owners = users::resolve(users.get_ref())
                    .map_err(|m| err_at(Some(users.span()), Some("users"), m))?;
                let mut targets = Vec::new();
                for owner in owners {
                    let path = users::path_for(raw.kind, path.get_ref(), &owner)
                        .map_err(|m| err_at(path_span.clone(), Some("path"), m))?;
                    targets.push((format!("{table}@{}", owner.name), path, Some(owner)));
                }
                targets
            }
            None if raw.roots.is_some() => {
                let roots = raw
                    .roots
                    .as_ref()
                    .map(|r| r.get_ref().clone())
                    .unwrap_or_default();
                let roots: Vec<PathBuf> = roots
                    .into_iter()
                    .map(|r| home_expanded(Spanned::new(0..0, r), env).into_inner())
                    .collect();
                if let Some(relative) = roots.iter().find(|r| r.is_relative()) {
                    return Err(err_at(
                        path_span.clone(),
                        Some("roots"),
                        format!("{relative:?} is a relative path; give absolute paths or ones starting with \"~/\""),
                    ));
                }
                if let Some((root, e)) = roots.iter().find_map(|r| {
                    let text = r.to_string_lossy();
                    let e = glob::Pattern::new(&text).err()?;
                    Some((text.into_owned(), e))
                }) {
                    return Err(err_at(
                        path_span.clone(),
                        Some("roots"),
                        format!("{root:?} is not a valid pattern: {e}"),
                    ));
                }
                let found = caches_below_roots(raw.kind, &table, &roots);
                if found.is_empty() {
                    notes.push(format!(
                        "table {table:?} finds no {} cache below {} yet: each is picked up once its tool creates it",
                        raw.kind,
                        roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
                    ));
                }
                found
            }
            None if users::is_glob(&plain_path) => users::glob_caches(&plain_path)
                .map_err(|m| err_at(path_span.clone(), Some("path"), m))?
                .into_iter()
                .map(|(path, owner)| (format!("{table}@{}", owner.name), path, Some(owner)))
                .collect(),
            None => vec![(name, plain_path.clone(), None)],
        };
        let per_user = raw.users.is_some() || users::is_glob(&plain_path) || raw.roots.is_some();
        discovers |= per_user;
        if raw.group_max_size.is_some() || raw.group_min_free.is_some() {
            groups.push(GroupConfig {
                name: table.clone(),
                max_size: raw.group_max_size,
                min_free: raw.group_min_free,
                policy: raw.group_policy,
            });
        }
        let mut not_yet = 0;
        for (name, configured_path, owner) in targets {
            let (path, mut waiting) = match resolve_cache_path(raw.kind, &configured_path) {
                Ok(Resolved::Found(p)) => (p, false),
                Ok(Resolved::Waiting(p)) if per_user => {
                    not_yet += 1;
                    (p, true)
                }
                Ok(Resolved::Waiting(p)) => {
                    notes.push(format!(
                    "cache {name:?}: waiting for {} (it does not exist yet; managed once it appears)",
                    p.display()
                ));
                    (p, true)
                }
                Ok(Resolved::Nowhere) => {
                    notes.push(format!(
                        "cache {name:?}: no {} cache found; skipped",
                        raw.kind
                    ));
                    continue;
                }
                Err(message) => return Err(err_at(path_span, Some("path"), message)),
            };
            if let Some(uid) = owner.as_ref().and_then(|o| users::foreign_root(&path, o)) {
                notes.push(format!(
                    "cache {name:?}: {} belongs to uid {uid}, not to {}; not managed",
                    path.display(),
                    owner.as_ref().map_or("", |o| o.name.as_str())
                ));
                continue;
            }
            let configured = match configured_path.as_path() {
                p if p == Path::new("auto") || per_user => path.as_path(),
                p => p,
            };
            if let Some(message) = crate::roots::refuse(configured, &path, &homes) {
                return Err(err_at(path_span, Some("path"), message));
            }
            let mut refused = None;
            let checked = match waiting {
                true => Ok(()), // nothing there yet: checked once it appears
                false => raw.kind.check_root(&path),
            };
            if let Err(message) = checked {
                if !env.long_running {
                    return Err(err_at(path_span, Some("path"), message));
                }
                notes.push(format!(
                    "cache {name:?}: {message} for now; managed once it does (go clean may be removing it)"
                ));
                waiting = true;
                refused = Some(message);
            }
            if let Some(other) = caches
                .iter()
                .find(|c| c.path.starts_with(&path) || path.starts_with(&c.path))
            {
                return Err(err_at(
                    path_span,
                    Some("path"),
                    format!(
                        "{} overlaps cache {:?} at {}",
                        path.display(),
                        other.name,
                        other.path.display()
                    ),
                ));
            }

            let floor = raw.kind.min_age_floor();
            let min_age = match &raw.min_age {
                None => raw.kind.default_min_age(),
                Some(text) => {
                    let d = units::parse_duration(text.get_ref())
                        .map_err(|m| err_at(Some(text.span()), Some("min_age"), m))?;
                    if d < floor && !raw.unsafe_allow_short_min_age {
                        return Err(err_at(
                        Some(text.span()),
                        Some("min_age"),
                        format!(
                            "{} is below the safe floor of {} for kind {}: a running tool may still open entries that young. Set unsafe_allow_short_min_age = true to override",
                            units::format_duration(d),
                            units::format_duration(floor),
                            raw.kind
                        ),
                    ));
                    }
                    d
                }
            };
            if let Some(max_age) = raw.max_age {
                if max_age < min_age {
                    return Err(err_at(
                        path_span,
                        Some("max_age"),
                        format!(
                        "max_age ({}) is shorter than min_age ({}): entries could never be both",
                        units::format_duration(max_age),
                        units::format_duration(min_age)
                    ),
                    ));
                }
            }
            let default_guard = raw.kind.default_guard();
            let guard_processes = match &raw.guard_processes {
            None => default_guard.unwrap_or_default().iter().map(|s| s.to_string()).collect(),
            Some(_) if default_guard.is_none() => {
                return Err(err_at(
                    raw.guard_processes.as_ref().map(|g| g.span()),
                    Some("guard_processes"),
                    format!("guard_processes does not apply to {} caches (their writer is not a process the daemon can name; min_age protects them)", raw.kind),
                ))
            }
            Some(names) => {
                if let Some(bad) = names
                    .get_ref()
                    .iter()
                    .find(|n| n.is_empty() || n.len() > 15 || n.contains('/'))
                {
                    return Err(err_at(
                        Some(names.span()),
                        Some("guard_processes"),
                        format!("{bad:?} is not a process name as /proc/PID/comm shows it (1 to 15 bytes, no '/')"),
                    ));
                }
                names.get_ref().clone()
            }
        };
            let keep_toolchains = match &raw.keep_toolchains {
                Some(n) if !raw.kind.holds_toolchains() => return Err(err_at(
                    Some(n.span()),
                    Some("keep_toolchains"),
                    "keep_toolchains applies to go-mod caches (Go toolchains live in GOMODCACHE)"
                        .into(),
                )),
                other => other.as_ref().map(|n| *n.get_ref()),
            };
            let mut keep = Vec::new();
            for pattern in &raw.keep {
                keep.push(glob::Pattern::new(pattern.get_ref()).map_err(|e| {
                    err_at(
                        Some(pattern.span()),
                        Some("keep"),
                        format!("invalid pattern {:?}: {e}", pattern.get_ref()),
                    )
                })?);
            }
            caches.push(CacheConfig {
                name,
                kind: raw.kind,
                path,
                limits: Limits {
                    max_size: raw.max_size,
                    max_age: raw.max_age,
                    min_free: raw.min_free,
                    min_age,
                },
                keep,
                schedule: raw
                    .schedule
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SCHEDULE.parse().expect("default schedule parses")),
                verify_schedule: raw.verify_schedule.clone(),
                on_problem: raw.on_problem,
                tiered_eviction: raw.tiered_eviction,
                keep_toolchains,
                guard_processes,
                waiting,
                refused,
                table: table.clone(),
                owner,
            });
        }
        if not_yet > 0 {
            notes.push(format!(
                "cache table {table:?}: {not_yet} caches do not exist yet; each is managed once it appears"
            ));
        }
    }
    Ok(Config {
        source,
        daemon,
        caches,
        groups,
        discovers,
        notes,
    })
}

/// `"auto"` asks the kind to find its cache; anything else must be an existing absolute
/// directory. Returns the canonical path (symlinks resolved once, here, so later removal
/// never follows a link out of the root), or `None` when auto-discovery found nothing.
/// Where a configured cache is.
enum Resolved {
    /// Its canonical path.
    Found(PathBuf),
    /// It does not exist yet (go has not run, or the directory is not made yet): the
    /// daemon waits for it to appear.
    Waiting(PathBuf),
    /// `auto` found no place at all.
    Nowhere,
}

/// `~` and `~/rest`: the home of the user whose config this is (`$HOME`), in every
/// path key. (In a table with `users`, `~/` is each user's home: `users.rs`.)
fn home_expanded(path: Spanned<PathBuf>, env: &Env) -> Spanned<PathBuf> {
    let span = path.span();
    let text = path.get_ref().to_string_lossy();
    let rest = match text.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_start_matches('/'),
        _ => return path,
    };
    match &env.home {
        Some(home) => Spanned::new(span, home.join(rest)),
        None => path,
    }
}

/// `"auto"` asks the kind to find its cache; anything else must be an absolute path.
fn resolve_cache_path(kind: KindName, path: &Path) -> Result<Resolved, String> {
    let path = if path == Path::new("auto") {
        match kind.discover() {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(Resolved::Nowhere),
            Err(e) => return Err(e),
        }
    } else {
        path.to_path_buf()
    };
    if path.is_relative() {
        return Err(format!(
            "{:?} is a relative path; give an absolute path, one starting with \"~/\" (your home), or \"auto\"",
            path
        ));
    }
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Resolved::Waiting(path)),
        Err(e) => return Err(format!("cache directory {}: {e}", path.display())),
    }
    path.canonicalize()
        .map(Resolved::Found)
        .map_err(|e| format!("cache directory {}: {e}", path.display()))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn line_text(text: &str, offset: usize) -> &str {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    &text[start..end]
}

/// The key a TOML/serde error is about: named in the message ("unknown field `x`",
/// "missing field `x`") or written at the start of the error's line (`key = value`).
fn key_of_error(message: &str, line: Option<&str>) -> Option<String> {
    if let Some(rest) = message.split("field `").nth(1) {
        return rest.split('`').next().map(str::to_string);
    }
    let line = line?.trim();
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

/// The first cache of a config text, parsed for a plain user with no environment
/// (unit tests of other modules).
#[cfg(test)]
pub fn first_cache_for_test(text: &str) -> CacheConfig {
    let env = Env {
        home: None,
        uid: 1000,
        xdg_runtime_dir: None,
        xdg_config_home: None,
        xdg_state_home: None,
        long_running: false,
    };
    parse(text, ConfigSource::Embedded, &env)
        .unwrap()
        .caches
        .remove(0)
}

mod below_roots;
use below_roots::caches_below_roots;

#[cfg(test)]
mod tests;
