use super::*;
use crate::golang::dirhash::go_mod_hash;
use crate::kinds::Survivors;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

/// Writes a module zip the way a proxy serves it: every entry `module@version/name`.
pub fn write_zip(path: &Path, module: &str, version: &str, files: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        zip.start_file(format!("{module}@{version}/{name}"), opts)
            .unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

fn set_times(path: &Path, t: i64) {
    let ft = filetime::FileTime::from_unix_time(t, 0);
    for e in walkdir::WalkDir::new(path).contents_first(true) {
        let e = e.unwrap();
        filetime::set_symlink_file_times(e.path(), ft, ft).unwrap();
    }
}

/// Puts one module version into a module cache as `go mod download` leaves it:
/// .info, .mod, .zip, .ziphash, .lock, `list`, and the read-only extracted tree, all
/// last used at `t`. Returns the key.
pub fn put_version(
    root: &Path,
    module: &str,
    version: &str,
    files: &[(&str, &[u8])],
    t: i64,
) -> Arc<str> {
    let (m, v) = (escape(module).unwrap(), escape(version).unwrap());
    let vdir = root.join(vdir_rel(&m));
    std::fs::create_dir_all(&vdir).unwrap();
    let zip = vdir.join(format!("{v}.zip"));
    write_zip(&zip, module, version, files);
    let h = hash_zip(std::fs::File::open(&zip).unwrap()).unwrap();
    std::fs::write(vdir.join(format!("{v}.ziphash")), &h).unwrap();
    std::fs::write(vdir.join(format!("{v}.lock")), b"").unwrap();
    std::fs::write(
        vdir.join(format!("{v}.info")),
        format!("{{\"Version\":\"{version}\",\"Time\":\"2024-01-01T00:00:00Z\"}}"),
    )
    .unwrap();
    let gomod = files
        .iter()
        .find(|(n, _)| *n == "go.mod")
        .map_or(format!("module {module}\n").into_bytes(), |(_, d)| {
            d.to_vec()
        });
    std::fs::write(vdir.join(format!("{v}.mod")), gomod).unwrap();
    let mut versions: Vec<String> = std::fs::read_dir(&vdir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_suffix(".mod").map(str::to_string)
        })
        .collect();
    sort_versions(&mut versions);
    std::fs::write(
        vdir.join("list"),
        versions
            .iter()
            .map(|v| format!("{v}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let tree = root.join(format!("{m}@{v}"));
    for (name, data) in files {
        let p = tree.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    for e in walkdir::WalkDir::new(&tree).contents_first(true) {
        let e = e.unwrap();
        if e.file_type().is_dir() {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
        }
    }
    set_times(&tree, t);
    for ext in ["zip", "ziphash", "info", "mod"] {
        set_times(&vdir.join(format!("{v}.{ext}")), t);
    }
    Arc::from(format!("{m}@{v}").as_str())
}

fn files_v(n: u8) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("go.mod", b"module example.com/Hello\n\ngo 1.19\n".to_vec()),
        (
            "hello.go",
            format!("package hello\n\nconst N = {n}\n").into_bytes(),
        ),
        ("sub/data.txt", vec![n; 5000]),
    ]
}

pub(super) fn put(root: &Path, module: &str, version: &str, n: u8, t: i64) -> Arc<str> {
    let files = files_v(n);
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(a, b)| (*a, b.as_slice())).collect();
    put_version(root, module, version, &refs, t)
}

pub(super) fn kind(root: &Path) -> GoModKind {
    let mut k = GoModKind::new(root.to_path_buf(), Duration::from_secs(3600));
    k.in_use = |_, _| None;
    k
}

pub(super) fn id(key: &Arc<str>, role: Role) -> ModId {
    ModId::version(key, role)
}

fn codes(found: Vec<Finding>) -> Vec<&'static str> {
    let mut c: Vec<_> = found.into_iter().map(|f| f.problem).collect();
    c.sort();
    c
}

/// Make a read-only file of a tree writable, as a user editing it would.
fn edit(path: &Path, content: &[u8]) {
    let dir = path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    if path.exists() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::write(path, content).unwrap();
}

#[test]
fn case_escaping_matches_go() {
    assert_eq!(
        escape("github.com/BurntSushi/toml").unwrap(),
        "github.com/!burnt!sushi/toml"
    );
    assert_eq!(
        unescape("github.com/!burnt!sushi/toml").unwrap(),
        "github.com/BurntSushi/toml"
    );
    assert_eq!(unescape("v1.0.0-!r!c1").unwrap(), "v1.0.0-RC1");
    assert!(
        unescape("github.com/Burnt").is_none(),
        "upper case is not escaped form"
    );
    assert!(unescape("a!").is_none() && unescape("a!1").is_none() && unescape("a!!b").is_none());
    assert!(escape("a!b").is_none() && escape("ü").is_none());
}

