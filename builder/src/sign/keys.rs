//! Signing keys: ECDSA P-256, the cosign default. A new key pair is a PKCS#8 PEM private key
//! (written owner-only through `crate::talos::private`) and a SubjectPublicKeyInfo PEM public
//! key. Private keys are read as plain PKCS#8 (`PRIVATE KEY`), SEC 1 (`EC PRIVATE KEY`) or
//! cosign's encrypted files (`ENCRYPTED SIGSTORE PRIVATE KEY`, older `ENCRYPTED COSIGN PRIVATE
//! KEY`): a PEM whose body is JSON naming an scrypt KDF (`N`, `r`, `p`, `salt`) and a NaCl
//! secretbox cipher (`nonce`), with the PKCS#8 DER key as `ciphertext`
//! (go-securesystemslib `encrypted`). No key material or password is ever logged or shown.

use std::io::Read as _;
use std::path::Path;

use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::der::pem::{self, LineEnding};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use p256::SecretKey;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Environment variable holding the password of an encrypted private key.
pub const PASSWORD_ENV: &str = "TALEXT_KEY_PASSWORD";

/// Key files are small; anything larger is not a key.
const MAX_KEY_FILE: u64 = 64 << 10;

const ENCRYPTED_LABELS: [&str; 2] = [
    "ENCRYPTED SIGSTORE PRIVATE KEY",
    "ENCRYPTED COSIGN PRIVATE KEY",
];

/// The scrypt parameters go-securesystemslib accepts (`legacy`, `standard`, `owasp`): a file
/// asking for more work than these is refused instead of spending memory on it.
const SCRYPT_PARAMS: [(u64, u32, u32); 3] = [(1 << 15, 8, 1), (1 << 16, 8, 1), (1 << 17, 8, 1)];

/// A password for an encrypted key, wiped when dropped and never printed.
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    pub fn new(bytes: Vec<u8>) -> Self {
        Password(Zeroizing::new(bytes))
    }

    /// The password from standard input (`stdin` set; one trailing newline is dropped) or from
    /// [`PASSWORD_ENV`] (which may be empty: cosign keys often have an empty password).
    pub fn from_stdin_or_env(stdin: bool) -> Result<Option<Self>> {
        if stdin {
            let mut buf = Zeroizing::new(Vec::new());
            std::io::stdin().read_to_end(&mut buf).map_err(|e| {
                Error::input(format!("cannot read the key password from stdin: {e}"))
            })?;
            let mut bytes = buf.to_vec();
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
            }
            return Ok(Some(Password::new(bytes)));
        }
        Ok(std::env::var_os(PASSWORD_ENV)
            .map(|v| Password::new(std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec())))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// A key pair as PEM text: the private key (PKCS#8) and the public key (SubjectPublicKeyInfo).
pub struct KeyPair {
    pub private_pem: Zeroizing<String>,
    pub public_pem: String,
}

/// A fresh P-256 key pair from the operating system's random source.
pub fn generate() -> Result<KeyPair> {
    let secret = loop {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut())
            .map_err(|e| Error::internal(format!("no random bytes from the system: {e}")))?;
        // A value outside the scalar field (probability about 2^-32) is drawn again.
        if let Ok(k) = SecretKey::from_slice(bytes.as_ref()) {
            break k;
        }
    };
    let private_pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::internal(format!("encoding the private key: {e}")))?;
    let public_pem = public_pem(&VerifyingKey::from(&SigningKey::from(&secret)))?;
    Ok(KeyPair {
        private_pem: Zeroizing::new(private_pem.to_string()),
        public_pem,
    })
}

/// The SubjectPublicKeyInfo PEM of a public key.
pub fn public_pem(key: &VerifyingKey) -> Result<String> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::internal(format!("encoding the public key: {e}")))
}

/// Write a key pair: the private key owner-only (0600, through a temporary file and a rename),
/// the public key world-readable. Existing files are not replaced.
pub fn write_pair(pair: &KeyPair, private: &Path, public: &Path) -> Result<()> {
    for p in [private, public] {
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(Error::input_hint(
                format!("`{}` already exists", p.display()),
                "remove it or choose another name with `--output-key-prefix`",
            ));
        }
    }
    crate::talos::private::write_private(private, pair.private_pem.as_bytes())?;
    crate::image::write_file_atomic(public, pair.public_pem.as_bytes())?;
    Ok(())
}

fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let bytes = Zeroizing::new(crate::store::layout::read_capped(path, MAX_KEY_FILE)?);
    Ok(bytes)
}

fn decode_pem(path: &Path, bytes: &[u8]) -> Result<(String, Zeroizing<Vec<u8>>)> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Error::input(format!("`{}` is not a PEM file", path.display())))?;
    let (label, der) = pem::decode_vec(text.trim().as_bytes())
        .map_err(|e| Error::input(format!("`{}` is not a PEM file: {e}", path.display())))?;
    Ok((label.to_string(), Zeroizing::new(der)))
}

