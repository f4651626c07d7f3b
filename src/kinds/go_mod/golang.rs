//! Go's own algorithms this kind needs, as `golang.org/x/mod` defines them: module
//! path case escaping, semantic versions (to sort `list`), dirhash `h1:` hashes, and
//! the file names go uses in a module cache.
use super::*;

// ---------------------------------------------------------------------------------------
// Case escaping (golang.org/x/mod module/module.go: EscapePath, UnescapePath).

/// `module.EscapePath`/`EscapeVersion`: upper-case letters become `!` + lower case.
/// `None` for `!` or non-ASCII input, which go rejects too.
pub fn escape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        match c {
            '!' => return None,
            c if !c.is_ascii() => return None,
            'A'..='Z' => {
                out.push('!');
                out.push(c.to_ascii_lowercase());
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// `unescapeString`: the inverse; `None` for an upper-case letter, a `!` not followed by
/// a lower-case letter, or non-ASCII.
pub fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut bang = false;
    for c in s.chars() {
        if !c.is_ascii() {
            return None;
        }
        if bang {
            bang = false;
            if !c.is_ascii_lowercase() {
                return None;
            }
            out.push(c.to_ascii_uppercase());
            continue;
        }
        match c {
            '!' => bang = true,
            'A'..='Z' => return None,
            c => out.push(c),
        }
    }
    (!bang).then_some(out)
}

// ---------------------------------------------------------------------------------------
// Semantic versions (golang.org/x/mod semver/semver.go), for `list`.

pub(super) struct Semver<'a> {
    pub(super) major: &'a str,
    pub(super) minor: &'a str,
    pub(super) patch: &'a str,
    pub(super) short: bool,
    pub(super) prerelease: &'a str,
    pub(super) build: &'a str,
}

pub(super) fn parse_int(v: &str) -> Option<(&str, &str)> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || (v.starts_with('0') && digits != 1) {
        return None;
    }
    Some(v.split_at(digits))
}

pub(super) fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

pub(super) fn is_bad_num(v: &str) -> bool {
    v.len() > 1 && v.starts_with('0') && v.bytes().all(|c| c.is_ascii_digit())
}

pub(super) fn parse_semver(v: &str) -> Option<Semver<'_>> {
    let rest = v.strip_prefix('v')?;
    let (major, rest) = parse_int(rest)?;
    let mut p = Semver {
        major,
        minor: "0",
        patch: "0",
        short: true,
        prerelease: "",
        build: "",
    };
    if rest.is_empty() {
        return Some(p);
    }
    let (minor, rest) = parse_int(rest.strip_prefix('.')?)?;
    p.minor = minor;
    if rest.is_empty() {
        return Some(p);
    }
    let (patch, mut rest) = parse_int(rest.strip_prefix('.')?)?;
    p.patch = patch;
    p.short = false;
    if rest.starts_with('-') {
        let end = rest.find('+').unwrap_or(rest.len());
        let pre = &rest[..end];
        let ok = pre[1..]
            .split('.')
            .all(|id| !id.is_empty() && id.bytes().all(is_ident_char) && !is_bad_num(id));
        if !ok {
            return None;
        }
        p.prerelease = pre;
        rest = &rest[end..];
    }
    if rest.starts_with('+') {
        let ok = rest[1..]
            .split('.')
            .all(|id| !id.is_empty() && id.bytes().all(is_ident_char));
        if !ok {
            return None;
        }
        p.build = rest;
        rest = "";
    }
    rest.is_empty().then_some(p)
}

/// `module.CanonicalVersion(v) == v`: a full `vX.Y.Z[-pre]`, build metadata only as
/// `+incompatible`.
pub fn is_canonical_version(v: &str) -> bool {
    parse_semver(v).is_some_and(|p| !p.short && (p.build.is_empty() || p.build == "+incompatible"))
}

pub(super) fn compare_int(x: &str, y: &str) -> std::cmp::Ordering {
    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
}

