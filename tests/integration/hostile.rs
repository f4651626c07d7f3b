//! Hostile roots and contents (issue #16): what a local user could make the daemon do
//! by what they put in its config's reach or in the caches it manages.

use std::path::Path;
use std::process::Command;

use crate::common::*;

fn config_check(path: &str) -> (Option<i32>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[[cache]]\nname = \"c\"\nkind = \"dir\"\npath = \"{path}\"\nmax_size = \"1 MB\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "evict", "--dry-run"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn system_directories_are_refused_as_roots_however_they_are_spelled() {
    for path in [
        "/bin",
        "/lib",
        "/sbin",
        "/lib64",
        "/usr/bin",
        "/usr/lib",
        "/var/log",
        "/etc/ssl",
        "/var/cache",
        "/mnt",
        "/usr/share/../bin",
    ] {
        if !Path::new(path).exists() {
            continue;
        }
        let (code, stderr) = config_check(path);
        assert_eq!(code, Some(2), "{path} was accepted: {stderr}");
        assert!(stderr.contains("refusing to manage"), "{path}: {stderr}");
    }
    // A symlink planted to one is refused by what it resolves to.
    let tmp = tempfile::tempdir().unwrap();
    let link = tmp.path().join("innocent-cache");
    std::os::unix::fs::symlink("/usr/lib", &link).unwrap();
    let (code, stderr) = config_check(link.to_str().unwrap());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("/usr/lib"), "{stderr}");
}

#[test]
fn a_reload_to_a_system_directory_is_rejected_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    file_aged(&cache.join("a"), 100, DAY);
    let socket = tmp.path().join("run/cw.sock");
    let daemon = Daemon::start(tmp.path(), &config_text(&socket, &[("c", &cache, "")]));
    std::fs::write(
        &daemon.config,
        config_text(
            &socket,
            &[("c", Path::new("/usr/bin"), "max_size = \"1 MB\"")],
        ),
    )
    .unwrap();
    let (code, body) = daemon.post("/v1/reload", "");
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("refusing to manage /usr/bin"),
        "{body}"
    );
    let (_, status) = daemon.get("/v1/status");
    assert_eq!(
        status["caches"][0]["path"],
        cache.canonicalize().unwrap().to_str().unwrap()
    );
    assert_eq!(daemon.stop().code(), Some(0));
}
