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

use firmware::image::keys::{HashAlg, Signed};
use firmware::image::AnyImageKey;
use firmware::keys::KeyError;

use super::{EcdsaSignature, KeyType, Signer, SignerError};
use crate::KeyRef;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

/// A private key read from a PKCS#8 (or SEC1) PEM file, of any image key
/// type. The key zeroizes on drop and never appears in `Debug` output.
pub struct FileKey {
    key_ref: KeyRef,
    secret: FileSecret,
    public: AnyImageKey,
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKey")
            .field("key", &self.key_ref.to_string())
            .finish_non_exhaustive()
    }
}

/// A private key of one of the image key types. Each zeroizes on drop (the
/// RustCrypto keys and `rsa`'s do themselves; the Ed25519 seed is wrapped).
pub(crate) enum FileSecret {
    P256(SigningKey),
    P384(p384::ecdsa::SigningKey),
    Ed25519(Zeroizing<[u8; 32]>),
    Rsa(Box<rsa::RsaPrivateKey>),
}

impl FileSecret {
    /// Its public key.
    pub(crate) fn public(&self) -> Result<AnyImageKey, KeyError> {
        Ok(match self {
            Self::P256(sk) => AnyImageKey::P256(public_of(sk)),
            Self::P384(sk) => {
                let point = sk.verifying_key().to_encoded_point(false);
                AnyImageKey::P384(firmware::keys::p384::P384PublicKey::from_sec1(
                    point.as_bytes(),
                )?)
            }
            Self::Ed25519(seed) => {
                let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(**seed));
                AnyImageKey::Ed25519(firmware::keys::ed25519::Ed25519PublicKey::from_bytes(
                    &pair.pk[..],
                )?)
            }
            Self::Rsa(sk) => {
                use rsa::traits::PublicKeyParts;
                AnyImageKey::Rsa(firmware::keys::rsa::RsaPublicKey::from_components(
                    &sk.n().to_bytes_be(),
                    &sk.e().to_bytes_be(),
                )?)
            }
        })
    }
}

/// Name an algorithm by OID for error messages.
pub(crate) fn algorithm_name(oid: &str, curve: Option<&str>) -> String {
    match (oid, curve) {
        (OID_EC_PUBLIC_KEY, Some(OID_P256)) => "ECDSA P-256".into(),
        (OID_EC_PUBLIC_KEY, Some(OID_P384)) => "ECDSA P-384".into(),
        (OID_EC_PUBLIC_KEY, Some("1.3.132.0.35")) => "ECDSA P-521".into(),
        (OID_EC_PUBLIC_KEY, Some(c)) => format!("EC (curve {c})"),
        (OID_RSA, _) => "RSA".into(),
        (OID_ED25519, _) => "Ed25519".into(),
        ("1.3.101.110", _) => "X25519".into(),
        (o, _) => format!("unknown-algorithm ({o})"),
    }
}

fn algorithm(alg: &spki::AlgorithmIdentifierRef<'_>) -> (String, Option<String>) {
    (
        alg.oid.to_string(),
        alg.parameters_oid().ok().map(|c| c.to_string()),
    )
}

/// What a PEM file holds.
pub(crate) enum PemKey {
    Private(FileSecret),
    Public(AnyImageKey),
}

impl PemKey {
    /// The public key (of a private key, its public half).
    pub(crate) fn public(&self, key: &str) -> Result<AnyImageKey, SignerError> {
        match self {
            Self::Private(sk) => sk.public().map_err(|e| SignerError::InvalidKey {
                key: key.to_owned(),
                reason: e.to_string(),
            }),
            Self::Public(pk) => Ok(pk.clone()),
        }
    }
}

/// Read a PEM key file: a PKCS#8 or SEC1 private key, or a public key.
pub(crate) fn read_pem_key(key_ref: &KeyRef, path: &Path) -> Result<PemKey, SignerError> {
    pem_key(key_ref.to_string(), &read_key_text(key_ref, path)?)
}

