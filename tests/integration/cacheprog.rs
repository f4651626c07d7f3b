//! `cachewarden cacheprog` as real go's GOCACHEPROG (issue #26), on go 1.24 and 1.27
//! from the matrix: a module builds, vets and tests through it; a second build
//! compiles nothing; an output damaged in the store is never served (the build
//! succeeds, go puts it anew); a daemon with a limit far below the working set evicts
//! while builds loop and no build fails, what a running go was handed staying leased;
//! the limit is met once they stop; `kill -9` of go mid-build leaves no lease behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;
use crate::go_versions::go_of_matrix;

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    module: PathBuf,
    gocache: PathBuf,
    go: PathBuf,
}

impl World {
    fn new(go: PathBuf) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let module = root.join("app");
        let files = [
            ("go.mod", "module example.com/app\n\ngo 1.21\n"),
            (
                "lib/lib.go",
                "package lib\n\nimport \"strings\"\n\nfunc Shout(s string) string { return strings.ToUpper(s) + \"!\" }\n",
            ),
            (
                "lib/lib_test.go",
                "package lib\n\nimport (\n\t\"os\"\n\t\"testing\"\n\t\"time\"\n)\n\nfunc TestShout(t *testing.T) {\n\tif os.Getenv(\"SLOW_TEST\") != \"\" {\n\t\ttime.Sleep(20 * time.Second)\n\t}\n\tif Shout(\"hi\") != \"HI!\" {\n\t\tt.Fatal(Shout(\"hi\"))\n\t}\n}\n",
            ),
            (
                "main.go",
                "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/app/lib\"\n)\n\nfunc main() { fmt.Println(lib.Shout(\"hi\")) }\n",
            ),
        ];
        for (rel, text) in files {
            let p = module.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        World {
            gocache: root.join("gocache"),
            _tmp: tmp,
            root,
            module,
            go,
        }
    }

    fn go(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.go);
        cmd.args(args)
            .current_dir(&self.module)
            .env("GOCACHE", &self.gocache)
            .env("GOCACHEPROG", format!("{BIN} cacheprog"))
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=mod")
            .env("CGO_ENABLED", "0")
            .env_remove("GOOS")
            .env_remove("GOARCH");
        cmd
    }

    fn go_ok(&self, args: &[&str]) -> Output {
        let out = self.go(args).output().unwrap();
        assert!(
            out.status.success(),
            "go {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn config(&self, extra: &str) -> String {
        format!(
            "[daemon]\nsocket = \"{}/run/cw.sock\"\nlog_level = \"debug\"\n\n[[cache]]\nname = \"gb\"\nkind = \"go-build\"\npath = \"{}\"\nmin_age = \"1s\"\nunsafe_allow_short_min_age = true\n{extra}\n",
            self.root.display(),
            self.gocache.display()
        )
    }

    /// The cacheprogs whose lease is live now (their lock held).
    fn live_leases(&self) -> usize {
        let locks = std::fs::read_to_string("/proc/locks").unwrap();
        let Ok(dir) = std::fs::read_dir(self.gocache.join("cachewarden/leases")) else {
            return 0;
        };
        dir.filter_map(Result::ok)
            .filter(|e| {
                use std::os::unix::fs::MetadataExt;
                let ino = e.metadata().unwrap().ino();
                locks
                    .lines()
                    .any(|l| l.contains(" FLOCK ") && l.contains(&format!(":{ino} ")))
            })
            .count()
    }
}

/// The packages `go build -x` compiled.
fn compiled(stderr: &[u8]) -> usize {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.contains("/compile ") && !l.contains("-V=full"))
        .count()
}

fn damage_largest_output(gocache: &Path) -> PathBuf {
    let largest = walkdir::WalkDir::new(gocache)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with("-d") && e.file_type().is_file())
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .into_path();
    let mut bytes = std::fs::read(&largest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&largest, bytes).unwrap();
    largest
}

