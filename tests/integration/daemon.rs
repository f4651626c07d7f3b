//! The real daemon binary on a temp socket over temp caches.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::*;

#[test]
fn status_follows_watch_events_without_a_rescan() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    file_aged(&cache.join("a"), 1000, HOUR);
    file_aged(&cache.join("sub/b"), 1000, HOUR);
    let socket = tmp.path().join("run/cw.sock");
    let daemon = Daemon::start(tmp.path(), &config_text(&socket, &[("c", &cache, "")]));
    let before = daemon.cache_status("c");
    assert_eq!(before["entries"], 2);
    let scan = before["last_scan"].clone();

    std::fs::write(cache.join("new"), vec![1u8; 50_000]).unwrap();
    let after = wait_for("the new file in status", DEADLINE, || {
        let s = daemon.cache_status("c");
        (s["entries"] == 3).then_some(s)
    });
    assert!(
        after["disk_bytes"].as_u64().unwrap() >= before["disk_bytes"].as_u64().unwrap() + 50_000
    );
    assert_eq!(
        after["last_scan"], scan,
        "status must come from watch events, not a rescan"
    );

    // A directory created after start is watched too, with files written at once.
    std::fs::create_dir_all(cache.join("late/deeper")).unwrap();
    std::fs::write(cache.join("late/deeper/x"), b"x").unwrap();
    wait_for("a file in a new directory", DEADLINE, || {
        (daemon.cache_status("c")["entries"] == 4).then_some(())
    });
    std::fs::write(cache.join("late/deeper/y"), b"y").unwrap();
    wait_for("a second file in the new directory", DEADLINE, || {
        (daemon.cache_status("c")["entries"] == 5).then_some(())
    });

    std::fs::remove_file(cache.join("a")).unwrap();
    wait_for("the removal in status", DEADLINE, || {
        (daemon.cache_status("c")["entries"] == 4).then_some(())
    });
    assert_eq!(daemon.cache_status("c")["last_scan"], scan);

    let (code, list) = daemon.get("/v1/caches/c/entries?order=largest&limit=1");
    assert_eq!(code, 200);
    assert_eq!(list[0]["entry"], "new");
    assert_eq!(list.as_array().unwrap().len(), 1);
    daemon.assert_index_is_fresh_scan("c");
    assert_eq!(daemon.stop().code(), Some(0));
}