#[test]
fn versions_sort_as_semver_does() {
    for v in [
        "v1.0.0",
        "v0.0.0-20200101000000-abcdefabcdef",
        "v2.0.0+incompatible",
        "v1.2.3-rc.1",
    ] {
        assert!(is_canonical_version(v), "{v}");
    }
    for v in [
        "v1",
        "v1.2",
        "1.0.0",
        "v1.0.0+build",
        "v01.0.0",
        "v1.0.0-01",
        "v1.0.0-",
        "v1.0.0.tmp-1",
    ] {
        assert!(!is_canonical_version(v), "{v}");
    }
    // The semver.org precedence example, shuffled.
    let want = [
        "v1.0.0-alpha",
        "v1.0.0-alpha.1",
        "v1.0.0-alpha.beta",
        "v1.0.0-beta",
        "v1.0.0-beta.2",
        "v1.0.0-beta.11",
        "v1.0.0-rc.1",
        "v1.0.0",
        "v1.2.0",
        "v1.10.0",
        "v2.0.0+incompatible",
    ];
    let mut got: Vec<String> = want.iter().rev().map(|s| s.to_string()).collect();
    got.swap(2, 7);
    sort_versions(&mut got);
    assert_eq!(got, want);
}

/// Vectors from go1.19: `go mod download -json` of a module served from a file://
/// proxy with exactly these files printed these Sum and GoModSum (and wrote them to
/// go.sum and the .ziphash).
#[test]
fn hashes_match_real_go_output() {
    let files: [(&str, &[u8]); 4] = [
        ("go.mod", b"module example.com/Hello\n\ngo 1.19\n"),
        (
            "hello.go",
            b"package hello\n\n// Greeting says hello.\nconst Greeting = \"hello\"\n",
        ),
        ("sub/data.txt", b"two  spaces and a newline\n"),
        ("LICENSE", b"Public domain.\n"),
    ];
    const SUM: &str = "h1:ot8331Zhp7El6q3XpsW1X8yDaWgK9GDizaEfnA64YH0=";
    const GO_MOD_SUM: &str = "h1:Ujqv6D3TiGFVgA/p4BVj4WbisobGKr5FKXi6Lk0m1Zs=";
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("v1.0.0.zip");
    write_zip(&zip, "example.com/Hello", "v1.0.0", &files);
    assert_eq!(hash_zip(std::fs::File::open(&zip).unwrap()).unwrap(), SUM);
    // Zip metadata (order, compression) does not matter, names and contents do.
    let mut reversed = files;
    reversed.reverse();
    write_zip(&zip, "example.com/Hello", "v1.0.0", &reversed);
    assert_eq!(hash_zip(std::fs::File::open(&zip).unwrap()).unwrap(), SUM);
    let key = put_version(dir.path(), "example.com/Hello", "v1.0.0", &files, 1);
    assert_eq!(&*key, "example.com/!hello@v1.0.0");
    assert_eq!(
        hash_dir(dir.path(), Path::new(&*key), "example.com/Hello@v1.0.0").unwrap(),
        SUM
    );
    assert_eq!(go_mod_hash(files[0].1), GO_MOD_SUM);
    assert!(parse_ziphash(SUM.as_bytes()).is_some());
    assert!(
        parse_ziphash(format!("{SUM}\n").as_bytes()).is_some(),
        "go trims space"
    );
    assert!(parse_ziphash(b"h1:short").is_none());
    assert!(parse_ziphash(b"\0\0\0").is_none());
    // A truncated zip is unreadable, as for go.
    let bytes = std::fs::read(&zip).unwrap();
    std::fs::write(&zip, &bytes[..bytes.len() - 30]).unwrap();
    assert!(hash_zip(std::fs::File::open(&zip).unwrap()).is_err());
}

