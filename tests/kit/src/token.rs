//! A token service for the reference registry's `auth: token` mode, as Docker Hub, ghcr.io and
//! GitLab run one: a plain-HTTP listener on 127.0.0.1 in a thread that checks Basic credentials
//! (`GET realm?service=…&scope=…`) or a refresh token (`POST` with `grant_type=refresh_token`,
//! the OAuth2 flow identity tokens use) and answers `{"token": …}` with a JWT.
//!
//! What distribution's `registry/auth/token` verifies, and so what the JWT carries: `iss` equal
//! to the configured `issuer`, `aud` equal to the `service`, `exp`/`nbf` around now, an `access`
//! list of `{type, name, actions}` covering the request, and a signature by a key whose
//! certificate chains to `rootcertbundle`; the header names that certificate in `x5c` (base64
//! DER, leaf first). The key is an ECDSA P-256 key (`ES256`, JOSE's fixed-width `r || s`
//! signature), the certificate a self-signed one made by `openssl`, so it is its own root.
//!
//! Every request is recorded (account, scopes, whether it was granted) for the tests to check;
//! the password is not.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::json;

/// How long a token lasts, in seconds (`expires_in`).
pub const TOKEN_LIFETIME: u64 = 300;

/// One request the token service answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// `GET` (Basic credentials or none) or `POST` (refresh token).
    pub method: String,
    /// The account the credentials named (Basic user name, or the refresh token's owner);
    /// `None` for an anonymous request or credentials that did not check out.
    pub account: Option<String>,
    /// The `scope` values asked for.
    pub scopes: Vec<String>,
    /// The `service` value asked for.
    pub service: Option<String>,
    /// Whether a token was issued.
    pub granted: bool,
}

#[derive(Default)]
struct State {
    /// User name and password pairs accepted with Basic authentication.
    users: Vec<(String, String)>,
    /// Refresh tokens accepted with `grant_type=refresh_token`, and their owner.
    refresh_tokens: Vec<(String, String)>,
    requests: Vec<TokenRequest>,
}

/// The running token service; stops when dropped.
pub struct TokenServer {
    /// The `realm` the registry announces: `http://127.0.0.1:PORT/token`.
    pub realm: String,
    /// The registry's `service` name, the JWT's `aud`.
    pub service: String,
    /// The JWT's `iss`.
    pub issuer: String,
    /// The signing certificate (PEM): the registry's `rootcertbundle`.
    pub root_cert: PathBuf,
    addr: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Signer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    service: String,
    issuer: String,
}

impl TokenServer {
    /// Make a signing key and certificate in `dir` and listen on a free loopback port, accepting
    /// `user`:`password`.
    pub fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "token-signer.key",
            "-out",
            "token-signer.crt",
            "-days",
            "2",
            "-subj",
            "/CN=talext test token signer",
        ]);
        openssl(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "token-signer.key",
            "-outform",
            "DER",
            "-out",
            "token-signer.pk8",
        ]);
        openssl(&[
            "x509",
            "-in",
            "token-signer.crt",
            "-outform",
            "DER",
            "-out",
            "token-signer.der",
        ]);
        let pkcs8 = std::fs::read(dir.join("token-signer.pk8")).unwrap();
        let signer = Signer {
            key: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                .expect("an ECDSA P-256 PKCS#8 key"),
            cert_der: std::fs::read(dir.join("token-signer.der")).unwrap(),
            service: "talext-test-registry".into(),
            issuer: "talext-test-token-service".into(),
        };

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token service");
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State {
            users: vec![(user.into(), password.into())],
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (service, issuer) = (signer.service.clone(), signer.issuer.clone());
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            let signer = Arc::new(signer);
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, signer) = (state.clone(), signer.clone());
                    std::thread::spawn(move || {
                        let _ = serve(conn, &signer, &state);
                    });
                }
            })
        };
        TokenServer {
            realm: format!("http://{addr}/token"),
            service,
            issuer,
            root_cert: dir.join("token-signer.crt"),
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// Also accept `token` as a refresh token of `account` (`grant_type=refresh_token`).
    pub fn allow_refresh_token(&self, token: &str, account: &str) {
        self.state
            .lock()
            .unwrap()
            .refresh_tokens
            .push((token.into(), account.into()));
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Seconds since the epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Signer {
    /// A JWT for `account` granting every action asked for in `scopes`
    /// (`type:name:action[,action…]`).
    fn token(&self, account: &str, scopes: &[String]) -> String {
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|scope| {
                let (kind, rest) = scope.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
                Some(json!({"type": kind, "name": name, "actions": actions}))
            })
            .collect();
        let now = now();
        let header = json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [STANDARD.encode(&self.cert_der)],
        });
        let claims = json!({
            "iss": self.issuer,
            "sub": account,
            "aud": self.service,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("{now}-{}", rand_u64()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .expect("sign the token");
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).expect("random bytes");
    u64::from_le_bytes(bytes)
}

/// The user name and password of a `Basic` authorization header.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(value.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn serve(conn: TcpStream, signer: &Signer, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (mut authorization, mut length) = (None, 0usize);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim().to_string();
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value);
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap_or(0).min(1 << 20);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;

    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let form: Vec<(String, String)> = if method == "POST" {
        form_urlencoded::parse(&body).into_owned().collect()
    } else {
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    };
    let field = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    // A POST carries its scopes space-separated in one field; a GET may repeat `scope`.
    let scopes: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let service = field("service");

    let account = {
        let st = state.lock().unwrap();
        match method.as_str() {
            "GET" => authorization
                .as_deref()
                .and_then(basic_credentials)
                .filter(|(u, p)| st.users.iter().any(|(uu, pp)| uu == u && pp == p))
                .map(|(u, _)| u),
            "POST" if field("grant_type").as_deref() == Some("refresh_token") => {
                field("refresh_token").and_then(|t| {
                    st.refresh_tokens
                        .iter()
                        .find(|(tok, _)| *tok == t)
                        .map(|(_, owner)| owner.clone())
                })
            }
            _ => None,
        }
    };
    let wrong_service = service.as_deref().is_some_and(|s| s != signer.service);
    let granted = path == "/token" && account.is_some() && !wrong_service;
    state.lock().unwrap().requests.push(TokenRequest {
        method,
        account: account.clone(),
        scopes: scopes.clone(),
        service,
        granted,
    });

    let (status, body) = if granted {
        let token = signer.token(account.as_deref().unwrap_or(""), &scopes);
        let body = json!({
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_LIFETIME,
        });
        ("200 OK", body.to_string())
    } else {
        (
            "401 Unauthorized",
            json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
                .to_string(),
        )
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}
