//! Connections to the socket: how many, whose, and for how long (see the module docs of
//! `server.rs`, "Every client answered, none starved").

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Time to send the whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// A write that makes no progress for this long (a client that stopped reading) ends
/// the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A handler stuck on a dead disk must not pin a slot for ever; a sweep of a huge cache
/// may legitimately take many minutes.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a connection over the limit waits for a slot before it is refused.
pub const SLOT_WAIT: Duration = Duration::from_secs(1);
/// How long a refused client gets to send its request and read the 503.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
/// File descriptors kept for the daemon's own work (256 GOCACHE shard directories, I/O
/// threads' directories, inotify, snapshots) when sizing the connection limit.
pub const RESERVED_FDS: u64 = 1024;
/// How long a graceful stop waits for requests in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The peer of one connection, from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: u32,
}

/// How many connections are served at once, in total and per uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once, every uid together.
    pub total: usize,
    /// Of `total`, slots only root and the daemon's own uid may take.
    pub privileged_reserve: usize,
    /// Slots one unprivileged uid may hold at once.
    pub per_uid: usize,
}

impl ConnectionLimits {
    /// Limits for a process allowed `fds` open files.
    pub fn for_fd_budget(fds: u64) -> ConnectionLimits {
        let total = fds.saturating_sub(RESERVED_FDS).clamp(16, 8192) as usize;
        ConnectionLimits {
            total,
            privileged_reserve: (total / 16).max(4),
            per_uid: (total / 4).max(4),
        }
    }

    /// Raises this process's `RLIMIT_NOFILE` soft limit to its hard limit (the soft
    /// 1,024 is for `select(2)` users; tokio uses epoll) and sizes the limits by it.
    pub fn claim_fd_budget() -> ConnectionLimits {
        ConnectionLimits::for_fd_budget(crate::fsutil::raise_open_file_limit())
    }
}

/// The connection slots: a shared pool, a reserve for privileged peers, and a cap per
/// unprivileged uid.
struct Slots {
    limits: ConnectionLimits,
    own_uid: u32,
    shared: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
    per_uid: Mutex<HashMap<u32, Arc<Semaphore>>>,
    /// Unprivileged connections accepted and waiting for a slot: bounded too, so a
    /// flood cannot hold an unbounded number of descriptors while it waits.
    waiting: Arc<Semaphore>,
}

/// A connection's hold on its slot, released when dropped.
struct Slot {
    _pool: OwnedSemaphorePermit,
    _uid: Option<OwnedSemaphorePermit>,
}

impl Slots {
    fn new(limits: ConnectionLimits, own_uid: u32) -> Slots {
        Slots {
            limits,
            own_uid,
            shared: Arc::new(Semaphore::new(limits.total - limits.privileged_reserve)),
            reserve: Arc::new(Semaphore::new(limits.privileged_reserve)),
            per_uid: Mutex::new(HashMap::new()),
            waiting: Arc::new(Semaphore::new(limits.total)),
        }
    }

    fn privileged(&self, peer: Peer) -> bool {
        peer.uid == 0 || peer.uid == self.own_uid
    }

    /// A slot for `peer`, waiting up to [`SLOT_WAIT`]; `None` if none came free, or at
    /// once if an unprivileged peer already holds or waits for its share.
    async fn acquire(&self, peer: Peer) -> Option<Slot> {
        if self.privileged(peer) {
            let wait = async {
                tokio::select! {
                    p = self.shared.clone().acquire_owned() => p,
                    p = self.reserve.clone().acquire_owned() => p,
                }
            };
            let pool = tokio::time::timeout(SLOT_WAIT, wait).await.ok()?.ok()?;
            return Some(Slot {
                _pool: pool,
                _uid: None,
            });
        }
        let share = self
            .per_uid
            .lock()
            .unwrap()
            .entry(peer.uid)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_uid)))
            .clone()
            .try_acquire_owned()
            .ok()?;
        let _waiting = self.waiting.clone().try_acquire_owned().ok()?;
        let pool = tokio::time::timeout(SLOT_WAIT, self.shared.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        Some(Slot {
            _pool: pool,
            _uid: Some(share),
        })
    }
}

