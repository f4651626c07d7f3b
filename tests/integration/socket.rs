//! The socket under many clients, slow clients and hostile local users (issue #15):
//! every client reads a well-formed answer, no user's connections starve another's,
//! and the daemon trusts no directory another user controls.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};

use crate::common::*;

/// Lets this test process open as many sockets as its hard limit allows.
fn raise_fd_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
}

/// The daemon's connection limits for this many open files (see `ConnectionLimits`).
const SMALL_FD_BUDGET: u64 = 1024 + 64; // 64 slots: 16 per uid, 4 kept for root

fn dir_cache(tmp: &Path, files: usize) -> std::path::PathBuf {
    let cache = tmp.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    for i in 0..files {
        std::fs::write(cache.join(format!("f{i:06}")), [1u8; 10]).unwrap();
    }
    cache
}

/// A daemon on a `dir` cache of `files` files (test fd limit raised; the daemon's
/// limited to `fd_limit` if given): (temp dir, cache, socket, daemon).
fn started(
    files: usize,
    fd_limit: Option<u64>,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    Daemon,
) {
    raise_fd_limit();
    let tmp = tempfile::tempdir().unwrap();
    let cache = dir_cache(tmp.path(), files);
    let socket = tmp.path().join("run/cw.sock");
    let daemon = Daemon::start_with(
        tmp.path(),
        &config_text(&socket, &[("c", &cache, "")]),
        fd_limit,
    );
    (tmp, cache, socket, daemon)
}

/// Sends `request`, reads the whole answer; the status code, or the error that ended
/// the read (a reset connection).
fn exchange(socket: &Path, request: &[u8]) -> Result<(u16, String), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
        .write_all(request)
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {answer:?}"))?;
    Ok((code, answer))
}

const STATUS: &[u8] = b"GET /v1/status HTTP/1.1\r\nhost: localhost\r\n\r\n";

/// `n` clients connect and ask at the same instant; their outcomes.
fn simultaneous(socket: &Path, n: usize) -> Vec<Result<(u16, String), String>> {
    let start = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (socket, start) = (socket.to_path_buf(), start.clone());
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    start.wait();
                    exchange(&socket, STATUS)
                })
                .unwrap()
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn a_thousand_simultaneous_status_clients_are_all_answered() {
    let (_tmp, _cache, socket, daemon) = started(10, None);
    let outcomes = simultaneous(&socket, 1000);
    let answered = outcomes
        .iter()
        .filter(|o| matches!(o, Ok((200, _))))
        .count();
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| !matches!(o, Ok((200, _))))
        .take(3)
        .collect();
    assert_eq!(answered, 1000, "first failures: {failed:?}");
    assert_eq!(daemon.stop().code(), Some(0));
}

#[test]
fn over_the_limit_clients_wait_and_every_one_reads_a_well_formed_answer() {
    let (_tmp, _cache, socket, daemon) = started(10, Some(SMALL_FD_BUDGET));
    // 500 clients for 64 slots: they queue for a slot instead of being reset.
    let outcomes = simultaneous(&socket, 500);
    for o in &outcomes {
        match o {
            Ok((200, _)) => {}
            Ok((503, answer)) => assert!(answer.contains("\"error\""), "{answer}"),
            other => panic!("a client read no well-formed answer: {other:?}"),
        }
    }
    let answered = outcomes
        .iter()
        .filter(|o| matches!(o, Ok((200, _))))
        .count();
    assert!(
        answered > 64,
        "clients over the limit waited for a slot: {answered} answered"
    );
    assert_eq!(daemon.stop().code(), Some(0));
}

/// Holds `n` connections whose request head never ends.
fn idle_connections(socket: &Path, n: usize) -> Vec<UnixStream> {
    (0..n)
        .filter_map(|_| {
            let mut s = UnixStream::connect(socket).ok()?;
            s.write_all(b"GET /v1/sta").ok()?;
            Some(s)
        })
        .collect()
}

/// Holds `n` connections that sent a complete head announcing a body that never
/// comes: each keeps its slot for the body deadline.
fn stalled_bodies(socket: &Path, n: usize) -> Vec<UnixStream> {
    (0..n)
        .map(|_| {
            let mut s = UnixStream::connect(socket).unwrap();
            s.write_all(
                b"POST /v1/caches/c/evict HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n",
            )
            .unwrap();
            s
        })
        .collect()
}

