//! Boot stage for QEMU's nRF51 (`qemu-system-arm -M microbit`): reads the
//! chip's hardware ID from FICR, reads the provisioning record from the
//! provisioning partition, verifies it against the authority keys compiled in,
//! and reports over semihosting:
//!
//! ```text
//! PROVISIONED serial=N hw_id=HHHHHHHHHHHHHHHH product=NAME
//! NOT PROVISIONED reason=erased|malformed|unknown-authority|bad-signature|wrong-chip
//! ```
//!
//! exiting 0 or 1.
//!
//! Features, for the footprint benchmark (`bench/footprint.sh`): `record`
//! (default) is the check above; `image` also verifies an MCUboot image in
//! the slot at 0x8000 against the same keys; with neither, the program only
//! reads FICR, the baseline. `stack-probe` reports the peak stack use.
#![no_std]
#![no_main]

use boot_stage::exit;
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use firmware::record::HwId;
#[cfg(any(feature = "record", feature = "image"))]
use firmware::P256PublicKey;

include!(concat!(env!("OUT_DIR"), "/authorities.rs"));

/// FICR DEVICEID[0] and DEVICEID[1] (nRF51 reference manual, FICR registers).
const FICR_DEVICEID0: usize = 0x1000_0060;
const FICR_DEVICEID1: usize = 0x1000_0064;
/// The provisioning partition: the last 4 KiB page of the 256 KiB flash.
#[cfg(feature = "record")]
const PROVISIONING_PARTITION: usize = 0x0003_F000;
#[cfg(feature = "record")]
const PARTITION_LEN: usize = 4096;
/// An image slot, for the `image` feature.
#[cfg(feature = "image")]
const IMAGE_SLOT: usize = 0x0000_8000;
#[cfg(feature = "image")]
const IMAGE_SLOT_LEN: usize = 0x0003_0000;
#[cfg(any(feature = "record", feature = "image"))]
const MAX_KEYS: usize = 4;

fn read_hw_id() -> HwId {
    // SAFETY: FICR is always-mapped, read-only device memory on nRF51.
    let (d0, d1) = unsafe {
        (
            core::ptr::read_volatile(FICR_DEVICEID0 as *const u32),
            core::ptr::read_volatile(FICR_DEVICEID1 as *const u32),
        )
    };
    HwId::from_deviceid(d0, d1)
}

/// The compiled-in keys, in a fixed array (`None` if there are none).
#[cfg(any(feature = "record", feature = "image"))]
fn keys() -> Option<([P256PublicKey; MAX_KEYS], usize)> {
    let first = AUTHORITIES
        .iter()
        .find_map(|raw| P256PublicKey::from_sec1(raw).ok())?;
    // Unused slots repeat the first key and are never read.
    let mut keys = [first; MAX_KEYS];
    let mut n = 0;
    for raw in AUTHORITIES.iter().take(MAX_KEYS) {
        if let Ok(k) = P256PublicKey::from_sec1(raw) {
            keys[n] = k;
            n += 1;
        }
    }
    Some((keys, n))
}

#[cfg(feature = "record")]
fn check_record(chip: HwId) -> bool {
    let Some((keys, n)) = keys() else {
        hprintln!("NOT PROVISIONED reason=no-authority hw_id={}", chip);
        return false;
    };
    // SAFETY: the partition lies inside on-chip flash, mapped and readable.
    let partition =
        unsafe { core::slice::from_raw_parts(PROVISIONING_PARTITION as *const u8, PARTITION_LEN) };
    #[cfg(feature = "stack-probe")]
    let depth = stack::depth();
    #[cfg(feature = "stack-probe")]
    stack::paint();
    let verdict = firmware::record::verify_provisioning(partition, chip, &keys[..n]);
    #[cfg(feature = "stack-probe")]
    hprintln!(
        "STACK verify_provisioning={} (below a caller depth of {})",
        stack::used() - depth,
        depth
    );
    match verdict {
        Ok(p) => {
            hprintln!(
                "PROVISIONED serial={} hw_id={} product={}",
                p.body.serial,
                chip,
                p.body.product_name().unwrap_or("")
            );
            true
        }
        Err(e) => {
            hprintln!("NOT PROVISIONED reason={} hw_id={}", e.code(), chip);
            false
        }
    }
}

#[cfg(feature = "image")]
fn check_image() -> bool {
    let Some((keys, n)) = keys() else {
        return false;
    };
    // SAFETY: the slot lies inside on-chip flash, mapped and readable.
    let slot = unsafe { core::slice::from_raw_parts(IMAGE_SLOT as *const u8, IMAGE_SLOT_LEN) };
    match firmware::image::Image::parse(slot).and_then(|i| i.verify(&keys[..n], None)) {
        Ok(v) => {
            hprintln!("IMAGE OK version={}", v.version);
            true
        }
        Err(e) => {
            hprintln!("IMAGE INVALID reason={}", e.code());
            false
        }
    }
}

#[entry]
fn main() -> ! {
    #[cfg(feature = "stack-probe")]
    stack::paint();
    let _chip = read_hw_id();
    #[allow(unused_mut)]
    let mut ok = true;
    #[cfg(feature = "record")]
    {
        ok &= check_record(_chip);
    }
    #[cfg(feature = "image")]
    {
        ok &= check_image();
    }
    #[cfg(not(any(feature = "record", feature = "image")))]
    hprintln!("BOOT hw_id={}", _chip);
    #[cfg(feature = "stack-probe")]
    hprintln!("STACK whole-program={}", stack::used());
    exit(ok)
}

/// Peak stack use: fill the free stack with a pattern at start, find the
/// deepest overwritten word at the end.
#[cfg(feature = "stack-probe")]
mod stack {
    const PATTERN: u32 = 0xDEAD_BEEF;

    extern "C" {
        static mut __sheap: u32;
        static _stack_start: u32;
    }

    fn bounds() -> (usize, usize) {
        // Linker symbols; only their addresses are taken.
        (
            core::ptr::addr_of!(__sheap) as usize,
            core::ptr::addr_of!(_stack_start) as usize,
        )
    }

    #[inline(never)]
    pub(crate) fn paint() {
        let (bottom, _) = bounds();
        let here = cortex_m::register::msp::read() as usize - 64;
        let mut p = bottom;
        while p < here {
            // SAFETY: between the end of static data and below the live stack.
            unsafe { core::ptr::write_volatile(p as *mut u32, PATTERN) };
            p += 4;
        }
    }

    /// Stack in use at this point.
    pub(crate) fn depth() -> usize {
        bounds().1 - cortex_m::register::msp::read() as usize
    }

    pub(crate) fn used() -> usize {
        let (bottom, top) = bounds();
        let mut p = bottom;
        // SAFETY: reading RAM between the end of static data and the stack top.
        while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PATTERN {
            p += 4;
        }
        top - p
    }
}
