//! `cachewarden cacheprog`: where the store is, then `cachewarden::cacheprog::serve`.
//!
//! go starts this program itself, with its own environment (`GOCACHE` among it), and
//! shows what it writes to stderr to the user: it says nothing unless something is
//! wrong, and stdout carries only the protocol.

use std::path::PathBuf;

use anyhow::Context;
use cachewarden::config::{self, Env};
use cachewarden::kinds::KindName;

use super::EXIT_OK;

pub fn run(
    config_file: Option<&std::path::Path>,
    env: &Env,
    cache: Option<&str>,
) -> anyhow::Result<u8> {
    let root = match cache {
        Some(name) => {
            let config = config::load(config_file, env)?;
            let cache = config
                .caches
                .iter()
                .find(|c| c.name == name)
                .with_context(|| format!("no cache {name:?} in {}", config.source))?;
            anyhow::ensure!(
                cache.kind == KindName::GoBuild,
                "cache {name:?} is a {} cache; cacheprog serves a go-build cache",
                cache.kind
            );
            cache.path.clone()
        }
        None => gocache(env)?,
    };
    let mut store = cachewarden::cacheprog::Store::open(&root)
        .with_context(|| format!("cannot serve the build cache {}", root.display()))?;
    let stdin = std::io::stdin().lock();
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let served = match cachewarden::cacheprog::serve(&mut store, stdin, stdout) {
        Ok(served) => served,
        // go is gone (killed mid-build): nobody is left to answer.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(EXIT_OK),
        Err(e) => return Err(e.into()),
    };
    if served.damaged > 0 {
        eprintln!(
            "cachewarden cacheprog: {} damaged output(s) in {} were not used (go rebuilt them) and were removed",
            served.damaged,
            root.display()
        );
    }
    Ok(EXIT_OK)
}

/// `$GOCACHE` as go passes it to its GOCACHEPROG, else go's default
/// (`$XDG_CACHE_HOME/go-build`, `~/.cache/go-build`).
fn gocache(env: &Env) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("GOCACHE").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        anyhow::ensure!(
            dir.is_absolute(),
            "GOCACHE={} is not an absolute path",
            dir.display()
        );
        return Ok(dir);
    }
    let cache_home = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .or_else(|| env.home.as_ref().map(|h| h.join(".cache")))
        .context("neither GOCACHE, XDG_CACHE_HOME nor HOME is set")?;
    let dir = cache_home.join("go-build");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