#[test]
fn a_refused_client_reads_its_503() {
    let (_tmp, cache, socket, daemon) = started(1, Some(SMALL_FD_BUDGET));
    // Every slot (shared pool and root's reserve) held by requests that wait for their
    // body: the next client waits a second for a slot, then reads a 503. A probe may
    // still be served while the holders' connections are being accepted; the next one
    // finds them all seated. Retried in case a slow machine let their deadlines pass.
    let mut refused = None;
    'attempts: for _ in 0..5 {
        let _holders = stalled_bodies(&socket, 64);
        for _ in 0..3 {
            match exchange(&socket, STATUS) {
                Ok((503, answer)) => {
                    refused = Some(answer);
                    break 'attempts;
                }
                Ok((200, _)) => {}
                other => panic!("a refused client must read a 503, not {other:?}"),
            }
        }
    }
    let answer = refused.unwrap_or_else(|| {
        panic!(
            "with every slot held, a client is refused: {}",
            daemon.log_text()
        )
    });
    assert!(answer.contains("retry-after: 1"), "{answer}");
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    assert!(
        json(body)["error"].as_str().unwrap().contains("try again"),
        "{body}"
    );
    wait_for("slots freed by the body deadline", DEADLINE, || {
        matches!(exchange(&socket, STATUS), Ok((200, _))).then_some(())
    });
    assert!(
        cache.join("f000000").exists(),
        "the stalled evictions did nothing"
    );
    assert_eq!(daemon.stop().code(), Some(0));
}

/// One user's slow readers of a large listing do not make another user's listing wait
/// for them (issue #29: six of them made another user wait 28 s; listings went first
/// come, first served).
#[test]
fn one_users_slow_listings_leave_another_users_listing_its_turn() {
    if !running_as_root("one_users_slow_listings_leave_another_users_listing_its_turn") {
        return;
    }
    let tmp = open_tempdir();
    let cache = dir_cache(tmp.path(), 40_000);
    let socket = tmp.path().join("run/cw.sock");
    let config = config_text(&socket, &[("c", &cache, "")])
        .replace("[daemon]\n", "[daemon]\nsocket_group = \"nogroup\"\n");
    let daemon = Daemon::start(tmp.path(), &config);
    let s = socket.clone();
    let slow: Vec<UnixStream> = on_thread_as(NOBODY, NOGROUP, move || {
        (0..6)
            .map(|_| {
                let mut c = UnixStream::connect(&s).unwrap();
                c.write_all(b"GET /v1/caches/c/entries?limit=100000 HTTP/1.1\r\nhost: x\r\n\r\n")
                    .unwrap();
                c
            })
            .collect()
    });
    std::thread::sleep(std::time::Duration::from_millis(500)); // their turns are taken
    let (code, listing) = http(&socket, "GET", "/v1/caches/c/entries?limit=100000", "");
    assert_eq!(code, 200);
    assert_eq!(json(&listing).as_array().unwrap().len(), 40_000);
    assert_eq!(
        daemon.log_text().matches("read nothing for").count(),
        0,
        "root's listing waited until the daemon gave up on a slow reader"
    );
    drop(slow);
    assert_eq!(daemon.stop().code(), Some(0));
}

/// Runs `f` on a thread whose credentials are `uid`/`gid` (raw syscalls change only the
/// calling thread's credentials; glibc's wrappers would change the whole process's).
fn on_thread_as<T: Send + 'static>(
    uid: u32,
    gid: u32,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        // SAFETY: raw credential syscalls on this thread only; it never switches back.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()),
                0
            );
            assert_eq!(libc::syscall(libc::SYS_setresgid, gid, gid, gid), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, uid, uid, uid), 0);
        }
        f()
    })
    .join()
    .unwrap()
}

const NOBODY: u32 = 65534;
const NOGROUP: u32 = 65534;
/// Debian's `daemon` user: another unprivileged local user.
const OTHER_USER: u32 = 1;

