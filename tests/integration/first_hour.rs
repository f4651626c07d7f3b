//! A new user's first hour (issue #30), walked as they would: a normal user (made with
//! `useradd`) with a fresh home, no config file, Debian's go, and the README. The daemon
//! runs on the embedded default config against the user's real Go caches; every curl
//! example of the README's socket section is run against it; the config is then broken
//! while the daemon runs (status, socket and doctor still find it and say both); a
//! one-shot `verify` updates the daemon's problem counts; `go clean -cache` empties the
//! daemon's index.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::shared_server::User;

/// The README's socket examples, as written (after `S=$(cachewarden socket)`).
fn readme_curl_lines() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let block = readme
        .split("S=$(cachewarden socket)")
        .nth(1)
        .expect("the README's socket section")
        .split("```")
        .next()
        .unwrap();
    block
        .lines()
        .filter(|l| l.starts_with("curl "))
        .map(str::to_string)
        .collect()
}

struct FirstHour {
    user: User,
    _homes: tempfile::TempDir,
}

impl FirstHour {
    fn cachewarden(&self, args: &[&str]) -> Output {
        self.user.command(BIN, args).output().unwrap()
    }

    fn go(&self, dir: &str, args: &[&str]) -> Output {
        let proxy = format!("GOPROXY={}", crate::goproxy::proxy().url());
        let script = format!("cd {dir} && go {}", args.join(" "));
        self.user
            .command_with(&[&proxy, "GOSUMDB=off"], "sh", &["-c", &script])
            .output()
            .unwrap()
    }

