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
//! | POST | `/v1/reload` | re-read the config file (like SIGHUP) |
//! | GET  | `/metrics` | Prometheus text format |
//!
//! POST options may also come as a JSON body (`{"dry_run": true}`).
//!
//! ## Not a hole (safety rule 5)
//!
//! The socket sits in a directory only the daemon's user (and the configured group) can
//! enter. Each connection's peer is read with `SO_PEERCRED`; requests that change
//! anything (every method but GET/HEAD) need the daemon's own uid or root. Clients get
//! [`HEADER_TIMEOUT`] to send headers and [`BODY_TIMEOUT`] for a body of at most
//! [`MAX_BODY`] bytes; at most [`MAX_CONNECTIONS`] are served at once, more get a 503.
//! Every error is a JSON object `{"error": "…"}` with a 4xx/5xx status.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::cache::Cache;
use crate::daemon::Shared;
use crate::report::EntryOrder;

pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A response a client does not read, or a handler stuck on a dead disk, must not pin
/// a connection slot for ever.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const MAX_BODY: usize = 64 * 1024;
pub const MAX_CONNECTIONS: usize = 64;
/// How long a graceful stop waits for requests in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ENTRIES_LISTED: usize = 100_000;

/// The peer of one connection, from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: u32,
}

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
        .route("/v1/reload", post(reload))
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
        .layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .with_state(shared)
}

async fn authorize(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let read_only = matches!(*request.method(), Method::GET | Method::HEAD);
    let peer = request.extensions().get::<Peer>().copied();
    match peer {
        Some(peer) if read_only || peer.uid == 0 || peer.uid == shared.own_uid => next.run(request).await,
        Some(peer) => ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "{} {} changes the cache: only uid {} (the daemon's) or root may do that; you are uid {}",
                request.method(),
                request.uri().path(),
                shared.own_uid,
                peer.uid
            ),
        )
        .into_response(),
        None => ApiError(StatusCode::FORBIDDEN, "unknown peer".into()).into_response(),
    }
}

fn find_cache(shared: &Shared, name: &str) -> Result<Arc<dyn Cache>, ApiError> {
    shared.cache(name).ok_or_else(|| {
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
        .map_err(|_| {
            ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY} bytes"),
            )
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(from_query);
    }
    serde_json::from_slice(&bytes).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

async fn status(State(shared): State<Arc<Shared>>) -> Result<Response, ApiError> {
    let report = blocking(move || shared.status()).await?;
    Ok(Json(report).into_response())
}

async fn cache_status(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let cache = find_cache(&shared, &name)?;
    Ok(Json(blocking(move || cache.status(crate::now())).await?).into_response())
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
    query: Result<Query<EntriesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let cache = find_cache(&shared, &name)?;
    let q = query
        .map_err(|e| bad_request(format!("invalid query: {}", e.body_text())))?
        .0;
    let limit = q.limit.unwrap_or(100).min(MAX_ENTRIES_LISTED);
    let list = blocking(move || cache.entries(q.order, limit, crate::now())).await?;
    Ok(Json(list).into_response())
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
    query: Result<Query<EvictOptions>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let cache = find_cache(&shared, &name)?;
    let opts: EvictOptions = options(query, body).await?;
    let selection = crate::cache::Selection {
        entries: opts.entries.into_iter().chain(opts.entry).collect(),
        modules: opts.modules.into_iter().chain(opts.module).collect(),
    };
    let dry_run = opts.dry_run;
    let report = if selection.is_empty() {
        blocking(move || cache.evict(dry_run, crate::now())).await?
    } else {
        blocking(move || cache.evict_selected(&selection, dry_run, crate::now())).await?
    };
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
    query: Result<Query<VerifyOptions>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let cache = find_cache(&shared, &name)?;
    let opts = options(query, body).await?;
    let report = blocking(move || cache.verify(opts.repair, crate::now())).await?;
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
    let report = blocking(move || shared.status()).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::render(&report),
    )
        .into_response())
}

/// Accepts connections until `shutdown`, then waits up to [`DRAIN_TIMEOUT`] for the
/// requests in flight.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let router = router(shared);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let (mut stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("accepting a socket connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            connections.spawn(async move {
                let body = r#"{"error":"too many connections, try again"}"#;
                let reply = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(reply.as_bytes())).await;
            });
            continue;
        };
        let peer = match stream.peer_cred() {
            Ok(cred) => Peer { uid: cred.uid() },
            Err(e) => {
                tracing::warn!("cannot read the peer of a socket connection: {e}");
                continue;
            }
        };
        let router = router.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(peer);
                    router.clone().oneshot(request.map(Body::new))
                },
            );
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .half_close(true)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Err(e)) => tracing::debug!("socket connection ended with an error: {e}"),
                Err(_) => tracing::warn!(
                    "closed a socket connection open longer than {CONNECTION_TIMEOUT:?}"
                ),
                Ok(Ok(())) => {}
            }
            drop(permit);
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            "stopping with {} socket requests still running",
            connections.len()
        );
        connections.abort_all();
    }
}
