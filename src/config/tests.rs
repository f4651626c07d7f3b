use super::*;

pub fn test_env() -> Env {
    Env {
        home: Some(PathBuf::from("/nonexistent-home")),
        uid: 1000,
        xdg_runtime_dir: Some(PathBuf::from("/run/user/1000")),
        xdg_config_home: None,
        xdg_state_home: None,
        long_running: false,
    }
}

fn parse_str(text: &str) -> Result<Config, ConfigError> {
    parse(text, ConfigSource::File("test.toml".into()), &test_env())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
    /// Arbitrary text is a config or an error naming the file; never a panic.
    #[test]
    fn arbitrary_config_text_never_panics(text in "(\\[\\[?cache\\]?\\]?|name|kind|path|max_size|=|\"|[a-z0-9 %./\n])*") {
        if let Err(e) = parse_str(&text) {
            proptest::prop_assert!(e.to_string().starts_with("test.toml"), "{}", e);
        }
    }

    /// Arbitrary bytes (as the loader reads them: invalid UTF-8 replaced) likewise.
    #[test]
    fn arbitrary_config_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        if let Err(e) = parse_str(&String::from_utf8_lossy(&bytes)) {
            proptest::prop_assert!(e.to_string().starts_with("test.toml"), "{}", e);
        }
    }
}

#[test]
fn example_config_parses() {
    let dir = tempfile::tempdir().unwrap();
    // Its commented-out dir table too, every key uncommented, the path a temp dir.
    let example = include_str!("../../config.example.toml");
    let dir_start = example.find("# A plain directory (here ccache's)").unwrap();
    let (active, dir_table) = example.split_at(dir_start);
    let dir_table = &dir_table[..dir_table.find("# --- Shared build servers").unwrap()];
    let text: String = active
        .lines()
        .chain(dir_table.lines().map(|l| match l.strip_prefix("# ") {
            Some(key) if key.starts_with("[[cache]]") || key.contains(" = ") => key,
            _ => l,
        }))
        .map(|l| l.replace("/var/cache/ccache", dir.path().to_str().unwrap()) + "\n")
        .collect();
    let config = parse_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let ccache = config.caches.iter().find(|c| c.name == "ccache");
    assert!(ccache.is_some_and(|c| !c.keep.is_empty()), "{text}");
}

/// The example names every key the parser accepts (issue #30: it called itself
/// complete and lacked six). The keys are the parser's own, from its unknown-key error.
#[test]
fn example_config_names_every_key() {
    let example = include_str!("../../config.example.toml");
    let keys_of = |text: &str| -> Vec<String> {
        let e = parse_str(text).unwrap_err().to_string();
        let listed = e
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("{e}"));
        listed
            .split(", ")
            .map(|k| k.trim_matches('`').to_string())
            .collect()
    };
    let daemon = keys_of("[daemon]\nno_such_key = 1\n");
    let cache = keys_of("[[cache]]\nname = \"a\"\nkind = \"dir\"\npath = \"/\"\nno_such_key = 1\n");
    assert!(
        daemon.len() >= 5 && cache.len() >= 19,
        "{daemon:?} {cache:?}"
    );
    let missing: Vec<&String> = daemon
        .iter()
        .chain(&cache)
        .filter(|k| {
            !example
                .lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{k} = ")))
        })
        .collect();
    assert!(missing.is_empty(), "config.example.toml lacks {missing:?}");
}

#[test]
fn embedded_default_parses() {
    let config = parse(EMBEDDED_DEFAULT, ConfigSource::Embedded, &test_env()).unwrap();
    assert_eq!(
        config.daemon.socket,
        PathBuf::from("/run/user/1000/cachewarden/cachewarden.sock")
    );
}

#[test]
fn full_cache_table() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[daemon]
socket = "/tmp/x.sock"
log_level = "debug"

