//! The chip's own key (`docs/device-auth.md`, "Keys born on the chip"): the
//! station writes a request with a fresh nonce into the chip's key mailbox
//! (`firmware::keygen`), lets the chip run from reset (its firmware makes
//! its key if it has none and answers), takes the chip again, acknowledges
//! the answer and checks the proof of possession. Only the public key crosses the debug port; the key
//! region of the partition is never read.

use std::time::{Duration, Instant};

use firmware::keygen::{check_answer, holds_answer, request, PopError, MAILBOX_LEN};
use firmware::record::HwId;
use firmware::P256PublicKey;

use crate::chips::Chip;
use crate::target::{Target, TargetError};

/// What the chip answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChipKey {
    /// Its public key, possession proven for this chip and nonce.
    Key(P256PublicKey),
    /// It has no key and cannot make one: its key block is damaged (a write
    /// cut short). Erasing the partition lets it make a new one.
    NoKey,
}

/// Why the chip's key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyRequestError {
    /// The debug connection.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The chip did not answer in time.
    #[error(
        "the chip did not answer the key request within {0:?}: does its firmware make its own \
         key and answer the key mailbox (docs/device-auth.md)? Use --key-origin station for \
         parts that cannot"
    )]
    Timeout(Duration),
    /// The answer does not prove possession for this chip and nonce.
    #[error("the chip's key is refused: {0}")]
    Refused(PopError),
}

/// The station looks at the mailbox after the first wait, then waits twice
/// as long each time, up to the longest wait.
const FIRST_WAIT: Duration = Duration::from_millis(2);
const LONGEST_WAIT: Duration = Duration::from_millis(100);

/// Ask the chip behind `target` for its key, waiting at most `timeout` for
/// the answer. The chip is left taken (halted on a GDB stub).
pub fn request_key(
    target: &mut dyn Target,
    chip: &Chip,
    hw_id: HwId,
    timeout: Duration,
) -> Result<ChipKey, KeyRequestError> {
    let mut nonce = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    target.write_memory(chip.key_mailbox, &request(&nonce))?;
    target.reset_and_run()?;
    let start = Instant::now();
    let mut mailbox = [0u8; MAILBOX_LEN];
    let mut wait = FIRST_WAIT;
    loop {
        std::thread::sleep(wait.min(timeout));
        wait = (wait * 2).min(LONGEST_WAIT);
        target.read_memory(chip.key_mailbox, &mut mailbox)?;
        if holds_answer(&mailbox) {
            // The acknowledgement: the chip may go on once it runs again.
            target.write_memory(chip.key_mailbox, &[0; MAILBOX_LEN])?;
            break;
        }
        if start.elapsed() >= timeout {
            return Err(KeyRequestError::Timeout(timeout));
        }
        target.release()?;
    }
    match check_answer(&mailbox, hw_id, &nonce) {
        Ok(key) => Ok(ChipKey::Key(key)),
        Err(PopError::NoKey) => Ok(ChipKey::NoKey),
        Err(e) => Err(KeyRequestError::Refused(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chips::ChipTable;
    use crate::fake::{FakeTarget, Forgery};

    #[test]
    fn an_honest_chip_proves_its_key_and_forgeries_are_refused() {
        let table = ChipTable::builtin().unwrap();
        let chip = table.get("nrf52840").unwrap();
        let mut t = FakeTarget::making_keys(chip, 3, 0x1234_5678);
        let hw = t.hw_id().unwrap();
        let ChipKey::Key(first) = request_key(&mut t, chip, hw, Duration::from_secs(1)).unwrap()
        else {
            panic!("no key")
        };
        let ChipKey::Key(again) = request_key(&mut t, chip, hw, Duration::from_secs(1)).unwrap()
        else {
            panic!("no key")
        };
        assert_eq!(first, again, "made once");
        let key_block = chip.partition + firmware::partition::KEY_BLOCK_OFFSET as u32;
        assert!(
            t.reads
                .iter()
                .all(|r| r.end <= key_block || r.start >= key_block + 0x48),
            "the key region is never read: {:?}",
            t.reads
        );
        for forgery in [Forgery::OtherChip, Forgery::OtherKey] {
            let mut f = FakeTarget::making_keys(chip, 4, 0x1234_5678);
            f.forgery = Some(forgery);
            let hw = f.hw_id().unwrap();
            let e = request_key(&mut f, chip, hw, Duration::from_secs(1)).unwrap_err();
            assert!(
                matches!(e, KeyRequestError::Refused(PopError::BadProof)),
                "{e}"
            );
        }
        let mut silent = FakeTarget::new(chip, 5, 0x1234_5678);
        let hw = silent.hw_id().unwrap();
        let e = request_key(&mut silent, chip, hw, Duration::from_millis(120)).unwrap_err();
        assert!(e.to_string().contains("--key-origin station"), "{e}");
        let mut torn = FakeTarget::making_keys(chip, 6, 0x1234_5678);
        torn.cut_key_block_after = Some(20);
        let hw = torn.hw_id().unwrap();
        assert_eq!(
            request_key(&mut torn, chip, hw, Duration::from_secs(1)).unwrap(),
            ChipKey::NoKey
        );
    }
}
