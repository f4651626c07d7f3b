//! Whose caches: one `[[cache]]` table naming many caches on a shared build server.
//!
//! A table names its caches per user (`users = "all"` or a list, with `path = "auto"`
//! or `path = "~/…"`) or by a glob (`path = "/home/*/.cache/go-build"`). Each cache it
//! yields is named `<table>@<user>` and carries its [`Owner`]: the daemon removes its
//! entries with the owner's file-system credentials and only while the root is the
//! owner's (see `cache/evict.rs`), so a user who plants links in their own cache can
//! make the daemon touch nothing but their own files.
//!
//! The users are those of `/etc/passwd` with a uid from 1000 (Debian's `FIRST_UID`) up
//! to 60000 (`LAST_UID`), which is where `adduser` puts people; system accounts and
//! `nobody` are not. Their environment is unknown to a system service, so `auto` means
//! what go would use with an empty environment — `~/.cache/go-build` and `~/go/pkg/mod`
//! (`os.UserCacheDir`, `build.Default.GOPATH`) — unless the user set `GOCACHE`,
//! `GOMODCACHE` or `GOPATH` with `go env -w`, which writes them to `~/.config/go/env`
//! (`cmd/go/internal/cfg`, `EnvFile`). That file is read with `O_NOFOLLOW` and only if
//! the user owns it.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::kinds::KindName;

/// The lowest and highest uid of a person (Debian's `adduser.conf`).
pub const FIRST_UID: u32 = 1000;
pub const LAST_UID: u32 = 60000;

/// A cache's owner: whose credentials its removals run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Which users a table names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum UsersSpec {
    /// `"all"`, or a uid range `"2000-2999"`.
    All(String),
    /// User names.
    Some(Vec<String>),
}

/// The people of `/etc/passwd` (uid `FIRST_UID..=LAST_UID`).
pub fn people() -> Vec<Owner> {
    std::fs::read_to_string("/etc/passwd")
        .map(|text| parse_passwd(&text))
        .unwrap_or_default()
        .into_iter()
        .filter(|o| (FIRST_UID..=LAST_UID).contains(&o.uid))
        .collect()
}

/// Every line of a passwd file that parses.
pub fn parse_passwd(text: &str) -> Vec<Owner> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || f[0].is_empty() || !f[5].starts_with('/') {
                return None;
            }
            Some(Owner {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: PathBuf::from(f[5]),
            })
        })
        .collect()
}

/// The owners a `users =` value names; an unknown name is an error naming it.
pub fn resolve(spec: &UsersSpec) -> Result<Vec<Owner>, String> {
    match spec {
        UsersSpec::All(all) if all == "all" => Ok(people()),
        UsersSpec::All(range) => {
            let (first, last) = parse_uid_range(range).ok_or_else(|| {
                format!(
                    "users = {range:?}: expected \"all\", a uid range such as \"2000-2999\", or a list of user names"
                )
            })?;
            let known = std::fs::read_to_string("/etc/passwd")
                .map(|t| parse_passwd(&t))
                .unwrap_or_default();
            Ok(known
                .into_iter()
                .filter(|o| (first..=last).contains(&o.uid))
                .collect())
        }
        UsersSpec::Some(names) => {
            let known = std::fs::read_to_string("/etc/passwd")
                .map(|t| parse_passwd(&t))
                .unwrap_or_default();
            names
                .iter()
                .map(|n| {
                    known
                        .iter()
                        .find(|o| &o.name == n)
                        .cloned()
                        .ok_or_else(|| format!("no such user {n:?} in /etc/passwd"))
                })
                .collect()
        }
    }
}

/// `"FIRST-LAST"`, both uids, in order: CI runners' accounts, say.
fn parse_uid_range(text: &str) -> Option<(u32, u32)> {
    let (first, last) = text.split_once('-')?;
    let (first, last) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    (first <= last).then_some((first, last))
}

/// The owner of an existing directory, by its uid.
pub fn owner_of(path: &Path) -> Option<Owner> {
    let uid = std::fs::symlink_metadata(path).ok()?.uid();
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    parse_passwd(&text).into_iter().find(|o| o.uid == uid)
}

/// The cache root of `owner` for a table's `path`: `auto` as go would find it for them,
/// `~/rest` below their home.
pub fn path_for(kind: KindName, configured: &Path, owner: &Owner) -> Result<PathBuf, String> {
    if configured == Path::new("auto") {
        return go_default(kind, owner);
    }
    match configured.strip_prefix("~") {
        Ok(rest) if configured.to_string_lossy().starts_with("~/") => Ok(owner.home.join(rest)),
        _ => Err(format!(
            "with users, path must be \"auto\" or start with \"~/\" (each user's home), not {:?}",
            configured
        )),
    }
}

