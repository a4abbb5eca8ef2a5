//! What the station does to a chip, over any debug connection: the `Target`
//! trait (raw memory, flash, reset, lock, lock confirmation) with a GDB-remote
//! implementation, a fake for tests, and a probe-rs one in [`crate::probe`]. Everything above raw access (reading the hardware ID,
//! verifying what was written) is shared and lives here or in the flow.

use firmware::record::HwId;

use crate::chips::{Chip, LockMechanism};
use crate::gdb::{GdbClient, GdbError};

/// Why an operation on the chip failed.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The debug connection failed.
    #[error(transparent)]
    Gdb(#[from] GdbError),
    /// A fake target's scripted fault, or a stub's refusal.
    #[error("target: {0}")]
    Failed(String),
    /// The debug probe (probe-rs) failed.
    #[error("probe: {0}")]
    Probe(String),
    /// After locking and a reset the chip still answers debug reads.
    #[error("debug access is still open after locking: {0}")]
    NotLocked(String),
    /// FICR reads as erased or blank: not a real chip, or the read is wrong.
    #[error("FICR DEVICEID at {addr:#010x} reads {value}: erased or unreadable (wrong --chip?)")]
    BlankDeviceId {
        /// Where it was read.
        addr: u32,
        /// What was read, hex.
        value: String,
    },
}

/// A chip on the other end of a debug connection.
pub trait Target {
    /// Read `buf.len()` bytes at `addr`.
    fn read_memory(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), TargetError>;
    /// Write `data` at `addr` as plain bus writes (RAM, peripheral registers).
    fn write_memory(&mut self, addr: u32, data: &[u8]) -> Result<(), TargetError>;
    /// Erase the pages covering `addr..addr + data.len()` and program `data`.
    fn program_flash(&mut self, chip: &Chip, addr: u32, data: &[u8]) -> Result<(), TargetError>;
    /// Let the chip run its firmware from reset and release the debug
    /// connection. The next access takes the chip again (a GDB stub halts it
    /// when the connection is made again; a probe reads while it runs).
    fn reset_and_run(&mut self) -> Result<(), TargetError>;
    /// Release the chip without a reset: its firmware goes on running (or
    /// resumes) until the next access takes the chip again.
    fn release(&mut self) -> Result<(), TargetError>;
    /// Close debug access the way `chip` needs: the lock word goes into UICR
    /// through the chip's NVM controller. Takes effect at the next reset.
    fn lock(&mut self, chip: &Chip) -> Result<(), TargetError> {
        match chip.lock {
            LockMechanism::UicrRbpconf
            | LockMechanism::UicrApprotect
            | LockMechanism::UicrApprotectHw => {
                write_nvm_word(self, chip, chip.approtect, chip.lock_value)
            }
        }
    }
    /// Reset the chip so the lock takes effect and confirm it did, as far as
    /// the connection can tell. The chip is left running and the connection
    /// released, as after [`Target::reset_and_run`].
    fn confirm_lock(&mut self, chip: &Chip) -> Result<(), TargetError>;
}

/// The chip's hardware ID from FICR `DEVICEID`, as the firmware reads it.
pub fn read_hw_id(target: &mut dyn Target, chip: &Chip) -> Result<HwId, TargetError> {
    let mut words = [0u8; 8];
    target.read_memory(chip.deviceid, &mut words)?;
    let d0 = u32::from_le_bytes([words[0], words[1], words[2], words[3]]);
    let d1 = u32::from_le_bytes([words[4], words[5], words[6], words[7]]);
    if (d0 == u32::MAX && d1 == u32::MAX) || (d0 == 0 && d1 == 0) {
        return Err(TargetError::BlankDeviceId {
            addr: chip.deviceid,
            value: format!("{d1:08x}{d0:08x}"),
        });
    }
    Ok(HwId::from_deviceid(d0, d1))
}

