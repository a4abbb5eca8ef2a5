//! The [`Signer`] abstraction: a key that signs, wherever it lives. Every
//! signer signs images with its own key type ([`KeyType`]: ECDSA P-256 and
//! P-384, Ed25519, RSA-2048/3072 PSS); the P-256 keys also sign digests for
//! records, certificates and audit checkpoints. The key material never leaves
//! the backend.

pub(crate) mod file;
#[cfg(feature = "aws-kms")]
pub mod kms;
pub mod pkcs11;
pub mod quorum;

use std::fmt;
use std::path::PathBuf;

use firmware::P256PublicKey;
use p256::ecdsa::{Signature, VerifyingKey};

pub use file::{generate_file_image_key, generate_file_key, FileKey, PASSPHRASE_ENV};

use firmware::image::keys::{HashAlg, ImageKey, Signed};
use firmware::image::AnyImageKey;

use crate::KeyRef;

/// Why a key could not be opened or used. Every variant names the key; none
/// carries secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// The key file could not be read.
    #[error("key {key}: cannot read {path}: {source}")]
    Io {
        /// The key reference.
        key: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key is not in a format we read.
    #[error("key {key}: {reason}")]
    InvalidKey {
        /// The key reference.
        key: String,
        /// What is wrong, without key bytes.
        reason: String,
    },
    /// The key is of a type the operation does not take: one MCUboot does
    /// not verify, or not ECDSA P-256 where that is needed (records,
    /// certificates, checkpoints).
    #[error("key {key}: is a {found} key; {}", wanted_type(found))]
    WrongKeyType {
        /// The key reference.
        key: String,
        /// What it is.
        found: String,
    },
    /// A public key where a private key is needed.
    #[error("key {key}: holds only a public key; signing needs the private key")]
    PublicOnly {
        /// The key reference.
        key: String,
    },
    /// The backend (HSM, KMS) could not be reached or refused an operation.
    #[error("key {key}: {reason}")]
    Backend {
        /// The key reference.
        key: String,
        /// What failed, with the backend's error code.
        reason: String,
    },
    /// The key's type or its store cannot make the signature asked for
    /// (a hash its type does not sign with, a mechanism the store lacks).
    #[error("key {key}: {reason}")]
    Unsupported {
        /// The key reference.
        key: String,
        /// What is missing, and why.
        reason: String,
    },
    /// The backend refused or failed to sign.
    #[error("key {key}: signing failed: {reason}")]
    SignFailed {
        /// The key reference.
        key: String,
        /// The backend's reason.
        reason: String,
    },
}

/// What a key of type `found` should have been, for [`SignerError::WrongKeyType`].
fn wanted_type(found: &str) -> &'static str {
    if KeyType::ALL.iter().any(|t| t.title() == found) {
        "this needs an ECDSA P-256 key"
    } else {
        "MCUboot images are signed with RSA-2048, RSA-3072, ECDSA P-256, ECDSA P-384 or Ed25519 keys"
    }
}

/// An ECDSA P-256 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EcdsaSignature(Signature);

impl EcdsaSignature {
    /// From the fixed `r ‖ s` form (64 bytes), as PKCS#11 returns it.
    pub fn from_raw(raw: &[u8]) -> Option<Self> {
        Signature::from_slice(raw).ok().map(Self)
    }

    /// From DER, as KMS and OpenSSL return it.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        Signature::from_der(der).ok().map(Self)
    }

    /// DER encoding, as MCUboot's ECDSASIG TLV holds it.
    pub fn to_der(&self) -> Vec<u8> {
        self.0.to_der().as_bytes().to_vec()
    }

    /// Fixed `r ‖ s` encoding.
    pub fn to_raw(&self) -> [u8; 64] {
        self.0.to_bytes().into()
    }
}

impl fmt::Debug for EcdsaSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EcdsaSignature({})", hex::encode(self.to_raw()))
    }
}

impl From<Signature> for EcdsaSignature {
    fn from(s: Signature) -> Self {
        Self(s)
    }
}

