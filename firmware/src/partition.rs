//! The provisioning partition: what the station writes into a chip's
//! provisioning page and the device reads back (`docs/provisioning-record.md`,
//! "The provisioning partition"). One definition, for the factory station
//! that writes it and the firmware that reads it; no allocation.
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0x000 | 208 | the signed provisioning record |
//! | 0x100 | 4 | `PKEY` |
//! | 0x104 | 2 | key block version, u16 LE (1) |
//! | 0x106 | 2 | reserved, zero |
//! | 0x108 | 32 | the device's P-256 private key, big-endian |
//! | 0x128 | 32 | reserved: written as zero, ignored when read (chips provisioned before key origins held an unused "device secret" here) |
//! | 0x200 | 4 | `DCRT` (only with a device certificate) |
//! | 0x204 | 2 | certificate block version, u16 LE (1) |
//! | 0x206 | 2 | certificate length N, u16 LE |
//! | 0x208 | N | the device's X.509 certificate, DER |
//!
//! Everything else in the partition stays erased.
//!
//! Whoever writes a key block (the chip that makes its key, or a station
//! injecting one) writes the key and the reserved bytes first and the 8-byte
//! header last, so a write cut short leaves an invalid block (no magic, not
//! erased), never a valid-looking block with part of a key. The record is
//! written after the key block: it is the commit marker of a provisioning.

use crate::record::RECORD_LEN;

/// Size of the partition (one 4 KiB page).
pub const PARTITION_LEN: usize = 0x1000;
/// Where the key block starts.
pub const KEY_BLOCK_OFFSET: usize = 0x100;
/// Its magic.
pub const KEY_BLOCK_MAGIC: [u8; 4] = *b"PKEY";
/// Its version.
pub const KEY_BLOCK_VERSION: u16 = 1;
/// Size of the key block's header (magic, version, reserved).
pub const KEY_BLOCK_HEADER_LEN: usize = 8;
/// Size of the key block: header, key, reserved.
pub const KEY_BLOCK_LEN: usize = KEY_BLOCK_HEADER_LEN + 32 + 32;
/// Bytes from the partition's start to the key block's end: the record, the
/// erased gap and the key block.
pub const IMAGE_LEN: usize = KEY_BLOCK_OFFSET + KEY_BLOCK_LEN;

/// Where the certificate block starts.
pub const CERT_BLOCK_OFFSET: usize = 0x200;
/// Its magic.
pub const CERT_BLOCK_MAGIC: [u8; 4] = *b"DCRT";
/// Its version.
pub const CERT_BLOCK_VERSION: u16 = 1;
/// The largest certificate the block holds (the rest of the partition).
pub const CERT_MAX: usize = PARTITION_LEN - CERT_BLOCK_OFFSET - 8;

const _: () = assert!(RECORD_LEN <= KEY_BLOCK_OFFSET && IMAGE_LEN <= CERT_BLOCK_OFFSET);

/// What a partition's key block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyBlockState {
    /// Erased: no key yet; one may be written.
    Erased,
    /// A well-formed block.
    Valid,
    /// Neither: a write cut short, or damage. Nothing may be written over it
    /// before the page is erased.
    Damaged,
}

/// The state of the key block in `partition` (a short slice is damaged).
pub fn key_block_state(partition: &[u8]) -> KeyBlockState {
    match partition.get(KEY_BLOCK_OFFSET..KEY_BLOCK_OFFSET + KEY_BLOCK_LEN) {
        Some(b) if b.iter().all(|&x| x == 0xff) => KeyBlockState::Erased,
        Some(_) if key_block(partition).is_some() => KeyBlockState::Valid,
        _ => KeyBlockState::Damaged,
    }
}

/// The device key of a well-formed key block, borrowed from `partition`
/// (copy it into wiping storage).
pub fn key_block(partition: &[u8]) -> Option<&[u8; 32]> {
    let block = partition.get(KEY_BLOCK_OFFSET..KEY_BLOCK_OFFSET + KEY_BLOCK_LEN)?;
    if block[..4] != KEY_BLOCK_MAGIC
        || block[4..6] != KEY_BLOCK_VERSION.to_le_bytes()
        || block[6..8] != [0, 0]
    {
        return None;
    }
    block[8..40].try_into().ok()
}

