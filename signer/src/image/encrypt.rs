//! Encrypted images (`imgtool sign -E`): the encryption key of the device
//! (or of the station, for images re-wrapped per device later), the random
//! AES key, its ECIES wrapping, and the payload cipher. The format itself is
//! `firmware::image::enc`; this module brings the ECDH and the randomness.

use firmware::image::enc::{self, EncScheme, EncTlv};
use firmware::P256PublicKey;
use zeroize::Zeroizing;

use super::ImageBuildError;
use crate::keys::SignerError;
use crate::KeyRef;

/// DER prefix of an X25519 `SubjectPublicKeyInfo` (RFC 8410).
const X25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
];
/// DER prefix of an X25519 PKCS#8 private key: the 32-byte key follows.
const X25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
];

/// An encryption public key: what `-E` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncPublicKey {
    /// ECIES-P256 (`ENC_EC256`).
    P256(P256PublicKey),
    /// ECIES-X25519 (`ENC_X25519`, or `_SHA512`).
    X25519([u8; 32]),
}

impl EncPublicKey {
    /// The DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> Vec<u8> {
        match self {
            Self::P256(k) => k.spki_der().to_vec(),
            Self::X25519(k) => [&X25519_SPKI_PREFIX[..], k].concat(),
        }
    }

    /// SHA-256 of the DER key: its id in registries and messages.
    pub fn key_id(&self) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(self.spki_der()).into()
    }
}

/// An encryption private key (a device's, or the station's for re-wrapping).
pub enum EncPrivateKey {
    /// P-256, in a file.
    P256(p256::SecretKey),
    /// X25519, in a file.
    X25519(x25519_dalek::StaticSecret),
    /// A P-256 key-agreement key in a PKCS#11 token: ECDH runs in the token
    /// (`CKM_ECDH1_DERIVE`) and only the shared secret leaves it.
    Pkcs11(crate::key_ref::Pkcs11Uri, P256PublicKey),
    /// A P-256 `KEY_AGREEMENT` key in AWS KMS: ECDH runs in KMS
    /// (`DeriveSharedSecret`) and only the shared secret leaves it.
    Kms(crate::key_ref::KmsKeyRef, P256PublicKey),
}

impl std::fmt::Debug for EncPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::P256(_) => f.write_str("EncPrivateKey::P256(..)"),
            Self::X25519(_) => f.write_str("EncPrivateKey::X25519(..)"),
            Self::Pkcs11(uri, _) => write!(f, "EncPrivateKey::Pkcs11({uri})"),
            Self::Kms(r, _) => write!(f, "EncPrivateKey::Kms({r})"),
        }
    }
}

impl EncPrivateKey {
    /// Its public half.
    pub fn public(&self) -> EncPublicKey {
        match self {
            Self::P256(sk) => {
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                let point = sk.public_key().to_encoded_point(false);
                EncPublicKey::P256(
                    P256PublicKey::from_sec1(point.as_bytes())
                        .unwrap_or_else(|_| unreachable!("a secret key's public point")),
                )
            }
            Self::X25519(sk) => EncPublicKey::X25519(x25519_dalek::PublicKey::from(sk).to_bytes()),
            Self::Pkcs11(_, pk) | Self::Kms(_, pk) => EncPublicKey::P256(*pk),
        }
    }

    /// Recover an image's AES key from its ENC TLV.
    pub fn unwrap(&self, tlv: &EncTlv<'_>) -> Result<enc::AesKey, ImageBuildError> {
        let shared = self.shared_with(tlv.scheme, tlv.ephemeral)?;
        enc::AesKey::unwrap(tlv, &shared[..]).map_err(ImageBuildError::Encryption)
    }

