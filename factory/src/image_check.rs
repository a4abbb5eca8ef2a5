//! The firmware is checked before any chip is touched: an MCUboot image whose
//! hash and signature verify against the station's release keys, and that
//! fits the chip's flash at its slot.

use std::path::Path;

use firmware::image::Image;
use firmware::P256PublicKey;

use crate::chips::Chip;
use crate::provision::Firmware;

/// Why a firmware file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImageCheckError {
    /// It could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// It is not a valid, signed MCUboot image.
    #[error("{path}: refused before touching the chip: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// No address to write it to.
    #[error("{path}: a .bin image needs --slot ADDR (a .hex image carries its address)")]
    NoSlot {
        /// The file.
        path: String,
    },
    /// It does not fit.
    #[error("{path}: {len} bytes at {addr:#x} do not fit the {chip}'s flash, or overlap its provisioning partition")]
    DoesNotFit {
        /// The file.
        path: String,
        /// Its length.
        len: usize,
        /// Where it would go.
        addr: u32,
        /// The chip.
        chip: String,
    },
}

/// Read `path` (`.bin` or `.hex`), verify it against `release_keys`, place it
/// at its HEX address or `slot`.
pub fn check_firmware(
    path: &Path,
    release_keys: &[P256PublicKey],
    slot: Option<u32>,
    chip: &Chip,
) -> Result<Firmware, ImageCheckError> {
    let shown = path.display().to_string();
    let input = signer::image::read_input(path, 0, 0xff, 0).map_err(|e| ImageCheckError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let invalid = |reason: String| ImageCheckError::Invalid {
        path: shown.clone(),
        reason,
    };
    if release_keys.is_empty() {
        return Err(invalid(
            "no release keys configured (--release-key PEM)".into(),
        ));
    }
    let image = Image::parse(&input.data).map_err(|e| invalid(e.to_string()))?;
    image
        .verify(release_keys, None)
        .map_err(|e| invalid(e.to_string()))?;
    // Nothing unsigned rides along after the TLVs: erased bytes, or a
    // well-formed trailer, only.
    image.tail().map_err(|e| invalid(e.to_string()))?;
    let addr = input.base_addr.or(slot).ok_or(ImageCheckError::NoSlot {
        path: shown.clone(),
    })?;
    let end = u64::from(addr) + input.data.len() as u64;
    let overlaps =
        u64::from(addr) < u64::from(chip.partition) + 0x1000 && end > u64::from(chip.partition);
    if end > u64::from(chip.flash_size) || overlaps {
        return Err(ImageCheckError::DoesNotFit {
            path: shown,
            len: input.data.len(),
            addr,
            chip: chip.name.clone(),
        });
    }
    Ok(Firmware {
        addr,
        bytes: input.data,
    })
}

/// Every P-256 public key in the PEM files.
pub fn load_public_keys(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<P256PublicKey>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::DecodePublicKey;
    paths
        .iter()
        .map(|p| {
            let pem =
                std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            let key = p256::PublicKey::from_public_key_pem(&pem)
                .map_err(|_| anyhow::anyhow!("{}: not a P-256 public key (PEM)", p.display()))?;
            Ok(P256PublicKey::from_sec1(
                key.to_encoded_point(false).as_bytes(),
            )?)
        })
        .collect()
}

/// Read a boot stage (a raw binary for address 0) and check that it ends
/// below the firmware's slot and starts with a vector table: a stack pointer
/// in RAM (`0x2000_0000..`) and a Thumb reset handler inside itself.
pub fn check_boot_stage(path: &Path, firmware: &Firmware) -> Result<Firmware, ImageCheckError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ImageCheckError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let invalid = |reason: String| ImageCheckError::Invalid {
        path: shown.clone(),
        reason,
    };
    if bytes.len() as u64 > u64::from(firmware.addr) {
        return Err(invalid(format!(
            "{} bytes run into the firmware's slot at {:#x}",
            bytes.len(),
            firmware.addr
        )));
    }
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
    };
    let (Some(sp), Some(reset)) = (word(0), word(4)) else {
        return Err(invalid("too short for a vector table".into()));
    };
    if !(0x2000_0000..0x4000_0000).contains(&sp)
        || reset & 1 == 0
        || u64::from(reset & !1) >= bytes.len() as u64
    {
        return Err(invalid(format!(
            "no vector table at its start (stack pointer {sp:#010x}, reset handler {reset:#010x})"
        )));
    }
    let mut bytes = bytes;
    // The NVM controllers write whole words.
    bytes.resize(bytes.len().next_multiple_of(4), 0xff);
    Ok(Firmware { addr: 0, bytes })
}