[[cache]]
name = "ccache"
kind = "dir"
path = "{}"
max_size = "2 GiB"
max_age = "30d"
min_free = "10%"
min_age = "1h"
keep = ["*.keep"]
schedule = "*/5 * * * *"
verify_schedule = "0 3 * * 0"
on_problem = "repair"
"#,
        dir.path().display()
    );
    let c = parse_str(&text).unwrap();
    let cache = &c.caches[0];
    assert_eq!(cache.limits.max_size, Some(SizeLimit::Bytes(2 << 30)));
    assert_eq!(cache.limits.max_age, Some(Duration::from_secs(30 * 86400)));
    assert_eq!(cache.limits.min_free, Some(SizeLimit::Percent(10.0)));
    assert_eq!(cache.limits.min_age, Duration::from_secs(3600));
    assert_eq!(cache.on_problem, OnProblem::Repair);
    assert_eq!(cache.path, dir.path().canonicalize().unwrap());
    assert_eq!(c.daemon.log_level, "debug");
}

fn cache_with(dir: &Path, extra: &str) -> String {
    format!(
        "[[cache]]\nname = \"c\"\nkind = \"dir\"\npath = \"{}\"\n{extra}\n",
        dir.display()
    )
}

fn expect_err(text: &str, line: usize, key: &str, needle: &str) {
    let e = parse_str(text).unwrap_err();
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.key.as_deref(), Some(key), "{e}");
    assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
    assert!(e.to_string().starts_with("test.toml:"), "{e}");
}

#[test]
fn per_user_tables_name_the_key_they_got_wrong() {
    let table =
        |extra: &str| format!("[[cache]]\nname = \"go-build\"\nkind = \"go-build\"\n{extra}\n");
    expect_err(
        &table("path = \"auto\"\nusers = \"everyone\""),
        5,
        "users",
        "uid range",
    );
    expect_err(
        &table("path = \"auto\"\nusers = [\"no-such-user-xyz\"]"),
        5,
        "users",
        "no such user \"no-such-user-xyz\"",
    );
    expect_err(
        &table("path = \"/srv/go-build\"\nusers = \"0-0\""),
        4,
        "path",
        "\"auto\" or start with \"~/\"",
    );
}

#[test]
fn the_packaged_shared_server_config_parses() {
    let text = include_str!("../../packaging/etc/shared-server.toml");
    let config = parse_str(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config
            .groups
            .iter()
            .map(|g| g.name.as_str())
            .collect::<Vec<_>>(),
        ["go-build", "go-mod"]
    );
    assert!(config.discovers);
    assert!(matches!(
        config.daemon.socket_group,
        Some((_, ALL_USERS_GID))
    ));
}

#[test]
fn errors_name_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A bad line in a cache table: the error names line 5 (the line after the path)
    // and its key.
    for (line, key, needle) in [
        ("max_sise = \"1 GiB\"", "max_sise", "unknown field"),
        ("max_size = \"1 XB\"", "max_size", "invalid size"),
        ("max_age = \"soon\"", "max_age", "invalid duration"),
        ("schedule = \"* * *\"", "schedule", "5 fields"),
        ("min_age = \"30s\"", "min_age", "safe floor"),
        ("keep = [\"[\"]", "keep", "invalid pattern"),
    ] {
        expect_err(&cache_with(d, line), 5, key, needle);
    }
    // A bad path: line 4, key `path`.
    for (path, needle) in [
        ("rel/dir", "relative"),
        ("/etc/hostname", "not a directory"),
        ("/usr", "system or shared directory"),
    ] {
        let text = format!("[[cache]]\nname = \"c\"\nkind = \"dir\"\npath = \"{path}\"\n");
        expect_err(&text, 4, "path", needle);
    }
    // A path that does not exist yet is waited for, not an error.
    let waiting =
        parse_str("[[cache]]\nname = \"c\"\nkind = \"dir\"\npath = \"/nonexistent/x\"\n").unwrap();
    assert!(waiting.caches[0].waiting);
    assert!(waiting.notes[0].contains("waiting for /nonexistent/x"));
    expect_err(
        "[[cache]]\nname = \"c\"\nkind = \"blob\"\npath = \"/x\"\n",
        3,
        "kind",
        "unknown variant",
    );
    expect_err(
        "[[cache]]\nname = \"c\"\nkind = \"dir\"\n",
        2,
        "path",
        "cache \"c\" has no path",
    );
    expect_err(
        "[daemon]\nsocket_group = \"no-such-group-xyz\"\n",
        2,
        "socket_group",
        "no such group",
    );
    let e = parse_str("[daemon\nsocket = 1").unwrap_err();
    assert_eq!(e.line, Some(1), "{e}");
}

