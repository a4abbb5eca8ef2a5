//! Development keys in PEM files. A production policy refuses them; they
//! exist so that tests and first steps need no HSM.

use std::fmt;
use std::path::Path;

use firmware::P256PublicKey;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use pkcs8::der::Decode;
use secrecy::{ExposeSecret, SecretString};
use std::io::IsTerminal;
use zeroize::Zeroizing;

use super::{EcdsaSignature, Signer, SignerError};
use crate::KeyRef;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

/// A P-256 private key read from a PKCS#8 (or SEC1) PEM file. The key zeroizes
/// on drop and never appears in `Debug` output.
pub struct FileKey {
    key_ref: KeyRef,
    key: SigningKey,
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKey")
            .field("key", &self.key_ref.to_string())
            .finish_non_exhaustive()
    }
}

/// Name an algorithm by OID for error messages.
pub(crate) fn algorithm_name(oid: &str, curve: Option<&str>) -> String {
    match (oid, curve) {
        (OID_EC_PUBLIC_KEY, Some("1.3.132.0.34")) => "ECDSA P-384".into(),
        (OID_EC_PUBLIC_KEY, Some("1.3.132.0.35")) => "ECDSA P-521".into(),
        (OID_EC_PUBLIC_KEY, Some(c)) => format!("EC (curve {c})"),
        ("1.2.840.113549.1.1.1", _) => "RSA".into(),
        ("1.3.101.112", _) => "Ed25519".into(),
        ("1.3.101.110", _) => "X25519".into(),
        (o, _) => format!("unknown-algorithm ({o})"),
    }
}

/// Check that an `AlgorithmIdentifier` is EC on P-256.
fn require_p256(key: &str, alg: &spki::AlgorithmIdentifierRef<'_>) -> Result<(), SignerError> {
    let oid = alg.oid.to_string();
    let curve = alg.parameters_oid().ok().map(|c| c.to_string());
    if oid == OID_EC_PUBLIC_KEY && curve.as_deref() == Some(OID_P256) {
        return Ok(());
    }
    Err(SignerError::WrongKeyType {
        key: key.to_owned(),
        found: algorithm_name(&oid, curve.as_deref()),
    })
}

/// What a PEM file holds.
pub(crate) enum PemKey {
    Private(SigningKey),
    Public(P256PublicKey),
}

/// Read a PEM key file: a PKCS#8 or SEC1 private key, or a public key.
pub(crate) fn read_pem_key(key_ref: &KeyRef, path: &Path) -> Result<PemKey, SignerError> {
    let key = key_ref.to_string();
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| SignerError::Io {
            key: key.clone(),
            path: path.to_path_buf(),
            source,
        })?,
    );
    pem_key(key, &text)
}

/// Decode PEM key text; `key` names it in errors.
pub(crate) fn pem_key(key: String, text: &str) -> Result<PemKey, SignerError> {
    let invalid = |reason: &str| SignerError::InvalidKey {
        key: key.clone(),
        reason: reason.to_owned(),
    };
    let (label, der) = pem_rfc7468_decode(text).map_err(|_| invalid("not a PEM file"))?;
    let der = Zeroizing::new(der);
    match label.as_str() {
        "PRIVATE KEY" => {
            let info = pkcs8::PrivateKeyInfo::from_der(&der)
                .map_err(|_| invalid("malformed PKCS#8 private key"))?;
            require_p256(&key, &info.algorithm)?;
            let sk = SigningKey::from_pkcs8_der(&der)
                .map_err(|_| invalid("malformed P-256 private key"))?;
            Ok(PemKey::Private(sk))
        }
        "EC PRIVATE KEY" => {
            let sk = p256::SecretKey::from_sec1_der(&der)
                .map_err(|_| invalid("not a P-256 SEC1 private key"))?;
            Ok(PemKey::Private(SigningKey::from(sk)))
        }
        "PUBLIC KEY" => {
            let spki = spki::SubjectPublicKeyInfoRef::from_der(&der)
                .map_err(|_| invalid("malformed public key"))?;
            require_p256(&key, &spki.algorithm)?;
            let pk = P256PublicKey::from_spki_der(&der).map_err(|e| invalid(&e.to_string()))?;
            Ok(PemKey::Public(pk))
        }
        "ENCRYPTED PRIVATE KEY" => {
            let info = pkcs8::EncryptedPrivateKeyInfo::from_der(&der)
                .map_err(|_| invalid("malformed encrypted PKCS#8 private key"))?;
            let passphrase = passphrase(&key)?;
            let plain = info
                .decrypt(passphrase.expose_secret().as_bytes())
                .map_err(|_| {
                    invalid("cannot decrypt: wrong passphrase, or an unsupported encryption scheme")
                })?;
            let inner = pkcs8::PrivateKeyInfo::from_der(plain.as_bytes())
                .map_err(|_| invalid("malformed PKCS#8 private key inside the encryption"))?;
            require_p256(&key, &inner.algorithm)?;
            let sk = SigningKey::from_pkcs8_der(plain.as_bytes())
                .map_err(|_| invalid("malformed P-256 private key"))?;
            Ok(PemKey::Private(sk))
        }
        "RSA PRIVATE KEY" | "RSA PUBLIC KEY" => Err(SignerError::WrongKeyType {
            key,
            found: "RSA".into(),
        }),
        other => Err(invalid(&format!("unexpected PEM block '{other}'"))),
    }
}

/// Environment variable with the passphrase of an encrypted key file.
pub const PASSPHRASE_ENV: &str = "KEYTOOL_KEY_PASSPHRASE";