#[test]
fn file_names_map_to_versions_and_roles() {
    assert_eq!(parse_vfile("v1.0.0.zip"), Some(("v1.0.0", VFile::Zip)));
    assert_eq!(
        parse_vfile("v1.2.3-rc.1.ziphash"),
        Some(("v1.2.3-rc.1", VFile::Ziphash))
    );
    assert_eq!(
        parse_vfile("v1.0.0.zip123456.tmp"),
        Some(("v1.0.0", VFile::ZipTemp))
    );
    assert_eq!(
        parse_vfile("v1.0.0.mod0.tmp"),
        Some(("v1.0.0", VFile::MetaTemp))
    );
    assert_eq!(
        parse_vfile("v1.0.0-!r!c1.lock"),
        Some(("v1.0.0-!r!c1", VFile::Lock))
    );
    assert_eq!(parse_vfile("list"), None);
    assert_eq!(parse_vfile("v1.0.zip"), None);
    assert_eq!(
        parse_tree_name("errors@v0.9.1"),
        Some(("errors", "v0.9.1", false))
    );
    assert_eq!(
        parse_tree_name("errors@v0.9.1.tmp-123"),
        Some(("errors", "v0.9.1", true))
    );
    assert_eq!(parse_tree_name("errors@latest"), None);

    let k = kind(Path::new("/x"));
    let mut out = Vec::new();
    k.entries_at(
        Path::new("cache/download/github.com/!burnt!sushi/toml/@v/v1.0.0.ziphash"),
        &mut out,
    );
    let key: Arc<str> = Arc::from("github.com/!burnt!sushi/toml@v1.0.0");
    assert_eq!(
        out,
        [
            id(&key, Role::Tree),
            id(&key, Role::Zip),
            id(&key, Role::Meta)
        ]
    );
    for ignored in [
        "cache/download/github.com/pkg/errors/@v/v0.9.1.lock",
        "cache/download/github.com/pkg/errors/@v/list",
        "cache/download/github.com/pkg/errors/@v",
        "cache/lock",
    ] {
        out.clear();
        k.entries_at(Path::new(ignored), &mut out);
        assert!(out.is_empty(), "{ignored}");
    }
    out.clear();
    k.entries_at(
        Path::new("github.com/!burnt!sushi/toml@v1.0.0/decode.go"),
        &mut out,
    );
    assert_eq!(out[0], id(&key, Role::Tree));
    assert_eq!(
        k.entry_at(Path::new("cache/download/sumdb/sum.golang.org/lookup/x"))
            .unwrap()
            .role,
        Role::Sumdb
    );
    let hash = "ab".repeat(32);
    assert_eq!(
        k.entry_at(Path::new(&format!("cache/vcs/{hash}.info")))
            .unwrap(),
        ModId {
            key: Arc::from(hash.as_str()),
            role: Role::Vcs
        }
    );

    assert_eq!(
        k.name_of(&id(&key, Role::Zip)),
        "github.com/BurntSushi/toml@v1.0.0"
    );
    assert_eq!(
        k.path_of(&id(&key, Role::Tree)),
        "github.com/!burnt!sushi/toml@v1.0.0"
    );
    assert_eq!(
        k.path_of(&id(&key, Role::Zip)),
        "cache/download/github.com/!burnt!sushi/toml/@v/v1.0.0.zip"
    );
    assert_eq!(
        k.parse_name("github.com/BurntSushi/toml@v1.0.0"),
        Some(id(&key, Role::Tree))
    );
    assert_eq!(k.parse_name("../../etc@v1.0.0"), None);
    assert_eq!(k.parse_name("github.com/x@latest"), None);
    assert_eq!(k.tier(&id(&key, Role::Tree)), 0);
    assert_eq!(k.tier(&id(&key, Role::Zip)), 1);
    assert_eq!(k.tier(&id(&key, Role::Meta)), AGE_ONLY);
}

#[test]
fn scan_finds_every_part_of_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let old = crate::now() - 10 * 86400;
    let a = put(root, "example.com/Hello", "v1.0.0", 1, old);
    let b = put(root, "example.com/Hello", "v1.1.0", 2, old + 100);
    let c = put(root, "golang.org/x/text", "v0.3.0", 3, old);
    // Nested module path next to its parent's versions.
    let d = put(root, "golang.org/x/text/sub", "v0.1.0", 4, old);
    // Only the download files, no tree (tier-0 evicted).
    let e = put(root, "example.com/zonly", "v1.0.0", 5, old);
    fsutil::remove_tree_at(
        fsutil::open_dir_beneath(root, Path::new("example.com")).unwrap(),
        OsStr::new("zonly@v1.0.0"),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("cache/download/sumdb/sum.golang.org/lookup")).unwrap();
    std::fs::write(
        root.join("cache/download/sumdb/sum.golang.org/lookup/x@v1"),
        b"tile",
    )
    .unwrap();
    let hash = "cd".repeat(32);
    std::fs::create_dir_all(root.join("cache/vcs").join(&hash).join("objects")).unwrap();
    std::fs::write(root.join("cache/vcs").join(&hash).join("HEAD"), b"ref").unwrap();
    std::fs::write(root.join(format!("cache/vcs/{hash}.info")), b"git3:x").unwrap();
    std::fs::write(root.join(format!("cache/vcs/{hash}.lock")), b"").unwrap();
    std::fs::write(root.join("cache/lock"), b"").unwrap();

    let k = kind(root);
    let found = k.scan();
    assert!(found.errors.is_empty(), "{:?}", found.errors);
    let get = |key: &Arc<str>, role| {
        found
            .entries
            .iter()
            .find(|(i, _)| *i == id(key, role))
            .map(|(_, m)| *m)
    };
    for key in [&a, &b, &c, &d] {
        for role in [Role::Tree, Role::Zip, Role::Meta] {
            assert!(get(key, role).is_some(), "{key} {role:?}");
        }
    }
    assert!(get(&e, Role::Tree).is_none() && get(&e, Role::Zip).is_some());
    let tree = get(&a, Role::Tree).unwrap();
    assert!(
        tree.apparent_bytes >= 5000 && tree.disk_bytes >= 8192,
        "{tree:?}"
    );
    assert_eq!(
        get(&a, Role::Zip).unwrap().last_use,
        old,
        "last use is shared"
    );
    assert_eq!(get(&b, Role::Meta).unwrap().last_use, old + 100);
    assert!(found.entries.iter().any(|(i, _)| i.role == Role::Sumdb));
    assert!(found
        .entries
        .iter()
        .any(|(i, m)| i.role == Role::Vcs && m.apparent_bytes == 3 + 6));
    assert_eq!(found.entries.len(), 4 * 3 + 2 + 2);
    // Sizes add up to most of what du reports: du also counts the directories above
    // the entries and the list files (a lot, relative to these tiny versions).
    let total: u64 = found.entries.iter().map(|(_, m)| m.disk_bytes).sum();
    let du = std::process::Command::new("du")
        .args(["-s", "-B1"])
        .arg(root)
        .output()
        .unwrap();
    let du: u64 = String::from_utf8(du.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(total <= du && total * 2 >= du, "{total} vs du {du}");
    // A watch event's stat agrees with the scan.
    for (i, m) in &found.entries {
        assert_eq!(k.stat(i).unwrap(), Some(*m), "{i:?}");
    }
}