    fn daemon(&self) -> Running {
        let child = self
            .user
            .command(BIN, &["daemon"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.user.home.join("daemon.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        Running(child)
    }

    fn socket(&self) -> PathBuf {
        let out = self.cachewarden(&["socket"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        PathBuf::from(text(&out.stdout).trim())
    }

    /// `sh -c LINE` as the user, with `$S` the socket: (HTTP code, body).
    fn curl(&self, line: &str, socket: &Path) -> (u16, String) {
        let line = line.replacen("curl ", "curl -s -w '\\n%{http_code}' ", 1);
        let script = format!("S={}; {line}", socket.display());
        let out = self.user.command("sh", &["-c", &script]).output().unwrap();
        let all = text(&out.stdout);
        let (body, code) = all.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    fn status_json(&self) -> serde_json::Value {
        let out = self.cachewarden(&["status", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        json(&text(&out.stdout))
    }
}

/// The user's daemon, stopped however the test ends (before the user is removed).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_new_user_walks_the_readme_first_screen_with_the_embedded_default() {
    if !running_as_root("a_new_user_walks_the_readme_first_screen_with_the_embedded_default") {
        return;
    }
    let homes = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        homes.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let user = User::add("cwnewbie", homes.path());
    let world = FirstHour {
        user,
        _homes: homes,
    };
    // Go fills both of the user's caches (the default GOCACHE and GOMODCACHE).
    let app = world.user.home.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("go.mod"),
        "module example.com/app\n\ngo 1.19\n\nrequire github.com/pkg/errors v1.1.0\n",
    )
    .unwrap();
    std::fs::write(
        app.join("main.go"),
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"github.com/pkg/errors\"\n)\n\nfunc main() { fmt.Println(errors.New(\"hi\")) }\n",
    )
    .unwrap();
    std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", world.user.uid, world.user.gid))
        .arg(&app)
        .status()
        .unwrap();
    let built = world.go("~/app", &["build", "-o", "/dev/null", "."]);
    assert!(built.status.success(), "{}", text(&built.stderr));

    // "cargo run --release -- daemon": the embedded default, no file.
    let _daemon = world.daemon();
    let socket = world.socket();
    wait_for("the daemon's first scan", DEADLINE * 2, || {
        let out = world.cachewarden(&["status", "--json"]);
        let status = json(&text(&out.stdout));
        let caches = status["caches"].as_array()?;
        let ready = caches.len() == 2 && caches.iter().all(|c| c["state"] == "ready");
        ready.then_some(())
    });
    let status = world.cachewarden(&["status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let table = text(&status.stdout);
    assert!(
        table.contains("go-build") && table.contains("go-mod"),
        "{table}"
    );
    let one = world.cachewarden(&["status", "--cache", "go-mod"]);
    assert!(one.status.success(), "{}", text(&one.stderr));
    assert!(
        !text(&one.stdout).contains("go-build "),
        "{}",
        text(&one.stdout)
    );
    let doctor = world.cachewarden(&["doctor"]);
    assert!(
        text(&doctor.stdout).contains("running (pid"),
        "{}",
        text(&doctor.stdout)
    );

    // Every curl of the README, on the default config's caches (the examples' module
    // version swapped for the one this world has; group limits are for shared servers).
    let lines = readme_curl_lines();
    assert!(lines.len() >= 10, "{lines:?}");
    for line in lines {
        if line.contains("(shared servers: ") {
            continue;
        }
        let line = line.replace("@v0.9.1", "@v1.1.0");
        let (code, body) = world.curl(&line, &socket);
        assert_eq!(code, 200, "README: {line}\n{body}");
    }

    // A one-shot verify finds a damaged output; the daemon's status says so at once,
    // and drops it once `verify --repair` removed it.
    let gocache = world.user.home.join(".cache/go-build");
    let output = files(&gocache)
        .into_iter()
        .find(|f| {
            f.ends_with("-d") && std::fs::metadata(gocache.join(f)).is_ok_and(|m| m.len() > 0)
        })
        .expect("an output in the build cache");
    let damaged = gocache.join(&output);
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();
    let open_in_daemon = || {
        world.status_json()["caches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "go-build")
            .unwrap()["problems"]["open"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(open_in_daemon(), 0);
    let verify = world.cachewarden(&["verify", "--cache", "go-build"]);
    assert_eq!(
        verify.status.code(),
        Some(1),
        "{}{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );
    assert!(open_in_daemon() > 0, "the daemon learnt what verify found");
    // Repaired, or left with a reason: the daemon counts what the CLI left open.
    let repair = world.cachewarden(&["verify", "--repair", "--json", "--cache", "go-build"]);
    let found = json(&text(&repair.stdout));
    let left = found["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["repaired"] == false)
        .count() as u64;
    assert_eq!(open_in_daemon(), left, "{found}");

    // The config is broken while the daemon runs: it keeps its config; the CLI still
    // finds and asks it, and says both.
    let config_dir = world.user.home.join(".config/cachewarden");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("config.toml"),
        "[[cache]]\nname = \"go-build\"\nkind = \"go-build\"\npath = \"auto\"\nmax_sise = \"1 GiB\"\n",
    )
    .unwrap();
    std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", world.user.uid, world.user.gid))
        .arg(world.user.home.join(".config"))
        .status()
        .unwrap();
    let (code, body) = world.curl(
        "curl -X POST --unix-socket $S http://localhost/v1/reload",
        &socket,
    );
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("max_sise"), "{body}");
    assert_eq!(world.socket(), socket, "socket despite the broken config");
    let status = world.cachewarden(&["status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(
        text(&status.stderr).contains("max_sise"),
        "{}",
        text(&status.stderr)
    );
    assert!(
        text(&status.stdout).contains("go-mod"),
        "{}",
        text(&status.stdout)
    );
    let doctor = text(&world.cachewarden(&["doctor"]).stdout);
    assert!(
        doctor.contains("max_sise") && doctor.contains("running (pid"),
        "{doctor}"
    );
    std::fs::remove_file(config_dir.join("config.toml")).unwrap();

    // go clean -cache: the daemon's index follows within seconds.
    let cleaned = world.go("~/app", &["clean", "-cache"]);
    assert!(cleaned.status.success(), "{}", text(&cleaned.stderr));
    wait_for(
        "the index to follow go clean",
        Duration::from_secs(20),
        || {
            let status = world.status_json();
            let gb = status["caches"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == "go-build")?
                .clone();
            (gb["entries"].as_u64()? == 0).then_some(())
        },
    );
}
