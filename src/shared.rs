//! What the daemon's supervisors and the socket server share: the running config and
//! caches, the audit trail, and the channel through which the server asks the daemon's
//! main loop to reload. Its own module so that the server never imports the daemon
//! (`daemon` starts `server`; both read this).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, oneshot};

use crate::audit::{AuditLog, AuditRecord};
use crate::cache::Cache;
use crate::config::{CacheConfig, Config};
use crate::report::{CacheStatus, StatusReport};

/// State the socket server reads.
pub struct Shared {
    pub own_uid: u32,
    pub started_at: i64,
    /// Every removal, for `GET /v1/audit` and `cachewarden log`.
    pub audit: Arc<AuditLog>,
    pub(crate) running: RwLock<Running>,
    pub(crate) control: mpsc::Sender<Control>,
}

pub(crate) struct Running {
    pub(crate) config: Config,
    pub(crate) caches: Vec<Arc<dyn Cache>>,
    /// Fixed at start: the directory snapshots go to, if it could be created.
    pub(crate) state_dir: Option<PathBuf>,
}

pub(crate) enum Control {
    Reload(oneshot::Sender<Result<String, String>>),
}

impl Shared {
    pub fn caches(&self) -> Vec<Arc<dyn Cache>> {
        self.running.read().unwrap().caches.clone()
    }

    pub fn cache(&self, name: &str) -> Option<Arc<dyn Cache>> {
        self.caches().into_iter().find(|c| c.config().name == name)
    }

    pub fn status(&self) -> StatusReport {
        let (source, notes, caches) = {
            let running = self.running.read().unwrap();
            (
                running.config.source.to_string(),
                running.config.notes.clone(),
                running.caches.clone(),
            )
        };
        let waiting = self.waiting();
        let now = crate::now();
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            config: source,
            started_at: self.started_at,
            caches: caches
                .iter()
                .map(|c| c.status(now))
                .chain(waiting.iter().map(CacheStatus::waiting))
                .collect(),
            notes,
        }
    }

    /// The configured caches whose directory does not exist yet.
    pub fn waiting(&self) -> Vec<CacheConfig> {
        let running = self.running.read().unwrap();
        running
            .config
            .caches
            .iter()
            .filter(|c| c.waiting)
            .cloned()
            .collect()
    }

    /// Whether a table finds its caches per user or by a glob (new ones are looked
    /// for now and then).
    pub fn discovers(&self) -> bool {
        self.running.read().unwrap().config.discovers
    }

    /// Asks the daemon's main loop to reload the config; the answer says what happened.
    pub async fn request_reload(&self) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Reload(tx))
            .await
            .map_err(|_| "the daemon is stopping".to_string())?;
        rx.await.map_err(|_| "the daemon is stopping".to_string())?
    }
}

/// Writes removals to the audit trail; a failure to is an error of the cache.
pub fn record_removals(cache: &Arc<dyn Cache>, audit: &AuditLog, records: &[AuditRecord]) {
    if let Err(e) = audit.record(records) {
        cache.record_error(format!("cannot write the audit trail: {e}"), crate::now());
    }
}
