//! Assembling an image: header, protected TLVs, hash, key and signature TLVs,
//! in the order imgtool writes them.

use firmware::image::{
    flags, tlv, tlv_header, tlv_info, ImageHeader, TLV_INFO_MAGIC, TLV_INFO_SIZE,
    TLV_PROT_INFO_MAGIC,
};
use firmware::P256PublicKey;
use sha2::{Digest, Sha256};

use super::{FirmwareInput, ImageBuildError, PublicKeyFormat, SignOptions};
use crate::keys::Signer;

/// How the image gets its signature.
#[derive(Debug)]
pub enum Signing<'a> {
    /// No signature: only the SHA256 TLV.
    Unsigned,
    /// Sign with this key.
    Key(&'a dyn Signer),
    /// A signature made elsewhere (`--fix-sig`), by `public_key`.
    Fixed {
        /// DER signature over the image digest.
        signature: Vec<u8>,
        /// The key that made it.
        public_key: P256PublicKey,
    },
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
    /// SHA-256 over header, payload and protected TLVs.
    pub digest: [u8; 32],
    /// The signature TLV's value, if signed.
    pub signature: Option<Vec<u8>>,
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

/// The unprotected TLV area for an image with `digest`, and the signature.
pub(crate) fn unprotected_area(
    opts: &SignOptions,
    digest: &[u8; 32],
    signing: Signing<'_>,
) -> Result<(Vec<u8>, Option<Vec<u8>>), ImageBuildError> {
    let mut body = Vec::with_capacity(256);
    push_tlv(&mut body, tlv::SHA256, digest)?;
    let signed = match signing {
        Signing::Unsigned => None,
        Signing::Key(key) => {
            let mut sig = key.sign_digest(digest)?.to_der();
            if opts.pad_sig {
                sig.resize(PADDED_SIG_LEN.max(sig.len()), 0);
            }
            Some((key.public_key()?, sig))
        }
        Signing::Fixed {
            signature,
            public_key,
        } => {
            public_key
                .verify_digest_der_padded(digest, &signature)
                .map_err(|_| ImageBuildError::FixedSignatureInvalid)?;
            Some((public_key, signature))
        }
    };
    if let Some((public_key, sig)) = &signed {
        match opts.public_key_format {
            PublicKeyFormat::Hash => push_tlv(&mut body, tlv::KEYHASH, &public_key.key_id())?,
            PublicKeyFormat::Full => push_tlv(&mut body, tlv::PUBKEY, &public_key.spki_der())?,
        }
        push_tlv(&mut body, tlv::ECDSASIG, sig)?;
    }
    Ok((finish_area(TLV_INFO_MAGIC, &body)?, signed.map(|(_, s)| s)))
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
    let layout = layout(opts, payload.len() - header_size)?;
    payload[..layout.header.len()].copy_from_slice(&layout.header);
    payload.extend_from_slice(&layout.protected);
    let digest: [u8; 32] = Sha256::digest(&payload).into();

    match vector {
        Some(VectorToSign::Payload) => {
            return Ok(SignedImage {
                bytes: payload,
                base_addr,
                digest,
                signature: None,
                is_vector: true,
            });
        }
        Some(VectorToSign::Digest) => {
            return Ok(SignedImage {
                bytes: digest.to_vec(),
                base_addr,
                digest,
                signature: None,
                is_vector: true,
            });
        }
        None => {}
    }
    let (unprotected, signature) = unprotected_area(opts, &digest, signing)?;
    payload.extend_from_slice(&unprotected);
    check_slot(opts, payload.len())?;
    Ok(SignedImage {
        bytes: payload,
        base_addr,
        digest,
        signature,
        is_vector: false,
    })
}