#[test]
fn verify_names_each_kind_of_damage() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let old = crate::now() - 10 * 86400;
    let k = kind(root);
    let check = |key: &Arc<str>, role| codes(k.verify(&id(key, role)));
    let healthy = put(root, "example.com/healthy", "v1.0.0", 1, old);
    for role in [Role::Tree, Role::Zip, Role::Meta] {
        assert!(check(&healthy, role).is_empty(), "{role:?}");
    }
    let vdir = |m: &str| root.join(format!("cache/download/{m}/@v"));

    let corrupt = put(root, "example.com/corrupt", "v1.0.0", 2, old);
    let zip = vdir("example.com/corrupt").join("v1.0.0.zip");
    let bytes = std::fs::read(&zip).unwrap();
    std::fs::write(&zip, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(check(&corrupt, Role::Zip), ["zip-corrupt"]);
    assert!(check(&corrupt, Role::Tree).is_empty(), "the tree is fine");

    let other = put(root, "example.com/other", "v1.0.0", 3, old);
    let zip = vdir("example.com/other").join("v1.0.0.zip");
    write_zip(
        &zip,
        "example.com/other",
        "v1.0.0",
        &[("go.mod", b"module example.com/other\n")],
    );
    assert_eq!(check(&other, Role::Zip), ["zip-hash-mismatch"]);

    let edited = put(root, "example.com/edited", "v1.0.0", 4, old);
    edit(
        &root.join("example.com/edited@v1.0.0/hello.go"),
        b"package hello // edited\n",
    );
    assert_eq!(check(&edited, Role::Tree), ["tree-hash-mismatch"]);
    let extra = put(root, "example.com/extra", "v1.0.0", 5, old);
    edit(&root.join("example.com/extra@v1.0.0/sub/stray.txt"), b"x");
    assert_eq!(check(&extra, Role::Tree), ["tree-hash-mismatch"]);

    let missing = put(root, "example.com/missing", "v1.0.0", 6, old);
    std::fs::remove_file(vdir("example.com/missing").join("v1.0.0.ziphash")).unwrap();
    assert_eq!(check(&missing, Role::Zip), ["ziphash-missing"]);
    assert_eq!(check(&missing, Role::Tree), ["ziphash-missing"]);
    let malformed = put(root, "example.com/malformed", "v1.0.0", 7, old);
    std::fs::write(
        vdir("example.com/malformed").join("v1.0.0.ziphash"),
        [0u8; 47],
    )
    .unwrap();
    assert_eq!(check(&malformed, Role::Zip), ["ziphash-malformed"]);

    let partial = put(root, "example.com/partial", "v1.0.0", 8, old);
    std::fs::write(vdir("example.com/partial").join("v1.0.0.partial"), b"").unwrap();
    assert_eq!(check(&partial, Role::Tree), ["partial"]);
    // While go holds the lock the marker is go's extraction in progress.
    let lock = std::fs::File::open(vdir("example.com/partial").join("v1.0.0.lock")).unwrap();
    let held = Flock::lock(lock, FlockArg::LockExclusiveNonblock).unwrap();
    assert!(check(&partial, Role::Tree).is_empty());
    drop(held);

    let temps = put(root, "example.com/temps", "v1.0.0", 9, old);
    let tmp = vdir("example.com/temps").join("v1.0.0.zip12345.tmp");
    std::fs::write(&tmp, b"half a download").unwrap();
    // Leftovers are found by scans (go leaves them only when interrupted).
    k.scan();
    assert!(
        check(&temps, Role::Zip).is_empty(),
        "a young temp is a download in progress"
    );
    set_times(&tmp, old);
    assert_eq!(check(&temps, Role::Zip), ["stale-temp"]);
    let tmp_dir = root.join("example.com/temps@v1.0.0.tmp-987");
    std::fs::create_dir(&tmp_dir).unwrap();
    set_times(&tmp_dir, old);
    k.scan();
    assert_eq!(check(&temps, Role::Tree), ["stale-temp"]);

    let garbled = put(root, "example.com/garbled", "v1.0.0", 10, old);
    std::fs::write(vdir("example.com/garbled").join("v1.0.0.info"), b"{\"Vers").unwrap();
    std::fs::write(vdir("example.com/garbled").join("v1.0.0.mod"), b"\xff\xfe").unwrap();
    assert_eq!(check(&garbled, Role::Meta), ["info-garbled", "mod-garbled"]);
    std::fs::write(
        vdir("example.com/garbled").join("v1.0.0.info"),
        b"{\"Version\":\"v9.9.9\"}",
    )
    .unwrap();
    std::fs::write(vdir("example.com/garbled").join("v1.0.0.mod"), b"go 1.19\n").unwrap();
    assert_eq!(check(&garbled, Role::Meta), ["info-garbled", "mod-garbled"]);

    // Incremental: a clean tree is not hashed again until something in it changes.
    let again = put(root, "example.com/again", "v1.0.0", 11, old);
    assert!(check(&again, Role::Tree).is_empty());
    assert!(k
        .verified
        .lock()
        .unwrap()
        .contains_key(&(again.clone(), Role::Tree)));
    edit(
        &root.join("example.com/again@v1.0.0/hello.go"),
        b"package hello // changed\n",
    );
    assert_eq!(check(&again, Role::Tree), ["tree-hash-mismatch"]);
}

