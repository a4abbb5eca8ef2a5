//! Assembling an image: header, protected TLVs, hash, key and signature TLVs,
//! in the order imgtool writes them.

use firmware::image::keys::{HashAlg, ImageHash, ImageKey, Signed};
use firmware::image::{
    flags, tlv, tlv_header, tlv_info, AnyImageKey, ImageHeader, TLV_INFO_MAGIC, TLV_INFO_SIZE,
    TLV_PROT_INFO_MAGIC,
};

use super::{FirmwareInput, ImageBuildError, PublicKeyFormat, SignOptions};
use crate::keys::{KeyType, Signer};
use crate::public_key::image_key_der;

/// How the image gets its signatures.
#[derive(Debug)]
pub enum Signing<'a> {
    /// No signature: only the hash TLV.
    Unsigned,
    /// Sign with each key, in order: one KEYHASH (or PUBKEY) and signature
    /// pair per key, as MCUboot reads them. Two keys sign an image both an
    /// old and a new bootloader key accept (key rotation).
    Keys(Vec<&'a dyn Signer>),
    /// A signature made elsewhere (`--fix-sig`), by `public_key`.
    Fixed {
        /// The signature TLV's value (DER for ECDSA).
        signature: Vec<u8>,
        /// The key that made it.
        public_key: AnyImageKey,
    },
}

impl<'a> Signing<'a> {
    /// Sign with one key.
    pub fn key(key: &'a dyn Signer) -> Self {
        Self::Keys(vec![key])
    }

    /// The public keys that sign, in order.
    fn public_keys(&self) -> Result<Vec<AnyImageKey>, ImageBuildError> {
        Ok(match self {
            Self::Unsigned => Vec::new(),
            Self::Keys(keys) => keys
                .iter()
                .map(|k| k.image_key())
                .collect::<Result<_, _>>()?,
            Self::Fixed { public_key, .. } => vec![public_key.clone()],
        })
    }

    /// The image hash these signers need under `opts` (`--sha`, `--pure`),
    /// by imgtool's rules; every key must sign the same one, as MCUboot
    /// checks one hash TLV.
    pub fn hash_alg(&self, opts: &SignOptions) -> Result<HashAlg, ImageBuildError> {
        let keys = self.public_keys()?;
        if keys.is_empty() {
            if opts.pure {
                return Err(ImageBuildError::Usage(
                    "--pure needs a signing key (an Ed25519 one)".into(),
                ));
            }
            return Ok(opts.sha.unwrap_or(HashAlg::Sha256));
        }
        let mut chosen: Option<(KeyType, HashAlg)> = None;
        for key in &keys {
            let kind = KeyType::of(key);
            let alg = kind
                .image_hash(opts.sha, opts.pure)
                .map_err(ImageBuildError::Usage)?;
            match chosen {
                Some((first, a)) if a != alg => {
                    return Err(ImageBuildError::Usage(format!(
                        "{} and {} keys sign different image hashes (SHA-{} and SHA-{}); \
                         an image has one hash, so they cannot both sign it{}",
                        first.title(),
                        kind.title(),
                        crate::keys::sha_name(a),
                        crate::keys::sha_name(alg),
                        if kind == KeyType::Ed25519 || first == KeyType::Ed25519 {
                            " (try --sha with a hash both take)"
                        } else {
                            ""
                        }
                    )))
                }
                Some(_) => {}
                None => chosen = Some((kind, alg)),
            }
        }
        Ok(chosen.map_or(HashAlg::Sha256, |(_, a)| a))
    }
}

/// The hash of `parts` with `alg` (every algorithm is built on the host).
pub(crate) fn image_hash(alg: HashAlg, parts: &[&[u8]]) -> ImageHash {
    alg.hash(parts)
        .unwrap_or_else(|| unreachable!("the host build has every image hash"))
}

/// The KEYHASH value naming `key` in an image hashed with `alg`: that hash
/// of the DER MCUboot embeds (imgtool's rule).
fn key_hash(key: &AnyImageKey, alg: HashAlg) -> ImageHash {
    image_hash(alg, &[&image_key_der(key)])
}

/// `--vector-to-sign`: emit what an external signer must sign instead of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorToSign {
    /// Header, payload and protected TLVs.
    Payload,
    /// Their SHA-256.
    Digest,
}

/// The result of [`build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedImage {
    /// The image up to the end of its TLVs (or the vector to sign).
    pub bytes: Vec<u8>,
    /// Address of `bytes[0]` when the input was HEX.
    pub base_addr: Option<u32>,
    /// The image hash over header, payload and protected TLVs.
    pub digest: ImageHash,
    /// The signature TLVs' values, in order (empty if unsigned).
    pub signatures: Vec<Vec<u8>>,
    /// Whether `bytes` is a vector to sign rather than an image.
    pub is_vector: bool,
}

/// DER signatures are padded to this with `--pad-sig`, for MCUboot < 1.5.
const PADDED_SIG_LEN: usize = 72;

fn u16_len(what: &'static str, n: usize) -> Result<u16, ImageBuildError> {
    u16::try_from(n).map_err(|_| ImageBuildError::TooLarge {
        what,
        size: n as u64,
        max: u16::MAX.into(),
    })
}

