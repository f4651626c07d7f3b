//! What one local user can do to a daemon that runs as root over everyone's caches
//! (issue #29, found from outside): each attack is made by a real second uid
//! (`nobody`, through `setpriv`) against the daemon as root, and each test failed on
//! d7f03dc.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// Runs a Python script as `nobody` with `args` (Python: the attacker's tool here,
/// making 100,000 nested directories in a second where a shell takes minutes).
pub fn python_as_nobody(script: &str, args: &[&str]) {
    let ok = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["/usr/bin/python3", "-c", script])
        .args(args)
        .status()
        .expect("setpriv and python3 are installed (scripts/test installs them)")
        .success();
    assert!(ok, "as nobody: python3 -c {script}");
}

/// `levels` nested directories `d` below the directory at argv[1], a file at the bottom.
const DEEP_CHAIN: &str = r#"
import os, sys
os.chdir(sys.argv[1])
for _ in range(int(sys.argv[2])):
    os.mkdir("d")
    os.chdir("d")
open("bottom.go", "w").write("package deep\n")
"#;

const LEVELS: &str = "100000";

/// Removes a deep tree before its temp dir goes (`std::fs::remove_dir_all` recurses:
/// the test's own stack would overflow), with the daemon's loop.
struct DeepTree(std::path::PathBuf);

impl Drop for DeepTree {
    fn drop(&mut self) {
        let parent = std::fs::File::open(self.0.parent().unwrap()).unwrap();
        let _ = cachewarden::fsutil::remove_tree_at(&parent, self.0.file_name().unwrap());
    }
}

/// A module cache owned by nobody with one version, example.com/deep@v1.0.0, whose
/// extracted tree is `levels` directories deep (with its download files, so the daemon
/// takes it for a real version).
fn module_cache_with_a_deep_version(dir: &Path, levels: &str) -> std::path::PathBuf {
    let modcache = dir.join("mod");
    std::fs::create_dir(&modcache).unwrap();
    nix::unistd::chown(&modcache, Some(65534.into()), Some(65534.into())).unwrap();
    python_as_nobody(
        r#"
import os, sys
root = sys.argv[1]
v = os.path.join(root, "cache/download/example.com/deep/@v")
os.makedirs(v)
for ext, data in [("info", '{"Version":"v1.0.0"}'), ("mod", "module example.com/deep\n"),
                  ("zip", "PK\x05\x06" + "\0" * 18), ("ziphash", "h1:" + "A" * 43 + "=")]:
    open(os.path.join(v, "v1.0.0." + ext), "w").write(data)
tree = os.path.join(root, "example.com/deep@v1.0.0")
os.makedirs(tree)
open(os.path.join(tree, "go.mod"), "w").write("module example.com/deep\n")
"#,
        &[modcache.to_str().unwrap()],
    );
    python_as_nobody(
        DEEP_CHAIN,
        &[
            modcache.join("example.com/deep@v1.0.0").to_str().unwrap(),
            levels,
        ],
    );
    modcache
}

