//! `cachewarden daemon`: one supervisor task per cache, the socket server, signals and
//! systemd integration.
//!
//! Per cache: a full scan at start, then inotify keeps the index current; limits are
//! enforced after the first scan, whenever watch events push the cache over `max_size`
//! or the disk under `min_free` (at most once per [`ENFORCE_INTERVAL`]), and on the
//! cache's `schedule`; integrity sweeps run on `verify_schedule`. A watch overflow
//! triggers a rescan of that cache only, at most once per [`RESCAN_INTERVAL`]; a root
//! removed is watched again as soon as it is back ([`ROOT_POLL`]).
//!
//! Process: one instance per socket, state directory and cache root (`instance.rs`);
//! `READY=1` after every cache's first
//! scan; `STATUS=` one line; watchdog pings when `WATCHDOG_USEC` is set; SIGHUP (or
//! `POST /v1/reload`) reloads the config, keeping the old one if the new one is bad;
//! the shutdown future (SIGTERM/SIGINT in `main`) stops it, draining socket requests for
//! at most `server::DRAIN_TIMEOUT`.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::audit::{self, AuditLog};
use crate::cache::Cache;
use crate::config::{self, CacheConfig, Config, Env, OnProblem};
use crate::instance::{self, RootLock};
use crate::shared::{record_removals, Control, Running, Shared};
use crate::slots::Slot;
use crate::units::format_bytes;
use crate::watch::{self, Change};

/// Event-driven enforcement runs at most this often per cache.
pub const ENFORCE_INTERVAL: Duration = Duration::from_secs(5);
/// While eviction is deferred for a running tool, how often to check if it exited.
pub const IN_USE_POLL: Duration = Duration::from_secs(10);
/// The index is rebuilt from a full scan at the first scheduled enforcement after this.
pub const FULL_RESCAN_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// How often the daemon looks whether a cache it waits for has appeared.
pub const WAITING_POLL: Duration = Duration::from_secs(10);
/// Overflow-driven rescans run at most this often per cache.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(30);
/// While a cache's root cannot be watched (deleted, not yet created), how often the
/// daemon tries again: go recreates a root at its next run (`go clean -modcache` then a
/// build), and until the watch is back the index cannot follow the disk.
pub const ROOT_POLL: Duration = Duration::from_secs(1);

/// How the daemon finds its config again on reload.
pub struct Options {
    pub config_file: Option<PathBuf>,
    pub env: Env,
}

