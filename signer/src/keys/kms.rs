//! Keys in AWS KMS. KMS signs an image hash (`MessageType=DIGEST`: images
//! are far above its 4 KiB limit for raw messages): ECDSA P-256/P-384 return
//! DER, RSA keys sign RSASSA-PSS with a digest-length salt (what MCUboot
//! checks). Ed25519 keys (`ECC_NIST_EDWARDS25519`) sign only raw messages
//! with `ED25519_SHA_512`; the image hash is that message, as MCUboot's
//! hashed Ed25519 wants, and a pure image (the whole image is the message)
//! is refused above 4 KiB.
//!
//! Requests retry with exponential backoff on throttling and transient errors
//! (the SDK's standard retry mode) and time out; errors name the key and the
//! AWS error code. Credentials come from the standard AWS chain.

use std::fmt;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    KeyAgreementAlgorithmSpec, KeySpec, KeyUsageType, MessageType, OriginType, SigningAlgorithmSpec,
};
use aws_sdk_kms::Client;
use firmware::image::keys::{HashAlg, Signed};
use firmware::image::AnyImageKey;
use firmware::P256PublicKey;

use super::{EcdsaSignature, KeyType, Signer, SignerError};

/// The largest raw message KMS signs.
pub const MAX_RAW_MESSAGE: usize = 4096;

/// The KMS key spec of a key type.
fn key_spec(kind: KeyType) -> KeySpec {
    match kind {
        KeyType::EcdsaP256 => KeySpec::EccNistP256,
        KeyType::EcdsaP384 => KeySpec::EccNistP384,
        KeyType::Ed25519 => KeySpec::EccNistEdwards25519,
        KeyType::Rsa2048 => KeySpec::Rsa2048,
        KeyType::Rsa3072 => KeySpec::Rsa3072,
    }
}
use crate::key_ref::KmsKeyRef;
use crate::KeyRef;

fn backend<E: ProvideErrorMetadata + std::error::Error + 'static>(
    key: &str,
    op: &str,
    e: E,
) -> SignerError {
    let reason = match e.code() {
        Some(code) => format!("{op}: {code}: {}", e.message().unwrap_or("no message")),
        None => format!("{op}: {}", DisplayErrorContext(&e)),
    };
    SignerError::Backend {
        key: key.to_owned(),
        reason,
    }
}

/// A KMS client for a reference, on its own small runtime.
struct Kms {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Kms {
    fn connect(r: &KmsKeyRef, key: &str) -> Result<Self, SignerError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SignerError::Backend {
                key: key.to_owned(),
                reason: format!("runtime: {e}"),
            })?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(4))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .operation_timeout(Duration::from_secs(30))
                    .build(),
            );
        if let Some(region) = &r.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &r.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let conf = rt.block_on(loader.load());
        if conf.region().is_none() {
            return Err(SignerError::Backend {
                key: key.to_owned(),
                reason: "no AWS region: add ?region=… to the URI or set AWS_REGION".into(),
            });
        }
        Ok(Self {
            rt,
            client: Client::new(&conf),
        })
    }

    fn public_key(&self, key_id: &str, key: &str) -> Result<AnyImageKey, SignerError> {
        let out = self
            .rt
            .block_on(self.client.get_public_key().key_id(key_id).send())
            .map_err(|e| backend(key, "GetPublicKey", e))?;
        // The DER below is checked to be a key of an image key type in any
        // case; the spec and usage fields, when present, give the clearer
        // message.
        match out.key_spec() {
            Some(spec) if !KeyType::ALL.iter().any(|t| key_spec(*t) == *spec) => {
                return Err(SignerError::WrongKeyType {
                    key: key.to_owned(),
                    found: spec.as_str().to_owned(),
                });
            }
            _ => {}
        }
        if out
            .key_usage()
            .is_some_and(|u| *u != KeyUsageType::SignVerify)
        {
            return Err(SignerError::Backend {
                key: key.to_owned(),
                reason: "key usage is not SIGN_VERIFY".into(),
            });
        }
        let der = out.public_key().map(Blob::as_ref).unwrap_or_default();
        AnyImageKey::from_spki_der(der).map_err(|_| SignerError::WrongKeyType {
            key: key.to_owned(),
            found: "a key of no image key type".into(),
        })
    }

    /// The public key of a P-256 `KEY_AGREEMENT` key.
    fn agreement_key(&self, key_id: &str, key: &str) -> Result<P256PublicKey, SignerError> {
        let out = self
            .rt
            .block_on(self.client.get_public_key().key_id(key_id).send())
            .map_err(|e| backend(key, "GetPublicKey", e))?;
        if out
            .key_usage()
            .is_some_and(|u| *u != KeyUsageType::KeyAgreement)
        {
            return Err(SignerError::Backend {
                key: key.to_owned(),
                reason: "key usage is not KEY_AGREEMENT: an encryption key in KMS derives \
                         ECDH secrets (keytool key generate -t ecdh-p256 -k awskms:///alias/NAME)"
                    .into(),
            });
        }
        let der = out.public_key().map(Blob::as_ref).unwrap_or_default();
        P256PublicKey::from_spki_der(der).map_err(|_| SignerError::WrongKeyType {
            key: key.to_owned(),
            found: out
                .key_spec()
                .map_or("a key that is not P-256", |s| s.as_str())
                .to_owned(),
        })
    }

    /// `Sign` and return the signature bytes.
    fn sign(
        &self,
        key_id: &str,
        key: &str,
        message: &[u8],
        message_type: MessageType,
        algorithm: SigningAlgorithmSpec,
    ) -> Result<Vec<u8>, SignerError> {
        let out = self
            .rt
            .block_on(
                self.client
                    .sign()
                    .key_id(key_id)
                    .message(Blob::new(message.to_vec()))
                    .message_type(message_type)
                    .signing_algorithm(algorithm)
                    .send(),
            )
            .map_err(|e| backend(key, "Sign", e))?;
        Ok(out
            .signature()
            .map(Blob::as_ref)
            .unwrap_or_default()
            .to_vec())
    }
}

