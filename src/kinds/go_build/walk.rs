//! Reading a shard directory: its action and output files, listed and stat'd through
//! the shard's directory fd, and action files read into a buffer on the stack.
use super::*;
use std::os::unix::ffi::OsStrExt;

/// An action file's content, read into a buffer one byte longer than a valid one (so
/// an overlong file shows), on the stack: pairing reads millions of them.
pub(super) struct ActionFile {
    pub(super) buf: [u8; ACTION_LEN + 1],
    pub(super) len: usize,
}

impl std::ops::Deref for ActionFile {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Reads an action file below `dir` with one `read`: a regular file never returns less
/// than asked before its end, and go writes an action with one `write` (`putIndexEntry`).
pub(super) fn read_action(dir: &OwnedFd, action: &GoId) -> io::Result<ActionFile> {
    let name = action.c_name();
    let name = std::ffi::CStr::from_bytes_with_nul(&name).expect("one NUL, at the end");
    // O_NONBLOCK: a FIFO or device swapped in reads as nothing (a malformed action)
    // instead of blocking; a regular file reads the same either way.
    let fd = fsutil::openat_noatime(dir, name, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
    let mut file = ActionFile {
        buf: [0; ACTION_LEN + 1],
        len: 0,
    };
    file.len = nix::unistd::read(&fd, &mut file.buf)?;
    Ok(file)
}

/// What one shard directory holds, and its mtime before it was listed.
pub(super) struct ShardWalk {
    pub(super) stamp: Option<Stamp>,
    pub(super) files: Vec<(GoId, EntryMeta)>,
    pub(super) errors: Vec<String>,
    pub(super) ignored: u64,
}

/// `getdents` and one `fstatat` per name, relative to the shard's directory fd: no path
/// resolution and no reads per file, which is what lets the walk beat `du`.
pub(super) fn walk_shard(root: &Path, shard: u8) -> ShardWalk {
    let shard = format!("{shard:02x}");
    let mut out = ShardWalk {
        stamp: None,
        files: Vec::new(),
        errors: Vec::new(),
        ignored: 0,
    };
    let listing = fsutil::open_dir_beneath(root, Path::new(&shard)).and_then(|dir| {
        // The stamp is taken before listing: a change made during the listing moves
        // the directory's mtime past it, so a restart rescans this shard.
        out.stamp = nix::sys::stat::fstat(&dir).ok().map(|st| Stamp::of(&st));
        let listing = nix::dir::Dir::from_fd(dir.try_clone()?)?;
        Ok((dir, listing))
    });
    let (dir, mut listing) = match listing {
        Ok(both) => both,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.errors.push(format!("{shard}: {e}"));
            return out;
        }
    };
    // Names first, then `fstatat` in inode order: on a cold cache the inodes are then
    // read from the inode table front to back instead of at random.
    let mut names: Vec<(u64, GoId)> = Vec::new();
    for item in listing.iter() {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                out.errors
                    .push(format!("{shard}: reading the directory: {e}"));
                break;
            }
        };
        let name = item.file_name().to_bytes();
        match parse_file_name(name) {
            Some(id) => names.push((item.ino(), id)),
            None => out.ignored += u64::from(!matches!(name, b"." | b"..")),
        }
    }
    names.sort_unstable_by_key(|(ino, _)| *ino);
    out.files.reserve_exact(names.len());
    for (_, id) in names {
        let name = id.c_name();
        let name = std::ffi::CStr::from_bytes_with_nul(&name).expect("one NUL, at the end");
        let st = match nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        {
            Ok(st) => st,
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(e) => {
                out.errors
                    .push(format!("{shard}/{}: {e}", name.to_string_lossy()));
                continue;
            }
        };
        let wanted = match id.role {
            Role::Action => fsutil::is_file_type(&st, libc::S_IFREG),
            // Go ≥ 1.24 may store an executable output as a directory; it is an output.
            Role::Output => {
                fsutil::is_file_type(&st, libc::S_IFREG) || fsutil::is_file_type(&st, libc::S_IFDIR)
            }
        };
        if !wanted {
            out.ignored += 1;
            continue;
        }
        // An executable's directory counts with the program it holds.
        let st = super::with_contents(&dir, std::ffi::OsStr::from_bytes(name.to_bytes()), st);
        let meta = EntryMeta {
            disk_bytes: fsutil::disk_usage_stat(&st),
            apparent_bytes: st.st_size as u64,
            last_use: st.st_mtime,
            aux: match id.role {
                Role::Action => 0,
                Role::Output => fingerprint(&id.hash),
            },
        };
        out.files.push((id, meta));
    }
    // Sorted here, on many threads, so pairing finds outputs by binary search.
    out.files.sort_unstable_by_key(|(id, _)| *id);
    out
}
