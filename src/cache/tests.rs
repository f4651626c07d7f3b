use super::*;

#[test]
fn untiered_eviction_keeps_only_the_age_only_tier() {
    assert_eq!(tier_for(true, 1), 1);
    assert_eq!(tier_for(false, 1), 0);
    assert_eq!(tier_for(false, plan::AGE_ONLY), plan::AGE_ONLY);
}

#[test]
fn selections_match_entries_and_modules() {
    let s = Selection {
        entries: vec!["a@v1".into()],
        modules: vec!["github.com/x/y".into()],
    };
    assert!(s.matches("a@v1"));
    assert!(!s.matches("a@v2"));
    assert!(s.matches("github.com/x/y@v1.2.3"));
    assert!(
        !s.matches("github.com/x/yz@v1.2.3"),
        "a module, not a prefix"
    );
    assert_eq!(
        s.not_found(["a@v2", "github.com/x/yz@v1"]),
        ["a@v1", "module github.com/x/y"]
    );
    assert!(s.not_found(["a@v1", "github.com/x/y@v0.1.0"]).is_empty());
}

use crate::kinds::dir::DirKind;
use crate::kinds::{Finding, Known};
use std::sync::mpsc;

/// A dir kind whose completion step keeps one entry, once the test lets it.
struct Gated {
    inner: DirKind,
    release: Mutex<mpsc::Receiver<()>>,
}

type Id = Box<Path>;

impl Kind for Gated {
    type Id = Id;
    fn root(&self) -> &Path {
        self.inner.root()
    }
    fn scan(&self) -> ScanResult<Id> {
        self.inner.scan()
    }
    fn completes_scans(&self) -> bool {
        true
    }
    fn complete(
        &self,
        mut walked: ScanResult<Id>,
        _: Known<Id>,
        _: &dyn Fn(u64) -> bool,
    ) -> ScanResult<Id> {
        self.release.lock().unwrap().recv().unwrap();
        walked.entries.sort_by_key(|(_, m)| m.disk_bytes);
        walked.entries.truncate(1);
        walked
    }
    fn watch_dirs(&self) -> Vec<WatchDir> {
        self.inner.watch_dirs()
    }
    fn entry_at(&self, rel: &Path) -> Option<Id> {
        self.inner.entry_at(rel)
    }
    fn stat(&self, id: &Id) -> std::io::Result<Option<EntryMeta>> {
        self.inner.stat(id)
    }
    fn verify(&self, id: &Id) -> Vec<Finding> {
        self.inner.verify(id)
    }
    fn remove(&self, id: &Id, used_before: UnixTime, how: Removing) -> Removal {
        self.inner.remove(id, used_before, how)
    }
    fn name_of(&self, id: &Id) -> String {
        self.inner.name_of(id)
    }
    fn path_of(&self, id: &Id) -> String {
        self.inner.path_of(id)
    }
    fn parse_name(&self, name: &str) -> Option<Id> {
        self.inner.parse_name(name)
    }
    fn last_use_signal(&self) -> &'static str {
        "test"
    }
}

