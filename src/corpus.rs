//! The checked-in fuzzing corpus (`tests/corpus/`, see its README): real inputs the
//! parsers meet, and the mutations the property tests apply to them. Test-only.

use proptest::prelude::*;

/// Every file of `tests/corpus/<dir>`, by name, sorted.
pub fn files(dir: &str) -> Vec<(String, Vec<u8>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "{} is empty", path.display());
    found
}

/// One edit of a corpus file: flip, insert, remove a byte, or cut the rest.
#[derive(Debug, Clone)]
pub enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Cut(usize),
}

/// Up to eight edits at any place.
pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, x)| Edit::Flip(at, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Insert(at, b)),
        any::<usize>().prop_map(Edit::Remove),
        any::<usize>().prop_map(Edit::Cut),
    ];
    proptest::collection::vec(edit, 0..8)
}

/// `sample` with `edits` applied (positions taken modulo its length at each step).
pub fn mutate(sample: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut bytes = sample.to_vec();
    for edit in edits {
        let len = bytes.len();
        match *edit {
            Edit::Flip(at, x) if len > 0 => bytes[at % len] ^= x,
            Edit::Insert(at, b) => bytes.insert(at % (len + 1), b),
            Edit::Remove(at) if len > 0 => {
                bytes.remove(at % len);
            }
            Edit::Cut(at) => bytes.truncate(at % (len + 1)),
            _ => {}
        }
    }
    bytes
}