/// Accepts connections until `shutdown`, then waits up to [`DRAIN_TIMEOUT`] for the
/// requests in flight.
pub async fn serve(
    listener: UnixListener,
    router: Router,
    limits: ConnectionLimits,
    own_uid: u32,
    shutdown: CancellationToken,
) {
    tracing::debug!(?limits, "serving the socket");
    let slots = Arc::new(Slots::new(limits, own_uid));
    let mut connections = JoinSet::new();
    while let Some((stream, _)) = next_connection(&shutdown, "socket", || listener.accept()).await {
        while connections.try_join_next().is_some() {}
        let peer = match stream.peer_cred() {
            Ok(cred) => Peer { uid: cred.uid() },
            Err(e) => {
                tracing::warn!("cannot read the peer of a socket connection: {e}");
                continue;
            }
        };
        let (slots, router) = (slots.clone(), router.clone());
        connections.spawn(async move {
            match slots.acquire(peer).await {
                Some(slot) => serve_connection(stream, peer, router, slot).await,
                None => {
                    tracing::debug!(uid = peer.uid, "no connection slot came free: refused");
                    refuse(stream).await;
                }
            }
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

async fn serve_connection(stream: UnixStream, peer: Peer, router: Router, slot: Slot) {
    serve_http(stream, Some(peer), router).await;
    drop(slot);
}

/// Scrapers served at once on the metrics listener.
pub const METRICS_CONNECTIONS: usize = 16;

/// Serves `router` (only `GET /metrics`) on a loopback TCP listener, for Prometheus
/// without socket access: [`METRICS_CONNECTIONS`] at once, the socket's deadlines.
pub async fn serve_tcp(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(METRICS_CONNECTIONS));
    let mut connections = JoinSet::new();
    while let Some((stream, _)) = next_connection(&shutdown, "metrics", || listener.accept()).await
    {
        while connections.try_join_next().is_some() {}
        let (slots, router) = (slots.clone(), router.clone());
        connections.spawn(async move {
            match tokio::time::timeout(SLOT_WAIT, slots.acquire_owned()).await {
                Ok(Ok(_slot)) => serve_http(stream, None, router).await,
                _ => refuse(stream).await,
            }
        });
    }
    connections.abort_all();
}

/// The next accepted connection, or `None` once `shutdown` fires. A failed accept
/// (`EMFILE` and the like) is logged and retried after a pause: connections in flight
/// will free descriptors.
async fn next_connection<C, F>(
    shutdown: &CancellationToken,
    what: &str,
    mut accept: impl FnMut() -> F,
) -> Option<C>
where
    F: std::future::Future<Output = std::io::Result<C>>,
{
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = accept() => match accepted {
                Ok(conn) => return Some(conn),
                Err(e) => {
                    tracing::warn!("accepting a {what} connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
}

/// One HTTP/1.1 request on `stream`; a Unix socket's peer goes into its extensions.
async fn serve_http<S>(stream: S, peer: Option<Peer>, router: Router)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let uid = peer.map_or(-1, |p| i64::from(p.uid));
    let service = hyper::service::service_fn(
        move |mut request: hyper::Request<hyper::body::Incoming>| {
            if let Some(peer) = peer {
                request.extensions_mut().insert(peer);
            }
            let started = std::time::Instant::now();
            let (method, path) = (request.method().clone(), request.uri().path().to_string());
            let response = router.clone().oneshot(request.map(Body::new));
            async move {
                let response = response.await;
                if let Ok(r) = &response {
                    tracing::debug!(uid, %method, %path, status = r.status().as_u16(), us = started.elapsed().as_micros() as u64, "request");
                }
                response
            }
        },
    );
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .keep_alive(false)
        .half_close(true)
        .serve_connection(TokioIo::new(WriteDeadline::new(stream)), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
        Ok(Err(e)) => {
            let cause = std::error::Error::source(&e).map(|c| format!(": {c}"));
            tracing::debug!(
                "socket connection ended with an error: {e}{}",
                cause.unwrap_or_default()
            )
        }
        Err(_) => {
            tracing::warn!("closed a socket connection open longer than {CONNECTION_TIMEOUT:?}")
        }
        Ok(Ok(())) => {}
    }
}

/// Answers 503 to a connection no slot came free for: reads its request head first and
/// drains what else it sends after the answer, so the client reads the 503 instead of a
/// reset connection.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    const LIMIT: usize = 16 * 1024;
    let mut buf = [0u8; 1024];
    let read_head = async {
        let mut head = Vec::with_capacity(1024);
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < LIMIT {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    };
    // A client that never finishes its head still gets the answer.
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT / 2, read_head).await;
    let answer = async {
        let body = r#"{"error":"the daemon is serving as many connections as it can; try again"}"#;
        let reply = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await?;
        let mut drained = 0;
        while drained < LIMIT {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, answer).await;
}

/// A stream whose writes fail once they make no progress for [`WRITE_TIMEOUT`]: hyper
/// has a deadline for reading a request head but none for writing the response.
struct WriteDeadline<S> {
    inner: S,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S) -> Self {
        WriteDeadline {
            inner,
            stalled: None,
        }
    }

    /// Passes a write's outcome on, starting the stall timer while it is pending.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match outcome {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client read nothing for {WRITE_TIMEOUT:?}"),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, outcome)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, outcome)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_fd_budget() {
        let small = ConnectionLimits::for_fd_budget(1024);
        assert_eq!(small.total, 16, "a tiny budget still serves a few");
        let systemd = ConnectionLimits::for_fd_budget(524_288);
        assert_eq!(systemd.total, 8192);
        let common = ConnectionLimits::for_fd_budget(4096);
        assert_eq!(common.total, 4096 - RESERVED_FDS as usize);
        for l in [small, systemd, common] {
            assert!(l.per_uid < l.total && l.privileged_reserve < l.total);
        }
    }

    fn peer(uid: u32) -> Peer {
        Peer { uid }
    }

    #[tokio::test(start_paused = true)]
    async fn one_uid_cannot_take_every_slot() {
        let limits = ConnectionLimits {
            total: 16,
            privileged_reserve: 4,
            per_uid: 4,
        };
        let slots = Slots::new(limits, 1000);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(slots.acquire(peer(65534)).await.expect("within its share"));
        }
        assert!(
            slots.acquire(peer(65534)).await.is_none(),
            "a fifth connection of the same uid is refused at once"
        );
        // Others still get slots: another user, then root and the daemon's uid even
        // once the shared pool is gone.
        for uid in [1, 2] {
            for _ in 0..4 {
                held.push(slots.acquire(peer(uid)).await.expect("another uid's share"));
            }
        }
        assert_eq!(slots.shared.available_permits(), 0);
        assert!(
            slots.acquire(peer(3)).await.is_none(),
            "the shared pool is full"
        );
        for uid in [0, 1000, 0, 1000] {
            held.push(
                slots
                    .acquire(peer(uid))
                    .await
                    .expect("the privileged reserve"),
            );
        }
        assert!(
            slots.acquire(peer(0)).await.is_none(),
            "every slot is taken"
        );
        held.truncate(0);
        assert!(
            slots.acquire(peer(65534)).await.is_some(),
            "slots come back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_over_the_limit_waits_for_a_slot() {
        let limits = ConnectionLimits {
            total: 5,
            privileged_reserve: 1,
            per_uid: 4,
        };
        let slots = Arc::new(Slots::new(limits, 1000));
        let mut held = Vec::new();
        for uid in 1..=4 {
            held.push(slots.acquire(peer(uid)).await.unwrap());
        }
        let waiter = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire(peer(9)).await.is_some() }
        });
        tokio::time::sleep(SLOT_WAIT / 2).await;
        held.pop();
        assert!(
            waiter.await.unwrap(),
            "the slot freed within SLOT_WAIT went to the waiter"
        );
    }
}