/// Write the key block for `device_key` into `partition` (at least
/// [`IMAGE_LEN`] bytes, as the partition's start). Programming flash, write
/// `partition[KEY_BLOCK_OFFSET + KEY_BLOCK_HEADER_LEN..IMAGE_LEN]` before the
/// header (see the module's notes).
pub fn put_key_block(partition: &mut [u8], device_key: &[u8; 32]) -> bool {
    let Some(block) = partition.get_mut(KEY_BLOCK_OFFSET..KEY_BLOCK_OFFSET + KEY_BLOCK_LEN) else {
        return false;
    };
    block[..4].copy_from_slice(&KEY_BLOCK_MAGIC);
    block[4..6].copy_from_slice(&KEY_BLOCK_VERSION.to_le_bytes());
    block[6..8].copy_from_slice(&[0, 0]);
    block[8..40].copy_from_slice(device_key);
    block[40..72].fill(0);
    true
}

/// The device certificate (DER) in a partition, if its block is well-formed.
pub fn certificate(partition: &[u8]) -> Option<&[u8]> {
    let b = CERT_BLOCK_OFFSET;
    let head = partition.get(b..b + 8)?;
    if head[..4] != CERT_BLOCK_MAGIC || head[4..6] != CERT_BLOCK_VERSION.to_le_bytes() {
        return None;
    }
    let len = usize::from(u16::from_le_bytes([head[6], head[7]]));
    if len > CERT_MAX {
        return None;
    }
    partition.get(b + 8..b + 8 + len)
}

/// Bytes from the partition's start to the end of a certificate block
/// holding `cert_len` bytes.
pub const fn cert_image_len(cert_len: usize) -> usize {
    CERT_BLOCK_OFFSET + 8 + cert_len
}

/// Write the certificate block for `cert` (at most [`CERT_MAX`] bytes) into
/// `partition` (at least [`cert_image_len`] bytes).
pub fn put_certificate(partition: &mut [u8], cert: &[u8]) -> bool {
    if cert.len() > CERT_MAX {
        return false;
    }
    let b = CERT_BLOCK_OFFSET;
    let Some(block) = partition.get_mut(b..cert_image_len(cert.len())) else {
        return false;
    };
    block[..4].copy_from_slice(&CERT_BLOCK_MAGIC);
    block[4..6].copy_from_slice(&CERT_BLOCK_VERSION.to_le_bytes());
    block[6..8].copy_from_slice(&(cert.len() as u16).to_le_bytes());
    block[8..].copy_from_slice(cert);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_are_checked() {
        let mut p = [0xffu8; PARTITION_LEN];
        assert!(key_block(&p).is_none() && certificate(&p).is_none());
        assert_eq!(key_block_state(&p), KeyBlockState::Erased);
        assert!(put_key_block(&mut p, &[1; 32]));
        assert_eq!(key_block(&p), Some(&[1; 32]));
        assert_eq!(key_block_state(&p), KeyBlockState::Valid);
        assert!(p[KEY_BLOCK_OFFSET + 40..IMAGE_LEN].iter().all(|&b| b == 0));
        assert!(put_certificate(&mut p, &[0x30, 3, 1, 2, 3]));
        assert_eq!(certificate(&p), Some(&[0x30, 3, 1, 2, 3][..]));
        assert!(p[RECORD_LEN..KEY_BLOCK_OFFSET].iter().all(|&b| b == 0xff));
        let mut bad = p;
        bad[KEY_BLOCK_OFFSET] ^= 1;
        assert!(key_block(&bad).is_none());
        assert_eq!(key_block_state(&bad), KeyBlockState::Damaged);
        // A write cut short before the header: the key is there, no magic.
        let mut torn = [0xffu8; PARTITION_LEN];
        put_key_block(&mut torn, &[1; 32]);
        torn[KEY_BLOCK_OFFSET..KEY_BLOCK_OFFSET + KEY_BLOCK_HEADER_LEN].fill(0xff);
        assert_eq!(key_block_state(&torn), KeyBlockState::Damaged);
        assert_eq!(key_block_state(&torn[..0x110]), KeyBlockState::Damaged);
        assert!(key_block(&p[..0x120]).is_none());
        assert!(certificate(&p[..0x20a]).is_none(), "cut short");
        assert!(!put_certificate(&mut p, &[0; CERT_MAX + 1]));
        assert!(!put_key_block(&mut p[..0x120], &[1; 32]));
    }

    proptest::proptest! {
        #[test]
        fn parsers_are_total(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = key_block(&bytes);
            let _ = key_block_state(&bytes);
            let _ = certificate(&bytes);
        }

        #[test]
        fn certificate_parser_is_total_at_its_offset(
            head in proptest::collection::vec(proptest::num::u8::ANY, 2),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let mut bytes = std::vec![0xff; CERT_BLOCK_OFFSET];
            bytes.extend_from_slice(b"DCRT\x01\x00");
            bytes.extend_from_slice(&head);
            bytes.extend_from_slice(&tail);
            let _ = certificate(&bytes);
        }
    }
}
