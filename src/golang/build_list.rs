//! Which module versions a running go command may read from GOMODCACHE.
//!
//! Go records no use of a module version (see `kinds/go_mod`), so while a go command runs
//! any version it may read must stay. Holding the whole cache while any go runs is safe
//! but, on a build server or CI runner where go never stops, means the module cache is
//! never trimmed. What a go command reads is bounded by its module graph: the main
//! module's (or workspace's) `go.mod` requirements and everything `go.sum` lists — go
//! refuses to use a version whose hash `go.sum` lacks ("missing go.sum entry"), and the
//! `/go.mod` lines cover the graph's pruned parts. So a process is resolved as go itself
//! resolves its main module (`cmd/go/internal/modload/init.go`: `-C`, then
//! `findModuleRoot` walking up from the working directory, `GOWORK` and `go.work`,
//! `-modfile` with its `.sum` beside it):
//!
//! * the working directory through `/proc/PID/cwd`, and every path through
//!   `/proc/PID/root`, so a go command in a container is read in its own file system;
//! * `GOWORK`, `GOFLAGS` from its environment or the go env file ([`ProcessEnv`]);
//! * the versions named in each `go.sum` (and `go.work.sum`), in `require` and in
//!   `replace` targets, and the toolchains its `go` and `toolchain` lines may switch to.
//!
//! Anything that cannot be read that way makes the process hold everything, as before:
//! a command line naming `module@version` (`go install`, `go run`, `go get` read
//! versions outside any go.sum), an unreadable working directory, environment or file.
//! Outside any module (`go version`, `go env`, a std-only build) go reads no module.
//!
//! The files are the user's: they are read (never written) with `O_NONBLOCK`, must be
//! regular files, and are capped at [`MAX_FILE_BYTES`], so a go.sum that is a FIFO, a
//! device or a huge file holds everything instead of stalling the daemon.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::golang::module::escape;
use crate::golang::procs::{GuardedProcess, ProcessEnv};

/// Bigger go.mod/go.sum files are not read (the process holds everything): the largest
/// real go.sum files are a few MiB.
pub const MAX_FILE_BYTES: u64 = 32 << 20;

/// What one go command may read from the module cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reads {
    /// These versions, as escaped `module@version` (the module cache's own spelling);
    /// `from` says where they were read, for people.
    Versions {
        keys: BTreeSet<String>,
        from: String,
    },
    /// Anything: the process could not be resolved, for this reason.
    Everything(String),
}

/// Resolves a running go command's module graph.
pub fn reads_of(process: &GuardedProcess) -> Reads {
    match resolve(process) {
        Ok(reads) => reads,
        Err(why) => Reads::Everything(why),
    }
}

fn resolve(process: &GuardedProcess) -> Result<Reads, String> {
    let args =
        command_line(&process.dir).ok_or_else(|| "its command line cannot be read".to_string())?;
    let env = ProcessEnv::read(&process.dir)
        .ok_or_else(|| "its environment cannot be read".to_string())?;
    let flags = Flags::parse(&args, env.var("GOFLAGS").as_deref().unwrap_or(""));
    if let Some(arg) = flags.versioned_arg {
        return Err(format!("it names {arg}, outside any go.sum"));
    }
    let cwd = std::fs::read_link(process.dir.join("cwd"))
        .map_err(|e| format!("its working directory cannot be read: {e}"))?;
    let files = ProcessFiles {
        root: process.dir.join("root"),
    };
    let dir = match &flags.chdir {
        Some(c) => cwd.join(c),
        None => cwd,
    };
    let mut keys = BTreeSet::new();
    let gowork = env.var("GOWORK").unwrap_or_default();
    let work = match gowork.as_str() {
        "off" => None,
        "" if flags.modfile.is_none() => files.find_upwards(&dir, "go.work"),
        "" => None,
        path => Some(dir.join(path)),
    };
    if let Some(work) = work {
        let text = files.read(&work)?.unwrap_or_default();
        let work_dir = work.parent().unwrap_or(Path::new("/"));
        let parsed = parse_mod_file(&text);
        keys.extend(parsed.versions);
        if let Some(sum) = files.read(&work.with_extension("work.sum"))? {
            keys.extend(parse_sum_file(&sum));
        }
        for used in parsed.uses {
            let module_dir = work_dir.join(used);
            if let Some(text) = files.read(&module_dir.join("go.mod"))? {
                keys.extend(parse_mod_file(&text).versions);
            }
            if let Some(sum) = files.read(&module_dir.join("go.sum"))? {
                keys.extend(parse_sum_file(&sum));
            }
        }
        return Ok(Reads::Versions {
            keys,
            from: format!("workspace {}", work.display()),
        });
    }
    let modfile = match &flags.modfile {
        Some(m) => dir.join(m),
        None => match files.find_upwards(&dir, "go.mod") {
            Some(m) => m,
            None => {
                return Ok(Reads::Versions {
                    keys,
                    from: format!("no module at {}", dir.display()),
                })
            }
        },
    };
    let text = files
        .read(&modfile)?
        .ok_or_else(|| format!("{} cannot be read", modfile.display()))?;
    keys.extend(parse_mod_file(&text).versions);
    let sum = {
        let s = modfile.to_string_lossy();
        PathBuf::from(format!("{}.sum", s.strip_suffix(".mod").unwrap_or(&s)))
    };
    if let Some(text) = files.read(&sum)? {
        keys.extend(parse_sum_file(&text));
    }
    Ok(Reads::Versions {
        keys,
        from: modfile.display().to_string(),
    })
}

