//! The device-authentication message (docs/device-auth.md): what a device
//! signs with its per-device key to answer the backend's challenge, and the
//! device's signer. Defined here once, for the backend that checks it, the
//! station that tests it and firmware that answers it.

use sha2::{Digest, Sha256};

use crate::record::HwId;

pub mod line;

/// Context string that separates device-authentication signatures from any
/// other use of the device key.
pub const AUTH_CONTEXT: &[u8] = b"nrf-fleet/device-auth/v1\0";

/// The digest a device signs: SHA-256 of the context string, the 32-byte
/// nonce, the 8-byte hw_id and the serial (u32 little-endian).
pub fn auth_digest(nonce: &[u8; 32], hw_id: HwId, serial: u32) -> [u8; 32] {
    Sha256::new()
        .chain_update(AUTH_CONTEXT)
        .chain_update(nonce)
        .chain_update(hw_id.0)
        .chain_update(serial.to_le_bytes())
        .finalize()
        .into()
}

/// Why a device could not answer a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The device key is not a P-256 scalar in 1..n.
    #[error("the device key is not a valid P-256 private key")]
    InvalidKey,
}

/// ECDSA P-256 over a SHA-256 `digest` with the private scalar `scalar`
/// (big-endian): `r ‖ s`, the nonce derived from key and digest (RFC 6979),
/// so no random source is needed at signing time. RustCrypto's `SigningKey`
/// zeroizes the scalar when dropped and `ecdsa` the nonce; its scalar
/// multiplication does not branch on secrets.
pub(crate) fn sign_digest(scalar: &[u8; 32], digest: &[u8; 32]) -> Result<[u8; 64], SignError> {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::ecdsa::{Signature, SigningKey};

    let key = SigningKey::from_slice(scalar).map_err(|_| SignError::InvalidKey)?;
    let signature: Signature = key
        .sign_prehash(digest)
        .map_err(|_| SignError::InvalidKey)?;
    Ok(signature.to_bytes().into())
}

/// The device's answer to a challenge: its signature over
/// [`auth_digest`]`(nonce, hw_id, serial)`, `r ‖ s`.
pub fn sign_auth(
    scalar: &[u8; 32],
    nonce: &[u8; 32],
    hw_id: HwId,
    serial: u32,
) -> Result<[u8; 64], SignError> {
    sign_digest(scalar, &auth_digest(nonce, hw_id, serial))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::P256PublicKey;

    fn unhex<const N: usize>(h: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// RFC 6979, A.2.5: P-256 with SHA-256, messages "sample" and "test".
    #[test]
    fn rfc6979_known_answers() {
        let x = unhex::<32>("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721");
        for (msg, r, s) in [
            (
                &b"sample"[..],
                "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716",
                "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8",
            ),
            (
                &b"test"[..],
                "f1abb023518351cd71d881567b1ea663ed3efcf6c5132b354f28d3b0b7d38367",
                "019f4113742a2b14bd25926b49c649155f267e60d3814b4c0cc84250e46f0083",
            ),
        ] {
            let digest: [u8; 32] = Sha256::digest(msg).into();
            let sig = sign_digest(&x, &digest).unwrap();
            assert_eq!(sig[..32], unhex::<32>(r), "r for {msg:?}");
            assert_eq!(sig[32..], unhex::<32>(s), "s for {msg:?}");
        }
    }

    #[test]
    fn answers_verify_and_bind_every_input() {
        let x = unhex::<32>("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721");
        let public = {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            let sk = p256::SecretKey::from_slice(&x).unwrap();
            let point = sk.public_key().to_encoded_point(false);
            P256PublicKey::from_sec1(point.as_bytes()).unwrap()
        };
        let (nonce, hw_id) = ([7u8; 32], HwId::from_deviceid(3, 0x1234_5678));
        let sig = sign_auth(&x, &nonce, hw_id, 17).unwrap();
        assert_eq!(sign_auth(&x, &nonce, hw_id, 17), Ok(sig), "deterministic");
        let digest = auth_digest(&nonce, hw_id, 17);
        assert!(public.verify_digest_raw(&digest, &sig).is_ok());
        for other in [
            auth_digest(&[8u8; 32], hw_id, 17),
            auth_digest(&nonce, HwId::from_deviceid(4, 0x1234_5678), 17),
            auth_digest(&nonce, hw_id, 18),
        ] {
            assert!(public.verify_digest_raw(&other, &sig).is_err());
        }
    }

    #[test]
    fn keys_outside_the_group_are_refused() {
        let order = unhex::<32>("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
        for bad in [[0u8; 32], [0xff; 32], order] {
            assert_eq!(
                sign_auth(&bad, &[0; 32], HwId([0; 8]), 1),
                Err(SignError::InvalidKey)
            );
        }
    }
}
