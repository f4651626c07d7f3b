//! Checking outputs: an output file against the SHA-256 its id is, and the cached
//! executables of `go run` and `go tool` (Go >= 1.24), which are directories.

use super::*;

impl GoBuildKind {
    /// Hashes an output file, comparing with its name.
    pub(super) fn output_hash_ok(&self, dir: &OwnedFd, id: &[u8; 32]) -> io::Result<bool> {
        let name = format!("{}-d", to_hex(id));
        self.file_hash_ok(dir, Path::new(&name), id)
    }

    /// An executable output (`<id>-d/` holding the program): go serves it only if the
    /// directory holds exactly one entry (`OutputFile`: "DO NOT USE - invalid binary
    /// cache entry" otherwise), checks only its size, and runs it — so its hash is
    /// checked here as any output's is (`PutExecutable` names it by the SHA-256 of the
    /// program, like `Put`).
    pub(super) fn verify_executable(
        &self,
        out_dir: &OwnedFd,
        out_name: &str,
        output: &[u8; 32],
        expected_size: Option<u64>,
        dir_st: &FileStat,
    ) -> Vec<Finding> {
        let found = |problem: &'static str, detail: String| vec![Finding { problem, detail }];
        let listed = fsutil::open_at_beneath(out_dir, Path::new(out_name), fsutil::DIR_FLAGS)
            .and_then(|fd| Ok((fsutil::list_beneath(&fd, Path::new(""))?, fd)));
        let (listing, exe_dir) = match listed {
            Ok(both) => both,
            Err(e) => return found("unreadable", format!("{out_name}/: {e}")),
        };
        let [(program, false)] = listing.as_slice() else {
            return found(
                "executable-dir-invalid",
                format!(
                    "{out_name}/ holds {} entries, go serves it only with one program",
                    listing.len()
                ),
            );
        };
        let rel = Path::new(out_name).join(program);
        let st = match fsutil::stat_at(&exe_dir, program) {
            Ok(st) => st,
            Err(e) => return found("unreadable", format!("{}: {e}", rel.display())),
        };
        if !fsutil::is_file_type(&st, libc::S_IFREG) {
            return found(
                "not-a-regular-file",
                format!("{} is {}", rel.display(), fsutil::type_name(&st)),
            );
        }
        let size = st.st_size as u64;
        if let Some(expected) = expected_size.filter(|&e| e != size) {
            return found(
                "output-size-mismatch",
                format!(
                    "{} has {size} bytes, the action records {expected}",
                    rel.display()
                ),
            );
        }
        let stamp = (st.st_mtime.max(dir_st.st_mtime), size);
        if self.verified.lock().unwrap().get(&fingerprint(output)) == Some(&stamp) {
            return vec![];
        }
        match self.file_hash_ok(&exe_dir, Path::new(program), output) {
            Ok(true) => {
                self.verified
                    .lock()
                    .unwrap()
                    .insert(fingerprint(output), stamp);
                vec![]
            }
            Ok(false) => found(
                "output-hash-mismatch",
                format!("{}: content does not hash to its output id", rel.display()),
            ),
            Err(e) => found("unreadable", format!("{}: {e}", rel.display())),
        }
    }

    /// Whether the file at `rel` below `dir` hashes to `id`.
    pub(super) fn file_hash_ok(
        &self,
        dir: &OwnedFd,
        rel: &Path,
        id: &[u8; 32],
    ) -> io::Result<bool> {
        // Non-blocking, type checked: a FIFO swapped in never blocks the sweep.
        let mut file = fsutil::open_file_at(dir, rel)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finalize().as_slice() == id)
    }
}

/// An output as `du` counts it. Go ≥ 1.24 caches the executables of `go run` and `go
/// tool` as a directory `<output id>-d/` holding one file, the program
/// (`cmd/go/internal/cache`: `PutExecutable`, `copyFile`); the directory's own stat is
/// its 4 KiB, so what it holds is added (blocks and bytes). Its last use is the
/// directory's mtime, which go's `markUsed` bumps (never the file's).
pub(super) fn with_contents(
    dir: &impl std::os::fd::AsFd,
    name: &OsStr,
    mut st: FileStat,
) -> FileStat {
    if !fsutil::is_file_type(&st, libc::S_IFDIR) {
        return st;
    }
    let Ok(fd) = fsutil::open_at_beneath(dir, Path::new(name), fsutil::DIR_FLAGS) else {
        return st;
    };
    let _ = fsutil::walk_tree(fd, fsutil::Walk::WHOLE_TREE, &mut |item| {
        if let fsutil::Visit::Dir { st: inner, .. } | fsutil::Visit::Other { st: inner, .. } = item
        {
            st.st_blocks += inner.st_blocks;
            st.st_size += inner.st_size;
        }
        Ok(())
    });
    st
}