/// Runs the daemon until `shutdown` completes.
pub async fn run(
    options: Options,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let instance = crate::instance::claim(&config.daemon)?;
    let listener = instance.listener;
    let state_dir = instance.state_dir;
    let socket_path = config.daemon.socket.clone();
    tracing::info!(socket = %socket_path.display(), config = %config.source, caches = config.caches.len(), "cachewarden starting");
    for note in &config.notes {
        tracing::info!("{note}");
    }

    let (control_tx, mut control_rx) = mpsc::channel(4);
    let audit = Arc::new(AuditLog::new(state_dir.as_deref()));
    let shared = Arc::new(Shared {
        own_uid: nix::unistd::getuid().as_raw(),
        started_at: crate::now(),
        audit: audit.clone(),
        running: RwLock::new(Running {
            config: config.clone(),
            caches: Vec::new(),
            state_dir: state_dir.clone(),
        }),
        control: control_tx,
    });
    let mut supervisors: HashMap<String, Supervisor> = HashMap::new();
    let mut first_scans = Vec::new();
    // What the caches' last evictions were before this start, from the trail.
    let last_evictions = match audit.path().map(crate::audit::last_evictions) {
        Some(Ok(last)) => last,
        Some(Err(e)) => {
            tracing::warn!("cannot read the audit trail for the caches' last evictions: {e}");
            HashMap::new()
        }
        None => HashMap::new(),
    };
    for cache_config in config.caches.iter().filter(|c| !c.waiting) {
        let (supervisor, scanned) =
            Supervisor::start(cache_config.clone(), state_dir.as_deref(), audit.clone());
        if let Some(last) = last_evictions.get(&cache_config.name) {
            supervisor.cache.seed_last_eviction(last.clone());
        }
        first_scans.push(scanned);
        supervisors.insert(cache_config.name.clone(), supervisor);
    }
    let metrics_listen = config.daemon.metrics_listen;
    // Published before the socket serves: a client of a daemon that just started sees
    // every configured cache (scanning), never a 404 for one.
    publish(&shared, config, &supervisors);

    let server_stop = CancellationToken::new();
    let server = tokio::spawn(crate::server::serve(
        listener,
        shared.clone(),
        server_stop.clone(),
    ));
    if let Some(addr) = metrics_listen {
        let metrics = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on metrics_listen = \"{addr}\""))?;
        tracing::info!(%addr, "serving /metrics over TCP");
        tokio::spawn(crate::server::serve_metrics(
            metrics,
            shared.clone(),
            server_stop.clone(),
        ));
    }

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let mut watchdog_usec = 0;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec);
    let watchdog_period = Duration::from_micros(watchdog_usec.max(2) / 2);
    let mut next_watchdog = Instant::now();
    let mut ready = false;
    let mut next_waiting_check = Instant::now() + WAITING_POLL;
    // Started once a config has group limits, so a daemon without them never wakes
    // for them.
    let groups_stop = CancellationToken::new();
    let mut groups_started = false;
    let all_scanned = futures_util::future::join_all(first_scans);
    tokio::pin!(all_scanned);
    tokio::pin!(shutdown);

    loop {
        if !groups_started && !shared.running.read().unwrap().config.groups.is_empty() {
            groups_started = true;
            tokio::spawn(enforce_groups(shared.clone(), groups_stop.clone()));
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut all_scanned, if !ready => {
                ready = true;
                let line = status_line(&shared);
                tracing::info!("first scan done: {line}");
                let _ = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(&line)]);
            }
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                let _ = sd_notify::notify(false, &[NotifyState::Reloading]);
                let outcome = reload(&options, &shared, &mut supervisors);
                let _ = sd_notify::notify(false, &[NotifyState::Ready]);
                if let Err(e) = outcome {
                    tracing::error!("{e}");
                }
            }
            Some(Control::Reload(reply)) = control_rx.recv() => {
                let _ = reply.send(reload(&options, &shared, &mut supervisors));
            }
            _ = tokio::time::sleep_until(next_waiting_check), if !shared.waiting().is_empty() || shared.discovers() => {
                next_waiting_check = Instant::now() + WAITING_POLL;
                // A cache that did not exist (go had not run yet) may now, and a table
                // that finds caches per user may find new users: reload, as SIGHUP
                // does, which also asks `go env` again.
                if shared.waiting().iter().any(|c| c.path.exists() && c.kind.check_root(&c.path).is_ok()) || discovered_new_caches(&options, &shared) {
                    tracing::info!("a cache the config names has appeared: reloading");
                    if let Err(e) = reload(&options, &shared, &mut supervisors) {
                        tracing::error!("{e}");
                    }
                }
            }
            _ = tokio::time::sleep_until(next_watchdog), if watchdog => {
                let line = status_line(&shared);
                let _ = sd_notify::notify(false, &[NotifyState::Watchdog, NotifyState::Status(&line)]);
                next_watchdog = Instant::now() + watchdog_period;
            }
        }
    }

    tracing::info!("stopping");
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
    for supervisor in supervisors.values() {
        supervisor.stop.cancel();
    }
    server_stop.cancel();
    groups_stop.cancel();
    let _ = server.await;
    for (_, supervisor) in supervisors {
        let _ = tokio::time::timeout(crate::server::DRAIN_TIMEOUT, supervisor.task).await;
    }
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("stopped");
    Ok(())
}

fn publish(shared: &Shared, config: Config, supervisors: &HashMap<String, Supervisor>) {
    let caches = config
        .caches
        .iter()
        .filter_map(|c| supervisors.get(&c.name).map(|s| s.cache.clone()))
        .collect();
    let mut running = shared.running.write().unwrap();
    running.config = config;
    running.caches = caches;
}