/// The key types MCUboot verifies images with, as `keytool key generate -t`
/// names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyType {
    /// RSA-2048, RSASSA-PSS with SHA-256 (the `RSA2048` TLV).
    Rsa2048,
    /// RSA-3072, RSASSA-PSS with SHA-256 (the `RSA3072` TLV).
    Rsa3072,
    /// ECDSA over NIST P-256 with SHA-256.
    EcdsaP256,
    /// ECDSA over NIST P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519 over the image's SHA-256 or SHA-512, or over the image itself
    /// (`--pure`).
    Ed25519,
}

impl KeyType {
    /// Every type, in `--help` order.
    pub const ALL: [KeyType; 5] = [
        Self::Rsa2048,
        Self::Rsa3072,
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::Ed25519,
    ];

    /// The name `key generate -t` takes and JSON output prints.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa3072 => "rsa-3072",
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Ed25519 => "ed25519",
        }
    }

    /// The name in prose.
    pub fn title(self) -> &'static str {
        match self {
            Self::Rsa2048 => "RSA-2048",
            Self::Rsa3072 => "RSA-3072",
            Self::EcdsaP256 => "ECDSA P-256",
            Self::EcdsaP384 => "ECDSA P-384",
            Self::Ed25519 => "Ed25519",
        }
    }

    /// The type of a public key.
    pub fn of(key: &AnyImageKey) -> Self {
        match key {
            AnyImageKey::P384(_) => Self::EcdsaP384,
            AnyImageKey::Ed25519(_) => Self::Ed25519,
            AnyImageKey::Rsa(k) if k.bits() == 3072 => Self::Rsa3072,
            AnyImageKey::Rsa(_) => Self::Rsa2048,
            _ => Self::EcdsaP256,
        }
    }

    /// The image hashes a key of this type signs, the default first, as
    /// imgtool 2.5 allows them (`--sha`); a pure image (`--pure`) is hashed
    /// with SHA-512 and only Ed25519 signs it.
    pub fn image_hashes(self, pure: bool) -> &'static [HashAlg] {
        match (self, pure) {
            (Self::Ed25519, true) => &[HashAlg::Sha512],
            (_, true) => &[],
            (Self::Ed25519, false) => &[HashAlg::Sha256, HashAlg::Sha512],
            (Self::EcdsaP384, false) => &[HashAlg::Sha384],
            _ => &[HashAlg::Sha256],
        }
    }

    /// The hash for an image signed by this type: `wanted` (`--sha`), or the
    /// type's default when `None`; `--pure` forces SHA-512 as imgtool does.
    pub fn image_hash(self, wanted: Option<HashAlg>, pure: bool) -> Result<HashAlg, String> {
        let allowed = self.image_hashes(pure);
        let Some(&default) = allowed.first() else {
            return Err(format!(
                "{} keys cannot sign pure images (--pure is Ed25519 only)",
                self.title()
            ));
        };
        match wanted {
            None => Ok(default),
            Some(_) if pure => Ok(default),
            Some(a) if allowed.contains(&a) => Ok(a),
            Some(a) => Err(format!(
                "{} keys cannot be used with --sha {}; allowed: {}",
                self.title(),
                sha_name(a),
                allowed
                    .iter()
                    .map(|a| sha_name(*a))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// `--sha`'s name for a hash.
pub fn sha_name(alg: HashAlg) -> &'static str {
    match alg {
        HashAlg::Sha256 => "256",
        HashAlg::Sha384 => "384",
        HashAlg::Sha512 => "512",
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown key type {s:?}; one of {}",
                    Self::ALL.map(KeyType::name).join(", ")
                )
            })
    }
}