/// A key of an image key type in AWS KMS.
pub struct KmsKey {
    key_ref: KeyRef,
    key_id: String,
    kms: Kms,
    public: AnyImageKey,
    /// The fast P-256 verifier for digest signatures (P-256 keys only).
    verifier: Option<p256::ecdsa::VerifyingKey>,
}

impl fmt::Debug for KmsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsKey")
            .field("key", &self.key_ref.to_string())
            .finish_non_exhaustive()
    }
}

impl KmsKey {
    /// Open the key an `awskms:` reference names (fetches its public key).
    pub fn open(key_ref: KeyRef) -> Result<Self, SignerError> {
        let KeyRef::AwsKms(r) = &key_ref else {
            return Err(SignerError::Backend {
                key: key_ref.to_string(),
                reason: "not an awskms: key".into(),
            });
        };
        let key = key_ref.to_string();
        let kms = Kms::connect(r, &key)?;
        let public = kms.public_key(&r.key_id, &key)?;
        let verifier = match &public {
            AnyImageKey::P256(p) => Some(super::verifier(&key_ref, p)?),
            _ => None,
        };
        Ok(Self {
            key_id: r.key_id.clone(),
            key_ref,
            kms,
            public,
            verifier,
        })
    }
}

impl Signer for KmsKey {
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
        let key = self.key_ref.to_string();
        let Some(verifier) = &self.verifier else {
            return Err(super::not_p256(&self.key_ref, &self.public));
        };
        let der = self.kms.sign(
            &self.key_id,
            &key,
            digest,
            MessageType::Digest,
            SigningAlgorithmSpec::EcdsaSha256,
        )?;
        let sig = EcdsaSignature::from_der(&der).ok_or_else(|| SignerError::SignFailed {
            key,
            reason: "KMS returned a malformed signature".into(),
        })?;
        super::check_own_signature(&self.key_ref, verifier, digest, sig)
    }

    fn sign_image(&self, signed: Signed<'_>) -> Result<Vec<u8>, SignerError> {
        let key = self.key_ref.to_string();
        let kind = KeyType::of(&self.public);
        let unsupported = || super::unsupported_signing(&self.key_ref, kind, signed);
        let (message, message_type, algorithm) = match (kind, signed) {
            (KeyType::EcdsaP256, Signed::Digest(h)) if h.alg() == HashAlg::Sha256 => (
                h.as_bytes(),
                MessageType::Digest,
                SigningAlgorithmSpec::EcdsaSha256,
            ),
            (KeyType::EcdsaP384, Signed::Digest(h)) if h.alg() == HashAlg::Sha384 => (
                h.as_bytes(),
                MessageType::Digest,
                SigningAlgorithmSpec::EcdsaSha384,
            ),
            (KeyType::Rsa2048 | KeyType::Rsa3072, Signed::Digest(h))
                if h.alg() == HashAlg::Sha256 =>
            {
                (
                    h.as_bytes(),
                    MessageType::Digest,
                    SigningAlgorithmSpec::RsassaPssSha256,
                )
            }
            (KeyType::Ed25519, Signed::Digest(h))
                if kind.image_hashes(false).contains(&h.alg()) =>
            {
                (
                    h.as_bytes(),
                    MessageType::Raw,
                    SigningAlgorithmSpec::Ed25519Sha512,
                )
            }
            (KeyType::Ed25519, Signed::Pure(region)) => {
                if region.len() > MAX_RAW_MESSAGE {
                    return Err(SignerError::Unsupported {
                        key,
                        reason: format!(
                            "a pure Ed25519 signature covers the whole image ({} bytes), and KMS \
                             signs at most {MAX_RAW_MESSAGE} bytes of raw message \
                             (ED25519_SHA_512); sign the image's SHA-512 instead (no --pure) or \
                             use a PKCS#11 key",
                            region.len()
                        ),
                    });
                }
                (
                    region,
                    MessageType::Raw,
                    SigningAlgorithmSpec::Ed25519Sha512,
                )
            }
            _ => return Err(unsupported()),
        };
        let mut signature = self
            .kms
            .sign(&self.key_id, &key, message, message_type, algorithm)?;
        if matches!(kind, KeyType::EcdsaP256 | KeyType::EcdsaP384) {
            // KMS returns DER already; normalise it (minimal encoding).
            let reencoded = match kind {
                KeyType::EcdsaP256 => p256::ecdsa::Signature::from_der(&signature)
                    .map(|s| s.to_der().as_bytes().to_vec())
                    .ok(),
                _ => p384::ecdsa::Signature::from_der(&signature)
                    .map(|s| s.to_der().as_bytes().to_vec())
                    .ok(),
            };
            signature = reencoded.ok_or_else(|| SignerError::SignFailed {
                key: key.clone(),
                reason: "KMS returned a malformed signature".into(),
            })?;
        }
        super::check_image_signature(&self.key_ref, &self.public, signed, signature)
    }

    /// KMS keys must have been made by KMS (`Origin` `AWS_KMS` or
    /// `AWS_CLOUDHSM`): imported material (`EXTERNAL`) may have copies, and
    /// an external key store's keys live elsewhere.
    fn production_problems(&self) -> Result<Vec<String>, SignerError> {
        let key = self.key_ref.to_string();
        let out = self
            .kms
            .rt
            .block_on(self.kms.client.describe_key().key_id(&self.key_id).send())
            .map_err(|e| backend(&key, "DescribeKey", e))?;
        let mut problems = Vec::new();
        let meta = out.key_metadata();
        match meta.and_then(|m| m.origin()) {
            Some(OriginType::AwsKms | OriginType::AwsCloudhsm) => {}
            Some(other) => problems.push(format!(
                "{key}: Origin={}: its key material was not generated inside KMS, so copies may exist",
                other.as_str()
            )),
            None => problems.push(format!("{key}: KMS did not say where the key material came from")),
        }
        if meta
            .and_then(|m| m.key_usage())
            .is_some_and(|u| *u != KeyUsageType::SignVerify)
        {
            problems.push(format!("{key}: key usage is not SIGN_VERIFY"));
        }
        Ok(problems)
    }
}

