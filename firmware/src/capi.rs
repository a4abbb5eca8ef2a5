//! The C ABI for Zephyr / nRF Connect SDK applications (`--features capi`).
//! Declared in `firmware/include/provisioning.h`; every function checks its
//! pointers, never allocates, and never panics on input.
#![allow(unsafe_code)]

use core::ffi::c_int;

use crate::image::{Image, ImageError};
use crate::keys::P256PublicKey;
use crate::record::{verify_provisioning, HwId, RecordError};

/// Most keys a call may pass (authorities or release keys).
pub const PROV_MAX_KEYS: usize = 8;

/// Success.
pub const PROV_OK: c_int = 0;
/// Partition erased or blank.
pub const PROV_ERASED: c_int = 1;
/// Record malformed.
pub const PROV_MALFORMED: c_int = 2;
/// No built-in authority has the record's key id.
pub const PROV_UNKNOWN_AUTHORITY: c_int = 3;
/// Signature does not verify.
pub const PROV_BAD_SIGNATURE: c_int = 4;
/// Record for another chip.
pub const PROV_WRONG_CHIP: c_int = 5;
/// Image structure invalid.
pub const PROV_IMAGE_MALFORMED: c_int = 10;
/// Image hash mismatch.
pub const PROV_IMAGE_BAD_HASH: c_int = 11;
/// Image not signed by any given key.
pub const PROV_IMAGE_KEY_MISMATCH: c_int = 12;
/// Image security counter missing or below the minimum.
pub const PROV_IMAGE_ROLLBACK: c_int = 14;
/// A null pointer, too many keys, or a key that is not a P-256 point.
pub const PROV_INVALID_ARGUMENT: c_int = -1;

/// Decoded record fields (`struct prov_record_info`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ProvRecordInfo {
    /// Serial number.
    pub serial: u32,
    /// Index of the authority that signed, among those passed.
    pub authority_index: u32,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
    /// Device public key, SEC1 uncompressed.
    pub device_pubkey: [u8; 65],
    /// Product name, NUL-terminated.
    pub product: [u8; 17],
}

/// Facts of a verified image (`struct prov_image_info`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ProvImageInfo {
    /// SHA-256 over header, payload and protected TLVs.
    pub digest: [u8; 32],
    /// Security counter (0 when absent; see `has_security_counter`).
    pub security_counter: u32,
    /// Build number of the version.
    pub version_build: u32,
    /// Revision of the version.
    pub version_revision: u16,
    /// Major version.
    pub version_major: u8,
    /// Minor version.
    pub version_minor: u8,
    /// 1 if the image has a security counter.
    pub has_security_counter: u8,
    /// Index of the release key that signed, among those passed.
    pub key_index: u8,
}

/// Parse `n` consecutive 65-byte SEC1 keys into a fixed array (the unused
/// slots hold the curve's base point and are never read).
///
/// # Safety
/// `keys` must point to `n * 65` readable bytes when `n > 0`.
unsafe fn parse_keys(keys: *const u8, n: usize) -> Option<([P256PublicKey; PROV_MAX_KEYS], usize)> {
    if n > PROV_MAX_KEYS || (n > 0 && keys.is_null()) {
        return None;
    }
    let mut out = [P256PublicKey::from_sec1(&P256_GENERATOR).ok()?; PROV_MAX_KEYS];
    for (i, slot) in out.iter_mut().enumerate().take(n) {
        // SAFETY: the caller promises n * 65 readable bytes.
        let bytes = unsafe { core::slice::from_raw_parts(keys.add(i * 65), 65) };
        *slot = P256PublicKey::from_sec1(bytes).ok()?;
    }
    Some((out, n))
}

/// The P-256 base point, a valid key to fill unused slots.
const P256_GENERATOR: [u8; 65] = [
    0x04, 0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40,
    0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2,
    0x96, 0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e,
    0x16, 0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51,
    0xf5,
];