#[test]
fn a_first_scan_serves_the_walk_while_it_completes_and_holds_eviction() {
    let dir = tempfile::tempdir().unwrap();
    for (name, len) in [("a", 10_000), ("b", 20_000), ("c", 30_000)] {
        std::fs::write(dir.path().join(name), vec![0u8; len]).unwrap();
    }
    let text = format!(
        "[[cache]]\nname = \"t\"\nkind = \"dir\"\npath = \"{}\"\nmax_size = \"1B\"\nmin_age = \"0s\"\nunsafe_allow_short_min_age = true\n",
        dir.path().display()
    );
    let config = crate::config::first_cache_for_test(&text);
    let (release, gate) = mpsc::channel();
    let gated = Gated {
        inner: DirKind::new(dir.path().to_path_buf()),
        release: Mutex::new(gate),
    };
    let cache = CacheOf::open(gated, config);
    assert_eq!(cache.status(0).state, "scanning");

    let scanning = std::thread::spawn({
        let cache = cache.clone();
        move || cache.scan(crate::now())
    });
    let status = loop {
        let status = cache.status(crate::now());
        if status.state != "scanning" {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert_eq!(status.state, "completing");
    assert_eq!(status.entries, 3, "the walk's entries are served");
    let walked_bytes = status.disk_bytes;
    assert!(walked_bytes >= 60_000);

    // Eviction waits for the completed index: it must never plan on a provisional one.
    let evicting = std::thread::spawn({
        let cache = cache.clone();
        move || cache.evict(true, crate::now())
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !evicting.is_finished(),
        "eviction ran on a provisional index"
    );

    release.send(()).unwrap();
    let record = scanning.join().unwrap();
    assert!(record.walk_ms <= record.duration_ms);
    let status = cache.status(crate::now());
    assert_eq!((status.state.as_str(), status.entries), ("ready", 1));
    let plan = evicting.join().unwrap();
    assert_eq!(plan.evicted.len(), 1, "planned on the completed index");
}

#[test]
fn status_never_waits_for_the_index_lock_and_its_totals_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let now = crate::now();
    for (name, age_days) in [("old", 30), ("middle", 20), ("young", 10)] {
        let path = dir.path().join(name);
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let t = filetime::FileTime::from_unix_time(now - age_days * 86400, 0);
        filetime::set_file_times(&path, t, t).unwrap();
    }
    let text = format!(
        "[[cache]]\nname = \"t\"\nkind = \"dir\"\npath = \"{}\"\nmax_age = \"25d\"\n",
        dir.path().display()
    );
    let cache = Arc::new(CacheOf::new(
        DirKind::new(dir.path().to_path_buf()),
        crate::config::first_cache_for_test(&text),
    ));
    cache.scan(now);
    assert_eq!(cache.status(now).oldest_last_use, Some(now - 30 * 86400));

    // A listing, a sweep or an eviction plan holds the index lock for long.
    let held = cache.index.lock().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn({
        let cache = cache.clone();
        move || tx.send(cache.status(now)).unwrap()
    });
    let status = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("status waited for the index lock");
    assert_eq!((status.entries, status.over_limits.len()), (3, 1));
    drop(held);

    // The oldest entry evicted: status shows the next oldest, without a walk.
    let report = cache.evict(false, now);
    assert_eq!(report.removed_entries, 1);
    let status = cache.status(now);
    assert_eq!(status.entries, 2);
    assert_eq!(status.oldest_last_use, Some(now - 20 * 86400));
    assert!(status.over_limits.is_empty());
    assert_eq!(status.disk_bytes, cache.index.lock().unwrap().disk_bytes());
}

/// A dir kind whose every entry is broken — except `replaced`, which is replaced by a
/// healthy file just after its second check (while it was being hashed, say).
struct Broken(DirKind, Mutex<u32>);

impl Kind for Broken {
    type Id = Id;
    fn root(&self) -> &Path {
        self.0.root()
    }
    fn scan(&self) -> ScanResult<Id> {
        self.0.scan()
    }
    fn watch_dirs(&self) -> Vec<WatchDir> {
        self.0.watch_dirs()
    }
    fn entry_at(&self, rel: &Path) -> Option<Id> {
        self.0.entry_at(rel)
    }
    fn stat(&self, id: &Id) -> std::io::Result<Option<EntryMeta>> {
        self.0.stat(id)
    }
    fn verify(&self, id: &Id) -> Vec<Finding> {
        if id.ends_with("replaced") {
            let mut checks = self.1.lock().unwrap();
            *checks += 1;
            if *checks > 2 {
                return vec![];
            }
        }
        vec![Finding {
            problem: "unreadable",
            detail: "a failing disk".into(),
        }]
    }
    fn remove(&self, id: &Id, used_before: UnixTime, how: Removing) -> Removal {
        self.0.remove(id, used_before, how)
    }
    fn name_of(&self, id: &Id) -> String {
        self.0.name_of(id)
    }
    fn path_of(&self, id: &Id) -> String {
        self.0.path_of(id)
    }
    fn parse_name(&self, name: &str) -> Option<Id> {
        self.0.parse_name(name)
    }
    fn last_use_signal(&self) -> &'static str {
        "test"
    }
}

#[test]
fn a_dir_cache_repairs_only_past_min_age_and_every_unrepaired_problem_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let now = crate::now();
    let entries = [
        ("old", 86_400),
        ("fresh", 60),
        ("kept.pinned", 86_400),
        ("replaced", 86_400),
    ];
    for (name, age) in entries {
        let path = dir.path().join(name);
        std::fs::write(&path, b"x").unwrap();
        let t = filetime::FileTime::from_unix_time(now - age, 0);
        filetime::set_file_times(&path, t, t).unwrap();
    }
    let text = format!(
        "[[cache]]\nname = \"t\"\nkind = \"dir\"\npath = \"{}\"\nkeep = [\"*.pinned\"]\n",
        dir.path().display()
    );
    let cache = CacheOf::open(
        Broken(DirKind::new(dir.path().to_path_buf()), Mutex::new(0)),
        crate::config::first_cache_for_test(&text),
    );
    cache.scan(now);
    let why = |report: &VerifyReport, entry: &str| {
        let p = report.problems.iter().find(|p| p.entry == entry).unwrap();
        p.unrepaired
            .as_ref()
            .map(|u| (u.code.clone(), u.reason.clone()))
    };
    let report = cache.verify(false, now);
    let (code, reason) = why(&report, "old").unwrap();
    assert_eq!(code, "not-requested");
    assert!(reason.contains("only with --repair"), "{reason}");
    assert!(
        reason.contains("the daemon on its verify_schedule sweeps"),
        "{reason}"
    );

    let report = cache.verify(true, now);
    assert_eq!(why(&report, "old"), None, "repaired");
    assert!(!dir.path().join("old").exists());
    // Checked again just before its repair, `replaced` was healthy: it stays, and is
    // no problem (the sweep's first look saw the file it replaced).
    assert!(dir.path().join("replaced").exists());
    assert!(
        report.problems.iter().all(|p| p.entry != "replaced"),
        "{report:?}"
    );
    let (code, reason) = why(&report, "fresh").unwrap();
    assert_eq!(code, "within-min-age");
    assert_eq!(reason, "used 1m ago, within min_age 10m");
    assert_eq!(why(&report, "kept.pinned").unwrap().0, "pinned");
    assert!(dir.path().join("fresh").exists());
    let table = crate::report::problems_table(&report.problems);
    assert!(
        table.contains("    not repaired: pinned by keep"),
        "{table}"
    );
    // The long texts are lines of their own: the table is as wide as its short columns.
    let header = table.lines().next().unwrap();
    assert!(header.ends_with("STATE") && header.len() < 80, "{table}");
    assert_eq!(cache.status(now).problems.open, 2);
}