/// The public key of an `awskms:` reference, of whatever type.
pub fn image_key(r: &KmsKeyRef) -> Result<AnyImageKey, SignerError> {
    let key = r.to_string();
    Kms::connect(r, &key)?.public_key(&r.key_id, &key)
}

/// [`image_key`] for a key that must be ECDSA P-256.
pub fn public_key(r: &KmsKeyRef) -> Result<P256PublicKey, SignerError> {
    crate::public_key::require_p256(&r.to_string(), image_key(r)?)
}

/// Create a `SIGN_VERIFY` key of type `kind` (`ECC_NIST_P256`,
/// `ECC_NIST_P384`, `ECC_NIST_EDWARDS25519`, `RSA_2048`, `RSA_3072`) and
/// point the reference's alias at it. The reference must be
/// `awskms:///alias/NAME`; an alias in use is refused. Returns the public key
/// and the new key's ARN.
pub fn generate(r: &KmsKeyRef, kind: KeyType) -> Result<(AnyImageKey, String), SignerError> {
    let key = r.to_string();
    let (kms, key_id, arn) = create_aliased(r, key_spec(kind), KeyUsageType::SignVerify)?;
    Ok((kms.public_key(&key_id, &key)?, arn))
}

/// Create a key of `spec` and `usage` under the reference's alias (which
/// must be new); the client, the new key's id and its ARN.
fn create_aliased(
    r: &KmsKeyRef,
    spec: KeySpec,
    usage: KeyUsageType,
) -> Result<(Kms, String, String), SignerError> {
    let key = r.to_string();
    if !r.key_id.starts_with("alias/") {
        return Err(SignerError::Backend {
            key,
            reason: "name the new key by its alias: awskms:///alias/NAME".into(),
        });
    }
    let kms = Kms::connect(r, &key)?;
    match kms
        .rt
        .block_on(kms.client.describe_key().key_id(&r.key_id).send())
    {
        Ok(_) => {
            return Err(SignerError::Backend {
                key,
                reason: "refusing to overwrite: the alias already exists".into(),
            });
        }
        Err(e) if e.code() == Some("NotFoundException") => {}
        Err(e) => return Err(backend(&key, "DescribeKey", e)),
    }
    let created = kms
        .rt
        .block_on(
            kms.client
                .create_key()
                .key_spec(spec)
                .key_usage(usage)
                .description(format!("keytool {}", r.key_id))
                .send(),
        )
        .map_err(|e| backend(&key, "CreateKey", e))?;
    let meta = created.key_metadata().ok_or_else(|| SignerError::Backend {
        key: key.clone(),
        reason: "CreateKey returned no key".into(),
    })?;
    let (key_id, arn) = (
        meta.key_id().to_owned(),
        meta.arn().unwrap_or_default().to_owned(),
    );
    kms.rt
        .block_on(
            kms.client
                .create_alias()
                .alias_name(&r.key_id)
                .target_key_id(&key_id)
                .send(),
        )
        .map_err(|e| backend(&key, "CreateAlias", e))?;
    Ok((kms, key_id, arn))
}

