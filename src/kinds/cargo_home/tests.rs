use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;

use nix::fcntl::{Flock, FlockArg};

use super::*;
use crate::kinds::Survivors;

const EVICT: Removing = Removing::Evict(&Survivors::NONE);
const REG: &str = "index.crates.io-1949cf8c6b5b557f";
const CRATE: &[u8] = b"\x1f\x8b pretend this is a gzipped tar";

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A cargo home as cargo leaves it: a sparse index with its summaries, two packages
/// downloaded and extracted (one with a name `sha-1` that has a dash and a digit), a
/// git dependency's database and checkout, an installed program, cargo's locks.
fn cargo_home() -> (tempfile::TempDir, CargoHomeKind) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for f in [layout::DOWNLOAD_LOCK, layout::MUTATE_LOCK] {
        write(root, f, b"");
    }
    write(
        root,
        "registry/CACHEDIR.TAG",
        b"Signature: 8a477f597d28d172789f06886806bc55",
    );
    write(root, &format!("registry/index/{REG}/config.json"), b"{}");
    write(
        root,
        &format!("registry/index/{REG}/.cache/se/rd/serde"),
        &index::tests::summaries(&[("1.0.0", &sha256(CRATE))]),
    );
    write(
        root,
        &format!("registry/index/{REG}/.cache/sh/a-/sha-1"),
        &index::tests::summaries(&[("0.10.1", &sha256(b"other"))]),
    );
    write(
        root,
        &format!("registry/cache/{REG}/serde-1.0.0.crate"),
        CRATE,
    );
    write(
        root,
        &format!("registry/cache/{REG}/sha-1-0.10.1.crate"),
        b"other",
    );
    for pkg in ["serde-1.0.0", "sha-1-0.10.1"] {
        write(
            root,
            &format!("registry/src/{REG}/{pkg}/.cargo-ok"),
            br#"{"v":1}"#,
        );
        write(
            root,
            &format!("registry/src/{REG}/{pkg}/src/lib.rs"),
            b"pub fn f() {}",
        );
    }
    write(
        root,
        "git/db/dep-0123456789abcdef/HEAD",
        b"ref: refs/heads/main",
    );
    write(
        root,
        "git/db/dep-0123456789abcdef/objects/pack/p.pack",
        &[7; 5000],
    );
    write(
        root,
        "git/checkouts/dep-0123456789abcdef/a1b2c3d/.cargo-ok",
        b"",
    );
    write(
        root,
        "git/checkouts/dep-0123456789abcdef/a1b2c3d/src/lib.rs",
        b"//",
    );
    write(root, "bin/cargo-tool", &[1; 9000]);
    let kind = CargoHomeKind::new(root.to_path_buf());
    (t, kind)
}

fn src(pkg: &str) -> HomeId {
    HomeId::Src(REG.into(), pkg.into())
}

fn krate(file: &str) -> HomeId {
    HomeId::Crate(REG.into(), file.into())
}

fn scanned(kind: &CargoHomeKind) -> HashMap<HomeId, EntryMeta> {
    let scan = kind.scan();
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    scan.entries.into_iter().collect()
}

#[test]
fn a_scan_finds_what_cargo_gc_counts_in_its_tiers() {
    let (_t, kind) = cargo_home();
    let scan = kind.scan();
    let ids: BTreeSet<String> = scan
        .entries
        .iter()
        .map(|(id, _)| kind.name_of(id))
        .collect();
    let expected: BTreeSet<String> = [
        format!("registry/index/{REG}"),
        format!("registry/cache/{REG}/serde-1.0.0.crate"),
        format!("registry/cache/{REG}/sha-1-0.10.1.crate"),
        format!("registry/src/{REG}/serde-1.0.0"),
        format!("registry/src/{REG}/sha-1-0.10.1"),
        "git/db/dep-0123456789abcdef".into(),
        "git/checkouts/dep-0123456789abcdef/a1b2c3d".into(),
    ]
    .into();
    assert_eq!(ids, expected);
    for (id, meta) in &scan.entries {
        assert!(meta.disk_bytes > 0, "{id:?}");
        assert_eq!(kind.parse_name(&kind.name_of(id)).as_ref(), Some(id));
        assert_eq!(
            kind.stat(id).unwrap(),
            Some(*meta),
            "stat agrees with the scan"
        );
    }
    assert_eq!(kind.tier(&src("serde-1.0.0")), 0);
    assert_eq!(kind.tier(&krate("serde-1.0.0.crate")), 1);
    assert_eq!(kind.tier(&HomeId::Index(REG.into())), AGE_ONLY);
    let bin = &scan.unmanaged[0];
    assert!(
        bin.what.contains("bin/") && bin.disk_bytes >= 9000,
        "{bin:?}"
    );
}