/// A signing key in some backend.
///
/// Object-safe, so tools hold a `Box<dyn Signer>` chosen by the key reference.
/// `Debug` implementations print the key reference only.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The key reference, for messages and audit entries.
    fn key_ref(&self) -> &KeyRef;

    /// The public key, when the key is ECDSA P-256 (records, certificates
    /// and checkpoints need one); other types say [`SignerError::WrongKeyType`].
    fn public_key(&self) -> Result<P256PublicKey, SignerError>;

    /// The public key, of whatever type the key is.
    fn image_key(&self) -> Result<AnyImageKey, SignerError> {
        self.public_key().map(AnyImageKey::from)
    }

    /// Sign for an image: its hash, or (pure Ed25519) its hashed region.
    /// Returns the signature TLV's value (DER for ECDSA, 64 bytes for
    /// Ed25519, the modulus length for RSA), checked against the public key
    /// first. The default serves P-256-only backends.
    fn sign_image(&self, signed: Signed<'_>) -> Result<Vec<u8>, SignerError> {
        let digest = match signed {
            Signed::Digest(hash) => hash.sha256(),
            Signed::Pure(_) => None,
        };
        let Some(digest) = digest else {
            return Err(unsupported_signing(
                self.key_ref(),
                KeyType::EcdsaP256,
                signed,
            ));
        };
        Ok(self.sign_digest(&digest)?.to_der())
    }

    /// Sign a SHA-256 digest (prehashed ECDSA). Every backend checks the
    /// signature against the key's public half before returning it, so
    /// nothing is written with a signature from the wrong key or a faulty
    /// token.
    fn sign_digest(&self, digest: &[u8; 32]) -> Result<EcdsaSignature, SignerError>;

    /// Why this key may not hold a production role, checked on use: it must
    /// have been generated inside its store, never be extractable, and sign
    /// only. Empty when it may.
    fn production_problems(&self) -> Result<Vec<String>, SignerError>;
}

/// The verifier a backend checks its own signatures with (RustCrypto's,
/// built once per key; the firmware crate's verifier is the small one for
/// devices, not the fast one).
pub(crate) fn verifier(key: &KeyRef, public: &P256PublicKey) -> Result<VerifyingKey, SignerError> {
    VerifyingKey::from_sec1_bytes(public.sec1()).map_err(|_| SignerError::WrongKeyType {
        key: key.to_string(),
        found: "a public key that is not a P-256 point".into(),
    })
}

/// Check `signature` over `digest` against the key's `verifier` (what every
/// backend does before handing a signature out).
pub(crate) fn check_own_signature(
    key: &KeyRef,
    verifier: &VerifyingKey,
    digest: &[u8; 32],
    signature: EcdsaSignature,
) -> Result<EcdsaSignature, SignerError> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    verifier
        .verify_prehash(digest, &signature.0)
        .map_err(|_| own_signature_failed(key))?;
    Ok(signature)
}

/// A backend's signature that does not verify with its own public key.
fn own_signature_failed(key: &KeyRef) -> SignerError {
    SignerError::SignFailed {
        key: key.to_string(),
        reason: "the signature does not verify with the key's public key; nothing was written"
            .into(),
    }
}

/// The error for asking a key that is not P-256 for a P-256 operation.
pub(crate) fn not_p256(key: &KeyRef, public: &AnyImageKey) -> SignerError {
    SignerError::WrongKeyType {
        key: key.to_string(),
        found: KeyType::of(public).title().into(),
    }
}

/// The error for asking a `kind` key to sign what its type cannot.
pub(crate) fn unsupported_signing(key: &KeyRef, kind: KeyType, signed: Signed<'_>) -> SignerError {
    let what = match signed {
        Signed::Digest(hash) => format!("SHA-{} image hashes", sha_name(hash.alg())),
        Signed::Pure(_) => "pure images".to_owned(),
    };
    SignerError::Unsupported {
        key: key.to_string(),
        reason: format!("{} keys do not sign {what}", kind.title()),
    }
}

/// Check an image signature against the key's public half (what every
/// backend does before handing one out).
pub(crate) fn check_image_signature(
    key: &KeyRef,
    public: &AnyImageKey,
    signed: Signed<'_>,
    signature: Vec<u8>,
) -> Result<Vec<u8>, SignerError> {
    public
        .verify_image(signed, &signature)
        .map_err(|_| own_signature_failed(key))?;
    Ok(signature)
}

/// Open the signer a key reference names.
pub fn open_signer(key: &KeyRef) -> Result<Box<dyn Signer>, SignerError> {
    match key {
        KeyRef::File(_) => Ok(Box::new(FileKey::open(key.clone())?)),
        KeyRef::Pkcs11(_) => Ok(Box::new(pkcs11::Pkcs11Key::open(key.clone())?)),
        #[cfg(feature = "aws-kms")]
        KeyRef::AwsKms(_) => Ok(Box::new(kms::KmsKey::open(key.clone())?)),
        #[cfg(not(feature = "aws-kms"))]
        KeyRef::AwsKms(_) => Err(SignerError::Backend {
            key: key.to_string(),
            reason: "this build has no AWS KMS support (feature aws-kms)".into(),
        }),
    }
}
