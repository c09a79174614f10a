//! Image references for registries: `docker://host[:port]/repo[:tag][@digest]` and the bare
//! `host/repo:tag` form, normalised the way Docker does (`alpine` is
//! `docker.io/library/alpine:latest`). The grammar, the errors and the Docker Hub rules are
//! those of Go's `github.com/distribution/reference` (`regexp.go`, `reference.go`,
//! `normalize.go`) with go-digest's digest checks, which containerd and Talos use: character
//! classes are ASCII as in Go (`\w` is `[A-Za-z0-9_]`; Rust's would also take Unicode letters,
//! and compiling that class under a bounded repetition costs tens of MiB), a name is at most
//! 255 characters, a reference that only fails for its capitals says so.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use super::error::{ErrorKind, RegistryError};

/// The transport prefix skopeo uses for registries.
pub const DOCKER_TRANSPORT: &str = "docker://";

/// Docker Hub as written in references, and the host its API actually answers on.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A reference to an image (or index) in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host with an optional port, e.g. `ghcr.io` or `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path inside the registry, e.g. `library/alpine`.
    pub repository: String,
    /// Tag, if any. A reference without tag and digest means `latest`.
    pub tag: Option<String>,
    /// Digest `algorithm:hex`, if any; it wins over the tag when fetching.
    pub digest: Option<String>,
}

impl Reference {
    /// Parse `docker://REF` or a bare `REF`.
    pub fn parse(input: &str) -> Result<Self, RegistryError> {
        let bad = |reason: &str| {
            RegistryError::new(
                "",
                "",
                "parse reference",
                ErrorKind::BadReference {
                    input: input.to_string(),
                    reason: reason.to_string(),
                },
            )
        };
        let bare = input.strip_prefix(DOCKER_TRANSPORT).unwrap_or(input);
        if bare.is_empty() {
            return Err(bad("the reference is empty"));
        }
        if bare.contains("://") {
            return Err(bad("only the `docker://` transport names a registry"));
        }
        parse_distribution(bare).map_err(|e| bad(e.reason()))
    }

    /// The tag or digest to ask the registry for: the digest when present, else the tag,
    /// else `latest`.
    pub fn tag_or_digest(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// `registry/repository`, the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository at another digest (tag dropped).
    pub fn with_digest(&self, digest: &str) -> Self {
        Reference {
            digest: Some(digest.to_string()),
            tag: None,
            ..self.clone()
        }
    }
}

/// The host the registry API is served on: Docker Hub's references say `docker.io`, its API
/// lives on `registry-1.docker.io`.
pub fn api_host(registry: &str) -> &str {
    match registry {
        DOCKER_HUB | "index.docker.io" => DOCKER_HUB_API,
        other => other,
    }
}

/// Why distribution/reference refuses a reference (its `Err…` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParseError {
    DigestInvalidFormat,
    DigestInvalidLength,
    DigestUnsupported,
    NameContainsUppercase,
    NameEmpty,
    NameTooLong,
    ReferenceInvalidFormat,
}

impl ParseError {
    fn reason(self) -> &'static str {
        match self {
            ParseError::DigestInvalidFormat => "the digest is not `algorithm:hex`",
            ParseError::DigestInvalidLength => "the digest has the wrong length for its algorithm",
            ParseError::DigestUnsupported => "the digest algorithm is not supported",
            ParseError::NameContainsUppercase => "repository names must be lower case",
            ParseError::NameEmpty => "the repository name is empty",
            ParseError::NameTooLong => "the repository name is longer than 255 characters",
            ParseError::ReferenceInvalidFormat => {
                "expected `[host[:port]/]repository[:tag][@digest]`"
            }
        }
    }
}

