//! The boot decision of a first-stage bootloader with MCUboot's semantics, in
//! overwrite-only mode (`docs/boot.md`): install a pending upgrade from the
//! secondary slot, verify the primary slot, and say what to start.
//!
//! With the feature `enc`, an encrypted upgrade is decrypted on its way into
//! the primary slot with the chip's own P-256 key (MCUboot's ECIES-P256):
//! verified first, decrypted a chunk at a time for the hash, then decrypted
//! again as it is copied, and the copy compared with a third decryption.
//!
//! Everything here works on a [`Flash`] and allocates nothing, so the boot
//! stage on the chip (`firmware/qemu`) and the tests on the host (a simulated
//! NOR flash that loses power at any chosen write) run the same code. What is
//! left to the chip is reading FICR, the console and the jump.

pub mod counter;
mod flash;
pub mod handoff;

pub use counter::CounterLog;
pub use flash::{Flash, FlashError};
pub use handoff::Handoff;

#[cfg(feature = "enc")]
use core::ops::Range;

#[cfg(feature = "enc")]
use crate::image::enc;
use crate::image::{flags, magic_max_align, Image, ImageError, Verified, BOOT_MAGIC_SIZE};
use crate::keys::P256PublicKey;

/// Bytes at the end of each slot kept for the MCUboot trailer (overwrite-only,
/// maximum alignment 8: `image_ok`, `copy_done`, magic). An image must end
/// before them.
pub const TRAILER_RESERVE: u32 = 32;

/// A range of flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub start: u32,
    /// Length in bytes.
    pub len: u32,
}

impl Region {
    /// One past the last address.
    pub const fn end(&self) -> u32 {
        self.start + self.len
    }
}

/// Where the boot stage finds what it works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The slot images run from.
    pub primary: Region,
    /// The slot upgrades arrive in.
    pub secondary: Region,
    /// The rollback counter's log.
    pub counter: CounterLog,
    /// RAM an application's initial stack pointer may point into (its end
    /// included: the stack grows down from it).
    pub ram: Region,
}

impl Layout {
    /// QEMU's `microbit` (nRF51822, 256 KiB flash in 1 KiB pages, 16 KiB RAM),
    /// as `docs/boot.md` fixes it.
    pub const MICROBIT: Layout = Layout {
        primary: Region {
            start: 0x0000_8000,
            len: 0x1_9000,
        },
        secondary: Region {
            start: 0x0002_1000,
            len: 0x1_9000,
        },
        counter: CounterLog { start: 0x0003_A000 },
        ram: Region {
            start: 0x2000_0000,
            len: 0x4000,
        },
    };
}

/// Why the boot stage refused an image; `code()` is what the console shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The slot is erased.
    #[error("no image in the slot")]
    NoImage,
    /// The slot does not start with MCUboot's image magic.
    #[error("the image header has the wrong magic")]
    BadMagic,
    /// Header fields this boot stage cannot run: header size, flags
    /// (encrypted, compressed, RAM-load, not bootable), fixed address.
    #[error("the image header is malformed or asks for what this boot stage does not do")]
    BadHeader,
    /// The TLV areas are malformed, or hold a TLV MCUboot does not allow there.
    #[error("the image's TLV area is malformed")]
    BadTlv,
    /// No SHA-256 TLV, or it does not match the image.
    #[error("the image hash does not match")]
    BadHash,
    /// The image carries no signature.
    #[error("the image is not signed")]
    NoSignature,
    /// No signature by a key built into the boot stage.
    #[error("the image is not signed by a key this boot stage knows")]
    UnknownKey,
    /// A signature by a built-in key does not verify.
    #[error("the image's signature does not verify")]
    BadSignature,
    /// The image's security counter is below the stored minimum.
    #[error("the image's security counter is below the stored minimum")]
    Rollback,
    /// The image does not fit the slot (with its trailer).
    #[error("the image does not fit the slot")]
    TooLarge,
    /// The signed image has no usable vector table at its start.
    #[error("the image has no vector table for this chip")]
    BadVector,
    /// Flash could not be written while installing.
    #[error("flash write failed")]
    Flash,
    /// An encrypted upgrade whose AES key this chip cannot unwrap: wrapped
    /// for another device's key or with another scheme, no ENC TLV, or no
    /// key on the chip (or a boot stage built without `enc`).
    #[error("the image's encryption key is not wrapped for this chip")]
    EncKey,
}

