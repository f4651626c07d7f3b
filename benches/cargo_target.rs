//! Benchmarks of the `cargo-target` kind on a synthetic target directory, against
//! standard tools (issue #25's "Measure").
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/bench-target cargo bench --bench cargo_target -- --units N [--dir PATH]
//! ```
//!
//! 1. **generate** (not timed) a target directory of N units in cargo's layout, in two
//!    profiles (debug, release): per unit a fingerprint directory (hash file, JSON,
//!    dep-info, `invoked.timestamp`), `lib<crate>-<hash>.rlib` (16–400 KiB) and
//!    `.rmeta`, a `.d`; one unit in ten with a build-script directory (`out/` of a few
//!    files); one incremental directory per 20 units (a few session files).
//! 2. **scan**: `Cache::scan` (walk + index) vs `du -s` of the same directory, warm
//!    page cache, median of 3.
//! 3. **removal**: the daemon's eviction of every unit (limits of one byte, removal
//!    under cargo's lock, fingerprint first) vs `rm -rf` of a copy of the same directory
//!    (what `cargo clean` does: `remove_dir_all` of the target directory), in bytes freed
//!    per second.

mod common;

use common::Rng;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cachewarden::config::{self, ConfigSource, Env};

fn main() {
    let mut units = 5_000usize;
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--units" => units = args.next().unwrap().replace('_', "").parse().unwrap(),
            "--dir" => dir = Some(PathBuf::from(args.next().unwrap())),
            _ => {}
        }
    }
    let base = dir.unwrap_or_else(std::env::temp_dir);
    let work = tempfile::tempdir_in(&base).unwrap();
    let target = work.path().join("target");
    let started = Instant::now();
    let bytes = generate(&target, units);
    println!(
        "generated {units} units ({} MiB) in {:.1?}",
        bytes >> 20,
        started.elapsed()
    );

    let config = format!(
        "[daemon]\nsocket = \"{0}/cw.sock\"\n\n[[cache]]\nname = \"t\"\nkind = \"cargo-target\"\npath = \"{1}\"\nmin_age = \"1m\"\nmax_size = 1\n",
        work.path().display(),
        target.display()
    );
    let config = config::parse(&config, ConfigSource::Embedded, &Env::from_process()).unwrap();
    let cache_config = config.caches[0].clone();

    // Scan vs du -s, warm (one of each first).
    let du = || {
        let t = Instant::now();
        let ok = Command::new("du").arg("-s").arg(&target).output().unwrap();
        assert!(ok.status.success());
        t.elapsed()
    };
    let scan = || {
        let cache = cachewarden::cache::open(cache_config.clone());
        let t = Instant::now();
        cache.scan(cachewarden::now());
        (t.elapsed(), cache)
    };
    du();
    scan();
    let du_time = median((0..3).map(|_| du()).collect());
    let scan_time = median((0..3).map(|_| scan().0).collect());
    let (_, cache) = scan();
    let status = cache.status(cachewarden::now());
    println!(
        "scan: {} entries, {} MiB: {} ms vs du -s {} ms: {:.2}x",
        status.entries,
        status.disk_bytes >> 20,
        scan_time.as_millis(),
        du_time.as_millis(),
        scan_time.as_secs_f64() / du_time.as_secs_f64()
    );

    // Removal: a copy for rm -rf (cargo clean), then eviction of the original.
    let copy = work.path().join("copy");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(&target)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(ok.success());
    sync();
    let t = Instant::now();
    let ok = Command::new("rm").arg("-rf").arg(&copy).status().unwrap();
    assert!(ok.success());
    let rm_time = t.elapsed();
    sync();
    // Every unit past min_age: aged by a day (as a project untouched since yesterday).
    age(&target, 86_400);
    let cache = cachewarden::cache::open(cache_config.clone());
    cache.scan(cachewarden::now());
    let before = cache.status(cachewarden::now()).disk_bytes;
    let t = Instant::now();
    let report = cache.evict(false, cachewarden::now());
    let evict_time = t.elapsed();
    let mut why: std::collections::BTreeMap<String, usize> = Default::default();
    for s in report.skipped.iter().chain(&report.failed) {
        *why.entry(s.reason.clone()).or_default() += 1;
    }
    if !why.is_empty() || !report.unmet.is_empty() {
        println!("not removed: {why:?}; unmet: {:?}", report.unmet);
    }
    let rm_rate = before as f64 / rm_time.as_secs_f64();
    let evict_rate = report.freed_bytes as f64 / evict_time.as_secs_f64();
    println!(
        "removal: evicted {} entries, {} MiB in {} ms ({:.0} MiB/s) vs rm -rf of the same directory {} ms ({:.0} MiB/s): {:.2}x the bytes per second",
        report.removed_entries,
        report.freed_bytes >> 20,
        evict_time.as_millis(),
        evict_rate / 1048576.0,
        rm_time.as_millis(),
        rm_rate / 1048576.0,
        evict_rate / rm_rate
    );
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn sync() {
    let _ = Command::new("sync").status();
}