fn command_line(proc_dir: &Path) -> Option<Vec<String>> {
    let raw = std::fs::read(proc_dir.join("cmdline")).ok()?;
    if raw.is_empty() {
        return None; // a kernel thread or an exiting process
    }
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// What of a go command line changes which module it works in.
#[derive(Debug, Default, PartialEq, Eq)]
struct Flags {
    /// `-C dir` (go: "must be the first flag").
    chdir: Option<String>,
    /// `-modfile=file`, on the command line or in `GOFLAGS`.
    modfile: Option<String>,
    /// An argument `path@version`: go reads that version outside the main module.
    versioned_arg: Option<String>,
}

impl Flags {
    fn parse(args: &[String], goflags: &str) -> Flags {
        let mut flags = Flags::default();
        for flag in goflags.split_whitespace() {
            if let Some(f) = flag
                .strip_prefix("-modfile=")
                .or_else(|| flag.strip_prefix("--modfile="))
            {
                flags.modfile = Some(f.to_string());
            }
        }
        let mut rest = args.iter().skip(1).peekable();
        while let Some(arg) = rest.next() {
            let name = arg.trim_start_matches('-');
            if arg.starts_with('-') {
                let (flag, inline) = match name.split_once('=') {
                    Some((f, v)) => (f, Some(v.to_string())),
                    None => (name, None),
                };
                if flag == "C" || flag == "modfile" {
                    let value = inline.or_else(|| rest.next().cloned());
                    if flag == "C" {
                        flags.chdir = value;
                    } else {
                        flags.modfile = value;
                    }
                }
            } else if arg.contains('@') && flags.versioned_arg.is_none() {
                flags.versioned_arg = Some(arg.clone());
            }
        }
        flags
    }
}

/// Reads a process's files through its own root (`/proc/PID/root`).
struct ProcessFiles {
    root: PathBuf,
}

impl ProcessFiles {
    fn host_path(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The file's text; `None` if it does not exist; an error (meaning "hold
    /// everything") if it exists but cannot be read as a plain, reasonably sized file.
    fn read(&self, path: &Path) -> Result<Option<String>, String> {
        let open = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags())
            .open(self.host_path(path));
        let file = match open {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{} cannot be read: {e}", path.display())),
        };
        let meta = file
            .metadata()
            .map_err(|e| format!("{} cannot be read: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", path.display()));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!(
                "{} is larger than {} MiB",
                path.display(),
                MAX_FILE_BYTES >> 20
            ));
        }
        let mut text = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_FILE_BYTES)
            .read_to_end(&mut text)
            .map_err(|e| format!("{} cannot be read: {e}", path.display()))?;
        Ok(Some(String::from_utf8_lossy(&text).into_owned()))
    }

    /// `name` in `dir` or the nearest parent that has it (go's `findModuleRoot`).
    fn find_upwards(&self, dir: &Path, name: &str) -> Option<PathBuf> {
        dir.ancestors()
            .map(|d| d.join(name))
            .find(|candidate| self.host_path(candidate).is_file())
    }
}

fn libc_flags() -> i32 {
    (nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC)
        .bits()
}

/// The versions of `go.sum` lines `module version[/go.mod] hash`, escaped.
pub fn parse_sum_file(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let (module, version) = (fields.next()?, fields.next()?);
        fields.next()?; // the hash: a line without one is not a go.sum line
        key(module, version.strip_suffix("/go.mod").unwrap_or(version))
    })
}

/// What a `go.mod` or `go.work` names.
#[derive(Debug, Default)]
struct ModFile {
    /// Required versions, `replace` targets, and the toolchains `go`/`toolchain` name.
    versions: Vec<String>,
    /// `use` directories (go.work).
    uses: Vec<String>,
}

