//! Verifying a version: `.info`, `.mod`, the zip and the extracted tree against the
//! `h1:` hash go recorded in `.ziphash`.
use super::*;

impl GoModKind {
    // -- verification -------------------------------------------------------------------

    pub(super) fn stale(&self, st: &FileStat) -> bool {
        st.st_mtime < crate::now() - self.min_age_secs.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn read_ziphash(&self, vdir: &OwnedFd, version: &str) -> Result<String, Finding> {
        let name = format!("{version}.ziphash");
        match read_small(vdir, OsStr::new(&name)) {
            Ok(bytes) => parse_ziphash(&bytes).ok_or_else(|| Finding {
                problem: "ziphash-malformed",
                detail: format!(
                    "{name} holds {:?}, not \"h1:\" + base64 of a SHA-256 (go fails with \"unexpected ziphash\")",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
                ),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Finding {
                problem: "ziphash-missing",
                detail: format!("{name} is missing: go treats the version as incomplete and cannot verify it"),
            }),
            Err(e) => Err(Finding {
                problem: "unreadable",
                detail: format!("{name}: {e}"),
            }),
        }
    }

    /// Everything wrong with one role of a version, without locks.
    pub(super) fn check(&self, id: &ModId, parts: &Parts) -> Vec<Finding> {
        let mut found = Vec::new();
        let Some((module, version)) = split_key(&id.key) else {
            return found;
        };
        let real = unescape(&id.key).unwrap_or_else(|| id.key.to_string());
        let rel = vdir_rel(module);
        let vdir = fsutil::open_dir_beneath(&self.root, &rel).ok();
        let stale_files = |kinds: &[VFile], found: &mut Vec<Finding>| {
            let Some(vdir) = &vdir else { return };
            for name in parts.names(kinds) {
                if stat_at(vdir, name).is_ok_and(|st| self.stale(&st)) {
                    found.push(Finding {
                        problem: "stale-temp",
                        detail: format!(
                            "{}/{} is a temp file older than min_age, left by an interrupted go command",
                            rel.display(),
                            name.to_string_lossy()
                        ),
                    });
                }
            }
        };
        match id.role {
            Role::Tree => {
                let (parent_rel, name) = tree_location(&id.key);
                if !parts.tmp_dirs.is_empty() {
                    if let Ok(parent) = fsutil::open_dir_beneath(&self.root, parent_rel) {
                        for tmp in &parts.tmp_dirs {
                            if stat_at(&parent, tmp).is_ok_and(|st| self.stale(&st)) {
                                found.push(Finding {
                                    problem: "stale-temp",
                                    detail: format!(
                                        "{} is an extraction temp dir older than min_age (go < 1.16)",
                                        parent_rel.join(tmp).display()
                                    ),
                                });
                            }
                        }
                    }
                }
                if parts.has(VFile::Partial) {
                    found.push(Finding {
                        problem: "partial",
                        detail: format!(
                            "{}/{version}.partial is left by an interrupted extraction: the tree is incomplete (go re-extracts it)",
                            rel.display()
                        ),
                    });
                    return found;
                }
                if !parts.tree {
                    return found;
                }
                let ziphash = match vdir.as_ref().map(|v| self.read_ziphash(v, version)) {
                    Some(Ok(h)) => h,
                    Some(Err(f)) => {
                        found.push(f);
                        return found;
                    }
                    None => {
                        found.push(Finding {
                            problem: "ziphash-missing",
                            detail: format!(
                                "{}/{version}.ziphash is missing: go treats the tree as incomplete",
                                rel.display()
                            ),
                        });
                        return found;
                    }
                };
                let fingerprint = fsutil::open_dir_beneath(&self.root, parent_rel)
                    .and_then(|p| stat_tree_at(&p, OsStr::new(name)));
                let fingerprint = match fingerprint {
                    Ok(t) => (t.changed_ns, t.apparent, t.files, ziphash.clone()),
                    Err(e) => {
                        found.push(Finding {
                            problem: "unreadable",
                            detail: format!("{}: {e}", id.key),
                        });
                        return found;
                    }
                };
                let cache_key = (id.key.clone(), Role::Tree);
                if self.verified.lock().unwrap().get(&cache_key) == Some(&fingerprint) {
                    return found;
                }
                match hash_dir(&self.root, Path::new(&*id.key), &real) {
                    Ok(h) if h == ziphash => {
                        self.verified.lock().unwrap().insert(cache_key, fingerprint);
                    }
                    Ok(h) => found.push(Finding {
                        problem: "tree-hash-mismatch",
                        detail: format!(
                            "{} hashes to {h}, not {ziphash} as {version}.ziphash says: files were edited, added or removed (go mod verify: dir has been modified)",
                            id.key
                        ),
                    }),
                    Err(TreeHashError::NotRegular(file)) => found.push(Finding {
                        problem: "tree-hash-mismatch",
                        detail: format!("{file} is not a regular file: module trees hold only regular files"),
                    }),
                    Err(TreeHashError::Name(e)) => found.push(Finding {
                        problem: "tree-hash-mismatch",
                        detail: format!("{}: {e}", id.key),
                    }),
                    Err(TreeHashError::Io(e)) => found.push(Finding {
                        problem: "unreadable",
                        detail: format!("{}: {e}", id.key),
                    }),
                }
            }
            Role::Zip => {
                stale_files(&[VFile::ZipTemp], &mut found);
                let Some(vdir) = &vdir else { return found };
                let has_zip = parts.has(VFile::Zip);
                let ziphash = if has_zip || parts.has(VFile::Ziphash) {
                    match self.read_ziphash(vdir, version) {
                        Ok(h) => Some(h),
                        Err(f) if f.problem == "ziphash-missing" && !has_zip => None,
                        Err(f) => {
                            found.push(f);
                            None
                        }
                    }
                } else {
                    None
                };
                if !has_zip {
                    return found;
                }
                let zip_name = format!("{version}.zip");
                let fd = match open_noatime(vdir, OsStr::new(&zip_name), OFlag::O_RDONLY) {
                    Ok(fd) => fd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return found,
                    Err(e) => {
                        found.push(Finding {
                            problem: "unreadable",
                            detail: format!("{}/{zip_name}: {e}", rel.display()),
                        });
                        return found;
                    }
                };
                let file = std::fs::File::from(fd);
                let fingerprint = nix::sys::stat::fstat(&file).ok().map(|st| {
                    (
                        changed_ns(&st),
                        st.st_size as u64,
                        0u64,
                        ziphash.clone().unwrap_or_default(),
                    )
                });
                let cache_key = (id.key.clone(), Role::Zip);
                if ziphash.is_some()
                    && fingerprint.is_some()
                    && self.verified.lock().unwrap().get(&cache_key) == fingerprint.as_ref()
                {
                    return found;
                }
                match hash_zip(file) {
                    Err(e) => found.push(Finding {
                        problem: "zip-corrupt",
                        detail: format!(
                            "{}/{zip_name} cannot be read ({e}): go fails on it and never re-downloads it",
                            rel.display()
                        ),
                    }),
                    Ok(h) => match &ziphash {
                        Some(want) if *want == h => {
                            if let Some(fp) = fingerprint {
                                self.verified.lock().unwrap().insert(cache_key, fp);
                            }
                        }
                        Some(want) => found.push(Finding {
                            problem: "zip-hash-mismatch",
                            detail: format!(
                                "{}/{zip_name} hashes to {h}, not {want} (go mod verify: zip has been modified)",
                                rel.display()
                            ),
                        }),
                        None => {}
                    },
                }
            }
            Role::Meta => {
                stale_files(&[VFile::MetaTemp], &mut found);
                let Some(vdir) = &vdir else { return found };
                let real_version = unescape(version).unwrap_or_else(|| version.to_string());
                // Incremental too: unchanged since they last parsed clean.
                let mut fingerprint: Fingerprint = (0, 0, 0, String::new());
                for kind in [VFile::Info, VFile::Mod] {
                    for name in parts.names(&[kind]) {
                        if let Ok(st) = stat_at(vdir, name) {
                            fingerprint.0 = fingerprint.0.max(changed_ns(&st));
                            fingerprint.1 += st.st_size as u64;
                            fingerprint.2 += 1;
                        }
                    }
                }
                let cache_key = (id.key.clone(), Role::Meta);
                if self.verified.lock().unwrap().get(&cache_key) == Some(&fingerprint) {
                    return found;
                }
                for (file, extension, problem) in [
                    (VFile::Info, "info", "info-garbled"),
                    (VFile::Mod, "mod", "mod-garbled"),
                ] {
                    if !parts.has(file) {
                        continue;
                    }
                    let name = format!("{version}.{extension}");
                    let why = match read_small(vdir, OsStr::new(&name)) {
                        Ok(bytes) => {
                            let checked = match file {
                                VFile::Info => info_ok(&bytes, &real_version),
                                _ => mod_ok(&bytes).map_err(String::from),
                            };
                            match checked {
                                Ok(()) => continue,
                                Err(why) => (problem, why),
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => ("unreadable", e.to_string()),
                    };
                    found.push(Finding {
                        problem: why.0,
                        detail: format!("{}/{name}: {}", rel.display(), why.1),
                    });
                }
                if found.is_empty() {
                    self.verified.lock().unwrap().insert(cache_key, fingerprint);
                }
            }
            Role::Sumdb | Role::Vcs => {}
        }
        found
    }
}
