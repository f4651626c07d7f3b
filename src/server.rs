//! The Unix-socket API: HTTP/1.1 with JSON bodies, so ops can use
//! `curl --unix-socket SOCK http://localhost/v1/status`.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET  | `/v1/status` | every cache: size vs limits, last scan/eviction, problems, errors |
//! | GET  | `/v1/caches/{name}` | one cache's status |
//! | GET  | `/v1/caches/{name}/entries?order=oldest\|largest&limit=N` | entries from the index |
//! | POST | `/v1/caches/{name}/evict?dry_run=true\|false` | enforce the limits now |
//! | POST | `/v1/caches/{name}/evict?entry=E` or `module=M` | remove named entries / every version of a module |
//! | POST | `/v1/caches/{name}/verify?repair=true\|false` | integrity sweep |
//! | POST | `/v1/caches/{name}/recheck` `{"paths": […]}` | check again these entries and those with open problems (what `cachewarden verify` found or repaired); never repairs |
//! | POST | `/v1/reload` | re-read the config file (like SIGHUP) |
//! | GET  | `/v1/audit?since=T&cache=C&limit=N` | removals: what, when, why, at whose request |
//! | GET  | `/metrics` | Prometheus text format |
//!
//! POST options may also come as a JSON body (`{"dry_run": true}`).
//!
//! ## Not a hole (safety rule 5)
//!
//! The socket sits in a directory only the daemon's user (and the configured group) can
//! enter (`own_files.rs`). Each connection's peer is read with `SO_PEERCRED`; requests
//! that change anything (every method but GET/HEAD) need the daemon's own uid or root.
//! Every error is a JSON object `{"error": "…"}` with a 4xx/5xx status.
//!
//! ## Every client answered, none starved
//!
//! Ops scripts and monitoring on a shared server may open hundreds of connections at
//! once, and any local user in the socket group may be hostile. So:
//!
//! * **Slots follow the fd budget.** The daemon raises its `RLIMIT_NOFILE` soft limit
//!   to the hard one and serves up to [`ConnectionLimits`]`::total` connections at once
//!   (thousands under systemd's default), keeping [`RESERVED_FDS`] for its own work.
//! * **Over the limit, a client waits** up to [`SLOT_WAIT`] for a slot instead of being
//!   refused; one still refused reads a well-formed 503 (its request is read first:
//!   closing a Unix socket with unread data resets the peer's connection).
//! * **No uid can take every slot.** An unprivileged uid holds at most
//!   `per_uid` slots, and a few slots are kept for root and the daemon's own uid, so
//!   one user's idle connections cannot lock out an operator's `evict` or `reload`.
//! * **Slow clients are dropped:** [`HEAD_TIMEOUT`] to send the request head,
//!   [`BODY_TIMEOUT`] for a body of at most [`MAX_BODY`] bytes, and a write that makes
//!   no progress for [`WRITE_TIMEOUT`] ends the connection.
//! * **Bounded memory per request.** `status` and `/metrics` are O(1) in the size of
//!   the index (`index.rs`, Totals) and take no long-held lock. Listings are capped at
//!   [`MAX_ENTRIES_LISTED`], at most [`LISTINGS_AT_ONCE`] are built or sent at a time (each uid one, taking turns: `server/listings.rs`),
//!   each within [`LISTING_DEADLINE`], and their memory is handed back afterwards.

mod access;
mod connections;
mod listings;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Extension;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

pub use connections::{ConnectionLimits, Peer, DRAIN_TIMEOUT, HEAD_TIMEOUT, WRITE_TIMEOUT};

use crate::cache::Cache;
use crate::report::EntryOrder;
use crate::shared::Shared;
use access::Access;

pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_BODY: usize = 64 * 1024;
/// The most entries one listing returns (about 25 MB of JSON).
pub const MAX_ENTRIES_LISTED: usize = 100_000;
/// Listings built or being sent at once; others wait their turn.
pub const LISTINGS_AT_ONCE: usize = 2;
/// A listing not sent within this is cut off, so a client reading slowly cannot keep
/// its memory and its turn.
pub const LISTING_DEADLINE: Duration = Duration::from_secs(60);
static LISTINGS: listings::Turns = listings::Turns::new(LISTINGS_AT_ONCE);