#[test]
fn idle_connections_of_one_user_leave_room_for_everyone_else() {
    if !running_as_root("idle_connections_of_one_user_leave_room_for_everyone_else") {
        return;
    }
    raise_fd_limit();
    let tmp = open_tempdir();
    let cache = dir_cache(tmp.path(), 1);
    let socket = tmp.path().join("run/cw.sock");
    let config = config_text(&socket, &[("c", &cache, "")])
        .replace("[daemon]\n", "[daemon]\nsocket_group = \"nogroup\"\n");
    let daemon = Daemon::start_with(tmp.path(), &config, Some(SMALL_FD_BUDGET));

    // One user opens 500 connections and sends half a request line on each.
    let s = socket.clone();
    let idle = on_thread_as(NOBODY, NOGROUP, move || idle_connections(&s, 500));
    assert!(idle.len() >= 400, "nobody could connect: {}", idle.len());

    // Root, and any other user, are still answered at once.
    let (code, _) = http(&socket, "GET", "/v1/status", "");
    assert_eq!(code, 200);
    let (code, body) = daemon.post("/v1/caches/c/evict?dry_run=true", "");
    assert_eq!(code, 200, "root's requests are not locked out: {body}");
    let s = socket.clone();
    let other = on_thread_as(OTHER_USER, NOGROUP, move || exchange(&s, STATUS));
    assert!(matches!(other, Ok((200, _))), "another user: {other:?}");

    // The idle user itself got at most its share; the rest were refused with a 503
    // and the share is freed once the head deadline drops the idle ones.
    let refused = idle
        .into_iter()
        .filter_map(|mut s| {
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            answer.starts_with("HTTP/1.1 503").then_some(())
        })
        .count();
    assert!(
        refused >= 500 - 64,
        "over its share, nobody's connections were refused: {refused}"
    );
    let s = socket.clone();
    let again = on_thread_as(NOBODY, NOGROUP, move || exchange(&s, STATUS));
    assert!(matches!(again, Ok((200, _))), "{again:?}");
    assert_eq!(daemon.stop().code(), Some(0));
}

