//! Credentials and registry authentication. Resolution order, as users expect from skopeo and
//! podman: explicit `--username`/password, then `--auth-file`, then containers `auth.json`
//! (`REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$XDG_CONFIG_HOME/containers/auth.json`), then Docker's `config.json` (`$DOCKER_CONFIG` or
//! `~/.docker`) with `credHelpers` and `credsStore` (read with the `docker_credential` crate),
//! then anonymous. In `auth.json` files a key may also name a namespace or a repository
//! (`host/ns`, `host/ns/repo`); for a repository the most specific key of the first file that
//! has any matching key wins (containers-auth.json(5), as skopeo and podman read it), so one
//! registry can hold several accounts. Then the two challenge schemes of the distribution spec's token auth:
//! `Basic`, and `Bearer realm=…,service=…` answered by a token service, to which an identity
//! token is presented as an OAuth2 refresh token (Docker's token spec, "OAuth2 token").

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use docker_credential::{CredentialRetrievalError, DockerCredential};

use super::error::ErrorKind;
use super::reference::DOCKER_HUB;

/// A secret string that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What talext presents to a registry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Credential {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: Secret,
    },
    /// An OAuth2 refresh token (`identitytoken` in `config.json`, `<token>` from a helper).
    IdentityToken(Secret),
}

impl Credential {
    /// Secrets to scrub from anything a registry echoes back.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            Credential::Anonymous => vec![],
            Credential::Basic { username, password } => {
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()));
                vec![password.expose().to_string(), basic]
            }
            Credential::IdentityToken(t) => vec![t.expose().to_string()],
        }
    }
}

/// The credential files searched after the explicit ones, in order, from the environment.
pub fn default_auth_files() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = env("HOME");
    let mut files = Vec::new();
    if let Some(f) = env("REGISTRY_AUTH_FILE") {
        files.push(f);
    }
    if let Some(run) = env("XDG_RUNTIME_DIR") {
        files.push(run.join("containers/auth.json"));
    }
    if let Some(config) =
        env("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")))
    {
        files.push(config.join("containers/auth.json"));
    }
    if let Some(docker) = env("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker")))
    {
        files.push(docker.join("config.json"));
    }
    files
}

/// Find the credential for `registry` in `files` (docker `config.json` / containers
/// `auth.json` format), the first file that names it winning. Returns the credential and the
/// file it came from, or `None` when no file mentions the registry.
pub fn from_files(
    files: &[PathBuf],
    registry: &str,
) -> Result<Option<(Credential, PathBuf)>, ErrorKind> {
    for file in files {
        let Some(text) = read_auth_file(file)? else {
            continue;
        };
        if let Some(cred) = registry_entry(&text, registry, file)? {
            return Ok(Some((cred, file.clone())));
        }
    }
    Ok(None)
}

/// The credentials for one registry, chosen per repository: the explicit one for every
/// repository, else the first file with a key for the repository's namespace or for the
/// registry, the longest namespace key of that file winning.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    explicit: Option<Credential>,
    /// Namespace-scoped entries: position of the file, `ns[/repo]`, the credential, the file.
    scoped: Vec<(usize, String, Credential, PathBuf)>,
    /// The registry-wide entry, with the position of its file and the file.
    host: Option<(usize, Credential, PathBuf)>,
}

static ANONYMOUS: Credential = Credential::Anonymous;

impl Credentials {
    /// Resolve what `registry` may be given: `explicit` alone when set, else the entries of
    /// `files` (searched until one has a registry-wide entry; later files cannot win).
    pub fn resolve(
        explicit: Option<&Credential>,
        files: &[PathBuf],
        registry: &str,
    ) -> Result<Self, ErrorKind> {
        if let Some(c) = explicit {
            return Ok(Credentials {
                explicit: Some(c.clone()),
                ..Credentials::default()
            });
        }
        let mut found = Credentials::default();
        for (position, file) in files.iter().enumerate() {
            let Some(text) = read_auth_file(file)? else {
                continue;
            };
            for (path, cred) in scoped_entries(&text, registry, file)? {
                found.scoped.push((position, path, cred, file.clone()));
            }
            if let Some(cred) = registry_entry(&text, registry, file)? {
                found.host = Some((position, cred, file.clone()));
                break;
            }
        }
        Ok(found)
    }

