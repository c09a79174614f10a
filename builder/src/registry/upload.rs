//! Blob uploads (distribution spec "Pushing blobs"): `HEAD` first and skip what the repository
//! has; a cross-repository mount inside the registry (`POST ?mount=&from=`), continuing with
//! the upload session the registry opens when it answers 202 instead of 201; then a monolithic
//! upload (`POST` + one `PUT`) or, on request, a chunked one (`PATCH` with `Content-Range`,
//! then `PUT`). A failed attempt starts a new session and streams the source again.

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
        let actual = match src {
            BlobSource::Bytes(b) => b.len() as u64,
            BlobSource::Path(p) => std::fs::metadata(p)
                .map_err(|source| {
                    self.error(
                        &op,
                        ErrorKind::Io {
                            path: p.to_path_buf(),
                            source,
                        },
                    )
                })?
                .len(),
        };
        if actual != size {
            let kind = ErrorKind::Protocol(format!(
                "the blob source has {actual} bytes, its descriptor says {size}"
            ));
            return Err(self.error(&op, kind));
        }
        let mut session = None;
        if let Some(from) = mount_from.filter(|f| *f != repo) {
            op.scopes.push(format!("repository:{from}:pull"));
            match self.mount(&op, from, digest)? {
                Mount::Done => return Ok(PushOutcome::Mounted),
                Mount::Session(url) => session = Some(url),
                Mount::Declined => {}
            }
        }
        self.run(&op, || {
            let location = match session.take() {
                Some(url) => url,
                None => self.begin(&op)?,
            };
            match self.upload {
                UploadMode::Monolithic => self.put_whole(&op, location, digest, size, src),
                UploadMode::Chunked { chunk_size } => {
                    self.put_chunks(&op, location, digest, chunk_size, src)
                }
            }
        })?;
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
            Mount::Done => Ok(true),
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

    fn put_whole(
        &self,
        op: &Op,
        location: Url,
        digest: &str,
        size: u64,
        src: BlobSource<'_>,
    ) -> Result<(), Failure> {
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", digest);
        let resp = self.send(op, &|_| {
            let body = match src {
                BlobSource::Bytes(b) => Body::from(b.to_vec()),
                BlobSource::Path(p) => Body::sized(self.open(p)?, size),
            };
            Ok(self
                .http
                .put(url.clone())
                .header(CONTENT_TYPE, OCTET_STREAM)
                .header(CONTENT_LENGTH, size)
                .body(body)
                .timeout(self.upload_timeout()))
        })?;
        self.finished(resp, digest)
    }

    fn put_chunks(
        &self,
        op: &Op,
        location: Url,
        digest: &str,
        chunk_size: usize,
        src: BlobSource<'_>,
    ) -> Result<(), Failure> {
        let mut reader: Box<dyn Read> = match src {
            BlobSource::Bytes(b) => Box::new(b),
            BlobSource::Path(p) => Box::new(self.open(p)?),
        };
        let mut url = location;
        let mut offset = 0u64;
        let mut chunk = Vec::with_capacity(chunk_size);
        loop {
            chunk.clear();
            (&mut reader)
                .take(chunk_size as u64)
                .read_to_end(&mut chunk)
                .map_err(|source| {
                    Failure::fatal(ErrorKind::Io {
                        path: source_path(src),
                        source,
                    })
                })?;
            if chunk.is_empty() {
                break;
            }
            let end = offset + chunk.len() as u64 - 1;
            let resp = self.send(op, &|_| {
                Ok(self
                    .http
                    .patch(url.clone())
                    .header(CONTENT_TYPE, OCTET_STREAM)
                    .header("content-range", format!("{offset}-{end}"))
                    .header(CONTENT_LENGTH, chunk.len())
                    .body(chunk.clone())
                    .timeout(self.upload_timeout()))
            })?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(self.failure(resp));
            }
            url = self.location(&resp)?;
            offset = end + 1;
        }
        url.query_pairs_mut().append_pair("digest", digest);
        let resp = self.send(op, &|_| {
            Ok(self
                .http
                .put(url.clone())
                .header(CONTENT_LENGTH, 0)
                .body(Vec::new())
                // The registry may take long to commit a large blob.
                .timeout(self.upload_timeout()))
        })?;
        self.finished(resp, digest)
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

    fn open(&self, path: &std::path::Path) -> Result<File, Failure> {
        File::open(path).map_err(|source| {
            Failure::fatal(ErrorKind::Io {
                path: path.to_path_buf(),
                source,
            })
        })
    }
}

fn source_path(src: BlobSource<'_>) -> std::path::PathBuf {
    match src {
        BlobSource::Path(p) => p.to_path_buf(),
        BlobSource::Bytes(_) => "<memory>".into(),
    }
}
