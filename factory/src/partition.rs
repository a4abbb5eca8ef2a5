//! What the station writes to a chip's provisioning partition
//! (docs/provisioning-record.md, "The provisioning partition"):
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0x000 | 208 | the signed provisioning record |
//! | 0x100 | 4 | `PKEY` |
//! | 0x104 | 2 | key block version, u16 LE (1) |
//! | 0x106 | 2 | reserved, zero |
//! | 0x108 | 32 | the device's P-256 private key, big-endian |
//! | 0x128 | 32 | the device secret |
//! | 0x200 | 4 | `DCRT` (only with a device certificate) |
//! | 0x204 | 2 | certificate block version, u16 LE (1) |
//! | 0x206 | 2 | certificate length N, u16 LE |
//! | 0x208 | N | the device's X.509 certificate, DER |
//!
//! Everything else in the partition stays erased.

use firmware::record::RECORD_LEN;
use zeroize::Zeroizing;

/// Where the key block starts.
pub const KEY_BLOCK_OFFSET: usize = 0x100;
/// Its magic.
pub const KEY_BLOCK_MAGIC: [u8; 4] = *b"PKEY";
/// Its version.
pub const KEY_BLOCK_VERSION: u16 = 1;
/// Bytes written: the record, the gap and the key block.
pub const IMAGE_LEN: usize = KEY_BLOCK_OFFSET + 8 + 32 + 32;

/// Where the certificate block starts.
pub const CERT_BLOCK_OFFSET: usize = 0x200;
/// Its magic.
pub const CERT_BLOCK_MAGIC: [u8; 4] = *b"DCRT";
/// Its version.
pub const CERT_BLOCK_VERSION: u16 = 1;
/// The largest certificate the block holds (the rest of a 4 KiB partition).
pub const CERT_MAX: usize = 0x1000 - CERT_BLOCK_OFFSET - 8;

/// The bytes to program at the start of the partition (erased 0xff gaps);
/// `cert` must be at most [`CERT_MAX`] bytes.
pub fn image(
    record: &[u8; RECORD_LEN],
    device_key: &[u8; 32],
    secret: &[u8; 32],
    cert: Option<&[u8]>,
) -> Zeroizing<Vec<u8>> {
    let len = cert.map_or(IMAGE_LEN, |c| CERT_BLOCK_OFFSET + 8 + c.len().min(CERT_MAX));
    let mut out = Zeroizing::new(vec![0xffu8; len]);
    if let Some(c) = cert {
        let c = &c[..c.len().min(CERT_MAX)];
        let b = CERT_BLOCK_OFFSET;
        out[b..b + 4].copy_from_slice(&CERT_BLOCK_MAGIC);
        out[b + 4..b + 6].copy_from_slice(&CERT_BLOCK_VERSION.to_le_bytes());
        out[b + 6..b + 8].copy_from_slice(&(c.len() as u16).to_le_bytes());
        out[b + 8..].copy_from_slice(c);
    }
    out[..RECORD_LEN].copy_from_slice(record);
    let k = KEY_BLOCK_OFFSET;
    out[k..k + 4].copy_from_slice(&KEY_BLOCK_MAGIC);
    out[k + 4..k + 6].copy_from_slice(&KEY_BLOCK_VERSION.to_le_bytes());
    out[k + 6..k + 8].copy_from_slice(&[0, 0]);
    out[k + 8..k + 40].copy_from_slice(device_key);
    out[k + 40..k + 72].copy_from_slice(secret);
    out
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

/// 32 secret bytes, wiped when dropped.
pub type Secret32 = Zeroizing<[u8; 32]>;

/// The device key and secret from a partition image, if its key block is
/// well-formed.
pub fn key_block(partition: &[u8]) -> Option<(Secret32, Secret32)> {
    let k = KEY_BLOCK_OFFSET;
    let block = partition.get(k..k + 72)?;
    if block[..4] != KEY_BLOCK_MAGIC || block[4..6] != KEY_BLOCK_VERSION.to_le_bytes() {
        return None;
    }
    let mut key = Zeroizing::new([0u8; 32]);
    let mut secret = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&block[8..40]);
    secret.copy_from_slice(&block[40..72]);
    Some((key, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips() {
        let img = image(&[7; RECORD_LEN], &[1; 32], &[2; 32], None);
        assert_eq!(img.len(), IMAGE_LEN);
        assert!(certificate(&img).is_none());
        assert_eq!(&img[..RECORD_LEN], &[7; RECORD_LEN][..]);
        assert!(img[RECORD_LEN..KEY_BLOCK_OFFSET].iter().all(|&b| b == 0xff));
        let (k, s) = key_block(&img).unwrap();
        assert_eq!((*k, *s), ([1; 32], [2; 32]));
        let mut bad = img.to_vec();
        bad[KEY_BLOCK_OFFSET] ^= 1;
        assert!(key_block(&bad).is_none());
        assert!(key_block(&img[..0x120]).is_none());

        let with_cert = image(
            &[7; RECORD_LEN],
            &[1; 32],
            &[2; 32],
            Some(&[0x30, 3, 1, 2, 3]),
        );
        assert_eq!(certificate(&with_cert), Some(&[0x30, 3, 1, 2, 3][..]));
        assert_eq!(&with_cert[..IMAGE_LEN], &img[..], "the rest is unchanged");
        assert!(certificate(&with_cert[..0x20a]).is_none(), "cut short");
    }

    proptest::proptest! {
        #[test]
        fn key_block_parser_is_total(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = key_block(&bytes);
            let _ = certificate(&bytes);
        }

        #[test]
        fn certificate_parser_is_total_at_its_offset(
            head in proptest::collection::vec(proptest::num::u8::ANY, 8),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let mut bytes = vec![0xff; CERT_BLOCK_OFFSET];
            bytes.extend_from_slice(b"DCRT\x01\x00");
            bytes.extend_from_slice(&head[..2]);
            bytes.extend_from_slice(&tail);
            let _ = certificate(&bytes);
        }
    }
}
