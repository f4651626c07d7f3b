//! The subcommands of the `cachewarden` command, one file each, and what they share:
//! exit codes, opening the configured caches, progress lines, logging, JSON output.

pub mod cacheprog;
pub mod config_check;
pub mod doctor;
pub mod evict;
pub mod find_daemon;
pub mod log;
pub mod scan;
pub mod status;
pub mod verify;

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;

use cachewarden::cache::Cache;
use cachewarden::config::Config;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FOUND: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

pub fn open_caches(config: &Config, only: Option<&str>) -> anyhow::Result<Vec<Arc<dyn Cache>>> {
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

/// Runs `work` on `cache`. On a terminal, and not for `--json`, a progress line
/// appears once it has taken a second (a spinner while scanning, then entries done of
/// all) and is cleared when it ends.
pub fn with_progress<T>(
    cache: &Arc<dyn Cache>,
    json: bool,
    what: &str,
    work: impl FnOnce() -> T,
) -> T {
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
pub fn one_shot_audit(config: &Config) -> cachewarden::audit::AuditLog {
    let dir = config
        .daemon
        .state_dir
        .as_deref()
        .filter(|d| cachewarden::own_files::is_own_dir(d));
    cachewarden::audit::AuditLog::new(dir)
}

/// "1 problem", "2 problems".
pub fn plural(n: usize, word: &str) -> String {
    match n {
        1 => format!("1 {word}"),
        n => format!("{n} {word}s"),
    }
}

/// `text` safe in a URL query value.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// `cachewarden.1`, then `cachewarden-SUB.1` for each subcommand (and
/// `cachewarden-SUB-SUBSUB.1` below), from the clap definition.
pub fn write_man_pages(command: clap::Command, dir: &std::path::Path) -> anyhow::Result<()> {
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

/// Completes on SIGTERM or SIGINT.
pub async fn stop_signal() {
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
pub fn init_daemon_logging(level: &str) {
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

pub fn init_cli_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(filter("warn"))
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .without_time()
        .init();
}
