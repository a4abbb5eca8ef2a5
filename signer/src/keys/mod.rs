//! The [`Signer`] abstraction: a P-256 key that can sign a SHA-256 digest,
//! wherever it lives. The key material never leaves the backend.

pub(crate) mod file;
#[cfg(feature = "aws-kms")]
pub mod kms;
pub mod pkcs11;
pub mod quorum;

use std::fmt;
use std::path::PathBuf;

use firmware::P256PublicKey;
use p256::ecdsa::{Signature, VerifyingKey};

pub use file::{generate_file_image_key, generate_file_key, FileKey, FileKeyType, PASSPHRASE_ENV};

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
    /// The key is of a type other than ECDSA P-256.
    #[error("key {key}: is a {found} key; only ECDSA P-256 keys are supported")]
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
    /// The backend refused or failed to sign.
    #[error("key {key}: signing failed: {reason}")]
    SignFailed {
        /// The key reference.
        key: String,
        /// The backend's reason.
        reason: String,
    },
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

/// A P-256 signing key in some backend.
///
/// Object-safe, so tools hold a `Box<dyn Signer>` chosen by the key reference.
/// `Debug` implementations print the key reference only.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The key reference, for messages and audit entries.
    fn key_ref(&self) -> &KeyRef;

    /// The public key.
    fn public_key(&self) -> Result<P256PublicKey, SignerError>;

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
        .map_err(|_| SignerError::SignFailed {
            key: key.to_string(),
            reason: "the signature does not verify with the key's public key; nothing was written"
                .into(),
        })?;
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