/// `int prov_p256_verify_digest(const uint8_t pubkey[65], const uint8_t digest[32], const uint8_t sig[64])`:
/// 0 only for a valid `r ‖ s` signature over `digest` by `pubkey`.
///
/// # Safety
/// The pointers must be valid for the sizes given, or null.
#[no_mangle]
pub unsafe extern "C" fn prov_p256_verify_digest(
    pubkey: *const u8,
    digest: *const u8,
    sig: *const u8,
) -> c_int {
    if pubkey.is_null() || digest.is_null() || sig.is_null() {
        return PROV_INVALID_ARGUMENT;
    }
    // SAFETY: non-null and, by contract, of these sizes.
    let (pubkey, digest, sig) = unsafe {
        (
            core::slice::from_raw_parts(pubkey, 65),
            &*(digest as *const [u8; 32]),
            &*(sig as *const [u8; 64]),
        )
    };
    match P256PublicKey::from_sec1(pubkey) {
        Ok(k) if k.verify_digest_raw(digest, sig).is_ok() => PROV_OK,
        Ok(_) => PROV_BAD_SIGNATURE,
        Err(_) => PROV_INVALID_ARGUMENT,
    }
}

/// `int prov_record_verify(const uint8_t *record, size_t record_len, const uint8_t hw_id[8],
/// const uint8_t *authority_keys, size_t n_authorities, struct prov_record_info *out)`.
///
/// `record` is the provisioning partition (at least the 208-byte record);
/// `authority_keys` holds `n_authorities` 65-byte SEC1 keys back to back.
/// Returns `PROV_OK` and fills `out` (if not null), or a `PROV_*` reason.
///
/// # Safety
/// The pointers must be valid for the sizes given, or null.
#[no_mangle]
pub unsafe extern "C" fn prov_record_verify(
    record: *const u8,
    record_len: usize,
    hw_id: *const u8,
    authority_keys: *const u8,
    n_authorities: usize,
    out: *mut ProvRecordInfo,
) -> c_int {
    if record.is_null() || hw_id.is_null() {
        return PROV_INVALID_ARGUMENT;
    }
    // SAFETY: checked non-null; sizes by contract.
    let (partition, chip) = unsafe {
        (
            core::slice::from_raw_parts(record, record_len),
            *(hw_id as *const [u8; 8]),
        )
    };
    // SAFETY: by contract.
    let Some((keys, n)) = (unsafe { parse_keys(authority_keys, n_authorities) }) else {
        return PROV_INVALID_ARGUMENT;
    };
    match verify_provisioning(partition, HwId(chip), &keys[..n]) {
        Ok(p) => {
            if !out.is_null() {
                let mut product = [0u8; 17];
                product[..16].copy_from_slice(&p.body.product);
                let info = ProvRecordInfo {
                    serial: p.body.serial,
                    authority_index: p.authority as u32,
                    issued_at: p.body.issued_at,
                    device_pubkey: *p.body.device_pubkey.sec1(),
                    product,
                };
                // SAFETY: non-null, and by contract a valid struct to write.
                unsafe { out.write(info) };
            }
            PROV_OK
        }
        Err(RecordError::Erased) => PROV_ERASED,
        Err(RecordError::UnknownAuthority) => PROV_UNKNOWN_AUTHORITY,
        Err(RecordError::BadSignature) => PROV_BAD_SIGNATURE,
        Err(RecordError::WrongChip { .. }) => PROV_WRONG_CHIP,
        Err(_) => PROV_MALFORMED,
    }
}

