//! The `cargo-target` kind against real cargo (issue #25): a workspace with path
//! dependencies (a <- b <- app, b with a build script), built offline in debug and
//! release with a private `CARGO_HOME`; its target directory found below `roots` by
//! cargo's `CACHEDIR.TAG`; units evicted while no build runs and the next build
//! rebuilding exactly those (and what depends on them); nothing of a target directory
//! removed while a real cargo build holds its lock; a damaged output found and repaired.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;

struct Workspace {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    src: PathBuf,
    ws: PathBuf,
}

impl Workspace {
    fn new() -> Workspace {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let src = root.join("src");
        let ws = src.join("ws");
        let files = [
            (
                "Cargo.toml",
                "[workspace]\nmembers = [\"a\", \"b\", \"app\"]\nresolver = \"2\"\n",
            ),
            (
                "a/Cargo.toml",
                "[package]\nname = \"a\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
            ),
            ("a/src/lib.rs", "pub fn a() -> u32 { 1 }\n"),
            (
                "b/Cargo.toml",
                "[package]\nname = \"b\"\nversion = \"0.1.0\"\nedition = \"2021\"\nbuild = \"build.rs\"\n\n[dependencies]\na = { path = \"../a\" }\n",
            ),
            (
                "b/build.rs",
                "fn main() {\n    println!(\"cargo::rerun-if-env-changed=SLOW_BUILD\");\n    if let Ok(s) = std::env::var(\"SLOW_BUILD\") {\n        std::thread::sleep(std::time::Duration::from_secs(s.parse().unwrap()));\n    }\n}\n",
            ),
            ("b/src/lib.rs", "pub fn b() -> u32 { a::a() + 1 }\n"),
            (
                "app/Cargo.toml",
                "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nb = { path = \"../b\" }\n",
            ),
            (
                "app/src/main.rs",
                "fn main() { println!(\"{}\", b::b()); }\n\n#[test]\nfn two() { assert_eq!(b::b(), 2); }\n",
            ),
        ];
        for (rel, text) in files {
            let p = ws.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        Workspace {
            _tmp: tmp,
            root,
            src,
            ws,
        }
    }

    fn cargo(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.args(args)
            .arg("--offline")
            .current_dir(&self.ws)
            .env("CARGO_HOME", self.root.join("cargo-home"))
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env("CARGO_TERM_COLOR", "never");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn cargo_ok(&self, args: &[&str]) -> String {
        let out = self.cargo(args, &[]).output().unwrap();
        assert!(
            out.status.success(),
            "cargo {args:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn target(&self) -> PathBuf {
        self.ws.join("target")
    }

    fn config(&self, extra: &str) -> String {
        format!(
            "[daemon]\nsocket = \"{}/run/cw.sock\"\nlog_level = \"debug\"\n\n[[cache]]\nname = \"rust\"\nkind = \"cargo-target\"\nroots = [\"{}\"]\nmin_age = \"1s\"\nunsafe_allow_short_min_age = true\n{extra}\n",
            self.root.display(),
            self.src.display()
        )
    }
}

/// The packages `cargo build -v` compiled (not "Fresh").
fn compiled(stderr: &str) -> Vec<String> {
    let mut names: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Compiling "))
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Every file's and directory's times set back by `age`, as if last built then.
fn age_tree(dir: &Path, age: Duration) {
    let t = filetime::FileTime::from_unix_time(now() - age.as_secs() as i64, 0);
    for e in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        if !e.file_type().is_symlink() {
            filetime::set_file_times(e.path(), t, t).unwrap();
        }
    }
}

fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn evicted_units_are_rebuilt_and_nothing_goes_while_cargo_builds() {
    let world = Workspace::new();
    world.cargo_ok(&["build"]);
    world.cargo_ok(&["build", "--release"]);
    world.cargo_ok(&["test", "--no-run"]);
    age_tree(&world.ws, 3 * DAY); // sources too, or cargo rebuilds all
    let config_file = world.root.join("config.toml");
    std::fs::write(&config_file, world.config("")).unwrap();

    // One-shot scan: the target directory is found below the root, its units counted
    // (what `du` counts, but for the uplifted links and cargo's own files).
    let out = cli(&config_file, &["scan", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scanned = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(scanned[0]["name"], "rust@ws.target", "{scanned}");
    let entries = scanned[0]["entries"].as_u64().unwrap();
    assert!(entries >= 10, "{scanned}");

    // The daemon: the app's unit and every incremental directory evicted by name; the
    // next build compiles the app alone.
    let text = world.config("");
    let daemon = Daemon::start(&world.root, &text);
    let (_, listed) = daemon.get("/v1/caches/rust@ws.target/entries?limit=1000");
    let names: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"].as_str().unwrap().to_string())
        .collect();
    let app_units: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("debug/app-") || n.starts_with("debug/incremental/app-"))
        .collect();
    assert!(!app_units.is_empty(), "{names:?}");
    for name in &app_units {
        let (code, report) = daemon.post(
            "/v1/caches/rust@ws.target/evict",
            &serde_json::json!({ "entries": [name] }).to_string(),
        );
        assert_eq!(code, 200, "{report}");
        assert!(report["skipped"].as_array().unwrap().is_empty(), "{report}");
    }
    let rebuilt = world.cargo_ok(&["build", "-v"]);
    assert_eq!(compiled(&rebuilt), ["app"], "{rebuilt}");
    daemon.assert_index_is_fresh_scan("rust@ws.target");

    // A limit of one byte: everything goes (all past min_age).
    std::fs::write(&config_file, world.config("max_size = 1")).unwrap();
    let (code, _) = daemon.post("/v1/reload", "");
    assert_eq!(code, 200);
    let emptied = |what: &str| {
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let s = daemon.cache_status("rust@ws.target");
            if s["entries"].as_u64() == Some(0) {
                return;
            }
            if std::time::Instant::now() > deadline {
                let (_, left) = daemon.get("/v1/caches/rust@ws.target/entries?limit=20");
                let (_, report) = daemon.post("/v1/caches/rust@ws.target/evict", "");
                panic!("{what}: {s}\nleft: {left}\nevicting: {report}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    emptied("eviction to the limit");

    // A real cargo build holds its lock for the whole build (b's build script sleeps):
    // what it writes meanwhile is over the limit, and none of it goes until it is done.
    let started = now();
    let slow = world
        .cargo(&["build", "-v"], &[("SLOW_BUILD", "8")])
        .output();
    let ended = now();
    let slow = slow.unwrap();
    assert!(
        slow.status.success(),
        "{}",
        String::from_utf8_lossy(&slow.stderr)
    );
    assert_eq!(
        compiled(&String::from_utf8_lossy(&slow.stderr)),
        ["a", "app", "b"]
    );
    let status = daemon.cache_status("rust@ws.target");
    let log = daemon.log_text();
    assert!(
        log.contains("holds the build lock of debug"),
        "the daemon saw the lock: {status}"
    );
    let (_, trail) = daemon.get(&format!("/v1/audit?since={started}&cache=rust@ws.target"));
    let during: Vec<&serde_json::Value> = trail
        .as_array()
        .unwrap()
        .iter()
        // (Seconds wholly inside the build: the limit takes what is left just before
        // it, in its first second, and the build's own units as soon as it ends.)
        .filter(|r| (started + 1..ended).contains(&r["at"].as_i64().unwrap()))
        .collect();
    assert!(during.is_empty(), "removed while cargo built: {during:?}");
    // Once cargo is done, the limit takes it all, and the next build rebuilds the
    // whole workspace and succeeds.
    emptied("eviction once cargo exited");
    let rebuilt = world.cargo_ok(&["build", "-v"]);
    assert_eq!(compiled(&rebuilt), ["a", "app", "b"], "{rebuilt}");
    let run = world.cargo(&["run", "-q"], &[]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "2");
    std::fs::write(&config_file, world.config("")).unwrap();
    let (code, _) = daemon.post("/v1/reload", "");
    assert_eq!(code, 200);
    daemon.assert_index_is_fresh_scan("rust@ws.target");
    daemon.stop();

    // A damaged output: verify finds it, repair removes the unit, cargo rebuilds it.
    world.cargo_ok(&["build"]);
    let deps = world.target().join("debug/deps");
    let rlib = std::fs::read_dir(&deps)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("liba-") && name.ends_with(".rlib")
        })
        .expect("a's rlib");
    std::fs::write(&rlib, b"").unwrap();
    let out = cli(&config_file, &["verify", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let found = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        found["problems"][0]["problem"], "rlib-not-an-archive",
        "{found}"
    );
    let out = cli(&config_file, &["verify", "--repair", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!rlib.exists());
    let rebuilt = world.cargo_ok(&["build", "-v"]);
    assert!(compiled(&rebuilt).contains(&"a".to_string()), "{rebuilt}");
}
