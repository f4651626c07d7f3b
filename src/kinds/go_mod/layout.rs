//! What the files of a module cache look like: the names go gives them
//! (`cmd/go/internal/modfetch/cache.go`), the light checks of `.ziphash`, `.mod` and
//! `.info` contents, and the dirhash of an extracted tree walked fd-relatively.
use super::*;

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
/// named `prefix/rel/path` with `/` separators. Walks with `openat(O_NOFOLLOW)` and reads
/// with `O_NOATIME`.
pub fn hash_dir(root: &Path, rel: &Path, prefix: &str) -> Result<String, TreeHashError> {
    let fd = fsutil::open_dir_beneath(root, rel).map_err(TreeHashError::Io)?;
    let mut dir = Dir::from_fd(fd).map_err(|e| TreeHashError::Io(e.into()))?;
    let mut files = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    hash_dir_into(&mut dir, prefix.as_bytes(), &mut files, &mut buf)?;
    hash1(files).map_err(TreeHashError::Name)
}

pub(super) fn hash_dir_into(
    dir: &mut Dir,
    prefix: &[u8],
    files: &mut Vec<(Vec<u8>, [u8; 32])>,
    buf: &mut [u8],
) -> Result<(), TreeHashError> {
    for (name, _) in list(dir).map_err(TreeHashError::Io)? {
        let mut full = prefix.to_vec();
        full.push(b'/');
        full.extend_from_slice(name.as_bytes());
        let st = stat_at(&*dir, &name).map_err(TreeHashError::Io)?;
        if fsutil::is_file_type(&st, libc::S_IFDIR) {
            let mut sub = open_dir_at(&*dir, &name).map_err(TreeHashError::Io)?;
            hash_dir_into(&mut sub, &full, files, buf)?;
        } else if fsutil::is_file_type(&st, libc::S_IFREG) {
            let fd = open_noatime(&*dir, &name, OFlag::O_RDONLY).map_err(TreeHashError::Io)?;
            let digest = sha256_of(std::fs::File::from(fd), buf).map_err(TreeHashError::Io)?;
            files.push((full, digest));
        } else {
            return Err(TreeHashError::NotRegular(
                String::from_utf8_lossy(&full).into_owned(),
            ));
        }
    }
    Ok(())
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
