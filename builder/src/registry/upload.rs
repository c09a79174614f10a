//! Blob uploads (distribution spec "Pushing blobs"): `HEAD` first and skip what the repository
//! has; a cross-repository mount inside the registry (`POST ?mount=&from=`), continuing with
//! the upload session the registry opens when it answers 202 instead of 201; then a monolithic
//! upload (`POST` + one `PUT`) or, on request, a chunked one (`PATCH` with `Content-Range`,
//! then `PUT`). An attempt cut short resumes: the registry is asked how much of the session it
//! holds (`GET` on the session, `Range: 0-N`, spec "Getting upload status"), and the upload
//! goes on from the next byte in the same session; a registry that cannot say gets a new
//! session and the whole blob again.

use std::fs::File;
use std::io::Read;

use reqwest::blocking::Body;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};

use super::client::{header, BlobSource, Op, PushOutcome, RegistryClient, DOCKER_CONTENT_DIGEST};
use super::error::ErrorKind;
use super::retry::Failure;
use super::UploadMode;

type Result<T, E = super::RegistryError> = std::result::Result<T, E>;

/// A failed attempt with the location of its upload session, to ask how far it got.
type Cut = Box<(Failure, Url)>;

const OCTET_STREAM: &str = "application/octet-stream";

enum Mount {
    Done,
    /// The registry opened an upload session instead (202).
    Session(Url),
    /// The registry would not mount; upload instead.
    Declined,
}

impl RegistryClient {
    /// Make `digest` (of `size` bytes) present in `repo`: skipped when the repository has it,
    /// mounted from `mount_from` in the same registry when given, uploaded otherwise.
    pub fn push_blob(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        src: BlobSource<'_>,
        mount_from: Option<&str>,
    ) -> Result<PushOutcome> {
        let mut op = Op::push(repo, format!("push blob {digest}"));
        if self.blob_exists(repo, digest)?.is_some() {
            return Ok(PushOutcome::Existed);
        }
        // The bytes the source holds: all of a file, or a tar's from the blob's offset on (the
        // tar's own index gave the size, so the file must reach that far).
        let actual = match src {
            BlobSource::Bytes(b) => b.len() as u64,
            BlobSource::Path(p) | BlobSource::Range(p, _) => {
                let offset = if let BlobSource::Range(_, o) = src {
                    o
                } else {
                    0
                };
                let len = std::fs::metadata(p)
                    .map_err(|source| {
                        self.error(
                            &op,
                            ErrorKind::Io {
                                path: p.to_path_buf(),
                                source,
                            },
                        )
                    })?
                    .len()
                    .saturating_sub(offset);
                match src {
                    BlobSource::Range(..) => len.min(size),
                    _ => len,
                }
            }
        };
        if actual != size {
            let kind = ErrorKind::Protocol(format!(
                "the blob source has {actual} bytes, its descriptor says {size}"
            ));
            return Err(self.error(&op, kind));
        }
        // The session to go on with, and how many of its bytes the registry holds.
        let mut session: Option<(Url, u64)> = None;
        if let Some(from) = mount_from.filter(|f| *f != repo) {
            op.scopes.push(format!("repository:{from}:pull"));
            match self.mount(&op, from, digest)? {
                Mount::Done => {
                    self.confirm(repo, digest);
                    return Ok(PushOutcome::Mounted);
                }
                Mount::Session(url) => session = Some((url, 0)),
                Mount::Declined => {}
            }
        }
        self.run(&op, || {
            let (location, offset) = match session.take() {
                Some(s) => s,
                None => (self.begin(&op)?, 0),
            };
            let sent = match self.upload {
                UploadMode::Monolithic => self.put_whole(&op, location, digest, size, offset, src),
                UploadMode::Chunked { chunk_size } => {
                    self.put_chunks(&op, location, digest, chunk_size, size, offset, src)
                }
            };
            sent.map_err(|cut| {
                let (failure, at) = *cut;
                if failure.retry != super::retry::Retry::No {
                    session = self.upload_status(&op, &at, size);
                    if let Some((_, held)) = &session {
                        tracing::info!(
                            "the upload of `{digest}` was cut; the registry holds {held} of its {size} bytes, the next attempt goes on from there"
                        );
                    }
                }
                failure
            })
        })?;
        self.confirm(repo, digest);
        Ok(PushOutcome::Uploaded)
    }

