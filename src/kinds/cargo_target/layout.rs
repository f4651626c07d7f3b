//! Names in a cargo target directory, from cargo's `core/compiler/layout.rs` and its
//! file naming (`core/compiler/build_runner/compilation_files.rs`):
//!
//! ```text
//! <target>/CACHEDIR.TAG                  cargo's tag: what makes a directory a target dir
//! <target>/<profile>/                    debug, release, a custom profile …
//! <target>/<triple>/<profile>/           … or the same for a --target build
//!     .cargo-lock                        the build lock (flock, exclusive while cargo builds)
//!     .fingerprint/<pkg>-<hash>/         one unit's fingerprint: hashes, dep-info, invoked.timestamp
//!     build/<pkg>-<hash>/                a build script: its binary, or its run's out/ and output
//!     deps/<crate>-<hash>[.d], deps/lib<crate>-<hash>.{rlib,rmeta,so}   the unit's outputs
//!     examples/<crate>-<hash>…           an example unit's outputs
//!     incremental/<crate>-<hash>/        rustc's incremental sessions (its own hash)
//!     <name>, lib<name>.rlib, <name>.d   "uplifted" copies of the final outputs (hard links)
//! ```
//!
//! A unit's `<hash>` (16 hex digits: cargo's metadata hash, `-C extra-filename`) is the
//! same in its fingerprint directory, its build directory and its outputs' names, so the
//! hash is the unit's identity here; the package name is only for people.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::fsutil;

/// The first line of the `CACHEDIR.TAG` every cache tagged per bford.info/cachedir
/// carries, and the words of the one cargo writes (`core/compiler/layout.rs`).
const TAG_SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";
const TAG_BY_CARGO: &str = "created by cargo";

/// The directories of a profile directory that hold units.
pub const FINGERPRINT: &str = ".fingerprint";
pub const BUILD: &str = "build";
pub const DEPS: &str = "deps";
pub const EXAMPLES: &str = "examples";
pub const INCREMENTAL: &str = "incremental";
pub const LOCK: &str = ".cargo-lock";

