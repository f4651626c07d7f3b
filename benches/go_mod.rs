//! Benchmarks of the `go-mod` kind on a synthetic GOMODCACHE, against standard tools.
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/bench-target cargo bench --bench go_mod -- --versions N
//!     [--dir PATH] [--json FILE] [--keep] [--existing ROOT]
//! ```
//!
//! 1. **generate** (not timed) N module versions in go's layout: modules
//!    `example.com/org<k>/Mod<i>` (upper case, so every path is case-escaped) with 5
//!    versions each; per version `.info`, `.mod`, a deflated `.zip` whose entries are
//!    `module@version/…`, its real `.ziphash`, an empty `.lock`, `list`, and the
//!    extracted tree (go.mod + 3–6 files of 0.2–6 KiB; files 0444, dirs 0555).
//! 2. **scan**: `Cache::scan` (full scan, all cores, + index build) vs `du -s`, warm
//!    page cache, median of 3.
//! 3. **index memory**: VmRSS growth over the first scan after `malloc_trim(0)`, per
//!    entry (3 per version).
//! 4. **hashing**: `Cache::verify` (every tree and zip hashed as go's `h1:`, all cores;
//!    then the incremental second sweep) vs `sha256sum` over the same files (the trees'
//!    files and the zips), one process and `xargs -P <cores>`.
//!
//! Everything generated is removed at the end unless `--keep` (it prints the module cache
//! root; `--existing ROOT` runs the measurements on it again without generating).

mod common;

use common::Rng;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cachewarden::config::{self, ConfigSource, Env};
use cachewarden::golang::dirhash::hash_zip;
use cachewarden::golang::module::escape;
use serde_json::json;

struct Args {
    versions: usize,
    dir: Option<PathBuf>,
    json: Option<PathBuf>,
    keep: bool,
    existing: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        versions: 50_000,
        dir: None,
        json: None,
        keep: false,
        existing: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--bench" => {}
            "--versions" => {
                let v = value().replace('_', "").to_ascii_lowercase();
                args.versions = match v.strip_suffix('k') {
                    Some(n) => n.parse::<usize>().expect("--versions") * 1000,
                    None => v.parse().expect("--versions"),
                };
            }
            "--dir" => args.dir = Some(PathBuf::from(value())),
            "--json" => args.json = Some(PathBuf::from(value())),
            "--keep" => args.keep = true,
            "--existing" => args.existing = Some(PathBuf::from(value())),
            "-h" | "--help" => {
                println!("cargo bench --bench go_mod -- [--versions N] [--dir PATH] [--json FILE] [--keep] [--existing ROOT]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other:?} (see --help)"),
        }
    }
    args
}

impl Rng {
    /// Text-like bytes (source code compresses; random bytes would not).
    fn text(&mut self, len: usize) -> Vec<u8> {
        const WORDS: [&str; 12] = [
            "func ",
            "return ",
            "if err != nil {\n",
            "}\n",
            "package x\n",
            "var ",
            "int",
            " := ",
            "// comment\n",
            "fmt.Println(",
            ")\n",
            "\t",
        ];
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            out.extend_from_slice(WORDS[(self.next() % 12) as usize].as_bytes());
        }
        out.truncate(len);
        out
    }
}

struct Generated {
    versions: usize,
    files: Vec<PathBuf>,
    hashed_bytes: u64,
}

