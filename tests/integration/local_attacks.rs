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
