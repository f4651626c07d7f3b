//! cachewarden: keeps build and module caches under size, age and free-space limits with
//! LRU eviction, finds broken entries, and reports over a Unix socket.
//!
//! Map of the crate (see `docs/architecture.md`):
//! * [`config`] and [`units`]: the TOML config and its value syntaxes;
//! * [`kinds`]: the on-disk formats, one module per kind;
//! * [`index`]: the in-memory index of one cache; [`plan`]: the eviction policy (pure);
//! * [`cache`]: one managed cache (index + kind + limits + history);
//! * [`watch`]: inotify → index updates; [`daemon`]: supervisors, signals, systemd;
//! * [`server`], [`metrics`] and [`client`]: the socket API; [`report`]: what it returns.

pub mod audit;
pub mod cache;
pub mod cacheprog;
pub mod churn;
pub mod client;
pub mod config;
#[cfg(test)]
mod corpus;
pub mod daemon;
pub mod doctor;
pub mod fsutil;
pub mod golang;
pub mod group;
pub mod index;
pub mod instance;
pub mod kinds;
pub mod metrics;
pub mod own_files;
pub mod parallel;
pub mod plan;
pub mod report;
pub mod roots;
pub mod schedule;
pub mod server;
pub mod shared;
pub mod slots;
pub mod snapshot;
pub mod units;
pub mod users;
pub mod watch;

/// Seconds since the Unix epoch.
pub type UnixTime = i64;

/// Seconds since the Unix epoch, now.
pub fn now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
