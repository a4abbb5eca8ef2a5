//! What the boot stage hands to the application it starts: a fixed block at
//! the start of RAM (`docs/boot.md`, "Handoff block"), written fresh at every
//! boot just before the jump, from the verified image and record only.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `"BOOT"` |
//! | 4 | 1 | format version (1) |
//! | 5 | 1 | 1 if the provisioning record verified for this chip, else 0 |
//! | 6 | 2 | block length (64), little-endian |
//! | 8 | 8 | `hw_id` from FICR |
//! | 16 | 4 | serial from the record (0 if not provisioned) |
//! | 20 | 16 | product name from the record, NUL-padded |
//! | 36 | 8 | image version, as in the image header |
//! | 44 | 4 | stored minimum security counter after this boot |
//! | 48 | 12 | reserved, zero |
//! | 60 | 4 | address of the application's vector table (interrupts are
//!   forwarded there) |

use crate::image::ImageVersion;
use crate::record::{HwId, PRODUCT_LEN};

/// Magic of the block.
pub const HANDOFF_MAGIC: [u8; 4] = *b"BOOT";
/// Format version.
pub const HANDOFF_VERSION: u8 = 1;
/// Size of the block.
pub const HANDOFF_LEN: usize = 64;
/// Offset of the application's vector table address in the block (the boot
/// stage's interrupt forwarding reads it there).
pub const VECTOR_TABLE_OFFSET: usize = 60;

/// The facts the boot stage established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// The chip's hardware ID.
    pub hw_id: HwId,
    /// Serial and product from a record that verified for this chip.
    pub provisioned: Option<(u32, [u8; PRODUCT_LEN])>,
    /// Version of the image that was started.
    pub version: ImageVersion,
    /// The stored minimum security counter.
    pub security_counter: u32,
    /// Where the started image's vector table is.
    pub vector_table: u32,
}

impl Handoff {
    /// The block as written to RAM.
    pub fn to_bytes(&self) -> [u8; HANDOFF_LEN] {
        let mut b = [0u8; HANDOFF_LEN];
        b[..4].copy_from_slice(&HANDOFF_MAGIC);
        b[4] = HANDOFF_VERSION;
        b[6..8].copy_from_slice(&(HANDOFF_LEN as u16).to_le_bytes());
        b[8..16].copy_from_slice(&self.hw_id.0);
        if let Some((serial, product)) = self.provisioned {
            b[5] = 1;
            b[16..20].copy_from_slice(&serial.to_le_bytes());
            b[20..36].copy_from_slice(&product);
        }
        b[36..44].copy_from_slice(&self.version.to_bytes());
        b[44..48].copy_from_slice(&self.security_counter.to_le_bytes());
        b[VECTOR_TABLE_OFFSET..].copy_from_slice(&self.vector_table.to_le_bytes());
        b
    }

    /// Read a block; `None` unless it is a whole block of this version.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; HANDOFF_LEN] = b.get(..HANDOFF_LEN)?.try_into().ok()?;
        if b[..4] != HANDOFF_MAGIC
            || b[4] != HANDOFF_VERSION
            || b[6..8] != (HANDOFF_LEN as u16).to_le_bytes()
            || b[5] > 1
        {
            return None;
        }
        let word = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let mut hw_id = [0u8; 8];
        hw_id.copy_from_slice(&b[8..16]);
        let mut product = [0u8; PRODUCT_LEN];
        product.copy_from_slice(&b[20..36]);
        let mut version = [0u8; 8];
        version.copy_from_slice(&b[36..44]);
        Some(Self {
            hw_id: HwId(hw_id),
            provisioned: (b[5] == 1).then_some((word(16), product)),
            version: ImageVersion::from_bytes(&version),
            security_counter: word(44),
            vector_table: word(VECTOR_TABLE_OFFSET),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_blocks() {
        let h = Handoff {
            hw_id: HwId::from_deviceid(3, 0x1234_5678),
            provisioned: Some((17, *b"sensor-v2\0\0\0\0\0\0\0")),
            version: "1.2.3+4".parse().unwrap(),
            security_counter: 9,
            vector_table: 0x8200,
        };
        let b = h.to_bytes();
        assert_eq!(Handoff::parse(&b), Some(h));
        let none = Handoff {
            provisioned: None,
            ..h
        };
        assert_eq!(Handoff::parse(&none.to_bytes()), Some(none));
        for at in [0, 4, 5, 6] {
            let mut bad = b;
            bad[at] ^= 0x40;
            assert_eq!(Handoff::parse(&bad), None, "byte {at}");
        }
        assert_eq!(Handoff::parse(&b[..63]), None);
        assert_eq!(Handoff::parse(&[0xff; 64]), None);
    }
}
