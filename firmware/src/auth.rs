//! The device-authentication message (docs/device-auth.md): what a device
//! signs with its per-device key to answer the backend's challenge. Defined
//! here once, for the backend that checks it, the station that tests it and
//! firmware that answers it.

use sha2::{Digest, Sha256};

use crate::record::HwId;

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
