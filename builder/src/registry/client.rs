//! [`RegistryClient`]: one registry host, blocking, streaming. Every operation runs inside the
//! retry policy; every request goes through [`RegistryClient::send`], which finds the endpoint
//! (HTTPS, or plain HTTP where the policy allows), answers the registry's challenge, and fetches
//! a fresh token once when a request is refused with 401 (an expired token in a long push).
//! Manifests travel as raw bytes so their digests never change (OCI image-spec "Digests");
//! blobs are streamed through a hash, never held whole in memory and never read past their
//! size; no read waits longer than the idle timeout.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;

use super::auth::{self, Challenge, Token};
use super::body::Hasher;
use super::error::{ErrorKind, RegistryError};
use super::reference::api_host;
use super::retry::{Failure, Retry, RetryPolicy};
pub(super) use super::session::header;
use super::stream::Streamer;
use super::transport::{self, Scheme};
use super::{RegistryOptions, UploadMode, MANIFEST_MEDIA_TYPES};

type Result<T, E = RegistryError> = std::result::Result<T, E>;

pub(super) const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
/// Manifests larger than this are refused (distribution spec: registries SHOULD accept 4 MiB).
const MAX_MANIFEST: u64 = 4 << 20;

/// A manifest exactly as the registry served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// `sha256:` digest of `bytes`.
    pub digest: String,
}

/// Where the bytes of a blob to push come from.
#[derive(Debug, Clone, Copy)]
pub enum BlobSource<'a> {
    /// A file, streamed (reopened on every attempt).
    Path(&'a Path),
    /// The blob's bytes at this offset of a file (a blob inside a tar), streamed likewise.
    Range(&'a Path, u64),
    /// Small content already in memory (configs, empty descriptors).
    Bytes(&'a [u8]),
}

/// What `push_blob` had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The repository already had the blob.
    Existed,
    /// The registry linked it from another repository.
    Mounted,
    Uploaded,
}

/// A client for one registry host.
pub struct RegistryClient {
    pub(super) registry: String,
    pub(super) host: String,
    pub(super) http: Client,
    /// Streamed upload bodies (see `stream.rs`).
    pub(super) streamer: Streamer,
    /// What each repository of the registry is presented (see [`auth::Credentials`]).
    pub(super) credentials: auth::Credentials,
    pub(super) secrets: Vec<String>,
    pub(super) insecure: bool,
    pub(super) retry: RetryPolicy,
    pub(super) upload: UploadMode,
    pub(super) idle_timeout: Duration,
    pub(super) timeout: Option<Duration>,
    pub(super) session: Mutex<Session>,
    /// Held while the endpoint is being found (see `session.rs`).
    pub(super) probing: Mutex<()>,
    /// `repo@digest` of every blob and manifest the registry confirmed to this client: a blob
    /// it answered a `HEAD` for, or whose upload or mount it closed with `201` and its digest,
    /// a manifest whose `PUT` it answered with the digest pushed. A manifest naming only these
    /// is written without asking about each again.
    pub(super) confirmed: Mutex<std::collections::HashSet<String>>,
}

#[derive(Default)]
pub(super) struct Session {
    pub(super) endpoint: Option<(Scheme, Challenge)>,
    /// The origin of the token realm the registry named on its `/v2/` ping.
    pub(super) token_service: Option<url::Origin>,
    /// Tokens by realm and scopes.
    pub(super) tokens: HashMap<String, Token>,
}

/// One operation: its repository, its name in messages and the token scopes it needs.
pub(super) struct Op<'a> {
    pub repo: &'a str,
    pub what: String,
    pub scopes: Vec<String>,
}

impl<'a> Op<'a> {
    pub fn pull(repo: &'a str, what: String) -> Self {
        let scopes = vec![format!("repository:{repo}:pull")];
        Op { repo, what, scopes }
    }
    pub fn push(repo: &'a str, what: String) -> Self {
        let scopes = vec![format!("repository:{repo}:pull,push")];
        Op { repo, what, scopes }
    }
}