/// Where the tool puts the cache of `kind` for `owner`, with no environment but their
/// own settings (go: what `go env -w` wrote).
fn go_default(kind: KindName, owner: &Owner) -> Result<PathBuf, String> {
    let env = go_env_file(owner);
    let get = |key: &str| {
        env.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| PathBuf::from(v))
            .filter(|p| p.is_absolute())
    };
    kind.per_user_auto(&owner.home, &get)
        .ok_or_else(|| format!("path = \"auto\" is not known for kind {kind}; give \"~/…\""))
}

/// `KEY=value` lines of the owner's `~/.config/go/env`, if it is a regular file of
/// theirs (opened without following a symlink: a user cannot make us read another's).
fn go_env_file(owner: &Owner) -> Vec<(String, String)> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = owner.home.join(".config/go/env");
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    else {
        return Vec::new();
    };
    let Ok(meta) = file.metadata() else {
        return Vec::new();
    };
    if !meta.is_file() || meta.uid() != owner.uid {
        return Vec::new();
    }
    let mut text = String::new();
    if file.take(64 * 1024).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    crate::golang::env::parse_env_file(&text)
}

/// Runs `f` with `owner`'s file-system credentials on this thread (`setfsuid` and
/// `setfsgid`, which change only the calling thread's and drop the file-system
/// capabilities while not root), when the daemon runs as root and the cache has an
/// owner; otherwise as the daemon. A removal or read in a user's cache then does exactly
/// what that user could do: a hard link to another user's file is unlinked (a change
/// to the user's own directory) but never chmodded, and a file that is not theirs to
/// read is not read. An error, and `f` not run, if the switch did not take (no
/// `CAP_SETUID`, a seccomp filter without `setfsuid`).
pub fn as_owner<R>(owner: Option<&Owner>, f: impl FnOnce() -> R) -> Result<R, String> {
    let Some(owner) = owner.filter(|_| nix::unistd::geteuid().is_root()) else {
        return Ok(f());
    };
    /// Restores the daemon's own credentials, also if `f` panics.
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: plain syscalls on this thread's credentials; 0 is root's.
            unsafe {
                libc::setfsuid(0);
                libc::setfsgid(0);
            }
        }
    }
    // SAFETY: as above. An invalid id (-1) changes nothing and returns the current one,
    // which is how the switch is checked.
    let switched = unsafe {
        libc::setfsgid(owner.gid);
        libc::setfsuid(owner.uid);
        libc::setfsgid(u32::MAX) as u32 == owner.gid && libc::setfsuid(u32::MAX) as u32 == owner.uid
    };
    let _restore = Restore;
    if !switched {
        return Err(format!(
            "cannot act with {}'s file-system credentials (setfsuid needs CAP_SETUID and CAP_SETGID, and the syscalls allowed); nothing done as root instead",
            owner.name
        ));
    }
    Ok(f())
}

/// Whether a configured path is a glob naming many caches.
pub fn is_glob(path: &Path) -> bool {
    path.to_string_lossy().contains(['*', '?', '['])
}

/// The existing directories a glob path names, with their owners; directories owned
/// by no user of `/etc/passwd` are left out.
pub fn glob_caches(pattern: &Path) -> Result<Vec<(PathBuf, Owner)>, String> {
    let text = pattern.to_string_lossy();
    if !pattern.is_absolute() {
        return Err(format!(
            "{text:?} is a relative path; give an absolute pattern"
        ));
    }
    let paths = glob::glob(&text).map_err(|e| format!("invalid pattern {text:?}: {e}"))?;
    Ok(paths
        .flatten()
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
        .filter_map(|p| {
            let owner = owner_of(&p)?;
            Some((p, owner))
        })
        .collect())
}

