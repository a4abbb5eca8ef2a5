//! Building and signing MCUboot images, byte-compatible with `imgtool sign`
//! for ECDSA P-256 keys, and describing images for `verify` and `dumpinfo`.
//!
//! The layout itself is `firmware::image`; this module only assembles it.

mod attach;
mod build;
pub mod encrypt;
mod error;
mod info;
mod input;
mod options;
mod output;
mod stream;

pub use attach::{sign_prebuilt, Prebuilt};
pub use build::{build, SignedImage, Signing, VectorToSign};
pub use error::ImageBuildError;
pub use info::{describe, ImageInfo, TlvEntry};
pub use input::{read_input, FirmwareInput};
pub use options::{
    parse_custom_tlv, parse_dependencies, parse_int, Dependency, PublicKeyFormat, SecurityCounter,
    SignOptions,
};
pub use output::{is_hex_path, write_output};
pub use stream::{sign_file, SignedFile};
