use super::*;
use crate::kinds::Survivors;

/// Writes one action and its output the way go's `put` does; returns the action id.
pub fn put(root: &Path, seed: u32, content: &[u8], mtime: i64) -> ([u8; 32], [u8; 32]) {
    let action: [u8; 32] = Sha256::digest(seed.to_le_bytes()).into();
    let output: [u8; 32] = Sha256::digest(content).into();
    let write = |hash: &[u8; 32], suffix: &str, bytes: &[u8]| {
        let dir = root.join(format!("{:02x}", hash[0]));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("{}-{suffix}", to_hex(hash)));
        std::fs::write(&p, bytes).unwrap();
        filetime::set_file_mtime(&p, filetime::FileTime::from_unix_time(mtime, 0)).unwrap();
    };
    write(&output, "d", content);
    let a = Action {
        action,
        output,
        size: content.len() as u64,
        time_ns: mtime * 1_000_000_000,
    };
    write(&action, "a", format_action(&a).as_bytes());
    (action, output)
}

fn kind(root: &Path) -> GoBuildKind {
    let mut k = GoBuildKind::new(root.to_path_buf());
    k.in_use = |_, _| None;
    k
}

#[test]
fn hex_ids_decode_only_from_lowercase_digits() {
    let id: [u8; 32] = std::array::from_fn(|i| (i * 37 + 5) as u8);
    assert_eq!(from_hex(to_hex(&id).as_bytes()), Some(id));
    assert_eq!(from_hex(to_hex(&id).to_uppercase().as_bytes()), None);
    assert_eq!(from_hex(&[b'g'; 64]), None);
    assert_eq!(from_hex(&[b'0'; 63]), None);
    let mut name = to_hex(&id).into_bytes();
    name.extend_from_slice(b"-d");
    assert_eq!(
        parse_file_name(&name).map(|g| (g.hash, g.role)),
        Some((id, Role::Output))
    );
    name[65] = b'x';
    assert!(parse_file_name(&name).is_none());
}

#[test]
fn action_files_round_trip_and_reject_damage() {
    let a = Action {
        action: [1; 32],
        output: [2; 32],
        size: 12345,
        time_ns: 1_700_000_000_123_456_789,
    };
    let text = format_action(&a);
    assert_eq!(text.len(), ACTION_LEN);
    assert_eq!(parse_action(text.as_bytes()), Ok(a));
    assert_eq!(
        parse_action(&text.as_bytes()[..100]),
        Err("action-truncated")
    );
    let mut garbled = text.clone().into_bytes();
    garbled[10] = b'x';
    assert_eq!(parse_action(&garbled), Err("action-garbled"));
    assert_eq!(
        parse_action(format!("{text}x").as_bytes()),
        Err("action-garbled")
    );
}