#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/caches/{name}", get(cache_status))
        .route("/v1/caches/{name}/entries", get(entries))
        .route("/v1/caches/{name}/evict", post(evict))
        .route("/v1/caches/{name}/verify", post(verify))
        .route("/v1/caches/{name}/recheck", post(recheck))
        .route("/v1/users", get(users))
        .route("/v1/groups/{name}/evict", post(evict_group))
        .route("/v1/reload", post(reload))
        .route("/v1/audit", get(audit_trail))
        .route("/metrics", get(metrics))
        .fallback(|method: Method, uri: axum::http::Uri| async move {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no such endpoint: {method} {}", uri.path()),
            )
        })
        .method_not_allowed_fallback(|method: Method, uri: axum::http::Uri| async move {
            ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {}", uri.path()),
            )
        })
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            access::authorize,
        ))
        .with_state(shared)
}

fn find_cache(shared: &Shared, name: &str) -> Result<Arc<dyn Cache>, ApiError> {
    shared.cache(name).ok_or_else(|| {
        if let Some(waiting) = shared.waiting().into_iter().find(|c| c.name == name) {
            return ApiError(
                StatusCode::CONFLICT,
                format!(
                    "cache {name:?} is waiting for {}: it does not exist yet",
                    waiting.path.display()
                ),
            );
        }
        let names: Vec<String> = shared.caches().iter().map(|c| c.config().name).collect();
        ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no cache named {name:?}; configured caches: {}",
                names.join(", ")
            ),
        )
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )
    })
}

/// Options from the query string, overridden by a JSON body when one is sent.
async fn options<T: DeserializeOwned + Default>(
    query: Result<Query<T>, QueryRejection>,
    body: Body,
) -> Result<T, ApiError> {
    let from_query = query
        .map_err(|e| bad_request(format!("invalid query: {}", e.body_text())))?
        .0;
    let bytes = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY))
        .await
        .map_err(|_| {
            ApiError(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time".into(),
            )
        })?
        .map_err(body_error)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(from_query);
    }
    serde_json::from_slice(&bytes).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

// Status and metrics run on the async workers: they read totals kept current by the
// index (no walk, no long-held lock), so a thousand clients cost a thousand cheap
// calls, not a thousand blocking-pool threads.
/// Says what was wrong with a request body that could not be read.
fn body_error(e: axum::Error) -> ApiError {
    let inner = e.into_inner();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY} bytes"),
            );
        }
        cause = c.source();
    }
    bad_request(format!(
        "the request body is malformed or cut short (check content-length and chunked encoding): {inner}"
    ))
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.status()).into_response()
}

async fn cache_status(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(waiting) = shared.waiting().into_iter().find(|c| c.name == name) {
        return Ok(Json(crate::report::CacheStatus::waiting(&waiting)).into_response());
    }
    let cache = find_cache(&shared, &name)?;
    Ok(Json(cache.status(crate::now())).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EntriesQuery {
    #[serde(default)]
    order: EntryOrder,
    limit: Option<usize>,
}

async fn entries(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Extension(peer): Extension<Peer>,
    query: Result<Query<EntriesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let cache = access::cache_for(&shared, &name, peer, Access::List)?;
    let q = query
        .map_err(|e| bad_request(format!("invalid query: {}", e.body_text())))?
        .0;
    let limit = q.limit.unwrap_or(100).min(MAX_ENTRIES_LISTED);
    let turn = LISTINGS
        .acquire(peer.uid, LISTING_DEADLINE)
        .await
        .ok_or_else(|| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{LISTINGS_AT_ONCE} listings are being sent; try again"),
            )
        })?;
    let json = blocking(move || {
        let list = cache.entries(q.order, limit, crate::now());
        serde_json::to_vec(&list)
    })
    .await?
    .map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )
    })?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/json".to_string(),
            ),
            (axum::http::header::CONTENT_LENGTH, json.len().to_string()),
        ],
        Body::from_stream(listing_stream(json, turn)),
    )
        .into_response())
}

