//! The TLS client configuration for verified registry connections: the platform's trust roots
//! (as reqwest would use them) plus the `--ca-file` and `certs.d` CAs, and a client certificate
//! from `certs.d`. One addition: a server certificate that is byte for byte one of those
//! configured certificates is accepted even when it is a CA. `openssl req -x509` makes such
//! certificates (`basicConstraints=critical,CA:TRUE`), and Go's `crypto/x509` (skopeo, podman,
//! containerd) accepts them when they are in the root pool, while webpki refuses any CA as an end
//! entity (`CaUsedAsEndEntity`). Only that refusal is overridden, only for an exact match with a
//! certificate the user gave, and the host name is still checked; every other certificate goes
//! through the platform verifier unchanged.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::error::ErrorKind;

/// A client certificate and its key (PEM from `certs.d`).
pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// The process's crypto provider, installed on first use: *ring*, whose randomness comes from
/// the kernel (`getrandom`). aws-lc-rs, reqwest's default, seeds its generator with CPU jitter
/// entropy first, which cost about 50 ms of CPU in every run that opened a connection (even a
/// plain-HTTP one, whose HTTPS probe comes first). reqwest's own configuration (`--insecure`)
/// takes the installed provider too.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    if let Some(p) = rustls::crypto::CryptoProvider::get_default() {
        return p.clone();
    }
    // Another thread may install it first; either way one provider is the default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// The rustls configuration for `host` trusting the platform roots and `extra` CAs.
pub fn client_config(
    extra: Vec<CertificateDer<'static>>,
    identity: Option<ClientIdentity>,
    host: &str,
) -> Result<rustls::ClientConfig, ErrorKind> {
    let setup =
        |e: rustls::Error| ErrorKind::Config(format!("cannot set up TLS for `{host}`: {e}"));
    let provider = provider();
    let verifier = Arc::new(ConfiguredOrPlatform {
        platform: std::sync::OnceLock::new(),
        provider: provider.clone(),
        configured: extra,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(setup)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(setup)?,
        None => builder.with_no_client_auth(),
    };
    // reqwest is built without HTTP/2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Every certificate of a PEM bundle; `what` names the file in messages.
pub fn pem_certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, ErrorKind> {
    use rustls::pki_types::pem::PemObject as _;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ErrorKind::Config(format!("`{what}` is not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(ErrorKind::Config(format!(
            "`{what}` holds no PEM certificate"
        )));
    }
    Ok(certs)
}

/// A PEM private key; `what` names the file in messages, never its content.
pub fn pem_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, ErrorKind> {
    use rustls::pki_types::pem::PemObject as _;
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| ErrorKind::Config(format!("`{what}` holds no usable PEM private key: {e}")))
}

/// The platform verifier, and the certificates the user configured, which are also accepted as
/// the server's own certificate when webpki refuses them only for being CAs. The platform's
/// roots are loaded when a server's certificate is first checked, not when the client is made:
/// a run that talks plain HTTP to a loopback registry (whose HTTPS probe fails before any
/// certificate) never reads the few hundred files of the system store. Handshake signatures
/// are checked with the provider's algorithms, as the platform verifier itself does on Linux.
#[derive(Debug)]
struct ConfiguredOrPlatform {
    platform: std::sync::OnceLock<Result<rustls_platform_verifier::Verifier, rustls::Error>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    configured: Vec<CertificateDer<'static>>,
}

impl ConfiguredOrPlatform {
    fn platform(&self) -> Result<&rustls_platform_verifier::Verifier, rustls::Error> {
        self.platform
            .get_or_init(|| {
                let provider = self.provider.clone();
                if self.configured.is_empty() {
                    rustls_platform_verifier::Verifier::new(provider)
                } else {
                    rustls_platform_verifier::Verifier::new_with_extra_roots(
                        self.configured.clone(),
                        provider,
                    )
                }
            })
            .as_ref()
            .map_err(|e| {
                rustls::Error::General(format!("cannot load the trusted certificates: {e}"))
            })
    }
}

/// Whether rustls refused the certificate for being a CA used as an end entity. webpki checks
/// the validity period before the basic constraints (`check_issuer_independent_properties`), so
/// this refusal also says the certificate is within its validity period.
fn is_ca_used_as_end_entity(err: &rustls::Error) -> bool {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}

impl ServerCertVerifier for ConfiguredOrPlatform {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.platform()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(err)
                if is_ca_used_as_end_entity(&err)
                    && self
                        .configured
                        .iter()
                        .any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
                    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
                })?;
                cert.verify_is_valid_for_subject_name(server_name)
                    .map_err(|_| {
                        rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
                    })?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