#[test]
fn changed_paths_map_to_their_entry() {
    let (_t, kind) = cargo_home();
    let at = |p: &str| kind.entry_at(Path::new(p));
    assert_eq!(
        at(&format!("registry/src/{REG}/serde-1.0.0/.cargo-ok")),
        Some(src("serde-1.0.0"))
    );
    assert_eq!(
        at(&format!("registry/cache/{REG}/serde-1.0.0.crate")),
        Some(krate("serde-1.0.0.crate"))
    );
    assert_eq!(
        at("git/checkouts/dep-0123456789abcdef/a1b2c3d/src/lib.rs"),
        Some(HomeId::Checkout(
            "dep-0123456789abcdef".into(),
            "a1b2c3d".into()
        ))
    );
    assert_eq!(
        at(&format!("registry/index/{REG}/.cache/se")),
        Some(HomeId::Index(REG.into()))
    );
    for none in [
        "bin/cargo-tool",
        "registry/src",
        ".package-cache",
        "config.toml",
        "registry/cache/r/x.txt",
    ] {
        assert_eq!(at(none), None, "{none}");
    }
}

#[test]
fn cargo_record_of_use_is_the_last_use_where_it_is_later() {
    let (t, kind) = cargo_home();
    let recorded = crate::now() + 10;
    tracker::write_for_test(
        t.path(),
        &[
            (src("serde-1.0.0"), recorded),
            (krate("serde-1.0.0.crate"), 5),
        ],
    );
    let entries = scanned(&kind);
    assert_eq!(entries[&src("serde-1.0.0")].last_use, recorded);
    assert!(
        entries[&krate("serde-1.0.0.crate")].last_use > 5,
        "file times are later"
    );
    // Cargo records a new use: the entries whose record changed are reported.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::remove_file(t.path().join(layout::TRACKER)).unwrap();
    tracker::write_for_test(t.path(), &[(src("serde-1.0.0"), recorded + 600)]);
    let mut changed = Vec::new();
    kind.entries_at(Path::new(layout::TRACKER), &mut changed);
    changed.sort();
    assert_eq!(
        changed,
        vec![krate("serde-1.0.0.crate"), src("serde-1.0.0")]
    );
    assert_eq!(
        kind.stat(&src("serde-1.0.0")).unwrap().unwrap().last_use,
        recorded + 600
    );
}

#[test]
fn a_tracker_that_is_no_database_leaves_file_times_and_says_so() {
    let (t, kind) = cargo_home();
    write(t.path(), layout::TRACKER, b"not sqlite at all");
    let scan = kind.scan();
    assert_eq!(scan.entries.len(), 7);
    assert!(
        scan.errors.iter().any(|e| e.contains(".global-cache")),
        "{:?}",
        scan.errors
    );
}

#[test]
fn verify_finds_damaged_downloads_and_cut_short_extractions() {
    let (t, kind) = cargo_home();
    for (id, _) in kind.scan().entries {
        assert_eq!(kind.verify(&id), Vec::new(), "{id:?} is healthy");
    }
    write(
        t.path(),
        &format!("registry/cache/{REG}/serde-1.0.0.crate"),
        b"\x1f\x8b damaged",
    );
    let found = kind.verify(&krate("serde-1.0.0.crate"));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].problem, "checksum-mismatch");
    assert!(found[0].detail.contains(&sha256(CRATE)), "{found:?}");
    std::fs::remove_file(
        t.path()
            .join(format!("registry/src/{REG}/sha-1-0.10.1/.cargo-ok")),
    )
    .unwrap();
    assert_eq!(kind.verify(&src("sha-1-0.10.1"))[0].problem, "partial");
    let checkout = HomeId::Checkout("dep-0123456789abcdef".into(), "a1b2c3d".into());
    std::fs::remove_file(
        t.path()
            .join("git/checkouts/dep-0123456789abcdef/a1b2c3d/.cargo-ok"),
    )
    .unwrap();
    assert_eq!(kind.verify(&checkout)[0].problem, "partial");
    // Nothing is judged while another process (cargo) holds a lock: it may be writing.
    let mut cargo = std::process::Command::new("flock")
        .args(["--shared", "--close"])
        .arg(t.path().join(layout::MUTATE_LOCK))
        .args(["sleep", "60"])
        .spawn()
        .expect("util-linux's flock");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while kind.in_use().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let in_use = kind.in_use();
    let while_held = kind.verify(&checkout);
    let removal = kind.remove(&checkout, crate::now() + 100, EVICT);
    cargo.kill().unwrap();
    cargo.wait().unwrap();
    let in_use = in_use.expect("the lock another process holds is seen");
    assert!(
        in_use.by.contains("flock (pid") && kind.holds(&in_use, &checkout, 0),
        "{in_use:?}"
    );
    assert!(while_held.is_empty(), "{while_held:?}");
    assert!(matches!(removal, Removal::InUse(_)), "{removal:?}");
    assert_eq!(kind.verify(&checkout)[0].problem, "partial");
}

