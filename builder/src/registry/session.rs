//! The request machinery behind [`RegistryClient`]: finding the endpoint (HTTPS, or plain HTTP
//! where the policy allows), answering the registry's challenge (Basic, or a Bearer token from
//! the token service, fetched again once when a request is refused with 401, e.g. a token that
//! expired during a long push), turning responses and transport errors into retryable or final
//! failures with the registry's error code and message, and scrubbing secrets from them.
//!
//! A credential belongs to the registry host it was configured for. It is presented only to
//! that host and to the token service that host names on its `/v2/` ping. A challenge from
//! anywhere else (a storage host a blob `GET` was redirected to, or a later challenge naming a
//! realm on another host) is answered at most with an anonymous token request, which the
//! distribution token spec allows any client to make; tokens are cached per realm, so a token
//! from one realm never goes to another.

use std::sync::MutexGuard;
use std::time::{Instant, SystemTime};

use reqwest::blocking::{Request, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use super::auth::{self, basic_header, parse_challenge, Challenge, Credential, Token};
use super::body::{is_timeout, seconds};
use super::client::{Op, RegistryClient, Session};
use super::error::{ErrorKind, RegistryError};
use super::retry::{parse_retry_after, Failure, Retry};
use super::transport::{self, credentials_allowed, plain_http_allowed, Scheme};

impl RegistryClient {
    pub(super) fn error(&self, op: &Op, mut kind: ErrorKind) -> RegistryError {
        // A refusal reads differently when nothing was presented for this repository.
        if let ErrorKind::Unauthorized { anonymous, .. } = &mut kind {
            *anonymous = matches!(
                self.credentials.for_repository(op.repo).0,
                Credential::Anonymous
            );
        }
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

    pub(super) fn session(&self) -> MutexGuard<'_, Session> {
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
        // One probe at a time: the threads of a parallel copy that start together wait for the
        // first one's answer instead of each pinging the registry.
        let _probing = self
            .probing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(found) = self.session().endpoint.clone() {
            return Ok(found);
        }
        let probe = |scheme: Scheme| {
            let url = format!("{}://{}/v2/", scheme.as_str(), self.host);
            self.http.get(url).timeout(self.small()).send()
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

    /// The challenge of the `/v2/` ping. A `Bearer` realm the registry host itself names there is
    /// its token service, the one place besides the host that may see the credential.
    fn challenge_of(&self, resp: Response) -> Result<Challenge, Failure> {
        match resp.status().as_u16() {
            401 => {
                let challenge = header(&resp, WWW_AUTHENTICATE.as_str())
                    .and_then(|h| parse_challenge(&h))
                    .unwrap_or(Challenge::None);
                if let Challenge::Bearer { realm, .. } = &challenge {
                    if self.is_registry(resp.url()) {
                        if let Ok(url) = Url::parse(realm) {
                            self.session().token_service = Some(url.origin());
                        }
                    }
                }
                Ok(challenge)
            }
            408 | 429 | 500..=599 => Err(self.failure(resp)),
            _ => Ok(Challenge::None),
        }
    }

    /// Send one request built by `build` (given the `scheme://host/v2/` base), with the
    /// credentials the challenge asks for. A 401 is answered once with a fresh token or the
    /// challenge that response carries; any other status is the caller's to judge. A 401 from
    /// another host the request was redirected to gets at most an anonymous token.
    pub(super) fn send(
        &self,
        op: &Op,
        build: &dyn Fn(&str) -> Result<RequestBuilder, Failure>,
    ) -> Result<Response, Failure> {
        self.send_with(op, build, &|request| {
            self.http.execute(request).map_err(|e| self.network(e))
        })
    }

    /// [`send`](Self::send), with the built request (authorization set) sent by `execute`:
    /// streamed uploads send it with a body of their own.
    pub(super) fn send_with(
        &self,
        op: &Op,
        build: &dyn Fn(&str) -> Result<RequestBuilder, Failure>,
        execute: &dyn Fn(Request) -> Result<Response, Failure>,
    ) -> Result<Response, Failure> {
        let (scheme, mut challenge) = self.endpoint()?;
        let credential = self.credential_for(op.repo);
        let base = format!("{}://{}/v2/", scheme.as_str(), self.host);
        let mut fresh = false;
        // Where a redirect led and the anonymous token that host's realm gave, once asked.
        let mut elsewhere: Option<(Url, String)> = None;
        loop {
            let mut request = build(&base)?.build().map_err(|e| {
                Failure::fatal(ErrorKind::Protocol(transport::chain(&e.without_url())))
            })?;
            let value = if let Some((url, value)) = &elsewhere {
                *request.url_mut() = url.clone();
                Some(value.clone())
            } else if self.is_registry(request.url()) {
                // Credentials go only to the registry host itself, not to storage it redirects
                // to (reqwest drops `Authorization` on redirects to another host).
                self.authorization(credential, scheme, &challenge, &op.scopes, fresh)?
            } else {
                None
            };
            if let Some(value) = value {
                let value = value
                    .parse()
                    .map_err(|_| Failure::fatal(ErrorKind::Protocol("unusable token".into())))?;
                request.headers_mut().insert(AUTHORIZATION, value);
            }
            let resp = execute(request)?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let offered =
                header(&resp, WWW_AUTHENTICATE.as_str()).and_then(|h| parse_challenge(&h));
            if !self.is_registry(resp.url()) {
                match offered {
                    Some(Challenge::Bearer { realm, service }) if elsewhere.is_none() => {
                        let realm = parse_realm(&realm)?;
                        let token = self.fetch_token(
                            credential,
                            &realm,
                            service.as_deref(),
                            &op.scopes,
                            false,
                        )?;
                        let value = format!("Bearer {}", token.value.expose());
                        elsewhere = Some((resp.url().clone(), value));
                        continue;
                    }
                    _ => return Err(self.stranger(resp.url())),
                }
            }
            if fresh {
                return Ok(resp);
            }
            let answerable = match &offered {
                Some(Challenge::Bearer { .. }) => true,
                Some(Challenge::Basic) => matches!(credential, Credential::Basic { .. }),
                _ => false,
            };
            if !answerable {
                return Ok(resp);
            }
            challenge = offered.unwrap_or(Challenge::None);
            // Only a challenge that keeps to the registry and its token service is remembered
            // for later requests; another realm serves this request alone, anonymously.
            if self.keeps_home(&challenge) {
                self.session().endpoint = Some((scheme, challenge.clone()));
            }
            fresh = true;
        }
    }

    /// The credential for `repo`: explicit, or from the most specific `auth.json` key.
    pub(super) fn credential_for(&self, repo: &str) -> &Credential {
        let (credential, file) = self.credentials.for_repository(repo);
        if let Some(file) = file {
            tracing::debug!(
                "credentials for `{}/{repo}` from `{}`",
                self.registry,
                file.display()
            );
        }
        credential
    }

    /// Whether `url` is on the registry host the credential is for.
    pub(super) fn is_registry(&self, url: &Url) -> bool {
        authority(url).as_deref() == Some(self.host.as_str())
    }

    /// Whether the credential may go to the token service at `realm`: the registry host itself,
    /// or the token service the registry announced on its `/v2/` ping.
    fn trusts_realm(&self, realm: &Url) -> bool {
        self.is_registry(realm) || self.session().token_service.as_ref() == Some(&realm.origin())
    }

    /// Whether answering `challenge` presents the credential only where it belongs.
    fn keeps_home(&self, challenge: &Challenge) -> bool {
        match challenge {
            Challenge::Bearer { realm, .. } => {
                Url::parse(realm).is_ok_and(|realm| self.trusts_realm(&realm))
            }
            Challenge::None | Challenge::Basic => true,
        }
    }

    /// A host the registry redirected a request to refused it and cannot be answered.
    fn stranger(&self, url: &Url) -> Failure {
        let host = authority(url).unwrap_or_default();
        Failure::fatal(ErrorKind::Protocol(format!(
            "`{host}`, where `{}` redirected the request, refused it (401); credentials go only to `{}` and the token service it announces",
            self.registry, self.registry
        )))
    }

    fn authorization(
        &self,
        credential: &Credential,
        scheme: Scheme,
        challenge: &Challenge,
        scopes: &[String],
        fresh: bool,
    ) -> Result<Option<String>, Failure> {
        match (challenge, credential) {
            (Challenge::None, _) => Ok(None),
            (Challenge::Basic, Credential::Basic { username, password }) => {
                self.check_plain(credential, scheme, &self.host)?;
                Ok(Some(basic_header(username, password)))
            }
            (Challenge::Basic, _) => Ok(None),
            (Challenge::Bearer { realm, service }, _) => {
                let url = parse_realm(realm)?;
                let trusted = self.trusts_realm(&url);
                let key = format!("{realm} {}", scopes.join(" "));
                if !fresh {
                    if let Some(token) = self.session().tokens.get(&key).filter(|t| t.is_fresh()) {
                        return Ok(Some(format!("Bearer {}", token.value.expose())));
                    }
                }
                if trusted {
                    self.check_plain(credential, scheme, &self.host)?;
                } else {
                    tracing::debug!(
                        "asking `{}` for an anonymous token: it is not the token service `{}` announced",
                        authority(&url).unwrap_or_default(),
                        self.registry
                    );
                }
                let token =
                    self.fetch_token(credential, &url, service.as_deref(), scopes, trusted)?;
                let value = format!("Bearer {}", token.value.expose());
                self.session().tokens.insert(key, token);
                Ok(Some(value))
            }
        }
    }

    fn check_plain(
        &self,
        credential: &Credential,
        scheme: Scheme,
        host: &str,
    ) -> Result<(), Failure> {
        if matches!(credential, Credential::Anonymous)
            || credentials_allowed(scheme, host, self.insecure)
        {
            return Ok(());
        }
        Err(Failure::fatal(ErrorKind::Refused(format!(
            "credentials for `{}` would travel over plain HTTP to `{host}`",
            self.registry
        ))))
    }

    /// Ask the token service at `realm` for a token covering `scopes`, presenting the
    /// credential only when `with_credential` (the realm is the registry's own); otherwise the
    /// request is anonymous.
    fn fetch_token(
        &self,
        presented: &Credential,
        realm: &Url,
        service: Option<&str>,
        scopes: &[String],
        with_credential: bool,
    ) -> Result<Token, Failure> {
        let started = Instant::now();
        let mut url = realm.clone();
        let credential = if with_credential {
            let realm_scheme = if url.scheme() == "https" {
                Scheme::Https
            } else {
                Scheme::Http
            };
            self.check_plain(
                presented,
                realm_scheme,
                &authority(&url).unwrap_or_default(),
            )?;
            presented
        } else {
            &Credential::Anonymous
        };
        let request = match credential {
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
        let resp = request
            .timeout(self.small())
            .send()
            .map_err(|e| self.network(e))?;
        let received = Instant::now();
        if !resp.status().is_success() {
            return Err(self.failure(resp));
        }
        let body = self.read_document(resp, 1 << 20, "token service's answer", started)?;
        auth::decode_token(&body, received).map_err(Failure::fatal)
    }

    /// Turn an unsuccessful response into a failure carrying the registry's error code and
    /// message (distribution spec "Error Codes"), retryable for 408, 429 and 5xx.
    pub(super) fn failure(&self, resp: Response) -> Failure {
        let status = resp.status().as_u16();
        let retry_after = header(&resp, RETRY_AFTER.as_str())
            .and_then(|v| parse_retry_after(&v, SystemTime::now()));
        let body = self.read_excerpt(resp, 64 * 1024);
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
                // Settled in `error`, which knows the repository.
                anonymous: false,
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
        if err.is_timeout() {
            return Failure {
                kind: ErrorKind::Timeout(format!(
                    "the registry did not answer within {}",
                    seconds(self.read_wait())
                )),
                retry: Retry::Yes,
            };
        }
        let builder = err.is_builder();
        if let Some((dns, retry)) = unreachable(&err, &self.host) {
            let message = self.scrub(&transport::innermost(&err));
            return Failure {
                kind: ErrorKind::Unreachable { message, dns },
                retry,
            };
        }
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
        if is_timeout(err) {
            return Failure {
                kind: ErrorKind::Timeout(format!(
                    "the registry sent nothing for {}",
                    seconds(self.read_wait())
                )),
                retry: Retry::Yes,
            };
        }
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

/// Whether `err` says nothing can be reached at `host` (the name does not resolve, or the
/// connection is refused), and how often that is worth another try: a refused connection
/// to a remote host once (a registry restarting behind a load balancer), to a loopback address
/// never, nor a name the resolver says does not exist; a temporary resolver failure once.
fn unreachable(err: &reqwest::Error, host: &str) -> Option<(bool, Retry)> {
    if !err.is_connect() {
        return None;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                let retry = if transport::is_loopback(host) {
                    Retry::No
                } else {
                    Retry::Once
                };
                return Some((false, retry));
            }
        }
        source = e.source();
    }
    let text = transport::chain(err).to_lowercase();
    if text.contains("dns error") || text.contains("failed to lookup address") {
        let temporary = text.contains("temporary failure") || text.contains("try again");
        let retry = if temporary { Retry::Once } else { Retry::No };
        return Some((true, retry));
    }
    None
}

/// `host[:port]` of a URL, as references write a registry.
fn authority(url: &Url) -> Option<String> {
    url.host_str().map(|h| match url.port() {
        Some(p) => format!("{h}:{p}"),
        None => h.to_string(),
    })
}

fn parse_realm(realm: &str) -> Result<Url, Failure> {
    Url::parse(realm).map_err(|e| {
        Failure::fatal(ErrorKind::Protocol(format!(
            "bad token realm `{realm}`: {e}"
        )))
    })
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
    fn credentials_stay_with_the_registry_and_its_token_service() {
        let options = super::super::RegistryOptions::default();
        let c = RegistryClient::new(&options, "reg.example:5000").unwrap();
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(c.is_registry(&url("https://reg.example:5000/v2/a/blobs/x")));
        assert!(!c.is_registry(&url("https://reg.example/v2/")));
        assert!(!c.is_registry(&url("https://storage.example:5000/blob")));
        // Before the ping, only the registry host itself.
        assert!(c.trusts_realm(&url("https://reg.example:5000/token")));
        assert!(!c.trusts_realm(&url("https://auth.example/token")));
        // The ping announced its token service: that origin, no other.
        c.session().token_service = Some(url("https://auth.example/token").origin());
        assert!(c.trusts_realm(&url("https://auth.example/v2/token?x=1")));
        assert!(!c.trusts_realm(&url("http://auth.example/token")));
        assert!(!c.trusts_realm(&url("https://auth.example:8443/token")));
        assert!(!c.trusts_realm(&url("https://auth.example.evil/token")));
        let bearer = |realm: &str| Challenge::Bearer {
            realm: realm.into(),
            service: None,
        };
        assert!(c.keeps_home(&bearer("https://auth.example/token")));
        assert!(!c.keeps_home(&bearer("https://evil.example/token")));
        assert!(!c.keeps_home(&bearer("not a url")));
        assert!(c.keeps_home(&Challenge::Basic));
    }
}
