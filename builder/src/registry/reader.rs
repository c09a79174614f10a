//! A blob read straight from the registry's answer, for readers that consume it once (the
//! validator flattening a layer): nothing is written to disk. Every byte is counted and hashed
//! as it passes; a body longer than the descriptor fails at byte size+1, and at the end the
//! length and the digest must be what the descriptor says (OCI image-spec "Digests": verify
//! before use). As everywhere else, a reader must be read to its end for that last check to
//! run.
//!
//! A connection that fails in the middle is taken up again where it stopped, with
//! `Range: bytes=N-` (RFC 9110 §14.2, which the distribution spec allows on blob `GET`s); a
//! registry that ignores the range and sends the whole blob again has its first N bytes
//! skipped. The digest covers every byte handed out, so a registry that changes the content
//! between the two answers is caught at the end like any other mismatch.

use std::io::{self, Read};
use std::time::Instant;

use reqwest::blocking::Response;
use reqwest::header::{CONTENT_LENGTH, RANGE};
use reqwest::StatusCode;

use super::body::Hasher;
use super::client::{check_names, Op, RegistryClient};
use super::error::{ErrorKind, RegistryError};
use super::retry::{Failure, Retry};
use super::session::header;

/// A registry blob as a verified stream (see the module documentation).
pub struct BlobStream<'c> {
    client: &'c RegistryClient,
    repo: String,
    digest: String,
    size: u64,
    resp: Option<Response>,
    hasher: Option<Hasher>,
    seen: u64,
    resumes: u32,
    started: Instant,
    /// Set once the stream failed: every later read fails too.
    failed: bool,
}

impl RegistryClient {
    /// Open blob `digest` of `repo` (of `size` bytes) for one pass; the request is retried as
    /// any other until the registry answers with the body.
    pub fn open_blob(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
    ) -> Result<BlobStream<'_>, RegistryError> {
        let op = Op::pull(repo, format!("fetch blob {digest}"));
        check_names(&op, &self.registry, repo, digest)?;
        let mut stream = BlobStream {
            client: self,
            repo: repo.to_string(),
            digest: digest.to_string(),
            size,
            resp: None,
            hasher: Some(Hasher::for_digest(digest)),
            seen: 0,
            resumes: 0,
            started: Instant::now(),
            failed: false,
        };
        let resp = self.run(&op, || stream.request(&op))?;
        stream.resp = Some(resp);
        Ok(stream)
    }
}