#[test]
fn removal_takes_the_entry_and_nothing_else() {
    let (t, kind) = cargo_home();
    let before = scanned(&kind);
    let id = src("serde-1.0.0");
    match kind.remove(&id, crate::now() + 100, EVICT) {
        Removal::Removed { disk_bytes } => assert_eq!(disk_bytes, before[&id].disk_bytes),
        other => panic!("{other:?}"),
    }
    assert!(!t
        .path()
        .join(format!("registry/src/{REG}/serde-1.0.0"))
        .exists());
    let after = scanned(&kind);
    assert_eq!(after.len(), before.len() - 1);
    assert_eq!(kind.remove(&id, crate::now() + 100, EVICT), Removal::Gone);
    let file = krate("sha-1-0.10.1.crate");
    assert!(matches!(
        kind.remove(&file, crate::now() + 100, EVICT),
        Removal::Removed { .. }
    ));
    assert!(t
        .path()
        .join(format!("registry/src/{REG}/sha-1-0.10.1/src/lib.rs"))
        .exists());
}

#[test]
fn nothing_is_removed_while_cargo_holds_a_package_cache_lock() {
    let (t, kind) = cargo_home();
    let id = src("serde-1.0.0");
    for (name, how) in [
        (layout::MUTATE_LOCK, FlockArg::LockShared),
        (layout::DOWNLOAD_LOCK, FlockArg::LockExclusive),
    ] {
        // Another open file description, as another cargo process would have.
        let file = std::fs::File::open(t.path().join(name)).unwrap();
        let held = Flock::lock(file, how).unwrap();
        match kind.remove(&id, crate::now() + 100, EVICT) {
            Removal::InUse(why) => assert!(why.contains(name), "{why}"),
            other => panic!("{name}: {other:?}"),
        }
        drop(held);
    }
    assert!(t
        .path()
        .join(format!("registry/src/{REG}/serde-1.0.0/.cargo-ok"))
        .exists());
    assert!(matches!(
        kind.remove(&id, crate::now() + 100, EVICT),
        Removal::Removed { .. }
    ));
    // Lock files are never created (a root daemon's would lock the user's cargo out).
    let (t, kind) = cargo_home();
    for f in [layout::DOWNLOAD_LOCK, layout::MUTATE_LOCK] {
        std::fs::remove_file(t.path().join(f)).unwrap();
    }
    assert!(matches!(
        kind.remove(&id, crate::now() + 100, EVICT),
        Removal::Removed { .. }
    ));
    assert!(!t.path().join(layout::DOWNLOAD_LOCK).exists());
}

#[test]
fn an_entry_used_since_the_plan_stays() {
    let (_t, kind) = cargo_home();
    let id = src("serde-1.0.0");
    assert!(matches!(kind.remove(&id, 0, EVICT), Removal::Skipped(_)));
}