/// Read a private key file; an encrypted cosign key needs `password`.
pub fn load_private(path: &Path, password: Option<&Password>) -> Result<SigningKey> {
    let bytes = read_key_file(path)?;
    let (label, der) = decode_pem(path, &bytes)?;
    let shown = path.display();
    let bad = |what: &str| Error::input(format!("`{shown}` is not a valid {what}"));
    let secret = match label.as_str() {
        "PRIVATE KEY" => {
            SecretKey::from_pkcs8_der(&der).map_err(|_| bad("PKCS#8 P-256 private key"))?
        }
        "EC PRIVATE KEY" => {
            SecretKey::from_sec1_der(&der).map_err(|_| bad("SEC 1 P-256 private key"))?
        }
        l if ENCRYPTED_LABELS.contains(&l) => {
            let Some(password) = password else {
                return Err(Error::input_hint(
                    format!("`{shown}` is encrypted and no password was given"),
                    format!("pass it on stdin with `--key-password-stdin` or in `{PASSWORD_ENV}`"),
                ));
            };
            let plain = decrypt_cosign(path, &der, password)?;
            SecretKey::from_pkcs8_der(&plain).map_err(|_| {
                bad("cosign key: the decrypted key is not a PKCS#8 P-256 private key")
            })?
        }
        "ENCRYPTED PRIVATE KEY" => {
            return Err(Error::input_hint(
                format!("`{shown}` is a password-protected PKCS#8 key, which talext does not read"),
                "decrypt it with `openssl pkcs8 -in KEY -out PLAIN`, or use a cosign key",
            ))
        }
        "PUBLIC KEY" => {
            return Err(Error::input(format!(
                "`{shown}` is a public key; signing needs the private key"
            )))
        }
        other => {
            return Err(Error::input(format!(
                "`{shown}` holds a `{other}`, not a private key"
            )))
        }
    };
    Ok(SigningKey::from(&secret))
}

/// Read a SubjectPublicKeyInfo PEM public key (`cosign.pub`, or what `key generate` writes).
pub fn load_public(path: &Path) -> Result<VerifyingKey> {
    let bytes = read_key_file(path)?;
    let (label, der) = decode_pem(path, &bytes)?;
    if label != "PUBLIC KEY" {
        return Err(Error::input(format!(
            "`{}` holds a `{label}`, not a `PUBLIC KEY`",
            path.display()
        )));
    }
    VerifyingKey::from_public_key_der(&der).map_err(|_| {
        Error::input(format!(
            "`{}` is not a P-256 ECDSA public key",
            path.display()
        ))
    })
}

/// The JSON inside an encrypted cosign key (Go encodes byte strings as padded base64).
#[derive(Deserialize)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn decrypt_cosign(path: &Path, body: &[u8], password: &Password) -> Result<Zeroizing<Vec<u8>>> {
    let shown = path.display();
    let bad = |why: String| Error::input(format!("`{shown}` is not a valid cosign key: {why}"));
    let sealed: Sealed = serde_json::from_slice(body)
        .map_err(|e| bad(format!("its body is not the expected JSON ({e})")))?;
    if sealed.kdf.name != "scrypt" {
        return Err(bad(format!("unknown key derivation `{}`", sealed.kdf.name)));
    }
    if sealed.cipher.name != "nacl/secretbox" {
        return Err(bad(format!("unknown cipher `{}`", sealed.cipher.name)));
    }
    let KdfParams { n, r, p } = sealed.kdf.params;
    if !SCRYPT_PARAMS.contains(&(n, r, p)) {
        return Err(bad(format!(
            "unsupported scrypt parameters N={n} r={r} p={p}"
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let field = |name: &str, v: &str| {
        b64.decode(v)
            .map_err(|_| bad(format!("`{name}` is not base64")))
    };
    let salt = field("salt", &sealed.kdf.salt)?;
    let nonce = field("nonce", &sealed.cipher.nonce)?;
    let ciphertext = field("ciphertext", &sealed.ciphertext)?;
    if nonce.len() != 24 {
        return Err(bad("the nonce is not 24 bytes".into()));
    }
    let params = scrypt::Params::new(n.trailing_zeros() as u8, r, p)
        .map_err(|_| bad("bad scrypt parameters".into()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(&password.0, &salt, &params, key.as_mut())
        .map_err(|_| Error::internal("scrypt refused its output length"))?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(key.as_ref().into());
    let plain = cipher
        .decrypt(nonce.as_slice().into(), ciphertext.as_slice())
        .map_err(|_| {
            Error::input_hint(
                format!("cannot decrypt `{shown}`"),
                "the password is wrong, or the file was changed",
            )
        })?;
    Ok(Zeroizing::new(plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_loads_back_and_matches() {
        let dir = tempfile::tempdir().unwrap();
        let pair = generate().unwrap();
        let (k, p) = (dir.path().join("cosign.key"), dir.path().join("cosign.pub"));
        write_pair(&pair, &k, &p).unwrap();
        let signing = load_private(&k, None).unwrap();
        let public = load_public(&p).unwrap();
        assert_eq!(VerifyingKey::from(&signing), public);
        assert!(
            write_pair(&pair, &k, &p).is_err(),
            "existing files are kept"
        );
    }
}