#[test]
fn eviction_honours_every_limit_and_min_age() {
    let tmp = tempfile::tempdir().unwrap();
    let sized = tmp.path().join("sized");
    // 40 KiB files (so st_blocks is exact): one past max_age, four old, two young.
    let kib40 = 40 * 1024;
    file_aged(&sized.join("expired"), kib40, 40 * DAY);
    for (i, age) in [5, 4, 3, 2].iter().enumerate() {
        file_aged(&sized.join(format!("old{i}")), kib40, *age * DAY);
    }
    file_aged(&sized.join("young1"), kib40, Duration::from_secs(60));
    file_aged(&sized.join("young2"), kib40, Duration::from_secs(60));
    file_aged(&sized.join("pinned.keep"), kib40, 90 * DAY);

    // max_age alone: only what is past it goes, whatever its size.
    let aged = tmp.path().join("aged");
    file_aged(&aged.join("old"), kib40, 40 * DAY);
    file_aged(&aged.join("recent"), kib40, 20 * DAY);

    let full = tmp.path().join("full");
    file_aged(&full.join("old"), kib40, 3 * DAY);
    file_aged(&full.join("young"), kib40, Duration::from_secs(10));

    let socket = tmp.path().join("run/cw.sock");
    let config = config_text(
        &socket,
        &[
            (
                "sized",
                &sized,
                "max_size = \"160 KiB\"\nmax_age = \"30d\"\nmin_age = \"1h\"\nkeep = [\"*.keep\"]",
            ),
            ("aged", &aged, "max_age = \"30d\""),
            // The filesystem is never 100% free: everything evictable must go.
            ("full", &full, "min_free = \"100%\"\nmin_age = \"1h\""),
        ],
    );
    let daemon = Daemon::start(tmp.path(), &config);

    // At startup: the expired file (max_age), then oldest first down to 160 KiB; the pinned
    // and the young files stay whatever the limit says.
    wait_for("startup eviction", DEADLINE, || {
        (files(&sized).len() == 4).then_some(())
    });
    assert_eq!(files(&sized), ["old3", "pinned.keep", "young1", "young2"]);
    let s = daemon.cache_status("sized");
    assert_eq!(s["disk_bytes"], 4 * kib40 as u64);
    assert_eq!(s["last_eviction"]["entries"], 4);
    assert_eq!(s["evicted_bytes_total"], 4 * kib40 as u64);
    assert_eq!(
        files(&full),
        ["young"],
        "min_free evicts all but min_age-protected entries"
    );
    assert!(daemon.cache_status("full")["over_limits"]
        .as_array()
        .unwrap()
        .contains(&"min_free".into()));

    // A new file pushes the cache over max_size: the oldest evictable entry goes promptly,
    // without waiting for the schedule.
    std::fs::write(sized.join("fresh"), vec![1u8; kib40]).unwrap();
    wait_for("event-driven eviction", DEADLINE, || {
        (!sized.join("old3").exists()).then_some(())
    });
    assert_eq!(files(&sized), ["fresh", "pinned.keep", "young1", "young2"]);

    // Over the limit with only protected entries left: nothing more is removed, and the
    // plan says why.
    std::fs::write(sized.join("fresh2"), vec![1u8; kib40]).unwrap();
    wait_for("fresh2 in the index", DEADLINE, || {
        (daemon.cache_status("sized")["disk_bytes"] == 5 * kib40 as u64).then_some(())
    });
    let (code, plan) = daemon.post("/v1/caches/sized/evict?dry_run=true", "");
    assert_eq!(code, 200, "{plan}");
    assert!(plan["evicted"].as_array().unwrap().is_empty(), "{plan}");
    assert!(
        plan["unmet"][0].as_str().unwrap().contains("max_size"),
        "{plan}"
    );
    assert_eq!(files(&sized).len(), 5);
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let two = tmp.path().join("two");
    file_aged(&one.join("a"), 100, HOUR);
    file_aged(&two.join("b"), 100, HOUR);
    let socket = tmp.path().join("run/cw.sock");
    let good = config_text(&socket, &[("one", &one, "max_size = \"1 GiB\"")]);
    let daemon = Daemon::start(tmp.path(), &good);

    std::fs::write(&daemon.config, format!("{good}\nmax_sise = \"2 GiB\"\n")).unwrap();
    daemon.signal(Signal::SIGHUP);
    wait_for("the reload error in the log", DEADLINE, || {
        daemon
            .log_text()
            .contains("reload failed, keeping the running config")
            .then_some(())
    });
    let log = daemon.log_text();
    assert!(
        log.contains("config.toml:") && log.contains("max_sise"),
        "{log}"
    );
    let (code, status) = daemon.get("/v1/status");
    assert_eq!(code, 200);
    assert_eq!(status["caches"][0]["name"], "one");
    assert_eq!(status["caches"][0]["limits"]["max_size_bytes"], 1u64 << 30);

    // The same through the API: 422 with the location, the old config still in force.
    let (code, err) = daemon.post("/v1/reload", "");
    assert_eq!(code, 422, "{err}");
    assert!(err["error"].as_str().unwrap().contains("max_sise"), "{err}");

    // A good config takes effect on the next SIGHUP: new limits, a new cache.
    let better = config_text(
        &socket,
        &[("one", &one, "max_size = \"2 GiB\""), ("two", &two, "")],
    );
    std::fs::write(&daemon.config, better).unwrap();
    daemon.signal(Signal::SIGHUP);
    let status = wait_for("the new config", DEADLINE, || {
        let (_, s) = daemon.get("/v1/status");
        (s["caches"].as_array().unwrap().len() == 2 && s["caches"][1]["state"] == "ready")
            .then_some(s)
    });
    assert_eq!(status["caches"][0]["limits"]["max_size_bytes"], 2u64 << 30);
    assert_eq!(status["caches"][1]["entries"], 1);
}

