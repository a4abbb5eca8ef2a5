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
//! Before that, a chip whose provisioning partition has no key block makes
//! its own key from the RNG and writes the key block, and a station's request
//! in the key mailbox (`firmware::keygen`, the last 256 bytes of RAM) gets the
//! public key and a proof of possession.
//!
//! Then it serves device authentication on the same UART
//! (`firmware::auth::line`, `docs/device-auth.md`): it answers `AUTH <nonce>`
//! with its own key (the key block in its provisioning partition), the
//! hw_id and the serial the boot stage handed over, and ends the emulator run
//! (exit 0) at `BYE`.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, Ordering};

use boot_stage::console::Console;
use boot_stage::nrf51::{self, Nvmc, Rng, HANDOFF, KEY_MAILBOX, PROVISIONING_PARTITION};
use cortex_m::peripheral::SCB;
use cortex_m_rt::{entry, exception};
use firmware::auth::line::{Answer, Refusal, Request, MAX_LINE};
use firmware::boot::handoff::HANDOFF_LEN;
use firmware::boot::Flash;
use firmware::boot::Handoff;
use firmware::partition::{KeyBlockState, KEY_BLOCK_HEADER_LEN, KEY_BLOCK_OFFSET};

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
    let block = unsafe { core::slice::from_raw_parts(HANDOFF as *const u8, HANDOFF_LEN) };
    let Some(handoff) = Handoff::parse(block) else {
        con.str("APP fault=no-handoff").end();
        boot_stage::exit(false);
    };
    let partition = nrf51::provisioning_partition();
    if firmware::partition::key_block_state(partition) == KeyBlockState::Erased {
        make_key();
    }
    answer_key_request(partition, handoff.hw_id);
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
    serve(&mut con, &handoff, partition)
}

/// A key born here, when the partition's key block is erased: draw the key
/// from the RNG (a draw outside 1..n is drawn again) and write the key block
/// through the NVMC, the key first and the header last, so that a write cut
/// short leaves a damaged block, never part of a key under a valid header
/// (a damaged block is left alone: the station erases the page and asks
/// again). Nothing of the key leaves the chip but the public key.
fn make_key() {
    let mut rng = Rng::take();
    let mut image = [0xffu8; firmware::partition::IMAGE_LEN];
    let mut scalar = [0u8; 32];
    loop {
        rng.fill(&mut scalar);
        if firmware::keygen::is_private_key(&scalar) {
            break;
        }
    }
    firmware::partition::put_key_block(&mut image, &scalar);
    let header = KEY_BLOCK_OFFSET + KEY_BLOCK_HEADER_LEN;
    let mut nvmc = Nvmc::take();
    let body = nvmc.write(PROVISIONING_PARTITION + header as u32, &image[header..]);
    if body.is_ok() {
        let _ = nvmc.write(
            PROVISIONING_PARTITION + KEY_BLOCK_OFFSET as u32,
            &image[KEY_BLOCK_OFFSET..header],
        );
    }
    wipe(&mut scalar);
    wipe(&mut image);
}

/// Overwrite secret bytes in a way the compiler keeps.
fn wipe(bytes: &mut [u8]) {
    for b in bytes {
        // SAFETY: a valid, exclusive reference.
        unsafe { core::ptr::write_volatile(b, 0) };
    }
}

/// A station's request in the key mailbox: answer it with the public key and
/// a proof of possession over the station's nonce.
fn answer_key_request(partition: &[u8], hw_id: firmware::record::HwId) {
    // SAFETY: the mailbox, RAM neither program links into.
    let mailbox = unsafe {
        core::slice::from_raw_parts_mut(KEY_MAILBOX as *mut u8, firmware::keygen::MAILBOX_LEN)
    };
    let Some(nonce) = firmware::keygen::parse_request(mailbox) else {
        return;
    };
    let key = firmware::partition::key_block(partition)
        .and_then(|scalar| firmware::keygen::prove(scalar, hw_id, &nonce).ok());
    let answer = firmware::keygen::answer(&nonce, key);
    // The body first, the magic last: a station that halts the chip to read
    // the mailbox while it is being written must never see the magic over a
    // half-written answer.
    mailbox[4..].copy_from_slice(&answer[4..]);
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    for (to, from) in mailbox[..4].iter_mut().zip(&answer[..4]) {
        // SAFETY: a valid, exclusive reference into the mailbox.
        unsafe { core::ptr::write_volatile(to, *from) };
    }
    // Hold until the station has read the answer and acknowledged it.
    let timer = nrf51::Timer::start();
    let hold = firmware::keygen::ANSWER_HOLD_SECONDS * 16_000_000;
    // SAFETY: the mailbox, read volatile: the station writes it over the
    // debug port.
    let answered = || unsafe { core::ptr::read_volatile(KEY_MAILBOX as *const [u8; 4]) };
    while firmware::keygen::holds_answer(&answered()) && timer.ticks() < hold {}
}

/// Answer device-authentication requests on the UART until `BYE`.
fn serve(con: &mut Console, handoff: &Handoff, partition: &[u8]) -> ! {
    let mut line = [0u8; MAX_LINE + 1];
    let mut len = 0;
    let mut overlong = false;
    loop {
        let Some(byte) = con.uart().try_read() else {
            continue;
        };
        if byte != b'\n' {
            if len < line.len() {
                line[len] = byte;
                len += 1;
            } else {
                overlong = true;
            }
            continue;
        }
        let request = if overlong {
            Err(firmware::auth::line::LineError)
        } else {
            Request::parse(&line[..len])
        };
        (len, overlong) = (0, false);
        let answer = match request {
            Ok(Request::Bye) => {
                con.str("BYE").end();
                boot_stage::exit(true);
            }
            Ok(Request::Auth(nonce)) => answer(handoff, partition, &nonce),
            Err(_) => Answer::Refused(Refusal::BadRequest),
        };
        let mut out = [0u8; MAX_LINE + 1];
        for &b in answer.write(&mut out) {
            con.uart().write(b);
        }
    }
}

/// Sign the challenge with the device's own key, as the device it was
/// verified to be at boot.
fn answer(handoff: &Handoff, partition: &[u8], nonce: &[u8; 32]) -> Answer {
    let Some((serial, _)) = handoff.provisioned else {
        return Answer::Refused(Refusal::Unprovisioned);
    };
    let Some(scalar) = firmware::partition::key_block(partition) else {
        return Answer::Refused(Refusal::NoKey);
    };
    match firmware::auth::sign_auth(scalar, nonce, handoff.hw_id, serial) {
        Ok(sig) => Answer::Signed {
            serial,
            hw_id: handoff.hw_id,
            sig,
        },
        Err(_) => Answer::Refused(Refusal::NoKey),
    }
}