/// The passphrase of an encrypted key: from `KEYTOOL_KEY_PASSPHRASE`, or asked
/// for on the terminal without echo (imgtool's prompt).
fn passphrase(key: &str) -> Result<SecretString, SignerError> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(SecretString::from(p));
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("Enter key passphrase: ").map_err(|e| {
            SignerError::InvalidKey {
                key: key.to_owned(),
                reason: format!("passphrase prompt: {e}"),
            }
        })?;
        return Ok(SecretString::from(p));
    }
    Err(SignerError::InvalidKey {
        key: key.to_owned(),
        reason: format!("the key file is encrypted: set {PASSPHRASE_ENV} or run on a terminal"),
    })
}

/// Decode one PEM block, returning its label and DER body.
fn pem_rfc7468_decode(text: &str) -> Result<(String, Vec<u8>), pkcs8::der::pem::Error> {
    let (label, der) = pkcs8::der::pem::decode_vec(text.trim_start().as_bytes())?;
    Ok((label.to_owned(), der))
}

/// Public key of a signing key.
pub(crate) fn public_of(sk: &SigningKey) -> P256PublicKey {
    let point = sk.verifying_key().to_encoded_point(false);
    // A valid signing key always has a valid uncompressed public point.
    P256PublicKey::from_sec1(point.as_bytes())
        .unwrap_or_else(|_| unreachable!("P-256 public point"))
}

impl FileKey {
    /// Open a `file:` key reference holding a private key.
    pub fn open(key_ref: KeyRef) -> Result<Self, SignerError> {
        let KeyRef::File(path) = &key_ref else {
            return Err(SignerError::InvalidKey {
                key: key_ref.to_string(),
                reason: "not a file key".into(),
            });
        };
        match read_pem_key(&key_ref, path)? {
            PemKey::Private(key) => Ok(Self { key_ref, key }),
            PemKey::Public(_) => Err(SignerError::PublicOnly {
                key: key_ref.to_string(),
            }),
        }
    }
}

impl Signer for FileKey {
    fn key_ref(&self) -> &KeyRef {
        &self.key_ref
    }

    fn public_key(&self) -> Result<P256PublicKey, SignerError> {
        Ok(public_of(&self.key))
    }

    fn sign_digest(&self, digest: &[u8; 32]) -> Result<EcdsaSignature, SignerError> {
        let sig: p256::ecdsa::Signature =
            self.key
                .sign_prehash(digest)
                .map_err(|e| SignerError::SignFailed {
                    key: self.key_ref.to_string(),
                    reason: e.to_string(),
                })?;
        super::check_own_signature(&self.key_ref, self.key.verifying_key(), digest, sig.into())
    }

    fn production_problems(&self) -> Result<Vec<String>, SignerError> {
        Ok(vec![format!(
            "{} is a file: whoever can read the file holds the key",
            self.key_ref
        )])
    }
}

/// Generate a new P-256 key and write it as unencrypted PKCS#8 PEM (the form
/// `imgtool keygen` writes and reads), readable by its owner only. Returns the
/// public key.
pub fn generate_file_key(path: &Path) -> Result<P256PublicKey, SignerError> {
    let key = format!("file:{}", path.display());
    let sk = SigningKey::random(&mut rand_core::OsRng);
    let pem = sk
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| SignerError::InvalidKey {
            key: key.clone(),
            reason: format!("cannot encode key: {e}"),
        })?;
    crate::atomic::write_parts(path, &[pem.as_bytes()], Some(0o600)).map_err(|e| {
        SignerError::Io {
            key,
            path: path.to_path_buf(),
            source: e.source,
        }
    })?;
    Ok(public_of(&sk))
}

/// Key types a development key file can be generated as, besides P-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKeyType {
    /// ECDSA over NIST P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

/// Generate an ECDSA P-384 or Ed25519 key into `path` as unencrypted PKCS#8
/// PEM, as `imgtool keygen` writes them (owner-readable only, written
/// atomically); returns its public key. Image signing with these types is
/// not built yet; verification is.
pub fn generate_file_image_key(
    path: &Path,
    kind: FileKeyType,
) -> Result<firmware::image::AnyImageKey, SignerError> {
    let key = format!("file:{}", path.display());
    let encode_failed = |e: &dyn fmt::Display| SignerError::InvalidKey {
        key: key.clone(),
        reason: format!("cannot encode key: {e}"),
    };
    let pem: Zeroizing<String> = match kind {
        FileKeyType::EcdsaP384 => {
            use p384::pkcs8::EncodePrivateKey as _;
            let sk = p384::SecretKey::random(&mut rand_core::OsRng);
            let pem = sk
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| encode_failed(&e))?;
            Zeroizing::new(pem.as_str().to_owned())
        }
        FileKeyType::Ed25519 => {
            // PKCS#8 v1 (RFC 8410): the algorithm id-Ed25519 and the 32-byte
            // seed as an OCTET STRING inside the privateKey OCTET STRING.
            const PREFIX: [u8; 16] = [
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                0x04, 0x20,
            ];
            let mut der = Zeroizing::new([0u8; 48]);
            der[..16].copy_from_slice(&PREFIX);
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut der[16..]);
            let pem = pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &der[..])
                .map_err(|e| encode_failed(&e))?;
            Zeroizing::new(pem)
        }
    };
    crate::atomic::write_parts(path, &[pem.as_bytes()], Some(0o600)).map_err(|e| {
        SignerError::Io {
            key: key.clone(),
            path: path.to_path_buf(),
            source: e.source,
        }
    })?;
    crate::public_key::image_key_from_pem(&key, &pem)
}