fn through_cacheprog(go: PathBuf) {
    let world = World::new(go);
    // Build, vet and test through it; the next build compiles nothing.
    world.go_ok(&["build", "-o", "app", "."]);
    world.go_ok(&["vet", "./..."]);
    world.go_ok(&["test", "./..."]);
    let again = world.go_ok(&["build", "-x", "-o", "app", "."]);
    assert_eq!(
        compiled(&again.stderr),
        0,
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let run = Command::new(world.module.join("app")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "HI!");

    // A damaged output is never served: go rebuilds it and the build succeeds.
    let damaged = damage_largest_output(&world.gocache);
    let rebuilt = world.go_ok(&["build", "-x", "-o", "app", "."]);
    assert!(
        compiled(&rebuilt.stderr) > 0,
        "the damaged output was a miss"
    );
    assert!(
        String::from_utf8_lossy(&rebuilt.stderr).contains("damaged output"),
        "cacheprog says so"
    );
    let config_file = world.root.join("config.toml");
    std::fs::write(&config_file, world.config("")).unwrap();
    let verify = Command::new(BIN)
        .arg("--config")
        .arg(&config_file)
        .args(["verify", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        verify.status.code(),
        Some(0),
        "the store is whole again ({}): {}",
        damaged.display(),
        String::from_utf8_lossy(&verify.stdout)
    );

    // A limit of one byte while builds loop: nothing fails, a running go's entries
    // stay leased, and the limit is met once they stop.
    let daemon = Daemon::start(&world.root, &world.config("max_size = 1"));
    let slow = world
        .go(&["test", "-count=1", "./lib"])
        .env("SLOW_TEST", "1")
        .spawn()
        .unwrap();
    // Status shows the running cacheprog's lease while its go runs.
    let leases = wait_for("status showing the lease", Duration::from_secs(60), || {
        let s = daemon.cache_status("gb");
        let leases = s["leases"].as_array()?.clone();
        (!leases.is_empty()).then_some(leases)
    });
    assert!(
        leases[0]
            .as_str()
            .unwrap()
            .contains("cachewarden cacheprog (pid"),
        "{leases:?}"
    );
    for _ in 0..3 {
        world.go_ok(&["build", "-o", "app", "."]);
        world.go_ok(&["vet", "./..."]);
    }
    let slow = slow.wait_with_output().unwrap();
    assert!(
        slow.status.success(),
        "{}",
        String::from_utf8_lossy(&slow.stderr)
    );
    assert!(
        daemon.log_text().contains("cachewarden cacheprog (pid"),
        "the daemon saw the leases"
    );
    let deadline = std::time::Instant::now() + DEADLINE;
    while daemon.cache_status("gb")["entries"].as_u64() != Some(0) {
        if std::time::Instant::now() > deadline {
            let (_, left) = daemon.get("/v1/caches/gb/entries?limit=20");
            let (_, report) = daemon.post("/v1/caches/gb/evict", "");
            panic!(
                "the limit is not met once builds stopped: {}\nleft: {left}\nevicting: {report}",
                daemon.cache_status("gb")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    daemon.assert_index_is_fresh_scan("gb");
    daemon.stop();

    // kill -9 of go mid-build: its cacheprog sees stdin close and exits; no lease
    // stays behind.
    let mut go = world
        .go(&["test", "-count=1", "./lib"])
        .env("SLOW_TEST", "1")
        .spawn()
        .unwrap();
    wait_for("go's cacheprog leasing", Duration::from_secs(60), || {
        (world.live_leases() > 0).then_some(())
    });
    go.kill().unwrap();
    go.wait().unwrap();
    wait_for(
        "no live lease after kill -9",
        Duration::from_secs(30),
        || (world.live_leases() == 0).then_some(()),
    );
}

#[test]
fn go_1_24_builds_through_cacheprog() {
    if let Some(go) = go_of_matrix("1.24") {
        through_cacheprog(go);
    }
}

#[test]
fn go_1_27_builds_through_cacheprog() {
    if let Some(go) = go_of_matrix("1.27") {
        through_cacheprog(go);
    }
}
