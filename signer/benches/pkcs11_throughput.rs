//! Batch signing throughput through our PKCS#11 backend against SoftHSM2, on
//! both cores, compared with a bare `cryptoki` `C_Sign` loop in the same run.
//!
//! `cargo bench -p signer --bench pkcs11_throughput [-- SIGNATURES_PER_THREAD]`
//! with `PKCS11_MODULE` set (scripts/test.sh's setup installs SoftHSM2). It
//! makes its own token in a temporary directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use signer::keys::pkcs11::{self, Pkcs11Key};
use signer::{KeyRef, Signer};

const THREADS: usize = 2;
const PIN: &str = "1234";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let per_thread: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    let token = signer::testing::SoftHsmToken::new("bench", PIN)?;
    // Set before any thread starts and before the module is loaded, which
    // reads it.
    token.set_process_env();
    let module = PathBuf::from(&token.module);
    let uri_text = format!(
        "pkcs11:token=bench;object=bench-key?module-path={}",
        module.display()
    );
    let KeyRef::Pkcs11(uri) = uri_text.parse::<KeyRef>()? else {
        unreachable!()
    };
    pkcs11::generate(&uri, signer::keys::KeyType::EcdsaP256)?;
    let digest = [0x5au8; 32];

    // Bare cryptoki: one logged-in session per thread, C_Sign in a loop.
    let ctx = pkcs11::context(&module, &uri_text)?;
    let slot = ctx.get_slots_with_initialized_token()?[0];
    let bare = |n: usize| -> Result<Duration, cryptoki::error::Error> {
        let t0 = Instant::now();
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| -> Result<(), cryptoki::error::Error> {
                        let session = ctx.open_ro_session(slot)?;
                        match session.login(UserType::User, Some(&PIN.to_owned().into())) {
                            Ok(())
                            | Err(cryptoki::error::Error::Pkcs11(
                                cryptoki::error::RvError::UserAlreadyLoggedIn,
                                _,
                            )) => {}
                            Err(e) => return Err(e),
                        }
                        let key = session.find_objects(&[
                            Attribute::Class(ObjectClass::PRIVATE_KEY),
                            Attribute::Label(b"bench-key".to_vec()),
                        ])?[0];
                        for _ in 0..n {
                            std::hint::black_box(session.sign(&Mechanism::Ecdsa, key, &digest)?);
                        }
                        Ok(())
                    })
                })
                .collect();
            for w in workers {
                w.join().expect("bare worker panicked")?;
            }
            Ok(t0.elapsed())
        })
    };

    // Ours: one Pkcs11Key shared by the threads, through the Signer trait.
    let key = Arc::new(Pkcs11Key::open(KeyRef::Pkcs11(uri.clone()))?);
    let ours = |n: usize| -> Result<Duration, signer::SignerError> {
        let t0 = Instant::now();
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|_| {
                    let key = Arc::clone(&key);
                    s.spawn(move || -> Result<(), signer::SignerError> {
                        for _ in 0..n {
                            std::hint::black_box(key.sign_digest(&digest)?);
                        }
                        Ok(())
                    })
                })
                .collect();
            for w in workers {
                w.join().expect("worker panicked")?;
            }
            Ok(t0.elapsed())
        })
    };

    // Warm up both, then alternate rounds and keep the best of each.
    bare(200)?;
    ours(200)?;
    let (mut best_bare, mut best_ours) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        best_bare = best_bare.min(bare(per_thread)?);
        best_ours = best_ours.min(ours(per_thread)?);
    }
    let total = (THREADS * per_thread) as f64;
    let rate = |d: Duration| total / d.as_secs_f64();
    let overhead_us = (best_ours.as_secs_f64() - best_bare.as_secs_f64()) * 1e6 / per_thread as f64;
    println!("PKCS#11 batch signing, SoftHSM2, {THREADS} threads x {per_thread} signatures (best of 3 rounds)");
    println!(
        "  bare cryptoki C_Sign loop  {:9.0} signatures/s",
        rate(best_bare)
    );
    println!(
        "  signer Pkcs11Key           {:9.0} signatures/s",
        rate(best_ours)
    );
    println!(
        "  ours / bare               = {:6.1} %   (goal >= 90 %)",
        100.0 * rate(best_ours) / rate(best_bare)
    );
    println!("  overhead per signature    = {overhead_us:6.2} us (per thread, wall)");
    Ok(())
}
