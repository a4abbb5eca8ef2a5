//! The nRF51 peripherals the programs use, by their registers (nRF51 Series
//! Reference Manual v3.0): FICR, UART0, NVMC and TIMER0.

use core::ptr::{read_volatile, write_volatile};

use firmware::boot::{Flash, FlashError};
use firmware::record::HwId;

fn read(addr: u32) -> u32 {
    // SAFETY: callers pass the address of a readable nRF51 register or flash.
    unsafe { read_volatile(addr as *const u32) }
}

fn write(addr: u32, value: u32) {
    // SAFETY: callers pass the address of a writable nRF51 register (or, with
    // the NVMC set to write, a flash word).
    unsafe { write_volatile(addr as *mut u32, value) }
}

/// The handoff block from the boot stage to the application: the first 64
/// bytes of RAM, outside what either program links into (`boot.x`, `app.x`;
/// `firmware::boot::handoff`).
pub const HANDOFF: u32 = 0x2000_0000;
/// The key mailbox: the last 256 bytes of RAM (`firmware::keygen`).
pub const KEY_MAILBOX: u32 = 0x2000_3F00;
/// The provisioning partition: the last 4 KiB page of the 256 KiB flash
/// (`firmware::partition`).
pub const PROVISIONING_PARTITION: u32 = 0x0003_F000;

/// The provisioning partition's bytes.
pub fn provisioning_partition() -> &'static [u8] {
    // SAFETY: on-chip flash, mapped and readable; only the application's
    // own key-block write changes it, through the NVMC.
    unsafe {
        core::slice::from_raw_parts(
            PROVISIONING_PARTITION as *const u8,
            firmware::partition::PARTITION_LEN,
        )
    }
}

/// FICR `DEVICEID[0]` and `DEVICEID[1]`.
const FICR_DEVICEID: u32 = 0x1000_0060;

/// The chip's hardware ID, from FICR (read-only, set at manufacture).
pub fn hw_id() -> HwId {
    HwId::from_deviceid(read(FICR_DEVICEID), read(FICR_DEVICEID + 4))
}

const UART0: u32 = 0x4000_2000;
const UART_STARTRX: u32 = UART0;
const UART_STARTTX: u32 = UART0 + 0x008;
const UART_RXDRDY: u32 = UART0 + 0x108;
const UART_TXDRDY: u32 = UART0 + 0x11C;
const UART_ENABLE: u32 = UART0 + 0x500;
const UART_RXD: u32 = UART0 + 0x518;
const UART_TXD: u32 = UART0 + 0x51C;

/// UART0, polled.
#[derive(Debug)]
pub struct Uart(());

impl Uart {
    /// Enable UART0 and start its transmitter and receiver.
    pub fn init() -> Self {
        write(UART_ENABLE, 4);
        write(UART_STARTTX, 1);
        write(UART_STARTRX, 1);
        Self(())
    }

    /// Send one byte and wait until it is out.
    pub fn write(&mut self, b: u8) {
        write(UART_TXDRDY, 0);
        write(UART_TXD, u32::from(b));
        while read(UART_TXDRDY) == 0 {}
    }

    /// A received byte, if one is waiting.
    pub fn try_read(&mut self) -> Option<u8> {
        if read(UART_RXDRDY) == 0 {
            return None;
        }
        write(UART_RXDRDY, 0);
        Some(read(UART_RXD) as u8)
    }
}

const NVMC: u32 = 0x4001_E000;
const NVMC_READY: u32 = NVMC + 0x400;
const NVMC_CONFIG: u32 = NVMC + 0x504;
const NVMC_ERASEPAGE: u32 = NVMC + 0x508;
const CONFIG_READ: u32 = 0;
const CONFIG_WRITE: u32 = 1;
const CONFIG_ERASE: u32 = 2;
/// Flash page size (FICR `CODEPAGESIZE` on the nRF51822).
pub const PAGE_SIZE: u32 = 0x400;
/// Size of the nRF51822's flash on QEMU's microbit.
pub const FLASH_SIZE: u32 = 0x4_0000;

/// The on-chip flash, written through the NVMC.
#[derive(Debug)]
pub struct Nvmc(());

impl Nvmc {
    /// The flash controller. One owner: the boot stage.
    pub fn take() -> Self {
        Self(())
    }

    fn run(&mut self, config: u32, op: impl FnOnce()) {
        write(NVMC_CONFIG, config);
        while read(NVMC_READY) == 0 {}
        op();
        while read(NVMC_READY) == 0 {}
        write(NVMC_CONFIG, CONFIG_READ);
    }
}

impl Flash for Nvmc {
    fn page_size(&self) -> u32 {
        PAGE_SIZE
    }

    fn read(&self, addr: u32, len: u32) -> &[u8] {
        debug_assert!(addr.checked_add(len).is_some_and(|end| end <= FLASH_SIZE));
        // SAFETY: the on-chip flash is mapped at 0 and always readable; the
        // boot logic reads only inside the layout's regions.
        unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) }
    }

    fn erase_page(&mut self, addr: u32) -> Result<(), FlashError> {
        self.run(CONFIG_ERASE, || write(NVMC_ERASEPAGE, addr));
        Ok(())
    }

    fn write_word(&mut self, addr: u32, word: u32) -> Result<(), FlashError> {
        self.run(CONFIG_WRITE, || write(addr, word));
        Ok(())
    }
}

const TIMER0: u32 = 0x4000_8000;

/// TIMER0 as a free-running 32-bit counter at 16 MHz. Under QEMU's
/// `-icount shift=0` one instruction is one nanosecond of virtual time, so a
/// tick is 62.5 instructions.
#[derive(Debug)]
pub struct Timer(());

impl Timer {
    /// Clear and start TIMER0.
    pub fn start() -> Self {
        write(TIMER0 + 0x504, 0); // MODE: timer
        write(TIMER0 + 0x508, 3); // BITMODE: 32 bit
        write(TIMER0 + 0x510, 0); // PRESCALER: 16 MHz
        write(TIMER0 + 0x00C, 1); // CLEAR
        write(TIMER0, 1); // START
        Self(())
    }

    /// Ticks since `start`.
    pub fn ticks(&self) -> u32 {
        write(TIMER0 + 0x040, 1); // CAPTURE[0]
        read(TIMER0 + 0x540) // CC[0]
    }
}

const RNG: u32 = 0x4000_D000;
const RNG_START: u32 = RNG;
const RNG_STOP: u32 = RNG + 0x004;
const RNG_VALRDY: u32 = RNG + 0x100;
const RNG_CONFIG: u32 = RNG + 0x504;
const RNG_VALUE: u32 = RNG + 0x508;

/// The RNG peripheral, with its bias correction on (CONFIG.DERCEN).
#[derive(Debug)]
pub struct Rng(());

impl Rng {
    /// Take the RNG.
    pub fn take() -> Self {
        write(RNG_CONFIG, 1);
        Self(())
    }

    /// Fill `out` with random bytes, one per VALRDY event.
    pub fn fill(&mut self, out: &mut [u8]) {
        write(RNG_VALRDY, 0);
        write(RNG_START, 1);
        for b in out {
            while read(RNG_VALRDY) == 0 {}
            write(RNG_VALRDY, 0);
            *b = read(RNG_VALUE) as u8;
        }
        write(RNG_STOP, 1);
    }
}
