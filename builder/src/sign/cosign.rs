//! Cosign "simple signing" signatures in a registry, the form an Image Factory and
//! `cosign verify --key` accept (sigstore `pkg/signature/payload`, cosign's legacy tag scheme):
//! for an image or index at `sha256:HEX`, the tag `sha256-HEX.sig` in the same repository names
//! an OCI image manifest whose config is `{}` and whose layers are payloads of media type
//! `application/vnd.dev.cosign.simplesigning.v1+json`, each carrying the base64 DER ECDSA
//! signature over the SHA-256 of its bytes in the annotation `dev.cosignproject.cosign/signature`.
//! The payload is the compact JSON
//! `{"critical":{"identity":{"docker-reference":R},"image":{"docker-manifest-digest":D},"type":"cosign container image signature"},"optional":null}`.
//!
//! ECDSA signing uses RFC 6979 nonces, so the same key over the same digest yields the same
//! bytes and a second run leaves the tag as it is.

use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::oci::{self, Digest};
use crate::registry::{BlobSource, Reference, RegistryClient};
use crate::store::source::Source;

/// Media type of a signature payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The config of a signature manifest: an empty JSON object, as cosign writes it.
pub const CONFIG: &[u8] = b"{}";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const MANIFEST_MEDIA_TYPE: &str = crate::oci::MT_OCI_MANIFEST;
/// Payloads and configs of signature manifests are a few hundred bytes; larger ones are refused.
pub const MAX_BLOB: u64 = 1 << 20;

/// The tag cosign stores the signatures of `digest` under: `sha256-HEX.sig`.
pub fn signature_tag(digest: &str) -> Result<String> {
    match digest.split_once(':') {
        Some((alg, hex))
            if !alg.is_empty() && !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(format!("{alg}-{hex}.sig"))
        }
        _ => Err(Error::input(format!("`{digest}` is not a digest"))),
    }
}

/// The simple-signing payload for `digest` of the repository `docker_reference`
/// (`registry/repository`), byte for byte as cosign writes it.
pub fn payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    let s = |v: &str| serde_json::Value::String(v.to_string()).to_string();
    format!(
        "{{\"critical\":{{\"identity\":{{\"docker-reference\":{}}},\"image\":{{\"docker-manifest-digest\":{}}},\"type\":{}}},\"optional\":null}}",
        s(docker_reference),
        s(digest),
        s(PAYLOAD_TYPE)
    )
    .into_bytes()
}

/// The base64 DER ECDSA P-256 signature over SHA-256 of `payload` (deterministic, RFC 6979).
pub fn sign_payload(key: &SigningKey, payload: &[u8]) -> String {
    let sig: Signature = key.sign(payload);
    base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
}

/// Whether `signature` (base64 DER, or the raw 64-byte form) is `key`'s over `payload`.
pub fn signature_verifies(key: &VerifyingKey, payload: &[u8], signature: &str) -> bool {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let sig = Signature::from_der(&bytes).or_else(|_| Signature::from_slice(&bytes));
    sig.is_ok_and(|sig| key.verify(payload, &sig).is_ok())
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: PayloadImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PayloadImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// The digest a payload claims to cover, if it is a cosign image signature payload.
pub fn payload_digest(payload: &[u8]) -> Option<String> {
    let p: Payload = serde_json::from_slice(payload).ok()?;
    (p.critical.kind == PAYLOAD_TYPE).then_some(p.critical.image.digest)
}

/// A signature manifest's layer as JSON, annotations (other signers', bundles) kept.
type Layer = serde_json::Value;

fn layer_for(payload: &[u8], signature: &str) -> Layer {
    json!({
        "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
        "size": payload.len(),
        "digest": Digest::of(payload).to_string(),
        "annotations": {SIGNATURE_ANNOTATION: signature},
    })
}

/// The signature manifest over `layers`, compact and in a fixed key order.
pub fn signature_manifest(layers: &[Layer]) -> Vec<u8> {
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "size": CONFIG.len(),
            "digest": Digest::of(CONFIG).to_string(),
        },
        "layers": layers,
    });
    serde_json::to_vec(&doc).expect("JSON values serialise")
}

fn layers_of(bytes: &[u8]) -> Option<Vec<Layer>> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("layers")?.as_array().cloned()
}

/// What signing one digest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The digest signed.
    pub digest: String,
    /// The signature tag, `sha256-HEX.sig`.
    pub tag: String,
    /// Digest of the signature manifest the tag names.
    pub manifest: String,
    /// `false` when the tag already held this signature and was left alone.
    pub changed: bool,
}

