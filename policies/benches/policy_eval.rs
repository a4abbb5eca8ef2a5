//! Policy evaluation of a release with a 3-of-5 quorum: every rule, the three
//! approval signatures verified against the policy's officer keys. Peer in
//! the same run: the three ECDSA P-256 verifications alone (the part no
//! evaluation can skip).
//!
//! `cargo bench -p policies --bench policy_eval`
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Instant;

use firmware::image::ImageVersion;
use policies::evaluate::{evaluate, Candidate};
use policies::history::Release;
use policies::policy::{fingerprint, Policy};
use policies::request::{ReleaseRequest, RequestFile, REQUEST_FORMAT};
use signer::image::Prebuilt;
use signer::keys::{generate_file_key, FileKey, Signer};
use signer::KeyRef;

const ROUNDS: u32 = 2_000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = |name: &str| {
        let path = dir.path().join(format!("{name}.pem"));
        generate_file_key(&path).unwrap();
        FileKey::open(KeyRef::File(path)).unwrap()
    };
    let release = key("release");
    let officers: Vec<FileKey> = (0..5).map(|i| key(&format!("officer{i}"))).collect();
    let mut text = format!(
        "name = \"bench\"\n[keys.rel]\nuri = \"file:release.pem\"\nrole = \"release\"\nfingerprint = \"{}\"\n[officers]\n",
        fingerprint(&release.public_key().unwrap())
    );
    for i in 0..5 {
        text.push_str(&format!(
            "officer{i} = {{ public_key = \"officer{i}.pem\" }}\n"
        ));
    }
    text.push_str(
        "[products.sensor]\nslot_size = 0x80000\nrelease_keys = [\"rel\"]\n\
         officers = [\"officer0\", \"officer1\", \"officer2\", \"officer3\", \"officer4\"]\n\
         quorum = 3\nrollback_quorum = 4\nmax_major_jump = 1\nrequired_tlvs = [\"SEC_CNT\"]\n",
    );
    let policy = Policy::parse(&text, dir.path()).unwrap();

    let image = Prebuilt {
        digest: firmware::image::keys::ImageHash::from_digest(
            firmware::image::keys::HashAlg::Sha256,
            &[0x5a; 32],
        )
        .unwrap(),
        version: "1.3.0".parse().unwrap(),
        security_counter: Some(7),
        size: 200_000,
        file_size: 200_000,
        protected_tlvs: vec!["SEC_CNT".into()],
    };
    let now = 1_795_000_000;
    let request = ReleaseRequest {
        format: REQUEST_FORMAT.into(),
        product: "sensor".into(),
        image_digest: hex::encode(image.digest),
        image_size: image.size as u64,
        version: image.version.to_string(),
        security_counter: image.security_counter,
        release_key: "rel".into(),
        release_key_fingerprint: fingerprint(&release.public_key().unwrap()),
        second_release_key: None,
        second_release_key_fingerprint: None,
        created: now - 60,
        expires: now + 3600,
    };
    let approvals = officers[..3]
        .iter()
        .enumerate()
        .map(|(i, k)| request.approve(&format!("officer{i}"), k, now).unwrap())
        .collect();
    let file = RequestFile { request, approvals };
    let key_ref: KeyRef = "file:release.pem".parse().unwrap();
    let public = release.public_key().unwrap();
    let last = Release {
        version: ImageVersion {
            major: 1,
            minor: 2,
            revision: 0,
            build: 0,
        },
        security_counter: Some(6),
        digest: "00".repeat(32),
        seq: 42,
        keys: vec!["rel".into()],
        key_history: vec![vec!["rel".into()]],
    };
    let public = firmware::image::AnyImageKey::P256(public);
    let keys = [policies::evaluate::CandidateKey {
        key_ref: &key_ref,
        key: &public,
    }];
    let candidate = Candidate {
        request: &file,
        image: &image,
        keys: &keys,
    };
    assert!(evaluate(&policy, &candidate, Some(&last), now).passed());

    let digest = file.request.approval_digest();
    let sigs: Vec<[u8; 64]> = file
        .approvals
        .iter()
        .map(|a| hex::decode(&a.signature).unwrap().try_into().unwrap())
        .collect();
    let officer_keys: Vec<_> = officers[..3]
        .iter()
        .map(|k| k.public_key().unwrap())
        .collect();

    let mut best_ours = f64::MAX;
    let mut best_peer = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..ROUNDS {
            let e = evaluate(&policy, &candidate, Some(&last), now);
            std::hint::black_box(e.passed());
        }
        best_ours = best_ours.min(t.elapsed().as_secs_f64() / f64::from(ROUNDS));

        let t = Instant::now();
        for _ in 0..ROUNDS {
            for (k, s) in officer_keys.iter().zip(&sigs) {
                std::hint::black_box(k.verify_digest_raw(&digest, s).is_ok());
            }
        }
        best_peer = best_peer.min(t.elapsed().as_secs_f64() / f64::from(ROUNDS));
    }
    println!(
        "policy evaluation, 3-of-5 quorum, {ROUNDS} rounds (best of 5): {:.1} us each, {:.0} evaluations/s",
        best_ours * 1e6,
        1.0 / best_ours
    );
    println!(
        "peer: the 3 ECDSA verifications alone: {:.1} us; evaluation / peer = {:.2}x the time",
        best_peer * 1e6,
        best_ours / best_peer
    );
}
