//! Device authentication by the chip itself, on QEMU's nRF51: a blank chip is
//! provisioned over its GDB stub (boot stage, signed application, record and
//! key), then runs; from then on only its UART is used (`boot.sh --uart`).
//! `factory device-auth --uart` gets a challenge, the chip signs it with its
//! own key and the station posts the answer: accepted. The same answer again,
//! a forged one, a wrong serial and a revoked device are refused.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use lambda::Wait;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};

use common::{ask, backend, boot_stage, free_port, signed_app, wait_for, Chip, DATA, ROOT, TOKEN};
use factory::backend::{Backend, BackendError};
use firmware::auth::line::Answer;

fn factory(args: &[&str], token_file: &std::path::Path, url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(args)
        .args(["--backend", url])
        .arg("--token-file")
        .arg(token_file)
        .output()
        .unwrap()
}

fn refusal(e: BackendError) -> String {
    match e {
        BackendError::Refused { code, .. } => code,
        other => panic!("{other}"),
    }
}

#[test]
fn the_chip_answers_challenges_on_its_uart_with_its_own_key() {
    let be = backend();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let (gdb, uart) = (free_port(), free_port());
    let mut chip = Chip(
        Command::new(format!("{ROOT}/firmware/qemu/boot.sh"))
            .args([
                "--blank",
                "--gdb",
                &gdb.to_string(),
                "--uart",
                &uart.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for(gdb, &mut chip);
    let authority = format!("file:{DATA}records/authority.pem");
    let release = format!("{DATA}images/dev-key.pub.pem");
    let (app, stage) = (signed_app(), boot_stage());
    let out = factory(
        &[
            "provision",
            "--chip",
            "nrf51822",
            "--gdb",
            &format!("127.0.0.1:{gdb}"),
            "--authority-key",
            &authority,
            "--firmware",
            app.to_str().unwrap(),
            "--boot-stage",
            stage.to_str().unwrap(),
            "--release-key",
            &release,
            "--slot",
            "0x8000",
            "--product",
            "uart-demo",
        ],
        &token_file,
        &be.url,
    );
    assert!(out.status.success(), "{out:?}");

    // From here on, only the UART.
    let uart_addr = format!("127.0.0.1:{uart}");
    let auth = |serial: &str| {
        factory(
            &["device-auth", "--uart", &uart_addr, "--serial", serial],
            &token_file,
            &be.url,
        )
    };
    let out = auth("1");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "AUTHENTICATED serial=1"
    );
    // A serial the chip is not: the chip names itself, the station stops.
    let out = auth("2");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the backend refused")
            || String::from_utf8_lossy(&out.stderr).contains("is serial 1, not 2"),
        "{out:?}"
    );

    // The test as the relay: a replayed and a forged answer are refused.
    let client =
        Backend::connect(&be.url, Some(TOKEN.to_owned().into()), &Default::default()).unwrap();
    let challenge = client.challenge(1).unwrap();
    let nonce: [u8; 32] = hex::decode(&challenge.nonce).unwrap().try_into().unwrap();
    let Answer::Signed { serial, hw_id, sig } = ask(uart, &nonce) else {
        panic!("the chip refused to sign");
    };
    assert_eq!((serial, hw_id.to_string()), (1, "1234567800000003".into()));
    client
        .verify(&challenge.challenge_id, serial, hw_id, &sig)
        .unwrap();
    let again = client.verify(&challenge.challenge_id, serial, hw_id, &sig);
    assert_eq!(refusal(again.unwrap_err()), "replayed");
    let challenge = client.challenge(1).unwrap();
    let mut forged = sig;
    forged[10] ^= 1;
    let bad = client.verify(&challenge.challenge_id, serial, hw_id, &forged);
    assert_eq!(refusal(bad.unwrap_err()), "bad_signature");

    // Revoked: refused with the backend's code.
    be.store.revoke(1, "test", "admin:test").wait().unwrap();
    let out = auth("1");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("REFUSED reason="), "{out:?}");

    // BYE ends the run; the console shows the chip's own story.
    let stream = TcpStream::connect(("127.0.0.1", uart)).unwrap();
    writeln!(&stream, "BYE").unwrap();
    let status = chip.0.wait().unwrap();
    let mut console = String::new();
    std::io::Read::read_to_string(&mut chip.0.stdout.take().unwrap(), &mut console).unwrap();
    assert!(status.success(), "{console}");
    assert!(
        console.contains("PROVISIONED serial=1 hw_id=1234567800000003 product=uart-demo")
            && console.contains("APP version=1.0.0+0 serial=1 hw_id=1234567800000003")
            && console.contains("AUTH serial=1 hw_id=1234567800000003 sig="),
        "{console}"
    );
}
