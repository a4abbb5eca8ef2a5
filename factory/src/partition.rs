//! The provisioning partition as the station writes it: the layout is
//! `firmware::partition` (the device reads it too); this module makes the
//! pieces the flow writes, in the order it writes them (key block body, key
//! block header, certificate block, record), and keeps key bytes in wiping
//! storage.

use firmware::partition::{
    cert_image_len, put_certificate, put_key_block, CERT_BLOCK_OFFSET, KEY_BLOCK_HEADER_LEN,
    KEY_BLOCK_OFFSET,
};
pub use firmware::partition::{certificate, CERT_MAX, IMAGE_LEN};
use zeroize::Zeroizing;

/// 32 secret bytes, wiped when dropped.
pub type Secret32 = Zeroizing<[u8; 32]>;

/// A key block the station injects (`--key-origin station`): the bytes from
/// the partition's start to the key block's end with the header left erased
/// (program these first), and the header (write it last, as the commit of
/// the block).
pub fn station_key_block(device_key: &[u8; 32]) -> (Zeroizing<Vec<u8>>, [u8; 8]) {
    let mut image = Zeroizing::new(vec![0xffu8; IMAGE_LEN]);
    put_key_block(&mut image, device_key);
    let mut header = [0u8; KEY_BLOCK_HEADER_LEN];
    header.copy_from_slice(&image[KEY_BLOCK_OFFSET..KEY_BLOCK_OFFSET + KEY_BLOCK_HEADER_LEN]);
    image[KEY_BLOCK_OFFSET..KEY_BLOCK_OFFSET + KEY_BLOCK_HEADER_LEN].fill(0xff);
    (image, header)
}

/// The certificate block for `cert` (DER, at most [`CERT_MAX`] bytes), to be
/// written at [`CERT_BLOCK_OFFSET`]; `None` when it does not fit.
pub fn certificate_block(cert: &[u8]) -> Option<Vec<u8>> {
    let mut image = vec![0xffu8; cert_image_len(cert.len())];
    put_certificate(&mut image, cert).then(|| image.split_off(CERT_BLOCK_OFFSET))
}

/// The device key from a partition image, copied into wiping storage, if
/// its key block is well-formed.
pub fn key_block(partition: &[u8]) -> Option<Secret32> {
    firmware::partition::key_block(partition).map(|k| Zeroizing::new(*k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware::partition::{key_block_state, KeyBlockState};

    #[test]
    fn the_station_writes_the_firmware_layout_header_last() {
        let (mut img, header) = station_key_block(&[1; 32]);
        assert_eq!(img.len(), IMAGE_LEN);
        assert_eq!(
            key_block_state(&img),
            KeyBlockState::Damaged,
            "no header yet"
        );
        img[KEY_BLOCK_OFFSET..KEY_BLOCK_OFFSET + 8].copy_from_slice(&header);
        assert_eq!(*key_block(&img).unwrap(), [1; 32]);
        assert!(img[..KEY_BLOCK_OFFSET].iter().all(|&b| b == 0xff));

        let block = certificate_block(&[0x30, 3, 1, 2, 3]).unwrap();
        let mut whole = vec![0xffu8; CERT_BLOCK_OFFSET];
        whole.extend_from_slice(&block);
        assert_eq!(certificate(&whole), Some(&[0x30, 3, 1, 2, 3][..]));
        assert!(certificate_block(&vec![0; CERT_MAX + 1]).is_none());
    }
}