    /// Ask the registry to link `digest` from `from` into `repo` without sending the content.
    /// `true` when the repository now has the blob (it already had it, or the mount worked);
    /// `false` when the registry declined, and the blob must be uploaded.
    pub fn mount_blob(&self, repo: &str, from: &str, digest: &str) -> Result<bool> {
        if self.blob_exists(repo, digest)?.is_some() {
            return Ok(true);
        }
        let mut op = Op::push(repo, format!("mount blob {digest}"));
        op.scopes.push(format!("repository:{from}:pull"));
        match self.mount(&op, from, digest)? {
            Mount::Done => {
                self.confirm(repo, digest);
                Ok(true)
            }
            Mount::Declined => Ok(false),
            Mount::Session(url) => {
                // Cancel the session the registry opened instead (best effort: registries also
                // expire abandoned uploads).
                let _ = self.send(&op, &|_| {
                    Ok(self.http.delete(url.clone()).timeout(self.small()))
                });
                Ok(false)
            }
        }
    }

    fn mount(&self, op: &Op, from: &str, digest: &str) -> Result<Mount> {
        let path = format!("{}/blobs/uploads/?mount={digest}&from={from}", op.repo);
        self.run(op, || {
            let resp = self.send(op, &|base| {
                Ok(self
                    .http
                    .post(format!("{base}{path}"))
                    .body(Vec::new())
                    .timeout(self.small()))
            })?;
            match resp.status() {
                StatusCode::CREATED => Ok(Mount::Done),
                StatusCode::ACCEPTED => Ok(Mount::Session(self.location(&resp)?)),
                s if s.is_client_error() => {
                    tracing::debug!(
                        "`{}` declined to mount `{digest}` from `{from}` ({s})",
                        self.registry
                    );
                    Ok(Mount::Declined)
                }
                _ => Err(self.failure(resp)),
            }
        })
    }