/// `ReferenceRegexp` of distribution/reference (`regexp.go`): name (domain, path components),
/// tag, digest, anchored. The domain takes IPv6 literals in brackets too, as there.
fn reference_regexp() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let alnum = "[a-z0-9]+";
        let separator = "(?:[._]|__|[-]+)";
        let path_component = format!("{alnum}(?:{separator}{alnum})*");
        let domain_component = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let domain_name = format!("{domain_component}(?:\\.{domain_component})*");
        let ipv6 = r"\[(?:[a-fA-F0-9:]+)\]";
        let host = format!("(?:{domain_name}|{ipv6})");
        let domain = format!("{host}(?::[0-9]+)?");
        let name = format!("(?:{domain}/)?{path_component}(?:/{path_component})*");
        let tag = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
        let digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
        regex::Regex::new(&format!("^({name})(?::({tag}))?(?:@({digest}))?$"))
            .expect("the reference grammar compiles")
    })
}

/// distribution/reference's `ParseNormalizedNamed`: parse, split off the domain the way
/// Docker does, and check the digest as go-digest does. A reference with neither tag nor
/// digest gets the tag `latest`.
fn parse_distribution(s: &str) -> Result<Reference, ParseError> {
    if s.is_empty() {
        return Err(ParseError::NameEmpty);
    }
    // `ParseNormalizedNamed` refuses a 64-hex string: it is an image ID, not a name.
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ParseError::ReferenceInvalidFormat);
    }
    let Some(caps) = reference_regexp().captures(s) else {
        return Err(if reference_regexp().is_match(&s.to_lowercase()) {
            ParseError::NameContainsUppercase
        } else {
            ParseError::ReferenceInvalidFormat
        });
    };
    let name = &caps[1];
    if name.len() > 255 {
        return Err(ParseError::NameTooLong);
    }
    let digest = caps.get(3).map(|m| m.as_str().to_string());
    let mut tag = caps.get(2).map(|m| m.as_str().to_string());
    if tag.is_none() && digest.is_none() {
        tag = Some("latest".into());
    }
    if let Some(d) = &digest {
        let (algorithm, hex) = d.split_once(':').ok_or(ParseError::DigestInvalidFormat)?;
        let want = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err(ParseError::DigestUnsupported),
        };
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ParseError::DigestInvalidFormat);
        }
        if hex.len() != want {
            return Err(ParseError::DigestInvalidLength);
        }
    }
    let (registry, repository) = split_domain(name);
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

/// distribution/reference's `splitDockerDomain`: the first component is a registry when it has
/// a `.` or a `:`, is `localhost`, or has capitals; else the image is on Docker Hub, whose
/// one-component names live under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = DOCKER_HUB.to_string();
    }
    if domain == DOCKER_HUB && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
}

