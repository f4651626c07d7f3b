//! The go-build kind against Debian's real Go toolchain and a real GOCACHE.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;

/// A Go module and the environment that points go at this test's own caches.
struct GoWorld {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cache: PathBuf,
    module: PathBuf,
}

impl GoWorld {
    fn new() -> GoWorld {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let module = root.join("app");
        std::fs::create_dir_all(module.join("lib")).unwrap();
        std::fs::write(module.join("go.mod"), "module example.com/app\n\ngo 1.19\n").unwrap();
        std::fs::write(
            module.join("main.go"),
            r#"package main

import (
	"archive/zip"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"text/template"

	"example.com/app/lib"
)

func main() {
	_ = zip.NewWriter(os.Stdout)
	_ = gzip.NewWriter(os.Stdout)
	b, _ := json.Marshal(map[string]int{"a": lib.Double(2)})
	fmt.Println(string(b), sha256.Sum256(b), regexp.MustCompile("a+").MatchString("aa"))
	_ = template.Must(template.New("x").Parse("{{.}}"))
	_ = http.DefaultClient
}
"#,
        )
        .unwrap();
        std::fs::write(
            module.join("lib/lib.go"),
            "package lib\n\n// Double doubles.\nfunc Double(x int) int { return 2 * x }\n",
        )
        .unwrap();
        std::fs::write(
            module.join("lib/lib_test.go"),
            "package lib\n\nimport \"testing\"\n\nfunc TestDouble(t *testing.T) {\n\tif Double(2) != 4 {\n\t\tt.Fatal(\"math\")\n\t}\n}\n",
        )
        .unwrap();
        let cache = root.join("gocache");
        std::fs::create_dir(&cache).unwrap();
        GoWorld {
            _tmp: tmp,
            cache,
            module,
            root,
        }
    }

    /// `go ARGS` in the module, pointed at this world's caches.
    fn command(&self, args: &[&str], arch: Option<&str>) -> Command {
        let mut cmd = Command::new(go_binary());
        cmd.args(args)
            .env("GOTOOLCHAIN", "local")
            .current_dir(&self.module)
            .env("HOME", &self.root)
            .env("GOPATH", self.root.join("gopath"))
            .env("GOCACHE", &self.cache)
            .env("GOFLAGS", "-mod=mod")
            .env("GOPROXY", "off")
            .env("GOSUMDB", "off")
            .env("CGO_ENABLED", "0")
            .env_remove("GOOS");
        match arch {
            Some(a) => cmd.env("GOARCH", a),
            None => cmd.env_remove("GOARCH"),
        };
        cmd
    }

    fn go(&self, args: &[&str], arch: Option<&str>) -> Output {
        self.command(args, arch)
            .output()
            .expect("go is installed (scripts/test installs golang-go)")
    }

    fn go_ok(&self, args: &[&str], arch: Option<&str>) {
        let out = self.go(args, arch);
        assert!(
            out.status.success(),
            "go {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sets every cache file's mtime back by `age`, as if last used then.
    fn age_cache(&self, age: Duration) {
        let t = filetime::FileTime::from_unix_time(now() - age.as_secs() as i64, 0);
        for e in walkdir::WalkDir::new(&self.cache)
            .into_iter()
            .filter_map(Result::ok)
        {
            if e.file_type().is_file() {
                filetime::set_file_mtime(e.path(), t).unwrap();
            }
        }
    }

    fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            "[daemon]\nsocket = \"{}/run/cw.sock\"\nlog_level = \"debug\"\n\n[[cache]]\nname = \"gb\"\nkind = \"go-build\"\npath = \"{}\"\n{extra}\n",
            self.root.display(),
            self.cache.display()
        );
        let path = self.root.join("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Action files with a non-empty output no other action names: (action path, output path).
    fn unique_entries(&self) -> Vec<(PathBuf, PathBuf)> {
        let mut by_output: std::collections::HashMap<String, Vec<PathBuf>> = Default::default();
        for e in walkdir::WalkDir::new(&self.cache)
            .into_iter()
            .filter_map(Result::ok)
        {
            if e.file_name().to_string_lossy().ends_with("-a") {
                let text = std::fs::read_to_string(e.path()).unwrap();
                let output = text.split(' ').nth(2).unwrap().to_string();
                by_output
                    .entry(output)
                    .or_default()
                    .push(e.path().to_path_buf());
            }
        }
        let mut found: Vec<(PathBuf, PathBuf)> = by_output
            .into_iter()
            .filter(|(_, actions)| actions.len() == 1)
            .map(|(out, actions)| {
                (
                    actions[0].clone(),
                    self.cache.join(&out[..2]).join(format!("{out}-d")),
                )
            })
            .filter(|(_, d)| std::fs::metadata(d).is_ok_and(|m| m.len() > 16))
            .collect();
        found.sort();
        found
    }
}

fn cachewarden(config: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
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

/// Flips one byte in the middle of `path`, keeping its size: the damage go would serve
/// to the compiler.
fn flip_a_middle_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(path, &bytes).unwrap();
}

/// Cuts `path` short: an action file half written.
fn cut_to_100_bytes(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..100]).unwrap();
}