#[test]
fn tiers_remove_tree_then_zip_then_everything_and_keep_locks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let old = crate::now() - 10 * 86400;
    let k = kind(root);
    let a = put(root, "example.com/Hello", "v1.0.0", 1, old);
    let b = put(root, "example.com/Hello", "v1.1.0", 2, old);
    let vdir = root.join("cache/download/example.com/!hello/@v");
    let evict =
        |key: &Arc<str>, role| k.remove(&id(key, role), old, Removing::Evict(&Survivors::NONE));

    // Tier 0: the tree only; go can re-extract it offline.
    assert!(matches!(evict(&a, Role::Tree), Removal::Removed { disk_bytes } if disk_bytes > 5000));
    assert!(!root.join("example.com/!hello@v1.0.0").exists());
    for f in [
        "v1.0.0.zip",
        "v1.0.0.ziphash",
        "v1.0.0.info",
        "v1.0.0.mod",
        "v1.0.0.lock",
    ] {
        assert!(vdir.join(f).exists(), "{f}");
    }
    assert!(!vdir.join("v1.0.0.partial").exists());
    assert!(matches!(evict(&a, Role::Tree), Removal::Gone));

    // Tier 1: zip and ziphash (and a tree, had it one).
    assert!(matches!(evict(&b, Role::Zip), Removal::Removed { .. }));
    assert!(!root.join("example.com/!hello@v1.1.0").exists());
    assert!(!vdir.join("v1.1.0.zip").exists() && !vdir.join("v1.1.0.ziphash").exists());
    assert!(vdir.join("v1.1.0.mod").exists() && vdir.join("v1.1.0.lock").exists());

    // Meta: the whole version, and `list` no longer names it.
    assert!(matches!(evict(&a, Role::Meta), Removal::Removed { .. }));
    assert!(!vdir.join("v1.0.0.mod").exists() && !vdir.join("v1.0.0.info").exists());
    assert!(!vdir.join("v1.0.0.zip").exists());
    assert!(
        vdir.join("v1.0.0.lock").exists(),
        "lock files are never deleted"
    );
    assert_eq!(
        std::fs::read_to_string(vdir.join("list")).unwrap(),
        "v1.1.0\n"
    );
    assert!(
        k.scan().entries.iter().all(|(i, _)| i.key != a),
        "nothing of a is left"
    );

    // Used since the plan was made: skipped.
    let c = put(root, "example.com/used", "v1.0.0", 3, old + 500);
    assert!(matches!(evict(&c, Role::Tree), Removal::Skipped(why) if why.contains("used since")));
    assert!(root.join("example.com/used@v1.0.0/hello.go").exists());
}

#[test]
fn a_busy_lock_or_a_running_go_command_defers_removal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let old = crate::now() - 10 * 86400;
    let mut k = kind(root);
    let a = put(root, "example.com/busy", "v1.0.0", 1, old);
    let lock_path = root.join("cache/download/example.com/busy/@v/v1.0.0.lock");
    let held = Flock::lock(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&lock_path)
            .unwrap(),
        FlockArg::LockExclusiveNonblock,
    )
    .unwrap();
    let r = k.remove(&id(&a, Role::Zip), old, Removing::Evict(&Survivors::NONE));
    assert!(
        matches!(&r, Removal::LockBusy(why) if why.contains("go holds")),
        "{r:?}"
    );
    assert!(root.join("example.com/busy@v1.0.0/hello.go").exists());
    assert!(!root
        .join("cache/download/example.com/busy/@v/v1.0.0.partial")
        .exists());
    drop(held);

    k.in_use = |_, _| {
        Some(InUse::since(
            IN_USE_EVERYTHING,
            "go (pid 1) running since now".into(),
        ))
    };
    let r = k.remove(&id(&a, Role::Tree), old, Removing::Evict(&Survivors::NONE));
    assert!(
        matches!(&r, Removal::InUse(why) if why.contains("pid 1")),
        "{r:?}"
    );
    assert!(
        !root
            .join("cache/download/example.com/busy/@v/v1.0.0.partial")
            .exists(),
        "marker undone"
    );
    assert!(root.join("example.com/busy@v1.0.0/hello.go").exists());
    assert_eq!(k.in_use().unwrap().since, i64::MIN);

    // A version with no @v at all (a stray tree) still gets a lock, as go would make.
    k.in_use = |_, _| None;
    let stray = put(root, "example.com/stray", "v1.0.0", 2, old);
    std::fs::remove_dir_all(root.join("cache/download/example.com/stray")).unwrap();
    assert!(matches!(
        k.remove(
            &id(&stray, Role::Tree),
            old,
            Removing::Evict(&Survivors::NONE)
        ),
        Removal::Removed { .. }
    ));
    assert!(root
        .join("cache/download/example.com/stray/@v/v1.0.0.lock")
        .exists());
}