#[test]
fn hostile_content_is_never_followed_nor_counted() {
    let (t, kind) = cargo_home();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), [0; 4096]).unwrap();
    let root = t.path();
    symlink(
        outside.path(),
        root.join(format!("registry/src/{REG}/evil-1.0.0")),
    )
    .unwrap();
    symlink(
        outside.path().join("secret"),
        root.join(format!("registry/cache/{REG}/evil-1.0.0.crate")),
    )
    .unwrap();
    symlink(
        outside.path(),
        root.join(format!("registry/src/{REG}/serde-1.0.0/src/out")),
    )
    .unwrap();
    nix::unistd::mkfifo(
        &root.join(format!("registry/cache/{REG}/fifo-1.0.0.crate")),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    std::fs::write(
        root.join(std::ffi::OsStr::from_bytes(
            b"registry/src/index.crates.io-1949cf8c6b5b557f/\xff-1.0.0",
        )),
        b"x",
    )
    .unwrap();
    let entries = scanned(&kind);
    assert_eq!(entries.len(), 7, "{entries:?}");
    // Named as if they were entries, they are none, and removing one removes nothing.
    assert_eq!(kind.stat(&src("evil-1.0.0")).unwrap(), None);
    assert_eq!(
        kind.remove(&src("evil-1.0.0"), crate::now() + 100, EVICT),
        Removal::Gone
    );
    assert_eq!(
        kind.remove(&krate("evil-1.0.0.crate"), crate::now() + 100, EVICT),
        Removal::Gone
    );
    assert!(kind.verify(&krate("fifo-1.0.0.crate")).is_empty());
    // Removing a tree with a symlink in it removes the link, not what it points at.
    assert!(matches!(
        kind.remove(&src("serde-1.0.0"), crate::now() + 100, EVICT),
        Removal::Removed { .. }
    ));
    assert!(outside.path().join("secret").exists());
    // A swapped registry directory leads nowhere either.
    let reg = root.join(format!("registry/src/{REG}"));
    std::fs::rename(&reg, root.join("moved")).unwrap();
    symlink(root.join("moved"), &reg).unwrap();
    assert_eq!(kind.stat(&src("sha-1-0.10.1")).unwrap(), None);
    assert_eq!(
        kind.remove(&src("sha-1-0.10.1"), crate::now() + 100, EVICT),
        Removal::Gone
    );
    assert!(root.join("moved/sha-1-0.10.1/.cargo-ok").exists());
}

#[test]
fn only_a_cargo_home_is_managed() {
    let (t, _) = cargo_home();
    assert!(CargoHomeKind::check_root(t.path()).is_ok());
    let empty = tempfile::tempdir().unwrap();
    assert!(CargoHomeKind::check_root(empty.path()).is_ok(), "waited on");
    std::fs::write(empty.path().join("notes.txt"), "x").unwrap();
    let err = CargoHomeKind::check_root(empty.path()).unwrap_err();
    assert!(err.contains("does not look like a cargo home"), "{err}");
}

#[test]
fn doctor_says_how_cargo_gc_and_the_daemon_share_the_home() {
    let (t, _) = cargo_home();
    assert!(setup_notes(t.path())[0].contains("\"1 day\", cargo's default"));
    write(
        t.path(),
        "config.toml",
        b"[cache]\nauto-clean-frequency = \"never\"\n",
    );
    let notes = setup_notes(t.path());
    assert!(
        notes[0].contains("gc is off") && notes[0].contains("config.toml"),
        "{notes:?}"
    );
}

#[test]
fn package_names_and_index_paths_follow_cargo() {
    assert_eq!(
        layout::package_version("sha-1-0.10.1"),
        Some(("sha-1", "0.10.1"))
    );
    assert_eq!(
        layout::package_version("serde-1.0.0-rc.1+b"),
        Some(("serde", "1.0.0-rc.1+b"))
    );
    assert_eq!(layout::package_version("nodash"), None);
    assert_eq!(layout::package_version("x-.1"), None);
    let at = |n: &str| layout::index_cache_path(n).map(|p| p.to_string_lossy().into_owned());
    assert_eq!(at("a").as_deref(), Some("1/a"));
    assert_eq!(at("ab").as_deref(), Some("2/ab"));
    assert_eq!(at("Log").as_deref(), Some("3/l/log"));
    assert_eq!(at("Serde").as_deref(), Some("se/rd/serde"));
    assert_eq!(at("é"), None);
}

proptest::proptest! {
    #[test]
    fn arbitrary_names_never_panic(name in "[a-zA-Z0-9_.+/-]{0,60}") {
        let (_t, kind) = cargo_home();
        let _ = kind.entry_at(Path::new(&name));
        let _ = kind.parse_name(&name);
        let _ = layout::package_version(&name);
        let _ = layout::index_cache_path(&name);
    }
}
