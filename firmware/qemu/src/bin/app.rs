//! The sample application for the boot stage: linked to run from the
//! primary slot after its 0x200-byte image header (`app.x`), written as a raw
//! binary by `build-app.sh` for `imgtool sign --pad-header -H 0x200` or
//! `keytool image sign`.
//!
//! It proves that an interrupt reaches it through the boot stage's vector
//! table (it pends PendSV and waits for its own handler), then prints what
//! the boot stage handed over on UART0:
//!
//! ```text
//! APP version=1.2.0+0 serial=17 hw_id=1234567800000003
//! APP unprovisioned version=1.2.0+0 hw_id=1234567800000003
//! ```
//!
//! and ends the emulator run (exit 0).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, Ordering};

use boot_stage::console::Console;
use cortex_m::peripheral::SCB;
use cortex_m_rt::{entry, exception};
use firmware::boot::Handoff;

/// The boot stage's handoff block (docs/boot.md).
const HANDOFF: usize = 0x2000_0000;

static PENDSV_TAKEN: AtomicBool = AtomicBool::new(false);

#[exception]
fn PendSV() {
    PENDSV_TAKEN.store(true, Ordering::SeqCst);
}

#[entry]
fn main() -> ! {
    let mut con = Console::init();
    SCB::set_pendsv();
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
    if !PENDSV_TAKEN.load(Ordering::SeqCst) {
        con.str("APP fault=interrupts-not-forwarded").end();
        boot_stage::exit(false);
    }
    // SAFETY: the first 64 bytes of RAM, which this program does not link into.
    let block = unsafe { core::slice::from_raw_parts(HANDOFF as *const u8, 64) };
    let Some(handoff) = Handoff::parse(block) else {
        con.str("APP fault=no-handoff").end();
        boot_stage::exit(false);
    };
    match handoff.provisioned {
        Some((serial, _)) => con
            .str("APP version=")
            .version(handoff.version)
            .str(" serial=")
            .dec(serial),
        None => con
            .str("APP unprovisioned version=")
            .version(handoff.version),
    }
    .str(" hw_id=")
    .hex(&handoff.hw_id.0)
    .end();
    boot_stage::exit(true)
}
