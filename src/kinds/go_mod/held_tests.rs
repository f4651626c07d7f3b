//! The guard of a module cache: only what running go commands' build lists name.
use super::tests::{id, kind, put};
use super::*;
use crate::kinds::Survivors;

#[test]
fn only_the_versions_of_running_build_lists_are_held() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let old = crate::now() - 10 * 86400;
    let mut k = kind(root);
    let used = put(root, "example.com/Used", "v1.0.0", 1, old);
    let other = put(root, "example.com/other", "v1.0.0", 2, old);
    assert_eq!(&*used, "example.com/!used@v1.0.0", "keys are escaped");
    // A go command whose go.sum names example.com/Used v1.0.0.
    k.in_use = |_, _| {
        Some(InUse {
            since: UnixTime::MAX,
            keys: Arc::new(
                crate::golang::build_list::parse_sum_file(
                    "example.com/Used v1.0.0 h1:x=\nexample.com/Used v1.0.0/go.mod h1:y=\n",
                )
                .chain([ANY_GO_COMMAND.to_string()])
                .collect(),
            ),
            by: "go (pid 7) running since now: the 1 versions /src/app/go.mod names".into(),
        })
    };
    let u = k.in_use().unwrap();
    for role in [Role::Tree, Role::Zip, Role::Meta] {
        assert!(k.holds(&u, &id(&used, role), old), "{role:?}");
        assert!(!k.holds(&u, &id(&other, role), old), "{role:?}");
    }
    let sumdb = ModId {
        key: Arc::from(SUMDB_NAME),
        role: Role::Sumdb,
    };
    assert!(
        k.holds(&u, &sumdb, old),
        "any go command holds the checksum database"
    );
    let r = k.remove(
        &id(&used, Role::Tree),
        old,
        Removing::Evict(&Survivors::NONE),
    );
    assert!(
        matches!(&r, Removal::InUse(why) if why.contains("pid 7")),
        "{r:?}"
    );
    assert!(root.join("example.com/!used@v1.0.0/hello.go").exists());
    assert!(
        !root
            .join("cache/download/example.com/!used/@v/v1.0.0.partial")
            .exists(),
        "no marker on a held version"
    );
    for role in [Role::Tree, Role::Zip, Role::Meta] {
        let r = k.remove(&id(&other, role), old, Removing::Evict(&Survivors::NONE));
        assert!(matches!(r, Removal::Removed { .. }), "{role:?}: {r:?}");
    }
    assert!(!root.join("example.com/other@v1.0.0").exists());
}