    /// The credential for `repo` and the file it came from (`None` for an explicit one or
    /// anonymous).
    pub fn for_repository(&self, repo: &str) -> (&Credential, Option<&Path>) {
        if let Some(c) = &self.explicit {
            return (c, None);
        }
        let scoped = self
            .scoped
            .iter()
            .filter(|(_, path, _, _)| {
                repo == path
                    || repo
                        .strip_prefix(path.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .min_by_key(|(position, path, _, _)| (*position, std::cmp::Reverse(path.len())));
        match (scoped, &self.host) {
            (Some((position, ..)), Some((host_position, cred, file)))
                if host_position < position =>
            {
                (cred, Some(file))
            }
            (Some((_, _, cred, file)), _) => (cred, Some(file)),
            (None, Some((_, cred, file))) => (cred, Some(file)),
            (None, None) => (&ANONYMOUS, None),
        }
    }

    /// Every secret any repository's credential holds, to scrub from what registries echo.
    pub fn secrets(&self) -> Vec<String> {
        self.explicit
            .iter()
            .chain(self.scoped.iter().map(|(_, _, c, _)| c))
            .chain(self.host.iter().map(|(_, c, _)| c))
            .flat_map(Credential::secrets)
            .collect()
    }
}

fn read_auth_file(file: &Path) -> Result<Option<Vec<u8>>, ErrorKind> {
    match std::fs::read(file) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ErrorKind::Io {
            path: file.to_path_buf(),
            source,
        }),
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        DOCKER_HUB | "index.docker.io" | "registry-1.docker.io"
    )
}

/// The `auths` keys of `text` that name a namespace or repository of `registry` (`host/path`,
/// without a scheme, as containers-auth.json(5) writes them), with their credentials.
fn scoped_entries(
    text: &[u8],
    registry: &str,
    file: &Path,
) -> Result<Vec<(String, Credential)>, ErrorKind> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(text) else {
        // The registry-wide lookup reports a malformed file.
        return Ok(Vec::new());
    };
    let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (key, entry) in auths {
        if key.contains("://") {
            continue;
        }
        let Some((host, path)) = key.split_once('/') else {
            continue;
        };
        let path = path.trim_end_matches('/');
        let same = host == registry || (is_docker_hub(host) && is_docker_hub(registry));
        if !same || path.is_empty() {
            continue;
        }
        let bad = || {
            ErrorKind::Config(format!(
                "the `auths` entry `{key}` in `{}` is not base64 `user:password`",
                file.display()
            ))
        };
        let token = entry
            .get("identitytoken")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty());
        let auth = entry
            .get("auth")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty());
        let cred = match (token, auth) {
            (Some(token), _) => Credential::IdentityToken(Secret::new(token)),
            (None, Some(auth)) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(bad)?;
                let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
                Credential::Basic {
                    username: username.to_string(),
                    password: Secret::new(password),
                }
            }
            (None, None) => continue,
        };
        out.push((path.to_string(), cred));
    }
    Ok(out)
}

/// The registry-wide credential `text` holds for `registry` (an `auths` entry, a
/// `credHelpers` helper or the `credsStore`).
fn registry_entry(
    text: &[u8],
    registry: &str,
    file: &Path,
) -> Result<Option<Credential>, ErrorKind> {
    // Docker Hub entries are keyed `https://index.docker.io/v1/`; docker_credential folds that
    // and `docker.io` together.
    let key = if registry == "index.docker.io" {
        DOCKER_HUB
    } else {
        registry
    };
    match docker_credential::get_credential_from_reader(text, key) {
        // Helpers answer `<token>` as the user name for identity tokens.
        Ok(DockerCredential::UsernamePassword(username, password)) if username == "<token>" => {
            Ok(Some(Credential::IdentityToken(Secret::new(password))))
        }
        Ok(DockerCredential::UsernamePassword(username, password)) => Ok(Some(Credential::Basic {
            username,
            password: Secret::new(password),
        })),
        Ok(DockerCredential::IdentityToken(token)) => {
            Ok(Some(Credential::IdentityToken(Secret::new(token))))
        }
        Err(CredentialRetrievalError::NoCredentialConfigured) => Ok(None),
        Err(e) => Err(ErrorKind::Config(describe(&e, file))),
    }
}

