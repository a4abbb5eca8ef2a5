//! Encrypted images against the real imgtool 2.5 and an independent
//! decryption written here from MCUboot's documentation (Python
//! `cryptography`): keytool's encrypted images have imgtool's layout,
//! imgtool's decrypt with keytool, both decrypt to the same plaintext with
//! the independent code, and one signed image serves 100 devices, each
//! able to decrypt only its own copy.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use firmware::image::{tlv, Image};

/// MCUboot's encrypted image, decrypted from its documentation: ECDH with
/// the ephemeral key in the ENC TLV, HKDF (SHA-256, or SHA-512 for
/// ENC_X25519_SHA512) with info "MCUBoot_ECIES_v1" to the AES key-encryption
/// key then the HMAC key, the HMAC over the wrapped key checked, the AES key
/// decrypted with AES-CTR (zero nonce), then the payload after the header
/// with AES-CTR (zero nonce, counter from 0). Prints the plaintext payload as
/// hex, or exits 3 when the HMAC does not verify.
const DECRYPT_PY: &str = r#"
import struct, sys
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

img = open(sys.argv[1], "rb").read()
priv = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), password=None)
magic, load, hdr_size, prot_size, img_size, flags = struct.unpack_from("<IIHHII", img, 0)
assert magic == 0x96F3B83D
key_len = 32 if flags & 0x8 else 16
assert flags & 0xC, "not encrypted"
off = hdr_size + img_size + prot_size
info_magic, total = struct.unpack_from("<HH", img, off)
assert info_magic == 0x6907
end, off = off + total, off + 4
enc = None
while off < end:
    kind, length = struct.unpack_from("<HH", img, off)
    if kind in (0x32, 0x33, 0x34):
        enc = (kind, img[off + 4: off + 4 + length])
    off += 4 + length
kind, value = enc
if kind == 0x32:
    eph_len, mac_len, alg = 65, 32, hashes.SHA256()
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), value[:65])
    shared = priv.exchange(ec.ECDH(), peer)
else:
    eph_len, mac_len = 32, (64 if kind == 0x34 else 32)
    alg = hashes.SHA512() if kind == 0x34 else hashes.SHA256()
    shared = priv.exchange(x25519.X25519PublicKey.from_public_bytes(value[:32]))
mac, cipherkey = value[eph_len:eph_len + mac_len], value[eph_len + mac_len:]
derived = HKDF(algorithm=alg, length=key_len + mac_len, salt=None,
               info=b"MCUBoot_ECIES_v1").derive(shared)
h = hmac.HMAC(derived[key_len:], alg)
h.update(cipherkey)
try:
    h.verify(mac)
except Exception:
    sys.exit(3)
d = Cipher(algorithms.AES(derived[:key_len]), modes.CTR(bytes(16))).decryptor()
aes_key = d.update(cipherkey) + d.finalize()
d = Cipher(algorithms.AES(aes_key), modes.CTR(bytes(16))).decryptor()
print((d.update(img[hdr_size:hdr_size + img_size]) + d.finalize()).hex())
"#;

fn python() -> std::process::Command {
    std::process::Command::new(
        std::env::var("VENV_PYTHON").expect("VENV_PYTHON: run through scripts/test.sh"),
    )
}

/// The plaintext payload the independent decryption finds, or `None` when
/// the key is not the one the image is wrapped for.
fn independent_decrypt(image: &Path, private: &Path) -> Option<Vec<u8>> {
    let out = run(python().arg("-c").arg(DECRYPT_PY).arg(image).arg(private));
    match out.status.code() {
        Some(0) => Some(hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap()),
        Some(3) => None,
        _ => panic!("decrypt.py: {}", stderr(&out)),
    }
}

/// The header, the unprotected TLVs' types and lengths, and the file's
/// length (less a DER ECDSA signature's, which varies): what must equal
/// imgtool's for the same inputs.
fn layout(bytes: &[u8]) -> (Vec<u8>, Vec<(u16, usize)>, usize) {
    let image = Image::parse(bytes).unwrap();
    let sig = image
        .find(tlv::ECDSASIG, false)
        .map_or(0, |t| t.value.len());
    (
        bytes[..32].to_vec(),
        image
            .tlvs()
            .filter(|t| !t.protected)
            .map(|t| {
                let len = if t.kind == tlv::ECDSASIG {
                    0
                } else {
                    t.value.len()
                };
                (t.kind, len)
            })
            .collect(),
        // A padded image is the slot's length; otherwise the TLVs end it.
        if bytes.len() > image.tlv_end() {
            bytes.len()
        } else {
            bytes.len() - sig
        },
    )
}

