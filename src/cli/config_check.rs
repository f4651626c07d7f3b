//! `cachewarden config check`: the effective config, as the daemon would load it.

use cachewarden::config::{self, Config};
use cachewarden::units::format_duration;

pub fn print_config(config: &Config) {
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
        if c.table != c.name {
            // Found by a table with `users`, `roots` or a glob path.
            println!("# found by table {:?}", c.table);
        }
        if let Some(owner) = &c.owner {
            println!(
                "# owner: {} (uid {}): removals run as this user",
                owner.name, owner.uid
            );
        }
        if c.waiting {
            println!("# waiting: not there yet; managed once its tool creates it");
        }
        if let Some(why) = &c.refused {
            println!("# refused for now: {why}");
        }
        if let Some(s) = c.limits.max_size {
            println!("max_size = {}", size_as_parsed(s));
        }
        if let Some(d) = c.limits.max_age {
            println!("max_age = \"{}\"", format_duration(d));
        }
        if let Some(s) = c.limits.min_free {
            println!("min_free = {}", size_as_parsed(s));
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
    for g in &config.groups {
        println!(
            "\n# group limits of table {:?} (all its caches together)",
            g.name
        );
        for (key, limit) in [
            ("group_max_size", g.max_size),
            ("group_min_free", g.min_free),
        ] {
            if let Some(s) = limit {
                println!("# {key} = {}", size_as_parsed(s));
            }
        }
        let policy = serde_json::to_string(&g.policy).unwrap_or_default();
        println!("# group_policy = {policy}");
    }
    for note in &config.notes {
        println!("# note: {note}");
    }
}

/// A size as it was understood: exact bytes, with the readable form beside them
/// ("10 GB" is 10,000,000,000 bytes, 9.3 GiB: issue #30).
fn size_as_parsed(size: cachewarden::units::SizeLimit) -> String {
    match size {
        cachewarden::units::SizeLimit::Bytes(b) => {
            format!("{b}  # {}", cachewarden::units::format_bytes(b))
        }
        percent => format!("\"{percent}\""),
    }
}