#[test]
fn scan_pairs_actions_with_outputs_and_counts_shared_ones_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let old = crate::now() - 86400;
    let (a1, _) = put(root, 1, &[5u8; 10_000], old);
    let (a2, shared) = put(root, 2, &[9u8; 8192], old);
    let (a3, _) = put(root, 3, &[9u8; 8192], old); // same output as a2
                                                   // An orphan output, an action whose output is gone, and a young orphan.
    let (a4, o4) = put(root, 4, b"orphan", old);
    std::fs::remove_file(root.join(format!("{:02x}/{}-a", a4[0], to_hex(&a4)))).unwrap();
    let (a5, o5) = put(root, 5, b"dangling", old);
    std::fs::remove_file(root.join(format!("{:02x}/{}-d", o5[0], to_hex(&o5)))).unwrap();
    let (a6, _) = put(root, 6, b"young", crate::now());
    std::fs::remove_file(root.join(format!("{:02x}/{}-a", a6[0], to_hex(&a6)))).unwrap();
    std::fs::write(root.join("README"), README_START).unwrap();

    let k = kind(root);
    let walked = k.scan();
    let walked_bytes: u64 = walked.entries.iter().map(|(_, m)| m.disk_bytes).sum();
    let found = k.complete(walked, &|asked| vec![None; asked.len()], &|_| false);
    let get = |hash: [u8; 32], role| {
        found
            .entries
            .iter()
            .find(|(id, _)| *id == GoId { hash, role })
            .map(|(_, m)| *m)
    };
    let m1 = get(a1, Role::Action).unwrap();
    assert_eq!(m1.apparent_bytes, 175 + 10_000);
    let (m2, m3) = (
        get(a2, Role::Action).unwrap(),
        get(a3, Role::Action).unwrap(),
    );
    assert_eq!(
        m2.apparent_bytes + m3.apparent_bytes,
        2 * 175 + 8192,
        "a shared output counts once"
    );
    assert_eq!(m2.aux, fingerprint(&shared));
    assert!(
        get(o4, Role::Output).is_some(),
        "old orphan outputs are entries"
    );
    assert_eq!(
        get(a5, Role::Action).unwrap().apparent_bytes,
        175,
        "dangling actions are entries"
    );
    assert_eq!(
        found.entries.len(),
        5,
        "young orphans are outputs being put, not entries"
    );
    let total: u64 = found.entries.iter().map(|(_, m)| m.disk_bytes).sum();
    let du = String::from_utf8(
        std::process::Command::new("du")
            .args(["-s", "-B1"])
            .arg(root)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let du: u64 = du.split_whitespace().next().unwrap().parse().unwrap();
    // du also counts the directories, README and the young orphan.
    assert!(total < du, "{total} vs {du}");
    assert!(
        walked_bytes > total,
        "the walk counts every file, the young orphan too"
    );

    // A rescan trusts what the index knows for an action with the same mtime (it
    // is not read again: damage that kept the mtime goes unseen until a verify),
    // and reads one whose mtime moved (go rewrote it).
    let known: HashMap<GoId, EntryMeta> = found.entries.iter().cloned().collect();
    let known = |asked: &[(GoId, EntryMeta)]| {
        asked
            .iter()
            .map(|(id, m)| Some(known.get(id).filter(|k| k.last_use == m.last_use)?.aux))
            .collect()
    };
    let a1_file = root.join(format!("{:02x}/{}-a", a1[0], to_hex(&a1)));
    std::fs::write(&a1_file, [b'x'; ACTION_LEN]).unwrap();
    filetime::set_file_mtime(&a1_file, filetime::FileTime::from_unix_time(old, 0)).unwrap();
    let again = k.complete(k.scan(), &known, &|_| false);
    let mut before = found.entries.clone();
    let mut after = again.entries.clone();
    before.sort_by_key(|(id, _)| *id);
    after.sort_by_key(|(id, _)| *id);
    assert_eq!(before, after, "unchanged mtimes: nothing re-read");
    filetime::set_file_mtime(&a1_file, filetime::FileTime::from_unix_time(old + 60, 0)).unwrap();
    let reread = k.complete(k.scan(), &known, &|_| false);
    let m1 = reread
        .entries
        .iter()
        .find(|(id, _)| id.hash == a1 && id.role == Role::Action)
        .unwrap()
        .1;
    assert_eq!(
        (m1.aux, m1.apparent_bytes),
        (0, 175),
        "a moved mtime is read again"
    );
}

#[test]
fn removal_rechecks_running_go_and_removes_directory_outputs_fd_relatively() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let old = crate::now() - 86400;
    let (a, out) = put(root, 1, b"an executable, later a directory", old);
    let action = GoId {
        hash: a,
        role: Role::Action,
    };
    // A go command started since the plan: the removal defers.
    let mut k = kind(root);
    k.in_use = |_, _| {
        Some(crate::kinds::InUse::since(
            0,
            "go (pid 1) running since then".into(),
        ))
    };
    let r = k.remove(&action, old, Removing::Evict(&Survivors::NONE));
    assert!(
        matches!(&r, Removal::InUse(why) if why.contains("pid 1")),
        "{r:?}"
    );

    // Go 1.24's directory outputs: removed through fds, a symlink inside never
    // followed, and their bytes counted.
    let k = kind(root);
    let out_path = root.join(format!("{:02x}/{}-d", out[0], to_hex(&out)));
    std::fs::remove_file(&out_path).unwrap();
    std::fs::create_dir(&out_path).unwrap();
    std::fs::write(out_path.join("prog"), vec![1u8; 20_000]).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("precious"), b"keep").unwrap();
    std::os::unix::fs::symlink(outside.path(), out_path.join("link")).unwrap();
    let t = filetime::FileTime::from_unix_time(old, 0);
    filetime::set_file_mtime(&out_path, t).unwrap();
    let r = k.remove(&action, old, Removing::Evict(&Survivors::NONE));
    assert!(
        matches!(r, Removal::Removed { disk_bytes } if disk_bytes >= 20_000),
        "{r:?}"
    );
    assert!(!out_path.exists());
    assert_eq!(
        std::fs::read(outside.path().join("precious")).unwrap(),
        b"keep"
    );
}

