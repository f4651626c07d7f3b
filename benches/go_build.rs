//! Benchmarks of the `go-build` kind on a synthetic GOCACHE, against standard tools.
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/bench-target cargo bench --bench go_build -- --entries N
//!     [--dir PATH] [--skip-cold] [--budget-gib G] [--events K] [--idle-secs S]
//!     [--json FILE] [--keep] [--only scan,restart,cold,watch,verify,latency,idle,socket,cliscan,evict]
//!     [--baseline-bin PATH]
//! ```
//!
//! `--baseline-bin` measures the event → status latency (6) again with another build's
//! daemon on the same tree, right after ours: two builds compared in one run.
//!
//! One run, for one entry count N (an entry = one action `-a` + its output `-d`):
//!
//! 1. **generate** a GOCACHE in go's real format below `--dir` (default: the temp dir,
//!    or `/work/bench-tmp` when the temp dir is a tmpfs): 256 shards, 175-byte actions,
//!    outputs named by the SHA-256 of their content, ~3 % of actions naming the shared
//!    empty output, go's README, mtimes spread over days 1–30 (unique seconds, `-a` and
//!    `-d` alike). Output sizes: 60 % 0.5–4 KiB, 30 % 4–64 KiB, 9 % 64 KiB–1 MiB,
//!    1 % 1–8 MiB, all scaled down by one factor when the tree would not fit the disk
//!    budget (`--budget-gib`, default min(¼ of the free space, 14 GiB)). Not timed.
//! 2. **scan**: `Cache::scan` (full scan + index build) vs `du -s`, warm (median of 3)
//!    and cold (`drop_caches` before each run; median of 3; skipped by `--skip-cold`).
//! 3. **index memory**: VmRSS growth over the first scan, after `malloc_trim(0)`.
//! 4. **watch setup**: `watch::start` on the cache's watch dirs, in a tokio runtime.
//! 5. **integrity sweep**: `Cache::verify` (all cores; first and incremental second
//!    run) vs `find -name '*-d' -print0 | xargs -0 sha256sum`, warm page cache.
//! 6. **event → status latency**: the daemon binary on the tree; K new pairs written
//!    20 ms apart; for each, `GET /v1/caches/NAME` over the socket until `entries` grows.
//! 7. **idle CPU**: a fresh daemon, from `ready` for S seconds (utime + stime).
//! 9. **socket** (run before 8): the daemon (debug log) on a copy: 1,000 simultaneous
//!    `GET /v1/status` (answered, p50/p99); 20 statuses while 500 idle connections are
//!    open; status time inside the daemon (its request timer); status p99 while an
//!    eviction to half the cache runs (SIGHUP with `max_size` = half) vs before it.
//! 8. **eviction of half the cache** (`max_size` = half the scanned size) vs
//!    `xargs rm -f` of exactly the files it removed vs `find … ! -newermt CUTOFF
//!    -delete`, each on an identical tree (`cp -a`, then caches dropped, then one
//!    untimed walk so metadata is warm for all three).
//!
//! Everything generated is removed at the end (also on panic), unless `--keep`.
//! Results are printed and, with `--json FILE`, written as JSON.

mod common;

use common::Rng;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cachewarden::cache::Cache;
use cachewarden::config::{self, ConfigSource, Env};
use cachewarden::kinds::go_build::{format_action, Action};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const CACHE_NAME: &str = "gocache";
const README: &str = "This directory holds cached build artifacts from the Go build system.\nRun \"go clean -cache\" if the directory is getting too large.\nRun \"go clean -fuzzcache\" to delete the fuzz cache.\nSee golang.org to learn more about Go.\n";
/// SHA-256 of nothing: go's shared empty output.
const EMPTY_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const DAY: i64 = 86400;
const TMPFS_MAGIC: i64 = 0x0102_1994;

// ---------------------------------------------------------------------------------
// Arguments

struct Args {
    entries: usize,
    dir: Option<PathBuf>,
    skip_cold: bool,
    budget: Option<u64>,
    events: usize,
    idle_secs: u64,
    json: Option<PathBuf>,
    keep: bool,
    /// Another build's daemon, measured after ours in the latency section.
    baseline_bin: Option<PathBuf>,
    /// Sections to run (default: all): scan, cold, watch, verify, latency, idle, evict.
    only: Option<Vec<String>>,
}

fn parse_count(s: &str) -> usize {
    let t = s.replace('_', "").to_ascii_lowercase();
    let (num, mul) = if let Some(n) = t.strip_suffix('m') {
        (n.to_string(), 1_000_000)
    } else if let Some(n) = t.strip_suffix('k') {
        (n.to_string(), 1_000)
    } else {
        (t, 1)
    };
    num.parse::<usize>()
        .unwrap_or_else(|_| panic!("not a count: {s}"))
        * mul
}

