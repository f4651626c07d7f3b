use super::*;
use crate::kinds::Survivors;

const EVICT: Removing = Removing::Evict(&Survivors::NONE);
const H1: &str = "0123456789abcdef";
const H2: &str = "fedcba9876543210";

/// A target directory as cargo leaves it: a debug profile with two units (one with a
/// build script), an incremental directory, uplifted outputs, and a --target profile.
fn target_dir() -> (tempfile::TempDir, CargoTargetKind) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    std::fs::write(
        root.join("CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by cargo.\n",
    )
    .unwrap();
    let files: Vec<(String, &[u8])> = vec![
        ("debug/.cargo-lock".into(), b""),
        (format!("debug/.fingerprint/serde-{H1}/lib-serde"), b"0123"),
        (
            format!("debug/.fingerprint/serde-{H1}/lib-serde.json"),
            b"{\"rustc\":1}",
        ),
        (
            format!("debug/.fingerprint/serde-{H1}/invoked.timestamp"),
            b"",
        ),
        (format!("debug/deps/libserde-{H1}.rlib"), b"!<arch>\nrest"),
        (format!("debug/deps/libserde-{H1}.rmeta"), b"rust\0\0\0meta"),
        (format!("debug/deps/serde-{H1}.d"), b"deps"),
        (
            format!("debug/build/serde-{H1}/out/generated.rs"),
            b"// generated",
        ),
        (format!("debug/.fingerprint/app-{H2}/bin-app"), b"4567"),
        (format!("debug/deps/app-{H2}"), b"\x7fELF...."),
        (format!("debug/deps/app-{H2}.d"), b"deps"),
        (
            "debug/incremental/app-1abcdefgh/s-abc/query-cache.bin".into(),
            b"cache",
        ),
        ("debug/app".into(), b"\x7fELF...."),
        ("debug/app.d".into(), b"deps"),
        (
            format!("x86_64-unknown-linux-gnu/release/.fingerprint/serde-{H2}/lib-serde"),
            b"89",
        ),
        (
            format!("x86_64-unknown-linux-gnu/release/deps/libserde-{H2}.rlib"),
            b"!<arch>\n",
        ),
        ("doc/serde/index.html".into(), b"<html>"),
    ];
    for (rel, bytes) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }
    let kind = CargoTargetKind::new(root.to_path_buf());
    (t, kind)
}

fn unit(profile: &str, hash: &str) -> TargetId {
    TargetId {
        profile: Arc::from(profile),
        part: Part::Unit(u64::from_str_radix(hash, 16).unwrap()),
    }
}

#[test]
fn a_scan_finds_units_and_incremental_directories_per_profile() {
    let (_t, kind) = target_dir();
    let mut found = kind.scan();
    assert!(found.errors.is_empty(), "{:?}", found.errors);
    found.entries.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<String> = found
        .entries
        .iter()
        .map(|(id, _)| kind.name_of(id))
        .collect();
    assert_eq!(
        names,
        [
            format!("debug/serde-{H1}"),
            format!("debug/app-{H2}"),
            "debug/incremental/app-1abcdefgh".to_string(),
            format!("x86_64-unknown-linux-gnu/release/serde-{H2}"),
        ]
    );
    let serde = &found.entries[0].1;
    // The apparent bytes of exactly its files: fingerprint (4 + 11 + an empty
    // timestamp), outputs (12 + 11 + 4) and the build script's out/ (12).
    assert!(serde.disk_bytes > 0, "{serde:?}");
    assert_eq!(serde.apparent_bytes, 4 + 11 + 12 + 11 + 4 + 12);
    for (id, meta) in &found.entries {
        assert_eq!(kind.stat(id).unwrap(), Some(*meta), "{}", kind.name_of(id));
        assert_eq!(kind.parse_name(&kind.name_of(id)), Some(id.clone()));
        assert_eq!(
            kind.entry_at(Path::new(&kind.path_of(id))),
            Some(id.clone())
        );
    }
    assert_eq!(kind.tier(&found.entries[2].0), 0, "incremental goes first");
    assert_eq!(kind.tier(&found.entries[0].0), 1);
}