fn push_tlv(area: &mut Vec<u8>, kind: u16, value: &[u8]) -> Result<(), ImageBuildError> {
    area.extend_from_slice(&tlv_header(kind, u16_len("a TLV value", value.len())?));
    area.extend_from_slice(value);
    Ok(())
}

/// Close a TLV area: prepend its info header.
fn finish_area(magic: u16, body: &[u8]) -> Result<Vec<u8>, ImageBuildError> {
    let total = u16_len("the TLV area", body.len() + TLV_INFO_SIZE)?;
    let mut out = Vec::with_capacity(body.len() + TLV_INFO_SIZE);
    out.extend_from_slice(&tlv_info(magic, total));
    out.extend_from_slice(body);
    Ok(out)
}

fn protected_area(opts: &SignOptions) -> Result<Vec<u8>, ImageBuildError> {
    let mut body = Vec::new();
    if let Some(counter) = opts.security_counter_value() {
        push_tlv(&mut body, tlv::SEC_CNT, &counter.to_le_bytes())?;
    }
    for d in &opts.dependencies {
        let mut v = [0u8; 12];
        v[0] = d.image_id;
        v[4..].copy_from_slice(&d.version.to_bytes());
        push_tlv(&mut body, tlv::DEPENDENCY, &v)?;
    }
    for (tag, value) in &opts.custom_tlvs {
        push_tlv(&mut body, *tag, value)?;
    }
    if body.is_empty() {
        return Ok(body);
    }
    finish_area(TLV_PROT_INFO_MAGIC, &body)
}

fn header_flags(opts: &SignOptions) -> u32 {
    let mut f = 0;
    if opts.load_addr.unwrap_or(0) != 0 {
        f |= flags::RAM_LOAD;
    }
    if opts.rom_fixed.unwrap_or(0) != 0 {
        f |= flags::ROM_FIXED;
    }
    if opts.non_bootable {
        f |= flags::NON_BOOTABLE;
    }
    if let Some(e) = &opts.encrypt {
        f |= e.header_flag();
    }
    f
}

/// The parts of an image fixed before hashing: the header region and the
/// protected TLV area. Shared by the in-memory and the streaming builders.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The 32-byte header.
    pub(crate) header: [u8; firmware::image::IMAGE_HEADER_SIZE],
    /// The protected TLV area, with its info header (empty if none).
    pub(crate) protected: Vec<u8>,
}

/// Validate the options and lay out header and protected TLVs for a payload
/// of `image_size` bytes.
pub(crate) fn layout(opts: &SignOptions, image_size: usize) -> Result<Layout, ImageBuildError> {
    opts.validate()?;
    let image_size = u32::try_from(image_size).map_err(|_| ImageBuildError::TooLarge {
        what: "the image",
        size: image_size as u64,
        max: u32::MAX.into(),
    })?;
    let protected = protected_area(opts)?;
    let header = ImageHeader {
        load_addr: opts
            .rom_fixed
            .filter(|a| *a != 0)
            .or(opts.load_addr)
            .unwrap_or(0),
        header_size: opts.header_size,
        protected_tlv_size: u16_len("the protected TLV area", protected.len())?,
        image_size,
        flags: header_flags(opts),
        version: opts.version,
    };
    Ok(Layout {
        header: header.to_bytes(),
        protected,
    })
}

/// The unprotected TLV area for an image with `digest` (and, for a pure
/// image, its hashed `region`), and the signatures: the hash TLV,
/// `SIG_PURE` for a pure image, then a KEYHASH (or PUBKEY) and signature
/// pair per key, then the ENC TLV of an encrypted image, in imgtool's order.
pub(crate) fn unprotected_area(
    opts: &SignOptions,
    digest: &ImageHash,
    region: Option<&[u8]>,
    signing: Signing<'_>,
    enc_tlv: Option<(u16, &[u8])>,
) -> Result<(Vec<u8>, Vec<Vec<u8>>), ImageBuildError> {
    let mut body = Vec::with_capacity(256);
    push_tlv(&mut body, digest.alg().tlv(), digest.as_bytes())?;
    let signed = if opts.pure {
        push_tlv(&mut body, tlv::SIG_PURE, &[1])?;
        Signed::Pure(region.ok_or_else(|| {
            ImageBuildError::Usage("a pure image is signed over its bytes, not a digest".into())
        })?)
    } else {
        Signed::Digest(digest)
    };
    let pad = |key: &AnyImageKey, mut sig: Vec<u8>| {
        if opts.pad_sig && key.signature_tlv() == tlv::ECDSASIG {
            sig.resize(PADDED_SIG_LEN.max(sig.len()), 0);
        }
        sig
    };
    let pairs: Vec<(AnyImageKey, Vec<u8>)> = match signing {
        Signing::Unsigned => Vec::new(),
        Signing::Keys(keys) => {
            let mut pairs = Vec::with_capacity(keys.len());
            for key in keys {
                let public = key.image_key()?;
                let sig = key.sign_image(signed)?;
                pairs.push((public.clone(), pad(&public, sig)));
            }
            pairs
        }
        Signing::Fixed {
            signature,
            public_key,
        } => {
            public_key
                .verify_image(signed, &signature)
                .map_err(|_| ImageBuildError::FixedSignatureInvalid)?;
            vec![(public_key, signature)]
        }
    };
    for (public_key, sig) in &pairs {
        match opts.public_key_format {
            PublicKeyFormat::Hash => push_tlv(
                &mut body,
                tlv::KEYHASH,
                key_hash(public_key, digest.alg()).as_bytes(),
            )?,
            PublicKeyFormat::Full => push_tlv(&mut body, tlv::PUBKEY, &image_key_der(public_key))?,
        }
        push_tlv(&mut body, public_key.signature_tlv(), sig)?;
    }
    if let Some((kind, value)) = enc_tlv {
        push_tlv(&mut body, kind, value)?;
    }
    Ok((
        finish_area(TLV_INFO_MAGIC, &body)?,
        pairs.into_iter().map(|(_, s)| s).collect(),
    ))
}

