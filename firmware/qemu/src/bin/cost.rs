//! Instructions of one boot-time image verification on Cortex-M4 (thumbv7em,
//! the nRF52 series): run on QEMU's `mps2-an386` under `-icount shift=0` by
//! `bench/boot.sh`, with a signed image placed at 0x100000 (QEMU's loader).
//! Verifies it as the boot stage does (structure, SHA-256, KEYHASH, ECDSA
//! P-256 against RELEASE_KEYS, counter) and times it with SysTick, after timing a
//! loop of known length to convert ticks into instructions, and measures the
//! verification's peak stack (the free stack painted before, the deepest
//! overwritten word after):
//! `COST calibration_insns=N calibration_ticks=T verify_ticks=V hash_ticks=H stack=S ok=1`.
#![no_std]
#![no_main]

use boot_stage::exit;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use firmware::boot::{check_slot, Layout, Region};
use firmware::P256PublicKey;
use sha2::Digest;

include!(concat!(env!("OUT_DIR"), "/keys.rs"));

const IMAGE: u32 = 0x0010_0000;
const ITERATIONS: u32 = 1_000_000;

/// Flash as the verifier reads it: plain memory, never written here.
struct Rom;

impl firmware::boot::Flash for Rom {
    fn page_size(&self) -> u32 {
        0x400
    }
    fn read(&self, addr: u32, len: u32) -> &[u8] {
        // SAFETY: the image QEMU's loader placed in the board's SRAM.
        unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) }
    }
    fn erase_page(&mut self, addr: u32) -> Result<(), firmware::boot::FlashError> {
        Err(firmware::boot::FlashError { op: "erase", addr })
    }
    fn write_word(&mut self, addr: u32, _: u32) -> Result<(), firmware::boot::FlashError> {
        Err(firmware::boot::FlashError { op: "write", addr })
    }
}

impl Rom {
    fn read_bytes(&self, addr: u32, len: u32) -> &[u8] {
        firmware::boot::Flash::read(self, addr, len)
    }
}

fn ticks(syst: &cortex_m::peripheral::SYST) -> u32 {
    0x00ff_ffff - syst.cvr.read()
}

#[entry]
fn main() -> ! {
    let mut p = cortex_m::Peripherals::take().unwrap_or_else(|| exit(false));
    p.SYST.set_clock_source(SystClkSource::Core);
    p.SYST.set_reload(0x00ff_ffff);
    p.SYST.clear_current();
    p.SYST.enable_counter();

    // Three instructions per iteration: subs, nop, bne.
    let start = ticks(&p.SYST);
    // SAFETY: a register-only loop.
    unsafe {
        core::arch::asm!(
            "2:",
            "subs {n}, #1",
            "nop",
            "bne 2b",
            n = inout(reg) ITERATIONS => _,
        );
    }
    let calibration = ticks(&p.SYST) - start;

    let key = P256PublicKey::from_sec1(&RELEASE_KEYS[0]).unwrap_or_else(|_| exit(false));
    // The image runs from the primary slot of the nRF51 layout; here it only
    // sits at IMAGE, so the slot is described at that address.
    let layout = Layout {
        primary: Region {
            start: 0x8000,
            len: 0x1_9000,
        },
        ..Layout::MICROBIT
    };
    let slot = Region {
        start: IMAGE,
        len: 0x1_9000,
    };
    let depth = boot_stage::stack::paint();
    p.SYST.clear_current();
    let start = ticks(&p.SYST);
    let verdict = check_slot(&Rom, &layout, slot, &[key], 0);
    let stack = boot_stage::stack::used() - depth;
    let verify = ticks(&p.SYST).wrapping_sub(start) & 0x00ff_ffff;
    // The hash alone, over the same bytes the verification hashes.
    let hashed = match &verdict {
        Ok(img) => img.len,
        Err(_) => 0,
    };
    p.SYST.clear_current();
    let start = ticks(&p.SYST);
    let digest = sha2::Sha256::digest(Rom.read_bytes(IMAGE, hashed));
    let hash = ticks(&p.SYST).wrapping_sub(start) & 0x00ff_ffff;
    core::hint::black_box(digest);
    #[cfg(any(feature = "enc-x25519", feature = "enc-p256"))]
    decrypt_cost(&mut p.SYST);
    hprintln!(
        "COST calibration_insns={} calibration_ticks={} verify_ticks={} hash_ticks={} stack={} ok={}",
        3 * ITERATIONS,
        calibration & 0x00ff_ffff,
        verify,
        hash,
        stack,
        u8::from(verdict.is_ok())
    );
    exit(verdict.is_ok())
}