    fn shared_with(
        &self,
        scheme: EncScheme,
        ephemeral: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, ImageBuildError> {
        let wrong = || {
            ImageBuildError::Usage(format!(
                "the image's key is wrapped with {scheme:?}, not for this key's type"
            ))
        };
        // The image's ephemeral point, for every P-256 key: a point off the
        // curve opens nothing.
        let p256_peer = || {
            p256::PublicKey::from_sec1_bytes(ephemeral)
                .map_err(|_| ImageBuildError::Encryption(enc::EncError::WrongKey))
        };
        let mut out = Zeroizing::new([0u8; 32]);
        match (self, scheme) {
            (Self::P256(sk), EncScheme::EciesP256) => {
                let peer = p256_peer()?;
                let shared = p256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), peer.as_affine());
                out.copy_from_slice(shared.raw_secret_bytes());
            }
            (Self::Pkcs11(uri, _), EncScheme::EciesP256) => {
                p256_peer()?;
                out = crate::keys::pkcs11::ecdh(uri, ephemeral)?;
            }
            (Self::Kms(r, _), EncScheme::EciesP256) => {
                p256_peer()?;
                out = crate::keys::kms::ecdh(r, ephemeral)?;
            }
            (Self::X25519(sk), EncScheme::EciesX25519 | EncScheme::EciesX25519Sha512) => {
                let peer: [u8; 32] = ephemeral.try_into().map_err(|_| wrong())?;
                let shared = sk.diffie_hellman(&x25519_dalek::PublicKey::from(peer));
                out.copy_from_slice(shared.as_bytes());
            }
            _ => return Err(wrong()),
        }
        Ok(out)
    }
}

/// `-E` and the flags that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    /// The key the AES key is wrapped for.
    pub key: EncPublicKey,
    /// `--encrypt-keylen 256`.
    pub aes256: bool,
    /// `--hmac-sha 512` (X25519 only).
    pub hmac_sha512: bool,
    /// `--clear`: flags and ENC TLV, but the payload left in the clear.
    pub clear: bool,
    /// `--save-enctlv`: size the trailer's key slots for the whole ENC TLV.
    pub save_enctlv: bool,
}

impl Encryption {
    /// The wrapping scheme (its TLV).
    pub fn scheme(&self) -> EncScheme {
        match (&self.key, self.hmac_sha512) {
            (EncPublicKey::P256(_), _) => EncScheme::EciesP256,
            (EncPublicKey::X25519(_), false) => EncScheme::EciesX25519,
            (EncPublicKey::X25519(_), true) => EncScheme::EciesX25519Sha512,
        }
    }

    /// AES key length in bytes.
    pub fn key_len(&self) -> usize {
        if self.aes256 {
            32
        } else {
            16
        }
    }

    /// Check the combination, as imgtool does.
    pub fn validate(&self) -> Result<(), ImageBuildError> {
        if self.hmac_sha512 && matches!(self.key, EncPublicKey::P256(_)) {
            return Err(ImageBuildError::Usage(
                "--hmac-sha 512 goes with ECIES-X25519 only".into(),
            ));
        }
        Ok(())
    }

    /// One encryption-key slot of the trailer (imgtool sizes it 16 bytes,
    /// or the ENC TLV's length with `--save-enctlv`).
    pub fn trailer_key_size(&self) -> u32 {
        if self.save_enctlv {
            self.scheme().tlv_len(self.key_len()) as u32
        } else {
            16
        }
    }

    /// The header flag.
    pub fn header_flag(&self) -> u32 {
        if self.aes256 {
            firmware::image::flags::ENCRYPTED_AES256
        } else {
            firmware::image::flags::ENCRYPTED_AES128
        }
    }
}

/// A fresh random AES key of `len` bytes.
pub fn random_aes_key(len: usize) -> Zeroizing<Vec<u8>> {
    let mut key = Zeroizing::new(vec![0u8; len]);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key);
    key
}

/// Wrap `aes_key` for `key` with a fresh ephemeral key: the ENC TLV's
/// value, for `scheme`.
pub fn wrap_for(
    key: &EncPublicKey,
    scheme: EncScheme,
    aes_key: &[u8],
) -> Result<Vec<u8>, ImageBuildError> {
    let (ephemeral, shared): (Vec<u8>, Zeroizing<[u8; 32]>) = match key {
        EncPublicKey::P256(pk) => {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            let peer = p256::PublicKey::from_sec1_bytes(pk.sec1())
                .map_err(|_| ImageBuildError::Usage("not a P-256 point".into()))?;
            let secret = p256::ecdh::EphemeralSecret::random(&mut rand_core::OsRng);
            let shared = secret.diffie_hellman(&peer);
            let mut s = Zeroizing::new([0u8; 32]);
            s.copy_from_slice(shared.raw_secret_bytes());
            (
                secret
                    .public_key()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec(),
                s,
            )
        }
        EncPublicKey::X25519(pk) => {
            let secret = x25519_dalek::EphemeralSecret::random_from_rng(rand_core::OsRng);
            let public = x25519_dalek::PublicKey::from(&secret);
            let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*pk));
            (
                public.to_bytes().to_vec(),
                Zeroizing::new(*shared.as_bytes()),
            )
        }
    };
    let mut out = vec![0u8; enc::MAX_ENC_TLV];
    let n = enc::wrap_key(scheme, &shared[..], &ephemeral, aes_key, &mut out)
        .map_err(ImageBuildError::Encryption)?;
    out.truncate(n);
    Ok(out)
}