/// A manifest or index to sign, as a descriptor (what a referrer's `subject` names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// The manifest at `reference` and, for an index, each of its children: what `sign` covers.
pub fn resolve(client: &RegistryClient, reference: &Reference) -> Result<Vec<Subject>> {
    let root = client.get_manifest(&reference.repository, reference.tag_or_digest(), &[])?;
    if let Some(d) = reference.digest.as_deref().filter(|d| *d != root.digest) {
        return Err(Error::input(format!(
            "the registry serves `{}` for `{d}`",
            root.digest
        )));
    }
    let mut subjects = vec![Subject {
        digest: root.digest.clone(),
        media_type: root.media_type.clone(),
        size: root.bytes.len() as u64,
    }];
    if oci::is_index_type(&root.media_type) {
        let index: oci::Index = serde_json::from_slice(&root.bytes)
            .map_err(|e| Error::input(format!("index `{}` is not valid: {e}", root.digest)))?;
        for child in index.manifests {
            let d = child.digest.to_string();
            if !subjects.iter().any(|s| s.digest == d) {
                subjects.push(Subject {
                    digest: d,
                    media_type: child.media_type,
                    size: child.size,
                });
            }
        }
    }
    Ok(subjects)
}

/// Sign the image or index at `reference` and, for an index, each platform manifest; with
/// `referrers`, also as OCI 1.1 referrers ([`push_referrer`]).
pub fn sign_image(
    client: &RegistryClient,
    reference: &Reference,
    key: &SigningKey,
    referrers: bool,
) -> Result<Vec<Signed>> {
    let identity = reference.name();
    let repo = &reference.repository;
    let mut signed = Vec::new();
    for subject in resolve(client, reference)? {
        signed.push(sign_digest(client, repo, &identity, &subject.digest, key)?);
        if referrers {
            push_referrer(client, repo, &identity, &subject, key)?;
        }
    }
    Ok(signed)
}

/// Add `key`'s signature over `digest` to its signature tag in `repo`. Signatures by other keys
/// already there are kept (cosign appends a layer per signature); the same signature already
/// there leaves the tag untouched.
pub fn sign_digest(
    client: &RegistryClient,
    repo: &str,
    identity: &str,
    digest: &str,
    key: &SigningKey,
) -> Result<Signed> {
    let tag = signature_tag(digest)?;
    let payload = payload(identity, digest);
    let signature = sign_payload(key, &payload);
    let ours = layer_for(&payload, &signature);
    let mut layers = Vec::new();
    match client.get_manifest(repo, &tag, &[MANIFEST_MEDIA_TYPE]) {
        Ok(existing) => {
            let old = layers_of(&existing.bytes).ok_or_else(|| {
                Error::input(format!(
                    "`{repo}:{tag}` is not a signature manifest; refusing to replace it"
                ))
            })?;
            if old.contains(&ours) {
                tracing::info!("`{repo}:{tag}` already holds this signature");
                return Ok(Signed {
                    digest: digest.to_string(),
                    tag,
                    manifest: existing.digest,
                    changed: false,
                });
            }
            layers = old;
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    layers.push(ours);
    for blob in [CONFIG, payload.as_slice()] {
        let d = Digest::of(blob).to_string();
        client.push_blob(repo, &d, blob.len() as u64, BlobSource::Bytes(blob), None)?;
    }
    let bytes = signature_manifest(&layers);
    let manifest = client.put_manifest(repo, &tag, &bytes, MANIFEST_MEDIA_TYPE)?;
    tracing::info!("signed `{digest}` as `{repo}:{tag}`");
    Ok(Signed {
        digest: digest.to_string(),
        tag,
        manifest,
        changed: true,
    })
}

/// `artifactType` of a signature pushed as a referrer (what cosign's OCI 1.1 mode writes).
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// The empty descriptor's media type and content (image-spec "Guidance for an Empty Descriptor").
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// The referrer manifest carrying `key`'s signature of `subject`.
pub fn referrer_manifest(
    identity: &str,
    subject: &Subject,
    key: &SigningKey,
) -> (Vec<u8>, Vec<u8>) {
    let payload = payload(identity, &subject.digest);
    let layer = layer_for(&payload, &sign_payload(key, &payload));
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": SIGNATURE_ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "size": CONFIG.len(),
            "digest": Digest::of(CONFIG).to_string(),
        },
        "layers": [layer],
        "subject": {
            "mediaType": subject.media_type,
            "size": subject.size,
            "digest": subject.digest,
        },
    });
    (
        serde_json::to_vec(&doc).expect("JSON values serialise"),
        payload,
    )
}

/// The tag of the referrers-tag fallback for `digest`: `sha256-HEX` (distribution spec
/// "Referrers Tag Schema").
pub fn referrers_tag(digest: &str) -> Result<String> {
    Ok(signature_tag(digest)?.trim_end_matches(".sig").to_string())
}

