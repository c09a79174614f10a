//! Upload bodies streamed from a file in large pieces. reqwest's blocking client feeds a reader
//! body to the connection 8 KiB at a time, each piece handed to its runtime thread through a
//! channel with a wake-up of its own (about 8 600 for a 70 MB layer). A blob streamed from a
//! file goes instead through the async client, on a runtime thread this client starts the
//! first time it uploads: the calling thread reads the file [`PIECE`] bytes at a time into a
//! queue of one, which the connection drains. The answer comes back as a blocking
//! [`Response`] with its body read (an upload's answer is small), so every caller judges it as
//! before.

use std::io::Read;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use reqwest::blocking::{Request, Response};
use reqwest::ResponseBuilderExt;
use tokio::sync::mpsc;

use super::error::ErrorKind;
use super::retry::Failure;

/// Bytes read from the file at once and handed to the connection as one piece. With one piece
/// queued and one being read, an upload holds at most two of them.
pub(super) const PIECE: usize = 512 * 1024;

/// The most of an upload's answer that is kept (it only carries the registry's message).
const ANSWER_CAP: usize = 64 * 1024;

/// The async client and the runtime thread that drives its connections.
pub(super) struct Streamer {
    client: reqwest::Client,
    runtime: OnceLock<Result<Runtime, String>>,
}

struct Runtime {
    handle: tokio::runtime::Handle,
    /// Dropped with the streamer, which ends the runtime thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The file's bytes as an HTTP body: pieces from the queue, then the end.
struct Feed {
    pieces: mpsc::Receiver<Bytes>,
    len: u64,
}

impl http_body::Body for Feed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.pieces
            .poll_recv(cx)
            .map(|piece| piece.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

impl Streamer {
    pub(super) fn new(client: reqwest::Client) -> Self {
        Streamer {
            client,
            runtime: OnceLock::new(),
        }
    }

    fn handle(&self) -> Result<&tokio::runtime::Handle, Failure> {
        let runtime = self.runtime.get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let handle = rt.handle().clone();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new()
                .name("talext-upload".into())
                .spawn(move || {
                    let _ = rt.block_on(stopped);
                })
                .map_err(|e| e.to_string())?;
            Ok(Runtime {
                handle,
                _stop: stop,
            })
        });
        match runtime {
            Ok(r) => Ok(&r.handle),
            Err(e) => Err(Failure::fatal(ErrorKind::Config(format!(
                "cannot start the upload thread: {e}"
            )))),
        }
    }

    /// Send `request` (built by the blocking client, headers and authorization set, no body)
    /// with the `len` bytes `body` yields. A read error of `body` is the failure; so is a
    /// transport error, turned by `network`.
    pub(super) fn execute(
        &self,
        request: Request,
        mut body: Box<dyn Read + Send>,
        len: u64,
        wait: Duration,
        read_failure: &dyn Fn(std::io::Error) -> Failure,
        network: &dyn Fn(reqwest::Error) -> Failure,
    ) -> Result<Response, Failure> {
        let handle = self.handle()?;
        let (tx, pieces) = mpsc::channel::<Bytes>(1);
        let mut builder = self
            .client
            .request(request.method().clone(), request.url().clone())
            .headers(request.headers().clone())
            .body(reqwest::Body::wrap(Feed { pieces, len }));
        if let Some(t) = request.timeout() {
            builder = builder.timeout(*t);
        }
        let (done, answer) = std::sync::mpsc::channel();
        handle.spawn(async move {
            let _ = done.send(answered(builder, wait).await);
        });
        // Feed the connection from this thread; stop early when the request ended (the
        // registry answered before the end of the body, or the connection failed).
        let mut failed_read = None;
        let mut left = len;
        while left > 0 {
            let mut piece = vec![0u8; PIECE.min(left as usize)];
            let mut filled = 0;
            while filled < piece.len() {
                match body.read(&mut piece[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failed_read = Some(e);
                        break;
                    }
                }
            }
            if filled == 0 && failed_read.is_none() {
                failed_read = Some(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file ended {left} bytes before the blob's size"),
                ));
            }
            if failed_read.is_some() {
                break;
            }
            piece.truncate(filled);
            left -= filled as u64;
            if tx.blocking_send(Bytes::from(piece)).is_err() {
                break;
            }
        }
        // A failed or short read ends the body early, which fails the request: the read is
        // what is reported.
        drop(tx);
        let result = answer
            .recv()
            .map_err(|_| Failure::fatal(ErrorKind::Protocol("the upload thread stopped".into())))?;
        if let Some(e) = failed_read {
            return Err(read_failure(e));
        }
        let (status, version, url, headers, bytes) = result.map_err(network)?;
        let mut answer = http::Response::builder()
            .status(status)
            .version(version)
            .url(url);
        if let Some(h) = answer.headers_mut() {
            *h = headers;
        }
        let answer = answer
            .body(bytes)
            .map_err(|e| Failure::fatal(ErrorKind::Protocol(e.to_string())))?;
        Ok(Response::from(answer))
    }
}

type Answer = (
    reqwest::StatusCode,
    reqwest::Version,
    reqwest::Url,
    reqwest::header::HeaderMap,
    Bytes,
);

/// Send the request and read the head of its answer and at most [`ANSWER_CAP`] bytes of its
/// body, each read waiting at most `wait` (the answer to an upload is small; what counts is its
/// status and headers).
async fn answered(
    builder: reqwest::RequestBuilder,
    wait: Duration,
) -> Result<Answer, reqwest::Error> {
    let mut resp = builder.send().await?;
    let head = (
        resp.status(),
        resp.version(),
        resp.url().clone(),
        resp.headers().clone(),
    );
    let mut body = Vec::new();
    while body.len() < ANSWER_CAP {
        match tokio::time::timeout(wait, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ANSWER_CAP);
    Ok((head.0, head.1, head.2, head.3, Bytes::from(body)))
}