#[test]
fn the_three_entries_of_a_version_can_be_removed_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let old = crate::now() - 10 * 86400;
    let k = kind(root);
    let keys: Vec<Arc<str>> = (0..8)
        .map(|i| put(root, "example.com/par", &format!("v1.0.{i}"), i, old))
        .collect();
    let ids: Vec<ModId> = keys
        .iter()
        .flat_map(|k| [id(k, Role::Tree), id(k, Role::Zip), id(k, Role::Meta)])
        .collect();
    let results = parallel::map(&ids, |i| {
        k.remove(i, old, Removing::Evict(&Survivors::NONE))
    });
    assert!(
        results.iter().all(|r| !matches!(r, Removal::Skipped(_))),
        "{results:?}"
    );
    assert!(k.scan().entries.is_empty());
    assert_eq!(
        std::fs::read_to_string(root.join("cache/download/example.com/par/@v/list")).unwrap(),
        ""
    );
}

#[test]
fn a_reloaded_min_age_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let k = GoModKind::new(dir.path().to_path_buf(), Duration::from_secs(86_400));
    let temp = dir.path().join("v1.0.0.zip123.tmp");
    std::fs::write(&temp, b"half").unwrap();
    let t = filetime::FileTime::from_unix_time(crate::now() - 7200, 0);
    filetime::set_file_mtime(&temp, t).unwrap();
    let st = nix::sys::stat::stat(&temp).unwrap();
    assert!(!k.stale(&st), "2 h old, min_age 1 day");
    k.configure(&KindSettings {
        min_age: Duration::from_secs(3600),
        guard_processes: vec!["go".into()],
    });
    assert!(k.stale(&st), "2 h old, min_age reloaded to 1 h");
}

