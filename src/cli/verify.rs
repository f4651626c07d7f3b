//! `cachewarden verify`: every entry checked by its kind, broken ones repaired on
//! `--repair`; a running daemon is told what was found and changed.

use super::*;
use cachewarden::report;

pub fn run(
    config: &Config,
    config_file: Option<&std::path::Path>,
    env: &cachewarden::config::Env,
    repair: bool,
    json: bool,
    cache: Option<&str>,
) -> anyhow::Result<u8> {
    init_cli_logging();
    let caches = open_caches(config, cache)?;
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
    let audit = one_shot_audit(config);
    for r in &reports {
        if let Err(e) = audit.record(&cachewarden::audit::of_repairs(r)) {
            eprintln!("warning: cannot write the audit trail: {e}");
        }
    }
    tell_the_daemon(config_file, env, &caches, &reports);
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

/// A daemon managing the same caches learns what this run found and repaired: it
/// checks those entries again itself (never taking the CLI's word for a problem) and
/// its status and metrics follow at once, not at its next sweep (issue #30).
fn tell_the_daemon(
    config_file: Option<&std::path::Path>,
    env: &cachewarden::config::Env,
    caches: &[Arc<dyn Cache>],
    reports: &[cachewarden::report::VerifyReport],
) {
    let located = super::find_daemon::Located::new(config_file, env, None);
    let Ok(status) = super::find_daemon::daemon_status(&located.socket) else {
        return; // no daemon: nothing to tell
    };
    for (cache, report) in caches.iter().zip(reports) {
        let config = cache.config();
        let managed = status
            .caches
            .iter()
            .any(|c| c.name == config.name && c.path == config.path);
        if !managed {
            continue;
        }
        let paths: Vec<&str> = report.problems.iter().map(|p| p.path.as_str()).collect();
        let body = serde_json::json!({ "paths": paths }).to_string();
        let path = format!("/v1/caches/{}/recheck", percent_encode(&config.name));
        match super::find_daemon::post(&located.socket, &path, &body) {
            Ok(200) => {}
            Ok(code) => eprintln!(
                "note: the daemon answered {code} when told what this check found; its status catches up at its next sweep"
            ),
            Err(e) => eprintln!("note: cannot tell the daemon what this check found: {e}"),
        }
    }
}