impl RegistryClient {
    /// A client for `registry` (as written in references, e.g. `docker.io` or
    /// `127.0.0.1:5000`). Credentials are resolved now; the network is first used by the first
    /// operation.
    pub fn new(options: &RegistryOptions, registry: &str) -> Result<Self> {
        let fail = |kind| RegistryError::new(registry, "", "set up the registry client", kind);
        let host = api_host(registry).to_string();
        let wait = options
            .timeout
            .map_or(options.idle_timeout, |t| t.min(options.idle_timeout));
        let clients = transport::http_client(&options.tls, registry, wait).map_err(fail)?;
        let credentials =
            auth::Credentials::resolve(options.credential.as_ref(), &options.auth_files, registry)
                .map_err(fail)?;
        Ok(RegistryClient {
            registry: registry.to_string(),
            secrets: credentials.secrets(),
            host,
            http: clients.blocking,
            streamer: Streamer::new(clients.streaming),
            credentials,
            insecure: options.tls.insecure,
            retry: options.retry,
            upload: options.upload,
            idle_timeout: options.idle_timeout,
            timeout: options.timeout,
            session: Mutex::new(Session::default()),
            probing: Mutex::new(()),
            confirmed: Mutex::new(Default::default()),
        })
    }

    /// Note that the registry confirmed `digest` is in `repo` (see `confirmed`).
    pub(super) fn confirm(&self, repo: &str, digest: &str) {
        self.confirmed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(format!("{repo}@{digest}"));
    }