/// A 100,000-level directory in a module version's tree: the root daemon scans,
/// verifies and removes it in loops, not recursion (at d7f03dc: stack overflow, abort,
/// and the same on every restart).
#[test]
fn a_hundred_thousand_levels_in_a_module_tree_are_scanned_verified_and_removed() {
    if !running_as_root("a_hundred_thousand_levels_in_a_module_tree") {
        return;
    }
    let tmp = open_tempdir();
    let modcache = module_cache_with_a_deep_version(tmp.path(), LEVELS);
    let _deep = DeepTree(modcache.clone());
    let socket = tmp.path().join("run/cw.sock");
    let config = format!(
        "[daemon]\nsocket = \"{}\"\nlog_level = \"debug\"\n\n[[cache]]\nname = \"gm\"\nkind = \"go-mod\"\npath = \"{}\"\nmin_age = \"1s\"\nunsafe_allow_short_min_age = true\n",
        socket.display(),
        modcache.display()
    );
    let daemon = Daemon::start(tmp.path(), &config);
    let status = daemon.cache_status("gm");
    // Its tree, its zip, its .info and .mod: three entries, one per tier.
    assert_eq!(status["entries"], 3, "{status}");
    assert!(
        status["disk_bytes"].as_u64().unwrap() > 100_000 * 512,
        "the deep tree is counted: {status}"
    );

    let (code, verified) = daemon.post("/v1/caches/gm/verify", "");
    assert_eq!(code, 200, "{verified}");
    assert!(
        verified["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["path"] == "example.com/deep@v1.0.0"),
        "the tree was hashed, and does not match its (made-up) ziphash: {verified}"
    );

    std::thread::sleep(Duration::from_secs(2));
    // Every level costs each syscall below it on some machines (this sandbox: 25 s to
    // remove the tree): wait for the answer as long as it takes.
    let request = "POST /v1/caches/gm/evict?entry=example.com/deep@v1.0.0 HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let (code, report) = raw_within(&daemon.socket, request.as_bytes(), Duration::from_secs(600));
    assert_eq!(code, 200, "{report}");
    assert!(
        !modcache.join("example.com/deep@v1.0.0").exists(),
        "the tree is gone: {report}"
    );
    assert_eq!(daemon.cache_status("gm")["state"], "ready");
    daemon.assert_index_is_fresh_scan("gm");
}

/// A group of three users' caches over its `group_max_size`. The third user sets every
/// file's times to 2100 and makes 50 hard links to each of their files from outside
/// their cache. At d7f03dc the daemon counted their cache at a 51st of its size, took
/// their entries for the newest for ever, and evicted only the others'. Now their
/// cache counts whole, the times count as now (and the log says so), and under the
/// default fair share the cache furthest over an equal share gives first: theirs.
#[test]
fn future_times_and_outside_hard_links_do_not_shift_a_group_limit_onto_others() {
    if !running_as_root("future_times_and_outside_hard_links") {
        return;
    }
    let tmp = open_tempdir();
    const KIB40: usize = 40 * 1024;
    // Caches of `daemon` (uid 1), `bin` (uid 2) and `nobody`, found by a glob.
    let honest = [(1u32, "d1", 30), (2, "d2", 10)];
    for (uid, dir, days) in honest {
        let cache = tmp.path().join(dir).join("cache");
        for i in 0..20 {
            file_aged(&cache.join(format!("f{i}")), KIB40, DAY * days);
        }
        chown_all(&tmp.path().join(dir), uid);
    }
    let toucher = tmp.path().join("d3");
    std::fs::create_dir_all(toucher.join("cache")).unwrap();
    std::fs::create_dir_all(toucher.join("links")).unwrap();
    chown_all(&toucher, 65534);
    python_as_nobody(
        r#"
import os, sys
d = sys.argv[1]
for i in range(60):
    f = os.path.join(d, "cache", "f%d" % i)
    open(f, "wb").write(b"\7" * 40 * 1024)
    for j in range(50):
        os.link(f, os.path.join(d, "links", "f%d-%d" % (i, j)))
    t = 4102444800  # 2100-01-01
    os.utime(f, (t, t))
"#,
        &[toucher.to_str().unwrap()],
    );
    let socket = tmp.path().join("run/cw.sock");
    let config = |limit: &str| {
        format!(
            "[daemon]\nsocket = \"{}\"\nlog_level = \"debug\"\n\n[[cache]]\nname = \"builds\"\nkind = \"dir\"\npath = \"{}/*/cache\"\nmin_age = \"1s\"\nunsafe_allow_short_min_age = true\ngroup_max_size = \"{limit}\"\n",
            socket.display(),
            tmp.path().display()
        )
    };
    let daemon = Daemon::start(tmp.path(), &config("1 TB"));
    let toucher_cache = "builds@nobody";
    let status = daemon.cache_status(toucher_cache);
    let toucher_bytes = status["disk_bytes"].as_u64().unwrap();
    assert!(
        toucher_bytes >= 60 * KIB40 as u64,
        "a file's outside links do not shrink it: {status}"
    );
    assert!(
        daemon.log_text().contains("last used in the future"),
        "the log says so"
    );
    // The group must free 1 MiB: under fair share, all of it from the largest cache.
    let others: u64 = ["builds@daemon", "builds@bin"]
        .iter()
        .map(|c| daemon.cache_status(c)["disk_bytes"].as_u64().unwrap())
        .sum();
    let limit = toucher_bytes + others - (1 << 20);
    std::fs::write(&daemon.config, config(&format!("{limit} B"))).unwrap();
    let (code, reloaded) = daemon.post("/v1/reload", "");
    assert_eq!(code, 200, "{reloaded}");
    std::thread::sleep(Duration::from_secs(2)); // past min_age
    let (code, done) = daemon.post("/v1/groups/builds/evict", "");
    assert_eq!(code, 200, "{done}");
    for (_, dir, _) in honest {
        assert_eq!(
            files(&tmp.path().join(dir).join("cache")).len(),
            20,
            "{dir} lost entries to the toucher: {done}"
        );
    }
    let left = daemon.cache_status(toucher_cache)["disk_bytes"]
        .as_u64()
        .unwrap();
    assert!(left <= toucher_bytes - (1 << 20), "{done}");
    assert_eq!(
        files(&toucher.join("links")).len(),
        3000,
        "the outside links stay"
    );
    daemon.assert_index_is_fresh_scan(toucher_cache);
}

fn chown_all(dir: &Path, uid: u32) {
    for e in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        nix::unistd::chown(e.path(), Some(uid.into()), Some(uid.into())).unwrap();
    }
}