/// A key file's text (wiped when dropped).
fn read_key_text(key_ref: &KeyRef, path: &Path) -> Result<Zeroizing<String>, SignerError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| SignerError::Io {
            key: key_ref.to_string(),
            path: path.to_path_buf(),
            source,
        })
}

/// The one PEM block of a key file: its label and DER (wiped when dropped),
/// for key kinds other than signing keys (image encryption keys).
pub(crate) fn read_pem_block(
    key_ref: &KeyRef,
    path: &Path,
) -> Result<(String, Zeroizing<Vec<u8>>), SignerError> {
    let (label, der) = pem_rfc7468_decode(&read_key_text(key_ref, path)?).map_err(|_| {
        SignerError::InvalidKey {
            key: key_ref.to_string(),
            reason: "not a PEM file".into(),
        }
    })?;
    Ok((label, Zeroizing::new(der)))
}

/// Write a new key file `path` (named `key` in errors): atomically,
/// readable by its owner only.
pub(crate) fn write_key_file(key: &str, path: &Path, pem: &str) -> Result<(), SignerError> {
    crate::atomic::write_parts(path, &[pem.as_bytes()], Some(0o600)).map_err(|e| SignerError::Io {
        key: key.to_owned(),
        path: path.to_path_buf(),
        source: e.source,
    })
}

