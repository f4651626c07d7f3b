//! The caches a `roots` table finds below its roots (cargo-target's target
//! directories), each named after its place below its root.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::kinds::KindName;
use crate::users;

/// The caches a `roots` table finds (`cargo-target`: every target directory below the
/// roots; a root may be a glob, `~/src/*/rust`, matching directories only, never
/// symlinks), named `table@<its path below its root>` (below a glob root: below the
/// glob's literal part; `/` as `.`, other characters outside `[A-Za-z0-9_.-]` as `_`),
/// each owned by its directory's owner when the daemon runs as root.
pub(super) fn caches_below_roots(
    kind: KindName,
    table: &str,
    roots: &[PathBuf],
) -> Vec<(String, PathBuf, Option<users::Owner>)> {
    let mut found = Vec::new();
    let mut names = HashSet::new();
    let as_root = nix::unistd::geteuid().is_root();
    for pattern in roots {
        let (root, matched): (PathBuf, Vec<PathBuf>) = match users::is_glob(pattern) {
            false => (pattern.clone(), vec![pattern.clone()]),
            true => {
                let literal: PathBuf = pattern
                    .components()
                    .take_while(|c| !users::is_glob(Path::new(c.as_os_str())))
                    .collect();
                let matched = glob::glob(&pattern.to_string_lossy())
                    .map(|paths| {
                        paths
                            .flatten()
                            .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
                            .collect()
                    })
                    .unwrap_or_default();
                (literal, matched)
            }
        };
        for dir in matched.iter().flat_map(|m| kind.caches_below(m)) {
            let root = &root;
            let rel = dir
                .strip_prefix(root)
                .unwrap_or(&dir)
                .to_string_lossy()
                .into_owned();
            let slug: String = rel
                .chars()
                .map(|c| match c {
                    '/' => '.',
                    c if c.is_ascii_alphanumeric() || "-_.".contains(c) => c,
                    _ => '_',
                })
                .collect();
            let mut name = format!("{table}@{slug}");
            let mut n = 2;
            while !names.insert(name.clone()) {
                name = format!("{table}@{slug}-{n}");
                n += 1;
            }
            let owner = match as_root {
                true => match users::owner_of(&dir) {
                    Some(owner) => Some(owner),
                    None => continue, // owned by no user of /etc/passwd: not managed
                },
                false => None,
            };
            found.push((name, dir, owner));
        }
    }
    found
}
