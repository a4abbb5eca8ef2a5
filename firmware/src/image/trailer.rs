//! The MCUboot image trailer at the end of a slot: swap status, the
//! `image_ok`/`copy_done`/`swap_info`/`swap_size` fields, and the boot magic.

use super::ImageError;

/// Size of the boot magic.
pub const BOOT_MAGIC_SIZE: usize = 16;

/// The boot magic for a maximum write alignment of 8 bytes.
pub const BOOT_MAGIC: [u8; BOOT_MAGIC_SIZE] = [
    0x77, 0xc2, 0x95, 0xf3, 0x60, 0xd2, 0xef, 0x7f, 0x35, 0x52, 0x50, 0x0f, 0x2c, 0xb6, 0x79, 0x80,
];

/// The tail of the magic used with a larger maximum alignment, after the
/// 16-bit little-endian alignment itself.
const BOOT_MAGIC_ALIGNED_TAIL: [u8; 14] = [
    0x2d, 0xe1, 0x5d, 0x29, 0x41, 0x0b, 0x8d, 0x77, 0x67, 0x9c, 0x11, 0x0f, 0x1f, 0x8a,
];

/// Default number of sectors the swap status area is sized for.
pub const DEFAULT_MAX_SECTORS: u32 = 128;
/// Default maximum write alignment.
pub const DEFAULT_MAX_ALIGN: u32 = 8;

fn align_up(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

/// Parameters that size the trailer, as given to `imgtool sign`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrailerLayout {
    /// Flash write alignment (`--align`): 1, 2, 4, 8, 16 or 32.
    pub align: u32,
    /// Largest write alignment of the two slots (`--max-align`): 8, 16 or 32.
    pub max_align: u32,
    /// Sectors the swap status area is sized for (`--max-sectors`).
    pub max_sectors: u32,
    /// Overwrite-only upgrades: no swap status area.
    pub overwrite_only: bool,
    /// Bytes of one encryption-key slot for an encrypted image (0 when
    /// not encrypted): 16 (the AES key, as imgtool sizes it even for
    /// AES-256), or the ENC TLV's length with `--save-enctlv`. Swap
    /// upgrades keep two such slots, each aligned to `max_align`.
    pub enc_key_size: u32,
}

impl TrailerLayout {
    /// Trailer size in bytes.
    pub fn size(&self) -> usize {
        let max_align = self.max_align as usize;
        let magic = align_up(BOOT_MAGIC_SIZE, max_align);
        if self.overwrite_only {
            max_align * 2 + magic
        } else {
            // Swap status (3 entries per sector), then image_ok, copy_done,
            // swap_info and swap_size, each in its own max_align slot.
            let keys = 2 * align_up(self.enc_key_size as usize, max_align);
            self.max_sectors as usize * 3 * self.align as usize + keys + max_align * 4 + magic
        }
    }

    /// The boot magic for this layout's maximum alignment.
    pub fn boot_magic(&self) -> [u8; BOOT_MAGIC_SIZE] {
        boot_magic(self.max_align)
    }

    /// Distance of the `image_ok` byte from the end of the trailer.
    pub fn image_ok_from_end(&self) -> usize {
        image_ok_from_end(self.max_align)
    }
}

fn boot_magic(max_align: u32) -> [u8; BOOT_MAGIC_SIZE] {
    if max_align == DEFAULT_MAX_ALIGN {
        return BOOT_MAGIC;
    }
    let mut m = [0u8; BOOT_MAGIC_SIZE];
    m[..2].copy_from_slice(&(max_align as u16).to_le_bytes());
    m[2..].copy_from_slice(&BOOT_MAGIC_ALIGNED_TAIL);
    m
}

/// The maximum alignment encoded by a boot magic, if `last16` (the last 16
/// bytes of a slot) is one: the mark of an image waiting to be installed.
pub fn magic_max_align(last16: &[u8]) -> Option<u32> {
    [8u32, 16, 32]
        .into_iter()
        .find(|&a| last16 == boot_magic(a))
}

