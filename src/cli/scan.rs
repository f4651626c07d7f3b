//! `cachewarden scan`: sizes against limits from a stat-only walk, no daemon needed.

use super::*;
use cachewarden::report;

pub fn run(config: &Config, json: bool, cache: Option<&str>) -> anyhow::Result<u8> {
    init_cli_logging();
    let caches = open_caches(config, cache)?;
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
