//! Hostile roots and contents (issue #16): what a local user could make the daemon do
//! by what they put in its config's reach or in the caches it manages.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::*;

fn config_check(path: &str) -> (Option<i32>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[[cache]]\nname = \"c\"\nkind = \"dir\"\npath = \"{path}\"\nmax_size = \"1 MB\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "evict", "--dry-run"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn system_directories_are_refused_as_roots_however_they_are_spelled() {
    for path in [
        "/bin",
        "/lib",
        "/sbin",
        "/lib64",
        "/usr/bin",
        "/usr/lib",
        "/var/log",
        "/etc/ssl",
        "/var/cache",
        "/mnt",
        "/usr/share/../bin",
    ] {
        if !Path::new(path).exists() {
            continue;
        }
        let (code, stderr) = config_check(path);
        assert_eq!(code, Some(2), "{path} was accepted: {stderr}");
        assert!(stderr.contains("refusing to manage"), "{path}: {stderr}");
    }
    // A symlink planted to one is refused by what it resolves to.
    let tmp = tempfile::tempdir().unwrap();
    let link = tmp.path().join("innocent-cache");
    std::os::unix::fs::symlink("/usr/lib", &link).unwrap();
    let (code, stderr) = config_check(link.to_str().unwrap());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("/usr/lib"), "{stderr}");
}

#[test]
fn a_reload_to_a_system_directory_is_rejected_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    file_aged(&cache.join("a"), 100, DAY);
    let socket = tmp.path().join("run/cw.sock");
    let daemon = Daemon::start(tmp.path(), &config_text(&socket, &[("c", &cache, "")]));
    std::fs::write(
        &daemon.config,
        config_text(
            &socket,
            &[("c", Path::new("/usr/bin"), "max_size = \"1 MB\"")],
        ),
    )
    .unwrap();
    let (code, body) = daemon.post("/v1/reload", "");
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("refusing to manage /usr/bin"),
        "{body}"
    );
    let (_, status) = daemon.get("/v1/status");
    assert_eq!(
        status["caches"][0]["path"],
        cache.canonicalize().unwrap().to_str().unwrap()
    );
    assert_eq!(daemon.stop().code(), Some(0));
}

#[test]
fn a_symlink_planted_in_a_race_is_never_watched_walked_or_counted() {
    if !running_as_root("a_symlink_planted_in_a_race_is_never_watched_walked_or_counted") {
        return;
    }
    let tmp = open_tempdir();
    // Something big outside the cache that a symlink could make look like part of it.
    let outside = tmp.path().join("outside");
    for i in 0..200 {
        file_aged(&outside.join(format!("big{i}")), 50_000, DAY);
    }
    let cache = tmp.path().join("cache");
    for i in 0..20 {
        file_aged(&cache.join(format!("entry{i}")), 50_000, 2 * DAY);
    }
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = tmp.path().join("run/cw.sock");
    let daemon = Daemon::start(
        tmp.path(),
        &config_text(&socket, &[("c", &cache, "max_size = \"5 MB\"")]),
    );
    // Another user who may write to the cache swaps new directories for symlinks while
    // the daemon handles their creation events.
    as_nobody(&format!(
        "cd {} && i=0; while [ $i -lt 1500 ]; do mkdir x$i && rmdir x$i && ln -s {} x$i; i=$((i+1)); done",
        cache.display(),
        outside.display()
    ));
    // Events are handled in order: once this file is seen, so were the attack's.
    std::fs::write(cache.join("marker"), b"m").unwrap();
    let status = wait_for("the marker in status", DEADLINE, || {
        let s = daemon.cache_status("c");
        (s["entries"] == 21).then_some(s)
    });
    assert!(
        status["disk_bytes"].as_u64().unwrap() < 5_000_000,
        "{status}"
    );
    let (_, evicted) = daemon.post("/v1/caches/c/evict", "");
    assert_eq!(evicted["removed_entries"], 0, "{evicted}");
    for i in 0..20 {
        assert!(
            cache.join(format!("entry{i}")).exists(),
            "entry{i} was evicted"
        );
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 200);
    // A full scan does not follow them either.
    let out = Command::new(BIN)
        .args([
            "--config",
            daemon.config.to_str().unwrap(),
            "scan",
            "--json",
        ])
        .output()
        .unwrap();
    let scanned = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(scanned[0]["entries"], 21, "{scanned}");
    assert_eq!(daemon.stop().code(), Some(0));
}