/// The cache root exists and is not the owner's: someone else made it (a user's
/// `GOCACHE` pointing into another user's tree); it is not managed as theirs.
pub fn foreign_root(path: &Path, owner: &Owner) -> Option<u32> {
    let uid = std::fs::symlink_metadata(path).ok()?.uid();
    (uid != owner.uid).then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(home: &Path) -> Owner {
        Owner {
            name: "alice".into(),
            uid: nix::unistd::getuid().as_raw(),
            gid: 1000,
            home: home.to_path_buf(),
        }
    }

    #[test]
    fn as_owner_acts_with_the_owners_rights_and_gives_root_back() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("as_owner_acts_with_the_owners_rights...: not run: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap(); // root's, 0700
        let nobody = Owner {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
            home: "/nonexistent".into(),
        };
        let attempt = || std::fs::write(dir.path().join("x"), b"x");
        let as_nobody = std::thread::scope(|s| s.spawn(|| as_owner(Some(&nobody), attempt)).join())
            .unwrap()
            .unwrap();
        assert_eq!(
            as_nobody.unwrap_err().kind(),
            std::io::ErrorKind::PermissionDenied
        );
        // The same thread has root's rights back.
        std::thread::scope(|s| {
            s.spawn(|| {
                as_owner(Some(&nobody), || ()).unwrap();
                attempt().unwrap();
            });
        });
        assert!(as_owner(None, attempt).unwrap().is_ok());
    }

    #[test]
    fn users_may_be_all_a_uid_range_or_names_and_anything_else_is_named() {
        assert_eq!(parse_uid_range("2000-2999"), Some((2000, 2999)));
        assert_eq!(parse_uid_range(" 0 - 0 "), Some((0, 0)));
        assert_eq!(parse_uid_range("2999-2000"), None);
        assert_eq!(parse_uid_range("alice"), None);
        let root = resolve(&UsersSpec::All("0-0".into())).unwrap();
        assert_eq!(root.iter().map(|o| o.uid).collect::<Vec<_>>(), vec![0]);
        let bad = resolve(&UsersSpec::All("everyone".into())).unwrap_err();
        assert!(
            bad.contains("\"everyone\"") && bad.contains("uid range"),
            "{bad}"
        );
        let unknown = resolve(&UsersSpec::Some(vec!["no-such-user-xyz".into()])).unwrap_err();
        assert!(unknown.contains("no-such-user-xyz"), "{unknown}");
    }

    #[test]
    fn passwd_lines_parse_and_bad_ones_are_skipped() {
        let text = "root:x:0:0:root:/root:/bin/bash\nalice:x:1001:1001::/home/alice:/bin/sh\nbroken\nbob:x:notanumber:1:/home/bob:/bin/sh\n";
        let owners = parse_passwd(text);
        assert_eq!(owners.len(), 2);
        assert_eq!(owners[1].name, "alice");
        assert_eq!(owners[1].home, PathBuf::from("/home/alice"));
    }

    #[test]
    fn auto_is_where_go_would_look_and_go_env_w_moves_it() {
        let home = tempfile::tempdir().unwrap();
        let owner = alice(home.path());
        assert_eq!(
            path_for(KindName::GoBuild, Path::new("auto"), &owner).unwrap(),
            home.path().join(".cache/go-build")
        );
        assert_eq!(
            path_for(KindName::GoMod, Path::new("auto"), &owner).unwrap(),
            home.path().join("go/pkg/mod")
        );
        assert_eq!(
            path_for(KindName::GoBuild, Path::new("~/gocache"), &owner).unwrap(),
            home.path().join("gocache")
        );
        assert!(path_for(KindName::GoBuild, Path::new("/srv/x"), &owner).is_err());
        std::fs::create_dir_all(home.path().join(".config/go")).unwrap();
        std::fs::write(
            home.path().join(".config/go/env"),
            "GOCACHE=/srv/alice-cache\nGOPATH=/srv/gopath:/other\n",
        )
        .unwrap();
        assert_eq!(
            go_default(KindName::GoBuild, &owner).unwrap(),
            PathBuf::from("/srv/alice-cache")
        );
        assert_eq!(
            go_default(KindName::GoMod, &owner).unwrap(),
            PathBuf::from("/srv/gopath/pkg/mod")
        );
    }

    #[test]
    fn a_go_env_file_that_is_a_symlink_or_not_the_users_is_ignored() {
        let home = tempfile::tempdir().unwrap();
        let owner = alice(home.path());
        std::fs::create_dir_all(home.path().join(".config/go")).unwrap();
        let elsewhere = home.path().join("elsewhere");
        std::fs::write(&elsewhere, "GOCACHE=/srv/other\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, home.path().join(".config/go/env")).unwrap();
        assert_eq!(
            go_default(KindName::GoBuild, &owner).unwrap(),
            home.path().join(".cache/go-build")
        );
        let stranger = Owner {
            uid: owner.uid + 1,
            ..owner.clone()
        };
        std::fs::remove_file(home.path().join(".config/go/env")).unwrap();
        std::fs::write(home.path().join(".config/go/env"), "GOCACHE=/srv/other\n").unwrap();
        assert_eq!(
            go_default(KindName::GoBuild, &stranger).unwrap(),
            home.path().join(".cache/go-build")
        );
    }
}