/// How long the NVM controller may stay busy for one word (the parts need
/// tens of microseconds; a debug round trip is longer).
const NVM_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

/// Write one word of non-volatile memory (flash, UICR, RRAM) the way the
/// chip's own firmware would: enable writes in the controller's CONFIG, write
/// the word, wait for READY, disable writes.
pub fn write_nvm_word<T: Target + ?Sized>(
    target: &mut T,
    chip: &Chip,
    addr: u32,
    value: u32,
) -> Result<(), TargetError> {
    write_nvm_words(target, chip, addr, &value.to_le_bytes())
}

/// Write `data` word by word into erased non-volatile memory at `addr`
/// (word-aligned) through the chip's NVM controller, without erasing
/// anything: the way a record is added to a page that already holds the
/// chip's key block. A last partial word is padded with `0xff` (erased).
pub fn write_nvm_words<T: Target + ?Sized>(
    target: &mut T,
    chip: &Chip,
    addr: u32,
    data: &[u8],
) -> Result<(), TargetError> {
    if !addr.is_multiple_of(4) {
        return Err(TargetError::Failed(format!(
            "NVM write at {addr:#010x}: not word-aligned"
        )));
    }
    wait_nvm_ready(target, chip)?;
    target.write_memory(chip.nvm_config, &1u32.to_le_bytes())?;
    let mut written = Ok(());
    for (i, chunk) in data.chunks(4).enumerate() {
        let mut word = [0xffu8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        written = target
            .write_memory(addr + 4 * i as u32, &word)
            .and_then(|()| wait_nvm_ready(target, chip));
        if written.is_err() {
            break;
        }
    }
    // Writes are disabled again whatever happened.
    let disabled = target
        .write_memory(chip.nvm_config, &0u32.to_le_bytes())
        .and_then(|()| wait_nvm_ready(target, chip));
    written.and(disabled)
}

fn wait_nvm_ready<T: Target + ?Sized>(target: &mut T, chip: &Chip) -> Result<(), TargetError> {
    let start = std::time::Instant::now();
    loop {
        let mut ready = [0u8; 4];
        target.read_memory(chip.nvm_ready, &mut ready)?;
        if ready[0] & 1 == 1 {
            return Ok(());
        }
        if start.elapsed() > NVM_TIMEOUT {
            return Err(TargetError::Failed(format!(
                "NVM controller not ready (READY at {:#010x} reads {})",
                chip.nvm_ready,
                hex::encode(ready)
            )));
        }
    }
}

/// A chip behind a GDB remote stub. Releasing the chip (a run, a lock
/// confirmation) detaches; the next access connects again, which halts the
/// chip on QEMU's stub.
#[derive(Debug)]
pub struct GdbTarget {
    addr: String,
    client: Option<GdbClient>,
}

impl GdbTarget {
    /// Connect to the stub at `addr` (`HOST:PORT`).
    pub fn connect(addr: &str) -> Result<Self, TargetError> {
        Ok(Self {
            addr: addr.to_owned(),
            client: Some(GdbClient::connect(addr)?),
        })
    }

    fn client(&mut self) -> Result<&mut GdbClient, TargetError> {
        if self.client.is_none() {
            self.client = Some(GdbClient::connect(self.addr.as_str())?);
        }
        self.client
            .as_mut()
            .ok_or_else(|| TargetError::Failed("not connected".into()))
    }

    /// Detach and drop the connection: the chip runs on.
    fn detach(&mut self) -> Result<(), TargetError> {
        match self.client.take() {
            Some(mut c) => Ok(c.detach()?),
            None => Ok(()),
        }
    }
}

impl Target for GdbTarget {
    fn read_memory(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), TargetError> {
        Ok(self.client()?.read_memory(addr, buf)?)
    }

    fn write_memory(&mut self, addr: u32, data: &[u8]) -> Result<(), TargetError> {
        Ok(self.client()?.write_memory(addr, data)?)
    }

    fn program_flash(&mut self, chip: &Chip, addr: u32, data: &[u8]) -> Result<(), TargetError> {
        let client = self.client()?;
        if client.has_vflash() {
            Ok(client.program_flash(addr, data, chip.page_size)?)
        } else {
            // Stubs without a flash map (QEMU) write flash like memory.
            Ok(client.write_memory(addr, data)?)
        }
    }

    /// Restart the core as a reset does, from the vector table at address 0
    /// (stack pointer, reset handler, Thumb state), so that what was just
    /// programmed there runs; then detach.
    fn reset_and_run(&mut self) -> Result<(), TargetError> {
        let client = self.client()?;
        let mut vectors = [0u8; 8];
        client.read_memory(0, &mut vectors)?;
        // ARM M-profile register numbers: 13 sp, 15 pc, 25 xPSR (T bit 24).
        for (reg, value) in [
            (13, hex::encode(&vectors[..4])),
            (15, hex::encode(&vectors[4..])),
            (25, hex::encode(0x0100_0000u32.to_le_bytes())),
        ] {
            client.write_register(reg, &value)?;
        }
        self.detach()
    }

    fn release(&mut self) -> Result<(), TargetError> {
        self.detach()
    }

    /// A GDB stub cannot show a closed debug port without losing the
    /// connection it speaks over, so this confirms what it can see: the UICR
    /// word holds the lock value. A stub in front of a real probe
    /// (OpenOCD, J-Link) then loses the chip at the reset.
    fn confirm_lock(&mut self, chip: &Chip) -> Result<(), TargetError> {
        let mut back = [0u8; 4];
        self.client()?.read_memory(chip.approtect, &mut back)?;
        if back != chip.lock_value.to_le_bytes() {
            return Err(TargetError::NotLocked(format!(
                "UICR word at {:#010x} reads {}, expected {:08x}",
                chip.approtect,
                hex::encode(back),
                chip.lock_value.swap_bytes()
            )));
        }
        self.detach()
    }
}

pub use crate::fake::FakeTarget;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chips::ChipTable;

    #[test]
    fn hw_id_is_deviceid1_then_deviceid0_big_endian() {
        let table = ChipTable::builtin().unwrap();
        let chip = table.get("nrf51822").unwrap();
        let mut t = FakeTarget::new(chip, 0x0000_0003, 0x1234_5678);
        assert_eq!(
            read_hw_id(&mut t, chip).unwrap().to_string(),
            "1234567800000003"
        );
    }

    #[test]
    fn erased_or_zero_ficr_is_refused() {
        let table = ChipTable::builtin().unwrap();
        let chip = table.get("nrf52840").unwrap();
        let mut erased = FakeTarget::default();
        let e = read_hw_id(&mut erased, chip).unwrap_err().to_string();
        assert!(
            e.contains("ffffffffffffffff") && e.contains("wrong --chip"),
            "{e}"
        );
        let mut zero = FakeTarget::new(chip, 0, 0);
        assert!(read_hw_id(&mut zero, chip).is_err());
    }

    #[test]
    fn fake_flash_erases_whole_pages_and_can_fail_midway() {
        let table = ChipTable::builtin().unwrap();
        let chip = table.get("nrf52840").unwrap();
        let mut t = FakeTarget::new(chip, 1, 2);
        t.poke(chip.partition + 0x800, &[0x42]);
        t.program_flash(chip, chip.partition, &[1, 2, 3]).unwrap();
        let mut back = [0u8; 4];
        t.read_memory(chip.partition, &mut back).unwrap();
        assert_eq!(back, [1, 2, 3, 0xff]);
        let mut far = [0u8; 1];
        t.read_memory(chip.partition + 0x800, &mut far).unwrap();
        assert_eq!(far, [0xff], "the page was erased");
        t.fail_write_after = Some(2);
        assert!(t.program_flash(chip, chip.partition, &[9, 9, 9]).is_err());
    }
}
