//! The provisioning record: a signed statement by a provisioning authority
//! that the chip with hardware ID `hw_id` is device `serial`, holding the
//! per-device key `device_pubkey`. Specified in `docs/provisioning-record.md`.
//!
//! Fixed size ([`RECORD_LEN`] bytes), little-endian, parseable from C with a
//! struct and no allocation:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `"PROV"` |
//! | 4 | 1 | format version (1) |
//! | 5 | 1 | flags (0) |
//! | 6 | 2 | record length (208) |
//! | 8 | 8 | `hw_id` (as `hwinfo_get_device_id()` returns it) |
//! | 16 | 4 | serial |
//! | 20 | 16 | product name, ASCII, NUL-padded |
//! | 36 | 65 | device public key, SEC1 uncompressed |
//! | 101 | 3 | reserved, zero |
//! | 104 | 8 | issue time, Unix seconds |
//! | 112 | 32 | authority key id: SHA-256 of its DER SubjectPublicKeyInfo |
//! | 144 | 64 | ECDSA P-256 signature `r ‖ s` over SHA-256 of bytes 0..144 |

use core::fmt;

use sha2::{Digest, Sha256};

use crate::keys::{KeyError, P256PublicKey};

/// Record magic.
pub const RECORD_MAGIC: [u8; 4] = *b"PROV";
/// The format version this crate writes and reads.
pub const RECORD_VERSION: u8 = 1;
/// Size of a record.
pub const RECORD_LEN: usize = 208;
/// Length of the signed part (everything before the signature).
pub const SIGNED_LEN: usize = 144;
/// Product name field size.
pub const PRODUCT_LEN: usize = 16;

/// A chip's hardware ID: the 8 bytes Zephyr's `hwinfo_get_device_id()`
/// returns on nRF, i.e. `DEVICEID[1]` then `DEVICEID[0]`, each big-endian.
/// Its text form is 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HwId(pub [u8; 8]);

impl HwId {
    /// From the two FICR `DEVICEID` words.
    pub fn from_deviceid(deviceid0: u32, deviceid1: u32) -> Self {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&deviceid1.to_be_bytes());
        b[4..].copy_from_slice(&deviceid0.to_be_bytes());
        Self(b)
    }

    /// Parse the 16-hex-digit text form (either case).
    pub fn parse_hex(text: &str) -> Option<Self> {
        let t = text.as_bytes();
        if t.len() != 16 {
            return None;
        }
        let mut b = [0u8; 8];
        for (i, pair) in t.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            b[i] = (hi * 16 + lo) as u8;
        }
        Some(Self(b))
    }
}

impl fmt::Display for HwId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for HwId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HwId({self})")
    }
}

/// Why a record is not accepted. Also the reasons the boot stage reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The partition is erased (all 0xFF) or blank (all 0x00): never provisioned.
    #[error("erased: no provisioning record")]
    Erased,
    /// Shorter than a record.
    #[error("malformed: truncated ({0} bytes, a record is 208)")]
    Truncated(usize),
    /// Longer than a record where an exact record was expected.
    #[error("malformed: {0} bytes, a record is 208")]
    Oversized(usize),
    /// Wrong magic.
    #[error("malformed: bad magic")]
    BadMagic,
    /// A format version this build does not know.
    #[error("malformed: unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// Flags, length or reserved bytes are not as version 1 defines them.
    #[error("malformed: bad {0} field")]
    BadField(&'static str),
    /// The device public key is not a P-256 point.
    #[error("malformed: device public key is not a P-256 point")]
    BadDeviceKey,
    /// No built-in authority has the record's key id.
    #[error("unknown authority")]
    UnknownAuthority,
    /// The signature does not verify with the authority's key.
    #[error("bad signature")]
    BadSignature,
    /// The record is for another chip.
    #[error("wrong chip: record is for hw_id {record}, this chip is {chip}")]
    WrongChip {
        /// `hw_id` in the record.
        record: HwId,
        /// This chip's.
        chip: HwId,
    },
}

