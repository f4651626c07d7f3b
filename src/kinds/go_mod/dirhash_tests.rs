//! The tree hash (`HashDir`) against the zip hash (`HashZip`) of the same files: two
//! readers of one format (golang.org/x/mod/sumdb/dirhash) that must agree on any tree,
//! since `verify` compares a tree's hash with the `.ziphash` go wrote from the zip.
use super::layout::hash_dir;
use super::tests::write_zip;
use crate::golang::dirhash::hash_zip;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// Paths of up to three directory levels (`d0`–`d2`, never a file name, so no path is
/// both) ending in a file name that may hold a newline, a space or a dot.
fn trees() -> impl Strategy<Value = BTreeMap<String, Vec<u8>>> {
    let path = ("(d[0-2]/){0,3}", "f[a-z .\n-]{0,4}").prop_map(|(dirs, file)| dirs + &file);
    proptest::collection::btree_map(path, proptest::collection::vec(any::<u8>(), 0..300), 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Any tree hashes as its zip does (both refuse a name with a newline, as go does);
    /// a symlink in a tree is refused, never followed.
    #[test]
    fn a_tree_hashes_as_its_zip_does(tree in trees(), symlink in proptest::bool::weighted(0.15)) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        for (name, data) in &tree {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        }
        let files: Vec<(&str, &[u8])> = tree.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        let zip = dir.path().join("v1.zip");
        write_zip(&zip, "m", "v1", &files);
        let from_zip = hash_zip(std::fs::File::open(&zip).unwrap());
        if symlink {
            std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        }
        let from_tree = hash_dir(dir.path(), Path::new("tree"), "m@v1");
        let has_newline = tree.keys().any(|n| n.contains('\n'));
        prop_assert_eq!(from_zip.is_ok(), !has_newline, "{:?}", from_zip);
        if symlink {
            prop_assert!(from_tree.is_err());
        } else {
            prop_assert_eq!(from_tree.ok(), from_zip.ok());
        }
    }
}
