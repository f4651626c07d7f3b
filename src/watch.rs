//! Keeps a cache's index current between full scans, from inotify events.
//!
//! ## Why `inotify` and not `notify`
//!
//! The `notify` crate's inotify backend always adds `IN_OPEN` to its watch mask
//! (notify 8 `src/inotify.rs`, `add_single_watch`). On a build cache every cache *hit*
//! opens a file, so a busy `go build` would become a flood of events the daemon must
//! wake up for and discard. We watch with exactly the mask we need:
//! `CREATE | CLOSE_WRITE | ATTRIB | DELETE | MOVED_FROM | MOVED_TO` (ATTRIB catches
//! Go's mtime bump on use), plus `DELETE_SELF | MOVE_SELF` for the watched dirs
//! themselves. No `MODIFY` either: a file being written produces one per `write(2)`;
//! `CLOSE_WRITE` tells us once it is complete.
//!
//! ## Shape
//!
//! Watches are per directory, non-recursive; a kind says how many levels below a
//! directory to watch (GOCACHE: the root and its 256 shards; `dir`: the whole tree), and
//! new subdirectories within that depth get a watch (and a walk, since files may land
//! in them before the watch exists). Changed paths are
//! batched — sent when the stream has been quiet for [`QUIET`] or the batch is
//! [`MAX_BATCH_DELAY`] old — so a burst of writes costs one index update and one limit
//! check. A queue overflow (`IN_Q_OVERFLOW`) or a watched root disappearing asks for a
//! rescan of this cache only.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fsutil;
use crate::kinds::WatchDir;

const QUIET: Duration = Duration::from_millis(20);
const MAX_BATCH_DELAY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Paths relative to the cache root whose entries may have changed.
    Paths(Vec<PathBuf>),
    /// The watcher lost track; the cache must be rescanned (and watched anew).
    Rescan(String),
    /// A watched root was removed or moved (`go clean`, `rm -rf`): the watcher has
    /// stopped; the caller watches again as soon as the root is back.
    RootGone(String),
    /// Part of the tree is not watched; worth an error in `status`.
    Trouble(String),
    /// More directories than [`WATCH_BUDGET`]: changes below some are seen only by
    /// rescans, which the caller now makes now and then.
    Partial(String),
}

fn over_budget_text() -> String {
    format!(
        "more than {WATCH_BUDGET} directories to watch (the per-cache budget of inotify watches, shared by every process of the daemon's user): some changes are seen only by the rescan every {:?}",
        PARTIAL_RESCAN
    )
}

/// Why a watch walk stopped early (not an error).
const OVER_BUDGET: &str = "over the watch budget";

/// How often a cache watched in part is rescanned.
pub const PARTIAL_RESCAN: Duration = Duration::from_secs(300);

/// The path inotify resolves to exactly the directory `fd` is open on (a magic link,
/// followed by the kernel without resolving any name again).
fn fd_path(fd: &std::os::fd::OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::CLOSE_WRITE
        | WatchMask::ATTRIB
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
        | WatchMask::EXCL_UNLINK
}

struct Watched {
    /// The directory it is in (`None` for a root), and its name there (a root: its
    /// whole path). Paths are rebuilt from these when an event comes, so memory stays
    /// a name per watch, however deep the tree (issue #29).
    parent: Option<WatchDescriptor>,
    name: OsString,
    /// Levels of new subdirectories to watch below this one.
    depth: u32,
    is_root: bool,
}

/// The most directories one cache's watcher watches. Watches are a per-user kernel
/// resource (`fs.inotify.max_user_watches`) every root process shares: one user's
/// 20,000 `mkdir`s in their module cache took 20,000 of root's (issue #29). Past this,
/// the cache is rescanned now and then instead ([`Change::Partial`]). A GOCACHE needs
/// 257; a module cache about one per module path element.
pub const WATCH_BUDGET: usize = 8192;

