//! The one-shot subcommands, run without a daemon, and config errors.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;

fn cachewarden(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Each broken config: exit 2, and the message names the file, the line and the key.
#[test]
fn bad_config_files_exit_2_naming_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let head = format!(
        "[daemon]\nsocket = \"{}/s.sock\"\n\n[[cache]]\nname = \"c\"\nkind = \"dir\"\n",
        tmp.path().display()
    );
    let path_line = format!("path = \"{}\"\n", cache.display());
    let cases: Vec<(&str, String, usize, &str, &str)> = vec![
        (
            "syntax error",
            format!("{head}{path_line}max_size = \"1 GiB\n"),
            8,
            "max_size",
            "invalid",
        ),
        (
            "unknown key",
            format!("{head}{path_line}max_sise = \"1 GiB\"\n"),
            8,
            "max_sise",
            "unknown field",
        ),
        (
            "bad size",
            format!("{head}{path_line}max_size = \"twelve\"\n"),
            8,
            "max_size",
            "invalid size",
        ),
        (
            "bad cron line",
            format!("{head}{path_line}schedule = \"*/5 * *\"\n"),
            8,
            "schedule",
            "5 fields",
        ),
        (
            "bad cron value",
            format!("{head}{path_line}verify_schedule = \"0 25 * * *\"\n"),
            8,
            "verify_schedule",
            "invalid schedule",
        ),
        (
            "relative path",
            format!("{head}path = \"relative/cache\"\n"),
            7,
            "path",
            "relative path",
        ),
        (
            "cache path is a file",
            format!(
                "{head}path = \"{}/cache-path-is-a-file.toml\"\n",
                tmp.path().display()
            ),
            7,
            "path",
            "is not a directory",
        ),
        (
            "ambiguous size",
            format!("{head}{path_line}max_size = \"10G\"\n"),
            8,
            "max_size",
            "say \"10 GiB\" (powers of 1024, as du -h means) or \"10 GB\"",
        ),
        (
            "bad duration",
            format!("{head}{path_line}max_age = \"a while\"\n"),
            8,
            "max_age",
            "invalid duration",
        ),
    ];
    for (what, text, line, key, needle) in cases {
        let file = tmp.path().join(format!("{}.toml", what.replace(' ', "-")));
        std::fs::write(&file, &text).unwrap();
        for args in [
            vec!["config", "check", file.to_str().unwrap()],
            vec!["--config", file.to_str().unwrap(), "daemon"],
        ] {
            let out = cachewarden(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{what}: {err}");
            let location = format!("{}:{line}: key `{key}`", file.display());
            assert!(
                err.contains(&location),
                "{what}: {err:?} lacks {location:?}"
            );
            assert!(err.contains(needle), "{what}: {err:?} lacks {needle:?}");
        }
    }
    let out = cachewarden(&["config", "check", "/nonexistent/config.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/config.toml: cannot read config file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_check_prints_the_effective_config() {
    let tmp = tempfile::tempdir().unwrap();
    let text = config_text(
        &tmp.path().join("s.sock"),
        &[("c", tmp.path(), "max_size = \"2 GiB\"\nmin_free = \"10%\"")],
    );
    let file = tmp.path().join("c.toml");
    std::fs::write(&file, text).unwrap();
    let out = cachewarden(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "max_size = 2147483648  # 2.0 GiB",
        "min_free = \"10%\"",
        "min_age = \"10m\"",
        "schedule = \"17 * * * *\"",
    ] {
        assert!(printed.contains(needle), "{printed} lacks {needle}");
    }
}

#[test]
fn example_config_checks_clean_on_a_fresh_machine() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let out = Command::new(BIN)
        .args(["config", "check", example.to_str().unwrap()])
        // No go caches here: "auto" finds none and says so, which is no error.
        .env("HOME", "/nonexistent")
        .env("GOCACHE", "/nonexistent/go-build")
        .env("GOMODCACHE", "/nonexistent/mod")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("waiting for /nonexistent/go-build"),
        "{printed}"
    );
}

#[test]
fn one_shot_scan_evict_and_verify_work_without_a_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    for i in 0..4 {
        file_aged(&cache.join(format!("f{i}")), 40 * 1024, (5 - i) * DAY);
    }
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        config_text(
            &tmp.path().join("none.sock"),
            &[("c", &cache, "max_size = \"80 KiB\"")],
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();

    let out = cachewarden(&["--config", cfg, "scan", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "over the limit is a finding: {}",
        stderr(&out)
    );
    let scan = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(scan[0]["entries"], 4);
    assert_eq!(scan[0]["over_limits"][0], "max_size");

    let out = cachewarden(&["--config", cfg, "evict", "--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let plan = json(&String::from_utf8_lossy(&out.stdout));
    let planned: Vec<_> = plan[0]["evicted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"].as_str().unwrap())
        .collect();
    assert_eq!(planned, ["f0", "f1"]);
    assert_eq!(plan[0]["evicted"][0]["reason"], "max-size");
    assert_eq!(files(&cache).len(), 4, "a dry run removes nothing");

    let out = cachewarden(&["--config", cfg, "evict"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("evicted 2 entries"));
    assert_eq!(files(&cache), ["f2", "f3"]);
    let out = cachewarden(&["--config", cfg, "evict", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "nothing left to do");

    let out = cachewarden(&["--config", cfg, "verify", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);
    assert_eq!(v["caches"][0]["checked"], 2);

    let out = cachewarden(&["--config", cfg, "scan", "--cache", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no cache named \"nope\""));
}

/// An unreadable entry is a problem with the documented JSON shape; `--repair` removes it.
/// Run as nobody, since root reads everything.
#[test]
fn verify_reports_unreadable_entries_and_repairs_them() {
    if !running_as_root("verify_reports_unreadable_entries_and_repairs_them") {
        return;
    }
    let tmp = open_tempdir();
    let cache = tmp.path().join("cache");
    file_aged(&cache.join("good"), 100, DAY);
    file_aged(&cache.join("sub/locked"), 100, DAY);
    std::fs::set_permissions(
        cache.join("sub/locked"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let nobody = nix::unistd::Uid::from_raw(65534);
    for p in [
        cache.as_path(),
        &cache.join("good"),
        &cache.join("sub"),
        &cache.join("sub/locked"),
    ] {
        nix::unistd::chown(p, Some(nobody), None).unwrap();
    }
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        config_text(&tmp.path().join("none.sock"), &[("c", &cache, "")]),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let as_nobody = |extra: &[&str]| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                BIN,
                "--config",
                config.to_str().unwrap(),
                "verify",
            ])
            .args(extra)
            .env("HOME", "/nonexistent")
            .output()
            .unwrap()
    };
    // In words: one problem, said as one (issue #30: "1 problems").
    let out = as_nobody(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 problem in 2 entries"), "{text}");
    let out = as_nobody(&["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{v}");
    assert_eq!(problems[0]["cache"], "c");
    assert_eq!(problems[0]["entry"], "sub/locked");
    assert_eq!(problems[0]["path"], "sub/locked");
    assert_eq!(problems[0]["problem"], "unreadable");
    assert_eq!(problems[0]["repaired"], false);
    assert!(cache.join("sub/locked").exists());

    let out = as_nobody(&["--json", "--repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["problems"][0]["repaired"], true);
    assert_eq!(files(&cache), ["good"]);
}

#[test]
fn status_without_a_daemon_is_a_clear_error() {
    let out = cachewarden(&["status", "--socket", "/nonexistent/cw.sock"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot reach the cachewarden daemon at /nonexistent/cw.sock"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_documents_exit_codes() {
    let out = cachewarden(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Exit status: 0 ok; 1 the check found something"),
        "{text}"
    );
    let out = cachewarden(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn status_table_talks_to_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    file_aged(&cache.join("a"), 4096, 3 * DAY);
    let socket = tmp.path().join("run/cw.sock");
    let daemon = Daemon::start(
        tmp.path(),
        &config_text(&socket, &[("mycache", &cache, "max_size = \"1 GiB\"")]),
    );
    let out = cachewarden(&["--config", daemon.config.to_str().unwrap(), "status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("CACHE"), "{text}");
    assert!(
        text.contains("mycache") && text.contains("4.0 KiB / 1.0 GiB") && text.contains("3d"),
        "{text}"
    );
    let out = cachewarden(&["status", "--json", "--socket", socket.to_str().unwrap()]);
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["caches"][0]["name"], "mycache");
}

/// `evict --entry` / `--module` remove exactly what was named, never anything used
/// within min_age, and say so.
#[test]
fn targeted_eviction_removes_exactly_the_named_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    file_aged(&cache.join("keep"), 100, 3 * DAY);
    file_aged(&cache.join("pkg@v1"), 100, 3 * DAY);
    file_aged(&cache.join("pkg@v2"), 100, 3 * DAY);
    file_aged(&cache.join("pkg@v3"), 100, Duration::from_secs(5));
    file_aged(&cache.join("other"), 100, 3 * DAY);
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        config_text(&tmp.path().join("none.sock"), &[("c", &cache, "")]),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();

    let out = cachewarden(&[
        "--config",
        cfg,
        "evict",
        "--entry",
        "other",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(plan[0]["evicted"][0]["entry"], "other");
    assert_eq!(plan[0]["evicted"][0]["reason"], "requested");
    assert!(cache.join("other").exists());

    let out = cachewarden(&["--config", cfg, "evict", "--cache", "c", "--entry", "other"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!cache.join("other").exists());

    // --module names Go modules: refused on a dir cache.
    let out = cachewarden(&["--config", cfg, "evict", "--module", "pkg"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("go-mod caches"), "{}", stderr(&out));

    let out = cachewarden(&[
        "--config", cfg, "evict", "--entry", "pkg@v1", "--entry", "pkg@v2", "--entry", "pkg@v3",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the young version is skipped: {}",
        stderr(&out)
    );
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(report[0]["skipped"][0]["entry"], "pkg@v3");
    assert!(report[0]["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("min_age"));
    assert_eq!(files(&cache), ["keep", "pkg@v3"]);
    // The text names the entry's path, the min_age and when it may go (issue #30).
    let out = cachewarden(&["--config", cfg, "evict", "--entry", "pkg@v3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "skipped pkg@v3 (pkg@v3): used 0m ago, within min_age (10m); removable from "
        ),
        "{text}"
    );

    let out = cachewarden(&["--config", cfg, "evict", "--entry", "nothing-like-it"]);
    assert_eq!(out.status.code(), Some(1), "nothing matched");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no entry named nothing-like-it in cache c"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn doctor_names_what_needs_action_and_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let socket = tmp.path().join("run/cw.sock");
    let config = tmp.path().join("c.toml");
    std::fs::write(&config, config_text(&socket, &[("c", &cache, "")])).unwrap();
    let doctor = |extra_env: &[(&str, &str)]| {
        let mut command = Command::new(BIN);
        command
            .args(["--config", config.to_str().unwrap(), "doctor", "--json"])
            .env_remove("GOCACHEPROG")
            .env_remove("GOFLAGS");
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        let findings = json(&String::from_utf8_lossy(&out.stdout));
        (out.status.code(), findings)
    };
    let severity_of = |findings: &serde_json::Value, check: &str| -> Vec<String> {
        findings
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == check)
            .map(|f| f["severity"].as_str().unwrap().to_string())
            .collect()
    };

    // A healthy config and no daemon: a warning with the command that starts one.
    let (code, findings) = doctor(&[]);
    assert_eq!(code, Some(0), "{findings}");
    assert_eq!(severity_of(&findings, "config"), ["ok"]);
    assert_eq!(severity_of(&findings, "cache c"), ["ok"]);
    assert_eq!(severity_of(&findings, "daemon"), ["warning"]);
    assert!(findings
        .to_string()
        .contains("systemctl --user enable --now cachewarden"));

    // GOCACHEPROG bypasses the cache: action, exit 1.
    let (code, findings) = doctor(&[("GOCACHEPROG", "/usr/local/bin/cacheprog")]);
    assert_eq!(code, Some(1));
    assert_eq!(severity_of(&findings, "go-env"), ["action"]);

    // A running daemon is found, with the config it runs.
    let daemon = Daemon::start(tmp.path(), &std::fs::read_to_string(&config).unwrap());
    let (code, findings) = doctor(&[]);
    assert_eq!(code, Some(0), "{findings}");
    assert_eq!(severity_of(&findings, "daemon"), ["ok"]);
    assert!(findings.to_string().contains("config.toml"), "{findings}");
    drop(daemon);

    // A cache directory that is gone needs action; a broken config too.
    std::fs::remove_dir(&cache).unwrap();
    let (code, findings) = doctor(&[]);
    assert_eq!(code, Some(1));
    assert_eq!(severity_of(&findings, "cache c"), ["action"], "{findings}");
    assert!(
        findings.to_string().contains("does not exist yet"),
        "{findings}"
    );
    std::fs::write(&config, "[[cache]\n").unwrap();
    let (code, findings) = doctor(&[]);
    assert_eq!(code, Some(1));
    assert_eq!(severity_of(&findings, "config"), ["action"], "{findings}");
}

/// Issue #30, item 5: `~/` is the home in every path key, not "a relative path".
#[test]
fn tilde_paths_are_the_home_in_a_plain_table() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".cache/go-build")).unwrap();
    let file = home.path().join("c.toml");
    std::fs::write(
        &file,
        "[daemon]\nsocket = \"~/run/cw.sock\"\nstate_dir = \"~/state\"\n\n[[cache]]\nname = \"gb\"\nkind = \"go-build\"\npath = \"~/.cache/go-build\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check", file.to_str().unwrap()])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    let home = home.path().canonicalize().unwrap();
    for needle in [
        format!("socket = \"{}/run/cw.sock\"", home.display()),
        format!("state_dir = \"{}/state\"", home.display()),
        format!("path = \"{}/.cache/go-build\"", home.display()),
    ] {
        assert!(printed.contains(&needle), "{printed} lacks {needle}");
    }
}

/// Issue #30, item 10: `log` refuses a bare small `--since` and an unknown `--cache`.
#[test]
fn log_refuses_a_unitless_since_and_an_unknown_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let text = with_state_dir(
        &config_text(&tmp.path().join("s.sock"), &[("c", &cache, "")]),
        &tmp.path().join("state"),
    );
    let file = tmp.path().join("c.toml");
    std::fs::write(&file, text).unwrap();
    let config = file.to_str().unwrap();
    let out = cachewarden(&["--config", config, "log", "--since", "2"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("\"2h\""), "{}", stderr(&out));
    let out = cachewarden(&["--config", config, "log", "--cache", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no cache named \"nope\"") && stderr(&out).contains("configured: c"),
        "{}",
        stderr(&out)
    );
    for since in ["2h", "1700000000"] {
        let out = cachewarden(&["--config", config, "log", "--since", since, "--cache", "c"]);
        assert_eq!(out.status.code(), Some(0), "{since}: {}", stderr(&out));
    }
}

/// Issue #30, item 10: `man` is in the help; item 8: the documented exit codes.
#[test]
fn help_lists_man_and_dry_run_exit_codes_match_it() {
    let help = String::from_utf8_lossy(&cachewarden(&["--help"]).stdout).into_owned();
    assert!(help.contains("man "), "{help}");
    let evict = String::from_utf8_lossy(&cachewarden(&["evict", "--help"]).stdout).into_owned();
    assert!(
        evict.contains("or a limit would still not be met"),
        "{evict}"
    );
    // Nothing evictable (all within min_age) and the limit unmet: a dry run exits 1.
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(cache.join("young"), vec![0u8; 8192]).unwrap();
    let file = tmp.path().join("c.toml");
    std::fs::write(
        &file,
        config_text(
            &tmp.path().join("s.sock"),
            &[("c", &cache, "max_size = \"1 KiB\"")],
        ),
    )
    .unwrap();
    let out = cachewarden(&["--config", file.to_str().unwrap(), "evict", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("limit not met") && printed.contains("if none of it is used again"),
        "{printed}"
    );
}