#[test]
fn outputs_newer_than_their_actions_go_with_them_and_the_index_matches_the_disk() {
    // Go bumps -a and -d separately, each only when over an hour old: an output
    // may be newer than its action. At 5bc8f0a such outputs stayed on disk while
    // the index counted them as freed.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("gocache");
    let old = crate::now() - 10 * 86400;
    for seed in 0..40u32 {
        let (_, out) = put(&root, seed, &vec![seed as u8; 40_000], old + seed as i64);
        let d = root.join(format!("{:02x}/{}-d", out[0], to_hex(&out)));
        let t = filetime::FileTime::from_unix_time(old + seed as i64 + 1, 0);
        filetime::set_file_mtime(&d, t).unwrap();
    }
    for b in 0..=255u8 {
        std::fs::create_dir_all(root.join(format!("{b:02x}"))).unwrap();
    }
    let text = format!(
        "[[cache]]\nname = \"gb\"\nkind = \"go-build\"\npath = \"{}\"\nmax_size = \"1 MiB\"\n",
        root.display()
    );
    let cache =
        crate::cache::CacheOf::open(kind(&root), crate::config::first_cache_for_test(&text));
    cache.scan(crate::now());
    let report = cache.evict(false, crate::now());
    assert!(report.removed_entries > 0, "{report:?}");
    assert!(report.unmet.is_empty(), "{report:?}");
    let indexed = cache.status(crate::now()).disk_bytes;
    assert!(indexed <= 1 << 20);
    assert_eq!(report.bytes_after, indexed);
    let fresh =
        crate::cache::CacheOf::open(kind(&root), crate::config::first_cache_for_test(&text));
    assert_eq!(
        fresh.scan(crate::now()).disk_bytes,
        indexed,
        "the index equals the disk"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    /// Garbage in an action file is a problem code, never a panic; what parses
    /// round-trips.
    #[test]
    fn action_files_of_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        if let Ok(a) = parse_action(&bytes) {
            proptest::prop_assert_eq!(parse_action(format_action(&a).as_bytes()), Ok(a));
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// Whatever the pairings (outputs shared by several actions), the mtimes (an
    /// output newer or older than its action) and the limit: after an eviction the
    /// index's total is what a fresh scan of the disk finds.
    #[test]
    fn after_an_eviction_the_index_total_equals_a_fresh_scan(
        pairs in proptest::collection::vec((0u8..6, 1i64..40, -3i64..4), 1..24),
        limit_kib in 0u64..200,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("gocache");
        for b in 0..=255u8 {
            std::fs::create_dir_all(root.join(format!("{b:02x}"))).unwrap();
        }
        let base = crate::now() - 100 * 86400;
        for (seed, (content, action_day, skew_h)) in pairs.iter().enumerate() {
            let body = vec![*content; 5000 * (*content as usize + 1)];
            let t = base + action_day * 86400;
            let (_, out) = put(&root, seed as u32, &body, t);
            let d = root.join(format!("{:02x}/{}-d", out[0], to_hex(&out)));
            let ft = filetime::FileTime::from_unix_time(t + skew_h * 3600, 0);
            filetime::set_file_mtime(&d, ft).unwrap();
        }
        let text = format!(
            "[[cache]]\nname = \"gb\"\nkind = \"go-build\"\npath = \"{}\"\nmax_size = \"{} KiB\"\n",
            root.display(),
            limit_kib
        );
        let config = crate::config::first_cache_for_test(&text);
        let cache = crate::cache::CacheOf::open(kind(&root), config.clone());
        cache.scan(crate::now());
        let report = cache.evict(false, crate::now());
        let indexed = cache.status(crate::now()).disk_bytes;
        proptest::prop_assert_eq!(report.bytes_after, indexed);
        let fresh = crate::cache::CacheOf::open(kind(&root), config);
        proptest::prop_assert_eq!(fresh.scan(crate::now()).disk_bytes, indexed);
    }
}

#[test]
fn eviction_keeps_outputs_that_survivors_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let old = crate::now() - 86400;
    let (a2, shared) = put(root, 2, &[9u8; 8192], old);
    let (a3, _) = put(root, 3, &[9u8; 8192], old);
    let k = kind(root);
    let out_path = root.join(format!("{:02x}/{}-d", shared[0], to_hex(&shared)));
    let survivors = Survivors::new(vec![fingerprint(&shared)]);
    let r = k.remove(
        &GoId {
            hash: a2,
            role: Role::Action,
        },
        old,
        Removing::Evict(&survivors),
    );
    assert!(matches!(r, Removal::Removed { .. }));
    assert!(out_path.exists(), "a3 still names the output");
    let r = k.remove(
        &GoId {
            hash: a3,
            role: Role::Action,
        },
        old,
        Removing::Evict(&Survivors::new(vec![])),
    );
    assert!(matches!(r, Removal::Removed { disk_bytes } if disk_bytes >= 8192));
    assert!(!out_path.exists(), "the last action takes its output along");
    // Used since planned: skipped.
    let (a7, _) = put(root, 7, b"x", old + 100);
    let r = k.remove(
        &GoId {
            hash: a7,
            role: Role::Action,
        },
        old,
        Removing::Evict(&survivors),
    );
    assert!(matches!(r, Removal::Skipped(_)));
}

#[test]
fn verify_names_each_kind_of_damage() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let old = crate::now() - 86400;
    let k = kind(root);
    let check = |hash: [u8; 32]| {
        let id = GoId {
            hash,
            role: Role::Action,
        };
        k.verify(&id)
            .into_iter()
            .map(|f| f.problem)
            .collect::<Vec<_>>()
    };
    let (healthy, _) = put(root, 1, b"healthy output", old);
    assert!(check(healthy).is_empty());

    let (flipped, out) = put(root, 2, b"flip a byte here", old);
    let p = root.join(format!("{:02x}/{}-d", out[0], to_hex(&out)));
    std::fs::write(&p, b"flip a bytE here").unwrap();
    assert_eq!(check(flipped), ["output-hash-mismatch"]);

    let (resized, out) = put(root, 3, b"resized", old);
    std::fs::write(
        root.join(format!("{:02x}/{}-d", out[0], to_hex(&out))),
        b"resized!",
    )
    .unwrap();
    assert_eq!(check(resized), ["output-size-mismatch"]);

    let (missing, out) = put(root, 4, b"missing", old);
    std::fs::remove_file(root.join(format!("{:02x}/{}-d", out[0], to_hex(&out)))).unwrap();
    assert_eq!(check(missing), ["output-missing"]);

    let (truncated, _) = put(root, 5, b"truncated", old);
    let ap = root.join(format!("{:02x}/{}-a", truncated[0], to_hex(&truncated)));
    let text = std::fs::read(&ap).unwrap();
    std::fs::write(&ap, &text[..90]).unwrap();
    assert_eq!(check(truncated), ["action-truncated"]);

    let (garbled, _) = put(root, 6, b"garbled", old);
    let ap = root.join(format!("{:02x}/{}-a", garbled[0], to_hex(&garbled)));
    let mut text = std::fs::read(&ap).unwrap();
    text[0] = b'x';
    std::fs::write(&ap, &text).unwrap();
    assert_eq!(check(garbled), ["action-garbled"]);

    // Incremental: a verified output is not re-hashed until its mtime or size changes.
    let (again, out) = put(root, 7, b"verified once", old);
    assert!(check(again).is_empty());
    let p = root.join(format!("{:02x}/{}-d", out[0], to_hex(&out)));
    std::fs::write(&p, b"verified ONCE").unwrap();
    filetime::set_file_mtime(&p, filetime::FileTime::from_unix_time(old, 0)).unwrap();
    assert!(check(again).is_empty(), "same mtime and size: trusted");
    filetime::set_file_mtime(&p, filetime::FileTime::from_unix_time(old + 1, 0)).unwrap();
    assert_eq!(check(again), ["output-hash-mismatch"]);
}

