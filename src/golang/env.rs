//! Where the Go toolchain keeps its caches, as `go env` reports them, with the same
//! fallbacks go itself uses when `go` is not installed or fails
//! (cmd/go/internal/cfg: GOCACHE defaults to `os.UserCacheDir()/go-build`,
//! GOMODCACHE to the first GOPATH entry + `/pkg/mod`, GOPATH to `$HOME/go`).

use std::path::PathBuf;
use std::process::Command;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GoCaches {
    pub gocache: Option<PathBuf>,
    pub gomodcache: Option<PathBuf>,
}

pub fn discover() -> GoCaches {
    from_go_env().unwrap_or_else(from_environment)
}

fn from_go_env() -> Option<GoCaches> {
    let out = Command::new("go")
        .args(["env", "GOCACHE", "GOMODCACHE"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let mut lines = text.lines().map(|l| {
        let l = l.trim();
        // "off" disables the build cache; anything relative is not a usable cache.
        (l.starts_with('/')).then(|| PathBuf::from(l))
    });
    Some(GoCaches {
        gocache: lines.next().flatten(),
        gomodcache: lines.next().flatten(),
    })
}

fn from_environment() -> GoCaches {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = var("HOME");
    let gocache = var("GOCACHE").or_else(|| {
        var("XDG_CACHE_HOME")
            .or_else(|| home.as_ref().map(|h| h.join(".cache")))
            .map(|d| d.join("go-build"))
    });
    let gomodcache = var("GOMODCACHE").or_else(|| {
        let gopath = std::env::var("GOPATH")
            .ok()
            .and_then(|p| p.split(':').find(|s| !s.is_empty()).map(PathBuf::from))
            .or_else(|| home.as_ref().map(|h| h.join("go")))?;
        Some(gopath.join("pkg/mod"))
    });
    GoCaches {
        gocache,
        gomodcache,
    }
}

/// The `KEY=value` lines of go's environment file (`go env -w` writes it to
/// `os.UserConfigDir()/go/env`, or `$GOENV`; `cmd/go/internal/cfg`, `EnvFile`). A
/// variable set in the process environment wins over the file, as in go.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty() && !k.starts_with('#'))
        .collect()
}
