//! The CLI's side of the socket: one HTTP/1.1 request per connection.

use std::path::Path;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Sends `method path` to the daemon on `socket`; returns the status code and body.
///
/// Refuses a socket in a directory another user could have put it in
/// ([`crate::own_files::check_socket_dir`]).
pub async fn request(socket: &Path, method: &str, path: &str) -> anyhow::Result<(u16, Bytes)> {
    request_with_body(socket, method, path, "").await
}

/// [`request`] with a JSON body.
pub async fn request_with_body(
    socket: &Path,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, Bytes)> {
    crate::own_files::check_socket_dir(socket)?;
    let stream = tokio::net::UnixStream::connect(socket).await.with_context(|| {
        format!(
            "cannot reach the cachewarden daemon at {} (is it running? start it with `cachewarden daemon`)",
            socket.display()
        )
    })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}
