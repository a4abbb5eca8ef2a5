//! Verification at the device end, and the one definition of every wire format
//! the product uses.
//!
//! * [`image`]: the MCUboot image layout (header, protected and unprotected TLV
//!   areas, trailer) and its verification (hash, KEYHASH, ECDSA P-256,
//!   security counter). `signer` builds images with these same definitions.
//! * [`keys`]: P-256 public keys as MCUboot embeds them (DER
//!   SubjectPublicKeyInfo) and their SHA-256 key id (MCUboot's KEYHASH).
//!
//! The crate is `no_std`, allocates nothing and never panics on input: every
//! parser returns a typed error. Formats are specified in `docs/` at the root
//! of the repository (`docs/image-format.md`).
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod image;
pub mod keys;
pub mod record;

pub use keys::{KeyError, P256PublicKey};