/// Re-reads the config. A bad config changes nothing; a good one updates limits and
/// schedules in place, starts new caches and stops removed ones. Caches whose kind and
/// path are unchanged keep their index.
fn reload(
    options: &Options,
    shared: &Shared,
    supervisors: &mut HashMap<String, Supervisor>,
) -> Result<String, String> {
    let new = config::load(options.config_file.as_deref(), &options.env)
        .map_err(|e| format!("reload failed, keeping the running config: {e}"))?;
    let old_socket = shared.running.read().unwrap().config.daemon.socket.clone();
    if new.daemon.socket != old_socket {
        tracing::warn!(
            "the socket moved to {} in the new config; that takes effect at the next restart",
            new.daemon.socket.display()
        );
    }
    let keep: Vec<&CacheConfig> = new.caches.iter().filter(|c| !c.waiting).collect();
    supervisors.retain(|name, supervisor| {
        let same = keep
            .iter()
            .any(|c| &c.name == name && c.kind == supervisor.cache.config().kind && c.path == supervisor.cache.config().path);
        if !same {
            tracing::info!(cache = %name, "cache removed or changed by the reload: stopping its supervisor");
            supervisor.stop.cancel();
        }
        same
    });
    for cache_config in new.caches.iter().filter(|c| !c.waiting) {
        match supervisors.get(&cache_config.name) {
            Some(supervisor) => {
                supervisor.cache.set_config(cache_config.clone());
                supervisor.reconfigured.notify_one();
            }
            None => {
                let state_dir = shared.running.read().unwrap().state_dir.clone();
                let (supervisor, _) = Supervisor::start(
                    cache_config.clone(),
                    state_dir.as_deref(),
                    shared.audit.clone(),
                );
                supervisors.insert(cache_config.name.clone(), supervisor);
            }
        }
    }
    let summary = format!("{}: {} caches", new.source, new.caches.len());
    tracing::info!("config reloaded from {summary}");
    publish(shared, new, supervisors);
    Ok(summary)
}

fn status_line(shared: &Shared) -> String {
    let report = shared.status();
    let bytes: u64 = report.caches.iter().map(|c| c.disk_bytes).sum();
    let entries: u64 = report.caches.iter().map(|c| c.entries).sum();
    let over = report
        .caches
        .iter()
        .filter(|c| !c.over_limits.is_empty())
        .count();
    let problems: u64 = report.caches.iter().map(|c| c.problems.open).sum();
    format!(
        "{} caches, {} in {entries} entries, {over} over a limit, {problems} problems",
        report.caches.len(),
        format_bytes(bytes)
    )
}

