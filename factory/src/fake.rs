//! An in-memory chip for tests of the flow: flash, FICR, UICR and RAM as a
//! sparse map, a model of the firmware's part in keys born on the chip, a
//! log of every address the station reads, and faults that can be scripted
//! (a failing operation, a write cut short, a lock that does not take, a
//! forged proof of possession).

use std::collections::BTreeMap;
use std::ops::Range;

use firmware::partition::{KeyBlockState, IMAGE_LEN, KEY_BLOCK_HEADER_LEN, KEY_BLOCK_OFFSET};
use firmware::record::HwId;
use sha2::{Digest, Sha256};

use crate::chips::Chip;
use crate::target::{Target, TargetError};

/// How a fake chip's firmware answers a key request dishonestly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// Its proof is made for another chip's hw_id (a chip that replays an
    /// answer it saw elsewhere).
    OtherChip,
    /// It publishes a public key it does not hold (the proof is made with
    /// another key).
    OtherKey,
}

/// A chip for tests. With `makes_keys`, its firmware behaves as the sample
/// application does at each run: an erased key block gets a key (the body
/// first, the header last), and a request in the key mailbox gets the public
/// key and a proof of possession (`firmware::keygen`).
#[derive(Debug, Default)]
pub struct FakeTarget {
    memory: BTreeMap<u32, u8>,
    /// Fail the next `program_flash` after writing this many bytes.
    pub fail_write_after: Option<usize>,
    /// Fail the operation with this number (counting every call the station
    /// makes: reads, writes, programs, resets, releases, lock confirmations).
    /// A failing `program_flash` writes the first half of its data.
    pub fail_op: Option<usize>,
    /// Operations so far.
    pub ops: usize,
    /// Flip a bit in what later reads return at this address once it has
    /// been written (a weak flash cell).
    pub corrupt_reads_at: Option<u32>,
    /// Whether the lock word was written to UICR.
    pub locked: bool,
    /// Whether a lock has taken effect (after a reset): reads then fail.
    pub protected: bool,
    /// Scripted fault: the UICR write is accepted but never lands.
    pub lock_ignored: bool,
    /// How many resets.
    pub resets: u32,
    /// The firmware makes its own key and answers key requests.
    pub makes_keys: bool,
    /// Scripted fault: power is cut after the firmware wrote this many bytes
    /// of its key block (the next run finds it damaged).
    pub cut_key_block_after: Option<usize>,
    /// Scripted fault: the firmware answers key requests dishonestly.
    pub forgery: Option<Forgery>,
    /// Every range the station read, in order.
    pub reads: Vec<Range<u32>>,
    /// Every range the station wrote or programmed, in order.
    pub writes: Vec<Range<u32>>,
    keys_made: u32,
    chip: Option<Chip>,
    nvm_write_enabled: bool,
}

impl FakeTarget {
    /// A chip whose FICR DEVICEID holds `d0`, `d1`, with erased flash.
    pub fn new(chip: &Chip, d0: u32, d1: u32) -> Self {
        let mut t = Self {
            chip: Some(chip.clone()),
            ..Self::default()
        };
        t.poke(chip.deviceid, &d0.to_le_bytes());
        t.poke(chip.deviceid + 4, &d1.to_le_bytes());
        t
    }

    /// A chip whose firmware makes its own key (see the type's notes).
    pub fn making_keys(chip: &Chip, d0: u32, d1: u32) -> Self {
        Self {
            makes_keys: true,
            ..Self::new(chip, d0, d1)
        }
    }

