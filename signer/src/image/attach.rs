//! Signing an image that was built without a signature (`keytool image sign`
//! or `imgtool sign` without a key): the release flow approves exactly those
//! bytes, then adds the key and signature TLVs without rebuilding anything
//! the hash covers.

use firmware::image::keys::{HashAlg, ImageHash};
use firmware::image::{tlv, Image, TLV_HEADER_SIZE};

use super::build::{image_hash, unprotected_area};
use super::{ImageBuildError, PublicKeyFormat, SignOptions, SignedImage, Signing};

/// What a release is about: an unsigned image, as parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prebuilt {
    /// The image hash over header, payload and protected TLVs (its hash TLV).
    pub digest: ImageHash,
    /// The version in the header.
    pub version: firmware::image::ImageVersion,
    /// The protected security counter, if any.
    pub security_counter: Option<u32>,
    /// Size up to the end of the TLVs, before signing.
    pub size: usize,
    /// The whole file, padding and trailer included (what the slot holds).
    pub file_size: usize,
    /// Names of the protected TLVs present (imgtool's names, or `0x…`).
    pub protected_tlvs: Vec<String>,
}

impl Prebuilt {
    /// Parse an unsigned image and check its hash: its unprotected area may
    /// hold only its hash TLV (SHA-256, SHA-384 or SHA-512), and that must
    /// match the bytes. Bytes after
    /// the TLV area must be erased, optionally ending in a valid MCUboot
    /// trailer: nothing unsigned rides along.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageBuildError> {
        let image = Image::parse(bytes)?;
        image.tail()?;
        let mut hash = None;
        for t in image.tlvs().filter(|t| !t.protected) {
            match HashAlg::from_tlv(t.kind) {
                Some(alg) if hash.is_none() => hash = Some((alg, t.value)),
                _ => {
                    return Err(ImageBuildError::AlreadySigned(
                        tlv::name(t.kind).unwrap_or("an unknown TLV"),
                    ))
                }
            }
        }
        let (alg, value) = hash.ok_or(ImageBuildError::HashMismatch)?;
        let digest = image_hash(alg, &[image.hashed_region()]);
        if value != digest.as_bytes() {
            return Err(ImageBuildError::HashMismatch);
        }
        let protected_tlvs = image
            .tlvs()
            .filter(|t| t.protected)
            .map(|t| tlv::name(t.kind).map_or_else(|| format!("{:#06x}", t.kind), str::to_owned))
            .collect();
        Ok(Self {
            digest,
            version: image.header().version,
            security_counter: image.security_counter(),
            size: image.tlv_end(),
            file_size: bytes.len(),
            protected_tlvs,
        })
    }
}