/// The encryption public key a reference names: a PEM file (a public key,
/// or a private key's public half), P-256 or X25519, or a P-256
/// key-agreement key in a PKCS#11 token or in AWS KMS.
pub fn load_enc_public_key(key: &KeyRef) -> Result<EncPublicKey, SignerError> {
    match key {
        KeyRef::Pkcs11(uri) => {
            return crate::keys::pkcs11::public_key(uri, &key.to_string()).map(EncPublicKey::P256)
        }
        KeyRef::AwsKms(r) => {
            return crate::keys::kms::agreement_public_key(r).map(EncPublicKey::P256)
        }
        _ => {}
    }
    let (label, der) = read_pem(key)?;
    if label == "PUBLIC KEY" {
        return public_from_spki(&der).ok_or_else(|| SignerError::InvalidKey {
            key: key.to_string(),
            reason: "not an ECIES-P256 or X25519 encryption key".into(),
        });
    }
    Ok(private_from_pem(key, &label, &der)?.public())
}

/// The encryption private key a reference names: a `file:` (PKCS#8: P-256
/// or X25519, as `imgtool keygen -t ecdsa-p256|x25519` writes them), or a
/// P-256 key-agreement key in a PKCS#11 token or in AWS KMS.
pub fn load_enc_private_key(key: &KeyRef) -> Result<EncPrivateKey, SignerError> {
    match key {
        KeyRef::Pkcs11(uri) => {
            let public = crate::keys::pkcs11::public_key(uri, &key.to_string())?;
            return Ok(EncPrivateKey::Pkcs11(uri.clone(), public));
        }
        KeyRef::AwsKms(r) => {
            let public = crate::keys::kms::agreement_public_key(r)?;
            return Ok(EncPrivateKey::Kms(r.clone(), public));
        }
        _ => {}
    }
    let (label, der) = read_pem(key)?;
    private_from_pem(key, &label, &der)
}

/// A PEM block's private encryption key.
fn private_from_pem(key: &KeyRef, label: &str, der: &[u8]) -> Result<EncPrivateKey, SignerError> {
    let invalid = |reason: &str| SignerError::InvalidKey {
        key: key.to_string(),
        reason: reason.to_owned(),
    };
    if label != "PRIVATE KEY" {
        return Err(invalid("not a PKCS#8 private key"));
    }
    if let Some(raw) = der.strip_prefix(&X25519_PKCS8_PREFIX[..]) {
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| invalid("malformed X25519 key"))?;
        return Ok(EncPrivateKey::X25519(x25519_dalek::StaticSecret::from(raw)));
    }
    use p256::pkcs8::DecodePrivateKey;
    p256::SecretKey::from_pkcs8_der(der)
        .map(EncPrivateKey::P256)
        .map_err(|_| invalid("not an ECIES-P256 or X25519 encryption key"))
}

/// An encryption public key from PEM text (a registry entry); `name` names
/// it in errors.
pub fn enc_public_key_from_pem(name: &str, text: &str) -> Result<EncPublicKey, SignerError> {
    let invalid = |reason: &str| SignerError::InvalidKey {
        key: name.to_owned(),
        reason: reason.to_owned(),
    };
    let (label, der) = pkcs8::der::pem::decode_vec(text.trim_start().as_bytes())
        .map_err(|_| invalid("not a PEM public key"))?;
    if label != "PUBLIC KEY" {
        return Err(invalid("not a PEM public key"));
    }
    public_from_spki(&der).ok_or_else(|| invalid("not an ECIES-P256 or X25519 encryption key"))
}

fn public_from_spki(der: &[u8]) -> Option<EncPublicKey> {
    if let Some(raw) = der.strip_prefix(&X25519_SPKI_PREFIX[..]) {
        return raw.try_into().ok().map(EncPublicKey::X25519);
    }
    P256PublicKey::from_spki_der(der)
        .ok()
        .map(EncPublicKey::P256)
}

