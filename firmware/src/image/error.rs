use crate::keys::KeyError;

/// Why an image was refused. Offsets are byte offsets into the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The image ends before a structure it must contain.
    #[error(
        "image truncated: {what} needs bytes up to offset {needed:#x}, image is {len:#x} bytes"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// End offset that was needed.
        needed: u64,
        /// Actual length.
        len: usize,
    },
    /// The image is hashed with an algorithm this build leaves out.
    #[error("the image is hashed with TLV type {0:#x}, which this build does not verify")]
    UnsupportedHash(u16),
    /// The header does not start with MCUboot's magic.
    #[error("invalid image magic {found:#010x}; is this an MCUboot image?")]
    BadMagic {
        /// The value found.
        found: u32,
    },
    /// The header claims to be shorter than the 32-byte header structure.
    #[error("header size {0:#x} is smaller than the 32-byte image header")]
    HeaderTooSmall(u16),
    /// A TLV info header has the wrong magic.
    #[error("invalid TLV info magic {found:#06x} at offset {offset:#x} (expected {expected:#06x}); is this an MCUboot image?")]
    BadTlvInfoMagic {
        /// Where the info header is.
        offset: usize,
        /// Magic found.
        found: u16,
        /// Magic expected.
        expected: u16,
    },
    /// The header's protected TLV size disagrees with the protected area.
    #[error("header says the protected TLV area is {header:#x} bytes but the area says {area:#x}")]
    ProtectedSizeMismatch {
        /// Size in the image header.
        header: u16,
        /// Size in the protected TLV info (0 if absent).
        area: u16,
    },
    /// A TLV area's total length is smaller than its own info header.
    #[error("TLV area at offset {offset:#x} has a total length {total:#x} below 4")]
    BadTlvAreaLength {
        /// Where the area starts.
        offset: usize,
        /// The total length it claims.
        total: u16,
    },
    /// A TLV runs past the end of its area.
    #[error("TLV at offset {offset:#x} runs past the end of its area at {area_end:#x}")]
    TlvOverrun {
        /// Where the TLV header is.
        offset: usize,
        /// End of its area.
        area_end: usize,
    },
    /// A TLV type that MCUboot refuses outside the protected area.
    #[error("TLV type {kind:#x} at offset {offset:#x} is not allowed in the unprotected TLV area")]
    UnprotectedTlvNotAllowed {
        /// The TLV type.
        kind: u16,
        /// Where the TLV header is.
        offset: usize,
    },
    /// A hash, key or signature TLV in the protected area.
    #[error("TLV type {kind:#x} at offset {offset:#x} belongs in the unprotected TLV area")]
    MisplacedTlv {
        /// The TLV type.
        kind: u16,
        /// Where the TLV header is.
        offset: usize,
    },
    /// A TLV that may appear only once appears again.
    #[error("TLV type {kind:#x} appears more than once (again at offset {offset:#x})")]
    DuplicateTlv {
        /// The TLV type.
        kind: u16,
        /// Where the repeat is.
        offset: usize,
    },
    /// A fixed-size TLV has the wrong length.
    #[error("TLV type {kind:#x} has length {len}, expected {expected}")]
    BadTlvLength {
        /// The TLV type.
        kind: u16,
        /// Its length.
        len: usize,
        /// The length it must have.
        expected: usize,
    },
    /// No SHA256 TLV.
    #[error("image has no SHA256 TLV")]
    MissingHash,
    /// The SHA256 TLV does not match the hashed region.
    #[error("image hash does not match its SHA256 TLV (the image was modified)")]
    HashMismatch,
    /// No signature at all where one is required.
    #[error("image is not signed (no ECDSASIG TLV)")]
    Unsigned,
    /// Signatures present, but none by a given key.
    #[error("image is not signed by the given key (KEYHASH/PUBKEY does not match)")]
    KeyMismatch,
    /// A signature by a given key does not verify.
    #[error("signature by the given key does not verify: {0}")]
    BadSignature(KeyError),
    /// No security counter where a minimum is enforced.
    #[error("image has no security counter TLV")]
    MissingSecurityCounter,
    /// The security counter is below the enforced minimum.
    #[error("security counter {found} is below the minimum {min}")]
    SecurityCounterTooLow {
        /// The image's counter.
        found: u32,
        /// The enforced minimum.
        min: u32,
    },
    /// Bytes after the TLV area that are neither erased padding nor a trailer.
    #[error("{len:#x} bytes after the TLV area at offset {offset:#x} are not erased padding and a valid trailer")]
    BadTail {
        /// Where the tail starts.
        offset: usize,
        /// Its length.
        len: usize,
    },
}

impl ImageError {
    /// A short stable reason code, for logs and consoles that should not
    /// carry the formatting machinery of the full message.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "truncated",
            Self::BadMagic { .. } => "bad-magic",
            Self::HeaderTooSmall(_) => "header-too-small",
            Self::BadTlvInfoMagic { .. } => "bad-tlv-magic",
            Self::ProtectedSizeMismatch { .. } => "protected-size-mismatch",
            Self::BadTlvAreaLength { .. } => "bad-tlv-area-length",
            Self::TlvOverrun { .. } => "tlv-overrun",
            Self::UnprotectedTlvNotAllowed { .. } => "unprotected-tlv-not-allowed",
            Self::MisplacedTlv { .. } => "misplaced-tlv",
            Self::DuplicateTlv { .. } => "duplicate-tlv",
            Self::BadTlvLength { .. } => "bad-tlv-length",
            Self::MissingHash => "missing-hash",
            Self::UnsupportedHash(_) => "unsupported-hash",
            Self::HashMismatch => "hash-mismatch",
            Self::Unsigned => "unsigned",
            Self::KeyMismatch => "key-mismatch",
            Self::BadSignature(_) => "bad-signature",
            Self::MissingSecurityCounter => "missing-security-counter",
            Self::SecurityCounterTooLow { .. } => "security-counter-too-low",
            Self::BadTail { .. } => "bad-tail",
        }
    }
}