struct Tree {
    root: PathBuf,
    watches: Watches,
    dirs: HashMap<WatchDescriptor, Watched>,
    /// (parent, name) of `dirs`: a directory whose permissions change (`ATTRIB`) and is
    /// not among them could not be watched before (`EACCES`) and is tried again.
    watched_names: HashSet<(WatchDescriptor, OsString)>,
    /// Directories with this name are watched, never what is below them (`@v`).
    leaf: Option<&'static str>,
    /// The budget was reached: some directories are not watched.
    over_budget: bool,
    /// Problems to report (directories that could not be watched or listed).
    trouble: Vec<String>,
}

impl Tree {
    /// The path of the watched directory `wd`.
    fn path_of(&self, wd: &WatchDescriptor) -> Option<PathBuf> {
        let mut names = Vec::new();
        let mut at = self.dirs.get(wd)?;
        while let Some(parent) = &at.parent {
            names.push(at.name.as_os_str());
            at = self.dirs.get(parent)?;
        }
        let mut path = PathBuf::from(&at.name);
        path.extend(names.iter().rev());
        Some(path)
    }

    /// Watches one directory through its descriptor; `Ok(None)` past the budget.
    fn watch(
        &mut self,
        fd: &std::os::fd::OwnedFd,
        parent: Option<&WatchDescriptor>,
        name: &OsStr,
        depth: u32,
        is_root: bool,
    ) -> io::Result<Option<WatchDescriptor>> {
        if self.dirs.len() >= WATCH_BUDGET && !is_root {
            self.over_budget = true;
            return Ok(None);
        }
        let wd = self.watches.add(fd_path(fd), mask())?;
        if let Some(parent) = parent {
            self.watched_names
                .insert((parent.clone(), name.to_os_string()));
        }
        self.dirs.insert(
            wd.clone(),
            Watched {
                parent: parent.cloned(),
                name: name.to_os_string(),
                depth,
                is_root,
            },
        );
        Ok(Some(wd))
    }