/// Sign the unsigned image `bytes` with `keys`, adding a KEYHASH (or
/// PUBKEY) and signature pair per key after the hash TLV. Every key must
/// sign the image's hash. A padded image keeps its length: the new TLVs take
/// erased bytes after the TLV area, and the trailer stays put.
pub fn sign_prebuilt(
    bytes: &[u8],
    keys: &[&dyn crate::keys::Signer],
    format: PublicKeyFormat,
) -> Result<SignedImage, ImageBuildError> {
    let prebuilt = Prebuilt::parse(bytes)?;
    let image = Image::parse(bytes)?;
    let mut opts = SignOptions::new(prebuilt.version, image.header().header_size, 0);
    opts.public_key_format = format;
    opts.sha = Some(prebuilt.digest.alg());
    let signing = Signing::Keys(keys.to_vec());
    // Every key must take the image's hash (`--sha` as it was built).
    signing.hash_alg(&opts)?;
    let (area, signatures) = unprotected_area(&opts, &prebuilt.digest, None, signing, None)?;
    let start = image.unprotected_range().start;
    let end = image.tlv_end();
    let growth = area.len() - (end - start);
    let tail = &bytes[end..];
    let mut out = Vec::with_capacity(bytes.len() + growth);
    out.extend_from_slice(&bytes[..start]);
    out.extend_from_slice(&area);
    if !tail.is_empty() {
        let erased = tail[0];
        let available = tail
            .iter()
            .take_while(|&&b| b == erased && (b == 0xff || b == 0))
            .count();
        if available < growth {
            return Err(ImageBuildError::NoRoomForSignature {
                needed: growth,
                available,
            });
        }
        out.extend_from_slice(&tail[growth..]);
    }
    debug_assert!(growth >= 2 * TLV_HEADER_SIZE);
    Ok(SignedImage {
        bytes: out,
        base_addr: None,
        digest: prebuilt.digest,
        signatures,
        is_vector: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{build, FirmwareInput, SecurityCounter};
    use crate::keys::FileKey;
    use firmware::image::ImageVersion;

    fn key() -> FileKey {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/data/images/dev-key.pem"
        );
        FileKey::open(crate::KeyRef::File(path.into())).unwrap()
    }

    fn opts(pad: bool) -> SignOptions {
        let mut o = SignOptions::new(ImageVersion::default(), 0x20, 0x4000);
        o.version = "1.2.3+4".parse().unwrap();
        o.security_counter = Some(SecurityCounter::Value(7));
        o.pad = pad;
        o
    }

    fn input() -> FirmwareInput {
        let mut data = vec![0u8; 0x20];
        data.extend((0..600u32).map(|i| i as u8));
        FirmwareInput {
            data,
            base_addr: None,
        }
    }

    #[test]
    fn signing_later_gives_the_bytes_signing_at_once_gives() {
        let key = key();
        for pad in [false, true] {
            let o = opts(pad);
            let unsigned = build(input(), &o, Signing::Unsigned, None).unwrap();
            let mut unsigned_bytes = unsigned.bytes.clone();
            if pad {
                let tail = crate::image::output::padded_tail(&o, unsigned_bytes.len());
                unsigned_bytes.extend_from_slice(&tail);
            }
            let info = Prebuilt::parse(&unsigned_bytes).unwrap();
            assert_eq!(info.security_counter, Some(7));
            assert_eq!(info.version.to_string(), "1.2.3+4");
            assert_eq!(info.protected_tlvs, ["SEC_CNT"]);
            let later = sign_prebuilt(&unsigned_bytes, &[&key], PublicKeyFormat::Hash).unwrap();
            let at_once = build(input(), &o, Signing::key(&key), None).unwrap();
            // ECDSA signatures are randomized: compare all but the signature,
            // and check the signature.
            let image = Image::parse(&later.bytes).unwrap();
            let public = crate::keys::Signer::public_key(&key).unwrap();
            let verified = image.verify(&[public], None);
            assert!(verified.is_ok(), "{verified:?}");
            assert_eq!(later.digest, at_once.digest);
            assert_eq!(
                &later.bytes[..image.unprotected_range().start],
                &at_once.bytes[..image.unprotected_range().start]
            );
            if pad {
                assert_eq!(
                    later.bytes.len(),
                    unsigned_bytes.len(),
                    "a padded image keeps its length"
                );
            }
        }
    }

    #[test]
    fn signed_tampered_or_cramped_images_are_refused() {
        let key = key();
        let o = opts(false);
        let signed = build(input(), &o, Signing::key(&key), None).unwrap();
        assert!(matches!(
            Prebuilt::parse(&signed.bytes),
            Err(ImageBuildError::AlreadySigned("KEYHASH"))
        ));
        let mut tampered = build(input(), &o, Signing::Unsigned, None).unwrap().bytes;
        tampered[0x30] ^= 1;
        assert!(matches!(
            Prebuilt::parse(&tampered),
            Err(ImageBuildError::HashMismatch)
        ));
        let mut cramped = build(input(), &o, Signing::Unsigned, None).unwrap().bytes;
        cramped.extend_from_slice(&[0xff; 10]);
        assert!(matches!(
            sign_prebuilt(&cramped, &[&key], PublicKeyFormat::Hash),
            Err(ImageBuildError::NoRoomForSignature { .. })
        ));
        assert!(Prebuilt::parse(b"not an image").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_err(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = Prebuilt::parse(&bytes);
        }
    }
}
