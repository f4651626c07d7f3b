use super::*;
use crate::kinds::Kind;

fn gocache() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(
        t.path().join("README"),
        "This directory holds cached build artifacts from the Go build system.\n",
    )
    .unwrap();
    t
}

fn id(n: u8) -> [u8; 32] {
    [n; 32]
}

/// What go sends: requests and put bodies, one JSON value each.
fn requests(items: &[serde_json::Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        serde_json::to_writer(&mut out, item).unwrap();
        out.extend(b"\n\n");
    }
    out
}

fn put(n: u64, action: &[u8; 32], body: &[u8]) -> Vec<serde_json::Value> {
    let output: [u8; 32] = sha2::Sha256::digest(body).into();
    let mut v = vec![serde_json::json!({
        "ID": n, "Command": "put", "ActionID": B64.encode(action),
        "OutputID": B64.encode(output), "BodySize": body.len(),
    })];
    if !body.is_empty() {
        v.push(serde_json::Value::String(B64.encode(body)));
    }
    v
}

fn get(n: u64, action: &[u8; 32]) -> serde_json::Value {
    serde_json::json!({"ID": n, "Command": "get", "ActionID": B64.encode(action)})
}

fn run(store: &mut Store, input: &[serde_json::Value]) -> (Served, Vec<serde_json::Value>) {
    let mut out = Vec::new();
    let served = serve(store, &requests(input)[..], &mut out).unwrap();
    let responses = serde_json::Deserializer::from_slice(&out)
        .into_iter::<serde_json::Value>()
        .map(Result::unwrap)
        .collect();
    (served, responses)
}

#[test]
fn what_go_puts_it_gets_back_from_go_s_own_layout() {
    let t = gocache();
    let mut store = Store::open(t.path()).unwrap();
    let mut input = put(1, &id(1), b"compiled package");
    input.extend(put(2, &id(2), b""));
    input.push(get(3, &id(1)));
    input.push(get(4, &id(2)));
    input.push(get(5, &id(9)));
    input.push(serde_json::json!({"ID": 6, "Command": "close"}));
    let (served, r) = run(&mut store, &input);
    assert_eq!(
        r[0]["KnownCommands"],
        serde_json::json!(["get", "put", "close"])
    );
    let path = r[1]["DiskPath"].as_str().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), b"compiled package");
    assert!(
        path.starts_with(t.path().to_str().unwrap()),
        "below GOCACHE: go copies, never moves it"
    );
    assert_eq!(r[3]["DiskPath"], r[1]["DiskPath"]);
    assert_eq!(r[3]["Size"], 16);
    let output: [u8; 32] = sha2::Sha256::digest(b"compiled package").into();
    assert_eq!(r[3]["OutputID"], B64.encode(output));
    assert!(r[3]["Time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        std::fs::read(r[4]["DiskPath"].as_str().unwrap()).unwrap(),
        b""
    );
    assert_eq!(r[5]["Miss"], true);
    assert_eq!(r[6]["ID"], 6);
    assert_eq!(
        served,
        Served {
            hits: 2,
            misses: 1,
            puts: 2,
            damaged: 0
        }
    );
    // Go's own layout: the go-build kind reads every entry as go wrote it.
    let action = std::fs::read(t.path().join(format!("01/{}-a", to_hex(&id(1))))).unwrap();
    assert_eq!(go_build::parse_action(&action).unwrap().output, output);
    // And a later go command (another cacheprog) gets it too.
    drop(store);
    let mut store = Store::open(t.path()).unwrap();
    let (served, _) = run(&mut store, &[get(1, &id(1))]);
    assert_eq!(served.hits, 1);
}

#[test]
fn a_damaged_output_is_a_miss_and_is_removed() {
    let t = gocache();
    let mut store = Store::open(t.path()).unwrap();
    let (_, r) = run(&mut store, &put(1, &id(1), b"0123456789"));
    let path = r[1]["DiskPath"].as_str().unwrap().to_string();
    // Same size, one byte changed: only the hash tells.
    std::fs::write(&path, b"0123456780").unwrap();
    let (served, r) = run(&mut store, &[get(2, &id(1))]);
    assert_eq!(r[1]["Miss"], true);
    assert_eq!(served.damaged, 1);
    assert!(!std::path::Path::new(&path).exists());
    // Truncated: a miss as well.
    let (_, r) = run(&mut store, &put(3, &id(1), b"0123456789"));
    std::fs::write(r[1]["DiskPath"].as_str().unwrap(), b"01").unwrap();
    let (served, _) = run(&mut store, &[get(4, &id(1))]);
    assert_eq!((served.hits, served.damaged), (0, 1));
    // Put again, it is served again.
    run(&mut store, &put(5, &id(1), b"0123456789"));
    let (served, _) = run(&mut store, &[get(6, &id(1))]);
    assert_eq!(served.hits, 1);
}

#[test]
fn a_put_whose_body_is_not_its_output_is_refused_not_stored() {
    let t = gocache();
    let mut store = Store::open(t.path()).unwrap();
    let mut input = put(1, &id(1), b"right");
    input[1] = serde_json::Value::String(B64.encode(b"wrong"));
    let (_, r) = run(&mut store, &input);
    assert!(
        r[1]["Err"].as_str().unwrap().contains("does not hash"),
        "{r:?}"
    );
    let (_, r) = run(&mut store, &[get(2, &id(1))]);
    assert_eq!(r[1]["Miss"], true);
}

#[test]
fn garbage_from_go_is_an_error_not_a_panic() {
    let t = gocache();
    let mut store = Store::open(t.path()).unwrap();
    for input in [
        &b"not json"[..],
        b"{\"ID\":1}",
        b"{\"ID\":1,\"Command\":\"put\",\"BodySize\":3}\n{}",
    ] {
        let mut out = Vec::new();
        assert!(serve(&mut store, input, &mut out).is_err());
    }
    let (_, r) = run(
        &mut store,
        &[serde_json::json!({"ID": 1, "Command": "get", "ActionID": "!!"})],
    );
    assert_eq!(r[1]["Miss"], true);
}

#[test]
fn the_daemon_never_removes_what_a_running_cacheprog_leased() {
    let t = gocache();
    let mut store = Store::open(t.path()).unwrap();
    run(&mut store, &put(1, &id(1), b"leased"));
    run(&mut store, &put(2, &id(2), b"leased too"));
    let kind = go_build::GoBuildKind::new(t.path().to_path_buf());
    let in_use = kind.in_use().expect("the lease is seen");
    assert!(
        in_use
            .by
            .contains(&format!("cacheprog (pid {})", std::process::id())),
        "{in_use:?}"
    );
    let entry = go_build::GoId {
        hash: id(1),
        role: go_build::Role::Action,
    };
    assert!(kind.holds(&in_use, &entry, 0));
    let evict = crate::kinds::Removing::Evict(&crate::kinds::Survivors::NONE);
    // (This test's process holds the lease; the kind sees it as any other's.)
    match kind.remove(&entry, crate::now() + 100, evict) {
        crate::kinds::Removal::InUse(why) => assert!(why.contains("leases it"), "{why}"),
        other => panic!("{other:?}"),
    }
    // The cacheprog exits: its lease ends with it, and the next one clears the file.
    drop(store);
    assert!(kind.in_use().is_none());
    let store = Store::open(t.path()).unwrap();
    let leases = std::fs::read_dir(t.path().join(leases::LEASES))
        .unwrap()
        .count();
    assert_eq!(leases, 1, "only the live one");
    drop(store);
    assert!(matches!(
        kind.remove(&entry, crate::now() + 100, evict),
        crate::kinds::Removal::Removed { .. }
    ));
}