impl Refusal {
    /// The short code printed as `BOOT refused reason=CODE`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoImage => "no-image",
            Self::BadMagic => "bad-magic",
            Self::BadHeader => "bad-header",
            Self::BadTlv => "bad-tlv",
            Self::BadHash => "bad-hash",
            Self::NoSignature => "no-signature",
            Self::UnknownKey => "unknown-key",
            Self::BadSignature => "bad-signature",
            Self::Rollback => "rollback",
            Self::TooLarge => "too-large",
            Self::BadVector => "bad-vector",
            Self::Flash => "flash",
            Self::EncKey => "enc-key",
        }
    }

    fn from_image(e: ImageError) -> Self {
        match e {
            ImageError::Truncated { .. } => Self::TooLarge,
            ImageError::BadMagic { .. } => Self::BadMagic,
            ImageError::HeaderTooSmall(_) => Self::BadHeader,
            ImageError::MissingHash | ImageError::HashMismatch => Self::BadHash,
            ImageError::Unsigned => Self::NoSignature,
            ImageError::KeyMismatch => Self::UnknownKey,
            ImageError::BadSignature(_) => Self::BadSignature,
            ImageError::MissingSecurityCounter | ImageError::SecurityCounterTooLow { .. } => {
                Self::Rollback
            }
            _ => Self::BadTlv,
        }
    }
}

/// Header flags an image may carry to be started from the primary slot.
/// With `enc`, an encrypted image's flags stay in the header once it has
/// been decrypted into the primary slot (as MCUboot leaves them), where it
/// reads as plaintext.
const RUNNABLE_FLAGS: u32 = if cfg!(feature = "enc") {
    flags::ROM_FIXED | ENCRYPTED
} else {
    flags::ROM_FIXED
};

/// Either AES flag.
const ENCRYPTED: u32 = flags::ENCRYPTED_AES128 | flags::ENCRYPTED_AES256;

/// A verified image in a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotImage {
    /// What verification established.
    pub verified: Verified,
    /// Bytes from the slot start to the end of the TLVs.
    pub len: u32,
    /// Offset of the vector table (the header size).
    pub vector_offset: u32,
}

impl SlotImage {
    /// The image's security counter, 0 when it has none.
    pub fn security_counter(&self) -> u32 {
        self.verified.security_counter.unwrap_or(0)
    }
}

/// How a slot's bytes read as the image that will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source<'k> {
    /// As they are: the primary slot (an encrypted upgrade was decrypted on
    /// its way in).
    Plain,
    /// An upgrade: decrypted with the chip's P-256 private key (`None`: the
    /// chip has none) when its header says it is encrypted.
    Upgrade(Option<&'k [u8; 32]>),
}

/// Verify the image in `slot` completely, as it will run from `layout`'s
/// primary slot: structure, header, hash, a signature by one of `keys`
/// (matched by KEYHASH), security counter not below `min_counter` (an image
/// without one counts as 0), and a vector table that points into RAM and
/// into the image.
pub fn check_slot(
    flash: &impl Flash,
    layout: &Layout,
    slot: Region,
    keys: &[P256PublicKey],
    min_counter: u32,
) -> Result<SlotImage, Refusal> {
    check(flash, layout, slot, keys, min_counter, Source::Plain).map(|(img, _)| img)
}

/// [`check_slot`] for bytes read as `source` says; also returns how to
/// read its payload (decrypted or not) for the copy.
fn check(
    flash: &impl Flash,
    layout: &Layout,
    slot: Region,
    keys: &[P256PublicKey],
    min_counter: u32,
    source: Source<'_>,
) -> Result<(SlotImage, Decrypt), Refusal> {
    let usable = slot.len.saturating_sub(TRAILER_RESERVE);
    let bytes = flash.read(slot.start, usable);
    if bytes.get(..4) == Some(&[0xff; 4]) {
        return Err(Refusal::NoImage);
    }
    let image = Image::parse(bytes).map_err(Refusal::from_image)?;
    let header = image.header();
    let runs_at = layout.primary.start;
    if header.flags & !RUNNABLE_FLAGS != 0
        || (header.flags & flags::ROM_FIXED != 0 && header.load_addr != runs_at)
        || header.header_size % 4 != 0
    {
        return Err(Refusal::BadHeader);
    }
    let payload = image.payload_range();
    let payload = payload.start as u32..payload.end as u32;
    let (verified, decrypt) = match source {
        #[cfg(feature = "enc")]
        Source::Upgrade(device_key) if header.flags & ENCRYPTED != 0 => {
            let key = unwrap_for_chip(&image, device_key)?;
            let verified = image
                .verify_decrypted(keys, None, &key)
                .map_err(Refusal::from_image)?;
            (verified, Decrypt::new(key, payload.clone()))
        }
        _ => (
            image.verify(keys, None).map_err(Refusal::from_image)?,
            Decrypt::plain(),
        ),
    };
    if verified.signed_by.is_none() {
        // No keys built in: nothing can be trusted.
        return Err(Refusal::UnknownKey);
    }
    if verified.security_counter.unwrap_or(0) < min_counter {
        return Err(Refusal::Rollback);
    }
    // The vector table as it will run (decrypted).
    let mut vectors = [0u8; 8];
    let first = payload.start as usize;
    if payload.len() < 8 {
        return Err(Refusal::BadVector);
    }
    vectors.copy_from_slice(&bytes[first..first + 8]);
    decrypt.pass().apply(payload.start, &mut vectors);
    let [sp, reset] = [0, 4].map(|at| {
        u32::from_le_bytes([
            vectors[at],
            vectors[at + 1],
            vectors[at + 2],
            vectors[at + 3],
        ])
    });
    let code = runs_at + payload.start..runs_at + payload.end;
    let stack_ok = sp > layout.ram.start && sp <= layout.ram.end() && sp % 4 == 0;
    if !stack_ok || reset & 1 == 0 || !code.contains(&(reset & !1)) {
        return Err(Refusal::BadVector);
    }
    Ok((
        SlotImage {
            verified,
            len: image.tlv_end().next_multiple_of(4) as u32,
            vector_offset: u32::from(header.header_size),
        },
        decrypt,
    ))
}

