//! How talext reaches a registry: the HTTP client with the system trust roots plus `--ca-file`
//! and the `certs.d` conventions of containers/image (`/etc/containers/certs.d/<host>/`) and
//! Docker (`/etc/docker/certs.d/<host>/`): `*.crt` are CAs, `*.cert` + `*.key` a client
//! certificate. Also the policy for plain HTTP: it is used only for loopback registries (as
//! Docker treats `127.0.0.0/8`) or when `--insecure` is given, and credentials never travel over
//! plain HTTP to a host that is not loopback unless `--insecure` accepts that risk.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::ErrorKind;

/// Where `certs.d` directories are looked up by default.
pub const DEFAULT_CERTS_D: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// Whether `host` (with an optional port, IPv6 in brackets) is a loopback address or `localhost`.
pub fn is_loopback(host: &str) -> bool {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host,
        }
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// Whether talext may fall back to plain HTTP for `host`.
pub fn plain_http_allowed(host: &str, insecure: bool) -> bool {
    insecure || is_loopback(host)
}

/// Whether credentials may be sent to `host` over `scheme`.
pub fn credentials_allowed(scheme: Scheme, host: &str, insecure: bool) -> bool {
    scheme == Scheme::Https || insecure || is_loopback(host)
}

/// Files found in the `certs.d` directory of one host.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CertsD {
    /// `*.crt`: extra trusted CAs.
    pub cas: Vec<PathBuf>,
    /// `*.cert` with the `*.key` of the same stem: a client certificate.
    pub identities: Vec<(PathBuf, PathBuf)>,
}

/// Look up `<root>/<host>/` under each root, in order. Missing directories are not an error.
pub fn certs_d(roots: &[PathBuf], host: &str) -> Result<CertsD, ErrorKind> {
    let mut found = CertsD::default();
    for root in roots {
        let dir = root.join(host);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ErrorKind::Io { path: dir, source }),
        };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for path in names {
            match path.extension().and_then(|e| e.to_str()) {
                Some("crt") => found.cas.push(path),
                Some("cert") => {
                    let key = path.with_extension("key");
                    if !key.is_file() {
                        return Err(ErrorKind::Config(format!(
                            "client certificate `{}` has no key `{}`",
                            path.display(),
                            key.display()
                        )));
                    }
                    found.identities.push((path, key));
                }
                Some("key") if !path.with_extension("cert").is_file() => {
                    return Err(ErrorKind::Config(format!(
                        "client key `{}` has no certificate `{}`",
                        path.display(),
                        path.with_extension("cert").display()
                    )));
                }
                _ => {}
            }
        }
    }
    Ok(found)
}

/// TLS and connection settings for one registry host.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    pub ca_files: Vec<PathBuf>,
    pub certs_d_roots: Vec<PathBuf>,
    pub insecure: bool,
}