fn cache_at(root: &Path) -> std::sync::Arc<dyn crate::cache::Cache> {
    let text = format!(
        "[[cache]]\nname = \"gb\"\nkind = \"go-build\"\npath = \"{}\"\n",
        root.display()
    );
    let config = crate::config::first_cache_for_test(&text);
    crate::cache::CacheOf::open(kind(root), config)
}

/// Every entry of a cache as "name size last-use", sorted: what two indexes must agree on.
fn listing(cache: &std::sync::Arc<dyn crate::cache::Cache>) -> Vec<String> {
    let mut lines: Vec<String> = cache
        .entries(crate::report::EntryOrder::Oldest, usize::MAX, crate::now())
        .into_iter()
        .map(|e| format!("{} {} {}", e.entry, e.disk_bytes, e.last_use))
        .collect();
    lines.sort();
    lines
}

/// A cache of `entries` day-old entries, with every shard directory go creates.
fn fill(root: &Path, entries: u32) {
    for seed in 0..entries {
        let output = format!("output {seed}");
        put(root, seed, output.as_bytes(), crate::now() - 86400);
    }
    for b in 0..=255u8 {
        std::fs::create_dir_all(root.join(format!("{b:02x}"))).unwrap();
    }
}

#[test]
fn a_damaged_planted_or_blocking_snapshot_means_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("gocache");
    fill(&root, 50);
    let snap = dir.path().join("gb.snapshot");
    let first = cache_at(&root);
    let scanned = first.scan(crate::now());
    assert!(first.save_snapshot(&snap).unwrap());
    // Saving twice leaves one file: temp files are renamed into place, and one a
    // killed save left behind is cleaned up.
    std::fs::write(dir.path().join(".gb.snapshot.killed123.tmp"), b"half").unwrap();
    assert!(first.save_snapshot(&snap).unwrap());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "gocache")
        .collect();
    assert_eq!(names, ["gb.snapshot"]);
    assert!(cache_at(&root).restore(&snap, crate::now()).is_some());

    // One flipped bit in an entry's size (it made a 2 TiB entry and an eviction
    // of most of a cache at 5bc8f0a): the checksum refuses the file.
    let mut bytes = std::fs::read(&snap).unwrap();
    let size_at = bytes.len() - 36 - 30; // inside the last entry's fields
    bytes[size_at] ^= 0x80;
    std::fs::write(&snap, &bytes).unwrap();
    assert!(cache_at(&root).restore(&snap, crate::now()).is_none());

    // A FIFO in its place is refused at once, not read for ever.
    std::fs::remove_file(&snap).unwrap();
    nix::unistd::mkfifo(&snap, nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert!(cache_at(&root).restore(&snap, crate::now()).is_none());
    std::fs::remove_file(&snap).unwrap();

    // A symlink to a valid snapshot elsewhere is not followed.
    let elsewhere = dir.path().join("elsewhere.snapshot");
    assert!(first.save_snapshot(&elsewhere).unwrap());
    std::os::unix::fs::symlink(&elsewhere, &snap).unwrap();
    assert!(cache_at(&root).restore(&snap, crate::now()).is_none());

    // A full scan after any of these finds the truth.
    let again = cache_at(&root);
    assert_eq!(again.scan(crate::now()).disk_bytes, scanned.disk_bytes);
}