/// The AES key of an encrypted upgrade, unwrapped with the chip's key.
#[cfg(feature = "enc")]
fn unwrap_for_chip(
    image: &Image<'_>,
    device_key: Option<&[u8; 32]>,
) -> Result<enc::AesKey, Refusal> {
    let tlv = enc::find_tlv(image).map_err(|e| match e {
        enc::EncError::BadLength { .. } | enc::EncError::DuplicateTlv => Refusal::BadTlv,
        _ => Refusal::EncKey,
    })?;
    let device_key = device_key.ok_or(Refusal::EncKey)?;
    enc::unwrap_p256(&tlv, device_key).map_err(|_| Refusal::EncKey)
}

/// How an upgrade's payload turns into what runs: decrypted with its AES
/// key (feature `enc`), or copied as it is.
struct Decrypt {
    #[cfg(feature = "enc")]
    key: Option<(enc::AesKey, Range<u32>)>,
}

impl Decrypt {
    fn plain() -> Self {
        Self {
            #[cfg(feature = "enc")]
            key: None,
        }
    }

    #[cfg(feature = "enc")]
    fn new(key: enc::AesKey, payload: Range<u32>) -> Self {
        Self {
            key: Some((key, payload)),
        }
    }

    /// One pass over the slot, front to back.
    fn pass(&self) -> Pass {
        Pass {
            #[cfg(feature = "enc")]
            stream: self
                .key
                .as_ref()
                .map(|(key, payload)| (key.keystream(), payload.clone())),
        }
    }
}

/// A pass of [`Decrypt`] over consecutive chunks of a slot.
struct Pass {
    #[cfg(feature = "enc")]
    stream: Option<(enc::Keystream, Range<u32>)>,
}

impl Pass {
    /// `chunk` holds the slot's bytes from offset `at`, the chunk after the
    /// previous one (or any chunk, for a plain slot): decrypt its payload
    /// part in place.
    #[cfg_attr(not(feature = "enc"), allow(unused_variables))]
    fn apply(&mut self, at: u32, chunk: &mut [u8]) {
        #[cfg(feature = "enc")]
        if let Some((stream, payload)) = &mut self.stream {
            let start = at.max(payload.start);
            let end = (at + chunk.len() as u32).min(payload.end);
            if start < end {
                stream.apply(&mut chunk[(start - at) as usize..(end - at) as usize]);
            }
        }
    }
}

/// What happened to the secondary slot at this boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// Nothing pending.
    None,
    /// The upgrade was verified, copied over the primary slot, checked, and
    /// the counter raised; the secondary slot is erased.
    Installed(SlotImage),
    /// The upgrade was refused and its pending mark erased; the primary slot
    /// was not touched.
    Refused(Refusal),
}

/// Whether the secondary slot holds an image marked for installation (an
/// MCUboot boot magic at the slot's end: `imgtool sign --pad`).
pub fn upgrade_pending(flash: &impl Flash, layout: &Layout) -> bool {
    let s = layout.secondary;
    let magic = flash.read(s.end() - BOOT_MAGIC_SIZE as u32, BOOT_MAGIC_SIZE as u32);
    magic_max_align(magic).is_some()
}

