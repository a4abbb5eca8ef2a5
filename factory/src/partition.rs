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

/// The bytes to program at the start of the partition (erased 0xff gap).
pub fn image(
    record: &[u8; RECORD_LEN],
    device_key: &[u8; 32],
    secret: &[u8; 32],
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(vec![0xffu8; IMAGE_LEN]);
    out[..RECORD_LEN].copy_from_slice(record);
    let k = KEY_BLOCK_OFFSET;
    out[k..k + 4].copy_from_slice(&KEY_BLOCK_MAGIC);
    out[k + 4..k + 6].copy_from_slice(&KEY_BLOCK_VERSION.to_le_bytes());
    out[k + 6..k + 8].copy_from_slice(&[0, 0]);
    out[k + 8..k + 40].copy_from_slice(device_key);
    out[k + 40..k + 72].copy_from_slice(secret);
    out
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
        let img = image(&[7; RECORD_LEN], &[1; 32], &[2; 32]);
        assert_eq!(img.len(), IMAGE_LEN);
        assert_eq!(&img[..RECORD_LEN], &[7; RECORD_LEN][..]);
        assert!(img[RECORD_LEN..KEY_BLOCK_OFFSET].iter().all(|&b| b == 0xff));
        let (k, s) = key_block(&img).unwrap();
        assert_eq!((*k, *s), ([1; 32], [2; 32]));
        let mut bad = img.to_vec();
        bad[KEY_BLOCK_OFFSET] ^= 1;
        assert!(key_block(&bad).is_none());
        assert!(key_block(&img[..0x120]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn key_block_parser_is_total(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = key_block(&bytes);
        }
    }
}