/// A PKCS#8 private key of an image key type.
fn pkcs8_secret(key: &str, der: &[u8]) -> Result<FileSecret, SignerError> {
    let invalid = |reason: &str| SignerError::InvalidKey {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let info = pkcs8::PrivateKeyInfo::from_der(der)
        .map_err(|_| invalid("malformed PKCS#8 private key"))?;
    match algorithm(&info.algorithm) {
        (oid, Some(curve)) if oid == OID_EC_PUBLIC_KEY && curve == OID_P256 => {
            SigningKey::from_pkcs8_der(der)
                .map(FileSecret::P256)
                .map_err(|_| invalid("malformed P-256 private key"))
        }
        (oid, Some(curve)) if oid == OID_EC_PUBLIC_KEY && curve == OID_P384 => {
            p384::ecdsa::SigningKey::from_pkcs8_der(der)
                .map(FileSecret::P384)
                .map_err(|_| invalid("malformed P-384 private key"))
        }
        (oid, _) if oid == OID_ED25519 => {
            // RFC 8410: the private key is an OCTET STRING holding the seed.
            match info.private_key {
                [0x04, 0x20, seed @ ..] if seed.len() == 32 => {
                    let mut out = Zeroizing::new([0u8; 32]);
                    out.copy_from_slice(seed);
                    Ok(FileSecret::Ed25519(out))
                }
                _ => Err(invalid("malformed Ed25519 private key")),
            }
        }
        (oid, _) if oid == OID_RSA => {
            use rsa::pkcs8::DecodePrivateKey as _;
            let sk = rsa::RsaPrivateKey::from_pkcs8_der(der)
                .map_err(|_| invalid("malformed RSA private key"))?;
            check_rsa_size(key, &sk)?;
            Ok(FileSecret::Rsa(Box::new(sk)))
        }
        (oid, curve) => Err(SignerError::WrongKeyType {
            key: key.to_owned(),
            found: algorithm_name(&oid, curve.as_deref()),
        }),
    }
}

fn check_rsa_size(key: &str, sk: &rsa::RsaPrivateKey) -> Result<(), SignerError> {
    use rsa::traits::PublicKeyParts;
    match sk.n().bits() {
        2048 | 3072 => Ok(()),
        bits => Err(SignerError::InvalidKey {
            key: key.to_owned(),
            reason: format!("an RSA-{bits} key; MCUboot takes RSA-2048 and RSA-3072"),
        }),
    }
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
        "PRIVATE KEY" => pkcs8_secret(&key, &der).map(PemKey::Private),
        "EC PRIVATE KEY" => {
            if let Ok(sk) = p256::SecretKey::from_sec1_der(&der) {
                return Ok(PemKey::Private(FileSecret::P256(SigningKey::from(sk))));
            }
            p384::SecretKey::from_sec1_der(&der)
                .map(|sk| PemKey::Private(FileSecret::P384(sk.into())))
                .map_err(|_| invalid("not a P-256 or P-384 SEC1 private key"))
        }
        "RSA PRIVATE KEY" => {
            use rsa::pkcs1::DecodeRsaPrivateKey as _;
            let sk = rsa::RsaPrivateKey::from_pkcs1_der(&der)
                .map_err(|_| invalid("malformed PKCS#1 RSA private key"))?;
            check_rsa_size(&key, &sk)?;
            Ok(PemKey::Private(FileSecret::Rsa(Box::new(sk))))
        }
        "PUBLIC KEY" => {
            let spki = spki::SubjectPublicKeyInfoRef::from_der(&der)
                .map_err(|_| invalid("malformed public key"))?;
            let (oid, curve) = algorithm(&spki.algorithm);
            let known = matches!(
                (oid.as_str(), curve.as_deref()),
                (OID_EC_PUBLIC_KEY, Some(OID_P256 | OID_P384)) | (OID_ED25519 | OID_RSA, _)
            );
            if !known {
                return Err(SignerError::WrongKeyType {
                    key,
                    found: algorithm_name(&oid, curve.as_deref()),
                });
            }
            AnyImageKey::from_spki_der(&der)
                .map(PemKey::Public)
                .map_err(|e| invalid(&e.to_string()))
        }
        "RSA PUBLIC KEY" => firmware::keys::rsa::RsaPublicKey::from_pkcs1_der(&der)
            .map(|k| PemKey::Public(AnyImageKey::Rsa(k)))
            .map_err(|_| invalid("not an RSA-2048 or RSA-3072 public key")),
        "ENCRYPTED PRIVATE KEY" => {
            let info = pkcs8::EncryptedPrivateKeyInfo::from_der(&der)
                .map_err(|_| invalid("malformed encrypted PKCS#8 private key"))?;
            let passphrase = passphrase(&key)?;
            let plain = info
                .decrypt(passphrase.expose_secret().as_bytes())
                .map_err(|_| {
                    invalid("cannot decrypt: wrong passphrase, or an unsupported encryption scheme")
                })?;
            pkcs8_secret(&key, plain.as_bytes()).map(PemKey::Private)
        }
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
        let pem = read_pem_key(&key_ref, path)?;
        let public = pem.public(&key_ref.to_string())?;
        match pem {
            PemKey::Private(secret) => Ok(Self {
                key_ref,
                secret,
                public,
            }),
            PemKey::Public(_) => Err(SignerError::PublicOnly {
                key: key_ref.to_string(),
            }),
        }
    }

    fn sign_failed(&self, e: impl fmt::Display) -> SignerError {
        SignerError::SignFailed {
            key: self.key_ref.to_string(),
            reason: e.to_string(),
        }
    }
}

impl Signer for FileKey {
    fn key_ref(&self) -> &KeyRef {
        &self.key_ref
    }

    fn public_key(&self) -> Result<P256PublicKey, SignerError> {
        match &self.public {
            AnyImageKey::P256(k) => Ok(*k),
            other => Err(super::not_p256(&self.key_ref, other)),
        }
    }

    fn image_key(&self) -> Result<AnyImageKey, SignerError> {
        Ok(self.public.clone())
    }

    fn sign_digest(&self, digest: &[u8; 32]) -> Result<EcdsaSignature, SignerError> {
        let FileSecret::P256(key) = &self.secret else {
            return Err(super::not_p256(&self.key_ref, &self.public));
        };
        let sig: p256::ecdsa::Signature =
            key.sign_prehash(digest).map_err(|e| self.sign_failed(e))?;
        super::check_own_signature(&self.key_ref, key.verifying_key(), digest, sig.into())
    }