fn rel(cache: &Path, p: &Path) -> String {
    p.strip_prefix(cache)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn verify_finds_damaged_real_entries_and_repair_lets_go_rebuild() {
    let world = GoWorld::new();
    world.go_ok(&["build", "-o", "/dev/null", "."], Some("arm64"));
    world.age_cache(DAY);
    let config = world.config("");

    let (code, healthy) = cachewarden(&config, &["verify", "--json"]);
    assert_eq!(code, 0, "{healthy}");
    assert_eq!(
        healthy["problems"].as_array().unwrap().len(),
        0,
        "{healthy}"
    );
    assert!(
        healthy["caches"][0]["checked"].as_u64().unwrap() > 100,
        "{healthy}"
    );

    let picks = world.unique_entries();
    assert!(picks.len() >= 3);
    let (flip_a, flip_d) = &picks[0];
    let (trunc_a, _) = &picks[1];
    let (garble_a, _) = &picks[2];
    flip_a_middle_byte(flip_d);
    // Truncate one action file; garble another.
    cut_to_100_bytes(trunc_a);
    let mut text = std::fs::read(garble_a).unwrap();
    text[70] = b'z';
    std::fs::write(garble_a, &text).unwrap();
    world.age_cache(DAY);

    let (code, found) = cachewarden(&config, &["verify", "--json"]);
    assert_eq!(code, 1, "{found}");
    let mut got: Vec<(String, String)> = found["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_string(),
                p["problem"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (
            rel(&world.cache, flip_a),
            "output-hash-mismatch".to_string(),
        ),
        (rel(&world.cache, trunc_a), "action-truncated".to_string()),
        (rel(&world.cache, garble_a), "action-garbled".to_string()),
    ];
    want.sort();
    assert_eq!(got, want, "exactly the damaged entries");
    assert!(found["problems"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["cache"] == "gb" && p["entry"].is_string()));

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
    assert!(!flip_d.exists() && !flip_a.exists() && !trunc_a.exists() && !garble_a.exists());

    world.go_ok(&["build", "-o", "/dev/null", "."], Some("arm64"));
    let (code, after) = cachewarden(&config, &["verify", "--json"]);
    assert_eq!(code, 0, "{after}");
    assert_eq!(after["problems"].as_array().unwrap().len(), 0);
}

/// The daemon trims a real GOCACHE far below its size while real go commands loop on
/// it: no go command may fail, and the cache ends within its limit except for entries
/// min_age protects.
#[test]
fn real_go_commands_never_fail_while_the_daemon_evicts() {
    let world = GoWorld::new();
    world.go_ok(&["build", "-o", "/dev/null", "."], Some("arm64"));
    world.go_ok(&["build", "std"], Some("arm64"));
    world.go_ok(&["vet", "./..."], None);
    world.go_ok(&["test", "-count=1", "./..."], None);
    world.age_cache(DAY);

    // No limit at first: nothing is evicted until the go commands run.
    let config = world.config("");
    let text = std::fs::read_to_string(&config).unwrap();
    let daemon = Daemon::start(&world.root, &text);
    let start = daemon.cache_status("gb");
    assert!(
        start["last_scan"]["disk_bytes"].as_u64().unwrap() > 40 << 20,
        "{start}"
    );
    assert_eq!(start["evicted_entries_total"], 0);

    let world = &world;
    let failures: Vec<String> = std::thread::scope(|s| {
        let jobs: Vec<_> = [
            (vec!["build", "-o", "/dev/null", "."], Some("arm64")),
            (vec!["build", "std"], Some("arm64")),
            (vec!["vet", "./..."], None),
            (vec!["test", "-count=1", "./..."], None),
        ]
        .into_iter()
        .map(|(args, arch)| {
            s.spawn(move || {
                let mut failed = Vec::new();
                for _ in 0..3 {
                    let out = world.go(&args, arch);
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
        // While they run: a tiny limit (SIGHUP), then keep evicting.
        let tiny = text.replace(
            "kind = \"go-build\"\n",
            "kind = \"go-build\"\nmax_size = \"8 MiB\"\n",
        );
        std::fs::write(&config, tiny).unwrap();
        daemon.signal(nix::sys::signal::Signal::SIGHUP);
        let during = wait_for("eviction while go runs", DEADLINE, || {
            let s = daemon.cache_status("gb");
            (s["evicted_entries_total"].as_u64().unwrap() > 100).then_some(s)
        });
        assert!(
            jobs.iter().any(|j| !j.is_finished()),
            "the evictions must happen while go commands run: {during}"
        );
        for _ in 0..20 {
            let (code, report) = daemon.post("/v1/caches/gb/evict", "");
            assert_eq!(code, 200, "{report}");
            std::thread::sleep(Duration::from_millis(250));
        }
        jobs.into_iter().flat_map(|j| j.join().unwrap()).collect()
    });
    assert!(
        failures.is_empty(),
        "go commands failed while the daemon evicted:\n{}",
        failures.join("\n")
    );

    let status = daemon.cache_status("gb");
    assert!(
        status["evicted_entries_total"].as_u64().unwrap() > 100,
        "{status}"
    );
    let (_, report) = daemon.post("/v1/caches/gb/evict", "");
    let size = report["bytes_after_planned"].as_u64().unwrap();
    if size > 8 << 20 {
        // Over the limit only because of protected entries: the oldest one is young.
        let (_, oldest) = daemon.get("/v1/caches/gb/entries?order=oldest&limit=1");
        assert!(
            oldest[0]["age_secs"].as_i64().unwrap() < 2 * 3600,
            "{oldest} {report}"
        );
        assert!(
            report["unmet"][0].as_str().unwrap().contains("max_size"),
            "{report}"
        );
    }
    // Whatever was removed, go still builds, and what remains is sound.
    world.go_ok(&["build", "-o", "/dev/null", "."], Some("arm64"));
    daemon.assert_index_is_fresh_scan("gb");
    let (code, verified) = daemon.post("/v1/caches/gb/verify", "");
    assert_eq!(code, 200);
    assert_eq!(
        verified["problems"].as_array().unwrap().len(),
        0,
        "{verified}"
    );
}

/// `go clean -cache` removes the 256 shard directories; the next go command makes new
/// ones and writes into them at once. The live index follows (issue #29: it kept the
/// removed directories' descriptors, lost every new entry and stayed a sixth of the
/// disk until a restart).
#[test]
fn the_index_follows_go_clean_and_the_next_build() {
    let world = GoWorld::new();
    world.go_ok(&["build", "./lib"], None);
    let daemon = Daemon::start(
        &world.root,
        &std::fs::read_to_string(world.config("")).unwrap(),
    );
    world.go_ok(&["build", "-o", "/dev/null", "."], None);
    daemon.assert_index_is_fresh_scan("gb");
    let before = daemon.cache_status("gb")["entries"].as_u64().unwrap();
    world.go_ok(&["clean", "-cache"], None);
    daemon.assert_index_is_fresh_scan("gb");
    world.go_ok(&["build", "-o", "/dev/null", "."], None);
    world.go_ok(&["vet", "./..."], None);
    daemon.assert_index_is_fresh_scan("gb");
    let after = daemon.cache_status("gb")["entries"].as_u64().unwrap();
    assert!(
        after >= before,
        "{after} entries after go clean and a build, {before} before"
    );
}

/// `go test -fuzz` keeps its corpora in `GOCACHE/fuzz`: counted in status beside the
/// entries, never evicted, even at `max_size = "1 B"` (issue #31).
#[test]
fn fuzz_corpora_are_counted_and_never_evicted() {
    let world = GoWorld::new();
    std::fs::write(
        world.module.join("lib/fuzz_test.go"),
        "package lib\n\nimport \"testing\"\n\nfunc FuzzCount(f *testing.F) {\n\tf.Add(\"a\")\n\tf.Fuzz(func(t *testing.T, s string) {\n\t\tn := 0\n\t\tfor _, c := range s {\n\t\t\tswitch c {\n\t\t\tcase 'x':\n\t\t\t\tn++\n\t\t\tcase 'y':\n\t\t\t\tn += 2\n\t\t\tcase 'z':\n\t\t\t\tn += Double(n)\n\t\t\t}\n\t\t}\n\t\tif n < 0 {\n\t\t\tt.Fatal(n)\n\t\t}\n\t})\n}\n",
    )
    .unwrap();
    // Until go has kept inputs that found new code paths. A count, not a duration: a
    // duration races go's fuzz coordinator on a loaded machine ("context deadline
    // exceeded" with no crasher, golang/go#75804, fixed only in go 1.27).
    world.go_ok(
        &[
            "test",
            "-run=^$",
            "-fuzz=FuzzCount",
            "-fuzztime=20000x",
            "-parallel=1",
            "./lib",
        ],
        None,
    );
    let fuzz = world.cache.join("fuzz");
    let corpora = files(&fuzz);
    assert!(!corpora.is_empty(), "go kept a corpus");
    world.age_cache(DAY);
    let text = std::fs::read_to_string(
        world.config("max_size = \"1 B\"\nmin_age = \"1s\"\nunsafe_allow_short_min_age = true"),
    )
    .unwrap();
    let daemon = Daemon::start(&world.root, &text);
    let status = wait_for("the startup eviction", DEADLINE, || {
        let s = daemon.cache_status("gb");
        (s["evicted_entries_total"].as_u64()? > 0).then_some(s)
    });
    let unmanaged = &status["last_scan"]["unmanaged"][0];
    assert!(
        unmanaged["what"].as_str().unwrap().contains("fuzz")
            && unmanaged["disk_bytes"].as_u64().unwrap() > 0,
        "{status}"
    );
    assert_eq!(files(&fuzz), corpora, "the corpora stay");
    let (_, cli) = cachewarden(&daemon.config, &["status", "--json"]);
    assert!(cli.to_string().contains("fuzz corpora"), "{cli}");
    daemon.assert_index_is_fresh_scan("gb");
}

#[test]
fn a_directory_that_is_not_a_go_cache_is_refused() {
    let err = config_check_of_a_plain_dir_as("go-build");
    assert!(
        err.contains(":4: key `path`") && err.contains("does not look like a Go build cache"),
        "{err}"
    );
}

/// SIGTERM saves a snapshot of the index; the next start restores it and, with the
/// cache unchanged, rescans nothing.
#[test]
fn a_restart_restores_the_index_from_its_snapshot() {
    let world = GoWorld::new();
    world.go_ok(&["build", "./lib"], None);
    world.go_ok(&["vet", "./lib"], None);
    let state = world.root.join("state");
    let text = with_state_dir(&std::fs::read_to_string(world.config("")).unwrap(), &state);
    let daemon = Daemon::start(&world.root, &text);
    let before = daemon.cache_status("gb");
    assert!(before["entries"].as_u64().unwrap() > 5, "{before}");
    assert_eq!(daemon.stop().code(), Some(0));
    assert!(state.join("gb.snapshot").exists());

    let daemon = Daemon::start(&world.root, &text);
    let after = daemon.cache_status("gb");
    assert_eq!(after["last_scan"]["partitions_rescanned"], 0, "{after}");
    assert_eq!(after["last_scan"]["partitions"], 256);
    assert_eq!(after["entries"], before["entries"]);
    assert_eq!(after["disk_bytes"], before["disk_bytes"]);
    // (Logged once the restore has also settled shared outputs: just after the index
    // it serves is in place.)
    wait_for("the restore logged", DEADLINE, || {
        daemon
            .log_text()
            .contains("restored from snapshot")
            .then_some(())
    });
}

/// While a go command runs, entries it may still open are held whatever min_age says;
/// the eviction happens once it exits (go-caches.md, "Long builds").
#[test]
fn eviction_waits_for_a_running_go_command() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;

    let world = GoWorld::new();
    std::fs::create_dir_all(world.module.join("sleeper")).unwrap();
    std::fs::write(
        world.module.join("sleeper/main.go"),
        "package main\n\nimport (\n\t\"fmt\"\n\t\"time\"\n)\n\nfunc main() {\n\tfmt.Println(\"ready\")\n\ttime.Sleep(5 * time.Minute)\n}\n",
    )
    .unwrap();
    world.go_ok(&["build", "-o", "/dev/null", "."], Some("arm64"));
    world.age_cache(Duration::from_secs(600));

    // `go run` keeps the go process alive for the program's whole run.
    let mut go_run = world.command(&["run", "./sleeper"], None);
    go_run.stdout(std::process::Stdio::piped()).process_group(0);
    let mut running = go_run.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(running.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");

    let config =
        world.config("max_size = \"1 MiB\"\nmin_age = \"1s\"\nunsafe_allow_short_min_age = true");
    let daemon = Daemon::start(&world.root, &std::fs::read_to_string(config).unwrap());
    let (_, plan) = daemon.post("/v1/caches/gb/evict?dry_run=true", "");
    assert!(plan["held_in_use"].as_u64().unwrap() > 50, "{plan}");
    assert!(
        plan["in_use_by"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {}", running.id())),
        "{plan}"
    );
    assert!(
        plan["unmet"][0].as_str().unwrap().contains("running tool"),
        "{plan}"
    );
    assert_eq!(daemon.cache_status("gb")["evicted_entries_total"], 0);

    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(running.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    running.wait().unwrap();
    let status = wait_for("the deferred eviction", DEADLINE, || {
        let s = daemon.cache_status("gb");
        (s["evicted_entries_total"].as_u64().unwrap() > 50).then_some(s)
    });
    assert!(
        status["evicted_entries_total"].as_u64().unwrap() > 50,
        "{status}"
    );
    // Once go is gone nothing holds the rest (all older than min_age = 1 s): an
    // enforcement now gets the cache within its limit.
    std::thread::sleep(Duration::from_secs(2));
    let (code, report) = daemon.post("/v1/caches/gb/evict", "");
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["unmet"], serde_json::json!([]), "{report}");
    let status = daemon.cache_status("gb");
    assert!(
        status["disk_bytes"].as_u64().unwrap() <= 1 << 20,
        "{status}"
    );
    assert_eq!(status["over_limits"], serde_json::json!([]), "{status}");
    assert!(
        daemon
            .log_text()
            .contains("eviction deferred while go (pid"),
        "{}",
        daemon.log_text()
    );
    daemon.assert_index_is_fresh_scan("gb");
}

/// Fresh damage (mtime now) is repaired at once — unless a go command that may use the
/// cache is running, which the report names, entry by entry.
#[test]
fn fresh_damage_is_repaired_at_once_unless_go_is_running() {
    let world = GoWorld::new();
    world.go_ok(&["build", "-o", "/dev/null", "."], Some("arm64"));
    world.age_cache(DAY);
    let config = world.config(""); // the go-build default min_age: 2 h
    let picks = world.unique_entries();
    let (flip_a, flip_d) = &picks[0];
    let (trunc_a, _) = &picks[1];
    flip_a_middle_byte(flip_d);
    cut_to_100_bytes(trunc_a);

    // A go command using this cache (a stand-in named go) holds the repair, and the
    // report says so.
    let bin = world.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/sleep", bin.join("go")).unwrap();
    let mut go = Command::new(bin.join("go"))
        .arg("60")
        .env("GOCACHE", &world.cache)
        .spawn()
        .unwrap();
    let (code, held) = cachewarden(&config, &["verify", "--repair", "--json"]);
    go.kill().unwrap();
    go.wait().unwrap();
    assert_eq!(code, 1, "{held}");
    let problems = held["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{held}");
    for p in problems {
        assert_eq!(p["repaired"], false, "{held}");
        assert_eq!(p["unrepaired"]["code"], "go-running", "{held}");
        let why = p["unrepaired"]["reason"].as_str().unwrap();
        assert!(why.contains(&format!("pid {}", go.id())), "{why}");
    }
    assert!(flip_d.exists() && trunc_a.exists());

    // With no go running, the same fresh damage is repaired at once.
    let (code, repaired) = cachewarden(&config, &["verify", "--repair", "--json"]);
    assert_eq!(code, 0, "{repaired}");
    assert!(
        repaired["problems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["repaired"] == true && p.get("unrepaired").is_none()),
        "{repaired}"
    );
    assert!(!flip_a.exists() && !flip_d.exists() && !trunc_a.exists());
    world.go_ok(&["build", "-o", "/dev/null", "."], Some("arm64"));
}

/// On a fresh machine go has not built anything yet: the daemon waits for the cache and
/// manages it once the first `go build` creates it, with no restart.
#[test]
fn a_cache_that_does_not_exist_yet_is_managed_once_go_creates_it() {
    let world = GoWorld::new();
    std::fs::remove_dir(&world.cache).unwrap();
    let config = world.config("");
    let daemon = Daemon::start(&world.root, &std::fs::read_to_string(&config).unwrap());
    let status = daemon.cache_status("gb");
    assert_eq!(status["state"], "waiting", "{status}");
    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("waiting for {}", world.cache.display())),
        "{text}"
    );

    world.go_ok(&["build", "-o", "/dev/null", "."], Some("arm64"));
    let status = wait_for("the new cache managed", 3 * DEADLINE, || {
        let s = daemon.cache_status("gb");
        (s["state"] == "ready" && s["entries"].as_u64().unwrap() > 50).then_some(s)
    });
    assert!(status["disk_bytes"].as_u64().unwrap() > 0, "{status}");
    assert!(
        daemon.log_text().contains("has appeared"),
        "{}",
        daemon.log_text()
    );
    daemon.assert_index_is_fresh_scan("gb");
    assert_eq!(daemon.stop().code(), Some(0));
}

/// `scan` answers sizes from the stat-only walk: no action file is read, and the size is
/// the one a full scan (pairing every action) finds.
#[test]
fn scan_reports_sizes_from_the_walk() {
    let world = GoWorld::new();
    world.go_ok(&["build", "-o", "/dev/null", "."], Some("arm64"));
    world.age_cache(DAY);
    let config = world.config("max_size = \"1 KiB\"");
    let (code, walked) = cachewarden(&config, &["scan", "--json"]);
    assert_eq!(code, 1, "over max_size: {walked}");
    assert_eq!(walked[0]["state"], "walked", "{walked}");
    assert_eq!(walked[0]["over_limits"], serde_json::json!(["max_size"]));
    let (_, plan) = cachewarden(&config, &["evict", "--dry-run", "--json"]);
    assert_eq!(
        walked[0]["disk_bytes"], plan[0]["bytes_before"],
        "{walked}\n{plan}"
    );
    let text = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "scan"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains(" files"));
}

/// Issue #30, item 9: the working set doctor advises `max_size` from matches what a
/// real build uses. One `go build -a` into an empty cache is the truth; then a daemon
/// with a limit of a third of it evicts after each of two more builds (each brings back
/// what was evicted): its estimate is that build's size, not the limit plus every
/// re-creation.
#[test]
fn the_working_set_doctor_advises_is_what_a_real_build_uses() {
    let world = GoWorld::new();
    world.go_ok(&["build", "-a", "-o", "/dev/null", "."], None);
    let config = world.config("");
    let real: u64 = fresh_scan(&config, "gb").values().sum();
    let limit = real / 3;
    let config = world.config(&format!(
        "max_size = {limit}\nmin_age = \"1s\"\nunsafe_allow_short_min_age = true\n"
    ));
    let text = std::fs::read_to_string(&config).unwrap();
    let daemon = Daemon::start(&world.root, &text);
    let size = || daemon.cache_status("gb")["disk_bytes"].as_u64().unwrap();
    wait_for("eviction to the limit", DEADLINE, || {
        (size() <= limit).then_some(())
    });
    for _ in 0..2 {
        world.go_ok(&["build", "-a", "-o", "/dev/null", "."], None);
        let built = now();
        wait_for("eviction after the build", DEADLINE, || {
            let s = daemon.cache_status("gb");
            let taken_after = s["working_set"]["at"].as_i64().is_some_and(|t| t >= built);
            (s["disk_bytes"].as_u64()? <= limit && taken_after).then_some(())
        });
    }
    let status = daemon.cache_status("gb");
    let estimate = status["working_set"]["bytes"].as_u64().unwrap();
    assert!(
        estimate as f64 >= 0.8 * real as f64 && estimate as f64 <= 1.25 * real as f64,
        "working set estimated {estimate} B, a real build uses {real} B: {status}"
    );
    let out = std::process::Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "doctor"])
        .output()
        .unwrap();
    let doctor = String::from_utf8_lossy(&out.stdout);
    let advice = format!(
        "raise max_size to at least {}",
        cachewarden::units::format_bytes(estimate)
    );
    assert!(doctor.contains(&advice), "{doctor}");
    daemon.stop();
}
