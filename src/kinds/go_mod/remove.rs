//! Removing a version (or the sumdb cache, or a VCS clone) under go's lock protocol.
use super::*;

impl GoModKind {
    // -- removal ------------------------------------------------------------------------

    /// Creates `<ver>.partial`; `true` if we created it.
    pub(super) fn mark_partial(vdir: &OwnedFd, version: &str) -> io::Result<bool> {
        let name = format!("{version}.partial");
        match nix::fcntl::openat(
            vdir,
            name.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        ) {
            Ok(_) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the tree and its temp dirs (the `.partial` marker must be in place).
    pub(super) fn remove_tree(&self, key: &str, parts: &Parts) -> io::Result<()> {
        let (parent_rel, name) = tree_location(key);
        let parent = match fsutil::open_dir_beneath(&self.root, parent_rel) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        fsutil::remove_tree_at(&parent, OsStr::new(name))?;
        for tmp in &parts.tmp_dirs {
            fsutil::remove_tree_at(&parent, tmp)?;
        }
        Ok(())
    }

    /// Rewrites `list` from the `.mod` files present, exactly as go's
    /// `rewriteVersionList` does, under the flock go takes on it (go holds it for
    /// microseconds: we retry briefly rather than block).
    pub(super) fn rewrite_list(vdir: &OwnedFd) -> io::Result<()> {
        let fd = match nix::fcntl::openat(
            vdir,
            "list",
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        ) {
            Ok(fd) => fd,
            Err(e) => return Err(io::Error::other(format!("opening list: {e}"))),
        };
        let mut file = std::fs::File::from(fd);
        let mut tries = 0;
        let lock = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => break lock,
                Err((f, Errno::EWOULDBLOCK)) if tries < 100 => {
                    file = f;
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((_, e)) => return Err(io::Error::other(format!("locking list: {e}"))),
            }
        };
        let mut dir = Dir::from_fd(nix::fcntl::openat(vdir, ".", DIR_FLAGS, Mode::empty())?)?;
        let mut versions: Vec<String> = list(&mut dir)?
            .into_iter()
            .filter_map(|(name, _)| {
                let v = name.to_str()?.strip_suffix(".mod")?;
                (!v.is_empty() && is_canonical_version(v)).then(|| v.to_string())
            })
            .collect();
        sort_versions(&mut versions);
        let text: String = versions.iter().map(|v| format!("{v}\n")).collect();
        let current = {
            let mut buf = vec![0u8; text.len() + 1];
            let n = lock.read_at(&mut buf, 0).unwrap_or(usize::MAX);
            (n == text.len()).then(|| buf[..n].to_vec())
        };
        if current.as_deref() == Some(text.as_bytes()) {
            return Ok(());
        }
        // As go: empty it, reserve the size (zero-filled), write.
        lock.set_len(0)?;
        lock.set_len(text.len() as u64)?;
        lock.write_all_at(text.as_bytes(), 0)?;
        Ok(())
    }

    pub(super) fn remove_version(
        &self,
        id: &ModId,
        used_before: UnixTime,
        how: Removing,
    ) -> Removal {
        let Some((_, version)) = split_key(&id.key) else {
            return Removal::Gone;
        };
        let locked = match self.lock_version(&id.key, true) {
            Ok(l) => l,
            Err(LockError::Busy(why)) => return Removal::LockBusy(why),
            Err(LockError::NoDir) => return Removal::Gone,
            Err(LockError::Io(why)) => return Removal::Skipped(format!("cannot lock: {why}")),
        };
        let parts = match self.list_parts(&id.key) {
            Ok(p) => p,
            Err(e) => return Removal::Skipped(format!("cannot list {}: {e}", id.key)),
        };
        let ex = self.examine(&id.key, &parts);
        if ex.role(id.role).is_none() {
            return Removal::Gone;
        }
        if let Some(stay) = used_since_planned(ex.last_use, used_before) {
            return stay;
        }

        // What goes.
        let codes: Vec<&str> = match how {
            Removing::Repair(found) => found.iter().map(|f| f.problem).collect(),
            Removing::Evict(_) => Vec::new(),
        };
        let has = |c: &str| codes.contains(&c);
        let repair = matches!(how, Removing::Repair(_));
        let (drop_tree, drop_zip, drop_meta) = match (id.role, repair) {
            (Role::Tree, false) => (true, false, false),
            (Role::Zip, false) => (true, true, false),
            (Role::Meta, false) => (true, true, true),
            (Role::Tree, true) => (
                [
                    "partial",
                    "tree-hash-mismatch",
                    "ziphash-missing",
                    "ziphash-malformed",
                    "unreadable",
                ]
                .iter()
                .any(|c| has(c)),
                false,
                false,
            ),
            (Role::Zip, true) => {
                // A broken zip goes with its .ziphash, and so does the tree: go treats a
                // tree without .ziphash as partial (`DownloadDir`) and extracts it
                // anew, and a repair that left it would leave a `ziphash-missing` for
                // the next sweep — one repair must converge (issue #24).
                let broken = [
                    "zip-corrupt",
                    "zip-hash-mismatch",
                    "ziphash-missing",
                    "ziphash-malformed",
                    "unreadable",
                ]
                .iter()
                .any(|c| has(c));
                (broken, broken, false)
            }
            (Role::Meta, true) => (false, false, false),
            (Role::Sumdb | Role::Vcs, _) => (false, false, false),
        };
        let tree_exists = parts.tree || !parts.tmp_dirs.is_empty();
        let vdir = &locked.vdir;

        // A look for go commands, the marker, then the last look. The first keeps a
        // running command's tree free of markers: were the daemon killed between
        // marking and unmarking, the next go command would see `.partial` and re-extract
        // the tree (RemoveAll, then unzip) under a command already reading it.
        let mut marked = false;
        if drop_tree && tree_exists {
            if let Some(by) = self.held_by(id) {
                return Removal::InUse(format!(
                    "{by} may read this version; deferred until it exits"
                ));
            }
            match Self::mark_partial(vdir, version) {
                Ok(created) => marked = created,
                Err(e) => return Removal::Skipped(format!("cannot create {version}.partial: {e}")),
            }
        }
        if let Some(by) = self.held_by(id) {
            if marked {
                let _ = unlink_at(vdir, OsStr::new(&format!("{version}.partial")));
            }
            return Removal::InUse(format!(
                "{by} may read this version; deferred until it exits"
            ));
        }

        let attempt = || -> io::Result<u64> {
            let mut freed = 0;
            if drop_zip {
                // .zip before .ziphash: a zip must never outlive its hash's removal.
                unlink_at(vdir, OsStr::new(&format!("{version}.zip")))?;
                unlink_at(vdir, OsStr::new(&format!("{version}.ziphash")))?;
                // Under the lock every download temp is dead (downloadZip does the same).
                for name in parts.names(&[VFile::ZipTemp]) {
                    unlink_at(vdir, name)?;
                }
                freed += ex.zip.map_or(0, |s| s.disk);
            } else if repair && id.role == Role::Zip && has("stale-temp") {
                for name in parts.names(&[VFile::ZipTemp]) {
                    unlink_at(vdir, name)?;
                }
            }
            if drop_tree {
                self.remove_tree(&id.key, &parts)?;
                unlink_at(vdir, OsStr::new(&format!("{version}.partial")))?;
                freed += ex.tree.map_or(0, |s| s.disk);
            } else if repair && id.role == Role::Tree && has("stale-temp") {
                let (parent_rel, _) = tree_location(&id.key);
                let parent = fsutil::open_dir_beneath(&self.root, parent_rel)?;
                for tmp in &parts.tmp_dirs {
                    fsutil::remove_tree_at(&parent, tmp)?;
                }
            }
            let mut list_changed = false;
            if drop_meta || (repair && id.role == Role::Meta) {
                let old_enough = |name: &OsStr| stat_at(vdir, name).is_ok_and(|st| self.stale(&st));
                for (name, kind) in &parts.files {
                    let go = match kind {
                        VFile::Info => drop_meta || has("info-garbled"),
                        VFile::Mod => drop_meta || has("mod-garbled"),
                        // Written without the version lock: only old ones are dead.
                        VFile::MetaTemp => (drop_meta || has("stale-temp")) && old_enough(name),
                        _ => false,
                    };
                    if go && unlink_at(vdir, name)? && *kind == VFile::Mod {
                        list_changed = true;
                    }
                }
                if drop_meta {
                    freed += ex.meta.map_or(0, |s| s.disk);
                }
            }
            if list_changed {
                Self::rewrite_list(vdir)?;
            }
            Ok(freed)
        };
        let result = attempt();
        {
            let mut verified = self.verified.lock().unwrap();
            verified.remove(&(id.key.clone(), Role::Tree));
            verified.remove(&(id.key.clone(), Role::Zip));
        }
        match result {
            Ok(freed) => Removal::Removed { disk_bytes: freed },
            // The marker (if any) stays: the tree is recognisably incomplete to go.
            Err(e) => Removal::Failed(format!("removing {}: {e}", id.key)),
        }
    }

    /// Why a whole-directory entry planned for removal stays after all: used since the
    /// plan was made, or a go command running that may read it.
    fn must_stay(&self, id: &ModId, last_use: UnixTime, used_before: UnixTime) -> Option<Removal> {
        used_since_planned(last_use, used_before).or_else(|| {
            let by = self.held_by(id)?;
            Some(Removal::InUse(format!(
                "{by} may use it; deferred until it exits"
            )))
        })
    }

    pub(super) fn remove_sumdb(&self, used_before: UnixTime) -> Removal {
        let Some(meta) = self.stat_sumdb() else {
            return Removal::Gone;
        };
        let id = ModId {
            key: Arc::from(SUMDB_NAME),
            role: Role::Sumdb,
        };
        if let Some(stay) = self.must_stay(&id, meta.last_use, used_before) {
            return stay;
        }
        let removed = fsutil::open_dir_beneath(&self.root, Path::new("cache/download"))
            .and_then(|d| fsutil::remove_tree_at(&d, OsStr::new("sumdb")));
        match removed {
            Ok(_) => Removal::Removed {
                disk_bytes: meta.disk_bytes,
            },
            Err(e) => Removal::Failed(format!("removing {SUMDB_NAME}: {e}")),
        }
    }

    /// A VCS clone, under its lock (`codehost.WorkDir`): `.info` first, so a half-removed
    /// clone is one go starts over.
    pub(super) fn remove_vcs(&self, hash: &str, used_before: UnixTime) -> Removal {
        if !is_vcs_hash(hash) {
            return Removal::Gone;
        }
        let Some(meta) = self.stat_vcs(hash) else {
            return Removal::Gone;
        };
        let vcs = match fsutil::open_dir_beneath(&self.root, Path::new("cache/vcs")) {
            Ok(d) => d,
            Err(e) => return Removal::Skipped(format!("cache/vcs: {e}")),
        };
        let lock_name = format!("{hash}.lock");
        let fd = match nix::fcntl::openat(
            &vcs,
            lock_name.as_str(),
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        ) {
            Ok(fd) => fd,
            Err(e) => return Removal::Skipped(format!("cache/vcs/{lock_name}: {e}")),
        };
        let _lock = match Flock::lock(std::fs::File::from(fd), FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Removal::LockBusy(format!("go holds cache/vcs/{lock_name}; retried later"))
            }
            Err((_, e)) => return Removal::Skipped(format!("locking cache/vcs/{lock_name}: {e}")),
        };
        let id = ModId {
            key: Arc::from(hash),
            role: Role::Vcs,
        };
        if let Some(stay) = self.must_stay(&id, meta.last_use, used_before) {
            return stay;
        }
        let removed = unlink_at(&vcs, OsStr::new(&format!("{hash}.info")))
            .and_then(|_| fsutil::remove_tree_at(&vcs, OsStr::new(hash)));
        match removed {
            Ok(_) => Removal::Removed {
                disk_bytes: meta.disk_bytes,
            },
            Err(e) => Removal::Failed(format!("removing cache/vcs/{hash}: {e}")),
        }
    }
}

/// The entry was used after the plan that chose it was made: it stays, retried later.
fn used_since_planned(last_use: UnixTime, used_before: UnixTime) -> Option<Removal> {
    crate::kinds::used_after(last_use, used_before).then(|| {
        Removal::Skipped(format!(
            "used since the plan was made (last use {last_use})"
        ))
    })
}
