//! `factory provision` end to end with real parts: the emulated nRF51 under
//! QEMU (its GDB stub), the backend over HTTP on 127.0.0.1, the provisioning
//! authority's key in a SoftHSM2 token. The chip starts blank; the station
//! programs the boot stage, the signed sample application and the record.
//! The key is made by the station (`--key-origin station`, for parts whose
//! firmware cannot make keys). The chip then boots: its boot stage reports
//! PROVISIONED with the serial the backend allocated and starts the
//! application, which prints it, after the chip has authenticated to the
//! backend with the injected key read back from its flash (`factory
//! device-auth`). Keys born on the chip: `device_keys_qemu.rs`.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use lambda::Wait;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{backend_with, signed_app, DATA, ROOT, TOKEN};

#[test]
fn provision_the_emulated_nrf51_with_an_hsm_authority_key() {
    // The authority key, generated inside a fresh SoftHSM2 token.
    let token = signer::testing::SoftHsmToken::new("factory", "1234").unwrap();
    token.set_process_env();
    token.generate_p256("authority", "01").unwrap();
    let hsm = &token.dir;
    let uri = "pkcs11:token=factory;object=authority";
    let authority = signer::open_signer(&uri.parse().unwrap()).unwrap();
    let authority_pub = authority.public_key().unwrap();
    let pem = {
        use p256::pkcs8::EncodePublicKey;
        p256::PublicKey::from_sec1_bytes(authority_pub.sec1())
            .unwrap()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap()
    };
    let pem_path = hsm.path().join("authority.pub.pem");
    std::fs::write(&pem_path, pem).unwrap();

    // A device CA in the same token, under a root made here.
    token.generate_p256("root-ca", "02").unwrap();
    token.generate_p256("device-ca", "03").unwrap();
    let root_key =
        signer::open_signer(&"pkcs11:token=factory;object=root-ca".parse().unwrap()).unwrap();
    let ca_uri = "pkcs11:token=factory;object=device-ca";
    let ca_key = signer::open_signer(&ca_uri.parse().unwrap()).unwrap();
    let subject = |s: &str| signer::certs::parse_subject(s).unwrap();
    let root_pem = signer::certs::root_ca(root_key.as_ref(), subject("CN=Test Root"), 30).unwrap();
    let ca_pem = signer::certs::intermediate_ca(
        ca_key.as_ref(),
        root_key.as_ref(),
        &root_pem,
        subject("CN=Test Device CA"),
        30,
    )
    .unwrap();
    let (root_path, ca_path) = (hsm.path().join("root.pem"), hsm.path().join("ca.pem"));
    std::fs::write(&root_path, &root_pem).unwrap();
    std::fs::write(&ca_path, &ca_pem).unwrap();

    let be = backend_with(vec![authority_pub]);
    let token_file = hsm.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();

    // The chip: halted, waiting for the station on its GDB stub.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let boot_stage = hsm.path().join("boot-stage.bin");
    let built = Command::new(format!("{ROOT}/firmware/qemu/boot.sh"))
        .arg("--release-key")
        .arg(format!("{DATA}images/dev-key.pub.pem"))
        .arg("--authority")
        .arg(&pem_path)
        .arg("--build-only")
        .arg(&boot_stage)
        .status()
        .unwrap();
    assert!(built.success());
    let mut chip = Command::new(format!("{ROOT}/firmware/qemu/boot.sh"))
        .arg("--blank")
        .args(["--gdb", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(chip.try_wait().unwrap().is_none(), "boot.sh exited");
        assert!(Instant::now() < deadline, "the emulated chip did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = Command::new(env!("CARGO_BIN_EXE_factory"))
        .args([
            "provision",
            "--chip",
            "nrf51822",
            "--json",
            "--product",
            "microbit-demo",
        ])
        .args(["--gdb", &format!("127.0.0.1:{port}")])
        .args(["--backend", &be.url])
        .arg("--token-file")
        .arg(&token_file)
        .args(["--authority-key", uri])
        .arg("--firmware")
        .arg(signed_app())
        .arg("--boot-stage")
        .arg(&boot_stage)
        .arg("--release-key")
        .arg(format!("{DATA}images/dev-key.pub.pem"))
        .args(["--slot", "0x8000", "--hold", "--key-origin", "station"])
        .args(["--device-ca-key", ca_uri, "--device-ca-cert"])
        .arg(&ca_path)
        .output()
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"));
    assert!(out.status.success(), "{report}");
    assert_eq!(report["outcome"], "provisioned", "{report}");
    assert_eq!(report["serial"], 1);
    assert_eq!(report["hw_id"], "1234567800000003");
    assert_eq!(report["key_origin"], "station");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    for step in [
        "program_boot_stage",
        "verify_boot_stage",
        "program_firmware",
        "backend_activate",
    ] {
        assert!(steps.contains(&step), "{step}: {steps:?}");
    }

    // Still halted: the device certificate read back verifies against the chain.
    let dev_path = hsm.path().join("device.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(["read-cert", "--chip", "nrf51822"])
        .args(["--gdb", &format!("127.0.0.1:{port}")])
        .arg("-o")
        .arg(&dev_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&root_path)
        .arg("-untrusted")
        .arg(&ca_path)
        .arg(&dev_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&dev_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Subject: CN = 1") && text.contains("urn:dev:hwid:1234567800000003"),
        "{text}"
    );

    // Still halted: answer a challenge with the key read back from the chip.
    let out = Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(["device-auth", "--chip", "nrf51822"])
        .args(["--gdb", &format!("127.0.0.1:{port}")])
        .args(["--backend", &be.url])
        .arg("--token-file")
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "AUTHENTICATED serial=1"
    );

    let mut console = String::new();
    chip.stdout
        .take()
        .unwrap()
        .read_to_string(&mut console)
        .unwrap();
    assert!(chip.wait().unwrap().success(), "{console}");
    assert!(
        console.contains(
            "PROVISIONED serial=1 hw_id=1234567800000003 product=microbit-demo key_origin=station"
        ) && console.contains("BOOT ok version=1.0.0+0 counter=1")
            && console.contains("APP version=1.0.0+0 serial=1 hw_id=1234567800000003"),
        "{console}"
    );
    let device = be.store.device_by_serial(1).wait().unwrap().unwrap();
    assert_eq!(device.status.as_str(), "active");
    let log = be.store.audit_log().wait().unwrap();
    assert!(
        log.iter()
            .any(|e| e.entry.action == "auth.verify" && e.entry.outcome == "ok"),
        "the device authenticated"
    );
}
