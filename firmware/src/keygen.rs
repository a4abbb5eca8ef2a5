//! Keys born on the chip (`docs/device-auth.md`, "Keys born on the chip"):
//! the proof of possession a chip gives for the key it generated, and the RAM
//! mailbox through which a station asks for it and reads it over the debug
//! port. One definition, for the application that answers and the station
//! that asks.
//!
//! Mailbox, at a fixed RAM address outside what the programs link into (on
//! QEMU's nRF51: `0x20003F00`), 256 bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `KREQ` (the station's request) or `KRSP` (the chip's answer) |
//! | 4 | 1 | format version (1) |
//! | 5 | 1 | answer status: 0 key ready, 1 no key and none can be made |
//! | 6 | 2 | reserved, zero |
//! | 8 | 32 | the station's nonce (request; kept in the answer) |
//! | 40 | 65 | the chip's public key, SEC1 uncompressed (answer) |
//! | 105 | 64 | proof of possession `r ‖ s` (answer) |
//!
//! The station acknowledges an answer by overwriting the mailbox with zeros.
//! The chip waits for that, up to [`ANSWER_HOLD_SECONDS`], before it goes on
//! with its start, so that a station that reads the mailbox while the chip
//! runs (and halts it to do so) is not raced by the application.

use sha2::{Digest, Sha256};

use crate::auth::SignError;
use crate::keys::P256PublicKey;
use crate::record::HwId;

/// Context string of a proof of possession: never valid as anything else.
pub const POP_CONTEXT: &[u8] = b"nrf-fleet/key-pop/v1\0";
/// Size of the mailbox.
pub const MAILBOX_LEN: usize = 256;
/// Magic of a request.
pub const REQUEST_MAGIC: [u8; 4] = *b"KREQ";
/// Magic of an answer.
pub const ANSWER_MAGIC: [u8; 4] = *b"KRSP";
/// Format version.
pub const MAILBOX_VERSION: u8 = 1;
/// How long a chip that answered waits for the station's acknowledgement.
pub const ANSWER_HOLD_SECONDS: u32 = 10;

/// Whether `mailbox` holds an answer the station has not acknowledged yet.
pub fn holds_answer(mailbox: &[u8]) -> bool {
    mailbox.get(..4) == Some(&ANSWER_MAGIC[..])
}

/// What a chip signs to prove it holds the private half of `public`: SHA-256
/// of the context, the public key, the hw_id and the station's nonce.
pub fn pop_digest(public: &[u8; 65], hw_id: HwId, nonce: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(POP_CONTEXT)
        .chain_update(public)
        .chain_update(hw_id.0)
        .chain_update(nonce)
        .finalize()
        .into()
}

/// Whether 32 random bytes make a P-256 private key (1 ≤ k < n); a chip
/// drawing its key draws again when not.
pub fn is_private_key(scalar: &[u8; 32]) -> bool {
    crate::keys::scalar_in_range(scalar)
}

/// The public key of `scalar` and its proof of possession for `nonce`.
pub fn prove(
    scalar: &[u8; 32],
    hw_id: HwId,
    nonce: &[u8; 32],
) -> Result<([u8; 65], [u8; 64]), SignError> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let secret = p256::SecretKey::from_slice(scalar).map_err(|_| SignError::InvalidKey)?;
    let point = secret.public_key().to_encoded_point(false);
    let public: [u8; 65] = point
        .as_bytes()
        .try_into()
        .map_err(|_| SignError::InvalidKey)?;
    let pop = crate::auth::sign_digest(scalar, &pop_digest(&public, hw_id, nonce))?;
    Ok((public, pop))
}

/// Why a proof of possession was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PopError {
    /// The mailbox holds no answer of this format.
    #[error("the chip has not answered (no KRSP in the mailbox)")]
    NoAnswer,
    /// The chip answered for another request.
    #[error("the chip answered another nonce")]
    WrongNonce,
    /// The chip has no key and cannot make one.
    #[error("the chip has no key and could not make one")]
    NoKey,
    /// The public key is not a P-256 point.
    #[error("the chip's public key is not a P-256 point")]
    BadKey,
    /// The signature does not verify for that key, hw_id and nonce.
    #[error("the proof of possession does not verify")]
    BadProof,
}

/// The station's request for `nonce`.
pub fn request(nonce: &[u8; 32]) -> [u8; MAILBOX_LEN] {
    let mut b = [0u8; MAILBOX_LEN];
    b[..4].copy_from_slice(&REQUEST_MAGIC);
    b[4] = MAILBOX_VERSION;
    b[8..40].copy_from_slice(nonce);
    b
}