    /// Watches `dir` (a root, or `name` in the watched `parent`) and `depth` levels of
    /// directories below it. Returns the files found in newly watched directories below
    /// the roots, which may predate their watch. Directories that cannot be watched or
    /// read are noted in `self.trouble`.
    fn add(
        &mut self,
        parent: Option<&WatchDescriptor>,
        dir: &Path,
        depth: u32,
        found: &mut Vec<PathBuf>,
    ) -> io::Result<()> {
        let is_root = parent.is_none();
        // Opened without following any symlink (from `/` for the cache root, fd-relative
        // below it), then watched through its descriptor: a directory swapped for a
        // symlink in a race is never watched nor listed.
        let fd = match dir.strip_prefix(&self.root) {
            Ok(rel) => fsutil::open_dir_beneath(&self.root, rel)?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not below the cache root", dir.display()),
                ))
            }
        };
        let name = match parent {
            None => dir.as_os_str(),
            Some(_) => dir.file_name().unwrap_or_default(),
        };
        let Some(wd) = self.watch(&fd, parent, name, depth, is_root)? else {
            return Ok(());
        };
        let is_leaf = !is_root && self.leaf.is_some_and(|l| name == l);
        if is_root && depth == 0 {
            return Ok(());
        }
        if is_leaf {
            // Its files, which may predate the watch (`mkdir -p …/@v` then a write:
            // the soak at 6a6a7c9 lost a module planted so), but nothing below it.
            return self.list_files(fd, dir, found);
        }
        // A directory created after the start may already hold files. Its directories
        // are watched as they are met (the walk goes depth first, so a directory's
        // parent is always watched before it).
        let how = fsutil::Walk {
            max_depth: depth.max(1),
            make_writable: false,
            leaf_name: self.leaf,
        };
        // The watches on the way down to the directory being visited, by level (`None`:
        // not watched, past the budget): its parent's is at its level less one.
        let mut on_path: Vec<Option<WatchDescriptor>> = Vec::new();
        let mut unwatched = Vec::new();
        let walked = fsutil::walk_tree(fd, how, &mut |item| {
            match item {
                fsutil::Visit::Dir {
                    rel,
                    fd: sub,
                    level,
                    ..
                } => {
                    on_path.truncate(level as usize - 1);
                    let up = match level {
                        1 => Some(wd.clone()),
                        _ => on_path.last().cloned().flatten(),
                    };
                    let below = if depth == u32::MAX {
                        u32::MAX
                    } else {
                        depth.saturating_sub(level)
                    };
                    let sub_name = rel.file_name().unwrap_or_default();
                    let watched = match up {
                        None => None, // below a directory not watched
                        Some(up) => match self.watch(sub, Some(&up), sub_name, below, false) {
                            Ok(watched) => watched,
                            Err(e) => {
                                unwatched.push(format!(
                                    "cannot watch {}: {e}; changes below it are seen only at the next scan",
                                    dir.join(rel).display()
                                ));
                                None
                            }
                        },
                    };
                    on_path.push(watched);
                    if self.over_budget {
                        // Stop here: the rest is for the periodic rescans.
                        return Err(io::Error::other(OVER_BUDGET));
                    }
                }
                fsutil::Visit::Other { rel, .. } if !is_root => found.push(dir.join(rel)),
                fsutil::Visit::Other { .. } | fsutil::Visit::Left { .. } => {}
                fsutil::Visit::Error { rel, error } => self
                    .trouble
                    .push(format!("cannot list {}: {error}", dir.join(rel).display())),
            }
            Ok(())
        });
        let walked = walked.or_else(|e| match e.to_string() == OVER_BUDGET {
            true => Ok(()),
            false => Err(e),
        });
        if let Err(e) = walked {
            self.trouble
                .push(format!("cannot list {}: {e}", dir.display()));
        }
        self.trouble.extend(unwatched);
        Ok(())
    }

    /// The files directly in `dir` (open as `fd`), added to `found`.
    fn list_files(
        &mut self,
        fd: std::os::fd::OwnedFd,
        dir: &Path,
        found: &mut Vec<PathBuf>,
    ) -> io::Result<()> {
        let how = fsutil::Walk {
            max_depth: 1,
            make_writable: false,
            leaf_name: None,
        };
        let listed = fsutil::walk_tree(fd, how, &mut |item| {
            match item {
                fsutil::Visit::Other { rel, .. } => found.push(dir.join(rel)),
                fsutil::Visit::Error { rel, error } => self
                    .trouble
                    .push(format!("cannot list {}: {error}", dir.join(rel).display())),
                fsutil::Visit::Dir { .. } | fsutil::Visit::Left { .. } => {}
            }
            Ok(())
        });
        if let Err(e) = listed {
            self.trouble
                .push(format!("cannot list {}: {e}", dir.display()));
        }
        Ok(())
    }

    fn relative(&self, path: &Path) -> Option<PathBuf> {
        path.strip_prefix(&self.root).ok().map(Path::to_path_buf)
    }
}

/// Sets up the watches. A root that cannot be watched is an error; subdirectories that
/// cannot be are reported as `Change::Trouble`; losing track later (queue overflow, a
/// root removed) becomes `Change::Rescan`, after which the caller starts a new watcher.
pub fn start(
    root: &Path,
    dirs: &[WatchDir],
    tx: mpsc::Sender<Change>,
    cancel: CancellationToken,
) -> io::Result<tokio::task::JoinHandle<()>> {
    let inotify = Inotify::init()?;
    let mut tree = Tree {
        root: root.to_path_buf(),
        watches: inotify.watches(),
        dirs: HashMap::new(),
        watched_names: HashSet::new(),
        leaf: dirs.iter().find_map(|d| d.leaf),
        over_budget: false,
        trouble: Vec::new(),
    };
    let mut ignored = Vec::new();
    for dir in dirs {
        tree.add(None, &dir.path, dir.depth, &mut ignored)?;
    }
    for trouble in tree.trouble.drain(..) {
        // Buffered channel, nothing read yet: this cannot block for long.
        let _ = tx.try_send(Change::Trouble(trouble));
    }
    if tree.over_budget {
        let _ = tx.try_send(Change::Partial(over_budget_text()));
    }
    let stream = inotify.into_event_stream(vec![0u8; 64 * 1024])?;
    Ok(tokio::spawn(run(tree, stream, tx, cancel)))
}

