//! One system daemon for every user's Go build cache on a shared build server (issue
//! #13): real users (`useradd`), real `go build`s, a group limit that forces eviction
//! across users, and a hostile user whose planted links must lead nowhere.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// Users made for one test and removed (with their homes) after it.
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl User {
    pub fn add(name: &str, homes: &Path) -> User {
        let home = homes.join(name);
        let ok = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", "-d"])
            .arg(&home)
            .arg(name)
            .status()
            .expect("useradd (passwd) is installed")
            .success();
        assert!(ok, "useradd {name}");
        let meta = std::fs::metadata(&home).unwrap();
        User {
            name: name.into(),
            uid: meta.uid(),
            gid: meta.gid(),
            home,
        }
    }

    fn cache(&self) -> PathBuf {
        self.home.join(".cache/go-build")
    }

    /// `PROGRAM ARGS` as this user, with only a HOME and a PATH.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        self.command_with(&["GOPROXY=off"], program, args)
    }

    /// [`User::command`] with more `NAME=value` settings.
    pub fn command_with(&self, env: &[&str], program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--init-groups", "--", "env", "-i"])
            .arg(format!("HOME={}", self.home.display()))
            .arg("PATH=/usr/bin:/bin")
            .args(["GOFLAGS=-mod=mod", "GOTOOLCHAIN=local"])
            .args(env)
            .arg(program)
            .args(args);
        cmd
    }

    /// A tiny module in the user's home, built with their default GOCACHE.
    fn go_build(&self, variant: u32) -> std::process::Output {
        let module = self.home.join("app");
        std::fs::create_dir_all(&module).unwrap();
        std::fs::write(module.join("go.mod"), "module example.com/app\n\ngo 1.19\n").unwrap();
        std::fs::write(
            module.join("main.go"),
            format!(
                "package main\n\nimport (\n\t\"encoding/json\"\n\t\"fmt\"\n\t\"strings\"\n)\n\nfunc main() {{\n\tb, _ := json.Marshal({variant})\n\tfmt.Println(strings.ToUpper(string(b)))\n}}\n"
            ),
        )
        .unwrap();
        Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(&module)
            .status()
            .unwrap();
        let mut cmd = self.command("sh", &["-c", "cd ~/app && go build -o app . && ./app"]);
        cmd.output().unwrap()
    }

    /// `curl` to the daemon's socket as this user: (HTTP code, body).
    fn http(&self, socket: &Path, method: &str, path: &str) -> (u16, String) {
        let out = self
            .command(
                "curl",
                &[
                    "-s",
                    "-w",
                    "\n%{http_code}",
                    "-X",
                    method,
                    "--unix-socket",
                    socket.to_str().unwrap(),
                    &format!("http://localhost{path}"),
                ],
            )
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .args(["-r", "-f", &self.name])
            .output();
    }
}

/// Removes every action of a shard with the output it names, as `go clean` would
/// leave a smaller cache (no output left without its action).
fn drop_pairs(shard: &Path) {
    for entry in std::fs::read_dir(shard).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(action) = name.strip_suffix("-a") {
            let text = std::fs::read(entry.path()).unwrap();
            // "v1 <action> <output> <size> <time>\n" (go-caches.md).
            let output = String::from_utf8_lossy(&text[68..132]).into_owned();
            let _ = std::fs::remove_file(
                shard
                    .parent()
                    .unwrap()
                    .join(&output[..2])
                    .join(format!("{output}-d")),
            );
            std::fs::remove_file(entry.path()).unwrap();
            assert_eq!(action.len(), 64);
        }
    }
}

/// Every regular file below `dir`, with its mtime set to `days` days ago.
fn age_tree(dir: &Path, days: i64) {
    let t = filetime::FileTime::from_unix_time(now() - days * 86400, 0);
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if entry.file_type().is_file() {
            filetime::set_symlink_file_times(entry.path(), t, t).unwrap();
        }
    }
}

