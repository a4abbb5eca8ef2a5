//! The boot stage for QEMU's nRF51 (`qemu-system-arm -M microbit`): a
//! first-stage bootloader with MCUboot's image format and semantics,
//! overwrite-only (`docs/boot.md`). At every reset:
//!
//! 1. an upgrade pending in the secondary slot is verified and installed
//!    (`UPGRADE installed …` or `UPGRADE refused reason=…`);
//! 2. the primary slot is verified against the release keys built in
//!    (`BOOT refused reason=…` and a halt without jumping when it fails);
//! 3. the provisioning record is checked against FICR (`PROVISIONED …` or
//!    `NOT PROVISIONED reason=…`) and the result handed to the application
//!    in the handoff block at the start of RAM;
//! 4. `BOOT ok version=… counter=…`, and a jump into the image.
//!
//! The console is UART0. Interrupts reach the application through this
//! stage's vector table (Cortex-M0 has no VTOR): see `DefaultHandler` below.
//!
//! Features: `enc` decrypts encrypted upgrades with the chip's own P-256
//! key, `stack-probe` reports the peak stack, `cost-probe` the TIMER0 ticks
//! from reset to the jump (instructions under `-icount`).
#![no_std]
#![no_main]

use boot_stage::console::Console;
use boot_stage::nrf51::{self, Nvmc, HANDOFF};
use cortex_m_rt::entry;
use firmware::boot::{self, Handoff, Layout, Upgrade};
use firmware::record::{HwId, PRODUCT_LEN};
use firmware::P256PublicKey;

// RELEASE_KEYS and PROV_AUTHORITIES: SEC1 points built in by build.rs.
include!(concat!(env!("OUT_DIR"), "/keys.rs"));

const MAX_KEYS: usize = 4;
const LAYOUT: Layout = Layout::MICROBIT;

// Every exception and interrupt but reset and HardFault lands in this
// stage's `DefaultHandler`. Once the application runs (the handoff block
// carries its magic) it branches, with the exception frame and EXC_RETURN
// untouched, to the application's handler for the same vector: the word at
// `vector table + 4 * IPSR`. Before that, it stops the chip.
core::arch::global_asm!(
    ".section .text.DefaultHandler,\"ax\",%progbits",
    ".global DefaultHandler",
    ".type DefaultHandler,%function",
    ".thumb_func",
    "DefaultHandler:",
    "    ldr r0, ={handoff}",
    "    ldr r0, [r0]",
    "    ldr r1, ={magic}",
    "    cmp r0, r1",
    "    bne 1f",
    "    ldr r1, ={handoff}",
    "    ldr r1, [r1, #{vector_table}]",
    "    mrs r0, ipsr",
    "    lsls r0, r0, #2",
    "    ldr r0, [r1, r0]",
    "    bx r0",
    "1:  b 1b",
    ".ltorg",
    handoff = const HANDOFF,
    magic = const u32::from_le_bytes(firmware::boot::handoff::HANDOFF_MAGIC),
    vector_table = const firmware::boot::handoff::VECTOR_TABLE_OFFSET,
);

/// Run `f` with the valid keys (up to MAX_KEYS) of a list of SEC1 points.
fn with_keys<R>(list: &[[u8; 65]], f: impl FnOnce(&[P256PublicKey]) -> R) -> R {
    let mut valid = list
        .iter()
        .filter_map(|raw| P256PublicKey::from_sec1(raw).ok());
    let Some(first) = valid.next() else {
        return f(&[]);
    };
    // Unused entries repeat the first key and are never read.
    let mut keys = [first; MAX_KEYS];
    let mut n = 1;
    for (slot, key) in keys[1..].iter_mut().zip(valid) {
        *slot = key;
        n += 1;
    }
    f(&keys[..n])
}

