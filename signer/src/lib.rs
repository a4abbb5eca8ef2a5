//! The station-side library: key references, the [`Signer`] abstraction and
//! its backends, and MCUboot image building and signing.
//!
//! Wire formats are not defined here: the image layout comes from the
//! `firmware` crate, so what we build is exactly what the device parses.

pub mod atomic;
pub mod certs;
pub mod image;
pub mod intel_hex;
pub mod key_ref;
pub mod keys;
pub mod public_key;
pub mod record;
#[cfg(feature = "test-support")]
pub mod testing;

pub use key_ref::{KeyRef, KeyRefError};
pub use keys::{open_signer, EcdsaSignature, Signer, SignerError};
