//! Listing a module cache and one version's files, and go's version lock.
use super::*;

impl GoModKind {
    // -- listing ------------------------------------------------------------------------

    /// One version's files, from go's fixed names (`fstatat`, no directory listing: a
    /// popular module's `@v` or a busy parent directory would make every call cost
    /// O(siblings)) plus the leftovers (temps, `.tmp-*` dirs) the last scan found. Used
    /// by `stat` and `verify`; removal lists everything ([`GoModKind::list_parts`]).
    pub(super) fn parts_of(&self, key: &str) -> io::Result<Parts> {
        let mut parts = Parts::default();
        let Some((module, version)) = split_key(key) else {
            return Ok(parts);
        };
        let leftovers = self.leftovers.lock().unwrap().get(key).cloned();
        let missing = fsutil::is_vanished;
        let (parent, name) = tree_location(key);
        match fsutil::open_dir_beneath(&self.root, parent) {
            Ok(dir) => {
                let is_dir = |n: &OsStr| match stat_at(&dir, n) {
                    Ok(st) => Ok(fsutil::is_file_type(&st, libc::S_IFDIR)),
                    Err(e) if missing(&e) => Ok(false),
                    Err(e) => Err(e),
                };
                parts.tree = is_dir(OsStr::new(name))?;
                for tmp in leftovers.iter().flat_map(|l| &l.tmp_dirs) {
                    if is_dir(tmp)? {
                        parts.tmp_dirs.push(tmp.clone());
                    }
                }
            }
            Err(e) if missing(&e) => {}
            Err(e) => return Err(e),
        }
        match fsutil::open_dir_beneath(&self.root, &vdir_rel(module)) {
            Ok(vdir) => {
                let fixed = [
                    ("info", VFile::Info),
                    ("mod", VFile::Mod),
                    ("zip", VFile::Zip),
                    ("ziphash", VFile::Ziphash),
                    ("lock", VFile::Lock),
                    ("partial", VFile::Partial),
                ]
                .map(|(ext, kind)| (OsString::from(format!("{version}.{ext}")), kind));
                let temps = leftovers.iter().flat_map(|l| l.temps.iter().cloned());
                for (file, kind) in fixed.into_iter().chain(temps) {
                    match stat_at(&vdir, &file) {
                        Ok(_) => parts.files.push((file, kind)),
                        Err(e) if missing(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) if missing(&e) => {}
            Err(e) => return Err(e),
        }
        Ok(parts)
    }

    /// One version's files, listing its `@v` and the tree's parent directory: every
    /// temp file and temp dir, also those created since the last scan.
    pub(super) fn list_parts(&self, key: &str) -> io::Result<Parts> {
        let mut parts = Parts::default();
        let Some((module, version)) = split_key(key) else {
            return Ok(parts);
        };
        let (parent, name) = tree_location(key);
        let tmp_prefix = format!("{name}.tmp-");
        match fsutil::open_dir_beneath(&self.root, parent) {
            Ok(fd) => {
                let mut dir = Dir::from_fd(fd)?;
                for (child, ty) in list(&mut dir)? {
                    let Some(child_str) = child.to_str() else {
                        continue;
                    };
                    let is_dir = || match ty {
                        Some(t) => t == Type::Directory,
                        None => stat_at(&dir, &child)
                            .is_ok_and(|st| fsutil::is_file_type(&st, libc::S_IFDIR)),
                    };
                    if child_str == name {
                        parts.tree = is_dir();
                    } else if child_str.starts_with(&tmp_prefix)
                        && parse_tree_name(child_str).is_some_and(|(_, v, tmp)| tmp && v == version)
                        && is_dir()
                    {
                        parts.tmp_dirs.push(child);
                    }
                }
            }
            Err(e) if fsutil::is_vanished(&e) => {}
            Err(e) => return Err(e),
        }
        match fsutil::open_dir_beneath(&self.root, &vdir_rel(module)) {
            Ok(fd) => {
                let mut dir = Dir::from_fd(fd)?;
                for (child, _) in list(&mut dir)? {
                    if let Some((v, kind)) = child.to_str().and_then(parse_vfile) {
                        if v == version {
                            parts.files.push((child, kind));
                        }
                    }
                }
            }
            Err(e) if fsutil::is_vanished(&e) => {}
            Err(e) => return Err(e),
        }
        Ok(parts)
    }

    /// Measures a version: each role's sizes and the shared last use.
    pub(super) fn examine(&self, key: &str, parts: &Parts) -> Examined {
        let mut ex = Examined {
            last_use: i64::MIN,
            ..Examined::default()
        };
        let Some((module, _)) = split_key(key) else {
            return ex;
        };
        // Leftovers (markers, temps) date a version only when nothing else does.
        let mut fallback = i64::MIN;
        let (parent_rel, name) = tree_location(key);
        if parts.tree || !parts.tmp_dirs.is_empty() {
            match fsutil::open_dir_beneath(&self.root, parent_rel) {
                Ok(parent) => {
                    let mut sizes = Sizes::default();
                    let mut any = false;
                    if parts.tree {
                        match stat_tree_at(&parent, OsStr::new(name)) {
                            Ok(t) => {
                                any = true;
                                sizes.disk += t.disk;
                                sizes.apparent += t.apparent;
                                ex.last_use = ex.last_use.max(t.last_use);
                                fallback = fallback.max((t.changed_ns / 1_000_000_000) as i64);
                            }
                            Err(e) if fsutil::is_vanished(&e) => {}
                            Err(e) => {
                                any = true;
                                ex.errors.push(format!("{key}: {e}"));
                            }
                        }
                    }
                    for tmp in &parts.tmp_dirs {
                        if let Ok(t) = stat_tree_at(&parent, tmp) {
                            any = true;
                            sizes.disk += t.disk;
                            sizes.apparent += t.apparent;
                            fallback = fallback.max((t.changed_ns / 1_000_000_000) as i64);
                        }
                    }
                    if any {
                        ex.tree = Some(sizes);
                    }
                }
                Err(e) if fsutil::is_vanished(&e) => {}
                Err(e) => ex.errors.push(format!("{}: {e}", parent_rel.display())),
            }
        }
        if !parts.files.is_empty() {
            let rel = vdir_rel(module);
            match fsutil::open_dir_beneath(&self.root, &rel) {
                Ok(vdir) => {
                    for (file, kind) in &parts.files {
                        let st = match stat_at(&vdir, file) {
                            Ok(st) => st,
                            Err(e) if fsutil::is_vanished(&e) => continue,
                            Err(e) => {
                                ex.errors.push(format!(
                                    "{}/{}: {e}",
                                    rel.display(),
                                    file.to_string_lossy()
                                ));
                                continue;
                            }
                        };
                        let slot = match kind {
                            VFile::Lock => continue,
                            VFile::Partial => {
                                fallback = fallback.max(st.st_mtime);
                                &mut ex.tree
                            }
                            VFile::ZipTemp => {
                                fallback = fallback.max(st.st_mtime);
                                &mut ex.zip
                            }
                            VFile::MetaTemp => {
                                fallback = fallback.max(st.st_mtime);
                                &mut ex.meta
                            }
                            VFile::Zip | VFile::Ziphash => {
                                ex.last_use = ex.last_use.max(fsutil::last_use_stat(&st));
                                &mut ex.zip
                            }
                            VFile::Info | VFile::Mod => {
                                ex.last_use = ex.last_use.max(fsutil::last_use_stat(&st));
                                &mut ex.meta
                            }
                        };
                        slot.get_or_insert_with(Sizes::default).add_stat(&st);
                    }
                }
                Err(e) if fsutil::is_vanished(&e) => {}
                Err(e) => ex.errors.push(format!("{}: {e}", rel.display())),
            }
        }
        if ex.last_use == i64::MIN {
            ex.last_use = fallback;
        }
        ex
    }

    pub(super) fn meta_of(ex: &Examined, role: Role) -> Option<EntryMeta> {
        ex.role(role).map(|s| EntryMeta {
            disk_bytes: s.disk,
            apparent_bytes: s.apparent,
            last_use: ex.last_use,
            aux: 0,
        })
    }

    /// Finds every version: trees by walking the module-path directories down to the
    /// first `@` directory, download files by walking `cache/download` down to `@v`.
    /// Every directory is opened fd-relatively below the root (`fsutil`), and one that
    /// vanished since it was listed (`go clean -modcache` racing the scan) is skipped,
    /// not an error.
    pub(super) fn find_versions(
        &self,
        errors: &mut Vec<String>,
        ignored: &mut u64,
    ) -> BTreeMap<String, Parts> {
        let mut versions: BTreeMap<String, Parts> = BTreeMap::new();
        let root = match fsutil::open_root(&self.root) {
            Ok(fd) => fd,
            // Gone (`go clean -modcache`): nothing in it, and no error — the daemon
            // shows it as a condition while it lasts.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return versions,
            Err(e) => {
                errors.push(e.to_string());
                return versions;
            }
        };
        let list = |rel: &Path, errors: &mut Vec<String>| match fsutil::list_beneath(&root, rel) {
            Ok(names) => names,
            Err(e) if fsutil::is_vanished(&e) => Vec::new(),
            Err(e) => {
                errors.push(format!("{}: {e}", self.root.join(rel).display()));
                Vec::new()
            }
        };
        let mut stack: Vec<String> = vec![String::new()];
        while let Some(rel) = stack.pop() {
            for (name, is_dir) in list(Path::new(&rel), errors) {
                let Some(name) = name.to_str() else {
                    *ignored += 1;
                    continue;
                };
                if !is_dir {
                    *ignored += 1;
                    continue;
                }
                if rel.is_empty() && name == "cache" {
                    continue;
                }
                let child = if rel.is_empty() {
                    name.to_string()
                } else {
                    format!("{rel}/{name}")
                };
                if rel.split('/').count() >= MAX_PATH_ELEMENTS {
                    // Deeper than any module path: a user's trap, not a module.
                    *ignored += 1;
                    continue;
                }
                match parse_tree_name(name) {
                    Some((elem, version, tmp)) => {
                        let prefix = if rel.is_empty() {
                            String::new()
                        } else {
                            format!("{rel}/")
                        };
                        let parts = versions
                            .entry(format!("{prefix}{elem}@{version}"))
                            .or_default();
                        if tmp {
                            parts.tmp_dirs.push(OsString::from(name));
                        } else {
                            parts.tree = true;
                        }
                    }
                    None if name.contains('@') => *ignored += 1,
                    None => stack.push(child),
                }
            }
        }

        let mut stack: Vec<String> = vec![String::new()];
        while let Some(rel) = stack.pop() {
            let dir = Path::new("cache/download").join(&rel);
            for (name, is_dir) in list(&dir, errors) {
                let Some(name) = name.to_str() else {
                    *ignored += 1;
                    continue;
                };
                if !is_dir {
                    *ignored += 1;
                    continue;
                }
                if rel.is_empty() && name == "sumdb" {
                    continue;
                }
                if name == "@v" {
                    if rel.is_empty() {
                        continue;
                    }
                    for (name, _) in list(&vdir_rel(&rel), errors) {
                        match name.to_str().and_then(parse_vfile) {
                            Some((_, VFile::Lock)) | None => *ignored += 1,
                            Some((version, kind)) => {
                                versions
                                    .entry(format!("{rel}@{version}"))
                                    .or_default()
                                    .files
                                    .push((name.clone(), kind));
                            }
                        }
                    }
                } else if rel.is_empty() {
                    stack.push(name.to_string());
                } else if rel.split('/').count() >= MAX_PATH_ELEMENTS {
                    *ignored += 1;
                } else {
                    stack.push(format!("{rel}/{name}"));
                }
            }
        }
        versions
    }

    /// The sumdb cache and the VCS clones.
    pub(super) fn scan_others(&self, out: &mut ScanResult<ModId>) {
        if let Some(meta) = self.stat_sumdb() {
            out.entries.push((
                ModId {
                    key: Arc::from(""),
                    role: Role::Sumdb,
                },
                meta,
            ));
        }
        let vcs = fsutil::open_root(&self.root)
            .and_then(|root| fsutil::list_beneath(&root, Path::new("cache/vcs")));
        let Ok(items) = vcs else {
            return;
        };
        let mut hashes: Vec<String> = items
            .into_iter()
            .filter_map(|(name, _)| {
                let name = name.into_string().ok()?;
                let hash = name.strip_suffix(".info").unwrap_or(&name);
                is_vcs_hash(hash).then(|| hash.to_string())
            })
            .collect();
        hashes.sort();
        hashes.dedup();
        for hash in hashes {
            if let Some(meta) = self.stat_vcs(&hash) {
                out.entries.push((
                    ModId {
                        key: Arc::from(hash.as_str()),
                        role: Role::Vcs,
                    },
                    meta,
                ));
            }
        }
    }

    pub(super) fn stat_sumdb(&self) -> Option<EntryMeta> {
        let download = fsutil::open_dir_beneath(&self.root, Path::new("cache/download")).ok()?;
        let t = stat_tree_at(&download, OsStr::new("sumdb")).ok()?;
        Some(EntryMeta {
            disk_bytes: t.disk,
            apparent_bytes: t.apparent,
            last_use: if t.last_use == i64::MIN {
                (t.changed_ns / 1_000_000_000) as i64
            } else {
                t.last_use
            },
            aux: 0,
        })
    }

    pub(super) fn stat_vcs(&self, hash: &str) -> Option<EntryMeta> {
        let vcs = fsutil::open_dir_beneath(&self.root, Path::new("cache/vcs")).ok()?;
        let mut meta = EntryMeta {
            disk_bytes: 0,
            apparent_bytes: 0,
            last_use: i64::MIN,
            aux: 0,
        };
        let mut found = false;
        if let Ok(t) = stat_tree_at(&vcs, OsStr::new(hash)) {
            found = true;
            meta.disk_bytes += t.disk;
            meta.apparent_bytes += t.apparent;
            meta.last_use = t.last_use.max((t.changed_ns / 1_000_000_000) as i64);
        }
        if let Ok(st) = stat_at(&vcs, OsStr::new(&format!("{hash}.info"))) {
            found = true;
            meta.disk_bytes += fsutil::disk_usage_stat(&st);
            meta.apparent_bytes += st.st_size as u64;
            meta.last_use = meta.last_use.max(fsutil::last_use_stat(&st));
        }
        found.then_some(meta)
    }

    // -- locking ------------------------------------------------------------------------

    /// Takes go's version lock (`lockVersion`), creating `@v` and the lock file if
    /// `create` (as go does); never waits for go, only for our own threads.
    pub(super) fn lock_version(
        &self,
        key: &Arc<str>,
        create: bool,
    ) -> Result<Locked<'_>, LockError> {
        let claim = self.claims.claim(key);
        let Some((module, version)) = split_key(key) else {
            return Err(LockError::Io(format!("{key}: not module@version")));
        };
        let rel = vdir_rel(module);
        let vdir = if create {
            open_or_create_dir_beneath(&self.root, &rel)
        } else {
            fsutil::open_dir_beneath(&self.root, &rel)
        };
        let vdir = match vdir {
            Ok(fd) => fd,
            Err(e) if !create && matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                return Err(LockError::NoDir)
            }
            Err(e) => return Err(LockError::Io(format!("{}: {e}", rel.display()))),
        };
        let name = format!("{version}.lock");
        let lock_path = rel.join(&name);
        let mut flags = OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        if create {
            flags |= OFlag::O_CREAT;
        }
        let fd = match nix::fcntl::openat(
            &vdir,
            name.as_str(),
            flags,
            Mode::from_bits_truncate(0o666),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if !create => return Err(LockError::NoDir),
            Err(e) => return Err(LockError::Io(format!("{}: {e}", lock_path.display()))),
        };
        match Flock::lock(std::fs::File::from(fd), FlockArg::LockExclusiveNonblock) {
            Ok(flock) => Ok(Locked {
                vdir,
                _flock: flock,
                _claim: claim,
            }),
            Err((_, Errno::EWOULDBLOCK)) => Err(LockError::Busy(format!(
                "go holds {}: it is downloading or extracting this version; retried later",
                lock_path.display()
            ))),
            Err((_, e)) => Err(LockError::Io(format!(
                "locking {}: {e}",
                lock_path.display()
            ))),
        }
    }
}
