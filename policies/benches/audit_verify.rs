//! `audit verify` over a 100,000-entry log (goal: at least 200,000 entries
//! per second), against the peer in the same run: SHA-256 of the same lines
//! and nothing else (the chain's unavoidable cost).
//!
//! `cargo bench -p policies --bench audit_verify`
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::BufRead;
use std::time::Instant;

use policies::audit::{verify, AuditLog};
use sha2::{Digest, Sha256};

const ENTRIES: u64 = 100_000;
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/");

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    // Build the log without an fsync per line (the station's real appends
    // are durable; this only makes the input quickly).
    let mut text = String::new();
    let mut prev = [0u8; 32];
    for seq in 1..=ENTRIES {
        let line = serde_json::to_string(&policies::audit::Entry {
            seq,
            time: 1_795_000_000 + seq as i64,
            actor: "officer-a".into(),
            action: "image.sign".into(),
            subjects: vec![format!("sha256:{seq:064x}"), "product:sensor-v2".into()],
            outcome: "ok".into(),
            prev: hex::encode(prev),
            key_id: None,
            signature: None,
        })
        .unwrap();
        prev = Sha256::digest(line.as_bytes()).into();
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(&path, &text).unwrap();
    // One real session closed by a checkpoint, so the head is checked too.
    let key: signer::KeyRef = format!("file:{DATA}records/authority.pem").parse().unwrap();
    let station = signer::open_signer(&key).unwrap();
    let pubkey = station.public_key().unwrap();
    let mut log = AuditLog::open(&path, Some(&pubkey)).unwrap();
    log.checkpoint("station", station.as_ref()).unwrap();

    let mut best_ours = f64::MAX;
    let mut best_peer = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let v = verify(&path, Some(&pubkey)).unwrap();
        best_ours = best_ours.min(t.elapsed().as_secs_f64());
        assert_eq!(v.entries, ENTRIES + 1);

        let t = Instant::now();
        let f = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let mut h = [0u8; 32];
        for line in f.lines() {
            h = Sha256::digest(line.unwrap().as_bytes()).into();
        }
        std::hint::black_box(h);
        best_peer = best_peer.min(t.elapsed().as_secs_f64());
    }
    let n = (ENTRIES + 1) as f64;
    println!(
        "audit verify, {} entries (best of 5): {:.1} ms, {:.0} entries/s (goal >= 200000)",
        ENTRIES + 1,
        best_ours * 1e3,
        n / best_ours
    );
    println!(
        "peer: SHA-256 of each line alone: {:.1} ms, {:.0} lines/s; verify / peer = {:.2}x the time",
        best_peer * 1e3,
        n / best_peer,
        best_ours / best_peer
    );
}