fn parse_mod_file(text: &str) -> ModFile {
    let mut parsed = ModFile::default();
    let mut block: Option<String> = None;
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let tokens: Vec<&str> = line
            .split_whitespace()
            .map(|t| t.trim_matches('"'))
            .collect();
        let (verb, args): (&str, &[&str]) = match &block {
            Some(_) if line == ")" => {
                block = None;
                continue;
            }
            Some(verb) => (verb.as_str(), &tokens[..]),
            None if tokens.len() == 2 && tokens[1] == "(" => {
                block = Some(tokens[0].to_string());
                continue;
            }
            None => (tokens[0], &tokens[1..]),
        };
        match (verb, args) {
            ("require", [module, version, ..]) => parsed.versions.extend(key(module, version)),
            ("replace", args) => {
                // old [v] => new [v]: only a module target (not a directory) is read
                // from the cache.
                if let Some(arrow) = args.iter().position(|t| *t == "=>") {
                    if let [module, version] = &args[arrow + 1..] {
                        parsed.versions.extend(key(module, version));
                    }
                }
            }
            ("use", [dir, ..]) => parsed.uses.push(dir.to_string()),
            ("toolchain", [name]) => {
                parsed
                    .versions
                    .extend(toolchain_key(name.strip_prefix("go").unwrap_or(name)));
            }
            // `go 1.22` asks for at least go1.22.0 (`cmd/go/internal/gover`); older
            // versions had no toolchain modules.
            ("go", [version]) => {
                let full = match version.split('.').count() {
                    2 => format!("{version}.0"),
                    _ => version.to_string(),
                };
                parsed.versions.extend(toolchain_key(&full));
            }
            _ => {}
        }
    }
    parsed
}

/// The module cache's key of the toolchain module go switches to for `go1.X.Y`
/// (`cmd/go/internal/toolchain`: `golang.org/toolchain@v0.0.1-go1.X.Y.GOOS-GOARCH`).
pub fn toolchain_key(go_version: &str) -> Option<String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    key(
        "golang.org/toolchain",
        &format!("v0.0.1-go{go_version}.{}-{arch}", std::env::consts::OS),
    )
}

