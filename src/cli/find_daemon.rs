//! Finding the running daemon: the socket the CLI asks, and its status.
//!
//! Finding it must not depend on a config the daemon has not loaded (issue #30): with
//! the config file broken, the socket is still read from it where the TOML parses,
//! else the default one, and the CLI says the config is broken *and* asks the daemon.

use std::path::{Path, PathBuf};

use cachewarden::config::{self, Config, Env};
use cachewarden::report::StatusReport;

/// The socket the CLI asks: the config's, or — for a user without a daemon of their
/// own and no `--config` — the system daemon's.
///
/// A daemon started where the socket path came out otherwise (another
/// `XDG_RUNTIME_DIR`, another config) but on this config's state directory is found
/// through that directory's lock (`instance.rs`), with a note saying so.
pub fn cli_socket(config: &Config, explicit_config: bool) -> PathBuf {
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

/// The status of the daemon on `socket`, or why no daemon answered there.
pub fn daemon_status(socket: &std::path::Path) -> Result<StatusReport, String> {
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

/// Where the CLI asks the daemon, and the config if it loads.
pub struct Located {
    pub socket: PathBuf,
    /// The config, or why it does not load: the daemon runs on the one it loaded last.
    pub config: Result<Config, String>,
}

impl Located {
    /// The socket from `--socket`, else the config's (or, with a config that does not
    /// load, the one its text names, else the default).
    pub fn new(config_file: Option<&Path>, env: &Env, socket: Option<PathBuf>) -> Located {
        let explicit = config_file.is_some();
        let config = config::load(config_file, env).map_err(|e| e.to_string());
        let socket = socket.unwrap_or_else(|| match &config {
            Ok(config) => cli_socket(config, explicit),
            Err(_) => {
                let own = config::socket_despite_errors(config_file, env);
                let system = PathBuf::from(config::SYSTEM_SOCKET);
                match !own.exists() && !explicit && system.exists() {
                    true => system,
                    false => own,
                }
            }
        });
        Located { socket, config }
    }

    /// Says on stderr that the config does not load, if it does not.
    pub fn warn_if_broken(&self) {
        if let Err(e) = &self.config {
            eprintln!(
                "warning: the config does not load (a running daemon keeps the config it loaded before; `cachewarden config check` after fixing it, then reload):\n{e}"
            );
        }
    }
}

/// POSTs `body` to the daemon on `socket`; its HTTP status.
pub fn post(socket: &Path, path: &str, body: &str) -> Result<u16, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let ask = cachewarden::client::request_with_body(socket, "POST", path, body);
    let (code, _) = runtime
        .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(60), ask).await })
        .map_err(|_| format!("{} did not answer within 60 s", socket.display()))?
        .map_err(|e| format!("{e:#}"))?;
    Ok(code)
}
