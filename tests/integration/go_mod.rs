//! The go-mod kind against Debian's real Go toolchain and a real GOMODCACHE, filled from a
//! `file://` proxy (`goproxy.rs`) with two versions of each module.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::goproxy::{self, escape, VERSIONS};

pub const ERRORS: &str = "github.com/pkg/errors";
pub const UUID: &str = "github.com/google/uuid";
pub const TOML: &str = "github.com/BurntSushi/toml";
pub const TEXT: &str = "golang.org/x/text";
const MODULES: [&str; 4] = [ERRORS, UUID, TOML, TEXT];

/// An app that imports one package of each module, and the environment that points go
/// at this test's own caches and the file:// proxy.
pub struct ModWorld {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub modcache: PathBuf,
    /// One build cache for the go-mod tests (compiling is not what they test), or the
    /// world's own (`with_own_build_cache`) where the build cache is under test too.
    pub gocache: PathBuf,
    pub app: PathBuf,
    /// A second module directory for `go mod download`, so it never races the app's go.sum.
    pub dl: PathBuf,
    /// The go command: [`go_binary`], or one of the matrix (`go_versions.rs`).
    pub go: PathBuf,
}

impl ModWorld {
    /// [`ModWorld::new`] with a build cache of its own, below its root.
    pub fn with_own_build_cache() -> ModWorld {
        let mut world = ModWorld::new();
        world.gocache = world.root.join("gocache");
        std::fs::create_dir_all(&world.gocache).unwrap();
        world
    }

