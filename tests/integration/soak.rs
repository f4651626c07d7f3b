//! Long mixed workloads, and the daemon itself killed mid-work (issue #12).
//!
//! * The soak: real `go build`, `go test`, `go vet`, `go run` and `go mod download` in
//!   loops on one module cache and one build cache, with go's own cleaners
//!   (`go clean -cache`, `go clean -modcache`) racing ours, while the daemon enforces tiny
//!   limits on both, sweeps with `on_problem = "repair"` (junk is planted for it to find)
//!   and is itself killed with SIGKILL and restarted every few seconds. It runs for
//!   `SOAK_SECS` (150 s by default, as `.ci/run` does; `scripts/soak DURATION` for longer)
//!   and prints its counts. A go command that fails while one of go's own cleaners ran is
//!   go's own race, counted apart; any other failure fails the test.
//! * The kill loop: the daemon killed at random instants of its first enforcement,
//!   repair and snapshot saving, on both kinds: after each kill it restarts with the
//!   index a fresh full scan finds, and its own temp files are gone.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::common::*;
use crate::go_mod::ModWorld;
use crate::goproxy::VERSIONS;

/// A tiny xorshift generator: the runs are random, the seed is printed.
struct Random(u64);

impl Random {
    fn seeded() -> Random {
        let seed =
            (now() as u64 ^ u64::from(std::process::id())).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        println!("seed {seed}");
        Random(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// The daemon's config for both caches of `world`: with `limits`, tiny ones enforced
/// every minute and at once, sweeps that repair every minute; without, none (to read
/// the index only).
fn config(world: &ModWorld, socket: &Path, state: &Path, limits: bool) -> String {
    let rules = |max_size: &str| {
        match limits {
        true => format!(
            "max_size = \"{max_size}\"\nmin_age = \"1s\"\nunsafe_allow_short_min_age = true\nschedule = \"* * * * *\"\nverify_schedule = \"* * * * *\"\non_problem = \"repair\"\n"
        ),
        false => String::new(),
    }
    };
    format!(
        "[daemon]\nsocket = \"{}\"\nstate_dir = \"{}\"\nlog_level = \"info\"\n\n[[cache]]\nname = \"gb\"\nkind = \"go-build\"\npath = \"{}\"\n{}\n[[cache]]\nname = \"gm\"\nkind = \"go-mod\"\npath = \"{}\"\n{}",
        socket.display(),
        state.display(),
        world.gocache.display(),
        rules("2 MiB"),
        world.modcache.display(),
        rules("4 MiB"),
    )
}

/// A test for `go test` and a fixed app: loops never edit files go reads.
fn add_test(world: &ModWorld) {
    std::fs::write(
        world.app.join("main_test.go"),
        "package main\n\nimport \"testing\"\n\nfunc TestNothing(t *testing.T) {}\n",
    )
    .unwrap();
}

/// What a go command did, and when.
struct Run {
    what: &'static str,
    started: Instant,
    ended: Instant,
    output: Output,
}

/// Junk of the kinds a sweep must find and repair, never anything go would read: an
/// action file of garbage under an id no build computes, and a module zip with no
/// hash of a module no build needs.
fn plant_junk(world: &ModWorld, n: u64) {
    let id = format!("{:064x}", 0xdead_0000_0000u64 + n);
    let shard = world.gocache.join(&id[..2]);
    if std::fs::create_dir_all(&shard).is_ok() {
        let _ = std::fs::write(shard.join(format!("{id}-a")), b"not an action\n");
    }
    let v = world
        .modcache
        .join(format!("cache/download/example.com/junk{n}/@v"));
    if std::fs::create_dir_all(&v).is_ok() {
        let _ = std::fs::write(v.join("v1.0.0.zip"), b"PK not a zip");
    }
}

/// Every `(entry, disk_bytes)` the daemon on `socket` indexes in `cache`.
/// The index the daemon restarted on `state` holds equals what a daemon with no
/// snapshot finds; its own temp files are gone once it saved; and a `.partial` marker
/// a removal cut short left (no go command is ever killed here, so every marker is
/// ours) is gone after one repairing sweep. `true` if there was one.
fn restarts_exact(world: &ModWorld, state: &Path, round: &str) -> bool {
    let dir = world.root.join("check");
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("check.sock");
    let restarted = Daemon::start(&dir, &config(world, &socket, state, false));
    let (gb, gm) = (index_of(&socket, "gb"), index_of(&socket, "gm"));
    restarted.stop();
    let fresh_state = dir.join(format!("fresh-{}", now_nanos_string()));
    let fresh = Daemon::start(&dir, &config(world, &socket, &fresh_state, false));
    let (fresh_gb, fresh_gm) = (index_of(&socket, "gb"), index_of(&socket, "gm"));
    fresh.stop();
    assert_eq!(gb, fresh_gb, "{round}: go-build index after the restart");
    assert_eq!(gm, fresh_gm, "{round}: go-mod index after the restart");
    let leftovers: Vec<String> = files(state)
        .into_iter()
        .filter(|f| f.ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "{round}: temp files left: {leftovers:?}"
    );
    let markers = || -> Vec<String> {
        files(&world.modcache)
            .into_iter()
            .filter(|f| f.ends_with(".partial"))
            .collect()
    };
    if markers().is_empty() {
        return false;
    }
    let repairing = Daemon::start(&dir, &config(world, &socket, state, false));
    let (code, body) = http(&socket, "POST", "/v1/caches/gm/verify?repair=true", "");
    repairing.stop();
    assert_eq!(code, 200, "{round}: {body}");
    assert_eq!(
        markers(),
        Vec::<String>::new(),
        "{round}: after a repair: {body}"
    );
    true
}

fn now_nanos_string() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_string()
}

fn kill(daemon: Daemon) {
    daemon.signal(Signal::SIGKILL);
    drop(daemon); // waits for it
}

#[test]
fn killed_mid_work_the_daemon_restarts_to_the_index_a_fresh_scan_finds() {
    let world = ModWorld::with_own_build_cache();
    add_test(&world);
    world.download_all_ok();
    world.build_ok();
    // A pristine copy of both caches, restored before each round: every round has the
    // same work to do (evict nearly all, repair the junk, save snapshots).
    let pristine = world.root.join("pristine");
    std::fs::create_dir_all(&pristine).unwrap();
    for dir in [&world.gocache, &world.modcache] {
        copy_tree(dir, &pristine.join(dir.file_name().unwrap()));
    }
    let state = world.root.join("state");
    let socket = world.root.join("run/cw.sock");
    let mut random = Random::seeded();
    let rounds: u64 = std::env::var("KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let (mut before_removals, mut midway, mut after_removals) = (0, 0, 0);
    let (mut after_repairs, mut amid_saves, mut markers_finished) = (0, 0, 0);
    let mut window_ms = 400;
    for round in 0..rounds {
        for dir in [&world.gocache, &world.modcache] {
            remove_tree(dir);
            copy_tree(&pristine.join(dir.file_name().unwrap()), dir);
        }
        age_files(&world.gocache, 10 * DAY);
        world.age(10 * DAY);
        plant_junk(&world, round);
        let audited = audit_reasons(&state).len();
        // The kill lands anywhere in the first second: the first scans, the eviction
        // that follows them, the repair of the junk (a sweep asked for as soon as the
        // socket answers), or, one round in four, the snapshot saved on SIGTERM.
        let daemon = Daemon::spawn(&world.root, &config(&world, &socket, &state, true));
        let stop_asking = AtomicBool::new(false);
        let stop_after = random.millis(0, window_ms);
        let on_term = round % 4 == 1;
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop_asking.load(Ordering::Relaxed) {
                    if try_http(&socket, "POST", "/v1/caches/gb/verify?repair=true").is_some() {
                        let _ = try_http(&socket, "POST", "/v1/caches/gm/verify?repair=true");
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
            std::thread::sleep(stop_after);
            if on_term {
                daemon.signal(Signal::SIGTERM);
                std::thread::sleep(random.millis(0, 20));
            }
            kill(daemon);
            stop_asking.store(true, Ordering::Relaxed);
        });
        let reasons = audit_reasons(&state).split_off(audited);
        let removed = reasons.len();
        after_repairs += u64::from(reasons.iter().any(|r| r.starts_with("repair")));
        amid_saves += u64::from(on_term);
        let whole_run = world
            .modcache
            .join("cache/download/golang.org/x/text/@v/v1.1.0.zip");
        // The window follows the machine's speed (a loaded CI runner starts slower):
        // wider after a kill before any removal, narrower after one past them all.
        match (removed, whole_run.exists()) {
            (0, _) => {
                before_removals += 1;
                window_ms = (window_ms * 3 / 2).min(5_000);
            }
            (_, true) => midway += 1,
            (_, false) => {
                after_removals += 1;
                window_ms = (window_ms * 2 / 3).max(50);
            }
        }
        markers_finished += u64::from(restarts_exact(&world, &state, &format!("round {round}")));
        if round % 4 == 3 {
            world.build_ok();
            world.download_all_ok();
            world.verify_ok();
        }
    }
    println!(
        "{rounds} kills: {before_removals} before the first removal, {midway} amid removals, {after_removals} after the eviction; {after_repairs} after a repair began, {amid_saves} amid the snapshot saved on SIGTERM; {markers_finished} left a removal's .partial marker, finished by the next repairing sweep"
    );
    // (A whole eviction here takes about a millisecond, so kills amid its removals
    // are rare by nature; the window makes sure kills land on both sides of it.)
    assert!(
        rounds < 8 || (before_removals > 0 && midway + after_removals > 0),
        "kills must land before and after removals began"
    );
    world.download_all_ok();
    world.build_ok();
    world.verify_ok();
}

/// The reasons of the audit trail's lines: one per removal, written as it is done.
fn audit_reasons(state: &Path) -> Vec<String> {
    std::fs::read_to_string(state.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| json(l)["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `cp -a`, so modes and times come along.
fn copy_tree(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

/// Removes a tree go left read-only.
fn remove_tree(dir: &Path) {
    let _ = std::process::Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(dir)
        .status();
    let _ = std::fs::remove_dir_all(dir);
}

/// Asks the daemon to enforce until the cache is within `limit`, while the soak's go loops
/// run. The module cache must get there: only what the running commands' build lists
/// name is held (a `go mod download` of every version holds everything only while it
/// runs). The build cache may stay above it by what go's running commands may still
/// open — everything used since the oldest of them started, less go's hour of
/// `mtimeInterval` — which in a soak shorter than an hour is all of it: then every
/// byte above the limit must be such an entry, and the daemon must say who holds it.
fn meets_limit_while_go_runs(socket: &Path, cache: &str, limit: u64) -> String {
    let started = Instant::now();
    let mut last = String::new();
    let met = loop {
        if started.elapsed() > DEADLINE {
            panic!("{cache}: not within {limit} B while go runs after {DEADLINE:?}: {last}");
        }
        let Some((_, report)) = try_http(socket, "POST", &format!("/v1/caches/{cache}/evict"))
        else {
            continue;
        };
        let report = json(&report);
        let Some((_, status)) = try_http(socket, "GET", "/v1/status") else {
            continue;
        };
        let status = json(&status);
        let bytes = status["caches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == cache)
            .unwrap()["disk_bytes"]
            .as_u64()
            .unwrap();
        if bytes <= limit {
            break format!("{bytes} B of {limit} B");
        }
        let only_held = report["held_in_use"].as_u64().unwrap_or(0) > 0
            && report["in_use_by"]
                .as_str()
                .is_some_and(|by| by.contains("go (pid"))
            && report["unmet"]
                .as_array()
                .unwrap()
                .iter()
                .all(|u| u.as_str().is_some_and(|u| u.contains("running tool")));
        if cache == "gb" && only_held {
            break format!(
                "{bytes} B of {limit} B, the rest held by running go commands ({} entries)",
                report["held_in_use"]
            );
        }
        last = format!("{bytes} B; evict: {report}");
        std::thread::sleep(Duration::from_millis(500));
    };
    format!("{cache}: {met} after {:.0?}", started.elapsed())
}

/// How long the soak runs: `SOAK_SECS`, else 150 s.
fn soak_duration() -> Duration {
    Duration::from_secs(
        std::env::var("SOAK_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(150),
    )
}

#[test]
fn soak_go_commands_never_fail_because_of_the_daemon() {
    let world = ModWorld::with_own_build_cache();
    add_test(&world);
    world.download_all_ok();
    world.build_ok();
    let state = world.root.join("state");
    let socket = world.root.join("run/cw.sock");
    let text = config(&world, &socket, &state, true);
    let daemon = Mutex::new(Some(Daemon::start(&world.root, &text)));
    let deadline = Instant::now() + soak_duration();
    let runs: Mutex<Vec<Run>> = Mutex::new(Vec::new());
    let cleans: Mutex<Vec<(Instant, Instant)>> = Mutex::new(Vec::new());
    let clean_failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let (kills, deferred, planted) = (
        std::sync::atomic::AtomicU64::new(0),
        std::sync::atomic::AtomicU64::new(0),
        std::sync::atomic::AtomicU64::new(0),
    );
    let done = AtomicBool::new(false);
    let mut limits_while_go_runs = Vec::new();
    let world = &world;
    // `go clean -modcache` racing go's own downloads leaves trees half extracted with
    // go's `.partial` marker already removed, which every later go command trusts
    // (CI's soaks at 2c48b84 and 5b782b2: "undefined: Position", "does not contain
    // package"): go's own race with lasting damage. So it runs while none of the
    // loops' go commands (nor the junk planter) does; it still races the daemon, and
    // `go clean -cache` races everything.
    let modcache_gate = std::sync::RwLock::new(());
    let go = |what: &'static str, dir: &Path, args: &[&str]| {
        let _not_cleaning = modcache_gate.read().unwrap();
        let started = Instant::now();
        let output = world.go_in(dir, args);
        runs.lock().unwrap().push(Run {
            what,
            started,
            ended: Instant::now(),
            output,
        });
    };
    std::thread::scope(|s| {
        // Whatever happens below (a failed check panics), the loops stop: the scope
        // joins them before the panic goes on.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&done);
        let loops: [(&'static str, &Path, &[&str]); 5] = [
            ("go build", &world.app, &["build", "-o", "/dev/null", "."]),
            ("go test", &world.app, &["test", "-count=1", "."]),
            ("go vet", &world.app, &["vet", "."]),
            ("go run", &world.app, &["run", "."]),
            ("go mod download", &world.dl, &[]),
        ];
        for (i, (what, dir, args)) in loops.into_iter().enumerate() {
            let (go, done) = (&go, &done);
            s.spawn(move || {
                let mut random = Random(0x1234_5678 + i as u64 * 7919);
                let all: Vec<String> = ["mod", "download"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(
                        [
                            "github.com/pkg/errors",
                            "github.com/google/uuid",
                            "github.com/BurntSushi/toml",
                            "golang.org/x/text",
                        ]
                        .iter()
                        .flat_map(|m| VERSIONS.map(|v| format!("{m}@{v}"))),
                    )
                    .collect();
                let all: Vec<&str> = all.iter().map(String::as_str).collect();
                // Go runs until the checks below are done, not only until the deadline.
                while !done.load(Ordering::Relaxed) {
                    go(what, dir, if args.is_empty() { &all } else { args });
                    std::thread::sleep(random.millis(100, 1500));
                }
            });
        }
        // Go's own cleaners, racing ours and the loops above.
        s.spawn(|| {
            let mut random = Random(0xc1ea);
            let mut n = 0;
            while Instant::now() + Duration::from_secs(20) < deadline {
                std::thread::sleep(random.millis(10_000, 30_000));
                let which = if n % 2 == 0 { "-cache" } else { "-modcache" };
                let _alone = (which == "-modcache").then(|| modcache_gate.write().unwrap());
                let started = Instant::now();
                // `go clean -cache`'s RemoveAll races the loops' go commands refilling
                // the cache ("directory not empty"): go's own race, counted. A failed
                // `go clean -modcache` leaves module trees half removed with no
                // `.partial` marker, which every later go command trusts ("module …
                // does not contain package …"): run again, as its user would, and
                // count the whole span as go's.
                for _ in 0..10 {
                    let out = world.go_in(&world.app, &["clean", which]);
                    if out.status.success() {
                        break;
                    }
                    clean_failures.lock().unwrap().push(format!(
                        "go clean {which}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                cleans.lock().unwrap().push((started, Instant::now()));
                n += 1;
            }
        });
        // Requests, junk for the sweeps, and the daemon killed and restarted.
        s.spawn(|| {
            let mut random = Random(0x5eed);
            while !done.load(Ordering::Relaxed) {
                for cache in ["gb", "gm"] {
                    if let Some((200, body)) =
                        try_http(&socket, "POST", &format!("/v1/caches/{cache}/evict"))
                    {
                        let held = json(&body)["held_in_use"].as_u64().unwrap_or(0);
                        deferred.fetch_add(held.min(1), Ordering::Relaxed);
                    }
                }
                if random.below(8) == 0 {
                    let n = planted.fetch_add(1, Ordering::Relaxed);
                    // Planting recreates `cache/download/…`: not while go removes the
                    // root (the 30-minute soak at 566bfaa: "unlinkat …/pkg/mod:
                    // directory not empty", the harness racing go's clean).
                    let _not_cleaning = modcache_gate.read().unwrap();
                    plant_junk(world, n);
                    let _ = try_http(&socket, "POST", "/v1/caches/gb/verify?repair=true");
                    let _ = try_http(&socket, "POST", "/v1/caches/gm/verify?repair=true");
                }
                std::thread::sleep(random.millis(200, 800));
            }
        });
        s.spawn(|| {
            let mut random = Random(0x4b11);
            while Instant::now() + Duration::from_secs(15) < deadline {
                std::thread::sleep(random.millis(3_000, 10_000));
                let mut slot = daemon.lock().unwrap();
                kill(slot.take().unwrap());
                kills.fetch_add(1, Ordering::Relaxed);
                *slot = Some(Daemon::start(&world.root, &text));
            }
        });
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        // Go still runs (five loops, one of them `go mod download` of every version):
        // both caches meet their limits anyway (issue #31).
        // The module cache's 4 MiB is below what the app's build list alone takes (the
        // four versions it builds with, about 48 MiB, held while go builds it): for
        // this check its limit is raised above that, so what must go is every version
        // no running go command reads.
        let checking = Instant::now();
        let config_file = world.root.join("config.toml");
        let wide = text.replace("max_size = \"4 MiB\"", "max_size = \"64 MiB\"");
        assert_ne!(wide, text);
        std::fs::write(&config_file, &wide).unwrap();
        let reloaded = try_http(&socket, "POST", "/v1/reload");
        assert_eq!(reloaded.as_ref().map(|r| r.0), Some(200), "{reloaded:?}");
        limits_while_go_runs.extend(
            [("gb", 2u64 << 20), ("gm", 64 << 20)]
                .map(|(cache, limit)| meets_limit_while_go_runs(&socket, cache, limit)),
        );
        std::fs::write(&config_file, &text).unwrap();
        let reloaded = try_http(&socket, "POST", "/v1/reload");
        assert_eq!(reloaded.as_ref().map(|r| r.0), Some(200), "{reloaded:?}");
        let checked = Instant::now();
        // The loops go on: a command running during the checks has ended by now.
        std::thread::sleep(Duration::from_secs(5));
        let overlapping = runs
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.started <= checked && r.ended >= checking)
            .count();
        assert!(overlapping > 0, "go ran during the checks");
        limits_while_go_runs.push(format!("{overlapping} go commands ran during the checks"));
        done.store(true, Ordering::Relaxed);
    });

    // Classify: a failure while one of go's own cleaners ran is go's race, not ours.
    let runs = runs.into_inner().unwrap();
    let cleans = cleans.into_inner().unwrap();
    let mut by_what: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    let (mut ours, mut go_races) = (Vec::new(), Vec::new());
    for run in &runs {
        let counts = by_what.entry(run.what).or_default();
        counts.0 += 1;
        if run.output.status.success() {
            continue;
        }
        let racing_clean = cleans
            .iter()
            .any(|(from, to)| run.started <= *to && *from <= run.ended);
        if racing_clean {
            counts.2 += 1;
            let stderr = String::from_utf8_lossy(&run.output.stderr);
            if go_races.len() < 4 {
                go_races.push(format!(
                    "{}: {}",
                    run.what,
                    stderr.lines().next().unwrap_or("")
                ));
            }
        } else {
            counts.1 += 1;
            ours.push(format!(
                "{}: {}",
                run.what,
                String::from_utf8_lossy(&run.output.stderr)
            ));
        }
    }

    // Afterwards: the daemon (running, restarted many times) brings both caches within
    // their limits; go rebuilds and verifies everything; the index is exact.
    let daemon = daemon.into_inner().unwrap().unwrap();
    // The live index is the disk, after all that churn (issue #29).
    daemon.assert_index_is_fresh_scan("gb");
    daemon.assert_index_is_fresh_scan("gm");
    // With no go command running, a repairing sweep clears what it finds (during the
    // soak go runs nearly always, and fresh damage waits for it, or go clean or
    // eviction takes the junk first), and a second sweep finds nothing.
    plant_junk(world, 999_999);
    // (A last go clean -cache or the 2 MiB limit may have left no output to damage: a
    // build makes some.)
    world.build_ok();
    // (The daemon evicts to the limit meanwhile: an output gone before it is damaged
    // is looked for again.)
    wait_for("an output in the build cache to damage", DEADLINE, || {
        let output = walkdir::WalkDir::new(&world.gocache)
            .into_iter()
            .filter_map(Result::ok)
            .find(|e| {
                e.file_name().to_string_lossy().ends_with("-d")
                    && e.metadata().is_ok_and(|m| m.len() > 1)
            })?;
        let len = output.metadata().ok()?.len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(output.path())
            .ok()?;
        file.set_len(len / 2).ok()
    });
    // The watcher has seen it all: the index is the disk again.
    daemon.assert_index_is_fresh_scan("gb");
    daemon.assert_index_is_fresh_scan("gm");
    let mut repaired_at_end = 0;
    for cache in ["gb", "gm"] {
        let path = format!("/v1/caches/{cache}/verify?repair=true");
        let (code, first) = daemon.post(&path, "");
        assert_eq!(code, 200, "{first}");
        repaired_at_end += first["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["repaired"] == true)
            .count();
        let (_, second) = daemon.post(&path, "");
        assert_eq!(
            second["problems"].as_array().unwrap().len(),
            0,
            "{cache}: {second}"
        );
    }
    // (How many it repaired depends on what the watcher had indexed by then: printed,
    // while a second sweep finding nothing is the guarantee.)
    let mut within = Vec::new();
    for (cache, limit) in [("gb", 2u64 << 20), ("gm", 4 << 20)] {
        // Within seconds: a daemon restarted just as go clean removed the root
        // watches the recreated root within a second (`daemon::ROOT_POLL`) and
        // rescans it; an entry used since a plan is skipped and re-read, so the next
        // request sees it as it is.
        let started = Instant::now();
        let (bytes, tries) = wait_for(
            "the cache within its limit",
            Duration::from_secs(20),
            || {
                let (code, report) = daemon.post(&format!("/v1/caches/{cache}/evict"), "");
                assert_eq!(code, 200, "{report}");
                let bytes = daemon.cache_status(cache)["disk_bytes"].as_u64().unwrap();
                if bytes > limit {
                    std::thread::sleep(Duration::from_secs(2));
                }
                (bytes <= limit).then_some((bytes, started.elapsed()))
            },
        );
        within.push(format!(
            "{cache} {bytes} B of {limit} B (after {tries:.0?})"
        ));
    }
    let audit = std::fs::read_to_string(state.join("audit.jsonl")).unwrap_or_default();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for line in audit.lines() {
        let event = json(line);
        let reason = event["reason"].as_str().unwrap_or("?");
        *reasons
            .entry(reason.split(':').next().unwrap().to_string())
            .or_default() += 1;
    }
    daemon.stop();
    restarts_exact(world, &state, "after the soak");
    world.download_all_ok();
    world.build_ok();
    world.verify_ok();

    println!("soak of {:?}:", soak_duration());
    for (what, (run, failed, go_race)) in &by_what {
        println!("  {what}: {run} run, {failed} failed because of the daemon, {go_race} failed racing go's own clean");
    }
    println!(
        "  go clean runs: {}; daemon kill -9 + restart: {}; evict requests held by running go commands: {}; junk planted: {}",
        cleans.len(),
        kills.load(Ordering::Relaxed),
        deferred.load(Ordering::Relaxed),
        planted.load(Ordering::Relaxed)
    );
    let clean_failures = clean_failures.into_inner().unwrap();
    println!("  go clean failures (-cache racing the loops' go commands, -modcache only the daemon): {clean_failures:#?}");
    println!("  removals in the audit trail by reason: {reasons:?}");
    println!("  failures racing go clean, for example: {go_races:#?}");
    println!("  while go still ran: {limits_while_go_runs:?}");
    println!(
        "  afterwards: {}; the final repairing sweeps repaired {repaired_at_end}",
        within.join(", ")
    );
    assert!(
        ours.is_empty(),
        "{} go commands failed because of the daemon:\n{}",
        ours.len(),
        ours.join("\n")
    );
    assert!(
        by_what.values().all(|(run, _, _)| *run > 0),
        "every loop ran: {by_what:?}"
    );
}