/// Sends a listing in 64 KiB chunks, holding its turn until the last one is written
/// (or the client is gone), then hands the memory back.
fn listing_stream(
    json: Vec<u8>,
    turn: listings::Turn,
) -> impl futures_util::Stream<Item = std::io::Result<hyper::body::Bytes>> {
    struct Turn(#[allow(dead_code)] listings::Turn);
    impl Drop for Turn {
        fn drop(&mut self) {
            crate::parallel::release_freed_memory();
        }
    }
    let turn = Turn(turn);
    let deadline = Instant::now() + LISTING_DEADLINE;
    let json = hyper::body::Bytes::from(json);
    let chunks: Vec<_> = (0..json.len())
        .step_by(64 * 1024)
        .map(|at| json.slice(at..(at + 64 * 1024).min(json.len())))
        .collect();
    drop(json);
    futures_util::stream::iter(chunks).map(move |chunk| {
        let _turn = &turn;
        if Instant::now() > deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the listing was not read within {LISTING_DEADLINE:?}"),
            ));
        }
        Ok(chunk)
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EvictOptions {
    #[serde(default)]
    dry_run: bool,
    /// Remove exactly these entries (`module@version` for go-mod) instead of enforcing
    /// the limits. In a query string: one `entry=`.
    #[serde(default)]
    entry: Option<String>,
    #[serde(default)]
    entries: Vec<String>,
    /// Remove every version of these modules. In a query string: one `module=`.
    #[serde(default)]
    module: Option<String>,
    #[serde(default)]
    modules: Vec<String>,
}

async fn evict(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Extension(peer): Extension<Peer>,
    query: Result<Query<EvictOptions>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let cache = access::cache_for(&shared, &name, peer, Access::Change)?;
    let opts: EvictOptions = options(query, body).await?;
    let selection = crate::cache::Selection {
        entries: opts.entries.into_iter().chain(opts.entry).collect(),
        modules: opts.modules.into_iter().chain(opts.module).collect(),
    };
    let dry_run = opts.dry_run;
    if !selection.modules.is_empty() && !cache.config().kind.names_modules() {
        return Err(bad_request(format!(
            "modules name Go modules, for go-mod caches; cache {name:?} is kind {} (name entries instead)",
            cache.config().kind
        )));
    }
    let c = cache.clone();
    let report = if selection.is_empty() {
        blocking(move || c.evict(dry_run, crate::now())).await?
    } else {
        blocking(move || c.evict_selected(&selection, dry_run, crate::now())).await?
    };
    let removed = crate::audit::of_eviction(&report, Some(peer.uid));
    crate::shared::record_removals(&cache, &shared.audit, &removed);
    if report.evicted.is_empty() && report.skipped.is_empty() && !report.not_found.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no entry named {} in cache {name:?}",
                report.not_found.join(", no entry named ")
            ),
        ));
    }
    Ok(Json(report).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VerifyOptions {
    #[serde(default)]
    repair: bool,
}

async fn verify(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Extension(peer): Extension<Peer>,
    query: Result<Query<VerifyOptions>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let cache = access::cache_for(&shared, &name, peer, Access::Change)?;
    let opts = options(query, body).await?;
    let c = cache.clone();
    let report = blocking(move || c.verify(opts.repair, crate::now())).await?;
    crate::shared::record_removals(&cache, &shared.audit, &crate::audit::of_repairs(&report));
    Ok(Json(report).into_response())
}

/// The most paths one recheck names: a one-shot verify that found more is told to run
/// a sweep instead.
pub const MAX_RECHECK: usize = 10_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecheckOptions {
    #[serde(default)]
    paths: Vec<String>,
}

async fn recheck(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Extension(peer): Extension<Peer>,
    query: Result<Query<RecheckOptions>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    // As a sweep: it reads (and hashes) entries, so only those who may sweep.
    let cache = access::cache_for(&shared, &name, peer, Access::Change)?;
    let opts: RecheckOptions = options(query, body).await?;
    if opts.paths.len() > MAX_RECHECK {
        return Err(bad_request(format!(
            "{} paths; at most {MAX_RECHECK} (POST …/verify for a whole sweep)",
            opts.paths.len()
        )));
    }
    let checked = blocking(move || cache.recheck(&opts.paths, crate::now())).await?;
    Ok(Json(serde_json::json!({ "checked": checked })).into_response())
}

async fn audit_trail(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    query: Result<Query<crate::audit::Query>, QueryRejection>,
) -> Result<Response, ApiError> {
    let mut q = query
        .map_err(|e| bad_request(format!("invalid query: {}", e.body_text())))?
        .0;
    // Records name entries and paths: the same rule as listings, per cache.
    if let Some(name) = &q.cache {
        if shared.cache(name).is_some() {
            access::cache_for(&shared, name, peer, Access::List)?;
        }
    }
    q.caches = access::audit_visible(&shared, peer);
    q.limit = Some(q.limit.unwrap_or(100).min(MAX_ENTRIES_LISTED));
    let Some(path) = shared.audit.path().map(std::path::Path::to_path_buf) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "no audit trail: the daemon has no state directory (see state_dir); removals are in its log only".into(),
        ));
    };
    let records = blocking(move || crate::audit::read(&path, &q))
        .await?
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the audit trail: {e}"),
            )
        })?;
    Ok(Json(records).into_response())
}