/// The nonce of a request in `mailbox`, if it holds one.
pub fn parse_request(mailbox: &[u8]) -> Option<[u8; 32]> {
    let b = mailbox.get(..MAILBOX_LEN)?;
    if b[..4] != REQUEST_MAGIC || b[4] != MAILBOX_VERSION {
        return None;
    }
    b[8..40].try_into().ok()
}

/// The chip's answer: its key and proof (`None`: no key and none can be made).
pub fn answer(nonce: &[u8; 32], key: Option<([u8; 65], [u8; 64])>) -> [u8; MAILBOX_LEN] {
    let mut b = [0u8; MAILBOX_LEN];
    b[..4].copy_from_slice(&ANSWER_MAGIC);
    b[4] = MAILBOX_VERSION;
    b[8..40].copy_from_slice(nonce);
    match key {
        Some((public, pop)) => {
            b[40..105].copy_from_slice(&public);
            b[105..169].copy_from_slice(&pop);
        }
        None => b[5] = 1,
    }
    b
}

/// Check the chip's answer in `mailbox` to the request for `nonce`: its
/// public key, once the proof of possession verifies for this chip.
pub fn check_answer(
    mailbox: &[u8],
    hw_id: HwId,
    nonce: &[u8; 32],
) -> Result<P256PublicKey, PopError> {
    let b = mailbox.get(..MAILBOX_LEN).ok_or(PopError::NoAnswer)?;
    if b[..4] != ANSWER_MAGIC || b[4] != MAILBOX_VERSION {
        return Err(PopError::NoAnswer);
    }
    if b[8..40] != nonce[..] {
        return Err(PopError::WrongNonce);
    }
    if b[5] != 0 {
        return Err(PopError::NoKey);
    }
    let public: [u8; 65] = b[40..105].try_into().map_err(|_| PopError::BadKey)?;
    let pop: [u8; 64] = b[105..169].try_into().map_err(|_| PopError::BadProof)?;
    let key = P256PublicKey::from_sec1(&public).map_err(|_| PopError::BadKey)?;
    key.verify_digest_raw(&pop_digest(&public, hw_id, nonce), &pop)
        .map_err(|_| PopError::BadProof)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_verifies_only_for_its_chip_and_nonce() {
        let scalar = [0x11; 32];
        let (chip, other) = (
            HwId::from_deviceid(3, 0x1234_5678),
            HwId::from_deviceid(4, 0x1234_5678),
        );
        let nonce = [0x22; 32];
        assert_eq!(parse_request(&request(&nonce)), Some(nonce));
        assert!(
            is_private_key(&scalar) && !is_private_key(&[0; 32]) && !is_private_key(&[0xff; 32])
        );
        assert_eq!(parse_request(&[0; MAILBOX_LEN]), None);
        let box_ = answer(&nonce, Some(prove(&scalar, chip, &nonce).unwrap()));
        let key = check_answer(&box_, chip, &nonce).unwrap();
        assert_eq!(key.sec1(), &prove(&scalar, chip, &nonce).unwrap().0);
        assert_eq!(check_answer(&box_, other, &nonce), Err(PopError::BadProof));
        assert_eq!(
            check_answer(&box_, chip, &[0x23; 32]),
            Err(PopError::WrongNonce)
        );
        assert_eq!(
            check_answer(&request(&nonce), chip, &nonce),
            Err(PopError::NoAnswer)
        );
        assert_eq!(
            check_answer(&answer(&nonce, None), chip, &nonce),
            Err(PopError::NoKey)
        );
        // A proof made for another key does not carry over.
        let (_, other_pop) = prove(&[0x33; 32], chip, &nonce).unwrap();
        let (public, _) = prove(&scalar, chip, &nonce).unwrap();
        let forged = answer(&nonce, Some((public, other_pop)));
        assert_eq!(check_answer(&forged, chip, &nonce), Err(PopError::BadProof));
    }

    proptest::proptest! {
        #[test]
        fn any_mailbox_gets_a_verdict(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300), magic in proptest::bool::ANY) {
            let mut b = bytes;
            if magic && b.len() >= 5 {
                b[..4].copy_from_slice(&ANSWER_MAGIC);
                b[4] = MAILBOX_VERSION;
            }
            let _ = parse_request(&b);
            let _ = check_answer(&b, HwId([0; 8]), &[0; 32]);
        }
    }
}
