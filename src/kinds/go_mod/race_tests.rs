//! The module cache changing under a scan: versions vanishing and coming back.
use super::tests::{kind, put};
use super::ModId;
use crate::kinds::Kind;

/// Versions vanishing whole and reappearing while scans run (`go clean -modcache`
/// racing `go mod download`): never an error or a panic; a quiet scan is exact.
#[test]
fn versions_vanishing_mid_scan_are_not_errors_and_a_quiet_scan_is_exact() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let root = &dir.path().join("gomodcache");
    let old = crate::now() - 86400;
    let put_module = |m: u32| {
        let module = format!("example.com/m{m}");
        for v in 0..3 {
            put(root, &module, &format!("v1.{v}.0"), v as u8, old);
        }
    };
    (0..60).for_each(put_module);
    let k = kind(root);
    let before = k.scan().entries.len();
    let stop = AtomicBool::new(false);
    let churned = AtomicU64::new(0);
    let errors = std::thread::scope(|s| {
        s.spawn(|| {
            // Versions vanish whole (their trees and download files moved out, as
            // far as a scan can tell removed) and come back, module after module.
            let aside = dir.path().join("aside");
            std::fs::create_dir_all(aside.join("trees")).unwrap();
            let mut m = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut moved = vec![(
                    root.join(format!("cache/download/example.com/m{m}")),
                    aside.join("download"),
                )];
                for v in 0..3 {
                    let tree = format!("m{m}@v1.{v}.0");
                    moved.push((
                        root.join("example.com").join(&tree),
                        aside.join("trees").join(&tree),
                    ));
                }
                for (from, to) in &moved {
                    std::fs::rename(from, to).unwrap();
                }
                for (from, to) in &moved {
                    std::fs::rename(to, from).unwrap();
                }
                m = (m + 1) % 60;
                churned.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Asserted after the racer stopped: a panic here would leave it running.
        let errors: Vec<String> = (0..15).flat_map(|_| k.scan().errors).collect();
        stop.store(true, Ordering::Relaxed);
        errors
    });
    assert!(errors.is_empty(), "{errors:?}");
    assert!(churned.load(Ordering::Relaxed) > 0);
    let quiet = k.scan();
    assert!(quiet.errors.is_empty(), "{:?}", quiet.errors);
    assert_eq!(quiet.entries.len(), before, "every version is back");
    // Entry for entry (name, sizes, last use) what a kind that never saw the race finds.
    let sorted = |mut entries: Vec<_>| {
        entries.sort_by(|(a, _): &(ModId, _), (b, _)| a.cmp(b));
        entries
    };
    assert_eq!(sorted(quiet.entries), sorted(kind(root).scan().entries));
}