fn read_pem(key: &KeyRef) -> Result<(String, Zeroizing<Vec<u8>>), SignerError> {
    let KeyRef::File(path) = key else {
        return Err(SignerError::InvalidKey {
            key: key.to_string(),
            reason: "an encryption key is a PEM file or a pkcs11: key-agreement key".into(),
        });
    };
    crate::keys::file::read_pem_block(key, path)
}

/// Generate an X25519 encryption key into `path` as PKCS#8 PEM (as
/// `imgtool keygen -t x25519` writes it), owner-readable only; returns its
/// public key.
pub fn generate_x25519_file(path: &std::path::Path) -> Result<EncPublicKey, SignerError> {
    let mut der = Zeroizing::new([0u8; 48]);
    der[..16].copy_from_slice(&X25519_PKCS8_PREFIX);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut der[16..]);
    let key = format!("file:{}", path.display());
    let pem = Zeroizing::new(
        pkcs8::der::pem::encode_string("PRIVATE KEY", pkcs8::LineEnding::LF, &der[..]).map_err(
            |e| SignerError::InvalidKey {
                key: key.clone(),
                reason: format!("cannot encode key: {e}"),
            },
        )?,
    );
    crate::keys::file::write_key_file(&key, path, &pem)?;
    let mut raw = [0u8; 32];
    raw.copy_from_slice(&der[16..]);
    Ok(EncPrivateKey::X25519(x25519_dalek::StaticSecret::from(raw)).public())
}

/// What an encrypted image says about its encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EncInfo {
    /// AES key length in bits.
    pub aes_bits: usize,
    /// How the key is wrapped.
    pub scheme: EncScheme,
}

/// The encryption an image announces (header flag and ENC TLV), if any.
pub fn enc_info(image: &firmware::image::Image<'_>) -> Result<Option<EncInfo>, ImageBuildError> {
    if enc::aes_key_len(image.header().flags).is_none() {
        return Ok(None);
    }
    let tlv = enc::find_tlv(image).map_err(ImageBuildError::Encryption)?;
    Ok(Some(EncInfo {
        aes_bits: tlv.cipherkey.len() * 8,
        scheme: tlv.scheme,
    }))
}

/// Decrypt an encrypted image's payload in place with the private key its
/// AES key is wrapped for; returns what it was encrypted with. The header
/// flags and TLVs stay as they are (the hash and signatures then verify).
pub fn decrypt_in_place(bytes: &mut [u8], key: &EncPrivateKey) -> Result<EncInfo, ImageBuildError> {
    let (range, aes_key, info) = {
        let image = firmware::image::Image::parse(bytes)?;
        let tlv = enc::find_tlv(&image).map_err(ImageBuildError::Encryption)?;
        let key_len = tlv.cipherkey.len();
        let aes_key = key.unwrap(&tlv)?;
        let header = usize::from(image.header().header_size);
        let end = header + image.header().image_size as usize;
        (
            header..end,
            aes_key,
            EncInfo {
                aes_bits: key_len * 8,
                scheme: tlv.scheme,
            },
        )
    };
    aes_key.keystream().apply(&mut bytes[range]);
    Ok(info)
}

/// Rewrap an encrypted image for another key: the same bytes, but its ENC
/// TLV now wraps the same AES key for `to` (same scheme family, new
/// ephemeral key). `from` is the key it is wrapped for now. The signed
/// bytes (header, payload, protected TLVs, hash and signatures) are not
/// touched; the ENC TLV keeps its length, so nothing moves.
pub fn rewrap(
    bytes: &[u8],
    from: &EncPrivateKey,
    to: &EncPublicKey,
) -> Result<Vec<u8>, ImageBuildError> {
    let image = firmware::image::Image::parse(bytes)?;
    let (tlv, span) = enc::find_tlv_span(&image).map_err(ImageBuildError::Encryption)?;
    let aes_key = from.unwrap(&tlv)?;
    let scheme = match (tlv.scheme, to) {
        (EncScheme::EciesP256, EncPublicKey::P256(_)) => EncScheme::EciesP256,
        (EncScheme::EciesX25519 | EncScheme::EciesX25519Sha512, EncPublicKey::X25519(_)) => {
            tlv.scheme
        }
        (s, _) => {
            return Err(ImageBuildError::Usage(format!(
                "the image's key is wrapped with {s:?}; the device key must be of that curve"
            )))
        }
    };
    let value = wrap_for(to, scheme, aes_key.as_bytes())?;
    let mut out = bytes.to_vec();
    out[span].copy_from_slice(&value);
    Ok(out)
}
