//! What the files of a module cache look like: the names go gives them
//! (`cmd/go/internal/modfetch/cache.go`), the light checks of `.ziphash`, `.mod` and
//! `.info` contents, and the dirhash of an extracted tree walked fd-relatively.
use super::*;

/// Directories deeper than this below the root (or below `cache/download`) are not
/// searched for modules: a module path has a few elements (`golang.org/x/text`: 3;
/// the module index has none near 20), and each level costs a scan an open from the
/// root, so a user's 100,000-level trap would make a scan quadratic (issue #29).
pub const MAX_PATH_ELEMENTS: usize = 64;

/// Why [`hash_dir`] could not hash a tree the way go would.
#[derive(Debug)]
pub enum TreeHashError {
    Io(io::Error),
    /// A symlink, fifo, socket or device: module trees hold only regular files and go's
    /// `HashDir` would follow a symlink.
    NotRegular(String),
    Name(String),
}

/// `HashDir(dir, prefix)` for the directory `rel` below `root`: every regular file,
/// named `prefix/rel/path` with `/` separators. Walks with [`fsutil::walk_tree`] (a
/// loop, whatever the depth; never following a symlink) and reads with `O_NOATIME`.
pub fn hash_dir(root: &Path, rel: &Path, prefix: &str) -> Result<String, TreeHashError> {
    let fd = fsutil::open_dir_beneath(root, rel).map_err(TreeHashError::Io)?;
    let mut files = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut odd = None;
    let walked = fsutil::walk_tree(fd, fsutil::Walk::WHOLE_TREE, &mut |item| {
        match item {
            fsutil::Visit::Other {
                rel,
                parent,
                name,
                st,
            } => {
                let mut full = prefix.as_bytes().to_vec();
                full.push(b'/');
                full.extend_from_slice(rel.as_os_str().as_bytes());
                if !fsutil::is_file_type(st, libc::S_IFREG) {
                    odd = Some(String::from_utf8_lossy(&full).into_owned());
                    return Err(io::Error::other("not a regular file"));
                }
                let fd = open_noatime(parent, name, OFlag::O_RDONLY)?;
                files.push((full, sha256_of(std::fs::File::from(fd), &mut buf)?));
            }
            fsutil::Visit::Error { error, .. } => return Err(error),
            fsutil::Visit::Dir { .. } | fsutil::Visit::Left { .. } => {}
        }
        Ok(())
    });
    if let Some(path) = odd {
        return Err(TreeHashError::NotRegular(path));
    }
    walked.map_err(TreeHashError::Io)?;
    hash1(files).map_err(TreeHashError::Name)
}

/// A `.ziphash` as `hashZip` writes it: `h1:` + base64 of 32 bytes, no newline (go
/// trims space when reading).
pub(super) fn parse_ziphash(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let b64 = text.strip_prefix("h1:")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (raw.len() == 32).then(|| text.to_string())
}

/// The light `.mod` check: non-empty UTF-8 with a `module` directive.
pub(super) fn mod_ok(bytes: &[u8]) -> Result<(), &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8")?;
    if text.trim().is_empty() {
        return Err("empty");
    }
    let has_module = text.lines().any(|l| {
        let l = l.trim_start();
        l.strip_prefix("module")
            .is_some_and(|rest| rest.starts_with([' ', '\t', '"', '(']))
    });
    if has_module {
        Ok(())
    } else {
        Err("no module directive")
    }
}

/// The `.info` check: a JSON object whose `Version` is this version (`RevInfo`).
pub(super) fn info_ok(bytes: &[u8], version: &str) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("Version").and_then(|v| v.as_str()) {
        Some(v) if v == version => Ok(()),
        Some(v) => Err(format!("Version is {v:?}, not {version:?}")),
        None => Err("no Version string".into()),
    }
}

// ---------------------------------------------------------------------------------------
// File names.

/// A file of one version in `@v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VFile {
    Info,
    Mod,
    Zip,
    Ziphash,
    Lock,
    Partial,
    /// `<ver>.zip123.tmp`, `<ver>.ziphash123.tmp`.
    ZipTemp,
    /// `<ver>.info123.tmp`, `<ver>.mod123.tmp` (writeDiskCache).
    MetaTemp,
}

pub(super) fn valid_escaped_version(v: &str) -> bool {
    unescape(v).is_some_and(|u| is_canonical_version(&u))
}

/// Parses a name in `@v`: (escaped version, what it is).
pub(super) fn parse_vfile(name: &str) -> Option<(&str, VFile)> {
    if let Some(base) = name.strip_suffix(".tmp") {
        let base = base.trim_end_matches(|c: char| c.is_ascii_digit());
        let kinds = [
            (".ziphash", VFile::ZipTemp),
            (".zip", VFile::ZipTemp),
            (".info", VFile::MetaTemp),
            (".mod", VFile::MetaTemp),
        ];
        for (suffix, kind) in kinds {
            if let Some(v) = base.strip_suffix(suffix) {
                return valid_escaped_version(v).then_some((v, kind));
            }
        }
        return None;
    }
    let (v, ext) = name.rsplit_once('.')?;
    let kind = match ext {
        "info" => VFile::Info,
        "mod" => VFile::Mod,
        "zip" => VFile::Zip,
        "ziphash" => VFile::Ziphash,
        "lock" => VFile::Lock,
        "partial" => VFile::Partial,
        _ => return None,
    };
    valid_escaped_version(v).then_some((v, kind))
}

/// Parses a directory name next to extracted trees: `elem@ver` (a tree) or
/// `elem@ver.tmp-NNN` (a pre-1.16 extraction temp): (elem, escaped version, is temp).
pub(super) fn parse_tree_name(name: &str) -> Option<(&str, &str, bool)> {
    let (elem, rest) = name.split_once('@')?;
    if elem.is_empty() {
        return None;
    }
    if valid_escaped_version(rest) {
        return Some((elem, rest, false));
    }
    let (v, random) = rest.rsplit_once(".tmp-")?;
    let temp = !random.is_empty() && random.bytes().all(|c| c.is_ascii_digit());
    (temp && valid_escaped_version(v)).then_some((elem, v, true))
}

/// A key's escaped module path and version.
pub(super) fn split_key(key: &str) -> Option<(&str, &str)> {
    key.rsplit_once('@')
}

/// Whether an escaped module path is a plain relative path (no empty, `.` or `..`
/// elements) — keys built from user input go through this.
pub(super) fn plain_module_path(m: &str) -> bool {
    !m.is_empty()
        && m.split('/')
            .all(|e| !e.is_empty() && e != "." && e != ".." && !e.contains('\0'))
}

pub(super) fn vdir_rel(module: &str) -> PathBuf {
    Path::new("cache/download").join(module).join("@v")
}

/// The tree's parent directory (relative to the root) and its own name.
pub(super) fn tree_location(key: &str) -> (&Path, &str) {
    match key.rsplit_once('/') {
        Some((parent, name)) => (Path::new(parent), name),
        None => (Path::new(""), key),
    }
}