/// `rm -rf` of a watched cache, then the tool recreates it: the daemon watches the new
/// directory (regression: it used to go blind for good).
#[test]
fn a_deleted_and_recreated_root_is_watched_again() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    file_aged(&cache.join("a"), 100, HOUR);
    let socket = tmp.path().join("run/cw.sock");
    let daemon = Daemon::start(tmp.path(), &config_text(&socket, &[("c", &cache, "")]));
    std::fs::remove_dir_all(&cache).unwrap();
    wait_for("the removal in status", DEADLINE, || {
        (daemon.cache_status("c")["entries"] == 0).then_some(())
    });
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(cache.join("b"), b"b").unwrap();
    // Tried again every second (`ROOT_POLL`), not at the next 30 s rescan.
    wait_for("the recreated root's file", DEADLINE / 2, || {
        (daemon.cache_status("c")["entries"] == 1).then_some(())
    });
    // Back through the root poll, or (recreated before the daemon let go of the removed
    // root it had locked, `instance::RootLock`) through the rescan its removal asked for.
    let log = daemon.log_text();
    assert!(
        log.contains("watching the cache directory again") || log.contains("was removed or moved"),
        "{log}"
    );
    // And it is watched again, not just rescanned once.
    std::fs::write(cache.join("c"), b"c").unwrap();
    wait_for("a later file", DEADLINE, || {
        (daemon.cache_status("c")["entries"] == 2).then_some(())
    });
}

