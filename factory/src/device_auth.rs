//! An end-of-line check: answer the backend's challenge as the device would,
//! with the key read back from the chip's provisioning partition. Only
//! possible before debug access is locked.

use firmware::record::{ProvisioningRecord, RECORD_LEN};

use crate::backend::Backend;
use crate::chips::Chip;
use crate::partition;
use crate::provision::FlowError;
use crate::target::{read_hw_id, Target};

/// Authenticate the chip to the backend; returns its serial.
pub fn authenticate(
    target: &mut dyn Target,
    chip: &Chip,
    backend: &Backend,
) -> Result<u32, FlowError> {
    let hw_id = read_hw_id(target, chip)?;
    let mut part = zeroize::Zeroizing::new(vec![0u8; partition::IMAGE_LEN]);
    target.read_memory(chip.partition, &mut part)?;
    let record = ProvisioningRecord::parse(&part[..RECORD_LEN])
        .map_err(|e| FlowError::Inconsistent(format!("no provisioning record on the chip: {e}")))?;
    if record.body.hw_id != hw_id {
        return Err(FlowError::Inconsistent(format!(
            "the record on the chip is for hw_id {}, the chip is {hw_id}",
            record.body.hw_id
        )));
    }
    let (scalar, _) = partition::key_block(&part)
        .ok_or_else(|| FlowError::Inconsistent("no device key block on the chip".into()))?;
    let serial = record.body.serial;
    let challenge = backend.challenge(serial)?;
    let nonce: [u8; 32] = hex::decode(&challenge.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| {
            FlowError::Inconsistent("the backend's nonce is not 32 bytes of hex".into())
        })?;
    // The device's own signer (firmware::auth), as the chip would run it.
    let signature = firmware::auth::sign_auth(&scalar, &nonce, hw_id, serial).map_err(|_| {
        FlowError::Inconsistent("the device key on the chip is not a P-256 key".into())
    })?;
    backend.verify(&challenge.challenge_id, serial, hw_id, &signature)?;
    Ok(serial)
}