impl FromStr for Reference {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_short_names_are_normalised() {
        let r = p("alpine");
        assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(api_host(&r.registry), "registry-1.docker.io");
        assert_eq!(
            p("docker://alpine:3.20").to_string(),
            "docker.io/library/alpine:3.20"
        );
        assert_eq!(
            p("siderolabs/tailscale:1.0").to_string(),
            "docker.io/siderolabs/tailscale:1.0"
        );
        assert_eq!(
            p("index.docker.io/library/busybox").to_string(),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn hosts_ports_tags_and_digests() {
        let r = p("docker://127.0.0.1:5000/ext/tailscale:1.2.3");
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.tag.as_deref(),
                r.digest.as_deref()
            ),
            ("127.0.0.1:5000", "ext/tailscale", Some("1.2.3"), None)
        );
        let r = p(&format!("localhost/a/b/c@{D}"));
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.repository, "a/b/c");
        assert_eq!(r.tag, None);
        assert_eq!(r.tag_or_digest(), D);
        let r = p(&format!("ghcr.io/acme/ext:v1@{D}"));
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.tag_or_digest(), D);
        assert_eq!(r.to_string(), format!("ghcr.io/acme/ext:v1@{D}"));
        assert_eq!(p("registry.local:443/x").tag_or_digest(), "latest");
        assert_eq!(p("registry.local:443/x").name(), "registry.local:443/x");
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "ghcr.io/a/b:c",
            "127.0.0.1:5000/x:y",
            "docker.io/library/alpine:latest",
        ] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
    }

    #[test]
    fn the_distribution_grammar_as_go_reads_it() {
        // From distribution/reference's own test tables.
        for (input, registry, repository, tag) in [
            ("test.com:tag", "docker.io", "library/test.com", Some("tag")),
            (
                "test.com:5000",
                "docker.io",
                "library/test.com",
                Some("5000"),
            ),
            ("test:5000/repo", "test:5000", "repo", Some("latest")),
            (
                "lowercase:Uppercase",
                "docker.io",
                "library/lowercase",
                Some("Uppercase"),
            ),
            (
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
                "sub-dom1.foo.com",
                "bar/baz/quux",
                Some("some-long-tag"),
            ),
            (
                "b.gcr.io/test.example.com/my-app:test.example.com",
                "b.gcr.io",
                "test.example.com/my-app",
                Some("test.example.com"),
            ),
            (
                "xn--n3h.com/myimage:xn--n3h.com",
                "xn--n3h.com",
                "myimage",
                Some("xn--n3h.com"),
            ),
            (
                "foo_bar.com:8080",
                "docker.io",
                "library/foo_bar.com",
                Some("8080"),
            ),
            (
                "foo/foo_bar.com:8080",
                "docker.io",
                "foo/foo_bar.com",
                Some("8080"),
            ),
            ("[::1]:5000/ext/a:1", "[::1]:5000", "ext/a", Some("1")),
            ("a--b/c", "docker.io", "a--b/c", Some("latest")),
        ] {
            let r = p(input);
            assert_eq!(
                (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
                (registry, repository, tag),
                "{input}"
            );
        }
        let reason = |s: &str| match *Reference::parse(s).unwrap_err().kind {
            ErrorKind::BadReference { reason, .. } => reason,
            _ => unreachable!(),
        };
        assert_eq!(
            reason("host.example/UPPER:tag"),
            ParseError::NameContainsUppercase.reason()
        );
        // A registry name may have capitals (Go's `splitDockerDomain`); a bare image ID may not
        // stand for a name.
        assert_eq!(p("Registry/a").registry, "Registry");
        assert_eq!(
            reason(&"f".repeat(64)),
            ParseError::ReferenceInvalidFormat.reason()
        );
        assert_eq!(reason("a:é"), ParseError::ReferenceInvalidFormat.reason());
        assert_eq!(
            reason(&format!("a/{}", "b".repeat(260))),
            ParseError::NameTooLong.reason()
        );
        assert_eq!(
            reason(&format!("a/b@sha256:{}", "A".repeat(64))),
            ParseError::DigestInvalidFormat.reason()
        );
        assert_eq!(
            reason(&format!("a/b@sha256:{}", "a".repeat(63))),
            ParseError::DigestInvalidLength.reason()
        );
        assert_eq!(
            reason(&format!("a/b@sha1:{}", "a".repeat(40))),
            ParseError::DigestUnsupported.reason()
        );
    }

    #[test]
    fn bad_inputs_are_refused_with_a_reason() {
        for s in [
            "",
            "docker://",
            "Host.example/UPPER:tag",
            "ghcr.io/a/b@sha256:abc",
            "ghcr.io/a/b@md5:0123456789abcdef0123456789abcdef",
            "ghcr.io/a/b:bad tag",
            "https://ghcr.io/a/b",
            "ghcr.io/a//b",
            "ghcr.io/a/b:",
        ] {
            let err = Reference::parse(s).expect_err(s);
            assert!(
                matches!(*err.kind, ErrorKind::BadReference { .. }),
                "{s}: {err}"
            );
            assert_eq!(err.exit_kind(), crate::ExitKind::User);
            assert!(err.to_string().contains("invalid image reference"), "{err}");
        }
    }
}
