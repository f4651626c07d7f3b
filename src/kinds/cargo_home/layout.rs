//! Where cargo keeps what in `$CARGO_HOME` (cargo's `util/context/mod.rs`:
//! `registry_index_path`, `registry_cache_path`, `registry_source_path`, `git_db_path`,
//! `git_checkouts_path`).
//!
//! ```text
//! registry/index/<registry>/            the index: config.json and `.cache/` (sparse),
//!                                       or a git repository and `.cache/` (git)
//! registry/cache/<registry>/<pkg>-<ver>.crate   a download (`PackageId::tarball_name`)
//! registry/src/<registry>/<pkg>-<ver>/  its extracted sources, `.cargo-ok` written last
//! git/db/<ident>/                       a bare clone of a git dependency
//! git/checkouts/<ident>/<short-id>/     one revision of it, `.cargo-ok` written last
//! ```
//!
//! `<registry>` (`index.crates.io-1949cf8c6b5b557f`) is the same directory name under
//! `index/`, `cache/` and `src/`.

use std::path::{Path, PathBuf};

/// The file cargo writes last into an extracted package (`{"v":1}` since 1.71, `ok`
/// before) or a git checkout (empty): without it the directory is half-written
/// (`sources/registry/mod.rs::unpack_package`, `git/utils.rs::CheckoutGuard`).
pub const READY: &str = ".cargo-ok";
/// Cargo's package-cache locks, in the CARGO_HOME root (`util/cache_lock.rs`).
pub const DOWNLOAD_LOCK: &str = ".package-cache";
pub const MUTATE_LOCK: &str = ".package-cache-mutate";
/// Cargo's last-use tracker, SQLite (`core/global_cache_tracker.rs`).
pub const TRACKER: &str = ".global-cache";
/// Where `cargo install` puts programs: counted, never managed.
pub const BIN: &str = "bin";

/// One thing cargo keeps in its home, as cargo's own gc counts them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HomeId {
    /// `registry/index/<registry>`.
    Index(std::sync::Arc<str>),
    /// `registry/cache/<registry>/<file>` (a `.crate`).
    Crate(std::sync::Arc<str>, std::sync::Arc<str>),
    /// `registry/src/<registry>/<package>-<version>`.
    Src(std::sync::Arc<str>, std::sync::Arc<str>),
    /// `git/db/<ident>`.
    GitDb(std::sync::Arc<str>),
    /// `git/checkouts/<ident>/<short-id>`.
    Checkout(std::sync::Arc<str>, std::sync::Arc<str>),
}

impl HomeId {
    /// The entry's path relative to CARGO_HOME: also its name.
    pub fn rel(&self) -> PathBuf {
        match self {
            HomeId::Index(reg) => Path::new("registry/index").join(&**reg),
            HomeId::Crate(reg, file) => Path::new("registry/cache").join(&**reg).join(&**file),
            HomeId::Src(reg, dir) => Path::new("registry/src").join(&**reg).join(&**dir),
            HomeId::GitDb(ident) => Path::new("git/db").join(&**ident),
            HomeId::Checkout(ident, rev) => Path::new("git/checkouts").join(&**ident).join(&**rev),
        }
    }

    /// The entry a path relative to CARGO_HOME belongs to (a path inside an entry's
    /// directory belongs to it). Names that are not UTF-8 are no entry's: cargo makes
    /// every name it writes from UTF-8.
    pub fn of(rel: &Path) -> Option<HomeId> {
        let comps: Vec<&str> = rel.to_str()?.split('/').filter(|c| !c.is_empty()).collect();
        let usable = |c: &&str| !c.starts_with('.');
        match comps.as_slice() {
            ["registry", "index", reg, ..] if usable(reg) => Some(HomeId::Index((*reg).into())),
            ["registry", "cache", reg, file, ..]
                if usable(reg) && file.ends_with(".crate") && usable(file) =>
            {
                Some(HomeId::Crate((*reg).into(), (*file).into()))
            }
            ["registry", "src", reg, dir, ..] if usable(reg) && usable(dir) => {
                Some(HomeId::Src((*reg).into(), (*dir).into()))
            }
            ["git", "db", ident, ..] if usable(ident) => Some(HomeId::GitDb((*ident).into())),
            ["git", "checkouts", ident, rev, ..] if usable(ident) && usable(rev) => {
                Some(HomeId::Checkout((*ident).into(), (*rev).into()))
            }
            _ => None,
        }
    }

    /// Whether it is a directory (all but a `.crate`).
    pub fn is_tree(&self) -> bool {
        !matches!(self, HomeId::Crate(..))
    }
}

/// `(package, version)` of `<package>-<version>` (a `.crate` without its suffix, or a
/// source directory). A package name has no `.` but may have `-` followed by a digit
/// (`sha-1`); a version's major is digits: the split is the last `-` before the first
/// `.` (`sha-1-0.10.1` is `sha-1` 0.10.1).
pub fn package_version(name: &str) -> Option<(&str, &str)> {
    let first_dot = name.find('.')?;
    let dash = name[..first_dot].rfind('-')?;
    let (package, version) = (&name[..dash], &name[dash + 1..]);
    (!package.is_empty() && version.starts_with(|c: char| c.is_ascii_digit()))
        .then_some((package, version))
}

/// Where the index cache of a registry keeps a package's versions, below `.cache/`
/// (cargo-util's `registry.rs::make_dep_path`, of the lowercased name): `1/a`, `2/ab`,
/// `3/a/abc`, `ab/cd/abcd…`. `None` for a name no registry serves (not ASCII).
pub fn index_cache_path(package: &str) -> Option<PathBuf> {
    if package.is_empty() || !package.is_ascii() {
        return None;
    }
    let name = package.to_ascii_lowercase();
    Some(match name.len() {
        1 => Path::new("1").join(&name),
        2 => Path::new("2").join(&name),
        3 => Path::new("3").join(&name[..1]).join(&name),
        _ => Path::new(&name[..2]).join(&name[2..4]).join(&name),
    })
}