fn generate(root: &Path, versions: usize) -> Generated {
    let mut rng = Rng(42);
    let mut files = Vec::new();
    let mut hashed_bytes = 0u64;
    let modules = versions.div_ceil(5);
    let t = cachewarden::now() - 30 * 86400;
    for i in 0..modules {
        let module = format!("example.com/org{}/Mod{i}", i % 500);
        let esc = escape(&module).unwrap();
        let vdir = root.join("cache/download").join(&esc).join("@v");
        std::fs::create_dir_all(&vdir).unwrap();
        let count = 5.min(versions - i * 5);
        let mut list = String::new();
        for v in 0..count {
            let version = format!("v1.{v}.0");
            list.push_str(&format!("{version}\n"));
            let gomod = format!("module {module}\n\ngo 1.19\n");
            let mut tree_files: Vec<(String, Vec<u8>)> =
                vec![("go.mod".into(), gomod.clone().into_bytes())];
            for f in 0..rng.range(3, 7) {
                let dir = if f % 2 == 0 { "" } else { "internal/" };
                let len = rng.range(200, 6 * 1024) as usize;
                tree_files.push((format!("{dir}file{f}.go"), rng.text(len)));
            }
            let zip_path = vdir.join(format!("{version}.zip"));
            let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            for (name, data) in &tree_files {
                zip.start_file(format!("{module}@{version}/{name}"), opts)
                    .unwrap();
                zip.write_all(data).unwrap();
            }
            zip.finish().unwrap();
            let h = hash_zip(std::fs::File::open(&zip_path).unwrap()).unwrap();
            std::fs::write(vdir.join(format!("{version}.ziphash")), h).unwrap();
            std::fs::write(vdir.join(format!("{version}.lock")), b"").unwrap();
            std::fs::write(
                vdir.join(format!("{version}.info")),
                format!("{{\"Version\":\"{version}\",\"Time\":\"2024-01-01T00:00:00Z\"}}"),
            )
            .unwrap();
            std::fs::write(vdir.join(format!("{version}.mod")), &gomod).unwrap();
            hashed_bytes += std::fs::metadata(&zip_path).unwrap().len();
            files.push(zip_path);
            let tree = root.join(format!("{esc}@{version}"));
            std::fs::create_dir_all(tree.join("internal")).unwrap();
            for (name, data) in &tree_files {
                let p = tree.join(name);
                std::fs::write(&p, data).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
                let ft = filetime::FileTime::from_unix_time(t + (i * 5 + v) as i64, 0);
                filetime::set_file_times(&p, ft, ft).unwrap();
                hashed_bytes += data.len() as u64;
                files.push(p);
            }
            std::fs::set_permissions(
                tree.join("internal"),
                std::fs::Permissions::from_mode(0o555),
            )
            .unwrap();
            std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        std::fs::write(vdir.join("list"), list).unwrap();
    }
    Generated {
        versions,
        files,
        hashed_bytes,
    }
}

/// What `generate` would report, for a cache generated earlier.
fn existing(root: &Path) -> Generated {
    let mut files = Vec::new();
    let mut hashed_bytes = 0;
    let mut versions = 0;
    for e in walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
    {
        let name = e.file_name().to_string_lossy();
        let in_tree = e
            .path()
            .strip_prefix(root)
            .is_ok_and(|p| !p.starts_with("cache"));
        if e.file_type().is_file() && (in_tree || name.ends_with(".zip")) {
            versions += name.ends_with(".zip") as usize;
            hashed_bytes += e.metadata().unwrap().len();
            files.push(e.path().to_path_buf());
        }
    }
    Generated {
        versions,
        files,
        hashed_bytes,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

fn trim() {
    // SAFETY: malloc_trim only returns free heap pages to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn sha256sum(files: &[PathBuf], parallel: usize) -> Duration {
    let list = std::env::temp_dir().join(format!("go-mod-bench-files-{}", std::process::id()));
    let mut text = Vec::new();
    for f in files {
        text.extend_from_slice(f.as_os_str().as_encoded_bytes());
        text.push(0);
    }
    std::fs::write(&list, text).unwrap();
    let run = || {
        let (d, out) = timed(|| {
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "xargs -0 -P {parallel} -n 2000 sha256sum < '{}' > /dev/null",
                    list.display()
                ))
                .status()
                .unwrap()
        });
        assert!(out.success());
        d
    };
    let d = median((0..3).map(|_| run()).collect());
    let _ = std::fs::remove_file(&list);
    d
}

fn main() {
    let args = parse_args();
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("go-mod-bench-")
        .tempdir_in(&base)
        .unwrap();
    let root = args
        .existing
        .clone()
        .unwrap_or_else(|| dir.path().join("mod"));
    std::fs::create_dir_all(&root).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let (gen_time, g) = timed(|| match &args.existing {
        Some(root) => existing(root),
        None => generate(&root, args.versions),
    });
    println!(
        "generated {} versions ({} files hashed by verify, {:.1} MiB) in {:.1}s",
        g.versions,
        g.files.len(),
        g.hashed_bytes as f64 / (1 << 20) as f64,
        gen_time.as_secs_f64()
    );

    let text = format!(
        "[[cache]]\nname = \"gm\"\nkind = \"go-mod\"\npath = \"{}\"\nmin_age = \"1h\"\n",
        root.display()
    );
    let env = Env::from_process();
    let cfg = config::parse(&text, ConfigSource::Embedded, &env).expect("config");
    let open = || cachewarden::cache::open(cfg.caches[0].clone());

    // Warm everything once.
    let du = |root: &Path| {
        let out = Command::new("du")
            .args(["-s", "-B1"])
            .arg(root)
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let du_bytes = du(&root);

    trim();
    let rss_before = rss_bytes();
    let cache = open();
    let (first_scan, record) = timed(|| cache.scan(cachewarden::now()));
    trim();
    let rss_after = rss_bytes();
    let entries = record.entries;
    let per_entry = (rss_after.saturating_sub(rss_before)) as f64 / entries as f64;
    println!(
        "first scan: {entries} entries, {} bytes (du -s: {du_bytes}) in {:.2}s; index RSS growth {:.0} bytes/entry",
        record.disk_bytes,
        first_scan.as_secs_f64(),
        per_entry
    );

    let scan = median(
        (0..3)
            .map(|_| {
                let c = open();
                timed(|| c.scan(cachewarden::now())).0
            })
            .collect(),
    );
    let du_time = median((0..3).map(|_| timed(|| du(&root)).0).collect());
    println!(
        "scan (warm, median of 3): {:.3}s vs du -s {:.3}s: {:.2}x",
        scan.as_secs_f64(),
        du_time.as_secs_f64(),
        scan.as_secs_f64() / du_time.as_secs_f64()
    );

    let (verify_first, report) = timed(|| cache.verify(false, cachewarden::now()));
    assert!(
        report.problems.is_empty(),
        "{:?}",
        &report.problems[..report.problems.len().min(3)]
    );
    let (verify_again, _) = timed(|| cache.verify(false, cachewarden::now()));
    let one = sha256sum(&g.files, 1);
    let many = sha256sum(&g.files, cores);
    let mib = g.hashed_bytes as f64 / (1 << 20) as f64;
    println!(
        "verify ({cores} cores): {:.2}s = {:.1} MiB/s (incremental re-run {:.3}s); sha256sum: {:.2}s = {:.1} MiB/s, xargs -P {cores}: {:.2}s = {:.1} MiB/s",
        verify_first.as_secs_f64(),
        mib / verify_first.as_secs_f64(),
        verify_again.as_secs_f64(),
        one.as_secs_f64(),
        mib / one.as_secs_f64(),
        many.as_secs_f64(),
        mib / many.as_secs_f64()
    );

    let result = json!({
        "versions": g.versions,
        "entries": entries,
        "cores": cores,
        "generated_files": g.files.len(),
        "hashed_bytes": g.hashed_bytes,
        "du_bytes": du_bytes,
        "scanned_disk_bytes": record.disk_bytes,
        "first_scan_s": first_scan.as_secs_f64(),
        "scan_warm_s": scan.as_secs_f64(),
        "du_warm_s": du_time.as_secs_f64(),
        "scan_vs_du": scan.as_secs_f64() / du_time.as_secs_f64(),
        "index_rss_bytes_per_entry": per_entry,
        "verify_s": verify_first.as_secs_f64(),
        "verify_incremental_s": verify_again.as_secs_f64(),
        "sha256sum_s": one.as_secs_f64(),
        "sha256sum_parallel_s": many.as_secs_f64(),
        "verify_vs_sha256sum": verify_first.as_secs_f64() / one.as_secs_f64(),
        "verify_vs_sha256sum_parallel": verify_first.as_secs_f64() / many.as_secs_f64(),
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result).unwrap()).unwrap();
    }
    drop(cache);
    if args.existing.is_some() {
        // Measured, not generated: nothing of ours to remove but the empty temp dir.
    } else if args.keep {
        println!("kept {}", root.display());
        let _ = dir.keep();
    } else {
        // Trees are read-only, as go leaves them: make them writable to remove them.
        Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(dir.path())
            .status()
            .unwrap();
    }
}