/// The unit hash in a name of the unit's files: the 16 hex digits after the last `-`
/// of the part before the first `.` (`libserde-0123456789abcdef.rlib`,
/// `serde-0123456789abcdef.d`, `build-script-build` has none), or that part itself.
pub fn hash_of(name: &OsStr) -> Option<u64> {
    let name = name.as_bytes();
    let stem = name.split(|&b| b == b'.').next()?;
    // (A bare hash is how a unit whose package is unknown is named: `path_of`.)
    let hex = match stem.iter().rposition(|&b| b == b'-') {
        Some(dash) => &stem[dash + 1..],
        None => stem,
    };
    if hex.len() != 16
        || !hex
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// The part of a unit directory's name before its hash (`serde` of `serde-0123…`).
pub fn package_of(name: &OsStr) -> Option<&str> {
    let text = name.to_str()?;
    let (package, _) = text.rsplit_once('-')?;
    (!package.is_empty()).then_some(package)
}

/// Whether `root` is a target directory cargo made: its `CACHEDIR.TAG` says so. Read
/// through the fd layer (no symlink followed; a FIFO is refused, not waited on).
pub fn is_cargo_tagged(root: &Path) -> io::Result<bool> {
    let mut text = String::new();
    let file = fsutil::open_file_beneath(root, Path::new("CACHEDIR.TAG"))?;
    file.take(4096).read_to_string(&mut text)?;
    Ok(text.starts_with(TAG_SIGNATURE) && text.contains(TAG_BY_CARGO))
}

/// The profile directories of the target directory open as `root`, relative to it:
/// `debug`, `release`, and `<triple>/<profile>` — every directory with a fingerprint
/// directory, one or two levels down.
pub fn profiles(root: &impl std::os::fd::AsFd) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let has_units = |rel: &Path| {
        fsutil::list_beneath(root, rel).is_ok_and(|names| {
            names
                .iter()
                .any(|(name, is_dir)| *is_dir && name == FINGERPRINT)
        })
    };
    for (name, is_dir) in fsutil::list_beneath(root, Path::new(""))? {
        if !is_dir || name.as_bytes().starts_with(b".") {
            continue;
        }
        let first = PathBuf::from(&name);
        if has_units(&first) {
            found.push(first);
            continue;
        }
        // `<triple>/<profile>`: a --target build.
        let Ok(below) = fsutil::list_beneath(root, &first) else {
            continue;
        };
        for (sub, is_dir) in below {
            let second = first.join(&sub);
            if is_dir && !sub.as_bytes().starts_with(b".") && has_units(&second) {
                found.push(second);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// How deep below a `roots` directory target directories are looked for
/// (`~/src/<org>/<project>/target` is 3).
pub const DISCOVERY_DEPTH: usize = 5;

/// The target directories below `root` (cargo's `CACHEDIR.TAG`), not looking below
/// one it found, into hidden directories or into `node_modules`, nor deeper than
/// [`DISCOVERY_DEPTH`]. Directories it cannot read are skipped.
pub fn find_target_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(fd) = fsutil::open_root(root) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut level: Vec<PathBuf> = vec![PathBuf::new()];
    for _ in 0..=DISCOVERY_DEPTH {
        let mut next = Vec::new();
        for dir in level {
            let Ok(names) = fsutil::list_beneath(&fd, &dir) else {
                continue;
            };
            let tagged = names
                .iter()
                .any(|(name, is_dir)| !is_dir && name == "CACHEDIR.TAG");
            if tagged
                && !dir.as_os_str().is_empty()
                && is_cargo_tagged(&root.join(&dir)).unwrap_or(false)
            {
                found.push(root.join(&dir));
                continue;
            }
            next.extend(
                names
                    .into_iter()
                    .filter(|(name, is_dir)| {
                        *is_dir && !name.as_bytes().starts_with(b".") && name != "node_modules"
                    })
                    .map(|(name, _)| dir.join(name)),
            );
        }
        next.sort();
        level = next;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_hashes_come_from_every_kind_of_name() {
        let h = 0x93d5_468b_10ff_cb66;
        for name in [
            "anstream-93d5468b10ffcb66",
            "libanstream-93d5468b10ffcb66.rlib",
            "libanstream-93d5468b10ffcb66.rmeta",
            "anstream-93d5468b10ffcb66.d",
            "serde-derive-93d5468b10ffcb66",
            "libserde_derive-93d5468b10ffcb66.so",
        ] {
            assert_eq!(hash_of(OsStr::new(name)), Some(h), "{name}");
        }
        for name in [
            "build-script-build",
            "anstream-93D5468B10FFCB66",
            "anstream-93d5468b10ffcb6",
            "anstream",
            "-",
            "",
            "x-93d5468b10ffcb66z.rlib",
        ] {
            assert_eq!(hash_of(OsStr::new(name)), None, "{name}");
        }
        assert_eq!(
            package_of(OsStr::new("serde-derive-93d5468b10ffcb66")),
            Some("serde-derive")
        );
    }

    #[test]
    fn profiles_are_found_one_and_two_levels_down() {
        let t = tempfile::tempdir().unwrap();
        for dir in [
            "debug/.fingerprint",
            "release/.fingerprint",
            "x86_64-unknown-linux-gnu/debug/.fingerprint",
            "doc/src",
            "tmp",
        ] {
            std::fs::create_dir_all(t.path().join(dir)).unwrap();
        }
        let fd = fsutil::open_root(t.path()).unwrap();
        let found = profiles(&fd).unwrap();
        assert_eq!(
            found,
            [
                PathBuf::from("debug"),
                PathBuf::from("release"),
                PathBuf::from("x86_64-unknown-linux-gnu/debug")
            ]
        );
    }

    #[test]
    fn target_dirs_are_found_by_cargos_tag_only() {
        let t = tempfile::tempdir().unwrap();
        let tag =
            format!("{TAG_SIGNATURE}\n# This file is a cache directory tag created by cargo.\n");
        for (dir, text) in [
            ("a/target", tag.as_str()),
            ("org/b/target", tag.as_str()),
            ("c/out", tag.as_str()),
            (
                "d/target",
                "Signature: 8a477f597d28d172789f06886806bc55\n# by another tool\n",
            ),
            ("a/target/debug/nested", tag.as_str()),
            (".hidden/target", tag.as_str()),
            ("e/node_modules/x/target", tag.as_str()),
        ] {
            std::fs::create_dir_all(t.path().join(dir)).unwrap();
            std::fs::write(t.path().join(dir).join("CACHEDIR.TAG"), text).unwrap();
        }
        // A FIFO named like the tag is refused, never waited on.
        std::fs::create_dir_all(t.path().join("f/target")).unwrap();
        nix::unistd::mkfifo(
            &t.path().join("f/target/CACHEDIR.TAG"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        let found = find_target_dirs(t.path());
        let rel: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(t.path()).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            rel,
            [
                PathBuf::from("a/target"),
                PathBuf::from("c/out"),
                PathBuf::from("org/b/target")
            ]
        );
    }
}
