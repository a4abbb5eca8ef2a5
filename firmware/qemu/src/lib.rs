//! What the programs for QEMU's nRF51 share: the boot stage
//! (`src/main.rs`), the sample application (`src/bin/app.rs`) and the
//! measurement programs (`src/bin/*.rs`).
#![no_std]

pub mod console;
pub mod nrf51;
pub mod stack;

use cortex_m_semihosting::debug;

/// Report the verdict to QEMU over semihosting and stop: the emulator's way
/// to end a run with an exit code. (On a chip without a debugger the boot
/// stage would sit in a `wfi` loop here instead.)
pub fn exit(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}
