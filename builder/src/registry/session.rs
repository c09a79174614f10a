//! The request machinery behind [`RegistryClient`]: finding the endpoint (HTTPS, or plain HTTP
//! where the policy allows), answering the registry's challenge (Basic, or a Bearer token from
//! the token service, fetched again once when a request is refused with 401, e.g. a token that
//! expired during a long push), turning responses and transport errors into retryable or final
//! failures with the registry's error code and message, and scrubbing secrets from them.

use std::sync::MutexGuard;
use std::time::{Instant, SystemTime};

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use super::auth::{self, basic_header, parse_challenge, Challenge, Credential, Token};
use super::body::{is_timeout, seconds};
use super::client::{Op, RegistryClient, Session};
use super::error::{ErrorKind, RegistryError};
use super::retry::{parse_retry_after, Failure, Retry};
use super::transport::{self, credentials_allowed, plain_http_allowed, Scheme};

impl RegistryClient {
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
        let started = Instant::now();
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
}
