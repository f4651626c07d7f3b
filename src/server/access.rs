//! Who may do what over the socket.
//!
//! * Anyone who can reach the socket reads status and metrics (sizes, limits, counts).
//! * Root and the daemon's own uid do anything.
//! * A cache found per user (`users = …`, `go-build@alice`) belongs to that user: they
//!   may list its entries, read its audit trail, evict and verify it. Nobody else but
//!   root and the daemon's uid may: entry names and paths say what someone builds.
//! * Every other change (reload, group eviction, caches of no user) needs root or the
//!   daemon's uid.
//!
//! Rules are applied to what the router and the handlers *resolved* — the route
//! template axum matched and the cache the handler looked up by its decoded name —
//! never to the raw request path: `/v1/caches/go-build%40alice/entries` is alice's
//! cache too (issue #29: a check on the raw path let anyone read it).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{find_cache, ApiError, Peer};
use crate::cache::Cache;
use crate::shared::Shared;

/// What a request does with one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Its entries or its audit trail: names and paths.
    List,
    /// Evict or verify it.
    Change,
}

/// The routes on which a user who is neither root nor the daemon may change something:
/// their own cache, which the handler checks with [`cache_for`].
const OWNER_CHANGES: [&str; 2] = ["/v1/caches/{name}/evict", "/v1/caches/{name}/verify"];

fn admin(shared: &Shared, peer: Peer) -> bool {
    peer.uid == 0 || peer.uid == shared.own_uid
}

/// The first gate, on every matched route: reading is open, changing needs root or the
/// daemon's uid, except on a cache's own evict and verify routes, where the handler
/// decides on the cache it resolved.
pub async fn authorize(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(peer) = request.extensions().get::<Peer>().copied() else {
        return ApiError(StatusCode::FORBIDDEN, "unknown peer".into()).into_response();
    };
    let read_only = matches!(*request.method(), Method::GET | Method::HEAD);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str());
    if read_only || admin(&shared, peer) || route.is_some_and(|r| OWNER_CHANGES.contains(&r)) {
        return next.run(request).await;
    }
    ApiError(
        StatusCode::FORBIDDEN,
        format!(
            "{} {} changes the cache: only uid {} (the daemon's) or root may do that; you are uid {}",
            request.method(),
            request.uri().path(),
            shared.own_uid,
            peer.uid
        ),
    )
    .into_response()
}

/// The cache named `name` (decoded), if `peer` may `access` it.
pub fn cache_for(
    shared: &Shared,
    name: &str,
    peer: Peer,
    access: Access,
) -> Result<Arc<dyn Cache>, ApiError> {
    let cache = find_cache(shared, name)?;
    let owner = cache.config().owner;
    let allowed = admin(shared, peer)
        || match (&owner, access) {
            (Some(o), _) => o.uid == peer.uid,
            (None, Access::List) => true,
            (None, Access::Change) => false,
        };
    if allowed {
        return Ok(cache);
    }
    let what = match access {
        Access::List => "listed",
        Access::Change => "changed",
    };
    let whose = owner.map_or_else(
        || {
            format!(
                "cache {name:?} is {what} by uid {} (the daemon's) and root",
                shared.own_uid
            )
        },
        |o| {
            format!(
                "the entries of {}'s cache {name:?} are {what} by them and root only",
                o.name
            )
        },
    );
    Err(ApiError(
        StatusCode::FORBIDDEN,
        format!("{whose}; you are uid {}", peer.uid),
    ))
}

/// The caches whose audit records `peer` may read: `None` for all (root, the daemon's
/// uid), else the caches of no user and the peer's own.
pub fn audit_visible(shared: &Shared, peer: Peer) -> Option<std::collections::HashSet<String>> {
    if admin(shared, peer) {
        return None;
    }
    Some(
        shared
            .caches()
            .iter()
            .map(|c| c.config())
            .filter(|c| c.owner.as_ref().is_none_or(|o| o.uid == peer.uid))
            .map(|c| c.name)
            .collect(),
    )
}