fn age(dir: &Path, secs: i64) {
    let t = filetime::FileTime::from_unix_time(cachewarden::now() - secs, 0);
    // Directories too (a unit's directory mtime is a use), after their contents.
    for e in walkdir::WalkDir::new(dir)
        .contents_first(true)
        .into_iter()
        .filter_map(Result::ok)
    {
        if !e.file_type().is_symlink() {
            filetime::set_file_times(e.path(), t, t).unwrap();
        }
    }
}

/// A target directory of `units` units in cargo's layout; its bytes.
fn generate(target: &Path, units: usize) -> u64 {
    let mut rng = Rng(0xca_460);
    let mut bytes = 0u64;
    let mut write = |path: &Path, len: usize, rng: &mut Rng| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        std::fs::write(path, data).unwrap();
        bytes += len as u64;
    };
    std::fs::create_dir_all(target).unwrap();
    std::fs::write(
        target.join("CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by cargo.\n",
    )
    .unwrap();
    for i in 0..units {
        let profile = if i % 3 == 0 { "release" } else { "debug" };
        let p = target.join(profile);
        let krate = format!("crate_{i}");
        let hash = format!("{:016x}", rng.next());
        let fp = p.join(format!(".fingerprint/crate-{i}-{hash}"));
        write(&fp.join(format!("lib-{krate}")), 16, &mut rng);
        write(&fp.join(format!("lib-{krate}.json")), 600, &mut rng);
        write(&fp.join(format!("dep-lib-{krate}")), 200, &mut rng);
        write(&fp.join("invoked.timestamp"), 0, &mut rng);
        let rlib = rng.range(16 << 10, 400 << 10) as usize;
        write(
            &p.join(format!("deps/lib{krate}-{hash}.rlib")),
            rlib,
            &mut rng,
        );
        write(
            &p.join(format!("deps/lib{krate}-{hash}.rmeta")),
            rlib / 4,
            &mut rng,
        );
        write(&p.join(format!("deps/{krate}-{hash}.d")), 300, &mut rng);
        if i % 10 == 0 {
            let b = p.join(format!("build/crate-{i}-{hash}/out"));
            for f in 0..3 {
                write(&b.join(format!("gen{f}.rs")), 2000, &mut rng);
            }
        }
        if i % 20 == 0 {
            let inc = p.join(format!(
                "incremental/{krate}-{:013}",
                rng.next() % 10_000_000_000_000
            ));
            for f in 0..4 {
                write(
                    &inc.join(format!("s-session/file{f}.bin")),
                    50_000,
                    &mut rng,
                );
            }
        }
    }
    for profile in ["debug", "release"] {
        std::fs::write(target.join(profile).join(".cargo-lock"), b"").unwrap();
    }
    bytes
}
