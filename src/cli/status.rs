//! `cachewarden status`: the running daemon's answer, as a table or JSON.

use super::find_daemon::Located;
use super::*;
use cachewarden::report::{self, StatusReport};

pub struct Args {
    pub json: bool,
    pub by_user: bool,
    pub cache: Option<String>,
}

pub fn run(located: &Located, args: Args) -> anyhow::Result<u8> {
    let Args {
        json,
        by_user,
        cache,
    } = args;
    located.warn_if_broken();
    let socket = &located.socket;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (code, body) =
        runtime.block_on(cachewarden::client::request(socket, "GET", "/v1/status"))?;
    if code != 200 {
        anyhow::bail!(
            "the daemon answered {code}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    if json && !by_user && cache.is_none() {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(EXIT_OK);
    }
    let mut status: StatusReport = serde_json::from_slice(&body)
        .context("the daemon's status is not what this CLI expects")?;
    if let Some(name) = &cache {
        let names: Vec<String> = status.caches.iter().map(|c| c.name.clone()).collect();
        // A table found per user names its caches `table@user`: the table's name
        // selects them all.
        status
            .caches
            .retain(|c| &c.name == name || c.name.split('@').next() == Some(name.as_str()));
        if status.caches.is_empty() {
            anyhow::bail!(
                "the daemon manages no cache named {name:?}; it manages: {}",
                names.join(", ")
            );
        }
        if json && !by_user {
            print_json(&status)?;
            return Ok(EXIT_OK);
        }
    }
    if by_user {
        let users = report::by_user(&status.caches);
        match json {
            true => print_json(&users)?,
            false => print!("{}", report::users_table(&users)),
        }
        return Ok(EXIT_OK);
    }
    print!(
        "{}",
        report::status_table(&status.caches, cachewarden::now())
    );
    print_notes_and_errors(&status);
    Ok(EXIT_OK)
}

pub fn print_notes_and_errors(status: &StatusReport) {
    for note in &status.notes {
        println!("note: {note}");
    }
    for cache in &status.caches {
        let unmanaged = cache.last_scan.iter().flat_map(|s| &s.unmanaged);
        for u in unmanaged.filter(|u| u.disk_bytes > 0) {
            println!(
                "not managed in {}: {}, {}: {}",
                cache.name,
                u.what,
                cachewarden::units::format_bytes(u.disk_bytes),
                u.why
            );
        }
        for t in &cache.toolchains {
            println!(
                "toolchain in {}: {}, {}, last used {}",
                cache.name,
                t.version,
                cachewarden::units::format_bytes(t.disk_bytes),
                cachewarden::units::local_time(t.last_use)
            );
        }
        for why in &cache.unmet {
            println!("over a limit in {}: {why}", cache.name);
        }
        if let Some(held) = &cache.held {
            println!(
                "held in {} at {}: {} entries that running tools may open: {}",
                cache.name,
                cachewarden::units::local_time(held.at),
                held.entries,
                held.by
            );
        }
        for lease in &cache.leases {
            println!("held in {} now: {lease}", cache.name);
        }
        for c in &cache.conditions {
            println!(
                "now in {}: {} (since {})",
                cache.name,
                c.message,
                cachewarden::units::local_time(c.at)
            );
        }
        for e in &cache.errors {
            println!("error in {}: {}", cache.name, e.message);
        }
        for p in &cache.problems.recent {
            println!(
                "problem in {}: {} {}: {}",
                cache.name, p.path, p.problem, p.detail
            );
        }
    }
}