/// Install a pending upgrade, overwrite-only and safe against a power cut at
/// any point: the secondary slot keeps the image and its pending mark until
/// the copy in the primary slot reads back equal and the counter is raised,
/// so an interrupted install starts again at the next boot. An encrypted
/// upgrade (feature `enc`) is decrypted with `device_key`, the chip's P-256
/// private key, as it is copied; the primary slot then holds the plaintext.
pub fn install_upgrade(
    flash: &mut impl Flash,
    layout: &Layout,
    keys: &[P256PublicKey],
    device_key: Option<&[u8; 32]>,
) -> Result<Upgrade, FlashError> {
    if !upgrade_pending(flash, layout) {
        return Ok(Upgrade::None);
    }
    let (primary, secondary) = (layout.primary, layout.secondary);
    let min = layout.counter.read(flash);
    let source = Source::Upgrade(device_key);
    let checked = check(flash, layout, secondary, keys, min, source).and_then(|img| {
        if img.0.len > primary.len - TRAILER_RESERVE {
            Err(Refusal::TooLarge)
        } else {
            Ok(img)
        }
    });
    let (img, decrypt) = match checked {
        Ok(img) => img,
        Err(refusal) => {
            // No longer pending; the primary slot stays as it was.
            let page = flash.page_size();
            flash.erase(secondary.end() - page, page)?;
            return Ok(Upgrade::Refused(refusal));
        }
    };
    let page = flash.page_size();
    let mut chunk = [0u8; 256];
    let mut pass = decrypt.pass();
    let mut off = 0;
    while off < img.len {
        let n = page.min(img.len - off);
        flash.erase_page(primary.start + off)?;
        let mut done = 0;
        while done < n {
            let m = (n - done).min(chunk.len() as u32);
            let chunk = &mut chunk[..m as usize];
            chunk.copy_from_slice(flash.read(secondary.start + off + done, m));
            pass.apply(off + done, chunk);
            flash.write(primary.start + off + done, chunk)?;
            done += m;
        }
        off += n;
    }
    // The copy, read back, against the upgrade read (and decrypted) again.
    let mut pass = decrypt.pass();
    let mut off = 0;
    while off < img.len {
        let m = (img.len - off).min(chunk.len() as u32);
        let chunk = &mut chunk[..m as usize];
        chunk.copy_from_slice(flash.read(secondary.start + off, m));
        pass.apply(off, chunk);
        if flash.read(primary.start + off, m) != &chunk[..] {
            return Err(FlashError {
                op: "write",
                addr: primary.start + off,
            });
        }
        off += m;
    }
    layout.counter.raise(flash, img.security_counter())?;
    // The pending mark goes first, so a cut below leaves nothing pending.
    flash.erase(secondary.end() - page, page)?;
    flash.erase(secondary.start, secondary.len - page)?;
    Ok(Upgrade::Installed(img))
}

/// The outcome of one boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The secondary slot.
    pub upgrade: Upgrade,
    /// The primary slot: start it, or why not.
    pub primary: Result<SlotImage, Refusal>,
    /// The stored minimum security counter after this boot.
    pub min_counter: u32,
}

/// Install any pending upgrade, then verify the primary slot. A flash failure
/// during the install leaves the upgrade pending for the next boot and is
/// reported as the primary's refusal if the primary no longer verifies; an
/// empty primary slot reports the refusal of the upgrade refused at this
/// boot, if any.
/// `device_key` is the chip's P-256 private key, for encrypted upgrades
/// (feature `enc`).
pub fn decide(
    flash: &mut impl Flash,
    layout: &Layout,
    keys: &[P256PublicKey],
    device_key: Option<&[u8; 32]>,
) -> Decision {
    let upgrade = match install_upgrade(flash, layout, keys, device_key) {
        Ok(u) => u,
        Err(_) => Upgrade::Refused(Refusal::Flash),
    };
    let stored = layout.counter.read(flash);
    let primary = match (
        check_slot(flash, layout, layout.primary, keys, stored),
        upgrade,
    ) {
        // Nothing in the primary slot but an upgrade refused at this boot:
        // that refusal is why nothing starts (a chip whose only image is
        // another chip's copy says `enc-key`, not `no-image`).
        (Err(Refusal::NoImage), Upgrade::Refused(why)) => Err(why),
        (primary, _) => primary,
    };
    // As MCUboot does for the image it boots: its counter becomes the
    // minimum. A failed write is retried at the next boot.
    if let Ok(img) = &primary {
        let _ = layout.counter.raise(flash, img.security_counter());
    }
    let min_counter = layout.counter.read(flash);
    Decision {
        upgrade,
        primary,
        min_counter,
    }
}

#[cfg(test)]
mod tests;