async fn run(
    mut tree: Tree,
    mut stream: inotify::EventStream<Vec<u8>>,
    tx: mpsc::Sender<Change>,
    cancel: CancellationToken,
) {
    let mut batch: Vec<PathBuf> = Vec::new();
    let mut batch_started = Instant::now();
    let mut last_event = Instant::now();
    loop {
        let flush_at = (last_event + QUIET).min(batch_started + MAX_BATCH_DELAY);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(flush_at), if !batch.is_empty() => {
                if tx.send(Change::Paths(std::mem::take(&mut batch))).await.is_err() {
                    return;
                }
            }
            event = stream.next() => {
                let event = match event {
                    Some(Ok(event)) => event,
                    Some(Err(e)) => {
                        let _ = tx.send(Change::Rescan(format!("reading inotify events failed: {e}"))).await;
                        return;
                    }
                    None => return,
                };
                if batch.is_empty() {
                    batch_started = Instant::now();
                }
                last_event = Instant::now();
                let was_over = tree.over_budget;
                let rescan = handle(&mut tree, event, &mut batch);
                for trouble in tree.trouble.drain(..).collect::<Vec<_>>() {
                    if tx.send(Change::Trouble(trouble)).await.is_err() {
                        return;
                    }
                }
                if tree.over_budget && !was_over
                    && tx.send(Change::Partial(over_budget_text())).await.is_err()
                {
                    return;
                }
                if let Some(change) = rescan {
                    batch.clear();
                    let gone = matches!(change, Change::RootGone(_));
                    if tx.send(change).await.is_err() || gone {
                        return;
                    }
                }
            }
        }
    }
}

