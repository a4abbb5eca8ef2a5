//! The policy file parser: the shipped example is valid, and no text makes
//! it panic (any bytes, and single-byte mutations of the example).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use policies::policy::{Policy, Role};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/example/fleet.toml");

#[test]
fn the_example_policy_is_valid() {
    let p = Policy::load(Path::new(EXAMPLE)).unwrap();
    assert!(p.production);
    assert_eq!(p.products.len(), 2);
    let sensor = &p.products["sensor"];
    assert_eq!((sensor.quorum, sensor.rollback_quorum), (2, 3));
    assert_eq!(p.products["gateway"].officers.len(), 5);
    assert_eq!(p.keys["device-ca"].role, Role::Ca);
    assert!(p.audit_log.ends_with("example/audit.jsonl"));
}

#[test]
fn a_production_policy_needs_a_station_key() {
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let without = text.replace("station_key = \"pkcs11:token=station;object=audit\"", "");
    let base = Path::new(EXAMPLE).parent().unwrap();
    let problems = Policy::parse(&without, base).unwrap_err();
    assert!(
        problems.iter().any(|p| p.at == "station_key"),
        "{problems:?}"
    );
}

proptest::proptest! {
    #[test]
    fn any_text_is_a_policy_or_a_list_of_problems(text in "[ -~\\n]{0,300}") {
        let _ = Policy::parse(&text, Path::new("."));
    }

    #[test]
    fn mutations_of_the_example_never_panic(pos in 0usize..100_000, byte in 0x20u8..0x7f) {
        let mut bytes = std::fs::read(EXAMPLE).unwrap();
        let i = pos % bytes.len();
        bytes[i] = byte;
        let text = String::from_utf8_lossy(&bytes);
        let _ = Policy::parse(&text, Path::new(EXAMPLE).parent().unwrap());
    }
}