fn keygen(s: &Scratch, name: &str, kind: &str) -> PathBuf {
    let key = s.path(name);
    if !key.exists() {
        ok(keytool()
            .args(["key", "generate", "-t", kind, "-k"])
            .arg(&key));
    }
    key
}

const FLAGS: [&str; 9] = [
    "-v",
    "1.2.3",
    "-H",
    "0x200",
    "--pad-header",
    "-S",
    "0x20000",
    "-s",
    "7",
];

#[test]
fn keytool_and_imgtool_encrypt_alike_and_decrypt_each_other() {
    let s = Scratch::new();
    let fw = s.firmware("fw.bin", 5000, 0); // not a multiple of 16: padded
    let plain = std::fs::read(&fw).unwrap();
    for (sign, enc_kind, extra) in [
        ("ecdsa-p256", "ecdsa-p256", &[][..]),
        ("ecdsa-p256", "ecdsa-p256", &["--encrypt-keylen", "256"][..]),
        ("ed25519", "x25519", &[][..]),
        (
            "ed25519",
            "x25519",
            &["--encrypt-keylen", "256", "--hmac-sha", "512"][..],
        ),
        ("ed25519", "x25519", &["--pad", "--save-enctlv"][..]),
        ("ecdsa-p256", "ecdsa-p256", &["--pad", "--confirm"][..]),
    ] {
        let what = format!("{sign} + {enc_kind} {extra:?}");
        let key = keygen(&s, &format!("{sign}.pem"), sign);
        let enc = keygen(&s, &format!("enc-{enc_kind}.pem"), enc_kind);
        let (ours, theirs) = (s.path("ours.bin"), s.path("theirs.bin"));
        for (tool, out) in [(keytool(), &ours), (imgtool(), &theirs)] {
            let mut cmd = tool;
            if out == &ours {
                cmd.args(["image"]);
            }
            ok(cmd
                .args(["sign", "-k"])
                .arg(&key)
                .arg("-E")
                .arg(&enc)
                .args(FLAGS)
                .args(extra)
                .arg(&fw)
                .arg(out));
        }
        let (a, b) = (
            std::fs::read(&ours).unwrap(),
            std::fs::read(&theirs).unwrap(),
        );
        assert_eq!(layout(&a), layout(&b), "{what}: imgtool's layout");
        for image in [&ours, &theirs] {
            // Ours decrypts both and verifies the signature over the plaintext.
            let said = ok(keytool()
                .args(["image", "verify", "--json", "-k"])
                .arg(&key)
                .arg("--enc-key")
                .arg(&enc)
                .arg(image));
            let said: serde_json::Value = serde_json::from_str(&said).unwrap();
            assert_eq!(said["valid"], true, "{what}: {said}");
            assert_eq!(said["security_counter"], 7, "{what}");
            // The independent decryption finds the firmware, zero-padded to
            // whole AES blocks.
            let found = independent_decrypt(image, &enc).unwrap();
            assert_eq!(found.len() % 16, 0, "{what}");
            assert_eq!(&found[..plain.len()], &plain[..], "{what}: plaintext");
            assert!(found[plain.len()..].iter().all(|&b| b == 0), "{what}");
        }
        // The ciphertext is not the plaintext.
        let header = 0x200;
        assert_ne!(&a[header..header + 64], &plain[..64], "{what}: encrypted");
    }
}

#[test]
fn clear_images_and_refusals() {
    let s = Scratch::new();
    let fw = s.firmware("fw.bin", 4096, 0);
    let key = keygen(&s, "p256.pem", "ecdsa-p256");
    let enc = keygen(&s, "enc.pem", "ecdsa-p256");
    let out = s.path("clear.bin");
    ok(keytool()
        .args(["image", "sign", "--clear", "-k"])
        .arg(&key)
        .arg("-E")
        .arg(&enc)
        .args(FLAGS)
        .arg(&fw)
        .arg(&out));
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(
        &bytes[0x200..0x200 + 4096],
        &std::fs::read(&fw).unwrap()[..]
    );
    assert_eq!(
        u32::from_le_bytes(bytes[16..20].try_into().unwrap()) & 0x4,
        0x4,
        "ENCRYPTED_AES128 set"
    );
    // An encrypted image without its key is not called valid.
    let enc_img = s.path("enc.bin");
    ok(keytool()
        .args(["image", "sign", "-k"])
        .arg(&key)
        .arg("-E")
        .arg(&enc)
        .args(FLAGS)
        .arg(&fw)
        .arg(&enc_img));
    let refused = run(keytool()
        .args(["image", "verify", "-k"])
        .arg(&key)
        .arg(&enc_img));
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("--enc-key"),
        "{}",
        stderr(&refused)
    );
    // --hmac-sha 512 is X25519's only; encryption flags need -E.
    for (args, needle) in [
        (
            vec!["-E", enc.to_str().unwrap(), "--hmac-sha", "512"],
            "X25519 only",
        ),
        (vec!["--clear"], "go with -E"),
    ] {
        let o = run(keytool()
            .args(["image", "sign", "-k"])
            .arg(&key)
            .args(&args)
            .args(FLAGS)
            .arg(&fw)
            .arg(s.path("x.bin")));
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(!s.path("x.bin").exists());
    }
}