#[test]
fn a_client_that_stops_reading_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = dir_cache(tmp.path(), 20_000);
    let socket = tmp.path().join("run/cw.sock");
    let daemon = Daemon::start(tmp.path(), &config_text(&socket, &[("c", &cache, "")]));
    let (code, full) = http(&socket, "GET", "/v1/caches/c/entries?limit=100000", "");
    assert_eq!(code, 200);
    assert_eq!(json(&full).as_array().unwrap().len(), 20_000);

    // Three clients ask for the listing and read nothing; others are served meanwhile.
    let mut slow: Vec<UnixStream> = (0..3)
        .map(|_| {
            let mut s = UnixStream::connect(&socket).unwrap();
            s.write_all(b"GET /v1/caches/c/entries?limit=100000 HTTP/1.1\r\nhost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    assert_eq!(http(&socket, "GET", "/v1/status", "").0, 200);
    // The daemon gives up on them (write deadline; two listings are sent at a time, so
    // the third waits for its turn first): each then reads a cut-off answer.
    wait_for(
        "the daemon to drop the clients that stopped reading",
        3 * DEADLINE,
        || (daemon.log_text().matches("read nothing for").count() >= 3).then_some(()),
    );
    for s in &mut slow {
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        assert!(
            answer.len() < full.len(),
            "a client that stopped reading was sent the whole listing"
        );
    }
    assert_eq!(
        http(&socket, "GET", "/v1/caches/c/entries?limit=2", "").0,
        200
    );
    assert_eq!(daemon.stop().code(), Some(0));
}

#[test]
fn a_malformed_or_short_body_is_named_as_such() {
    let (_tmp, cache, socket, daemon) = started(1, None);
    let (code, text) = raw(
        &socket,
        b"POST /v1/caches/c/evict HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("malformed or cut short"), "{text}");
    // A body shorter than its content-length (the client then closes its side).
    let (code, text) = raw(
        &socket,
        b"POST /v1/caches/c/evict HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\n\r\n{\"dry",
    );
    assert_eq!(code, 400, "{text}");
    assert!(!text.contains("over 65536"), "{text}");
    assert!(cache.join("f000000").exists());
    assert_eq!(daemon.stop().code(), Some(0));
}

/// A directory like `/tmp` where any user may create names.
/// Starts a daemon with `config` that must refuse to start (exit 2); its stderr.
fn daemon_refused(config: &Path) -> String {
    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "daemon"])
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}

fn sticky_shared_dir(tmp: &Path) -> std::path::PathBuf {
    let shared = tmp.join("tmp");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    shared
}

#[test]
fn a_socket_directory_planted_by_another_user_is_refused() {
    if !running_as_root("a_socket_directory_planted_by_another_user_is_refused") {
        return;
    }
    let tmp = open_tempdir();
    let cache = dir_cache(tmp.path(), 1);
    let shared = sticky_shared_dir(tmp.path());
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    // Another user creates the daemon's predictable directory first and plants a
    // symlink where the lock file goes.
    let dir = shared.join("cachewarden-0");
    as_nobody(&format!(
        "umask 022 && mkdir {0} && ln -s {1} {0}/cw.sock.lock",
        dir.display(),
        victim.display()
    ));
    let socket = dir.join("cw.sock");
    let config = tmp.path().join("c.toml");
    std::fs::write(&config, config_text(&socket, &[("c", &cache, "")])).unwrap();
    let stderr = daemon_refused(&config);
    for needle in [dir.to_str().unwrap(), "nobody", "0755", "must be owned by"] {
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!socket.exists());

    // The CLI does not talk to a socket there either (it could be the other user's).
    let out = Command::new(BIN)
        .args(["status", "--socket", socket.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not connecting"), "{stderr}");
    assert!(stderr.contains("nobody"), "{stderr}");
}

#[test]
fn a_socket_directory_writable_by_others_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = dir_cache(tmp.path(), 1);
    let dir = tmp.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.join("cw.sock");
    let config = tmp.path().join("c.toml");
    std::fs::write(&config, config_text(&socket, &[("c", &cache, "")])).unwrap();
    let stderr = daemon_refused(&config);
    assert!(stderr.contains("mode 0777"), "{stderr}");
    assert!(stderr.contains("chmod go-w"), "{stderr}");
    assert!(!socket.exists());
    assert!(!dir.join("cw.sock.lock").exists());
}

/// Fuzzing the HTTP layer: request heads and bodies built from random pieces (methods,
/// paths, queries, header lines, content lengths that lie, chunked garbage, raw bytes,
/// the corpus's requests edited) from 16 clients at once, then the corpus's requests
/// as they are (answered, with JSON). Every answer is well-formed HTTP with a status below 500
/// and, where it says JSON, valid JSON; or the connection is closed. Nothing is removed,
/// and the daemon answers status afterwards.
#[test]
fn arbitrary_request_bytes_get_a_well_formed_answer_or_a_close() {
    let (_tmp, cache, socket, daemon) = started(3, None);
    let before = files(&cache);
    let seed = (now() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    println!("seed {seed}");
    let clients: Vec<_> = (0..16u64)
        .map(|client| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut state = seed ^ (client + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
                let mut next = move |below: usize| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % below.max(1) as u64) as usize
                };
                let mut outcomes = Vec::new();
                for _ in 0..60 {
                    let request = random_request(&mut next);
                    outcomes.push((
                        String::from_utf8_lossy(&request).into_owned(),
                        answer_to(&socket, &request),
                    ));
                }
                outcomes
            })
        })
        .collect();
    let mut codes = std::collections::BTreeMap::new();
    for client in clients {
        for (request, outcome) in client.join().unwrap() {
            match outcome {
                Ok(Some((code, head, body))) => {
                    assert!(
                        code < 500 || code == 503,
                        "{code} for {request:?}:\n{head}\n{body}"
                    );
                    // (A HEAD answer has the head of a JSON answer and no body.)
                    let says_json = head
                        .to_ascii_lowercase()
                        .contains("content-type: application/json");
                    if says_json && !request.starts_with("HEAD ") {
                        assert!(
                            serde_json::from_str::<serde_json::Value>(&body).is_ok(),
                            "invalid JSON for {request:?}: {body}"
                        );
                    }
                    *codes.entry(code).or_insert(0) += 1;
                }
                Ok(None) => *codes.entry(0).or_insert(0) += 1,
                Err(e) => panic!("{request:?}: {e}"),
            }
        }
    }
    println!("answers by status (0: closed without one): {codes:?}");
    // The corpus's requests as they are: real requests, answered (a 400 where one asks
    // what the cache cannot do, e.g. `module=` of a dir cache) with JSON.
    for request in http_corpus() {
        let answered = answer_to(&socket, request);
        assert!(
            matches!(&answered, Ok(Some((code, _, body))) if *code < 500
                && serde_json::from_str::<serde_json::Value>(body).is_ok()),
            "{:?}: {answered:?}",
            String::from_utf8_lossy(request)
        );
    }
    assert_eq!(files(&cache), before, "a random request removed something");
    let (code, _) = daemon.get("/v1/status");
    assert_eq!(code, 200);
    assert_eq!(daemon.stop().code(), Some(0));
}

