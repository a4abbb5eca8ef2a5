//! The P-256 arithmetic on hosts: RustCrypto's `p256` (fast, constant-time).
//! The microcontrollers use `compact.rs`, which is much smaller.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};

/// Which implementation this build verifies with.
pub(crate) const NAME: &str = "rustcrypto-p256";

/// Whether `sec1` (uncompressed) is a point on the curve.
pub(crate) fn on_curve(sec1: &[u8; 65]) -> bool {
    VerifyingKey::from_sec1_bytes(sec1).is_ok()
}

/// ECDSA verification of `r`, `s` (big-endian, already in range) over a
/// SHA-256 digest.
pub(crate) fn verify(sec1: &[u8; 65], digest: &[u8; 32], r: &[u8; 32], s: &[u8; 32]) -> bool {
    let (Ok(key), Ok(sig)) = (
        VerifyingKey::from_sec1_bytes(sec1),
        Signature::from_scalars(*r, *s),
    ) else {
        return false;
    };
    key.verify_prehash(digest, &sig).is_ok()
}
