//! Which directories may be a cache root (safety rule 2): never one whose eviction
//! would destroy more than a cache.
//!
//! A root is refused by what it is, not by its spelling: the path as configured and the
//! path with every symlink resolved are both checked (on a merged-/usr system `/bin` is
//! `/usr/bin`), against
//!
//! * the top-level and shared directories of the Filesystem Hierarchy Standard
//!   (`/var/cache` itself, `/mnt`, `/srv`, …), which hold other things besides a cache;
//! * the system trees no cache lives in, at any depth (`/usr/**`, `/etc/**`, `/boot/**`,
//!   `/var/log/**`, `/proc/**`, …);
//! * every user's home directory, and any directory that contains one.
//!
//! What is left (`/var/cache/ccache`, `/home/alice/.cache/go-build`, `/srv/ci/gocache`,
//! a temp directory) must still look like a cache of its kind (`KindName::check_root`).

use std::path::{Component, Path, PathBuf};

/// Directories that are never a root themselves (FHS 3.0 top level and shared areas).
const SHARED: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/run/user",
    "/sbin",
    "/snap",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/backups",
    "/var/cache",
    "/var/lib",
    "/var/local",
    "/var/lock",
    "/var/log",
    "/var/mail",
    "/var/opt",
    "/var/run",
    "/var/spool",
    "/var/tmp",
    "/nix",
    "/lost+found",
];

/// Trees no cache lives in: refused at any depth.
const SYSTEM_TREES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/sbin",
    "/snap",
    "/sys",
    "/usr",
    "/nix/store",
    "/var/lib/apt",
    "/var/lib/dpkg",
    "/var/lib/rpm",
    "/var/log",
    "/var/mail",
    "/var/spool",
];

/// `path` with `.` and `..` resolved lexically (no file system access): what the
/// configured spelling names before symlinks.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Why `path` must not be a cache root, if it must not: checks the configured spelling
/// and the `canonical` path (symlinks resolved), against the system directories and
/// `homes`.
pub fn refuse(configured: &Path, canonical: &Path, homes: &[PathBuf]) -> Option<String> {
    for path in [normalize(configured), canonical.to_path_buf()] {
        let shown = if path == canonical {
            path.display().to_string()
        } else {
            format!(
                "{} (which resolves to {})",
                path.display(),
                canonical.display()
            )
        };
        if SHARED.iter().any(|s| path == Path::new(s)) {
            return Some(format!(
                "refusing to manage {shown}: it is a system or shared directory, not a cache; name a directory inside it that only the cache uses"
            ));
        }
        if let Some(tree) = SYSTEM_TREES.iter().find(|t| path.starts_with(t)) {
            return Some(format!(
                "refusing to manage {shown}: it is inside {tree}, where the system keeps its own files, not caches"
            ));
        }
        if let Some(home) = homes.iter().find(|h| h.starts_with(&path)) {
            return Some(format!(
                "refusing to manage {shown}: it is or contains the home directory {}",
                home.display()
            ));
        }
    }
    None
}

/// Every user's home directory (from the password database) and `extra`, resolved.
pub fn homes(extra: Option<&Path>) -> Vec<PathBuf> {
    let mut homes: Vec<PathBuf> = extra.into_iter().map(Path::to_path_buf).collect();
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        homes.extend(
            passwd
                .lines()
                .filter_map(|l| l.split(':').nth(5))
                .filter(|h| h.starts_with('/') && *h != "/" && *h != "/nonexistent")
                .map(PathBuf::from),
        );
    }
    homes
        .into_iter()
        .flat_map(|h| {
            let resolved = h.canonicalize().ok();
            [Some(h), resolved]
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(configured: &str, canonical: &str) -> bool {
        refuse(
            Path::new(configured),
            Path::new(canonical),
            &[PathBuf::from("/home/alice")],
        )
        .is_some()
    }

    #[test]
    fn system_and_shared_directories_are_refused_by_what_they_are() {
        // Merged /usr: /bin is /usr/bin once resolved, and both spellings are refused.
        for (configured, canonical) in [
            ("/bin", "/usr/bin"),
            ("/lib", "/usr/lib"),
            ("/sbin", "/usr/sbin"),
            ("/lib64", "/usr/lib64"),
            ("/usr/bin", "/usr/bin"),
            ("/usr/lib", "/usr/lib"),
            ("/usr/local/lib", "/usr/local/lib"),
            ("/var/log", "/var/log"),
            ("/var/log/journal", "/var/log/journal"),
            ("/etc/ssl", "/etc/ssl"),
            ("/var/cache", "/var/cache"),
            ("/mnt", "/mnt"),
            ("/srv", "/srv"),
            ("/var/lib/dpkg", "/var/lib/dpkg"),
            ("/home", "/home"),
            ("/home/alice", "/home/alice"),
            ("/data/cache/../../usr/bin", "/usr/bin"),
            // A harmless-looking symlink to a system directory.
            ("/srv/ci/cache", "/usr/lib"),
            // A harmless-looking spelling of one.
            ("/var/cache/x/..", "/var/cache"),
        ] {
            assert!(
                refused(configured, canonical),
                "{configured} -> {canonical}"
            );
        }
    }

    #[test]
    fn caches_in_their_usual_places_are_accepted() {
        for path in [
            "/var/cache/ccache",
            "/home/alice/.cache/go-build",
            "/home/alice/go/pkg/mod",
            "/srv/ci/gocache",
            "/mnt/data/cache",
            "/tmp/.tmpAbc/cache",
            "/var/lib/cachewarden-test/cache",
        ] {
            assert!(!refused(path, path), "{path}");
        }
    }

    #[test]
    fn the_reason_names_the_resolved_path() {
        let why = refuse(Path::new("/bin"), Path::new("/usr/bin"), &[]).unwrap();
        assert!(why.contains("/bin (which resolves to /usr/bin)"), "{why}");
    }
}