/// `int prov_image_verify(const uint8_t *image, size_t image_len, const uint8_t *release_keys,
/// size_t n_keys, uint32_t min_security_counter, struct prov_image_info *out)`.
///
/// Verifies an MCUboot image: structure, hash, KEYHASH/PUBKEY against the
/// release keys, ECDSA signature, and a security counter of at least
/// `min_security_counter` (0 accepts images without one).
///
/// # Safety
/// The pointers must be valid for the sizes given, or null.
#[no_mangle]
pub unsafe extern "C" fn prov_image_verify(
    image: *const u8,
    image_len: usize,
    release_keys: *const u8,
    n_keys: usize,
    min_security_counter: u32,
    out: *mut ProvImageInfo,
) -> c_int {
    if image.is_null() || n_keys == 0 {
        return PROV_INVALID_ARGUMENT;
    }
    // SAFETY: checked non-null; size by contract.
    let bytes = unsafe { core::slice::from_raw_parts(image, image_len) };
    // SAFETY: by contract.
    let Some((keys, n)) = (unsafe { parse_keys(release_keys, n_keys) }) else {
        return PROV_INVALID_ARGUMENT;
    };
    let min = (min_security_counter > 0).then_some(min_security_counter);
    let verified = Image::parse(bytes).and_then(|img| img.verify(&keys[..n], min));
    match verified {
        Ok(v) => {
            if !out.is_null() {
                let info = ProvImageInfo {
                    // P-256 keys sign SHA-256 images only, and a key is
                    // required here: a verified image has a SHA-256 digest.
                    digest: v.digest.sha256().unwrap_or([0; 32]),
                    security_counter: v.security_counter.unwrap_or(0),
                    version_build: v.version.build,
                    version_revision: v.version.revision,
                    version_major: v.version.major,
                    version_minor: v.version.minor,
                    has_security_counter: u8::from(v.security_counter.is_some()),
                    key_index: v.signed_by.unwrap_or(0) as u8,
                };
                // SAFETY: non-null, and by contract a valid struct to write.
                unsafe { out.write(info) };
            }
            PROV_OK
        }
        Err(ImageError::HashMismatch) => PROV_IMAGE_BAD_HASH,
        Err(ImageError::KeyMismatch | ImageError::Unsigned) => PROV_IMAGE_KEY_MISMATCH,
        Err(ImageError::BadSignature(_)) => PROV_BAD_SIGNATURE,
        Err(ImageError::MissingSecurityCounter | ImageError::SecurityCounterTooLow { .. }) => {
            PROV_IMAGE_ROLLBACK
        }
        Err(_) => PROV_IMAGE_MALFORMED,
    }
}

/// `int prov_auth_sign(const uint8_t scalar[32], const uint8_t nonce[32],
/// const uint8_t hw_id[8], uint32_t serial, uint8_t sig[64])`: the device's
/// answer to a challenge (`docs/device-auth.md`), ECDSA P-256 `r ‖ s` with
/// the device key `scalar` (big-endian), deterministic (RFC 6979). 0 when
/// signed; `sig` is left untouched otherwise.
///
/// # Safety
/// The pointers must be valid for the sizes given, or null.
#[no_mangle]
pub unsafe extern "C" fn prov_auth_sign(
    scalar: *const u8,
    nonce: *const u8,
    hw_id: *const u8,
    serial: u32,
    sig: *mut u8,
) -> c_int {
    if scalar.is_null() || nonce.is_null() || hw_id.is_null() || sig.is_null() {
        return PROV_INVALID_ARGUMENT;
    }
    // SAFETY: non-null and, by contract, of these sizes.
    let (scalar, nonce, hw_id) = unsafe {
        (
            &*(scalar as *const [u8; 32]),
            &*(nonce as *const [u8; 32]),
            *(hw_id as *const [u8; 8]),
        )
    };
    match crate::auth::sign_auth(scalar, nonce, HwId(hw_id), serial) {
        Ok(signature) => {
            // SAFETY: non-null and, by contract, 64 writable bytes.
            unsafe { core::ptr::copy_nonoverlapping(signature.as_ptr(), sig, 64) };
            PROV_OK
        }
        Err(_) => PROV_INVALID_ARGUMENT,
    }
}