#[test]
fn a_snapshot_restores_the_index_rescanning_only_changed_shards() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("gocache");
    let old = crate::now() - 86400;
    for seed in 0..300 {
        put(&root, seed, format!("output {seed}").as_bytes(), old);
    }
    for b in 0..=255u8 {
        std::fs::create_dir_all(root.join(format!("{b:02x}"))).unwrap();
    }
    let snap = dir.path().join("gb.snapshot");
    let first = cache_at(&root);
    let scanned = first.scan(crate::now());
    assert_eq!(scanned.entries, 300);
    assert!(first.save_snapshot(&snap).unwrap());

    // Unchanged cache: nothing rescanned, same index.
    let second = cache_at(&root);
    let restored = second.restore(&snap, crate::now()).unwrap();
    assert_eq!(restored.partitions_rescanned, Some(0));
    assert_eq!(
        (restored.entries, restored.disk_bytes),
        (scanned.entries, scanned.disk_bytes)
    );
    let oldest = |c: &std::sync::Arc<dyn crate::cache::Cache>| {
        c.entries(crate::report::EntryOrder::Oldest, 1000, 0)
    };
    let names = |v: Vec<crate::report::EntryView>| {
        v.into_iter()
            .map(|e| e.entry)
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(names(oldest(&first)), names(oldest(&second)));

    // One new entry and one removed: only their shards are rescanned.
    let (added, _) = put(&root, 1000, b"new output", old);
    let (gone, _) = put(&root, 1001, b"gone soon", old);
    let third = cache_at(&root);
    third.scan(crate::now());
    third.save_snapshot(&snap).unwrap();
    std::fs::remove_file(root.join(format!("{:02x}/{}-a", gone[0], to_hex(&gone)))).unwrap();
    let (added2, _) = put(&root, 1002, b"another", old);
    let fourth = cache_at(&root);
    let restored = fourth.restore(&snap, crate::now()).unwrap();
    assert!(restored.partitions_rescanned.unwrap() <= 4, "{restored:?}");
    let now_names = names(oldest(&fourth));
    assert!(now_names.contains(
        &GoId {
            hash: added,
            role: Role::Action
        }
        .file_name()
    ));
    assert!(now_names.contains(
        &GoId {
            hash: added2,
            role: Role::Action
        }
        .file_name()
    ));
    assert!(!now_names.contains(
        &GoId {
            hash: gone,
            role: Role::Action
        }
        .file_name()
    ));
    let full = cache_at(&root);
    let truth = full.scan(crate::now());
    assert_eq!(restored.entries, truth.entries);
    assert_eq!(names(oldest(&full)), now_names);

    // A damaged snapshot is never trusted.
    let bytes = std::fs::read(&snap).unwrap();
    std::fs::write(&snap, &bytes[..bytes.len() - 10]).unwrap();
    assert!(cache_at(&root).restore(&snap, crate::now()).is_none());
    std::fs::write(&snap, b"garbage").unwrap();
    assert!(cache_at(&root).restore(&snap, crate::now()).is_none());
}