#[test]
fn a_second_daemon_on_the_same_socket_refuses_and_stale_sockets_are_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let socket = tmp.path().join("run/cw.sock");
    std::fs::create_dir(tmp.path().join("run")).unwrap();
    // A stale socket file left by a killed daemon.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let config = config_text(&socket, &[("c", &cache, "")]);
    let daemon = Daemon::start(tmp.path(), &config);

    let second = Command::new(BIN)
        .args(["--config", daemon.config.to_str().unwrap(), "daemon"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    let err = String::from_utf8_lossy(&second.stderr);
    // (Its state directory is the first's too, which it finds first.)
    assert!(
        (err.contains("already running") || err.contains("uses the state directory"))
            && err.contains(&format!("pid {}", daemon.child.id())),
        "{err}"
    );
    assert_eq!(
        daemon.get("/v1/status").0,
        200,
        "the first daemon still answers"
    );

    // Another socket on the same state directory: refused, naming the first (issue
    // #29: it ran beside the first with no warning).
    let other_socket = tmp.path().join("run2/cw.sock");
    let second_config = tmp.path().join("second.toml");
    std::fs::write(
        &second_config,
        std::fs::read_to_string(&daemon.config)
            .unwrap()
            .replace(socket.to_str().unwrap(), other_socket.to_str().unwrap()),
    )
    .unwrap();
    let second = Command::new(BIN)
        .args(["--config", second_config.to_str().unwrap(), "daemon"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("uses the state directory")
            && err.contains(&format!("pid {}", daemon.child.id()))
            && err.contains(socket.to_str().unwrap()),
        "{err}"
    );
    // `status` and `doctor` with that config find the running daemon through the
    // state directory, and say so.
    let status = Command::new(BIN)
        .args([
            "--config",
            second_config.to_str().unwrap(),
            "status",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(String::from_utf8_lossy(&status.stderr)
        .contains(&format!("listens on {}", socket.display())));
    assert_eq!(
        json(&String::from_utf8_lossy(&status.stdout))["pid"],
        daemon.child.id()
    );
    let doctor = Command::new(BIN)
        .args(["--config", second_config.to_str().unwrap(), "doctor"])
        .output()
        .unwrap();
    let advice = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        advice.contains(&format!("running (pid {})", daemon.child.id())),
        "doctor finds the running daemon, not advise starting one: {advice}"
    );

    // Another state directory too, on the same cache: it runs, and the cache's errors
    // name the daemon that holds it.
    let third_config = tmp.path().join("third.toml");
    std::fs::write(
        &third_config,
        std::fs::read_to_string(&second_config)
            .unwrap()
            .replace("/state\"", "/state3\""),
    )
    .unwrap();
    let third = Daemon::start(&tmp.path().join("third"), &{
        std::fs::create_dir(tmp.path().join("third")).unwrap();
        std::fs::read_to_string(&third_config).unwrap()
    });
    let errors = third.cache_status("c")["conditions"].to_string();
    assert!(
        errors.contains(&format!(
            "pid {} (cachewarden) holds the lock",
            daemon.child.id()
        )),
        "{errors}"
    );
    drop(third);

    // SIGTERM stops it cleanly and removes the socket.
    assert_eq!(daemon.stop().code(), Some(0));
    assert!(!socket.exists());
}

#[test]
fn malformed_requests_get_4xx_and_the_daemon_keeps_answering() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    file_aged(&cache.join("a"), 100, DAY);
    let socket = tmp.path().join("run/cw.sock");
    let daemon = Daemon::start(
        tmp.path(),
        &config_text(&socket, &[("c", &cache, "max_size = \"1 GiB\"")]),
    );

    // A client that connects and says nothing holds one slot, not the server.
    let _silent = std::os::unix::net::UnixStream::connect(&socket).unwrap();

    let (code, _) = raw(&socket, b"GARBAGE\r\n\r\n");
    assert!((400..500).contains(&code), "{code}");
    let (code, _) = raw(
        &socket,
        b"GET /v1/status HTTP/1.1\r\ncontent-length: nope\r\n\r\n",
    );
    assert!((400..500).contains(&code), "{code}");

    let cases: &[(&str, &str, &str, u16, &str)] = &[
        (
            "POST",
            "/v1/caches/c/evict",
            "{not json",
            400,
            "invalid JSON body",
        ),
        (
            "POST",
            "/v1/caches/c/evict",
            "{\"dry_run\": \"yes\"}",
            400,
            "invalid JSON body",
        ),
        (
            "POST",
            "/v1/caches/c/evict",
            "{\"bogus\": true}",
            400,
            "unknown field",
        ),
        (
            "POST",
            "/v1/caches/c/evict?dry_run=maybe",
            "",
            400,
            "invalid query",
        ),
        (
            "GET",
            "/v1/caches/c/entries?order=sideways",
            "",
            400,
            "invalid query",
        ),
        (
            "POST",
            "/v1/caches/nope/evict",
            "",
            404,
            "no cache named \\\"nope\\\"",
        ),
        (
            "GET",
            "/v1/caches/nope/entries",
            "",
            404,
            "configured caches: c",
        ),
        ("GET", "/v2/everything", "", 404, "no such endpoint"),
        ("DELETE", "/v1/status", "", 405, "not allowed"),
    ];
    for (method, path, body, want, needle) in cases {
        let (code, text) = http(&socket, method, path, body);
        assert_eq!(code, *want, "{method} {path} {body}: {text}");
        let v = json(&text);
        assert!(v["error"].is_string(), "{text}");
        assert!(
            text.contains(needle),
            "{method} {path}: {text} lacks {needle}"
        );
    }
    let big = "x".repeat(100 * 1024);
    let (code, text) = http(&socket, "POST", "/v1/caches/c/verify", &big);
    assert_eq!(code, 413, "{text}");

    // Still healthy, nothing lost.
    let (code, status) = daemon.get("/v1/status");
    assert_eq!(code, 200);
    assert_eq!(status["caches"][0]["entries"], 1);
    assert!(cache.join("a").exists());
    let (code, metrics) = http(&socket, "GET", "/metrics", "");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("cachewarden_cache_entries{cache=\"c\",kind=\"dir\"} 1"),
        "{metrics}"
    );
}

#[test]
fn another_uid_may_read_status_but_not_change_anything() {
    if !running_as_root("another_uid_may_read_status_but_not_change_anything") {
        return;
    }
    let tmp = open_tempdir();
    let cache = tmp.path().join("cache");
    file_aged(&cache.join("old"), 100, 10 * DAY);
    let socket = tmp.path().join("run/cw.sock");
    let config = config_text(&socket, &[("c", &cache, "")])
        .replace("[daemon]\n", "[daemon]\nsocket_group = \"nogroup\"\n");
    // No limits: the old file goes only if a request evicts it.
    let daemon = Daemon::start(tmp.path(), &config);
    let dir_mode = std::fs::metadata(socket.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o750);
    let sock_mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(sock_mode, 0o660);

    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                "curl",
                "-s",
                "-w",
                "\n%{http_code}",
                "--unix-socket",
            ])
            .arg(&socket)
            .args(args)
            .output()
            .expect("setpriv and curl are installed (.ci/run installs them)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.parse::<u16>().unwrap_or(0), body.to_string())
    };
    let (code, body) = as_nobody(&["http://localhost/v1/status"]);
    assert_eq!(code, 200, "{body}");
    for path in [
        "/v1/caches/c/evict",
        "/v1/caches/c/verify?repair=true",
        "/v1/reload",
    ] {
        let (code, body) = as_nobody(&["-X", "POST", &format!("http://localhost{path}")]);
        assert_eq!(code, 403, "{path}: {body}");
        assert!(body.contains("uid 65534"), "{body}");
    }
    assert!(
        cache.join("old").exists(),
        "refused requests change nothing"
    );
    // The daemon's own uid (root here) may: a targeted eviction removes the file.
    let (code, report) = daemon.post("/v1/caches/c/evict?entry=old", "");
    assert_eq!(code, 200, "{report}");
    assert!(!cache.join("old").exists());
}