/// The raw requests of `tests/corpus/http`, read once.
fn http_corpus() -> &'static [Vec<u8>] {
    static CORPUS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/http");
        let mut found: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        found.sort();
        found
    })
}

/// One request from random pieces.
fn random_request(next: &mut impl FnMut(usize) -> usize) -> Vec<u8> {
    const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "G\0T", ""];
    const PATHS: [&str; 10] = [
        "/v1/status",
        "/v1/caches/c",
        "/v1/caches/c/entries?limit=",
        "/v1/caches/c/evict?dry_run=",
        "/v1/caches/c/verify?repair=",
        "/v1/reload",
        "/v1/audit?since=",
        "/v1/users",
        "/metrics",
        "/v1/caches/%ff%00/evict?dry_run=true",
    ];
    const HEADERS: [&str; 7] = [
        "host: x",
        "content-length: 5",
        "content-length: -1",
        "content-length: 99999999999999999999",
        "transfer-encoding: chunked",
        "connection: keep-alive",
        "content-type: application/json",
    ];
    const BODIES: [&str; 6] = [
        "{\"dry_run\": true}",
        "{\"dry_run\": \"yes\"}",
        "{\"entries\": [1, 2]}",
        "5\r\n{\"dry\r\n0\r\n\r\n",
        "zz\r\n",
        "{",
    ];
    let junk = |n: usize, next: &mut dyn FnMut(usize) -> usize| -> Vec<u8> {
        (0..n).map(|_| next(256) as u8).collect()
    };
    if next(8) == 0 {
        let n = next(300);
        return junk(n, next);
    }
    if next(7) == 0 {
        // A request of the checked-in corpus (tests/corpus/http), a few bytes edited.
        let corpus = http_corpus();
        let mut r = corpus[next(corpus.len())].clone();
        for _ in 0..next(5) {
            let at = next(r.len() + 1);
            match next(3) {
                0 if at < r.len() => r[at] ^= 1 << next(8),
                1 => r.insert(at, next(256) as u8),
                _ if at < r.len() => {
                    r.remove(at);
                }
                _ => {}
            }
        }
        return r;
    }
    let mut r = Vec::new();
    r.extend_from_slice(METHODS[next(METHODS.len())].as_bytes());
    r.push(b' ');
    let path = PATHS[next(PATHS.len())];
    r.extend_from_slice(path.as_bytes());
    if path.ends_with('=') {
        const VALUES: [&str; 5] = ["true", "false", "10", "1h", ""];
        r.extend_from_slice(VALUES[next(VALUES.len())].as_bytes());
    }
    if next(3) == 0 {
        let n = next(12);
        r.extend(
            junk(n, next)
                .into_iter()
                .filter(|b| !b.is_ascii_whitespace()),
        );
    }
    r.extend_from_slice(if next(10) == 0 {
        b" HTTP/9.9\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    if next(5) != 0 {
        r.extend_from_slice(b"host: localhost\r\n");
    }
    for _ in 0..next(4) {
        r.extend_from_slice(HEADERS[next(HEADERS.len())].as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    if next(6) == 0 {
        let n = next(40);
        r.extend(junk(n, next));
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"connection: close\r\n\r\n");
    if next(2) == 0 {
        r.extend_from_slice(BODIES[next(BODIES.len())].as_bytes());
    }
    r
}

/// The status, head and body of the answer to `request`, or `None` if the daemon
/// closed the connection without one; an error only if it neither answered nor closed
/// within the deadline.
fn answer_to(socket: &Path, request: &[u8]) -> Result<Option<(u16, String, String)>, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let _ = stream.write_all(request);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => return Err(format!("read: {e}")),
    }
    if answer.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8(answer).map_err(|e| format!("answer is not UTF-8: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of head in {text:?}"))?;
    // An HTTP/1.0 request (the corpus's, edited) is answered in HTTP/1.0.
    let code = ["HTTP/1.1 ", "HTTP/1.0 "]
        .iter()
        .find_map(|v| head.strip_prefix(v))
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {text:?}"))?;
    Ok(Some((code, head.to_string(), body.to_string())))
}