fn image_ok_from_end(max_align: u32) -> usize {
    align_up(BOOT_MAGIC_SIZE, max_align as usize) + max_align as usize
}

/// What follows the TLV area of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(tag = "kind", rename_all = "snake_case")
)]
pub enum Tail {
    /// Nothing: the image ends with its TLVs.
    None,
    /// Erased bytes only (no trailer magic).
    Erased {
        /// How many bytes.
        len: usize,
        /// The erased value, 0xff or 0x00.
        erased_val: u8,
    },
    /// Erased padding ending in an MCUboot trailer with a boot magic.
    Trailer {
        /// Length of padding plus trailer.
        len: usize,
        /// The erased value, 0xff or 0x00.
        erased_val: u8,
        /// Maximum alignment the magic encodes.
        max_align: u32,
        /// `image_ok` is set (0x01): the image is confirmed.
        confirmed: bool,
    },
}

impl Tail {
    /// Classify `tail`, which starts at image offset `offset`. Anything that is
    /// not erased bytes, optionally ending in a well-formed trailer, is refused.
    pub fn classify(tail: &[u8], offset: usize) -> Result<Self, ImageError> {
        let Some(&erased_val) = tail.first() else {
            return Ok(Tail::None);
        };
        let bad = ImageError::BadTail {
            offset,
            len: tail.len(),
        };
        if erased_val != 0xff && erased_val != 0x00 {
            return Err(bad);
        }
        let erased = |b: &[u8]| b.iter().all(|&x| x == erased_val);
        let magic_at = tail.len().checked_sub(BOOT_MAGIC_SIZE);
        let max_align = magic_at.and_then(|at| magic_max_align(&tail[at..]));
        let (Some(split), Some(max_align)) = (magic_at, max_align) else {
            // No trailer magic: only erased bytes are acceptable.
            return if erased(tail) {
                Ok(Tail::Erased {
                    len: tail.len(),
                    erased_val,
                })
            } else {
                Err(bad)
            };
        };
        let body = &tail[..split];
        // image_ok is the only byte besides the magic that imgtool writes.
        let ok_at = tail
            .len()
            .checked_sub(image_ok_from_end(max_align))
            .ok_or(bad)?;
        let confirmed = tail[ok_at] == 0x01;
        if !confirmed && tail[ok_at] != erased_val {
            return Err(bad);
        }
        if !erased(&body[..ok_at]) || !erased(&body[ok_at + 1..]) {
            return Err(bad);
        }
        Ok(Tail::Trailer {
            len: tail.len(),
            erased_val,
            max_align,
            confirmed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_imgtool() {
        let l = |align, max_align, overwrite_only| TrailerLayout {
            align,
            max_align,
            max_sectors: DEFAULT_MAX_SECTORS,
            overwrite_only,
            enc_key_size: 0,
        };
        // 128 * 3 * 1 + 8 * 4 + 16
        assert_eq!(l(1, 8, false).size(), 432);
        // 128 * 3 * 32 + 32 * 4 + 32
        assert_eq!(l(32, 32, false).size(), 12448);
        assert_eq!(l(4, 8, true).size(), 32);
        assert_eq!(l(4, 16, false).boot_magic()[..2], [16, 0]);
    }

    #[test]
    fn classifies_tails() {
        assert_eq!(Tail::classify(&[], 0), Ok(Tail::None));
        assert_eq!(
            Tail::classify(&[0xff; 40], 0),
            Ok(Tail::Erased {
                len: 40,
                erased_val: 0xff
            })
        );
        let mut t = [0xffu8; 100];
        t[84..].copy_from_slice(&BOOT_MAGIC);
        assert!(matches!(
            Tail::classify(&t, 0),
            Ok(Tail::Trailer {
                confirmed: false,
                max_align: 8,
                ..
            })
        ));
        t[100 - 24] = 0x01;
        assert!(matches!(
            Tail::classify(&t, 0),
            Ok(Tail::Trailer {
                confirmed: true,
                ..
            })
        ));
        t[3] = 0x12;
        assert!(Tail::classify(&t, 0).is_err());
        assert!(Tail::classify(&[0x12], 0).is_err());
    }
}