#[test]
fn removal_never_follows_a_symlink_out_of_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("precious"), b"keep me").unwrap();
    let root = dir.path();
    let old = crate::now() - 10 * 86400;
    let k = kind(root);
    let a = put(root, "example.com/sym", "v1.0.0", 1, old);
    let tree = root.join("example.com/sym@v1.0.0");
    std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(outside.path(), tree.join("link")).unwrap();
    // A symlink where a directory should be inside the tree, too.
    std::fs::set_permissions(tree.join("sub"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(outside.path(), tree.join("sub/deeper")).unwrap();
    assert_eq!(codes(k.verify(&id(&a, Role::Tree))), ["tree-hash-mismatch"]);
    let removed = k.remove(&id(&a, Role::Tree), old, Removing::Evict(&Survivors::NONE));
    assert!(matches!(removed, Removal::Removed { .. }), "{removed:?}");
    assert!(!tree.exists());
    assert_eq!(
        std::fs::read(outside.path().join("precious")).unwrap(),
        b"keep me"
    );
}

#[test]
fn repair_removes_only_what_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let old = crate::now() - 10 * 86400;
    let k = kind(root);
    let vdir = |m: &str| root.join(format!("cache/download/{m}/@v"));
    let repair = |key: &Arc<str>, role| {
        let found = k.verify(&id(key, role));
        assert!(!found.is_empty());
        // (The engine repairs only entries older than min_age; the damage done here
        // is younger.)
        let r = k.remove(&id(key, role), crate::now() + 1, Removing::Repair(&found));
        assert!(matches!(r, Removal::Removed { .. }), "{r:?}");
        assert!(k.verify(&id(key, role)).is_empty(), "repaired");
    };

    let corrupt = put(root, "example.com/corrupt", "v1.0.0", 1, old);
    std::fs::write(
        vdir("example.com/corrupt").join("v1.0.0.zip"),
        b"PK garbage",
    )
    .unwrap();
    repair(&corrupt, Role::Zip);
    assert!(!vdir("example.com/corrupt").join("v1.0.0.zip").exists());
    assert!(
        !vdir("example.com/corrupt").join("v1.0.0.ziphash").exists(),
        "goes with its zip"
    );
    assert!(
        !root.join("example.com/corrupt@v1.0.0").exists(),
        "the tree goes too: without its .ziphash go would extract it anew, and the next \
         sweep would find it ziphash-missing"
    );
    assert!(
        k.verify(&id(&corrupt, Role::Tree)).is_empty(),
        "one repair converges"
    );

    let edited = put(root, "example.com/edited", "v1.0.0", 2, old);
    edit(
        &root.join("example.com/edited@v1.0.0/hello.go"),
        b"package hello // edited\n",
    );
    repair(&edited, Role::Tree);
    assert!(!root.join("example.com/edited@v1.0.0").exists());
    assert!(
        vdir("example.com/edited").join("v1.0.0.zip").exists(),
        "go re-extracts offline"
    );
    assert!(!vdir("example.com/edited").join("v1.0.0.partial").exists());

    let partial = put(root, "example.com/partial", "v1.0.0", 3, old);
    std::fs::write(vdir("example.com/partial").join("v1.0.0.partial"), b"").unwrap();
    repair(&partial, Role::Tree);
    assert!(!root.join("example.com/partial@v1.0.0").exists());
    assert!(!vdir("example.com/partial").join("v1.0.0.partial").exists());

    // A removal of ours killed after the tree went and before its marker did: the
    // scan still indexes the tree entry (the marker), and a repair finishes the job.
    let cut = put(root, "example.com/cut", "v1.0.0", 7, old);
    crate::fsutil::remove_tree_at(
        crate::fsutil::open_root(&root.join("example.com")).unwrap(),
        std::ffi::OsStr::new("cut@v1.0.0"),
    )
    .unwrap();
    std::fs::write(vdir("example.com/cut").join("v1.0.0.partial"), b"").unwrap();
    assert!(k
        .scan()
        .entries
        .iter()
        .any(|(e, _)| *e == id(&cut, Role::Tree)));
    repair(&cut, Role::Tree);
    assert!(!vdir("example.com/cut").join("v1.0.0.partial").exists());

    let garbled = put(root, "example.com/garbled", "v1.0.0", 4, old);
    put(root, "example.com/garbled", "v1.1.0", 5, old);
    std::fs::write(vdir("example.com/garbled").join("v1.0.0.mod"), b"").unwrap();
    repair(&garbled, Role::Meta);
    assert!(!vdir("example.com/garbled").join("v1.0.0.mod").exists());
    assert!(vdir("example.com/garbled").join("v1.0.0.info").exists());
    assert_eq!(
        std::fs::read_to_string(vdir("example.com/garbled").join("list")).unwrap(),
        "v1.1.0\n"
    );

    let temps = put(root, "example.com/temps", "v1.0.0", 6, old);
    let tmp = vdir("example.com/temps").join("v1.0.0.mod77.tmp");
    std::fs::write(&tmp, b"module x").unwrap();
    set_times(&tmp, old);
    k.scan();
    repair(&temps, Role::Meta);
    assert!(!tmp.exists() && vdir("example.com/temps").join("v1.0.0.mod").exists());
}

#[test]
fn only_module_caches_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    assert!(GoModKind::check_root(dir.path()).is_ok(), "empty");
    std::fs::write(dir.path().join("precious.txt"), b"x").unwrap();
    let err = GoModKind::check_root(dir.path()).unwrap_err();
    assert!(
        err.contains("does not look like a Go module cache"),
        "{err}"
    );
    std::fs::create_dir_all(dir.path().join("cache/download")).unwrap();
    assert!(GoModKind::check_root(dir.path()).is_ok());
}

#[test]
fn mount_options_tell_how_good_atime_is() {
    let info = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                40 27 0:40 / /home/u\\040x rw,noatime - ext4 /dev/vdb rw\n\
                41 27 0:41 / /srv rw - xfs /dev/vdc rw\n";
    assert_eq!(
        atime_mode(info, Path::new("/home/u x/go/pkg/mod")),
        AtimeMode::NoAtime
    );
    assert_eq!(
        atime_mode(info, Path::new("/home/ux/go")),
        AtimeMode::Relatime
    );
    assert_eq!(atime_mode(info, Path::new("/srv/mod")), AtimeMode::Strict);
    assert_eq!(atime_mode("", Path::new("/x")), AtimeMode::Unknown);
    // The kind's signal is the one for the mount its root is on.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let expected = match atime_mode(&mountinfo, Path::new("/tmp")) {
        AtimeMode::Relatime => SIGNAL_RELATIME,
        AtimeMode::Strict => SIGNAL_STRICT,
        AtimeMode::NoAtime => SIGNAL_NOATIME,
        AtimeMode::Unknown => SIGNAL_UNKNOWN,
    };
    assert_eq!(kind(Path::new("/tmp")).last_use_signal(), expected);
}

