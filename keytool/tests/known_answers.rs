//! Known-answer images made once by imgtool 2.5 (`tests/data/images`, with
//! the script that made them). keytool must accept the signed ones and, given
//! the same inputs, rebuild every one of them byte for byte.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use base64::Engine as _;
use common::*;
use firmware::image::{tlv, Image};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/images")
        .join(name)
}

const COMMON: &[&str] = &[
    "-v",
    "2.7.1+42",
    "-H",
    "0x200",
    "--pad-header",
    "-S",
    "0x20000",
];

/// (file, extra flags, signed) exactly as `generate.sh` made them.
const VECTORS: &[(&str, &[&str], bool)] = &[
    ("unsigned.bin", &[], false),
    (
        "unsigned-confirm.bin",
        &["--confirm", "--align", "4", "-s", "auto"],
        false,
    ),
    (
        "unsigned-deps-tlvs.hex",
        &[
            "-d",
            "(1,1.0.0+0)",
            "--custom-tlv",
            "0xa0",
            "0xdeadbeef",
            "-x",
            "0x8000",
        ],
        false,
    ),
    ("signed.bin", &["-s", "7"], true),
    (
        "signed-full-key.bin",
        &["--public-key-format", "full"],
        true,
    ),
    (
        "signed-confirm.hex",
        &["--confirm", "-x", "0xc000", "-s", "auto"],
        true,
    ),
];

fn image_bytes(name: &str) -> Vec<u8> {
    let raw = read(&data(name));
    if name.ends_with(".hex") {
        return signer::intel_hex::parse(&String::from_utf8(raw).unwrap())
            .unwrap()
            .data;
    }
    raw
}

#[test]
fn keytool_rebuilds_every_vector_byte_for_byte() {
    let s = Scratch::new();
    for (name, flags, signed) in VECTORS {
        let out = s.path(name);
        let mut cmd = keytool();
        cmd.args(["image", "sign"]).args(COMMON).args(*flags);
        if *signed {
            let bytes = image_bytes(name);
            let image = Image::parse(&bytes).unwrap();
            let sig = image.find(tlv::ECDSASIG, false).unwrap().value;
            let sig_file = s.path(&format!("{name}.sig"));
            std::fs::write(
                &sig_file,
                base64::engine::general_purpose::STANDARD.encode(sig),
            )
            .unwrap();
            cmd.arg("--fix-sig")
                .arg(&sig_file)
                .arg("--fix-sig-pubkey")
                .arg(data("dev-key.pub.pem"));
        }
        ok(cmd.arg(data("firmware.bin")).arg(&out));
        assert!(
            read(&out) == read(&data(name)),
            "{name}: keytool's output differs from imgtool's"
        );
    }
}

#[test]
fn keytool_verifies_the_signed_vectors() {
    for (name, _, signed) in VECTORS {
        let mut cmd = keytool();
        cmd.args(["image", "verify", "--json"]);
        if *signed {
            cmd.arg("-k").arg(data("dev-key.pub.pem"));
        }
        let v: serde_json::Value = serde_json::from_str(&ok(cmd.arg(data(name)))).unwrap();
        assert_eq!(v["valid"], true, "{name}");
        assert_eq!(v["version"], "2.7.1+42", "{name}");
        assert_eq!(v["signed_by"].is_object(), *signed, "{name}");
    }
}