/// Turns one event into changed paths; returns a [`Change::Rescan`] or
/// [`Change::RootGone`] when the watcher lost track.
fn handle(
    tree: &mut Tree,
    event: inotify::Event<std::ffi::OsString>,
    batch: &mut Vec<PathBuf>,
) -> Option<Change> {
    if event.mask.contains(EventMask::Q_OVERFLOW) {
        return Some(Change::Rescan("the inotify event queue overflowed".into()));
    }
    if event.mask.contains(EventMask::IGNORED) {
        if let Some(gone) = tree.dirs.remove(&event.wd) {
            if let Some(parent) = gone.parent {
                tree.watched_names.remove(&(parent, gone.name));
            }
        }
        return None;
    }
    let watched = tree.dirs.get(&event.wd)?;
    let dir_path = tree.path_of(&event.wd)?;
    if event
        .mask
        .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF)
    {
        return watched.is_root.then(|| {
            Change::RootGone(format!(
                "watched directory {} was removed or moved",
                dir_path.display()
            ))
        });
    }
    let name = event.name?;
    let path = dir_path.join(&name);
    let depth = watched.depth;
    let is_leaf = !watched.is_root && tree.leaf.is_some_and(|l| watched.name == l);
    if event.mask.contains(EventMask::ISDIR) {
        if is_leaf {
            return None; // nothing below a leaf is the tool's
        }
        // A new directory, or one whose permissions changed that could not be watched
        // before (it was closed to the daemon): watch it and what it holds.
        let retry = event.mask.contains(EventMask::ATTRIB)
            && !tree
                .watched_names
                .contains(&(event.wd.clone(), name.clone()));
        if depth > 0
            && (retry
                || event
                    .mask
                    .intersects(EventMask::CREATE | EventMask::MOVED_TO))
        {
            let mut found = Vec::new();
            let below = if depth == u32::MAX {
                u32::MAX
            } else {
                depth - 1
            };
            if let Err(e) = tree.add(Some(&event.wd), &path, below, &mut found) {
                // Gone again, or swapped for a symlink or a file: not a directory to
                // watch (a symlink is never followed).
                let replaced = matches!(
                    e.raw_os_error(),
                    Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV)
                );
                let still_closed = retry && e.kind() == io::ErrorKind::PermissionDenied;
                if e.kind() != io::ErrorKind::NotFound && !replaced && !still_closed {
                    return Some(Change::Rescan(format!(
                        "cannot watch new directory {}: {e}",
                        path.display()
                    )));
                }
            }
            batch.extend(found.iter().filter_map(|p| tree.relative(p)));
        } else if event
            .mask
            .intersects(EventMask::DELETE | EventMask::MOVED_FROM)
            && depth > 0
        {
            // The entries below a removed directory vanish without events of their own
            // when it is moved away: only a rescan finds out which.
            if event.mask.contains(EventMask::MOVED_FROM) {
                return Some(Change::Rescan(format!(
                    "directory {} was moved away",
                    path.display()
                )));
            }
        }
        return None;
    }
    if let Some(rel) = tree.relative(&path) {
        batch.push(rel);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree watching `root` as go-mod's watcher does (`@v` a leaf).
    fn tree_of(root: &Path) -> (Inotify, Tree, WatchDescriptor) {
        let inotify = Inotify::init().unwrap();
        let mut tree = Tree {
            root: root.to_path_buf(),
            watches: inotify.watches(),
            dirs: HashMap::new(),
            watched_names: HashSet::new(),
            leaf: Some("@v"),
            over_budget: false,
            trouble: Vec::new(),
        };
        let mut found = Vec::new();
        tree.add(None, root, 8, &mut found).unwrap();
        assert_eq!(
            found,
            Vec::<PathBuf>::new(),
            "a root's files are the scan's"
        );
        let wd = tree.dirs.keys().next().unwrap().clone();
        (inotify, tree, wd)
    }

    #[test]
    fn a_new_leaf_directory_reports_the_files_written_before_its_watch() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("download");
        std::fs::create_dir(&root).unwrap();
        let (_inotify, mut tree, root_wd) = tree_of(&root);
        // `mkdir -p m/@v` and a file, all before the watcher hears of `m`.
        std::fs::create_dir_all(root.join("m/@v/sub")).unwrap();
        std::fs::write(root.join("m/@v/v1.0.0.zip"), b"z").unwrap();
        std::fs::write(root.join("m/@v/sub/x"), b"x").unwrap();
        let mut found = Vec::new();
        tree.add(Some(&root_wd), &root.join("m"), 7, &mut found)
            .unwrap();
        assert_eq!(found, [root.join("m/@v/v1.0.0.zip")]);
        // And `m` watched first, `@v` made and written before its own event comes.
        std::fs::create_dir_all(root.join("n")).unwrap();
        tree.add(Some(&root_wd), &root.join("n"), 7, &mut Vec::new())
            .unwrap();
        let n_wd = (tree.dirs.iter())
            .find(|(_, w)| w.name == "n")
            .map(|(wd, _)| wd.clone())
            .unwrap();
        std::fs::create_dir_all(root.join("n/@v/sub")).unwrap();
        std::fs::write(root.join("n/@v/v1.0.0.mod"), b"m").unwrap();
        let mut found = Vec::new();
        tree.add(Some(&n_wd), &root.join("n/@v"), 6, &mut found)
            .unwrap();
        assert_eq!(found, [root.join("n/@v/v1.0.0.mod")]);
        assert!(
            !tree.dirs.values().any(|w| w.name == "sub"),
            "nothing below a leaf is watched"
        );
        assert!(tree.trouble.is_empty(), "{:?}", tree.trouble);
    }
}