/// Watch events (a cache hit bumps an action's mtime; a chmod touches an output)
/// must account like a scan: a shared output counted once, no phantom orphans.
#[test]
fn events_keep_shared_outputs_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("gocache");
    let old = crate::now() - 86400;
    let big = vec![3u8; 1 << 20];
    let mut actions = Vec::new();
    for seed in 0..4 {
        let (a, out) = put(&root, seed, &big, old);
        actions.push(a);
        let _ = out;
    }
    let (_, orphan) = put(&root, 99, b"orphan", old);
    let (lonely, _) = put(&root, 98, b"x", old);
    let orphan_of = |a: [u8; 32]| root.join(format!("{:02x}/{}-a", a[0], to_hex(&a)));
    std::fs::remove_file(orphan_of(Sha256::digest(99u32.to_le_bytes()).into())).unwrap();
    let _ = lonely;
    std::fs::write(root.join("README"), README_START).unwrap();
    let cache = cache_at(&root);
    let scanned = cache.scan(crate::now());
    let rel = |hash: &[u8; 32], suffix: &str| {
        PathBuf::from(format!("{:02x}/{}-{suffix}", hash[0], to_hex(hash)))
    };
    let mut touched: Vec<PathBuf> = actions.iter().map(|a| rel(a, "a")).collect();
    let shared: [u8; 32] = Sha256::digest(&big).into();
    touched.push(rel(&shared, "d"));
    touched.push(rel(&orphan, "d"));
    cache.apply_changes(&touched);
    let status = cache.status(crate::now());
    assert_eq!(status.entries, scanned.entries);
    assert_eq!(status.disk_bytes, scanned.disk_bytes);
    assert!(
        status.disk_bytes < 2 << 20,
        "the 1 MiB output counts once: {}",
        status.disk_bytes
    );
}

#[test]
fn paths_map_to_entries() {
    let k = kind(Path::new("/x"));
    let hex = "ab".repeat(32);
    let id = k.entry_at(Path::new(&format!("ab/{hex}-a"))).unwrap();
    assert_eq!(id.role, Role::Action);
    assert_eq!(k.path_of(&id), format!("ab/{hex}-a"));
    assert!(
        k.entry_at(Path::new(&format!("cd/{hex}-a"))).is_none(),
        "wrong shard"
    );
    assert!(k.entry_at(Path::new("README")).is_none());
    assert!(k.entry_at(Path::new("fuzz/x/y")).is_none());
    assert_eq!(
        k.parse_name(&format!("{hex}-d")).unwrap().role,
        Role::Output
    );
}

/// A cache of 40 entries and the bytes of its valid snapshot, made once per process.
fn snapshot_fixture() -> &'static (PathBuf, Vec<u8>) {
    static FIXTURE: std::sync::OnceLock<(PathBuf, Vec<u8>)> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let root = dir.join("gocache");
        fill(&root, 40);
        let snap = dir.join("gb.snapshot");
        let cache = cache_at(&root);
        cache.scan(crate::now());
        assert!(cache.save_snapshot(&snap).unwrap());
        (root, std::fs::read(&snap).unwrap())
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
    /// A snapshot with any byte changed, cut short anywhere, or of arbitrary bytes is
    /// refused (the cache is rescanned), never a panic and never a wrong index.
    #[test]
    fn a_corrupt_snapshot_is_always_refused(
        at in 0usize..1 << 20,
        xor in 1u8..=255,
        cut in 0usize..1 << 20,
        junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
    ) {
        let (root, valid) = snapshot_fixture();
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("gb.snapshot");
        let mut flipped = valid.clone();
        flipped[at % valid.len()] ^= xor;
        let cut = cut % valid.len();
        for (what, bytes) in [("flipped", &flipped[..]), ("cut", &valid[..cut]), ("junk", &junk[..])] {
            std::fs::write(&snap, bytes).unwrap();
            proptest::prop_assert!(
                cache_at(root).restore(&snap, crate::now()).is_none(),
                "a {} snapshot was restored", what
            );
        }
        std::fs::write(&snap, valid).unwrap();
        proptest::prop_assert!(cache_at(root).restore(&snap, crate::now()).is_some());
    }
}