/// One cache's background work.
struct Supervisor {
    cache: Arc<dyn Cache>,
    stop: CancellationToken,
    reconfigured: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    fn start(
        config: CacheConfig,
        state_dir: Option<&Path>,
        audit: Arc<AuditLog>,
    ) -> (Supervisor, oneshot::Receiver<()>) {
        let snapshot = state_dir.map(|d| d.join(format!("{}.snapshot", config.name)));
        let cache = crate::cache::open(config);
        let stop = CancellationToken::new();
        let reconfigured = Arc::new(Notify::new());
        let (scanned_tx, scanned_rx) = oneshot::channel();
        let task = tokio::spawn(supervise(
            cache.clone(),
            audit,
            snapshot,
            stop.clone(),
            reconfigured.clone(),
            scanned_tx,
        ));
        (
            Supervisor {
                cache,
                stop,
                reconfigured,
                task,
            },
            scanned_rx,
        )
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

async fn scan(cache: &Arc<dyn Cache>) {
    let c = cache.clone();
    if let Some(record) = blocking(move || c.scan(crate::now())).await {
        tracing::info!(
            cache = %cache.config().name,
            entries = record.entries,
            size = %format_bytes(record.disk_bytes),
            ms = record.duration_ms,
            walk_ms = record.walk_ms,
            "scanned"
        );
    }
}

/// Restores the index from a snapshot; false if a full scan is needed.
async fn restore(cache: &Arc<dyn Cache>, snapshot: Option<&Path>) -> bool {
    let Some(path) = snapshot.map(Path::to_path_buf) else {
        return false;
    };
    let c = cache.clone();
    match blocking(move || c.restore(&path, crate::now()))
        .await
        .flatten()
    {
        Some(record) => {
            tracing::info!(
                cache = %cache.config().name,
                entries = record.entries,
                size = %format_bytes(record.disk_bytes),
                rescanned = record.partitions_rescanned.unwrap_or(0),
                of = record.partitions.unwrap_or(0),
                ms = record.duration_ms,
                "restored from snapshot"
            );
            true
        }
        None => false,
    }
}

async fn save_snapshot(cache: &Arc<dyn Cache>, snapshot: Option<&Path>) {
    let Some(path) = snapshot.map(Path::to_path_buf) else {
        return;
    };
    let c = cache.clone();
    let shown = path.clone();
    if let Some(Err(e)) = blocking(move || c.save_snapshot(&path)).await {
        cache.record_error(
            format!("cannot save the snapshot {}: {e}", shown.display()),
            crate::now(),
        );
    }
}

/// Whether the config, read again, names caches the running one does not (a new user,
/// a new directory matching a glob).
fn discovered_new_caches(options: &Options, shared: &Shared) -> bool {
    let Ok(fresh) = config::load(options.config_file.as_deref(), &options.env) else {
        return false;
    };
    let running = shared.running.read().unwrap();
    fresh
        .caches
        .iter()
        .any(|c| !running.config.caches.iter().any(|r| r.name == c.name))
}

/// How often group limits (`group.rs`) are checked: the members' published totals and
/// one `statvfs`, so cheap; nothing runs when the config has no group limits.
pub const GROUP_POLL: Duration = Duration::from_secs(10);

/// Keeps every table's group limits, until `stop`.
async fn enforce_groups(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(GROUP_POLL) => {}
        }
        let groups = shared.running.read().unwrap().config.groups.clone();
        for group in groups {
            let members: Vec<Arc<dyn Cache>> = shared
                .caches()
                .into_iter()
                .filter(|c| c.config().table == group.name)
                .collect();
            if members.is_empty() {
                continue;
            }
            let (g, m) = (group.clone(), members.clone());
            let Some(report) =
                blocking(move || crate::group::enforce(&g, &m, false, crate::now())).await
            else {
                continue;
            };
            tracing::debug!(group = %report.group, bytes = report.bytes_before, to_free = report.to_free, "group limits checked");
            for share in &report.members {
                if let Some(cache) = members.iter().find(|c| c.config().name == share.cache) {
                    record_removals(
                        cache,
                        &shared.audit,
                        &audit::of_eviction(&share.eviction, None),
                    );
                }
            }
            if !report.members.is_empty() {
                let freed: u64 = report.members.iter().map(|m| m.eviction.freed_bytes).sum();
                tracing::info!(
                    group = %report.group,
                    reason = ?report.reason,
                    freed = %format_bytes(freed),
                    members = report.members.len(),
                    "group limit enforced across its caches"
                );
            }
            if let Some(unmet) = &report.unmet {
                tracing::warn!(group = %report.group, "{unmet}");
            }
        }
    }
}

/// Enforces the limits; returns what running tools hold when a limit stays unmet because
/// of it (the supervisor retries once that changes: a tool exits, or a go command's
/// build list changes).
async fn enforce(
    cache: &Arc<dyn Cache>,
    audit: &AuditLog,
    why: &str,
) -> Option<crate::kinds::InUse> {
    let c = cache.clone();
    let report = blocking(move || c.evict(false, crate::now())).await?;
    record_removals(cache, audit, &audit::of_eviction(&report, None));
    if report.removed_entries > 0 || !report.skipped.is_empty() {
        tracing::info!(
            cache = %report.cache,
            entries = report.removed_entries,
            freed = %format_bytes(report.freed_bytes),
            skipped = report.skipped.len(),
            "evicted ({why})"
        );
    }
    for unmet in &report.unmet {
        tracing::debug!(cache = %report.cache, "limit not met: {unmet}");
    }
    let held = report.held_in_use > 0 && !report.unmet.is_empty();
    if held {
        tracing::info!(
            cache = %report.cache,
            held = report.held_in_use,
            "eviction deferred while {} runs",
            report.in_use_by.as_deref().unwrap_or("a tool")
        );
    }
    if !held {
        return None;
    }
    let c = cache.clone();
    blocking(move || c.in_use()).await.flatten()
}