    fn is_confirmed(&self, repo: &str, digest: &str) -> bool {
        self.confirmed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&format!("{repo}@{digest}"))
    }

    /// The registry this client talks to, as written in references.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// How the registry answered (HTTPS, or plain HTTP where allowed), once an operation found
    /// out; `None` before the first request.
    pub fn scheme(&self) -> Option<Scheme> {
        self.session().endpoint.as_ref().map(|(scheme, _)| *scheme)
    }

    /// Fetch a manifest by tag or digest as raw bytes. When asked by digest, the bytes are
    /// checked against it; when asked by tag, against `Docker-Content-Digest` if sent.
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        accept: &[&str],
    ) -> Result<RawManifest> {
        let op = Op::pull(repo, format!("get manifest {reference}"));
        check_names(&op, &self.registry, repo, reference)?;
        let accept = if accept.is_empty() {
            &MANIFEST_MEDIA_TYPES[..]
        } else {
            accept
        }
        .join(", ");
        let url = format!("{repo}/manifests/{reference}");
        let manifest = self.run(&op, || {
            let started = Instant::now();
            let resp = self.send(&op, &|base| {
                Ok(self
                    .http
                    .get(format!("{base}{url}"))
                    .header(ACCEPT, &accept)
                    .timeout(self.small()))
            })?;
            if !resp.status().is_success() {
                return Err(self.failure(resp));
            }
            let content_type = header(&resp, CONTENT_TYPE.as_str());
            let claimed = header(&resp, DOCKER_CONTENT_DIGEST);
            let bytes = self.read_document(resp, MAX_MANIFEST, "manifest", started)?;
            let digest = sha256_digest(&bytes);
            let expected = if is_digest(reference) {
                Some(reference.to_string())
            } else {
                claimed
            };
            if let Some(expected) = expected.filter(|d| d.starts_with("sha256:")) {
                if expected != digest {
                    return Err(Failure::fatal(ErrorKind::DigestMismatch {
                        expected,
                        actual: digest,
                    }));
                }
            }
            let media_type = media_type_of(content_type.as_deref(), &bytes);
            Ok(RawManifest {
                bytes,
                media_type,
                digest,
            })
        })?;
        Ok(manifest)
    }

    /// The digest of the manifest a tag or digest names, or `None` if the repository does not
    /// have it (`HEAD`; falls back to `GET` when the registry sends no digest header).
    pub fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
        accept: &[&str],
    ) -> Result<Option<String>> {
        let op = Op::pull(repo, format!("check manifest {reference}"));
        check_names(&op, &self.registry, repo, reference)?;
        let accept_all: Vec<&str> = accept
            .iter()
            .chain(&MANIFEST_MEDIA_TYPES)
            .copied()
            .collect();
        let accept_header = accept_all.join(", ");
        let url = format!("{repo}/manifests/{reference}");
        let found = self.run(&op, || {
            let resp = self.send(&op, &|base| {
                Ok(self
                    .http
                    .head(format!("{base}{url}"))
                    .header(ACCEPT, &accept_header)
                    .timeout(self.small()))
            })?;
            match resp.status() {
                StatusCode::NOT_FOUND => Ok(Some(None)),
                s if s.is_success() => Ok(header(&resp, DOCKER_CONTENT_DIGEST).map(Some)),
                _ => Err(self.failure(resp)),
            }
        })?;
        match found {
            Some(found) => Ok(found),
            None => Ok(Some(
                self.get_manifest(repo, reference, &accept_all)?.digest,
            )),
        }
    }

    /// Check that the registry accepts this client's credentials: `GET /v2/`, answering a
    /// challenge as every operation does (a token with no scope for token auth), as `docker
    /// login` and `skopeo login` check them. An authentication failure is the usual error.
    pub fn check_login(&self) -> Result<()> {
        let op = Op {
            repo: "",
            what: "log in".into(),
            scopes: Vec::new(),
        };
        self.run(&op, || {
            let resp = self.send(&op, &|base| {
                Ok(self.http.get(base.to_string()).timeout(self.small()))
            })?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(self.failure(resp))
            }
        })
    }

    /// The size of a blob if the repository has it (`HEAD`), `None` if not.
    pub fn blob_exists(&self, repo: &str, digest: &str) -> Result<Option<u64>> {
        let op = Op::pull(repo, format!("check blob {digest}"));
        check_names(&op, &self.registry, repo, digest)?;
        let url = format!("{repo}/blobs/{digest}");
        self.run(&op, || {
            let resp = self.send(&op, &|base| {
                Ok(self.http.head(format!("{base}{url}")).timeout(self.small()))
            })?;
            match resp.status() {
                StatusCode::NOT_FOUND => Ok(None),
                s if s.is_success() => Ok(Some(
                    header(&resp, CONTENT_LENGTH.as_str())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                )),
                _ => Err(self.failure(resp)),
            }
        })
        .inspect(|found| {
            if found.is_some() {
                self.confirm(repo, digest);
            }
        })
    }

    /// Download a blob to `dest`: streamed through its hash into a temporary file beside it,
    /// never past `size` bytes when given (a longer body fails at byte size+1), checked against
    /// `digest`, then renamed into place. A body that stalls for the idle timeout fails.
    pub fn fetch_blob(
        &self,
        repo: &str,
        digest: &str,
        size: Option<u64>,
        dest: &Path,
    ) -> Result<()> {
        let op = Op::pull(repo, format!("fetch blob {digest}"));
        check_names(&op, &self.registry, repo, digest)?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Failure::fatal(ErrorKind::Io { path, source })
        };
        let url = format!("{repo}/blobs/{digest}");
        self.run(&op, || {
            let started = Instant::now();
            // No request timeout: the client's idle timeout bounds every wait, and the
            // deadline, if any, is checked as the body streams.
            let resp = self.send(&op, &|base| Ok(self.http.get(format!("{base}{url}"))))?;
            if !resp.status().is_success() {
                return Err(self.failure(resp));
            }
            // A hidden scratch name: skipped when a layout is packed, removed on a signal, and
            // reclaimed after a kill (`crate::store::scratch`).
            let mut tmp = tempfile::Builder::new()
                .prefix(&crate::store::scratch::prefix("blob", true))
                .tempfile_in(dir)
                .map_err(io(dir))?;
            crate::store::scratch::register(tmp.path());
            let mut hasher = Hasher::for_digest(digest);
            let tmp_path = tmp.path().to_path_buf();
            let total = self.copy_blob(
                resp,
                size,
                started,
                &mut hasher,
                tmp.as_file_mut(),
                &tmp_path,
            )?;
            if let Some(size) = size.filter(|s| *s != total) {
                return Err(Failure {
                    kind: ErrorKind::Protocol(format!("received {total} bytes, expected {size}")),
                    retry: Retry::Yes,
                });
            }
            let actual = hasher.finish();
            if actual != digest {
                let kind = ErrorKind::DigestMismatch {
                    expected: digest.to_string(),
                    actual,
                };
                return Err(Failure {
                    kind,
                    retry: Retry::Yes,
                });
            }
            // Blobs land in layouts other tools read: not the 0600 of a temporary file.
            let perms =
                <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o644);
            tmp.as_file().set_permissions(perms).map_err(io(dest))?;
            tmp.persist(dest).map_err(|e| io(dest)(e.error))?;
            Ok(())
        })?;
        Ok(())
    }

    /// Push a manifest as raw bytes under a tag or its digest and return its digest. Every blob
    /// and child manifest it names must already be in the repository, so a tag never points at
    /// something missing; afterwards the registry is asked again and must serve this digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String> {
        let op = Op::push(repo, format!("push manifest {reference}"));
        check_names(&op, &self.registry, repo, reference)?;
        let digest = sha256_digest(bytes);
        if is_digest(reference) && reference != digest {
            let kind = ErrorKind::DigestMismatch {
                expected: reference.to_string(),
                actual: digest,
            };
            return Err(self.error(&op, kind));
        }
        self.confirm_children(&op, bytes)?;
        let url = format!("{repo}/manifests/{reference}");
        // Whether the registry answered with the digest pushed.
        let claimed = self.run(&op, || {
            let resp = self.send(&op, &|base| {
                Ok(self
                    .http
                    .put(format!("{base}{url}"))
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.to_vec())
                    .timeout(self.small()))
            })?;
            if !resp.status().is_success() {
                return Err(self.failure(resp));
            }
            match header(&resp, DOCKER_CONTENT_DIGEST) {
                Some(claimed) if claimed != digest => {
                    Err(Failure::fatal(ErrorKind::DigestMismatch {
                        expected: digest.clone(),
                        actual: claimed,
                    }))
                }
                Some(_) => Ok(true),
                None => Ok(false),
            }
        })?;
        // Stored under its digest and said so: confirmed. A tag is asked for again, so it is
        // known to name this digest and nothing older.
        if claimed && reference == digest {
            self.confirm(repo, &digest);
            return Ok(digest);
        }
        match self.manifest_digest(repo, reference, &[media_type])? {
            Some(served) if served == digest => {
                self.confirm(repo, &digest);
                Ok(digest)
            }
            Some(served) => Err(self.error(
                &op,
                ErrorKind::DigestMismatch {
                    expected: digest,
                    actual: served,
                },
            )),
            None => Err(self.error(
                &op,
                ErrorKind::Protocol("the registry does not serve the manifest just pushed".into()),
            )),
        }
    }

    /// Check that the blobs (config, layers) and child manifests a manifest names are present.
    fn confirm_children(&self, op: &Op, bytes: &[u8]) -> Result<()> {
        #[derive(serde::Deserialize)]
        struct Desc {
            digest: String,
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
            #[serde(default)]
            urls: Vec<String>,
        }
        #[derive(serde::Deserialize)]
        struct Children {
            config: Option<Desc>,
            #[serde(default)]
            layers: Vec<Desc>,
            #[serde(default)]
            manifests: Vec<Desc>,
        }
        let children: Children = serde_json::from_slice(bytes).map_err(|e| {
            self.error(
                op,
                ErrorKind::Protocol(format!("the manifest to push is not valid JSON: {e}")),
            )
        })?;
        let mut missing = Vec::new();
        // Non-distributable layers carry `urls` and may legitimately be absent (image-spec
        // "Descriptor: urls").
        for blob in children
            .config
            .iter()
            .chain(&children.layers)
            .filter(|d| d.urls.is_empty())
        {
            if self.is_confirmed(op.repo, &blob.digest) {
                continue;
            }
            if self.blob_exists(op.repo, &blob.digest)?.is_none() {
                missing.push(blob.digest.clone());
            }
        }
        for child in children
            .manifests
            .iter()
            .filter(|c| !self.is_confirmed(op.repo, &c.digest))
        {
            let accept: Vec<&str> = child.media_type.as_deref().into_iter().collect();
            if self
                .manifest_digest(op.repo, &child.digest, &accept)?
                .is_none()
            {
                missing.push(child.digest.clone());
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let more = match missing.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        let kind = ErrorKind::Protocol(format!(
            "refusing to write the manifest: the repository lacks `{}`{more} that it names",
            missing[0]
        ));
        Err(self.error(op, kind))
    }
}

/// The media type of a fetched manifest: the `Content-Type` when it names one, else the
/// document's own `mediaType`, else inferred from its shape (image-spec allows omitting it).
fn media_type_of(content_type: Option<&str>, bytes: &[u8]) -> String {
    let declared = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| {
            !c.is_empty()
                && !matches!(
                    *c,
                    "application/json" | "text/plain" | "application/octet-stream"
                )
        });
    if let Some(c) = declared {
        return c.to_string();
    }
    let doc: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if let Some(m) = doc.get("mediaType").and_then(|m| m.as_str()) {
        return m.to_string();
    }
    if doc.get("manifests").is_some() {
        crate::oci::MT_OCI_INDEX.to_string()
    } else {
        crate::oci::MT_OCI_MANIFEST.to_string()
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    crate::oci::Digest::of(bytes).to_string()
}

/// Whether `s` looks like `algorithm:hex` (a digest rather than a tag).
pub fn is_digest(s: &str) -> bool {
    s.contains(':')
}

/// Refuse names that would change the URL they are placed in (`..`, `?`, `#`, spaces) and
/// digests talext cannot verify.
pub(super) fn check_names(
    op: &Op,
    registry: &str,
    repo: &str,
    reference: &str,
) -> Result<(), RegistryError> {
    let bad = |input: &str, reason: &str| {
        RegistryError::new(
            registry,
            repo,
            &op.what,
            ErrorKind::BadReference {
                input: input.to_string(),
                reason: reason.to_string(),
            },
        )
    };
    let repo_ok = !repo.is_empty()
        && repo
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && repo
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c));
    if !repo_ok {
        return Err(bad(repo, "not a valid repository name"));
    }
    if let Some((algo, hex)) = reference.split_once(':') {
        let len = match algo {
            "sha256" => 64,
            "sha512" => 128,
            _ => {
                return Err(bad(
                    reference,
                    "only `sha256` and `sha512` digests are supported",
                ))
            }
        };
        if hex.len() != len
            || !hex
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            return Err(bad(reference, "not a valid digest"));
        }
    } else if reference.is_empty()
        || reference.len() > 128
        || !reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(bad(reference, "not a valid tag"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let idx = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            media_type_of(Some("application/json"), idx),
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(
            media_type_of(
                Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
                b"{}"
            ),
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        let m = br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
        assert_eq!(
            media_type_of(None, m),
            "application/vnd.oci.image.manifest.v1+json"
        );
    }

    #[test]
    fn names_are_checked() {
        let op = Op::pull("a", "op".into());
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(check_names(&op, "r", "a/b", "v1.0").is_ok());
        assert!(check_names(&op, "r", "a/b", &d).is_ok());
        assert!(check_names(&op, "r", "a/../b", "v1").is_err());
        assert!(check_names(&op, "r", "a/b", "v1?x=y").is_err());
        assert!(check_names(&op, "r", "a/b", "sha256:abc").is_err());
        assert!(check_names(&op, "r", "a/b", "md5:abc").is_err());
    }

    #[test]
    fn sha256_of_empty() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
