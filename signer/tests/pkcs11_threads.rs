//! One PKCS#11 key used from several threads at once against SoftHSM2: every
//! signature verifies, none is lost to a session race.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use signer::keys::pkcs11::{self, Pkcs11Key};
use signer::{KeyRef, Signer};

#[test]
fn concurrent_signing_from_one_key() {
    let token = signer::testing::SoftHsmToken::new("threads", "1234").unwrap();
    // This test binary has only this test, so setting the environment before
    // the module loads races with nothing.
    token.set_process_env();
    let module = &token.module;
    let text = format!("pkcs11:token=threads;object=k?module-path={module}&pin-value=1234");
    let KeyRef::Pkcs11(uri) = text.parse::<KeyRef>().unwrap() else {
        panic!()
    };
    let (public_key, _) = pkcs11::generate(&uri, signer::keys::KeyType::EcdsaP256).unwrap();
    let key = Arc::new(Pkcs11Key::open(KeyRef::Pkcs11(uri)).unwrap());
    let public = key.public_key().unwrap();
    assert_eq!(firmware::image::AnyImageKey::P256(public), public_key);
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let key = Arc::clone(&key);
            s.spawn(move || {
                for i in 0..50u8 {
                    let digest = [t.wrapping_mul(64).wrapping_add(i); 32];
                    let sig = key.sign_digest(&digest).unwrap();
                    public.verify_digest_raw(&digest, &sig.to_raw()).unwrap();
                }
            });
        }
    });
    assert!(format!("{key:?}").contains("pkcs11:token=threads"));
    assert!(
        !format!("{key:?}").contains("1234"),
        "no PIN in Debug output"
    );
}
