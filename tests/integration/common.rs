//! Shared test tools: a real daemon on a temp socket, a raw HTTP client, polling.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use filetime::FileTime;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_cachewarden");

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub const DEADLINE: Duration = Duration::from_secs(30);

/// A temp dir that other users can traverse (for tests that run clients as nobody).
pub fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Writes `len` bytes at `path`, last used `age` ago.
pub fn file_aged(path: &Path, len: usize, age: Duration) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, vec![7u8; len]).unwrap();
    let t = FileTime::from_unix_time(now() - age.as_secs() as i64, 0);
    filetime::set_file_times(path, t, t).unwrap();
}

/// Sets every file's atime and mtime below `dir` back by `age`, as if last used then.
pub fn age_files(dir: &Path, age: Duration) {
    let t = FileTime::from_unix_time(now() - age.as_secs() as i64, 0);
    for e in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        if e.file_type().is_file() {
            let _ = filetime::set_file_times(e.path(), t, t);
        }
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub const HOUR: Duration = Duration::from_secs(3600);
/// The go command the real-go tests run: `$CACHEWARDEN_TEST_GO`, else `go` from PATH
/// (Debian's). The compatibility matrix (`go_versions.rs`) runs each of
/// `$CACHEWARDEN_TEST_GO_MATRIX`, which `scripts/test` installs and sets.
pub fn go_binary() -> PathBuf {
    std::env::var_os("CACHEWARDEN_TEST_GO")
        .filter(|g| !g.is_empty())
        .map_or_else(|| PathBuf::from("go"), PathBuf::from)
}

pub const DAY: Duration = Duration::from_secs(86400);

/// One HTTP/1.1 request over the socket; returns (status, body).
pub fn http(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    raw(socket, request.as_bytes())
}

/// Sends raw bytes, reads the whole answer, parses the status line.
pub fn raw(socket: &Path, bytes: &[u8]) -> (u16, String) {
    raw_within(socket, bytes, DEADLINE)
}

/// [`raw`], waiting up to `timeout` for the answer.
pub fn raw_within(socket: &Path, bytes: &[u8], timeout: Duration) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.write_all(bytes).unwrap();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    parse_answer(&answer)
}

/// [`http`] to a daemon that may be down (killed, restarting): `None` when no answer
/// came.
pub fn try_http(socket: &Path, method: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    (!answer.is_empty()).then(|| parse_answer(&answer))
}