async fn verify(cache: &Arc<dyn Cache>, audit: &AuditLog) {
    let c = cache.clone();
    let repair = cache.config().on_problem == OnProblem::Repair;
    let Some(report) = blocking(move || c.verify(repair, crate::now())).await else {
        return;
    };
    record_removals(cache, audit, &audit::of_repairs(&report));
    for p in &report.problems {
        tracing::warn!(cache = %p.cache, entry = %p.entry, problem = %p.problem, repaired = p.repaired, "{}", p.detail);
    }
    tracing::info!(cache = %report.cache, checked = report.checked, problems = report.problems.len(), ms = report.duration_ms, "verified");
}

/// Logs a slot that fired late (the supervisor was busy when it came).
fn slot_fired(
    cache: &str,
    which: &str,
    fired: Option<(chrono::DateTime<chrono::Local>, Duration)>,
) {
    if let Some((slot, late)) = fired.filter(|(_, late)| *late > crate::slots::LATE) {
        tracing::info!(
            cache,
            "the {which} slot of {} ran {late:.0?} late",
            slot.format("%H:%M")
        );
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A one-shot deadline set once, not a sleep created anew on every pass of the
/// supervisor's loop — steady watch events would postpone that one for ever. Used for
/// looking again whether the tool that held entries has exited, and whether a root that
/// could not be watched is back.
#[derive(Default)]
struct Deadline {
    at: Option<Instant>,
}

impl Deadline {
    /// Sets the deadline `after` from now, unless one is set.
    fn arm(&mut self, after: Duration) {
        self.at.get_or_insert_with(|| Instant::now() + after);
    }

    fn clear(&mut self) {
        self.at = None;
    }

    async fn due(&self) {
        sleep_until_opt(self.at).await
    }
}

/// The watcher of one cache, restartable: a rescan after the watcher lost track (the
/// root deleted and recreated, a queue overflow) watches anew.
struct Watching {
    changes: mpsc::Receiver<Change>,
    stop: CancellationToken,
    active: bool,
}

impl Watching {
    fn start(cache: &Arc<dyn Cache>, parent: &CancellationToken) -> Watching {
        Watching::start_reporting(cache, parent, true)
    }

    fn start_reporting(
        cache: &Arc<dyn Cache>,
        parent: &CancellationToken,
        report: bool,
    ) -> Watching {
        let (tx, changes) = mpsc::channel(256);
        let stop = parent.child_token();
        let root = cache.config().path;
        let active = match watch::start(&root, &cache.watch_dirs(), tx, stop.clone()) {
            Ok(_) => {
                cache.set_condition(GONE, None, crate::now());
                true
            }
            // Gone: `go clean -modcache`, `rm -rf`, or not made yet. Go's own doing, so
            // a state, not an error (issue #31: it counted in errors_total for ever).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let message = format!(
                    "{} is not there (removed by go clean or by hand, or not made yet): watched again within {ROOT_POLL:?} of its return",
                    root.display()
                );
                cache.set_condition(GONE, Some(message), crate::now());
                false
            }
            Err(e) => {
                if report {
                    cache.record_error(
                        format!(
                            "cannot watch {}: {e}; trying again every {ROOT_POLL:?}",
                            root.display()
                        ),
                        crate::now(),
                    );
                }
                false
            }
        };
        Watching {
            changes,
            stop,
            active,
        }
    }

    /// Watches anew; a failure is reported once, not at every retry.
    fn restart(&mut self, cache: &Arc<dyn Cache>, parent: &CancellationToken) {
        self.stop.cancel();
        let was_active = self.active;
        *self = Watching::start_reporting(cache, parent, was_active);
    }
}

/// Conditions a supervisor sets and clears ([`Cache::set_condition`]).
const GONE: &str = "gone";
const LOCKED: &str = "locked";
const IN_PART: &str = "watched in part";

/// Locks the cache's root for this daemon (`instance.rs`). A root another process
/// holds is managed anyway, and the holder named in the cache's conditions.
fn claim_root(cache: &Arc<dyn Cache>) -> Option<RootLock> {
    match instance::lock_root(&cache.config().path) {
        Ok(lock) => {
            cache.set_condition(LOCKED, None, crate::now());
            Some(lock)
        }
        Err(e) => {
            if cache.config().path.exists() {
                cache.set_condition(LOCKED, Some(e), crate::now());
            }
            None
        }
    }
}