/// A file dated 2100 (its owner's doing) counts as used when the index first saw it,
/// and stays so at later scans and events: it ages past `min_age` like any entry,
/// instead of being the newest for ever (issue #29).
#[test]
fn a_last_use_in_the_future_counts_from_when_it_was_first_seen() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("touched");
    std::fs::write(&file, vec![1u8; 4096]).unwrap();
    let year_2100 = filetime::FileTime::from_unix_time(4_102_444_800, 0);
    filetime::set_file_times(&file, year_2100, year_2100).unwrap();
    let text = format!(
        "[[cache]]\nname = \"c\"\nkind = \"dir\"\npath = \"{}\"\n",
        dir.path().display()
    );
    let cache = CacheOf::open(
        DirKind::new(dir.path().to_path_buf()),
        crate::config::first_cache_for_test(&text),
    );
    let last_use = |c: &Arc<dyn Cache>| c.entries(EntryOrder::Oldest, 10, crate::now())[0].last_use;
    let before = crate::now();
    cache.scan(crate::now());
    let seen = last_use(&cache);
    assert!((before..=crate::now()).contains(&seen), "{seen}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    cache.scan(crate::now());
    assert_eq!(last_use(&cache), seen, "a rescan keeps it");
    filetime::set_file_times(&file, year_2100, year_2100).unwrap();
    cache.apply_changes(&[PathBuf::from("touched")]);
    assert_eq!(
        last_use(&cache),
        seen,
        "touched again: still when first seen"
    );
}
