//! The `cachewarden` command: parses arguments and calls the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

use cachewarden::cache::{Cache, Selection};
use cachewarden::config::{self, Config, Env};
use cachewarden::report::{self, StatusReport};
use cachewarden::units::{format_bytes, format_duration};

const EXIT_OK: u8 = 0;
const EXIT_FOUND: u8 = 1;
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "cachewarden",
    version,
    about = "Keeps build and module caches under size, age and free-space limits, finds broken entries, and reports over a Unix socket.",
    after_help = "Exit status: 0 ok; 1 the check found something (problems, limits exceeded, entries to evict); 2 usage, config or connection error.\n\nConfig: --config FILE, else ~/.config/cachewarden/config.toml, else /etc/cachewarden/config.toml, else the embedded default (the user's Go caches)."
)]
struct Cli {
    /// Config file (default: the user's, then the system's, then the embedded default).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (what systemd runs).
    Daemon,
    /// Ask the running daemon how its caches are.
    Status {
        /// Print the daemon's JSON answer instead of a table.
        #[arg(long)]
        json: bool,
        /// Disk usage by user (the owners of caches a table finds per user).
        #[arg(long)]
        by_user: bool,
        /// Daemon socket (default: from the config).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Scan the caches now (no daemon needed) and report sizes against limits, from a
    /// stat-only walk (a go-build cache's entries are not paired: it counts files).
    /// Exits 1 if a cache exceeds a limit.
    Scan {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only this cache.
        #[arg(long, value_name = "NAME")]
        cache: Option<String>,
    },
    /// Enforce the limits now (no daemon needed). With --dry-run, show the plan and exit 1
    /// if it would remove anything; without, exit 1 if a limit still cannot be met.
    ///
    /// With --entry or --module, remove exactly those entries instead (needs --cache
    /// when several caches are configured); exits 1 if any was skipped or none matched.
    Evict {
        /// Show what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only this cache (as named in the config).
        #[arg(long, value_name = "NAME")]
        cache: Option<String>,
        /// Remove this entry (as status and --json name it, e.g. github.com/pkg/errors@v0.9.1).
        #[arg(long, value_name = "ENTRY")]
        entry: Vec<String>,
        /// Remove every version of this module.
        #[arg(long, value_name = "MODULE")]
        module: Vec<String>,
    },
    /// Check every entry's integrity (no daemon needed). Exits 1 if problems remain.
    Verify {
        /// Remove broken entries (following each kind's safe removal protocol).
        #[arg(long)]
        repair: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only this cache (as named in the config).
        #[arg(long, value_name = "NAME")]
        cache: Option<String>,
    },
    /// Config file tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Check the setup (go, its environment, the config, the caches, inotify, the
    /// socket, the daemon) and say what to do. Exits 1 if something needs action.
    Doctor {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show what the daemon removed, when, why and at whose request (its audit trail).
    Log {
        /// Only removals since this long ago ("2h", "7d") or this Unix time.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only this cache (as named in the config).
        #[arg(long, value_name = "NAME")]
        cache: Option<String>,
        /// At most this many, the newest.
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the socket path `status` would ask (from the config, else the system
    /// daemon's), for `curl --unix-socket`.
    Socket,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (cachewarden.1 and one per subcommand) into DIR.
    #[command(hide = true)]
    Man {
        #[arg(value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file and print the effective config. Exits 2 if it is invalid.
    Check {
        /// The file (default: --config, else the file the daemon would use).
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    cachewarden::parallel::share_allocator_arenas();
    cachewarden::fsutil::raise_open_file_limit();
    let cli = Cli::parse();
    let env = Env::from_process();
    match run(cli, env) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("cachewarden: error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run(cli: Cli, env: Env) -> anyhow::Result<u8> {
    let load = |file: Option<&std::path::Path>| -> anyhow::Result<Config> {
        Ok(config::load(file, &env)?)
    };
    match cli.command {
        Command::Daemon => {
            let env = Env {
                long_running: true,
                ..env
            };
            let config = config::load(cli.config.as_deref(), &env)?;
            init_daemon_logging(&config.daemon.log_level);
            let runtime = tokio::runtime::Runtime::new()?;
            let options = cachewarden::daemon::Options {
                config_file: cli.config,
                env,
            };
            let outcome =
                runtime.block_on(cachewarden::daemon::run(options, config, stop_signal()));
            // An eviction or sweep still running in a blocking thread cannot be
            // cancelled; every removal step is crash-safe, so stop without waiting.
            runtime.shutdown_timeout(std::time::Duration::from_millis(500));
            outcome?;
            Ok(EXIT_OK)
        }
        Command::Status {
            json,
            by_user,
            socket,
        } => {
            let socket = match socket {
                Some(s) => s,
                None => cli_socket(&load(cli.config.as_deref())?, cli.config.is_some()),
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (code, body) =
                runtime.block_on(cachewarden::client::request(&socket, "GET", "/v1/status"))?;
            if code != 200 {
                anyhow::bail!(
                    "the daemon answered {code}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            if json && !by_user {
                println!("{}", String::from_utf8_lossy(&body));
                return Ok(EXIT_OK);
            }
            let status: StatusReport = serde_json::from_slice(&body)
                .context("the daemon's status is not what this CLI expects")?;
            if by_user {
                let users = report::by_user(&status.caches);
                match json {
                    true => print_json(&users)?,
                    false => print!("{}", report::users_table(&users)),
                }
                return Ok(EXIT_OK);
            }
            print!(
                "{}",
                report::status_table(&status.caches, cachewarden::now())
            );
            print_notes_and_errors(&status);
            Ok(EXIT_OK)
        }
        Command::Scan { json, cache } => {
            init_cli_logging();
            let caches = open_caches(&load(cli.config.as_deref())?, cache.as_deref())?;
            let now = cachewarden::now();
            let statuses: Vec<_> = caches
                .iter()
                .map(|c| {
                    with_progress(c, json, "scanning", || c.walk(now));
                    c.status(now)
                })
                .collect();
            let over = statuses.iter().any(|s| !s.over_limits.is_empty());
            if json {
                print_json(&statuses)?;
            } else {
                print!("{}", report::status_table(&statuses, now));
            }
            Ok(if over { EXIT_FOUND } else { EXIT_OK })
        }
        Command::Evict {
            dry_run,
            json,
            cache,
            entry,
            module,
        } => {
            init_cli_logging();
            let config = load(cli.config.as_deref())?;
            let caches = open_caches(&config, cache.as_deref())?;
            let selection = Selection {
                entries: entry,
                modules: module,
            };
            if !selection.is_empty() && caches.len() != 1 {
                anyhow::bail!("--entry and --module need --cache NAME to say which cache");
            }
            if let (false, Some(cache)) = (selection.modules.is_empty(), caches.first()) {
                let config = cache.config();
                if config.kind != cachewarden::kinds::KindName::GoMod {
                    anyhow::bail!(
                        "--module names Go modules, for go-mod caches; cache {:?} is kind {} (use --entry)",
                        config.name,
                        config.kind
                    );
                }
            }
            let now = cachewarden::now();
            let reports: Vec<_> = caches
                .iter()
                .map(|c| {
                    with_progress(c, json, "evicting", || {
                        c.scan(now);
                        match selection.is_empty() {
                            true => c.evict(dry_run, now),
                            false => c.evict_selected(&selection, dry_run, now),
                        }
                    })
                })
                .collect();
            // Then the group limits (shared build servers), over every cache of each
            // table at once; a dry run shows who would give what.
            let groups: Vec<_> = match (selection.is_empty(), &cache) {
                (true, None) => config
                    .groups
                    .iter()
                    .map(|g| {
                        let members: Vec<_> = caches
                            .iter()
                            .filter(|c| c.config().table == g.name)
                            .cloned()
                            .collect();
                        cachewarden::group::enforce(g, &members, dry_run, now)
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let mut reports = reports;
            for g in &groups {
                reports.extend(g.members.iter().map(|m| m.eviction.clone()));
            }
            let uid = nix::unistd::getuid().as_raw();
            let audit = one_shot_audit(&config);
            for r in &reports {
                if let Err(e) = audit.record(&cachewarden::audit::of_eviction(r, Some(uid))) {
                    eprintln!("warning: cannot write the audit trail: {e}");
                }
            }
            let found = if selection.is_empty() {
                reports
                    .iter()
                    .any(|r| !r.unmet.is_empty() || (dry_run && !r.evicted.is_empty()))
            } else {
                reports.iter().any(|r| {
                    !r.skipped.is_empty()
                        || !r.failed.is_empty()
                        || r.evicted.is_empty()
                        || !r.not_found.is_empty()
                })
            };
            let found = found || groups.iter().any(|g| g.unmet.is_some());
            if json {
                print_json(&reports)?;
            } else {
                for r in &reports {
                    print_eviction(r);
                }
                for g in &groups {
                    print!("{}", cachewarden::group::summary(g));
                }
            }
            Ok(if found { EXIT_FOUND } else { EXIT_OK })
        }
        Command::Verify {
            repair,
            json,
            cache,
        } => {
            init_cli_logging();
            let config = load(cli.config.as_deref())?;
            let caches = open_caches(&config, cache.as_deref())?;
            let now = cachewarden::now();
            let reports: Vec<_> = caches
                .iter()
                .map(|c| {
                    with_progress(c, json, "verifying", || {
                        c.scan(now);
                        c.verify(repair, now)
                    })
                })
                .collect();
            let audit = one_shot_audit(&config);
            for r in &reports {
                if let Err(e) = audit.record(&cachewarden::audit::of_repairs(r)) {
                    eprintln!("warning: cannot write the audit trail: {e}");
                }
            }
            let problems: Vec<_> = reports.iter().flat_map(|r| r.problems.clone()).collect();
            let open = problems.iter().any(|p| !p.repaired);
            if json {
                let checked: Vec<_> = reports
                    .iter()
                    .map(|r| serde_json::json!({"cache": r.cache, "checked": r.checked, "duration_ms": r.duration_ms}))
                    .collect();
                print_json(&serde_json::json!({ "caches": checked, "problems": problems }))?;
            } else {
                let checked: u64 = reports.iter().map(|r| r.checked).sum();
                if problems.is_empty() {
                    println!("no problems in {checked} entries");
                } else {
                    print!("{}", report::problems_table(&problems));
                    let repaired = problems.iter().filter(|p| p.repaired).count();
                    println!(
                        "{} in {checked} entries, {repaired} repaired",
                        plural(problems.len(), "problem")
                    );
                }
            }
            Ok(if open { EXIT_FOUND } else { EXIT_OK })
        }
        Command::Doctor { json } => {
            let socket = load(cli.config.as_deref())
                .ok()
                .map(|c| cli_socket(&c, cli.config.is_some()));
            let daemon = match &socket {
                None => Err("the config does not load".to_string()),
                Some(socket) => daemon_status(socket),
            };
            let findings =
                cachewarden::doctor::run(cli.config.as_deref(), &env, socket.as_deref(), daemon);
            if json {
                print_json(&findings)?;
            } else {
                print!("{}", cachewarden::doctor::render(&findings));
            }
            let action = findings
                .iter()
                .any(|f| f.severity == cachewarden::doctor::Severity::Action);
            Ok(if action { EXIT_FOUND } else { EXIT_OK })
        }
        Command::Log {
            since,
            cache,
            limit,
            json,
        } => {
            let config = load(cli.config.as_deref())?;
            let since = match since {
                None => None,
                Some(when) => Some(match when.parse::<i64>() {
                    Ok(t) => t,
                    Err(_) => {
                        let ago = cachewarden::units::parse_duration(&when)
                            .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
                        cachewarden::now() - ago.as_secs() as i64
                    }
                }),
            };
            let query = cachewarden::audit::Query {
                since,
                cache,
                limit: Some(limit),
                caches: None,
            };
            let records = audit_records(&config, cli.config.is_some(), &query)?;
            if json {
                print_json(&records)?;
            } else if records.is_empty() {
                println!("no removals recorded");
            } else {
                let now = cachewarden::now();
                let rows: Vec<Vec<String>> = records
                    .iter()
                    .map(|r| {
                        vec![
                            cachewarden::units::local_time(r.at),
                            r.cache.clone(),
                            r.entry.clone(),
                            r.bytes.map_or("-".into(), format_bytes),
                            r.last_use.map_or("-".into(), |t| {
                                format!("{} ago", report::age(Some(now - t)))
                            }),
                            match r.uid {
                                Some(uid) => format!("{} (uid {uid})", r.reason),
                                None => r.reason.clone(),
                            },
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    report::table(
                        &["TIME", "CACHE", "ENTRY", "SIZE", "LAST USE", "REASON"],
                        &rows
                    )
                );
            }
            Ok(EXIT_OK)
        }
        Command::Socket => {
            let socket = cli_socket(&load(cli.config.as_deref())?, cli.config.is_some());
            println!("{}", socket.display());
            Ok(EXIT_OK)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cachewarden", &mut script);
            std::io::stdout().write_all(&script)?;
            Ok(EXIT_OK)
        }
        Command::Man { out } => {
            write_man_pages(Cli::command(), &out)?;
            Ok(EXIT_OK)
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let config = load(file.as_deref().or(cli.config.as_deref()))?;
            print_config(&config);
            Ok(EXIT_OK)
        }
    }
}

/// The socket the CLI asks: the config's, or — for a user without a daemon of their
/// own and no `--config` — the system daemon's.
///
/// A daemon started where the socket path came out otherwise (another
/// `XDG_RUNTIME_DIR`, another config) but on this config's state directory is found
/// through that directory's lock (`instance.rs`), with a note saying so.
fn cli_socket(config: &Config, explicit_config: bool) -> PathBuf {
    let own = config.daemon.socket.clone();
    if std::os::unix::net::UnixStream::connect(&own).is_err() {
        let running =
            (config.daemon.state_dir.as_deref()).and_then(cachewarden::instance::running_on);
        if let Some((pid, socket)) = running.filter(|(_, s)| *s != own) {
            eprintln!(
                "note: the daemon on state directory {} (pid {pid}) listens on {}, not on {} as this config says",
                config.daemon.state_dir.as_deref().unwrap_or(std::path::Path::new("")).display(),
                socket.display(),
                own.display()
            );
            return socket;
        }
    }
    let system = PathBuf::from(config::SYSTEM_SOCKET);
    if !own.exists() && !explicit_config && system.exists() {
        system
    } else {
        own
    }
}

/// Runs `work` on `cache`. On a terminal, and not for `--json`, a progress line
/// appears once it has taken a second (a spinner while scanning, then entries done of
/// all) and is cleared when it ends.
fn with_progress<T>(cache: &Arc<dyn Cache>, json: bool, what: &str, work: impl FnOnce() -> T) -> T {
    use std::io::IsTerminal;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    if json || !std::io::stderr().is_terminal() {
        return work();
    }
    let finished = Arc::new(AtomicBool::new(false));
    let shown = std::thread::spawn({
        let (cache, finished) = (cache.clone(), finished.clone());
        let message = format!("{what} {}", cache.config().name);
        move || {
            let started = std::time::Instant::now();
            while started.elapsed() < Duration::from_secs(1) {
                if finished.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let bar = indicatif::ProgressBar::new_spinner().with_message(message);
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} {msg}: {pos}/{len} entries [{elapsed}]",
            );
            while !finished.load(Ordering::Relaxed) {
                let (done, total) = cache.progress();
                if total > 0 && bar.length() != Some(total) {
                    if let Ok(style) = &style {
                        bar.set_style(style.clone());
                    }
                    bar.set_length(total);
                }
                bar.set_position(done);
                bar.tick();
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        }
    });
    let out = work();
    finished.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = shown.join();
    out
}

/// Where one-shot commands record their removals: the config's state directory when it
/// exists and is this user's own (root's CLI never writes into the daemon's directory
/// of another user); else the log only.
fn one_shot_audit(config: &Config) -> cachewarden::audit::AuditLog {
    let dir = config
        .daemon
        .state_dir
        .as_deref()
        .filter(|d| cachewarden::own_files::is_own_dir(d));
    cachewarden::audit::AuditLog::new(dir)
}

/// The audit trail: the daemon's answer, or — with no daemon — the file in the state
/// directory.
fn audit_records(
    config: &Config,
    explicit_config: bool,
    query: &cachewarden::audit::Query,
) -> anyhow::Result<Vec<cachewarden::audit::AuditRecord>> {
    let socket = cli_socket(config, explicit_config);
    let mut path = "/v1/audit?".to_string();
    if let Some(t) = query.since {
        path.push_str(&format!("since={t}&"));
    }
    if let Some(c) = &query.cache {
        path.push_str(&format!("cache={}&", percent_encode(c)));
    }
    path.push_str(&format!("limit={}", query.limit.unwrap_or(100)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(cachewarden::client::request(&socket, "GET", &path)) {
        Ok((200, body)) => Ok(serde_json::from_slice(&body)
            .context("the daemon's audit trail is not what this CLI expects")?),
        Ok((code, body)) => anyhow::bail!(
            "the daemon answered {code}: {}",
            String::from_utf8_lossy(&body)
        ),
        Err(_) => {
            let dir = config.daemon.state_dir.as_deref().context(
                "no daemon answers and the config has no state_dir to read the trail from",
            )?;
            Ok(cachewarden::audit::read(&dir.join("audit.jsonl"), query)
                .with_context(|| format!("reading the audit trail in {}", dir.display()))?)
        }
    }
}

/// "1 problem", "2 problems".
fn plural(n: usize, word: &str) -> String {
    match n {
        1 => format!("1 {word}"),
        n => format!("{n} {word}s"),
    }
}

/// `text` safe in a URL query value.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The status of the daemon on `socket`, or why no daemon answered there.
fn daemon_status(socket: &std::path::Path) -> Result<StatusReport, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let ask = cachewarden::client::request(socket, "GET", "/v1/status");
    let (code, body) = runtime
        .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(5), ask).await })
        .map_err(|_| format!("{} did not answer within 5 s", socket.display()))?
        .map_err(|e| format!("{e:#}"))?;
    if code != 200 {
        return Err(format!("{} answered {code}", socket.display()));
    }
    serde_json::from_slice(&body)
        .map_err(|e| format!("its status is not what this CLI expects: {e}"))
}

/// `cachewarden.1`, then `cachewarden-SUB.1` for each subcommand (and
/// `cachewarden-SUB-SUBSUB.1` below), from the clap definition.
fn write_man_pages(command: clap::Command, dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fn write(command: clap::Command, name: String, dir: &std::path::Path) -> anyhow::Result<()> {
        // Named `cachewarden-evict` (as git's pages are), used as `cachewarden evict`.
        let command = command.name(name.clone()).bin_name(name.replace('-', " "));
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command.clone()).render(&mut page)?;
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub.clone(), format!("{name}-{}", sub.get_name()), dir)?;
        }
        Ok(())
    }
    write(command, "cachewarden".to_string(), dir)
}

fn open_caches(config: &Config, only: Option<&str>) -> anyhow::Result<Vec<Arc<dyn Cache>>> {
    for note in &config.notes {
        eprintln!("note: {note}");
    }
    if let Some(waiting) = config
        .caches
        .iter()
        .find(|c| c.waiting && only == Some(c.name.as_str()))
    {
        anyhow::bail!(
            "cache {:?} is waiting for {}: it does not exist yet",
            waiting.name,
            waiting.path.display()
        );
    }
    let selected: Vec<_> = config
        .caches
        .iter()
        .filter(|c| !c.waiting && only.is_none_or(|name| c.name == name))
        .map(|c| cachewarden::cache::open(c.clone()))
        .collect();
    if let (Some(name), true) = (only, selected.is_empty()) {
        let names: Vec<_> = config.caches.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!(
            "no cache named {name:?} in {}; configured: {}",
            config.source,
            names.join(", ")
        );
    }
    Ok(selected)
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn print_notes_and_errors(status: &StatusReport) {
    for note in &status.notes {
        println!("note: {note}");
    }
    for cache in &status.caches {
        let unmanaged = cache.last_scan.iter().flat_map(|s| &s.unmanaged);
        for u in unmanaged.filter(|u| u.disk_bytes > 0) {
            println!(
                "not managed in {}: {}, {}: {}",
                cache.name,
                u.what,
                cachewarden::units::format_bytes(u.disk_bytes),
                u.why
            );
        }
        for t in &cache.toolchains {
            println!(
                "toolchain in {}: {}, {}, last used {}",
                cache.name,
                t.version,
                cachewarden::units::format_bytes(t.disk_bytes),
                cachewarden::units::local_time(t.last_use)
            );
        }
        if let Some(held) = &cache.held {
            println!(
                "held in {} at {}: {} entries that running tools may open: {}",
                cache.name,
                cachewarden::units::local_time(held.at),
                held.entries,
                held.by
            );
        }
        for c in &cache.conditions {
            println!(
                "now in {}: {} (since {})",
                cache.name,
                c.message,
                cachewarden::units::local_time(c.at)
            );
        }
        for e in &cache.errors {
            println!("error in {}: {}", cache.name, e.message);
        }
        for p in &cache.problems.recent {
            println!(
                "problem in {}: {} {}: {}",
                cache.name, p.path, p.problem, p.detail
            );
        }
    }
}

fn print_eviction(r: &report::EvictionReport) {
    let verb = if r.dry_run { "would evict" } else { "evicted" };
    let bytes = if r.dry_run {
        r.bytes_before - r.bytes_after_planned
    } else {
        r.freed_bytes
    };
    let after = if r.dry_run {
        r.bytes_after_planned
    } else {
        r.bytes_after
    };
    println!(
        "{}: {verb} {} entries, {} (size {} -> {})",
        r.cache,
        r.evicted.len(),
        format_bytes(bytes),
        format_bytes(r.bytes_before),
        format_bytes(after)
    );
    let rows: Vec<Vec<String>> = r
        .evicted
        .iter()
        .map(|e| {
            vec![
                e.entry.entry.clone(),
                format_bytes(e.entry.disk_bytes),
                report::age(Some(e.entry.age_secs)),
                serde_json::to_value(e.reason)
                    .map_or(String::new(), |v| v.as_str().unwrap_or("").to_string()),
            ]
        })
        .collect();
    if !rows.is_empty() {
        print!(
            "{}",
            report::table(&["ENTRY", "SIZE", "AGE", "REASON"], &rows)
        );
    }
    for s in &r.skipped {
        println!(
            "skipped {}: {}",
            report::printable(&s.entry),
            report::printable(&s.reason)
        );
    }
    for f in &r.failed {
        println!(
            "failed to remove {}: {}",
            report::printable(&f.path),
            report::printable(&f.reason)
        );
    }
    for name in &r.not_found {
        println!(
            "no entry named {} in cache {}",
            report::printable(name),
            r.cache
        );
    }
    for u in &r.unmet {
        println!("limit not met: {u}");
    }
}

fn print_config(config: &Config) {
    println!("# effective config from {}", config.source);
    println!("[daemon]");
    println!("socket = {:?}", config.daemon.socket.display().to_string());
    if let Some((name, _)) = &config.daemon.socket_group {
        println!("socket_group = {name:?}");
    }
    println!("log_level = {:?}", config.daemon.log_level);
    if let Some(dir) = &config.daemon.state_dir {
        println!("state_dir = {:?}", dir.display().to_string());
    }
    if let Some(addr) = &config.daemon.metrics_listen {
        println!("metrics_listen = \"{addr}\"");
    }
    for c in &config.caches {
        println!("\n[[cache]]");
        println!("name = {:?}", c.name);
        println!("kind = \"{}\"", c.kind);
        println!("path = {:?}", c.path.display().to_string());
        if let Some(s) = c.limits.max_size {
            println!("max_size = \"{s}\"");
        }
        if let Some(d) = c.limits.max_age {
            println!("max_age = \"{}\"", format_duration(d));
        }
        if let Some(s) = c.limits.min_free {
            println!("min_free = \"{s}\"");
        }
        println!("min_age = \"{}\"", format_duration(c.limits.min_age));
        if !c.guard_processes.is_empty() {
            println!("guard_processes = {:?}", c.guard_processes);
        }
        let keep: Vec<_> = c.keep.iter().map(|p| format!("{:?}", p.as_str())).collect();
        println!("keep = [{}]", keep.join(", "));
        println!("schedule = {:?}", c.schedule.text);
        if let Some(v) = &c.verify_schedule {
            println!("verify_schedule = {:?}", v.text);
        }
        println!(
            "on_problem = \"{}\"",
            if c.on_problem == config::OnProblem::Repair {
                "repair"
            } else {
                "report"
            }
        );
    }
    for note in &config.notes {
        println!("# note: {note}");
    }
}

/// Completes on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn filter(default: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

/// Journald when systemd connected stderr to the journal, stderr otherwise.
fn init_daemon_logging(level: &str) {
    use tracing_subscriber::prelude::*;
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            tracing_subscriber::registry()
                .with(filter(level))
                .with(journald)
                .init();
            return;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .init();
}

/// Colour in logs only on a terminal, and never with `NO_COLOR` set (no-color.org).
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_cli_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(filter("warn"))
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .without_time()
        .init();
}