async fn supervise(
    cache: Arc<dyn Cache>,
    audit: Arc<AuditLog>,
    snapshot: Option<PathBuf>,
    stop: CancellationToken,
    reconfigured: Arc<Notify>,
    scanned: oneshot::Sender<()>,
) {
    // Watch first, then scan: changes made during the scan are queued and replayed.
    let mut watching = Watching::start(&cache, &stop);
    let mut root_lock = claim_root(&cache);
    if !restore(&cache, snapshot.as_deref()).await {
        scan(&cache).await;
    }
    let mut last_full_scan = Instant::now();
    let _ = scanned.send(());
    let mut held_by = enforce(&cache, &audit, "startup").await;
    let mut retry = Deadline::default();
    save_snapshot(&cache, snapshot.as_deref()).await;

    let mut last_enforce = Instant::now();
    let mut enforce_pending = false;
    let mut last_rescan: Option<Instant> = None;
    let mut rescan_pending: Option<String> = None;
    let mut root_poll = Deadline::default();
    // Set while the watcher watches only part of the tree (over its budget).
    let mut partial = Deadline::default();
    // Every slot of the two schedules fires, late if the loop was busy (`slots.rs`).
    let (mut enforce_slot, mut verify_slot) = (Slot::default(), Slot::default());
    let mut root_check = Deadline::default();
    let mut scanned_while_gone = false;
    loop {
        if held_by.is_some() {
            retry.arm(IN_USE_POLL);
        }
        if watching.active {
            root_poll.clear();
        } else {
            root_poll.arm(ROOT_POLL);
        }
        let config = cache.config();
        let (wall, now) = (chrono::Local::now(), Instant::now());
        enforce_slot.plan(Some(&config.schedule), wall, now);
        verify_slot.plan(config.verify_schedule.as_ref(), wall, now);
        let enforce_at = last_enforce + ENFORCE_INTERVAL;
        let rescan_at = last_rescan.map_or_else(Instant::now, |t| t + RESCAN_INTERVAL);
        tokio::select! {
            // Stopping comes first: it also ends the watcher, whose closed channel must
            // not be mistaken for a watcher that died.
            biased;
            _ = stop.cancelled() => {
                save_snapshot(&cache, snapshot.as_deref()).await;
                return;
            }
            _ = reconfigured.notified() => {
                // Limits may have tightened: check them now.
                held_by = enforce(&cache, &audit, "config reloaded").await;
                last_enforce = Instant::now();
            }
            // The scheduled slots before watch events: a steady stream of events must
            // not starve them.
            _ = enforce_slot.due() => {
                slot_fired(&config.name, "schedule", enforce_slot.fire(Instant::now()));
                if root_lock.as_ref().is_some_and(RootLock::removed) {
                    root_lock = None; // removed while empty: no change announced it
                }
                // Once a day the index is rebuilt from the disk, so whatever events
                // cannot tell (a file changed while unwatched, an output orphaned by a
                // removal nobody announced) is set right.
                if last_full_scan.elapsed() >= FULL_RESCAN_INTERVAL || !watching.active {
                    watching.restart(&cache, &stop);
                    scan(&cache).await;
                    last_full_scan = Instant::now();
                }
                held_by = enforce(&cache, &audit, "schedule").await;
                save_snapshot(&cache, snapshot.as_deref()).await;
                last_enforce = Instant::now();
            }
            _ = verify_slot.due() => {
                slot_fired(&config.name, "verify_schedule", verify_slot.fire(Instant::now()));
                verify(&cache, &audit).await;
            }
            change = watching.changes.recv(), if watching.active => match change {
                Some(Change::Paths(paths)) => {
                    let c = cache.clone();
                    let over = blocking(move || { c.apply_changes(&paths); c.over_size_or_free_limit() }).await.unwrap_or(false);
                    enforce_pending |= over;
                    // `rm -rf` of the root empties it first, then removes it, which no
                    // watch reports while our lock keeps it alive (`RootLock`): look
                    // again a moment after changes, and let go of a removed root.
                    if root_lock.is_some() {
                        root_check.arm(ROOT_POLL);
                    }
                }
                Some(Change::Rescan(reason)) => {
                    tracing::info!(cache = %config.name, "rescan needed: {reason}");
                    rescan_pending = Some(reason);
                }
                // Not rate-limited like a rescan: the watcher has stopped, and the index
                // must follow the disk within seconds (issue #29). Watched again, and
                // rescanned, as soon as the root is back (`ROOT_POLL`).
                Some(Change::RootGone(reason)) => {
                    tracing::info!(cache = %config.name, "{reason}: watching again once it is back");
                    watching.active = false;
                    scanned_while_gone = false;
                }
                Some(Change::Trouble(trouble)) => cache.record_error(format!("watch: {trouble}"), crate::now()),
                Some(Change::Partial(why)) => {
                    cache.set_condition(IN_PART, Some(format!("watch: {why}")), crate::now());
                    partial.arm(watch::PARTIAL_RESCAN);
                }
                None => {
                    watching.active = false;
                    rescan_pending = Some("the watcher stopped".into());
                }
            },
            _ = tokio::time::sleep_until(enforce_at), if enforce_pending => {
                enforce_pending = false;
                held_by = enforce(&cache, &audit, "limit crossed").await;
                last_enforce = Instant::now();
            }
            _ = tokio::time::sleep_until(rescan_at), if rescan_pending.is_some() => {
                rescan_pending = None;
                watching.restart(&cache, &stop);
                scan(&cache).await;
                last_rescan = Some(Instant::now());
                last_full_scan = Instant::now();
                enforce_pending = true;
            }
            _ = root_poll.due(), if !watching.active => {
                // The root is gone (`rm -rf ~/.cache/go-build`, `go clean -modcache`)
                // or not there yet: go recreates it at its next run. Watch it as soon as
                // it is back, then scan, so the index never lags the disk for long.
                root_poll.clear();
                watching.restart(&cache, &stop);
                if watching.active {
                    tracing::info!(cache = %config.name, "watching the cache directory again");
                    root_lock = claim_root(&cache);
                    rescan_pending = None;
                    scan(&cache).await;
                    last_rescan = Some(Instant::now());
                    last_full_scan = Instant::now();
                    enforce_pending = true;
                } else if cache.status(crate::now()).entries > 0
                    && (!scanned_while_gone || !config.path.exists())
                {
                    // What is gone is gone from the index too, not kept until go makes
                    // the root again: scanned once, and again while the root itself is
                    // still going (`go clean -modcache` removes cache/download, then
                    // the trees).
                    scanned_while_gone = true;
                    scan(&cache).await;
                }
            }
            _ = retry.due(), if held_by.is_some() => {
                let c = cache.clone();
                let now_held = blocking(move || c.in_use()).await.flatten();
                if now_held != held_by {
                    held_by = enforce(&cache, &audit, "a tool that held entries exited").await;
                }
                retry.clear();
            }
            _ = root_check.due(), if root_check.at.is_some() => {
                root_check.clear();
                if root_lock.as_ref().is_some_and(RootLock::removed) {
                    root_lock = None;
                }
            }
            _ = partial.due(), if partial.at.is_some() => {
                // Watched in part: what the watcher cannot see, a rescan finds. The
                // watcher starts anew with it, and says again if it is still over.
                partial.clear();
                // The new watcher says again at once if it is still over its budget.
                cache.set_condition(IN_PART, None, crate::now());
                watching.restart(&cache, &stop);
                scan(&cache).await;
                enforce_pending = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_fires_under_a_steady_stream_of_events() {
        let mut retry = Deadline::default();
        let started = Instant::now();
        // A loop pass every second (a watch event), each re-arming as the loop does.
        let fired_at = loop {
            retry.arm(IN_USE_POLL);
            tokio::select! {
                _ = retry.due() => break Instant::now(),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            assert!(started.elapsed() < 3 * IN_USE_POLL, "the retry never fired");
        };
        assert_eq!(fired_at - started, IN_USE_POLL);
        retry.clear();
        retry.arm(IN_USE_POLL);
        assert_eq!(retry.at, Some(fired_at + IN_USE_POLL));
    }
}
