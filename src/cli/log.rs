//! `cachewarden log`: the audit trail of removals, from the daemon or its state file.

use super::*;
use cachewarden::report;
use cachewarden::units::format_bytes;

pub struct Args {
    pub since: Option<String>,
    pub cache: Option<String>,
    pub limit: usize,
    pub json: bool,
}

pub fn run(config: &Config, explicit_config: bool, args: Args) -> anyhow::Result<u8> {
    let Args {
        since,
        cache,
        limit,
        json,
    } = args;
    let since = since.as_deref().map(since_time).transpose()?;
    if let Some(name) = &cache {
        // A per-user table's caches are `table@user`; the table's name is not a cache.
        let known = config.caches.iter().any(|c| &c.name == name);
        if !known {
            let names: Vec<&str> = config.caches.iter().map(|c| c.name.as_str()).collect();
            anyhow::bail!(
                "no cache named {name:?} in {}; configured: {}",
                config.source,
                names.join(", ")
            );
        }
    }
    let query = cachewarden::audit::Query {
        since,
        cache,
        limit: Some(limit),
        caches: None,
    };
    let records = audit_records(config, explicit_config, &query)?;
    if json {
        print_json(&records)?;
    } else if records.is_empty() {
        println!("no removals recorded");
    } else {
        let now = cachewarden::now();
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|r| {
                vec![
                    cachewarden::units::local_time(r.at),
                    r.cache.clone(),
                    r.entry.clone(),
                    r.bytes.map_or("-".into(), format_bytes),
                    r.last_use.map_or("-".into(), |t| {
                        format!("{} ago", report::age(Some(now - t)))
                    }),
                    match r.uid {
                        Some(uid) => format!("{} (uid {uid})", r.reason),
                        None => r.reason.clone(),
                    },
                ]
            })
            .collect();
        print!(
            "{}",
            report::table(
                &["TIME", "CACHE", "ENTRY", "SIZE", "LAST USE", "REASON"],
                &rows
            )
        );
    }
    Ok(EXIT_OK)
}

/// The audit trail: the daemon's answer, or — with no daemon — the file in the state
/// directory.
pub fn audit_records(
    config: &Config,
    explicit_config: bool,
    query: &cachewarden::audit::Query,
) -> anyhow::Result<Vec<cachewarden::audit::AuditRecord>> {
    let socket = super::find_daemon::cli_socket(config, explicit_config);
    let mut path = "/v1/audit?".to_string();
    if let Some(t) = query.since {
        path.push_str(&format!("since={t}&"));
    }
    if let Some(c) = &query.cache {
        path.push_str(&format!("cache={}&", percent_encode(c)));
    }
    path.push_str(&format!("limit={}", query.limit.unwrap_or(100)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(cachewarden::client::request(&socket, "GET", &path)) {
        Ok((200, body)) => Ok(serde_json::from_slice(&body)
            .context("the daemon's audit trail is not what this CLI expects")?),
        Ok((code, body)) => anyhow::bail!(
            "the daemon answered {code}: {}",
            String::from_utf8_lossy(&body)
        ),
        Err(_) => {
            let dir = config.daemon.state_dir.as_deref().context(
                "no daemon answers and the config has no state_dir to read the trail from",
            )?;
            Ok(cachewarden::audit::read(&dir.join("audit.jsonl"), query)
                .with_context(|| format!("reading the audit trail in {}", dir.display()))?)
        }
    }
}

/// `--since`: a duration ago ("2h", "7d") or a Unix time. A bare small number is
/// neither ("2": two seconds after 1970, or two of what?) and is refused (issue #30).
fn since_time(when: &str) -> anyhow::Result<i64> {
    /// 2001-09-09: any Unix time a trail could hold is past it.
    const PLAUSIBLE_UNIX_TIME: i64 = 1_000_000_000;
    match when.trim().parse::<i64>() {
        Ok(t) if t >= PLAUSIBLE_UNIX_TIME => Ok(t),
        Ok(_) => anyhow::bail!(
            "--since {when}: give a duration with its unit (\"{when}h\", \"{when}d\") or a Unix time"
        ),
        Err(_) => {
            let ago = cachewarden::units::parse_duration(when)
                .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
            Ok(cachewarden::now() - ago.as_secs() as i64)
        }
    }
}
