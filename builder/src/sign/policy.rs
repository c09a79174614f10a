//! The verifier side of signing, rendered for the two Go programs that check signatures: the
//! Image Factory's `containerSignature` settings (`image-factory:docs/configuration.md`:
//! `publicKeyFile`, `publicKeyHashAlgo`, and `subjectRegExp: ""` to drop the keyless check,
//! which cannot work offline) and Talos's `ImageVerificationConfig` (v1.13+,
//! `pkg/machinery/config/types/security/image_verification.go` at v1.13.0: `rules[]` of
//! `image` glob + `publicKey.certificate`, the PEM key, which
//! `internal/pkg/containers/image/verify/verify.go` reads with `UnmarshalPEMToPublicKey`).
//!
//! Talos matches a rule's `image` with `go-glob` against the go-containerregistry name of the
//! image's repository (`pkg/machinery/resources/security/image_verification_rule.go` at
//! v1.13.0, `inRef.Context().String()`), which spells Docker Hub `index.docker.io` and adds
//! `library/` to one-component names: [`talos_repository`] writes patterns in that form, so a
//! rule for `docker.io/acme/tailscale` matches at all.

use crate::error::{Error, Result};
use crate::goyaml::{self, GoValue};
use crate::release::{config, Minor};

fn map(entries: Vec<(&str, GoValue)>) -> GoValue {
    GoValue::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// The Image Factory configuration (YAML, one of its `--config` sources) that verifies every
/// pulled image against the public key at `key_path` (the path inside the factory's
/// container), with `registry` as the core registry when given.
pub fn factory_config(
    key_path: &str,
    registry: Option<&str>,
    insecure: bool,
    extension_manifest: Option<&str>,
) -> String {
    let mut top = vec![(
        "containerSignature",
        map(vec![
            ("publicKeyFile", GoValue::str(key_path)),
            ("publicKeyHashAlgo", GoValue::str("sha256")),
            // Empty disables the keyless (Sigstore) identity check, which needs the network.
            ("subjectRegExp", GoValue::str("")),
        ]),
    )];
    if registry.is_some() || extension_manifest.is_some() {
        let mut core = Vec::new();
        if let Some(r) = registry {
            core.push(("registry", GoValue::str(r)));
        }
        if let Some(m) = extension_manifest {
            core.push((
                "components",
                map(vec![("extensionManifest", GoValue::str(m))]),
            ));
        }
        if insecure {
            core.push(("insecure", GoValue::Bool(true)));
        }
        top.push(("artifacts", map(vec![("core", map(core))])));
    }
    goyaml::marshal(&map(top), 2)
}

/// A repository (or glob) as Talos's rule matcher sees it: no tag or digest, Docker Hub as
/// `index.docker.io`, its one-component names under `library/`.
pub fn talos_repository(image: &str) -> Result<String> {
    let image = image.trim().trim_start_matches("docker://");
    let image = image.split('@').next().unwrap_or_default();
    // A tag is a `:` after the last `/`.
    let image = match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    };
    if image.is_empty() {
        return Err(Error::input("an empty image pattern"));
    }
    let (first, rest) = image.split_once('/').unwrap_or(("", image));
    let is_host = first.contains('.') || first.contains(':') || first == "localhost";
    Ok(match (is_host, first) {
        (true, "docker.io" | "index.docker.io" | "registry-1.docker.io") => {
            if rest.contains('/') || rest.contains('*') {
                format!("index.docker.io/{rest}")
            } else {
                format!("index.docker.io/library/{rest}")
            }
        }
        (true, _) => image.to_string(),
        (false, _) if image.contains('/') => format!("index.docker.io/{image}"),
        (false, _) => format!("index.docker.io/library/{image}"),
    })
}

/// An `ImageVerificationConfig` requiring `public_key_pem` for each image pattern, for the
/// Talos release `talos_version` (refused before v1.13, which has no such document).
pub fn image_verification_config(
    images: &[String],
    public_key_pem: &str,
    talos_version: &str,
) -> Result<String> {
    let doc = config::document("ImageVerificationConfig")
        .ok_or_else(|| Error::internal("ImageVerificationConfig is in the release table"))?;
    let minor = Minor::of(talos_version).ok_or_else(|| {
        Error::input(format!(
            "`{talos_version}` is not a Talos version (`vX.Y.Z`)"
        ))
    })?;
    if minor < doc.since {
        return Err(Error::input_hint(
            format!(
                "Talos {talos_version} has no `ImageVerificationConfig` (it arrived in {}, {}:{})",
                doc.since,
                doc.source.path,
                doc.source.tag
            ),
            "nodes before v1.13 do not verify image signatures; verify before the image reaches them (`talext verify`, `--require-signature`)",
        ));
    }
    if images.is_empty() {
        return Err(Error::input(
            "give at least one `--image` to require the key for",
        ));
    }
    let mut rules = Vec::new();
    for image in images {
        rules.push(map(vec![
            ("image", GoValue::str(talos_repository(image)?)),
            (
                "publicKey",
                map(vec![("certificate", GoValue::str(public_key_pem))]),
            ),
        ]));
    }
    Ok(goyaml::marshal(
        &map(vec![
            ("apiVersion", GoValue::str(doc.api_version)),
            ("kind", GoValue::str(doc.kind)),
            ("rules", GoValue::Seq(rules)),
        ]),
        2,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_spelt_as_go_containerregistry_names_them() {
        for (given, want) in [
            (
                "docker.io/acme/tailscale:1.0",
                "index.docker.io/acme/tailscale",
            ),
            ("acme/tailscale", "index.docker.io/acme/tailscale"),
            ("nginx", "index.docker.io/library/nginx"),
            ("docker.io/nginx@sha256:ab", "index.docker.io/library/nginx"),
            (
                "registry.local:5000/ext/tailscale:v1",
                "registry.local:5000/ext/tailscale",
            ),
            ("docker://ghcr.io/acme/*", "ghcr.io/acme/*"),
            ("localhost/x", "localhost/x"),
        ] {
            assert_eq!(talos_repository(given).unwrap(), want, "{given}");
        }
    }

    #[test]
    fn documents_name_the_key_and_the_repository() {
        let pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n";
        let doc =
            image_verification_config(&["site:5000/ext/tailscale".into()], pem, "v1.13.0").unwrap();
        assert!(
            doc.starts_with("apiVersion: v1alpha1\nkind: ImageVerificationConfig\nrules:\n"),
            "{doc}"
        );
        assert!(doc.contains("  - image: site:5000/ext/tailscale\n    publicKey:\n      certificate: |\n        -----BEGIN PUBLIC KEY-----\n"), "{doc}");
        assert!(image_verification_config(&["x/y".into()], pem, "v1.12.5")
            .unwrap_err()
            .to_string()
            .contains("v1.13"));
        let f = factory_config("/keys/site.pub", Some("site:5000"), true, None);
        assert_eq!(f, "containerSignature:\n  publicKeyFile: /keys/site.pub\n  publicKeyHashAlgo: sha256\n  subjectRegExp: \"\"\nartifacts:\n  core:\n    registry: site:5000\n    insecure: true\n");
    }
}
