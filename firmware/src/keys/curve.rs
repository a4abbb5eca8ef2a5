//! The P-256 arithmetic: RustCrypto's `p256` (portable, constant-time).
//!
//! `p256-cm4` (a Cortex-M4 port of P256-Cortex-M4, about 10 KiB) was tried
//! here and left out: its `mul288x288` uses a single-register `LDM.W`, an
//! UNPREDICTABLE encoding in ARMv7-M that QEMU's Cortex-M4 rejects as
//! undefined (docs/benchmarks.md).

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};

/// Which implementation this build verifies with.
pub const NAME: &str = "rustcrypto-p256";

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