impl RecordError {
    /// A short stable code for logs, consoles and the C ABI.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Erased => "erased",
            Self::Truncated(_)
            | Self::Oversized(_)
            | Self::BadMagic
            | Self::UnsupportedVersion(_)
            | Self::BadField(_)
            | Self::BadDeviceKey => "malformed",
            Self::UnknownAuthority => "unknown-authority",
            Self::BadSignature => "bad-signature",
            Self::WrongChip { .. } => "wrong-chip",
        }
    }
}

/// The fields of a record (its signed content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordBody {
    /// The chip.
    pub hw_id: HwId,
    /// The device's serial number.
    pub serial: u32,
    /// Product name, ASCII, NUL-padded.
    pub product: [u8; PRODUCT_LEN],
    /// The per-device public key.
    pub device_pubkey: P256PublicKey,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
    /// Key id of the authority that signs.
    pub authority_key_id: [u8; 32],
}

impl RecordBody {
    /// The product name as text (up to the first NUL), if it is ASCII.
    pub fn product_name(&self) -> Option<&str> {
        let end = self
            .product
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(PRODUCT_LEN);
        let name = &self.product[..end];
        if name.is_ascii() {
            core::str::from_utf8(name).ok()
        } else {
            None
        }
    }

    /// Product field from a name: ASCII, at most 16 bytes.
    pub fn product_field(name: &str) -> Option<[u8; PRODUCT_LEN]> {
        if !name.is_ascii() || name.len() > PRODUCT_LEN || name.bytes().any(|b| b == 0) {
            return None;
        }
        let mut p = [0u8; PRODUCT_LEN];
        p[..name.len()].copy_from_slice(name.as_bytes());
        Some(p)
    }

    /// The signed bytes (0..144).
    pub fn to_signed_bytes(&self) -> [u8; SIGNED_LEN] {
        let mut b = [0u8; SIGNED_LEN];
        b[0..4].copy_from_slice(&RECORD_MAGIC);
        b[4] = RECORD_VERSION;
        b[5] = 0;
        b[6..8].copy_from_slice(&(RECORD_LEN as u16).to_le_bytes());
        b[8..16].copy_from_slice(&self.hw_id.0);
        b[16..20].copy_from_slice(&self.serial.to_le_bytes());
        b[20..36].copy_from_slice(&self.product);
        b[36..101].copy_from_slice(self.device_pubkey.sec1());
        b[104..112].copy_from_slice(&self.issued_at.to_le_bytes());
        b[112..144].copy_from_slice(&self.authority_key_id);
        b
    }

    /// SHA-256 of the signed bytes: what the authority signs.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.to_signed_bytes()).into()
    }

    /// The whole record with `signature` (`r ‖ s`).
    pub fn to_record(&self, signature: &[u8; 64]) -> [u8; RECORD_LEN] {
        let mut r = [0u8; RECORD_LEN];
        r[..SIGNED_LEN].copy_from_slice(&self.to_signed_bytes());
        r[SIGNED_LEN..].copy_from_slice(signature);
        r
    }
}

/// A structurally valid record; the signature is not checked yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvisioningRecord {
    /// The signed fields.
    pub body: RecordBody,
    /// `r ‖ s`.
    pub signature: [u8; 64],
}

impl ProvisioningRecord {
    /// Parse exactly one record.
    pub fn parse(bytes: &[u8]) -> Result<Self, RecordError> {
        match bytes.len() {
            n if n < RECORD_LEN => return Err(RecordError::Truncated(n)),
            n if n > RECORD_LEN => return Err(RecordError::Oversized(n)),
            _ => {}
        }
        Self::parse_prefix(bytes)
    }

    /// Parse a record at the start of a partition (which may be longer).
    /// An erased or blank partition is [`RecordError::Erased`].
    pub fn parse_partition(partition: &[u8]) -> Result<Self, RecordError> {
        let head = partition.get(..RECORD_LEN).unwrap_or(partition);
        if !head.is_empty() && (head.iter().all(|&b| b == 0xff) || head.iter().all(|&b| b == 0)) {
            return Err(RecordError::Erased);
        }
        if partition.len() < RECORD_LEN {
            return Err(RecordError::Truncated(partition.len()));
        }
        Self::parse_prefix(partition)
    }