    /// Open an upload session and return its location.
    fn begin(&self, op: &Op) -> Result<Url, Failure> {
        let path = format!("{}/blobs/uploads/", op.repo);
        let resp = self.send(op, &|base| {
            Ok(self
                .http
                .post(format!("{base}{path}"))
                .body(Vec::new())
                .timeout(self.small()))
        })?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.failure(resp));
        }
        self.location(&resp)
    }

    /// The `Location` of an upload response, resolved against the request URL.
    fn location(&self, resp: &reqwest::blocking::Response) -> Result<Url, Failure> {
        let missing = || {
            Failure::fatal(ErrorKind::Protocol(
                "the registry answered without an upload `Location`".into(),
            ))
        };
        let location = header(resp, LOCATION.as_str()).ok_or_else(missing)?;
        resp.url().join(&location).map_err(|_| missing())
    }

    /// How far the session at `url` got: its location and the bytes the registry holds, when
    /// it says (`204` with `Range: 0-N`). `0-0` is what some registries answer for an empty
    /// session as well as for one byte, so it counts as not knowing.
    fn upload_status(&self, op: &Op, url: &Url, size: u64) -> Option<(Url, u64)> {
        let resp = self
            .send(op, &|_| {
                Ok(self.http.get(url.clone()).timeout(self.small()))
            })
            .ok()?;
        if resp.status() != StatusCode::NO_CONTENT {
            return None;
        }
        let end: u64 = header(&resp, "range")?.strip_prefix("0-")?.parse().ok()?;
        let held = end.checked_add(1).filter(|h| *h > 1 && *h <= size)?;
        let at = self.location(&resp).unwrap_or_else(|_| url.clone());
        Some((at, held))
    }

    /// The blob's bytes from `from` on, streamed.
    fn rest(
        &self,
        src: BlobSource<'_>,
        size: u64,
        from: u64,
    ) -> Result<Box<dyn Read + Send>, Failure> {
        Ok(match src {
            BlobSource::Bytes(b) => Box::new(std::io::Cursor::new(b[from as usize..].to_vec())),
            BlobSource::Path(p) => Box::new(self.open(p, from, size - from)?),
            BlobSource::Range(p, offset) => Box::new(self.open(p, offset + from, size - from)?),
        })
    }

    /// The closing `PUT` with the bytes from `from` on (all of them for a new session). On
    /// failure, the session's location with the failure.
    fn put_whole(
        &self,
        op: &Op,
        location: Url,
        digest: &str,
        size: u64,
        from: u64,
        src: BlobSource<'_>,
    ) -> Result<(), Cut> {
        let mut url = location.clone();
        url.query_pairs_mut().append_pair("digest", digest);
        let put = |_: &str| {
            Ok(self
                .http
                .put(url.clone())
                .header(CONTENT_TYPE, OCTET_STREAM)
                .header(CONTENT_LENGTH, size - from)
                .timeout(self.upload_timeout()))
        };
        let resp = match src {
            // Small and in memory: one piece.
            BlobSource::Bytes(b) => self.send(op, &|base| {
                Ok(put(base)?.body(Body::from(b[from as usize..].to_vec())))
            }),
            // From a file: streamed in large pieces, the file reopened for every request.
            BlobSource::Path(_) | BlobSource::Range(..) => self.send_with(op, &put, &|request| {
                let body = self.rest(src, size, from)?;
                self.streamer.execute(
                    request,
                    body,
                    size - from,
                    self.read_wait(),
                    &|source| {
                        Failure::fatal(ErrorKind::Io {
                            path: source_path(src),
                            source,
                        })
                    },
                    &|e| self.network(e),
                )
            }),
        }
        .map_err(|f| Box::new((f, location.clone())))?;
        self.finished(resp, digest)
            .map_err(|f| Box::new((f, location)))
    }

    /// `PATCH` chunks from byte `from` on, then the closing `PUT`. On failure, the session's
    /// latest location with the failure.
    #[allow(clippy::too_many_arguments)]
    fn put_chunks(
        &self,
        op: &Op,
        location: Url,
        digest: &str,
        chunk_size: usize,
        size: u64,
        from: u64,
        src: BlobSource<'_>,
    ) -> Result<(), Cut> {
        let mut reader = self
            .rest(src, size, from)
            .map_err(|f| Box::new((f, location.clone())))?;
        let mut url = location;
        let mut offset = from;
        let mut chunk = Vec::with_capacity(chunk_size);
        loop {
            chunk.clear();
            (&mut reader)
                .take(chunk_size as u64)
                .read_to_end(&mut chunk)
                .map_err(|source| {
                    let f = Failure::fatal(ErrorKind::Io {
                        path: source_path(src),
                        source,
                    });
                    Box::new((f, url.clone()))
                })?;
            if chunk.is_empty() {
                break;
            }
            let end = offset + chunk.len() as u64 - 1;
            let resp = self
                .send(op, &|_| {
                    Ok(self
                        .http
                        .patch(url.clone())
                        .header(CONTENT_TYPE, OCTET_STREAM)
                        .header("content-range", format!("{offset}-{end}"))
                        .header(CONTENT_LENGTH, chunk.len())
                        .body(chunk.clone())
                        .timeout(self.upload_timeout()))
                })
                .map_err(|f| Box::new((f, url.clone())))?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(Box::new((self.failure(resp), url)));
            }
            url = self
                .location(&resp)
                .map_err(|f| Box::new((f, url.clone())))?;
            offset = end + 1;
        }
        let session = url.clone();
        url.query_pairs_mut().append_pair("digest", digest);
        let resp = self
            .send(op, &|_| {
                Ok(self
                    .http
                    .put(url.clone())
                    .header(CONTENT_LENGTH, 0)
                    .body(Vec::new())
                    // The registry may take long to commit a large blob.
                    .timeout(self.upload_timeout()))
            })
            .map_err(|f| Box::new((f, session.clone())))?;
        self.finished(resp, digest)
            .map_err(|f| Box::new((f, session)))
    }

    /// Judge the response that closes an upload: 201, and the digest the registry computed.
    fn finished(&self, resp: reqwest::blocking::Response, digest: &str) -> Result<(), Failure> {
        if !resp.status().is_success() {
            return Err(self.failure(resp));
        }
        match header(&resp, DOCKER_CONTENT_DIGEST) {
            Some(stored) if stored != digest => Err(Failure::fatal(ErrorKind::DigestMismatch {
                expected: digest.to_string(),
                actual: stored,
            })),
            _ => Ok(()),
        }
    }

    /// `len` bytes of `path` from `offset` (read in large pieces by the streamed body, and a
    /// chunk at a time by chunked uploads, so not buffered here).
    fn open(
        &self,
        path: &std::path::Path,
        offset: u64,
        len: u64,
    ) -> Result<std::io::Take<File>, Failure> {
        use std::io::{Seek, SeekFrom};
        let io = |source| {
            Failure::fatal(ErrorKind::Io {
                path: path.to_path_buf(),
                source,
            })
        };
        let mut f = File::open(path).map_err(io)?;
        if offset > 0 {
            f.seek(SeekFrom::Start(offset)).map_err(io)?;
        }
        Ok(f.take(len))
    }
}

fn source_path(src: BlobSource<'_>) -> std::path::PathBuf {
    match src {
        BlobSource::Path(p) | BlobSource::Range(p, _) => p.to_path_buf(),
        BlobSource::Bytes(_) => "<memory>".into(),
    }
}
