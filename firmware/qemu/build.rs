//! Compiles the provisioning-authority keys into the boot stage:
//! PROV_AUTHORITIES is a comma-separated list of 65-byte SEC1 points in hex.
use std::fmt::Write as _;

fn main() {
    println!("cargo:rerun-if-env-changed=PROV_AUTHORITIES");
    println!("cargo:rerun-if-changed=memory.x");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::copy("memory.x", out.join("memory.x")).expect("memory.x");
    println!("cargo:rustc-link-search={}", out.display());

    let list = std::env::var("PROV_AUTHORITIES").unwrap_or_default();
    let mut src = String::from("pub const AUTHORITIES: &[[u8; 65]] = &[\n");
    for key in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        assert!(
            key.len() == 130 && key.starts_with("04"),
            "PROV_AUTHORITIES: {key:?} is not a 65-byte SEC1 point in hex"
        );
        src.push_str("    [");
        for i in (0..130).step_by(2) {
            let byte = u8::from_str_radix(&key[i..i + 2], 16).expect("hex");
            let _ = write!(src, "{byte:#04x},");
        }
        src.push_str("],\n");
    }
    src.push_str("];\n");
    std::fs::write(out.join("authorities.rs"), src).expect("authorities.rs");
}
