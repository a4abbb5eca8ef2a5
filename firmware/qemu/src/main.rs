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
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use firmware::record::{verify_provisioning, HwId};
use firmware::P256PublicKey;

include!(concat!(env!("OUT_DIR"), "/authorities.rs"));

/// FICR DEVICEID[0] and DEVICEID[1] (nRF51 reference manual, FICR registers).
const FICR_DEVICEID0: usize = 0x1000_0060;
const FICR_DEVICEID1: usize = 0x1000_0064;
/// The provisioning partition: the last 4 KiB page of the 256 KiB flash.
const PROVISIONING_PARTITION: usize = 0x0003_F000;
const PARTITION_LEN: usize = 4096;
const MAX_AUTHORITIES: usize = 4;

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

#[entry]
fn main() -> ! {
    let chip = read_hw_id();
    // SAFETY: the partition lies inside on-chip flash, mapped and readable.
    let partition =
        unsafe { core::slice::from_raw_parts(PROVISIONING_PARTITION as *const u8, PARTITION_LEN) };
    let Some(first) = AUTHORITIES
        .iter()
        .find_map(|raw| P256PublicKey::from_sec1(raw).ok())
    else {
        hprintln!("NOT PROVISIONED reason=no-authority hw_id={}", chip);
        debug::exit(debug::EXIT_FAILURE);
        loop {
            cortex_m::asm::wfi();
        }
    };
    // Unused slots repeat the first key and are never read.
    let mut keys = [first; MAX_AUTHORITIES];
    let mut n = 0;
    for raw in AUTHORITIES.iter().take(MAX_AUTHORITIES) {
        if let Ok(k) = P256PublicKey::from_sec1(raw) {
            keys[n] = k;
            n += 1;
        }
    }
    match verify_provisioning(partition, chip, &keys[..n]) {
        Ok(p) => {
            hprintln!(
                "PROVISIONED serial={} hw_id={} product={}",
                p.body.serial,
                chip,
                p.body.product_name().unwrap_or("")
            );
            debug::exit(debug::EXIT_SUCCESS);
        }
        Err(e) => {
            hprintln!("NOT PROVISIONED reason={} hw_id={}", e.code(), chip);
            debug::exit(debug::EXIT_FAILURE);
        }
    }
    loop {
        cortex_m::asm::wfi();
    }
}
