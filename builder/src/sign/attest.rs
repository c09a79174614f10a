//! Cosign attestations: an in-toto statement about an image (its SPDX SBOM, its SLSA
//! provenance) in a DSSE envelope signed with the same key as the image, stored the way
//! `cosign attest --key` stores it without a transparency log: the tag `sha256-HEX.att` names
//! an OCI manifest whose layers are envelopes of media type `application/vnd.dsse.envelope.v1+json`,
//! each annotated with its `predicateType`.
//!
//! The envelope follows the DSSE protocol (secure-systems-lab/dsse `protocol.md`): the signature
//! is over the pre-authentication encoding `DSSEv1 <len type> <type> <len body> <body>` of the
//! payload type `application/vnd.in-toto+json` and the statement; the statement is in-toto v1
//! (`_type` `https://in-toto.io/Statement/v1`, `subject` = the image's repository and digest).
//! ECDSA with RFC 6979 nonces makes an attestation of the same statement with the same key the
//! same bytes, so attesting again leaves the tag alone.

use base64::Engine as _;
use p256::ecdsa::{SigningKey, VerifyingKey};
use serde_json::{json, Value};

use super::cosign::{self, sign_payload, signature_verifies, CONFIG, MANIFEST_MEDIA_TYPE};
use crate::error::{Error, Result};
use crate::oci::Digest;
use crate::registry::{BlobSource, RegistryClient};
use crate::store::source::Source;

pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The layer annotation naming the statement's predicate type (what `cosign verify-attestation
/// --type` selects on).
pub const PREDICATE_ANNOTATION: &str = "predicateType";
pub const SPDX_PREDICATE: &str = "https://spdx.dev/Document";
pub const SLSA_PREDICATE: &str = "https://slsa.dev/provenance/v1";
/// Envelopes hold whole SBOMs: larger than signature payloads, still bounded.
pub const MAX_ENVELOPE: u64 = 64 << 20;

/// `--type` names for the predicate types talext writes; anything else is taken as a URI.
pub fn predicate_type(name: &str) -> String {
    match name {
        "sbom" | "spdx" | "spdxjson" => SPDX_PREDICATE.into(),
        "provenance" | "slsaprovenance" | "slsaprovenance1" => SLSA_PREDICATE.into(),
        other => other.into(),
    }
}

/// The attestation tag of `digest`: `sha256-HEX.att`.
pub fn attestation_tag(digest: &str) -> Result<String> {
    Ok(format!(
        "{}.att",
        cosign::signature_tag(digest)?.trim_end_matches(".sig")
    ))
}

/// DSSE's pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An in-toto v1 statement about `name@digest`.
pub fn statement(
    name: &str,
    digest: &str,
    predicate_type: &str,
    predicate: Value,
) -> Result<Vec<u8>> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| Error::input(format!("`{digest}` is not a digest")))?;
    let doc = json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {alg: hex}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    });
    Ok(serde_json::to_vec(&doc).expect("JSON values serialise"))
}

/// The signed envelope of `statement`.
pub fn envelope(key: &SigningKey, statement: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let sig = sign_payload(key, &pae(IN_TOTO_PAYLOAD_TYPE, statement));
    let doc = json!({
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "payload": b64.encode(statement),
        "signatures": [{"keyid": "", "sig": sig}],
    });
    serde_json::to_vec(&doc).expect("JSON values serialise")
}

fn layer(envelope: &[u8], predicate_type: &str) -> Value {
    json!({
        "mediaType": DSSE_MEDIA_TYPE,
        "size": envelope.len(),
        "digest": Digest::of(envelope).to_string(),
        "annotations": {
            cosign::SIGNATURE_ANNOTATION: "",
            PREDICATE_ANNOTATION: predicate_type,
        },
    })
}

/// What attesting one digest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    pub digest: String,
    pub tag: String,
    pub predicate_type: String,
    /// `false` when the tag already held this attestation.
    pub changed: bool,
}

