//! Bounded reads of registry answers. A body is never read past what it may hold: a blob stops
//! at the size its descriptor names (a longer body fails at byte size+1, and a
//! `Content-Length` beyond the size fails before any byte is read), a document (manifest,
//! token, error envelope) at its cap, while it streams. Every read waits at most the idle
//! timeout (the HTTP client enforces it) and the request's deadline is checked after each one.
//! Blobs are hashed as they stream (OCI image-spec "Digests": verify before use).

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::blocking::Response;
use reqwest::header::CONTENT_LENGTH;

use super::client::{header, RegistryClient};
use super::error::ErrorKind;
use super::retry::{Failure, Retry};

/// Bytes read at once from a body.
const BUF: usize = 256 * 1024;

/// A duration as users write it: `2s`, `0.5s`, `60s`.
pub(super) fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// The `Content-Length` an answer announces, if any.
fn announced(resp: &Response) -> Option<u64> {
    header(resp, CONTENT_LENGTH.as_str()).and_then(|v| v.trim().parse().ok())
}

impl RegistryClient {
    /// The longest wait for the next bytes of an answer: the idle timeout, or the request
    /// deadline when that is shorter.
    pub(super) fn read_wait(&self) -> Duration {
        self.timeout
            .map_or(self.idle_timeout, |t| t.min(self.idle_timeout))
    }

    /// The whole-request timeout of requests without a blob body (pings, `HEAD`, manifests,
    /// tokens): they must complete within one idle period.
    pub(super) fn small(&self) -> Duration {
        self.read_wait()
    }

    /// The whole-request timeout of uploads: the deadline if one is set, else none (the
    /// request timeout must override the client's idle timeout, which would cut long uploads).
    pub(super) fn upload_timeout(&self) -> Duration {
        // About a century: "no deadline" for a request timeout that cannot be unset.
        const NONE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        self.timeout.unwrap_or(NONE)
    }

    /// Fail when the request started at `started` has outlived its deadline.
    pub(super) fn check_deadline(&self, started: Instant) -> Result<(), Failure> {
        match self.timeout {
            Some(t) if started.elapsed() > t => Err(Failure {
                kind: ErrorKind::Timeout(format!(
                    "the request took longer than the {} deadline",
                    seconds(t)
                )),
                retry: Retry::Yes,
            }),
            _ => Ok(()),
        }
    }

    /// Read a whole document of at most `cap` bytes; `what` names it in messages. Larger
    /// documents are refused when announced and when they grow past the cap.
    pub(super) fn read_document(
        &self,
        resp: Response,
        cap: u64,
        what: &str,
        started: Instant,
    ) -> Result<Vec<u8>, Failure> {
        let too_large = || {
            Failure::fatal(ErrorKind::Protocol(format!(
                "the {what} is larger than {cap} bytes"
            )))
        };
        if announced(&resp).is_some_and(|n| n > cap) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        let mut limited = resp.take(cap + 1);
        let mut buf = vec![0u8; BUF.min(cap as usize + 1)];
        loop {
            let n = limited.read(&mut buf).map_err(|e| self.read_failure(&e))?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
            if body.len() as u64 > cap {
                return Err(too_large());
            }
            self.check_deadline(started)?;
        }
        Ok(body)
    }

    /// The first `cap` bytes of an error answer, or fewer if it stalls or outlives one idle
    /// period: it only carries the registry's message.
    pub(super) fn read_excerpt(&self, resp: Response, cap: u64) -> Vec<u8> {
        let started = Instant::now();
        let mut body = Vec::new();
        let mut limited = resp.take(cap);
        let mut buf = [0u8; 8192];
        while let Ok(n) = limited.read(&mut buf) {
            if n == 0 || started.elapsed() > self.read_wait() {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
        body
    }

    /// Stream a blob body into `out` through `hasher` and return its length. With a `size`,
    /// never more than `size` bytes are written: a longer body fails at byte size+1.
    pub(super) fn copy_blob(
        &self,
        mut resp: Response,
        size: Option<u64>,
        started: Instant,
        hasher: &mut Hasher,
        out: &mut dyn Write,
        out_path: &Path,
    ) -> Result<u64, Failure> {
        let too_long = |size: u64| {
            Failure::fatal(ErrorKind::Protocol(format!(
                "the registry sent more than the {size} bytes expected"
            )))
        };
        if let (Some(size), Some(len)) = (size, announced(&resp)) {
            if len > size {
                return Err(Failure::fatal(ErrorKind::Protocol(format!(
                    "the registry announced {len} bytes, expected {size}"
                ))));
            }
        }
        let mut buf = vec![0u8; BUF];
        let mut total = 0u64;
        loop {
            // Ask for at most one byte beyond the size: enough to tell that there is more.
            let want = match size {
                Some(size) => (size.saturating_sub(total) + 1).min(BUF as u64) as usize,
                None => BUF,
            };
            let n = resp
                .read(&mut buf[..want])
                .map_err(|e| self.read_failure(&e))?;
            if n == 0 {
                return Ok(total);
            }
            if let Some(size) = size.filter(|s| total + n as u64 > *s) {
                return Err(too_long(size));
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|source| {
                Failure::fatal(ErrorKind::Io {
                    path: out_path.to_path_buf(),
                    source,
                })
            })?;
            total += n as u64;
            self.check_deadline(started)?;
        }
    }
}

/// Whether an error (or one of its causes) is a timeout.
pub(super) fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::TimedOut {
            return true;
        }
        // `io::Error::source` skips the error it wraps: look at that one too.
        if io.get_ref().is_some_and(|inner| is_timeout(inner)) {
            return true;
        }
    }
    if err
        .downcast_ref::<reqwest::Error>()
        .is_some_and(reqwest::Error::is_timeout)
    {
        return true;
    }
    err.source().is_some_and(is_timeout)
}

/// Streaming hash for the algorithm a digest names.
pub(super) enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn for_digest(digest: &str) -> Self {
        use sha2::Digest as _;
        if digest.starts_with("sha512:") {
            Hasher::Sha512(sha2::Sha512::new())
        } else {
            Hasher::Sha256(sha2::Sha256::new())
        }
    }
    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest as _;
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }
    pub fn finish(self) -> String {
        use sha2::Digest as _;
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_written() {
        assert_eq!(seconds(Duration::from_secs(60)), "60s");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5s");
    }

    #[test]
    fn timeouts_are_found_among_causes() {
        let inner = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        let outer = std::io::Error::other(inner);
        assert!(is_timeout(&outer));
        assert!(!is_timeout(&std::io::Error::other("reset")));
    }
}