    fn sign_image(&self, signed: Signed<'_>) -> Result<Vec<u8>, SignerError> {
        let kind = super::KeyType::of(&self.public);
        let unsupported = || super::unsupported_signing(&self.key_ref, kind, signed);
        let signature = match (&self.secret, signed) {
            (FileSecret::P256(key), Signed::Digest(hash)) if hash.alg() == HashAlg::Sha256 => {
                let sig: p256::ecdsa::Signature = key
                    .sign_prehash(hash.as_bytes())
                    .map_err(|e| self.sign_failed(e))?;
                sig.to_der().as_bytes().to_vec()
            }
            (FileSecret::P384(key), Signed::Digest(hash)) if hash.alg() == HashAlg::Sha384 => {
                let sig: p384::ecdsa::Signature = key
                    .sign_prehash(hash.as_bytes())
                    .map_err(|e| self.sign_failed(e))?;
                sig.to_der().as_bytes().to_vec()
            }
            (FileSecret::Ed25519(seed), signed) => {
                if let Signed::Digest(hash) = signed {
                    if !kind.image_hashes(false).contains(&hash.alg()) {
                        return Err(unsupported());
                    }
                }
                let message = match signed {
                    Signed::Digest(hash) => hash.as_bytes(),
                    Signed::Pure(region) => region,
                };
                let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(**seed));
                pair.sk.sign(message, None).to_vec()
            }
            (FileSecret::Rsa(key), Signed::Digest(hash)) if hash.alg() == HashAlg::Sha256 => key
                .sign_with_rng(
                    &mut rand_core::OsRng,
                    rsa::Pss::new_with_salt::<sha2::Sha256>(firmware::keys::rsa::PSS_SALT_LEN),
                    hash.as_bytes(),
                )
                .map_err(|e| self.sign_failed(e))?,
            _ => return Err(unsupported()),
        };
        super::check_image_signature(&self.key_ref, &self.public, signed, signature)
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
    match generate_file_image_key(path, KeyType::EcdsaP256)? {
        AnyImageKey::P256(k) => Ok(k),
        _ => unreachable!("a P-256 key was generated"),
    }
}

/// Generate a key of any image key type into `path` as unencrypted PKCS#8
/// PEM, as `imgtool keygen` writes them (owner-readable only, written
/// atomically); returns its public key.
pub fn generate_file_image_key(path: &Path, kind: KeyType) -> Result<AnyImageKey, SignerError> {
    let key = format!("file:{}", path.display());
    let encode_failed = |e: &dyn fmt::Display| SignerError::InvalidKey {
        key: key.clone(),
        reason: format!("cannot encode key: {e}"),
    };
    let pem: Zeroizing<String> = match kind {
        KeyType::EcdsaP256 => {
            let sk = SigningKey::random(&mut rand_core::OsRng);
            let pem = sk
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| encode_failed(&e))?;
            Zeroizing::new(pem.as_str().to_owned())
        }
        KeyType::EcdsaP384 => {
            let sk = p384::SecretKey::random(&mut rand_core::OsRng);
            let pem = sk
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| encode_failed(&e))?;
            Zeroizing::new(pem.as_str().to_owned())
        }
        KeyType::Ed25519 => {
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
        KeyType::Rsa2048 | KeyType::Rsa3072 => {
            use rsa::pkcs8::EncodePrivateKey as _;
            let bits = if kind == KeyType::Rsa3072 { 3072 } else { 2048 };
            let sk = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, bits)
                .map_err(|e| encode_failed(&e))?;
            let pem = sk
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| encode_failed(&e))?;
            Zeroizing::new(pem.as_str().to_owned())
        }
    };
    write_key_file(&key, path, &pem)?;
    pem_key(key.clone(), &pem)?.public(&key)
}