fn chown_tree(dir: &Path, user: &User) {
    let ok = Command::new("chown")
        .args(["-R", "-h", &format!("{}:{}", user.uid, user.gid)])
        .arg(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// (content, mode, uid) of a file, to check it byte for byte afterwards.
fn fingerprint(path: &Path) -> (Vec<u8>, u32, u32) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (std::fs::read(path).unwrap(), meta.mode(), meta.uid())
}

#[test]
fn one_root_daemon_keeps_every_users_caches_fair_and_no_user_can_turn_it_against_another() {
    if !running_as_root("one_root_daemon_keeps_every_users_caches_fair") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let homes = tmp.path().join("home");
    std::fs::create_dir(&homes).unwrap();
    let tag = std::process::id() % 100_000;
    let alice = User::add(&format!("cwa{tag}"), &homes);
    let bob = User::add(&format!("cwb{tag}"), &homes);
    let mallory = User::add(&format!("cwm{tag}"), &homes);

    // Real caches: alice builds; bob and mallory get copies of hers (go's exact
    // format), bob's smaller. Alice's is the least recently used.
    let built = alice.go_build(1);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    for (user, keep_shards) in [(&bob, 0x80u32), (&mallory, 0x100)] {
        std::fs::create_dir_all(user.home.join(".cache")).unwrap();
        let ok = Command::new("cp")
            .arg("-a")
            .arg(alice.cache())
            .arg(user.cache())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        for shard in keep_shards..0x100 {
            drop_pairs(&user.cache().join(format!("{shard:02x}")));
        }
        chown_tree(&user.home.join(".cache"), user);
    }
    age_tree(&alice.cache(), 30);
    age_tree(&bob.cache(), 20);
    age_tree(&mallory.cache(), 10);

    // What must survive, byte for byte: a file of root's and one of bob's.
    let precious = tmp.path().join("precious");
    std::fs::create_dir(&precious).unwrap();
    let roots_file = precious.join("root-secret");
    std::fs::write(&roots_file, b"root's own bytes").unwrap();
    std::fs::set_permissions(&roots_file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let bobs_file = bob.home.join("notes.txt");
    std::fs::write(&bobs_file, b"bob's notes").unwrap();
    chown_tree(&bobs_file, &bob);
    // Mallory's plants, older than anything (first in line for eviction): hard links
    // to root's and bob's files named as go's outputs, a symlink to root's file, and a
    // shard directory swapped for a symlink to bob's shard.
    let fake = |n: u8| format!("{}-d", format!("{n:02x}").repeat(32));
    std::fs::hard_link(&roots_file, mallory.cache().join("aa").join(fake(0xaa))).unwrap();
    std::fs::hard_link(&bobs_file, mallory.cache().join("bb").join(fake(0xbb))).unwrap();
    std::os::unix::fs::symlink(&roots_file, mallory.cache().join("cc").join(fake(0xcc))).unwrap();
    std::fs::remove_dir(mallory.cache().join("dd")).unwrap();
    std::os::unix::fs::symlink(bob.cache().join("01"), mallory.cache().join("dd")).unwrap();
    for p in [fake(0xaa), fake(0xbb)] {
        let shard = &p[..2];
        let t = filetime::FileTime::from_unix_time(now() - 100 * 86400, 0);
        filetime::set_file_mtime(mallory.cache().join(shard).join(&p), t).unwrap();
    }
    let roots_before = fingerprint(&roots_file);
    let bobs_before = fingerprint(&bobs_file);

    // Five lines of config: every listed user's GOCACHE, one group limit.
    let run = tmp.path().join("cachewarden-run");
    let socket = run.join("cachewarden.sock");
    let config = |limit: &str| {
        format!(
            "[daemon]\nsocket = \"{}\"\nstate_dir = \"{}\"\nsocket_group = \"*\"\n\n[[cache]]\nname = \"go-build\"\nkind = \"go-build\"\nusers = [\"{}\", \"{}\", \"{}\"]\npath = \"auto\"\ngroup_max_size = \"{limit}\"\ngroup_policy = \"lru\"\n",
            socket.display(),
            tmp.path().join("state").display(),
            alice.name,
            bob.name,
            mallory.name
        )
    };
    // With exactly the capabilities the packaged drop-in grants (and root's uid).
    let drop_in = include_str!("../../systemd/cachewarden.service.d/shared-server.conf");
    let capabilities: Vec<&str> = drop_in
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the drop-in sets CapabilityBoundingSet=")
        .split_whitespace()
        .collect();
    let mut daemon = Daemon::start_with_capabilities(tmp.path(), &config("1 TB"), &capabilities);
    daemon.wait_ready();
    // The limit: the caches together less half of alice's, as the daemon counts them.
    let alice_cache = format!("go-build@{}", alice.name);
    let alice_bytes = daemon.cache_status(&alice_cache)["disk_bytes"]
        .as_u64()
        .unwrap();
    let (_, users) = daemon.get("/v1/users");
    let total: u64 = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["disk_bytes"].as_u64().unwrap())
        .sum();
    let limit = total - alice_bytes / 2;
    std::fs::write(&daemon.config, config(&format!("{limit} B"))).unwrap();
    let (code, reloaded) = daemon.post("/v1/reload", "");
    assert_eq!(code, 200, "{reloaded}");

    // Who uses the disk.
    let (code, users) = daemon.get("/v1/users");
    assert_eq!(code, 200, "{users}");
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["user"].as_str())
        .collect();
    for u in [&alice, &bob, &mallory] {
        assert!(names.contains(&u.name.as_str()), "{users}");
    }
    let alice_cache = format!("go-build@{}", alice.name);
    assert_eq!(
        daemon.cache_status(&alice_cache)["user"],
        alice.name.as_str()
    );
    let (_, metrics) = http(&daemon.socket, "GET", "/metrics", "");
    assert!(
        metrics.contains(&format!(
            "cache=\"{alice_cache}\",kind=\"go-build\",user=\"{}\"",
            alice.name
        )),
        "{metrics}"
    );

    // Each user acts on their own cache only, and only they list its entries.
    let (code, body) = bob.http(&socket, "POST", &format!("/v1/caches/{alice_cache}/evict"));
    assert_eq!(code, 403, "bob may not evict alice's cache: {body}");
    let (code, body) = bob.http(&socket, "GET", &format!("/v1/caches/{alice_cache}/entries"));
    assert_eq!(code, 403, "bob may not list alice's entries: {body}");
    // However the name is spelled (issue #29: percent-encoding got past a check on the
    // raw path).
    let alice_name = &alice.name;
    for spelled in [
        format!("go-build%40{alice_name}"),
        format!("go-buil%64@{alice_name}"),
        format!("%67o-build%40{alice_name}"),
    ] {
        for (method, what) in [("GET", "entries"), ("POST", "evict"), ("POST", "verify")] {
            let (code, body) = bob.http(&socket, method, &format!("/v1/caches/{spelled}/{what}"));
            assert_eq!(code, 403, "{method} {spelled}/{what} as bob: {body}");
        }
    }
    let (code, body) = bob.http(&socket, "GET", "/v1/status");
    assert_eq!(code, 200, "{body}");
    let bobs_cache = format!("go-build@{}", bob.name);
    let (code, body) = bob.http(
        &socket,
        "POST",
        &format!("/v1/caches/{bobs_cache}/evict?dry_run=true"),
    );
    assert_eq!(code, 200, "bob may act on his own cache: {body}");

    // The plan: the group is over its limit; the oldest entries of all go first —
    // mallory's plants (100 days), then alice's (30 days); nothing of bob's.
    let (code, plan) = daemon.post("/v1/groups/go-build/evict?dry_run=true", "");
    assert_eq!(code, 200, "{plan}");
    // (The daemon's own group check, every 10 s, may have been first.)
    let enforced_already = plan["reason"].is_null();
    assert!(
        !enforced_already || daemon.log_text().contains("group limit enforced"),
        "{plan}"
    );
    let givers: Vec<&str> = plan["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["user"].as_str())
        .collect();
    assert!(
        enforced_already || givers.contains(&alice.name.as_str()),
        "{plan}"
    );
    assert!(!givers.contains(&bob.name.as_str()), "{plan}");

    // Enforced for real while bob builds.
    let bobs_build = std::thread::spawn({
        let mut cmd = bob.command("sh", &["-c", "mkdir -p ~/b && cd ~/b && printf 'module b\\n\\ngo 1.19\\n' > go.mod && printf 'package main\\nimport \"fmt\"\\nfunc main() { fmt.Println(2) }\\n' > m.go && go build -o b . && ./b"]);
        move || cmd.output().unwrap()
    });
    let (code, done) = daemon.post("/v1/groups/go-build/evict", "");
    assert_eq!(code, 200, "{done}");
    let out = bobs_build.join().unwrap();
    assert!(
        out.status.success(),
        "bob's build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the group to be within its limit", DEADLINE, || {
        let (_, users) = daemon.get("/v1/users");
        let sum: u64 = users
            .as_array()?
            .iter()
            .map(|u| u["disk_bytes"].as_u64().unwrap_or(0))
            .sum();
        (sum <= limit).then_some(())
    });
    let alice_after = daemon.cache_status(&alice_cache)["disk_bytes"]
        .as_u64()
        .unwrap();
    assert!(alice_after < alice_bytes, "alice's old entries went");

    // Nothing outside a user's own files was touched.
    assert_eq!(
        fingerprint(&roots_file),
        roots_before,
        "root's file is intact"
    );
    assert_eq!(fingerprint(&bobs_file), bobs_before, "bob's file is intact");
    // Nothing was removed through mallory's symlinked shard, and every removal in
    // bob's cache was his own cache's oldest, after all of alice's.
    let (code, trail) = daemon.get("/v1/audit?limit=100000");
    assert_eq!(code, 200, "{trail}");
    // The audit trail names entries and paths: each user reads their own caches' only.
    assert!(
        trail
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["cache"] == alice_cache.as_str()),
        "alice's removals are in root's view: {trail}"
    );
    for query in [
        format!("cache={alice_cache}"),
        format!("cache=go-build%40{alice_name}"),
    ] {
        let (code, body) = bob.http(&socket, "GET", &format!("/v1/audit?{query}"));
        assert_eq!(code, 403, "bob reads alice's audit trail ({query}): {body}");
    }
    let (code, body) = bob.http(&socket, "GET", "/v1/audit?limit=100000");
    assert_eq!(code, 200, "{body}");
    let bobs_view = json(&body);
    assert!(
        bobs_view
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["cache"] == format!("go-build@{}", bob.name).as_str()),
        "bob sees only his own removals: {body}"
    );
    let mallorys = format!("go-build@{}", mallory.name);
    for r in trail.as_array().unwrap() {
        assert!(
            !(r["cache"] == mallorys.as_str() && r["path"].as_str().unwrap().starts_with("dd/")),
            "removed through a symlink: {r}"
        );
    }
    let bobs_removed = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["cache"] == bobs_cache.as_str())
        .count();
    let alice_left = daemon.cache_status(&alice_cache)["entries"]
        .as_u64()
        .unwrap();
    assert!(
        bobs_removed == 0 || alice_left == 0,
        "bob lost entries while alice's older ones stayed"
    );
    assert!(std::fs::symlink_metadata(mallory.cache().join("dd"))
        .unwrap()
        .file_type()
        .is_symlink());

    // Go still works for everyone on what is left.
    let again = alice.go_build(2);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains('2'));
    daemon.stop();
}
