use super::{ImageError, ImageVersion};

/// MCUboot image magic (`IMAGE_MAGIC`).
pub const IMAGE_MAGIC: u32 = 0x96f3_b83d;
/// Size of the header structure; `header_size` may be larger (padding).
pub const IMAGE_HEADER_SIZE: usize = 32;

/// Header flags (`IMAGE_F_*`).
pub mod flags {
    /// Position-independent code (unused by MCUboot).
    pub const PIC: u32 = 0x0000_0001;
    /// Payload encrypted with AES-128.
    pub const ENCRYPTED_AES128: u32 = 0x0000_0004;
    /// Payload encrypted with AES-256.
    pub const ENCRYPTED_AES256: u32 = 0x0000_0008;
    /// The image is not bootable (e.g. a second-core image).
    pub const NON_BOOTABLE: u32 = 0x0000_0010;
    /// Load into RAM at `load_addr` before running.
    pub const RAM_LOAD: u32 = 0x0000_0020;
    /// Built to run at a fixed flash address (`load_addr`).
    pub const ROM_FIXED: u32 = 0x0000_0100;
    /// LZMA1-compressed payload.
    pub const COMPRESSED_LZMA1: u32 = 0x0000_0200;
    /// LZMA2-compressed payload.
    pub const COMPRESSED_LZMA2: u32 = 0x0000_0400;
    /// ARM Thumb BCJ filter applied before compression.
    pub const COMPRESSED_ARM_THUMB: u32 = 0x0000_0800;

    /// Every flag with imgtool's name for it.
    pub const NAMES: [(u32, &str); 9] = [
        (PIC, "PIC"),
        (ENCRYPTED_AES128, "ENCRYPTED_AES128"),
        (ENCRYPTED_AES256, "ENCRYPTED_AES256"),
        (NON_BOOTABLE, "NON_BOOTABLE"),
        (RAM_LOAD, "RAM_LOAD"),
        (ROM_FIXED, "ROM_FIXED"),
        (COMPRESSED_LZMA1, "COMPRESSED_LZMA1"),
        (COMPRESSED_LZMA2, "COMPRESSED_LZMA2"),
        (COMPRESSED_ARM_THUMB, "COMPRESSED_ARM_THUMB"),
    ];
}

/// The fixed 32-byte image header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// RAM load address (`RAM_LOAD`) or fixed flash address (`ROM_FIXED`), else 0.
    pub load_addr: u32,
    /// Bytes from the start of the image to the payload (at least 32).
    pub header_size: u16,
    /// Size of the protected TLV area including its info header, or 0.
    pub protected_tlv_size: u16,
    /// Payload size, excluding the header.
    pub image_size: u32,
    /// `IMAGE_F_*` flags.
    pub flags: u32,
    /// Image version.
    pub version: ImageVersion,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl ImageHeader {
    /// Parse the header at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let b = bytes
            .get(..IMAGE_HEADER_SIZE)
            .ok_or(ImageError::Truncated {
                what: "image header",
                needed: IMAGE_HEADER_SIZE as u64,
                len: bytes.len(),
            })?;
        let magic = u32_at(b, 0);
        if magic != IMAGE_MAGIC {
            return Err(ImageError::BadMagic { found: magic });
        }
        let header_size = u16_at(b, 8);
        if usize::from(header_size) < IMAGE_HEADER_SIZE {
            return Err(ImageError::HeaderTooSmall(header_size));
        }
        let mut version = [0u8; 8];
        version.copy_from_slice(&b[20..28]);
        Ok(Self {
            load_addr: u32_at(b, 4),
            header_size,
            protected_tlv_size: u16_at(b, 10),
            image_size: u32_at(b, 12),
            flags: u32_at(b, 16),
            version: ImageVersion::from_bytes(&version),
        })
    }

    /// The 32-byte encoding (the trailing pad word is zero).
    pub fn to_bytes(&self) -> [u8; IMAGE_HEADER_SIZE] {
        let mut out = [0u8; IMAGE_HEADER_SIZE];
        out[0..4].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&self.load_addr.to_le_bytes());
        out[8..10].copy_from_slice(&self.header_size.to_le_bytes());
        out[10..12].copy_from_slice(&self.protected_tlv_size.to_le_bytes());
        out[12..16].copy_from_slice(&self.image_size.to_le_bytes());
        out[16..20].copy_from_slice(&self.flags.to_le_bytes());
        out[20..28].copy_from_slice(&self.version.to_bytes());
        out
    }

    /// Offset of the first TLV area: header plus payload.
    pub fn tlv_offset(&self) -> u64 {
        u64::from(self.header_size) + u64::from(self.image_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let h = ImageHeader {
            load_addr: 0x2000_0000,
            header_size: 0x200,
            protected_tlv_size: 12,
            image_size: 0x3e8,
            flags: flags::RAM_LOAD,
            version: "1.2.3+4".parse().unwrap(),
        };
        assert_eq!(ImageHeader::parse(&h.to_bytes()).unwrap(), h);
    }

    #[test]
    fn rejects_short_wrong_magic_and_small_header() {
        assert!(matches!(
            ImageHeader::parse(&[0; 31]),
            Err(ImageError::Truncated { .. })
        ));
        assert_eq!(
            ImageHeader::parse(&[0; 32]),
            Err(ImageError::BadMagic { found: 0 })
        );
        let mut b = ImageHeader {
            load_addr: 0,
            header_size: 32,
            protected_tlv_size: 0,
            image_size: 0,
            flags: 0,
            version: ImageVersion::default(),
        }
        .to_bytes();
        b[8] = 31;
        assert_eq!(ImageHeader::parse(&b), Err(ImageError::HeaderTooSmall(31)));
    }
}
