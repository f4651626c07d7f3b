//! `cachewarden doctor`: the setup checked, with what to do.

use super::find_daemon::{daemon_status, Located};
use super::*;
use cachewarden::config::Env;

pub fn run(config_file: Option<&std::path::Path>, env: &Env, json: bool) -> anyhow::Result<u8> {
    // The daemon is asked even when the config does not load: it runs on the one it
    // loaded before, and doctor reports both.
    let located = Located::new(config_file, env, None);
    let daemon = daemon_status(&located.socket);
    let findings = cachewarden::doctor::run(config_file, env, Some(&located.socket), daemon);
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
