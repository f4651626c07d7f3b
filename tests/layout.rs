//! The source tree's shape, checked (issue #11): no two modules import each other, and
//! no source file grows past what a newcomer can read in one sitting.
//!
//! An import is any `crate::a::b` or `super::…` path in a file's non-test code (a file's
//! `#[cfg(test)] mod tests` block and `tests.rs` files are left out: tests may drive the
//! engine through a kind). Two modules import each other when, between siblings under
//! the same parent, `a` uses `b` and `b` uses `a`; a module using its own parent or
//! children is how Rust modules work and is not counted. The check runs with the rest
//! of the suite (`cargo test --test layout`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest a source file may be, its tests included.
const MAX_LINES: usize = 1000;

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/kinds/go_mod/scan.rs` → `["kinds", "go_mod", "scan"]`; `mod.rs`, `lib.rs` and
/// `main.rs` name their directory's module.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code that is not a test module.
fn non_test_code(text: &str) -> &str {
    ["#[cfg(test)]\nmod tests", "#[cfg(test)]\npub mod tests"]
        .iter()
        .filter_map(|start| text.find(start))
        .min()
        .map_or(text, |at| &text[..at])
}

/// Every path that starts with `crate::` or `super::`, with `{a, b::c}` groups expanded,
/// as absolute module paths.
fn imports(module: &[String], code: &str) -> Vec<Vec<String>> {
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let at_word_start =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &bytes[i..];
        if at_word_start && (rest.starts_with(b"crate::") || rest.starts_with(b"super::")) {
            let (base, consumed) = if rest.starts_with(b"crate::") {
                (Vec::new(), "crate::".len())
            } else {
                let mut base = module.to_vec();
                let mut consumed = 0;
                while bytes[i + consumed..].starts_with(b"super::") {
                    base.pop();
                    consumed += "super::".len();
                }
                (base, consumed)
            };
            let used = expand(&code[i + consumed..], &base, &mut out);
            i += consumed + used;
        } else {
            i += 1;
        }
    }
    out
}

/// Reads one path (or `{…}` group) at the start of `text`, pushes the paths it names,
/// and returns how many bytes it read.
fn expand(text: &str, base: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut path = base.to_vec();
    let mut i = 0;
    let bytes = text.as_bytes();
    loop {
        if i < bytes.len() && bytes[i] == b'{' {
            i += 1;
            loop {
                while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b',') {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    return i + 1;
                }
                i += expand(&text[i..], &path, out);
            }
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        if i > start && &text[start..i] != "self" {
            path.push(text[start..i].to_string());
        }
        if text[i..].starts_with("::") {
            i += 2;
        } else {
            out.push(path);
            return i;
        }
    }
}

#[test]
fn no_two_modules_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    // (parent, from, to) for every sibling import.
    let mut edges: BTreeMap<(Vec<String>, String, String), String> = BTreeMap::new();
    for file in &files {
        if file.file_name().unwrap() == "tests.rs" {
            continue;
        }
        let from = module_of(&src, file);
        let text = fs::read_to_string(file).unwrap();
        for import in imports(&from, non_test_code(&text)) {
            // The longest prefix of the import that is a module of ours.
            let to: Vec<String> = (0..=import.len())
                .rev()
                .map(|n| import[..n].to_vec())
                .find(|p| modules.contains(p))
                .unwrap_or_default();
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // itself, its parent or its child
            }
            let parent = from[..common].to_vec();
            edges
                .entry((parent, from[common].clone(), to[common].clone()))
                .or_insert_with(|| format!("{} uses {}", file.display(), import.join("::")));
        }
    }
    let mut cycles = Vec::new();
    for ((parent, a, b), why) in &edges {
        if a < b {
            if let Some(back) = edges.get(&(parent.clone(), b.clone(), a.clone())) {
                cycles.push(format!("{a} <-> {b}: {why}; {back}"));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "modules that import each other:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn no_source_file_is_longer_than_a_newcomer_can_read() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .map(|f| (f, fs::read_to_string(f).unwrap().lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(f, n)| format!("{}: {n} lines", f.display()))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}
