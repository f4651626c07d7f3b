//! `cachewarden evict`: the limits enforced now, or exactly the named entries removed.

use super::*;
use cachewarden::cache::Selection;
use cachewarden::report;
use cachewarden::units::format_bytes;

pub struct Args {
    pub dry_run: bool,
    pub json: bool,
    pub cache: Option<String>,
    pub entry: Vec<String>,
    pub module: Vec<String>,
}

pub fn run(config: &Config, args: Args) -> anyhow::Result<u8> {
    let Args {
        dry_run,
        json,
        cache,
        entry,
        module,
    } = args;
    init_cli_logging();
    let caches = open_caches(config, cache.as_deref())?;
    let selection = Selection {
        entries: entry,
        modules: module,
    };
    if !selection.is_empty() && caches.len() != 1 {
        anyhow::bail!("--entry and --module need --cache NAME to say which cache");
    }
    if let (false, Some(cache)) = (selection.modules.is_empty(), caches.first()) {
        let config = cache.config();
        if !config.kind.names_modules() {
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
    let audit = one_shot_audit(config);
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
        // A module version is several entries of one name (tree, zip, metadata): the
        // path says which.
        println!(
            "skipped {} ({}): {}",
            report::printable(&s.entry),
            report::printable(&s.path),
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