fn read(path: &Path) -> Result<Vec<u8>, ErrorKind> {
    std::fs::read(path).map_err(|source| ErrorKind::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The two HTTP clients of one registry host, configured alike: the blocking one for every
/// request, and an async one that only carries streamed upload bodies (see `stream.rs`).
pub struct HttpClients {
    pub blocking: reqwest::blocking::Client,
    pub streaming: reqwest::Client,
}

/// The TLS side of a client, worked out once and applied to both.
enum TlsSetup {
    /// `--insecure`: no certificate checks, the `certs.d` client certificate if any.
    Insecure(Option<reqwest::Identity>),
    /// System roots plus the configured CAs, with the verifier of `tls.rs`.
    Verified(Box<rustls::ClientConfig>),
}

/// The settings both clients share, on either kind of builder (their methods have the same
/// names and meanings).
macro_rules! configure {
    ($builder:expr, $setup:expr) => {{
        let builder = $builder
            .user_agent(concat!("talext/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .tcp_keepalive(Duration::from_secs(30));
        match $setup {
            TlsSetup::Insecure(identity) => {
                let builder = builder.tls_danger_accept_invalid_certs(true);
                match identity {
                    Some(identity) => builder.identity(identity.clone()),
                    None => builder,
                }
            }
            TlsSetup::Verified(config) => builder.tls_backend_preconfigured((**config).clone()),
        }
    }};
}

/// Build the HTTP clients for `host`: system roots plus the configured CAs (a configured
/// certificate is also accepted as the server's own, see `tls.rs`), the host's client
/// certificate if `certs.d` has one, certificate checks off only with `--insecure`. No wait
/// for the next bytes of an answer (headers, or each read of a body) lasts longer than `wait`,
/// and a connection whose sent data stays unacknowledged that long is dropped.
///
/// Redirects are followed (blob `GET`s are redirected to storage) with reqwest's default
/// policy, which removes `Authorization` (and cookies) whenever the next URL differs in scheme,
/// host or port.
pub fn http_client(
    tls: &TlsSettings,
    host: &str,
    wait: Duration,
) -> Result<HttpClients, ErrorKind> {
    let found = certs_d(&tls.certs_d_roots, host)?;
    let identity = found.identities.first();
    super::tls::provider();
    let setup = if tls.insecure {
        let identity = match identity {
            Some((cert, key)) => {
                let mut pem = read(cert)?;
                pem.push(b'\n');
                pem.extend(read(key)?);
                Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
                    ErrorKind::Config(format!("client certificate `{}`: {e}", cert.display()))
                })?)
            }
            None => None,
        };
        TlsSetup::Insecure(identity)
    } else {
        let mut roots = Vec::new();
        for path in tls.ca_files.iter().chain(&found.cas) {
            let what = path.display().to_string();
            roots.extend(super::tls::pem_certificates(&read(path)?, &what)?);
        }
        let identity = match identity {
            Some((cert, key)) => Some(super::tls::ClientIdentity {
                chain: super::tls::pem_certificates(&read(cert)?, &cert.display().to_string())?,
                key: super::tls::pem_key(&read(key)?, &key.display().to_string())?,
            }),
            None => None,
        };
        TlsSetup::Verified(Box::new(super::tls::client_config(roots, identity, host)?))
    };
    let failed = |e: reqwest::Error| {
        ErrorKind::Config(format!("cannot set up HTTP for `{host}`: {}", chain(&e)))
    };
    let blocking = configure!(reqwest::blocking::Client::builder(), &setup)
        // For the blocking client this bounds each wait, not the request: a blob transfer can
        // take long as long as bytes keep coming. Requests that must finish within a time set
        // their own timeout (uploads set a longer one).
        .timeout(wait)
        .tcp_user_timeout(wait)
        .build()
        .map_err(failed)?;
    // The async client's read timeout would run from the start of the request, through the
    // whole body: an upload is bounded instead by its own deadline, like the blocking client's
    // uploads, and by `tcp_user_timeout` while bytes are unacknowledged.
    let streaming = configure!(reqwest::Client::builder(), &setup)
        .tcp_user_timeout(wait)
        .build()
        .map_err(failed)?;
    Ok(HttpClients {
        blocking,
        streaming,
    })
}

/// An error and its causes on one line, as `a: b: c`, without URLs.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The last cause of an error, the one that says what happened (`Connection refused (os error
/// 111)`, `failed to lookup address information: Name or service not known`).
pub fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err;
    while let Some(cause) = last.source() {
        last = cause;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.3.4.5:1",
            "localhost",
            "LOCALHOST:80",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "10.0.0.1:5000",
            "registry.local",
            "ghcr.io",
            "[2001:db8::1]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn credentials_over_plain_http_only_to_loopback_unless_insecure() {
        assert!(credentials_allowed(Scheme::Https, "ghcr.io", false));
        assert!(credentials_allowed(Scheme::Http, "127.0.0.1:5000", false));
        assert!(credentials_allowed(Scheme::Http, "localhost:5000", false));
        assert!(!credentials_allowed(
            Scheme::Http,
            "registry.lan:5000",
            false
        ));
        assert!(!credentials_allowed(Scheme::Http, "10.1.2.3", false));
        assert!(credentials_allowed(Scheme::Http, "registry.lan:5000", true));
        assert!(!plain_http_allowed("registry.lan:5000", false));
        assert!(plain_http_allowed("registry.lan:5000", true));
        assert!(plain_http_allowed("127.0.0.1:5000", false));
    }

    #[test]
    fn certs_d_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir_all(a.join("reg:5000")).unwrap();
        std::fs::create_dir_all(b.join("reg:5000")).unwrap();
        std::fs::write(a.join("reg:5000/ca.crt"), "x").unwrap();
        std::fs::write(a.join("reg:5000/notes.txt"), "x").unwrap();
        std::fs::write(b.join("reg:5000/client.cert"), "x").unwrap();
        std::fs::write(b.join("reg:5000/client.key"), "x").unwrap();
        let found = certs_d(
            &[a.clone(), b.clone(), dir.path().join("missing")],
            "reg:5000",
        )
        .unwrap();
        assert_eq!(found.cas, vec![a.join("reg:5000/ca.crt")]);
        assert_eq!(
            found.identities,
            vec![(
                b.join("reg:5000/client.cert"),
                b.join("reg:5000/client.key")
            )]
        );
        assert_eq!(
            certs_d(std::slice::from_ref(&a), "other").unwrap(),
            CertsD::default()
        );
        std::fs::write(a.join("reg:5000/lonely.key"), "x").unwrap();
        assert!(matches!(
            certs_d(&[a], "reg:5000"),
            Err(ErrorKind::Config(_))
        ));
    }
}