fn parse_answer(answer: &str) -> (u16, String) {
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A config with one `dir` cache per (name, path, extra lines).
pub fn config_text(socket: &Path, caches: &[(&str, &Path, &str)]) -> String {
    let mut text = format!(
        "[daemon]\nsocket = \"{}\"\nlog_level = \"debug\"\n",
        socket.display()
    );
    for (name, path, extra) in caches {
        text.push_str(&format!(
            "\n[[cache]]\nname = \"{name}\"\nkind = \"dir\"\npath = \"{}\"\n{extra}\n",
            path.display()
        ));
    }
    text
}

/// A config text (as [`config_text`] writes its `[daemon]` table) with the daemon's
/// state directory set to `state`.
pub fn with_state_dir(config: &str, state: &Path) -> String {
    config.replacen(
        "log_level = \"debug\"\n",
        &format!(
            "log_level = \"debug\"\nstate_dir = \"{}\"\n",
            state.display()
        ),
        1,
    )
}

pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cachewarden daemon` on `config` and waits until every cache is scanned.
    pub fn start(dir: &Path, config_text: &str) -> Daemon {
        Daemon::start_with(dir, config_text, None)
    }

    /// [`Daemon::start`] with at most `fd_limit` open files (soft and hard), which sizes
    /// its connection limits.
    pub fn start_with(dir: &Path, config_text: &str, fd_limit: Option<u64>) -> Daemon {
        let mut daemon = Daemon::launch(dir, config_text, fd_limit, None);
        daemon.wait_ready();
        daemon
    }

    /// Starts the daemon and returns at once, before its first scan.
    pub fn spawn(dir: &Path, config_text: &str) -> Daemon {
        Daemon::launch(dir, config_text, None, None)
    }

    /// [`Daemon::start`] as root with only `capabilities` (`CAP_…` names, as in a
    /// unit's `CapabilityBoundingSet=`): `setpriv` narrows the bounding set, so the
    /// daemon holds exactly those, as under systemd.
    pub fn start_with_capabilities(dir: &Path, config_text: &str, capabilities: &[&str]) -> Daemon {
        let bounding: Vec<String> = capabilities
            .iter()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
            .collect();
        let setpriv = vec![
            "--bounding-set".to_string(),
            format!("-all,{}", bounding.join(",")),
            "--inh-caps=-all".to_string(),
        ];
        let mut daemon = Daemon::launch(dir, config_text, None, Some(setpriv));
        daemon.wait_ready();
        daemon
    }

    /// [`Daemon::start`] as `nobody` (uid and gid 65534, no groups, no capabilities),
    /// as root: a daemon that meets the permissions an ordinary user's does. `dir` and
    /// the socket's parent must be reachable by it.
    pub fn start_as_nobody(dir: &Path, config_text: &str) -> Daemon {
        let setpriv = ["--reuid=65534", "--regid=65534", "--clear-groups"];
        let setpriv = setpriv.iter().map(|a| a.to_string()).collect();
        let mut daemon = Daemon::launch(dir, config_text, None, Some(setpriv));
        daemon.wait_ready();
        daemon
    }

    fn launch(
        dir: &Path,
        config_text: &str,
        fd_limit: Option<u64>,
        setpriv: Option<Vec<String>>,
    ) -> Daemon {
        let config = dir.join("config.toml");
        // A state directory of the test's own, not root's /var/lib/cachewarden: tests
        // run in parallel, and one daemon per state directory may run (issue #29).
        let own_state;
        let config_text = if config_text.contains("state_dir") {
            config_text
        } else {
            own_state = config_text.replacen(
                "[daemon]\n",
                &format!(
                    "[daemon]\nstate_dir = \"{}\"\n",
                    dir.join("state").display()
                ),
                1,
            );
            &own_state
        };
        std::fs::write(&config, config_text).unwrap();
        let socket = PathBuf::from(
            config_text
                .lines()
                .find_map(|l| l.strip_prefix("socket = "))
                .expect("config names a socket")
                .trim_matches('"'),
        );
        let log = dir.join(format!("daemon-{}.log", now_nanos()));
        let mut command = match &setpriv {
            None => Command::new(BIN),
            Some(args) => {
                let mut c = Command::new("setpriv");
                c.args(args).args(["--", BIN]);
                c
            }
        };
        command
            .args(["--config", config.to_str().unwrap(), "daemon"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .env_remove("JOURNAL_STREAM")
            .env_remove("RUST_LOG");
        if let Some(limit) = fd_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
            unsafe {
                command.pre_exec(move || {
                    let l = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command.spawn().unwrap();
        Daemon {
            child,
            socket,
            config,
            log,
        }
    }

    pub fn wait_ready(&mut self) {
        let socket = self.socket.clone();
        wait_for("the daemon to finish its first scan", DEADLINE, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("daemon exited early ({status}): {}", self.log_text());
            }
            UnixStream::connect(&socket).ok()?;
            let status = json(&http(&socket, "GET", "/v1/status", "").1);
            let ready = status["caches"]
                .as_array()?
                .iter()
                .all(|c| c["state"] == "ready" || c["state"] == "waiting");
            ready.then_some(())
        });
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let (code, body) = http(&self.socket, "GET", path, "");
        (code, json(&body))
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let (code, body) = http(&self.socket, "POST", path, body);
        (code, json(&body))
    }

    pub fn cache_status(&self, name: &str) -> Value {
        let (code, v) = self.get(&format!("/v1/caches/{name}"));
        assert_eq!(code, 200, "{v}");
        v
    }

    /// The invariant of issue #29: a few seconds after the last change, the live index
    /// of cache `name` is what a fresh scan of the same cache finds, entry for entry
    /// (name and disk size), whatever real tools did to it meanwhile. Polls for up to
    /// [`INDEX_SETTLES`] (the watcher batches events); panics with the difference.
    pub fn assert_index_is_fresh_scan(&self, name: &str) {
        let live = || index_of(&self.socket, name);
        let fresh = || fresh_scan(&self.config, name);
        let deadline = Instant::now() + INDEX_SETTLES;
        loop {
            let (l, f) = (live(), fresh());
            if l == f {
                return;
            }
            if Instant::now() > deadline {
                let only_live: Vec<_> = l.keys().filter(|k| !f.contains_key(*k)).take(5).collect();
                let only_fresh: Vec<_> = f.keys().filter(|k| !l.contains_key(*k)).take(5).collect();
                let sized: Vec<_> = l
                    .iter()
                    .filter(|(k, v)| f.get(*k).is_some_and(|w| w != *v))
                    .take(5)
                    .collect();
                // What the daemon said about the first entry that differs, and lately.
                let log = self.log_text();
                let first = only_live
                    .iter()
                    .chain(&only_fresh)
                    .chain(sized.iter().map(|(k, _)| k))
                    .next();
                let stem = first.map(|k| k.split(['@', '-']).next().unwrap_or(k).to_string());
                let about: Vec<&str> = match &stem {
                    Some(stem) => log
                        .lines()
                        .filter(|l| l.contains(stem.as_str()))
                        .take(20)
                        .collect(),
                    None => Vec::new(),
                };
                let lately: Vec<&str> = log
                    .lines()
                    .filter(|l| !l.contains("server::connections"))
                    .rev()
                    .take(15)
                    .collect();
                panic!(
                    "cache {name}: the live index ({} entries, {} B) is not a fresh scan ({} entries, {} B) {INDEX_SETTLES:?} after the last change; only live: {only_live:?}; only fresh: {only_fresh:?}; sizes differ: {sized:?}\ndaemon log about {stem:?}:\n{}\ndaemon log, last lines:\n{}",
                    l.len(),
                    l.values().sum::<u64>(),
                    f.len(),
                    f.values().sum::<u64>(),
                    about.join("\n"),
                    lately.join("\n"),
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = wait_for("the daemon to stop", DEADLINE, || {
            self.child.try_wait().unwrap()
        });
        std::mem::forget(self);
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long the live index may lag the disk after the last change: the watcher's
/// batching and a loaded CI runner.
pub const INDEX_SETTLES: Duration = Duration::from_secs(10);

/// The daemon's index of cache `name`: entry (name and path, [`entry_key`]) -> disk bytes.
pub fn index_of(socket: &Path, name: &str) -> BTreeMap<String, u64> {
    let (code, body) = http(
        socket,
        "GET",
        &format!("/v1/caches/{name}/entries?limit=100000"),
        "",
    );
    assert_eq!(code, 200, "{body}");
    json(&body)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                entry_key(e["entry"].as_str().unwrap(), e["path"].as_str().unwrap()),
                e["disk_bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// What a fresh full scan of cache `name` of the config file `config` finds (the
/// library's own scan, no daemon): entry (as [`index_of`] names it) -> disk bytes.
pub fn fresh_scan(config: &Path, name: &str) -> BTreeMap<String, u64> {
    use cachewarden::config::{parse, ConfigSource, Env};
    let text = std::fs::read_to_string(config).unwrap();
    let config = parse(
        &text,
        ConfigSource::File(config.to_path_buf()),
        &Env::from_process(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cache = config
        .caches
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cache {name} in the config"));
    let cache = cachewarden::cache::open(cache);
    cache.scan(now());
    let entries = cache.entries(cachewarden::report::EntryOrder::Oldest, usize::MAX, now());
    entries
        .into_iter()
        .map(|e| (entry_key(&e.entry, &e.path), e.disk_bytes))
        .collect()
}

/// How [`index_of`] and [`fresh_scan`] name an indexed entry: its name and, when it
/// differs, its path. Several entries share a name (a module version's tree, zip and
/// metadata are three entries named `module@version`), so a name alone would keep one
/// of them and compare whichever the listing order put last.
fn entry_key(entry: &str, path: &str) -> String {
    match entry == path {
        true => entry.to_string(),
        false => format!("{entry} ({path})"),
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Names of the files below `dir`, sorted, relative.
pub fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Tests that switch to the `nobody` user need root (CI runs as root). Elsewhere they
/// say why they did nothing instead of failing.
pub fn running_as_root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("{test}: not run: it switches users and needs root (run scripts/test as root)");
    }
    root
}

/// `config check` of a config whose one cache of `kind` points at a plain directory
/// holding a file: checks it is refused (exit 2) and returns what it printed.
pub fn config_check_of_a_plain_dir_as(kind: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), b"x").unwrap();
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[[cache]]\nname = \"c\"\nkind = \"{kind}\"\npath = \"{}\"\n",
            tmp.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a shell script as `nobody` (`setpriv`, as root); panics if it fails.
pub fn as_nobody(script: &str) {
    let ok = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "sh",
            "-c",
            script,
        ])
        .status()
        .expect("setpriv is installed (.ci/run installs util-linux)")
        .success();
    assert!(ok, "as nobody: {script}");
}

/// Waits for `child` up to `limit`; kills it and panics if it is still running (a test
/// of something that must not hang must not hang itself).
pub fn finish_within(mut child: Child, limit: Duration, what: &str) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
