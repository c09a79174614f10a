//! Signatures across the gap: `bundle verify --key` checks, offline, that a signature by the
//! key (and the attestations asked for) covers every image of a bundle, from the signature and
//! attestation tags bundled with it; `bundle push --resign KEY` signs every image again, under
//! the name it was pushed to, with the site's key, so an air-gapped Image Factory or a node's
//! `ImageVerificationConfig` needs that one key only.
//!
//! In a bundle an image and its tags are named by whole references (`registry/repo:tag`), so
//! the signature of `registry/repo:tag` is the image `registry/repo:sha256-HEX.sig`.

use std::path::Path;

use p256::ecdsa::{SigningKey, VerifyingKey};

use super::BundleImage;
use crate::error::{Error, Result};
use crate::oci::layout::Layout;
use crate::registry::{Reference, RegistryClient};
use crate::sign::cosign;
use crate::store::layout::is_signature_tag;
use crate::store::source::Source;

/// Each image's reference and `Ok(())`, or the reason it is not verified.
pub type Verdicts = Vec<(String, std::result::Result<(), String>)>;

/// Whether a bundled image is a signature, attestation or referrers tag of another.
pub fn is_signature_image(image: &BundleImage) -> bool {
    Reference::parse(&image.reference)
        .ok()
        .and_then(|r| r.tag)
        .is_some_and(|t| is_signature_tag(&t))
}

/// For each image of the bundle `layout` (signature tags aside): `Ok(())` when a
/// signature by `key` covers its digest and the `attestations` are there, else the reason.
pub fn verify(
    layout: &Layout,
    images: &[BundleImage],
    key: &VerifyingKey,
    attestations: &[String],
) -> Result<Verdicts> {
    let mut out = Vec::new();
    for image in images.iter().filter(|i| !is_signature_image(i)) {
        let r = Reference::parse(&image.reference)?;
        let src = Source::Layout {
            layout: layout.clone(),
            tag: Some(image.reference.clone()),
            repository: Some(format!("{}/{}", r.registry, r.repository)),
        };
        let mut verdict = cosign::verify_digest(&src, image.digest.as_str(), key)?;
        if verdict.is_ok() {
            verdict = crate::sign::cli::verify_attestations_in(&src, key, attestations)?;
        }
        out.push((image.reference.clone(), verdict));
    }
    Ok(out)
}

/// Sign each pushed image (signature tags aside) under its new name with `key`: the index and
/// each platform manifest, as `talext sign` does. Run after every image and every bundled
/// signature tag is pushed, so the bundled tags do not replace the new signatures.
pub fn resign(
    client: &RegistryClient,
    pushed: &[(BundleImage, String)],
    key: &SigningKey,
    progress: super::Progress,
) -> Result<usize> {
    let mut n = 0;
    for (image, push_to) in pushed.iter().filter(|(i, _)| !is_signature_image(i)) {
        let reference = Reference::parse(push_to)?;
        if reference.registry != client.registry() {
            return Err(Error::internal(format!(
                "`{push_to}` is not in `{}`",
                client.registry()
            )));
        }
        let signed = cosign::sign_image(client, &reference, key, false)?;
        if let Some(root) = signed.first().filter(|s| s.digest != image.digest.as_str()) {
            return Err(Error::internal(format!(
                "`{push_to}` holds `{}`, the bundle `{}`",
                root.digest, image.digest
            )));
        }
        for s in &signed {
            progress(&format!(
                "re-signed `{}` as `{}:{}`",
                s.digest,
                reference.name(),
                s.tag
            ));
        }
        n += signed.len();
    }
    Ok(n)
}

/// `bundle verify --key`: check the bundle at `file` whole, as `verify` does, then every
/// image's signature, read in place from it.
pub fn verify_file(
    file: &Path,
    key: &VerifyingKey,
    attestations: &[String],
) -> Result<(super::Verified, Verdicts)> {
    let verified = super::read::verify(file)?;
    let layout = Layout::in_tar(file)?;
    let verdicts = verify(&layout, &verified.images, key, attestations)?;
    Ok((verified, verdicts))
}