/// Files and whole shards vanishing and reappearing while scans run (go's own trim,
/// `go clean -cache`, builds writing, actions read half written): never an error or a
/// panic, and once the disk is quiet a rescan's index is exactly a fresh scan's.
#[test]
fn files_vanishing_mid_scan_are_not_errors_and_a_quiet_scan_is_exact() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("gocache");
    let old = crate::now() - 86400;
    let put_all = |seeds: std::ops::Range<u32>| {
        for seed in seeds {
            put(&root, seed, &seed.to_le_bytes(), old);
        }
    };
    put_all(0..3000);
    let cache = cache_at(&root);
    let stop = AtomicBool::new(false);
    let churned = AtomicU64::new(0);
    let errors = std::thread::scope(|s| {
        s.spawn(|| {
            let mut round = 0u8;
            while !stop.load(Ordering::Relaxed) {
                // A whole shard goes (as go clean removes), then files come back.
                let _ = std::fs::remove_dir_all(root.join(format!("{round:02x}")));
                put_all(u32::from(round) * 10..u32::from(round) * 10 + 10);
                round = round.wrapping_add(1);
                churned.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Asserted after the racer stopped: a panic here would leave it running.
        let errors: u64 = (0..15).map(|_| cache.scan(crate::now()).errors).sum();
        stop.store(true, Ordering::Relaxed);
        errors
    });
    assert_eq!(errors, 0, "{:?}", cache.status(crate::now()).errors);
    assert!(churned.load(Ordering::Relaxed) > 0);
    // Every entry, with its size, as a scan of a fresh index finds it. (At 1794e2f an
    // action read half written during the race stayed "names nothing" in the index,
    // vouched for by its unchanged mtime, and its output counted apart.)
    cache.scan(crate::now());
    let fresh = cache_at(&root);
    fresh.scan(crate::now());
    let settled = listing(&cache);
    assert!(!settled.is_empty());
    assert_eq!(settled, listing(&fresh));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    /// The corpus's real action files parse as they are; mutated, they are a problem
    /// code or a valid action that round-trips, never a panic.
    #[test]
    fn corpus_action_files_parse_and_their_mutations_never_panic(
        pick in 0usize..64,
        edits in crate::corpus::edits(),
    ) {
        let corpus = crate::corpus::files("go-build");
        let (name, sample) = &corpus[pick % corpus.len()];
        let real = parse_action(sample);
        proptest::prop_assert!(real.is_ok(), "{}: {:?}", name, real);
        let bytes = crate::corpus::mutate(sample, &edits);
        if let Ok(a) = parse_action(&bytes) {
            proptest::prop_assert_eq!(parse_action(format_action(&a).as_bytes()), Ok(a));
        }
    }
}

/// A second action naming an output one action already had (two builds producing the
/// same bytes), seen by a watch event: the output is then shared and counted once, by
/// its last used action, exactly as a fresh scan counts it. (The 30-minute soak at
/// c270a3e: the event counted it twice, and the restarted index differed from a fresh
/// scan by that output.)
#[test]
fn an_output_named_anew_by_a_second_action_counts_once_as_a_scan_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("gocache");
    fill(&root, 5);
    let old = crate::now() - 86400;
    let big = vec![7u8; 1 << 16];
    let (first, _) = put(&root, 100, &big, old);
    let cache = cache_at(&root);
    cache.scan(crate::now());
    let (second, _) = put(&root, 101, &big, old + 60);
    let rel = |hash: &[u8; 32]| PathBuf::from(format!("{:02x}/{}-a", hash[0], to_hex(hash)));
    cache.apply_changes(&[rel(&second)]);
    let _ = first;
    let fresh = cache_at(&root);
    fresh.scan(crate::now());
    assert_eq!(listing(&cache), listing(&fresh));
}

/// The same after a restart: an action written while the daemon was down names an
/// output in a shard that did not change, which an action kept from the snapshot names
/// too. The restored index counts it once, as a fresh scan does.
#[test]
fn a_restore_counts_an_output_named_anew_across_shards_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("gocache");
    fill(&root, 5);
    let old = crate::now() - 86400;
    let big = vec![9u8; 1 << 16];
    put(&root, 200, &big, old);
    let snap = dir.path().join("gb.snapshot");
    let cache = cache_at(&root);
    cache.scan(crate::now());
    assert!(cache.save_snapshot(&snap).unwrap());
    // A seed whose action lies in another shard than the output and the first action.
    let output: [u8; 32] = Sha256::digest(&big).into();
    let first: [u8; 32] = Sha256::digest(200u32.to_le_bytes()).into();
    let seed = (201..)
        .find(|s: &u32| {
            let a: [u8; 32] = Sha256::digest(s.to_le_bytes()).into();
            a[0] != output[0] && a[0] != first[0]
        })
        .unwrap();
    put(&root, seed, &big, old + 60);
    let restored = cache_at(&root);
    assert!(restored.restore(&snap, crate::now()).is_some());
    let fresh = cache_at(&root);
    fresh.scan(crate::now());
    assert_eq!(listing(&restored), listing(&fresh));
}

