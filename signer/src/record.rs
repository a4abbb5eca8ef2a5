//! Signing provisioning records. The layout is `firmware::record`'s; this
//! only fills it in and asks a [`Signer`] for the signature.

use firmware::record::{HwId, KeyOrigin, RecordBody, RECORD_LEN};
use firmware::P256PublicKey;

use crate::keys::{Signer, SignerError};

/// What a record says, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRequest {
    /// The chip.
    pub hw_id: HwId,
    /// Its serial.
    pub serial: u32,
    /// Product name (ASCII, at most 16 bytes).
    pub product: [u8; firmware::record::PRODUCT_LEN],
    /// The per-device public key.
    pub device_pubkey: P256PublicKey,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
    /// Where the device key was made.
    pub key_origin: KeyOrigin,
}

/// Sign a record with the provisioning authority's key. The record names the
/// authority by its key id, so a device can hold several authorities.
pub fn sign_record(
    req: &RecordRequest,
    authority: &dyn Signer,
) -> Result<[u8; RECORD_LEN], SignerError> {
    let body = RecordBody {
        hw_id: req.hw_id,
        serial: req.serial,
        product: req.product,
        device_pubkey: req.device_pubkey,
        issued_at: req.issued_at,
        authority_key_id: authority.public_key()?.key_id(),
        key_origin: req.key_origin,
    };
    let signature = authority.sign_digest(&body.digest())?;
    Ok(body.to_record(&signature.to_raw()))
}