#[test]
fn fifos_in_place_of_entries_or_the_config_never_block() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    for i in 0..5 {
        file_aged(&cache.join(format!("f{i}")), 1000, DAY);
    }
    let socket = tmp.path().join("run/cw.sock");
    let daemon = Daemon::start(tmp.path(), &config_text(&socket, &[("c", &cache, "")]));
    // Indexed files swapped for FIFOs behind the daemon's back (no event for the
    // swap is needed: the sweep opens what the index names).
    for i in [1, 3] {
        let f = cache.join(format!("f{i}"));
        std::fs::remove_file(&f).unwrap();
        nix::unistd::mkfifo(&f, nix::sys::stat::Mode::S_IRWXU).unwrap();
    }
    let (code, report) = daemon.post("/v1/caches/c/verify", "");
    assert_eq!(code, 200, "{report}");
    let problems: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["problem"].as_str())
        .collect();
    assert!(
        problems.iter().all(|p| *p == "not-a-regular-file"),
        "{report}"
    );
    let (code, _) = daemon.post("/v1/caches/c/evict?dry_run=true", "");
    assert_eq!(code, 200, "enforcement is not queued behind a stuck sweep");
    assert_eq!(daemon.stop().code(), Some(0));

    // A FIFO named as the config file is an error at once.
    let fifo = tmp.path().join("config-fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let child = Command::new(BIN)
        .args(["config", "check", fifo.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish_within(child, DEADLINE, "config check of a FIFO");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
}

/// `chattr +i` on files, undone when dropped (else the temp dir cannot be removed).
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    fn set(paths: Vec<std::path::PathBuf>) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .args(&paths)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Immutable(paths))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

#[test]
fn removals_that_fail_are_errors_and_the_size_shown_is_what_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    for i in 0..4 {
        file_aged(&cache.join(format!("f{i}")), 5000, 2 * DAY);
    }
    let Some(_pinned) = Immutable::set(vec![cache.join("f1"), cache.join("f2")]) else {
        eprintln!("removals_that_fail...: not run: chattr +i is not possible here (needs root and a file system with attributes)");
        return;
    };
    let socket = tmp.path().join("run/cw.sock");
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        config_text(&socket, &[("c", &cache, "max_size = \"1 B\"")]),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "evict", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a limit is still unmet");
    let report = json(&String::from_utf8_lossy(&out.stdout));
    let report = &report[0];
    assert_eq!(report["failed"].as_array().unwrap().len(), 2, "{report}");
    assert!(!report["unmet"].as_array().unwrap().is_empty(), "{report}");
    let left = report["bytes_after"].as_u64().unwrap();
    assert!(left >= 2 * 5000, "the size shown is what is left: {report}");
    assert!(cache.join("f1").exists() && cache.join("f2").exists());
    let text = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "evict"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("failed to remove f1"), "{text}");

    // The daemon counts them as errors, in status and in metrics.
    let daemon = Daemon::start(tmp.path(), &std::fs::read_to_string(&config).unwrap());
    let status = wait_for("the failed removals counted", DEADLINE, || {
        let s = daemon.cache_status("c");
        (s["errors_total"].as_u64().unwrap() >= 2).then_some(s)
    });
    assert!(
        status["errors"].to_string().contains("cannot remove"),
        "{status}"
    );
    assert!(
        status["disk_bytes"].as_u64().unwrap() >= 2 * 5000,
        "{status}"
    );
    let (_, metrics) = http(&socket, "GET", "/metrics", "");
    let errors_total: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cachewarden_errors_total{cache=\"c\",kind=\"dir\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no errors_total for c in {metrics}"));
    assert!(errors_total >= 2.0, "{metrics}");
    let log = daemon.log_text();
    assert!(
        log.contains("cannot remove"),
        "the failures are logged:\n{log}"
    );
    assert_eq!(daemon.stop().code(), Some(0));
}