fn describe(err: &CredentialRetrievalError, file: &Path) -> String {
    let file = file.display();
    use CredentialRetrievalError as E;
    match err {
        // The helper's own output may hold secrets: name it, never echo it.
        E::HelperFailure { helper, .. } => {
            format!("credential helper `{helper}` failed (named in `{file}`)")
        }
        E::HelperCommunicationError => {
            format!("cannot run the credential helper named in `{file}`")
        }
        E::MalformedHelperResponse => {
            format!("the credential helper named in `{file}` answered malformed JSON")
        }
        E::CredentialDecodingError => {
            format!("an `auth` entry in `{file}` is not base64 `user:password`")
        }
        E::CredentialMismatchError => {
            format!("an `auth` entry in `{file}` disagrees with its `username`/`password`")
        }
        E::ConfigReadError | E::ConfigNotFound => {
            format!("`{file}` is not a valid credentials file")
        }
        E::NoCredentialConfigured => format!("`{file}` has no credential for this registry"),
    }
}

/// How the registry asked to be authenticated (`WWW-Authenticate` on a 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// The registry did not ask.
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` value, preferring `Bearer` when several challenges are offered.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let parsed = http_auth::parse_challenges(header).ok()?;
    let param = |c: &http_auth::ChallengeRef, name: &str| {
        c.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_unescaped())
    };
    if let Some(c) = parsed
        .iter()
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
    {
        return Some(Challenge::Bearer {
            realm: param(c, "realm")?,
            service: param(c, "service"),
        });
    }
    parsed
        .iter()
        .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
        .then_some(Challenge::Basic)
}

/// `Authorization: Basic …` for a user name and password.
pub fn basic_header(username: &str, password: &Secret) -> String {
    let raw = format!("{username}:{}", password.expose());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub struct Token {
    pub value: Secret,
    pub expires: Instant,
}

impl Token {
    pub fn is_fresh(&self) -> bool {
        Instant::now() < self.expires
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Decode a token service's answer. Tokens without `expires_in` last 60 s (Docker token spec);
/// a token is used only until 90 % of its life so it does not expire on the wire.
pub fn decode_token(body: &[u8], received: Instant) -> Result<Token, ErrorKind> {
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        ErrorKind::Protocol(format!("the token service answered malformed JSON: {e}"))
    })?;
    let value = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| ErrorKind::Protocol("the token service answered without a token".into()))?;
    let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(60).max(1));
    Ok(Token {
        value: Secret::new(value),
        expires: received + lifetime.mul_f64(0.9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let c = Credential::Basic {
            username: "u".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(c.secrets().contains(&"hunter2".to_string()));
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="talext-test""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x", Bearer realm="https://t/""#),
            Some(Challenge::Bearer {
                realm: "https://t/".into(),
                service: None
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn tokens() {
        let now = Instant::now();
        let t = decode_token(br#"{"token":"abc","expires_in":300}"#, now).unwrap();
        assert_eq!(t.value.expose(), "abc");
        assert_eq!(t.expires, now + Duration::from_secs(270));
        let t = decode_token(br#"{"access_token":"xyz"}"#, now).unwrap();
        assert_eq!(t.value.expose(), "xyz");
        assert!(decode_token(br#"{"token":""}"#, now).is_err());
    }

    #[test]
    fn credential_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let podman = dir.path().join("auth.json");
        let docker = dir.path().join("config.json");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::write(
            &podman,
            format!(
                r#"{{"auths":{{"reg:5000":{{"auth":"{}"}}}}}}"#,
                b64("alice:pw1")
            ),
        )
        .unwrap();
        std::fs::write(
            &docker,
            format!(
                r#"{{"auths":{{"https://reg:5000":{{"auth":"{}"}},"other:1":{{"identitytoken":"rt"}},"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
                b64("bob:pw2"),
                b64("hub:pw3")
            ),
        )
        .unwrap();
        let files = vec![
            dir.path().join("missing.json"),
            podman.clone(),
            docker.clone(),
        ];
        let (c, from) = from_files(&files, "reg:5000").unwrap().unwrap();
        assert_eq!(
            c,
            Credential::Basic {
                username: "alice".into(),
                password: Secret::new("pw1")
            }
        );
        assert_eq!(from, podman);
        let (c, from) = from_files(&files, "other:1").unwrap().unwrap();
        assert_eq!(
            (c, from),
            (Credential::IdentityToken(Secret::new("rt")), docker.clone())
        );
        let (c, _) = from_files(&files, "docker.io").unwrap().unwrap();
        assert_eq!(
            c,
            Credential::Basic {
                username: "hub".into(),
                password: Secret::new("pw3")
            }
        );
        assert!(from_files(&files, "nowhere:1").unwrap().is_none());
    }

    #[test]
    fn namespace_keys_longest_match_of_the_first_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let first = dir.path().join("auth.json");
        let second = dir.path().join("config.json");
        std::fs::write(
            &first,
            format!(
                r#"{{"auths":{{"reg:5000/team":{{"auth":"{}"}},"reg:5000/team/app":{{"auth":"{}"}},"other:1/team":{{"auth":"{}"}}}}}}"#,
                b64("team:pw1"),
                b64("app:pw2"),
                b64("other:pw3")
            ),
        )
        .unwrap();
        std::fs::write(
            &second,
            format!(
                r#"{{"auths":{{"reg:5000":{{"auth":"{}"}},"reg:5000/ops":{{"auth":"{}"}}}}}}"#,
                b64("host:pw4"),
                b64("ops:pw5")
            ),
        )
        .unwrap();
        let creds =
            Credentials::resolve(None, &[first.clone(), second.clone()], "reg:5000").unwrap();
        let user = |repo: &str| match creds.for_repository(repo) {
            (Credential::Basic { username, .. }, _) => username.clone(),
            (other, _) => format!("{other:?}"),
        };
        assert_eq!(user("team/app"), "app");
        assert_eq!(user("team/app/sub"), "app");
        assert_eq!(user("team/web"), "team");
        assert_eq!(user("team"), "team");
        // `teamwork` is not inside `team`.
        assert_eq!(user("teamwork/x"), "host");
        // A later file's namespace key loses to nothing earlier: it is reached.
        assert_eq!(user("ops/x"), "ops");
        assert_eq!(user("elsewhere/x"), "host");
        assert_eq!(creds.for_repository("team/app").1, Some(first.as_path()));
        assert_eq!(creds.for_repository("x/y").1, Some(second.as_path()));
        let secrets = creds.secrets();
        assert!(secrets.contains(&"pw2".to_string()) && secrets.contains(&"pw4".to_string()));
        assert!(!secrets.contains(&"pw3".to_string()));
        // A registry-wide key in an earlier file beats a namespace key in a later one.
        let reversed = Credentials::resolve(None, &[second, first], "reg:5000").unwrap();
        assert!(matches!(
            reversed.for_repository("team/app").0,
            Credential::Basic { username, .. } if username == "host"
        ));
        // An explicit credential wins everywhere.
        let explicit = Credential::IdentityToken(Secret::new("t"));
        let creds =
            Credentials::resolve(Some(&explicit), &[dir.path().join("auth.json")], "reg:5000")
                .unwrap();
        assert_eq!(creds.for_repository("team/app").0, &explicit);
    }

    #[test]
    fn failing_helpers_are_named_but_not_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(&file, r#"{"credsStore":"talext-test-absent"}"#).unwrap();
        let err = from_files(&[file], "reg:5000").unwrap_err();
        let ErrorKind::Config(m) = err else {
            panic!("{err:?}")
        };
        assert!(m.contains("credential helper"), "{m}");
    }
}