/// The inotify watches the root daemon holds (`/proc/PID/fdinfo`).
fn watches_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .matches("inotify wd:")
                .count()
        })
        .sum()
}

/// One user's `mkdir`s in their module cache's `cache/download` (below `@v`, deeper
/// than any module path, and 9,000 wide where module paths are) cost root at most the
/// cache's watch budget, and status and doctor say the cache is watched in part (at
/// d7f03dc: a watch per directory, 20,000 of root's shared limit).
#[test]
fn a_users_mkdirs_cost_root_at_most_the_watch_budget() {
    if !running_as_root("a_users_mkdirs_cost_root_at_most_the_watch_budget") {
        return;
    }
    let tmp = open_tempdir();
    let modcache = module_cache_with_a_deep_version(tmp.path(), "3");
    let socket = tmp.path().join("run/cw.sock");
    let config = format!(
        "[daemon]\nsocket = \"{}\"\nlog_level = \"debug\"\n\n[[cache]]\nname = \"gm\"\nkind = \"go-mod\"\npath = \"{}\"\n",
        socket.display(),
        modcache.display()
    );
    let daemon = Daemon::start(tmp.path(), &config);
    let before = watches_of(daemon.child.id());
    python_as_nobody(
        r#"
import os, sys
d = os.path.join(sys.argv[1], "cache/download")
for i in range(5000):
    os.mkdir(os.path.join(d, "example.com/deep/@v", "x%d" % i))
chain = os.path.join(d, "chain")
os.mkdir(chain)
os.chdir(chain)
for i in range(1000):
    os.mkdir("c")
    os.chdir("c")
for i in range(9000):
    os.makedirs(os.path.join(d, "wide", "m%d" % i))
"#,
        &[modcache.to_str().unwrap()],
    );
    let status = wait_for("the cache to be watched in part", DEADLINE, || {
        let s = daemon.cache_status("gm");
        s["conditions"]
            .to_string()
            .contains("directories to watch")
            .then_some(s)
    });
    let watches = watches_of(daemon.child.id());
    assert!(
        watches <= cachewarden::watch::WATCH_BUDGET + 2,
        "{watches} watches ({before} before the mkdirs): {status}"
    );
    assert_eq!(daemon.cache_status("gm")["state"], "ready");
    let doctor = Command::new(BIN)
        .args(["--config", daemon.config.to_str().unwrap(), "doctor"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("watched in part"), "{text}");
}

/// The same 100,000 levels in a `dir` cache, which is watched at every depth: walked,
/// watched only up to the budget (not 100,000 watches), its bottom file evicted for
/// size.
#[test]
fn a_hundred_thousand_levels_in_a_dir_cache_are_walked_watched_and_evicted() {
    if !running_as_root("a_hundred_thousand_levels_in_a_dir_cache") {
        return;
    }
    let tmp = open_tempdir();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    nix::unistd::chown(&cache, Some(65534.into()), Some(65534.into())).unwrap();
    let _deep = DeepTree(cache.clone());
    python_as_nobody(DEEP_CHAIN, &[cache.to_str().unwrap(), LEVELS]);
    std::thread::sleep(Duration::from_secs(2)); // past min_age
    let socket = tmp.path().join("run/cw.sock");
    let rules = "max_size = \"1 B\"\nmin_age = \"1s\"\nunsafe_allow_short_min_age = true";
    let daemon = Daemon::start(tmp.path(), &config_text(&socket, &[("c", &cache, rules)]));
    let watches = watches_of(daemon.child.id());
    assert!(
        watches <= cachewarden::watch::WATCH_BUDGET + 2,
        "{watches} watches"
    );
    let status = wait_for("the bottom file evicted", DEADLINE, || {
        let s = daemon.cache_status("c");
        (s["evicted_entries_total"] == 1).then_some(s)
    });
    assert_eq!(status["entries"], 0, "{status}");
    assert_eq!(status["state"], "ready");
    daemon.assert_index_is_fresh_scan("c");
}
