use std::path::PathBuf;

use crate::intel_hex::{HexError, HexWriteError};
use crate::keys::SignerError;

/// Why an image could not be built or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageBuildError {
    /// The input file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The input is not valid Intel HEX.
    #[error("{path}: {source}")]
    Hex {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: HexError,
    },
    /// Options that contradict each other or are out of range.
    #[error("{0}")]
    Usage(String),
    /// The input does not start with the zeros a non-padded header needs.
    #[error("header padding was not requested (--pad-header) and the image does not start with {0} zero bytes")]
    HeaderNotZero(u16),
    /// The input is shorter than the header it must contain.
    #[error("input is {len} bytes, smaller than the header size {header_size}")]
    InputSmallerThanHeader {
        /// Input length.
        len: usize,
        /// Header size.
        header_size: u16,
    },
    /// The image does not fit in a field of the format.
    #[error("{what} is {size:#x} bytes, more than the image format can hold ({max:#x})")]
    TooLarge {
        /// What overflowed.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The image plus trailer does not fit in the slot.
    #[error("image size {image:#x} + trailer {trailer:#x} exceeds the slot size {slot:#x}")]
    ExceedsSlot {
        /// Image size.
        image: usize,
        /// Trailer size.
        trailer: usize,
        /// Slot size.
        slot: u32,
    },
    /// A HEX output needs an address that neither input nor `--hex-addr` gave.
    #[error("no address for the HEX output: the input has none and --hex-addr was not given")]
    NoHexAddress,
    /// The output could not be encoded as Intel HEX.
    #[error("cannot write Intel HEX: {0}")]
    HexWrite(#[from] HexWriteError),
    /// A key could not be used.
    #[error(transparent)]
    Key(#[from] SignerError),
    /// `--fix-sig` does not verify with `--fix-sig-pubkey` over this image.
    #[error(
        "the fixed signature does not verify with the given public key over this image's digest"
    )]
    FixedSignatureInvalid,
    /// The image's encryption key could not be wrapped or unwrapped.
    #[error("image encryption: {0}")]
    Encryption(firmware::image::enc::EncError),
    /// The output could not be written.
    #[error(transparent)]
    Write(#[from] crate::atomic::WriteError),
    /// A prebuilt image to be signed does not parse.
    #[error("not an MCUboot image: {0}")]
    NotAnImage(#[from] firmware::image::ImageError),
    /// A prebuilt image to be signed already carries a key or signature TLV.
    #[error(
        "the image is already signed (its unprotected TLVs hold {0}); sign the unsigned image"
    )]
    AlreadySigned(&'static str),
    /// A prebuilt image's SHA256 TLV does not match its bytes.
    #[error("the image's SHA256 TLV does not match its header, payload and protected TLVs")]
    HashMismatch,
    /// A padded prebuilt image has no erased room after its TLVs for the
    /// key and signature TLVs.
    #[error("no room for the signature: {needed} erased bytes are needed after the TLVs, {available} are there")]
    NoRoomForSignature {
        /// Bytes the new TLVs take.
        needed: usize,
        /// Erased bytes available.
        available: usize,
    },
}

impl ImageBuildError {
    /// Whether imgtool would call this a usage error (exit code 2) rather
    /// than a failure (exit code 1).
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            Self::Write(_)
                | Self::FixedSignatureInvalid
                | Self::Encryption(_)
                | Self::HashMismatch
                | Self::NotAnImage(_)
                | Self::AlreadySigned(_)
                | Self::NoRoomForSignature { .. }
        )
    }
}