/// One image signed once, its AES key wrapped for the station's encryption
/// key; 100 copies wrapped from a registry export of device public keys.
/// Each device decrypts its own copy and no other; the signed bytes are the
/// same in every copy.
#[test]
fn one_signature_one_hundred_devices() {
    let s = Scratch::new();
    let fw = s.firmware("fw.bin", 3000, 0);
    let plain = std::fs::read(&fw).unwrap();
    let key = keygen(&s, "release.pem", "ed25519");
    let station = keygen(&s, "station-enc.pem", "x25519");
    let signed = s.path("signed.enc.bin");
    ok(keytool()
        .args(["image", "sign", "-k"])
        .arg(&key)
        .arg("-E")
        .arg(&station)
        .args(FLAGS)
        .arg(&fw)
        .arg(&signed));
    let mut registry = Vec::new();
    for i in 0..100 {
        let dev = keygen(&s, &format!("dev{i}.pem"), "x25519");
        let public = ok(keytool()
            .args(["key", "getpub", "-e", "pem", "-k"])
            .arg(&dev));
        registry.push(serde_json::json!({"device": format!("dev{i}"), "enc_public_key": public}));
    }
    let reg = s.path("registry.json");
    std::fs::write(&reg, serde_json::to_vec(&registry).unwrap()).unwrap();
    let out_dir = s.path("copies");
    let said: serde_json::Value = serde_json::from_str(&ok(keytool()
        .args(["image", "wrap", "--json", "--image"])
        .arg(&signed)
        .arg("--enc-key")
        .arg(&station)
        .arg("--registry")
        .arg(&reg)
        .arg("--out-dir")
        .arg(&out_dir)))
    .unwrap();
    assert_eq!(said.as_array().unwrap().len(), 100);
    let original = std::fs::read(&signed).unwrap();
    let enc_at = {
        let image = Image::parse(&original).unwrap();
        image.find(tlv::ENCX25519, false).unwrap().offset
    };
    for i in 0..100 {
        let copy = out_dir.join(format!("dev{i}.bin"));
        let bytes = std::fs::read(&copy).unwrap();
        assert_eq!(bytes.len(), original.len());
        assert!(
            bytes[..enc_at] == original[..enc_at],
            "dev{i}: signed bytes identical"
        );
        assert!(
            bytes[enc_at..] != original[enc_at..],
            "dev{i}: its own ENC TLV"
        );
        let own = s.path(&format!("dev{i}.pem"));
        let other = s.path(&format!("dev{}.pem", (i + 1) % 100));
        let v = ok(keytool()
            .args(["image", "verify", "-k"])
            .arg(&key)
            .arg("--enc-key")
            .arg(&own)
            .arg(&copy));
        assert!(v.contains("correctly validated"), "dev{i}: {v}");
        let refused = run(keytool()
            .args(["image", "verify", "-k"])
            .arg(&key)
            .arg("--enc-key")
            .arg(&other)
            .arg(&copy));
        assert_eq!(
            refused.status.code(),
            Some(1),
            "dev{i}: another device's key"
        );
        assert!(stderr(&refused).contains("wrapped for another key"));
        if i % 25 == 0 {
            let found = independent_decrypt(&copy, &own).unwrap();
            assert_eq!(&found[..plain.len()], &plain[..], "dev{i}");
            assert!(independent_decrypt(&copy, &other).is_none(), "dev{i}");
        }
    }
    // A single device, and a device key of the wrong curve.
    let one = s.path("one.bin");
    ok(keytool()
        .args(["image", "wrap", "--image"])
        .arg(&signed)
        .arg("--enc-key")
        .arg(&station)
        .arg("--device-key")
        .arg(s.path("dev7.pem"))
        .arg("-o")
        .arg(&one));
    assert!(independent_decrypt(&one, &s.path("dev7.pem")).is_some());
    let p256 = keygen(&s, "p256-dev.pem", "ecdsa-p256");
    let refused = run(keytool()
        .args(["image", "wrap", "--image"])
        .arg(&signed)
        .arg("--enc-key")
        .arg(&station)
        .arg("--device-key")
        .arg(&p256)
        .arg("-o")
        .arg(s.path("no.bin")));
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(!s.path("no.bin").exists());
}