// Fuzzing, as property tests over arbitrary bytes (no nightly toolchain here for
// `cargo fuzz`): every parser of what go or a proxy wrote returns a value or an error,
// never a panic, and what it accepts round-trips.
proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
    #[test]
    fn what_go_wrote_never_panics_the_parsers(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        version in "v[0-9a-zA-Z.+!-]{0,24}",
    ) {
        let _ = super::layout::parse_ziphash(&bytes);
        let _ = super::layout::mod_ok(&bytes);
        let _ = super::layout::info_ok(&bytes, &version);
        let text = String::from_utf8_lossy(&bytes);
        let _ = super::layout::parse_vfile(&text);
        let _ = super::layout::parse_tree_name(&text);
        let _ = super::layout::split_key(&text);
        let _ = super::layout::valid_escaped_version(&text);
        let _ = super::layout::plain_module_path(&text);
        let _ = crate::golang::env::parse_env_file(&text);
    }

    #[test]
    fn module_paths_round_trip_and_versions_order_consistently(
        path in "\\PC{0,40}",
        v in "v[0-9]{1,3}(\\.[0-9]{1,3}){0,2}(-[0-9A-Za-z.-]{0,8})?(\\+[0-9A-Za-z.]{0,6})?",
        w in "v[0-9]{1,3}(\\.[0-9]{1,3}){0,2}(-[0-9A-Za-z.-]{0,8})?(\\+[0-9A-Za-z.]{0,6})?",
    ) {
        if let Some(escaped) = escape(&path) {
            proptest::prop_assert_eq!(unescape(&escaped), Some(path.clone()));
        }
        let _ = unescape(&path);
        let _ = is_canonical_version(&v);
        proptest::prop_assert_eq!(
            crate::golang::module::compare_versions(&v, &w),
            crate::golang::module::compare_versions(&w, &v).reverse()
        );
        proptest::prop_assert_eq!(
            crate::golang::module::compare_versions(&v, &v),
            std::cmp::Ordering::Equal
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]
    /// A module zip with any byte changed, or cut short, or of arbitrary bytes: hashing
    /// it gives a hash or an error, never a panic (and a changed byte never the original
    /// hash, unless it only touched zip metadata go does not hash).
    #[test]
    fn damaged_module_zips_never_panic_the_hasher(
        at in 0usize..4096,
        xor in 1u8..=255,
        cut in 0usize..4096,
        junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("v1.0.0.zip");
        write_zip(&zip, "example.com/m", "v1.0.0", &[("go.mod", b"module example.com/m\n"), ("a.go", b"package m\n")]);
        let mut bytes = std::fs::read(&zip).unwrap();
        let at = at % bytes.len();
        bytes[at] ^= xor;
        let cut = cut % bytes.len();
        for variant in [&bytes[..], &bytes[..cut], &junk[..]] {
            std::fs::write(&zip, variant).unwrap();
            let _ = hash_zip(std::fs::File::open(&zip).unwrap());
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1500))]
    /// The corpus's real `.info`, `.mod`, `.ziphash`, `@v/list`, zip and go env files
    /// pass their checks as they are; mutated, never a panic.
    #[test]
    fn corpus_files_go_wrote_pass_and_their_mutations_never_panic(
        pick in 0usize..64,
        edits in crate::corpus::edits(),
    ) {
        let corpus = crate::corpus::files("go-mod");
        let (name, sample) = &corpus[pick % corpus.len()];
        let bytes = crate::corpus::mutate(sample, &edits);
        let version = name.rsplit('-').next().unwrap().trim_end_matches(".info");
        if name.ends_with(".info") {
            proptest::prop_assert!(super::layout::info_ok(sample, version).is_ok(), "{}", name);
            let _ = super::layout::info_ok(&bytes, version);
        } else if name.ends_with(".mod") {
            proptest::prop_assert!(super::layout::mod_ok(sample).is_ok(), "{}", name);
            let _ = super::layout::mod_ok(&bytes);
        } else if name.ends_with(".ziphash") {
            proptest::prop_assert!(super::layout::parse_ziphash(sample).is_some(), "{}", name);
            let _ = super::layout::parse_ziphash(&bytes);
        } else if name.ends_with(".zip") {
            let dir = tempfile::tempdir().unwrap();
            let zip = dir.path().join(name);
            std::fs::write(&zip, sample).unwrap();
            proptest::prop_assert!(hash_zip(std::fs::File::open(&zip).unwrap()).is_ok(), "{}", name);
            std::fs::write(&zip, &bytes).unwrap();
            let _ = hash_zip(std::fs::File::open(&zip).unwrap());
        } else {
            for line in String::from_utf8_lossy(sample).lines() {
                proptest::prop_assert!(is_canonical_version(line), "{}: {}", name, line);
            }
            for line in String::from_utf8_lossy(&bytes).lines() {
                let _ = is_canonical_version(line);
                let _ = super::layout::valid_escaped_version(line);
            }
        }
        let env = crate::corpus::files("go-env");
        let (name, sample) = &env[pick % env.len()];
        let vars = crate::golang::env::parse_env_file(&String::from_utf8_lossy(sample));
        let gocache = vars.iter().find(|(k, _)| k == "GOCACHE").map(|(_, v)| v.as_str());
        let expected = if name == "goenv" { "/home/alice/.cache/go-build" } else { "/srv/cache/go-build" };
        proptest::prop_assert_eq!(gocache, Some(expected), "{}", name);
        let _ = crate::golang::env::parse_env_file(&String::from_utf8_lossy(&crate::corpus::mutate(sample, &edits)));
    }
}
