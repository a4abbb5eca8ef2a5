//! Verification at the device end, and the one definition of every wire format
//! the product uses.
//!
//! * [`image`]: the MCUboot image layout (header, protected and unprotected TLV
//!   areas, trailer) and its verification (hash, KEYHASH, ECDSA P-256,
//!   security counter). `signer` builds images with these same definitions.
//! * [`keys`]: P-256 public keys as MCUboot embeds them (DER
//!   SubjectPublicKeyInfo) and their SHA-256 key id (MCUboot's KEYHASH).
//! * [`record`] and [`partition`]: the provisioning record and the partition
//!   that holds it with the device's key block and certificate.
//! * [`auth`]: the device-authentication message and the device's signer.
//! * [`boot`]: the boot decision (upgrade, verification, rollback counter).
//! * `api` (feature `api`, host only): the provisioning backend's JSON request
//!   and response bodies, shared by the server and its clients.
//!
//! The crate is `no_std`, allocates nothing (but in the host-only `api`
//! module) and never panics on input: every parser returns a typed error. Formats are specified in `docs/` at the root
//! of the repository (`docs/image-format.md`).
#![no_std]
#![cfg_attr(not(feature = "capi"), forbid(unsafe_code))]
#![cfg_attr(feature = "capi", deny(unsafe_code))]

// Hosted targets link std (for tests, and so that libfirmware.a built for the
// host carries a panic handler); bare-metal targets get the one below.
#[cfg(any(test, not(target_os = "none")))]
extern crate std;

#[cfg(any(feature = "api", feature = "rsa"))]
extern crate alloc;

#[cfg(feature = "api")]
pub mod api;
pub mod auth;
pub mod boot;
#[cfg(feature = "capi")]
pub mod capi;
pub mod image;
pub mod keygen;
pub mod keys;
pub mod partition;
pub mod record;
pub mod text;

pub use keys::{KeyError, P256PublicKey};

/// Bare-metal builds of this crate (including `libfirmware.a` for the thumb
/// targets, and programs that use it) stop on a panic. Nothing here panics on
/// input: every parser returns an error; this only satisfies the language.
#[cfg(all(target_os = "none", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