fn parse_args() -> Args {
    let mut args = Args {
        entries: 100_000,
        dir: None,
        skip_cold: false,
        budget: None,
        events: 200,
        idle_secs: 60,
        json: None,
        keep: false,
        baseline_bin: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    let value = |it: &mut dyn Iterator<Item = String>, name: &str| {
        it.next().unwrap_or_else(|| panic!("{name} needs a value"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" => {} // cargo bench passes it to every bench target
            "--entries" => args.entries = parse_count(&value(&mut it, "--entries")),
            "--dir" => args.dir = Some(PathBuf::from(value(&mut it, "--dir"))),
            "--skip-cold" => args.skip_cold = true,
            "--budget-gib" => {
                let g: f64 = value(&mut it, "--budget-gib")
                    .parse()
                    .expect("--budget-gib");
                args.budget = Some((g * (1u64 << 30) as f64) as u64);
            }
            "--events" => args.events = parse_count(&value(&mut it, "--events")),
            "--idle-secs" => {
                args.idle_secs = value(&mut it, "--idle-secs").parse().expect("--idle-secs")
            }
            "--json" => args.json = Some(PathBuf::from(value(&mut it, "--json"))),
            "--keep" => args.keep = true,
            "--baseline-bin" => {
                args.baseline_bin = Some(PathBuf::from(value(&mut it, "--baseline-bin")))
            }
            "--only" => {
                args.only = Some(
                    value(&mut it, "--only")
                        .split(',')
                        .map(str::to_string)
                        .collect(),
                )
            }
            "-h" | "--help" => {
                println!("cargo bench --bench go_build -- --entries N [--dir PATH] [--skip-cold] [--budget-gib G] [--events K] [--idle-secs S] [--json FILE] [--keep] [--only scan,restart,cold,watch,verify,latency,idle,socket,cliscan,evict] [--baseline-bin PATH]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other:?} (see --help)"),
        }
    }
    args
}

// ---------------------------------------------------------------------------------
// Small helpers

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn hash(&mut self) -> [u8; 32] {
        let mut h = [0u8; 32];
        self.fill(&mut h);
        h
    }
}

fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

fn now() -> i64 {
    cachewarden::now()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
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

fn sh(script: &str) -> Duration {
    let (d, status) = timed(|| {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .status()
            .expect("running sh")
    });
    assert!(status.success(), "failed: {script}");
    d
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

fn sync() {
    let _ = Command::new("sync").status();
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`.
fn drop_caches() -> Result<(), String> {
    sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").map_err(|e| e.to_string())
}

fn is_tmpfs(p: &Path) -> bool {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == TMPFS_MAGIC }
}

fn fs_type(p: &Path) -> String {
    Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE", "--target"])
        .arg(p)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn vm_rss() -> u64 {
    status_kb("/proc/self/status", "VmRSS:") * 1024
}

fn status_kb(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// KiB read from block devices since boot, system-wide (`pgpgin`): shows whether a
/// "warm" run really ran from the page cache.
fn pgpgin_kib() -> u64 {
    std::fs::read_to_string("/proc/vmstat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("pgpgin "))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn trim() {
    unsafe {
        libc::malloc_trim(0);
    }
}

fn du_bytes(root: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-s", "-B1"])
        .arg(root)
        .output()
        .expect("du");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Every file below the 256 shards, as "xx/name".
fn list_files(root: &Path) -> Vec<String> {
    let mut all = Vec::new();
    for b in 0..=255u8 {
        let shard = format!("{b:02x}");
        if let Ok(rd) = std::fs::read_dir(root.join(&shard)) {
            for e in rd.flatten() {
                all.push(format!("{shard}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    all.sort_unstable();
    all
}

/// Removes the bench directory (and stops a daemon) however the run ends.
struct Cleanup {
    dir: PathBuf,
    also: Option<PathBuf>,
    keep: bool,
    daemon: Arc<Mutex<Option<u32>>>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = self.daemon.lock().unwrap().take() {
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        if self.keep {
            eprintln!("kept {}", self.dir.display());
            return;
        }
        eprintln!("removing {}", self.dir.display());
        let _ = Command::new("rm").arg("-rf").arg(&self.dir).status();
        if let Some(also) = &self.also {
            let _ = std::fs::remove_dir(also);
        }
    }
}

// ---------------------------------------------------------------------------------
// Generator

struct Spec {
    action: [u8; 32],
    /// Unscaled output size; 0 = names the shared empty output.
    base_size: u32,
    seed: u64,
    mtime: i64,
}

fn specs(n: usize, newest: i64) -> Vec<Spec> {
    let mut rng = Rng(0xC0FF_EE00 ^ n as u64);
    let span = 29 * DAY as u128; // days 1..30
    (0..n)
        .map(|i| {
            let empty = rng.below(100) < 3;
            let r = rng.below(1000);
            let base_size = if empty {
                0
            } else if r < 600 {
                rng.range(512, 4096)
            } else if r < 900 {
                rng.range(4096, 64 << 10)
            } else if r < 990 {
                rng.range(64 << 10, 1 << 20)
            } else {
                rng.range(1 << 20, 8 << 20)
            } as u32;
            Spec {
                action: rng.hash(),
                base_size,
                seed: rng.next(),
                // Unique whole seconds (span ≥ n), oldest first.
                mtime: newest - DAY - (span - (i as u128 * span / n as u128)) as i64,
            }
        })
        .collect()
}

fn scaled(base: u32, scale: f64) -> u64 {
    if base == 0 {
        0
    } else {
        ((base as f64 * scale) as u64).max(1)
    }
}

fn est_disk(specs: &[Spec], scale: f64) -> u64 {
    let blocks = |n: u64| n.div_ceil(4096) * 4096;
    specs
        .iter()
        .map(|s| 4096 + blocks(scaled(s.base_size, scale)))
        .sum::<u64>()
        + 257 * 4096
}

/// Writes one file; `mtime` None leaves the times the write gave it (as go does).
fn write_file(
    root: &Path,
    hash: &[u8; 32],
    suffix: &str,
    bytes: &[u8],
    mtime: Option<i64>,
) -> PathBuf {
    let p = root
        .join(format!("{:02x}", hash[0]))
        .join(format!("{}-{suffix}", hex(hash)));
    std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    if let Some(mtime) = mtime {
        let t = filetime::FileTime::from_unix_time(mtime, 0);
        filetime::set_file_times(&p, t, t).unwrap();
    }
    p
}

/// Writes one action and its output the way go's `put` does (output first). With
/// `set_mtime`, both files get `mtime` (an old entry); without, they keep the write's.
fn put(
    root: &Path,
    action: [u8; 32],
    content: &[u8],
    mtime: i64,
    nanos: u32,
    set_mtime: bool,
) -> Vec<PathBuf> {
    let mtime_opt = set_mtime.then_some(mtime);
    let mut paths = Vec::new();
    let output: [u8; 32] = Sha256::digest(content).into();
    if !content.is_empty() {
        paths.push(write_file(root, &output, "d", content, mtime_opt));
    }
    let a = Action {
        action,
        output,
        size: content.len() as u64,
        time_ns: mtime * 1_000_000_000 + nanos as i64,
    };
    let text = format_action(&a);
    assert_eq!(text.len(), 175);
    paths.push(write_file(root, &action, "a", text.as_bytes(), mtime_opt));
    paths
}

/// Returns (files, apparent bytes).
fn generate(root: &Path, specs: &[Spec], scale: f64, empty_mtime: i64) -> (u64, u64) {
    std::fs::create_dir_all(root).unwrap();
    for b in 0..=255u8 {
        std::fs::create_dir_all(root.join(format!("{b:02x}"))).unwrap();
    }
    std::fs::write(root.join("README"), README).unwrap();
    let empty: [u8; 32] = Sha256::digest(b"").into();
    assert_eq!(hex(&empty), EMPTY_HEX);
    let p = root.join("e3").join(format!("{EMPTY_HEX}-d"));
    std::fs::write(&p, b"").unwrap();
    let t = filetime::FileTime::from_unix_time(empty_mtime, 0);
    filetime::set_file_times(&p, t, t).unwrap();

    let next = AtomicUsize::new(0);
    let files = AtomicUsize::new(1);
    let bytes = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let from = next.fetch_add(256, Ordering::Relaxed);
                    if from >= specs.len() {
                        break;
                    }
                    for (i, spec) in specs.iter().enumerate().skip(from).take(256) {
                        let size = scaled(spec.base_size, scale) as usize;
                        buf.resize(size, 0);
                        Rng(spec.seed).fill(&mut buf);
                        let written = put(
                            root,
                            spec.action,
                            &buf,
                            spec.mtime,
                            (spec.seed % 1_000_000_000) as u32,
                            true,
                        );
                        files.fetch_add(written.len(), Ordering::Relaxed);
                        bytes.fetch_add(size + 175, Ordering::Relaxed);
                        if (i + 1) % (specs.len() / 10).max(1) == 0 {
                            eprintln!(
                                "  generated {}/{} entries ({:.0} s)",
                                i + 1,
                                specs.len(),
                                started.elapsed().as_secs_f64()
                            );
                        }
                    }
                }
            });
        }
    });
    (
        files.load(Ordering::Relaxed) as u64,
        bytes.load(Ordering::Relaxed) as u64,
    )
}

// ---------------------------------------------------------------------------------
// The library under test

fn env() -> Env {
    // Whatever the process has, but a home that cannot overlap the bench tree.
    Env {
        home: Some(PathBuf::from("/nonexistent-home")),
        ..Env::from_process()
    }
}

fn config_text(root: &Path, socket: &Path, max_size: Option<u64>) -> String {
    let mut t = format!(
        "[daemon]\nsocket = {:?}\nstate_dir = {:?}\nlog_level = \"info\"\n\n[[cache]]\nname = {CACHE_NAME:?}\nkind = \"go-build\"\npath = {:?}\n",
        socket.display().to_string(),
        // Index snapshots stay in the bench dir (as root the default is /var/lib).
        socket.with_file_name("state").display().to_string(),
        root.display().to_string()
    );
    if let Some(m) = max_size {
        t.push_str(&format!("max_size = \"{m}\"\n"));
    }
    t
}

fn open_cache(root: &Path, socket: &Path, max_size: Option<u64>) -> Arc<dyn Cache> {
    let text = config_text(root, socket, max_size);
    let cfg = config::parse(&text, ConfigSource::File("bench.toml".into()), &env())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let c = cfg.caches.into_iter().next().expect("one cache");
    cachewarden::cache::open(c)
}

// ---------------------------------------------------------------------------------
// The daemon over its socket

fn http_get(socket: &Path, path: &str) -> Option<Value> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((len, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    serde_json::from_str(&body).ok()
}

fn cache_status(socket: &Path) -> Option<Value> {
    http_get(socket, &format!("/v1/caches/{CACHE_NAME}"))
}

struct Daemon {
    child: Child,
    socket: PathBuf,
    pid_slot: Arc<Mutex<Option<u32>>>,
}

impl Daemon {
    fn start(
        config_file: &Path,
        socket: &Path,
        log: &Path,
        pid_slot: Arc<Mutex<Option<u32>>>,
    ) -> Daemon {
        let ours = Path::new(env!("CARGO_BIN_EXE_cachewarden"));
        Daemon::start_binary(ours, config_file, socket, log, pid_slot)
    }

    /// The daemon of `binary` (another build's, for `--baseline-bin`).
    fn start_binary(
        binary: &Path,
        config_file: &Path,
        socket: &Path,
        log: &Path,
        pid_slot: Arc<Mutex<Option<u32>>>,
    ) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(binary)
            .arg("daemon")
            .arg("--config")
            .arg(config_file)
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting the daemon");
        *pid_slot.lock().unwrap() = Some(child.id());
        Daemon {
            child,
            socket: socket.to_path_buf(),
            pid_slot,
        }
    }

    /// Waits until the cache's state is `ready`; returns its status then.
    fn wait_ready(&mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            if let Some(v) = cache_status(&self.socket) {
                if v["state"] == "ready" {
                    return v;
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("the daemon exited: {st}");
            }
            assert!(Instant::now() < deadline, "the daemon never became ready");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.pid_slot.lock().unwrap().take();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.pid_slot.lock().unwrap().take();
    }
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // after ")": field 3 (state) is f[0]; utime is field 14, stime field 15.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Context switches (voluntary + involuntary) per thread id: wake-ups.
fn ctx_switches(pid: u32) -> std::collections::HashMap<String, u64> {
    let mut per_thread = std::collections::HashMap::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let f = t.path().join("status");
            let f = f.to_string_lossy();
            per_thread.insert(
                t.file_name().to_string_lossy().into_owned(),
                status_kb(&f, "voluntary_ctxt_switches:")
                    + status_kb(&f, "nonvoluntary_ctxt_switches:"),
            );
        }
    }
    per_thread
}

/// Wake-ups between two readings, counting threads alive at both; and how many
/// threads came or went in between.
fn wakeups(
    a: &std::collections::HashMap<String, u64>,
    b: &std::collections::HashMap<String, u64>,
) -> (u64, usize) {
    let both: u64 = b
        .iter()
        .filter_map(|(t, n)| a.get(t).map(|m| n.saturating_sub(*m)))
        .sum();
    let changed = a.keys().filter(|t| !b.contains_key(*t)).count()
        + b.keys().filter(|t| !a.contains_key(*t)).count();
    (both, changed)
}

fn count_inotify_watches() -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir("/proc/self/fdinfo") {
        for e in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path()) {
                n += s.lines().filter(|l| l.starts_with("inotify wd:")).count();
            }
        }
    }
    n
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// `text` without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One status request, timed; `None` unless answered 200.
fn timed_status(socket: &Path) -> Option<Duration> {
    let t = Instant::now();
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(b"GET /v1/status HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).ok()?;
    answer.starts_with(b"HTTP/1.1 200").then(|| t.elapsed())
}

/// Sequential status requests while `go_on` holds (at least one), for at most `limit`.
fn status_latencies(socket: &Path, limit: Duration, go_on: impl Fn() -> bool) -> Vec<Duration> {
    let start = Instant::now();
    let mut times = Vec::new();
    while times.is_empty() || (go_on() && start.elapsed() < limit) {
        times.extend(timed_status(socket));
        std::thread::sleep(Duration::from_millis(5));
    }
    times.sort();
    times
}

/// 1,000 simultaneous status clients; then a normal one while 500 idle connections
/// (half a request line each) are open.
fn socket_load(socket: &Path, put_out: &mut impl FnMut(&str, Value)) {
    let n = 1000;
    let barrier = Arc::new(std::sync::Barrier::new(n));
    let clients: Vec<_> = (0..n)
        .map(|_| {
            let (socket, barrier) = (socket.to_path_buf(), barrier.clone());
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    barrier.wait();
                    timed_status(&socket)
                })
                .unwrap()
        })
        .collect();
    let outcomes: Vec<Option<Duration>> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let mut answered: Vec<Duration> = outcomes.iter().flatten().copied().collect();
    answered.sort();
    put_out("socket_simultaneous_clients", json!(n));
    put_out("socket_simultaneous_answered_200", json!(answered.len()));
    put_out(
        "socket_simultaneous_p50_ms",
        json!(secs(percentile(&answered, 0.50)) * 1e3),
    );
    put_out(
        "socket_simultaneous_p99_ms",
        json!(secs(percentile(&answered, 0.99)) * 1e3),
    );

    let idle: Vec<UnixStream> = (0..500)
        .filter_map(|_| {
            let mut s = UnixStream::connect(socket).ok()?;
            s.write_all(b"GET /v1/sta").ok()?;
            Some(s)
        })
        .collect();
    put_out("socket_idle_connections", json!(idle.len()));
    let with_idle: Vec<Duration> = (0..20).filter_map(|_| timed_status(socket)).collect();
    let mut sorted = with_idle.clone();
    sorted.sort();
    put_out(
        "socket_with_idle_answered_200_of_20",
        json!(with_idle.len()),
    );
    put_out(
        "socket_with_idle_max_ms",
        json!(secs(*sorted.last().unwrap_or(&Duration::ZERO)) * 1e3),
    );
    drop(idle);
}

/// One first scan and one rescan of the same tree.
struct ScanTimes {
    /// A fresh cache's scan: until its walk was indexed (status served, sizes exact),
    /// and in all (every action read and paired).
    first_walk: Duration,
    first: Duration,
    /// A scan of the cache just scanned: reads only actions whose mtime moved.
    rescan: Duration,
}

fn scan_times(root: &Path, socket: &Path, scanned: &Arc<dyn Cache>) -> ScanTimes {
    scan_times_with(root, socket, scanned, &|| {})
}

/// [`scan_times`], calling `before` (e.g. drop the page cache) before each scan.
fn scan_times_with(
    root: &Path,
    socket: &Path,
    scanned: &Arc<dyn Cache>,
    before: &dyn Fn(),
) -> ScanTimes {
    let fresh = open_cache(root, socket, None);
    before();
    let (first, record) = timed(|| fresh.scan(now()));
    drop(fresh);
    before();
    let (rescan, again) = timed(|| scanned.scan(now()));
    assert_eq!(record.entries, again.entries);
    ScanTimes {
        first_walk: Duration::from_millis(record.walk_ms),
        first,
        rescan,
    }
}

fn put_scan_times(
    put_out: &mut dyn FnMut(&str, Value),
    how: &str,
    scans: Vec<ScanTimes>,
    du: Vec<Duration>,
) {
    let list = |ds: &[Duration]| json!(ds.iter().map(|d| secs(*d)).collect::<Vec<_>>());
    let du_median = median(du.clone());
    put_out(&format!("du_{how}_secs"), list(&du));
    put_out(&format!("du_{how}_median_secs"), json!(secs(du_median)));
    for (what, pick) in [
        (
            "first_walk",
            (|s: &ScanTimes| s.first_walk) as fn(&ScanTimes) -> Duration,
        ),
        ("first", |s| s.first),
        ("rescan", |s| s.rescan),
    ] {
        let ds: Vec<Duration> = scans.iter().map(pick).collect();
        let m = median(ds.clone());
        put_out(&format!("scan_{how}_{what}_secs"), list(&ds));
        put_out(&format!("scan_{how}_{what}_median_secs"), json!(secs(m)));
        put_out(
            &format!("scan_{how}_{what}_ratio"),
            json!(secs(m) / secs(du_median)),
        );
    }
}

/// Index memory, in a process of its own: the generator's multi-MiB buffers raise
/// glibc's dynamic mmap/trim thresholds for the rest of a process, after which
/// `malloc_trim` no longer returns the scan threads' arenas, so measuring in the
/// generating process overstates what a daemon keeps. Prints one JSON object.
///
/// With `warm_up`, a 16-entry cache is scanned and verified first, so that the code
/// pages and per-process buffers a first scan faults in are not counted per entry.
fn measure_index(root: &Path, socket: &Path, entries: &str, warm_up: bool) {
    cachewarden::parallel::share_allocator_arenas(); // as the daemon's main() does
    let n: f64 = entries.parse().unwrap();
    if warm_up {
        let tiny = root.with_file_name("warm-up-gocache");
        let mut rng = Rng(99);
        for shard in 0..=255u8 {
            std::fs::create_dir_all(tiny.join(format!("{shard:02x}"))).unwrap();
        }
        for i in 0..16u8 {
            put(&tiny, rng.hash(), &[i; 1000], now() - 86_400, 0, true);
        }
        let warm = open_cache(&tiny, socket, None);
        warm.scan(now());
        warm.verify(false, now());
        drop(warm);
        std::fs::remove_dir_all(&tiny).unwrap();
    }
    let cache = open_cache(root, socket, None);
    trim();
    let before = vm_rss();
    let _ = std::fs::write("/proc/self/clear_refs", "5"); // resets VmHWM
    let rec = cache.scan(now());
    let peak = status_kb("/proc/self/status", "VmHWM:") * 1024;
    trim();
    let after_scan = vm_rss();
    let r = cache.verify(false, now());
    assert!(r.problems.is_empty());
    trim();
    let after_verify = vm_rss();
    assert_eq!(rec.entries as f64, n);
    println!(
        "{}",
        json!({
            "fresh_rss_before_bytes": before,
            "fresh_rss_after_scan_bytes": after_scan,
            "fresh_rss_after_verify_bytes": after_verify,
            "index_bytes_per_entry": (after_scan as f64 - before as f64) / n,
            "scan_peak_rss_growth_bytes_per_entry": (peak as f64 - before as f64) / n,
            "verify_rss_growth_bytes_per_entry": (after_verify as f64 - after_scan as f64) / n,
        })
    );
}

// ---------------------------------------------------------------------------------

fn main() {
    // The memory measurement runs in a fresh process (see `measure_index`).
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|a| a == "--profile-rescans") {
        // For `perf record`: one first scan, then rescans of a kept tree (`--keep`).
        let (root, socket) = (Path::new(&argv[i + 1]), Path::new(&argv[i + 2]));
        let cache = open_cache(root, socket, None);
        cache.scan(now());
        for _ in 0..argv[i + 3].parse().unwrap() {
            let (t, _) = timed(|| cache.scan(now()));
            eprintln!("rescan {:.3} s", secs(t));
        }
        return;
    }
    if let Some(i) = argv.iter().position(|a| a == "--measure-index") {
        measure_index(
            Path::new(&argv[i + 1]),
            Path::new(&argv[i + 2]),
            &argv[i + 3],
            argv.iter().any(|a| a == "--warm-up"),
        );
        return;
    }
    let args = parse_args();
    let n = args.entries;
    let on = |section: &str| {
        args.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x == section))
    };
    let mut out = serde_json::Map::new();
    let mut put_out = |k: &str, v: Value| {
        println!("{k}: {v}");
        out.insert(k.to_string(), v);
    };

    // Where: the same filesystem as /work, never a tmpfs.
    let (base, created_base) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = std::env::temp_dir();
            if is_tmpfs(&t) {
                let d = PathBuf::from("/work/bench-tmp");
                let created = (!d.exists()).then(|| d.clone());
                (d, created)
            } else {
                (t, None)
            }
        }
    };
    std::fs::create_dir_all(&base).unwrap();
    assert!(!is_tmpfs(&base), "{} is a tmpfs: use --dir", base.display());
    let work = base.join(format!("cachewarden-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let daemon_pid = Arc::new(Mutex::new(None));
    let _cleanup = Cleanup {
        dir: work.clone(),
        also: created_base,
        keep: args.keep,
        daemon: daemon_pid.clone(),
    };
    let root = work.join("gocache");
    let copy = work.join("gocache-copy");
    let socket = work.join("run-cachewarden").join("cw.sock");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    put_out("entries", json!(n));
    put_out("dir", json!(work.display().to_string()));
    put_out("fs_type", json!(fs_type(&work)));
    put_out("cores", json!(threads));
    put_out(
        "kernel",
        json!(std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()),
    );
    put_out(
        "ram_bytes",
        json!(status_kb("/proc/meminfo", "MemTotal:") * 1024),
    );

    // 1. Generate.
    let free = cachewarden::fsutil::disk_space(&work)
        .unwrap()
        .available_bytes;
    let budget = args.budget.unwrap_or((free / 4).min(14 << 30));
    let newest = now();
    let specs = specs(n, newest);
    let mut scale = 1.0;
    if est_disk(&specs, 1.0) > budget {
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..50 {
            let mid = (lo + hi) / 2.0;
            if est_disk(&specs, mid) > budget {
                hi = mid
            } else {
                lo = mid
            }
        }
        scale = lo;
    }
    assert!(
        est_disk(&specs, scale) <= budget,
        "even the smallest outputs do not fit the budget of {budget} bytes"
    );
    put_out("free_bytes_before", json!(free));
    put_out("budget_bytes", json!(budget));
    put_out("size_scale", json!(scale));
    let empties = specs.iter().filter(|s| s.base_size == 0).count();
    put_out("actions_naming_empty_output", json!(empties));
    eprintln!(
        "generating {n} entries in {} (size scale {scale:.4})",
        root.display()
    );
    let (gen_time, (files, apparent)) = timed(|| generate(&root, &specs, scale, newest - DAY + 60));
    drop(specs);
    sync();
    put_out("generate_secs", json!(secs(gen_time)));
    put_out("files", json!(files));
    put_out("apparent_bytes", json!(apparent));
    let du_total = du_bytes(&root);
    put_out("du_bytes", json!(du_total));
    // What du counts that is no entry: the root, the 256 shard directories, the README.
    let blocks = |p: &Path| std::fs::symlink_metadata(p).map_or(0, |m| m.blocks() * 512);
    let non_entries: u64 = blocks(&root)
        + blocks(&root.join("README"))
        + (0..=255u8)
            .map(|b| blocks(&root.join(format!("{b:02x}"))))
            .sum::<u64>();
    put_out("du_non_entry_bytes", json!(non_entries));

    // 2+3. First scan, with the memory it leaves behind.
    trim();
    let cache = open_cache(&root, &socket, None);
    trim();
    let rss_before = vm_rss();
    let _ = std::fs::write("/proc/self/clear_refs", "5"); // resets VmHWM
    let (first_time, first) = timed(|| cache.scan(now()));
    let peak = status_kb("/proc/self/status", "VmHWM:") * 1024;
    trim();
    let rss_after = vm_rss();
    assert_eq!(first.entries, n as u64, "every generated pair is one entry");
    assert_eq!(first.errors, 0);
    put_out("scan_first_secs", json!(secs(first_time)));
    put_out("index_entries", json!(first.entries));
    put_out("index_disk_bytes", json!(first.disk_bytes));
    put_out(
        "index_vs_du_bytes",
        json!(first.disk_bytes as i64 - du_total as i64),
    );
    put_out(
        "index_vs_du_less_non_entries_bytes",
        json!(first.disk_bytes as i64 - (du_total - non_entries) as i64),
    );
    put_out("rss_before_bytes", json!(rss_before));
    put_out("rss_after_bytes", json!(rss_after));
    put_out(
        "index_bytes_per_entry_in_bench_process",
        json!((rss_after as f64 - rss_before as f64) / n as f64),
    );
    put_out(
        "scan_peak_rss_growth_bytes_per_entry_in_bench_process",
        json!((peak as f64 - rss_before as f64) / n as f64),
    );
    // The numbers that count: a fresh process, as the daemon is; once as is, once
    // after a warm-up scan of a tiny cache (fixed costs not charged per entry).
    for (warm_up, suffix) in [(false, ""), (true, "_after_warm_up")] {
        let mut measure = Command::new(std::env::current_exe().unwrap());
        measure
            .arg("--measure-index")
            .arg(&root)
            .arg(&socket)
            .arg(n.to_string());
        if warm_up {
            measure.arg("--warm-up");
        }
        let measured = measure
            .stderr(Stdio::inherit())
            .output()
            .expect("running the memory measurement");
        assert!(measured.status.success(), "the memory measurement failed");
        let measured: Value = serde_json::from_slice(&measured.stdout).expect("its JSON");
        for (k, v) in measured.as_object().unwrap() {
            put_out(&format!("{k}{suffix}"), v.clone());
        }
    }
    let scanned_disk = first.disk_bytes;

    // The in-memory side of eviction alone: build an index of n ids, remove the half
    // that eviction would (oldest first, which is random order for the index).
    {
        use cachewarden::index::Index;
        use cachewarden::kinds::go_build::{GoId, Role};
        use cachewarden::kinds::EntryMeta;
        let mut rng = Rng(7);
        let ids: Vec<GoId> = (0..n)
            .map(|_| GoId {
                hash: rng.hash(),
                role: Role::Action,
            })
            .collect();
        let meta = |i: usize| EntryMeta {
            disk_bytes: 8192,
            apparent_bytes: 5000,
            last_use: 1_700_000_000 + i as i64,
            aux: i as u64,
        };
        let (build, mut index) =
            timed(|| Index::from_entries(ids.iter().enumerate().map(|(i, id)| (*id, meta(i)))));
        let (remove, ()) = timed(|| {
            for id in &ids[..n / 2] {
                index.remove(id);
            }
        });
        assert_eq!(index.len(), n - n / 2);
        put_out("index_build_secs", json!(secs(build)));
        // One `remove` per entry (what eviction did before `remove_many`).
        put_out("index_remove_half_secs", json!(secs(remove)));
        let mut index = Index::from_entries(ids.iter().enumerate().map(|(i, id)| (*id, meta(i))));
        let (many, ()) = timed(|| index.remove_many(&ids[..n / 2]));
        assert_eq!(index.len(), n - n / 2);
        // What eviction does now.
        put_out("index_remove_many_half_secs", json!(secs(many)));
    }

    // 2. Warm scans: a first scan (a fresh cache: the walk, then every action read
    // to pair it) and a rescan (the cache already indexed: what the daily full rescan
    // and an overflow rescan do).
    if on("scan") {
        let io0 = pgpgin_kib();
        let scans: Vec<ScanTimes> = (0..3).map(|_| scan_times(&root, &socket, &cache)).collect();
        let io1 = pgpgin_kib();
        let du: Vec<Duration> = (0..3).map(|_| timed(|| du_bytes(&root)).0).collect();
        put_out("scan_warm_disk_read_kib", json!(io1 - io0));
        put_out("du_warm_disk_read_kib", json!(pgpgin_kib() - io1));
        put_scan_times(&mut put_out, "warm", scans, du);
    }

    // 2b. Restart: a snapshot of the index, then a new cache restores from it with the
    // cache unchanged (what a daemon restart does), vs the full scan it replaces.
    if on("restart") {
        let snap = work.join("bench.snapshot"); // removed with the bench dir on panic too
        let full: Vec<Duration> = (0..3).map(|_| timed(|| cache.scan(now())).0).collect();
        assert!(cache.save_snapshot(&snap).unwrap());
        let mut restored = Vec::new();
        for _ in 0..3 {
            let fresh = open_cache(&root, &socket, None);
            let (t, record) = timed(|| fresh.restore(&snap, now()));
            let record = record.expect("the snapshot restores");
            assert_eq!(record.partitions_rescanned, Some(0));
            assert_eq!(record.entries as usize, n);
            restored.push(t);
        }
        let _ = std::fs::remove_file(&snap);
        let (f, r) = (median(full), median(restored));
        put_out("restart_full_scan_median_secs", json!(secs(f)));
        put_out("restart_restore_median_secs", json!(secs(r)));
        put_out("restart_ratio", json!(secs(r) / secs(f)));
    }

    // 2. Cold scans.
    let mut cold_ok = !args.skip_cold;
    if cold_ok {
        if let Err(e) = drop_caches() {
            put_out("drop_caches_error", json!(e));
            cold_ok = false;
        }
    }
    put_out("cold_measured", json!(cold_ok));
    if cold_ok && on("cold") {
        let mut scans = Vec::new();
        let mut du = Vec::new();
        for _ in 0..3 {
            scans.push(scan_times_with(&root, &socket, &cache, &|| {
                drop_caches().unwrap()
            }));
            drop_caches().unwrap();
            du.push(timed(|| du_bytes(&root)).0);
        }
        put_scan_times(&mut put_out, "cold", scans, du);
    }

    // 4. Watch setup, in-process.
    if on("watch") {
        let watch_once = || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (tx, _rx) = tokio::sync::mpsc::channel(256);
                let token = tokio_util::sync::CancellationToken::new();
                let dirs = cache.watch_dirs();
                let t = Instant::now();
                let handle = cachewarden::watch::start(&root, &dirs, tx, token.clone())
                    .expect("watch::start");
                let d = t.elapsed();
                let watches = count_inotify_watches();
                token.cancel();
                let _ = handle.await;
                (d, watches)
            })
        };
        if cold_ok {
            drop_caches().unwrap();
            let (d, w) = watch_once();
            put_out("watch_setup_cold_ms", json!(secs(d) * 1e3));
            put_out("watches", json!(w));
        }
        let warm: Vec<(Duration, usize)> = (0..5).map(|_| watch_once()).collect();
        put_out("watches", json!(warm[0].1));
        put_out(
            "watch_setup_warm_median_ms",
            json!(secs(median(warm.iter().map(|w| w.0).collect())) * 1e3),
        );
    }

    // 5. Integrity sweep, warm: everything verify reads (actions too) is read first.
    if on("verify") {
        let outputs = quote(&root);
        sh(&format!(
            "find {outputs} -type f -print0 | xargs -0 cat > /dev/null"
        ));
        let io0 = pgpgin_kib();
        let sha = sh(&format!(
            "find {outputs} -name '*-d' -type f -print0 | xargs -0 sha256sum > /dev/null"
        ));
        let io1 = pgpgin_kib();
        let (v1, r1) = timed(|| cache.verify(false, now()));
        let io2 = pgpgin_kib();
        let (v2, r2) = timed(|| cache.verify(false, now()));
        put_out("sha256sum_disk_read_kib", json!(io1 - io0));
        put_out("verify_first_disk_read_kib", json!(io2 - io1));
        assert!(
            r1.problems.is_empty(),
            "{:?}",
            &r1.problems[..r1.problems.len().min(3)]
        );
        assert!(r2.problems.is_empty());
        put_out("sha256sum_secs", json!(secs(sha)));
        put_out("verify_first_secs", json!(secs(v1)));
        put_out("verify_second_secs", json!(secs(v2)));
        put_out("verify_checked", json!(r1.checked));
        put_out("verify_first_ratio", json!(secs(v1) / secs(sha)));
        put_out("verify_second_ratio", json!(secs(v2) / secs(sha)));
        trim();
        put_out("rss_after_verify_bytes_in_bench_process", json!(vm_rss()));
    }
    drop(cache);

    // 10. The CLI's one-shot `scan` (issue #17 §5): the binary, from process start to
    // its JSON, against `du -s`, warm; the scan's peak RSS from the kernel's account.
    if on("cliscan") {
        let cfg = work.join("cliscan.toml");
        std::fs::write(&cfg, config_text(&root, &socket, None)).unwrap();
        let scan_once = || -> (Duration, u64) {
            let (t, out) = timed(|| {
                Command::new(env!("CARGO_BIN_EXE_cachewarden"))
                    .arg("--config")
                    .arg(&cfg)
                    .args(["scan", "--json"])
                    .output()
                    .unwrap()
            });
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            (t, report[0]["disk_bytes"].as_u64().unwrap_or(0))
        };
        let (_, walked_disk) = scan_once(); // warm the page cache, as du's first run would
        put_out("cli_scan_disk_bytes", json!(walked_disk));
        put_out(
            "cli_scan_disk_bytes_vs_full_scan",
            json!(walked_disk as i64 - scanned_disk as i64),
        );
        let scans: Vec<Duration> = (0..3).map(|_| scan_once().0).collect();
        let peak_kib = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
            usage.ru_maxrss as u64
        };
        let dus: Vec<Duration> = (0..3).map(|_| timed(|| du_bytes(&root)).0).collect();
        let (scan_t, du_t) = (median(scans), median(dus));
        put_out("cli_scan_warm_median_secs", json!(secs(scan_t)));
        put_out("cli_scan_du_warm_median_secs", json!(secs(du_t)));
        put_out(
            "cli_scan_vs_du_warm_ratio",
            json!(secs(scan_t) / secs(du_t)),
        );
        put_out("cli_scan_peak_rss_bytes", json!(peak_kib * 1024));
    }

    // 6. Event → status latency, through the daemon.
    let config_file = work.join("daemon.toml");
    std::fs::write(&config_file, config_text(&root, &socket, None)).unwrap();
    let log = work.join("daemon.log");
    // With `--baseline-bin`, measured again with that build's daemon on the same tree
    // (its keys prefixed `baseline_`): the ratio of two builds in one run.
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_cachewarden"));
    let daemons =
        std::iter::once(("", ours)).chain(args.baseline_bin.clone().map(|b| ("baseline_", b)));
    for (prefix, binary) in daemons.filter(|_| on("latency")) {
        let mut put_out = |key: &str, value: Value| put_out(&format!("{prefix}{key}"), value);
        let mut d = Daemon::start_binary(&binary, &config_file, &socket, &log, daemon_pid.clone());
        let t = Instant::now();
        let ready = d.wait_ready();
        put_out("daemon_ready_secs", json!(secs(t.elapsed())));
        put_out(
            "daemon_rss_ready_bytes",
            json!(status_kb(&format!("/proc/{}/status", d.pid()), "VmRSS:") * 1024),
        );
        let base_entries = ready["entries"].as_u64().unwrap();
        assert_eq!(base_entries, n as u64);
        let mut rng = Rng(0xFEED);
        let mut written = Vec::new();
        let mut delays = Vec::new();
        let poll = Duration::from_millis(1);
        let mut timeouts = 0;
        for k in 0..args.events {
            let mut content = vec![0u8; rng.range(512, 4096) as usize];
            rng.fill(&mut content);
            let paths = put(&root, rng.hash(), &content, now(), 0, false);
            let t0 = Instant::now();
            let want = base_entries + k as u64 + 1;
            loop {
                let e = cache_status(&socket).and_then(|v| v["entries"].as_u64());
                if e.is_some_and(|e| e >= want) {
                    break;
                }
                if t0.elapsed() > Duration::from_secs(10) {
                    timeouts += 1;
                    break;
                }
                std::thread::sleep(poll);
            }
            delays.push(t0.elapsed());
            written.extend(paths);
            std::thread::sleep(Duration::from_millis(20));
        }
        delays.sort();
        put_out("event_count", json!(delays.len()));
        put_out("event_timeouts", json!(timeouts));
        put_out("event_p50_ms", json!(secs(percentile(&delays, 0.50)) * 1e3));
        put_out("event_p99_ms", json!(secs(percentile(&delays, 0.99)) * 1e3));
        put_out("event_max_ms", json!(secs(*delays.last().unwrap()) * 1e3));
        put_out("event_min_ms", json!(secs(delays[0]) * 1e3));
        let after = cache_status(&socket).unwrap();
        put_out("daemon_errors_total", after["errors_total"].clone());
        d.stop();
        for p in &written {
            std::fs::remove_file(p).unwrap();
        }
    }

    // 7. Idle CPU of a fresh daemon once it is ready.
    if on("idle") {
        let mut d = Daemon::start(&config_file, &socket, &log, daemon_pid.clone());
        d.wait_ready();
        let pid = d.pid();
        let (c0, x0) = (cpu_secs(pid), ctx_switches(pid));
        std::thread::sleep(Duration::from_secs(5));
        let (c5, x5) = (cpu_secs(pid), ctx_switches(pid));
        std::thread::sleep(Duration::from_secs(args.idle_secs.saturating_sub(5)));
        let (c1, x1) = (cpu_secs(pid), ctx_switches(pid));
        put_out("idle_secs", json!(args.idle_secs));
        put_out("idle_cpu_secs", json!(c1 - c0));
        put_out("idle_cpu_secs_first_5s", json!(c5 - c0));
        put_out("idle_cpu_secs_after_5s", json!(c1 - c5));
        let (w, t) = wakeups(&x0, &x1);
        put_out("idle_ctx_switches", json!(w));
        put_out("idle_threads_started_or_ended", json!(t));
        let (w, t) = wakeups(&x5, &x1);
        put_out("idle_ctx_switches_after_5s", json!(w));
        put_out("idle_threads_started_or_ended_after_5s", json!(t));
        d.stop();
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        put_out(
            "daemon_log_warnings",
            json!(log_text
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .count()),
        );
        for l in log_text
            .lines()
            .filter(|l| l.contains("scanned") || l.contains("WARN") || l.contains("ERROR"))
            .take(6)
        {
            eprintln!("  daemon: {l}");
        }
    }

    // 9. The socket under load (issue #15), on a copy the daemon then evicts to half.
    if on("socket") {
        let socket_root = work.join("gocache-socket");
        let _ = std::fs::remove_dir_all(&socket_root);
        sh(&format!("cp -a {} {}", quote(&root), quote(&socket_root)));
        let socket_config = work.join("socket.toml");
        let debug_config = |max_size: Option<u64>| {
            config_text(&socket_root, &socket, max_size).replace("\"info\"", "\"debug\"")
        };
        std::fs::write(&socket_config, debug_config(None)).unwrap();
        let socket_log = work.join("socket-daemon.log");
        let mut d = Daemon::start(&socket_config, &socket, &socket_log, daemon_pid.clone());
        d.wait_ready();
        socket_load(&socket, &mut put_out);
        // Inside the daemon: the request timer it logs at debug level.
        let served_us: Vec<u64> =
            strip_ansi(&std::fs::read_to_string(&socket_log).unwrap_or_default())
                .lines()
                .filter(|l| {
                    l.contains("path=/v1/status")
                        || l.contains(&format!("path=/v1/caches/{CACHE_NAME} "))
                })
                .filter_map(|l| {
                    l.rsplit_once("us=")?
                        .1
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })
                .collect();
        let mut served: Vec<Duration> = served_us
            .iter()
            .map(|&u| Duration::from_micros(u))
            .collect();
        served.sort();
        put_out("socket_status_in_daemon_count", json!(served.len()));
        put_out(
            "socket_status_in_daemon_p50_ms",
            json!(secs(percentile(&served, 0.50)) * 1e3),
        );
        put_out(
            "socket_status_in_daemon_p99_ms",
            json!(secs(percentile(&served, 0.99)) * 1e3),
        );

        // Status while an eviction of half the cache runs (SIGHUP with max_size = half).
        let before = status_latencies(&socket, Duration::from_secs(3), || true);
        std::fs::write(&socket_config, debug_config(Some(scanned_disk / 2))).unwrap();
        unsafe {
            libc::kill(d.pid() as i32, libc::SIGHUP);
        }
        let evicting = status_latencies(&socket, Duration::from_secs(600), || {
            cache_status(&socket)
                .is_none_or(|v| v["disk_bytes"].as_u64().unwrap_or(0) > scanned_disk / 2)
        });
        put_out(
            "socket_status_idle_p99_ms",
            json!(secs(percentile(&before, 0.99)) * 1e3),
        );
        put_out("socket_status_evicting_count", json!(evicting.len()));
        put_out(
            "socket_status_evicting_p50_ms",
            json!(secs(percentile(&evicting, 0.50)) * 1e3),
        );
        put_out(
            "socket_status_evicting_p99_ms",
            json!(secs(percentile(&evicting, 0.99)) * 1e3),
        );
        put_out(
            "socket_status_p99_evicting_vs_idle_ratio",
            json!(secs(percentile(&evicting, 0.99)) / secs(percentile(&before, 0.99))),
        );
        d.stop();
        let _ = std::fs::remove_dir_all(&socket_root);
    }

    // 8. Eviction of half the cache: ours, then rm -f of the same files, then find -delete.
    if on("evict") {
        let half = scanned_disk / 2;
        put_out("evict_max_size_bytes", json!(half));
        let fresh_copy = |what: &str| {
            eprintln!("copying the tree for {what}");
            let _ = std::fs::remove_dir_all(&copy);
            sh(&format!("cp -a {} {}", quote(&root), quote(&copy)));
            sync();
            if cold_ok {
                drop_caches().unwrap();
            }
        };
        let all_files = list_files(&root);

        // Ours.
        fresh_copy("cachewarden");
        let cache = open_cache(&copy, &socket, Some(half));
        cache.scan(now()); // the index the daemon would already hold; warms metadata
        let (ours_time, report) = timed(|| cache.evict(false, now()));
        drop(cache);
        let survivors = list_files(&copy);
        let kept: HashSet<&str> = survivors.iter().map(String::as_str).collect();
        let removed: Vec<&str> = all_files
            .iter()
            .map(String::as_str)
            .filter(|f| !kept.contains(f))
            .collect();
        assert!(
            report.skipped.is_empty(),
            "{:?}",
            &report.skipped[..report.skipped.len().min(3)]
        );
        put_out("evict_entries", json!(report.removed_entries));
        put_out("evict_freed_bytes", json!(report.freed_bytes));
        put_out("evict_files", json!(removed.len()));
        put_out("evict_secs", json!(secs(ours_time)));
        put_out(
            "evict_removal_phase_secs",
            json!(report.duration_ms as f64 / 1e3),
        );
        put_out(
            "evict_files_per_sec",
            json!(removed.len() as f64 / secs(ours_time)),
        );
        put_out("evict_du_after_bytes", json!(du_bytes(&copy)));
        // The cutoff for find: the newest mtime among removed files.
        let cutoff = removed
            .iter()
            .map(|f| std::fs::metadata(root.join(f)).unwrap().mtime())
            .max()
            .unwrap();
        let survivors_not_newer = survivors
            .iter()
            .filter(|f| std::fs::metadata(root.join(f.as_str())).unwrap().mtime() <= cutoff)
            .count();
        put_out(
            "evict_survivors_at_or_before_cutoff",
            json!(survivors_not_newer),
        );

        // rm -f of exactly those files.
        fresh_copy("rm");
        let list = work.join("removed.list");
        {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&list).unwrap());
            for r in &removed {
                f.write_all(copy.join(r).as_os_str().as_encoded_bytes())
                    .unwrap();
                f.write_all(b"\0").unwrap();
            }
        }
        du_bytes(&copy); // warm metadata like ours' scan did
        let rm_time = sh(&format!("xargs -0 rm -f < {}", quote(&list)));
        let rm_left = list_files(&copy);
        assert_eq!(rm_left, survivors, "rm removed a different set");
        put_out("rm_secs", json!(secs(rm_time)));
        put_out(
            "rm_files_per_sec",
            json!(removed.len() as f64 / secs(rm_time)),
        );
        put_out("evict_vs_rm_ratio", json!(secs(ours_time) / secs(rm_time)));
        let _ = std::fs::remove_dir_all(&copy);
        sync();

        // find -delete, on the original tree (last use of it).
        if cold_ok {
            drop_caches().unwrap();
        }
        du_bytes(&root);
        let find_time = sh(&format!(
            "find {} -type f -name '*-[ad]' ! -newermt @{cutoff} -delete",
            quote(&root)
        ));
        let find_left = list_files(&root);
        put_out("find_same_set", json!(find_left == survivors));
        put_out("find_files", json!(all_files.len() - find_left.len()));
        put_out("find_secs", json!(secs(find_time)));
        put_out(
            "find_files_per_sec",
            json!((all_files.len() - find_left.len()) as f64 / secs(find_time)),
        );
        put_out(
            "evict_vs_find_ratio",
            json!(secs(ours_time) / secs(find_time)),
        );
    }

    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&Value::Object(out.clone())).unwrap(),
        )
        .unwrap();
    }
}