/// Attach a signed statement about `digest` (in `repo`, named `identity`) to its `.att` tag.
/// Attestations already there (other predicates, other keys) are kept.
pub fn attest_digest(
    client: &RegistryClient,
    repo: &str,
    identity: &str,
    digest: &str,
    predicate_type: &str,
    predicate: Value,
    key: &SigningKey,
) -> Result<Attested> {
    let tag = attestation_tag(digest)?;
    let env = envelope(
        key,
        &statement(identity, digest, predicate_type, predicate)?,
    );
    let ours = layer(&env, predicate_type);
    let mut layers: Vec<Value> = Vec::new();
    match client.get_manifest(repo, &tag, &[MANIFEST_MEDIA_TYPE]) {
        Ok(existing) => {
            let v: Value = serde_json::from_slice(&existing.bytes).map_err(|_| {
                Error::input(format!(
                    "`{repo}:{tag}` is not an attestation manifest; refusing to replace it"
                ))
            })?;
            layers = v["layers"].as_array().cloned().ok_or_else(|| {
                Error::input(format!(
                    "`{repo}:{tag}` is not an attestation manifest; refusing to replace it"
                ))
            })?;
            if layers.contains(&ours) {
                return Ok(Attested {
                    digest: digest.into(),
                    tag,
                    predicate_type: predicate_type.into(),
                    changed: false,
                });
            }
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    layers.push(ours);
    for blob in [CONFIG, env.as_slice()] {
        let d = Digest::of(blob).to_string();
        client.push_blob(repo, &d, blob.len() as u64, BlobSource::Bytes(blob), None)?;
    }
    client.put_manifest(
        repo,
        &tag,
        &cosign::signature_manifest(&layers),
        MANIFEST_MEDIA_TYPE,
    )?;
    tracing::info!("attested `{digest}` ({predicate_type}) as `{repo}:{tag}`");
    Ok(Attested {
        digest: digest.into(),
        tag,
        predicate_type: predicate_type.into(),
        changed: true,
    })
}

/// Check that an attestation of `predicate_type` about `digest`, signed by `key`, is in the
/// store. Returns its predicate; `Ok(Err(reason))` when there is none.
pub fn verify_attestation(
    src: &Source,
    digest: &str,
    predicate_type: &str,
    key: &VerifyingKey,
) -> Result<std::result::Result<Value, String>> {
    let tag = attestation_tag(digest)?;
    let Some(manifest) = src.tagged(&tag, MANIFEST_MEDIA_TYPE)? else {
        return Ok(Err(format!("no attestation: there is no tag `{tag}`")));
    };
    let v: Value = serde_json::from_slice(&manifest.bytes).unwrap_or(Value::Null);
    let Some(layers) = v["layers"].as_array() else {
        return Ok(Err(format!("`{tag}` is not an attestation manifest")));
    };
    let (b64, hex) = (
        base64::engine::general_purpose::STANDARD,
        digest.split_once(':').map(|(_, h)| h).unwrap_or(digest),
    );
    let mut of_type = 0;
    for l in layers {
        let Ok(desc) = serde_json::from_value::<crate::oci::Descriptor>(l.clone()) else {
            continue;
        };
        if desc.media_type != DSSE_MEDIA_TYPE
            || desc
                .annotations
                .get(PREDICATE_ANNOTATION)
                .map(String::as_str)
                != Some(predicate_type)
        {
            continue;
        }
        of_type += 1;
        let Some(bytes) = src.small_blob(&desc, MAX_ENVELOPE)? else {
            continue;
        };
        let Ok(env) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let Some(payload) = env["payload"].as_str().and_then(|p| b64.decode(p).ok()) else {
            continue;
        };
        let payload_type = env["payloadType"].as_str().unwrap_or_default();
        let signed = env["signatures"].as_array().is_some_and(|sigs| {
            sigs.iter().any(|s| {
                s["sig"]
                    .as_str()
                    .is_some_and(|sig| signature_verifies(key, &pae(payload_type, &payload), sig))
            })
        });
        if !signed || payload_type != IN_TOTO_PAYLOAD_TYPE {
            continue;
        }
        let Ok(st) = serde_json::from_slice::<Value>(&payload) else {
            continue;
        };
        let about = st["subject"].as_array().is_some_and(|subjects| {
            subjects
                .iter()
                .any(|s| s["digest"]["sha256"].as_str() == Some(hex))
        });
        if about && st["predicateType"].as_str() == Some(predicate_type) {
            return Ok(Ok(st["predicate"].clone()));
        }
    }
    Ok(Err(match of_type {
        0 => format!("no `{predicate_type}` attestation in `{tag}`"),
        n => format!("none of the {n} `{predicate_type}` attestation(s) in `{tag}` is signed by this key over this digest"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_and_tags() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(attestation_tag("sha256:ab").unwrap(), "sha256-ab.att");
        assert_eq!(predicate_type("sbom"), SPDX_PREDICATE);
        assert_eq!(predicate_type("https://x/y"), "https://x/y");
    }

    #[test]
    fn envelopes_verify_and_are_deterministic() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let st = statement("r/x", "sha256:ab", SPDX_PREDICATE, json!({"a": 1})).unwrap();
        let a = envelope(&key, &st);
        assert_eq!(a, envelope(&key, &st));
        let env: Value = serde_json::from_slice(&a).unwrap();
        let sig = env["signatures"][0]["sig"].as_str().unwrap();
        assert!(signature_verifies(
            key.verifying_key(),
            &pae(IN_TOTO_PAYLOAD_TYPE, &st),
            sig
        ));
        assert!(!signature_verifies(
            key.verifying_key(),
            &pae(IN_TOTO_PAYLOAD_TYPE, b"x"),
            sig
        ));
    }
}
