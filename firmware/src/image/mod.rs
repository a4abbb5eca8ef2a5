//! The MCUboot image format: one definition, used to parse and verify here and
//! to build and sign in `signer`.
//!
//! Layout (all little-endian), as specified in `docs/image-format.md`:
//!
//! ```text
//! +--------------------+ 0
//! | header (32 bytes)  |   magic, load address, header size, protected TLV size,
//! | + padding          |   image size, flags, version
//! +--------------------+ header_size
//! | payload            |
//! +--------------------+ header_size + image_size
//! | protected TLVs     |   info 0x6908 + TLVs; covered by the hash
//! +--------------------+
//! | unprotected TLVs   |   info 0x6907 + SHA256, KEYHASH/PUBKEY, ECDSASIG
//! +--------------------+
//! | padding + trailer  |   only in images padded to the slot (`--pad`)
//! +--------------------+
//! ```

#[cfg(feature = "enc")]
pub mod enc;
mod error;
mod header;
pub mod keys;
mod parse;
mod trailer;
mod verify;
mod version;

pub use error::ImageError;
pub use header::{flags, ImageHeader, IMAGE_HEADER_SIZE, IMAGE_MAGIC};
pub use keys::{AnyImageKey, HashAlg, ImageHash, ImageKey};
pub use parse::{tlv_header, tlv_info, Image, Tlv, TlvIter, TLV_HEADER_SIZE};
pub use trailer::{
    magic_max_align, Tail, TrailerLayout, BOOT_MAGIC, BOOT_MAGIC_SIZE, DEFAULT_MAX_ALIGN,
    DEFAULT_MAX_SECTORS,
};
pub use verify::Verified;
pub use version::{ImageVersion, VersionError};

/// Magic of the TLV info header that opens the protected area.
pub const TLV_PROT_INFO_MAGIC: u16 = 0x6908;
/// Magic of the TLV info header that opens the unprotected area.
pub const TLV_INFO_MAGIC: u16 = 0x6907;
/// Size of a TLV info header (magic, total length).
pub const TLV_INFO_SIZE: usize = 4;

/// TLV types MCUboot defines (`bootutil/image.h`).
pub mod tlv {
    /// SHA-256 of the DER public key that signed the image.
    pub const KEYHASH: u16 = 0x01;
    /// The DER public key itself (`--public-key-format full`).
    pub const PUBKEY: u16 = 0x02;
    /// SHA-256 of header, payload and protected TLVs.
    pub const SHA256: u16 = 0x10;
    /// SHA-384 image hash.
    pub const SHA384: u16 = 0x11;
    /// SHA-512 image hash.
    pub const SHA512: u16 = 0x12;
    /// RSA-2048 PSS signature.
    pub const RSA2048: u16 = 0x20;
    /// ECDSA signature (DER), P-256 or P-384.
    pub const ECDSASIG: u16 = 0x22;
    /// RSA-3072 PSS signature.
    pub const RSA3072: u16 = 0x23;
    /// Ed25519 signature.
    pub const ED25519: u16 = 0x24;
    /// Marks a "pure" signature over the image rather than its hash.
    pub const SIG_PURE: u16 = 0x25;
    /// Encrypted AES key, RSA-OAEP.
    pub const ENCRSA2048: u16 = 0x30;
    /// Encrypted AES key, AES key wrap.
    pub const ENCKW: u16 = 0x31;
    /// Encrypted AES key, ECIES P-256.
    pub const ENCEC256: u16 = 0x32;
    /// Encrypted AES key, ECIES X25519.
    pub const ENCX25519: u16 = 0x33;
    /// Encrypted AES key, ECIES X25519 with HMAC-SHA512.
    pub const ENCX25519_SHA512: u16 = 0x34;
    /// Dependency on another image's version.
    pub const DEPENDENCY: u16 = 0x40;
    /// Security counter (u32), for rollback protection.
    pub const SEC_CNT: u16 = 0x50;
    /// CBOR boot record (measured boot).
    pub const BOOT_RECORD: u16 = 0x60;
    /// Size of the decompressed image.
    pub const DECOMP_SIZE: u16 = 0x70;
    /// Hash of the decompressed image.
    pub const DECOMP_SHA: u16 = 0x71;
    /// Signature of the decompressed image.
    pub const DECOMP_SIGNATURE: u16 = 0x72;
    /// Decompressed size of an encrypted compressed image.
    pub const COMP_DEC_SIZE: u16 = 0x73;
    /// Vendor UUID.
    pub const UUID_VID: u16 = 0x74;
    /// Image class UUID.
    pub const UUID_CID: u16 = 0x75;
    /// Lowest type available to vendors (`--custom-tlv`).
    pub const VENDOR_MIN: u16 = 0x00a0;
    /// Highest type available to vendors.
    pub const VENDOR_MAX: u16 = 0xfffe;

    const NAMES: [(u16, &str); 24] = [
        (KEYHASH, "KEYHASH"),
        (PUBKEY, "PUBKEY"),
        (SHA256, "SHA256"),
        (SHA384, "SHA384"),
        (SHA512, "SHA512"),
        (RSA2048, "RSA2048"),
        (ECDSASIG, "ECDSASIG"),
        (RSA3072, "RSA3072"),
        (ED25519, "ED25519"),
        (SIG_PURE, "SIG_PURE"),
        (ENCRSA2048, "ENCRSA2048"),
        (ENCKW, "ENCKW"),
        (ENCEC256, "ENCEC256"),
        (ENCX25519, "ENCX25519"),
        (ENCX25519_SHA512, "ENCX25519_SHA512"),
        (DEPENDENCY, "DEPENDENCY"),
        (SEC_CNT, "SEC_CNT"),
        (BOOT_RECORD, "BOOT_RECORD"),
        (DECOMP_SIZE, "DECOMP_SIZE"),
        (DECOMP_SHA, "DECOMP_SHA"),
        (DECOMP_SIGNATURE, "DECOMP_SIGNATURE"),
        (COMP_DEC_SIZE, "COMP_DEC_SIZE"),
        (UUID_VID, "UUID_VID"),
        (UUID_CID, "UUID_CID"),
    ];

    /// The name imgtool uses for a TLV type, if it is a defined one.
    pub fn name(kind: u16) -> Option<&'static str> {
        NAMES.iter().find(|(k, _)| *k == kind).map(|(_, n)| *n)
    }

    /// The type imgtool calls `name` (case-insensitive), if defined.
    pub fn kind(name: &str) -> Option<u16> {
        NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(k, _)| *k)
    }

    /// Whether `kind` is one of the types MCUboot defines (and so not free for
    /// `--custom-tlv`).
    pub fn is_defined(kind: u16) -> bool {
        name(kind).is_some()
    }

    /// MCUboot's allow-list for the unprotected area: key, hash, signature
    /// (and the pure marker) and encrypted-key TLVs. Anything else must sit
    /// in the protected area, where the hash covers it.
    pub fn allowed_unprotected(kind: u16) -> bool {
        matches!(
            kind,
            KEYHASH
                | PUBKEY
                | SHA256
                | SHA384
                | SHA512
                | ECDSASIG
                | RSA2048
                | RSA3072
                | ED25519
                | SIG_PURE
                | ENCRSA2048
                | ENCKW
                | ENCEC256
                | ENCX25519
                | ENCX25519_SHA512
        )
    }
}