pub(super) fn compare_prerelease(x: &str, y: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    if x == y {
        return Equal;
    }
    if x.is_empty() {
        return Greater;
    }
    if y.is_empty() {
        return Less;
    }
    let (mut xs, mut ys) = (x[1..].split('.'), y[1..].split('.'));
    loop {
        match (xs.next(), ys.next()) {
            (Some(dx), Some(dy)) if dx != dy => {
                let (nx, ny) = (
                    dx.bytes().all(|c| c.is_ascii_digit()),
                    dy.bytes().all(|c| c.is_ascii_digit()),
                );
                return match (nx, ny) {
                    (true, false) => Less,
                    (false, true) => Greater,
                    (true, true) => compare_int(dx, dy),
                    (false, false) => dx.cmp(dy),
                };
            }
            (Some(_), Some(_)) => {}
            (None, Some(_)) => return Less,
            (Some(_), None) => return Greater,
            (None, None) => return Equal,
        }
    }
}

/// `semver.Compare`: invalid versions sort before valid ones.
pub fn compare_versions(v: &str, w: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (parse_semver(v), parse_semver(w)) {
        (None, None) => Equal,
        (None, Some(_)) => Less,
        (Some(_), None) => Greater,
        (Some(a), Some(b)) => compare_int(a.major, b.major)
            .then_with(|| compare_int(a.minor, b.minor))
            .then_with(|| compare_int(a.patch, b.patch))
            .then_with(|| compare_prerelease(a.prerelease, b.prerelease)),
    }
}

/// `semver.Sort`: by precedence, ties by string.
pub fn sort_versions(list: &mut [String]) {
    list.sort_by(|a, b| compare_versions(a, b).then_with(|| a.cmp(b)));
}

// ---------------------------------------------------------------------------------------
// dirhash (golang.org/x/mod sumdb/dirhash/hash.go).

/// `Hash1` over (name, SHA-256 of content) pairs; names must not contain a newline.
pub fn hash1(mut files: Vec<(Vec<u8>, [u8; 32])>) -> Result<String, String> {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut summary = Sha256::new();
    for (name, digest) in &files {
        if name.contains(&b'\n') {
            return Err("dirhash: filenames with newlines are not supported".into());
        }
        summary.update(crate::kinds::go_build::to_hex(digest).as_bytes());
        summary.update(b"  ");
        summary.update(name);
        summary.update(b"\n");
    }
    Ok(format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(summary.finalize())
    ))
}

/// The `/go.mod h1:` line of go.sum: `Hash1(["go.mod"])` over the `.mod` file.
#[cfg(test)]
pub fn go_mod_hash(content: &[u8]) -> String {
    let digest: [u8; 32] = Sha256::digest(content).into();
    hash1(vec![(b"go.mod".to_vec(), digest)]).expect("no newline in go.mod")
}

pub(super) fn sha256_of(mut reader: impl Read, buf: &mut [u8]) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    loop {
        match reader.read(buf) {
            Ok(0) => return Ok(hasher.finalize().into()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `HashZip`: names as stored in the zip, decompressed contents (CRC-checked). A
/// duplicated name is hashed once per occurrence with the last entry's content, as go's
/// name → file map does. The error is the reason the zip cannot be read.
pub fn hash_zip(file: std::fs::File) -> Result<String, String> {
    let mut archive =
        zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| format!("zip: {e}"))?;
    let mut names: Vec<Vec<u8>> = Vec::with_capacity(archive.len());
    let mut last: HashMap<Vec<u8>, usize> = HashMap::new();
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(|e| format!("zip: {e}"))?;
        let name = entry.name_raw().to_vec();
        last.insert(name.clone(), i);
        names.push(name);
    }
    let mut digests: HashMap<usize, [u8; 32]> = HashMap::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        let i = last[&name];
        let digest = match digests.get(&i) {
            Some(d) => *d,
            None => {
                let entry = archive.by_index(i).map_err(|e| format!("zip: {e}"))?;
                let d = sha256_of(entry, &mut buf)
                    .map_err(|e| format!("zip: reading {}: {e}", String::from_utf8_lossy(&name)))?;
                digests.insert(i, d);
                d
            }
        };
        files.push((name, digest));
    }
    hash1(files)
}

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
    let fd = open_dir_below(root, rel).map_err(TreeHashError::Io)?;
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
