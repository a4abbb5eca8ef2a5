//! Batch signing throughput through our PKCS#11 backend against SoftHSM2, on
//! both cores, for every image key type, compared with a bare `cryptoki`
//! `C_Sign` loop with the same mechanism in the same run.
//!
//! `cargo bench -p signer --bench pkcs11_throughput [-- SIGNATURES_PER_THREAD]`
//! with `PKCS11_MODULE` set (scripts/test.sh's setup installs SoftHSM2). It
//! makes its own token in a temporary directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use firmware::image::keys::{HashAlg, ImageHash, Signed};
use signer::keys::pkcs11::{self, Pkcs11Key};
use signer::keys::KeyType;
use signer::{KeyRef, Signer};

const THREADS: usize = 2;
const PIN: &str = "1234";

/// The bare loop's mechanism and data for a key type: what our backend asks
/// the token for an image signature (the SHA-256 / SHA-384 digest).
fn bare_call(kind: KeyType) -> (Mechanism<'static>, Vec<u8>) {
    match kind {
        KeyType::EcdsaP256 => (Mechanism::Ecdsa, vec![0x5a; 32]),
        KeyType::EcdsaP384 => (Mechanism::Ecdsa, vec![0x5a; 48]),
        KeyType::Ed25519 => (
            Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
            vec![0x5a; 32],
        ),
        KeyType::Rsa2048 | KeyType::Rsa3072 => (
            Mechanism::RsaPkcsPss(PkcsPssParams {
                hash_alg: MechanismType::SHA256,
                mgf: PkcsMgfType::MGF1_SHA256,
                s_len: 32u64.into(),
            }),
            vec![0x5a; 32],
        ),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let per_thread: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let token = signer::testing::SoftHsmToken::new("bench", PIN)?;
    // Set before any thread starts and before the module is loaded, which
    // reads it.
    token.set_process_env();
    let module = PathBuf::from(&token.module);
    println!(
        "PKCS#11 batch signing of image hashes, SoftHSM2, {THREADS} threads x {per_thread} \
         signatures (best of 3 rounds)"
    );
    println!(
        "  {:<11} {:>14} {:>14} {:>10} {:>16}",
        "key type", "bare C_Sign/s", "Pkcs11Key/s", "ours/bare", "overhead/sig"
    );
    for kind in KeyType::ALL {
        let label = format!("bench-{}", kind.name());
        let uri_text = format!(
            "pkcs11:token=bench;object={label}?module-path={}",
            module.display()
        );
        let KeyRef::Pkcs11(uri) = uri_text.parse::<KeyRef>()? else {
            unreachable!()
        };
        pkcs11::generate(&uri, kind)?;
        let (_, data) = bare_call(kind);
        let alg = match kind {
            KeyType::EcdsaP384 => HashAlg::Sha384,
            _ => HashAlg::Sha256,
        };
        let hash = ImageHash::from_digest(alg, &data).expect("digest length");

        // Bare cryptoki: one logged-in session per thread, C_Sign in a loop.
        let ctx = pkcs11::context(&module, &uri_text)?;
        let slot = ctx.get_slots_with_initialized_token()?[0];
        let bare = |n: usize| -> Result<Duration, cryptoki::error::Error> {
            let t0 = Instant::now();
            std::thread::scope(|s| {
                let workers: Vec<_> = (0..THREADS)
                    .map(|_| {
                        s.spawn(|| -> Result<(), cryptoki::error::Error> {
                            // Mechanism parameters are raw pointers: one per thread.
                            let (mechanism, data) = bare_call(kind);
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
                                Attribute::Label(label.as_bytes().to_vec()),
                            ])?[0];
                            for _ in 0..n {
                                std::hint::black_box(session.sign(&mechanism, key, &data)?);
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

        // Ours: one Pkcs11Key shared by the threads, through the Signer
        // trait (which checks each signature against the public key).
        let key = Arc::new(Pkcs11Key::open(KeyRef::Pkcs11(uri.clone()))?);
        let ours = |n: usize| -> Result<Duration, signer::SignerError> {
            let t0 = Instant::now();
            std::thread::scope(|s| {
                let workers: Vec<_> = (0..THREADS)
                    .map(|_| {
                        let key = Arc::clone(&key);
                        s.spawn(move || -> Result<(), signer::SignerError> {
                            for _ in 0..n {
                                std::hint::black_box(key.sign_image(Signed::Digest(&hash))?);
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

        // RSA signs far slower: fewer rounds keep the run short.
        let n = match kind {
            KeyType::Rsa3072 => per_thread / 8,
            KeyType::Rsa2048 => per_thread / 4,
            _ => per_thread,
        }
        .max(20);
        bare(n / 10 + 1)?;
        ours(n / 10 + 1)?;
        let (mut best_bare, mut best_ours) = (Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            best_bare = best_bare.min(bare(n)?);
            best_ours = best_ours.min(ours(n)?);
        }
        let total = (THREADS * n) as f64;
        let rate = |d: Duration| total / d.as_secs_f64();
        let overhead_us = (best_ours.as_secs_f64() - best_bare.as_secs_f64()) * 1e6 / n as f64;
        println!(
            "  {:<11} {:>14.0} {:>14.0} {:>9.1}% {:>13.1} us",
            kind.name(),
            rate(best_bare),
            rate(best_ours),
            100.0 * rate(best_ours) / rate(best_bare),
            overhead_us
        );
    }
    Ok(())
}