fn key(module: &str, version: &str) -> Option<String> {
    Some(format!("{}@{}", escape(module)?, escape(version)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_that_move_the_main_module_are_read() {
        let f = Flags::parse(&args("go -C sub build -modfile alt.mod ./..."), "");
        assert_eq!(f.chdir.as_deref(), Some("sub"));
        assert_eq!(f.modfile.as_deref(), Some("alt.mod"));
        assert_eq!(f.versioned_arg, None);
        let f = Flags::parse(
            &args("go test -run=X@y ./..."),
            "-mod=mod -modfile=/x/ci.mod",
        );
        assert_eq!(f.modfile.as_deref(), Some("/x/ci.mod"));
        assert_eq!(f.versioned_arg, None, "a flag's value is not a module");
        let f = Flags::parse(&args("go install golang.org/x/tools/gopls@v0.16.0"), "");
        assert_eq!(
            f.versioned_arg.as_deref(),
            Some("golang.org/x/tools/gopls@v0.16.0")
        );
    }

    #[test]
    fn go_sum_and_go_mod_name_escaped_versions() {
        let sum = "github.com/BurntSushi/toml v1.2.0 h1:abc=\n\
                   github.com/BurntSushi/toml v1.2.0/go.mod h1:def=\n\
                   golang.org/x/text v0.3.7/go.mod h1:ghi=\n\
                   garbage line\n";
        let keys: Vec<String> = parse_sum_file(sum).collect();
        assert_eq!(
            keys,
            [
                "github.com/!burnt!sushi/toml@v1.2.0",
                "github.com/!burnt!sushi/toml@v1.2.0",
                "golang.org/x/text@v0.3.7"
            ]
        );
        let gomod = "module example.com/m // the main module\n\
                     go 1.24.11\n\
                     toolchain go1.27.3\n\
                     require golang.org/x/sys v0.1.0\n\
                     require (\n\
                         \"golang.org/x/net\" v0.2.0 // indirect\n\
                         example.com/Up v1.0.0\n\
                     )\n\
                     replace example.com/old => example.com/new v1.5.0\n\
                     replace example.com/local => ../local\n";
        let parsed = parse_mod_file(gomod);
        let arch = toolchain_key("1.27.3").unwrap();
        assert!(
            arch.starts_with("golang.org/toolchain@v0.0.1-go1.27.3."),
            "{arch}"
        );
        for want in [
            "golang.org/x/sys@v0.1.0",
            "golang.org/x/net@v0.2.0",
            "example.com/!up@v1.0.0",
            "example.com/new@v1.5.0",
            arch.as_str(),
        ] {
            assert!(
                parsed.versions.iter().any(|v| v == want),
                "{want} in {:?}",
                parsed.versions
            );
        }
        assert_eq!(parsed.versions.len(), 6, "{:?}", parsed.versions);
        let work = parse_mod_file("go 1.22\nuse (\n ./a\n ./b // two\n)\nuse ./c\n");
        assert_eq!(work.uses, ["./a", "./b", "./c"]);
    }

    /// Runs a stand-in for a go command in `cwd` and resolves it: a shell whose command
    /// line ends with `args`, as go's would.
    fn resolve_fake_go(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Reads {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30; true", "go"])
            .args(args)
            .current_dir(cwd)
            .envs(env.iter().copied())
            .env("GOENV", "off")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // sleep ignores the extra arguments only if they parse as durations: it exits
        // at once otherwise, so read the process while it is (briefly) alive.
        let process = GuardedProcess {
            pid,
            name: "go".into(),
            started: 0,
            start_ticks: 0,
            dir: PathBuf::from(format!("/proc/{pid}")),
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        let reads = reads_of(&process);
        child.kill().unwrap();
        child.wait().unwrap();
        reads
    }

    fn keys_of(reads: &Reads) -> Vec<&str> {
        match reads {
            // The toolchains a go line may switch to are held too; not what is tested.
            Reads::Versions { keys, .. } => keys
                .iter()
                .map(String::as_str)
                .filter(|k| !k.starts_with("golang.org/toolchain@"))
                .collect(),
            Reads::Everything(why) => panic!("everything: {why}"),
        }
    }

    #[test]
    fn a_running_go_command_is_resolved_to_its_modules_go_sum() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(app.join("cmd/tool")).unwrap();
        std::fs::write(
            app.join("go.mod"),
            "module example.com/app\nrequire example.com/a v1.0.0\n",
        )
        .unwrap();
        std::fs::write(app.join("go.sum"), "example.com/b v1.2.0/go.mod h1:x=\n").unwrap();
        // Started in a subdirectory: go walks up to the go.mod.
        let reads = resolve_fake_go(&app.join("cmd/tool"), &[], &[]);
        let keys = keys_of(&reads);
        assert!(keys.contains(&"example.com/a@v1.0.0"), "{keys:?}");
        assert!(keys.contains(&"example.com/b@v1.2.0"), "{keys:?}");

        // -modfile (here through GOFLAGS) names another go.mod and its .sum.
        std::fs::write(
            app.join("ci.mod"),
            "module example.com/app\nrequire example.com/c v0.1.0\n",
        )
        .unwrap();
        std::fs::write(app.join("ci.sum"), "example.com/d v0.2.0 h1:x=\n").unwrap();
        let reads = resolve_fake_go(&app, &[], &[("GOFLAGS", "-modfile=ci.mod")]);
        assert_eq!(
            keys_of(&reads),
            ["example.com/c@v0.1.0", "example.com/d@v0.2.0"]
        );

        // A workspace: go.work.sum and each used module's go.mod and go.sum.
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join("m1")).unwrap();
        std::fs::write(ws.join("go.work"), "go 1.22\nuse ./m1\n").unwrap();
        std::fs::write(ws.join("go.work.sum"), "example.com/w v1.0.0 h1:x=\n").unwrap();
        std::fs::write(
            ws.join("m1/go.mod"),
            "module m1\nrequire example.com/m v2.0.0+incompatible\n",
        )
        .unwrap();
        let reads = resolve_fake_go(&ws.join("m1"), &[], &[]);
        assert_eq!(
            keys_of(&reads),
            ["example.com/m@v2.0.0+incompatible", "example.com/w@v1.0.0"]
        );
        let Reads::Versions { from, .. } = &reads else {
            unreachable!()
        };
        assert!(from.starts_with("workspace "), "{from}");
        // GOWORK=off: the module alone.
        let reads = resolve_fake_go(&ws.join("m1"), &[], &[("GOWORK", "off")]);
        assert_eq!(keys_of(&reads), ["example.com/m@v2.0.0+incompatible"]);

        // Outside any module go reads none.
        let reads = resolve_fake_go(dir.path(), &[], &[]);
        assert_eq!(keys_of(&reads), Vec::<&str>::new());
    }

    #[test]
    fn what_cannot_be_resolved_holds_everything_without_stalling() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(app.join("go.mod"), "module example.com/app\n").unwrap();
        // A go.sum that is a FIFO no one writes: reading it would block for ever.
        nix::unistd::mkfifo(
            &app.join("go.sum"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let reads = resolve_fake_go(&app, &[], &[]);
        assert!(
            matches!(&reads, Reads::Everything(why) if why.contains("not a regular file")),
            "{reads:?}"
        );
        std::fs::remove_file(app.join("go.sum")).unwrap();
        // `go install tool@version` reads a version outside the go.sum.
        let reads = resolve_fake_go(&app, &["-C", ".", "example.com/tool@v1.0.0"], &[]);
        assert!(
            matches!(&reads, Reads::Everything(why) if why.contains("example.com/tool@v1.0.0")),
            "{reads:?}"
        );
    }
}
