//! One provisioning-record verification, for instruction counting:
//! `valgrind --tool=callgrind --toggle-collect='*verify_provisioning*'
//! target/release/examples/verify_record RECORD AUTHORITY.pem HWID`
//! (bench/footprint.sh runs it).

use firmware::record::{verify_provisioning, HwId};
use firmware::P256PublicKey;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::DecodePublicKey;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, record, authority, hw_id] = args.as_slice() else {
        return Err("usage: verify_record RECORD AUTHORITY.pem HWID".into());
    };
    let record = std::fs::read(record)?;
    let pk = p256::PublicKey::from_public_key_pem(&std::fs::read_to_string(authority)?)?;
    let authority = P256PublicKey::from_sec1(pk.to_encoded_point(false).as_bytes())
        .map_err(|e| e.to_string())?;
    let chip = HwId::parse_hex(hw_id).ok_or("bad hw id")?;
    let result = verify_provisioning(std::hint::black_box(&record), chip, &[authority]);
    println!(
        "{}",
        if result.is_ok() {
            "PROVISIONED"
        } else {
            "NOT PROVISIONED"
        }
    );
    Ok(())
}