#[test]
fn targeted_evictions_over_the_socket_say_what_they_did_not_find() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    file_aged(&cache.join("a"), 100, 10 * DAY);
    file_aged(&cache.join("b"), 100, 10 * DAY);
    let socket = tmp.path().join("run/cw.sock");
    let daemon = Daemon::start(tmp.path(), &config_text(&socket, &[("c", &cache, "")]));
    let (code, body) = daemon.post("/v1/caches/c/evict?entry=nosuch", "");
    assert_eq!(code, 404, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("no entry named nosuch in cache \"c\""));
    let (code, report) = daemon.post("/v1/caches/c/evict", r#"{"entries": ["a", "nosuch"]}"#);
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["not_found"], serde_json::json!(["nosuch"]));
    assert_eq!(report["evicted"][0]["entry"], "a");
    let (code, body) = daemon.post("/v1/caches/c/evict?module=b", "");
    assert_eq!(code, 400, "modules are for go-mod caches: {body}");
    assert!(cache.join("b").exists());
    assert_eq!(daemon.stop().code(), Some(0));
}

/// `promtool check metrics` where Debian's prometheus package is installed (scripts/test
/// installs it); the text must at least be well-formed lines elsewhere.
fn check_prometheus_text(text: &str) {
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    match promtool {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && said.trim().is_empty(),
                "promtool: {said}\n{text}"
            );
        }
        Err(_) => eprintln!("promtool not installed: metrics checked for form only"),
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit_once(' ').map(|(_, v)| v).unwrap_or("");
        assert!(value.parse::<f64>().is_ok(), "not a sample line: {line:?}");
    }
}