async fn users(State(shared): State<Arc<Shared>>) -> Response {
    Json(crate::report::by_user(&shared.status().caches)).into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GroupEvictOptions {
    #[serde(default)]
    dry_run: bool,
}

/// Enforces a table's group limits now; with `dry_run`, the plan: who gives how much
/// and which entries.
async fn evict_group(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Extension(peer): Extension<Peer>,
    query: Result<Query<GroupEvictOptions>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let opts: GroupEvictOptions = options(query, body).await?;
    let group = shared
        .running
        .read()
        .unwrap()
        .config
        .groups
        .iter()
        .find(|g| g.name == name)
        .cloned()
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no table {name:?} with group_max_size or group_min_free"),
            )
        })?;
    let members: Vec<Arc<dyn Cache>> = shared
        .caches()
        .into_iter()
        .filter(|c| c.config().table == name)
        .collect();
    let m = members.clone();
    let report =
        blocking(move || crate::group::enforce(&group, &m, opts.dry_run, crate::now())).await?;
    for share in &report.members {
        if let Some(cache) = members.iter().find(|c| c.config().name == share.cache) {
            let removed = crate::audit::of_eviction(&share.eviction, Some(peer.uid));
            crate::shared::record_removals(cache, &shared.audit, &removed);
        }
    }
    Ok(Json(report).into_response())
}

async fn reload(State(shared): State<Arc<Shared>>) -> Result<Response, ApiError> {
    match shared.request_reload().await {
        Ok(summary) => {
            Ok(Json(serde_json::json!({ "reloaded": true, "config": summary })).into_response())
        }
        Err(e) => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("config rejected, the old one stays in force: {e}"),
        )),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Result<Response, ApiError> {
    let report = shared.status();
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::render(&report),
    )
        .into_response())
}

/// Serves only `GET /metrics` on `listener` (`metrics_listen`, loopback) until
/// `shutdown`: no peer credentials there, so nothing else is reachable.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .fallback(|uri: axum::http::Uri| async move {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("only /metrics is served here, not {}", uri.path()),
            )
        })
        .with_state(shared);
    connections::serve_tcp(listener, router, shutdown).await;
}

/// Serves the API on `listener` until `shutdown`, with as many connections as the
/// process's file-descriptor budget allows.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let own_uid = shared.own_uid;
    let limits = ConnectionLimits::claim_fd_budget();
    connections::serve(listener, router(shared), limits, own_uid, shutdown).await;
}