/// With feature `enc-x25519` or `enc-p256`: the cost of decrypting an
/// encrypted upgrade, printed as `COST_DECRYPT unwrap_ticks=U ctr_ticks=C
/// bytes=N`: unwrapping the AES key (ECDH with the device's key: X25519, or
/// P-256 with the boot stage's constant-time ladder; HKDF, the HMAC check)
/// and AES-128-CTR over 100 KiB, read from memory in 1 KiB pieces as a boot
/// stage reads flash.
#[cfg(any(feature = "enc-x25519", feature = "enc-p256"))]
fn decrypt_cost(syst: &mut cortex_m::peripheral::SYST) {
    use core::hint::black_box;
    use firmware::image::enc::{ctr_apply, EncScheme, EncTlv};
    const BYTES: u32 = 100 * 1024;
    // The unwraps below fail their HMAC check: the payload is decrypted
    // under a fixed key, at the same cost.
    let key = [0u8; 32];
    syst.clear_current();
    let start = ticks(syst);
    #[cfg(feature = "enc-x25519")]
    {
        let secret = x25519_dalek::StaticSecret::from(black_box([0x44u8; 32]));
        let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(black_box([9u8; 32])));
        let tlv_bytes = black_box([0x5au8; 80]);
        let mut unwrapped = [0u8; 32];
        if let Ok(tlv) = EncTlv::parse(EncScheme::EciesX25519, &tlv_bytes, 16) {
            // Not a real wrap: the HMAC check fails, after the same work.
            let done = firmware::image::enc::unwrap_key(&tlv, shared.as_bytes(), &mut unwrapped);
            black_box(done.is_ok());
        }
    }
    #[cfg(feature = "enc-p256")]
    {
        // The release key's point as the ephemeral key: on the curve, so the
        // whole ladder runs; the HMAC check then fails, after the same work.
        let mut tlv_bytes = black_box([0x5au8; 113]);
        tlv_bytes[..65].copy_from_slice(&RELEASE_KEYS[0]);
        if let Ok(tlv) = EncTlv::parse(EncScheme::EciesP256, &tlv_bytes, 16) {
            let secret = black_box([0x44u8; 32]);
            black_box(firmware::image::enc::unwrap_p256(&tlv, &secret).is_ok());
        }
    }
    let unwrap = ticks(syst).wrapping_sub(start) & 0x00ff_ffff;
    // Timed a piece at a time: SysTick counts 24 bits.
    let mut buf = [0u8; 1024];
    let mut offset = 0u32;
    let mut ctr = 0u64;
    while offset < BYTES {
        syst.clear_current();
        let start = ticks(syst);
        buf.copy_from_slice(Rom.read_bytes(IMAGE + offset, 1024));
        if ctr_apply(&key[..16], u64::from(offset), &mut buf).is_err() {
            exit(false);
        }
        black_box(&buf);
        ctr += u64::from(ticks(syst).wrapping_sub(start) & 0x00ff_ffff);
        offset += 1024;
    }
    hprintln!(
        "COST_DECRYPT unwrap_ticks={} ctr_ticks={} bytes={}",
        unwrap,
        ctr,
        BYTES
    );
}
