//! The provisioning partition as the station writes it: the layout is
//! `firmware::partition` (the device reads it too); this module assembles
//! the bytes and keeps the secrets in wiping storage.

use firmware::partition::{cert_image_len, put_certificate, put_key_block};
pub use firmware::partition::{certificate, CERT_MAX, IMAGE_LEN};
use firmware::record::RECORD_LEN;
use zeroize::Zeroizing;

/// The bytes to program at the start of the partition (erased `0xff` gaps);
/// a `cert` longer than [`CERT_MAX`] is left out (the flow refuses those
/// before it gets here).
pub fn image(
    record: &[u8; RECORD_LEN],
    device_key: &[u8; 32],
    secret: &[u8; 32],
    cert: Option<&[u8]>,
) -> Zeroizing<Vec<u8>> {
    let cert = cert.filter(|c| c.len() <= CERT_MAX);
    let len = cert.map_or(IMAGE_LEN, |c| cert_image_len(c.len()));
    let mut out = Zeroizing::new(vec![0xffu8; len]);
    out[..RECORD_LEN].copy_from_slice(record);
    put_key_block(&mut out, device_key, secret);
    if let Some(c) = cert {
        put_certificate(&mut out, c);
    }
    out
}

/// 32 secret bytes, wiped when dropped.
pub type Secret32 = Zeroizing<[u8; 32]>;

/// The device key and secret from a partition image, copied into wiping
/// storage, if its key block is well-formed.
pub fn key_block(partition: &[u8]) -> Option<(Secret32, Secret32)> {
    let (key, secret) = firmware::partition::key_block(partition)?;
    Some((Zeroizing::new(*key), Zeroizing::new(*secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_station_writes_the_firmware_layout() {
        let img = image(&[7; RECORD_LEN], &[1; 32], &[2; 32], None);
        assert_eq!(img.len(), IMAGE_LEN);
        assert!(certificate(&img).is_none());
        assert_eq!(&img[..RECORD_LEN], &[7; RECORD_LEN][..]);
        let (k, s) = key_block(&img).unwrap();
        assert_eq!((*k, *s), ([1; 32], [2; 32]));
        let with_cert = image(
            &[7; RECORD_LEN],
            &[1; 32],
            &[2; 32],
            Some(&[0x30, 3, 1, 2, 3]),
        );
        assert_eq!(certificate(&with_cert), Some(&[0x30, 3, 1, 2, 3][..]));
        assert_eq!(&with_cert[..IMAGE_LEN], &img[..], "the rest is unchanged");
    }
}