    fn parse_prefix(b: &[u8]) -> Result<Self, RecordError> {
        let b = b.get(..RECORD_LEN).ok_or(RecordError::Truncated(b.len()))?;
        if b[0..4] != RECORD_MAGIC {
            return Err(RecordError::BadMagic);
        }
        if b[4] != RECORD_VERSION {
            return Err(RecordError::UnsupportedVersion(b[4]));
        }
        if b[5] != 0 {
            return Err(RecordError::BadField("flags"));
        }
        if u16::from_le_bytes([b[6], b[7]]) as usize != RECORD_LEN {
            return Err(RecordError::BadField("length"));
        }
        if b[101..104] != [0, 0, 0] {
            return Err(RecordError::BadField("reserved"));
        }
        let arr = |r: core::ops::Range<usize>| -> [u8; 8] {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[r]);
            a
        };
        let mut product = [0u8; PRODUCT_LEN];
        product.copy_from_slice(&b[20..36]);
        let mut authority_key_id = [0u8; 32];
        authority_key_id.copy_from_slice(&b[112..144]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&b[144..208]);
        Ok(Self {
            body: RecordBody {
                hw_id: HwId(arr(8..16)),
                serial: u32::from_le_bytes([b[16], b[17], b[18], b[19]]),
                product,
                device_pubkey: P256PublicKey::from_sec1(&b[36..101])
                    .map_err(|_| RecordError::BadDeviceKey)?,
                issued_at: u64::from_le_bytes(arr(104..112)),
                authority_key_id,
            },
            signature,
        })
    }

    /// Check the signature against the authority named by the record's key
    /// id among `authorities`; returns the index of that authority.
    pub fn verify_signature(&self, authorities: &[P256PublicKey]) -> Result<usize, RecordError> {
        let index = authorities
            .iter()
            .position(|a| a.key_id() == self.body.authority_key_id)
            .ok_or(RecordError::UnknownAuthority)?;
        authorities[index]
            .verify_digest_raw(&self.body.digest(), &self.signature)
            .map_err(|e| match e {
                KeyError::BadSignature | KeyError::MalformedSignature => RecordError::BadSignature,
                _ => RecordError::BadSignature,
            })?;
        Ok(index)
    }
}

/// A record that verified for this chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provisioned {
    /// The record's fields.
    pub body: RecordBody,
    /// Index of the authority (in the list given) that signed it.
    pub authority: usize,
}

/// The boot-time check: parse the provisioning partition, find the authority,
/// verify the signature, and check the record is for `chip`.
pub fn verify_provisioning(
    partition: &[u8],
    chip: HwId,
    authorities: &[P256PublicKey],
) -> Result<Provisioned, RecordError> {
    let record = ProvisioningRecord::parse_partition(partition)?;
    let authority = record.verify_signature(authorities)?;
    if record.body.hw_id != chip {
        return Err(RecordError::WrongChip {
            record: record.body.hw_id,
            chip,
        });
    }
    Ok(Provisioned {
        body: record.body,
        authority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hw_id_text_form_matches_zephyr_on_qemu_microbit() {
        let id = HwId::from_deviceid(0x0000_0003, 0x1234_5678);
        assert_eq!(std::format!("{id}"), "1234567800000003");
        assert_eq!(HwId::parse_hex("1234567800000003"), Some(id));
        assert_eq!(HwId::parse_hex("12345678000000"), None);
        assert_eq!(HwId::parse_hex("123456780000000g"), None);
    }

    #[test]
    fn product_names() {
        assert!(RecordBody::product_field("sensor-v2").is_some());
        assert!(RecordBody::product_field("a-name-that-is-too-long").is_none());
        assert!(RecordBody::product_field("caf\u{e9}").is_none());
    }
}
