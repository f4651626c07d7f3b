//! File-system faults and hostile contents beyond single symlinks (issue #12): a full
//! and a read-only file system under a running daemon; names no tool expects, deep
//! nesting, hard links out of the cache, and a directory swapped for a symlink in a
//! loop while an eviction of many files runs. Need root (mount, many files); they say
//! so and do nothing otherwise.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::common::*;

/// A small tmpfs, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(at.to_path_buf()))
    }

    fn remount(&self, mode: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {mode} {}", self.0.display());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_or_read_only_file_system_is_an_error_counted_retried_and_survived() {
    if !running_as_root("a_full_or_read_only_file_system...") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(fs) = Mount::tmpfs(&tmp.path().join("fs"), "4m") else {
        eprintln!("a_full_or_read_only_file_system...: not run: cannot mount a tmpfs here");
        return;
    };
    let cache = fs.0.join("cache");
    for i in 0..40 {
        file_aged(&cache.join(format!("f{i:02}")), 10_000, 2 * DAY);
    }
    // The daemon's own state (audit trail) on the same file system, then filled up.
    let state = fs.0.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let mut filler = std::fs::File::create(fs.0.join("filler")).unwrap();
    while std::io::Write::write_all(&mut filler, &[0u8; 65536]).is_ok() {}
    drop(filler);
    let socket = tmp.path().join("run/cw.sock");
    let config =
        |extra: &str| with_state_dir(&config_text(&socket, &[("c", &cache, extra)]), &state);
    let daemon = Daemon::start(tmp.path(), &config(""));

    // Full: removals need no space; the audit line written after each may fail.
    let (code, report) = daemon.post("/v1/caches/c/evict?entry=f00", "");
    assert_eq!(code, 200, "{report}");
    assert!(!cache.join("f00").exists());
    std::fs::remove_file(fs.0.join("filler")).unwrap();

    // Read-only: every removal fails, is reported and counted; nothing is lost; the
    // daemon keeps answering, and once writable again the same request succeeds.
    fs.remount("ro");
    std::fs::write(&daemon.config, config("max_size = \"100 KiB\"")).unwrap();
    let (code, reloaded) = daemon.post("/v1/reload", "");
    assert_eq!(code, 200, "{reloaded}");
    let (code, report) = daemon.post("/v1/caches/c/evict", "");
    assert_eq!(code, 200, "{report}");
    let failed = report["failed"].as_array().unwrap();
    assert!(!failed.is_empty(), "{report}");
    assert!(
        report["failed"].to_string().contains("Read-only"),
        "{report}"
    );
    assert!(!report["unmet"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(files(&cache).len(), 39, "nothing was removed");
    let status = wait_for("the failures counted", DEADLINE, || {
        let s = daemon.cache_status("c");
        (s["errors_total"].as_u64().unwrap() > 0).then_some(s)
    });
    assert_eq!(status["entries"], 39, "{status}");
    let log = daemon.log_text();
    assert!(log.contains("Read-only"), "the failures are logged:\n{log}");
    fs.remount("rw");
    let (code, report) = daemon.post("/v1/caches/c/evict", "");
    assert_eq!(code, 200, "{report}");
    assert!(report["failed"].as_array().unwrap().is_empty(), "{report}");
    let left = daemon.cache_status("c")["disk_bytes"].as_u64().unwrap();
    assert!(left <= 100 * 1024, "within max_size once writable: {left}");
    assert_eq!(daemon.stop().code(), Some(0));
}

/// The names and shapes of a hostile cache: every one counted and evicted without
/// touching anything outside the root.
#[test]
fn hostile_names_links_and_a_racing_symlink_swap_never_lead_outside() {
    if !running_as_root("hostile_names_links_and_a_racing_symlink_swap...") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    let mut precious = Vec::new();
    // Named as the files below the cache's "sub" are: a removal that followed the
    // symlink swapped in for "sub" would find its name here.
    for i in 0..3000 {
        let p = outside.join("dir").join(format!("f{i:05}"));
        std::fs::write(&p, format!("outside file {i}")).unwrap();
        precious.push(p);
    }
    let linked = outside.join("linked");
    std::fs::write(&linked, b"hard-linked into the cache").unwrap();
    let long_ago = filetime::FileTime::from_unix_time(now() - 3 * 86400, 0);
    filetime::set_file_times(&linked, long_ago, long_ago).unwrap();
    precious.push(linked.clone());

    let old = 2 * DAY;
    use std::ffi::OsStr;
    let names: Vec<Vec<u8>> = vec![
        b"new\nline".to_vec(),
        b"\xff\xfe-not-utf8".to_vec(),
        b"-rf".to_vec(),
        b"--help".to_vec(),
        vec![b'n'; 255],
        b" spaces ".to_vec(),
    ];
    for n in &names {
        file_aged(&cache.join(OsStr::from_bytes(n)), 100, old);
    }
    // 200 levels of nesting.
    let mut deep = cache.join("deep");
    for _ in 0..200 {
        deep = deep.join("d");
    }
    file_aged(&deep.join("bottom"), 100, old);
    // Hard links to a file outside: unlinked, the original untouched.
    std::fs::hard_link(&linked, cache.join("hardlink")).unwrap();
    // Many files below "sub", which a racer swaps for a symlink to the outside.
    for i in 0..3000 {
        file_aged(&cache.join("sub").join(format!("f{i:05}")), 10, old);
    }
    let contents_and_modes = || -> Vec<_> {
        precious
            .iter()
            .map(|p| {
                (
                    std::fs::read(p).unwrap(),
                    std::fs::metadata(p).unwrap().permissions(),
                )
            })
            .collect()
    };
    let before = contents_and_modes();
    // (Reading them made the hard-linked file's atime now: its last use again.)
    filetime::set_file_times(&linked, long_ago, long_ago).unwrap();

    let socket = tmp.path().join("run/cw.sock");
    let daemon = Daemon::start(tmp.path(), &config_text(&socket, &[("c", &cache, "")]));
    let listed = daemon.get("/v1/caches/c/entries?limit=100000").1;
    let total = listed.as_array().unwrap().len();
    assert!(total >= names.len() + 3002, "every file indexed: {total}");

    // The racer: sub -> sub.real, symlink sub -> outside/dir, and back, in a loop,
    // while the whole cache is evicted.
    let stop = AtomicBool::new(false);
    let swaps = AtomicU64::new(0);
    let report = std::thread::scope(|s| {
        s.spawn(|| {
            let (sub, real) = (cache.join("sub"), cache.join("sub.real"));
            while !stop.load(Ordering::Relaxed) {
                if std::fs::rename(&sub, &real).is_ok() {
                    let _ = std::os::unix::fs::symlink(outside.join("dir"), &sub);
                    std::thread::yield_now();
                    let _ = std::fs::remove_file(&sub);
                    let _ = std::fs::rename(&real, &sub);
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        while swaps.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now(); // the race is on before the eviction starts
        }
        std::fs::write(
            &daemon.config,
            config_text(&socket, &[("c", &cache, "max_size = \"1 B\"")]),
        )
        .unwrap();
        let (code, _) = daemon.post("/v1/reload", "");
        assert_eq!(code, 200);
        let (code, report) = daemon.post("/v1/caches/c/evict", "");
        stop.store(true, Ordering::Relaxed);
        assert_eq!(code, 200, "{report}");
        report
    });
    println!(
        "{} symlink swaps raced the eviction; {} removed, {} failed",
        swaps.load(Ordering::Relaxed),
        report["removed_entries"],
        report["failed"].as_array().map_or(0, Vec::len)
    );
    // Nothing outside was removed, changed or chmodded; the hard-linked original is
    // whole; every answer was valid JSON (the helpers parse it).
    let after = contents_and_modes();
    assert_eq!(before, after, "files outside the cache changed");
    assert_eq!(std::fs::metadata(&linked).unwrap().len(), 26);
    // What the race did not hold back is gone: the odd names, the deep file, the link.
    for n in &names {
        assert!(
            !cache.join(OsStr::from_bytes(n)).exists(),
            "{:?} left",
            String::from_utf8_lossy(n)
        );
    }
    assert!(!deep.join("bottom").exists());
    assert!(!cache.join("hardlink").exists(), "{report}");
    let (code, audit) = daemon.get("/v1/audit?limit=100000");
    assert_eq!(code, 200);
    println!(
        "{} removals in the audit trail",
        audit.as_array().map_or(0, Vec::len)
    );
    assert_eq!(daemon.stop().code(), Some(0));
}

/// A daemon that is not root (a developer's own, or a unit with `User=`) meets what it
/// may not remove or even list (`EACCES`): a directory of root's among its files, and
/// one closed to it. Each failure is named and counted in status errors, the daemon
/// keeps serving, nothing else is lost, and once allowed it finishes the job by itself.
#[test]
fn eacces_for_a_non_root_daemon_is_an_error_counted_retried_and_survived() {
    if !running_as_root("eacces_for_a_non_root_daemon...") {
        return;
    }
    let tmp = open_tempdir();
    let home = tmp.path().join("home");
    let cache = home.join("cache");
    for i in 0..10 {
        file_aged(&cache.join(format!("own{i}")), 1000, DAY);
    }
    for i in 0..5 {
        file_aged(&cache.join("roots").join(format!("r{i}")), 1000, 3 * DAY);
    }
    file_aged(&cache.join("closed/hidden"), 1000, 3 * DAY);
    let chown = |owner: &str, path: &Path| {
        let ok = Command::new("chown").args(["-R", owner]).arg(path).status();
        assert!(ok.unwrap().success(), "chown {owner} {}", path.display());
    };
    chown("65534:65534", &home);
    chown("0:0", &cache.join("roots"));
    chown("0:0", &cache.join("closed"));
    std::fs::set_permissions(
        cache.join("closed"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let config = config_text(
        &home.join("run/cw.sock"),
        &[("c", &cache, "max_size = \"1 B\"\nmin_age = \"1h\"")],
    );
    let config = with_state_dir(&config, &home.join("state"));
    let daemon = Daemon::start_as_nobody(&home, &config);

    // Its own files go; root's stay, each removal failing with the OS's reason; the
    // directory it cannot list is an error too, not a crash and not a loss.
    let status = wait_for("its own files evicted, root's failing", DEADLINE, || {
        let s = daemon.cache_status("c");
        (s["entries"] == 5 && s["errors_total"].as_u64().unwrap() >= 5).then_some(s)
    });
    let errors = status["errors"].to_string();
    assert!(errors.contains("Permission denied"), "{status}");
    assert!(errors.contains("roots/r0"), "{status}");
    assert!(
        errors.contains("closed"),
        "the unlistable directory is named: {status}"
    );
    // And each is in the log, named.
    let log = daemon.log_text();
    for needle in ["Permission denied", "roots/r0", "closed"] {
        assert!(log.contains(needle), "{needle:?} not logged:\n{log}");
    }
    assert_eq!(files(&cache.join("roots")).len(), 5, "root's files stay");
    assert!(cache.join("closed/hidden").exists());
    assert!((0..10).all(|i| !cache.join(format!("own{i}")).exists()));
    let (code, report) = daemon.post("/v1/caches/c/evict", "");
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["failed"].as_array().unwrap().len(), 5, "{report}");
    assert!(
        report["failed"].to_string().contains("Permission denied"),
        "{report}"
    );
    assert!(!report["unmet"].as_array().unwrap().is_empty(), "{report}");

    // Allowed now: the daemon finishes by itself (the permission changes are events).
    chown("65534:65534", &cache.join("roots"));
    chown("65534:65534", &cache.join("closed"));
    wait_for(
        "root's former files and the hidden one evicted",
        DEADLINE,
        || {
            let gone = files(&cache).is_empty();
            let s = daemon.cache_status("c");
            (gone && s["entries"] == 0).then_some(())
        },
    );
    assert_eq!(daemon.stop().code(), Some(0));
}

/// A million junk files in a GOCACHE — names go never writes (wrong suffixes, words,
/// newlines, invalid UTF-8), in every shard and at the root, and a symlink out dressed
/// as an output — beside ten real entries: the junk is counted as ignored and never
/// removed, the symlink never followed, the real entries evicted; the daemon's memory
/// stays that of its entries (junk is counted, not kept) and every answer stays valid.
/// `JUNK_FILES` sets the count (default a million).
#[test]
fn a_million_junk_files_are_counted_ignored_and_never_touched() {
    use sha2::{Digest, Sha256};
    let junk: usize = std::env::var("JUNK_FILES").map_or(1_000_000, |v| v.parse().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("gocache");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let precious = outside.join("precious");
    std::fs::write(&precious, b"not the cache's").unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(
        cache.join("README"),
        "This directory holds cached build artifacts from the Go build system.\n",
    )
    .unwrap();
    for shard in 0..256 {
        std::fs::create_dir(cache.join(format!("{shard:02x}"))).unwrap();
    }
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    // Ten real entries, three days old, the way go's `put` writes them.
    let put_time = now() - 3 * 86400;
    for seed in 0..10u8 {
        let content = vec![seed; 3000];
        let output: [u8; 32] = Sha256::digest(&content).into();
        let action: [u8; 32] = Sha256::digest([seed, 0xac]).into();
        let d = cache.join(format!("{:02x}/{}-d", output[0], hex(&output)));
        std::fs::write(&d, &content).unwrap();
        let line = format!(
            "v1 {} {} {:20} {:20}\n",
            hex(&action),
            hex(&output),
            content.len(),
            put_time * 1_000_000_000
        );
        assert_eq!(line.len(), 175);
        let a = cache.join(format!("{:02x}/{}-a", action[0], hex(&action)));
        std::fs::write(&a, line).unwrap();
        for p in [&d, &a] {
            let t = filetime::FileTime::from_unix_time(put_time, 0);
            filetime::set_file_times(p, t, t).unwrap();
        }
    }
    let dressed = cache.join(format!("00/{}-d", "00".repeat(32)));
    std::os::unix::fs::symlink(&precious, &dressed).unwrap();
    let names = |i: usize| -> Vec<u8> {
        match i % 4 {
            0 => format!("{i:064x}-x").into_bytes(),
            1 => format!("junk-{i}").into_bytes(),
            2 => format!("line\n{i}").into_bytes(),
            _ => [b"\xff\xfe".as_slice(), i.to_string().as_bytes()].concat(),
        }
    };
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for t in 0..4 {
            let cache = &cache;
            s.spawn(move || {
                for i in (t..junk).step_by(4) {
                    let dir = match i % 257 {
                        256 => cache.clone(),
                        shard => cache.join(format!("{shard:02x}")),
                    };
                    let name = std::ffi::OsStr::from_bytes(&names(i)).to_owned();
                    std::fs::File::create(dir.join(name)).unwrap();
                }
            });
        }
    });
    eprintln!("{junk} junk files made in {:.1?}", started.elapsed());
    let expected_files = junk + 10 * 2 + 1; // junk, real pairs, README

    let socket = tmp.path().join("run/cw.sock");
    let config = config_text(&socket, &[]).replace("log_level = \"debug\"", "log_level = \"info\"")
        + &format!(
            "\n[[cache]]\nname = \"gb\"\nkind = \"go-build\"\npath = \"{}\"\nmax_size = \"1 B\"\n",
            cache.display()
        );
    let daemon = Daemon::start(tmp.path(), &config);
    let status = wait_for("the real entries evicted", 2 * DEADLINE, || {
        let s = daemon.cache_status("gb");
        (s["entries"] == 0 && s["evicted_entries_total"] == 10).then_some(s)
    });
    // The root's own files (README, trim.txt, …) are go's business, not counted.
    let in_shards = (0..junk).filter(|i| i % 257 != 256).count() as u64;
    let ignored = status["last_scan"]["ignored_files"].as_u64().unwrap();
    assert!(
        ignored >= in_shards,
        "every junk file in a shard counted: {status}"
    );
    let (code, listing) = daemon.get("/v1/caches/gb/entries");
    assert_eq!(code, 200, "{listing}");
    let (code, metrics) = http(&daemon.socket, "GET", "/metrics", "");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("cachewarden_cache_entries{cache=\"gb\""),
        "{metrics}"
    );
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!(
        "daemon RSS with {junk} junk files: {} MiB; {status}",
        rss_kib / 1024
    );
    assert!(
        rss_kib < 256 * 1024,
        "junk is counted, not kept: {rss_kib} KiB resident"
    );
    let left = walkdir::WalkDir::new(&cache)
        .into_iter()
        .filter(|e| e.as_ref().unwrap().file_type().is_file())
        .count();
    assert_eq!(left + 20, expected_files, "only the real entries went");
    assert!(std::fs::symlink_metadata(&dressed)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&precious).unwrap(), b"not the cache's");
    assert_eq!(daemon.stop().code(), Some(0));
}
