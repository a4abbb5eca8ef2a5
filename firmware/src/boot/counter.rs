//! The rollback counter: the lowest security counter the boot stage accepts,
//! kept in the boot-state region as an append-only log of records
//! (`docs/boot.md`, "Boot state").
//!
//! Each record is two little-endian words, `value` then `!value`, written in
//! that order into an erased 8-byte slot. A record counts only when both words
//! agree, so a write torn by a power cut (NOR flash only clears bits) is
//! ignored and the counter reads as it was. The counter is the largest value
//! of any record in the two pages of the log, so it never decreases: a raise
//! appends a record, and when the active page is full the other page is
//! erased and takes the record, while the full page still holds the old
//! maximum.

use super::flash::{Flash, FlashError};

/// Size of one record.
pub const RECORD_LEN: u32 = 8;

/// The value a record holds, if it is whole.
pub fn decode(slot: &[u8]) -> Option<u32> {
    let value = u32::from_le_bytes([slot[0], slot[1], slot[2], slot[3]]);
    let check = u32::from_le_bytes([slot[4], slot[5], slot[6], slot[7]]);
    (value != u32::MAX && check == !value).then_some(value)
}

/// The record for `value`, as written to flash.
pub fn encode(value: u32) -> [u8; RECORD_LEN as usize] {
    let mut out = [0u8; RECORD_LEN as usize];
    out[..4].copy_from_slice(&value.to_le_bytes());
    out[4..].copy_from_slice(&(!value).to_le_bytes());
    out
}

/// The log: two pages starting at `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterLog {
    /// Address of the first of its two pages.
    pub start: u32,
}

impl CounterLog {
    fn page(&self, flash: &impl Flash, i: u32) -> u32 {
        self.start + i * flash.page_size()
    }

    /// The largest whole record in page `i`, if any.
    fn page_max(&self, flash: &impl Flash, i: u32) -> Option<u32> {
        let bytes = flash.read(self.page(flash, i), flash.page_size());
        bytes
            .chunks_exact(RECORD_LEN as usize)
            .filter_map(decode)
            .max()
    }

    /// The stored minimum security counter (0 when nothing is stored).
    pub fn read(&self, flash: &impl Flash) -> u32 {
        let a = self.page_max(flash, 0);
        let b = self.page_max(flash, 1);
        a.max(b).unwrap_or(0)
    }

    /// Raise the stored counter to `value`; a lower or equal value changes
    /// nothing.
    pub fn raise(&self, flash: &mut impl Flash, value: u32) -> Result<(), FlashError> {
        let (a, b) = (self.page_max(flash, 0), self.page_max(flash, 1));
        let current = a.max(b);
        if current.is_some_and(|c| value <= c) || (current.is_none() && value == 0) {
            return Ok(());
        }
        // The active page holds the maximum; an empty log starts in page 0.
        let active = u32::from(b > a);
        if let Some(slot) = self.free_slot(flash, active) {
            return flash.write(slot, &encode(value));
        }
        // Full: start the other page afresh. Its records are all at or below
        // the maximum, which stays in the full page until the next switch.
        let other = self.page(flash, 1 - active);
        flash.erase(other, flash.page_size())?;
        flash.write(other, &encode(value))
    }

    /// The first erased slot after the last used one in page `i`.
    fn free_slot(&self, flash: &impl Flash, i: u32) -> Option<u32> {
        let base = self.page(flash, i);
        let bytes = flash.read(base, flash.page_size());
        let used = bytes
            .chunks_exact(RECORD_LEN as usize)
            .rposition(|s| s.iter().any(|&x| x != 0xff))
            .map_or(0, |i| i + 1);
        let slots = (flash.page_size() / RECORD_LEN) as usize;
        (used < slots).then_some(base + used as u32 * RECORD_LEN)
    }
}
