//! Image references for registries: `docker://host[:port]/repo[:tag][@digest]` and the bare
//! `host/repo:tag` form, normalised the way Docker does (`alpine` is
//! `docker.io/library/alpine:latest`). The grammar and the Docker Hub rules come from
//! `oci_client::Reference` (the distribution/reference port); this type owns its fields so the
//! rest of talext can build and compare references freely.

use std::fmt;
use std::str::FromStr;

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
        let parsed = oci_client::Reference::from_str(bare).map_err(|e| bad(&parse_reason(&e)))?;
        Ok(Reference {
            registry: parsed.registry().to_string(),
            repository: parsed.repository().to_string(),
            tag: parsed.tag().map(str::to_string),
            digest: parsed.digest().map(str::to_string),
        })
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

fn parse_reason(err: &oci_client::ParseError) -> String {
    use oci_client::ParseError as P;
    match err {
        P::DigestInvalidFormat => "the digest is not `algorithm:hex`".into(),
        P::DigestInvalidLength => "the digest has the wrong length for its algorithm".into(),
        P::DigestUnsupported => "the digest algorithm is not supported".into(),
        P::NameContainsUppercase => "repository names must be lower case".into(),
        P::NameEmpty => "the repository name is empty".into(),
        P::NameTooLong => "the repository name is longer than 255 characters".into(),
        P::ReferenceInvalidFormat => "expected `[host[:port]/]repository[:tag][@digest]`".into(),
        P::TagInvalidFormat => "the tag is not valid".into(),
    }
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