    pub fn new() -> ModWorld {
        let proxy = goproxy::proxy();
        for m in MODULES {
            assert!(
                proxy.has(m),
                "{m} is not under {}: apt-get install the golang-*-dev package",
                goproxy::SOURCES
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let app = root.join("app");
        let dl = root.join("dl");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::create_dir_all(&dl).unwrap();
        let requires: String = MODULES.iter().map(|m| format!("\t{m} v1.1.0\n")).collect();
        std::fs::write(
            app.join("go.mod"),
            format!("module example.com/app\n\ngo 1.19\n\nrequire (\n{requires})\n"),
        )
        .unwrap();
        std::fs::write(
            app.join("main.go"),
            r#"package main

import (
	"fmt"

	"github.com/BurntSushi/toml"
	"github.com/google/uuid"
	"github.com/pkg/errors"
	"golang.org/x/text/width"
)

func main() {
	var v struct{ A int }
	_, err := toml.Decode("A = 1", &v)
	fmt.Println(v.A, err, uuid.NewSHA1(uuid.NameSpaceDNS, []byte("x")), errors.New("e"), width.Narrow.String("a"))
}
"#,
        )
        .unwrap();
        std::fs::write(dl.join("go.mod"), "module example.com/dl\n\ngo 1.19\n").unwrap();
        // Created up front: go_procs counts a go process whose GOMODCACHE does not exist
        // yet as using every module cache, which would hold back the other tests.
        let modcache = root.join("gopath/pkg/mod");
        std::fs::create_dir_all(&modcache).unwrap();
        ModWorld {
            modcache,
            gocache: Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-mod-tests-gocache"),
            _tmp: tmp,
            root,
            app,
            dl,
            go: go_binary(),
        }
    }

    pub fn go_in(&self, dir: &Path, args: &[&str]) -> Output {
        Command::new(&self.go)
            .args(args)
            .current_dir(dir)
            // The go that was asked for, never a toolchain switch (no network here).
            .env("GOTOOLCHAIN", "local")
            .env("HOME", &self.root)
            .env("GOPATH", self.root.join("gopath"))
            .env("GOMODCACHE", &self.modcache)
            .env("GOCACHE", &self.gocache)
            .env("GOPROXY", goproxy::proxy().url())
            .env("GOSUMDB", "off")
            .env("GOFLAGS", "-mod=mod")
            .env("CGO_ENABLED", "0")
            .env_remove("GOOS")
            .env_remove("GOARCH")
            .env_remove("GOPRIVATE")
            .env_remove("GONOPROXY")
            .output()
            .expect("go is installed (scripts/test installs golang-go)")
    }

    pub fn go_ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.go_in(dir, args);
        assert!(
            out.status.success(),
            "go {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every version of every module: downloaded and extracted.
    pub fn download_all(&self) -> Output {
        let all: Vec<(&str, &str)> = MODULES
            .iter()
            .flat_map(|m| VERSIONS.map(|v| (*m, v)))
            .collect();
        self.download(&all)
    }

    pub fn download(&self, versions: &[(&str, &str)]) -> Output {
        let mut args = vec!["mod".to_string(), "download".to_string()];
        args.extend(versions.iter().map(|(m, v)| format!("{m}@{v}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.go_in(&self.dl, &args)
    }

    pub fn download_all_ok(&self) {
        let out = self.download_all();
        assert!(
            out.status.success(),
            "go mod download failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn build(&self) -> Output {
        self.go_in(&self.app, &["build", "-o", "/dev/null", "."])
    }

    pub fn build_ok(&self) {
        let out = self.build();
        assert!(
            out.status.success(),
            "go build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn verify_ok(&self) {
        let out = self.go_ok(&self.app, &["mod", "verify"]);
        assert!(out.contains("all modules verified"), "{out}");
    }

    /// Sets every module-cache file's atime and mtime back by `age`, as if last used then.
    pub fn age(&self, age: Duration) {
        age_files(&self.modcache, age);
    }

    pub fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            "[daemon]\nsocket = \"{}/run/cw.sock\"\nlog_level = \"debug\"\n\n[[cache]]\nname = \"gm\"\nkind = \"go-mod\"\npath = \"{}\"\n{extra}\n",
            self.root.display(),
            self.modcache.display()
        );
        let path = self.root.join("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn vdir(&self, module: &str) -> PathBuf {
        self.modcache
            .join("cache/download")
            .join(escape(module))
            .join("@v")
    }

    pub fn tree(&self, module: &str, version: &str) -> PathBuf {
        self.modcache.join(format!("{}@{version}", escape(module)))
    }

    /// Makes a read-only file (or its directory) of an extracted tree writable.
    pub fn writable(&self, path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let dir = path.parent().unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

impl Drop for ModWorld {
    /// Go leaves extracted trees read-only: make them writable so the temp dir can go
    /// (as `go clean -modcache` does), also when the tests do not run as root.
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        for e in walkdir::WalkDir::new(&self.root)
            .into_iter()
            .filter_map(Result::ok)
        {
            if e.file_type().is_dir() {
                let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o755));
            }
        }
    }
}

pub fn cachewarden(config: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), value)
}

/// (entry, path, problem) of every problem in a verify report.
pub fn problems(report: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["entry"].as_str().unwrap().to_string(),
                p["path"].as_str().unwrap().to_string(),
                p["problem"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn tree_path(module: &str, v: &str) -> String {
    format!("{}@{v}", escape(module))
}

fn zip_path(module: &str, v: &str) -> String {
    format!("cache/download/{}/@v/{v}.zip", escape(module))
}

fn mod_path(module: &str, v: &str) -> String {
    format!("cache/download/{}/@v/{v}.mod", escape(module))
}

fn want(module: &str, v: &str, path: String, problem: &str) -> (String, String, String) {
    (format!("{module}@{v}"), path, problem.to_string())
}

#[test]
fn verify_flags_exactly_the_damaged_versions_and_repair_lets_go_recover() {
    let world = ModWorld::new();
    world.download_all_ok();
    world.build_ok();
    world.age(10 * DAY);
    let config = world.config("min_age = \"1h\"");

    let (code, healthy) = cachewarden(&config, &["verify", "--json"]);
    assert_eq!(code, 0, "{healthy}");
    assert!(problems(&healthy).is_empty(), "{healthy}");
    // Our h1: hashes of every real zip and tree equal the .ziphash go wrote.
    assert_eq!(healthy["caches"][0]["checked"], 4 * 2 * 3, "{healthy}");

    let (v0, v1) = (VERSIONS[0], VERSIONS[1]);
    // zip-corrupt: a truncated zip (go: "zip: not a valid zip file", no re-download).
    let zip = world.vdir(ERRORS).join(format!("{v0}.zip"));
    let bytes = std::fs::read(&zip).unwrap();
    std::fs::write(&zip, &bytes[..bytes.len() / 2]).unwrap();
    // zip-hash-mismatch: a valid zip with other content.
    let zip = world.vdir(UUID).join(format!("{v0}.zip"));
    std::fs::copy(world.vdir(UUID).join(format!("{v1}.zip")), &zip).unwrap();
    // tree-hash-mismatch: an edited file, and an extra file.
    let edited = world.tree(TOML, v0).join("decode.go");
    world.writable(&edited);
    std::fs::write(&edited, b"package toml // edited\n").unwrap();
    let extra = world.tree(TEXT, v0).join("width/stray.go");
    world.writable(&extra);
    std::fs::write(&extra, b"package width\n").unwrap();
    // ziphash-missing, ziphash-malformed (both leave the tree unverifiable too).
    std::fs::remove_file(world.vdir(ERRORS).join(format!("{v1}.ziphash"))).unwrap();
    std::fs::write(world.vdir(UUID).join(format!("{v1}.ziphash")), [0u8; 47]).unwrap();
    // partial: a marker left by a killed extraction.
    std::fs::write(world.vdir(TOML).join(format!("{v1}.partial")), b"").unwrap();
    // stale-temp: a download temp file (aged below).
    std::fs::write(world.vdir(TEXT).join(format!("{v1}.zip4242.tmp")), b"half").unwrap();
    // info-garbled, mod-garbled.
    std::fs::write(world.vdir(TEXT).join(format!("{v0}.info")), b"{\"Vers").unwrap();
    std::fs::write(world.vdir(TOML).join(format!("{v0}.mod")), b"").unwrap();
    world.age(10 * DAY);

    let (code, found) = cachewarden(&config, &["verify", "--json"]);
    assert_eq!(code, 1, "{found}");
    let expected: BTreeSet<_> = [
        want(ERRORS, v0, zip_path(ERRORS, v0), "zip-corrupt"),
        want(UUID, v0, zip_path(UUID, v0), "zip-hash-mismatch"),
        want(TOML, v0, tree_path(TOML, v0), "tree-hash-mismatch"),
        want(TOML, v0, mod_path(TOML, v0), "mod-garbled"),
        want(TEXT, v0, tree_path(TEXT, v0), "tree-hash-mismatch"),
        want(TEXT, v0, mod_path(TEXT, v0), "info-garbled"),
        want(ERRORS, v1, zip_path(ERRORS, v1), "ziphash-missing"),
        want(ERRORS, v1, tree_path(ERRORS, v1), "ziphash-missing"),
        want(UUID, v1, zip_path(UUID, v1), "ziphash-malformed"),
        want(UUID, v1, tree_path(UUID, v1), "ziphash-malformed"),
        want(TOML, v1, tree_path(TOML, v1), "partial"),
        want(TEXT, v1, zip_path(TEXT, v1), "stale-temp"),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        problems(&found),
        expected,
        "exactly the damaged versions: {found}"
    );

    let (code, repaired) = cachewarden(&config, &["verify", "--repair", "--json"]);
    assert_eq!(code, 0, "{repaired}");
    assert!(
        repaired["problems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["repaired"] == true),
        "{repaired}"
    );
    // One repair converges: a second sweep finds nothing (issue #24).
    let (code, again) = cachewarden(&config, &["verify", "--json"]);
    assert_eq!(code, 0, "{again}");
    assert!(problems(&again).is_empty(), "{again}");
    // What was broken is gone, with the tree of a broken zip (go re-extracts a tree
    // whose .ziphash is gone anyway); what was sound stays, the locks stay.
    assert!(!world.vdir(ERRORS).join(format!("{v0}.zip")).exists());
    assert!(!world.vdir(ERRORS).join(format!("{v0}.ziphash")).exists());
    assert!(!world.tree(ERRORS, v0).exists());
    assert!(
        world.tree(TEXT, v1).join("width").is_dir(),
        "a sound tree stays (only its stale temp file went)"
    );
    assert!(!world.tree(TOML, v0).exists());
    assert!(
        world.vdir(TOML).join(format!("{v0}.zip")).exists(),
        "go re-extracts offline"
    );
    assert!(!world.vdir(TOML).join(format!("{v1}.partial")).exists());
    assert!(world.vdir(TOML).join(format!("{v0}.lock")).exists());
    assert_eq!(
        std::fs::read_to_string(world.vdir(TOML).join("list")).unwrap(),
        format!("{v1}\n"),
        "list follows the .mod files"
    );

    // Go fetches and extracts what is missing, and everything verifies.
    world.download_all_ok();
    world.build_ok();
    world.verify_ok();
    world.age(10 * DAY);
    let (code, after) = cachewarden(&config, &["verify", "--json"]);
    assert_eq!(code, 0, "{after}");
    assert!(problems(&after).is_empty(), "{after}");
}

/// A tiny max_size while real `go mod download` and `go build` loop: no go command fails,
/// evictions happen between them (the daemon defers while go runs), and the dry-run plan
/// drops extracted trees before any zip.
#[test]
fn real_go_commands_never_fail_while_the_daemon_evicts() {
    let world = ModWorld::new();
    world.download_all_ok();
    world.build_ok();
    world.age(10 * DAY);
    let config = world.config(
        "max_size = \"1 MiB\"\nmin_age = \"1s\"\nunsafe_allow_short_min_age = true\nschedule = \"* * * * *\"",
    );

    // The plan: every tree (tier 0) before any zip (tier 1); .info/.mod never for size.
    let (code, plan) = cachewarden(&config, &["evict", "--dry-run", "--json"]);
    assert_eq!(code, 1, "{plan}");
    let paths: Vec<String> = plan[0]["evicted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    let first_zip = paths
        .iter()
        .position(|p| p.ends_with(".zip"))
        .expect("zips go too");
    assert_eq!(first_zip, 8, "8 trees first: {paths:?}");
    assert!(
        paths[..8].iter().all(|p| !p.starts_with("cache/")),
        "{paths:?}"
    );
    assert!(paths.iter().all(|p| !p.ends_with(".mod")), "{paths:?}");
    assert!(plan[0]["evicted"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["reason"] == "max-size"));
    assert!(
        world.tree(TEXT, VERSIONS[0]).exists(),
        "a dry run removes nothing"
    );

    let text = std::fs::read_to_string(&config).unwrap();
    let daemon = Daemon::start(&world.root, &text);
    // The first enforcement runs right after the first scan: nothing of this world's go
    // runs now. (Other tests' go commands run meanwhile; one the guard cannot look into
    // holds every module cache until it exits, so this waits longer than the usual
    // deadline, and says who held what if it still times out: CI at 8baa3d7 timed out
    // here once in 30 s.)
    let deadline = std::time::Instant::now() + 3 * DEADLINE;
    let status = loop {
        // Within the limit with every tree gone. (Not "16 entries evicted": a tree and
        // the zip of one version removed at once can leave one of them `Gone` to the
        // other's removal, uncounted: CI at 8baa3d7 saw 15 with all 16 gone.)
        let s = daemon.cache_status("gm");
        let within = s["over_limits"].as_array().is_some_and(|o| o.is_empty());
        let counted = s["evicted_entries_total"].as_u64().unwrap() >= 8;
        if within && counted && !world.tree(TEXT, VERSIONS[0]).exists() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no first eviction in {:?}: {s}\n{}",
            3 * DEADLINE,
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!world.tree(TEXT, VERSIONS[0]).exists(), "{status}");
    let evicted_before = status["evicted_entries_total"].as_u64().unwrap();

    let world = &world;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let pause = |i: u64| Duration::from_millis(50 + (i * 137 + now() as u64) % 300);
    let failures: Vec<String> = std::thread::scope(|s| {
        let downloader = s.spawn(move || {
            let mut failed = Vec::new();
            for i in 0..5 {
                let out = world.download_all();
                if !out.status.success() {
                    failed.push(format!(
                        "go mod download: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                std::thread::sleep(pause(i));
            }
            failed
        });
        let builder = s.spawn(move || {
            let mut failed = Vec::new();
            for i in 0..8 {
                let out = world.build();
                if !out.status.success() {
                    failed.push(format!(
                        "go build: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                std::thread::sleep(pause(i + 3));
            }
            failed
        });
        let poker = s.spawn(|| {
            let (mut removed, mut held, mut skipped) = (0, 0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (code, report) = daemon.post("/v1/caches/gm/evict", "");
                assert_eq!(code, 200, "{report}");
                removed += report["removed_entries"].as_u64().unwrap();
                held += report["held_in_use"].as_u64().unwrap().min(1);
                for s in report["skipped"].as_array().unwrap() {
                    skipped.push(s["reason"].as_str().unwrap().to_string());
                }
                std::thread::sleep(Duration::from_millis(97));
            }
            (removed, held, skipped)
        });
        let mut failed: Vec<String> = downloader.join().unwrap();
        failed.extend(builder.join().unwrap());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (removed, held, skipped) = poker.join().unwrap();
        println!(
            "POST evict: {removed} entries removed, {held} requests held while go ran, {} removals skipped: {:?}",
            skipped.len(),
            skipped.iter().map(|s| s.split(':').next().unwrap_or("")).collect::<BTreeSet<_>>()
        );
        failed
    });
    assert!(
        failures.is_empty(),
        "go commands failed while the daemon evicted:\n{}",
        failures.join("\n")
    );
    let status = daemon.cache_status("gm");
    assert!(
        status["evicted_entries_total"].as_u64().unwrap() > evicted_before,
        "evictions happened between go commands: {status}"
    );
    // Whatever was removed, go rebuilds it and everything verifies.
    world.download_all_ok();
    world.build_ok();
    world.verify_ok();
    daemon.assert_index_is_fresh_scan("gm");
    let (_, verified) = daemon.post("/v1/caches/gm/verify", "");
    assert_eq!(
        verified["problems"].as_array().unwrap().len(),
        0,
        "{verified}"
    );
}

/// `du -scB1` of these paths together.
pub fn du_total(paths: &[PathBuf]) -> u64 {
    let out = Command::new("du")
        .arg("-scB1")
        .args(paths)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let total = text.lines().last().unwrap_or_default();
    total.split_whitespace().next().unwrap().parse().unwrap()
}

/// On a build server go never stops: the daemon holds only what the running go commands'
/// module graphs name (the app's go.sum), so the rest goes and the cache meets its limit
/// while go runs — and no go command fails (issue #31, item 2).
#[test]
fn module_limits_hold_while_go_never_stops() {
    let world = ModWorld::new();
    world.download_all_ok();
    world.build_ok();
    world.go_ok(&world.app, &["vet", "."]);
    world.age(10 * DAY);
    // What the app's build list takes: its versions' trees and download files.
    let mut used: Vec<PathBuf> = MODULES.iter().map(|m| world.tree(m, VERSIONS[1])).collect();
    for m in MODULES {
        for ext in ["zip", "ziphash", "info", "mod"] {
            used.push(world.vdir(m).join(format!("{}.{ext}", VERSIONS[1])));
        }
    }
    let used_bytes = du_total(&used);
    let everything = du_total(std::slice::from_ref(&world.modcache));
    let limit = used_bytes + 256 * 1024;
    assert!(everything > limit + 512 * 1024, "{everything} vs {limit}");

    let world = &world;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let runs = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        // Two loops, so that some go command is always running.
        let loops: Vec<_> = [&["build", "-o", "/dev/null", "."][..], &["vet", "."][..]]
            .into_iter()
            .map(|args| {
                let (stop, runs) = (&stop, &runs);
                s.spawn(move || {
                    let mut failed = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let out = world.go_in(&world.app, args);
                        runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if !out.status.success() {
                            failed.push(format!(
                                "go {args:?}: {}",
                                String::from_utf8_lossy(&out.stderr)
                            ));
                        }
                    }
                    failed
                })
            })
            .collect();
        wait_for("go to run", DEADLINE, || {
            (runs.load(std::sync::atomic::Ordering::Relaxed) > 0).then_some(())
        });
        let config = world.config(&format!(
            // A short min_age: what go reads now (atime) is protected by the build
            // lists alone, not by being recently used.
            "max_size = \"{limit} B\"\nmin_age = \"1s\"\nunsafe_allow_short_min_age = true\nschedule = \"* * * * *\""
        ));
        let daemon = Daemon::start(&world.root, &std::fs::read_to_string(config).unwrap());
        let status = wait_for("the limit met while go runs", 4 * DEADLINE, || {
            let s = daemon.cache_status("gm");
            (s["disk_bytes"].as_u64().unwrap() <= limit
                && s["over_limits"].as_array().unwrap().is_empty()
                && s["held"]["entries"].as_u64().unwrap_or(0) > 0)
                .then_some(s)
        });
        let held = status["held"]["by"].as_str().unwrap();
        assert!(
            held.contains("go (pid") && held.contains("app/go.mod names"),
            "status says which go command holds what: {status}"
        );
        for m in MODULES {
            assert!(
                world.tree(m, VERSIONS[1]).exists(),
                "{m}: the build list stays"
            );
            assert!(
                !world.vdir(m).join(format!("{}.zip", VERSIONS[0])).exists(),
                "{m}@{}: not in any running build list, evicted",
                VERSIONS[0]
            );
        }
        let running = runs.load(std::sync::atomic::Ordering::Relaxed);
        // Go keeps running for a while after the limit is met: nothing it reads goes.
        std::thread::sleep(Duration::from_secs(3));
        daemon.assert_index_is_fresh_scan("gm");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let failed: Vec<String> = loops.into_iter().flat_map(|l| l.join().unwrap()).collect();
        assert!(failed.is_empty(), "go failed:\n{}", failed.join("\n"));
        println!("{running} go commands ran before the limit was met");
    });
    world.verify_ok();
}

/// Go's own lock (`lockedfile.MutexAt` = BSD flock on `<ver>.lock`) held: the version is
/// skipped, not waited for, and removed once the lock is free.
#[test]
fn a_version_whose_lock_go_holds_is_skipped() {
    use nix::fcntl::{Flock, FlockArg};
    let world = ModWorld::new();
    world.download_all_ok();
    world.age(10 * DAY);
    let config = world.config("max_size = \"1 KiB\"\nmin_age = \"1h\"");
    let lock_path = world.vdir(TOML).join(format!("{}.lock", VERSIONS[0]));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock_path)
        .unwrap();
    let held = Flock::lock(file, FlockArg::LockExclusive).unwrap();

    let started = Instant::now();
    let (_, report) = cachewarden(&config, &["evict", "--json"]);
    assert!(started.elapsed() < Duration::from_secs(30), "never blocks");
    let skipped: Vec<(String, String)> = report[0]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["entry"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let name = format!("{TOML}@{}", VERSIONS[0]);
    assert!(!skipped.is_empty(), "{report}");
    assert!(
        skipped
            .iter()
            .all(|(e, why)| *e == name && why.contains("go holds")),
        "{report}"
    );
    assert!(world.tree(TOML, VERSIONS[0]).join("decode.go").exists());
    assert!(world
        .vdir(TOML)
        .join(format!("{}.zip", VERSIONS[0]))
        .exists());
    assert!(
        !world.tree(TOML, VERSIONS[1]).exists(),
        "the other version went"
    );
    assert!(!world.tree(TEXT, VERSIONS[0]).exists());

    drop(held);
    let (_, report) = cachewarden(&config, &["evict", "--json"]);
    assert!(
        report[0]["skipped"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert!(!world.tree(TOML, VERSIONS[0]).exists());
    assert!(!world
        .vdir(TOML)
        .join(format!("{}.zip", VERSIONS[0]))
        .exists());
    assert!(lock_path.exists(), "lock files are never deleted");
    world.download_all_ok();
    world.build_ok();
}

/// `kill -9` of a one-shot eviction at random points, many times: go still builds, and
/// once go has repaired what it considers incomplete, everything verifies.
#[test]
fn killing_eviction_at_random_points_leaves_versions_go_can_use() {
    let world = ModWorld::new();
    world.download_all_ok();
    world.build_ok();
    let config = world.config("max_size = \"1 KiB\"\nmin_age = \"1h\"");
    let seed = (now() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    println!("seed {seed}");
    let mut state = seed | 1;
    let mut random = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below.max(1)
    };
    // The small modules at both versions, x/text (37 MB) only at the version the app
    // builds with: the point is many kills at many points, not bulk.
    let mut some: Vec<(&str, &str)> = [ERRORS, UUID, TOML]
        .iter()
        .flat_map(|m| VERSIONS.map(|v| (*m, v)))
        .collect();
    some.push((TEXT, VERSIONS[1]));
    let download_some = || {
        let out = world.download(&some);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        world.age(10 * DAY);
    };
    // How long one whole eviction of that takes here, to spread the kills over it.
    download_some();
    let started = Instant::now();
    let (_, report) = cachewarden(&config, &["evict", "--json"]);
    let full = started.elapsed().as_micros() as u64;
    assert!(
        report[0]["removed_entries"].as_u64().unwrap() >= 14,
        "{report}"
    );
    // Kills land in the first half of a calibrated run (later runs can be faster than
    // the calibration on a loaded machine); rounds go on until 8 landed mid-run.
    let mut killed_midway = 0;
    let mut rounds = 0;
    for round in 0..24 {
        if killed_midway >= 8 {
            break;
        }
        rounds += 1;
        download_some();
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(["evict", "--json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(random(full / 2)));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let status = child.wait().unwrap();
        if status.code().is_none() {
            killed_midway += 1;
        }
        // Every version is intact or marked incomplete the way go understands: a
        // tree that is not whole always has its .partial (our removal creates it first
        // and drops the zip before its .ziphash, both before the tree).
        let (_, found) = cachewarden(&config, &["verify", "--json"]);
        let unexpected: Vec<_> = problems(&found)
            .into_iter()
            .filter(|(_, _, problem)| problem != "partial")
            .collect();
        assert!(unexpected.is_empty(), "round {round}: {unexpected:?}");
        // Go copes with whatever the kill left, at once.
        let out = world.build();
        assert!(
            out.status.success(),
            "round {round}: go build failed after a kill:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!("{killed_midway} of {rounds} kills landed before the eviction finished ({full} µs)");
    assert!(
        killed_midway >= 4,
        "kills must land mid-run: {killed_midway} of {rounds}"
    );
    world.download_all_ok();
    world.build_ok();
    world.verify_ok();
    world.age(10 * DAY);
    let (code, after) = cachewarden(&config, &["verify", "--json"]);
    assert_eq!(code, 0, "no leftover is unknown to go: {after}");
}

/// `evict --entry module@version` and `--module module`, on the CLI and the socket.
#[test]
fn one_version_or_a_whole_module_can_be_removed() {
    let world = ModWorld::new();
    world.download_all_ok();
    world.build_ok();
    world.age(10 * DAY);
    let config = world.config("min_age = \"1h\"");
    let (v0, v1) = (VERSIONS[0], VERSIONS[1]);

    let entry = format!("{TOML}@{v0}");
    let (code, report) = cachewarden(
        &config,
        &["evict", "--cache", "gm", "--entry", &entry, "--json"],
    );
    assert_eq!(code, 0, "{report}");
    assert!(
        report[0]["evicted"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["entry"] == entry.as_str() && e["reason"] == "requested"),
        "{report}"
    );
    assert!(!world.tree(TOML, v0).exists());
    for ext in ["zip", "ziphash", "info", "mod"] {
        assert!(
            !world.vdir(TOML).join(format!("{v0}.{ext}")).exists(),
            "{ext}"
        );
    }
    assert!(world.vdir(TOML).join(format!("{v0}.lock")).exists());
    assert_eq!(
        std::fs::read_to_string(world.vdir(TOML).join("list")).unwrap(),
        format!("{v1}\n")
    );
    assert!(world.tree(TOML, v1).exists(), "the other version stays");

    // A whole module, dry run first.
    let (code, plan) = cachewarden(
        &config,
        &[
            "evict",
            "--cache",
            "gm",
            "--module",
            ERRORS,
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{plan}");
    assert_eq!(plan[0]["evicted"].as_array().unwrap().len(), 6, "{plan}");
    assert!(world.tree(ERRORS, v0).exists());

    let daemon = Daemon::start(&world.root, &std::fs::read_to_string(&config).unwrap());
    let (code, report) = daemon.post(&format!("/v1/caches/gm/evict?module={ERRORS}"), "");
    assert_eq!(code, 200, "{report}");
    assert!(report["skipped"].as_array().unwrap().is_empty(), "{report}");
    for v in VERSIONS {
        assert!(!world.tree(ERRORS, v).exists());
        assert!(!world.vdir(ERRORS).join(format!("{v}.zip")).exists());
        assert!(!world.vdir(ERRORS).join(format!("{v}.mod")).exists());
    }
    assert!(world.tree(UUID, v0).exists(), "other modules stay");
    let (_, entries) = daemon.get("/v1/caches/gm/entries?order=oldest&limit=1000");
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["entry"].as_str().unwrap().starts_with(ERRORS)),
        "{entries}"
    );
    daemon.assert_index_is_fresh_scan("gm");

    // Go fetches them again, and the live index follows.
    world.build_ok();
    world.verify_ok();
    daemon.assert_index_is_fresh_scan("gm");
    // go clean -modcache removes the whole root; the next go command makes it anew.
    let errors_before = daemon.cache_status("gm")["errors_total"].clone();
    world.go_ok(&world.app, &["clean", "-modcache"]);
    daemon.assert_index_is_fresh_scan("gm");
    // Go's own doing: a condition while it lasts, not an error (issue #31).
    wait_for("the cache gone, as a condition", DEADLINE, || {
        let s = daemon.cache_status("gm");
        s["conditions"]
            .to_string()
            .contains("is not there")
            .then_some(())
    });
    world.build_ok();
    daemon.assert_index_is_fresh_scan("gm");
    wait_for("the condition over", DEADLINE, || {
        let s = daemon.cache_status("gm");
        (s["conditions"].as_array()?.is_empty()).then_some(())
    });
    let status = daemon.cache_status("gm");
    assert_eq!(
        status["errors_total"], errors_before,
        "{}",
        status["errors"]
    );
}

#[test]
fn a_directory_that_is_not_a_module_cache_is_refused() {
    let err = config_check_of_a_plain_dir_as("go-mod");
    assert!(
        err.contains(":4: key `path`") && err.contains("does not look like a Go module cache"),
        "{err}"
    );
}

/// Damage done just now (fresh mtimes, well within min_age) is repaired at once: a
/// corrupt module is dangerous exactly when it is used. Go's version lock and the
/// running-go guard make that safe, not age.
#[test]
fn fresh_damage_is_repaired_without_waiting_for_min_age() {
    let world = ModWorld::new();
    world.download_all_ok();
    world.build_ok();
    world.age(10 * DAY);
    let config = world.config(""); // the go-mod default min_age: 2 days
    let v0 = VERSIONS[0];
    let edited = world.tree(TOML, v0).join("decode.go");
    world.writable(&edited);
    std::fs::write(&edited, b"package toml // edited just now\n").unwrap();
    let zip = world.vdir(ERRORS).join(format!("{v0}.zip"));
    let bytes = std::fs::read(&zip).unwrap();
    std::fs::write(&zip, &bytes[..bytes.len() / 2]).unwrap();

    let (code, repaired) = cachewarden(&config, &["verify", "--repair", "--json"]);
    assert_eq!(code, 0, "{repaired}");
    let problems = repaired["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{repaired}");
    assert!(problems.iter().all(|p| p["repaired"] == true), "{repaired}");
    assert!(!world.tree(TOML, v0).exists() && !zip.exists());
    world.download_all_ok();
    world.build_ok();
    world.verify_ok();
}

/// A daemon started (or reloaded) while `go clean -modcache` is halfway through the
/// root — `cache/download` gone, module trees left — does not refuse to run: that cache
/// waits, saying why, the others are managed, and once go has written the root again
/// it is managed too. `config check` still refuses such a root. (The soak found a
/// daemon restarted at that moment exiting with "does not look like a Go module cache".)
#[test]
fn a_root_go_clean_is_halfway_through_waits_instead_of_stopping_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let modcache = tmp.path().join("gomodcache");
    std::fs::create_dir_all(modcache.join("example.com/left@v1.0.0")).unwrap();
    std::fs::write(
        modcache.join("example.com/left@v1.0.0/go.mod"),
        b"module example.com/left\n",
    )
    .unwrap();
    let other = tmp.path().join("other");
    file_aged(&other.join("f"), 10, DAY);
    let socket = tmp.path().join("run/cw.sock");
    let config = config_text(&socket, &[("d", &other, "")])
        + &format!(
            "\n[[cache]]\nname = \"gm\"\nkind = \"go-mod\"\npath = \"{}\"\n",
            modcache.display()
        );
    std::fs::write(tmp.path().join("check.toml"), &config).unwrap();
    let check = Command::new(BIN)
        .args(["config", "check"])
        .arg(tmp.path().join("check.toml"))
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2), "config check refuses it");

    let daemon = Daemon::start(tmp.path(), &config);
    let gm = daemon.cache_status("gm");
    assert_eq!(gm["state"], "waiting", "{gm}");
    assert!(
        gm["last_use_signal"]
            .as_str()
            .unwrap()
            .contains("does not look like a Go module cache"),
        "{gm}"
    );
    assert_eq!(daemon.cache_status("d")["entries"], 1);
    assert!(
        modcache.join("example.com/left@v1.0.0/go.mod").exists(),
        "nothing of a refused root is touched"
    );

    // go writes the root again (its next download): managed.
    std::fs::create_dir_all(modcache.join("cache/download")).unwrap();
    let gm = wait_for("the module cache managed", 3 * DEADLINE, || {
        let s = daemon.cache_status("gm");
        (s["state"] == "ready").then_some(s)
    });
    assert!(gm["entries"].as_u64().unwrap() >= 1, "{gm}");
    daemon.assert_index_is_fresh_scan("gm");
    assert_eq!(daemon.stop().code(), Some(0));
}