#[test]
fn min_age_floor_can_be_overridden_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let c = parse_str(&cache_with(
        dir.path(),
        "min_age = \"30s\"\nunsafe_allow_short_min_age = true",
    ))
    .unwrap();
    assert_eq!(c.caches[0].limits.min_age, Duration::from_secs(30));
}

#[test]
fn overlapping_and_duplicate_caches_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let one = cache_with(dir.path(), "");
    let two = one.replace("name = \"c\"", "name = \"d\"").replace(
        &dir.path().display().to_string(),
        &dir.path().join("sub").display().to_string(),
    );
    let e = parse_str(&format!("{one}{two}")).unwrap_err();
    assert!(e.message.contains("overlaps"), "{e}");
    let e = parse_str(&format!("{one}{one}")).unwrap_err();
    assert!(e.message.contains("duplicate"), "{e}");
}

#[test]
fn home_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let env = Env {
        home: Some(home.path().to_path_buf()),
        ..test_env()
    };
    let e = parse(&cache_with(home.path(), ""), ConfigSource::Embedded, &env).unwrap_err();
    assert!(e.message.contains("home directory"), "{e}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
    /// The corpus's configs (and the shipped examples), mutated: a config or an error
    /// naming the file, never a panic.
    #[test]
    fn corpus_configs_mutated_are_a_config_or_an_error_naming_the_file(
        pick in 0usize..64,
        edits in crate::corpus::edits(),
    ) {
        let mut corpus = crate::corpus::files("config");
        corpus.push(("example".into(), include_bytes!("../../config.example.toml").to_vec()));
        corpus.push(("shared-server".into(), include_bytes!("../../packaging/etc/shared-server.toml").to_vec()));
        let (_, sample) = &corpus[pick % corpus.len()];
        let text = String::from_utf8_lossy(&crate::corpus::mutate(sample, &edits)).into_owned();
        if let Err(e) = parse_str(&text) {
            proptest::prop_assert!(e.to_string().starts_with("test.toml"), "{}", e);
        }
    }
}

#[test]
fn corpus_configs_parse_and_those_that_are_wrong_name_the_key() {
    for (name, bytes) in crate::corpus::files("config") {
        let text = String::from_utf8(bytes).unwrap();
        let key = match name.as_str() {
            "unknown-key.toml" => "max_sise",
            "bad-values.toml" => "max_size",
            _ => {
                parse_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                continue;
            }
        };
        let e = parse_str(&text).expect_err(&name).to_string();
        assert!(e.contains(key), "{name}: {e}");
    }
}

/// `[cache]` with one bracket (a user's first try): the error says to use two
/// (issue #30: it said only "invalid type: map, expected a sequence").
#[test]
fn a_single_bracket_cache_table_is_named_as_such() {
    let err = parse_str("[cache]\nname = \"c\"\nkind = \"dir\"\npath = \"/x\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`[[cache]]` table (two brackets)"), "{text}");
    assert!(text.contains(":1"), "names the line: {text}");
}

#[test]
fn roots_may_be_globs_and_a_root_finding_nothing_is_a_note() {
    let t = tempfile::tempdir().unwrap();
    let tag = "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by cargo.\n";
    for project in ["a", "b"] {
        let target = t.path().join(format!("src/{project}/rust/target"));
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("CACHEDIR.TAG"), tag).unwrap();
    }
    // A symlink the glob matches leads nowhere.
    std::os::unix::fs::symlink(t.path().join("src/a"), t.path().join("src/link")).unwrap();
    let table = |roots: &str| {
        format!("[[cache]]\nname = \"rust\"\nkind = \"cargo-target\"\nroots = [{roots}]\n")
    };
    let config = parse_str(&table(&format!("\"{}/src/*/rust\"", t.path().display()))).unwrap();
    let mut names: Vec<&str> = config.caches.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["rust@a.rust.target", "rust@b.rust.target"]);
    assert!(config.notes.is_empty(), "{:?}", config.notes);
    let config = parse_str(&table(&format!("\"{}/elsewhere\"", t.path().display()))).unwrap();
    assert!(config.caches.is_empty());
    assert!(
        config.notes[0].contains("finds no cargo-target cache below")
            && config.notes[0].contains("elsewhere"),
        "{:?}",
        config.notes
    );
    expect_err(&table("\"/src/[z\""), 4, "roots", "not a valid pattern");
}