impl BlobStream<'_> {
    /// One `GET` from where the stream stands; the answer is positioned at byte `seen`.
    fn request(&self, op: &Op) -> Result<Response, Failure> {
        let c = self.client;
        let url = format!("{}/blobs/{}", self.repo, self.digest);
        let from = self.seen;
        let mut resp = c.send(op, &|base| {
            let get = c.http.get(format!("{base}{url}"));
            Ok(if from > 0 {
                get.header(RANGE, format!("bytes={from}-"))
            } else {
                get
            })
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(c.failure(resp));
        }
        let length =
            header(&resp, CONTENT_LENGTH.as_str()).and_then(|v| v.trim().parse::<u64>().ok());
        let partial = status == StatusCode::PARTIAL_CONTENT;
        if partial {
            // The range must start where we asked.
            let start = header(&resp, "content-range").and_then(|v| {
                v.strip_prefix("bytes ")?
                    .split('-')
                    .next()?
                    .trim()
                    .parse::<u64>()
                    .ok()
            });
            if start != Some(from) {
                return Err(Failure::fatal(ErrorKind::Protocol(format!(
                    "asked for blob {} from byte {from}, the registry answered with another range",
                    self.digest
                ))));
            }
        }
        let remaining = if partial { self.size - from } else { self.size };
        if length.is_some_and(|n| n > remaining) {
            return Err(Failure::fatal(ErrorKind::Protocol(format!(
                "the registry announced {} bytes, expected {}",
                length.unwrap_or_default(),
                remaining
            ))));
        }
        if !partial && from > 0 {
            // The whole blob again: skip what was already handed out.
            let skipped = io::copy(&mut (&mut resp).take(from), &mut io::sink())
                .map_err(|e| c.read_failure(&e))?;
            if skipped != from {
                return Err(Failure {
                    kind: ErrorKind::Protocol(format!(
                        "the registry sent {skipped} bytes of blob {}, {from} were read before",
                        self.digest
                    )),
                    retry: Retry::Yes,
                });
            }
        }
        Ok(resp)
    }

    fn fail(&mut self, kind: ErrorKind) -> io::Error {
        self.failed = true;
        self.resp = None;
        let op = Op::pull(&self.repo, format!("fetch blob {}", self.digest));
        let err = self.client.error(&op, kind);
        let kind = match *err.kind {
            ErrorKind::DigestMismatch { .. } | ErrorKind::Protocol(_) => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }

    /// Take the body up again after `failure`, or give up with it. Each new request counts
    /// against the client's retry budget (attempts and time), as a retry of a download does.
    fn resume(&mut self, mut failure: Failure) -> io::Result<()> {
        self.resp = None;
        let policy = self.client.retry;
        loop {
            let elapsed = self.started.elapsed();
            let allowed = match failure.retry {
                Retry::No => false,
                Retry::Once => self.resumes == 0,
                Retry::Yes | Retry::After(_) => true,
            };
            if !allowed || self.resumes >= policy.max_retries || elapsed >= policy.max_time {
                let tries = self.resumes;
                let err = self.fail(failure.kind);
                if tries == 0 {
                    return Err(err);
                }
                return Err(
                    match err.into_inner().map(|i| i.downcast::<RegistryError>()) {
                        Some(Ok(e)) => io::Error::other(e.with_retries(tries + 1, elapsed)),
                        Some(Err(inner)) => io::Error::other(inner),
                        None => io::Error::other("blob read failed"),
                    },
                );
            }
            let delay = match failure.retry {
                Retry::After(d) => d,
                _ => policy.backoff(self.resumes + 1),
            };
            self.resumes += 1;
            tracing::warn!(
                "{}/{}: blob {} broke off after {} bytes ({}); taking it up again in {:.1}s ({}/{})",
                self.client.registry,
                self.repo,
                self.digest,
                self.seen,
                super::retry::short(&failure.kind),
                delay.as_secs_f64(),
                self.resumes,
                policy.max_retries
            );
            std::thread::sleep(delay.min(policy.max_time.saturating_sub(elapsed)));
            let repo = self.repo.clone();
            let op = Op::pull(&repo, format!("fetch blob {}", self.digest));
            match self.request(&op) {
                Ok(resp) => {
                    self.resp = Some(resp);
                    return Ok(());
                }
                // Nothing from there on: the blob is shorter than its descriptor says, which
                // is what the cut already told.
                Err(Failure {
                    kind: ErrorKind::Status { status: 416, .. },
                    ..
                }) => failure.retry = Retry::No,
                Err(f) => failure = f,
            }
        }
    }
}

impl Read for BlobStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other(format!(
                "blob {} could not be read",
                self.digest
            )));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Err(f) = self.client.check_deadline(self.started) {
                return Err(self.fail(f.kind));
            }
            let Some(resp) = self.resp.as_mut() else {
                // Already at the end and checked.
                return Ok(0);
            };
            // At most one byte beyond the size: enough to tell that there is more.
            let room = (self.size - self.seen.min(self.size)) as usize + 1;
            let len = buf.len().min(room);
            match resp.read(&mut buf[..len]) {
                Ok(0) => {
                    if self.seen != self.size {
                        // Cut short: a connection that closed early, worth taking up again.
                        let failure = Failure {
                            kind: ErrorKind::Protocol(format!(
                                "received {} bytes, expected {}",
                                self.seen, self.size
                            )),
                            retry: Retry::Yes,
                        };
                        self.resume(failure)?;
                        continue;
                    }
                    self.resp = None;
                    let actual = self.hasher.take().map(Hasher::finish).unwrap_or_default();
                    if actual != self.digest {
                        return Err(self.fail(ErrorKind::DigestMismatch {
                            expected: self.digest.clone(),
                            actual,
                        }));
                    }
                    return Ok(0);
                }
                Ok(n) => {
                    if self.seen + n as u64 > self.size {
                        return Err(self.fail(ErrorKind::Protocol(format!(
                            "the registry sent more than the {} bytes expected",
                            self.size
                        ))));
                    }
                    if let Some(h) = self.hasher.as_mut() {
                        h.update(&buf[..n]);
                    }
                    self.seen += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let failure = self.client.read_failure(&e);
                    self.resume(failure)?;
                }
            }
        }
    }
}