    /// Set memory directly (not logged).
    pub fn poke(&mut self, addr: u32, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            self.memory.insert(addr + i as u32, b);
        }
    }

    /// Read memory directly, as a test's view of the silicon (not logged,
    /// not refused by a lock).
    pub fn peek(&self, addr: u32, len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| self.memory.get(&(addr + i)).copied().unwrap_or(0xff))
            .collect()
    }

    /// The provisioning partition as the silicon holds it.
    pub fn partition(&self) -> Vec<u8> {
        let chip = self.chip.as_ref().map_or(0, |c| c.partition);
        self.peek(chip, firmware::partition::PARTITION_LEN)
    }

    /// The chip's hardware ID (FICR).
    pub fn hw_id(&self) -> Option<HwId> {
        let c = self.chip.as_ref()?;
        let w = self.peek(c.deviceid, 8);
        let word = |i: usize| u32::from_le_bytes([w[i], w[i + 1], w[i + 2], w[i + 3]]);
        Some(HwId::from_deviceid(word(0), word(4)))
    }

    /// An erase-all, as a debugger recovers a locked nRF: flash, UICR and
    /// RAM are erased and debug access opens again; FICR stays.
    pub fn erase_all(&mut self) {
        let Some(c) = self.chip.clone() else { return };
        let ficr = self.peek(c.deviceid, 8);
        self.memory.clear();
        self.poke(c.deviceid, &ficr);
        self.locked = false;
        self.protected = false;
    }

    fn step(&mut self, what: &str) -> Result<(), TargetError> {
        let n = self.ops;
        self.ops += 1;
        if self.fail_op == Some(n) {
            self.fail_op = None;
            return Err(TargetError::Failed(format!(
                "scripted fault at operation {n} ({what})"
            )));
        }
        Ok(())
    }

    /// The firmware's part of a run (see the type's notes).
    fn run_firmware(&mut self) {
        let Some(c) = self.chip.clone().filter(|_| self.makes_keys) else {
            return;
        };
        let partition = self.partition();
        if firmware::partition::key_block_state(&partition) == KeyBlockState::Erased {
            self.keys_made += 1;
            let scalar = self.draw_key();
            let mut image = [0xffu8; IMAGE_LEN];
            firmware::partition::put_key_block(&mut image, &scalar);
            let header = KEY_BLOCK_OFFSET + KEY_BLOCK_HEADER_LEN;
            let order = (header..IMAGE_LEN).chain(KEY_BLOCK_OFFSET..header);
            for (n, at) in order.enumerate() {
                if self.cut_key_block_after == Some(n) {
                    self.cut_key_block_after = None;
                    break;
                }
                self.memory.insert(c.partition + at as u32, image[at]);
            }
        }
        let mailbox = self.peek(c.key_mailbox, firmware::keygen::MAILBOX_LEN);
        let Some(nonce) = firmware::keygen::parse_request(&mailbox) else {
            return;
        };
        let Some(hw_id) = self.hw_id() else { return };
        let partition = self.partition();
        let key = firmware::partition::key_block(&partition).and_then(|scalar| {
            let (public, pop) = firmware::keygen::prove(scalar, hw_id, &nonce).ok()?;
            Some(match self.forgery {
                None => (public, pop),
                Some(Forgery::OtherChip) => {
                    let other = HwId([0xee; 8]);
                    (
                        public,
                        firmware::keygen::prove(scalar, other, &nonce).ok()?.1,
                    )
                }
                Some(Forgery::OtherKey) => {
                    let (_, pop) = firmware::keygen::prove(&[0x42; 32], hw_id, &nonce).ok()?;
                    (public, pop)
                }
            })
        });
        let answer = firmware::keygen::answer(&nonce, key);
        self.poke(c.key_mailbox, &answer);
    }

    /// The firmware's key: deterministic per chip and per key made, always
    /// in range.
    fn draw_key(&self) -> [u8; 32] {
        let hw = self.hw_id().map_or([0; 8], |h| h.0);
        let mut counter = 0u32;
        loop {
            let k: [u8; 32] = Sha256::new()
                .chain_update(b"fake chip key")
                .chain_update(hw)
                .chain_update(self.keys_made.to_le_bytes())
                .chain_update(counter.to_le_bytes())
                .finalize()
                .into();
            if firmware::keygen::is_private_key(&k) {
                return k;
            }
            counter += 1;
        }
    }
}

impl Target for FakeTarget {
    fn read_memory(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), TargetError> {
        self.step("read")?;
        if self.protected {
            return Err(TargetError::Failed(
                "debug access denied (APPROTECT)".into(),
            ));
        }
        self.reads.push(addr..addr + buf.len() as u32);
        for (i, b) in buf.iter_mut().enumerate() {
            let at = addr + i as u32;
            *b = self.memory.get(&at).copied().unwrap_or(0xff);
            if self.corrupt_reads_at == Some(at) && self.memory.contains_key(&at) {
                *b ^= 1;
            }
        }
        Ok(())
    }

    fn program_flash(&mut self, chip: &Chip, addr: u32, data: &[u8]) -> Result<(), TargetError> {
        let failing = self.step("program").is_err();
        if self.protected {
            return Err(TargetError::Failed(
                "debug access denied (APPROTECT)".into(),
            ));
        }
        self.writes.push(addr..addr + data.len() as u32);
        let start = addr - addr % chip.page_size;
        let end = (addr + data.len() as u32).div_ceil(chip.page_size) * chip.page_size;
        for a in start..end {
            self.memory.remove(&a);
        }
        let cut = if failing {
            Some(data.len() / 2)
        } else {
            self.fail_write_after.take()
        };
        for (i, &b) in data.iter().enumerate() {
            if cut == Some(i) {
                return Err(TargetError::Failed(format!(
                    "flash write failed at {:#x}",
                    addr + i as u32
                )));
            }
            self.memory.insert(addr + i as u32, b);
        }
        Ok(())
    }

    fn reset_and_run(&mut self) -> Result<(), TargetError> {
        self.step("reset")?;
        self.resets += 1;
        self.protected = self.locked && !self.lock_ignored;
        self.run_firmware();
        Ok(())
    }

    fn release(&mut self) -> Result<(), TargetError> {
        self.step("release")?;
        self.run_firmware();
        Ok(())
    }

    fn write_memory(&mut self, addr: u32, data: &[u8]) -> Result<(), TargetError> {
        self.step("write")?;
        if self.protected {
            return Err(TargetError::Failed(
                "debug access denied (APPROTECT)".into(),
            ));
        }
        let (config, approtect) = self
            .chip
            .as_ref()
            .map_or((None, None), |c| (Some(c.nvm_config), Some(c.approtect)));
        if Some(addr) == config {
            self.nvm_write_enabled = data.first() == Some(&1);
            return Ok(());
        }
        self.writes.push(addr..addr + data.len() as u32);
        if Some(addr) == approtect {
            // Like the NVMC: a UICR write without write enable is dropped.
            if self.lock_ignored || !self.nvm_write_enabled {
                return Ok(());
            }
            self.locked = true;
        }
        self.poke(addr, data);
        Ok(())
    }

    fn confirm_lock(&mut self, chip: &Chip) -> Result<(), TargetError> {
        self.reset_and_run()?;
        self.step("confirm")?;
        // The debugger's probe read: refused once the lock took.
        if !self.protected {
            Err(TargetError::NotLocked(format!(
                "FICR at {:#010x} is still readable",
                chip.deviceid
            )))
        } else {
            Ok(())
        }
    }
}
