//! [`RegistryClient`]: one registry host, blocking, streaming. Every operation runs inside the
//! retry policy; every request goes through [`RegistryClient::send`], which finds the endpoint
//! (HTTPS, or plain HTTP where the policy allows), answers the registry's challenge, and fetches
//! a fresh token once when a request is refused with 401 (an expired token in a long push).
//! Manifests travel as raw bytes so their digests never change (OCI image-spec "Digests");
//! blobs are streamed through a hash and never held whole in memory.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{StatusCode, Url};

use super::auth::{self, basic_header, parse_challenge, Challenge, Credential, Token};
use super::error::{ErrorKind, RegistryError};
use super::reference::api_host;
use super::retry::{parse_retry_after, Failure, Retry, RetryPolicy};
use super::transport::{self, credentials_allowed, plain_http_allowed, Scheme};
use super::{RegistryOptions, UploadMode, MANIFEST_MEDIA_TYPES};
use crate::error::Result;

pub(super) const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
/// Timeout of requests without a blob body.
pub(super) const SMALL: Duration = Duration::from_secs(60);
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
    credential: Credential,
    secrets: Vec<String>,
    insecure: bool,
    retry: RetryPolicy,
    pub(super) upload: UploadMode,
    session: Mutex<Session>,
}

#[derive(Default)]
struct Session {
    endpoint: Option<(Scheme, Challenge)>,
    tokens: HashMap<String, Token>,
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
        let http = transport::http_client(&options.tls, registry).map_err(fail)?;
        let credential = match &options.credential {
            Some(c) => c.clone(),
            None => match auth::from_files(&options.auth_files, registry).map_err(fail)? {
                Some((c, file)) => {
                    tracing::debug!("credentials for `{registry}` from `{}`", file.display());
                    c
                }
                None => Credential::Anonymous,
            },
        };
        Ok(RegistryClient {
            registry: registry.to_string(),
            secrets: credential.secrets(),
            host,
            http,
            credential,
            insecure: options.tls.insecure,
            retry: options.retry,
            upload: options.upload,
            session: Mutex::new(Session::default()),
        })
    }

    /// The registry this client talks to, as written in references.
    pub fn registry(&self) -> &str {
        &self.registry
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
            let resp = self.send(&op, &|base| {
                Ok(self
                    .http
                    .get(format!("{base}{url}"))
                    .header(ACCEPT, &accept)
                    .timeout(SMALL))
            })?;
            if !resp.status().is_success() {
                return Err(self.failure(resp));
            }
            let content_type = header(&resp, CONTENT_TYPE.as_str());
            let claimed = header(&resp, DOCKER_CONTENT_DIGEST);
            let mut bytes = Vec::new();
            resp.take(MAX_MANIFEST + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| self.read_failure(&e))?;
            if bytes.len() as u64 > MAX_MANIFEST {
                return Err(Failure::fatal(ErrorKind::Protocol(format!(
                    "the manifest is larger than {MAX_MANIFEST} bytes"
                ))));
            }
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
                    .timeout(SMALL))
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

    /// The size of a blob if the repository has it (`HEAD`), `None` if not.
    pub fn blob_exists(&self, repo: &str, digest: &str) -> Result<Option<u64>> {
        let op = Op::pull(repo, format!("check blob {digest}"));
        check_names(&op, &self.registry, repo, digest)?;
        let url = format!("{repo}/blobs/{digest}");
        Ok(self.run(&op, || {
            let resp = self.send(&op, &|base| {
                Ok(self.http.head(format!("{base}{url}")).timeout(SMALL))
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
        })?)
    }

    /// Download a blob to `dest`: streamed into a temporary file beside it, checked against
    /// `digest` (and `size` when given), then renamed into place.
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
            let mut resp = self.send(&op, &|base| Ok(self.http.get(format!("{base}{url}"))))?;
            if !resp.status().is_success() {
                return Err(self.failure(resp));
            }
            // `.tmp-` is the prefix OCI layout writers skip when packing a directory.
            let mut tmp = tempfile::Builder::new()
                .prefix(".tmp-")
                .tempfile_in(dir)
                .map_err(io(dir))?;
            let mut hasher = Hasher::for_digest(digest);
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = resp.read(&mut buf).map_err(|e| self.read_failure(&e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                tmp.write_all(&buf[..n]).map_err(io(tmp.path()))?;
                total += n as u64;
            }
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
            return Err(self.error(&op, kind).into());
        }
        self.confirm_children(&op, bytes)?;
        let url = format!("{repo}/manifests/{reference}");
        self.run(&op, || {
            let resp = self.send(&op, &|base| {
                Ok(self
                    .http
                    .put(format!("{base}{url}"))
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.to_vec())
                    .timeout(SMALL))
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
                _ => Ok(()),
            }
        })?;
        match self.manifest_digest(repo, reference, &[media_type])? {
            Some(served) if served == digest => Ok(digest),
            Some(served) => Err(self
                .error(
                    &op,
                    ErrorKind::DigestMismatch {
                        expected: digest,
                        actual: served,
                    },
                )
                .into()),
            None => Err(self
                .error(
                    &op,
                    ErrorKind::Protocol(
                        "the registry does not serve the manifest just pushed".into(),
                    ),
                )
                .into()),
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
            if self.blob_exists(op.repo, &blob.digest)?.is_none() {
                missing.push(blob.digest.clone());
            }
        }
        for child in &children.manifests {
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
        Err(self.error(op, kind).into())
    }

    pub(super) fn error(&self, op: &Op, kind: ErrorKind) -> RegistryError {
        RegistryError::new(&self.registry, op.repo, &op.what, kind)
    }

    /// Run `attempt` under the retry policy and turn the final failure into an error.
    pub(super) fn run<T>(
        &self,
        op: &Op,
        attempt: impl FnMut() -> Result<T, Failure>,
    ) -> Result<T, RegistryError> {
        let place = format!("{}/{}", self.registry, op.repo);
        self.retry
            .run(&op.what, &place, attempt)
            .map_err(|(kind, spent)| {
                let err = self.error(op, kind);
                match spent {
                    Some(s) => err.with_retries(s.attempts, s.elapsed),
                    None => err,
                }
            })
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        self.session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Find how to reach the registry: HTTPS, or plain HTTP where the policy allows and the
    /// host answers the `/v2/` ping over it; and which challenge it sets.
    fn endpoint(&self) -> Result<(Scheme, Challenge), Failure> {
        if let Some(found) = self.session().endpoint.clone() {
            return Ok(found);
        }
        let probe = |scheme: Scheme| {
            let url = format!("{}://{}/v2/", scheme.as_str(), self.host);
            self.http.get(url).timeout(SMALL).send()
        };
        let found = match probe(Scheme::Https) {
            Ok(resp) => (Scheme::Https, self.challenge_of(resp)?),
            Err(https_err) => {
                let plain = plain_http_allowed(&self.host, self.insecure)
                    .then(|| probe(Scheme::Http).ok())
                    .flatten()
                    .filter(|r| {
                        matches!(r.status().as_u16(), 200 | 401)
                            || r.headers().contains_key("docker-distribution-api-version")
                    });
                match plain {
                    Some(resp) => (Scheme::Http, self.challenge_of(resp)?),
                    None => return Err(self.network(https_err)),
                }
            }
        };
        tracing::debug!("`{}` answers over {}", self.registry, found.0.as_str());
        self.session().endpoint = Some(found.clone());
        Ok(found)
    }

    fn challenge_of(&self, resp: Response) -> Result<Challenge, Failure> {
        match resp.status().as_u16() {
            401 => Ok(header(&resp, WWW_AUTHENTICATE.as_str())
                .and_then(|h| parse_challenge(&h))
                .unwrap_or(Challenge::None)),
            408 | 429 | 500..=599 => Err(self.failure(resp)),
            _ => Ok(Challenge::None),
        }
    }

    /// Send one request built by `build` (given the `scheme://host/v2/` base), with the
    /// credentials the challenge asks for. A 401 is answered once with a fresh token or the
    /// challenge that response carries; any other status is the caller's to judge.
    pub(super) fn send(
        &self,
        op: &Op,
        build: &dyn Fn(&str) -> Result<RequestBuilder, Failure>,
    ) -> Result<Response, Failure> {
        let (scheme, mut challenge) = self.endpoint()?;
        let base = format!("{}://{}/v2/", scheme.as_str(), self.host);
        let mut fresh = false;
        loop {
            let mut request = build(&base)?.build().map_err(|e| {
                Failure::fatal(ErrorKind::Protocol(transport::chain(&e.without_url())))
            })?;
            // Credentials go only to the registry host itself, not to storage it redirects to.
            let same_host = request
                .url()
                .host_str()
                .map(|h| match request.url().port() {
                    Some(p) => format!("{h}:{p}"),
                    None => h.to_string(),
                });
            if same_host.as_deref() == Some(self.host.as_str()) {
                if let Some(value) = self.authorization(scheme, &challenge, &op.scopes, fresh)? {
                    let value = value.parse().map_err(|_| {
                        Failure::fatal(ErrorKind::Protocol("unusable token".into()))
                    })?;
                    request.headers_mut().insert(AUTHORIZATION, value);
                }
            }
            let resp = self.http.execute(request).map_err(|e| self.network(e))?;
            if resp.status() != StatusCode::UNAUTHORIZED || fresh {
                return Ok(resp);
            }
            let offered =
                header(&resp, WWW_AUTHENTICATE.as_str()).and_then(|h| parse_challenge(&h));
            let answerable = match &offered {
                Some(Challenge::Bearer { .. }) => true,
                Some(Challenge::Basic) => matches!(self.credential, Credential::Basic { .. }),
                _ => false,
            };
            if !answerable {
                return Ok(resp);
            }
            challenge = offered.unwrap_or(Challenge::None);
            let mut session = self.session();
            session.endpoint = Some((scheme, challenge.clone()));
            session.tokens.remove(&op.scopes.join(" "));
            fresh = true;
        }
    }

    fn authorization(
        &self,
        scheme: Scheme,
        challenge: &Challenge,
        scopes: &[String],
        fresh: bool,
    ) -> Result<Option<String>, Failure> {
        match (challenge, &self.credential) {
            (Challenge::None, _) => Ok(None),
            (Challenge::Basic, Credential::Basic { username, password }) => {
                self.check_plain(scheme, &self.host)?;
                Ok(Some(basic_header(username, password)))
            }
            (Challenge::Basic, _) => Ok(None),
            (Challenge::Bearer { realm, service }, _) => {
                let key = scopes.join(" ");
                if !fresh {
                    if let Some(token) = self.session().tokens.get(&key).filter(|t| t.is_fresh()) {
                        return Ok(Some(format!("Bearer {}", token.value.expose())));
                    }
                }
                self.check_plain(scheme, &self.host)?;
                let token = self.fetch_token(realm, service.as_deref(), scopes)?;
                let value = format!("Bearer {}", token.value.expose());
                self.session().tokens.insert(key, token);
                Ok(Some(value))
            }
        }
    }

    fn check_plain(&self, scheme: Scheme, host: &str) -> Result<(), Failure> {
        if matches!(self.credential, Credential::Anonymous)
            || credentials_allowed(scheme, host, self.insecure)
        {
            return Ok(());
        }
        Err(Failure::fatal(ErrorKind::Refused(format!(
            "credentials for `{}` would travel over plain HTTP to `{host}`",
            self.registry
        ))))
    }

    /// Ask the token service named by a `Bearer` challenge for a token covering `scopes`.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<Token, Failure> {
        let mut url = Url::parse(realm).map_err(|e| {
            Failure::fatal(ErrorKind::Protocol(format!(
                "bad token realm `{realm}`: {e}"
            )))
        })?;
        let realm_scheme = if url.scheme() == "https" {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let realm_host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => String::new(),
        };
        self.check_plain(realm_scheme, &realm_host)?;
        let request = match &self.credential {
            Credential::IdentityToken(refresh) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", refresh.expose())
                    .append_pair("client_id", "talext");
                if let Some(service) = service {
                    form.append_pair("service", service);
                }
                form.append_pair("scope", &scopes.join(" "));
                self.http
                    .post(url)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.finish())
            }
            credential => {
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = service {
                        query.append_pair("service", service);
                    }
                    for scope in scopes {
                        query.append_pair("scope", scope);
                    }
                }
                let request = self.http.get(url);
                match credential {
                    Credential::Basic { username, password } => {
                        request.header(AUTHORIZATION, basic_header(username, password))
                    }
                    _ => request,
                }
            }
        };
        let resp = request.timeout(SMALL).send().map_err(|e| self.network(e))?;
        let received = Instant::now();
        if !resp.status().is_success() {
            return Err(self.failure(resp));
        }
        let mut body = Vec::new();
        resp.take(1 << 20)
            .read_to_end(&mut body)
            .map_err(|e| self.read_failure(&e))?;
        auth::decode_token(&body, received).map_err(Failure::fatal)
    }

    /// Turn an unsuccessful response into a failure carrying the registry's error code and
    /// message (distribution spec "Error Codes"), retryable for 408, 429 and 5xx.
    pub(super) fn failure(&self, resp: Response) -> Failure {
        let status = resp.status().as_u16();
        let retry_after = header(&resp, RETRY_AFTER.as_str())
            .and_then(|v| parse_retry_after(&v, SystemTime::now()));
        let mut body = Vec::new();
        let _ = resp.take(64 * 1024).read_to_end(&mut body);
        let (code, message) = envelope(&body);
        let (code, message) = (
            code.map(|c| self.scrub(&c)),
            message.map(|m| self.scrub(&m)),
        );
        let kind = match status {
            401 | 403 => ErrorKind::Unauthorized {
                status,
                code,
                message,
            },
            404 => ErrorKind::NotFound { code, message },
            _ => ErrorKind::Status {
                status,
                code,
                message,
            },
        };
        let retry = match status {
            408 | 429 | 500 | 502..=504 | 506..=599 => retry_after.map_or(Retry::Yes, Retry::After),
            _ => Retry::No,
        };
        Failure { kind, retry }
    }

    /// A failure to reach the registry or to complete an exchange with it.
    pub(super) fn network(&self, err: reqwest::Error) -> Failure {
        let builder = err.is_builder();
        let text = self.scrub(&transport::chain(&err.without_url()));
        let certificate =
            text.to_lowercase().contains("certificate") || text.contains("UnknownIssuer");
        let retry = if certificate || builder {
            Retry::No
        } else {
            Retry::Yes
        };
        Failure {
            kind: ErrorKind::Network(text),
            retry,
        }
    }

    /// A response body that broke off (reset, truncated) is worth another attempt.
    pub(super) fn read_failure(&self, err: &std::io::Error) -> Failure {
        Failure {
            kind: ErrorKind::Network(self.scrub(&transport::chain(err))),
            retry: Retry::Yes,
        }
    }

    /// Remove every secret the client holds from text that came from elsewhere.
    fn scrub(&self, text: &str) -> String {
        self.secrets
            .iter()
            .filter(|s| !s.is_empty())
            .fold(text.to_string(), |t, s| t.replace(s.as_str(), "<redacted>"))
    }
}

pub(super) fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The first error of a distribution-spec error envelope, or a short plain-text body.
fn envelope(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(body) {
        if let Some(first) = env.errors.into_iter().next() {
            return (first.code, first.message);
        }
    }
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() || line.starts_with('{') || line.starts_with('<') {
        (None, None)
    } else {
        (None, Some(line.chars().take(200).collect()))
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
        oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE.to_string()
    } else {
        oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_string()
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    let mut h = Hasher::for_digest("sha256:");
    h.update(bytes);
    h.finish()
}

/// Whether `s` looks like `algorithm:hex` (a digest rather than a tag).
pub fn is_digest(s: &str) -> bool {
    s.contains(':')
}

/// Refuse names that would change the URL they are placed in (`..`, `?`, `#`, spaces) and
/// digests talext cannot verify.
fn check_names(op: &Op, registry: &str, repo: &str, reference: &str) -> Result<(), RegistryError> {
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
    fn envelopes_and_plain_bodies() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(
            envelope(body),
            (
                Some("MANIFEST_UNKNOWN".into()),
                Some("manifest unknown".into())
            )
        );
        assert_eq!(envelope(b"slow down\n"), (None, Some("slow down".into())));
        assert_eq!(envelope(b"<html>"), (None, None));
    }

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