/// Check the provisioning record against this chip; print the verdict.
fn check_record(con: &mut Console, chip: HwId) -> Option<(u32, [u8; PRODUCT_LEN])> {
    if PROV_AUTHORITIES.is_empty() {
        con.str("NOT PROVISIONED reason=no-authority hw_id=")
            .hex(&chip.0)
            .end();
        return None;
    }
    let partition = nrf51::provisioning_partition();
    match with_keys(PROV_AUTHORITIES, |keys| {
        firmware::record::verify_provisioning(partition, chip, keys)
    }) {
        Ok(p) => {
            con.str("PROVISIONED serial=")
                .dec(p.body.serial)
                .str(" hw_id=")
                .hex(&chip.0)
                .str(" product=")
                .str(p.body.product_name().unwrap_or(""))
                .str(" key_origin=")
                .str(p.body.key_origin.as_str())
                .end();
            Some((p.body.serial, p.body.product))
        }
        Err(e) => {
            con.str("NOT PROVISIONED reason=")
                .str(e.code())
                .str(" hw_id=")
                .hex(&chip.0)
                .end();
            None
        }
    }
}

/// Stop without starting anything.
fn halt() -> ! {
    boot_stage::exit(false)
}

#[entry]
fn main() -> ! {
    // No stale handoff from an earlier boot may route interrupts onward.
    // SAFETY: the handoff block is RAM this program does not link into.
    unsafe { core::ptr::write_bytes(HANDOFF as *mut u8, 0, firmware::boot::handoff::HANDOFF_LEN) };
    #[cfg(feature = "cost-probe")]
    let (timer, calibration) = {
        let timer = nrf51::Timer::start();
        // Three instructions an iteration (subs, nop, bne): the ticks of a
        // known number of instructions, measured in the same run.
        let start = timer.ticks();
        // SAFETY: a register-only loop.
        unsafe {
            core::arch::asm!("2:", "subs {n}, #1", "nop", "bne 2b", n = inout(reg) 100_000u32 => _);
        }
        let calibration = timer.ticks() - start;
        (nrf51::Timer::start(), calibration)
    };
    #[cfg(feature = "stack-probe")]
    boot_stage::stack::paint();
    let mut con = Console::init();
    let mut flash = Nvmc::take();
    // The chip's own key (made by the application at its first start), for
    // encrypted upgrades: read where it lies, never copied.
    let device_key = if cfg!(feature = "enc") {
        firmware::partition::key_block(nrf51::provisioning_partition())
    } else {
        None
    };
    let decision = with_keys(RELEASE_KEYS, |keys| {
        boot::decide(&mut flash, &LAYOUT, keys, device_key)
    });
    match decision.upgrade {
        Upgrade::None => {}
        Upgrade::Installed(img) => con
            .str("UPGRADE installed version=")
            .version(img.verified.version)
            .str(" counter=")
            .dec(img.security_counter())
            .end(),
        Upgrade::Refused(r) => con.str("UPGRADE refused reason=").str(r.code()).end(),
    }
    let image = match decision.primary {
        Ok(image) => image,
        Err(r) => {
            con.str("BOOT refused reason=").str(r.code()).end();
            halt();
        }
    };

    let chip = nrf51::hw_id();
    let provisioned = check_record(&mut con, chip);
    let vectors = LAYOUT.primary.start + image.vector_offset;
    let handoff = Handoff {
        hw_id: chip,
        provisioned,
        version: image.verified.version,
        security_counter: decision.min_counter,
        vector_table: vectors,
    };
    con.str("BOOT ok version=")
        .version(image.verified.version)
        .str(" counter=")
        .dec(decision.min_counter)
        .end();
    #[cfg(feature = "stack-probe")]
    con.str("STACK boot=")
        .dec(boot_stage::stack::used() as u32)
        .end();
    #[cfg(feature = "cost-probe")]
    con.str("COST ticks=")
        .dec(timer.ticks())
        .str(" calibration_insns=300000 calibration_ticks=")
        .dec(calibration)
        .end();

    let block = handoff.to_bytes();
    // SAFETY: the handoff block is RAM this program does not link into; the
    // image at `vectors` was verified above, and its vector table checked to
    // point into RAM and into the image.
    unsafe {
        core::ptr::copy_nonoverlapping(block.as_ptr(), HANDOFF as *mut u8, block.len());
        let sp = core::ptr::read_volatile(vectors as *const u32);
        let reset = core::ptr::read_volatile((vectors + 4) as *const u32);
        core::arch::asm!(
            "msr msp, {sp}",
            "bx {reset}",
            sp = in(reg) sp,
            reset = in(reg) reset,
            options(noreturn)
        );
    }
}