#[test]
fn names_round_trip_exactly_and_never_reach_the_terminal_raw() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let name = |bytes: &[u8]| cache.join(std::ffi::OsStr::from_bytes(bytes));
    for bytes in [
        &b"\xff-nonutf8"[..],
        b"\xfe-nonutf8",
        b"esc\x1b[31mred\nline",
    ] {
        file_aged(&name(bytes), 1000, 2 * DAY);
    }
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        config_text(&tmp.path().join("s.sock"), &[("c", &cache, "")]),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["--config", config.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // Text: no raw escape or newline from a name.
    let (_, text) = run(&[
        "evict",
        "--dry-run",
        "--cache",
        "c",
        "--entry",
        "esc\\x1b[31mred\\x0aline",
    ]);
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("esc\\x1b[31mred\\x0aline"), "{text}");
    // JSON names map back to the bytes: the two non-UTF-8 names stay two.
    let (_, listed) = run(&[
        "evict",
        "--dry-run",
        "--json",
        "--cache",
        "c",
        "--entry",
        "\\xff-nonutf8",
    ]);
    let listed = json(&listed);
    assert_eq!(
        listed[0]["evicted"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    assert_eq!(listed[0]["evicted"][0]["entry"], "\\xff-nonutf8");
    let (code, _) = run(&["evict", "--cache", "c", "--entry", "\\xff-nonutf8"]);
    assert_eq!(code, Some(0));
    assert!(!name(b"\xff-nonutf8").exists());
    assert!(name(b"\xfe-nonutf8").exists(), "only the named one went");
}

#[test]
fn files_below_paths_longer_than_path_max_are_counted_and_evicted() {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    // 40 levels of 120-byte names: a path of about 4,900 bytes, built fd-relative.
    let component = "d".repeat(120);
    let mut dir =
        nix::fcntl::open(&cache, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty()).unwrap();
    for _ in 0..40 {
        nix::sys::stat::mkdirat(&dir, component.as_str(), Mode::S_IRWXU).unwrap();
        dir = openat(
            &dir,
            component.as_str(),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .unwrap();
    }
    let fd = openat(
        &dir,
        "deep-file",
        OFlag::O_CREAT | OFlag::O_WRONLY,
        Mode::S_IRWXU,
    )
    .unwrap();
    nix::unistd::write(&fd, &[7u8; 10_000]).unwrap();
    let old = nix::sys::time::TimeSpec::new(super::common::now() - 2 * 86400, 0);
    nix::sys::stat::futimens(&fd, &old, &old).unwrap();
    drop(fd);
    file_aged(&cache.join("shallow"), 100, 2 * DAY);
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        config_text(
            &tmp.path().join("s.sock"),
            &[("c", &cache, "max_size = \"1 B\"")],
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "evict", "--json"])
        .output()
        .unwrap();
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(report[0]["removed_entries"], 2, "{report}");
    assert!(
        report[0]["freed_bytes"].as_u64().unwrap() >= 10_000,
        "{report}"
    );
    assert_eq!(out.status.code(), Some(0));
    let fd_gone = openat(&dir, "deep-file", OFlag::O_RDONLY, Mode::empty());
    assert!(fd_gone.is_err(), "the deep file was removed");
}

#[test]
fn a_wide_tree_is_walked_with_few_descriptors() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    for i in 0..3000 {
        file_aged(&cache.join(format!("d{i}/f")), 10, DAY);
    }
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        config_text(&tmp.path().join("s.sock"), &[("c", &cache, "")]),
    )
    .unwrap();
    let mut command = Command::new(BIN);
    command.args(["--config", config.to_str().unwrap(), "scan", "--json"]);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        command.pre_exec(|| {
            let l = libc::rlimit {
                rlim_cur: 128,
                rlim_max: 128,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
            Ok(())
        });
    }
    let out = command.output().unwrap();
    let scanned = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(scanned[0]["entries"], 3000, "{scanned}");
    assert_eq!(scanned[0]["last_scan"]["errors"], 0, "{scanned}");
}
