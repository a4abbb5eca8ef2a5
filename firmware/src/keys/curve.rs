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

/// ECDH: the x-coordinate of `secret`·`peer` (secret in 1..n, peer an
/// uncompressed point on the curve).
#[cfg(feature = "enc")]
pub(crate) fn ecdh_x(secret: &[u8; 32], peer: &[u8; 65]) -> Option<[u8; 32]> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let scalar: Option<p256::NonZeroScalar> =
        p256::NonZeroScalar::from_repr((*secret).into()).into();
    let peer = p256::PublicKey::from_sec1_bytes(peer).ok()?;
    let shared = (peer.to_projective() * *scalar?).to_affine();
    let point = shared.to_encoded_point(false);
    point.x().map(|x| (*x).into())
}