#[test]
fn changed_paths_map_to_their_unit() {
    let (_t, kind) = target_dir();
    let serde = unit("debug", H1);
    for rel in [
        format!("debug/deps/libserde-{H1}.rlib"),
        format!("debug/.fingerprint/serde-{H1}"),
        format!("debug/.fingerprint/serde-{H1}/lib-serde"),
        format!("debug/build/serde-{H1}/out/generated.rs"),
    ] {
        assert_eq!(kind.entry_at(Path::new(&rel)), Some(serde.clone()), "{rel}");
    }
    assert_eq!(
        kind.entry_at(Path::new(&format!(
            "x86_64-unknown-linux-gnu/release/deps/libserde-{H2}.rlib"
        ))),
        Some(unit("x86_64-unknown-linux-gnu/release", H2))
    );
    for rel in [
        "debug/app",
        "debug/.cargo-lock",
        "CACHEDIR.TAG",
        "doc/serde/index.html",
        "debug/deps",
    ] {
        assert_eq!(kind.entry_at(Path::new(rel)), None, "{rel}");
    }
}

#[test]
fn removal_takes_the_whole_unit_and_nothing_else() {
    let (t, kind) = target_dir();
    let serde = unit("debug", H1);
    assert!(
        matches!(kind.remove(&serde, i64::MAX, EVICT), Removal::Removed { disk_bytes } if disk_bytes > 0)
    );
    assert_eq!(kind.stat(&serde).unwrap(), None);
    for gone in [
        format!("debug/.fingerprint/serde-{H1}"),
        format!("debug/deps/libserde-{H1}.rlib"),
        format!("debug/build/serde-{H1}"),
    ] {
        assert!(!t.path().join(&gone).exists(), "{gone}");
    }
    for kept in [
        "debug/app",
        &format!("debug/deps/app-{H2}"),
        "debug/.cargo-lock",
    ] {
        assert!(t.path().join(kept).exists(), "{kept}");
    }
    assert_eq!(kind.remove(&serde, i64::MAX, EVICT), Removal::Gone);
}

