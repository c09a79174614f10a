//! Cosign-compatible signing: key pairs and cosign's own key files ([`keys`]), simple-signing
//! signatures pushed as `sha256-HEX.sig` tags and checked against a public key ([`cosign`]),
//! signatures that the one transfer carries along with their images (`crate::transfer`), and
//! the `key`, `sign` and `verify` commands ([`cli`]). An air-gapped Image Factory with
//! `containerSignature.publicKeyFile` accepts what this module writes.

pub mod attest;
pub mod cli;
pub mod cosign;
pub mod keys;
pub mod policy;