/// Refuse an image of `image_len` bytes that leaves no room for the trailer.
pub(crate) fn check_slot(opts: &SignOptions, image_len: usize) -> Result<(), ImageBuildError> {
    if opts.slot_size > 0 {
        let trailer = opts.trailer().size();
        if image_len + trailer > opts.slot_size as usize {
            return Err(ImageBuildError::ExceedsSlot {
                image: image_len,
                trailer,
                slot: opts.slot_size,
            });
        }
    }
    Ok(())
}

/// Build an image from `input` (which already holds the header room when
/// `opts.pad_header`), signed as `signing` says, or the vector to sign.
pub fn build(
    input: FirmwareInput,
    opts: &SignOptions,
    signing: Signing<'_>,
    vector: Option<VectorToSign>,
) -> Result<SignedImage, ImageBuildError> {
    opts.validate()?;
    let header_size = usize::from(opts.header_size);
    let FirmwareInput {
        data: mut payload,
        mut base_addr,
    } = input;
    if opts.pad_header {
        // imgtool moves a non-zero HEX base down to make room for the header.
        if let Some(b) = base_addr.filter(|b| *b != 0) {
            base_addr = Some(b.checked_sub(u32::from(opts.header_size)).ok_or_else(|| {
                ImageBuildError::Usage(format!("HEX base address {b:#x} is below the header size"))
            })?);
        }
    }
    if payload.len() < header_size {
        return Err(ImageBuildError::InputSmallerThanHeader {
            len: payload.len(),
            header_size: opts.header_size,
        });
    }
    if !opts.pad_header && payload[..header_size].iter().any(|&b| b != 0) {
        return Err(ImageBuildError::HeaderNotZero(opts.header_size));
    }
    let alg = signing.hash_alg(opts)?;
    if let Some(e) = &opts.encrypt {
        e.validate()?;
        // AES-CTR runs over whole blocks: imgtool zero-pads the image
        // (header room and payload) to a multiple of 16 bytes first.
        let rem = payload.len() % 16;
        if rem != 0 {
            payload.resize(payload.len() + 16 - rem, 0);
        }
    }
    let layout = layout(opts, payload.len() - header_size)?;
    payload[..layout.header.len()].copy_from_slice(&layout.header);
    payload.extend_from_slice(&layout.protected);
    let digest = image_hash(alg, &[&payload]);

    match vector {
        Some(VectorToSign::Payload) => {
            return Ok(SignedImage {
                bytes: payload,
                base_addr,
                digest,
                signatures: Vec::new(),
                is_vector: true,
            });
        }
        Some(VectorToSign::Digest) => {
            return Ok(SignedImage {
                bytes: digest.as_bytes().to_vec(),
                base_addr,
                digest,
                signatures: Vec::new(),
                is_vector: true,
            });
        }
        None => {}
    }
    // The hash and signatures cover the plaintext; then the AES key is
    // wrapped and, unless --clear, the payload encrypted.
    let image_end = payload.len() - layout.protected.len();
    let aes_key = opts
        .encrypt
        .as_ref()
        .map(|e| super::encrypt::random_aes_key(e.key_len()));
    let enc_tlv = match (&opts.encrypt, &aes_key) {
        (Some(e), Some(key)) => Some((
            e.scheme().tlv(),
            super::encrypt::wrap_for(&e.key, e.scheme(), key)?,
        )),
        _ => None,
    };
    let (unprotected, signatures) = unprotected_area(
        opts,
        &digest,
        Some(&payload),
        signing,
        enc_tlv.as_ref().map(|(k, v)| (*k, v.as_slice())),
    )?;
    if let (Some(e), Some(key)) = (&opts.encrypt, &aes_key) {
        if !e.clear {
            firmware::image::enc::ctr_apply(key, 0, &mut payload[header_size..image_end])
                .map_err(ImageBuildError::Encryption)?;
        }
    }
    payload.extend_from_slice(&unprotected);
    check_slot(opts, payload.len())?;
    Ok(SignedImage {
        bytes: payload,
        base_addr,
        digest,
        signatures,
        is_vector: false,
    })
}