#[test]
fn nothing_is_removed_while_cargo_holds_the_build_lock() {
    let (t, kind) = target_dir();
    // Another process holds it, as cargo would (flock(1), exclusive, for a while).
    // (`-o`: the lock stays with flock itself, so killing it lets go.)
    let mut holder = std::process::Command::new("flock")
        .arg("-o")
        .arg(t.path().join("debug/.cargo-lock"))
        .args(["sleep", "60"])
        .spawn()
        .expect("flock(1) from util-linux");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while kind.in_use().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "flock(1) never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let serde = unit("debug", H1);
    match kind.remove(&serde, i64::MAX, EVICT) {
        Removal::InUse(why) => assert!(
            why.contains("(pid ") && why.contains("holds the build lock of debug"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(t
        .path()
        .join(format!("debug/deps/libserde-{H1}.rlib"))
        .exists());
    let in_use = kind.in_use().expect("the held profile");
    assert!(kind.holds(&in_use, &serde, 0));
    assert!(!kind.holds(&in_use, &unit("x86_64-unknown-linux-gnu/release", H2), 0));
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(kind.in_use(), None);
    assert!(matches!(
        kind.remove(&serde, i64::MAX, EVICT),
        Removal::Removed { .. }
    ));
}

#[test]
fn a_unit_used_since_the_plan_stays() {
    let (_t, kind) = target_dir();
    let serde = unit("debug", H1);
    assert!(matches!(
        kind.remove(&serde, 1000, EVICT),
        Removal::Skipped(_)
    ));
}

#[test]
fn outputs_rustc_could_not_read_are_problems() {
    let (t, kind) = target_dir();
    let serde = unit("debug", H1);
    assert_eq!(kind.verify(&serde), vec![]);
    std::fs::write(t.path().join(format!("debug/deps/libserde-{H1}.rlib")), b"").unwrap();
    std::fs::write(
        t.path().join(format!("debug/deps/libserde-{H1}.rmeta")),
        b"garbage",
    )
    .unwrap();
    std::fs::write(
        t.path()
            .join(format!("debug/.fingerprint/serde-{H1}/lib-serde.json")),
        b"{\"rus",
    )
    .unwrap();
    let mut problems: Vec<&str> = kind.verify(&serde).iter().map(|f| f.problem).collect();
    problems.sort();
    assert_eq!(
        problems,
        [
            "fingerprint-not-json",
            "rlib-not-an-archive",
            "rmeta-not-rust-metadata"
        ]
    );
    // A FIFO where an output was is reported, never waited on.
    std::fs::remove_file(t.path().join(format!("debug/deps/libserde-{H1}.rlib"))).unwrap();
    nix::unistd::mkfifo(
        &t.path().join(format!("debug/deps/libserde-{H1}.rlib")),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    assert!(kind
        .verify(&serde)
        .iter()
        .any(|f| f.problem == "unreadable"));
}

#[test]
fn symlinks_planted_in_a_unit_lead_nowhere() {
    let (t, kind) = target_dir();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("precious"), b"x").unwrap();
    // A unit's build directory swapped for a link to elsewhere, and a link named like
    // an output.
    std::fs::remove_dir_all(t.path().join(format!("debug/build/serde-{H1}"))).unwrap();
    std::os::unix::fs::symlink(
        outside.path(),
        t.path().join(format!("debug/build/serde-{H1}")),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("precious"),
        t.path().join(format!("debug/deps/libserde-{H1}.so")),
    )
    .unwrap();
    let serde = unit("debug", H1);
    assert!(kind.stat(&serde).unwrap().is_some());
    assert!(matches!(
        kind.remove(&serde, i64::MAX, EVICT),
        Removal::Removed { .. }
    ));
    assert!(
        outside.path().join("precious").exists(),
        "nothing outside is touched"
    );
    // And a profile directory swapped for a link: no units there.
    std::fs::remove_dir_all(t.path().join("x86_64-unknown-linux-gnu")).unwrap();
    std::os::unix::fs::symlink(outside.path(), t.path().join("x86_64-unknown-linux-gnu")).unwrap();
    assert!(kind
        .scan()
        .entries
        .iter()
        .all(|(id, _)| !id.profile.starts_with("x86_64")));
}

#[test]
fn only_a_directory_cargo_tagged_is_a_target_directory() {
    let (t, _kind) = target_dir();
    assert_eq!(CargoTargetKind::check_root(t.path()), Ok(()));
    let other = tempfile::tempdir().unwrap();
    assert!(CargoTargetKind::check_root(other.path()).is_err());
    std::fs::write(
        other.path().join("CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n# made by some other tool\n",
    )
    .unwrap();
    assert!(CargoTargetKind::check_root(other.path())
        .unwrap_err()
        .contains("cargo did not write"));
}

proptest::proptest! {
    /// Any name is a unit hash or not, never a panic; a hash found prints back.
    #[test]
    fn arbitrary_names_never_panic(name in "[a-z0-9_.-]{0,40}") {
        if let Some(hash) = layout::hash_of(OsStr::new(&name)) {
            let printed = format!("{:016x}", hash);
            proptest::prop_assert!(name.contains(&printed));
        }
        let (_t, kind) = target_dir();
        let _ = kind.entry_at(Path::new(&format!("debug/deps/{name}")));
        let _ = kind.parse_name(&name);
    }
}

/// Outputs whose unit lost its fingerprint are a unit of their own, named by its hash,
/// and its name and path map back to it (a recheck finds it by its path).
#[test]
fn outputs_without_a_fingerprint_are_a_unit_named_by_its_hash() {
    let (t, kind) = target_dir();
    std::fs::write(
        t.path().join("debug/deps/liborphan-1111222233334444.rlib"),
        b"!<arch>\n",
    )
    .unwrap();
    let found = kind.scan();
    let (id, _) = found
        .entries
        .iter()
        .find(|(id, _)| kind.name_of(id) == "debug/1111222233334444")
        .expect("the orphan's unit");
    assert_eq!(
        kind.entry_at(Path::new(&kind.path_of(id))),
        Some(id.clone())
    );
    assert_eq!(kind.parse_name("debug/1111222233334444"), Some(id.clone()));
    assert!(matches!(
        kind.remove(id, i64::MAX, EVICT),
        Removal::Removed { .. }
    ));
    assert!(!t
        .path()
        .join("debug/deps/liborphan-1111222233334444.rlib")
        .exists());
}
