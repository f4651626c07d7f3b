//! The `cargo-home` kind against real cargo and the real crates registry (issue #25):
//! a project pulling two small crates into a private `CARGO_HOME`; eviction to a tiny
//! limit while no build runs (sources first, then downloads; the index stays for
//! `max_age`) and the next build fetching back what went and succeeding; nothing
//! removed while a real cargo build holds cargo's package-cache lock; a damaged
//! `.crate` found by verify, repaired, and fetched again by cargo; the live index equal
//! to a fresh scan throughout.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;

struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    app: PathBuf,
}

/// Small crates with no dependencies of their own, pinned.
const DEPS: [(&str, &str); 2] = [("cfg-if", "1.0.0"), ("itoa", "1.0.11")];

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let app = root.join("app");
        let deps: String = DEPS
            .iter()
            .map(|(name, version)| format!("{name} = \"={version}\"\n"))
            .collect();
        let files = [
            (
                "Cargo.toml".to_string(),
                format!("[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\nbuild = \"build.rs\"\n\n[dependencies]\n{deps}"),
            ),
            (
                "build.rs".into(),
                "fn main() {\n    println!(\"cargo::rerun-if-env-changed=SLOW_BUILD\");\n    if let Ok(s) = std::env::var(\"SLOW_BUILD\") {\n        std::thread::sleep(std::time::Duration::from_secs(s.parse().unwrap()));\n    }\n}\n".into(),
            ),
            (
                "src/main.rs".into(),
                "fn main() {\n    cfg_if::cfg_if! { if #[cfg(unix)] { let n = 2; } else { let n = 3; } }\n    println!(\"{}\", itoa::Buffer::new().format(n));\n}\n".into(),
            ),
        ];
        for (rel, text) in files {
            let p = app.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        Project {
            _tmp: tmp,
            home: root.join("cargo-home"),
            root,
            app,
        }
    }

    fn cargo(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.args(args)
            .current_dir(&self.app)
            .env("CARGO_HOME", &self.home)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env("CARGO_TERM_COLOR", "never")
            .env("CARGO_NET_RETRY", "5");
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

    fn config(&self, extra: &str) -> String {
        format!(
            "[daemon]\nsocket = \"{}/run/cw.sock\"\nlog_level = \"debug\"\n\n[[cache]]\nname = \"cargo\"\nkind = \"cargo-home\"\npath = \"{}\"\nmin_age = \"1s\"\nunsafe_allow_short_min_age = true\n{extra}\n",
            self.root.display(),
            self.home.display()
        )
    }

    /// The registry's directory name under `registry/{index,cache,src}`.
    fn registry(&self) -> String {
        let index = self.home.join("registry/index");
        let first = std::fs::read_dir(&index).unwrap().next().unwrap().unwrap();
        first.file_name().to_string_lossy().into_owned()
    }

    fn crate_file(&self, (name, version): (&str, &str)) -> PathBuf {
        self.home
            .join("registry/cache")
            .join(self.registry())
            .join(format!("{name}-{version}.crate"))
    }

    fn sources(&self, (name, version): (&str, &str)) -> PathBuf {
        self.home
            .join("registry/src")
            .join(self.registry())
            .join(format!("{name}-{version}"))
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

fn downloaded(stderr: &str) -> Vec<String> {
    let mut names: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Downloaded "))
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn a_real_cargo_home_is_evicted_under_cargo_lock_and_cargo_fetches_back_what_went() {
    let world = Project::new();
    let first = world.cargo_ok(&["build"]);
    assert_eq!(downloaded(&first), ["cfg-if", "itoa"], "{first}");
    let config_file = world.root.join("config.toml");
    std::fs::write(&config_file, world.config("")).unwrap();

    // One-shot scan: the index, two downloads, two extracted sources; cargo's record of
    // use read.
    let out = cli(&config_file, &["scan", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scanned = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(scanned[0]["entries"], 5, "{scanned}");
    assert!(
        world.home.join(".global-cache").exists(),
        "cargo ≥ 1.78 records uses"
    );

    let daemon = Daemon::start(&world.root, &world.config(""));
    daemon.assert_index_is_fresh_scan("cargo");

    // A limit of one byte: sources, then downloads go; the index stays for max_age.
    std::thread::sleep(Duration::from_secs(2)); // past min_age
    std::fs::write(&config_file, world.config("max_size = 1")).unwrap();
    assert_eq!(daemon.post("/v1/reload", "").0, 200);
    let index_only = |what: &str| {
        wait_for(what, DEADLINE, || {
            let (_, left) = daemon.get("/v1/caches/cargo/entries?limit=100");
            let left = left.as_array()?.clone();
            (left.len() == 1 && left[0]["entry"].as_str()?.starts_with("registry/index/"))
                .then_some(())
        })
    };
    index_only("eviction to the limit");
    for dep in DEPS {
        assert!(!world.crate_file(dep).exists() && !world.sources(dep).exists());
    }
    // A real cargo build holds cargo's lock while it compiles (the build script
    // sleeps): what it downloads and extracts meanwhile is over the limit, and none of
    // it goes until it is done.
    let started = now();
    let slow = world
        .cargo(&["build"], &[("SLOW_BUILD", "8")])
        .output()
        .unwrap();
    let ended = now();
    let stderr = String::from_utf8_lossy(&slow.stderr);
    assert!(slow.status.success(), "{stderr}");
    assert_eq!(
        downloaded(&stderr),
        ["cfg-if", "itoa"],
        "cargo fetched back what went"
    );
    let (_, trail) = daemon.get(&format!("/v1/audit?since={started}&cache=cargo"));
    let during: Vec<&serde_json::Value> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| (started + 1..ended).contains(&r["at"].as_i64().unwrap()))
        .collect();
    assert!(during.is_empty(), "removed while cargo built: {during:?}");
    assert!(
        daemon.log_text().contains("holds cargo's lock"),
        "the daemon saw cargo's lock"
    );
    index_only("eviction once cargo exited");

    // Without a limit, a build fetches everything again and the index follows it.
    std::fs::write(&config_file, world.config("")).unwrap();
    assert_eq!(daemon.post("/v1/reload", "").0, 200);
    world.cargo_ok(&["build"]);
    let run = world.cargo(&["run", "-q"], &[]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "2");
    wait_for("the new entries", DEADLINE, || {
        (daemon.cache_status("cargo")["entries"].as_u64()? == 5).then_some(())
    });
    daemon.assert_index_is_fresh_scan("cargo");
    daemon.stop();

    // A damaged download: verify finds it against the index's checksum, repair removes
    // it, and cargo fetches it again (cargo itself never would).
    let damaged = world.crate_file(DEPS[1]);
    let mut bytes = std::fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&damaged, &bytes).unwrap();
    let out = cli(&config_file, &["verify", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let found = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        found["problems"][0]["problem"], "checksum-mismatch",
        "{found}"
    );
    assert!(
        found["problems"][0]["entry"]
            .as_str()
            .unwrap()
            .ends_with("itoa-1.0.11.crate"),
        "{found}"
    );
    let out = cli(&config_file, &["verify", "--repair", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!damaged.exists());
    let fetched = world.cargo_ok(&["fetch"]);
    assert_eq!(downloaded(&fetched), ["itoa"], "{fetched}");
    let out = cli(&config_file, &["verify", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
