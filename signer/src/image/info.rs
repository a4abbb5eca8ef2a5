//! A serialisable description of an image, for `verify` and `dumpinfo`.

use firmware::image::HashAlg;
use firmware::image::{flags, tlv, Image, ImageError, Tail};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// One TLV as shown to people and scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlvEntry {
    /// Offset of the TLV header.
    pub offset: usize,
    /// Numeric type.
    #[serde(rename = "type")]
    pub kind: u16,
    /// imgtool's name for it, or `CUSTOM`.
    pub name: String,
    /// Value length.
    pub len: usize,
    /// Value, hex.
    pub value: String,
}

/// The whole structure of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    /// Load address field.
    pub load_addr: u32,
    /// Header size.
    pub header_size: u16,
    /// Protected TLV area size.
    pub protected_tlv_size: u16,
    /// Payload size.
    pub image_size: u32,
    /// Flags, numeric.
    pub flags: u32,
    /// Flags by name.
    pub flag_names: Vec<String>,
    /// Version, `major.minor.revision+build`.
    pub version: String,
    /// Security counter, if present.
    pub security_counter: Option<u32>,
    /// The hashed region's digest, computed with the algorithm of the
    /// image's hash TLV (SHA-256 when it has none).
    pub computed_digest: String,
    /// Protected TLVs.
    pub protected_tlvs: Vec<TlvEntry>,
    /// Unprotected TLVs.
    pub unprotected_tlvs: Vec<TlvEntry>,
    /// End of the TLV areas.
    pub tlv_end: usize,
    /// File length.
    pub file_len: usize,
    /// What follows the TLVs.
    pub tail: Tail,
}

/// Describe a structurally valid image. Fails only if the bytes after the TLVs
/// are not padding and a trailer.
pub fn describe(image: &Image<'_>) -> Result<ImageInfo, ImageError> {
    let h = image.header();
    let entry = |t: firmware::image::Tlv<'_>| TlvEntry {
        offset: t.offset,
        kind: t.kind,
        name: tlv::name(t.kind).unwrap_or("CUSTOM").to_owned(),
        len: t.value.len(),
        value: hex::encode(t.value),
    };
    let (protected_tlvs, unprotected_tlvs): (Vec<_>, Vec<_>) =
        image.tlvs().partition(|t| t.protected);
    Ok(ImageInfo {
        load_addr: h.load_addr,
        header_size: h.header_size,
        protected_tlv_size: h.protected_tlv_size,
        image_size: h.image_size,
        flags: h.flags,
        flag_names: flags::NAMES
            .iter()
            .filter(|(bit, _)| h.flags & bit != 0)
            .map(|(_, n)| (*n).to_owned())
            .collect(),
        version: h.version.to_string(),
        security_counter: image.security_counter(),
        computed_digest: {
            let alg = image
                .tlvs()
                .filter(|t| !t.protected)
                .find_map(|t| HashAlg::from_tlv(t.kind))
                .unwrap_or(HashAlg::Sha256);
            match alg.hash(&[image.hashed_region()]) {
                Some(digest) => hex::encode(digest),
                None => hex::encode(Sha256::digest(image.hashed_region())),
            }
        },
        protected_tlvs: protected_tlvs.into_iter().map(entry).collect(),
        unprotected_tlvs: unprotected_tlvs.into_iter().map(entry).collect(),
        tlv_end: image.tlv_end(),
        file_len: image.bytes().len(),
        tail: image.tail()?,
    })
}