/// An output three actions share is carried by the last used of them, as a scan
/// decides it, also after a use moves that, after its carrier is removed behind the
/// daemon's back, and after the daemon evicts the next carrier ("carrier drift": the
/// live index's per-entry sizes differed from a fresh scan's, found by the invariant
/// of issue #29).
#[test]
fn a_shared_output_stays_with_the_last_used_action_through_uses_and_removals() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("gocache");
    fill(&root, 5);
    let old = crate::now() - 86400;
    let big = vec![5u8; 1 << 16];
    let (a1, _) = put(&root, 300, &big, old);
    let (_a2, _) = put(&root, 301, &big, old + 60);
    let (a3, _) = put(&root, 302, &big, old + 120);
    let cache = cache_at(&root);
    cache.scan(crate::now());
    let rel = |hash: &[u8; 32]| PathBuf::from(format!("{:02x}/{}-a", hash[0], to_hex(hash)));
    let fresh = || {
        let f = cache_at(&root);
        f.scan(crate::now());
        listing(&f)
    };
    assert_eq!(listing(&cache), fresh());
    // The oldest is used: it carries the output now.
    let used = filetime::FileTime::from_unix_time(crate::now() - 10, 0);
    filetime::set_file_mtime(root.join(rel(&a1)), used).unwrap();
    cache.apply_changes(&[rel(&a1)]);
    assert_eq!(listing(&cache), fresh(), "after a use");
    // Its action goes behind the daemon's back: the next last used takes it over.
    std::fs::remove_file(root.join(rel(&a1))).unwrap();
    cache.apply_changes(&[rel(&a1)]);
    assert_eq!(listing(&cache), fresh(), "after its carrier went");
    // The daemon evicts that one too: the last one left carries it as its own.
    let selection = crate::cache::Selection {
        entries: vec![format!("{}-a", to_hex(&a3))],
        modules: Vec::new(),
    };
    let report = cache.evict_selected(&selection, false, crate::now());
    assert_eq!(report.removed_entries, 1, "{report:?}");
    assert_eq!(
        listing(&cache),
        fresh(),
        "after the daemon evicted a carrier"
    );
}

/// After a restart from a snapshot, an output two actions of unchanged shards share is
/// known as shared again: the use of the one not carrying it moves it, as a scan would
/// (found by the soak's live-index invariant: the restored daemon counted it twice).
#[test]
fn a_restored_index_knows_what_its_kept_entries_share() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("gocache");
    fill(&root, 5);
    let old = crate::now() - 86400;
    let big = vec![3u8; 1 << 16];
    let (a1, _) = put(&root, 400, &big, old);
    put(&root, 401, &big, old + 60);
    let snap = dir.path().join("gb.snapshot");
    let cache = cache_at(&root);
    cache.scan(crate::now());
    assert!(cache.save_snapshot(&snap).unwrap());
    let restored = cache_at(&root);
    assert!(restored.restore(&snap, crate::now()).is_some());
    let rel = PathBuf::from(format!("{:02x}/{}-a", a1[0], to_hex(&a1)));
    let used = filetime::FileTime::from_unix_time(crate::now() - 10, 0);
    filetime::set_file_mtime(root.join(&rel), used).unwrap();
    restored.apply_changes(&[rel]);
    let fresh = cache_at(&root);
    fresh.scan(crate::now());
    assert_eq!(listing(&restored), listing(&fresh));
}