/// Push the signature of `subject` as an OCI 1.1 referrer: a manifest whose `subject` is the
/// signed manifest, pushed by digest. A registry with the referrers API indexes it itself; for
/// one without (Debian's docker-registry 2.8 among them) the referrers index under the tag
/// `sha256-HEX` is updated as the distribution spec tells clients to, keeping the entries of
/// other referrers. Pushing the same signature again changes nothing.
pub fn push_referrer(
    client: &RegistryClient,
    repo: &str,
    identity: &str,
    subject: &Subject,
    key: &SigningKey,
) -> Result<String> {
    let (bytes, payload) = referrer_manifest(identity, subject, key);
    for blob in [CONFIG, payload.as_slice()] {
        let d = Digest::of(blob).to_string();
        client.push_blob(repo, &d, blob.len() as u64, BlobSource::Bytes(blob), None)?;
    }
    let digest = Digest::of(&bytes).to_string();
    client.put_manifest(repo, &digest, &bytes, MANIFEST_MEDIA_TYPE)?;
    let tag = referrers_tag(&subject.digest)?;
    let index_type = crate::oci::MT_OCI_INDEX;
    let mut entries: Vec<serde_json::Value> = match client.get_manifest(repo, &tag, &[index_type]) {
        Ok(existing) => serde_json::from_slice::<serde_json::Value>(&existing.bytes)
            .ok()
            .and_then(|v| v.get("manifests")?.as_array().cloned())
            .ok_or_else(|| {
                Error::input(format!(
                    "`{repo}:{tag}` is not a referrers index; refusing to replace it"
                ))
            })?,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    if entries
        .iter()
        .any(|e| e.get("digest").and_then(|d| d.as_str()) == Some(&digest))
    {
        return Ok(digest);
    }
    entries.push(json!({
        "mediaType": MANIFEST_MEDIA_TYPE,
        "size": bytes.len(),
        "digest": digest,
        "artifactType": SIGNATURE_ARTIFACT_TYPE,
    }));
    let index = json!({
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": entries,
    });
    let index = serde_json::to_vec(&index).expect("JSON values serialise");
    client.put_manifest(repo, &tag, &index, index_type)?;
    tracing::info!("signed `{}` as the referrer `{digest}`", subject.digest);
    Ok(digest)
}

/// Check that a signature by `key` in the signature tag of `digest` covers it, in any store
/// (a registry, an `oci:` layout, an `oci-archive:`). `Ok(Err(reason))` when it does not; `Err`
/// only when the store could not be read.
pub fn verify_digest(
    src: &Source,
    digest: &str,
    key: &VerifyingKey,
) -> Result<std::result::Result<(), String>> {
    let tag = signature_tag(digest)?;
    let Some(manifest) = src.tagged(&tag, MANIFEST_MEDIA_TYPE)? else {
        return Ok(Err(format!("no signature: there is no tag `{tag}`")));
    };
    let Some(layers) = layers_of(&manifest.bytes) else {
        return Ok(Err(format!("`{tag}` is not a signature manifest")));
    };
    let mut checked = 0;
    let mut covers_other = None;
    for layer in &layers {
        let desc: oci::Descriptor = match serde_json::from_value(layer.clone()) {
            Ok(d) => d,
            Err(_) => continue,
        };
        if desc.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
            continue;
        }
        let Some(signature) = desc.annotations.get(SIGNATURE_ANNOTATION) else {
            continue;
        };
        checked += 1;
        if desc.size > MAX_BLOB {
            continue;
        }
        // The payload is checked against the layer digest as it is read.
        let Some(payload) = src.small_blob(&desc, MAX_BLOB)? else {
            continue;
        };
        if !signature_verifies(key, &payload, signature) {
            continue;
        }
        match payload_digest(&payload) {
            Some(d) if d == digest => return Ok(Ok(())),
            Some(d) => covers_other = Some(d),
            None => {}
        }
    }
    Ok(Err(match (covers_other, checked) {
        (Some(other), _) => format!("the signature by this key in `{tag}` covers `{other}`, not this digest"),
        (None, 0) => format!("no signature: `{tag}` holds no simple-signing payload"),
        (None, n) => format!("none of the {n} signature(s) in `{tag}` verifies with this key over an untampered payload"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_cosigns_compact_json() {
        let p = payload("127.0.0.1:5000/ext/tailscale", "sha256:abc");
        assert_eq!(
            String::from_utf8(p.clone()).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/ext/tailscale"},"image":{"docker-manifest-digest":"sha256:abc"},"type":"cosign container image signature"},"optional":null}"#
        );
        assert_eq!(payload_digest(&p).as_deref(), Some("sha256:abc"));
        assert_eq!(signature_tag("sha256:abc").unwrap(), "sha256-abc.sig");
        assert!(signature_tag("latest").is_err());
    }

    #[test]
    fn signatures_are_deterministic_and_bound_to_the_payload() {
        let pair = super::super::keys::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (k, p) = (dir.path().join("k"), dir.path().join("p"));
        super::super::keys::write_pair(&pair, &k, &p).unwrap();
        let key = super::super::keys::load_private(&k, None).unwrap();
        let public = super::super::keys::load_public(&p).unwrap();
        let body = payload("r/x", "sha256:00");
        let sig = sign_payload(&key, &body);
        assert_eq!(sig, sign_payload(&key, &body));
        assert!(signature_verifies(&public, &body, &sig));
        let mut flipped = body.clone();
        flipped[10] ^= 1;
        assert!(!signature_verifies(&public, &flipped, &sig));
        assert_eq!(
            signature_manifest(&[layer_for(&body, &sig)]),
            signature_manifest(&[layer_for(&body, &sig)])
        );
    }
}
