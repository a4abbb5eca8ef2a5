//! The flash the boot stage works on: memory-mapped reads, page erases and
//! word writes, as a NOR flash behind a controller (the nRF NVMC) offers them.

/// An erase or write did not complete. On the chip this means the write did
/// not read back as written; in the power-cut simulation of the tests it
/// means the power went at that point, and the boot stops there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("flash {op} at {addr:#010x} did not complete")]
pub struct FlashError {
    /// `erase` or `write`.
    pub op: &'static str,
    /// The page or word address.
    pub addr: u32,
}

/// NOR flash: reads are plain memory, erases set a whole page to `0xff`,
/// writes can only clear bits of an erased word.
pub trait Flash {
    /// Size of an erase page in bytes (a power of two).
    fn page_size(&self) -> u32;
    /// `len` bytes at `addr`. Addresses are absolute; the caller stays inside
    /// the flash it was given.
    fn read(&self, addr: u32, len: u32) -> &[u8];
    /// Erase the page that starts at `addr`.
    fn erase_page(&mut self, addr: u32) -> Result<(), FlashError>;
    /// Write one word (little-endian) at the word-aligned `addr`.
    fn write_word(&mut self, addr: u32, word: u32) -> Result<(), FlashError>;

    /// Write `data` (a whole number of words) at the word-aligned `addr`,
    /// which must be erased, and check it reads back.
    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), FlashError> {
        for (i, w) in data.chunks_exact(4).enumerate() {
            let at = addr + 4 * i as u32;
            self.write_word(at, u32::from_le_bytes([w[0], w[1], w[2], w[3]]))?;
        }
        if self.read(addr, data.len() as u32) != data {
            return Err(FlashError { op: "write", addr });
        }
        Ok(())
    }

    /// Erase every page of `start..start + len` (page-aligned) and check it
    /// reads back erased.
    fn erase(&mut self, start: u32, len: u32) -> Result<(), FlashError> {
        let page = self.page_size();
        let mut at = start;
        while at < start + len {
            self.erase_page(at)?;
            if self.read(at, page).iter().any(|&b| b != 0xff) {
                return Err(FlashError {
                    op: "erase",
                    addr: at,
                });
            }
            at += page;
        }
        Ok(())
    }
}