/// Create a P-256 `KEY_AGREEMENT` key (an image encryption key for the
/// station: it derives ECDH secrets and cannot sign or decrypt) under the
/// reference's alias; its public key and ARN.
pub fn generate_key_agreement(r: &KmsKeyRef) -> Result<(P256PublicKey, String), SignerError> {
    let key = r.to_string();
    let (kms, key_id, arn) = create_aliased(r, KeySpec::EccNistP256, KeyUsageType::KeyAgreement)?;
    Ok((kms.agreement_key(&key_id, &key)?, arn))
}

/// The public key of a P-256 `KEY_AGREEMENT` key.
pub fn agreement_public_key(r: &KmsKeyRef) -> Result<P256PublicKey, SignerError> {
    let key = r.to_string();
    Kms::connect(r, &key)?.agreement_key(&r.key_id, &key)
}

/// ECDH of a P-256 `KEY_AGREEMENT` key with `peer` (an uncompressed SEC1
/// point): `DeriveSharedSecret`. Only the shared secret leaves KMS.
pub fn ecdh(r: &KmsKeyRef, peer: &[u8]) -> Result<zeroize::Zeroizing<[u8; 32]>, SignerError> {
    let key = r.to_string();
    let peer = P256PublicKey::from_sec1(peer).map_err(|_| SignerError::InvalidKey {
        key: key.clone(),
        reason: "the peer's key is not a P-256 point".into(),
    })?;
    let kms = Kms::connect(r, &key)?;
    let out = kms
        .rt
        .block_on(
            kms.client
                .derive_shared_secret()
                .key_id(&r.key_id)
                .key_agreement_algorithm(KeyAgreementAlgorithmSpec::Ecdh)
                .public_key(Blob::new(peer.spki_der().to_vec()))
                .send(),
        )
        .map_err(|e| backend(&key, "DeriveSharedSecret", e))?;
    let secret = out.shared_secret().map(Blob::as_ref).unwrap_or_default();
    let mut shared = zeroize::Zeroizing::new([0u8; 32]);
    if secret.len() != 32 {
        return Err(SignerError::Backend {
            key,
            reason: format!("DeriveSharedSecret gave {} bytes, not 32", secret.len()),
        });
    }
    shared.copy_from_slice(secret);
    Ok(shared)
}

/// A KMS key reachable by alias.
#[derive(Debug, Clone)]
pub struct ListedKmsKey {
    /// `awskms:///alias/NAME` (with the query's region and endpoint).
    pub reference: KmsKeyRef,
    /// Its public key, for signing keys of an image key type.
    pub public: Option<AnyImageKey>,
}

/// List the aliased keys in the account and region (the reference's key id
/// is ignored).
pub fn list(r: &KmsKeyRef) -> Result<Vec<ListedKmsKey>, SignerError> {
    let key = r.to_string();
    let kms = Kms::connect(r, &key)?;
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let page = kms
            .rt
            .block_on(kms.client.list_aliases().set_marker(marker.clone()).send())
            .map_err(|e| backend(&key, "ListAliases", e))?;
        for alias in page.aliases() {
            let (Some(name), Some(_)) = (alias.alias_name(), alias.target_key_id()) else {
                continue;
            };
            if name.starts_with("alias/aws/") {
                continue;
            }
            let reference = KmsKeyRef {
                key_id: name.to_owned(),
                region: r.region.clone(),
                endpoint: r.endpoint.clone(),
            };
            let public = kms.public_key(name, &key).ok();
            out.push(ListedKmsKey { reference, public });
        }
        match (page.truncated(), page.next_marker()) {
            (true, Some(m)) => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    Ok(out)
}
