//! The `cachewarden` command: parses arguments and runs the subcommand (`cli/`, one
//! file each).

mod cli;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use cachewarden::config::{self, Env};
use cli::{EXIT_OK, EXIT_USAGE};

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
        /// Only this cache (as named in the config; a per-user table's name selects
        /// all its users' caches).
        #[arg(long, value_name = "NAME")]
        cache: Option<String>,
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
    /// if it would remove anything or a limit would still not be met; without, exit 1 if
    /// a limit still cannot be met.
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
    /// Serve go's build cache as a GOCACHEPROG program (Go ≥ 1.24):
    /// `go env -w GOCACHEPROG="cachewarden cacheprog"`. Serves from $GOCACHE in go's own
    /// layout (or the go-build cache --cache names), checks every output it hands out,
    /// and leases what a running go holds so the daemon never removes it.
    Cacheprog {
        /// Serve from this go-build cache of the config instead of $GOCACHE.
        #[arg(long, value_name = "NAME")]
        cache: Option<String>,
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
    let config_file = cli.config.as_deref();
    let load = || config::load(config_file, &env);
    match cli.command {
        Command::Daemon => {
            let env = Env {
                long_running: true,
                ..env
            };
            let config = config::load(config_file, &env)?;
            cli::init_daemon_logging(&config.daemon.log_level);
            let runtime = tokio::runtime::Runtime::new()?;
            let options = cachewarden::daemon::Options {
                config_file: cli.config,
                env,
            };
            let outcome = runtime.block_on(cachewarden::daemon::run(
                options,
                config,
                cli::stop_signal(),
            ));
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
            cache,
        } => {
            let located = cli::find_daemon::Located::new(config_file, &env, socket);
            let args = cli::status::Args {
                json,
                by_user,
                cache,
            };
            cli::status::run(&located, args)
        }
        Command::Scan { json, cache } => cli::scan::run(&load()?, json, cache.as_deref()),
        Command::Evict {
            dry_run,
            json,
            cache,
            entry,
            module,
        } => {
            let args = cli::evict::Args {
                dry_run,
                json,
                cache,
                entry,
                module,
            };
            cli::evict::run(&load()?, args)
        }
        Command::Verify {
            repair,
            json,
            cache,
        } => cli::verify::run(&load()?, config_file, &env, repair, json, cache.as_deref()),
        Command::Doctor { json } => cli::doctor::run(config_file, &env, json),
        Command::Log {
            since,
            cache,
            limit,
            json,
        } => {
            let args = cli::log::Args {
                since,
                cache,
                limit,
                json,
            };
            cli::log::run(&load()?, config_file.is_some(), args)
        }
        Command::Cacheprog { cache } => cli::cacheprog::run(config_file, &env, cache.as_deref()),
        Command::Socket => {
            let located = cli::find_daemon::Located::new(config_file, &env, None);
            located.warn_if_broken();
            println!("{}", located.socket.display());
            Ok(EXIT_OK)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cachewarden", &mut script);
            std::io::stdout().write_all(&script)?;
            Ok(EXIT_OK)
        }
        Command::Man { out } => {
            cli::write_man_pages(Cli::command(), &out)?;
            Ok(EXIT_OK)
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let config = config::load(file.as_deref().or(config_file), &env)?;
            cli::config_check::print_config(&config);
            Ok(EXIT_OK)
        }
    }
}