#[test]
fn metrics_are_served_on_loopback_tcp_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    file_aged(&cache.join("a"), 1000, HOUR);
    let socket = tmp.path().join("run/cw.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let expiring = tmp.path().join("expiring");
    file_aged(&expiring.join("old"), 1000, 10 * DAY);
    let config = config_text(
        &socket,
        &[
            ("c", &cache, "max_size = \"1 GiB\""),
            ("d", &expiring, "max_age = \"1d\""),
        ],
    )
    .replace(
        "[daemon]\n",
        &format!("[daemon]\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
    );
    let daemon = Daemon::start(tmp.path(), &config);
    wait_for("the expired entry evicted", DEADLINE, || {
        (!expiring.join("old").exists()).then_some(())
    });
    let tcp = |request: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    };
    let answer = tcp("GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let text = answer.split_once("\r\n\r\n").unwrap().1;
    assert!(
        text.contains("cachewarden_cache_entries{cache=\"c\",kind=\"dir\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "cachewarden_evicted_by_reason_entries_total{cache=\"d\",kind=\"dir\",reason=\"max-age\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("cachewarden_last_enforcement_timestamp_seconds{cache=\"c\""),
        "{text}"
    );
    check_prometheus_text(text);
    monitoring_examples_use_only_these_metrics(text);
    // Nothing but /metrics: no status, no evictions, no reload over TCP.
    for request in [
        "GET /v1/status HTTP/1.1\r\nhost: x\r\n\r\n",
        "POST /v1/caches/c/evict HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
        "POST /v1/reload HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
    ] {
        let answer = tcp(request);
        assert!(answer.starts_with("HTTP/1.1 404"), "{request}: {answer}");
    }
    assert!(cache.join("a").exists());
    assert_eq!(daemon.stop().code(), Some(0));

    // Only loopback addresses are accepted.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        config.replace(&format!("127.0.0.1:{port}"), "0.0.0.0:9587"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("metrics_listen") && stderr.contains("loopback"),
        "{stderr}"
    );
}

#[test]
fn every_removal_is_in_the_audit_trail() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    file_aged(&cache.join("expired"), 1000, 10 * DAY);
    file_aged(&cache.join("asked-for"), 1000, 2 * DAY);
    file_aged(&cache.join("kept"), 1000, 2 * DAY);
    let socket = tmp.path().join("run/cw.sock");
    let state = tmp.path().join("state");
    let config = config_text(&socket, &[("c", &cache, "max_age = \"5d\"")]).replace(
        "[daemon]\n",
        &format!("[daemon]\nstate_dir = \"{}\"\n", state.display()),
    );
    let daemon = Daemon::start(tmp.path(), &config);
    wait_for("the expired entry evicted", DEADLINE, || {
        (!cache.join("expired").exists()).then_some(())
    });
    let (code, report) = daemon.post("/v1/caches/c/evict?entry=asked-for", "");
    assert_eq!(code, 200, "{report}");

    let (code, trail) = daemon.get("/v1/audit");
    assert_eq!(code, 200, "{trail}");
    let trail = trail.as_array().unwrap().clone();
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert_eq!(trail[0]["entry"], "expired");
    assert_eq!(trail[0]["reason"], "max-age");
    assert!(trail[0]["bytes"].as_u64().unwrap() >= 1000);
    assert!(trail[0]["last_use"].as_i64().unwrap() < now() - 9 * 86400);
    assert_eq!(trail[1]["entry"], "asked-for");
    assert_eq!(trail[1]["reason"], "request");
    assert_eq!(trail[1]["uid"], nix::unistd::getuid().as_raw());
    let (_, filtered) = daemon.get(&format!("/v1/audit?since={}&cache=c&limit=1", now() - 3600));
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    assert_eq!(filtered[0]["entry"], "asked-for");
    let (_, other) = daemon.get("/v1/audit?cache=nosuch");
    assert_eq!(other, serde_json::json!([]));

    // The CLI asks the daemon; with the daemon stopped it reads the file.
    let cfg = daemon.config.clone();
    let log = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["--config", cfg.to_str().unwrap(), "log"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = log(&[]);
    assert!(
        text.contains("max-age") && text.contains("request (uid"),
        "{text}"
    );
    assert_eq!(daemon.stop().code(), Some(0));
    let records = json(&log(&["--since", "1h", "--json"]));
    assert_eq!(records.as_array().unwrap().len(), 2, "{records}");
    let mode = std::fs::metadata(state.join("audit.jsonl"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the trail is private");

    // Restarted with nothing to evict, its status still names the last eviction (the
    // request's), from the trail, not `never` (issue #30).
    let at = trail[1]["at"].as_i64().unwrap();
    let daemon = Daemon::start(tmp.path(), &config);
    let last = daemon.cache_status("c")["last_eviction"].clone();
    assert_eq!(last["at"].as_i64(), Some(at), "{last}");
    // (Removals of one second are one eviction: both here, if they shared it.)
    let same_second = trail
        .iter()
        .filter(|r| r["at"].as_i64() == Some(at))
        .count();
    assert_eq!(last["entries"], same_second, "{last}");
    assert!(last["freed_bytes"].as_u64().unwrap() >= 1000, "{last}");
    daemon.stop();
}

#[test]
fn entries_evicted_for_size_that_come_back_are_counted_and_doctor_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    for name in ["a", "b", "c", "d"] {
        file_aged(&cache.join(name), 100_000, DAY);
    }
    let socket = tmp.path().join("run/cw.sock");
    let config = config_text(
        &socket,
        &[("c", &cache, "max_size = \"150 KB\"\nmin_age = \"1m\"")],
    );
    let daemon = Daemon::start(tmp.path(), &config);
    wait_for("eviction to max_size", DEADLINE, || {
        (files(&cache).len() == 1).then_some(())
    });
    let evicted: Vec<&str> = ["a", "b", "c", "d"]
        .into_iter()
        .filter(|n| !cache.join(n).exists())
        .collect();
    // The build needs them again: they come back (young, so they stay).
    for name in &evicted {
        std::fs::write(cache.join(name), vec![1u8; 100_000]).unwrap();
    }
    let status = wait_for("the re-creations counted", DEADLINE, || {
        let s = daemon.cache_status("c");
        (s["recreated_after_eviction"]["entries"] == 3).then_some(s)
    });
    assert!(
        status["recreated_after_eviction"]["bytes"]
            .as_u64()
            .unwrap()
            >= 300_000
    );
    let (_, metrics) = http(&socket, "GET", "/metrics", "");
    assert!(
        metrics
            .contains("cachewarden_recreated_after_eviction_entries{cache=\"c\",kind=\"dir\"} 3"),
        "{metrics}"
    );
    // The working set: the three that came back (used now), not the cold fourth nor
    // each eviction and re-creation again.
    let set = wait_for("the working set taken", DEADLINE, || {
        let s = daemon.cache_status("c");
        s["working_set"]["bytes"].as_u64()
    });
    let cached: u64 = evicted
        .iter()
        .map(|n| std::fs::metadata(cache.join(n)).unwrap().blocks() * 512)
        .sum();
    assert_eq!(set, cached, "{}", daemon.cache_status("c"));
    let out = Command::new(BIN)
        .args(["--config", daemon.config.to_str().unwrap(), "doctor"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let advice = format!(
        "raise max_size to at least {}",
        cachewarden::units::format_bytes(set)
    );
    assert!(
        text.contains("is below this cache's working set") && text.contains(&advice),
        "{text}"
    );
    assert_eq!(daemon.stop().code(), Some(0));
}

/// The example alert rules and dashboard in `packaging/monitoring/` name only metrics the
/// daemon serves, and promtool accepts the rules where it is installed.
fn monitoring_examples_use_only_these_metrics(served: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/monitoring");
    for file in ["cachewarden-alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("cachewarden_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                served.contains(&format!("# TYPE {name} ")),
                "{file} names {name}, which /metrics does not serve"
            );
            rest = &rest[at + name.len()..];
        }
    }
    match Command::new("promtool")
        .args(["check", "rules"])
        .arg(dir.join("cachewarden-alerts.yml"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(_) => eprintln!("promtool not installed: alert rules not checked"),
    }
}

#[test]
fn a_redirected_log_carries_no_colour_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    file_aged(&cache.join("a"), 100, HOUR);
    let socket = tmp.path().join("run/cw.sock");
    let daemon = Daemon::start(tmp.path(), &config_text(&socket, &[("c", &cache, "")]));
    let log = daemon.log_text();
    assert_eq!(daemon.stop().code(), Some(0));
    assert!(log.contains("first scan done"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a log file: {log:?}"
    );
}

/// `schedule` and `verify_schedule` firing at the same minute: both run (issue #31: the
/// verify slot was lost every time, `last_verify` stayed null).
#[test]
fn coinciding_schedules_both_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    file_aged(&cache.join("a"), 100, HOUR);
    let socket = tmp.path().join("run/cw.sock");
    let every_minute = "schedule = \"* * * * *\"\nverify_schedule = \"* * * * *\"";
    let daemon = Daemon::start(
        tmp.path(),
        &config_text(&socket, &[("c", &cache, every_minute)]),
    );
    let status = wait_for("a scheduled sweep", Duration::from_secs(150), || {
        let s = daemon.cache_status("c");
        (!s["problems"]["last_verify"].is_null()).then_some(s)
    });
    assert!(status["last_enforcement"].as_i64().is_some(), "{status}");
    daemon.assert_index_is_fresh_scan("c");
}
